/*
 * dirtylog/tracker.h: a stage-2 page table under dirty logging, as KVM keeps it.
 *
 * Semantics (the numpy model in dirtylog/reference.py follows the same text):
 *
 * Every 4 KiB guest page is in one of two states while logging: *armed* (the next
 * write to it is recorded: write-protected in the WP, ring and clear modes, EPT
 * dirty bit clear in PML mode) or *recorded* (writable / D bit set: later writes
 * cost nothing). A write to an armed page records it:
 *
 *   DL_MODE_WP    a write-protection fault (counted) marks it dirty in the bitmap.
 *   DL_MODE_PML   no exit: the page is appended to the writing vCPU's PML log,
 *                 filled from index pml_entries-1 down to 0. When a new page must
 *                 be logged and the log is full (index -1), the vCPU takes a
 *                 "PML full" exit (counted), the log is drained into the dirty
 *                 bitmap and the index reset, then the page is logged.
 *   DL_MODE_RING  the page is pushed to the writing vCPU's dirty ring. When a push
 *                 brings the ring to its soft limit (ring_entries - DL_RING_RESERVED) the vCPU
 *                 takes a "ring full" exit (counted) and the rings are reaped at once,
 *                 as QEMU's kvm_cpu_exec does: every vCPU's ring (only the exiting
 *                 one's while dirty-limit serves: dl_tracker_set_reap_own), its entries
 *                 collected in order into the dirty bitmap, then reset, which re-arms
 *                 their pages.
 *                 (KVM on x86 logs the page in the PML log first and pushes the whole
 *                 log into the ring at the vCPU's next VM exit, a PML-full one or any
 *                 other; the vCPU leaves at its next entry once the ring holds its
 *                 soft limit or more, so KVM's exit comes at the first flush at or past
 *                 it: up to 511 entries later, ring_entries - 512 when PML-full exits
 *                 are the only ones. dirtylog pushes each page at once, exits at the
 *                 soft limit exactly and counts no PML-full exits in this mode.)
 *   DL_MODE_CLEAR write protection with KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2: as WP,
 *                 but a harvest neither clears nor re-arms; dl_tracker_clear() does.
 *
 * Harvest (KVM_GET_DIRTY_LOG / ring collection + KVM_RESET_DIRTY_RINGS):
 *   PML and ring mode first kick every vCPU (counted per vCPU; QEMU's
 *   kvm_dirty_ring_flush kicks every vCPU out before it reaps). PML then drains each
 *   log; ring collects every ring, vCPU by vCPU and entry by entry, and resets it. Then the
 *   dirty bitmap is snapshotted and cleared word by word, exactly the pages whose
 *   bits were set are re-armed, and one TLB flush is counted if any were. Clear
 *   mode returns the set and leaves it, and its pages, as they are.
 *
 * Huge pages (DL_HUGE_LAZY / DL_HUGE_EAGER): memory is mapped in blocks of 512
 * pages (the last one may be partial). Lazy: at start every block is write-protected
 * whole (also in PML mode). The first write to a protected block while logging is a
 * fault (counted) that splits it (counted) and records the written page directly
 * (into the bitmap, or onto the ring in ring mode: the fault path does not use the
 * PML log); the block's other pages are then armed one by one. Eager: every block
 * is split at start (counted). Stop collapses the blocks again.
 *
 * Clear mode with initially_set: at start every page is dirty and nothing is
 * protected (blocks stay mapped huge and writable). dl_tracker_clear() clears and
 * re-arms only pages whose bits were set (and, with a mask, set in the mask too);
 * a block in which it clears a page is write-protected whole (lazy) or split
 * (eager, counted) at that moment.
 *
 * Writes while not logging change nothing but the write counters (and the page
 * versions and stale bits, when attached or kept). Stop re-enables writes everywhere and drops every
 * pending record: nothing is reported after a stop.
 *
 * Threads: calls on one dl_tracker (including the fused workload runs and an
 * engine's calls that write into it) must not overlap; serialize them. Distinct
 * trackers are independent. The Python Tracker holds a lock around its calls.
 */
#ifndef DIRTYLOG_TRACKER_H
#define DIRTYLOG_TRACKER_H

#include <stddef.h>
#include <stdint.h>

#include "dirtylog/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* DL_CDEF_BEGIN (declarations below are also read by the cffi binding) */

