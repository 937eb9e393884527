/* backend_aot.c — the harness backend for an object and header from `nnc compile`, used
 * through the generated C API only (DESIGN.md section 6, docs/c-api.md). Built once per
 * model by tests/bench/bench.py with
 *
 *   -DBENCH_MODEL=w1_mlp -DBENCH_MODEL_UPPER=W1_MLP -DBENCH_HEADER='"w1_mlp.h"'
 *   -DBENCH_X_TYPE=float (int32_t for token inputs)
 *
 * The caller owns the state and work memory: one aligned allocation each, sized by the
 * header's macros. */
#include "harness.h"

#include BENCH_HEADER

#include <stdio.h>
#include <stdlib.h>

#define CAT_(a, b)    a##b
#define CAT(a, b)     CAT_(a, b)
#define FN(suffix)    CAT(BENCH_MODEL, suffix)
#define MACRO(suffix) CAT(BENCH_MODEL_UPPER, suffix)

typedef BENCH_MODEL Model;

static int aot_init(BenchModel *m, uint64_t seed) {
    return FN(_init)((Model *)m->ctx, seed);
}

static int aot_train_step(BenchModel *m, int n, const void *x, const int32_t *y, float *loss) {
    return FN(_train_step)((Model *)m->ctx, n, (const BENCH_X_TYPE *)x, y, loss);
}

static int aot_infer(BenchModel *m, int n, const void *x, float *out) {
    return FN(_infer)((Model *)m->ctx, n, (const BENCH_X_TYPE *)x, out);
}

static size_t round_up(size_t bytes) {
    return (bytes + 63) / 64 * 64 + 64;
}

int bench_model_open(BenchModel *m, const char *arg) {
    (void)arg;
    Model *ctx = calloc(1, sizeof *ctx);
    ctx->state = aligned_alloc(64, round_up(MACRO(_STATE_BYTES)));
    ctx->work = aligned_alloc(64, round_up(MACRO(_WORK_BYTES)));
    if (!ctx->state || !ctx->work) {
        fprintf(stderr, "harness: out of memory\n");
        return 1;
    }
    const nnrt_model_info *info = FN(_info)();
    m->name = info->name;
    m->backend = "aot";
    m->info = info;
    m->max_batch = MACRO(_MAX_BATCH);
    m->x_size = info->n_inputs > 0 ? info->inputs[0].size : 0;
    m->x_is_i32 = info->n_inputs > 0 && info->inputs[0].dtype == NNRT_I32;
    m->y_size = info->n_labels > 0 ? info->labels[0].size : 0;
    m->out_size = info->n_outputs > 0 ? info->outputs[0].size : 0;
    m->init = aot_init;
    m->train_step = aot_train_step;
    m->infer = aot_infer;
    m->ctx = ctx;
    return 0;
}
