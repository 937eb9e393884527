/* nnrt_internal.h — helpers shared by the runtime's files; not installed, not public.
 * Everything here is prefixed nnrti_ so it cannot clash with a program linking libnnrt.
 *
 *   status.c  error messages, shape formatting, checked arithmetic, UTF-8 validation
 *   rng.c     double-precision normal samples (for the orthogonal initializer)
 *   fileio.c  bounds-checked sequential input (file or memory) and atomic file output
 */
#ifndef NNRT_INTERNAL_H
#define NNRT_INTERNAL_H

#include "nnrt.h"

#include <stdbool.h>
#include <stdio.h>

#if defined(__GNUC__)
#define NNRTI_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define NNRTI_PRINTF(f, a)
#endif

/* ---------------------------------------------------------------- status.c */

/* Formats a message into err (when not NULL) and returns `code`, so error paths read
 * `return nnrti_fail(err, NNRT_EFORMAT, "%s: ...", name, ...);`. */
int nnrti_fail(nnrt_error *err, int code, const char *fmt, ...) NNRTI_PRINTF(3, 4);

/* Writes "[d0, d1, ...]" into buf (always NUL-terminated; "[]" for rank 0). */
void nnrti_format_shape(char *buf, size_t size, int rank, const int64_t *shape);

/* product(shape) into *numel; false when a dimension is negative or the product (or the
 * product times elem_size, stored in *bytes when bytes is not NULL) exceeds INT64_MAX. */
bool nnrti_shape_bytes(int rank, const int64_t *shape, size_t elem_size, int64_t *numel,
                       uint64_t *bytes);

/* True when s[0..n) is well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
bool nnrti_utf8_valid(const char *s, size_t n);
/* The length of the longest valid UTF-8 prefix of s[0..n) (n when all of it is valid). */
size_t nnrti_utf8_prefix(const char *s, size_t n);

/* ---------------------------------------------------------------- rng.c */

/* The standard normal of block (seed, stream, index) in double precision, before the
 * rounding to float that nnrt_rng_fill_normal applies (see rng.c for the definition). */
double nnrti_normal(uint64_t seed, uint64_t stream, uint64_t index);

/* ---------------------------------------------------------------- fileio.c */

/* A sequential reader over a regular file or a memory buffer. Reads never go past `size`,
 * which is known before anything is read, so callers can validate lengths up front. */
typedef struct nnrti_input {
    FILE *file;          /* NULL for memory input */
    const unsigned char *mem;
    uint64_t size;       /* total bytes */
    uint64_t pos;        /* next byte to read */
    const char *name;    /* for messages */
} nnrti_input;

/* Opens `path` for reading (must be a regular file). */
int nnrti_input_open(nnrti_input *in, const char *path, nnrt_error *err);
void nnrti_input_memory(nnrti_input *in, const void *buf, size_t len, const char *name);
/* Reads exactly n bytes at the current position; NNRT_EFORMAT (truncated, naming the
 * offset and `what`) when fewer remain, NNRT_EIO on a read error. */
int nnrti_input_read(nnrti_input *in, void *dst, uint64_t n, const char *what,
                     nnrt_error *err);
void nnrti_input_close(nnrti_input *in);

/* Atomic output: bytes go to "<path>.tmp.<pid>"; commit fsyncs it, renames it over path and
 * fsyncs the directory; abort (or any failed write) removes the temporary file. */
typedef struct nnrti_output {
    int fd;
    char *tmp_path;
    const char *path;
} nnrti_output;

int nnrti_output_open(nnrti_output *out, const char *path, nnrt_error *err);
int nnrti_output_write(nnrti_output *out, const void *buf, size_t n, nnrt_error *err);
int nnrti_output_commit(nnrti_output *out, nnrt_error *err);
void nnrti_output_abort(nnrti_output *out);

/* Little-endian loads/stores that work on any alignment and any host byte order. */
static inline uint64_t nnrti_le64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}
static inline void nnrti_put_le64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* ---------------------------------------------------------------- conv.c */

/* Nonzero: nnrt_conv2d takes its generic path (im2col + sgemm) even where the AVX-512
 * direct kernel could run (tests compare the two). */
extern int nnrti_conv_force_generic;

/* ---------------------------------------------------------------- blas.c */

/* Whether the CPU has AVX512F and the extensions in need (NNRTI_AVX512_*), asked once and
 * kept: the runtime's own AVX-512 kernels (conv.c, sgemm_narrow.c, sgemm_direct.c) check it
 * on every call; OpenBLAS's AVX-512 kernel set needs BW, DQ and VL. */
enum { NNRTI_AVX512_VL = 2, NNRTI_AVX512_BW_DQ = 4 };
int nnrti_have_avx512(int need);

/* 1 when core names an OpenBLAS kernel set with 512-bit vectors (SkylakeX, Cooperlake,
 * SapphireRapids; any case); 0 for others and NULL. */
int nnrti_blas_core_has_avx512(const char *core);

/* ---------------------------------------------------------------- sgemm_narrow.c */

/* nnrt_sgemm's AVX-512 kernels for n <= 16 (sgemm_narrow.c): returns 1 when it computed
 * C (same arguments and result as nnrt_sgemm), 0 when the CPU lacks AVX512F/VL or the
 * shape is not one where they beat OpenBLAS, which should then compute C. */
int nnrti_sgemm_narrow(int trans_a, int trans_b, int m, int n, int k, float alpha,
                       const float *a, int lda, const float *b, int ldb, float beta, float *c,
                       int ldc);

/* Which calls nnrti_sgemm_narrow takes: NNRTI_NARROW_AUTO (0, the default) the shapes where
 * it is faster; OFF none; ALWAYS every one it can compute (1 <= n <= 16, m, k >= 1), so
 * that tests reach every code path of the kernels and compare them with OpenBLAS. */
enum { NNRTI_NARROW_AUTO, NNRTI_NARROW_OFF, NNRTI_NARROW_ALWAYS };
extern int nnrti_sgemm_narrow_mode;

/* ---------------------------------------------------------------- sgemm_direct.c */

/* nnrt_sgemm's AVX-512 kernel that reads the large operand in place (sgemm_direct.c):
 * returns 1 when it computed C (same arguments and result as nnrt_sgemm), 0 when the CPU
 * lacks AVX512F, the shape is not one where it beats OpenBLAS, or a buffer could not be
 * allocated; OpenBLAS should then compute C. */
int nnrti_sgemm_direct(int trans_a, int trans_b, int m, int n, int k, float alpha,
                       const float *a, int lda, const float *b, int ldb, float beta, float *c,
                       int ldc);

/* Which calls nnrti_sgemm_direct takes: NNRTI_DIRECT_AUTO (0, the default) the shapes where
 * it is faster; OFF none; ALWAYS every one it can compute (m, n, k >= 1, alpha != 0, not
 * both transposed), for tests and measurements. */
enum { NNRTI_DIRECT_AUTO, NNRTI_DIRECT_OFF, NNRTI_DIRECT_ALWAYS };
extern int nnrti_sgemm_direct_mode;

#endif /* NNRT_INTERNAL_H */
