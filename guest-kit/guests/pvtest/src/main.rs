//! Checks the Xen PV interfaces a hypervisor offers a guest, in order:
//! `detect` (the DT `hypervisor` node, XENVER_version = 4.17), `features` (submap 0 has
//! auto_translated_physmap), `shared-info` (XENMEM_add_to_physmap of shared_info reads back,
//! VCPUOP_register_vcpu_info, a second registration refused with -EINVAL),
//! `evtchn-loopback` (alloc_unbound + bind_interdomain to itself, send, the upcall PPI,
//! masking and EVTCHNOP_unmask re-raising, a send whose argument is unaligned or unmapped),
//! `poll` (SCHEDOP_poll on a masked port: at once when pending, blocks until its timeout
//! otherwise, refuses bad port lists), `poll-wake` (a poll on a masked port ends when the
//! second CPU sends to it), `poll-interrupt` (a poll with IRQs masked ends when the virtual
//! timer fires), `grant-copy` (a read-only grant of our own page, GNTTABOP_copy from it,
//! read-only enforced) and `console`
//! (CONSOLEIO_write as the initial domain, else the console ring + event channel) and
//! `device-buffer` (as the initial domain: a hypercall buffer placed on a device the domain
//! owns, the PL031 RTC, is refused with -EFAULT and the hypervisor carries on).
//!
//! Prints `pvtest: ok <check>` / `pvtest: FAIL <check>: <why>` (and `pvtest: skip <check>:
//! <why>` for a console a hypervisor does not offer a domU), `pvtest: note ...` lines with
//! measured values, then `pvtest: done <P> passed, <F> failed` and `pvtest: result <hash>`
//! (FNV-1a 32 over the deterministic measured values), then shuts down with SCHEDOP_shutdown:
//! poweroff if everything passed, crash otherwise (set with SCHEDOP_shutdown_code first).
//!
//! Whether it runs as the initial domain or a domU is automatic (XENFEAT_dom0). As the
//! initial domain (no UART in its device tree) all output goes through CONSOLEIO_write. As a
//! domU, output goes to the vPL011 if the device tree has one, else to the console ring; the
//! `console` check writes a line into the ring and waits for the backend to consume it. On
//! Xen 4.17 a dom0less `xen,enhanced` domU has no console ring without xenconsoled in dom0
//! (HVM_PARAM_CONSOLE_PFN is 0), so that check prints `skip` there.
//!
//! The result hash covers: the version, features submap 0, the get_features(1) result, the
//! shared_info read-back, own domid, the two loopback ports, the upcall counts, the closed-port
//! send error, max grant frames, the copied data's checksum and the statuses of the denied
//! and revoked copies, and the console byte count. So it is stable across runs of one
//! hypervisor and role, and differs between hypervisors that answer differently.
//!
//! With `pvtest.peer` among the words of /chosen/bootargs, two copies of pvtest test grant
//! mappings between domains instead (module `peer`; the `pvtest-grants` boot test). A domU
//! (the granter, domain 1, `xen,enhanced`) grants domain 0 one page read-only and one
//! writable, tells it over an interdomain event channel, and prints `pvpeer: ok grant-peer` /
//! `pvpeer: FAIL grant-peer: <why>` and `pvpeer: note ...` lines (its own prefix, so its
//! lines never mix with domain 0's). The initial domain runs `detect`, `features`,
//! `shared-info` and `evtchn-loopback`, then `grant-map`: it maps the two grants into the
//! first extended region of its hypervisor node with GNTTABOP_map_grant_ref (read-only; the
//! read-only grant writable, which must be refused; the writable one, written through),
//! uses the mapped page as its own frame in GNTTABOP_copy both ways (the read-only grant must
//! not change, whatever the status), unmaps (twice: the second must fail), and prints every
//! status in a `pvtest: note grant-map statuses` line, which the hash also covers. Without
//! the word, pvtest runs the checks above, unchanged.
#![no_std]
#![no_main]
// Failure reasons are formatted into a fixed buffer returned by value: no allocator here, and
// the checks run once.
#![allow(clippy::result_large_err)]

use core::cell::UnsafeCell;
use core::fmt;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use mica_guest_abi::layout::VIRT_TIMER_PPI;
use mica_guest_rt::xen::{self, evtchn, grant, hypercall, HypervisorNode, DOMID_SELF};
use mica_guest_rt::{cpu, devtree, println, psci, timer};

mica_guest_rt::entry!(main);

/// How long any wait may take, in milliseconds of counter time.
const WAIT_LIMIT_MS: u64 = 2000;
/// How long to watch for an upcall that must not come.
const QUIET_MS: u64 = 50;

/// What the checks found, shared between them.
struct Context {
    node: Option<HypervisorNode>,
    own_domid: Option<u16>,
    hash: u32,
}

