/* test_checkpoint.c — nnrt_save / nnrt_load with hand-written model descriptions. */
#include "check.h"

/* A small MLP-with-batchnorm state block laid out the way the compiler would:
 *   h1.weight [4, 3] param, h1.bias [4] param, bn.running_mean [4] state,
 *   h1.weight.momentum [4, 3] slot, step [] step (I32), lr [] hyper (F64). */
static const nnrt_tensor_info mlp_tensors[] = {
    {"h1.weight", NNRT_PARAM, NNRT_F32, 2, {4, 3}, 0, 48},
    {"h1.bias", NNRT_PARAM, NNRT_F32, 1, {4}, 48, 16},
    {"bn.running_mean", NNRT_STATE, NNRT_F32, 1, {4}, 64, 16},
    {"h1.weight.momentum", NNRT_SLOT, NNRT_F32, 2, {4, 3}, 80, 48},
    {"step", NNRT_STEP, NNRT_I32, 0, {0}, 128, 4},
    {"lr", NNRT_HYPER, NNRT_F64, 0, {0}, 136, 8},
};
static const nnrt_io_info mlp_inputs[] = {{"x", NNRT_F32, 2, {-1, 3}, 3}};
static const nnrt_io_info mlp_labels[] = {{"y", NNRT_I32, 1, {-1}, 1}};
static const nnrt_io_info mlp_outputs[] = {{"probs", NNRT_F32, 2, {-1, 4}, 4}};
static const nnrt_model_info mlp = {"mlp", 64, 144, 0, 6, mlp_tensors, 1, mlp_inputs,
                                    1, mlp_labels, 1, mlp_outputs, NULL, 0};

/* The same model with a wider layer: every weight shape differs. */
static const nnrt_tensor_info wide_tensors[] = {
    {"h1.weight", NNRT_PARAM, NNRT_F32, 2, {5, 3}, 0, 60},
    {"h1.bias", NNRT_PARAM, NNRT_F32, 1, {5}, 64, 20},
    {"bn.running_mean", NNRT_STATE, NNRT_F32, 1, {5}, 96, 20},
};
static const nnrt_model_info wide = {"wide", 64, 128, 0, 3, wide_tensors, 0, NULL,
                                     0, NULL, 0, NULL, NULL, 0};

/* Only the parameters (no batchnorm state). */
static const nnrt_model_info params_only = {"params_only", 64, 144, 0, 2, mlp_tensors, 0, NULL,
                                            0, NULL, 0, NULL, NULL, 0};

/* h1.bias stored as F64 */
static const nnrt_tensor_info f64_tensors[] = {
    {"h1.weight", NNRT_PARAM, NNRT_F32, 2, {4, 3}, 0, 48},
    {"h1.bias", NNRT_PARAM, NNRT_F64, 1, {4}, 48, 32},
    {"bn.running_mean", NNRT_STATE, NNRT_F32, 1, {4}, 80, 16},
};
static const nnrt_model_info f64_model = {"f64_model", 64, 96, 0, 3, f64_tensors, 0, NULL,
                                          0, NULL, 0, NULL, NULL, 0};

static void fill(unsigned char *state, size_t n, unsigned char seed) {
    for (size_t i = 0; i < n; i++) state[i] = (unsigned char)(seed + 7 * i);
}

