/* conv.c — direct convolution (conv2d forward, stride 1, dilation 1, one group) without an
 * im2col buffer, vectorized over output channels.
 *
 * Per call the weights [O][C][KH][KW] are transposed to wT[C*KH*KW][Op] (Op = O rounded up
 * to 16, zero columns beyond O); per image the input is copied into a zero-padded block
 * xp[C][Hp][Wp] (Hp = oh + kh - 1, Wp = ow + kw - 1: the padding is explicit, every window
 * fits). A register block of P output positions times NV vectors of 16 output channels
 * accumulates
 *     acc[j][v] += xp[c][oy_j + ky][ox_j + kx] * wT[(c*KH + ky)*KW + kx][16v .. 16v + 15]
 * with one broadcast of the input value per position and tap: the classic GEMM
 * micro-kernel, reading the im2col matrix implicitly. Taps that fall in the padding for
 * every position of the block are skipped (their products are zero): blocks take the
 * positions whose windows fit horizontally row by row (a block may span two rows), then
 * the edge columns one at a time, top to bottom, so the blocks of the first and last rows
 * skip the window rows in the padding, and those of an edge column its window columns.
 * The sums run over c, ky, kx in order, in float with fused multiply-adds, from the bias.
 * The block's results go to a [p][Op] buffer, transposed into y (16x16 in registers, as
 * for the weights).
 *
 * The AVX-512 kernel runs when the CPU has AVX512F (checked once); otherwise nnrt_conv2d
 * falls back to im2col + sgemm per image, in the same scratch. */
#include "nnrt_internal.h"

#include <string.h>

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#define NNRT_HAVE_AVX512_KERNEL 1
#include "avx512_transpose.h"
#else
#define NNRT_HAVE_AVX512_KERNEL 0
#endif

int nnrti_conv_force_generic;

static int64_t round_up(int64_t x, int64_t a) { return (x + a - 1) / a * a; }

static int64_t direct_floats(int c, int o, int kh, int kw, int oh, int ow) {
    int64_t k2 = (int64_t)c * kh * kw, hp = (int64_t)oh + kh - 1, wp = (int64_t)ow + kw - 1;
    int64_t by_channels = round_up(k2 * round_up(o, 16), 16) + round_up((int64_t)c * hp * wp, 16) +
                          (int64_t)oh * ow * round_up(o, 16) + (int64_t)oh * ow; /* + the position order */
    int64_t by_positions = (int64_t)c * hp * (round_up(ow, 32) + kw - 1);
    return by_channels > by_positions ? by_channels : by_positions;
}

int64_t nnrt_conv2d_scratch(int c, int o, int kh, int kw, int oh, int ow) {
    int64_t direct = direct_floats(c, o, kh, kw, oh, ow);
    int64_t cols = (int64_t)c * kh * kw * oh * ow;
    return (direct > cols ? direct : cols) * (int64_t)sizeof(float);
}

/* the generic path: im2col (explicit padding, stride 1) + sgemm per image, as the
 * generated code did before this kernel */
static void conv_im2col(int n, const float *x, int c, int h, int w, const float *wt,
                        const float *bias, int o, int kh, int kw, int pad_t, int pad_l,
                        float *y, int oh, int ow, float *cols) {
    int64_t k2 = (int64_t)c * kh * kw, p = (int64_t)oh * ow;
    for (int i = 0; i < n; i++) {
        const float *xi = x + (int64_t)i * c * h * w;
        float *yi = y + (int64_t)i * o * p;
        if (bias)
            for (int q = 0; q < o; q++)
                for (int64_t j = 0; j < p; j++) yi[q * p + j] = bias[q];
        for (int ci = 0; ci < c; ci++)
            for (int ky = 0; ky < kh; ky++)
                for (int kx = 0; kx < kw; kx++) {
                    float *row = cols + (((int64_t)ci * kh + ky) * kw + kx) * p;
                    for (int oy = 0; oy < oh; oy++) {
                        int iy = oy + ky - pad_t;
                        for (int ox = 0; ox < ow; ox++) {
                            int ix = ox + kx - pad_l;
                            row[oy * ow + ox] = iy >= 0 && iy < h && ix >= 0 && ix < w
                                                    ? xi[((int64_t)ci * h + iy) * w + ix] : 0.0f;
                        }
                    }
                }
        nnrt_sgemm(0, 0, o, (int)p, (int)k2, 1.0f, wt, (int)k2, cols, (int)p, bias ? 1.0f : 0.0f,
                   yi, (int)p);
    }
}

