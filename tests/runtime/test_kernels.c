/* test_kernels.c — sgemm against a naive loop (all transposes, leading dimensions,
 * alpha/beta, k = 0), batched sgemm with broadcast, im2col values and im2col/col2im
 * adjointness, nnrt_conv2d (the direct AVX-512 kernel and the generic path) against a
 * double-precision loop. */
#include "check.h"
#include "nnrt_internal.h"

static void fill_random(float *x, size_t n, uint64_t *s) {
    for (size_t i = 0; i < n; i++) x[i] = (float)((int)(test_rand(s) % 2001) - 1000) / 500.0f;
}

/* C = alpha op(A) op(B) + beta C in double, row-major with leading dimensions. */
static void naive_gemm(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                       const float *b, int ldb, float beta, double *c, int ldc) {
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int p = 0; p < k; p++) {
                double x = ta ? a[p * lda + i] : a[i * lda + p];
                double y = tb ? b[j * ldb + p] : b[p * ldb + j];
                s += x * y;
            }
            c[i * ldc + j] = alpha * s + beta * c[i * ldc + j];
        }
}

static void test_sgemm(void) {
    uint64_t seed = 12345;
    const int dims[][3] = {{1, 1, 1}, {7, 5, 3}, {64, 33, 97}, {3, 128, 2}, {64, 512, 784}};
    for (size_t d = 0; d < sizeof dims / sizeof dims[0]; d++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                int m = dims[d][0], n = dims[d][1], k = dims[d][2];
                int pad = (int)(d % 3); /* leading dimensions larger than the matrix */
                int lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad;
                int arows = ta ? k : m, brows = tb ? n : k;
                float *a = malloc((size_t)arows * lda * sizeof *a);
                float *b = malloc((size_t)brows * ldb * sizeof *b);
                float *c = malloc((size_t)m * ldc * sizeof *c);
                double *ref = malloc((size_t)m * ldc * sizeof *ref);
                fill_random(a, (size_t)arows * lda, &seed);
                fill_random(b, (size_t)brows * ldb, &seed);
                fill_random(c, (size_t)m * ldc, &seed);
                for (int i = 0; i < m * ldc; i++) ref[i] = c[i];
                float alpha = 0.75f, beta = d % 2 ? 0.0f : -0.5f;
                nnrt_sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
                naive_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, ref, ldc);
                double worst = 0;
                for (int i = 0; i < m; i++)
                    for (int j = 0; j < n; j++) {
                        double e = fabs(c[i * ldc + j] - ref[i * ldc + j]);
                        if (e > worst) worst = e;
                    }
                /* |terms| <= 4, k terms: float accumulation error well below 1e-5 * 4k */
                CHECK(worst <= 1e-5 * 4 * k + 1e-6);
                if (worst > 1e-5 * 4 * k + 1e-6)
                    fprintf(stderr, "    m=%d n=%d k=%d ta=%d tb=%d: error %g\n", m, n, k, ta, tb,
                            worst);
                /* padding columns of C are untouched */
                int untouched = 1;
                for (int i = 0; i < m; i++)
                    for (int j = n; j < ldc; j++) untouched &= c[i * ldc + j] == (float)ref[i * ldc + j];
                CHECK(untouched);
                free(a);
                free(b);
                free(c);
                free(ref);
            }

    /* k == 0: C = beta * C; m == 0 or n == 0: nothing happens. */
    float c[6] = {1, 2, 3, 4, 5, 6}, dummy = 0;
    nnrt_sgemm(0, 0, 2, 3, 0, 1.0f, &dummy, 1, &dummy, 3, 2.0f, c, 3);
    CHECK(c[0] == 2 && c[5] == 12);
    nnrt_sgemm(0, 0, 2, 3, 0, 1.0f, &dummy, 1, &dummy, 3, 0.0f, c, 3);
    CHECK(c[0] == 0 && c[5] == 0);
    nnrt_sgemm(0, 0, 0, 3, 4, 1.0f, NULL, 4, NULL, 3, 0.0f, NULL, 3);
}

