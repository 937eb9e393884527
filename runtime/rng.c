/* rng.c — Philox4x32-10 and the uniform and normal streams built on it.
 *
 * Philox4x32 (Salmon et al., SC 2011), one round on counter (c0, c1, c2, c3), key (k0, k1):
 *   (hi0, lo0) = mulhilo32(0xD2511F53, c0),  (hi1, lo1) = mulhilo32(0xCD9E8D57, c2)
 *   c' = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0)
 * Ten rounds; the key is bumped by the Weyl constants (0x9E3779B9, 0xBB67AE85) between
 * rounds. Every value is a pure function of (seed, stream, index): no state, so results
 * never depend on the number of threads or on how a fill is split.
 */
#include "nnrt_internal.h"

#include <math.h>

enum { PHILOX_ROUNDS = 10 };

void nnrt_philox(uint64_t key, uint64_t counter_hi, uint64_t counter_lo, uint32_t out[4]) {
    uint32_t c0 = (uint32_t)counter_lo, c1 = (uint32_t)(counter_lo >> 32);
    uint32_t c2 = (uint32_t)counter_hi, c3 = (uint32_t)(counter_hi >> 32);
    uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
    for (int round = 0; round < PHILOX_ROUNDS; round++) {
        if (round > 0) {
            k0 += 0x9E3779B9u;
            k1 += 0xBB67AE85u;
        }
        uint64_t p0 = (uint64_t)0xD2511F53u * c0;
        uint64_t p1 = (uint64_t)0xCD9E8D57u * c2;
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

/* The top 24 bits of a word as a float in [0, 1): exact, every value equally likely. */
static float u24(uint32_t w) { return (float)(w >> 8) * 0x1p-24f; }

float nnrt_rng_uniform(uint64_t seed, uint64_t stream, uint64_t index) {
    uint32_t r[4];
    nnrt_philox(seed, stream, index, r);
    return u24(r[0]);
}

void nnrt_rng_fill_uniform(float *out, int64_t n, uint64_t seed, uint64_t stream,
                           uint64_t offset, float lo, float hi) {
    if (!out) return;
    double width = (double)hi - (double)lo;
    for (int64_t i = 0; i < n; i++) {
        float u = nnrt_rng_uniform(seed, stream, offset + (uint64_t)i);
        /* lo + width * u in double, rounded once; rounding can reach hi, keep [lo, hi). */
        float v = (float)((double)lo + width * (double)u);
        if (v >= hi && hi > lo) v = nextafterf(hi, lo);
        out[i] = v;
    }
}

/* Box-Muller on 53-bit uniforms from one Philox block (words 0-1 and 2-3):
 *   u1 = ((w0 << 21 | w1 >> 11) + 0.5) * 2^-53   in (0, 1), never 0, so log is finite
 *   u2 = (w2 << 21 | w3 >> 11) * 2^-53           in [0, 1)
 *   z  = sqrt(-2 ln u1) * cos(2 pi u2)
 * Only the cosine half is used, so element i needs block i alone. */
double nnrti_normal(uint64_t seed, uint64_t stream, uint64_t index) {
    uint32_t r[4];
    nnrt_philox(seed, stream, index, r);
    uint64_t a = (uint64_t)r[0] << 21 | r[1] >> 11;
    uint64_t b = (uint64_t)r[2] << 21 | r[3] >> 11;
    double u1 = ((double)a + 0.5) * 0x1p-53;
    double u2 = (double)b * 0x1p-53;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586476925 * u2);
}

void nnrt_rng_fill_normal(float *out, int64_t n, uint64_t seed, uint64_t stream,
                          uint64_t offset, float mean, float std) {
    if (!out) return;
    for (int64_t i = 0; i < n; i++)
        out[i] = (float)((double)mean +
                         (double)std * nnrti_normal(seed, stream, offset + (uint64_t)i));
}
