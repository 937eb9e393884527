/* test_interp.c — unit tests of the reference interpreter (compiler/interp.c).
 *
 * Each test builds a small IR function by hand with the builders of ir.c, runs it, and checks
 * the values against a hand computation or an independent formula; gradient kernels
 * (act_grad, softmax_grad, cross_entropy_grad) are checked against central finite differences
 * of their forward op, evaluated by the interpreter in f64. */
#include "check.h"
#include "nnc.h"
#include "nnrt.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static Arena arena;
static int tests_run;

/* Unit tests link every compiler object but main.o, yet cmd_run.c calls the driver pipeline that
 * main.c defines. These weak stand-ins satisfy the linker and give way to a real definition
 * if the pipeline moves out of main.c; no test calls them. */
__attribute__((weak)) int driver_load(const char *path, const DriverOptions *opts,
                                      DriverResult *out) {
    (void)path, (void)opts, (void)out;
    return 1;
}
__attribute__((weak)) void driver_free(DriverResult *r) { (void)r; }
__attribute__((weak)) Module *driver_pick_model(DriverResult *r, const char *name) {
    (void)r, (void)name;
    return NULL;
}

#define DIMS(...) ((int64_t[]){__VA_ARGS__})
#define VALS(...) ((double[]){__VA_ARGS__})
#define COUNT_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))
/* SHAPE(batch_mask, dims...) */
#define SHAPE(mask, ...) shape_make(COUNT_OF(DIMS(__VA_ARGS__)), DIMS(__VA_ARGS__), (uint8_t)(mask))

static const SrcLoc NOLOC = {0};

static InitSpec init_spec(InitKind kind, double a, double b, int64_t fan_in) {
    return (InitSpec){.kind = kind, .a = a, .b = b, .fan_in = fan_in};
}

/* ---------------------------------------------------------------- helpers */

static ITensor make(DType dt, int rank, const int64_t *dim, const double *values) {
    ITensor t;
    int rc = itensor_alloc(&t, dt, rank, dim);
    CHECK(rc == 0);
    if (values && !rc) memcpy(t.data, values, (size_t)t.numel * sizeof *t.data);
    return t;
}
#define TENSOR(dt, dims, vals) make(dt, COUNT_OF(dims), dims, vals)

typedef struct Ctx {
    Module *m;
    Func *f;
} Ctx;

static Ctx context(void) {
    Module *m = module_new(&arena, "test");
    return (Ctx){m, module_add_func(m, "f")};
}

static Ref arg(Func *f, const char *name, DType dt, Shape s) {
    return ir_input(f, func_add_arg(f, name, ARG_INPUT, dt, s, NOLOC));
}

static void output(Func *f, Ref v) { func_add_out(f, "out", OUT_OUTPUT, v); }

static Ref node(Func *f, Op op, DType dt, Shape s, int nin, const Ref *in, const Attr *a) {
    return ir_node(f, op, dt, s, nin, in, a);
}

/* Runs f at batch n and returns output `which` (the others are freed); a failure is a failed
 * check reported at the caller's line. */
static ITensor run_line(Func *f, bool f64, int64_t n, const ITensor *args, int which, int line) {
    Interp in;
    interp_init(&in, f->mod, f64);
    in.seed = 7;
    ITensor outs[32];
    char err[512];
    memset(outs, 0, sizeof outs);
    int rc = interp_run(&in, f, n, args, outs, err, sizeof err);
    if (rc) {
        fprintf(stderr, "%s:%d: interp_run failed (%d): %s\n", __FILE__, line, rc, err);
        check_failures++;
    }
    ITensor res = outs[which];
    for (int i = 0; i < f->nouts; i++)
        if (i != which) itensor_free(&outs[i]);
    interp_free(&in);
    return res;
}
#define RUN(f, f64, n, args) run_line(f, f64, n, args, 0, __LINE__)
#define RUN_OUT(f, f64, n, args, which) run_line(f, f64, n, args, which, __LINE__)

/* Runs f expecting failure with `code` and a message containing `needle`. */
static void expect_error_line(Interp *in, Func *f, int64_t n, const ITensor *args, int code,
                              const char *needle, int line) {
    ITensor outs[8];
    char err[512] = "";
    memset(outs, 0xab, sizeof outs);
    int rc = interp_run(in, f, n, args, outs, err, sizeof err);
    if (rc != code || !strstr(err, needle)) {
        fprintf(stderr, "%s:%d: expected error %d containing '%s', got %d: '%s'\n", __FILE__, line,
                code, needle, rc, err);
        check_failures++;
    }
    for (int i = 0; i < f->nouts && i < 8; i++)
        if (outs[i].data != NULL) {
            fprintf(stderr, "%s:%d: output %d not zeroed after an error\n", __FILE__, line, i);
            check_failures++;
        }
}
#define EXPECT_ERROR(in, f, n, args, code, needle)                                                 \
    expect_error_line(in, f, n, args, code, needle, __LINE__)

static void expect_values_line(const ITensor *t, const double *want, int count, double tol,
                               int line) {
    if (t->numel != count) {
        fprintf(stderr, "%s:%d: %lld values, expected %d\n", __FILE__, line, (long long)t->numel,
                count);
        check_failures++;
        return;
    }
    for (int i = 0; i < count; i++) {
        double got = t->data[i];
        bool ok = isnan(want[i])
                      ? isnan(got)
                      : got == want[i] || fabs(got - want[i]) <= tol * (1 + fabs(want[i]));
        if (!ok) {
            fprintf(stderr, "%s:%d: [%d] = %.12g, expected %.12g\n", __FILE__, line, i, got,
                    want[i]);
            check_failures++;
        }
    }
}
#define EXPECT_VALUES(t, tol, ...) \
    expect_values_line(&(t), VALS(__VA_ARGS__), COUNT_OF(VALS(__VA_ARGS__)), tol, __LINE__)
#define EXPECT_ARRAY(t, tol, want, count) expect_values_line(&(t), want, count, tol, __LINE__)

static void expect_dims_line(const ITensor *t, int rank, const int64_t *dim, int line) {
    bool ok = t->rank == rank;
    for (int i = 0; ok && i < rank; i++) ok = t->dim[i] == dim[i];
    if (!ok) {
        fprintf(stderr, "%s:%d: wrong dims (rank %d)\n", __FILE__, line, t->rank);
        check_failures++;
    }
}
#define EXPECT_DIMS(t, ...)                                                                        \
    expect_dims_line(&(t), COUNT_OF(DIMS(__VA_ARGS__)), DIMS(__VA_ARGS__), __LINE__)

static double f32(double x) { return (double)(float)x; }

/* ---------------------------------------------------------------- elementwise */

static void test_binary_broadcast(void) {
    for (int64_t n = 1; n <= 3; n += 2) {
        Ctx c = context();
        Ref x = arg(c.f, "x", DT_F32, SHAPE(1, 1, 3)); /* [batch, 3] */
        Ref b = arg(c.f, "b", DT_F32, SHAPE(0, 3));
        Op ops[] = {OP_add, OP_sub, OP_mul, OP_div, OP_pow, OP_maximum, OP_minimum};
        for (int k = 0; k < COUNT_OF(ops); k++) output(c.f, ir_binary(c.f, ops[k], x, b));
        output(c.f, ir_binary(c.f, OP_sub, b, x)); /* broadcast on the left operand */
        ITensor args[2] = {TENSOR(DT_F32, DIMS(n, 3), NULL),
                           TENSOR(DT_F32, DIMS(3), VALS(1.5, -2, 0.25))};
        for (int i = 0; i < 3 * n; i++) args[0].data[i] = 0.5 * (i + 1);
        for (int k = 0; k <= COUNT_OF(ops); k++) {
            ITensor y = RUN_OUT(c.f, true, n, args, k);
            EXPECT_DIMS(y, n, 3);
            for (int i = 0; i < 3 * n && y.data; i++) {
                double a = args[0].data[i], bb = args[1].data[i % 3], want = 0;
                switch (k) {
                case 0: want = a + bb; break;
                case 1: want = a - bb; break;
                case 2: want = a * bb; break;
                case 3: want = a / bb; break;
                case 4: want = pow(a, bb); break;
                case 5: want = a > bb ? a : bb; break;
                case 6: want = a < bb ? a : bb; break;
                default: want = bb - a; break;
                }
                CHECK_NEAR(y.data[i], want, 1e-15);
            }
            itensor_free(&y);
        }
        itensor_free(&args[0]);
        itensor_free(&args[1]);
    }
    /* both operands broadcast: [batch, 1] * [1, 4] -> [batch, 4] */
    Ctx c = context();
    Ref x = arg(c.f, "x", DT_F32, SHAPE(1, 1, 1));
    Ref w = arg(c.f, "w", DT_F32, SHAPE(0, 1, 4));
    output(c.f, ir_binary(c.f, OP_mul, x, w));
    ITensor args[2] = {TENSOR(DT_F32, DIMS(2, 1), VALS(2, 3)),
                       TENSOR(DT_F32, DIMS(1, 4), VALS(1, 2, 3, 4))};
    ITensor y = RUN(c.f, false, 2, args);
    EXPECT_DIMS(y, 2, 4);
    EXPECT_VALUES(y, 0, 2, 4, 6, 8, 3, 6, 9, 12);
    itensor_free(&y);
    itensor_free(&args[0]);
    itensor_free(&args[1]);
}

static void test_nan_propagation(void) {
    Ctx c = context();
    Ref a = arg(c.f, "a", DT_F32, SHAPE(0, 3));
    Ref b = arg(c.f, "b", DT_F32, SHAPE(0, 3));
    output(c.f, ir_binary(c.f, OP_maximum, a, b));
    output(c.f, ir_binary(c.f, OP_minimum, a, b));
    output(c.f, ir_unary(c.f, OP_relu, a));
    ITensor args[2] = {TENSOR(DT_F32, DIMS(3), VALS(NAN, 1, 2)),
                       TENSOR(DT_F32, DIMS(3), VALS(0, NAN, -1))};
    for (int k = 0; k < 2; k++) {
        ITensor y = RUN_OUT(c.f, false, 1, args, k);
        EXPECT_VALUES(y, 0, NAN, NAN, k == 0 ? 2 : -1);
        itensor_free(&y);
    }
    ITensor y = RUN_OUT(c.f, false, 1, args, 2);
    EXPECT_VALUES(y, 0, NAN, 1, 2);
    itensor_free(&y);
    itensor_free(&args[0]);
    itensor_free(&args[1]);
}

