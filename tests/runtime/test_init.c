/* test_init.c — initializers: constants, fans, bounds and spreads of the random ones,
 * orthogonality, argument errors. */
#include "check.h"

static float *init(int rank, const int64_t *shape, int kind, double a, double b, int64_t fan,
                   uint64_t stream, int *rc) {
    int64_t n = 1;
    for (int i = 0; i < rank; i++) n *= shape[i];
    float *out = malloc((size_t)(n ? n : 1) * sizeof *out);
    *rc = nnrt_init_tensor(out, rank, shape, kind, a, b, fan, 42, stream);
    return out;
}

/* max |v| and the standard deviation around 0 */
static void spread(const float *v, int64_t n, double *max_abs, double *rms) {
    double m = 0, s = 0;
    for (int64_t i = 0; i < n; i++) {
        if (fabs(v[i]) > m) m = fabs(v[i]);
        s += (double)v[i] * v[i];
    }
    *max_abs = m;
    *rms = sqrt(s / (double)n);
}

/* A uniform initializer: every value in [-bound, bound), the extremes nearly reached,
 * and the spread of U(-bound, bound) (std = bound / sqrt(3)). */
static void check_uniform(int rank, const int64_t *shape, int kind, double a, int64_t fan,
                          double bound) {
    int rc;
    int64_t n = 1;
    for (int i = 0; i < rank; i++) n *= shape[i];
    float *v = init(rank, shape, kind, a, 0, fan, 1, &rc);
    CHECK_EQ(rc, NNRT_OK);
    double m, rms;
    spread(v, n, &m, &rms);
    CHECK(m <= (float)bound);
    CHECK(m > 0.99 * bound);
    CHECK_NEAR(rms, bound / sqrt(3.0), 0.01 * bound);
    free(v);
}

static void check_normal(int rank, const int64_t *shape, int kind, double a, double std) {
    int rc;
    int64_t n = 1;
    for (int i = 0; i < rank; i++) n *= shape[i];
    float *v = init(rank, shape, kind, a, 0, 0, 2, &rc);
    CHECK_EQ(rc, NNRT_OK);
    double m, rms;
    spread(v, n, &m, &rms);
    CHECK_NEAR(rms, std, 0.01 * std);
    free(v);
}

static void test_constants(void) {
    const int64_t shape[2] = {3, 5};
    int rc;
    float *v = init(2, shape, NNRT_INIT_ZEROS, 0, 0, 0, 0, &rc);
    CHECK_EQ(rc, NNRT_OK);
    for (int i = 0; i < 15; i++) CHECK(v[i] == 0.0f);
    free(v);
    v = init(2, shape, NNRT_INIT_ONES, 0, 0, 0, 0, &rc);
    for (int i = 0; i < 15; i++) CHECK(v[i] == 1.0f);
    free(v);
    v = init(2, shape, NNRT_INIT_CONSTANT, -0.25, 0, 0, 0, &rc);
    for (int i = 0; i < 15; i++) CHECK(v[i] == -0.25f);
    free(v);
    float scalar = 0;
    CHECK_EQ(nnrt_init_tensor(&scalar, 0, NULL, NNRT_INIT_CONSTANT, 7, 0, 0, 1, 1), NNRT_OK);
    CHECK(scalar == 7.0f);
}

