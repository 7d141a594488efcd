//! A virtual CPU's architectural state and its trip into the guest.

use crate::gic::VirtualCpuInterface;
use crate::run::FastPath;
use aarch64_cpu::registers::*;
use tock_registers::interfaces::{Readable, Writeable};

/// General registers as `exceptions.S` saves them: x0..x30, then ELR_EL2 and SPSR_EL2.
#[repr(C)]
#[derive(Clone, Default)]
pub struct GuestRegs {
    /// x0..x30.
    pub x: [u64; 31],
    /// Where the guest resumes.
    pub elr: u64,
    /// The guest's PSTATE.
    pub spsr: u64,
}

/// FP/SIMD registers as `exceptions.S` saves them.
#[repr(C, align(16))]
#[derive(Clone, Default)]
pub struct FpRegs {
    q: [u128; 32],
    fpsr: u64,
    fpcr: u64,
}

/// EL1 system registers and the guest-owned timer registers.
#[derive(Clone, Default)]
pub struct El1Regs {
    sctlr: u64,
    ttbr0: u64,
    ttbr1: u64,
    tcr: u64,
    mair: u64,
    amair: u64,
    vbar: u64,
    contextidr: u64,
    tpidr_el0: u64,
    tpidrro_el0: u64,
    tpidr_el1: u64,
    sp_el0: u64,
    sp_el1: u64,
    elr_el1: u64,
    spsr_el1: u64,
    esr_el1: u64,
    far_el1: u64,
    afsr0: u64,
    afsr1: u64,
    par: u64,
    cpacr: u64,
    cntkctl: u64,
    csselr: u64,
    vmpidr: u64,
    /// CNTV_CTL_EL0 of the guest's virtual timer.
    pub cntv_ctl: u64,
    /// CNTV_CVAL_EL0 of the guest's virtual timer.
    pub cntv_cval: u64,
}

/// SCTLR_EL1 at reset as Linux's boot protocol expects it: MMU and caches off, the RES1
/// bits of ARMv8.0 set.
const SCTLR_EL1_RESET: u64 = 0x30C5_0830;
/// SPSR for entering a guest at EL1h with all exceptions masked.
pub const SPSR_EL1H_MASKED: u64 = 0x3c5;

/// CNTV_CTL bits.
pub mod timer_ctl {
    /// Timer enabled.
    pub const ENABLE: u64 = 1 << 0;
    /// Interrupt masked.
    pub const IMASK: u64 = 1 << 1;
    /// Condition met.
    pub const ISTATUS: u64 = 1 << 2;
}

/// The emulated EL1 physical timer (CNTP_*): accesses trap, Mica keeps the values.
#[derive(Clone, Copy, Default)]
pub struct PhysTimer {
    /// CNTP_CTL_EL0 without ISTATUS (computed on read).
    pub ctl: u64,
    /// CNTP_CVAL_EL0.
    pub cval: u64,
}

/// Everything of a vCPU that lives in hardware registers while it runs.
#[derive(Default)]
pub struct VcpuContext {
    /// General registers, PC and PSTATE.
    pub regs: GuestRegs,
    fp: FpRegs,
    /// EL1 system registers and the virtual timer.
    pub el1: El1Regs,
    gic: VirtualCpuInterface,
    /// Emulated physical timer.
    pub ptimer: PhysTimer,
    /// Emulated debug/OS-lock registers read back as written (MDSCR_EL1).
    pub mdscr: u64,
}

unsafe extern "C" {
    /// `fast` is only handed back to `crate::run::mica_fast_hypercall`.
    fn enter_guest(regs: *mut GuestRegs, fast: *mut core::ffi::c_void) -> u64;
    fn fpsimd_save(fp: *mut FpRegs);
    fn fpsimd_restore(fp: *const FpRegs);
}

/// Exception kinds `enter_guest` returns.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ExitKind {
    /// A synchronous exception (trap).
    Sync,
    /// A physical IRQ arrived.
    Irq,
    /// A physical FIQ arrived.
    Fiq,
    /// An SError.
    SError,
    /// A Xen hypercall, already handled by the fast path; what remains to do is in its
    /// [`FastPath`].
    HypercallDone,
}

impl VcpuContext {
    /// Sets the vCPU to start at `entry` with `x0 = arg`, as after a reset.
    pub fn reset(&mut self, entry: u64, arg: u64, mpidr: u64) {
        *self = Self::default();
        self.regs.elr = entry;
        self.regs.spsr = SPSR_EL1H_MASKED;
        self.regs.x[0] = arg;
        self.el1.sctlr = SCTLR_EL1_RESET;
        self.el1.vmpidr = (1 << 31) | mpidr;
    }

