//! The host's interrupt controller. The version comes from the device tree; both share
//! one interface so the rest of Mica does not care which one a board has.

pub mod unwired_virq;
mod v2;
mod v3;

use mica_hv::addr::HostRange;
use mica_hv::bootcfg::{GicInfo, GicVersion};
use mica_hv::vgic::ListReg;
use spin::Once;

/// SGI Mica sends to make another CPU look at its run queue and vCPUs again.
pub const SGI_KICK: u32 = 0;
/// Default INTID of the virtualization maintenance interrupt (PPI 9).
const DEFAULT_MAINTENANCE: u32 = 25;

/// A GIC register frame, by its (identity-mapped) base address.
#[derive(Clone, Copy)]
struct Mmio(usize);

impl Mmio {
    fn read32(self, off: usize) -> u32 {
        // SAFETY: `self.0` is a GIC register frame from the device tree, mapped as device
        // memory, and `off` is a register offset inside it.
        unsafe { core::ptr::read_volatile((self.0 + off) as *const u32) }
    }
    fn write32(self, off: usize, v: u32) {
        // SAFETY: as for `read32`.
        unsafe { core::ptr::write_volatile((self.0 + off) as *mut u32, v) }
    }
    fn write8(self, off: usize, v: u8) {
        // SAFETY: as for `read32`; IPRIORITYR and ITARGETSR are byte-accessible.
        unsafe { core::ptr::write_volatile((self.0 + off) as *mut u8, v) }
    }
    fn read64(self, off: usize) -> u64 {
        // SAFETY: as for `read32`; the 64-bit GICv3 registers allow 64-bit access.
        unsafe { core::ptr::read_volatile((self.0 + off) as *const u64) }
    }
    fn write64(self, off: usize, v: u64) {
        // SAFETY: as for `read64`.
        unsafe { core::ptr::write_volatile((self.0 + off) as *mut u64, v) }
    }
}

/// Distributor registers laid out alike in GICv2 and GICv3.
mod shared_gicd {
    pub const ISENABLER: usize = 0x100;
    pub const ICENABLER: usize = 0x180;
    pub const ICACTIVER: usize = 0x380;
    pub const ICFGR: usize = 0xc00;
}

impl Mmio {
    /// Configures interrupt `n` of a distributor as level-sensitive or edge-triggered.
    fn set_trigger(self, n: usize, level: bool) {
        let off = shared_gicd::ICFGR + (n / 16) * 4;
        let bit = 1 << ((n % 16) * 2 + 1);
        let cfg = self.read32(off);
        self.write32(off, if level { cfg & !bit } else { cfg | bit });
    }

    /// Clears the active state of interrupt `n` of a distributor.
    fn clear_active(self, n: usize) {
        self.write32(shared_gicd::ICACTIVER + (n / 32) * 4, 1 << (n % 32));
    }

    /// Enables or disables interrupt `n` of a distributor.
    fn set_enabled(self, n: usize, enabled: bool) {
        let reg = if enabled {
            shared_gicd::ISENABLER
        } else {
            shared_gicd::ICENABLER
        };
        self.write32(reg + (n / 32) * 4, 1 << (n % 32));
    }
}

/// An acknowledged interrupt: its INTID and the raw value to hand back at EOI (GICv2 adds
/// the source CPU of an SGI).
#[derive(Clone, Copy, Debug)]
pub struct Ack {
    /// The interrupt.
    pub intid: u32,
    /// Raw acknowledge value.
    pub raw: u32,
}

/// The virtual CPU interface state of one vCPU while it is not loaded.
#[derive(Clone, Default)]
pub struct VirtualCpuInterface {
    /// ICH_VMCR_EL2 / GICH_VMCR.
    pub vmcr: u64,
    /// Active priorities, group 0 (GICv3).
    pub ap0r: [u64; 4],
    /// Active priorities, group 1 (GICv3), or GICH_APR in `[0]` (GICv2).
    pub ap1r: [u64; 4],
}