static void test_sgemm_batched(void) {
    enum { B = 5, M = 4, N = 6, K = 3 };
    uint64_t seed = 99;
    float a[B * M * K], w[K * N], c[B * M * N];
    double ref[M * N];
    fill_random(a, B * M * K, &seed);
    fill_random(w, K * N, &seed);
    /* [B, M, K] @ [K, N] with the weight broadcast (stride 0) */
    nnrt_sgemm_batched(B, 0, 0, M, N, K, 1.0f, a, K, M * K, w, N, 0, 0.0f, c, N, M * N);
    double worst = 0;
    for (int i = 0; i < B; i++) {
        for (int j = 0; j < M * N; j++) ref[j] = 0;
        naive_gemm(0, 0, M, N, K, 1.0f, a + i * M * K, K, w, N, 0.0f, ref, N);
        for (int j = 0; j < M * N; j++)
            if (fabs(c[i * M * N + j] - ref[j]) > worst) worst = fabs(c[i * M * N + j] - ref[j]);
    }
    CHECK(worst < 1e-5);
    /* Q @ K^T per batch element: trans_b, distinct strides */
    float q[B * M * K], kk[B * N * K], s[B * M * N];
    fill_random(q, B * M * K, &seed);
    fill_random(kk, B * N * K, &seed);
    nnrt_sgemm_batched(B, 0, 1, M, N, K, 0.5f, q, K, M * K, kk, K, N * K, 0.0f, s, N, M * N);
    worst = 0;
    for (int i = 0; i < B; i++) {
        for (int j = 0; j < M * N; j++) ref[j] = 0;
        naive_gemm(0, 1, M, N, K, 0.5f, q + i * M * K, K, kk + i * N * K, K, 0.0f, ref, N);
        for (int j = 0; j < M * N; j++)
            if (fabs(s[i * M * N + j] - ref[j]) > worst) worst = fabs(s[i * M * N + j] - ref[j]);
    }
    CHECK(worst < 1e-5);
}

static void test_conv_out_size(void) {
    CHECK_EQ(nnrt_conv_out_size(28, 5, 2, 1, 1), 28);
    CHECK_EQ(nnrt_conv_out_size(28, 3, 0, 2, 1), 13);
    CHECK_EQ(nnrt_conv_out_size(7, 3, 0, 1, 3), 1); /* span 7 */
    CHECK_EQ(nnrt_conv_out_size(6, 3, 0, 1, 3), 0);
    CHECK_EQ(nnrt_conv_out_size(5, 5, 0, 1, 1), 1);
    CHECK_EQ(nnrt_conv_out_size(4, 5, 0, 1, 1), 0);
    CHECK_EQ(nnrt_conv_out_size(10, 3, 1, 0, 1), 0); /* invalid stride */
}

/* A 1-channel 3x3 image, 2x2 kernel, pad 1, stride 2: output 2x2. */
static void test_im2col_values(void) {
    const float x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    float cols[4 * 4];
    nnrt_im2col(x, 1, 3, 3, 2, 2, 1, 1, 2, 2, 1, 1, cols);
    /* Output pixel (oy, ox) reads x[2oy - 1 + i][2ox - 1 + j]. */
    const float expect[16] = {
        0, 0, 0, 5, /* i=0 j=0 */
        0, 0, 4, 6, /* i=0 j=1 */
        0, 2, 0, 8, /* i=1 j=0 */
        1, 3, 7, 9, /* i=1 j=1 */
    };
    CHECK(!memcmp(cols, expect, sizeof expect));
    /* dilation 2, no padding, 2x2 kernel on 3x3: one output pixel, the corners */
    float corners[4];
    nnrt_im2col(x, 1, 3, 3, 2, 2, 0, 0, 1, 1, 2, 2, corners);
    CHECK(corners[0] == 1 && corners[1] == 3 && corners[2] == 7 && corners[3] == 9);
}

