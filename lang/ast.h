/* ast.h — source files, diagnostics, memory arenas and the AST of the .nn language.
 *
 * Sections, one per file that defines them:
 *   ast.c   arenas, AST constructors, AST printer
 *   diag.c  source files and clang-style diagnostics
 *   nn.y    the parser entry point (parse_program)
 *
 * The parser builds the AST only; every semantic check lives in compiler/sema.c.
 */
#ifndef NNC_AST_H
#define NNC_AST_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* ---------------------------------------------------------------- ast.c: arenas */

/* A bump allocator: everything allocated from it is freed at once by arena_free.
 * All AST and IR memory comes from arenas, so no pass needs to free anything. */
typedef struct ArenaBlock ArenaBlock;
typedef struct Arena {
    ArenaBlock *head;
} Arena;

void *arena_alloc(Arena *a, size_t size);          /* zeroed, 16-byte aligned; aborts on OOM */
char *arena_strdup(Arena *a, const char *s);
char *arena_strndup(Arena *a, const char *s, size_t n);
char *arena_printf(Arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void arena_free(Arena *a);

/* A growable array of pointers living in an arena (old storage is abandoned on growth). */
#define VEC_PUSH(arena, items, count, cap, value)                                      \
    do {                                                                               \
        if ((count) == (cap)) {                                                        \
            int new_cap_ = (cap) ? 2 * (cap) : 4;                                      \
            void *grown_ = arena_alloc((arena), (size_t)new_cap_ * sizeof *(items));   \
            if ((count)) memcpy(grown_, (items), (size_t)(count) * sizeof *(items));   \
            (items) = grown_;                                                          \
            (cap) = new_cap_;                                                          \
        }                                                                              \
        (items)[(count)++] = (value);                                                  \
    } while (0)

/* ---------------------------------------------------------------- diag.c: sources and diagnostics */

/* A source range. Lines and columns are 1-based; columns count bytes; the last column is
 * inclusive. A zero first_line means "no location". Bison uses this as YYLTYPE. */
typedef struct SrcLoc {
    int first_line, first_column;
    int last_line, last_column;
} SrcLoc;

typedef struct Source {
    const char *path;   /* as given on the command line */
    char *text;         /* whole file, NUL-terminated (embedded NULs are diagnosed) */
    size_t len;
    size_t *line_start; /* byte offset of each line; line_start[0] is line 1 */
    int nlines;
} Source;

/* Reads a file; returns NULL and prints "nnc: error: cannot read 'PATH': REASON" on failure. */
Source *source_read(const char *path);
Source *source_from_string(const char *path, const char *text, size_t len);
void source_free(Source *s);

enum { DIAG_MAX_ERRORS = 20 };

typedef struct Diag {
    const Source *src;
    FILE *out;          /* stderr normally */
    int errors;
    int warnings;
    bool color;         /* ANSI colors when out is a terminal */
    bool stopped;       /* DIAG_MAX_ERRORS reached: further errors are dropped */
    bool dropped_last;  /* the last error/warning was dropped, so its notes are dropped too */
} Diag;

void diag_init(Diag *d, const Source *src, FILE *out);

/* "file:line:col: error: message", the source line, "^~~~" under the range.
 * Returns false once the error cap is reached (callers may stop early): errors 1 to
 * DIAG_MAX_ERRORS are printed; the next one prints "nnc: fatal: too many errors emitted,
 * stopping now" instead and sets stopped; later ones are dropped. errors counts them all. */
bool diag_error(Diag *d, SrcLoc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void diag_warning(Diag *d, SrcLoc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* A note attached to the previous error or warning (dropped if that one was dropped). */
void diag_note(Diag *d, SrcLoc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void diag_verror(Diag *d, SrcLoc loc, const char *fmt, va_list ap);

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0 when it is invalid
 * (overlong forms, surrogates and values above U+10FFFF are invalid); *cp gets the code point. */
int utf8_decode(const char *s, size_t n, uint32_t *cp);

/* Closest candidate to name by edit distance (at most max(1, len/3) edits), or NULL. */
const char *diag_closest(const char *name, const char *const *candidates, int n);

/* ---------------------------------------------------------------- ast.c: the tree */

typedef enum ExprKind {
    E_ERROR,  /* placeholder left by error recovery; sema skips it silently */
    E_NUM,    /* num (and ival, is_int) */
    E_STR,    /* str */
    E_BOOL,   /* ival 0/1 */
    E_NAME,   /* str */
    E_BINARY, /* op is one of + - * / @ ^ (as a char): lhs op rhs */
    E_NEG,    /* -lhs */
    E_PIPE,   /* lhs |> rhs: rhs is a NAME (f -> f(lhs)) or a CALL (f(a) -> f(lhs, a)) */
    E_CALL,   /* str(args...), callee name at callee_loc */
    E_INDEX,  /* lhs[items...], each item an expression or an E_SLICE */
    E_SLICE,  /* slice[0]:slice[1]:slice[2], any may be NULL (":" alone is all NULL) */
    E_LIST,   /* [items...] */
    E_TUPLE,  /* (items...) with at least one comma */
} ExprKind;

typedef struct Expr Expr;

typedef struct Arg {
    const char *name; /* keyword argument name, NULL when positional */
    SrcLoc name_loc;
    Expr *value;
} Arg;

struct Expr {
    ExprKind kind;
    SrcLoc loc;        /* the whole expression */
    double num;        /* E_NUM */
    int64_t ival;      /* E_NUM when is_int, E_BOOL */
    bool is_int;       /* E_NUM written without '.', exponent */
    int op;            /* E_BINARY */
    const char *str;   /* E_STR, E_NAME, E_CALL (callee) */
    SrcLoc callee_loc; /* E_CALL */
    Expr *lhs, *rhs;
    Expr *slice[3];    /* E_SLICE */
    Arg *args;         /* E_CALL: positional first, then keywords */
    int nargs, args_cap;
    Expr **items;      /* E_INDEX, E_LIST, E_TUPLE */
    int nitems, items_cap;
    int depth;         /* height of the tree below (a leaf is 1); kept by expr_new/expr_add_* */
};

/* The parser rejects deeper expressions ("expression nested too deeply"), so recursive
 * walks over any parsed Expr need at most this many frames. */
enum { AST_MAX_DEPTH = 256 };

typedef struct TypeExpr {
    const char *dtype;  /* "f32", "i32", "f64" as written (sema validates) */
    SrcLoc loc;         /* whole type */
    SrcLoc dtype_loc;
    Expr **dims;        /* each an expression: number, `batch`, a const name, or arithmetic */
    int ndims, dims_cap;
} TypeExpr;

typedef enum StmtKind {
    S_ERROR,  /* placeholder left by error recovery */
    S_INPUT,  /* input NAME: TYPE */
    S_LABEL,  /* label NAME: TYPE */
    S_PARAM,  /* param NAME: TYPE [= INIT] */
    S_STATE,  /* state NAME: TYPE [= INIT] */
    S_CONST,  /* const NAME = EXPR */
    S_OUTPUT, /* output NAME [= EXPR]   (no value: outputs the existing binding NAME) */
    S_LOSS,   /* loss EXPR */
    S_METRIC, /* metric EXPR */
    S_LET,    /* NAME = EXPR   (also every entry of a train block) */
    S_RETURN, /* return EXPR   (def bodies) */
} StmtKind;

typedef struct Stmt {
    StmtKind kind;
    SrcLoc loc;       /* whole statement */
    const char *name; /* NULL for loss, metric, return */
    SrcLoc name_loc;
    TypeExpr *type;   /* input, label, param, state */
    Expr *value;      /* initializer or expression; may be NULL */
} Stmt;

typedef enum BlockKind { B_MODEL, B_DEF, B_TRAIN } BlockKind;

typedef struct DefParam {
    const char *name;
    SrcLoc loc;
    Expr *default_value; /* def f(x, k=3): NULL when none */
} DefParam;

typedef struct Block {
    BlockKind kind;
    SrcLoc loc;       /* keyword to closing brace */
    const char *name; /* model/def name; for train, the model it trains */
    SrcLoc name_loc;
    DefParam *params; /* def only */
    int nparams, params_cap;
    Stmt **stmts;
    int nstmts, stmts_cap;
} Block;

typedef struct Program {
    const Source *src;
    Block **blocks;
    int nblocks, blocks_cap;
} Program;

Expr *expr_new(Arena *a, ExprKind kind, SrcLoc loc);
void expr_add_arg(Arena *a, Expr *call, const char *name, SrcLoc name_loc, Expr *value);
void expr_add_item(Arena *a, Expr *e, Expr *item);
SrcLoc loc_span(SrcLoc from, SrcLoc to);

/* Prints the AST as an S-expression, one block per line group (nnc dump --ast). */
void ast_print(FILE *out, const Program *p);
void ast_print_expr(FILE *out, const Expr *e); /* one expression, same notation, no newline */
const char *expr_kind_name(ExprKind k);
const char *stmt_kind_name(StmtKind k);         /* "input", "let", ... as in the printer */

/* ---------------------------------------------------------------- nn.y: parser */

/* Parses a whole file. Syntax errors go to d; the returned program holds every block that
 * could be recovered (never NULL). All memory comes from a. */
Program *parse_program(Arena *a, const Source *src, Diag *d);

#endif