typedef enum dl_mode {
    DL_MODE_WP = 0,
    DL_MODE_PML = 1,
    DL_MODE_RING = 2,
    DL_MODE_CLEAR = 3
} dl_mode;

typedef enum dl_huge {
    DL_HUGE_NONE = 0,
    DL_HUGE_LAZY = 1,
    DL_HUGE_EAGER = 2
} dl_huge;

/* Limits checked by dl_tracker_create. */
enum {
    DL_BLOCK_PAGES = 512,           /* pages in one huge block (2 MiB of 4 KiB pages) */
    DL_MAX_VCPUS = 4096,
    DL_PML_MIN_ENTRIES = 1,
    DL_PML_MAX_ENTRIES = 65536,      /* hardware has 512; larger logs are for experiments */
    DL_PML_LOG_ENTRIES = 512,        /* the hardware's PML log (PML_LOG_NR_ENTRIES): the default */
    DL_RING_RSVD_ENTRIES = 64,       /* KVM_DIRTY_RING_RSVD_ENTRIES */
    /* A dirty ring's entries beyond its soft limit, KVM's kvm_dirty_ring_get_rsvd_entries() on x86
       with PML: KVM_DIRTY_RING_RSVD_ENTRIES + kvm_cpu_dirty_log_size() (a full PML log, flushed
       into the ring at a VM exit after the limit is reached). kvm_dirty_ring_alloc sets soft_limit =
       size - this; the vCPU leaves for userspace at its next entry once that many are used. */
    DL_RING_RESERVED = DL_RING_RSVD_ENTRIES + DL_PML_LOG_ENTRIES,
    DL_RING_MIN_ENTRIES = 1024,      /* the least power of two above DL_RING_RESERVED, what KVM takes
                                        (kvm_vm_ioctl_enable_dirty_log_ring); QEMU suggests it as
                                        dirty-ring-size's minimum */
    DL_RING_MAX_ENTRIES = 65536,     /* KVM_DIRTY_RING_MAX_ENTRIES */
    DL_PAGE_SIZE_MIN = 512,          /* page_size: a power of two in [MIN, MAX] bytes */
    DL_PAGE_SIZE_MAX = 1048576
};

typedef struct dl_tracker_config {
    uint64_t pages;        /* guest pages, at least 1 and at most 2^40 */
    uint32_t mode;         /* dl_mode */
    uint32_t vcpus;        /* 1 .. DL_MAX_VCPUS */
    uint32_t page_size;    /* bytes per page: a power of two from 512 to 1 MiB (reporting only) */
    uint32_t huge;         /* dl_huge */
    uint32_t pml_entries;  /* PML log entries per vCPU (default 512) */
    uint32_t ring_entries; /* dirty ring entries per vCPU, power of two (default 4096) */
    uint32_t initially_set;/* clear mode only: the bitmap starts all ones */
    uint32_t reserved;     /* must be 0 */
} dl_tracker_config;

/* One dirty ring entry, laid out as KVM's struct kvm_dirty_gfn. */
typedef struct dl_ring_entry {
    uint32_t flags;   /* DL_RING_DIRTY, then DL_RING_RESET once collected */
    uint32_t slot;    /* always 0: the simulator has one memory slot */
    uint64_t offset;  /* page index */
} dl_ring_entry;

enum { DL_RING_DIRTY = 1, DL_RING_RESET = 2 };

typedef struct dl_tracker_stats {
    uint64_t writes;          /* guest writes seen, logging or not */
    uint64_t faults;          /* write-protection faults (incl. huge-block faults) */
    uint64_t pml_full_exits;
    uint64_t ring_full_exits;
    uint64_t kicks;           /* vCPU kicks before a PML or ring harvest */
    uint64_t splits;          /* huge blocks split */
    uint64_t harvests;
    uint64_t harvested_pages; /* sum of the sizes of every harvest's result */
    uint64_t tlb_flushes;     /* flushes after re-arming pages */
    uint64_t cleared_pages;   /* pages re-armed by dl_tracker_clear */
    uint64_t pml_logged;      /* PML log entries written */
    uint64_t ring_pushed;     /* ring entries pushed */
    uint64_t ring_reaped;     /* ring entries collected and reset */
    uint64_t dirty_pages;     /* pages dirty now (the harvest's size if nothing pending in rings) */
} dl_tracker_stats;

