//! Formatting of Mica's own log lines, handed to the console multiplexer. In the `defmt` build
//! `info!` goes to defmt instead (below), its format string's text interned.

use core::fmt::{self, Write};

struct Line {
    buf: [u8; 256],
    len: usize,
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if self.len < self.buf.len() {
                self.buf[self.len] = b;
                self.len += 1;
            }
        }
        Ok(())
    }
}

/// Formats one line and hands it to the multiplexer (or straight to the UART early on).
pub fn emit(args: fmt::Arguments<'_>) {
    let mut line = Line {
        buf: [0; 256],
        len: 0,
    };
    let _ = line.write_fmt(args);
    let text = core::str::from_utf8(&line.buf[..line.len]).unwrap_or("<bad utf-8>");
    crate::consoles::hypervisor_line(text);
}

/// `(MICA) ...` log line, in the defmt build: a defmt frame holding the index of the interned
/// format string and each argument's text (mica-defmt-fmt rewrites the Rust format string).
#[cfg(feature = "defmt")]
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { ::mica_defmt_fmt::println!($($arg)*) };
}