static void test_round_trip(void) {
    unsigned char a[144], b[144];
    nnrt_error err = {{0}};
    fill(a, sizeof a, 1);
    const char *path = test_path("w.safetensors");
    const char *keys[] = {"model"}, *values[] = {"mlp"};

    /* Weights only: params and state; slots, step and hyper stay as they were. */
    CHECK_EQ(nnrt_save(&mlp, a, path, NNRT_KINDS_WEIGHTS, 1, keys, values, &err), NNRT_OK);
    nnrt_st_file f;
    CHECK_EQ(nnrt_st_read(path, &f, &err), NNRT_OK);
    CHECK_EQ(f.n, 3);
    CHECK(f.n_meta == 1 && !strcmp(f.meta_values[0], "mlp"));
    nnrt_st_free(&f);
    memset(b, 0xEE, sizeof b);
    CHECK_EQ(nnrt_load(&mlp, b, path, NNRT_KINDS_WEIGHTS, 0, &err), NNRT_OK);
    CHECK(memcmp(a, b, 80) == 0);
    CHECK(b[80] == 0xEE && b[143] == 0xEE);

    /* Full checkpoint: everything round-trips. */
    CHECK_EQ(nnrt_save(&mlp, a, path, NNRT_KINDS_ALL, 0, NULL, NULL, &err), NNRT_OK);
    memset(b, 0, sizeof b);
    CHECK_EQ(nnrt_load(&mlp, b, path, NNRT_KINDS_ALL, 0, &err), NNRT_OK);
    for (int i = 0; i < mlp.n_tensors; i++)
        CHECK(memcmp(a + mlp_tensors[i].offset, b + mlp_tensors[i].offset,
                     mlp_tensors[i].bytes) == 0);

    /* Loading weights only from a full checkpoint ignores (but checks) the rest. */
    memset(b, 0, sizeof b);
    CHECK_EQ(nnrt_load(&mlp, b, path, NNRT_KINDS_WEIGHTS, 0, &err), NNRT_OK);
    CHECK(memcmp(a, b, 80) == 0 && b[80] == 0);

    /* Optional kinds: loaded when present, fine when absent. */
    memset(b, 0, sizeof b);
    CHECK_EQ(nnrt_load(&mlp, b, path, 1u << NNRT_PARAM, 1u << NNRT_SLOT, &err), NNRT_OK);
    CHECK(memcmp(a, b, 64) == 0 && memcmp(a + 80, b + 80, 48) == 0 && b[64] == 0);
    CHECK_EQ(nnrt_save(&mlp, a, path, 1u << NNRT_PARAM, 0, NULL, NULL, &err), NNRT_OK);
    CHECK_EQ(nnrt_load(&mlp, b, path, 1u << NNRT_PARAM, 1u << NNRT_STATE | 1u << NNRT_SLOT,
                       &err),
             NNRT_OK);
    unlink(path);
}

/* Every mismatch is reported with the file, the tensor and both sides, and leaves the
 * state exactly as it was. */
static void test_mismatch(void) {
    unsigned char a[144], b[144], snapshot[144];
    nnrt_error err;
    fill(a, sizeof a, 3);
    fill(b, sizeof b, 200);
    memcpy(snapshot, b, sizeof b);
    char path[512], expect[700];
    snprintf(path, sizeof path, "%s", test_path("w.safetensors"));
    CHECK_EQ(nnrt_save(&mlp, a, path, NNRT_KINDS_WEIGHTS, 0, NULL, NULL, &err), NNRT_OK);

    /* Shape: the first mismatching tensor in the file's order, both shapes. */
    unsigned char w[128];
    memset(w, 0x5A, sizeof w);
    snprintf(expect, sizeof expect,
             "%s: tensor 'bn.running_mean' has shape [4] in the file but [5] in the model", path);
    CHECK_ERR(nnrt_load(&wide, w, path, NNRT_KINDS_WEIGHTS, 0, &err), NNRT_EMISMATCH, err,
              "has shape [4] in the file but [5] in the model");
    CHECK(!strcmp(err.msg, expect));
    for (size_t i = 0; i < sizeof w; i++) CHECK(w[i] == 0x5A);

    /* A tensor the model does not have. */
    CHECK_ERR(nnrt_load(&params_only, b, path, NNRT_KINDS_WEIGHTS, 0, &err), NNRT_EMISMATCH, err,
              "tensor 'bn.running_mean' is in the file but not in model 'params_only'");
    CHECK(!memcmp(b, snapshot, sizeof b));

    /* A dtype difference. */
    unsigned char c[96];
    memset(c, 0x11, sizeof c);
    CHECK_ERR(nnrt_load(&f64_model, c, path, NNRT_KINDS_WEIGHTS, 0, &err), NNRT_EMISMATCH, err,
              "tensor 'h1.bias' has dtype F32 in the file but F64 in the model");
    for (size_t i = 0; i < sizeof c; i++) CHECK(c[i] == 0x11);

    /* Required tensors missing from the file (a params-only file loaded as weights). */
    CHECK_EQ(nnrt_save(&params_only, a, path, NNRT_KINDS_ALL, 0, NULL, NULL, &err), NNRT_OK);
    snprintf(expect, sizeof expect,
             "%s: state 'bn.running_mean' of model 'mlp' is missing from the file", path);
    CHECK_ERR(nnrt_load(&mlp, b, path, NNRT_KINDS_WEIGHTS, 0, &err), NNRT_EMISMATCH, err,
              "is missing from the file");
    CHECK(!strcmp(err.msg, expect));
    CHECK_ERR(nnrt_load(&mlp, b, path, NNRT_KINDS_ALL, 0, &err), NNRT_EMISMATCH, err,
              "state 'bn.running_mean' of model 'mlp' is missing from the file (and 3 more)");
    CHECK(!memcmp(b, snapshot, sizeof b));

    /* A malformed file and a missing file: format / I/O errors, state unchanged. */
    size_t n;
    unsigned char *bytes = test_read_file(path, &n);
    bytes[8] = '!';
    test_write_file(path, bytes, n);
    free(bytes);
    CHECK_ERR(nnrt_load(&mlp, b, path, 1u << NNRT_PARAM, 0, &err), NNRT_EFORMAT, err,
              "malformed header at byte offset 8: expected '{'");
    CHECK(!memcmp(b, snapshot, sizeof b));
    unlink(path);
    CHECK_ERR(nnrt_load(&mlp, b, path, NNRT_KINDS_WEIGHTS, 0, &err), NNRT_EIO, err,
              "cannot open");
    CHECK(!memcmp(b, snapshot, sizeof b));
}

