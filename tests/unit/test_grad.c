/* test_grad.c — every gradient rule of grad.c against central finite differences (f64).
 *
 * Each case builds a tiny `loss` by hand: y = op(params, inputs), loss = sum(y * r) with r a
 * random input of y's shape (so dy is random, not all ones, which would hide errors such as
 * softmax's), or a loss op directly. grad_build makes `grad`; both functions must pass
 * ir_verify; the interpreter (f64) runs `grad` once and `loss` at w +- eps for every element
 * of every param; the two must agree to 1e-6 (error |a - n| / max(1, |a|, |n|)).
 */
#include "check.h"
#include "nnc.h"

#include <stdlib.h>
#include <string.h>

enum { BATCH = 3 };
static const double EPS = 1e-6, TOL = 1e-6;

typedef struct Case {
    const char *name;
    Arena arena;
    Module *m;
    Func *f;           /* loss */
    int64_t bound[16]; /* i32 args: values drawn from 0 .. bound-1 */
} Case;

static SrcLoc noloc;
static int skipped;  /* cases whose ops the interpreter cannot evaluate yet */

static void case_begin(Case *c, const char *name) {
    memset(c, 0, sizeof *c);
    c->name = name;
    c->m = module_new(&c->arena, name);
    c->f = module_add_func(c->m, "loss");
}

static Shape shp(int rank, const int64_t *dims, uint8_t batch_mask) { return shape_make(rank, dims, batch_mask); }
#define SHAPE(mask, ...) shp((int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (int64_t[]){__VA_ARGS__}, mask)

/* A param read: U(lo, hi) init. */
static Ref param(Case *c, const char *name, Shape s, double lo, double hi) {
    InitSpec init = {.kind = INIT_UNIFORM, .a = lo, .b = hi};
    int t = module_add_tensor(c->m, name, TK_PARAM, DT_F32, s, init, noloc);
    return ir_tensor(c->f, t);
}

static Ref input(Case *c, const char *name, DType dt, Shape s, int64_t bound) {
    int a = func_add_arg(c->f, name, ARG_INPUT, dt, s, noloc);
    c->bound[a] = bound;
    return ir_input(c->f, a);
}

static Ref scalar_f(Case *c, double v) { return ir_scalar(c->f, v); }

/* loss = sum(y * r), r a random input of y's shape */
static void finish_weighted(Case *c, Ref y) {
    Shape s = ir_at(c->f, y)->shape;
    Ref r = input(c, "r", DT_F32, s, 0);
    Ref prod = ir_binary(c->f, OP_mul, y, r);
    uint32_t all = (1u << s.rank) - 1;
    Ref loss = s.rank ? ir_reduce(c->f, OP_sum, prod, all, false) : prod;
    func_add_out(c->f, "loss", OUT_LOSS, loss);
}

static void finish_loss(Case *c, Ref loss) { func_add_out(c->f, "loss", OUT_LOSS, loss); }

static uint64_t rng_state = 12345;
static double uniform(double lo, double hi) {
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return lo + (hi - lo) * (double)(rng_state >> 11) * 0x1.0p-53;
}

static int out_index(const Func *f, OutRole role, const char *name) {
    for (int i = 0; i < f->nouts; i++)
        if (f->outs[i].role == role && (!name || !strcmp(f->outs[i].name, name))) return i;
    return -1;
}

static double run_loss(Interp *in, Func *f, ITensor *args) {
    ITensor outs[4] = {{0}};
    char err[256] = "";
    int rc = interp_run(in, f, BATCH, args, outs, err, sizeof err);
    if (rc) fprintf(stderr, "%s: loss failed: %s\n", f->mod->name, err);
    CHECK(rc == 0);
    double v = rc ? NAN : outs[out_index(f, OUT_LOSS, NULL)].data[0];
    for (int i = 0; i < f->nouts; i++) itensor_free(&outs[i]);
    return v;
}

/* Builds grad, verifies, and compares every param element with finite differences.
 * expect_grad_nodes_without: an op that must not appear in the backward pass (or -1). */
