/* sgemm_direct.c — an AVX-512 sgemm without packing the large operand, which nnrt_sgemm
 * uses instead of OpenBLAS for the shapes where it measured faster (nnrti_sgemm_direct).
 *
 * OpenBLAS copies both operands into packed panels on every call and, for beta == 0,
 * zeroes C in a separate pass before accumulating into it. For a training step at a small
 * batch (W1: 64 x 784 x 512 and its gradients) each element of the large operand (the
 * weights, or the weight gradient being written) is used only batch-size times, so the
 * copies and the zeroing cost ~20% of the time spent in sgemm. Here:
 *
 * - the micro-kernel is the one of conv.c: a register block of MR rows x NV vectors of 16
 *   columns of D = A' B' (MR * NV accumulators), one broadcast of A'[i][p] from memory per
 *   row and p against NV vector loads of row p of B', read in place (B' must be contiguous
 *   along its columns; its rows may be any stride apart). A' is read in place too, with
 *   any row and column strides (op(A) = A or A^T). The last vector of a block is masked;
 *   rows past the end are clamped to the last row and their results dropped.
 * - C is written once: alpha and beta are applied in the store (C is not read when
 *   beta == 0).
 * - With op(B) = B (trans_b = 0) B' is B and D is C. With op(B) = B^T, B stored [n][k]
 *   (a dense layer's x @ W^T), neither operand is contiguous along the columns of C, so the
 *   kernel computes C^T = B op(A)^T instead: A' = B (the weights, read in place), B' =
 *   op(A)^T, which is packed ([k][m rounded up to 16]; the activations, the small operand
 *   at a small batch). 48 rows of C^T at a time go to a small buffer that is transposed
 *   into C (16 x 16 register transposes), applying alpha and beta. When m > n, B^T (then
 *   the smaller operand) is packed instead and is B'.
 * - op(A) = A^T with op(B) = B^T is left to OpenBLAS.
 *
 * nnrti_sgemm_direct takes a call only where the kernel measured faster than OpenBLAS
 * (worth_it); docs/runtime.md (section 9) has the numbers. Sums run over p in order, in
 * float with fused multiply-adds: a different order from OpenBLAS's, so results agree with
 * it to rounding. */
#include "nnrt_internal.h"

#include <stdlib.h>

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#define NNRT_HAVE_DIRECT_KERNEL 1
#include "avx512_transpose.h"
#else
#define NNRT_HAVE_DIRECT_KERNEL 0
#endif

int nnrti_sgemm_direct_mode;

#if NNRT_HAVE_DIRECT_KERNEL

#define TARGET __attribute__((target("avx512f")))

/* The register block: MR rows of D x NV vectors (NV <= 4). */
#define DIRECT_MR 6

/* rows (1..MR) rows of D = alpha * A' B' + beta * D over p < k, columns 16 * NV (the last
 * vector's lanes in cm). A'[i][p] = a[i * as_i + p * as_p]; B'[p][j] = b[p * ldb + j];
 * D[i][j] = d[i * ldd + j]. */
#define DIRECT_KERNEL(MR, NV)                                                                  \
    TARGET static void kernel_##MR##x##NV(int rows, int k, const float *a, int64_t as_i,       \
                                          int64_t as_p, const float *b, int64_t ldb,           \
                                          float alpha, float beta, float *d, int64_t ldd,      \
                                          __mmask16 cm) {                                      \
        const float *ar[MR];                                                                   \
        _Pragma("GCC unroll 8") for (int r = 0; r < MR; r++)                                   \
            ar[r] = a + (r < rows ? r : rows - 1) * as_i;                                      \
        __m512 acc[MR][NV];                                                                    \
        _Pragma("GCC unroll 8") for (int r = 0; r < MR; r++)                                   \
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) acc[r][v] = _mm512_setzero_ps(); \
        int64_t q = 0;                                                                         \
        for (int p = 0; p < k; p++, q += as_p) {                                               \
            const float *bp = b + p * ldb;                                                     \
            __m512 bv[NV];                                                                     \
            _Pragma("GCC unroll 4") for (int v = 0; v < NV - 1; v++)                           \
                bv[v] = _mm512_loadu_ps(bp + 16 * v);                                          \
            bv[NV - 1] = _mm512_maskz_loadu_ps(cm, bp + 16 * (NV - 1));                        \
            _Pragma("GCC unroll 8") for (int r = 0; r < MR; r++) {                             \
                __m512 av = _mm512_set1_ps(ar[r][q]);                                          \
                _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)                           \
                    acc[r][v] = _mm512_fmadd_ps(av, bv[v], acc[r][v]);                         \
            }                                                                                  \
        }                                                                                      \
        __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);                          \
        _Pragma("GCC unroll 8") for (int r = 0; r < MR; r++) {                                 \
            if (r >= rows) break;                                                              \
            float *dr = d + r * ldd;                                                           \
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) {                             \
                __mmask16 mk = v == NV - 1 ? cm : (__mmask16)0xffff;                           \
                __m512 x = _mm512_mul_ps(acc[r][v], va);                                       \
                if (beta != 0.0f)                                                              \
                    x = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mk, dr + 16 * v), vb, x);        \
                _mm512_mask_storeu_ps(dr + 16 * v, mk, x);                                     \
            }                                                                                  \
        }                                                                                      \
    }

