//! A minimal GIC driver for GICv3 ([`v3`]: distributor, redistributors, ICC_* system registers)
//! and GICv2 ([`v2`]: memory-mapped distributor and CPU interface, e.g. the GIC-400). The
//! runtime records the GIC the device tree names before `main` runs; each call below goes to
//! that version's driver, so a guest runs unchanged on either.

mod v2;
mod v3;

use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

/// INTIDs at and above this are special (1020..1023: spurious and reserved), in both versions.
pub const INTID_SPECIAL_FIRST: u32 = mica_guest_abi::gicv3::INTID_SPECIAL_FIRST;

const _: () = assert!(INTID_SPECIAL_FIRST == mica_guest_abi::gicv2::INTID_SPECIAL_FIRST);

/// How often to poll a busy bit (RWP, ChildrenAsleep) before giving up.
const POLL_LIMIT: u32 = 1 << 20;

/// Which GIC the device tree named (0: none yet).
static VERSION: AtomicU8 = AtomicU8::new(0);

/// Why the GIC could not be set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GicError {
    /// The device tree has no GICv3 or GICv2 node.
    NotFound,
    /// No redistributor in the region has this CPU's affinity (GICv3).
    NoRedistributor,
    /// A register never reported the expected state.
    Timeout,
    /// The INTID is not a PPI or SGI.
    BadIntid,
}

/// Records a GICv3's distributor and redistributor region (done by the runtime from the device
/// tree).
pub fn set_regions(gicd: usize, gicr: usize, gicr_size: usize) {
    v3::set_regions(gicd, gicr, gicr_size);
    VERSION.store(3, Ordering::Release);
}

/// Records a GICv2's distributor and CPU interface (done by the runtime from the device tree).
pub fn set_regions_v2(gicd: usize, gicc: usize) {
    v2::set_regions(gicd, gicc);
    VERSION.store(2, Ordering::Release);
}

/// The architecture version of the GIC in use: 2 or 3, or `None` if the device tree named none.
pub fn version() -> Option<u8> {
    match VERSION.load(Ordering::Acquire) {
        0 => None,
        v => Some(v),
    }
}

/// Enables the distributor for the guest's interrupts. Call once.
pub fn init_distributor() -> Result<(), GicError> {
    match version() {
        Some(3) => v3::init_distributor(),
        Some(_) => v2::init_distributor(),
        None => Err(GicError::NotFound),
    }
}

/// Sets up this CPU's interface (and on GICv3 its redistributor) to signal interrupts of any
/// priority. Call on each CPU that takes interrupts.
pub fn init_cpu() -> Result<(), GicError> {
    match version() {
        Some(3) => v3::init_cpu(),
        Some(_) => v2::init_cpu(),
        None => Err(GicError::NotFound),
    }
}

/// Gives SGI or PPI `intid` `priority` and enables it on this CPU.
pub fn enable_private(intid: u32, priority: u8) -> Result<(), GicError> {
    match version() {
        Some(3) => v3::enable_private(intid, priority),
        Some(_) => v2::enable_private(intid, priority),
        None => Err(GicError::NotFound),
    }
}

/// Disables SGI or PPI `intid` on this CPU.
pub fn disable_private(intid: u32) -> Result<(), GicError> {
    match version() {
        Some(3) => v3::disable_private(intid),
        Some(_) => v2::disable_private(intid),
        None => Err(GicError::NotFound),
    }
}

/// Acknowledges the highest-priority pending interrupt and returns its INTID (at or above
/// [`INTID_SPECIAL_FIRST`]: nothing to handle; always so without a GIC).
pub fn acknowledge() -> u32 {
    // One compare on the interrupt path; without a GIC, `v2` finds no CPU interface.
    match VERSION.load(Ordering::Relaxed) {
        3 => v3::acknowledge(),
        _ => v2::acknowledge(),
    }
}

/// Signals the end of interrupt `intid` (EOImode 0: this also deactivates it).
pub fn end_of_interrupt(intid: u32) {
    match VERSION.load(Ordering::Relaxed) {
        3 => v3::end_of_interrupt(intid),
        _ => v2::end_of_interrupt(intid),
    }
}

/// RD_base of the calling CPU's redistributor (GICv3 only).
pub fn redistributor() -> Result<usize, GicError> {
    match version() {
        Some(3) => v3::redistributor(),
        Some(_) => Err(GicError::NoRedistributor),
        None => Err(GicError::NotFound),
    }
}

/// A window the runtime recorded from the device tree (0: none).
fn recorded(base: &AtomicUsize) -> Result<usize, GicError> {
    match base.load(Ordering::Acquire) {
        0 => Err(GicError::NotFound),
        base => Ok(base),
    }
}

fn read32(addr: usize) -> u32 {
    // SAFETY: callers only pass addresses inside the GIC regions the device tree named, which
    // the runtime made Device memory in the identity map.
    unsafe { crate::mmio::read32(addr) }
}

fn write32(addr: usize, value: u32) {
    // SAFETY: as in `read32`.
    unsafe { crate::mmio::write32(addr, value) }
}

fn read64(addr: usize) -> u64 {
    // SAFETY: as in `read32`; only used for GICR_TYPER, which allows 64-bit reads.
    unsafe { crate::mmio::read64(addr) }
}

fn poll(addr: usize, mask: u32, want_set: bool) -> Result<(), GicError> {
    for _ in 0..POLL_LIMIT {
        if (read32(addr) & mask != 0) == want_set {
            return Ok(());
        }
        core::hint::spin_loop();
    }
    Err(GicError::Timeout)
}
