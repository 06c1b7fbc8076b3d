/*
 * dirtylog/workload.h: seeded, reproducible guest write streams.
 *
 * A dl_workload is bound to a guest of `pages` pages and `vcpus` vCPUs and is a
 * sum of components (uniform, hotspot, Zipf, sequential, moving working set,
 * rate classes, recorded trace). It is a pure function of guest time: the
 * writes of a slice [t0, t1) (seconds) depend on nothing but t0, t1, the
 * components and the seeds.
 *
 * Streams. Component c gives vCPU j the rate r_cj(t) = r_c(t) * s_j, where s_j
 * is the vCPU's normalized share (equal shares when `shares` is NULL, else
 * shares[j] / sum(shares)). Its writes are evenly spaced in guest time: the
 * number written up to time t is
 *
 *     W_cj(t) = floor(I_cj(t) * (1 + 2^-40)),   I_cj(t) = integral of r_cj over [0, t)
 *
 * (the tiny relative tolerance makes levels such as 0.3 s * 1000/s that should
 * be whole numbers count as such), so the writes of a slice are the writes
 * k = W_cj(t0) .. W_cj(t1) - 1 of the stream, and write k's page is a function
 * of (seed, component index, j, k) through a counter-based hash (splitmix64
 * finalizer; rejection sampling draws more numbers from a hash chain of the
 * same counter). Hence splitting a span into slices of any sizes gives exactly
 * the same writes, and the same seeds give the same streams.
 *
 * Page choice, with N = pages and pi a seeded pseudo-random bijection of
 * [0, N) (a 4-round Feistel network over the next power of two, cycle-walked)
 * so that "the first H pages in pi order" are scattered over memory:
 *   uniform     Lemire's multiply-shift of a 64-bit hash onto [0, N).
 *   hotspot     with probability hot_share (an independent hash of the same
 *               counter) a uniform page of pi([0, H)), else of pi([H, N)). If
 *               one of the two sets is empty every write goes to the other.
 *   zipf        rank r in 1..N with P(r) ~ r^-s by rejection-inversion
 *               (Hoermann & Derflinger 1996); page pi(r - 1).
 *   sequential  vCPU j's write k is at position q = k * vcpus + j of the sweep
 *               and writes page start + (q * stride mod length): with equal
 *               shares the vCPUs together sweep start, start + stride, ... in
 *               order. Deterministic (no seed); if gcd(stride, length) = g > 1
 *               only length / g pages are ever written.
 *   phases      a moving working set: phase i lasts durations[i] seconds at
 *               rates[i] writes/s, uniformly over pi([o_i, o_i + set_pages[i]))
 *               (modulo N) with o_i = set_pages[0] + ... + set_pages[i-1] mod N:
 *               each phase's set starts where the previous one ended. After the
 *               last phase the list repeats from phase 0 with the same sets
 *               (repeat != 0) or the last phase lasts forever (repeat == 0).
 *               Write k of vCPU j belongs to phase i of cycle m iff
 *               K_i(m) <= k < K_{i+1}(m), K_i(m) = floor((m*I_cycle + I_i) s_j (1 + 2^-40))
 *               with I_i the writes/s integrated up to the start of phase i.
 *   classes     rate classes (DirtyCurve): class i has class_pages[i] pages,
 *               the disjoint range pi([o_i, o_i + class_pages[i])) with o_i the
 *               sum of the previous classes' sizes, and writes uniformly within
 *               it at page_rates[i] * class_pages[i] / (n ln(n/(n-1))) writes/s
 *               (n = class_pages[i]; the factor, 1 for n = 1, makes the expected
 *               distinct pages written in t seconds n (1 - exp(-page_rates[i] t))
 *               exactly, as for Poisson writes). Each class is one component.
 *   trace       recorded writes (time in ns, page, vCPU) replayed: a record is
 *               in the slice iff t0 * 1e9 <= time < t1 * 1e9 (in integers:
 *               ceil(t0 * 1e9) <= time < ceil(t1 * 1e9)). Without a vCPU column
 *               record i belongs to vCPU i mod vcpus. Nothing after the last
 *               record, unless a period P is set (dl_workload_set_trace_period):
 *               then the records repeat, record i of cycle m at time + m * P.
 *
 * Order of application in dl_workload_run and dl_workload_generate: vCPU by
 * vCPU (0, 1, ...), and within a vCPU component by component in the order they
 * were added, each component's writes in stream order.
 *
 * Room for later: components are numbered in the order they were added
 * (dl_workload_components() - 1 is the last one), so per-component settings
 * such as a read share for post-copy access streams can be added by index.
 */
