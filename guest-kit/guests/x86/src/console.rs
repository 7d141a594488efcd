//! Console output: Xen's CONSOLEIO_write when running on Xen (or Mica), else COM1.

use core::fmt::{self, Write};

/// COM1 data port.
const COM1: u16 = 0x3f8;

struct Out {
    buf: [u8; 128],
    len: usize,
}

impl Out {
    fn flush(&mut self) {
        if crate::xen::present() {
            crate::xen::console_write(&self.buf[..self.len]);
        } else {
            for &b in &self.buf[..self.len] {
                crate::cpu::outb(COM1, b);
            }
        }
        self.len = 0;
    }
}

impl Write for Out {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if self.len == self.buf.len() {
                self.flush();
            }
            self.buf[self.len] = b;
            self.len += 1;
        }
        Ok(())
    }
}

/// Prints formatted text (one hypercall per 128 bytes).
pub fn print(args: fmt::Arguments<'_>) {
    let mut out = Out {
        buf: [0; 128],
        len: 0,
    };
    let _ = out.write_fmt(args);
    out.flush();
}

/// Prints to the console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::print(format_args!($($arg)*)) };
}

/// Prints a line to the console.
#[macro_export]
macro_rules! println {
    () => { $crate::console::print(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::console::print(format_args!("{}\n", format_args!($($arg)*))) };
}