/* Zero-padded copy of one image: xp[ci][r][q] = x[ci][r - pad_t][q - pad_l] or 0. */
static void pad_image(const float *x, int c, int h, int w, int pad_t, int pad_l, int hp, int wp,
                      float *xp) {
    /* the input columns that land inside the block: ix in [x0, x1) at q = ix + pad_l */
    int x0 = pad_l < 0 ? -pad_l : 0, x1 = wp - pad_l < w ? wp - pad_l : w;
    if (x1 < x0) x1 = x0;
    for (int ci = 0; ci < c; ci++)
        for (int r = 0; r < hp; r++) {
            float *dst = xp + ((int64_t)ci * hp + r) * wp;
            int iy = r - pad_t;
            if (iy < 0 || iy >= h || x1 == x0) {
                memset(dst, 0, (size_t)wp * sizeof *dst);
                continue;
            }
            const float *src = x + ((int64_t)ci * h + iy) * w;
            int q0 = x0 + pad_l, q1 = x1 + pad_l; /* dst[q0, q1) = src[x0, x1) */
            memset(dst, 0, (size_t)q0 * sizeof *dst);
            memcpy(dst + q0, src + x0, (size_t)(q1 - q0) * sizeof *dst);
            memset(dst + q1, 0, (size_t)(wp - q1) * sizeof *dst);
        }
}

#if NNRT_HAVE_AVX512_KERNEL

typedef struct Block {
    const float *xp;      /* padded image */
    const float *wt;      /* transposed weights, at the block's first output channel */
    int64_t ldw;          /* Op */
    int64_t plane;        /* Hp * Wp */
    int c, kh, kw, wp;
    int ky0, ky1, kx0, kx1; /* taps not in the padding for some position */
    const int64_t *base;  /* P offsets oy*Wp + ox */
} Block;

/* acc[P][NV] over the taps of the block, from the bias (bias16: NV vectors); position j's
 * NV*16 channels go to out + base_out[j] */
#define CONV_KERNEL(NV, P)                                                                    \
    __attribute__((target("avx512f"))) static void conv_kernel_##NV##_##P(                    \
        const Block *b, const float *bias16, float *out, const int64_t *base_out) {           \
        __m512 acc[P][NV];                                                                    \
        _Pragma("GCC unroll 16") for (int j = 0; j < P; j++)                                  \
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)                              \
                acc[j][v] = bias16 ? _mm512_loadu_ps(bias16 + 16 * v) : _mm512_setzero_ps();  \
        int64_t base[P];                                                                      \
        _Pragma("GCC unroll 16") for (int j = 0; j < P; j++) base[j] = b->base[j];            \
        for (int ci = 0; ci < b->c; ci++)                                                     \
            for (int ky = b->ky0; ky < b->ky1; ky++) {                                        \
                const float *xr = b->xp + ci * b->plane + (int64_t)ky * b->wp;                \
                const float *wr = b->wt + ((int64_t)ci * b->kh + ky) * b->kw * b->ldw;        \
                for (int kx = b->kx0; kx < b->kx1; kx++) {                                    \
                    const float *wk = wr + kx * b->ldw;                                       \
                    __m512 wv[NV];                                                            \
                    _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)                      \
                        wv[v] = _mm512_loadu_ps(wk + 16 * v);                                 \
                    _Pragma("GCC unroll 16") for (int j = 0; j < P; j++) {                    \
                        __m512 xv = _mm512_set1_ps(xr[base[j] + kx]);                         \
                        _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)                  \
                            acc[j][v] = _mm512_fmadd_ps(xv, wv[v], acc[j][v]);                \
                    }                                                                         \
                }                                                                             \
            }                                                                                 \
        _Pragma("GCC unroll 16") for (int j = 0; j < P; j++)                                  \
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)                              \
                _mm512_storeu_ps(out + base_out[j] + 16 * v, acc[j][v]);                      \
    }

