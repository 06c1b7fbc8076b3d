/*
 * dirtylog/realtrack.h: dirty-page tracking of real memory in this process, with the
 * kernel's own write tracking (Linux 6.7+): userfaultfd write protection in async mode
 * (UFFD_FEATURE_WP_ASYNC with UFFD_FEATURE_WP_UNPOPULATED) marks a page written
 * without a fault handler, and the PAGEMAP_SCAN ioctl on /proc/self/pagemap returns
 * the written pages of a range and write-protects them again in the same call
 * (PM_SCAN_WP_MATCHING): what KVM_GET_DIRTY_LOG does for a guest, for a process.
 *
 * Semantics:
 *   dl_rt_register()  registers a page-aligned range of private anonymous (or shmem)
 *                     memory for async write protection. Until its first harvest every
 *                     page of the range reads as written.
 *   dl_rt_harvest()   returns the pages of a registered range written since they were
 *                     last protected, as page offsets from the start of the range in
 *                     increasing order, and write-protects exactly those pages again.
 *                     The test-and-protect is atomic per page (under the page-table
 *                     lock), so a write racing a harvest is reported by this harvest
 *                     or by the next one, never lost. With DL_RT_FIRST (a range's first
 *                     harvest) the populated pages are reported (present or swapped,
 *                     not the shared zero page of a page only read) and every page of
 *                     the range, populated or not, is protected.
 *   Documented cases: a page of private anonymous memory discarded with MADV_DONTNEED
 *   (or MADV_FREE, once reclaimed) reads as written once: its content did change (to
 *   zeros); shared memory keeps its protection through a discard and is not reported.
 *   A transparent huge page is split on its first write and reported per 4 KiB page.
 *
 * A dl_rt handle holds one userfaultfd and one descriptor of /proc/self/pagemap. It is
 * not thread-safe: call it from one thread at a time (the tracked memory may be written
 * by any thread). Closing the handle unregisters every range it registered. On other
 * operating systems every call returns DL_ERR_UNSUPPORTED.
 *
 * Another process (dl_rt_open_pid, x86-64 Linux only): userfaultfd registration acts on
 * the calling process's own memory, so the handle injects it into the target with
 * ptrace, in the spirit of CRIU's parasite code: it stops the target's main thread
 * (PTRACE_SEIZE + PTRACE_INTERRUPT), saves its registers and signal mask, has it run
 * userfaultfd(UFFD_USER_MODE_ONLY | O_CLOEXEC | O_NONBLOCK), UFFDIO_API with WP_ASYNC
 * and WP_UNPOPULATED (once) and UFFDIO_REGISTER (mode WP) for each range (the ioctl
 * arguments written below the red zone of its stack), restores it and detaches. The
 * userfaultfd lives on in the target (one more open descriptor there, close-on-exec);
 * harvests are PAGEMAP_SCAN on /proc/PID/pagemap, which acts on the target's memory,
 * without stopping it. A system call the target was blocked in is restarted, as after
 * a signal without handler. dl_rt_close() closes the injected descriptor (if the target
 * still runs), which unregisters every range. Needs ptrace rights over the target
 * (same user and kernel.yama.ptrace_scope <= 1 as its parent, or CAP_SYS_PTRACE); a
 * target that exits makes the calls fail with DL_ERR_SYSTEM and ESRCH.
 *
 * Errors: DL_ERR_UNSUPPORTED (no userfaultfd, no WP_ASYNC or no PAGEMAP_SCAN),
 * DL_ERR_PERM (userfaultfd refused: vm.unprivileged_userfaultfd = 0 without
 * CAP_SYS_PTRACE, or a seccomp filter), DL_ERR_INVALID (a range not page-aligned, empty,
 * or not registrable: file-backed private memory, ...), DL_ERR_STATE (a harvested range
 * not registered with this handle), DL_ERR_SYSTEM (another failure). Every fallible call
 * takes an optional int *sys_errno that receives the errno of the failed system call
 * (0 when none failed).
 */
#ifndef DIRTYLOG_REALTRACK_H
#define DIRTYLOG_REALTRACK_H

#include <stddef.h>
#include <stdint.h>

#include "dirtylog/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* DL_CDEF_BEGIN (declarations below are also read by the cffi binding) */

typedef struct dl_rt dl_rt;

