//! Board support: only what a board needs beyond its device tree.
//!
//! A board is chosen from the device tree: the UART that `/chosen/stdout-path` names is
//! matched by its `compatible` against [`uart::UartKind`], and quirks are looked up by the
//! root `compatible`. Nothing here is chosen at build time.
#![no_std]

pub mod boards;
pub mod uart;
