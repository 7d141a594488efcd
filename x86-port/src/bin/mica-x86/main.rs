//! Mica for x86-64 with AMD-V: the bare-metal image. `boot` enters long mode from a multiboot
//! loader, `serial` is the console, `svm` runs guests. Host builds of this binary are empty
//! (the portable logic is in the `mica_x86` library and tested there).
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod apic;
#[cfg(target_os = "none")]
mod boot;
#[cfg(target_os = "none")]
mod clock;
#[cfg(target_os = "none")]
mod consoles;
#[cfg(target_os = "none")]
mod hv;
#[cfg(target_os = "none")]
mod port;
#[cfg(target_os = "none")]
mod run;
#[cfg(target_os = "none")]
mod serial;
#[cfg(target_os = "none")]
mod svm;
#[cfg(target_os = "none")]
mod xen;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("mica-x86 is a bare-metal image: build it with --target x86_64-unknown-none");
}
