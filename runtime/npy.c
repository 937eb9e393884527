/* npy.c — NumPy .npy files (https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html)
 *
 *   "\x93NUMPY" major minor | header length (u16 LE for 1.x, u32 LE for 2.x and 3.x) |
 *   header: a Python dict literal {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
 *   padded with spaces and a final '\n' so the data starts at a multiple of 64 | data
 *
 * The header parser accepts exactly that dict (keys in any order, each once, ' or " quotes,
 * optional trailing commas, Python 2 'L' suffixes on integers) and nothing else.
 */
#include "nnrt_internal.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

enum { NPY_MAX_HEADER = 1 << 20, NPY_ALIGN = 64 };

void nnrt_array_free(nnrt_array *a) {
    if (!a) return;
    free(a->data);
    memset(a, 0, sizeof *a);
}

/* ---------------------------------------------------------------- header parser */

typedef struct pyparse {
    const char *s;
    size_t n, pos;
    uint64_t base; /* file offset of s[0] */
    const char *file;
    nnrt_error *err;
} pyparse;

static int py_fail(pyparse *p, const char *fmt, ...) NNRTI_PRINTF(2, 3);
static int py_fail(pyparse *p, const char *fmt, ...) {
    char what[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return nnrti_fail(p->err, NNRT_EFORMAT, "%s: malformed header at byte offset %llu: %s",
                      p->file, (unsigned long long)(p->base + p->pos), what);
}

static void py_ws(pyparse *p) {
    while (p->pos < p->n && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' ||
                             p->s[p->pos] == '\n' || p->s[p->pos] == '\r'))
        p->pos++;
}

static int py_peek(pyparse *p) {
    py_ws(p);
    return p->pos < p->n ? (unsigned char)p->s[p->pos] : -1;
}

static bool py_accept(pyparse *p, char c) {
    if (py_peek(p) != (unsigned char)c) return false;
    p->pos++;
    return true;
}

/* A quoted string without escapes, copied into buf (at most size-1 characters). */
static int py_string(pyparse *p, char *buf, size_t size) {
    int q = py_peek(p);
    if (q != '\'' && q != '"') return py_fail(p, "expected a quoted string");
    size_t start = ++p->pos;
    while (p->pos < p->n && p->s[p->pos] != q) {
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c == '\\' || c < 0x20 || c >= 0x7f) return py_fail(p, "unexpected character in a string");
        p->pos++;
    }
    if (p->pos >= p->n) {
        p->pos = start - 1;
        return py_fail(p, "unterminated string");
    }
    size_t len = p->pos - start;
    if (len >= size) {
        p->pos = start;
        return py_fail(p, "string too long");
    }
    memcpy(buf, p->s + start, len);
    buf[len] = 0;
    p->pos++;
    return NNRT_OK;
}

static int py_int(pyparse *p, int64_t *out) {
    int c = py_peek(p);
    if (c == '-') return py_fail(p, "negative dimension");
    if (c < '0' || c > '9') return py_fail(p, "expected an integer");
    size_t start = p->pos;
    int64_t v = 0;
    while (p->pos < p->n && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') {
        int d = p->s[p->pos] - '0';
        if (v > (INT64_MAX - d) / 10) {
            p->pos = start;
            return py_fail(p, "dimension too large");
        }
        v = v * 10 + d;
        p->pos++;
    }
    if (p->pos < p->n && p->s[p->pos] == 'L') p->pos++; /* Python 2 long */
    *out = v;
    return NNRT_OK;
}

