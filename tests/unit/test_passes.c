/* test_passes.c — the optimization passes: hand-built cases per rule, and differential tests.
 *
 * Hand-built cases build a small function twice (two modules), run a pass on the second copy,
 * check the IR it leaves (node counts, which node an output now is) and that the interpreter
 * gives the same numbers for both copies.
 *
 * Differential tests load every example model (every .nn file under examples/) at -O0, then
 * once more per configuration (each pass alone, -O1, -O2), and run every function but init
 * through the interpreter on the same random inputs from the same initial state (the -O0
 * module once per function and mode, the reference of every configuration): outputs
 * (loss, metrics, gradients) and the module state after the call (running statistics, and
 * after train_step the parameters and optimizer slots) must agree
 *   - in f64 mode (one call) within 1e-6 (max-norm relative error per tensor), 1e-5 where
 *     fold runs (folded constants are computed in f32, as compiled code computes them, and
 *     an f64 run can amplify their rounding where it cancels; see TOL64_FOLDED), 1e-12 for
 *     bnfold,
 *   - in f32 mode (two calls of train_step) exactly: every rewrite is exact, and folding
 *     rounds like the run time; except bnfold (infer and evaluate only), within 1e-5.
 * Functions using an op the interpreter does not support are skipped with a printed note.
 * prepare (derived tensors) is compared on its own, -O2 without it against -O2 with it, and
 * must be exact like the passes that do not fold.
 * The node count of every function at -O0, -O1 and -O2 is printed (docs/passes.md's table),
 * and that of `prepare` at -O2 (derived tensors, prepare.c).
 */
#include "check.h"
#include "nnc.h"

#include <glob.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { MAX_OUTS = 256, MAX_DIFFS = 8 /* modules compared against one reference */ };
/* NNC_TEST_SMALL=1 (`make unit-tests` and tests/run.sh set it in the sanitized build, where
 * the interpreter is slow): the same code paths, fewer numbers. The runs use batch 2 instead
 * of 3 (still more than one sample; test_derived stays at 3), and the examples' modules
 * after each pass, after -O1 and with prepare are compared in f32 mode only (two calls of
 * train_step); the -O0 reference and the -O2 module still run in f64 mode as well. */
static bool small_run;
static int64_t test_batch = 3;
/* f64 mode: 1e-6, the stated bar, for the passes that do not fold (they give exactly 0).
 * Folded constants carry f32 rounding (~6e-8 relative), as the compiled code's constants
 * do, and an f64 run amplifies it where it cancels: onecycle's first learning rate is
 * 0.005 - 0.0048 = 0.0002, so 6e-8 of 0.0048 is 1.4e-6 of 0.0002 (autoencoder's `lr`
 * output differs by 1.2e-6). So 1e-5 where fold runs; f32 mode stays bit for bit. */
static const double TOL64 = 1e-6, TOL64_FOLDED = 1e-5;

/* Tolerances of one comparison: f64 mode, f32 mode (0: bit for bit). bnfold is the one pass
 * that is not bit-exact in f32 (W * a is rounded before the product). */
typedef struct Tol {
    double f64, f32;
} Tol;
static const Tol EXACT = {TOL64, 0}, FOLDED = {TOL64_FOLDED, 0}, BNFOLD = {1e-12, 1e-5},
                 ALL = {TOL64_FOLDED, 1e-5};

static SrcLoc noloc;
static int tests_run;

/* ================================================================ helpers */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static double uniform(double lo, double hi) {
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return lo + (hi - lo) * (double)(rng_state >> 11) * 0x1.0p-53;
}

#define SHAPE(mask, ...)                                                                    \
    shape_make((int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)),                   \
               (int64_t[]){__VA_ARGS__}, mask)

static int count_op(const Func *f, Op op) {
    int n = 0;
    for (int i = 0; i < f->nnodes; i++) n += f->nodes[i].op == op;
    return n;
}

static const Node *out_node(const Func *f, const char *name) {
    for (int i = 0; i < f->nouts; i++)
        if (!strcmp(f->outs[i].name, name)) return &f->nodes[f->outs[i].value];
    return NULL;
}

static int verify_module(const Module *m) {
    int problems = 0;
    for (int i = 0; i < m->nfuncs; i++) problems += ir_verify(m->funcs[i], stderr);
    return problems;
}

/* i32 arguments index tables (gather), label losses (cross_entropy) or scatter_add: the
 * largest value each may take so that every index is in range; 2 when nothing says. */
static Ref source_input(const Func *f, Ref r) {
    while (f->nodes[r].op == OP_reshape || f->nodes[r].op == OP_slice ||
           f->nodes[r].op == OP_transpose || f->nodes[r].op == OP_broadcast)
        r = f->nodes[r].in[0];
    return f->nodes[r].op == OP_input ? r : REF_NONE;
}

static void index_bounds(const Func *f, int64_t *bound) {
    for (int a = 0; a < f->nargs; a++) bound[a] = INT64_MAX;
    for (int i = 0; i < f->nnodes; i++) {
        const Node *n = &f->nodes[i];
        Ref idx = REF_NONE;
        int64_t limit = 0;
        if (n->op == OP_gather) {
            idx = n->in[1];
            limit = f->nodes[n->in[0]].shape.dim[0];
        } else if ((n->op == OP_cross_entropy || n->op == OP_cross_entropy_grad) && n->nin >= 2) {
            const Shape *logits = &f->nodes[n->in[0]].shape;
            idx = n->in[1];
            limit = logits->dim[logits->rank - 1];
        } else if (n->op == OP_scatter_add) {
            idx = n->in[0];
            limit = n->shape.dim[0];
        }
        if (idx == REF_NONE) continue;
        Ref src = source_input(f, idx);
        if (src == REF_NONE) continue;
        int64_t a = f->nodes[src].attr.index;
        if (limit < bound[a]) bound[a] = limit;
    }
    for (int a = 0; a < f->nargs; a++)
        if (bound[a] == INT64_MAX) bound[a] = 2;
}

static void make_args(const Func *f, ITensor *args) {
    int64_t bound[64];
    index_bounds(f, bound);
    for (int a = 0; a < f->nargs; a++) {
        const FuncArg *fa = &f->args[a];
        itensor_alloc_shape(&args[a], fa->dtype, &fa->shape, test_batch);
        for (int64_t j = 0; j < args[a].numel; j++)
            args[a].data[j] = fa->dtype == DT_I32 ? (double)(int64_t)uniform(0, (double)bound[a])
                                                  : uniform(-1, 1);
    }
}

/* ---------------------------------------------------------------- running and comparing */

typedef struct Result {
    int rc;
    char err[256];
    int nouts;
    ITensor outs[MAX_OUTS];
    Interp in;  /* the module tensors after the calls */
} Result;

/* Runs f `calls` times (train_step twice: the second step takes the step > 0 paths) from the
 * state buffer, with the interpreter in f64 or f32 mode. The state was written from outside
 * (as nnrt_load writes it), so the module's `prepare` runs first, when it has one. */
static void run_func(Module *m, Func *f, const uint8_t *state, bool f64, const ITensor *args,
                     int calls, Result *r) {
    memset(r, 0, sizeof *r);
    interp_init(&r->in, m, f64);
    interp_load_state(&r->in, state);
    Func *prep = module_find_func(m, "prepare");
    if (prep) r->rc = interp_run(&r->in, prep, 1, NULL, NULL, r->err, sizeof r->err);
    r->nouts = f->nouts;
    for (int c = 0; c < calls && !r->rc; c++) {
        for (int i = 0; i < f->nouts; i++) itensor_free(&r->outs[i]);
        r->rc = interp_run(&r->in, f, test_batch, args, r->outs, r->err, sizeof r->err);
    }
}

static void result_free(Result *r) {
    for (int i = 0; i < r->nouts; i++) itensor_free(&r->outs[i]);
    interp_free(&r->in);
}

/* Relative difference of two tensors: max |a - b| / max |a| (the max-norm relative error;
 * an element-by-element ratio would blow up where a value crosses zero). NaN matches NaN in
 * the same place; dims that differ give INFINITY. */
static double tensor_diff(const ITensor *a, const ITensor *b) {
    if (a->dtype != b->dtype || a->rank != b->rank || a->numel != b->numel) return INFINITY;
    for (int i = 0; i < a->rank; i++)
        if (a->dim[i] != b->dim[i]) return INFINITY;
    double diff = 0, scale = 0;
    for (int64_t i = 0; i < a->numel; i++) {
        double x = a->data[i], y = b->data[i];
        if (isnan(x) || isnan(y)) {
            if (isnan(x) != isnan(y)) return INFINITY;
            continue;
        }
        if (x != y) diff = fmax(diff, isinf(x) || isinf(y) ? INFINITY : fabs(x - y));
        if (isfinite(x)) scale = fmax(scale, fabs(x));
    }
    return diff == 0 ? 0 : diff / fmax(scale, 1e-300);
}

typedef struct Diff {
    double worst64, worst32;  /* over everything compared */
    int compared, skipped;
} Diff;