#ifndef DIRTYLOG_WORKLOAD_H
#define DIRTYLOG_WORKLOAD_H

#include <stddef.h>
#include <stdint.h>

#include "dirtylog/common.h"
#include "dirtylog/tracker.h"

#ifdef __cplusplus
extern "C" {
#endif

/* DL_CDEF_BEGIN (declarations below are also read by the cffi binding) */

/* Limits checked by the dl_workload_* functions. */
enum {
    DL_WORKLOAD_MAX_COMPONENTS = 1048576, /* components per workload */
    DL_WORKLOAD_MAX_PHASES = 1048576      /* phases of one working-set component */
};

typedef struct dl_workload dl_workload;

/* Creates an empty workload (no writes) for a guest of `pages` pages (1 .. 2^40)
 * and `vcpus` vCPUs (1 .. DL_MAX_VCPUS). `seed` is mixed into every component's
 * stream. *out is NULL on failure. */
int dl_workload_create(uint64_t pages, uint32_t vcpus, uint64_t seed, dl_workload **out);
void dl_workload_destroy(dl_workload *w); /* NULL is fine */

uint64_t dl_workload_pages(const dl_workload *w);
uint32_t dl_workload_vcpus(const dl_workload *w);
size_t dl_workload_components(const dl_workload *w);
/* Bytes of state the workload holds (components, phase tables, trace copies). */
uint64_t dl_workload_memory_bytes(const dl_workload *w);

/* Components. Rates are page writes per second of guest time: finite, >= 0 and
 * at most 1e15. `shares` is NULL (equal shares) or `vcpus` finite weights >= 0
 * with a positive sum. `seed` selects the component's stream (and permutation);
 * the component's index is mixed in too, so equal seeds still give independent
 * components. On error (DL_ERR_INVALID, DL_ERR_RANGE, DL_ERR_NOMEM) the workload
 * is unchanged. */
int dl_workload_add_uniform(dl_workload *w, double rate, const double *shares, uint64_t seed);
/* Uniform over the pages [start, start + length) only: start < pages, 1 <= length <= pages - start.
 * Over all of memory (0, pages) it is dl_workload_add_uniform, draw for draw. */
int dl_workload_add_uniform_range(dl_workload *w, double rate, uint64_t start, uint64_t length,
                                  const double *shares, uint64_t seed);
/* hot_pages <= pages; hot_share in [0, 1]. */
int dl_workload_add_hotspot(dl_workload *w, double rate, uint64_t hot_pages, double hot_share,
                            const double *shares, uint64_t seed);
/* s > 0 and at most 100. */
int dl_workload_add_zipf(dl_workload *w, double rate, double s, const double *shares, uint64_t seed);
/* start < pages, 1 <= length <= pages - start, stride < 2^63. */
int dl_workload_add_sequential(dl_workload *w, double rate, uint64_t start, uint64_t length,
                               uint64_t stride, const double *shares);
/* 1 .. DL_WORKLOAD_MAX_PHASES phases; durations finite and > 0; set_pages in
 * 1 .. pages; rates as above. */
int dl_workload_add_phases(dl_workload *w, const double *durations, const uint64_t *set_pages,
                           const double *rates, size_t nphases, int repeat, const double *shares,
                           uint64_t seed);
/* Adds one component per class; classes of size 0 add nothing. The sizes must
 * sum to at most `pages`; page_rates (writes per page per second) as rates. */
int dl_workload_add_classes(dl_workload *w, const uint64_t *class_pages, const double *page_rates,
                            size_t nclasses, const double *shares, uint64_t seed);
/* Copies n records in. times_ns must be non-decreasing, pages < pages, vcpus
 * (NULL: record i goes to vCPU i mod vcpus) < vcpus. On DL_ERR_RANGE or
 * DL_ERR_INVALID *bad (if not NULL) gets the first bad record's index. */
int dl_workload_add_trace(dl_workload *w, const uint64_t *times_ns, const uint64_t *pages,
                          const uint32_t *vcpus, size_t n, size_t *bad);
/* Makes trace component `component` (0 .. dl_workload_components() - 1) repeat
 * every period_ns nanoseconds: record i of cycle m is at times_ns[i] + m * period_ns.
 * The period must exceed the last record's time (DL_ERR_INVALID otherwise, or for
 * an empty trace); 0 plays the trace once. DL_ERR_MODE if the component is not a
 * trace. */
int dl_workload_set_trace_period(dl_workload *w, size_t component, uint64_t period_ns);

/* The number of writes vCPU `vcpu` makes in the slice [t0, t1) of guest time
 * (0 <= t0 <= t1, finite; DL_ERR_INVALID otherwise, DL_ERR_RANGE if a stream
 * would pass 2^62 writes or a repeating working set 2^52 cycles). */
int dl_workload_count(const dl_workload *w, double t0, double t1, uint32_t vcpu, uint64_t *count);

/* The pages vCPU `vcpu` writes in [t0, t1), in order. If cap is too small it
 * returns DL_ERR_BUFFER with the needed size in *count and writes nothing. */
int dl_workload_generate(const dl_workload *w, double t0, double t1, uint32_t vcpu, uint64_t *out,
                         size_t cap, size_t *count);

/* Applies the writes of [t0, t1) to tracker `t` (vCPU by vCPU, component by
 * component), generating them in a small stack buffer: no allocation and no
 * materialization of the slice. The tracker must have the workload's pages and
 * vCPUs (DL_ERR_INVALID otherwise). *nwrites (may be NULL) gets the number of
 * writes applied. */
int dl_workload_run(const dl_workload *w, dl_tracker *t, double t0, double t1, uint64_t *nwrites);

/* The same for one vCPU only (for callers that advance vCPUs separately). */
int dl_workload_run_vcpu(const dl_workload *w, dl_tracker *t, uint32_t vcpu, double t0, double t1,
                         uint64_t *nwrites);

/* Where a partly applied slice stands; zero it before the first call on a slice. */
typedef struct dl_workload_cursor {
    uint32_t vcpu;           /* vCPU being applied */
    uint32_t started;        /* 1 once the slice's counts were checked */
    uint64_t comp;           /* its component being applied */
    uint64_t done;           /* writes of that component applied */
} dl_workload_cursor;

/* dl_workload_run (all_vcpus != 0) or dl_workload_run_vcpu (vCPU `vcpu`) in bounded
 * pieces: applies at most `budget` (>= 1) more writes of [t0, t1) from *cursor on, adds
 * them to *nwrites (may be NULL) and sets *finished to 1 once the slice is complete.
 * Call again with the same arguments until then: the writes and their order are those
 * of one dl_workload_run call, so a caller can stay interruptible on a slice of any size. */
int dl_workload_run_part(const dl_workload *w, dl_tracker *t, int all_vcpus, uint32_t vcpu, double t0,
                         double t1, dl_workload_cursor *cursor, uint64_t budget, uint64_t *nwrites,
                         int *finished);

/* DL_CDEF_END */

#ifdef __cplusplus
}
#endif
#endif /* DIRTYLOG_WORKLOAD_H */
