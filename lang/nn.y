/* nn.y — the grammar of the .nn language (bison, pure, LALR(1) with LAC, %expect 0).
 *
 * Statements end at a newline or ';'. The scanner (yylex in nn.l) turns a newline into a
 * TERM token only where a statement can end and the next one begin:
 *   - the last token of the line can end an expression (a name, literal, ')' or ']') and
 *     the next line starts with a name or a keyword; or
 *   - the next line starts with a statement keyword (`input`, `loss`, ...) or with
 *     `name =`, which can never continue an expression, unless the line ended with
 *     '(', '[', ',' (where `name =` is a keyword argument), '{', '}' or ';'.
 * So `a +`, `f(a,` or a next line starting with `|>` continue the statement, and no
 * bracket depth is tracked to decide it. That keeps a missing ')' from swallowing the
 * following lines: the newline still ends the broken statement, and error recovery (the
 * `error` rules in stmts, body and program) resumes at the next statement, so one typo
 * gives one error, at the line that has it.
 *
 * The parser builds the AST only. The few checks done here are syntactic: keyword
 * arguments after positional ones, def parameter lists, which statements a block may hold,
 * the right side of |>, and the nesting limit (AST_MAX_DEPTH).
 */

%code requires {
#include "ast.h"

typedef struct Parser Parser;
typedef struct PowChain PowChain;
}

%code provides {
/* An open bracket seen by the scanner, for "to match this '('" notes and the depth limit. */
typedef struct Bracket {
    char ch;
    SrcLoc loc;
} Bracket;

/* A token as the scanner saw it (offset/len index the source text). */
typedef struct Token {
    int kind;        /* yytoken_kind_t */
    SrcLoc loc;
    size_t offset, len;
    bool from_newline; /* a TERM made from a newline (not ';') */
    bool unmatched;    /* a closing bracket that matched no open one */
    bool pushed;       /* an opening bracket that was pushed on the bracket stack */
    bool before_assign; /* a name followed by '=' (a new `name = ...` statement may start) */
} Token;

enum {
    PARSE_MAX_BRACKETS = 2 * AST_MAX_DEPTH,
    PARSE_MAX_NODES = 1 << 20, /* AST nodes per file: bounds memory on huge inputs */
};

/* State shared by the scanner (nn.l) and the grammar actions (nn.y). */
struct Parser {
    Arena *arena;
    const Source *src;
    Diag *diag;
    Program *prog;
    void *scanner;

    /* scanner position of the next byte */
    int line, column;
    size_t offset;
    Token scanned;       /* the token the scanner just matched */

    /* yylex: newline handling and the token handed to the parser */
    bool newline_seen;
    Token prev;          /* the token before the lookahead */
    Token look;          /* the lookahead (last token returned) */
    bool have_pending;
    Token pending;       /* a token held back while a TERM is returned before it */
    YYSTYPE pending_value;

    Token stmt_first, stmt_second; /* the first tokens of the current statement, to name */
    int stmt_ntokens;              /* the S_ERROR left when it does not parse */

    Bracket brackets[PARSE_MAX_BRACKETS];
    int nbrackets;       /* entries of brackets[] in use */
    int nexpr_brackets;  /* '(' and '[' among them */

    long nodes;          /* AST nodes allocated so far */
    bool fatal;          /* stop: the scanner returns end of file from now on */
    bool bad_ends_line;  /* bytes were skipped after the last token, on its line */
    int lex_error_line;  /* line of the last skipped bytes: syntax errors there are
                            consequences and are not reported */
    bool body_error;     /* the body just reduced ended in a syntax error */
};

int yylex(YYSTYPE *value, SrcLoc *loc, Parser *p);
void *lexer_open(Parser *p);
void lexer_close(void *scanner);
void lexer_drop_brackets(Parser *p, bool all);
bool parser_count_node(Parser *p, SrcLoc loc);
}

%code {
#include <limits.h>
#include <stdlib.h>

/* Nesting is bounded by the scanner's bracket limit, so the parser stack stays small;
 * this only guards against a grammar change that adds right recursion. */
#define YYMAXDEPTH 100000

static void yyerror(SrcLoc *loc, Parser *p, const char *msg);

/* The operands of a chain a ^ b ^ -c, folded right-associatively once complete, so that
 * long chains do not grow the parser stack. */
typedef struct PowOperand {
    Expr *expr;
    int negs;       /* unary minuses written before the operand */
    SrcLoc neg_loc; /* where they are */
} PowOperand;

struct PowChain {
    PowOperand *ops;
    int nops, ops_cap;
};

static Expr *mk_binary(Parser *p, int op, Expr *lhs, Expr *rhs, SrcLoc op_loc);
static Expr *mk_neg(Parser *p, int count, SrcLoc neg_loc, Expr *operand);
static Expr *mk_pipe(Parser *p, Expr *lhs, Expr *rhs, SrcLoc op_loc);
static Expr *mk_leaf(Parser *p, ExprKind kind, SrcLoc loc);
static Expr *mk_node(Parser *p, ExprKind kind, SrcLoc loc);
static Expr *finish_expr(Parser *p, Expr *e, SrcLoc where);
static Expr *fold_pow_chain(Parser *p, PowChain *c);
static void pow_chain_add(Parser *p, PowChain *c, Expr *e, int negs, SrcLoc neg_loc);
static void add_call_arg(Parser *p, Expr *call, const char *name, SrcLoc name_loc, Expr *value,
                         SrcLoc loc);
static void add_def_param(Parser *p, Block *b, const char *name, SrcLoc loc, Expr *dflt);
static Stmt *mk_stmt(Parser *p, StmtKind kind, SrcLoc loc, const char *name, SrcLoc name_loc,
                     TypeExpr *type, Expr *value);
static TypeExpr *mk_type(Parser *p, const char *dtype, SrcLoc dtype_loc);
static Block *mk_block(Parser *p);
static Block *finish_block(Parser *p, BlockKind kind, SrcLoc loc, const char *name,
                           SrcLoc name_loc, Block *params, Block *body, SrcLoc open_loc,
                           bool closed);
static void describe_lookahead(Parser *p, char *out, size_t size);
static void add_error_stmt(Parser *p, Block *b, SrcLoc error_loc);
}