static void test_compare_select(void) {
    Ctx c = context();
    Ref a = arg(c.f, "a", DT_F32, SHAPE(0, 4));
    Ref b = arg(c.f, "b", DT_F32, SHAPE(0, 4));
    Ref ia = arg(c.f, "ia", DT_I32, SHAPE(0, 4));
    Op cmps[] = {OP_eq, OP_ne, OP_lt, OP_le, OP_gt, OP_ge};
    for (int k = 0; k < 6; k++) output(c.f, ir_binary(c.f, cmps[k], a, b));
    output(c.f, ir_binary(c.f, OP_lt, ia, ir_const(c.f, DT_I32, shape_scalar(), 2)));
    output(c.f, ir_select(c.f, ir_binary(c.f, OP_gt, a, b), a, b));
    ITensor args[3] = {TENSOR(DT_F32, DIMS(4), VALS(1, 2, 3, -1)),
                       TENSOR(DT_F32, DIMS(4), VALS(1, 3, 2, -2)),
                       TENSOR(DT_I32, DIMS(4), VALS(0, 2, 5, -7))};
    double want[6][4] = {{1, 0, 0, 0}, {0, 1, 1, 1}, {0, 1, 0, 0},
                         {1, 1, 0, 0}, {0, 0, 1, 1}, {1, 0, 1, 1}};
    for (int k = 0; k < 6; k++) {
        ITensor y = RUN_OUT(c.f, false, 1, args, k);
        CHECK(y.dtype == DT_F32);
        EXPECT_ARRAY(y, 0, want[k], 4);
        itensor_free(&y);
    }
    ITensor y = RUN_OUT(c.f, false, 1, args, 6);
    CHECK(y.dtype == DT_F32);
    EXPECT_VALUES(y, 0, 1, 0, 0, 1);
    itensor_free(&y);
    y = RUN_OUT(c.f, false, 1, args, 7); /* max(a, b) through select */
    EXPECT_VALUES(y, 0, 1, 3, 3, -1);
    itensor_free(&y);
    for (int i = 0; i < 3; i++) itensor_free(&args[i]);
}

static void test_int_ops(void) {
    Ctx c = context();
    Ref a = arg(c.f, "a", DT_I32, SHAPE(0, 6));
    Ref b = arg(c.f, "b", DT_I32, SHAPE(0, 6));
    Op ops[] = {OP_add, OP_sub, OP_mul, OP_div, OP_maximum, OP_minimum};
    for (int k = 0; k < 6; k++) output(c.f, ir_binary(c.f, ops[k], a, b));
    output(c.f, ir_unary(c.f, OP_neg, a));
    output(c.f, ir_unary(c.f, OP_abs, a));
    ITensor args[2] = {TENSOR(DT_I32, DIMS(6), VALS(-7, 7, 2147483647, 65536, -2147483648.0, 5)),
                       TENSOR(DT_I32, DIMS(6), VALS(2, -2, 1, 65536, -1, 0))};
    double want[8][6] = {
        {-5, 5, -2147483648.0, 131072, 2147483647, 5}, /* add wraps */
        {-9, 9, 2147483646, 0, -2147483647, 5},        /* sub */
        {-14, -14, 2147483647, 0, -2147483648.0, 0},   /* mul wraps: 2^32 -> 0, -(-2^31) */
        {-3, -3, 2147483647, 1, -2147483648.0, 0},     /* div truncates; x/0 = 0 */
        {2, 7, 2147483647, 65536, -1, 5},
        {-7, -2, 1, 65536, -2147483648.0, 0},
        {7, -7, -2147483647, -65536, -2147483648.0, -5}, /* neg wraps at INT_MIN */
        {7, 7, 2147483647, 65536, -2147483648.0, 5},
    };
    for (int k = 0; k < 8; k++) {
        for (int mode = 0; mode < 2; mode++) {
            ITensor y = RUN_OUT(c.f, mode, 1, args, k);
            CHECK(y.dtype == DT_I32);
            EXPECT_ARRAY(y, 0, want[k], 6);
            itensor_free(&y);
        }
    }
    itensor_free(&args[0]);
    itensor_free(&args[1]);

    /* cast: f32 -> i32 truncates toward zero, saturates, NaN -> 0; i32 -> f32 rounds in f32 mode */
    c = context();
    Ref x = arg(c.f, "x", DT_F32, SHAPE(0, 7));
    Ref i = arg(c.f, "i", DT_I32, SHAPE(0, 2));
    output(c.f, ir_cast(c.f, x, DT_I32));
    output(c.f, ir_cast(c.f, i, DT_F32));
    ITensor cargs[2] = {TENSOR(DT_F32, DIMS(7), VALS(-2.7, 2.7, -0.5, 3e9, -3e9, NAN, 7)),
                        TENSOR(DT_I32, DIMS(2), VALS(16777217, -3))};
    ITensor y = RUN(c.f, false, 1, cargs);
    EXPECT_VALUES(y, 0, -2, 2, 0, 2147483647, -2147483648.0, 0, 7);
    itensor_free(&y);
    y = RUN_OUT(c.f, false, 1, cargs, 1);
    EXPECT_VALUES(y, 0, 16777216, -3);
    itensor_free(&y);
    y = RUN_OUT(c.f, true, 1, cargs, 1);
    EXPECT_VALUES(y, 0, 16777217, -3);
    itensor_free(&y);
    itensor_free(&cargs[0]);
    itensor_free(&cargs[1]);
}

static void test_unary(void) {
    Ctx c = context();
    Ref x = arg(c.f, "x", DT_F32, SHAPE(0, 5));
    Op ops[] = {OP_neg,  OP_exp,   OP_log, OP_sqrt, OP_abs,
                OP_sign, OP_floor, OP_cos, OP_erf,  OP_stop_gradient};
    for (int k = 0; k < COUNT_OF(ops); k++) output(c.f, ir_unary(c.f, ops[k], x));
    double xs[5] = {-1.5, 0, 0.25, 2, 3.7};
    ITensor in = TENSOR(DT_F32, DIMS(5), xs);
    for (int k = 0; k < COUNT_OF(ops); k++) {
        ITensor y = RUN_OUT(c.f, true, 1, &in, k);
        for (int i = 0; i < 5 && y.data; i++) {
            double v = xs[i], want;
            switch (ops[k]) {
            case OP_neg: want = -v; break;
            case OP_exp: want = exp(v); break;
            case OP_log: want = log(v); break;
            case OP_sqrt: want = sqrt(v); break;
            case OP_abs: want = v < 0 ? -v : v; break;
            case OP_sign: want = (v > 0) - (v < 0); break;
            case OP_floor: want = floor(v); break;
            case OP_cos: want = cos(v); break;
            case OP_erf: want = erf(v); break;
            default: want = v; break;
            }
            if (isnan(want)) CHECK(isnan(y.data[i]));
            else if (isinf(want)) CHECK(y.data[i] == want);
            else CHECK_NEAR(y.data[i], want, 1e-15);
        }
        itensor_free(&y);
    }
    itensor_free(&in);
}

/* f32 mode rounds every f32 result to float; f64 mode rounds nothing; f64 nodes never round. */
static void test_rounding_modes(void) {
    Ctx c = context();
    Ref x = arg(c.f, "x", DT_F32, SHAPE(0, 10));
    Ref d = arg(c.f, "d", DT_F64, SHAPE(0, 1));
    Ref y = ir_binary(c.f, OP_mul, x, ir_scalar(c.f, 3));
    output(c.f, y);
    output(c.f, ir_reduce(c.f, OP_sum, x, 1, false));
    output(c.f, ir_binary(c.f, OP_add, d, ir_const(c.f, DT_F64, shape_scalar(), 1e-12)));
    output(c.f, ir_unary(c.f, OP_exp, x));
    ITensor args[2] = {TENSOR(DT_F32, DIMS(10), NULL), TENSOR(DT_F64, DIMS(1), VALS(1))};
    for (int i = 0; i < 10; i++) args[0].data[i] = 0.1;

    ITensor m32 = RUN_OUT(c.f, false, 1, args, 0), m64 = RUN_OUT(c.f, true, 1, args, 0);
    CHECK(m32.data[0] == f32(f32(0.1) * 3));
    CHECK(m64.data[0] == 0.1 * 3);
    CHECK(m32.data[0] != m64.data[0]);
    itensor_free(&m32);
    itensor_free(&m64);

    /* a reduction accumulates in double, then rounds once */
    ITensor s32 = RUN_OUT(c.f, false, 1, args, 1), s64 = RUN_OUT(c.f, true, 1, args, 1);
    double acc = 0;
    for (int i = 0; i < 10; i++) acc += f32(0.1);
    CHECK(s32.data[0] == f32(acc));
    acc = 0;
    for (int i = 0; i < 10; i++) acc += 0.1;
    CHECK(s64.data[0] == acc);
    itensor_free(&s32);
    itensor_free(&s64);

    ITensor d32 = RUN_OUT(c.f, false, 1, args, 2);
    CHECK(d32.data[0] == 1 + 1e-12); /* an f64 node is not rounded in f32 mode */
    itensor_free(&d32);

    ITensor e32 = RUN_OUT(c.f, false, 1, args, 3);
    CHECK(e32.data[0] == f32(exp(f32(0.1))));
    itensor_free(&e32);
    itensor_free(&args[0]);
    itensor_free(&args[1]);
}

/* ---------------------------------------------------------------- reductions */

static void test_reductions(void) {
    for (int64_t n = 1; n <= 3; n += 2) {
        Ctx c = context();
        Ref x = arg(c.f, "x", DT_F32, SHAPE(1, 1, 2, 3)); /* [batch, 2, 3] */
        output(c.f, ir_reduce(c.f, OP_sum, x, 1u << 1, false));            /* [batch, 3] */
        output(c.f, ir_reduce(c.f, OP_sum, x, 1u << 1, true));             /* [batch, 1, 3] */
        output(c.f, ir_reduce(c.f, OP_sum, x, (1u << 0) | (1u << 2), false)); /* [2] */
        output(c.f, ir_reduce(c.f, OP_mean, x, 1u << 0, false));           /* [2, 3], / n */
        output(c.f, ir_reduce(c.f, OP_max, x, 1u << 2, true));             /* [batch, 2, 1] */
        output(c.f, ir_reduce(c.f, OP_mean, x, 7, false));                 /* scalar */
        output(c.f, ir_reduce(c.f, OP_sum, x, 0, false));                  /* identity */
        ITensor in = TENSOR(DT_F32, DIMS(n, 2, 3), NULL);
        for (int i = 0; i < 6 * n; i++) in.data[i] = (i * 7 % 11) - 5; /* mixed signs */
#define X(b, i, j) in.data[((b) * 2 + (i)) * 3 + (j)]
        ITensor y = RUN_OUT(c.f, true, n, &in, 0);
        EXPECT_DIMS(y, n, 3);
        for (int b = 0; b < n; b++)
            for (int j = 0; j < 3; j++) CHECK_NEAR(y.data[b * 3 + j], X(b, 0, j) + X(b, 1, j), 0);
        itensor_free(&y);
        y = RUN_OUT(c.f, true, n, &in, 1);
        EXPECT_DIMS(y, n, 1, 3);
        for (int b = 0; b < n; b++)
            for (int j = 0; j < 3; j++) CHECK_NEAR(y.data[b * 3 + j], X(b, 0, j) + X(b, 1, j), 0);
        itensor_free(&y);
        y = RUN_OUT(c.f, true, n, &in, 2);
        EXPECT_DIMS(y, 2);
        for (int i = 0; i < 2; i++) {
            double s = 0;
            for (int b = 0; b < n; b++)
                for (int j = 0; j < 3; j++) s += X(b, i, j);
            CHECK_NEAR(y.data[i], s, 0);
        }
        itensor_free(&y);
        y = RUN_OUT(c.f, true, n, &in, 3);
        EXPECT_DIMS(y, 2, 3);
        for (int i = 0; i < 6; i++) {
            double s = 0;
            for (int b = 0; b < n; b++) s += in.data[b * 6 + i];
            CHECK_NEAR(y.data[i], s / (double)n, 1e-15);
        }
        itensor_free(&y);
        y = RUN_OUT(c.f, true, n, &in, 4);
        EXPECT_DIMS(y, n, 2, 1);
        for (int r = 0; r < 2 * n; r++) {
            double m = fmax(fmax(in.data[r * 3], in.data[r * 3 + 1]), in.data[r * 3 + 2]);
            CHECK(y.data[r] == m);
        }
        itensor_free(&y);
        y = RUN_OUT(c.f, true, n, &in, 5);
        CHECK(y.rank == 0 && y.numel == 1);
        double s = 0;
        for (int i = 0; i < 6 * n; i++) s += in.data[i];
        CHECK_NEAR(y.data[0], s / (6.0 * (double)n), 1e-15);
        itensor_free(&y);
        y = RUN_OUT(c.f, true, n, &in, 6);
        EXPECT_ARRAY(y, 0, in.data, (int)in.numel);
        itensor_free(&y);
#undef X
        itensor_free(&in);
    }
    /* max: a NaN wins */
    Ctx c = context();
    Ref x = arg(c.f, "x", DT_F32, SHAPE(0, 2, 3));
    output(c.f, ir_reduce(c.f, OP_max, x, 2, false));
    ITensor in = TENSOR(DT_F32, DIMS(2, 3), VALS(1, NAN, 3, -4, -5, -6));
    ITensor y = RUN(c.f, false, 1, &in);
    EXPECT_VALUES(y, 0, NAN, -4);
    itensor_free(&y);
    itensor_free(&in);
}

