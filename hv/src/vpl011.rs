//! An emulated PL011 / SBSA UART for one domain.
//!
//! It covers what an SBSA ("arm,sbsa-uart") driver uses, as Xen's vpl011 does, plus enough
//! of a full Arm PL011 r1p5 for Linux's amba-pl011 driver ("arm,pl011"): the peripheral
//! and PrimeCell ID registers the AMBA bus probes, and the baud/line/control registers
//! stored as written.
//!
//! Model: the transmitter drains instantly (every DR write goes straight to the sink), so
//! the TX FIFO always reads empty and the TX interrupt is always raised while the
//! transmitter is enabled (CR.TXE, set at reset so SBSA drivers that never touch CR work).
//! Linux masks TXIM when it has nothing left to send, so this cannot livelock its
//! interrupt loop. RX and RX-timeout interrupts are raised while the 64-byte receive FIFO
//! holds data, and fall when the guest drains it; ICR cannot clear them early.
//!
//! Access rules: Linux's pl011 driver uses 16-bit accesses unless the device tree says
//! `reg-io-width = <4>`, and earlycon may write DR a byte at a time, so 8-, 16- and 32-bit
//! accesses are accepted at every register's offset. A misaligned access is a fault (the
//! caller injects a data abort); 64-bit accesses, accesses inside a register, and
//! unknown offsets read as zero and ignore writes.

use crate::exit::AccessSize;
use alloc::collections::VecDeque;

/// Size of the MMIO window.
pub const VPL011_SIZE: u64 = 0x1000;
/// Receive FIFO depth.
pub const RX_FIFO_DEPTH: usize = 64;

const DR: u64 = 0x000;
const RSR_ECR: u64 = 0x004;
const FR: u64 = 0x018;
const ILPR: u64 = 0x020;
const IBRD: u64 = 0x024;
const FBRD: u64 = 0x028;
const LCR_H: u64 = 0x02C;
const CR: u64 = 0x030;
const IFLS: u64 = 0x034;
const IMSC: u64 = 0x038;
const RIS: u64 = 0x03C;
const MIS: u64 = 0x040;
const ICR: u64 = 0x044;
const DMACR: u64 = 0x048;
const ID_START: u64 = 0xFE0;

/// PeriphID0..3 then PCellID0..3 of a PL011 r1p5 (Arm PL011 TRM, section 3.3).
const ID_REGS: [u8; 8] = [0x11, 0x10, 0x34, 0x00, 0x0D, 0xF0, 0x05, 0xB1];

/// Flag register bits.
pub mod fr {
    /// UART busy transmitting.
    pub const BUSY: u32 = 1 << 3;
    /// Receive FIFO empty.
    pub const RXFE: u32 = 1 << 4;
    /// Transmit FIFO full.
    pub const TXFF: u32 = 1 << 5;
    /// Receive FIFO full.
    pub const RXFF: u32 = 1 << 6;
    /// Transmit FIFO empty.
    pub const TXFE: u32 = 1 << 7;
}

/// Interrupt bits (IMSC, RIS, MIS, ICR).
pub mod int {
    /// Receive.
    pub const RX: u32 = 1 << 4;
    /// Transmit.
    pub const TX: u32 = 1 << 5;
    /// Receive timeout.
    pub const RT: u32 = 1 << 6;
    /// Overrun error.
    pub const OE: u32 = 1 << 10;
    /// All defined interrupt bits.
    pub const ALL: u32 = 0x7FF;
}

/// Control register bits.
pub mod cr {
    /// UART enable.
    pub const UARTEN: u32 = 1 << 0;
    /// Loopback enable.
    pub const LBE: u32 = 1 << 7;
    /// Transmit enable.
    pub const TXE: u32 = 1 << 8;
    /// Receive enable.
    pub const RXE: u32 = 1 << 9;
    /// Reset value: transmit and receive enabled, UART disabled.
    pub const RESET: u32 = TXE | RXE;
}

/// RSR overrun bit.
const RSR_OE: u32 = 1 << 3;

/// Why an access was refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Vpl011Fault {
    /// The offset is not a multiple of the access size.
    Unaligned,
    /// The offset lies outside the 4 KiB window.
    OutOfRange,
}

/// The UART's state.
#[derive(Clone, Debug)]
pub struct Vpl011 {
    rx: VecDeque<u8>,
    /// Latched interrupt causes other than RX/RT/TX (which follow the FIFOs), cleared by ICR.
    latched: u32,
    rsr: u32,
    ilpr: u32,
    ibrd: u32,
    fbrd: u32,
    lcr_h: u32,
    cr: u32,
    ifls: u32,
    imsc: u32,
    dmacr: u32,
}

