//! Xen on x86: found through the CPUID leaves at 0x40000000 ("XenVMMXenVMM"); hypercalls go
//! through the hypercall page the guest asks for by writing the MSR leaf 2 names (stub `n`
//! at offset 32·n, Xen's layout). Arguments in RDI, RSI, RDX, R10, R8; result in RAX.

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use mica_guest_abi::xen::console::CONSOLEIO_WRITE;
use mica_guest_abi::xen::sched::SCHEDOP_SHUTDOWN;
use mica_guest_abi::xen::Hypercall;

/// First Xen CPUID leaf.
pub const CPUID_BASE: u32 = 0x4000_0000;
/// "XenVMMXenVMM" as EBX, ECX, EDX.
const SIGNATURE: [u32; 3] = [0x566e_6558, 0x6558_4d4d, 0x4d4d_566e];
/// Bytes per hypercall stub.
const STUB_SIZE: usize = 32;

#[repr(C, align(4096))]
struct Page([u8; 4096]);

/// The hypercall page (identity-mapped: its address is its guest-physical address).
static mut HYPERCALL_PAGE: Page = Page([0; 4096]);
static PRESENT: AtomicBool = AtomicBool::new(false);
static VERSION: AtomicU32 = AtomicU32::new(0);

/// Looks for Xen and installs the hypercall page.
pub fn init() {
    let base = crate::cpu::cpuid(CPUID_BASE);
    if base[1..] != SIGNATURE || base[0] < CPUID_BASE + 2 {
        return;
    }
    VERSION.store(crate::cpu::cpuid(CPUID_BASE + 1)[0], Ordering::Relaxed);
    let msr = crate::cpu::cpuid(CPUID_BASE + 2)[1];
    let page = core::ptr::addr_of!(HYPERCALL_PAGE) as u64;
    // SAFETY: the MSR named by Xen's leaf 2; the value is our own page-aligned page.
    unsafe { crate::cpu::wrmsr(msr, page) };
    PRESENT.store(true, Ordering::Release);
}

/// Whether Xen's interface was found.
pub fn present() -> bool {
    PRESENT.load(Ordering::Acquire)
}

/// Xen's version from CPUID (major << 16 | minor).
pub fn cpuid_version() -> u32 {
    VERSION.load(Ordering::Relaxed)
}

/// Makes hypercall `call` with up to five arguments.
pub fn hypercall(call: Hypercall, args: [u64; 5]) -> i64 {
    if !present() {
        return -38;
    }
    let stub = core::ptr::addr_of!(HYPERCALL_PAGE) as u64 + call.nr() * STUB_SIZE as u64;
    let ret: i64;
    // SAFETY: the stub is Xen's code in our hypercall page (mov eax, nr; vmmcall; ret).
    // Xen clobbers only RAX (and what a call may clobber); buffers passed are ours.
    unsafe {
        core::arch::asm!(
            "call {stub}",
            stub = in(reg) stub,
            inout("rdi") args[0] => _,
            inout("rsi") args[1] => _,
            inout("rdx") args[2] => _,
            inout("r10") args[3] => _,
            inout("r8") args[4] => _,
            out("rax") ret,
            out("rcx") _,
            out("r9") _,
            out("r11") _,
        )
    };
    ret
}

/// CONSOLEIO_write.
pub fn console_write(bytes: &[u8]) {
    hypercall(
        Hypercall::ConsoleIo,
        [
            CONSOLEIO_WRITE,
            bytes.len() as u64,
            bytes.as_ptr() as u64,
            0,
            0,
        ],
    );
}

/// SCHEDOP_shutdown with `reason`; halts if that returns.
pub fn shutdown(reason: u32) -> ! {
    let arg = reason;
    hypercall(
        Hypercall::SchedOp,
        [SCHEDOP_SHUTDOWN, core::ptr::addr_of!(arg) as u64, 0, 0, 0],
    );
    crate::cpu::halt()
}

/// Buffer for a hypercall's struct argument (the identity map makes its address physical).
#[repr(C, align(8))]
struct ArgBuf([u8; 64]);

/// Hypercall `call(cmd, &arg)`, with `arg` encoded through the ABI crate and decoded back.
pub fn op<T: mica_guest_abi::xen::Wire>(call: Hypercall, cmd: u64, arg: &mut T) -> i64 {
    let mut buf = ArgBuf([0; 64]);
    if arg.encode(&mut buf.0).is_none() {
        return -22;
    }
    let ret = hypercall(call, [cmd, buf.0.as_mut_ptr() as u64, 0, 0, 0]);
    if let Some(out) = T::decode(&buf.0) {
        *arg = out;
    }
    ret
}

/// Like [`op`] for the operations that take (cmd, &arg, count) (grant-table ops).
pub fn op_count<T: mica_guest_abi::xen::Wire>(call: Hypercall, cmd: u64, arg: &mut T) -> i64 {
    let mut buf = ArgBuf([0; 64]);
    if arg.encode(&mut buf.0).is_none() {
        return -22;
    }
    let ret = hypercall(call, [cmd, buf.0.as_mut_ptr() as u64, 1, 0, 0]);
    if let Some(out) = T::decode(&buf.0) {
        *arg = out;
    }
    ret
}
