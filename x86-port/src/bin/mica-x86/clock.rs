//! Mica's time base: the TSC, calibrated once at boot against PIT channel 2 (the one timer
//! every PC and QEMU's q35 has). System time is nanoseconds since that calibration; guests
//! see the same clock through Xen's vcpu_time_info (one fixed TSC-to-ns scale, so Mica's
//! and the guest's view of "now" agree exactly).

use crate::port;
use core::sync::atomic::{AtomicU64, Ordering};
use mica_hv::xen::pvclock::{self, VcpuTime};

/// PIT input clock.
const PIT_HZ: u64 = 1_193_182;
/// Calibration interval in PIT ticks (20 ms).
const CALIBRATION_TICKS: u64 = 23_864;
/// Port 0x61: bit 0 gates PIT channel 2, bit 1 drives the speaker, bit 5 reads OUT2.
const PORT_B: u16 = 0x61;
const PORT_B_GATE2: u8 = 1 << 0;
const PORT_B_SPEAKER: u8 = 1 << 1;
const PORT_B_OUT2: u8 = 1 << 5;
/// PIT command: channel 2, low then high byte, mode 0 (interrupt on terminal count).
const PIT_COMMAND: u16 = 0x43;
const PIT_CHANNEL2: u16 = 0x42;
const PIT_CH2_LOHI_MODE0: u8 = 0b1011_0000;
/// Give up waiting for OUT2 after this many polls (a machine without a PIT).
const MAX_POLLS: u32 = 100_000_000;

static TSC_BASE: AtomicU64 = AtomicU64::new(0);
static TSC_HZ: AtomicU64 = AtomicU64::new(0);
/// The scale, packed: mul in the low 32 bits, shift (as u8) above.
static SCALE: AtomicU64 = AtomicU64::new(0);

/// Measures the TSC frequency; returns it in Hz, or `None` if the PIT never counted down.
pub fn calibrate() -> Option<u64> {
    let b = port::inb(PORT_B);
    port::outb(PORT_B, (b & !PORT_B_SPEAKER) | PORT_B_GATE2);
    port::outb(PIT_COMMAND, PIT_CH2_LOHI_MODE0);
    port::outb(PIT_CHANNEL2, CALIBRATION_TICKS as u8);
    port::outb(PIT_CHANNEL2, (CALIBRATION_TICKS >> 8) as u8);
    let start = port::rdtsc();
    crate::apic::calibration_start();
    let mut polls = 0;
    while port::inb(PORT_B) & PORT_B_OUT2 == 0 {
        polls += 1;
        if polls > MAX_POLLS {
            return None;
        }
    }
    let ticks = port::rdtsc().wrapping_sub(start);
    // The local APIC timer ran over the same interval (no APIC: Mica runs without it).
    let interval_ns = CALIBRATION_TICKS * 1_000_000_000 / PIT_HZ;
    let _ = crate::apic::calibration_end(interval_ns);
    port::outb(PORT_B, b);
    let hz = u128::from(ticks) * u128::from(PIT_HZ) / u128::from(CALIBRATION_TICKS);
    let hz = u64::try_from(hz).ok()?;
    let (mul, shift) = pvclock::scale(hz)?;
    TSC_HZ.store(hz, Ordering::Relaxed);
    SCALE.store(
        u64::from(mul) | u64::from(shift as u8) << 32,
        Ordering::Relaxed,
    );
    TSC_BASE.store(port::rdtsc(), Ordering::Relaxed);
    Some(hz)
}

fn scale() -> (u32, i8) {
    let s = SCALE.load(Ordering::Relaxed);
    (s as u32, (s >> 32) as u8 as i8)
}

/// Nanoseconds since calibration (0 before it).
pub fn now_ns() -> u64 {
    let (mul, shift) = scale();
    let ticks = port::rdtsc().wrapping_sub(TSC_BASE.load(Ordering::Relaxed));
    pvclock::ticks_to_ns(ticks, mul, shift)
}

/// The guest's time record: the calibration point and the fixed scale.
pub fn vcpu_time() -> VcpuTime {
    let (mul, shift) = scale();
    VcpuTime {
        tsc_timestamp: TSC_BASE.load(Ordering::Relaxed),
        system_time_ns: 0,
        mul,
        shift,
        flags: 0,
    }
}
