/* engine.c: sending pages while the guest writes (see include/dirtylog/engine.h). */
#include "internal.h"
#include "rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "dirtylog/workload.h"

struct dl_engine {
    dl_engine_config cfg;
    dl_tracker *t;
    dl_workload *w;
    uint32_t *dst;
    uint64_t pages;
    uint32_t vcpus;
    dl_engine_state st;
    uint64_t *mask;        /* clear mode: bitmap of the last sync */
    uint64_t mask_words;
    uint64_t clear_chunk;  /* pages */
    uint8_t *cleared;      /* per clear chunk: cleared since the last mask (QEMU's clear_bmap, inverted) */
    double zero_cut;       /* zero_fraction scaled to 2^64 */
    /* post-copy */
    int pc_active;
    uint64_t *need;        /* bitmap: pages the destination lacks */
    uint8_t *received;
    dl_workload *reads;
    double read_scale, read_offset, latency;
    uint32_t prepage;
    uint64_t cursor;       /* next page the background push looks at */
    uint64_t queued;       /* requested pages whose link time is not served yet */
    uint64_t queued_zero;  /* requested zero pages not served yet (a header each) */
    uint64_t backlog;      /* bytes queued on the channel ahead of a request (0: its own channel) */
    double credit;         /* link seconds available for the next page */
    dl_postcopy_state pc;
    /* dirty-limit: per-vCPU throttles and guest clocks (vmode once any was set) */
    double *vthr;
    double *vclock;
    double *vdebt;         /* vmode: running seconds each vCPU still owes (st.debt holds none then) */
    int vmode;
    uint64_t *xcache;      /* XBZRLE: the page held in each slot (UINT64_MAX: empty) */
    uint64_t *xage;        /* XBZRLE: the sync generation at which each slot was last filled or hit */
    uint64_t gen;          /* syncs into the migration bitmap so far (QEMU's dirty_sync_count) */
    /* the migration bitmap and the rate-limited send loop */
    uint64_t *mbm;         /* dirty pages not sent yet */
    uint64_t nwords;
    uint64_t *zmap;        /* zero-page placement (NULL: scattered by zero_fraction) */
    double win_len, iter_len, iter_start;
    uint64_t budget;
    int iter_open;
    uint64_t win_normal_acc; /* normal pages sent in the current window */
    dl_engine_counters ct;
    uint32_t psize;
    /* The guest slice being applied, in pieces of at most `wbudget` writes per call. */
    uint64_t wbudget;
    int g_kind;            /* 0: none, G_SOURCE: writes to the tracker, G_DEST: post-copy accesses */
    int g_after_push;      /* post-copy: the slice of a dl_engine_postcopy_step iteration */
    uint32_t g_j;          /* vCPU being applied */
    int g_reads;           /* post-copy: 0 the vCPU's writes, 1 its reads */
    double *g_a, *g_b;     /* each vCPU's guest window of the slice */
    dl__wl_cursor g_cur;
    dl_tracker_stats g_before; /* tracker counters at the slice's start (exit costs) */
    dl_tracker_stats g_vbefore; /* tracker counters at the start of the vCPU being applied */
    double *g_cost;        /* each vCPU's exit costs in the slice (guest seconds; per-vCPU throttles) */
    double g_stall;        /* post-copy: vCPU-seconds stalled in the slice so far */
    double g_vstall;       /* post-copy: seconds the vCPU being applied has stalled in the slice */
    double g_wall;         /* the slice's length in simulated seconds */
    double g_page_t;       /* post-copy: a page's link time */
    dl__wl_ahead *ahead;   /* the guest's pages generated ahead, per vCPU and component */
    size_t ahead_ncomp;
    double xfer_part;      /* dl_engine_transfer: the part of the next byte already sent */
    double link_base;      /* send_dirty: the link's time is link_base + link_bytes / bandwidth */
    uint64_t link_bytes;
    /* dl_engine_send_dirty's guest segment: the guest runs once per segment (at most one
     * iteration), not once per chunk; the sends of the segment are listed so that each
     * write can be placed before or after its page's send (the stale bitmap). */
    int seg_open;          /* a segment's guest has not run yet: the guest lags the clock */
    uint64_t cut_left;     /* per-chunk sending: pages left of the chunk a deadline cut (its guest
                            * waits in the open segment from the chunk's start) */
    double seg_start;      /* wall clock at the segment's start */
    double seg_w0, seg_w1; /* the segment's wall interval (set when it is flushed) */
    int seg_flushing;      /* the guest slice in progress is the segment's */
    /* The sent list, one entry per bitmap word and chunk: the pages of word seg_word[x]
     * in the bits seg_bits[x], sent at seg_t[x] (the start of their chunk), in send order
     * (with the stale bitmap). The masks early, late (writes placed before or after the
     * page's send) and zero (sent as a zero page) have the same bits. */
    uint64_t *seg_word, *seg_bits, *seg_early, *seg_late, *seg_zero;
    double *seg_t;
    size_t seg_n;          /* pages listed */
    size_t seg_ne;         /* entries */
    uint64_t seg_last;     /* the last page listed */
    size_t seg_run[4];     /* starts of the ascending runs of entries (the scan wraps) */
    uint64_t *seg_filter;  /* SEG_FILTER bits: bit wi mod 2^SEG_FILTER_BITS set for each listed word wi
                            * (a quick "not listed") */
    uint32_t *seg_hit;     /* the entries whose early or late masks are set, each once */
    size_t seg_nhit;
    int seg_anyzero;       /* a zero mask is set */
    int seg_runs;
    dl__wl_pos seg_pos;
};

/* Pages of the sent list (so also entries at most): a segment is flushed before it would hold more. */
#define SEG_CAP ((size_t)1 << 15)
#define SEG_FILTER_BITS 18

/* A word's filter bit: its index modulo the filter's size. The words of a segment's sends
 * ascend, so listing them (and clearing them at the segment's end) walks the filter in
 * order rather than at random (a hash measured slower: a cache miss per listed word). */
DL_ALWAYS_INLINE uint64_t seg_hash(uint64_t wi) { return wi & ((UINT64_C(1) << SEG_FILTER_BITS) - 1); }

enum { G_SOURCE = 1, G_DEST = 2 };

/* Clears the bits `mask` of stale word wi (pages sent). */
DL_ALWAYS_INLINE void stale_clear(uint64_t *stale, uint64_t wi, uint64_t mask)
{
    DL__STALE(stale, wi) &= ~mask;
}

void dl_engine_config_init(dl_engine_config *cfg)
{
    if (!cfg)
        return;
    memset(cfg, 0, sizeof *cfg);
    cfg->bandwidth = 1.25e9;
    cfg->page_bytes = 4096 + 8;
    cfg->zero_bytes = 8 + 1;
    cfg->chunk_pages = 128;
    cfg->feedback = 1;
}

static int config_ok(const dl_engine_config *c)
{
    return c->bandwidth > 0 && isfinite(c->bandwidth) && c->page_bytes > 0 && c->chunk_pages > 0 &&
           c->cost_fault >= 0 && c->cost_pml_full >= 0 && c->cost_ring_full >= 0 && c->cost_split >= 0 &&
           c->cost_kick >= 0 && isfinite(c->cost_fault + c->cost_pml_full + c->cost_ring_full +
                                         c->cost_split + c->cost_kick) &&
           c->zero_fraction >= 0 && c->zero_fraction <= 1 && c->xbzrle_slots <= (UINT64_C(1) << 32) &&
           (c->xbzrle_slots == 0 || (c->xbzrle_ratio > 0 && isfinite(c->xbzrle_ratio)));
}

int dl_engine_create(const dl_engine_config *cfg, dl_tracker *t, dl_workload *w, uint32_t *dst_versions,
                     uint64_t n_dst, dl_engine **out)
{
    if (!out)
        return DL_ERR_INVALID;
    *out = NULL;
    if (!cfg || !t || !config_ok(cfg))
        return DL_ERR_INVALID;
    uint64_t pages = dl__tracker_pages(t);
    if (dst_versions && n_dst < pages)
        return DL_ERR_BUFFER;
    if (w && (dl_workload_pages(w) != pages || dl_workload_vcpus(w) != dl__tracker_vcpus(t)))
        return DL_ERR_INVALID;
    if (cfg->xbzrle_slots && cfg->page_bytes < dl__tracker_page_size(t))
        return DL_ERR_INVALID;
    dl_engine *e = calloc(1, sizeof *e);
    if (!e)
        return DL_ERR_NOMEM;
    e->cfg = *cfg;
    e->t = t;
    e->w = w;
    e->dst = dst_versions;
    e->pages = pages;
    e->vcpus = dl__tracker_vcpus(t);
    e->zero_cut = ldexp(cfg->zero_fraction, 64);
    e->nwords = (pages + 63) / 64;
    e->mbm = dl__calloc_big(e->nwords, sizeof(uint64_t));
    e->psize = dl__tracker_page_size(t);
    e->win_len = 0.1;
    e->iter_len = 0.05;
    e->vthr = calloc(e->vcpus, sizeof(double));
    e->vclock = calloc(e->vcpus, sizeof(double));
    e->vdebt = calloc(e->vcpus, sizeof(double));
    e->g_a = calloc(e->vcpus, sizeof(double));
    e->g_b = calloc(e->vcpus, sizeof(double));
    e->g_cost = calloc(e->vcpus, sizeof(double));
    e->wbudget = cfg->work_budget ? cfg->work_budget : DL_ENGINE_WORK_BUDGET;
    e->seg_word = malloc(SEG_CAP * sizeof(uint64_t));
    e->seg_bits = malloc(SEG_CAP * sizeof(uint64_t));
    e->seg_t = malloc(SEG_CAP * sizeof(double));
    e->seg_early = calloc(SEG_CAP, sizeof(uint64_t));
    e->seg_late = calloc(SEG_CAP, sizeof(uint64_t));
    e->seg_zero = calloc(SEG_CAP, sizeof(uint64_t));
    e->seg_filter = calloc(((size_t)1 << SEG_FILTER_BITS) / 64, sizeof(uint64_t));
    e->seg_hit = malloc(SEG_CAP * sizeof(uint32_t));
    if (cfg->xbzrle_slots) {
        e->xcache = malloc(cfg->xbzrle_slots * sizeof(uint64_t));
        e->xage = calloc(cfg->xbzrle_slots, sizeof(uint64_t));
        if (e->xcache)
            memset(e->xcache, 0xff, cfg->xbzrle_slots * sizeof(uint64_t));
    }
    if (!e->vthr || !e->vclock || !e->vdebt || !e->mbm || !e->g_a || !e->g_b || !e->g_cost ||
        (cfg->xbzrle_slots && (!e->xcache || !e->xage)) || !e->seg_word || !e->seg_bits || !e->seg_t || !e->seg_early ||
        !e->seg_late || !e->seg_zero || !e->seg_filter || !e->seg_hit) {
        dl_engine_destroy(e);
        return DL_ERR_NOMEM;
    }
    *out = e;
    return DL_OK;
}

