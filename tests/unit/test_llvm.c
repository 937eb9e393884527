/* test_llvm.c — differential tests of the LLVM backend against the interpreter (the oracle).
 *
 * Every case builds a small IR function by hand, JIT-compiles it at -O0 and -O2, runs it at
 * several batch sizes on the same random data as interp.c, and compares every output and
 * the state after the call within 1e-5 (relative to max(1, |reference|)). Cases cover every
 * op of ops.h, fused elementwise chains through views, the store commit protocol (in-place
 * and deferred stores, a non-finite loss leaving the state untouched), argument checks and
 * the work-buffer planner. */
#include "check.h"
#include "nnc.h"
#include "nnrt.h"

#include <stdlib.h>
#include <string.h>

static const double TOL = 1e-5;

/* ---------------------------------------------------------------- building cases */

typedef struct ArgGen {
    double lo, hi;   /* uniform values (i32: integers in [lo, hi)) */
    bool special;    /* sprinkle NaN, +-inf and -0 */
} ArgGen;

typedef struct Case {
    Arena arena;
    Module *m;
    Func *f;
    ArgGen gen[16];
    char name[96];
    int nbatches;
    int64_t batches[4];
    bool skip_init;
} Case;

static Case *case_new(const char *name, const char *func) {
    Case *c = calloc(1, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s", name);
    c->m = module_new(&c->arena, "t");
    c->m->max_batch = 5;
    c->f = module_add_func(c->m, func);
    c->nbatches = 3;
    c->batches[0] = 1, c->batches[1] = 3, c->batches[2] = 5;
    return c;
}

static Shape shp(int rank, int64_t d0, int64_t d1, int64_t d2, uint8_t batch_mask) {
    int64_t d[3] = {d0, d1, d2};
    return shape_make(rank, d, batch_mask);
}

/* An argument of the function; with batch_mask bit i set, dims[i] counts per batch. */
static Ref arg(Case *c, DType dt, Shape s, double lo, double hi) {
    char name[16];
    snprintf(name, sizeof name, "a%d", c->f->nargs);
    int i = func_add_arg(c->f, name, ARG_INPUT, dt, s, (SrcLoc){0});
    c->gen[i] = (ArgGen){lo, hi, false};
    return ir_input(c->f, i);
}

static Ref farg(Case *c, Shape s) { return arg(c, DT_F32, s, -3, 3); }

static int param(Case *c, const char *name, Shape s, InitKind kind, double a, double b) {
    InitSpec init = {kind, a, b, 0};
    return module_add_tensor(c->m, name, TK_PARAM, DT_F32, s, init, (SrcLoc){0});
}

static void out(Case *c, Ref v) {
    char name[16];
    snprintf(name, sizeof name, "o%d", c->f->nouts);
    func_add_out(c->f, name, OUT_OUTPUT, v);
}

static Ref node(Case *c, Op op, DType dt, Shape s, int nin, const Ref *in, const Attr *a) {
    return ir_node(c->f, op, dt, s, nin, in, a);
}

/* ---------------------------------------------------------------- running cases */

static uint64_t rng_state = 12345;
static int64_t rng_draws; /* rnd() calls so far */
static double rnd(void) {
    rng_draws++;
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}

static const double specials[] = {NAN, INFINITY, -INFINITY, -0.0};

static void fill_arg(ITensor *t, const FuncArg *a, const ArgGen *g, int64_t n) {
    t->dtype = a->dtype;
    t->rank = a->shape.rank;
    for (int d = 0; d < t->rank; d++) t->dim[d] = shape_dim(&a->shape, d, n);
    t->numel = shape_numel(&a->shape, n);
    t->data = malloc((size_t)(t->numel + 1) * sizeof *t->data);
    for (int64_t i = 0; i < t->numel; i++) {
        double v = g->lo + (g->hi - g->lo) * rnd();
        if (a->dtype == DT_I32) v = floor(v);
        else if (a->dtype == DT_F32) v = (float)v;
        if (g->special && i % 5 == 2) v = specials[(i / 5) % 4];
        t->data[i] = v;
    }
}

static void *to_buffer(DType dt, const double *data, int64_t count) {
    void *buf = calloc((size_t)count + 1, 8);
    for (int64_t i = 0; i < count; i++) {
        if (dt == DT_F32) ((float *)buf)[i] = (float)data[i];
        else if (dt == DT_I32) ((int32_t *)buf)[i] = (int32_t)data[i];
        else ((double *)buf)[i] = data[i];
    }
    return buf;
}

static double buffer_at(DType dt, const void *buf, int64_t i) {
    if (dt == DT_F32) return ((const float *)buf)[i];
    if (dt == DT_I32) return ((const int32_t *)buf)[i];
    return ((const double *)buf)[i];
}

static bool same_value(double got, double want, double slack) {
    if (isnan(want) || isnan(got)) return isnan(want) && isnan(got);
    if (isinf(want) || isinf(got)) return got == want;
    return fabs(got - want) <= TOL * fmax(1, fabs(want)) + slack;
}

static int mismatches;

static void compare_slack(const char *what, const char *name, DType dt, const void *got, const double *want,
                          int64_t count, double slack) {
    int shown = 0;
    for (int64_t i = 0; i < count; i++) {
        double g = buffer_at(dt, got, i);
        if (same_value(g, want[i], slack)) continue;
        if (shown++ < 4) fprintf(stderr, "%s: %s[%lld] = %.9g, interpreter %.9g\n", what, name, (long long)i, g, want[i]);
        mismatches++;
        check_failures++;
    }
}

static void compare(const char *what, const char *name, DType dt, const void *got, const double *want, int64_t count) {
    compare_slack(what, name, dt, got, want, count, 0);
}

/* Compares the module tensors of two state buffers (module_layout offsets); parameters may
 * differ by param_slack more. */
static void compare_state_slack(const char *what, const Module *m, const uint8_t *got, const uint8_t *want,
                                double param_slack) {
    for (int t = 0; t < m->ntensors; t++) {
        const ModTensor *mt = &m->tensors[t];
        int64_t count = shape_numel(&mt->shape, 1);
        double *w = malloc((size_t)(count + 1) * sizeof *w);
        for (int64_t i = 0; i < count; i++) w[i] = buffer_at(mt->dtype, want + mt->offset, i);
        compare_slack(what, mt->name, mt->dtype, got + mt->offset, w, count, mt->kind == TK_PARAM ? param_slack : 0);
        free(w);
    }
}

static void compare_state(const char *what, const Module *m, const uint8_t *got, const uint8_t *want) {
    compare_state_slack(what, m, got, want, 0);
}

static const uint64_t SEED = 2024;

/* Runs f at every batch size on JIT and interpreter and compares. Returns the JIT's status
 * of the last call (all calls must agree with the interpreter's success). */
static void run_at(Case *c, Jit *j, int opt, int64_t n) {
    Module *m = c->m;
    Func *f = c->f;
    char what[160];
    snprintf(what, sizeof what, "%s -O%d n=%lld", c->name, opt, (long long)n);
    Interp in;
    interp_init(&in, m, false);
    in.seed = SEED;
    char err[256];
    size_t state_bytes = (size_t)llvm_state_bytes(m);
    uint8_t *state = calloc(1, state_bytes + 64), *want_state = calloc(1, state_bytes + 64);
    void *work = calloc(1, (size_t)jit_work_bytes(j, f->name) + 64);
    /* both start from init with the same seed */
    if (!c->skip_init) {
        int rc = interp_run_init(&in, err, sizeof err);
        if (rc) fprintf(stderr, "%s: interp init: %s\n", what, err);
        CHECK(rc == 0);
        uint64_t seed = SEED;
        void *init_args[1] = {&seed};
        void *init_work = calloc(1, (size_t)jit_work_bytes(j, "init") + 64);
        CHECK(jit_lookup(j, "init")(state, init_work, 1, init_args) == 0);
        free(init_work);
        interp_save_state(&in, want_state);
        snprintf(what + strlen(what), sizeof what - strlen(what), " (init)");
        compare_state(what, m, state, want_state);
        what[strlen(what) - 7] = 0;
        CHECK(*(uint64_t *)(state + llvm_seed_offset(m)) == SEED);
    } else {
        memcpy(state + llvm_seed_offset(m), &SEED, 8);
        interp_load_state(&in, state);
    }
    ITensor *args = calloc((size_t)f->nargs + 1, sizeof *args);
    ITensor *outs = calloc((size_t)f->nouts + 1, sizeof *outs);
    void **bufs = calloc((size_t)(f->nargs + f->nouts) + 1, sizeof *bufs);
    for (int i = 0; i < f->nargs; i++) {
        fill_arg(&args[i], &f->args[i], &c->gen[i], n);
        bufs[i] = to_buffer(f->args[i].dtype, args[i].data, args[i].numel);
    }
    for (int o = 0; o < f->nouts; o++)
        bufs[f->nargs + o] = calloc((size_t)shape_numel(&f->nodes[f->outs[o].value].shape, n) + 1, 8);
    int want_rc = interp_run(&in, f, n, args, outs, err, sizeof err);
    if (want_rc) fprintf(stderr, "%s: interp: %s\n", what, err);
    CHECK(want_rc == 0);
    int rc = jit_lookup(j, f->name)(state, work, (int)n, bufs);
    if (rc) fprintf(stderr, "%s: compiled code returned %d\n", what, rc);
    CHECK(rc == 0);
    if (!rc && !want_rc) {
        for (int o = 0; o < f->nouts; o++) {
            const Node *v = &f->nodes[f->outs[o].value];
            compare(what, f->outs[o].name, v->dtype, bufs[f->nargs + o], outs[o].data, outs[o].numel);
        }
        interp_save_state(&in, want_state);
        compare_state(what, m, state, want_state);
    }
    for (int i = 0; i < f->nargs; i++) free(args[i].data), free(bufs[i]);
    for (int o = 0; o < f->nouts; o++) itensor_free(&outs[o]), free(bufs[f->nargs + o]);
    free(args);
    free(outs);
    free(bufs);
    free(state);
    free(want_state);
    free(work);
    interp_free(&in);
}

static int cases_run;

/* Finishes the module (layout, init), verifies the IR, and compares at -O0 and -O2. */
static void run_case(Case *c) {
    module_layout(c->m);
    module_build_init(c->m);
    int problems = 0;
    for (int i = 0; i < c->m->nfuncs; i++) problems += ir_verify(c->m->funcs[i], stderr);
    if (problems) fprintf(stderr, "%s: the test's IR does not verify\n", c->name);
    CHECK(problems == 0);
    int before = mismatches;
    for (int opt = 0; opt <= 2 && !problems; opt += 2) {
        Jit *j = jit_compile(c->m, opt);
        CHECK(j != NULL);
        if (!j) break;
        for (int b = 0; b < c->nbatches; b++) run_at(c, j, opt, c->batches[b]);
        jit_free(j);
    }
    if (mismatches != before) fprintf(stderr, "FAIL %s\n", c->name);
    cases_run++;
    arena_free(&c->arena);
    free(c);
}

/* ---------------------------------------------------------------- elementwise */

static void test_binary(void) {
    static const Op ops[] = {OP_add, OP_sub, OP_mul, OP_div, OP_maximum, OP_minimum, OP_eq, OP_ne,
                             OP_lt, OP_le, OP_gt, OP_ge};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        for (int special = 0; special < 2; special++) {
            char name[64];
            snprintf(name, sizeof name, "binary %s%s", op_info[ops[i]].name, special ? " specials" : "");
            Case *c = case_new(name, "infer");
            Ref a = farg(c, shp(2, 1, 7, 0, 1));
            Ref b = farg(c, shp(1, 7, 0, 0, 0)); /* broadcast over the batch */
            c->gen[0].special = special;
            c->gen[1].special = special;
            out(c, ir_binary(c->f, ops[i], a, b));
            run_case(c);
        }
    }
    Case *c = case_new("binary pow", "infer");
    out(c, ir_binary(c->f, OP_pow, arg(c, DT_F32, shp(2, 1, 6, 0, 1), 0.1, 3), farg(c, shp(2, 1, 6, 0, 1))));
    run_case(c);
}

