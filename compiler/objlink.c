/* objlink.c — joins the object files of a parallel `nnc compile` into one relocatable
 * object: the system's `ld -r` merges them, then localize_hidden turns the symbols the
 * pieces shared (hidden, model-prefixed) back into local ones, so the result exports
 * exactly what a one-piece compile exports. localize_hidden does in-process what
 * `objcopy --localize-hidden` does (a process start less: ~5-8 ms of the join), for the
 * ELF64 objects `ld -r` writes from LLVM's; anything it does not know (section groups,
 * extended section indices, LLVM's address-significance tables) is left to objcopy.
 *
 * Preconditions: the pieces are ELF objects for the host (the caller does this only when
 * no --target was given). Failure is not an error: the caller compiles in one piece instead,
 * so a machine without binutils still gets its object, only later. */
#include "nnc.h"

#include <elf.h>
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
    if (known < 0) known = in_path("ld");
    return known;
}

static bool read_file(const char *path, unsigned char **data, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    bool ok = !fseek(f, 0, SEEK_END);
    long n = ok ? ftell(f) : -1;
    ok = n > 0 && !fseek(f, 0, SEEK_SET);
    *data = ok ? malloc((size_t)n) : NULL;
    ok = *data && fread(*data, 1, (size_t)n, f) == (size_t)n;
    fclose(f);
    if (!ok) {
        free(*data);
        *data = NULL;
        return false;
    }
    *size = (size_t)n;
    return true;
}

static bool write_file(const char *path, const unsigned char *data, size_t size) {
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    bool ok = fwrite(data, 1, size, f) == size;
    return !fclose(f) && ok;
}

/* Defined hidden symbols of global or weak binding become local: the symbol table is
 * reordered (locals first, as ELF requires: sh_info is the first non-local index), and the
 * relocations' symbol indices follow. Returns false, with the file untouched, for anything
 * but a host-endian ELF64 relocatable object with one symbol table that only relocation
 * sections refer to. */
static bool localize_hidden(const char *path) {
    unsigned char *d;
    size_t size;
    if (!read_file(path, &d, &size)) return false;
    bool ok = false;
    uint32_t *map = NULL;
    Elf64_Sym *old = NULL;
    Elf64_Ehdr *eh = (Elf64_Ehdr *)d;
    Elf64_Shdr *sh;
    if (size < sizeof *eh || memcmp(eh->e_ident, ELFMAG, SELFMAG) || eh->e_ident[EI_CLASS] != ELFCLASS64 ||
        eh->e_ident[EI_DATA] != (__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ ? ELFDATA2LSB : ELFDATA2MSB) ||
        eh->e_type != ET_REL || eh->e_shentsize != sizeof *sh || eh->e_shnum == 0 ||
        eh->e_shoff > size || (size - eh->e_shoff) / sizeof *sh < eh->e_shnum)
        goto done;
    sh = (Elf64_Shdr *)(d + eh->e_shoff);
    int symtab = -1;
    for (int i = 0; i < eh->e_shnum; i++) {
        uint32_t t = sh[i].sh_type;
        if (t != SHT_NOBITS && (sh[i].sh_offset > size || sh[i].sh_size > size - sh[i].sh_offset)) goto done;
        if (t == SHT_SYMTAB) {
            if (symtab >= 0) goto done;
            symtab = i;
        }
        /* what refers to symbols by index, besides relocations */
        if (t == SHT_GROUP || t == SHT_SYMTAB_SHNDX || t == 0x6fff4c03 /* SHT_LLVM_ADDRSIG */ || t == SHT_DYNSYM)
            goto done;
    }
    if (symtab < 0 || sh[symtab].sh_entsize != sizeof(Elf64_Sym)) goto done;
    Elf64_Sym *sym = (Elf64_Sym *)(d + sh[symtab].sh_offset);
    size_t n = sh[symtab].sh_size / sizeof *sym, first_global = sh[symtab].sh_info;
    if (first_global > n) goto done;
    map = malloc(n * sizeof *map);
    old = malloc(n * sizeof *old);
    if (!map || !old) goto done;
    memcpy(old, sym, n * sizeof *old);
    /* new order: the locals, the hidden definitions made local, the remaining globals */
    size_t k = 0;
    for (int pass = 0; pass < 3; pass++)
        for (size_t i = 0; i < n; i++) {
            bool local = i < first_global;
            bool hide = !local && ELF64_ST_VISIBILITY(old[i].st_other) == STV_HIDDEN && old[i].st_shndx != SHN_UNDEF;
            if ((pass == 0 && !local) || (pass == 1 && !hide) || (pass == 2 && (local || hide))) continue;
            map[i] = (uint32_t)k;
            sym[k] = old[i];
            if (hide) sym[k].st_info = ELF64_ST_INFO(STB_LOCAL, ELF64_ST_TYPE(old[i].st_info));
            k++;
        }
    size_t locals = 0;
    while (locals < n && ELF64_ST_BIND(sym[locals].st_info) == STB_LOCAL) locals++;
    sh[symtab].sh_info = (uint32_t)locals;
    for (int i = 0; i < eh->e_shnum; i++) {
        if (sh[i].sh_link != (uint32_t)symtab || (sh[i].sh_type != SHT_RELA && sh[i].sh_type != SHT_REL)) continue;
        bool rela = sh[i].sh_type == SHT_RELA;
        size_t es = rela ? sizeof(Elf64_Rela) : sizeof(Elf64_Rel);
        if (sh[i].sh_entsize != es) goto done;
        for (size_t off = 0; off + es <= sh[i].sh_size; off += es) {
            /* r_info is at the same offset in both forms */
            Elf64_Rel *r = (Elf64_Rel *)(d + sh[i].sh_offset + off);
            size_t s = ELF64_R_SYM(r->r_info);
            if (s >= n) goto done;
            r->r_info = ELF64_R_INFO((uint64_t)map[s], ELF64_R_TYPE(r->r_info));
        }
    }
    ok = write_file(path, d, size);
done:
    free(map);
    free(old);
    free(d);
    return ok;
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
        ok = run_quietly(argv) && (localize_hidden(out) || run_quietly(oc));
    }
    for (int i = 0; i < made; i++) unlink(names[i]);
    return ok;
}