/* <im2col(x), y> == <x, col2im(y)> for many shapes: col2im is the exact adjoint. */
static void test_adjoint(void) {
    const int cfg[][11] = {
        /* c, h, w, kh, kw, pad_h, pad_w, stride_h, stride_w, dil_h, dil_w */
        {1, 5, 5, 3, 3, 1, 1, 1, 1, 1, 1}, {3, 8, 6, 3, 2, 0, 1, 2, 1, 1, 1},
        {2, 7, 9, 5, 5, 2, 2, 1, 1, 1, 1}, {4, 10, 10, 3, 3, 2, 2, 2, 3, 2, 2},
        {1, 4, 4, 4, 4, 3, 3, 3, 3, 1, 1}, {2, 6, 5, 1, 1, 0, 0, 2, 2, 1, 1},
        {1, 28, 28, 5, 5, 2, 2, 1, 1, 1, 1}, {3, 9, 7, 2, 3, 4, 0, 1, 2, 3, 1},
    };
    uint64_t seed = 7;
    for (size_t t = 0; t < sizeof cfg / sizeof cfg[0]; t++) {
        const int *g = cfg[t];
        int oh = nnrt_conv_out_size(g[1], g[3], g[5], g[7], g[9]);
        int ow = nnrt_conv_out_size(g[2], g[4], g[6], g[8], g[10]);
        size_t nx = (size_t)g[0] * g[1] * g[2], ny = (size_t)g[0] * g[3] * g[4] * oh * ow;
        float *x = malloc(nx * sizeof *x), *y = malloc(ny * sizeof *y);
        float *cols = malloc(ny * sizeof *cols), *back = malloc(nx * sizeof *back);
        fill_random(x, nx, &seed);
        fill_random(y, ny, &seed);
        nnrt_im2col(x, g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8], g[9], g[10], cols);
        for (size_t i = 0; i < nx; i++) back[i] = 0;
        nnrt_col2im(y, g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8], g[9], g[10], back);
        double lhs = 0, rhs = 0, scale = 0;
        for (size_t i = 0; i < ny; i++) lhs += (double)cols[i] * y[i], scale += fabs(cols[i] * y[i]);
        for (size_t i = 0; i < nx; i++) rhs += (double)x[i] * back[i];
        CHECK(fabs(lhs - rhs) <= 1e-6 * (scale + 1));
        /* col2im accumulates: a second call doubles the result */
        float *twice = malloc(nx * sizeof *twice);
        memcpy(twice, back, nx * sizeof *twice);
        nnrt_col2im(y, g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8], g[9], g[10], twice);
        int doubled = 1;
        for (size_t i = 0; i < nx; i++) doubled &= fabsf(twice[i] - 2 * back[i]) <= 1e-5f * (1 + fabsf(back[i]));
        CHECK(doubled);
        free(twice);
        free(x);
        free(y);
        free(cols);
        free(back);
    }
}

/* nnrt_conv2d against the definition in double precision, on geometries that exercise
 * both AVX-512 kernels (vectors over channels: every register block, 16, 32, 48, 64
 * channels per block, several blocks, ragged channel counts, position blocks spanning
 * output rows; vectors over positions where c*kh*kw <= 32: rows narrower than a vector,
 * channel counts not a multiple of 8), padding on all sides (asymmetric, wider
 * than the window, none), with and without bias, one image and several; once through the
 * AVX-512 kernel (where the CPU has it) and once through the generic path. The scratch is
 * filled with garbage first: the kernel must not depend on its contents. */