static void test_random(void) {
    const int64_t dense[2] = {256, 512}; /* fan_in 512, fan_out 256 */
    const int64_t conv[4] = {64, 32, 3, 3}; /* fan_in 32*9 = 288, fan_out 64*9 = 576 */
    const int64_t vec[1] = {20000}; /* rank 1: fan_in = fan_out = 20000 */

    int rc;
    float *v = init(2, dense, NNRT_INIT_UNIFORM, 2, 3, 0, 1, &rc);
    double lo = 10, hi = -10;
    for (int i = 0; i < 256 * 512; i++) {
        if (v[i] < lo) lo = v[i];
        if (v[i] > hi) hi = v[i];
    }
    CHECK(lo >= 2 && lo < 2.001 && hi < 3 && hi > 2.999);
    free(v);
    v = init(2, dense, NNRT_INIT_NORMAL, 5, 0.5, 0, 1, &rc);
    double mean = 0;
    for (int i = 0; i < 256 * 512; i++) mean += v[i];
    CHECK_NEAR(mean / (256 * 512), 5, 0.01);
    free(v);

    /* xavier: gain * sqrt(6 / (fan_in + fan_out)), gain 0 means 1 */
    check_uniform(2, dense, NNRT_INIT_XAVIER_UNIFORM, 0, 0, sqrt(6.0 / 768));
    check_uniform(2, dense, NNRT_INIT_XAVIER_UNIFORM, 2, 0, 2 * sqrt(6.0 / 768));
    check_uniform(4, conv, NNRT_INIT_XAVIER_UNIFORM, 0, 0, sqrt(6.0 / (288 + 576)));
    check_uniform(1, vec, NNRT_INIT_XAVIER_UNIFORM, 0, 0, sqrt(6.0 / 40000));
    check_normal(2, dense, NNRT_INIT_XAVIER_NORMAL, 0, sqrt(2.0 / 768));
    check_normal(4, conv, NNRT_INIT_XAVIER_NORMAL, 3, 3 * sqrt(2.0 / 864));
    /* he (kaiming, fan_in): gain sqrt(2 / (1 + a^2)); bound gain * sqrt(3 / fan_in) */
    check_uniform(2, dense, NNRT_INIT_HE_UNIFORM, 0, 0, sqrt(6.0 / 512));
    check_uniform(4, conv, NNRT_INIT_HE_UNIFORM, 0, 0, sqrt(6.0 / 288));
    check_uniform(2, dense, NNRT_INIT_HE_UNIFORM, sqrt(5.0), 0, 1 / sqrt(512.0));
    check_normal(2, dense, NNRT_INIT_HE_NORMAL, 0, sqrt(2.0 / 512));
    check_normal(4, conv, NNRT_INIT_HE_NORMAL, 0, sqrt(2.0 / 288));
    /* torch default: U(-1/sqrt(fan_in), ...); a bias takes its weight's fan_in */
    check_uniform(2, dense, NNRT_INIT_TORCH_DEFAULT, 0, 0, 1 / sqrt(512.0));
    check_uniform(4, conv, NNRT_INIT_TORCH_DEFAULT, 0, 0, 1 / sqrt(288.0));
    check_uniform(1, vec, NNRT_INIT_TORCH_DEFAULT, 0, 0, 1 / sqrt(20000.0));
    int64_t big_bias[1] = {100000};
    check_uniform(1, big_bias, NNRT_INIT_TORCH_DEFAULT, 0, 784, 1 / sqrt(784.0));
    check_uniform(2, dense, NNRT_INIT_HE_UNIFORM, 0, 2048, sqrt(6.0 / 2048));

    /* Same seed and stream: the same bits; another stream: other values. */
    float *x = init(2, dense, NNRT_INIT_XAVIER_NORMAL, 0, 0, 0, 9, &rc);
    float *y = init(2, dense, NNRT_INIT_XAVIER_NORMAL, 0, 0, 0, 9, &rc);
    float *z = init(2, dense, NNRT_INIT_XAVIER_NORMAL, 0, 0, 0, 10, &rc);
    CHECK(!memcmp(x, y, 256 * 512 * sizeof(float)));
    CHECK(memcmp(x, z, 256 * 512 * sizeof(float)) != 0);
    free(x);
    free(y);
    free(z);
}

/* Rows (rows <= cols) or columns (rows >= cols) of the flattened [rows, cols] result are
 * orthonormal up to the gain: max |W W^T - gain^2 I| or |W^T W - gain^2 I| <= 1e-5. */
