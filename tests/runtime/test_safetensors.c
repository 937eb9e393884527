/* test_safetensors.c — safetensors round trips, byte-exact output, every validation error,
 * atomic writes. */
#include "check.h"

/* A safetensors image in memory: u64 LE header length, header, then data_len data bytes. */
static unsigned char *make_st_n(const char *header, size_t h, size_t data_len, size_t *n) {
    *n = 8 + h + data_len;
    unsigned char *buf = malloc(*n);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)h >> (8 * i));
    memcpy(buf + 8, header, h);
    for (size_t i = 0; i < data_len; i++) buf[8 + h + i] = (unsigned char)i;
    return buf;
}

static unsigned char *make_st(const char *header, size_t data_len, size_t *n) {
    return make_st_n(header, strlen(header), data_len, n);
}

/* Parses header + data_len bytes from memory; returns the status, error in *err. */
static int parse(const char *header, size_t data_len, nnrt_error *err) {
    size_t n;
    unsigned char *buf = make_st(header, data_len, &n);
    nnrt_st_file f;
    memset(err, 0, sizeof *err);
    int rc = nnrt_st_read_memory(buf, n, "t.safetensors", &f, err);
    if (rc == NNRT_OK) nnrt_st_free(&f);
    else CHECK(f.n == 0 && f.tensors == NULL && f.blob == NULL);
    free(buf);
    return rc;
}

#define BAD(header, data_len, needle)                                                      \
    do {                                                                                   \
        nnrt_error e_;                                                                     \
        CHECK_ERR(parse(header, data_len, &e_), NNRT_EFORMAT, e_, needle);                \
        CHECK(strncmp(e_.msg, "t.safetensors: ", 15) == 0);                                \
    } while (0)

static void test_round_trip(void) {
    float w[12], b[4];
    int32_t idx[3] = {7, -1, 1 << 30};
    double d = 3.25;
    int64_t big[2] = {INT64_MAX, -5};
    uint8_t bytes[5] = {0, 1, 2, 254, 255};
    for (int i = 0; i < 12; i++) w[i] = (float)i * 0.5f - 1.0f;
    for (int i = 0; i < 4; i++) b[i] = (float)-i;
    nnrt_st_tensor t[] = {
        {"h1.weight", NNRT_F32, 2, {4, 3}, w, sizeof w},
        {"h1.bias", NNRT_F32, 1, {4}, b, sizeof b},
        {"indices", NNRT_I32, 1, {3}, idx, sizeof idx},
        {"scalar", NNRT_F64, 0, {0}, &d, sizeof d},
        {"counters", NNRT_I64, 1, {2}, big, sizeof big},
        {"raw", NNRT_U8, 1, {5}, bytes, sizeof bytes},
        {"empty", NNRT_F32, 2, {0, 7}, NULL, 0},
        {"quote\"back\\slash\n\xc3\xa9\xf0\x9f\x98\x80", NNRT_F32, 1, {1}, b, 4},
    };
    int n = (int)(sizeof t / sizeof t[0]);
    const char *keys[] = {"format", "note"}, *values[] = {"pt", "line\nbreak \"q\""};
    nnrt_error err = {{0}};
    const char *path = test_path("round.safetensors");
    CHECK_EQ(nnrt_st_write(path, n, t, 2, keys, values, &err), NNRT_OK);

    nnrt_st_file f;
    CHECK_EQ(nnrt_st_read(path, &f, &err), NNRT_OK);
    CHECK_EQ(f.n, n);
    for (int i = 0; i < n; i++) {
        const nnrt_st_tensor *g = nnrt_st_find(&f, t[i].name);
        CHECK(g != NULL);
        if (!g) continue;
        CHECK_EQ(g->dtype, t[i].dtype);
        CHECK_EQ(g->rank, t[i].rank);
        CHECK(memcmp(g->shape, t[i].shape, (size_t)t[i].rank * sizeof(int64_t)) == 0);
        CHECK_EQ(g->bytes, t[i].bytes);
        CHECK(g->data != NULL);
        CHECK((uintptr_t)g->data % nnrt_dtype_size(g->dtype) == 0);
        if (t[i].bytes) CHECK(memcmp(g->data, t[i].data, t[i].bytes) == 0);
    }
    CHECK(nnrt_st_find(&f, "missing") == NULL);
    CHECK_EQ(f.n_meta, 2);
    if (f.n_meta == 2) {
        CHECK(!strcmp(f.meta_keys[0], "format") && !strcmp(f.meta_values[0], "pt"));
        CHECK(!strcmp(f.meta_keys[1], "note") && !strcmp(f.meta_values[1], values[1]));
    }
    /* Data order is the Python library's: dtype by alignment (I64, F64, F32, I32, U8),
     * then name. */
    const char *order[] = {"counters", "scalar", "empty", "h1.bias", "h1.weight",
                           t[7].name, "indices", "raw"};
    for (int i = 0; i < n && i < f.n; i++) CHECK(!strcmp(f.tensors[i].name, order[i]));
    nnrt_st_free(&f);
    CHECK(f.n == 0 && f.tensors == NULL && f.blob == NULL);
    nnrt_st_free(&f); /* idempotent */
    nnrt_st_free(NULL);
    unlink(path);
}

