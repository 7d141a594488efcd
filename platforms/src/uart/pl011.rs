//! Arm PL011 UART driver (polled transmit, interrupt-driven receive).

use tock_registers::interfaces::{ReadWriteable, Readable, Writeable};
use tock_registers::register_bitfields;
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};

register_bitfields![u32,
    DR [ DATA OFFSET(0) NUMBITS(8) [] ],
    FR [
        TXFE OFFSET(7) NUMBITS(1) [],
        RXFF OFFSET(6) NUMBITS(1) [],
        TXFF OFFSET(5) NUMBITS(1) [],
        RXFE OFFSET(4) NUMBITS(1) [],
        BUSY OFFSET(3) NUMBITS(1) []
    ],
    CR [
        RXE OFFSET(9) NUMBITS(1) [],
        TXE OFFSET(8) NUMBITS(1) [],
        UARTEN OFFSET(0) NUMBITS(1) []
    ],
    INT [
        RT OFFSET(6) NUMBITS(1) [],
        TX OFFSET(5) NUMBITS(1) [],
        RX OFFSET(4) NUMBITS(1) []
    ]
];

register_structs! {
    /// The PL011 register block.
    pub Pl011Registers {
        (0x000 => dr: ReadWrite<u32, DR::Register>),
        (0x004 => _reserved0),
        (0x018 => fr: ReadOnly<u32, FR::Register>),
        (0x01c => _reserved1),
        (0x030 => cr: ReadWrite<u32, CR::Register>),
        (0x034 => _reserved2),
        (0x038 => imsc: ReadWrite<u32, INT::Register>),
        (0x03c => _reserved3),
        (0x044 => icr: WriteOnly<u32, INT::Register>),
        (0x048 => @END),
    }
}

/// A PL011 that firmware (or the boot loader) already configured; Mica keeps its baud rate.
pub struct Pl011 {
    regs: &'static Pl011Registers,
}

// SAFETY: the driver owns its register block exclusively (see `Pl011::new`); moving that
// ownership to another CPU is sound, and all access goes through `&mut self`.
unsafe impl Send for Pl011 {}

impl Pl011 {
    /// Takes over the UART whose registers are mapped at `base`.
    ///
    /// # Safety
    /// `base` must be the address (mapped as device memory, identity or otherwise) of a PL011
    /// register block that nothing else drives for as long as the returned value lives.
    pub unsafe fn new(base: usize) -> Self {
        // SAFETY: the caller guarantees `base` points at a mapped, exclusively owned PL011.
        let regs = unsafe { &*(base as *const Pl011Registers) };
        regs.cr
            .modify(CR::UARTEN::SET + CR::TXE::SET + CR::RXE::SET);
        Self { regs }
    }

    /// Sends one byte, waiting while the transmit FIFO is full.
    pub fn put(&mut self, byte: u8) {
        while self.regs.fr.is_set(FR::TXFF) {
            core::hint::spin_loop();
        }
        self.regs.dr.write(DR::DATA.val(u32::from(byte)));
    }

    /// A received byte, if one is waiting.
    pub fn get(&mut self) -> Option<u8> {
        if self.regs.fr.is_set(FR::RXFE) {
            None
        } else {
            // Only the low 8 bits are data; the rest are error flags we do not act on.
            Some(self.regs.dr.read(DR::DATA) as u8)
        }
    }

    /// Enables or disables the receive interrupts (data and timeout).
    pub fn set_rx_interrupt(&mut self, enabled: bool) {
        if enabled {
            self.regs.imsc.modify(INT::RX::SET + INT::RT::SET);
        } else {
            self.regs.imsc.modify(INT::RX::CLEAR + INT::RT::CLEAR);
        }
        self.regs.icr.write(INT::RX::SET + INT::RT::SET);
    }

    /// Waits until the transmit FIFO is empty.
    pub fn drain(&mut self) {
        while !self.regs.fr.is_set(FR::TXFE) {
            core::hint::spin_loop();
        }
    }
}

blocking_uart_io!(Pl011);
