//! The Mica hypervisor image for AArch64.
//!
//! Boot flow (docs/boot-flow.md): `boot.S` relocates the image and calls [`primary_main`]
//! at EL2 with the device tree; Rust turns the MMU on, finds the console, reads the
//! hardware and the domains from the device tree, starts the other CPUs, builds the
//! domains and enters the scheduler on every CPU.
#![no_std]
#![no_main]

extern crate alloc;

mod cache;
// The defmt build sends Mica's lines around the multiplexer, leaving its text path unused.
#[cfg_attr(feature = "defmt", allow(dead_code))]
mod console;
#[cfg_attr(feature = "defmt", allow(dead_code))]
mod consoles;
#[cfg(feature = "defmt")]
mod defmt_log;
mod domain;
mod firmware;
mod gic;
mod heap;
mod logline;
mod mmu;
mod passthrough;
mod run;
mod stage2;
mod sysreg;
mod timer;
mod vcpu;
mod world;
mod xen;

use mica_aarch64::esr;

use aarch64_cpu::registers::CurrentEL;
use core::arch::global_asm;
use tock_registers::interfaces::Readable;

global_asm!(include_str!("boot.S"));
global_asm!(include_str!("exceptions.S"));

unsafe extern "C" {
    static __image_start: u8;
    static __image_file_end: u8;
    static __image_end: u8;
}

/// Bytes of the image file (code and data, without .bss).
fn image_file_size() -> u64 {
    &raw const __image_file_end as u64 - &raw const __image_start as u64
}

/// The image's own address range.
fn image_range() -> (u64, u64) {
    let start = &raw const __image_start as u64;
    let end = &raw const __image_end as u64;
    (start, end - start)
}

/// Entry of the boot CPU, MMU off, with the device tree's physical address.
#[unsafe(no_mangle)]
extern "C" fn primary_main(dtb: u64) -> ! {
    let el = CurrentEL.read(CurrentEL::EL);
    let regime = if el == 2 {
        mmu::Regime::El2
    } else {
        mmu::Regime::El1
    };
    let (image, _) = image_range();
    // SAFETY: first thing on the boot CPU, MMU off, no other CPU running.
    unsafe { mmu::enable_early(regime, &[image, dtb]) };

    // SAFETY: first use of the heap, on the boot CPU only (its arena is inside the image).
    unsafe { heap::init() };
    // SAFETY: the boot loader hands us a device tree at `dtb`, in RAM the early map covers;
    // only its header is read here, and `validate` bounds everything by the size it gives.
    let dtb_bytes = unsafe { boot::device_tree_bytes(dtb) };
    let dtb_clean = mica_hv::bootcfg::validate(dtb_bytes);
    let console = dtb_clean
        .as_ref()
        .ok()
        .and_then(|bytes| boot_console::find_console(bytes));
    if let Some((kind, base)) = console {
        // SAFETY: the stdout UART is mapped as device memory by the early map, `kind` was
        // matched from its compatible, and Mica is the only software running.
        unsafe { console::init(kind, base as usize) };
    }
    if el != 2 {
        info!(
            "Mica must be started at EL2 but was entered at EL{el}: enable the virtualization \
             extensions (QEMU: -M virt,virtualization=on). Halting."
        );
        halt();
    }
    info!("Mica {} starting at EL2", env!("CARGO_PKG_VERSION"));
    match dtb_clean {
        Ok(clean) => boot::start(dtb, dtb_bytes.len(), &clean),
        Err(e) => {
            info!("the device tree at {dtb:#x} is unusable: {e}. Halting.");
            halt();
        }
    }
}

/// Entry of a secondary CPU (started with PSCI CPU_ON), MMU off.
#[unsafe(no_mangle)]
extern "C" fn secondary_main(cpu: usize) -> ! {
    // SAFETY: the boot CPU installed and cleaned the final tables before starting us.
    unsafe { mmu::enable_secondary() };
    boot::secondary(cpu)
}

mod boot;

mod boot_console {
    use mica_platforms::uart::UartKind;

    /// The model and CPU address of the console UART (`/chosen/stdout-path`, `dtuart=` or
    /// `serial0`, bus addresses translated), if Mica can drive it.
    pub fn find_console(dtb: &[u8]) -> Option<(UartKind, u64)> {
        let uart = mica_hv::bootcfg::console_uart(dtb)?;
        let kind = UartKind::from_compatible(uart.compatible.iter().map(|c| c.as_str()))?;
        Some((kind, uart.base.start.raw()))
    }
}

/// Parks this CPU forever.
pub fn halt() -> ! {
    loop {
        aarch64_cpu::asm::wfe();
    }
}

/// A fault taken at EL2: a hypervisor bug.
#[unsafe(no_mangle)]
extern "C" fn host_fault(frame: &[u64; 36], kind: u64) -> ! {
    panic!(
        "EL2 exception kind {kind}: ESR={:#x} ELR={:#x} FAR={:#x} SPSR={:#x} x0={:#x} x1={:#x} lr={:#x}",
        frame[33], frame[31], frame[34], frame[32], frame[0], frame[1], frame[30]
    );
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    console::emergency(format_args!("\n(MICA) PANIC (hypervisor bug): {info}\n"));
    halt();
}