CONV_KERNEL(4, 6)
CONV_KERNEL(3, 8)
CONV_KERNEL(2, 12)
CONV_KERNEL(1, 12)

/* dst[j][i] = src[i][j] for i < rows, j < cols (row strides lds, ldd), by 16x16 blocks
 * transposed in registers */
__attribute__((target("avx512f"))) static void transpose(const float *src, int64_t lds, int64_t rows,
                                                         int64_t cols, float *dst, int64_t ldd) {
    int64_t i0 = 0;
    for (; i0 + 16 <= rows; i0 += 16) {
        int64_t j0 = 0;
        for (; j0 + 16 <= cols; j0 += 16) {
            __m512 r[16];
            _Pragma("GCC unroll 16") for (int k = 0; k < 16; k++) r[k] = _mm512_loadu_ps(src + (i0 + k) * lds + j0);
            nnrt_transpose16(r);
            _Pragma("GCC unroll 16") for (int k = 0; k < 16; k++) _mm512_storeu_ps(dst + (j0 + k) * ldd + i0, r[k]);
        }
        for (; j0 < cols; j0++)
            _Pragma("GCC unroll 16") for (int k = 0; k < 16; k++) dst[j0 * ldd + i0 + k] = src[(i0 + k) * lds + j0];
    }
    for (; i0 < rows; i0++)
        for (int64_t j = 0; j < cols; j++) dst[j * ldd + i0] = src[i0 * lds + j];
}

typedef void (*ConvKernel)(const Block *, const float *, float *, const int64_t *);

static int block_positions(int nv) { return nv == 4 ? 6 : nv == 3 ? 8 : 12; }