/* Runs function `fn` of ma and of each of the n modules mbs[] in both modes (in f32 mode
 * only where with_f64[j] is false), and compares outputs and the states of ma's tensors (an
 * mb may have derived tensors after them). ma's run, the reference, is made once per mode
 * for all n. states_b[j]: state for mbs[j], state's bytes followed by mbs[j]'s derived
 * tensors. */
static void diff_func(const char *const *labels, Module *ma, Module *const *mbs, int n,
                      const char *fn, const uint8_t *state, uint8_t *const *states_b,
                      const Tol *tols, const bool *with_f64, Diff *d) {
    Func *fa = module_find_func(ma, fn);
    if (!fa) return;
    Func *fbs[MAX_DIFFS];
    bool ok = fa->nouts <= MAX_OUTS;
    for (int j = 0; j < n; j++) {
        fbs[j] = module_find_func(mbs[j], fn);
        CHECK(fbs[j] != NULL);
        if (!fbs[j]) return;
        CHECK(fa->nouts == fbs[j]->nouts && fa->nargs == fbs[j]->nargs);
        ok &= fa->nouts == fbs[j]->nouts && fa->nargs == fbs[j]->nargs;
    }
    if (!ok) return;
    ITensor args[64] = {{0}};
    make_args(fa, args);
    for (int mode = 0; mode < 2; mode++) {
        bool f64 = mode == 0;
        /* f32: two train_steps (the second takes the step > 0 paths); f64: one, because from
         * the second on, adaptive optimizers amplify the ~1e-8 rounding of folded constants
         * without bound (Adam's m / (sqrt(v) + eps) where the gradient is near 0) */
        int calls = !strcmp(fn, "train_step") && !f64 ? 2 : 1;
        bool needed = !f64;
        for (int j = 0; j < n; j++) needed |= with_f64[j];
        if (!needed) continue;
        Result *ra = malloc(sizeof *ra), *rb = malloc(sizeof *rb);
        run_func(ma, fa, state, f64, args, calls, ra);
        for (int j = 0; j < n; j++) {
            const char *label = labels[j];
            Tol tol = tols[j];
            if (f64 && !with_f64[j]) continue;
            bool first = f64 || !with_f64[j]; /* the first mode compared */
            if (ra->rc) {
                if (first) printf("  note: %s: %s not run: %s\n", label, fn, ra->err);
                d[j].skipped += first;
                continue;
            }
            run_func(mbs[j], fbs[j], states_b[j], f64, args, calls, rb);
            if (rb->rc) {
                fprintf(stderr, "%s: %s fails after the passes: %s\n", label, fn, rb->err);
                check_failures++;
            } else {
                double worst = 0;
                for (int i = 0; i < fa->nouts; i++) {
                    double e = tensor_diff(&ra->outs[i], &rb->outs[i]);
                    if (!(e <= (f64 ? tol.f64 : tol.f32)))
                        fprintf(stderr, "%s: %s (%s): output '%s' differs by %.3g\n", label, fn,
                                f64 ? "f64" : "f32", fa->outs[i].name, e);
                    worst = fmax(worst, e);
                }
                for (int t = 0; t < ma->ntensors; t++) {
                    double e = tensor_diff(&ra->in.tensors[t], &rb->in.tensors[t]);
                    if (!(e <= (f64 ? tol.f64 : tol.f32)))
                        fprintf(stderr, "%s: %s (%s): state @%s differs by %.3g\n", label, fn,
                                f64 ? "f64" : "f32", ma->tensors[t].name, e);
                    worst = fmax(worst, e);
                }
                d[j].compared += first;
                if (f64) {
                    CHECK(worst <= tol.f64);
                    d[j].worst64 = fmax(d[j].worst64, worst);
                } else {
                    CHECK(worst <= tol.f32);
                    d[j].worst32 = fmax(d[j].worst32, worst);
                }
            }
            result_free(rb);
        }
        result_free(ra);
        free(ra);
        free(rb);
    }
    for (int a = 0; a < fa->nargs; a++) itensor_free(&args[a]);
}

/* The initial state of m: `init` with seed 42 (f32, as the compiled code), then parameters
 * drawn from U(-0.5, 0.5) and states (batchnorm's running statistics) from U(0.5, 1.5), so
 * that no parameter is a neutral 0 or 1, and the hyper tensors of the schedules set to
 * small values so that warmup and decay are both visited. */
static uint8_t *initial_state(Module *m) {
    uint8_t *state = calloc((size_t)m->state_bytes + 64, 1);
    Interp in;
    interp_init(&in, m, false);
    in.seed = 42;
    char err[256];
    if (module_find_func(m, "init") && interp_run_init(&in, err, sizeof err)) {
        fprintf(stderr, "%s: init fails: %s\n", m->name, err);
        check_failures++;
    }
    uint64_t saved_rng = rng_state;
    rng_state = 0x2545f4914f6cdd1dull; /* the same draws for both modules */
    for (int t = 0; t < m->ntensors; t++) {
        ITensor *x = &in.tensors[t];
        for (int64_t e = 0; e < x->numel && m->tensors[t].dtype != DT_I32; e++) {
            if (m->tensors[t].kind == TK_PARAM) x->data[e] = uniform(-0.5, 0.5);
            if (m->tensors[t].kind == TK_STATE) x->data[e] = uniform(0.5, 1.5);
        }
    }
    rng_state = saved_rng;
    for (int t = 0; t < m->ntensors; t++) {
        if (m->tensors[t].kind != TK_HYPER) continue;
        if (!strcmp(m->tensors[t].name, "steps_per_epoch")) in.tensors[t].data[0] = 2;
        if (!strcmp(m->tensors[t].name, "total_steps")) in.tensors[t].data[0] = 10;
    }
    interp_save_state(&in, state);
    interp_free(&in);
    return state;
}

/* mb has ma's tensors at the same offsets, then only derived ones (prepare.c). */
static bool same_layout(const Module *ma, const Module *mb) {
    if (mb->ntensors < ma->ntensors || mb->state_bytes < ma->state_bytes) return false;
    for (int t = 0; t < mb->ntensors; t++) {
        if (t >= ma->ntensors) {
            if (mb->tensors[t].kind != TK_DERIVED || mb->tensors[t].offset < ma->state_bytes) return false;
        } else if (strcmp(ma->tensors[t].name, mb->tensors[t].name) || ma->tensors[t].offset != mb->tensors[t].offset) {
            return false;
        }
    }
    return true;
}

/* A copy of ma's state block in a block of mb's size (mb's derived tensors zero). */
static uint8_t *widen_state(const uint8_t *state, const Module *ma, const Module *mb) {
    uint8_t *wide = calloc((size_t)mb->state_bytes + 64, 1);
    memcpy(wide, state, (size_t)ma->state_bytes);
    return wide;
}

/* Every function of ma but init, against each of the n modules mbs[] (d[j] for mbs[j]; f64
 * mode only where with_f64[j]); ma runs once per function and mode, on the same inputs for
 * all n. */
static void diff_modules_n(const char *const *labels, Module *ma, Module *const *mbs, int n,
                           const Tol *tols, const bool *with_f64, Diff *d) {
    if (n > MAX_DIFFS) abort();
    uint8_t *state = initial_state(ma);
    uint8_t *wide[MAX_DIFFS];
    for (int j = 0; j < n; j++) {
        d[j] = (Diff){0};
        CHECK(same_layout(ma, mbs[j]));
        wide[j] = widen_state(state, ma, mbs[j]);
    }
    for (int i = 0; i < ma->nfuncs; i++)
        if (strcmp(ma->funcs[i]->name, "init"))
            diff_func(labels, ma, mbs, n, ma->funcs[i]->name, state, wide, tols, with_f64, d);
    /* init itself: the same state from the same seed */
    for (int j = 0; j < n; j++) {
        uint8_t *state_b = initial_state(mbs[j]);
        CHECK(!memcmp(state, state_b, (size_t)ma->state_bytes));
        free(state_b);
        free(wide[j]);
    }
    free(state);
}

static Diff diff_modules(const char *label, Module *ma, Module *mb, Tol tol) {
    Diff d;
    bool with_f64 = true;
    diff_modules_n(&label, ma, &mb, 1, &tol, &with_f64, &d);
    return d;
}

/* ---------------------------------------------------------------- compiled code */

/* A function's outputs and the module state after `calls` calls through the JIT. */
typedef struct JitResult {
    int nouts;
    float *outs[MAX_OUTS];  /* i32 outputs converted */
    int64_t count[MAX_OUTS];
    uint8_t *state;
} JitResult;

static void jit_result_free(JitResult *r) {
    for (int i = 0; i < r->nouts; i++) free(r->outs[i]);
    free(r->state);
}

