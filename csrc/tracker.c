/*
 * tracker.c: the dirty-logging page table (see include/dirtylog/tracker.h).
 *
 * Representation. One bit per page, `bits`: in WP, PML and clear modes it is the
 * page's "recorded" state, which is at once the dirty bitmap and the inverse of
 * write protection (KVM re-protects exactly the pages whose dirty bits it clears,
 * so while logging a page is writable iff its bit is set). In PML mode it is the
 * EPT D bit; pages sitting in a PML log already have it set, so draining a log into
 * the dirty bitmap changes no bit and the logs only carry the exits' accounting.
 * In ring mode a page has two bits: `bits` says which pages were pushed to a ring
 * since the last harvest (collected, or still in a ring: this is the dirty bitmap
 * a harvest takes, once every ring is collected), `live` which of them are live in
 * a ring (pushed, not yet reset: KVM's write protection lifted). Round by round the
 * live words lie apart from the bits, so that `bits` alone is as dense as the bare
 * bitmap (first writes touch no live word; interleaved, they touch twice the lines),
 * or beside them in one cache line, after a round whose writes needed them, when the
 * bitmaps outgrow the cache (see ring_lay). A
 * write to a page whose first bit is clear is a push
 * (one test-and-set and one entry store); a page whose first bit is set is pushed
 * again only if it is not live (collected and reset since). The live bits are kept
 * only while `live_on`: they are needed only when a write finds a page's first bit
 * set, so a ring is reaped without touching any page while they are not kept (its
 * pages stay set as collected; `ring_dups`, the pushes of pages collected before,
 * says how many are new), and they are built from the rings' entries when a write
 * first needs them, then set by every push and cleared by every reset until no
 * entry is live (a harvest, or a reap that empties the last ring). A stream of
 * first writes never builds them. Huge blocks have one state byte each.
 *
 * A ring holds only the entries' page offsets (8 bytes, appended like a PML log
 * entry); dl_tracker_ring_entries() presents them as KVM's 16-byte entries. Only
 * live entries are ever read, so a reset entry needs no flag store.
 *
 * Verification marks (kept for the migration engine): stale bits, one per page, set
 * by every write (logging or not; the engine clears a page's bit when it sends the
 * page), and per-page write counts (versions, the caller's array). Neither depends on
 * the tracker's own bits. The stale bits are the tracker's own words, co-located
 * with its bits (internal.h: word w at bits[2 w], the stale word of the same pages
 * at bits[2 w + 1]), so that a write touches one cache line, not two (a C harness:
 * 2.74-2.84 ns a write for the tracker's bits alone, 4.94-5.49 ns with a separate
 * stale bitmap, 3.35-3.63 ns with the stale word in the tracker word's line); without
 * stale bits the layout is the plain bitmap (`stride` 1), and every loop over the
 * bitmap is specialized for the two strides. The write loop keeps the stale word in
 * a register beside `cur`, and sets the bit on every write: in the line the write
 * touches anyway, a store skipped where the bit is known to be set already gains
 * nothing (an engine's "stale floor" did so for the pages not sent yet in the first
 * pass, with a separate stale bitmap; with this layout it cost more than it saved:
 * perf, `simulate` of bench_engine.py's case, the write loop 176-196 ms a run with it,
 * 148-177 ms without).
 *
 * Hot loops are specialized per mode, per huge-page setting, per attached marks
 * (stale bitmap, versions) and per prefetching (bitmaps over DL_PF_MIN_BYTES)
 * through always-inlined templates; they allocate nothing. First writes in ring mode
 * (while no live bits are kept) and PML mode run in a loop of their own (fresh_tmpl),
 * one test-and-set and one entry store a write. Large batches of the
 * public write calls have their indices checked by the same loops as they read
 * them, with an undo for a bad one (write_checked).
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

enum { BLK_HUGE_RW = 0, BLK_PROT = 1, BLK_SPLIT = 2 };

typedef struct vcpu_counters {
    uint64_t writes, faults, pml_full_exits, ring_full_exits, kicks, dirtied;
} vcpu_counters;

struct dl_tracker {
    dl_tracker_config cfg;
    uint64_t pages;
    uint64_t nwords;
    uint64_t nblocks;
    int logging;
    uint32_t soft_limit;
    uint64_t *bits;         /* word w at bits[stride * w]; stride DL__CO: with the stale or live words */
    unsigned stride;
    uint64_t *live;         /* ring mode: live word w at live[lstride * w], kept only while live_on (ring_lay) */
    unsigned lstride;       /* DL__CO: live words beside the bits (bits + 1); 1: apart */
    uint64_t *live_own;     /* ring mode with stale words: the live bits' own bitmap, else NULL */
    int live_on;
    int live_used;          /* a scattered batch built the live bits since the last harvest (ring_lay) */
    int reap_own;           /* ring mode: a ring-full exit reaps only its own vCPU's ring (ring_full) */
    uint8_t *blk;           /* huge pages only */
    uint64_t *pml;          /* vcpus * (pml_entries + 1): slot 0 of each log is scratch */
    int64_t *pml_idx;       /* per vCPU */
    uint64_t *ring;         /* vcpus * ring_entries page offsets (KVM's entries without flags) */
    uint32_t *ring_used;    /* per vCPU */
    uint32_t *ring_dups;    /* per vCPU: entries in its ring whose page was collected before */
    vcpu_counters *vc;
    dl_tracker_stats st;
    uint32_t *versions;
    uint64_t *stale;        /* verification: bits + 1 while stale bits are kept (DL__STALE), or NULL */
    uint64_t drop_page;
    uint64_t *undo;         /* checked writes of large batches, during the call: see write_checked */
    int undo_live;          /* during such a call: its copy holds the live words (write_checked) */
};

/* Words of `bits`: room for a second word beside each in ring mode (its live words, see
 * ring_lay) and with stale words (DL__CO, internal.h). */
static uint64_t bits_words(const dl_tracker *t)
{
    return t->nwords * (t->cfg.mode == DL_MODE_RING || t->stale ? DL__CO : 1);
}

/*
 * Ring mode's live words, without stale words: the 2 nwords words of `bits` hold the
 * bits and the live words laid out apart (word w at bits[w], its live word at
 * bits[nwords + w]) or beside each other (bits[2 w], bits[2 w + 1]: one 16-byte pair in
 * one cache line). Beside, a write whose page the live bits decide touches one cache
 * line instead of two, and a reap resets its entries in the lines their pushes touched;
 * apart, the bits alone are as dense as the bare bitmap, which first writes (that never
 * read a live word) need: beside, they touch twice the lines. A harvest, after which
 * every word is zero, lays the next round out beside if the bitmaps outgrow the cache
 * (DL_PF_MIN_BYTES) and in the round just harvested a scattered batch (the flat write
 * loop) built the live bits (a write found its page pushed before), else apart: sequential
 * streams ran slower beside (docs/performance.rst). Only the speed depends on it.
 * With stale words (DL__CO pairs of bits and stale words) the live bits have a bitmap
 * of their own.
 */
static void ring_lay(dl_tracker *t, int beside)
{
    t->stride = beside ? DL__CO : 1;
    t->live = beside ? t->bits + 1 : t->bits + t->nwords;
    t->lstride = beside ? DL__CO : 1;
}

void dl_tracker_config_init(dl_tracker_config *cfg, uint64_t pages)
{
    if (!cfg)
        return;
    memset(cfg, 0, sizeof *cfg);
    cfg->pages = pages;
    cfg->mode = DL_MODE_WP;
    cfg->vcpus = 1;
    cfg->page_size = 4096;
    cfg->huge = DL_HUGE_NONE;
    cfg->pml_entries = DL_PML_LOG_ENTRIES;
    cfg->ring_entries = 4096;
}

/* KVM takes a power-of-two ring that holds its reserved entries: 1024 is the least. */
_Static_assert(DL_RING_MIN_ENTRIES >= DL_RING_RESERVED && DL_RING_MIN_ENTRIES / 2 < DL_RING_RESERVED,
               "DL_RING_MIN_ENTRIES: the least power of two that holds DL_RING_RESERVED");

static int config_valid(const dl_tracker_config *c)
{
    if (c->pages < 1 || c->pages > DL_MAX_PAGES)
        return 0;
    if (c->mode > DL_MODE_CLEAR || c->huge > DL_HUGE_EAGER)
        return 0;
    if (c->vcpus < 1 || c->vcpus > DL_MAX_VCPUS)
        return 0;
    if (c->page_size < DL_PAGE_SIZE_MIN || c->page_size > DL_PAGE_SIZE_MAX || (c->page_size & (c->page_size - 1)))
        return 0;
    if (c->pml_entries < DL_PML_MIN_ENTRIES || c->pml_entries > DL_PML_MAX_ENTRIES)
        return 0;
    if (c->ring_entries < DL_RING_MIN_ENTRIES || c->ring_entries > DL_RING_MAX_ENTRIES ||
        (c->ring_entries & (c->ring_entries - 1)))
        return 0;
    if (c->initially_set > 1 || (c->initially_set && c->mode != DL_MODE_CLEAR))
        return 0;
    if (c->reserved != 0)
        return 0;
    return 1;
}

int dl_tracker_create(const dl_tracker_config *cfg, dl_tracker **out)
{
    if (!out)
        return DL_ERR_INVALID;
    *out = NULL;
    if (!cfg || !config_valid(cfg))
        return DL_ERR_INVALID;
    dl_tracker *t = calloc(1, sizeof *t);
    if (!t)
        return DL_ERR_NOMEM;
    t->cfg = *cfg;
    t->pages = cfg->pages;
    t->nwords = (cfg->pages + 63) / 64;
    t->nblocks = (cfg->pages + DL_BLOCK_PAGES - 1) / DL_BLOCK_PAGES;
    t->soft_limit = cfg->ring_entries - DL_RING_RESERVED;
    t->drop_page = UINT64_MAX;
    uint32_t nv = cfg->vcpus;
    t->stride = 1;
    t->bits = dl__calloc_big(bits_words(t), sizeof(uint64_t));
    t->vc = calloc(nv, sizeof(vcpu_counters));
    int ok = t->bits && t->vc;
    if (cfg->mode == DL_MODE_RING) {
        t->ring = calloc((size_t)nv * cfg->ring_entries, sizeof(uint64_t));
        t->ring_used = calloc(nv, sizeof(uint32_t));
        t->ring_dups = calloc(nv, sizeof(uint32_t));
        ok = ok && t->ring && t->ring_used && t->ring_dups;
        if (ok)
            ring_lay(t, 0);
    }
    if (cfg->mode == DL_MODE_PML) {
        t->pml = calloc((size_t)nv * (cfg->pml_entries + 1), sizeof(uint64_t));
        t->pml_idx = calloc(nv, sizeof(int64_t));
        ok = ok && t->pml && t->pml_idx;
        if (ok)
            for (uint32_t v = 0; v < nv; v++)
                t->pml_idx[v] = (int64_t)cfg->pml_entries - 1;
    }
    if (cfg->huge != DL_HUGE_NONE) {
        t->blk = calloc(t->nblocks, 1);
        ok = ok && t->blk;
    }
    if (!ok) {
        dl_tracker_destroy(t);
        return DL_ERR_NOMEM;
    }
    *out = t;
    return DL_OK;
}

