/* test_idx.c — IDX loading: the real Fashion-MNIST files, element types, truncation and
 * hostile headers, plain and gzip. */
#include "check.h"

#include <zlib.h>

static const char *dataset_dir(void) {
    const char *d = getenv("NNRT_FASHION_MNIST");
    return d && *d ? d : "/usr/share/datasets/fashion-mnist";
}

/* Writes bytes to path, gzip-compressed when gz is nonzero. */
static void write_idx(const char *path, const void *buf, size_t n, int gz) {
    if (!gz) {
        test_write_file(path, buf, n);
        return;
    }
    gzFile f = gzopen(path, "wb");
    if (n) gzwrite(f, buf, (unsigned)n);
    gzclose(f);
}

static void test_fashion_mnist(void) {
    char path[512];
    nnrt_array a;
    nnrt_error err = {{0}};
    snprintf(path, sizeof path, "%s/t10k-labels-idx1-ubyte.gz", dataset_dir());
    CHECK_EQ(nnrt_idx_load(path, &a, &err), NNRT_OK);
    if (err.msg[0]) fprintf(stderr, "%s\n", err.msg);
    CHECK(a.dtype == NNRT_U8 && a.rank == 1 && a.shape[0] == 10000 && a.numel == 10000);
    if (a.data) {
        const uint8_t *y = a.data;
        const uint8_t first[10] = {9, 2, 1, 1, 6, 1, 4, 6, 5, 7};
        CHECK(!memcmp(y, first, sizeof first));
        int count[10] = {0};
        for (int i = 0; i < 10000; i++)
            if (y[i] < 10) count[y[i]]++;
        for (int c = 0; c < 10; c++) CHECK_EQ(count[c], 1000);
    }

    /* A truncated copy of the compressed file: an error naming the uncompressed offset. */
    size_t n;
    unsigned char *gz = test_read_file(path, &n);
    CHECK(gz != NULL);
    const char *cut = test_path("labels-cut.gz");
    test_write_file(cut, gz, n / 2);
    free(gz);
    nnrt_array b;
    CHECK_ERR(nnrt_idx_load(cut, &b, &err), NNRT_EFORMAT, err,
              "labels-cut.gz: truncated: dimensions [10000] need 10000 bytes of data from byte "
              "offset 8 but the uncompressed data ends at byte offset ");
    CHECK(b.data == NULL);
    unlink(cut);

    /* The same labels uncompressed, then truncated: exact offsets. */
    const char *plain = test_path("labels");
    if (a.data) {
        unsigned char *raw = malloc(8 + 10000);
        const unsigned char hdr[8] = {0, 0, 8, 1, 0, 0, 0x27, 0x10};
        memcpy(raw, hdr, 8);
        memcpy(raw + 8, a.data, 10000);
        write_idx(plain, raw, 8 + 10000, 0);
        CHECK_EQ(nnrt_idx_load(plain, &b, &err), NNRT_OK);
        CHECK(b.numel == 10000 && !memcmp(b.data, a.data, 10000));
        nnrt_array_free(&b);
        write_idx(plain, raw, 8 + 5000, 0);
        CHECK_ERR(nnrt_idx_load(plain, &b, &err), NNRT_EFORMAT, err,
                  "truncated: dimensions [10000] need 10000 bytes of data from byte offset 8 "
                  "but the file ends at byte offset 5008");
        write_idx(plain, raw, 8 + 5000, 1);
        CHECK_ERR(nnrt_idx_load(plain, &b, &err), NNRT_EFORMAT, err,
                  "truncated: dimensions [10000] need 10000 bytes of data from byte offset 8 "
                  "but the uncompressed data ends at byte offset 5008");
        free(raw);
        unlink(plain);
    }
    nnrt_array_free(&a);

    snprintf(path, sizeof path, "%s/t10k-images-idx3-ubyte.gz", dataset_dir());
    CHECK_EQ(nnrt_idx_load(path, &a, &err), NNRT_OK);
    CHECK(a.dtype == NNRT_U8 && a.rank == 3 && a.shape[0] == 10000 && a.shape[1] == 28 &&
          a.shape[2] == 28);
    if (a.data) {
        long sum = 0;
        for (int i = 0; i < 784; i++) sum += ((const uint8_t *)a.data)[i];
        CHECK_EQ(sum, 33456); /* pixel sum of the first image, from Python's gzip module */
    }
    nnrt_array_free(&a);
}

