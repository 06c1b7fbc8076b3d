/*
 * bench.c: the bare loops the benchmarks compare the tracker with (see
 * include/dirtylog/bench.h). Keep them honest: the tracker's work minus its
 * bookkeeping, no tricks it does not get (no prefetching, no unrolling by hand,
 * no zero-word skipping), and no extra work either. Their results go to memory
 * the caller owns, so the compiler cannot drop them.
 */
#include "dirtylog/bench.h"

/* Aligned like the tracker's write loops (tracker.c), so that neither side's speed
 * depends on where the linker happens to place it. */
#define DL_BENCH_ALIGNED __attribute__((aligned(64)))

DL_BENCH_ALIGNED void dl_bench_bare_set(uint64_t *bitmap, const uint64_t *pages, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t p = pages[i];
        bitmap[p >> 6] |= UINT64_C(1) << (p & 63);
    }
}

DL_BENCH_ALIGNED size_t dl_bench_bare_scan(const uint64_t *bitmap, size_t nwords, uint64_t *out)
{
    size_t n = 0;
    for (size_t i = 0; i < nwords; i++) {
        uint64_t w = bitmap[i];
        while (w) {
            out[n++] = ((uint64_t)i << 6) + (uint64_t)__builtin_ctzll(w);
            w &= w - 1;
        }
    }
    return n;
}