static void test_int(void) {
    static const Op ops[] = {OP_add, OP_sub, OP_mul, OP_div, OP_maximum, OP_minimum, OP_eq, OP_lt, OP_ge};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        char name[64];
        snprintf(name, sizeof name, "i32 %s", op_info[ops[i]].name);
        Case *c = case_new(name, "infer");
        Ref a = arg(c, DT_I32, shp(2, 1, 6, 0, 1), -100, 100);
        Ref b = arg(c, DT_I32, shp(2, 1, 6, 0, 1), -4, 4); /* zeros: division by zero gives 0 */
        out(c, ir_binary(c->f, ops[i], a, b));
        run_case(c);
    }
    Case *c = case_new("i32 unary, select, cast", "infer");
    Ref a = arg(c, DT_I32, shp(2, 1, 6, 0, 1), -100, 100);
    out(c, ir_unary(c->f, OP_neg, a));
    out(c, ir_unary(c->f, OP_abs, a));
    out(c, ir_unary(c->f, OP_sign, a));
    Ref fa = ir_cast(c->f, a, DT_F32);
    out(c, fa);
    Ref x = arg(c, DT_F32, shp(2, 1, 6, 0, 1), -4e9, 4e9); /* saturating float -> i32 */
    c->gen[1].special = true;
    out(c, ir_cast(c->f, x, DT_I32));
    out(c, ir_select(c->f, a, x, fa));
    out(c, ir_select(c->f, ir_binary(c->f, OP_gt, x, fa), a, ir_unary(c->f, OP_neg, a)));
    run_case(c);
}

static void test_unary(void) {
    static const struct {
        Op op;
        double lo, hi;
    } ops[] = {{OP_neg, -3, 3}, {OP_exp, -5, 5}, {OP_log, 0.01, 10}, {OP_sqrt, 0, 10}, {OP_abs, -3, 3},
               {OP_sign, -3, 3}, {OP_floor, -3, 3}, {OP_cos, -6, 6}, {OP_erf, -3, 3},
               {OP_stop_gradient, -3, 3}};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        for (int special = 0; special < 2; special++) {
            char name[64];
            snprintf(name, sizeof name, "unary %s%s", op_info[ops[i].op].name, special ? " specials" : "");
            Case *c = case_new(name, "infer");
            Ref x = arg(c, DT_F32, shp(3, 1, 3, 5, 1), ops[i].lo, ops[i].hi);
            c->gen[0].special = special;
            out(c, ir_unary(c->f, ops[i].op, x));
            run_case(c);
        }
    }
}

static void test_activations(void) {
    static const struct {
        Op op;
        double f0, f1;
        int flag;
    } acts[] = {{OP_relu, 0, 0, 0},        {OP_leaky_relu, 0, 0, 0}, {OP_leaky_relu, 0.2, 0, 0},
                {OP_elu, 0, 0, 0},         {OP_elu, 0.5, 0, 0},      {OP_selu, 0, 0, 0},
                {OP_gelu, 0, 0, 0},        {OP_gelu, 0, 0, 1},       {OP_sigmoid, 0, 0, 0},
                {OP_tanh, 0, 0, 0},        {OP_softplus, 0, 0, 0},   {OP_softplus, 2, 5, 0},
                {OP_silu, 0, 0, 0},        {OP_mish, 0, 0, 0},       {OP_hard_sigmoid, 0, 0, 0},
                {OP_hard_swish, 0, 0, 0}};
    for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++) {
        char name[64];
        snprintf(name, sizeof name, "activation %s %g %g %d", op_info[acts[i].op].name, acts[i].f0, acts[i].f1,
                 acts[i].flag);
        Case *c = case_new(name, "infer");
        Ref x = arg(c, DT_F32, shp(2, 1, 40, 0, 1), -30, 30);
        Ref dy = farg(c, shp(2, 1, 40, 0, 1));
        Attr a = {.f = {acts[i].f0, acts[i].f1}, .flag = acts[i].flag};
        out(c, ir_unary_attr(c->f, acts[i].op, x, &a));
        Attr g = a;
        g.fwd_op = acts[i].op;
        Ref in[2] = {x, dy};
        out(c, node(c, OP_act_grad, DT_F32, ir_at(c->f, x)->shape, 2, in, &g));
        run_case(c);
        /* the interesting range, and the kinks */
        c = case_new(name, "infer");
        x = arg(c, DT_F32, shp(2, 1, 40, 0, 1), -4, 4);
        dy = farg(c, shp(2, 1, 40, 0, 1));
        c->gen[0].special = true;
        Ref xs[2] = {x, dy};
        out(c, ir_unary_attr(c->f, acts[i].op, x, &a));
        out(c, node(c, OP_act_grad, DT_F32, ir_at(c->f, x)->shape, 2, xs, &g));
        run_case(c);
    }
}

