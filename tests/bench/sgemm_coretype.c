/* sgemm_coretype.c — measures sgemm GFLOP/s for the W1 first-layer shape (batch 64, 784 in,
 * 512 out: C[64x512] = X[64x784] @ W[512x784]^T) under each OpenBLAS kernel set.
 * Not a test: timings are for people (DESIGN.md section 10). Build and run:
 *
 *   make build/libnnrt.a
 *   cc -std=c11 -O2 -D_GNU_SOURCE -Iruntime tests/bench/sgemm_coretype.c build/libnnrt.a \
 *      -lopenblas -lz -lm -o build/sgemm_coretype
 *   build/sgemm_coretype            # runs itself under each OPENBLAS_CORETYPE setting
 *
 * With an argument ("child") it measures the current process only. OPENBLAS_CORETYPE
 * must be set before libopenblas loads, hence one process per setting. */
#include "nnrt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { M = 64, K = 784, N = 512, TRIALS = 15 };

/* CPU time of this thread: with one BLAS thread, time spent descheduled by other jobs on
 * a shared machine does not count, which makes single-thread numbers far less noisy. */
static double thread_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void measure(int trans_b) {
    float *x = malloc(sizeof(float) * M * K), *w = malloc(sizeof(float) * N * K);
    float *c = malloc(sizeof(float) * M * N);
    for (int i = 0; i < M * K; i++) x[i] = (float)(i % 17) / 17.0f;
    for (int i = 0; i < N * K; i++) w[i] = (float)(i % 13) / 13.0f - 0.5f;
    /* trans_b: W stored [N, K] (nn.Linear layout); else W stored [K, N] */
    int ldb = trans_b ? K : N;
    for (int i = 0; i < 50; i++) nnrt_sgemm(0, trans_b, M, N, K, 1, x, K, w, ldb, 0, c, N);
    double t0 = nnrt_now();
    int calls = 0;
    while (nnrt_now() - t0 < 0.2) {
        nnrt_sgemm(0, trans_b, M, N, K, 1, x, K, w, ldb, 0, c, N);
        calls++;
    }
    double wall[TRIALS], cpu[TRIALS];
    for (int t = 0; t < TRIALS; t++) {
        double s = nnrt_now(), s_cpu = thread_seconds();
        for (int i = 0; i < calls; i++) nnrt_sgemm(0, trans_b, M, N, K, 1, x, K, w, ldb, 0, c, N);
        wall[t] = 2.0 * M * N * K * calls / (nnrt_now() - s) / 1e9;
        cpu[t] = 2.0 * M * N * K * calls / (thread_seconds() - s_cpu) / 1e9;
    }
    qsort(wall, TRIALS, sizeof wall[0], cmp_double);
    qsort(cpu, TRIALS, sizeof cpu[0], cmp_double);
    printf("  %-22s wall: median %6.1f best %6.1f GFLOP/s", trans_b ? "X @ W^T (W [512,784])" :
           "X @ W   (W [784,512])", wall[TRIALS / 2], wall[TRIALS - 1]);
    if (getenv("OPENBLAS_NUM_THREADS") && !strcmp(getenv("OPENBLAS_NUM_THREADS"), "1"))
        printf(" | thread CPU time: median %6.1f best %6.1f", cpu[TRIALS / 2], cpu[TRIALS - 1]);
    printf("\n");
    free(x);
    free(w);
    free(c);
}

static void child(void) {
    const char *ct = getenv("OPENBLAS_CORETYPE"), *th = getenv("OPENBLAS_NUM_THREADS");
    const char *want;
    int wants = nnrt_blas_wants_coretype(&want);
    printf("OPENBLAS_CORETYPE=%s OPENBLAS_NUM_THREADS=%s -> core %s%s\n", ct ? ct : "(unset)",
           th ? th : "(unset)", nnrt_blas_core(),
           wants ? " (nnrt_blas_wants_coretype: SkylakeX)" : "");
    measure(1);
    measure(0);
    fflush(stdout);
}

static void run(const char *self, const char *coretype, const char *threads) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        if (coretype) setenv("OPENBLAS_CORETYPE", coretype, 1);
        else unsetenv("OPENBLAS_CORETYPE");
        if (threads) setenv("OPENBLAS_NUM_THREADS", threads, 1);
        else unsetenv("OPENBLAS_NUM_THREADS");
        execl(self, self, "child", (char *)NULL);
        _exit(127);
    }
    int status;
    waitpid(pid, &status, 0);
}

int main(int argc, char **argv) {
    if (argc > 1) {
        child();
        return 0;
    }
    printf("%s\nsgemm %dx%dx%d (m x k x n), %.1f MFLOP per call\n", nnrt_blas_info(), M, K, N,
           2.0 * M * N * K / 1e6);
    const char *settings[] = {NULL, "Haswell", "SkylakeX"};
    for (int t = 0; t < 2; t++)
        for (int s = 0; s < 3; s++) run(argv[0], settings[s], t ? NULL : "1");
    return 0;
}
