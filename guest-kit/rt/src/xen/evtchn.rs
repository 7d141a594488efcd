//! Event channels, 2-level ABI: port masking, handlers, and dispatch of the upcall interrupt.
//!
//! Port p is bit p % 64 of word p / 64 in shared_info's `evtchn_pending` and `evtchn_mask`;
//! Xen sets a pending bit and, if the port is unmasked, bit p / 64 of this vCPU's
//! `evtchn_pending_sel` and `evtchn_upcall_pending`, then raises the upcall PPI. The guest
//! clears what it handles; Xen never clears pending bits.

use super::abi::{DomId, EVTCHN_2L_NR_CHANNELS};
use super::abi::{SharedInfo, VcpuInfo};
use super::{field_ptr, shared_info, vcpu_info, XenError};
use core::mem::offset_of;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};

pub use super::abi::{EVTCHNSTAT_INTERDOMAIN, EVTCHNSTAT_UNBOUND};
pub use super::hypercall::{
    evtchn_alloc_unbound as alloc_unbound, evtchn_bind_interdomain as bind_interdomain,
    evtchn_bind_ipi as bind_ipi, evtchn_bind_virq as bind_virq, evtchn_close as close,
    evtchn_send as send, evtchn_status as status, evtchn_unmask as unmask_hypercall, PortStatus,
};

/// Called from the upcall with the port that fired (already cleared).
pub type Handler = fn(u32);

const WORDS: usize = (EVTCHN_2L_NR_CHANNELS / 64) as usize;
const HANDLER_SLOTS: usize = 16;

/// (port, handler) pairs; port 0 marks a free slot (port 0 is never allocated).
static HANDLER_PORTS: [AtomicU32; HANDLER_SLOTS] = [const { AtomicU32::new(0) }; HANDLER_SLOTS];
static HANDLERS: [AtomicUsize; HANDLER_SLOTS] = [const { AtomicUsize::new(0) }; HANDLER_SLOTS];
static UPCALL_INTID: AtomicU32 = AtomicU32::new(0);
static UPCALLS: AtomicU32 = AtomicU32::new(0);
static UNHANDLED: AtomicU32 = AtomicU32::new(0);

/// Why event channels could not be set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitError {
    /// shared_info is not mapped yet.
    NoSharedInfo,
    /// The hypervisor node names no upcall PPI.
    NoUpcallIrq,
    /// The GIC could not be set up.
    Gic(crate::gic::GicError),
}

fn pending_word(word: usize) -> Option<&'static AtomicU64> {
    let shared = shared_info()?;
    if word >= WORDS {
        return None;
    }
    let field = field_ptr(shared, offset_of!(SharedInfo, evtchn_pending) + word * 8);
    // SAFETY: shared_info is mapped for the guest's lifetime; the pending bitmap is an
    // 8-aligned u64 array shared with Xen and only accessed atomically.
    Some(unsafe { AtomicU64::from_ptr(field) })
}

fn mask_word(word: usize) -> Option<&'static AtomicU64> {
    let shared = shared_info()?;
    if word >= WORDS {
        return None;
    }
    let field = field_ptr(shared, offset_of!(SharedInfo, evtchn_mask) + word * 8);
    // SAFETY: as in `pending_word`, for the mask bitmap.
    Some(unsafe { AtomicU64::from_ptr(field) })
}

fn split(port: u32) -> Option<(usize, u64)> {
    (port < EVTCHN_2L_NR_CHANNELS).then(|| ((port / 64) as usize, 1u64 << (port % 64)))
}

/// Masks every port, then enables the upcall PPI on this CPU's GIC and routes it to
/// [`handle_upcall`] through the runtime's IRQ handler. Unmask ports with [`unmask`].
/// IRQs stay masked in PSTATE: call [`crate::enable_irqs`] when ready.
pub fn init(upcall_intid: Option<u32>) -> Result<(), InitError> {
    if shared_info().is_none() {
        return Err(InitError::NoSharedInfo);
    }
    let intid = upcall_intid.ok_or(InitError::NoUpcallIrq)?;
    for word in 0..WORDS {
        if let Some(mask) = mask_word(word) {
            mask.store(u64::MAX, Ordering::SeqCst);
        }
    }
    UPCALL_INTID.store(intid, Ordering::Release);
    crate::gic::init_distributor().map_err(InitError::Gic)?;
    crate::gic::init_cpu().map_err(InitError::Gic)?;
    crate::gic::enable_private(intid, 0xa0).map_err(InitError::Gic)?;
    crate::exceptions::set_irq_handler(Some(irq_handler));
    Ok(())
}

fn irq_handler(intid: u32) {
    if !handle_irq(intid) {
        crate::console::emergency_print(format_args!("xen: unexpected IRQ {intid}\n"));
    }
}

/// Handles `intid` if it is the event-channel upcall; returns whether it was. For guests
/// that install their own IRQ handler.
pub fn handle_irq(intid: u32) -> bool {
    let upcall = UPCALL_INTID.load(Ordering::Acquire);
    if upcall == 0 || intid != upcall {
        return false;
    }
    handle_upcall();
    true
}