static Func *check_case(Case *c) {
    Module *m = c->m;
    CHECK(ir_verify(c->f, stderr) == 0);
    Func *g = grad_build(m);
    CHECK(g != NULL);
    if (!g) return NULL;
    if (ir_verify(g, stderr)) {
        fprintf(stderr, "%s: grad fails verification\n", c->name);
        ir_print_func(stderr, g);
        check_failures++;
        return g;
    }
    module_layout(m);
    Func *init = module_build_init(m);
    Interp in;
    interp_init(&in, m, true);
    in.seed = 7;
    ITensor none[1] = {{0}};
    char err[256] = "";
    CHECK(interp_run(&in, init, BATCH, NULL, none, err, sizeof err) == 0);

    ITensor args[16] = {{0}};
    for (int a = 0; a < c->f->nargs; a++) {
        const FuncArg *fa = &c->f->args[a];
        args[a].dtype = fa->dtype;
        args[a].rank = fa->shape.rank;
        for (int d = 0; d < fa->shape.rank; d++) args[a].dim[d] = shape_dim(&fa->shape, d, BATCH);
        args[a].numel = shape_numel(&fa->shape, BATCH);
        args[a].data = calloc((size_t)args[a].numel + 1, sizeof(double));
        for (int64_t j = 0; j < args[a].numel; j++)
            args[a].data[j] = fa->dtype == DT_I32 ? (double)(int64_t)uniform(0, (double)c->bound[a]) : uniform(-1, 1);
    }

    ITensor outs[64] = {{0}};
    int rc = interp_run(&in, g, BATCH, args, outs, err, sizeof err);
    if (rc && strstr(err, "is not supported")) {
        /* a layer op (or its gradient kernel) the interpreter does not evaluate yet: the rule
         * is built and verified above, the numbers wait for the kernel */
        printf("%-28s SKIPPED: %s\n", c->name, err);
        skipped++;
        for (int a = 0; a < c->f->nargs; a++) free(args[a].data);
        interp_free(&in);
        return g;
    }
    if (rc) fprintf(stderr, "%s: grad failed: %s\n", c->name, err);
    CHECK(rc == 0);
    double worst = 0;
    for (int t = 0; !rc && t < m->ntensors; t++) {
        if (m->tensors[t].kind != TK_PARAM) continue;
        int gi = out_index(g, OUT_GRAD, m->tensors[t].name);
        CHECK(gi >= 0);
        if (gi < 0) continue;
        double *w = in.tensors[t].data;
        CHECK(outs[gi].numel == in.tensors[t].numel);
        for (int64_t e = 0; e < in.tensors[t].numel; e++) {
            double saved = w[e];
            w[e] = saved + EPS;
            double plus = run_loss(&in, c->f, args);
            w[e] = saved - EPS;
            double minus = run_loss(&in, c->f, args);
            w[e] = saved;
            double numeric = (plus - minus) / (2 * EPS), symbolic = outs[gi].data[e];
            double err_e = fabs(numeric - symbolic) / fmax(1, fmax(fabs(numeric), fabs(symbolic)));
            if (!(err_e <= TOL)) {
                fprintf(stderr, "%s: d/d %s[%lld]: symbolic %.10g, numeric %.10g\n", c->name,
                        m->tensors[t].name, (long long)e, symbolic, numeric);
                check_failures++;
            }
            if (err_e > worst) worst = err_e;
        }
    }
    printf("%-28s max error %.1e\n", c->name, worst);
    for (int i = 0; i < g->nouts; i++) itensor_free(&outs[i]);
    for (int a = 0; a < c->f->nargs; a++) free(args[a].data);
    interp_free(&in);
    return g;
}

static void case_end(Case *c) { arena_free(&c->arena); }

static bool func_has_op(const Func *f, int from, Op op) {
    for (int i = from; i < f->nnodes; i++)
        if (f->nodes[i].op == op) return true;
    return false;
}

/* ---------------------------------------------------------------- elementwise */

static void test_binary_broadcast(void) {
    static const Op ops[] = {OP_add, OP_sub, OP_mul, OP_div, OP_maximum, OP_minimum};
    for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++) {
        Case c;
        case_begin(&c, op_info[ops[k]].name);
        /* positive operands (no division by ~0), overlapping ranges (both sides of max/min) */
        Ref a = param(&c, "a", SHAPE(0, 4), 1.5, 3.5);         /* [4] broadcast over batch */
        Ref b = param(&c, "b", SHAPE(0, 2, 1, 1), 1, 4);       /* [2,1,1] broadcast both ways */
        Ref x = input(&c, "x", DT_F32, SHAPE(2, 2, 1, 4), 0);  /* [2, batch, 4] */
        x = ir_binary(c.f, OP_add, x, scalar_f(&c, 3));        /* in [2, 4) */
        Ref ax = ir_binary(c.f, ops[k], a, x);                 /* [2, batch, 4] */
        Ref y = ir_binary(c.f, ops[k], ax, b);
        Ref z = ir_binary(c.f, ops[k], b, a);                  /* [2, 1, 4]: b first */
        finish_weighted(&c, ir_binary(c.f, OP_add, y, z));
        check_case(&c);
        case_end(&c);
    }
}

static void test_pow(void) {
    Case c;
    case_begin(&c, "pow");
    Ref a = param(&c, "a", SHAPE(0, 5), 0.5, 2);
    Ref b = param(&c, "b", SHAPE(0, 5), -1, 1);
    Ref y = ir_binary(c.f, OP_pow, a, b);                          /* both differentiable */
    y = ir_binary(c.f, OP_add, y, ir_binary(c.f, OP_pow, a, scalar_f(&c, 3)));   /* const 3 */
    y = ir_binary(c.f, OP_add, y, ir_binary(c.f, OP_pow, a, scalar_f(&c, 2)));   /* const 2 */
    y = ir_binary(c.f, OP_add, y, ir_binary(c.f, OP_pow, a, scalar_f(&c, -0.5)));
    y = ir_binary(c.f, OP_add, y, ir_binary(c.f, OP_pow, scalar_f(&c, 1.7), b)); /* const base */
    finish_weighted(&c, y);
    check_case(&c);
    case_end(&c);
}

static void test_select(void) {
    Case c;
    case_begin(&c, "select");
    Ref a = param(&c, "a", SHAPE(0, 6), -1, 1);
    Ref b = param(&c, "b", SHAPE(0, 6), -1, 1);
    Ref x = input(&c, "x", DT_F32, SHAPE(1, 1, 6), 0);
    Ref cond = ir_binary(c.f, OP_gt, x, scalar_f(&c, 0));
    finish_weighted(&c, ir_select(c.f, cond, ir_binary(c.f, OP_mul, a, x), b));
    check_case(&c);
    case_end(&c);
}

static void test_unary(void) {
    static const Op ops[] = {OP_neg, OP_exp, OP_log, OP_sqrt, OP_abs, OP_cos, OP_erf};
    for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++) {
        Case c;
        case_begin(&c, op_info[ops[k]].name);
        bool positive = ops[k] == OP_log || ops[k] == OP_sqrt;
        Ref a = param(&c, "a", SHAPE(0, 2, 3), positive ? 0.2 : -2, 2);
        finish_weighted(&c, ir_unary(c.f, ops[k], a));
        check_case(&c);
        case_end(&c);
    }
}

