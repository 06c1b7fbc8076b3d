/* internal.h: helpers shared by the C core's translation units (not installed). */
#ifndef DIRTYLOG_INTERNAL_H
#define DIRTYLOG_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "dirtylog.h"

#define DL_ALWAYS_INLINE static inline __attribute__((always_inline))
#define DL_NOINLINE __attribute__((noinline))
#define DL_LIKELY(x) __builtin_expect(!!(x), 1)
#define DL_UNLIKELY(x) __builtin_expect(!!(x), 0)

#define DL_MAX_PAGES (UINT64_C(1) << 40)

/* Set bits of a word. The wheel targets baseline x86-64 (no POPCNT instruction), where
 * __builtin_popcountll is a call into libgcc: inline bit arithmetic instead. */
DL_ALWAYS_INLINE unsigned dl__popcount64(uint64_t w)
{
#if defined(__POPCNT__) || !(defined(__x86_64__) || defined(__i386__))
    return (unsigned)__builtin_popcountll(w);
#else
    w -= (w >> 1) & UINT64_C(0x5555555555555555);
    w = (w & UINT64_C(0x3333333333333333)) + ((w >> 2) & UINT64_C(0x3333333333333333));
    w = (w + (w >> 4)) & UINT64_C(0x0f0f0f0f0f0f0f0f);
    return (unsigned)((w * UINT64_C(0x0101010101010101)) >> 56);
#endif
}

/* common.c: large arrays read at random (bitmaps of big guests) are backed by 2 MiB
 * pages where the kernel allows it, so that a random write misses no TLB. `populated`:
 * the memory was already written (collapsed in place), else advised before first use. */
void dl__advise_huge(void *p, size_t bytes, int populated);
/* calloc, aligned to 2 MiB and advised so when it is that large (free() releases it). */
void *dl__calloc_big(size_t n, size_t size);

/* The co-located layout of a tracker that keeps stale bits (verification): its word w
 * (pages 64 w .. 64 w + 63) is bits[DL__CO * w] and the stale word of the same pages
 * bits[DL__CO * w + 1], so a write reads and writes one 16-byte pair, in one cache line
 * (a separate stale bitmap cost a second random cache line per write). Without stale
 * bits, word w is bits[w], or in ring mode bits[DL__CO * w] in rounds that lay the live
 * words beside (tracker.c, ring_lay). `stride` below is that multiplier: 1, or DL__CO. */
#define DL__CO 2
/* Stale word w, from the base dl__tracker_stale returns (an lvalue). */
#define DL__STALE(base, w) ((base)[DL__CO * (w)])

/* bitmap.c: the bitmap's word i is bm[stride * i] (stride 1 or DL__CO) */
void dl_bitmap_fill(uint64_t *bm, uint64_t nbits, unsigned stride);
void dl_bitmap_zero(uint64_t *bm, uint64_t nwords, unsigned stride);
size_t dl_bitmap_to_pages(const uint64_t *bm, uint64_t nwords, unsigned stride, uint64_t *out);
size_t dl_bitmap_take_pages(uint64_t *bm, uint64_t nwords, unsigned stride, uint64_t *out);
void dl_bitmap_take_words(uint64_t *bm, uint64_t nwords, unsigned stride, uint64_t *out);
/* Zeroes bm's words into dst by OR; returns the bits newly set in dst. */
uint64_t dl_bitmap_take_or(uint64_t *bm, uint64_t nwords, unsigned stride, uint64_t *dst);
uint64_t dl_bitmap_count(const uint64_t *bm, uint64_t nwords);

/* tracker.c: for fused generators and the engine, which validate on their own. */
void dl__tracker_write_unchecked(dl_tracker *t, uint32_t vcpu, const uint64_t *pages, size_t n);
/* dl_tracker_harvest_bitmap's harvest ORed straight into dst (tracker's bitmap_words words),
 * not through a copy; *added: the bits newly set in dst. Not in clear mode (DL_ERR_MODE). */
int dl__tracker_harvest_or(dl_tracker *t, uint64_t *dst, uint64_t *added);
uint64_t dl__tracker_pages(const dl_tracker *t);
uint32_t dl__tracker_vcpus(const dl_tracker *t);
uint32_t dl__tracker_page_size(const dl_tracker *t);
uint32_t *dl__tracker_versions(const dl_tracker *t);
/* The base of the tracker's stale words (DL__STALE(base, w) is word w), NULL if it keeps none. */
uint64_t *dl__tracker_stale(const dl_tracker *t);
const dl_tracker_stats *dl__tracker_stats(const dl_tracker *t);
uint32_t dl__tracker_mode(const dl_tracker *t);

/* workload.c: resumable application of a slice's writes, in bounded pieces. */
struct dl_workload;
typedef struct dl__wl_cursor {
    size_t comp;     /* component being fed */
    uint64_t done;   /* writes of that component already fed in this slice */
} dl__wl_cursor;
/* Receives n pages of vCPU `vcpu`'s writes (in stream order). */
typedef void (*dl__wl_sink)(void *ctx, uint32_t vcpu, const uint64_t *pages, size_t n);
/* Feeds vCPU `vcpu`'s writes of [t0, t1) to `sink`, in the order dl_workload_run applies
 * them, from *cur on, stopping once `budget` writes were fed (*fed gets how many).
 * Returns 1 when the slice is complete (*cur is then reset), 0 when it stopped early:
 * call again with the same slice and cursor to go on. The counts must have been
 * checked with dl_workload_count. */
int dl__workload_feed(const struct dl_workload *w, uint32_t vcpu, double t0, double t1, dl__wl_cursor *cur,
                      uint64_t budget, dl__wl_sink sink, void *ctx, uint64_t *fed);
/* Pages of one component and vCPU generated ahead: writes k .. k + n - 1. A cache of a
 * pure function of the write index (the counter-based streams), so any slicing reads
 * the same pages; it serves short slices (a few writes per vCPU and chunk) without a
 * generation call each. */
#define DL__WL_AHEAD 64
typedef struct dl__wl_ahead {
    uint64_t k, n;
    uint64_t pages[DL__WL_AHEAD];
} dl__wl_ahead;
/* Called on pages generated ahead (e.g. to prefetch what their writes will touch). */
typedef void (*dl__wl_prefetch)(void *ctx, const uint64_t *pages, size_t n);
/* Where the pages given to a sink sit in their component's stream: writes k .. k + n - 1
 * of the slice's writes k0 .. k1 - 1 (so a sink can place each write in the slice). */
typedef struct dl__wl_pos {
    uint64_t k0, k1, k;
} dl__wl_pos;
/* dl__workload_feed with `ahead` (one per component of the workload, for this vCPU; NULL:
 * none): the same pages in the same order; `pos` (if not NULL) is set before each sink call. */
int dl__workload_feed_ahead(const struct dl_workload *w, uint32_t vcpu, double t0, double t1, dl__wl_cursor *cur,
                            uint64_t budget, dl__wl_sink sink, void *ctx, uint64_t *fed, dl__wl_ahead *ahead,
                            dl__wl_prefetch prefetch, void *pctx, dl__wl_pos *pos);
size_t dl__workload_ncomp(const struct dl_workload *w);


#endif
