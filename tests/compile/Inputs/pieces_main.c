/* Runs the attention classifier's init, three train steps, evaluate and infer on fixed data
 * and prints every number with all its bits, so that two objects of the same model can be
 * compared byte for byte (tests/compile/pieces.test). */
#include HDR

#include <stdio.h>
#include <stdlib.h>

#define M(x) ATTENTION_CLASSIFIER_##x

int main(void) {
    enum { N = 8 };
    enum { GUARD = 64 }; /* evaluate writes M(N_METRICS) values, not one more */
    static float x[N * M(X_SIZE)], probs[N * M(PROBS_SIZE)], metrics[M(N_METRICS) + GUARD];
    for (int i = 0; i < M(N_METRICS) + GUARD; i++) metrics[i] = -1;
    static int32_t y[N];
    for (int i = 0; i < N * M(X_SIZE); i++) x[i] = (float)((i * 37) % 101) / 101.0f;
    for (int i = 0; i < N; i++) y[i] = (i * 7) % 10;
    attention_classifier m = {malloc(M(STATE_BYTES)), malloc(M(WORK_BYTES))};
    if (!m.state || !m.work) return 1;
    printf("init %d\n", attention_classifier_init(&m, 42));
    float loss = 0;
    for (int step = 0; step < 3; step++) {
        int rc = attention_classifier_train_step(&m, N, x, y, &loss);
        printf("train_step %d loss %.9g (%a)\n", rc, loss, loss);
    }
    int rc = attention_classifier_evaluate(&m, N, x, y, &loss, metrics);
    printf("evaluate %d loss %a accuracy %a\n", rc, loss, metrics[0]);
    int overrun = 0;
    for (int i = M(N_METRICS); i < M(N_METRICS) + GUARD; i++) overrun += metrics[i] != -1;
    printf("values written after metrics: %d\n", overrun);
    rc = attention_classifier_infer(&m, N, x, probs);
    printf("infer %d probs %.9g\n", rc, probs[0]);
    for (int i = 0; i < N * M(PROBS_SIZE); i++) printf("%a\n", probs[i]);
    free(m.state);
    free(m.work);
    return 0;
}