static void test_activations(void) {
    for (int op = 0; op < OP_COUNT; op++) {
        if (!(op_info[op].flags & OPF_ACT)) continue;
        for (int variant = 0; variant < 2; variant++) {
            Attr at = {0};
            switch (op) {
            case OP_leaky_relu: at.f[0] = variant ? 0.2 : 0.01; break;
            case OP_elu: at.f[0] = variant ? 1.5 : 1.0; break;
            case OP_gelu: at.flag = variant; break;
            case OP_softplus:
                at.f[0] = variant ? 2 : 1;
                at.f[1] = variant ? 3 : 20;  /* variant 1: both branches (x beta > 3 and below) */
                break;
            default:
                if (variant) continue;
            }
            Case c;
            char name[64];
            snprintf(name, sizeof name, "%s%s", op_info[op].name, variant ? " (variant)" : "");
            case_begin(&c, name);
            /* spread over [-5, 5] to reach the flat parts of hard_* and both sides of 0 */
            Ref a = param(&c, "a", SHAPE(0, 4, 5), -5, 5);
            Ref x = input(&c, "x", DT_F32, SHAPE(1, 1, 4, 5), 0);
            Ref y = ir_unary_attr(c.f, (Op)op, ir_binary(c.f, OP_add, a, x), &at);
            finish_weighted(&c, y);
            check_case(&c);
            case_end(&c);
        }
    }
}

/* ---------------------------------------------------------------- reductions */

static void test_reductions(void) {
    static const Op ops[] = {OP_sum, OP_mean, OP_max};
    static const struct {
        uint32_t axes;
        bool keepdims;
    } forms[] = {{1u << 1, false}, {1u << 1, true}, {1u << 0, false}, {5u, true}, {7u, false}, {6u, false}};
    for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++)
        for (size_t j = 0; j < sizeof forms / sizeof forms[0]; j++) {
            Case c;
            char name[64];
            snprintf(name, sizeof name, "%s axes=%x%s", op_info[ops[k]].name, forms[j].axes,
                     forms[j].keepdims ? " keepdims" : "");
            case_begin(&c, name);
            /* x [batch, 3, 4]: axis 0 is the batch axis */
            Ref a = param(&c, "a", SHAPE(0, 3, 4), -1, 1);
            Ref x = input(&c, "x", DT_F32, SHAPE(1, 1, 3, 4), 0);
            Ref v = ir_binary(c.f, OP_mul, a, x);
            finish_weighted(&c, ir_reduce(c.f, ops[k], v, forms[j].axes, forms[j].keepdims));
            check_case(&c);
            case_end(&c);
        }
    /* a reduction of a param alone (no batch) over several axes */
    for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++) {
        Case c;
        char name[64];
        snprintf(name, sizeof name, "%s of param axes 0,2", op_info[ops[k]].name);
        case_begin(&c, name);
        Ref a = param(&c, "a", SHAPE(0, 3, 2, 4), -1, 1);
        finish_weighted(&c, ir_reduce(c.f, ops[k], a, 5u, false));
        check_case(&c);
        case_end(&c);
    }
}

/* max sends the gradient to the first maximum when values tie */
static void test_max_first(void) {
    Case c;
    case_begin(&c, "max ties");
    Ref a = param(&c, "a", SHAPE(0, 2, 3), 0, 1);
    Ref y = ir_reduce(c.f, OP_max, a, 2u, false);  /* over axis 1 */
    finish_loss(&c, ir_reduce(c.f, OP_sum, y, 1u, false));
    CHECK(ir_verify(c.f, stderr) == 0);
    Func *g = grad_build(c.m);
    CHECK(g && ir_verify(g, stderr) == 0);
    module_layout(c.m);
    Func *init = module_build_init(c.m);
    Interp in;
    interp_init(&in, c.m, true);
    ITensor none[1] = {{0}}, outs[4] = {{0}};
    char err[256];
    CHECK(interp_run(&in, init, 1, NULL, none, err, sizeof err) == 0);
    double v[6] = {1, 5, 5, 2, 2, 0};
    memcpy(in.tensors[0].data, v, sizeof v);
    CHECK(interp_run(&in, g, 1, NULL, outs, err, sizeof err) == 0);
    double expect[6] = {0, 1, 0, 1, 0, 0};
    for (int i = 0; i < 6; i++) CHECK_NEAR(outs[1].data[i], expect[i], 1e-12);
    for (int i = 0; i < g->nouts; i++) itensor_free(&outs[i]);
    interp_free(&in);
    case_end(&c);
}

/* ---------------------------------------------------------------- matmul */

