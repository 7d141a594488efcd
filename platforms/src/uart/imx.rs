//! i.MX UART driver (`fsl,imx*-uart`: i.MX6/7/8M), polled transmit, interrupt-driven
//! receive. Register layout from the i.MX 8M Plus reference manual (UART chapter).

use tock_registers::interfaces::{ReadWriteable, Readable, Writeable};
use tock_registers::register_bitfields;
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};

register_bitfields![u32,
    URXD [
        CHARRDY OFFSET(15) NUMBITS(1) [],
        DATA OFFSET(0) NUMBITS(8) []
    ],
    UTXD [ DATA OFFSET(0) NUMBITS(8) [] ],
    UCR1 [
        RRDYEN OFFSET(9) NUMBITS(1) [],
        UARTEN OFFSET(0) NUMBITS(1) []
    ],
    UCR2 [
        /// Ignore RTS: transmit without hardware flow control.
        IRTS OFFSET(14) NUMBITS(1) [],
        /// 8-bit words.
        WS OFFSET(5) NUMBITS(1) [],
        TXEN OFFSET(2) NUMBITS(1) [],
        RXEN OFFSET(1) NUMBITS(1) [],
        /// Software reset, active low: 1 keeps the UART out of reset.
        SRST OFFSET(0) NUMBITS(1) []
    ],
    USR2 [
        TXDC OFFSET(3) NUMBITS(1) [],
        RDR OFFSET(0) NUMBITS(1) []
    ],
    UTS [
        TXEMPTY OFFSET(6) NUMBITS(1) [],
        TXFULL OFFSET(4) NUMBITS(1) []
    ]
];

register_structs! {
    /// The i.MX UART register block.
    pub ImxRegisters {
        (0x00 => urxd: ReadOnly<u32, URXD::Register>),
        (0x04 => _reserved0),
        (0x40 => utxd: WriteOnly<u32, UTXD::Register>),
        (0x44 => _reserved1),
        (0x80 => ucr1: ReadWrite<u32, UCR1::Register>),
        (0x84 => ucr2: ReadWrite<u32, UCR2::Register>),
        (0x88 => _ucr3_ufcr_usr1),
        (0x98 => usr2: ReadOnly<u32, USR2::Register>),
        (0x9c => _escape_and_baud),
        (0xb4 => uts: ReadOnly<u32, UTS::Register>),
        (0xb8 => @END),
    }
}

/// An i.MX UART whose baud rate firmware (or the boot loader) already set; Mica keeps it.
pub struct Imx {
    regs: &'static ImxRegisters,
}

// SAFETY: the driver owns its register block exclusively (see `Imx::new`); moving that
// ownership to another CPU is sound, and all access goes through `&mut self`.
unsafe impl Send for Imx {}

impl Imx {
    /// Takes over the UART whose registers are mapped at `base` and enables both directions.
    ///
    /// # Safety
    /// `base` must be the address (mapped as device memory) of an i.MX UART register block
    /// that nothing else drives for as long as the returned value lives.
    pub unsafe fn new(base: usize) -> Self {
        // SAFETY: the caller guarantees `base` points at a mapped, exclusively owned UART.
        let regs = unsafe { &*(base as *const ImxRegisters) };
        regs.ucr2.modify(
            UCR2::SRST::SET + UCR2::IRTS::SET + UCR2::WS::SET + UCR2::TXEN::SET + UCR2::RXEN::SET,
        );
        regs.ucr1.modify(UCR1::UARTEN::SET);
        Self { regs }
    }

    /// Sends one byte, waiting while the transmit FIFO is full.
    pub fn put(&mut self, byte: u8) {
        while self.regs.uts.is_set(UTS::TXFULL) {
            core::hint::spin_loop();
        }
        self.regs.utxd.write(UTXD::DATA.val(u32::from(byte)));
    }

    /// A received byte, if one is waiting.
    pub fn get(&mut self) -> Option<u8> {
        if !self.regs.usr2.is_set(USR2::RDR) {
            return None;
        }
        let rx = self.regs.urxd.extract();
        // Error flags in the upper bits are not acted on; only the data byte matters.
        rx.is_set(URXD::CHARRDY).then(|| rx.read(URXD::DATA) as u8)
    }

    /// Enables or disables the receive-ready interrupt (level: while the FIFO holds data).
    pub fn set_rx_interrupt(&mut self, enabled: bool) {
        if enabled {
            self.regs.ucr1.modify(UCR1::RRDYEN::SET);
        } else {
            self.regs.ucr1.modify(UCR1::RRDYEN::CLEAR);
        }
    }

    /// Waits until the last byte has left the shift register.
    pub fn drain(&mut self) {
        while !self.regs.usr2.is_set(USR2::TXDC) {
            core::hint::spin_loop();
        }
    }
}

blocking_uart_io!(Imx);

#[cfg(test)]
mod tests {
    use super::*;

    /// Register words, in memory instead of a device: what the driver writes is visible.
    #[repr(C, align(4))]
    struct Fake([u32; 0xb8 / 4]);

    const URXD: usize = 0;
    const UTXD: usize = 0x40 / 4;
    const UCR1: usize = 0x80 / 4;
    const UCR2: usize = 0x84 / 4;
    const USR2: usize = 0x98 / 4;

    /// The driver over `fake`, and the base pointer every test access goes through (no
    /// reference to the words is formed while the driver holds its own).
    fn uart(fake: &mut Fake) -> (Imx, *mut u32) {
        let base = fake.0.as_mut_ptr();
        // SAFETY: `fake` is a live block the size of the registers, outliving the driver.
        (unsafe { Imx::new(base as usize) }, base)
    }

    use crate::uart::fake_regs::{set, word};

    #[test]
    fn leaves_reset_enables_and_sends() {
        let mut fake = Fake([0; 46]);
        let (mut u, regs) = uart(&mut fake);
        u.put(b'i');
        // Out of reset, 8-bit words, RTS ignored, both directions on; then the UART itself.
        assert_eq!(
            word(regs, UCR2),
            1 | (1 << 1) | (1 << 2) | (1 << 5) | (1 << 14)
        );
        assert_eq!(word(regs, UCR1), 1);
        assert_eq!(word(regs, UTXD), u32::from(b'i'));
    }

    #[test]
    fn receives_only_ready_characters() {
        let mut fake = Fake([0; 46]);
        let (mut u, regs) = uart(&mut fake);
        assert_eq!(u.get(), None, "no data ready");
        set(regs, USR2, 1);
        set(regs, URXD, (1 << 15) | 0x41);
        assert_eq!(u.get(), Some(0x41));
        set(regs, URXD, 0x41);
        assert_eq!(u.get(), None, "CHARRDY clear: not a character");
        u.set_rx_interrupt(true);
        assert_ne!(word(regs, UCR1) & (1 << 9), 0);
        u.set_rx_interrupt(false);
        assert_eq!(word(regs, UCR1) & (1 << 9), 0);
    }
}
