//! The guest-visible ABI shared by Mica (`hv/`) and guests built with the guest kit.
//!
//! Numbers and layouts follow the public Xen and Arm specifications (PSCI, SMCCC, the Xen
//! public headers), so a guest built against this crate runs on Mica and on Xen.
#![no_std]

pub mod gicv2;
pub mod gicv3;
pub mod image;
pub mod layout;
pub mod psci;
pub mod xen;
