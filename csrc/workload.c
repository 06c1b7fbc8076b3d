/*
 * workload.c: counter-based guest write streams (see include/dirtylog/workload.h).
 *
 * Every component keeps per-vCPU rates; the number of writes of vCPU j up to
 * guest time t is a function of t alone (W_cj(t)), and write k's page a function
 * of (key, j, k) alone, so a slice [t0, t1) is the writes W(t0) .. W(t1) - 1 and
 * any slicing gives the same writes. Pages are generated in chunks into a
 * caller's buffer (dl_workload_generate) or a stack buffer fed straight into the
 * tracker (dl_workload_run): the hot loops allocate nothing.
 */
#include "internal.h"
#include "rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { WL_RANGE = 0, WL_HOTSPOT, WL_ZIPF, WL_SEQ, WL_PHASES, WL_TRACE };

#define WL_MAX_RATE 1e15
#define WL_MAX_LEVEL 0x1p62
#define WL_MAX_CYCLES 0x1p52 /* repeats of a working-set cycle that a double still counts exactly */
#define WL_CHUNK 1024

typedef struct wl_phases {
    size_t n;
    int repeat;
    double cycle;     /* sum of durations */
    double *start;    /* start time of phase i within the cycle (n) */
    double *level;    /* writes/s integrated up to the start of phase i (n + 1; [n] = one cycle) */
    double *rate;     /* writes/s of phase i (n) */
    uint64_t *set;    /* working-set pages of phase i (n) */
    uint64_t *off;    /* first position of the set in pi order (n) */
} wl_phases;

typedef struct wl_trace {
    uint64_t *times; /* records grouped by vCPU, each group in time order */
    uint64_t *pages;
    size_t *first;   /* group of vCPU j = [first[j], first[j + 1]) */
    size_t n;
    uint64_t last;   /* time of the last record (ns) */
    uint64_t period; /* ns; 0: played once. Record i of cycle m is at times[i] + m * period */
} wl_trace;

typedef struct wl_comp {
    int kind;
    uint64_t key;     /* stream key of the component (per-vCPU keys derive from it) */
    double rate;      /* constant kinds: writes/s of the whole component */
    double *share;    /* normalized share of each vCPU */
    double *vrate;    /* constant kinds: rate * share[j] */
    dl_perm perm;
    union {
        struct {
            uint64_t off, size; /* uniform over pi([off, off + size)) (mod pages) */
        } range;
        struct {
            uint64_t hot;    /* hot-set pages: pi([0, hot)) */
            uint64_t thresh; /* a write is hot iff its coin hash < thresh */
            int all;         /* 1: every write hot, 2: every write cold, 0: mixed */
        } hot;
        dl_zipf zipf;
        struct {
            uint64_t start, length, stride, step; /* step = vcpus * stride mod length */
        } seq;
        wl_phases ph;
        wl_trace tr;
    } u;
} wl_comp;

struct dl_workload {
    uint64_t pages;
    uint32_t vcpus;
    uint64_t seed;
    size_t ncomp, cap;
    wl_comp *comps;
};

/* ---- lifetime ----------------------------------------------------------------- */

int dl_workload_create(uint64_t pages, uint32_t vcpus, uint64_t seed, dl_workload **out)
{
    if (!out)
        return DL_ERR_INVALID;
    *out = NULL;
    if (pages < 1 || pages > DL_MAX_PAGES || vcpus < 1 || vcpus > DL_MAX_VCPUS)
        return DL_ERR_INVALID;
    dl_workload *w = calloc(1, sizeof *w);
    if (!w)
        return DL_ERR_NOMEM;
    w->pages = pages;
    w->vcpus = vcpus;
    w->seed = seed;
    *out = w;
    return DL_OK;
}

static void comp_free(wl_comp *c)
{
    free(c->share);
    free(c->vrate);
    if (c->kind == WL_PHASES) {
        free(c->u.ph.start);
        free(c->u.ph.level);
        free(c->u.ph.rate);
        free(c->u.ph.set);
        free(c->u.ph.off);
    } else if (c->kind == WL_TRACE) {
        free(c->u.tr.times);
        free(c->u.tr.pages);
        free(c->u.tr.first);
    }
    memset(c, 0, sizeof *c);
}

void dl_workload_destroy(dl_workload *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->ncomp; i++)
        comp_free(&w->comps[i]);
    free(w->comps);
    free(w);
}

uint64_t dl_workload_pages(const dl_workload *w) { return w ? w->pages : 0; }
uint32_t dl_workload_vcpus(const dl_workload *w) { return w ? w->vcpus : 0; }
size_t dl_workload_components(const dl_workload *w) { return w ? w->ncomp : 0; }

