//! GICv2 (GIC-400 and QEMU's `gic-version=2`): memory-mapped distributor and CPU
//! interface, and the GICH virtual interface control frame. The guest's CPU interface is
//! the hardware GICV frame, mapped into its stage 2 at its GICC address.

use super::{Ack, Mmio, VirtualCpuInterface};
use crate::world::MAX_CPUS;
use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use mica_hv::vgic::{ListReg, LrState};
use spin::Once;

mod gicd {
    pub const CTLR: usize = 0x000;
    pub const TYPER: usize = 0x004;
    pub const ISENABLER: usize = 0x100;
    pub const ICENABLER: usize = 0x180;
    pub const ICPENDR: usize = 0x280;
    pub const ICACTIVER: usize = 0x380;
    pub const IPRIORITYR: usize = 0x400;
    pub const ITARGETSR: usize = 0x800;
    pub const SGIR: usize = 0xf00;
    pub const CTLR_ENABLE: u32 = 1;
}

mod gicc {
    pub const CTLR: usize = 0x00;
    pub const PMR: usize = 0x04;
    pub const BPR: usize = 0x08;
    pub const IAR: usize = 0x0c;
    pub const EOIR: usize = 0x10;
    pub const DIR: usize = 0x1000;
    pub const CTLR_ENABLE: u32 = 1;
    /// EOImodeNS: split priority drop (EOIR) and deactivation (DIR).
    pub const CTLR_EOIMODE_NS: u32 = 1 << 9;
}

mod gich {
    pub const HCR: usize = 0x000;
    pub const VTR: usize = 0x004;
    pub const VMCR: usize = 0x008;
    pub const APR: usize = 0x0f0;
    pub const LR0: usize = 0x100;
    pub const HCR_EN: u32 = 1 << 0;
    pub const HCR_UIE: u32 = 1 << 1;
}

/// GICH_LR fields.
mod lr {
    pub const VIRTUAL_ID_MASK: u32 = 0x3ff;
    pub const CPUID_SHIFT: u32 = 10;
    pub const CPUID_MASK: u32 = 0x7;
    pub const EOI: u32 = 1 << 19;
    pub const PHYSICAL_ID_SHIFT: u32 = 10;
    pub const HW: u32 = 1 << 31;
    pub const PRIORITY_SHIFT: u32 = 23;
    pub const STATE_SHIFT: u32 = 28;
    pub const GROUP1: u32 = 1 << 30;
}

const HOST_PRIORITY: u8 = 0xa0;
const SPURIOUS: u32 = 1020;

struct Gic {
    dist: Mmio,
    cpu: Mmio,
    hyp: Mmio,
    lines: u32,
    list_regs: usize,
}

static GIC: Once<Gic> = Once::new();
/// Each CPU's MPIDR and GIC CPU-interface mask, for SGIs.
static CPU_MPIDR: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(u64::MAX) }; MAX_CPUS];
static CPU_MASK: [AtomicU8; MAX_CPUS] = [const { AtomicU8::new(0) }; MAX_CPUS];

fn gic() -> &'static Gic {
    GIC.get().expect("GICv2 used before init (hypervisor bug)")
}

/// Sets up the distributor. Boot CPU, once.
pub fn init(dist: u64, cpu: u64, hyp: u64) {
    let d = Mmio(dist as usize);
    let lines = (((d.read32(gicd::TYPER) & 0x1f) + 1) * 32).min(1020);
    let h = Mmio(hyp as usize);
    let list_regs = ((h.read32(gich::VTR) & 0x3f) + 1).min(64) as usize;
    GIC.call_once(|| Gic {
        dist: d,
        cpu: Mmio(cpu as usize),
        hyp: h,
        lines,
        list_regs,
    });
    d.write32(gicd::CTLR, 0);
    for n in (32..lines as usize).step_by(32) {
        d.write32(gicd::ICENABLER + n / 8, u32::MAX);
        d.write32(gicd::ICPENDR + n / 8, u32::MAX);
        d.write32(gicd::ICACTIVER + n / 8, u32::MAX);
    }
    for n in 32..lines as usize {
        d.write8(gicd::IPRIORITYR + n, HOST_PRIORITY);
    }
    d.write32(gicd::CTLR, gicd::CTLR_ENABLE);
}

