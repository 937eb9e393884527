/* Runs logreg_infer of an object compiled with --embed-weights, with no state at all, and
 * compares with softmax(x @ W + b) computed here from the checkpoint. */
#include "logreg.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    nnrt_st_file file;
    nnrt_error err;
    if (nnrt_st_read(argv[1], &file, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    const float *W = nnrt_st_find(&file, "W")->data, *b = nnrt_st_find(&file, "b")->data;
    enum { N = 3 };
    static float x[N * LOGREG_X_SIZE], p[N * LOGREG_P_SIZE];
    for (int i = 0; i < N * LOGREG_X_SIZE; i++) x[i] = (float)((i * 37) % 101) / 101.0f;
    void *work = malloc(LOGREG_WORK_BYTES);
    logreg m = {NULL, work};
    int rc = logreg_infer(&m, N, x, p);
    printf("infer: %d, state bytes %d\n", rc, LOGREG_STATE_BYTES);
    double worst = 0;
    for (int s = 0; s < N; s++) {
        double z[10], max = -INFINITY, sum = 0;
        for (int j = 0; j < 10; j++) {
            z[j] = b[j];
            for (int i = 0; i < LOGREG_X_SIZE; i++) z[j] += (double)x[s * LOGREG_X_SIZE + i] * W[i * 10 + j];
            if (z[j] > max) max = z[j];
        }
        for (int j = 0; j < 10; j++) sum += exp(z[j] - max);
        for (int j = 0; j < 10; j++) worst = fmax(worst, fabs(exp(z[j] - max) / sum - p[s * 10 + j]));
    }
    printf("max difference %s 1e-5\n", worst < 1e-5 ? "<" : ">=");
    printf("info: %s, %d tensors\n", logreg_info()->name, logreg_info()->n_tensors);
    nnrt_st_free(&file);
    free(work);
    return 0;
}
