/* harness.h — the interface between the benchmark harness (harness.c: data, workloads,
 * timing) and the code under test, which is one compiled model behind one of two backends:
 *
 *   backend_aot.c  an object and header from `nnc compile` (the C API of docs/c-api.md);
 *   backend_jit.c  the same model compiled in-process by the JIT that `nnc train` uses, for
 *                  builds whose `nnc compile` is not there yet (reported as "jit").
 *
 * Both run the same generated code; the harness only sees these function pointers. */
#ifndef BENCH_HARNESS_H
#define BENCH_HARNESS_H

#include "nnrt.h"

#include <stdint.h>

typedef struct BenchModel {
    const char *name;    /* the model's name */
    const char *backend; /* "aot" or "jit" */
    const nnrt_model_info *info;
    int max_batch;
    int64_t x_size;         /* values per sample of the input x */
    int x_is_i32;           /* token inputs (char_lstm) */
    int64_t y_size;         /* labels per sample */
    int64_t out_size;       /* values per sample of the first output */
    double compile_seconds; /* jit: wall time of parse + lower + grad + LLVM (W7 proxy) */
    double compile_cpu_seconds;
    int (*init)(struct BenchModel *m, uint64_t seed);
    int (*train_step)(struct BenchModel *m, int n, const void *x, const int32_t *y, float *loss);
    int (*infer)(struct BenchModel *m, int n, const void *x, float *out);
    void *ctx; /* backend data */
} BenchModel;

/* Opens the backend's model: `arg` is the .nn path for the jit backend, ignored by the aot
 * backend (its model is linked in). Returns 0, or prints why and returns nonzero. */
int bench_model_open(BenchModel *m, const char *arg);

#endif
