/* System calls run inside another process with ptrace; see inject.h. */
#if defined(__linux__)
#define _GNU_SOURCE
#endif

#include "inject.h"

#include "dirtylog/common.h"

#include <string.h>

#if DL_INJECT_SUPPORTED
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef PTRACE_GETSIGMASK
#define PTRACE_GETSIGMASK 0x420a
#define PTRACE_SETSIGMASK 0x420b
#endif
#ifndef PTRACE_EVENT_STOP
#define PTRACE_EVENT_STOP 128
#endif

#define RED_ZONE 128u
#define USER_CS_64 0x33u /* __USER_CS: a 64-bit process */
#define MAX_WAITS 64     /* stops of other kinds tolerated while waiting for ours */

/* The kernel's restart codes (include/linux/errno.h; not in the uapi headers). */
#define K_ERESTARTSYS 512
#define K_ERESTARTNOINTR 513
#define K_ERESTARTNOHAND 514
#define K_ERESTART_RESTARTBLOCK 516

static int fail(int *sys_errno, int e)
{
    if (sys_errno)
        *sys_errno = e;
    if (e == EPERM || e == EACCES)
        return DL_ERR_PERM;
    return DL_ERR_SYSTEM;
}

/* Wait for the next stop of the thread; ESRCH if it exited. */
static int wait_stop(dl_inject *s, int *status)
{
    for (;;) {
        pid_t r = waitpid(s->pid, status, __WALL);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return errno == ECHILD ? ESRCH : errno;
        }
        if (WIFEXITED(*status) || WIFSIGNALED(*status)) {
            s->attached = 0;
            return ESRCH;
        }
        if (WIFSTOPPED(*status))
            return 0;
    }
}

