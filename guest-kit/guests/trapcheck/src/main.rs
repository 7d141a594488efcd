//! Checks the traps a hypervisor must handle for a small EL1 guest, in order:
//! `uart` (vPL011 output and FR), `psci-version`, `cpu-on` (a second vCPU runs and turns
//! itself off), `vtimer-wfi` (the virtual timer wakes a WFI), `data-abort` (a load from an
//! unmapped guest-physical address is reported as a data abort at EL1).
//!
//! Each check prints `trapcheck: ok <check>` or `trapcheck: FAIL <check>: <why>`, then
//! `trapcheck: done <P> passed, <F> failed`, and the guest powers off with PSCI SYSTEM_OFF.
#![no_std]
#![no_main]
// Failure reasons are formatted into a fixed buffer returned by value: no allocator here, and
// the checks run once.
#![allow(clippy::result_large_err)]

use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use mica_guest_abi::layout::VIRT_TIMER_PPI;
use mica_guest_abi::psci::affinity;
use mica_guest_rt::exceptions::{self, ExceptionFrame, EC_DATA_ABORT_SAME_EL};
use mica_guest_rt::{console, cpu, devtree, gic, println, psci, timer};

mica_guest_rt::entry!(main);

/// How long any wait may take, in milliseconds of counter time.
const WAIT_LIMIT_MS: u64 = 2000;
/// Guest-physical address nothing is mapped at in Xen's (and Mica's) domU memory map.
const UNMAPPED_ADDRESS: u64 = 0x1000_0000;
/// What the second vCPU writes to show it ran.
const CPU1_MAGIC: u64 = 0x7ca9_c4ec_0000_0001;

/// Runs checks and counts results.
struct Report {
    passed: u32,
    failed: u32,
}

