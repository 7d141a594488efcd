//! The two PC-legacy devices a Linux kernel without a local APIC needs for its tick: the
//! 8259A interrupt controller pair (ports 0x20/0x21, 0xA0/0xA1) and channel 0 of the 8254
//! interval timer (ports 0x40-0x43), wired to the PIC's line 0 as on a PC. Plain state
//! machines driven by port accesses and a nanosecond clock the caller supplies; every guest
//! value is accepted without panicking (unknown commands are ignored).
//!
//! What is modelled is what Linux's `i8259.c` and `i8253`/`clockevents` drivers use: the
//! initialization words (vector base, auto-EOI), the mask register, non-specific and
//! specific EOI, IRR/ISR reads, and PIT modes 0 (one-shot), 2 and 3 (periodic) with
//! counter latching. Not modelled: special mask mode, rotation, polling, level triggering,
//! BCD counting, channels 1 and 2.

/// Master PIC command and data ports; the slave's.
pub const PIC_MASTER_CMD: u16 = 0x20;
/// Master PIC data (mask) port.
pub const PIC_MASTER_DATA: u16 = 0x21;
/// Slave PIC command port.
pub const PIC_SLAVE_CMD: u16 = 0xa0;
/// Slave PIC data (mask) port.
pub const PIC_SLAVE_DATA: u16 = 0xa1;
/// PIT channel 0 data port.
pub const PIT_CHANNEL0: u16 = 0x40;
/// PIT mode/command port.
pub const PIT_COMMAND: u16 = 0x43;
/// The PIT's input clock.
pub const PIT_HZ: u64 = 1_193_182;
/// The line the PIT drives.
pub const PIT_IRQ: u8 = 0;
/// The master's line the slave is cascaded on.
const CASCADE_IRQ: u8 = 2;

const NS_PER_SEC: u128 = 1_000_000_000;
/// ICW1: bit 4 starts initialization, bit 0 says an ICW4 follows, bit 1 single (no ICW3).
const ICW1_INIT: u8 = 1 << 4;
const ICW1_NEEDS_ICW4: u8 = 1 << 0;
const ICW1_SINGLE: u8 = 1 << 1;
/// ICW4 bit 1: automatic end of interrupt.
const ICW4_AUTO_EOI: u8 = 1 << 1;
/// OCW3 (bit 3 set, bit 4 clear): bits 0-1 = 0b10 read IRR, 0b11 read ISR.
const OCW3_MARK: u8 = 1 << 3;
const OCW3_READ_MASK: u8 = 0b11;
const OCW3_READ_IRR: u8 = 0b10;
const OCW3_READ_ISR: u8 = 0b11;
/// OCW2 (bits 3-4 clear): bits 5-7 are the command, bits 0-2 the line.
const OCW2_EOI: u8 = 0b001;
const OCW2_SPECIFIC_EOI: u8 = 0b011;

/// Where an initialization sequence is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum InitStep {
    Done,
    Icw2,
    Icw3,
    Icw4,
}

/// One 8259A.
#[derive(Clone, Copy, Debug)]
struct Chip {
    irr: u8,
    isr: u8,
    imr: u8,
    vector_base: u8,
    auto_eoi: bool,
    read_isr: bool,
    step: InitStep,
    needs_icw4: bool,
    single: bool,
}

impl Chip {
    const fn new(vector_base: u8) -> Self {
        Self {
            irr: 0,
            isr: 0,
            imr: 0xff,
            vector_base,
            auto_eoi: false,
            read_isr: false,
            step: InitStep::Done,
            needs_icw4: false,
            single: false,
        }
    }

    fn command(&mut self, value: u8) {
        if value & ICW1_INIT != 0 {
            self.step = InitStep::Icw2;
            self.needs_icw4 = value & ICW1_NEEDS_ICW4 != 0;
            self.single = value & ICW1_SINGLE != 0;
            self.imr = 0;
            self.isr = 0;
            self.irr = 0;
            self.auto_eoi = false;
            self.read_isr = false;
        } else if value & OCW3_MARK != 0 {
            match value & OCW3_READ_MASK {
                OCW3_READ_IRR => self.read_isr = false,
                OCW3_READ_ISR => self.read_isr = true,
                _ => {}
            }
        } else {
            match value >> 5 {
                // The highest-priority (lowest-numbered) line in service.
                OCW2_EOI if self.isr != 0 => self.isr &= self.isr - 1,
                OCW2_SPECIFIC_EOI => self.isr &= !(1 << (value & 0b111)),
                _ => {}
            }
        }
    }

