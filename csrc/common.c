#define _DEFAULT_SOURCE /* madvise */
#include "dirtylog/common.h"

#include "internal.h"

#include <stdlib.h>
#include <string.h>

#if defined(__linux__)
#include <sys/mman.h>
#endif

void *dl__calloc_big(size_t n, size_t size)
{
    const size_t huge = (size_t)1 << 21;
    if (size && n > SIZE_MAX / size)
        return NULL;
    size_t bytes = n * size;
    if (bytes < huge)
        return calloc(n, size);
    void *p = NULL;
    if (posix_memalign(&p, huge, bytes))
        return NULL;
    dl__advise_huge(p, bytes, 0); /* before the first write: the faults take 2 MiB pages */
    memset(p, 0, bytes);
    return p;
}

const char *dl_strerror(int status)
{
    switch (status) {
    case DL_OK: return "success";
    case DL_ERR_INVALID: return "invalid argument";
    case DL_ERR_NOMEM: return "out of memory";
    case DL_ERR_RANGE: return "index out of range";
    case DL_ERR_STATE: return "not allowed in the current state";
    case DL_ERR_MODE: return "not supported in this mode";
    case DL_ERR_BUFFER: return "output buffer too small";
    case DL_ERR_UNSUPPORTED: return "not supported by this operating system or kernel";
    case DL_ERR_PERM: return "permission denied by the operating system";
    case DL_ERR_SYSTEM: return "a system call failed";
    default: return "unknown dirtylog status";
    }
}

const char *dl_version(void) { return "0.1.0"; }

void dl__advise_huge(void *p, size_t bytes, int populated)
{
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    const uintptr_t huge = (uintptr_t)1 << 21;
    if (!p || bytes < huge)
        return;
    uintptr_t a = ((uintptr_t)p + huge - 1) & ~(huge - 1), b = ((uintptr_t)p + bytes) & ~(huge - 1);
    if (b <= a)
        return;
    /* Advice only: where the kernel refuses (THP off, an old kernel), nothing changes. */
    (void)madvise((void *)a, b - a, MADV_HUGEPAGE);
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif
    if (populated)
        (void)madvise((void *)a, b - a, MADV_COLLAPSE);
#else
    (void)p;
    (void)bytes;
    (void)populated;
#endif
}
