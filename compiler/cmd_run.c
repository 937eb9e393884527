/* cmd_run.c — commands that execute a model: run (inference), grad (one batch's gradients),
 * train (array mode: K steps over .npy arrays; dataset mode lives in train.c).
 *
 * They run on compiled code through the JIT, or on the interpreter with --interp. */
#include "nnc.h"
#include "nnrt.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- option parsing */

/* Matches "--name VALUE" or "--name=VALUE" at argv[*i]; advances *i past the value. */
bool opt_value(int argc, char **argv, int *i, const char *name, const char **value) {
    size_t len = strlen(name);
    if (strncmp(argv[*i], name, len)) return false;
    if (argv[*i][len] == '=') {
        *value = argv[*i] + len + 1;
        return true;
    }
    if (argv[*i][len] != '\0') return false;
    if (*i + 1 >= argc) {
        fprintf(stderr, "nnc: error: option '%s' needs a value\n", name);
        *value = NULL;
        return true;
    }
    *value = argv[++*i];
    return true;
}

bool parse_int_arg(const char *opt, const char *s, int64_t lo, int64_t hi, int64_t *out) {
    char *end;
    errno = 0;
    long long v = s ? strtoll(s, &end, 10) : 0;
    if (!s || !*s || *end || errno || v < lo || v > hi) {
        fprintf(stderr, "nnc: error: %s expects an integer in [%" PRId64 ", %" PRId64 "], got '%s'\n",
                opt, lo, hi, s ? s : "");
        return false;
    }
    *out = v;
    return true;
}

int unknown_option(const char *cmd, const char *arg, const char *const *known, int nknown) {
    char name[64];
    snprintf(name, sizeof name, "%.*s", (int)strcspn(arg, "="), arg);
    const char *close = diag_closest(name, known, nknown);
    if (close)
        fprintf(stderr, "nnc %s: error: unknown option '%s'; did you mean '%s'?\n", cmd, name, close);
    else
        fprintf(stderr, "nnc %s: error: unknown option '%s'\n", cmd, name);
    fprintf(stderr, "Run 'nnc %s --help' for its options.\n", cmd);
    return 2;
}

/* ---------------------------------------------------------------- named arrays */

typedef struct NamedPath {
    const char *name;
    const char *path;
    bool used;
} NamedPath;

enum { MAX_NAMED = 32 };

typedef struct RunArgs {
    const char *file, *weights, *model, *out, *init, *save;
    NamedPath inputs[MAX_NAMED], outputs[MAX_NAMED];
    int ninputs, noutputs;
    bool interp, no_shuffle;
    int64_t steps, batch, seed;
} RunArgs;

static bool add_named(NamedPath *list, int *n, const char *opt, const char *value) {
    const char *eq = value ? strchr(value, '=') : NULL;
    if (!eq || eq == value || !eq[1]) {
        fprintf(stderr, "nnc: error: %s expects NAME=FILE.npy, got '%s'\n", opt, value ? value : "");
        return false;
    }
    if (*n == MAX_NAMED) {
        fprintf(stderr, "nnc: error: too many %s options\n", opt);
        return false;
    }
    list[*n].name = strndup(value, (size_t)(eq - value));
    list[*n].path = eq + 1;
    (*n)++;
    return true;
}

static void free_named(RunArgs *a) {
    for (int i = 0; i < a->ninputs; i++) free((char *)a->inputs[i].name);
    for (int i = 0; i < a->noutputs; i++) free((char *)a->outputs[i].name);
}

/* Loads the array for every arg of f from --input NAME=PATH; checks dtype and per-sample
 * shape; all must share the first (batch) dimension, returned in *n. */
