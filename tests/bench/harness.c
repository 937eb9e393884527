/* harness.c — times one compiled model on real data for `make bench` (docs/performance.md).
 * The model comes from a backend (harness.h): an object from `nnc compile`, or the JIT.
 *
 *   harness [--model FILE.nn] [--data DIR] [--text FILE] [--reps R] MODE...
 *
 * MODE is one of
 *   train        train_step on batches of max_batch samples     (W1, W2, W3, W4)
 *   infer        infer on batches of max_batch samples          (W2 inference)
 *   infer1       infer on one sample: latency                   (W5)
 *   mem=STEPS    STEPS train steps, images kept as bytes and converted one batch at a time,
 *                as a memory-frugal trainer would; the parent reads the peak RSS (W6)
 *   compile      the JIT's compile time (a W7 proxy; the aot backend has nothing to report)
 *
 * Output: one JSON object per line, {"mode":..., "rep":r, "batch":b, "cpu":s, "wall":s}
 * with seconds per call (medians over timed blocks); errors as {"error":"..."} and exit 1.
 *
 * How a call is timed (tests/bench/torch_bench.py does exactly the same): warm-up calls until
 * 0.1 s of CPU time has passed (at least 3 calls); from their cost, calls per block so that a
 * block takes about 20 ms; 15 blocks; per block the process CPU time and the wall time per
 * call; the median over blocks. CPU time is the headline because the machine is shared: time
 * spent descheduled by other jobs does not count, and with one thread CPU time is the work.
 * Inputs cycle through a ring of up to 32 batches converted to f32 beforehand (data
 * preparation is not timed, on either side). */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { RING = 32, BLOCKS = 15 };
static const double WARMUP_SECONDS = 0.1, BLOCK_SECONDS = 0.02;