uint64_t dl_workload_memory_bytes(const dl_workload *w)
{
    if (!w)
        return 0;
    uint64_t b = sizeof *w + w->cap * sizeof(wl_comp);
    for (size_t i = 0; i < w->ncomp; i++) {
        const wl_comp *c = &w->comps[i];
        b += (uint64_t)w->vcpus * sizeof(double) * (c->vrate ? 2 : 1);
        if (c->kind == WL_PHASES)
            b += c->u.ph.n * (3 * sizeof(double) + 2 * sizeof(uint64_t)) + sizeof(double);
        else if (c->kind == WL_TRACE)
            b += c->u.tr.n * 2 * sizeof(uint64_t) + ((uint64_t)w->vcpus + 1) * sizeof(size_t);
    }
    return b;
}

/* ---- building components ------------------------------------------------------- */

static int rate_ok(double r) { return r >= 0.0 && r <= WL_MAX_RATE; } /* false for NaN */

static int shares_ok(const dl_workload *w, const double *shares)
{
    if (!shares)
        return 1;
    double sum = 0.0;
    for (uint32_t j = 0; j < w->vcpus; j++) {
        if (!(shares[j] >= 0.0) || !isfinite(shares[j]))
            return 0;
        sum += shares[j];
    }
    return sum > 0.0 && isfinite(sum);
}

/* Makes room for `extra` more components (all or nothing). */
static int reserve(dl_workload *w, size_t extra)
{
    if (extra > DL_WORKLOAD_MAX_COMPONENTS || w->ncomp > DL_WORKLOAD_MAX_COMPONENTS - extra)
        return DL_ERR_RANGE;
    size_t need = w->ncomp + extra;
    if (need <= w->cap)
        return DL_OK;
    size_t cap = w->cap ? w->cap : 4;
    while (cap < need)
        cap *= 2;
    wl_comp *nc = realloc(w->comps, cap * sizeof *nc);
    if (!nc)
        return DL_ERR_NOMEM;
    w->comps = nc;
    w->cap = cap;
    return DL_OK;
}

/* The key of the component that will have index `index`. */
static uint64_t comp_key(const dl_workload *w, uint64_t seed, size_t index)
{
    uint64_t k = dl_mix64(w->seed + UINT64_C(0x632be59bd9b4e019));
    k ^= dl_mix64(seed ^ UINT64_C(0x8cb92ba72f3d8dd7));
    k ^= ((uint64_t)index + 1) * DL_GOLDEN;
    return dl_mix64(k);
}

static inline uint64_t vcpu_key(const wl_comp *c, uint32_t j)
{
    return dl_mix64(c->key ^ ((uint64_t)j + 1) * UINT64_C(0xd6e8feb86659fd93));
}

/* Fills the common fields of a new component (not yet counted in w->ncomp). */
static int comp_init(dl_workload *w, wl_comp *c, int kind, double rate, const double *shares,
                     uint64_t key, int constant_rate)
{
    memset(c, 0, sizeof *c);
    c->kind = kind;
    c->key = key;
    c->rate = rate;
    uint32_t nv = w->vcpus;
    c->share = malloc(nv * sizeof(double));
    if (constant_rate)
        c->vrate = malloc(nv * sizeof(double));
    if (!c->share || (constant_rate && !c->vrate)) {
        comp_free(c);
        return DL_ERR_NOMEM;
    }
    double sum = 0.0;
    for (uint32_t j = 0; j < nv; j++)
        sum += shares ? shares[j] : 1.0;
    for (uint32_t j = 0; j < nv; j++) {
        c->share[j] = (shares ? shares[j] : 1.0) / sum;
        if (constant_rate)
            c->vrate[j] = rate * c->share[j];
    }
    return DL_OK;
}

/* Makes room for one more component and initializes it (the caller fills in its
 * kind-specific part and then counts it with w->ncomp++). */
static int comp_new(dl_workload *w, int kind, double rate, const double *shares, uint64_t key,
                    int constant_rate, wl_comp **out)
{
    int rc = reserve(w, 1);
    if (rc)
        return rc;
    *out = &w->comps[w->ncomp];
    return comp_init(w, *out, kind, rate, shares, key, constant_rate);
}

/* The key of a component's page permutation, derived from its stream key. */
static uint64_t perm_key(uint64_t key) { return dl_mix64(key ^ UINT64_C(0x2545f4914f6cdd1d)); }

int dl_workload_add_uniform(dl_workload *w, double rate, const double *shares, uint64_t seed)
{
    if (!w)
        return DL_ERR_INVALID;
    return dl_workload_add_uniform_range(w, rate, 0, w->pages, shares, seed);
}

int dl_workload_add_uniform_range(dl_workload *w, double rate, uint64_t start, uint64_t length,
                                  const double *shares, uint64_t seed)
{
    if (!w || !rate_ok(rate) || !shares_ok(w, shares) || length < 1)
        return DL_ERR_INVALID;
    if (start >= w->pages || length > w->pages - start)
        return DL_ERR_RANGE;
    wl_comp *c;
    int rc = comp_new(w, WL_RANGE, rate, shares, comp_key(w, seed, w->ncomp), 1, &c);
    if (rc)
        return rc;
    dl_perm_init(&c->perm, 1, 0); /* identity: a contiguous range needs no permutation */
    /* the same draws as over all of memory (start 0, length pages), shifted: over all of memory
     * this is the uniform component's stream exactly */
    c->u.range.off = start;
    c->u.range.size = length;
    w->ncomp++;
    return DL_OK;
}