static void check_orthogonal(int rank, const int64_t *shape, double gain) {
    int rc;
    int64_t rows = shape[0], cols = 1;
    for (int i = 1; i < rank; i++) cols *= shape[i];
    float *w = init(rank, shape, NNRT_INIT_ORTHOGONAL, gain, 0, 0, 3, &rc);
    CHECK_EQ(rc, NNRT_OK);
    double g2 = (gain != 0 ? gain * gain : 1), worst = 0;
    int64_t k = rows <= cols ? rows : cols;
    for (int64_t i = 0; i < k; i++)
        for (int64_t j = 0; j < k; j++) {
            double s = 0;
            if (rows <= cols)
                for (int64_t c = 0; c < cols; c++) s += (double)w[i * cols + c] * w[j * cols + c];
            else
                for (int64_t r = 0; r < rows; r++) s += (double)w[r * cols + i] * w[r * cols + j];
            double e = fabs(s - (i == j ? g2 : 0)) / g2;
            if (e > worst) worst = e;
        }
    CHECK(worst <= 1e-5);
    if (worst > 1e-5) fprintf(stderr, "    orthogonality error %g\n", worst);
    free(w);
}

static void test_orthogonal(void) {
    const int64_t wide[2] = {64, 128}, tall[2] = {128, 64}, square[2] = {100, 100};
    const int64_t conv[4] = {16, 4, 3, 3}, lstm[2] = {512, 128}, one[2] = {1, 10};
    check_orthogonal(2, wide, 0);
    check_orthogonal(2, tall, 0);
    check_orthogonal(2, square, 0);
    check_orthogonal(4, conv, 0);
    check_orthogonal(2, lstm, 0);
    check_orthogonal(2, one, 0);
    check_orthogonal(2, tall, 2.0);
    check_orthogonal(2, wide, 0.5);
}

static void test_errors(void) {
    float v[8];
    const int64_t shape[2] = {2, 4}, neg[2] = {2, -4}, vec[1] = {8};
    const int64_t seven[7] = {1, 1, 1, 1, 1, 1, 8};
    CHECK_EQ(nnrt_init_tensor(v, 2, shape, 11, 0, 0, 0, 1, 1), NNRT_EARG);
    CHECK_EQ(nnrt_init_tensor(v, 2, shape, -1, 0, 0, 0, 1, 1), NNRT_EARG);
    CHECK_EQ(nnrt_init_tensor(v, 7, seven, NNRT_INIT_ZEROS, 0, 0, 0, 1, 1), NNRT_EARG);
    CHECK_EQ(nnrt_init_tensor(v, 2, neg, NNRT_INIT_ZEROS, 0, 0, 0, 1, 1), NNRT_EARG);
    CHECK_EQ(nnrt_init_tensor(v, 1, vec, NNRT_INIT_ORTHOGONAL, 0, 0, 0, 1, 1), NNRT_EARG);
    CHECK_EQ(nnrt_init_tensor(v, 2, shape, NNRT_INIT_UNIFORM, 1, 0, 0, 1, 1), NNRT_EARG);
    CHECK_EQ(nnrt_init_tensor(v, 2, shape, NNRT_INIT_NORMAL, 0, -1, 0, 1, 1), NNRT_EARG);
    CHECK_EQ(nnrt_init_tensor(NULL, 2, shape, NNRT_INIT_ZEROS, 0, 0, 0, 1, 1), NNRT_ENULL);
    CHECK_EQ(nnrt_init_tensor(v, 2, NULL, NNRT_INIT_ZEROS, 0, 0, 0, 1, 1), NNRT_EARG);
    const int64_t empty[2] = {0, 4};
    CHECK_EQ(nnrt_init_tensor(NULL, 2, empty, NNRT_INIT_ORTHOGONAL, 0, 0, 0, 1, 1), NNRT_OK);
}

int main(void) {
    test_constants();
    test_random();
    test_orthogonal();
    test_errors();
    return check_summary("test_init");
}
