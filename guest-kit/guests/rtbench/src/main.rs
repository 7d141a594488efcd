//! Real-time latency guest. Runs the same on Mica, Xen and bare QEMU (entered at EL1).
//!
//! `mode=bench` (the default): arms the EL1 virtual timer on a fixed grid (`period_us`, 1000 by
//! default) for `samples` interrupts (2000), and records each one's lateness: the virtual count
//! when the interrupt handler is entered minus the deadline that was programmed. The deadlines
//! are absolute (`start + k * period`), so a late interrupt does not shift the next one. It
//! then prints one line and powers off:
//!
//! `rtbench: result samples=N mean_ns=.. p99_ns=.. max_ns=.. min_ns=.. early=E wakeups=W`
//!
//! (short enough that no hypervisor console splits it; the period and counter frequency are
//! on the `rtbench: start` line).
//!
//! `mode=hog`: prints `rtbench: hog running`, then loads the CPU and the memory system for
//! ever (sweeps over a buffer much larger than the caches, with arithmetic between).
//!
//! Options come from `/chosen/bootargs`, space separated.
#![no_std]
#![no_main]

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use mica_guest_abi::layout::VIRT_TIMER_PPI;
use mica_guest_rt::{devtree, exceptions, gic, println, timer};

mica_guest_rt::entry!(main);

/// Most samples one run records.
const MAX_SAMPLES: usize = 20_000;
const DEFAULT_SAMPLES: usize = 2000;
const DEFAULT_PERIOD_US: u64 = 1000;
/// Bytes the hog sweeps: far beyond any cache, small beside a 64 MiB domain.
const HOG_BYTES: usize = 16 << 20;
/// The hog's stride: one write per 64-byte cache line.
const CACHE_LINE: usize = 64;
/// Priority of the timer interrupt in the GIC (any enabled one will do: it is alone).
const TIMER_PRIORITY: u8 = 0x80;
/// The 99th percentile, in per mille.
const P99_PER_MILLE: usize = 990;

/// Memory only one CPU touches, at a time the program order makes exclusive.
struct Exclusive<T>(UnsafeCell<T>);

// SAFETY: each instance is used by one CPU only (the boot CPU: this guest starts no other),
// and the interrupt handler and `main` never hold references at the same time (see uses).
unsafe impl<T> Sync for Exclusive<T> {}

/// Lateness of each interrupt, in counter ticks (saturated at u32::MAX).
static SAMPLES: Exclusive<[u32; MAX_SAMPLES]> = Exclusive(UnsafeCell::new([0; MAX_SAMPLES]));
/// The hog's buffer.
static HOG: Exclusive<[u8; HOG_BYTES]> = Exclusive(UnsafeCell::new([0; HOG_BYTES]));

/// Deadline the timer is armed for.
static DEADLINE: AtomicU64 = AtomicU64::new(0);
static PERIOD_TICKS: AtomicU64 = AtomicU64::new(0);
/// Samples recorded so far, and how many are wanted.
static TAKEN: AtomicUsize = AtomicUsize::new(0);
static WANTED: AtomicUsize = AtomicUsize::new(0);
/// Interrupts that came before their deadline (should never happen).
static EARLY: AtomicUsize = AtomicUsize::new(0);
static DONE: AtomicBool = AtomicBool::new(false);

struct Options {
    hog: bool,
    samples: usize,
    period_us: u64,
}

fn options() -> Options {
    let mut o = Options {
        hog: false,
        samples: DEFAULT_SAMPLES,
        period_us: DEFAULT_PERIOD_US,
    };
    let fdt = devtree::get();
    let args = fdt
        .as_ref()
        .and_then(|f| f.find_node("/chosen"))
        .and_then(|c| c.property("bootargs"))
        .and_then(|p| p.as_str())
        .unwrap_or("");
    for word in args.split_whitespace() {
        match word.split_once('=') {
            Some(("mode", "hog")) => o.hog = true,
            Some(("mode", "bench")) => o.hog = false,
            Some(("samples", n)) => match n.parse::<usize>() {
                Ok(n) if (1..=MAX_SAMPLES).contains(&n) => o.samples = n,
                _ => println!("rtbench: samples={n} ignored (1..={MAX_SAMPLES})"),
            },
            Some(("period_us", n)) => match n.parse::<u64>() {
                Ok(n) if (10..=1_000_000).contains(&n) => o.period_us = n,
                _ => println!("rtbench: period_us={n} ignored (10..=1000000)"),
            },
            _ => {}
        }
    }
    o
}

fn main() {
    let o = options();
    if o.hog {
        hog();
    }
    bench(&o);
}

