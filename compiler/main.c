/* main.c — the nnc driver: command dispatch. The pipeline is in driver.c.
 * Each command lives in the file that owns its work (cmd_*.c, gradcheck.c). */
#include "nnc.h"
#include "nnrt.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct Command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *synopsis;
} Command;

static const Command commands[] = {
    {"check", cmd_check, "FILE.nn                      diagnostics only"},
    {"dump", cmd_dump, "FILE.nn --ir|--ast [--fn=F]  print the AST or the IR"},
    {"summary", cmd_summary, "FILE.nn                    layers, shapes, parameters, MACs, FLOPs"},
    {"compile", cmd_compile, "FILE.nn [-o m.o]           object file and C header"},
    {"train", cmd_train, "FILE.nn [options]            train a model"},
    {"eval", cmd_eval, "FILE.nn --weights W           metrics on the test split"},
    {"run", cmd_run, "FILE.nn --weights W --input x=a.npy   inference"},
    {"grad", cmd_grad, "FILE.nn --weights W --input ... --out g.safetensors   gradients"},
    {"gradcheck", cmd_gradcheck, "FILE.nn [--seed N]       finite differences vs gradients"},
    {"sample", cmd_sample, "FILE.nn --weights W --prime TEXT   generate from a sequence model"},
};

static void print_usage(FILE *out) {
    fprintf(out, "usage: nnc <command> FILE.nn [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].synopsis);
    fprintf(out, "\nRun 'nnc <command> --help' for the options of a command.\n"
                 "Exit status: 0 success, 1 errors in the input, 2 usage errors.\n");
}

/* Debian's OpenBLAS does not recognise some AVX-512 CPUs and falls back to its AVX2 kernels
 * unless OPENBLAS_CORETYPE is set before the library loads; it is loaded before main runs, so
 * set the variable and start again (once: NNRT_BLAS_REEXEC marks the second start).
 * NNC_NO_REEXEC=1 opts out; NNC_BLAS_CORETYPE=NAME forces a kernel set. */
static void select_blas_kernels(char **argv) {
    const char *name = NULL;
    const char *opt_out = getenv("NNC_NO_REEXEC");
    if ((opt_out && *opt_out == '1') || !nnrt_blas_wants_coretype(&name) || !name) return;
    const char *before = getenv("OPENBLAS_CORETYPE");
    if (before) setenv("NNC_OPENBLAS_CORETYPE_WAS", before, 1);
    setenv("OPENBLAS_CORETYPE", name, 1);
    setenv("NNRT_BLAS_REEXEC", "1", 1);
    execv("/proc/self/exe", argv);
    /* exec failed: carry on with the kernels we have */
    if (before) setenv("OPENBLAS_CORETYPE", before, 1);
    else unsetenv("OPENBLAS_CORETYPE");
    unsetenv("NNRT_BLAS_REEXEC");
    unsetenv("NNC_OPENBLAS_CORETYPE_WAS");
}

/* How the kernel set in use was chosen, for --version. */
static void print_blas_choice(void) {
    const char *was = getenv("NNC_OPENBLAS_CORETYPE_WAS"), *forced = getenv("NNC_BLAS_CORETYPE");
    const char *again = getenv("NNRT_BLAS_REEXEC");
    printf("BLAS kernels: %s", nnrt_blas_core());
    if (again && *again == '1') {
        if (forced && *forced)
            printf(" (NNC_BLAS_CORETYPE)");
        else if (was)
            printf(" (chosen by nnc for this AVX-512 CPU; OPENBLAS_CORETYPE was %s)", was);
        else
            printf(" (chosen by nnc for this AVX-512 CPU)");
    } else if (getenv("OPENBLAS_CORETYPE"))
        printf(" (OPENBLAS_CORETYPE)");
    else
        printf(" (chosen by OpenBLAS)");
    printf("\n");
}

/* The commands that run models (and so OpenBLAS); the others never call it and are not
 * worth a second process start (about 50 ms of CPU: nnc compile is measured, W7). */
static bool runs_blas(const char *command) {
    static const char *const blas_commands[] = {"train", "eval", "run", "grad", "gradcheck", "sample", "--version"};
    for (size_t i = 0; i < sizeof blas_commands / sizeof blas_commands[0]; i++)
        if (!strcmp(command, blas_commands[i])) return true;
    return false;
}

int main(int argc, char **argv) {
    if (argc >= 2 && runs_blas(argv[1])) select_blas_kernels(argv);
    else nnrt_blas_stop_threads(); /* their start-up spinning competes with `compile`'s threads */
    time_mark("start-up");
    if (argc < 2) {
        print_usage(stderr);
        return 2;
    }
    const char *name = argv[1];
    if (!strcmp(name, "--help") || !strcmp(name, "-h") || !strcmp(name, "help")) {
        print_usage(stdout);
        return 0;
    }
    if (!strcmp(name, "--version")) {
        printf("nnc 0.1 (LLVM 19)\nBLAS: %s\n", nnrt_blas_info());
        print_blas_choice();
        return 0;
    }
    const char *names[sizeof commands / sizeof commands[0]];
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        names[i] = commands[i].name;
        if (strcmp(name, commands[i].name)) continue;
        return commands[i].fn(argc - 2, argv + 2);
    }
    const char *close = diag_closest(name, names, (int)(sizeof names / sizeof names[0]));
    if (close)
        fprintf(stderr, "nnc: error: unknown command '%s'; did you mean '%s'?\n", name, close);
    else
        fprintf(stderr, "nnc: error: unknown command '%s'\n", name);
    fprintf(stderr, "Run 'nnc --help' for the list of commands.\n");
    return 2;
}
