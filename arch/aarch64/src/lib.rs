//! Mica's AArch64 architecture layer: the parts that are plain logic (syndrome decoding,
//! translation-table formats) live in this library so they are unit-tested on the host;
//! the `mica` binary (`main.rs` and its modules) holds the code that touches hardware.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod esr;
pub mod pagetable;
