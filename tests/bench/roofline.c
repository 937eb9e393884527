/* roofline.c — sgemm GFLOP/s of OpenBLAS (through nnrt_sgemm) for given GEMM shapes, the
 * ceiling that `make bench` compares each workload with (docs/performance.md).
 *
 *   roofline M,N,K,TA,TB ...      C[M,N] = op(A)[M,K] @ op(B)[K,N], op = transpose if T* is 1
 *
 * One JSON line per shape: {"shape":"M,N,K,TA,TB","gflops":g,"gflops_wall":w}; GFLOP/s from
 * the process CPU time (as the harness measures workloads), then from the wall clock. Timed
 * like harness.c: warm-up for 0.1 s, blocks of ~20 ms, the median of 15 blocks. Operands
 * are distinct per shape and small enough to stay in cache, as a workload's are between its
 * back-to-back GEMMs. */
#include "nnrt.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { BLOCKS = 15 };

static double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static float *filled(size_t n, int salt) {
    float *p = malloc(sizeof *p * n);
    for (size_t i = 0; i < n; i++)
        p[i] = (float)((i * 7 + (size_t)salt) % 17) / 17.0f - 0.5f;
    return p;
}

static void measure(int m, int n, int k, int ta, int tb) {
    float *a = filled((size_t)m * k, 1), *b = filled((size_t)k * n, 2),
          *c = filled((size_t)m * n, 3);
    int lda = ta ? m : k, ldb = tb ? k : n;
    double flop = 2.0 * m * n * k;
    for (int i = 0; i < 3; i++)
        nnrt_sgemm(ta, tb, m, n, k, 1, a, lda, b, ldb, 0, c, n);
    double t0 = cpu_seconds();
    long warm = 0;
    while (cpu_seconds() - t0 < 0.1)
        nnrt_sgemm(ta, tb, m, n, k, 1, a, lda, b, ldb, 0, c, n), warm++;
    long per_block = (long)(0.02 / ((cpu_seconds() - t0) / warm) + 0.5);
    if (per_block < 1) per_block = 1;
    double cpu[BLOCKS], wall[BLOCKS];
    for (int blk = 0; blk < BLOCKS; blk++) {
        double c0 = cpu_seconds(), w0 = nnrt_now();
        for (long i = 0; i < per_block; i++)
            nnrt_sgemm(ta, tb, m, n, k, 1, a, lda, b, ldb, 0, c, n);
        cpu[blk] = flop * per_block / (cpu_seconds() - c0) / 1e9;
        wall[blk] = flop * per_block / (nnrt_now() - w0) / 1e9;
    }
    qsort(cpu, BLOCKS, sizeof cpu[0], cmp_double);
    qsort(wall, BLOCKS, sizeof wall[0], cmp_double);
    printf("{\"shape\":\"%d,%d,%d,%d,%d\",\"gflops\":%.4g,\"gflops_wall\":%.4g}\n", m, n, k, ta, tb,
           cpu[BLOCKS / 2], wall[BLOCKS / 2]);
    fflush(stdout);
    free(a);
    free(b);
    free(c);
}

int main(int argc, char **argv) {
    printf("{\"blas\":\"%s\",\"core\":\"%s\"}\n", nnrt_blas_info(), nnrt_blas_core());
    for (int i = 1; i < argc; i++) {
        int m, n, k, ta, tb;
        if (sscanf(argv[i], "%d,%d,%d,%d,%d", &m, &n, &k, &ta, &tb) != 5 || m < 1 || n < 1 ||
            k < 1) {
            fprintf(stderr, "roofline: bad shape '%s' (want M,N,K,TA,TB)\n", argv[i]);
            return 2;
        }
        measure(m, n, k, ta, tb);
    }
    return 0;
}