    fn data_out(&mut self, value: u8) {
        self.step = match self.step {
            InitStep::Done => {
                self.imr = value;
                InitStep::Done
            }
            InitStep::Icw2 => {
                self.vector_base = value & !0b111;
                match (self.single, self.needs_icw4) {
                    (false, _) => InitStep::Icw3,
                    (true, true) => InitStep::Icw4,
                    (true, false) => InitStep::Done,
                }
            }
            InitStep::Icw3 if self.needs_icw4 => InitStep::Icw4,
            InitStep::Icw3 => InitStep::Done,
            InitStep::Icw4 => {
                self.auto_eoi = value & ICW4_AUTO_EOI != 0;
                InitStep::Done
            }
        };
    }

    fn command_in(&self) -> u8 {
        if self.read_isr {
            self.isr
        } else {
            self.irr
        }
    }

    /// The line to deliver next: requested, unmasked, and of higher priority than every
    /// line in service.
    fn next(&self) -> Option<u8> {
        let ready = self.irr & !self.imr;
        if ready == 0 {
            return None;
        }
        let line = ready.trailing_zeros() as u8;
        let in_service = self.isr.trailing_zeros() as u8; // 8 when none
        (line < in_service).then_some(line)
    }

    fn acknowledge(&mut self, line: u8) {
        self.irr &= !(1 << line);
        if !self.auto_eoi {
            self.isr |= 1 << line;
        }
    }
}

/// The master/slave 8259A pair (edge-triggered lines 0-15).
#[derive(Clone, Debug)]
pub struct Pic {
    master: Chip,
    slave: Chip,
}

impl Default for Pic {
    fn default() -> Self {
        Self::new()
    }
}

impl Pic {
    /// Both chips masked, with the BIOS's vector bases (8 and 0x70).
    pub const fn new() -> Self {
        Self {
            master: Chip::new(0x08),
            slave: Chip::new(0x70),
        }
    }

    /// Whether `port` belongs to the pair.
    pub fn claims(port: u16) -> bool {
        matches!(
            port,
            PIC_MASTER_CMD | PIC_MASTER_DATA | PIC_SLAVE_CMD | PIC_SLAVE_DATA
        )
    }

    /// A byte written to one of the pair's ports.
    pub fn port_out(&mut self, port: u16, value: u8) {
        match port {
            PIC_MASTER_CMD => self.master.command(value),
            PIC_MASTER_DATA => self.master.data_out(value),
            PIC_SLAVE_CMD => self.slave.command(value),
            PIC_SLAVE_DATA => self.slave.data_out(value),
            _ => {}
        }
    }

    /// A byte read from one of the pair's ports.
    pub fn port_in(&self, port: u16) -> u8 {
        match port {
            PIC_MASTER_CMD => self.master.command_in(),
            PIC_MASTER_DATA => self.master.imr,
            PIC_SLAVE_CMD => self.slave.command_in(),
            PIC_SLAVE_DATA => self.slave.imr,
            _ => u8::MAX,
        }
    }

    /// An edge on line `irq` (0-15; others are ignored).
    pub fn raise(&mut self, irq: u8) {
        match irq {
            0..=7 => self.master.irr |= 1 << irq,
            8..=15 => self.slave.irr |= 1 << (irq - 8),
            _ => {}
        }
    }

    /// The vector the pair would deliver now, if any (without acknowledging it).
    pub fn pending(&self) -> Option<u8> {
        self.select().map(|(vector, _)| vector)
    }

    /// Acknowledges the pending interrupt (the CPU's INTA): moves it into service and
    /// returns its vector.
    pub fn acknowledge(&mut self) -> Option<u8> {
        let (vector, irq) = self.select()?;
        if irq >= 8 {
            self.slave.acknowledge(irq - 8);
            self.master.acknowledge(CASCADE_IRQ);
        } else {
            self.master.acknowledge(irq);
        }
        Some(vector)
    }

