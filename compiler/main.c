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

/* The commands that run models (and so OpenBLAS): they load it before anything else, so
 * that a missing library is reported before any work. The others never load it. */
static bool runs_blas(const char *command) {
    static const char *const blas_commands[] = {"train", "eval", "run", "grad", "gradcheck", "sample", "--version"};
    for (size_t i = 0; i < sizeof blas_commands / sizeof blas_commands[0]; i++)
        if (!strcmp(command, blas_commands[i])) return true;
    return false;
}

int main(int argc, char **argv) {
    if (argc >= 2 && runs_blas(argv[1])) blas_load();
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
        printf("BLAS kernels: %s (%s)\n", nnrt_blas_core(), blas_choice());
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
