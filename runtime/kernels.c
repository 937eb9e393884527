/* kernels.c — dense kernels called by generated code: sgemm (via cblas, the narrow kernels
 * of sgemm_narrow.c or the direct kernel of sgemm_direct.c), batched sgemm, and
 * im2col/col2im for convolutions. All row-major. */
#include "nnrt_internal.h"

#include <cblas.h>
#include <string.h>

void nnrt_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a,
                int lda, const float *b, int ldb, float beta, float *c, int ldc) {
    if (m <= 0 || n <= 0) return;
    if (nnrti_sgemm_narrow(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)) return;
    if (nnrti_sgemm_direct(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)) return;
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c,
                ldc);
}

void nnrt_sgemm_batched(int batch, int trans_a, int trans_b, int m, int n, int k,
                        float alpha, const float *a, int lda, int64_t stride_a,
                        const float *b, int ldb, int64_t stride_b, float beta, float *c,
                        int ldc, int64_t stride_c) {
    for (int i = 0; i < batch; i++)
        nnrt_sgemm(trans_a, trans_b, m, n, k, alpha, a + i * stride_a, lda, b + i * stride_b,
                   ldb, beta, c + i * stride_c, ldc);
}

int nnrt_conv_out_size(int in, int k, int pad, int stride, int dil) {
    if (in < 0 || k <= 0 || pad < 0 || stride <= 0 || dil <= 0) return 0;
    int64_t span = (int64_t)dil * (k - 1) + 1;
    int64_t room = (int64_t)in + 2 * (int64_t)pad - span;
    return room < 0 ? 0 : (int)(room / stride + 1);
}

/* The output positions o in [0, out) whose input position o*stride + off lies in [0, in):
 * returns them as [*lo, *hi). */
static void valid_range(int out, int in, int stride, int64_t off, int *lo, int *hi) {
    int64_t l = off >= 0 ? 0 : (-off + stride - 1) / stride;
    int64_t h = in - 1 - off < 0 ? 0 : (in - 1 - off) / stride + 1;
    if (h > out) h = out;
    if (l > h) l = h;
    *lo = (int)l;
    *hi = (int)h;
}

/* Shared loop of im2col (accumulate == 0: cols = gather(x)) and col2im (x += scatter(cols)):
 * for each (ci, i, j) row and each output pixel (oy, ox), the input pixel is
 * (oy*stride_h - pad_h + i*dil_h, ox*stride_w - pad_w + j*dil_w). */
static void im2col_loop(float *x, int c, int h, int w, int kh, int kw, int pad_h, int pad_w,
                        int stride_h, int stride_w, int dil_h, int dil_w, float *cols,
                        int to_image) {
    int oh = nnrt_conv_out_size(h, kh, pad_h, stride_h, dil_h);
    int ow = nnrt_conv_out_size(w, kw, pad_w, stride_w, dil_w);
    if (oh == 0 || ow == 0 || c <= 0) return;
    size_t plane = (size_t)oh * (size_t)ow;
    for (int ci = 0; ci < c; ci++)
        for (int i = 0; i < kh; i++)
            for (int j = 0; j < kw; j++) {
                float *row = cols + ((size_t)(ci * kh + i) * (size_t)kw + (size_t)j) * plane;
                int64_t off_x = (int64_t)j * dil_w - pad_w;
                int lo, hi;
                valid_range(ow, w, stride_w, off_x, &lo, &hi);
                for (int oy = 0; oy < oh; oy++) {
                    float *col = row + (size_t)oy * (size_t)ow;
                    int64_t iy = (int64_t)oy * stride_h - pad_h + (int64_t)i * dil_h;
                    if (iy < 0 || iy >= h) {
                        if (!to_image) memset(col, 0, (size_t)ow * sizeof *col);
                        continue;
                    }
                    float *img = x + ((size_t)ci * (size_t)h + (size_t)iy) * (size_t)w;
                    if (to_image) {
                        for (int ox = lo; ox < hi; ox++)
                            img[(int64_t)ox * stride_w + off_x] += col[ox];
                    } else {
                        for (int ox = 0; ox < lo; ox++) col[ox] = 0;
                        for (int ox = lo; ox < hi; ox++) col[ox] = img[(int64_t)ox * stride_w + off_x];
                        for (int ox = hi; ox < ow; ox++) col[ox] = 0;
                    }
                }
            }
}

void nnrt_im2col(const float *x, int c, int h, int w, int kh, int kw, int pad_h, int pad_w,
                 int stride_h, int stride_w, int dil_h, int dil_w, float *cols) {
    /* x is only read when to_image == 0. */
    im2col_loop((float *)x, c, h, w, kh, kw, pad_h, pad_w, stride_h, stride_w, dil_h, dil_w,
                cols, 0);
}

void nnrt_col2im(const float *cols, int c, int h, int w, int kh, int kw, int pad_h,
                 int pad_w, int stride_h, int stride_w, int dil_h, int dil_w, float *x) {
    /* cols is only read when to_image == 1. */
    im2col_loop(x, c, h, w, kh, kw, pad_h, pad_w, stride_h, stride_w, dil_h, dil_w,
                (float *)cols, 1);
}
