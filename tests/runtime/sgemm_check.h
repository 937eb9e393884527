/* sgemm_check.h — the check shared by the tests of nnrt_sgemm's own kernels
 * (test_sgemm_narrow.c, test_sgemm_direct.c): a call through the kernel under test and one
 * through OpenBLAS, both against a double-precision loop. Include after check.h. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

static void fill_random(float *x, size_t n, uint64_t *s) {
    for (size_t i = 0; i < n; i++) x[i] = (float)((int)(test_rand(s) % 2001) - 1000) / 500.0f;
}

static int failures_shown;

/* One call with the kernel under test on (use_kernel(1)) and one with it off
 * (use_kernel(0): OpenBLAS); both checked against a double-precision loop, relative to the
 * sum of the products' magnitudes; columns of C past n must stay untouched. use_kernel(-1)
 * restores the default dispatch. */
static void check_sgemm_shape(void (*use_kernel)(int on), int ta, int tb, int m, int n, int k, int pad,
                              float alpha, float beta, uint64_t *seed) {
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

    use_kernel(1);
    nnrt_sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    use_kernel(0);
    nnrt_sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, cb, ldc);
    use_kernel(-1);

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