void dl_tracker_destroy(dl_tracker *t)
{
    if (!t)
        return;
    free(t->bits);
    free(t->live_own);
    free(t->blk);
    free(t->pml);
    free(t->pml_idx);
    free(t->ring);
    free(t->ring_used);
    free(t->ring_dups);
    free(t->vc);
    free(t->undo);
    free(t);
}

uint64_t dl_tracker_memory_bytes(const dl_tracker *t)
{
    if (!t)
        return 0;
    uint64_t nv = t->cfg.vcpus;
    uint64_t b = sizeof *t + (bits_words(t) + (t->live_own ? t->nwords : 0)) * 8 + nv * sizeof(vcpu_counters);
    if (t->blk)
        b += t->nblocks;
    if (t->pml)
        b += nv * (t->cfg.pml_entries + 1) * 8 + nv * 8;
    if (t->ring)
        b += nv * t->cfg.ring_entries * sizeof(uint64_t) + nv * 8;
    return b; /* not the undo buffer of a checked write: freed before the call returns */
}

int dl_tracker_get_config(const dl_tracker *t, dl_tracker_config *out)
{
    if (!t || !out)
        return DL_ERR_INVALID;
    *out = t->cfg;
    return DL_OK;
}

int dl_tracker_is_logging(const dl_tracker *t) { return t ? t->logging : 0; }

size_t dl_tracker_bitmap_words(const dl_tracker *t) { return t ? (size_t)t->nwords : 0; }

static void reset_logs(dl_tracker *t)
{
    uint32_t nv = t->cfg.vcpus;
    if (t->pml_idx)
        for (uint32_t v = 0; v < nv; v++)
            t->pml_idx[v] = (int64_t)t->cfg.pml_entries - 1;
    if (t->ring_used) {
        memset(t->ring_used, 0, nv * sizeof(uint32_t));
        memset(t->ring_dups, 0, nv * sizeof(uint32_t));
        t->live_on = 0; /* the caller clears the bits */
    }
}

int dl_tracker_start(dl_tracker *t)
{
    if (!t)
        return DL_ERR_INVALID;
    if (t->logging)
        return DL_ERR_STATE;
    reset_logs(t);
    t->st.dirty_pages = 0;
    if (t->cfg.initially_set) {
        dl_bitmap_fill(t->bits, t->pages, t->stride);
        t->st.dirty_pages = t->pages;
    } else {
        dl_bitmap_zero(t->bits, t->nwords, t->stride);
    }
    if (t->live)
        dl_bitmap_zero(t->live, t->nwords, t->lstride);
    if (t->blk) {
        uint8_t s = BLK_PROT;
        if (t->cfg.initially_set)
            s = BLK_HUGE_RW;
        else if (t->cfg.huge == DL_HUGE_EAGER) {
            s = BLK_SPLIT;
            t->st.splits += t->nblocks;
        }
        memset(t->blk, s, t->nblocks);
    }
    t->logging = 1;
    return DL_OK;
}

int dl_tracker_stop(dl_tracker *t)
{
    if (!t)
        return DL_ERR_INVALID;
    if (!t->logging)
        return DL_ERR_STATE;
    reset_logs(t);
    dl_bitmap_zero(t->bits, t->nwords, t->stride);
    if (t->live)
        dl_bitmap_zero(t->live, t->nwords, t->lstride);
    if (t->blk)
        memset(t->blk, BLK_HUGE_RW, t->nblocks);
    t->st.dirty_pages = 0;
    t->logging = 0;
    return DL_OK;
}

/* Bitmaps larger than this (about the L2 size of current x86 cores) are prefetched
 * DL_PF_DIST accesses ahead; smaller ones stay in cache, where prefetches only cost. */
#define DL_PF_MIN_BYTES (UINT64_C(1) << 20)
#define DL_PF_DIST 32
/* Spans shorter than this are not worth their set-up: see write_loop. */
#define DL_SPAN_MIN 32

/* vCPU v's PML log: entries [0, pml_entries), and log[-1] a scratch slot that the
 * branch-free write loop stores to when the log is full and the page is not new. */
static inline uint64_t *pml_log_base(const dl_tracker *t, uint32_t v)
{
    return t->pml + (size_t)v * (t->cfg.pml_entries + 1) + 1;
}

/* Words at the start of `undo` for a saved PML log, or a saved ring and every ring's fill
 * and ring_dups (a ring-full exit reaps them all, ring_full; see write_checked). */
static inline size_t undo_saved_words(const dl_tracker *t)
{
    return t->pml ? t->cfg.pml_entries : t->ring ? (size_t)t->cfg.ring_entries + t->cfg.vcpus : 0;
}

/* ---- ring helpers --------------------------------------------------------- */

/* A reap that leaves no entry live zeroes the live bits whole instead of entry by
 * entry when they span at most this many words per entry (a sequential store of a
 * word costs far less than a random update of one). */
#define DL_LIVE_ZERO_PER_ENTRY 8

/* Ring mode's live word w (an lvalue; see the top). */
#define DL_LIVE(t, w) ((t)->live[(t)->lstride * (w)])

/* Sets the live bits of every ring's entries (vCPU v's ring holding u of them) and
 * keeps them from now on. */
static DL_NOINLINE void live_build(dl_tracker *t, uint32_t v, uint32_t u)
{
    for (uint32_t w = 0; w < t->cfg.vcpus; w++) {
        const uint64_t *r = t->ring + (size_t)w * t->cfg.ring_entries;
        const uint32_t n = w == v ? u : t->ring_used[w];
        for (uint32_t i = 0; i < n; i++)
            DL_LIVE(t, r[i] >> 6) |= UINT64_C(1) << (r[i] & 63);
    }
    t->live_on = 1;
}

/* Collects vCPU v's ring into the dirty bitmap in order, then resets it (re-arms).
 * Its entries' pages are set in the dirty bitmap since their push; each entry is a
 * new dirty page unless its page was collected before (ring_dups). Resetting clears
 * the entries' live bits, if they are kept; when no entry is live any more they are
 * no longer kept. */
static void ring_reap(dl_tracker *t, uint32_t v)
{
    const uint32_t n = t->ring_used[v];
    if (n == 0)
        return;
    if (t->live_on) {
        uint64_t others = 0;
        for (uint32_t w = 0; w < t->cfg.vcpus; w++)
            others += w == v ? 0 : t->ring_used[w];
        if (others == 0 && t->lstride == 1 && t->nwords <= DL_LIVE_ZERO_PER_ENTRY * n) {
            dl_bitmap_zero(t->live, t->nwords, t->lstride); /* no entry stays live: cheaper than n updates */
        } else {
            const uint64_t *r = t->ring + (size_t)v * t->cfg.ring_entries;
            const int pf = t->nwords * 8 > DL_PF_MIN_BYTES;
            for (uint32_t i = 0; i < n; i++) {
                if (pf && i + DL_PF_DIST < n)
                    __builtin_prefetch(&DL_LIVE(t, r[i + DL_PF_DIST] >> 6), 1, 3);
                DL_LIVE(t, r[i] >> 6) &= ~(UINT64_C(1) << (r[i] & 63));
            }
        }
        t->live_on = others != 0;
    }
    t->st.dirty_pages += n - t->ring_dups[v];
    t->st.ring_reaped += n;
    t->st.tlb_flushes++;
    t->ring_used[v] = 0;
    t->ring_dups[v] = 0;
}

/* vCPU v's ring reached its soft limit (its fill and ring_dups stored): the exit's reap. QEMU's
 * kvm_cpu_exec (KVM_EXIT_DIRTY_RING_FULL) reaps every vCPU's ring, kvm_dirty_ring_reap(kvm_state,
 * NULL), then KVM_RESET_DIRTY_RINGS re-arms them all; only while dirty-limit is in service
 * (dirtylimit_in_service(): reap_own) does it reap the exiting vCPU's ring alone, so that the
 * others still fill theirs and sleep. The one place a ring-full exit's reap is decided. */
static void ring_full(dl_tracker *t, uint32_t v)
{
    if (t->reap_own) {
        ring_reap(t, v);
        return;
    }
    for (uint32_t w = 0; w < t->cfg.vcpus; w++)
        ring_reap(t, w);
}

/* Pushes page p (newly recorded) to vCPU v's ring; a full ring exits and is reaped. */
static inline void ring_push(dl_tracker *t, uint32_t v, uint64_t p, uint64_t *r, uint64_t *exits)
{
    uint32_t u = t->ring_used[v];
    r[u] = p;
    t->ring_used[v] = ++u;
    if (u == t->soft_limit) {
        (*exits)++;
        ring_full(t, v);
    }
}

/* ---- the write path ------------------------------------------------------- */

/* Position of the first element >= limit, or n. The common all-valid case is one
 * branch-free pass that vectorizes with plain SSE2: for limit <= 2^63, x < limit
 * exactly when the top bit of (x - limit) & ~x is set (x - limit borrows, and x
 * itself is below 2^63), so the batch is valid iff that bit survives an AND of all. */
#define DL_FIRST_BAD(T, CAST)                                                                      \
    static size_t first_bad_##T(const T *a, size_t n, uint64_t limit)                             \
    {                                                                                              \
        uint64_t all = ~UINT64_C(0);                                                               \
        for (size_t i = 0; i < n; i++) {                                                           \
            uint64_t x = (uint64_t)(CAST)a[i];                                                     \
            all &= (x - limit) & ~x;                                                               \
        }                                                                                          \
        if (all >> 63)                                                                             \
            return n;                                                                              \
        for (size_t i = 0; i < n; i++)                                                             \
            if ((uint64_t)(CAST)a[i] >= limit)                                                     \
                return i;                                                                          \
        return n;                                                                                  \
    }
DL_FIRST_BAD(uint64_t, uint64_t)
DL_FIRST_BAD(int64_t, int64_t)
DL_FIRST_BAD(uint32_t, uint32_t)
DL_FIRST_BAD(int32_t, int64_t) /* negative int32 -> negative int64 -> huge uint64 */

