/* test_interp_conv.c — unit tests of the spatial ops of the reference interpreter (interp.c):
 * conv2d, maxpool2d, avgpool2d, upsample2d, lrn and the gradient kernels conv2d_grad_input,
 * conv2d_grad_weight, maxpool2d_grad.
 *
 * Small cases are computed by hand (and were cross-checked once with PyTorch 1.13's
 * F.conv2d, max_pool2d, avg_pool2d, interpolate and nn.LocalResponseNorm). A sweep over
 * attribute combinations compares each forward op with an independent reference written here
 * (explicitly padded input, so no bounds checks), in f64 and in f32 mode. The gradient kernels
 * are checked by adjointness, <conv2d(x, w), dy> = <x, conv2d_grad_input(dy, w)> =
 * <w, conv2d_grad_weight(x, dy)>, and against central finite differences of the forward op in
 * f64. */
#include "check.h"
#include "nnc.h"
#include "nnrt.h"

#include <stdlib.h>
#include <string.h>

static Arena arena;
static int tests_run;

#define DIMS(...)   ((int64_t[]){__VA_ARGS__})
#define VALS(...)   ((double[]){__VA_ARGS__})
#define COUNT_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))
/* SHAPE(batch_mask, dims...) */
#define SHAPE(mask, ...) shape_make(COUNT_OF(DIMS(__VA_ARGS__)), DIMS(__VA_ARGS__), (uint8_t)(mask))

static const SrcLoc NOLOC = {0};

/* ---------------------------------------------------------------- helpers */

static ITensor make(DType dt, int rank, const int64_t *dim, const double *values) {
    ITensor t;
    int rc = itensor_alloc(&t, dt, rank, dim);
    CHECK(rc == 0);
    if (values && !rc) memcpy(t.data, values, (size_t)t.numel * sizeof *t.data);
    return t;
}
#define TENSOR(dt, dims, vals) make(dt, COUNT_OF(dims), dims, vals)

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

/* uniform in [lo, hi), a fixed sequence */
static double uniform(double lo, double hi) {
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return lo + (hi - lo) * (double)(rng_state >> 11) * 0x1.0p-53;
}

/* A tensor of uniform values in [-1, 1); in f32 tests the values are floats already. */
static ITensor random_tensor(DType dt, int rank, const int64_t *dim) {
    ITensor t = make(dt, rank, dim, NULL);
    for (int64_t i = 0; i < t.numel; i++)
        t.data[i] = (double)(float)uniform(-1, 1);
    return t;
}

static Func *new_func(void) {
    return module_add_func(module_new(&arena, "test"), "f");
}

static Ref arg(Func *f, const char *name, DType dt, Shape s) {
    return ir_input(f, func_add_arg(f, name, ARG_INPUT, dt, s, NOLOC));
}

static void output(Func *f, Ref v) {
    func_add_out(f, "out", OUT_OUTPUT, v);
}

/* Runs f at batch n; fills outs[0..f->nouts). A failure is a failed check at the caller's line. */
static void run_line(Func *f, bool f64, int64_t n, const ITensor *args, ITensor *outs, int line) {
    Interp in;
    interp_init(&in, f->mod, f64);
    char err[512];
    int rc = interp_run(&in, f, n, args, outs, err, sizeof err);
    if (rc) {
        fprintf(stderr, "%s:%d: interp_run failed (%d): %s\n", __FILE__, line, rc, err);
        check_failures++;
    }
    interp_free(&in);
}
#define RUN(f, f64, n, args, outs) run_line(f, f64, n, args, outs, __LINE__)

static void free_all(ITensor *t, int count) {
    for (int i = 0; i < count; i++)
        itensor_free(&t[i]);
}

static void expect_values_line(const ITensor *t, const double *want, int64_t count, double tol,
                               int line) {
    if (t->numel != count) {
        fprintf(stderr, "%s:%d: %lld values, expected %lld\n", __FILE__, line, (long long)t->numel,
                (long long)count);
        check_failures++;
        return;
    }
    for (int64_t i = 0; i < count; i++) {
        double got = t->data[i];
        bool ok = isnan(want[i])
                      ? isnan(got)
                      : got == want[i] || fabs(got - want[i]) <= tol * (1 + fabs(want[i]));
        if (!ok) {
            fprintf(stderr, "%s:%d: [%lld] = %.12g, expected %.12g\n", __FILE__, line, (long long)i,
                    got, want[i]);
            check_failures++;
            return; /* one line per mismatching tensor is enough */
        }
    }
}
#define EXPECT_VALUES(t, tol, ...)                                                                 \
    expect_values_line(&(t), VALS(__VA_ARGS__), COUNT_OF(VALS(__VA_ARGS__)), tol, __LINE__)
#define EXPECT_ARRAY(t, tol, want, count) expect_values_line(&(t), want, count, tol, __LINE__)

static double dot(const ITensor *a, const ITensor *b) {
    double s = 0;
    for (int64_t i = 0; i < a->numel && i < b->numel; i++)
        s += a->data[i] * b->data[i];
    return s;
}

/* Runs f expecting failure with NNRT_EARG and a message containing `needle`. */
static void expect_error_line(Func *f, const ITensor *args, const char *needle, int line) {
    Interp in;
    interp_init(&in, f->mod, false);
    ITensor outs[4] = {{0}};
    char err[512] = "";
    int rc = interp_run(&in, f, 1, args, outs, err, sizeof err);
    if (rc != NNRT_EARG || !strstr(err, needle)) {
        fprintf(stderr, "%s:%d: expected an error containing '%s', got %d: '%s'\n", __FILE__, line,
                needle, rc, err);
        check_failures++;
    }
    free_all(outs, 4);
    interp_free(&in);
}
#define EXPECT_ERROR(f, args, needle) expect_error_line(f, args, needle, __LINE__)

/* ---------------------------------------------------------------- attributes */

/* A conv2d (or pool) geometry: input [n, c, h, w], o output channels, kernel, stride, dilation,
 * padding top, left, bottom, right, groups, bias. */
typedef struct Conv {
    int64_t n, c, h, w, o, kh, kw, sh, sw, dh, dw, pad[4], groups;
    bool bias;
} Conv;

static int64_t out_size(int64_t in, int64_t k, int64_t dil, int64_t stride, int64_t lo,
                        int64_t hi) {
    return (in + lo + hi - dil * (k - 1) - 1) / stride + 1;
}
static int64_t conv_ho(const Conv *s) {
    return out_size(s->h, s->kh, s->dh, s->sh, s->pad[0], s->pad[2]);
}
static int64_t conv_wo(const Conv *s) {
    return out_size(s->w, s->kw, s->dw, s->sw, s->pad[1], s->pad[3]);
}

