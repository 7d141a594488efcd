//! Board quirk: a GICv3 whose virtual IRQ/FIQ outputs are not connected to the cores
//! (QEMU 10.0.2's `imx8mp-evk`, fixed by QEMU commit 930180f3b9a2 in 10.0.3).
//!
//! The virtual CPU interface still works from the list registers (a guest's read of
//! ICC_IAR1_EL1 returns the highest pending one); only its signal to the core is missing.
//! The architecture gives EL2 a second source for the same signal: with HCR_EL2.IMO (FMO)
//! set, HCR_EL2.VI (VF) makes a virtual IRQ (FIQ) pending at EL1 whatever the GIC says; the
//! core sees the OR of both. So on every guest entry Mica works out whether the GIC would
//! signal one of the list registers it wrote and sets VI/VF to match, and asks for the "no
//! pending" maintenance interrupt (ICH_HCR_EL2.NPIE) so that the guest's acknowledgement of
//! the last pending one exits to Mica, which then lowers the signal again. A pending
//! interrupt held back only because the guest disabled its group waits for the guest to
//! enable the group (ICH_HCR_EL2.VGrp{0,1}EIE). Right after every exit the signal and these
//! requests are dropped: Mica's own WFI must not wake on a virtual interrupt, and the level
//! maintenance interrupt must not stay asserted while Mica handles interrupts.
//!
//! What the GIC would do and this does not: notice that the guest made a listed pending
//! interrupt deliverable without exiting (an EOI that lowers the running priority, the
//! deactivation of a pending-and-active one, a lower priority mask). Such an interrupt is
//! signalled at the vCPU's next exit (its timer tick, a WFI, any trap).

use super::{version, GicVersion};
use aarch64_cpu::registers::{HCR_EL2, ICH_HCR_EL2, ICH_VMCR_EL2};
use core::sync::atomic::{AtomicBool, Ordering};
use mica_hv::vgic::{ListReg, LrState};
use tock_registers::interfaces::{ReadWriteable, Readable};
use tock_registers::{register_bitfields, LocalRegisterCopy};

register_bitfields! {u64,
    /// ICH_VMCR_EL2 (aarch64-cpu has no fields for it): the guest's view of its CPU
    /// interface controls.
    VMCR [
        /// Group 0 interrupts enabled (ICV_IGRPEN0_EL1).
        VENG0 OFFSET(0) NUMBITS(1) [],
        /// Group 1 interrupts enabled (ICV_IGRPEN1_EL1).
        VENG1 OFFSET(1) NUMBITS(1) [],
        /// Group 1 preemption uses the group 0 binary point (ICV_CTLR_EL1.CBPR).
        VCBPR OFFSET(4) NUMBITS(1) [],
        /// Group 1 binary point (ICV_BPR1_EL1).
        VBPR1 OFFSET(18) NUMBITS(3) [],
        /// Group 0 binary point (ICV_BPR0_EL1).
        VBPR0 OFFSET(21) NUMBITS(3) [],
        /// Priority mask (ICV_PMR_EL1): only higher priorities (lower values) are signalled.
        VPMR OFFSET(24) NUMBITS(8) []
    ]
}

type Vmcr = LocalRegisterCopy<u64, VMCR::Register>;

/// Whether this board needs the quirk. Set once at boot, before any guest runs.
static ON: AtomicBool = AtomicBool::new(false);

/// Turns the quirk on for a board whose GIC does not signal virtual interrupts. Only a
/// GICv3 is handled (the one board that needs it has one).
pub fn enable(on: bool) {
    ON.store(on && version() == GicVersion::V3, Ordering::Relaxed);
}

/// Whether the quirk is on.
pub fn enabled() -> bool {
    ON.load(Ordering::Relaxed)
}

/// What Mica raises for the guest about to run.
#[derive(Default, PartialEq, Eq)]
struct Signals {
    irq: bool,
    fiq: bool,
    /// A pending group 0 / group 1 interrupt waits only for the guest to enable its group.
    wait_group0: bool,
    wait_group1: bool,
}

/// The mask that keeps the group-priority bits of a priority (the binary point).
fn group_priority_mask(group1: bool, vmcr: Vmcr) -> u8 {
    // Group 1's binary point sits one bit lower than group 0's for the same value.
    let bits_below = if group1 && !vmcr.is_set(VMCR::VCBPR) {
        vmcr.read(VMCR::VBPR1)
    } else {
        vmcr.read(VMCR::VBPR0) + 1
    };
    (0xffu64 << bits_below) as u8
}

/// Which virtual interrupts the GIC would signal for list registers `lrs`, given the
/// guest's controls and running priority (`None`: nothing active).
fn signals(lrs: &[ListReg], vmcr: Vmcr, running: Option<u8>) -> Signals {
    let mut s = Signals::default();
    let mask = vmcr.read(VMCR::VPMR) as u8;
    for lr in lrs.iter().filter(|lr| lr.state == LrState::Pending) {
        let group_enabled = vmcr.is_set(if lr.group1 { VMCR::VENG1 } else { VMCR::VENG0 });
        if !group_enabled {
            if lr.group1 {
                s.wait_group1 = true;
            } else {
                s.wait_group0 = true;
            }
            continue;
        }
        let preempts =
            running.is_none_or(|r| lr.priority & group_priority_mask(lr.group1, vmcr) < r);
        if lr.priority < mask && preempts {
            if lr.group1 {
                s.irq = true;
            } else {
                s.fiq = true;
            }
        }
    }
    s
}

/// Before entering a guest: raises the virtual interrupts the GIC would signal for the list
/// registers as they are, and asks for the maintenance interrupts that end them.
pub fn before_entry() {
    if !enabled() {
        return;
    }
    let mut lrs = [ListReg::default(); 16];
    let count = super::list_register_count().min(lrs.len());
    for (i, lr) in lrs[..count].iter_mut().enumerate() {
        *lr = super::read_lr(i);
    }
    let s = signals(
        &lrs[..count],
        Vmcr::new(ICH_VMCR_EL2.get()),
        super::v3::running_priority(),
    );
    if s == Signals::default() {
        return;
    }
    HCR_EL2.modify(HCR_EL2::VI.val(u64::from(s.irq)) + HCR_EL2::VF.val(u64::from(s.fiq)));
    ICH_HCR_EL2.modify(
        ICH_HCR_EL2::NPIE.val(u64::from(s.irq || s.fiq))
            + ICH_HCR_EL2::VGrp0EIE.val(u64::from(s.wait_group0))
            + ICH_HCR_EL2::VGrp1EIE.val(u64::from(s.wait_group1)),
    );
}

/// Right after a guest exit: lowers what [`before_entry`] raised.
pub fn after_exit() {
    if !enabled() {
        return;
    }
    HCR_EL2.modify(HCR_EL2::VI::CLEAR + HCR_EL2::VF::CLEAR);
    ICH_HCR_EL2.modify(
        ICH_HCR_EL2::NPIE::CLEAR + ICH_HCR_EL2::VGrp0EIE::CLEAR + ICH_HCR_EL2::VGrp1EIE::CLEAR,
    );
}
