//! GICv3: distributor, this CPU's redistributor, the system-register CPU interface, and
//! the virtualization controls (ICH_*) that give guests their virtual CPU interface.

use crate::sysreg::{
    IccBpr1El1, IccCtlrEl1, IccDirEl1, IccEoir1El1, IccIar1El1, IccIgrpen1El1, IccPmrEl1,
    IccSgi1rEl1,
};
use aarch64_cpu::registers::*;
use mica_hv::vgic::{ListReg, LrState};
use spin::Once;
use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::LocalRegisterCopy;

/// Distributor register offsets.
mod gicd {
    pub const CTLR: usize = 0x0000;
    pub const TYPER: usize = 0x0004;
    pub const IGROUPR: usize = 0x0080;
    pub const ISENABLER: usize = 0x0100;
    pub const ICENABLER: usize = 0x0180;
    pub const ICPENDR: usize = 0x0280;
    pub const ICACTIVER: usize = 0x0380;
    pub const IPRIORITYR: usize = 0x0400;
    pub const ICFGR: usize = 0x0c00;
    pub const IROUTER: usize = 0x6000;
    pub const CTLR_RWP: u32 = 1 << 31;
    pub const CTLR_ARE: u32 = 1 << 4;
    pub const CTLR_ENABLE_G1: u32 = 1 << 1;
    pub const CTLR_ENABLE_G0: u32 = 1 << 0;
}

/// Redistributor register offsets (RD_base frame, then SGI_base frame).
mod gicr {
    pub const WAKER: usize = 0x0014;
    pub const TYPER: usize = 0x0008;
    pub const SGI_BASE: usize = 0x1_0000;
    pub const FRAME_V3: usize = 0x2_0000;
    pub const FRAME_V4: usize = 0x4_0000;
    pub const WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
    pub const WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;
    pub const TYPER_LAST: u64 = 1 << 4;
    pub const TYPER_VLPIS: u64 = 1 << 1;
}

/// Priority Mica gives every physical interrupt (all equal: Mica never nests them).
const HOST_PRIORITY: u8 = 0xa0;
/// INTID returned by an acknowledge when nothing is pending.
const SPURIOUS: u32 = 1020;

use super::{Ack, Mmio, VirtualCpuInterface, SGI_KICK};

struct Gic {
    dist: Mmio,
    redist_regions: alloc::vec::Vec<(usize, usize)>,
    spi_lines: u32,
    list_regs: usize,
    ap_regs: usize,
}

static GIC: Once<Gic> = Once::new();

fn gic() -> &'static Gic {
    GIC.get().expect("GIC used before init (hypervisor bug)")
}

/// The affinity fields of an MPIDR packed as GICD_IROUTER / GICR_TYPER want them.
fn affinity(mpidr: u64) -> u64 {
    (mpidr & 0xff_ffff) | ((mpidr >> 32 & 0xff) << 24)
}

/// Sets up the distributor. Boot CPU, once.
pub fn init(dist: u64, redist_regions: &[(u64, u64)], boot_mpidr: u64) {
    let vtr = ICH_VTR_EL2.get();
    let list_regs = (vtr & 0x1f) as usize + 1;
    let pre_bits = ((vtr >> 26) & 0x7) as usize + 1;
    let ap_regs = 1 << (pre_bits.saturating_sub(5));
    let d = Mmio(dist as usize);
    let spi_lines = ((d.read32(gicd::TYPER) & 0x1f) + 1) * 32;
    GIC.call_once(|| Gic {
        dist: d,
        redist_regions: redist_regions
            .iter()
            .map(|&(b, s)| (b as usize, s as usize))
            .collect(),
        spi_lines: spi_lines.min(1020),
        list_regs: list_regs.min(16),
        ap_regs: ap_regs.min(4),
    });
    d.write32(gicd::CTLR, 0);
    wait_rwp(d);
    for n in (32..spi_lines as usize).step_by(32) {
        d.write32(gicd::ICENABLER + n / 8, u32::MAX);
        d.write32(gicd::ICPENDR + n / 8, u32::MAX);
        d.write32(gicd::ICACTIVER + n / 8, u32::MAX);
        d.write32(gicd::IGROUPR + n / 8, u32::MAX);
    }
    for n in (32..spi_lines as usize).step_by(4) {
        d.write32(gicd::IPRIORITYR + n, u32::from_ne_bytes([HOST_PRIORITY; 4]));
    }
    for n in 32..spi_lines as usize {
        d.write64(gicd::IROUTER + n * 8, affinity(boot_mpidr));
    }
    d.write32(gicd::CTLR, gicd::CTLR_ARE);
    wait_rwp(d);
    d.write32(
        gicd::CTLR,
        gicd::CTLR_ARE | gicd::CTLR_ENABLE_G1 | gicd::CTLR_ENABLE_G0,
    );
    wait_rwp(d);
}