impl Context {
    /// Folds a measured value into the result hash (FNV-1a over its little-endian bytes).
    fn measure(&mut self, value: u64) {
        for byte in value.to_le_bytes() {
            self.hash ^= u32::from(byte);
            self.hash = self.hash.wrapping_mul(0x0100_0193);
        }
    }
}

/// Runs checks and counts results.
struct Report {
    passed: u32,
    failed: u32,
}

enum Outcome {
    Fail(ReasonBuf),
    Skip(ReasonBuf),
}

impl From<ReasonBuf> for Outcome {
    fn from(reason: ReasonBuf) -> Self {
        Self::Fail(reason)
    }
}

impl Report {
    fn check(
        &mut self,
        name: &str,
        context: &mut Context,
        run: impl FnOnce(&mut Context) -> Result<(), Outcome>,
    ) {
        match run(context) {
            Ok(()) => {
                self.passed += 1;
                println!("pvtest: ok {name}");
            }
            Err(Outcome::Fail(reason)) => {
                self.failed += 1;
                println!("pvtest: FAIL {name}: {}", reason.as_str());
            }
            Err(Outcome::Skip(reason)) => println!("pvtest: skip {name}: {}", reason.as_str()),
        }
    }
}

/// A failure reason, formatted into a fixed buffer (no allocator in this guest).
struct ReasonBuf {
    bytes: [u8; 160],
    len: usize,
}

impl ReasonBuf {
    fn new(args: fmt::Arguments<'_>) -> Self {
        let mut buf = Self {
            bytes: [0; 160],
            len: 0,
        };
        let _ = fmt::Write::write_fmt(&mut buf, args);
        buf
    }

    fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("<reason not UTF-8>")
    }
}

impl fmt::Write for ReasonBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for ch in s.chars() {
            let mut utf8 = [0; 4];
            let encoded = ch.encode_utf8(&mut utf8).as_bytes();
            let end = self.len + encoded.len();
            if end > self.bytes.len() {
                break;
            }
            self.bytes[self.len..end].copy_from_slice(encoded);
            self.len = end;
        }
        Ok(())
    }
}

/// Returns early from a check with a formatted reason.
macro_rules! bail {
    ($($arg:tt)*) => { return Err(ReasonBuf::new(format_args!($($arg)*)).into()) };
}

// After `bail!`, which it uses.
mod peer;

fn main() {
    let mut context = Context {
        node: None,
        own_domid: None,
        hash: 0x811c_9dc5,
    };
    let mut report = Report {
        passed: 0,
        failed: 0,
    };
    let peer = devtree::bootargs_has(peer::PEER_ARG);
    if peer && !(xen::detect().is_some() && xen::is_initial_domain()) {
        peer::granter();
    }
    report.check("detect", &mut context, check_detect);
    report.check("features", &mut context, check_features);
    report.check("shared-info", &mut context, check_shared_info);
    report.check("evtchn-loopback", &mut context, check_evtchn_loopback);
    if peer {
        report.check("grant-map", &mut context, peer::check_grant_map);
    } else {
        report.check("poll", &mut context, check_poll);
        report.check("poll-wake", &mut context, check_poll_wake);
        report.check("poll-interrupt", &mut context, check_poll_interrupt);
        report.check("grant-copy", &mut context, check_grant_copy);
        report.check("console", &mut context, check_console);
        report.check("device-buffer", &mut context, check_device_buffer);
    }
    println!(
        "pvtest: done {} passed, {} failed",
        report.passed, report.failed
    );
    println!("pvtest: result {:08x}", context.hash);
    let reason = if report.failed == 0 {
        xen::ShutdownReason::Poweroff
    } else {
        xen::ShutdownReason::Crash
    };
    xen::shutdown(reason)
}

/// Waits until `done()` or `limit_ms` have passed; returns whether `done()` held.
fn wait_until(limit_ms: u64, mut done: impl FnMut() -> bool) -> bool {
    let end = timer::counter().saturating_add(timer::ms_to_ticks(limit_ms));
    loop {
        if done() {
            return true;
        }
        if timer::counter() >= end {
            return done();
        }
        core::hint::spin_loop();
    }
}

fn check_detect(context: &mut Context) -> Result<(), Outcome> {
    let Some(node) = xen::detect() else {
        bail!("no /hypervisor node compatible with \"xen,xen\"");
    };
    context.node = Some(node);
    let (major, minor) = match hypercall::xen_version() {
        Ok(version) => version,
        Err(e) => bail!("XENVER_version: {e}"),
    };
    let role = if xen::is_initial_domain() {
        "initial domain"
    } else {
        "domU"
    };
    println!(
        "pvtest: note xen {major}.{minor}, DT \"xen,xen-{}\", {role}, grant region {:x?}, upcall INTID {:?}",
        node.version, node.grant_region, node.upcall_intid
    );
    context.measure(u64::from(major) << 16 | u64::from(minor));
    if (major, minor) != (4, 17) {
        bail!("XENVER_version says {major}.{minor}, want 4.17");
    }
    Ok(())
}