static bool load_inputs(Func *f, RunArgs *ra, nnrt_array *arrays, int64_t *n) {
    *n = -1;
    bool ok = true;
    for (int i = 0; i < f->nargs; i++) {
        const FuncArg *arg = &f->args[i];
        NamedPath *np = NULL;
        for (int j = 0; j < ra->ninputs; j++)
            if (!strcmp(ra->inputs[j].name, arg->name)) np = &ra->inputs[j];
        char want[128];
        shape_str(&arg->shape, want, sizeof want);
        if (!np) {
            fprintf(stderr, "nnc: error: missing --input %s=FILE.npy (%s %s%s)\n", arg->name,
                    arg->role == ARG_LABEL ? "label" : "input", dtype_names[arg->dtype], want);
            ok = false;
            continue;
        }
        np->used = true;
        nnrt_error err = {{0}};
        if (nnrt_npy_load(np->path, &arrays[i], &err)) {
            fprintf(stderr, "nnc: error: %s\n", err.msg);
            ok = false;
            continue;
        }
        nnrt_array *a = &arrays[i];
        int want_dt = arg->dtype == DT_I32 ? NNRT_I32 : NNRT_F32;
        if (a->dtype != want_dt) {
            fprintf(stderr, "nnc: error: %s: '%s' must be %s ('%s'), the file holds %s\n", np->path,
                    arg->name, dtype_names[arg->dtype], want_dt == NNRT_I32 ? "<i4" : "<f4",
                    nnrt_dtype_name(a->dtype));
            ok = false;
            continue;
        }
        /* per-sample dims must match; the batch axis (always axis 0 of inputs) is free */
        bool shape_ok = a->rank == arg->shape.rank && arg->shape.rank > 0 && (arg->shape.batch_mask & 1);
        for (int d = 1; shape_ok && d < a->rank; d++) shape_ok = a->shape[d] == arg->shape.dim[d];
        if (shape_ok && arg->shape.dim[0] != 1) shape_ok = a->shape[0] % arg->shape.dim[0] == 0;
        if (!shape_ok) {
            char got[128];
            int used = snprintf(got, sizeof got, "[");
            for (int d = 0; d < a->rank && used < (int)sizeof got; d++)
                used += snprintf(got + used, sizeof got - (size_t)used, "%s%" PRId64, d ? ", " : "", a->shape[d]);
            snprintf(got + used, sizeof got - (size_t)used, "]");
            fprintf(stderr, "nnc: error: %s: '%s' has shape %s, the model expects %s\n", np->path,
                    arg->name, got, want);
            ok = false;
            continue;
        }
        int64_t rows = a->shape[0] / arg->shape.dim[0];
        if (*n >= 0 && rows != *n) {
            fprintf(stderr, "nnc: error: %s: '%s' has %" PRId64 " samples, other inputs have %" PRId64 "\n",
                    np->path, arg->name, rows, *n);
            ok = false;
        }
        *n = rows;
    }
    for (int j = 0; j < ra->ninputs; j++) {
        if (ra->inputs[j].used) continue;
        const char *names[64];
        int k = 0;
        /* suggest among the names not given yet */
        for (int i = 0; i < f->nargs && k < 64; i++) {
            bool given = false;
            for (int q = 0; q < ra->ninputs; q++) given |= !strcmp(ra->inputs[q].name, f->args[i].name);
            if (!given) names[k++] = f->args[i].name;
        }
        const char *close = diag_closest(ra->inputs[j].name, names, k);
        fprintf(stderr, "nnc: error: model '%s' has no input or label named '%s'", f->mod->name,
                ra->inputs[j].name);
        if (close) fprintf(stderr, "; did you mean '%s'?", close);
        fprintf(stderr, "\n");
        ok = false;
    }
    if (ok && *n <= 0) {
        fprintf(stderr, "nnc: error: the inputs hold no samples\n");
        ok = false;
    }
    return ok;
}

static int64_t sample_values(const Shape *s) {
    int64_t v = 1;
    for (int d = 0; d < s->rank; d++) v *= s->dim[d];
    return v;
}

/* ---------------------------------------------------------------- shared set-up */

void session_close(Session *s) {
    if (s->exec_open) exec_close(&s->exec);
    driver_free(&s->dr);
}

/* Loads the file, picks the model, opens an executor, runs init, and loads weights if given
 * (kinds in required_kinds must be present; the other kinds are loaded when present).
 * seed < 0 takes the train block's seed (0 without one). */
