/*
 * bitmap.c: word-at-a-time bitmap scans (in the spirit of the kernel's lib/bitmap.c).
 * Bit (p % 64) of word p / 64 stands for page p. Scans skip runs of zero words
 * eight at a time, so sparse bitmaps cost little more than reading them. The tracker's
 * bitmap may be co-located with its stale words (internal.h): word i at bm[stride * i];
 * each scan is one template, instantiated for the two strides.
 */
#include "internal.h"

#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

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

/* Word j of bm (stride s) zeroed into dst[j] by OR; returns the bits new in dst[j]. */
DL_ALWAYS_INLINE uint64_t take_or_word(uint64_t *bm, uint64_t *dst, uint64_t j, const unsigned s)
{
    const uint64_t w = bm[s * j];
    bm[s * j] = 0;
    const uint64_t added = dl__popcount64(w & ~dst[j]);
    dst[j] |= w;
    return added;
}

/* Takes bm's words (zeroes them) into dst by OR, as QEMU's cpu_physical_memory_sync_dirty_bitmap
 * moves the dirty log into the migration bitmap, clearing the source words as it goes;
 * returns the bits newly set in dst. Runs of zero words are skipped eight at a time. */
DL_ALWAYS_INLINE uint64_t take_or_tmpl(uint64_t *bm, uint64_t nwords, uint64_t *dst, const unsigned s)
{
    uint64_t added = 0, i = 0;
#if defined(__SSE2__)
    /* Two words a lane pair; the new bits' counts summed per byte over the group's eight words,
     * then across bytes once (psadbw): a few instructions a word where a scalar popcount of
     * baseline x86-64 takes a dozen. */
    const __m128i m1 = _mm_set1_epi8(0x55), m2 = _mm_set1_epi8(0x33), m4 = _mm_set1_epi8(0x0f);
    __m128i total = _mm_setzero_si128();
    for (; i + 8 <= nwords; i += 8) {
        if (zero8(bm + s * i, s))
            continue;
        __m128i bytes = _mm_setzero_si128();
        for (uint64_t j = i; j < i + 8; j += 2) {
            const __m128i w = s == 1 ? _mm_loadu_si128((const __m128i *)(bm + j))
                                     : _mm_unpacklo_epi64(_mm_loadu_si128((const __m128i *)(bm + s * j)),
                                                          _mm_loadu_si128((const __m128i *)(bm + s * (j + 1))));
            bm[s * j] = 0;
            bm[s * (j + 1)] = 0;
            const __m128i d = _mm_loadu_si128((const __m128i *)(dst + j));
            _mm_storeu_si128((__m128i *)(dst + j), _mm_or_si128(d, w));
            __m128i x = _mm_andnot_si128(d, w); /* the bits new in dst */
            x = _mm_sub_epi64(x, _mm_and_si128(_mm_srli_epi64(x, 1), m1));
            x = _mm_add_epi64(_mm_and_si128(x, m2), _mm_and_si128(_mm_srli_epi64(x, 2), m2));
            bytes = _mm_add_epi8(bytes, _mm_and_si128(_mm_add_epi64(x, _mm_srli_epi64(x, 4)), m4)); /* <= 32 */
        }
        total = _mm_add_epi64(total, _mm_sad_epu8(bytes, _mm_setzero_si128()));
    }
    added = (uint64_t)_mm_cvtsi128_si64(total) + (uint64_t)_mm_cvtsi128_si64(_mm_unpackhi_epi64(total, total));
#else
    for (; i + 8 <= nwords; i += 8) {
        if (zero8(bm + s * i, s))
            continue;
        for (uint64_t j = i; j < i + 8; j++)
            added += take_or_word(bm, dst, j, s);
    }
#endif
    for (; i < nwords; i++)
        added += take_or_word(bm, dst, i, s);
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
