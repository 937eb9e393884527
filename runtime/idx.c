/* idx.c — IDX files (the MNIST / Fashion-MNIST format), plain or gzip-compressed.
 *
 *   0x00 0x00 <type> <ndims> | ndims big-endian u32 dimensions | data, big-endian
 *   type: 0x08 u8, 0x09 i8, 0x0B i16, 0x0C i32, 0x0D f32, 0x0E f64
 *
 * Both kinds of file are read through zlib's gz* functions, which pass plain files through
 * unchanged; the gzip magic (1f 8b) only decides how offsets are described in messages.
 * Offsets in messages are offsets in the uncompressed IDX stream.
 */
#include "nnrt_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

enum { IDX_CHUNK = 1 << 24 };

typedef struct idx_reader {
    gzFile gz;
    const char *path;
    bool gzip;
    uint64_t pos; /* bytes of the uncompressed stream consumed */
} idx_reader;

/* Reads up to n bytes; *got receives how many were read. Returns NNRT_OK (possibly short
 * at end of file), or NNRT_EFORMAT/NNRT_EIO when zlib reports corrupt or truncated data. */
static int idx_read(idx_reader *r, void *dst, uint64_t n, uint64_t *got, nnrt_error *err) {
    *got = 0;
    while (*got < n) {
        uint64_t want = n - *got;
        unsigned chunk = want > (1u << 30) ? (1u << 30) : (unsigned)want;
        int k = gzread(r->gz, (char *)dst + *got, chunk);
        if (k < 0) {
            int code;
            const char *msg = gzerror(r->gz, &code);
            return nnrti_fail(err, code == Z_ERRNO ? NNRT_EIO : NNRT_EFORMAT,
                              "%s: %s at byte offset %llu of the uncompressed data: %s", r->path,
                              code == Z_ERRNO ? "read error" : "corrupt or truncated gzip data",
                              (unsigned long long)(r->pos + *got),
                              code == Z_ERRNO ? strerror(errno) : msg);
        }
        if (k == 0) break;
        *got += (uint64_t)k;
    }
    r->pos += *got;
    return NNRT_OK;
}

/* Reads exactly n bytes of `what`, or fails naming where the file ended. */
static int idx_read_exact(idx_reader *r, void *dst, uint64_t n, const char *what,
                          nnrt_error *err) {
    uint64_t start = r->pos, got;
    int rc = idx_read(r, dst, n, &got, err);
    if (rc) return rc;
    if (got < n)
        return nnrti_fail(err, NNRT_EFORMAT,
                          "%s: truncated: expected %s (%llu bytes) at byte offset %llu but "
                          "the %sdata ends at byte offset %llu",
                          r->path, what, (unsigned long long)n, (unsigned long long)start,
                          r->gzip ? "uncompressed " : "", (unsigned long long)r->pos);
    return NNRT_OK;
}

static size_t idx_elem_size(int type, int *dtype) {
    switch (type) {
    case 0x08: *dtype = NNRT_U8; return 1;
    case 0x0C: *dtype = NNRT_I32; return 4;
    case 0x0D: *dtype = NNRT_F32; return 4;
    case 0x0E: *dtype = NNRT_F64; return 8;
    default: return 0;
    }
}

/* Big-endian elements to host order, in place. */
static void swap_to_host(unsigned char *p, int64_t n, size_t size) {
    if (size == 1) return;
    for (int64_t i = 0; i < n; i++, p += size) {
        if (size == 4) {
            uint32_t v = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
            memcpy(p, &v, 4);
        } else {
            uint64_t v = 0;
            for (int k = 0; k < 8; k++) v = v << 8 | p[k];
            memcpy(p, &v, 8);
        }
    }
}