static void conv_direct(int n, const float *x, int c, int h, int w, const float *wt,
                        const float *bias, int o, int kh, int kw, int pad_t, int pad_l,
                        float *y, int oh, int ow, float *scratch) {
    int64_t k2 = (int64_t)c * kh * kw, op = round_up(o, 16);
    int hp = oh + kh - 1, wp = ow + kw - 1;
    int64_t p = (int64_t)oh * ow;
    float *wT = scratch, *xp = scratch + round_up(k2 * op, 16);
    float *yt = xp + round_up((int64_t)c * hp * wp, 16); /* one image's output, [p][op] */
    /* The order of the positions in blocks: first the columns whose windows lie inside the
       image horizontally, row by row, then each other column top to bottom, so that blocks
       of such a column skip its window columns in the padding (the window rows in the
       padding are skipped by blocks of the first rows and the last ones). */
    int32_t *order = (int32_t *)(yt + p * op);
    int64_t no = 0;
    int xin0 = pad_l, xin1 = w + pad_l - kw + 1; /* ox in [xin0, xin1): every kx inside */
    if (xin1 > ow) xin1 = ow;
    if (xin0 > xin1) xin0 = xin1;
    for (int oy = 0; oy < oh; oy++)
        for (int ox = xin0; ox < xin1; ox++) order[no++] = oy * ow + ox;
    for (int ox = 0; ox < ow; ox++)
        if (ox < xin0 || ox >= xin1)
            for (int oy = 0; oy < oh; oy++) order[no++] = oy * ow + ox;
    /* wT[k][q] = w[q][k], 0 for q >= o */
    for (int64_t k = 0; k < k2; k++) memset(wT + k * op + o, 0, (size_t)(op - o) * sizeof(float));
    transpose(wt, k2, o, k2, wT, op);
    float biasp[64 * 4] __attribute__((aligned(64)));
    for (int i = 0; i < n; i++) {
        pad_image(x + (int64_t)i * c * h * w, c, h, w, pad_t, pad_l, hp, wp, xp);
        float *yi = y + (int64_t)i * o * p;
        for (int64_t ob = 0; ob < op; ob += 64) {
            int nv = (int)((op - ob) / 16 < 4 ? (op - ob) / 16 : 4);
            int np = block_positions(nv);
            ConvKernel kern = nv == 4 ? conv_kernel_4_6 : nv == 3 ? conv_kernel_3_8
                            : nv == 2 ? conv_kernel_2_12 : conv_kernel_1_12;
            int oc = (int)(o - ob < 16 * nv ? o - ob : 16 * nv); /* real channels here */
            if (bias) {
                memset(biasp, 0, sizeof biasp);
                memcpy(biasp, bias + ob, (size_t)oc * sizeof(float));
            }
            Block b = {.xp = xp, .wt = wT + ob, .ldw = op, .plane = (int64_t)hp * wp, .c = c,
                       .kh = kh, .kw = kw, .wp = wp};
            int64_t base[12], base_out[12];
            for (int64_t p0 = 0; p0 < p; p0 += np) {
                int cnt = (int)(p - p0 < np ? p - p0 : np);
                int ymin = oh, ymax = 0, xmin = ow, xmax = 0;
                for (int j = 0; j < np; j++) {
                    int64_t q = order[p0 + (j < cnt ? j : cnt - 1)]; /* the last position again */
                    int oy = (int)(q / ow), ox = (int)(q % ow);
                    base[j] = (int64_t)oy * wp + ox;
                    base_out[j] = q * op + ob;
                    if (ox < xmin) xmin = ox;
                    if (ox > xmax) xmax = ox;
                    if (oy < ymin) ymin = oy;
                    if (oy > ymax) ymax = oy;
                }
                /* window row ky of output row oy reads input row oy + ky - pad_t */
                b.ky0 = pad_t - ymax > 0 ? pad_t - ymax : 0;
                b.ky1 = h + pad_t - ymin < kh ? h + pad_t - ymin : kh;
                b.kx0 = pad_l - xmax > 0 ? pad_l - xmax : 0;
                b.kx1 = w + pad_l - xmin < kw ? w + pad_l - xmin : kw;
                if (b.ky1 < b.ky0) b.ky1 = b.ky0;
                if (b.kx1 < b.kx0) b.kx1 = b.kx0;
                b.base = base;
                kern(&b, bias ? biasp : NULL, yt, base_out);
            }
        }
        /* [p][op] -> [o][p] */
        transpose(yt, op, p, o, yi, p);
    }
}

/* Few taps per position (c*kh*kw <= 32: a first layer): vectors over ox instead, so that
 * neither the weights nor the output need a transpose. One output row, XV vectors of 16
 * positions times 8 output channels:
 *     acc[j][v] += w[o0 + j][ci][ky][kx] * xp[ci][oy + ky][16v + kx .. 16v + kx + 15]
 * the weight broadcast, the input an unaligned load from the padded block (row pitch
 * wq = ow rounded up to 32, + kw - 1: lanes past ow read zeros or neighbours and are not
 * stored). Window rows in the padding are skipped (exactly, per row). Same summation
 * order as the channel-vector kernel: ci, ky, kx, from the bias, with FMAs. */
