/* fuzz_loaders.c — libFuzzer target for the runtime's file readers (safetensors, .npy).
 * The first input byte picks the reader, the rest is the file. Build and run (clang):
 *
 *   clang -std=c11 -g -O1 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -Iruntime \
 *         tests/fuzz/fuzz_loaders.c $(find runtime -name '*.c') -lopenblas -lz -lm -o build/fuzz_loaders
 *   build/fuzz_loaders -max_total_time=600
 *
 * Any crash, sanitizer report or leak is a bug: every input must give NNRT_OK or
 * NNRT_EFORMAT. */
#include "nnrt.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    if (size == 0) return 0;
    nnrt_error err;
    if (data[0] & 1) {
        nnrt_st_file f;
        int rc = nnrt_st_read_memory(data + 1, size - 1, "fuzz.safetensors", &f, &err);
        if (rc != NNRT_OK && rc != NNRT_EFORMAT) abort();
        for (int i = 0; i < f.n; i++)
            if (f.tensors[i].bytes && !f.tensors[i].data) abort();
        nnrt_st_free(&f);
    } else {
        nnrt_array a;
        int rc = nnrt_npy_load_memory(data + 1, size - 1, "fuzz.npy", &a, &err);
        if (rc != NNRT_OK && rc != NNRT_EFORMAT) abort();
        nnrt_array_free(&a);
    }
    return 0;
}
