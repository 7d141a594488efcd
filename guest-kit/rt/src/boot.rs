//! Entry points: the Linux arm64 Image header, the primary CPU's start-up and the entry for CPUs
//! started with PSCI CPU_ON.
//!
//! Start-up order, before any Rust runs (Rust code may use unaligned accesses and SIMD, which
//! need FP enabled and Normal memory):
//! 1. mask interrupts, enable FP/SIMD (CPACR_EL1.FPEN);
//! 2. (primary only) fill the identity-map level-1 table while the MMU is off, then invalidate
//!    its cache lines so the cacheable table walk reads what was written;
//! 3. enable the MMU with that table: 1 GiB blocks, the blocks holding the image and the DTB are
//!    Normal write-back memory, every other block is Device-nGnRnE and never executable. With
//!    Normal memory, exclusive loads/stores (atomics, spin locks) work;
//! 4. (primary only) apply the R_AARCH64_RELATIVE relocations and clear .bss, through the cache;
//! 5. set SP and VBAR_EL1 and call Rust.

use core::arch::global_asm;
use core::cell::UnsafeCell;
use mica_guest_abi::image;

/// Bytes of stack for the boot CPU.
pub const PRIMARY_STACK_SIZE: usize = 64 * 1024;
/// Bytes of stack for each CPU started with [`crate::cpu::start_cpu`].
pub const SECONDARY_STACK_SIZE: usize = 16 * 1024;
/// How many CPU_ON starts the runtime has stacks for.
pub const MAX_SECONDARIES: usize = 7;

/// Memory for stacks, aligned as the AAPCS64 wants SP.
#[repr(C, align(16))]
pub(crate) struct Stack<const N: usize>(UnsafeCell<[u8; N]>);

// SAFETY: the bytes are only ever touched through SP by the one CPU that owns each stack; Rust
// code never forms references to them.
unsafe impl<const N: usize> Sync for Stack<N> {}

static PRIMARY_STACK: Stack<PRIMARY_STACK_SIZE> = Stack(UnsafeCell::new([0; PRIMARY_STACK_SIZE]));
static SECONDARY_STACKS: Stack<{ SECONDARY_STACK_SIZE * MAX_SECONDARIES }> =
    Stack(UnsafeCell::new([0; SECONDARY_STACK_SIZE * MAX_SECONDARIES]));

/// Linux arm64 Image flags: little endian (bit 0 clear), 4 KiB pages (bits 2:1 = 1), the image
/// may be placed anywhere in RAM (bit 3).
const IMAGE_FLAGS: u64 = image::FLAG_PAGE_SIZE_4K | image::FLAG_PLACE_ANYWHERE;

/// Level-1 block descriptor for Device-nGnRnE memory (AttrIndx 0), access flag set, never
/// executable (PXN, UXN).
pub(crate) const DEVICE_BLOCK: u64 = (1 << 54) | (1 << 53) | (1 << 10) | 0b01;
/// Level-1 block descriptor for Normal write-back memory (AttrIndx 1), inner shareable, access
/// flag set, executable.
pub(crate) const NORMAL_BLOCK: u64 = (1 << 10) | (0b11 << 8) | (1 << 2) | 0b01;
/// MAIR_EL1: attribute 0 Device-nGnRnE, attribute 1 Normal write-back read/write-allocate.
const MAIR: u64 = 0xff << 8;
/// TCR_EL1 without IPS: T0SZ = 25 (39-bit VA, the walk starts at level 1 with 4 KiB pages),
/// write-back cacheable inner-shareable walks, TTBR1 walks disabled (EPD1).
const TCR: u64 = 25 | (0b01 << 8) | (0b01 << 10) | (0b11 << 12) | (1 << 23);
/// SCTLR_EL1: the ARMv8.0 RES1 bits plus M (MMU), C (data cache), SA (SP alignment check) and
/// I (instruction cache). Alignment checking (A) stays off.
const SCTLR: u64 = 0x30d0_0800 | (1 << 12) | (1 << 3) | (1 << 2) | 1;
/// CPACR_EL1.FPEN = 0b11: FP/SIMD at EL1 and EL0 do not trap.
const CPACR_FPEN: u64 = 0b11 << 20;
/// ELF relocation type R_AARCH64_RELATIVE.
const R_AARCH64_RELATIVE: u64 = 1027;

