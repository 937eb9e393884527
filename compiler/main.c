/* main.c — the nnc driver: command-line parsing and the pass pipeline as a plain list of calls. */
#include "nnc.h"

#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: nnc <command> FILE.nn [options]\n"
    "\n"
    "commands:\n"
    "  check FILE.nn        report diagnostics only (exit 0 ok, 1 errors, 2 usage)\n"
    "  dump FILE.nn --ast   print the syntax tree\n"
    "\n"
    "Run 'nnc <command> --help' for a command's options.\n";

static int cmd_check(int argc, char **argv, bool dump_ast) {
    const char *path = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: nnc %s FILE.nn\n", dump_ast ? "dump --ast" : "check");
            return 0;
        } else if (!strcmp(argv[i], "--ast")) {
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "nnc: error: unknown option '%s'\n", argv[i]);
            return 2;
        } else if (path) {
            fprintf(stderr, "nnc: error: more than one input file\n");
            return 2;
        } else {
            path = argv[i];
        }
    }
    if (!path) {
        fprintf(stderr, "nnc: error: no input file\n");
        return 2;
    }
    Source *src = source_read(path);
    if (!src) return 1;
    Arena arena = {0};
    Diag d;
    diag_init(&d, src, stderr);
    Program *p = parse_program(&arena, src, &d);
    if (dump_ast && !d.errors) ast_print(stdout, p);
    int rc = d.errors ? 1 : 0;
    arena_free(&arena);
    source_free(src);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
        !strcmp(argv[1], "help")) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "check")) return cmd_check(argc - 2, argv + 2, false);
    if (!strcmp(cmd, "dump")) return cmd_check(argc - 2, argv + 2, true);
    fprintf(stderr, "nnc: error: unknown command '%s'\n%s", cmd, usage);
    return 2;
}
