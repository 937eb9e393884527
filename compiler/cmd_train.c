/* cmd_train.c — dataset-mode training and evaluation: data sources, the epoch loop, validation,
 * metrics, progress, checkpoints and resume, early stopping, CSV logs and SVG curves, and the
 * learning-rate range test. (Array mode, `--input ... --steps K`, lives in cmd_run.c.)
 *
 * Reproducibility: the shuffle order of epoch e is a function of (seed, e) only, dropout
 * draws are a function of (seed, step), and checkpoints hold the step, so a run of 4 epochs
 * equals 2 epochs + --resume + 2 epochs bit for bit. */
#include "nnc.h"
#include "nnrt.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---------------------------------------------------------------- datasets */

/* One split: n samples of the model's input (x) and label (y), row-major; y values and x values
 * are 4 bytes (f32 or i32), except x of image data, kept as the file's bytes (Dataset.x_lut). */
typedef struct Split {
    int64_t n;
    void *x, *y;
} Split;

typedef struct Dataset {
    const char *name;                 /* for messages */
    DType x_dtype, y_dtype;
    int64_t x_per, y_per;             /* values per sample */
    bool has_y;
    Split train, val, test;
    bool has_test;                    /* a real test split (else carved from the training data) */
    /* x of IDX images stays u8 (a quarter of the memory of f32: 47 MB for Fashion-MNIST's
     * training split instead of 188); a batch converts it through this table: byte b is the
     * f32 value x_lut[b] (b / 255, then preprocessing). */
    bool x_u8;
    float x_lut[256];
    /* Fashion-MNIST's test images are read when the test pass needs them (dataset_test_x),
     * after the training splits are freed: 7.8 MB less during training. */
    char test_images[1024];
} Dataset;

static int64_t x_bytes(const Dataset *d) { return d->x_per * (d->x_u8 ? 1 : 4); } /* per sample */

static void split_free(Split *s) {
    free(s->x);
    free(s->y);
    memset(s, 0, sizeof *s);
}

static void dataset_free(Dataset *d) {
    split_free(&d->train);
    split_free(&d->val);
    split_free(&d->test);
}

/* Copies rows [from, from+count) of src into a new split. */
static Split split_rows(const Dataset *d, const Split *src, int64_t from, int64_t count) {
    Split s = {.n = count};
    s.x = malloc((size_t)(count * x_bytes(d) + 4));
    memcpy(s.x, (char *)src->x + from * x_bytes(d), (size_t)(count * x_bytes(d)));
    if (d->has_y) {
        s.y = malloc((size_t)(count * d->y_per + 1) * 4);
        memcpy(s.y, (char *)src->y + from * d->y_per * 4, (size_t)(count * d->y_per) * 4);
    }
    return s;
}

/* IDX images (u8, kept as bytes, read through x_lut: b / 255 until preprocessing) into out;
 * with out->n already set (by its labels), the count must match. */
static bool load_idx_images(Dataset *d, const char *images, Split *out) {
    nnrt_array img = {0};
    nnrt_error e = {{0}};
    if (nnrt_idx_load(images, &img, &e)) {
        fprintf(stderr, "nnc: error: %s\n", e.msg);
        return false;
    }
    int64_t per = img.rank > 0 && img.shape[0] ? img.numel / img.shape[0] : 0;
    if (img.dtype != NNRT_U8 || per != d->x_per) {
        fprintf(stderr, "nnc: error: %s: samples have %" PRId64 " values, the model's input takes %" PRId64 "\n",
                images, per, d->x_per);
        nnrt_array_free(&img);
        return false;
    }
    if (d->x_dtype != DT_F32) {
        fprintf(stderr, "nnc: error: %s: image data needs an f32 input\n", images);
        nnrt_array_free(&img);
        return false;
    }
    if (out->n && out->n != img.shape[0]) {
        fprintf(stderr, "nnc: error: %s: %" PRId64 " images for %" PRId64 " labels\n", images, img.shape[0], out->n);
        nnrt_array_free(&img);
        return false;
    }
    out->n = img.shape[0];
    out->x = img.data; /* the split owns the bytes */
    img.data = NULL;
    if (!d->x_u8)
        for (int b = 0; b < 256; b++) d->x_lut[b] = (float)b / 255.0f;
    d->x_u8 = true;
    return true;
}

/* IDX labels (u8) as i32 classes into out (out->n: the images' count, or 0: set it). */
static bool load_idx_labels(Dataset *d, const char *labels, Split *out) {
    nnrt_array lab = {0};
    nnrt_error e = {{0}};
    if (nnrt_idx_load(labels, &lab, &e)) {
        fprintf(stderr, "nnc: error: %s\n", e.msg);
        return false;
    }
    if ((out->n && lab.numel != out->n) || d->y_per != 1 || d->y_dtype != DT_I32) {
        fprintf(stderr, "nnc: error: %s: %" PRId64 " labels for %" PRId64 " images (the model's label takes %" PRId64 " %s values per sample)\n",
                labels, lab.numel, out->n, d->y_per, dtype_names[d->y_dtype]);
        nnrt_array_free(&lab);
        return false;
    }
    int32_t *y = malloc((size_t)(lab.numel + 1) * sizeof *y);
    for (int64_t i = 0; i < lab.numel; i++) y[i] = ((uint8_t *)lab.data)[i];
    out->n = lab.numel;
    out->y = y;
    nnrt_array_free(&lab);
    return true;
}

static bool load_idx_pair(Dataset *d, const char *images, const char *labels, Split *out) {
    return load_idx_images(d, images, out) && (!d->has_y || load_idx_labels(d, labels, out));
}

/* The test split's images, when they were deferred: the training and validation splits are
 * freed first (the test pass is the last use of the data). */
static bool dataset_test_x(Dataset *d) {
    if (d->test.x || !d->test_images[0]) return true;
    split_free(&d->train);
    split_free(&d->val);
    return load_idx_images(d, d->test_images, &d->test);
}

static const char *fashion_dir(void) {
    const char *env = getenv("NNC_DATA");
    return env && *env ? env : "/usr/share/datasets/fashion-mnist";
}

static bool load_fashion(Dataset *d) {
    static const char *const names[4] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};
    char paths[4][1024];
    for (int i = 0; i < 4; i++) {
        snprintf(paths[i], sizeof paths[i], "%s/%s.gz", fashion_dir(), names[i]);
        if (access(paths[i], R_OK)) snprintf(paths[i], sizeof paths[i], "%s/%s", fashion_dir(), names[i]);
        if (access(paths[i], R_OK)) {
            fprintf(stderr, "nnc: error: Fashion-MNIST file '%s(.gz)' not found in %s\n"
                            "nnc: note: install Debian's dataset-fashion-mnist (make deps) or set NNC_DATA\n",
                    names[i], fashion_dir());
            return false;
        }
    }
    d->has_test = true;
    if (!load_idx_pair(d, paths[0], paths[1], &d->train)) return false;
    if (!d->has_y) return load_idx_images(d, paths[2], &d->test);
    /* the test labels now (their count is in the banner), the images for the test pass */
    snprintf(d->test_images, sizeof d->test_images, "%s", paths[2]);
    return load_idx_labels(d, paths[3], &d->test);
}

