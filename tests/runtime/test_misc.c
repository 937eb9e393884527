/* test_misc.c — status strings, dtypes, the clock, and the BLAS kernel-selection helpers. */
#include "check.h"

#include <strings.h>

static void test_status(void) {
    const int codes[] = {NNRT_OK, NNRT_EBATCH, NNRT_ENULL, NNRT_ENONFINITE, NNRT_EIO,
                         NNRT_EFORMAT, NNRT_EMISMATCH, NNRT_ENOMEM, NNRT_EARG};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        CHECK_EQ(codes[i], -(int)i);
        const char *s = nnrt_strerror(codes[i]);
        CHECK(s && *s && strcmp(s, "unknown status code") != 0);
        for (size_t j = 0; j < i; j++) CHECK(strcmp(s, nnrt_strerror(codes[j])) != 0);
    }
    CHECK(!strcmp(nnrt_strerror(-99), "unknown status code"));
    CHECK(!strcmp(nnrt_strerror(1), "unknown status code"));
    CHECK(!strcmp(nnrt_strerror(NNRT_EMISMATCH), "file does not match the model"));
    CHECK_EQ(NNRT_KINDS_ALL, 0x1f);
    CHECK_EQ(NNRT_KINDS_WEIGHTS, 3);
}

static void test_dtypes(void) {
    CHECK_EQ(nnrt_dtype_size(NNRT_F32), 4);
    CHECK_EQ(nnrt_dtype_size(NNRT_I32), 4);
    CHECK_EQ(nnrt_dtype_size(NNRT_F64), 8);
    CHECK_EQ(nnrt_dtype_size(NNRT_U8), 1);
    CHECK_EQ(nnrt_dtype_size(NNRT_I64), 8);
    CHECK_EQ(nnrt_dtype_size(5), 0);
    CHECK_EQ(nnrt_dtype_size(-1), 0);
    CHECK(!strcmp(nnrt_dtype_name(NNRT_F32), "F32") && !strcmp(nnrt_dtype_name(NNRT_U8), "U8"));
    CHECK(!strcmp(nnrt_dtype_name(42), "?"));
    /* The contract values of the enums shared with generated code. */
    CHECK(NNRT_F32 == 0 && NNRT_I32 == 1 && NNRT_F64 == 2 && NNRT_U8 == 3);
    CHECK(NNRT_PARAM == 0 && NNRT_STATE == 1 && NNRT_SLOT == 2 && NNRT_STEP == 3 &&
          NNRT_HYPER == 4);
    CHECK(NNRT_INIT_ZEROS == 0 && NNRT_INIT_ORTHOGONAL == 9 && NNRT_INIT_TORCH_DEFAULT == 10);
    CHECK_EQ(NNRT_MAX_RANK, 6);
}

static void test_clock(void) {
    double t0 = nnrt_now();
    volatile double x = 0;
    for (int i = 0; i < 1000000; i++) x += i;
    double t1 = nnrt_now();
    CHECK(t0 > 0 && t1 >= t0 && t1 - t0 < 10);
}

static void test_blas(void) {
    const char *info = nnrt_blas_info(), *core = nnrt_blas_core();
    CHECK(info && strstr(info, "OpenBLAS"));
    CHECK(core && *core);
    /* The configuration string names the kernel set in use (DYNAMIC_ARCH builds). */
    if (info && core) CHECK(strstr(info, core) != NULL);

    unsetenv("NNC_BLAS_CORETYPE");
    unsetenv("NNRT_BLAS_REEXEC");
    const char *name = "unset";
    int want = nnrt_blas_wants_coretype(&name);
    CHECK(want == 0 || want == 1);
    CHECK(want ? name && !strcmp(name, "SkylakeX") : name == NULL);
    /* only when OpenBLAS picked a kernel set without AVX-512 */
    if (want) CHECK(strcasecmp(core, "SkylakeX") != 0);
    /* An OPENBLAS_CORETYPE in the environment does not change the answer (it may name the
     * AVX2 fallback), but the re-executed process never asks again. */
    setenv("OPENBLAS_CORETYPE", "Haswell", 1);
    CHECK_EQ(nnrt_blas_wants_coretype(NULL), want);
    setenv("NNRT_BLAS_REEXEC", "1", 1);
    name = "unset";
    CHECK_EQ(nnrt_blas_wants_coretype(&name), 0);
    CHECK(name == NULL);
    unsetenv("NNRT_BLAS_REEXEC");
    /* NNC_BLAS_CORETYPE forces a set, unless the environment already has it. */
    setenv("NNC_BLAS_CORETYPE", "Zen", 1);
    name = NULL;
    CHECK_EQ(nnrt_blas_wants_coretype(&name), 1);
    CHECK(name && !strcmp(name, "Zen"));
    setenv("OPENBLAS_CORETYPE", "zen", 1);
    CHECK_EQ(nnrt_blas_wants_coretype(NULL), 0);
    unsetenv("NNC_BLAS_CORETYPE");
    unsetenv("OPENBLAS_CORETYPE");
    printf("blas: %s (core %s), wants coretype: %s\n", info, core, want ? "SkylakeX" : "no");
}

static int thread_count(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    int n = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "Threads:", 8)) n = atoi(line + 8);
    if (f) fclose(f);
    return n;
}

/* nnrt_blas_stop_threads ends OpenBLAS's worker threads (if it has any: not with
 * OPENBLAS_NUM_THREADS=1), twice is harmless, and a multithreaded sgemm afterwards starts
 * them again and computes the right product. */
static void test_blas_threads(void) {
    int before = thread_count();
    nnrt_blas_stop_threads();
    int after = thread_count();
    nnrt_blas_stop_threads();
    CHECK(after >= 1 && after <= before);
    if (before > 1) CHECK_EQ(after, 1);
    enum { N = 256 };
    static float a[N * N], b[N * N], c[N * N];
    for (int i = 0; i < N * N; i++) {
        a[i] = (float)(i % 7) - 3;
        b[i] = (float)(i % 5) - 2;
    }
    nnrt_sgemm(0, 0, N, N, N, 1.0f, a, N, b, N, 0.0f, c, N);
    int bad = 0;
    for (int i = 0; i < N; i += 17)
        for (int j = 0; j < N; j += 13) {
            double r = 0;
            for (int k = 0; k < N; k++) r += (double)a[i * N + k] * b[k * N + j];
            bad += c[i * N + j] != (float)r; /* small integers: exact */
        }
    CHECK_EQ(bad, 0);
    printf("blas threads: %d before, %d after stopping, %d after an sgemm\n", before, after, thread_count());
}

int main(void) {
    test_status();
    test_dtypes();
    test_clock();
    test_blas();
    test_blas_threads();
    return check_summary("test_misc");
}