impl VirtualCpuInterface {
    /// Saves the live state.
    pub fn save(&mut self) {
        match version() {
            GicVersion::V2 => v2::save(self),
            GicVersion::V3 => v3::save(self),
        }
    }
    /// Loads this state into the live registers.
    pub fn restore(&self) {
        match version() {
            GicVersion::V2 => v2::restore(self),
            GicVersion::V3 => v3::restore(self),
        }
    }
}

struct Host {
    maintenance: u32,
    /// GICv2: the virtual CPU interface frame to map at a guest's GICC address.
    vcpu_if: Option<HostRange>,
}

static HOST: Once<Host> = Once::new();

fn host() -> &'static Host {
    HOST.get().expect("GIC used before init (hypervisor bug)")
}

/// The GIC version in use (read on every guest entry and exit: a plain static).
pub fn version() -> GicVersion {
    if VERSION_IS_V2.load(core::sync::atomic::Ordering::Relaxed) {
        GicVersion::V2
    } else {
        GicVersion::V3
    }
}

/// Set once at init, before any CPU runs a guest.
static VERSION_IS_V2: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// INTID of the maintenance interrupt.
pub fn maintenance_intid() -> u32 {
    host().maintenance
}

/// GICv2's virtual CPU interface frame (GICV), mapped into guests.
pub fn vcpu_interface() -> Option<HostRange> {
    host().vcpu_if
}

/// A GIC-400 wired with every 4 KiB page repeated over 64 KiB (Xilinx ZynqMP) describes its
/// 8 KiB GICC and GICV frames as 128 KiB regions. The two pages are contiguous only at the
/// last alias of the first page, 60 KiB in (as Linux's and Xen's GICv2 drivers find them).
const ALIASED_FRAME_SIZE: u64 = 0x2_0000;
const ALIASED_FRAME_OFFSET: u64 = 0xf000;
/// The two pages of a GICv2 CPU interface frame.
const GICV2_CPU_FRAME_SIZE: u64 = 0x2000;

fn unalias_gic400_frame(frame: HostRange) -> HostRange {
    if frame.size != ALIASED_FRAME_SIZE {
        return frame;
    }
    frame
        .start
        .checked_add(ALIASED_FRAME_OFFSET)
        .and_then(|start| HostRange::new(start, GICV2_CPU_FRAME_SIZE))
        .unwrap_or(frame)
}

/// Sets up the distributor. Boot CPU, once.
pub fn init(info: &GicInfo, boot_mpidr: u64) -> Result<(), &'static str> {
    let maintenance = info.maintenance_intid.unwrap_or(DEFAULT_MAINTENANCE);
    match info.version {
        GicVersion::V3 => {
            let regions: alloc::vec::Vec<(u64, u64)> = info
                .redist
                .iter()
                .map(|r| (r.start.raw(), r.size))
                .collect();
            if regions.is_empty() {
                return Err("the GICv3 node has no redistributor region");
            }
            v3::init(info.dist.start.raw(), &regions, boot_mpidr);
        }
        GicVersion::V2 => {
            let (Some(cpu), Some(hyp), Some(_)) = (info.cpu_if, info.hyp_if, info.vcpu_if) else {
                return Err("the GICv2 node lacks the GICC, GICH or GICV frame (no virtualization extensions)");
            };
            v2::init(
                info.dist.start.raw(),
                unalias_gic400_frame(cpu).start.raw(),
                hyp.start.raw(),
            );
        }
    }
    VERSION_IS_V2.store(
        info.version == GicVersion::V2,
        core::sync::atomic::Ordering::Relaxed,
    );
    HOST.call_once(|| Host {
        maintenance,
        vcpu_if: info.vcpu_if.map(unalias_gic400_frame),
    });
    Ok(())
}

/// This CPU's part of the GIC. Every CPU, once.
pub fn init_cpu(cpu_index: usize, mpidr: u64, ppis: &[u32]) -> Result<(), &'static str> {
    match version() {
        GicVersion::V2 => v2::init_cpu(cpu_index, mpidr, ppis),
        GicVersion::V3 => v3::init_cpu(mpidr, ppis),
    }
}