fn check_features(context: &mut Context) -> Result<(), Outcome> {
    let features = match hypercall::get_features(0) {
        Ok(features) => features,
        Err(e) => bail!("XENVER_get_features(0): {e}"),
    };
    println!("pvtest: note features[0] = {features:#x}");
    context.measure(u64::from(features));
    if features != xen::features() {
        bail!(
            "submap 0 changed: {features:#x}, at detection {:#x}",
            xen::features()
        );
    }
    if !xen::is_auto_translated() {
        bail!("auto_translated_physmap (bit 2) is clear in {features:#x}");
    }
    // Submap 1 does not exist: Xen answers -EINVAL.
    let beyond = hypercall::get_features(1);
    context.measure(beyond.map_or_else(|e| e.0 as u64, u64::from));
    Ok(())
}

fn check_shared_info(context: &mut Context) -> Result<(), Outcome> {
    let address = match xen::map_shared_info() {
        Ok(address) => address,
        Err(e) => bail!("XENMEM_add_to_physmap(shared_info): {e}"),
    };
    let wallclock = xen::wallclock();
    println!("pvtest: note shared_info at {address:#x}, wallclock {wallclock:?}");
    if wallclock.is_none() {
        bail!("wc_version never stable and even");
    }
    // The last mask word (ports 4032..4095) is unused: it must read back what we write.
    let probe = (address + 560 + 63 * 8) as *mut u64;
    // SAFETY: `probe` is inside the mapped shared_info page (offset 1064 < 1088), 8-aligned.
    unsafe { probe.write_volatile(0x5a5a_a5a5_0f0f_f0f0) };
    // SAFETY: as above.
    let readback = unsafe { probe.read_volatile() };
    // SAFETY: as above.
    unsafe { probe.write_volatile(0) };
    context.measure(readback);
    if readback != 0x5a5a_a5a5_0f0f_f0f0 {
        bail!("shared_info does not read back: {readback:#x}");
    }
    if let Err(e) = xen::register_vcpu_info() {
        bail!("VCPUOP_register_vcpu_info: {e}");
    }
    context.measure(1);
    // Once per vCPU: Xen refuses a second registration with -EINVAL.
    match xen::register_vcpu_info() {
        Err(e) if e.0 == -22 => context.measure(e.0 as u64),
        Err(e) => bail!("second VCPUOP_register_vcpu_info: {e}, want -EINVAL"),
        Ok(()) => bail!("second VCPUOP_register_vcpu_info succeeded"),
    }
    Ok(())
}

static PORT_A: AtomicU32 = AtomicU32::new(0);
static FIRED_A: AtomicU32 = AtomicU32::new(0);
static FIRED_B: AtomicU32 = AtomicU32::new(0);

fn record(port: u32) {
    if port == PORT_A.load(Ordering::Acquire) {
        FIRED_A.fetch_add(1, Ordering::AcqRel);
    } else {
        FIRED_B.fetch_add(1, Ordering::AcqRel);
    }
}

