/* examples/embed/main.c — classify Fashion-MNIST test images with a model compiled by nnc,
 * using weights trained by `nnc train`. No Python, no framework: the object file of the
 * model, libnnrt and OpenBLAS.
 *
 *   nnc train examples/fashion_mlp.nn --save fashion_mlp.safetensors
 *   nnc compile examples/fashion_mlp.nn -o fashion_mlp.o          (also writes fashion_mlp.h)
 *   cc -std=c11 -I. -Iruntime examples/embed/main.c fashion_mlp.o build/libnnrt.a \
 *      -lopenblas -lz -lm -o classify
 *   ./classify fashion_mlp.safetensors \
 *      /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz \
 *      /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz 10
 *
 * See docs/c-api.md for the generated API. */
#include "fashion_mlp.h"

#include <stdio.h>
#include <stdlib.h>

static const char *const class_names[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                            "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s WEIGHTS.safetensors IMAGES.idx LABELS.idx [COUNT]\n", argv[0]);
        return 2;
    }
    int count = argc > 4 ? atoi(argv[4]) : 10;
    if (count < 1) count = 1;

    /* The context: caller-owned memory of the sizes the header gives. */
    fashion_mlp model = {calloc(1, FASHION_MLP_STATE_BYTES), malloc(FASHION_MLP_WORK_BYTES)};
    if (!model.state || !model.work) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }

    /* Weights: the checkpoint names its tensors as the model does (h1.weight, ...); the info
     * says where each one goes in the state. Params and batchnorm states are required;
     * optimizer slots and the step counter of a training checkpoint load if present. */
    nnrt_error err;
    int rc = nnrt_load(fashion_mlp_info(), model.state, argv[1], NNRT_KINDS_WEIGHTS,
                       NNRT_KINDS_ALL & ~NNRT_KINDS_WEIGHTS, &err);
    if (rc) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    /* Test images (uint8 [N, 28, 28]) and labels (uint8 [N]), gzip or plain. */
    nnrt_array images, labels;
    if ((rc = nnrt_idx_load(argv[2], &images, &err)) || (rc = nnrt_idx_load(argv[3], &labels, &err))) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    if (images.dtype != NNRT_U8 || labels.dtype != NNRT_U8 || images.rank != 3 ||
        images.shape[1] * images.shape[2] != FASHION_MLP_X_SIZE || labels.shape[0] != images.shape[0]) {
        fprintf(stderr, "unexpected image or label files\n");
        return 1;
    }
    if (count > images.shape[0]) count = (int)images.shape[0];

    /* Classify in batches of at most FASHION_MLP_MAX_BATCH; pixels scaled to [0, 1] as in
     * training. */
    float x[FASHION_MLP_MAX_BATCH * FASHION_MLP_X_SIZE];
    float probs[FASHION_MLP_MAX_BATCH * FASHION_MLP_PROBS_SIZE];
    const uint8_t *pixels = images.data, *truth = labels.data;
    int correct = 0;
    for (int first = 0; first < count; first += FASHION_MLP_MAX_BATCH) {
        int n = count - first < FASHION_MLP_MAX_BATCH ? count - first : FASHION_MLP_MAX_BATCH;
        for (int i = 0; i < n * FASHION_MLP_X_SIZE; i++)
            x[i] = pixels[(size_t)first * FASHION_MLP_X_SIZE + i] / 255.0f;
        rc = fashion_mlp_infer(&model, n, x, probs);
        if (rc) {
            fprintf(stderr, "infer: %s\n", nnrt_strerror(rc));
            return 1;
        }
        for (int k = 0; k < n; k++) {
            const float *p = probs + k * FASHION_MLP_PROBS_SIZE;
            int best = 0;
            for (int c = 1; c < FASHION_MLP_PROBS_SIZE; c++)
                if (p[c] > p[best]) best = c;
            int want = truth[first + k];
            correct += best == want;
            printf("image %d: predicted %-11s (%.2f), true %s\n", first + k, class_names[best], p[best],
                   class_names[want]);
        }
    }
    printf("%d of %d correct\n", correct, count);
    nnrt_array_free(&images);
    nnrt_array_free(&labels);
    free(model.state);
    free(model.work);
    return 0;
}
