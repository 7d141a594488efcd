//! Cadence UART driver (`cdns,uart-r1p12`, `xlnx,xuartps`: ZynqMP, Zynq-7000), polled
//! transmit, interrupt-driven receive. Register layout from the Zynq UltraScale+ TRM (UG1087).

use tock_registers::interfaces::{ReadWriteable, Readable, Writeable};
use tock_registers::register_bitfields;
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite};

register_bitfields![u32,
    CR [
        TXDIS OFFSET(5) NUMBITS(1) [],
        TXEN OFFSET(4) NUMBITS(1) [],
        RXDIS OFFSET(3) NUMBITS(1) [],
        RXEN OFFSET(2) NUMBITS(1) []
    ],
    /// Interrupt bits, shared by IER/IDR/IMR/ISR.
    INT [
        TIMEOUT OFFSET(8) NUMBITS(1) [],
        RXTRIG OFFSET(0) NUMBITS(1) []
    ],
    SR [
        TXFULL OFFSET(4) NUMBITS(1) [],
        TXEMPTY OFFSET(3) NUMBITS(1) [],
        RXEMPTY OFFSET(1) NUMBITS(1) []
    ],
    FIFO [ DATA OFFSET(0) NUMBITS(8) [] ],
    RXWM [ LEVEL OFFSET(0) NUMBITS(6) [] ]
];

register_structs! {
    /// The Cadence UART register block.
    pub CadenceRegisters {
        (0x00 => cr: ReadWrite<u32, CR::Register>),
        (0x04 => _mode),
        (0x08 => ier: ReadWrite<u32, INT::Register>),
        (0x0c => idr: ReadWrite<u32, INT::Register>),
        (0x10 => _imr),
        (0x14 => isr: ReadWrite<u32, INT::Register>),
        (0x18 => _baudgen),
        (0x20 => rxwm: ReadWrite<u32, RXWM::Register>),
        (0x24 => _modem),
        (0x2c => sr: ReadOnly<u32, SR::Register>),
        (0x30 => fifo: ReadWrite<u32, FIFO::Register>),
        (0x34 => @END),
    }
}

/// A Cadence UART whose baud rate firmware (or the boot loader) already set; Mica keeps it.
pub struct Cadence {
    regs: &'static CadenceRegisters,
}

// SAFETY: the driver owns its register block exclusively (see `Cadence::new`); moving that
// ownership to another CPU is sound, and all access goes through `&mut self`.
unsafe impl Send for Cadence {}

impl Cadence {
    /// Takes over the UART whose registers are mapped at `base` and enables both directions.
    ///
    /// # Safety
    /// `base` must be the address (mapped as device memory) of a Cadence UART register
    /// block that nothing else drives for as long as the returned value lives.
    pub unsafe fn new(base: usize) -> Self {
        // SAFETY: the caller guarantees `base` points at a mapped, exclusively owned UART.
        let regs = unsafe { &*(base as *const CadenceRegisters) };
        regs.cr
            .modify(CR::TXDIS::CLEAR + CR::RXDIS::CLEAR + CR::TXEN::SET + CR::RXEN::SET);
        Self { regs }
    }

    /// Sends one byte, waiting while the transmit FIFO is full.
    pub fn put(&mut self, byte: u8) {
        while self.regs.sr.is_set(SR::TXFULL) {
            core::hint::spin_loop();
        }
        self.regs.fifo.write(FIFO::DATA.val(u32::from(byte)));
    }

    /// A received byte, if one is waiting. An empty FIFO also acknowledges the receive
    /// interrupt (its status bits are sticky), then looks again so a byte that arrived in
    /// between is not left without an interrupt.
    pub fn get(&mut self) -> Option<u8> {
        if self.regs.sr.is_set(SR::RXEMPTY) {
            self.regs.isr.write(INT::RXTRIG::SET + INT::TIMEOUT::SET);
            if self.regs.sr.is_set(SR::RXEMPTY) {
                return None;
            }
        }
        Some(self.regs.fifo.read(FIFO::DATA) as u8)
    }

    /// Enables or disables the receive interrupt (one byte in the FIFO raises it).
    pub fn set_rx_interrupt(&mut self, enabled: bool) {
        if enabled {
            self.regs.rxwm.write(RXWM::LEVEL.val(1));
            self.regs.isr.write(INT::RXTRIG::SET + INT::TIMEOUT::SET);
            self.regs.ier.write(INT::RXTRIG::SET);
        } else {
            self.regs.idr.write(INT::RXTRIG::SET + INT::TIMEOUT::SET);
        }
    }

    /// Waits until everything queued has left the transmit FIFO.
    pub fn drain(&mut self) {
        while !self.regs.sr.is_set(SR::TXEMPTY) {
            core::hint::spin_loop();
        }
    }
}

blocking_uart_io!(Cadence);

#[cfg(test)]
mod tests {
    use super::*;

    /// Register words, in memory instead of a device: what the driver writes is visible.
    #[repr(C, align(4))]
    struct Fake([u32; 0x34 / 4]);

    const CR: usize = 0;
    const IER: usize = 0x08 / 4;
    const ISR: usize = 0x14 / 4;
    const RXWM: usize = 0x20 / 4;
    const SR: usize = 0x2c / 4;
    const FIFO: usize = 0x30 / 4;

    /// The driver over `fake`, and the base pointer every test access goes through (no
    /// reference to the words is formed while the driver holds its own).
    fn uart(fake: &mut Fake) -> (Cadence, *mut u32) {
        let base = fake.0.as_mut_ptr();
        // SAFETY: `fake` is a live block the size of the registers, outliving the driver.
        (unsafe { Cadence::new(base as usize) }, base)
    }

    use crate::uart::fake_regs::{set, word};

    #[test]
    fn enables_both_directions_and_sends() {
        let mut fake = Fake([0; 13]);
        // Reset value: both directions disabled.
        fake.0[CR] = (1 << 5) | (1 << 3);
        let (mut u, regs) = uart(&mut fake);
        u.put(b'M');
        assert_eq!(word(regs, CR), (1 << 4) | (1 << 2));
        assert_eq!(word(regs, FIFO), u32::from(b'M'));
    }

    #[test]
    fn receives_and_acknowledges_an_empty_fifo() {
        let mut fake = Fake([0; 13]);
        let (mut u, regs) = uart(&mut fake);
        set(regs, SR, 1 << 1);
        assert_eq!(u.get(), None);
        // The sticky receive-trigger and timeout status was written back to clear it.
        assert_eq!(word(regs, ISR), (1 << 8) | 1);
        set(regs, SR, 0);
        set(regs, FIFO, 0x1_23);
        assert_eq!(u.get(), Some(0x23), "only the data byte");
        u.set_rx_interrupt(true);
        assert_eq!(word(regs, RXWM), 1);
        assert_eq!(word(regs, IER), 1);
    }
}