void dl_engine_destroy(dl_engine *e)
{
    if (!e)
        return;
    free(e->mask);
    free(e->need);
    free(e->vthr);
    free(e->vclock);
    free(e->vdebt);
    free(e->g_a);
    free(e->g_b);
    free(e->g_cost);
    free(e->xcache);
    free(e->xage);
    free(e->mbm);
    free(e->zmap);
    free(e->cleared);
    free(e->ahead);
    free(e->seg_word);
    free(e->seg_bits);
    free(e->seg_t);
    free(e->seg_early);
    free(e->seg_late);
    free(e->seg_zero);
    free(e->seg_hit);
    free(e->seg_filter);
    free(e);
}

int dl_engine_get_state(const dl_engine *e, dl_engine_state *out)
{
    if (!e || !out)
        return DL_ERR_INVALID;
    *out = e->st;
    out->guest_pending = e->g_kind != 0;
    if (e->vmode) { /* what the vCPUs owe, per vCPU on average */
        double d = 0;
        for (uint32_t j = 0; j < e->vcpus; j++)
            d += e->vdebt[j];
        out->debt = d / e->vcpus;
    }
    return DL_OK;
}

int dl_engine_set_bandwidth(dl_engine *e, double bandwidth)
{
    if (!e || !(bandwidth > 0) || !isfinite(bandwidth))
        return DL_ERR_INVALID;
    /* What is already on the wire of the page in flight is bytes, not seconds. */
    double scale = e->cfg.bandwidth / bandwidth;
    e->st.carry *= scale;
    e->credit *= scale;
    e->cfg.bandwidth = bandwidth;
    /* the send loop's link time starts over here (the page in flight keeps its progress) */
    e->link_base = e->st.clock - e->st.carry;
    e->link_bytes = 0;
    return DL_OK;
}

int dl_engine_set_throttle(dl_engine *e, double throttle)
{
    if (!e || !(throttle >= 0 && throttle <= 1))
        return DL_ERR_INVALID;
    if (e->seg_open) /* dl_engine_catch_up first: the guest runs in order */
        return DL_ERR_STATE;
    e->st.throttle = throttle;
    return DL_OK;
}

int dl_engine_set_vcpu_throttle(dl_engine *e, uint32_t vcpu, double throttle)
{
    if (!e || !(throttle >= 0 && throttle <= 1))
        return DL_ERR_INVALID;
    if (e->seg_open) /* dl_engine_catch_up first: the guest runs in order */
        return DL_ERR_STATE;
    if (vcpu >= e->vcpus)
        return DL_ERR_RANGE;
    if (!e->vmode) { /* each vCPU keeps its own clock, and owes what the guest owed */
        for (uint32_t j = 0; j < e->vcpus; j++) {
            e->vclock[j] = e->st.guest_clock;
            e->vdebt[j] = e->st.debt;
        }
        e->st.debt = 0;
        e->vmode = 1;
    }
    e->vthr[vcpu] = throttle;
    return DL_OK;
}

int dl_engine_get_vcpu_clock(const dl_engine *e, uint32_t vcpu, double *clock, double *throttle)
{
    if (!e || !clock || !throttle)
        return DL_ERR_INVALID;
    if (vcpu >= e->vcpus)
        return DL_ERR_RANGE;
    *clock = e->vmode ? e->vclock[vcpu] : e->st.guest_clock;
    *throttle = e->vthr[vcpu];
    return DL_OK;
}

/* vCPU j's guest window for the common guest slice [g0, g1): its own clock, slowed
 * by its own (dirty-limit) throttle, less what it owes (paid out of its running time). */
DL_ALWAYS_INLINE void vcpu_window(dl_engine *e, uint32_t j, double g0, double g1, double *a, double *b)
{
    if (!e->vmode) {
        *a = g0;
        *b = g1;
        return;
    }
    double run = (g1 - g0) * (1.0 - e->vthr[j]);
    double pay = e->vdebt[j] < run ? e->vdebt[j] : run;
    e->vdebt[j] -= pay;
    *a = e->vclock[j];
    *b = *a + (run - pay);
    e->vclock[j] = *b;
}

/* vCPU j owes each[j] seconds of its running time (each == NULL: `mean` each; `mean`: their
 * mean). With one guest clock the vCPUs pay the mean together; under per-vCPU throttles each
 * pays its own (see owe). */
static void owe_vcpus(dl_engine *e, double mean, const double *each)
{
    if (!e->vmode) {
        e->st.debt += mean;
        return;
    }
    for (uint32_t j = 0; j < e->vcpus; j++)
        e->vdebt[j] += each ? each[j] : mean;
}

/* Every vCPU owes `each` seconds of its running time (an exit, a kick or a stall takes a
 * running vCPU's time). With one guest clock they pay it out of the next slices' common
 * time (guest_slice), which the global throttle has already scaled; under per-vCPU
 * throttles each pays its own out of its own running time (vcpu_window), not out of the
 * time before its throttle, which would take only (1 - throttle) of it. */
static void owe(dl_engine *e, double each)
{
    owe_vcpus(e, each, NULL);
}

int dl_engine_charge(dl_engine *e, double vcpu_seconds)
{
    if (!e || !(vcpu_seconds >= 0) || !isfinite(vcpu_seconds))
        return DL_ERR_INVALID;
    if (e->seg_open) /* dl_engine_catch_up first: the guest runs in order */
        return DL_ERR_STATE;
    e->st.lost += vcpu_seconds;
    if (e->cfg.feedback)
        owe(e, vcpu_seconds / e->vcpus);
    return DL_OK;
}

int dl_engine_charge_vcpus(dl_engine *e, const double *seconds, uint32_t n)
{
    if (!e || !seconds || n != e->vcpus)
        return DL_ERR_INVALID;
    double total = 0;
    for (uint32_t j = 0; j < n; j++) {
        if (!(seconds[j] >= 0) || !isfinite(seconds[j]))
            return DL_ERR_INVALID;
        total += seconds[j];
    }
    if (e->seg_open) /* dl_engine_catch_up first: the guest runs in order */
        return DL_ERR_STATE;
    e->st.lost += total;
    if (e->cfg.feedback)
        owe_vcpus(e, total / e->vcpus, seconds);
    return DL_OK;
}

static double exit_cost(const dl_engine *e, const dl_tracker_stats *a, const dl_tracker_stats *b)
{
    const dl_engine_config *c = &e->cfg;
    return (double)(b->faults - a->faults) * c->cost_fault +
           (double)(b->pml_full_exits - a->pml_full_exits) * c->cost_pml_full +
           (double)(b->ring_full_exits - a->ring_full_exits) * c->cost_ring_full +
           (double)(b->splits - a->splits) * c->cost_split + (double)(b->kicks - a->kicks) * c->cost_kick;
}

/* The guest time of `wall` seconds of simulated time: throttled, and less what the
 * vCPUs still owe to exits and stalls. Returns 0 when the guest does not run. */
static int guest_slice(dl_engine *e, double wall, double *g0, double *g1)
{
    double g = wall * (1.0 - e->st.throttle);
    if (!(g > 0))
        return 0;
    if (e->st.debt > 0) {
        double pay = e->st.debt < g ? e->st.debt : g;
        e->st.debt -= pay;
        g -= pay;
    }
    if (!(g > 0))
        return 0;
    *g0 = e->st.guest_clock;
    *g1 = *g0 + g;
    e->st.guest_clock = *g1;
    return 1;
}

static int guest_continue(dl_engine *e);
static void pc_after_push(dl_engine *e);

/* Starts a guest slice of `wall` seconds of simulated time (the clock is advanced by
 * the caller): each vCPU's window, checked, then applied in pieces (guest_continue).
 * `kind` G_SOURCE: the writes go through the tracker; G_DEST: post-copy accesses. */
static int guest_begin(dl_engine *e, double wall, int kind, double page_t, int after_push)
{
    double g0, g1;
    if (!guest_slice(e, wall, &g0, &g1) || !e->w) {
        if (after_push)
            pc_after_push(e);
        return DL_OK;
    }
    for (uint32_t j = 0; j < e->vcpus; j++) {
        uint64_t n;
        vcpu_window(e, j, g0, g1, &e->g_a[j], &e->g_b[j]);
        int rc = dl_workload_count(e->w, e->g_a[j], e->g_b[j], j, &n); /* the 2^62 bound, before any write */
        if (!rc && kind == G_DEST && e->read_scale > 0 && e->reads)
            rc = dl_workload_count(e->reads, e->g_a[j] * e->read_scale + e->read_offset,
                                   e->g_b[j] * e->read_scale + e->read_offset, j, &n);
        if (rc)
            return rc;
    }
    if (kind == G_SOURCE && dl__workload_ncomp(e->w) != e->ahead_ncomp) {
        size_t nc = dl__workload_ncomp(e->w);
        free(e->ahead);
        e->ahead = calloc((size_t)e->vcpus * (nc ? nc : 1), sizeof *e->ahead);
        e->ahead_ncomp = e->ahead ? nc : 0;
        if (!e->ahead)
            return DL_ERR_NOMEM;
    }
    e->g_kind = kind;
    e->g_after_push = after_push;
    e->g_j = 0;
    e->g_reads = 0;
    e->g_cur.comp = 0;
    e->g_cur.done = 0;
    e->g_before = *dl__tracker_stats(e->t);
    e->g_vbefore = e->g_before;
    e->g_stall = 0.0;
    e->g_vstall = 0.0;
    e->g_wall = wall;
    e->g_page_t = page_t;
    return guest_continue(e);
}