%define api.pure full
%define api.location.type {SrcLoc}
%define api.token.prefix {TOK_}
%define parse.error custom
%define parse.lac full
%locations
%expect 0
%param {Parser *p}

%union {
    const char *str;
    Expr *expr;
    Stmt *stmt;
    Block *block;
    TypeExpr *type;
    PowChain *chain;
    int count;
    bool flag;
}

%token <str> NAME "identifier"
%token <expr> NUMBER "number"
%token <expr> STRING "string"
%token DEF "def" MODEL "model" TRAIN "train"
%token INPUT "input" LABEL "label" PARAM "param" STATE "state" OUTPUT "output"
%token LOSS "loss" METRIC "metric" CONST "const" RETURN "return"
%token TRUE "true" FALSE "false"
%token PLUS "+" MINUS "-" STAR "*" SLASH "/" AT "@" CARET "^" PIPE "|>"
%token ASSIGN "=" COLON ":" COMMA ","
%token LPAREN "(" RPAREN ")" LBRACKET "[" RBRACKET "]" LBRACE "{" RBRACE "}"
/* value: true when brackets were still open where the statement ended */
%token <flag> TERM "end of statement"

/* A block whose '}' is missing ends where the next block starts, so `error` may follow a
 * body; inside a body it must start the recovery of a statement instead. */
%precedence BODY_END
%precedence error

%type <block> body stmts def_params param_list
%type <block> block
%type <flag> block_close
%type <stmt> stmt
%type <type> type dims
%type <expr> expr sum term unary power postfix primary
%type <expr> args subscripts subscript opt_expr list_items tuple_items
%type <chain> pow_chain
%type <count> minuses
%type <str> arg_name

%%

/* program = { block } */
program
    : %empty
        {
            (void)yynerrs; /* diag counts the errors; this keeps clang's -Wunused-but-set quiet */
        }
    | program block
        {
            if ($2) VEC_PUSH(p->arena, p->prog->blocks, p->prog->nblocks, p->prog->blocks_cap, $2);
            yyerrok; /* a whole block parsed: errors after it are new ones */
        }
    | program error
        {
            lexer_drop_brackets(p, true);
            if (p->diag->stopped) YYABORT;
        }
    ;

/* block = "model" NAME "{" body "}"
 *       | "train" NAME "{" body "}"
 *       | "def" NAME "(" [ params ] ")" "{" body "}" */
block
    : MODEL NAME "{" body block_close
        { $$ = finish_block(p, B_MODEL, @$, $2, @2, NULL, $4, @3, $5); }
    | TRAIN NAME "{" body block_close
        { $$ = finish_block(p, B_TRAIN, @$, $2, @2, NULL, $4, @3, $5); }
    | DEF NAME "(" def_params ")" "{" body block_close
        { $$ = finish_block(p, B_DEF, @$, $2, @2, $4, $7, @6, $8); }
    | MODEL error "{" body block_close
        { $$ = finish_block(p, B_MODEL, @$, NULL, @2, NULL, $4, @3, $5); }
    | TRAIN error "{" body block_close
        { $$ = finish_block(p, B_TRAIN, @$, NULL, @2, NULL, $4, @3, $5); }
    | DEF error "{" body block_close
        { $$ = finish_block(p, B_DEF, @$, NULL, @2, NULL, $4, @3, $5); }
    ;

/* A missing '}' is reported by finish_block when the next block or the end of the file
 * comes instead, so the following blocks still parse on their own. */
block_close
    : "}"     { $$ = true; }
    | %empty  { $$ = false; }
    ;

/* params = param { "," param } [ "," ]     param = NAME [ "=" expr ] */
def_params
    : %empty            { $$ = mk_block(p); }
    | param_list
    | param_list ","
    ;

param_list
    : NAME                          { $$ = mk_block(p); add_def_param(p, $$, $1, @1, NULL); }
    | NAME "=" expr                 { $$ = mk_block(p); add_def_param(p, $$, $1, @1, $3); }
    | param_list "," NAME           { $$ = $1; add_def_param(p, $$, $3, @3, NULL); }
    | param_list "," NAME "=" expr  { $$ = $1; add_def_param(p, $$, $3, @3, $5); }
    ;

/* body = { stmt TERM } [ stmt ]      (empty statements are allowed)
 * A statement with a syntax error is skipped up to the end of its line (or ';') and
 * leaves an S_ERROR, named after the binding it would have made when that is known. */
body
    : stmts %prec BODY_END  { $$ = $1; p->body_error = false; }
    | stmts stmt %prec BODY_END
        {
            $$ = $1;
            if ($2) VEC_PUSH(p->arena, $$->stmts, $$->nstmts, $$->stmts_cap, $2);
            p->body_error = false;
        }
    | stmts error %prec BODY_END {
                            add_error_stmt(p, $1, @2); $$ = $1; p->body_error = true; if (p->diag->stopped) YYABORT; }
    ;

stmts
    : %empty            { $$ = mk_block(p); }
    | stmts TERM        { $$ = $1; }
    | stmts stmt TERM
        {
            $$ = $1;
            if ($2) VEC_PUSH(p->arena, $$->stmts, $$->nstmts, $$->stmts_cap, $2);
        }
    | stmts error TERM
        {
            /* If the broken line left no bracket open, the next line is unrelated:
             * report its errors at once. Otherwise it may be the rest of the broken
             * statement, and bison's usual three-token grace period applies. */
            $$ = $1;
            add_error_stmt(p, $$, @2);
            if (!$3) yyerrok;
            lexer_drop_brackets(p, false);
            if (p->diag->stopped) YYABORT;
        }
    ;

