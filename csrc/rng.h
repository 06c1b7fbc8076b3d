/*
 * rng.h: counter-based random numbers for the workload generators (not installed).
 *
 * Everything here is a pure function of its arguments: a stream is a 64-bit
 * key, and its k-th number is dl_rng_at(key, k) = splitmix64's finalizer of
 * key + (k + 1) * golden, which is exactly splitmix64 seeded with `key`. More
 * numbers for the same k (rejection sampling) come from dl_rng_next, a hash
 * chain. The permutation is a seeded bijection of [0, n): an unbalanced 4-round
 * Feistel network over the next power of two >= n, cycle-walked back into range.
 */
#ifndef DIRTYLOG_RNG_H
#define DIRTYLOG_RNG_H

#include <math.h>
#include <stdint.h>

#define DL_GOLDEN UINT64_C(0x9e3779b97f4a7c15)

static inline uint64_t dl_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* The k-th number of stream `key`. */
static inline uint64_t dl_rng_at(uint64_t key, uint64_t k) { return dl_mix64(key + (k + 1) * DL_GOLDEN); }

/* Another number drawn from the same counter (a chain: h, next(h), next(next(h)), ...). */
static inline uint64_t dl_rng_next(uint64_t h) { return dl_mix64(h ^ UINT64_C(0x5851f42d4c957f2d)); }

/* A double uniform in [0, 1) from the top 53 bits. */
static inline double dl_rng_unit(uint64_t h) { return (double)(h >> 11) * 0x1p-53; }

/* floor(h * n / 2^64): Lemire's multiply-shift onto [0, n). */
static inline uint64_t dl_mulhi(uint64_t a, uint64_t b)
{
#ifdef __SIZEOF_INT128__
    return (uint64_t)(((unsigned __int128)a * b) >> 64);
#else
    uint64_t a_lo = (uint32_t)a, a_hi = a >> 32, b_lo = (uint32_t)b, b_hi = b >> 32;
    uint64_t p0 = a_lo * b_lo, p1 = a_lo * b_hi, p2 = a_hi * b_lo, p3 = a_hi * b_hi;
    uint64_t mid = (p0 >> 32) + (uint32_t)p1 + (uint32_t)p2;
    return p3 + (p1 >> 32) + (p2 >> 32) + (mid >> 32);
#endif
}

/* (a * b) mod m for m >= 1. */
static inline uint64_t dl_mulmod(uint64_t a, uint64_t b, uint64_t m)
{
#ifdef __SIZEOF_INT128__
    return (uint64_t)(((unsigned __int128)(a % m) * (b % m)) % m);
#else
    uint64_t r = 0;
    a %= m;
    b %= m;
    while (b) {
        if (b & 1)
            r = (r >= m - a) ? r - (m - a) : r + a;
        a = (a >= m - a) ? a - (m - a) : a + a;
        b >>= 1;
    }
    return r;
#endif
}

/* ---- seeded permutation of [0, n) ------------------------------------------ */

typedef struct dl_perm {
    uint64_t n;
    uint32_t lo_bits;
    uint32_t identity; /* n <= 1: nothing to permute */
    uint64_t lo_mask, hi_mask;
    uint64_t k[4];
} dl_perm;

static inline void dl_perm_init(dl_perm *p, uint64_t n, uint64_t key)
{
    uint32_t bits = 0;
    while (bits < 64 && (UINT64_C(1) << bits) < n)
        bits++;
    p->n = n;
    p->identity = n <= 1;
    p->lo_bits = bits / 2;
    uint32_t hi_bits = bits - p->lo_bits;
    p->lo_mask = (UINT64_C(1) << p->lo_bits) - 1;
    p->hi_mask = hi_bits >= 64 ? ~UINT64_C(0) : (UINT64_C(1) << hi_bits) - 1;
    for (int i = 0; i < 4; i++)
        p->k[i] = dl_mix64(key + (uint64_t)(i + 1) * UINT64_C(0xd1b54a32d192ed03));
}

/* The round function: one multiply and a fold of the high half into the low
 * bits (each half of the input has at most 32 bits, so every output bit that
 * is kept depends on every input bit). */