    fn select(&self) -> Option<(u8, u8)> {
        let line = self.master.next()?;
        if line == CASCADE_IRQ {
            if let Some(s) = self.slave.next() {
                return Some((self.slave.vector_base | s, 8 + s));
            }
            // The cascade line with nothing behind it.
            return None;
        }
        Some((self.master.vector_base | line, line))
    }

    /// Raises the cascade line when the slave has something (the slave's output is wired to
    /// master line 2).
    pub fn sync_cascade(&mut self) {
        if self.slave.next().is_some() {
            self.master.irr |= 1 << CASCADE_IRQ;
        }
    }
}

/// PIT channel 0.
#[derive(Clone, Debug, Default)]
pub struct Pit {
    /// Reload value in PIT ticks (1..=65536) once fully written.
    reload: Option<u32>,
    mode: u8,
    access: u8,
    /// Low byte written, high byte awaited (lobyte/hibyte access).
    low_pending: Option<u8>,
    /// Second byte of a lobyte/hibyte read comes next.
    read_high: bool,
    latched: Option<u16>,
    /// When counting started, and the next expiry (ns).
    start_ns: u64,
    next_ns: Option<u64>,
}

/// PIT command word fields.
const PIT_CHANNEL_SHIFT: u8 = 6;
const PIT_ACCESS_SHIFT: u8 = 4;
const PIT_ACCESS_LATCH: u8 = 0;
const PIT_ACCESS_LOW: u8 = 1;
const PIT_ACCESS_HIGH: u8 = 2;
const PIT_ACCESS_BOTH: u8 = 3;
const PIT_MODE_SHIFT: u8 = 1;
const PIT_MODE_RATE: u8 = 2;
const PIT_MODE_SQUARE: u8 = 3;

fn ticks_to_ns(ticks: u64) -> u64 {
    (u128::from(ticks) * NS_PER_SEC / u128::from(PIT_HZ)) as u64
}

fn ns_to_ticks(ns: u64) -> u64 {
    (u128::from(ns) * u128::from(PIT_HZ) / NS_PER_SEC) as u64
}

impl Pit {
    /// Whether `port` is one this model answers (channel 0 and the command port).
    pub fn claims(port: u16) -> bool {
        port == PIT_CHANNEL0 || port == PIT_COMMAND
    }

    fn periodic(&self) -> bool {
        // Modes 6 and 7 are aliases of 2 and 3.
        matches!(self.mode & 0b11, PIT_MODE_RATE | PIT_MODE_SQUARE)
    }

    /// A byte written at time `now_ns`.
    pub fn port_out(&mut self, port: u16, value: u8, now_ns: u64) {
        if port == PIT_COMMAND {
            if value >> PIT_CHANNEL_SHIFT != 0 {
                return; // channels 1, 2 and read-back are not modelled
            }
            let access = (value >> PIT_ACCESS_SHIFT) & 0b11;
            if access == PIT_ACCESS_LATCH {
                if self.latched.is_none() {
                    self.latched = Some(self.count(now_ns));
                }
                return;
            }
            self.access = access;
            self.mode = (value >> PIT_MODE_SHIFT) & 0b111;
            self.low_pending = None;
            self.read_high = false;
            self.latched = None;
            // A new mode stops the counter until the count is written.
            self.reload = None;
            self.next_ns = None;
            return;
        }
        if port != PIT_CHANNEL0 {
            return;
        }
        let count = match (self.access, self.low_pending.take()) {
            (PIT_ACCESS_LOW, _) => u16::from(value),
            (PIT_ACCESS_HIGH, _) => u16::from(value) << 8,
            (PIT_ACCESS_BOTH, None) => {
                self.low_pending = Some(value);
                return;
            }
            (PIT_ACCESS_BOTH, Some(low)) => u16::from(value) << 8 | u16::from(low),
            _ => return,
        };
        let reload = if count == 0 { 65_536 } else { u32::from(count) };
        self.reload = Some(reload);
        self.start_ns = now_ns;
        self.next_ns = now_ns.checked_add(ticks_to_ns(u64::from(reload)));
    }

