//! Interrupts: an IDT with one entry, the event-channel upcall vector Mica (like Xen) names
//! in HVM_PARAM_CALLBACK_IRQ. Every other vector is absent, so a stray exception ends the
//! domain (a triple fault the hypervisor reports).

use core::sync::atomic::{AtomicUsize, Ordering};

/// The registered upcall handler.
static HANDLER: AtomicUsize = AtomicUsize::new(0);

#[repr(C, align(16))]
struct Idt([u64; 512]);

static mut IDT: Idt = Idt([0; 512]);

/// Long-mode interrupt gate, present, DPL 0.
const GATE_INTERRUPT: u64 = 0x8e << 40;
/// Kernel code selector (the boot GDT's).
const KERNEL_CS: u64 = 0x08;

core::arch::global_asm!(
    r#"
    .section .text
    .global x86_guest_irq_entry
x86_guest_irq_entry:
    push %rax
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %r8
    push %r9
    push %r10
    push %r11
    cld
    call x86_guest_irq
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rax
    iretq
"#,
    options(att_syntax)
);

extern "C" {
    fn x86_guest_irq_entry();
}

#[no_mangle]
extern "C" fn x86_guest_irq() {
    let h = HANDLER.load(Ordering::Acquire);
    if h != 0 {
        // SAFETY: only `install` stores here, and only a `fn()`.
        let f: fn() = unsafe { core::mem::transmute::<usize, fn()>(h) };
        f();
    }
}

/// Installs `handler` on `vector` and loads the IDT.
pub fn install(vector: u8, handler: fn()) {
    HANDLER.store(handler as usize, Ordering::Release);
    let entry = x86_guest_irq_entry as *const () as u64;
    let low = (entry & 0xffff) | KERNEL_CS << 16 | GATE_INTERRUPT | (entry >> 16 & 0xffff) << 48;
    let high = entry >> 32;
    let idt = core::ptr::addr_of_mut!(IDT);
    let slot = (idt as *mut u64).wrapping_add(usize::from(vector) * 2);
    // SAFETY: the gate's two words lie inside the IDT (vector < 256, 512 words); the IDT is
    // ours, one CPU, interrupts off while it is written.
    unsafe { slot.write_volatile(low) };
    // SAFETY: as above, the gate's second word.
    unsafe { slot.wrapping_add(1).write_volatile(high) };
    #[repr(C, packed)]
    struct Pointer {
        limit: u16,
        base: u64,
    }
    let pointer = Pointer {
        limit: (512 * 8 - 1) as u16,
        base: idt as u64,
    };
    // SAFETY: the IDT outlives the program; LIDT only reads the pointer.
    unsafe { core::arch::asm!("lidt [{}]", in(reg) &pointer, options(nostack)) };
}

/// Enables interrupts.
pub fn enable() {
    // SAFETY: the IDT is loaded and every vector that can arrive has an entry.
    unsafe { core::arch::asm!("sti", options(nomem, nostack)) };
}