int session_open(Session *s, const char *file, const char *model, bool interp, int64_t seed,
                 const char *weights, unsigned required_kinds, const char *const *funcs) {
    memset(s, 0, sizeof *s);
    DriverOptions opts = {.train_functions = true};
    if (driver_load(file, &opts, &s->dr)) return 1;
    s->m = driver_pick_model(&s->dr, model);
    if (!s->m) return 1;
    s->info = module_info(s->m);
    uint64_t used_seed = seed >= 0 ? (uint64_t)seed : s->m->train.present ? (uint64_t)s->m->train.seed : 0;
    if (exec_open(&s->exec, s->m, interp, used_seed, funcs)) {
        fprintf(stderr, "nnc: error: cannot prepare model '%s' for execution\n", s->m->name);
        return 1;
    }
    s->exec_open = true;
    char err[512];
    if (exec_init(&s->exec, err, sizeof err)) {
        fprintf(stderr, "nnc: error: init failed: %s\n", err);
        return 1;
    }
    if (weights) {
        nnrt_error e = {{0}};
        int rc = nnrt_load(s->info, exec_state(&s->exec), weights, required_kinds,
                           NNRT_KINDS_ALL & ~required_kinds, &e);
        if (rc) {
            fprintf(stderr, "nnc: error: %s\n", e.msg[0] ? e.msg : nnrt_strerror(rc));
            return 1;
        }
        exec_state_changed(&s->exec);
    }
    return 0;
}

static int session_open_args(Session *s, const RunArgs *ra, const char *func) {
    const char *funcs[] = {func, NULL};
    return session_open(s, ra->file, ra->model, ra->interp, ra->seed,
                        ra->weights ? ra->weights : ra->init, NNRT_KINDS_WEIGHTS, funcs);
}

static bool common_option(int argc, char **argv, int *i, RunArgs *ra, bool *bad) {
    const char *v;
    if (opt_value(argc, argv, i, "--weights", &v)) ra->weights = v;
    else if (opt_value(argc, argv, i, "--model", &v)) ra->model = v;
    else if (opt_value(argc, argv, i, "--input", &v)) *bad |= !add_named(ra->inputs, &ra->ninputs, "--input", v);
    else if (opt_value(argc, argv, i, "--seed", &v)) *bad |= !parse_int_arg("--seed", v, 0, INT64_MAX, &ra->seed);
    else if (!strcmp(argv[*i], "--interp")) ra->interp = true;
    else return false;
    if (!v && strcmp(argv[*i], "--interp")) *bad = true;
    return true;
}

static bool take_file(RunArgs *ra, const char *arg, const char *cmd) {
    if (ra->file) {
        fprintf(stderr, "nnc %s: error: more than one input file ('%s' and '%s')\n", cmd, ra->file, arg);
        return false;
    }
    ra->file = arg;
    return true;
}

/* ---------------------------------------------------------------- nnc run */

static const char run_help[] =
    "usage: nnc run FILE.nn --weights W.safetensors --input NAME=FILE.npy... [options]\n"
    "\n"
    "Runs inference (dropout off, batchnorm on running statistics) on the given inputs.\n"
    "\n"
    "  --weights W          parameters and states (safetensors, PyTorch state_dict names)\n"
    "  --input NAME=F.npy   an input array (<f4 or <i4, C order, first axis = samples)\n"
    "  --output NAME=F.npy  write output NAME to a .npy file (default: print every output)\n"
    "  --model M            the model to run when the file defines several\n"
    "  --interp             use the reference interpreter instead of compiled code\n";

