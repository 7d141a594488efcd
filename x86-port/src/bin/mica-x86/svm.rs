//! The AMD-V hardware edge: turning SVM on, the VMCB as a page of memory, and VMRUN.

use crate::port;
use mica_x86::svm::{self, save};

/// CPUID leaf 0x8000_0001 ECX: SVM.
const CPUID_EXT1_ECX_SVM: u32 = 1 << 2;
/// CPUID leaf 0x8000_000A EDX: nested paging.
const CPUID_SVM_EDX_NPT: u32 = 1 << 0;
/// CPUID leaf 0x8000_000A EDX: next-RIP save.
const CPUID_SVM_EDX_NRIPS: u32 = 1 << 3;
/// EFER.
const MSR_EFER: u32 = 0xc000_0080;
/// VM_CR: SVMDIS (bit 4) means the firmware locked SVM off.
const MSR_VM_CR: u32 = 0xc001_0114;
const VM_CR_SVMDIS: u64 = 1 << 4;
/// Host save area address.
const MSR_VM_HSAVE_PA: u32 = 0xc001_0117;

/// What the CPU offers.
#[derive(Clone, Copy, Debug)]
pub struct Features {
    /// The CPU saves the next RIP on intercepts.
    pub nrip_save: bool,
}

/// Why SVM cannot be used.
#[derive(Clone, Copy, Debug)]
pub enum Unavailable {
    /// No SVM in CPUID (an Intel CPU, or QEMU without `-cpu max`/`+svm`).
    NoSvm,
    /// No nested paging.
    NoNpt,
    /// Disabled by firmware (VM_CR.SVMDIS).
    Disabled,
}

/// Checks for SVM with nested paging and turns it on (EFER.SVME, the host save area).
pub fn enable(host_save_page: u64) -> Result<Features, Unavailable> {
    if port::cpuid(0x8000_0001, 0)[2] & CPUID_EXT1_ECX_SVM == 0 {
        return Err(Unavailable::NoSvm);
    }
    let edx = port::cpuid(0x8000_000a, 0)[3];
    if edx & CPUID_SVM_EDX_NPT == 0 {
        return Err(Unavailable::NoNpt);
    }
    if port::rdmsr(MSR_VM_CR) & VM_CR_SVMDIS != 0 {
        return Err(Unavailable::Disabled);
    }
    let efer = port::rdmsr(MSR_EFER);
    // SAFETY: setting EFER.SVME only enables the SVM instructions; long mode stays on.
    unsafe { port::wrmsr(MSR_EFER, efer | svm::EFER_SVME) };
    // SAFETY: the page is Mica's own, reserved for the processor's host state.
    unsafe { port::wrmsr(MSR_VM_HSAVE_PA, host_save_page) };
    Ok(Features {
        nrip_save: edx & CPUID_SVM_EDX_NRIPS != 0,
    })
}

/// A VMCB: one page of Mica's memory, identity-mapped, used by one vCPU only.
#[derive(Debug)]
pub struct Vmcb {
    pa: u64,
}

impl Vmcb {
    /// Uses the zeroed page at `pa` as a VMCB.
    pub fn new(pa: u64) -> Self {
        Self { pa }
    }
    /// Physical address (VMRUN's operand).
    pub fn pa(&self) -> u64 {
        self.pa
    }
    fn ptr<T>(&self, off: usize) -> *mut T {
        assert!(off + core::mem::size_of::<T>() <= svm::VMCB_SIZE);
        (self.pa as usize + off) as *mut T
    }
    /// Reads a field.
    pub fn read<T: Copy>(&self, off: usize) -> T {
        // SAFETY: `off` is inside the VMCB page (asserted); the page belongs to this vCPU
        // and the CPU writes it only during VMRUN, which is not running now.
        unsafe { self.ptr::<T>(off).read_volatile() }
    }
    /// Writes a field.
    pub fn write<T: Copy>(&mut self, off: usize, value: T) {
        // SAFETY: as for `read`.
        unsafe { self.ptr::<T>(off).write_volatile(value) }
    }
    /// Sets a segment register (selector, attributes, limit, base).
    pub fn set_segment(&mut self, off: usize, selector: u16, attr: u16, limit: u32, base: u64) {
        self.write(off, selector);
        self.write(off + 2, attr);
        self.write(off + 4, limit);
        self.write(off + 8, base);
    }
    /// The guest's paging registers.
    pub fn paging(&self) -> mica_x86::guest_walk::Paging {
        mica_x86::guest_walk::Paging {
            cr0: self.read(save::CR0),
            cr3: self.read(save::CR3),
            cr4: self.read(save::CR4),
            efer: self.read(save::EFER),
        }
    }
}

core::arch::global_asm!(
    r#"
    .section .text
    .global mica_svm_run
/* mica_svm_run(vmcb_pa: rdi, gprs: rsi = *mut [u64; 16]) */
mica_svm_run:
    push %rbx
    push %rbp
    push %r12
    push %r13
    push %r14
    push %r15
    push %rsi
    push %rdi
    mov 0x08(%rsi), %rcx
    mov 0x10(%rsi), %rdx
    mov 0x18(%rsi), %rbx
    mov 0x28(%rsi), %rbp
    mov 0x38(%rsi), %rdi
    mov 0x40(%rsi), %r8
    mov 0x48(%rsi), %r9
    mov 0x50(%rsi), %r10
    mov 0x58(%rsi), %r11
    mov 0x60(%rsi), %r12
    mov 0x68(%rsi), %r13
    mov 0x70(%rsi), %r14
    mov 0x78(%rsi), %r15
    mov 0x30(%rsi), %rsi
    mov (%rsp), %rax
    /* Physical interrupts wait (GIF clear) until the guest runs: there, with the host's IF
       set, one causes #VMEXIT(INTR). After the exit, STGI lets the pending tick's handler
       run, then IF is cleared again for Mica's own code. */
    clgi
    sti
    vmload %rax
    vmrun %rax
    vmsave %rax
    stgi
    cli
    xchg 0x08(%rsp), %rsi
    mov %rcx, 0x08(%rsi)
    mov %rdx, 0x10(%rsi)
    mov %rbx, 0x18(%rsi)
    mov %rbp, 0x28(%rsi)
    mov %rdi, 0x38(%rsi)
    mov %r8, 0x40(%rsi)
    mov %r9, 0x48(%rsi)
    mov %r10, 0x50(%rsi)
    mov %r11, 0x58(%rsi)
    mov %r12, 0x60(%rsi)
    mov %r13, 0x68(%rsi)
    mov %r14, 0x70(%rsi)
    mov %r15, 0x78(%rsi)
    mov 0x08(%rsp), %rax
    mov %rax, 0x30(%rsi)
    add $16, %rsp
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbp
    pop %rbx
    ret
"#,
    options(att_syntax)
);

extern "sysv64" {
    fn mica_svm_run(vmcb_pa: u64, gprs: *mut [u64; 16]);
}

/// Runs the guest until its next exit. RAX, RSP, RIP and RFLAGS live in the VMCB; the other
/// general-purpose registers are loaded from and saved to `gprs`.
pub fn run(vmcb: &mut Vmcb, gprs: &mut [u64; 16]) {
    // SAFETY: the VMCB page holds a guest state Mica built (VMRUN checks it and exits with
    // VMEXIT_INVALID if it is inconsistent); its IOPM/MSRPM and nested tables are Mica's
    // pages. The stub saves and restores every callee-saved register; RSP and RIP come back
    // from the host save area. Host FS/GS/TR state is replaced by the guest's, which Mica
    // never uses.
    unsafe { mica_svm_run(vmcb.pa(), gprs) };
}
