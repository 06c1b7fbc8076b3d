/* Dirty-page tracking of real memory with userfaultfd WP async and PAGEMAP_SCAN; see
 * include/dirtylog/realtrack.h. The kernel interfaces are described in the Linux
 * sources: include/uapi/linux/userfaultfd.h, include/uapi/linux/fs.h and
 * Documentation/admin-guide/mm/pagemap.rst. Their constants and structures are
 * defined here when the installed kernel headers are older than the running kernel. */
#if defined(__linux__)
#define _GNU_SOURCE
#endif

#include "dirtylog/realtrack.h"

#include <stdlib.h>
#include <string.h>

/* ---- which mappings a recorder tracks (the same rule everywhere: realtrack.h) ---- */

static int hex_field(const char *line, size_t len, size_t *i, uint64_t *v)
{
    size_t start = *i;
    uint64_t x = 0;
    for (; *i < len; (*i)++) {
        char c = line[*i];
        unsigned d = (c >= '0' && c <= '9') ? (unsigned)(c - '0') : (c >= 'a' && c <= 'f') ? (unsigned)(c - 'a' + 10) : 16u;
        if (d == 16u)
            break;
        if (x >> 60)
            return 0; /* more than 64 bits */
        x = x * 16 + d;
    }
    *v = x;
    return *i > start;
}

static int has_prefix(const char *p, size_t n, const char *prefix)
{
    size_t k = strlen(prefix);
    return n >= k && memcmp(p, prefix, k) == 0;
}

int dl_rt_maps_eligible(const char *line, size_t len, uint64_t *start, uint64_t *end)
{
    uint64_t s = 0, e = 0;
    size_t i = 0;
    if (!line || !start || !end)
        return 0;
    if (!hex_field(line, len, &i, &s) || i >= len || line[i] != '-')
        return 0;
    i++;
    if (!hex_field(line, len, &i, &e) || i + 6 > len || line[i] != ' ')
        return 0;
    if (line[i + 1] != 'r' || line[i + 2] != 'w' || line[i + 4] != 'p' || line[i + 5] != ' ')
        return 0; /* not private and writable */
    i += 6;
    for (int field = 0; field < 2; field++) { /* offset, device */
        while (i < len && line[i] != ' ')
            i++;
        while (i < len && line[i] == ' ')
            i++;
    }
    if (i >= len || line[i] != '0' || (i + 1 < len && line[i + 1] != ' ' && line[i + 1] != '\n'))
        return 0; /* inode != 0: file-backed */
    i++;
    while (i < len && line[i] == ' ')
        i++;
    const char *name = line + i;
    size_t n = len - i;
    if (n && name[0] == '[' && !has_prefix(name, n, "[heap]") && !has_prefix(name, n, "[stack") &&
        !has_prefix(name, n, "[anon"))
        return 0; /* [vvar], [vdso], [vsyscall], [uprobes] ... */
    if (e <= s)
        return 0;
    *start = s;
    *end = e;
    return 1;
}

#if defined(__linux__)
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1u << 13)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1u << 15)
#endif
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

/* PAGEMAP_SCAN (Linux 6.7), laid out as in include/uapi/linux/fs.h. */
typedef struct dl_page_region {
    uint64_t start;
    uint64_t end;
    uint64_t categories;
} dl_page_region;

typedef struct dl_pm_scan_arg {
    uint64_t size;
    uint64_t flags;
    uint64_t start;
    uint64_t end;
    uint64_t walk_end;
    uint64_t vec;
    uint64_t vec_len;
    uint64_t max_pages;
    uint64_t category_inverted;
    uint64_t category_mask;
    uint64_t category_anyof_mask;
    uint64_t return_mask;
} dl_pm_scan_arg;

#define DL_PAGEMAP_SCAN _IOWR('f', 16, dl_pm_scan_arg)
#define DL_PM_SCAN_WP_MATCHING 1u
#define DL_PM_SCAN_CHECK_WPASYNC 2u
#define DL_PAGE_IS_WPALLOWED (1u << 0)
#define DL_PAGE_IS_WRITTEN (1u << 1)
#define DL_PAGE_IS_PRESENT (1u << 3)
#define DL_PAGE_IS_SWAPPED (1u << 4)
#define DL_PAGE_IS_PFNZERO (1u << 5)

#define DL_RT_VEC 256 /* page regions per PAGEMAP_SCAN call */
#include "inject.h"
#include "realtrack_internal.h"
#include <stdio.h>

