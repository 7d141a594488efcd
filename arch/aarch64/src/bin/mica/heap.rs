//! The hypervisor heap: a buddy allocator that starts with a small arena inside the image
//! and grows with memory from the frame allocator once RAM is known.

use buddy_system_allocator::LockedHeap;
use core::cell::UnsafeCell;

/// Order 32: blocks up to 4 GiB, far more than Mica ever asks for.
#[global_allocator]
static HEAP: LockedHeap<32> = LockedHeap::empty();

const BOOT_ARENA: usize = 256 * 1024;

#[repr(C, align(4096))]
struct Arena(UnsafeCell<[u8; BOOT_ARENA]>);

// SAFETY: handed to the allocator exactly once (`init`), which serializes all use.
unsafe impl Sync for Arena {}

static BOOT: Arena = Arena(UnsafeCell::new([0; BOOT_ARENA]));

/// Gives the boot arena to the allocator.
///
/// # Safety
/// Call once, on the boot CPU, before any allocation.
pub unsafe fn init() {
    let start = BOOT.0.get() as usize;
    // SAFETY: the arena is static, unused by anything else, and given exactly once.
    unsafe { HEAP.lock().init(start, BOOT_ARENA) };
}

/// Adds `[start, start + size)` of otherwise unused, mapped RAM to the heap.
///
/// # Safety
/// The range must be normal memory that nothing else uses, ever.
pub unsafe fn grow(start: usize, size: usize) {
    // SAFETY: guaranteed by the caller.
    unsafe { HEAP.lock().add_to_heap(start, start + size) };
}

/// Bytes handed out and bytes managed, for the footprint report.
pub fn usage() -> (usize, usize) {
    let heap = HEAP.lock();
    (heap.stats_alloc_actual(), heap.stats_total_bytes())
}