/* A long chain: broadcasts, a transpose and a slice fused into elementwise loops. */
static void test_fusion(void) {
    Case *c = case_new("fused chain through views", "infer");
    Ref x = farg(c, shp(3, 1, 4, 6, 1));
    Ref b = farg(c, shp(1, 6, 0, 0, 0));
    Ref y = farg(c, shp(3, 1, 6, 4, 1));
    int perm[3] = {0, 2, 1};
    Ref t = ir_transpose(c->f, y, perm);                     /* [batch, 4, 6] */
    Ref e = ir_unary(c->f, OP_exp, ir_binary(c->f, OP_mul, x, b));
    Ref s = ir_binary(c->f, OP_add, e, t);
    Ref r = ir_unary(c->f, OP_tanh, ir_binary(c->f, OP_sub, s, ir_scalar(c->f, 0.5)));
    int64_t start[3] = {0, 1, 0}, step[3] = {1, 2, 3};
    Ref sl = ir_slice(c->f, r, start, step, shp(3, 1, 2, 2, 1));
    out(c, r);
    out(c, ir_unary(c->f, OP_neg, sl));
    /* a value used twice is computed once, then read by both */
    Ref twice = ir_unary(c->f, OP_sigmoid, x);
    out(c, ir_binary(c->f, OP_mul, twice, ir_binary(c->f, OP_add, twice, e)));
    /* a scalar broadcast over everything, and a constant with data */
    static const double data[6] = {1, -2, 3, -4, 5, -6};
    Attr ca = {.data = data};
    Ref k = node(c, OP_const, DT_F32, shp(1, 6, 0, 0, 0), 0, NULL, &ca);
    Ref bs = ir_cast(c->f, node(c, OP_batch_size, DT_I32, shape_scalar(), 0, NULL, NULL), DT_F32);
    out(c, ir_binary(c->f, OP_mul, ir_binary(c->f, OP_add, x, k), bs));
    out(c, node(c, OP_batch_size, DT_F32, shape_scalar(), 0, NULL, NULL));
    out(c, ir_const(c->f, DT_F32, shp(2, 1, 3, 0, 1), 2.5));
    run_case(c);
}

/* ---------------------------------------------------------------- reductions */

static void test_reductions(void) {
    static const Op ops[] = {OP_sum, OP_mean, OP_max};
    static const uint32_t axes[] = {1, 2, 4, 3, 5, 6, 7};
    for (size_t i = 0; i < 3; i++)
        for (size_t a = 0; a < sizeof axes / sizeof axes[0]; a++)
            for (int keep = 0; keep < 2; keep++) {
                char name[64];
                snprintf(name, sizeof name, "%s axes=0x%x keepdims=%d", op_info[ops[i]].name, axes[a], keep);
                Case *c = case_new(name, "infer");
                Ref x = farg(c, shp(3, 1, 4, 5, 1));
                c->gen[0].special = i == 2 && a == 0;
                out(c, ir_reduce(c->f, ops[i], x, axes[a], keep));
                run_case(c);
            }
    for (int axis = 0; axis < 3; axis++)
        for (int special = 0; special < 2; special++) {
            char name[64];
            snprintf(name, sizeof name, "argmax axis=%d%s", axis, special ? " specials" : "");
            Case *c = case_new(name, "infer");
            Ref x = farg(c, shp(3, 1, 4, 5, 1));
            c->gen[0].special = special;
            out(c, ir_argmax(c->f, x, axis));
            run_case(c);
        }
    Case *c = case_new("sum of a fused expression, batch on axis 1", "infer");
    Ref x = farg(c, shp(3, 3, 1, 5, 2));
    out(c, ir_reduce(c->f, OP_sum, ir_unary(c->f, OP_exp, x), 2, false));
    out(c, ir_reduce(c->f, OP_mean, x, 7, false));
    run_case(c);
}

/* ---------------------------------------------------------------- linear algebra and shapes */

static void test_matmul(void) {
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            char name[64];
            snprintf(name, sizeof name, "matmul 2-D ta=%d tb=%d", ta, tb);
            Case *c = case_new(name, "infer");
            Ref a = farg(c, ta ? shp(2, 7, 1, 0, 2) : shp(2, 1, 7, 0, 1));
            Ref b = farg(c, tb ? shp(2, 3, 7, 0, 0) : shp(2, 7, 3, 0, 0));
            out(c, ir_matmul(c->f, a, b, ta, tb));
            run_case(c);
            snprintf(name, sizeof name, "matmul 3-D ta=%d tb=%d", ta, tb);
            c = case_new(name, "infer");
            a = farg(c, ta ? shp(3, 1, 5, 4, 1) : shp(3, 1, 4, 5, 1));
            b = farg(c, tb ? shp(3, 1, 3, 5, 1) : shp(3, 1, 5, 3, 1));
            Ref b2 = farg(c, tb ? shp(2, 3, 5, 0, 0) : shp(2, 5, 3, 0, 0));
            out(c, ir_matmul(c->f, a, b, ta, tb));
            out(c, ir_matmul(c->f, a, b2, ta, tb));
            run_case(c);
        }
    /* the weight-gradient shape: x^T @ dy over the batch */
    Case *c = case_new("matmul x^T dy", "infer");
    Ref x = farg(c, shp(2, 1, 6, 0, 1)), dy = farg(c, shp(2, 1, 4, 0, 1));
    out(c, ir_matmul(c->f, dy, x, true, false));
    run_case(c);
}

static void test_shapes(void) {
    Case *c = case_new("reshape transpose broadcast slice", "infer");
    Ref x = farg(c, shp(3, 1, 4, 6, 1));
    out(c, ir_reshape(c->f, x, shp(2, 1, 24, 0, 1)));
    int perms[][3] = {{0, 2, 1}, {2, 0, 1}, {1, 2, 0}};
    for (int p = 0; p < 3; p++) out(c, ir_transpose(c->f, x, perms[p]));
    Ref col = farg(c, shp(2, 4, 1, 0, 0));
    out(c, ir_broadcast(c->f, col, shp(3, 1, 4, 6, 1)));
    Ref row = farg(c, shp(3, 1, 1, 6, 1));
    out(c, ir_broadcast(c->f, row, shp(3, 1, 4, 6, 1)));
    int64_t start[3] = {0, 3, 5}, step[3] = {1, -1, -2};
    out(c, ir_slice(c->f, x, start, step, shp(3, 1, 2, 3, 1)));
    /* a reshape of a fused expression needs it in memory first */
    out(c, ir_reshape(c->f, ir_unary(c->f, OP_exp, ir_transpose(c->f, x, perms[0])), shp(2, 1, 24, 0, 1)));
    run_case(c);

    c = case_new("concat", "infer");
    Ref a = farg(c, shp(3, 1, 2, 3, 1)), b = farg(c, shp(3, 1, 4, 3, 1)), d = farg(c, shp(3, 1, 2, 3, 1));
    Ref parts[3] = {a, b, d};
    out(c, ir_concat(c->f, 3, parts, 1));
    Ref e = farg(c, shp(3, 1, 2, 5, 1));
    Ref parts2[2] = {a, e};
    out(c, ir_concat(c->f, 2, parts2, 2));
    Ref parts3[2] = {a, d};
    out(c, ir_concat(c->f, 2, parts3, 0));
    run_case(c);

    c = case_new("gather scatter_add", "infer");
    Ref table = farg(c, shp(3, 7, 2, 3, 0));
    Ref idx = arg(c, DT_I32, shp(2, 1, 4, 0, 1), -2, 9); /* some out of range */
    Ref in[2] = {table, idx};
    int64_t gd[4] = {1, 4, 2, 3};
    Shape gs = shape_make(4, gd, 1);
    out(c, node(c, OP_gather, DT_F32, gs, 2, in, NULL));
    Ref dy = farg(c, gs);
    Ref sin[2] = {idx, dy};
    out(c, node(c, OP_scatter_add, DT_F32, shp(3, 7, 2, 3, 0), 2, sin, NULL));
    run_case(c);
}

/* ---------------------------------------------------------------- softmax and cross-entropy */