/* Features found by dl_rt_probe (bits of *features). */
enum {
    DL_RT_HAVE_USERFAULTFD = 1,  /* userfaultfd(2) exists and this process may use it */
    DL_RT_HAVE_WP_ASYNC = 2,     /* UFFD_FEATURE_WP_ASYNC and UFFD_FEATURE_WP_UNPOPULATED */
    DL_RT_HAVE_PAGEMAP_SCAN = 4, /* the PAGEMAP_SCAN ioctl on /proc/self/pagemap */
    DL_RT_HAVE_ALL = 7           /* everything dl_rt_open needs */
};

/* Flags of dl_rt_harvest. */
enum {
    DL_RT_FIRST = 1,             /* a range's first harvest: report its populated pages, protect all */
    DL_RT_SKIP_UNREGISTERED = 2  /* skip parts of the range not registered (else DL_ERR_STATE) */
};

/* Which features the running kernel offers this process. Returns DL_OK with the bits
 * found, whatever they are; *sys_errno (optional) receives the errno of the first
 * missing feature's failed call. */
int dl_rt_probe(uint32_t *features, int *sys_errno);

/* Bytes per page of the running kernel (4096 on x86-64). */
uint64_t dl_rt_page_size(void);

int dl_rt_open(dl_rt **out, int *sys_errno);
void dl_rt_close(dl_rt *rt);

/* Register [addr, addr + len) (page-aligned, len > 0) for async write tracking. */
int dl_rt_register(dl_rt *rt, uint64_t addr, uint64_t len, int *sys_errno);

/* Unregister [addr, addr + len): its pages become writable without tracking. */
int dl_rt_unregister(dl_rt *rt, uint64_t addr, uint64_t len, int *sys_errno);

/* Harvest [addr, addr + len) (see the semantics above) into out[0 .. cap): page offsets
 * from addr. *count receives the number written. The scan stops early when out is full:
 * *walk_end (optional) receives the address where it stopped (addr + len when the whole
 * range was scanned); pages from there on were not harvested, nor re-protected. */
int dl_rt_harvest(dl_rt *rt, uint64_t addr, uint64_t len, uint32_t flags, uint64_t *out, size_t cap,
                  size_t *count, uint64_t *walk_end, int *sys_errno);

/* The parts of [addr, addr + len) not registered for async write tracking (by any
 * handle), as pairs (start, end) of addresses in out[0 .. 2 * cap_pairs); *count
 * receives the number of pairs. DL_ERR_BUFFER if more than cap_pairs (then *count is
 * cap_pairs and the first ones were written). */
int dl_rt_unregistered(dl_rt *rt, uint64_t addr, uint64_t len, uint64_t *out, size_t cap_pairs, size_t *count,
                       int *sys_errno);

/* A handle on process pid (see "Another process" above): opens /proc/PID/pagemap; the
 * first registration injects the userfaultfd. DL_ERR_UNSUPPORTED on other than x86-64
 * Linux; DL_ERR_SYSTEM with ESRCH for no such process; DL_ERR_PERM without the rights. */
int dl_rt_open_pid(dl_rt **out, int pid, int *sys_errno);

/* Register n ranges (pairs start, end of page-aligned addresses in pairs[0 .. 2n)) in one
 * go: for a handle on another process one stop of the target for all of them.
 * status[i] receives each range's outcome (DL_OK, DL_ERR_INVALID for a range that is not
 * registrable or vanished, ...); the return value is the session's (DL_OK, or the error
 * that stopped it, e.g. DL_ERR_SYSTEM with ESRCH when the target exited). */
int dl_rt_register_ranges(dl_rt *rt, const uint64_t *pairs, size_t n, int *status, int *sys_errno);

/* Whether a line of /proc/PID/maps (len bytes, without or with its newline) is memory a
 * recorder tracks: private writable anonymous memory ("rw?p", inode 0: heap, anonymous
 * mmaps, thread stacks, .bss), not a special mapping other than [heap], [stack...] and
 * [anon...]. Returns 1 and its bounds in *start, *end; 0 otherwise. The one rule of both
 * recorders (the preloaded library and dirtylog record --pid). */
int dl_rt_maps_eligible(const char *line, size_t len, uint64_t *start, uint64_t *end);

/* DL_CDEF_END */

#ifdef __cplusplus
}
#endif
#endif /* DIRTYLOG_REALTRACK_H */
