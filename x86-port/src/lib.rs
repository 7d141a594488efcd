//! The portable part of Mica's x86-64 port: plain functions over bytes and traits, built for
//! the host so `cargo test -p mica-x86` exercises them (bad input included). The bare-metal
//! image (`src/bin/mica-x86`) decodes hardware state into these types and applies what they
//! return.
//!
//! Vendor split: everything here that is AMD-V specific lives in [`svm`]; the decoder, the
//! nested-page-table format ([`npt`]: AMD NPT entries are ordinary long-mode entries),
//! the guest page walk, ELF loading and the Xen CPUID leaves are shared with a future VT-x
//! backend (which would add an EPT entry format and a VMCS exit decoder beside them).
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod decode;
pub mod elf;

pub mod acpi;
pub mod guest_walk;
pub mod handler;
pub mod lapic;
pub mod legacy;
pub mod multiboot;
pub mod npt;
pub mod svm;
pub mod xen_x86;
