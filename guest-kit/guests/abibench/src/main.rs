//! Measures the Xen guest ABI's hot paths in guest counter ticks (CNTVCT), the same binary on
//! Mica and on Xen 4.17 (`cargo xtask bench abi`).
//!
//! As the initial domain ("ping") it measures, each over many repetitions:
//! - `hypercall`: a `xen_version(XENVER_version)` round trip;
//! - `upcall`: `EVTCHNOP_send` on a loopback channel to the entry of the upcall handler, on
//!   one vCPU;
//! - `pingpong`: a round trip over an interdomain channel to a second domain ("pong", a
//!   `xen,enhanced` domU on the other pCPU) whose handler sends straight back; both sides
//!   wait in WFI, so it includes blocking and waking a vCPU on each side.
//!
//! The ping side first allocates an unbound port for domain 1 and waits for it to be bound;
//! the pong side finds that port by trying `EVTCHNOP_bind_interdomain(0, p)` for small `p`,
//! which only succeeds on a port domain 0 left unbound for it, sleeping in WFI on its virtual
//! timer between attempts. Only then does the ping side measure, so the pong side sits idle
//! in WFI throughout (under `-icount`, a busy second CPU would stretch the first one's clock).
//!
//! Output (ping): `abibench: freq <Hz>`, one `abibench: <name> n=<N> total=<ticks>
//! min=<ticks> max=<ticks>` line per measurement, then `abibench: done`, then power-off.
//! Failures print `abibench: FAIL <what>: <why>` and shut down with a crash code.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use mica_guest_rt::xen::{self, evtchn, hypercall, DOMID_SELF};
use mica_guest_rt::{println, timer};

mica_guest_rt::entry!(main);

/// Repetitions of each measurement (after a short warm-up).
const HYPERCALLS: u32 = 2000;
const UPCALLS: u32 = 500;
const ROUND_TRIPS: u32 = 500;
const WARM_UP: u32 = 20;
/// The pong domain's id: the first dom0less domU.
const PONG_DOMID: u16 = 1;
/// Ports the pong side tries when looking for the ping side's unbound port.
const SEARCHED_PORTS: u32 = 64;
/// How long either side waits for the other or for one event, in milliseconds.
const WAIT_LIMIT_MS: u64 = 10_000;

/// Counter value at the entry of the last handled upcall, and how many there were.
static LAST_ENTRY: AtomicU64 = AtomicU64::new(0);
static FIRED: AtomicU32 = AtomicU32::new(0);
/// The pong side's bound port, answered from its handler.
static PONG_PORT: AtomicU32 = AtomicU32::new(0);

fn on_event(_port: u32) {
    LAST_ENTRY.store(timer::counter(), Ordering::Release);
    FIRED.fetch_add(1, Ordering::AcqRel);
}

fn pong(_port: u32) {
    let _ = evtchn::send(PONG_PORT.load(Ordering::Acquire));
}

/// Min, max and sum of a series of tick counts.
struct Series {
    name: &'static str,
    count: u32,
    total: u64,
    min: u64,
    max: u64,
}

impl Series {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            count: 0,
            total: 0,
            min: u64::MAX,
            max: 0,
        }
    }

    fn add(&mut self, ticks: u64) {
        self.count += 1;
        self.total += ticks;
        self.min = self.min.min(ticks);
        self.max = self.max.max(ticks);
    }

    fn print(&self) {
        println!(
            "abibench: {} n={} total={} min={} max={}",
            self.name, self.count, self.total, self.min, self.max
        );
    }
}

fn fail(what: &str, why: impl core::fmt::Debug) -> ! {
    println!("abibench: FAIL {what}: {why:?}");
    let _ = hypercall::shutdown_code(xen::ShutdownReason::Crash);
    xen::shutdown(xen::ShutdownReason::Crash)
}

/// Spins until `done()` or the wait limit; returns whether `done()` held.
fn wait_until(mut done: impl FnMut() -> bool) -> bool {
    let end = timer::counter().saturating_add(timer::ms_to_ticks(WAIT_LIMIT_MS));
    while timer::counter() < end {
        if done() {
            return true;
        }
        core::hint::spin_loop();
    }
    done()
}

fn main() {
    let Some(node) = xen::detect() else {
        fail("detect", "no /hypervisor node compatible with \"xen,xen\"");
    };
    if let Err(e) = xen::map_shared_info() {
        fail("shared_info", e);
    }
    if let Err(e) = xen::register_vcpu_info() {
        fail("vcpu_info", e);
    }
    if let Err(e) = evtchn::init(node.upcall_intid) {
        fail("event channels", e);
    }
    mica_guest_rt::enable_irqs();
    if xen::is_initial_domain() {
        ping();
    } else {
        serve_pong();
    }
}