#define ROW_KERNEL(XV)                                                                         \
    __attribute__((target("avx512f"))) static void conv_row_##XV(                              \
        const float *xrow, int64_t plane, int wq, int c, int kh, int kw, int ky0, int ky1,    \
        const float *const *wrow, int64_t k2, const float *b8, float *const *yrow, int nx) {  \
        __m512 acc[8][XV];                                                                     \
        _Pragma("GCC unroll 8") for (int j = 0; j < 8; j++)                                    \
            _Pragma("GCC unroll 4") for (int v = 0; v < XV; v++)                               \
                acc[j][v] = _mm512_set1_ps(b8[j]);                                             \
        for (int ci = 0; ci < c; ci++)                                                         \
            for (int ky = ky0; ky < ky1; ky++) {                                               \
                const float *xr = xrow + ci * plane + (int64_t)ky * wq;                        \
                int64_t t0 = ((int64_t)ci * kh + ky) * kw;                                     \
                for (int kx = 0; kx < kw; kx++) {                                              \
                    __m512 xv[XV];                                                             \
                    _Pragma("GCC unroll 4") for (int v = 0; v < XV; v++)                       \
                        xv[v] = _mm512_loadu_ps(xr + 16 * v + kx);                             \
                    _Pragma("GCC unroll 8") for (int j = 0; j < 8; j++) {                      \
                        __m512 wv = _mm512_set1_ps(wrow[j][t0 + kx]);                          \
                        _Pragma("GCC unroll 4") for (int v = 0; v < XV; v++)                   \
                            acc[j][v] = _mm512_fmadd_ps(wv, xv[v], acc[j][v]);                 \
                    }                                                                          \
                }                                                                              \
            }                                                                                  \
        (void)k2;                                                                              \
        _Pragma("GCC unroll 8") for (int j = 0; j < 8; j++)                                    \
            _Pragma("GCC unroll 4") for (int v = 0; v < XV; v++) {                             \
                int left = nx - 16 * v;                                                        \
                if (left <= 0 || !yrow[j]) continue;                                           \
                __mmask16 m = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);  \
                _mm512_mask_storeu_ps(yrow[j] + 16 * v, m, acc[j][v]);                         \
            }                                                                                  \
    }

ROW_KERNEL(2)

static void conv_rows(int n, const float *x, int c, int h, int w, const float *wt,
                      const float *bias, int o, int kh, int kw, int pad_t, int pad_l, float *y,
                      int oh, int ow, float *scratch) {
    int64_t k2 = (int64_t)c * kh * kw;
    int hp = oh + kh - 1, wq = (int)round_up(ow, 32) + kw - 1; /* two vectors per block */
    int64_t plane = (int64_t)hp * wq;
    float *xp = scratch;
    for (int i = 0; i < n; i++) {
        pad_image(x + (int64_t)i * c * h * w, c, h, w, pad_t, pad_l, hp, wq, xp);
        float *yi = y + (int64_t)i * o * oh * ow;
        for (int oy = 0; oy < oh; oy++) {
            int ky0 = pad_t - oy > 0 ? pad_t - oy : 0, ky1 = h + pad_t - oy < kh ? h + pad_t - oy : kh;
            if (ky1 < ky0) ky1 = ky0;
            for (int o0 = 0; o0 < o; o0 += 8) {
                const float *wrow[8];
                float *yrow[8];
                float b8[8];
                for (int j = 0; j < 8; j++) {
                    int q = o0 + j < o ? o0 + j : o - 1; /* past o: the last channel again, not stored */
                    wrow[j] = wt + q * k2;
                    yrow[j] = o0 + j < o ? yi + ((int64_t)(o0 + j) * oh + oy) * ow : NULL;
                    b8[j] = bias ? bias[q] : 0.0f;
                }
                for (int x0 = 0; x0 < ow; x0 += 32) {
                    float *yr[8];
                    for (int j = 0; j < 8; j++) yr[j] = yrow[j] ? yrow[j] + x0 : NULL;
                    conv_row_2(xp + (int64_t)oy * wq + x0, plane, wq, c, kh, kw, ky0, ky1, wrow, k2, b8, yr,
                               ow - x0);
                }
            }
        }
    }
}

#endif

void nnrt_conv2d(int n, const float *x, int c, int h, int w, const float *wt, const float *bias,
                 int o, int kh, int kw, int pad_t, int pad_l, float *y, int oh, int ow,
                 float *scratch) {
    if (n <= 0 || o <= 0 || oh <= 0 || ow <= 0) return;
#if NNRT_HAVE_AVX512_KERNEL
    if (!nnrti_conv_force_generic && nnrti_have_avx512(0)) {
        if ((int64_t)c * kh * kw <= 32)
            conv_rows(n, x, c, h, w, wt, bias, o, kh, kw, pad_t, pad_l, y, oh, ow, scratch);
        else
            conv_direct(n, x, c, h, w, wt, bias, o, kh, kw, pad_t, pad_l, y, oh, ow, scratch);
        return;
    }
#endif
    conv_im2col(n, x, c, h, w, wt, bias, o, kh, kw, pad_t, pad_l, y, oh, ow, scratch);
}
