/* avx512_transpose.h — the 16x16 float transpose in AVX-512 registers shared by the direct
 * convolution (conv.c) and the narrow-sgemm kernels (sgemm_narrow.c). Include only where
 * <immintrin.h> is available (x86 with GCC or Clang); callers run it behind their own CPU
 * check. */
#ifndef NNRT_AVX512_TRANSPOSE_H
#define NNRT_AVX512_TRANSPOSE_H

#include <immintrin.h>

/* In-place 16x16 transpose of r[0..15]: afterwards r[j] lane i is the old r[i] lane j. */
__attribute__((target("avx512f"))) static inline __attribute__((always_inline)) void
nnrt_transpose16(__m512 r[16]) {
    __m512 t[16];
    _Pragma("GCC unroll 16") for (int k = 0; k < 16; k += 2) {
        t[k] = _mm512_unpacklo_ps(r[k], r[k + 1]);
        t[k + 1] = _mm512_unpackhi_ps(r[k], r[k + 1]);
    }
    _Pragma("GCC unroll 16") for (int k = 0; k < 16; k += 4) {
        r[k] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[k]), _mm512_castps_pd(t[k + 2])));
        r[k + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[k]), _mm512_castps_pd(t[k + 2])));
        r[k + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[k + 1]), _mm512_castps_pd(t[k + 3])));
        r[k + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[k + 1]), _mm512_castps_pd(t[k + 3])));
    }
    /* r[4a + b] holds, in each 128-bit lane L, column 4L + b of rows 4a .. 4a + 3 */
    _Pragma("GCC unroll 16") for (int b = 0; b < 4; b++) {
        t[b] = _mm512_shuffle_f32x4(r[b], r[4 + b], 0x88);     /* lanes 0,2 of rows 0-3, 4-7 */
        t[4 + b] = _mm512_shuffle_f32x4(r[b], r[4 + b], 0xdd); /* lanes 1,3 */
        t[8 + b] = _mm512_shuffle_f32x4(r[8 + b], r[12 + b], 0x88);
        t[12 + b] = _mm512_shuffle_f32x4(r[8 + b], r[12 + b], 0xdd);
    }
    _Pragma("GCC unroll 16") for (int b = 0; b < 4; b++) {
        r[b] = _mm512_shuffle_f32x4(t[b], t[8 + b], 0x88);          /* column b */
        r[8 + b] = _mm512_shuffle_f32x4(t[b], t[8 + b], 0xdd);      /* column 8 + b */
        r[4 + b] = _mm512_shuffle_f32x4(t[4 + b], t[12 + b], 0x88);  /* column 4 + b */
        r[12 + b] = _mm512_shuffle_f32x4(t[4 + b], t[12 + b], 0xdd); /* column 12 + b */
    }
}

#endif