impl Default for Vpl011 {
    fn default() -> Self {
        Self::new()
    }
}

impl Vpl011 {
    /// A UART in its reset state.
    pub fn new() -> Self {
        Self {
            rx: VecDeque::with_capacity(RX_FIFO_DEPTH),
            latched: 0,
            rsr: 0,
            ilpr: 0,
            ibrd: 0,
            fbrd: 0,
            lcr_h: 0,
            cr: cr::RESET,
            ifls: 0x12,
            imsc: 0,
            dmacr: 0,
        }
    }

    /// Queues a byte of input for the guest; `false` (and an overrun) when the FIFO is full.
    pub fn push_rx(&mut self, byte: u8) -> bool {
        if self.rx.len() >= RX_FIFO_DEPTH {
            self.latched |= int::OE;
            self.rsr |= RSR_OE;
            return false;
        }
        self.rx.push_back(byte);
        true
    }

    /// Bytes waiting in the receive FIFO.
    pub fn rx_len(&self) -> usize {
        self.rx.len()
    }

    /// Raw interrupt status.
    pub fn ris(&self) -> u32 {
        let mut ris = self.latched;
        if !self.rx.is_empty() {
            ris |= int::RX | int::RT;
        }
        if self.cr & cr::TXE != 0 {
            ris |= int::TX;
        }
        ris
    }

    /// Level of the UART's interrupt line: a raised cause is unmasked.
    pub fn irq_line(&self) -> bool {
        self.ris() & self.imsc != 0
    }

    fn flags(&self) -> u32 {
        let mut f = fr::TXFE;
        if self.rx.is_empty() {
            f |= fr::RXFE;
        }
        if self.rx.len() >= RX_FIFO_DEPTH {
            f |= fr::RXFF;
        }
        f
    }

    /// Emulates one access at `offset` in the window. `tx` receives transmitted bytes.
    /// Returns the value read (masked to the size), or 0 for a write.
    pub fn mmio(
        &mut self,
        offset: u64,
        size: AccessSize,
        write: Option<u64>,
        tx: &mut dyn FnMut(u8),
    ) -> Result<u64, Vpl011Fault> {
        if offset >= VPL011_SIZE || offset.saturating_add(size.bytes()) > VPL011_SIZE {
            return Err(Vpl011Fault::OutOfRange);
        }
        if !offset.is_multiple_of(size.bytes()) {
            return Err(Vpl011Fault::Unaligned);
        }
        if size == AccessSize::Double || !offset.is_multiple_of(4) {
            return Ok(0);
        }
        match write {
            None => Ok(u64::from(self.read(offset)) & size.mask()),
            Some(value) => {
                // A narrow write replaces only the low bytes of the register.
                let old = self.peek(offset);
                let keep = !(size.mask() as u32);
                let merged = (old & keep) | (value & size.mask()) as u32;
                self.write(offset, merged, tx);
                Ok(0)
            }
        }
    }

    /// Register value as stored, without read side effects (for narrow-write merging).
    fn peek(&self, offset: u64) -> u32 {
        match offset {
            DR => 0,
            _ => self.read_plain(offset),
        }
    }

    fn read_plain(&self, offset: u64) -> u32 {
        match offset {
            RSR_ECR => self.rsr,
            FR => self.flags(),
            ILPR => self.ilpr,
            IBRD => self.ibrd,
            FBRD => self.fbrd,
            LCR_H => self.lcr_h,
            CR => self.cr,
            IFLS => self.ifls,
            IMSC => self.imsc,
            RIS => self.ris(),
            MIS => self.ris() & self.imsc,
            DMACR => self.dmacr,
            o if o >= ID_START => ID_REGS
                .get(((o - ID_START) / 4) as usize)
                .map_or(0, |&b| u32::from(b)),
            _ => 0,
        }
    }

    fn read(&mut self, offset: u64) -> u32 {
        match offset {
            DR => self.rx.pop_front().map_or(0, u32::from),
            o => self.read_plain(o),
        }
    }

