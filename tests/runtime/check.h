/* check.h — a tiny assert harness for the runtime unit tests.
 *
 * A test program is a main() calling test functions that use CHECK*; a failing check
 * prints its expression (and values) with file:line and the program goes on, so one run
 * shows every failure. main() ends with `return check_summary("name");`, which prints
 * "name: N checks, M failed" and returns nonzero when something failed.
 *
 * Scratch files go to a fresh directory from test_tmpdir() (under $TMPDIR or /tmp),
 * removed with everything in it by test_tmpdir_remove().
 */
#ifndef NNRT_TEST_CHECK_H
#define NNRT_TEST_CHECK_H

#include "nnrt.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int check_count, check_failed;

static inline void check_report(const char *file, int line, const char *what) {
    check_failed++;
    fprintf(stderr, "%s:%d: CHECK failed: %s\n", file, line, what);
}

#define CHECK(expr)                                                                        \
    do {                                                                                   \
        check_count++;                                                                     \
        if (!(expr)) check_report(__FILE__, __LINE__, #expr);                              \
    } while (0)

#define CHECK_EQ(a, b)                                                                     \
    do {                                                                                   \
        long long check_a_ = (long long)(a), check_b_ = (long long)(b);                    \
        check_count++;                                                                     \
        if (check_a_ != check_b_) {                                                        \
            check_report(__FILE__, __LINE__, #a " == " #b);                                \
            fprintf(stderr, "    %lld != %lld\n", check_a_, check_b_);                     \
        }                                                                                  \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                              \
    do {                                                                                   \
        double check_a_ = (double)(a), check_b_ = (double)(b);                             \
        check_count++;                                                                     \
        if (!(fabs(check_a_ - check_b_) <= (tol))) {                                       \
            check_report(__FILE__, __LINE__, "|" #a " - " #b "| <= " #tol);                \
            fprintf(stderr, "    %.9g vs %.9g\n", check_a_, check_b_);                     \
        }                                                                                  \
    } while (0)

/* The status is `code` and the error message contains `needle`. */
#define CHECK_ERR(rc, code, err, needle)                                                   \
    do {                                                                                   \
        int check_rc_ = (rc);                                                              \
        check_count++;                                                                     \
        if (check_rc_ != (code) || !strstr((err).msg, (needle))) {                         \
            check_report(__FILE__, __LINE__, #rc " == " #code " with '" needle "'");       \
            fprintf(stderr, "    status %d, message: %s\n", check_rc_, (err).msg);         \
        }                                                                                  \
    } while (0)

static inline int check_summary(const char *name) {
    printf("%s: %d checks, %d failed\n", name, check_count, check_failed);
    return check_failed != 0;
}

/* ---------------------------------------------------------------- scratch files */

static char test_dir[256];

static inline const char *test_tmpdir(void) {
    const char *base = getenv("TMPDIR");
    snprintf(test_dir, sizeof test_dir, "%s/nnrt-test-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(test_dir)) {
        perror("mkdtemp");
        exit(2);
    }
    return test_dir;
}

/* A path inside the scratch directory; each call returns a new buffer from a small ring. */
static inline const char *test_path(const char *name) {
    static char ring[8][512];
    static int next;
    char *p = ring[next++ % 8];
    snprintf(p, 512, "%s/%s", test_dir, name);
    return p;
}

/* How many entries (besides . and ..) the scratch directory holds. */
static inline int test_dir_entries(void) {
    DIR *d = opendir(test_dir);
    int n = 0;
    if (!d) return -1;
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

static inline void test_tmpdir_remove(void) {
    DIR *d = opendir(test_dir);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) unlink(test_path(e->d_name));
    closedir(d);
    rmdir(test_dir);
}

/* Whole-file helpers. */
static inline int test_write_file(const char *path, const void *buf, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(buf, 1, n, f);
    return fclose(f) == 0 && w == n ? 0 : -1;
}

static inline unsigned char *test_read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    *n = 0;
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc(len > 0 ? (size_t)len : 1);
    if (buf && fread(buf, 1, (size_t)len, f) != (size_t)len) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *n = (size_t)len;
    return buf;
}

/* A deterministic generator for test data (xorshift64*), independent of nnrt's RNG. */
static inline uint64_t test_rand(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

#endif
