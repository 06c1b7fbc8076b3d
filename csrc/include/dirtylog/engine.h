/*
 * dirtylog/engine.h: the hot loop of a migration: sending pages over a link while
 * the guest keeps writing.
 *
 * The engine owns a simulated clock. dl_engine_send() walks a list of pages (or a
 * range) in order, in chunks of chunk_pages. For each chunk it first copies the
 * pages' source versions to the destination, or clears their stale bits (the
 * content at the moment it is read for sending), then lets the guest run for the
 * chunk's transfer time: the workload's writes of that guest-time slice go through
 * the tracker (which bumps the source versions, or sets the stale bits). A page sent and then written is sent again in a later
 * round; a page written before its turn is sent once with its newest content.
 *
 * Guest time runs at (1 - throttle) of wall time while the guest runs and stops
 * while it is paused. With cost feedback on, the guest time a vCPU spends in
 * tracking exits (faults, PML-full and ring-full exits, splits, kicks) is taken
 * out of the following slices: a tracker that exits more lets the guest write less.
 * What is owed is running time: with per-vCPU (dirty-limit) throttles each vCPU pays
 * its own out of its own running time, after its throttle, as the global throttle's
 * guest does out of its throttled time (an exit or a kick takes a vCPU while it runs),
 * and its own exits only (KVM's exit takes the vCPU that exits: a ring-full exit and
 * its reap fall on the vCPU whose ring filled); with one guest clock the vCPUs pay the
 * mean of all exits together.
 *
 * Post-copy: after dl_engine_postcopy_begin the guest runs on the destination. The
 * pages it lacks (the stale set) are pushed in page order in the background; an
 * access (a write from the workload or a read from the read stream) to a page the
 * destination lacks is a remote fault: the page is received at once, its link time
 * is served ahead of the push in the next slice, and the vCPU stalls for a round
 * trip plus the transfer of what the channel holds ahead of it (the backlog, see
 * dl_engine_postcopy_set_backlog) and of the page;
 * the push then goes on after the requested page, as QEMU's does. A vCPU whose
 * stalls outlast the slice makes no more accesses in it (they would come after the
 * page arrives, when the push has sent more). Writes on the destination bump the page's version
 * on both sides (the source array then stands for the guest's memory).
 *
 * XBZRLE (once the scan has wrapped): a direct-mapped cache of xbzrle_slots pages
 * (slot = page mod slots, as QEMU's page cache indexes by address). A page found in
 * the cache is sent as a delta whose size is drawn from an exponential distribution
 * with mean xbzrle_ratio of a page (a delta larger than a page overflows and the
 * page goes whole); a miss sends the page whole and caches it, unless its slot holds
 * another page filled or hit within the last 2 syncs (QEMU's CACHED_PAGE_LIFETIME:
 * a fresh page is not evicted). A sync is a dl_engine_dirty_add*, _fill or _harvest
 * call, whether it finds pages or not (QEMU's dirty_sync_count). A
 * zero page sent meanwhile is cached too (as zeros).
 *
 * In clear (manual protect) mode, set a clear mask (the bitmap of the last sync):
 * before the first page of each clear chunk (default 1 GiB) is sent, the engine
 * clears that chunk with the mask, as QEMU does.
 */
#ifndef DIRTYLOG_ENGINE_H
#define DIRTYLOG_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "dirtylog/common.h"
#include "dirtylog/tracker.h"