/// This CPU's interface and the virtual interface control. Every CPU, once.
pub fn init_cpu(cpu_index: usize, mpidr: u64, ppis: &[u32]) -> Result<(), &'static str> {
    let g = gic();
    // The banked ITARGETSR0 byte reads as this CPU's own interface mask.
    let mask = (g.dist.read32(gicd::ITARGETSR) & 0xff) as u8;
    if mask == 0 {
        return Err("GICv2 reports no CPU interface for this CPU");
    }
    CPU_MASK[cpu_index].store(mask, Ordering::Relaxed);
    CPU_MPIDR[cpu_index].store(mpidr, Ordering::Release);
    g.dist.write32(gicd::ICENABLER, u32::MAX);
    for n in 0..32 {
        g.dist.write8(gicd::IPRIORITYR + n, HOST_PRIORITY);
    }
    let mut enable = 1u32 << super::SGI_KICK;
    for &p in ppis {
        enable |= 1 << p;
    }
    g.dist.write32(gicd::ISENABLER, enable);
    g.cpu.write32(gicc::PMR, 0xff);
    g.cpu.write32(gicc::BPR, 0);
    g.cpu
        .write32(gicc::CTLR, gicc::CTLR_ENABLE | gicc::CTLR_EOIMODE_NS);
    g.hyp.write32(gich::VMCR, 0);
    g.hyp.write32(gich::HCR, gich::HCR_EN);
    Ok(())
}

/// Routes SPI `intid` to the CPU with `mpidr` and enables it.
pub fn enable_spi(intid: u32, mpidr: u64, level: bool) {
    let g = gic();
    if !(32..g.lines).contains(&intid) {
        return;
    }
    let n = intid as usize;
    let mask = mask_of(mpidr).unwrap_or(1);
    g.dist.write8(gicd::ITARGETSR + n, mask);
    g.dist.set_trigger(n, level);
    g.dist.set_enabled(n, true);
}

fn mask_of(mpidr: u64) -> Option<u8> {
    (0..MAX_CPUS)
        .find(|&i| CPU_MPIDR[i].load(Ordering::Acquire) == mpidr)
        .map(|i| CPU_MASK[i].load(Ordering::Relaxed))
}

/// Clears SPI `intid`'s active state at the distributor.
pub fn clear_spi_active(intid: u32) {
    let g = gic();
    if (32..g.lines).contains(&intid) {
        g.dist.clear_active(intid as usize);
    }
}

/// Masks or unmasks SPI `intid` at the distributor.
pub fn set_spi_enabled(intid: u32, enabled: bool) {
    let g = gic();
    if !(32..g.lines).contains(&intid) {
        return;
    }
    g.dist.set_enabled(intid as usize, enabled);
}

/// Acknowledges the highest-priority pending interrupt, if any.
pub fn acknowledge() -> Option<Ack> {
    let raw = gic().cpu.read32(gicc::IAR);
    let intid = raw & 0x3ff;
    (intid < SPURIOUS).then_some(Ack { intid, raw })
}

/// Drops the running priority of an acknowledged interrupt; it stays active.
pub fn priority_drop(ack: Ack) {
    gic().cpu.write32(gicc::EOIR, ack.raw);
}

/// Deactivates an interrupt (`raw` as acknowledged: SGIs carry their source CPU).
pub fn deactivate(raw: u32) {
    gic().cpu.write32(gicc::DIR, raw);
}

/// Sends SGI `sgi` to the CPU with `mpidr`.
pub fn send_sgi(mpidr: u64, sgi: u32) {
    if let Some(mask) = mask_of(mpidr) {
        aarch64_cpu::asm::barrier::dsb(aarch64_cpu::asm::barrier::ISHST);
        gic()
            .dist
            .write32(gicd::SGIR, (u32::from(mask) << 16) | (sgi & 0xf));
    }
}

