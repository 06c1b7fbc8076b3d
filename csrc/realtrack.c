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
#include "realtrack_internal.h"

struct dl_rt {
    int uffd;
    int pagemap;
    uint64_t page;
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

void dl_rt_close(dl_rt *rt)
{
    if (!rt)
        return;
    close(rt->pagemap); /* releasing the userfaultfd unregisters its ranges */
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