/// Runs the 2-level scan: for each selected word, each pending unmasked port is cleared and its
/// handler called. Loops while Xen raises `evtchn_upcall_pending` again.
pub fn handle_upcall() {
    let Some(vcpu) = vcpu_info() else { return };
    UPCALLS.fetch_add(1, Ordering::Relaxed);
    let pending = field_ptr(vcpu, offset_of!(VcpuInfo, evtchn_upcall_pending));
    let sel = field_ptr(vcpu, offset_of!(VcpuInfo, evtchn_pending_sel));
    // SAFETY: vcpu_info lives in shared_info or the registered page for the guest's lifetime;
    // its first byte is shared with Xen and accessed atomically.
    let upcall_pending = unsafe { AtomicU8::from_ptr(pending) };
    // SAFETY: as above, for the 8-aligned selector word.
    let selector = unsafe { AtomicU64::from_ptr(sel) };
    // Bounded: a port that keeps firing must not wedge the guest in its handler.
    for _ in 0..16 {
        upcall_pending.store(0, Ordering::SeqCst);
        let mut words = selector.swap(0, Ordering::SeqCst);
        while words != 0 {
            let word = words.trailing_zeros() as usize;
            words &= words - 1;
            scan_word(word);
        }
        if upcall_pending.load(Ordering::SeqCst) == 0 {
            break;
        }
    }
}

fn scan_word(word: usize) {
    let (Some(pending), Some(mask)) = (pending_word(word), mask_word(word)) else {
        return;
    };
    let mut ready = pending.load(Ordering::SeqCst) & !mask.load(Ordering::SeqCst);
    while ready != 0 {
        let bit = ready.trailing_zeros();
        ready &= ready - 1;
        pending.fetch_and(!(1u64 << bit), Ordering::SeqCst);
        dispatch(word as u32 * 64 + bit);
    }
}

fn dispatch(port: u32) {
    for (slot, handler) in HANDLER_PORTS.iter().zip(HANDLERS.iter()) {
        if slot.load(Ordering::Acquire) == port {
            let raw = handler.load(Ordering::Acquire);
            if raw != 0 {
                // SAFETY: only `Handler` pointers are stored in HANDLERS (set_handler).
                let handle = unsafe { core::mem::transmute::<usize, Handler>(raw) };
                handle(port);
                return;
            }
        }
    }
    UNHANDLED.fetch_add(1, Ordering::Relaxed);
}

/// Why a handler could not be registered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandlerError {
    /// Port 0 or beyond the 2-level limit.
    BadPort,
    /// All handler slots are taken.
    Full,
}

/// Calls `handler` when `port` fires (replacing an earlier handler for it). `None` removes it.
pub fn set_handler(port: u32, handler: Option<Handler>) -> Result<(), HandlerError> {
    if port == 0 || port >= EVTCHN_2L_NR_CHANNELS {
        return Err(HandlerError::BadPort);
    }
    let raw = handler.map_or(0, |f| f as *const () as usize);
    for (slot, stored) in HANDLER_PORTS.iter().zip(HANDLERS.iter()) {
        if slot.load(Ordering::Acquire) == port {
            stored.store(raw, Ordering::Release);
            if raw == 0 {
                slot.store(0, Ordering::Release);
            }
            return Ok(());
        }
    }
    if raw == 0 {
        return Ok(());
    }
    for (slot, stored) in HANDLER_PORTS.iter().zip(HANDLERS.iter()) {
        if slot
            .compare_exchange(0, port, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            stored.store(raw, Ordering::Release);
            return Ok(());
        }
    }
    Err(HandlerError::Full)
}

/// Sets `port`'s mask bit (events still become pending, but raise no upcall).
pub fn mask(port: u32) {
    if let Some((word, bit)) = split(port) {
        if let Some(mask) = mask_word(word) {
            mask.fetch_or(bit, Ordering::SeqCst);
        }
    }
}

/// Unmasks `port` with EVTCHNOP_unmask, which also re-raises the upcall if it is pending.
pub fn unmask(port: u32) -> Result<(), XenError> {
    unmask_hypercall(port)
}

/// Whether `port`'s pending bit is set.
pub fn is_pending(port: u32) -> bool {
    split(port)
        .and_then(|(word, bit)| Some(pending_word(word)?.load(Ordering::SeqCst) & bit != 0))
        .unwrap_or(false)
}

/// Clears `port`'s pending bit.
pub fn clear_pending(port: u32) {
    if let Some((word, bit)) = split(port) {
        if let Some(pending) = pending_word(word) {
            pending.fetch_and(!bit, Ordering::SeqCst);
        }
    }
}

/// Upcalls handled so far.
pub fn upcall_count() -> u32 {
    UPCALLS.load(Ordering::Relaxed)
}

/// Pending ports found with no handler (cleared and dropped).
pub fn unhandled_count() -> u32 {
    UNHANDLED.load(Ordering::Relaxed)
}

/// This domain's own id, learnt without privileges: an unbound port allocated for DOMID_SELF
/// records the caller's real id as the remote domain, which EVTCHNOP_status reports.
pub fn own_domid() -> Result<DomId, XenError> {
    let port = alloc_unbound(super::DOMID_SELF)?;
    let status = status(port);
    let _ = close(port);
    Ok(status?.peer_domain)
}