static double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void fail(const char *fmt, const char *detail) {
    printf("{\"error\":\"");
    printf(fmt, detail);
    printf("\"}\n");
    fflush(stdout);
    exit(1);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* ---------------------------------------------------------------- data */

typedef struct Data {
    int64_t n;      /* samples */
    int64_t x_size; /* values per sample */
    int64_t y_size; /* labels per sample */
    int x_is_i32;
    uint8_t *bytes;  /* images as bytes [n][x_size], or the text */
    int32_t *labels; /* image labels [n]; NULL for text */
} Data;

static void load_images(Data *d, const char *dir) {
    char path[1024];
    nnrt_array img, lab;
    nnrt_error err;
    snprintf(path, sizeof path, "%s/train-images-idx3-ubyte.gz", dir);
    if (nnrt_idx_load(path, &img, &err)) fail("%s", err.msg);
    snprintf(path, sizeof path, "%s/train-labels-idx1-ubyte.gz", dir);
    if (nnrt_idx_load(path, &lab, &err)) fail("%s", err.msg);
    if (img.dtype != NNRT_U8 || lab.dtype != NNRT_U8)
        fail("%s: expected u8 images and labels", dir);
    d->n = img.shape[0];
    d->x_size = img.numel / img.shape[0];
    d->y_size = 1;
    d->bytes = img.data;
    d->labels = malloc(sizeof *d->labels * (size_t)d->n);
    for (int64_t i = 0; i < d->n; i++)
        d->labels[i] = ((uint8_t *)lab.data)[i];
    nnrt_array_free(&lab);
}

/* Sample i of a text is the window [i*T, i*T + T) and its label the window shifted by one
 * byte, as `nnc train` reads text(...). */
static void load_text(Data *d, const char *path, int64_t seq) {
    FILE *fp = fopen(path, "rb");
    if (!fp) fail("cannot read %s", path);
    fseek(fp, 0, SEEK_END);
    long size = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    d->bytes = malloc((size_t)size + 1);
    if (fread(d->bytes, 1, (size_t)size, fp) != (size_t)size) fail("cannot read %s", path);
    fclose(fp);
    d->n = (size - 1) / seq;
    d->x_size = d->y_size = seq;
    d->x_is_i32 = 1;
}

/* Batch k (of max_batch samples) converted for the model: x as f32 in [0, 1] or i32 tokens. */
static void make_batch(const Data *d, int64_t first, int n, void *x, int32_t *y) {
    for (int s = 0; s < n; s++) {
        int64_t i = (first + s) % d->n;
        if (d->x_is_i32) {
            const uint8_t *t = d->bytes + i * d->x_size;
            for (int64_t k = 0; k < d->x_size; k++) {
                ((int32_t *)x)[s * d->x_size + k] = t[k];
                y[s * d->y_size + k] = t[k + 1];
            }
        } else {
            const uint8_t *p = d->bytes + i * d->x_size;
            for (int64_t k = 0; k < d->x_size; k++)
                ((float *)x)[s * d->x_size + k] = (float)p[k] / 255.0f;
            y[s] = d->labels[i];
        }
    }
}

typedef struct Ring {
    int count, batch;
    void *x[RING];
    int32_t *y[RING];
} Ring;

static void ring_fill(Ring *r, const Data *d, int batch) {
    r->batch = batch;
    r->count = (int)(d->n / batch < RING ? d->n / batch : RING);
    if (r->count < 1) r->count = 1;
    for (int k = 0; k < r->count; k++) {
        r->x[k] = malloc(4 * (size_t)(batch * d->x_size));
        r->y[k] = malloc(4 * (size_t)(batch * d->y_size));
        make_batch(d, (int64_t)k * batch, batch, r->x[k], r->y[k]);
    }
}

/* ---------------------------------------------------------------- timing */

typedef struct Call {
    BenchModel *m;
    Ring *ring;
    int train; /* train_step, else infer */
    int next;  /* next batch of the ring */
    float *out;
} Call;

static void call_once(Call *c) {
    Ring *r = c->ring;
    int k = c->next++ % r->count;
    float loss = 0;
    int rc = c->train ? c->m->train_step(c->m, r->batch, r->x[k], r->y[k], &loss)
                      : c->m->infer(c->m, r->batch, r->x[k], c->out);
    if (rc) fail("the compiled code returned %s", nnrt_strerror(rc));
}

/* Seconds per call, medians over BLOCKS timed blocks (see the comment at the top). */
static void time_calls(Call *c, double *cpu_per_call, double *wall_per_call) {
    for (int i = 0; i < 3; i++)
        call_once(c);
    double t0 = cpu_seconds();
    int warm = 0;
    while (cpu_seconds() - t0 < WARMUP_SECONDS)
        call_once(c), warm++;
    double est = (cpu_seconds() - t0) / warm;
    int per_block = (int)(BLOCK_SECONDS / est + 0.5);
    if (per_block < 1) per_block = 1;
    double cpu[BLOCKS], wall[BLOCKS];
    for (int b = 0; b < BLOCKS; b++) {
        double c0 = cpu_seconds(), w0 = nnrt_now();
        for (int i = 0; i < per_block; i++)
            call_once(c);
        cpu[b] = (cpu_seconds() - c0) / per_block;
        wall[b] = (nnrt_now() - w0) / per_block;
    }
    *cpu_per_call = median(cpu, BLOCKS);
    *wall_per_call = median(wall, BLOCKS);
}

static void report(const BenchModel *m, const char *mode, int rep, int batch, double cpu,
                   double wall) {
    printf("{\"model\":\"%s\",\"backend\":\"%s\",\"mode\":\"%s\",\"rep\":%d,\"batch\":%d,"
           "\"cpu\":%.9g,\"wall\":%.9g}\n",
           m->name, m->backend, mode, rep, batch, cpu, wall);
    fflush(stdout);
}

/* W6: STEPS train steps of max_batch samples, one f32 batch buffer converted from the bytes. */
static void train_frugal(BenchModel *m, const Data *d, int steps) {
    int b = m->max_batch;
    void *x = malloc(4 * (size_t)(b * d->x_size));
    int32_t *y = malloc(4 * (size_t)(b * d->y_size));
    if (m->init(m, 1)) fail("%s", "init failed");
    double w0 = nnrt_now(), c0 = cpu_seconds();
    for (int s = 0; s < steps; s++) {
        make_batch(d, (int64_t)s * b, b, x, y);
        float loss;
        int rc = m->train_step(m, b, x, y, &loss);
        if (rc) fail("the compiled code returned %s", nnrt_strerror(rc));
    }
    report(m, "mem", 0, b, (cpu_seconds() - c0) / steps, (nnrt_now() - w0) / steps);
    free(x);
    free(y);
}

int main(int argc, char **argv) {
    const char *model_path = NULL, *dir = "/usr/share/datasets/fashion-mnist";
    const char *text = "/usr/share/common-licenses/GPL-3";
    int reps = 1, first_mode = argc;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--model") && i + 1 < argc)
            model_path = argv[++i];
        else if (!strcmp(argv[i], "--data") && i + 1 < argc)
            dir = argv[++i];
        else if (!strcmp(argv[i], "--text") && i + 1 < argc)
            text = argv[++i];
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else {
            first_mode = i;
            break;
        }
    }
    BenchModel m = {0};
    if (bench_model_open(&m, model_path)) fail("%s", "cannot open the model (see stderr)");
    printf("{\"model\":\"%s\",\"backend\":\"%s\",\"blas\":\"%s\",\"max_batch\":%d}\n", m.name,
           m.backend, nnrt_blas_core(), m.max_batch);
    Data d = {0};
    Ring full = {0}, one = {0};
    float *out = malloc(sizeof *out * (size_t)(m.max_batch * (m.out_size ? m.out_size : 1)));
    for (int a = first_mode; a < argc; a++) {
        const char *mode = argv[a];
        if (!strcmp(mode, "compile")) {
            report(&m, "compile", 0, 0, m.compile_cpu_seconds, m.compile_seconds);
            continue;
        }
        if (!d.n) { /* the data is loaded by the first mode that needs it */
            if (m.x_is_i32)
                load_text(&d, text, m.x_size);
            else
                load_images(&d, dir);
            if (d.x_size != m.x_size || d.y_size != m.y_size)
                fail("%s", "the data does not fit the model");
        }
        if (!strncmp(mode, "mem=", 4)) {
            train_frugal(&m, &d, atoi(mode + 4));
            continue;
        }
        int train = !strcmp(mode, "train"), batch1 = !strcmp(mode, "infer1");
        if (!train && !batch1 && strcmp(mode, "infer")) fail("unknown mode %s", mode);
        Ring *ring = batch1 ? &one : &full;
        if (!ring->count) ring_fill(ring, &d, batch1 ? 1 : m.max_batch);
        for (int r = 0; r < reps; r++) {
            if (m.init(&m, (uint64_t)(r + 1))) fail("%s", "init failed");
            Call c = {&m, ring, train, 0, out};
            double cpu, wall;
            time_calls(&c, &cpu, &wall);
            report(&m, mode, r, ring->batch, cpu, wall);
        }
    }
    return 0;
}