DL_ALWAYS_INLINE void segment_open(dl_engine *e);

/* The guest runs for `wall` seconds of simulated time on the source. */
static int run_guest(dl_engine *e, double wall) { return guest_begin(e, wall, G_SOURCE, 0.0, 0); }

static int pc_run_guest(dl_engine *e, double wall, double page_t);

int dl_engine_idle(dl_engine *e, double deadline)
{
    if (!e || !isfinite(deadline))
        return DL_ERR_INVALID;
    if (e->g_kind) /* finish the slice in progress first, and nothing else in this call */
        return guest_continue(e);
    if (!(deadline > e->st.clock))
        return DL_OK;
    /* On the source (outside clear mode) the idle time joins the guest's open segment, as
     * send_dirty's time does: where a caller's deadlines cut it changes nothing. */
    const int lazy = e->w && !e->mask && !e->dst && !e->pc_active;
    if (lazy)
        segment_open(e);
    else if (e->seg_open) /* dl_engine_catch_up first: the guest runs in order */
        return DL_ERR_STATE;
    double dt = deadline - e->st.clock;
    e->st.clock = deadline;
    e->st.carry = 0;
    if (lazy)
        return DL_OK;
    if (e->pc_active) /* the guest runs on the destination: its writes land there */
        return pc_run_guest(e, dt, e->cfg.page_bytes / e->cfg.bandwidth);
    return run_guest(e, dt);
}

int dl_engine_reset_carry(dl_engine *e)
{
    if (!e)
        return DL_ERR_INVALID;
    e->st.carry = 0;
    return DL_OK;
}

int dl_engine_transfer(dl_engine *e, uint64_t bytes, double deadline, uint64_t *remaining)
{
    if (!e || !remaining || isnan(deadline))
        return DL_ERR_INVALID;
    if (e->seg_open) /* dl_engine_catch_up first: the guest runs in order */
        return DL_ERR_STATE;
    if (e->g_kind) { /* finish the slice in progress first, and nothing else in this call */
        *remaining = bytes;
        return guest_continue(e);
    }
    double need = (double)bytes / e->cfg.bandwidth;
    double avail = deadline - e->st.clock;
    if (!(avail > 0)) {
        *remaining = bytes;
        return DL_OK;
    }
    /* the part of a byte already on the wire carries over: a transfer cut into any number
     * of calls sends its bytes at the same times as in one */
    need = ((double)bytes - e->xfer_part) / e->cfg.bandwidth;
    uint64_t done = bytes;
    double dt = need > 0 ? need : 0;
    if (need > avail) {
        double total = avail * e->cfg.bandwidth + e->xfer_part;
        done = total < (double)bytes ? (uint64_t)total : bytes;
        e->xfer_part = total - (double)done;
        if (!(e->xfer_part >= 0 && e->xfer_part < 1))
            e->xfer_part = 0;
        dt = avail;
    } else {
        e->xfer_part = 0;
    }
    e->st.clock += dt;
    e->st.bytes_sent += done;
    *remaining = bytes - done;
    return run_guest(e, dt);
}

int dl_engine_set_clear_mask(dl_engine *e, const uint64_t *words, size_t nwords, uint64_t chunk_pages)
{
    if (!e)
        return DL_ERR_INVALID;
    free(e->mask);
    e->mask = NULL;
    e->mask_words = 0;
    free(e->cleared);
    e->cleared = NULL;
    if (!words)
        return DL_OK;
    if (dl__tracker_mode(e->t) != DL_MODE_CLEAR)
        return DL_ERR_MODE;
    uint64_t need = (e->pages + 63) / 64;
    if (nwords < need || chunk_pages == 0 || chunk_pages % 64)
        return DL_ERR_INVALID;
    e->mask = malloc(need * 8);
    e->cleared = calloc((e->pages + chunk_pages - 1) / chunk_pages, 1);
    if (!e->mask || !e->cleared) {
        free(e->mask);
        free(e->cleared);
        e->mask = NULL;
        e->cleared = NULL;
        return DL_ERR_NOMEM;
    }
    memcpy(e->mask, words, need * 8);
    e->mask_words = need;
    e->clear_chunk = chunk_pages;
    return DL_OK;
}

/* Clear mode: clear the chunk holding page p right before its first page is sent. */
static int maybe_clear(dl_engine *e, uint64_t p)
{
    uint64_t c = p / e->clear_chunk;
    if (e->cleared[c])
        return DL_OK;
    uint64_t first = c * e->clear_chunk;
    uint64_t count = e->pages - first < e->clear_chunk ? e->pages - first : e->clear_chunk;
    uint64_t nw = (count + 63) / 64;
    int rc = dl_tracker_clear(e->t, first, count, e->mask + first / 64, nw, NULL);
    if (rc)
        return rc;
    e->st.clears++;
    e->cleared[c] = 1;
    return DL_OK;
}

/* A pre-copy send of page p: clear mode's clear before the chunk's first send, then the
 * destination holds the page's newest content (its version; its stale bit cleared). */
DL_ALWAYS_INLINE int deliver(dl_engine *e, uint64_t p, const uint32_t *src, uint32_t *dst, uint64_t *stale)
{
    if (e->mask) {
        int rc = maybe_clear(e, p);
        if (rc)
            return rc;
    }
    if (dst)
        dst[p] = src ? src[p] : 0;
    if (stale)
        stale_clear(stale, p >> 6, UINT64_C(1) << (p & 63));
    return DL_OK;
}

DL_ALWAYS_INLINE int is_zero(const dl_engine *e, const uint32_t *src, uint64_t p)
{
    if (src && src[p] != 0)
        return 0;
    if (e->zmap)
        return (int)((e->zmap[p >> 6] >> (p & 63)) & 1);
    return (double)dl_rng_at(e->cfg.zero_seed, p) < e->zero_cut;
}

/* XBZRLE: the bytes page p costs (a delta if cached and small enough). Returns 1 for
 * a delta, 2 for an overflow, 0 for a miss; the cache is updated by xbzrle_commit
 * once the page is actually sent. `ordinal` is the number of pages sent before this
 * one in the whole migration (st.pages_sent plus the pages of the current chunk): the
 * delta's size is drawn from it, so it does not depend on where a chunk or a caller's
 * deadline starts. */
static int xbzrle_cost(const dl_engine *e, uint64_t p, uint64_t ordinal, uint64_t *cost)
{
    uint64_t slot = p % e->cfg.xbzrle_slots;
    if (e->xcache[slot] != p)
        return 0;
    double u = dl_rng_unit(dl_rng_at(e->cfg.zero_seed ^ UINT64_C(0x5bd1e995), p ^ (ordinal << 20)));
    double ratio = -e->cfg.xbzrle_ratio * log1p(-u); /* exponential with mean xbzrle_ratio */
    if (ratio >= 1.0)
        return 2;
    uint64_t header = e->cfg.page_bytes - dl__tracker_page_size(e->t);
    /* on the wire: the page header, the encoding flag, a be16 length, the delta (save_xbzrle_page) */
    *cost = header + 3 + (uint64_t)(ratio * dl__tracker_page_size(e->t));
    return 1;
}

/* Generations a cached page stays fresh (QEMU's CACHED_PAGE_LIFETIME, migration/page_cache.c). */
#define XBZRLE_LIFETIME 2

/* Puts page p in its slot unless the slot holds another page filled or hit within the
 * last XBZRLE_LIFETIME syncs (QEMU's cache_insert keeps such a page). */
DL_ALWAYS_INLINE void xbzrle_insert(dl_engine *e, uint64_t p)
{
    uint64_t slot = p % e->cfg.xbzrle_slots;
    if (e->xcache[slot] != UINT64_MAX && e->xcache[slot] != p && e->xage[slot] + XBZRLE_LIFETIME > e->gen)
        return;
    e->xcache[slot] = p;
    e->xage[slot] = e->gen;
}

static void xbzrle_commit(dl_engine *e, uint64_t p, int kind, uint64_t cost)
{
    if (kind == 1) {
        e->st.xbzrle_pages++;
        /* QEMU's xbzrle-cache bytes leave the page header out (save_xbzrle_page) */
        e->st.xbzrle_bytes += cost - (e->cfg.page_bytes - dl__tracker_page_size(e->t));
        e->xage[p % e->cfg.xbzrle_slots] = e->gen; /* a hit refreshes the slot (cache_is_cached) */
    } else if (kind == 2) {
        e->st.xbzrle_overflows++;
        e->xage[p % e->cfg.xbzrle_slots] = e->gen;
    } else {
        e->st.xbzrle_misses++;
        xbzrle_insert(e, p);
    }
}