fn ping() -> ! {
    println!("abibench: freq {}", timer::frequency());
    let pong_port = evtchn::alloc_unbound(PONG_DOMID).unwrap_or_else(|e| fail("alloc for pong", e));
    listen(pong_port);
    let bound = wait_until(|| {
        evtchn::status(pong_port).is_ok_and(|s| s.status == evtchn::EVTCHNSTAT_INTERDOMAIN)
    });
    if !bound {
        fail("pingpong", "domain 1 never bound the port");
    }
    // Let the pong side print and settle into WFI.
    if event_round(pong_port, Wait::Idle).is_none() {
        fail("pingpong", "no answer to the first ping");
    }

    let mut series = Series::new("hypercall");
    for i in 0..WARM_UP + HYPERCALLS {
        let start = timer::counter();
        if let Err(e) = hypercall::xen_version() {
            fail("xen_version", e);
        }
        let ticks = timer::counter() - start;
        if i >= WARM_UP {
            series.add(ticks);
        }
    }
    series.print();

    let a = evtchn::alloc_unbound(DOMID_SELF).unwrap_or_else(|e| fail("alloc_unbound", e));
    let b = evtchn::bind_interdomain(DOMID_SELF, a).unwrap_or_else(|e| fail("bind loopback", e));
    listen(a);
    let mut series = Series::new("upcall");
    for i in 0..WARM_UP + UPCALLS {
        let ticks = event_round(b, Wait::Spin).unwrap_or_else(|| fail("upcall", "no upcall"));
        if i >= WARM_UP {
            series.add(ticks);
        }
    }
    series.print();

    let mut series = Series::new("pingpong");
    for i in 0..WARM_UP + ROUND_TRIPS {
        let ticks =
            event_round(pong_port, Wait::Idle).unwrap_or_else(|| fail("pingpong", "no answer"));
        if i >= WARM_UP {
            series.add(ticks);
        }
    }
    series.print();
    println!("abibench: done");
    xen::shutdown(xen::ShutdownReason::Poweroff)
}

/// Routes `port`'s events to [`on_event`] and unmasks it.
fn listen(port: u32) {
    if evtchn::set_handler(port, Some(on_event)).is_err() {
        fail("handler", port);
    }
    if let Err(e) = evtchn::unmask(port) {
        fail("unmask", e);
    }
}

/// How the sender waits for the answering upcall.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// Spin: the upcall comes on this vCPU as the hypercall returns.
    Spin,
    /// Sleep in WFI, as a real waiter would: the answer comes from another CPU, and a
    /// spinning vCPU would also keep that CPU from running under `-icount`.
    Idle,
}

/// Sends on `port` and returns the ticks until the next upcall handler entry.
fn event_round(port: u32, wait: Wait) -> Option<u64> {
    let before = FIRED.load(Ordering::Acquire);
    let answered = || FIRED.load(Ordering::Acquire) != before;
    let start = timer::counter();
    if let Err(e) = evtchn::send(port) {
        fail("send", e);
    }
    let done = match wait {
        Wait::Spin => wait_until(answered),
        Wait::Idle => {
            let end = start.saturating_add(timer::ms_to_ticks(WAIT_LIMIT_MS));
            loop {
                // Check and sleep with interrupts masked so an upcall between the two still
                // ends the WFI (a pending interrupt wakes it; it is taken once unmasked).
                mica_guest_rt::disable_irqs();
                if answered() || timer::counter() >= end {
                    mica_guest_rt::enable_irqs();
                    break answered();
                }
                mica_guest_rt::wait_for_interrupt();
                mica_guest_rt::enable_irqs();
            }
        }
    };
    done.then(|| LAST_ENTRY.load(Ordering::Acquire).saturating_sub(start))
}

fn serve_pong() -> ! {
    mica_guest_rt::exceptions::set_irq_handler(Some(pong_irq));
    if let Err(e) = mica_guest_rt::gic::enable_private(VIRT_TIMER_PPI, 0xa0) {
        fail("vtimer", e);
    }
    let end = timer::counter().saturating_add(timer::ms_to_ticks(WAIT_LIMIT_MS));
    let port = loop {
        let found = (1..SEARCHED_PORTS).find_map(|p| evtchn::bind_interdomain(0, p).ok());
        if let Some(port) = found {
            break port;
        }
        if timer::counter() >= end {
            fail("pong", "no unbound port of domain 0 to bind");
        }
        sleep_ms(1);
    };
    PONG_PORT.store(port, Ordering::Release);
    if evtchn::set_handler(port, Some(pong)).is_err() {
        fail("handler", port);
    }
    if let Err(e) = evtchn::unmask(port) {
        fail("unmask", e);
    }
    println!("abibench: pong on port {port}");
    loop {
        mica_guest_rt::wait_for_interrupt();
    }
}

/// The EL1 virtual timer's interrupt.
const VIRT_TIMER_PPI: u32 = 27;
static TIMER_FIRED: AtomicU32 = AtomicU32::new(0);

fn pong_irq(intid: u32) {
    if intid == VIRT_TIMER_PPI {
        // Level-triggered: silence it before the EOI.
        timer::set_virtual_control(timer::CTL_ENABLE | timer::CTL_IMASK);
        TIMER_FIRED.fetch_add(1, Ordering::AcqRel);
    } else {
        evtchn::handle_irq(intid);
    }
}

/// Waits `ms` in WFI (idle, so it costs the other CPU nothing under `-icount`).
fn sleep_ms(ms: u64) {
    let fired = TIMER_FIRED.load(Ordering::Acquire);
    let deadline = timer::counter().saturating_add(timer::ms_to_ticks(ms));
    timer::set_virtual_deadline(deadline);
    while TIMER_FIRED.load(Ordering::Acquire) == fired && timer::counter() < deadline {
        mica_guest_rt::wait_for_interrupt();
    }
    timer::set_virtual_control(0);
}
