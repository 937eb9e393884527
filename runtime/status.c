/* status.c — status codes and messages, dtypes, the clock, and small checked helpers. */
#include "nnrt_internal.h"

#include <stdarg.h>
#include <string.h>
#include <time.h>

const char *nnrt_strerror(int status) {
    switch (status) {
    case NNRT_OK: return "success";
    case NNRT_EBATCH: return "batch size out of range";
    case NNRT_ENULL: return "NULL buffer";
    case NNRT_ENONFINITE: return "non-finite loss";
    case NNRT_EIO: return "input/output error";
    case NNRT_EFORMAT: return "malformed file";
    case NNRT_EMISMATCH: return "file does not match the model";
    case NNRT_ENOMEM: return "out of memory";
    case NNRT_EARG: return "invalid argument";
    default: return "unknown status code";
    }
}

size_t nnrt_dtype_size(int dtype) {
    switch (dtype) {
    case NNRT_F32: return 4;
    case NNRT_I32: return 4;
    case NNRT_F64: return 8;
    case NNRT_U8: return 1;
    case NNRT_I64: return 8;
    default: return 0;
    }
}

const char *nnrt_dtype_name(int dtype) {
    switch (dtype) {
    case NNRT_F32: return "F32";
    case NNRT_I32: return "I32";
    case NNRT_F64: return "F64";
    case NNRT_U8: return "U8";
    case NNRT_I64: return "I64";
    default: return "?";
    }
}

double nnrt_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int nnrti_fail(nnrt_error *err, int code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

void nnrti_format_shape(char *buf, size_t size, int rank, const int64_t *shape) {
    size_t len = 0;
    if (size == 0) return;
    buf[0] = 0;
    len += (size_t)snprintf(buf + len, size - len, "[");
    for (int i = 0; i < rank && len < size; i++)
        len += (size_t)snprintf(buf + len, size - len, "%s%lld", i ? ", " : "",
                                (long long)shape[i]);
    if (len < size) snprintf(buf + len, size - len, "]");
}

bool nnrti_shape_bytes(int rank, const int64_t *shape, size_t elem_size, int64_t *numel,
                       uint64_t *bytes) {
    uint64_t n = 1;
    for (int i = 0; i < rank; i++) {
        if (shape[i] < 0) return false;
        uint64_t d = (uint64_t)shape[i];
        if (d != 0 && n > (uint64_t)INT64_MAX / d) return false;
        n *= d;
    }
    if (elem_size && n > (uint64_t)INT64_MAX / elem_size) return false;
    if (numel) *numel = (int64_t)n;
    if (bytes) *bytes = n * elem_size;
    return true;
}

/* UTF-8 per RFC 3629: lead byte ranges and the second-byte limits that exclude overlong
 * forms (E0, F0), surrogates (ED) and code points above U+10FFFF (F4). */
size_t nnrti_utf8_prefix(const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        unsigned lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) len = 2;
        else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED) hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;
        } else
            return i;
        if (n - i < len) return i;
        if (s[i + 1] < lo || s[i + 1] > hi) return i;
        for (size_t k = 2; k < len; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xBF) return i;
        i += len;
    }
    return n;
}

bool nnrti_utf8_valid(const char *s, size_t n) { return nnrti_utf8_prefix(s, n) == n; }