int dl_engine_send(dl_engine *e, const uint64_t *pages, uint64_t first, uint64_t n, uint64_t *pos,
                   double deadline, int zero_pass)
{
    if (!e || !pos || isnan(deadline))
        return DL_ERR_INVALID;
    if (e->seg_open) /* dl_engine_catch_up first: the guest runs in order */
        return DL_ERR_STATE;
    if (!pages && (first > e->pages || n > e->pages - first))
        return DL_ERR_RANGE;
    if (e->g_kind) /* finish the slice in progress first, and nothing else in this call */
        return guest_continue(e);
    uint32_t *src = dl__tracker_versions(e->t);
    uint32_t *dst = e->dst;
    uint64_t *stale = dl__tracker_stale(e->t);
    int do_zero = zero_pass && (e->zmap != NULL || e->cfg.zero_fraction > 0);
    const double bw = e->cfg.bandwidth;
    const double page_t = e->cfg.page_bytes / bw, zero_t = e->cfg.zero_bytes / bw;
    uint64_t sent_here = 0; /* pages sent in this call: bounded by the work budget */
    while (*pos < n && e->st.clock < deadline && sent_here < e->wbudget) {
        double avail = deadline - e->st.clock;
        uint64_t i = *pos, end = n - i < e->cfg.chunk_pages ? n : i + e->cfg.chunk_pages;
        double t_used = -e->st.carry; /* link time already spent on page i */
        uint64_t bytes = 0, zeros = 0;
        int partial = 0;
        if (pages)
            for (uint64_t k = i; k < end; k++)
                if (DL_UNLIKELY(pages[k] >= e->pages))
                    return DL_ERR_RANGE;
        for (; i < end; i++) {
            uint64_t p = pages ? pages[i] : first + i;
            int z = do_zero && is_zero(e, src, p);
            uint64_t cost = z ? e->cfg.zero_bytes : e->cfg.page_bytes;
            int xb = 0;
            if (e->xcache && !zero_pass) {
                xb = xbzrle_cost(e, p, e->st.pages_sent + (i - *pos), &cost);
            }
            double dt = z ? zero_t : (xb ? (double)cost / bw : page_t);
            if (t_used + dt > avail) {
                partial = 1;
                break;
            }
            int rc = deliver(e, p, src, dst, stale);
            if (DL_UNLIKELY(rc))
                return rc;
            t_used += dt;
            bytes += cost;
            zeros += (uint64_t)z;
            if (e->xcache && !zero_pass)
                xbzrle_commit(e, p, xb, cost);
        }
        uint64_t sent = i - *pos;
        double wall;
        if (partial) {
            /* The link works on page i until the deadline; t_used counts from now and
             * started at -carry, so this also holds when no page finished. */
            e->st.carry = avail - t_used;
            wall = avail;
            e->st.clock = deadline;
        } else {
            e->st.carry = 0;
            wall = t_used > 0 ? t_used : 0;
            e->st.clock += wall;
        }
        *pos = i;
        sent_here += sent;
        e->st.pages_sent += sent;
        e->st.zero_pages_sent += zeros;
        e->st.bytes_sent += bytes;
        int rc = run_guest(e, wall);
        if (rc || e->g_kind) /* a slice left to finish: return, the caller can be interrupted */
            return rc;
    }
    return DL_OK;
}

int dl_engine_verify(const dl_engine *e, uint64_t *out, size_t cap, uint64_t *mismatches)
{
    if (!e || !mismatches || (cap && !out))
        return DL_ERR_INVALID;
    if (e->seg_open) /* dl_engine_catch_up first: the guest runs in order */
        return DL_ERR_STATE;
    const uint32_t *src = dl__tracker_versions(e->t);
    const uint64_t *stale = dl__tracker_stale(e->t);
    if (e->g_kind)
        return DL_ERR_STATE;
    uint64_t bad = 0;
    if (stale) { /* pages written since they were last sent, or never sent */
        const uint64_t nw = (e->pages + 63) / 64;
        for (uint64_t i = 0; i < nw; i++) {
            uint64_t w = DL__STALE(stale, i);
            if (i == nw - 1 && e->pages % 64)
                w &= (UINT64_C(1) << (e->pages % 64)) - 1;
            for (; w; w &= w - 1) {
                if (bad < cap)
                    out[bad] = i * 64 + (uint64_t)__builtin_ctzll(w);
                bad++;
            }
        }
    } else if (src && e->dst) {
        for (uint64_t p = 0; p < e->pages; p++) {
            if (e->dst[p] != src[p]) {
                if (bad < cap)
                    out[bad] = p;
                bad++;
            }
        }
    } else {
        return DL_ERR_STATE;
    }
    *mismatches = bad;
    return DL_OK;
}

/* ---- post-copy --------------------------------------------------------------- */

int dl_engine_postcopy_begin(dl_engine *e, const uint64_t *stale_words, size_t nwords, uint8_t *received,
                             uint64_t n_received, dl_workload *reads, double read_scale, double read_offset,
                             double latency, uint32_t prepage)
{
    if (!e || !stale_words)
        return DL_ERR_INVALID;
    if (e->seg_open) /* dl_engine_catch_up first: the guest runs in order */
        return DL_ERR_STATE;
    if (e->pc_active || e->g_kind)
        return DL_ERR_STATE;
    uint64_t nw = (e->pages + 63) / 64;
    if (nwords < nw || (received && n_received < e->pages))
        return DL_ERR_BUFFER;
    if (!(read_scale >= 0) || !isfinite(read_scale) || !isfinite(read_offset) || !(latency >= 0) ||
        !isfinite(latency))
        return DL_ERR_INVALID;
    if (reads && (dl_workload_pages(reads) != e->pages || dl_workload_vcpus(reads) != e->vcpus))
        return DL_ERR_INVALID;
    e->need = malloc(nw * 8);
    if (!e->need)
        return DL_ERR_NOMEM;
    memcpy(e->need, stale_words, nw * 8);
    if (e->pages % 64)
        e->need[nw - 1] &= (UINT64_C(1) << (e->pages % 64)) - 1;
    memset(&e->pc, 0, sizeof e->pc);
    e->pc.remaining = dl_bitmap_count(e->need, nw);
    e->received = received;
    e->reads = reads ? reads : e->w;
    e->read_scale = read_scale;
    e->read_offset = read_offset;
    e->latency = latency;
    e->prepage = prepage;
    e->cursor = 0;
    e->queued = 0;
    e->queued_zero = 0;
    e->credit = 0;
    free(e->mask);
    e->mask = NULL;
    e->pc_active = 1;
    if (e->pc.remaining == 0)
        e->pc.done_at = e->st.clock;
    return DL_OK;
}

int dl_engine_postcopy_set_backlog(dl_engine *e, uint64_t bytes)
{
    if (!e)
        return DL_ERR_INVALID;
    e->backlog = bytes;
    return DL_OK;
}

int dl_engine_postcopy_state(const dl_engine *e, dl_postcopy_state *out)
{
    if (!e || !out)
        return DL_ERR_INVALID;
    if (!e->pc_active)
        return DL_ERR_STATE;
    *out = e->pc;
    return DL_OK;
}

/* The destination receives page p (it lacked it). */
DL_ALWAYS_INLINE void pc_receive(dl_engine *e, const uint32_t *src, uint64_t p)
{
    e->need[p >> 6] &= ~(UINT64_C(1) << (p & 63));
    if (e->received)
        e->received[p]++;
    if (e->dst)
        e->dst[p] = src ? src[p] : 0;
    uint64_t *stale = dl__tracker_stale(e->t);
    if (stale)
        stale_clear(stale, p >> 6, UINT64_C(1) << (p & 63));
    e->pc.remaining--;
}

DL_ALWAYS_INLINE int pc_lacks(const dl_engine *e, uint64_t p)
{
    return (int)((e->need[p >> 6] >> (p & 63)) & 1);
}

/* A guest access to page p on the destination: a remote fault if it lacks it.
 * Returns the stall in seconds. */
static double pc_access(dl_engine *e, const uint32_t *src, uint64_t p, double page_t)
{
    if (!pc_lacks(e, p))
        return 0.0;
    /* What the channel holds ahead of the request: what the background push has queued in
     * the socket buffers (at most what it still has to send). */
    double ahead = (double)e->pc.remaining * e->cfg.page_bytes;
    if (ahead > (double)e->backlog)
        ahead = (double)e->backlog;
    /* a requested page is tested for zero as any page sent (QEMU's ram_save_target_page): a header */
    const int do_zero = e->zmap != NULL || e->cfg.zero_fraction > 0;
    int z = do_zero && is_zero(e, src, p);
    pc_receive(e, src, p);
    e->pc.requests++;
    if (z)
        e->queued_zero++;
    else
        e->queued++;
    uint64_t q = p + 1;
    for (; q <= p + e->prepage && q < e->pages; q++) {
        if (pc_lacks(e, q)) {
            if (do_zero && is_zero(e, src, q))
                e->queued_zero++;
            else
                e->queued++;
            pc_receive(e, src, q);
            e->pc.prepaged++;
        }
    }
    /* the background push goes on after the requested pages (QEMU's get_queued_page) */
    e->cursor = q < e->pages ? q : 0;
    return 2.0 * e->latency + ahead / e->cfg.bandwidth + (z ? e->cfg.zero_bytes / e->cfg.bandwidth : page_t);
}

typedef struct pc_ctx {
    dl_engine *e;
    uint32_t *src, *dst;
} pc_ctx;

/* The guest's writes on the destination: a remote fault where it lacks the page. */
static void pc_write_sink(void *ctx, uint32_t j, const uint64_t *pages, size_t n)
{
    pc_ctx *c = ctx;
    dl_engine *e = c->e;
    (void)j;
    size_t i = 0;
    for (; i < n; i++) {
        uint64_t p = pages[i];
        if (e->g_vstall >= e->g_wall)
            break; /* waiting for a page past the slice's end: its other accesses come later */
        if (e->pc.remaining) {
            double s = pc_access(e, c->src, p, e->g_page_t);
            e->g_stall += s;
            e->g_vstall += s;
        }
        if (c->src)
            c->src[p]++;
        if (c->dst)
            c->dst[p]++;
    }
    e->pc.writes += i;
    e->st.writes += i;
}

static void pc_read_sink(void *ctx, uint32_t j, const uint64_t *pages, size_t n)
{
    pc_ctx *c = ctx;
    dl_engine *e = c->e;
    (void)j;
    size_t i = 0;
    for (; i < n && e->g_vstall < e->g_wall; i++) {
        if (e->pc.remaining) {
            double s = pc_access(e, c->src, pages[i], e->g_page_t);
            e->g_stall += s;
            e->g_vstall += s;
        }
    }
    e->pc.reads += i;
}

static void source_sink(void *ctx, uint32_t j, const uint64_t *pages, size_t n)
{
    dl_engine *e = ctx;
    dl__tracker_write_unchecked(e->t, j, pages, n);
    e->st.writes += n;
}

/* The entry listing page p in the segment's sent list, or SIZE_MAX. A run's words ascend and
 * spread about evenly (a dense stretch of the bitmap, or the scattered pages of a later round),
 * so the search starts where p's word would sit if they spread exactly evenly, then gallops to
 * it: a few loads next to each other, where a binary search over thousands of entries took a
 * dozen dependent loads (cache misses: the guest's writes ran in between). */