/* Byte-exact output against the serializations in the reference implementation's tests
 * (huggingface/safetensors, safetensors/src/tensor.rs). */
static void test_exact_bytes(void) {
    const char *path = test_path("exact.safetensors");
    float v[6] = {0, 1, 2, 3, 4, 5};
    size_t n;
    unsigned char *got;

    nnrt_st_tensor a = {"attn.0", NNRT_F32, 3, {1, 2, 3}, v, sizeof v};
    static const char hdr1[] =
        "{\"attn.0\":{\"dtype\":\"F32\",\"shape\":[1,2,3],\"data_offsets\":[0,24]}}";
    CHECK_EQ(nnrt_st_write(path, 1, &a, 0, NULL, NULL, NULL), NNRT_OK);
    got = test_read_file(path, &n);
    CHECK(got && n == 8 + 64 + 24 && got[0] == 64 && !memcmp(got + 8, hdr1, 64) &&
          !memcmp(got + 72, v, 24));
    free(got);

    nnrt_st_tensor b = {"attn0", NNRT_F32, 4, {1, 1, 2, 3}, v, sizeof v};
    static const char hdr2[] =
        "{\"attn0\":{\"dtype\":\"F32\",\"shape\":[1,1,2,3],\"data_offsets\":[0,24]}}       ";
    CHECK_EQ(nnrt_st_write(path, 1, &b, 0, NULL, NULL, NULL), NNRT_OK);
    got = test_read_file(path, &n);
    CHECK(got && n == 8 + 72 + 24 && got[0] == 72 && !memcmp(got + 8, hdr2, 72));
    free(got);

    static const unsigned char empty[] = {8, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' ',
                                          ' ', ' ', ' ', ' '};
    CHECK_EQ(nnrt_st_write(path, 0, NULL, 0, NULL, NULL, NULL), NNRT_OK);
    got = test_read_file(path, &n);
    CHECK(got && n == sizeof empty && !memcmp(got, empty, n));
    free(got);

    const char *k = "framework", *val = "pt";
    static const char hdr3[] = "{\"__metadata__\":{\"framework\":\"pt\"}}     ";
    CHECK_EQ(nnrt_st_write(path, 0, NULL, 1, &k, &val, NULL), NNRT_OK);
    got = test_read_file(path, &n);
    CHECK(got && n == 8 + 40 && got[0] == 40 && !memcmp(got + 8, hdr3, 40));
    free(got);
    unlink(path);
}

