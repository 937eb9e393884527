/* sgemm_narrow.c — AVX-512 kernels for sgemm with a narrow C (n <= 16 columns), which
 * nnrt_sgemm uses instead of OpenBLAS where they apply (nnrti_sgemm_narrow).
 *
 * With n <= 16, the usual GEMM micro-kernel (C rows as vectors, one broadcast of A per
 * FMA) fills only n of the 16 lanes of each FMA: 10 of 16 for a 784-10 classifier, whose
 * x @ W and x^T @ dY then run at ~60% of the FMA rate. Both kernels here put the vector
 * lanes along an axis that is long instead:
 *
 * - "dot" (op(A) = A, A row-major [m][k]): C[i][j] is the dot product of row i of A and
 *   column j of op(B), both contiguous along k once op(B) is B^T (B is transposed into a
 *   buffer when trans_b is 0, pack_bt; B^T is [n][k] as given when it is 1). A register
 *   block of 4 rows of A x 5 rows of B^T accumulates 20 vectors of partial sums along k
 *   (9 loads per 20 FMAs; 8 x 2 blocks ran at 75% of the FMA rate, their A rows coming
 *   from L2 as fast as L2 delivers); the vectors are then summed across their lanes 16 at
 *   a time, in 4 rounds of shuffles and adds, into one vector holding 16 results. Rows of
 *   A past m and columns past n are clamped to the last one and their results dropped; k
 *   that is not a multiple of 16 ends with masked loads.
 * - "outer" (op(A) = A^T, A stored [k][m]): C^T[j][i..i+31] += op(B)[p][j] * A[p][i..i+31]
 *   for each p < k: lanes along m, one broadcast of op(B)[p][j] per two FMAs (16 rows
 *   and one per FMA for n > 12). The n x 32 block of C^T is transposed in registers
 *   (16x16) and stored as 32 rows of C with masked stores of n floats. Rows past m are
 *   masked.
 *
 * nnrti_sgemm_narrow takes a call only where the kernels measured faster than OpenBLAS
 * (worth_it); docs/runtime.md (section 9) and docs/performance.md (W3) have the numbers.
 *
 * Sums run in float with fused multiply-adds, in a different order from OpenBLAS's, so
 * results agree with it to rounding. alpha and beta are applied once per element at the
 * end (C is not read when beta == 0). */
#include "nnrt_internal.h"

#include <stdlib.h>

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#define NNRT_HAVE_NARROW_KERNEL 1
#include "avx512_transpose.h"
#else
#define NNRT_HAVE_NARROW_KERNEL 0
#endif

int nnrti_sgemm_narrow_mode;

#if NNRT_HAVE_NARROW_KERNEL

#define TARGET __attribute__((target("avx512f,avx512vl")))

/* The 16 rows p0 + 4L + a (L = 0..3) of b, columns 4g .. 4g + 3 (those in cm), as the
 * four 128-bit lanes of one vector. */
TARGET static inline __attribute__((always_inline)) __m512 quad(const float *r, int64_t ld4, __mmask8 cm) {
    __m512 v = _mm512_maskz_broadcast_f32x4(0x000f, _mm_maskz_loadu_ps(cm, r));
    v = _mm512_mask_broadcast_f32x4(v, 0x00f0, _mm_maskz_loadu_ps(cm, r + ld4));
    v = _mm512_mask_broadcast_f32x4(v, 0x0f00, _mm_maskz_loadu_ps(cm, r + 2 * ld4));
    return _mm512_mask_broadcast_f32x4(v, 0xf000, _mm_maskz_loadu_ps(cm, r + 3 * ld4));
}

/* bt[j][p] = b[p][j] for j < n (<= 16), p < k; rows of bt are ldt >= round_up(k, 16) long,
 * zero from k on. Blocks of 16 rows of b, 4 columns at a time: each vector gathers
 * (through the load ports) 4 columns of rows a, a+4, a+8, a+12 in its 128-bit lanes, so
 * that 4x4 transposes within the lanes finish the job (20 shuffles per 16 x 10 block
 * instead of the 58 of a 16x16 transpose). The rows past k are transposed as zeros
 * through the full 16x16 transpose. */
