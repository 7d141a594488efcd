//! The `pvtest.peer` mode: grants mapped between two domains, both ends in this binary.
//!
//! The granter (a `xen,enhanced` domU, domain 1) grants page P read-only and page Q writable
//! to domain 0, and puts a header at the start of P naming both references. It then finds the
//! port domain 0 left unbound for it by trying `EVTCHNOP_bind_interdomain(0, p)` for small
//! `p`, and sends "ready" on it. Domain 0 (the `grant-map` check) maps P and Q into the first
//! extended region of its hypervisor node with GNTTABOP_map_grant_ref, checks what a mapping
//! allows (and what GNTTABOP_copy does with the mapped page as its own frame, and with P by
//! its reference), unmaps, and sends "done"; the granter checks Q holds what domain 0 wrote, that
//! neither entry is still in use (no GTF_reading / GTF_writing) and that both revoke, prints
//! `pvpeer: ok grant-peer` or `pvpeer: FAIL grant-peer: <why>`, and sends its "verdict" on
//! the same channel before it shuts down (poweroff, or crash on failure). Domain 0 waits for
//! that verdict before it carries on, so the granter's lines are out before domain 0 powers
//! the machine off.
//!
//! Both ends keep the port masked and wait for it to become pending with SCHEDOP_poll (which
//! a masked port wakes): no upcall handler takes the events, so none can be lost between a
//! check and a sleep.
//!
//! Domain 0 finds P's reference without being told: a fresh table hands out the first
//! reference after the reserved ones (8) first, and P is the granter's first grant. The
//! header in P then names Q's reference, and domain 0 checks it also names 8 for P.

use crate::ReasonBuf;
use crate::{gfn, page_byte, set_page_byte, system_time_in, Context, Outcome, Page};
use core::cell::UnsafeCell;
use core::fmt;
use mica_guest_abi::xen::gnttab::GNTTAB_NR_RESERVED_ENTRIES;
use mica_guest_rt::xen::{self, evtchn, grant, hypercall, DomId, DOMID_SELF};
use mica_guest_rt::{mmu, println, timer};

/// The word on the kernel command line (/chosen/bootargs) that selects this mode.
pub const PEER_ARG: &str = "pvtest.peer";
/// The granting domain: the first dom0less domU.
const GRANTER: DomId = 1;
/// The domain the grants are for.
const GRANTEE: DomId = 0;
/// P's reference: the first one a fresh table hands out.
const FIRST_REF: u32 = GNTTAB_NR_RESERVED_ENTRIES;
/// Ports the granter tries when looking for domain 0's unbound port.
const SEARCHED_PORTS: u32 = 64;
/// How long either side waits for the other, in milliseconds of counter time: long enough for
/// a slow boot of the other side under TCG on a loaded host.
const PEER_WAIT_MS: u64 = 10_000;
/// The granter's sleep between two searches for the port.
const SEARCH_SLEEP_MS: u64 = 2;
/// The start of P: a magic value, then P's and Q's references (little-endian u32s).
const MAGIC: [u8; 8] = *b"pvpeer\x01\x00";
const HEADER_LEN: usize = 16;
/// Pattern seeds: P's contents, Q's contents as granted, what domain 0 writes into Q, and what
/// domain 0's own page holds when a copy must not have reached it.
const SEED_P: u8 = 0x5a;
const SEED_Q: u8 = 0x21;
const SEED_WRITTEN: u8 = 0xc3;
const SEED_MARKER: u8 = 0x96;

/// Byte `i` of the pattern with `seed`: every byte of a page depends on its index.
fn pattern(seed: u8, i: usize) -> u8 {
    ((i as u8).wrapping_mul(31) ^ (i >> 8) as u8).wrapping_add(seed)
}

/// P's header for references `p` and `q`.
fn header(p: u32, q: u32) -> [u8; HEADER_LEN] {
    let mut bytes = [0; HEADER_LEN];
    bytes[..8].copy_from_slice(&MAGIC);
    bytes[8..12].copy_from_slice(&p.to_le_bytes());
    bytes[12..].copy_from_slice(&q.to_le_bytes());
    bytes
}

/// Byte `i` of P as granted with header `head`.
fn p_byte(head: &[u8; HEADER_LEN], i: usize) -> u8 {
    head.get(i).copied().unwrap_or_else(|| pattern(SEED_P, i))
}