/// Routes SPI `intid` to the CPU with `mpidr` and enables it.
pub fn enable_spi(intid: u32, mpidr: u64, level: bool) {
    match version() {
        GicVersion::V2 => v2::enable_spi(intid, mpidr, level),
        GicVersion::V3 => v3::enable_spi(intid, mpidr, level),
    }
}

/// Clears SPI `intid`'s active state at the distributor (whoever activated it).
pub fn clear_spi_active(intid: u32) {
    match version() {
        GicVersion::V2 => v2::clear_spi_active(intid),
        GicVersion::V3 => v3::clear_spi_active(intid),
    }
}

/// Masks or unmasks SPI `intid` at the distributor.
pub fn set_spi_enabled(intid: u32, enabled: bool) {
    match version() {
        GicVersion::V2 => v2::set_spi_enabled(intid, enabled),
        GicVersion::V3 => v3::set_spi_enabled(intid, enabled),
    }
}

/// Acknowledges the highest-priority pending interrupt, if any.
pub fn acknowledge() -> Option<Ack> {
    match version() {
        GicVersion::V2 => v2::acknowledge(),
        GicVersion::V3 => v3::acknowledge(),
    }
}

/// Ends an acknowledged interrupt Mica handled itself: priority drop and deactivation.
pub fn end_of_interrupt(ack: Ack) {
    priority_drop(ack);
    deactivate(ack);
}

/// Drops the running priority of an acknowledged interrupt but leaves it active: a
/// passed-through interrupt, deactivated by its guest through a hardware-backed list register.
pub fn priority_drop(ack: Ack) {
    match version() {
        GicVersion::V2 => v2::priority_drop(ack),
        GicVersion::V3 => v3::priority_drop(ack),
    }
}

/// Deactivates an acknowledged interrupt.
pub fn deactivate(ack: Ack) {
    match version() {
        GicVersion::V2 => v2::deactivate(ack.raw),
        GicVersion::V3 => v3::deactivate(ack.intid),
    }
}

/// Sends SGI `sgi` to the CPU with `mpidr`.
pub fn send_sgi(mpidr: u64, sgi: u32) {
    match version() {
        GicVersion::V2 => v2::send_sgi(mpidr, sgi),
        GicVersion::V3 => v3::send_sgi(mpidr, sgi),
    }
}

/// Number of list registers.
pub fn list_register_count() -> usize {
    match version() {
        GicVersion::V2 => v2::list_register_count(),
        GicVersion::V3 => v3::list_register_count(),
    }
}

/// Reads list register `i`.
pub fn read_lr(i: usize) -> ListReg {
    match version() {
        GicVersion::V2 => v2::read_lr(i),
        GicVersion::V3 => v3::read_lr(i),
    }
}

/// Writes list register `i`.
pub fn write_lr(i: usize, lr: &ListReg) {
    match version() {
        GicVersion::V2 => v2::write_lr(i, lr),
        GicVersion::V3 => v3::write_lr(i, lr),
    }
}

/// [`read_lr`] of the first list register (the event upcall's usual place), with the
/// index known when compiled.
#[inline(always)]
pub fn read_first_lr() -> ListReg {
    match version() {
        GicVersion::V2 => v2::read_first_lr(),
        GicVersion::V3 => v3::read_first_lr(),
    }
}

/// [`write_lr`] of the first list register.
#[inline(always)]
pub fn write_first_lr(lr: &ListReg) {
    match version() {
        GicVersion::V2 => v2::write_first_lr(lr),
        GicVersion::V3 => v3::write_first_lr(lr),
    }
}

/// Removes the causes of a maintenance interrupt (underflow request, list registers in the
/// "EOI seen" condition). Only call once the list registers were folded back into the model.
pub fn clear_maintenance() {
    match version() {
        GicVersion::V2 => v2::clear_maintenance(),
        GicVersion::V3 => v3::clear_maintenance(),
    }
}

/// Asks for a maintenance interrupt when the list registers run empty.
pub fn set_underflow_interrupt(on: bool) {
    match version() {
        GicVersion::V2 => v2::set_underflow_interrupt(on),
        GicVersion::V3 => v3::set_underflow_interrupt(on),
    }
}
