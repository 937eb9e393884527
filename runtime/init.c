/* init.c — parameter initializers with the semantics of torch.nn.init.
 *
 * Random initializers draw element i (row-major index) from Philox block (seed, stream, i),
 * so a tensor's values depend only on its seed, stream and shape.
 */
#include "nnrt_internal.h"

#include <math.h>
#include <stdlib.h>

/* torch.nn.init._calculate_fan_in_and_fan_out, extended to rank 0 and 1:
 *   rank >= 2: receptive = prod(shape[2:]), fan_in = shape[1] * receptive,
 *              fan_out = shape[0] * receptive
 *   rank 1: fan_in = fan_out = shape[0];  rank 0: fan_in = fan_out = 1 */
static void compute_fans(int rank, const int64_t *shape, double *fan_in, double *fan_out) {
    if (rank == 0) {
        *fan_in = *fan_out = 1;
        return;
    }
    if (rank == 1) {
        *fan_in = *fan_out = (double)shape[0];
        return;
    }
    double receptive = 1;
    for (int i = 2; i < rank; i++) receptive *= (double)shape[i];
    *fan_in = (double)shape[1] * receptive;
    *fan_out = (double)shape[0] * receptive;
}

/* Four partial sums in a fixed order: deterministic on every platform, and faster than
 * one serial chain (the compiler may not reassociate floating-point sums itself). */
static double dot(const double *x, const double *y, int64_t n) {
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += x[i] * y[i];
        s1 += x[i + 1] * y[i + 1];
        s2 += x[i + 2] * y[i + 2];
        s3 += x[i + 3] * y[i + 3];
    }
    for (; i < n; i++) s0 += x[i] * y[i];
    return (s0 + s1) + (s2 + s3);
}

/* torch.nn.init.orthogonal_: G = normal(rows, cols) with rows = shape[0],
 * cols = prod(shape[1:]); A = G (or G^T when rows < cols, so A is tall); A = QR with
 * diag(R) > 0; the result is gain * Q (or gain * Q^T). torch makes diag(R) positive by
 * multiplying Q's columns with sign(diag(R)); Gram-Schmidt yields that Q directly. We use
 * modified Gram-Schmidt run twice per column ("twice is enough": orthogonal to working
 * precision), in double, with the columns of A stored contiguously. */
static int init_orthogonal(float *out, int64_t rows, int64_t cols, double gain, uint64_t seed,
                           uint64_t stream) {
    bool transpose = rows < cols;
    int64_t p = transpose ? cols : rows; /* length of a column of A */
    int64_t q = transpose ? rows : cols; /* number of columns of A */
    double *col = malloc((size_t)p * (size_t)q * sizeof *col);
    if (!col) return NNRT_ENOMEM;
    /* Column j of A: G[:, j] (not transposed) or G[j, :] (transposed). */
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            double g = nnrti_normal(seed, stream, (uint64_t)(r * cols + c));
            if (transpose) col[r * p + c] = g;
            else col[c * p + r] = g;
        }
    for (int64_t j = 0; j < q; j++) {
        double *v = col + j * p;
        for (int pass = 0; pass < 2; pass++)
            for (int64_t i = 0; i < j; i++) {
                const double *qi = col + i * p;
                double r = dot(qi, v, p);
                for (int64_t k = 0; k < p; k++) v[k] -= r * qi[k];
            }
        double norm = sqrt(dot(v, v, p));
        if (!(norm > 1e-300)) { /* rank deficient: probability zero for a normal matrix */
            free(col);
            return NNRT_EARG;
        }
        for (int64_t k = 0; k < p; k++) v[k] /= norm;
    }
    /* out[r][c] = gain * Q[r][c] = column c at row r, or gain * Q^T[r][c] = column r at c */
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
            out[r * cols + c] = (float)(gain * (transpose ? col[r * p + c] : col[c * p + r]));
    free(col);
    return NNRT_OK;
}

