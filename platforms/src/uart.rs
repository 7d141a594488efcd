//! UART drivers for Mica's own console, behind `embedded_io::Write`.

pub mod pl011;

/// The UART models Mica can drive, matched from a node's `compatible`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UartKind {
    /// Arm PrimeCell PL011 (QEMU virt, Raspberry Pi 4, many others).
    Pl011,
}

impl UartKind {
    /// The driver for a node with these `compatible` strings.
    pub fn from_compatible<'a>(mut compatibles: impl Iterator<Item = &'a str>) -> Option<Self> {
        compatibles.find_map(|c| match c {
            "arm,pl011" | "arm,sbsa-uart" => Some(Self::Pl011),
            _ => None,
        })
    }
}