/* The address of a syscall instruction (0f 05) in the target's vDSO, or 0. */
static uint64_t find_syscall(int pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/maps", pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    char line[512];
    unsigned long lo = 0, hi = 0;
    int found = 0;
    while (!found && fgets(line, sizeof line, f))
        if (strstr(line, "[vdso]") && sscanf(line, "%lx-%lx", &lo, &hi) == 2)
            found = 1;
    fclose(f);
    if (!found || hi <= lo || hi - lo > (1u << 20))
        return 0;
    snprintf(path, sizeof path, "/proc/%d/mem", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    unsigned char buf[4096];
    uint64_t at = 0;
    for (unsigned long off = lo; off < hi && !at; off += sizeof buf - 1) {
        ssize_t n = pread(fd, buf, sizeof buf, (off_t)off);
        if (n < 2)
            break;
        for (ssize_t i = 0; i + 1 < n; i++)
            if (buf[i] == 0x0f && buf[i + 1] == 0x05) {
                at = off + (unsigned long)i;
                break;
            }
    }
    close(fd);
    return at;
}

int dl_inject_begin(dl_inject *s, int pid, int *sys_errno)
{
    if (sys_errno)
        *sys_errno = 0;
    if (!s || pid <= 0)
        return DL_ERR_INVALID;
    memset(s, 0, sizeof *s);
    s->pid = pid;
    if (ptrace(PTRACE_SEIZE, pid, 0, (void *)(long)PTRACE_O_TRACESYSGOOD) != 0)
        return fail(sys_errno, errno);
    s->attached = 1;
    if (ptrace(PTRACE_INTERRUPT, pid, 0, 0) != 0) {
        int e = errno;
        dl_inject_end(s);
        return fail(sys_errno, e);
    }
    int st = 0, e = 0;
    for (int tries = 0;; tries++) {
        if ((e = wait_stop(s, &st)) != 0) {
            dl_inject_end(s); /* detaches if the thread is still there */
            return fail(sys_errno, e);
        }
        if ((st >> 16) == PTRACE_EVENT_STOP)
            break; /* our interrupt (or a group stop): the thread is stopped where it was */
        if (tries >= MAX_WAITS) {
            dl_inject_end(s);
            return fail(sys_errno, EBUSY);
        }
        /* a signal-delivery stop came first: deliver the signal as if we were not here */
        int sig = (st >> 16) == 0 ? WSTOPSIG(st) : 0;
        if (ptrace(PTRACE_CONT, pid, 0, (void *)(long)sig) != 0) {
            e = errno;
            dl_inject_end(s);
            return fail(sys_errno, e);
        }
    }
    if (ptrace(PTRACE_GETREGS, pid, 0, &s->saved) != 0) {
        e = errno;
        dl_inject_end(s); /* nothing saved: detaches without restoring */
        return fail(sys_errno, e);
    }
    s->regs_saved = 1;
    if (s->saved.cs != USER_CS_64) {
        dl_inject_end(s);
        return DL_ERR_UNSUPPORTED; /* a 32-bit process */
    }
    if (ptrace(PTRACE_GETSIGMASK, pid, (void *)sizeof s->saved_mask, &s->saved_mask) != 0) {
        e = errno;
        dl_inject_end(s);
        return fail(sys_errno, e);
    }
    s->mask_saved = 1;
    uint64_t all = ~(uint64_t)0;
    if (ptrace(PTRACE_SETSIGMASK, pid, (void *)sizeof all, &all) != 0) {
        e = errno;
        dl_inject_end(s);
        return fail(sys_errno, e);
    }
    s->syscall_ip = find_syscall(pid);
    if (!s->syscall_ip) {
        dl_inject_end(s);
        return DL_ERR_UNSUPPORTED; /* no vDSO to borrow a syscall instruction from */
    }
    s->scratch = (s->saved.rsp - RED_ZONE - DL_INJECT_SCRATCH) & ~(uint64_t)15;
    return DL_OK;
}

int dl_inject_put(dl_inject *s, size_t off, const void *buf, size_t len, uint64_t *addr, int *sys_errno)
{
    if (sys_errno)
        *sys_errno = 0;
    if (!s || !s->attached || !buf || off > DL_INJECT_SCRATCH || len > DL_INJECT_SCRATCH - off)
        return DL_ERR_INVALID;
    uint64_t at = s->scratch + off;
    struct iovec local = {(void *)(uintptr_t)buf, len};
    struct iovec remote = {(void *)(uintptr_t)at, len};
    ssize_t n = process_vm_writev(s->pid, &local, 1, &remote, 1, 0);
    if (n != (ssize_t)len)
        return fail(sys_errno, n < 0 ? errno : EFAULT);
    if (addr)
        *addr = at;
    return DL_OK;
}

int dl_inject_syscall(dl_inject *s, long nr, uint64_t a0, uint64_t a1, uint64_t a2, int64_t *ret, int *sys_errno)
{
    if (sys_errno)
        *sys_errno = 0;
    if (!s || !s->attached || !ret)
        return DL_ERR_INVALID;
    struct user_regs_struct r = s->saved;
    r.rax = (unsigned long long)nr;
    r.orig_rax = (unsigned long long)-1; /* not in a system call: nothing for the kernel to restart */
    r.rdi = a0;
    r.rsi = a1;
    r.rdx = a2;
    r.rip = s->syscall_ip;
    if (ptrace(PTRACE_SETREGS, s->pid, 0, &r) != 0)
        return fail(sys_errno, errno);
    int st = 0, e = 0;
    for (int phase = 0, tries = 0; phase < 2; tries++) { /* syscall-enter stop, then syscall-exit stop */
        if (tries > MAX_WAITS)
            return fail(sys_errno, EBUSY);
        if (ptrace(PTRACE_SYSCALL, s->pid, 0, 0) != 0)
            return fail(sys_errno, errno);
        if ((e = wait_stop(s, &st)) != 0)
            return fail(sys_errno, e);
        if (WSTOPSIG(st) == (SIGTRAP | 0x80))
            phase++;
        else if ((st >> 16) == 0)
            s->stopped_sig = WSTOPSIG(st); /* an unblockable signal (SIGSTOP): sent again at the end */
        /* else a group stop or a late interrupt stop: resume again */
    }
    if (ptrace(PTRACE_GETREGS, s->pid, 0, &r) != 0)
        return fail(sys_errno, errno);
    *ret = (int64_t)r.rax;
    return DL_OK;
}

/* Puts back what dl_inject_begin saved (registers, then the signal mask), restarting a
 * system call the thread was stopped in as the kernel would. */
static void restore(const dl_inject *s)
{
    struct user_regs_struct r = s->saved;
    if ((long long)r.orig_rax >= 0) { /* stopped in a system call: restart it as the kernel would */
        switch (-(long long)r.rax) {
        case K_ERESTARTSYS: case K_ERESTARTNOINTR: case K_ERESTARTNOHAND:
            r.rax = r.orig_rax;
            r.rip -= 2;
            break;
        case K_ERESTART_RESTARTBLOCK:
            r.rax = SYS_restart_syscall;
            r.rip -= 2;
            break;
        default:
            break;
        }
    }
    r.orig_rax = (unsigned long long)-1; /* already adjusted: the kernel must not restart it again */
    ptrace(PTRACE_SETREGS, s->pid, 0, &r);
    if (s->mask_saved)
        ptrace(PTRACE_SETSIGMASK, s->pid, (void *)sizeof s->saved_mask, &s->saved_mask);
}

void dl_inject_end(dl_inject *s)
{
    if (!s || !s->attached)
        return;
    /* Only what was saved is restored: a session that failed before reading the registers
     * detaches without writing any, so the thread goes on untouched. */
    if (s->regs_saved)
        restore(s);
    ptrace(PTRACE_DETACH, s->pid, 0, 0);
    s->attached = 0;
    if (s->stopped_sig)
        syscall(SYS_tgkill, s->pid, s->pid, s->stopped_sig);
}

#else /* not x86-64 Linux */

int dl_inject_begin(dl_inject *s, int pid, int *sys_errno)
{
    (void)pid;
    if (s)
        memset(s, 0, sizeof *s);
    if (sys_errno)
        *sys_errno = 0;
    return DL_ERR_UNSUPPORTED;
}

int dl_inject_put(dl_inject *s, size_t off, const void *buf, size_t len, uint64_t *addr, int *sys_errno)
{
    (void)s; (void)off; (void)buf; (void)len; (void)addr;
    if (sys_errno)
        *sys_errno = 0;
    return DL_ERR_UNSUPPORTED;
}

int dl_inject_syscall(dl_inject *s, long nr, uint64_t a0, uint64_t a1, uint64_t a2, int64_t *ret, int *sys_errno)
{
    (void)s; (void)nr; (void)a0; (void)a1; (void)a2;
    if (ret)
        *ret = 0;
    if (sys_errno)
        *sys_errno = 0;
    return DL_ERR_UNSUPPORTED;
}

void dl_inject_end(dl_inject *s) { (void)s; }
#endif