static void test_conv2d(void) {
    static const struct {
        int n, c, h, w, o, kh, kw, pt, pl, pb, pr, bias;
    } g[] = {
        {1, 1, 28, 28, 32, 5, 5, 2, 2, 2, 2, 1},  /* fashion_cnn's first convolution */
        {2, 32, 14, 14, 64, 5, 5, 2, 2, 2, 2, 1}, /* its second */
        {3, 3, 9, 8, 64, 5, 5, 2, 2, 2, 2, 0},
        {2, 4, 6, 7, 40, 3, 3, 1, 0, 2, 1, 1},    /* asymmetric padding, 40 = 48 - 8 lanes */
        {1, 2, 5, 4, 16, 3, 3, 4, 3, 2, 5, 1},    /* padding wider than the window */
        {2, 2, 7, 5, 80, 3, 3, 1, 1, 1, 1, 1},    /* two channel blocks: 64 + 16 */
        {1, 5, 6, 6, 17, 2, 3, 0, 0, 0, 0, 0},    /* no padding, 17 channels */
        {1, 3, 1, 9, 24, 1, 3, 0, 1, 0, 1, 1},    /* one row */
        {2, 1, 9, 40, 20, 3, 3, 1, 1, 1, 1, 1},   /* rows over two position blocks: 40 = 32 + 8 */
    };
    uint64_t seed = 777;
    for (size_t t = 0; t < sizeof g / sizeof g[0]; t++) {
        int n = g[t].n, c = g[t].c, h = g[t].h, w = g[t].w, o = g[t].o, kh = g[t].kh, kw = g[t].kw;
        int oh = h + g[t].pt + g[t].pb - kh + 1, ow = w + g[t].pl + g[t].pr - kw + 1;
        size_t xn = (size_t)n * c * h * w, wn = (size_t)o * c * kh * kw, yn = (size_t)n * o * oh * ow;
        float *x = malloc(xn * sizeof *x), *wt = malloc(wn * sizeof *wt), *b = malloc((size_t)o * sizeof *b);
        float *y = malloc(yn * sizeof *y);
        double *ref = malloc(yn * sizeof *ref);
        fill_random(x, xn, &seed);
        fill_random(wt, wn, &seed);
        fill_random(b, (size_t)o, &seed);
        const float *bias = g[t].bias ? b : NULL;
        for (int i = 0; i < n; i++)
            for (int q = 0; q < o; q++)
                for (int oy = 0; oy < oh; oy++)
                    for (int ox = 0; ox < ow; ox++) {
                        double s = bias ? bias[q] : 0;
                        for (int ci = 0; ci < c; ci++)
                            for (int ky = 0; ky < kh; ky++)
                                for (int kx = 0; kx < kw; kx++) {
                                    int iy = oy + ky - g[t].pt, ix = ox + kx - g[t].pl;
                                    if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                                    s += (double)x[((size_t)(i * c + ci) * h + iy) * w + ix] *
                                         wt[((size_t)(q * c + ci) * kh + ky) * kw + kx];
                                }
                        ref[((size_t)(i * o + q) * oh + oy) * ow + ox] = s;
                    }
        int64_t bytes = nnrt_conv2d_scratch(c, o, kh, kw, oh, ow);
        CHECK(bytes >= (int64_t)c * kh * kw * oh * ow * 4);
        float *scratch = aligned_alloc(64, (size_t)(bytes + 63) / 64 * 64);
        for (int generic = 0; generic < 2; generic++) {
            for (int64_t i = 0; i < bytes / 4; i++) scratch[i] = (float)(i % 7) - 1e30f;
            for (size_t i = 0; i < yn; i++) y[i] = NAN;
            nnrti_conv_force_generic = generic;
            nnrt_conv2d(n, x, c, h, w, wt, bias, o, kh, kw, g[t].pt, g[t].pl, y, oh, ow, scratch);
            double worst = 0;
            for (size_t i = 0; i < yn; i++) {
                double e = fabs(y[i] - ref[i]);
                if (!(e <= worst)) worst = e; /* NaN counts */
            }
            /* |terms| <= 4, c*kh*kw + 1 of them */
            double tol = 1e-5 * 4 * (c * kh * kw + 1) + 1e-6;
            CHECK(worst <= tol);
            if (!(worst <= tol))
                fprintf(stderr, "    conv2d case %zu (%s): error %g\n", t, generic ? "generic" : "direct", worst);
        }
        nnrti_conv_force_generic = 0;
        free(scratch);
        free(x), free(wt), free(b), free(y), free(ref);
    }
}

int main(void) {
    test_sgemm();
    test_sgemm_batched();
    test_conv_out_size();
    test_im2col_values();
    test_adjoint();
    test_conv2d();
    return check_summary("test_kernels");
}