/* conv2d's attrs: step = stride, start = padding, perm = dilation (H, W), groups */
static Attr conv_attr(const Conv *s) {
    Attr a = {0};
    a.step[0] = s->sh;
    a.step[1] = s->sw;
    for (int i = 0; i < 4; i++)
        a.start[i] = s->pad[i];
    a.perm[0] = (int)s->dh;
    a.perm[1] = (int)s->dw;
    a.perm[2] = (int)s->groups;
    return a;
}

/* a pool's attrs: perm = window, step = stride, start = padding */
static Attr pool_attr(const Conv *s) {
    Attr a = {0};
    a.perm[0] = (int)s->kh;
    a.perm[1] = (int)s->kw;
    a.step[0] = s->sh;
    a.step[1] = s->sw;
    for (int i = 0; i < 4; i++)
        a.start[i] = s->pad[i];
    return a;
}

/* x [batch, C, H, W] with the batch symbolic, so runs at n exercise the batch axis */
static Shape x_shape(const Conv *s) {
    return SHAPE(1, 1, s->c, s->h, s->w);
}
static Shape w_shape(const Conv *s) {
    return SHAPE(0, s->o, s->c / s->groups, s->kh, s->kw);
}
static Shape y_shape(const Conv *s, int64_t channels) {
    return SHAPE(1, 1, channels, conv_ho(s), conv_wo(s));
}

/* The input of s zero padded (or filled with `fill`) into [n, c, h + pt + pb, w + pl + pr]. */
static double *padded_copy(const Conv *s, const ITensor *x, double fill, int64_t *ph, int64_t *pw) {
    *ph = s->h + s->pad[0] + s->pad[2];
    *pw = s->w + s->pad[1] + s->pad[3];
    double *p = malloc((size_t)(s->n * s->c * *ph * *pw) * sizeof *p);
    for (int64_t i = 0; i < s->n * s->c * *ph * *pw; i++)
        p[i] = fill;
    for (int64_t nc = 0; nc < s->n * s->c; nc++)
        for (int64_t y = 0; y < s->h; y++)
            for (int64_t x0 = 0; x0 < s->w; x0++)
                p[(nc * *ph + y + s->pad[0]) * *pw + x0 + s->pad[1]] =
                    x->data[(nc * s->h + y) * s->w + x0];
    return p;
}

/* Reference conv2d: windows of the padded input, every tap in range. */
static double *reference_conv2d(const Conv *s, const ITensor *x, const ITensor *w,
                                const ITensor *b) {
    int64_t ph, pw, ho = conv_ho(s), wo = conv_wo(s), cg = s->c / s->groups, og = s->o / s->groups;
    double *p = padded_copy(s, x, 0, &ph, &pw);
    double *out = malloc((size_t)(s->n * s->o * ho * wo) * sizeof *out);
    for (int64_t n = 0; n < s->n; n++)
        for (int64_t o = 0; o < s->o; o++)
            for (int64_t y = 0; y < ho; y++)
                for (int64_t x0 = 0; x0 < wo; x0++) {
                    double acc = b ? b->data[o] : 0;
                    for (int64_t c = 0; c < cg; c++)
                        for (int64_t ky = 0; ky < s->kh; ky++)
                            for (int64_t kx = 0; kx < s->kw; kx++) {
                                int64_t channel = (o / og) * cg + c;
                                acc += p[((n * s->c + channel) * ph + y * s->sh + ky * s->dh) * pw +
                                         x0 * s->sw + kx * s->dw] *
                                       w->data[((o * cg + c) * s->kh + ky) * s->kw + kx];
                            }
                    out[((n * s->o + o) * ho + y) * wo + x0] = acc;
                }
    free(p);
    return out;
}

/* Reference pools over the padded input: max (padding -inf) or average (padding 0, / KH KW). */
static double *reference_pool(const Conv *s, const ITensor *x, bool max) {
    int64_t ph, pw, ho = conv_ho(s), wo = conv_wo(s);
    double *p = padded_copy(s, x, max ? -INFINITY : 0, &ph, &pw);
    double *out = malloc((size_t)(s->n * s->c * ho * wo) * sizeof *out);
    for (int64_t nc = 0; nc < s->n * s->c; nc++)
        for (int64_t y = 0; y < ho; y++)
            for (int64_t x0 = 0; x0 < wo; x0++) {
                double acc = max ? -INFINITY : 0;
                for (int64_t ky = 0; ky < s->kh; ky++)
                    for (int64_t kx = 0; kx < s->kw; kx++) {
                        double v = p[(nc * ph + y * s->sh + ky) * pw + x0 * s->sw + kx];
                        acc = max ? fmax(acc, v) : acc + v;
                    }
                out[(nc * ho + y) * wo + x0] = max ? acc : acc / (double)(s->kh * s->kw);
            }
    free(p);
    return out;
}

/* ---------------------------------------------------------------- conv2d by hand */

/* y = conv2d(x, w[, b]) with x [batch, C, H, W] and w, b arguments */
static Func *conv_func(const Conv *s, DType dt) {
    Func *f = new_func();
    Ref in[3] = {arg(f, "x", dt, x_shape(s)), arg(f, "w", dt, w_shape(s)), REF_NONE};
    if (s->bias) in[2] = arg(f, "b", dt, SHAPE(0, s->o));
    Attr a = conv_attr(s);
    output(f, ir_node(f, OP_conv2d, dt, y_shape(s, s->o), s->bias ? 3 : 2, in, &a));
    return f;
}

/* Runs conv_func(s) in f64 on x, w (and b) and checks the result against `want`. */
static void check_conv_line(const Conv *s, const double *x, const double *w, const double *b,
                            const double *want, int line) {
    Func *f = conv_func(s, DT_F64);
    ITensor args[3] = {make(DT_F64, 4, DIMS(s->n, s->c, s->h, s->w), x),
                       make(DT_F64, 4, DIMS(s->o, s->c / s->groups, s->kh, s->kw), w),
                       make(DT_F64, 1, DIMS(s->o), b)};
    ITensor out = {0};
    run_line(f, true, s->n, args, &out, line);
    expect_values_line(&out, want, s->n * s->o * conv_ho(s) * conv_wo(s), 1e-15, line);
    itensor_free(&out);
    free_all(args, 3);
}
#define CHECK_CONV(s, x, w, b, ...) check_conv_line(s, x, w, b, VALS(__VA_ARGS__), __LINE__)

