/* test_fuzz.c — deterministic mutation fuzzing of the safetensors, .npy and IDX readers.
 *
 * Valid files are mutated (bit flips, random and JSON-significant bytes, truncation,
 * inserted and deleted runs, rewritten length fields) thousands of times. Every result
 * must be NNRT_OK or NNRT_EFORMAT with a message, never a crash, an out-of-bounds access
 * (run under ASan) or a leak; an accepted file must be self-consistent. */
#include "check.h"

/* NNRT_FUZZ_ITERATIONS and NNRT_FUZZ_SEED override the defaults for longer runs. */
enum { FILE_ITERATIONS = 300 };
static int ITERATIONS = 20000;
static uint64_t SEED = 0;

static size_t mutate(unsigned char *buf, size_t n, size_t cap, uint64_t *s) {
    static const unsigned char special[] = {'"', '\\', '{', '}', '[', ']', ',', ':', '0', '9',
                                            '-', 'e', '.', ' ', 'u', '(', ')', '\'', 0, 0x80,
                                            0xC3, 0xED, 0xFF, '\n'};
    int count = 1 + (int)(test_rand(s) % 3);
    for (int m = 0; m < count && n > 0; m++) {
        size_t at = (size_t)(test_rand(s) % n);
        switch (test_rand(s) % 8) {
        case 0: buf[at] ^= (unsigned char)(1u << (test_rand(s) % 8)); break;
        case 1: buf[at] = (unsigned char)test_rand(s); break;
        case 2: buf[at] = special[test_rand(s) % sizeof special]; break;
        case 3: n = (size_t)(test_rand(s) % n); break; /* truncate */
        case 4: {                                      /* insert a copy of a run */
            size_t len = 1 + (size_t)(test_rand(s) % 16);
            if (n + len > cap || at + len > n) break;
            memmove(buf + at + len, buf + at, n - at);
            n += len;
            break;
        }
        case 5: { /* delete a run */
            size_t len = 1 + (size_t)(test_rand(s) % 16);
            if (at + len > n) len = n - at;
            memmove(buf + at, buf + at + len, n - at - len);
            n -= len;
            break;
        }
        case 6: /* small change of a length field (safetensors u64, npy u16) */
            buf[test_rand(s) % 2 ? 0 : 8] += (unsigned char)(test_rand(s) % 5) - 2;
            break;
        default: /* a large one */
            buf[(size_t)(test_rand(s) % 10)] = (unsigned char)test_rand(s);
            break;
        }
    }
    return n;
}

static void check_st_result(int rc, const nnrt_st_file *f, const nnrt_error *err) {
    CHECK(rc == NNRT_OK || rc == NNRT_EFORMAT);
    if (rc != NNRT_OK) {
        CHECK(err->msg[0] != 0);
        CHECK(f->n == 0 && f->tensors == NULL && f->blob == NULL);
        return;
    }
    for (int i = 0; i < f->n; i++) {
        const nnrt_st_tensor *t = &f->tensors[i];
        int64_t numel = 1;
        for (int d = 0; d < t->rank; d++) numel *= t->shape[d];
        CHECK(t->rank >= 0 && t->rank <= NNRT_MAX_RANK);
        CHECK((uint64_t)numel * nnrt_dtype_size(t->dtype) == t->bytes);
        CHECK(t->name != NULL);
        /* touch every byte so ASan checks the bounds */
        volatile unsigned char sum = 0;
        for (uint64_t k = 0; k < t->bytes; k++) sum += ((const unsigned char *)t->data)[k];
        (void)sum;
    }
}

static void check_npy_result(int rc, const nnrt_array *a, const nnrt_error *err) {
    CHECK(rc == NNRT_OK || rc == NNRT_EFORMAT);
    if (rc != NNRT_OK) {
        CHECK(err->msg[0] != 0);
        CHECK(a->data == NULL);
        return;
    }
    int64_t numel = 1;
    for (int d = 0; d < a->rank; d++) numel *= a->shape[d];
    CHECK(numel == a->numel && a->data != NULL);
    volatile unsigned char sum = 0;
    for (uint64_t k = 0; k < (uint64_t)numel * nnrt_dtype_size(a->dtype); k++)
        sum += ((const unsigned char *)a->data)[k];
    (void)sum;
}

