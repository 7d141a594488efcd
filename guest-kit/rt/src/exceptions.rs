//! Exception vectors for EL1 and the handler table guests fill in.
//!
//! Every vector saves the full register state (general, FP/SIMD, ELR/SPSR/ESR/FAR) in an
//! [`ExceptionFrame`] on the current stack, calls [`dispatch`], restores the (possibly changed)
//! frame and returns with `eret`. A handler that wants to skip the faulting instruction adds 4 to
//! [`ExceptionFrame::elr`].

use core::arch::global_asm;
use core::sync::atomic::{AtomicUsize, Ordering};

/// Register state at the exception, in the layout the vector code stores it.
#[repr(C)]
#[derive(Debug)]
pub struct ExceptionFrame {
    /// x0 to x30.
    pub regs: [u64; 31],
    /// ELR_EL1: where `eret` returns to.
    pub elr: u64,
    /// SPSR_EL1: the PSTATE `eret` restores.
    pub spsr: u64,
    /// ESR_EL1 at the exception.
    pub esr: u64,
    /// FAR_EL1 at the exception.
    pub far: u64,
    _pad: u64,
    /// q0 to q31.
    pub fp: [u128; 32],
    /// FPCR.
    pub fpcr: u64,
    /// FPSR.
    pub fpsr: u64,
}

const FRAME_SIZE: usize = 816;
const _: () = assert!(core::mem::size_of::<ExceptionFrame>() == FRAME_SIZE);
const _: () = assert!(core::mem::offset_of!(ExceptionFrame, elr) == 248);
const _: () = assert!(core::mem::offset_of!(ExceptionFrame, esr) == 264);
const _: () = assert!(core::mem::offset_of!(ExceptionFrame, fp) == 288);
const _: () = assert!(core::mem::offset_of!(ExceptionFrame, fpcr) == 800);

impl ExceptionFrame {
    /// ESR_EL1.EC, the exception class.
    pub fn exception_class(&self) -> u32 {
        ((self.esr >> 26) & 0x3f) as u32
    }
}

/// ESR_EL1.EC of a data abort taken without a change of exception level.
pub const EC_DATA_ABORT_SAME_EL: u32 = 0x25;
/// ESR_EL1.EC of an instruction abort taken without a change of exception level.
pub const EC_INSTRUCTION_ABORT_SAME_EL: u32 = 0x21;
/// ESR_EL1.EC of an unknown reason (for example an undefined instruction).
pub const EC_UNKNOWN: u32 = 0x00;

/// Which vector was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Kind {
    /// Synchronous exception from EL1.
    Sync = 0,
    /// IRQ at EL1.
    Irq = 1,
    /// FIQ at EL1.
    Fiq = 2,
    /// SError at EL1.
    SError = 3,
    /// A vector the runtime never expects (EL1 with SP_EL0, or a lower EL).
    Unexpected = 4,
}

/// A synchronous exception handler. Returns true if it handled the exception (the frame is
/// then restored, with any change the handler made); false makes the runtime report it and
/// power off.
pub type SyncHandler = fn(&mut ExceptionFrame) -> bool;
/// An interrupt handler, called with the acknowledged INTID before the runtime signals the
/// end of the interrupt.
pub type IrqHandler = fn(u32);

static SYNC_HANDLER: AtomicUsize = AtomicUsize::new(0);
static IRQ_HANDLER: AtomicUsize = AtomicUsize::new(0);

/// Installs the handler for synchronous exceptions on all CPUs (`None` removes it).
pub fn set_sync_handler(handler: Option<SyncHandler>) {
    SYNC_HANDLER.store(
        handler.map_or(0, |f| f as *const () as usize),
        Ordering::Release,
    );
}

/// Installs the interrupt handler on all CPUs (`None` removes it).
pub fn set_irq_handler(handler: Option<IrqHandler>) {
    IRQ_HANDLER.store(
        handler.map_or(0, |f| f as *const () as usize),
        Ordering::Release,
    );
}

fn sync_handler() -> Option<SyncHandler> {
    match SYNC_HANDLER.load(Ordering::Acquire) {
        0 => None,
        // SAFETY: the only non-zero values stored are `SyncHandler` pointers (set_sync_handler).
        raw => Some(unsafe { core::mem::transmute::<usize, SyncHandler>(raw) }),
    }
}

fn irq_handler() -> Option<IrqHandler> {
    match IRQ_HANDLER.load(Ordering::Acquire) {
        0 => None,
        // SAFETY: the only non-zero values stored are `IrqHandler` pointers (set_irq_handler).
        raw => Some(unsafe { core::mem::transmute::<usize, IrqHandler>(raw) }),
    }
}

/// Called by the vector code with the saved frame.
extern "C" fn dispatch(kind: u64, frame: &mut ExceptionFrame) {
    match kind {
        k if k == Kind::Sync as u64 => {
            if sync_handler().is_some_and(|handle| handle(frame)) {
                return;
            }
            fatal("unhandled synchronous exception", frame);
        }
        k if k == Kind::Irq as u64 => {
            let intid = crate::gic::acknowledge();
            if intid >= crate::gic::INTID_SPECIAL_FIRST {
                return;
            }
            match irq_handler() {
                Some(handle) => handle(intid),
                None => crate::console::emergency_print(format_args!(
                    "mica-guest-rt: unexpected IRQ {intid}\n"
                )),
            }
            crate::gic::end_of_interrupt(intid);
        }
        k if k == Kind::Fiq as u64 => fatal("unexpected FIQ", frame),
        k if k == Kind::SError as u64 => fatal("SError", frame),
        _ => fatal("exception from an unexpected vector", frame),
    }
}