/// The first index at which `got` differs from `want` over a page, with both bytes.
fn first_difference(
    got: impl Fn(usize) -> u8,
    want: impl Fn(usize) -> u8,
) -> Option<(usize, u8, u8)> {
    (0..xen::PAGE_SIZE).find_map(|i| {
        let (g, w) = (got(i), want(i));
        (g != w).then_some((i, g, w))
    })
}

/// Waits until the masked `port` is pending, sleeping in SCHEDOP_poll (a masked port wakes
/// it; the timeout is only a backstop), for at most `limit_ms`. Returns whether it became
/// pending.
fn wait_pending(port: u32, limit_ms: u64) -> Result<bool, xen::XenError> {
    let end = timer::counter().saturating_add(timer::ms_to_ticks(limit_ms));
    while !evtchn::is_pending(port) {
        let now = timer::counter();
        if now >= end {
            return Ok(false);
        }
        let left_ms = timer::ticks_to_ns(end - now) / 1_000_000 + 1;
        hypercall::sched_poll(&[port], system_time_in(left_ms.min(500)))?;
    }
    Ok(true)
}

// ---------------------------------------------------------------------------------------
// Domain 0: the `grant-map` check.
// ---------------------------------------------------------------------------------------

/// The statuses domain 0 records, in the order of the steps.
const STEPS: [&str; 12] = [
    "map-ro",
    "map-rw-of-ro",
    "copy-into-ro",
    "copy-from-ro",
    "copy-into-ro-gref",
    "copy-from-ro-gref",
    "unmap-ro",
    "unmap-again",
    "map-rw",
    "copy-from-rw",
    "copy-into-rw",
    "unmap-rw",
];

#[derive(Clone, Copy)]
enum Step {
    MapRo,
    MapRwOfRo,
    CopyIntoRo,
    CopyFromRo,
    CopyIntoRoGref,
    CopyFromRoGref,
    UnmapRo,
    UnmapAgain,
    MapRw,
    CopyFromRw,
    CopyIntoRw,
    UnmapRw,
}

/// Domain 0's own page for the copies.
static OWN: Page = Page(UnsafeCell::new([0; 4096]));

/// Domain 0's side of the exchange, kept so a failed step still cleans up.
struct Grantee {
    statuses: [Option<i16>; STEPS.len()],
    /// The mappings in place (address, handle), to remove if a step fails.
    mapped: [Option<(u64, u32)>; 2],
    /// The channel to the granter, once it said it is ready.
    port: Option<u32>,
}

impl Grantee {
    fn record(&mut self, step: Step, status: i16) -> i16 {
        self.statuses[step as usize] = Some(status);
        status
    }

    /// GNTTABOP_map_grant_ref of the granter's `gref` at `addr` (a page not mapped yet);
    /// records the status and remembers a mapping made, for the clean-up.
    fn map(
        &mut self,
        step: Step,
        gref: u32,
        addr: u64,
        readonly: bool,
    ) -> Result<grant::GrantMapping, Outcome> {
        let Some(slot) = self.mapped.iter().position(Option::is_none) else {
            bail!("more than two mappings at once");
        };
        // SAFETY: `addr` is a page of the extended region, where this guest keeps nothing.
        let mapping = match unsafe { grant::map(GRANTER, gref, addr, readonly) } {
            Ok(mapping) => mapping,
            Err(e) => bail!("GNTTABOP_map_grant_ref of ref {gref} at {addr:#x}: {e}"),
        };
        if mapping.status == grant::GNTST_OKAY {
            self.mapped[slot] = Some((addr, mapping.handle));
        }
        self.record(step, mapping.status);
        Ok(mapping)
    }

    /// GNTTABOP_unmap_grant_ref of (`addr`, `handle`); returns the status.
    fn unmap(&mut self, step: Step, addr: u64, handle: u32) -> Result<i16, Outcome> {
        // SAFETY: nothing borrows the page at `addr`; it is only read and written through raw
        // pointers while mapped, and not touched after this.
        let status = match unsafe { grant::unmap(addr, handle) } {
            Ok(status) => status,
            Err(e) => bail!("GNTTABOP_unmap_grant_ref({addr:#x}, handle {handle}): {e}"),
        };
        if status == grant::GNTST_OKAY {
            for slot in &mut self.mapped {
                if *slot == Some((addr, handle)) {
                    *slot = None;
                }
            }
        }
        Ok(self.record(step, status))
    }