int dl_workload_add_hotspot(dl_workload *w, double rate, uint64_t hot_pages, double hot_share,
                            const double *shares, uint64_t seed)
{
    if (!w || !rate_ok(rate) || !shares_ok(w, shares) || !(hot_share >= 0.0 && hot_share <= 1.0))
        return DL_ERR_INVALID;
    if (hot_pages > w->pages)
        return DL_ERR_RANGE;
    uint64_t key = comp_key(w, seed, w->ncomp);
    wl_comp *c;
    int rc = comp_new(w, WL_HOTSPOT, rate, shares, key, 1, &c);
    if (rc)
        return rc;
    dl_perm_init(&c->perm, w->pages, perm_key(key));
    c->u.hot.hot = hot_pages;
    if (hot_pages == 0 || (hot_share <= 0.0 && hot_pages < w->pages))
        c->u.hot.all = 2; /* every write cold */
    else if (hot_pages == w->pages || hot_share >= 1.0)
        c->u.hot.all = 1; /* every write hot */
    else
        c->u.hot.all = 0;
    c->u.hot.thresh = hot_share >= 1.0 ? UINT64_MAX : (uint64_t)(hot_share * 0x1p64);
    w->ncomp++;
    return DL_OK;
}

int dl_workload_add_zipf(dl_workload *w, double rate, double s, const double *shares, uint64_t seed)
{
    if (!w || !rate_ok(rate) || !shares_ok(w, shares) || !(s > 0.0 && s <= 100.0))
        return DL_ERR_INVALID;
    uint64_t key = comp_key(w, seed, w->ncomp);
    wl_comp *c;
    int rc = comp_new(w, WL_ZIPF, rate, shares, key, 1, &c);
    if (rc)
        return rc;
    dl_perm_init(&c->perm, w->pages, perm_key(key));
    dl_zipf_init(&c->u.zipf, w->pages, s);
    w->ncomp++;
    return DL_OK;
}

int dl_workload_add_sequential(dl_workload *w, double rate, uint64_t start, uint64_t length,
                               uint64_t stride, const double *shares)
{
    if (!w || !rate_ok(rate) || !shares_ok(w, shares) || length < 1 || stride >= (UINT64_C(1) << 63))
        return DL_ERR_INVALID;
    if (start >= w->pages || length > w->pages - start)
        return DL_ERR_RANGE;
    wl_comp *c;
    int rc = comp_new(w, WL_SEQ, rate, shares, 0, 1, &c);
    if (rc)
        return rc;
    dl_perm_init(&c->perm, 1, 0);
    c->u.seq.start = start;
    c->u.seq.length = length;
    c->u.seq.stride = stride % length;
    c->u.seq.step = dl_mulmod(w->vcpus, stride, length);
    w->ncomp++;
    return DL_OK;
}

int dl_workload_add_phases(dl_workload *w, const double *durations, const uint64_t *set_pages,
                           const double *rates, size_t nphases, int repeat, const double *shares,
                           uint64_t seed)
{
    if (!w || !durations || !set_pages || !rates || nphases < 1 || nphases > DL_WORKLOAD_MAX_PHASES ||
        !shares_ok(w, shares))
        return DL_ERR_INVALID;
    double T = 0.0, L = 0.0;
    for (size_t i = 0; i < nphases; i++) {
        if (!(durations[i] > 0.0) || !isfinite(durations[i]) || !rate_ok(rates[i]))
            return DL_ERR_INVALID;
        if (set_pages[i] < 1 || set_pages[i] > w->pages)
            return DL_ERR_RANGE;
        T += durations[i];
        L += durations[i] * rates[i];
    }
    if (!isfinite(T) || !isfinite(L) || L >= WL_MAX_LEVEL)
        return DL_ERR_RANGE;
    uint64_t key = comp_key(w, seed, w->ncomp);
    wl_comp *c;
    int rc = comp_new(w, WL_PHASES, 0.0, shares, key, 0, &c);
    if (rc)
        return rc;
    wl_phases *p = &c->u.ph;
    p->n = nphases;
    p->repeat = repeat != 0;
    p->start = malloc(nphases * sizeof(double));
    p->level = malloc((nphases + 1) * sizeof(double));
    p->rate = malloc(nphases * sizeof(double));
    p->set = malloc(nphases * sizeof(uint64_t));
    p->off = malloc(nphases * sizeof(uint64_t));
    if (!p->start || !p->level || !p->rate || !p->set || !p->off) {
        comp_free(c);
        return DL_ERR_NOMEM;
    }
    double t = 0.0, lv = 0.0;
    uint64_t off = 0;
    for (size_t i = 0; i < nphases; i++) {
        p->start[i] = t;
        p->level[i] = lv;
        p->rate[i] = rates[i];
        p->set[i] = set_pages[i];
        p->off[i] = off;
        t += durations[i];
        lv += durations[i] * rates[i];
        off = (off + set_pages[i]) % w->pages;
    }
    p->level[nphases] = lv;
    p->cycle = t;
    dl_perm_init(&c->perm, w->pages, perm_key(key));
    w->ncomp++;
    return DL_OK;
}