static void test_conv2d_by_hand(void) {
    /* x = 1..9 as 3x3, w = [[1, 2], [3, 4]] */
    const double *x = VALS(1, 2, 3, 4, 5, 6, 7, 8, 9), *w = VALS(1, 2, 3, 4);
    Conv s = {.n = 1,
              .c = 1,
              .h = 3,
              .w = 3,
              .o = 1,
              .kh = 2,
              .kw = 2,
              .sh = 1,
              .sw = 1,
              .dh = 1,
              .dw = 1,
              .groups = 1};
    CHECK_CONV(&s, x, w, NULL, 37, 47, 67, 77);
    s.bias = true;
    CHECK_CONV(&s, x, w, VALS(0.5), 37.5, 47.5, 67.5, 77.5);
    s.bias = false;
    /* stride 2, padding 1: the corner window holds only x[0,0] (under w[1,1] = 4) */
    Conv strided = s;
    strided.sh = strided.sw = 2;
    for (int i = 0; i < 4; i++)
        strided.pad[i] = 1;
    CHECK_CONV(&strided, x, w, NULL, 4, 18, 36, 77);
    /* asymmetric padding: left 1, bottom 1 (top and right 0) */
    Conv asym = s;
    asym.pad[1] = asym.pad[2] = 1;
    CHECK_CONV(&asym, x, w, NULL, 18, 37, 47, 36, 67, 77, 14, 23, 26);
    /* dilation 2: the taps are the corners of x */
    Conv dilated = s;
    dilated.dh = dilated.dw = 2;
    CHECK_CONV(&dilated, x, w, NULL, 64);
    /* dilation (2, 1), stride (1, 2): rows 0 and 2, columns x and x + 1 */
    Conv mixed = s;
    mixed.dh = 2;
    mixed.sw = 2;
    CHECK_CONV(&mixed, x, w, NULL, 1 + 4 + 21 + 32);
    /* a batch of two: the second sample is -x */
    Conv two = s;
    two.n = 2;
    CHECK_CONV(&two, VALS(1, 2, 3, 4, 5, 6, 7, 8, 9, -1, -2, -3, -4, -5, -6, -7, -8, -9), w, NULL,
               37, 47, 67, 77, -37, -47, -67, -77);

    /* two channels [1..4] and [5..8] as 2x2, 1x1 kernels */
    const double *x2 = VALS(1, 2, 3, 4, 5, 6, 7, 8);
    Conv one = {.n = 1,
                .c = 2,
                .h = 2,
                .w = 2,
                .o = 1,
                .kh = 1,
                .kw = 1,
                .sh = 1,
                .sw = 1,
                .dh = 1,
                .dw = 1,
                .groups = 1};
    CHECK_CONV(&one, x2, VALS(1, 10), NULL, 51, 62, 73, 84); /* sums over channels */
    Conv grouped = one;
    grouped.o = grouped.groups = 2; /* each output its own channel */
    CHECK_CONV(&grouped, x2, VALS(2, 3), NULL, 2, 4, 6, 8, 15, 18, 21, 24);
    grouped.o = 4; /* outputs 0, 1 read channel 0 */
    grouped.bias = true;
    CHECK_CONV(&grouped, x2, VALS(1, 2, 3, 4), VALS(0, 0, 0, 1), 1, 2, 3, 4, 2, 4, 6, 8, 15, 18, 21,
               24, 21, 25, 29, 33);
}

/* ---------------------------------------------------------------- conv2d sweep */

/* clang-format off */
static const Conv conv_cases[] = {
    /* n  c  h  w  o kh kw sh sw dh dw  pad (t l b r)  groups bias */
    {2, 3, 7, 8, 4, 3, 3, 1, 1, 1, 1, {1, 1, 1, 1}, 1, true},
    {2, 4, 7, 8, 6, 3, 2, 2, 1, 1, 2, {0, 1, 2, 0}, 2, false},
    {2, 4, 7, 8, 4, 3, 3, 2, 2, 2, 1, {2, 0, 1, 2}, 4, true}, /* depthwise */
    {2, 2, 7, 8, 3, 1, 1, 3, 2, 1, 1, {0, 0, 0, 0}, 1, true},
    {2, 6, 7, 8, 4, 2, 3, 1, 3, 3, 1, {3, 1, 0, 2}, 2, false},
    {1, 1, 5, 1, 2, 5, 1, 1, 1, 1, 1, {2, 0, 2, 0}, 1, true},   /* a column, "same" padding */
    {3, 2, 1, 9, 2, 1, 4, 1, 1, 1, 1, {0, 1, 0, 2}, 1, false},  /* conv1d: H = 1, pad "same" */
};
/* clang-format on */

/* Forward against reference_conv2d, in f64 (to rounding) and in f32 mode (every value a float,
 * within float rounding of the f64 reference). */
static void test_conv2d_reference(void) {
    for (int k = 0; k < COUNT_OF(conv_cases); k++) {
        const Conv *s = &conv_cases[k];
        for (int mode = 0; mode < 2; mode++) {
            DType dt = mode ? DT_F32 : DT_F64;
            Func *f = conv_func(s, dt);
            ITensor args[3] = {random_tensor(dt, 4, DIMS(s->n, s->c, s->h, s->w)),
                               random_tensor(dt, 4, DIMS(s->o, s->c / s->groups, s->kh, s->kw)),
                               random_tensor(dt, 1, DIMS(s->o))};
            ITensor out = {0};
            RUN(f, !mode, s->n, args, &out);
            double *want = reference_conv2d(s, &args[0], &args[1], s->bias ? &args[2] : NULL);
            EXPECT_ARRAY(out, mode ? 1e-6 : 1e-13, want, s->n * s->o * conv_ho(s) * conv_wo(s));
            if (mode)
                for (int64_t i = 0; i < out.numel; i++)
                    CHECK(out.data[i] == (double)(float)out.data[i]);
            free(want);
            itensor_free(&out);
            free_all(args, 3);
        }
    }
}

/* loss = sum(conv2d(x, w) * dy), dx = conv2d_grad_input(dy, w), dw = conv2d_grad_weight(x, dy):
 * outputs loss, dx, dw. */
static Func *conv_grad_func(const Conv *s) {
    Func *f = new_func();
    Ref x = arg(f, "x", DT_F64, x_shape(s)), w = arg(f, "w", DT_F64, w_shape(s));
    Ref dy = arg(f, "dy", DT_F64, y_shape(s, s->o));
    Attr a = conv_attr(s);
    Ref y = ir_node(f, OP_conv2d, DT_F64, y_shape(s, s->o), 2, (Ref[]){x, w}, &a);
    output(f, ir_reduce(f, OP_sum, ir_binary(f, OP_mul, y, dy), 0xF, false));
    output(f, ir_node(f, OP_conv2d_grad_input, DT_F64, x_shape(s), 2, (Ref[]){dy, w}, &a));
    output(f, ir_node(f, OP_conv2d_grad_weight, DT_F64, w_shape(s), 2, (Ref[]){x, dy}, &a));
    return f;
}

