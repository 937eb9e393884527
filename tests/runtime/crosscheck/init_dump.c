/* init_dump.c — prints nnrt's orthogonal initializer for a few shapes (helper of
 * crosscheck_torch.py; not a unit test). */
#include "nnrt.h"

#include <stdio.h>

int main(void) {
    static const int64_t shapes[][2] = {{6, 10}, {10, 6}, {7, 7}, {64, 784}};
    static float w[64 * 784];
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        if (nnrt_init_tensor(w, 2, shapes[s], NNRT_INIT_ORTHOGONAL, 1.5, 0, 0, 42, 3)) return 1;
        for (int64_t i = 0; i < shapes[s][0] * shapes[s][1]; i++) printf("%.9g ", w[i]);
        printf("\n");
    }
    return 0;
}