int dl_workload_add_classes(dl_workload *w, const uint64_t *class_pages, const double *page_rates,
                            size_t nclasses, const double *shares, uint64_t seed)
{
    if (!w || (nclasses && (!class_pages || !page_rates)) || !shares_ok(w, shares))
        return DL_ERR_INVALID;
    uint64_t total = 0;
    size_t used = 0;
    for (size_t i = 0; i < nclasses; i++) {
        if (!rate_ok(page_rates[i]))
            return DL_ERR_INVALID;
        if (class_pages[i] > w->pages - total)
            return DL_ERR_RANGE;
        total += class_pages[i];
        if (class_pages[i] == 0)
            continue;
        used++;
        double n = (double)class_pages[i];
        double r = class_pages[i] == 1 ? page_rates[i] : page_rates[i] / -log1p(-1.0 / n);
        if (!rate_ok(r))
            return DL_ERR_RANGE;
    }
    int rc = reserve(w, used);
    if (rc)
        return rc;
    size_t first = w->ncomp;
    /* One permutation for all the classes of this call, so their ranges are disjoint. */
    uint64_t pkey = perm_key(comp_key(w, seed, first));
    uint64_t off = 0;
    for (size_t i = 0; i < nclasses; i++) {
        uint64_t n = class_pages[i];
        if (n == 0)
            continue;
        double r = n == 1 ? page_rates[i] : page_rates[i] / -log1p(-1.0 / (double)n);
        wl_comp *c = &w->comps[w->ncomp];
        rc = comp_init(w, c, WL_RANGE, r, shares, comp_key(w, seed, w->ncomp), 1);
        if (rc) {
            while (w->ncomp > first)
                comp_free(&w->comps[--w->ncomp]);
            return rc;
        }
        dl_perm_init(&c->perm, w->pages, pkey);
        c->u.range.off = off;
        c->u.range.size = n;
        off += n;
        w->ncomp++;
    }
    return DL_OK;
}

int dl_workload_add_trace(dl_workload *w, const uint64_t *times_ns, const uint64_t *pages,
                          const uint32_t *vcpus, size_t n, size_t *bad)
{
    if (!w || (n && (!times_ns || !pages)))
        return DL_ERR_INVALID;
    uint32_t nv = w->vcpus;
    for (size_t i = 0; i < n; i++) {
        if (i && times_ns[i] < times_ns[i - 1]) {
            if (bad)
                *bad = i;
            return DL_ERR_INVALID;
        }
        if (pages[i] >= w->pages || (vcpus && vcpus[i] >= nv)) {
            if (bad)
                *bad = i;
            return DL_ERR_RANGE;
        }
    }
    wl_comp *c;
    int rc = comp_new(w, WL_TRACE, 0.0, NULL, 0, 0, &c);
    if (rc)
        return rc;
    wl_trace *tr = &c->u.tr;
    tr->n = n;
    tr->last = n ? times_ns[n - 1] : 0;
    tr->period = 0;
    tr->times = malloc((n ? n : 1) * sizeof(uint64_t));
    tr->pages = malloc((n ? n : 1) * sizeof(uint64_t));
    tr->first = calloc((size_t)nv + 1, sizeof(size_t));
    if (!tr->times || !tr->pages || !tr->first) {
        comp_free(c);
        return DL_ERR_NOMEM;
    }
    /* Counting sort by vCPU; each group keeps the records' (time) order. */
    for (size_t i = 0; i < n; i++)
        tr->first[(vcpus ? vcpus[i] : (uint32_t)(i % nv)) + 1]++;
    for (uint32_t j = 0; j < nv; j++)
        tr->first[j + 1] += tr->first[j];
    size_t *fill = calloc(nv, sizeof(size_t));
    if (!fill) {
        comp_free(c);
        return DL_ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t j = vcpus ? vcpus[i] : (uint32_t)(i % nv);
        size_t at = tr->first[j] + fill[j]++;
        tr->times[at] = times_ns[i];
        tr->pages[at] = pages[i];
    }
    free(fill);
    dl_perm_init(&c->perm, 1, 0);
    w->ncomp++;
    return DL_OK;
}

int dl_workload_set_trace_period(dl_workload *w, size_t component, uint64_t period_ns)
{
    if (!w || component >= w->ncomp)
        return DL_ERR_INVALID;
    wl_comp *c = &w->comps[component];
    if (c->kind != WL_TRACE)
        return DL_ERR_MODE;
    wl_trace *tr = &c->u.tr;
    if (period_ns && (!tr->n || period_ns <= tr->last))
        return DL_ERR_INVALID;
    tr->period = period_ns;
    return DL_OK;
}

/* ---- counting ------------------------------------------------------------------ */

/* Writes done once the integrated rate reaches x >= 0 (x < 2^62). */
static inline uint64_t level_count(double x) { return (uint64_t)(x + x * 0x1p-40); }

