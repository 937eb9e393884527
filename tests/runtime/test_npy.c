/* test_npy.c — .npy round trips, files as NumPy writes them, and rejections. */
#include "check.h"

/* A .npy image: magic, version major.minor, header length (u16 for v1, u32 for v2/v3),
 * the dict padded with spaces plus '\n' to a 64-byte boundary, then data_len data bytes. */
static unsigned char *make_npy(int major, const char *dict, size_t data_len, size_t *n) {
    size_t pre = major == 1 ? 10 : 12, d = strlen(dict);
    size_t total = (pre + d + 1 + 63) / 64 * 64, hlen = total - pre;
    *n = total + data_len;
    unsigned char *buf = malloc(*n);
    memcpy(buf, "\x93NUMPY", 6);
    buf[6] = (unsigned char)major;
    buf[7] = 0;
    for (size_t i = 0; i < pre - 8; i++) buf[8 + i] = (unsigned char)(hlen >> (8 * i));
    memset(buf + pre, ' ', hlen);
    memcpy(buf + pre, dict, d);
    buf[total - 1] = '\n';
    for (size_t i = 0; i < data_len; i++) buf[total + i] = (unsigned char)(3 * i);
    return buf;
}

static int load(int major, const char *dict, size_t data_len, nnrt_array *a, nnrt_error *err) {
    size_t n;
    unsigned char *buf = make_npy(major, dict, data_len, &n);
    memset(err, 0, sizeof *err);
    int rc = nnrt_npy_load_memory(buf, n, "x.npy", a, err);
    free(buf);
    return rc;
}

#define BAD(dict, data_len, needle)                                                        \
    do {                                                                                   \
        nnrt_array a_;                                                                     \
        nnrt_error e_;                                                                     \
        CHECK_ERR(load(1, dict, data_len, &a_, &e_), NNRT_EFORMAT, e_, needle);            \
        CHECK(a_.data == NULL && a_.rank == 0);                                            \
        CHECK(strncmp(e_.msg, "x.npy: ", 7) == 0);                                         \
    } while (0)

static void test_round_trip(void) {
    nnrt_error err = {{0}};
    const char *path = test_path("a.npy");
    float f[24];
    int32_t i32[5] = {9, 2, 1, 1, 6};
    double f64[2] = {0.1, -1e300};
    int64_t i64[3] = {INT64_MIN, 0, 42};
    uint8_t u8[4] = {0, 127, 128, 255};
    for (int i = 0; i < 24; i++) f[i] = (float)i / 7.0f;
    struct {
        int dtype, rank;
        int64_t shape[NNRT_MAX_RANK];
        const void *data;
        size_t bytes;
    } cases[] = {
        {NNRT_F32, 2, {4, 6}, f, sizeof f},
        {NNRT_F32, 6, {1, 2, 1, 3, 2, 2}, f, sizeof f},
        {NNRT_F32, 0, {0}, f, 4},
        {NNRT_F32, 2, {0, 3}, NULL, 0},
        {NNRT_I32, 1, {5}, i32, sizeof i32},
        {NNRT_F64, 1, {2}, f64, sizeof f64},
        {NNRT_I64, 1, {3}, i64, sizeof i64},
        {NNRT_U8, 2, {2, 2}, u8, sizeof u8},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        CHECK_EQ(nnrt_npy_save(path, cases[c].dtype, cases[c].rank, cases[c].shape,
                               cases[c].data, &err),
                 NNRT_OK);
        size_t n;
        unsigned char *raw = test_read_file(path, &n);
        CHECK(raw && raw[6] == 1 && raw[7] == 0);
        if (raw) {
            size_t hlen = (size_t)raw[8] | (size_t)raw[9] << 8;
            CHECK((10 + hlen) % 64 == 0 && raw[10 + hlen - 1] == '\n');
            CHECK(n == 10 + hlen + cases[c].bytes);
        }
        free(raw);
        nnrt_array a;
        CHECK_EQ(nnrt_npy_load(path, &a, &err), NNRT_OK);
        CHECK_EQ(a.dtype, cases[c].dtype);
        CHECK_EQ(a.rank, cases[c].rank);
        CHECK(!memcmp(a.shape, cases[c].shape, (size_t)a.rank * sizeof(int64_t)));
        CHECK(a.data != NULL);
        CHECK_EQ((size_t)a.numel * nnrt_dtype_size(a.dtype), cases[c].bytes);
        if (cases[c].bytes) CHECK(!memcmp(a.data, cases[c].data, cases[c].bytes));
        nnrt_array_free(&a);
        CHECK(a.data == NULL);
    }
    CHECK_EQ(test_dir_entries(), 1);
    unlink(path);
    nnrt_array_free(NULL);
}