/* Multi-byte element types are big-endian in the file, host order in memory. */
static void test_types(void) {
    nnrt_array a;
    nnrt_error err;
    const char *path = test_path("typed.idx");
    for (int gz = 0; gz < 2; gz++) {
        const unsigned char i32[] = {0, 0, 0x0C, 2, 0, 0, 0, 1, 0, 0, 0, 2,
                                     0x00, 0x00, 0x01, 0x02, 0xFF, 0xFF, 0xFF, 0xFE};
        write_idx(path, i32, sizeof i32, gz);
        CHECK_EQ(nnrt_idx_load(path, &a, &err), NNRT_OK);
        CHECK(a.dtype == NNRT_I32 && a.rank == 2 && a.shape[0] == 1 && a.shape[1] == 2);
        if (a.data) CHECK(((int32_t *)a.data)[0] == 258 && ((int32_t *)a.data)[1] == -2);
        nnrt_array_free(&a);

        const unsigned char f32[] = {0, 0, 0x0D, 1, 0, 0, 0, 1, 0x3F, 0xC0, 0x00, 0x00};
        write_idx(path, f32, sizeof f32, gz);
        CHECK_EQ(nnrt_idx_load(path, &a, &err), NNRT_OK);
        CHECK(a.dtype == NNRT_F32 && a.data && ((float *)a.data)[0] == 1.5f);
        nnrt_array_free(&a);

        const unsigned char f64[] = {0, 0, 0x0E, 1, 0, 0, 0, 1,
                                     0xC0, 0x04, 0, 0, 0, 0, 0, 0};
        write_idx(path, f64, sizeof f64, gz);
        CHECK_EQ(nnrt_idx_load(path, &a, &err), NNRT_OK);
        CHECK(a.dtype == NNRT_F64 && a.data && ((double *)a.data)[0] == -2.5);
        nnrt_array_free(&a);

        const unsigned char empty[] = {0, 0, 0x08, 2, 0, 0, 0, 0, 0, 0, 0, 5};
        write_idx(path, empty, sizeof empty, gz);
        CHECK_EQ(nnrt_idx_load(path, &a, &err), NNRT_OK);
        CHECK(a.numel == 0 && a.data != NULL && a.shape[1] == 5);
        nnrt_array_free(&a);
    }
    unlink(path);
}

static void test_rejects(void) {
    nnrt_array a;
    nnrt_error err;
    const char *path = test_path("bad.idx");
    for (int gz = 0; gz < 2; gz++) {
        const unsigned char magic[] = {1, 0, 8, 1, 0, 0, 0, 0};
        write_idx(path, magic, sizeof magic, gz);
        CHECK_ERR(nnrt_idx_load(path, &a, &err), NNRT_EFORMAT, err,
                  "not an IDX file: bytes 0-1 are 01 00");
        const unsigned char type[] = {0, 0, 0x0B, 1, 0, 0, 0, 0};
        write_idx(path, type, sizeof type, gz);
        CHECK_ERR(nnrt_idx_load(path, &a, &err), NNRT_EFORMAT, err,
                  "unsupported IDX element type 0x0b at byte offset 2");
        const unsigned char rank0[] = {0, 0, 8, 0};
        write_idx(path, rank0, sizeof rank0, gz);
        CHECK_ERR(nnrt_idx_load(path, &a, &err), NNRT_EFORMAT, err,
                  "dimension count 0 at byte offset 3");
        const unsigned char rank7[] = {0, 0, 8, 7};
        write_idx(path, rank7, sizeof rank7, gz);
        CHECK_ERR(nnrt_idx_load(path, &a, &err), NNRT_EFORMAT, err,
                  "dimension count 7 at byte offset 3");
        const unsigned char dims[] = {0, 0, 8, 3, 0, 0, 0, 1, 0, 0};
        write_idx(path, dims, sizeof dims, gz);
        CHECK_ERR(nnrt_idx_load(path, &a, &err), NNRT_EFORMAT, err,
                  "truncated: expected the dimensions (12 bytes) at byte offset 4");
        /* 2^32-1 cubed overflows; 65535^3 bytes (2.8e14) of claimed data is refused for a
         * plain file by its size and for gzip by running out of data: no huge allocation. */
        const unsigned char ovf[] = {0, 0, 8, 3, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
                                     0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3};
        write_idx(path, ovf, sizeof ovf, gz);
        CHECK_ERR(nnrt_idx_load(path, &a, &err), NNRT_EFORMAT, err,
                  "IDX dimensions [4294967295, 4294967295, 4294967295] overflow");
        const unsigned char big[] = {0, 0, 8, 3, 0, 0, 0xFF, 0xFF, 0, 0, 0xFF, 0xFF,
                                     0, 0, 0xFF, 0xFF, 1, 2, 3};
        write_idx(path, big, sizeof big, gz);
        CHECK_ERR(nnrt_idx_load(path, &a, &err), NNRT_EFORMAT, err,
                  "need 281462092005375 bytes of data from byte offset 16 but the ");
        CHECK(strstr(err.msg, "ends at byte offset 19") != NULL);
        const unsigned char extra[] = {0, 0, 8, 1, 0, 0, 0, 2, 7, 7, 7};
        write_idx(path, extra, sizeof extra, gz);
        CHECK_ERR(nnrt_idx_load(path, &a, &err), NNRT_EFORMAT, err,
                  "unexpected data after byte offset 10");
        CHECK(a.data == NULL && a.rank == 0);
    }
    write_idx(path, "", 0, 0);
    CHECK_ERR(nnrt_idx_load(path, &a, &err), NNRT_EFORMAT, err,
              "truncated: expected the magic number (4 bytes) at byte offset 0 but the data ends "
              "at byte offset 0");
    unlink(path);
    CHECK_ERR(nnrt_idx_load(path, &a, &err), NNRT_EIO, err, "cannot open");
    CHECK_ERR(nnrt_idx_load(test_dir, &a, &err), NNRT_EIO, err, "not a regular file");
    CHECK_EQ(nnrt_idx_load(NULL, &a, NULL), NNRT_ENULL);
    CHECK_EQ(test_dir_entries(), 0);
}

int main(void) {
    test_tmpdir();
    test_fashion_mnist();
    test_types();
    test_rejects();
    test_tmpdir_remove();
    return check_summary("test_idx");
}