/* (loss(t[i] + h) - loss(t[i] - h)) / 2h, with t one of the args */
static double central_difference(Func *f, int64_t n, ITensor *args, ITensor *t, int64_t i) {
    const double h = 1e-6;
    double saved = t->data[i], loss[2];
    for (int side = 0; side < 2; side++) {
        ITensor outs[4] = {{0}};
        t->data[i] = saved + (side ? -h : h);
        RUN(f, true, n, args, outs);
        loss[side] = outs[0].numel ? outs[0].data[0] : NAN;
        free_all(outs, f->nouts);
    }
    t->data[i] = saved;
    return (loss[0] - loss[1]) / (2 * h);
}

static void test_conv2d_grad_kernels(void) {
    for (int k = 0; k < COUNT_OF(conv_cases); k++) {
        const Conv *s = &conv_cases[k];
        Func *f = conv_grad_func(s);
        ITensor args[3] = {random_tensor(DT_F64, 4, DIMS(s->n, s->c, s->h, s->w)),
                           random_tensor(DT_F64, 4, DIMS(s->o, s->c / s->groups, s->kh, s->kw)),
                           random_tensor(DT_F64, 4, DIMS(s->n, s->o, conv_ho(s), conv_wo(s)))};
        ITensor outs[3] = {{0}};
        RUN(f, true, s->n, args, outs);
        /* adjointness: the loss is bilinear in x and w */
        CHECK_NEAR(dot(&args[0], &outs[1]), outs[0].data[0], 1e-12);
        CHECK_NEAR(dot(&args[1], &outs[2]), outs[0].data[0], 1e-12);
        /* finite differences at a few elements of x and of w */
        for (int e = 0; e < 6; e++) {
            int64_t i = (int64_t)(uniform(0, 1) * (double)args[0].numel);
            CHECK_NEAR(outs[1].data[i], central_difference(f, s->n, args, &args[0], i), 1e-7);
            int64_t j = (int64_t)(uniform(0, 1) * (double)args[1].numel);
            CHECK_NEAR(outs[2].data[j], central_difference(f, s->n, args, &args[1], j), 1e-7);
        }
        free_all(outs, 3);
        free_all(args, 3);
    }
}

/* conv2d_grad_input and conv2d_grad_weight by hand: x = 1..9 as 3x3, w = [[1, 2], [3, 4]],
 * stride 2, padding 1 (so each input element is under exactly one tap), dy = [1, 10, 100, 1000]. */
static void test_conv2d_grads_by_hand(void) {
    Conv s = {.n = 1,
              .c = 1,
              .h = 3,
              .w = 3,
              .o = 1,
              .kh = 2,
              .kw = 2,
              .sh = 2,
              .sw = 2,
              .dh = 1,
              .dw = 1,
              .pad = {1, 1, 1, 1},
              .groups = 1};
    Func *f = conv_grad_func(&s);
    ITensor args[3] = {TENSOR(DT_F64, DIMS(1, 1, 3, 3), VALS(1, 2, 3, 4, 5, 6, 7, 8, 9)),
                       TENSOR(DT_F64, DIMS(1, 1, 2, 2), VALS(1, 2, 3, 4)),
                       TENSOR(DT_F64, DIMS(1, 1, 2, 2), VALS(1, 10, 100, 1000))};
    ITensor outs[3] = {{0}};
    RUN(f, true, 1, args, outs);
    EXPECT_VALUES(outs[0], 0, 4 + 180 + 3600 + 77000);
    /* output (0, 0) reads x[0,0] by w[1,1]; (0, 1) x[0,1..2] by w[1,0..1]; (1, 0) x[1..2,0] by
     * w[0..1,1]; (1, 1) x[1..2,1..2] by all of w */
    EXPECT_VALUES(outs[1], 0, 4, 30, 40, 200, 1000, 2000, 400, 3000, 4000);
    /* dw[ky,kx] = sum over outputs of dy times the element under tap (ky, kx) */
    EXPECT_VALUES(outs[2], 0, 5000, 6000 + 400, 8000 + 20, 9000 + 700 + 30 + 1);
    free_all(outs, 3);
    free_all(args, 3);
}

/* ---------------------------------------------------------------- pools */

static Func *pool_func(Op op, const Conv *s, DType dt) {
    Func *f = new_func();
    Ref x = arg(f, "x", dt, x_shape(s));
    Attr a = pool_attr(s);
    output(f, ir_node(f, op, dt, y_shape(s, s->c), 1, &x, &a));
    return f;
}

/* Runs pool op on x ([1, C, H, W] per s, f64) and checks the result. */
static void check_pool_line(Op op, const Conv *s, const double *x, const double *want, int line) {
    Func *f = pool_func(op, s, DT_F64);
    ITensor arg0 = make(DT_F64, 4, DIMS(s->n, s->c, s->h, s->w), x), out = {0};
    run_line(f, true, s->n, &arg0, &out, line);
    expect_values_line(&out, want, s->n * s->c * conv_ho(s) * conv_wo(s), 1e-15, line);
    itensor_free(&out);
    itensor_free(&arg0);
}
#define CHECK_POOL(op, s, x, ...) check_pool_line(op, s, x, VALS(__VA_ARGS__), __LINE__)

/* Runs maxpool2d_grad (x, dy) with the pool of s (f64) and checks dx exactly. */
static void check_maxpool_grad_line(const Conv *s, const double *x, const double *dy,
                                    const double *want, int line) {
    Func *f = new_func();
    Ref xr = arg(f, "x", DT_F64, x_shape(s)), dyr = arg(f, "dy", DT_F64, y_shape(s, s->c));
    Attr a = pool_attr(s);
    output(f, ir_node(f, OP_maxpool2d_grad, DT_F64, x_shape(s), 2, (Ref[]){xr, dyr}, &a));
    ITensor args[2] = {make(DT_F64, 4, DIMS(s->n, s->c, s->h, s->w), x),
                       make(DT_F64, 4, DIMS(s->n, s->c, conv_ho(s), conv_wo(s)), dy)};
    ITensor out = {0};
    run_line(f, true, s->n, args, &out, line);
    expect_values_line(&out, want, s->n * s->c * s->h * s->w, 0, line);
    itensor_free(&out);
    free_all(args, 2);
}