typedef struct batch_counts {
    uint64_t recorded; /* pages newly recorded by this vCPU */
    uint64_t faults;
    uint64_t exits;    /* PML-full or ring-full exits */
    uint64_t splits;
    uint64_t logged;   /* PML entries */
    uint64_t pushed;   /* ring entries */
    size_t done;       /* checked loops stopped by a bad index: the writes applied before it */
} batch_counts;

/* A write to a page of a write-protected huge block: fault, split, record directly. */
static DL_NOINLINE void huge_fault(dl_tracker *t, uint32_t v, uint64_t p, batch_counts *c)
{
    t->blk[p / DL_BLOCK_PAGES] = BLK_SPLIT;
    c->splits++;
    c->faults++;
    uint64_t m = 1ull << (p & 63);
    uint64_t *w = &t->bits[t->stride * (p >> 6)];
    const uint64_t old = *w & m;
    *w |= m;
    if (t->cfg.mode == DL_MODE_RING) {
        if (old || t->live_on) { /* see the write loop */
            if (!t->live_on)
                live_build(t, v, t->ring_used[v]);
            if (DL_LIVE(t, p >> 6) & m)
                return; /* live: writable */
            DL_LIVE(t, p >> 6) |= m;
            t->ring_dups[v] += old != 0;
        }
        c->pushed++; /* the ring loop counts its pushes as recorded */
        ring_push(t, v, p, t->ring + (size_t)v * t->cfg.ring_entries, &c->exits);
    } else if (!old) {
        c->recorded++;
        t->st.dirty_pages++;
    }
}

/*
 * First writes in a loop of their own, for ring mode while no live bits are kept and
 * for PML mode: per write one test-and-set of the page's bit and one store of its ring
 * entry or log entry (the ring fills upwards, a PML log downwards), and a branch on the
 * bit, which a stream of first writes always predicts. It stops before the first write
 * whose bit is set (the caller's loop takes that one and the rest of its span: in ring
 * mode the live bits decide; in PML mode its loop is branch-free, for streams that
 * rewrite pages) or, checked, whose index is bad, and returns its position (end if
 * none). Writes [i, end) of a span with room for all of them. The journal (jrn), stale
 * bits (stl: co-located, the stride DL__CO) and versions (vers) are kept as the write loop keeps them; `pf_end` as
 * there. Why a loop of its own, called once per span: inside write_loop, ring mode's
 * live-bit path kept its state live across the flat loop and pushed the bitmap and
 * ring pointers to the stack; and PML's branch-free index (idx += old - 1) makes each
 * log store's address wait for the bitmap load of the write before it (in a C harness:
 * 1.52 ns a write at 4 GiB branch-free in a loop of its own, 1.19 ns with the branch).
 */
typedef struct fresh_io {
    uint64_t *rp;      /* the ring's or the log's next free entry */
    uint64_t *jp, jb;  /* the journal (see write_loop) */
} fresh_io;

DL_ALWAYS_INLINE size_t fresh_tmpl(uint64_t *bits, const uint64_t *pages, size_t i, size_t end,
                                   uint64_t lim, size_t pf_end, uint32_t *ver, fresh_io *io,
                                   const int down, const int co, const int chk,
                                   const int jrn, const int stl, const int vers, const int pf)
{
    /* the stride: co-located stale words, or ring mode's live words beside (see ring_lay) */
    const unsigned S = stl || (co && !down) ? DL__CO : 1;
    uint64_t *rp = io->rp;
    uint64_t *jp = jrn ? io->jp : NULL;
    uint64_t jb = jrn ? io->jb : 0;
    _Pragma("GCC unroll 4")
    for (; i < end; i++) {
        const uint64_t p = pages[i];
        if (chk && DL_UNLIKELY(p >= lim))
            break;
        if (pf && i < pf_end) {
            const uint64_t q = pages[i + DL_PF_DIST];
            const uint64_t pq = chk && q >= lim ? 0 : q;
            __builtin_prefetch(&bits[S * (pq >> 6)], 1, 3); /* and the stale word beside it */
            if (vers)
                __builtin_prefetch(&ver[pq], 1, 3);
        }
        uint64_t *const w = &bits[S * (p >> 6)];
        const uint64_t x = *w, m = UINT64_C(1) << (p & 63);
        if (DL_UNLIKELY(x & m))
            break; /* recorded already: the caller's loop decides */
        *w = x | m;
        *rp = p;
        rp += down ? -1 : 1;
        if (stl)
            w[1] |= m; /* the stale word, in the same line */
        if (vers)
            ver[p]++;
        if (jrn) {
            jb += jb; /* the bit before this write: clear */
            if (DL_UNLIKELY((int64_t)jb < 0)) {
                *jp++ = jb;
                jb = 1;
            }
        }
    }
    io->rp = rp;
    if (jrn) {
        io->jp = jp;
        io->jb = jb;
    }
    return i;
}

#define DL_FRESH(name, down, co, chk, jrn, stl, vers, pf)                                          \
    static DL_NOINLINE size_t name(uint64_t *bits, const uint64_t *pages, size_t i, size_t end,    \
                                   uint64_t lim, size_t pf_end, uint32_t *ver, fresh_io *io)       \
    {                                                                                              \
        return fresh_tmpl(bits, pages, i, end, lim, pf_end, ver, io, down, co, chk, jrn, stl,      \
                          vers, pf);                                                               \
    }
/* unchecked (the engine's path, small batches): [stale][versions][prefetch]; checked:
 * journaled (j), or with the bitmaps copied (c: with a stale bitmap for c2 and c3).
 * Ring mode's live words beside the bits (ringco) exclude stale bits (see ring_lay), so
 * ringco has no stale variants: its row of the table takes ring's (never selected). */
