//! The generic timer: counter, frequency and the EL1 virtual timer (INTID 27).

use core::arch::asm;

/// CNTV_CTL_EL0.ENABLE.
pub const CTL_ENABLE: u64 = 1 << 0;
/// CNTV_CTL_EL0.IMASK: the timer condition does not raise the interrupt.
pub const CTL_IMASK: u64 = 1 << 1;
/// CNTV_CTL_EL0.ISTATUS: the timer condition is met.
pub const CTL_ISTATUS: u64 = 1 << 2;

/// Counter ticks per second (CNTFRQ_EL0).
pub fn frequency() -> u64 {
    let freq: u64;
    // SAFETY: reads a system register.
    unsafe { asm!("mrs {}, cntfrq_el0", out(reg) freq, options(nomem, nostack)) };
    freq
}

/// The virtual count (CNTVCT_EL0), read after an ISB so it is not taken early.
pub fn counter() -> u64 {
    let count: u64;
    // SAFETY: reads a system register.
    unsafe { asm!("isb", "mrs {}, cntvct_el0", out(reg) count, options(nomem, nostack)) };
    count
}

/// The physical count (CNTPCT_EL0), where the hypervisor lets EL1 read it (Xen and Mica do).
pub fn physical_counter() -> u64 {
    let count: u64;
    // SAFETY: reads a system register.
    unsafe { asm!("isb", "mrs {}, cntpct_el0", out(reg) count, options(nomem, nostack)) };
    count
}

/// Counter ticks to nanoseconds.
pub fn ticks_to_ns(ticks: u64) -> u64 {
    let ns = u128::from(ticks) * 1_000_000_000 / u128::from(frequency().max(1));
    ns.min(u128::from(u64::MAX)) as u64
}

/// Counter ticks in `ms` milliseconds.
pub fn ms_to_ticks(ms: u64) -> u64 {
    frequency().saturating_mul(ms) / 1000
}

/// Busy-waits `ms` milliseconds of counter time.
pub fn delay_ms(ms: u64) {
    let end = counter().saturating_add(ms_to_ticks(ms));
    while counter() < end {
        core::hint::spin_loop();
    }
}

/// Arms the virtual timer to fire when the virtual count reaches `deadline`, interrupt unmasked.
pub fn set_virtual_deadline(deadline: u64) {
    // SAFETY: programs the EL1 virtual timer, which only this runtime uses.
    unsafe {
        asm!(
            "msr cntv_cval_el0, {cval}",
            "msr cntv_ctl_el0, {ctl}",
            "isb",
            cval = in(reg) deadline,
            ctl = in(reg) CTL_ENABLE,
            options(nomem, nostack),
        )
    };
}

/// Writes CNTV_CTL_EL0 (for example [`CTL_IMASK`] | [`CTL_ENABLE`] to silence it, 0 to stop it).
pub fn set_virtual_control(ctl: u64) {
    // SAFETY: as in `set_virtual_deadline`.
    unsafe { asm!("msr cntv_ctl_el0, {}", "isb", in(reg) ctl, options(nomem, nostack)) };
}

/// Reads CNTV_CTL_EL0.
pub fn virtual_control() -> u64 {
    let ctl: u64;
    // SAFETY: reads a system register.
    unsafe { asm!("mrs {}, cntv_ctl_el0", out(reg) ctl, options(nomem, nostack)) };
    ctl
}