static void test_bad_arguments(void) {
    unsigned char a[144] = {0};
    nnrt_error err;
    const char *path = test_path("x.safetensors");
    CHECK_EQ(nnrt_save(NULL, a, path, NNRT_KINDS_ALL, 0, NULL, NULL, &err), NNRT_ENULL);
    CHECK_EQ(nnrt_save(&mlp, NULL, path, NNRT_KINDS_ALL, 0, NULL, NULL, &err), NNRT_ENULL);
    CHECK_EQ(nnrt_load(&mlp, a, NULL, NNRT_KINDS_ALL, 0, &err), NNRT_ENULL);
    CHECK_EQ(nnrt_load(&mlp, NULL, path, NNRT_KINDS_ALL, 0, NULL), NNRT_ENULL);

    /* A description whose tensor lies outside the state, or whose size disagrees. */
    static const nnrt_tensor_info outside_t[] = {{"w", NNRT_PARAM, NNRT_F32, 1, {4}, 140, 16}};
    static const nnrt_model_info outside = {"outside", 1, 144, 0, 1, outside_t, 0, NULL,
                                            0, NULL, 0, NULL, NULL, 0};
    CHECK_ERR(nnrt_save(&outside, a, path, NNRT_KINDS_ALL, 0, NULL, NULL, &err), NNRT_EARG, err,
              "lies outside the 144 byte state");
    static const nnrt_tensor_info size_t_[] = {{"w", NNRT_PARAM, NNRT_F32, 1, {4}, 0, 12}};
    static const nnrt_model_info size = {"size", 1, 144, 0, 1, size_t_, 0, NULL, 0, NULL, 0, NULL, NULL, 0};
    CHECK_ERR(nnrt_load(&size, a, path, NNRT_KINDS_ALL, 0, &err), NNRT_EARG, err,
              "inconsistent dtype, shape or size");
    CHECK_EQ(test_dir_entries(), 0);
}

/* PyTorch's BatchNorm state_dict holds '<layer>.num_batches_tracked' (int64 scalar): it loads
 * (skipped); another unknown tensor, or a counter of another shape, is still refused. */