TARGET static void pack_bt(int n, int k, const float *b, int ldb, float *bt, int64_t ldt) {
    int64_t ld4 = 4 * (int64_t)ldb;
    int p0 = 0;
    for (; p0 + 16 <= k; p0 += 16) {
        const float *blk = b + (int64_t)p0 * ldb;
        for (int g = 0; 4 * g < n; g++) {
            __mmask8 cm = (__mmask8)(n - 4 * g >= 4 ? 0xf : (1u << (n - 4 * g)) - 1);
            const float *r = blk + 4 * g;
            __m512 v0 = quad(r, ld4, cm), v1 = quad(r + ldb, ld4, cm);
            __m512 v2 = quad(r + 2 * ldb, ld4, cm), v3 = quad(r + 3 * ldb, ld4, cm);
            __m512d t0 = _mm512_castps_pd(_mm512_unpacklo_ps(v0, v1));
            __m512d t1 = _mm512_castps_pd(_mm512_unpackhi_ps(v0, v1));
            __m512d t2 = _mm512_castps_pd(_mm512_unpacklo_ps(v2, v3));
            __m512d t3 = _mm512_castps_pd(_mm512_unpackhi_ps(v2, v3));
            float *o = bt + 4 * g * ldt + p0;
            _mm512_storeu_ps(o, _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2)));
            if (4 * g + 1 < n) _mm512_storeu_ps(o + ldt, _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2)));
            if (4 * g + 2 < n) _mm512_storeu_ps(o + 2 * ldt, _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3)));
            if (4 * g + 3 < n) _mm512_storeu_ps(o + 3 * ldt, _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3)));
        }
    }
    if (p0 < k) {
        __mmask16 cols = (__mmask16)((1u << n) - 1);
        __m512 r[16];
        _Pragma("GCC unroll 16") for (int i = 0; i < 16; i++)
            r[i] = p0 + i < k ? _mm512_maskz_loadu_ps(cols, b + (int64_t)(p0 + i) * ldb)
                              : _mm512_setzero_ps();
        nnrt_transpose16(r);
        _Pragma("GCC unroll 16") for (int j = 0; j < 16; j++)
            if (j < n) _mm512_storeu_ps(bt + j * ldt + p0, r[j]);
    }
}

/* The 16 lane sums of acc[0..15], as one vector: lane q is the sum of acc[q]. */
TARGET static inline __attribute__((always_inline)) __m512 sum16(const __m512 acc[16]) {
    /* the rounds below leave lane 4e + q with the sum of their input 4q + e: feed them
     * acc in that order */
    __m512 t[8], u[4], v[2];
    _Pragma("GCC unroll 8") for (int p = 0; p < 8; p++) {
        int i0 = 2 * p, i1 = 2 * p + 1;
        __m512 a0 = acc[(i0 % 4) * 4 + i0 / 4], a1 = acc[(i1 % 4) * 4 + i1 / 4];
        /* 256-bit halves of a0 summed in lanes 0-7, of a1 in 8-15 */
        t[p] = _mm512_add_ps(_mm512_shuffle_f32x4(a0, a1, 0x44), _mm512_shuffle_f32x4(a0, a1, 0xee));
    }
    _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++)
        /* 128-bit lane L: one input's 4 partial sums */
        u[r] = _mm512_add_ps(_mm512_shuffle_f32x4(t[2 * r], t[2 * r + 1], 0x88),
                             _mm512_shuffle_f32x4(t[2 * r], t[2 * r + 1], 0xdd));
    _Pragma("GCC unroll 2") for (int s = 0; s < 2; s++) {
        __m512d a = _mm512_castps_pd(u[2 * s]), b = _mm512_castps_pd(u[2 * s + 1]);
        v[s] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(a, b)),
                             _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)));
    }
    return _mm512_add_ps(_mm512_shuffle_ps(v[0], v[1], 0x88), _mm512_shuffle_ps(v[0], v[1], 0xdd));
}