/* `calls` calls of f through the JIT from the executor's current state. */
static bool jit_calls(Exec *e, Func *f, const ITensor *args, int calls, JitResult *r) {
    memset(r, 0, sizeof *r);
    void *bufs[64 + MAX_OUTS] = {0};
    for (int a = 0; a < f->nargs; a++) {
        bufs[a] = malloc((size_t)args[a].numel * 4 + 4);
        for (int64_t i = 0; i < args[a].numel; i++) {
            if (args[a].dtype == DT_I32) ((int32_t *)bufs[a])[i] = (int32_t)args[a].data[i];
            else ((float *)bufs[a])[i] = (float)args[a].data[i];
        }
    }
    r->nouts = f->nouts;
    for (int o = 0; o < f->nouts; o++) {
        r->count[o] = shape_numel(&f->nodes[f->outs[o].value].shape, test_batch);
        bufs[f->nargs + o] = calloc((size_t)r->count[o] + 1, 4);
    }
    char err[256];
    bool ok = true;
    for (int c = 0; c < calls && ok; c++)
        ok = exec_call(e, f->name, test_batch, bufs, err, sizeof err) == 0;
    if (!ok) fprintf(stderr, "%s: %s fails on compiled code: %s\n", e->m->name, f->name, err);
    for (int o = 0; o < f->nouts; o++) {
        r->outs[o] = malloc((size_t)r->count[o] * sizeof(float) + 4);
        bool i32 = f->nodes[f->outs[o].value].dtype == DT_I32;
        for (int64_t i = 0; i < r->count[o]; i++)
            r->outs[o][i] = i32 ? (float)((int32_t *)bufs[f->nargs + o])[i]
                                : ((float *)bufs[f->nargs + o])[i];
    }
    r->state = malloc((size_t)e->m->state_bytes + 4);
    memcpy(r->state, exec_state(e), (size_t)e->m->state_bytes);
    for (int i = 0; i < f->nargs + f->nouts; i++) free(bufs[i]);
    return ok;
}

/* The same from `state` (written into the executor as a checkpoint load writes it: derived
 * tensors are prepared before they are read). */
static bool jit_run(Exec *e, Func *f, const uint8_t *state, const ITensor *args, int calls,
                    JitResult *r) {
    memcpy(exec_state(e), state, (size_t)e->m->state_bytes);
    exec_state_changed(e);
    return jit_calls(e, f, args, calls, r);
}

static double floats_diff(const float *a, const float *b, int64_t count) {
    double diff = 0, scale = 0;
    for (int64_t i = 0; i < count; i++) {
        if (isnan(a[i]) || isnan(b[i])) {
            if (isnan(a[i]) != isnan(b[i])) return INFINITY;
            continue;
        }
        diff = fmax(diff, fabs((double)a[i] - b[i]));
        scale = fmax(scale, fabs(a[i]));
    }
    return diff == 0 ? 0 : diff / fmax(scale, 1e-300);
}

/* Every function of ma but init against mb, on compiled code (JIT): for the models the
 * interpreter cannot run (conv2d). Training functions must agree bit for bit, infer and
 * evaluate within 1e-5 (bnfold). Returns the worst difference, -1 when the backend cannot
 * compile the -O0 module either (skipped with a note). */
static double diff_jit(const char *label, Module *ma, Module *mb) {
    Exec ea, eb;
    char err[256];
    memset(&eb, 0, sizeof eb);
    if (exec_open(&ea, ma, false, 42, NULL) || exec_init(&ea, err, sizeof err)) {
        printf("  note: %s: the -O0 module does not compile either (see above); skipped\n", label);
        exec_close(&ea);
        return -1;
    }
    if (exec_open(&eb, mb, false, 42, NULL) || exec_init(&eb, err, sizeof err)) {
        fprintf(stderr, "%s: compiles at -O0 but not after the passes\n", label);
        check_failures++;
        exec_close(&ea);
        exec_close(&eb);
        return INFINITY;
    }
    uint8_t *state = initial_state(ma), *wide = widen_state(state, ma, mb);
    double worst = 0;
    for (int i = 0; i < ma->nfuncs; i++) {
        Func *fa = ma->funcs[i], *fb = module_find_func(mb, fa->name);
        if (!strcmp(fa->name, "init") || !fb || fa->nargs > 64 || fa->nouts > MAX_OUTS) continue;
        bool inference = !strcmp(fa->name, "infer") || !strcmp(fa->name, "evaluate");
        double tol = inference ? 1e-5 : 0;
        ITensor args[64] = {{0}};
        make_args(fa, args);
        int calls = !strcmp(fa->name, "train_step") ? 2 : 1;
        JitResult ra, rb;
        bool ok = jit_run(&ea, fa, state, args, calls, &ra);
        ok &= jit_run(&eb, fb, wide, args, calls, &rb);
        CHECK(ok);
        double w = 0;
        for (int o = 0; ok && o < fa->nouts; o++) {
            double e = floats_diff(ra.outs[o], rb.outs[o], ra.count[o]);
            if (!(e <= tol))
                fprintf(stderr, "%s: %s (compiled): output '%s' differs by %.3g\n", label, fa->name,
                        fa->outs[o].name, e);
            w = fmax(w, e);
        }
        for (int t = 0; ok && t < ma->ntensors; t++) {
            const ModTensor *mt = &ma->tensors[t];
            if (mt->dtype != DT_F32) {
                CHECK(!memcmp(ra.state + mt->offset, rb.state + mt->offset, (size_t)mt->bytes));
                continue;
            }
            double e = floats_diff((const float *)(ra.state + mt->offset),
                                   (const float *)(rb.state + mt->offset), mt->bytes / 4);
            if (!(e <= tol))
                fprintf(stderr, "%s: %s (compiled): state @%s differs by %.3g\n", label, fa->name,
                        mt->name, e);
            w = fmax(w, e);
        }
        CHECK(w <= tol);
        worst = fmax(worst, w);
        jit_result_free(&ra);
        jit_result_free(&rb);
        for (int a = 0; a < fa->nargs; a++) itensor_free(&args[a]);
    }
    free(state);
    free(wide);
    exec_close(&ea);
    exec_close(&eb);
    return worst;
}

static void run_pass_on_module(Module *m, PassFn pass) {
    for (int i = 0; i < m->nfuncs; i++) pass(m->funcs[i]);
}

/* ================================================================ hand-built cases */

/* A hand-built module: `build` adds the functions; the case builds it twice. */
typedef struct Case {
    Arena arena[2];
    Module *m[2];  /* m[0] as built, m[1] rewritten */
} Case;

typedef void (*BuildFn)(Module *m);

static void case_begin(Case *c, const char *name, BuildFn build) {
    memset(c, 0, sizeof *c);
    for (int k = 0; k < 2; k++) {
        c->m[k] = module_new(&c->arena[k], name);
        build(c->m[k]);
        module_layout(c->m[k]);
        module_build_init(c->m[k]);
        CHECK(verify_module(c->m[k]) == 0);
    }
}

/* Verifies the rewritten module and compares it with the original. */
static void case_end(Case *c) {
    CHECK(verify_module(c->m[1]) == 0);
    diff_modules(c->m[0]->name, c->m[0], c->m[1], FOLDED);
    for (int k = 0; k < 2; k++) arena_free(&c->arena[k]);
}

static Func *func_of(Case *c, const char *name) { return module_find_func(c->m[1], name); }

static int param(Module *m, const char *name, Shape s) {
    InitSpec init = {.kind = INIT_UNIFORM, .a = -1, .b = 1};
    return module_add_tensor(m, name, TK_PARAM, DT_F32, s, init, noloc);
}

static Ref cst_data(Func *f, DType dt, Shape s, const double *values) {
    int64_t n = shape_numel(&s, 1);
    double *data = arena_alloc(f->mod->arena, (size_t)n * sizeof *data);
    memcpy(data, values, (size_t)n * sizeof *data);
    Attr a = {.data = data};
    return ir_node(f, OP_const, dt, s, 0, NULL, &a);
}

/* ---------------------------------------------------------------- fold */

static void build_fold(Module *m) {
    Func *f = module_add_func(m, "infer");
    int w = param(m, "w", SHAPE(0, 4));
    int xa = func_add_arg(f, "x", ARG_INPUT, DT_F32, SHAPE(1, 1, 4), noloc);
    Ref x = ir_input(f, xa);
    /* 2 + 3 over [4], then broadcast into the batch */
    Ref two = ir_const(f, DT_F32, SHAPE(0, 4), 2), three = ir_const(f, DT_F32, SHAPE(0, 4), 3);
    Ref five = ir_binary(f, OP_add, two, three);
    func_add_out(f, "splat", OUT_OUTPUT, ir_binary(f, OP_add, x, five));
    /* data: [1, 2, 3, 4] * 2, then exp: non-splat constants */
    Ref d = cst_data(f, DT_F32, SHAPE(0, 4), (double[]){1, 2, 3, 4});
    Ref e = ir_unary(f, OP_exp, ir_binary(f, OP_mul, d, ir_scalar(f, 2)));
    func_add_out(f, "data", OUT_OUTPUT, ir_binary(f, OP_mul, x, e));
    /* f32 rounding: 0.1 * 3 as float arithmetic */
    Ref tenth = ir_scalar(f, 0.1);
    func_add_out(f, "rounded", OUT_OUTPUT, ir_binary(f, OP_mul, tenth, ir_scalar(f, 3)));
    /* splats with a batch axis: exp(0) = 1 over [batch, 4] */
    Ref zeros = ir_const(f, DT_F32, SHAPE(1, 1, 4), 0);
    func_add_out(f, "batch_splat", OUT_OUTPUT, ir_binary(f, OP_mul, x, ir_unary(f, OP_exp, zeros)));
    /* reductions and matmul of constants */
    Ref m2 = cst_data(f, DT_F32, SHAPE(0, 2, 2), (double[]){1, 2, 3, 4});
    Ref mm = ir_matmul(f, m2, m2, false, true);
    func_add_out(f, "matmul_sum", OUT_OUTPUT, ir_reduce(f, OP_sum, mm, 1, false));
    /* never folded: parameters, batch_size, a reduction over the batch of a splat */
    func_add_out(f, "param", OUT_OUTPUT, ir_binary(f, OP_add, ir_tensor(f, w), ir_scalar(f, 1)));
    Ref n = ir_node(f, OP_batch_size, DT_F32, shape_scalar(), 0, NULL, NULL);
    func_add_out(f, "batch", OUT_OUTPUT, ir_binary(f, OP_mul, n, ir_scalar(f, 2)));
    Ref ones = ir_const(f, DT_F32, SHAPE(1, 1, 4), 1);
    func_add_out(f, "sum_batch", OUT_OUTPUT, ir_reduce(f, OP_sum, ones, 1, false));
    /* a constant with equal data becomes a splat; i32 arithmetic wraps */
    Ref same = cst_data(f, DT_F32, SHAPE(0, 3), (double[]){7, 7, 7});
    func_add_out(f, "same", OUT_OUTPUT, same);
    Ref big = ir_const(f, DT_I32, shape_scalar(), 2147483647);
    Ref one = ir_const(f, DT_I32, shape_scalar(), 1);
    func_add_out(f, "wrap", OUT_OUTPUT, ir_binary(f, OP_add, big, one));
}