static void test_maxpool_by_hand(void) {
    /* clang-format off */
    const double *x = VALS(1, 5, 2, 0,
                           3, 4, 8, 8,
                           -1, -2, 0, 7,
                           6, -3, 7, 1);
    /* clang-format on */
    Conv s = {.n = 1, .c = 1, .h = 4, .w = 4, .dh = 1, .dw = 1, .kh = 2, .kw = 2, .sh = 2, .sw = 2};
    CHECK_POOL(OP_maxpool2d, &s, x, 5, 8, 6, 7);
    /* ties go to the first maximum in row-major order: the 8 at (1, 2), the 7 at (2, 3) */
    check_maxpool_grad_line(&s, x, VALS(1, 2, 3, 4),
                            VALS(0, 1, 0, 0, 0, 0, 2, 0, 0, 0, 0, 4, 3, 0, 0, 0), __LINE__);

    /* padding never wins, even over negative values */
    Conv padded = {.n = 1,
                   .c = 1,
                   .h = 2,
                   .w = 2,
                   .dh = 1,
                   .dw = 1,
                   .kh = 2,
                   .kw = 2,
                   .sh = 1,
                   .sw = 1,
                   .pad = {1, 1, 1, 1}};
    const double *negative = VALS(-1, -2, -3, -4);
    CHECK_POOL(OP_maxpool2d, &padded, negative, -1, -1, -2, -1, -1, -2, -3, -3, -4);
    check_maxpool_grad_line(&padded, negative, VALS(1, 2, 3, 4, 5, 6, 7, 8, 9),
                            VALS(1 + 2 + 4 + 5, 3 + 6, 7 + 8, 9), __LINE__);

    /* overlapping windows both take the 3: its gradient is the sum */
    Conv overlap = {
        .n = 1, .c = 1, .h = 2, .w = 3, .dh = 1, .dw = 1, .kh = 2, .kw = 2, .sh = 1, .sw = 1};
    const double *x3 = VALS(1, 3, 2, 0, 1, 0);
    CHECK_POOL(OP_maxpool2d, &overlap, x3, 3, 3);
    check_maxpool_grad_line(&overlap, x3, VALS(1, 10), VALS(0, 11, 0, 0, 0, 0), __LINE__);

    /* a NaN is the maximum of its window (the first NaN), as PyTorch propagates it */
    Conv row = {
        .n = 1, .c = 1, .h = 1, .w = 4, .dh = 1, .dw = 1, .kh = 1, .kw = 4, .sh = 1, .sw = 1};
    const double *nans = VALS(1, NAN, 5, NAN);
    CHECK_POOL(OP_maxpool2d, &row, nans, NAN);
    check_maxpool_grad_line(&row, nans, VALS(2), VALS(0, 2, 0, 0), __LINE__);

    /* windows of -inf: the first element of the window is taken */
    const double *infs = VALS(-INFINITY, -INFINITY, -INFINITY, -INFINITY);
    CHECK_POOL(OP_maxpool2d, &row, infs, -INFINITY);
    check_maxpool_grad_line(&row, infs, VALS(2), VALS(2, 0, 0, 0), __LINE__);
}

static void test_avgpool_by_hand(void) {
    Conv s = {.n = 1, .c = 1, .h = 4, .w = 4, .dh = 1, .dw = 1, .kh = 2, .kw = 2, .sh = 2, .sw = 2};
    CHECK_POOL(OP_avgpool2d, &s, VALS(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16), 3.5,
               5.5, 11.5, 13.5);
    /* padding counts in the divisor (count_include_pad=True): always 9 */
    Conv padded = {.n = 1,
                   .c = 1,
                   .h = 3,
                   .w = 3,
                   .dh = 1,
                   .dw = 1,
                   .kh = 3,
                   .kw = 3,
                   .sh = 2,
                   .sw = 2,
                   .pad = {1, 1, 1, 1}};
    CHECK_POOL(OP_avgpool2d, &padded, VALS(1, 2, 3, 4, 5, 6, 7, 8, 9), 12 / 9.0, 16 / 9.0, 24 / 9.0,
               28 / 9.0);
    /* a 1x3 window with stride 1 over two channels, batch 2 */
    Conv rows = {
        .n = 2, .c = 2, .h = 1, .w = 4, .dh = 1, .dw = 1, .kh = 1, .kw = 3, .sh = 1, .sw = 1};
    CHECK_POOL(OP_avgpool2d, &rows, VALS(3, 6, 9, 0, 1, 1, 1, 4, 0, 0, 3, 3, -3, 0, 0, 3), 6, 5, 1,
               2, 1, 2, -1, 1);
}

/* clang-format off */
static const Conv pool_cases[] = {
    /* n  c  h  w  o kh kw sh sw dh dw  pad (t l b r) */
    {2, 3, 6, 7, 0, 2, 2, 2, 2, 1, 1, {0, 0, 0, 0}, 1, false},
    {2, 3, 6, 7, 0, 3, 3, 2, 2, 1, 1, {1, 1, 1, 1}, 1, false},
    {2, 2, 6, 7, 0, 3, 2, 1, 1, 1, 1, {0, 1, 0, 1}, 1, false},
    {1, 2, 5, 8, 0, 2, 3, 1, 3, 1, 1, {1, 1, 1, 1}, 1, false},
    {3, 2, 1, 9, 0, 1, 3, 1, 2, 1, 1, {0, 1, 0, 1}, 1, false}, /* 1-D */
};
/* clang-format on */

/* Both pools against reference_pool (f64 and f32 mode); maxpool2d_grad against finite
 * differences of maxpool2d (random values have no ties); avgpool2d's adjoint is
 * conv2d_grad_input with the depthwise weights 1/(KH KW), which grad.c builds. */