/* tuple = '(' ')' | '(' int ',' ')' | '(' int (',' int)+ ','? ')' */
static int py_shape(pyparse *p, int *rank, int64_t *shape) {
    int rc;
    if (!py_accept(p, '(')) return py_fail(p, "expected a tuple for 'shape'");
    *rank = 0;
    bool comma = false;
    while (!py_accept(p, ')')) {
        if (*rank == NNRT_MAX_RANK)
            return py_fail(p, "shape has more than %d dimensions", NNRT_MAX_RANK);
        if ((rc = py_int(p, &shape[*rank]))) return rc;
        (*rank)++;
        comma = py_accept(p, ',');
        if (!comma && py_peek(p) != ')') return py_fail(p, "expected ',' or ')' in 'shape'");
    }
    if (*rank == 1 && !comma) return py_fail(p, "'shape' is not a tuple (a 1-tuple needs a comma)");
    return NNRT_OK;
}

typedef struct npy_header {
    char descr[16];
    bool fortran;
    int rank;
    int64_t shape[NNRT_MAX_RANK];
} npy_header;

static int py_header(pyparse *p, npy_header *h) {
    int rc;
    bool seen[3] = {false, false, false};
    if (!py_accept(p, '{')) return py_fail(p, "expected '{'");
    while (!py_accept(p, '}')) {
        char key[32];
        size_t key_pos = (py_ws(p), p->pos);
        if ((rc = py_string(p, key, sizeof key))) return rc;
        int k = !strcmp(key, "descr") ? 0 : !strcmp(key, "fortran_order") ? 1
                : !strcmp(key, "shape") ? 2 : -1;
        if (k < 0 || seen[k]) {
            p->pos = key_pos;
            return py_fail(p, "%s key '%s'", k < 0 ? "unexpected" : "duplicate", key);
        }
        seen[k] = true;
        if (!py_accept(p, ':')) return py_fail(p, "expected ':'");
        if (k == 0) {
            if ((rc = py_string(p, h->descr, sizeof h->descr))) return rc;
        } else if (k == 1) {
            py_ws(p);
            if (p->n - p->pos >= 4 && !memcmp(p->s + p->pos, "True", 4)) {
                h->fortran = true;
                p->pos += 4;
            } else if (p->n - p->pos >= 5 && !memcmp(p->s + p->pos, "False", 5)) {
                h->fortran = false;
                p->pos += 5;
            } else {
                return py_fail(p, "'fortran_order' must be True or False");
            }
        } else {
            if ((rc = py_shape(p, &h->rank, h->shape))) return rc;
        }
        if (!py_accept(p, ',') && py_peek(p) != '}') return py_fail(p, "expected ',' or '}'");
    }
    if (py_peek(p) != -1) return py_fail(p, "unexpected text after the header dict");
    for (int k = 0; k < 3; k++)
        if (!seen[k]) {
            p->pos = 0;
            return py_fail(p, "the header has no '%s'",
                           k == 0 ? "descr" : k == 1 ? "fortran_order" : "shape");
        }
    return NNRT_OK;
}

static const struct {
    const char *descr;
    int dtype;
} npy_types[] = {{"<f4", NNRT_F32}, {"<i4", NNRT_I32}, {"<f8", NNRT_F64},
                 {"<i8", NNRT_I64}, {"|u1", NNRT_U8}};

/* ---------------------------------------------------------------- load */