/* Prints an output as text: its concrete shape, then one row per sample (or per leading index). */
static void print_array(const char *name, DType dt, const Shape *shape, int64_t n, const float *fv,
                        const int32_t *iv) {
    Shape concrete = *shape;
    for (int d = 0; d < concrete.rank; d++) concrete.dim[d] = shape_dim(shape, d, n);
    concrete.batch_mask = 0;
    char buf[128];
    printf("%s: %s%s\n", name, dtype_names[dt], shape_str(&concrete, buf, sizeof buf));
    int64_t total = shape_numel(shape, n);
    int64_t rows = concrete.rank > 1 ? concrete.dim[0] : 1, cols = rows ? total / (rows ? rows : 1) : 0;
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t c = 0; c < cols; c++) {
            if (dt == DT_I32) printf("%s%d", c ? " " : "", iv[r * cols + c]);
            else printf("%s%.7g", c ? " " : "", fv[r * cols + c]);
        }
        printf("\n");
    }
}

/* Calls fn over all n samples, in chunks of at most max_batch when every output has a batch
 * axis (outputs are then concatenated); outputs reduced over the batch need all samples in one
 * call. Per-sample strides come from the function's args and outputs. */
static int call_chunked(Session *s, Func *f, int64_t n, nnrt_array *in, void **outs) {
    bool per_sample = true;
    const char *reduced = NULL;
    for (int o = 0; o < f->nouts; o++)
        if (!shape_has_batch(&f->nodes[f->outs[o].value].shape)) per_sample = false, reduced = f->outs[o].name;
    int64_t chunk = per_sample ? s->m->max_batch : n;
    if (!per_sample && n > s->m->max_batch && !s->exec.use_interp) {
        fprintf(stderr, "nnc: error: output '%s' combines the whole batch, so all %" PRId64 " samples must go in one call, "
                        "but the model's batch is %" PRId64 " (set batch in the train block, or use --interp)\n",
                reduced, n, s->m->max_batch);
        return NNRT_EBATCH;
    }
    void *bufs[2 * IR_MAX_INPUTS + 64];
    if (f->nargs + f->nouts > (int)(sizeof bufs / sizeof bufs[0])) return NNRT_EARG;
    for (int64_t start = 0; start < n; start += chunk) {
        int64_t cn = n - start < chunk ? n - start : chunk;
        for (int i = 0; i < f->nargs; i++)
            bufs[i] = (char *)in[i].data + start * sample_values(&f->args[i].shape) * 4;
        for (int o = 0; o < f->nouts; o++) {
            const Node *v = &f->nodes[f->outs[o].value];
            bufs[f->nargs + o] = (char *)outs[o] + start * sample_values(&v->shape) * 4;
        }
        char err[512];
        int rc = exec_call(&s->exec, f->name, (int)cn, bufs, err, sizeof err);
        if (rc) {
            fprintf(stderr, "nnc: error: %s failed on samples %" PRId64 "..%" PRId64 ": %s\n", f->name,
                    start, start + cn - 1, err);
            return rc;
        }
    }
    return 0;
}