/* The dot kernel's register block (rows of A x rows of B^T) and longest chunk of k. Measured
 * for 64 x 10 x 784 with warm caches: 4 x 5 6.0 us, 5 x 5 6.2, 4 x 4 7.3, 6 x 4 7.5, 8 x 2 7.8,
 * 2 x 10 7.3; chunks of 256: 6.9 (4 x 5). */
#define DOT_MR 4
#define DOT_NR 5
#define DOT_KC 1024

#define DOT_ACC (DOT_MR * DOT_NR)

/* A register block of DOT_MR rows of A (ar) x DOT_NR rows of B^T (br) over p in [p0, p1)
 * (p0 a multiple of 16): acc[i*DOT_NR + j] += ar[i][p..p+15] * br[j][p..p+15], the last
 * 16 masked by tail when p1 is not a multiple of 16. */
TARGET static inline __attribute__((always_inline)) void dot_block(const float *const *ar, const float *const *br,
                                                                   int p0, int p1, __mmask16 tail, __m512 *acc) {
    int p = p0;
    for (; p + 16 <= p1; p += 16) {
        __m512 bv[DOT_NR];
        _Pragma("GCC unroll 16") for (int j = 0; j < DOT_NR; j++) bv[j] = _mm512_loadu_ps(br[j] + p);
        _Pragma("GCC unroll 16") for (int i = 0; i < DOT_MR; i++) {
            __m512 av = _mm512_loadu_ps(ar[i] + p);
            __asm__("" : "+v"(av)); /* one load per row, not one per FMA */
            _Pragma("GCC unroll 16") for (int j = 0; j < DOT_NR; j++)
                acc[i * DOT_NR + j] = _mm512_fmadd_ps(av, bv[j], acc[i * DOT_NR + j]);
        }
    }
    if (p < p1) {
        __m512 bv[DOT_NR];
        _Pragma("GCC unroll 16") for (int j = 0; j < DOT_NR; j++) bv[j] = _mm512_maskz_loadu_ps(tail, br[j] + p);
        _Pragma("GCC unroll 16") for (int i = 0; i < DOT_MR; i++) {
            __m512 av = _mm512_maskz_loadu_ps(tail, ar[i] + p);
            _Pragma("GCC unroll 16") for (int j = 0; j < DOT_NR; j++)
                acc[i * DOT_NR + j] = _mm512_fmadd_ps(av, bv[j], acc[i * DOT_NR + j]);
        }
    }
}

/* C[i][j] = alpha * sum_p a[i][p] * bt[j][p] + beta * C[i][j]. bt rows: ldt floats.
 * k is split into chunks of at most DOT_KC, so that a block's rows of A and the chunk of
 * B^T stay in L1 while every group of columns goes over them; the partial sums of the
 * groups wait in part between chunks. */