static void test_fold(void) {
    Case c;
    case_begin(&c, "fold", build_fold);
    Func *f = func_of(&c, "infer");
    CHECK(fold_constants(f) > 0);
    dce(f);
    const Node *n = out_node(f, "splat");
    const Node *k = &f->nodes[n->in[1]];
    CHECK(n->op == OP_add && k->op == OP_const && k->attr.f[0] == 5);
    n = out_node(f, "data");
    k = &f->nodes[f->nodes[n->in[1]].in[0]]; /* through the broadcast */
    CHECK(k->op == OP_const && k->attr.data && k->attr.data[1] == (double)(float)exp((double)4.0f));
    n = out_node(f, "rounded");
    CHECK(n->op == OP_const && n->attr.f[0] == (double)(float)((double)(float)0.1 * 3.0));
    n = out_node(f, "batch_splat");
    k = &f->nodes[n->in[1]];
    CHECK(n->op == OP_mul && k->op == OP_const && k->attr.f[0] == 1);
    n = out_node(f, "matmul_sum"); /* [[5, 11], [11, 25]] summed over rows */
    CHECK(n->op == OP_const && n->attr.data && n->attr.data[0] == 16 && n->attr.data[1] == 36);
    CHECK(out_node(f, "param")->op == OP_add);
    CHECK(out_node(f, "batch")->op == OP_mul);
    CHECK(out_node(f, "sum_batch")->op == OP_sum);
    n = out_node(f, "same");
    CHECK(n->op == OP_const && !n->attr.data && n->attr.f[0] == 7);
    n = out_node(f, "wrap");
    CHECK(n->op == OP_const && n->attr.f[0] == -2147483648.0);
    CHECK(fold_constants(f) == 0); /* a fixpoint */
    case_end(&c);
}

/* rand_uniform and init_fill are never folded nor merged */
static void build_random(Module *m) {
    Func *f = module_add_func(m, "loss");
    int step = module_add_tensor(m, "step", TK_STEP, DT_I32, shape_scalar(), (InitSpec){0}, noloc);
    func_add_arg(f, "x", ARG_INPUT, DT_F32, SHAPE(1, 1, 4), noloc);
    Attr a = {.index = 1, .tensor = step};
    Ref r1 = ir_node(f, OP_rand_uniform, DT_F32, SHAPE(0, 4), 0, NULL, &a);
    Ref r2 = ir_node(f, OP_rand_uniform, DT_F32, SHAPE(0, 4), 0, NULL, &a);
    func_add_out(f, "r", OUT_OUTPUT, ir_binary(f, OP_sub, r1, r2));
    Ref r1_times_1 = ir_binary(f, OP_mul, r1, ir_scalar(f, 1));
    func_add_out(f, "loss", OUT_LOSS, ir_reduce(f, OP_sum, r1_times_1, 1, false));
}

static void test_random_kept(void) {
    Case c;
    case_begin(&c, "random", build_random);
    Module *m = c.m[1];
    CHECK(passes_run(m, 2, NULL, NULL) == 0);
    CHECK(count_op(module_find_func(m, "loss"), OP_rand_uniform) == 2);
    CHECK(count_op(module_find_func(m, "init"), OP_init_fill) == 1);
    CHECK(count_op(module_find_func(m, "loss"), OP_mul) == 0); /* r1 * 1 */
    case_end(&c);
}

/* ---------------------------------------------------------------- simplify */

static void build_simplify(Module *m) {
    Func *f = module_add_func(m, "infer");
    Ref x = ir_input(f, func_add_arg(f, "x", ARG_INPUT, DT_F32, SHAPE(1, 1, 2, 3), noloc));
    Ref k = ir_input(f, func_add_arg(f, "k", ARG_INPUT, DT_I32, SHAPE(1, 1, 2, 3), noloc));
    Shape s = f->nodes[x].shape;
    Ref one = ir_const(f, DT_F32, s, 1), zero = ir_const(f, DT_F32, s, 0);
    Ref mzero = ir_const(f, DT_F32, s, -0.0);
    func_add_out(f, "mul1", OUT_OUTPUT, ir_binary(f, OP_mul, x, one));
    func_add_out(f, "one_mul", OUT_OUTPUT, ir_binary(f, OP_mul, one, x));
    func_add_out(f, "add0", OUT_OUTPUT, ir_binary(f, OP_add, x, zero));
    func_add_out(f, "zero_add", OUT_OUTPUT, ir_binary(f, OP_add, mzero, x));
    func_add_out(f, "sub0", OUT_OUTPUT, ir_binary(f, OP_sub, x, zero));
    func_add_out(f, "div1", OUT_OUTPUT, ir_binary(f, OP_div, x, one));
    func_add_out(f, "pow1", OUT_OUTPUT, ir_binary(f, OP_pow, x, one));
    func_add_out(f, "negneg", OUT_OUTPUT, ir_unary(f, OP_neg, ir_unary(f, OP_neg, x)));
    func_add_out(f, "mul0_float", OUT_OUTPUT, ir_binary(f, OP_mul, x, zero)); /* kept: NaN * 0 */
    func_add_out(f, "mul0_int", OUT_OUTPUT, ir_binary(f, OP_mul, k, ir_const(f, DT_I32, s, 0)));
    func_add_out(f, "cast_same", OUT_OUTPUT, ir_node(f, OP_cast, DT_F32, s, 1, &x, NULL));
    func_add_out(f, "stop", OUT_OUTPUT, ir_unary(f, OP_stop_gradient, x));
    Ref y = ir_unary(f, OP_exp, x);
    func_add_out(f, "select_true", OUT_OUTPUT, ir_select(f, one, x, y));
    func_add_out(f, "select_false", OUT_OUTPUT, ir_select(f, zero, x, y));
    func_add_out(f, "select_same", OUT_OUTPUT, ir_select(f, y, x, x));
    /* [batch, 2, 3] -> perm [1, 2, 0] -> [2, 3, batch] -> perm [2, 0, 1] -> identity */
    Ref t = ir_transpose(f, ir_transpose(f, x, (int[]){1, 2, 0}), (int[]){2, 0, 1});
    func_add_out(f, "transpose_back", OUT_OUTPUT, t);
    Ref t2 = ir_transpose(f, ir_transpose(f, x, (int[]){0, 2, 1}), (int[]){1, 0, 2});
    func_add_out(f, "transpose_composed", OUT_OUTPUT, t2);
    Ref r = ir_reshape(f, ir_reshape(f, x, SHAPE(1, 1, 6)), SHAPE(1, 3, 2));
    func_add_out(f, "reshape_chain", OUT_OUTPUT, r);
    func_add_out(f, "reshape_back", OUT_OUTPUT, ir_reshape(f, ir_reshape(f, x, SHAPE(1, 1, 6)), s));
    Ref row = ir_reduce(f, OP_sum, x, 1, false);                               /* [2, 3] */
    Ref bb = ir_node(f, OP_broadcast, DT_F32, SHAPE(0, 4, 2, 3), 1, &row, NULL);
    bb = ir_node(f, OP_broadcast, DT_F32, SHAPE(0, 5, 4, 2, 3), 1, &bb, NULL);
    func_add_out(f, "broadcast_chain", OUT_OUTPUT, bb);
    func_add_out(f, "broadcast_same", OUT_OUTPUT, ir_node(f, OP_broadcast, DT_F32, s, 1, &x, NULL));
    /* slice of slice: [batch, 2, 3] -> axis 2 from 1 by 1 (2 wide) -> from 1 (1 wide) */
    Ref sl = ir_slice(f, x, (int64_t[]){0, 0, 1}, (int64_t[]){1, 1, 1}, SHAPE(1, 1, 2, 2));
    sl = ir_slice(f, sl, (int64_t[]){0, 1, 1}, (int64_t[]){1, 1, 1}, SHAPE(1, 1, 1, 1));
    func_add_out(f, "slice_chain", OUT_OUTPUT, sl);
    func_add_out(f, "slice_whole", OUT_OUTPUT,
                 ir_slice(f, x, (int64_t[]){0, 0, 0}, (int64_t[]){1, 1, 1}, s));
    func_add_out(f, "sum_none", OUT_OUTPUT, ir_reduce(f, OP_sum, x, 0, false));
    Ref x1 = ir_reshape(f, x, SHAPE(1, 1, 2, 1, 3));
    func_add_out(f, "mean_size1", OUT_OUTPUT, ir_reduce(f, OP_mean, x1, 4, false));
    func_add_out(f, "max_size1_keep", OUT_OUTPUT, ir_reduce(f, OP_max, x1, 4, true));
    func_add_out(f, "sum_real", OUT_OUTPUT, ir_reduce(f, OP_sum, x1, 2, false));
    /* add(broadcast(r), 5) over [batch, 2, 3] with r [2, 3]: computed on [2, 3] */
    Ref bc = ir_node(f, OP_broadcast, DT_F32, s, 1, &row, NULL);
    func_add_out(f, "hoisted", OUT_OUTPUT, ir_binary(f, OP_add, bc, ir_const(f, DT_F32, s, 5)));
    /* zero-padded concats along axis 2 (3 wide): [a, 0, 0] + [0, b] -> [a, b];
     * [a, b] + [a2, b2] -> [a + a2, b + b2]; [a, 0, 0] + [b, a] stays an add (b overlaps a
     * without the same extent) */
    Ref pa = ir_slice(f, x, (int64_t[]){0, 0, 0}, (int64_t[]){1, 1, 1}, SHAPE(1, 1, 2, 1));
    Ref pb = ir_slice(f, x, (int64_t[]){0, 0, 1}, (int64_t[]){1, 1, 1}, SHAPE(1, 1, 2, 2));
    Ref z1 = ir_const(f, DT_F32, SHAPE(1, 1, 2, 1), 0);
    Ref z2 = ir_const(f, DT_F32, SHAPE(1, 1, 2, 2), 0);
    Ref ea = ir_unary(f, OP_exp, pa), eb = ir_unary(f, OP_exp, pb);
    Ref padded_a = ir_concat(f, 3, (Ref[]){pa, z1, z1}, 2);
    Ref padded_b = ir_concat(f, 2, (Ref[]){z1, pb}, 2);
    func_add_out(f, "concat_sum", OUT_OUTPUT, ir_binary(f, OP_add, padded_a, padded_b));
    Ref ab = ir_concat(f, 2, (Ref[]){pa, pb}, 2), eab = ir_concat(f, 2, (Ref[]){ea, eb}, 2);
    func_add_out(f, "concat_aligned", OUT_OUTPUT, ir_binary(f, OP_add, ab, eab));
    Ref ba = ir_concat(f, 2, (Ref[]){pb, pa}, 2);
    func_add_out(f, "concat_overlap", OUT_OUTPUT, ir_binary(f, OP_add, padded_a, ba));
    Ref zz = ir_concat(f, 2, (Ref[]){z1, z2}, 2);
    Ref zz2 = ir_concat(f, 2, (Ref[]){z2, z1}, 2);
    func_add_out(f, "concat_zeros", OUT_OUTPUT, ir_binary(f, OP_add, zz2, zz));
}