    /// A byte read at time `now_ns` (the latched or current count).
    pub fn port_in(&mut self, port: u16, now_ns: u64) -> u8 {
        if port != PIT_CHANNEL0 {
            return u8::MAX;
        }
        let value = match self.latched {
            Some(v) => v,
            None => self.count(now_ns),
        };
        let byte = match self.access {
            PIT_ACCESS_HIGH => (value >> 8) as u8,
            PIT_ACCESS_BOTH if self.read_high => {
                self.read_high = false;
                self.latched = None;
                return (value >> 8) as u8;
            }
            PIT_ACCESS_BOTH => {
                self.read_high = true;
                return value as u8;
            }
            _ => value as u8,
        };
        self.latched = None;
        byte
    }

    /// The counter's current value.
    fn count(&self, now_ns: u64) -> u16 {
        let Some(reload) = self.reload else {
            return 0;
        };
        let elapsed = ns_to_ticks(now_ns.saturating_sub(self.start_ns));
        let reload = u64::from(reload);
        let left = if self.periodic() {
            reload - elapsed % reload
        } else {
            reload.saturating_sub(elapsed)
        };
        left as u16
    }

    /// When the output next fires, if it is armed.
    pub fn deadline(&self) -> Option<u64> {
        self.next_ns
    }

    /// Advances to `now_ns`; true if the output fired since the last call (one edge however
    /// many periods passed: a late tick is not replayed).
    pub fn poll(&mut self, now_ns: u64) -> bool {
        let Some(next) = self.next_ns else {
            return false;
        };
        if now_ns < next {
            return false;
        }
        self.next_ns = match self.reload {
            Some(reload) if self.periodic() => {
                let period = ticks_to_ns(u64::from(reload)).max(1);
                let behind = (now_ns - next) / period + 1;
                next.checked_add(behind.saturating_mul(period))
            }
            _ => None,
        };
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Linux's init_8259A sequence (vector bases 0x30 and 0x38, cascade on line 2).
    fn linux_init(pic: &mut Pic, auto_eoi: bool) {
        pic.port_out(PIC_SLAVE_DATA, 0xff);
        pic.port_out(PIC_MASTER_DATA, 0xfb);
        assert_eq!(
            pic.port_in(PIC_MASTER_DATA),
            0xfb,
            "the probe reads the mask back"
        );
        pic.port_out(PIC_MASTER_DATA, 0xff);
        pic.port_out(PIC_MASTER_CMD, 0x11);
        pic.port_out(PIC_MASTER_DATA, 0x30);
        pic.port_out(PIC_MASTER_DATA, 1 << 2);
        pic.port_out(PIC_MASTER_DATA, if auto_eoi { 0x03 } else { 0x01 });
        pic.port_out(PIC_SLAVE_CMD, 0x11);
        pic.port_out(PIC_SLAVE_DATA, 0x38);
        pic.port_out(PIC_SLAVE_DATA, 2);
        pic.port_out(PIC_SLAVE_DATA, 0x01);
        pic.port_out(PIC_MASTER_DATA, 0xfb);
        pic.port_out(PIC_SLAVE_DATA, 0xff);
    }

    #[test]
    fn pic_delivers_unmasked_lines_on_the_programmed_vectors() {
        let mut pic = Pic::new();
        linux_init(&mut pic, false);
        pic.raise(0);
        assert_eq!(pic.pending(), None, "line 0 masked");
        pic.port_out(PIC_MASTER_DATA, 0xfa);
        assert_eq!(pic.pending(), Some(0x30));
        assert_eq!(pic.acknowledge(), Some(0x30));
        assert_eq!(pic.pending(), None);
        // In service: ISR reads it, a new edge waits for the EOI.
        pic.port_out(PIC_MASTER_CMD, 0x0b);
        assert_eq!(pic.port_in(PIC_MASTER_CMD), 1);
        pic.raise(0);
        assert_eq!(pic.pending(), None);
        pic.port_out(PIC_MASTER_CMD, 0x60);
        assert_eq!(pic.port_in(PIC_MASTER_CMD), 0);
        assert_eq!(pic.pending(), Some(0x30));
        // A lower-priority line waits behind line 0; non-specific EOI ends line 0 first.
        pic.port_out(PIC_MASTER_DATA, 0xe2);
        pic.raise(4);
        assert_eq!(pic.acknowledge(), Some(0x30));
        assert_eq!(pic.pending(), None);
        pic.port_out(PIC_MASTER_CMD, 0x20);
        assert_eq!(pic.acknowledge(), Some(0x34));
    }

    #[test]
    fn pic_slave_lines_arrive_through_the_cascade() {
        let mut pic = Pic::new();
        linux_init(&mut pic, false);
        pic.port_out(PIC_SLAVE_DATA, 0xef);
        pic.raise(12);
        pic.sync_cascade();
        assert_eq!(pic.acknowledge(), Some(0x3c));
        pic.port_out(PIC_SLAVE_CMD, 0x64);
        pic.port_out(PIC_MASTER_CMD, 0x62);
        assert_eq!(pic.pending(), None);
    }

    #[test]
    fn pic_auto_eoi_leaves_nothing_in_service_and_ignores_garbage() {
        let mut pic = Pic::new();
        linux_init(&mut pic, true);
        pic.port_out(PIC_MASTER_DATA, 0xfa);
        pic.raise(0);
        assert_eq!(pic.acknowledge(), Some(0x30));
        pic.raise(0);
        assert_eq!(pic.acknowledge(), Some(0x30));
        for v in 0..=255u8 {
            pic.port_out(PIC_MASTER_CMD, v);
            pic.port_out(PIC_SLAVE_DATA, v);
            pic.raise(v);
            let _ = pic.acknowledge();
            let _ = pic.port_in(0x1234);
        }
        pic.port_out(0x1234, 1);
    }

    #[test]
    fn pit_periodic_fires_once_per_period_and_counts_down() {
        let mut pit = Pit::default();
        pit.port_out(PIT_COMMAND, 0x34, 0); // channel 0, lo/hi, mode 2
        pit.port_out(PIT_CHANNEL0, 0x9c, 0);
        assert_eq!(pit.deadline(), None, "half a count arms nothing");
        pit.port_out(PIT_CHANNEL0, 0x2e, 0); // 11932: 10 ms
        let period = pit.deadline().unwrap();
        assert!((9_999_000..10_001_000).contains(&period));
        assert!(!pit.poll(period - 1));
        assert!(pit.poll(period));
        assert!(!pit.poll(period));
        // Far behind: one edge, the next deadline in the future.
        assert!(pit.poll(period * 10 + 5));
        assert!(pit.deadline().unwrap() > period * 10 + 5);
        // Latch in the middle of a period.
        pit.port_out(PIT_COMMAND, 0x00, period * 20 + period / 2);
        let low = pit.port_in(PIT_CHANNEL0, 0);
        let high = pit.port_in(PIT_CHANNEL0, 0);
        let count = u16::from(high) << 8 | u16::from(low);
        assert!((5900..6030).contains(&count), "{count}");
    }

    #[test]
    fn pit_oneshot_fires_once_and_bad_commands_are_ignored() {
        let mut pit = Pit::default();
        pit.port_out(PIT_COMMAND, 0x30, 0); // mode 0
        pit.port_out(PIT_CHANNEL0, 0x00, 100);
        pit.port_out(PIT_CHANNEL0, 0x00, 100); // 0 = 65536 ticks
        let at = pit.deadline().unwrap();
        assert!(at > 54_000_000 && at < 55_000_000);
        assert!(pit.poll(at));
        assert!(!pit.poll(u64::MAX));
        assert_eq!(pit.deadline(), None);
        pit.port_out(PIT_COMMAND, 0xb0, 0); // channel 2: not modelled
        pit.port_out(0x42, 1, 0);
        assert_eq!(pit.port_in(0x42, 0), u8::MAX);
        pit.port_out(PIT_COMMAND, 0x34, u64::MAX);
        pit.port_out(PIT_CHANNEL0, 0xff, u64::MAX);
        pit.port_out(PIT_CHANNEL0, 0xff, u64::MAX);
        assert_eq!(
            pit.deadline(),
            None,
            "an expiry past the end of time is never"
        );
    }
}