typedef struct dl_vcpu_stats {
    uint64_t writes;
    uint64_t faults;
    uint64_t pml_full_exits;
    uint64_t ring_full_exits;
    uint64_t kicks;
    uint64_t dirtied;         /* pages this vCPU newly recorded (fault, PML entry or ring push) */
    int64_t pml_index;        /* next free PML slot; -1 when full (PML mode) */
    uint64_t ring_used;       /* entries in the ring not yet collected (ring mode) */
} dl_vcpu_stats;

typedef struct dl_tracker dl_tracker;

/* Fills cfg with the defaults for a guest of `pages` pages: WP mode, 1 vCPU,
 * 4096-byte pages, no huge pages, 512 PML entries, 4096 ring entries. */
void dl_tracker_config_init(dl_tracker_config *cfg, uint64_t pages);

/* Creates a tracker; *out is NULL on failure. Not logging until dl_tracker_start. */
int dl_tracker_create(const dl_tracker_config *cfg, dl_tracker **out);
void dl_tracker_destroy(dl_tracker *t); /* NULL is fine */

/* Bytes of state the tracker holds (bitmaps, blocks, logs and rings). It does not change
 * with the writes it is given: a large write call (32768 pages or more) allocates an undo
 * buffer for the call only (a copy of the bitmap, with the stale bits if kept, or a
 * bit per write, plus a log or ring) and frees it before it returns. */
uint64_t dl_tracker_memory_bytes(const dl_tracker *t);
int dl_tracker_get_config(const dl_tracker *t, dl_tracker_config *out);

/* Starts dirty logging (DL_ERR_STATE if already logging). */
int dl_tracker_start(dl_tracker *t);
/* Stops dirty logging and drops everything pending (DL_ERR_STATE if not logging). */
int dl_tracker_stop(dl_tracker *t);
int dl_tracker_is_logging(const dl_tracker *t);

/* A batch of guest writes by one vCPU. The batch is checked first: on a page index
 * >= pages (or negative, for the signed variants) it returns DL_ERR_RANGE, stores the
 * position of the first bad element in *bad (if bad is not NULL) and changes nothing.
 * A bad vcpu gives DL_ERR_RANGE with *bad = SIZE_MAX. */
int dl_tracker_write(dl_tracker *t, uint32_t vcpu, const uint64_t *pages, size_t n, size_t *bad);
int dl_tracker_write_i64(dl_tracker *t, uint32_t vcpu, const int64_t *pages, size_t n, size_t *bad);
int dl_tracker_write_u32(dl_tracker *t, uint32_t vcpu, const uint32_t *pages, size_t n, size_t *bad);
int dl_tracker_write_i32(dl_tracker *t, uint32_t vcpu, const int32_t *pages, size_t n, size_t *bad);

/* Upper bound on the size of the next harvest, without side effects (exact
 * except in ring mode, where entries still in the rings may repeat). */
uint64_t dl_tracker_pending(const dl_tracker *t);

/* Harvests the pages dirtied since the previous harvest (or since start) into `out`
 * in increasing order and stores their number in *count. If `cap` is too small it
 * returns DL_ERR_BUFFER with the needed size in *count and harvests nothing (the
 * sync step, a drain of logs and rings, has happened and is harmless).
 * DL_ERR_STATE when not logging. */
int dl_tracker_harvest(dl_tracker *t, uint64_t *out, size_t cap, size_t *count);

/* Kicks every vCPU and collects its log into the dirty bitmap without harvesting it:
 * PML logs drained, dirty rings collected and reset (their pages armed again), as
 * QEMU's kvm_dirty_ring_flush does in a global dirty-log sync that is not the
 * migration's own (dirty-limit's rate thread). The pages wait in the bitmap for the
 * next harvest. Nothing to do in wp and clear modes. DL_ERR_STATE when not logging. */
int dl_tracker_flush(dl_tracker *t);

/* Ring mode: which rings a ring-full exit reaps. By default (reap_own 0) every vCPU's, as
 * QEMU's kvm_cpu_exec does on KVM_EXIT_DIRTY_RING_FULL (kvm_dirty_ring_reap(kvm_state, NULL),
 * then KVM_RESET_DIRTY_RINGS); with reap_own nonzero only the exiting vCPU's, as QEMU does
 * while dirty-limit is in service (kvm_dirty_ring_reap(kvm_state, cpu)), so that each vCPU
 * fills its own ring and sleeps. May change at any time; DL_ERR_MODE in other modes.
 * dl_tracker_reap_own returns the setting (0 or 1), or DL_ERR_INVALID without a tracker. */
