/* blas.c — which OpenBLAS kernels are in use, and whether better ones are available.
 *
 * Debian's OpenBLAS is built with DYNAMIC_ARCH: when it loads, it picks a kernel set for
 * the CPU it recognises. On CPUs it does not know (DESIGN.md section 10 records an AVX-512
 * AMD EPYC for which 0.3.21 picks Haswell, ~100 GFLOP/s instead of ~200), the AVX-512
 * kernels are used only if OPENBLAS_CORETYPE=SkylakeX is in the environment before the
 * library is loaded, so the nnc driver re-executes itself with it set. On CPUs OpenBLAS
 * already handles (e.g. Intel Xeons with AVX-512, where it picks SkylakeX itself) there is
 * nothing to gain, so nnrt_blas_wants_coretype also checks the core actually chosen.
 * An OPENBLAS_CORETYPE already in the environment that names an AVX2 set on an AVX-512 CPU
 * (the same fallback, chosen for the machine rather than by OpenBLAS) is overridden too.
 */
#include "nnrt_internal.h"

#include <stdlib.h>
#include <strings.h>

/* Declared here rather than through <cblas.h> so this file states exactly what it needs
 * from OpenBLAS beyond the CBLAS interface. */
extern char *openblas_get_config(void);
extern char *openblas_get_corename(void);

/* OpenBLAS's pthreads server (the library's own, exported for its fork handling); weak, so
 * an OpenBLAS without it (the OpenMP build) links too. */
extern int blas_thread_shutdown_(void) __attribute__((weak));

const char *nnrt_blas_info(void) { return openblas_get_config(); }

void nnrt_blas_stop_threads(void) {
    if (blas_thread_shutdown_) blas_thread_shutdown_();
}

const char *nnrt_blas_core(void) { return openblas_get_corename(); }

/* OpenBLAS kernel sets that already use 512-bit vectors. */
int nnrti_blas_core_has_avx512(const char *core) {
    static const char *const avx512_cores[] = {"skylakex", "cooperlake", "sapphirerapids"};
    if (!core) return 0;
    for (size_t i = 0; i < sizeof avx512_cores / sizeof avx512_cores[0]; i++)
        if (!strcasecmp(core, avx512_cores[i])) return 1;
    return 0;
}

int nnrti_have_avx512(int need) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    static _Atomic int known = -1; /* bit 0: AVX512F, then the NNRTI_AVX512_* present */
    int k = known;
    if (k < 0) {
        __builtin_cpu_init();
        k = (__builtin_cpu_supports("avx512f") ? 1 : 0) | (__builtin_cpu_supports("avx512vl") ? NNRTI_AVX512_VL : 0) |
            (__builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") ? NNRTI_AVX512_BW_DQ : 0);
        known = k;
    }
    return (k & 1) && (k & need) == need;
#else
    (void)need;
    return 0;
#endif
}

/* The AVX-512 kernel set to ask for, or NULL. A variable the environment already has does
 * not stop it: a machine-wide OPENBLAS_CORETYPE naming an AVX2 set (as some images set for
 * CPUs OpenBLAS does not know) would leave half the FMA width unused; NNC_BLAS_CORETYPE is
 * the way to force a kernel set on purpose. NNRT_BLAS_REEXEC marks a process that was
 * started again with the variable set, so it never asks twice, even if OpenBLAS ignored it. */
int nnrt_blas_wants_coretype(const char **name) {
    const char *want = NULL;
    const char *forced = getenv("NNC_BLAS_CORETYPE"), *again = getenv("NNRT_BLAS_REEXEC");
    const char *have = getenv("OPENBLAS_CORETYPE");
    if (forced && *forced) {
        if (!have || strcasecmp(have, forced)) want = forced;
    } else if (nnrti_have_avx512(NNRTI_AVX512_VL | NNRTI_AVX512_BW_DQ) &&
               !nnrti_blas_core_has_avx512(openblas_get_corename()))
        want = "SkylakeX";
    if (again && *again == '1') want = NULL;
    if (name) *name = want;
    return want != NULL;
}