fn check_evtchn_loopback(context: &mut Context) -> Result<(), Outcome> {
    let Some(node) = context.node else {
        bail!("no hypervisor node");
    };
    if let Err(e) = evtchn::init(node.upcall_intid) {
        bail!("event-channel set-up: {e:?}");
    }
    mica_guest_rt::enable_irqs();
    let a = match evtchn::alloc_unbound(DOMID_SELF) {
        Ok(port) => port,
        Err(e) => bail!("EVTCHNOP_alloc_unbound(DOMID_SELF): {e}"),
    };
    let unbound = match evtchn::status(a) {
        Ok(status) => status,
        Err(e) => bail!("EVTCHNOP_status({a}): {e}"),
    };
    if unbound.status != evtchn::EVTCHNSTAT_UNBOUND {
        bail!("port {a} status {} after alloc_unbound", unbound.status);
    }
    context.own_domid = Some(unbound.peer_domain);
    let b = match evtchn::bind_interdomain(DOMID_SELF, a) {
        Ok(port) => port,
        Err(e) => bail!("EVTCHNOP_bind_interdomain(DOMID_SELF, {a}): {e}"),
    };
    let bound = match evtchn::status(b) {
        Ok(status) => status,
        Err(e) => bail!("EVTCHNOP_status({b}): {e}"),
    };
    println!(
        "pvtest: note own domid {}, ports {a} <-> {b}, port {b} status {} peer {}:{}",
        unbound.peer_domain, bound.status, bound.peer_domain, bound.peer_port
    );
    context.measure(u64::from(unbound.peer_domain));
    context.measure(u64::from(a) << 32 | u64::from(b));
    if bound.status != evtchn::EVTCHNSTAT_INTERDOMAIN || bound.peer_port != a {
        bail!("port {b} is not bound to {a}: {bound:?}");
    }
    PORT_A.store(a, Ordering::Release);
    for port in [a, b] {
        if evtchn::set_handler(port, Some(record)).is_err() {
            bail!("no handler slot for port {port}");
        }
        if let Err(e) = evtchn::unmask(port) {
            bail!("EVTCHNOP_unmask({port}): {e}");
        }
    }

    // b -> a: the upcall fires and the handler sees port a.
    let before = FIRED_A.load(Ordering::Acquire);
    if let Err(e) = evtchn::send(b) {
        bail!("EVTCHNOP_send({b}): {e}");
    }
    if !wait_until(WAIT_LIMIT_MS, || FIRED_A.load(Ordering::Acquire) > before) {
        bail!(
            "no upcall for port {a} after send on {b} (pending {}, upcalls {})",
            evtchn::is_pending(a),
            evtchn::upcall_count()
        );
    }
    if evtchn::is_pending(a) {
        bail!("port {a} still pending after its handler ran");
    }

    // Masked: the event becomes pending but raises no upcall, until EVTCHNOP_unmask.
    evtchn::mask(a);
    let before = FIRED_A.load(Ordering::Acquire);
    if let Err(e) = evtchn::send(b) {
        bail!("EVTCHNOP_send({b}) while masked: {e}");
    }
    let leaked = wait_until(QUIET_MS, || FIRED_A.load(Ordering::Acquire) != before);
    if leaked {
        bail!("masked port {a} raised an upcall");
    }
    if !evtchn::is_pending(a) {
        bail!("masked port {a} did not become pending");
    }
    if let Err(e) = evtchn::unmask(a) {
        bail!("EVTCHNOP_unmask({a}) while pending: {e}");
    }
    if !wait_until(WAIT_LIMIT_MS, || FIRED_A.load(Ordering::Acquire) > before) {
        bail!("EVTCHNOP_unmask of pending port {a} raised no upcall");
    }

    // a -> b: the other direction.
    let before = FIRED_B.load(Ordering::Acquire);
    if let Err(e) = evtchn::send(a) {
        bail!("EVTCHNOP_send({a}): {e}");
    }
    if !wait_until(WAIT_LIMIT_MS, || FIRED_B.load(Ordering::Acquire) > before) {
        bail!("no upcall for port {b} after send on {a}");
    }
    // The send's argument is read wherever it is (unaligned too); unmapped is refused.
    let before = FIRED_B.load(Ordering::Acquire);
    let mut unaligned = [0u8; 8];
    unaligned[1..5].copy_from_slice(&a.to_le_bytes());
    if let Err(e) = hypercall::evtchn_send_at(unaligned.as_ptr() as u64 + 1) {
        bail!("EVTCHNOP_send({a}) with an unaligned argument: {e}");
    }
    if !wait_until(WAIT_LIMIT_MS, || FIRED_B.load(Ordering::Acquire) > before) {
        bail!("no upcall for port {b} after a send with an unaligned argument");
    }
    match hypercall::evtchn_send_at(UNMAPPED) {
        Err(e) if e.0 == -14 => context.measure(e.0 as u64),
        other => bail!("EVTCHNOP_send with an unmapped argument: want errno -14, got {other:?}"),
    }
    context.measure(
        u64::from(FIRED_A.load(Ordering::Acquire)) << 32
            | u64::from(FIRED_B.load(Ordering::Acquire)),
    );

    for port in [b, a] {
        let _ = evtchn::set_handler(port, None);
        if let Err(e) = evtchn::close(port) {
            bail!("EVTCHNOP_close({port}): {e}");
        }
    }
    // A closed port cannot be used.
    match evtchn::send(a) {
        Ok(()) => bail!("EVTCHNOP_send on closed port {a} succeeded"),
        Err(e) => context.measure(e.0 as u64),
    }
    Ok(())
}

/// How far ahead a poll's timeout (or the timer that ends a poll) is set, in milliseconds.
const POLL_SLEEP_MS: u64 = 2;
/// CNTV_CTL_EL0.ISTATUS: the virtual timer's condition is met.
const TIMER_ISTATUS: u64 = 1 << 2;
/// Longest a poll that must return at once may take: generous, as QEMU runs in host time on
/// a shared machine; a poll that wrongly sleeps would sleep for good.
const AT_ONCE_MS: u64 = 500;
/// A port number no domain here has (the last of the 2-level ABI's 4096).
const NO_SUCH_PORT: u32 = 4095;
/// An address with nothing mapped (beyond the 48-bit space the runtime maps).
const UNMAPPED: u64 = 0xffff_0000_0000;