/// Number of list registers.
pub fn list_register_count() -> usize {
    gic().list_regs
}

/// Saves the live virtual CPU interface into `v`.
pub fn save(v: &mut VirtualCpuInterface) {
    let h = gic().hyp;
    v.vmcr = u64::from(h.read32(gich::VMCR));
    v.ap1r[0] = u64::from(h.read32(gich::APR));
}

/// Loads `v` into the live virtual CPU interface.
pub fn restore(v: &VirtualCpuInterface) {
    let h = gic().hyp;
    h.write32(gich::VMCR, v.vmcr as u32);
    h.write32(gich::APR, v.ap1r[0] as u32);
}

/// Reads list register `i` into the portable form.
pub fn read_lr(i: usize) -> ListReg {
    decode_lr(gic().hyp.read32(gich::LR0 + 4 * i))
}

/// [`read_lr`] of the first list register, inlined where the index is known.
#[inline(always)]
pub fn read_first_lr() -> ListReg {
    decode_lr(gic().hyp.read32(gich::LR0))
}

/// [`write_lr`] of the first list register, inlined where the index is known.
#[inline(always)]
pub fn write_first_lr(l: &ListReg) {
    gic().hyp.write32(gich::LR0, encode_lr(l));
}

#[inline(always)]
fn decode_lr(v: u32) -> ListReg {
    ListReg {
        intid: v & lr::VIRTUAL_ID_MASK,
        priority: (((v >> lr::PRIORITY_SHIFT) & 0x1f) << 3) as u8,
        group1: v & lr::GROUP1 != 0,
        state: match (v >> lr::STATE_SHIFT) & 0x3 {
            0b01 => LrState::Pending,
            0b10 => LrState::Active,
            0b11 => LrState::PendingActive,
            _ => LrState::Invalid,
        },
        eoi_notify: v & lr::HW == 0 && v & lr::EOI != 0,
        source: ((v >> lr::CPUID_SHIFT) & lr::CPUID_MASK) as u8,
        hw: v & lr::HW != 0,
    }
}

/// Writes list register `i` from the portable form.
pub fn write_lr(i: usize, l: &ListReg) {
    gic().hyp.write32(gich::LR0 + 4 * i, encode_lr(l));
}

#[inline(always)]
fn encode_lr(l: &ListReg) -> u32 {
    let state = match l.state {
        LrState::Invalid => 0,
        LrState::Pending => 0b01,
        LrState::Active => 0b10,
        LrState::PendingActive => 0b11,
    };
    if state == 0 {
        0
    } else {
        let low = if l.hw {
            // The physical INTID is the virtual one (devices are passed through 1:1).
            lr::HW | ((l.intid & lr::VIRTUAL_ID_MASK) << lr::PHYSICAL_ID_SHIFT)
        } else {
            ((u32::from(l.source) & lr::CPUID_MASK) << lr::CPUID_SHIFT)
                | if l.eoi_notify { lr::EOI } else { 0 }
        };
        (l.intid & lr::VIRTUAL_ID_MASK)
            | low
            | ((u32::from(l.priority) >> 3) << lr::PRIORITY_SHIFT)
            | (state << lr::STATE_SHIFT)
            | if l.group1 { lr::GROUP1 } else { 0 }
    }
}

/// See `super::clear_maintenance`.
pub fn clear_maintenance() {
    set_underflow_interrupt(false);
    let h = gic().hyp;
    for i in 0..gic().list_regs {
        let v = h.read32(gich::LR0 + 4 * i);
        if (v >> lr::STATE_SHIFT) & 0x3 == 0 && v != 0 {
            h.write32(gich::LR0 + 4 * i, 0);
        }
    }
}

/// Underflow maintenance interrupt on or off.
pub fn set_underflow_interrupt(on: bool) {
    let h = gic().hyp;
    let hcr = h.read32(gich::HCR);
    h.write32(
        gich::HCR,
        if on {
            hcr | gich::HCR_UIE
        } else {
            hcr & !gich::HCR_UIE
        },
    );
}