impl Report {
    fn check(&mut self, name: &str, run: impl FnOnce() -> Result<(), ReasonBuf>) {
        match run() {
            Ok(()) => {
                self.passed += 1;
                println!("trapcheck: ok {name}");
            }
            Err(reason) => {
                self.failed += 1;
                println!("trapcheck: FAIL {name}: {}", reason.as_str());
            }
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
        // Truncate on a character boundary rather than fail.
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
    ($($arg:tt)*) => { return Err(ReasonBuf::new(format_args!($($arg)*))) };
}

fn main() {
    let mut report = Report {
        passed: 0,
        failed: 0,
    };
    report.check("uart", check_uart);
    report.check("psci-version", check_psci_version);
    report.check("cpu-on", check_cpu_on);
    report.check("vtimer-wfi", check_vtimer_wfi);
    report.check("data-abort", check_data_abort);
    println!(
        "trapcheck: done {} passed, {} failed",
        report.passed, report.failed
    );
}

/// Waits until `done()` or `WAIT_LIMIT_MS` have passed; returns whether `done()` held.
fn wait_until(mut done: impl FnMut() -> bool) -> bool {
    let end = timer::counter().saturating_add(timer::ms_to_ticks(WAIT_LIMIT_MS));
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

fn check_uart() -> Result<(), ReasonBuf> {
    if console::base().is_none() {
        // Nothing can be printed either; the missing line is the failure report.
        bail!("no PL011/SBSA UART in the device tree");
    }
    println!(
        "trapcheck: guest-kit trap checks on vCPU {:#x}",
        cpu::mpidr()
    );
    let mut last = 0;
    let drained = wait_until(|| {
        last = console::flags().unwrap_or(u32::MAX);
        last & console::FR_TXFF == 0
    });
    if !drained {
        bail!("FR.TXFF stayed set (FR = {last:#x})");
    }
    Ok(())
}

fn check_psci_version() -> Result<(), ReasonBuf> {
    if psci::conduit().is_none() {
        bail!("no PSCI node with method hvc/smc in the device tree");
    }
    match psci::version() {
        Ok((major, minor)) if major >= 1 => {
            let _ = minor;
            Ok(())
        }
        Ok((major, minor)) => bail!("PSCI {major}.{minor} is older than 1.0"),
        Err(error) => bail!("PSCI_VERSION returned {}", error.0),
    }
}

static CPU1_FLAG: AtomicU64 = AtomicU64::new(0);
static CPU1_MPIDR: AtomicU64 = AtomicU64::new(u64::MAX);

fn cpu1_main(_arg: usize) -> ! {
    CPU1_MPIDR.store(cpu::mpidr(), Ordering::Relaxed);
    CPU1_FLAG.store(CPU1_MAGIC, Ordering::Release);
    println!("trapcheck: cpu1 alive");
    let error = psci::cpu_off();
    println!("trapcheck: cpu1: CPU_OFF returned {}", error.0);
    mica_guest_rt::halt()
}

fn check_cpu_on() -> Result<(), ReasonBuf> {
    let Some(fdt) = devtree::get() else {
        bail!("no device tree");
    };
    let me = cpu::mpidr();
    let Some(target) = devtree::cpu_mpidrs(&fdt).find(|&mpidr| mpidr != me) else {
        bail!("the device tree lists no second CPU");
    };
    if let Err(error) = cpu::start_cpu(target, cpu1_main, 0) {
        bail!("CPU_ON({target:#x}) failed: {error:?}");
    }
    if !wait_until(|| CPU1_FLAG.load(Ordering::Acquire) == CPU1_MAGIC) {
        bail!("CPU {target:#x} did not set its flag within {WAIT_LIMIT_MS} ms");
    }
    let seen = CPU1_MPIDR.load(Ordering::Relaxed);
    if seen != target {
        bail!("the started CPU reports MPIDR {seen:#x}, expected {target:#x}");
    }
    let mut state = Ok(u64::MAX);
    if !wait_until(|| {
        state = psci::affinity_info(target);
        state == Ok(affinity::OFF)
    }) {
        match state {
            Ok(value) => bail!("AFFINITY_INFO({target:#x}) still {value} after CPU_OFF"),
            Err(error) => bail!("AFFINITY_INFO({target:#x}) returned {}", error.0),
        }
    }
    Ok(())
}

/// Set by the IRQ handler: INTID of the last interrupt, counter and CNTV_CTL when the vtimer
/// interrupt arrived.
static LAST_INTID: AtomicU32 = AtomicU32::new(u32::MAX);
static VTIMER_SEEN: AtomicBool = AtomicBool::new(false);
static VTIMER_COUNT_AT_IRQ: AtomicU64 = AtomicU64::new(0);
static VTIMER_CTL_AT_IRQ: AtomicU64 = AtomicU64::new(0);

fn on_irq(intid: u32) {
    LAST_INTID.store(intid, Ordering::Relaxed);
    if intid == VIRT_TIMER_PPI {
        VTIMER_CTL_AT_IRQ.store(timer::virtual_control(), Ordering::Relaxed);
        VTIMER_COUNT_AT_IRQ.store(timer::counter(), Ordering::Relaxed);
        // The timer interrupt is level triggered: mask it so it drops before the EOI.
        timer::set_virtual_control(timer::CTL_ENABLE | timer::CTL_IMASK);
        VTIMER_SEEN.store(true, Ordering::Release);
    }
}

fn check_vtimer_wfi() -> Result<(), ReasonBuf> {
    if let Err(error) = gic::init_distributor().and_then(|()| gic::init_cpu()) {
        bail!("GIC set-up failed: {error:?}");
    }
    if let Err(error) = gic::enable_private(VIRT_TIMER_PPI, 0x80) {
        bail!("enabling INTID {VIRT_TIMER_PPI} failed: {error:?}");
    }
    exceptions::set_irq_handler(Some(on_irq));
    if timer::frequency() == 0 {
        bail!("CNTFRQ_EL0 is 0");
    }
    let start = timer::counter();
    let deadline = start + timer::ms_to_ticks(10);
    let give_up = start + timer::ms_to_ticks(WAIT_LIMIT_MS);
    timer::set_virtual_deadline(deadline);
    mica_guest_rt::enable_irqs();
    let mut wakeups = 0u32;
    // Only the armed timer can end a WFI here; the counter check bounds the loop if other
    // interrupts wake it. (If no interrupt ever comes, WFI does not return: the harness times
    // out.)
    while !VTIMER_SEEN.load(Ordering::Acquire) && timer::counter() < give_up {
        mica_guest_rt::wait_for_interrupt();
        wakeups += 1;
    }
    mica_guest_rt::disable_irqs();
    timer::set_virtual_control(0);
    let _ = gic::disable_private(VIRT_TIMER_PPI);
    exceptions::set_irq_handler(None);

    if !VTIMER_SEEN.load(Ordering::Acquire) {
        let last = LAST_INTID.load(Ordering::Relaxed);
        bail!("no INTID {VIRT_TIMER_PPI} within {WAIT_LIMIT_MS} ms ({wakeups} wake-ups, last INTID {last})");
    }
    let at_irq = VTIMER_COUNT_AT_IRQ.load(Ordering::Relaxed);
    if at_irq < deadline {
        bail!("interrupt at count {at_irq:#x}, before the deadline {deadline:#x}");
    }
    let ctl = VTIMER_CTL_AT_IRQ.load(Ordering::Relaxed);
    if ctl & timer::CTL_ISTATUS == 0 {
        bail!("INTID {VIRT_TIMER_PPI} taken but CNTV_CTL_EL0.ISTATUS clear ({ctl:#x})");
    }
    Ok(())
}

/// Set while the data-abort check expects its fault; the handler then records and skips it.
static EXPECT_ABORT: AtomicBool = AtomicBool::new(false);
static ABORT_ESR: AtomicU64 = AtomicU64::new(0);
static ABORT_FAR: AtomicU64 = AtomicU64::new(0);
static ABORT_TAKEN: AtomicBool = AtomicBool::new(false);

fn on_sync(frame: &mut ExceptionFrame) -> bool {
    if !EXPECT_ABORT.swap(false, Ordering::AcqRel) {
        return false;
    }
    ABORT_ESR.store(frame.esr, Ordering::Relaxed);
    ABORT_FAR.store(frame.far, Ordering::Relaxed);
    ABORT_TAKEN.store(true, Ordering::Release);
    // Skip the (4-byte) load that faulted.
    frame.elr += 4;
    true
}

fn check_data_abort() -> Result<(), ReasonBuf> {
    exceptions::set_sync_handler(Some(on_sync));
    EXPECT_ABORT.store(true, Ordering::Release);
    let value: u32;
    // SAFETY: a single 32-bit load from an address that is unmapped in the guest: the expected
    // data abort is handled by `on_sync`, which skips the instruction. If the address reads as
    // memory instead, the load has no side effects (no device there in the guest map).
    unsafe {
        core::arch::asm!(
            "mov {value:w}, #0x5a5a",
            "ldr {value:w}, [{addr}]",
            value = out(reg) value,
            addr = in(reg) UNMAPPED_ADDRESS,
            options(nostack, readonly),
        )
    };
    EXPECT_ABORT.store(false, Ordering::Release);
    exceptions::set_sync_handler(None);

    if !ABORT_TAKEN.load(Ordering::Acquire) {
        bail!("no exception: the load from {UNMAPPED_ADDRESS:#x} returned {value:#x}");
    }
    let esr = ABORT_ESR.load(Ordering::Relaxed);
    let class = (esr >> 26) & 0x3f;
    if class != u64::from(EC_DATA_ABORT_SAME_EL) {
        bail!("ESR_EL1 {esr:#x}: EC {class:#x}, expected {EC_DATA_ABORT_SAME_EL:#x}");
    }
    let far = ABORT_FAR.load(Ordering::Relaxed);
    if far != UNMAPPED_ADDRESS {
        bail!("FAR_EL1 {far:#x}, expected {UNMAPPED_ADDRESS:#x} (ESR {esr:#x})");
    }
    Ok(())
}
