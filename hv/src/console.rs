//! The console multiplexer: every domain's output and Mica's own share one physical UART.
//!
//! Output is line-buffered per domain and each line is tagged, as Xen does:
//! `(MICA) DOM<id>: <text>` for a domain, `(MICA) <text>` for Mica, and with timestamps on,
//! `(MICA) [    1.234567] DOM1: <text>`. A line ends at `\n` (a `\r` is dropped), when its
//! buffer reaches [`LINE_MAX`] bytes, when the domain is removed, or when it has been idle
//! for [`IDLE_FLUSH_MS`] if the domain has the input focus (so the prompt of the shell one
//! types into appears), else for [`BACKGROUND_FLUSH_MS`] (long enough that a vCPU waiting
//! for its turn on a shared CPU does not split its line). Lines go to the sink whole, ending in
//! `\r\n` because the physical line is a raw serial terminal.
//!
//! Guests cannot drive the terminal: control bytes other than tab are shown in caret
//! notation (ESC becomes `^[`, DEL `^?`), valid UTF-8 passes through except the C1
//! controls U+0080..U+009F (shown as `?`), and bytes that are not valid UTF-8 become `?`.
//!
//! Input goes to the domain with the focus. Typing Ctrl-a three times in a row moves the
//! focus to the next domain in the order they were added, then to Mica, then around.
//! One or two Ctrl-a followed by another byte are delivered along with that byte.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write as _;

/// Longest line buffered before it is flushed anyway.
pub const LINE_MAX: usize = 256;
/// A partial line of the domain with the input focus older than this is flushed.
pub const IDLE_FLUSH_MS: u64 = 100;
/// A partial line of any other domain older than this is flushed.
pub const BACKGROUND_FLUSH_MS: u64 = 2000;
/// The focus-switch byte (Ctrl-a).
pub const SWITCH_CODE: u8 = 0x01;
/// What ends each line on the wire.
pub const LINE_END: &[u8] = b"\r\n";

/// Who receives console input.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Focus {
    /// Mica itself.
    Mica,
    /// The domain with this id.
    Domain(u16),
}

/// Up to three input bytes delivered together (pending Ctrl-a bytes plus the new one).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct InputBytes {
    buf: [u8; 3],
    len: u8,
}

impl InputBytes {
    fn new(pending_switch: u8, byte: u8) -> Self {
        let mut buf = [SWITCH_CODE; 3];
        let n = usize::from(pending_switch.min(2));
        buf[n] = byte;
        Self {
            buf,
            len: n as u8 + 1,
        }
    }

    /// The bytes, in order.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }
}

/// What to do with a byte of input.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum InputAction {
    /// Nothing (swallowed as part of a Ctrl-a sequence).
    None,
    /// Give these bytes to the domain's console.
    Deliver {
        /// Domain id.
        dom: u16,
        /// Bytes to queue, in order.
        bytes: InputBytes,
    },
    /// The bytes are for Mica (debug keys).
    Hypervisor(InputBytes),
}

#[derive(Debug)]
struct DomainConsole {
    id: u16,
    name: String,
    line: Vec<u8>,
    last_byte_ticks: u64,
}

/// The multiplexer.
#[derive(Debug)]
pub struct ConsoleMux {
    timestamps: bool,
    domains: Vec<DomainConsole>,
    focus: Focus,
    switch_count: u8,
}

impl ConsoleMux {
    /// An empty multiplexer with the input focus on Mica.
    pub fn new(timestamps: bool) -> Self {
        Self {
            timestamps,
            domains: Vec::new(),
            focus: Focus::Mica,
            switch_count: 0,
        }
    }

    /// Registers a domain's console (after the existing ones in the focus order). Adding a
    /// known id renames it.
    pub fn add_domain(&mut self, id: u16, name: &str) {
        if let Some(d) = self.domains.iter_mut().find(|d| d.id == id) {
            d.name = String::from(name);
            return;
        }
        self.domains.push(DomainConsole {
            id,
            name: String::from(name),
            line: Vec::with_capacity(LINE_MAX),
            last_byte_ticks: 0,
        });
        // Like Xen, keyboard input starts with the first domain (the initial domain).
        if self.domains.len() == 1 && self.focus == Focus::Mica {
            self.focus = Focus::Domain(id);
        }
    }