static unsigned char *valid_safetensors(size_t *n) {
    float w[12], b[4];
    double d = 1.5;
    int64_t steps = 7;
    uint8_t u[3] = {1, 2, 3};
    for (int i = 0; i < 12; i++) w[i] = (float)i;
    for (int i = 0; i < 4; i++) b[i] = (float)-i;
    nnrt_st_tensor t[] = {{"fc.weight", NNRT_F32, 2, {4, 3}, w, sizeof w},
                          {"fc.bias", NNRT_F32, 1, {4}, b, sizeof b},
                          {"lr", NNRT_F64, 0, {0}, &d, sizeof d},
                          {"step", NNRT_I64, 0, {0}, &steps, sizeof steps},
                          {"bytes\\\"\xc3\xa9", NNRT_U8, 1, {3}, u, sizeof u},
                          {"empty", NNRT_I32, 2, {0, 2}, NULL, 0}};
    const char *k[] = {"format", "note"}, *v[] = {"pt", "\ttab \\u"};
    const char *path = test_path("valid.safetensors");
    nnrt_error err;
    if (nnrt_st_write(path, 6, t, 2, k, v, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        exit(2);
    }
    unsigned char *buf = test_read_file(path, n);
    unlink(path);
    return buf;
}

static unsigned char *valid_npy(size_t *n) {
    float x[2 * 3 * 4];
    for (int i = 0; i < 24; i++) x[i] = (float)i;
    const int64_t shape[3] = {2, 3, 4};
    const char *path = test_path("valid.npy");
    nnrt_error err;
    if (nnrt_npy_save(path, NNRT_F32, 3, shape, x, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        exit(2);
    }
    unsigned char *buf = test_read_file(path, n);
    unlink(path);
    return buf;
}

static void fuzz_safetensors(void) {
    size_t n0;
    unsigned char *orig = valid_safetensors(&n0);
    size_t cap = n0 + 256;
    unsigned char *buf = malloc(cap);
    uint64_t s = 0x5EED0001 + SEED;
    int accepted = 0;
    for (int it = 0; it < ITERATIONS + FILE_ITERATIONS; it++) {
        memcpy(buf, orig, n0);
        size_t n = mutate(buf, n0, cap, &s);
        nnrt_st_file f;
        nnrt_error err = {{0}};
        int rc;
        if (it < ITERATIONS) {
            rc = nnrt_st_read_memory(buf, n, "fuzz.safetensors", &f, &err);
        } else {
            const char *path = test_path("fuzz.safetensors");
            test_write_file(path, buf, n);
            rc = nnrt_st_read(path, &f, &err);
            unlink(path);
        }
        check_st_result(rc, &f, &err);
        accepted += rc == NNRT_OK;
        nnrt_st_free(&f);
    }
    /* Every truncation of the valid file is rejected (the tensors tile the data exactly). */
    for (size_t len = 0; len < n0; len++) {
        nnrt_st_file f;
        nnrt_error err = {{0}};
        int rc = nnrt_st_read_memory(orig, len, "cut.safetensors", &f, &err);
        CHECK_EQ(rc, NNRT_EFORMAT);
        nnrt_st_free(&f);
    }
    printf("safetensors: %d mutants, %d accepted\n", ITERATIONS + FILE_ITERATIONS, accepted);
    free(buf);
    free(orig);
}

static void fuzz_npy(void) {
    size_t n0;
    unsigned char *orig = valid_npy(&n0);
    size_t cap = n0 + 256;
    unsigned char *buf = malloc(cap);
    uint64_t s = 0x5EED0002 + SEED;
    int accepted = 0;
    for (int it = 0; it < ITERATIONS + FILE_ITERATIONS; it++) {
        memcpy(buf, orig, n0);
        size_t n = mutate(buf, n0, cap, &s);
        nnrt_array a;
        nnrt_error err = {{0}};
        int rc;
        if (it < ITERATIONS) {
            rc = nnrt_npy_load_memory(buf, n, "fuzz.npy", &a, &err);
        } else {
            const char *path = test_path("fuzz.npy");
            test_write_file(path, buf, n);
            rc = nnrt_npy_load(path, &a, &err);
            unlink(path);
        }
        check_npy_result(rc, &a, &err);
        accepted += rc == NNRT_OK;
        nnrt_array_free(&a);
    }
    for (size_t len = 0; len < n0; len++) {
        nnrt_array a;
        nnrt_error err = {{0}};
        CHECK_EQ(nnrt_npy_load_memory(orig, len, "cut.npy", &a, &err), NNRT_EFORMAT);
    }
    printf("npy: %d mutants, %d accepted\n", ITERATIONS + FILE_ITERATIONS, accepted);
    free(buf);
    free(orig);
}

static void fuzz_idx(void) {
    unsigned char orig[4 + 8 + 24];
    const unsigned char hdr[12] = {0, 0, 0x0D, 2, 0, 0, 0, 2, 0, 0, 0, 3};
    memcpy(orig, hdr, sizeof hdr);
    for (int i = 0; i < 24; i++) orig[12 + i] = (unsigned char)(i * 11);
    unsigned char buf[sizeof orig + 64];
    uint64_t s = 0x5EED0003 + SEED;
    int accepted = 0;
    const char *path = test_path("fuzz.idx");
    for (int it = 0; it < FILE_ITERATIONS; it++) {
        memcpy(buf, orig, sizeof orig);
        size_t n = mutate(buf, sizeof orig, sizeof buf, &s);
        test_write_file(path, buf, n);
        nnrt_array a;
        nnrt_error err = {{0}};
        int rc = nnrt_idx_load(path, &a, &err);
        check_npy_result(rc, &a, &err);
        accepted += rc == NNRT_OK;
        nnrt_array_free(&a);
    }
    unlink(path);
    printf("idx: %d mutants, %d accepted\n", FILE_ITERATIONS, accepted);
}

int main(void) {
    const char *env = getenv("NNRT_FUZZ_ITERATIONS");
    if (env && atoi(env) > 0) ITERATIONS = atoi(env);
    env = getenv("NNRT_FUZZ_SEED");
    if (env) SEED = strtoull(env, NULL, 0) * 0x9E3779B97F4A7C15ull;
    test_tmpdir();
    fuzz_safetensors();
    fuzz_npy();
    fuzz_idx();
    CHECK_EQ(test_dir_entries(), 0);
    test_tmpdir_remove();
    return check_summary("test_fuzz");
}
