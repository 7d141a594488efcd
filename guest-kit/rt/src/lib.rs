//! Runtime for bare-metal AArch64 guests at EL1, loaded like a Linux kernel (arm64 `Image`)
//! by Mica, Xen or QEMU.
//!
//! A guest binary depends on this crate, names the linker script in its build script
//! (`cargo:rustc-link-arg-bins=-Tmica-guest.ld` plus the PIE flags, see the guests' build.rs)
//! and names its entry with [`entry!`]:
//!
//! ```ignore
//! #![no_std]
//! #![no_main]
//! mica_guest_rt::entry!(main);
//! fn main() { mica_guest_rt::println!("hello"); }
//! ```
//!
//! Before `main` runs, the runtime has relocated the image, cleared .bss, turned on the MMU with
//! an identity map (see [`boot`]), installed the exception vectors, and read the device tree for
//! the console UART (or, without one, Xen's PV console, see [`xen`]), the PSCI conduit and the
//! GIC (v3 or v2). When `main` returns the runtime calls PSCI SYSTEM_OFF.
#![no_std]

pub mod boot;
pub mod console;
pub mod cpu;
pub mod devtree;
pub mod exceptions;
pub mod gic;
pub mod mmio;
pub mod mmu;
pub mod psci;
pub mod timer;
pub mod xen;

pub use fdt;

/// Names the guest's `fn main()`, which the runtime calls on the boot CPU.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[no_mangle]
        extern "Rust" fn mica_guest_main() {
            let main: fn() = $main;
            main()
        }
    };
}

extern "Rust" {
    fn mica_guest_main();
}

/// Rust entry of the boot CPU (called from the boot code with the DTB address).
extern "C" fn primary_main(dtb: usize) -> ! {
    devtree::set_address(dtb);
    if let Some(fdt) = devtree::get() {
        if let Some(uart) = devtree::console_uart(&fdt) {
            console::init(uart);
        } else if xen::detect().is_some() {
            // No UART (a Xen initial domain has none): print through the PV console.
            let _ = xen::console::init();
        }
        if let Some(conduit) = devtree::psci_conduit(&fdt) {
            psci::set_conduit(conduit);
        }
        if let Some(found) = devtree::gic(&fdt) {
            use_gic(found);
        }
    }
    // SAFETY: `entry!` defines this symbol with this signature; it is the guest's main.
    unsafe { mica_guest_main() };
    psci::system_off()
}

/// Makes the GIC's register windows Device memory and hands them to [`gic`]. A GIC whose
/// registers cannot be mapped is left unset: the guest then sees `GicError::NotFound`.
fn use_gic(found: devtree::Gic) {
    let (windows, version) = match found {
        devtree::Gic::V3 {
            distributor,
            redistributors,
        } => ([distributor, redistributors], 3),
        devtree::Gic::V2 {
            distributor,
            cpu_interface,
        } => ([distributor, cpu_interface], 2),
    };
    for (base, size) in windows {
        if let Err(e) = mmu::map_device(base, size) {
            console::emergency_print(format_args!(
                "mica-guest-rt: GICv{version} registers at {base:#x} not mapped as Device ({e:?}); no GIC\n"
            ));
            return;
        }
    }
    let [(gicd, _), (second, second_size)] = windows;
    if version == 3 {
        gic::set_regions(gicd, second, second_size);
    } else {
        gic::set_regions_v2(gicd, second);
    }
}

/// Waits forever with interrupts masked.
pub fn halt() -> ! {
    loop {
        // SAFETY: masking interrupts and waiting has no memory effects.
        unsafe { core::arch::asm!("msr daifset, #0xf", "wfi", options(nomem, nostack)) };
    }
}

/// Unmasks IRQs on this CPU (PSTATE.I).
pub fn enable_irqs() {
    // SAFETY: only changes interrupt masking; handlers are installed by the vectors.
    unsafe { core::arch::asm!("msr daifclr, #2", options(nostack)) };
}

/// Masks IRQs on this CPU.
pub fn disable_irqs() {
    // SAFETY: only changes interrupt masking.
    unsafe { core::arch::asm!("msr daifset, #2", options(nostack)) };
}

/// Waits for an interrupt (WFI).
pub fn wait_for_interrupt() {
    // SAFETY: WFI has no memory effects.
    unsafe { core::arch::asm!("wfi", options(nostack)) };
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    console::emergency_print(format_args!("mica-guest-rt: panic: {info}\n"));
    psci::system_off()
}