    /// The name given to a domain's console.
    pub fn domain_name(&self, id: u16) -> Option<&str> {
        self.domains
            .iter()
            .find(|d| d.id == id)
            .map(|d| d.name.as_str())
    }

    /// Forgets a domain: flushes its partial line, and moves the focus on if it had it.
    pub fn remove_domain(
        &mut self,
        id: u16,
        now_ticks: u64,
        freq: u64,
        sink: &mut dyn FnMut(&[u8]),
    ) {
        let Some(pos) = self.domains.iter().position(|d| d.id == id) else {
            return;
        };
        if !self.domains[pos].line.is_empty() {
            self.flush_domain(pos, now_ticks, freq, sink);
        }
        self.domains.remove(pos);
        if self.focus == Focus::Domain(id) {
            self.focus = match self.domains.get(pos) {
                Some(next) => Focus::Domain(next.id),
                None => Focus::Mica,
            };
            self.switch_count = 0;
            self.announce_focus(now_ticks, freq, sink);
        }
    }

    /// Who receives input now.
    pub fn focus(&self) -> Focus {
        self.focus
    }

    /// Moves the focus (to a known domain or Mica) and announces it; `false` if unknown.
    pub fn set_focus(
        &mut self,
        focus: Focus,
        now_ticks: u64,
        freq: u64,
        sink: &mut dyn FnMut(&[u8]),
    ) -> bool {
        if let Focus::Domain(id) = focus {
            if !self.domains.iter().any(|d| d.id == id) {
                return false;
            }
        }
        self.focus = focus;
        self.switch_count = 0;
        self.announce_focus(now_ticks, freq, sink);
        true
    }

    /// One byte of output from domain `dom`. Output from an unknown domain registers it.
    pub fn guest_output(
        &mut self,
        dom: u16,
        byte: u8,
        now_ticks: u64,
        freq: u64,
        sink: &mut dyn FnMut(&[u8]),
    ) {
        let pos = match self.domains.iter().position(|d| d.id == dom) {
            Some(p) => p,
            None => {
                self.add_domain(dom, "");
                self.domains.len() - 1
            }
        };
        let d = &mut self.domains[pos];
        d.last_byte_ticks = now_ticks;
        match byte {
            b'\r' => {}
            b'\n' => self.flush_domain(pos, now_ticks, freq, sink),
            b => {
                d.line.push(b);
                if d.line.len() >= LINE_MAX {
                    self.flush_domain(pos, now_ticks, freq, sink);
                }
            }
        }
    }

    /// Flushes partial lines whose last byte is older than [`IDLE_FLUSH_MS`] (the focused
    /// domain) or [`BACKGROUND_FLUSH_MS`] (the others).
    pub fn flush_idle(&mut self, now_ticks: u64, freq: u64, sink: &mut dyn FnMut(&[u8])) {
        for pos in 0..self.domains.len() {
            let d = &self.domains[pos];
            let limit_ms = if self.focus == Focus::Domain(d.id) {
                IDLE_FLUSH_MS
            } else {
                BACKGROUND_FLUSH_MS
            };
            let idle = (freq / 1000).saturating_mul(limit_ms);
            if !d.line.is_empty() && now_ticks.saturating_sub(d.last_byte_ticks) >= idle {
                self.flush_domain(pos, now_ticks, freq, sink);
            }
        }
    }

    /// Prints one of Mica's own lines (a trailing newline in `text` is not needed).
    pub fn hypervisor_line(
        &mut self,
        text: &str,
        now_ticks: u64,
        freq: u64,
        sink: &mut dyn FnMut(&[u8]),
    ) {
        let text = text.strip_suffix('\n').unwrap_or(text);
        let text = text.strip_suffix('\r').unwrap_or(text);
        let mut out = self.prefix(now_ticks, freq);
        // Mica's own text is trusted but still cleaned, so a quoted guest string is safe.
        push_clean(&mut out, text.as_bytes());
        out.extend_from_slice(LINE_END);
        sink(&out);
    }

    /// One byte typed on the physical console.
    pub fn input(
        &mut self,
        byte: u8,
        now_ticks: u64,
        freq: u64,
        sink: &mut dyn FnMut(&[u8]),
    ) -> InputAction {
        if byte == SWITCH_CODE {
            self.switch_count += 1;
            if self.switch_count >= 3 {
                self.switch_count = 0;
                self.focus = self.next_focus();
                self.announce_focus(now_ticks, freq, sink);
            }
            return InputAction::None;
        }
        let bytes = InputBytes::new(self.switch_count, byte);
        self.switch_count = 0;
        match self.focus {
            Focus::Mica => InputAction::Hypervisor(bytes),
            Focus::Domain(dom) => InputAction::Deliver { dom, bytes },
        }
    }

