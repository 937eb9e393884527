/* test_sgemm_direct.c — nnrt_sgemm's direct kernel (sgemm_direct.c), forced on for every
 * shape it can compute, against a double-precision loop and against OpenBLAS (the same call
 * with the kernel off), over shapes that exercise every remainder: m not a multiple of the
 * 6-row register block, of the 64-row panels of the trans_b path or below them; n not a
 * multiple of 16 (the masked last vector), of the 64-column panels or of the 48-row buffer
 * of the trans_b path; k from 1; each transpose that it takes, leading dimensions larger
 * than the matrix, alpha and beta (C is not read when beta is 0: it starts as NaN there);
 * then W1's shapes. Then which shapes nnrt_sgemm gives it by default. The narrow kernels
 * (n <= 16) are off, so that these shapes reach the direct kernel. */
#include "check.h"
#include "nnrt_internal.h"

#include "sgemm_check.h"

/* 1: the direct kernel on for every shape it can compute (narrow kernels off, so that the
 * shapes reach it); 0: OpenBLAS; -1: the defaults. */
static void use_direct(int on) {
    nnrti_sgemm_narrow_mode = on < 0 ? NNRTI_NARROW_AUTO : NNRTI_NARROW_OFF;
    nnrti_sgemm_direct_mode = on < 0 ? NNRTI_DIRECT_AUTO : on ? NNRTI_DIRECT_ALWAYS : NNRTI_DIRECT_OFF;
}

static void check_shape(int ta, int tb, int m, int n, int k, int pad, float alpha, float beta,
                        uint64_t *seed) {
    check_sgemm_shape(use_direct, ta, tb, m, n, k, pad, alpha, beta, seed);
}

static void test_shapes(void) {
    uint64_t seed = 2025;
    const int ms[] = {1, 2, 5, 6, 7, 13, 16, 17, 31, 48, 49, 64, 65, 70};
    const int ns[] = {1, 3, 15, 16, 17, 33, 47, 48, 49, 63, 64, 65, 70, 97};
    const int ks[] = {1, 2, 7, 16, 31, 64, 70};
    const float alphas[] = {1.0f, -0.5f}, betas[] = {0.0f, 1.0f, 0.25f};
    int combo = 0;
    for (size_t mi = 0; mi < sizeof ms / sizeof ms[0]; mi++)
        for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++)
            for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++)
                for (int t = 0; t < 3; t++) { /* (0, 0), (1, 0), (0, 1) */
                    combo++;
                    float alpha = alphas[combo % 2], beta = betas[combo % 3];
                    check_shape(t == 1, t == 2, ms[mi], ns[ni], ks[ki], combo % 3, alpha, beta,
                                &seed);
                }
    /* a few larger ones: several 64-row panels of the trans_b path, long k */
    const int big[][3] = {{130, 100, 300}, {129, 70, 17}, {200, 130, 65}, {70, 200, 1000}};
    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++)
        for (int t = 0; t < 3; t++) {
            combo++;
            check_shape(t == 1, t == 2, big[i][0], big[i][1], big[i][2], combo % 3,
                        alphas[combo % 2], betas[combo % 3], &seed);
        }
}

/* W1's GEMMs (batch 64), as its training step calls them */
static void test_w1(void) {
    uint64_t seed = 7;
    const int shapes[][5] = {
        {0, 1, 64, 512, 784}, {0, 1, 64, 256, 512}, {0, 0, 64, 512, 256},
        {1, 0, 256, 512, 64}, {1, 0, 512, 784, 64}, {0, 0, 64, 256, 10},
        {1, 0, 10, 256, 64},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        check_shape(shapes[i][0], shapes[i][1], shapes[i][2], shapes[i][3], shapes[i][4], 0,
                    1.0f, 0.0f, &seed);
        check_shape(shapes[i][0], shapes[i][1], shapes[i][2], shapes[i][3], shapes[i][4], 1,
                    0.5f, 0.9f, &seed);
    }
}

static int have_avx512(void) {
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") != 0;
#else
    return 0;
#endif
}

/* By default the kernel takes W1's large GEMMs (when the CPU has AVX-512F) and leaves to
 * OpenBLAS the ones where it measured slower or that it cannot compute. */
static void test_dispatch(void) {
    int avx512 = have_avx512();
    float *a = calloc(512 * 784, sizeof *a), *b = calloc(512 * 784, sizeof *b);
    float *c = calloc(512 * 784, sizeof *c);
    CHECK_EQ(nnrti_sgemm_direct(0, 1, 64, 512, 784, 1, a, 784, b, 784, 0, c, 512), avx512);
    CHECK_EQ(nnrti_sgemm_direct(0, 1, 64, 256, 512, 1, a, 512, b, 512, 0, c, 256), avx512);
    CHECK_EQ(nnrti_sgemm_direct(0, 0, 64, 512, 256, 1, a, 256, b, 512, 0, c, 512), avx512);
    CHECK_EQ(nnrti_sgemm_direct(1, 0, 256, 512, 64, 1, a, 256, b, 512, 0, c, 512), avx512);
    CHECK_EQ(nnrti_sgemm_direct(1, 0, 512, 784, 64, 1, a, 512, b, 784, 0, c, 784), avx512);
    CHECK_EQ(nnrti_sgemm_direct(1, 1, 64, 64, 64, 1, a, 64, b, 64, 0, c, 64), 0);
    nnrti_sgemm_direct_mode = NNRTI_DIRECT_OFF;
    CHECK_EQ(nnrti_sgemm_direct(0, 1, 64, 512, 784, 1, a, 784, b, 784, 0, c, 512), 0);
    nnrti_sgemm_direct_mode = NNRTI_DIRECT_ALWAYS;
    CHECK_EQ(nnrti_sgemm_direct(0, 0, 1, 1, 1, 1, a, 1, b, 1, 0, c, 1), avx512);
    CHECK_EQ(nnrti_sgemm_direct(0, 0, 4, 10, 0, 1, a, 1, b, 10, 0, c, 10), 0);
    CHECK_EQ(nnrti_sgemm_direct(1, 1, 4, 10, 3, 1, a, 4, b, 3, 0, c, 10), 0);
    CHECK_EQ(nnrti_sgemm_direct(0, 0, 64, 512, 256, 0, a, 256, b, 512, 1, c, 512), 0);
    nnrti_sgemm_direct_mode = NNRTI_DIRECT_AUTO;
    free(a);
    free(b);
    free(c);
}

int main(void) {
    test_dispatch();
    test_shapes();
    test_w1();
    return check_summary("test_sgemm_direct");
}