    /// GNTTABOP_copy of a whole page; returns the status.
    fn copy(
        &mut self,
        step: Step,
        from: grant::CopyEnd,
        to: grant::CopyEnd,
    ) -> Result<i16, Outcome> {
        // SAFETY: the destination is OWN, the mapped page or the granter's page, only accessed
        // through raw pointers, never borrowed.
        let status = match unsafe { grant::copy(from, to, xen::PAGE_SIZE as u16) } {
            Ok(status) => status,
            Err(e) => bail!("GNTTABOP_copy from {from:?} to {to:?}: {e}"),
        };
        Ok(self.record(step, status))
    }
}

/// Byte `i` of the page mapped at `addr`.
///
/// # Safety
/// A grant must be mapped at `addr` (stage 2) and the page made Normal memory (stage 1).
unsafe fn mapped_byte(addr: u64, i: usize) -> u8 {
    let byte = (addr as usize as *const u8).wrapping_add(i % xen::PAGE_SIZE);
    // SAFETY: the caller guarantees the page is mapped; volatile, as another domain shares it.
    unsafe { byte.read_volatile() }
}

/// Writes byte `i` of the page mapped writable at `addr`.
///
/// # Safety
/// A grant must be mapped writable at `addr` (stage 2) and the page made Normal memory.
unsafe fn set_mapped_byte(addr: u64, i: usize, value: u8) {
    let byte = (addr as usize as *mut u8).wrapping_add(i % xen::PAGE_SIZE);
    // SAFETY: as in `mapped_byte`, for a writable mapping.
    unsafe { byte.write_volatile(value) }
}

/// This domain's own frame `gfn`, as a copy names it.
fn own_frame(gfn: u64) -> grant::CopyEnd {
    grant::CopyEnd::Frame {
        domid: DOMID_SELF,
        gfn,
        offset: 0,
    }
}

fn fill_own(seed: u8) {
    for i in 0..xen::PAGE_SIZE {
        set_page_byte(&OWN, i, pattern(seed, i));
    }
}

/// The `grant-map` check (domain 0): see the module documentation. Prints every status it
/// recorded in one `pvtest: note grant-map statuses` line and folds them into the result.
pub fn check_grant_map(context: &mut Context) -> Result<(), Outcome> {
    let mut side = Grantee {
        statuses: [None; STEPS.len()],
        mapped: [None; 2],
        port: None,
    };
    let steps = grant_map_steps(context, &mut side);
    let mut cleanup = Ok(());
    for (addr, handle) in side.mapped.into_iter().flatten() {
        // A step failed with a mapping in place: remove it so the granter can revoke.
        // SAFETY: nothing borrows the page; it is not touched after this.
        match unsafe { grant::unmap(addr, handle) } {
            Ok(grant::GNTST_OKAY) => {}
            other => {
                cleanup = Err(ReasonBuf::new(format_args!(
                    "clean-up unmap of ({addr:#x}, handle {handle}): {other:?}"
                )))
            }
        }
    }
    let verdict = match side.port {
        Some(port) => finish(port),
        None => Ok(()),
    };
    println!(
        "pvtest: note grant-map statuses{}",
        StatusLine(&side.statuses)
    );
    for status in side.statuses {
        context.measure(status.map_or(0x7fff_ffff, |s| s as u64));
    }
    steps?;
    cleanup?;
    verdict
}

/// The recorded statuses as ` name=value` words (`none` for a step not reached).
struct StatusLine<'a>(&'a [Option<i16>; STEPS.len()]);

impl fmt::Display for StatusLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, status) in STEPS.iter().zip(self.0) {
            match status {
                Some(status) => write!(f, " {name}={status}")?,
                None => write!(f, " {name}=none")?,
            }
        }
        Ok(())
    }
}

/// Sends "done" on `port` and waits for the granter's verdict.
fn finish(port: u32) -> Result<(), Outcome> {
    evtchn::clear_pending(port);
    if let Err(e) = evtchn::send(port) {
        bail!("EVTCHNOP_send({port}) of \"done\": {e}");
    }
    match wait_pending(port, PEER_WAIT_MS) {
        Ok(true) => {
            evtchn::clear_pending(port);
            println!("pvtest: note domain {GRANTER} reported its verdict");
            if let Err(e) = evtchn::close(port) {
                bail!("EVTCHNOP_close({port}): {e}");
            }
            Ok(())
        }
        Ok(false) => {
            bail!("no verdict from domain {GRANTER} on port {port} within {PEER_WAIT_MS} ms")
        }
        Err(e) => bail!("SCHEDOP_poll on port {port}: {e}"),
    }
}