    /// Loads this vCPU's state into the CPU.
    pub fn restore(&self) {
        let e = &self.el1;
        SCTLR_EL1.set(e.sctlr);
        TTBR0_EL1.set(e.ttbr0);
        TTBR1_EL1.set(e.ttbr1);
        TCR_EL1.set(e.tcr);
        MAIR_EL1.set(e.mair);
        AMAIR_EL1.set(e.amair);
        VBAR_EL1.set(e.vbar);
        CONTEXTIDR_EL1.set(e.contextidr);
        TPIDR_EL0.set(e.tpidr_el0);
        TPIDRRO_EL0.set(e.tpidrro_el0);
        TPIDR_EL1.set(e.tpidr_el1);
        SP_EL0.set(e.sp_el0);
        SP_EL1.set(e.sp_el1);
        ELR_EL1.set(e.elr_el1);
        SPSR_EL1.set(e.spsr_el1);
        ESR_EL1.set(e.esr_el1);
        FAR_EL1.set(e.far_el1);
        AFSR0_EL1.set(e.afsr0);
        AFSR1_EL1.set(e.afsr1);
        PAR_EL1.set(e.par);
        CPACR_EL1.set(e.cpacr);
        CNTKCTL_EL1.set(e.cntkctl);
        CSSELR_EL1.set(e.csselr);
        VMPIDR_EL2.set(e.vmpidr);
        CNTV_CVAL_EL0.set(e.cntv_cval);
        CNTV_CTL_EL0.set(e.cntv_ctl);
        // SAFETY: `self.fp` is a valid, aligned FpRegs; the routine only reads it.
        unsafe { fpsimd_restore(&self.fp) };
        self.gic.restore();
    }

    /// Saves the CPU's state into this vCPU and quiesces its virtual timer.
    pub fn save(&mut self) {
        let e = &mut self.el1;
        e.sctlr = SCTLR_EL1.get();
        e.ttbr0 = TTBR0_EL1.get();
        e.ttbr1 = TTBR1_EL1.get();
        e.tcr = TCR_EL1.get();
        e.mair = MAIR_EL1.get();
        e.amair = AMAIR_EL1.get();
        e.vbar = VBAR_EL1.get();
        e.contextidr = CONTEXTIDR_EL1.get();
        e.tpidr_el0 = TPIDR_EL0.get();
        e.tpidrro_el0 = TPIDRRO_EL0.get();
        e.tpidr_el1 = TPIDR_EL1.get();
        e.sp_el0 = SP_EL0.get();
        e.sp_el1 = SP_EL1.get();
        e.elr_el1 = ELR_EL1.get();
        e.spsr_el1 = SPSR_EL1.get();
        e.esr_el1 = ESR_EL1.get();
        e.far_el1 = FAR_EL1.get();
        e.afsr0 = AFSR0_EL1.get();
        e.afsr1 = AFSR1_EL1.get();
        e.par = PAR_EL1.get();
        e.cpacr = CPACR_EL1.get();
        e.cntkctl = CNTKCTL_EL1.get();
        e.csselr = CSSELR_EL1.get();
        e.vmpidr = VMPIDR_EL2.get();
        e.cntv_ctl = CNTV_CTL_EL0.get();
        e.cntv_cval = CNTV_CVAL_EL0.get();
        // The timer keeps counting for the next vCPU otherwise.
        CNTV_CTL_EL0.set(0);
        // SAFETY: `self.fp` is a valid, aligned, exclusively borrowed FpRegs.
        unsafe { fpsimd_save(&mut self.fp) };
        self.gic.save();
    }

    /// Runs the guest until its next exit. Its Xen hypercalls are handled on the way
    /// (`crate::run::mica_fast_hypercall`, with `fast`) and do not count as exits unless
    /// they need more than a result in x0.
    pub fn run(&mut self, fast: &mut FastPath<'_>) -> ExitKind {
        let fast: *mut FastPath<'_> = fast;
        // SAFETY: the vCPU's stage-2 tables, HCR_EL2 and system registers are loaded, so the
        // guest can reach only its own memory; `regs` and `fast` stay valid and exclusively
        // ours until the call returns (the fast path gets them back from the assembly).
        match unsafe { enter_guest(&mut self.regs, fast.cast()) } {
            0 => ExitKind::Sync,
            1 => ExitKind::Irq,
            2 => ExitKind::Fiq,
            4 => ExitKind::HypercallDone,
            _ => ExitKind::SError,
        }
    }

    /// The deadline of the virtual timer in counter ticks, if it would raise its interrupt.
    pub fn vtimer_deadline(&self) -> Option<u64> {
        let ctl = self.el1.cntv_ctl;
        (ctl & timer_ctl::ENABLE != 0 && ctl & timer_ctl::IMASK == 0).then_some(self.el1.cntv_cval)
    }
}
