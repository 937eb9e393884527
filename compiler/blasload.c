/* blasload.c — OpenBLAS for nnc, loaded when a command first needs it.
 *
 * nnc is not linked with OpenBLAS: the three OpenBLAS functions libnnrt calls are defined
 * here and forward to the library, which blas_load opens with dlopen. `compile`, `check`,
 * `dump` and `summary` never load it (the library's start-up, its CPU detection, buffers
 * and worker threads, cost ~6 ms of every command before), and the commands that run models
 * choose its kernel set before it loads instead of re-executing nnc: Debian's OpenBLAS
 * 0.3.21 falls back to its AVX2 kernels on AVX-512 CPUs it does not recognise, unless
 * OPENBLAS_CORETYPE names an AVX-512 set when the library loads (docs/runtime.md).
 *
 * Programs that link a compiled model link OpenBLAS itself (-lopenblas) and do not use this
 * file; the unit tests link both, and the definitions here then forward to the library
 * already loaded.
 */
#include "nnc.h"
#include "nnrt_internal.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef void (*SgemmFn)(int, int, int, int, int, int, float, const float *, int, const float *, int, float,
                        float *, int);
typedef char *(*StringFn)(void);

static struct {
    pthread_once_t once;
    void *lib;
    SgemmFn sgemm;
    StringFn config, corename;
    char choice[160]; /* who chose the kernel set, for --version */
} blas = {.once = PTHREAD_ONCE_INIT};

/* The kernel set to ask for before the library loads, with the reason, or NULL. */
static const char *kernels_to_request(const char **why) {
    const char *as_is = getenv("NNC_BLAS_AS_IS"), *old_name = getenv("NNC_NO_REEXEC");
    if ((as_is && *as_is == '1') || (old_name && *old_name == '1')) return NULL;
    const char *forced = getenv("NNC_BLAS_CORETYPE");
    if (forced && *forced) {
        *why = "NNC_BLAS_CORETYPE";
        return forced;
    }
    const char *have = getenv("OPENBLAS_CORETYPE");
    if (!nnrti_have_avx512(NNRTI_AVX512_VL | NNRTI_AVX512_BW_DQ) || nnrti_blas_core_has_avx512(have)) return NULL;
    *why = "chosen by nnc for this AVX-512 CPU";
    return "SkylakeX";
}

static void *symbol(const char *name) {
    void *p = dlsym(blas.lib, name);
    if (!p) {
        fprintf(stderr, "nnc: error: the OpenBLAS library has no '%s'\n", name);
        exit(1);
    }
    return p;
}

static void load(void) {
    const char *why = NULL, *want = kernels_to_request(&why);
    const char *before = getenv("OPENBLAS_CORETYPE");
    if (want) {
        if (before && strcasecmp(before, want))
            snprintf(blas.choice, sizeof blas.choice, "%s; OPENBLAS_CORETYPE was %s", why, before);
        else
            snprintf(blas.choice, sizeof blas.choice, "%s", why);
        setenv("OPENBLAS_CORETYPE", want, 1);
    } else {
        snprintf(blas.choice, sizeof blas.choice, "%s", before ? "OPENBLAS_CORETYPE" : "chosen by OpenBLAS");
    }
    static const char *const names[] = {"libopenblas.so.0", "libopenblas.so"};
    for (size_t i = 0; i < sizeof names / sizeof names[0] && !blas.lib; i++)
        blas.lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (!blas.lib) {
        fprintf(stderr, "nnc: error: cannot load OpenBLAS: %s\n", dlerror());
        fprintf(stderr, "nnc: note: install it with 'apt-get install libopenblas0' (make deps does)\n");
        exit(1);
    }
    blas.sgemm = (SgemmFn)symbol("cblas_sgemm");
    blas.config = (StringFn)symbol("openblas_get_config");
    blas.corename = (StringFn)symbol("openblas_get_corename");
}

void blas_load(void) { pthread_once(&blas.once, load); }

const char *blas_choice(void) {
    blas_load();
    return blas.choice;
}

/* ---- what libnnrt calls (runtime/blas.c, kernels.c). Its weak reference to OpenBLAS's
 * blas_thread_shutdown_ stays unresolved in nnc: nnrt_blas_stop_threads is then a no-op,
 * and nnc never calls it (the commands that run no model never load OpenBLAS). */

void cblas_sgemm(int order, int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                 const float *b, int ldb, float beta, float *c, int ldc) {
    blas_load();
    blas.sgemm(order, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

char *openblas_get_config(void) {
    blas_load();
    return blas.config();
}

char *openblas_get_corename(void) {
    blas_load();
    return blas.corename();
}
