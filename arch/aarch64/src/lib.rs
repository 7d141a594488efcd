//! Mica's AArch64 architecture layer.
#![no_std]