static void test_matmul(void) {
    for (int variant = 0; variant < 4; variant++) {
        bool ta = variant & 1, tb = variant & 2;
        char name[64];
        Case c;
        /* batched: a [2, M, K], b [2, K, N] (stored transposed when trans) */
        snprintf(name, sizeof name, "matmul batched%s%s", ta ? " ta" : "", tb ? " tb" : "");
        case_begin(&c, name);
        Ref a = param(&c, "a", ta ? SHAPE(0, 2, 4, 3) : SHAPE(0, 2, 3, 4), -1, 1);
        Ref b = param(&c, "b", tb ? SHAPE(0, 2, 5, 4) : SHAPE(0, 2, 4, 5), -1, 1);
        finish_weighted(&c, ir_matmul(c.f, a, b, ta, tb));
        check_case(&c);
        case_end(&c);

        /* shared 2-D b: a [2, 3, M, K] @ b [K, N] */
        snprintf(name, sizeof name, "matmul shared b%s%s", ta ? " ta" : "", tb ? " tb" : "");
        case_begin(&c, name);
        a = param(&c, "a", ta ? SHAPE(0, 2, 3, 4, 3) : SHAPE(0, 2, 3, 3, 4), -1, 1);
        b = param(&c, "b", tb ? SHAPE(0, 5, 4) : SHAPE(0, 4, 5), -1, 1);
        finish_weighted(&c, ir_matmul(c.f, a, b, ta, tb));
        check_case(&c);
        case_end(&c);

        /* 2-D with a batch axis: x [batch, K] @ W (dense), and W^T @ x^T forms */
        snprintf(name, sizeof name, "matmul dense%s%s", ta ? " ta" : "", tb ? " tb" : "");
        case_begin(&c, name);
        Ref x = input(&c, "x", DT_F32, ta ? SHAPE(2, 4, 1) : SHAPE(1, 1, 4), 0);
        Ref xa = ir_binary(c.f, OP_mul, x, param(&c, "s", ta ? SHAPE(0, 4, 1) : SHAPE(0, 4), 0.5, 1.5));
        b = param(&c, "w", tb ? SHAPE(0, 5, 4) : SHAPE(0, 4, 5), -1, 1);
        finish_weighted(&c, ir_matmul(c.f, xa, b, ta, tb));
        check_case(&c);
        case_end(&c);

        /* shared b with the batch on a leading axis: x [batch, 3, K] @ W */
        snprintf(name, sizeof name, "matmul seq%s%s", ta ? " ta" : "", tb ? " tb" : "");
        case_begin(&c, name);
        x = input(&c, "x", DT_F32, ta ? SHAPE(1, 1, 4, 3) : SHAPE(1, 1, 3, 4), 0);
        xa = ir_binary(c.f, OP_mul, x, param(&c, "s", ta ? SHAPE(0, 4, 3) : SHAPE(0, 3, 4), 0.5, 1.5));
        b = param(&c, "w", tb ? SHAPE(0, 5, 4) : SHAPE(0, 4, 5), -1, 1);
        finish_weighted(&c, ir_matmul(c.f, xa, b, ta, tb));
        check_case(&c);
        case_end(&c);
    }
}

/* ---------------------------------------------------------------- shape ops */

static void test_shape_ops(void) {
    Case c;
    case_begin(&c, "reshape");
    Ref a = param(&c, "a", SHAPE(0, 2, 6), -1, 1);
    finish_weighted(&c, ir_reshape(c.f, a, SHAPE(0, 3, 2, 2)));
    check_case(&c);
    case_end(&c);

    case_begin(&c, "reshape batch");
    Ref x = input(&c, "x", DT_F32, SHAPE(1, 1, 6), 0);
    a = param(&c, "a", SHAPE(0, 6), -1, 1);
    finish_weighted(&c, ir_reshape(c.f, ir_binary(c.f, OP_mul, x, a), SHAPE(1, 1, 2, 3)));
    check_case(&c);
    case_end(&c);

    case_begin(&c, "transpose");
    a = param(&c, "a", SHAPE(0, 2, 3, 4), -1, 1);
    finish_weighted(&c, ir_transpose(c.f, a, (int[]){2, 0, 1}));
    check_case(&c);
    case_end(&c);

    case_begin(&c, "broadcast");
    a = param(&c, "a", SHAPE(0, 3, 1), -1, 1);
    Ref b = param(&c, "b", shape_scalar(), -1, 1);
    Ref y = ir_broadcast(c.f, a, SHAPE(2, 2, 1, 3, 4));  /* [2, batch, 3, 4] */
    y = ir_binary(c.f, OP_add, y, ir_broadcast(c.f, b, SHAPE(2, 2, 1, 3, 4)));
    finish_weighted(&c, y);
    check_case(&c);
    case_end(&c);

    case_begin(&c, "broadcast to batch");
    a = param(&c, "a", SHAPE(0, 1, 4), -1, 1);
    finish_weighted(&c, ir_broadcast(c.f, a, SHAPE(1, 1, 4)));
    check_case(&c);
    case_end(&c);
}

static void test_slice(void) {
    static const struct {
        const char *name;
        int64_t start[3], step[3], out[3];
    } cases[] = {
        {"slice step 1", {1, 0, 2}, {1, 1, 1}, {2, 5, 3}},
        {"slice whole", {0, 0, 0}, {1, 1, 1}, {4, 5, 6}},
        {"slice step 2", {0, 1, 1}, {2, 2, 3}, {2, 2, 2}},
        {"slice step -1", {3, 4, 5}, {-1, -1, -1}, {4, 5, 6}},
        {"slice step -2", {3, 4, 4}, {-2, -3, -2}, {2, 2, 2}},
        {"slice one element", {2, 3, 5}, {1, 7, 1}, {1, 1, 1}},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        Case c;
        case_begin(&c, cases[k].name);
        Ref a = param(&c, "a", SHAPE(0, 4, 5, 6), -1, 1);
        finish_weighted(&c, ir_slice(c.f, a, cases[k].start, cases[k].step,
                                     shape_make(3, cases[k].out, 0)));
        check_case(&c);
        case_end(&c);
    }
    /* with a batch axis taken whole */
    Case c;
    case_begin(&c, "slice batch");
    Ref x = input(&c, "x", DT_F32, SHAPE(1, 1, 6), 0);
    Ref a = param(&c, "a", SHAPE(0, 6), -1, 1);
    finish_weighted(&c, ir_slice(c.f, ir_binary(c.f, OP_mul, x, a), (int64_t[]){0, 1}, (int64_t[]){1, 2},
                                 SHAPE(1, 1, 3)));
    check_case(&c);
    case_end(&c);
    /* rank 6 with step 2: the selection-matrix path */
    case_begin(&c, "slice rank 6 step 2");
    a = param(&c, "a", SHAPE(0, 1, 2, 1, 2, 1, 5), -1, 1);
    finish_weighted(&c, ir_slice(c.f, a, (int64_t[]){0, 0, 0, 1, 0, 0}, (int64_t[]){1, 1, 1, 1, 1, 2},
                                 SHAPE(0, 1, 2, 1, 1, 1, 3)));
    check_case(&c);
    case_end(&c);
}