static void test_softmax(void) {
    static const Op ops[] = {OP_softmax, OP_log_softmax};
    for (int i = 0; i < 2; i++)
        for (int special = 0; special < 2; special++) {
            char name[64];
            snprintf(name, sizeof name, "%s%s", op_info[ops[i]].name, special ? " specials" : "");
            Case *c = case_new(name, "infer");
            Ref x = arg(c, DT_F32, shp(3, 1, 3, 10, 1), -20, 20);
            c->gen[0].special = special;
            Ref y = node(c, ops[i], DT_F32, ir_at(c->f, x)->shape, 1, &x, NULL);
            out(c, y);
            Ref dy = farg(c, ir_at(c->f, x)->shape);
            Ref g[2] = {y, dy};
            if (!special)
                out(c, node(c, i ? OP_log_softmax_grad : OP_softmax_grad, DT_F32, ir_at(c->f, x)->shape, 2, g, NULL));
            run_case(c);
        }
}

static void test_cross_entropy(void) {
    for (int weighted = 0; weighted < 2; weighted++)
        for (int smooth = 0; smooth < 2; smooth++)
            for (int ignore = 0; ignore < 2; ignore++) {
                char name[80];
                snprintf(name, sizeof name, "cross_entropy weighted=%d smoothing=%d ignore=%d", weighted, smooth, ignore);
                Case *c = case_new(name, "evaluate");
                Ref x = arg(c, DT_F32, shp(2, 1, 6, 0, 1), -5, 5);
                Ref y = arg(c, DT_I32, shp(1, 1, 0, 0, 1), ignore ? -1 : 0, 6);
                Ref w = weighted ? arg(c, DT_F32, shp(1, 6, 0, 0, 0), 0.2, 2) : REF_NONE;
                Ref dl = farg(c, shape_scalar());
                Attr a = {.f = {smooth ? 0.1 : 0}};
                Ref in[4] = {x, y, w, dl};
                int nin = weighted ? 3 : 2;
                Ref loss = node(c, OP_cross_entropy, DT_F32, shape_scalar(), nin, in, &a);
                func_add_out(c->f, "loss", OUT_LOSS, loss);
                if (!weighted) in[2] = dl;
                out(c, node(c, OP_cross_entropy_grad, DT_F32, ir_at(c->f, x)->shape, nin + 1, in, &a));
                run_case(c);
            }
    /* positions on two axes */
    Case *c = case_new("cross_entropy over [batch, 3, 5]", "evaluate");
    Ref x = farg(c, shp(3, 1, 3, 5, 1));
    Ref y = arg(c, DT_I32, shp(2, 1, 3, 0, 1), 0, 5);
    Ref in[2] = {x, y};
    func_add_out(c->f, "loss", OUT_LOSS, node(c, OP_cross_entropy, DT_F32, shape_scalar(), 2, in, NULL));
    run_case(c);
}

/* ---------------------------------------------------------------- state: init, stores, RNG */

static void test_init_and_rng(void) {
    Case *c = case_new("init_fill every initializer, rand_uniform", "train_step");
    static const InitKind kinds[] = {INIT_ZEROS, INIT_ONES, INIT_CONSTANT, INIT_UNIFORM, INIT_NORMAL,
                                     INIT_XAVIER_UNIFORM, INIT_XAVIER_NORMAL, INIT_HE_UNIFORM,
                                     INIT_HE_NORMAL, INIT_ORTHOGONAL, INIT_TORCH_DEFAULT};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "p%zu", i);
        param(c, name, shp(2, 6, 4, 0, 0), kinds[i], 0.5, 1.5);
    }
    InitSpec ones = {INIT_CONSTANT, 7, 0, 0};
    int step = module_add_tensor(c->m, "step", TK_STEP, DT_I32, shape_scalar(), ones, (SrcLoc){0});
    Ref x = farg(c, shp(2, 1, 6, 0, 1));
    Attr ra = {.index = 3, .tensor = step};
    Ref u = node(c, OP_rand_uniform, DT_F32, shp(2, 1, 6, 0, 1), 0, NULL, &ra);
    out(c, ir_binary(c->f, OP_mul, x, u));
    /* step += 1, then a second draw sees the new step */
    Ref s1 = ir_binary(c->f, OP_add, ir_tensor(c->f, step), ir_const(c->f, DT_I32, shape_scalar(), 1));
    ir_store(c->f, step, s1);
    Attr rb = {.index = 4, .tensor = step};
    out(c, node(c, OP_rand_uniform, DT_F32, shp(2, 1, 6, 0, 1), 0, NULL, &rb));
    run_case(c);
}

/* An SGD-like step: the loss is checked before anything is written; parameter updates are
 * computed into the state in place; a batch statistic stored before the loss is deferred. */
static Case *sgd_case(const char *name, double loss_scale) {
    Case *c = case_new(name, "train_step");
    int W = param(c, "W", shp(2, 5, 3, 0, 0), INIT_UNIFORM, -1, 1);
    int stat = module_add_tensor(c->m, "stat", TK_STATE, DT_F32, shp(1, 3, 0, 0, 0), (InitSpec){INIT_ONES, 0, 0, 0},
                                 (SrcLoc){0});
    int mom = module_add_tensor(c->m, "W.momentum", TK_SLOT, DT_F32, shp(2, 5, 3, 0, 0),
                                (InitSpec){INIT_ZEROS, 0, 0, 0}, (SrcLoc){0});
    Ref x = farg(c, shp(2, 1, 5, 0, 1));
    Ref y = arg(c, DT_I32, shp(1, 1, 0, 0, 1), 0, 3);
    Ref w = ir_tensor(c->f, W);
    Ref logits = ir_matmul(c->f, x, w, false, false);
    /* running statistic, stored before the loss: must be deferred */
    Ref mean = ir_reduce(c->f, OP_mean, logits, 1, false);
    Ref st = ir_tensor(c->f, stat);
    ir_store(c->f, stat, ir_binary(c->f, OP_add, ir_binary(c->f, OP_mul, st, ir_scalar(c->f, 0.9)),
                                   ir_binary(c->f, OP_mul, mean, ir_scalar(c->f, 0.1))));
    Ref in[3] = {ir_binary(c->f, OP_mul, logits, ir_scalar(c->f, loss_scale)), y};
    Ref loss = node(c, OP_cross_entropy, DT_F32, shape_scalar(), 2, in, NULL);
    func_add_out(c->f, "loss", OUT_LOSS, loss);
    Ref one = ir_scalar(c->f, 1);
    in[2] = one;
    Ref dlogits = node(c, OP_cross_entropy_grad, DT_F32, ir_at(c->f, logits)->shape, 3, in, NULL);
    Ref gw = ir_matmul(c->f, x, dlogits, true, false);
    /* momentum: m = 0.9 m + g; W = W - 0.1 (g + 0.9 m)   (nesterov) */
    Ref m_new = ir_binary(c->f, OP_add, ir_binary(c->f, OP_mul, ir_tensor(c->f, mom), ir_scalar(c->f, 0.9)), gw);
    ir_store(c->f, mom, m_new);
    Ref upd = ir_binary(c->f, OP_add, gw, ir_binary(c->f, OP_mul, ir_tensor(c->f, mom), ir_scalar(c->f, 0.9)));
    ir_store(c->f, W, ir_binary(c->f, OP_sub, w, ir_binary(c->f, OP_mul, upd, ir_scalar(c->f, 0.1))));
    /* a metric reads the stored statistic */
    func_add_out(c->f, "stat_sum", OUT_METRIC, ir_reduce(c->f, OP_sum, ir_tensor(c->f, stat), 1, false));
    return c;
}

