/* backend_jit.c — the harness backend for builds whose `nnc compile` is not available: the
 * model is compiled in-process by the same pipeline and JIT as `nnc train` (driver_load,
 * then exec_open, which runs jit_compile at -O2), and its packed entries
 *   int fn(void *state, void *work, int n, void **args)    args = inputs, then outputs
 * are called directly, without exec_call's per-call name lookups. Links every compiler
 * object but main.o, as the compiler's unit tests do. The generated machine code is the
 * same as an object from `nnc compile` would hold, so the timings stand for both; bench.py
 * labels them "jit". Also measures the compile itself (a proxy for W7): parse, checks,
 * autodiff, the LLVM pipeline at -O2 and machine code for every function of the module. */
#include "harness.h"
#include "nnc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct JitModel {
    DriverResult dr;
    Module *m;
    Exec exec;
    Func *train_step, *infer;
    JitFn train_entry, infer_entry;
    void **train_args, **infer_args; /* packed argument arrays, outputs pre-allocated */
    int train_loss_slot;             /* index of the loss output in train_args */
    int infer_out_slot;              /* index of the first output in infer_args */
} JitModel;

static double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The packed argument array of f with every output allocated for max_batch samples; input
 * slots are filled per call. */
static void **packed_args(Func *f, int64_t max_batch) {
    void **args = calloc((size_t)(f->nargs + f->nouts + 1), sizeof *args);
    for (int i = 0; i < f->nouts; i++) {
        const Node *v = &f->nodes[f->outs[i].value];
        args[f->nargs + i] = calloc((size_t)shape_numel(&v->shape, max_batch) + 1, 8);
    }
    return args;
}

static void fill_inputs(Func *f, void **args, const void *x, const int32_t *y) {
    for (int i = 0; i < f->nargs; i++)
        args[i] = f->args[i].role == ARG_LABEL ? (void *)y : (void *)x;
}

static int jit_init(BenchModel *bm, uint64_t seed) {
    JitModel *j = bm->ctx;
    char err[512];
    j->exec.seed = seed;
    int rc = exec_init(&j->exec, err, sizeof err);
    if (rc) fprintf(stderr, "harness: init: %s\n", err);
    return rc;
}

static int jit_train_step(BenchModel *bm, int n, const void *x, const int32_t *y, float *loss) {
    JitModel *j = bm->ctx;
    fill_inputs(j->train_step, j->train_args, x, y);
    int rc = j->train_entry(j->exec.state, j->exec.work, n, j->train_args);
    if (loss && j->train_loss_slot >= 0) *loss = *(float *)j->train_args[j->train_loss_slot];
    return rc;
}

static int jit_infer(BenchModel *bm, int n, const void *x, float *out) {
    JitModel *j = bm->ctx;
    fill_inputs(j->infer, j->infer_args, x, NULL);
    j->infer_args[j->infer_out_slot] = out;
    return j->infer_entry(j->exec.state, j->exec.work, n, j->infer_args);
}

int bench_model_open(BenchModel *bm, const char *path) {
    if (!path) {
        fprintf(stderr, "harness: the jit backend needs a .nn file\n");
        return 1;
    }
    JitModel *j = calloc(1, sizeof *j);
    double wall0 = nnrt_now(), cpu0 = cpu_seconds();
    DriverOptions opts = {.train_functions = true};
    if (driver_load(path, &opts, &j->dr)) return 1;
    j->m = driver_pick_model(&j->dr, NULL);
    if (!j->m) return 1;
    if (exec_open(&j->exec, j->m, false, 0, NULL)) { /* every function, as nnc compile */
        fprintf(stderr, "harness: %s: JIT compilation failed\n", path);
        return 1;
    }
    /* ORC compiles a function to machine code when it is first looked up: look up every
     * function, as `nnc compile` would emit every one, before the clock stops */
    for (int i = 0; i < j->m->nfuncs; i++)
        jit_lookup(j->exec.jit, j->m->funcs[i]->name);
    bm->compile_seconds = nnrt_now() - wall0;
    bm->compile_cpu_seconds = cpu_seconds() - cpu0;
    j->train_step = module_find_func(j->m, "train_step");
    j->infer = module_find_func(j->m, "infer");
    if (!j->train_step || !j->infer) {
        fprintf(stderr, "harness: %s: no train_step or infer\n", path);
        return 1;
    }
    j->train_entry = jit_lookup(j->exec.jit, "train_step");
    j->infer_entry = jit_lookup(j->exec.jit, "infer");
    if (!j->train_entry || !j->infer_entry) {
        fprintf(stderr, "harness: %s: compiled code lacks train_step or infer\n", path);
        return 1;
    }
    int64_t max_batch = j->m->max_batch;
    j->train_args = packed_args(j->train_step, max_batch);
    j->infer_args = packed_args(j->infer, max_batch);
    j->train_loss_slot = -1;
    for (int i = 0; i < j->train_step->nouts; i++)
        if (j->train_step->outs[i].role == OUT_LOSS) j->train_loss_slot = j->train_step->nargs + i;
    j->infer_out_slot = j->infer->nargs;

    const nnrt_model_info *info = module_info(j->m);
    bm->name = j->m->name;
    bm->backend = "jit";
    bm->info = info;
    bm->max_batch = (int)max_batch;
    bm->x_size = info->n_inputs > 0 ? info->inputs[0].size : 0;
    bm->x_is_i32 = info->n_inputs > 0 && info->inputs[0].dtype == NNRT_I32;
    bm->y_size = info->n_labels > 0 ? info->labels[0].size : 0;
    bm->out_size = info->n_outputs > 0 ? info->outputs[0].size : 0;
    bm->init = jit_init;
    bm->train_step = jit_train_step;
    bm->infer = jit_infer;
    bm->ctx = j;
    return 0;
}