DIRECT_KERNEL(6, 1)
DIRECT_KERNEL(6, 2)
DIRECT_KERNEL(6, 3)
DIRECT_KERNEL(6, 4)

typedef void (*DirectKernel)(int, int, const float *, int64_t, int64_t, const float *, int64_t,
                             float, float, float *, int64_t, __mmask16);

static const DirectKernel kernels[5] = {NULL, kernel_6x1, kernel_6x2, kernel_6x3, kernel_6x4};

static __mmask16 last_mask(int cols) {
    int r = cols & 15;
    return r ? (__mmask16)((1u << r) - 1) : (__mmask16)0xffff;
}

/* D[m][n] = alpha * A' B' + beta * D, panels of 64 columns of B' outside, blocks of
 * DIRECT_MR rows inside. */
TARGET static void direct(int m, int n, int k, float alpha, const float *a, int64_t as_i,
                          int64_t as_p, const float *b, int64_t ldb, float beta, float *d,
                          int64_t ldd) {
    for (int j0 = 0; j0 < n; j0 += 64) {
        int cols = n - j0 < 64 ? n - j0 : 64, nv = (cols + 15) / 16;
        __mmask16 cm = last_mask(cols);
        for (int i0 = 0; i0 < m; i0 += DIRECT_MR) {
            int rows = m - i0 < DIRECT_MR ? m - i0 : DIRECT_MR;
            kernels[nv](rows, k, a + i0 * as_i, as_i, as_p, b + j0, ldb, alpha, beta,
                        d + i0 * ldd + j0, ldd, cm);
        }
    }
}

/* at[p][i] = a[i][p] for i < m, p < k (a row-major, lda); rows of at are ldt long, the
 * columns from m to ldt (< 16 of them) zero. 16 rows of a at a time, each read along k
 * (k outside measured the same with warm caches, 3-14% slower for W1's x @ W1^T in the
 * training step, where x is not in L1). */
TARGET static void pack_at(int m, int k, const float *a, int64_t lda, float *at, int64_t ldt) {
    for (int i0 = 0; i0 < m; i0 += 16) {
        int rows = m - i0 < 16 ? m - i0 : 16;
        for (int p0 = 0; p0 < k; p0 += 16) {
            int cols = k - p0 < 16 ? k - p0 : 16;
            __mmask16 cm = (__mmask16)((1u << cols) - 1);
            __m512 r[16];
            _Pragma("GCC unroll 16") for (int i = 0; i < 16; i++)
                r[i] = i < rows ? _mm512_maskz_loadu_ps(cm, a + (i0 + i) * lda + p0)
                                : _mm512_setzero_ps();
            nnrt_transpose16(r);
            for (int p = 0; p < cols; p++) _mm512_storeu_ps(at + (p0 + p) * ldt + i0, r[p]);
        }
    }
}

/* C[m][n] = alpha * A B^T + beta * C with A [m][k] (lda), B [n][k] (ldb), as
 * C^T = B A^T: A^T packed ([k][m rounded up to 16]); for each panel of 64 columns of C^T
 * (rows of C), NT_ROWS rows of C^T at a time (blocks of DIRECT_MR rows of B) go to a
 * buffer in L1, whose groups of 16 rows are transposed into columns of C. (Chunks of k,
 * to keep the rows of A^T in L1, measured no faster: they stream from L2 fast enough.) */
