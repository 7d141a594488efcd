//! The host's local APIC timer: Mica's own preemption. Before each VMRUN the run loop arms a
//! one-shot for the guest's next timer deadline (or a time slice at most), so a guest that
//! spins without exiting is interrupted (#VMEXIT(INTR)) and its timer still fires; an idle
//! guest lets the CPU halt until the deadline. The interrupt only causes the exit: its
//! handler acknowledges it (EOI) and returns.
//!
//! Physical interrupts stay masked in Mica's own code (RFLAGS.IF clear) except inside the
//! VMRUN stub and the idle wait, where GIF and IF decide when the pending tick is taken.

use crate::port;
use core::sync::atomic::{AtomicU64, Ordering};

/// IA32_APIC_BASE: bits 12-35 the register page, bit 11 enabled.
const MSR_APIC_BASE: u32 = 0x1b;
const APIC_BASE_ENABLE: u64 = 1 << 11;
const APIC_BASE_ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
/// Register offsets (xAPIC MMIO).
const REG_EOI: u64 = 0xb0;
const REG_SPURIOUS: u64 = 0xf0;
const REG_LVT_TIMER: u64 = 0x320;
const REG_TIMER_INITIAL: u64 = 0x380;
const REG_TIMER_CURRENT: u64 = 0x390;
const REG_TIMER_DIVIDE: u64 = 0x3e0;
/// Spurious-vector register: APIC software enable.
const SPURIOUS_ENABLE: u32 = 1 << 8;
/// Divide configuration 0b1011: divide by 1.
const DIVIDE_BY_1: u32 = 0b1011;
/// LVT mask bit.
const LVT_MASKED: u32 = 1 << 16;
/// The vector of Mica's tick, and the APIC's spurious vector.
pub const TIMER_VECTOR: u8 = 0xf0;
const SPURIOUS_VECTOR: u8 = 0xff;
/// Longest a guest runs without an exit Mica asked for (10 ms).
pub const SLICE_NS: u64 = 10_000_000;
/// Shortest one-shot (an initial count of 0 would stop the timer).
const MIN_COUNT: u64 = 1;

static BASE: AtomicU64 = AtomicU64::new(0);
/// Timer ticks per second (after the divider); 0: no timer.
static HZ: AtomicU64 = AtomicU64::new(0);

/// A 64-bit interrupt gate (present, DPL 0) to `handler` in code segment 0x08.
#[derive(Clone, Copy)]
#[repr(C)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    kind: u8,
    offset_mid: u16,
    offset_high: u32,
    zero: u32,
}

const GATE_INTERRUPT_PRESENT: u8 = 0x8e;
const CODE_SELECTOR: u16 = 0x08;
const IDT_ENTRIES: usize = 256;

#[repr(C, align(16))]
struct Idt([Gate; IDT_ENTRIES]);

const NO_GATE: Gate = Gate {
    offset_low: 0,
    selector: 0,
    ist: 0,
    kind: 0,
    offset_mid: 0,
    offset_high: 0,
    zero: 0,
};

static IDT: spin::Mutex<Idt> = spin::Mutex::new(Idt([NO_GATE; IDT_ENTRIES]));

core::arch::global_asm!(
    r#"
    .section .text
    .global mica_apic_tick
/* The tick: note that nothing is armed any more, acknowledge it at the APIC (EOI register
   address in MICA_APIC_EOI_REG) and return. */
mica_apic_tick:
    push %rax
    push %rcx
    movq $0, MICA_APIC_ARMED_AT(%rip)
    mov MICA_APIC_EOI_REG(%rip), %rcx
    xor %eax, %eax
    movl %eax, (%rcx)
    pop %rcx
    pop %rax
    iretq
    .global mica_apic_spurious
/* A spurious interrupt is not acknowledged. */
mica_apic_spurious:
    iretq
"#,
    options(att_syntax)
);

extern "C" {
    fn mica_apic_tick();
    fn mica_apic_spurious();
}

/// The EOI register's address, for the tick handler (an `AtomicU64` is a plain `u64` in
/// memory, which is how the handler reads it).
#[no_mangle]
static MICA_APIC_EOI_REG: AtomicU64 = AtomicU64::new(0);

/// When the armed one-shot is due (system time); 0 when none is armed. The tick handler
/// clears it, so a tick that fired is never taken for one still to come.
#[no_mangle]
static MICA_APIC_ARMED_AT: AtomicU64 = AtomicU64::new(0);

fn gate(handler: unsafe extern "C" fn()) -> Gate {
    let at = handler as usize as u64;
    Gate {
        offset_low: at as u16,
        selector: CODE_SELECTOR,
        ist: 0,
        kind: GATE_INTERRUPT_PRESENT,
        offset_mid: (at >> 16) as u16,
        offset_high: (at >> 32) as u32,
        zero: 0,
    }
}