/* Writes/s of a phases component integrated over [0, t). */
static double phases_level(const wl_phases *p, double t)
{
    double m = 0.0, u = t;
    if (p->repeat) {
        m = floor(t / p->cycle);
        u = t - m * p->cycle;
        if (u < 0.0) {
            m -= 1.0;
            u += p->cycle;
        } else if (u >= p->cycle) {
            m += 1.0;
            u -= p->cycle;
        }
        if (u < 0.0)
            u = 0.0;
    }
    /* the last phase starting at or before u */
    size_t lo = 0, hi = p->n; /* start[lo] <= u < start[hi] */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (p->start[mid] <= u)
            lo = mid;
        else
            hi = mid;
    }
    double d = u - p->start[lo];
    if (d < 0.0)
        d = 0.0;
    return m * p->level[p->n] + p->level[lo] + d * p->rate[lo];
}

/* Records of vCPU j's group with time < thr. */
static inline uint64_t trace_below(const wl_trace *tr, uint32_t j, uint64_t thr)
{
    size_t lo = tr->first[j], hi = tr->first[j + 1];
    size_t a = lo, b = hi; /* first index with times[i] >= thr */
    while (a < b) {
        size_t mid = a + (b - a) / 2;
        if (tr->times[mid] < thr)
            a = mid + 1;
        else
            b = mid;
    }
    return a - lo;
}

/* Records of vCPU j before guest time t (all cycles of a repeating trace). Every
 * cycle before the one holding t * 1e9 is complete, as the period exceeds the last
 * record's time. DL_ERR_RANGE past 2^62 writes. */
static int trace_count_at(const wl_trace *tr, uint32_t j, double t, uint64_t *out)
{
    uint64_t len = tr->first[j + 1] - tr->first[j];
    double x = t * 1e9;
    if (!tr->period) {
        *out = x >= 0x1p64 ? len : trace_below(tr, j, (uint64_t)ceil(x));
        return DL_OK;
    }
    if (!(x < 0x1p63))
        return DL_ERR_RANGE;
    uint64_t thr = (uint64_t)ceil(x); /* records with time < t * 1e9 */
    uint64_t m = thr / tr->period;
    if (len && m >= (uint64_t)WL_MAX_LEVEL / len)
        return DL_ERR_RANGE;
    *out = m * len + trace_below(tr, j, thr - m * tr->period);
    return DL_OK;
}

/* Pages of vCPU j's records k .. k + n - 1 (a repeating trace wraps around its group). */
static void fill_trace(const wl_trace *tr, uint32_t j, uint64_t k, size_t n, uint64_t *out)
{
    const uint64_t *g = tr->pages + tr->first[j];
    uint64_t len = tr->first[j + 1] - tr->first[j];
    if (!n || !len)
        return;
    uint64_t i = tr->period ? k % len : k;
    while (n) {
        size_t m = (uint64_t)n < len - i ? n : (size_t)(len - i);
        memcpy(out, g + i, m * sizeof(uint64_t));
        out += m;
        n -= m;
        i = 0;
    }
}

/* W_cj(t): the writes of component c, vCPU j, in [0, t). DL_ERR_RANGE past 2^62. */
static int comp_count_at(const wl_comp *c, uint32_t j, double t, uint64_t *out)
{
    double x;
    if (c->kind == WL_TRACE)
        return trace_count_at(&c->u.tr, j, t, out);
    if (c->kind == WL_PHASES) {
        /* a repeating cycle is located with doubles: past 2^52 cycles they cannot count it */
        if (c->u.ph.repeat && !(t / c->u.ph.cycle < WL_MAX_CYCLES))
            return DL_ERR_RANGE;
        x = phases_level(&c->u.ph, t) * c->share[j];
    } else
        x = c->vrate[j] * t;
    if (!(x < WL_MAX_LEVEL))
        return DL_ERR_RANGE;
    *out = x > 0.0 ? level_count(x) : 0;
    return DL_OK;
}

/* Writes k0 .. k1 - 1 of component c for vCPU j in [t0, t1). */
static int comp_span(const wl_comp *c, uint32_t j, double t0, double t1, uint64_t *k0, uint64_t *k1)
{
    int rc = comp_count_at(c, j, t0, k0);
    if (!rc)
        rc = comp_count_at(c, j, t1, k1);
    if (rc)
        return rc;
    if (*k1 < *k0) /* a rounding wobble at a phase boundary; never go backwards */
        *k1 = *k0;
    return DL_OK;
}

static int times_ok(double t0, double t1) { return t0 >= 0.0 && t1 >= t0 && isfinite(t1); }

/* ---- page generation ----------------------------------------------------------- */