static void test_accepts(void) {
    nnrt_error err;
    /* Whitespace anywhere JSON allows it, fields in any order, escapes, empty shapes. */
    CHECK_EQ(parse(" \t\r\n{ \"a\" : { \"shape\" : [ 2 ] , \"data_offsets\" : [ 0 , 8 ] , "
                   "\"dtype\" : \"F32\" } } \n ",
                   8, &err),
             NNRT_OK);
    CHECK_EQ(parse("{\"\\u00e9\\ud83d\\ude00\\/\\t\":{\"dtype\":\"U8\",\"shape\":[],"
                   "\"data_offsets\":[0,1]}}",
                   1, &err),
             NNRT_OK);
    CHECK_EQ(parse("{\"__metadata__\":{},\"z\":{\"dtype\":\"I64\",\"shape\":[0],"
                   "\"data_offsets\":[0,0]}}",
                   0, &err),
             NNRT_OK);
    /* Tensors listed out of offset order are fine; unaligned offsets are repacked. */
    size_t n;
    unsigned char *buf = make_st("{\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[1,5]},"
                                 "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}",
                                 5, &n);
    float expect;
    memcpy(&expect, buf + n - 4, 4);
    nnrt_st_file f;
    CHECK_EQ(nnrt_st_read_memory(buf, n, "t", &f, &err), NNRT_OK);
    const nnrt_st_tensor *b = nnrt_st_find(&f, "b");
    CHECK(b && (uintptr_t)b->data % 4 == 0 && *(float *)b->data == expect);
    nnrt_st_free(&f);
    free(buf);
}