struct dl_rt {
    int uffd;      /* this process's userfaultfd; -1 for a handle on another process */
    int pagemap;   /* /proc/self/pagemap, or /proc/PID/pagemap (the ioctl acts on the file's mm) */
    uint64_t page;
    int pid;       /* the tracked process (0: this one) */
    int ruffd;     /* the userfaultfd injected into it (-1: none yet) */
    uint64_t start_time; /* its start time (/proc/PID/stat): the same pid later is another process */
    dl_page_region vec[DL_RT_VEC];
};
_Static_assert(sizeof(struct dl_rt) <= DL_RT_ALLOC_BYTES, "dl_rt outgrew its mapping");

static void set_errno(int *sys_errno, int e)
{
    if (sys_errno)
        *sys_errno = e;
}

static int open_uffd(int *err)
{
    int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (fd < 0 && (errno == EPERM || errno == EACCES)) {
        /* vm.unprivileged_userfaultfd = 0: user-mode-only faults are still allowed, and
         * write tracking of user memory needs nothing more. */
        fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
    }
    if (fd < 0)
        *err = errno;
    return fd;
}

static int status_of_errno(int e)
{
    switch (e) {
    case ENOSYS: case ENOTTY: case EOPNOTSUPP: return DL_ERR_UNSUPPORTED;
    case EPERM: case EACCES: return DL_ERR_PERM;
    case ENOMEM: return DL_ERR_NOMEM;
    case EINVAL: return DL_ERR_INVALID;
    default: return DL_ERR_SYSTEM;
    }
}

/* Enable the API with WP async; DL_ERR_UNSUPPORTED if the kernel lacks it. */
static int enable_wp_async(int uffd, int *err)
{
    struct uffdio_api api;
    api.api = UFFD_API;
    api.features = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED;
    api.ioctls = 0;
    if (ioctl(uffd, UFFDIO_API, &api) != 0) {
        *err = errno;
        return errno == EINVAL ? DL_ERR_UNSUPPORTED : status_of_errno(errno);
    }
    return DL_OK;
}

uint64_t dl_rt_page_size(void)
{
    long p = sysconf(_SC_PAGESIZE);
    return p > 0 ? (uint64_t)p : 4096u;
}

int dl_rt_probe(uint32_t *features, int *sys_errno)
{
    int err = 0;
    uint32_t have = 0;
    if (!features)
        return DL_ERR_INVALID;
    set_errno(sys_errno, 0);
    int uffd = open_uffd(&err);
    if (uffd >= 0) {
        have |= DL_RT_HAVE_USERFAULTFD;
        if (enable_wp_async(uffd, &err) == DL_OK)
            have |= DL_RT_HAVE_WP_ASYNC;
        close(uffd);
    }
    int first_err = err;
    int pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (pm >= 0) {
        /* An empty scan of one page of our own stack: ENOTTY/EINVAL if the ioctl is unknown. */
        uint64_t page = dl_rt_page_size();
        uint64_t here = (uint64_t)(uintptr_t)&have & ~(page - 1);
        dl_pm_scan_arg a = {0};
        a.size = sizeof a;
        a.start = here;
        a.end = here + page;
        a.return_mask = DL_PAGE_IS_PRESENT;
        if (ioctl(pm, DL_PAGEMAP_SCAN, &a) >= 0)
            have |= DL_RT_HAVE_PAGEMAP_SCAN;
        else if (!first_err)
            first_err = errno;
        close(pm);
    } else if (!first_err) {
        first_err = errno;
    }
    *features = have;
    set_errno(sys_errno, have == DL_RT_HAVE_ALL ? 0 : first_err);
    return DL_OK;
}