/* stmt = "input" NAME ":" type | "label" NAME ":" type
 *      | "param" NAME ":" type [ "=" expr ] | "state" NAME ":" type [ "=" expr ]
 *      | "const" NAME "=" expr | "output" NAME [ "=" expr ]
 *      | "loss" expr | "metric" expr | "return" expr | NAME "=" expr */
stmt
    : INPUT NAME ":" type               { $$ = mk_stmt(p, S_INPUT, @$, $2, @2, $4, NULL); }
    | LABEL NAME ":" type               { $$ = mk_stmt(p, S_LABEL, @$, $2, @2, $4, NULL); }
    | PARAM NAME ":" type               { $$ = mk_stmt(p, S_PARAM, @$, $2, @2, $4, NULL); }
    | PARAM NAME ":" type "=" expr      { $$ = mk_stmt(p, S_PARAM, @$, $2, @2, $4, $6); }
    | STATE NAME ":" type               { $$ = mk_stmt(p, S_STATE, @$, $2, @2, $4, NULL); }
    | STATE NAME ":" type "=" expr      { $$ = mk_stmt(p, S_STATE, @$, $2, @2, $4, $6); }
    | CONST NAME "=" expr               { $$ = mk_stmt(p, S_CONST, @$, $2, @2, NULL, $4); }
    | OUTPUT NAME                       { $$ = mk_stmt(p, S_OUTPUT, @$, $2, @2, NULL, NULL); }
    | OUTPUT NAME "=" expr              { $$ = mk_stmt(p, S_OUTPUT, @$, $2, @2, NULL, $4); }
    | LOSS expr                         { $$ = mk_stmt(p, S_LOSS, @$, NULL, @1, NULL, $2); }
    | METRIC expr                       { $$ = mk_stmt(p, S_METRIC, @$, NULL, @1, NULL, $2); }
    | RETURN expr                       { $$ = mk_stmt(p, S_RETURN, @$, NULL, @1, NULL, $2); }
    | NAME "=" expr                     { $$ = mk_stmt(p, S_LET, @$, $1, @1, NULL, $3); }
    ;

/* type = NAME [ "[" [ expr { "," expr } [ "," ] ] "]" ]      e.g. f32[batch, 784] */
type
    : NAME                  { $$ = mk_type(p, $1, @1); $$->loc = @$; }
    | NAME "[" "]"          { $$ = mk_type(p, $1, @1); $$->loc = @$; }
    | NAME "[" dims "]"     { $$ = $3; $$->dtype = $1; $$->dtype_loc = @1; $$->loc = @$; }
    | NAME "[" dims "," "]" { $$ = $3; $$->dtype = $1; $$->dtype_loc = @1; $$->loc = @$; }
    ;

dims
    : expr
        {
            $$ = mk_type(p, NULL, @1);
            VEC_PUSH(p->arena, $$->dims, $$->ndims, $$->dims_cap, $1);
        }
    | dims "," expr
        {
            $$ = $1;
            VEC_PUSH(p->arena, $$->dims, $$->ndims, $$->dims_cap, $3);
        }
    ;

/* expr = sum { "|>" sum }          (lowest precedence, left associative) */
expr
    : sum
    | expr "|>" sum         { $$ = mk_pipe(p, $1, $3, @2); }
    ;

/* sum = term { ("+" | "-") term } */
sum
    : term
    | sum "+" term          { $$ = mk_binary(p, '+', $1, $3, @2); }
    | sum "-" term          { $$ = mk_binary(p, '-', $1, $3, @2); }
    ;

/* term = unary { ("*" | "/" | "@") unary } */
term
    : unary
    | term "*" unary        { $$ = mk_binary(p, '*', $1, $3, @2); }
    | term "/" unary        { $$ = mk_binary(p, '/', $1, $3, @2); }
    | term "@" unary        { $$ = mk_binary(p, '@', $1, $3, @2); }
    ;

/* unary = { "-" } power            (-x^2 is -(x^2)) */
unary
    : power
    | minuses power         { $$ = mk_neg(p, $1, @1, $2); }
    ;

minuses
    : "-"                   { $$ = 1; }
    | minuses "-"           { $$ = $1 <= AST_MAX_DEPTH ? $1 + 1 : $1; }
    ;

/* power = postfix [ "^" unary ]    (right associative: a^b^c is a^(b^c)) */
power
    : postfix
    | pow_chain             { $$ = fold_pow_chain(p, $1); }
    ;

pow_chain
    : postfix "^" postfix
        {
            $$ = arena_alloc(p->arena, sizeof *$$);
            pow_chain_add(p, $$, $1, 0, @1);
            pow_chain_add(p, $$, $3, 0, @3);
        }
    | postfix "^" minuses postfix
        {
            $$ = arena_alloc(p->arena, sizeof *$$);
            pow_chain_add(p, $$, $1, 0, @1);
            pow_chain_add(p, $$, $4, $3, @3);
        }
    | pow_chain "^" postfix             { $$ = $1; pow_chain_add(p, $$, $3, 0, @3); }
    | pow_chain "^" minuses postfix     { $$ = $1; pow_chain_add(p, $$, $4, $3, @3); }
    ;

/* postfix = primary { "[" subscript { "," subscript } "]" } */
postfix
    : primary
    | postfix "[" subscripts "]"
        {
            $$ = $3;
            $$->lhs = $1;
            $$->loc = @$;
            if ($1->depth + 1 > $$->depth) $$->depth = $1->depth + 1;
            $$ = finish_expr(p, $$, @2);
        }
    ;

subscripts
    : subscript                 { $$ = mk_node(p, E_INDEX, @1); expr_add_item(p->arena, $$, $1); }
    | subscripts "," subscript  { $$ = $1; expr_add_item(p->arena, $$, $3); }
    ;

/* subscript = expr | [ expr ] ":" [ expr ] [ ":" [ expr ] ] */
subscript
    : expr
    | opt_expr ":" opt_expr
        {
            $$ = mk_node(p, E_SLICE, @$);
            $$->slice[0] = $1;
            $$->slice[1] = $3;
            for (int i = 0; i < 2; i++)
                if ($$->slice[i] && $$->slice[i]->depth + 1 > $$->depth)
                    $$->depth = $$->slice[i]->depth + 1;
        }
    | opt_expr ":" opt_expr ":" opt_expr
        {
            $$ = mk_node(p, E_SLICE, @$);
            $$->slice[0] = $1;
            $$->slice[1] = $3;
            $$->slice[2] = $5;
            for (int i = 0; i < 3; i++)
                if ($$->slice[i] && $$->slice[i]->depth + 1 > $$->depth)
                    $$->depth = $$->slice[i]->depth + 1;
        }
    ;

opt_expr
    : %empty    { $$ = NULL; }
    | expr
    ;

/* primary = NAME | NUMBER | STRING | "true" | "false"
 *         | NAME "(" [ args ] ")"
 *         | "(" expr ")" | "(" expr "," { expr "," } [ expr ] ")"
 *         | "[" [ expr { "," expr } [ "," ] ] "]" */
primary
    : NAME          { $$ = mk_leaf(p, E_NAME, @1); $$->str = $1; }
    | NUMBER
    | STRING
    | TRUE          { $$ = mk_leaf(p, E_BOOL, @1); $$->ival = 1; }
    | FALSE         { $$ = mk_leaf(p, E_BOOL, @1); $$->ival = 0; }
    | NAME "(" ")"
        {
            $$ = mk_leaf(p, E_CALL, @$);
            $$->str = $1;
            $$->callee_loc = @1;
        }
    | NAME "(" args ")"
        {
            $$ = $3;
            $$->str = $1;
            $$->callee_loc = @1;
            $$->loc = @$;
            $$ = finish_expr(p, $$, @2);
        }
    | NAME "(" args "," ")"
        {
            $$ = $3;
            $$->str = $1;
            $$->callee_loc = @1;
            $$->loc = @$;
            $$ = finish_expr(p, $$, @2);
        }
    | "(" expr ")"          { $$ = $2; }
    | "(" expr "," ")"
        {
            $$ = mk_node(p, E_TUPLE, @$);
            expr_add_item(p->arena, $$, $2);
            $$ = finish_expr(p, $$, @1);
        }
    | "(" tuple_items ")"       { $$ = $2; $$->loc = @$; $$ = finish_expr(p, $$, @1); }
    | "(" tuple_items "," ")"   { $$ = $2; $$->loc = @$; $$ = finish_expr(p, $$, @1); }
    | "[" "]"                   { $$ = mk_leaf(p, E_LIST, @$); }
    | "[" list_items "]"        { $$ = $2; $$->loc = @$; $$ = finish_expr(p, $$, @1); }
    | "[" list_items "," "]"    { $$ = $2; $$->loc = @$; $$ = finish_expr(p, $$, @1); }
    ;

tuple_items
    : expr "," expr
        {
            $$ = mk_node(p, E_TUPLE, @$);
            expr_add_item(p->arena, $$, $1);
            expr_add_item(p->arena, $$, $3);
        }
    | tuple_items "," expr  { $$ = $1; expr_add_item(p->arena, $$, $3); }
    ;

list_items
    : expr                  { $$ = mk_node(p, E_LIST, @1); expr_add_item(p->arena, $$, $1); }
    | list_items "," expr   { $$ = $1; expr_add_item(p->arena, $$, $3); }
    ;

/* A keyword argument's name may be a keyword: csv(path, label="class"). Inside a call a
 * keyword cannot start anything else, so this adds no conflict. */
arg_name
    : NAME
    | "label"     { $$ = "label"; }
    | "input"     { $$ = "input"; }
    | "output"    { $$ = "output"; }
    | "loss"      { $$ = "loss"; }
    | "metric"    { $$ = "metric"; }
    | "param"     { $$ = "param"; }
    | "state"     { $$ = "state"; }
    | "const"     { $$ = "const"; }
    | "model"     { $$ = "model"; }
    | "train"     { $$ = "train"; }
    ;

/* args = arg { "," arg } [ "," ]     arg = expr | arg_name "=" expr   (positional first) */
args
    : expr
        {
            $$ = mk_node(p, E_CALL, @1);
            add_call_arg(p, $$, NULL, @1, $1, @1);
        }
    | arg_name "=" expr
        {
            $$ = mk_node(p, E_CALL, @1);
            add_call_arg(p, $$, $1, @1, $3, @$);
        }
    | args "," expr             { $$ = $1; add_call_arg(p, $$, NULL, @3, $3, @3); }
    | args "," arg_name "=" expr
        {
            $$ = $1;
            SrcLoc arg_loc = loc_span(@3, @5);
            add_call_arg(p, $$, $3, @3, $5, arg_loc);
        }
    ;

%%

/* ---------------------------------------------------------------- AST construction */

/* Counts an AST node against PARSE_MAX_NODES; on the first overflow reports it and stops
 * the scan. Returns false when over the limit. */
bool parser_count_node(Parser *p, SrcLoc loc) {
    if (++p->nodes <= PARSE_MAX_NODES) return true;
    if (!p->fatal) {
        diag_error(p->diag, loc, "file too large: more than %d syntax tree nodes", PARSE_MAX_NODES);
        p->fatal = true;
    }
    return false;
}

static Expr *mk_leaf(Parser *p, ExprKind kind, SrcLoc loc) {
    parser_count_node(p, loc);
    return expr_new(p->arena, kind, loc);
}

static Expr *mk_node(Parser *p, ExprKind kind, SrcLoc loc) { return mk_leaf(p, kind, loc); }

/* A subtree already replaced because it was nested too deeply: its depth stays above the
 * limit, so every enclosing expression collapses into it without a second error. */
static bool too_deep(const Expr *e) { return e && e->depth > AST_MAX_DEPTH; }

static Expr *deep_child(Expr *e) {
    if (too_deep(e->lhs)) return e->lhs;
    if (too_deep(e->rhs)) return e->rhs;
    for (int i = 0; i < 3; i++)
        if (too_deep(e->slice[i])) return e->slice[i];
    for (int i = 0; i < e->nargs; i++)
        if (too_deep(e->args[i].value)) return e->args[i].value;
    for (int i = 0; i < e->nitems; i++)
        if (too_deep(e->items[i])) return e->items[i];
    return NULL;
}

/* Enforces AST_MAX_DEPTH on a completed node; `where` is the token that went too deep. */
static Expr *finish_expr(Parser *p, Expr *e, SrcLoc where) {
    if (e->depth <= AST_MAX_DEPTH) return e;
    Expr *deep = deep_child(e);
    if (deep) return deep;
    diag_error(p->diag, where, "expression nested too deeply (limit %d)", AST_MAX_DEPTH);
    Expr *err = expr_new(p->arena, E_ERROR, e->loc);
    err->depth = AST_MAX_DEPTH + 1;
    return err;
}

static int max_depth(const Expr *a, const Expr *b) {
    int da = a ? a->depth : 0, db = b ? b->depth : 0;
    return da > db ? da : db;
}

static Expr *mk_binary(Parser *p, int op, Expr *lhs, Expr *rhs, SrcLoc op_loc) {
    if (too_deep(lhs)) return lhs;
    if (too_deep(rhs)) return rhs;
    Expr *e = mk_node(p, E_BINARY, loc_span(lhs->loc, rhs->loc));
    e->op = op;
    e->lhs = lhs;
    e->rhs = rhs;
    e->depth = 1 + max_depth(lhs, rhs);
    return finish_expr(p, e, op_loc);
}

static Expr *mk_neg(Parser *p, int count, SrcLoc neg_loc, Expr *operand) {
    Expr *e = operand;
    for (int i = 0; i < count && !too_deep(e); i++) {
        Expr *n = mk_node(p, E_NEG, loc_span(neg_loc, operand->loc));
        n->lhs = e;
        n->depth = e->depth + 1;
        e = finish_expr(p, n, neg_loc);
    }
    return e;
}

/* lhs |> f   and   lhs |> f(args): the right side must name the function to apply. */
static Expr *mk_pipe(Parser *p, Expr *lhs, Expr *rhs, SrcLoc op_loc) {
    if (too_deep(lhs)) return lhs;
    if (too_deep(rhs)) return rhs;
    if (rhs->kind != E_NAME && rhs->kind != E_CALL && rhs->kind != E_ERROR) {
        diag_error(p->diag, rhs->loc,
                   "the right side of '|>' must be a function name or a call, like 'relu' "
                   "or 'dense(10)'");
        rhs = expr_new(p->arena, E_ERROR, rhs->loc);
    }
    Expr *e = mk_node(p, E_PIPE, loc_span(lhs->loc, rhs->loc));
    e->lhs = lhs;
    e->rhs = rhs;
    e->depth = 1 + max_depth(lhs, rhs);
    return finish_expr(p, e, op_loc);
}

static void pow_chain_add(Parser *p, PowChain *c, Expr *e, int negs, SrcLoc neg_loc) {
    PowOperand op = {.expr = e, .negs = negs, .neg_loc = neg_loc};
    VEC_PUSH(p->arena, c->ops, c->nops, c->ops_cap, op);
}

/* o0 ^ -o1 ^ o2  is  o0 ^ (-(o1 ^ o2)): fold from the right; the minuses written before
 * an operand negate everything to its right. */
static Expr *fold_pow_chain(Parser *p, PowChain *c) {
    int last = c->nops - 1;
    Expr *acc = c->ops[last].expr;
    if (c->ops[last].negs) acc = mk_neg(p, c->ops[last].negs, c->ops[last].neg_loc, acc);
    for (int i = last - 1; i >= 0; i--) {
        SrcLoc caret = c->ops[i + 1].expr->loc;
        acc = mk_binary(p, '^', c->ops[i].expr, acc, caret);
        if (i > 0 && c->ops[i].negs) acc = mk_neg(p, c->ops[i].negs, c->ops[i].neg_loc, acc);
    }
    return acc;
}

/* Positional arguments come first; a keyword may appear once. */
static void add_call_arg(Parser *p, Expr *call, const char *name, SrcLoc name_loc, Expr *value,
                         SrcLoc loc) {
    const Arg *first_kw = NULL;
    for (int i = 0; i < call->nargs; i++) {
        const Arg *a = &call->args[i];
        if (!a->name) continue;
        if (!first_kw) first_kw = a;
        if (name && !strcmp(a->name, name)) {
            diag_error(p->diag, name_loc, "keyword argument '%s' repeated", name);
            diag_note(p->diag, a->name_loc, "'%s' first given here", name);
            return;
        }
    }
    if (!name && first_kw) {
        diag_error(p->diag, loc, "positional argument after keyword argument '%s'",
                   first_kw->name);
        diag_note(p->diag, first_kw->name_loc,
                  "keyword arguments must come after all positional ones");
    }
    expr_add_arg(p->arena, call, name, name_loc, value);
}