static void test_pool_reference(void) {
    for (int k = 0; k < COUNT_OF(pool_cases); k++) {
        const Conv *s = &pool_cases[k];
        for (int o = 0; o < 2; o++)
            for (int mode = 0; mode < 2; mode++) {
                DType dt = mode ? DT_F32 : DT_F64;
                Func *f = pool_func(o ? OP_avgpool2d : OP_maxpool2d, s, dt);
                ITensor x = random_tensor(dt, 4, DIMS(s->n, s->c, s->h, s->w)), out = {0};
                RUN(f, !mode, s->n, &x, &out);
                double *want = reference_pool(s, &x, !o);
                EXPECT_ARRAY(out, mode ? 1e-7 : 1e-15, want, s->n * s->c * conv_ho(s) * conv_wo(s));
                free(want);
                itensor_free(&out);
                itensor_free(&x);
            }

        /* maxpool2d_grad against finite differences, avgpool2d against its adjoint */
        Func *f = new_func();
        Ref x = arg(f, "x", DT_F64, x_shape(s)), dy = arg(f, "dy", DT_F64, y_shape(s, s->c));
        Attr pa = pool_attr(s);
        Conv depthwise = *s;
        depthwise.o = depthwise.groups = s->c;
        depthwise.dh = depthwise.dw = 1;
        Attr ca = conv_attr(&depthwise);
        Ref mp = ir_node(f, OP_maxpool2d, DT_F64, y_shape(s, s->c), 1, &x, &pa);
        Ref ap = ir_node(f, OP_avgpool2d, DT_F64, y_shape(s, s->c), 1, &x, &pa);
        Ref average = ir_const(f, DT_F64, w_shape(&depthwise), 1.0 / (double)(s->kh * s->kw));
        output(f, ir_reduce(f, OP_sum, ir_binary(f, OP_mul, mp, dy), 0xF, false));
        output(f, ir_node(f, OP_maxpool2d_grad, DT_F64, x_shape(s), 2, (Ref[]){x, dy}, &pa));
        output(f, ir_reduce(f, OP_sum, ir_binary(f, OP_mul, ap, dy), 0xF, false));
        output(f,
               ir_node(f, OP_conv2d_grad_input, DT_F64, x_shape(s), 2, (Ref[]){dy, average}, &ca));
        ITensor args[2] = {random_tensor(DT_F64, 4, DIMS(s->n, s->c, s->h, s->w)),
                           random_tensor(DT_F64, 4, DIMS(s->n, s->c, conv_ho(s), conv_wo(s)))};
        ITensor outs[4] = {{0}};
        RUN(f, true, s->n, args, outs);
        for (int64_t i = 0; i < args[0].numel; i++)
            CHECK_NEAR(outs[1].data[i], central_difference(f, s->n, args, &args[0], i), 1e-7);
        CHECK_NEAR(dot(&args[0], &outs[1]), outs[0].data[0], 1e-12); /* max is locally linear */
        CHECK_NEAR(dot(&args[0], &outs[3]), outs[2].data[0], 1e-12);
        free_all(outs, 4);
        free_all(args, 2);
    }
}

/* ---------------------------------------------------------------- upsample2d */

static Func *upsample_func(int64_t c, int64_t h, int64_t w, int64_t sh, int64_t sw, int bilinear) {
    Func *f = new_func();
    Ref x = arg(f, "x", DT_F64, SHAPE(1, 1, c, h, w));
    Attr a = {.flag = bilinear};
    a.perm[0] = (int)sh;
    a.perm[1] = (int)sw;
    output(f, ir_node(f, OP_upsample2d, DT_F64, SHAPE(1, 1, c, h * sh, w * sw), 1, &x, &a));
    return f;
}

static void check_upsample_line(int64_t h, int64_t w, int64_t sh, int64_t sw, int bilinear,
                                const double *x, const double *want, int line) {
    Func *f = upsample_func(1, h, w, sh, sw, bilinear);
    ITensor arg0 = make(DT_F64, 4, DIMS(1, 1, h, w), x), out = {0};
    run_line(f, true, 1, &arg0, &out, line);
    expect_values_line(&out, want, h * sh * w * sw, 1e-15, line);
    itensor_free(&out);
    itensor_free(&arg0);
}
#define CHECK_UPSAMPLE(h, w, sh, sw, bilinear, x, ...)                                             \
    check_upsample_line(h, w, sh, sw, bilinear, x, VALS(__VA_ARGS__), __LINE__)

/* The [in*scale, in] matrix of bilinear interpolation along one axis, from its definition: output
 * o sits at source coordinate (o + 1/2)/scale - 1/2, clamped to [0, in - 1], between two
 * neighbouring inputs. */
static double *bilinear_weights(int64_t in, int64_t scale) {
    double *m = calloc((size_t)(in * scale * in), sizeof *m);
    for (int64_t o = 0; o < in * scale; o++) {
        double src = fmin(fmax(((double)o + 0.5) / (double)scale - 0.5, 0), (double)(in - 1));
        int64_t lo = (int64_t)floor(src);
        m[o * in + lo] += 1 - (src - (double)lo);
        if (src > (double)lo) m[o * in + lo + 1] += src - (double)lo;
    }
    return m;
}

static void test_upsample(void) {
    const double *x = VALS(1, 2, 3, 4);
    CHECK_UPSAMPLE(2, 2, 2, 3, 0, x, 1, 1, 1, 2, 2, 2, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 3, 3, 3,
                   4, 4, 4);
    CHECK_UPSAMPLE(2, 2, 2, 2, 1, x, 1, 1.25, 1.75, 2, 1.5, 1.75, 2.25, 2.5, 2.5, 2.75, 3.25, 3.5,
                   3, 3.25, 3.75, 4);
    /* scale 3 along W: sources 0, 0, 1/3, 2/3, 1, 1 (clamped at both ends) */
    CHECK_UPSAMPLE(1, 2, 1, 3, 1, VALS(0, 3), 0, 0, 1, 2, 3, 3);
    CHECK_UPSAMPLE(1, 1, 2, 2, 1, VALS(7), 7, 7, 7, 7);
    CHECK_UPSAMPLE(1, 1, 1, 1, 0, VALS(7), 7);

    /* bilinear = A_h x A_w^T per plane, A from bilinear_weights; batch 2, 2 channels */
    static const int64_t sizes[][4] = {{3, 4, 2, 2}, {3, 4, 3, 2}, {5, 2, 1, 4}};
    for (int k = 0; k < COUNT_OF(sizes); k++) {
        int64_t h = sizes[k][0], w = sizes[k][1], sh = sizes[k][2], sw = sizes[k][3];
        int64_t ho = h * sh, wo = w * sw;
        Func *f = upsample_func(2, h, w, sh, sw, 1);
        ITensor in = random_tensor(DT_F64, 4, DIMS(2, 2, h, w)), out = {0};
        RUN(f, true, 2, &in, &out);
        double *ah = bilinear_weights(h, sh), *aw = bilinear_weights(w, sw);
        double *want = calloc((size_t)(4 * ho * wo), sizeof *want);
        for (int64_t p = 0; p < 4; p++)
            for (int64_t oy = 0; oy < ho; oy++)
                for (int64_t ox = 0; ox < wo; ox++)
                    for (int64_t i = 0; i < h; i++)
                        for (int64_t j = 0; j < w; j++)
                            want[(p * ho + oy) * wo + ox] +=
                                ah[oy * h + i] * in.data[(p * h + i) * w + j] * aw[ox * w + j];
        EXPECT_ARRAY(out, 1e-14, want, 4 * ho * wo);
        free(ah);
        free(aw);
        free(want);
        itensor_free(&out);
        itensor_free(&in);
    }
}

/* ---------------------------------------------------------------- lrn */

static Func *lrn_func(Shape s, int size, double alpha, double beta, double k) {
    Func *f = new_func();
    Ref x = arg(f, "x", DT_F64, s);
    Attr a = {.f = {alpha, beta, k}};
    a.perm[0] = size;
    output(f, ir_node(f, OP_lrn, DT_F64, s, 1, &x, &a));
    return f;
}

