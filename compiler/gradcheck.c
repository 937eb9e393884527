/* gradcheck.c — `nnc gradcheck`: symbolic gradients against central finite differences.
 *
 * The model's params are initialized by `init` (seeded), the inputs are random, `grad` runs
 * once in f64 through the interpreter, and for every element of every parameter (or a seeded
 * sample of 64 elements of a bigger one, --sample N) the loss is evaluated at w +- eps:
 *   numeric = (loss(w + eps) - loss(w - eps)) / (2 eps)
 *   error   = |symbolic - numeric| / max(1, |symbolic|, |numeric|)
 * The error is relative for gradients above 1 in magnitude and absolute below, so that the
 * many tiny or zero gradients of a network (dead ReLUs, far-away softmax classes) do not
 * turn rounding noise into huge relative errors. In f64 with eps = 1e-6 a correct rule gives
 * errors around 1e-9; a wrong one gives errors near its own size.
 *
 * Every evaluation starts from the same module state: states (batchnorm running statistics,
 * which the training-mode loss stores into), slots, the step counter and hypers are restored
 * from a snapshot taken after `init`, so stores cannot disturb the check, and dropout draws
 * the same mask each time (its counter is the step, which `loss` does not advance).
 */
#include "nnc.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { GRADCHECK_SAMPLE = 64, GRADCHECK_MAX_SAMPLE = 4096 };


typedef struct Options {
    const char *path, *model;
    uint64_t seed;
    int64_t batch, sample;
    double eps, tol;
} Options;

static void usage(FILE *out) {
    fprintf(out,
            "usage: nnc gradcheck FILE.nn [--seed N] [--model M] [--batch N] [--sample N] [--eps E] [--tol T]\n"
            "\n"
            "Compares every parameter's symbolic gradient with central finite differences of the\n"
            "loss, in f64, on random inputs (labels drawn from the valid class range).\n"
            "\n"
            "  --seed N    seed of the parameter init, the inputs and the sampled elements (0)\n"
            "  --model M   the model to check when the file defines several\n"
            "  --batch N   batch size of the random inputs (2)\n"
            "  --sample N  elements checked per parameter at most, chosen by the seed (%d)\n"
            "  --eps E     finite-difference step (1e-6)\n"
            "  --tol T     largest accepted error (1e-4); error = |a - n| / max(1, |a|, |n|)\n"
            "\n"
            "Exit status: 0 all within tolerance, 1 a gradient is wrong or the input has errors,\n"
            "2 usage errors.\n",
            GRADCHECK_SAMPLE);
}

/* A number >= lo, or a message and false. */
static bool parse_number(const char *name, const char *s, double lo, double *out) {
    char *end;
    errno = 0;
    double v = s ? strtod(s, &end) : 0;
    if (!s || errno || end == s || *end || !(v >= lo) || !isfinite(v)) {
        if (s) fprintf(stderr, "nnc gradcheck: error: bad value '%s' for %s\n", s, name);
        return false;
    }
    *out = v;
    return true;
}

/* Returns 0, or 2 after a message; --help sets *help. */
static int parse_options(int argc, char **argv, Options *o, bool *help) {
    static const char *const known[] = {"--seed", "--model", "--batch", "--sample", "--eps", "--tol", "--help"};
    *o = (Options){.batch = 2, .sample = GRADCHECK_SAMPLE, .eps = 1e-6, .tol = 1e-4};
    *help = false;
    for (int i = 0; i < argc; i++) {
        const char *v;
        double x;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            *help = true;
            return 0;
        } else if (opt_value(argc, argv, &i, "--seed", &v)) {
            int64_t seed;
            if (!v || !parse_int_arg("--seed", v, 0, INT64_MAX, &seed)) return 2;
            o->seed = (uint64_t)seed;
        } else if (opt_value(argc, argv, &i, "--model", &v)) {
            if (!v) return 2;
            o->model = v;
        } else if (opt_value(argc, argv, &i, "--batch", &v)) {
            if (!v || !parse_int_arg("--batch", v, 1, 1 << 20, &o->batch)) return 2;
        } else if (opt_value(argc, argv, &i, "--sample", &v)) {
            if (!v || !parse_int_arg("--sample", v, 1, GRADCHECK_MAX_SAMPLE, &o->sample)) return 2;
        } else if (opt_value(argc, argv, &i, "--eps", &v)) {
            if (!parse_number("--eps", v, 1e-300, &x)) return 2;
            o->eps = x;
        } else if (opt_value(argc, argv, &i, "--tol", &v)) {
            if (!parse_number("--tol", v, 0, &x)) return 2;
            o->tol = x;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return unknown_option("gradcheck", argv[i], known, (int)(sizeof known / sizeof known[0]));
        } else if (o->path) {
            fprintf(stderr, "nnc gradcheck: error: more than one input file ('%s', '%s')\n", o->path, argv[i]);
            return 2;
        } else {
            o->path = argv[i];
        }
    }
    if (!o->path) {
        fprintf(stderr, "nnc gradcheck: error: no input file\n");
        usage(stderr);
        return 2;
    }
    return 0;
}