static void test_concat(void) {
    Case c;
    case_begin(&c, "concat");
    Ref a = param(&c, "a", SHAPE(0, 2, 3), -1, 1);
    Ref x = input(&c, "x", DT_F32, SHAPE(0, 2, 2), 0);  /* no gradient wanted */
    Ref b = param(&c, "b", SHAPE(0, 2, 4), -1, 1);
    Ref parts[3] = {a, x, b};
    finish_weighted(&c, ir_concat(c.f, 3, parts, 1));
    check_case(&c);
    case_end(&c);

    case_begin(&c, "concat many");  /* more than IR_MAX_INPUTS parts: chained concats */
    Ref many[10];
    char name[10][16];
    for (int i = 0; i < 10; i++) {
        snprintf(name[i], sizeof name[i], "p%d", i);
        many[i] = param(&c, name[i], SHAPE(0, 1, 2), -1, 1);
    }
    finish_weighted(&c, ir_concat(c.f, 10, many, 0));
    check_case(&c);
    case_end(&c);
}

static void test_gather(void) {
    Case c;
    case_begin(&c, "gather");
    Ref table = param(&c, "table", SHAPE(0, 5, 3), -1, 1);
    Ref idx = input(&c, "idx", DT_I32, SHAPE(1, 1, 4), 5);  /* repeats are likely */
    Attr none = {0};
    Ref in[2] = {table, idx};
    Shape s = SHAPE(1, 1, 4, 3);
    Ref y = ir_node(c.f, OP_gather, DT_F32, s, 2, in, &none);
    finish_weighted(&c, y);
    check_case(&c);
    case_end(&c);
}

/* ---------------------------------------------------------------- fused kernels */

static void test_softmax(void) {
    static const Op ops[] = {OP_softmax, OP_log_softmax};
    for (int k = 0; k < 2; k++) {
        Case c;
        case_begin(&c, op_info[ops[k]].name);
        Ref a = param(&c, "a", SHAPE(0, 2, 5), -2, 2);
        Ref x = input(&c, "x", DT_F32, SHAPE(1, 1, 2, 5), 0);
        finish_weighted(&c, ir_unary(c.f, ops[k], ir_binary(c.f, OP_add, a, x)));
        check_case(&c);
        case_end(&c);
    }
}

static void test_cross_entropy(void) {
    for (int variant = 0; variant < 4; variant++) {
        Case c;
        bool smooth = variant & 1, weighted = variant & 2;
        char name[64];
        snprintf(name, sizeof name, "cross_entropy%s%s", smooth ? " smoothing" : "", weighted ? " weight" : "");
        case_begin(&c, name);
        Ref w = param(&c, "w", SHAPE(0, 6, 4), -1, 1);
        Ref x = input(&c, "x", DT_F32, SHAPE(1, 1, 6), 0);
        Ref logits = ir_matmul(c.f, x, w, false, false);      /* [batch, 4] */
        Ref labels = input(&c, "y", DT_I32, SHAPE(1, 1), 4);
        Ref in[3] = {logits, labels, REF_NONE};
        int nin = 2;
        if (weighted) {
            static const double cw[4] = {0.5, 1.0, 2.0, 0.25};
            Attr ca = {.data = cw};
            in[nin++] = ir_node(c.f, OP_const, DT_F32, SHAPE(0, 4), 0, NULL, &ca);
        }
        Attr at = {.f = {smooth ? 0.1 : 0}};
        Ref loss = ir_node(c.f, OP_cross_entropy, DT_F32, shape_scalar(), nin, in, &at);
        /* scaled, so that dloss is not 1 */
        finish_loss(&c, ir_binary(c.f, OP_mul, loss, scalar_f(&c, 1.7)));
        check_case(&c);
        case_end(&c);
    }
    /* sequence logits [batch, T, C] */
    Case c;
    case_begin(&c, "cross_entropy 3-D");
    Ref a = param(&c, "a", SHAPE(0, 3, 5), -2, 2);
    Ref x = input(&c, "x", DT_F32, SHAPE(1, 1, 3, 5), 0);
    Ref logits = ir_binary(c.f, OP_mul, a, x);
    Ref labels = input(&c, "y", DT_I32, SHAPE(1, 1, 3), 5);
    Ref in[2] = {logits, labels};
    Attr at = {.f = {0.2}};
    finish_loss(&c, ir_node(c.f, OP_cross_entropy, DT_F32, shape_scalar(), 2, in, &at));
    check_case(&c);
    case_end(&c);
}

/* ---------------------------------------------------------------- layers with kernels */

/* x [batch, C, H, W] = input * p (so dx is checked through p), spatial op with attrs `at`. */
static Ref spatial_input(Case *c, int64_t C, int64_t H, int64_t W) {
    Ref x = input(c, "x", DT_F32, SHAPE(1, 1, C, H, W), 0);
    return ir_binary(c->f, OP_mul, x, param(c, "p", SHAPE(0, C, H, W), 0.5, 1.5));
}