int nnrt_init_tensor(float *out, int rank, const int64_t *shape, int init_kind, double a,
                     double b, int64_t fan_in_override, uint64_t seed, uint64_t stream) {
    if (rank < 0 || rank > NNRT_MAX_RANK || (rank > 0 && !shape)) return NNRT_EARG;
    int64_t n;
    if (!nnrti_shape_bytes(rank, shape, sizeof(float), &n, NULL)) return NNRT_EARG;
    if (init_kind < NNRT_INIT_ZEROS || init_kind > NNRT_INIT_TORCH_DEFAULT) return NNRT_EARG;
    if (init_kind == NNRT_INIT_ORTHOGONAL && rank < 2) return NNRT_EARG;
    if (n == 0) return NNRT_OK;
    if (!out) return NNRT_ENULL;

    double fan_in, fan_out;
    compute_fans(rank, shape, &fan_in, &fan_out);
    if (fan_in_override > 0) fan_in = (double)fan_in_override;
    double gain = a != 0 ? a : 1.0;       /* xavier, orthogonal */
    double he_gain = sqrt(2.0 / (1.0 + a * a)); /* kaiming with leaky_relu slope a */
    double bound, std;

    switch (init_kind) {
    case NNRT_INIT_ZEROS:
    case NNRT_INIT_ONES:
    case NNRT_INIT_CONSTANT: {
        float v = init_kind == NNRT_INIT_ZEROS ? 0.0f : init_kind == NNRT_INIT_ONES ? 1.0f : (float)a;
        for (int64_t i = 0; i < n; i++) out[i] = v;
        return NNRT_OK;
    }
    case NNRT_INIT_UNIFORM:
        if (!(a <= b)) return NNRT_EARG;
        nnrt_rng_fill_uniform(out, n, seed, stream, 0, (float)a, (float)b);
        return NNRT_OK;
    case NNRT_INIT_NORMAL:
        if (!(b >= 0)) return NNRT_EARG;
        nnrt_rng_fill_normal(out, n, seed, stream, 0, (float)a, (float)b);
        return NNRT_OK;
    case NNRT_INIT_XAVIER_UNIFORM: /* U(-g sqrt(6 / (fan_in + fan_out)), +...) */
        bound = gain * sqrt(6.0 / (fan_in + fan_out));
        nnrt_rng_fill_uniform(out, n, seed, stream, 0, (float)-bound, (float)bound);
        return NNRT_OK;
    case NNRT_INIT_XAVIER_NORMAL: /* N(0, g sqrt(2 / (fan_in + fan_out))) */
        std = gain * sqrt(2.0 / (fan_in + fan_out));
        nnrt_rng_fill_normal(out, n, seed, stream, 0, 0.0f, (float)std);
        return NNRT_OK;
    case NNRT_INIT_HE_UNIFORM: /* U(-g sqrt(3 / fan_in), +...), g = sqrt(2 / (1 + a^2)) */
        bound = he_gain * sqrt(3.0 / fan_in);
        nnrt_rng_fill_uniform(out, n, seed, stream, 0, (float)-bound, (float)bound);
        return NNRT_OK;
    case NNRT_INIT_HE_NORMAL: /* N(0, g / sqrt(fan_in)) */
        std = he_gain / sqrt(fan_in);
        nnrt_rng_fill_normal(out, n, seed, stream, 0, 0.0f, (float)std);
        return NNRT_OK;
    case NNRT_INIT_ORTHOGONAL:
        return init_orthogonal(out, shape[0], n / shape[0], gain, seed, stream);
    case NNRT_INIT_TORCH_DEFAULT: /* nn.Linear/nn.Conv*: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) */
        bound = 1.0 / sqrt(fan_in);
        nnrt_rng_fill_uniform(out, n, seed, stream, 0, (float)-bound, (float)bound);
        return NNRT_OK;
    }
    return NNRT_EARG;
}
