//! The PV console server for Xen-aware domains without a toolstack: Mica owns the ring
//! page (found by the guest through HVM_PARAM_CONSOLE_PFN) and the far end of its event
//! channel (HVM_PARAM_CONSOLE_EVTCHN).
//!
//! The ring indices live in guest memory and are untrusted. Mica keeps its own copy of
//! the indices it produces or consumes (`out_cons`, `in_prod`), reads only the guest's
//! (`out_prod`, `in_cons`), and checks that the distance between them fits the ring.

use super::env::XenEnv;
use super::mem::{self, frame_addr};
use super::{evtchn, Xen};
use crate::addr::GuestPhysAddr;
use mica_guest_abi::xen::console::*;
use mica_guest_abi::xen::DomId;

/// Mica's side of one console ring.
#[derive(Debug)]
pub(crate) struct PvConsole {
    gfn: u64,
    pub(crate) port: u32,
    out_cons: u32,
    in_prod: u32,
}

impl PvConsole {
    pub(crate) fn new(gfn: u64, port: u32) -> Self {
        Self {
            gfn,
            port,
            out_cons: 0,
            in_prod: 0,
        }
    }
    fn at(&self, offset: usize) -> Option<GuestPhysAddr> {
        frame_addr(self.gfn, offset as u64)
    }
}

/// Copies ring bytes starting at free-running index `index` (masked by `size`) into or out of
/// `buf`, in at most two pieces.
fn ring_span(index: u32, size: u32, len: usize) -> [(usize, usize, usize); 2] {
    let start = (index & (size - 1)) as usize;
    let first = len.min(size as usize - start);
    [(start, 0, first), (0, first, len - first)]
}

pub(crate) fn poll_output(
    xen: &mut Xen,
    domid: DomId,
    out: &mut [u8],
    env: &mut dyn XenEnv,
) -> usize {
    let Some(con) = xen.domains.get(&domid).and_then(|d| d.console.as_ref()) else {
        return 0;
    };
    let (Some(prod_at), Some(cons_at), Some(ring)) = (
        con.at(XENCONS_OUT_PROD),
        con.at(XENCONS_OUT_CONS),
        con.at(XENCONS_OUT),
    ) else {
        return 0;
    };
    let (cons, port) = (con.out_cons, con.port);
    let Some(mem) = env.memory(domid) else {
        return 0;
    };
    let Ok(prod) = mem::read_u32(mem, prod_at) else {
        return 0;
    };
    mem.barrier();
    let avail = prod.wrapping_sub(cons);
    let n = if avail > XENCONS_OUT_SIZE {
        // Nonsense producer: skip to it rather than dump stale ring contents.
        let _ = mem::write_u32(mem, cons_at, prod);
        set_out_cons(xen, domid, prod);
        return 0;
    } else {
        (avail as usize).min(out.len())
    };
    if n == 0 {
        return 0;
    }
    for (ring_off, buf_off, len) in ring_span(cons, XENCONS_OUT_SIZE, n) {
        if len == 0 {
            continue;
        }
        let Some(from) = ring.checked_add(ring_off as u64) else {
            return 0;
        };
        if mem.read(from, &mut out[buf_off..buf_off + len]).is_err() {
            return 0;
        }
    }
    mem.barrier();
    let new_cons = cons.wrapping_add(n as u32);
    let _ = mem::write_u32(mem, cons_at, new_cons);
    set_out_cons(xen, domid, new_cons);
    // Room was freed: a writer waiting for space may continue.
    evtchn::set_pending(xen, domid, port, env);
    n
}

fn set_out_cons(xen: &mut Xen, domid: DomId, v: u32) {
    if let Some(c) = xen.domains.get_mut(&domid).and_then(|d| d.console.as_mut()) {
        c.out_cons = v;
    }
}

pub(crate) fn push_input(xen: &mut Xen, domid: DomId, bytes: &[u8], env: &mut dyn XenEnv) -> usize {
    let Some(con) = xen.domains.get(&domid).and_then(|d| d.console.as_ref()) else {
        return 0;
    };
    let (Some(prod_at), Some(cons_at), Some(ring)) = (
        con.at(XENCONS_IN_PROD),
        con.at(XENCONS_IN_CONS),
        con.at(XENCONS_IN),
    ) else {
        return 0;
    };
    let (prod, port) = (con.in_prod, con.port);
    let Some(mem) = env.memory(domid) else {
        return 0;
    };
    let Ok(cons) = mem::read_u32(mem, cons_at) else {
        return 0;
    };
    let used = prod.wrapping_sub(cons);
    if used > XENCONS_IN_SIZE {
        // Nonsense consumer: treat the ring as full until the guest behaves.
        return 0;
    }
    let n = ((XENCONS_IN_SIZE - used) as usize).min(bytes.len());
    if n == 0 {
        return 0;
    }
    for (ring_off, buf_off, len) in ring_span(prod, XENCONS_IN_SIZE, n) {
        if len == 0 {
            continue;
        }
        let Some(to) = ring.checked_add(ring_off as u64) else {
            return 0;
        };
        if mem.write(to, &bytes[buf_off..buf_off + len]).is_err() {
            return 0;
        }
    }
    mem.barrier();
    let new_prod = prod.wrapping_add(n as u32);
    if mem::write_u32(mem, prod_at, new_prod).is_err() {
        return 0;
    }
    if let Some(c) = xen.domains.get_mut(&domid).and_then(|d| d.console.as_mut()) {
        c.in_prod = new_prod;
    }
    evtchn::set_pending(xen, domid, port, env);
    n
}
