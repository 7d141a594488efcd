//! PVH entry: 32-bit protected mode, paging off, EBX = start info. Identity-maps the low
//! 4 GiB with 2 MiB pages, enables long mode and calls `x86_guest_rust_start(start_info)`.

core::arch::global_asm!(
    r#"
    .set CR0_PG, 1 << 31
    .set CR4_PAE, 1 << 5
    .set MSR_EFER, 0xC0000080
    .set EFER_LME, 1 << 8
    .set PTE_TABLE, 0x3
    .set PTE_LARGE, 0x83
    .set PD_COUNT, 4

    /* Xen's PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY = 18): loaders enter here. */
    .section .note.Xen, "a", @note
    .balign 4
    .long 4
    .long 4
    .long 18
    .asciz "Xen"
    .long guest_start32

    .section .text.boot, "ax"
    .code32
    .global guest_start32
guest_start32:
    cli
    cld
    mov %ebx, %edi
    mov $guest_stack_top, %esp
    mov $guest_pdpt, %eax
    or $PTE_TABLE, %eax
    mov %eax, guest_pml4
    xor %ecx, %ecx
1:  mov %ecx, %eax
    shl $12, %eax
    add $guest_pd, %eax
    or $PTE_TABLE, %eax
    mov %eax, guest_pdpt(,%ecx,8)
    inc %ecx
    cmp $PD_COUNT, %ecx
    jb 1b
    xor %ecx, %ecx
2:  mov %ecx, %eax
    shl $21, %eax
    or $PTE_LARGE, %eax
    mov %eax, guest_pd(,%ecx,8)
    inc %ecx
    cmp $(PD_COUNT * 512), %ecx
    jb 2b
    mov %cr4, %eax
    or $CR4_PAE, %eax
    mov %eax, %cr4
    mov $guest_pml4, %eax
    mov %eax, %cr3
    mov $MSR_EFER, %ecx
    rdmsr
    or $EFER_LME, %eax
    wrmsr
    mov %cr0, %eax
    or $CR0_PG, %eax
    mov %eax, %cr0
    lgdt guest_gdt_pointer
    ljmp $0x08, $guest_start64

    .code64
guest_start64:
    mov $0x10, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    lea guest_stack_top(%rip), %rsp
    mov %edi, %edi
    call x86_guest_rust_start
3:  hlt
    jmp 3b

    .section .rodata
    .balign 16
guest_gdt:
    .quad 0
    .quad 0x00AF9A000000FFFF
    .quad 0x00CF92000000FFFF
guest_gdt_end:
guest_gdt_pointer:
    .word guest_gdt_end - guest_gdt - 1
    .quad guest_gdt

    .section .bss.pagetables, "aw", @nobits
    .balign 4096
guest_pml4:
    .skip 4096
guest_pdpt:
    .skip 4096
guest_pd:
    .skip 4096 * PD_COUNT
    .balign 16
    .skip 0x8000
guest_stack_top:
"#,
    options(att_syntax)
);