static size_t seg_find(const dl_engine *e, uint64_t p)
{
    const uint64_t wi = p >> 6, bit = UINT64_C(1) << (p & 63);
    const uint64_t *words = e->seg_word;
    for (int r = 0; r < e->seg_runs; r++) {
        const size_t first = e->seg_run[r], end = r + 1 < e->seg_runs ? e->seg_run[r + 1] : e->seg_ne;
        if (first >= end || wi < words[first] || wi > words[end - 1])
            continue;
        /* the first entry of word wi, in [first, end) as words[first] <= wi <= words[end - 1]:
         * lo's word is below wi (or lo == first), hi's is not */
        const uint64_t w0 = words[first], span = words[end - 1] - w0 + 1;
        size_t x = first + (size_t)((double)(wi - w0) / (double)span * (double)(end - first));
        if (x >= end)
            x = end - 1;
        size_t lo, hi;
        if (words[x] < wi) { /* gallop up */
            size_t step = 1;
            lo = x;
            hi = end - 1; /* words[end - 1] >= wi */
            while (lo + step < hi && words[lo + step] < wi) {
                lo += step;
                step *= 2;
            }
            if (lo + step < hi)
                hi = lo + step;
        } else { /* gallop down */
            size_t step = 1;
            hi = x;
            lo = first;
            while (hi > first + step && words[hi - step] >= wi) {
                hi -= step;
                step *= 2;
            }
            if (hi > first + step)
                lo = hi - step;
            if (words[lo] >= wi) /* lo == first and its word is wi */
                hi = lo;
        }
        /* words[lo] < wi <= words[hi] unless lo == hi: the first of (lo, hi] with word >= wi */
        while (hi - lo > 1) {
            const size_t mid = lo + (hi - lo) / 2;
            if (words[mid] < wi)
                lo = mid;
            else
                hi = mid;
        }
        /* a word's pages may span entries (chunks) next to each other */
        for (x = hi; x < end && words[x] == wi; x++)
            if (e->seg_bits[x] & bit)
                return x;
    }
    return SIZE_MAX;
}

/* The writes pages[0 .. n) of the segment_sink call at q (see there) to pages sent in the
 * segment, placed before or after their send. `runs` ascending runs of the sent list, spanning
 * the words [lo[r], lo[r] + width[r]]: a write outside them all was not sent in the segment
 * (most writes). That test is made for 64 writes at a time without a branch, on registers;
 * only the writes inside go on to the filter and the list. */
DL_ALWAYS_INLINE void segment_place(dl_engine *e, const uint64_t *pages, size_t n, const uint64_t *lo,
                                    const uint64_t *width, const int runs)
{
    const dl__wl_pos *q = &e->seg_pos;
    const double span = (double)(q->k1 - q->k0), w0 = e->seg_w0, len = e->seg_w1 - e->seg_w0;
    const uint64_t *filter = e->seg_filter;
#if defined(__SSE2__)
    /* Four writes at a time in 32-bit lanes where the word indices fit (nwords <= 2^32: then
     * (wi - lo) mod 2^32 <= width exactly when wi - lo <= width in 64 bits, hi < 2^32 too). */
    const int in32 = e->nwords <= (UINT64_C(1) << 32);
    const __m128i bias = _mm_set1_epi32(INT32_MIN);
    __m128i lov[4], wv[4];
    for (int r = 0; r < runs; r++) {
        lov[r] = _mm_set1_epi32((int32_t)(uint32_t)lo[r]);
        wv[r] = _mm_set1_epi32((int32_t)((uint32_t)width[r] ^ UINT32_C(0x80000000)));
    }
#endif
    for (size_t i = 0; i < n; i += 64) {
        const size_t m = n - i < 64 ? n - i : 64;
        uint64_t in = 0;
#if defined(__SSE2__)
        if (in32 && m == 64) {
            for (size_t g = 0; g < 64; g += 4) {
                const __m128i a = _mm_srli_epi64(_mm_loadu_si128((const __m128i *)(pages + i + g)), 6);
                const __m128i b = _mm_srli_epi64(_mm_loadu_si128((const __m128i *)(pages + i + g + 2)), 6);
                const __m128i wi = _mm_castps_si128(
                    _mm_shuffle_ps(_mm_castsi128_ps(a), _mm_castsi128_ps(b), _MM_SHUFFLE(2, 0, 2, 0)));
                /* outside run r: wi - lo > width, unsigned (both sides biased to compare signed) */
                __m128i out = _mm_cmpgt_epi32(_mm_xor_si128(_mm_sub_epi32(wi, lov[0]), bias), wv[0]);
                for (int r = 1; r < runs; r++)
                    out = _mm_and_si128(out, _mm_cmpgt_epi32(_mm_xor_si128(_mm_sub_epi32(wi, lov[r]), bias), wv[r]));
                in |= (uint64_t)(~_mm_movemask_ps(_mm_castsi128_ps(out)) & 0xf) << g;
            }
        } else
#endif
            for (size_t k = 0; k < m; k++) {
                const uint64_t wi = pages[i + k] >> 6;
                uint64_t inside = wi - lo[0] <= width[0];
                for (int r = 1; r < runs; r++)
                    inside |= wi - lo[r] <= width[r];
                in |= inside << k;
            }
        for (; in; in &= in - 1) {
            const size_t k = i + (size_t)__builtin_ctzll(in);
            const uint64_t wi = pages[k] >> 6, h = seg_hash(wi);
            if (!((filter[h >> 6] >> (h & 63)) & 1))
                continue; /* not sent in this segment */
            size_t x = seg_find(e, pages[k]);
            if (x == SIZE_MAX)
                continue;
            double w = w0 + ((double)(q->k + k - q->k0) + 0.5) / span * len;
            uint64_t bit = UINT64_C(1) << (pages[k] & 63);
            if (!(e->seg_early[x] | e->seg_late[x]))
                e->seg_hit[e->seg_nhit++] = (uint32_t)x;
            if (w >= e->seg_t[x] || (e->seg_zero[x] & bit))
                e->seg_late[x] |= bit;
            else
                e->seg_early[x] |= bit;
        }
    }
}

/* A segment's writes: through the tracker (which marks them stale), and each write to a
 * page sent in the segment is placed before or after that send. The write's time is its
 * place in its vCPU's writes of the segment, spread evenly over the segment's wall time;
 * a send happens at the start of its chunk. A write before the send went with the page
 * (unless the page was sent as a zero page: then the send read it before the write). */
static void segment_sink(void *ctx, uint32_t j, const uint64_t *pages, size_t n)
{
    dl_engine *e = ctx;
    dl__tracker_write_unchecked(e->t, j, pages, n);
    e->st.writes += n;
    if (!e->seg_n)
        return;
    /* the words each ascending run of the list spans */
    uint64_t lo[4], width[4];
    const int runs = e->seg_runs;
    for (int r = 0; r < runs; r++) {
        const size_t first = e->seg_run[r], end = r + 1 < runs ? e->seg_run[r + 1] : e->seg_ne;
        lo[r] = e->seg_word[first];
        width[r] = e->seg_word[end - 1] - lo[r];
    }
    switch (runs) { /* at most 4: a full list is flushed at 3 runs, and a chunk wraps at most once */
    case 1:
        segment_place(e, pages, n, lo, width, 1);
        break;
    case 2:
        segment_place(e, pages, n, lo, width, 2);
        break;
    case 3:
        segment_place(e, pages, n, lo, width, 3);
        break;
    default:
        segment_place(e, pages, n, lo, width, 4);
        break;
    }
}

/* The segment's guest slice is applied: a page written only before its send in the
 * segment is not stale (the tracker marked it), then the list starts over. Only the entries
 * a write was placed in have masks to read and clear; the filter is cleared over each run's
 * words, or entry by entry where that is less. */
static void segment_finish(dl_engine *e)
{
    uint64_t *stale = dl__tracker_stale(e->t);
    for (size_t i = 0; i < e->seg_nhit; i++) {
        const size_t x = e->seg_hit[i];
        const uint64_t only_early = e->seg_early[x] & ~e->seg_late[x];
        if (stale && only_early)
            stale_clear(stale, e->seg_word[x], only_early);
        e->seg_early[x] = e->seg_late[x] = 0;
    }
    if (e->seg_anyzero)
        memset(e->seg_zero, 0, e->seg_ne * sizeof *e->seg_zero);
    uint64_t *filter = e->seg_filter;
    const uint64_t fmask = (UINT64_C(1) << SEG_FILTER_BITS) - 1, fwords = (fmask + 1) / 64;
    for (int r = 0; r < e->seg_runs; r++) {
        const size_t first = e->seg_run[r], end = r + 1 < e->seg_runs ? e->seg_run[r + 1] : e->seg_ne;
        if (first >= end)
            continue;
        const uint64_t lo = e->seg_word[first], hi = e->seg_word[end - 1];
        const uint64_t a = (lo & fmask) / 64, b = (hi & fmask) / 64;
        const int wraps = (lo & fmask) > (hi & fmask);
        if (hi - lo > fmask) { /* the run's words cover the filter */
            memset(filter, 0, fwords * sizeof *filter);
        } else if ((wraps ? b + fwords - a : b - a) < end - first) { /* its filter words, fewer */
            if (!wraps) {
                memset(filter + a, 0, (b - a + 1) * sizeof *filter);
            } else { /* they wrap */
                memset(filter + a, 0, (fwords - a) * sizeof *filter);
                memset(filter, 0, (b + 1) * sizeof *filter);
            }
        } else {
            for (size_t x = first; x < end; x++) {
                const uint64_t h = seg_hash(e->seg_word[x]);
                filter[h >> 6] = 0;
            }
        }
    }
    e->seg_nhit = 0;
    e->seg_anyzero = 0;
    e->seg_n = 0;
    e->seg_ne = 0;
    e->seg_runs = 0;
    e->seg_flushing = 0;
}

/* Applies up to `budget` more writes (and reads) of the guest slice in progress, vCPU
 * by vCPU as dl_workload_run does; at its end charges the exits (on the source) or the
 * stalls (post-copy). Memory stays bounded: pages are generated in small pieces. */
