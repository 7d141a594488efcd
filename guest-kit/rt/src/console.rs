//! Console on a PL011 / SBSA UART, or else Xen's PV console, and the `print!` / `println!`
//! macros.
//!
//! Only the data register (DR) and flag register (FR) are used, with 32-bit accesses, which is
//! all an SBSA generic UART (Xen's and Mica's vPL011) has to provide. A Xen initial domain has
//! no UART in its device tree; then output goes through [`crate::xen::console`].

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicUsize, Ordering};

/// Data register.
const DR: usize = 0x00;
/// Flag register.
const FR: usize = 0x18;
/// FR: transmit FIFO full.
pub const FR_TXFF: u32 = 1 << 5;
/// FR: UART busy transmitting.
pub const FR_BUSY: u32 = 1 << 3;
/// How often to poll FR before giving up on one byte, so a broken UART cannot hang the guest.
const TX_SPIN_LIMIT: u32 = 1 << 20;

static UART_BASE: AtomicUsize = AtomicUsize::new(0);
static LOCK: spin::Mutex<()> = spin::Mutex::new(());

/// Uses the UART whose registers start at `base` (identity mapped).
pub fn init(base: usize) {
    UART_BASE.store(base, Ordering::Release);
}

/// Base address of the console UART, if one was found.
pub fn base() -> Option<usize> {
    match UART_BASE.load(Ordering::Acquire) {
        0 => None,
        base => Some(base),
    }
}

/// Reads the flag register, if there is a console.
pub fn flags() -> Option<u32> {
    // SAFETY: `base` is the UART the device tree named; FR is a readable 32-bit register.
    base().map(|base| unsafe { crate::mmio::read32(base + FR) })
}

fn put_byte(base: usize, byte: u8) {
    for _ in 0..TX_SPIN_LIMIT {
        // SAFETY: as in `flags`.
        let fr = unsafe { crate::mmio::read32(base + FR) };
        if fr & FR_TXFF == 0 {
            break;
        }
        core::hint::spin_loop();
    }
    // SAFETY: DR is a writable 32-bit register of the console UART.
    unsafe { crate::mmio::write32(base + DR, u32::from(byte)) };
}

struct Uart(usize);

impl Write for Uart {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for byte in s.bytes() {
            if byte == b'\n' {
                put_byte(self.0, b'\r');
            }
            put_byte(self.0, byte);
        }
        Ok(())
    }
}

/// Collects text for the Xen PV console and hands it over in chunks (one hypercall or ring
/// notification per chunk rather than per byte).
struct XenConsole {
    buffer: [u8; 128],
    len: usize,
}

impl XenConsole {
    fn new() -> Self {
        Self {
            buffer: [0; 128],
            len: 0,
        }
    }

    fn flush(&mut self) {
        crate::xen::console::write(&self.buffer[..self.len]);
        self.len = 0;
    }
}

impl Write for XenConsole {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for byte in s.bytes() {
            if self.len == self.buffer.len() {
                self.flush();
            }
            self.buffer[self.len] = byte;
            self.len += 1;
        }
        Ok(())
    }
}

fn write_any(args: fmt::Arguments<'_>) {
    if let Some(base) = base() {
        let _ = Uart(base).write_fmt(args);
    } else if crate::xen::console::backend().is_some() {
        let mut console = XenConsole::new();
        let _ = console.write_fmt(args);
        console.flush();
    }
}

/// Whether output goes anywhere (a UART or the Xen PV console).
pub fn present() -> bool {
    base().is_some() || crate::xen::console::backend().is_some()
}

/// Writes formatted text to the console; lines from different CPUs do not interleave within a
/// call. Does nothing without a console.
pub fn print(args: fmt::Arguments<'_>) {
    let _guard = LOCK.lock();
    write_any(args);
}

/// Writes without taking the console lock: for exception and panic reports, which may
/// interrupt a CPU that holds it.
pub fn emergency_print(args: fmt::Arguments<'_>) {
    write_any(args);
}

/// Prints to the guest console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::print(format_args!($($arg)*)) };
}

/// Prints a line to the guest console.
#[macro_export]
macro_rules! println {
    () => { $crate::console::print(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::console::print(format_args!("{}\n", format_args!($($arg)*))) };
}