#ifdef __cplusplus
extern "C" {
#endif

/* DL_CDEF_BEGIN (declarations below are also read by the cffi binding) */

struct dl_workload;

/* Version value of a page the destination does not hold (a macro: ISO C limits
 * enumerators to the range of int). */
#define DL_ABSENT UINT32_C(0xFFFFFFFF)

typedef struct dl_engine_config {
    double bandwidth;        /* link bytes per second (> 0) */
    uint32_t page_bytes;     /* bytes on the wire for a page: page_size + header */
    uint32_t zero_bytes;     /* bytes on the wire for a zero page (header only) */
    uint32_t chunk_pages;    /* pages per send chunk (>= 1) */
    uint32_t feedback;       /* 1: tracking exits take time from the guest */
    double cost_fault;       /* guest seconds per write-protection fault */
    double cost_pml_full;    /* guest seconds per PML-full exit */
    double cost_ring_full;   /* guest seconds per ring-full exit */
    double cost_split;       /* guest seconds per huge block split */
    double cost_kick;        /* guest seconds per vCPU kick */
    double zero_fraction;    /* fraction of pages that are zero before the guest writes them */
    uint64_t zero_seed;      /* which pages are zero */
    uint64_t xbzrle_slots;   /* XBZRLE cache size in pages (0: XBZRLE off) */
    double xbzrle_ratio;     /* mean size of an encoded delta, as a fraction of a page */
    uint64_t work_budget;    /* guest writes (and pages sent) per call at most (0: DL_ENGINE_WORK_BUDGET) */
} dl_engine_config;

/* Default work_budget: a call returns within tens of milliseconds. */
#define DL_ENGINE_WORK_BUDGET (UINT64_C(1) << 22)

typedef struct dl_engine_state {
    double clock;            /* wall (simulated) seconds */
    double guest_clock;      /* guest run time: what workloads see */
    double throttle;         /* 0 .. 1 (1: the guest is paused) */
    double debt;             /* running seconds per vCPU still owed to tracking exits (per-vCPU
                                throttles: their mean) */
    double lost;             /* vCPU-seconds lost to tracking exits so far */
    double carry;            /* link seconds already spent on the next page */
    uint64_t pages_sent;
    uint64_t zero_pages_sent;
    uint64_t bytes_sent;
    uint64_t writes;         /* guest writes applied */
    uint64_t clears;         /* clear-mode chunk clears issued */
    uint64_t xbzrle_pages;   /* pages sent as XBZRLE deltas */
    uint64_t xbzrle_bytes;   /* bytes of those deltas, less the page headers (QEMU's xbzrle-cache bytes) */
    uint64_t xbzrle_misses;  /* pages not in the cache (sent whole, then cached) */
    uint64_t xbzrle_overflows; /* deltas larger than a page (sent whole) */
    uint64_t guest_pending;  /* 1 while a guest slice is only partly applied: see dl_engine_resume */
} dl_engine_state;

typedef struct dl_engine dl_engine;

void dl_engine_config_init(dl_engine_config *cfg);

/* The tracker and workload (NULL: an idle guest) must outlive the engine; the
 * workload must be bound to the tracker's pages and vCPUs. dst_versions (pages
 * entries, set to DL_ABSENT by the caller) receives copies of the tracker's attached
 * source versions; both may be NULL when not verifying. */
int dl_engine_create(const dl_engine_config *cfg, dl_tracker *t, struct dl_workload *w,
                     uint32_t *dst_versions, uint64_t n_dst, dl_engine **out);
/* Frees the engine (NULL is fine). It does not touch the tracker, which may have been
 * destroyed first. */
void dl_engine_destroy(dl_engine *e);

int dl_engine_get_state(const dl_engine *e, dl_engine_state *out);
int dl_engine_set_bandwidth(dl_engine *e, double bandwidth);
int dl_engine_set_throttle(dl_engine *e, double throttle);
/* Dirty-limit: a vCPU's own throttle (0 .. 1), on top of the global one. From the
 * first call on, each vCPU keeps its own guest clock. */
int dl_engine_set_vcpu_throttle(dl_engine *e, uint32_t vcpu, double throttle);
int dl_engine_get_vcpu_clock(const dl_engine *e, uint32_t vcpu, double *clock, double *throttle);
/* Charges guest time for kicks done outside the engine (a harvest's kicks), spread
 * evenly over the vCPUs: each loses vcpu_seconds / vcpus of its running time. */
int dl_engine_charge(dl_engine *e, double vcpu_seconds);
/* The same, vCPU by vCPU: vCPU j loses seconds[j] of its running time (n: the engine's
 * vCPUs). Under per-vCPU throttles each pays its own; with one guest clock the vCPUs
 * pay the total together. */
int dl_engine_charge_vcpus(dl_engine *e, const double *seconds, uint32_t n);

/* Sends pages[*pos .. n) in order (pages == NULL: the range first + *pos .. first + n)
 * until all are sent or the clock reaches `deadline`; *pos advances. zero_pass = 1
 * sends never-written zero pages as headers only (round 0). Returns DL_OK. */
int dl_engine_send(dl_engine *e, const uint64_t *pages, uint64_t first, uint64_t n,
                   uint64_t *pos, double deadline, int zero_pass);

/* Bounded work: no call does more than about work_budget guest writes (or sends more
 * than work_budget pages), so a caller can be interrupted. A call that stops inside a
 * guest slice leaves guest_pending set (dl_engine_get_state); the slice is finished,
 * in the same order and with the same result as in one go, by dl_engine_resume or by
 * the next dl_engine_send/idle/transfer/postcopy_step, which do nothing else until it
 * is. dl_engine_postcopy_begin and dl_engine_verify refuse (DL_ERR_STATE) meanwhile. */
int dl_engine_resume(dl_engine *e);

/* Lets the guest run (or, paused, lets time pass) until `deadline` (finite) with the
 * link idle. After dl_engine_postcopy_begin the guest runs on the destination. */
int dl_engine_idle(dl_engine *e, double deadline);
/* Forgets the partly sent page: call it when the next dl_engine_send starts a new list. */
int dl_engine_reset_carry(dl_engine *e);

/* Extra bytes on the link (device state, protocol): advances the clock by
 * bytes / bandwidth, the guest running as usual. */
int dl_engine_transfer(dl_engine *e, uint64_t bytes, double deadline, uint64_t *remaining);

/* Clear mode: the bitmap of the last sync, used as KVM_CLEAR_DIRTY_LOG's mask, and
 * the clear chunk in pages (a multiple of 64). The words are copied. NULL disables. */
int dl_engine_set_clear_mask(dl_engine *e, const uint64_t *words, size_t nwords, uint64_t chunk_pages);

/* Pages whose newest content the destination lacks; writes the first `cap` of them
 * (in page order) to out. With stale bits kept by the tracker
 * (dl_tracker_stale_start(t, 1) before the first send: nothing sent yet), the
 * pages whose bit is set (every send clears it, every write sets it); otherwise the
 * pages whose destination version differs from the source's (needs versions on
 * both sides). DL_ERR_STATE with neither. */
int dl_engine_verify(const dl_engine *e, uint64_t *out, size_t cap, uint64_t *mismatches);

/* ---- the migration bitmap and QEMU's rate-limited send loop -------------------
 *
 * The engine keeps QEMU's migration bitmap: the dirty pages not sent yet. Syncs
 * (dl_engine_dirty_harvest, or by the caller: harvest the tracker, then
 * dl_engine_dirty_add*) set bits;
 * dl_engine_send_dirty() sends set pages in address order from the scan position,
 * wrapping at the end of memory, clearing each bit as its page is sent.
 *
 * Sending is organised as QEMU's migration thread does it: an iteration sends until
 * the window's byte budget is used (the rate limit: max-bandwidth x window), or for
 * at most `iteration` seconds (MAX_WAIT), or until the bitmap is empty. After an
 * iteration, a window of at least `window` seconds (BUFFER_DELAY) is closed and its
 * counters kept (bytes, length, normal pages, measured bandwidth); a rate-limited
 * iteration first waits, the link idle and the guest running, for its window's end. */
typedef struct dl_engine_counters {
    uint64_t remaining;      /* dirty pages in the migration bitmap */
    uint64_t scan;           /* the next page the scan looks at */
    uint64_t passes;         /* times the scan wrapped at the end of memory */
    uint64_t windows;        /* windows closed */
    uint64_t iterations;     /* iterations ended */
    double window_start;     /* clock at which the current window began */
    uint64_t window_bytes;   /* bytes sent in the current window */
    double bandwidth;        /* bytes/s measured over the last closed window (0 before the first) */
    double last_length;      /* seconds of the last closed window */
    uint64_t last_bytes;     /* bytes sent in it */
    uint64_t last_pages;     /* normal (non-zero, whole) pages sent in it */
} dl_engine_counters;

/* Why dl_engine_send_dirty returned. */
enum { DL_SEND_DEADLINE = 0, DL_SEND_EMPTY = 1, DL_SEND_BELOW = 2 };

int dl_engine_get_counters(const dl_engine *e, dl_engine_counters *out);
/* window and iteration in seconds (> 0); budget: bytes per window (0: no limit). */
int dl_engine_set_rate_limit(dl_engine *e, double window, uint64_t budget, double iteration);
/* Every page dirty (the first pass); the scan starts at page 0. */
int dl_engine_dirty_fill(dl_engine *e);
/* Sets the bits of pages[0 .. n) (any order, duplicates allowed); *added: bits newly set. */
int dl_engine_dirty_add(dl_engine *e, const uint64_t *pages, size_t n, uint64_t *added);
/* The same for a bitmap of nwords words (bit p % 64 of word p / 64). */
int dl_engine_dirty_add_words(dl_engine *e, const uint64_t *words, size_t nwords, uint64_t *added);
/* QEMU's migration_bitmap_sync: harvests the tracker (as dl_tracker_harvest_bitmap: its
 * logs synced, its bitmap taken and cleared) straight into the migration bitmap, word by
 * word, as cpu_physical_memory_sync_dirty_bitmap does; *added: bits newly set. Every
 * harvest counts as a sync for XBZRLE's cache ages, whether it finds pages or not (QEMU's
 * migration_bitmap_sync adds 1 to dirty_sync_count each time). Not in clear
 * mode, whose harvest must also set the clear mask (DL_ERR_MODE); DL_ERR_STATE while the
 * guest lags the clock (dl_engine_catch_up first) or the tracker is not logging. */
int dl_engine_dirty_harvest(dl_engine *e, uint64_t *added);
/* Copies the migration bitmap out (nwords >= (pages + 63) / 64). */
int dl_engine_dirty_get(const dl_engine *e, uint64_t *words, size_t nwords);
int dl_engine_dirty_clear(dl_engine *e);
/* Sends dirty pages (see above) until the clock reaches `deadline`, the bitmap is
 * empty (DL_SEND_EMPTY) or, at the end of an iteration, remaining x page size is
 * below the threshold (DL_SEND_BELOW): `below_bytes` if > 0, else the last window's
 * measured bandwidth x `below_seconds` (0: never). *why says which. The first pass's
 * zero pages and, once the scan has wrapped, XBZRLE apply as configured. A return with
 * guest_pending set (bounded work) is not a deadline: resume, then call again; nor is a
 * return with the clock short of `deadline` (*why DL_SEND_DEADLINE) after about
 * work_budget pages sent and guest writes: call again, as if it had not returned.
 * The guest runs once per segment, not once per chunk: a segment ends at the end of an
 * iteration, after 2^15 sends, or at dl_engine_catch_up; each guest write to a page
 * sent in the segment counts as before or after that send by its place among its vCPU's
 * writes of the segment, spread evenly over the segment's wall time (a send happens at
 * the start of its chunk). The exits of a segment are charged at its end. A return at
 * `deadline` inside an iteration leaves the segment open (the guest lags the clock), so
 * that where a caller's deadlines fall changes nothing. Clear mode and destination
 * versions run the guest per chunk: a chunk that `deadline` cuts is sent on by the next
 * call, and its guest runs once its last page is sent (or at dl_engine_catch_up). */
int dl_engine_send_dirty(dl_engine *e, double deadline, double below_seconds, uint64_t below_bytes, int *why);
/* Runs the guest of send_dirty's open segment up to the clock (bounded work: a return
 * with guest_pending set is resumed with dl_engine_resume). While a segment is open,
 * the calls that run the guest or change its timing (idle, transfer, send, postcopy,
 * verify, set_throttle, set_vcpu_throttle, charge) return DL_ERR_STATE. */
int dl_engine_catch_up(dl_engine *e);
/* Zero-page placement as a bitmap (copied; NULL: the scattered zero_fraction): a page
 * whose bit is set holds zeros until the guest first writes it. */
int dl_engine_set_zero_map(dl_engine *e, const uint64_t *words, size_t nwords);

typedef struct dl_postcopy_state {
    uint64_t remaining;      /* pages the destination still lacks */
    uint64_t requests;       /* remote faults (QEMU's postcopy-requests) */
    uint64_t prepaged;       /* pages sent along with a request (pre-paging) */
    uint64_t pushed;         /* pages sent by the background push */
    uint64_t bytes;          /* bytes sent since post-copy began */
    uint64_t reads;          /* guest reads on the destination */
    uint64_t writes;         /* guest writes on the destination */
    double stall;            /* vCPU-seconds stalled on remote faults */
    double done_at;          /* clock when the last page arrived (0 before) */
} dl_postcopy_state;

/* Switches the engine to post-copy. stale_words: bitmap of the pages the destination
 * lacks (copied). received (pages entries, zeroed by the caller, may be NULL) counts
 * how often each page is received from now on. Reads come from `reads` (NULL: the
 * write workload) at guest time t * read_scale + read_offset (read_scale 0: no reads).
 * prepage: pages after a faulting one sent along with it. */
int dl_engine_postcopy_begin(dl_engine *e, const uint64_t *stale_words, size_t nwords, uint8_t *received,
                             uint64_t n_received, struct dl_workload *reads, double read_scale,
                             double read_offset, double latency, uint32_t prepage);
/* Bytes the channel holds ahead of a requested page while the push runs (at most what
 * the push still has to send): QEMU 7.2 sends requested pages on the one stream, behind
 * what the background push has queued in the socket buffers. 0 (the default): the
 * request goes first (postcopy-preempt's own channel). Any time. */
int dl_engine_postcopy_set_backlog(dl_engine *e, uint64_t bytes);
/* Runs post-copy until every page has arrived or the clock reaches `deadline`. */
int dl_engine_postcopy_step(dl_engine *e, double deadline);
int dl_engine_postcopy_state(const dl_engine *e, dl_postcopy_state *out);

/* DL_CDEF_END */

#ifdef __cplusplus
}
#endif
#endif /* DIRTYLOG_ENGINE_H */