static int64_t window_count(int64_t in, int64_t k, int64_t dil, int64_t stride, int64_t lo, int64_t hi) {
    return (in + lo + hi - dil * (k - 1) - 1) / stride + 1;
}

static void test_conv2d(void) {
    static const struct {
        const char *name;
        int64_t groups, kh, kw, sh, sw, dh, dw, pad[4];
        bool bias;
    } cases[] = {
        {"conv2d 3x3 pad 1", 1, 3, 3, 1, 1, 1, 1, {1, 1, 1, 1}, true},
        {"conv2d groups 2 stride 2 asym pad", 2, 3, 2, 2, 2, 1, 1, {1, 0, 2, 1}, true},
        {"conv2d dilation 2 stride (2,1)", 1, 3, 3, 2, 1, 2, 2, {2, 2, 2, 2}, false},
        {"conv2d depthwise", 4, 2, 3, 1, 2, 1, 1, {0, 1, 1, 0}, true},
        {"conv2d 1x1", 1, 1, 1, 1, 1, 1, 1, {0, 0, 0, 0}, false},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        Case c;
        case_begin(&c, cases[k].name);
        const int64_t C = 4, O = 4, H = 5, W = 6;
        Ref x = spatial_input(&c, C, H, W);
        Ref w = param(&c, "w", SHAPE(0, O, C / cases[k].groups, cases[k].kh, cases[k].kw), -1, 1);
        Ref in[3] = {x, w, REF_NONE};
        if (cases[k].bias) in[2] = param(&c, "b", SHAPE(0, O), -1, 1);
        Attr at = {0};
        at.step[0] = cases[k].sh;
        at.step[1] = cases[k].sw;
        for (int i = 0; i < 4; i++) at.start[i] = cases[k].pad[i];
        at.perm[0] = (int)cases[k].dh;
        at.perm[1] = (int)cases[k].dw;
        at.perm[2] = (int)cases[k].groups;
        int64_t ho = window_count(H, cases[k].kh, cases[k].dh, cases[k].sh, cases[k].pad[0], cases[k].pad[2]);
        int64_t wo = window_count(W, cases[k].kw, cases[k].dw, cases[k].sw, cases[k].pad[1], cases[k].pad[3]);
        Ref y = ir_node(c.f, OP_conv2d, DT_F32, SHAPE(1, 1, O, ho, wo), cases[k].bias ? 3 : 2, in, &at);
        finish_weighted(&c, y);
        check_case(&c);
        case_end(&c);
    }
}

static void test_pooling(void) {
    static const struct {
        const char *name;
        int64_t kh, kw, sh, sw, ph, pw;
    } cases[] = {
        {"2x2 stride 2", 2, 2, 2, 2, 0, 0},
        {"3x3 stride 2 pad 1", 3, 3, 2, 2, 1, 1},
        {"3x2 stride 1", 3, 2, 1, 1, 0, 1},
    };
    static const Op ops[] = {OP_maxpool2d, OP_avgpool2d};
    for (int o = 0; o < 2; o++)
        for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
            Case c;
            char name[64];
            snprintf(name, sizeof name, "%s %s", op_info[ops[o]].name, cases[k].name);
            case_begin(&c, name);
            const int64_t C = 2, H = 5, W = 6;
            Ref x = spatial_input(&c, C, H, W);
            Attr at = {0};
            at.perm[0] = (int)cases[k].kh;
            at.perm[1] = (int)cases[k].kw;
            at.step[0] = cases[k].sh;
            at.step[1] = cases[k].sw;
            at.start[0] = at.start[2] = cases[k].ph;
            at.start[1] = at.start[3] = cases[k].pw;
            int64_t ho = window_count(H, cases[k].kh, 1, cases[k].sh, cases[k].ph, cases[k].ph);
            int64_t wo = window_count(W, cases[k].kw, 1, cases[k].sw, cases[k].pw, cases[k].pw);
            finish_weighted(&c, ir_node(c.f, ops[o], DT_F32, SHAPE(1, 1, C, ho, wo), 1, &x, &at));
            check_case(&c);
            case_end(&c);
        }
}

static void test_upsample(void) {
    static const struct {
        const char *name;
        int64_t sh, sw;
        int bilinear;
    } cases[] = {
        {"upsample nearest 2x3", 2, 3, 0},
        {"upsample bilinear 2x2", 2, 2, 1},
        {"upsample bilinear 3x2", 3, 2, 1},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        Case c;
        case_begin(&c, cases[k].name);
        const int64_t C = 2, H = 3, W = 4;
        Ref x = spatial_input(&c, C, H, W);
        Attr at = {.flag = cases[k].bilinear};
        at.perm[0] = (int)cases[k].sh;
        at.perm[1] = (int)cases[k].sw;
        finish_weighted(&c, ir_node(c.f, OP_upsample2d, DT_F32, SHAPE(1, 1, C, H * cases[k].sh, W * cases[k].sw), 1,
                                    &x, &at));
        check_case(&c);
        case_end(&c);
    }
}

static void test_lrn(void) {
    for (int variant = 0; variant < 3; variant++) {
        Case c;
        static const char *const names[] = {"lrn size 3", "lrn size 4", "lrn rank 3"};
        case_begin(&c, names[variant]);
        Ref x = variant == 2 ? ir_binary(c.f, OP_mul, input(&c, "x", DT_F32, SHAPE(1, 1, 5, 4), 0),
                                         param(&c, "p", SHAPE(0, 5, 4), 0.5, 1.5))
                             : spatial_input(&c, 5, 2, 3);
        Attr at = {.f = {0.5, 0.75, 1.5}};
        at.perm[0] = variant == 1 ? 4 : 3;
        finish_weighted(&c, ir_node(c.f, OP_lrn, DT_F32, ir_at(c.f, x)->shape, 1, &x, &at));
        check_case(&c);
        case_end(&c);
    }
}