static void test_torch_batchnorm_counter(void) {
    unsigned char a[144], b[144];
    nnrt_error err;
    fill(a, sizeof a, 9);
    memset(b, 0, sizeof b);
    float w[12], bias[4], mean[4];
    memcpy(w, a, sizeof w);
    memcpy(bias, a + 48, sizeof bias);
    memcpy(mean, a + 64, sizeof mean);
    int64_t count = 5;
    nnrt_st_tensor ts[4] = {
        {"h1.weight", NNRT_F32, 2, {4, 3}, w, sizeof w},
        {"h1.bias", NNRT_F32, 1, {4}, bias, sizeof bias},
        {"bn.running_mean", NNRT_F32, 1, {4}, mean, sizeof mean},
        {"bn.num_batches_tracked", NNRT_I64, 0, {0}, &count, sizeof count},
    };
    const char *path = test_path("torch.safetensors");
    CHECK_EQ(nnrt_st_write(path, 4, ts, 0, NULL, NULL, &err), NNRT_OK);
    CHECK_EQ(nnrt_load(&mlp, b, path, NNRT_KINDS_WEIGHTS, 0, &err), NNRT_OK);
    CHECK(!memcmp(a, b, 80)); /* params and the running mean, byte for byte */

    int64_t counts[2] = {1, 2};
    ts[3] = (nnrt_st_tensor){"bn.num_batches_tracked", NNRT_I64, 1, {2}, counts, sizeof counts};
    CHECK_EQ(nnrt_st_write(path, 4, ts, 0, NULL, NULL, &err), NNRT_OK);
    CHECK_ERR(nnrt_load(&mlp, b, path, NNRT_KINDS_WEIGHTS, 0, &err), NNRT_EMISMATCH, err,
              "tensor 'bn.num_batches_tracked' is in the file but not in model 'mlp'");
    remove(path);
}

/* nnrt_load runs the model's prepare entry after loading: a derived tensor follows the
 * loaded weights; a failing prepare fails the load with its status. */
static int prepare_calls, prepare_status;
static int test_prepare(void *state, void *work, int n, void **args) {
    prepare_calls++;
    if (!work || n != 1 || args) return NNRT_EARG;
    float *s = state, *scratch = work, sum = 0;
    for (int i = 0; i < 16; i++) scratch[i] = s[i] * 2; /* work is usable memory */
    for (int i = 0; i < 16; i++) sum += scratch[i];
    s[16] = sum; /* derived: twice the sum of h1.weight and h1.bias */
    return prepare_status;
}

static void test_load_prepares(void) {
    static const nnrt_tensor_info t[] = {
        {"h1.weight", NNRT_PARAM, NNRT_F32, 2, {4, 3}, 0, 48},
        {"h1.bias", NNRT_PARAM, NNRT_F32, 1, {4}, 48, 16},
        {"derived.sum", NNRT_DERIVED, NNRT_F32, 0, {0}, 64, 4},
    };
    nnrt_model_info info = {"prep", 1, 68, 0, 3, t, 0, NULL, 0, NULL, 0, NULL, test_prepare, 64};
    float a[17], b[17] = {0};
    for (int i = 0; i < 16; i++) a[i] = (float)i;
    a[16] = -1;
    nnrt_error err = {{0}};
    const char *path = test_path("prep.safetensors");
    CHECK_EQ(nnrt_save(&info, a, path, NNRT_KINDS_ALL, 0, NULL, NULL, &err), NNRT_OK);
    prepare_calls = 0, prepare_status = NNRT_OK;
    CHECK_EQ(nnrt_load(&info, b, path, NNRT_KINDS_WEIGHTS, 0, &err), NNRT_OK);
    CHECK_EQ(prepare_calls, 1);
    CHECK(b[16] == 240.0f); /* 2 * (0 + 1 + ... + 15) */
    prepare_status = NNRT_ENONFINITE;
    CHECK_EQ(nnrt_load(&info, b, path, NNRT_KINDS_WEIGHTS, 0, &err), NNRT_ENONFINITE);
    CHECK(strstr(err.msg, "prep") != NULL);
    /* no prepare entry: nothing is called */
    info.prepare = NULL;
    prepare_calls = 0;
    CHECK_EQ(nnrt_load(&info, b, path, NNRT_KINDS_WEIGHTS, 0, &err), NNRT_OK);
    CHECK_EQ(prepare_calls, 0);
    remove(path);
}

int main(void) {
    test_tmpdir();
    test_load_prepares();
    test_torch_batchnorm_counter();
    test_round_trip();
    test_mismatch();
    test_bad_arguments();
    test_tmpdir_remove();
    return check_summary("test_checkpoint");
}
