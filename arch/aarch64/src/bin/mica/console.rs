//! Mica's console: the physical UART, shared by the hypervisor's own log and every
//! domain's output (multiplexed and tagged by `mica_hv::console`).

use core::fmt::{self, Write};
use mica_platforms::uart::{Uart, UartKind};
use spin::Mutex;

/// The physical UART, once found.
pub static UART: Mutex<Option<Uart>> = Mutex::new(None);

/// Takes over the UART of model `kind` at `base`.
///
/// # Safety
/// `base` must be a UART of that model, mapped as device memory in Mica's address space,
/// that nothing else drives.
pub unsafe fn init(kind: UartKind, base: usize) {
    // SAFETY: guaranteed by the caller.
    *UART.lock() = Some(unsafe { Uart::new(kind, base) });
}

struct UartWriter<'a>(&'a mut Uart);

impl Write for UartWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                self.0.put(b'\r');
            }
            self.0.put(b);
        }
        Ok(())
    }
}

/// Writes raw bytes (already formatted, `\n` becomes `\r\n`).
pub fn write_bytes(bytes: &[u8]) {
    if let Some(uart) = UART.lock().as_mut() {
        for &b in bytes {
            if b == b'\n' {
                uart.put(b'\r');
            }
            uart.put(b);
        }
    }
}

/// Writes bytes exactly as given (the multiplexer already ends lines with `\r\n`).
pub fn write_raw(bytes: &[u8]) {
    if let Some(uart) = UART.lock().as_mut() {
        for &b in bytes {
            uart.put(b);
        }
    }
}

/// Prints one line of Mica's own log, tagged `(MICA)`.
pub fn hv_line(args: fmt::Arguments<'_>) {
    crate::logline::emit(args);
}

/// Writes formatted text straight to the UART, for the panic path (no locks held).
pub fn emergency(args: fmt::Arguments<'_>) {
    // A panic may have happened with the lock held: take it anyway, output is all we need.
    let mut guard = match UART.try_lock() {
        Some(g) => g,
        None => {
            // SAFETY: we are stopping; whoever held the lock will never run again on this
            // CPU, and interleaved output is acceptable on the way down.
            unsafe { UART.force_unlock() };
            UART.lock()
        }
    };
    if let Some(uart) = guard.as_mut() {
        let _ = UartWriter(uart).write_fmt(args);
    }
}

/// Receives one byte from the physical UART, if any is waiting.
pub fn poll_input() -> Option<u8> {
    UART.lock().as_mut().and_then(|u| u.get())
}

/// `(MICA) ...` log line. (The defmt build has its own, in logline.rs.)
#[cfg(not(feature = "defmt"))]
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::console::hv_line(format_args!($($arg)*)) };
}