/* ws = lstm_seq(xw, w_hh) with xw = x * p (p [T, 4H] a param, so d xw reaches a gradient):
 * loss = sum(ws * r) differentiates every part of ws (h, c and the gates: the full d), and
 * loss = sum(h * r) only the h part (grad.c hands lstm_seq_grad the [B, T, H] gradient). */
static void test_lstm(void) {
    static const struct {
        const char *name;
        int64_t T, H;
        bool h_only;
    } cases[] = {
        {"lstm_seq T=3 H=2, d of all of ws", 3, 2, false},
        {"lstm_seq T=1 H=3, d of all of ws", 1, 3, false},
        {"lstm_seq T=4 H=3, d of h", 4, 3, true},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        int64_t T = cases[k].T, H = cases[k].H;
        Case c;
        case_begin(&c, cases[k].name);
        Ref x = input(&c, "x", DT_F32, SHAPE(1, 1, T, 4 * H), 0);
        Ref in[2] = {ir_binary(c.f, OP_mul, x, param(&c, "p", SHAPE(0, T, 4 * H), 0.5, 2)),
                     param(&c, "w_hh", SHAPE(0, 4 * H, H), -1, 1)};
        Ref ws = ir_node(c.f, OP_lstm_seq, DT_F32, SHAPE(1, 1, T, 6 * H), 2, in, NULL);
        if (cases[k].h_only) {
            int64_t start[IR_MAX_RANK] = {0}, step[IR_MAX_RANK] = {1, 1, 1};
            ws = ir_slice(c.f, ws, start, step, SHAPE(1, 1, T, H));
        }
        finish_weighted(&c, ws);
        int nfwd = c.f->nnodes;
        Func *g = check_case(&c);
        /* the kernel's d operand: [B, T, 6H], or the h part alone */
        int64_t width = -1;
        for (int i = nfwd; g && i < g->nnodes; i++)
            if (g->nodes[i].op == OP_lstm_seq_grad) width = g->nodes[g->nodes[i].in[2]].shape.dim[2];
        CHECK(width == (cases[k].h_only ? H : 6 * H));
        case_end(&c);
    }
}

/* h = rnn_seq(xw, w_hh), tanh and relu. */
static void test_rnn(void) {
    static const struct {
        const char *name;
        int64_t T, H;
        Op act;
    } cases[] = {
        {"rnn_seq tanh T=3 H=2", 3, 2, OP_tanh},
        {"rnn_seq tanh T=1 H=3", 1, 3, OP_tanh},
        {"rnn_seq relu T=4 H=3", 4, 3, OP_relu},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        int64_t T = cases[k].T, H = cases[k].H;
        Case c;
        case_begin(&c, cases[k].name);
        Ref x = input(&c, "x", DT_F32, SHAPE(1, 1, T, H), 0);
        Ref in[2] = {ir_binary(c.f, OP_mul, x, param(&c, "p", SHAPE(0, T, H), 0.5, 2)),
                     param(&c, "w_hh", SHAPE(0, H, H), -1, 1)};
        Attr a = {.fwd_op = cases[k].act};
        finish_weighted(&c, ir_node(c.f, OP_rnn_seq, DT_F32, SHAPE(1, 1, T, H), 2, in, &a));
        check_case(&c);
        case_end(&c);
    }
}

/* ws = gru_seq(xw, w_hh, b_hh) as test_lstm: every part of ws, or only the h part; the rule
 * also differentiates b_hh. */
static void test_gru(void) {
    static const struct {
        const char *name;
        int64_t T, H;
        bool h_only;
    } cases[] = {
        {"gru_seq T=3 H=2, d of all of ws", 3, 2, false},
        {"gru_seq T=1 H=3, d of all of ws", 1, 3, false},
        {"gru_seq T=4 H=3, d of h", 4, 3, true},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        int64_t T = cases[k].T, H = cases[k].H;
        Case c;
        case_begin(&c, cases[k].name);
        Ref x = input(&c, "x", DT_F32, SHAPE(1, 1, T, 3 * H), 0);
        Ref in[3] = {ir_binary(c.f, OP_mul, x, param(&c, "p", SHAPE(0, T, 3 * H), 0.5, 2)),
                     param(&c, "w_hh", SHAPE(0, 3 * H, H), -1, 1), param(&c, "b_hh", SHAPE(0, 3 * H), -1, 1)};
        Ref ws = ir_node(c.f, OP_gru_seq, DT_F32, SHAPE(1, 1, T, 5 * H), 3, in, NULL);
        if (cases[k].h_only) {
            int64_t start[IR_MAX_RANK] = {0}, step[IR_MAX_RANK] = {1, 1, 1};
            ws = ir_slice(c.f, ws, start, step, SHAPE(1, 1, T, H));
        }
        finish_weighted(&c, ws);
        int nfwd = c.f->nnodes;
        Func *g = check_case(&c);
        int64_t width = -1;
        for (int i = nfwd; g && i < g->nnodes; i++)
            if (g->nodes[i].op == OP_gru_seq_grad) width = g->nodes[g->nodes[i].in[2]].shape.dim[2];
        CHECK(width == (cases[k].h_only ? H : 5 * H));
        case_end(&c);
    }
}

/* ---------------------------------------------------------------- graph structure */

