/* checkpoint.c — a model's persistent tensors to and from safetensors, through its
 * nnrt_model_info (names, kinds, dtypes, shapes and offsets in the state block). */
#include "nnrt_internal.h"

#include <stdlib.h>
#include <string.h>

static const char *kind_name(int kind) {
    switch (kind) {
    case NNRT_PARAM: return "param";
    case NNRT_STATE: return "state";
    case NNRT_SLOT: return "optimizer slot";
    case NNRT_STEP: return "step counter";
    case NNRT_HYPER: return "hyperparameter";
    default: return "tensor";
    }
}

static bool kind_in(unsigned mask, int kind) {
    return kind >= 0 && kind < 32 && (mask & (1u << kind));
}

/* Checks that the model's description of tensor i is self-consistent and inside the state
 * block, so that neither save nor load can touch memory outside it. */
static int check_info_tensor(const nnrt_model_info *info, int i, nnrt_error *err) {
    const nnrt_tensor_info *t = &info->tensors[i];
    uint64_t bytes;
    const char *model = info->name ? info->name : "?";
    if (!t->name) return nnrti_fail(err, NNRT_EARG, "model '%s': tensor %d has no name", model, i);
    if (!nnrt_dtype_size(t->dtype) || t->rank < 0 || t->rank > NNRT_MAX_RANK ||
        !nnrti_shape_bytes(t->rank, t->shape, nnrt_dtype_size(t->dtype), NULL, &bytes) ||
        bytes != t->bytes)
        return nnrti_fail(err, NNRT_EARG,
                          "model '%s': tensor '%.100s' has an inconsistent dtype, shape or size",
                          model, t->name);
    if (t->offset > info->state_bytes || t->bytes > info->state_bytes - t->offset)
        return nnrti_fail(err, NNRT_EARG,
                          "model '%s': tensor '%.100s' at offset %llu (%llu bytes) lies outside "
                          "the %llu byte state",
                          model, t->name, (unsigned long long)t->offset,
                          (unsigned long long)t->bytes, (unsigned long long)info->state_bytes);
    return NNRT_OK;
}

static int check_info(const nnrt_model_info *info, nnrt_error *err) {
    if (info->n_tensors < 0 || (info->n_tensors && !info->tensors))
        return nnrti_fail(err, NNRT_EARG, "model '%s': invalid tensor table",
                          info->name ? info->name : "?");
    for (int i = 0; i < info->n_tensors; i++) {
        int rc = check_info_tensor(info, i, err);
        if (rc) return rc;
    }
    return NNRT_OK;
}

int nnrt_save(const nnrt_model_info *info, const void *state, const char *path,
              unsigned kinds_mask, int n_meta, const char *const *keys,
              const char *const *values, nnrt_error *err) {
    if (!info || !path) return nnrti_fail(err, NNRT_ENULL, "nnrt_save: NULL model info or path");
    if (!state && info->state_bytes)
        return nnrti_fail(err, NNRT_ENULL, "%s: NULL state for model '%s'", path,
                          info->name ? info->name : "?");
    int rc = check_info(info, err);
    if (rc) return rc;
    nnrt_st_tensor *list = calloc((size_t)info->n_tensors + 1, sizeof *list);
    if (!list) return nnrti_fail(err, NNRT_ENOMEM, "%s: out of memory", path);
    int n = 0;
    for (int i = 0; i < info->n_tensors; i++) {
        const nnrt_tensor_info *t = &info->tensors[i];
        if (!kind_in(kinds_mask, t->kind)) continue;
        nnrt_st_tensor *o = &list[n++];
        /* nnrt_st_write only reads the name and the data. */
        o->name = (char *)t->name;
        o->dtype = t->dtype;
        o->rank = t->rank;
        memcpy(o->shape, t->shape, sizeof o->shape);
        o->data = (char *)state + t->offset;
        o->bytes = t->bytes;
    }
    rc = nnrt_st_write(path, n, list, n_meta, keys, values, err);
    free(list);
    return rc;
}

static int find_tensor(const nnrt_model_info *info, const char *name) {
    for (int i = 0; i < info->n_tensors; i++)
        if (!strcmp(info->tensors[i].name, name)) return i;
    return -1;
}

/* `<layer>.num_batches_tracked`: a scalar integer PyTorch's BatchNorm keeps in its state_dict,
 * which nnc's batchnorm (momentum always set) never reads. Files from PyTorch load with it. */
static bool is_batchnorm_counter(const nnrt_st_tensor *t) {
    static const char suffix[] = ".num_batches_tracked";
    size_t len = strlen(t->name), n = sizeof suffix - 1;
    return len > n && !strcmp(t->name + len - n, suffix) && t->rank == 0 &&
           (t->dtype == NNRT_I64 || t->dtype == NNRT_I32);
}

