//! Cache maintenance for data that a guest reads with its caches off.

use aarch64_cpu::asm::barrier;

fn dcache_line() -> usize {
    let ctr: u64;
    // SAFETY: reading CTR_EL0 has no side effects.
    unsafe { core::arch::asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack)) };
    4 << ((ctr >> 16) & 0xf)
}

/// Cleans `[start, start + len)` to the point of coherency.
pub fn clean_to_poc(start: usize, len: usize) {
    let line = dcache_line();
    let mut addr = start & !(line - 1);
    while addr < start + len {
        // SAFETY: cache maintenance by VA on mapped memory does not change its contents.
        unsafe { core::arch::asm!("dc cvac, {}", in(reg) addr, options(nostack)) };
        addr += line;
    }
    barrier::dsb(barrier::SY);
}

/// Invalidates all instruction caches (after loading guest code).
pub fn invalidate_icache() {
    // SAFETY: instruction-cache invalidation has no memory-safety effect.
    unsafe { core::arch::asm!("ic ialluis", "dsb ish", "isb", options(nostack)) };
}