    fn write(&mut self, offset: u64, value: u32, tx: &mut dyn FnMut(u8)) {
        match offset {
            DR => {
                let byte = value as u8;
                if self.cr & cr::LBE != 0 {
                    self.push_rx(byte);
                } else {
                    tx(byte);
                }
            }
            RSR_ECR => {
                // Any write to ECR clears the error flags.
                self.rsr = 0;
            }
            ILPR => self.ilpr = value & 0xFF,
            IBRD => self.ibrd = value & 0xFFFF,
            FBRD => self.fbrd = value & 0x3F,
            LCR_H => self.lcr_h = value & 0xFF,
            CR => self.cr = value & 0xFF87,
            IFLS => self.ifls = value & 0x3F,
            IMSC => self.imsc = value & int::ALL,
            ICR => self.latched &= !value,
            DMACR => self.dmacr = value & 0x7,
            // FR, RIS, MIS, ID registers are read-only; the rest is reserved.
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use proptest::prelude::*;

    fn rd(u: &mut Vpl011, off: u64) -> u64 {
        u.mmio(off, AccessSize::Word, None, &mut |_| {
            panic!("no tx on read")
        })
        .expect("read ok")
    }

    fn wr(u: &mut Vpl011, off: u64, v: u64, out: &mut Vec<u8>) {
        assert_eq!(
            u.mmio(off, AccessSize::Word, Some(v), &mut |b| out.push(b)),
            Ok(0)
        );
    }

    #[test]
    fn id_registers_are_pl011_r1p5() {
        let mut u = Vpl011::new();
        let ids: Vec<u64> = (0..8).map(|i| rd(&mut u, 0xFE0 + 4 * i)).collect();
        assert_eq!(ids, [0x11, 0x10, 0x34, 0x00, 0x0D, 0xF0, 0x05, 0xB1]);
        // 16-bit reads, as Linux does by default.
        assert_eq!(u.mmio(0xFE8, AccessSize::Half, None, &mut |_| {}), Ok(0x34));
    }

    #[test]
    fn transmit_and_flags() {
        let mut u = Vpl011::new();
        let mut out = Vec::new();
        wr(&mut u, DR, 0x141, &mut out); // upper bits ignored
        assert_eq!(
            u.mmio(DR, AccessSize::Byte, Some(b'B'.into()), &mut |b| out
                .push(b)),
            Ok(0)
        );
        assert_eq!(
            u.mmio(DR, AccessSize::Half, Some(b'C'.into()), &mut |b| out
                .push(b)),
            Ok(0)
        );
        assert_eq!(out, b"ABC");
        let f = rd(&mut u, FR) as u32;
        assert_eq!(f & (fr::TXFE | fr::RXFE), fr::TXFE | fr::RXFE);
        assert_eq!(f & (fr::TXFF | fr::RXFF | fr::BUSY), 0);
    }

    #[test]
    fn receive_fifo_and_interrupts() {
        let mut u = Vpl011::new();
        let mut out = Vec::new();
        assert!(!u.irq_line());
        assert!(u.push_rx(b'x'));
        assert!(!u.irq_line(), "masked");
        wr(&mut u, IMSC, u64::from(int::RX | int::RT), &mut out);
        assert!(u.irq_line());
        assert_eq!(rd(&mut u, MIS) as u32, int::RX | int::RT);
        // ICR cannot clear RX while data is there.
        wr(&mut u, ICR, 0x7FF, &mut out);
        assert!(u.irq_line());
        assert_eq!(rd(&mut u, FR) as u32 & fr::RXFE, 0);
        assert_eq!(rd(&mut u, DR), u64::from(b'x'));
        assert!(!u.irq_line());
        assert_eq!(rd(&mut u, FR) as u32 & fr::RXFE, fr::RXFE);
        assert_eq!(rd(&mut u, DR), 0, "empty FIFO reads 0");
    }

    #[test]
    fn overflow_sets_overrun_until_cleared() {
        let mut u = Vpl011::new();
        let mut out = Vec::new();
        for i in 0..RX_FIFO_DEPTH {
            assert!(u.push_rx(i as u8));
        }
        assert_eq!(rd(&mut u, FR) as u32 & fr::RXFF, fr::RXFF);
        assert!(!u.push_rx(0xFF));
        assert_eq!(u.rx_len(), RX_FIFO_DEPTH);
        assert_eq!(rd(&mut u, RIS) as u32 & int::OE, int::OE);
        assert_eq!(rd(&mut u, RSR_ECR), u64::from(RSR_OE));
        wr(&mut u, RSR_ECR, 0, &mut out);
        assert_eq!(rd(&mut u, RSR_ECR), 0);
        wr(&mut u, ICR, u64::from(int::OE), &mut out);
        assert_eq!(rd(&mut u, RIS) as u32 & int::OE, 0);
        for i in 0..RX_FIFO_DEPTH {
            assert_eq!(rd(&mut u, DR), i as u64);
        }
    }

    #[test]
    fn tx_interrupt_follows_txim_and_txe() {
        let mut u = Vpl011::new();
        let mut out = Vec::new();
        assert_eq!(rd(&mut u, RIS) as u32 & int::TX, int::TX);
        assert!(!u.irq_line());
        wr(&mut u, IMSC, u64::from(int::TX), &mut out);
        assert!(u.irq_line());
        // Linux's loop: nothing more to send -> clear TXIM -> MIS becomes 0.
        wr(&mut u, IMSC, 0, &mut out);
        assert_eq!(rd(&mut u, MIS), 0);
        assert!(!u.irq_line());
        // With the transmitter disabled TX is not raised.
        wr(&mut u, CR, u64::from(cr::UARTEN | cr::RXE), &mut out);
        wr(&mut u, IMSC, u64::from(int::TX), &mut out);
        assert!(!u.irq_line());
    }

    #[test]
    fn loopback_goes_to_rx() {
        let mut u = Vpl011::new();
        let mut out = Vec::new();
        wr(
            &mut u,
            CR,
            u64::from(cr::UARTEN | cr::TXE | cr::RXE | cr::LBE),
            &mut out,
        );
        wr(&mut u, DR, u64::from(b'q'), &mut out);
        assert!(out.is_empty());
        assert_eq!(rd(&mut u, DR), u64::from(b'q'));
    }

    #[test]
    fn stored_registers_and_narrow_writes() {
        let mut u = Vpl011::new();
        let mut out = Vec::new();
        assert_eq!(rd(&mut u, CR), u64::from(cr::RESET));
        assert_eq!(rd(&mut u, IFLS), 0x12);
        wr(&mut u, IBRD, 0xFFFF_FFFF, &mut out);
        wr(&mut u, FBRD, 0xFFFF_FFFF, &mut out);
        wr(&mut u, LCR_H, 0x70, &mut out);
        wr(&mut u, DMACR, 0xFF, &mut out);
        wr(&mut u, ILPR, 0x1FF, &mut out);
        assert_eq!(rd(&mut u, IBRD), 0xFFFF);
        assert_eq!(rd(&mut u, FBRD), 0x3F);
        assert_eq!(rd(&mut u, LCR_H), 0x70);
        assert_eq!(rd(&mut u, DMACR), 0x7);
        assert_eq!(rd(&mut u, ILPR), 0xFF);
        // A byte write to CR keeps the high byte (TXE/RXE).
        assert_eq!(u.mmio(CR, AccessSize::Byte, Some(0x01), &mut |_| {}), Ok(0));
        assert_eq!(rd(&mut u, CR), u64::from(cr::RESET | cr::UARTEN));
        // Read-only registers ignore writes.
        wr(&mut u, FR, 0, &mut out);
        wr(&mut u, 0xFE0, 0, &mut out);
        assert_eq!(rd(&mut u, 0xFE0), 0x11);
    }

    #[test]
    fn bad_accesses() {
        let mut u = Vpl011::new();
        let mut sink = |_| panic!("nothing may be sent");
        assert_eq!(
            u.mmio(0x2, AccessSize::Word, Some(1), &mut sink),
            Err(Vpl011Fault::Unaligned)
        );
        assert_eq!(
            u.mmio(0x1, AccessSize::Half, None, &mut sink),
            Err(Vpl011Fault::Unaligned)
        );
        assert_eq!(
            u.mmio(0x1000, AccessSize::Byte, None, &mut sink),
            Err(Vpl011Fault::OutOfRange)
        );
        assert_eq!(
            u.mmio(u64::MAX, AccessSize::Byte, None, &mut sink),
            Err(Vpl011Fault::OutOfRange)
        );
        assert_eq!(
            u.mmio(0xFFC, AccessSize::Double, None, &mut sink),
            Err(Vpl011Fault::OutOfRange)
        );
        // 64-bit, inside-register and reserved accesses: RAZ/WI.
        assert_eq!(
            u.mmio(0x0, AccessSize::Double, Some(0x41), &mut sink),
            Ok(0)
        );
        assert_eq!(u.mmio(0x1, AccessSize::Byte, Some(0x41), &mut sink), Ok(0));
        assert_eq!(
            u.mmio(0x800, AccessSize::Word, Some(0x41), &mut sink),
            Ok(0)
        );
        assert_eq!(u.mmio(0x800, AccessSize::Word, None, &mut sink), Ok(0));
    }

    proptest! {
        #[test]
        fn garbage_never_panics(ops in proptest::collection::vec((0u64..0x1100, 0usize..4, any::<Option<u64>>(), any::<u8>()), 1..200)) {
            let mut u = Vpl011::new();
            let sizes = [AccessSize::Byte, AccessSize::Half, AccessSize::Word, AccessSize::Double];
            let mut sent = 0usize;
            for (off, s, w, rx) in ops {
                let _ = u.push_rx(rx);
                if let Ok(v) = u.mmio(off, sizes[s], w, &mut |_| sent += 1) {
                    prop_assert!(v & !sizes[s].mask() == 0);
                }
                prop_assert!(u.rx_len() <= RX_FIFO_DEPTH);
                let _ = u.irq_line();
            }
        }
    }
}