    fn next_focus(&self) -> Focus {
        let next_index = match self.focus {
            Focus::Mica => 0,
            Focus::Domain(id) => match self.domains.iter().position(|d| d.id == id) {
                Some(p) => p + 1,
                None => 0,
            },
        };
        match self.domains.get(next_index) {
            Some(d) => Focus::Domain(d.id),
            None => Focus::Mica,
        }
    }

    fn announce_focus(&mut self, now_ticks: u64, freq: u64, sink: &mut dyn FnMut(&[u8])) {
        let mut text = String::from("*** Switch input to ");
        match self.focus {
            Focus::Mica => text.push_str("Mica"),
            Focus::Domain(id) => {
                let _ = write!(text, "DOM{id}");
            }
        }
        text.push_str(" (type 'CTRL-a' three times to switch input)");
        self.hypervisor_line(&text, now_ticks, freq, sink);
    }

    fn prefix(&self, now_ticks: u64, freq: u64) -> Vec<u8> {
        let mut s = String::with_capacity(LINE_MAX + 32);
        s.push_str("(MICA) ");
        if self.timestamps {
            let (secs, micros) = match (now_ticks.checked_div(freq), now_ticks.checked_rem(freq)) {
                (Some(secs), Some(rem)) => (
                    secs,
                    (u128::from(rem) * 1_000_000 / u128::from(freq)) as u64,
                ),
                _ => (0, 0),
            };
            let _ = write!(s, "[{secs:>5}.{micros:06}] ");
        }
        s.into_bytes()
    }

    fn flush_domain(&mut self, pos: usize, now_ticks: u64, freq: u64, sink: &mut dyn FnMut(&[u8])) {
        let mut out = self.prefix(now_ticks, freq);
        let Some(d) = self.domains.get_mut(pos) else {
            return;
        };
        let _ = write!(Bytes(&mut out), "DOM{}: ", d.id);
        push_clean(&mut out, &d.line);
        d.line.clear();
        out.extend_from_slice(LINE_END);
        sink(&out);
    }
}

/// `fmt::Write` into a byte vector.
struct Bytes<'a>(&'a mut Vec<u8>);

