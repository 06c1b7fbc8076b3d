/* Internal: running system calls inside another process with ptrace (x86-64 Linux), the
 * way CRIU's parasite code gets a process to act on its own address space, reduced to
 * what dirtylog needs (userfaultfd, ioctl and close in the target).
 *
 * A session stops the target's main thread (PTRACE_SEIZE + PTRACE_INTERRUPT: no signal
 * is sent, the thread stops where it is), saves its registers and signal mask, blocks
 * its signals, and then each dl_inject_syscall() points the thread at a `syscall`
 * instruction of its vDSO with the call's number and arguments, lets it run exactly
 * that call (PTRACE_SYSCALL: syscall-enter stop, syscall-exit stop) and reads the
 * result. dl_inject_end() restores the registers (a system call the thread was
 * interrupted in is restarted, as the kernel would restart it), the signal mask, and
 * detaches: the target runs on as before. Its other threads are not stopped.
 *
 * Scratch memory for arguments passed by pointer is in the stack of the stopped
 * thread, below its red zone (the x86-64 ABI lets signal handlers overwrite that area
 * at any time, so nothing of the program lives there); it is written with
 * process_vm_writev.
 *
 * Errors (dl_status, *sys_errno = the errno of the failed call): DL_ERR_UNSUPPORTED
 * (not x86-64 Linux, a 32-bit target, no vDSO), DL_ERR_PERM (ptrace refused: EPERM),
 * DL_ERR_SYSTEM with ESRCH (no such process, or it exited during the session), other
 * DL_ERR_SYSTEM (a ptrace call failed). An injected call's own failure is not an error
 * of the session: dl_inject_syscall() returns DL_OK and *ret = -errno.
 */
#ifndef DIRTYLOG_INJECT_H
#define DIRTYLOG_INJECT_H

#include <stddef.h>
#include <stdint.h>

#if defined(__linux__) && defined(__x86_64__)
#include <sys/user.h>
#define DL_INJECT_SUPPORTED 1
#else
#define DL_INJECT_SUPPORTED 0
#endif

typedef struct dl_inject {
    int pid;
    int attached;
    int stopped_sig;     /* a signal (SIGSTOP) whose delivery stop came during the session: re-sent at its end */
    uint64_t syscall_ip; /* a syscall instruction of the target's vDSO */
    uint64_t scratch;    /* start of the scratch area below the red zone */
    uint64_t saved_mask;
    int regs_saved;      /* saved holds the thread's registers: restore them at the end */
    int mask_saved;      /* saved_mask holds its signal mask: restore it at the end */
#if DL_INJECT_SUPPORTED
    struct user_regs_struct saved;
#endif
} dl_inject;

#define DL_INJECT_SCRATCH 4096u /* bytes of scratch memory a session offers */

int dl_inject_begin(dl_inject *s, int pid, int *sys_errno);
/* Copy len (<= DL_INJECT_SCRATCH - off) bytes into the scratch area at offset off;
 * *addr receives their address in the target. */
int dl_inject_put(dl_inject *s, size_t off, const void *buf, size_t len, uint64_t *addr, int *sys_errno);
int dl_inject_syscall(dl_inject *s, long nr, uint64_t a0, uint64_t a1, uint64_t a2, int64_t *ret, int *sys_errno);
/* Restore and detach (safe to call after a failed begin, and after the target exited). */
void dl_inject_end(dl_inject *s);

#endif
