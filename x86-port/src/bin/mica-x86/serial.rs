//! The 16550 UART at COM1, polled: Mica's physical console.

use crate::port;

/// COM1's I/O port base on PC-compatible machines.
pub const COM1: u16 = 0x3f8;
/// Transmit holding / receive buffer (DLAB = 0), divisor low byte (DLAB = 1).
const DATA: u16 = 0;
/// Interrupt enable (DLAB = 0), divisor high byte (DLAB = 1).
const IER: u16 = 1;
/// FIFO control.
const FCR: u16 = 2;
/// Line control.
const LCR: u16 = 3;
/// Modem control.
const MCR: u16 = 4;
/// Line status.
const LSR: u16 = 5;
/// LCR: divisor latch access.
const LCR_DLAB: u8 = 1 << 7;
/// LCR: 8 data bits, no parity, one stop bit.
const LCR_8N1: u8 = 0x03;
/// FCR: enable and clear both FIFOs.
const FCR_ENABLE_CLEAR: u8 = 0x07;
/// MCR: DTR and RTS asserted, OUT2 (the interrupt line gate) off: Mica polls.
const MCR_DTR_RTS: u8 = 0x03;
/// LSR: the transmit holding register is empty.
const LSR_THR_EMPTY: u8 = 1 << 5;
/// 115200 baud from the 1.8432 MHz reference clock.
const DIVISOR_115200: u16 = 1;
/// Polls of LSR before a byte is dropped, so a missing UART cannot hang Mica.
const TX_SPIN_LIMIT: u32 = 1 << 16;

/// Programs 115200 8N1 with FIFOs, interrupts off.
pub fn init() {
    port::outb(COM1 + IER, 0);
    port::outb(COM1 + LCR, LCR_DLAB);
    let [low, high] = DIVISOR_115200.to_le_bytes();
    port::outb(COM1 + DATA, low);
    port::outb(COM1 + IER, high);
    port::outb(COM1 + LCR, LCR_8N1);
    port::outb(COM1 + FCR, FCR_ENABLE_CLEAR);
    port::outb(COM1 + MCR, MCR_DTR_RTS);
}

fn put(byte: u8) {
    for _ in 0..TX_SPIN_LIMIT {
        if port::inb(COM1 + LSR) & LSR_THR_EMPTY != 0 {
            break;
        }
        core::hint::spin_loop();
    }
    port::outb(COM1 + DATA, byte);
}

/// Writes bytes as they are (the console multiplexer adds line ends).
pub fn write_raw(bytes: &[u8]) {
    for &b in bytes {
        put(b);
    }
}

/// Writes text, turning `\n` into `\r\n`.
pub fn write_text(bytes: &[u8]) {
    for &b in bytes {
        if b == b'\n' {
            put(b'\r');
        }
        put(b);
    }
}