/// System time `ms` milliseconds from now, for a SCHEDOP_poll timeout. Arm guests get no
/// system time from Xen; it counts the physical counter in nanoseconds (from Xen's boot on
/// Xen 4.17, from zero on Mica), so the counter's own reading is never earlier than now: the
/// deadline is at least `ms` ahead on both (later on Xen by the time Xen booted at).
fn system_time_in(ms: u64) -> u64 {
    timer::ticks_to_ns(timer::physical_counter()).saturating_add(ms * 1_000_000)
}

/// Ticks passed since counter value `start`.
fn since(start: u64) -> u64 {
    timer::counter().wrapping_sub(start)
}

/// A fresh loopback channel (unbound end, bound end), both masked and not pending.
fn masked_loopback() -> Result<(u32, u32), Outcome> {
    let a = match evtchn::alloc_unbound(DOMID_SELF) {
        Ok(port) => port,
        Err(e) => bail!("EVTCHNOP_alloc_unbound(DOMID_SELF): {e}"),
    };
    evtchn::mask(a);
    let b = match evtchn::bind_interdomain(DOMID_SELF, a) {
        Ok(port) => port,
        Err(e) => bail!("EVTCHNOP_bind_interdomain(DOMID_SELF, {a}): {e}"),
    };
    evtchn::mask(b);
    evtchn::clear_pending(a);
    evtchn::clear_pending(b);
    Ok((a, b))
}

/// SCHEDOP_poll on masked ports: the point of poll is waiting for an event without taking it.
/// SCHEDOP_poll on `ports` with `timeout` must return 0 without sleeping.
fn poll_returns_at_once(ports: &[u32], timeout: u64, what: &str) -> Result<(), Outcome> {
    let start = timer::counter();
    if let Err(e) = hypercall::sched_poll(ports, timeout) {
        bail!("{what} ({ports:?}): {e}");
    }
    let took = since(start);
    if took > timer::ms_to_ticks(AT_ONCE_MS) {
        bail!("{what} ({ports:?}) took {took} ticks");
    }
    Ok(())
}

fn check_poll(context: &mut Context) -> Result<(), Outcome> {
    let (a, b) = masked_loopback()?;
    // Pending (masked): returns at once and leaves the bit set.
    if let Err(e) = evtchn::send(b) {
        bail!("EVTCHNOP_send({b}): {e}");
    }
    if !evtchn::is_pending(a) {
        bail!("masked port {a} did not become pending");
    }
    poll_returns_at_once(&[a], 0, "poll on a pending port")?;
    if !evtchn::is_pending(a) {
        bail!("poll cleared port {a}'s pending bit");
    }
    // The first pending port answers before later entries are looked at.
    if let Err(e) = hypercall::sched_poll(&[a, NO_SUCH_PORT], 0) {
        bail!("poll on [{a} (pending), {NO_SUCH_PORT}]: {e}");
    }
    evtchn::clear_pending(a);

    // Nothing pending: sleeps until the timeout.
    let start = timer::counter();
    if let Err(e) = hypercall::sched_poll(&[a], system_time_in(POLL_SLEEP_MS)) {
        bail!("poll with a timeout {POLL_SLEEP_MS} ms ahead: {e}");
    }
    let slept = since(start);
    println!(
        "pvtest: note poll with a {POLL_SLEEP_MS} ms timeout returned after {} us",
        timer::ticks_to_ns(slept) / 1000
    );
    if slept < timer::ms_to_ticks(POLL_SLEEP_MS) {
        bail!(
            "poll with a {POLL_SLEEP_MS} ms timeout returned after {} us",
            timer::ticks_to_ns(slept) / 1000
        );
    }
    if evtchn::is_pending(a) {
        bail!("port {a} became pending while nobody sent");
    }
    // A timeout already past: returns 0 (not -ETIMEDOUT), at once.
    poll_returns_at_once(&[a], 1, "poll with a past timeout")?;

    // Bad lists: a port we do not have, too many ports, a list that is not mapped.
    let refusals: [(&str, Result<(), hypercall::XenError>, i64); 4] = [
        (
            "unknown port",
            hypercall::sched_poll(&[NO_SUCH_PORT], 0),
            -22,
        ),
        (
            "unknown port after a quiet one",
            hypercall::sched_poll(&[a, NO_SUCH_PORT], 0),
            -22,
        ),
        ("129 ports", hypercall::sched_poll_at(UNMAPPED, 129, 0), -22),
        (
            "unmapped list",
            hypercall::sched_poll_at(UNMAPPED, 1, 0),
            -14,
        ),
    ];
    for (what, got, want) in refusals {
        match got {
            Err(e) if e.0 == want => context.measure(e.0 as u64),
            other => bail!("poll with {what}: want errno {want}, got {other:?}"),
        }
    }
    for port in [b, a] {
        if let Err(e) = evtchn::close(port) {
            bail!("EVTCHNOP_close({port}): {e}");
        }
    }
    Ok(())
}

