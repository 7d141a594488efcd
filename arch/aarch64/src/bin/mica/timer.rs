//! The generic timer: the counter, and the EL2 physical timer Mica uses for its own
//! deadlines (time slices and sleeping vCPUs' timers).

use crate::sysreg::CnthpCvalEl2;
use aarch64_cpu::registers::{CNTFRQ_EL0, CNTHCTL_EL2, CNTHP_CTL_EL2, CNTPCT_EL0, CNTVOFF_EL2};
use tock_registers::interfaces::{Readable, Writeable};

/// Counter ticks now.
pub fn now() -> u64 {
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
    CNTPCT_EL0.get()
}

/// Counter frequency in Hz.
pub fn frequency() -> u64 {
    CNTFRQ_EL0.get().max(1)
}

/// Per-CPU set-up: EL1 may read the counter directly, but its physical timer traps (it
/// is emulated); the virtual counter equals the physical one.
pub fn init_cpu() {
    let factor = (1_000_000_000u128 << 32) / u128::from(frequency());
    NS_PER_TICK_32_32.store(
        factor.min(u128::from(u64::MAX)) as u64,
        core::sync::atomic::Ordering::Relaxed,
    );
    CNTHCTL_EL2.write(CNTHCTL_EL2::EL1PCTEN::SET + CNTHCTL_EL2::EL1PCEN::CLEAR);
    CNTVOFF_EL2.set(0);
    CNTHP_CTL_EL2.set(0);
}

/// Raises the hypervisor timer interrupt at counter value `deadline` (`u64::MAX`: never).
/// Leaves the timer alone when it is already armed so: rewriting it costs little on
/// hardware, but an emulator may treat every write as a new event (QEMU's `-icount`
/// lets another CPU run up to the new deadline first).
pub fn set_deadline(deadline: u64) {
    let armed = CNTHP_CTL_EL2.matches_all(CNTHP_CTL_EL2::ENABLE::SET + CNTHP_CTL_EL2::IMASK::CLEAR);
    if deadline == u64::MAX {
        if armed {
            CNTHP_CTL_EL2.set(0);
        }
        return;
    }
    if armed && CnthpCvalEl2.get() == deadline {
        return;
    }
    CnthpCvalEl2.set(deadline);
    CNTHP_CTL_EL2.write(CNTHP_CTL_EL2::ENABLE::SET + CNTHP_CTL_EL2::IMASK::CLEAR);
}

/// Counter ticks to nanoseconds (Xen's system time): a multiply by a 32.32 fixed-point
/// factor (no division on the scheduling path), exact for the usual frequencies (62.5 MHz,
/// 1 GHz) and within a part in 2^32 otherwise.
pub fn ticks_to_ns(ticks: u64) -> u64 {
    let factor = u128::from(NS_PER_TICK_32_32.load(core::sync::atomic::Ordering::Relaxed));
    ((u128::from(ticks) * factor) >> 32).min(u128::from(u64::MAX)) as u64
}

/// Nanoseconds per tick in 32.32 fixed point, set by [`init_cpu`].
static NS_PER_TICK_32_32: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Nanoseconds of system time to counter ticks, rounded up (a deadline never comes early);
/// saturates at `u64::MAX` (never).
pub fn ns_to_ticks(ns: u64) -> u64 {
    let ticks = (u128::from(ns) * u128::from(frequency())).div_ceil(NS_PER_SECOND);
    ticks.min(u128::from(u64::MAX)) as u64
}

const NS_PER_SECOND: u128 = 1_000_000_000;

/// Microseconds to counter ticks.
pub fn us_to_ticks(us: u64) -> u64 {
    us.saturating_mul(frequency()) / 1_000_000
}
