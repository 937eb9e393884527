/* A C program embedding examples/fashion_mlp.nn the way a user would (docs/c-api.md):
 * trains on synthetic data in two threads with separate contexts, checks that the loss
 * decreases and that both threads compute the same bits, then the error codes, the state
 * left untouched by a failing call, and a checkpoint round trip through the model info. */
#include "fashion_mlp.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { SAMPLES = 256, BATCH = 64, STEPS = 60, IN = FASHION_MLP_X_SIZE, OUT = FASHION_MLP_PROBS_SIZE };

static float X[SAMPLES * IN];
static int32_t Y[SAMPLES];

/* ten noisy prototypes, one per class */
static void make_data(void) {
    uint32_t s = 12345;
    float proto[10][IN];
    for (int c = 0; c < 10; c++)
        for (int i = 0; i < IN; i++) {
            s = s * 1664525u + 1013904223u;
            proto[c][i] = (float)(s >> 8) / 16777216.0f;
        }
    for (int k = 0; k < SAMPLES; k++) {
        Y[k] = (k * 7) % 10;
        for (int i = 0; i < IN; i++) {
            s = s * 1664525u + 1013904223u;
            X[k * IN + i] = proto[Y[k]][i] + 0.5f * ((float)(s >> 8) / 16777216.0f - 0.5f);
        }
    }
}

typedef struct Run {
    fashion_mlp m;
    int rc;
    float first_loss, last_loss;
    float probs[BATCH * OUT];
} Run;

static void *train(void *arg) {
    Run *r = arg;
    r->rc = fashion_mlp_init(&r->m, 7);
    for (int step = 0; step < STEPS && !r->rc; step++) {
        int first = (step * BATCH) % SAMPLES;
        float loss;
        r->rc = fashion_mlp_train_step(&r->m, BATCH, X + first * IN, Y + first, &loss);
        if (step == 0) r->first_loss = loss;
        r->last_loss = loss;
    }
    if (!r->rc) r->rc = fashion_mlp_infer(&r->m, BATCH, X, r->probs);
    return NULL;
}

static fashion_mlp new_context(void) {
    fashion_mlp m = {malloc(FASHION_MLP_STATE_BYTES), malloc(FASHION_MLP_WORK_BYTES)};
    return m;
}

static const char *yes(int c) { return c ? "yes" : "no"; }

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    make_data();
    Run runs[2];
    pthread_t threads[2];
    for (int i = 0; i < 2; i++) {
        runs[i].m = new_context();
        pthread_create(&threads[i], NULL, train, &runs[i]);
    }
    for (int i = 0; i < 2; i++) pthread_join(threads[i], NULL);
    Run *r = &runs[0];
    printf("train: %d %d, loss decreased: %s\n", runs[0].rc, runs[1].rc, yes(r->last_loss < 0.5f * r->first_loss));
    printf("threads identical: %s\n", yes(!memcmp(runs[0].m.state, runs[1].m.state, FASHION_MLP_STATE_BYTES) &&
                                          !memcmp(runs[0].probs, runs[1].probs, sizeof r->probs)));
    int sums_ok = 1, correct = 0;
    for (int k = 0; k < BATCH; k++) {
        double sum = 0;
        int best = 0;
        for (int c = 0; c < OUT; c++) {
            sum += r->probs[k * OUT + c];
            if (r->probs[k * OUT + c] > r->probs[k * OUT + best]) best = c;
        }
        sums_ok &= fabs(sum - 1) < 1e-5;
        correct += best == Y[k];
    }
    printf("probabilities sum to 1: %s, train accuracy > 90%%: %s\n", yes(sums_ok), yes(correct > BATCH * 9 / 10));
    float loss, metrics[FASHION_MLP_N_METRICS];
    int rc = fashion_mlp_evaluate(&r->m, BATCH, X, Y, &loss, metrics);
    printf("evaluate: %d, accuracy %s\n", rc, yes(fabsf(metrics[0] - (float)correct / BATCH) < 1e-6f));

    /* argument errors and a NaN loss change nothing */
    fashion_mlp *m = &r->m;
    void *before = malloc(FASHION_MLP_STATE_BYTES);
    memcpy(before, m->state, FASHION_MLP_STATE_BYTES);
    float probs[OUT * (FASHION_MLP_MAX_BATCH + 1)];
    printf("n=0: %d\n", fashion_mlp_infer(m, 0, X, probs));
    printf("n=MAX+1: %d\n", fashion_mlp_train_step(m, FASHION_MLP_MAX_BATCH + 1, X, Y, &loss));
    printf("n=-1: %d\n", fashion_mlp_evaluate(m, -1, X, Y, &loss, metrics));
    printf("NULL context: %d\n", fashion_mlp_infer(NULL, 1, X, probs));
    printf("NULL input: %d\n", fashion_mlp_infer(m, 1, NULL, probs));
    printf("NULL output: %d\n", fashion_mlp_infer(m, 1, X, NULL));
    printf("NULL labels: %d\n", fashion_mlp_train_step(m, 1, X, NULL, &loss));
    printf("NULL loss: %d\n", fashion_mlp_train_step(m, 1, X, Y, NULL));
    printf("NULL metrics: %d\n", fashion_mlp_evaluate(m, 1, X, Y, &loss, NULL));
    fashion_mlp no_state = {NULL, m->work}, no_work = {m->state, NULL};
    printf("NULL state: %d %d\n", fashion_mlp_train_step(&no_state, 1, X, Y, &loss), fashion_mlp_init(&no_state, 1));
    printf("NULL work: %d\n", fashion_mlp_infer(&no_work, 1, X, probs));
    static float bad[BATCH * IN];
    memcpy(bad, X, sizeof bad);
    bad[5 * IN + 3] = NAN;
    loss = 0;
    rc = fashion_mlp_train_step(m, BATCH, bad, Y, &loss);
    printf("NaN input: %d, loss is NaN: %s\n", rc, yes(isnan(loss)));
    printf("state unchanged: %s\n", yes(!memcmp(before, m->state, FASHION_MLP_STATE_BYTES)));

    /* a checkpoint written through the info loads into another context: same predictions */
    nnrt_error err;
    rc = nnrt_save(fashion_mlp_info(), m->state, argv[1], NNRT_KINDS_ALL, 0, NULL, NULL, &err);
    fashion_mlp other = new_context();
    fashion_mlp_init(&other, 99);
    if (!rc) rc = nnrt_load(fashion_mlp_info(), other.state, argv[1], NNRT_KINDS_ALL, 0, &err);
    if (rc) fprintf(stderr, "%s\n", err.msg);
    float probs2[BATCH * OUT];
    fashion_mlp_infer(m, BATCH, X, probs);
    fashion_mlp_infer(&other, BATCH, X, probs2);
    printf("checkpoint: %d, same predictions: %s\n", rc, yes(!memcmp(probs, probs2, sizeof probs2)));
    const nnrt_model_info *info = fashion_mlp_info();
    printf("info: %s max_batch %d, %d tensors, input %s [%lld, %lld], output %s size %lld, state %s\n", info->name,
           info->max_batch, info->n_tensors, info->inputs[0].name, (long long)info->inputs[0].shape[0],
           (long long)info->inputs[0].shape[1], info->outputs[0].name, (long long)info->outputs[0].size,
           yes(info->state_bytes == FASHION_MLP_STATE_BYTES && info->work_bytes == FASHION_MLP_WORK_BYTES));
    for (int i = 0; i < 2; i++) free(runs[i].m.state), free(runs[i].m.work);
    free(other.state);
    free(other.work);
    free(before);
    return 0;
}