static void test_lrn(void) {
    /* channels 1, 2, 3; alpha = size so alpha/n = 1, beta = 1, k = 1: x / (1 + window sum) */
    ITensor x = TENSOR(DT_F64, DIMS(1, 3, 1, 1), VALS(1, 2, 3)), out = {0};
    Func *f = lrn_func(SHAPE(1, 1, 3, 1, 1), 3, 3, 1, 1);
    RUN(f, true, 1, &x, &out); /* windows {0, 1}, {0, 1, 2}, {1, 2} */
    EXPECT_VALUES(out, 1e-15, 1 / 6.0, 2 / 15.0, 3 / 14.0);
    itensor_free(&out);
    f = lrn_func(SHAPE(1, 1, 3, 1, 1), 2, 2, 1, 1);
    RUN(f, true, 1, &x, &out); /* even size: windows {c - 1, c} */
    EXPECT_VALUES(out, 1e-15, 1 / 2.0, 2 / 6.0, 3 / 14.0);
    itensor_free(&out);
    itensor_free(&x);

    /* [batch, C, L] and [batch, C] against the formula, size 4, beta 0.75, k 2 */
    for (int rank = 2; rank <= 3; rank++) {
        const int64_t channels = 5, len = rank == 3 ? 3 : 1, size = 4;
        const double alpha = 0.3, beta = 0.75, k = 2;
        f = lrn_func(rank == 3 ? SHAPE(1, 1, channels, len) : SHAPE(1, 1, channels), (int)size,
                     alpha, beta, k);
        x = random_tensor(DT_F64, rank, DIMS(2, channels, len));
        RUN(f, true, 2, &x, &out);
        double want[2 * 5 * 3];
        for (int64_t n = 0; n < 2; n++)
            for (int64_t c = 0; c < channels; c++)
                for (int64_t e = 0; e < len; e++) {
                    double sum = 0;
                    for (int64_t j = c - 2; j <= c + 1; j++) /* c - n/2 .. c + (n-1)/2 */
                        if (j >= 0 && j < channels)
                            sum += pow(x.data[(n * channels + j) * len + e], 2);
                    double v = x.data[(n * channels + c) * len + e];
                    want[(n * channels + c) * len + e] =
                        v / pow(k + alpha / (double)size * sum, beta);
                }
        EXPECT_ARRAY(out, 1e-14, want, 2 * channels * len);
        itensor_free(&out);
        itensor_free(&x);
    }
}

/* ---------------------------------------------------------------- f32 rounding */

/* In f32 mode each op rounds its result once: a sum of floats that is not a float comes out
 * rounded, a sum that is one comes out exact. */
static void test_f32_rounding(void) {
    Conv s = {.n = 1,
              .c = 1,
              .h = 1,
              .w = 3,
              .o = 1,
              .kh = 1,
              .kw = 3,
              .sh = 1,
              .sw = 1,
              .dh = 1,
              .dw = 1,
              .groups = 1};
    Func *f = conv_func(&s, DT_F32);
    const double third = (double)(float)(1.0 / 3), tiny = (double)(float)1e-8;
    ITensor args[2] = {TENSOR(DT_F32, DIMS(1, 1, 1, 3), VALS(third, third, third)),
                       TENSOR(DT_F32, DIMS(1, 1, 1, 3), VALS(1, 1, tiny))};
    ITensor out = {0};
    RUN(f, false, 1, args, &out); /* 2/3 + 3e-9 rounds to the float 2/3 */
    EXPECT_VALUES(out, 0, third + third);
    CHECK(third + third + tiny * third != third + third);
    itensor_free(&out);
    RUN(f, true, 1, args, &out); /* f64 mode: no rounding */
    EXPECT_VALUES(out, 0, third + third + tiny * third);
    itensor_free(&out);
    free_all(args, 2);
}

/* ---------------------------------------------------------------- errors */

