/* test_sgemm_narrow.c — nnrt_sgemm's kernels for narrow C (n <= 16, sgemm_narrow.c),
 * forced on for every shape they can compute, against a double-precision loop and against
 * OpenBLAS (the same call with the kernels off), over shapes that exercise every remainder:
 * n from 1 to 16 (groups of 5 columns and a partial last one, the per-n outer kernels), m
 * not a multiple of the register blocks (4 rows; 16 and 32 rows) and below them, k not a
 * multiple of 16, below 16 and across the k-chunks of the dot kernel, both transposes,
 * leading dimensions larger than the matrix, alpha and beta (C is not read when beta is
 * 0: it starts as NaN there). Then which shapes nnrt_sgemm gives them by default. */
#include "check.h"
#include "nnrt_internal.h"

static void fill_random(float *x, size_t n, uint64_t *s) {
    for (size_t i = 0; i < n; i++) x[i] = (float)((int)(test_rand(s) % 2001) - 1000) / 500.0f;
}

static int failures_shown;

/* One call with the kernels on and one with them off; both checked against the loop. */
static void check_shape(int ta, int tb, int m, int n, int k, int pad, float alpha, float beta,
                        uint64_t *seed) {
    int lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad;
    int arows = ta ? k : m, brows = tb ? n : k;
    size_t csize = (size_t)m * ldc;
    float *a = malloc((size_t)arows * lda * sizeof *a);
    float *b = malloc((size_t)brows * ldb * sizeof *b);
    float *c0 = malloc(csize * sizeof *c0), *c = malloc(csize * sizeof *c);
    float *cb = malloc(csize * sizeof *cb);
    fill_random(a, (size_t)arows * lda, seed);
    fill_random(b, (size_t)brows * ldb, seed);
    fill_random(c0, csize, seed);
    if (beta == 0.0f)
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) c0[(size_t)i * ldc + j] = NAN;
    memcpy(c, c0, csize * sizeof *c);
    memcpy(cb, c0, csize * sizeof *cb);

    nnrti_sgemm_narrow_mode = NNRTI_NARROW_ALWAYS;
    nnrt_sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    nnrti_sgemm_narrow_mode = NNRTI_NARROW_OFF;
    nnrt_sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, cb, ldc);
    nnrti_sgemm_narrow_mode = NNRTI_NARROW_AUTO;

    double worst = 0, worst_blas = 0;
    int untouched = 1;
    for (int i = 0; i < m; i++) {
        for (int j = 0; j < n; j++) {
            double s = 0, mag = 0;
            for (int p = 0; p < k; p++) {
                double x = ta ? a[(size_t)p * lda + i] : a[(size_t)i * lda + p];
                double y = tb ? b[(size_t)j * ldb + p] : b[(size_t)p * ldb + j];
                s += x * y;
                mag += fabs(x * y);
            }
            double c_in = beta == 0.0f ? 0 : c0[(size_t)i * ldc + j];
            double ref = alpha * s + beta * c_in;
            /* float rounding of k products summed: relative to the sum of magnitudes */
            double scale = fabs(alpha) * mag + fabs(beta * c_in) + 1e-6;
            double e = fabs(c[(size_t)i * ldc + j] - ref) / scale;
            double eb = fabs(cb[(size_t)i * ldc + j] - ref) / scale;
            if (!(e <= worst)) worst = e; /* NaN sticks */
            if (!(eb <= worst_blas)) worst_blas = eb;
        }
        for (int j = n; j < ldc; j++)
            if (memcmp(&c[(size_t)i * ldc + j], &c0[(size_t)i * ldc + j], sizeof *c)) untouched = 0;
    }
    check_count++;
    if (!(worst <= 2e-6) || !untouched) {
        check_failed++;
        if (failures_shown++ < 20)
            fprintf(stderr,
                    "%s:%d: ta=%d tb=%d m=%d n=%d k=%d pad=%d alpha=%g beta=%g: relative error "
                    "%g (OpenBLAS %g), padding %s\n",
                    __FILE__, __LINE__, ta, tb, m, n, k, pad, alpha, beta, worst, worst_blas,
                    untouched ? "untouched" : "WRITTEN");
    }
    free(a);
    free(b);
    free(c0);
    free(c);
    free(cb);
}

static void test_shapes(void) {
    uint64_t seed = 2024;
    const int ms[] = {1, 3, 7, 16, 17, 23, 31, 32, 33, 64, 100};
    const int ks[] = {1, 5, 16, 17, 31, 64, 100, 255, 256, 257, 784, 1100};
    const float alphas[] = {1.0f, -0.5f}, betas[] = {0.0f, 1.0f, 0.25f};
    int combo = 0;
    for (int n = 1; n <= 16; n++)
        for (size_t mi = 0; mi < sizeof ms / sizeof ms[0]; mi++)
            for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++)
                for (int ta = 0; ta < 2; ta++)
                    for (int tb = 0; tb < 2; tb++) {
                        combo++;
                        float alpha = alphas[combo % 2], beta = betas[combo % 3];
                        check_shape(ta, tb, ms[mi], n, ks[ki], combo % 3, alpha, beta, &seed);
                    }
}

/* By default the kernels take the shapes W3 runs (when the CPU has AVX-512F and VL) and
 * leave to OpenBLAS the ones where it is faster or that they cannot compute. */
static void test_dispatch(void) {
    int avx512 = 0;
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
    __builtin_cpu_init();
    avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl");
#endif
    float *a = calloc(64 * 784, sizeof *a), *b = calloc(784 * 17, sizeof *b);
    float *c = calloc(784 * 17, sizeof *c);
    CHECK_EQ(nnrti_sgemm_narrow(0, 0, 64, 10, 784, 1, a, 784, b, 10, 0, c, 10), avx512);
    CHECK_EQ(nnrti_sgemm_narrow(1, 0, 784, 10, 64, 1, a, 784, b, 10, 0, c, 10), avx512);
    CHECK_EQ(nnrti_sgemm_narrow(0, 0, 64, 17, 784, 1, a, 784, b, 17, 0, c, 17), 0);
    CHECK_EQ(nnrti_sgemm_narrow(0, 0, 64, 16, 784, 1, a, 784, b, 16, 0, c, 16), 0);
    CHECK_EQ(nnrti_sgemm_narrow(0, 0, 64, 10, 64, 1, a, 64, b, 10, 0, c, 10), 0);
    CHECK_EQ(nnrti_sgemm_narrow(0, 0, 1, 10, 784, 1, a, 784, b, 10, 0, c, 10), 0);
    nnrti_sgemm_narrow_mode = NNRTI_NARROW_OFF;
    CHECK_EQ(nnrti_sgemm_narrow(0, 0, 64, 10, 784, 1, a, 784, b, 10, 0, c, 10), 0);
    nnrti_sgemm_narrow_mode = NNRTI_NARROW_ALWAYS;
    CHECK_EQ(nnrti_sgemm_narrow(0, 0, 1, 16, 3, 1, a, 3, b, 16, 0, c, 16), avx512);
    CHECK_EQ(nnrti_sgemm_narrow(0, 0, 4, 10, 0, 1, a, 1, b, 10, 0, c, 10), 0);
    nnrti_sgemm_narrow_mode = NNRTI_NARROW_AUTO;
    free(a);
    free(b);
    free(c);
}

int main(void) {
    test_dispatch();
    test_shapes();
    return check_summary("test_sgemm_narrow");
}
