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

#include "sgemm_check.h"

/* 1: the narrow kernels on for every shape they can compute; 0: OpenBLAS; -1: the default. */
static void use_narrow(int on) {
    nnrti_sgemm_narrow_mode = on < 0 ? NNRTI_NARROW_AUTO : on ? NNRTI_NARROW_ALWAYS : NNRTI_NARROW_OFF;
}

static void check_shape(int ta, int tb, int m, int n, int k, int pad, float alpha, float beta,
                        uint64_t *seed) {
    check_sgemm_shape(use_narrow, ta, tb, m, n, k, pad, alpha, beta, seed);
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
