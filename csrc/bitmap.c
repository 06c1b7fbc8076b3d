/*
 * bitmap.c: word-at-a-time bitmap scans (in the spirit of the kernel's lib/bitmap.c).
 * Bit (p % 64) of word p / 64 stands for page p. Scans skip runs of zero words
 * eight at a time, so sparse bitmaps cost little more than reading them. The tracker's
 * bitmap may be co-located with its stale words (internal.h): word i at bm[stride * i];
 * each scan is one template, instantiated for the two strides.
 */
#include "internal.h"

#include <string.h>

DL_ALWAYS_INLINE void fill_tmpl(uint64_t *bm, uint64_t nbits, const unsigned s)
{
    const uint64_t nw = (nbits + 63) / 64;
    if (s == 1)
        memset(bm, 0xff, nw * 8);
    else
        for (uint64_t i = 0; i < nw; i++)
            bm[s * i] = ~UINT64_C(0);
    if (nbits % 64)
        bm[s * (nw - 1)] = (UINT64_C(1) << (nbits % 64)) - 1;
}

void dl_bitmap_fill(uint64_t *bm, uint64_t nbits, unsigned stride)
{
    if (stride == DL__CO)
        fill_tmpl(bm, nbits, DL__CO);
    else
        fill_tmpl(bm, nbits, 1);
}

void dl_bitmap_zero(uint64_t *bm, uint64_t nwords, unsigned stride)
{
    if (stride == DL__CO)
        for (uint64_t i = 0; i < nwords; i++)
            bm[DL__CO * i] = 0;
    else
        memset(bm, 0, nwords * 8);
}

uint64_t dl_bitmap_count(const uint64_t *bm, uint64_t nwords)
{
    uint64_t n = 0;
    for (uint64_t i = 0; i < nwords; i++)
        n += (uint64_t)dl__popcount64(bm[i]);
    return n;
}

DL_ALWAYS_INLINE int zero8(const uint64_t *w, const unsigned s)
{
    return (w[0] | w[s] | w[2 * s] | w[3 * s] | w[4 * s] | w[5 * s] | w[6 * s] | w[7 * s]) == 0;
}

DL_ALWAYS_INLINE size_t emit(uint64_t w, uint64_t base, uint64_t *out, size_t n)
{
    while (w) {
        out[n++] = base + (uint64_t)__builtin_ctzll(w);
        w &= w - 1;
    }
    return n;
}

/* The set pages in order; `take`: also zeroes their words (snapshot-and-clear). */
DL_ALWAYS_INLINE size_t pages_tmpl(uint64_t *bm, uint64_t nwords, uint64_t *out, const int take,
                                   const unsigned s)
{
    size_t n = 0;
    uint64_t i = 0;
    for (; i + 8 <= nwords; i += 8) {
        if (zero8(bm + s * i, s))
            continue;
        for (uint64_t j = i; j < i + 8; j++) {
            const uint64_t w = bm[s * j];
            if (!w)
                continue;
            if (take)
                bm[s * j] = 0;
            n = emit(w, j << 6, out, n);
        }
    }
    for (; i < nwords; i++) {
        const uint64_t w = bm[s * i];
        if (take)
            bm[s * i] = 0;
        n = emit(w, i << 6, out, n);
    }
    return n;
}

size_t dl_bitmap_to_pages(const uint64_t *bm, uint64_t nwords, unsigned stride, uint64_t *out)
{
    uint64_t *m = (uint64_t *)(uintptr_t)bm; /* read only: take is 0 */
    return stride == DL__CO ? pages_tmpl(m, nwords, out, 0, DL__CO) : pages_tmpl(m, nwords, out, 0, 1);
}

size_t dl_bitmap_take_pages(uint64_t *bm, uint64_t nwords, unsigned stride, uint64_t *out)
{
    return stride == DL__CO ? pages_tmpl(bm, nwords, out, 1, DL__CO) : pages_tmpl(bm, nwords, out, 1, 1);
}

/* Takes bm's words (zeroes them) into dst by OR, as QEMU's cpu_physical_memory_sync_dirty_bitmap
 * moves the dirty log into the migration bitmap, clearing the source words as it goes;
 * returns the bits newly set in dst. Runs of zero words are skipped eight at a time. */
DL_ALWAYS_INLINE uint64_t take_or_tmpl(uint64_t *bm, uint64_t nwords, uint64_t *dst, const unsigned s)
{
    uint64_t added = 0, i = 0;
    for (; i + 8 <= nwords; i += 8) {
        if (zero8(bm + s * i, s))
            continue;
        for (uint64_t j = i; j < i + 8; j++) {
            const uint64_t w = bm[s * j];
            bm[s * j] = 0;
            added += dl__popcount64(w & ~dst[j]);
            dst[j] |= w;
        }
    }
    for (; i < nwords; i++) {
        const uint64_t w = bm[s * i];
        bm[s * i] = 0;
        added += dl__popcount64(w & ~dst[i]);
        dst[i] |= w;
    }
    return added;
}

uint64_t dl_bitmap_take_or(uint64_t *bm, uint64_t nwords, unsigned stride, uint64_t *dst)
{
    return stride == DL__CO ? take_or_tmpl(bm, nwords, dst, DL__CO) : take_or_tmpl(bm, nwords, dst, 1);
}

void dl_bitmap_take_words(uint64_t *bm, uint64_t nwords, unsigned stride, uint64_t *out)
{
    if (stride == DL__CO) {
        for (uint64_t i = 0; i < nwords; i++) {
            out[i] = bm[DL__CO * i];
            bm[DL__CO * i] = 0;
        }
    } else {
        memcpy(out, bm, nwords * 8);
        memset(bm, 0, nwords * 8);
    }
}