static int idx_read_all(idx_reader *r, nnrt_array *out, uint64_t file_size, nnrt_error *err) {
    const char *path = r->path;
    unsigned char magic[4], dimbuf[4 * NNRT_MAX_RANK];
    int rc;
    if ((rc = idx_read_exact(r, magic, 4, "the magic number", err))) return rc;
    if (magic[0] != 0 || magic[1] != 0)
        return nnrti_fail(err, NNRT_EFORMAT, "%s: not an IDX file: bytes 0-1 are %02x %02x, "
                          "expected 00 00", path, magic[0], magic[1]);
    int dtype;
    size_t esize = idx_elem_size(magic[2], &dtype);
    if (!esize)
        return nnrti_fail(err, NNRT_EFORMAT, "%s: unsupported IDX element type 0x%02x at byte "
                          "offset 2 (supported: 08 u8, 0C i32, 0D f32, 0E f64)", path, magic[2]);
    int rank = magic[3];
    if (rank < 1 || rank > NNRT_MAX_RANK)
        return nnrti_fail(err, NNRT_EFORMAT, "%s: IDX dimension count %d at byte offset 3 is not "
                          "in 1..%d", path, rank, NNRT_MAX_RANK);
    if ((rc = idx_read_exact(r, dimbuf, 4 * (uint64_t)rank, "the dimensions", err))) return rc;
    int64_t shape[NNRT_MAX_RANK];
    for (int i = 0; i < rank; i++) {
        const unsigned char *d = dimbuf + 4 * i;
        shape[i] = (int64_t)((uint32_t)d[0] << 24 | (uint32_t)d[1] << 16 | (uint32_t)d[2] << 8 | d[3]);
    }
    int64_t numel;
    uint64_t bytes;
    char s[160];
    nnrti_format_shape(s, sizeof s, rank, shape);
    if (!nnrti_shape_bytes(rank, shape, esize, &numel, &bytes))
        return nnrti_fail(err, NNRT_EFORMAT, "%s: IDX dimensions %s overflow", path, s);
    uint64_t data_start = r->pos;
    /* A plain file's size is known: refuse a short one before allocating anything. */
    if (!r->gzip && bytes > file_size - data_start)
        return nnrti_fail(err, NNRT_EFORMAT, "%s: truncated: dimensions %s need %llu bytes of "
                          "data from byte offset %llu but the file ends at byte offset %llu",
                          path, s, (unsigned long long)bytes, (unsigned long long)data_start,
                          (unsigned long long)file_size);

    /* gzip sizes are unknown until read: grow the buffer as data arrives, so a hostile
     * header claiming terabytes costs only as much memory as the data really holds. */
    unsigned char *data = NULL;
    uint64_t cap = 0, have = 0;
    while (have < bytes) {
        if (have == cap) {
            uint64_t next = cap ? 2 * cap : IDX_CHUNK;
            if (next > bytes) next = bytes;
            unsigned char *p = realloc(data, (size_t)next);
            if (!p) {
                free(data);
                return nnrti_fail(err, NNRT_ENOMEM, "%s: out of memory for %llu bytes", path,
                                  (unsigned long long)next);
            }
            data = p;
            cap = next;
        }
        uint64_t got;
        if ((rc = idx_read(r, data + have, cap - have, &got, err))) {
            free(data);
            return rc;
        }
        have += got;
        if (got == 0) break;
    }
    if (have < bytes) {
        free(data);
        return nnrti_fail(err, NNRT_EFORMAT, "%s: truncated: dimensions %s need %llu bytes of "
                          "data from byte offset %llu but the %sdata ends at byte offset %llu",
                          path, s, (unsigned long long)bytes, (unsigned long long)data_start,
                          r->gzip ? "uncompressed " : "", (unsigned long long)r->pos);
    }
    unsigned char extra;
    uint64_t got;
    if ((rc = idx_read(r, &extra, 1, &got, err)) || got) {
        free(data);
        if (rc) return rc;
        return nnrti_fail(err, NNRT_EFORMAT, "%s: unexpected data after byte offset %llu (the "
                          "end of %s)", path, (unsigned long long)(data_start + bytes), s);
    }
    if (!data) data = malloc(1); /* numel == 0: still hand back a valid pointer */
    if (!data) return nnrti_fail(err, NNRT_ENOMEM, "%s: out of memory", path);
    swap_to_host(data, numel, esize);
    out->dtype = dtype;
    out->rank = rank;
    memcpy(out->shape, shape, (size_t)rank * sizeof shape[0]);
    out->data = data;
    out->numel = numel;
    return NNRT_OK;
}

int nnrt_idx_load(const char *path, nnrt_array *out, nnrt_error *err) {
    if (!out) return nnrti_fail(err, NNRT_ENULL, "nnrt_idx_load: NULL output");
    memset(out, 0, sizeof *out);
    if (!path) return nnrti_fail(err, NNRT_ENULL, "nnrt_idx_load: NULL path");

    /* Probe the first bytes and the size with stdio: gz functions cannot stat. */
    FILE *f = fopen(path, "rb");
    if (!f) return nnrti_fail(err, NNRT_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return nnrti_fail(err, NNRT_EIO, "%s: not a regular file", path);
    }
    unsigned char probe[2] = {0, 0};
    size_t np = fread(probe, 1, 2, f);
    fclose(f);

    idx_reader r = {.path = path, .gzip = np == 2 && probe[0] == 0x1f && probe[1] == 0x8b};
    r.gz = gzopen(path, "rb");
    if (!r.gz) return nnrti_fail(err, NNRT_EIO, "%s: cannot open: %s", path, strerror(errno));
    gzbuffer(r.gz, 1 << 17);
    int rc = idx_read_all(&r, out, (uint64_t)st.st_size, err);
    gzclose(r.gz);
    if (rc) memset(out, 0, sizeof *out);
    return rc;
}
