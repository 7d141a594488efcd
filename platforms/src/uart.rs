//! UART drivers for Mica's own console, behind `embedded_io::Write`, and [`Uart`], the one
//! type the hypervisor holds: the driver chosen from the console node's `compatible`.

/// `embedded_io::Write` for a driver with `put(byte)` (blocking) and `drain()` (wait until
/// sent): the same for every UART.
macro_rules! blocking_uart_io {
    ($driver:ty) => {
        impl embedded_io::ErrorType for $driver {
            type Error = core::convert::Infallible;
        }

        impl embedded_io::Write for $driver {
            fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
                for &b in buf {
                    self.put(b);
                }
                Ok(buf.len())
            }

            fn flush(&mut self) -> Result<(), Self::Error> {
                self.drain();
                Ok(())
            }
        }
    };
}

/// Register blocks in memory for the drivers' tests: what a driver writes is visible.
#[cfg(test)]
mod fake_regs {
    /// Word `i` of the block at `base`.
    pub fn word(base: *mut u32, i: usize) -> u32 {
        // SAFETY: tests pass indices inside the fake block `base` points at.
        unsafe { base.wrapping_add(i).read_volatile() }
    }

    /// Sets word `i` of the block at `base` (what the device would do).
    pub fn set(base: *mut u32, i: usize, v: u32) {
        // SAFETY: as for `word`.
        unsafe { base.wrapping_add(i).write_volatile(v) }
    }
}

pub mod cadence;
pub mod imx;
pub mod pl011;

use core::convert::Infallible;

/// The UART models Mica can drive, matched from a node's `compatible`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UartKind {
    /// Arm PrimeCell PL011 (QEMU virt, Raspberry Pi 4, many others).
    Pl011,
    /// Cadence UART (Xilinx ZynqMP: ZCU102).
    Cadence,
    /// The i.MX UART (NXP i.MX 8M Plus EVK).
    Imx,
}

impl UartKind {
    /// The driver for a node with these `compatible` strings.
    pub fn from_compatible<'a>(mut compatibles: impl Iterator<Item = &'a str>) -> Option<Self> {
        compatibles.find_map(Self::from_one)
    }

    fn from_one(compatible: &str) -> Option<Self> {
        match compatible {
            "arm,pl011" | "arm,sbsa-uart" => Some(Self::Pl011),
            "cdns,uart-r1p12" | "cdns,uart-r1p8" | "xlnx,xuartps" | "xlnx,zynqmp-uart" => {
                Some(Self::Cadence)
            }
            // Every i.MX UART since the i.MX21 lists itself as `fsl,<soc>-uart` and keeps the
            // i.MX21 register layout; the i.MX7ULP/8QXP "lpuart" is a different device.
            c if c.starts_with("fsl,imx") && c.ends_with("-uart") && !mentions_lpuart(c) => {
                Some(Self::Imx)
            }
            _ => None,
        }
    }

    /// A name for the log.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pl011 => "PL011",
            Self::Cadence => "Cadence UART",
            Self::Imx => "i.MX UART",
        }
    }
}

/// Whether `compatible` names an i.MX "lpuart" (a byte scan: `str::contains` would bring
/// the general substring searcher into the image for this one test).
fn mentions_lpuart(compatible: &str) -> bool {
    compatible
        .as_bytes()
        .windows(b"lpuart".len())
        .any(|w| w == b"lpuart")
}

/// Mica's console UART, whichever model the board has.
pub enum Uart {
    /// Arm PL011.
    Pl011(pl011::Pl011),
    /// Cadence UART.
    Cadence(cadence::Cadence),
    /// i.MX UART.
    Imx(imx::Imx),
}

impl Uart {
    /// Takes over the UART of model `kind` at `base`.
    ///
    /// # Safety
    /// `base` must be the address (mapped as device memory) of a register block of model
    /// `kind` that nothing else drives for as long as the returned value lives.
    pub unsafe fn new(kind: UartKind, base: usize) -> Self {
        match kind {
            // SAFETY: the caller vouches for a PL011 at `base`.
            UartKind::Pl011 => Self::Pl011(unsafe { pl011::Pl011::new(base) }),
            // SAFETY: the caller vouches for a Cadence UART at `base`.
            UartKind::Cadence => Self::Cadence(unsafe { cadence::Cadence::new(base) }),
            // SAFETY: the caller vouches for an i.MX UART at `base`.
            UartKind::Imx => Self::Imx(unsafe { imx::Imx::new(base) }),
        }
    }

    /// Sends one byte, waiting while the transmit FIFO is full.
    pub fn put(&mut self, byte: u8) {
        match self {
            Self::Pl011(u) => u.put(byte),
            Self::Cadence(u) => u.put(byte),
            Self::Imx(u) => u.put(byte),
        }
    }

    /// A received byte, if one is waiting.
    pub fn get(&mut self) -> Option<u8> {
        match self {
            Self::Pl011(u) => u.get(),
            Self::Cadence(u) => u.get(),
            Self::Imx(u) => u.get(),
        }
    }

    /// Enables or disables the receive interrupt.
    pub fn set_rx_interrupt(&mut self, enabled: bool) {
        match self {
            Self::Pl011(u) => u.set_rx_interrupt(enabled),
            Self::Cadence(u) => u.set_rx_interrupt(enabled),
            Self::Imx(u) => u.set_rx_interrupt(enabled),
        }
    }
}

impl embedded_io::ErrorType for Uart {
    type Error = Infallible;
}

impl embedded_io::Write for Uart {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        match self {
            Self::Pl011(u) => u.write(buf),
            Self::Cadence(u) => u.write(buf),
            Self::Imx(u) => u.write(buf),
        }
    }

    fn flush(&mut self) -> Result<(), Self::Error> {
        match self {
            Self::Pl011(u) => embedded_io::Write::flush(u),
            Self::Cadence(u) => embedded_io::Write::flush(u),
            Self::Imx(u) => embedded_io::Write::flush(u),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(list: &[&str]) -> Option<UartKind> {
        UartKind::from_compatible(list.iter().copied())
    }

    #[test]
    fn matches_the_boards_uarts() {
        assert_eq!(kind(&["arm,pl011", "arm,primecell"]), Some(UartKind::Pl011));
        assert_eq!(
            kind(&["xlnx,zynqmp-uart", "cdns,uart-r1p12"]),
            Some(UartKind::Cadence)
        );
        assert_eq!(
            kind(&["xlnx,xuartps", "cdns,uart-r1p8"]),
            Some(UartKind::Cadence)
        );
        assert_eq!(
            kind(&["fsl,imx8mp-uart", "fsl,imx6q-uart"]),
            Some(UartKind::Imx)
        );
    }

    #[test]
    fn refuses_unknown_uarts() {
        assert_eq!(kind(&[]), None);
        assert_eq!(kind(&["ns16550a"]), None);
        assert_eq!(kind(&["fsl,imx8qxp-lpuart"]), None);
        assert_eq!(kind(&["brcm,bcm2835-aux-uart"]), None);
    }
}
