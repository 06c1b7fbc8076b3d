/* engine.c: sending pages while the guest writes (see include/dirtylog/engine.h). */
#include "internal.h"
#include "rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

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
    uint64_t next_clear;   /* first chunk index not cleared yet in this round */
    double zero_cut;       /* zero_fraction scaled to 2^64 */
};

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
           c->zero_fraction >= 0 && c->zero_fraction <= 1;
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
    *out = e;
    return DL_OK;
}

void dl_engine_destroy(dl_engine *e)
{
    if (!e)
        return;
    free(e->mask);
    free(e);
}

int dl_engine_get_state(const dl_engine *e, dl_engine_state *out)
{
    if (!e || !out)
        return DL_ERR_INVALID;
    *out = e->st;
    return DL_OK;
}

int dl_engine_set_bandwidth(dl_engine *e, double bandwidth)
{
    if (!e || !(bandwidth > 0) || !isfinite(bandwidth))
        return DL_ERR_INVALID;
    e->cfg.bandwidth = bandwidth;
    return DL_OK;
}

int dl_engine_set_throttle(dl_engine *e, double throttle)
{
    if (!e || !(throttle >= 0 && throttle <= 1))
        return DL_ERR_INVALID;
    e->st.throttle = throttle;
    return DL_OK;
}

