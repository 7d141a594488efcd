//! Mica's portable core.
//!
//! Everything here is plain Rust that builds for the host and for every hypervisor target:
//! no architecture code, no `asm!`. The architecture layer (`arch/*`) decodes traps into
//! [`exit::Exit`] values, calls into this crate, and applies the [`exit::Action`] it gets
//! back. That keeps every decision a guest can influence testable with `cargo test`.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod addr;
pub mod bootcfg;
pub mod cmdline;
pub mod console;
pub mod cpupool;
pub mod exit;
pub mod extended_regions;
pub mod fdt_writer;
pub mod frame_alloc;
pub mod guest_fdt;
pub mod passthrough;
pub mod psci;
pub mod ratelimit;
pub mod sched;
pub mod vgic;
pub mod vpl011;
pub mod xen;