int dl_tracker_set_reap_own(dl_tracker *t, int reap_own);
int dl_tracker_reap_own(const dl_tracker *t);

/* The same harvest as packed 64-bit words: bit (p % 64) of word p / 64. `nwords`
 * must be at least dl_tracker_bitmap_words(); *count receives the number of pages. */
int dl_tracker_harvest_bitmap(dl_tracker *t, uint64_t *words, size_t nwords, size_t *count);
size_t dl_tracker_bitmap_words(const dl_tracker *t);

/* Clear mode only (DL_ERR_MODE otherwise), while logging: clears and re-arms the
 * pages in [first, first + count) whose bits are set and, if mask is not NULL, whose
 * bits are set in mask too (mask word i covers pages first + 64 i ...; mask_words
 * must cover the range). first must be a multiple of 64, and count too unless the
 * range ends at the last page. *cleared (may be NULL) gets the number re-armed. */
int dl_tracker_clear(dl_tracker *t, uint64_t first, uint64_t count,
                     const uint64_t *mask, size_t mask_words, uint64_t *cleared);

int dl_tracker_get_stats(const dl_tracker *t, dl_tracker_stats *out);
int dl_tracker_get_vcpu_stats(const dl_tracker *t, uint32_t vcpu, dl_vcpu_stats *out);

/* Copies the live entries of a vCPU's PML log (the most recent first, as the
 * hardware fills it downwards) or dirty ring (oldest first). *count gets how many
 * there are; DL_ERR_BUFFER if cap is smaller. DL_ERR_MODE in the other modes. */
int dl_tracker_pml_log(const dl_tracker *t, uint32_t vcpu, uint64_t *out, size_t cap, size_t *count);
int dl_tracker_ring_entries(const dl_tracker *t, uint32_t vcpu, dl_ring_entry *out, size_t cap, size_t *count);

/* Page versions for end-to-end verification: once attached, every write (logging
 * or not) increments versions[page]. The array belongs to the caller, must hold
 * at least `pages` elements and outlive the tracker or a detach (NULL, 0). */
int dl_tracker_attach_versions(dl_tracker *t, uint32_t *versions, uint64_t n);

/* Stale bits for end-to-end verification (1 bit per page instead of versions' 32),
 * kept by the tracker itself, in the same cache lines as its own bits (so that a write
 * touches one line, not two; without them the tracker's layout and speed are unchanged).
 * While they are kept, every write (logging or not) sets its page's stale bit, bit
 * p % 64 of stale word p / 64; the migration engine clears a page's bit when it sends
 * the page, so a bit still set at the end is a page whose newest content the
 * destination lacks.
 *
 * dl_tracker_stale_start: keeps them from now on, every bit (including those past the
 *   last page, which nothing else touches) set to `initial`: 0 (no page stale) or 1
 *   (every page stale: the destination holds nothing yet). Called while they are kept,
 *   it resets them. DL_ERR_INVALID for another `initial`; DL_ERR_NOMEM (nothing
 *   changed) if the larger bitmap cannot be allocated.
 * dl_tracker_stale_stop: drops them (DL_OK if none are kept). DL_ERR_NOMEM: kept still.
 * dl_tracker_stale_get: copies stale words [first, first + nwords) to `out`.
 * dl_tracker_stale_set: replaces stale words [first, first + nwords) with `words` (for
 *   tests, and for a caller's own bookkeeping; an engine running on the tracker then
 *   sees them as they are).
 * get and set: DL_ERR_STATE when no stale bits are kept, DL_ERR_RANGE when the words
 * go past dl_tracker_bitmap_words(), DL_ERR_INVALID for a NULL buffer with nwords > 0.
 * dl_tracker_memory_bytes() counts them (a word per 64 pages). */
int dl_tracker_stale_start(dl_tracker *t, uint32_t initial);
int dl_tracker_stale_stop(dl_tracker *t);
int dl_tracker_stale_get(const dl_tracker *t, uint64_t first, uint64_t *out, size_t nwords);
int dl_tracker_stale_set(dl_tracker *t, uint64_t first, const uint64_t *words, size_t nwords);

/* Fault injection for tests: the next harvest silently drops `page` from its
 * result (its bit is cleared as if reported). UINT64_MAX disarms it. */
int dl_tracker_inject_drop(dl_tracker *t, uint64_t page);

/* DL_CDEF_END */

#ifdef __cplusplus
}
#endif
#endif /* DIRTYLOG_TRACKER_H */