int nnrt_load(const nnrt_model_info *info, void *state, const char *path,
              unsigned required_mask, unsigned optional_mask, nnrt_error *err) {
    if (!info || !path) return nnrti_fail(err, NNRT_ENULL, "nnrt_load: NULL model info or path");
    const char *model = info->name ? info->name : "?";
    if (!state && info->state_bytes)
        return nnrti_fail(err, NNRT_ENULL, "%s: NULL state for model '%s'", path, model);
    int rc = check_info(info, err);
    if (rc) return rc;

    nnrt_st_file file;
    if ((rc = nnrt_st_read(path, &file, err))) return rc;
    int *match = calloc((size_t)file.n + 1, sizeof *match);
    char *found = calloc((size_t)info->n_tensors + 1, 1);
    if (!match || !found) {
        rc = nnrti_fail(err, NNRT_ENOMEM, "%s: out of memory", path);
        goto done;
    }

    /* 1. Every tensor in the file must be one of the model's, with the same dtype and
     *    shape, whether or not its kind is being loaded: a mismatch means another model. */
    for (int i = 0; i < file.n; i++) {
        const nnrt_st_tensor *f = &file.tensors[i];
        int m = find_tensor(info, f->name);
        if (m < 0 && is_batchnorm_counter(f)) {
            match[i] = -1; /* PyTorch's BatchNorm step count: nnc's batchnorm has no use for it */
            continue;
        }
        if (m < 0) {
            rc = nnrti_fail(err, NNRT_EMISMATCH,
                            "%s: tensor '%.100s' is in the file but not in model '%s'", path,
                            f->name, model);
            goto done;
        }
        const nnrt_tensor_info *t = &info->tensors[m];
        if (f->dtype != t->dtype) {
            rc = nnrti_fail(err, NNRT_EMISMATCH,
                            "%s: tensor '%.100s' has dtype %s in the file but %s in the model",
                            path, f->name, nnrt_dtype_name(f->dtype), nnrt_dtype_name(t->dtype));
            goto done;
        }
        if (f->rank != t->rank ||
            memcmp(f->shape, t->shape, (size_t)t->rank * sizeof t->shape[0]) != 0) {
            char fs[160], ms[160];
            nnrti_format_shape(fs, sizeof fs, f->rank, f->shape);
            nnrti_format_shape(ms, sizeof ms, t->rank, t->shape);
            rc = nnrti_fail(err, NNRT_EMISMATCH,
                            "%s: tensor '%.100s' has shape %s in the file but %s in the model",
                            path, f->name, fs, ms);
            goto done;
        }
        match[i] = m;
        found[m] = 1;
    }

    /* 2. Every tensor of a required kind must be present. */
    int missing = 0, first_missing = -1;
    for (int m = 0; m < info->n_tensors; m++)
        if (kind_in(required_mask, info->tensors[m].kind) && !found[m]) {
            if (first_missing < 0) first_missing = m;
            missing++;
        }
    if (missing) {
        const nnrt_tensor_info *t = &info->tensors[first_missing];
        char more[48] = "";
        if (missing > 1) snprintf(more, sizeof more, " (and %d more)", missing - 1);
        rc = nnrti_fail(err, NNRT_EMISMATCH,
                        "%s: %s '%.100s' of model '%s' is missing from the file%s", path,
                        kind_name(t->kind), t->name, model, more);
        goto done;
    }

    /* 3. Only now touch the state. */
    for (int i = 0; i < file.n; i++) {
        if (match[i] < 0) continue; /* skipped above */
        const nnrt_tensor_info *t = &info->tensors[match[i]];
        if (kind_in(required_mask | optional_mask, t->kind) && t->bytes)
            memcpy((char *)state + t->offset, file.tensors[i].data, (size_t)t->bytes);
    }
    rc = NNRT_OK;
    /* 4. Derived tensors follow the weights just loaded. */
    if (info->prepare) {
        void *work = NULL;
        if (info->prepare_work_bytes) {
            work = aligned_alloc(64, (size_t)((info->prepare_work_bytes + 63) / 64 * 64));
            if (!work) {
                rc = nnrti_fail(err, NNRT_ENOMEM, "%s: out of memory preparing model '%s'", path, model);
                goto done;
            }
        }
        int prc = info->prepare(state, work, 1, NULL);
        free(work);
        if (prc) rc = nnrti_fail(err, prc, "%s: preparing the derived tensors of model '%s' failed (%s)", path,
                                 model, nnrt_strerror(prc));
    }
done:
    free(match);
    free(found);
    nnrt_st_free(&file);
    return rc;
}