static void test_argmax(void) {
    Ctx c = context();
    Ref x = arg(c.f, "x", DT_F32, SHAPE(1, 1, 4)); /* [batch, 4] */
    output(c.f, ir_argmax(c.f, x, 1));
    output(c.f, ir_argmax(c.f, x, 0));
    ITensor in = TENSOR(DT_F32, DIMS(3, 4), VALS(1, 5, 5, 2,     /* tie: first */
                                                 -1, -3, -2, -1, /* tie at 0 and 3 */
                                                 0, NAN, 9, 1)); /* NaN is the maximum */
    ITensor y = RUN(c.f, false, 3, &in);
    CHECK(y.dtype == DT_I32);
    EXPECT_DIMS(y, 3);
    EXPECT_VALUES(y, 0, 1, 0, 1);
    itensor_free(&y);
    y = RUN_OUT(c.f, false, 3, &in, 1);
    EXPECT_DIMS(y, 4);
    EXPECT_VALUES(y, 0, 0, 2, 2, 0);
    itensor_free(&y);
    itensor_free(&in);
}

/* ---------------------------------------------------------------- matmul */

/* Reference: out[s, i, j] = sum_k A(s, i, k) B(s, k, j) with explicit index formulas. */
static void matmul_reference(const ITensor *a, const ITensor *b, bool ta, bool tb, double *out) {
    int ra = a->rank, rb = b->rank;
    int64_t m = ta ? a->dim[ra - 1] : a->dim[ra - 2], k = ta ? a->dim[ra - 2] : a->dim[ra - 1];
    int64_t n = tb ? b->dim[rb - 2] : b->dim[rb - 1];
    int64_t batches = a->numel / (m * k);
    for (int64_t s = 0; s < batches; s++)
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                double acc = 0;
                const double *A = a->data + s * m * k, *B = b->data + (rb == 2 ? 0 : s * k * n);
                for (int64_t p = 0; p < k; p++)
                    acc += (ta ? A[p * m + i] : A[i * k + p]) * (tb ? B[j * k + p] : B[p * n + j]);
                out[(s * m + i) * n + j] = acc;
            }
}

static void fill_pattern(ITensor *t, int seed) {
    for (int64_t i = 0; i < t->numel; i++)
        t->data[i] = (double)((i * 37 + seed * 11) % 23 - 11) / 8;
}

static void check_matmul(int ra, const int64_t *da, int rb, const int64_t *db, bool ta, bool tb,
                         uint8_t mask_a, uint8_t mask_b, int64_t n, int line) {
    Ctx c = context();
    Shape sa = shape_make(ra, da, mask_a), sb = shape_make(rb, db, mask_b);
    Ref a = arg(c.f, "a", DT_F32, sa), b = arg(c.f, "b", DT_F32, sb);
    output(c.f, ir_matmul(c.f, a, b, ta, tb));
    ITensor args[2];
    itensor_alloc_shape(&args[0], DT_F32, &sa, n);
    itensor_alloc_shape(&args[1], DT_F32, &sb, n);
    fill_pattern(&args[0], 1);
    fill_pattern(&args[1], 2);
    ITensor y = run_line(c.f, true, n, args, 0, line);
    double *want = calloc((size_t)y.numel + 1, sizeof *want);
    matmul_reference(&args[0], &args[1], ta, tb, want);
    expect_values_line(&y, want, (int)y.numel, 1e-14, line);
    free(want);
    itensor_free(&y);
    itensor_free(&args[0]);
    itensor_free(&args[1]);
}

static void test_matmul(void) {
    check_matmul(2, DIMS(2, 3), 2, DIMS(3, 4), false, false, 0, 0, 1, __LINE__);
    check_matmul(2, DIMS(3, 2), 2, DIMS(3, 4), true, false, 0, 0, 1, __LINE__);
    check_matmul(2, DIMS(2, 3), 2, DIMS(4, 3), false, true, 0, 0, 1, __LINE__);
    check_matmul(2, DIMS(3, 2), 2, DIMS(4, 3), true, true, 0, 0, 1, __LINE__);
    check_matmul(3, DIMS(2, 2, 3), 3, DIMS(2, 3, 4), false, false, 0, 0, 1, __LINE__); /* batched */
    check_matmul(3, DIMS(2, 3, 2), 3, DIMS(2, 4, 3), true, true, 0, 0, 1, __LINE__);
    check_matmul(3, DIMS(2, 2, 3), 2, DIMS(3, 4), false, false, 0, 0, 1, __LINE__); /* shared b */
    check_matmul(3, DIMS(1, 2, 3), 2, DIMS(4, 3), false, true, 1, 0, 3,
                 __LINE__); /* [batch, 2, 3] */
    for (int64_t n = 1; n <= 3; n += 2) {
        check_matmul(2, DIMS(1, 3), 2, DIMS(3, 2), false, false, 1, 0, n,
                     __LINE__); /* x[batch, 3] @ W */
        check_matmul(2, DIMS(1, 3), 2, DIMS(5, 3), false, true, 1, 0, n,
                     __LINE__); /* x @ W^T (dense) */
        check_matmul(2, DIMS(1, 3), 2, DIMS(1, 5), true, false, 1, 1, n,
                     __LINE__); /* x^T @ dy (dW) */
    }
    /* hand-computed: [[1, 2], [3, 4]] @ [[5, 6], [7, 8]] */
    Ctx c = context();
    Ref a = arg(c.f, "a", DT_F32, SHAPE(0, 2, 2)), b = arg(c.f, "b", DT_F32, SHAPE(0, 2, 2));
    output(c.f, ir_matmul(c.f, a, b, false, false));
    output(c.f, ir_matmul(c.f, a, b, true, false));
    ITensor args[2] = {TENSOR(DT_F32, DIMS(2, 2), VALS(1, 2, 3, 4)),
                       TENSOR(DT_F32, DIMS(2, 2), VALS(5, 6, 7, 8))};
    ITensor y = RUN(c.f, false, 1, args);
    EXPECT_VALUES(y, 0, 19, 22, 43, 50);
    itensor_free(&y);
    y = RUN_OUT(c.f, false, 1, args, 1);
    EXPECT_VALUES(y, 0, 26, 30, 38, 44);
    itensor_free(&y);
    itensor_free(&args[0]);
    itensor_free(&args[1]);
}

/* The MNIST-sized layer must be fast (not asserted: timing belongs to make bench). */
static void test_matmul_large(void) {
    Ctx c = context();
    Ref x = arg(c.f, "x", DT_F32, SHAPE(1, 1, 784));
    Ref w = arg(c.f, "w", DT_F32, SHAPE(0, 512, 784));
    output(c.f, ir_matmul(c.f, x, w, false, true));
    ITensor args[2] = {TENSOR(DT_F32, DIMS(64, 784), NULL), TENSOR(DT_F32, DIMS(512, 784), NULL)};
    fill_pattern(&args[0], 3);
    fill_pattern(&args[1], 4);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ITensor y = RUN(c.f, false, 64, args);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    fprintf(stderr, "matmul 64x784x512: %.3f s\n",
            (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
    EXPECT_DIMS(y, 64, 512);
    for (int i = 0; i < 64 && y.data; i += 21)
        for (int j = 0; j < 512; j += 101) {
            double acc = 0;
            for (int p = 0; p < 784; p++)
                acc += args[0].data[i * 784 + p] * args[1].data[j * 784 + p];
            CHECK(y.data[i * 512 + j] == f32(acc));
        }
    itensor_free(&y);
    itensor_free(&args[0]);
    itensor_free(&args[1]);
}

/* ---------------------------------------------------------------- shape ops */

static void test_reshape_transpose(void) {
    Ctx c = context();
    Ref x = arg(c.f, "x", DT_F32, SHAPE(0, 2, 3, 4));
    output(c.f, ir_transpose(c.f, x, (int[]){2, 0, 1}));  /* out[a][b][c] = x[b][c][a] */
    output(c.f, ir_reshape(c.f, x, SHAPE(0, 6, 4)));
    Ref xb = arg(c.f, "xb", DT_I32, SHAPE(1, 1, 3));        /* i32 [batch, 3] */
    output(c.f, ir_transpose(c.f, xb, (int[]){1, 0}));
    ITensor args[2] = {TENSOR(DT_F32, DIMS(2, 3, 4), NULL),
                       TENSOR(DT_I32, DIMS(2, 3), VALS(1, 2, 3, 4, 5, 6))};
    for (int i = 0; i < 24; i++) args[0].data[i] = i;
    ITensor y = RUN(c.f, false, 2, args);
    EXPECT_DIMS(y, 4, 2, 3);
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 2; b++)
            for (int k = 0; k < 3; k++)
                CHECK(y.data[(a * 2 + b) * 3 + k] == args[0].data[(b * 3 + k) * 4 + a]);
    itensor_free(&y);
    y = RUN_OUT(c.f, false, 2, args, 1);
    EXPECT_DIMS(y, 6, 4);
    EXPECT_ARRAY(y, 0, args[0].data, 24);
    itensor_free(&y);
    y = RUN_OUT(c.f, false, 2, args, 2);
    EXPECT_DIMS(y, 3, 2);
    CHECK(y.dtype == DT_I32);
    EXPECT_VALUES(y, 0, 1, 4, 2, 5, 3, 6);
    itensor_free(&y);
    itensor_free(&args[0]);
    itensor_free(&args[1]);
}

static void test_broadcast_op(void) {
    Ctx c = context();
    Ref x = arg(c.f, "x", DT_F32, SHAPE(0, 3, 1));
    Ref v = arg(c.f, "v", DT_F32, SHAPE(0, 4));
    Ref s = arg(c.f, "s", DT_F32, shape_scalar());
    output(c.f, ir_broadcast(c.f, x, SHAPE(0, 2, 3, 4)));
    output(c.f, ir_broadcast(c.f, v, SHAPE(1, 1, 4)));
    output(c.f, ir_broadcast(c.f, s, SHAPE(0, 2, 2)));
    ITensor args[3] = {TENSOR(DT_F32, DIMS(3, 1), VALS(1, 2, 3)),
                       TENSOR(DT_F32, DIMS(4), VALS(5, 6, 7, 8)), TENSOR(DT_F32, DIMS(1), VALS(9))};
    args[2].rank = 0; /* a scalar */
    ITensor y = RUN(c.f, false, 3, args);
    EXPECT_DIMS(y, 2, 3, 4);
    for (int i = 0; i < 24 && y.data; i++) CHECK(y.data[i] == (double)(i / 4 % 3 + 1));
    itensor_free(&y);
    y = RUN_OUT(c.f, false, 3, args, 1);
    EXPECT_DIMS(y, 3, 4);
    EXPECT_VALUES(y, 0, 5, 6, 7, 8, 5, 6, 7, 8, 5, 6, 7, 8);
    itensor_free(&y);
    y = RUN_OUT(c.f, false, 3, args, 2);
    EXPECT_VALUES(y, 0, 9, 9, 9, 9);
    itensor_free(&y);
    for (int i = 0; i < 3; i++) itensor_free(&args[i]);
}

static void test_slice(void) {
    Ctx c = context();
    Ref x = arg(c.f, "x", DT_F32, SHAPE(0, 5, 6));
    output(c.f, ir_slice(c.f, x, DIMS(1, 0), DIMS(2, 3), SHAPE(0, 2, 2)));  /* x[1 + 2i, 3j] */
    output(c.f, ir_slice(c.f, x, DIMS(4, 5), DIMS(-2, -1), SHAPE(0, 3, 2))); /* x[4 - 2i, 5 - j] */
    Ref xb = arg(c.f, "xb", DT_F32, SHAPE(1, 1, 4));
    output(c.f, ir_slice(c.f, xb, DIMS(0, 1), DIMS(1, 2), SHAPE(1, 1, 2)));  /* xb[:, 1::2] */
    ITensor args[2] = {TENSOR(DT_F32, DIMS(5, 6), NULL), TENSOR(DT_F32, DIMS(3, 4), NULL)};
    for (int i = 0; i < 30; i++) args[0].data[i] = i;
    for (int i = 0; i < 12; i++) args[1].data[i] = 100 + i;
    ITensor y = RUN(c.f, false, 3, args);
    EXPECT_VALUES(y, 0, 6, 9, 18, 21);
    itensor_free(&y);
    y = RUN_OUT(c.f, false, 3, args, 1);
    EXPECT_VALUES(y, 0, 29, 28, 17, 16, 5, 4);
    itensor_free(&y);
    y = RUN_OUT(c.f, false, 3, args, 2);
    EXPECT_DIMS(y, 3, 2);
    EXPECT_VALUES(y, 0, 101, 103, 105, 107, 109, 111);
    itensor_free(&y);
    itensor_free(&args[0]);
    itensor_free(&args[1]);
}

static void test_concat(void) {
    Ctx c = context();
    Ref a = arg(c.f, "a", DT_F32, SHAPE(1, 1, 1));
    Ref b = arg(c.f, "b", DT_F32, SHAPE(1, 1, 2));
    Ref d = arg(c.f, "d", DT_F32, SHAPE(1, 1, 3));
    output(c.f, ir_concat(c.f, 3, (Ref[]){a, b, d}, 1));
    Ref p = arg(c.f, "p", DT_I32, SHAPE(0, 1, 2));
    Ref q = arg(c.f, "q", DT_I32, SHAPE(0, 2, 2));
    output(c.f, ir_concat(c.f, 2, (Ref[]){p, q}, 0));
    ITensor args[5] = {
        TENSOR(DT_F32, DIMS(2, 1), VALS(1, 2)), TENSOR(DT_F32, DIMS(2, 2), VALS(3, 4, 5, 6)),
        TENSOR(DT_F32, DIMS(2, 3), VALS(7, 8, 9, 10, 11, 12)),
        TENSOR(DT_I32, DIMS(1, 2), VALS(1, 2)), TENSOR(DT_I32, DIMS(2, 2), VALS(3, 4, 5, 6))};
    ITensor y = RUN(c.f, false, 2, args);
    EXPECT_DIMS(y, 2, 6);
    EXPECT_VALUES(y, 0, 1, 3, 4, 7, 8, 9, 2, 5, 6, 10, 11, 12);
    itensor_free(&y);
    y = RUN_OUT(c.f, false, 2, args, 1);
    EXPECT_DIMS(y, 3, 2);
    EXPECT_VALUES(y, 0, 1, 2, 3, 4, 5, 6);
    itensor_free(&y);
    for (int i = 0; i < 5; i++) itensor_free(&args[i]);
}

static void test_gather_scatter(void) {
    Ctx c = context();
    Ref table = arg(c.f, "table", DT_F32, SHAPE(0, 4, 2));
    Ref idx = arg(c.f, "idx", DT_I32, SHAPE(1, 1, 3)); /* [batch, 3] */
    Attr none = {0};
    output(c.f, node(c.f, OP_gather, DT_F32, SHAPE(1, 1, 3, 2), 2, (Ref[]){table, idx}, &none));
    Ref ids = arg(c.f, "ids", DT_I32, SHAPE(0, 5));
    Ref dy = arg(c.f, "dy", DT_F32, SHAPE(0, 5, 2));
    output(c.f, node(c.f, OP_scatter_add, DT_F32, SHAPE(0, 3, 2), 2, (Ref[]){ids, dy}, &none));
    ITensor args[4] = {TENSOR(DT_F32, DIMS(4, 2), VALS(0, 1, 10, 11, 20, 21, 30, 31)),
                       TENSOR(DT_I32, DIMS(2, 3), VALS(3, -1, 0, 4, 2, 2)),
                       TENSOR(DT_I32, DIMS(5), VALS(0, 2, 0, 7, -1)),
                       TENSOR(DT_F32, DIMS(5, 2), VALS(1, 2, 3, 4, 5, 6, 7, 8, 9, 10))};
    ITensor y = RUN(c.f, false, 2, args);
    EXPECT_DIMS(y, 2, 3, 2);
    EXPECT_VALUES(y, 0, 30, 31, 0, 0, 0, 1, 0, 0, 20, 21, 20, 21);
    itensor_free(&y);
    y = RUN_OUT(c.f, false, 2, args, 1);
    EXPECT_DIMS(y, 3, 2);
    EXPECT_VALUES(y, 0, 6, 8, 0, 0, 3, 4);
    itensor_free(&y);
    for (int i = 0; i < 4; i++) itensor_free(&args[i]);
}

/* ---------------------------------------------------------------- softmax */

static void test_softmax(void) {
    Ctx c = context();
    Ref x = arg(c.f, "x", DT_F32, SHAPE(1, 1, 3));
    output(c.f, ir_unary(c.f, OP_softmax, x));
    output(c.f, ir_unary(c.f, OP_log_softmax, x));
    ITensor in = TENSOR(DT_F32, DIMS(3, 3), VALS(1, 2, 3, 1000, 1001, 1002, -5, 0, -1e30));
    ITensor y = RUN(c.f, true, 3, &in), ly = RUN_OUT(c.f, true, 3, &in, 1);
    double z = exp(1) + exp(2) + exp(3);
    double want[3] = {exp(1) / z, exp(2) / z, exp(3) / z};
    for (int r = 0; r < 2; r++) /* shifting by 999 changes nothing */
        for (int j = 0; j < 3; j++) {
            /* x - lse at x ~ 1000 keeps ~13 digits (the ulp of 1000 is 1e-13) */
            CHECK_NEAR(y.data[r * 3 + j], want[j], r ? 1e-12 : 1e-14);
            CHECK_NEAR(ly.data[r * 3 + j], log(want[j]), r ? 1e-12 : 1e-14);
        }
    CHECK_NEAR(y.data[6], exp(-5) / (exp(-5) + 1), 1e-14);
    CHECK(y.data[8] == 0);
    CHECK(isfinite(ly.data[8]) && ly.data[8] < -1e29);
    itensor_free(&y);
    itensor_free(&ly);
    itensor_free(&in);
}

/* Central finite differences of L(x) = sum(g * forward(x)) against `grad_op` (y, g), f64. */
static void check_softmax_grad(Op forward, Op grad_op) {
    Ctx c = context();
    Ref x = arg(c.f, "x", DT_F64, SHAPE(1, 1, 4));
    Ref g = arg(c.f, "g", DT_F64, SHAPE(1, 1, 4));
    Ref y = ir_unary(c.f, forward, x);
    output(c.f, ir_reduce(c.f, OP_sum, ir_binary(c.f, OP_mul, g, y), 3, false));
    Attr none = {0};
    output(c.f, node(c.f, grad_op, DT_F64, SHAPE(1, 1, 4), 2, (Ref[]){y, g}, &none));
    ITensor args[2] = {TENSOR(DT_F64, DIMS(2, 4), VALS(0.3, -1.2, 2.0, 0.5, 1, 1, 1, 1)),
                       TENSOR(DT_F64, DIMS(2, 4), VALS(1.5, -0.7, 0.2, 2.0, 0.1, 0.2, -3, 4))};
    ITensor analytic = RUN_OUT(c.f, true, 2, args, 1);
    const double h = 1e-6;
    for (int i = 0; i < 8; i++) {
        double saved = args[0].data[i];
        args[0].data[i] = saved + h;
        ITensor lp = RUN(c.f, true, 2, args);
        args[0].data[i] = saved - h;
        ITensor lm = RUN(c.f, true, 2, args);
        args[0].data[i] = saved;
        CHECK_NEAR(analytic.data[i], (lp.data[0] - lm.data[0]) / (2 * h), 1e-7);
        itensor_free(&lp);
        itensor_free(&lm);
    }
    itensor_free(&analytic);
    itensor_free(&args[0]);
    itensor_free(&args[1]);
}

static void test_softmax_grads(void) {
    check_softmax_grad(OP_softmax, OP_softmax_grad);
    check_softmax_grad(OP_log_softmax, OP_log_softmax_grad);
}

/* ---------------------------------------------------------------- cross-entropy */

/* Builds loss = cross_entropy(logits[batch, C], labels[batch][, weight]) and its gradient
 * (cross_entropy_grad with dloss). Outputs: loss, grad. */
static Func *cross_entropy_func(int64_t classes, double smoothing, bool weighted, double dloss) {
    Ctx c = context();
    Ref x = arg(c.f, "x", DT_F64, SHAPE(1, 1, classes));
    Ref y = ir_input(c.f, func_add_arg(c.f, "y", ARG_LABEL, DT_I32, SHAPE(1, 1), NOLOC));
    Ref w = weighted ? arg(c.f, "w", DT_F64, SHAPE(0, classes)) : REF_NONE;
    Attr a = {.f = {smoothing}};
    Ref in[4] = {x, y, w};
    int nin = weighted ? 3 : 2;
    output(c.f, node(c.f, OP_cross_entropy, DT_F64, shape_scalar(), nin, in, &a));
    in[nin] = ir_const(c.f, DT_F64, shape_scalar(), dloss);
    output(c.f, node(c.f, OP_cross_entropy_grad, DT_F64, SHAPE(1, 1, classes), nin + 1, in, &a));
    return c.f;
}

/* torch.nn.functional.cross_entropy(x, y, weight, label_smoothing=s), written out as PyTorch's
 * cross_entropy_loss_label_smoothing computes it: (1-s) * nll_loss + (s/C) * smooth / sum w[y]. */
static double torch_cross_entropy(const double *x, const double *y, const double *w, int rows,
                                  int classes, double s) {
    double nll = 0, smooth = 0, wsum = 0;
    for (int i = 0; i < rows; i++) {
        int label = (int)y[i];
        if (label < 0 || label >= classes) continue;
        double z = 0;
        for (int k = 0; k < classes; k++) z += exp(x[i * classes + k]);
        double wy = w ? w[label] : 1;
        nll += -wy * (x[i * classes + label] - log(z));
        for (int k = 0; k < classes; k++) smooth += -(w ? w[k] : 1) * (x[i * classes + k] - log(z));
        wsum += wy;
    }
    return (1 - s) * nll / wsum + s / classes * smooth / wsum;
}

static void test_cross_entropy_values(void) {
    /* hand value: logits [1, 2, 3], label 0 */
    double lse = log(exp(1) + exp(2) + exp(3));
    Func *f = cross_entropy_func(3, 0, false, 1);
    ITensor args[3] = {TENSOR(DT_F64, DIMS(1, 3), VALS(1, 2, 3)), TENSOR(DT_I32, DIMS(1), VALS(0))};
    ITensor l = RUN(f, true, 1, args);
    CHECK_NEAR(l.data[0], lse - 1, 1e-14);
    CHECK_NEAR(l.data[0], 2.40760596444438, 1e-12);
    itensor_free(&l);
    /* smoothing 0.1: 0.9 nll + 0.1 mean_c(-log p_c) */
    f = cross_entropy_func(3, 0.1, false, 1);
    l = RUN(f, true, 1, args);
    CHECK_NEAR(l.data[0], 0.9 * (lse - 1) + 0.1 * (lse - 2), 1e-14);
    itensor_free(&l);
    itensor_free(&args[0]);
    itensor_free(&args[1]);

    /* a batch of 4 against the ops.h formula: mean_i -sum_c q_c log p_c, q = (1-s) onehot + s/C */
    double x[4 * 5], y[4] = {0, 4, 2, 2};
    for (int i = 0; i < 20; i++) x[i] = sin(i * 1.7) * 3;
    f = cross_entropy_func(5, 0.2, false, 1);
    args[0] = TENSOR(DT_F64, DIMS(4, 5), x);
    args[1] = TENSOR(DT_I32, DIMS(4), y);
    l = RUN(f, true, 4, args);
    double want = 0;
    for (int i = 0; i < 4; i++) {
        double z = 0;
        for (int k = 0; k < 5; k++) z += exp(x[i * 5 + k]);
        for (int k = 0; k < 5; k++)
            want -= (0.8 * (k == (int)y[i]) + 0.2 / 5) * (x[i * 5 + k] - log(z)) / 4;
    }
    CHECK_NEAR(l.data[0], want, 1e-14);
    CHECK_NEAR(l.data[0], torch_cross_entropy(x, y, NULL, 4, 5, 0.2), 1e-14);
    itensor_free(&l);

    /* class weights, with and without smoothing, and ignored labels (-1 and C) */
    double w[5] = {0.5, 2, 1, 3, 0.25}, y_ignore[4] = {0, -1, 2, 5};
    args[2] = TENSOR(DT_F64, DIMS(5), w);
    for (int k = 0; k < 2; k++) {
        double s = k ? 0.3 : 0;
        f = cross_entropy_func(5, s, true, 1);
        l = RUN(f, true, 4, args);
        CHECK_NEAR(l.data[0], torch_cross_entropy(x, y, w, 4, 5, s), 1e-14);
        itensor_free(&l);
        memcpy(args[1].data, y_ignore, sizeof y_ignore);
        l = RUN(f, true, 4, args);
        CHECK_NEAR(l.data[0], torch_cross_entropy(x, y_ignore, w, 4, 5, s), 1e-14);
        itensor_free(&l);
        memcpy(args[1].data, y, sizeof y);
    }
    /* weights 0 < s: the smoothing term is weighted too (PyTorch), so w = 1 gives the plain loss */
    for (int i = 0; i < 5; i++) args[2].data[i] = 1;
    f = cross_entropy_func(5, 0.2, true, 1);
    l = RUN(f, true, 4, args);
    CHECK_NEAR(l.data[0], want, 1e-14);
    itensor_free(&l);
    /* every label ignored: 0/0, as PyTorch */
    for (int i = 0; i < 4; i++) args[1].data[i] = -100;
    l = RUN(f, true, 4, args);
    CHECK(isnan(l.data[0]));
    itensor_free(&l);
    for (int i = 0; i < 3; i++) itensor_free(&args[i]);

    /* positions beyond the batch axis: logits [batch, 2, C], labels [batch, 2] */
    Ctx c = context();
    Ref lx = arg(c.f, "x", DT_F32, SHAPE(1, 1, 2, 3));
    Ref ly = arg(c.f, "y", DT_I32, SHAPE(1, 1, 2));
    Attr a = {0};
    output(c.f, node(c.f, OP_cross_entropy, DT_F32, shape_scalar(), 2, (Ref[]){lx, ly}, &a));
    ITensor a3[2] = {TENSOR(DT_F32, DIMS(1, 2, 3), VALS(1, 2, 3, 0, 0, 0)),
                     TENSOR(DT_I32, DIMS(1, 2), VALS(0, 1))};
    l = RUN(c.f, false, 1, a3);
    CHECK_NEAR(l.data[0], f32(((lse - 1) + log(3)) / 2), 1e-7);
    itensor_free(&l);
    itensor_free(&a3[0]);
    itensor_free(&a3[1]);
}

static void test_cross_entropy_grad(void) {
    double x[3 * 4], y[3] = {1, 3, -1}, w[4] = {0.5, 2, 1.5, 1};
    for (int i = 0; i < 12; i++) x[i] = cos(i * 2.3) * 2;
    for (int variant = 0; variant < 3; variant++) {
        bool weighted = variant > 0;
        double s = variant == 1 ? 0 : 0.15, dloss = 2.5;
        Func *f = cross_entropy_func(4, s, weighted, dloss);
        ITensor args[3] = {TENSOR(DT_F64, DIMS(3, 4), x), TENSOR(DT_I32, DIMS(3), y),
                           TENSOR(DT_F64, DIMS(4), w)};
        ITensor g = RUN_OUT(f, true, 3, args, 1);
        EXPECT_DIMS(g, 3, 4);
        const double h = 1e-6;
        for (int i = 0; i < 12 && g.data; i++) {
            args[0].data[i] = x[i] + h;
            ITensor lp = RUN(f, true, 3, args);
            args[0].data[i] = x[i] - h;
            ITensor lm = RUN(f, true, 3, args);
            args[0].data[i] = x[i];
            CHECK_NEAR(g.data[i], dloss * (lp.data[0] - lm.data[0]) / (2 * h), 1e-7);
            itensor_free(&lp);
            itensor_free(&lm);
        }
        for (int j = 8; j < 12 && g.data; j++) CHECK(g.data[j] == 0); /* ignored row */
        itensor_free(&g);
        for (int i = 0; i < 3; i++) itensor_free(&args[i]);
    }
}

/* ---------------------------------------------------------------- activations */

typedef struct ActCase {
    Op op;
    Attr attr;
    const char *name;
} ActCase;

/* Independent statements of each activation (PyTorch's definitions). */
static double act_reference(const ActCase *a, double x) {
    switch (a->op) {
    case OP_relu: return x > 0 ? x : 0;
    case OP_leaky_relu: return x >= 0 ? x : a->attr.f[0] * x;
    case OP_elu: return x >= 0 ? x : a->attr.f[0] * (exp(x) - 1);
    case OP_selu:
        return 1.0507009873554804934193349852946 *
               (x >= 0 ? x : 1.6732632423543772848170429916717 * (exp(x) - 1));
    case OP_gelu:
        if (a->attr.flag) return 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * pow(x, 3))));
        return 0.5 * x * erfc(-x / sqrt(2));
    case OP_sigmoid: return 1 / (1 + exp(-x));
    case OP_tanh: return (exp(2 * x) - 1) / (exp(2 * x) + 1);
    case OP_softplus: {
        double beta = a->attr.f[0] ? a->attr.f[0] : 1, threshold = a->attr.f[1] ? a->attr.f[1] : 20;
        return beta * x > threshold ? x : log(1 + exp(beta * x)) / beta;
    }
    case OP_silu: return x / (1 + exp(-x));
    case OP_mish: return x * tanh(log(1 + exp(x)));
    case OP_hard_sigmoid: return x <= -3 ? 0 : x >= 3 ? 1 : x / 6 + 0.5;
    case OP_hard_swish: return x <= -3 ? 0 : x >= 3 ? x : x * (x + 3) / 6;
    default: return NAN;
    }
}

static const ActCase act_cases[] = {
    {OP_relu, {0}, "relu"},
    {OP_leaky_relu, {.f = {0.01}}, "leaky_relu 0.01"},
    {OP_leaky_relu, {.f = {0.2}}, "leaky_relu 0.2"},
    {OP_leaky_relu, {0}, "leaky_relu slope 0 (as written)"},
    {OP_elu, {.f = {1}}, "elu 1"},
    {OP_elu, {.f = {0.5}}, "elu 0.5"},
    {OP_selu, {0}, "selu"},
    {OP_gelu, {0}, "gelu"},
    {OP_gelu, {.flag = 1}, "gelu tanh"},
    {OP_sigmoid, {0}, "sigmoid"},
    {OP_tanh, {0}, "tanh"},
    {OP_softplus, {.f = {1, 20}}, "softplus"},
    {OP_softplus, {0}, "softplus zero attrs (defaults)"},
    {OP_softplus, {.f = {2, 5}}, "softplus beta 2 threshold 5"},
    {OP_silu, {0}, "silu"},
    {OP_mish, {0}, "mish"},
    {OP_hard_sigmoid, {0}, "hard_sigmoid"},
    {OP_hard_swish, {0}, "hard_swish"},
};

/* Points away from every kink (0, ±3, the softplus threshold at x = 2.5 for beta 2). */
static const double act_points[] = {-6,  -3.5, -2.2, -1,  -0.4, -0.05, 0.05,
                                    0.7, 1.3,  2.4,  2.9, 3.4,  7};
enum { NPOINTS = sizeof act_points / sizeof act_points[0] };

/* Function: x[K] -> act(x), act_grad(x, dy) */
static Func *act_func(const ActCase *a) {
    Ctx c = context();
    Ref x = arg(c.f, "x", DT_F64, SHAPE(0, NPOINTS));
    Ref dy = arg(c.f, "dy", DT_F64, SHAPE(0, NPOINTS));
    output(c.f, ir_unary_attr(c.f, a->op, x, &a->attr));
    Attr ga = a->attr;
    ga.fwd_op = a->op;
    output(c.f, node(c.f, OP_act_grad, DT_F64, SHAPE(0, NPOINTS), 2, (Ref[]){x, dy}, &ga));
    return c.f;
}

static void test_activations(void) {
    for (int k = 0; k < COUNT_OF(act_cases); k++) {
        const ActCase *a = &act_cases[k];
        Func *f = act_func(a);
        ITensor args[2] = {TENSOR(DT_F64, DIMS(NPOINTS), act_points),
                           TENSOR(DT_F64, DIMS(NPOINTS), NULL)};
        for (int i = 0; i < NPOINTS; i++)
            args[1].data[i] = 1 + 0.1 * i; /* dy scales the derivative */
        ITensor y = RUN(f, true, 1, args), g = RUN_OUT(f, true, 1, args, 1);
        const double h = 1e-6;
        ITensor xp = TENSOR(DT_F64, DIMS(NPOINTS), act_points),
                xm = TENSOR(DT_F64, DIMS(NPOINTS), act_points);
        for (int i = 0; i < NPOINTS; i++) xp.data[i] += h, xm.data[i] -= h;
        ITensor ap[2] = {xp, args[1]}, am[2] = {xm, args[1]};
        ITensor yp = RUN(f, true, 1, ap), ym = RUN(f, true, 1, am);
        for (int i = 0; i < NPOINTS && y.data && g.data && yp.data && ym.data; i++) {
            double x = act_points[i], want = act_reference(a, x);
            double fd = args[1].data[i] * (yp.data[i] - ym.data[i]) / (2 * h);
            if (!(fabs(y.data[i] - want) <= 1e-13 * (1 + fabs(want))) ||
                !(fabs(g.data[i] - fd) <= 1e-7 * (1 + fabs(fd)))) {
                fprintf(
                    stderr,
                    "%s:%d: %s at x = %g: f = %.15g (expected %.15g), f' dy = %.12g (fd %.12g)\n",
                    __FILE__, __LINE__, a->name, x, y.data[i], want, g.data[i], fd);
                check_failures++;
            }
        }
        itensor_free(&y);
        itensor_free(&g);
        itensor_free(&yp);
        itensor_free(&ym);
        itensor_free(&xp);
        itensor_free(&xm);
        itensor_free(&args[0]);
        itensor_free(&args[1]);
    }
}

/* The derivative at the kinks follows PyTorch's backward kernels. */
static void test_activation_kinks(void) {
    struct {
        Op op;
        Attr attr;
        double x, want;
    } cases[] = {
        {OP_relu, {0}, 0, 0},
        {OP_leaky_relu, {.f = {0.2}}, 0, 0.2},
        {OP_elu, {.f = {0.5}}, 0, 0.5},
        {OP_hard_sigmoid, {0}, -3, 0},
        {OP_hard_sigmoid, {0}, 3, 0},
        {OP_hard_sigmoid, {0}, 2.99, 1.0 / 6},
        {OP_hard_sigmoid, {0}, -2.99, 1.0 / 6},
        {OP_hard_swish, {0}, -3.01, 0},
        {OP_hard_swish, {0}, -3, -0.5},  /* PyTorch: x/3 + 0.5 on [-3, 3] */
        {OP_hard_swish, {0}, 3, 1.5},
        {OP_hard_swish, {0}, 3.01, 1},
        {OP_hard_swish, {0}, 0, 0.5},
        {OP_softplus, {.f = {2, 5}}, 2.6, 1}, /* above the threshold: identity */
    };
    for (int k = 0; k < COUNT_OF(cases); k++) {
        Ctx c = context();
        Ref x = arg(c.f, "x", DT_F32, shape_scalar());
        Attr ga = cases[k].attr;
        ga.fwd_op = cases[k].op;
        output(c.f, node(c.f, OP_act_grad, DT_F32, shape_scalar(), 2,
                         (Ref[]){x, ir_const(c.f, DT_F32, shape_scalar(), 1)}, &ga));
        ITensor in = TENSOR(DT_F32, DIMS(1), VALS(cases[k].x));
        in.rank = 0;
        ITensor g = RUN(c.f, false, 1, &in);
        if (g.data && g.data[0] != f32(cases[k].want)) {
            fprintf(stderr, "%s:%d: %s'(%g) = %.9g, expected %.9g\n", __FILE__, __LINE__,
                    op_info[cases[k].op].name, cases[k].x, g.data[0], cases[k].want);
            check_failures++;
        }
        itensor_free(&g);
        itensor_free(&in);
    }
}

/* ---------------------------------------------------------------- module tensors */

static void test_store_and_state(void) {
    Module *m = module_new(&arena, "state");
    int w = module_add_tensor(m, "w", TK_PARAM, DT_F32, SHAPE(0, 2, 2),
                              init_spec(INIT_ZEROS, 0, 0, 0), NOLOC);
    int step = module_add_tensor(m, "step", TK_STEP, DT_I32, shape_scalar(),
                                 init_spec(INIT_ZEROS, 0, 0, 0), NOLOC);
    module_layout(m);
    CHECK(m->tensors[step].offset == 64);
    Func *f = module_add_func(m, "f");
    Ref t0 = ir_tensor(f, w);
    ir_store(f, w, ir_binary(f, OP_mul, t0, ir_scalar(f, 2)));
    Ref t1 = ir_tensor(f, w); /* sees the store */
    Ref s = ir_tensor(f, step);
    ir_store(f, step, ir_binary(f, OP_add, s, ir_const(f, DT_I32, shape_scalar(), 1)));
    func_add_out(f, "before", OUT_EXTRA, t0);
    func_add_out(f, "after", OUT_EXTRA, t1);

    unsigned char *state = calloc(1, (size_t)m->state_bytes);
    float wv[4] = {1.5f, -2, 0.25f, 3};
    int32_t sv = 41;
    memcpy(state + m->tensors[w].offset, wv, sizeof wv);
    memcpy(state + m->tensors[step].offset, &sv, sizeof sv);

    Interp in;
    interp_init(&in, m, false);
    CHECK(in.ntensors == 2);
    interp_load_state(&in, state);
    ITensor outs[2];
    char err[256];
    CHECK(interp_run(&in, f, 1, NULL, outs, err, sizeof err) == 0);
    EXPECT_VALUES(outs[0], 0, 1.5, -2, 0.25, 3);
    EXPECT_VALUES(outs[1], 0, 3, -4, 0.5, 6);
    itensor_free(&outs[0]);
    itensor_free(&outs[1]);
    CHECK(interp_run(&in, f, 1, NULL, outs, err, sizeof err) == 0); /* state persists across runs */
    EXPECT_VALUES(outs[1], 0, 6, -8, 1, 12);
    itensor_free(&outs[0]);
    itensor_free(&outs[1]);
    interp_save_state(&in, state);
    float wout[4];
    int32_t sout;
    memcpy(wout, state + m->tensors[w].offset, sizeof wout);
    memcpy(&sout, state + m->tensors[step].offset, sizeof sout);
    CHECK(wout[0] == 6 && wout[1] == -8 && wout[2] == 1 && wout[3] == 12);
    CHECK(sout == 43);

    /* an error after a store rolls the module tensors back */
    Func *bad = module_add_func(m, "bad");
    ir_store(bad, w, ir_const(bad, DT_F32, SHAPE(0, 2, 2), 0));
    Ref st = ir_tensor(bad, step);
    ir_store(bad, step, ir_binary(bad, OP_add, st, st));
    Ref wr = ir_tensor(bad, w);
    Attr none = {0};
    func_add_out(bad, "x", OUT_EXTRA,
                 node(bad, OP_matmul, DT_F32, SHAPE(0, 2, 2), 2,
                      (Ref[]){wr, ir_const(bad, DT_F32, SHAPE(0, 3, 2), 1)}, &none));
    EXPECT_ERROR(&in, bad, 1, NULL, NNRT_EARG, "inner dimensions 2 and 3 differ");
    memset(state, 0, (size_t)m->state_bytes);
    interp_save_state(&in, state);
    memcpy(wout, state + m->tensors[w].offset, sizeof wout);
    memcpy(&sout, state + m->tensors[step].offset, sizeof sout);
    CHECK(wout[0] == 6 && wout[3] == 12 && sout == 43);

    /* tensors added after interp_init (optimizer slots) appear zeroed */
    int slot = module_add_tensor(m, "w.momentum", TK_SLOT, DT_F32, SHAPE(0, 3),
                                 init_spec(INIT_ZEROS, 0, 0, 0), NOLOC);
    Func *g = module_add_func(m, "g");
    func_add_out(g, "slot", OUT_EXTRA, ir_tensor(g, slot));
    ITensor y = RUN(g, false, 1, NULL); /* a fresh interpreter: zeros */
    EXPECT_VALUES(y, 0, 0, 0, 0);
    itensor_free(&y);
    CHECK(interp_run(&in, g, 1, NULL, outs, err, sizeof err) == 0);
    CHECK(in.ntensors == 3);
    EXPECT_VALUES(outs[0], 0, 0, 0, 0);
    itensor_free(&outs[0]);
    interp_free(&in);
    free(state);
}

/* ---------------------------------------------------------------- init_fill and rand_uniform */

static void moments(const ITensor *t, double *mean, double *var, double *lo, double *hi) {
    double s = 0, s2 = 0;
    *lo = INFINITY, *hi = -INFINITY;
    for (int64_t i = 0; i < t->numel; i++) {
        s += t->data[i];
        s2 += t->data[i] * t->data[i];
        *lo = fmin(*lo, t->data[i]);
        *hi = fmax(*hi, t->data[i]);
    }
    *mean = s / (double)t->numel;
    *var = s2 / (double)t->numel - *mean * *mean;
}

