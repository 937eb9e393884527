/* bn_reference.h — the bn_dense model (bn_dense.nn) computed directly, for the programs of
 * tests/embed/prepare.test:
 *   z = (x W^T + b - running_mean) / sqrt(running_var + 1e-5) * gamma + beta
 * Returns the largest relative difference between that and z over n samples. */
#include <math.h>

static double bn_dense_error(int n, int in, int out, const float *x, const float *z, const float *w,
                             const float *b, const float *gamma, const float *beta, const float *mean,
                             const float *var) {
    double worst = 0;
    for (int i = 0; i < n; i++)
        for (int o = 0; o < out; o++) {
            double v = b[o];
            for (int k = 0; k < in; k++) v += (double)x[i * in + k] * w[o * in + k];
            double want = (v - mean[o]) / sqrt((double)var[o] + 1e-5) * gamma[o] + beta[o];
            worst = fmax(worst, fabs(want - z[i * out + o]) / fmax(1, fabs(want)));
        }
    return worst;
}
