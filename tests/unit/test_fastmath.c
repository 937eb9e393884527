/* test_fastmath.c — accuracy of the f32 transcendentals llvm.c emits inline (exp, tanh,
 * sigmoid, and the softmax / cross-entropy rows built on them), against double-precision libm.
 *
 * The differential tests in test_llvm.c compare with the interpreter within 1e-5 relative to
 * max(1, |value|), which says nothing about e^-50. Here every input of a dense sweep (and the
 * special values) must be within a few units in the last place of the correctly rounded f32
 * result, relative to the value itself, down to the subnormals. */
#include "check.h"
#include "nnc.h"

#include <float.h>
#include <stdlib.h>
#include <string.h>

/* |got - want| in units of the f32 spacing at want (the subnormal spacing below FLT_MIN) */
static double ulps(float got, double want) {
    if (isnan(want)) return isnan(got) ? 0 : INFINITY;
    if (isinf((float)want) || isinf(got)) return got == (float)want ? 0 : INFINITY; /* overflow */
    double a = fabs(want);
    double spacing = a < FLT_MIN ? ldexp(1, -149) : ldexp(1, ilogb(a) - 23);
    return fabs((double)got - want) / spacing;
}

typedef struct Sweep {
    const char *name;
    Op op;
    double (*ref)(double);
    double lo, hi;
    double max_ulps;
} Sweep;

static double ref_exp(double x) { return exp(x); }
static double ref_tanh(double x) { return tanh(x); }
static double ref_sigmoid(double x) { return 1 / (1 + exp(-x)); }

/* JIT-compiles infer(x: f32[batch, N]) = op(x) at -O2 and returns its outputs for xs. */
static float *run_unary(Op op, const float *xs, int64_t count) {
    Arena arena = {0};
    Module *m = module_new(&arena, "t");
    m->max_batch = 1;
    Func *f = module_add_func(m, "infer");
    int64_t d[2] = {1, count};
    Shape s = shape_make(2, d, 1);
    func_add_arg(f, "x", ARG_INPUT, DT_F32, s, (SrcLoc){0});
    Attr a = {0};
    func_add_out(f, "y", OUT_OUTPUT, ir_unary_attr(f, op, ir_input(f, 0), &a));
    module_layout(m);
    module_build_init(m);
    float *y = calloc((size_t)count, sizeof *y);
    Jit *j = jit_compile(m, 2);
    CHECK(j != NULL);
    if (j) {
        void *state = calloc(1, (size_t)llvm_state_bytes(m) + 64);
        void *work = calloc(1, (size_t)jit_work_bytes(j, "infer") + 64);
        void *args[2] = {(void *)xs, y};
        CHECK(jit_lookup(j, "infer")(state, work, 1, args) == 0);
        free(state);
        free(work);
        jit_free(j);
    }
    arena_free(&arena);
    return y;
}

static void test_sweep(const Sweep *sw) {
    enum { N = 200003 };
    float *xs = malloc(N * sizeof *xs);
    for (int i = 0; i < N; i++) xs[i] = (float)(sw->lo + (sw->hi - sw->lo) * i / (N - 1));
    float *y = run_unary(sw->op, xs, N);
    double worst = 0;
    float worst_x = 0;
    for (int i = 0; i < N; i++) {
        double e = ulps(y[i], sw->ref(xs[i]));
        if (e > worst) worst = e, worst_x = xs[i];
    }
    printf("%-8s [%g, %g]: worst %.2f ulp at x = %.9g\n", sw->name, sw->lo, sw->hi, worst, worst_x);
    if (worst > sw->max_ulps)
        fprintf(stderr, "%s: %.2f ulp at x = %.9g (got %.9g, libm %.9g)\n", sw->name, worst, worst_x,
                y[0], sw->ref(worst_x));
    CHECK(worst <= sw->max_ulps);
    free(xs);
    free(y);
}

static void test_specials(void) {
    static const float xs[] = {NAN, INFINITY, -INFINITY, 0.0f, -0.0f, 88.72f, 88.73f, 89.0f, -87.0f,
                               -103.0f, -104.0f, -150.0f, 1e-30f, -1e-30f, 1e-45f, 0.625f, -0.625f,
                               0.62499994f, 9.0f, -9.0f, 20.0f, -20.0f, 1e30f, -1e30f};
    enum { N = sizeof xs / sizeof xs[0] };
    static const Op ops[] = {OP_exp, OP_tanh, OP_sigmoid};
    double (*refs[])(double) = {ref_exp, ref_tanh, ref_sigmoid};
    for (int o = 0; o < 3; o++) {
        float *y = run_unary(ops[o], xs, N);
        for (int i = 0; i < N; i++) {
            double want = refs[o](xs[i]);
            double e = ulps(y[i], want);
            /* beyond the f32 range e^x must be exactly 0 or +inf; elsewhere 2 ulp, with the
             * subnormal results of exp allowed their own rounding (one subnormal step) */
            bool ok = e <= 2 || (fabs(want) < FLT_MIN && fabs((double)y[i] - want) <= ldexp(1, -149));
            if (!ok) fprintf(stderr, "%s(%.9g) = %.9g, libm %.9g\n", op_info[ops[o]].name, xs[i], y[i], want);
            CHECK(ok);
            /* signs of zeros: tanh(-0) = -0 */
            if (ops[o] == OP_tanh && xs[i] == 0) CHECK(signbit(y[i]) == signbit(xs[i]));
        }
        free(y);
    }
}

int main(void) {
    static const Sweep sweeps[] = {
        {"exp", OP_exp, ref_exp, -87, 88.7, 2},           /* normal results */
        {"exp", OP_exp, ref_exp, -1, 1, 2},
        {"exp", OP_exp, ref_exp, -103.9, -87.4, 1.5},     /* subnormal results, in their steps */
        {"tanh", OP_tanh, ref_tanh, -0.7, 0.7, 2},        /* the polynomial and the switch */
        {"tanh", OP_tanh, ref_tanh, -12, 12, 3},
        {"sigmoid", OP_sigmoid, ref_sigmoid, -80, 30, 3}, /* 1 / (1 + e^-x) */
        {"sigmoid", OP_sigmoid, ref_sigmoid, -5, 5, 3},
    };
    for (size_t i = 0; i < sizeof sweeps / sizeof sweeps[0]; i++) test_sweep(&sweeps[i]);
    test_specials();
    return check_done();
}