static void test_init_fill(void) {
    Module *m = module_new(&arena, "init");
    struct {
        const char *name;
        Shape shape;
        InitSpec init;
        DType dt;
    } specs[] = {
        {"zeros", SHAPE(0, 3, 4), init_spec(INIT_ZEROS, 0, 0, 0), DT_F32},
        {"ones", SHAPE(0, 5), init_spec(INIT_ONES, 0, 0, 0), DT_F32},
        {"constant", SHAPE(0, 2, 3), init_spec(INIT_CONSTANT, 0.5, 0, 0), DT_F32},
        {"uniform", SHAPE(0, 200, 100), init_spec(INIT_UNIFORM, -2, 3, 0), DT_F32},
        {"normal", SHAPE(0, 200, 100), init_spec(INIT_NORMAL, 1, 2, 0), DT_F32},
        {"xavier", SHAPE(0, 200, 300), init_spec(INIT_XAVIER_UNIFORM, 1, 0, 0), DT_F32},
        {"he", SHAPE(0, 256, 512), init_spec(INIT_HE_NORMAL, 0, 0, 0), DT_F32},
        {"weight", SHAPE(0, 64, 100), init_spec(INIT_TORCH_DEFAULT, 0, 0, 0), DT_F32},
        {"bias", SHAPE(0, 5000), init_spec(INIT_TORCH_DEFAULT, 0, 0, 100), DT_F32},
        {"step", shape_scalar(), init_spec(INIT_ZEROS, 0, 0, 0), DT_I32},
        {"uniform2", SHAPE(0, 200, 100), init_spec(INIT_UNIFORM, -2, 3, 0), DT_F32},
        {"orthogonal", SHAPE(0, 4, 6), init_spec(INIT_ORTHOGONAL, 2, 0, 0), DT_F32},
    };
    for (int i = 0; i < COUNT_OF(specs); i++)
        module_add_tensor(m, specs[i].name, TK_PARAM, specs[i].dt, specs[i].shape, specs[i].init,
                          NOLOC);
    module_build_init(m);
    module_layout(m);
    Interp in, again, other;
    interp_init(&in, m, false);
    interp_init(&again, m, false);
    interp_init(&other, m, false);
    in.seed = again.seed = 42;
    other.seed = 43;
    char err[256];
    CHECK(interp_run_init(&in, err, sizeof err) == 0);
    CHECK(interp_run_init(&again, err, sizeof err) == 0);
    CHECK(interp_run_init(&other, err, sizeof err) == 0);
    double mean, var, lo, hi;
    const ITensor *t = in.tensors;
    for (int i = 0; i < 12; i++) CHECK(t[0].data[i] == 0);
    for (int i = 0; i < 5; i++) CHECK(t[1].data[i] == 1);
    for (int i = 0; i < 6; i++) CHECK(t[2].data[i] == 0.5);
    moments(&t[3], &mean, &var, &lo, &hi); /* U(-2, 3): mean 0.5, var 25/12 */
    CHECK_NEAR(mean, 0.5, 0.03);
    CHECK_NEAR(var, 25.0 / 12, 0.03);
    CHECK(lo >= -2 && hi < 3);
    moments(&t[4], &mean, &var, &lo, &hi); /* N(1, 2) */
    CHECK_NEAR(mean, 1, 0.05);
    CHECK_NEAR(sqrt(var), 2, 0.03);
    double bound = sqrt(6.0 / (300 + 200));
    moments(&t[5], &mean, &var, &lo, &hi);
    CHECK(lo >= -bound && hi <= bound);
    CHECK_NEAR(var, bound * bound / 3, 0.03);
    moments(&t[6], &mean, &var, &lo, &hi); /* kaiming normal, fan_in 512, gain sqrt 2 */
    CHECK_NEAR(sqrt(var), sqrt(2.0 / 512), 0.02);
    CHECK(fabs(mean) < 0.002);
    moments(&t[7], &mean, &var, &lo, &hi); /* U(-1/sqrt(100), 1/sqrt(100)) */
    CHECK(lo >= -0.1 && hi <= 0.1);
    CHECK_NEAR(var, 0.01 / 3, 0.05);
    moments(&t[8], &mean, &var, &lo, &hi); /* a bias takes its weight's fan_in */
    CHECK(lo >= -0.1 && hi <= 0.1);
    CHECK_NEAR(var, 0.01 / 3, 0.05);
    CHECK(t[9].dtype == DT_I32 && t[9].data[0] == 0);
    /* f32 values; deterministic per seed; another seed or another tensor id differs */
    bool same = true, differs_seed = false, differs_stream = false;
    for (int64_t i = 0; i < t[3].numel; i++) {
        CHECK(t[3].data[i] == f32(t[3].data[i]));
        same = same && t[3].data[i] == again.tensors[3].data[i];
        differs_seed = differs_seed || t[3].data[i] != other.tensors[3].data[i];
        differs_stream = differs_stream || t[3].data[i] != t[10].data[i];
    }
    CHECK(same && differs_seed && differs_stream);
    /* orthogonal with gain 2 and rows <= cols: W W^T = 4 I */
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) {
            double dot = 0;
            for (int k = 0; k < 6; k++) dot += t[11].data[i * 6 + k] * t[11].data[j * 6 + k];
            CHECK_NEAR(dot, i == j ? 4 : 0, 1e-5);
        }
    /* exactly the runtime's definition */
    float *direct = malloc(20000 * sizeof *direct);
    CHECK(nnrt_init_tensor(direct, 2, DIMS(200, 100), INIT_UNIFORM, -2, 3, 0, 42, 3) == 0);
    for (int i = 0; i < 20000; i++) CHECK(t[3].data[i] == direct[i]);
    free(direct);
    interp_free(&in);
    interp_free(&again);
    interp_free(&other);
}

static void test_rand_uniform(void) {
    Module *m = module_new(&arena, "rng");
    int step = module_add_tensor(m, "step", TK_STEP, DT_I32, shape_scalar(),
                                 init_spec(INIT_ZEROS, 0, 0, 0), NOLOC);
    module_layout(m);
    Func *f = module_add_func(m, "f");
    func_add_arg(f, "x", ARG_INPUT, DT_F32, SHAPE(1, 1, 8), NOLOC);
    Attr a = {.index = 3, .tensor = step};
    output(f, node(f, OP_rand_uniform, DT_F32, SHAPE(1, 1, 8), 0, NULL, &a));
    Ref s = ir_tensor(f, step);
    ir_store(f, step, ir_binary(f, OP_add, s, ir_const(f, DT_I32, shape_scalar(), 1)));

    Interp in;
    interp_init(&in, m, false);
    in.seed = 1234;
    in.tensors[step].data[0] = 5;
    ITensor x = TENSOR(DT_F32, DIMS(3, 8), NULL), first, second;
    char err[256];
    CHECK(interp_run(&in, f, 3, &x, &first, err, sizeof err) == 0);
    for (int i = 0; i < 24; i++) /* element i = u(seed, stream, step * numel + i) */
        CHECK(first.data[i] == nnrt_rng_uniform(1234, 3, 5 * 24 + (uint64_t)i));
    CHECK(in.tensors[step].data[0] == 6);
    CHECK(interp_run(&in, f, 3, &x, &second, err, sizeof err) == 0); /* next step: new numbers */
    bool differs = false;
    for (int i = 0; i < 24; i++) {
        CHECK(second.data[i] == nnrt_rng_uniform(1234, 3, 6 * 24 + (uint64_t)i));
        differs = differs || second.data[i] != first.data[i];
    }
    CHECK(differs);
    itensor_free(&second);
    in.tensors[step].data[0] = 5; /* same step again: the same numbers (f64 mode too) */
    in.f64 = true;
    CHECK(interp_run(&in, f, 3, &x, &second, err, sizeof err) == 0);
    for (int i = 0; i < 24; i++) CHECK(second.data[i] == first.data[i]);
    itensor_free(&first);
    itensor_free(&second);
    itensor_free(&x);
    /* statistics over a large draw */
    x = TENSOR(DT_F32, DIMS(4000, 8), NULL);
    CHECK(interp_run(&in, f, 4000, &x, &first, err, sizeof err) == 0);
    double mean, var, lo, hi;
    moments(&first, &mean, &var, &lo, &hi);
    CHECK(lo >= 0 && hi < 1);
    CHECK_NEAR(mean, 0.5, 0.01);
    CHECK_NEAR(var, 1.0 / 12, 0.02);
    itensor_free(&first);
    itensor_free(&x);
    interp_free(&in);
}

static void test_batch_size_const(void) {
    Ctx c = context();
    func_add_arg(c.f, "x", ARG_INPUT, DT_F32, SHAPE(1, 1), NOLOC);
    output(c.f, node(c.f, OP_batch_size, DT_F32, shape_scalar(), 0, NULL, NULL));
    output(c.f, node(c.f, OP_batch_size, DT_I32, shape_scalar(), 0, NULL, NULL));
    static const double data[6] = {1, 2, 3, 4, 5, 6.5};
    Attr a = {.data = data};
    output(c.f, node(c.f, OP_const, DT_F32, SHAPE(0, 2, 3), 0, NULL, &a));
    output(c.f, ir_const(c.f, DT_F32, SHAPE(1, 1, 2), 0.1)); /* splat with a batch axis */
    for (int64_t n = 1; n <= 3; n += 2) {
        ITensor x = TENSOR(DT_F32, DIMS(n), NULL);
        ITensor b = RUN(c.f, false, n, &x), bi = RUN_OUT(c.f, false, n, &x, 1);
        CHECK(b.data[0] == (double)n && bi.data[0] == (double)n && bi.dtype == DT_I32);
        ITensor k = RUN_OUT(c.f, false, n, &x, 2), s = RUN_OUT(c.f, false, n, &x, 3);
        EXPECT_ARRAY(k, 0, data, 6);
        EXPECT_DIMS(s, n, 2);
        for (int i = 0; i < 2 * n && s.data; i++) CHECK(s.data[i] == f32(0.1));
        itensor_free(&b);
        itensor_free(&bi);
        itensor_free(&k);
        itensor_free(&s);
        itensor_free(&x);
    }
}

/* ---------------------------------------------------------------- end to end */

/* A logistic-regression training step built by hand: the gradient kernels and matmul
 * transposes together must give the finite-difference gradient of the loss. */
