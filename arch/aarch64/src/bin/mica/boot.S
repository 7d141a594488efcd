// Mica's entry points. Everything here runs with the MMU off, before any Rust.

.equ R_AARCH64_RELATIVE, 1027
.equ STACK_SHIFT, 16                 // 64 KiB of stack per physical CPU
.equ MAX_CPUS, 8

.section .text.head, "ax"
.global _start
_start:
    // The Linux arm64 Image header (Documentation/arch/arm64/booting.rst), so QEMU's
    // -kernel and U-Boot's booti load Mica like a kernel and pass the DTB in x0.
    b       primary_entry            // code0
    .long   0                        // code1
    .quad   0                        // text_offset: load at a 2 MiB boundary
    .quad   __image_size             // image_size, including .bss
    .quad   0xa                      // flags: little-endian, 4 KiB pages, anywhere in RAM
    .quad   0                        // res2
    .quad   0                        // res3
    .quad   0                        // res4
    .ascii  "ARM\x64"                // magic
    .long   0                        // res5

.section .text, "ax"
primary_entry:
    mov     x19, x0                  // the DTB address, kept for Rust

    // Apply our own relative relocations: the image is linked at 0.
    adrp    x20, __image_start
    add     x20, x20, :lo12:__image_start
    adrp    x1, __rela_start
    add     x1, x1, :lo12:__rela_start
    adrp    x2, __rela_end
    add     x2, x2, :lo12:__rela_end
1:  cmp     x1, x2
    b.hs    2f
    ldp     x3, x4, [x1], #16        // r_offset, r_info
    ldr     x5, [x1], #8             // r_addend
    and     x4, x4, #0xffffffff
    cmp     x4, #R_AARCH64_RELATIVE
    b.ne    1b                       // nothing else is expected in a static PIE
    add     x5, x5, x20
    str     x5, [x20, x3]
    b       1b

    // The packed relative relocations (DT_RELR, `-z pack-relative-relocs`): the link-time
    // value sits in the word itself, so each relocated word gets the load address added. An
    // even entry is the offset of one word to relocate; an odd entry is a bitmap whose bit i
    // (1 to 63) covers the word (i - 1) * 8 bytes past the last address entry's successor.
2:  adrp    x1, __relr_start
    add     x1, x1, :lo12:__relr_start
    adrp    x2, __relr_end
    add     x2, x2, :lo12:__relr_end
    mov     x6, #0                   // offset of the first word the next bitmap covers
7:  cmp     x1, x2
    b.hs    10f
    ldr     x3, [x1], #8
    tbnz    x3, #0, 8f
    ldr     x4, [x20, x3]            // an address entry
    add     x4, x4, x20
    str     x4, [x20, x3]
    add     x6, x3, #8
    b       7b
8:  mov     x7, x6                   // a bitmap entry
    lsr     x3, x3, #1
9:  cbz     x3, 11f
    tbz     x3, #0, 12f
    ldr     x4, [x20, x7]
    add     x4, x4, x20
    str     x4, [x20, x7]
12: lsr     x3, x3, #1
    add     x7, x7, #8
    b       9b
11: add     x6, x6, #(63 * 8)
    b       7b

    // Zero .bss.
10: adrp    x1, __bss_start
    add     x1, x1, :lo12:__bss_start
    adrp    x2, __bss_end
    add     x2, x2, :lo12:__bss_end
3:  cmp     x1, x2
    b.hs    4f
    stp     xzr, xzr, [x1], #16
    b       3b

4:  mov     x0, #0
    bl      set_boot_stack
    mov     x0, x19
    bl      primary_main
5:  wfe
    b       5b

// Entry of a secondary physical CPU started by PSCI CPU_ON; x0 = its logical index.
.global secondary_entry
secondary_entry:
    mov     x19, x0
    cmp     x0, #MAX_CPUS
    b.hs    6f
    bl      set_boot_stack
    mov     x0, x19
    bl      secondary_main
6:  wfe
    b       6b

// Entry of a secondary physical CPU released from a firmware spin table (Raspberry Pi 4):
// the loop hands over no argument, so the logical index is the one the boot CPU published
// in spin_table_cpu (cleaned to memory) before writing this CPU's release address.
.global spin_table_entry
spin_table_entry:
    adrp    x0, spin_table_cpu
    ldr     x0, [x0, :lo12:spin_table_cpu]
    b       secondary_entry

// sp = top of the stack of logical CPU x0. Clobbers x1, x2.
set_boot_stack:
    adrp    x1, __stacks_bottom
    add     x1, x1, :lo12:__stacks_bottom
    add     x2, x0, #1
    lsl     x2, x2, #STACK_SHIFT
    add     x1, x1, x2
    mov     sp, x1
    ret

.section .data.spin_table, "aw"
.balign 64                           // a cache line of its own: cleaned alone
.global spin_table_cpu
spin_table_cpu:
    .quad   0

.section .bss.stacks, "aw", %nobits
.balign 4096
.global __stacks_bottom
__stacks_bottom:
    .space  (MAX_CPUS << STACK_SHIFT)
.global __stacks_top
__stacks_top:
