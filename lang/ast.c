/* ast.c — arenas, AST constructors and the AST printer (nnc dump --ast). */
#include "ast.h"

#include <inttypes.h>
#include <math.h>
#include <stdalign.h>
#include <stdlib.h>

/* ---------------------------------------------------------------- arenas */

enum { ARENA_ALIGN = 16, ARENA_BLOCK_SIZE = 64 * 1024 };

struct ArenaBlock {
    ArenaBlock *next;
    size_t used, cap;
    alignas(ARENA_ALIGN) unsigned char data[];
};

static _Noreturn void arena_out_of_memory(size_t size) {
    fprintf(stderr, "nnc: fatal: out of memory (allocating %zu bytes)\n", size);
    abort();
}

/* Blocks come from calloc and bump memory is never reused, so every allocation is
 * already zero. A request larger than a block gets a block of its own, linked behind the
 * current head so the head keeps serving small requests. */
void *arena_alloc(Arena *a, size_t size) {
    if (size == 0) size = 1;
    if (size > SIZE_MAX / 2) arena_out_of_memory(size);
    size = (size + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    ArenaBlock *b = a->head;
    if (b && b->cap - b->used >= size) {
        void *p = b->data + b->used;
        b->used += size;
        return p;
    }
    size_t cap = size > ARENA_BLOCK_SIZE / 4 ? size : ARENA_BLOCK_SIZE;
    ArenaBlock *nb = calloc(1, sizeof *nb + cap);
    if (!nb) arena_out_of_memory(size);
    nb->cap = cap;
    nb->used = size;
    if (b && cap != ARENA_BLOCK_SIZE) {
        nb->next = b->next;
        b->next = nb;
    } else {
        nb->next = b;
        a->head = nb;
    }
    return nb->data;
}

char *arena_strndup(Arena *a, const char *s, size_t n) {
    char *p = arena_alloc(a, n + 1);
    memcpy(p, s, n);
    return p;
}

char *arena_strdup(Arena *a, const char *s) { return arena_strndup(a, s, strlen(s)); }

char *arena_printf(Arena *a, const char *fmt, ...) {
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    char *p = arena_alloc(a, (size_t)n + 1);
    vsnprintf(p, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    return p;
}

void arena_free(Arena *a) {
    ArenaBlock *b = a->head;
    while (b) {
        ArenaBlock *next = b->next;
        free(b);
        b = next;
    }
    a->head = NULL;
}

/* ---------------------------------------------------------------- constructors */

Expr *expr_new(Arena *a, ExprKind kind, SrcLoc loc) {
    Expr *e = arena_alloc(a, sizeof *e);
    e->kind = kind;
    e->loc = loc;
    e->depth = 1;
    return e;
}

static void expr_note_child(Expr *e, const Expr *child) {
    if (child && child->depth + 1 > e->depth) e->depth = child->depth + 1;
}

void expr_add_arg(Arena *a, Expr *call, const char *name, SrcLoc name_loc, Expr *value) {
    Arg arg = {.name = name, .name_loc = name_loc, .value = value};
    VEC_PUSH(a, call->args, call->nargs, call->args_cap, arg);
    expr_note_child(call, value);
}

void expr_add_item(Arena *a, Expr *e, Expr *item) {
    VEC_PUSH(a, e->items, e->nitems, e->items_cap, item);
    expr_note_child(e, item);
}

/* The range from the start of `from` to the end of `to`; a missing end keeps the other. */
SrcLoc loc_span(SrcLoc from, SrcLoc to) {
    if (!from.first_line) return to;
    if (!to.first_line) return from;
    SrcLoc r = from;
    if (to.last_line > from.last_line ||
        (to.last_line == from.last_line && to.last_column > from.last_column)) {
        r.last_line = to.last_line;
        r.last_column = to.last_column;
    }
    return r;
}

/* ---------------------------------------------------------------- printer */

const char *expr_kind_name(ExprKind k) {
    static const char *const names[] = {
        [E_ERROR] = "error", [E_NUM] = "num",     [E_STR] = "str",     [E_BOOL] = "bool",
        [E_NAME] = "name",   [E_BINARY] = "binary", [E_NEG] = "neg",   [E_PIPE] = "pipe",
        [E_CALL] = "call",   [E_INDEX] = "index", [E_SLICE] = "slice", [E_LIST] = "list",
        [E_TUPLE] = "tuple",
    };
    if ((unsigned)k < sizeof names / sizeof *names && names[k]) return names[k];
    return "?";
}

const char *stmt_kind_name(StmtKind k) {
    static const char *const names[] = {
        [S_ERROR] = "error", [S_INPUT] = "input",   [S_LABEL] = "label", [S_PARAM] = "param",
        [S_STATE] = "state", [S_CONST] = "const",   [S_OUTPUT] = "output", [S_LOSS] = "loss",
        [S_METRIC] = "metric", [S_LET] = "let",     [S_RETURN] = "return",
    };
    if ((unsigned)k < sizeof names / sizeof *names && names[k]) return names[k];
    return "?";
}

/* Shortest decimal form that reads back as the same double, positional unless the
 * exponent is extreme (like Python's repr), always with a '.' or an exponent so floats stay
 * distinguishable from integers in the dump: 0.0001, 1500.0, 1e+20. */
static void print_double(FILE *out, double v) {
    char buf[64];
    if (isnan(v)) {
        fputs("nan", out);
        return;
    }
    if (isinf(v)) {
        fputs(v < 0 ? "-inf" : "inf", out);
        return;
    }
    int prec = 1;
    for (; prec < 17; prec++) {
        snprintf(buf, sizeof buf, "%.*e", prec - 1, v);
        if (strtod(buf, NULL) == v) break;
    }
    snprintf(buf, sizeof buf, "%.*e", prec - 1, v);
    int exponent = atoi(strchr(buf, 'e') + 1);
    if (exponent >= -5 && exponent < 16) {
        int decimals = prec - 1 - exponent;
        snprintf(buf, sizeof buf, "%.*f", decimals > 0 ? decimals : 0, v);
    } else {
        snprintf(buf, sizeof buf, "%.*g", prec, v);
    }
    fputs(buf, out);
    if (!strpbrk(buf, ".e")) fputs(".0", out);
}

static void print_string(FILE *out, const char *s) {
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; p && *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", out); break;
        case '\\': fputs("\\\\", out); break;
        case '\n': fputs("\\n", out); break;
        case '\t': fputs("\\t", out); break;
        case '\r': fputs("\\r", out); break;
        default:
            if (*p < 0x20 || *p == 0x7f) fprintf(out, "\\x%02x", *p);
            else fputc(*p, out);
        }
    }
    fputc('"', out);
}

/* bare_names: inside a type, names are printed without the (name ...) wrapper so that
 * shapes read like they are written: [batch 784]. */
static void print_expr(FILE *out, const Expr *e, bool bare_names) {
    if (!e) {
        fputs("_", out);
        return;
    }
    switch (e->kind) {
    case E_ERROR: fputs("(error)", out); break;
    case E_NUM:
        if (e->is_int) fprintf(out, "%" PRId64, e->ival);
        else print_double(out, e->num);
        break;
    case E_STR: print_string(out, e->str); break;
    case E_BOOL: fputs(e->ival ? "true" : "false", out); break;
    case E_NAME:
        if (bare_names) fputs(e->str, out);
        else fprintf(out, "(name %s)", e->str);
        break;
    case E_BINARY:
        fprintf(out, "(%c ", e->op);
        print_expr(out, e->lhs, bare_names);
        fputc(' ', out);
        print_expr(out, e->rhs, bare_names);
        fputc(')', out);
        break;
    case E_NEG:
        fputs("(neg ", out);
        print_expr(out, e->lhs, bare_names);
        fputc(')', out);
        break;
    case E_PIPE:
        fputs("(pipe ", out);
        print_expr(out, e->lhs, bare_names);
        fputc(' ', out);
        print_expr(out, e->rhs, bare_names);
        fputc(')', out);
        break;
    case E_CALL:
        fprintf(out, "(call %s", e->str ? e->str : "?");
        for (int i = 0; i < e->nargs; i++) {
            fputc(' ', out);
            if (e->args[i].name) fprintf(out, "(kw %s ", e->args[i].name);
            print_expr(out, e->args[i].value, bare_names);
            if (e->args[i].name) fputc(')', out);
        }
        fputc(')', out);
        break;
    case E_INDEX:
        fputs("(index ", out);
        print_expr(out, e->lhs, bare_names);
        for (int i = 0; i < e->nitems; i++) {
            fputc(' ', out);
            print_expr(out, e->items[i], bare_names);
        }
        fputc(')', out);
        break;
    case E_SLICE:
        fputs("(slice", out);
        for (int i = 0; i < 3; i++) {
            fputc(' ', out);
            print_expr(out, e->slice[i], bare_names);
        }
        fputc(')', out);
        break;
    case E_LIST:
    case E_TUPLE:
        fputs(e->kind == E_LIST ? "(list" : "(tuple", out);
        for (int i = 0; i < e->nitems; i++) {
            fputc(' ', out);
            print_expr(out, e->items[i], bare_names);
        }
        fputc(')', out);
        break;
    default: fputs("(?)", out); break;
    }
}

void ast_print_expr(FILE *out, const Expr *e) { print_expr(out, e, false); }

static void print_type(FILE *out, const TypeExpr *t) {
    if (!t) {
        fputs(" (error)", out);
        return;
    }
    fprintf(out, " %s [", t->dtype ? t->dtype : "?");
    for (int i = 0; i < t->ndims; i++) {
        if (i) fputc(' ', out);
        print_expr(out, t->dims[i], true);
    }
    fputc(']', out);
}

static void print_stmt(FILE *out, const Stmt *s) {
    fprintf(out, "  (%s", stmt_kind_name(s->kind));
    if (s->name) fprintf(out, " %s", s->name);
    if (s->type) print_type(out, s->type);
    if (s->value) {
        fputc(' ', out);
        print_expr(out, s->value, false);
    }
    fputc(')', out);
}

/* (model NAME
 *   (stmt ...)
 *   (stmt ...))
 * one block per group, blocks separated by a blank line. */
void ast_print(FILE *out, const Program *p) {
    static const char *const kinds[] = {[B_MODEL] = "model", [B_DEF] = "def", [B_TRAIN] = "train"};
    for (int i = 0; i < p->nblocks; i++) {
        const Block *b = p->blocks[i];
        if (i) fputc('\n', out);
        fprintf(out, "(%s %s", kinds[b->kind], b->name ? b->name : "?");
        if (b->kind == B_DEF) {
            fputs(" (params", out);
            for (int j = 0; j < b->nparams; j++) {
                const DefParam *dp = &b->params[j];
                if (dp->default_value) {
                    fprintf(out, " (%s ", dp->name);
                    print_expr(out, dp->default_value, false);
                    fputc(')', out);
                } else {
                    fprintf(out, " %s", dp->name);
                }
            }
            fputc(')', out);
        }
        for (int j = 0; j < b->nstmts; j++) {
            fputc('\n', out);
            print_stmt(out, b->stmts[j]);
        }
        fputs(")\n", out);
    }
}
