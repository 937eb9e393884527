/* safetensors.c — reading and writing safetensors files, with a strict JSON header parser.
 *
 * File layout (https://github.com/huggingface/safetensors):
 *   u64 little-endian N | N bytes of UTF-8 JSON header | data area
 * header = {"__metadata__": {"key": "value", ...},            (optional, strings only)
 *           "name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...}
 * Offsets are relative to the data area. As in the reference implementation, the tensors
 * sorted by offset must tile the data area exactly: no gap, no overlap, nothing after.
 *
 * The header parser is a recursive-descent parser for exactly this schema; it accepts only
 * RFC 8259 JSON (strict numbers, escapes, UTF-8, no trailing commas) and keeps the byte
 * offset of every error. Memory use is bounded by the header size, which is bounded by
 * the file size and by NNRT_ST_MAX_HEADER.
 */
#include "nnrt_internal.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "libnnrt reads and writes little-endian tensor data in place; big-endian hosts need byte swapping"
#endif

enum { NNRT_ST_MAX_HEADER = 100000000, DATA_ALIGN = 64 };

/* One tensor as parsed from the header. */
typedef struct entry {
    char *name;
    int dtype;
    int rank;
    int64_t shape[NNRT_MAX_RANK];
    uint64_t begin, end;   /* data_offsets */
    uint64_t where;        /* file offset of the entry's key, for messages */
    uint64_t blob_offset;  /* where its data goes in the blob */
} entry;

typedef struct header {
    entry *tensors;
    int n, cap;
    char **meta_keys, **meta_values;
    int n_meta, cap_meta;
    bool has_meta;
} header;

static void header_free(header *h) {
    for (int i = 0; i < h->n; i++) free(h->tensors[i].name);
    for (int i = 0; i < h->n_meta; i++) {
        free(h->meta_keys[i]);
        free(h->meta_values[i]);
    }
    free(h->tensors);
    free(h->meta_keys);
    free(h->meta_values);
    memset(h, 0, sizeof *h);
}

/* ---------------------------------------------------------------- JSON cursor */

typedef struct json {
    const char *s;
    size_t n, pos;
    uint64_t base;     /* file offset of s[0] */
    const char *file;
    nnrt_error *err;
} json;