int cmd_run(int argc, char **argv) {
    RunArgs ra = {.seed = -1};
    bool bad = false;
    static const char *const known[] = {"--weights", "--input", "--output", "--model", "--interp", "--seed", "--help"};
    for (int i = 0; i < argc; i++) {
        const char *v;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(run_help, stdout);
            free_named(&ra);
            return 0;
        }
        if (common_option(argc, argv, &i, &ra, &bad)) continue;
        if (opt_value(argc, argv, &i, "--output", &v)) bad |= !add_named(ra.outputs, &ra.noutputs, "--output", v);
        else if (argv[i][0] == '-' && argv[i][1]) {
            free_named(&ra);
            return unknown_option("run", argv[i], known, 7);
        } else bad |= !take_file(&ra, argv[i], "run");
    }
    if (!bad && (!ra.file || !ra.weights)) {
        fprintf(stderr, "nnc run: error: %s\n%s", !ra.file ? "no input file" : "--weights is required", run_help);
        bad = true;
    }
    if (bad) {
        free_named(&ra);
        return 2;
    }
    Session s;
    int status = session_open_args(&s, &ra, "infer");
    Func *f = status ? NULL : module_find_func(s.m, "infer");
    nnrt_array in[IR_MAX_INPUTS * 4] = {{0}};
    void *outs[64] = {0};
    if (f && f->nargs > (int)(sizeof in / sizeof in[0])) f = NULL, status = 1;
    int64_t n = 0;
    if (f && !load_inputs(f, &ra, in, &n)) status = 1;
    for (int j = 0; !status && j < ra.noutputs; j++) {
        bool found = false;
        for (int o = 0; o < f->nouts; o++) found |= !strcmp(f->outs[o].name, ra.outputs[j].name);
        if (!found) {
            fprintf(stderr, "nnc run: error: model '%s' has no output named '%s'\n", s.m->name, ra.outputs[j].name);
            status = 1;
        }
    }
    if (!status) {
        for (int o = 0; o < f->nouts && o < 64; o++) {
            const Node *v = &f->nodes[f->outs[o].value];
            outs[o] = calloc((size_t)(shape_numel(&v->shape, n) + 1), 4);
        }
        status = call_chunked(&s, f, n, in, outs) ? 1 : 0;
    }
    for (int o = 0; !status && o < f->nouts && o < 64; o++) {
        const Node *v = &f->nodes[f->outs[o].value];
        const char *path = NULL;
        for (int j = 0; j < ra.noutputs; j++)
            if (!strcmp(ra.outputs[j].name, f->outs[o].name)) path = ra.outputs[j].path;
        if (ra.noutputs && !path) continue;
        if (path) {
            int64_t shape[IR_MAX_RANK];
            for (int d = 0; d < v->shape.rank; d++) shape[d] = (v->shape.batch_mask >> d & 1) ? v->shape.dim[d] * n : v->shape.dim[d];
            nnrt_error e = {{0}};
            if (nnrt_npy_save(path, v->dtype == DT_I32 ? NNRT_I32 : NNRT_F32, v->shape.rank, shape, outs[o], &e)) {
                fprintf(stderr, "nnc run: error: %s\n", e.msg);
                status = 1;
            }
        } else {
            print_array(f->outs[o].name, v->dtype, &v->shape, n, outs[o], outs[o]);
        }
    }
    for (int o = 0; o < 64; o++) free(outs[o]);
    for (size_t i = 0; i < sizeof in / sizeof in[0]; i++) nnrt_array_free(&in[i]);
    session_close(&s);
    free_named(&ra);
    return status;
}

/* ---------------------------------------------------------------- nnc grad */

static const char grad_help[] =
    "usage: nnc grad FILE.nn --weights W --input x=X.npy --input y=Y.npy --out G.safetensors\n"
    "\n"
    "Computes, in training mode, the loss of one batch and the gradient of every parameter.\n"
    "Prints loss=<float>; writes each gradient under its parameter's name, plus 'loss'.\n"
    "\n"
    "  --weights W          parameters and states (safetensors)\n"
    "  --input NAME=F.npy   every input and label of the model\n"
    "  --out G              the gradients (safetensors)\n"
    "  --model M            the model when the file defines several\n"
    "  --interp             use the reference interpreter instead of compiled code\n";

