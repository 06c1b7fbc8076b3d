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

/* bitmap.c */
void dl_bitmap_fill(uint64_t *bm, uint64_t nbits);
size_t dl_bitmap_to_pages(const uint64_t *bm, uint64_t nwords, uint64_t *out);
size_t dl_bitmap_take_pages(uint64_t *bm, uint64_t nwords, uint64_t *out);
void dl_bitmap_take_words(uint64_t *bm, uint64_t nwords, uint64_t *out);
uint64_t dl_bitmap_count(const uint64_t *bm, uint64_t nwords);

/* tracker.c: for fused generators and the engine, which validate on their own. */
void dl__tracker_write_unchecked(dl_tracker *t, uint32_t vcpu, const uint64_t *pages, size_t n);
uint64_t dl__tracker_pages(const dl_tracker *t);
uint32_t dl__tracker_vcpus(const dl_tracker *t);
uint32_t dl__tracker_page_size(const dl_tracker *t);
uint32_t *dl__tracker_versions(const dl_tracker *t);
uint64_t *dl__tracker_stale(const dl_tracker *t);
const dl_tracker_stats *dl__tracker_stats(const dl_tracker *t);
uint32_t dl__tracker_mode(const dl_tracker *t);


#endif