global_asm!(
    r#"
    .section .text.head, "ax"
    .global _start
_start:
    b       mica_rt_primary_entry   // code0
    nop                             // code1
    .quad   0                       // text_offset
    .quad   __image_size            // image_size, .bss, stacks and page table included
    .quad   {flags}                 // flags
    .quad   0, 0, 0                 // res2, res3, res4
    .ascii  "ARM\x64"               // magic
    .long   0                       // res5

    .text
    .global mica_rt_primary_entry
mica_rt_primary_entry:
    mov     x21, x0                 // the DTB address, kept for Rust
    msr     daifset, #0xf
    bl      mica_rt_enable_fp
    mov     x0, x21
    bl      mica_rt_build_page_table
    bl      mica_rt_enable_mmu

    // Apply R_AARCH64_RELATIVE relocations: *(base + offset) = base + addend.
    adrp    x0, _start
    add     x0, x0, :lo12:_start
    adrp    x1, __rela_start
    add     x1, x1, :lo12:__rela_start
    adrp    x2, __rela_end
    add     x2, x2, :lo12:__rela_end
1:  cmp     x1, x2
    b.hs    3f
    ldp     x3, x4, [x1], #16       // r_offset, r_info
    ldr     x5, [x1], #8            // r_addend
    cmp     x4, #{relative}
    b.ne    mica_rt_hang            // the linker emitted something we cannot apply
    add     x5, x5, x0
    str     x5, [x0, x3]
    b       1b

3:  adrp    x1, __bss_start
    add     x1, x1, :lo12:__bss_start
    adrp    x2, __bss_end
    add     x2, x2, :lo12:__bss_end
4:  cmp     x1, x2
    b.hs    5f
    stp     xzr, xzr, [x1], #16
    b       4b

5:  adrp    x0, {primary_stack}
    add     x0, x0, :lo12:{primary_stack}
    mov     x1, #{primary_stack_size}
    add     sp, x0, x1
    bl      mica_rt_set_vectors
    mov     x0, x21
    bl      {primary_main}
    b       mica_rt_hang

    // Entry for CPU_ON: x0 = the start slot the primary filled in.
    .global mica_rt_secondary_entry
mica_rt_secondary_entry:
    mov     x21, x0
    msr     daifset, #0xf
    bl      mica_rt_enable_fp
    bl      mica_rt_enable_mmu
    cmp     x21, #{max_secondaries}
    b.hs    mica_rt_hang
    adrp    x0, {secondary_stacks}
    add     x0, x0, :lo12:{secondary_stacks}
    add     x1, x21, #1
    mov     x2, #{secondary_stack_size}
    madd    x0, x1, x2, x0          // top of this slot's stack
    mov     sp, x0
    bl      mica_rt_set_vectors
    mov     x0, x21
    bl      {secondary_main}
    b       mica_rt_hang

mica_rt_hang:
    wfe
    b       mica_rt_hang

mica_rt_enable_fp:
    mov     x0, #{cpacr}
    msr     cpacr_el1, x0
    isb
    ret

mica_rt_set_vectors:
    adrp    x0, mica_rt_vectors
    add     x0, x0, :lo12:mica_rt_vectors
    msr     vbar_el1, x0
    isb
    ret

    // x0 = DTB address. Uses x0-x10. Runs with the MMU off.
mica_rt_build_page_table:
    adrp    x1, __page_table
    add     x1, x1, :lo12:__page_table
    adrp    x2, _start
    add     x2, x2, :lo12:_start
    lsr     x2, x2, #30             // 1 GiB block holding the image
    lsr     x3, x0, #30             // 1 GiB block holding the DTB
    mov     x5, #{device_lo}
    movk    x5, #{device_hi}, lsl #48
    mov     x8, #{normal}
    mov     x4, #0
1:  lsl     x6, x4, #30
    orr     x7, x6, x5
    cmp     x4, x2
    b.eq    2f
    cmp     x4, x3
    b.ne    3f
2:  orr     x7, x6, x8
3:  str     x7, [x1, x4, lsl #3]
    add     x4, x4, #1
    cmp     x4, #512
    b.lo    1b
    // Drop any stale cache lines over the table: the walker reads through the cache.
    mrs     x9, ctr_el0
    ubfx    x9, x9, #16, #4         // DminLine: log2 of the line size in words
    mov     x10, #4
    lsl     x10, x10, x9
    add     x6, x1, #4096
    mov     x4, x1
4:  dc      ivac, x4
    add     x4, x4, x10
    cmp     x4, x6
    b.lo    4b
    dsb     sy
    ret

    // Turns on the MMU and caches with the identity map. Uses x0-x2.
mica_rt_enable_mmu:
    mov     x0, #{mair}
    msr     mair_el1, x0
    mrs     x1, id_aa64mmfr0_el1
    and     x1, x1, #0x7            // PARange
    mov     x2, #5                  // cap at 48 bits: 52-bit needs other descriptors
    cmp     x1, x2
    csel    x1, x1, x2, ls
    mov     x0, #{tcr_lo}
    movk    x0, #{tcr_hi}, lsl #16
    orr     x0, x0, x1, lsl #32     // IPS
    msr     tcr_el1, x0
    adrp    x0, __page_table
    add     x0, x0, :lo12:__page_table
    msr     ttbr0_el1, x0
    isb
    tlbi    vmalle1
    dsb     nsh
    isb
    mov     x0, #{sctlr_lo}
    movk    x0, #{sctlr_hi}, lsl #16
    msr     sctlr_el1, x0
    isb
    ic      iallu
    dsb     nsh
    isb
    ret
"#,
    flags = const IMAGE_FLAGS,
    relative = const R_AARCH64_RELATIVE,
    primary_stack = sym PRIMARY_STACK,
    primary_stack_size = const PRIMARY_STACK_SIZE,
    primary_main = sym crate::primary_main,
    max_secondaries = const MAX_SECONDARIES,
    secondary_stacks = sym SECONDARY_STACKS,
    secondary_stack_size = const SECONDARY_STACK_SIZE,
    secondary_main = sym crate::cpu::secondary_main,
    cpacr = const CPACR_FPEN,
    device_lo = const DEVICE_BLOCK & 0xffff,
    device_hi = const DEVICE_BLOCK >> 48,
    normal = const NORMAL_BLOCK,
    mair = const MAIR,
    tcr_lo = const TCR & 0xffff,
    tcr_hi = const (TCR >> 16) & 0xffff,
    sctlr_lo = const SCTLR & 0xffff,
    sctlr_hi = const (SCTLR >> 16) & 0xffff,
);