fn write(reg: u64, value: u32) {
    let at = BASE.load(Ordering::Relaxed) + reg;
    // SAFETY: the APIC's register page (identity-mapped below 4 GiB), a register that exists
    // on every local APIC; written only on this CPU.
    unsafe { (at as *mut u32).write_volatile(value) }
}

fn read(reg: u64) -> u32 {
    let at = BASE.load(Ordering::Relaxed) + reg;
    // SAFETY: as for `write`; reading these registers has no side effects.
    unsafe { (at as *const u32).read_volatile() }
}

/// Installs the IDT and enables the APIC with its timer masked. False if the APIC is off
/// or lies above the 4 GiB Mica maps.
pub fn init() -> bool {
    let msr = port::rdmsr(MSR_APIC_BASE);
    let base = msr & APIC_BASE_ADDR_MASK;
    if msr & APIC_BASE_ENABLE == 0 || base >= 1 << 32 {
        return false;
    }
    BASE.store(base, Ordering::Relaxed);
    // Set before any interrupt can be taken (IF is clear until the first VMRUN).
    MICA_APIC_EOI_REG.store(base + REG_EOI, Ordering::Relaxed);
    let mut idt = IDT.lock();
    idt.0[usize::from(TIMER_VECTOR)] = gate(mica_apic_tick);
    idt.0[usize::from(SPURIOUS_VECTOR)] = gate(mica_apic_spurious);
    let pointer = (
        (core::mem::size_of::<Idt>() - 1) as u16,
        idt.0.as_ptr() as u64,
    );
    let descriptor: [u8; 10] = {
        let mut d = [0u8; 10];
        d[0..2].copy_from_slice(&pointer.0.to_le_bytes());
        d[2..10].copy_from_slice(&pointer.1.to_le_bytes());
        d
    };
    // SAFETY: the IDT is a static that lives forever and is not changed after this; its
    // gates point at the handlers above, in Mica's code segment.
    unsafe { core::arch::asm!("lidt [{}]", in(reg) descriptor.as_ptr(), options(nostack)) };
    drop(idt);
    write(REG_SPURIOUS, SPURIOUS_ENABLE | u32::from(SPURIOUS_VECTOR));
    write(REG_TIMER_DIVIDE, DIVIDE_BY_1);
    write(REG_LVT_TIMER, LVT_MASKED | u32::from(TIMER_VECTOR));
    true
}

/// Starts a calibration run of the timer (masked, from the top).
pub fn calibration_start() {
    write(REG_TIMER_INITIAL, u32::MAX);
}

/// Ends a calibration run that lasted `ns` nanoseconds; records the timer's frequency.
pub fn calibration_end(ns: u64) -> Option<u64> {
    let elapsed = u64::from(u32::MAX - read(REG_TIMER_CURRENT));
    write(REG_TIMER_INITIAL, 0);
    let hz = u64::try_from(u128::from(elapsed) * 1_000_000_000 / u128::from(ns.max(1))).ok()?;
    if hz == 0 {
        return None;
    }
    HZ.store(hz, Ordering::Relaxed);
    write(REG_LVT_TIMER, u32::from(TIMER_VECTOR));
    Some(hz)
}

/// Whether the timer runs (init and calibration succeeded).
pub fn available() -> bool {
    HZ.load(Ordering::Relaxed) != 0
}

/// Makes sure the tick fires at most `ns` after `now` (capped at [`SLICE_NS`]). A tick
/// already armed to fire earlier is kept: it only ends a guest's run sooner, and the run loop
/// asks again after every exit.
pub fn arm(now: u64, ns: u64) {
    let hz = HZ.load(Ordering::Relaxed);
    if hz == 0 {
        return;
    }
    let ns = ns.min(SLICE_NS);
    let at = now.saturating_add(ns);
    let armed = MICA_APIC_ARMED_AT.load(Ordering::Relaxed);
    if armed != 0 && armed <= at {
        return;
    }
    MICA_APIC_ARMED_AT.store(at.max(1), Ordering::Relaxed);
    let ticks = u128::from(ns) * u128::from(hz) / 1_000_000_000;
    let count = u64::try_from(ticks).unwrap_or(u64::MAX).max(MIN_COUNT);
    write(REG_TIMER_INITIAL, count.min(u64::from(u32::MAX)) as u32);
}

/// Waits with interrupts on until the next interrupt (the armed tick) has been taken.
pub fn idle() {
    // SAFETY: STI's shadow covers HLT, so a tick pending already wakes the HLT; the handler
    // only acknowledges the APIC; IF is cleared again before returning to Rust code.
    unsafe { core::arch::asm!("sti", "hlt", "cli", options(nomem, nostack)) };
}