static void test_simplify(void) {
    Case c;
    case_begin(&c, "simplify", build_simplify);
    Func *f = func_of(&c, "infer");
    CHECK(simplify(f) > 0);
    dce(f);
    const char *to_x[] = {"mul1",      "one_mul",      "add0",        "zero_add",     "sub0",
                          "div1",      "pow1",         "negneg",      "cast_same",    "stop",
                          "select_true", "select_same", "transpose_back", "reshape_back",
                          "broadcast_same", "slice_whole", "sum_none", "mean_size1"};
    for (size_t i = 0; i < sizeof to_x / sizeof to_x[0]; i++) {
        const Node *n = out_node(f, to_x[i]);
        if (!n || n->op != OP_input || n->attr.index != 0) {
            fprintf(stderr, "simplify: output %s is not x\n", to_x[i]);
            check_failures++;
        }
    }
    CHECK(out_node(f, "select_false")->op == OP_exp);
    CHECK(out_node(f, "mul0_float")->op == OP_mul);
    const Node *n = out_node(f, "mul0_int");
    CHECK(n->op == OP_const && n->dtype == DT_I32 && n->attr.f[0] == 0);
    n = out_node(f, "transpose_composed");
    CHECK(n->op == OP_transpose && f->nodes[n->in[0]].op == OP_input);
    CHECK(n->attr.perm[0] == 2 && n->attr.perm[1] == 0 && n->attr.perm[2] == 1);
    n = out_node(f, "reshape_chain");
    CHECK(n->op == OP_reshape && f->nodes[n->in[0]].op == OP_input);
    n = out_node(f, "broadcast_chain");
    CHECK(n->op == OP_broadcast && f->nodes[n->in[0]].op == OP_sum);
    n = out_node(f, "slice_chain");
    CHECK(n->op == OP_slice && f->nodes[n->in[0]].op == OP_input && n->attr.start[2] == 2 &&
          n->attr.start[1] == 1 && n->attr.step[2] == 1);
    n = out_node(f, "max_size1_keep"); /* the reshape it reduces */
    CHECK(n->op == OP_reshape && f->nodes[n->in[0]].op == OP_input);
    CHECK(out_node(f, "sum_real")->op == OP_sum);
    n = out_node(f, "hoisted");
    const Node *small = &f->nodes[n->in[0]];
    CHECK(n->op == OP_broadcast && small->op == OP_add && small->shape.rank == 2);
    n = out_node(f, "concat_sum");
    CHECK(n->op == OP_concat && n->nin == 2 && f->nodes[n->in[0]].op == OP_slice &&
          f->nodes[n->in[1]].op == OP_slice);
    n = out_node(f, "concat_aligned");
    CHECK(n->op == OP_concat && n->nin == 2 && f->nodes[n->in[0]].op == OP_add &&
          f->nodes[n->in[1]].op == OP_add && f->nodes[n->in[1]].shape.dim[2] == 2);
    CHECK(out_node(f, "concat_overlap")->op == OP_add);
    n = out_node(f, "concat_zeros"); /* folded to one splat afterwards */
    CHECK(n->op == OP_concat || (n->op == OP_const && n->attr.f[0] == 0));
    CHECK(simplify(f) == 0);
    case_end(&c);
}

/* stop_gradient stays in `loss` until `grad` exists */
static void build_stop(Module *m) {
    Func *f = module_add_func(m, "loss");
    Ref x = ir_input(f, func_add_arg(f, "x", ARG_INPUT, DT_F32, SHAPE(1, 1, 2), noloc));
    Ref stopped = ir_unary(f, OP_stop_gradient, x);
    func_add_out(f, "loss", OUT_LOSS, ir_reduce(f, OP_sum, stopped, 3, false));
}

static void test_stop_gradient(void) {
    Case c;
    case_begin(&c, "stop_gradient", build_stop);
    Func *f = func_of(&c, "loss");
    simplify(f);
    CHECK(count_op(f, OP_stop_gradient) == 1);
    module_add_func(c.m[1], "grad"); /* gradients exist from now on */
    simplify(f);
    CHECK(count_op(f, OP_stop_gradient) == 0);
    c.m[1]->nfuncs--;
    case_end(&c);
}

/* ---------------------------------------------------------------- cse */

static void build_cse(Module *m) {
    Func *f = module_add_func(m, "loss");
    int w = param(m, "w", SHAPE(0, 3));
    Ref x = ir_input(f, func_add_arg(f, "x", ARG_INPUT, DT_F32, SHAPE(1, 1, 3), noloc));
    Ref x2 = ir_input(f, 0);
    Ref w1 = ir_tensor(f, w), w2 = ir_tensor(f, w);
    Ref a = ir_binary(f, OP_add, x, w1);
    Ref b = ir_binary(f, OP_add, w2, x2); /* the same sum, operands swapped */
    Ref s1 = ir_binary(f, OP_sub, x, w1), s2 = ir_binary(f, OP_sub, w1, x); /* different */
    Ref d1 = cst_data(f, DT_F32, SHAPE(0, 3), (double[]){1, 2, 3});
    Ref d2 = cst_data(f, DT_F32, SHAPE(0, 3), (double[]){1, 2, 3});
    Ref d3 = cst_data(f, DT_F32, SHAPE(0, 3), (double[]){1, 2, 4});
    Ref sum = ir_binary(f, OP_add, ir_binary(f, OP_mul, a, b), ir_binary(f, OP_mul, s1, s2));
    sum = ir_binary(f, OP_add, sum, ir_binary(f, OP_add, ir_binary(f, OP_mul, d1, d2), d3));
    /* a store to w in between: the read after it is a different value */
    ir_store(f, w, ir_binary(f, OP_mul, w1, ir_scalar(f, 2)));
    Ref w3 = ir_tensor(f, w);
    sum = ir_binary(f, OP_add, sum, ir_binary(f, OP_add, x, w3));
    func_add_out(f, "loss", OUT_LOSS, ir_reduce(f, OP_sum, sum, 3, false));
}