static void test_used_twice(void) {
    Case c;
    case_begin(&c, "value used twice");
    Ref a = param(&c, "a", SHAPE(0, 4), -1, 1);
    Ref again = ir_tensor(c.f, 0);  /* a second read of the same param */
    Ref t = ir_unary(c.f, OP_tanh, a);
    Ref y = ir_binary(c.f, OP_mul, t, t);                    /* t used twice */
    y = ir_binary(c.f, OP_add, y, ir_binary(c.f, OP_mul, t, again));
    y = ir_binary(c.f, OP_add, y, ir_unary(c.f, OP_exp, a));
    finish_weighted(&c, y);
    check_case(&c);
    case_end(&c);
}

/* stop_gradient: loss = sum(stop(a) * a) has gradient stop(a) = a, not 2a */
static void test_stop_gradient(void) {
    Case c;
    case_begin(&c, "stop_gradient");
    Ref a = param(&c, "a", SHAPE(0, 3), -1, 1);
    Ref s = ir_unary(c.f, OP_stop_gradient, a);
    finish_loss(&c, ir_reduce(c.f, OP_sum, ir_binary(c.f, OP_mul, s, a), 1u, false));
    Func *g = grad_build(c.m);
    CHECK(g && ir_verify(g, stderr) == 0);
    module_layout(c.m);
    Func *init = module_build_init(c.m);
    Interp in;
    interp_init(&in, c.m, true);
    ITensor none[1] = {{0}}, outs[4] = {{0}};
    char err[256];
    CHECK(interp_run(&in, init, 1, NULL, none, err, sizeof err) == 0);
    CHECK(interp_run(&in, g, 1, NULL, outs, err, sizeof err) == 0);
    for (int i = 0; i < 3; i++) CHECK_NEAR(outs[1].data[i], in.tensors[0].data[i], 1e-12);
    for (int i = 0; i < g->nouts; i++) itensor_free(&outs[i]);
    interp_free(&in);
    case_end(&c);
}

/* a param the loss does not use gets zeros; values that do not reach a param get no
 * gradient work (no act_grad for relu(x) of an input) */
static void test_pruning(void) {
    Case c;
    case_begin(&c, "pruning");
    Ref a = param(&c, "a", SHAPE(0, 3), -1, 1);
    param(&c, "unused", SHAPE(0, 2), -1, 1);
    Ref x = input(&c, "x", DT_F32, SHAPE(1, 1, 3), 0);
    Ref rx = ir_unary(c.f, OP_relu, x);                    /* input only: no gradient */
    Ref y = ir_binary(c.f, OP_mul, rx, a);
    finish_weighted(&c, y);
    int nfwd = c.f->nnodes;
    Func *g = check_case(&c);
    CHECK(g && !func_has_op(g, nfwd, OP_act_grad));
    int gi = g ? out_index(g, OUT_GRAD, "unused") : -1;
    CHECK(gi >= 0 && g->nodes[g->outs[gi].value].op == OP_const && g->nodes[g->outs[gi].value].attr.f[0] == 0);
    CHECK(g && grad_depends_on(g, g->outs[0].value, 0));
    CHECK(g && !grad_depends_on(g, g->outs[0].value, 1));
    case_end(&c);
}

/* the grad function keeps the loss's stores and metric outputs */
static void test_keeps_stores_and_metrics(void) {
    Case c;
    case_begin(&c, "stores and metrics");
    Ref a = param(&c, "a", SHAPE(0, 3), -1, 1);
    InitSpec zero = {.kind = INIT_ZEROS};
    int st = module_add_tensor(c.m, "running", TK_STATE, DT_F32, SHAPE(0, 3), zero, noloc);
    Ref x = input(&c, "x", DT_F32, SHAPE(1, 1, 3), 0);
    Ref mean = ir_reduce(c.f, OP_mean, ir_binary(c.f, OP_mul, x, a), 1u, false);
    ir_store(c.f, st, ir_binary(c.f, OP_add, ir_binary(c.f, OP_mul, ir_tensor(c.f, st), scalar_f(&c, 0.9)),
                                ir_binary(c.f, OP_mul, mean, scalar_f(&c, 0.1))));
    Ref loss = ir_reduce(c.f, OP_sum, ir_unary(c.f, OP_sigmoid, mean), 1u, false);
    func_add_out(c.f, "loss", OUT_LOSS, loss);
    func_add_out(c.f, "accuracy", OUT_METRIC, ir_reduce(c.f, OP_mean, mean, 1u, false));
    Func *g = check_case(&c);
    CHECK(g && func_has_op(g, 0, OP_store));
    CHECK(g && out_index(g, OUT_METRIC, "accuracy") >= 0 && out_index(g, OUT_LOSS, "loss") >= 0);
    case_end(&c);
}

/* a model without a loss cannot be differentiated: NULL and a message */
static void test_no_loss(void) {
    Case c;
    case_begin(&c, "no loss");
    Ref a = param(&c, "a", SHAPE(0, 3), -1, 1);
    func_add_out(c.f, "y", OUT_OUTPUT, a);
    CHECK(grad_build(c.m) == NULL);
    case_end(&c);
}

int main(void) {
    test_binary_broadcast();
    test_pow();
    test_select();
    test_unary();
    test_activations();
    test_reductions();
    test_max_first();
    test_matmul();
    test_shape_ops();
    test_slice();
    test_concat();
    test_gather();
    test_softmax();
    test_cross_entropy();
    test_conv2d();
    test_pooling();
    test_upsample();
    test_lrn();
    test_lstm();
    test_gru();
    test_rnn();
    test_used_twice();
    test_stop_gradient();
    test_pruning();
    test_keeps_stores_and_metrics();
    test_no_loss();
    if (skipped) printf("%d case(s) skipped: the interpreter lacks their ops\n", skipped);
    return check_done();
}
