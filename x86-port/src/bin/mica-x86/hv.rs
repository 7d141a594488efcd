//! Bring-up: console, heap, boot information, then the domains.

use crate::{port, serial};
use core::fmt::Write;
use mica_x86::multiboot;

/// Heap for `alloc` (the Xen layer's tables, domain records).
const HEAP_SIZE: usize = 4 << 20;

/// Page-aligned heap bytes; only its address is used (the allocator owns the contents).
#[repr(align(4096))]
#[allow(dead_code)]
struct Heap([u8; HEAP_SIZE]);

static mut HEAP: Heap = Heap([0; HEAP_SIZE]);

#[global_allocator]
static ALLOCATOR: buddy_system_allocator::LockedHeap<32> =
    buddy_system_allocator::LockedHeap::empty();

/// q35's ACPI power-management I/O block (the ICH9 PMBASE SeaBIOS programs).
const Q35_PM_BASE: u16 = 0x600;
/// PM1a control register offset in that block.
const PM1A_CNT: u16 = 4;
/// PM1 control: sleep enable with sleep type 0 (QEMU's S5, soft off).
const PM1_SLP_EN: u16 = 1 << 13;
/// Legacy 8259 PIC data (mask) ports.
const PIC_MASTER_DATA: u16 = 0x21;
const PIC_SLAVE_DATA: u16 = 0xa1;

/// Formats one of Mica's own lines onto the console.
pub struct Line;

impl Write for Line {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        crate::serial::write_text(s.as_bytes());
        Ok(())
    }
}

/// Prints a `(MICA)` line.
#[macro_export]
macro_rules! mica_println {
    ($($arg:tt)*) => {
        $crate::hv::hypervisor_line(format_args!($($arg)*))
    };
}

/// Prints one of Mica's lines, tagged like on Arm.
pub fn hypervisor_line(args: core::fmt::Arguments<'_>) {
    let mut text = alloc::string::String::new();
    let _ = text.write_fmt(args);
    crate::consoles::hypervisor_line(&text);
}

/// Turns the machine off (q35), or halts if that does not work.
pub fn power_off() -> ! {
    port::outw(Q35_PM_BASE + PM1A_CNT, PM1_SLP_EN);
    halt()
}

/// Stops this CPU for good.
pub fn halt() -> ! {
    loop {
        // SAFETY: interrupts stay disabled; HLT just parks the CPU.
        unsafe { core::arch::asm!("cli", "hlt", options(nomem, nostack)) };
    }
}

/// Reads `len` bytes of physical memory (identity-mapped below 4 GiB).
///
/// # Safety
/// `addr..addr+len` must be RAM below 4 GiB that nothing writes concurrently.
pub unsafe fn phys_bytes<'a>(addr: u64, len: usize) -> &'a [u8] {
    // SAFETY: the caller guarantees the range is mapped, readable RAM.
    unsafe { core::slice::from_raw_parts(addr as *const u8, len) }
}

/// A NUL-terminated string in physical memory (at most `max` bytes), lossily as text.
fn phys_cstr(addr: u32, max: usize) -> &'static str {
    if addr == 0 {
        return "";
    }
    // SAFETY: the loader placed the string in low RAM; we stop at the first NUL or `max`.
    let bytes = unsafe { phys_bytes(u64::from(addr), max) };
    let len = bytes.iter().position(|&b| b == 0).unwrap_or(max);
    core::str::from_utf8(&bytes[..len]).unwrap_or("")
}

#[no_mangle]
extern "C" fn mica_main(info_addr: u64, magic: u64) -> ! {
    serial::init();
    port::outb(PIC_MASTER_DATA, 0xff);
    port::outb(PIC_SLAVE_DATA, 0xff);
    let heap = core::ptr::addr_of_mut!(HEAP) as usize;
    // SAFETY: the heap is a static only the allocator touches, handed over once here.
    unsafe { ALLOCATOR.lock().init(heap, HEAP_SIZE) };
    crate::consoles::init();
    mica_println!("Mica x86-64 (AMD-V) starting");
    if magic as u32 != multiboot::LOADER_MAGIC {
        mica_println!("not started by a multiboot loader (magic {magic:#x}); stopping");
        power_off();
    }
    // SAFETY: a multiboot loader passes the info block's address in low RAM.
    let raw = unsafe { phys_bytes(info_addr, multiboot::INFO_LEN) };
    let info = match multiboot::parse_info(raw) {
        Ok(info) => info,
        Err(e) => {
            mica_println!("bad multiboot info: {e:?}");
            power_off();
        }
    };
    // The loader's command line starts with Mica's own file name, as on Xen.
    let cmdline = multiboot::split_module_string(phys_cstr(info.cmdline.unwrap_or(0), 256)).1;
    mica_println!(
        "memory above 1 MiB: {} KiB, command line `{cmdline}`",
        info.mem_upper_kib.unwrap_or(0),
    );
    let mut modules = alloc::vec::Vec::new();
    if let Some((count, table)) = info.modules {
        for i in 0..count {
            let at = u64::from(table) + u64::from(i) * multiboot::MODULE_LEN as u64;
            // SAFETY: the module table lies in low RAM, `count` entries long (bounded).
            let raw = unsafe { phys_bytes(at, multiboot::MODULE_LEN) };
            match multiboot::parse_module(raw) {
                Ok(m) => modules.push(m),
                Err(e) => mica_println!("module {i}: {e:?}, ignored"),
            }
        }
    }
    for (i, m) in modules.iter().enumerate() {
        mica_println!(
            "module {i}: {:#x}..{:#x} `{}`",
            m.start,
            m.end,
            phys_cstr(m.string, 256)
        );
    }
    crate::run::start(&info, &modules, cmdline);
    mica_println!("no domain left running: powering off");
    power_off()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let _ = writeln!(Line, "(MICA) panic: {info}");
    power_off()
}
