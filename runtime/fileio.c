/* fileio.c — bounds-checked sequential input and atomic (crash-safe) file output. */
#include "nnrt_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------------------------------------------------------- input */

int nnrti_input_open(nnrti_input *in, const char *path, nnrt_error *err) {
    memset(in, 0, sizeof *in);
    in->name = path;
    FILE *f = fopen(path, "rb");
    if (!f) return nnrti_fail(err, NNRT_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0) {
        int e = errno;
        fclose(f);
        return nnrti_fail(err, NNRT_EIO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        fclose(f);
        return nnrti_fail(err, NNRT_EIO, "%s: not a regular file", path);
    }
    in->file = f;
    in->size = (uint64_t)st.st_size;
    return NNRT_OK;
}

void nnrti_input_memory(nnrti_input *in, const void *buf, size_t len, const char *name) {
    memset(in, 0, sizeof *in);
    in->mem = buf;
    in->size = buf ? len : 0;
    in->name = name ? name : "<memory>";
}

int nnrti_input_read(nnrti_input *in, void *dst, uint64_t n, const char *what,
                     nnrt_error *err) {
    if (n > in->size - in->pos)
        return nnrti_fail(err, NNRT_EFORMAT,
                          "%s: truncated: expected %s (%llu bytes) at byte offset %llu but "
                          "the file ends at byte %llu",
                          in->name, what, (unsigned long long)n, (unsigned long long)in->pos,
                          (unsigned long long)in->size);
    if (n == 0) return NNRT_OK;
    if (in->file) {
        size_t got = fread(dst, 1, (size_t)n, in->file);
        if (got != n) {
            if (ferror(in->file))
                return nnrti_fail(err, NNRT_EIO, "%s: read error at byte offset %llu: %s",
                                  in->name, (unsigned long long)(in->pos + got),
                                  strerror(errno));
            /* The file shrank after we measured it. */
            return nnrti_fail(err, NNRT_EFORMAT,
                              "%s: truncated: %s ends at byte offset %llu (file changed "
                              "while being read)",
                              in->name, what, (unsigned long long)(in->pos + got));
        }
    } else {
        memcpy(dst, in->mem + in->pos, (size_t)n);
    }
    in->pos += n;
    return NNRT_OK;
}

void nnrti_input_close(nnrti_input *in) {
    if (in->file) fclose(in->file);
    in->file = NULL;
}

/* ---------------------------------------------------------------- atomic output */

int nnrti_output_open(nnrti_output *out, const char *path, nnrt_error *err) {
    out->fd = -1;
    out->path = path;
    size_t len = strlen(path) + 32;
    out->tmp_path = malloc(len);
    if (!out->tmp_path) return nnrti_fail(err, NNRT_ENOMEM, "%s: out of memory", path);
    snprintf(out->tmp_path, len, "%s.tmp.%ld", path, (long)getpid());
    out->fd = open(out->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (out->fd < 0) {
        int e = errno;
        free(out->tmp_path);
        out->tmp_path = NULL;
        return nnrti_fail(err, NNRT_EIO, "%s: cannot create %s.tmp.%ld: %s", path, path,
                          (long)getpid(), strerror(e));
    }
    return NNRT_OK;
}

int nnrti_output_write(nnrti_output *out, const void *buf, size_t n, nnrt_error *err) {
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(out->fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            int e = w < 0 ? errno : EIO;
            nnrti_output_abort(out);
            return nnrti_fail(err, NNRT_EIO, "%s: write failed: %s", out->path, strerror(e));
        }
        p += w;
        n -= (size_t)w;
    }
    return NNRT_OK;
}

/* fsync of the directory makes the rename itself durable; not every file system supports
 * it (EINVAL), and the new file is complete either way, so its failure is not reported. */
static void sync_parent_directory(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir;
    if (!slash) dir = strdup(".");
    else if (slash == path) dir = strdup("/");
    else dir = strndup(path, (size_t)(slash - path));
    if (!dir) return;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    free(dir);
}

int nnrti_output_commit(nnrti_output *out, nnrt_error *err) {
    int e = 0;
    const char *step = NULL;
    if (fsync(out->fd) != 0) e = errno, step = "fsync";
    if (close(out->fd) != 0 && !e) e = errno, step = "close";
    out->fd = -1;
    if (!e && rename(out->tmp_path, out->path) != 0) e = errno, step = "rename";
    if (e) {
        nnrti_output_abort(out);
        return nnrti_fail(err, NNRT_EIO, "%s: %s failed: %s", out->path, step, strerror(e));
    }
    sync_parent_directory(out->path);
    free(out->tmp_path);
    out->tmp_path = NULL;
    return NNRT_OK;
}

void nnrti_output_abort(nnrti_output *out) {
    if (out->fd >= 0) close(out->fd);
    out->fd = -1;
    if (out->tmp_path) {
        unlink(out->tmp_path);
        free(out->tmp_path);
        out->tmp_path = NULL;
    }
}