static void test_stores(void) {
    run_case(sgd_case("sgd step with deferred and in-place stores", 1));

    /* non-finite loss: NNRT_ENONFINITE, the state byte for byte as before */
    Case *c = sgd_case("non-finite loss", INFINITY);
    module_layout(c->m);
    module_build_init(c->m);
    Jit *j = jit_compile(c->m, 2);
    CHECK(j != NULL);
    size_t bytes = (size_t)llvm_state_bytes(c->m);
    uint8_t *state = calloc(1, bytes), *before = calloc(1, bytes);
    void *work = calloc(1, (size_t)jit_work_bytes(j, "train_step") + 1);
    uint64_t seed = 1;
    void *ia[1] = {&seed};
    CHECK(jit_lookup(j, "init")(state, work, 1, ia) == 0);
    memcpy(before, state, bytes);
    float x[10] = {1, 2, 3, 4, 5, -1, -2, -3, -4, -5}, loss = 0, metric = 0;
    int32_t y[2] = {0, 2};
    void *args[4] = {x, y, &loss, &metric};
    CHECK(jit_lookup(j, "train_step")(state, work, 2, args) == NNRT_ENONFINITE);
    CHECK(!isfinite(loss));
    CHECK(memcmp(state, before, bytes) == 0);
    /* argument checks change nothing either */
    CHECK(jit_lookup(j, "train_step")(state, work, 0, args) == NNRT_EBATCH);
    CHECK(jit_lookup(j, "train_step")(state, work, 6, args) == NNRT_EBATCH);
    CHECK(jit_lookup(j, "train_step")(NULL, work, 2, args) == NNRT_ENULL);
    CHECK(jit_lookup(j, "train_step")(state, NULL, 2, args) == NNRT_ENULL);
    CHECK(jit_lookup(j, "train_step")(state, work, 2, NULL) == NNRT_ENULL);
    args[1] = NULL;
    CHECK(jit_lookup(j, "train_step")(state, work, 2, args) == NNRT_ENULL);
    CHECK(jit_lookup(j, "init")(state, work, 1, NULL) == NNRT_ENULL);
    CHECK(memcmp(state, before, bytes) == 0);
    CHECK(jit_lookup(j, "infer") == NULL);
    CHECK(jit_work_bytes(j, "infer") < 0);
    jit_free(j);
    free(state);
    free(before);
    free(work);
    arena_free(&c->arena);
    free(c);
}

/* A stored value that is a state tensor itself is copied before the state changes:
 * swapping two tensors through stores must not see the first store. */
static void test_store_swap(void) {
    Case *c = case_new("swap two tensors by stores", "train_step");
    int a = param(c, "a", shp(1, 4, 0, 0, 0), INIT_UNIFORM, -1, 1);
    int b = param(c, "b", shp(1, 4, 0, 0, 0), INIT_UNIFORM, 2, 3);
    Ref ta = ir_tensor(c->f, a), tb = ir_tensor(c->f, b);
    ir_store(c->f, a, tb);
    ir_store(c->f, b, ta);
    out(c, ir_tensor(c->f, a));
    out(c, ta);
    run_case(c);
}

/* ---------------------------------------------------------------- planner */

static void test_planner(void) {
    /* a chain of 8 matmuls keeps at most a few buffers alive */
    Arena arena = {0};
    Module *m = module_new(&arena, "p");
    m->max_batch = 64;
    Func *f = module_add_func(m, "infer");
    int64_t d[2] = {1, 256};
    func_add_arg(f, "x", ARG_INPUT, DT_F32, shape_make(2, d, 1), (SrcLoc){0});
    int64_t wd[2] = {256, 256};
    int w = module_add_tensor(m, "w", TK_PARAM, DT_F32, shape_make(2, wd, 0), (InitSpec){INIT_ONES, 0, 0, 0},
                              (SrcLoc){0});
    Ref h = ir_input(f, 0);
    for (int i = 0; i < 8; i++) h = ir_unary(f, OP_relu, ir_matmul(f, h, ir_tensor(f, w), false, false));
    func_add_out(f, "y", OUT_OUTPUT, ir_unary(f, OP_tanh, h));
    module_layout(m);
    int64_t one = 64 * 256 * 4;
    int64_t work = llvm_work_bytes(f);
    CHECK(work >= one);
    CHECK(work <= 3 * one);
    /* the last op writes straight into the output buffer */
    CHECK(llvm_max_work_bytes(m, false) == work);
    arena_free(&arena);

    /* g = h + h overwrites h, which dies there: one buffer for both */
    arena = (Arena){0};
    m = module_new(&arena, "p");
    m->max_batch = 64;
    f = module_add_func(m, "infer");
    func_add_arg(f, "x", ARG_INPUT, DT_F32, shape_make(2, d, 1), (SrcLoc){0});
    w = module_add_tensor(m, "w", TK_PARAM, DT_F32, shape_make(2, wd, 0), (InitSpec){INIT_ONES, 0, 0, 0},
                          (SrcLoc){0});
    h = ir_matmul(f, ir_input(f, 0), ir_tensor(f, w), false, false);
    Ref g = ir_binary(f, OP_add, h, h);
    func_add_out(f, "a", OUT_OUTPUT, ir_matmul(f, g, ir_tensor(f, w), false, false));
    func_add_out(f, "b", OUT_OUTPUT, ir_matmul(f, g, ir_tensor(f, w), true, false));
    module_layout(m);
    CHECK(llvm_work_bytes(f) == one);
    arena_free(&arena);

    /* a sum of 12 products accumulated over a long schedule: fusing all the adds into the
       last one would keep every product alive */
    arena = (Arena){0};
    m = module_new(&arena, "p");
    m->max_batch = 64;
    f = module_add_func(m, "infer");
    func_add_arg(f, "x", ARG_INPUT, DT_F32, shape_make(2, d, 1), (SrcLoc){0});
    w = module_add_tensor(m, "w", TK_PARAM, DT_F32, shape_make(2, wd, 0), (InitSpec){INIT_ONES, 0, 0, 0},
                          (SrcLoc){0});
    Ref acc = ir_matmul(f, ir_input(f, 0), ir_tensor(f, w), false, false);
    for (int i = 0; i < 12; i++) {
        Ref t = ir_matmul(f, ir_input(f, 0), ir_tensor(f, w), false, false);
        for (int k = 0; k < 20; k++) func_add_out(f, "s", OUT_EXTRA, ir_scalar(f, k)); /* distance */
        acc = ir_binary(f, OP_add, acc, t);
    }
    func_add_out(f, "y", OUT_OUTPUT, acc);
    module_layout(m);
    CHECK(llvm_work_bytes(f) <= 4 * one);
    arena_free(&arena);
}

/* ---------------------------------------------------------------- spatial ops */

/* A one-output case over NCHW tensors, compared with the interpreter like every case. */
static void run_spatial_case(Case *c) {
    c->nbatches = 2;
    c->batches[0] = 1, c->batches[1] = 3;
    run_case(c);
}

static Shape dims4(int64_t a, int64_t b, int64_t c, int64_t d, uint8_t batch) {
    int64_t v[4] = {a, b, c, d};
    return shape_make(4, v, batch);
}