/// Loads the CPU and memory for ever.
fn hog() -> ! {
    println!("rtbench: hog running");
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    loop {
        for offset in (0..HOG_BYTES).step_by(CACHE_LINE) {
            // A little arithmetic per line, so the hog is not only memory-bound.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // SAFETY: `offset < HOG_BYTES`, so the pointer stays inside HOG.
            let byte = unsafe { HOG.0.get().cast::<u8>().add(offset) };
            // SAFETY: a valid, aligned byte of HOG, which only this loop touches.
            unsafe { core::ptr::write_volatile(byte, x as u8) };
        }
    }
}

fn bench(o: &Options) {
    if let Err(e) = gic::init_distributor().and_then(|()| gic::init_cpu()) {
        println!("rtbench: FAIL GIC set-up: {e:?}");
        return;
    }
    if let Err(e) = gic::enable_private(VIRT_TIMER_PPI, TIMER_PRIORITY) {
        println!("rtbench: FAIL enabling the virtual timer interrupt: {e:?}");
        return;
    }
    let freq = timer::frequency();
    if freq == 0 {
        println!("rtbench: FAIL CNTFRQ_EL0 is 0");
        return;
    }
    let period = (freq.saturating_mul(o.period_us) / 1_000_000).max(1);
    PERIOD_TICKS.store(period, Ordering::Relaxed);
    WANTED.store(o.samples, Ordering::Relaxed);
    println!(
        "rtbench: start samples={} period_us={} freq_hz={freq}",
        o.samples, o.period_us
    );
    exceptions::set_irq_handler(Some(on_irq));
    let first = timer::counter().saturating_add(period);
    DEADLINE.store(first, Ordering::Relaxed);
    timer::set_virtual_deadline(first);
    mica_guest_rt::enable_irqs();
    let mut wakeups: u64 = 0;
    while !DONE.load(Ordering::Acquire) {
        mica_guest_rt::wait_for_interrupt();
        wakeups += 1;
    }
    mica_guest_rt::disable_irqs();
    timer::set_virtual_control(0);
    let _ = gic::disable_private(VIRT_TIMER_PPI);
    exceptions::set_irq_handler(None);
    report(freq, wakeups);
}

/// The interrupt handler: records the lateness first, then arms the next deadline.
fn on_irq(intid: u32) {
    let now = timer::counter();
    if intid != VIRT_TIMER_PPI {
        return;
    }
    let deadline = DEADLINE.load(Ordering::Relaxed);
    let taken = TAKEN.load(Ordering::Relaxed);
    let wanted = WANTED.load(Ordering::Relaxed);
    if taken < wanted && taken < MAX_SAMPLES {
        let late = match now.checked_sub(deadline) {
            Some(late) => late,
            None => {
                EARLY.fetch_add(1, Ordering::Relaxed);
                0
            }
        };
        // SAFETY: `taken < MAX_SAMPLES`; `main` reads SAMPLES only after DONE, when no more
        // interrupts are taken.
        unsafe { (*SAMPLES.0.get())[taken] = u32::try_from(late).unwrap_or(u32::MAX) };
        TAKEN.store(taken + 1, Ordering::Relaxed);
    }
    if taken + 1 >= wanted {
        timer::set_virtual_control(0);
        DONE.store(true, Ordering::Release);
        return;
    }
    let next = deadline.saturating_add(PERIOD_TICKS.load(Ordering::Relaxed));
    DEADLINE.store(next, Ordering::Relaxed);
    timer::set_virtual_deadline(next);
}

/// Prints the result line. `wakeups` counts returns from WFI (about one per sample when
/// waiting really waits).
fn report(freq: u64, wakeups: u64) {
    let n = TAKEN.load(Ordering::Acquire).min(MAX_SAMPLES);
    // SAFETY: interrupts are off and the handler removed: nothing else touches SAMPLES.
    let samples = unsafe { core::slice::from_raw_parts_mut(SAMPLES.0.get().cast::<u32>(), n) };
    if samples.is_empty() {
        println!("rtbench: FAIL no samples");
        return;
    }
    let sum: u64 = samples.iter().map(|&s| u64::from(s)).sum();
    samples.sort_unstable();
    let ns = |ticks: u64| (u128::from(ticks) * 1_000_000_000 / u128::from(freq)) as u64;
    let p99_index = (n * P99_PER_MILLE).div_ceil(1000).clamp(1, n) - 1;
    println!(
        "rtbench: result samples={n} mean_ns={} p99_ns={} max_ns={} min_ns={} early={} wakeups={wakeups}",
        ns(sum / n as u64),
        ns(u64::from(samples[p99_index])),
        ns(u64::from(samples[n - 1])),
        ns(u64::from(samples[0])),
        EARLY.load(Ordering::Relaxed)
    );
}