int dl_engine_charge(dl_engine *e, double vcpu_seconds)
{
    if (!e || !(vcpu_seconds >= 0) || !isfinite(vcpu_seconds))
        return DL_ERR_INVALID;
    e->st.lost += vcpu_seconds;
    if (e->cfg.feedback)
        e->st.debt += vcpu_seconds / e->vcpus;
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

/* The guest runs for `wall` seconds of simulated time (the clock is advanced by the caller). */
static int run_guest(dl_engine *e, double wall)
{
    double g = wall * (1.0 - e->st.throttle);
    if (!(g > 0))
        return DL_OK;
    if (e->st.debt > 0) {
        double pay = e->st.debt < g ? e->st.debt : g;
        e->st.debt -= pay;
        g -= pay;
    }
    if (!(g > 0))
        return DL_OK;
    double g0 = e->st.guest_clock, g1 = g0 + g;
    e->st.guest_clock = g1;
    if (!e->w)
        return DL_OK;
    dl_tracker_stats before = *dl__tracker_stats(e->t);
    uint64_t nw = 0;
    int rc = dl_workload_run(e->w, e->t, g0, g1, &nw);
    if (rc)
        return rc;
    e->st.writes += nw;
    double cost = exit_cost(e, &before, dl__tracker_stats(e->t));
    if (cost > 0) {
        e->st.lost += cost;
        if (e->cfg.feedback)
            e->st.debt += cost / e->vcpus;
    }
    return DL_OK;
}

int dl_engine_idle(dl_engine *e, double deadline)
{
    if (!e || isnan(deadline))
        return DL_ERR_INVALID;
    if (!(deadline > e->st.clock))
        return DL_OK;
    double dt = deadline - e->st.clock;
    e->st.clock = deadline;
    e->st.carry = 0;
    return run_guest(e, dt);
}

int dl_engine_transfer(dl_engine *e, uint64_t bytes, double deadline, uint64_t *remaining)
{
    if (!e || !remaining || isnan(deadline))
        return DL_ERR_INVALID;
    double need = (double)bytes / e->cfg.bandwidth;
    double avail = deadline - e->st.clock;
    if (!(avail > 0)) {
        *remaining = bytes;
        return DL_OK;
    }
    uint64_t done = bytes;
    double dt = need;
    if (need > avail) {
        done = (uint64_t)(avail * e->cfg.bandwidth);
        if (done > bytes)
            done = bytes;
        dt = avail;
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
    e->next_clear = 0;
    if (!words)
        return DL_OK;
    if (dl__tracker_mode(e->t) != DL_MODE_CLEAR)
        return DL_ERR_MODE;
    uint64_t need = (e->pages + 63) / 64;
    if (nwords < need || chunk_pages == 0 || chunk_pages % 64)
        return DL_ERR_INVALID;
    e->mask = malloc(need * 8);
    if (!e->mask)
        return DL_ERR_NOMEM;
    memcpy(e->mask, words, need * 8);
    e->mask_words = need;
    e->clear_chunk = chunk_pages;
    return DL_OK;
}

/* Clear mode: clear the chunk holding page p right before its first page is sent. */
static int maybe_clear(dl_engine *e, uint64_t p)
{
    uint64_t c = p / e->clear_chunk;
    if (c < e->next_clear)
        return DL_OK;
    uint64_t first = c * e->clear_chunk;
    uint64_t count = e->pages - first < e->clear_chunk ? e->pages - first : e->clear_chunk;
    uint64_t nw = (count + 63) / 64;
    int rc = dl_tracker_clear(e->t, first, count, e->mask + first / 64, nw, NULL);
    if (rc)
        return rc;
    e->st.clears++;
    e->next_clear = c + 1;
    return DL_OK;
}

DL_ALWAYS_INLINE int is_zero(const dl_engine *e, const uint32_t *src, uint64_t p)
{
    if (src && src[p] != 0)
        return 0;
    return (double)dl_rng_at(e->cfg.zero_seed, p) < e->zero_cut;
}

int dl_engine_send(dl_engine *e, const uint64_t *pages, uint64_t first, uint64_t n, uint64_t *pos,
                   double deadline, int zero_pass)
{
    if (!e || !pos || isnan(deadline))
        return DL_ERR_INVALID;
    if (!pages && (first > e->pages || n > e->pages - first))
        return DL_ERR_RANGE;
    uint32_t *src = dl__tracker_versions(e->t);
    uint32_t *dst = e->dst;
    int do_zero = zero_pass && e->cfg.zero_fraction > 0;
    const double bw = e->cfg.bandwidth;
    const double page_t = e->cfg.page_bytes / bw, zero_t = e->cfg.zero_bytes / bw;
    while (*pos < n && e->st.clock < deadline) {
        double avail = deadline - e->st.clock;
        uint64_t i = *pos, end = n - i < e->cfg.chunk_pages ? n : i + e->cfg.chunk_pages;
        double t_used = -e->st.carry; /* link time already spent on page i */
        uint64_t bytes = 0, zeros = 0;
        int partial = 0;
        for (; i < end; i++) {
            uint64_t p = pages ? pages[i] : first + i;
            if (DL_UNLIKELY(p >= e->pages))
                return DL_ERR_RANGE;
            int z = do_zero && is_zero(e, src, p);
            double dt = z ? zero_t : page_t;
            if (t_used + dt > avail) {
                partial = 1;
                break;
            }
            if (e->mask) {
                int rc = maybe_clear(e, p);
                if (rc)
                    return rc;
            }
            if (dst)
                dst[p] = src ? src[p] : 0;
            t_used += dt;
            bytes += z ? e->cfg.zero_bytes : e->cfg.page_bytes;
            zeros += (uint64_t)z;
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
            wall = t_used;
            e->st.clock += wall;
        }
        *pos = i;
        e->st.pages_sent += sent;
        e->st.zero_pages_sent += zeros;
        e->st.bytes_sent += bytes;
        int rc = run_guest(e, wall);
        if (rc)
            return rc;
    }
    return DL_OK;
}

int dl_engine_verify(const dl_engine *e, uint64_t *out, size_t cap, uint64_t *mismatches)
{
    if (!e || !mismatches || (cap && !out))
        return DL_ERR_INVALID;
    const uint32_t *src = dl__tracker_versions(e->t);
    if (!src || !e->dst)
        return DL_ERR_STATE;
    uint64_t bad = 0;
    for (uint64_t p = 0; p < e->pages; p++) {
        if (e->dst[p] != src[p]) {
            if (bad < cap)
                out[bad] = p;
            bad++;
        }
    }
    *mismatches = bad;
    return DL_OK;
}