/* Pages of the uniform-over-a-range kinds for writes k .. k + n - 1. */
static void fill_range(const wl_comp *c, uint64_t pages, uint64_t vkey, uint64_t k, size_t n, uint64_t *out)
{
    const uint64_t size = c->u.range.size, off = c->u.range.off;
    uint64_t ctr = vkey + (k + 1) * DL_GOLDEN;
    if (c->perm.identity && off == 0) {
        for (size_t i = 0; i < n; i++, ctr += DL_GOLDEN)
            out[i] = dl_mulhi(dl_mix64(ctr), size);
        return;
    }
    for (size_t i = 0; i < n; i++, ctr += DL_GOLDEN) {
        uint64_t y = off + dl_mulhi(dl_mix64(ctr), size);
        y -= y >= pages ? pages : 0;
        out[i] = dl_perm_apply(&c->perm, y);
    }
}

static void fill_hotspot(const wl_comp *c, uint64_t pages, uint64_t vkey, uint64_t k, size_t n, uint64_t *out)
{
    const uint64_t hot = c->u.hot.hot, cold = pages - hot, thresh = c->u.hot.thresh;
    const int all = c->u.hot.all;
    uint64_t ctr = vkey + (k + 1) * DL_GOLDEN;
    for (size_t i = 0; i < n; i++, ctr += DL_GOLDEN) {
        uint64_t h = dl_mix64(ctr);
        int is_hot = all == 1 || (all == 0 && h < thresh);
        uint64_t g = dl_rng_next(h);
        uint64_t base = is_hot ? 0 : hot;
        uint64_t size = is_hot ? hot : cold;
        out[i] = dl_perm_apply(&c->perm, base + dl_mulhi(g, size));
    }
}

static void fill_zipf(const wl_comp *c, uint64_t vkey, uint64_t k, size_t n, uint64_t *out)
{
    uint64_t ctr = vkey + (k + 1) * DL_GOLDEN;
    for (size_t i = 0; i < n; i++, ctr += DL_GOLDEN)
        out[i] = dl_perm_apply(&c->perm, dl_zipf_rank(&c->u.zipf, dl_mix64(ctr)) - 1);
}

static void fill_seq(const wl_comp *c, uint32_t vcpus, uint32_t j, uint64_t k, size_t n, uint64_t *out)
{
    const uint64_t len = c->u.seq.length, step = c->u.seq.step, start = c->u.seq.start;
    /* position q = k * vcpus + j; page = start + (q * stride mod length) */
    uint64_t qmod = (dl_mulmod(k, vcpus, len) + j % len) % len;
    uint64_t pos = dl_mulmod(qmod, c->u.seq.stride, len);
    for (size_t i = 0; i < n; i++) {
        out[i] = start + pos;
        pos += step;
        pos -= pos >= len ? len : 0;
    }
}

/* K_i(m) for vCPU share s: the first write of phase i in cycle m. */
static inline uint64_t phase_first(const wl_phases *p, double m, size_t i, double s)
{
    double x = (m * p->level[p->n] + p->level[i]) * s;
    return x > 0.0 ? level_count(x) : 0;
}

/* The first write after phase i of cycle m (UINT64_MAX: never ends). */
static inline uint64_t phase_end(const wl_phases *p, double m, size_t i, double s)
{
    if (i + 1 < p->n)
        return phase_first(p, m, i + 1, s);
    return p->repeat ? phase_first(p, m + 1.0, 0, s) : UINT64_MAX;
}

static void fill_phases(const wl_comp *c, uint64_t pages, uint32_t j, uint64_t vkey, uint64_t k, size_t n,
                        uint64_t *out)
{
    const wl_phases *p = &c->u.ph;
    const double s = c->share[j];
    /* locate write k: cycle m, then the last phase i with K_i(m) <= k */
    double m = 0.0;
    if (p->repeat) {
        double per = p->level[p->n] * s; /* > 0: writes exist */
        m = floor((double)k / per);
        while (m > 0.0 && phase_first(p, m, 0, s) > k && m - 1.0 != m)
            m -= 1.0;
        while (phase_first(p, m + 1.0, 0, s) <= k && m + 1.0 != m)
            m += 1.0;
    }
    size_t lo = 0, hi = p->n; /* K_lo(m) <= k < K_hi(m) */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (phase_first(p, m, mid, s) <= k)
            lo = mid;
        else
            hi = mid;
    }
    size_t i = lo;
    uint64_t end = phase_end(p, m, i, s);
    size_t pos = 0;
    while (pos < n) {
        while (k >= end) { /* next phase (empty phases are skipped) */
            if (++i == p->n) {
                i = 0;
                m += 1.0;
            }
            end = phase_end(p, m, i, s);
        }
        uint64_t left = end - k;
        size_t len = left < (uint64_t)(n - pos) ? (size_t)left : n - pos;
        const uint64_t size = p->set[i], off = p->off[i];
        uint64_t ctr = vkey + (k + 1) * DL_GOLDEN;
        for (size_t q = 0; q < len; q++, ctr += DL_GOLDEN) {
            uint64_t y = off + dl_mulhi(dl_mix64(ctr), size);
            y -= y >= pages ? pages : 0;
            out[pos + q] = dl_perm_apply(&c->perm, y);
        }
        pos += len;
        k += len;
    }
}