fn wait_rwp(d: Mmio) {
    while d.read32(gicd::CTLR) & gicd::CTLR_RWP != 0 {
        core::hint::spin_loop();
    }
}

/// Finds this CPU's redistributor frame.
fn find_redist(mpidr: u64) -> Option<Mmio> {
    let want = affinity(mpidr);
    for &(base, size) in &gic().redist_regions {
        let mut off = 0;
        while off < size {
            let frame = Mmio(base + off);
            let typer = frame.read64(gicr::TYPER);
            if typer >> 32 == want {
                return Some(frame);
            }
            if typer & gicr::TYPER_LAST != 0 {
                break;
            }
            off += if typer & gicr::TYPER_VLPIS != 0 {
                gicr::FRAME_V4
            } else {
                gicr::FRAME_V3
            };
        }
    }
    None
}

/// Sets up this CPU's redistributor and CPU interface, and the virtual CPU interface
/// controls. Every CPU, once, at start.
pub fn init_cpu(mpidr: u64, ppis: &[u32]) -> Result<(), &'static str> {
    let rd = find_redist(mpidr).ok_or("no GIC redistributor matches this CPU's MPIDR")?;
    let waker = rd.read32(gicr::WAKER);
    rd.write32(gicr::WAKER, waker & !gicr::WAKER_PROCESSOR_SLEEP);
    while rd.read32(gicr::WAKER) & gicr::WAKER_CHILDREN_ASLEEP != 0 {
        core::hint::spin_loop();
    }
    let sgi = Mmio(rd.0 + gicr::SGI_BASE);
    sgi.write32(gicd::ICENABLER, u32::MAX);
    sgi.write32(gicd::ICPENDR, u32::MAX);
    sgi.write32(gicd::ICACTIVER, u32::MAX);
    sgi.write32(gicd::IGROUPR, u32::MAX);
    for n in (0..32).step_by(4) {
        sgi.write32(gicd::IPRIORITYR + n, u32::from_ne_bytes([HOST_PRIORITY; 4]));
    }
    // PPIs level-triggered (the reset state); SGIs are always edge.
    sgi.write32(gicd::ICFGR + 4, 0);
    let mut enable = 1u32 << SGI_KICK;
    for &p in ppis {
        enable |= 1 << p;
    }
    sgi.write32(gicd::ISENABLER, enable);

    // System-register interface on, and let EL1 use it (for the virtual interface).
    ICC_SRE_EL2.write(ICC_SRE_EL2::SRE::SET + ICC_SRE_EL2::ENABLE::SET);
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
    IccPmrEl1.set(0xff);
    IccBpr1El1.set(0);
    // Split priority drop and deactivation, so a passed-through interrupt can stay active
    // until its guest deactivates it through a hardware-backed list register.
    IccCtlrEl1.set(IccCtlrEl1.get() | ICC_CTLR_EOIMODE);
    IccIgrpen1El1.set(1);
    ICH_VMCR_EL2.set(0);
    ICH_HCR_EL2.write(ICH_HCR_EL2::En::SET);
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
    Ok(())
}

/// Routes SPI `intid` to the CPU with `mpidr` and enables it.
pub fn enable_spi(intid: u32, mpidr: u64, level: bool) {
    let g = gic();
    if !(32..g.spi_lines).contains(&intid) {
        return;
    }
    let n = intid as usize;
    g.dist.write64(gicd::IROUTER + n * 8, affinity(mpidr));
    g.dist.set_trigger(n, level);
    g.dist.set_enabled(n, true);
}

/// Clears SPI `intid`'s active state at the distributor.
pub fn clear_spi_active(intid: u32) {
    let g = gic();
    if (32..g.spi_lines).contains(&intid) {
        g.dist.clear_active(intid as usize);
    }
}

/// Masks or unmasks SPI `intid` at the distributor.
pub fn set_spi_enabled(intid: u32, enabled: bool) {
    let g = gic();
    if !(32..g.spi_lines).contains(&intid) {
        return;
    }
    g.dist.set_enabled(intid as usize, enabled);
}

/// Acknowledges the highest-priority pending interrupt, if any.
pub fn acknowledge() -> Option<Ack> {
    let intid = (IccIar1El1.get() & 0xff_ffff) as u32;
    (intid < SPURIOUS).then_some(Ack { intid, raw: intid })
}

/// ICC_CTLR_EL1.EOImode.
const ICC_CTLR_EOIMODE: u64 = 1 << 1;