static void add_def_param(Parser *p, Block *b, const char *name, SrcLoc loc, Expr *dflt) {
    for (int i = 0; i < b->nparams; i++) {
        if (!strcmp(b->params[i].name, name)) {
            diag_error(p->diag, loc, "duplicate parameter '%s'", name);
            diag_note(p->diag, b->params[i].loc, "'%s' first declared here", name);
            return;
        }
    }
    if (!dflt && b->nparams && b->params[b->nparams - 1].default_value) {
        const DefParam *prev = &b->params[b->nparams - 1];
        diag_error(p->diag, loc, "parameter '%s' without a default follows parameter '%s' with one",
                   name, prev->name);
    }
    DefParam dp = {.name = name, .loc = loc, .default_value = dflt};
    VEC_PUSH(p->arena, b->params, b->nparams, b->params_cap, dp);
}

static Stmt *mk_stmt(Parser *p, StmtKind kind, SrcLoc loc, const char *name, SrcLoc name_loc,
                     TypeExpr *type, Expr *value) {
    parser_count_node(p, loc);
    Stmt *s = arena_alloc(p->arena, sizeof *s);
    s->kind = kind;
    s->loc = loc;
    s->name = name;
    s->name_loc = name_loc;
    s->type = type;
    s->value = value;
    return s;
}

static TypeExpr *mk_type(Parser *p, const char *dtype, SrcLoc dtype_loc) {
    parser_count_node(p, dtype_loc);
    TypeExpr *t = arena_alloc(p->arena, sizeof *t);
    t->dtype = dtype;
    t->dtype_loc = dtype_loc;
    t->loc = dtype_loc;
    return t;
}

static Block *mk_block(Parser *p) {
    Block *b = arena_alloc(p->arena, sizeof *b);
    p->nodes++;
    return b;
}

/* The S_ERROR left by a statement that did not parse: it keeps the name the statement
 * would have bound (`h1 = ...`, `input x ...`), so later phases can tell an unknown name
 * from one whose definition was broken. */
static void add_error_stmt(Parser *p, Block *b, SrcLoc error_loc) {
    const Token *first = &p->stmt_first, *second = &p->stmt_second;
    const Token *name = NULL;
    if (p->stmt_ntokens >= 1 && first->kind == TOK_NAME && first->before_assign)
        name = first;
    else if (p->stmt_ntokens >= 2 && second->kind == TOK_NAME &&
             (first->kind == TOK_INPUT || first->kind == TOK_LABEL || first->kind == TOK_PARAM ||
              first->kind == TOK_STATE || first->kind == TOK_CONST || first->kind == TOK_OUTPUT))
        name = second;
    SrcLoc loc = p->stmt_ntokens ? loc_span(first->loc, error_loc) : error_loc;
    Stmt *s = mk_stmt(p, S_ERROR, loc, NULL, loc, NULL, NULL);
    if (name) {
        s->name = arena_strndup(p->arena, p->src->text + name->offset, name->len);
        s->name_loc = name->loc;
    }
    VEC_PUSH(p->arena, b->stmts, b->nstmts, b->stmts_cap, s);
}

/* The keyword of a statement (for statements that have one). */
static SrcLoc keyword_loc(const Stmt *s) {
    SrcLoc k = s->loc;
    k.last_line = k.first_line;
    k.last_column = k.first_column + (int)strlen(stmt_kind_name(s->kind)) - 1;
    return k;
}

/* Which statements a block may hold is part of the syntax: a train block holds only
 * `key = value` settings, `return` ends a def and appears nowhere else, and a def does not
 * declare model inputs, outputs, losses or metrics. Offending statements become S_ERROR. */
static void check_block_stmts(Parser *p, Block *b, bool body_ok) {
    static const char *const kinds[] = {[B_MODEL] = "model", [B_DEF] = "def", [B_TRAIN] = "train"};
    int returns = 0;
    for (int i = 0; i < b->nstmts; i++) {
        Stmt *s = b->stmts[i];
        const char *what = stmt_kind_name(s->kind);
        if (s->kind == S_ERROR) continue;
        if (b->kind == B_TRAIN && s->kind != S_LET) {
            diag_error(p->diag, keyword_loc(s),
                       "'%s' is not allowed in a train block, which holds only 'name = value' "
                       "settings", what);
            s->kind = S_ERROR;
        } else if (s->kind == S_RETURN && b->kind != B_DEF) {
            diag_error(p->diag, keyword_loc(s), "'return' outside of a def");
            s->kind = S_ERROR;
        } else if (s->kind == S_RETURN) {
            returns++;
            if (i != b->nstmts - 1) {
                diag_error(p->diag, keyword_loc(s), "'return' must be the last statement of a def");
                s->kind = S_ERROR;
            }
        } else if (b->kind == B_DEF && (s->kind == S_INPUT || s->kind == S_LABEL)) {
            diag_error(p->diag, keyword_loc(s),
                       "'%s' is not allowed in a def; pass the value as a parameter", what);
            s->kind = S_ERROR;
        } else if (b->kind == B_DEF && s->kind == S_OUTPUT) {
            diag_error(p->diag, keyword_loc(s),
                       "'output' is not allowed in a def; return the value instead");
            s->kind = S_ERROR;
        } else if (b->kind == B_DEF && (s->kind == S_LOSS || s->kind == S_METRIC)) {
            diag_error(p->diag, keyword_loc(s),
                       "'%s' is not allowed in a def; declare it in the %s that calls the def",
                       what, kinds[B_MODEL]);
            s->kind = S_ERROR;
        }
    }
    if (b->kind == B_DEF && body_ok && !returns &&
        !(b->nstmts && b->stmts[b->nstmts - 1]->kind == S_ERROR) && b->name) {
        diag_error(p->diag, b->name_loc, "def '%s' has no 'return'; its body must end with "
                   "'return EXPR'", b->name);
    }
}

