//! A small runtime for x86-64 guest-kit guests, entered the way Xen (and Mica) start a PVH
//! guest: 32-bit protected mode, paging off, EBX = the `hvm_start_info` address. The boot
//! stub identity-maps 4 GiB, enters long mode and calls the guest's `main`; the runtime finds
//! Xen through its CPUID leaves, installs the hypercall page through the MSR they name, and
//! prints through CONSOLEIO_write (or COM1 on bare hardware). When `main` returns it shuts
//! the domain down with SCHEDOP_shutdown.
#![cfg_attr(target_os = "none", no_std)]

#[cfg(target_os = "none")]
mod boot;
#[cfg(target_os = "none")]
pub mod console;
#[cfg(target_os = "none")]
pub mod cpu;
#[cfg(target_os = "none")]
pub mod irq;
#[cfg(target_os = "none")]
pub mod xen;

/// Names the guest's `fn main()`.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[no_mangle]
        extern "Rust" fn x86_guest_main() {
            let main: fn() = $main;
            main()
        }
    };
}

#[cfg(target_os = "none")]
extern "Rust" {
    fn x86_guest_main();
}

/// Rust entry (from the boot stub) with the start-info address.
#[cfg(target_os = "none")]
#[no_mangle]
extern "C" fn x86_guest_rust_start(start_info: u64) -> ! {
    let _ = start_info;
    xen::init();
    // SAFETY: `entry!` defines this symbol with this signature.
    unsafe { x86_guest_main() };
    xen::shutdown(mica_guest_abi::xen::sched::SHUTDOWN_POWEROFF)
}

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    console::print(format_args!("x86-guest: panic: {info}\n"));
    xen::shutdown(mica_guest_abi::xen::sched::SHUTDOWN_CRASH)
}
