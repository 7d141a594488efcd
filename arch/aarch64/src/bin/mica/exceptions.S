// EL2 exception vectors, guest entry/exit, FP/SIMD state save and restore.
// GuestRegs layout (vcpu.rs): x0..x30 at 8*n, ELR at 248, SPSR at 256.

.section .text, "ax"

// Loads the guest's x2..x17 from the GuestRegs at x0.
.macro LOAD_X2_TO_X17
    ldp     x2, x3, [x0, #16]
    ldp     x4, x5, [x0, #32]
    ldp     x6, x7, [x0, #48]
    ldp     x8, x9, [x0, #64]
    ldp     x10, x11, [x0, #80]
    ldp     x12, x13, [x0, #96]
    ldp     x14, x15, [x0, #112]
    ldp     x16, x17, [x0, #128]
.endm

// enter_guest(regs: *mut GuestRegs, fast: *mut FastPath) -> exit kind (0 sync, 1 irq,
// 2 fiq, 3 serror, 4 hypercall done by the fast path). Runs the guest until it exits; the
// exit paths below return from this call. Frame while the guest runs (sp at the vector):
// [sp] = regs, [sp + 8] = fast, then Mica's x19..x30.
.global enter_guest
enter_guest:
    stp     x29, x30, [sp, #-96]!
    stp     x27, x28, [sp, #16]
    stp     x25, x26, [sp, #32]
    stp     x23, x24, [sp, #48]
    stp     x21, x22, [sp, #64]
    stp     x19, x20, [sp, #80]
    stp     x0, x1, [sp, #-16]!
    ldp     x1, x2, [x0, #248]
    msr     elr_el2, x1
    msr     spsr_el2, x2
    LOAD_X2_TO_X17
    ldp     x18, x19, [x0, #144]
    ldp     x20, x21, [x0, #160]
    ldp     x22, x23, [x0, #176]
    ldp     x24, x25, [x0, #192]
    ldp     x26, x27, [x0, #208]
    ldp     x28, x29, [x0, #224]
    ldr     x30, [x0, #240]
    ldp     x0, x1, [x0]
    eret
    dsb     nsh
    isb

// Saves what a call may clobber (x0..x18, x30) into GuestRegs; leaves its address in x0.
.macro SAVE_CALLER_SAVED
    stp     x0, x1, [sp, #-16]!
    ldr     x0, [sp, #16]
    stp     x2, x3, [x0, #16]
    stp     x4, x5, [x0, #32]
    stp     x6, x7, [x0, #48]
    stp     x8, x9, [x0, #64]
    stp     x10, x11, [x0, #80]
    stp     x12, x13, [x0, #96]
    stp     x14, x15, [x0, #112]
    stp     x16, x17, [x0, #128]
    str     x18, [x0, #144]
    str     x30, [x0, #240]
    ldp     x2, x3, [sp], #16
    stp     x2, x3, [x0]
.endm

// With x0 = GuestRegs and x1 = the exit kind: saves the rest of the guest's registers and
// returns from enter_guest.
guest_exit_rest:
    str     x19, [x0, #152]
    stp     x20, x21, [x0, #160]
    stp     x22, x23, [x0, #176]
    stp     x24, x25, [x0, #192]
    stp     x26, x27, [x0, #208]
    stp     x28, x29, [x0, #224]
    mrs     x2, elr_el2
    mrs     x3, spsr_el2
    stp     x2, x3, [x0, #248]
    add     sp, sp, #16
    ldp     x19, x20, [sp, #80]
    ldp     x21, x22, [sp, #64]
    ldp     x23, x24, [sp, #48]
    ldp     x25, x26, [sp, #32]
    ldp     x27, x28, [sp, #16]
    ldp     x29, x30, [sp], #96
    mov     x0, x1
    ret

.macro GUEST_EXIT kind
    SAVE_CALLER_SAVED
    mov     x1, #\kind
    b       guest_exit_rest
.endm

// The ESR_EL2 of a Xen hypercall: EC = HVC from AArch64 (0x16), IL, ISS = 0xEA1.
.equ XEN_HYPERCALL_ESR_HI, 0x5A00
.equ XEN_HYPERCALL_ESR_LO, 0x0EA1
// What mica_fast_hypercall returns to resume the guest at once.
.equ FAST_RESUME, 0xFF

// A synchronous exit. A Xen hypercall is handled right here by mica_fast_hypercall (Rust,
// run.rs), with only the caller-saved registers stored: the callee-saved ones still hold
// the guest's values when it returns, and ELR/SPSR were not touched. Anything else, or a
// hypercall that needs the run loop, leaves through the full exit.
guest_exit_sync:
    SAVE_CALLER_SAVED
    mrs     x2, esr_el2
    movz    x3, #XEN_HYPERCALL_ESR_LO
    movk    x3, #XEN_HYPERCALL_ESR_HI, lsl #16
    cmp     x2, x3
    b.ne    1f
    ldr     x1, [sp, #8]
    bl      mica_fast_hypercall
    cmp     x0, #FAST_RESUME
    b.ne    2f
    ldr     x0, [sp]
    LOAD_X2_TO_X17
    ldr     x18, [x0, #144]
    ldr     x30, [x0, #240]
    ldp     x0, x1, [x0]
    eret
    dsb     nsh
    isb
2:  mov     x1, x0
    ldr     x0, [sp]
    b       guest_exit_rest
1:  mov     x1, #0
    b       guest_exit_rest
guest_exit_irq:
    GUEST_EXIT 1
guest_exit_fiq:
    GUEST_EXIT 2
guest_exit_serror:
    GUEST_EXIT 3

// A fault taken at EL2 itself is a hypervisor bug: save everything and report it.
// Frame: x0..x30, ELR, SPSR, ESR, FAR (35 words, padded to 36).
.macro HOST_FAULT kind
    sub     sp, sp, #288
    stp     x0, x1, [sp, #0]
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
    mrs     x1, elr_el2
    stp     x30, x1, [sp, #240]
    mrs     x1, spsr_el2
    mrs     x2, esr_el2
    stp     x1, x2, [sp, #256]
    mrs     x1, far_el2
    str     x1, [sp, #272]
    mov     x0, sp
    mov     x1, #\kind
    bl      host_fault
1:  wfe
    b       1b
.endm

host_fault_sync:
    HOST_FAULT 0
host_fault_irq:
    HOST_FAULT 1
host_fault_fiq:
    HOST_FAULT 2
host_fault_serror:
    HOST_FAULT 3

.macro VENTRY target
    .balign 0x80
    b       \target
.endm

.balign 2048
.global el2_vectors
el2_vectors:
    // SP0 at EL2
    VENTRY  host_fault_sync
    VENTRY  host_fault_irq
    VENTRY  host_fault_fiq
    VENTRY  host_fault_serror
    // SPx at EL2
    VENTRY  host_fault_sync
    VENTRY  host_fault_irq
    VENTRY  host_fault_fiq
    VENTRY  host_fault_serror
    // lower EL, AArch64
    VENTRY  guest_exit_sync
    VENTRY  guest_exit_irq
    VENTRY  guest_exit_fiq
    VENTRY  guest_exit_serror
    // lower EL, AArch32
    VENTRY  guest_exit_sync
    VENTRY  guest_exit_irq
    VENTRY  guest_exit_fiq
    VENTRY  guest_exit_serror

// FP/SIMD state: q0..q31 at 16*n, FPSR at 512, FPCR at 520.
.arch_extension fp
.arch_extension simd
.global fpsimd_save
fpsimd_save:
    stp     q0, q1, [x0, #0]
    stp     q2, q3, [x0, #32]
    stp     q4, q5, [x0, #64]
    stp     q6, q7, [x0, #96]
    stp     q8, q9, [x0, #128]
    stp     q10, q11, [x0, #160]
    stp     q12, q13, [x0, #192]
    stp     q14, q15, [x0, #224]
    stp     q16, q17, [x0, #256]
    stp     q18, q19, [x0, #288]
    stp     q20, q21, [x0, #320]
    stp     q22, q23, [x0, #352]
    stp     q24, q25, [x0, #384]
    stp     q26, q27, [x0, #416]
    stp     q28, q29, [x0, #448]
    stp     q30, q31, [x0, #480]
    mrs     x1, fpsr
    mrs     x2, fpcr
    add     x0, x0, #512
    stp     x1, x2, [x0]
    ret
.global fpsimd_restore
fpsimd_restore:
    ldp     q0, q1, [x0, #0]
    ldp     q2, q3, [x0, #32]
    ldp     q4, q5, [x0, #64]
    ldp     q6, q7, [x0, #96]
    ldp     q8, q9, [x0, #128]
    ldp     q10, q11, [x0, #160]
    ldp     q12, q13, [x0, #192]
    ldp     q14, q15, [x0, #224]
    ldp     q16, q17, [x0, #256]
    ldp     q18, q19, [x0, #288]
    ldp     q20, q21, [x0, #320]
    ldp     q22, q23, [x0, #352]
    ldp     q24, q25, [x0, #384]
    ldp     q26, q27, [x0, #416]
    ldp     q28, q29, [x0, #448]
    ldp     q30, q31, [x0, #480]
    add     x0, x0, #512
    ldp     x1, x2, [x0]
    msr     fpsr, x1
    msr     fpcr, x2
    ret