static void test_logreg_step(void) {
    Module *m = module_new(&arena, "logreg");
    int w = module_add_tensor(m, "W", TK_PARAM, DT_F64, SHAPE(0, 4, 3),
                              init_spec(INIT_UNIFORM, -1, 1, 0), NOLOC);
    int b = module_add_tensor(m, "b", TK_PARAM, DT_F64, SHAPE(0, 3),
                              init_spec(INIT_UNIFORM, -1, 1, 0), NOLOC);
    module_build_init(m);
    module_layout(m);
    Func *f = module_add_func(m, "train_step");
    Ref x = arg(f, "x", DT_F64, SHAPE(1, 1, 4));
    Ref y = ir_input(f, func_add_arg(f, "y", ARG_LABEL, DT_I32, SHAPE(1, 1), NOLOC));
    Ref W = ir_tensor(f, w), B = ir_tensor(f, b);
    Ref logits = ir_binary(f, OP_add, ir_matmul(f, x, W, false, false), B);
    Attr ce = {.f = {0.1}};
    Ref loss = node(f, OP_cross_entropy, DT_F64, shape_scalar(), 2, (Ref[]){logits, y}, &ce);
    Ref one = ir_const(f, DT_F64, shape_scalar(), 1);
    Ref dlogits = node(f, OP_cross_entropy_grad, DT_F64, ir_at(f, logits)->shape, 3,
                       (Ref[]){logits, y, one}, &ce);
    Ref dW = ir_matmul(f, x, dlogits, true, false);
    Ref db = ir_reduce(f, OP_sum, dlogits, 1, false);
    func_add_out(f, "loss", OUT_LOSS, loss);
    func_add_out(f, "W", OUT_GRAD, dW);
    func_add_out(f, "b", OUT_GRAD, db);
    Ref lr = ir_const(f, DT_F64, shape_scalar(), 0.1);
    ir_store(f, w, ir_binary(f, OP_sub, W, ir_binary(f, OP_mul, lr, dW)));
    ir_store(f, b, ir_binary(f, OP_sub, B, ir_binary(f, OP_mul, lr, db)));
    CHECK(ir_verify(f, stderr) == 0);

    Interp in;
    interp_init(&in, m, true);
    in.seed = 5;
    char err[256];
    CHECK(interp_run_init(&in, err, sizeof err) == 0);
    ITensor args[2] = {TENSOR(DT_F64, DIMS(5, 4), NULL),
                       TENSOR(DT_I32, DIMS(5), VALS(0, 2, 1, 1, 0))};
    for (int i = 0; i < 20; i++) args[0].data[i] = sin(i * 0.9);
    void *state = calloc(1, (size_t)m->state_bytes);
    interp_save_state(&in, state);
    ITensor outs[3];
    CHECK(interp_run(&in, f, 5, args, outs, err, sizeof err) == 0);
    double first_loss = outs[0].data[0];
    /* finite differences of the loss in W and b, from the saved state */
    const double h = 1e-6;
    for (int t = 0; t < 2; t++) {
        int id = t ? b : w;
        const ITensor *grad = &outs[t + 1];
        for (int64_t i = 0; i < grad->numel; i++) {
            double loss_at[2];
            for (int side = 0; side < 2; side++) {
                interp_load_state(&in, state);
                in.tensors[id].data[i] += side ? -h : h;
                ITensor o[3];
                CHECK(interp_run(&in, f, 5, args, o, err, sizeof err) == 0);
                loss_at[side] = o[0].data[0];
                for (int k = 0; k < 3; k++) itensor_free(&o[k]);
            }
            CHECK_NEAR(grad->data[i], (loss_at[0] - loss_at[1]) / (2 * h), 1e-7);
        }
    }
    for (int k = 0; k < 3; k++) itensor_free(&outs[k]);
    /* a few steps of gradient descent lower the loss */
    interp_load_state(&in, state);
    double last = first_loss;
    for (int s = 0; s < 5; s++) {
        CHECK(interp_run(&in, f, 5, args, outs, err, sizeof err) == 0);
        CHECK(outs[0].data[0] <= last + 1e-12);
        last = outs[0].data[0];
        for (int k = 0; k < 3; k++) itensor_free(&outs[k]);
    }
    CHECK(last < first_loss);
    free(state);
    itensor_free(&args[0]);
    itensor_free(&args[1]);
    interp_free(&in);
}

/* ---------------------------------------------------------------- errors */

static void test_errors(void) {
    Ctx c = context();
    Ref x = arg(c.f, "x", DT_F32, SHAPE(1, 1, 4));
    output(c.f, ir_unary(c.f, OP_relu, x));
    Interp in;
    interp_init(&in, c.m, false);
    ITensor good = TENSOR(DT_F32, DIMS(2, 4), NULL);
    ITensor wrong_type = TENSOR(DT_I32, DIMS(2, 4), NULL);
    ITensor wrong_dims = TENSOR(DT_F32, DIMS(2, 5), NULL);
    ITensor no_data = good;
    no_data.data = NULL;
    EXPECT_ERROR(&in, c.f, 0, &good, NNRT_EBATCH, "batch 0");
    EXPECT_ERROR(&in, c.f, 2, &wrong_type, NNRT_EARG, "argument 0 'x' is i32, expected f32");
    EXPECT_ERROR(&in, c.f, 2, &wrong_dims, NNRT_EARG,
                 "argument 0 'x' has dims [2, 5], expected [2, 4]");
    EXPECT_ERROR(&in, c.f, 3, &good, NNRT_EARG, "expected [3, 4] at batch 3");
    EXPECT_ERROR(&in, c.f, 2, &no_data, NNRT_ENULL, "'x' has no data");
    EXPECT_ERROR(&in, c.f, 2, NULL, NNRT_ENULL, "NULL");
    interp_free(&in);

    /* malformed IR, each in its own function of one module */
    Module *m = module_new(&arena, "bad");
    Attr none = {0};
    interp_init(&in, m, false);
    Func *f;

    f = module_add_func(m, "matmul");
    Ref a = ir_const(f, DT_F32, SHAPE(0, 2, 3), 1), b = ir_const(f, DT_F32, SHAPE(0, 4, 2), 1);
    output(f, node(f, OP_matmul, DT_F32, SHAPE(0, 2, 2), 2, (Ref[]){a, b}, &none));
    EXPECT_ERROR(&in, f, 1, NULL, NNRT_EARG,
                 "matmul: %2 = matmul: inner dimensions 3 and 4 differ");

    f = module_add_func(m, "forward_ref");
    a = ir_const(f, DT_F32, SHAPE(0, 2), 1);
    Ref r = ir_unary(f, OP_neg, a);
    f->nodes[r].in[0] = r; /* refers to itself */
    output(f, r);
    EXPECT_ERROR(&in, f, 1, NULL, NNRT_EARG, "not an earlier node");

    f = module_add_func(m, "bad_op");
    r = ir_const(f, DT_F32, SHAPE(0, 2), 1);
    f->nodes[r].op = (Op)(OP_COUNT + 5);
    output(f, r);
    EXPECT_ERROR(&in, f, 1, NULL, NNRT_EARG, "bad op number");

    f = module_add_func(m, "arity");
    a = ir_const(f, DT_F32, SHAPE(0, 2), 1);
    output(f, node(f, OP_add, DT_F32, SHAPE(0, 2), 1, &a, &none));
    EXPECT_ERROR(&in, f, 1, NULL, NNRT_EARG, "has 1 inputs, expected 2");

    f = module_add_func(m, "tensor_id");
    Attr t9 = {.tensor = 9};
    output(f, node(f, OP_tensor, DT_F32, SHAPE(0, 2), 0, NULL, &t9));
    EXPECT_ERROR(&in, f, 1, NULL, NNRT_EARG, "module tensor 9 out of range");

    f = module_add_func(m, "slice");
    a = ir_const(f, DT_F32, SHAPE(0, 5), 1);
    output(f, ir_slice(f, a, DIMS(1), DIMS(2), SHAPE(0, 3))); /* reads index 5 */
    EXPECT_ERROR(&in, f, 1, NULL, NNRT_EARG, "reads outside [0, 5)");

    f = module_add_func(m, "gather_f32");
    a = ir_const(f, DT_F32, SHAPE(0, 4, 2), 1);
    b = ir_const(f, DT_F32, SHAPE(0, 3), 1);
    output(f, node(f, OP_gather, DT_F32, SHAPE(0, 3, 2), 2, (Ref[]){a, b}, &none));
    EXPECT_ERROR(&in, f, 1, NULL, NNRT_EARG, "input 1 is f32, expected i32");

    f = module_add_func(m, "act_grad");
    a = ir_const(f, DT_F32, SHAPE(0, 2), 1);
    Attr fwd = {.fwd_op = OP_add};
    output(f, node(f, OP_act_grad, DT_F32, SHAPE(0, 2), 2, (Ref[]){a, a}, &fwd));
    EXPECT_ERROR(&in, f, 1, NULL, NNRT_EARG, "is not an activation");

    f = module_add_func(m, "pow_i32");
    a = ir_const(f, DT_I32, SHAPE(0, 2), 2);
    output(f, ir_binary(f, OP_pow, a, a));
    EXPECT_ERROR(&in, f, 1, NULL, NNRT_EARG, "pow needs float inputs");

    f = module_add_func(m, "exp_i32");
    a = ir_const(f, DT_I32, SHAPE(0, 2), 2);
    output(f, ir_unary(f, OP_exp, a));
    EXPECT_ERROR(&in, f, 1, NULL, NNRT_EARG, "needs a float type, not i32");

    f = module_add_func(m, "elementwise_dims");
    a = ir_const(f, DT_F32, SHAPE(0, 2), 1);
    b = ir_const(f, DT_F32, SHAPE(0, 3), 1);
    output(f, node(f, OP_add, DT_F32, SHAPE(0, 3), 2, (Ref[]){a, b}, &none));
    EXPECT_ERROR(&in, f, 1, NULL, NNRT_EARG, "input 0 has dims [2], expected [3]");

    f = module_add_func(m, "reshape");
    a = ir_const(f, DT_F32, SHAPE(0, 2, 3), 1);
    output(f, node(f, OP_reshape, DT_F32, SHAPE(0, 5), 1, &a, &none));
    EXPECT_ERROR(&in, f, 1, NULL, NNRT_EARG, "element count changes from 6 to 5");

    f = module_add_func(m, "transpose");
    a = ir_const(f, DT_F32, SHAPE(0, 2, 3), 1);
    Attr perm = {.perm = {0, 0}};
    output(f, node(f, OP_transpose, DT_F32, SHAPE(0, 2, 2), 1, &a, &perm));
    EXPECT_ERROR(&in, f, 1, NULL, NNRT_EARG, "perm is not a permutation");

    f = module_add_func(m, "shape");
    Shape huge = SHAPE(0, 1 << 30, 1 << 30, 1 << 30);
    output(f, ir_const(f, DT_F32, huge, 1));
    EXPECT_ERROR(&in, f, 1, NULL, NNRT_EARG, "malformed shape");

    f = module_add_func(m, "output_ref");
    ir_const(f, DT_F32, SHAPE(0, 2), 1);
    func_add_out(f, "o", OUT_OUTPUT, 7);
    EXPECT_ERROR(&in, f, 1, NULL, NNRT_EARG, "output 'o' refers to %7");

    f = module_add_func(m, "cross_entropy_labels");
    a = ir_const(f, DT_F32, SHAPE(0, 2, 3), 1);
    b = ir_const(f, DT_I32, SHAPE(0, 3), 1);
    output(f, node(f, OP_cross_entropy, DT_F32, shape_scalar(), 2, (Ref[]){a, b}, &none));
    EXPECT_ERROR(&in, f, 1, NULL, NNRT_EARG, "labels have dims [3], expected [2]");

    Ctx other = context();
    EXPECT_ERROR(&in, other.f, 1, NULL, NNRT_EARG, "another module");
    interp_free(&in);
    itensor_free(&good);
    itensor_free(&wrong_type);
    itensor_free(&wrong_dims);
}

int main(void) {
#define TEST(name) (tests_run++, name())
    TEST(test_binary_broadcast);
    TEST(test_nan_propagation);
    TEST(test_compare_select);
    TEST(test_int_ops);
    TEST(test_unary);
    TEST(test_rounding_modes);
    TEST(test_reductions);
    TEST(test_argmax);
    TEST(test_matmul);
    TEST(test_matmul_large);
    TEST(test_reshape_transpose);
    TEST(test_broadcast_op);
    TEST(test_slice);
    TEST(test_concat);
    TEST(test_gather_scatter);
    TEST(test_softmax);
    TEST(test_softmax_grads);
    TEST(test_cross_entropy_values);
    TEST(test_cross_entropy_grad);
    TEST(test_activations);
    TEST(test_activation_kinks);
    TEST(test_store_and_state);
    TEST(test_init_fill);
    TEST(test_rand_uniform);
    TEST(test_batch_size_const);
    TEST(test_logreg_step);
    TEST(test_errors);
    arena_free(&arena);
    fprintf(stderr, "test_interp: %d tests\n", tests_run);
    return check_done();
}
