/* objlink.c — joins the object files of a parallel `nnc compile` into one relocatable
 * object with the system's binutils: `ld -r` merges them, `objcopy --localize-hidden` turns
 * the symbols the pieces shared (hidden, model-prefixed) back into local ones, so the result
 * exports exactly what a one-piece compile exports.
 *
 * Preconditions: the pieces are ELF objects for the host (the caller does this only when
 * no --target was given). Failure is not an error: the caller compiles in one piece instead,
 * so a machine without binutils still gets its object, only later. */
#include "nnc.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* Runs argv (looked up in PATH) with stdout and stderr to /dev/null; true when it exits 0. */
static bool run_quietly(char *const argv[]) {
    posix_spawn_file_actions_t fa;
    if (posix_spawn_file_actions_init(&fa)) return false;
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc) return false;
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return false;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

/* Whether an executable named `name` is in PATH: looked up, not run, so that a compile
 * that joins no pieces pays nothing for it. */
static bool in_path(const char *name) {
    const char *path = getenv("PATH");
    if (!path || !*path) path = "/usr/bin:/bin";
    for (const char *p = path; *p;) {
        size_t len = strcspn(p, ":");
        char file[4096];
        if ((size_t)snprintf(file, sizeof file, "%.*s/%s", (int)len, len ? p : ".", name) < sizeof file &&
            access(file, X_OK) == 0)
            return true;
        p += len + (p[len] == ':');
    }
    return false;
}

bool objlink_available(void) {
    static int known = -1;
    if (known < 0) known = in_path("ld") && in_path("objcopy");
    return known;
}

/* Writes n in-memory objects to temporary files and links them into `out`. */
bool objlink_join(const char *out, const void *const *objs, const size_t *sizes, int n) {
    enum { MAX_PIECES = 16 };
    if (n < 1 || n > MAX_PIECES) return false;
    /* a name starting with '-' would read as an option */
    char outbuf[4096];
    if ((size_t)snprintf(outbuf, sizeof outbuf, "%s%s", out[0] == '-' ? "./" : "", out) >= sizeof outbuf) return false;
    out = outbuf;
    const char *dir = getenv("TMPDIR");
    if (!dir || !*dir) dir = "/tmp";
    char names[MAX_PIECES][4096];
    int made = 0;
    bool ok = true;
    for (; made < n && ok; made++) {
        /* mkstemps replaces the six X before the 2-character suffix ".o" */
        snprintf(names[made], sizeof names[made], "%s/nnc-piece-XXXXXX.o", dir);
        int fd = mkstemps(names[made], 2);
        if (fd < 0) {
            ok = false;
            break;
        }
        const char *p = objs[made];
        size_t left = sizes[made];
        while (left && ok) {
            ssize_t w = write(fd, p, left);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) ok = false;
            else p += w, left -= (size_t)w;
        }
        if (close(fd)) ok = false;
    }
    if (ok) {
        char *argv[MAX_PIECES + 5];
        int a = 0;
        argv[a++] = "ld";
        argv[a++] = "-r";
        argv[a++] = "-o";
        argv[a++] = (char *)out;
        for (int i = 0; i < n; i++) argv[a++] = names[i];
        argv[a] = NULL;
        char *oc[] = {"objcopy", "--localize-hidden", (char *)out, NULL};
        ok = run_quietly(argv) && run_quietly(oc);
    }
    for (int i = 0; i < made; i++) unlink(names[i]);
    return ok;
}