static inline uint64_t dl_perm_round(uint64_t x, uint64_t k)
{
    uint64_t y = (x ^ k) * UINT64_C(0xbf58476d1ce4e5b9);
    return y ^ (y >> 32);
}

/* pi(x) for x < n. Each walk step is a bijection of [0, 2^bits); the walk
 * returns into [0, n) after fewer than two steps on average (2^bits < 2n). */
static inline uint64_t dl_perm_apply(const dl_perm *p, uint64_t x)
{
    if (p->identity)
        return x;
    const uint32_t lb = p->lo_bits;
    const uint64_t lm = p->lo_mask, hm = p->hi_mask;
    do {
        uint64_t lo = x & lm, hi = x >> lb;
        hi = (hi ^ dl_perm_round(lo, p->k[0])) & hm;
        lo = (lo ^ dl_perm_round(hi, p->k[1])) & lm;
        hi = (hi ^ dl_perm_round(lo, p->k[2])) & hm;
        lo = (lo ^ dl_perm_round(hi, p->k[3])) & lm;
        x = (hi << lb) | lo;
    } while (x >= p->n);
    return x;
}

/* ---- Zipf ranks by rejection-inversion (Hoermann & Derflinger 1996) -------- */

typedef struct dl_zipf {
    double s;         /* exponent > 0 */
    double n;         /* number of ranks */
    double h_x1;      /* H(1.5) - 1 */
    double h_n;       /* H(n + 0.5) */
    double squeeze;   /* 2 - H^-1(H(2.5) - h(2)) */
} dl_zipf;

static inline double dl_zipf_helper1(double x) /* log1p(x) / x */
{
    return fabs(x) > 1e-8 ? log1p(x) / x : 1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x));
}

static inline double dl_zipf_helper2(double x) /* expm1(x) / x */
{
    return fabs(x) > 1e-8 ? expm1(x) / x : 1.0 + x * 0.5 * (1.0 + x * (1.0 / 3.0) * (1.0 + 0.25 * x));
}

static inline double dl_zipf_h(const dl_zipf *z, double x) { return exp(-z->s * log(x)); }

/* H(x) = (x^(1-s) - 1) / (1 - s), log(x) for s = 1: an antiderivative of h. */
static inline double dl_zipf_H(const dl_zipf *z, double x)
{
    double lx = log(x);
    return dl_zipf_helper2((1.0 - z->s) * lx) * lx;
}

static inline double dl_zipf_Hinv(const dl_zipf *z, double x)
{
    double t = x * (1.0 - z->s);
    if (t < -1.0)
        t = -1.0; /* only reached through rounding */
    return exp(dl_zipf_helper1(t) * x);
}

static inline void dl_zipf_init(dl_zipf *z, uint64_t n, double s)
{
    z->s = s;
    z->n = (double)n;
    z->h_x1 = dl_zipf_H(z, 1.5) - 1.0;
    z->h_n = dl_zipf_H(z, z->n + 0.5);
    z->squeeze = 2.0 - dl_zipf_Hinv(z, dl_zipf_H(z, 2.5) - dl_zipf_h(z, 2.0));
}

/* A rank in 1..n from the numbers h, next(h), ... */
static inline uint64_t dl_zipf_rank(const dl_zipf *z, uint64_t h)
{
    double kd = 1.0;
    for (int attempt = 0; attempt < 64; attempt++) { /* about 1.1 attempts on average */
        double u = z->h_n + dl_rng_unit(h) * (z->h_x1 - z->h_n);
        double x = dl_zipf_Hinv(z, u);
        kd = floor(x + 0.5);
        if (!(kd >= 1.0)) /* also NaN, which valid parameters never produce */
            kd = 1.0;
        else if (kd > z->n)
            kd = z->n;
        if (kd - x <= z->squeeze || u >= dl_zipf_H(z, kd + 0.5) - dl_zipf_h(z, kd))
            return (uint64_t)kd;
        h = dl_rng_next(h);
    }
    return (uint64_t)kd; /* a bound on the loop, never reached in practice */
}

#endif /* DIRTYLOG_RNG_H */