static int guest_continue(dl_engine *e)
{
    pc_ctx c = {e, dl__tracker_versions(e->t), e->dst};
    uint64_t budget = e->wbudget;
    while (e->g_j < e->vcpus) {
        uint32_t j = e->g_j;
        uint64_t fed = 0;
        int done;
        if (e->g_kind == G_SOURCE) {
            done = dl__workload_feed_ahead(e->w, j, e->g_a[j], e->g_b[j], &e->g_cur, budget,
                                           e->seg_flushing ? segment_sink : source_sink, e, &fed,
                                           e->ahead + (size_t)j * e->ahead_ncomp, NULL, NULL, &e->seg_pos);
        } else if (!e->g_reads) {
            done = dl__workload_feed(e->w, j, e->g_a[j], e->g_b[j], &e->g_cur, budget, pc_write_sink, &c, &fed);
        } else {
            double r0 = e->g_a[j] * e->read_scale + e->read_offset, r1 = e->g_b[j] * e->read_scale + e->read_offset;
            done = dl__workload_feed(e->reads, j, r0, r1, &e->g_cur, budget, pc_read_sink, &c, &fed);
        }
        budget -= fed;
        if (!done)
            return DL_OK; /* the budget is spent: the rest at the next call */
        if (e->g_kind == G_DEST && !e->g_reads && e->read_scale > 0 && e->reads) {
            e->g_reads = 1;
        } else {
            if (e->g_kind == G_SOURCE) { /* vCPU j's own exits: the tracker's counters moved by its writes alone */
                const dl_tracker_stats *now = dl__tracker_stats(e->t);
                e->g_cost[j] = exit_cost(e, &e->g_vbefore, now);
                e->g_vbefore = *now;
            }
            e->g_reads = 0;
            e->g_j++;
            e->g_vstall = 0.0;
        }
    }
    int kind = e->g_kind;
    e->g_kind = 0;
    if (kind == G_SOURCE) {
        double cost = exit_cost(e, &e->g_before, dl__tracker_stats(e->t));
        if (cost > 0) {
            e->st.lost += cost;
            if (e->cfg.feedback) /* each vCPU its own exits (KVM's exit takes the vCPU that exits) */
                owe_vcpus(e, cost / e->vcpus, e->g_cost);
        }
        if (e->seg_flushing)
            segment_finish(e);
        return DL_OK;
    }
    if (e->g_stall > 0) {
        e->pc.stall += e->g_stall;
        owe(e, e->g_stall / e->vcpus); /* a faulting vCPU waits for its page */
    }
    if (e->g_after_push)
        pc_after_push(e);
    return DL_OK;
}

int dl_engine_resume(dl_engine *e)
{
    if (!e)
        return DL_ERR_INVALID;
    return e->g_kind ? guest_continue(e) : DL_OK;
}

/* The guest runs on the destination for `wall` seconds: its accesses fault on what it lacks. */
static int pc_run_guest(dl_engine *e, double wall, double page_t)
{
    return guest_begin(e, wall, G_DEST, page_t, 0);
}

/* After a slice of the push and the guest's accesses in it: once no page is missing,
 * the last requested ones still have to cross the link; they arrive at done_at, which
 * the caller lets the clock reach (dl_engine_idle). */
static void pc_after_push(dl_engine *e)
{
    if (e->pc.remaining != 0)
        return;
    const double page_t = e->cfg.page_bytes / e->cfg.bandwidth, zero_t = e->cfg.zero_bytes / e->cfg.bandwidth;
    double tail = (double)e->queued * page_t + (double)e->queued_zero * zero_t - e->credit;
    if (tail < 0)
        tail = 0;
    uint64_t bytes = e->queued * e->cfg.page_bytes + e->queued_zero * e->cfg.zero_bytes;
    e->pc.bytes += bytes;
    e->st.bytes_sent += bytes;
    e->st.pages_sent += e->queued + e->queued_zero;
    e->st.zero_pages_sent += e->queued_zero;
    e->queued = 0;
    e->queued_zero = 0;
    e->credit = 0;
    e->pc.done_at = e->st.clock + tail;
}

int dl_engine_postcopy_step(dl_engine *e, double deadline)
{
    if (!e || isnan(deadline))
        return DL_ERR_INVALID;
    if (e->seg_open) /* dl_engine_catch_up first: the guest runs in order */
        return DL_ERR_STATE;
    if (!e->pc_active)
        return DL_ERR_STATE;
    if (e->g_kind) /* finish the slice in progress first, and nothing else in this call */
        return guest_continue(e);
    uint32_t *src = dl__tracker_versions(e->t);
    const double page_t = e->cfg.page_bytes / e->cfg.bandwidth, zero_t = e->cfg.zero_bytes / e->cfg.bandwidth;
    /* the push tests every page it sends, as a pre-copy pass does (QEMU's ram_save_target_page tries
     * save_zero_page first in post-copy too): a zero page goes as a header */
    const int do_zero = e->zmap != NULL || e->cfg.zero_fraction > 0;
    uint64_t pushed_here = 0; /* bounded by the work budget */
    while (e->pc.remaining > 0 && e->st.clock < deadline && pushed_here < e->wbudget) {
        uint64_t push = e->pc.remaining < e->cfg.chunk_pages ? e->pc.remaining : e->cfg.chunk_pages;
        double want = (double)(e->queued + push) * page_t + (double)e->queued_zero * zero_t - e->credit;
        if (want < page_t)
            want = page_t;
        double slice = deadline - e->st.clock < want ? deadline - e->st.clock : want;
        e->st.clock += slice;
        e->credit += slice;
        /* requests first (their zero pages a header each), then the background push in page order */
        uint64_t zfit = (uint64_t)(e->credit / zero_t);
        uint64_t zserved = e->queued_zero < zfit ? e->queued_zero : zfit;
        e->queued_zero -= zserved;
        e->credit -= (double)zserved * zero_t;
        uint64_t fit = (uint64_t)(e->credit / page_t);
        uint64_t served = e->queued < fit ? e->queued : fit;
        e->queued -= served;
        e->credit -= (double)served * page_t;
        uint64_t sent = served + zserved, zeros = zserved;
        uint64_t nw = (e->pages + 63) / 64;
        while (e->credit >= page_t && e->pc.remaining > 0) {
            uint64_t wi = e->cursor >> 6;
            uint64_t word = wi < nw ? e->need[wi] & (~UINT64_C(0) << (e->cursor & 63)) : 0;
            while (!word) {
                if (++wi >= nw)
                    wi = 0;
                word = e->need[wi];
            }
            uint64_t p = (wi << 6) + (uint64_t)__builtin_ctzll(word);
            int z = do_zero && is_zero(e, src, p);
            pc_receive(e, src, p);
            e->cursor = p + 1;
            e->pc.pushed++;
            e->credit -= z ? zero_t : page_t;
            zeros += (uint64_t)z;
            sent++;
        }
        uint64_t bytes = (sent - zeros) * e->cfg.page_bytes + zeros * e->cfg.zero_bytes;
        e->pc.bytes += bytes;
        e->st.bytes_sent += bytes;
        e->st.pages_sent += sent;
        e->st.zero_pages_sent += zeros;
        pushed_here += sent + 1;
        int rc = guest_begin(e, slice, G_DEST, page_t, 1); /* then pc_after_push, at the slice's end */
        if (rc || e->g_kind) /* a slice left to finish: the rest at the next call */
            return rc;
    }
    return DL_OK;
}

/* ---- the migration bitmap and the rate-limited send loop ---------------------- */

int dl_engine_get_counters(const dl_engine *e, dl_engine_counters *out)
{
    if (!e || !out)
        return DL_ERR_INVALID;
    *out = e->ct;
    return DL_OK;
}

int dl_engine_set_rate_limit(dl_engine *e, double window, uint64_t budget, double iteration)
{
    if (!e || !(window > 0) || !isfinite(window) || !(iteration > 0) || !isfinite(iteration))
        return DL_ERR_INVALID;
    e->win_len = window;
    e->budget = budget;
    e->iter_len = iteration;
    return DL_OK;
}

int dl_engine_dirty_fill(dl_engine *e)
{
    if (!e)
        return DL_ERR_INVALID;
    memset(e->mbm, 0xff, e->nwords * 8);
    if (e->pages % 64)
        e->mbm[e->nwords - 1] = (UINT64_C(1) << (e->pages % 64)) - 1;
    e->ct.remaining = e->pages;
    e->ct.scan = 0;
    e->gen++;
    return DL_OK;
}

int dl_engine_dirty_add(dl_engine *e, const uint64_t *pages, size_t n, uint64_t *added)
{
    if (!e || !added || (n && !pages))
        return DL_ERR_INVALID;
    for (size_t i = 0; i < n; i++)
        if (pages[i] >= e->pages)
            return DL_ERR_RANGE;
    uint64_t add = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t p = pages[i], bit = UINT64_C(1) << (p & 63);
        uint64_t w = e->mbm[p >> 6];
        add += (w & bit) == 0;
        e->mbm[p >> 6] = w | bit;
    }
    e->ct.remaining += add;
    e->gen++;
    *added = add;
    return DL_OK;
}

int dl_engine_dirty_add_words(dl_engine *e, const uint64_t *words, size_t nwords, uint64_t *added)
{
    if (!e || !added || !words)
        return DL_ERR_INVALID;
    if (nwords < e->nwords)
        return DL_ERR_BUFFER;
    uint64_t add = 0;
    for (uint64_t i = 0; i < e->nwords; i++) {
        uint64_t w = words[i];
        if (i == e->nwords - 1 && e->pages % 64)
            w &= (UINT64_C(1) << (e->pages % 64)) - 1;
        add += (uint64_t)dl__popcount64(w & ~e->mbm[i]);
        e->mbm[i] |= w;
    }
    e->ct.remaining += add;
    e->gen++;
    *added = add;
    return DL_OK;
}

int dl_engine_dirty_harvest(dl_engine *e, uint64_t *added)
{
    if (!e || !added)
        return DL_ERR_INVALID;
    if (e->seg_open || e->seg_n || e->g_kind) /* dl_engine_catch_up first: the guest runs in order */
        return DL_ERR_STATE;
    uint64_t add;
    const int rc = dl__tracker_harvest_or(e->t, e->mbm, &add);
    if (rc)
        return rc;
    e->ct.remaining += add;
    e->gen++; /* every sync, whatever it finds (QEMU's migration_bitmap_sync: dirty_sync_count) */
    *added = add;
    return DL_OK;
}

int dl_engine_dirty_get(const dl_engine *e, uint64_t *words, size_t nwords)
{
    if (!e || !words)
        return DL_ERR_INVALID;
    if (nwords < e->nwords)
        return DL_ERR_BUFFER;
    memcpy(words, e->mbm, e->nwords * 8);
    return DL_OK;
}