static int npy_read(nnrti_input *in, nnrt_array *out, nnrt_error *err) {
    const char *file = in->name;
    unsigned char pre[12];
    char *text = NULL;
    int rc;
    memset(out, 0, sizeof *out);
    if ((rc = nnrti_input_read(in, pre, 8, "the magic string and version", err))) return rc;
    if (memcmp(pre, "\x93NUMPY", 6) != 0)
        return nnrti_fail(err, NNRT_EFORMAT, "%s: not a .npy file (no \\x93NUMPY magic at byte "
                          "offset 0)", file);
    int major = pre[6], minor = pre[7];
    uint64_t hlen;
    if (major == 1) {
        if ((rc = nnrti_input_read(in, pre + 8, 2, "the header length", err))) return rc;
        hlen = (uint64_t)pre[8] | (uint64_t)pre[9] << 8;
    } else if (major == 2 || major == 3) {
        if ((rc = nnrti_input_read(in, pre + 8, 4, "the header length", err))) return rc;
        hlen = (uint64_t)pre[8] | (uint64_t)pre[9] << 8 | (uint64_t)pre[10] << 16 |
               (uint64_t)pre[11] << 24;
    } else {
        return nnrti_fail(err, NNRT_EFORMAT, "%s: unsupported .npy format version %d.%d (byte "
                          "offset 6)", file, major, minor);
    }
    if (hlen > NPY_MAX_HEADER)
        return nnrti_fail(err, NNRT_EFORMAT, "%s: header length %llu exceeds the %d byte limit",
                          file, (unsigned long long)hlen, NPY_MAX_HEADER);
    uint64_t header_start = in->pos;
    text = malloc(hlen ? (size_t)hlen : 1);
    if (!text) return nnrti_fail(err, NNRT_ENOMEM, "%s: out of memory", file);
    if ((rc = nnrti_input_read(in, text, hlen, "the header", err))) goto done;

    npy_header h = {.rank = 0};
    pyparse p = {.s = text, .n = (size_t)hlen, .base = header_start, .file = file, .err = err};
    if ((rc = py_header(&p, &h))) goto done;

    int dtype = -1;
    for (size_t i = 0; i < sizeof npy_types / sizeof npy_types[0]; i++)
        if (!strcmp(h.descr, npy_types[i].descr)) dtype = npy_types[i].dtype;
    if (!strcmp(h.descr, "<u1")) dtype = NNRT_U8;
    if (dtype < 0) {
        if (h.descr[0] == '>')
            rc = nnrti_fail(err, NNRT_EFORMAT, "%s: big-endian dtype '%s' is not supported; save "
                            "it little-endian (arr.astype('<%s'))", file, h.descr, h.descr + 1);
        else
            rc = nnrti_fail(err, NNRT_EFORMAT, "%s: unsupported dtype '%s' (supported: <f4, <i4, "
                            "<f8, <i8, |u1)", file, h.descr);
        goto done;
    }
    if (h.fortran) {
        rc = nnrti_fail(err, NNRT_EFORMAT, "%s: fortran_order True is not supported; save a C-order "
                        "array (np.ascontiguousarray)", file);
        goto done;
    }
    uint64_t bytes;
    if (!nnrti_shape_bytes(h.rank, h.shape, nnrt_dtype_size(dtype), &out->numel, &bytes)) {
        char s[160];
        nnrti_format_shape(s, sizeof s, h.rank, h.shape);
        rc = nnrti_fail(err, NNRT_EFORMAT, "%s: shape %s overflows", file, s);
        goto done;
    }
    /* Check the size before allocating, so a hostile shape cannot cause a huge allocation. */
    if (bytes > in->size - in->pos) {
        char s[160];
        nnrti_format_shape(s, sizeof s, h.rank, h.shape);
        rc = nnrti_fail(err, NNRT_EFORMAT, "%s: truncated: shape %s of %s needs %llu bytes of "
                        "data from byte offset %llu but the file ends at byte %llu", file, s,
                        h.descr, (unsigned long long)bytes, (unsigned long long)in->pos,
                        (unsigned long long)in->size);
        goto done;
    }
    if (bytes < in->size - in->pos) {
        rc = nnrti_fail(err, NNRT_EFORMAT, "%s: %llu unexpected bytes after the data (which ends "
                        "at byte offset %llu)", file,
                        (unsigned long long)(in->size - in->pos - bytes),
                        (unsigned long long)(in->pos + bytes));
        goto done;
    }
    size_t alloc = (size_t)((bytes + NPY_ALIGN - 1) / NPY_ALIGN * NPY_ALIGN);
    out->data = aligned_alloc(NPY_ALIGN, alloc ? alloc : NPY_ALIGN);
    if (!out->data) {
        rc = nnrti_fail(err, NNRT_ENOMEM, "%s: out of memory for %llu bytes", file,
                        (unsigned long long)bytes);
        goto done;
    }
    if ((rc = nnrti_input_read(in, out->data, bytes, "the data", err))) goto done;
    out->dtype = dtype;
    out->rank = h.rank;
    memcpy(out->shape, h.shape, sizeof out->shape);
    rc = NNRT_OK;
done:
    free(text);
    if (rc) nnrt_array_free(out);
    return rc;
}