/// Drops the running priority of an acknowledged interrupt; it stays active.
pub fn priority_drop(ack: Ack) {
    IccEoir1El1.set(u64::from(ack.raw));
}

/// Deactivates interrupt `intid`.
pub fn deactivate(intid: u32) {
    IccDirEl1.set(u64::from(intid));
}

/// Sends SGI `sgi` to the CPU with `mpidr`.
pub fn send_sgi(mpidr: u64, sgi: u32) {
    let aff0 = mpidr & 0xff;
    let value = ((mpidr >> 32 & 0xff) << 48)
        | ((mpidr >> 16 & 0xff) << 32)
        | (u64::from(sgi & 0xf) << 24)
        | ((mpidr >> 8 & 0xff) << 16)
        | ((aff0 / 16) << 44)
        | (1 << (aff0 % 16));
    aarch64_cpu::asm::barrier::dsb(aarch64_cpu::asm::barrier::ISHST);
    IccSgi1rEl1.set(value);
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
}

/// Number of list registers this CPU's virtual interface has.
pub fn list_register_count() -> usize {
    gic().list_regs
}

/// Saves the live virtual CPU interface into `v`.
pub fn save(v: &mut VirtualCpuInterface) {
    let g = gic();
    v.vmcr = ICH_VMCR_EL2.get();
    for i in 0..g.ap_regs {
        v.ap0r[i] = read_ap0r(i);
        v.ap1r[i] = read_ap1r(i);
    }
}

/// Loads `v` into the live virtual CPU interface.
pub fn restore(v: &VirtualCpuInterface) {
    let g = gic();
    ICH_VMCR_EL2.set(v.vmcr);
    for i in 0..g.ap_regs {
        write_ap0r(i, v.ap0r[i]);
        write_ap1r(i, v.ap1r[i]);
    }
}

fn read_ap0r(i: usize) -> u64 {
    match i {
        0 => ICH_AP0R0_EL2.get(),
        1 => ICH_AP0R1_EL2.get(),
        2 => ICH_AP0R2_EL2.get(),
        _ => ICH_AP0R3_EL2.get(),
    }
}
fn read_ap1r(i: usize) -> u64 {
    match i {
        0 => ICH_AP1R0_EL2.get(),
        1 => ICH_AP1R1_EL2.get(),
        2 => ICH_AP1R2_EL2.get(),
        _ => ICH_AP1R3_EL2.get(),
    }
}
fn write_ap0r(i: usize, v: u64) {
    match i {
        0 => ICH_AP0R0_EL2.set(v),
        1 => ICH_AP0R1_EL2.set(v),
        2 => ICH_AP0R2_EL2.set(v),
        _ => ICH_AP0R3_EL2.set(v),
    }
}
fn write_ap1r(i: usize, v: u64) {
    match i {
        0 => ICH_AP1R0_EL2.set(v),
        1 => ICH_AP1R1_EL2.set(v),
        2 => ICH_AP1R2_EL2.set(v),
        _ => ICH_AP1R3_EL2.set(v),
    }
}

fn read_lr_raw(i: usize) -> u64 {
    match i {
        0 => ICH_LR0_EL2.get(),
        1 => ICH_LR1_EL2.get(),
        2 => ICH_LR2_EL2.get(),
        3 => ICH_LR3_EL2.get(),
        4 => ICH_LR4_EL2.get(),
        5 => ICH_LR5_EL2.get(),
        6 => ICH_LR6_EL2.get(),
        7 => ICH_LR7_EL2.get(),
        8 => ICH_LR8_EL2.get(),
        9 => ICH_LR9_EL2.get(),
        10 => ICH_LR10_EL2.get(),
        11 => ICH_LR11_EL2.get(),
        12 => ICH_LR12_EL2.get(),
        13 => ICH_LR13_EL2.get(),
        14 => ICH_LR14_EL2.get(),
        _ => ICH_LR15_EL2.get(),
    }
}

fn write_lr_raw(i: usize, v: u64) {
    match i {
        0 => ICH_LR0_EL2.set(v),
        1 => ICH_LR1_EL2.set(v),
        2 => ICH_LR2_EL2.set(v),
        3 => ICH_LR3_EL2.set(v),
        4 => ICH_LR4_EL2.set(v),
        5 => ICH_LR5_EL2.set(v),
        6 => ICH_LR6_EL2.set(v),
        7 => ICH_LR7_EL2.set(v),
        8 => ICH_LR8_EL2.set(v),
        9 => ICH_LR9_EL2.set(v),
        10 => ICH_LR10_EL2.set(v),
        11 => ICH_LR11_EL2.set(v),
        12 => ICH_LR12_EL2.set(v),
        13 => ICH_LR13_EL2.set(v),
        14 => ICH_LR14_EL2.set(v),
        _ => ICH_LR15_EL2.set(v),
    }
}

