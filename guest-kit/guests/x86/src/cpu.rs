//! CPU helpers.

/// CPUID leaf `leaf`: (eax, ebx, ecx, edx).
pub fn cpuid(leaf: u32) -> [u32; 4] {
    let r = core::arch::x86_64::__cpuid_count(leaf, 0);
    [r.eax, r.ebx, r.ecx, r.edx]
}

/// Writes an MSR.
///
/// # Safety
/// The MSR and value must be valid for this (virtual) CPU.
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: the caller guarantees the write is valid.
    unsafe {
        core::arch::asm!("wrmsr", in("ecx") msr, in("eax") value as u32,
            in("edx") (value >> 32) as u32, options(nostack))
    };
}

/// Writes a byte to an I/O port.
pub fn outb(port: u16, value: u8) {
    // SAFETY: the guest's own (emulated) ports; no memory effects.
    unsafe {
        core::arch::asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack))
    };
}

/// Reads the time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC only reads the counter.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Stops for good.
pub fn halt() -> ! {
    loop {
        // SAFETY: masks interrupts and halts; no memory effects.
        unsafe { core::arch::asm!("cli", "hlt", options(nomem, nostack)) };
    }
}