/* ---------------------------------------------------------------- random numbers */

/* splitmix64: small, seedable, good enough for test inputs */
static uint64_t next_random(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double uniform01(uint64_t *state) { return (double)(next_random(state) >> 11) * 0x1.0p-53; }

/* ---------------------------------------------------------------- inputs */

/* The argument a value comes from through shape-only ops, or -1. */
static int source_arg(const Func *f, Ref r) {
    for (;;) {
        const Node *n = &f->nodes[r];
        switch (n->op) {
        case OP_input: return (int)n->attr.index;
        case OP_reshape:
        case OP_transpose:
        case OP_slice:
        case OP_broadcast:
        case OP_cast:
        case OP_stop_gradient: r = n->in[0]; break;
        default: return -1;
        }
    }
}

/* The constant a value comes from through shape-only ops, or NULL. */
static const Node *source_const(const Func *f, Ref r) {
    while (f->nodes[r].op == OP_broadcast || f->nodes[r].op == OP_reshape) r = f->nodes[r].in[0];
    return f->nodes[r].op == OP_const ? &f->nodes[r] : NULL;
}

/* For each i32 argument, the exclusive upper bound of valid values: the class count of the
 * logits of a cross_entropy it is the labels of, the row count of a table it gathers from,
 * or the size of the class ids it is compared with (one_hot: eq(labels, [0, 1, ... C-1]));
 * 2 when none is found. */
static void index_bounds(const Func *f, int64_t *bound) {
    for (int a = 0; a < f->nargs; a++) bound[a] = INT64_MAX;
    for (int i = 0; i < f->nnodes; i++) {
        const Node *n = &f->nodes[i];
        int arg = -1;
        int64_t limit = 0;
        if (n->op == OP_cross_entropy && n->nin >= 2) {
            const Shape *logits = &f->nodes[n->in[0]].shape;
            arg = source_arg(f, n->in[1]);
            limit = logits->rank ? logits->dim[logits->rank - 1] : 1;
        } else if (n->op == OP_gather) {
            arg = source_arg(f, n->in[1]);
            limit = f->nodes[n->in[0]].shape.dim[0];
        } else if (n->op == OP_eq && f->nodes[n->in[0]].dtype == DT_I32) {
            for (int side = 0; side < 2 && arg < 0; side++) {
                const Node *ids = source_const(f, n->in[1 - side]);
                if (!ids || !ids->attr.data) continue;  /* a list of ids, not a splat */
                arg = source_arg(f, n->in[side]);
                for (int64_t j = 0; j < shape_numel(&ids->shape, 1); j++)
                    if (ids->attr.data[j] + 1 > (double)limit) limit = (int64_t)ids->attr.data[j] + 1;
            }
        }
        if (arg >= 0 && limit > 0 && limit < bound[arg]) bound[arg] = limit;
    }
    for (int a = 0; a < f->nargs; a++)
        if (bound[a] == INT64_MAX) bound[a] = 2;
}

/* Random arguments for f with batch n: f32/f64 inputs U[-1, 1), f32/f64 labels U[0, 1)
 * (targets of bce, kl_div, ... must be probabilities), i32 values U{0 .. bound-1}. */
static ITensor *make_args(const Func *f, int64_t n, uint64_t *rng) {
    ITensor *args = calloc((size_t)f->nargs + 1, sizeof *args);
    int64_t *bound = calloc((size_t)f->nargs + 1, sizeof *bound);
    if (!args || !bound) abort();
    index_bounds(f, bound);
    for (int a = 0; a < f->nargs; a++) {
        const FuncArg *fa = &f->args[a];
        ITensor *t = &args[a];
        t->dtype = fa->dtype;
        t->rank = fa->shape.rank;
        for (int d = 0; d < t->rank; d++) t->dim[d] = shape_dim(&fa->shape, d, n);
        t->numel = shape_numel(&fa->shape, n);
        t->data = calloc((size_t)t->numel + 1, sizeof *t->data);
        if (!t->data) abort();
        for (int64_t j = 0; j < t->numel; j++) {
            if (fa->dtype == DT_I32)
                t->data[j] = (double)(next_random(rng) % (uint64_t)bound[a]);
            else if (fa->role == ARG_LABEL)
                t->data[j] = uniform01(rng);
            else
                t->data[j] = 2 * uniform01(rng) - 1;
        }
    }
    free(bound);
    return args;
}

/* ---------------------------------------------------------------- evaluation */

typedef struct Checker {
    Module *m;
    Interp in;
    Func *loss, *grad;
    ITensor *args;
    int64_t batch;
    double **snapshot; /* every module tensor's values after init */
} Checker;

/* Puts every tensor but the params back to its value after init. */
static void restore_state(Checker *c) {
    for (int t = 0; t < c->m->ntensors; t++)
        if (c->m->tensors[t].kind != TK_PARAM)
            memcpy(c->in.tensors[t].data, c->snapshot[t], (size_t)c->in.tensors[t].numel * sizeof(double));
}

static int out_index(const Func *f, OutRole role, const char *name) {
    for (int i = 0; i < f->nouts; i++)
        if (f->outs[i].role == role && (!name || !strcmp(f->outs[i].name, name))) return i;
    return -1;
}

/* Runs f from the snapshot state; outs must hold f->nouts tensors. Returns 0 or prints. */
static int run(Checker *c, Func *f, ITensor *outs) {
    char err[256] = "";
    restore_state(c);
    int rc = interp_run(&c->in, f, c->batch, c->args, outs, err, sizeof err);
    if (rc) fprintf(stderr, "nnc gradcheck: error: running '%s' failed: %s\n", f->name, err);
    return rc;
}

/* The loss at the current params, or NAN on failure. */
static double eval_loss(Checker *c) {
    ITensor *outs = calloc((size_t)c->loss->nouts + 1, sizeof *outs);
    if (!outs) abort();
    double value = NAN;
    if (run(c, c->loss, outs) == 0) value = outs[out_index(c->loss, OUT_LOSS, NULL)].data[0];
    for (int i = 0; i < c->loss->nouts; i++) itensor_free(&outs[i]);
    free(outs);
    return value;
}

/* The elements to check: all, or `sample` distinct ones in increasing order. */
static int64_t pick_elements(int64_t numel, int64_t sample, uint64_t *rng, int64_t *out) {
    if (numel <= sample) {
        for (int64_t i = 0; i < numel; i++) out[i] = i;
        return numel;
    }
    int64_t count = 0;
    while (count < sample) {
        int64_t e = (int64_t)(next_random(rng) % (uint64_t)numel), j = count;
        bool seen = false;
        for (int64_t k = 0; k < count; k++) seen = seen || out[k] == e;
        if (seen) continue;
        while (j > 0 && out[j - 1] > e) { out[j] = out[j - 1]; j--; }  /* insertion sort */
        out[j] = e;
        count++;
    }
    return count;
}

/* "[2, 17]": the multi-index of flat element e of a tensor with the given shape. */
static const char *element_str(const Shape *s, int64_t e, char *buf, size_t len) {
    int64_t idx[IR_MAX_RANK];
    for (int d = s->rank - 1; d >= 0; d--) {
        idx[d] = e % s->dim[d];
        e /= s->dim[d];
    }
    size_t used = (size_t)snprintf(buf, len, "[");
    for (int d = 0; d < s->rank && used < len; d++)
        used += (size_t)snprintf(buf + used, len - used, "%s%" PRId64, d ? ", " : "", idx[d]);
    if (used < len) snprintf(buf + used, len - used, "]");
    return buf;
}

typedef struct Worst {
    double error, symbolic, numeric;
    int64_t element;
} Worst;

int cmd_gradcheck(int argc, char **argv) {
    Options opt;
    bool help;
    int rc = parse_options(argc, argv, &opt, &help);
    if (rc) return rc;
    if (help) {
        usage(stdout);
        return 0;
    }

    DriverOptions dopts = {.train_functions = true, .verify = true};
    DriverResult r;
    if (driver_load(opt.path, &dopts, &r)) {
        driver_free(&r);
        return 1;
    }
    Module *m = driver_pick_model(&r, opt.model);
    Checker c = {.m = m, .batch = opt.batch};
    if (m) {
        c.loss = module_find_func(m, "loss");
        c.grad = module_find_func(m, "grad");
    }
    Func *init = m ? module_find_func(m, "init") : NULL;
    if (!m || !c.loss || !c.grad || !init) {
        if (m) fprintf(stderr, "nnc gradcheck: error: model '%s' has no loss to check\n", m->name);
        driver_free(&r);
        return 1;
    }

    uint64_t rng = opt.seed ^ 0x6E6E632D67726164ull;  /* "nnc-grad" */
    interp_init(&c.in, m, true);
    c.in.seed = opt.seed;
    char err[256] = "";
    int status = 0;
    ITensor *grads = calloc((size_t)c.grad->nouts + 1, sizeof *grads);
    c.snapshot = calloc((size_t)m->ntensors + 1, sizeof *c.snapshot);
    if (!grads || !c.snapshot) abort();
    ITensor no_outs[1] = {{0}};
    if (interp_run(&c.in, init, c.batch, NULL, no_outs, err, sizeof err)) {
        fprintf(stderr, "nnc gradcheck: error: running 'init' failed: %s\n", err);
        status = 1;
        goto done;
    }
    for (int t = 0; t < m->ntensors; t++) {
        size_t bytes = (size_t)c.in.tensors[t].numel * sizeof(double);
        c.snapshot[t] = malloc(bytes + sizeof(double));
        if (!c.snapshot[t]) abort();
        memcpy(c.snapshot[t], c.in.tensors[t].data, bytes);
    }
    c.args = make_args(c.loss, c.batch, &rng);
    if (run(&c, c.grad, grads)) {
        status = 1;
        goto done;
    }

    int width = 0, nparams = 0;
    for (int t = 0; t < m->ntensors; t++)
        if (m->tensors[t].kind == TK_PARAM) {
            int len = (int)strlen(m->tensors[t].name);
            width = len > width ? len : width;
            nparams++;
        }
    double worst_all = 0;
    int failures = 0;
    for (int t = 0; t < m->ntensors; t++) {
        const ModTensor *mt = &m->tensors[t];
        if (mt->kind != TK_PARAM) continue;
        int gi = out_index(c.grad, OUT_GRAD, mt->name);
        if (gi < 0) {
            fprintf(stderr, "nnc gradcheck: internal error: no gradient output for '%s'\n", mt->name);
            status = 1;
            continue;
        }
        double *w = c.in.tensors[t].data;
        int64_t numel = c.in.tensors[t].numel, picked[GRADCHECK_MAX_SAMPLE];
        int64_t count = pick_elements(numel, opt.sample, &rng, picked);
        Worst worst = {.element = -1};
        for (int64_t k = 0; k < count; k++) {
            int64_t e = picked[k];
            double saved = w[e];
            w[e] = saved + opt.eps;
            double plus = eval_loss(&c);
            w[e] = saved - opt.eps;
            double minus = eval_loss(&c);
            w[e] = saved;
            double numeric = (plus - minus) / (2 * opt.eps), symbolic = grads[gi].data[e];
            double scale = fmax(1.0, fmax(fabs(symbolic), fabs(numeric)));
            double error = fabs(symbolic - numeric) / scale;
            if (!isfinite(error)) error = INFINITY;
            if (worst.element < 0 || error > worst.error)
                worst = (Worst){error, symbolic, numeric, e};
        }
        printf("%-*s  max rel error %.1e  (%" PRId64 " of %" PRId64 " elements)\n", width, mt->name,
               worst.element < 0 ? 0.0 : worst.error, count, numel);
        if (worst.element >= 0 && worst.error > worst_all) worst_all = worst.error;
        if (worst.element >= 0 && !(worst.error <= opt.tol)) {
            char buf[128];
            fprintf(stderr,
                    "nnc gradcheck: error: gradient of '%s' is wrong at element %" PRId64 " %s: "
                    "symbolic %.9g, numeric %.9g (error %.1e > tol %.1e)\n",
                    mt->name, worst.element, element_str(&mt->shape, worst.element, buf, sizeof buf),
                    worst.symbolic, worst.numeric, worst.error, opt.tol);
            failures++;
        }
    }
    if (failures) {
        printf("gradcheck: FAILED: %d of %d parameter%s exceed%s tol %.1e (max rel error %.1e)\n",
               failures, nparams, nparams == 1 ? "" : "s", failures == 1 ? "s" : "", opt.tol, worst_all);
        status = 1;
    } else if (!status) {
        printf("gradcheck: ok: %d parameter%s, max rel error %.1e (tol %.1e)\n", nparams,
               nparams == 1 ? "" : "s", worst_all, opt.tol);
    }

done:
    for (int i = 0; i < c.grad->nouts; i++) itensor_free(&grads[i]);
    free(grads);
    if (c.args) {
        for (int a = 0; a < c.loss->nargs; a++) free(c.args[a].data);
        free(c.args);
    }
    for (int t = 0; t < m->ntensors; t++) free(c.snapshot[t]);
    free(c.snapshot);
    interp_free(&c.in);
    driver_free(&r);
    return status;
}