static void test_cse(void) {
    Case c;
    case_begin(&c, "cse", build_cse);
    Func *f = func_of(&c, "loss");
    int before = f->nnodes;
    int merged = cse(f);
    CHECK(merged > 0);
    dce(f);
    CHECK(count_op(f, OP_input) == 1);
    CHECK(count_op(f, OP_tensor) == 2);  /* before and after the store */
    CHECK(count_op(f, OP_const) == 3);   /* [1, 2, 3], [1, 2, 4], 2 */
    CHECK(count_op(f, OP_sub) == 2);
    CHECK(f->nnodes < before);
    CHECK(cse(f) == 0);
    case_end(&c);
}

/* Outputs keep their node's name: metric_info reads the label of a driver metric there. */
static void build_names(Module *m) {
    Func *f = module_add_func(m, "evaluate");
    Ref x = ir_input(f, func_add_arg(f, "x", ARG_INPUT, DT_F32, SHAPE(1, 1, 3), noloc));
    Ref a1 = ir_argmax(f, x, 1), a2 = ir_argmax(f, x, 1), a3 = ir_argmax(f, x, 1);
    f->nodes[a1].name = "pred";
    f->nodes[a2].name = "y";
    func_add_out(f, "pred", OUT_OUTPUT, a1);
    func_add_out(f, "f1", OUT_METRIC, a2);
    func_add_out(f, "other", OUT_OUTPUT, a3);
}

static void test_cse_names(void) {
    Case c;
    case_begin(&c, "names", build_names);
    Func *f = func_of(&c, "evaluate");
    cse(f);
    dce(f);
    CHECK(count_op(f, OP_argmax) == 2);
    CHECK(!strcmp(out_node(f, "f1")->name, "y"));
    CHECK(!strcmp(out_node(f, "pred")->name, "pred"));
    CHECK(out_node(f, "other") == out_node(f, "pred"));
    case_end(&c);
}

/* ---------------------------------------------------------------- dce */

static void build_dce(Module *m) {
    Func *f = module_add_func(m, "loss");
    int w = param(m, "w", SHAPE(0, 3));
    Ref x = ir_input(f, func_add_arg(f, "x", ARG_INPUT, DT_F32, SHAPE(1, 1, 3), noloc));
    func_add_arg(f, "unused", ARG_INPUT, DT_F32, SHAPE(1, 1, 3), noloc);
    Ref dead = ir_unary(f, OP_exp, x);
    ir_unary(f, OP_log, dead);
    Ref wr = ir_tensor(f, w);
    ir_store(f, w, ir_binary(f, OP_add, wr, ir_scalar(f, 1))); /* kept: an effect */
    ir_input(f, 1);
    func_add_out(f, "loss", OUT_LOSS, ir_reduce(f, OP_sum, x, 3, false));
}

static void test_dce(void) {
    Case c;
    case_begin(&c, "dce", build_dce);
    Func *f = func_of(&c, "loss");
    CHECK(dce(f) == 4); /* exp, log, the input of `unused` (its argument stays) */
    CHECK(count_op(f, OP_exp) == 0 && count_op(f, OP_log) == 0 && count_op(f, OP_store) == 1);
    CHECK(f->nargs == 2 && count_op(f, OP_input) == 1);
    CHECK(dce(f) == 0);
    case_end(&c);
}

/* ---------------------------------------------------------------- passes_run */

static void build_small(Module *m) {
    Func *f = module_add_func(m, "infer");
    Ref x = ir_input(f, func_add_arg(f, "x", ARG_INPUT, DT_F32, SHAPE(1, 1, 2), noloc));
    Ref c = ir_binary(f, OP_add, ir_scalar(f, 1), ir_scalar(f, -1));
    func_add_out(f, "y", OUT_OUTPUT, ir_binary(f, OP_add, x, c));
}

static char *capture(Module *m, int level, const char *after, int *rc) {
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    *rc = passes_run(m, level, after, out);
    fclose(out);
    return buf;
}

static void test_pipeline(void) {
    Case c;
    case_begin(&c, "pipeline", build_small);
    Module *m = c.m[1];
    int rc;
    char *text = capture(m, 0, "lower", &rc); /* -O0: printed, unchanged */
    CHECK(rc == 0 && strstr(text, "module pipeline") && strstr(text, "func infer("));
    CHECK(module_find_func(m, "infer")->nnodes == 6);
    free(text);
    text = capture(m, 2, "csee", &rc);
    CHECK(rc == 2 && !*text);
    free(text);
    text = capture(m, 2, "fold", &rc);
    CHECK(rc == 0 && strstr(text, "= const 0 : f32[]"));
    CHECK(strstr(text, "= const 0 : f32[batch, 2]"));
    free(text);
    CHECK(module_find_func(m, "infer")->nnodes == 1); /* y = x + 0 = x */
    text = capture(m, 1, "cse", &rc); /* not in -O1: nothing */
    CHECK(rc == 0 && !*text);
    free(text);
    case_end(&c);
}

/* ================================================================ differential tests */

static bool load(const char *path, int level, bool train, DriverResult *r) {
    DriverOptions o = {.train_functions = train, .verify = true, .set_opt = true};
    o.opt_level = level;
    if (driver_load(path, &o, r) == 0) return true;
    driver_free(r);
    return false;
}

typedef struct Config {
    const char *name;
    PassFn pass;  /* one pass, or NULL for a -O level */
    int level;
    Tol tol;
} Config;

static const Config configs[] = {
    {"bnfold", fold_batchnorm, 0, BNFOLD}, {"fold", fold_constants, 0, FOLDED},
    {"simplify", simplify, 0, EXACT},      {"cse", cse, 0, EXACT},
    {"dce", dce, 0, EXACT},                {"-O1", NULL, 1, FOLDED},
    {"-O2", NULL, 2, ALL},
};
enum { NCONFIGS = sizeof configs / sizeof configs[0] };
_Static_assert((int)NCONFIGS <= (int)MAX_DIFFS, "every configuration against one reference run");

/* Values a call computes at batch 1: the output sizes of every node but leaves and views
 * (reshape, broadcast). A rough measure of work that node counts miss: an add over
 * [batch, 32, 512] and an add of two scalars are one node each. */
static int64_t values_computed(const Func *f) {
    int64_t total = 0;
    for (int i = 0; i < f->nnodes; i++) {
        const Node *n = &f->nodes[i];
        if (op_info[n->op].flags & OPF_LEAF || n->op == OP_reshape || n->op == OP_broadcast)
            continue;
        total += shape_numel(&n->shape, 1);
    }
    return total;
}

static int node_total(const Module *m) {
    int n = 0;
    for (int i = 0; i < m->nfuncs; i++) n += m->funcs[i]->nnodes;
    return n;
}

/* metric_info must see the same thing after the passes (it reads the output nodes). */
static void check_metric_info(const Module *a, const Module *b) {
    for (int i = 0; i < a->nfuncs; i++) {
        const Func *fa = a->funcs[i], *fb = module_find_func(b, fa->name);
        for (int o = 0; fb && o < fa->nouts; o++) {
            MetricInfo ma, mb;
            bool ha = metric_info(fa, o, &ma), hb = metric_info(fb, o, &mb);
            CHECK(ha == hb);
            if (ha && hb)
                CHECK(ma.label_arg == mb.label_arg && ma.classes == mb.classes &&
                      !strcmp(ma.kind, mb.kind));
        }
    }
}