int dl_rt_open(dl_rt **out, int *sys_errno)
{
    int err = 0;
    if (!out)
        return DL_ERR_INVALID;
    *out = NULL;
    set_errno(sys_errno, 0);
    /* mmap, not malloc: the preload library must not allocate from the program's heap. */
    dl_rt *rt = mmap(NULL, DL_RT_ALLOC_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (rt == MAP_FAILED)
        return DL_ERR_NOMEM;
    rt->page = dl_rt_page_size();
    rt->ruffd = -1;
    rt->uffd = open_uffd(&err);
    if (rt->uffd < 0) {
        munmap(rt, DL_RT_ALLOC_BYTES);
        set_errno(sys_errno, err);
        return err == ENOSYS ? DL_ERR_UNSUPPORTED : status_of_errno(err);
    }
    int rc = enable_wp_async(rt->uffd, &err);
    if (rc != DL_OK) {
        close(rt->uffd);
        munmap(rt, DL_RT_ALLOC_BYTES);
        set_errno(sys_errno, err);
        return rc;
    }
    rt->pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (rt->pagemap < 0) {
        err = errno;
        close(rt->uffd);
        munmap(rt, DL_RT_ALLOC_BYTES);
        set_errno(sys_errno, err);
        return status_of_errno(err);
    }
    *out = rt;
    return DL_OK;
}

static int check_range(const dl_rt *rt, uint64_t addr, uint64_t len);

/* ---- another process: registration injected with ptrace (inject.h) ---- */

/* Field 22 of /proc/PID/stat (start time in clock ticks since boot), or 0. */
static uint64_t proc_start_time(int pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* the command name may hold spaces and parentheses */
    if (!p)
        return 0;
    for (int field = 2; field < 22 && *p; p++)
        if (*p == ' ')
            field++;
    return strtoull(p, NULL, 10);
}

/* Stop the target, after checking that the pid still names the process the handle was
 * opened on (a pid is reused once its process has exited). */
static int remote_attach(dl_rt *rt, dl_inject *s, int *err)
{
    int rc = dl_inject_begin(s, rt->pid, err);
    if (rc == DL_OK && proc_start_time(rt->pid) != rt->start_time) {
        dl_inject_end(s);
        *err = ESRCH;
        return DL_ERR_SYSTEM;
    }
    return rc;
}

int dl_rt_open_pid(dl_rt **out, int pid, int *sys_errno)
{
    if (!out)
        return DL_ERR_INVALID;
    *out = NULL;
    set_errno(sys_errno, 0);
    if (pid <= 0)
        return DL_ERR_INVALID;
    if (!DL_INJECT_SUPPORTED)
        return DL_ERR_UNSUPPORTED;
    dl_rt *rt = mmap(NULL, DL_RT_ALLOC_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (rt == MAP_FAILED)
        return DL_ERR_NOMEM;
    rt->page = dl_rt_page_size();
    rt->uffd = -1;
    rt->ruffd = -1;
    rt->pid = pid;
    rt->start_time = proc_start_time(pid);
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/pagemap", pid);
    rt->pagemap = open(path, O_RDONLY | O_CLOEXEC);
    if (rt->pagemap < 0) {
        int e = errno == ENOENT ? ESRCH : errno;
        munmap(rt, DL_RT_ALLOC_BYTES);
        set_errno(sys_errno, e);
        return status_of_errno(e);
    }
    *out = rt;
    return DL_OK;
}

/* Stop the target and make sure it has a userfaultfd with WP async (injected once). */
static int remote_begin(dl_rt *rt, dl_inject *s, int *err)
{
    int rc = remote_attach(rt, s, err);
    if (rc != DL_OK || rt->ruffd >= 0)
        return rc;
    int64_t fd = 0;
    rc = dl_inject_syscall(s, SYS_userfaultfd, (uint64_t)(UFFD_USER_MODE_ONLY | O_CLOEXEC | O_NONBLOCK), 0, 0, &fd,
                           err);
    if (rc == DL_OK && fd < 0) {
        *err = (int)-fd;
        rc = *err == ENOSYS ? DL_ERR_UNSUPPORTED : status_of_errno(*err);
    }
    if (rc != DL_OK) {
        dl_inject_end(s);
        return rc;
    }
    struct uffdio_api api;
    api.api = UFFD_API;
    api.features = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED;
    api.ioctls = 0;
    uint64_t at = 0;
    int64_t r = 0;
    rc = dl_inject_put(s, 0, &api, sizeof api, &at, err);
    if (rc == DL_OK)
        rc = dl_inject_syscall(s, SYS_ioctl, (uint64_t)fd, UFFDIO_API, at, &r, err);
    if (rc == DL_OK && r < 0) {
        *err = (int)-r;
        rc = *err == EINVAL ? DL_ERR_UNSUPPORTED : status_of_errno(*err);
    }
    if (rc != DL_OK) {
        int64_t ignored;
        int e2;
        if (s->attached)
            dl_inject_syscall(s, SYS_close, (uint64_t)fd, 0, 0, &ignored, &e2);
        dl_inject_end(s);
        return rc;
    }
    rt->ruffd = (int)fd;
    return DL_OK;
}

#define REMOTE_BATCH (DL_INJECT_SCRATCH / sizeof(struct uffdio_register))

int dl_rt_register_ranges(dl_rt *rt, const uint64_t *pairs, size_t n, int *status, int *sys_errno)
{
    set_errno(sys_errno, 0);
    if (!rt || (n && (!pairs || !status)))
        return DL_ERR_INVALID;
    for (size_t i = 0; i < n; i++)
        status[i] = pairs[2 * i + 1] > pairs[2 * i] ? check_range(rt, pairs[2 * i], pairs[2 * i + 1] - pairs[2 * i])
                                                    : DL_ERR_INVALID;
    if (rt->pid == 0) {
        for (size_t i = 0; i < n; i++)
            if (status[i] == DL_OK)
                status[i] = dl_rt_register(rt, pairs[2 * i], pairs[2 * i + 1] - pairs[2 * i], NULL);
        return DL_OK;
    }
    if (n == 0)
        return DL_OK;
    dl_inject s;
    int err = 0;
    int rc = remote_begin(rt, &s, &err);
    if (rc != DL_OK) {
        set_errno(sys_errno, err);
        return rc;
    }
    for (size_t i = 0; i < n && rc == DL_OK; i += REMOTE_BATCH) {
        struct uffdio_register reg[REMOTE_BATCH];
        size_t m = n - i < REMOTE_BATCH ? n - i : REMOTE_BATCH;
        for (size_t j = 0; j < m; j++) {
            reg[j].range.start = pairs[2 * (i + j)];
            reg[j].range.len = pairs[2 * (i + j) + 1] - pairs[2 * (i + j)];
            reg[j].mode = UFFDIO_REGISTER_MODE_WP;
            reg[j].ioctls = 0;
        }
        uint64_t at = 0;
        rc = dl_inject_put(&s, 0, reg, m * sizeof reg[0], &at, &err);
        for (size_t j = 0; j < m && rc == DL_OK; j++) {
            if (status[i + j] != DL_OK)
                continue;
            int64_t r = 0;
            rc = dl_inject_syscall(&s, SYS_ioctl, (uint64_t)rt->ruffd, UFFDIO_REGISTER, at + j * sizeof reg[0], &r,
                                   &err);
            if (rc == DL_OK && r < 0)
                status[i + j] = -r == EBUSY ? DL_ERR_STATE : status_of_errno((int)-r);
        }
    }
    dl_inject_end(&s);
    set_errno(sys_errno, err);
    return rc;
}

static int remote_unregister(dl_rt *rt, uint64_t addr, uint64_t len, int *sys_errno)
{
    if (rt->ruffd < 0)
        return DL_OK; /* nothing registered yet */
    dl_inject s;
    int err = 0;
    int rc = remote_begin(rt, &s, &err);
    if (rc == DL_OK) {
        struct uffdio_range r = {addr, len};
        uint64_t at = 0;
        int64_t ret = 0;
        rc = dl_inject_put(&s, 0, &r, sizeof r, &at, &err);
        if (rc == DL_OK)
            rc = dl_inject_syscall(&s, SYS_ioctl, (uint64_t)rt->ruffd, UFFDIO_UNREGISTER, at, &ret, &err);
        if (rc == DL_OK && ret < 0) {
            err = (int)-ret;
            rc = status_of_errno(err);
        }
        dl_inject_end(&s);
    }
    set_errno(sys_errno, err);
    return rc;
}

void dl_rt_close(dl_rt *rt)
{
    if (!rt)
        return;
    if (rt->pid && rt->ruffd >= 0) {
        /* close the injected userfaultfd in the target (best effort: it may have exited):
         * its ranges are unregistered and the process runs on untracked */
        dl_inject s;
        int err = 0;
        if (remote_attach(rt, &s, &err) == DL_OK) {
            int64_t r;
            dl_inject_syscall(&s, SYS_close, (uint64_t)rt->ruffd, 0, 0, &r, &err);
            dl_inject_end(&s);
        }
    }
    close(rt->pagemap); /* releasing the userfaultfd unregisters its ranges */
    if (rt->uffd >= 0)
        close(rt->uffd);
    munmap(rt, DL_RT_ALLOC_BYTES);
}

static int check_range(const dl_rt *rt, uint64_t addr, uint64_t len)
{
    if (!rt || len == 0 || (addr & (rt->page - 1)) || (len & (rt->page - 1)) || addr + len < addr)
        return DL_ERR_INVALID;
    return DL_OK;
}

int dl_rt_register(dl_rt *rt, uint64_t addr, uint64_t len, int *sys_errno)
{
    set_errno(sys_errno, 0);
    int rc = check_range(rt, addr, len);
    if (rc != DL_OK)
        return rc;
    if (rt->pid) {
        int st = DL_OK;
        uint64_t pair[2] = {addr, addr + len};
        rc = dl_rt_register_ranges(rt, pair, 1, &st, sys_errno);
        return rc != DL_OK ? rc : st;
    }
    struct uffdio_register reg;
    reg.range.start = addr;
    reg.range.len = len;
    reg.mode = UFFDIO_REGISTER_MODE_WP;
    reg.ioctls = 0;
    if (ioctl(rt->uffd, UFFDIO_REGISTER, &reg) != 0) {
        set_errno(sys_errno, errno);
        return errno == EBUSY ? DL_ERR_STATE : status_of_errno(errno);
    }
    return DL_OK;
}

int dl_rt_unregister(dl_rt *rt, uint64_t addr, uint64_t len, int *sys_errno)
{
    set_errno(sys_errno, 0);
    int rc = check_range(rt, addr, len);
    if (rc != DL_OK)
        return rc;
    if (rt->pid)
        return remote_unregister(rt, addr, len, sys_errno);
    struct uffdio_range r;
    r.start = addr;
    r.len = len;
    if (ioctl(rt->uffd, UFFDIO_UNREGISTER, &r) != 0) {
        set_errno(sys_errno, errno);
        return status_of_errno(errno);
    }
    return DL_OK;
}

static int scan_errno(int e)
{
    if (e == EPERM)
        return DL_ERR_STATE; /* PM_SCAN_CHECK_WPASYNC: a part is not registered */
    return status_of_errno(e);
}

int dl_rt_harvest(dl_rt *rt, uint64_t addr, uint64_t len, uint32_t flags, uint64_t *out, size_t cap,
                  size_t *count, uint64_t *walk_end, int *sys_errno)
{
    set_errno(sys_errno, 0);
    int rc = check_range(rt, addr, len);
    if (rc != DL_OK || !count || (cap && !out) || (flags & ~(uint32_t)(DL_RT_FIRST | DL_RT_SKIP_UNREGISTERED)))
        return rc != DL_OK ? rc : DL_ERR_INVALID;
    *count = 0;
    const uint64_t end = addr + len;
    const unsigned shift = (unsigned)__builtin_ctzll(rt->page);
    const int first = (flags & DL_RT_FIRST) != 0;
    size_t n = 0;
    uint64_t at = addr;
    while (at < end && n < cap) {
        dl_pm_scan_arg a = {0};
        a.size = sizeof a;
        a.flags = DL_PM_SCAN_WP_MATCHING | ((flags & DL_RT_SKIP_UNREGISTERED) ? 0 : DL_PM_SCAN_CHECK_WPASYNC);
        a.start = at;
        a.end = end;
        a.vec = (uint64_t)(uintptr_t)rt->vec;
        a.vec_len = DL_RT_VEC;
        a.max_pages = cap - n; /* pages not returned are not re-protected either */
        a.category_mask = DL_PAGE_IS_WRITTEN;
        a.return_mask = first ? (DL_PAGE_IS_WRITTEN | DL_PAGE_IS_PRESENT | DL_PAGE_IS_SWAPPED | DL_PAGE_IS_PFNZERO)
                              : DL_PAGE_IS_WRITTEN;
        long got = ioctl(rt->pagemap, DL_PAGEMAP_SCAN, &a);
        if (got < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            set_errno(sys_errno, errno);
            *count = n;
            if (walk_end)
                *walk_end = at;
            return scan_errno(errno);
        }
        for (long i = 0; i < got; i++) {
            const dl_page_region *r = &rt->vec[i];
            if (first && (!(r->categories & (DL_PAGE_IS_PRESENT | DL_PAGE_IS_SWAPPED)) ||
                          (r->categories & DL_PAGE_IS_PFNZERO)))
                continue; /* first harvest: a hole or the zero page was never written */
            for (uint64_t p = (r->start - addr) >> shift, q = (r->end - addr) >> shift; p < q && n < cap; p++)
                out[n++] = p;
        }
        if (a.walk_end <= at)
            break; /* no progress (cannot happen with a non-empty vector); do not spin */
        at = a.walk_end;
    }
    *count = n;
    if (walk_end)
        *walk_end = at;
    return DL_OK;
}

int dl_rt_unregistered(dl_rt *rt, uint64_t addr, uint64_t len, uint64_t *out, size_t cap_pairs, size_t *count,
                       int *sys_errno)
{
    set_errno(sys_errno, 0);
    int rc = check_range(rt, addr, len);
    if (rc != DL_OK || !count || (cap_pairs && !out))
        return rc != DL_OK ? rc : DL_ERR_INVALID;
    *count = 0;
    const uint64_t end = addr + len;
    size_t n = 0;
    uint64_t at = addr;
    while (at < end) {
        dl_pm_scan_arg a = {0};
        a.size = sizeof a;
        a.start = at;
        a.end = end;
        a.vec = (uint64_t)(uintptr_t)rt->vec;
        a.vec_len = DL_RT_VEC;
        a.category_inverted = DL_PAGE_IS_WPALLOWED;
        a.category_mask = DL_PAGE_IS_WPALLOWED; /* pages *without* WP async */
        a.return_mask = DL_PAGE_IS_WPALLOWED;
        long got = ioctl(rt->pagemap, DL_PAGEMAP_SCAN, &a);
        if (got < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            set_errno(sys_errno, errno);
            *count = n;
            return status_of_errno(errno);
        }
        for (long i = 0; i < got; i++) {
            uint64_t s = rt->vec[i].start, e = rt->vec[i].end;
            if (n && out[2 * n - 1] == s) { /* merge what the kernel split */
                out[2 * n - 1] = e;
                continue;
            }
            if (n == cap_pairs) {
                *count = n;
                return DL_ERR_BUFFER;
            }
            out[2 * n] = s;
            out[2 * n + 1] = e;
            n++;
        }
        if (a.walk_end <= at)
            break;
        at = a.walk_end;
    }
    *count = n;
    return DL_OK;
}

#else /* not Linux: nothing to track with */

int dl_rt_probe(uint32_t *features, int *sys_errno)
{
    if (!features)
        return DL_ERR_INVALID;
    *features = 0;
    if (sys_errno)
        *sys_errno = 0;
    return DL_OK;
}

uint64_t dl_rt_page_size(void) { return 4096u; }

int dl_rt_open(dl_rt **out, int *sys_errno)
{
    if (out)
        *out = NULL;
    if (sys_errno)
        *sys_errno = 0;
    return DL_ERR_UNSUPPORTED;
}

void dl_rt_close(dl_rt *rt) { (void)rt; }

int dl_rt_open_pid(dl_rt **out, int pid, int *sys_errno)
{
    (void)pid;
    return dl_rt_open(out, sys_errno);
}

int dl_rt_register_ranges(dl_rt *rt, const uint64_t *pairs, size_t n, int *status, int *sys_errno)
{
    (void)rt; (void)pairs;
    for (size_t i = 0; status && i < n; i++)
        status[i] = DL_ERR_UNSUPPORTED;
    if (sys_errno)
        *sys_errno = 0;
    return DL_ERR_UNSUPPORTED;
}

int dl_rt_register(dl_rt *rt, uint64_t addr, uint64_t len, int *sys_errno)
{
    (void)rt; (void)addr; (void)len;
    if (sys_errno)
        *sys_errno = 0;
    return DL_ERR_UNSUPPORTED;
}

int dl_rt_unregister(dl_rt *rt, uint64_t addr, uint64_t len, int *sys_errno)
{
    return dl_rt_register(rt, addr, len, sys_errno);
}

int dl_rt_harvest(dl_rt *rt, uint64_t addr, uint64_t len, uint32_t flags, uint64_t *out, size_t cap,
                  size_t *count, uint64_t *walk_end, int *sys_errno)
{
    (void)flags; (void)out; (void)cap; (void)walk_end;
    if (count)
        *count = 0;
    return dl_rt_register(rt, addr, len, sys_errno);
}

int dl_rt_unregistered(dl_rt *rt, uint64_t addr, uint64_t len, uint64_t *out, size_t cap_pairs, size_t *count,
                       int *sys_errno)
{
    (void)out; (void)cap_pairs;
    if (count)
        *count = 0;
    return dl_rt_register(rt, addr, len, sys_errno);
}
#endif