int cmd_grad(int argc, char **argv) {
    RunArgs ra = {.seed = -1};
    bool bad = false;
    static const char *const known[] = {"--weights", "--input", "--out", "--model", "--interp", "--seed", "--help"};
    for (int i = 0; i < argc; i++) {
        const char *v;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(grad_help, stdout);
            free_named(&ra);
            return 0;
        }
        if (common_option(argc, argv, &i, &ra, &bad)) continue;
        if (opt_value(argc, argv, &i, "--out", &v)) bad |= !(ra.out = v);
        else if (argv[i][0] == '-' && argv[i][1]) {
            free_named(&ra);
            return unknown_option("grad", argv[i], known, 7);
        } else bad |= !take_file(&ra, argv[i], "grad");
    }
    if (!bad && (!ra.file || !ra.weights || !ra.out)) {
        fprintf(stderr, "nnc grad: error: %s\n%s",
                !ra.file ? "no input file" : !ra.weights ? "--weights is required" : "--out is required", grad_help);
        bad = true;
    }
    if (bad) {
        free_named(&ra);
        return 2;
    }
    Session s;
    int status = session_open_args(&s, &ra, "grad");
    Func *f = status ? NULL : module_find_func(s.m, "grad");
    nnrt_array in[IR_MAX_INPUTS * 4] = {{0}};
    int64_t n = 0;
    if (f && f->nargs > (int)(sizeof in / sizeof in[0])) status = 1;
    if (!status && !load_inputs(f, &ra, in, &n)) status = 1;
    if (!status && n > s.m->max_batch && !s.exec.use_interp) {
        fprintf(stderr, "nnc grad: error: %" PRId64 " samples exceed the model's batch of %" PRId64
                        " (set batch in the train block)\n", n, s.m->max_batch);
        status = 1;
    }
    void **bufs = calloc((size_t)(f ? f->nargs + f->nouts : 0) + 1, sizeof *bufs);
    nnrt_st_tensor *ts = calloc((size_t)(f ? f->nouts : 0) + 1, sizeof *ts);
    if (!status) {
        for (int i = 0; i < f->nargs; i++) bufs[i] = in[i].data;
        for (int o = 0; o < f->nouts; o++) {
            const Node *v = &f->nodes[f->outs[o].value];
            bufs[f->nargs + o] = calloc((size_t)shape_numel(&v->shape, n) + 1, 4);
        }
        char err[512];
        if (exec_call(&s.exec, "grad", (int)n, bufs, err, sizeof err)) {
            fprintf(stderr, "nnc grad: error: %s\n", err);
            status = 1;
        }
    }
    if (!status) {
        int nt = 0;
        for (int o = 0; o < f->nouts; o++) {
            const FuncOut *out = &f->outs[o];
            const Node *v = &f->nodes[out->value];
            if (out->role == OUT_LOSS) printf("loss=%.9g\n", *(float *)bufs[f->nargs + o]);
            if (out->role != OUT_GRAD && out->role != OUT_LOSS) continue;
            nnrt_st_tensor *t = &ts[nt++];
            t->name = (char *)out->name;
            t->dtype = v->dtype == DT_I32 ? NNRT_I32 : NNRT_F32;
            t->rank = v->shape.rank;
            for (int d = 0; d < v->shape.rank; d++) t->shape[d] = v->shape.dim[d];
            t->data = bufs[f->nargs + o];
            t->bytes = (uint64_t)shape_numel(&v->shape, n) * 4;
        }
        nnrt_error e = {{0}};
        if (nnrt_st_write(ra.out, nt, ts, 0, NULL, NULL, &e)) {
            fprintf(stderr, "nnc grad: error: %s\n", e.msg);
            status = 1;
        }
    }
    if (f && bufs)
        for (int o = 0; o < f->nouts; o++) free(bufs[f->nargs + o]);
    free(bufs);
    free(ts);
    for (size_t i = 0; i < sizeof in / sizeof in[0]; i++) nnrt_array_free(&in[i]);
    session_close(&s);
    free_named(&ra);
    return status;
}

/* ---------------------------------------------------------------- nnc train (array mode) */

/* Fisher-Yates over order[0..n) with the counter RNG: the permutation applied in epoch e is a
 * function of (seed, e) only, so runs and resumed runs shuffle alike. */