static void test_spatial(void) {
    /* conv2d geometries: groups, stride, dilation, asymmetric padding; a 3x3 "same" one with
       bias; a pointwise one (GEMM on the input directly) */
    static const struct {
        const char *name;
        int64_t C, H, W, O, KH, KW, sh, sw, pt, pl, pb, pr, dh, dw, G;
        bool bias;
    } convs[] = {
        {"conv2d groups=2 stride=(2,1) dilation=(1,2) asymmetric padding", 4, 7, 6, 6, 3, 2, 2, 1, 1, 0, 1, 1, 1, 2, 2, false},
        {"conv2d 3x3 same, bias", 3, 6, 5, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, true},
        {"conv2d 1x1 pointwise, bias", 5, 4, 3, 2, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, true},
        {"conv2d 5x5 stride 2 valid", 2, 9, 9, 3, 5, 5, 2, 2, 0, 0, 0, 0, 1, 1, 1, false},
        /* padding wider than the window: whole window rows and columns fall outside */
        {"conv2d 3x3 stride (2,3) padding 4/3/2/5", 2, 5, 4, 3, 3, 3, 2, 3, 4, 3, 2, 5, 1, 1, 1, true},
        {"conv2d 2x3 dilation 3 stride 2 padding 3", 3, 8, 9, 2, 2, 3, 2, 2, 3, 3, 3, 3, 3, 3, 1, false},
        /* stride 1, dilation 1, one group, >= 16 output channels: nnrt_conv2d's direct
           kernel (runtime/conv.c) for conv2d; every register block (64, 48, 32, 16
           channels), two channel blocks, ragged counts, padding on all sides */
        {"conv2d direct 5x5 pad 2, 64 channels, bias", 2, 9, 8, 64, 5, 5, 1, 1, 2, 2, 2, 2, 1, 1, 1, true},
        {"conv2d direct 3x3 asymmetric padding, 40 channels", 3, 6, 7, 40, 3, 3, 1, 1, 1, 0, 2, 1, 1, 1, 1, false},
        {"conv2d direct 5x5 one input channel, 32 channels, bias", 1, 12, 11, 32, 5, 5, 1, 1, 2, 2, 2, 2, 1, 1, 1, true},
        {"conv2d direct 3x3 padding 4/3/2/5, 16 channels", 2, 5, 4, 16, 3, 3, 1, 1, 4, 3, 2, 5, 1, 1, 1, true},
        {"conv2d direct 3x3 pad 1, 80 channels", 2, 7, 5, 80, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, true},
        {"conv2d direct 2x3 valid, 17 channels", 4, 6, 6, 17, 2, 3, 1, 1, 0, 0, 0, 0, 1, 1, 1, false},
    };
    for (size_t i = 0; i < sizeof convs / sizeof convs[0]; i++) {
        const __typeof__(convs[0]) *k = &convs[i];
        int64_t Ho = (k->H + k->pt + k->pb - k->dh * (k->KH - 1) - 1) / k->sh + 1;
        int64_t Wo = (k->W + k->pl + k->pr - k->dw * (k->KW - 1) - 1) / k->sw + 1;
        Attr a = {.step = {k->sh, k->sw}, .start = {k->pt, k->pl, k->pb, k->pr}, .perm = {(int)k->dh, (int)k->dw, (int)k->G}};
        Shape xs = dims4(1, k->C, k->H, k->W, 1), ws = dims4(k->O, k->C / k->G, k->KH, k->KW, 0);
        Shape ys = dims4(1, k->O, Ho, Wo, 1);
        /* the direct cases test conv2d only: their gradients are the im2col path of the
           cases above, and sum over up to 80 channels x the window, more terms than f32
           matches the interpreter on within TOL */
        int kinds_run = strstr(k->name, "direct") ? 1 : 3;
        for (int which = 0; which < kinds_run; which++) {
            char name[128];
            static const char *const kinds[] = {"", " grad_input", " grad_weight"};
            snprintf(name, sizeof name, "%s%s", k->name, kinds[which]);
            Case *c = case_new(name, "infer");
            Ref in[3];
            int nin = 2;
            Op op;
            Shape out_shape;
            if (which == 0) {
                in[0] = farg(c, xs), in[1] = farg(c, ws);
                if (k->bias) in[nin++] = farg(c, shape_make(1, &k->O, 0));
                op = OP_conv2d, out_shape = ys;
            } else if (which == 1) {
                in[0] = farg(c, ys), in[1] = farg(c, ws);
                op = OP_conv2d_grad_input, out_shape = xs;
            } else {
                in[0] = farg(c, xs), in[1] = farg(c, ys);
                op = OP_conv2d_grad_weight, out_shape = ws;
            }
            out(c, node(c, op, DT_F32, out_shape, nin, in, &a));
            run_spatial_case(c);
        }
    }
    /* pools: 2x2 stride 2; 3x3 stride 2 with padding (padded positions never win) */
    static const struct {
        int64_t K, s, pad;
    } pools[] = {{2, 2, 0}, {3, 2, 1}};
    for (size_t i = 0; i < 2; i++) {
        int64_t H = 7, W = 6, K = pools[i].K, st = pools[i].s, p = pools[i].pad;
        int64_t Ho = (H + 2 * p - K) / st + 1, Wo = (W + 2 * p - K) / st + 1;
        Attr a = {.step = {st, st}, .start = {p, p, p, p}, .perm = {(int)K, (int)K}};
        Shape xs = dims4(1, 3, H, W, 1), ys = dims4(1, 3, Ho, Wo, 1);
        static const Op ops[] = {OP_maxpool2d, OP_avgpool2d, OP_maxpool2d_grad};
        for (int o = 0; o < 3; o++) {
            char name[96];
            snprintf(name, sizeof name, "%s %lldx%lld stride %lld pad %lld", op_info[ops[o]].name, (long long)K,
                     (long long)K, (long long)st, (long long)p);
            Case *c = case_new(name, "infer");
            Ref in[2] = {farg(c, xs), REF_NONE};
            if (ops[o] == OP_maxpool2d_grad) in[1] = farg(c, ys);
            out(c, node(c, ops[o], DT_F32, ops[o] == OP_maxpool2d_grad ? xs : ys, ops[o] == OP_maxpool2d_grad ? 2 : 1, in, &a));
            run_spatial_case(c);
        }
    }
    /* maxpool whose windows lie inside the input (vectors of 16 outputs of a row, masked
       loads and stores): NaN, +-inf and -0 among the values (a NaN wins, ties keep the
       first), a 3x2 window at stride (3, 2), 2x2 stride 2 over an odd size (the last row and
       column unread), rows of 35 outputs (two full vectors and 3 lanes), overlapping 3x3
       windows at stride 2 (20 outputs), and windows too far apart for one vector (stride 9:
       the scalar loop) */
    static const struct {
        int64_t H, W, KH, KW, sh, sw;
    } inside[] = {{7, 8, 3, 2, 3, 2}, {9, 7, 2, 2, 2, 2}, {5, 70, 2, 2, 2, 2}, {5, 41, 3, 3, 2, 2}, {4, 100, 1, 3, 1, 9}};
    for (size_t i = 0; i < sizeof inside / sizeof inside[0]; i++) {
        int64_t H = inside[i].H, W = inside[i].W, Ho = (H - inside[i].KH) / inside[i].sh + 1,
                Wo = (W - inside[i].KW) / inside[i].sw + 1;
        char name[96];
        snprintf(name, sizeof name, "maxpool2d %lldx%lld stride (%lld,%lld) over %lldx%lld, special values",
                 (long long)inside[i].KH, (long long)inside[i].KW, (long long)inside[i].sh, (long long)inside[i].sw,
                 (long long)H, (long long)W);
        Case *c = case_new(name, "infer");
        Attr a = {.step = {inside[i].sh, inside[i].sw}, .perm = {(int)inside[i].KH, (int)inside[i].KW}};
        Ref x = farg(c, dims4(1, 3, H, W, 1));
        c->gen[0].special = true;
        out(c, node(c, OP_maxpool2d, DT_F32, dims4(1, 3, Ho, Wo, 1), 1, &x, &a));
        run_spatial_case(c);
    }
    /* relu(x) and relu(x + broadcast b) before such a pool, and before a 3x3 stride 2 one */
    for (int k = 0; k < 3; k++) {
        static const char *const names[] = {"relu then maxpool2d 2x2", "relu(x + b) then maxpool2d 2x2",
                                             "relu then maxpool2d 3x3 stride 2"};
        Case *c = case_new(names[k], "infer");
        int64_t K = k == 2 ? 3 : 2, H = 7, W = 6, Ho = (H - K) / 2 + 1, Wo = (W - K) / 2 + 1;
        Attr a = {.step = {2, 2}, .perm = {(int)K, (int)K}};
        Ref x = farg(c, dims4(1, 3, H, W, 1));
        c->gen[0].special = true;
        if (k == 1) {
            Ref b = farg(c, dims4(1, 3, 1, 1, 0));
            x = ir_binary(c->f, OP_add, x, ir_broadcast(c->f, b, dims4(1, 3, H, W, 1)));
        }
        Ref r = ir_unary(c->f, OP_relu, x);
        out(c, node(c, OP_maxpool2d, DT_F32, dims4(1, 3, Ho, Wo, 1), 1, &r, &a));
        run_spatial_case(c);
    }
    for (int bilinear = 0; bilinear < 2; bilinear++) {
        Case *c = case_new(bilinear ? "upsample2d bilinear 2x3" : "upsample2d nearest 2x3", "infer");
        Attr a = {.perm = {2, 3}, .flag = bilinear};
        Ref x = farg(c, dims4(1, 2, 4, 3, 1));
        out(c, node(c, OP_upsample2d, DT_F32, dims4(1, 2, 8, 9, 1), 1, &x, &a));
        run_spatial_case(c);
    }
    Case *c = case_new("lrn size 3", "infer");
    Attr la = {.perm = {3}, .f = {1e-2, 0.75, 2}};
    Ref x = farg(c, dims4(1, 5, 3, 2, 1));
    out(c, node(c, OP_lrn, DT_F32, dims4(1, 5, 3, 2, 1), 1, &x, &la));
    run_spatial_case(c);
}

/* ---------------------------------------------------------------- the LSTM over a sequence */

/* lstm_seq alone, then lstm_seq_grad of its result with a full d [B, T, 6H] and with the h
 * part alone [B, T, H], and lstm_seq_grad of an arbitrary ws (the op is defined for any
 * values); T = 1 has no recurrent product at all. The batch axis is B, or B is static. */