static void test_rejects(void) {
    nnrt_error err;
    nnrt_st_file f;
    static const unsigned char short_file[5] = {1, 2, 3, 4, 5};
    CHECK_ERR(nnrt_st_read_memory(short_file, 5, "t.safetensors", &f, &err), NNRT_EFORMAT, err,
              "truncated: expected the header length (8 bytes) at byte offset 0 but the file ends "
              "at byte 5");

    /* Header length past the end of the file, and above the 100 MB cap. */
    unsigned char past[16] = {100, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
    CHECK_ERR(nnrt_st_read_memory(past, 16, "t.safetensors", &f, &err), NNRT_EFORMAT, err,
              "header length 100 (bytes 0-7) goes past the end of the file (16 bytes)");
    unsigned char huge[16] = {0, 0, 0, 0, 0, 0, 0, 0x80, '{', '}'};
    CHECK_ERR(nnrt_st_read_memory(huge, 16, "t.safetensors", &f, &err), NNRT_EFORMAT, err,
              "exceeds the 100000000 byte limit");
    unsigned char zero[8] = {0};
    CHECK_ERR(nnrt_st_read_memory(zero, 8, "t.safetensors", &f, &err), NNRT_EFORMAT, err,
              "too small");

    /* JSON syntax. Offsets in messages are file offsets (header starts at byte 8). */
    BAD("[]      ", 0, "byte offset 8: expected '{' at the start of the header");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}", 4,
        "byte offset 61: unexpected end of header: expected ',' or '}'");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},}", 4,
        "expected a string as a tensor name");
    BAD("{'a':{}}", 0, "byte offset 9: expected a string");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,],\"data_offsets\":[0,4]}}", 4,
        "expected an integer");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[01],\"data_offsets\":[0,4]}}", 4, "leading zero");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4,
        "negative number");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}", 4,
        "not a fraction or exponent");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[1e0],\"data_offsets\":[0,4]}}", 4,
        "not a fraction or exponent");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999],\"data_offsets\":[0,4]}}",
        4, "integer too large");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}} x", 4,
        "unexpected data after the header object");
    {   /* NUL padding is not whitespace */
        static const char nul[] = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}\0\0";
        size_t n;
        unsigned char *buf = make_st_n(nul, sizeof nul - 1, 4, &n);
        CHECK_ERR(nnrt_st_read_memory(buf, n, "t.safetensors", &f, &err), NNRT_EFORMAT, err,
                  "unexpected data after the header object");
        free(buf);
    }
    BAD("{\"a\\q\":{}}", 0, "invalid escape");
    BAD("{\"a\\u12\":{}}", 0, "4 hex digits");
    BAD("{\"a\\ud800\":{}}", 0, "unpaired UTF-16 surrogate");
    BAD("{\"a\\udc00\":{}}", 0, "unpaired UTF-16 surrogate");
    BAD("{\"a\\u0000\":{}}", 0, "U+0000");
    BAD("{\"a\tb\":{}}", 0, "byte offset 11: control character 0x09");
    BAD("{\"abc", 0, "byte offset 9: unterminated string");
    BAD("{\"\xc3\x28\":{}}", 0, "not valid UTF-8 at byte offset 10");
    BAD("{\"\xed\xa0\x80\":{}}", 0, "not valid UTF-8"); /* encoded surrogate */
    BAD("{\"\xc0\xaf\":{}}", 0, "not valid UTF-8");     /* overlong */
    BAD("{\"a\":[]}", 0, "expected '{' in tensor 'a'");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 0, "tensor 'a' has no \"data_offsets\"");
    BAD("{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\"}}", 0, "duplicate field 'dtype'");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 4,
        "unknown field 'x' in tensor 'a'");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 4,
        "more than 2 values");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4,
        "must hold 2 integers, not 1");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
        "more than 6 values");
    BAD("{\"__metadata__\":{\"k\":1}}", 0, "values are strings");
    BAD("{\"__metadata__\":{\"k\":\"a\",\"k\":\"b\"}}", 0, "duplicate \"__metadata__\" key 'k'");
    BAD("{\"__metadata__\":{},\"__metadata__\":{}}", 0, "duplicate \"__metadata__\"");

    /* Schema and data layout. */
    BAD("{\"a\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[0,2]}}", 2,
        "tensor 'a' has dtype 'BF16', which nnrt does not support");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 20,
        "shape [2, 3] of F32 needs 24 bytes but data_offsets [0, 20] hold 20");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4,
        "data_offsets [0, 8] go past the end of the data area (4 bytes from byte offset");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}", 8,
        "end before they begin");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
        "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
        12, "tensor 'b' data_offsets [4, 12] overlap tensor 'a' [0, 8]");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8,
        "4 unused bytes in the data area before tensor 'a'");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 12,
        "8 unused bytes at the end of the file");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
        "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
        8, "duplicate tensor name 'a'");
    BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
        "\"data_offsets\":[0,4]}}",
        4, "shape [4294967296, 4294967296, 4294967296] overflows");
    BAD("{\"a\":{\"dtype\":\"F64\",\"shape\":[2305843009213693952],\"data_offsets\":[0,8]}}", 8,
        "overflows"); /* 2^61 elements * 8 bytes = 2^64 */

    /* Files: missing, a directory, and a file truncated in its data. */
    CHECK_ERR(nnrt_st_read(test_path("nope.safetensors"), &f, &err), NNRT_EIO, err,
              "nope.safetensors: cannot open: No such file or directory");
    CHECK_ERR(nnrt_st_read(test_dir, &f, &err), NNRT_EIO, err, "not a regular file");
    size_t n;
    unsigned char *buf = make_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}",
                                 16, &n);
    const char *path = test_path("trunc.safetensors");
    test_write_file(path, buf, n - 3);
    CHECK_ERR(nnrt_st_read(path, &f, &err), NNRT_EFORMAT, err,
              "trunc.safetensors: tensor 'a' (at byte offset 9): data_offsets [0, 16] go past "
              "the end of the data area (13 bytes from byte offset 63)");
    unlink(path);
    free(buf);
    CHECK_EQ(nnrt_st_read(NULL, &f, NULL), NNRT_ENULL);
    CHECK_EQ(nnrt_st_read(path, NULL, NULL), NNRT_ENULL);
}

