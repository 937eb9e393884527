/* test_rng.c — Philox4x32-10 known answers, the uniform and normal definitions (golden
 * values from tests/runtime/rng_reference.py), statistics, and independence of n. */
#include "check.h"

static uint32_t float_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* Random123's kat_vectors for philox4x32 10: counter words c0..c3, key words k0, k1. */
static void test_philox_known_answers(void) {
    static const struct {
        uint32_t ctr[4], key[2], out[4];
    } kat[] = {
        {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
        {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
         {0xffffffff, 0xffffffff},
         {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
        {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
         {0xa4093822, 0x299f31d0},
         {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
    };
    for (size_t i = 0; i < sizeof kat / sizeof kat[0]; i++) {
        uint64_t key = (uint64_t)kat[i].key[1] << 32 | kat[i].key[0];
        uint64_t hi = (uint64_t)kat[i].ctr[3] << 32 | kat[i].ctr[2];
        uint64_t lo = (uint64_t)kat[i].ctr[1] << 32 | kat[i].ctr[0];
        uint32_t out[4];
        nnrt_philox(key, hi, lo, out);
        for (int k = 0; k < 4; k++) CHECK_EQ(out[k], kat[i].out[k]);
    }
}

/* The exact bits of the first values, so that any change of definition is caught. */
static void test_golden(void) {
    static const uint32_t uniform_bits[4] = {0x3ecfdcde, 0x3f65dde9, 0x3e13b3f0, 0x3f145bca};
    static const uint32_t normal_bits[4] = {0xbf988c32, 0xbedbf297, 0xbf874bb7, 0xbf8392e5};
    float u[4], z[4];
    nnrt_rng_fill_uniform(u, 4, 42, 7, 0, 0.0f, 1.0f);
    nnrt_rng_fill_normal(z, 4, 42, 7, 0, 0.0f, 1.0f);
    for (int i = 0; i < 4; i++) {
        CHECK_EQ(float_bits(nnrt_rng_uniform(42, 7, (uint64_t)i)), uniform_bits[i]);
        CHECK_EQ(float_bits(u[i]), uniform_bits[i]);
        CHECK_EQ(float_bits(z[i]), normal_bits[i]);
    }
}

/* Element i depends on (seed, stream, offset + i) only: any split of a fill gives the same
 * values, streams and seeds give different ones. */
static void test_counter_based(void) {
    enum { N = 1000 };
    float all[N], parts[N], other[N];
    nnrt_rng_fill_normal(all, N, 5, 3, 100, 1.0f, 2.0f);
    nnrt_rng_fill_normal(parts, 1, 5, 3, 100, 1.0f, 2.0f);
    nnrt_rng_fill_normal(parts + 1, 499, 5, 3, 101, 1.0f, 2.0f);
    nnrt_rng_fill_normal(parts + 500, N - 500, 5, 3, 600, 1.0f, 2.0f);
    CHECK(!memcmp(all, parts, sizeof all));
    nnrt_rng_fill_uniform(all, N, 5, 3, 0, -1.0f, 1.0f);
    for (int i = 0; i < N; i += 250)
        nnrt_rng_fill_uniform(parts + i, 250, 5, 3, (uint64_t)i, -1.0f, 1.0f);
    CHECK(!memcmp(all, parts, sizeof all));
    nnrt_rng_fill_uniform(other, N, 5, 4, 0, -1.0f, 1.0f);
    int same = 0;
    for (int i = 0; i < N; i++) same += all[i] == other[i];
    CHECK(same < 5);
    nnrt_rng_fill_uniform(other, N, 6, 3, 0, -1.0f, 1.0f);
    same = 0;
    for (int i = 0; i < N; i++) same += all[i] == other[i];
    CHECK(same < 5);
    nnrt_rng_fill_uniform(NULL, 10, 1, 1, 0, 0, 1); /* no-op */
}

static void test_uniform_statistics(void) {
    enum { N = 100000 };
    float *u = malloc(N * sizeof *u);
    nnrt_rng_fill_uniform(u, N, 1234, 0, 0, 0.0f, 1.0f);
    double sum = 0, sq = 0, lo = 1, hi = 0;
    int bins[10] = {0};
    for (int i = 0; i < N; i++) {
        sum += u[i];
        sq += (double)u[i] * u[i];
        if (u[i] < lo) lo = u[i];
        if (u[i] > hi) hi = u[i];
        if (u[i] >= 0 && u[i] < 1) bins[(int)(u[i] * 10)]++;
    }
    double mean = sum / N, var = sq / N - mean * mean;
    /* standard errors: mean 0.29/sqrt(N) = 0.0009, variance ~0.0003 */
    CHECK_NEAR(mean, 0.5, 0.005);
    CHECK_NEAR(var, 1.0 / 12, 0.002);
    CHECK(lo >= 0 && lo < 0.001 && hi < 1 && hi > 0.999);
    for (int b = 0; b < 10; b++) CHECK_NEAR(bins[b], N / 10, 500);

    /* [lo, hi) also where rounding to float could reach hi. */
    nnrt_rng_fill_uniform(u, N, 9, 1, 0, 1.0f, 1.0000001f);
    int ok = 1;
    for (int i = 0; i < N; i++) ok &= u[i] >= 1.0f && u[i] < 1.0000001f;
    CHECK(ok);
    nnrt_rng_fill_uniform(u, N, 9, 1, 0, -3.0f, 5.0f);
    ok = 1;
    for (int i = 0; i < N; i++) ok &= u[i] >= -3.0f && u[i] < 5.0f;
    CHECK(ok);
    free(u);
}

static void test_normal_statistics(void) {
    enum { N = 100000 };
    float *z = malloc(N * sizeof *z);
    nnrt_rng_fill_normal(z, N, 77, 2, 0, 0.0f, 1.0f);
    double sum = 0, sq = 0, cube = 0, quad = 0;
    int within1 = 0, within2 = 0, finite = 1;
    for (int i = 0; i < N; i++) {
        double v = z[i];
        finite &= isfinite(v);
        sum += v;
        sq += v * v;
        cube += v * v * v;
        quad += v * v * v * v;
        within1 += fabs(v) < 1;
        within2 += fabs(v) < 2;
    }
    double mean = sum / N, sd = sqrt(sq / N - mean * mean);
    CHECK(finite);
    CHECK_NEAR(mean, 0, 0.015);               /* standard error 0.0032 */
    CHECK_NEAR(sd, 1, 0.01);                  /* standard error 0.0022 */
    CHECK_NEAR(cube / N, 0, 0.05);            /* skewness, standard error 0.008 */
    CHECK_NEAR(quad / N, 3, 0.1);             /* kurtosis, standard error 0.025 */
    CHECK_NEAR((double)within1 / N, 0.682689, 0.006);
    CHECK_NEAR((double)within2 / N, 0.954500, 0.004);

    nnrt_rng_fill_normal(z, N, 77, 2, 0, 3.0f, 0.5f);
    sum = sq = 0;
    for (int i = 0; i < N; i++) {
        sum += z[i];
        sq += (double)z[i] * z[i];
    }
    mean = sum / N;
    CHECK_NEAR(mean, 3, 0.01);
    CHECK_NEAR(sqrt(sq / N - mean * mean), 0.5, 0.005);
    free(z);
}

int main(void) {
    test_philox_known_answers();
    test_golden();
    test_counter_based();
    test_uniform_statistics();
    test_normal_statistics();
    return check_summary("test_rng");
}
