/* fuzz_parse.c — libFuzzer target for the .nn front end: scanner, parser, diagnostics and
 * the AST printer. Built and run by tests/fuzz/run.sh. */
#include "ast.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static FILE *devnull;
    if (!devnull) devnull = fopen("/dev/null", "w");
    if (!devnull) abort();
    Source *src = source_from_string("fuzz.nn", (const char *)data, size);
    Arena arena = {0};
    Diag d;
    diag_init(&d, src, devnull);
    Program *p = parse_program(&arena, src, &d);
    ast_print(devnull, p); /* also on partial trees left by error recovery */
    arena_free(&arena);
    source_free(src);
    return 0;
}
