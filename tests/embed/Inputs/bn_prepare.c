/* The derived tensors of a compiled model follow its weights (docs/c-api.md, "Derived
 * tensors"). bn_dense (dense 4 -> 3, then inference batchnorm) is compiled at -O2, where the
 * batchnorm folds into derived weights. Every infer is compared with the model computed
 * from the parameters and running statistics in the state (bn_reference.h): after init,
 * after each of three train steps (weights and statistics change), and after a checkpoint
 * is loaded into another context (nnrt_load prepares), and after weights are copied into a
 * state by hand and bn_dense_prepare runs. Stale derived tensors make infer follow the old
 * weights: shown by an infer between the copy and prepare. Writes the
 * trained checkpoint to argv[1] (for the embedded-weights object). */
#include "bn_dense.h"
#include "bn_reference.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { N = 8, IN = BN_DENSE_X_SIZE, OUT = BN_DENSE_Z_SIZE };

static const float *tensor(const void *state, const char *name) {
    const nnrt_model_info *info = bn_dense_info();
    for (int i = 0; i < info->n_tensors; i++)
        if (!strcmp(info->tensors[i].name, name)) return (const float *)((const char *)state + info->tensors[i].offset);
    fprintf(stderr, "no tensor %s\n", name);
    exit(1);
}

/* The largest difference between infer's z and the model computed from `state`. */
static double error(const void *state, const float *x, const float *z) {
    return bn_dense_error(N, IN, OUT, x, z, tensor(state, "fc.weight"), tensor(state, "fc.bias"),
                          tensor(state, "bn.weight"), tensor(state, "bn.bias"), tensor(state, "bn.running_mean"),
                          tensor(state, "bn.running_var"));
}

static const char *ok(double err) { return err < 1e-5 ? "ok" : "WRONG"; }

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    float x[N * IN], z[N * OUT], z2[N * OUT], loss;
    int32_t y[N];
    for (int i = 0; i < N * IN; i++) x[i] = (float)((i * 37) % 23) / 11.0f - 1.0f;
    for (int i = 0; i < N; i++) y[i] = i % OUT;

    bn_dense m = {calloc(1, BN_DENSE_STATE_BYTES), malloc(BN_DENSE_WORK_BYTES)};
    int rc = bn_dense_init(&m, 3);
    rc |= bn_dense_infer(&m, N, x, z);
    printf("init: %d, infer %s\n", rc, ok(error(m.state, x, z)));
    for (int step = 1; step <= 3; step++) {
        rc = bn_dense_train_step(&m, N, x, y, &loss);
        rc |= bn_dense_infer(&m, N, x, z);
        printf("train step %d: %d, infer %s\n", step, rc, ok(error(m.state, x, z)));
    }

    const nnrt_model_info *info = bn_dense_info();
    int derived = 0;
    for (int i = 0; i < info->n_tensors; i++) derived += info->tensors[i].kind == NNRT_DERIVED;
    nnrt_error err;
    rc = nnrt_save(info, m.state, argv[1], NNRT_KINDS_ALL, 0, NULL, NULL, &err);
    nnrt_st_file file;
    rc |= nnrt_st_read(argv[1], &file, &err);
    int saved_derived = 0;
    for (int i = 0; i < file.n; i++) saved_derived += !strncmp(file.tensors[i].name, "derived.", 8);
    printf("checkpoint: %d, %d derived tensors in the model, %d in the file, every other tensor: %s\n", rc,
           derived, saved_derived, file.n == info->n_tensors - derived ? "yes" : "no");
    nnrt_st_free(&file);

    /* another context with other weights loads the checkpoint: nnrt_load prepares */
    bn_dense other = {calloc(1, BN_DENSE_STATE_BYTES), malloc(BN_DENSE_WORK_BYTES)};
    rc = bn_dense_init(&other, 99);
    rc |= nnrt_load(info, other.state, argv[1], NNRT_KINDS_WEIGHTS, NNRT_KINDS_ALL & ~NNRT_KINDS_WEIGHTS, &err);
    rc |= bn_dense_infer(&other, N, x, z2);
    printf("loaded: %d, infer %s, same as the trained context: %s\n", rc, ok(error(other.state, x, z2)),
           memcmp(z, z2, sizeof z) ? "no" : "yes");

    /* weights copied into a state by hand are stale until bn_dense_prepare */
    bn_dense third = {calloc(1, BN_DENSE_STATE_BYTES), malloc(BN_DENSE_WORK_BYTES)};
    rc = bn_dense_init(&third, 7);
    for (int i = 0; i < info->n_tensors; i++) {
        const nnrt_tensor_info *t = &info->tensors[i];
        if (t->kind == NNRT_PARAM || t->kind == NNRT_STATE)
            memcpy((char *)third.state + t->offset, (const char *)m.state + t->offset, t->bytes);
    }
    rc |= bn_dense_infer(&third, N, x, z2);
    printf("copied, before prepare: %d, infer %s\n", rc, error(third.state, x, z2) < 1e-5 ? "current" : "stale");
    rc = bn_dense_prepare(&third);
    rc |= bn_dense_infer(&third, N, x, z2);
    printf("copied, after prepare: %d, infer %s, same as the trained context: %s\n", rc, ok(error(third.state, x, z2)),
           memcmp(z, z2, sizeof z) ? "no" : "yes");
    free(third.state);
    free(third.work);

    bn_dense no_state = {NULL, m.work};
    printf("prepare(NULL): %d, NULL state: %d\n", bn_dense_prepare(NULL), bn_dense_prepare(&no_state));
    free(m.state);
    free(m.work);
    free(other.state);
    free(other.work);
    return 0;
}