static void test_lstm(void) {
    static const struct {
        int64_t T, H;
        bool batch;
    } cases[] = {{1, 3, true}, {4, 5, true}, {7, 2, true}, {3, 4, false}, {2, 16, true}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        int64_t T = cases[k].T, H = cases[k].H, B = cases[k].batch ? 1 : 2;
        uint8_t mask = cases[k].batch ? 1 : 0;
        char name[96];
        snprintf(name, sizeof name, "lstm_seq T=%lld H=%lld%s", (long long)T, (long long)H,
                 cases[k].batch ? "" : " static B");
        Case *c = case_new(name, "infer");
        Ref in[3] = {farg(c, shp(3, B, T, 4 * H, mask)), arg(c, DT_F32, shp(2, 4 * H, H, 0, 0), -1, 1), REF_NONE};
        Ref ws = node(c, OP_lstm_seq, DT_F32, shp(3, B, T, 6 * H, mask), 2, in, NULL);
        out(c, ws);
        Ref g[3] = {ws, in[1], arg(c, DT_F32, shp(3, B, T, 6 * H, mask), -1, 1)};
        out(c, node(c, OP_lstm_seq_grad, DT_F32, shp(3, B, T, 4 * H, mask), 3, g, NULL));
        g[2] = farg(c, shp(3, B, T, H, mask));
        out(c, node(c, OP_lstm_seq_grad, DT_F32, shp(3, B, T, 4 * H, mask), 3, g, NULL));
        g[0] = arg(c, DT_F32, shp(3, B, T, 6 * H, mask), -1, 1);
        out(c, node(c, OP_lstm_seq_grad, DT_F32, shp(3, B, T, 4 * H, mask), 3, g, NULL));
        run_case(c);
    }
}

/* rnn_seq (tanh and relu) alone, then rnn_seq_grad of its result and of an arbitrary h. */
static void test_rnn(void) {
    static const struct {
        int64_t T, H;
        bool batch;
    } cases[] = {{1, 3, true}, {4, 5, true}, {7, 2, false}, {2, 16, true}};
    static const Op acts[] = {OP_tanh, OP_relu};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
        for (int ai = 0; ai < 2; ai++) {
            int64_t T = cases[k].T, H = cases[k].H, B = cases[k].batch ? 1 : 2;
            uint8_t mask = cases[k].batch ? 1 : 0;
            char name[96];
            snprintf(name, sizeof name, "rnn_seq %s T=%lld H=%lld%s", op_info[acts[ai]].name, (long long)T,
                     (long long)H, cases[k].batch ? "" : " static B");
            Case *c = case_new(name, "infer");
            Attr a = {.fwd_op = acts[ai]};
            Ref in[2] = {farg(c, shp(3, B, T, H, mask)), arg(c, DT_F32, shp(2, H, H, 0, 0), -1, 1)};
            Ref h = node(c, OP_rnn_seq, DT_F32, shp(3, B, T, H, mask), 2, in, &a);
            out(c, h);
            Ref g[3] = {h, in[1], farg(c, shp(3, B, T, H, mask))};
            out(c, node(c, OP_rnn_seq_grad, DT_F32, shp(3, B, T, H, mask), 3, g, &a));
            /* an arbitrary h within tanh's range: |act'| <= 1, as for any output of the op
             * (beyond it, each step would scale the f32 rounding of dP_{t+1} w_hh by up to 8) */
            g[0] = arg(c, DT_F32, shp(3, B, T, H, mask), -1, 1);
            out(c, node(c, OP_rnn_seq_grad, DT_F32, shp(3, B, T, H, mask), 3, g, &a));
            run_case(c);
        }
}

/* gru_seq alone, then gru_seq_grad of its result with a full d [B, T, 5H] and with the h part
 * alone [B, T, H], and gru_seq_grad of an arbitrary ws, as test_lstm. */
static void test_gru(void) {
    static const struct {
        int64_t T, H;
        bool batch;
    } cases[] = {{1, 3, true}, {4, 5, true}, {7, 2, true}, {3, 4, false}, {2, 16, true}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        int64_t T = cases[k].T, H = cases[k].H, B = cases[k].batch ? 1 : 2;
        uint8_t mask = cases[k].batch ? 1 : 0;
        char name[96];
        snprintf(name, sizeof name, "gru_seq T=%lld H=%lld%s", (long long)T, (long long)H,
                 cases[k].batch ? "" : " static B");
        Case *c = case_new(name, "infer");
        Ref in[3] = {farg(c, shp(3, B, T, 3 * H, mask)), arg(c, DT_F32, shp(2, 3 * H, H, 0, 0), -1, 1),
                     arg(c, DT_F32, shp(1, 3 * H, 0, 0, 0), -1, 1)};
        Ref ws = node(c, OP_gru_seq, DT_F32, shp(3, B, T, 5 * H, mask), 3, in, NULL);
        out(c, ws);
        Ref g[3] = {ws, in[1], arg(c, DT_F32, shp(3, B, T, 5 * H, mask), -1, 1)};
        out(c, node(c, OP_gru_seq_grad, DT_F32, shp(3, B, T, 4 * H, mask), 3, g, NULL));
        g[2] = farg(c, shp(3, B, T, H, mask));
        out(c, node(c, OP_gru_seq_grad, DT_F32, shp(3, B, T, 4 * H, mask), 3, g, NULL));
        g[0] = arg(c, DT_F32, shp(3, B, T, 5 * H, mask), -1, 1);
        out(c, node(c, OP_gru_seq_grad, DT_F32, shp(3, B, T, 4 * H, mask), 3, g, NULL));
        run_case(c);
    }
}

/* ---------------------------------------------------------------- whole models */

/* Runs function f on both backends with the same random arguments at batch n; compares the
 * status, every output and the state afterwards. */
static void compare_call(const char *what, Module *m, Jit *j, Interp *in, uint8_t *state, Func *f, int64_t n) {
    ITensor *args = calloc((size_t)f->nargs + 1, sizeof *args);
    ITensor *outs = calloc((size_t)f->nouts + 1, sizeof *outs);
    void **bufs = calloc((size_t)(f->nargs + f->nouts) + 1, sizeof *bufs);
    for (int i = 0; i < f->nargs; i++) {
        /* i32 arguments are labels or token ids: 0 and 1 are valid for any model */
        ArgGen g = f->args[i].dtype == DT_I32 ? (ArgGen){0, 2, false} : (ArgGen){-1, 1, false};
        fill_arg(&args[i], &f->args[i], &g, n);
        bufs[i] = to_buffer(f->args[i].dtype, args[i].data, args[i].numel);
    }
    for (int o = 0; o < f->nouts; o++)
        bufs[f->nargs + o] = calloc((size_t)shape_numel(&f->nodes[f->outs[o].value].shape, n) + 1, 8);
    char err[256];
    int want = interp_run(in, f, n, args, outs, err, sizeof err);
    if (want) fprintf(stderr, "%s: interp: %s\n", what, err);
    void *work = calloc(1, (size_t)jit_work_bytes(j, f->name) + 64);
    int got = jit_lookup(j, f->name)(state, work, (int)n, bufs);
    if (got != want) fprintf(stderr, "%s: compiled code returned %d, the interpreter %d\n", what, got, want);
    CHECK(got == want);
    if (!got && !want) {
        for (int o = 0; o < f->nouts; o++) {
            const Node *v = &f->nodes[f->outs[o].value];
            compare(what, f->outs[o].name, v->dtype, bufs[f->nargs + o], outs[o].data, outs[o].numel);
        }
        /* Adaptive optimizers divide by sqrt(v) + eps: for a gradient below eps, a difference of
           1e-10 between float and double accumulation becomes lr * 1e-2 in the parameter. The
           gradients themselves are compared exactly above (grad, and the optimizer slots). */
        double slack = 0;
        for (int o = 0; o < f->nouts; o++)
            if (!strcmp(f->outs[o].name, "lr") && outs[o].numel == 1) slack = 0.02 * fabs(outs[o].data[0]);
        uint8_t *want_state = calloc(1, (size_t)llvm_state_bytes(m));
        interp_save_state(in, want_state);
        compare_state_slack(what, m, state, want_state, slack);
        /* continue from identical states: differences must not compound over steps */
        interp_load_state(in, state);
        free(want_state);
    }
    for (int i = 0; i < f->nargs; i++) free(args[i].data), free(bufs[i]);
    for (int o = 0; o < f->nouts; o++) itensor_free(&outs[o]), free(bufs[f->nargs + o]);
    free(args);
    free(outs);
    free(bufs);
    free(work);
}