/* Headers exactly as NumPy 1.24 writes them (np.save of np.arange(6, dtype='<f4')
 * .reshape(2, 3) and of np.array([9, 2, 1], dtype='<i4')), and the other versions. */
static void test_numpy_files(void) {
    nnrt_array a;
    nnrt_error err;
    size_t n;
    unsigned char *buf = make_npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
                                  24, &n);
    CHECK_EQ(n, 152);
    CHECK(buf[8] == 118 && buf[9] == 0);
    float v[6] = {0, 1, 2, 3, 4, 5};
    memcpy(buf + 128, v, sizeof v);
    CHECK_EQ(nnrt_npy_load_memory(buf, n, "arange.npy", &a, &err), NNRT_OK);
    CHECK(a.dtype == NNRT_F32 && a.rank == 2 && a.shape[0] == 2 && a.shape[1] == 3);
    CHECK(a.numel == 6 && !memcmp(a.data, v, sizeof v));
    nnrt_array_free(&a);
    free(buf);

    CHECK_EQ(load(1, "{'descr': '<i4', 'fortran_order': False, 'shape': (3,), }", 12, &a, &err),
             NNRT_OK);
    CHECK(a.dtype == NNRT_I32 && a.rank == 1 && a.shape[0] == 3);
    nnrt_array_free(&a);

    /* Versions 2.0 and 3.0 (u32 header length), double quotes, no trailing comma, keys in
     * another order, Python 2 long suffixes. */
    CHECK_EQ(load(2, "{\"shape\": (2L, 2L), \"fortran_order\": False, \"descr\": \"<f8\"}", 32,
                  &a, &err),
             NNRT_OK);
    CHECK(a.dtype == NNRT_F64 && a.rank == 2 && a.numel == 4);
    nnrt_array_free(&a);
    CHECK_EQ(load(3, "{'descr': '|u1', 'fortran_order': False, 'shape': ()}", 1, &a, &err),
             NNRT_OK);
    CHECK(a.dtype == NNRT_U8 && a.rank == 0 && a.numel == 1);
    nnrt_array_free(&a);
}