static void test_write_rejects(void) {
    nnrt_error err;
    float v[2] = {1, 2};
    const char *path = test_path("bad.safetensors");
    nnrt_st_tensor dup[2] = {{"x", NNRT_F32, 1, {1}, v, 4}, {"x", NNRT_I32, 1, {1}, v, 4}};
    CHECK_ERR(nnrt_st_write(path, 2, dup, 0, NULL, NULL, &err), NNRT_EARG, err,
              "duplicate tensor name 'x'");
    nnrt_st_tensor size = {"x", NNRT_F32, 1, {2}, v, 4};
    CHECK_ERR(nnrt_st_write(path, 1, &size, 0, NULL, NULL, &err), NNRT_EARG, err,
              "does not match its shape");
    nnrt_st_tensor meta = {"__metadata__", NNRT_F32, 1, {1}, v, 4};
    CHECK_ERR(nnrt_st_write(path, 1, &meta, 0, NULL, NULL, &err), NNRT_EARG, err,
              "invalid tensor name");
    nnrt_st_tensor dtype = {"x", 9, 1, {1}, v, 4};
    CHECK_ERR(nnrt_st_write(path, 1, &dtype, 0, NULL, NULL, &err), NNRT_EARG, err,
              "unknown dtype");
    nnrt_st_tensor nodata = {"x", NNRT_F32, 1, {1}, NULL, 4};
    CHECK_ERR(nnrt_st_write(path, 1, &nodata, 0, NULL, NULL, &err), NNRT_ENULL, err,
              "has no data");
    const char *keys[] = {"k", "k"}, *values[] = {"a", "b"};
    CHECK_ERR(nnrt_st_write(path, 0, NULL, 2, keys, values, &err), NNRT_EARG, err,
              "duplicate metadata key 'k'");
    CHECK_EQ(test_dir_entries(), 0);
}

/* Atomic replacement: the temporary file never survives, a failed write keeps the old
 * file, and a reader sees either the old or the new file. */
static void test_atomic(void) {
    nnrt_error err;
    float a[3] = {1, 2, 3}, b[3] = {4, 5, 6};
    nnrt_st_tensor t = {"w", NNRT_F32, 1, {3}, a, sizeof a};
    const char *path = test_path("ckpt.safetensors");
    CHECK_EQ(nnrt_st_write(path, 1, &t, 0, NULL, NULL, &err), NNRT_OK);
    CHECK_EQ(test_dir_entries(), 1);
    t.data = b;
    CHECK_EQ(nnrt_st_write(path, 1, &t, 0, NULL, NULL, &err), NNRT_OK);
    CHECK_EQ(test_dir_entries(), 1);
    nnrt_st_file f;
    CHECK_EQ(nnrt_st_read(path, &f, &err), NNRT_OK);
    CHECK(f.n == 1 && !memcmp(f.tensors[0].data, b, sizeof b));
    nnrt_st_free(&f);

    /* rename() onto a directory fails: error, temp file removed, directory untouched. */
    const char *dir = test_path("adir");
    CHECK(mkdir(dir, 0777) == 0);
    CHECK_ERR(nnrt_st_write(dir, 1, &t, 0, NULL, NULL, &err), NNRT_EIO, err, "rename failed");
    CHECK_EQ(test_dir_entries(), 2);
    rmdir(dir);
    /* A missing directory: cannot create the temporary file, nothing written. */
    CHECK_ERR(nnrt_st_write(test_path("no/such/dir.safetensors"), 1, &t, 0, NULL, NULL, &err),
              NNRT_EIO, err, "cannot create");
    CHECK_EQ(test_dir_entries(), 1);
    unlink(path);
}

int main(void) {
    test_tmpdir();
    test_round_trip();
    test_exact_bytes();
    test_accepts();
    test_rejects();
    test_write_rejects();
    test_atomic();
    test_tmpdir_remove();
    return check_summary("test_safetensors");
}
