//! Formatting of Mica's own log lines, handed to the console multiplexer (or, in the `defmt`
//! build, sent as defmt frames).

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
    #[cfg(feature = "defmt")]
    crate::defmt_log::line(text);
    #[cfg(not(feature = "defmt"))]
    crate::consoles::hypervisor_line(text);
}