#define NT_ROWS 48
TARGET static int direct_nt(int m, int n, int k, float alpha, const float *a, int lda,
                            const float *b, int ldb, float beta, float *c, int ldc) {
    int64_t ldt = ((int64_t)m + 15) / 16 * 16;
    float *at = aligned_alloc(64, (size_t)(ldt * k + NT_ROWS * 64) * sizeof *at);
    if (!at) return 0;
    float *tile = at + ldt * k;
    pack_at(m, k, a, lda, at, ldt);
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    for (int i0 = 0; i0 < m; i0 += 64) {
        int width = m - i0 < 64 ? m - i0 : 64, nv = (width + 15) / 16;
        __mmask16 wm = last_mask(width);
        for (int j0 = 0; j0 < n; j0 += NT_ROWS) {
            int trows = n - j0 < NT_ROWS ? n - j0 : NT_ROWS;
            for (int r0 = 0; r0 < trows; r0 += DIRECT_MR) {
                int rows = trows - r0 < DIRECT_MR ? trows - r0 : DIRECT_MR;
                kernels[nv](rows, k, b + (int64_t)(j0 + r0) * ldb, ldb, 1, at + i0, ldt, 1.0f,
                            0.0f, tile + r0 * 64, 64, wm);
            }
            for (int g = 0; g < trows; g += 16) {
                int grows = trows - g < 16 ? trows - g : 16;
                __mmask16 cm = (__mmask16)((1u << grows) - 1);
                for (int v = 0; v < nv; v++) {
                    __m512 r[16];
                    _Pragma("GCC unroll 16") for (int j = 0; j < 16; j++)
                        r[j] = j < grows ? _mm512_loadu_ps(tile + (g + j) * 64 + 16 * v)
                                         : _mm512_setzero_ps();
                    nnrt_transpose16(r);
                    int rows = width - 16 * v < 16 ? width - 16 * v : 16;
                    for (int i = 0; i < rows; i++) {
                        float *cr = c + (int64_t)(i0 + 16 * v + i) * ldc + j0 + g;
                        __m512 x = _mm512_mul_ps(r[i], va);
                        if (beta != 0.0f)
                            x = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(cm, cr), vb, x);
                        _mm512_mask_storeu_ps(cr, cm, x);
                    }
                }
            }
        }
    }
    free(at);
    return 1;
}

/* C[m][n] = alpha * A B^T + beta * C with B [n][k] the smaller operand: B^T packed
 * ([k][n rounded up to 16]), then the direct kernel with B' = B^T. */
TARGET static int direct_packed_b(int m, int n, int k, float alpha, const float *a, int lda,
                                  const float *b, int ldb, float beta, float *c, int ldc) {
    int64_t ldt = ((int64_t)n + 15) / 16 * 16;
    float *bt = aligned_alloc(64, (size_t)(ldt * k) * sizeof *bt);
    if (!bt) return 0;
    pack_at(n, k, b, ldb, bt, ldt);
    direct(m, n, k, alpha, a, lda, 1, bt, ldt, beta, c, ldc);
    free(bt);
    return 1;
}

#endif /* NNRT_HAVE_DIRECT_KERNEL */

/* Whether the kernel beats OpenBLAS 0.3.21 (SkylakeX kernels, one thread) for this shape,
 * from a grid of m in {1..1024}, n in {17..3136}, k in {8..3136} on an AMD EPYC (Zen 5);
 * docs/runtime.md (section 9) has the numbers. It loses where there is too little work
 * per call for its row blocks (m < 16; n * k small), where OpenBLAS's cache blocking
 * matters (the rows of B' stream from L3: n * k above 1M floats; op(A) = A^T re-read for
 * every panel of 64 columns: m * k above 512K floats) and, with trans_b, where the packed
 * operand is not the smaller one by a margin. */
static int worth_it(int trans_a, int trans_b, int m, int n, int k) {
    int64_t nk = (int64_t)n * k;
    if (trans_b) {
        if (m <= n) /* C^T = B A^T, A^T packed */
            return m >= 16 && m <= 128 && n >= 2 * m && (int64_t)m * n >= 2048 && k >= 64;
        return m >= 128 && n >= 17 && m >= 2 * n && nk <= 512 * 1024; /* B^T packed */
    }
    if (m < 16 || n < 32 || nk > 1024 * 1024 || nk < (m >= 32 ? 32768 : 65536)) return 0;
    return !trans_a || (int64_t)m * k <= 512 * 1024;
}

int nnrti_sgemm_direct(int trans_a, int trans_b, int m, int n, int k, float alpha,
                       const float *a, int lda, const float *b, int ldb, float beta, float *c,
                       int ldc) {
#if NNRT_HAVE_DIRECT_KERNEL
    if (nnrti_sgemm_direct_mode == NNRTI_DIRECT_OFF || m < 1 || n < 1 || k < 1) return 0;
    /* trans_a with trans_b: neither operand is contiguous along C's rows or columns;
     * alpha == 0: BLAS does not read A and B then (NaNs there must not reach C) */
    if ((trans_a && trans_b) || alpha == 0.0f) return 0;
    if (nnrti_sgemm_direct_mode != NNRTI_DIRECT_ALWAYS && !worth_it(trans_a, trans_b, m, n, k))
        return 0;
    if (!nnrti_have_avx512(0)) return 0;
    if (trans_b && m <= n) return direct_nt(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    if (trans_b) return direct_packed_b(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    direct(m, n, k, alpha, a, trans_a ? 1 : lda, trans_a ? lda : 1, b, ldb, beta, c, ldc);
    return 1;
#else
    (void)trans_a, (void)trans_b, (void)m, (void)n, (void)k, (void)alpha, (void)a, (void)lda;
    (void)b, (void)ldb, (void)beta, (void)c, (void)ldc;
    return 0;
#endif
}