TARGET static void dot_kernel(int m, int n, int k, float alpha, const float *a, int lda,
                              const float *bt, int64_t ldt, float beta, float *c, int ldc) {
    __m512 part[(16 + DOT_NR - 1) / DOT_NR][DOT_ACC];
    __mmask16 tail = (__mmask16)((1u << (k & 15)) - 1);
    int chunks = (k + DOT_KC - 1) / DOT_KC;
    int kc = ((k + chunks - 1) / chunks + 15) & ~15;
    for (int i0 = 0; i0 < m; i0 += DOT_MR) {
        const float *ar[DOT_MR];
        _Pragma("GCC unroll 16") for (int i = 0; i < DOT_MR; i++)
            ar[i] = a + (int64_t)(i0 + i < m ? i0 + i : m - 1) * lda;
        for (int p0 = 0; p0 < k; p0 += kc) {
            int p1 = p0 + kc < k ? p0 + kc : k, first = p0 == 0, last = p1 == k;
            for (int j0 = 0, g = 0; j0 < n; j0 += DOT_NR, g++) {
                const float *br[DOT_NR];
                _Pragma("GCC unroll 16") for (int j = 0; j < DOT_NR; j++)
                    br[j] = bt + (j0 + j < n ? j0 + j : n - 1) * ldt;
                __m512 acc[DOT_ACC];
                _Pragma("GCC unroll 32") for (int q = 0; q < DOT_ACC; q++)
                    acc[q] = first ? _mm512_setzero_ps() : part[g][q];
                dot_block(ar, br, p0, p1, tail, acc);
                if (!last) {
                    _Pragma("GCC unroll 32") for (int q = 0; q < DOT_ACC; q++) part[g][q] = acc[q];
                    continue;
                }
                float s[(DOT_ACC + 15) & ~15];
                _Pragma("GCC unroll 2") for (int q0 = 0; q0 < DOT_ACC; q0 += 16) {
                    __m512 grp[16];
                    _Pragma("GCC unroll 16") for (int q = 0; q < 16; q++)
                        grp[q] = q0 + q < DOT_ACC ? acc[q0 + q] : _mm512_setzero_ps();
                    _mm512_storeu_ps(s + q0, _mm512_mul_ps(sum16(grp), _mm512_set1_ps(alpha)));
                }
                int rows = m - i0 < DOT_MR ? m - i0 : DOT_MR, cols = n - j0 < DOT_NR ? n - j0 : DOT_NR;
                for (int i = 0; i < rows; i++) {
                    float *cr = c + (int64_t)(i0 + i) * ldc + j0;
                    for (int j = 0; j < cols; j++)
                        cr[j] = beta == 0.0f ? s[i * DOT_NR + j] : s[i * DOT_NR + j] + beta * cr[j];
                }
            }
        }
    }
}

/* rows i0 .. i0 + 16*MV - 1 (those < m) of C from acc[j][v] = C^T[j][i0 + 16v ..]. With
 * beta, the block's rows of C are all read before any is written: a read of a line that a
 * masked store has just written waits for the store (1.8x the kernel's time when each row
 * was read and then written). */
#define OUTER_STORE(N, MV)                                                                      \
    if (beta == 0.0f) {                                                                       \
        _Pragma("GCC unroll 2") for (int v = 0; v < MV; v++) {                                \
            __m512 r[16];                                                                     \
            _Pragma("GCC unroll 16") for (int j = 0; j < 16; j++)                             \
                r[j] = j < N ? acc[j][v] : _mm512_setzero_ps();                               \
            nnrt_transpose16(r);                                                                   \
            int rows = m - i0 - 16 * v;                                                       \
            if (rows > 16) rows = 16;                                                         \
            for (int i = 0; i < rows; i++)                                                    \
                _mm512_mask_storeu_ps(c + (int64_t)(i0 + 16 * v + i) * ldc, cols,             \
                                      _mm512_mul_ps(r[i], va));                               \
        }                                                                                     \
    } else {                                                                                  \
        __m512 r[MV][16];                                                                     \
        _Pragma("GCC unroll 2") for (int v = 0; v < MV; v++) {                                \
            _Pragma("GCC unroll 16") for (int j = 0; j < 16; j++)                             \
                r[v][j] = j < N ? acc[j][v] : _mm512_setzero_ps();                            \
            nnrt_transpose16(r[v]);                                                                \
            _Pragma("GCC unroll 16") for (int i = 0; i < 16; i++)                             \
                r[v][i] = _mm512_mul_ps(r[v][i], va);                                         \
        }                                                                                     \
        if (m - i0 >= 16 * MV) {                                                              \
            _Pragma("GCC unroll 2") for (int v = 0; v < MV; v++)                              \
                _Pragma("GCC unroll 16") for (int i = 0; i < 16; i++)                         \
                    r[v][i] = _mm512_fmadd_ps(                                                \
                        _mm512_maskz_loadu_ps(cols, c + (int64_t)(i0 + 16 * v + i) * ldc), vb,  \
                        r[v][i]);                                                             \
            _Pragma("GCC unroll 2") for (int v = 0; v < MV; v++)                              \
                _Pragma("GCC unroll 16") for (int i = 0; i < 16; i++)                         \
                    _mm512_mask_storeu_ps(c + (int64_t)(i0 + 16 * v + i) * ldc, cols, r[v][i]); \
        } else {                                                                              \
            for (int i = 0; i < m - i0; i++)                                                  \
                r[i / 16][i % 16] = _mm512_fmadd_ps(                                          \
                    _mm512_maskz_loadu_ps(cols, c + (int64_t)(i0 + i) * ldc), vb,             \
                    r[i / 16][i % 16]);                                                       \
            for (int i = 0; i < m - i0; i++)                                                  \
                _mm512_mask_storeu_ps(c + (int64_t)(i0 + i) * ldc, cols, r[i / 16][i % 16]);  \
        }                                                                                     \
    }