static void test_rejects(void) {
    BAD("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", 24,
        "fortran_order True is not supported");
    BAD("{'descr': '>f4', 'fortran_order': False, 'shape': (2, 3), }", 24,
        "big-endian dtype '>f4' is not supported");
    BAD("{'descr': '<f2', 'fortran_order': False, 'shape': (2, 3), }", 12,
        "unsupported dtype '<f2'");
    BAD("{'descr': '<c8', 'fortran_order': False, 'shape': (2, 3), }", 48,
        "unsupported dtype '<c8'");
    BAD("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 20,
        "truncated: shape [2, 3] of <f4 needs 24 bytes of data from byte offset 128 but the "
        "file ends at byte 148");
    BAD("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 25,
        "1 unexpected bytes after the data (which ends at byte offset 152)");
    BAD("{'descr': '<f4', 'fortran_order': False, 'shape': (3), }", 12,
        "'shape' is not a tuple");
    BAD("{'descr': '<f4', 'fortran_order': False, 'shape': (-3,), }", 12, "negative dimension");
    BAD("{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1), }", 4,
        "more than 6 dimensions");
    BAD("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, "
        "4294967296), }",
        0, "overflows");
    BAD("{'descr': '<f4', 'fortran_order': False, 'shape': (9223372036854775808,), }", 0,
        "dimension too large");
    BAD("{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000, 1000000000), }", 0,
        "needs 4000000000000000000 bytes"); /* no allocation attempted */
    BAD("{'descr': '<f4', 'fortran_order': False}", 4, "the header has no 'shape'");
    BAD("{'descr': '<f4', 'fortran_order': False, 'shape': (), 'x': 1}", 4,
        "unexpected key 'x'");
    BAD("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': ()}", 4,
        "duplicate key 'descr'");
    BAD("{'descr': '<f4', 'fortran_order': 0, 'shape': ()}", 4, "must be True or False");
    BAD("{'descr': '<f4' 'fortran_order': False, 'shape': ()}", 4,
        "byte offset 26: expected ',' or '}'");
    BAD("{'descr': '<f4', 'fortran_order': False, 'shape': ()} x", 4, "unexpected text");
    BAD("{'descr': '<f4\\', 'fortran_order': False, 'shape': ()}", 4, "unexpected character");

    nnrt_array a;
    nnrt_error err;
    static const unsigned char not_npy[16] = "PK\x03\x04 zip file";
    CHECK_ERR(nnrt_npy_load_memory(not_npy, sizeof not_npy, "x.npy", &a, &err), NNRT_EFORMAT, err,
              "not a .npy file");
    unsigned char v4[16] = "\x93NUMPY\x04\x00";
    CHECK_ERR(nnrt_npy_load_memory(v4, sizeof v4, "x.npy", &a, &err), NNRT_EFORMAT, err,
              "unsupported .npy format version 4.0");
    unsigned char short_hdr[18] = "\x93NUMPY\x01\x00\x76\x00{'descr'";
    CHECK_ERR(nnrt_npy_load_memory(short_hdr, sizeof short_hdr, "x.npy", &a, &err), NNRT_EFORMAT,
              err, "truncated: expected the header (118 bytes) at byte offset 10 but the file ends "
                   "at byte 18");
    CHECK_ERR(nnrt_npy_load_memory(not_npy, 3, "x.npy", &a, &err), NNRT_EFORMAT, err,
              "truncated");

    /* Files: a truncated copy on disk, a missing file. */
    size_t n;
    unsigned char *buf = make_npy(1, "{'descr': '<i4', 'fortran_order': False, 'shape': (3,), }",
                                  12, &n);
    const char *path = test_path("t.npy");
    test_write_file(path, buf, n - 1);
    CHECK_ERR(nnrt_npy_load(path, &a, &err), NNRT_EFORMAT, err,
              "t.npy: truncated: shape [3] of <i4 needs 12 bytes of data from byte offset 128 "
              "but the file ends at byte 139");
    unlink(path);
    free(buf);
    CHECK_ERR(nnrt_npy_load(path, &a, &err), NNRT_EIO, err, "cannot open");

    int64_t shape[1] = {2};
    float v[2] = {1, 2};
    CHECK_EQ(nnrt_npy_save(path, 17, 1, shape, v, &err), NNRT_EARG);
    CHECK_EQ(nnrt_npy_save(path, NNRT_F32, 7, shape, v, &err), NNRT_EARG);
    CHECK_EQ(nnrt_npy_save(path, NNRT_F32, 1, shape, NULL, &err), NNRT_ENULL);
    CHECK_ERR(nnrt_npy_save(test_path("no/dir/x.npy"), NNRT_F32, 1, shape, v, &err), NNRT_EIO,
              err, "cannot create");
    CHECK_EQ(test_dir_entries(), 0);
}

int main(void) {
    test_tmpdir();
    test_round_trip();
    test_numpy_files();
    test_rejects();
    test_tmpdir_remove();
    return check_summary("test_npy");
}