static void test_example(const char *path) {
    DriverResult base;
    bool train = true;
    if (!load(path, 0, true, &base)) {
        train = false;
        printf("note: %s: no training functions (the pipeline fails above); testing the "
               "others\n",
               path);
        if (!load(path, 0, false, &base)) {
            fprintf(stderr, "%s: does not load\n", path);
            check_failures++;
            return;
        }
    }
    for (int mi = 0; mi < base.nmodules; mi++) {
        Module *ma = base.modules[mi];
        /* node counts per function: -O0, -O1, -O2 */
        DriverResult lv[2];
        bool ok1 = load(path, 1, train, &lv[0]), ok2 = load(path, 2, train, &lv[1]);
        CHECK(ok1 && ok2);
        if (ok1 && ok2)
            for (int i = 0; i < ma->nfuncs; i++) {
                const char *fn = ma->funcs[i]->name;
            {
                const Func *f0 = ma->funcs[i], *f1 = module_find_func(lv[0].modules[mi], fn),
                           *f2 = module_find_func(lv[1].modules[mi], fn);
                printf("  nodes %-22s %-11s -O0 %5d  -O1 %5d  -O2 %5d   values -O0 %9lld  "
                       "-O1 %9lld  -O2 %9lld\n",
                       ma->name, fn, f0->nnodes, f1->nnodes, f2->nnodes,
                       (long long)values_computed(f0), (long long)values_computed(f1),
                       (long long)values_computed(f2));
            }
            }
        if (ok2) { /* what -O2 moved out of infer and evaluate, run once per weight change */
            const Func *prep = module_find_func(lv[1].modules[mi], "prepare");
            if (prep)
                printf("  nodes %-22s %-11s                           -O2 %5d   values (stores "
                       "included)             -O2 %9lld\n",
                       ma->name, "prepare", prep->nnodes, (long long)values_computed(prep));
        }
        if (ok2) check_metric_info(ma, lv[1].modules[mi]);
        if (ok1) driver_free(&lv[0]);
        if (ok2) driver_free(&lv[1]);

        /* each configuration on its own copy of the -O0 module, all against one reference
         * run of ma per function and mode */
        DriverResult opt[NCONFIGS];
        Module *mbs[NCONFIGS];
        const char *labels[NCONFIGS];
        char label_buf[NCONFIGS][256];
        Tol tols[NCONFIGS];
        bool with_f64[NCONFIGS];
        int n = 0, which[NCONFIGS];
        for (int k = 0; k < NCONFIGS; k++) {
            if (!load(path, 0, train, &opt[n])) {
                check_failures++;
                continue;
            }
            Module *mb = opt[n].modules[mi];
            if (configs[k].pass) run_pass_on_module(mb, configs[k].pass);
            else CHECK(passes_run(mb, configs[k].level, NULL, NULL) == 0);
            if (configs[k].level >= 2) prepare_build(mb); /* as driver_load does */
            CHECK(verify_module(mb) == 0);
            snprintf(label_buf[n], sizeof label_buf[n], "%s %s", ma->name, configs[k].name);
            labels[n] = label_buf[n];
            mbs[n] = mb;
            tols[n] = configs[k].tol;
            with_f64[n] = !small_run || configs[k].level == 2;
            which[n++] = k;
        }
        Diff d[NCONFIGS];
        diff_modules_n(labels, ma, mbs, n, tols, with_f64, d);
        for (int j = 0; j < n; j++) {
            const Config *c = &configs[which[j]];
            char f64_text[32] = "not run";
            if (with_f64[j]) snprintf(f64_text, sizeof f64_text, "%.1e", d[j].worst64);
            printf("  diff  %-22s %-9s nodes %5d -> %5d  functions compared %d, skipped %d, "
                   "max rel. error f64 %s, f32 %.1e\n",
                   ma->name, c->name, node_total(ma), node_total(mbs[j]), d[j].compared,
                   d[j].skipped, f64_text, d[j].worst32);
            /* what the interpreter cannot run, compiled code can: -O0 against -O2 */
            if (d[j].skipped && c->pass == NULL && c->level == 2) {
                double w = diff_jit(labels[j], ma, mbs[j]);
                if (w >= 0)
                    printf("  diff  %-22s %-9s on compiled code: max rel. error f32 %.1e\n",
                           ma->name, c->name, w);
            }
            driver_free(&opt[j]);
        }
        /* prepare alone is exact: -O2 without it against -O2 with it (derived tensors hold
         * the values infer and evaluate computed themselves) */
        DriverResult pa, pb;
        if (load(path, 0, train, &pa) && load(path, 0, train, &pb)) {
            Module *xa = pa.modules[mi], *xb = pb.modules[mi];
            CHECK(passes_run(xa, 2, NULL, NULL) == 0 && passes_run(xb, 2, NULL, NULL) == 0);
            int derived = prepare_build(xb);
            CHECK(verify_module(xb) == 0);
            char label[256];
            snprintf(label, sizeof label, "%s prepare", ma->name);
            const char *lp = label;
            Tol tol = EXACT;
            bool f64 = !small_run;
            Diff d;
            diff_modules_n(&lp, xa, &xb, 1, &tol, &f64, &d);
            char f64_text[32] = "not run";
            if (f64) snprintf(f64_text, sizeof f64_text, "%.1e", d.worst64);
            printf("  diff  %-22s %-9s derived tensors %d, functions compared %d, skipped %d, max "
                   "rel. error f64 %s, f32 %.1e\n",
                   ma->name, "prepare", derived, d.compared, d.skipped, f64_text, d.worst32);
            driver_free(&pa);
            driver_free(&pb);
        } else {
            check_failures++;
        }
    }
    driver_free(&base);
}

static void test_examples(void) {
    glob_t g;
    if (glob("examples/*.nn", 0, NULL, &g) || g.gl_pathc == 0) {
        fprintf(stderr, "no examples/*.nn (run from the repository root)\n");
        check_failures++;
        return;
    }
    for (size_t i = 0; i < g.gl_pathc; i++) {
        printf("%s\n", g.gl_pathv[i]);
        test_example(g.gl_pathv[i]);
    }
    globfree(&g);
}

/* Writes src to a new temporary .nn file; path is a mkstemps template ending in ".nn". */
static bool write_model(char *path, const char *src) {
    int fd = mkstemps(path, 3);
    CHECK(fd >= 0);
    if (fd < 0) return false;
    bool ok = write(fd, src, strlen(src)) == (ssize_t)strlen(src);
    CHECK(ok);
    close(fd);
    return ok;
}

/* Two dense layers, each followed by inference batchnorm (the second with a scaling after). */
static const char *const bn_dense_model = "model bn {\n"
                                          "  input x: f32[batch, 2]\n"
                                          "  label y: i32[batch]\n"
                                          "  h = dense(x, 8) |> batchnorm |> relu\n"
                                          "  z = dense(h, 4) |> batchnorm(eps=0.1)\n"
                                          "  output p = softmax(z * 2)\n"
                                          "  loss cross_entropy(z, y)\n"
                                          "  metric accuracy(z, y)\n"
                                          "}\n"
                                          "train bn {\n"
                                          "  data = fashion_mnist\n"
                                          "  optimizer = sgd(lr=0.1, momentum=0.9)\n"
                                          "}\n";

/* Dropout is off in infer and evaluate by construction (lower.c emits no rand_uniform there),
 * so no pass has to remove it. */
static void test_no_dropout_in_inference(void) {
    char path[] = "/tmp/nnc_test_passes_XXXXXX.nn";
    const char *src = "model d {\n"
                      "  input x: f32[batch, 8]\n"
                      "  label y: i32[batch]\n"
                      "  h = dense(x, 16) |> relu |> dropout(0.5)\n"
                      "  logits = dense(h, 4) |> dropout(0.25)\n"
                      "  output p = softmax(logits)\n"
                      "  loss cross_entropy(logits, y)\n"
                      "}\n";
    if (!write_model(path, src)) return;
    DriverResult r;
    if (load(path, 0, true, &r)) {
        Module *m = r.modules[0];
        CHECK(count_op(module_find_func(m, "infer"), OP_rand_uniform) == 0);
        CHECK(count_op(module_find_func(m, "evaluate"), OP_rand_uniform) == 0);
        CHECK(count_op(module_find_func(m, "loss"), OP_rand_uniform) == 2);
        CHECK(count_op(module_find_func(m, "train_step"), OP_rand_uniform) == 2);
        driver_free(&r);
    } else {
        check_failures++;
    }
    unlink(path);
}

/* Batchnorm folding: dense layers followed by inference batchnorm, run through the
 * interpreter before and after (tests/passes/bnfold.nn shows the convolution case). Both
 * chains fold, whatever their cost at batch 1: prepare computes the scaled weights once
 * per weight change. */
static void test_batchnorm_fold(void) {
    char path[] = "/tmp/nnc_test_bnfold_XXXXXX.nn";
    if (!write_model(path, bn_dense_model)) return;
    DriverResult a, b;
    if (load(path, 0, true, &a) && load(path, 0, true, &b)) {
        Module *ma = a.modules[0], *mb = b.modules[0];
        int folded = 0;
        for (int i = 0; i < mb->nfuncs; i++) {
            int changes = fold_batchnorm(mb->funcs[i]);
            dce(mb->funcs[i]);
            folded += changes;
            const char *fn = mb->funcs[i]->name;
            bool inference = !strcmp(fn, "infer") || !strcmp(fn, "evaluate");
            CHECK(inference ? changes == 2 : changes == 0);
        }
        CHECK(folded == 4);
        Func *inf = module_find_func(mb, "infer");
        CHECK(count_op(inf, OP_sqrt) == 2); /* one per batchnorm, on [C] */
        CHECK(verify_module(mb) == 0);
        Diff d = diff_modules("batchnorm dense", ma, mb, BNFOLD);
        printf("  diff  batchnorm dense           bnfold    functions compared %d, max rel. error "
               "f64 %.1e, f32 %.1e\n", d.compared, d.worst64, d.worst32);
        CHECK(d.compared == 5);
        /* and the whole -O2 pipeline */
        DriverResult c;
        if (load(path, 2, true, &c)) {
            d = diff_modules("batchnorm dense -O2", ma, c.modules[0], ALL);
            printf("  diff  batchnorm dense           -O2       max rel. error f64 %.1e, "
                   "f32 %.1e\n",
                   d.worst64, d.worst32);
            { /* and on compiled code */
                double w = diff_jit("batchnorm dense -O2", ma, c.modules[0]);
                CHECK(w >= 0);
                printf("  diff  batchnorm dense           -O2       on compiled code: max rel. "
                       "error f32 %.1e\n",
                       w);
            }
            driver_free(&c);
        } else {
            check_failures++;
        }
    } else {
        check_failures++;
    }
    driver_free(&a);
    driver_free(&b);
    unlink(path);
}