/* Pages of writes k .. k + n - 1 of component c, vCPU j. */
static void comp_fill(const dl_workload *w, const wl_comp *c, uint32_t j, uint64_t k, size_t n, uint64_t *out)
{
    switch (c->kind) {
    case WL_RANGE:
        fill_range(c, w->pages, vcpu_key(c, j), k, n, out);
        break;
    case WL_HOTSPOT:
        fill_hotspot(c, w->pages, vcpu_key(c, j), k, n, out);
        break;
    case WL_ZIPF:
        fill_zipf(c, vcpu_key(c, j), k, n, out);
        break;
    case WL_SEQ:
        fill_seq(c, w->vcpus, j, k, n, out);
        break;
    case WL_PHASES:
        fill_phases(c, w->pages, j, vcpu_key(c, j), k, n, out);
        break;
    default: /* WL_TRACE */
        fill_trace(&c->u.tr, j, k, n, out);
        break;
    }
}

/* ---- public queries ----------------------------------------------------------------- */

int dl_workload_count(const dl_workload *w, double t0, double t1, uint32_t vcpu, uint64_t *count)
{
    if (!w || !count || !times_ok(t0, t1))
        return DL_ERR_INVALID;
    if (vcpu >= w->vcpus)
        return DL_ERR_RANGE;
    uint64_t total = 0;
    for (size_t i = 0; i < w->ncomp; i++) {
        uint64_t k0 = 0, k1 = 0;
        int rc = comp_span(&w->comps[i], vcpu, t0, t1, &k0, &k1);
        if (rc)
            return rc;
        total += k1 - k0;
        if (total >= WL_MAX_LEVEL)
            return DL_ERR_RANGE;
    }
    *count = total;
    return DL_OK;
}

int dl_workload_generate(const dl_workload *w, double t0, double t1, uint32_t vcpu, uint64_t *out,
                         size_t cap, size_t *count)
{
    if (!count)
        return DL_ERR_INVALID;
    uint64_t total;
    int rc = dl_workload_count(w, t0, t1, vcpu, &total);
    if (rc)
        return rc;
    if (total > SIZE_MAX)
        return DL_ERR_RANGE;
    *count = (size_t)total;
    if (total > cap)
        return DL_ERR_BUFFER;
    if (total && !out)
        return DL_ERR_INVALID;
    size_t pos = 0;
    for (size_t i = 0; i < w->ncomp; i++) {
        uint64_t k0 = 0, k1 = 0;
        comp_span(&w->comps[i], vcpu, t0, t1, &k0, &k1); /* cannot fail: counted above */
        for (uint64_t k = k0; k < k1;) {
            size_t n = k1 - k > WL_CHUNK ? WL_CHUNK : (size_t)(k1 - k);
            comp_fill(w, &w->comps[i], vcpu, k, n, out + pos);
            pos += n;
            k += n;
        }
    }
    return DL_OK;
}

static int check_run(const dl_workload *w, const dl_tracker *t, double t0, double t1)
{
    if (!w || !t || !times_ok(t0, t1))
        return DL_ERR_INVALID;
    if (dl__tracker_pages(t) != w->pages || dl__tracker_vcpus(t) != w->vcpus)
        return DL_ERR_INVALID;
    return DL_OK;
}

/* Whether comp_fill is a pure function of the write index for any index (so that
 * pages may be generated ahead of the slice that writes them). */
static int fill_ahead_ok(const wl_comp *c)
{
    return c->kind == WL_RANGE || c->kind == WL_HOTSPOT || c->kind == WL_ZIPF || c->kind == WL_SEQ;
}

size_t dl__workload_ncomp(const dl_workload *w) { return w->ncomp; }

int dl__workload_feed_ahead(const dl_workload *w, uint32_t j, double t0, double t1, dl__wl_cursor *cur,
                            uint64_t budget, dl__wl_sink sink, void *ctx, uint64_t *fed, dl__wl_ahead *ahead,
                            dl__wl_prefetch prefetch, void *pctx, dl__wl_pos *pos)
{
    uint64_t buf[WL_CHUNK];
    uint64_t done = 0;
    for (; cur->comp < w->ncomp; cur->comp++, cur->done = 0) {
        const wl_comp *c = &w->comps[cur->comp];
        dl__wl_ahead *a = ahead && fill_ahead_ok(c) ? &ahead[cur->comp] : NULL;
        uint64_t k0 = 0, k1 = 0;
        comp_span(c, j, t0, t1, &k0, &k1);
        uint64_t k = k0 + cur->done;
        while (k < k1) {
            if (done >= budget) {
                cur->done = k - k0;
                *fed = done;
                return 0;
            }
            uint64_t left = budget - done < k1 - k ? budget - done : k1 - k;
            size_t n;
            if (pos) {
                pos->k0 = k0;
                pos->k1 = k1;
                pos->k = k;
            }
            if (c->kind == WL_TRACE) { /* already materialized: no copy */
                const wl_trace *tr = &c->u.tr;
                uint64_t len = tr->first[j + 1] - tr->first[j];
                uint64_t i = tr->period ? k % len : k; /* a repeating trace starts over */
                uint64_t m = len - i < left ? len - i : left;
                n = m > SIZE_MAX ? SIZE_MAX : (size_t)m;
                sink(ctx, j, tr->pages + tr->first[j] + i, n);
            } else if (a && (k - a->k < a->n || left < DL__WL_AHEAD)) {
                /* Short slices (a few writes per vCPU and chunk) take their pages from
                 * the pages generated ahead. */
                if (!(k - a->k < a->n)) {
                    comp_fill(w, c, j, k, DL__WL_AHEAD, a->pages);
                    a->k = k;
                    a->n = DL__WL_AHEAD;
                    if (prefetch)
                        prefetch(pctx, a->pages, DL__WL_AHEAD);
                }
                uint64_t off = k - a->k;
                n = (size_t)(a->n - off < left ? a->n - off : left);
                sink(ctx, j, a->pages + off, n);
            } else {
                n = left > WL_CHUNK ? WL_CHUNK : (size_t)left;
                comp_fill(w, c, j, k, n, buf);
                sink(ctx, j, buf, n);
            }
            k += n;
            done += n;
        }
    }
    cur->comp = 0;
    cur->done = 0;
    *fed = done;
    return 1;
}

