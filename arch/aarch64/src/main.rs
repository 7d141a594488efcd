//! The Mica image for AArch64.
#![no_std]
#![no_main]