/// The second CPU's virtual count when it sent the event, 0 before.
static SENT_AT: AtomicU64 = AtomicU64::new(0);
/// The send's result as a raw return value.
static SEND_RESULT: AtomicU64 = AtomicU64::new(u64::MAX);

/// The second CPU: waits [`POLL_SLEEP_MS`], sends on the port it was given, stops.
fn sender_main(port: usize) -> ! {
    timer::delay_ms(POLL_SLEEP_MS);
    let result = evtchn::send(port as u32).map_or_else(|e| e.0 as u64, |()| 0);
    SEND_RESULT.store(result, Ordering::Relaxed);
    SENT_AT.store(timer::counter(), Ordering::Release);
    psci::cpu_off();
    mica_guest_rt::halt()
}

/// A poll on a masked port, woken by an event the other CPU sends: the hypervisor wakes the
/// poller itself, as no interrupt comes with a masked port. A timeout far behind the send is
/// only a backstop.
fn check_poll_wake(_context: &mut Context) -> Result<(), Outcome> {
    let me = cpu::mpidr();
    let target = devtree::get().and_then(|fdt| devtree::cpu_mpidrs(&fdt).find(|&m| m != me));
    let Some(target) = target else {
        return Err(Outcome::Skip(ReasonBuf::new(format_args!(
            "the device tree lists no second CPU"
        ))));
    };
    let (a, b) = masked_loopback()?;
    let start = timer::counter();
    if let Err(e) = cpu::start_cpu(target, sender_main, b as usize) {
        bail!("CPU_ON({target:#x}): {e:?}");
    }
    let polled = hypercall::sched_poll(&[a], system_time_in(WAIT_LIMIT_MS));
    let slept = since(start);
    if !wait_until(WAIT_LIMIT_MS, || SENT_AT.load(Ordering::Acquire) != 0) {
        bail!("CPU {target:#x} never sent");
    }
    let sent_after = SENT_AT.load(Ordering::Acquire).wrapping_sub(start);
    println!(
        "pvtest: note poll woken after {} us by a send {} us after the start",
        timer::ticks_to_ns(slept) / 1000,
        timer::ticks_to_ns(sent_after) / 1000
    );
    if let Err(e) = polled {
        bail!("poll: {e}");
    }
    let sent = SEND_RESULT.load(Ordering::Relaxed);
    if sent != 0 {
        bail!(
            "EVTCHNOP_send({b}) on the second CPU returned {}",
            sent as i64
        );
    }
    if slept < timer::ms_to_ticks(POLL_SLEEP_MS) {
        bail!(
            "poll returned after {} us, before the send",
            timer::ticks_to_ns(slept) / 1000
        );
    }
    if slept >= timer::ms_to_ticks(WAIT_LIMIT_MS / 2) {
        bail!("the send did not end the poll (it ran to its timeout)");
    }
    if !evtchn::is_pending(a) {
        bail!("port {a} is not pending after the poll");
    }
    if !wait_until(WAIT_LIMIT_MS, || {
        psci::affinity_info(target) == Ok(mica_guest_abi::psci::affinity::OFF)
    }) {
        bail!("CPU {target:#x} did not stop after sending");
    }
    for port in [b, a] {
        if let Err(e) = evtchn::close(port) {
            bail!("EVTCHNOP_close({port}): {e}");
        }
    }
    Ok(())
}

