/* Multiboot (v1) entry of the validation guest: QEMU's -kernel loader enters here in
 * 32-bit protected mode, paging off, interrupts off, EBX = the multiboot info. */
        .set MB_MAGIC, 0x1BADB002
        .set MB_FLAGS, 0x00000003          /* page-align modules, give memory info */

        .section .multiboot, "a"
        .align 4
        .long MB_MAGIC
        .long MB_FLAGS
        .long -(MB_MAGIC + MB_FLAGS)

        .section .text
        .globl _start
_start:
        cli
        movl    $stack_top, %esp
        pushl   %ebx                        /* struct multiboot_info * */
        call    guest_main
1:      hlt
        jmp     1b

        .section .bss
        .align 16
        .skip   65536
stack_top:
        .section .note.GNU-stack, "", @progbits