fn fatal(what: &str, frame: &ExceptionFrame) -> ! {
    crate::console::emergency_print(format_args!(
        "mica-guest-rt: {what}: ESR {:#x} (EC {:#x}) ELR {:#x} FAR {:#x} SPSR {:#x}\n",
        frame.esr,
        frame.exception_class(),
        frame.elr,
        frame.far,
        frame.spsr
    ));
    crate::psci::system_off()
}

global_asm!(
    r#"
    .macro MICA_RT_VECTOR kind
    .balign 0x80
    sub     sp, sp, #{frame_size}
    stp     x0, x1, [sp]
    mov     x0, #\kind
    b       mica_rt_exception_common
    .endm

    .text
    .balign 2048
    .global mica_rt_vectors
mica_rt_vectors:
    // Current EL with SP_EL0.
    MICA_RT_VECTOR 4
    MICA_RT_VECTOR 4
    MICA_RT_VECTOR 4
    MICA_RT_VECTOR 4
    // Current EL with SP_ELx.
    MICA_RT_VECTOR 0
    MICA_RT_VECTOR 1
    MICA_RT_VECTOR 2
    MICA_RT_VECTOR 3
    // Lower EL, AArch64 and AArch32.
    MICA_RT_VECTOR 4
    MICA_RT_VECTOR 4
    MICA_RT_VECTOR 4
    MICA_RT_VECTOR 4
    MICA_RT_VECTOR 4
    MICA_RT_VECTOR 4
    MICA_RT_VECTOR 4
    MICA_RT_VECTOR 4

mica_rt_exception_common:
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x19, [sp, #144]
    stp     x20, x21, [sp, #160]
    stp     x22, x23, [sp, #176]
    stp     x24, x25, [sp, #192]
    stp     x26, x27, [sp, #208]
    stp     x28, x29, [sp, #224]
    mrs     x1, elr_el1
    stp     x30, x1, [sp, #240]
    mrs     x2, spsr_el1
    mrs     x3, esr_el1
    stp     x2, x3, [sp, #256]
    mrs     x4, far_el1
    str     x4, [sp, #272]
    add     x5, sp, #288
    stp     q0, q1, [x5, #0]
    stp     q2, q3, [x5, #32]
    stp     q4, q5, [x5, #64]
    stp     q6, q7, [x5, #96]
    stp     q8, q9, [x5, #128]
    stp     q10, q11, [x5, #160]
    stp     q12, q13, [x5, #192]
    stp     q14, q15, [x5, #224]
    stp     q16, q17, [x5, #256]
    stp     q18, q19, [x5, #288]
    stp     q20, q21, [x5, #320]
    stp     q22, q23, [x5, #352]
    stp     q24, q25, [x5, #384]
    stp     q26, q27, [x5, #416]
    stp     q28, q29, [x5, #448]
    stp     q30, q31, [x5, #480]
    mrs     x6, fpcr
    mrs     x7, fpsr
    add     x5, sp, #800
    stp     x6, x7, [x5]

    mov     x1, sp
    bl      {dispatch}

    add     x5, sp, #800
    ldp     x6, x7, [x5]
    add     x5, sp, #288
    msr     fpcr, x6
    msr     fpsr, x7
    ldp     q0, q1, [x5, #0]
    ldp     q2, q3, [x5, #32]
    ldp     q4, q5, [x5, #64]
    ldp     q6, q7, [x5, #96]
    ldp     q8, q9, [x5, #128]
    ldp     q10, q11, [x5, #160]
    ldp     q12, q13, [x5, #192]
    ldp     q14, q15, [x5, #224]
    ldp     q16, q17, [x5, #256]
    ldp     q18, q19, [x5, #288]
    ldp     q20, q21, [x5, #320]
    ldp     q22, q23, [x5, #352]
    ldp     q24, q25, [x5, #384]
    ldp     q26, q27, [x5, #416]
    ldp     q28, q29, [x5, #448]
    ldp     q30, q31, [x5, #480]
    ldp     x1, x2, [sp, #248]      // ELR, SPSR
    msr     elr_el1, x1
    msr     spsr_el1, x2
    ldp     x0, x1, [sp]
    ldp     x2, x3, [sp, #16]
    ldp     x4, x5, [sp, #32]
    ldp     x6, x7, [sp, #48]
    ldp     x8, x9, [sp, #64]
    ldp     x10, x11, [sp, #80]
    ldp     x12, x13, [sp, #96]
    ldp     x14, x15, [sp, #112]
    ldp     x16, x17, [sp, #128]
    ldp     x18, x19, [sp, #144]
    ldp     x20, x21, [sp, #160]
    ldp     x22, x23, [sp, #176]
    ldp     x24, x25, [sp, #192]
    ldp     x26, x27, [sp, #208]
    ldp     x28, x29, [sp, #224]
    ldr     x30, [sp, #240]
    add     sp, sp, #{frame_size}
    eret
"#,
    frame_size = const FRAME_SIZE,
    dispatch = sym dispatch,
);