/// A poll with IRQs masked in PSTATE, on a port nobody sends to, ends when an interrupt
/// becomes pending for the vCPU (here the virtual timer), as Xen's vcpu_unblock does. A
/// timeout far behind the timer is only a backstop.
fn check_poll_interrupt(_context: &mut Context) -> Result<(), Outcome> {
    let (a, b) = masked_loopback()?;
    mica_guest_rt::disable_irqs();
    if let Err(e) = mica_guest_rt::gic::enable_private(VIRT_TIMER_PPI, 0xa0) {
        mica_guest_rt::enable_irqs();
        bail!("enabling the virtual timer PPI: {e:?}");
    }
    // The timer must fire while the poll sleeps. One that fired before the call (a slow
    // host: Xen runs in host time) is pending but, with IRQs masked, does not end Xen's poll:
    // then the poll is tried again with a longer delay.
    let mut found = None;
    for delay_ms in [POLL_SLEEP_MS, 10 * POLL_SLEEP_MS, 100 * POLL_SLEEP_MS] {
        let start = timer::counter();
        timer::set_virtual_deadline(start + timer::ms_to_ticks(delay_ms));
        let fired_early = timer::virtual_control() & TIMER_ISTATUS != 0;
        let polled =
            (!fired_early).then(|| hypercall::sched_poll(&[a], system_time_in(WAIT_LIMIT_MS)));
        let slept = since(start);
        timer::set_virtual_control(0);
        // Take the timer interrupt here, IRQs still masked (an upcall that came too is
        // handled).
        loop {
            let intid = mica_guest_rt::gic::acknowledge();
            if intid >= mica_guest_abi::gicv3::INTID_SPECIAL_FIRST {
                break;
            }
            evtchn::handle_irq(intid);
            mica_guest_rt::gic::end_of_interrupt(intid);
        }
        if let Some(polled) = polled {
            found = Some((polled, slept, delay_ms));
            break;
        }
    }
    let _ = mica_guest_rt::gic::disable_private(VIRT_TIMER_PPI);
    mica_guest_rt::enable_irqs();
    let Some((polled, slept, delay_ms)) = found else {
        bail!("the virtual timer fired before every poll started");
    };
    println!(
        "pvtest: note poll ended by the virtual timer ({delay_ms} ms) after {} us",
        timer::ticks_to_ns(slept) / 1000
    );
    if let Err(e) = polled {
        bail!("poll: {e}");
    }
    if slept < timer::ms_to_ticks(delay_ms) {
        bail!(
            "poll returned after {} us, before the timer fired",
            timer::ticks_to_ns(slept) / 1000
        );
    }
    if slept >= timer::ms_to_ticks(WAIT_LIMIT_MS / 2) {
        bail!("the timer interrupt did not end the poll (it ran to its timeout)");
    }
    for port in [b, a] {
        if let Err(e) = evtchn::close(port) {
            bail!("EVTCHNOP_close({port}): {e}");
        }
    }
    Ok(())
}

/// A page-aligned page of our RAM for grant tests.
#[repr(C, align(4096))]
struct Page(UnsafeCell<[u8; 4096]>);

// SAFETY: only the boot CPU touches these pages, through raw pointers.
unsafe impl Sync for Page {}

static SOURCE: Page = Page(UnsafeCell::new([0; 4096]));
static DEST: Page = Page(UnsafeCell::new([0; 4096]));

fn page_byte(page: &Page, index: usize) -> u8 {
    let byte = page.0.get().cast::<u8>().wrapping_add(index % 4096);
    // SAFETY: `byte` is inside the page; volatile because Xen writes it.
    unsafe { byte.read_volatile() }
}

fn set_page_byte(page: &Page, index: usize, value: u8) {
    let byte = page.0.get().cast::<u8>().wrapping_add(index % 4096);
    // SAFETY: `byte` is inside the page.
    unsafe { byte.write_volatile(value) }
}

fn gfn(page: &Page) -> u64 {
    page.0.get() as u64 / 4096
}