/* C[i][j] = alpha * sum_p a[p][i] * op(B)[p][j] + beta * C[i][j] for N columns (a compile-
 * time constant), MV vectors of 16 rows of C per block; op(B)[p][j] = b[p*bs_p + j*bs_j]. */
#define OUTER_KERNEL(N, MV)                                                                    \
    TARGET static void outer_kernel_##N(int m, int k, float alpha, const float *a, int lda,    \
                                        const float *b, int64_t bs_p, int64_t bs_j,           \
                                        float beta, float *c, int ldc) {                      \
        __mmask16 cols = (__mmask16)((1u << N) - 1);                                          \
        __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);                         \
        for (int i0 = 0; i0 < m; i0 += 16 * MV) {                                             \
            __mmask16 rm[MV];                                                                 \
            _Pragma("GCC unroll 2") for (int v = 0; v < MV; v++) {                            \
                int left = m - i0 - 16 * v;                                                   \
                rm[v] = left >= 16 ? (__mmask16)0xffff                                        \
                      : left <= 0 ? (__mmask16)0 : (__mmask16)((1u << left) - 1);             \
            }                                                                                 \
            __m512 acc[N][MV];                                                                \
            _Pragma("GCC unroll 16") for (int j = 0; j < N; j++)                              \
                _Pragma("GCC unroll 2") for (int v = 0; v < MV; v++)                          \
                    acc[j][v] = _mm512_setzero_ps();                                          \
            for (int p = 0; p < k; p++) {                                                     \
                const float *ap = a + (int64_t)p * lda + i0, *bp = b + p * bs_p;              \
                __m512 av[MV];                                                                \
                _Pragma("GCC unroll 2") for (int v = 0; v < MV; v++)                          \
                    av[v] = _mm512_maskz_loadu_ps(rm[v], ap + 16 * v);                        \
                _Pragma("GCC unroll 16") for (int j = 0; j < N; j++) {                        \
                    __m512 bv = _mm512_set1_ps(bp[j * bs_j]);                                 \
                    _Pragma("GCC unroll 2") for (int v = 0; v < MV; v++)                      \
                        acc[j][v] = _mm512_fmadd_ps(av[v], bv, acc[j][v]);                    \
                }                                                                             \
            }                                                                                 \
            OUTER_STORE(N, MV)                                                                \
        }                                                                                     \
    }

