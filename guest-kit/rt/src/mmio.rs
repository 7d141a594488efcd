//! Device-register access with plain single-register loads and stores. A hypervisor
//! emulates a trapped access from the syndrome the CPU reports, and the CPU reports one only
//! for such instructions (no writeback, no pairs): `read_volatile` leaves the instruction to
//! the compiler, which under `opt-level = "z"` chose a form with no syndrome.

/// Reads the 32-bit register at `addr`.
///
/// # Safety
/// `addr` must be a 4-byte aligned device register mapped for this guest.
pub unsafe fn read32(addr: usize) -> u32 {
    let v: u32;
    // SAFETY: guaranteed by the caller; the load touches only that register.
    unsafe {
        core::arch::asm!("ldr {v:w}, [{a}]", a = in(reg) addr, v = out(reg) v, options(nostack, readonly))
    };
    v
}

/// Writes the 32-bit register at `addr`.
///
/// # Safety
/// As for [`read32`], and the register must be writable.
pub unsafe fn write32(addr: usize, value: u32) {
    // SAFETY: guaranteed by the caller; the store touches only that register.
    unsafe {
        core::arch::asm!("str {v:w}, [{a}]", a = in(reg) addr, v = in(reg) value, options(nostack))
    };
}

/// Reads the 64-bit register at `addr`.
///
/// # Safety
/// `addr` must be an 8-byte aligned device register that allows 64-bit reads.
pub unsafe fn read64(addr: usize) -> u64 {
    let v: u64;
    // SAFETY: guaranteed by the caller; the load touches only that register.
    unsafe {
        core::arch::asm!("ldr {v:x}, [{a}]", a = in(reg) addr, v = out(reg) v, options(nostack, readonly))
    };
    v
}