int dl__workload_feed(const dl_workload *w, uint32_t j, double t0, double t1, dl__wl_cursor *cur,
                      uint64_t budget, dl__wl_sink sink, void *ctx, uint64_t *fed)
{
    return dl__workload_feed_ahead(w, j, t0, t1, cur, budget, sink, ctx, fed, NULL, NULL, NULL, NULL);
}

static void tracker_sink(void *ctx, uint32_t j, const uint64_t *pages, size_t n)
{
    dl__tracker_write_unchecked((dl_tracker *)ctx, j, pages, n);
}

/* Applies vCPU j's writes of [t0, t1); counts were checked by the caller. */
static uint64_t run_one(const dl_workload *w, dl_tracker *t, uint32_t j, double t0, double t1)
{
    dl__wl_cursor cur = {0, 0};
    uint64_t done = 0;
    dl__workload_feed(w, j, t0, t1, &cur, UINT64_MAX, tracker_sink, t, &done);
    return done;
}

int dl_workload_run_vcpu(const dl_workload *w, dl_tracker *t, uint32_t vcpu, double t0, double t1,
                         uint64_t *nwrites)
{
    int rc = check_run(w, t, t0, t1);
    if (rc)
        return rc;
    uint64_t n;
    rc = dl_workload_count(w, t0, t1, vcpu, &n); /* also checks vcpu and the 2^62 bound */
    if (rc)
        return rc;
    n = run_one(w, t, vcpu, t0, t1);
    if (nwrites)
        *nwrites = n;
    return DL_OK;
}

int dl_workload_run(const dl_workload *w, dl_tracker *t, double t0, double t1, uint64_t *nwrites)
{
    int rc = check_run(w, t, t0, t1);
    if (rc)
        return rc;
    for (uint32_t j = 0; j < w->vcpus; j++) { /* check everything before changing anything */
        uint64_t n;
        rc = dl_workload_count(w, t0, t1, j, &n);
        if (rc)
            return rc;
    }
    uint64_t total = 0;
    for (uint32_t j = 0; j < w->vcpus; j++)
        total += run_one(w, t, j, t0, t1);
    if (nwrites)
        *nwrites = total;
    return DL_OK;
}

int dl_workload_run_part(const dl_workload *w, dl_tracker *t, int all_vcpus, uint32_t vcpu, double t0,
                         double t1, dl_workload_cursor *cur, uint64_t budget, uint64_t *nwrites, int *finished)
{
    if (!cur || !finished || budget < 1)
        return DL_ERR_INVALID;
    int rc = check_run(w, t, t0, t1);
    if (rc)
        return rc;
    uint32_t first = all_vcpus ? 0 : vcpu, last = all_vcpus ? w->vcpus : vcpu + 1;
    if (!all_vcpus && vcpu >= w->vcpus)
        return DL_ERR_RANGE;
    if (!cur->started) { /* check everything before changing anything */
        for (uint32_t j = first; j < last; j++) {
            uint64_t n;
            rc = dl_workload_count(w, t0, t1, j, &n);
            if (rc)
                return rc;
        }
        cur->started = 1;
        cur->vcpu = first;
        cur->comp = 0;
        cur->done = 0;
    }
    if (cur->vcpu < first || cur->vcpu > last || cur->comp > w->ncomp)
        return DL_ERR_INVALID;
    *finished = 0;
    while (cur->vcpu < last) {
        dl__wl_cursor c = {(size_t)cur->comp, cur->done};
        uint64_t fed = 0;
        int done = dl__workload_feed(w, cur->vcpu, t0, t1, &c, budget, tracker_sink, t, &fed);
        if (nwrites)
            *nwrites += fed;
        budget -= fed;
        cur->comp = c.comp;
        cur->done = c.done;
        if (!done)
            return DL_OK;
        cur->vcpu++;
    }
    *finished = 1;
    return DL_OK;
}