OUTER_KERNEL(1, 2)
OUTER_KERNEL(2, 2)
OUTER_KERNEL(3, 2)
OUTER_KERNEL(4, 2)
OUTER_KERNEL(5, 2)
OUTER_KERNEL(6, 2)
OUTER_KERNEL(7, 2)
OUTER_KERNEL(8, 2)
OUTER_KERNEL(9, 2)
OUTER_KERNEL(10, 2)
OUTER_KERNEL(11, 2)
OUTER_KERNEL(12, 2)
OUTER_KERNEL(13, 1)
OUTER_KERNEL(14, 1)
OUTER_KERNEL(15, 1)
OUTER_KERNEL(16, 1)

typedef void (*OuterKernel)(int, int, float, const float *, int, const float *, int64_t, int64_t,
                            float, float *, int);

static const OuterKernel outer_kernels[17] = {
    NULL,           outer_kernel_1,  outer_kernel_2,  outer_kernel_3,  outer_kernel_4,
    outer_kernel_5, outer_kernel_6,  outer_kernel_7,  outer_kernel_8,  outer_kernel_9,
    outer_kernel_10, outer_kernel_11, outer_kernel_12, outer_kernel_13, outer_kernel_14,
    outer_kernel_15, outer_kernel_16,
};

#endif /* NNRT_HAVE_NARROW_KERNEL */

/* Whether the kernels beat OpenBLAS 0.3.21 (SkylakeX kernels, one thread) for this shape,
 * from a grid of m in {16..256}, n in {1..16}, k in {16..2048} on an AMD EPYC (Zen 5):
 * they win where n leaves OpenBLAS's vectors partly empty (n = 10: 1.2-1.9x for A @ B at
 * k >= 256, 1.2-1.9x for A^T @ B at any k) and lose where it does not (n = 1, 2, 4, 8, 16)
 * or k is too short for the dot products' lane sums (A @ B at k = 64: 0.5-0.9x).
 * docs/performance.md (W3) has the measurements. */
static int worth_it(int trans_a, int trans_b, int m, int n, int k) {
    if (m < 16 || k < 16) return 0;
    unsigned bit = 1u << n;
    if (trans_a) return (bit & 0x3fe8u) != 0; /* n = 3, 5..13 */
    if (!trans_b)                             /* n = 9..15; 3, 5, 7 from k = 512 */
        return (k >= 256 && (bit & 0xfe00u)) || (k >= 512 && (bit & 0xa8u));
    return k >= 512 && (bit & 0xea8u);        /* n = 3, 5, 7, 9, 10, 11 */
}

int nnrti_sgemm_narrow(int trans_a, int trans_b, int m, int n, int k, float alpha,
                       const float *a, int lda, const float *b, int ldb, float beta, float *c,
                       int ldc) {
#if NNRT_HAVE_NARROW_KERNEL
    if (nnrti_sgemm_narrow_mode == NNRTI_NARROW_OFF || n < 1 || n > 16 || m < 1 || k < 1)
        return 0;
    if (nnrti_sgemm_narrow_mode != NNRTI_NARROW_ALWAYS && !worth_it(trans_a, trans_b, m, n, k))
        return 0;
    if (!nnrti_have_avx512(NNRTI_AVX512_VL)) return 0;
    if (trans_a) {
        outer_kernels[n](m, k, alpha, a, lda, b, trans_b ? 1 : ldb, trans_b ? ldb : 1, beta, c,
                         ldc);
        return 1;
    }
    if (trans_b) {
        dot_kernel(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return 1;
    }
    int64_t ldt = ((int64_t)k + 15) / 16 * 16;
    float *bt = aligned_alloc(64, (size_t)(ldt * n) * sizeof *bt);
    if (!bt) return 0;
    pack_bt(n, k, b, ldb, bt, ldt);
    dot_kernel(m, n, k, alpha, a, lda, bt, ldt, beta, c, ldc);
    free(bt);
    return 1;
#else
    (void)trans_a, (void)trans_b, (void)m, (void)n, (void)k, (void)alpha, (void)a, (void)lda;
    (void)b, (void)ldb, (void)beta, (void)c, (void)ldc;
    return 0;
#endif
}