static bool load_npy_pair(Dataset *d, const char *xpath, const char *ypath) {
    nnrt_array xa = {0}, ya = {0};
    nnrt_error e = {{0}};
    bool ok = false;
    if (nnrt_npy_load(xpath, &xa, &e)) goto fail;
    if (d->has_y && (!ypath || nnrt_npy_load(ypath, &ya, &e))) {
        if (!ypath) snprintf(e.msg, sizeof e.msg, "npy(...) needs y= for the model's label");
        goto fail;
    }
    int64_t n = xa.rank ? xa.shape[0] : 0;
    if (n <= 0 || xa.numel != n * d->x_per || xa.dtype != (d->x_dtype == DT_I32 ? NNRT_I32 : NNRT_F32)) {
        snprintf(e.msg, sizeof e.msg, "%s: expected %s samples of %" PRId64 " values, got %s data with %" PRId64 " values in %" PRId64 " rows",
                 xpath, dtype_names[d->x_dtype], d->x_per, nnrt_dtype_name(xa.dtype), xa.numel, n);
        goto fail;
    }
    if (d->has_y && (ya.numel != n * d->y_per || ya.dtype != (d->y_dtype == DT_I32 ? NNRT_I32 : NNRT_F32))) {
        snprintf(e.msg, sizeof e.msg, "%s: expected %" PRId64 " %s labels (%" PRId64 " per sample), got %" PRId64 " %s values",
                 ypath, n * d->y_per, dtype_names[d->y_dtype], d->y_per, ya.numel, nnrt_dtype_name(ya.dtype));
        goto fail;
    }
    d->train.n = n;
    d->train.x = xa.data;
    xa.data = NULL;
    if (d->has_y) {
        d->train.y = ya.data;
        ya.data = NULL;
    }
    ok = true;
fail:
    if (!ok) fprintf(stderr, "nnc: error: %s\n", e.msg);
    nnrt_array_free(&xa);
    nnrt_array_free(&ya);
    return ok;
}

/* CSV: numeric cells; the label column (by header name or 0-based index) becomes y, the
 * others x in column order. */