void shuffle_order(int64_t *order, int64_t n, uint64_t seed, int64_t epoch) {
    for (int64_t i = n - 1; i > 0; i--) {
        float u = nnrt_rng_uniform(seed, 0x5348554646ull /* "SHUFF" */, (uint64_t)(epoch * n + i));
        int64_t j = (int64_t)(u * (float)(i + 1));
        if (j > i) j = i;
        int64_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
}

/* Sets a TK_HYPER scalar by name in the state, if the module has it. */
void set_hyper(Exec *e, const char *name, double value) {
    int t = module_find_tensor(e->m, name);
    if (t < 0 || e->m->tensors[t].kind != TK_HYPER) return;
    float v = (float)value;
    memcpy((uint8_t *)exec_state(e) + e->m->tensors[t].offset, &v, sizeof v);
    exec_state_changed(e);
}

/* Saves params, states, slots, step and hypers, with the model name, step and epoch as
 * metadata (atomically: libnnrt writes a temporary file, fsyncs and renames). */
int save_checkpoint(Session *s, const char *path, int64_t step, int64_t epoch) {
    char step_s[32], epoch_s[32], seed_s[32];
    snprintf(step_s, sizeof step_s, "%" PRId64, step);
    snprintf(epoch_s, sizeof epoch_s, "%" PRId64, epoch);
    snprintf(seed_s, sizeof seed_s, "%" PRIu64, s->exec.seed);
    const char *keys[] = {"model", "step", "epoch", "seed", "format"};
    const char *vals[] = {s->m->name, step_s, epoch_s, seed_s, "nnc"};
    nnrt_error e = {{0}};
    int rc = nnrt_save(s->info, exec_state(&s->exec), path, NNRT_KINDS_ALL, 5, keys, vals, &e);
    if (rc) fprintf(stderr, "nnc: error: %s\n", e.msg[0] ? e.msg : nnrt_strerror(rc));
    return rc;
}

static const char train_arrays_help[] =
    "usage: nnc train FILE.nn --input x=X.npy --input y=Y.npy --steps K [options]\n"
    "       nnc train FILE.nn [options]        (data from the train block; see docs/training.md)\n"
    "\n"
    "Array mode: exactly K train steps on consecutive minibatches of the given arrays, with the\n"
    "train block's optimizer and schedule; then saves params, states, optimizer slots and step.\n"
    "\n"
    "  --input NAME=F.npy   every input and label of the model\n"
    "  --steps K            number of train steps (required in array mode)\n"
    "  --batch N            minibatch size (default: the train block's batch)\n"
    "  --init W             start from these weights (default: initializers, with --seed)\n"
    "  --seed N             initialization and shuffling seed (default: train block, else 0)\n"
    "  --no-shuffle         take minibatches in order (default: reshuffle every epoch)\n"
    "  --save OUT           write the final checkpoint (safetensors)\n"
    "  --model M            the model when the file defines several\n"
    "  --interp             use the reference interpreter instead of compiled code\n";

static int train_arrays(RunArgs *ra) {
    Session s;
    int status = session_open_args(&s, ra, "train_step");
    Func *f = status ? NULL : module_find_func(s.m, "train_step");
    nnrt_array in[IR_MAX_INPUTS * 4] = {{0}};
    int64_t n = 0;
    if (f && f->nargs > (int)(sizeof in / sizeof in[0])) status = 1;
    if (!status && !load_inputs(f, ra, in, &n)) status = 1;
    int64_t batch = ra->batch ? ra->batch : s.m->max_batch;
    if (!status && batch > s.m->max_batch && !s.exec.use_interp) {
        fprintf(stderr, "nnc train: error: --batch %" PRId64 " exceeds the compiled batch %" PRId64 "\n", batch, s.m->max_batch);
        status = 1;
    }
    int64_t steps_per_epoch = status ? 1 : (n + batch - 1) / batch;
    if (!status) {
        set_hyper(&s.exec, "steps_per_epoch", (double)steps_per_epoch);
        int64_t epochs = s.m->train.epochs > 0 ? s.m->train.epochs : 1;
        set_hyper(&s.exec, "total_steps", (double)(epochs * steps_per_epoch));
    }
    void *bufs[IR_MAX_INPUTS * 4 + 64];
    void *batch_in[IR_MAX_INPUTS * 4] = {0};
    int64_t *order = calloc((size_t)n + 1, sizeof *order);
    for (int64_t i = 0; i < n; i++) order[i] = i;
    float loss = 0;
    for (int i = 0; !status && i < f->nargs; i++)
        batch_in[i] = calloc((size_t)(batch * sample_values(&f->args[i].shape)) + 1, 4);
    for (int64_t step = 0; !status && step < ra->steps; step++) {
        int64_t epoch = step / steps_per_epoch, first = (step % steps_per_epoch) * batch;
        if (first == 0 && !ra->no_shuffle) {
            shuffle_order(order, n, s.exec.seed, epoch);
        }
        int64_t bn = n - first < batch ? n - first : batch;
        for (int i = 0; i < f->nargs; i++) {
            int64_t per = sample_values(&f->args[i].shape) * 4;
            for (int64_t r = 0; r < bn; r++)
                memcpy((char *)batch_in[i] + r * per, (char *)in[i].data + order[first + r] * per, (size_t)per);
            bufs[i] = batch_in[i];
        }
        float scalars[64];
        for (int o = 0; o < f->nouts && o < 64; o++) bufs[f->nargs + o] = &scalars[o];
        for (int o = 0; o < f->nouts; o++)
            if (shape_has_batch(&f->nodes[f->outs[o].value].shape)) bufs[f->nargs + o] = NULL;
        char err[512];
        int rc = exec_call(&s.exec, "train_step", (int)bn, bufs, err, sizeof err);
        if (rc) {
            fprintf(stderr, "nnc train: error: step %" PRId64 ": %s%s\n", step + 1, err,
                    rc == NNRT_ENONFINITE ? "; the state before this step is kept" : "");
            status = 1;
            break;
        }
        for (int o = 0; o < f->nouts; o++)
            if (f->outs[o].role == OUT_LOSS) loss = scalars[o];
    }
    if (!status) printf("steps=%" PRId64 " loss=%.9g\n", ra->steps, loss);
    if (!status && ra->save && save_checkpoint(&s, ra->save, ra->steps, ra->steps / steps_per_epoch)) status = 1;
    for (int i = 0; i < IR_MAX_INPUTS * 4; i++) free(batch_in[i]);
    free(order);
    for (size_t i = 0; i < sizeof in / sizeof in[0]; i++) nnrt_array_free(&in[i]);
    session_close(&s);
    return status;
}

int cmd_train(int argc, char **argv) {
    RunArgs ra = {.seed = -1};
    bool bad = false, array_mode = false;
    for (int i = 0; i < argc; i++) {
        const char *v;
        if (!strncmp(argv[i], "--input", 7)) array_mode = true;
        if ((!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) && array_mode) {
            fputs(train_arrays_help, stdout);
            free_named(&ra);
            return 0;
        }
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) break; /* dataset mode's help */
        if (common_option(argc, argv, &i, &ra, &bad)) continue;
        if (opt_value(argc, argv, &i, "--steps", &v)) bad |= !parse_int_arg("--steps", v, 0, INT32_MAX, &ra.steps);
        else if (opt_value(argc, argv, &i, "--batch", &v)) bad |= !parse_int_arg("--batch", v, 1, 1 << 20, &ra.batch);
        else if (opt_value(argc, argv, &i, "--init", &v)) bad |= !(ra.init = v);
        else if (opt_value(argc, argv, &i, "--save", &v)) bad |= !(ra.save = v);
        else if (!strcmp(argv[i], "--no-shuffle")) ra.no_shuffle = true;
        else if (argv[i][0] == '-' && argv[i][1]) {
            if (!array_mode) break; /* dataset-mode options */
            static const char *const known[] = {"--input", "--steps", "--batch", "--init", "--seed", "--no-shuffle", "--save", "--model", "--interp", "--help"};
            free_named(&ra);
            return unknown_option("train", argv[i], known, 10);
        } else bad |= !take_file(&ra, argv[i], "train");
    }
    if (!array_mode) {
        free_named(&ra);
        return train_dataset(argc, argv);
    }
    if (!bad && (!ra.file || !ra.steps)) {
        fprintf(stderr, "nnc train: error: %s\n%s", !ra.file ? "no input file" : "--steps is required with --input", train_arrays_help);
        bad = true;
    }
    if (ra.weights) {
        fprintf(stderr, "nnc train: error: use --init W to start from weights\n");
        bad = true;
    }
    if (bad) {
        free_named(&ra);
        return 2;
    }
    int status = train_arrays(&ra);
    free_named(&ra);
    return status;
}