static Block *finish_block(Parser *p, BlockKind kind, SrcLoc loc, const char *name,
                           SrcLoc name_loc, Block *params, Block *body, SrcLoc open_loc,
                           bool closed) {
    bool body_ok = !p->body_error;
    if (!closed && body_ok && !p->fatal) {
        char found[96];
        describe_lookahead(p, found, sizeof found);
        diag_error(p->diag, p->look.loc, "expected '}' to close '{' opened at %d:%d, found %s",
                   open_loc.first_line, open_loc.first_column, found);
        diag_note(p->diag, open_loc, "to match this '{'");
    }
    p->body_error = false;
    lexer_drop_brackets(p, true);
    Block *b = body;
    b->kind = kind;
    b->loc = loc;
    b->name = name;
    b->name_loc = name_loc;
    if (params) {
        b->params = params->params;
        b->nparams = params->nparams;
        b->params_cap = params->params_cap;
    }
    check_block_stmts(p, b, body_ok && closed);
    return name ? b : NULL;
}

/* ---------------------------------------------------------------- syntax errors */

static bool is_keyword(yysymbol_kind_t k) {
    return k >= YYSYMBOL_DEF && k <= YYSYMBOL_FALSE;
}

/* How a token is named in "expected ..." lists. */
static const char *token_display(yysymbol_kind_t k) {
    switch (k) {
    case YYSYMBOL_YYEOF: return "end of file";
    case YYSYMBOL_NAME: return "identifier";
    case YYSYMBOL_NUMBER: return "number";
    case YYSYMBOL_STRING: return "string";
    case YYSYMBOL_TERM: return "end of statement";
    default: break;
    }
    /* the others are declared with their spelling as alias: "(" is shown as '(' */
    static char buf[YYNTOKENS][16];
    snprintf(buf[k], sizeof buf[k], "'%s'", yysymbol_name(k));
    return buf[k];
}

/* The lookahead as the user wrote it: "identifier 'foo'", "end of line", "')'". */
static void describe_lookahead(Parser *p, char *out, size_t size) {
    const Token *t = &p->look;
    const char *text = p->src->text + t->offset;
    int n = t->len > 24 ? 24 : (int)t->len;
    const char *more = t->len > 24 ? "..." : "";
    switch (t->kind) {
    case TOK_YYEOF: snprintf(out, size, "end of file"); break;
    case TOK_TERM: snprintf(out, size, t->from_newline ? "end of line" : "';'"); break;
    case TOK_NAME: snprintf(out, size, "identifier '%.*s%s'", n, text, more); break;
    case TOK_NUMBER: snprintf(out, size, "number '%.*s%s'", n, text, more); break;
    case TOK_STRING: snprintf(out, size, "string literal"); break;
    default: snprintf(out, size, "'%.*s'", n, text); break;
    }
}

static bool all_in(const bool *want, const yysymbol_kind_t *set, int n) {
    for (int i = 0; i < n; i++)
        if (!want[set[i]]) return false;
    return true;
}

static void clear_set(bool *want, const yysymbol_kind_t *set, int n) {
    for (int i = 0; i < n; i++) want[set[i]] = false;
}

static char closer_of(char open) { return open == '(' ? ')' : open == '[' ? ']' : '}'; }

/* Builds a clang-style message from the expected tokens:
 *   expected ',' or ')' to close '(' opened at 3:14, found end of line
 * Operators that could continue an expression are left out (after an operand nearly any
 * operator fits, and listing them hides what is missing), a full set of expression or
 * statement starters is summarized as "expression" / "statement", and a note points at
 * the bracket that is still open. */