fn check_grant_copy(context: &mut Context) -> Result<(), Outcome> {
    let Some(node) = context.node else {
        bail!("no hypervisor node");
    };
    let Some(domid) = context.own_domid.or_else(|| evtchn::own_domid().ok()) else {
        bail!("own domain id unknown (EVTCHNOP_status failed)");
    };
    let (frames, max_frames) = match grant::init(node.grant_region) {
        Ok(sizes) => sizes,
        Err(e) => bail!("grant-table set-up: {e:?}"),
    };
    println!("pvtest: note grant table {frames}/{max_frames} frames before mapping frame 0");
    context.measure(u64::from(max_frames));
    for i in 0..4096 {
        set_page_byte(&SOURCE, i, (i as u8).wrapping_mul(31).wrapping_add(7));
        set_page_byte(&DEST, i, 0);
    }
    let gref = match grant::alloc_ref() {
        Ok(gref) => gref,
        Err(e) => bail!("no grant reference: {e:?}"),
    };
    if let Err(e) = grant::grant_access(gref, domid, gfn(&SOURCE), true) {
        bail!("granting ref {gref}: {e:?}");
    }
    let from_grant = grant::CopyEnd::Grant {
        domid: DOMID_SELF,
        gref,
        offset: 0,
    };
    let to_dest = grant::CopyEnd::Frame {
        domid: DOMID_SELF,
        gfn: gfn(&DEST),
        offset: 0,
    };
    // SAFETY: DEST is only accessed through raw pointers, never borrowed.
    let status = match unsafe { grant::copy(from_grant, to_dest, 4096) } {
        Ok(status) => status,
        Err(e) => bail!("GNTTABOP_copy: {e}"),
    };
    if status != grant::GNTST_OKAY {
        bail!("GNTTABOP_copy from ref {gref} (domid {domid}): status {status}");
    }
    let mut sum = 0u64;
    for i in 0..4096 {
        let (want, got) = (page_byte(&SOURCE, i), page_byte(&DEST, i));
        if want != got {
            bail!("byte {i} copied as {got:#x}, want {want:#x}");
        }
        sum = sum.wrapping_mul(31).wrapping_add(u64::from(got));
    }
    context.measure(sum);

    // The grant is read-only: copying into it must fail and leave the page alone.
    let from_dest = grant::CopyEnd::Frame {
        domid: DOMID_SELF,
        gfn: gfn(&DEST),
        offset: 0,
    };
    set_page_byte(&DEST, 0, !page_byte(&SOURCE, 0));
    // SAFETY: the destination is SOURCE through the grant, only accessed through raw pointers.
    let denied = match unsafe { grant::copy(from_dest, from_grant, 64) } {
        Ok(status) => status,
        Err(e) => bail!("GNTTABOP_copy into the read-only grant: {e}"),
    };
    context.measure(denied as u64);
    if denied == grant::GNTST_OKAY || page_byte(&SOURCE, 0) != 7 {
        bail!("copy into read-only ref {gref} was allowed (status {denied})");
    }
    match grant::entry_flags(gref) {
        Some(flags) if flags & 0x18 == 0 => {}
        flags => bail!("ref {gref} flags {flags:?} still show the copy in progress"),
    }
    if let Err(e) = grant::revoke(gref) {
        bail!("revoking ref {gref}: {e:?}");
    }
    // SAFETY: as for the first copy.
    let revoked = match unsafe { grant::copy(from_grant, to_dest, 16) } {
        Ok(status) => status,
        Err(e) => bail!("GNTTABOP_copy after revoke: {e}"),
    };
    context.measure(revoked as u64);
    if revoked == grant::GNTST_OKAY {
        bail!("copy through revoked ref {gref} succeeded");
    }
    Ok(())
}

fn check_console(context: &mut Context) -> Result<(), Outcome> {
    let line = b"pvtest: console line through the PV console\n";
    if xen::is_initial_domain() {
        let written = match hypercall::console_write(line) {
            Ok(written) => written,
            Err(e) => bail!("CONSOLEIO_write: {e}"),
        };
        context.measure(line.len() as u64);
        if written != 0 && written != line.len() {
            bail!("CONSOLEIO_write took {written} of {} bytes", line.len());
        }
        return Ok(());
    }
    let (ring, port) = match xen::console::find_ring() {
        Ok(found) => found,
        Err(xen::console::ConsoleError::NoRing) => {
            return Err(Outcome::Skip(ReasonBuf::new(format_args!(
                "no console ring (HVM_PARAM_CONSOLE_PFN/EVTCHN unset: no backend)"
            ))))
        }
        Err(e) => bail!("reading the console parameters: {e:?}"),
    };
    if let Err(e) = xen::console::use_ring(ring, port) {
        bail!("console ring at {ring:#x}: {e:?}");
    }
    let written = xen::console::write(b"pvtest: console line through the PV console\r\n");
    context.measure(written as u64);
    if written != line.len() + 1 {
        bail!("console ring took {written} bytes");
    }
    if !wait_until(WAIT_LIMIT_MS, || xen::console::ring_unconsumed() == Some(0)) {
        bail!(
            "backend left {:?} bytes unconsumed in the ring (port {port})",
            xen::console::ring_unconsumed()
        );
    }
    Ok(())
}

/// The initial domain owns the board's devices; a hypercall whose buffer points at one (the
/// PL031 RTC's registers) must fail with -EFAULT: the hypervisor copies only to and from RAM.
fn check_device_buffer(context: &mut Context) -> Result<(), Outcome> {
    if !xen::is_initial_domain() {
        return Err(Outcome::Skip(ReasonBuf::new(format_args!(
            "a domU owns no device here"
        ))));
    }
    let rtc = mica_guest_rt::devtree::get().and_then(|fdt| {
        let node = fdt.find_compatible(&["arm,pl031"])?;
        mica_guest_rt::devtree::reg(node, 0)
    });
    let Some((address, _)) = rtc else {
        return Err(Outcome::Skip(ReasonBuf::new(format_args!(
            "no arm,pl031 device in the device tree"
        ))));
    };
    // SAFETY: a successful (wrong) answer writes 16 bytes into the RTC's registers, which
    // nothing in this guest uses.
    let result = unsafe { hypercall::xen_extraversion_at(address as u64) };
    println!("pvtest: note extraversion into the RTC at {address:#x}: {result:?}");
    match result {
        Err(e) if e.0 == -14 => {
            context.measure(14);
            Ok(())
        }
        other => bail!("want EFAULT for a buffer on a device, got {other:?}"),
    }
}
