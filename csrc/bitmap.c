/*
 * bitmap.c: word-at-a-time bitmap scans (in the spirit of the kernel's lib/bitmap.c).
 * Bit (p % 64) of word p / 64 stands for page p. Scans skip runs of zero words
 * eight at a time, so sparse bitmaps cost little more than reading them.
 */
#include "internal.h"

#include <string.h>

void dl_bitmap_fill(uint64_t *bm, uint64_t nbits)
{
    uint64_t nw = (nbits + 63) / 64;
    memset(bm, 0xff, nw * 8);
    if (nbits % 64)
        bm[nw - 1] = (UINT64_C(1) << (nbits % 64)) - 1;
}

uint64_t dl_bitmap_count(const uint64_t *bm, uint64_t nwords)
{
    uint64_t n = 0;
    for (uint64_t i = 0; i < nwords; i++)
        n += (uint64_t)dl__popcount64(bm[i]);
    return n;
}

DL_ALWAYS_INLINE int zero8(const uint64_t *w)
{
    return (w[0] | w[1] | w[2] | w[3] | w[4] | w[5] | w[6] | w[7]) == 0;
}

DL_ALWAYS_INLINE size_t emit(uint64_t w, uint64_t base, uint64_t *out, size_t n)
{
    while (w) {
        out[n++] = base + (uint64_t)__builtin_ctzll(w);
        w &= w - 1;
    }
    return n;
}

size_t dl_bitmap_to_pages(const uint64_t *bm, uint64_t nwords, uint64_t *out)
{
    size_t n = 0;
    uint64_t i = 0;
    for (; i + 8 <= nwords; i += 8) {
        if (zero8(bm + i))
            continue;
        for (uint64_t j = i; j < i + 8; j++)
            n = emit(bm[j], j << 6, out, n);
    }
    for (; i < nwords; i++)
        n = emit(bm[i], i << 6, out, n);
    return n;
}

/* Snapshot-and-clear: emits the set pages in order and zeroes their words. */
size_t dl_bitmap_take_pages(uint64_t *bm, uint64_t nwords, uint64_t *out)
{
    size_t n = 0;
    uint64_t i = 0;
    for (; i + 8 <= nwords; i += 8) {
        if (zero8(bm + i))
            continue;
        for (uint64_t j = i; j < i + 8; j++) {
            uint64_t w = bm[j];
            if (!w)
                continue;
            bm[j] = 0;
            n = emit(w, j << 6, out, n);
        }
    }
    for (; i < nwords; i++) {
        uint64_t w = bm[i];
        bm[i] = 0;
        n = emit(w, i << 6, out, n);
    }
    return n;
}

void dl_bitmap_take_words(uint64_t *bm, uint64_t nwords, uint64_t *out)
{
    memcpy(out, bm, nwords * 8);
    memset(bm, 0, nwords * 8);
}