static bool load_csv(Dataset *d, const DataSpec *spec) {
    FILE *fp = fopen(spec->path, "r");
    if (!fp) {
        fprintf(stderr, "nnc: error: cannot read '%s': %s\n", spec->path, strerror(errno));
        return false;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int64_t row = 0, label_col = -1, ncols = -1, n = 0, cap_rows = 0;
    float *x = NULL;
    int32_t *yi = NULL;
    float *yf = NULL;
    bool ok = true;
    if (spec->label_column) {
        char *end;
        long v = strtol(spec->label_column, &end, 10);
        if (!*end) label_col = v;
    }
    while (ok && (len = getline(&line, &cap, fp)) != -1) {
        row++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        if (len == 0) continue;
        int64_t cols = 1;
        for (char *p = line; *p; p++) cols += *p == ',';
        if (row == 1 && spec->header) {
            char *save = NULL, *tok = strtok_r(line, ",", &save);
            for (int64_t c = 0; tok; c++, tok = strtok_r(NULL, ",", &save))
                if (spec->label_column && !strcmp(tok, spec->label_column)) label_col = c;
            ncols = cols;
            continue;
        }
        if (ncols < 0) ncols = cols;
        if (cols != ncols) {
            fprintf(stderr, "%s:%" PRId64 ": error: %" PRId64 " columns, expected %" PRId64 "\n", spec->path, row, cols, ncols);
            ok = false;
            break;
        }
        if (d->has_y && (label_col < 0 || label_col >= ncols)) {
            fprintf(stderr, "%s: error: label column '%s' not found\n", spec->path, spec->label_column ? spec->label_column : "(none given)");
            ok = false;
            break;
        }
        int64_t nx = ncols - (d->has_y ? 1 : 0);
        if (nx != d->x_per) {
            fprintf(stderr, "%s:%" PRId64 ": error: %" PRId64 " feature columns, the model's input takes %" PRId64 "\n", spec->path, row, nx, d->x_per);
            ok = false;
            break;
        }
        if (n == cap_rows) {
            cap_rows = cap_rows ? 2 * cap_rows : 1024;
            x = realloc(x, (size_t)(cap_rows * d->x_per) * sizeof *x);
            yi = realloc(yi, (size_t)cap_rows * sizeof *yi);
            yf = realloc(yf, (size_t)cap_rows * sizeof *yf);
        }
        char *p = line;
        int64_t xc = 0;
        for (int64_t c = 0; c < ncols; c++) {
            char *end;
            errno = 0;
            double v = strtod(p, &end);
            while (end > p && isspace((unsigned char)end[-1])) end--;
            const char *after = end;
            while (*after == ' ' || *after == '\t') after++;
            if (end == p || errno == ERANGE || (*after != ',' && *after != '\0') || !isfinite(v)) {
                fprintf(stderr, "%s:%" PRId64 ":%" PRId64 ": error: cell %" PRId64 " is not a finite number: '%.*s'\n",
                        spec->path, row, (int64_t)(p - line) + 1, c + 1, (int)strcspn(p, ","), p);
                ok = false;
                break;
            }
            if (c == label_col && d->has_y) {
                if (d->y_dtype == DT_I32 && (v != floor(v) || v < 0 || v > INT32_MAX)) {
                    fprintf(stderr, "%s:%" PRId64 ": error: label '%g' is not a class index\n", spec->path, row, v);
                    ok = false;
                    break;
                }
                yi[n] = (int32_t)v;
                yf[n] = (float)v;
            } else {
                x[n * d->x_per + xc++] = (float)v;
            }
            p = (char *)after + (*after == ',');
        }
        n++;
    }
    free(line);
    fclose(fp);
    if (ok && n == 0) {
        fprintf(stderr, "%s: error: no data rows\n", spec->path);
        ok = false;
    }
    if (ok && d->y_per != 1 && d->has_y) {
        fprintf(stderr, "%s: error: CSV labels are one value per row; the model's label takes %" PRId64 "\n", spec->path, d->y_per);
        ok = false;
    }
    if (!ok) {
        free(x);
        free(yi);
        free(yf);
        return false;
    }
    d->train.n = n;
    d->train.x = x;
    if (d->y_dtype == DT_I32) {
        d->train.y = yi;
        free(yf);
    } else {
        d->train.y = yf;
        free(yi);
    }
    return true;
}

/* Text for next-character models: bytes as i32 tokens. The last 10% of the bytes are the test
 * split, cut into disjoint windows; training windows of T bytes start every `stride` bytes of
 * the rest (stride < T overlaps them: more sequences per epoch from the same text), and a
 * window's label is the same window shifted by one byte. */
static bool load_text(Dataset *d, const DataSpec *spec) {
    FILE *fp = fopen(spec->path, "rb");
    if (!fp) {
        fprintf(stderr, "nnc: error: cannot read '%s': %s\n", spec->path, strerror(errno));
        return false;
    }
    fseek(fp, 0, SEEK_END);
    long size = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *bytes = malloc((size_t)(size > 0 ? size : 0) + 1);
    bool ok = size >= 0 && fread(bytes, 1, (size_t)size, fp) == (size_t)size;
    fclose(fp);
    int64_t T = d->x_per;
    if (!ok || d->x_dtype != DT_I32 || (d->has_y && (d->y_per != T || d->y_dtype != DT_I32))) {
        fprintf(stderr, "nnc: error: text(...) needs an i32[batch, T] input and an i32[batch, T] label (%s)\n", spec->path);
        free(bytes);
        return false;
    }
    int64_t stride = spec->stride > 0 ? spec->stride : T;
    int64_t test_bytes = (int64_t)size / 10, train_bytes = (int64_t)size - test_bytes;
    /* windows need T + 1 bytes (the label reads one ahead) */
    int64_t n_train = train_bytes >= T + 1 ? (train_bytes - T - 1) / stride + 1 : 0;
    int64_t n_test = test_bytes >= T + 1 ? (test_bytes - 1) / T : 0;
    if (n_train < 1 || n_test < 1) {
        fprintf(stderr, "nnc: error: %s: %ld bytes are too few for sequences of %" PRId64 " (the last 10%% is the test split)\n",
                spec->path, size, T);
        free(bytes);
        return false;
    }
    Split *splits[2] = {&d->train, &d->test};
    int64_t counts[2] = {n_train, n_test}, steps[2] = {stride, T}, starts[2] = {0, train_bytes};
    for (int k = 0; k < 2; k++) {
        int64_t n = counts[k];
        int32_t *x = malloc((size_t)(n * T) * sizeof *x), *y = malloc((size_t)(n * T) * sizeof *y);
        for (int64_t i = 0; i < n; i++)
            for (int64_t t = 0; t < T; t++) {
                int64_t at = starts[k] + i * steps[k] + t;
                x[i * T + t] = bytes[at];
                y[i * T + t] = bytes[at + 1];
            }
        *splits[k] = (Split){.n = n, .x = x, .y = y};
    }
    d->has_test = true;
    free(bytes);
    return true;
}

/* Standardize (x - mean) / std or normalize to [0, 1] with statistics of the training split. */
static void preprocess(Dataset *d, int how) {
    if (!how || d->x_dtype != DT_F32) return;
    const float *xf = d->train.x;
    const uint8_t *xb = d->train.x;
    int64_t count = d->train.n * d->x_per;
#define X_AT(i) (d->x_u8 ? d->x_lut[xb[i]] : xf[i])
    double a = 0, b = 0;
    if (how == 1) {
        double sum = 0, sq = 0;
        for (int64_t i = 0; i < count; i++) sum += X_AT(i), sq += (double)X_AT(i) * X_AT(i);
        double mean = sum / (double)count, var = sq / (double)count - mean * mean;
        a = mean;
        b = var > 1e-12 ? sqrt(var) : 1;
    } else {
        double lo = INFINITY, hi = -INFINITY;
        for (int64_t i = 0; i < count; i++) lo = fmin(lo, X_AT(i)), hi = fmax(hi, X_AT(i));
        a = lo;
        b = hi > lo ? hi - lo : 1;
    }
#undef X_AT
    if (d->x_u8) { /* the same map, applied to the 256 values a byte can take */
        for (int v = 0; v < 256; v++) d->x_lut[v] = (float)((d->x_lut[v] - a) / b);
        return;
    }
    Split *splits[3] = {&d->train, &d->val, &d->test};
    for (int s = 0; s < 3; s++) {
        float *v = splits[s]->x;
        for (int64_t i = 0; v && i < splits[s]->n * d->x_per; i++) v[i] = (float)((v[i] - a) / b);
    }
}

/* Loads the data source into train/val/test splits shaped for model m. */
static bool dataset_load(Dataset *d, Module *m, const DataSpec *spec, double validation) {
    memset(d, 0, sizeof *d);
    Func *f = module_find_func(m, "evaluate");
    int ninputs = 0, nlabels = 0;
    for (int i = 0; f && i < f->nargs; i++) {
        const FuncArg *a = &f->args[i];
        int64_t per = 1;
        for (int k = 0; k < a->shape.rank; k++) per *= a->shape.dim[k];
        if (a->role == ARG_LABEL) {
            d->y_dtype = a->dtype, d->y_per = per, nlabels++;
        } else {
            d->x_dtype = a->dtype, d->x_per = per, ninputs++;
        }
    }
    if (ninputs != 1 || nlabels > 1) {
        fprintf(stderr, "nnc: error: training from a data source needs a model with one input and at most one label ('%s' has %d and %d); use array mode (--input NAME=F.npy)\n",
                m->name, ninputs, nlabels);
        return false;
    }
    d->has_y = nlabels == 1;
    bool ok = false;
    switch (spec->kind) {
    case DATA_FASHION_MNIST: d->name = "fashion_mnist", ok = load_fashion(d); break;
    case DATA_IDX: d->name = spec->images, ok = load_idx_pair(d, spec->images, spec->labels, &d->train); break;
    case DATA_NPY: d->name = spec->x, ok = load_npy_pair(d, spec->x, spec->y); break;
    case DATA_CSV: d->name = spec->path, ok = load_csv(d, spec); break;
    case DATA_TEXT: d->name = spec->path, ok = load_text(d, spec); break;
    case DATA_NONE:
        fprintf(stderr, "nnc: error: no training data: give `data = ...` in the train block of '%s' or --data\n", m->name);
        return false;
    }
    if (!ok) {
        dataset_free(d);
        return false;
    }
    if (!d->has_test) {
        /* no test split of its own: the last 10% of the samples */
        int64_t nt = d->train.n / 10 > 0 ? d->train.n / 10 : 1;
        Split all = d->train;
        d->test = split_rows(d, &all, all.n - nt, nt);
        d->train = split_rows(d, &all, 0, all.n - nt);
        split_free(&all);
    }
    if (validation > 0) {
        int64_t nv = (int64_t)((double)d->train.n * validation + 0.5);
        if (nv < 1 || nv >= d->train.n) {
            fprintf(stderr, "nnc: error: validation = %g leaves no training or no validation samples\n", validation);
            dataset_free(d);
            return false;
        }
        Split all = d->train;
        d->val = split_rows(d, &all, all.n - nv, nv);
        d->train = split_rows(d, &all, 0, all.n - nv);
        split_free(&all);
    }
    return true;
}

/* ---------------------------------------------------------------- metrics */

enum { MAX_METRICS = 16 };

typedef struct Scores {
    int count;                       /* loss + metrics */
    const char *names[MAX_METRICS];  /* "loss", "accuracy", ... */
    double values[MAX_METRICS];
} Scores;

/* Names of the scalar outputs of f (loss first), in output order. */
static void scores_names(Func *f, Scores *s) {
    s->count = 0;
    for (int o = 0; o < f->nouts && s->count < MAX_METRICS; o++) {
        const Node *v = &f->nodes[f->outs[o].value];
        if ((f->outs[o].role == OUT_LOSS || f->outs[o].role == OUT_METRIC) && v->shape.rank == 0)
            s->names[s->count++] = f->outs[o].name;
    }
}

/* ---------------------------------------------------------------- batches */

typedef struct Batcher {
    const Dataset *d;
    void *x, *y;
    int64_t cap;
} Batcher;

static void batcher_init(Batcher *b, const Dataset *d, int64_t cap) {
    b->d = d;
    b->cap = cap;
    b->x = malloc((size_t)(cap * d->x_per + 1) * 4);
    b->y = malloc((size_t)(cap * (d->has_y ? d->y_per : 1) + 1) * 4);
}

static void batcher_free(Batcher *b) {
    free(b->x);
    free(b->y);
}

/* Gathers rows order[first..first+count) of split s. */
static void batcher_fill(Batcher *b, const Split *s, const int64_t *order, int64_t first, int64_t count) {
    const Dataset *d = b->d;
    for (int64_t r = 0; r < count; r++) {
        int64_t i = order ? order[first + r] : first + r;
        if (d->x_u8) {
            float *dst = (float *)b->x + r * d->x_per;
            const uint8_t *src = (const uint8_t *)s->x + i * d->x_per;
            for (int64_t k = 0; k < d->x_per; k++) dst[k] = d->x_lut[src[k]];
        } else {
            memcpy((char *)b->x + r * d->x_per * 4, (char *)s->x + i * d->x_per * 4, (size_t)d->x_per * 4);
        }
        if (d->has_y)
            memcpy((char *)b->y + r * d->y_per * 4, (char *)s->y + i * d->y_per * 4, (size_t)d->y_per * 4);
    }
}

/* Runs fn (evaluate or train_step) on a filled batch; fills the scalar outputs into vals
 * (in scores_names order). */
static int run_batch_outs(Exec *e, Func *f, Batcher *b, int64_t n, double *vals, double *lr, void **batch_outs,
                          char *err, size_t errlen) {
    void *bufs[64];
    float scalars[64];
    int nargs = 0;
    for (int i = 0; i < f->nargs && i < 2; i++) bufs[nargs++] = f->args[i].role == ARG_LABEL ? b->y : b->x;
    for (int o = 0; o < f->nouts && nargs + o < 64; o++)
        bufs[nargs + o] = f->nodes[f->outs[o].value].shape.rank == 0 ? (void *)&scalars[o]
                          : batch_outs                              ? batch_outs[o]
                                                                    : NULL;
    int rc = exec_call(e, f->name, (int)n, bufs, err, errlen);
    if (rc) return rc;
    int k = 0;
    for (int o = 0; o < f->nouts && k < MAX_METRICS; o++) {
        const Node *v = &f->nodes[f->outs[o].value];
        if ((f->outs[o].role == OUT_LOSS || f->outs[o].role == OUT_METRIC) && v->shape.rank == 0)
            vals[k++] = scalars[o];
        if (lr && f->outs[o].role == OUT_EXTRA && !strcmp(f->outs[o].name, "lr")) *lr = scalars[o];
    }
    return 0;
}

static int run_batch(Exec *e, Func *f, Batcher *b, int64_t n, double *vals, double *lr, char *err, size_t errlen) {
    return run_batch_outs(e, f, b, n, vals, lr, NULL, err, errlen);
}

/* ---------------------------------------------------------------- metrics the driver computes */

/* precision, recall, f1 (macro averages over classes, as sklearn's average='macro' with
 * zero_division=0), the confusion matrix (rows: true class, columns: predicted), and the
 * binary ROC AUC (Mann-Whitney: the probability that a positive outranks a negative, ties
 * counting one half) over a whole split, from evaluate's per-sample metric outputs. */
typedef struct DriverMetric {
    int out;                 /* output index in evaluate */
    MetricInfo mi;
    void *pred;              /* one batch of predictions (i32) or scores (f32) */
    int64_t *confusion;      /* classes x classes */
    float *scores;           /* auc: every score and label of the split */
    int32_t *labels;
    int64_t count;
} DriverMetric;

enum { MAX_DRIVER_METRICS = 8 };

static int driver_metrics_init(Func *f, int64_t batch, int64_t n, DriverMetric *dm) {
    int k = 0;
    for (int o = 0; o < f->nouts && k < MAX_DRIVER_METRICS; o++) {
        MetricInfo mi;
        if (f->outs[o].role != OUT_METRIC || !metric_info(f, o, &mi)) continue;
        DriverMetric *m = &dm[k++];
        memset(m, 0, sizeof *m);
        m->out = o;
        m->mi = mi;
        m->pred = calloc((size_t)batch + 1, 4);
        if (!strcmp(mi.kind, "auc")) {
            m->scores = calloc((size_t)n + 1, sizeof *m->scores);
            m->labels = calloc((size_t)n + 1, sizeof *m->labels);
        } else {
            m->confusion = calloc((size_t)(mi.classes * mi.classes) + 1, sizeof *m->confusion);
        }
    }
    return k;
}

static void driver_metrics_add(DriverMetric *dm, int k, const int32_t *y, int64_t n) {
    for (int i = 0; i < k; i++) {
        DriverMetric *m = &dm[i];
        for (int64_t r = 0; r < n; r++) {
            if (m->scores) {
                m->scores[m->count] = ((const float *)m->pred)[r];
                m->labels[m->count++] = y[r];
            } else {
                int32_t t = y[r], p = ((const int32_t *)m->pred)[r];
                if (t >= 0 && t < m->mi.classes && p >= 0 && p < m->mi.classes) m->confusion[t * m->mi.classes + p]++;
            }
        }
    }
}

static int compare_score(const void *a, const void *b) {
    float x = ((const float *)a)[0], y = ((const float *)b)[0];
    return x < y ? -1 : x > y;
}

static double driver_metric_value(const DriverMetric *m) {
    if (m->scores) {
        /* rank-sum AUC with average ranks for ties */
        float (*pairs)[2] = malloc((size_t)(m->count + 1) * sizeof *pairs);
        for (int64_t i = 0; i < m->count; i++) pairs[i][0] = m->scores[i], pairs[i][1] = (float)(m->labels[i] > 0);
        qsort(pairs, (size_t)m->count, sizeof *pairs, compare_score);
        double rank_sum = 0, pos = 0;
        for (int64_t i = 0; i < m->count;) {
            int64_t j = i;
            while (j < m->count && pairs[j][0] == pairs[i][0]) j++;
            double avg = (double)(i + j + 1) / 2; /* ranks i+1 .. j */
            for (int64_t q = i; q < j; q++)
                if (pairs[q][1] > 0) rank_sum += avg, pos++;
            i = j;
        }
        free(pairs);
        double neg = (double)m->count - pos;
        return pos > 0 && neg > 0 ? (rank_sum - pos * (pos + 1) / 2) / (pos * neg) : NAN;
    }
    int64_t C = m->mi.classes;
    double total = 0;
    for (int64_t c = 0; c < C; c++) {
        double tp = (double)m->confusion[c * C + c], pred = 0, actual = 0;
        for (int64_t q = 0; q < C; q++) pred += (double)m->confusion[q * C + c], actual += (double)m->confusion[c * C + q];
        double precision = pred > 0 ? tp / pred : 0, recall = actual > 0 ? tp / actual : 0;
        double f1 = precision + recall > 0 ? 2 * precision * recall / (precision + recall) : 0;
        total += !strcmp(m->mi.kind, "precision") ? precision : !strcmp(m->mi.kind, "recall") ? recall : f1;
    }
    return C > 0 ? total / (double)C : NAN;
}

static void print_confusion(const DriverMetric *m) {
    int64_t C = m->mi.classes;
    printf("confusion matrix (rows: true class, columns: predicted class):\n      ");
    for (int64_t c = 0; c < C; c++) printf(" %6" PRId64, c);
    printf("\n");
    for (int64_t t = 0; t < C; t++) {
        printf("%6" PRId64, t);
        for (int64_t c = 0; c < C; c++) printf(" %6" PRId64, m->confusion[t * C + c]);
        printf("\n");
    }
}

static void driver_metrics_free(DriverMetric *dm, int k) {
    for (int i = 0; i < k; i++) {
        free(dm[i].pred);
        free(dm[i].confusion);
        free(dm[i].scores);
        free(dm[i].labels);
    }
}

/* Mean of evaluate's scalars over a whole split (weighted by batch size), then the metrics
 * the driver computes over the whole split (f1, auc, ...); with print_confusion, confusion
 * matrices are printed. */
static int evaluate_split(Exec *e, Func *f, const Dataset *d, const Split *s, int64_t batch, Scores *out,
                          bool show_confusion) {
    scores_names(f, out);
    memset(out->values, 0, sizeof out->values);
    DriverMetric dm[MAX_DRIVER_METRICS];
    int ndm = d->has_y && d->y_dtype == DT_I32 && d->y_per == 1 ? driver_metrics_init(f, batch, s->n, dm) : 0;
    void *outs[64] = {0};
    for (int i = 0; i < ndm; i++) outs[dm[i].out] = dm[i].pred;
    Batcher b;
    batcher_init(&b, d, batch);
    int rc = 0;
    for (int64_t first = 0; first < s->n; first += batch) {
        int64_t n = s->n - first < batch ? s->n - first : batch;
        batcher_fill(&b, s, NULL, first, n);
        double vals[MAX_METRICS];
        char err[512];
        rc = run_batch_outs(e, f, &b, n, vals, NULL, outs, err, sizeof err);
        if (rc) {
            fprintf(stderr, "nnc: error: evaluation failed: %s\n", err);
            break;
        }
        for (int k = 0; k < out->count; k++) out->values[k] += vals[k] * (double)n / (double)s->n;
        driver_metrics_add(dm, ndm, b.y, n);
    }
    for (int i = 0; !rc && i < ndm; i++) {
        if (!strcmp(dm[i].mi.kind, "confusion")) {
            if (show_confusion) print_confusion(&dm[i]);
        } else if (out->count < MAX_METRICS) {
            out->names[out->count] = f->outs[dm[i].out].name;
            out->values[out->count++] = driver_metric_value(&dm[i]);
        }
    }
    driver_metrics_free(dm, ndm);
    batcher_free(&b);
    return rc;
}

static void format_scores(char *buf, size_t len, const char *prefix, const Scores *s) {
    size_t used = 0;
    buf[0] = '\0';
    for (int k = 0; k < s->count && used < len; k++)
        used += (size_t)snprintf(buf + used, len - used, "%s%s%s=%.6g", used ? " " : "", prefix, s->names[k], s->values[k]);
}

/* ---------------------------------------------------------------- progress, logs, plots */

typedef struct History {
    int epochs;
    double train_loss[4096], val_loss[4096], train_metric[4096], val_metric[4096];
    const char *metric_name;
} History;

static void progress_bar(int64_t epoch, int64_t epochs, int64_t done, int64_t total, double loss, double t0) {
    double el = nnrt_now() - t0, rate = el > 0 ? (double)done / el : 0;
    double eta = rate > 0 ? (double)(total - done) / rate : 0;
    int width = 28, fill = total ? (int)(width * done / total) : width;
    char bar[64];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '=' : i == fill ? '>' : ' ';
    bar[width] = '\0';
    fprintf(stderr, "\r\033[Kepoch %" PRId64 "/%" PRId64 " [%s] %" PRId64 "/%" PRId64 " loss %.4f  %.0f samples/s  ETA %.0fs",
            epoch, epochs, bar, done, total, loss, rate, eta);
}

static void write_svg(const char *path, const History *h) {
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *fp = fopen(tmp, "w");
    if (!fp) {
        fprintf(stderr, "nnc: warning: cannot write '%s': %s\n", path, strerror(errno));
        return;
    }
    const int W = 420, H = 300, pad = 45;
    fprintf(fp, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"11\">\n", 2 * W, H);
    for (int panel = 0; panel < 2; panel++) {
        const double *tr = panel ? h->train_metric : h->train_loss, *va = panel ? h->val_metric : h->val_loss;
        const char *title = panel ? (h->metric_name ? h->metric_name : "metric") : "loss";
        if (panel && !h->metric_name) break;
        double lo = INFINITY, hi = -INFINITY;
        for (int i = 0; i < h->epochs; i++) {
            if (isfinite(tr[i])) lo = fmin(lo, tr[i]), hi = fmax(hi, tr[i]);
            if (isfinite(va[i])) lo = fmin(lo, va[i]), hi = fmax(hi, va[i]);
        }
        if (!(hi > lo)) hi = lo + 1;
        int ox = panel * W;
        fprintf(fp, "<text x=\"%d\" y=\"16\" font-size=\"13\">%s per epoch (blue: train, orange: validation)</text>\n", ox + pad, title);
        fprintf(fp, "<rect x=\"%d\" y=\"25\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#999\"/>\n", ox + pad, W - 2 * pad + 20, H - 25 - pad);
        fprintf(fp, "<text x=\"%d\" y=\"32\" text-anchor=\"end\">%.4g</text><text x=\"%d\" y=\"%d\" text-anchor=\"end\">%.4g</text>\n",
                ox + pad - 3, hi, ox + pad - 3, H - pad, lo);
        fprintf(fp, "<text x=\"%d\" y=\"%d\">epoch 1</text><text x=\"%d\" y=\"%d\" text-anchor=\"end\">%d</text>\n",
                ox + pad, H - pad + 14, ox + W - pad + 20, H - pad + 14, h->epochs);
        for (int series = 0; series < 2; series++) {
            const double *v = series ? va : tr;
            fprintf(fp, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", series ? "#e8710a" : "#1a73e8");
            for (int i = 0; i < h->epochs; i++) {
                if (!isfinite(v[i])) continue;
                double px = ox + pad + (h->epochs > 1 ? (double)i / (h->epochs - 1) : 0.5) * (W - 2 * pad + 20);
                double py = 25 + (1 - (v[i] - lo) / (hi - lo)) * (H - 25 - pad);
                fprintf(fp, "%.1f,%.1f ", px, py);
            }
            fprintf(fp, "\"/>\n");
        }
    }
    fprintf(fp, "</svg>\n");
    bool ok = fflush(fp) == 0 && fsync(fileno(fp)) == 0;
    ok &= fclose(fp) == 0;
    if (!ok || rename(tmp, path)) fprintf(stderr, "nnc: warning: cannot write '%s'\n", path);
}

/* ---------------------------------------------------------------- the command */

static const char train_help[] =
    "usage: nnc train FILE.nn [options]\n"
    "\n"
    "Trains a model on the data source of its train block (or --data), printing one line per\n"
    "epoch (a progress bar on a terminal) and ending with 'test: loss=<float> <metric>=...'.\n"
    "\n"
    "  --data SOURCE        fashion_mnist, or a folder holding the Fashion-MNIST IDX files\n"
    "  --epochs N           number of epochs (default: train block)\n"
    "  --batch N            minibatch size (at most the train block's batch)\n"
    "  --seed N             initialization, shuffling and dropout seed (default: train block)\n"
    "  --validation F       hold out this fraction of the training data (default: train block)\n"
    "  --lr X               peak learning rate instead of the optimizer's (the schedule scales it)\n"
    "  --lr-find            LR range test: sweep the rate, print and plot the loss, suggest a rate\n"
    "  --save W             checkpoint after every epoch and at the end (atomic)\n"
    "  --resume W           continue from a checkpoint of the same model\n"
    "  --log F.csv          per-epoch numbers as CSV\n"
    "  --plot F.svg         loss and metric curves (train and validation)\n"
    "  --quiet              only the final test line\n"
    "  --model M            the model when the file defines several\n"
    "  --interp             use the reference interpreter instead of compiled code\n"
    "\n"
    "Array mode (--input NAME=F.npy ... --steps K): see 'nnc train --input x=... --help'.\n";

typedef struct TrainArgs {
    const char *file, *model, *data, *save, *resume, *log, *plot;
    int64_t epochs, batch, seed;
    double validation, lr;
    bool interp, quiet, validation_set, lr_find;
} TrainArgs;

/* The base rate the IR schedule starts from (the optimizer's lr; sgd(lr=0.01) without a
 * train block, as optim.c documents). */
static double base_lr(const Module *m) { return m->train.present ? m->train.opt.lr : 0.01; }

/* The LR range test (Smith 2017, as popularized by fastai): from fresh weights, one step per
 * rate on a geometric sweep from 1e-7 to 10 over at most 100 steps; the loss is smoothed
 * (exponential average, beta 0.98, bias-corrected); the sweep stops once it exceeds 4x its
 * best. Suggests the rate where the smoothed loss falls fastest (steepest negative slope
 * against log lr). */
static int lr_find(Session *s, Dataset *d, int64_t batch, const char *plot) {
    enum { STEPS = 100 };
    const double lo = 1e-7, hi = 10;
    Func *step_fn = module_find_func(s->m, "train_step");
    Batcher b;
    batcher_init(&b, d, batch);
    double lrs[STEPS], losses[STEPS], avg = 0, best = INFINITY;
    int count = 0, status = 0;
    int64_t steps_per_epoch = (d->train.n + batch - 1) / batch;
    printf("lr-find: %d steps from %g to %g (batch %" PRId64 ")\n", STEPS, lo, hi, batch);
    printf("%12s %12s\n", "lr", "loss");
    for (int k = 0; k < STEPS; k++) {
        double lr = lo * pow(hi / lo, (double)k / (STEPS - 1));
        /* undo the schedule: ask for exactly lr at this step */
        set_hyper(&s->exec, "lr_scale", 1);
        int64_t first = (k % steps_per_epoch) * batch, n = d->train.n - first < batch ? d->train.n - first : batch;
        batcher_fill(&b, &d->train, NULL, first, n);
        double vals[MAX_METRICS], sched = NAN;
        char err[512];
        /* probe the scheduled rate on a copy of the state, then take the real step */
        void *saved = malloc((size_t)s->m->state_bytes + 1);
        memcpy(saved, exec_state(&s->exec), (size_t)s->m->state_bytes);
        int rc = run_batch(&s->exec, step_fn, &b, n, vals, &sched, err, sizeof err);
        memcpy(exec_state(&s->exec), saved, (size_t)s->m->state_bytes);
        exec_state_changed(&s->exec);
        free(saved);
        if (!rc) {
            set_hyper(&s->exec, "lr_scale", sched > 0 ? lr / sched : lr / base_lr(s->m));
            rc = run_batch(&s->exec, step_fn, &b, n, vals, NULL, err, sizeof err);
        }
        if (rc && rc != NNRT_ENONFINITE) {
            fprintf(stderr, "nnc train: error: lr-find step %d: %s\n", k + 1, err);
            status = 1;
            break;
        }
        if (rc == NNRT_ENONFINITE) break;
        avg = 0.98 * avg + 0.02 * vals[0];
        double smooth = avg / (1 - pow(0.98, k + 1));
        lrs[count] = lr;
        losses[count++] = smooth;
        printf("%12.4g %12.6g\n", lr, smooth);
        if (smooth < best) best = smooth;
        if (smooth > 4 * best && k > 10) break;
    }
    batcher_free(&b);
    if (status) return status;
    int pick = -1;
    double steepest = 0;
    for (int k = 1; k + 1 < count; k++) {
        double slope = (losses[k + 1] - losses[k - 1]) / (log(lrs[k + 1]) - log(lrs[k - 1]));
        if (slope < steepest) steepest = slope, pick = k;
    }
    if (pick < 0) {
        printf("lr-find: the loss never fell; try a different model or data\n");
        return 1;
    }
    printf("suggested lr: %.3g (steepest descent of the loss)\n", lrs[pick]);
    if (plot) {
        History *h = calloc(1, sizeof *h);
        h->epochs = count;
        for (int k = 0; k < count; k++) h->train_loss[k] = losses[k], h->val_loss[k] = NAN;
        write_svg(plot, h);
        free(h);
    }
    return 0;
}

static int64_t meta_int(const nnrt_st_file *f, const char *key, int64_t dflt) {
    for (int i = 0; i < f->n_meta; i++)
        if (!strcmp(f->meta_keys[i], key)) return strtoll(f->meta_values[i], NULL, 10);
    return dflt;
}

static int train_loop(TrainArgs *ta) {
    Session s;
    int64_t seed = ta->seed;
    int64_t start_epoch = 0;
    if (ta->resume) {
        nnrt_st_file ck = {0};
        nnrt_error e = {{0}};
        if (nnrt_st_read(ta->resume, &ck, &e)) {
            fprintf(stderr, "nnc train: error: %s\n", e.msg);
            return 1;
        }
        start_epoch = meta_int(&ck, "epoch", 0);
        if (seed < 0) seed = meta_int(&ck, "seed", -1);
        nnrt_st_free(&ck);
    }
    static const char *const funcs[] = {"train_step", "evaluate", NULL};
    if (session_open(&s, ta->file, ta->model, ta->interp, seed, ta->resume,
                     ta->resume ? NNRT_KINDS_ALL : NNRT_KINDS_WEIGHTS, funcs)) {
        session_close(&s);
        return 1;
    }
    Module *m = s.m;
    TrainConfig *tc = &m->train;
    int64_t epochs = ta->epochs ? ta->epochs : tc->epochs > 0 ? tc->epochs : 1;
    int64_t batch = ta->batch ? ta->batch : m->max_batch;
    if (batch > m->max_batch && !s.exec.use_interp) {
        fprintf(stderr, "nnc train: error: --batch %" PRId64 " exceeds the model's batch %" PRId64 "\n", batch, m->max_batch);
        session_close(&s);
        return 2;
    }
    DataSpec spec = tc->data;
    if (ta->data) {
        if (!strcmp(ta->data, "fashion_mnist")) {
            spec = (DataSpec){.kind = DATA_FASHION_MNIST};
        } else {
            setenv("NNC_DATA", ta->data, 1);
            spec = (DataSpec){.kind = DATA_FASHION_MNIST};
        }
    }
    Dataset d;
    if (!dataset_load(&d, m, &spec, ta->validation_set ? ta->validation : tc->validation)) {
        session_close(&s);
        return 1;
    }
    preprocess(&d, tc->preprocess);
    if (ta->lr_find) {
        int rc = lr_find(&s, &d, batch, ta->plot);
        dataset_free(&d);
        session_close(&s);
        return rc;
    }
    if (ta->lr > 0) set_hyper(&s.exec, "lr_scale", ta->lr / base_lr(m));
    Func *step_fn = module_find_func(m, "train_step"), *eval_fn = module_find_func(m, "evaluate");
    int64_t steps_per_epoch = (d.train.n + batch - 1) / batch;
    set_hyper(&s.exec, "steps_per_epoch", (double)steps_per_epoch);
    set_hyper(&s.exec, "total_steps", (double)(epochs * steps_per_epoch));
    if (!ta->quiet)
        printf("training %s on %s: %" PRId64 " train, %" PRId64 " validation, %" PRId64 " test samples; batch %" PRId64 ", %" PRId64 " epochs, %s\n",
               m->name, d.name, d.train.n, d.val.n, d.test.n, batch, epochs, s.exec.use_interp ? "interpreter" : "compiled (JIT)");
    fflush(stdout);
    FILE *log = NULL;
    if (ta->log) {
        log = fopen(ta->log, start_epoch ? "a" : "w");
        if (!log) fprintf(stderr, "nnc train: warning: cannot write '%s': %s\n", ta->log, strerror(errno));
    }
    History *hist = calloc(1, sizeof *hist);
    for (int i = 0; i < 4096; i++) hist->val_loss[i] = hist->val_metric[i] = NAN;
    Scores names;
    scores_names(step_fn, &names);
    hist->metric_name = names.count > 1 ? names.names[1] : NULL;
    int64_t *order = malloc((size_t)(d.train.n + 1) * sizeof *order);
    Batcher b;
    batcher_init(&b, &d, batch);
    bool tty = isatty(2) && !ta->quiet;
    int status = 0;
    double best = INFINITY;
    int64_t since_best = 0;
    const char *stop_on = tc->early_stop_on ? tc->early_stop_on : "val_loss";
    for (int64_t epoch = start_epoch; epoch < epochs && !status; epoch++) {
        /* the order of epoch e depends on (seed, e) only */
        for (int64_t i = 0; i < d.train.n; i++) order[i] = i;
        shuffle_order(order, d.train.n, s.exec.seed, epoch);
        double t0 = nnrt_now(), lr = NAN;
        Scores tr = names;
        memset(tr.values, 0, sizeof tr.values);
        for (int64_t k = 0; k < steps_per_epoch; k++) {
            int64_t first = k * batch, n = d.train.n - first < batch ? d.train.n - first : batch;
            batcher_fill(&b, &d.train, order, first, n);
            double vals[MAX_METRICS];
            char err[512];
            int rc = run_batch(&s.exec, step_fn, &b, n, vals, &lr, err, sizeof err);
            if (rc) {
                if (tty) fprintf(stderr, "\n");
                fprintf(stderr, "nnc train: error: epoch %" PRId64 ", step %" PRId64 ": %s%s\n", epoch + 1, k + 1, err,
                        rc == NNRT_ENONFINITE ? "; training stopped, the last checkpoint is kept" : "");
                status = 1;
                break;
            }
            for (int q = 0; q < tr.count; q++) tr.values[q] += vals[q] * (double)n / (double)d.train.n;
            if (tty && (k % 16 == 0 || k + 1 == steps_per_epoch))
                progress_bar(epoch + 1, epochs, first + n, d.train.n, tr.values[0] * (double)d.train.n / (double)(first + n), t0);
        }
        if (status) break;
        double secs = nnrt_now() - t0;
        if (tty) fprintf(stderr, "\r\033[K");
        Scores va = {0};
        if (d.val.n && evaluate_split(&s.exec, eval_fn, &d, &d.val, batch, &va, false)) {
            status = 1;
            break;
        }
        char line_tr[512], line_va[512];
        format_scores(line_tr, sizeof line_tr, "", &tr);
        format_scores(line_va, sizeof line_va, "val_", &va);
        if (!ta->quiet)
            printf("epoch %" PRId64 "/%" PRId64 ": %s%s%s lr=%.4g  %.1fs %.0f samples/s\n", epoch + 1, epochs, line_tr,
                   va.count ? " " : "", line_va, lr, secs, (double)d.train.n / secs);
        fflush(stdout);
        int e = (int)(epoch < 4096 ? epoch : 4095);
        hist->epochs = e + 1;
        hist->train_loss[e] = tr.values[0];
        hist->train_metric[e] = tr.count > 1 ? tr.values[1] : NAN;
        hist->val_loss[e] = va.count ? va.values[0] : NAN;
        hist->val_metric[e] = va.count > 1 ? va.values[1] : NAN;
        if (log) {
            if (epoch == 0) {
                fprintf(log, "epoch");
                for (int q = 0; q < tr.count; q++) fprintf(log, ",%s", tr.names[q]);
                for (int q = 0; q < va.count; q++) fprintf(log, ",val_%s", va.names[q]);
                fprintf(log, ",seconds\n");
            }
            fprintf(log, "%" PRId64, epoch + 1);
            for (int q = 0; q < tr.count; q++) fprintf(log, ",%.9g", tr.values[q]);
            for (int q = 0; q < va.count; q++) fprintf(log, ",%.9g", va.values[q]);
            fprintf(log, ",%.3f\n", secs);
            fflush(log);
        }
        if (ta->plot) write_svg(ta->plot, hist);
        if (ta->save && save_checkpoint(&s, ta->save, (epoch + 1) * steps_per_epoch, epoch + 1)) {
            status = 1;
            break;
        }
        if (tc->patience > 0 && va.count) {
            /* early stopping on a validation score: lower is better for losses, higher otherwise */
            double score = NAN;
            for (int q = 0; q < va.count; q++) {
                char key[80];
                snprintf(key, sizeof key, "val_%s", va.names[q]);
                if (!strcmp(key, stop_on)) score = va.values[q];
            }
            if (strstr(stop_on, "loss") == NULL) score = -score;
            if (score < best) best = score, since_best = 0;
            else if (++since_best >= tc->patience) {
                if (!ta->quiet) printf("early stop: %s did not improve for %" PRId64 " epochs\n", stop_on, tc->patience);
                break;
            }
        }
    }
    if (!status) {
        Scores te;
        if (!dataset_test_x(&d) || evaluate_split(&s.exec, eval_fn, &d, &d.test, batch, &te, !ta->quiet)) status = 1;
        else {
            char line[512];
            format_scores(line, sizeof line, "", &te);
            printf("test: %s\n", line);
        }
    }
    if (log) fclose(log);
    batcher_free(&b);
    free(order);
    free(hist);
    dataset_free(&d);
    session_close(&s);
    return status;
}

int train_dataset(int argc, char **argv) {
    TrainArgs ta = {.seed = -1};
    static const char *const known[] = {"--data", "--epochs", "--batch", "--seed", "--validation", "--save", "--resume",
                                        "--log", "--plot", "--quiet", "--model", "--interp", "--help", "--input", "--steps",
                                        "--lr", "--lr-find"};
    for (int i = 0; i < argc; i++) {
        const char *v = "";
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(train_help, stdout);
            return 0;
        }
        if (opt_value(argc, argv, &i, "--data", &v)) ta.data = v;
        else if (opt_value(argc, argv, &i, "--epochs", &v)) { if (v && !parse_int_arg("--epochs", v, 1, 100000, &ta.epochs)) return 2; }
        else if (opt_value(argc, argv, &i, "--batch", &v)) { if (v && !parse_int_arg("--batch", v, 1, 1 << 20, &ta.batch)) return 2; }
        else if (opt_value(argc, argv, &i, "--seed", &v)) { if (v && !parse_int_arg("--seed", v, 0, INT64_MAX, &ta.seed)) return 2; }
        else if (opt_value(argc, argv, &i, "--validation", &v)) {
            char *end = NULL;
            ta.validation = v ? strtod(v, &end) : -1;
            ta.validation_set = true;
            if (!v || *end || !(ta.validation >= 0 && ta.validation < 1)) {
                fprintf(stderr, "nnc train: error: --validation expects a fraction in [0, 1)\n");
                return 2;
            }
        }
        else if (opt_value(argc, argv, &i, "--save", &v)) ta.save = v;
        else if (opt_value(argc, argv, &i, "--resume", &v)) ta.resume = v;
        else if (opt_value(argc, argv, &i, "--log", &v)) ta.log = v;
        else if (opt_value(argc, argv, &i, "--plot", &v)) ta.plot = v;
        else if (opt_value(argc, argv, &i, "--model", &v)) ta.model = v;
        else if (!strcmp(argv[i], "--quiet")) ta.quiet = true;
        else if (!strcmp(argv[i], "--lr-find")) ta.lr_find = true;
        else if (opt_value(argc, argv, &i, "--lr", &v)) {
            char *end = NULL;
            ta.lr = v ? strtod(v, &end) : 0;
            if (!v || *end || !(ta.lr > 0) || !isfinite(ta.lr)) {
                fprintf(stderr, "nnc train: error: --lr expects a positive number\n");
                return 2;
            }
        }
        else if (!strcmp(argv[i], "--interp")) ta.interp = true;
        else if (argv[i][0] == '-' && argv[i][1]) return unknown_option("train", argv[i], known, 17);
        else if (ta.file) {
            fprintf(stderr, "nnc train: error: more than one input file ('%s' and '%s')\n", ta.file, argv[i]);
            return 2;
        } else ta.file = argv[i];
        if (!v) return 2;
    }
    if (!ta.file) {
        fprintf(stderr, "nnc train: error: no input file\n%s", train_help);
        return 2;
    }
    return train_loop(&ta);
}

/* ---------------------------------------------------------------- nnc eval */

static const char eval_help[] =
    "usage: nnc eval FILE.nn --weights W [--data SOURCE] [--model M] [--interp]\n"
    "\n"
    "Prints the loss and metrics of the test split: 'test: loss=<float> <metric>=...'.\n";

int cmd_eval(int argc, char **argv) {
    const char *file = NULL, *weights = NULL, *model = NULL, *data = NULL;
    bool interp = false;
    static const char *const known[] = {"--weights", "--data", "--model", "--interp", "--help"};
    for (int i = 0; i < argc; i++) {
        const char *v = "";
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(eval_help, stdout);
            return 0;
        }
        if (opt_value(argc, argv, &i, "--weights", &v)) weights = v;
        else if (opt_value(argc, argv, &i, "--data", &v)) data = v;
        else if (opt_value(argc, argv, &i, "--model", &v)) model = v;
        else if (!strcmp(argv[i], "--interp")) interp = true;
        else if (argv[i][0] == '-' && argv[i][1]) return unknown_option("eval", argv[i], known, 5);
        else file = argv[i];
        if (!v) return 2;
    }
    if (!file || !weights) {
        fprintf(stderr, "nnc eval: error: %s\n%s", !file ? "no input file" : "--weights is required", eval_help);
        return 2;
    }
    Session s;
    static const char *const funcs[] = {"evaluate", NULL};
    if (session_open(&s, file, model, interp, -1, weights, NNRT_KINDS_WEIGHTS, funcs)) {
        session_close(&s);
        return 1;
    }
    DataSpec spec = s.m->train.data;
    if (data) {
        if (strcmp(data, "fashion_mnist")) setenv("NNC_DATA", data, 1);
        spec = (DataSpec){.kind = DATA_FASHION_MNIST};
    }
    Dataset d;
    int status = 1;
    if (dataset_load(&d, s.m, &spec, s.m->train.validation)) { /* same splits, same statistics as training */
        preprocess(&d, s.m->train.preprocess);
        Scores te;
        if (dataset_test_x(&d) &&
            !evaluate_split(&s.exec, module_find_func(s.m, "evaluate"), &d, &d.test, s.m->max_batch, &te, true)) {
            char line[512];
            format_scores(line, sizeof line, "", &te);
            printf("test: %s\n", line);
            status = 0;
        }
        dataset_free(&d);
    }
    session_close(&s);
    return status;
}

