//! Entry from a multiboot (v1) loader: QEMU `-kernel`, GRUB `multiboot`. The loader starts
//! us in 32-bit protected mode, paging off, EAX = the multiboot magic, EBX = the info block.
//! The stub identity-maps the low 4 GiB with 2 MiB pages, enters long mode and calls
//! [`crate::mica_main`] with (info address, magic).
//!
//! The header uses the a.out kludge (flag 16): the load addresses come from the header, so
//! loaders need not understand ELF64 (QEMU refuses ELF64 multiboot images otherwise).

core::arch::global_asm!(
    r#"
    .set MB_MAGIC, 0x1BADB002
    /* bit 0: modules page aligned; bit 1: memory information; bit 16: a.out kludge */
    .set MB_FLAGS, 0x00010003
    .set CR0_PE, 1 << 0
    .set CR0_PG, 1 << 31
    .set CR4_PAE, 1 << 5
    .set MSR_EFER, 0xC0000080
    .set EFER_LME, 1 << 8
    /* present | writable, and | page size for 2 MiB leaves */
    .set PTE_TABLE, 0x3
    .set PTE_LARGE, 0x83
    .set BOOT_PD_COUNT, 4
    .set STACK_SIZE, 0x10000

    .section .multiboot, "a"
    .balign 4
mb_header:
    .long MB_MAGIC
    .long MB_FLAGS
    .long -(MB_MAGIC + MB_FLAGS)
    .long mb_header
    .long __image_start
    .long __load_end
    .long __bss_end
    .long mica_start32

    .section .text.boot, "ax"
    .code32
    .global mica_start32
mica_start32:
    cli
    cld
    mov %ebx, %edi
    mov %eax, %esi
    mov $boot_stack_top, %esp

    /* PML4[0] -> PDPT; PDPT[0..4] -> four page directories of 2 MiB leaves. */
    mov $boot_pdpt, %eax
    or $PTE_TABLE, %eax
    mov %eax, boot_pml4
    xor %ecx, %ecx
1:  mov %ecx, %eax
    shl $12, %eax
    add $boot_pd, %eax
    or $PTE_TABLE, %eax
    mov %eax, boot_pdpt(,%ecx,8)
    inc %ecx
    cmp $BOOT_PD_COUNT, %ecx
    jb 1b
    xor %ecx, %ecx
2:  mov %ecx, %eax
    shl $21, %eax
    or $PTE_LARGE, %eax
    mov %eax, boot_pd(,%ecx,8)
    inc %ecx
    cmp $(BOOT_PD_COUNT * 512), %ecx
    jb 2b

    mov %cr4, %eax
    or $CR4_PAE, %eax
    mov %eax, %cr4
    mov $boot_pml4, %eax
    mov %eax, %cr3
    mov $MSR_EFER, %ecx
    rdmsr
    or $EFER_LME, %eax
    wrmsr
    mov %cr0, %eax
    or $(CR0_PG | CR0_PE), %eax
    mov %eax, %cr0
    lgdt boot_gdt_pointer
    ljmp $0x08, $mica_start64

    .code64
mica_start64:
    mov $0x10, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    xor %eax, %eax
    mov %eax, %fs
    mov %eax, %gs
    lea boot_stack_top(%rip), %rsp
    mov %edi, %edi
    mov %esi, %esi
    call mica_main
3:  hlt
    jmp 3b

    .section .rodata
    .balign 16
boot_gdt:
    .quad 0
    /* 0x08: 64-bit code, ring 0 */
    .quad 0x00AF9A000000FFFF
    /* 0x10: data, ring 0 */
    .quad 0x00CF92000000FFFF
boot_gdt_end:
boot_gdt_pointer:
    .word boot_gdt_end - boot_gdt - 1
    .quad boot_gdt

    .section .bss.pagetables, "aw", @nobits
    .balign 4096
boot_pml4:
    .skip 4096
boot_pdpt:
    .skip 4096
boot_pd:
    .skip 4096 * BOOT_PD_COUNT
    .balign 16
boot_stack:
    .skip STACK_SIZE
boot_stack_top:
"#,
    options(att_syntax)
);