static void test_errors(void) {
    Func *f;
    Attr a;
    Conv s = {.n = 1,
              .c = 4,
              .h = 5,
              .w = 5,
              .o = 4,
              .kh = 3,
              .kw = 3,
              .sh = 1,
              .sw = 1,
              .dh = 1,
              .dw = 1,
              .groups = 2};
    ITensor x = TENSOR(DT_F32, DIMS(1, 4, 5, 5), NULL), w = TENSOR(DT_F32, DIMS(4, 2, 3, 3), NULL);
    ITensor xw[2] = {x, w};

    f = new_func();
    a = conv_attr(&s);
    a.perm[2] = 3; /* groups not dividing 4 */
    output(f, ir_node(f, OP_conv2d, DT_F32, SHAPE(1, 1, 4, 3, 3), 2,
                      (Ref[]){arg(f, "x", DT_F32, x_shape(&s)), arg(f, "w", DT_F32, w_shape(&s))},
                      &a));
    EXPECT_ERROR(f, xw, "groups 3 must divide");

    f = new_func();
    a = conv_attr(&s);
    output(f, ir_node(f, OP_conv2d, DT_F32, SHAPE(1, 1, 4, 4, 3), 2, /* Ho should be 3 */
                      (Ref[]){arg(f, "x", DT_F32, x_shape(&s)), arg(f, "w", DT_F32, w_shape(&s))},
                      &a));
    EXPECT_ERROR(f, xw, "expected [1, 4, 3, 3]");

    f = new_func();
    a = conv_attr(&s);
    a.perm[2] = 1; /* the weight has 2 input channels, groups 1 needs 4 */
    output(f, ir_node(f, OP_conv2d, DT_F32, SHAPE(1, 1, 4, 3, 3), 2,
                      (Ref[]){arg(f, "x", DT_F32, x_shape(&s)), arg(f, "w", DT_F32, w_shape(&s))},
                      &a));
    EXPECT_ERROR(f, xw, "weight dims [4, 2, 3, 3], expected [4, 4, KH, KW]");

    f = new_func();
    a = conv_attr(&s);
    a.step[1] = 0;
    output(f, ir_node(f, OP_conv2d, DT_F32, SHAPE(1, 1, 4, 3, 3), 2,
                      (Ref[]){arg(f, "x", DT_F32, x_shape(&s)), arg(f, "w", DT_F32, w_shape(&s))},
                      &a));
    EXPECT_ERROR(f, xw, "stride 1 x 0 out of range");

    f = new_func();
    a = conv_attr(&s);
    a.perm[0] = 3; /* span 7 > 5 */
    output(f, ir_node(f, OP_conv2d, DT_F32, SHAPE(1, 1, 4, 1, 3), 2,
                      (Ref[]){arg(f, "x", DT_F32, x_shape(&s)), arg(f, "w", DT_F32, w_shape(&s))},
                      &a));
    EXPECT_ERROR(f, xw, "the 3 x 3 window (dilation 3 x 1) does not fit the padded 5 x 5 input");

    f = new_func();
    a = conv_attr(&s);
    a.start[3] = -1;
    output(f, ir_node(f, OP_conv2d, DT_F32, SHAPE(1, 1, 4, 3, 3), 2,
                      (Ref[]){arg(f, "x", DT_F32, x_shape(&s)), arg(f, "w", DT_F32, w_shape(&s))},
                      &a));
    EXPECT_ERROR(f, xw, "padding -1 out of range");

    f = new_func();
    a = conv_attr(&s);
    Ref bias = ir_const(f, DT_F32, SHAPE(0, 3), 0);
    output(f, ir_node(
                  f, OP_conv2d, DT_F32, SHAPE(1, 1, 4, 3, 3), 3,
                  (Ref[]){arg(f, "x", DT_F32, x_shape(&s)), arg(f, "w", DT_F32, w_shape(&s)), bias},
                  &a));
    EXPECT_ERROR(f, xw, "the bias must be a vector of 4");

    f = new_func(); /* the gradient kernels check the same geometry */
    a = conv_attr(&s);
    Ref dy = ir_const(f, DT_F32, SHAPE(0, 1, 4, 2, 3), 0);
    output(f, ir_node(f, OP_conv2d_grad_input, DT_F32, SHAPE(0, 1, 4, 5, 5), 2,
                      (Ref[]){dy, ir_const(f, DT_F32, w_shape(&s), 0)}, &a));
    EXPECT_ERROR(f, NULL, "do not follow from input dims [1, 4, 5, 5]");

    f = new_func();
    a = conv_attr(&s);
    output(f, ir_node(f, OP_conv2d_grad_weight, DT_F32, SHAPE(0, 4, 3, 3, 3), 2,
                      (Ref[]){ir_const(f, DT_F32, SHAPE(0, 1, 4, 5, 5), 0),
                              ir_const(f, DT_F32, SHAPE(0, 1, 4, 3, 3), 0)},
                      &a));
    EXPECT_ERROR(f, NULL, "weight dims [4, 3, 3, 3], expected [4, 2, KH, KW]");

    f = new_func();
    a = conv_attr(&s);
    output(f, ir_node(f, OP_conv2d, DT_I32, SHAPE(0, 1, 4, 3, 3), 2,
                      (Ref[]){ir_const(f, DT_I32, SHAPE(0, 1, 4, 5, 5), 0),
                              ir_const(f, DT_I32, w_shape(&s), 0)},
                      &a));
    EXPECT_ERROR(f, NULL, "needs a float type, not i32");

    f = new_func();
    a = conv_attr(&s);
    output(f, ir_node(f, OP_conv2d, DT_F32, SHAPE(0, 1, 4, 3), 2,
                      (Ref[]){ir_const(f, DT_F32, SHAPE(0, 1, 4, 5), 0),
                              ir_const(f, DT_F32, w_shape(&s), 0)},
                      &a));
    EXPECT_ERROR(f, NULL, "needs NCHW tensors");

    Conv pool = {
        .n = 1, .c = 4, .h = 5, .w = 5, .dh = 1, .dw = 1, .kh = 2, .kw = 2, .sh = 2, .sw = 2};
    f = new_func();
    a = pool_attr(&pool);
    output(f, ir_node(f, OP_maxpool2d, DT_F32, SHAPE(0, 1, 3, 2, 2), 1,
                      (Ref[]){ir_const(f, DT_F32, SHAPE(0, 1, 4, 5, 5), 0)}, &a));
    EXPECT_ERROR(f, NULL, "3 output channels, the input has 4");

    f = new_func();
    a = pool_attr(&pool);
    a.perm[1] = 0;
    output(f, ir_node(f, OP_avgpool2d, DT_F32, SHAPE(0, 1, 4, 2, 2), 1,
                      (Ref[]){ir_const(f, DT_F32, SHAPE(0, 1, 4, 5, 5), 0)}, &a));
    EXPECT_ERROR(f, NULL, "kernel 2 x 0 out of range");

    f = new_func();
    a = pool_attr(&pool);
    output(f, ir_node(f, OP_maxpool2d_grad, DT_F32, SHAPE(0, 1, 4, 5, 4), 2,
                      (Ref[]){ir_const(f, DT_F32, SHAPE(0, 1, 4, 5, 5), 0),
                              ir_const(f, DT_F32, SHAPE(0, 1, 4, 2, 2), 0)},
                      &a));
    EXPECT_ERROR(f, NULL, "input 0 has dims [1, 4, 5, 5], expected [1, 4, 5, 4]");

    f = new_func();
    a = (Attr){.flag = 1};
    a.perm[0] = a.perm[1] = 2;
    output(f, ir_node(f, OP_upsample2d, DT_F32, SHAPE(0, 1, 4, 10, 9), 1,
                      (Ref[]){ir_const(f, DT_F32, SHAPE(0, 1, 4, 5, 5), 0)}, &a));
    EXPECT_ERROR(f, NULL, "are not input dims [1, 4, 5, 5] scaled by 2 x 2");

    f = new_func();
    a = (Attr){.flag = 2};
    a.perm[0] = a.perm[1] = 2;
    output(f, ir_node(f, OP_upsample2d, DT_F32, SHAPE(0, 1, 4, 10, 10), 1,
                      (Ref[]){ir_const(f, DT_F32, SHAPE(0, 1, 4, 5, 5), 0)}, &a));
    EXPECT_ERROR(f, NULL, "mode 2");

    f = new_func();
    a = (Attr){.f = {1e-4, 0.75, 1}};
    output(f, ir_node(f, OP_lrn, DT_F32, SHAPE(0, 1, 4, 5), 1,
                      (Ref[]){ir_const(f, DT_F32, SHAPE(0, 1, 4, 5), 0)}, &a));
    EXPECT_ERROR(f, NULL, "size 0 out of range");

    free_all(xw, 2);
}

int main(void) {
#define TEST(name) (tests_run++, name())
    TEST(test_conv2d_by_hand);
    TEST(test_conv2d_reference);
    TEST(test_conv2d_grads_by_hand);
    TEST(test_conv2d_grad_kernels);
    TEST(test_maxpool_by_hand);
    TEST(test_avgpool_by_hand);
    TEST(test_pool_reference);
    TEST(test_upsample);
    TEST(test_lrn);
    TEST(test_f32_rounding);
    TEST(test_errors);
    arena_free(&arena);
    fprintf(stderr, "test_interp_conv: %d tests\n", tests_run);
    return check_done();
}