static int json_fail(json *j, int code, const char *fmt, ...) NNRTI_PRINTF(3, 4);
static int json_fail(json *j, int code, const char *fmt, ...) {
    char what[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return nnrti_fail(j->err, code, "%s: malformed header at byte offset %llu: %s%s", j->file,
                      (unsigned long long)(j->base + j->pos),
                      j->pos >= j->n ? "unexpected end of header: " : "", what);
}

static void json_ws(json *j) {
    while (j->pos < j->n) {
        char c = j->s[j->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        j->pos++;
    }
}

static int json_peek(json *j) { return j->pos < j->n ? (unsigned char)j->s[j->pos] : -1; }

/* Skips whitespace, then requires the character c. */
static int json_expect(json *j, char c, const char *context) {
    json_ws(j);
    if (json_peek(j) != (unsigned char)c)
        return json_fail(j, NNRT_EFORMAT, "expected '%c' %s", c, context);
    j->pos++;
    return NNRT_OK;
}

static int hex4(const char *p) {
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

static size_t put_utf8(char *o, uint32_t cp) {
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* string = '"' (unescaped char | '\' ("\"" | '\' | '/' | b f n r t | u XXXX))* '"'
 * The decoded string is returned in *out (malloc'd, NUL-terminated). The raw bytes are
 * known to be valid UTF-8 (checked for the whole header); U+0000 is refused because names
 * are C strings. Escapes only shrink, so the raw length bounds the decoded length. */
static int json_string(json *j, char **out, const char *context) {
    *out = NULL;
    json_ws(j);
    if (json_peek(j) != '"') return json_fail(j, NNRT_EFORMAT, "expected a string %s", context);
    size_t start = ++j->pos, end = start;
    while (end < j->n && j->s[end] != '"') {
        unsigned char c = (unsigned char)j->s[end];
        if (c < 0x20) {
            j->pos = end;
            return json_fail(j, NNRT_EFORMAT, "control character 0x%02x in a string", c);
        }
        end += c == '\\' ? 2 : 1;
    }
    if (end >= j->n) {
        j->pos = start - 1;
        return json_fail(j, NNRT_EFORMAT, "unterminated string");
    }
    char *o = malloc(end - start + 1);
    if (!o) return nnrti_fail(j->err, NNRT_ENOMEM, "%s: out of memory", j->file);
    size_t len = 0;
    size_t i = start;
    while (i < end) {
        char c = j->s[i];
        if (c != '\\') {
            o[len++] = c;
            i++;
            continue;
        }
        j->pos = i;
        char e = j->s[i + 1];
        i += 2;
        switch (e) {
        case '"': o[len++] = '"'; continue;
        case '\\': o[len++] = '\\'; continue;
        case '/': o[len++] = '/'; continue;
        case 'b': o[len++] = '\b'; continue;
        case 'f': o[len++] = '\f'; continue;
        case 'n': o[len++] = '\n'; continue;
        case 'r': o[len++] = '\r'; continue;
        case 't': o[len++] = '\t'; continue;
        case 'u': break;
        default:
            free(o);
            return json_fail(j, NNRT_EFORMAT, "invalid escape sequence in a string");
        }
        int u = end - i >= 4 ? hex4(j->s + i) : -1;
        if (u < 0) {
            free(o);
            return json_fail(j, NNRT_EFORMAT, "\\u must be followed by 4 hex digits");
        }
        i += 4;
        uint32_t cp = (uint32_t)u;
        if (cp >= 0xDC00 && cp <= 0xDFFF) {
            free(o);
            return json_fail(j, NNRT_EFORMAT, "unpaired UTF-16 surrogate \\u%04x", u);
        }
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            int lo = end - i >= 6 && j->s[i] == '\\' && j->s[i + 1] == 'u' ? hex4(j->s + i + 2)
                                                                           : -1;
            if (lo < 0xDC00 || lo > 0xDFFF) {
                free(o);
                return json_fail(j, NNRT_EFORMAT, "unpaired UTF-16 surrogate \\u%04x", u);
            }
            i += 6;
            cp = 0x10000 + ((cp - 0xD800) << 10) + ((uint32_t)lo - 0xDC00);
        }
        if (cp == 0) {
            free(o);
            return json_fail(j, NNRT_EFORMAT, "U+0000 is not allowed in names");
        }
        len += put_utf8(o + len, cp);
    }
    o[len] = 0;
    j->pos = end + 1;
    *out = o;
    return NNRT_OK;
}

/* A JSON number that must be a non-negative integer <= INT64_MAX:
 * int = '0' | [1-9][0-9]*, with no fraction, exponent or sign. */
static int json_uint(json *j, uint64_t *out, const char *context) {
    json_ws(j);
    int c = json_peek(j);
    if (c == '-') return json_fail(j, NNRT_EFORMAT, "negative number %s", context);
    if (c < '0' || c > '9') return json_fail(j, NNRT_EFORMAT, "expected an integer %s", context);
    size_t start = j->pos;
    uint64_t v = 0;
    while (j->pos < j->n && j->s[j->pos] >= '0' && j->s[j->pos] <= '9') {
        unsigned d = (unsigned)(j->s[j->pos] - '0');
        if (v > ((uint64_t)INT64_MAX - d) / 10) {
            j->pos = start;
            return json_fail(j, NNRT_EFORMAT, "integer too large %s", context);
        }
        v = v * 10 + d;
        j->pos++;
    }
    if (j->s[start] == '0' && j->pos - start > 1) {
        j->pos = start;
        return json_fail(j, NNRT_EFORMAT, "number with a leading zero %s", context);
    }
    c = json_peek(j);
    if (c == '.' || c == 'e' || c == 'E')
        return json_fail(j, NNRT_EFORMAT, "expected an integer %s, not a fraction or exponent",
                         context);
    *out = v;
    return NNRT_OK;
}

/* array = '[' (int (',' int)*)? ']' with at most `max` elements. */
static int json_uint_array(json *j, uint64_t *vals, int max, int *count, const char *context) {
    int rc;
    if ((rc = json_expect(j, '[', context))) return rc;
    *count = 0;
    json_ws(j);
    if (json_peek(j) == ']') {
        j->pos++;
        return NNRT_OK;
    }
    for (;;) {
        if (*count == max)
            return json_fail(j, NNRT_EFORMAT, "more than %d values %s", max, context);
        if ((rc = json_uint(j, &vals[*count], context))) return rc;
        (*count)++;
        json_ws(j);
        int c = json_peek(j);
        if (c == ',') {
            j->pos++;
            continue;
        }
        if (c == ']') {
            j->pos++;
            return NNRT_OK;
        }
        return json_fail(j, NNRT_EFORMAT, "expected ',' or ']' %s", context);
    }
}

/* ---------------------------------------------------------------- header schema */

static int dtype_from_name(const char *s) {
    static const struct {
        const char *name;
        int dtype;
    } known[] = {{"F32", NNRT_F32}, {"I32", NNRT_I32}, {"F64", NNRT_F64},
                 {"I64", NNRT_I64}, {"U8", NNRT_U8}};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (!strcmp(s, known[i].name)) return known[i].dtype;
    return -1;
}

/* metadata = '{' (string ':' string (',' string ':' string)*)? '}' with unique keys. */
static int parse_metadata(json *j, header *h) {
    int rc;
    if ((rc = json_expect(j, '{', "for \"__metadata__\""))) return rc;
    json_ws(j);
    if (json_peek(j) == '}') {
        j->pos++;
        return NNRT_OK;
    }
    for (;;) {
        json_ws(j);
        size_t key_pos = j->pos;
        char *key, *value;
        if ((rc = json_string(j, &key, "as a \"__metadata__\" key"))) return rc;
        for (int i = 0; i < h->n_meta; i++)
            if (!strcmp(h->meta_keys[i], key)) {
                j->pos = key_pos;
                free(key);
                return json_fail(j, NNRT_EFORMAT, "duplicate \"__metadata__\" key '%s'",
                                 h->meta_keys[i]);
            }
        if ((rc = json_expect(j, ':', "after a \"__metadata__\" key"))) {
            free(key);
            return rc;
        }
        if ((rc = json_string(j, &value, "as a \"__metadata__\" value (values are strings)"))) {
            free(key);
            return rc;
        }
        if (h->n_meta == h->cap_meta) {
            int cap = h->cap_meta ? 2 * h->cap_meta : 8;
            char **k = realloc(h->meta_keys, (size_t)cap * sizeof *k);
            if (k) h->meta_keys = k;
            char **v = k ? realloc(h->meta_values, (size_t)cap * sizeof *v) : NULL;
            if (v) h->meta_values = v;
            if (!k || !v) {
                free(key);
                free(value);
                return nnrti_fail(j->err, NNRT_ENOMEM, "%s: out of memory", j->file);
            }
            h->cap_meta = cap;
        }
        h->meta_keys[h->n_meta] = key;
        h->meta_values[h->n_meta] = value;
        h->n_meta++;
        json_ws(j);
        int c = json_peek(j);
        if (c == ',') {
            j->pos++;
            continue;
        }
        if (c == '}') {
            j->pos++;
            return NNRT_OK;
        }
        return json_fail(j, NNRT_EFORMAT, "expected ',' or '}' in \"__metadata__\"");
    }
}

/* entry = '{' field (',' field)* '}' where the fields "dtype" (string), "shape" (array of
 * integers) and "data_offsets" (array of two integers) each appear exactly once. */
static int parse_entry(json *j, entry *t) {
    int rc;
    bool seen_dtype = false, seen_shape = false, seen_offsets = false;
    char context[160];
    snprintf(context, sizeof context, "in tensor '%.100s'", t->name);
    size_t entry_pos = j->pos;
    if ((rc = json_expect(j, '{', context))) return rc;
    for (;;) {
        json_ws(j);
        size_t key_pos = j->pos;
        char *key;
        if ((rc = json_string(j, &key, context))) return rc;
        if ((rc = json_expect(j, ':', context))) {
            free(key);
            return rc;
        }
        bool *seen = !strcmp(key, "dtype")          ? &seen_dtype
                     : !strcmp(key, "shape")        ? &seen_shape
                     : !strcmp(key, "data_offsets") ? &seen_offsets
                                                    : NULL;
        if (!seen || *seen) {
            j->pos = key_pos;
            rc = json_fail(j, NNRT_EFORMAT, "%s field '%.40s' %s", seen ? "duplicate" : "unknown",
                           key, context);
            free(key);
            return rc;
        }
        *seen = true;
        if (seen == &seen_dtype) {
            char *name;
            json_ws(j);
            size_t value_pos = j->pos;
            if ((rc = json_string(j, &name, context))) {
                free(key);
                return rc;
            }
            t->dtype = dtype_from_name(name);
            if (t->dtype < 0) {
                j->pos = value_pos;
                rc = json_fail(j, NNRT_EFORMAT,
                               "tensor '%.100s' has dtype '%.20s', which nnrt does not support "
                               "(supported: F32, F64, I32, I64, U8)",
                               t->name, name);
                free(name);
                free(key);
                return rc;
            }
            free(name);
        } else if (seen == &seen_shape) {
            uint64_t dims[NNRT_MAX_RANK];
            if ((rc = json_uint_array(j, dims, NNRT_MAX_RANK, &t->rank, context))) {
                free(key);
                return rc;
            }
            for (int i = 0; i < t->rank; i++) t->shape[i] = (int64_t)dims[i];
        } else {
            uint64_t off[2] = {0, 0};
            int count = 0;
            if ((rc = json_uint_array(j, off, 2, &count, context))) {
                free(key);
                return rc;
            }
            if (count != 2) {
                free(key);
                return json_fail(j, NNRT_EFORMAT,
                                 "data_offsets of tensor '%.100s' must hold 2 integers, not %d",
                                 t->name, count);
            }
            t->begin = off[0];
            t->end = off[1];
        }
        free(key);
        json_ws(j);
        int c = json_peek(j);
        if (c == ',') {
            j->pos++;
            continue;
        }
        if (c == '}') {
            j->pos++;
            break;
        }
        return json_fail(j, NNRT_EFORMAT, "expected ',' or '}' %s", context);
    }
    if (!seen_dtype || !seen_shape || !seen_offsets) {
        j->pos = entry_pos;
        return json_fail(j, NNRT_EFORMAT, "tensor '%.100s' has no \"%s\"", t->name,
                         !seen_dtype ? "dtype" : !seen_shape ? "shape" : "data_offsets");
    }
    return NNRT_OK;
}

/* header = '{' (member (',' member)*)? '}' ws, member = string ':' (metadata | entry) */
static int parse_header(json *j, header *h) {
    int rc;
    if ((rc = json_expect(j, '{', "at the start of the header"))) return rc;
    json_ws(j);
    if (json_peek(j) == '}') {
        j->pos++;
    } else {
        for (;;) {
            json_ws(j);
            size_t key_pos = j->pos;
            char *key;
            if ((rc = json_string(j, &key, "as a tensor name"))) return rc;
            if ((rc = json_expect(j, ':', "after a tensor name"))) {
                free(key);
                return rc;
            }
            if (!strcmp(key, "__metadata__")) {
                free(key);
                if (h->has_meta) {
                    j->pos = key_pos;
                    return json_fail(j, NNRT_EFORMAT, "duplicate \"__metadata__\"");
                }
                h->has_meta = true;
                if ((rc = parse_metadata(j, h))) return rc;
            } else {
                if (h->n == h->cap) {
                    if (h->cap >= (1 << 28)) {
                        free(key);
                        return json_fail(j, NNRT_EFORMAT, "too many tensors");
                    }
                    int cap = h->cap ? 2 * h->cap : 16;
                    entry *t = realloc(h->tensors, (size_t)cap * sizeof *t);
                    if (!t) {
                        free(key);
                        return nnrti_fail(j->err, NNRT_ENOMEM, "%s: out of memory", j->file);
                    }
                    h->tensors = t;
                    h->cap = cap;
                }
                entry *t = &h->tensors[h->n++];
                memset(t, 0, sizeof *t);
                t->name = key;
                t->where = j->base + key_pos;
                if ((rc = parse_entry(j, t))) return rc;
            }
            json_ws(j);
            int c = json_peek(j);
            if (c == ',') {
                j->pos++;
                continue;
            }
            if (c == '}') {
                j->pos++;
                break;
            }
            return json_fail(j, NNRT_EFORMAT, "expected ',' or '}' after a tensor entry");
        }
    }
    json_ws(j);
    if (j->pos != j->n)
        return json_fail(j, NNRT_EFORMAT, "unexpected data after the header object");
    return NNRT_OK;
}

/* ---------------------------------------------------------------- validation */

static int cmp_entry_name(const void *a, const void *b) {
    return strcmp((*(const entry *const *)a)->name, (*(const entry *const *)b)->name);
}

static int cmp_entry_offset(const void *a, const void *b) {
    const entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

/* Checks sizes, names and the tiling of the data area; sorts h->tensors by offset and
 * assigns each tensor an element-aligned place in the blob. Returns the blob size. */
static int validate(header *h, const char *file, uint64_t data_start, uint64_t data_size,
                    uint64_t *blob_size, nnrt_error *err) {
    char s1[160];
    for (int i = 0; i < h->n; i++) {
        entry *t = &h->tensors[i];
        uint64_t bytes;
        nnrti_format_shape(s1, sizeof s1, t->rank, t->shape);
        if (!nnrti_shape_bytes(t->rank, t->shape, nnrt_dtype_size(t->dtype), NULL, &bytes))
            return nnrti_fail(err, NNRT_EFORMAT,
                              "%s: tensor '%.100s' (at byte offset %llu): shape %s "
                              "overflows",
                              file, t->name, (unsigned long long)t->where, s1);
        if (t->begin > t->end)
            return nnrti_fail(err, NNRT_EFORMAT,
                              "%s: tensor '%.100s' (at byte offset %llu): data_offsets "
                              "[%llu, %llu] end before they begin",
                              file, t->name, (unsigned long long)t->where,
                              (unsigned long long)t->begin, (unsigned long long)t->end);
        if (t->end - t->begin != bytes)
            return nnrti_fail(err, NNRT_EFORMAT,
                              "%s: tensor '%.100s' (at byte offset %llu): shape %s of %s "
                              "needs %llu bytes but data_offsets [%llu, %llu] hold %llu",
                              file, t->name, (unsigned long long)t->where, s1,
                              nnrt_dtype_name(t->dtype), (unsigned long long)bytes,
                              (unsigned long long)t->begin, (unsigned long long)t->end,
                              (unsigned long long)(t->end - t->begin));
        if (t->end > data_size)
            return nnrti_fail(err, NNRT_EFORMAT,
                              "%s: tensor '%.100s' (at byte offset %llu): data_offsets "
                              "[%llu, %llu] go past the end of the data area (%llu bytes "
                              "from byte offset %llu)",
                              file, t->name, (unsigned long long)t->where,
                              (unsigned long long)t->begin, (unsigned long long)t->end,
                              (unsigned long long)data_size, (unsigned long long)data_start);
    }

    if (h->n > 1) {
        entry **by_name = malloc((size_t)h->n * sizeof *by_name);
        if (!by_name) return nnrti_fail(err, NNRT_ENOMEM, "%s: out of memory", file);
        for (int i = 0; i < h->n; i++) by_name[i] = &h->tensors[i];
        qsort(by_name, (size_t)h->n, sizeof *by_name, cmp_entry_name);
        for (int i = 1; i < h->n; i++)
            if (!strcmp(by_name[i - 1]->name, by_name[i]->name)) {
                uint64_t where = by_name[i - 1]->where > by_name[i]->where
                                     ? by_name[i - 1]->where
                                     : by_name[i]->where;
                int rc = nnrti_fail(err, NNRT_EFORMAT,
                                    "%s: duplicate tensor name '%.100s' (at byte offset "
                                    "%llu)",
                                    file, by_name[i]->name, (unsigned long long)where);
                free(by_name);
                return rc;
            }
        free(by_name);
    }

    qsort(h->tensors, (size_t)h->n, sizeof *h->tensors, cmp_entry_offset);
    uint64_t expected = 0, pos = 0;
    const entry *prev = NULL;
    for (int i = 0; i < h->n; i++) {
        entry *t = &h->tensors[i];
        if (t->begin < expected)
            return nnrti_fail(err, NNRT_EFORMAT,
                              "%s: tensor '%.100s' data_offsets [%llu, %llu] overlap tensor "
                              "'%.100s' [%llu, %llu]",
                              file, t->name, (unsigned long long)t->begin,
                              (unsigned long long)t->end, prev->name,
                              (unsigned long long)prev->begin, (unsigned long long)prev->end);
        if (t->begin > expected)
            return nnrti_fail(err, NNRT_EFORMAT,
                              "%s: %llu unused bytes in the data area before tensor '%.100s' "
                              "(data_offsets [%llu, %llu], file byte offset %llu)",
                              file, (unsigned long long)(t->begin - expected), t->name,
                              (unsigned long long)t->begin, (unsigned long long)t->end,
                              (unsigned long long)(data_start + expected));
        /* Align each tensor to its element size so typed access is legal; padding is
         * smaller than the tensor, so the blob is at most twice the data area. */
        size_t align = nnrt_dtype_size(t->dtype);
        if (t->end > t->begin) pos = (pos + align - 1) / align * align;
        t->blob_offset = pos;
        pos += t->end - t->begin;
        expected = t->end;
        prev = t;
    }
    if (expected != data_size)
        return nnrti_fail(err, NNRT_EFORMAT,
                          "%s: %llu unused bytes at the end of the file (the tensors end at "
                          "byte offset %llu, the file at %llu)",
                          file, (unsigned long long)(data_size - expected),
                          (unsigned long long)(data_start + expected),
                          (unsigned long long)(data_start + data_size));
    *blob_size = pos;
    return NNRT_OK;
}

/* ---------------------------------------------------------------- reading */

static int st_read(nnrti_input *in, nnrt_st_file *out, nnrt_error *err) {
    const char *file = in->name;
    header h = {0};
    char *text = NULL;
    unsigned char *blob = NULL;
    unsigned char len8[8];
    int rc;

    if ((rc = nnrti_input_read(in, len8, 8, "the header length", err))) goto done;
    uint64_t n = nnrti_le64(len8);
    if (n > NNRT_ST_MAX_HEADER) {
        rc = nnrti_fail(err, NNRT_EFORMAT,
                        "%s: header length %llu (bytes 0-7) exceeds the %d byte limit", file,
                        (unsigned long long)n, NNRT_ST_MAX_HEADER);
        goto done;
    }
    if (n > in->size - 8) {
        rc = nnrti_fail(err, NNRT_EFORMAT,
                        "%s: header length %llu (bytes 0-7) goes past the end of the file "
                        "(%llu bytes)",
                        file, (unsigned long long)n, (unsigned long long)in->size);
        goto done;
    }
    if (n < 2) {
        rc = nnrti_fail(err, NNRT_EFORMAT, "%s: header length %llu is too small for a JSON "
                        "object", file, (unsigned long long)n);
        goto done;
    }
    text = malloc((size_t)n);
    if (!text) {
        rc = nnrti_fail(err, NNRT_ENOMEM, "%s: out of memory for a %llu byte header", file,
                        (unsigned long long)n);
        goto done;
    }
    if ((rc = nnrti_input_read(in, text, n, "the header", err))) goto done;
    size_t valid = nnrti_utf8_prefix(text, (size_t)n);
    if (valid != n) {
        rc = nnrti_fail(err, NNRT_EFORMAT, "%s: header is not valid UTF-8 at byte offset %llu",
                        file, (unsigned long long)(8 + valid));
        goto done;
    }
    json j = {.s = text, .n = (size_t)n, .pos = 0, .base = 8, .file = file, .err = err};
    if ((rc = parse_header(&j, &h))) goto done;
    free(text);
    text = NULL;

    uint64_t data_start = 8 + n, data_size = in->size - data_start, blob_size = 0;
    if ((rc = validate(&h, file, data_start, data_size, &blob_size, err))) goto done;

    size_t alloc = (size_t)((blob_size + DATA_ALIGN - 1) / DATA_ALIGN * DATA_ALIGN);
    blob = aligned_alloc(DATA_ALIGN, alloc ? alloc : DATA_ALIGN);
    if (!blob) {
        rc = nnrti_fail(err, NNRT_ENOMEM, "%s: out of memory for %llu bytes of tensor data",
                        file, (unsigned long long)blob_size);
        goto done;
    }
    for (int i = 0; i < h.n; i++) {
        char what[160];
        snprintf(what, sizeof what, "tensor '%.100s'", h.tensors[i].name);
        if ((rc = nnrti_input_read(in, blob + h.tensors[i].blob_offset,
                                   h.tensors[i].end - h.tensors[i].begin, what, err)))
            goto done;
    }

    memset(out, 0, sizeof *out);
    out->tensors = calloc(h.n ? (size_t)h.n : 1, sizeof *out->tensors);
    if (!out->tensors) {
        rc = nnrti_fail(err, NNRT_ENOMEM, "%s: out of memory", file);
        goto done;
    }
    out->n = h.n;
    for (int i = 0; i < h.n; i++) {
        entry *t = &h.tensors[i];
        nnrt_st_tensor *o = &out->tensors[i];
        o->name = t->name;
        t->name = NULL;
        o->dtype = t->dtype;
        o->rank = t->rank;
        memcpy(o->shape, t->shape, sizeof o->shape);
        o->data = blob + t->blob_offset;
        o->bytes = t->end - t->begin;
    }
    out->n_meta = h.n_meta;
    out->meta_keys = h.meta_keys;
    out->meta_values = h.meta_values;
    h.meta_keys = h.meta_values = NULL;
    h.n_meta = 0;
    out->blob = blob;
    blob = NULL;
    rc = NNRT_OK;
done:
    free(text);
    free(blob);
    header_free(&h);
    return rc;
}

int nnrt_st_read(const char *path, nnrt_st_file *out, nnrt_error *err) {
    if (!out) return nnrti_fail(err, NNRT_ENULL, "nnrt_st_read: NULL output");
    memset(out, 0, sizeof *out);
    if (!path) return nnrti_fail(err, NNRT_ENULL, "nnrt_st_read: NULL path");
    nnrti_input in;
    int rc = nnrti_input_open(&in, path, err);
    if (rc) return rc;
    rc = st_read(&in, out, err);
    nnrti_input_close(&in);
    return rc;
}

int nnrt_st_read_memory(const void *buf, size_t len, const char *name, nnrt_st_file *out,
                        nnrt_error *err) {
    if (!out) return nnrti_fail(err, NNRT_ENULL, "nnrt_st_read_memory: NULL output");
    memset(out, 0, sizeof *out);
    if (!buf && len) return nnrti_fail(err, NNRT_ENULL, "nnrt_st_read_memory: NULL buffer");
    nnrti_input in;
    nnrti_input_memory(&in, buf, len, name);
    return st_read(&in, out, err);
}

void nnrt_st_free(nnrt_st_file *f) {
    if (!f) return;
    for (int i = 0; i < f->n; i++) free(f->tensors[i].name);
    for (int i = 0; i < f->n_meta; i++) {
        free(f->meta_keys[i]);
        free(f->meta_values[i]);
    }
    free(f->tensors);
    free(f->meta_keys);
    free(f->meta_values);
    free(f->blob);
    memset(f, 0, sizeof *f);
}

const nnrt_st_tensor *nnrt_st_find(const nnrt_st_file *f, const char *name) {
    if (!f || !name) return NULL;
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->tensors[i].name, name)) return &f->tensors[i];
    return NULL;
}

/* ---------------------------------------------------------------- writing */

typedef struct strbuf {
    char *p;
    size_t len, cap;
    bool oom;
} strbuf;

static void sb_put(strbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void sb_puts(strbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

/* A JSON string the way serde_json writes it: \" \\ \b \f \n \r \t, other control
 * characters as \u00xx, everything else (valid UTF-8) verbatim. */
static void sb_json_string(strbuf *b, const char *s) {
    sb_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        switch (c) {
        case '"': sb_put(b, "\\\"", 2); break;
        case '\\': sb_put(b, "\\\\", 2); break;
        case '\b': sb_put(b, "\\b", 2); break;
        case '\f': sb_put(b, "\\f", 2); break;
        case '\n': sb_put(b, "\\n", 2); break;
        case '\r': sb_put(b, "\\r", 2); break;
        case '\t': sb_put(b, "\\t", 2); break;
        default:
            if (c < 0x20) {
                snprintf(esc, sizeof esc, "\\u%04x", c);
                sb_put(b, esc, 6);
            } else {
                sb_put(b, s, 1);
            }
        }
    }
    sb_put(b, "\"", 1);
}

/* The Python library orders data by dtype, largest alignment first (its Dtype enum order,
 * descending), then by name; the header lists tensors in data order. */
static int dtype_write_rank(int dtype) {
    switch (dtype) {
    case NNRT_I64: return 0;
    case NNRT_F64: return 1;
    case NNRT_F32: return 2;
    case NNRT_I32: return 3;
    default: return 4; /* U8 */
    }
}

static int cmp_write_order(const void *a, const void *b) {
    const nnrt_st_tensor *x = *(const nnrt_st_tensor *const *)a;
    const nnrt_st_tensor *y = *(const nnrt_st_tensor *const *)b;
    int rx = dtype_write_rank(x->dtype), ry = dtype_write_rank(y->dtype);
    if (rx != ry) return rx - ry;
    return strcmp(x->name, y->name);
}

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp((*(const nnrt_st_tensor *const *)a)->name,
                  (*(const nnrt_st_tensor *const *)b)->name);
}

typedef struct meta_pair {
    const char *key, *value;
} meta_pair;

static int cmp_meta_key(const void *a, const void *b) {
    return strcmp(((const meta_pair *)a)->key, ((const meta_pair *)b)->key);
}

static int check_tensors(const char *path, int n, const nnrt_st_tensor *tensors,
                         nnrt_error *err) {
    for (int i = 0; i < n; i++) {
        const nnrt_st_tensor *t = &tensors[i];
        uint64_t bytes;
        if (!t->name) return nnrti_fail(err, NNRT_ENULL, "%s: tensor %d has no name", path, i);
        if (!strcmp(t->name, "__metadata__") || !nnrti_utf8_valid(t->name, strlen(t->name)))
            return nnrti_fail(err, NNRT_EARG, "%s: invalid tensor name '%.100s'", path, t->name);
        if (!nnrt_dtype_size(t->dtype))
            return nnrti_fail(err, NNRT_EARG, "%s: tensor '%.100s' has unknown dtype %d", path,
                              t->name, t->dtype);
        if (t->rank < 0 || t->rank > NNRT_MAX_RANK)
            return nnrti_fail(err, NNRT_EARG, "%s: tensor '%.100s' has rank %d (max %d)", path,
                              t->name, t->rank, NNRT_MAX_RANK);
        if (!nnrti_shape_bytes(t->rank, t->shape, nnrt_dtype_size(t->dtype), NULL, &bytes) ||
            bytes != t->bytes)
            return nnrti_fail(err, NNRT_EARG, "%s: tensor '%.100s' has %llu bytes, which does "
                              "not match its shape and dtype", path, t->name,
                              (unsigned long long)t->bytes);
        if (bytes && !t->data)
            return nnrti_fail(err, NNRT_ENULL, "%s: tensor '%.100s' has no data", path, t->name);
    }
    return NNRT_OK;
}

int nnrt_st_write(const char *path, int n, const nnrt_st_tensor *tensors, int n_meta,
                  const char *const *keys, const char *const *values, nnrt_error *err) {
    if (!path) return nnrti_fail(err, NNRT_ENULL, "nnrt_st_write: NULL path");
    if (n < 0 || n_meta < 0)
        return nnrti_fail(err, NNRT_EARG, "%s: negative tensor or metadata count", path);
    if ((n && !tensors) || (n_meta && (!keys || !values)))
        return nnrti_fail(err, NNRT_ENULL, "%s: NULL tensor or metadata array", path);
    int rc = check_tensors(path, n, tensors, err);
    if (rc) return rc;
    for (int i = 0; i < n_meta; i++)
        if (!keys[i] || !values[i] || !nnrti_utf8_valid(keys[i], strlen(keys[i])) ||
            !nnrti_utf8_valid(values[i], strlen(values[i])))
            return nnrti_fail(err, NNRT_EARG, "%s: metadata entry %d is NULL or not UTF-8",
                              path, i);

    const nnrt_st_tensor **order = malloc(((size_t)n + 1) * sizeof *order);
    meta_pair *meta = malloc(((size_t)n_meta + 1) * sizeof *meta);
    strbuf hdr = {0};
    nnrti_output out = {.fd = -1};
    if (!order || !meta) {
        rc = nnrti_fail(err, NNRT_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    for (int i = 0; i < n; i++) order[i] = &tensors[i];
    qsort(order, (size_t)n, sizeof *order, cmp_tensor_name);
    for (int i = 1; i < n; i++)
        if (!strcmp(order[i - 1]->name, order[i]->name)) {
            rc = nnrti_fail(err, NNRT_EARG, "%s: duplicate tensor name '%.100s'", path,
                            order[i]->name);
            goto done;
        }
    qsort(order, (size_t)n, sizeof *order, cmp_write_order);
    for (int i = 0; i < n_meta; i++) meta[i] = (meta_pair){keys[i], values[i]};
    qsort(meta, (size_t)n_meta, sizeof *meta, cmp_meta_key);
    for (int i = 1; i < n_meta; i++)
        if (!strcmp(meta[i - 1].key, meta[i].key)) {
            rc = nnrti_fail(err, NNRT_EARG, "%s: duplicate metadata key '%.100s'", path,
                            meta[i].key);
            goto done;
        }

    /* Compact JSON like serde_json: {"__metadata__":{..},"name":{"dtype":..},...} */
    sb_puts(&hdr, "{");
    if (n_meta) {
        sb_puts(&hdr, "\"__metadata__\":{");
        for (int i = 0; i < n_meta; i++) {
            if (i) sb_puts(&hdr, ",");
            sb_json_string(&hdr, meta[i].key);
            sb_puts(&hdr, ":");
            sb_json_string(&hdr, meta[i].value);
        }
        sb_puts(&hdr, "}");
    }
    uint64_t offset = 0;
    for (int i = 0; i < n; i++) {
        const nnrt_st_tensor *t = order[i];
        char num[48];
        if (i || n_meta) sb_puts(&hdr, ",");
        sb_json_string(&hdr, t->name);
        sb_puts(&hdr, ":{\"dtype\":\"");
        sb_puts(&hdr, nnrt_dtype_name(t->dtype));
        sb_puts(&hdr, "\",\"shape\":[");
        for (int d = 0; d < t->rank; d++) {
            snprintf(num, sizeof num, "%s%lld", d ? "," : "", (long long)t->shape[d]);
            sb_puts(&hdr, num);
        }
        snprintf(num, sizeof num, "],\"data_offsets\":[%llu,%llu]}",
                 (unsigned long long)offset, (unsigned long long)(offset + t->bytes));
        sb_puts(&hdr, num);
        offset += t->bytes;
    }
    sb_puts(&hdr, "}");
    while (hdr.len % 8) sb_puts(&hdr, " ");
    if (hdr.oom) {
        rc = nnrti_fail(err, NNRT_ENOMEM, "%s: out of memory", path);
        goto done;
    }

    unsigned char len8[8];
    nnrti_put_le64(len8, hdr.len);
    if ((rc = nnrti_output_open(&out, path, err))) goto done;
    if ((rc = nnrti_output_write(&out, len8, 8, err))) goto done;
    if ((rc = nnrti_output_write(&out, hdr.p, hdr.len, err))) goto done;
    for (int i = 0; i < n; i++)
        if ((rc = nnrti_output_write(&out, order[i]->data, (size_t)order[i]->bytes, err)))
            goto done;
    rc = nnrti_output_commit(&out, err);
done:
    if (rc) nnrti_output_abort(&out);
    free(order);
    free(meta);
    free(hdr.p);
    return rc;
}