#define DL_FRESH_PLAIN(tag, down, co)                                                              \
    DL_FRESH(fresh_##tag##_000, down, co, 0, 0, 0, 0, 0)                                           \
    DL_FRESH(fresh_##tag##_001, down, co, 0, 0, 0, 0, 1)                                           \
    DL_FRESH(fresh_##tag##_010, down, co, 0, 0, 0, 1, 0)                                           \
    DL_FRESH(fresh_##tag##_011, down, co, 0, 0, 0, 1, 1)                                           \
    DL_FRESH(fresh_##tag##_j0, down, co, 1, 1, 0, 0, 0)                                            \
    DL_FRESH(fresh_##tag##_j1, down, co, 1, 1, 0, 0, 1)                                            \
    DL_FRESH(fresh_##tag##_c0, down, co, 1, 0, 0, 0, 0)                                            \
    DL_FRESH(fresh_##tag##_c1, down, co, 1, 0, 0, 0, 1)
#define DL_FRESH_STALE(tag, down, co)                                                              \
    DL_FRESH(fresh_##tag##_100, down, co, 0, 0, 1, 0, 0)                                           \
    DL_FRESH(fresh_##tag##_101, down, co, 0, 0, 1, 0, 1)                                           \
    DL_FRESH(fresh_##tag##_110, down, co, 0, 0, 1, 1, 0)                                           \
    DL_FRESH(fresh_##tag##_111, down, co, 0, 0, 1, 1, 1)                                           \
    DL_FRESH(fresh_##tag##_c2, down, co, 1, 0, 1, 0, 0)                                            \
    DL_FRESH(fresh_##tag##_c3, down, co, 1, 0, 1, 0, 1)
DL_FRESH_PLAIN(ring, 0, 0) DL_FRESH_STALE(ring, 0, 0)
DL_FRESH_PLAIN(ringco, 0, 1)
DL_FRESH_PLAIN(pml, 1, 0) DL_FRESH_STALE(pml, 1, 0)
#undef DL_FRESH_PLAIN
#undef DL_FRESH_STALE
#undef DL_FRESH
typedef size_t (*fresh_fn)(uint64_t *, const uint64_t *, size_t, size_t, uint64_t, size_t, uint32_t *,
                           fresh_io *);

/* The instance for a write loop's variant (constants there: folds to one direct call);
 * `stag`: the row whose stale variants this row takes. */
#define DL_FRESH_TABLE(tag, stag)                                                                  \
    {fresh_##tag##_000,  fresh_##tag##_001,  fresh_##tag##_010,  fresh_##tag##_011,                 \
     fresh_##stag##_100, fresh_##stag##_101, fresh_##stag##_110, fresh_##stag##_111,                \
     fresh_##tag##_j0,   fresh_##tag##_j1,   fresh_##tag##_c0,   fresh_##tag##_c1,                  \
     fresh_##stag##_c2,  fresh_##stag##_c3}
DL_ALWAYS_INLINE fresh_fn fresh_for(const int mode, const int co, const int chkd, const int stl,
                                    const int vers, const int pf)
{
    static const fresh_fn table[3][14] = {DL_FRESH_TABLE(ring, ring), DL_FRESH_TABLE(pml, pml),
                                          DL_FRESH_TABLE(ringco, ring)};
    const int k = chkd == 1 ? 8 + pf : chkd == 2 ? 10 + (stl << 1 | pf) : stl << 2 | vers << 1 | pf;
    return table[mode == DL_MODE_PML ? 1 : co ? 2 : 0][k];
}
#undef DL_FRESH_TABLE

/*
 * The write loop, specialized at compile time by mode, huge pages, marks (stale
 * bitmap, versions) and prefetching. The bitmap word of the current write stays
 * in a register (`cur`, word `cw`, and the stale word `scur` beside it) and is
 * stored back when a write goes to another word, so sequential streams touch the
 * bitmap once per 64 pages. Whether a write records its page is computed without a
 * branch (`old`); the PML log and the ring are written at their next free slot on
 * every write and their index advances only for a new page, so the hot path has no
 * data-dependent branch. (A store to a free slot is invisible: only live entries
 * are ever read. When the PML log is full, index -1 is a scratch slot; a ring never
 * holds more than soft_limit - 1 entries between writes.) In ring mode `cur` holds
 * a word of the first bits; a write that finds its first bit set, or any write
 * while the live bits are kept, also updates the page's live word, which decides
 * whether it pushes; `dups` counts locally what ring_dups
 * counts, added to it before a reap. A huge-block fault, which changes the bitmap
 * outside the loop, is preceded by a store of `cur` and followed by a reload
 * (a reap or a build of the live bits touches only live words).
 */
DL_ALWAYS_INLINE size_t write_loop(dl_tracker *t, uint32_t v, const uint64_t *pages, size_t n,
                                   const int mode, const int co_, const int huge, const int stl,
                                   const int vers, const int pf, const int flat, const int chkd,
                                   batch_counts *c)
{
    /* chkd: the indices are checked as they are read (see write_checked): 1, the
     * writes are journaled for their undo (no marks); 2, the bitmaps were copied */
    const int jrn = chkd == 1;
    const int live_undone = chkd == 2 && t->undo_live; /* ring mode: the copy holds the live words */
    const uint64_t lim = chkd ? t->pages : 0;
    if (chkd && pages[0] >= lim) {
        c->done = 0;
        return 0;
    }
    int rest_ok = 0; /* the rest of the batch was checked at once */
    /* The journal: per write its page's bit before it, shifted into jb from the right;
     * jb starts with a sentinel bit, so it turns negative when it holds 63 writes, and
     * is stored (see write_undo). */
    uint64_t *jp = jrn ? t->undo + undo_saved_words(t) : NULL;
    uint64_t jb = 1;
    size_t done = 0, badpos = 0;
    uint64_t *bits = t->bits;
    const uint8_t *blk = t->blk;
    uint32_t *ver = t->versions;
    /* word w is bits[S * w]; the stale word of w is the next one, or in ring mode laid out
     * beside the bits (co) the live word; else live word w is live[w] (see ring_lay) */
    const int co = mode == DL_MODE_RING && co_ && !stl;
    const unsigned S = stl || co ? DL__CO : 1;
    const unsigned LS = co ? DL__CO : 1; /* live word w: live[LS * w] */
#define DL_BITS(w) bits[S * (w)]
#define DL_STALE_AT(w) (&bits[S * (w) + 1])
    uint64_t cw = pages[0] >> 6;
    uint64_t cur = DL_BITS(cw);
    uint64_t *sp = stl ? DL_STALE_AT(cw) : NULL;
    uint64_t scur = stl ? *sp : 0;
    int prot = huge && blk[cw / (DL_BLOCK_PAGES / 64)] == BLK_PROT;
    uint64_t olds = 0, hfaults = 0, exits = 0;

    const int64_t pml_top = (int64_t)t->cfg.pml_entries - 1;
    uint64_t *log = mode == DL_MODE_PML ? pml_log_base(t, v) : NULL;
    int64_t idx = mode == DL_MODE_PML ? t->pml_idx[v] : 0;
    const int64_t idx0 = idx;

    uint64_t *r = mode == DL_MODE_RING ? t->ring + (size_t)v * t->cfg.ring_entries : NULL;
    uint32_t u = mode == DL_MODE_RING ? t->ring_used[v] : 0;
    int on = mode == DL_MODE_RING ? t->live_on : 0; /* the live bits are kept */
    uint64_t *live = t->live;
    uint32_t dups = 0;                                 /* pushes of pages collected before */
    const uint32_t soft = t->soft_limit;

    const size_t pf_end = pf && n > DL_PF_DIST ? n - DL_PF_DIST : 0;

/* Checked loops: reads write i's page, or stops at a bad one before any access for it;
 * an index read ahead for a prefetch is made harmless. */
#define DL_READ()                                                                                  \
    do {                                                                                           \
        p = pages[i];                                                                              \
        if (chkd && DL_UNLIKELY(p >= lim)) {                                                       \
            done = i;                                                                              \
            badpos = i;                                                                            \
            goto bad;                                                                              \
        }                                                                                          \
    } while (0)
#define DL_SAFE(x) (chkd && (x) >= lim ? 0 : (x))

/* One write of page p, in the word cw held in cur. CHK: check the PML log or the
 * ring for a fill on this write (else the span's length guarantees room). ON (ring
 * mode): the live bits are kept during this span; a write that changes that ends
 * the span, and the next one runs the other variant. */
#define DL_WRITE_ONE(CHK, ON)                                                                      \
    do {                                                                                           \
        if (vers) {                                                                                \
            if (pf && i < pf_end)                                                                  \
                __builtin_prefetch(&ver[DL_SAFE(pages[i + DL_PF_DIST])], 1, 3);                    \
            ver[p]++;                                                                              \
        }                                                                                          \
        const unsigned sh = (unsigned)(p & 63);                                                    \
        if (stl)                                                                                   \
            scur |= UINT64_C(1) << sh;                                                             \
        if (huge && DL_UNLIKELY(prot)) { /* write-protected block: fault and split */              \
            DL_BITS(cw) = cur;                                                                     \
            if (mode == DL_MODE_RING) {                                                            \
                t->ring_used[v] = u;                                                               \
                t->ring_dups[v] += dups;                                                           \
                dups = 0;                                                                          \
            }                                                                                      \
            huge_fault(t, v, p, c);                                                                \
            hfaults++;                                                                             \
            if (mode == DL_MODE_RING) {                                                            \
                u = t->ring_used[v];                                                               \
                on = t->live_on;                                                                   \
                if (on != (ON))                                                                    \
                    end = i + 1;                                                                   \
            }                                                                                      \
            cur = DL_BITS(cw);                                                                     \
            prot = 0;                                                                              \
            break;                                                                                 \
        }                                                                                          \
        const uint64_t old = (cur >> sh) & 1; /* 1: recorded already, 0: this write records it */ \
        cur |= UINT64_C(1) << sh;                                                                  \
        if (jrn) { /* journal: the tracker bit before this write */                                \
            jb = jb + jb + old;                                                                    \
            if (DL_UNLIKELY((int64_t)jb < 0)) {                                                    \
                *jp++ = jb;                                                                        \
                if (mode == DL_MODE_WP) /* counted here: one register less in the loop */          \
                    olds += dl__popcount64(jb) - 1;                                                \
                jb = 1;                                                                            \
            }                                                                                      \
        }                                                                                          \
        if (mode == DL_MODE_WP && !jrn) /* PML mode counts by its index, ring mode its pushes */   \
            olds += old;                                                                           \
        if (mode == DL_MODE_PML) {                                                                 \
            log[idx] = p;                                                                          \
            idx += (int64_t)old - 1;                                                               \
            if ((CHK) && DL_UNLIKELY(idx < -1)) { /* it was full (-1): exit, drain, log at top */  \
                exits++;                                                                           \
                log[pml_top] = p;                                                                  \
                idx = pml_top - 1;                                                                 \
                if (!huge)                                                                         \
                    end = i + 1; /* room again: back to unchecked spans */                         \
            }                                                                                      \
        } else if (mode == DL_MODE_RING) {                                                         \
            r[u] = p;                                                                              \
            if (!(ON) && DL_LIKELY(!old)) { /* first bit clear: armed, pushed */                   \
                u++;                                                                               \
            } else { /* first bit set (live?), or live bits kept: the live bit decides */          \
                if (!(ON)) { /* first needed: build them, and go on with ON spans */               \
                    if (chkd && !live_undone && !rest_ok) { /* no undo past this: check */     \
                        const size_t b = first_bad_uint64_t(pages + i + 1, n - i - 1, lim);        \
                        if (b < n - i - 1) {                                                       \
                            done = i + 1;                                                          \
                            badpos = i + 1 + b;                                                    \
                            goto bad;                                                              \
                        }                                                                          \
                        rest_ok = 1;                                                               \
                    }                                                                              \
                    live_build(t, v, u);                                                           \
                    t->live_used |= flat; /* a scattered stream needed them (see ring_lay) */      \
                    on = 1;                                                                        \
                    end = i + 1;                                                                   \
                }                                                                                  \
                uint64_t *lw = &live[LS * cw];                                                     \
                const uint64_t l = *lw;                                                            \
                const uint32_t push = (uint32_t)(((l >> sh) & 1) ^ 1); /* not live: pushed (again) */ \
                *lw = l | UINT64_C(1) << sh;                                                       \
                dups += push & (uint32_t)old;                                                      \
                u += push;                                                                         \
                olds += push ^ 1;                                                                  \
            }                                                                                      \
            if ((CHK) && DL_UNLIKELY(u == soft)) { /* ring full: exit, reap at once */             \
                exits++;                                                                           \
                t->ring_used[v] = u;                                                               \
                t->ring_dups[v] += dups;                                                           \
                dups = 0;                                                                          \
                ring_full(t, v);                                                                   \
                u = 0;                                                                             \
                on = t->live_on;                                                                   \
                end = i + 1; /* room again (unchecked spans), and ON may have changed */           \
            }                                                                                      \
        }                                                                                          \
    } while (0)

    /* The outer loop takes a write to another word than the previous one; the inner
     * loop the writes that follow in the same word. The body is written twice so that
     * random streams (a new word every write) and sequential ones (64 writes a word)
     * both run with one taken branch per write. */
    /* Warm up: the first DL_PF_DIST writes get their prefetches here, so that short
     * batches (a migration feeds a few dozen writes per vCPU and chunk) overlap
     * their cache misses too. */
    if (pf) {
        const size_t k = n < DL_PF_DIST ? n : DL_PF_DIST;
        for (size_t j = 0; j < k; j++) {
            const uint64_t q = DL_SAFE(pages[j]);
            if (vers)
                __builtin_prefetch(&ver[q], 1, 3);
            __builtin_prefetch(&DL_BITS(q >> 6), 1, 3); /* and the stale word beside it */
            if (mode == DL_MODE_RING && on && !co) /* else in the bits' line */
                __builtin_prefetch(&live[q >> 6], 1, 3);
        }
    }
/* Prefetches the words (tracker bits, stale bits: one line) of the write DL_PF_DIST ahead. */
#define DL_PREFETCH_AHEAD(ON)                                                                      \
    do {                                                                                           \
        if (pf && i < pf_end) {                                                                    \
            const uint64_t pw = DL_SAFE(pages[i + DL_PF_DIST]) >> 6;                               \
            __builtin_prefetch(&DL_BITS(pw), 1, 3);                                                \
            if (mode == DL_MODE_RING && (ON) && !co) /* else in the bits' line */                  \
                __builtin_prefetch(&live[pw], 1, 3);                                               \
        }                                                                                          \
    } while (0)
/* The writes [i, end) of one span; CHK as for DL_WRITE_ONE. */
#define DL_SPAN(CHK, ON)                                                                           \
    for (;;) {                                                                                     \
        /* prefetch the word DL_PF_DIST writes ahead (sequential streams get here once             \
         * per 64 writes, and need no prefetch anyway) */                                          \
        DL_PREFETCH_AHEAD(ON);                                                                     \
        DL_BITS(cw) = cur;                                                                         \
        if (stl)                                                                                   \
            *sp = scur;                                                                            \
        cw = p >> 6;                                                                               \
        cur = DL_BITS(cw);                                                                         \
        if (stl) {                                                                                 \
            sp = DL_STALE_AT(cw);                                                                  \
            scur = *sp;                                                                            \
        }                                                                                          \
        if (huge)                                                                                  \
            prot = blk[cw / (DL_BLOCK_PAGES / 64)] == BLK_PROT;                                    \
        DL_WRITE_ONE(CHK, ON);                                                                     \
        if (++i == end)                                                                            \
            break;                                                                                 \
        DL_READ();                                                                                 \
        if ((p >> 6) != cw)                                                                        \
            continue;                                                                              \
        int more = 1;                                                                              \
        for (;;) {                                                                                 \
            DL_WRITE_ONE(CHK, ON);                                                                 \
            if (++i == end) {                                                                      \
                more = 0;                                                                          \
                break;                                                                             \
            }                                                                                      \
            DL_READ();                                                                             \
            if ((p >> 6) != cw)                                                                    \
                break;                                                                             \
        }                                                                                          \
        if (!more)                                                                                 \
            break;                                                                                 \
    }

/* The writes [i, end) of one span, each with its own load and store of its word:
 * for streams that go to another word on nearly every write, where the register
 * held word of DL_SPAN only costs (no huge pages). Unrolled: the loop's own
 * instructions are a good part of a write's when the bitmap is in cache. */
#define DL_FLAT_SPAN(CHK, ON)                                                                      \
    _Pragma("GCC unroll 4")                                                                        \
    for (; i < end; i++) {                                                                         \
        DL_READ();                                                                                 \
        DL_PREFETCH_AHEAD(ON);                                                                     \
        cw = p >> 6;                                                                               \
        cur = DL_BITS(cw);                                                                         \
        if (stl) {                                                                                 \
            sp = DL_STALE_AT(cw);                                                                  \
            scur = *sp;                                                                            \
        }                                                                                          \
        DL_WRITE_ONE(CHK, ON);                                                                     \
        DL_BITS(cw) = cur;                                                                         \
        if (stl)                                                                                   \
            *sp = scur;                                                                            \
    }

    /* Spans: a PML log with idx + 1 free slots, or a ring with soft_limit - u free
     * entries, takes at least that many writes to fill, so a span that long needs
     * no fill check per write (the ring's fill is handled after it). With little
     * room left (or huge pages, whose faults push to the ring on their own) writes
     * are checked one by one until the next exit, then spans resume. */
    size_t i = 0;
    uint64_t p = pages[0];
    int fresh = 1; /* first writes go to fresh_* (see there) */
    while (i < n) {
        size_t end = n;
        int chk = mode != DL_MODE_WP || huge;
        if (!huge && mode == DL_MODE_PML && idx + 1 >= DL_SPAN_MIN) {
            chk = 0;
            if ((uint64_t)idx + 1 < n - i)
                end = i + (size_t)idx + 1;
        } else if (!huge && mode == DL_MODE_RING && soft - u >= DL_SPAN_MIN) {
            chk = 0;
            if ((uint64_t)(soft - u) < n - i)
                end = i + (soft - u);
        }
        DL_READ();
        if (mode == DL_MODE_RING && on) {
            if (flat && !huge) {
                if (chk) {
                    DL_FLAT_SPAN(1, 1)
                } else {
                    DL_FLAT_SPAN(0, 1)
                }
            } else if (chk) {
                DL_SPAN(1, 1)
            } else {
                DL_SPAN(0, 1)
            }
        } else if (flat && !huge) {
            if (chk) {
                DL_FLAT_SPAN(1, 0)
            } else {
                if (mode != DL_MODE_WP && fresh) { /* first writes in a loop of their own */
                    fresh_io io = {mode == DL_MODE_RING ? r + u : log + idx, jp, jb};
                    i = fresh_for(mode, co, chkd, stl, vers, pf)(bits, pages, i, end, lim, pf_end, ver, &io);
                    fresh = i == end; /* else the batch rewrites pages: not again in this call */
                    if (mode == DL_MODE_RING)
                        u = (uint32_t)(io.rp - r);
                    else
                        idx = io.rp - log;
                    if (jrn) {
                        jp = io.jp;
                        jb = io.jb;
                    }
                    cur = DL_BITS(cw); /* the words held in registers may have changed */
                    if (stl)
                        scur = *sp;
                }
                DL_FLAT_SPAN(0, 0)
            }
        } else if (chk) {
            DL_SPAN(1, 0)
        } else {
            DL_SPAN(0, 0)
        }
        if (mode == DL_MODE_RING && !chk && u == soft) { /* ring full: exit, reap at once */
            exits++;
            t->ring_used[v] = u;
            t->ring_dups[v] += dups;
            dups = 0;
            ring_full(t, v);
            u = 0;
            on = t->live_on;
        }
        if (i < n)
            p = pages[i];
    }
#undef DL_SPAN
#undef DL_FLAT_SPAN
#undef DL_PREFETCH_AHEAD
#undef DL_WRITE_ONE
#undef DL_STALE_AT
#undef DL_READ
#undef DL_SAFE
    DL_BITS(cw) = cur;
    if (stl)
        *sp = scur;
    if (jrn && mode == DL_MODE_WP)
        olds += dl__popcount64(jb) - 1;
    if (0) {
    bad: /* checked loops: writes [0, done) applied, the journal's last word in registers */
        DL_BITS(cw) = cur;
        if (stl)
            *sp = scur;
        if (jrn)
            *jp = jb;
        c->done = done;
        return badpos;
    }
#undef DL_BITS

    /* pages recorded by the loop itself (PML: each one moved the index down by one,
     * each exit moved it up by pml_entries) */
    const uint64_t rec = mode == DL_MODE_PML
                             ? (uint64_t)(idx0 - idx) + exits * t->cfg.pml_entries
                             : n - hfaults - olds;
    c->exits += exits;
    if (mode == DL_MODE_WP || mode == DL_MODE_CLEAR) {
        c->recorded += rec;
        c->faults += rec;
        t->st.dirty_pages += rec;
    } else if (mode == DL_MODE_PML) {
        t->pml_idx[v] = idx;
        c->logged += rec;
        c->recorded += rec;
        t->st.dirty_pages += rec;
    } else {
        t->ring_used[v] = u;
        t->ring_dups[v] += dups;
        c->pushed += rec;
        c->recorded += c->pushed; /* including the pushes of huge-block faults */
    }
    return SIZE_MAX;
}

/* Aligned so that the hot loops' placement, and so their speed, does not depend on
 * what else is linked into the module (the bare loops of bench.c are aligned alike). */
#define DL_WRITE_VARIANT(name, mode, co, kind, stl, vers, pf)                                      \
    __attribute__((aligned(64))) static size_t name(dl_tracker *t, uint32_t v, const uint64_t *p,  \
                                                    size_t n, batch_counts *c)                     \
    {                                                                                              \
        const int flat = kind == 2 || kind == 4 || kind == 6;                                      \
        return write_loop(t, v, p, n, mode, co, kind == 1, stl, vers, pf, flat,                    \
                          kind < 3 ? 0 : kind < 5 ? 1 : 2, c);                                     \
    }
#define DL_WRITE_PLAIN(mode, co, tag, huge)                                                        \
    DL_WRITE_VARIANT(write_##tag##_##huge##000, mode, co, huge, 0, 0, 0)                           \
    DL_WRITE_VARIANT(write_##tag##_##huge##001, mode, co, huge, 0, 0, 1)                           \
    DL_WRITE_VARIANT(write_##tag##_##huge##010, mode, co, huge, 0, 1, 0)                           \
    DL_WRITE_VARIANT(write_##tag##_##huge##011, mode, co, huge, 0, 1, 1)
#define DL_WRITE_STALE(mode, co, tag, huge)                                                        \
    DL_WRITE_VARIANT(write_##tag##_##huge##100, mode, co, huge, 1, 0, 0)                           \
    DL_WRITE_VARIANT(write_##tag##_##huge##101, mode, co, huge, 1, 0, 1)                           \
    DL_WRITE_VARIANT(write_##tag##_##huge##110, mode, co, huge, 1, 1, 0)                           \
    DL_WRITE_VARIANT(write_##tag##_##huge##111, mode, co, huge, 1, 1, 1)
/* checked indices (see write_checked): kinds 3 and 4 are 0 and 2 journaled, 5 and 6
 * with a copy of the bitmap (and of the stale bitmap: c8 to c11) */
#define DL_WRITE_CHECKED_PLAIN(mode, co, tag)                                                      \
    DL_WRITE_VARIANT(write_##tag##_c0, mode, co, 3, 0, 0, 0)                                       \
    DL_WRITE_VARIANT(write_##tag##_c1, mode, co, 3, 0, 0, 1)                                       \
    DL_WRITE_VARIANT(write_##tag##_c2, mode, co, 4, 0, 0, 0)                                       \
    DL_WRITE_VARIANT(write_##tag##_c3, mode, co, 4, 0, 0, 1)                                       \
    DL_WRITE_VARIANT(write_##tag##_c4, mode, co, 5, 0, 0, 0)                                       \
    DL_WRITE_VARIANT(write_##tag##_c5, mode, co, 5, 0, 0, 1)                                       \
    DL_WRITE_VARIANT(write_##tag##_c6, mode, co, 6, 0, 0, 0)                                       \
    DL_WRITE_VARIANT(write_##tag##_c7, mode, co, 6, 0, 0, 1)
#define DL_WRITE_CHECKED_STALE(mode, co, tag)                                                      \
    DL_WRITE_VARIANT(write_##tag##_c8, mode, co, 5, 1, 0, 0)                                       \
    DL_WRITE_VARIANT(write_##tag##_c9, mode, co, 5, 1, 0, 1)                                       \
    DL_WRITE_VARIANT(write_##tag##_c10, mode, co, 6, 1, 0, 0)                                      \
    DL_WRITE_VARIANT(write_##tag##_c11, mode, co, 6, 1, 0, 1)
#define DL_WRITE_MODE_PLAIN(mode, co, tag)                                                         \
    DL_WRITE_PLAIN(mode, co, tag, 0) DL_WRITE_PLAIN(mode, co, tag, 1) DL_WRITE_PLAIN(mode, co, tag, 2) \
    DL_WRITE_CHECKED_PLAIN(mode, co, tag)
#define DL_WRITE_MODE_STALE(mode, co, tag)                                                         \
    DL_WRITE_STALE(mode, co, tag, 0) DL_WRITE_STALE(mode, co, tag, 1) DL_WRITE_STALE(mode, co, tag, 2) \
    DL_WRITE_CHECKED_STALE(mode, co, tag)
DL_WRITE_MODE_PLAIN(DL_MODE_WP, 0, wp) DL_WRITE_MODE_STALE(DL_MODE_WP, 0, wp)
DL_WRITE_MODE_PLAIN(DL_MODE_PML, 0, pml) DL_WRITE_MODE_STALE(DL_MODE_PML, 0, pml)
DL_WRITE_MODE_PLAIN(DL_MODE_RING, 0, ring) DL_WRITE_MODE_STALE(DL_MODE_RING, 0, ring)
/* live words beside the bits (see ring_lay), never with stale bits: no stale variants */
DL_WRITE_MODE_PLAIN(DL_MODE_RING, 1, ringco)

typedef size_t (*write_fn)(dl_tracker *, uint32_t, const uint64_t *, size_t, batch_counts *);
/* `stag`: the row whose stale variants this row takes (ringco: ring's, never selected) */
#define DL_WRITE_HALF(tag, stag, huge)                                                             \
    write_##tag##_##huge##000, write_##tag##_##huge##001, write_##tag##_##huge##010,               \
        write_##tag##_##huge##011, write_##stag##_##huge##100, write_##stag##_##huge##101,         \
        write_##stag##_##huge##110, write_##stag##_##huge##111
#define DL_WRITE_ROW(tag, stag)                                                                    \
    {DL_WRITE_HALF(tag, stag, 0), DL_WRITE_HALF(tag, stag, 1), DL_WRITE_HALF(tag, stag, 2),        \
     write_##tag##_c0, write_##tag##_c1, write_##tag##_c2, write_##tag##_c3, write_##tag##_c4,     \
     write_##tag##_c5, write_##tag##_c6, write_##tag##_c7, write_##stag##_c8, write_##stag##_c9,   \
     write_##stag##_c10, write_##stag##_c11}
/* [mode][kind << 3 | stale << 2 | versions << 1 | prefetch], kind 0: register-held word,
 * 1: huge pages, 2: flat (no huge pages); then [24 + (copied << 2 | flat << 1 | prefetch)]
 * with checked indices (no huge pages, no versions; copied: the bitmap, not a journal),
 * plus 4 with a stale bitmap (copied only) */
static const write_fn write_table[4][36] = {DL_WRITE_ROW(wp, wp), DL_WRITE_ROW(pml, pml),
                                            DL_WRITE_ROW(ring, ring), DL_WRITE_ROW(ringco, ring)};

/* Whether a batch goes to another bitmap word on nearly every write (judged on its
 * first writes): such streams run the flat loop. Only the speed depends on it. */
static int scattered(const uint64_t *pages, size_t n)
{
    const size_t k = n < 64 ? n : 64;
    size_t same = 0;
    for (size_t i = 1; i < k; i++)
        same += (pages[i] ^ pages[i - 1]) < 64;
    return same * 8 < k;
}

/* Applies a batch; `chkd` (logging, no huge pages, no marks: 1 journaled, 2 with a copy
 * of the bitmap): its indices are checked on the way, and a bad one stops it, returning
 * its position, with the writes before it (c->done of them) applied, for write_undo.
 * Else SIZE_MAX. */
static size_t write_batch(dl_tracker *t, uint32_t v, const uint64_t *pages, size_t n, int chkd,
                          batch_counts *c)
{
    t->st.writes += n;
    t->vc[v].writes += n;
    if (!t->logging) {
        if (t->versions)
            for (size_t i = 0; i < n; i++)
                t->versions[pages[i]]++;
        if (t->stale)
            for (size_t i = 0; i < n; i++)
                DL__STALE(t->stale, pages[i] >> 6) |= UINT64_C(1) << (pages[i] & 63);
        return SIZE_MAX;
    }
    int m = t->cfg.mode == DL_MODE_CLEAR ? 0 : t->lstride == DL__CO ? 3 : (int)t->cfg.mode; /* 3: ringco */
    int pf = t->nwords * 8 > DL_PF_MIN_BYTES || (t->versions && t->pages * 4 > DL_PF_MIN_BYTES);
    int kind = t->blk ? 1 : scattered(pages, n) ? 2 : 0;
    int variant = kind << 3 | (t->stale ? 4 : 0) | (t->versions ? 2 : 0) | pf;
    if (chkd)
        variant = 24 + ((chkd == 2) << 2 | (kind == 2) << 1 | pf) + (t->stale ? 4 : 0);
    const size_t b = write_table[m][variant](t, v, pages, n, c);
    if (b != SIZE_MAX)
        return b;
    vcpu_counters *vc = &t->vc[v];
    vc->faults += c->faults;
    vc->dirtied += c->recorded;
    t->st.faults += c->faults;
    t->st.splits += c->splits;
    t->st.pml_logged += c->logged;
    t->st.ring_pushed += c->pushed;
    if (t->cfg.mode == DL_MODE_PML) {
        vc->pml_full_exits += c->exits;
        t->st.pml_full_exits += c->exits;
    } else if (t->cfg.mode == DL_MODE_RING) {
        vc->ring_full_exits += c->exits;
        t->st.ring_full_exits += c->exits;
    }
    return SIZE_MAX;
}

/* Applies an already validated batch. */
void dl__tracker_write_unchecked(dl_tracker *t, uint32_t v, const uint64_t *pages, size_t n)
{
    if (n == 0)
        return;
    batch_counts c = {0, 0, 0, 0, 0, 0, 0};
    (void)write_batch(t, v, pages, n, 0, &c);
}

/*
 * Checked writes of large batches. A batch with a bad index changes nothing; checking
 * every index in a pass of its own before the writes reads a batch larger than the
 * caches twice (the check alone cost about as much as the bare loop's whole pass). So
 * a large batch is checked by the write loop itself, as it reads each index, and a
 * bad one undoes the writes before it:
 * - the bitmap only ever gets bits set. If it is small beside the batch (a word per 8
 *   writes or fewer) it is copied into `undo` (grown here, outside the loop) and
 *   copied back, with the stale words if kept (co-located: one copy of both), and in
 *   ring mode without them with the live words (bits_words). Else the loop journals
 *   each write's bit before it (one bit per write, 63 to a word, into `undo`) and
 *   the undo clears the bits whose journal bit is clear: the journal costs the loop
 *   two instructions a write, which at small bitmaps, where the loop is bound by its
 *   instructions rather than by memory, measured about as much as the separate check
 *   it replaces;
 * - the rest is the vCPU's small state, saved here: the counters, its PML log index
 *   and ring fill, and the log's or ring's live entries if the batch can fill it
 *   (a PML-full exit, or a ring-full reap while no live bits are kept, is only that
 *   state's bookkeeping);
 * - what could not be undone so is not done before the rest of the batch is known
 *   good: huge pages (a fault splits a block) keep the separate check, as does ring
 *   mode with live bits kept unless the copy holds them; the first write that needs
 *   them built (a page pushed before) checks the rest of the batch first unless the
 *   copy holds them, and the loop goes on unchecked.
 * Small batches, which the separate check reads from cache, keep it, and so do
 * trackers with versions attached, or a stale bitmap too large to copy (journaling
 * the stale bit too measured slower than the separate check at 4 GiB; the engine,
 * which attaches the marks, writes unchecked).
 */
#define DL_CHECKED_MIN (size_t)32768

typedef struct write_saved {
    dl_tracker_stats st;
    vcpu_counters vc;
    int64_t pml_idx;
    uint32_t ring_used, ring_dups;
    size_t entries; /* saved log or ring entries, at the start of `undo` */
    int copied;     /* the bitmap (with the stale or live words) after them, or the journal */
    size_t copy_words;
    int live_on, live_used;
} write_saved;

/* Whether a checked batch of n writes undoes with a copy of the bitmap, not a journal. */
static inline int undo_copies(const dl_tracker *t, size_t n) { return t->nwords <= n / 8; }

/* Allocates `undo` for an n-write batch (0 if no memory); write_checked frees it. */
static int undo_alloc(dl_tracker *t, size_t n)
{
    const size_t copy = bits_words(t);
    const size_t words = undo_saved_words(t) + (undo_copies(t, n) ? copy : n / 63 + 1);
    t->undo = malloc(words * sizeof(uint64_t));
    return t->undo != NULL;
}

/* Writes [0, k) of a batch stopped by a bad index, undone (see above). */
static DL_NOINLINE void write_undo(dl_tracker *t, uint32_t v, const uint64_t *pages, size_t k,
                                   const write_saved *sv)
{
    const uint64_t *jp = t->undo + undo_saved_words(t);
    if (sv->copied) {
        memcpy(t->bits, jp, sv->copy_words * sizeof(uint64_t)); /* with the stale or live words */
    } else {
        uint64_t w = 0;
        int b = -1; /* the next write's bit in w */
        for (size_t j = 0; j < k; j++) {
            if (b < 0) { /* the next word: the sentinel above the first write's bit */
                w = *jp++;
                b = 62 - __builtin_clzll(w);
            }
            if (!((w >> b) & 1))
                t->bits[t->stride * (pages[j] >> 6)] &= ~(UINT64_C(1) << (pages[j] & 63));
            b--;
        }
    }
    t->st = sv->st;
    t->vc[v] = sv->vc;
    t->live_on = sv->live_on;
    t->live_used = sv->live_used;
    if (t->pml_idx) {
        t->pml_idx[v] = sv->pml_idx;
        uint64_t *log = pml_log_base(t, v);
        memcpy(log + sv->pml_idx + 1, t->undo, sv->entries * sizeof(uint64_t));
    }
    if (t->ring_used) {
        const uint64_t *fills = t->undo + t->cfg.ring_entries; /* the others' rings kept their entries */
        for (uint32_t w = 0; w < t->cfg.vcpus; w++) {
            t->ring_used[w] = (uint32_t)fills[w];
            t->ring_dups[w] = (uint32_t)(fills[w] >> 32);
        }
        t->ring_used[v] = sv->ring_used;
        t->ring_dups[v] = sv->ring_dups;
        memcpy(t->ring + (size_t)v * t->cfg.ring_entries, t->undo, sv->entries * sizeof(uint64_t));
    }
}

/* A batch of checked indices, logging, no huge pages, no live bits kept unless the copy holds
 * them, n >= 1. */
static int write_checked(dl_tracker *t, uint32_t v, const uint64_t *pages, size_t n, size_t *bad)
{
    write_saved sv;
    sv.st = t->st;
    sv.vc = t->vc[v];
    sv.pml_idx = t->pml_idx ? t->pml_idx[v] : 0;
    sv.ring_used = t->ring_used ? t->ring_used[v] : 0;
    sv.ring_dups = t->ring_dups ? t->ring_dups[v] : 0;
    sv.entries = 0;
    sv.live_on = t->live_on;
    sv.live_used = t->live_used;
    if (t->pml_idx && n > (size_t)(sv.pml_idx + 1)) { /* more writes than free slots: may exit */
        sv.entries = (size_t)((int64_t)t->cfg.pml_entries - 1 - sv.pml_idx);
        memcpy(t->undo, pml_log_base(t, v) + sv.pml_idx + 1, sv.entries * sizeof(uint64_t));
    } else if (t->ring_used && n >= t->soft_limit - sv.ring_used) { /* may fill: reaped */
        sv.entries = sv.ring_used;
        memcpy(t->undo, t->ring + (size_t)v * t->cfg.ring_entries, sv.entries * sizeof(uint64_t));
    }
    if (t->ring_used) {
        uint64_t *fills = t->undo + t->cfg.ring_entries;
        for (uint32_t w = 0; w < t->cfg.vcpus; w++)
            fills[w] = t->ring_used[w] | (uint64_t)t->ring_dups[w] << 32;
    }
    sv.copied = undo_copies(t, n);
    /* Ring mode's live words are all zero while no live bits are kept: the copy then holds
     * the bits (and stale words) only, as before there were live words to hold (reading
     * the zeros and writing them beside the batch measured slower on first writes), and a
     * build of the live bits checks the rest of the batch first (see write_loop). */
    t->undo_live = sv.copied && t->live_on;
    sv.copy_words = t->undo_live ? bits_words(t) : t->nwords * t->stride;
    if (sv.copied) {
        uint64_t *copy = t->undo + undo_saved_words(t);
        memcpy(copy, t->bits, sv.copy_words * sizeof(uint64_t)); /* with the stale or live words */
    }
    batch_counts c = {0, 0, 0, 0, 0, 0, 0};
    const size_t b = write_batch(t, v, pages, n, sv.copied ? 2 : 1, &c);
    t->undo_live = 0;
    if (b != SIZE_MAX)
        write_undo(t, v, pages, c.done, &sv);
    free(t->undo); /* not kept: see checks_in_loop */
    t->undo = NULL;
    if (b == SIZE_MAX)
        return DL_OK;
    if (bad)
        *bad = b;
    return DL_ERR_RANGE;
}

/* Whether a batch of n indices is checked by the write loop (write_checked), which then
 * has its undo buffer. The buffer lives for the call only, so that the tracker's memory
 * (dl_tracker_memory_bytes) does not depend on the batches it was given: at most the
 * bitmap (twice, with a stale bitmap) plus a ring or log, or a bit per write. Freeing it
 * and allocating it again each call measured as cheap as keeping it (see docs/performance.rst). */
static int checks_in_loop(dl_tracker *t, size_t n)
{
    const int copies = undo_copies(t, n);
    return n >= DL_CHECKED_MIN && t->logging && !t->blk && (!t->live_on || (copies && !t->live_own)) &&
           !t->versions && (!t->stale || copies) && undo_alloc(t, n);
}

static int check_write(const dl_tracker *t, uint32_t vcpu, const void *pages, size_t n, size_t *bad)
{
    if (!t)
        return DL_ERR_INVALID;
    if (vcpu >= t->cfg.vcpus) {
        if (bad)
            *bad = SIZE_MAX;
        return DL_ERR_RANGE;
    }
    if (n && !pages)
        return DL_ERR_INVALID;
    return DL_OK;
}


int dl_tracker_write(dl_tracker *t, uint32_t vcpu, const uint64_t *pages, size_t n, size_t *bad)
{
    int rc = check_write(t, vcpu, pages, n, bad);
    if (rc)
        return rc;
    if (checks_in_loop(t, n))
        return write_checked(t, vcpu, pages, n, bad);
    size_t b = first_bad_uint64_t(pages, n, t->pages);
    if (b < n) {
        if (bad)
            *bad = b;
        return DL_ERR_RANGE;
    }
    dl__tracker_write_unchecked(t, vcpu, pages, n);
    return DL_OK;
}

int dl_tracker_write_i64(dl_tracker *t, uint32_t vcpu, const int64_t *pages, size_t n, size_t *bad)
{
    int rc = check_write(t, vcpu, pages, n, bad);
    if (rc)
        return rc;
    /* Valid int64 page indices are non-negative and share uint64's representation;
     * a negative one reads as an index >= 2^63, out of range too. */
    if (checks_in_loop(t, n))
        return write_checked(t, vcpu, (const uint64_t *)(const void *)pages, n, bad);
    size_t b = first_bad_int64_t(pages, n, t->pages);
    if (b < n) {
        if (bad)
            *bad = b;
        return DL_ERR_RANGE;
    }
    /* Valid int64 page indices are non-negative and share uint64's representation. */
    dl__tracker_write_unchecked(t, vcpu, (const uint64_t *)(const void *)pages, n);
    return DL_OK;
}

#define DL_WRITE_NARROW(fname, T)                                                                  \
    int fname(dl_tracker *t, uint32_t vcpu, const T *pages, size_t n, size_t *bad)                \
    {                                                                                              \
        int rc = check_write(t, vcpu, pages, n, bad);                                              \
        if (rc)                                                                                    \
            return rc;                                                                             \
        size_t b = first_bad_##T(pages, n, t->pages);                                              \
        if (b < n) {                                                                               \
            if (bad)                                                                               \
                *bad = b;                                                                          \
            return DL_ERR_RANGE;                                                                   \
        }                                                                                          \
        uint64_t buf[1024];                                                                        \
        for (size_t i = 0; i < n; i += 1024) {                                                     \
            size_t k = n - i < 1024 ? n - i : 1024;                                                \
            for (size_t j = 0; j < k; j++)                                                         \
                buf[j] = (uint64_t)pages[i + j];                                                   \
            dl__tracker_write_unchecked(t, vcpu, buf, k);                                          \
        }                                                                                          \
        return DL_OK;                                                                              \
    }
DL_WRITE_NARROW(dl_tracker_write_u32, uint32_t)
DL_WRITE_NARROW(dl_tracker_write_i32, int32_t)

/* ---- harvest -------------------------------------------------------------- */

uint64_t dl_tracker_pending(const dl_tracker *t)
{
    if (!t || !t->logging)
        return 0;
    uint64_t n = t->st.dirty_pages;
    if (t->ring_used)
        for (uint32_t v = 0; v < t->cfg.vcpus; v++)
            n += t->ring_used[v];
    return n;
}

/* Kick every vCPU, then drain its PML log (PML) or collect and reset its ring (ring mode).
 * Ring mode kicks too: QEMU's kvm_dirty_ring_flush kicks every vCPU out to userspace
 * (kvm_cpu_synchronize_kick_all) before it reaps, so that no entry is still in flight. */
static void sync_logs(dl_tracker *t)
{
    uint32_t nv = t->cfg.vcpus;
    if (t->cfg.mode != DL_MODE_PML && t->cfg.mode != DL_MODE_RING)
        return;
    for (uint32_t v = 0; v < nv; v++) {
        t->vc[v].kicks++;
        if (t->cfg.mode == DL_MODE_PML)
            t->pml_idx[v] = (int64_t)t->cfg.pml_entries - 1; /* drained: bits are already set */
        else
            ring_reap(t, v);
    }
    t->st.kicks += nv;
}

int dl_tracker_flush(dl_tracker *t)
{
    if (!t)
        return DL_ERR_INVALID;
    if (!t->logging)
        return DL_ERR_STATE;
    sync_logs(t);
    return DL_OK;
}

int dl_tracker_set_reap_own(dl_tracker *t, int reap_own)
{
    if (!t)
        return DL_ERR_INVALID;
    if (t->cfg.mode != DL_MODE_RING)
        return DL_ERR_MODE;
    t->reap_own = reap_own != 0;
    return DL_OK;
}

int dl_tracker_reap_own(const dl_tracker *t)
{
    return t ? t->reap_own : DL_ERR_INVALID;
}

static void apply_drop(dl_tracker *t)
{
    uint64_t p = t->drop_page;
    if (p >= t->pages)
        return;
    uint64_t *bm = t->bits + t->stride * (p >> 6);
    uint64_t m = 1ull << (p & 63);
    if (*bm & m) {
        *bm &= ~m;
        t->st.dirty_pages--;
    }
    t->drop_page = UINT64_MAX;
}

/* After a harvest that took the bitmap (every word zero, every ring collected): the next
 * round's layout of ring mode's live words (see ring_lay). */
static void ring_relay(dl_tracker *t)
{
    if (t->ring && !t->stale)
        ring_lay(t, t->live_used && t->nwords * 8 > DL_PF_MIN_BYTES);
    t->live_used = 0;
}

/* A harvest's accounting, `n` pages harvested; `taken`: the bitmap was cleared (all modes
 * but clear mode, whose harvest only reads it), which flushes the TLB if any page was set,
 * and lays ring mode's next round out. */
static void harvested(dl_tracker *t, uint64_t n, int taken)
{
    if (taken) {
        t->st.dirty_pages = 0;
        if (n)
            t->st.tlb_flushes++;
        ring_relay(t);
    }
    t->st.harvests++;
    t->st.harvested_pages += n;
}

int dl_tracker_harvest(dl_tracker *t, uint64_t *out, size_t cap, size_t *count)
{
    if (!t || !count || (cap && !out))
        return DL_ERR_INVALID;
    if (!t->logging)
        return DL_ERR_STATE;
    sync_logs(t);
    uint64_t need = t->st.dirty_pages;
    if (need > cap) {
        *count = (size_t)need;
        return DL_ERR_BUFFER;
    }
    apply_drop(t);
    uint64_t *bm = t->bits;
    size_t n;
    const int taken = t->cfg.mode != DL_MODE_CLEAR;
    if (taken)
        n = dl_bitmap_take_pages(bm, t->nwords, t->stride, out);
    else
        n = dl_bitmap_to_pages(bm, t->nwords, t->stride, out);
    harvested(t, n, taken);
    *count = n;
    return DL_OK;
}

int dl_tracker_harvest_bitmap(dl_tracker *t, uint64_t *words, size_t nwords, size_t *count)
{
    if (!t || !words)
        return DL_ERR_INVALID;
    if (nwords < t->nwords)
        return DL_ERR_BUFFER;
    if (!t->logging)
        return DL_ERR_STATE;
    sync_logs(t);
    apply_drop(t);
    uint64_t *bm = t->bits;
    uint64_t n = t->st.dirty_pages;
    const int taken = t->cfg.mode != DL_MODE_CLEAR;
    if (taken) {
        dl_bitmap_take_words(bm, t->nwords, t->stride, words);
    } else {
        for (uint64_t i = 0; i < t->nwords; i++)
            words[i] = bm[t->stride * i];
    }
    if (nwords > t->nwords)
        memset(words + t->nwords, 0, (nwords - t->nwords) * 8);
    harvested(t, n, taken);
    if (count)
        *count = (size_t)n;
    return DL_OK;
}

int dl__tracker_harvest_or(dl_tracker *t, uint64_t *dst, uint64_t *added)
{
    if (t->cfg.mode == DL_MODE_CLEAR) /* its harvest leaves the bitmap as it is: harvest_bitmap */
        return DL_ERR_MODE;
    if (!t->logging)
        return DL_ERR_STATE;
    sync_logs(t);
    apply_drop(t);
    const uint64_t n = t->st.dirty_pages; /* the pages set (as harvest_bitmap counts them) */
    *added = dl_bitmap_take_or(t->bits, t->nwords, t->stride, dst);
    harvested(t, n, 1);
    return DL_OK;
}

int dl_tracker_clear(dl_tracker *t, uint64_t first, uint64_t count, const uint64_t *mask,
                     size_t mask_words, uint64_t *cleared)
{
    if (!t)
        return DL_ERR_INVALID;
    if (t->cfg.mode != DL_MODE_CLEAR)
        return DL_ERR_MODE;
    if (!t->logging)
        return DL_ERR_STATE;
    if (first % 64 || first > t->pages || count > t->pages - first)
        return DL_ERR_RANGE;
    if (count % 64 && first + count != t->pages)
        return DL_ERR_INVALID;
    uint64_t nw = (count + 63) / 64;
    if (mask && mask_words < nw)
        return DL_ERR_BUFFER;
    uint64_t w0 = first / 64, total = 0;
    for (uint64_t j = 0; j < nw; j++) {
        uint64_t m = ~0ull;
        if (j == nw - 1 && count % 64)
            m = (1ull << (count % 64)) - 1;
        if (mask)
            m &= mask[j];
        uint64_t *const bw = &t->bits[t->stride * (w0 + j)];
        uint64_t x = *bw & m;
        if (!x)
            continue;
        *bw &= ~x;
        total += (uint64_t)__builtin_popcountll(x);
        if (t->blk) {
            uint8_t *b = &t->blk[(w0 + j) * 64 / DL_BLOCK_PAGES];
            if (*b == BLK_HUGE_RW) {
                if (t->cfg.huge == DL_HUGE_EAGER) {
                    *b = BLK_SPLIT;
                    t->st.splits++;
                } else {
                    *b = BLK_PROT;
                }
            }
        }
    }
    t->st.dirty_pages -= total;
    t->st.cleared_pages += total;
    if (total)
        t->st.tlb_flushes++;
    if (cleared)
        *cleared = total;
    return DL_OK;
}

/* ---- introspection -------------------------------------------------------- */

int dl_tracker_get_stats(const dl_tracker *t, dl_tracker_stats *out)
{
    if (!t || !out)
        return DL_ERR_INVALID;
    *out = t->st;
    return DL_OK;
}

int dl_tracker_get_vcpu_stats(const dl_tracker *t, uint32_t vcpu, dl_vcpu_stats *out)
{
    if (!t || !out)
        return DL_ERR_INVALID;
    if (vcpu >= t->cfg.vcpus)
        return DL_ERR_RANGE;
    const vcpu_counters *c = &t->vc[vcpu];
    out->writes = c->writes;
    out->faults = c->faults;
    out->pml_full_exits = c->pml_full_exits;
    out->ring_full_exits = c->ring_full_exits;
    out->kicks = c->kicks;
    out->dirtied = c->dirtied;
    out->pml_index = t->pml_idx ? t->pml_idx[vcpu] : (int64_t)t->cfg.pml_entries - 1;
    out->ring_used = t->ring_used ? t->ring_used[vcpu] : 0;
    return DL_OK;
}

int dl_tracker_pml_log(const dl_tracker *t, uint32_t vcpu, uint64_t *out, size_t cap, size_t *count)
{
    if (!t || !count || (cap && !out))
        return DL_ERR_INVALID;
    if (t->cfg.mode != DL_MODE_PML)
        return DL_ERR_MODE;
    if (vcpu >= t->cfg.vcpus)
        return DL_ERR_RANGE;
    int64_t idx = t->pml_idx[vcpu];
    size_t n = (size_t)((int64_t)t->cfg.pml_entries - 1 - idx);
    *count = n;
    if (n > cap)
        return DL_ERR_BUFFER;
    const uint64_t *log = pml_log_base(t, vcpu);
    for (size_t i = 0; i < n; i++)
        out[i] = log[idx + 1 + (int64_t)i];
    return DL_OK;
}

int dl_tracker_ring_entries(const dl_tracker *t, uint32_t vcpu, dl_ring_entry *out, size_t cap, size_t *count)
{
    if (!t || !count || (cap && !out))
        return DL_ERR_INVALID;
    if (t->cfg.mode != DL_MODE_RING)
        return DL_ERR_MODE;
    if (vcpu >= t->cfg.vcpus)
        return DL_ERR_RANGE;
    size_t n = t->ring_used[vcpu];
    *count = n;
    if (n > cap)
        return DL_ERR_BUFFER;
    const uint64_t *r = t->ring + (size_t)vcpu * t->cfg.ring_entries;
    for (size_t i = 0; i < n; i++) {
        out[i].flags = DL_RING_DIRTY;
        out[i].slot = 0;
        out[i].offset = r[i];
    }
    return DL_OK;
}

int dl_tracker_attach_versions(dl_tracker *t, uint32_t *versions, uint64_t n)
{
    if (!t)
        return DL_ERR_INVALID;
    if (!versions) {
        t->versions = NULL;
        return DL_OK;
    }
    if (n < t->pages)
        return DL_ERR_BUFFER;
    t->versions = versions;
    dl__advise_huge(versions, t->pages * sizeof(uint32_t), 1);
    return DL_OK;
}

/* Lays the tracker's words out with stale words (each bit `initial`) or without them:
 * word w at bits[stride * w], and with stale words the stale word beside it (DL__CO).
 * Ring mode's array holds 2 nwords words either way (bits_words), so it is laid out anew
 * in place (the peak memory is the final one): its live words go to a bitmap of their
 * own while the stale words are kept, and come back apart (see ring_lay) when they are
 * dropped. */
static int relayout(dl_tracker *t, int stale, uint32_t initial)
{
    const uint64_t n = t->nwords;
    const uint64_t fill = initial ? ~UINT64_C(0) : 0;
    uint64_t *b = t->bits;
    if (t->cfg.mode == DL_MODE_RING && stale) {
        uint64_t *own = dl__calloc_big(n, sizeof(uint64_t));
        if (!own)
            return DL_ERR_NOMEM;
        for (uint64_t w = 0; w < n; w++)
            own[w] = DL_LIVE(t, w);
        for (uint64_t w = n; w-- > 0;) { /* downwards: pair w is at or after word w */
            b[DL__CO * w] = b[t->stride * w];
            b[DL__CO * w + 1] = fill;
        }
        t->stride = DL__CO;
        t->stale = b + 1;
        t->live = t->live_own = own;
        t->lstride = 1;
        return DL_OK;
    }
    if (t->cfg.mode == DL_MODE_RING) {
        for (uint64_t w = 0; w < n; w++) /* upwards: word w is at or before pair w */
            b[w] = b[DL__CO * w];
        memcpy(b + n, t->live_own, n * sizeof(uint64_t));
        free(t->live_own);
        t->live_own = NULL;
        t->stale = NULL;
        ring_lay(t, 0);
        return DL_OK;
    }
    const unsigned stride = stale ? DL__CO : 1;
    uint64_t *nb = dl__calloc_big(n * stride, sizeof(uint64_t));
    if (!nb)
        return DL_ERR_NOMEM;
    for (uint64_t w = 0; w < n; w++) {
        nb[stride * w] = b[t->stride * w];
        if (stale)
            nb[stride * w + 1] = fill;
    }
    free(b);
    t->bits = nb;
    t->stride = stride;
    t->stale = stale ? nb + 1 : NULL;
    return DL_OK;
}

int dl_tracker_stale_start(dl_tracker *t, uint32_t initial)
{
    if (!t || initial > 1)
        return DL_ERR_INVALID;
    if (t->stale) {
        for (uint64_t w = 0; w < t->nwords; w++)
            DL__STALE(t->stale, w) = initial ? ~UINT64_C(0) : 0;
        return DL_OK;
    }
    return relayout(t, 1, initial);
}

int dl_tracker_stale_stop(dl_tracker *t)
{
    if (!t)
        return DL_ERR_INVALID;
    return t->stale ? relayout(t, 0, 0) : DL_OK;
}

/* The checks shared by dl_tracker_stale_get and _set. */
static int stale_range(const dl_tracker *t, uint64_t first, const void *words, size_t nwords)
{
    if (!t || (nwords && !words))
        return DL_ERR_INVALID;
    if (!t->stale)
        return DL_ERR_STATE;
    if (first > t->nwords || nwords > t->nwords - first)
        return DL_ERR_RANGE;
    return DL_OK;
}

int dl_tracker_stale_get(const dl_tracker *t, uint64_t first, uint64_t *out, size_t nwords)
{
    int rc = stale_range(t, first, out, nwords);
    if (rc)
        return rc;
    for (size_t i = 0; i < nwords; i++)
        out[i] = DL__STALE(t->stale, first + i);
    return DL_OK;
}

int dl_tracker_stale_set(dl_tracker *t, uint64_t first, const uint64_t *words, size_t nwords)
{
    int rc = stale_range(t, first, words, nwords);
    if (rc)
        return rc;
    for (size_t i = 0; i < nwords; i++)
        DL__STALE(t->stale, first + i) = words[i];
    return DL_OK;
}

int dl_tracker_inject_drop(dl_tracker *t, uint64_t page)
{
    if (!t)
        return DL_ERR_INVALID;
    if (page != UINT64_MAX && page >= t->pages)
        return DL_ERR_RANGE;
    t->drop_page = page;
    return DL_OK;
}

uint64_t dl__tracker_pages(const dl_tracker *t) { return t->pages; }
uint32_t dl__tracker_vcpus(const dl_tracker *t) { return t->cfg.vcpus; }
uint32_t dl__tracker_page_size(const dl_tracker *t) { return t->cfg.page_size; }
uint32_t *dl__tracker_versions(const dl_tracker *t) { return t->versions; }
uint64_t *dl__tracker_stale(const dl_tracker *t) { return t->stale; }
const dl_tracker_stats *dl__tracker_stats(const dl_tracker *t) { return &t->st; }
uint32_t dl__tracker_mode(const dl_tracker *t) { return t->cfg.mode; }