type LrBits = LocalRegisterCopy<u64, ICH_LR0_EL2::Register>;

/// Reads list register `i` into the portable form.
pub fn read_lr(i: usize) -> ListReg {
    decode_lr(read_lr_raw(i))
}

/// [`read_lr`] of the first list register, without the index's dispatch.
#[inline(always)]
pub fn read_first_lr() -> ListReg {
    decode_lr(ICH_LR0_EL2.get())
}

/// [`write_lr`] of the first list register, without the index's dispatch.
#[inline(always)]
pub fn write_first_lr(lr: &ListReg) {
    ICH_LR0_EL2.set(encode_lr(lr));
}

#[inline(always)]
fn decode_lr(raw: u64) -> ListReg {
    let v = LrBits::new(raw);
    ListReg {
        intid: v.read(ICH_LR0_EL2::vINTID) as u32,
        priority: v.read(ICH_LR0_EL2::Priority) as u8,
        group1: v.is_set(ICH_LR0_EL2::Group),
        state: match v.read(ICH_LR0_EL2::State) {
            0b01 => LrState::Pending,
            0b10 => LrState::Active,
            0b11 => LrState::PendingActive,
            _ => LrState::Invalid,
        },
        eoi_notify: !v.is_set(ICH_LR0_EL2::HW) && v.is_set(ICH_LR0_EL2::EOI),
        source: 0,
        hw: v.is_set(ICH_LR0_EL2::HW),
    }
}

/// Writes list register `i` from the portable form.
pub fn write_lr(i: usize, lr: &ListReg) {
    write_lr_raw(i, encode_lr(lr));
}

#[inline(always)]
fn encode_lr(lr: &ListReg) -> u64 {
    let state = match lr.state {
        LrState::Invalid => ICH_LR0_EL2::State::Invalid,
        LrState::Pending => ICH_LR0_EL2::State::Pending,
        LrState::Active => ICH_LR0_EL2::State::Active,
        LrState::PendingActive => ICH_LR0_EL2::State::PendingAndActive,
    };
    let mut v = LrBits::new(0);
    if lr.state != LrState::Invalid {
        v.write(
            state
                + ICH_LR0_EL2::Group.val(u64::from(lr.group1))
                + ICH_LR0_EL2::Priority.val(u64::from(lr.priority))
                + ICH_LR0_EL2::vINTID.val(u64::from(lr.intid)),
        );
        if lr.hw {
            // The physical INTID is the virtual one (devices are passed through 1:1).
            v.modify(ICH_LR0_EL2::HW::SET + ICH_LR0_EL2::pINTID.val(u64::from(lr.intid)));
        } else if lr.eoi_notify {
            v.modify(ICH_LR0_EL2::EOI::SET);
        }
    }
    v.get()
}

/// Removes the causes of a maintenance interrupt: no underflow request, and no list
/// register left in the "EOI seen" condition (an invalid entry with its EOI bit). Only call
/// when the list registers have been folded back into the model since the guest last ran.
pub fn clear_maintenance() {
    set_underflow_interrupt(false);
    for i in 0..gic().list_regs {
        let v = LrBits::new(read_lr_raw(i));
        if v.read(ICH_LR0_EL2::State) == 0 && v.get() != 0 {
            write_lr_raw(i, 0);
        }
    }
}

/// Asks for a maintenance interrupt when the list registers run (nearly) empty, so
/// interrupts that did not fit can be listed.
pub fn set_underflow_interrupt(on: bool) {
    let mut hcr = ICH_HCR_EL2.extract();
    if on {
        hcr.modify(ICH_HCR_EL2::UIE::SET);
    } else {
        hcr.modify(ICH_HCR_EL2::UIE::CLEAR);
    }
    ICH_HCR_EL2.set(hcr.get());
}

/// The loaded vCPU's running priority, from its active-priority registers (`None`: no
/// interrupt active). Bit n of the group 0 and group 1 registers together stands for the
/// priority n, shifted up past the bits the GIC does not implement for preemption.
pub(super) fn running_priority() -> Option<u8> {
    let ap_regs = gic().ap_regs;
    // 2^PREbits priorities are tracked in ap_regs registers of 32 bits.
    let pre_bits = 5 + ap_regs.trailing_zeros();
    (0..ap_regs).find_map(|i| {
        let active = (read_ap0r(i) | read_ap1r(i)) as u32;
        (active != 0).then(|| {
            let index = i as u32 * 32 + active.trailing_zeros();
            (index << (8 - pre_bits)) as u8
        })
    })
}