impl core::fmt::Write for Bytes<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Appends `raw` made safe for a terminal (see the module comment).
fn push_clean(out: &mut Vec<u8>, raw: &[u8]) {
    for chunk in raw.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\t' | ' '..='~' => out.push(c as u8),
                '\0'..='\x1f' => {
                    out.push(b'^');
                    out.push(c as u8 + 0x40);
                }
                '\x7f' => out.extend_from_slice(b"^?"),
                '\u{80}'..='\u{9f}' => out.push(b'?'),
                c => {
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
        if !chunk.invalid().is_empty() {
            out.push(b'?');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    const HZ: u64 = 1_000_000;

    #[derive(Default)]
    struct Wire(Vec<String>);

    impl Wire {
        fn sink(&mut self) -> impl FnMut(&[u8]) + '_ {
            |b: &[u8]| self.0.push(String::from_utf8(b.to_vec()).expect("utf8"))
        }
    }

    fn feed(m: &mut ConsoleMux, dom: u16, s: &[u8], t: u64, w: &mut Wire) {
        for &b in s {
            m.guest_output(dom, b, t, HZ, &mut w.sink());
        }
    }

    #[test]
    fn lines_are_tagged() {
        let mut m = ConsoleMux::new(false);
        let mut w = Wire::default();
        m.add_domain(1, "linux");
        m.add_domain(2, "zephyr");
        feed(&mut m, 1, b"hel", 0, &mut w);
        feed(&mut m, 2, b"world\r\n", 0, &mut w);
        feed(&mut m, 1, b"lo\r\n", 0, &mut w);
        m.hypervisor_line("boot done\n", 0, HZ, &mut w.sink());
        assert_eq!(
            w.0,
            [
                "(MICA) DOM2: world\r\n",
                "(MICA) DOM1: hello\r\n",
                "(MICA) boot done\r\n"
            ]
        );
        assert_eq!(m.domain_name(2), Some("zephyr"));
    }

    #[test]
    fn timestamps() {
        let mut m = ConsoleMux::new(true);
        let mut w = Wire::default();
        m.add_domain(1, "a");
        feed(&mut m, 1, b"x\n", 1_234_567, &mut w);
        m.hypervisor_line("big", 123_456_789_000_001, HZ, &mut w.sink());
        m.hypervisor_line(
            "62.5MHz",
            62_500_000 + 31_250_000,
            62_500_000,
            &mut w.sink(),
        );
        m.hypervisor_line("nofreq", 5, 0, &mut w.sink());
        assert_eq!(
            w.0,
            [
                "(MICA) [    1.234567] DOM1: x\r\n",
                "(MICA) [123456789.000001] big\r\n",
                "(MICA) [    1.500000] 62.5MHz\r\n",
                "(MICA) [    0.000000] nofreq\r\n",
            ]
        );
    }

    #[test]
    fn long_lines_split() {
        let mut m = ConsoleMux::new(false);
        let mut w = Wire::default();
        m.add_domain(3, "");
        feed(&mut m, 3, &[b'a'; LINE_MAX + 10], 0, &mut w);
        assert_eq!(w.0.len(), 1);
        assert_eq!(w.0[0].len(), "(MICA) DOM3: ".len() + LINE_MAX + 2);
        feed(&mut m, 3, b"\n", 0, &mut w);
        assert_eq!(w.0[1], "(MICA) DOM3: aaaaaaaaaa\r\n");
    }

    #[test]
    fn idle_flush_and_remove_flush() {
        let mut m = ConsoleMux::new(false);
        let mut w = Wire::default();
        m.add_domain(1, "");
        m.add_domain(2, "");
        // Domain 1 has the focus (the first added).
        feed(&mut m, 1, b"# ", 1000, &mut w);
        feed(&mut m, 2, b"partial", 15_000, &mut w);
        m.flush_idle(100_999, HZ, &mut w.sink());
        assert!(w.0.is_empty());
        m.flush_idle(101_000, HZ, &mut w.sink());
        assert_eq!(w.0, ["(MICA) DOM1: # \r\n"]);
        m.flush_idle(101_001, HZ, &mut w.sink());
        assert_eq!(w.0.len(), 1, "empty lines are not flushed");
        // Without the focus, a partial line waits much longer.
        m.flush_idle(2_014_999, HZ, &mut w.sink());
        assert_eq!(w.0.len(), 1);
        m.flush_idle(2_015_000, HZ, &mut w.sink());
        assert_eq!(w.0[1], "(MICA) DOM2: partial\r\n");
        feed(&mut m, 2, b"more", 2_100_000, &mut w);
        m.remove_domain(2, 2_100_001, HZ, &mut w.sink());
        assert_eq!(w.0[2], "(MICA) DOM2: more\r\n");
        assert_eq!(m.domain_name(2), None);
        m.remove_domain(2, 2_200_000, HZ, &mut w.sink()); // twice: no-op
        assert_eq!(w.0.len(), 3);
    }

    #[test]
    fn escapes_are_neutralised() {
        let mut m = ConsoleMux::new(false);
        let mut w = Wire::default();
        feed(&mut m, 7, b"\x1b[2J\ttab\x07\x7f", 0, &mut w);
        feed(&mut m, 7, "é\u{9b}".as_bytes(), 0, &mut w);
        feed(&mut m, 7, &[0x9b, 0xff, b'!', b'\n'], 0, &mut w);
        assert_eq!(w.0, ["(MICA) DOM7: ^[[2J\ttab^G^?é???!\r\n"]);
        m.hypervisor_line("evil \x1b]0;x\x07", 0, HZ, &mut w.sink());
        assert_eq!(w.0[1], "(MICA) evil ^[]0;x^G\r\n");
        for line in &w.0 {
            assert!(!line.bytes().any(|b| b == 0x1b));
        }
    }

    fn switch(m: &mut ConsoleMux, w: &mut Wire) {
        for _ in 0..3 {
            assert_eq!(
                m.input(SWITCH_CODE, 0, HZ, &mut w.sink()),
                InputAction::None
            );
        }
    }

    #[test]
    fn focus_rotation() {
        let mut m = ConsoleMux::new(false);
        let mut w = Wire::default();
        assert_eq!(m.focus(), Focus::Mica);
        m.add_domain(1, "");
        m.add_domain(5, "");
        // Input starts with the first domain, as on Xen.
        assert_eq!(m.focus(), Focus::Domain(1));
        switch(&mut m, &mut w);
        assert_eq!(m.focus(), Focus::Domain(5));
        assert_eq!(
            w.0.last().map(|s| s.as_str()),
            Some("(MICA) *** Switch input to DOM5 (type 'CTRL-a' three times to switch input)\r\n")
        );
        switch(&mut m, &mut w);
        assert_eq!(m.focus(), Focus::Mica);
        assert_eq!(
            w.0.last().map(|s| s.as_str()),
            Some("(MICA) *** Switch input to Mica (type 'CTRL-a' three times to switch input)\r\n")
        );
        switch(&mut m, &mut w);
        assert_eq!(m.focus(), Focus::Domain(1));
    }

    #[test]
    fn input_delivery_and_partial_switch_codes() {
        let mut m = ConsoleMux::new(false);
        let mut w = Wire::default();
        m.add_domain(1, "");
        assert!(m.set_focus(Focus::Domain(1), 0, HZ, &mut w.sink()));
        assert!(!m.set_focus(Focus::Domain(9), 0, HZ, &mut w.sink()));
        let deliver =
            |m: &mut ConsoleMux, b: u8, w: &mut Wire| match m.input(b, 0, HZ, &mut w.sink()) {
                InputAction::Deliver { dom, bytes } => (dom, bytes.as_slice().to_vec()),
                other => panic!("{other:?}"),
            };
        assert_eq!(deliver(&mut m, b'x', &mut w), (1, b"x".to_vec()));
        assert_eq!(
            m.input(SWITCH_CODE, 0, HZ, &mut w.sink()),
            InputAction::None
        );
        assert_eq!(deliver(&mut m, b'c', &mut w), (1, b"\x01c".to_vec()));
        m.input(SWITCH_CODE, 0, HZ, &mut w.sink());
        m.input(SWITCH_CODE, 0, HZ, &mut w.sink());
        assert_eq!(deliver(&mut m, b'd', &mut w), (1, b"\x01\x01d".to_vec()));
        assert_eq!(m.focus(), Focus::Domain(1));
        // With the focus on Mica the bytes are Mica's.
        switch(&mut m, &mut w);
        assert_eq!(m.focus(), Focus::Mica);
        let got = m.input(b'h', 0, HZ, &mut w.sink());
        match got {
            InputAction::Hypervisor(b) => assert_eq!(b.as_slice(), b"h"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn removing_focused_domain_moves_focus() {
        let mut m = ConsoleMux::new(false);
        let mut w = Wire::default();
        for id in [1, 2, 3] {
            m.add_domain(id, &id.to_string());
        }
        m.set_focus(Focus::Domain(2), 0, HZ, &mut w.sink());
        m.remove_domain(2, 0, HZ, &mut w.sink());
        assert_eq!(m.focus(), Focus::Domain(3));
        assert!(w
            .0
            .last()
            .is_some_and(|l| l.contains("Switch input to DOM3")));
        m.remove_domain(3, 0, HZ, &mut w.sink());
        assert_eq!(m.focus(), Focus::Mica);
        // Removing a domain without the focus leaves it alone.
        m.set_focus(Focus::Domain(1), 0, HZ, &mut w.sink());
        m.add_domain(4, "");
        m.remove_domain(4, 0, HZ, &mut w.sink());
        assert_eq!(m.focus(), Focus::Domain(1));
    }

    #[test]
    fn many_switch_codes_and_garbage_input() {
        let mut m = ConsoleMux::new(true);
        let mut w = Wire::default();
        m.add_domain(1, "");
        for b in 0..=255u8 {
            let _ = m.input(b, u64::MAX, 1, &mut w.sink());
            m.guest_output(1, b, u64::MAX, 1, &mut w.sink());
            m.guest_output(u16::MAX, b, 0, 0, &mut w.sink());
        }
        m.flush_idle(u64::MAX, u64::MAX, &mut w.sink());
        for line in &w.0 {
            assert!(line.starts_with("(MICA) ["));
            assert!(line.ends_with("\r\n"));
            assert!(!line
                .bytes()
                .any(|b| b == 0x1b || (b < 0x20 && b != b'\t' && b != b'\r' && b != b'\n')));
        }
    }
}
