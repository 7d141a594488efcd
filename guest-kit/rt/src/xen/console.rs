//! The PV console: CONSOLEIO_write for the initial domain (Xen prints it on its own console),
//! the shared ring page plus event channel (HVM_PARAM_CONSOLE_PFN / _EVTCHN) for other domains.

use super::abi::{ConsoleInterface, HVM_PARAM_CONSOLE_EVTCHN, HVM_PARAM_CONSOLE_PFN};
use super::{field_ptr, hypercall, XenError, PAGE_SIZE};
use core::mem::offset_of;
use core::sync::atomic::{AtomicU32, AtomicU8, AtomicUsize, Ordering};

/// Where console output goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// CONSOLEIO_write hypercalls.
    Hypercall,
    /// The console ring at `ring` (guest-physical), notified through event channel `port`.
    Ring { ring: usize, port: u32 },
}

/// Why the console could not be set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsoleError {
    /// Reading an HVM parameter failed.
    Xen(XenError),
    /// The hypervisor gave no console page or port (no console backend).
    NoRing,
    /// The ring page could not be mapped.
    Map(crate::mmu::MapError),
}

const NONE: u8 = 0;
const HYPERCALL: u8 = 1;
const RING: u8 = 2;
static MODE: AtomicU8 = AtomicU8::new(NONE);
static RING_ADDRESS: AtomicUsize = AtomicUsize::new(0);
static RING_PORT: AtomicU32 = AtomicU32::new(0);
/// How often to yield waiting for ring space before dropping output.
const RING_WAIT_LIMIT: u32 = 10_000;

/// Finds the ring of a non-initial domain: HVM_PARAM_CONSOLE_PFN and _EVTCHN.
pub fn find_ring() -> Result<(usize, u32), ConsoleError> {
    let pfn = hypercall::hvm_get_param(HVM_PARAM_CONSOLE_PFN).map_err(ConsoleError::Xen)?;
    let port = hypercall::hvm_get_param(HVM_PARAM_CONSOLE_EVTCHN).map_err(ConsoleError::Xen)?;
    let address = usize::try_from(pfn)
        .ok()
        .and_then(|pfn| pfn.checked_mul(PAGE_SIZE))
        .filter(|&a| a != 0 && pfn != u64::MAX);
    match (address, u32::try_from(port)) {
        (Some(address), Ok(port)) if port != 0 => Ok((address, port)),
        _ => Err(ConsoleError::NoRing),
    }
}

/// Chooses the backend: the hypercall for the initial domain, else the ring (mapped Normal).
/// Call after [`super::detect`].
pub fn init() -> Result<Backend, ConsoleError> {
    if super::is_initial_domain() {
        MODE.store(HYPERCALL, Ordering::Release);
        return Ok(Backend::Hypercall);
    }
    let (ring, port) = find_ring()?;
    use_ring(ring, port)?;
    Ok(Backend::Ring { ring, port })
}

/// Uses the ring at `ring` with event channel `port` from now on.
pub fn use_ring(ring: usize, port: u32) -> Result<(), ConsoleError> {
    crate::mmu::map_normal(ring, PAGE_SIZE).map_err(ConsoleError::Map)?;
    RING_ADDRESS.store(ring, Ordering::Release);
    RING_PORT.store(port, Ordering::Release);
    MODE.store(RING, Ordering::Release);
    Ok(())
}

/// Uses CONSOLEIO_write from now on.
pub fn use_hypercall() {
    MODE.store(HYPERCALL, Ordering::Release);
}

/// The backend in use, if any.
pub fn backend() -> Option<Backend> {
    match MODE.load(Ordering::Acquire) {
        HYPERCALL => Some(Backend::Hypercall),
        RING => Some(Backend::Ring {
            ring: RING_ADDRESS.load(Ordering::Acquire),
            port: RING_PORT.load(Ordering::Acquire),
        }),
        _ => None,
    }
}

/// Writes `bytes` to the console; returns how many were accepted.
pub fn write(bytes: &[u8]) -> usize {
    match backend() {
        Some(Backend::Hypercall) => write_hypercall(bytes),
        Some(Backend::Ring { ring, port }) => write_ring(ring, port, bytes),
        None => 0,
    }
}

/// CONSOLEIO_write, in as many calls as the hypervisor needs.
pub fn write_hypercall(mut bytes: &[u8]) -> usize {
    let total = bytes.len();
    while !bytes.is_empty() {
        match hypercall::console_write(bytes) {
            Ok(n) if n > 0 && n <= bytes.len() => bytes = &bytes[n..],
            // Xen returns 0 once everything is written on some versions; others the count.
            Ok(_) => return total,
            Err(_) => return total - bytes.len(),
        }
    }
    total
}

struct RingIndexes {
    out_cons: &'static AtomicU32,
    out_prod: &'static AtomicU32,
}

fn ring_indexes(ring: usize) -> RingIndexes {
    let ring = ring as *mut ConsoleInterface;
    let cons = field_ptr(ring, offset_of!(ConsoleInterface, out_cons));
    let prod = field_ptr(ring, offset_of!(ConsoleInterface, out_prod));
    // SAFETY: `ring` is the mapped console page (use_ring); the indexes are 4-aligned u32s
    // shared with the backend and accessed atomically.
    let out_cons = unsafe { AtomicU32::from_ptr(cons) };
    // SAFETY: as above.
    let out_prod = unsafe { AtomicU32::from_ptr(prod) };
    RingIndexes { out_cons, out_prod }
}

/// Copies `bytes` into the output ring, notifying the backend; waits (yielding) for space a
/// bounded number of times.
pub fn write_ring(ring: usize, port: u32, bytes: &[u8]) -> usize {
    let indexes = ring_indexes(ring);
    let out = (ring as *mut ConsoleInterface)
        .cast::<u8>()
        .wrapping_add(1024);
    let size = 2048u32;
    let mut written = 0;
    let mut waits = 0;
    while written < bytes.len() {
        let cons = indexes.out_cons.load(Ordering::Acquire);
        let mut prod = indexes.out_prod.load(Ordering::Relaxed);
        if prod.wrapping_sub(cons) > size {
            // The backend corrupted the indexes; give up rather than overwrite.
            return written;
        }
        let room = size - prod.wrapping_sub(cons);
        if room == 0 {
            let _ = hypercall::evtchn_send(port);
            waits += 1;
            if waits > RING_WAIT_LIMIT {
                return written;
            }
            hypercall::sched_yield();
            continue;
        }
        let chunk = (room as usize).min(bytes.len() - written);
        for &byte in &bytes[written..written + chunk] {
            let slot = out.wrapping_add((prod & (size - 1)) as usize);
            // SAFETY: `slot` is inside the 2048-byte output array of the mapped ring page.
            unsafe { slot.write_volatile(byte) };
            prod = prod.wrapping_add(1);
        }
        indexes.out_prod.store(prod, Ordering::Release);
        written += chunk;
        let _ = hypercall::evtchn_send(port);
    }
    written
}

/// Bytes written to the ring that the backend has not consumed yet (None without a ring).
pub fn ring_unconsumed() -> Option<u32> {
    match backend() {
        Some(Backend::Ring { ring, .. }) => {
            let indexes = ring_indexes(ring);
            Some(
                indexes
                    .out_prod
                    .load(Ordering::Acquire)
                    .wrapping_sub(indexes.out_cons.load(Ordering::Acquire)),
            )
        }
        _ => None,
    }
}