/* ---------------------------------------------------------------- derived tensors */

/* Runs f once on the interpreter (f32 state as it is) and returns output 0 in *out. */
static int run_once(Interp *in, Func *f, const ITensor *args, ITensor *out) {
    ITensor outs[MAX_OUTS] = {{0}};
    char err[256];
    int rc = interp_run(in, f, test_batch, args, outs, err, sizeof err);
    if (rc) fprintf(stderr, "%s: %s\n", f->name, err);
    for (int i = 1; i < f->nouts; i++) itensor_free(&outs[i]);
    *out = outs[0];
    return rc;
}

/* infer of -O0 and -O2 (derived tensors) on the same inputs from their current states. */
static double infer_diff(Interp *ia, Interp *ib, const ITensor *x) {
    ITensor ya, yb;
    int rc = run_once(ia, module_find_func(ia->mod, "infer"), x, &ya);
    rc |= run_once(ib, module_find_func(ib->mod, "infer"), x, &yb);
    CHECK(rc == 0);
    double e = rc ? INFINITY : tensor_diff(&ya, &yb);
    itensor_free(&ya);
    itensor_free(&yb);
    return e;
}

/* Derived tensors follow the weights. The same sequence on the model at -O0 and at -O2 (its
 * batchnorms folded into derived tensors): init, infer; three train steps, infer after each;
 * other weights written into the state (as nnrt_load writes them), prepare, infer. infer
 * must agree within 1e-5 each time, and the training state bit for bit. Without prepare
 * after the write, infer reads stale derived tensors: checked to differ, so that the
 * comparisons above can fail. Then the same on compiled code through exec.c. */
static void test_derived_weights(const char *label, const char *path) {
    DriverResult a, b;
    if (!load(path, 0, true, &a) || !load(path, 2, true, &b)) {
        check_failures++;
        return;
    }
    Module *ma = a.modules[0], *mb = b.modules[0];
    Func *prep = module_find_func(mb, "prepare");
    CHECK(prep != NULL && same_layout(ma, mb) && mb->ntensors > ma->ntensors);
    int derived_reads = 0;
    Func *inf = module_find_func(mb, "infer");
    for (int i = 0; i < inf->nnodes; i++)
        derived_reads += inf->nodes[i].op == OP_tensor && mb->tensors[inf->nodes[i].attr.tensor].kind == TK_DERIVED;
    CHECK(derived_reads >= 2);
    CHECK(count_op(inf, OP_sqrt) == 0); /* every batchnorm folded: its sqrt is in prepare */
    Interp ia, ib;
    interp_init(&ia, ma, false);
    interp_init(&ib, mb, false);
    ia.seed = ib.seed = 7;
    char err[256];
    CHECK(interp_run_init(&ia, err, sizeof err) == 0 && interp_run_init(&ib, err, sizeof err) == 0);
    CHECK(interp_run(&ib, prep, 1, NULL, NULL, err, sizeof err) == 0);
    Func *step_a = module_find_func(ma, "train_step"), *step_b = module_find_func(mb, "train_step");
    ITensor x[64] = {{0}}, xy[64] = {{0}};
    make_args(inf, x);
    make_args(step_a, xy);
    double worst = infer_diff(&ia, &ib, x);
    CHECK(worst <= 1e-5);
    for (int k = 0; k < 3; k++) {
        ITensor la, lb;
        CHECK(run_once(&ia, step_a, xy, &la) == 0 && run_once(&ib, step_b, xy, &lb) == 0);
        itensor_free(&la);
        itensor_free(&lb);
        for (int t = 0; t < ma->ntensors; t++) CHECK(tensor_diff(&ia.tensors[t], &ib.tensors[t]) == 0);
        CHECK(prepare_stale_after(mb, step_b) && prepare_needed_by(mb, inf));
        CHECK(interp_run(&ib, prep, 1, NULL, NULL, err, sizeof err) == 0);
        double e = infer_diff(&ia, &ib, x);
        CHECK(e <= 1e-5);
        worst = fmax(worst, e);
    }
    /* other weights, written from outside */
    uint8_t *state = initial_state(ma), *wide = widen_state(state, ma, mb);
    interp_save_state(&ib, wide); /* keep b's (now stale) derived tensors */
    memcpy(wide, state, (size_t)ma->state_bytes);
    interp_load_state(&ia, state);
    interp_load_state(&ib, wide);
    double stale = infer_diff(&ia, &ib, x);
    CHECK(stale > 1e-3);
    CHECK(interp_run(&ib, prep, 1, NULL, NULL, err, sizeof err) == 0);
    double e = infer_diff(&ia, &ib, x);
    CHECK(e <= 1e-5);
    worst = fmax(worst, e);
    printf("  derived %-18s interpreter: infer after init, 3 train steps and a load within %.1e "
           "(stale derived tensors: %.1e)\n", label, worst, stale);
    interp_free(&ia);
    interp_free(&ib);

    /* compiled code through exec.c, which prepares lazily: after init, after each train step
     * and after a write into the state, infer agrees with -O0 */
    Exec ea, eb;
    if (exec_open(&ea, ma, false, 7, NULL) || exec_open(&eb, mb, false, 7, NULL) ||
        exec_init(&ea, err, sizeof err) || exec_init(&eb, err, sizeof err)) {
        fprintf(stderr, "%s: does not compile\n", label);
        check_failures++;
    } else {
        double jworst = 0;
        for (int k = 0; k <= 4; k++) {
            if (k == 4) { /* other weights, loaded */
                memcpy(exec_state(&ea), state, (size_t)ma->state_bytes);
                memcpy(exec_state(&eb), state, (size_t)ma->state_bytes);
                exec_state_changed(&ea);
                exec_state_changed(&eb);
            }
            JitResult ra, rb;
            bool ok = jit_calls(&ea, module_find_func(ma, "infer"), x, 1, &ra);
            ok &= jit_calls(&eb, inf, x, 1, &rb);
            CHECK(ok);
            /* f32 train steps through differently ordered kernels (-O0 against -O2, with its
             * folds and fusions): fashion_cnn's infer agrees within 8.5e-6 with OpenBLAS's
             * Haswell kernels, 1.3e-5 with its SkylakeX ones; stale derived tensors ~1. */
            double je = floats_diff(ra.outs[0], rb.outs[0], ra.count[0]);
            CHECK(je <= 5e-5);
            jworst = fmax(jworst, je);
            jit_result_free(&ra);
            jit_result_free(&rb);
            if (k >= 3) continue;
            ok = jit_calls(&ea, step_a, xy, 1, &ra);
            ok &= jit_calls(&eb, step_b, xy, 1, &rb);
            CHECK(ok && !memcmp(ra.state, rb.state, (size_t)ma->state_bytes));
            CHECK(eb.derived_stale);
            jit_result_free(&ra);
            jit_result_free(&rb);
        }
        printf("  derived %-18s compiled code (lazy prepare): infer after init, 3 train steps and a "
               "load within %.1e\n", label, jworst);
    }
    exec_close(&ea);
    exec_close(&eb);
    for (int i = 0; i < inf->nargs; i++) itensor_free(&x[i]);
    for (int i = 0; i < step_a->nargs; i++) itensor_free(&xy[i]);
    free(state);
    free(wide);
    driver_free(&a);
    driver_free(&b);
}

/* Always at batch 3 (also with NNC_TEST_SMALL): compiled fashion_cnn's infer at -O0 and -O2
 * is held to 1e-5 on these inputs. */
static void test_derived(void) {
    int64_t saved = test_batch;
    test_batch = 3;
    char path[] = "/tmp/nnc_test_derived_XXXXXX.nn";
    if (write_model(path, bn_dense_model)) {
        test_derived_weights("dense+batchnorm", path);
        unlink(path);
    }
    test_derived_weights("fashion_cnn", "examples/fashion_cnn.nn");
    test_batch = saved;
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0); /* notes and failures in order */
    const char *small = getenv("NNC_TEST_SMALL");
    small_run = small && *small && strcmp(small, "0");
    if (small_run) test_batch = 2;
    printf("batch %lld%s\n", (long long)test_batch,
           small_run ? "; f64 mode: the -O0 reference and -O2 only (NNC_TEST_SMALL)" : "");
    setenv("NNC_VERIFY", "1", 1); /* ir_verify after every pass of passes_run */
#define TEST(name) (tests_run++, name())
    TEST(test_fold);
    TEST(test_random_kept);
    TEST(test_simplify);
    TEST(test_stop_gradient);
    TEST(test_cse);
    TEST(test_cse_names);
    TEST(test_dce);
    TEST(test_pipeline);
    TEST(test_no_dropout_in_inference);
    TEST(test_batchnorm_fold);
    TEST(test_derived);
    TEST(test_examples);
    fprintf(stderr, "test_passes: %d tests\n", tests_run);
    return check_done();
}