/* ---------------------------------------------------------------- nnc sample */

static const char sample_help[] =
    "usage: nnc sample FILE.nn --weights W [--prime TEXT] [--length N] [--temperature T]\n"
    "                  [--seed N] [--model M] [--interp]\n"
    "\n"
    "Generates text from a next-character model (input i32[batch, T], output [batch, T, V]):\n"
    "feeds the last T characters, draws the next one from the output at the last position\n"
    "sharpened by the temperature (p^(1/T), renormalized), and repeats.\n"
    "\n"
    "  --prime TEXT         the text to start from (default: a space)\n"
    "  --length N           characters to generate (default 200)\n"
    "  --temperature T      > 0; lower is more conservative (default 1)\n"
    "  --seed N             sampling seed (default 0)\n";

int cmd_sample(int argc, char **argv) {
    const char *file = NULL, *weights = NULL, *model = NULL, *prime = " ";
    int64_t length = 200, seed = 0;
    double temperature = 1;
    bool interp = false;
    static const char *const known[] = {"--weights", "--prime", "--length", "--temperature", "--seed", "--model", "--interp", "--help"};
    for (int i = 0; i < argc; i++) {
        const char *v = "";
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(sample_help, stdout);
            return 0;
        }
        if (opt_value(argc, argv, &i, "--weights", &v)) weights = v;
        else if (opt_value(argc, argv, &i, "--prime", &v)) prime = v;
        else if (opt_value(argc, argv, &i, "--model", &v)) model = v;
        else if (opt_value(argc, argv, &i, "--length", &v)) { if (v && !parse_int_arg("--length", v, 0, 1 << 24, &length)) return 2; }
        else if (opt_value(argc, argv, &i, "--seed", &v)) { if (v && !parse_int_arg("--seed", v, 0, INT64_MAX, &seed)) return 2; }
        else if (opt_value(argc, argv, &i, "--temperature", &v)) {
            char *end = NULL;
            temperature = v ? strtod(v, &end) : 0;
            if (!v || *end || !(temperature > 0) || !isfinite(temperature)) {
                fprintf(stderr, "nnc sample: error: --temperature expects a positive number\n");
                return 2;
            }
        } else if (!strcmp(argv[i], "--interp")) interp = true;
        else if (argv[i][0] == '-' && argv[i][1]) return unknown_option("sample", argv[i], known, 8);
        else file = argv[i];
        if (!v) return 2;
    }
    if (!file || !weights) {
        fprintf(stderr, "nnc sample: error: %s\n%s", !file ? "no input file" : "--weights is required", sample_help);
        return 2;
    }
    Session s;
    static const char *const funcs[] = {"infer", NULL};
    if (session_open(&s, file, model, interp, -1, weights, NNRT_KINDS_WEIGHTS, funcs)) {
        session_close(&s);
        return 1;
    }
    Func *f = module_find_func(s.m, "infer");
    const Shape *in = f->nargs == 1 ? &f->args[0].shape : NULL;
    const Node *out = f->nouts >= 1 ? &f->nodes[f->outs[0].value] : NULL;
    if (!in || f->args[0].dtype != DT_I32 || in->rank != 2 || !out || out->shape.rank != 3 ||
        out->shape.dim[1] != in->dim[1] || out->dtype != DT_F32) {
        fprintf(stderr, "nnc sample: error: '%s' is not a next-character model: it needs one input i32[batch, T] and a first output f32[batch, T, V]\n",
                s.m->name);
        session_close(&s);
        return 1;
    }
    int64_t T = in->dim[1], V = out->shape.dim[2];
    bool probs = true; /* a softmax output: sample from it directly; otherwise treat as logits */
    if (f->nodes[f->outs[0].value].op != OP_softmax) probs = false;
    int32_t *window = malloc((size_t)T * sizeof *window);
    float *dist = malloc((size_t)(T * V) * sizeof *dist);
    size_t plen = strlen(prime);
    int32_t *text = malloc((plen + (size_t)length + 1) * sizeof *text);
    for (size_t i = 0; i < plen; i++) text[i] = (unsigned char)prime[i];
    int64_t len = (int64_t)plen;
    fputs(prime, stdout);
    int status = 0;
    double *w = malloc((size_t)V * sizeof *w);
    for (int64_t k = 0; k < length; k++) {
        for (int64_t t = 0; t < T; t++) {
            int64_t src = len - T + t;
            window[t] = src >= 0 ? text[src] : ' ';
        }
        void *bufs[64] = {window, dist};
        char err[512];
        if (exec_call(&s.exec, "infer", 1, bufs, err, sizeof err)) {
            fprintf(stderr, "\nnnc sample: error: %s\n", err);
            status = 1;
            break;
        }
        const float *last = dist + (T - 1) * V;
        double total = 0, mx = -INFINITY;
        for (int64_t c = 0; c < V; c++) mx = fmax(mx, probs ? log(fmax(last[c], 1e-30)) : last[c]);
        for (int64_t c = 0; c < V; c++) {
            double logit = probs ? log(fmax(last[c], 1e-30)) : last[c];
            w[c] = exp((logit - mx) / temperature);
            total += w[c];
        }
        double u = nnrt_rng_uniform((uint64_t)seed, 0x53414d504c45ull /* "SAMPLE" */, (uint64_t)k) * total;
        int64_t c = 0;
        while (c < V - 1 && u >= w[c]) u -= w[c++];
        text[len++] = (int32_t)c;
        putchar(c >= 32 && c < 127 ? (int)c : c == '\n' || c == '\t' ? (int)c : '?');
    }
    putchar('\n');
    free(w);
    free(text);
    free(dist);
    free(window);
    session_close(&s);
    return status;
}