int nnrt_npy_load(const char *path, nnrt_array *out, nnrt_error *err) {
    if (!out) return nnrti_fail(err, NNRT_ENULL, "nnrt_npy_load: NULL output");
    memset(out, 0, sizeof *out);
    if (!path) return nnrti_fail(err, NNRT_ENULL, "nnrt_npy_load: NULL path");
    nnrti_input in;
    int rc = nnrti_input_open(&in, path, err);
    if (rc) return rc;
    rc = npy_read(&in, out, err);
    nnrti_input_close(&in);
    return rc;
}

int nnrt_npy_load_memory(const void *buf, size_t len, const char *name, nnrt_array *out,
                         nnrt_error *err) {
    if (!out) return nnrti_fail(err, NNRT_ENULL, "nnrt_npy_load_memory: NULL output");
    memset(out, 0, sizeof *out);
    if (!buf && len) return nnrti_fail(err, NNRT_ENULL, "nnrt_npy_load_memory: NULL buffer");
    nnrti_input in;
    nnrti_input_memory(&in, buf, len, name);
    return npy_read(&in, out, err);
}

/* ---------------------------------------------------------------- save */

int nnrt_npy_save(const char *path, int dtype, int rank, const int64_t *shape,
                  const void *data, nnrt_error *err) {
    if (!path) return nnrti_fail(err, NNRT_ENULL, "nnrt_npy_save: NULL path");
    const char *descr = NULL;
    for (size_t i = 0; i < sizeof npy_types / sizeof npy_types[0]; i++)
        if (npy_types[i].dtype == dtype) descr = npy_types[i].descr;
    if (!descr) return nnrti_fail(err, NNRT_EARG, "%s: unknown dtype %d", path, dtype);
    if (rank < 0 || rank > NNRT_MAX_RANK || (rank && !shape))
        return nnrti_fail(err, NNRT_EARG, "%s: invalid rank %d", path, rank);
    uint64_t bytes;
    if (!nnrti_shape_bytes(rank, shape, nnrt_dtype_size(dtype), NULL, &bytes))
        return nnrti_fail(err, NNRT_EARG, "%s: invalid shape", path);
    if (bytes && !data) return nnrti_fail(err, NNRT_ENULL, "%s: NULL data", path);

    /* With rank <= 6 the dict is < 256 bytes, so version 1.0 (u16 length) always fits. */
    char hdr[512];
    int len = snprintf(hdr, sizeof hdr, "{'descr': '%s', 'fortran_order': False, 'shape': (",
                       descr);
    for (int i = 0; i < rank; i++)
        len += snprintf(hdr + len, sizeof hdr - (size_t)len, "%s%lld", i ? ", " : "",
                        (long long)shape[i]);
    len += snprintf(hdr + len, sizeof hdr - (size_t)len, "%s), }", rank == 1 ? "," : "");
    /* Pad with spaces and end with '\n' so that 10 + header length is a multiple of 64. */
    int total = (10 + len + 1 + NPY_ALIGN - 1) / NPY_ALIGN * NPY_ALIGN;
    while (10 + len + 1 < total) hdr[len++] = ' ';
    hdr[len++] = '\n';
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(len & 0xff),
                             (unsigned char)(len >> 8)};

    nnrti_output out;
    int rc = nnrti_output_open(&out, path, err);
    if (rc) return rc;
    if ((rc = nnrti_output_write(&out, pre, sizeof pre, err))) return rc;
    if ((rc = nnrti_output_write(&out, hdr, (size_t)len, err))) return rc;
    if ((rc = nnrti_output_write(&out, data, (size_t)bytes, err))) return rc;
    return nnrti_output_commit(&out, err);
}
