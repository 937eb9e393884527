/* bn_dense compiled with --embed-weights: the derived tensors (batchnorm folded into the
 * dense layer) were computed at compile time. infer runs with no state at all and must
 * match the model computed from the checkpoint's parameters and statistics
 * (bn_reference.h). */
#include "bn_dense.h"
#include "bn_reference.h"

#include <stdio.h>
#include <stdlib.h>

enum { N = 8, IN = BN_DENSE_X_SIZE, OUT = BN_DENSE_Z_SIZE };

static const float *tensor(const nnrt_st_file *f, const char *name) {
    const nnrt_st_tensor *t = nnrt_st_find(f, name);
    if (!t) {
        fprintf(stderr, "no tensor %s\n", name);
        exit(1);
    }
    return t->data;
}

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    nnrt_st_file f;
    nnrt_error err;
    if (nnrt_st_read(argv[1], &f, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    float x[N * IN], z[N * OUT];
    for (int i = 0; i < N * IN; i++) x[i] = (float)((i * 37) % 23) / 11.0f - 1.0f;
    bn_dense m = {NULL, malloc(BN_DENSE_WORK_BYTES)};
    int rc = bn_dense_infer(&m, N, x, z);
    double worst = bn_dense_error(N, IN, OUT, x, z, tensor(&f, "fc.weight"), tensor(&f, "fc.bias"),
                                  tensor(&f, "bn.weight"), tensor(&f, "bn.bias"), tensor(&f, "bn.running_mean"),
                                  tensor(&f, "bn.running_var"));
    printf("embedded infer: %d, %s\n", rc, worst < 1e-5 ? "ok" : "WRONG");
    nnrt_st_free(&f);
    free(m.work);
    return 0;
}