static int yyreport_syntax_error(const yypcontext_t *ctx, Parser *p) {
    if (p->fatal || p->diag->stopped) return 0;
    SrcLoc loc = *yypcontext_location(ctx);
    if (loc.first_line == p->lex_error_line) return 0;
    yysymbol_kind_t expected[YYNTOKENS];
    int n = yypcontext_expected_tokens(ctx, expected, YYNTOKENS);
    if (n < 0) n = 0;
    bool want[YYNTOKENS] = {0};
    for (int i = 0; i < n; i++)
        if (expected[i] >= 0 && expected[i] < YYNTOKENS) want[expected[i]] = true;

    char found[96];
    describe_lookahead(p, found, sizeof found);
    yysymbol_kind_t look = yypcontext_token(ctx);

    /* A closing bracket nothing opened, where no '(' or '[' is due to close: say so
     * rather than list what was expected. */
    if ((look == YYSYMBOL_RPAREN || look == YYSYMBOL_RBRACKET || look == YYSYMBOL_RBRACE) &&
        p->look.unmatched && !want[look] && !want[YYSYMBOL_RPAREN] && !want[YYSYMBOL_RBRACKET]) {
        char c = p->src->text[p->look.offset];
        diag_error(p->diag, loc, "unmatched '%c'", c);
        return 0;
    }

    static const yysymbol_kind_t expr_start[] = {
        YYSYMBOL_NAME, YYSYMBOL_NUMBER, YYSYMBOL_STRING, YYSYMBOL_TRUE,
        YYSYMBOL_FALSE, YYSYMBOL_LPAREN, YYSYMBOL_LBRACKET, YYSYMBOL_MINUS,
    };
    static const yysymbol_kind_t continuation[] = {
        YYSYMBOL_PLUS, YYSYMBOL_MINUS, YYSYMBOL_STAR,   YYSYMBOL_SLASH,    YYSYMBOL_AT,
        YYSYMBOL_CARET, YYSYMBOL_PIPE, YYSYMBOL_LPAREN, YYSYMBOL_LBRACKET,
    };
    static const yysymbol_kind_t stmt_start[] = {
        YYSYMBOL_NAME,  YYSYMBOL_INPUT, YYSYMBOL_LABEL,  YYSYMBOL_PARAM,  YYSYMBOL_STATE,
        YYSYMBOL_CONST, YYSYMBOL_OUTPUT, YYSYMBOL_LOSS, YYSYMBOL_METRIC, YYSYMBOL_RETURN,
    };
    static const yysymbol_kind_t block_start[] = {YYSYMBOL_MODEL, YYSYMBOL_DEF, YYSYMBOL_TRAIN};
#define ALL_IN(set) all_in(want, set, (int)(sizeof set / sizeof *set))
#define CLEAR(set) clear_set(want, set, (int)(sizeof set / sizeof *set))

    const char *items[YYNTOKENS + 4];
    int nitems = 0;
    bool any_stmt = ALL_IN(stmt_start);
    if (ALL_IN(expr_start)) {
        if (!any_stmt) items[nitems++] = "expression";
        CLEAR(expr_start);
    } else {
        bool other = false;
        for (int k = 0; k < YYNTOKENS; k++) {
            bool cont = false;
            for (size_t j = 0; j < sizeof continuation / sizeof *continuation; j++)
                cont |= continuation[j] == (yysymbol_kind_t)k;
            other |= want[k] && !cont;
        }
        if (other) CLEAR(continuation);
    }
    if (any_stmt) {
        items[nitems++] = "statement";
        CLEAR(stmt_start);
        want[YYSYMBOL_TERM] = false;
    }
    if (ALL_IN(block_start)) {
        /* inside a body they are only accepted as the end of a block missing its '}' */
        if (!want[YYSYMBOL_TERM] && !want[YYSYMBOL_RBRACE])
            items[nitems++] = "'model', 'def' or 'train'";
        CLEAR(block_start);
        want[YYSYMBOL_YYEOF] = false;
    }
    if (want[YYSYMBOL_RPAREN]) want[YYSYMBOL_ASSIGN] = false; /* keyword argument */
    if (want[YYSYMBOL_TERM]) want[YYSYMBOL_RBRACE] = false;   /* the statement may end */
    bool stmt_over = look == YYSYMBOL_YYEOF || look == YYSYMBOL_TERM || look == YYSYMBOL_LBRACE ||
                     look == YYSYMBOL_RBRACE || is_keyword(look);
    bool closer = want[YYSYMBOL_RPAREN] || want[YYSYMBOL_RBRACKET] || want[YYSYMBOL_RBRACE];
    if (closer && stmt_over) {
        /* the statement is over: the bracket, not another list item, is missing */
        want[YYSYMBOL_COMMA] = false;
        want[YYSYMBOL_COLON] = false;
    }

    /* the innermost bracket still open before the lookahead */
    const Bracket *open = NULL;
    int top = p->nbrackets - (p->look.pushed ? 1 : 0);
    if (top > 0) open = &p->brackets[top - 1];

    yysymbol_kind_t close_kind = YYSYMBOL_YYEMPTY;
    for (int k = 0; k < YYNTOKENS; k++) {
        if (!want[k] || k == YYSYMBOL_YYerror || k == YYSYMBOL_YYUNDEF) continue;
        if (k == YYSYMBOL_RPAREN || k == YYSYMBOL_RBRACKET || k == YYSYMBOL_RBRACE) {
            close_kind = (yysymbol_kind_t)k;
            continue; /* listed last */
        }
        items[nitems++] = token_display((yysymbol_kind_t)k);
    }
    if (close_kind != YYSYMBOL_YYEMPTY) items[nitems++] = token_display(close_kind);

    char msg[512];
    size_t len = 0;
    if (nitems == 1 && !strcmp(items[0], "identifier") && p->prev.kind >= TOK_DEF &&
        p->prev.kind <= TOK_RETURN) {
        diag_error(p->diag, loc, "expected a name after '%s', found %s",
                   yysymbol_name(YYTRANSLATE(p->prev.kind)), found);
        return 0;
    }
    if (nitems == 0) {
        len = (size_t)snprintf(msg, sizeof msg, "unexpected %s", found);
    } else {
        len = (size_t)snprintf(msg, sizeof msg, "expected ");
        for (int i = 0; i < nitems && len < sizeof msg; i++) {
            const char *sep = i == 0 ? "" : i == nitems - 1 ? " or " : ", ";
            len += (size_t)snprintf(msg + len, sizeof msg - len, "%s%s", sep, items[i]);
        }
        bool matches = false;
        if (open && close_kind != YYSYMBOL_YYEMPTY) {
            char want_close = close_kind == YYSYMBOL_RPAREN ? ')' : close_kind == YYSYMBOL_RBRACKET ? ']' : '}';
            matches = closer_of(open->ch) == want_close;
        }
        if (matches && len < sizeof msg)
            len += (size_t)snprintf(msg + len, sizeof msg - len, " to close '%c' opened at %d:%d",
                                    open->ch, open->loc.first_line, open->loc.first_column);
        if (len < sizeof msg) snprintf(msg + len, sizeof msg - len, ", found %s", found);
        diag_error(p->diag, loc, "%s", msg);
        if (matches) diag_note(p->diag, open->loc, "to match this '%c'", open->ch);
        return 0;
    }
    diag_error(p->diag, loc, "%s", msg);
    return 0;
#undef ALL_IN
#undef CLEAR
}

/* Called by bison only when its stack is exhausted, which the nesting limits prevent. */
static void yyerror(SrcLoc *loc, Parser *p, const char *msg) {
    if (!strcmp(msg, "memory exhausted"))
        diag_error(p->diag, *loc, "expression nested too deeply for the parser");
    else
        diag_error(p->diag, *loc, "%s", msg);
}

/* ---------------------------------------------------------------- entry point */

Program *parse_program(Arena *a, const Source *src, Diag *d) {
    Program *prog = arena_alloc(a, sizeof *prog);
    prog->src = src;
    Parser p = {
        .arena = a,
        .src = src,
        .diag = d,
        .prog = prog,
        .line = 1,
        .column = 1,
    };
    p.scanner = lexer_open(&p);
    yyparse(&p);
    lexer_close(p.scanner);
    return prog;
}
