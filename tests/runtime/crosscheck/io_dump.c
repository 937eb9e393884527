/* io_dump.c — writes DIR/w.safetensors and DIR/x.npy for crosscheck_torch.py. */
#include "nnrt.h"

#include <stdio.h>

int main(int argc, char **argv) {
    char path[4096];
    float w[12];
    int32_t b[3] = {1, -2, 3};
    for (int i = 0; i < 12; i++) w[i] = (float)i / 4;
    nnrt_st_tensor t[2] = {{"fc.weight", NNRT_F32, 2, {3, 4}, w, sizeof w},
                           {"fc.bias", NNRT_I32, 1, {3}, b, sizeof b}};
    const char *k = "framework", *v = "nnc";
    nnrt_error err;
    if (argc < 2) return 2;
    snprintf(path, sizeof path, "%s/w.safetensors", argv[1]);
    if (nnrt_st_write(path, 2, t, 1, &k, &v, &err)) return fprintf(stderr, "%s\n", err.msg), 1;
    snprintf(path, sizeof path, "%s/x.npy", argv[1]);
    int64_t shape[2] = {3, 4};
    if (nnrt_npy_save(path, NNRT_F32, 2, shape, w, &err)) return fprintf(stderr, "%s\n", err.msg), 1;
    return 0;
}