/* NNC_TEST_SMALL=1 (`make unit-tests` sets it in the sanitized build): the examples at
 * batch 8 and 3 instead of their training batch (32 to 128) and 3; the interpreter's paths
 * are the same, and compiled code at the full batch runs in the normal build's run. (At
 * batch 4, Adam's updates of char_lstm and fashion_cnn differ from the interpreter's by
 * more than 1e-5 on the inputs drawn: m / (sqrt(v) + eps) amplifies rounding where a
 * gradient is near 0.) */
static bool small;

/* steps: train steps compared; big: the batch of steps 0 and 2 (0: max_batch); small_big:
 * that batch with NNC_TEST_SMALL. A smaller batch draws fewer random arguments: the draws
 * left out are made at the end, so that the cases after it get the same inputs as in the
 * full run (fashion_cnn's train_step agrees with the interpreter within 1e-5 on those). */
static void test_example_sized(const char *path, int steps, int64_t big, int64_t small_big) {
    int64_t full_big = big;
    if (small) big = small_big;
    int64_t draws_start = rng_draws, full_draws = 0;
    DriverOptions o = {.train_functions = true, .verify = true};
    DriverResult dr;
    if (driver_load(path, &o, &dr)) {
        fprintf(stderr, "%s: does not load\n", path);
        CHECK(0);
        driver_free(&dr);
        return;
    }
    for (int k = 0; k < dr.nmodules; k++) {
        Module *m = dr.modules[k];
        int before = mismatches;
        Jit *j = jit_compile(m, 2);
        if (!j) {
            fprintf(stderr, "%s: model '%s' does not compile\n", path, m->name);
            CHECK(0);
            continue;
        }
        Interp in;
        interp_init(&in, m, false);
        in.seed = SEED;
        char err[256];
        CHECK(interp_run_init(&in, err, sizeof err) == 0);
        uint8_t *state = calloc(1, (size_t)llvm_state_bytes(m)), *want = calloc(1, (size_t)llvm_state_bytes(m));
        uint64_t seed = SEED;
        void *init_args[1] = {&seed};
        void *work = calloc(1, (size_t)jit_work_bytes(j, "init") + 64);
        CHECK(jit_lookup(j, "init")(state, work, 1, init_args) == 0);
        free(work);
        interp_save_state(&in, want);
        char what[256];
        snprintf(what, sizeof what, "%s %s init", path, m->name);
        compare_state(what, m, state, want);
        /* the driver sets the schedule's counters from the data set */
        static const struct {
            const char *name;
            float value;
        } hypers[] = {{"steps_per_epoch", 10}, {"total_steps", 100}};
        for (size_t h = 0; h < sizeof hypers / sizeof hypers[0]; h++) {
            int t = module_find_tensor(m, hypers[h].name);
            if (t >= 0 && m->tensors[t].kind == TK_HYPER) *(float *)(state + m->tensors[t].offset) = hypers[h].value;
        }
        interp_load_state(&in, state);
        static const char *const funcs[] = {"infer", "evaluate", "loss", "grad", "train_step"};
        for (int step = 0; step < steps; step++)
            for (size_t i = 0; i < sizeof funcs / sizeof funcs[0]; i++) {
                Func *f = module_find_func(m, funcs[i]);
                if (!f) continue;
                int64_t n = step == 1 ? 3 : big ? big : m->max_batch;
                int64_t n_full = step == 1 ? 3 : full_big ? full_big : m->max_batch;
                for (int a = 0; a < f->nargs; a++) full_draws += shape_numel(&f->args[a].shape, n_full);
                snprintf(what, sizeof what, "%s %s %s step %d n=%lld", path, m->name, f->name, step, (long long)n);
                compare_call(what, m, j, &in, state, f, n);
            }
        if (mismatches != before) fprintf(stderr, "FAIL %s %s\n", path, m->name);
        cases_run++;
        free(state);
        free(want);
        interp_free(&in);
        jit_free(j);
    }
    driver_free(&dr);
    while (rng_draws - draws_start < full_draws) rnd();
}

static void test_example(const char *path, int steps, int64_t big) {
    test_example_sized(path, steps, big, big);
}

/* Every op of ops.h appears in some case above (a new op must get one). */
static void test_op_coverage(void) {
    static const Op covered[] = {
        OP_input, OP_tensor, OP_const, OP_batch_size, OP_init_fill, OP_rand_uniform, OP_add, OP_sub,
        OP_mul, OP_div, OP_pow, OP_maximum, OP_minimum, OP_eq, OP_ne, OP_lt, OP_le, OP_gt, OP_ge,
        OP_select, OP_neg, OP_exp, OP_log, OP_sqrt, OP_abs, OP_sign, OP_floor, OP_cos, OP_erf,
        OP_cast, OP_stop_gradient, OP_relu, OP_leaky_relu, OP_elu, OP_selu, OP_gelu, OP_sigmoid,
        OP_tanh, OP_softplus, OP_silu, OP_mish, OP_hard_sigmoid, OP_hard_swish, OP_act_grad, OP_sum,
        OP_mean, OP_max, OP_argmax, OP_matmul, OP_reshape, OP_transpose, OP_broadcast, OP_slice,
        OP_concat, OP_gather, OP_scatter_add, OP_softmax, OP_log_softmax, OP_softmax_grad,
        OP_log_softmax_grad, OP_cross_entropy, OP_cross_entropy_grad, OP_store, OP_conv2d, OP_maxpool2d,
        OP_avgpool2d, OP_upsample2d, OP_lrn, OP_conv2d_grad_input, OP_conv2d_grad_weight, OP_maxpool2d_grad,
        OP_lstm_seq, OP_lstm_seq_grad, OP_gru_seq, OP_gru_seq_grad, OP_rnn_seq, OP_rnn_seq_grad};
    bool seen[OP_COUNT] = {0};
    for (size_t i = 0; i < sizeof covered / sizeof covered[0]; i++) seen[covered[i]] = true;
    for (int op = 0; op < OP_COUNT; op++)
        if (!seen[op]) fprintf(stderr, "note: op '%s' has no LLVM backend test\n", op_info[op].name);
}

int main(void) {
    const char *small_env = getenv("NNC_TEST_SMALL");
    small = small_env && *small_env && strcmp(small_env, "0");
    fprintf(stderr, "examples at batch %s and 3\n", small ? "8" : "max_batch");
    test_binary();
    test_int();
    test_unary();
    test_activations();
    test_fusion();
    test_reductions();
    test_matmul();
    test_shapes();
    test_softmax();
    test_cross_entropy();
    test_init_and_rng();
    test_stores();
    test_store_swap();
    test_planner();
    test_spatial();
    static const char *const examples[] = {"examples/logreg.nn", "examples/fashion_mlp.nn",
                                           "examples/autoencoder.nn", "examples/attention_classifier.nn",
                                           "examples/char_lstm.nn"};
    for (size_t i = 0; i < sizeof examples / sizeof examples[0]; i++)
        test_example_sized(examples[i], 3, 0, 8);
    /* the interpreter's convolutions are plain loops: small batches */
    test_example("examples/fashion_cnn.nn", 2, 4);
    /* the LSTM through lowering: two layers, and one step (no recurrence) */
    test_example("tests/ref/lstm_layers/model.nn", 3, 0);
    test_example("tests/gradcheck/layer-lstm-steps1.nn", 3, 0);
    /* every layer and option through lowering (the PyTorch reference models): infer,
       evaluate, loss, grad and train_step (batchnorm's running statistics, dropout's masks
       from the counter-based RNG) against the interpreter, at batch 4 and 3 */
    static const char *const layers[] = {
        "conv2d", "conv2d_options", "conv2d_same", "conv1d", "conv1d_options", "pool_options", "pool_pairs",
        "conv_bn", "upsample_lrn", "upsample_options", "batchnorm", "batchnorm_3d",
        "layernorm_3d", "dropout", "embedding", "rnn_layers", "gru_layers", "attention_cross",
        "multi_head_attention", "shape_ops", "prim_slice"};
    for (size_t i = 0; i < sizeof layers / sizeof layers[0]; i++) {
        char path[128];
        snprintf(path, sizeof path, "tests/ref/%s/model.nn", layers[i]);
        test_example(path, 3, 4);
    }
    test_lstm();
    test_gru();
    test_rnn();
    test_op_coverage();
    fprintf(stderr, "%d cases, %d mismatches\n", cases_run, mismatches);
    return check_done();
}