int dl_engine_dirty_clear(dl_engine *e)
{
    if (!e)
        return DL_ERR_INVALID;
    memset(e->mbm, 0, e->nwords * 8);
    e->ct.remaining = 0;
    return DL_OK;
}

int dl_engine_set_zero_map(dl_engine *e, const uint64_t *words, size_t nwords)
{
    if (!e)
        return DL_ERR_INVALID;
    free(e->zmap);
    e->zmap = NULL;
    if (!words)
        return DL_OK;
    if (nwords < e->nwords)
        return DL_ERR_BUFFER;
    e->zmap = malloc(e->nwords * 8);
    if (!e->zmap)
        return DL_ERR_NOMEM;
    memcpy(e->zmap, words, e->nwords * 8);
    return DL_OK;
}

/* The next dirty page at or after the scan position, wrapping (remaining > 0). */
DL_ALWAYS_INLINE uint64_t next_dirty(dl_engine *e)
{
    uint64_t s = e->ct.scan < e->pages ? e->ct.scan : 0;
    if (s == 0 && e->ct.scan != 0)
        e->ct.passes++;
    uint64_t wi = s >> 6;
    uint64_t word = e->mbm[wi] & (~UINT64_C(0) << (s & 63));
    while (!word) {
        if (++wi >= e->nwords) {
            wi = 0;
            e->ct.passes++;
        }
        word = e->mbm[wi];
    }
    return (wi << 6) + (uint64_t)__builtin_ctzll(word);
}

static void close_window(dl_engine *e)
{
    double len = e->st.clock - e->ct.window_start;
    e->ct.last_length = len;
    e->ct.last_bytes = e->ct.window_bytes;
    e->ct.bandwidth = (double)e->ct.window_bytes / len;
    e->ct.windows++;
    e->ct.window_start = e->st.clock;
    e->ct.window_bytes = 0;
}

/* Runs the guest for the segment's wall time (the segment's sends are done): the slice
 * may be left partly applied (bounded work), finished by dl_engine_resume. */
static int segment_flush(dl_engine *e)
{
    double wall = e->seg_open ? e->st.clock - e->seg_start : 0.0;
    e->seg_open = 0;
    e->cut_left = 0; /* a chunk a deadline cut ends here: its other pages go in the next ones */
    e->seg_w1 = e->st.clock;
    e->seg_w0 = e->seg_w1 - wall;
    if (wall > 0) {
        e->seg_flushing = 1;
        int rc = run_guest(e, wall);
        if (rc || e->g_kind)
            return rc;
    }
    segment_finish(e); /* also when the guest did not run (paused, or paying exits back) */
    return DL_OK;
}

/* The guest's wall time runs from here in the open segment (or one opens now). */
DL_ALWAYS_INLINE void segment_open(dl_engine *e)
{
    if (!e->seg_open) {
        e->seg_open = 1;
        e->seg_start = e->st.clock;
    }
}

int dl_engine_catch_up(dl_engine *e)
{
    if (!e)
        return DL_ERR_INVALID;
    if (e->g_kind) /* finish the slice in progress first, and nothing else in this call */
        return guest_continue(e);
    if (e->seg_open || e->seg_n)
        return segment_flush(e);
    return DL_OK;
}

/* Lists the pages of bitmap word wi's bits w (k of them: not 0, all above the list's last
 * page unless a new run starts) as sent in the segment at time t, as zero pages if z. */
DL_ALWAYS_INLINE void segment_sent_word(dl_engine *e, uint64_t wi, uint64_t w, uint64_t k, double t, int z)
{
    size_t x = e->seg_ne;
    const uint64_t first = (wi << 6) + (uint64_t)__builtin_ctzll(w);
    const int new_run = e->seg_n == 0 || first < e->seg_last;
    if (new_run)
        e->seg_run[e->seg_runs++] = x;
    if (new_run || e->seg_word[x - 1] != wi || e->seg_t[x - 1] != t) {
        e->seg_word[x] = wi;
        e->seg_bits[x] = 0;
        e->seg_t[x] = t;
        const uint64_t h = seg_hash(wi);
        e->seg_filter[h >> 6] |= UINT64_C(1) << (h & 63);
        e->seg_ne = ++x;
    }
    e->seg_bits[x - 1] |= w;
    if (z) {
        e->seg_zero[x - 1] |= w;
        e->seg_anyzero = 1;
    }
    e->seg_n += k;
    e->seg_last = (wi << 6) + 63 - (uint64_t)__builtin_clzll(w);
}

/* The lowest m set bits of w (m < the bits set). */
DL_ALWAYS_INLINE uint64_t low_bits(uint64_t w, uint64_t m)
{
    const unsigned lo = (unsigned)__builtin_ctzll(w);
    const uint64_t run = w >> lo;
    if ((run & (run + 1)) == 0) /* one run of set bits (m < 64 - lo) */
        return w & ((UINT64_C(1) << (lo + m)) - 1);
    uint64_t rest = w;
    for (uint64_t i = 0; i < m; i++)
        rest &= rest - 1;
    return w & ~rest;
}

/* dl_engine_send_dirty's sends a bitmap word at a time (see there): the chunk's figures in,
 * and out as they stand after the words taken. */
struct send_words {
    uint64_t chunk, pb;                /* the chunk's size in pages, a page's bytes */
    uint64_t iter_ok, dead_ok;         /* byte counts that surely pass the tests below (integers) */
    double iter_bytes, dead_bytes;     /* the iteration's end and the deadline in bytes on the link */
    uint64_t budget, win_bytes;        /* the window's budget (0: none) and its bytes before the chunk */
    double t;                          /* the chunk's start (listed sends) */
    uint64_t *stale;
    int listed;
    uint64_t lb, bytes, normal, sent;  /* in and out: the chunk's figures so far */
};

/* The rest of page p's word, then the next words with pages while every check the per-page
 * loop would make on their pages passes (up to the bitmap's end: a wrap goes through
 * next_dirty): the same sends, in the same order. Returns whether it sent any. The per-word
 * work is kept in registers (the list's end, its page count), and a word's limits are
 * tested against one precomputed bound where they are far. */
DL_ALWAYS_INLINE int send_words(dl_engine *e, struct send_words *c, uint64_t p)
{
    uint64_t wi = p >> 6;
    uint64_t *const mbm = e->mbm;
    const uint64_t nwords = e->nwords, budget = c->budget, pb = c->pb, chunk = c->chunk;
    const uint64_t iter_ok = c->iter_ok, dead_ok = c->dead_ok;
    const double iter_bytes = c->iter_bytes, dead_bytes = c->dead_bytes;
    uint64_t *const stale = c->stale;
    const int listed = c->listed;
    uint64_t remaining = e->ct.remaining;
    uint64_t lb = c->lb, bytes = c->bytes, normal = c->normal, sent = c->sent;
    /* A word whose end (its last page's end, lb + k * pb) is below `fast` passes the three tests
     * below by their integer parts: end < dead_ok; last < iter_ok (end < iter_ok + pb; both are
     * below 2^53); and win_bytes + bytes + (k - 1) * pb < budget, that is (bytes and lb grow
     * together here) end < lb + (budget - win_bytes - bytes) + pb. Other words take the tests. */
    uint64_t fast = iter_ok + pb < dead_ok ? iter_ok + pb : dead_ok;
    if (budget) {
        const uint64_t used = c->win_bytes + bytes;
        const uint64_t room = budget > used ? budget - used : 0, bound = lb + room + pb;
        if (!room)
            fast = 0;
        else if (bound > lb && bound < fast) /* (a sum that wraps bounds nothing) */
            fast = bound;
    }
    uint64_t w = mbm[wi] & (~UINT64_C(0) << (p & 63));
    uint64_t *seg_word = e->seg_word, *seg_bits = e->seg_bits;
    double *seg_t = e->seg_t;
    uint64_t *filter = e->seg_filter;
    size_t x = 0;
    uint64_t taken = 0; /* pages listed by the short path */
    uint64_t last_w = 0, last_wi = 0;
    int took = 0;
    for (;;) {
        uint64_t k = (uint64_t)dl__popcount64(w);
        uint64_t end = lb + k * pb;
        if (DL_UNLIKELY(sent + k > chunk || !(end < fast))) {
            if (sent + k > chunk) { /* the chunk ends inside the word: its first pages */
                k = chunk - sent;
                w = low_bits(w, k);
                end = lb + k * pb;
            }
            /* the word's last page starts before the iteration's end, ends by the deadline, and
             * starts within the window's budget (the exact tests in double near the limits) */
            const uint64_t last = end - pb;
            if (!((last < iter_ok || (double)last < iter_bytes) &&
                  (end < dead_ok || (double)end <= dead_bytes) &&
                  (!budget || c->win_bytes + bytes + (k - 1) * pb < budget)))
                break;
        }
        mbm[wi] &= ~w;
        if (stale)
            stale_clear(stale, wi, w);
        if (listed) {
            if (!took) { /* the first word may continue the list's last entry or start a run */
                segment_sent_word(e, wi, w, k, c->t, 0);
                x = e->seg_ne;
            } else { /* the next ones: a word above the last, in the same chunk: a new entry */
                seg_word[x] = wi;
                seg_bits[x] = w;
                seg_t[x] = c->t;
                const uint64_t h = seg_hash(wi);
                filter[h >> 6] |= UINT64_C(1) << (h & 63);
                x++;
                taken += k;
            }
        }
        remaining -= k;
        last_w = w;
        last_wi = wi;
        lb = end;
        bytes += k * pb;
        normal += k;
        sent += k;
        took = 1;
        if (sent >= chunk || remaining == 0)
            break;
        do
            w = ++wi < nwords ? mbm[wi] : 0;
        while (!w && wi < nwords);
        if (!w)
            break;
    }
    if (took) {
        e->ct.remaining = remaining;
        e->ct.scan = (last_wi << 6) + 64 - (uint64_t)__builtin_clzll(last_w);
        if (listed && taken) {
            e->seg_ne = x;
            e->seg_n += taken;
            e->seg_last = (last_wi << 6) + 63 - (uint64_t)__builtin_clzll(last_w);
        }
        c->lb = lb;
        c->bytes = bytes;
        c->normal = normal;
        c->sent = sent;
    }
    return took;
}