fn grant_map_steps(context: &mut Context, side: &mut Grantee) -> Result<(), Outcome> {
    let Some(node) = context.node else {
        bail!("no hypervisor node");
    };
    let Some((base, size)) = node.extended_region else {
        bail!("the hypervisor node has no extended region (reg[1]) to map grants at");
    };
    let first = base.next_multiple_of(xen::PAGE_SIZE);
    if first + 2 * xen::PAGE_SIZE > base + size {
        bail!("extended region {base:#x}+{size:#x} holds fewer than two pages");
    }
    let (e, e1) = (first as u64, (first + xen::PAGE_SIZE) as u64);
    let e_gfn = e / xen::PAGE_SIZE as u64;
    if let Err(err) = mmu::map_normal(first, 2 * xen::PAGE_SIZE) {
        bail!("making {e:#x} Normal memory: {err:?}");
    }

    // The granter binds this port and says it is ready.
    let port = match evtchn::alloc_unbound(GRANTER) {
        Ok(port) => port,
        Err(err) => bail!("EVTCHNOP_alloc_unbound({GRANTER}): {err}"),
    };
    evtchn::mask(port);
    println!(
        "pvtest: note extended region {base:#x}+{size:#x}, mapping at {e:#x}; port {port} for domain {GRANTER}"
    );
    match wait_pending(port, PEER_WAIT_MS) {
        Ok(true) => {}
        Ok(false) => bail!("domain {GRANTER} never bound port {port} and said it is ready"),
        Err(err) => bail!("SCHEDOP_poll on port {port}: {err}"),
    }
    side.port = Some(port);

    // a. P read-only at E: the pattern reads back, and the header names Q.
    let mapping = side.map(Step::MapRo, FIRST_REF, e, true)?;
    if mapping.status != grant::GNTST_OKAY {
        bail!(
            "read-only map of ref {FIRST_REF} at {e:#x}: status {}",
            mapping.status
        );
    }
    let handle = mapping.handle;
    // Used only while a grant is mapped at E.
    let at_e = |i| {
        // SAFETY: a grant is mapped at E (stage 2), which is Normal memory (stage 1).
        unsafe { mapped_byte(e, i) }
    };
    let mut head = [0u8; HEADER_LEN];
    for (i, byte) in head.iter_mut().enumerate() {
        *byte = at_e(i);
    }
    let [p_ref, q_ref] =
        [8, 12].map(|at| u32::from_le_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]));
    if head[..8] != MAGIC || p_ref != FIRST_REF {
        bail!("ref {FIRST_REF} does not start with P's header: {head:02x?}");
    }
    if let Some((i, got, want)) = first_difference(at_e, |i| p_byte(&head, i)) {
        bail!("P byte {i} reads {got:#x} through the mapping, want {want:#x}");
    }
    context.measure(u64::from(p_ref) << 32 | u64::from(q_ref));

    // b. The read-only grant mapped writable: refused.
    let status = side.map(Step::MapRwOfRo, FIRST_REF, e1, false)?.status;
    if status == grant::GNTST_OKAY {
        bail!("ref {FIRST_REF} (read-only grant) mapped writable at {e1:#x}");
    }

    // c. E as this domain's own frame in copies, then P by its reference: whatever the
    // statuses, P must not change, and a copy out of it must bring P's bytes or none.
    let own = |i| page_byte(&OWN, i);
    let p_gref = grant::CopyEnd::Grant {
        domid: GRANTER,
        gref: FIRST_REF,
        offset: 0,
    };
    for (into, from, p_end) in [
        (Step::CopyIntoRo, Step::CopyFromRo, own_frame(e_gfn)),
        (Step::CopyIntoRoGref, Step::CopyFromRoGref, p_gref),
    ] {
        fill_own(SEED_MARKER);
        let status = side.copy(into, own_frame(gfn(&OWN)), p_end)?;
        if let Some((i, got, want)) = first_difference(at_e, |i| p_byte(&head, i)) {
            bail!("a copy into read-only P as {p_end:?} (status {status}) changed byte {i} to {got:#x} (was {want:#x})");
        }
        let status = side.copy(from, p_end, own_frame(gfn(&OWN)))?;
        let copied = if status == grant::GNTST_OKAY {
            first_difference(own, |i| p_byte(&head, i))
        } else {
            first_difference(own, |i| pattern(SEED_MARKER, i))
        };
        if let Some((i, got, want)) = copied {
            bail!("copy from P as {p_end:?} (status {status}): own byte {i} is {got:#x}, want {want:#x}");
        }
    }

    // d. Unmap, then the same unmap again.
    let status = side.unmap(Step::UnmapRo, e, handle)?;
    if status != grant::GNTST_OKAY {
        bail!("unmap of ({e:#x}, handle {handle}): status {status}");
    }
    let status = side.unmap(Step::UnmapAgain, e, handle)?;
    if status == grant::GNTST_OKAY {
        bail!("a second unmap of ({e:#x}, handle {handle}) succeeded");
    }

    // e. Q writable at E: written through the mapping, copies to and from E as own frame.
    let mapping = side.map(Step::MapRw, q_ref, e, false)?;
    if mapping.status != grant::GNTST_OKAY {
        bail!(
            "writable map of ref {q_ref} at {e:#x}: status {}",
            mapping.status
        );
    }
    let handle = mapping.handle;
    if let Some((i, got, want)) = first_difference(at_e, |i| pattern(SEED_Q, i)) {
        bail!("Q byte {i} reads {got:#x} through the mapping, want {want:#x}");
    }
    for i in 0..xen::PAGE_SIZE {
        // SAFETY: ref Q is mapped writable at E, Normal memory.
        unsafe { set_mapped_byte(e, i, pattern(SEED_WRITTEN, i)) };
    }
    if let Some((i, got, want)) = first_difference(at_e, |i| pattern(SEED_WRITTEN, i)) {
        bail!("Q byte {i} reads back {got:#x} after the write, want {want:#x}");
    }
    fill_own(SEED_MARKER);
    let status = side.copy(Step::CopyFromRw, own_frame(e_gfn), own_frame(gfn(&OWN)))?;
    let copied = if status == grant::GNTST_OKAY {
        first_difference(own, |i| pattern(SEED_WRITTEN, i))
    } else {
        first_difference(own, |i| pattern(SEED_MARKER, i))
    };
    if let Some((i, got, want)) = copied {
        bail!("copy from the writable mapping (status {status}): own byte {i} is {got:#x}, want {want:#x}");
    }
    // The same bytes as Q now holds: a copy that goes through leaves Q as written.
    fill_own(SEED_WRITTEN);
    side.copy(Step::CopyIntoRw, own_frame(gfn(&OWN)), own_frame(e_gfn))?;
    if let Some((i, got, want)) = first_difference(at_e, |i| pattern(SEED_WRITTEN, i)) {
        bail!("Q byte {i} is {got:#x} after a copy of the same bytes into it, want {want:#x}");
    }
    let status = side.unmap(Step::UnmapRw, e, handle)?;
    if status != grant::GNTST_OKAY {
        bail!("unmap of ({e:#x}, handle {handle}): status {status}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Domain 1: the granter.
// ---------------------------------------------------------------------------------------

/// P (granted read-only) and Q (granted writable).
static P: Page = Page(UnsafeCell::new([0; 4096]));
static Q: Page = Page(UnsafeCell::new([0; 4096]));

/// Runs the granter's side, prints its verdict, tells domain 0, and shuts down.
pub fn granter() -> ! {
    let mut port = None;
    let result = granter_steps(&mut port);
    match &result {
        Ok(()) => println!("pvpeer: ok grant-peer"),
        Err(why) => println!("pvpeer: FAIL grant-peer: {}", why.as_str()),
    }
    if let Some(port) = port {
        evtchn::clear_pending(port);
        if let Err(e) = evtchn::send(port) {
            println!("pvpeer: note EVTCHNOP_send({port}) of the verdict: {e}");
        }
    }
    xen::shutdown(if result.is_ok() {
        xen::ShutdownReason::Poweroff
    } else {
        xen::ShutdownReason::Crash
    })
}

/// Bails out of a granter step with a formatted reason.
macro_rules! fail {
    ($($arg:tt)*) => { return Err(ReasonBuf::new(format_args!($($arg)*))) };
}

fn granter_steps(bound: &mut Option<u32>) -> Result<(), ReasonBuf> {
    let Some(node) = xen::detect() else {
        fail!("no /hypervisor node compatible with \"xen,xen\"");
    };
    if let Err(e) = xen::map_shared_info() {
        fail!("XENMEM_add_to_physmap(shared_info): {e}");
    }
    if let Err(e) = xen::register_vcpu_info() {
        fail!("VCPUOP_register_vcpu_info: {e}");
    }
    if let Err(e) = evtchn::init(node.upcall_intid) {
        fail!("event-channel set-up: {e:?}");
    }
    mica_guest_rt::enable_irqs();
    if let Err(e) = grant::init(node.grant_region) {
        fail!("grant-table set-up: {e:?}");
    }
    let (p_ref, q_ref) = match (grant::alloc_ref(), grant::alloc_ref()) {
        (Ok(p), Ok(q)) => (p, q),
        (p, q) => fail!("no grant references: {p:?} {q:?}"),
    };
    let head = header(p_ref, q_ref);
    for i in 0..xen::PAGE_SIZE {
        set_page_byte(&P, i, p_byte(&head, i));
        set_page_byte(&Q, i, pattern(SEED_Q, i));
    }
    for (gref, page, readonly) in [(p_ref, &P, true), (q_ref, &Q, false)] {
        if let Err(e) = grant::grant_access(gref, GRANTEE, gfn(page), readonly) {
            fail!("granting ref {gref}: {e:?}");
        }
    }
    println!(
        "pvpeer: note P (gfn {:#x}) granted read-only as ref {p_ref}, Q (gfn {:#x}) writable as ref {q_ref}, to domain {GRANTEE}",
        gfn(&P),
        gfn(&Q)
    );

    // Domain 0's port for us: the only small port of domain 0 we can bind. A port of ours that
    // never fires serves as the sleep between searches.
    let idle = match evtchn::alloc_unbound(DOMID_SELF) {
        Ok(port) => port,
        Err(e) => fail!("EVTCHNOP_alloc_unbound(DOMID_SELF): {e}"),
    };
    evtchn::mask(idle);
    let end = timer::counter().saturating_add(timer::ms_to_ticks(PEER_WAIT_MS));
    let (port, remote) = loop {
        let found = (1..SEARCHED_PORTS)
            .find_map(|p| evtchn::bind_interdomain(GRANTEE, p).ok().map(|l| (l, p)));
        if let Some(found) = found {
            break found;
        }
        if timer::counter() >= end {
            fail!("no unbound port of domain {GRANTEE} to bind within {PEER_WAIT_MS} ms");
        }
        let _ = hypercall::sched_poll(&[idle], system_time_in(SEARCH_SLEEP_MS));
    };
    let _ = evtchn::close(idle);
    // The new port starts pending; it stays masked: SCHEDOP_poll waits for it.
    evtchn::mask(port);
    evtchn::clear_pending(port);
    *bound = Some(port);
    println!("pvpeer: note bound port {port} to domain {GRANTEE}'s port {remote}; ready");
    if let Err(e) = evtchn::send(port) {
        fail!("EVTCHNOP_send({port}) of \"ready\": {e}");
    }
    match wait_pending(port, PEER_WAIT_MS) {
        Ok(true) => evtchn::clear_pending(port),
        Ok(false) => fail!("no \"done\" from domain {GRANTEE} within {PEER_WAIT_MS} ms"),
        Err(e) => fail!("SCHEDOP_poll on port {port}: {e}"),
    }

    // Domain 0 wrote Q through its mapping and left P alone.
    if let Some((i, got, want)) =
        first_difference(|i| page_byte(&Q, i), |i| pattern(SEED_WRITTEN, i))
    {
        fail!("Q byte {i} is {got:#x}, want {want:#x} (written by domain {GRANTEE})");
    }
    if let Some((i, got, want)) = first_difference(|i| page_byte(&P, i), |i| p_byte(&head, i)) {
        fail!("read-only P byte {i} changed to {got:#x} (was {want:#x})");
    }
    let flags = [p_ref, q_ref].map(grant::entry_flags);
    println!(
        "pvpeer: note after \"done\": flags of ref {p_ref} {:?}, ref {q_ref} {:?}",
        flags[0], flags[1]
    );
    for (gref, flags) in [p_ref, q_ref].into_iter().zip(flags) {
        match flags {
            Some(flags) if flags & 0x18 == 0 => {}
            other => fail!("ref {gref} flags {other:?} still show GTF_reading/GTF_writing"),
        }
    }
    for gref in [p_ref, q_ref] {
        if let Err(e) = grant::revoke(gref) {
            fail!("revoking ref {gref}: {e:?}");
        }
    }
    Ok(())
}
