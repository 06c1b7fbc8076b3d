/*
 * dirtylog/bench.h: bare baselines for the benchmarks (benchmarks/bench_tracker.py).
 *
 * These loops do only the memory work at the heart of the tracker, and nothing
 * else, so that the tracker's overhead can be reported as a ratio measured in the
 * same run on the same data. They are built with the same flags as the tracker
 * (same library, no -march), and they are not part of the tracker's API.
 */
#ifndef DIRTYLOG_BENCH_H
#define DIRTYLOG_BENCH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* DL_CDEF_BEGIN (declarations below are also read by the cffi binding) */

/* For each i < n: bitmap[pages[i] >> 6] |= 1 << (pages[i] & 63). No range check:
 * every page must be below 64 times the bitmap's length in words. */
void dl_bench_bare_set(uint64_t *bitmap, const uint64_t *pages, size_t n);

/* Writes the index of every set bit of bitmap[0 .. nwords) to out, in increasing
 * order (a count-trailing-zeros scan, word by word), and returns how many. `out`
 * must have room for all of them. The bitmap is not changed. */
size_t dl_bench_bare_scan(const uint64_t *bitmap, size_t nwords, uint64_t *out);

/* DL_CDEF_END */

#ifdef __cplusplus
}
#endif
#endif /* DIRTYLOG_BENCH_H */