int dl_engine_send_dirty(dl_engine *e, double deadline, double below_seconds, uint64_t below_bytes, int *why)
{
    if (!e || !why || isnan(deadline) || !(below_seconds >= 0))
        return DL_ERR_INVALID;
    *why = DL_SEND_DEADLINE;
    if (e->g_kind) /* finish the slice in progress first, and nothing else in this call */
        return guest_continue(e);
    uint32_t *src = dl__tracker_versions(e->t);
    uint32_t *dst = e->dst;
    uint64_t *stale = dl__tracker_stale(e->t);
    const int do_zero = e->zmap != NULL || e->cfg.zero_fraction > 0;
    const double bw = e->cfg.bandwidth;
    /* The guest runs once per segment (see segment_sink), except in clear mode (a chunk's
     * clear must come after the writes before it) and with destination versions. */
    const int seg = e->w != NULL && !e->mask && !dst;
    const int listed = seg && stale != NULL;
    /* the send loop may take a bitmap word at a time where every page costs the same and
     * a send is only the bitmaps' bits (no clear mode, destination versions or zero pages) */
    const int word_ok = !e->mask && !dst && !do_zero;
    const uint64_t pb = e->cfg.page_bytes;
    if (!seg && e->seg_open && !e->cut_left) { /* the guest's open segment (idle time) runs before per-chunk sending */
        int rc = segment_flush(e);
        if (rc || e->g_kind)
            return rc;
    }
    /* Bounded work (see dl_engine_resume): pages sent, guest writes and passes of this
     * loop count; a return at the top of the loop leaves nothing half done, so the next
     * call goes on exactly as this one would have. */
    const uint64_t sent0 = e->st.pages_sent, writes0 = e->st.writes;
    uint64_t passes = 0;
    while (e->st.clock < deadline) {
        if (passes++ && DL_UNLIKELY(passes + (e->st.pages_sent - sent0) + (e->st.writes - writes0) > e->wbudget))
            return DL_OK; /* *why DL_SEND_DEADLINE, the clock short of it: call again */
        if (!e->iter_open) {
            e->iter_open = 1;
            e->iter_start = e->st.clock;
        }
        /* A page the link is still sending (a deadline cut it) is finished before the
         * iteration can end: where a caller's deadlines fall changes nothing. */
        const int inflight = e->st.carry > 0 && e->ct.remaining > 0;
        int limited = e->budget && e->ct.window_bytes >= e->budget;
        int iter_over = limited || e->ct.remaining == 0 || e->st.clock >= e->iter_start + e->iter_len;
        if (!iter_over || inflight) {
            if (listed && (e->seg_n == SEG_CAP || e->seg_runs >= 3)) {
                int rc = segment_flush(e); /* the list is full: the guest catches up first */
                if (rc || e->g_kind)
                    return rc;
            }
            /* a listed chunk ends where the list is full */
            const uint64_t chunk = e->cut_left                                       ? e->cut_left
                                   : listed && SEG_CAP - e->seg_n < e->cfg.chunk_pages ? SEG_CAP - e->seg_n
                                                                                       : e->cfg.chunk_pages;
            /* one chunk: pages read now, the guest runs for their transfer time. The link's
             * time is link_base + bytes / bandwidth, rebased only where the link was idle,
             * so that pages end at the same times however the calls cut the sending. */
            double link = e->link_base + (double)e->link_bytes / bw;
            if (!inflight && e->st.clock > link) {
                e->link_base = e->st.clock;
                e->link_bytes = 0;
            }
            const double iter_end = e->iter_start + e->iter_len;
            const double chunk_start = e->st.clock;
            uint64_t lb = e->link_bytes;
            /* the iteration's end and the deadline as bytes on the link since link_base, a bit
             * early: the exact test (a division) runs only near them */
            const double slack = 1e-12 * (fabs(iter_end) + fabs(e->link_base) + (isfinite(deadline) ? fabs(deadline) : 0));
            const double iter_bytes = (iter_end - e->link_base - slack) * bw * (1.0 - 1e-12);
            const double dead_bytes = (deadline - e->link_base - slack) * bw * (1.0 - 1e-12);
            /* Byte counts below these pass the tests against iter_bytes (x < iter_bytes) and
             * dead_bytes (x <= dead_bytes) in double: exact integers there (below 2^53). */
            const double exact = 0x1p53;
            const uint64_t iter_ok = iter_bytes > 0 ? (uint64_t)(iter_bytes < exact ? iter_bytes : exact) : 0;
            const uint64_t dead_ok = dead_bytes >= 0 ? (uint64_t)(dead_bytes < exact ? dead_bytes : exact - 1) + 1 : 0;
            uint64_t bytes = 0, zeros = 0, normal = 0, sent = 0;
            int partial = 0;
            while (sent < chunk && e->ct.remaining > 0) {
                if (!(inflight && sent == 0)) {
                    if (e->budget && e->ct.window_bytes + bytes >= e->budget)
                        break;
                    if ((double)lb >= iter_bytes && e->link_base + (double)lb / bw >= iter_end)
                        break;
                }
                uint64_t p = next_dirty(e);
                const int xb_on = e->xcache && e->ct.passes > 0; /* on from the wrap on, as QEMU */
                if (word_ok && !xb_on && !(inflight && sent == 0)) {
                    struct send_words c = {chunk, pb, iter_ok, dead_ok, iter_bytes, dead_bytes, e->budget,
                                           e->ct.window_bytes, chunk_start, stale, listed, lb, bytes, normal, sent};
                    if (send_words(e, &c, p)) {
                        lb = c.lb;
                        bytes = c.bytes;
                        normal = c.normal;
                        sent = c.sent;
                        continue;
                    }
                }
                int z = do_zero && is_zero(e, src, p);
                uint64_t cost = z ? e->cfg.zero_bytes : e->cfg.page_bytes;
                int xb = 0;
                if (xb_on && !z)
                    xb = xbzrle_cost(e, p, e->st.pages_sent + sent, &cost);
                if ((double)(lb + cost) > dead_bytes && e->link_base + (double)(lb + cost) / bw > deadline) {
                    partial = 1;
                    e->ct.scan = p; /* the page in flight is the next one */
                    break;
                }
                int rc = deliver(e, p, src, dst, stale);
                if (DL_UNLIKELY(rc))
                    return rc;
                if (listed)
                    segment_sent_word(e, p >> 6, UINT64_C(1) << (p & 63), 1, chunk_start, z);
                e->mbm[p >> 6] &= ~(UINT64_C(1) << (p & 63));
                e->ct.remaining--;
                e->ct.scan = p + 1;
                lb += cost;
                bytes += cost;
                zeros += (uint64_t)z;
                normal += (uint64_t)(!z && xb != 1);
                sent++;
                if (xb_on && !z)
                    xbzrle_commit(e, p, xb, cost);
                else if (xb_on)
                    xbzrle_insert(e, p); /* a zero page is cached as zeros (xbzrle_cache_zero_page) */
            }
            e->link_bytes = lb;
            link = e->link_base + (double)lb / bw;
            /* Per-chunk sending (!seg): a deadline that cuts the chunk leaves its guest waiting in
             * the open segment from the chunk's start, and the next call sends the rest of the
             * chunk, then runs the guest over all of it: the same sends and writes, in the same
             * order, as with no deadline there (only dl_engine_catch_up ends the chunk early). */
            if (seg || partial)
                segment_open(e); /* from the chunk's start */
            double wall;
            if (partial) {
                if (!seg)
                    e->cut_left = chunk - sent;
                e->st.carry = deadline - link; /* link time spent on the page in flight */
                wall = deadline - e->st.clock;
                e->st.clock = deadline;
            } else {
                e->st.carry = 0;
                wall = link > e->st.clock ? link - e->st.clock : 0;
                if (link > e->st.clock)
                    e->st.clock = link;
            }
            e->st.pages_sent += sent;
            e->st.zero_pages_sent += zeros;
            e->st.bytes_sent += bytes;
            e->ct.window_bytes += bytes;
            e->win_normal_acc += normal;
            if (!seg && !partial && e->seg_open) { /* the rest of a chunk a deadline cut: all its guest */
                wall = e->st.clock - e->seg_start;
                e->seg_open = 0;
                e->cut_left = 0;
            }
            if (!seg && !partial && wall > 0) {
                int rc = run_guest(e, wall);
                if (rc || e->g_kind) /* a slice left to finish: the caller resumes it, then calls again */
                    return rc;
            }
            if (partial)
                break;
            continue;
        }
        /* the iteration is over: QEMU's migration_rate_limit */
        if (!seg && e->seg_open) { /* a chunk a deadline cut, that sent nothing more: its guest first */
            int rc = segment_flush(e);
            if (rc || e->g_kind)
                return rc;
        }
        if (limited) {
            double end = e->ct.window_start + e->win_len;
            if (end > e->st.clock) {
                double t = end < deadline ? end : deadline;
                double dt = t - e->st.clock;
                if (seg)
                    segment_open(e);
                e->st.clock = t;
                if (!seg) {
                    int rc = run_guest(e, dt);
                    if (rc || e->g_kind) /* a slice left to finish: the caller resumes it, then calls again */
                        return rc;
                }
                if (t < end)
                    break; /* the wait goes on in the next call */
            }
        }
        if (seg) { /* the guest catches up at each iteration's end (before a sync can come) */
            int rc = segment_flush(e);
            if (rc || e->g_kind) /* on the next call this iteration's end comes again, its guest run */
                return rc;
        }
        e->iter_open = 0;
        e->ct.iterations++;
        if (e->st.clock >= e->ct.window_start + e->win_len) {
            e->ct.last_pages = e->win_normal_acc;
            e->win_normal_acc = 0;
            close_window(e);
        }
        if (e->ct.remaining == 0) {
            *why = DL_SEND_EMPTY;
            return DL_OK;
        }
        double thr = below_bytes ? (double)below_bytes : e->ct.bandwidth * below_seconds;
        if ((double)e->ct.remaining * e->psize < thr) {
            *why = DL_SEND_BELOW;
            return DL_OK;
        }
    }
    /* a return inside an iteration leaves the segment open: the guest catches up at the
     * iteration's end (or dl_engine_catch_up), so where a caller's deadlines fall changes nothing */
    return DL_OK;
}
