/* sema.c — semantic analysis: names, scopes, constants, def expansion, statements, models.
 *
 * A model is evaluated statement by statement, directly into IR: every expression yields a
 * Value (a compile-time number, string, tuple, a tensor held by an IR node, ...). The body is
 * evaluated once per function the model gets:
 *
 *   pass 0  `loss`      training mode, labels available; the only pass that reports errors,
 *                       declares module tensors and records LayerInfo rows
 *   pass 1  `infer`     inference mode, no labels: label values are V_UNAVAIL, loss and metric
 *                       statements are skipped
 *   pass 2  `evaluate`  inference mode, labels available
 *
 * Later passes find the tensors of pass 0 by name (the naming rule is deterministic), and run
 * only when pass 0 found no error, so they never report anything. Each function is compacted
 * at the end (nodes that reach no output and no store are dropped).
 *
 * Naming rule for parameters (docs/layers.md): a layer's parameters are called
 * `<name>.<param>`, where <name> is the `name=` argument if given; else the statement's
 * binding when its expression holds exactly one layer with parameters; else
 * `<binding>.<kind><i>` (i counts the layers of that kind in the expression from 0), or
 * `<kind><i>` in statements without a binding (return, loss, metric). Inside a def every name
 * is prefixed with the def call's own name: `<call binding>.<inner name>`.
 */
#include "nnc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { PASS_CHECK, PASS_INFER, PASS_EVALUATE, PASS_COUNT };
static const char *const pass_func_names[PASS_COUNT] = {"loss", "infer", "evaluate"};

enum { MAX_DEF_DEPTH = 64, MAX_TRACE = 8, MAX_KIND_COUNTS = 24 };

/* Naming state of the statement being evaluated (saved and restored around def calls). */
typedef struct Naming {
    const char *bind; /* the statement's binding, NULL when it has none */
    int layers;       /* layers with parameters in its expression, without name= */
    struct {
        const char *kind;
        int count;
    } counts[MAX_KIND_COUNTS];
    int ncounts;
} Naming;

typedef struct Binding {
    const char *name;
    SrcLoc loc;
    Value value;
} Binding;

typedef struct Scope {
    Binding *items;
    int n, cap;
    const Block *block; /* its statements: tells "used before its declaration" from "unknown" */
    Naming unbound; /* layer counts of the statements without a binding (loss, metric, return) */
} Scope;

typedef struct Frame {
    const Block *def;
    SrcLoc call_loc;
    struct Frame *up;
} Frame;

typedef struct ArgDecl {
    const char *name;
    ArgRole role;
    DType dtype;
    Shape shape;
    SrcLoc loc;
    Ref node;
} ArgDecl;

typedef struct OutDecl {
    const char *name;
    OutRole role;
    Ref value;
    const char *label; /* driver metrics: the label the predictions go with */
} OutDecl;

/* Arguments of a call as written, evaluated. */
typedef struct Actuals {
    int n;
    const char *name[CALL_MAX_ARGS];
    SrcLoc name_loc[CALL_MAX_ARGS];
    Value value[CALL_MAX_ARGS];
    SrcLoc loc[CALL_MAX_ARGS];
} Actuals;

typedef struct DefCall {
    int callee; /* index in Sema.defs */
    SrcLoc loc; /* the call */
} DefCall;

typedef struct DefInfo {
    const Block *block;
    DefCall *calls; /* the defs its body calls (by name), for recursion and has_layers */
    int ncalls, calls_cap;
    bool direct_layers; /* declares params/states or calls a builtin layer with parameters */
    bool has_layers;    /* ... directly or through the defs it calls */
    bool broken;        /* a static error was reported: calls yield V_ERROR silently */
} DefInfo;

struct Sema {
    Arena *a;
    Diag *d;
    DefInfo *defs;
    int ndefs;
    int *def_table; /* open-addressing hash of def names: index + 1, 0 = empty */
    int def_table_cap;
    Module *m;
    Func *f;
    int pass;
    bool training, has_labels;
    Scope *scope;
    Frame *frame;
    int depth;      /* def expansions */
    int eval_depth; /* nested expression evaluations, def bodies included */
    bool depth_reported;
    int call_depth; /* nested calls: index of the CallScratch in use */
    struct CallScratch **scratch;
    int nscratch;
    const char *prefix; /* parameter-name prefix of the current def expansion, "" at model level */
    Naming naming;
    SrcLoc metric_loc; /* the expression of the metric statement being evaluated */
    int dropout_streams;
    int step_tensor;
    Ref *tcache;
    int tcache_n;
    ArgDecl *args;
    int nargs, args_cap;
    OutDecl *outs;
    int nouts, outs_cap;
    Ref loss_total;
    int nloss;
    /* def-call notes owed to the last error: flushed before the next error or statement */
    SrcLoc trace_loc[MAX_TRACE + 1];
    const char *trace_name[MAX_TRACE + 1];
    int ntrace;
};

static Value eval(Sema *s, const Expr *e);

/* The arguments of a call being evaluated, one per nesting level of calls (reused, so that
 * deeply nested expressions keep small stack frames). */
typedef struct CallScratch {
    Actuals actuals;
    Call call;
} CallScratch;

static CallScratch *call_scratch(Sema *s) {
    if (s->call_depth >= s->nscratch) {
        CallScratch **grown = arena_alloc(s->a, (size_t)(s->nscratch + 16) * sizeof *grown);
        if (s->nscratch) memcpy(grown, s->scratch, (size_t)s->nscratch * sizeof *grown);
        for (int i = s->nscratch; i < s->nscratch + 16; i++)
            grown[i] = arena_alloc(s->a, sizeof **grown);
        s->scratch = grown;
        s->nscratch += 16;
    }
    return s->scratch[s->call_depth];
}

/* ---------------------------------------------------------------- services for lower.c */

Func *sema_func(Sema *s) {
    return s->f;
}
bool sema_training(const Sema *s) {
    return s->training;
}
Arena *sema_arena(Sema *s) {
    return s->a;
}

static void flush_trace(Sema *s) {
    for (int i = 0; i < s->ntrace; i++)
        if (s->trace_loc[i].first_line)
            diag_note(s->d, s->trace_loc[i], "in def '%s' called here", s->trace_name[i]);
        else
            diag_note(s->d, s->trace_loc[i], "(%s more def calls)", s->trace_name[i]);
    s->ntrace = 0;
}

bool sema_error(Sema *s, SrcLoc loc, const char *fmt, ...) {
    flush_trace(s);
    if (s->pass != PASS_CHECK) return false; /* later passes repeat pass 0 without errors */
    va_list ap;
    va_start(ap, fmt);
    diag_verror(s->d, loc, fmt, ap);
    va_end(ap);
    /* the innermost calls, then (when the chain is long) the outermost one */
    int depth = 0;
    for (Frame *fr = s->frame; fr; fr = fr->up)
        depth++;
    int k = 0;
    for (Frame *fr = s->frame; fr; fr = fr->up, k++) {
        if (k < MAX_TRACE - 1 || k == depth - 1) {
            s->trace_loc[s->ntrace] = fr->call_loc;
            s->trace_name[s->ntrace++] = fr->def->name;
        } else if (k == MAX_TRACE - 1) {
            s->trace_loc[s->ntrace] = (SrcLoc){0};
            s->trace_name[s->ntrace++] = arena_printf(s->a, "%d", depth - MAX_TRACE);
        }
    }
    return true;
}

void sema_note(Sema *s, SrcLoc loc, const char *fmt, ...) {
    if (s->pass != PASS_CHECK) return;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    diag_note(s->d, loc, "%s", buf);
}

void sema_note_origin(Sema *s, const Value *v) {
    if (v->origin && v->origin_loc.first_line)
        sema_note(s, v->origin_loc, "'%s' declared here as %s", v->origin, value_type_str(s, v));
}

Ref sema_read_tensor(Sema *s, int tensor) {
    if (tensor >= s->tcache_n) {
        int n = s->m->ntensors + 16;
        Ref *grown = arena_alloc(s->a, (size_t)n * sizeof *grown);
        for (int i = 0; i < n; i++)
            grown[i] = i < s->tcache_n ? s->tcache[i] : REF_NONE;
        s->tcache = grown;
        s->tcache_n = n;
    }
    if (s->tcache[tensor] == REF_NONE) s->tcache[tensor] = ir_tensor(s->f, tensor);
    return s->tcache[tensor];
}

/* Declares a module tensor in pass 0 (reporting a duplicate name), finds it in later ones. */
static int declare_tensor(Sema *s, const char *name, TensorKind kind, DType dt, Shape shape,
                          InitSpec init, SrcLoc loc) {
    int id = module_find_tensor(s->m, name);
    if (s->pass != PASS_CHECK && id >= 0) return id;
    if (id >= 0) {
        sema_error(s, loc, "parameter name '%s' is already used", name);
        sema_note(s, s->m->tensors[id].loc, "'%s' first declared here", name);
        return -1;
    }
    return module_add_tensor(s->m, name, kind, dt, shape, init, loc);
}

Value sema_param(Sema *s, Call *c, const char *suffix, TensorKind kind, Shape shape,
                 InitSpec init) {
    const char *name = arena_printf(s->a, "%s.%s", c->name, suffix);
    int id = declare_tensor(s, name, kind, DT_F32, shape, init, c->loc);
    if (id < 0) return value_error();
    if (kind == TK_PARAM) c->params += shape_numel(&shape, 1);
    Value v = value_tensor(s->f, sema_read_tensor(s, id));
    v.tensor = id;
    return v;
}

int sema_step_tensor(Sema *s) {
    if (s->step_tensor < 0) {
        s->step_tensor = module_find_tensor(s->m, "step");
        if (s->step_tensor >= 0 && s->m->tensors[s->step_tensor].kind != TK_STEP) {
            sema_error(
                s, s->m->tensors[s->step_tensor].loc,
                "'step' is reserved for the step counter that dropout needs; rename this tensor");
            s->step_tensor = -1;
            return 0;
        }
        if (s->step_tensor < 0)
            s->step_tensor = module_add_tensor(s->m, "step", TK_STEP, DT_I32, shape_scalar(),
                                               (InitSpec){.kind = INIT_ZEROS}, s->m->loc);
    }
    return s->step_tensor;
}

int sema_next_stream(Sema *s) {
    return s->dropout_streams++;
}

void sema_layer(Sema *s, const Call *c, const char *kind, Shape out, int64_t macs, int64_t flops) {
    if (s->pass != PASS_CHECK) return;
    LayerInfo li = {.name = c->name ? c->name : kind,
                    .kind = kind,
                    .out_shape = out,
                    .params = c->params,
                    .macs = macs,
                    .flops = flops,
                    .loc = c->loc};
    VEC_PUSH(s->a, s->m->layers, s->m->nlayers, s->m->layers_cap, li);
}

/* ---------------------------------------------------------------- values */

static Value mk(ValueKind k) {
    Value v = {.kind = k, .ref = REF_NONE, .tensor = -1};
    return v;
}

Value value_error(void) {
    return mk(V_ERROR);
}

Value value_num(double x) {
    Value v = mk(V_NUM);
    v.num = x;
    v.is_int = x == floor(x) && fabs(x) < 9007199254740992.0;
    return v;
}

Value value_tensor(Func *f, Ref r) {
    Value v = mk(V_TENSOR);
    v.ref = r;
    v.dtype = f->nodes[r].dtype;
    v.shape = f->nodes[r].shape;
    return v;
}

const char *shape_text(Sema *s, const Shape *shape) {
    char buf[160];
    return arena_strdup(s->a, shape_str(shape, buf, sizeof buf));
}

int64_t shape_per_sample(const Shape *shape) {
    return shape_numel(shape, 1);
}

const char *value_type_str(Sema *s, const Value *v) {
    switch (v->kind) {
    case V_TENSOR:
    case V_UNAVAIL:
        return arena_printf(s->a, "%s%s", dtype_names[v->dtype], shape_text(s, &v->shape));
    case V_NUM:
        return arena_printf(s->a, "the number %g", v->num);
    case V_BOOL:
        return v->num ? "true" : "false";
    case V_STR:
        return arena_printf(s->a, "the string \"%s\"", v->str);
    case V_TUPLE:
        return arena_printf(s->a, "a tuple of %d", v->nitems);
    case V_FUNC:
        return arena_printf(s->a, "the function '%s'",
                            v->builtin ? v->builtin->name : v->def->name);
    case V_BATCH:
        return "'batch'";
    case V_NONE:
        return "none";
    case V_ERROR:
        return "an erroneous value";
    }
    return "?";
}

/* ---------------------------------------------------------------- scopes and names */

static Binding *scope_find(Scope *sc, const char *name) {
    for (int i = 0; i < sc->n; i++)
        if (!strcmp(sc->items[i].name, name)) return &sc->items[i];
    return NULL;
}

static uint32_t name_hash(const char *name) {
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *name; name++)
        h = (h ^ (uint8_t)*name) * 16777619u;
    return h;
}

static DefInfo *find_def(Sema *s, const char *name) {
    if (!s->def_table_cap) return NULL;
    for (uint32_t i = name_hash(name);; i++) {
        int k = s->def_table[i & (uint32_t)(s->def_table_cap - 1)];
        if (!k) return NULL;
        if (!strcmp(s->defs[k - 1].block->name, name)) return &s->defs[k - 1];
    }
}

static void add_def(Sema *s, const Block *b) {
    s->defs[s->ndefs++] = (DefInfo){.block = b};
    for (uint32_t i = name_hash(b->name);; i++) {
        int *slot = &s->def_table[i & (uint32_t)(s->def_table_cap - 1)];
        if (!*slot) {
            *slot = s->ndefs;
            return;
        }
    }
}

static const char *qualify(Sema *s, const char *local) {
    return s->prefix[0] ? arena_printf(s->a, "%s.%s", s->prefix, local) : local;
}

/* Binds name in the current scope; a duplicate is an error with a note at the first. */
static void bind(Sema *s, const char *name, SrcLoc loc, Value v) {
    if (!strcmp(name, "batch")) {
        sema_error(s, loc, "'batch' is reserved for the batch dimension");
        v = value_error();
    }
    if (strchr(name, '.')) {
        /* dotted names read parameters (h1.weight); they never name a binding */
        sema_error(s, loc, "'%s' cannot be defined: a name with '.' refers to a layer parameter",
                   name);
        v = value_error();
    }
    Binding *old = scope_find(s->scope, name);
    if (old) {
        sema_error(s, loc, "duplicate name '%s'", name);
        sema_note(s, old->loc, "'%s' first defined here", name);
        return;
    }
    if (v.kind != V_ERROR && v.kind != V_FUNC) {
        v.origin = name;
        v.origin_loc = loc;
    }
    if (v.kind == V_TENSOR && !s->f->nodes[v.ref].name) s->f->nodes[v.ref].name = qualify(s, name);
    Binding b = {.name = name, .loc = loc, .value = v};
    VEC_PUSH(s->a, s->scope->items, s->scope->n, s->scope->cap, b);
}

/* Did-you-mean over the bindings in scope, the defs and the builtins. */
static const char *closest_name(Sema *s, const char *name, bool functions_only) {
    int cap = s->scope->n + s->ndefs + builtin_count + 1, n = 0;
    const char **cands = arena_alloc(s->a, (size_t)cap * sizeof *cands);
    for (int i = 0; i < s->scope->n; i++)
        if (!functions_only || s->scope->items[i].value.kind == V_FUNC)
            cands[n++] = s->scope->items[i].name;
    for (int i = 0; i < s->ndefs; i++)
        cands[n++] = s->defs[i].block->name;
    for (int i = 0; i < builtin_count; i++)
        cands[n++] = builtins[i].name;
    if (!functions_only) cands[n++] = "batch";
    return diag_closest(name, cands, n);
}

/* A statement of the current block declaring name (for "used before its declaration"). */
static const Stmt *declared_in_block(const Block *b, const char *name) {
    if (!b) return NULL;
    for (int i = 0; i < b->nstmts; i++)
        if (b->stmts[i]->name && !strcmp(b->stmts[i]->name, name)) return b->stmts[i];
    return NULL;
}

static Value func_value(const Builtin *b, const Block *def) {
    Value v = mk(V_FUNC);
    v.builtin = b;
    v.def = def;
    return v;
}

/* A dotted name (`h1.weight`) reads the parameter or state of that name, as declared so far
 * (inside a def, relative to the def call: `fc.weight` is `<call>.fc.weight`). */
static Value lookup_tensor(Sema *s, const char *name, SrcLoc loc) {
    int id = s->m ? module_find_tensor(s->m, qualify(s, name)) : -1;
    if (id >= 0 && s->m->tensors[id].kind != TK_STEP) {
        Value v = value_tensor(s->f, sema_read_tensor(s, id));
        v.tensor = id;
        v.loc = loc;
        v.origin = s->m->tensors[id].name;
        v.origin_loc = s->m->tensors[id].loc;
        return v;
    }
    const char **cands = arena_alloc(s->a, (size_t)(s->m ? s->m->ntensors + 1 : 1) * sizeof *cands);
    int n = 0;
    for (int i = 0; s->m && i < s->m->ntensors; i++)
        cands[n++] = s->m->tensors[i].name;
    const char *close = diag_closest(qualify(s, name), cands, n);
    if (close)
        sema_error(s, loc, "no parameter or state named '%s' (so far); did you mean '%s'?",
                   qualify(s, name), close);
    else
        sema_error(s, loc, "no parameter or state named '%s' (so far)", qualify(s, name));
    return value_error();
}

__attribute__((noinline)) static Value lookup(Sema *s, const char *name, SrcLoc loc) {
    Binding *b = scope_find(s->scope, name);
    if (b) {
        Value v = b->value;
        if (v.kind != V_ERROR) v.loc = loc;
        return v;
    }
    if (!strcmp(name, "batch")) {
        Value v = mk(V_BATCH);
        v.loc = loc;
        return v;
    }
    DefInfo *di = find_def(s, name);
    if (di) return func_value(NULL, di->block);
    const Builtin *bi = builtin_find(name);
    if (bi) return func_value(bi, NULL);
    if (strchr(name, '.')) return lookup_tensor(s, name, loc);
    const Stmt *later = declared_in_block(s->scope->block, name);
    if (later) {
        sema_error(s, loc, "'%s' is used before its declaration", name);
        sema_note(s, later->name_loc, "'%s' declared here", name);
        return value_error();
    }
    const char *close = closest_name(s, name, false);
    if (close)
        sema_error(s, loc, "unknown name '%s'; did you mean '%s'?", name, close);
    else
        sema_error(s, loc, "unknown name '%s'", name);
    return value_error();
}

/* ---------------------------------------------------------------- layer naming */

/* The function a callee name resolves to without evaluating anything (for counting). */
static bool callee_has_layers(Sema *s, const char *callee, const Arg *args, int nargs) {
    for (int i = 0; i < nargs; i++)
        if (args[i].name && !strcmp(args[i].name, "name")) return false; /* explicitly named */
    Binding *b = s->scope ? scope_find(s->scope, callee) : NULL;
    if (b) {
        if (b->value.kind != V_FUNC) return false;
        if (b->value.builtin) return b->value.builtin->kind == BK_PARAMS;
        DefInfo *di = find_def(s, b->value.def->name);
        return di && di->has_layers;
    }
    DefInfo *di = find_def(s, callee);
    if (di) return di->has_layers;
    const Builtin *bi = builtin_find(callee);
    return bi && bi->kind == BK_PARAMS;
}

/* Layers with parameters (and defs holding some) called in e, without name=. */
static int count_layers(Sema *s, const Expr *e) {
    if (!e) return 0;
    int n = 0;
    switch (e->kind) {
    case E_CALL:
        n += callee_has_layers(s, e->str, e->args, e->nargs);
        for (int i = 0; i < e->nargs; i++)
            n += count_layers(s, e->args[i].value);
        break;
    case E_PIPE:
        n += count_layers(s, e->lhs);
        if (e->rhs && e->rhs->kind == E_NAME)
            n += callee_has_layers(s, e->rhs->str, NULL, 0);
        else
            n += count_layers(s, e->rhs);
        break;
    case E_BINARY:
        n += count_layers(s, e->lhs) + count_layers(s, e->rhs);
        break;
    case E_NEG:
        n += count_layers(s, e->lhs);
        break;
    case E_INDEX:
    case E_LIST:
    case E_TUPLE:
        n += count_layers(s, e->lhs);
        for (int i = 0; i < e->nitems; i++)
            n += count_layers(s, e->items[i]);
        break;
    case E_SLICE:
        for (int i = 0; i < 3; i++)
            n += count_layers(s, e->slice[i]);
        break;
    default:
        break;
    }
    return n;
}

static void naming_begin(Sema *s, const char *bind_name, const Expr *e) {
    s->naming.bind = bind_name;
    s->naming.layers = count_layers(s, e);
    s->naming.ncounts = 0;
}

/* The unqualified name of the next layer with parameters of this kind. */
static const char *next_layer_name(Sema *s, const char *kind, const char *explicit_name) {
    if (explicit_name) return qualify(s, explicit_name);
    Naming *nm = &s->naming;
    if (nm->bind && nm->layers == 1) return qualify(s, nm->bind);
    if (!nm->bind) nm = &s->scope->unbound; /* count across the scope: loss dense0, dense1, ... */
    int k = 0, i;
    for (i = 0; i < nm->ncounts; i++)
        if (!strcmp(nm->counts[i].kind, kind)) break;
    if (i < nm->ncounts)
        k = nm->counts[i].count++;
    else if (nm->ncounts < MAX_KIND_COUNTS) {
        nm->counts[nm->ncounts].kind = kind;
        nm->counts[nm->ncounts++].count = 1;
    }
    const char *local = nm->bind ? arena_printf(s->a, "%s.%s%d", nm->bind, kind, k)
                                 : arena_printf(s->a, "%s%d", kind, k);
    return qualify(s, local);
}

/* The display name (LayerInfo) of a layer without parameters. */
static const char *display_name(Sema *s, const char *kind) {
    return qualify(s, s->naming.bind ? s->naming.bind : kind);
}

/* ---------------------------------------------------------------- argument binding */

typedef struct SigParam {
    char name[32];
    char def[32]; /* "" = required */
} SigParam;

static int parse_sig(const char *sig, SigParam *out) {
    int n = 0;
    const char *p = sig;
    while (*p && n < CALL_MAX_ARGS) {
        while (*p == ' ' || *p == ',')
            p++;
        if (!*p) break;
        const char *end = p;
        for (int depth = 0; *end && (depth || *end != ','); end++)
            depth += (*end == '(') - (*end == ')');
        const char *eq = memchr(p, '=', (size_t)(end - p));
        size_t nlen = (size_t)((eq ? eq : end) - p);
        while (nlen && p[nlen - 1] == ' ')
            nlen--;
        memset(&out[n], 0, sizeof out[n]);
        memcpy(out[n].name, p, nlen < 31 ? nlen : 31);
        if (eq) {
            const char *d = eq + 1;
            while (*d == ' ')
                d++;
            size_t dlen = (size_t)(end - d);
            memcpy(out[n].def, d, dlen < 31 ? dlen : 31);
        }
        n++;
        p = end;
    }
    return n;
}

static Value default_value(Sema *s, const char *def, SrcLoc loc) {
    Value v;
    if (def[0] == '(') { /* a tuple of numbers: "(0.9, 0.999)" */
        v = mk(V_TUPLE);
        v.items = arena_alloc(s->a, 4 * sizeof *v.items);
        for (const char *p = def + 1; *p && *p != ')' && v.nitems < 4;) {
            char *end;
            v.items[v.nitems] = value_num(strtod(p, &end));
            v.items[v.nitems++].loc = loc;
            p = end;
            while (*p == ',' || *p == ' ')
                p++;
        }
    } else if (!strcmp(def, "none"))
        v = mk(V_NONE);
    else if (!strcmp(def, "true") || !strcmp(def, "false")) {
        v = mk(V_BOOL);
        v.num = def[0] == 't';
    } else if (def[0] == '\'') {
        v = mk(V_STR);
        v.str = arena_strndup(s->a, def + 1, strlen(def) - 2);
    } else {
        v = value_num(strtod(def, NULL));
    }
    v.loc = loc;
    return v;
}

static const char *sig_text(Sema *s, const char *fname, const char *sig) {
    return arena_printf(s->a, "%s(%s)", fname, sig);
}

/* Matches actual arguments to a signature. Reports too many positional arguments, unknown
 * keywords (did you mean), arguments given twice, and missing required ones. */
static bool bind_sig(Sema *s, const char *fname, const char *sig, SrcLoc call_loc,
                     const Actuals *aa, Call *c) {
    SigParam sp[CALL_MAX_ARGS];
    int n = parse_sig(sig, sp);
    bool ok = true;
    int npos = 0;
    for (int i = 0; i < CALL_MAX_ARGS; i++)
        c->given[i] = false;
    for (int i = 0; i < aa->n; i++) {
        int slot = -1;
        if (!aa->name[i]) {
            if (npos >= n) {
                sema_error(s, aa->loc[i], "too many arguments to %s: it takes at most %d (%s)",
                           fname, n, sig_text(s, fname, sig));
                ok = false;
                continue;
            }
            slot = npos++;
        } else {
            for (int j = 0; j < n; j++)
                if (!strcmp(sp[j].name, aa->name[i])) slot = j;
            if (slot < 0) {
                const char *cands[CALL_MAX_ARGS];
                for (int j = 0; j < n; j++)
                    cands[j] = sp[j].name;
                const char *close = diag_closest(aa->name[i], cands, n);
                if (close)
                    sema_error(s, aa->name_loc[i], "%s has no argument '%s'; did you mean '%s'?",
                               fname, aa->name[i], close);
                else
                    sema_error(s, aa->name_loc[i], "%s has no argument '%s'", fname, aa->name[i]);
                sema_note(s, call_loc, "%s", sig_text(s, fname, sig));
                ok = false;
                continue;
            }
            if (c->given[slot]) {
                sema_error(s, aa->name_loc[i], "argument '%s' of %s is given twice", sp[slot].name,
                           fname);
                ok = false;
                continue;
            }
        }
        c->given[slot] = true;
        c->arg_name[slot] = arena_strdup(s->a, sp[slot].name);
        c->arg[slot] = aa->value[i];
        c->arg_loc[slot] = aa->loc[i];
    }
    bool reported = !ok; /* after an unknown keyword, "missing" would only repeat it */
    for (int j = 0; j < n; j++) {
        if (c->given[j]) continue;
        c->arg_name[j] = arena_strdup(s->a, sp[j].name);
        c->arg_loc[j] = call_loc;
        if (!sp[j].def[0]) {
            if (!reported)
                sema_error(s, call_loc, "missing argument '%s' in call to %s", sp[j].name,
                           sig_text(s, fname, sig));
            ok = false;
            c->arg[j] = value_error();
        } else {
            c->arg[j] = default_value(s, sp[j].def, call_loc);
        }
    }
    return ok;
}

/* ---------------------------------------------------------------- services for train.c and lower.c
 */

void sema_layer_op(Sema *s, SrcLoc loc, const char *kind, Shape out, int64_t macs, int64_t flops) {
    if (s->pass != PASS_CHECK) return;
    LayerInfo li = {.name = display_name(s, kind),
                    .kind = kind,
                    .out_shape = out,
                    .macs = macs,
                    .flops = flops,
                    .loc = loc};
    VEC_PUSH(s->a, s->m->layers, s->m->nlayers, s->m->layers_cap, li);
}

Value sema_eval(Sema *s, const Expr *e) {
    return eval(s, e);
}

bool sema_bind_call(Sema *s, const char *fname, const char *sig, const Expr *call, bool symbols,
                    Call *c) {
    Actuals aa = {0};
    bool ok = true;
    memset(c, 0, sizeof *c);
    c->loc = call->loc;
    if (call->kind == E_CALL) {
        if (call->nargs > CALL_MAX_ARGS) {
            sema_error(s, call->loc, "too many arguments to %s", fname);
            return false;
        }
        for (int i = 0; i < call->nargs; i++) {
            aa.name[aa.n] = call->args[i].name;
            aa.name_loc[aa.n] = call->args[i].name_loc;
            const Expr *ae = call->args[i].value;
            if (symbols && ae->kind == E_NAME) {
                aa.value[aa.n] = mk(V_STR);
                aa.value[aa.n].str = ae->str;
                aa.value[aa.n].loc = ae->loc;
            } else {
                aa.value[aa.n] = eval(s, ae);
            }
            aa.loc[aa.n] = call->args[i].value->loc;
            if (aa.value[aa.n++].kind == V_ERROR) ok = false;
        }
    }
    return bind_sig(s, fname, sig, call->loc, &aa, c) && ok;
}

/* ---------------------------------------------------------------- calls and defs */

static bool any_kind(const Value *v, ValueKind k) {
    if (v->kind == k) return true;
    if (v->kind == V_TUPLE)
        for (int i = 0; i < v->nitems; i++)
            if (any_kind(&v->items[i], k)) return true;
    return false;
}

static const Stmt *first_label(const Value *v) {
    if (v->label) return v->label;
    if (v->kind == V_TUPLE)
        for (int i = 0; i < v->nitems; i++) {
            const Stmt *l = first_label(&v->items[i]);
            if (l) return l;
        }
    return NULL;
}

static void taint(Value *v, const Stmt *label) {
    if (!label) return;
    if (!v->label) v->label = label;
    if (v->kind == V_TUPLE)
        for (int i = 0; i < v->nitems; i++)
            taint(&v->items[i], label);
}

static void def_stmt(Sema *s, const Stmt *st, Value *result);

__attribute__((noinline)) static Value expand_def(Sema *s, DefInfo *di, SrcLoc call_loc,
                                                  const char *prefix, const Actuals *aa) {
    const Block *def = di->block;
    if (di->broken) return value_error();
    for (Frame *fr = s->frame; fr; fr = fr->up)
        if (fr->def == def) {
            sema_error(s, call_loc, "def '%s' calls itself; recursion is not supported", def->name);
            sema_note(s, def->name_loc, "'%s' defined here", def->name);
            return value_error();
        }
    if (s->depth >= MAX_DEF_DEPTH) {
        sema_error(s, call_loc, "defs nest deeper than %d calls", MAX_DEF_DEPTH);
        return value_error();
    }
    /* match arguments to the def's parameters */
    int from[CALL_MAX_ARGS]; /* the actual argument of each parameter */
    bool given[CALL_MAX_ARGS] = {0};
    bool ok = true;
    int npos = 0, n = def->nparams < CALL_MAX_ARGS ? def->nparams : CALL_MAX_ARGS;
    for (int i = 0; i < aa->n; i++) {
        int slot = -1;
        if (!aa->name[i]) {
            if (npos >= n) {
                sema_error(s, aa->loc[i], "too many arguments to '%s': it takes %d", def->name, n);
                sema_note(s, def->name_loc, "'%s' defined here", def->name);
                ok = false;
                continue;
            }
            slot = npos++;
        } else {
            for (int j = 0; j < n; j++)
                if (!strcmp(def->params[j].name, aa->name[i])) slot = j;
            if (slot < 0) {
                const char *cands[CALL_MAX_ARGS];
                for (int j = 0; j < n; j++)
                    cands[j] = def->params[j].name;
                const char *close = diag_closest(aa->name[i], cands, n);
                if (close)
                    sema_error(s, aa->name_loc[i], "'%s' has no parameter '%s'; did you mean '%s'?",
                               def->name, aa->name[i], close);
                else
                    sema_error(s, aa->name_loc[i], "'%s' has no parameter '%s'", def->name,
                               aa->name[i]);
                sema_note(s, def->name_loc, "'%s' defined here", def->name);
                ok = false;
                continue;
            }
            if (given[slot]) {
                sema_error(s, aa->name_loc[i], "argument '%s' of '%s' is given twice", aa->name[i],
                           def->name);
                ok = false;
                continue;
            }
        }
        given[slot] = true;
        from[slot] = i;
    }
    for (int j = 0; j < n && ok; j++)
        if (!given[j] && !def->params[j].default_value) {
            sema_error(s, call_loc, "missing argument '%s' in call to '%s'", def->params[j].name,
                       def->name);
            sema_note(s, def->name_loc, "'%s' defined here", def->name);
            ok = false;
        }
    if (!ok) return value_error();

    Scope scope = {.block = def};
    Frame frame = {.def = def, .call_loc = call_loc, .up = s->frame};
    Scope *saved_scope = s->scope;
    Frame *saved_frame = s->frame;
    const char *saved_prefix = s->prefix;
    Naming saved_naming = s->naming;
    s->scope = &scope;
    s->frame = &frame;
    s->prefix = prefix;
    s->depth++;
    for (int j = 0; j < n; j++) {
        Value v;
        if (given[j]) {
            v = aa->value[from[j]];
        } else {
            naming_begin(s, NULL, NULL);
            v = eval(s, def->params[j].default_value);
        }
        /* keep the caller's origin for notes ("'x' declared here" points at the input) */
        Value keep = v;
        Binding b = {.name = def->params[j].name, .loc = def->params[j].loc, .value = keep};
        if (!keep.origin && keep.kind != V_FUNC && keep.kind != V_ERROR) {
            b.value.origin = def->params[j].name;
            b.value.origin_loc = def->params[j].loc;
        }
        VEC_PUSH(s->a, scope.items, scope.n, scope.cap, b);
    }
    Value result = mk(V_NONE);
    for (int i = 0; i < def->nstmts && result.kind == V_NONE; i++)
        def_stmt(s, def->stmts[i], &result);
    s->depth--;
    s->scope = saved_scope;
    s->frame = saved_frame;
    s->prefix = saved_prefix;
    s->naming = saved_naming;
    if (result.kind == V_NONE) return value_error(); /* no return: reported statically */
    if (result.kind != V_FUNC && result.kind != V_ERROR) {
        result.origin = NULL;
        result.origin_loc = (SrcLoc){0};
    }
    result.loc = call_loc;
    return result;
}

/* callee(args) or lhs |> callee(args). */
static Value eval_call_with(Sema *s, CallScratch *scratch, SrcLoc loc, const char *callee,
                            SrcLoc callee_loc, const Expr *pipe_lhs, const Arg *args, int nargs) {
    /* resolve the callee */
    const Builtin *bi = NULL;
    DefInfo *di = NULL;
    bool resolved = true;
    Binding *b = scope_find(s->scope, callee);
    if (b) {
        if (b->value.kind == V_FUNC) {
            bi = b->value.builtin;
            if (b->value.def) di = find_def(s, b->value.def->name);
        } else if (b->value.kind == V_ERROR) {
            resolved = false;
        } else {
            sema_error(s, callee_loc, "'%s' is not a function; it is %s", callee,
                       value_type_str(s, &b->value));
            sema_note(s, b->loc, "'%s' defined here", callee);
            resolved = false;
        }
    } else if ((di = find_def(s, callee))) {
    } else if ((bi = builtin_find(callee))) {
    } else {
        const char *close = closest_name(s, callee, true);
        if (close)
            sema_error(s, callee_loc, "unknown layer or function '%s'; did you mean '%s'?", callee,
                       close);
        else
            sema_error(s, callee_loc, "unknown layer or function '%s'", callee);
        resolved = false;
    }

    /* evaluate the arguments */
    Actuals *aa = &scratch->actuals;
    memset(aa, 0, sizeof *aa);
    bool bad = !resolved, unavail = false;
    const char *explicit_name = NULL;
    int total = nargs + (pipe_lhs ? 1 : 0);
    if (total > CALL_MAX_ARGS) {
        sema_error(s, loc, "too many arguments (%d; at most %d)", total, CALL_MAX_ARGS);
        return value_error();
    }
    if (pipe_lhs) {
        aa->value[0] = eval(s, pipe_lhs);
        aa->loc[0] = pipe_lhs->loc;
        aa->n = 1;
    }
    bool takes_name = di || (bi && bi->kind == BK_PARAMS);
    for (int i = 0; i < nargs; i++) {
        Value v = eval(s, args[i].value);
        if (args[i].name && !strcmp(args[i].name, "name") && (takes_name || !resolved)) {
            if (v.kind == V_STR && v.str[0]) {
                explicit_name = v.str;
            } else if (v.kind != V_ERROR) {
                sema_error(s, args[i].value->loc, "name= must be a non-empty string, got %s",
                           value_type_str(s, &v));
                bad = true;
            }
            continue;
        }
        aa->name[aa->n] = args[i].name;
        aa->name_loc[aa->n] = args[i].name_loc;
        aa->value[aa->n] = v;
        aa->loc[aa->n++] = args[i].value->loc;
    }
    for (int i = 0; i < aa->n; i++) {
        if (any_kind(&aa->value[i], V_ERROR)) bad = true;
        if (any_kind(&aa->value[i], V_UNAVAIL)) unavail = true;
    }

    /* name the layer before anything can return, so every pass consumes the same counters */
    Call *c = &scratch->call;
    memset(c, 0, sizeof *c);
    c->builtin = bi;
    c->loc = loc;
    if (di && di->has_layers) {
        c->name = next_layer_name(s, di->block->name, explicit_name);
    } else if (di) { /* declares nothing: the name only prefixes display names */
        c->name = qualify(s, explicit_name    ? explicit_name
                             : s->naming.bind ? s->naming.bind
                                              : di->block->name);
    } else if (bi && bi->kind == BK_PARAMS) {
        c->name = next_layer_name(s, bi->kind_name ? bi->kind_name : bi->name, explicit_name);
    } else if (bi && bi->kind == BK_LAYER) {
        c->name = display_name(s, bi->kind_name ? bi->kind_name : bi->name);
    }
    if (bad) return value_error();
    bool metric_call = s->metric_loc.first_line && !memcmp(&loc, &s->metric_loc, sizeof loc);
    if (bi && bi->kind == BK_DRIVER_METRIC && !metric_call) {
        sema_error(s, callee_loc,
                   "'%s' is computed by the training driver; it can only be the call of a 'metric' "
                   "statement",
                   bi->name);
        return value_error();
    }
    const Stmt *label = NULL;
    for (int i = 0; i < aa->n && !label; i++)
        label = first_label(&aa->value[i]);
    if (unavail) {
        Value v = mk(V_UNAVAIL);
        v.label = label;
        return v;
    }
    Value r;
    if (di) {
        r = expand_def(s, di, loc, c->name, aa);
    } else {
        if (!bind_sig(s, bi->name, bi->sig, loc, aa, c)) return value_error();
        r = bi->lower(s, c);
    }
    r.loc = loc;
    taint(&r, label);
    return r;
}

static Value eval_call(Sema *s, SrcLoc loc, const char *callee, SrcLoc callee_loc,
                       const Expr *pipe_lhs, const Arg *args, int nargs) {
    CallScratch *scratch = call_scratch(s);
    s->call_depth++;
    Value v = eval_call_with(s, scratch, loc, callee, callee_loc, pipe_lhs, args, nargs);
    s->call_depth--;
    return v;
}

/* ---------------------------------------------------------------- expressions */

__attribute__((noinline)) static Value eval_tuple(Sema *s, const Expr *e) {
    Value v = mk(V_TUPLE);
    v.nitems = e->nitems;
    v.items = arena_alloc(s->a, (size_t)(e->nitems ? e->nitems : 1) * sizeof *v.items);
    for (int i = 0; i < e->nitems; i++) {
        v.items[i] = eval(s, e->items[i]);
        if (v.items[i].kind == V_ERROR) return value_error();
    }
    for (int i = 0; i < e->nitems; i++)
        if (v.items[i].kind == V_UNAVAIL) {
            Value u = mk(V_UNAVAIL);
            u.label = first_label(&v.items[i]);
            return u;
        }
    return v;
}

/* A compile-time integer (index, slice bound); false after reporting. */
static bool const_int(Sema *s, const Expr *e, const char *what, int64_t *out) {
    Value v = eval(s, e);
    if (v.kind == V_ERROR) return false;
    if (v.kind != V_NUM || !v.is_int) {
        sema_error(s, e->loc, "%s must be a constant integer, got %s", what, value_type_str(s, &v));
        return false;
    }
    *out = (int64_t)v.num;
    return true;
}

/* x[items]: integer indices remove their axis, slices keep it; the batch axis only whole. */
__attribute__((noinline)) static Value eval_index(Sema *s, const Expr *e) {
    Value x = eval(s, e->lhs);
    if (x.kind == V_ERROR) return x;
    if (x.kind == V_TUPLE) {
        int64_t i;
        if (e->nitems != 1 || e->items[0]->kind == E_SLICE) {
            sema_error(s, e->loc, "a tuple takes exactly one integer index");
            return value_error();
        }
        if (!const_int(s, e->items[0], "a tuple index", &i)) return value_error();
        if (i < 0) i += x.nitems;
        if (i < 0 || i >= x.nitems) {
            sema_error(s, e->items[0]->loc, "index out of range for a tuple of %d", x.nitems);
            return value_error();
        }
        Value r = x.items[i];
        r.loc = e->loc;
        return r;
    }
    if (x.kind != V_TENSOR && x.kind != V_UNAVAIL) {
        sema_error(s, e->lhs->loc, "only tensors and tuples can be indexed; this is %s",
                   value_type_str(s, &x));
        return value_error();
    }
    const Shape *in = &x.shape;
    if (e->nitems > in->rank) {
        sema_error(s, e->loc, "too many indices (%d) for %s", e->nitems, value_type_str(s, &x));
        sema_note_origin(s, &x);
        return value_error();
    }
    int64_t start[IR_MAX_RANK], step[IR_MAX_RANK];
    Shape mid = *in, out = {0};
    bool ok = true, identity = true;
    for (int ax = 0; ax < in->rank; ax++) {
        const Expr *it = ax < e->nitems ? e->items[ax] : NULL;
        bool is_batch = in->batch_mask >> ax & 1;
        start[ax] = 0;
        step[ax] = 1;
        bool keep = true;
        if (it && is_batch) {
            if (it->kind != E_SLICE || it->slice[0] || it->slice[1] || it->slice[2]) {
                sema_error(s, it->loc, "the batch axis can only be taken whole (':')");
                sema_note_origin(s, &x);
                ok = false;
            }
        } else if (it && it->kind != E_SLICE) {
            int64_t i;
            if (!const_int(s, it, "an index", &i)) {
                ok = false;
                continue;
            }
            int64_t d = in->dim[ax];
            if (i < -d || i >= d) {
                sema_error(s, it->loc, "index %lld is out of range for axis %d of size %lld",
                           (long long)i, ax, (long long)d);
                sema_note_origin(s, &x);
                ok = false;
                continue;
            }
            start[ax] = i < 0 ? i + d : i;
            mid.dim[ax] = 1;
            keep = false;
            identity = false;
        } else if (it) {
            int64_t d = in->dim[ax], b[3] = {0, 0, 1};
            bool has[3] = {false, false, false};
            for (int k = 0; k < 3; k++)
                if (it->slice[k]) {
                    if (!const_int(s, it->slice[k], "a slice bound", &b[k])) ok = false;
                    has[k] = true;
                }
            if (!ok) continue;
            int64_t st = has[2] ? b[2] : 1;
            if (st == 0) {
                sema_error(s, it->slice[2]->loc, "slice step cannot be zero");
                ok = false;
                continue;
            }
            /* Python's slice.indices */
            int64_t lo, hi;
            if (st > 0) {
                lo =
                    has[0] ? (b[0] < 0 ? (b[0] + d < 0 ? 0 : b[0] + d) : (b[0] > d ? d : b[0])) : 0;
                hi =
                    has[1] ? (b[1] < 0 ? (b[1] + d < 0 ? 0 : b[1] + d) : (b[1] > d ? d : b[1])) : d;
            } else {
                lo = has[0]
                         ? (b[0] < 0 ? (b[0] + d < 0 ? -1 : b[0] + d) : (b[0] >= d ? d - 1 : b[0]))
                         : d - 1;
                hi = has[1]
                         ? (b[1] < 0 ? (b[1] + d < 0 ? -1 : b[1] + d) : (b[1] >= d ? d - 1 : b[1]))
                         : -1;
            }
            int64_t count = st > 0 ? (hi > lo ? (hi - lo + st - 1) / st : 0)
                                   : (lo > hi ? (lo - hi - st - 1) / -st : 0);
            if (count <= 0) {
                sema_error(s, it->loc, "slice selects no elements of axis %d (size %lld)", ax,
                           (long long)d);
                ok = false;
                continue;
            }
            start[ax] = lo;
            step[ax] = st;
            mid.dim[ax] = count;
            if (lo != 0 || st != 1 || count != d) identity = false;
        }
        if (keep) {
            out.dim[out.rank] = mid.dim[ax];
            if (is_batch) out.batch_mask |= (uint8_t)(1u << out.rank);
            out.rank++;
        }
    }
    if (!ok) return value_error();
    if (x.kind == V_UNAVAIL) return x;
    Ref r = x.ref;
    if (!identity) r = ir_slice(s->f, r, start, step, mid);
    r = ir_reshape(s->f, r, out);
    Value v = value_tensor(s->f, r);
    v.label = x.label;
    v.loc = e->loc;
    return v;
}

static Value eval_expr(Sema *s, const Expr *e);

/* Expressions nest at most AST_MAX_DEPTH deep, but def expansions stack them: the total is
 * capped so that no input can exhaust the C stack. */
enum { MAX_EVAL_DEPTH = 1000 };

static Value eval(Sema *s, const Expr *e) {
    if (s->eval_depth >= MAX_EVAL_DEPTH) {
        if (!s->depth_reported)
            sema_error(s, e->loc,
                       "expressions nest too deeply (more than %d levels, counting def expansions)",
                       MAX_EVAL_DEPTH);
        s->depth_reported = true; /* once per statement */
        return value_error();
    }
    s->eval_depth++;
    Value v = eval_expr(s, e);
    s->eval_depth--;
    return v;
}

static Value eval_expr(Sema *s, const Expr *e) {
    Value v;
    switch (e->kind) {
    case E_ERROR:
        return value_error();
    case E_NUM:
        v = value_num(e->num);
        v.is_int = e->is_int;
        if (e->is_int) v.num = (double)e->ival;
        break;
    case E_STR:
        v = mk(V_STR);
        v.str = e->str;
        break;
    case E_BOOL:
        v = mk(V_BOOL);
        v.num = e->ival != 0;
        break;
    case E_NAME:
        return lookup(s, e->str, e->loc);
    case E_BINARY: {
        Value l = eval(s, e->lhs), r = eval(s, e->rhs);
        v = lower_binary(s, e->loc, e->op, l, r);
        break;
    }
    case E_NEG:
        v = lower_neg(s, e->loc, eval(s, e->lhs));
        break;
    case E_PIPE:
        if (e->rhs && e->rhs->kind == E_NAME)
            return eval_call(s, e->loc, e->rhs->str, e->rhs->loc, e->lhs, NULL, 0);
        if (e->rhs && e->rhs->kind == E_CALL)
            return eval_call(s, e->loc, e->rhs->str, e->rhs->callee_loc, e->lhs, e->rhs->args,
                             e->rhs->nargs);
        eval(s, e->lhs);
        if (e->rhs && e->rhs->kind != E_ERROR)
            sema_error(s, e->rhs->loc,
                       "the right side of '|>' must be a layer or function, optionally called");
        return value_error();
    case E_CALL:
        return eval_call(s, e->loc, e->str, e->callee_loc, NULL, e->args, e->nargs);
    case E_INDEX:
        return eval_index(s, e);
    case E_SLICE:
        sema_error(s, e->loc, "a slice can only appear inside '[...]'");
        return value_error();
    case E_LIST:
    case E_TUPLE:
        v = eval_tuple(s, e);
        break;
    default:
        return value_error();
    }
    if (v.kind != V_ERROR) v.loc = e->loc;
    return v;
}

/* ---------------------------------------------------------------- types and initializers */

/* Parses a declared type. The batch dimension is allowed (first axis only) when allow_batch. */
static bool eval_type(Sema *s, const TypeExpr *t, bool allow_batch, const char *what, DType *dt,
                      Shape *sh) {
    static const char *const dts[] = {"f32", "i32", "f64"};
    bool ok = true;
    int k;
    for (k = 0; k < 3; k++)
        if (!strcmp(t->dtype, dts[k])) break;
    if (k == 3) {
        const char *close = diag_closest(t->dtype, dts, 3);
        if (close)
            sema_error(s, t->dtype_loc, "unknown element type '%s'; did you mean '%s'?", t->dtype,
                       close);
        else
            sema_error(s, t->dtype_loc, "unknown element type '%s' (f32, i32 or f64)", t->dtype);
        ok = false;
    }
    *dt = k == 1 ? DT_I32 : k == 2 ? DT_F64 : DT_F32;
    if (t->ndims > IR_MAX_RANK) {
        sema_error(s, t->loc, "rank %d is more than the %d dimensions a tensor can have", t->ndims,
                   IR_MAX_RANK);
        return false;
    }
    *sh = (Shape){.rank = t->ndims};
    for (int i = 0; i < t->ndims; i++) {
        const Expr *de = t->dims[i];
        if (de->kind == E_NAME && !strcmp(de->str, "batch")) {
            if (!allow_batch) {
                sema_error(s, de->loc, "a %s cannot depend on the batch size", what);
                ok = false;
            } else if (i != 0) {
                sema_error(s, de->loc, "'batch' can only be the first dimension");
                ok = false;
            } else {
                sh->dim[i] = 1;
                sh->batch_mask = 1;
            }
            continue;
        }
        Value v = eval(s, de);
        if (v.kind == V_ERROR) {
            ok = false;
        } else if (v.kind == V_BATCH) {
            sema_error(s, de->loc, "'batch' can only appear alone, as the first dimension");
            ok = false;
        } else if (v.kind != V_NUM || !v.is_int || v.num <= 0 || v.num > 1e12) {
            sema_error(s, de->loc, "a dimension must be a positive integer, got %s",
                       value_type_str(s, &v));
            ok = false;
        } else {
            sh->dim[i] = (int64_t)v.num;
        }
    }
    return ok;
}

static int64_t torch_fan_in(const Shape *sh) {
    if (sh->rank == 0) return 1;
    if (sh->rank == 1) return sh->dim[0];
    int64_t f = sh->dim[1];
    for (int i = 2; i < sh->rank; i++)
        f *= sh->dim[i];
    return f;
}

static const struct {
    const char *name, *sig;
    InitKind kind;
} initializers[] = {
    {"zeros", "", INIT_ZEROS},
    {"ones", "", INIT_ONES},
    {"constant", "value", INIT_CONSTANT},
    {"uniform", "a=0, b=1", INIT_UNIFORM},
    {"normal", "mean=0, std=1", INIT_NORMAL},
    {"xavier_uniform", "gain=1", INIT_XAVIER_UNIFORM},
    {"xavier_normal", "gain=1", INIT_XAVIER_NORMAL},
    {"he_uniform", "", INIT_HE_UNIFORM},
    {"he_normal", "", INIT_HE_NORMAL},
    {"orthogonal", "gain=1", INIT_ORTHOGONAL},
};
enum { NINITIALIZERS = sizeof initializers / sizeof initializers[0] };

/* `= zeros`, `= uniform(-0.1, 0.1)`, ... A missing initializer means zeros. */
static bool eval_init(Sema *s, const Expr *e, const Shape *sh, InitSpec *out) {
    *out = (InitSpec){.kind = INIT_ZEROS, .fan_in = torch_fan_in(sh)};
    if (!e) return true;
    const char *name;
    SrcLoc name_loc;
    const Arg *args = NULL;
    int nargs = 0;
    if (e->kind == E_NAME) {
        name = e->str;
        name_loc = e->loc;
    } else if (e->kind == E_CALL) {
        name = e->str;
        name_loc = e->callee_loc;
        args = e->args;
        nargs = e->nargs;
    } else {
        if (e->kind != E_ERROR)
            sema_error(
                s, e->loc,
                "an initializer is a name such as 'zeros' or a call such as 'normal(0, 0.01)'");
        return false;
    }
    int k;
    for (k = 0; k < NINITIALIZERS; k++)
        if (!strcmp(name, initializers[k].name)) break;
    if (k == NINITIALIZERS) {
        const char *cands[NINITIALIZERS];
        for (int i = 0; i < NINITIALIZERS; i++)
            cands[i] = initializers[i].name;
        const char *close = diag_closest(name, cands, NINITIALIZERS);
        if (close) {
            sema_error(s, name_loc, "unknown initializer '%s'; did you mean '%s'?", name, close);
        } else {
            const char *list = "";
            for (int i = 0; i < NINITIALIZERS; i++)
                list = arena_printf(s->a, "%s%s%s", list, i ? ", " : "", cands[i]);
            sema_error(s, name_loc, "unknown initializer '%s' (one of: %s)", name, list);
        }
        return false;
    }
    Actuals aa = {0};
    if (nargs > CALL_MAX_ARGS) nargs = CALL_MAX_ARGS;
    for (int i = 0; i < nargs; i++) {
        aa.name[aa.n] = args[i].name;
        aa.name_loc[aa.n] = args[i].name_loc;
        aa.value[aa.n] = eval(s, args[i].value);
        aa.loc[aa.n++] = args[i].value->loc;
        if (aa.value[i].kind == V_ERROR) return false;
    }
    Call c = {0};
    if (!bind_sig(s, name, initializers[k].sig, e->loc, &aa, &c)) return false;
    double v[2] = {0, 0};
    int nv = parse_sig(initializers[k].sig, (SigParam[CALL_MAX_ARGS]){0});
    for (int i = 0; i < nv && i < 2; i++) {
        if (c.arg[i].kind != V_NUM) {
            sema_error(s, c.arg_loc[i], "%s expects numbers, got %s", name,
                       value_type_str(s, &c.arg[i]));
            return false;
        }
        v[i] = c.arg[i].num;
    }
    out->kind = initializers[k].kind;
    out->a = v[0];
    out->b = v[1];
    switch (out->kind) {
    case INIT_UNIFORM:
        if (!(v[0] < v[1])) {
            sema_error(s, e->loc, "uniform(a, b) needs a < b, got a = %g, b = %g", v[0], v[1]);
            return false;
        }
        break;
    case INIT_NORMAL:
        if (v[1] < 0) {
            sema_error(s, c.arg_loc[1], "normal: std must be >= 0, got %g", v[1]);
            return false;
        }
        break;
    case INIT_XAVIER_UNIFORM:
    case INIT_XAVIER_NORMAL:
    case INIT_HE_UNIFORM:
    case INIT_HE_NORMAL:
    case INIT_ORTHOGONAL:
        if (sh->rank < 2) {
            sema_error(
                s, name_loc,
                "%s needs a tensor of rank 2 or more (fans come from the first two axes), got %s",
                name, shape_text(s, sh));
            return false;
        }
        break;
    default:
        break;
    }
    return true;
}

/* ---------------------------------------------------------------- statements */

/* A param or state declaration (models and defs). */
static void declare_stmt(Sema *s, const Stmt *st) {
    bool is_param = st->kind == S_PARAM;
    DType dt;
    Shape sh;
    InitSpec init;
    bool ok = eval_type(s, st->type, false, is_param ? "param" : "state", &dt, &sh);
    if (ok) ok = eval_init(s, st->value, &sh, &init);
    if (ok && is_param && dt == DT_I32) {
        sema_error(s, st->type->dtype_loc, "a param must be a float tensor (it is trained)");
        ok = false;
    }
    if (!ok) {
        bind(s, st->name, st->name_loc, value_error());
        return;
    }
    const char *name = qualify(s, st->name);
    int id = declare_tensor(s, name, is_param ? TK_PARAM : TK_STATE, dt, sh, init, st->name_loc);
    if (id < 0) {
        bind(s, st->name, st->name_loc, value_error());
        return;
    }
    Value v = value_tensor(s->f, sema_read_tensor(s, id));
    v.tensor = id;
    bind(s, st->name, st->name_loc, v);
    if (s->pass == PASS_CHECK) {
        LayerInfo li = {.name = name,
                        .kind = is_param ? "param" : "state",
                        .out_shape = sh,
                        .params = is_param ? shape_numel(&sh, 1) : 0,
                        .loc = st->loc};
        VEC_PUSH(s->a, s->m->layers, s->m->nlayers, s->m->layers_cap, li);
    }
}

static bool is_compile_time(const Value *v) {
    switch (v->kind) {
    case V_NUM:
    case V_BOOL:
    case V_STR:
    case V_FUNC:
        return true;
    case V_TUPLE:
        for (int i = 0; i < v->nitems; i++)
            if (!is_compile_time(&v->items[i])) return false;
        return true;
    default:
        return false;
    }
}

static void const_stmt(Sema *s, const Stmt *st) {
    naming_begin(s, NULL, NULL);
    Value v = st->value ? eval(s, st->value) : value_error();
    if (v.kind != V_ERROR && !is_compile_time(&v)) {
        sema_error(s, st->value->loc,
                   "const '%s' must be a compile-time value (numbers, strings, tuples), got %s",
                   st->name, value_type_str(s, &v));
        v = value_error();
    }
    bind(s, st->name, st->name_loc, v);
}

static void let_stmt(Sema *s, const Stmt *st) {
    naming_begin(s, st->name, st->value);
    Value v = st->value ? eval(s, st->value) : value_error();
    if (v.kind == V_NONE) v = value_error();
    bind(s, st->name, st->name_loc, v);
}

/* Gives the nodes a statement created its location (nodes of inner def statements keep theirs). */
static void locate_nodes(Sema *s, int from, SrcLoc loc) {
    for (int i = from; i < s->f->nnodes; i++)
        if (!s->f->nodes[i].loc.first_line) s->f->nodes[i].loc = loc;
}

static void def_stmt(Sema *s, const Stmt *st, Value *result) {
    int first = s->f->nnodes;
    switch (st->kind) {
    case S_LET:
        let_stmt(s, st);
        break;
    case S_CONST:
        const_stmt(s, st);
        break;
    case S_PARAM:
    case S_STATE:
        declare_stmt(s, st);
        break;
    case S_RETURN:
        naming_begin(s, NULL, st->value);
        *result = st->value ? eval(s, st->value) : value_error();
        if (result->kind == V_NONE) *result = value_error();
        break;
    default:
        break; /* reported by check_def */
    }
    locate_nodes(s, first, st->loc);
    flush_trace(s);
}

static void arg_stmt(Sema *s, const Stmt *st) {
    bool is_label = st->kind == S_LABEL;
    DType dt;
    Shape sh;
    if (!eval_type(s, st->type, true, is_label ? "label" : "input", &dt, &sh)) {
        bind(s, st->name, st->name_loc, value_error());
        return;
    }
    Value v;
    if (is_label && !s->has_labels) {
        v = mk(V_UNAVAIL);
        v.dtype = dt;
        v.shape = sh;
    } else {
        Attr at = {.index = -1};
        Ref r = ir_node(s->f, OP_input, dt, sh, 0, NULL, &at);
        s->f->nodes[r].name = st->name;
        s->f->nodes[r].loc = st->loc;
        ArgDecl ad = {.name = st->name,
                      .role = is_label ? ARG_LABEL : ARG_INPUT,
                      .dtype = dt,
                      .shape = sh,
                      .loc = st->loc,
                      .node = r};
        VEC_PUSH(s->a, s->args, s->nargs, s->args_cap, ad);
        v = value_tensor(s->f, r);
    }
    if (is_label) v.label = st;
    bind(s, st->name, st->name_loc, v);
}

static void add_out(Sema *s, const char *name, OutRole role, Ref value, const char *label) {
    OutDecl o = {.name = name, .role = role, .value = value, .label = label};
    VEC_PUSH(s->a, s->outs, s->nouts, s->outs_cap, o);
}

static void output_stmt(Sema *s, const Stmt *st) {
    Value v;
    if (st->value) {
        let_stmt(s, st);
        Binding *b = scope_find(s->scope, st->name);
        if (!b || b->loc.first_line != st->name_loc.first_line ||
            b->loc.first_column != st->name_loc.first_column)
            return; /* duplicate name: reported */
        v = b->value;
    } else {
        v = lookup(s, st->name, st->name_loc);
    }
    if (v.kind == V_ERROR) return;
    for (int i = 0; i < s->nouts; i++)
        if (s->outs[i].role == OUT_OUTPUT && !strcmp(s->outs[i].name, st->name)) {
            sema_error(s, st->name_loc, "'%s' is already an output", st->name);
            return;
        }
    if (v.label) {
        sema_error(s, st->value ? st->value->loc : st->name_loc,
                   "output '%s' depends on label '%s'; labels feed only losses and metrics",
                   st->name, v.label->name);
        sema_note(s, v.label->name_loc, "'%s' declared here", v.label->name);
        return;
    }
    if (v.kind == V_UNAVAIL) return;
    if (v.kind != V_TENSOR) {
        sema_error(s, st->value ? st->value->loc : st->name_loc,
                   "output '%s' must be a tensor, got %s", st->name, value_type_str(s, &v));
        return;
    }
    add_out(s, st->name, OUT_OUTPUT, v.ref, NULL);
}

static const char *unique_metric_name(Sema *s, const char *base) {
    const char *name = base;
    for (int k = 2;; k++) {
        bool taken = !strcmp(name, "loss");
        for (int i = 0; i < s->nouts && !taken; i++)
            taken = !strcmp(s->outs[i].name, name);
        if (!taken) return name;
        name = arena_printf(s->a, "%s_%d", base, k);
    }
}

static void loss_stmt(Sema *s, const Stmt *st) {
    if (!s->has_labels) return;
    naming_begin(s, NULL, st->value);
    Value v = st->value ? eval(s, st->value) : value_error();
    if (v.kind == V_ERROR || v.kind == V_UNAVAIL) return;
    if (v.kind != V_TENSOR || v.shape.rank != 0 || v.dtype == DT_I32) {
        sema_error(s, st->value->loc, "a loss must be a float scalar, got %s",
                   value_type_str(s, &v));
        if (v.kind == V_TENSOR && v.shape.rank)
            sema_note(s, st->value->loc, "reduce it with mean(...) or sum(...)");
        return;
    }
    Ref r = v.ref;
    if (v.dtype != DT_F32) r = ir_cast(s->f, r, DT_F32);
    s->loss_total = s->nloss++ ? ir_binary(s->f, OP_add, s->loss_total, r) : r;
}

static void metric_stmt(Sema *s, const Stmt *st) {
    if (!s->has_labels) return;
    const Expr *e = st->value;
    if (!e) return;
    const char *base = "metric";
    const Builtin *bi = NULL;
    if (e->kind == E_CALL)
        base = e->str;
    else if (e->kind == E_PIPE && e->rhs && (e->rhs->kind == E_CALL || e->rhs->kind == E_NAME))
        base = e->rhs->str;
    bi = builtin_find(base);
    naming_begin(s, NULL, e);
    s->metric_loc = e->loc; /* driver metrics only as the statement's own call */
    Value v = eval(s, e);
    s->metric_loc = (SrcLoc){0};
    if (v.kind == V_ERROR || v.kind == V_UNAVAIL) return;
    bool driver = bi && bi->kind == BK_DRIVER_METRIC && !scope_find(s->scope, base);
    if (v.kind != V_TENSOR || (!driver && v.shape.rank != 0)) {
        sema_error(s, e->loc, "a metric must be a scalar, got %s", value_type_str(s, &v));
        return;
    }
    Ref r = v.ref;
    if (!driver && v.dtype != DT_F32) r = ir_cast(s->f, r, DT_F32);
    add_out(s, unique_metric_name(s, base), OUT_METRIC, r,
            driver && v.label ? v.label->name : NULL);
}

static void model_stmt(Sema *s, const Stmt *st) {
    int first = s->f->nnodes;
    s->depth_reported = false;
    switch (st->kind) {
    case S_ERROR:
        break;
    case S_INPUT:
    case S_LABEL:
        arg_stmt(s, st);
        break;
    case S_PARAM:
    case S_STATE:
        declare_stmt(s, st);
        break;
    case S_CONST:
        const_stmt(s, st);
        break;
    case S_LET:
        let_stmt(s, st);
        break;
    case S_OUTPUT:
        output_stmt(s, st);
        break;
    case S_LOSS:
        loss_stmt(s, st);
        break;
    case S_METRIC:
        metric_stmt(s, st);
        break;
    case S_RETURN:
        sema_error(s, st->loc, "'return' outside a def");
        break;
    }
    locate_nodes(s, first, st->loc);
    flush_trace(s);
}

/* ---------------------------------------------------------------- functions */

/* Drops the nodes that reach no output and no effect, renumbering the rest. */
static void func_compact(Func *f) {
    if (!f->nnodes) return;
    Arena *a = f->mod->arena;
    bool *live = arena_alloc(a, (size_t)f->nnodes);
    Ref *map = arena_alloc(a, (size_t)f->nnodes * sizeof *map);
    for (int i = 0; i < f->nouts; i++)
        live[f->outs[i].value] = true;
    for (int i = 0; i < f->nnodes; i++)
        if (op_info[f->nodes[i].op].flags & OPF_EFFECT) live[i] = true;
    for (int i = f->nnodes - 1; i >= 0; i--)
        if (live[i])
            for (int j = 0; j < f->nodes[i].nin; j++)
                live[f->nodes[i].in[j]] = true;
    int n = 0;
    for (int i = 0; i < f->nnodes; i++) {
        if (!live[i]) continue;
        Node nd = f->nodes[i];
        for (int j = 0; j < nd.nin; j++)
            nd.in[j] = map[nd.in[j]];
        map[i] = n;
        f->nodes[n++] = nd;
    }
    f->nnodes = n;
    for (int i = 0; i < f->nouts; i++)
        f->outs[i].value = map[f->outs[i].value];
}

static Func *func_new(Module *m, const char *name) {
    Func *f = arena_alloc(m->arena, sizeof *f);
    f->name = arena_strdup(m->arena, name);
    f->mod = m;
    return f;
}

/* Evaluates the model body once into a new function (see the passes at the top). */
static Func *run_pass(Sema *s, const Block *b, int pass) {
    Scope scope = {.block = b};
    s->f = func_new(s->m, pass_func_names[pass]);
    s->pass = pass;
    s->training = pass == PASS_CHECK;
    s->has_labels = pass != PASS_INFER;
    s->scope = &scope;
    s->prefix = "";
    s->frame = NULL;
    s->depth = 0;
    s->dropout_streams = 0;
    s->tcache = NULL;
    s->tcache_n = 0;
    s->args = NULL;
    s->nargs = s->args_cap = 0;
    s->outs = NULL;
    s->nouts = s->outs_cap = 0;
    s->nloss = 0;
    s->loss_total = REF_NONE;
    for (int i = 0; i < b->nstmts; i++)
        model_stmt(s, b->stmts[i]);

    Func *f = s->f;
    for (int role = ARG_INPUT; role <= ARG_LABEL; role++)
        for (int i = 0; i < s->nargs; i++) {
            ArgDecl *ad = &s->args[i];
            if ((int)ad->role != role) continue;
            int idx = func_add_arg(f, ad->name, ad->role, ad->dtype, ad->shape, ad->loc);
            f->nodes[ad->node].attr.index = idx;
        }
    if (pass == PASS_INFER) {
        for (int i = 0; i < s->nouts; i++)
            if (s->outs[i].role == OUT_OUTPUT)
                func_add_out(f, s->outs[i].name, OUT_OUTPUT, s->outs[i].value);
    } else {
        if (s->nloss) func_add_out(f, "loss", OUT_LOSS, s->loss_total);
        for (int i = 0; i < s->nouts; i++)
            if (s->outs[i].role == OUT_METRIC) {
                func_add_out(f, s->outs[i].name, OUT_METRIC, s->outs[i].value);
                /* the label a driver metric's predictions go with, for metric_info (needed only
                 * when the model has several labels; otherwise it is the only one) */
                int nlabels = 0;
                for (int j = 0; j < s->nargs; j++)
                    nlabels += s->args[j].role == ARG_LABEL;
                if (s->outs[i].label && nlabels > 1)
                    f->nodes[s->outs[i].value].name = s->outs[i].label;
            }
    }
    if (pass == PASS_CHECK) {
        int ninputs = 0, noutputs = 0; /* statements, so that a failed one does not cascade */
        for (int i = 0; i < b->nstmts; i++) {
            ninputs += b->stmts[i]->kind == S_INPUT;
            noutputs += b->stmts[i]->kind == S_OUTPUT;
        }
        if (!ninputs)
            sema_error(s, b->name_loc,
                       "model '%s' has no inputs; declare one with 'input NAME: TYPE'", b->name);
        if (!noutputs)
            sema_error(s, b->name_loc,
                       "model '%s' has no outputs; declare one with 'output NAME = EXPR'", b->name);
    }
    func_compact(f);
    s->scope = NULL;
    return f;
}

/* Moves module tensor `id` to the end (the step counter, created on first use, goes after
 * the parameters so that their order is the source order), renumbering the references. */
static void move_tensor_last(Module *m, int id) {
    int last = m->ntensors - 1;
    if (id < 0 || id == last) return;
    ModTensor t = m->tensors[id];
    memmove(&m->tensors[id], &m->tensors[id + 1], (size_t)(last - id) * sizeof t);
    m->tensors[last] = t;
    for (int i = 0; i < m->nfuncs; i++)
        for (int j = 0; j < m->funcs[i]->nnodes; j++) {
            Node *n = &m->funcs[i]->nodes[j];
            if (n->op != OP_tensor && n->op != OP_store && n->op != OP_init_fill &&
                n->op != OP_rand_uniform)
                continue;
            if (n->attr.tensor == id)
                n->attr.tensor = last;
            else if (n->attr.tensor > id)
                n->attr.tensor--;
        }
}

static void push_func(Module *m, Func *f) {
    VEC_PUSH(m->arena, m->funcs, m->nfuncs, m->funcs_cap, f);
}

/* Lowers one model; returns NULL when it has errors (reported). */
static Module *lower_model(Sema *s, const Block *b, Module *m) {
    s->m = m;
    s->step_tensor = -1;
    int errors = s->d->errors;
    Func *lossf = run_pass(s, b, PASS_CHECK);
    bool has_loss = lossf->nouts > 0 && lossf->outs[0].role == OUT_LOSS;
    if (s->d->errors > errors) return NULL;
    push_func(m, run_pass(s, b, PASS_INFER));
    if (lossf->nouts) push_func(m, run_pass(s, b, PASS_EVALUATE)); /* a loss or metrics */
    if (has_loss) push_func(m, lossf);
    move_tensor_last(m, s->step_tensor);
    return m;
}

/* ---------------------------------------------------------------- defs: static checks */

/* Name resolution inside a def body, without evaluating: catches unknown names in defs that
 * are never called, and calls between defs (for recursion). */
typedef struct DefCheck {
    Sema *s;
    DefInfo *di;
    const char **names;
    int n, cap;
    bool ok;
} DefCheck;

static bool dc_known(DefCheck *dc, const char *name) {
    for (int i = 0; i < dc->n; i++)
        if (!strcmp(dc->names[i], name)) return true;
    return false;
}

static void dc_unknown(DefCheck *dc, const char *name, SrcLoc loc, bool callee) {
    Sema *s = dc->s;
    const Block *def = dc->di->block;
    for (int i = 0; i < def->nstmts; i++)
        if (def->stmts[i]->name && !strcmp(def->stmts[i]->name, name)) {
            sema_error(s, loc, "'%s' is used before its declaration", name);
            sema_note(s, def->stmts[i]->name_loc, "'%s' declared here", name);
            dc->ok = false;
            return;
        }
    int cap = dc->n + s->ndefs + builtin_count, n = 0;
    const char **cands = arena_alloc(s->a, (size_t)cap * sizeof *cands);
    for (int i = 0; i < dc->n; i++)
        cands[n++] = dc->names[i];
    for (int i = 0; i < s->ndefs; i++)
        cands[n++] = s->defs[i].block->name;
    for (int i = 0; i < builtin_count; i++)
        cands[n++] = builtins[i].name;
    const char *close = diag_closest(name, cands, n);
    const char *what = callee ? "unknown layer or function" : "unknown name";
    if (close)
        sema_error(s, loc, "%s '%s'; did you mean '%s'?", what, name, close);
    else
        sema_error(s, loc, "%s '%s'", what, name);
    dc->ok = false;
}

static void dc_callee(DefCheck *dc, const char *name, SrcLoc loc) {
    if (dc_known(dc, name)) return; /* a parameter holding a function */
    if (find_def(dc->s, name) || builtin_find(name)) return;
    dc_unknown(dc, name, loc, true);
}

static void dc_expr(DefCheck *dc, const Expr *e) {
    if (!e) return;
    switch (e->kind) {
    case E_NAME:
        if (!strcmp(e->str, "batch") || dc_known(dc, e->str) || find_def(dc->s, e->str) ||
            builtin_find(e->str) ||
            strchr(e->str, '.')) /* parameter names are checked when the def is expanded */
            return;
        dc_unknown(dc, e->str, e->loc, false);
        break;
    case E_CALL:
        dc_callee(dc, e->str, e->callee_loc);
        for (int i = 0; i < e->nargs; i++)
            dc_expr(dc, e->args[i].value);
        break;
    case E_PIPE:
        dc_expr(dc, e->lhs);
        if (e->rhs && e->rhs->kind == E_NAME)
            dc_callee(dc, e->rhs->str, e->rhs->loc);
        else
            dc_expr(dc, e->rhs);
        break;
    case E_BINARY:
        dc_expr(dc, e->lhs);
        dc_expr(dc, e->rhs);
        break;
    case E_NEG:
        dc_expr(dc, e->lhs);
        break;
    case E_INDEX:
    case E_LIST:
    case E_TUPLE:
        dc_expr(dc, e->lhs);
        for (int i = 0; i < e->nitems; i++)
            dc_expr(dc, e->items[i]);
        break;
    case E_SLICE:
        for (int i = 0; i < 3; i++)
            dc_expr(dc, e->slice[i]);
        break;
    default:
        break;
    }
}

/* The def call graph: an edge per call of a def by name in a def body (statements and
 * parameter defaults), and whether the body declares parameters itself. */
static void collect_calls(Sema *s, DefInfo *di, const Expr *e) {
    if (!e) return;
    const char *callee = e->kind == E_CALL                                       ? e->str
                         : e->kind == E_PIPE && e->rhs && e->rhs->kind == E_NAME ? e->rhs->str
                                                                                 : NULL;
    if (callee) {
        DefInfo *target = find_def(s, callee);
        const Builtin *bi = builtin_find(callee);
        if (target) {
            DefCall call = {.callee = (int)(target - s->defs), .loc = e->loc};
            VEC_PUSH(s->a, di->calls, di->ncalls, di->calls_cap, call);
        } else if (bi && bi->kind == BK_PARAMS) {
            di->direct_layers = true;
        }
    }
    switch (e->kind) {
    case E_CALL:
        for (int i = 0; i < e->nargs; i++)
            collect_calls(s, di, e->args[i].value);
        break;
    case E_PIPE:
    case E_BINARY:
        collect_calls(s, di, e->lhs);
        if (e->rhs && e->rhs->kind != E_NAME) collect_calls(s, di, e->rhs);
        break;
    case E_NEG:
        collect_calls(s, di, e->lhs);
        break;
    case E_INDEX:
    case E_LIST:
    case E_TUPLE:
        collect_calls(s, di, e->lhs);
        for (int i = 0; i < e->nitems; i++)
            collect_calls(s, di, e->items[i]);
        break;
    case E_SLICE:
        for (int i = 0; i < 3; i++)
            collect_calls(s, di, e->slice[i]);
        break;
    default:
        break;
    }
}

/* Strongly connected components of the call graph (Tarjan's algorithm with an explicit
 * stack, so long def chains need no deep recursion). A def is recursive when its component
 * has several defs or it calls itself; the first call into its own component is reported.
 * Components come out callees first, so has_layers propagates in the same sweep. */
static void analyze_def_graph(Sema *s) {
    int n = s->ndefs;
    if (!n) return;
    int *index = arena_alloc(s->a, (size_t)n * sizeof *index),
        *low = arena_alloc(s->a, (size_t)n * sizeof *low);
    int *comp = arena_alloc(s->a, (size_t)n * sizeof *comp),
        *stack = arena_alloc(s->a, (size_t)n * sizeof *stack);
    int *frame = arena_alloc(s->a, (size_t)n * sizeof *frame),
        *edge = arena_alloc(s->a, (size_t)n * sizeof *edge);
    bool *on_stack = arena_alloc(s->a, (size_t)n);
    int counter = 0, sp = 0, ncomp = 0;
    for (int v = 0; v < n; v++)
        index[v] = -1;
    for (int root = 0; root < n; root++) {
        if (index[root] >= 0) continue;
        int depth = 0;
        frame[depth] = root;
        edge[depth] = 0;
        index[root] = low[root] = counter++;
        stack[sp++] = root;
        on_stack[root] = true;
        while (depth >= 0) {
            int v = frame[depth];
            DefInfo *dv = &s->defs[v];
            if (edge[depth] < dv->ncalls) {
                int w = dv->calls[edge[depth]++].callee;
                if (index[w] < 0) {
                    index[w] = low[w] = counter++;
                    stack[sp++] = w;
                    on_stack[w] = true;
                    frame[++depth] = w;
                    edge[depth] = 0;
                } else if (on_stack[w] && index[w] < low[v]) {
                    low[v] = index[w];
                }
                continue;
            }
            if (low[v] == index[v]) { /* v roots a component: pop it */
                int first = sp;
                do
                    first--;
                while (stack[first] != v);
                bool layers = false;
                for (int k = first; k < sp; k++) {
                    comp[stack[k]] = ncomp;
                    on_stack[stack[k]] = false;
                }
                for (int k = first; k < sp; k++) {
                    DefInfo *d = &s->defs[stack[k]];
                    layers |= d->direct_layers;
                    for (int e = 0; e < d->ncalls; e++)
                        layers |= s->defs[d->calls[e].callee].has_layers;
                }
                for (int k = first; k < sp; k++)
                    s->defs[stack[k]].has_layers = layers;
                sp = first;
                ncomp++;
            }
            depth--;
            if (depth >= 0 && low[v] < low[frame[depth]]) low[frame[depth]] = low[v];
        }
    }
    for (int v = 0; v < n; v++) {
        DefInfo *d = &s->defs[v];
        for (int e = 0; e < d->ncalls; e++) {
            int w = d->calls[e].callee;
            if (comp[w] != comp[v]) continue;
            const Block *def = d->block;
            if (w == v)
                sema_error(s, d->calls[e].loc, "def '%s' calls itself; recursion is not supported",
                           def->name);
            else
                sema_error(s, d->calls[e].loc,
                           "def '%s' calls itself through '%s'; recursion is not supported",
                           def->name, s->defs[w].block->name);
            sema_note(s, def->name_loc, "'%s' defined here", def->name);
            d->broken = true;
            break;
        }
    }
}

static void check_def(Sema *s, DefInfo *di) {
    const Block *def = di->block;
    DefCheck dc = {.s = s, .di = di, .ok = true};
    s->pass = PASS_CHECK;
    if (builtin_find(def->name)) {
        sema_error(s, def->name_loc, "def '%s' has the name of a builtin", def->name);
        dc.ok = false;
    }
    for (int i = 0; i < def->nparams; i++) {
        const DefParam *p = &def->params[i];
        if (!strcmp(p->name, "name") || !strcmp(p->name, "batch")) {
            sema_error(s, p->loc, "'%s' cannot be a def parameter: it is reserved", p->name);
            dc.ok = false;
        }
        for (int j = 0; j < i; j++)
            if (!strcmp(def->params[j].name, p->name)) {
                sema_error(s, p->loc, "duplicate parameter '%s'", p->name);
                sema_note(s, def->params[j].loc, "'%s' first defined here", p->name);
                dc.ok = false;
            }
        dc_expr(&dc, p->default_value);
        VEC_PUSH(s->a, dc.names, dc.n, dc.cap, p->name);
    }
    if (def->nparams > CALL_MAX_ARGS) {
        sema_error(s, def->name_loc, "a def takes at most %d parameters", CALL_MAX_ARGS);
        dc.ok = false;
    }
    const Stmt *ret = NULL;
    for (int i = 0; i < def->nstmts; i++) {
        const Stmt *st = def->stmts[i];
        if (ret && st->kind != S_ERROR) {
            sema_error(s, st->loc, "statement after 'return' in def '%s'", def->name);
            sema_note(s, ret->loc, "the def returns here");
            dc.ok = false;
            break;
        }
        switch (st->kind) {
        case S_ERROR:
            dc.ok = false;
            break;
        case S_LET:
        case S_CONST:
            dc_expr(&dc, st->value);
            VEC_PUSH(s->a, dc.names, dc.n, dc.cap, st->name);
            break;
        case S_PARAM:
        case S_STATE:
            for (int k = 0; k < st->type->ndims; k++)
                dc_expr(&dc, st->type->dims[k]);
            VEC_PUSH(s->a, dc.names, dc.n, dc.cap, st->name);
            break;
        case S_RETURN:
            dc_expr(&dc, st->value);
            ret = st;
            break;
        default: {
            static const char *const kw[] = {"",      "input",  "label", "param", "state",
                                             "const", "output", "loss",  "metric"};
            sema_error(s, st->loc, "'%s' is not allowed in a def; it belongs in a model",
                       st->kind < (int)(sizeof kw / sizeof kw[0]) ? kw[st->kind]
                                                                  : "this statement");
            dc.ok = false;
        }
        }
    }
    if (!ret) {
        sema_error(s, def->name_loc, "def '%s' has no 'return' statement", def->name);
        dc.ok = false;
    }
    for (int i = 0; i < def->nstmts; i++) {
        const Stmt *st = def->stmts[i];
        if (st->kind == S_PARAM || st->kind == S_STATE) di->direct_layers = true;
        collect_calls(s, di, st->value);
    }
    for (int i = 0; i < def->nparams; i++)
        collect_calls(s, di, def->params[i].default_value);
    flush_trace(s);
    di->broken = !dc.ok;
}

/* ---------------------------------------------------------------- metric_info */

bool public_metric(const Func *f, int out) {
    return out >= 0 && out < f->nouts && f->outs[out].role == OUT_METRIC &&
           f->nodes[f->outs[out].value].shape.rank == 0;
}

int public_metric_count(const Func *f) {
    int k = 0;
    for (int o = 0; o < f->nouts; o++) k += public_metric(f, o);
    return k;
}

bool metric_info(const Func *f, int out, MetricInfo *mi) {
    static const char *const kinds[] = {"precision", "recall", "f1", "confusion", "auc"};
    if (out < 0 || out >= f->nouts || f->outs[out].role != OUT_METRIC) return false;
    const Node *n = &f->nodes[f->outs[out].value];
    if (n->shape.rank == 0) return false;
    memset(mi, 0, sizeof *mi);
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        size_t len = strlen(kinds[k]);
        const char *name = f->outs[out].name;
        if (!strncmp(name, kinds[k], len) && (name[len] == 0 || name[len] == '_'))
            mi->kind = kinds[k];
    }
    if (!mi->kind) return false;
    mi->label_arg = -1;
    for (int i = 0; i < f->nargs; i++)
        if (f->args[i].role == ARG_LABEL &&
            (mi->label_arg < 0 || (n->name && !strcmp(f->args[i].name, n->name))))
            mi->label_arg = i;
    /* predictions come from argmax(logits) (classes = its input's last axis) or from a
     * single-logit comparison (2 classes) */
    mi->classes = 2;
    if (n->op == OP_argmax) {
        const Node *logits = &f->nodes[n->in[0]];
        mi->classes = logits->shape.dim[logits->shape.rank - 1];
    }
    return true;
}

/* ---------------------------------------------------------------- the program */

int lower_program(Arena *a, const Program *p, Diag *d, Module ***out) {
    Sema sema = {.a = a, .d = d, .prefix = "", .step_tensor = -1};
    Sema *s = &sema;
    *out = NULL;
    int errors = d->errors;

    /* defs */
    s->defs = arena_alloc(a, (size_t)(p->nblocks + 1) * sizeof *s->defs);
    for (s->def_table_cap = 16; s->def_table_cap < 2 * p->nblocks; s->def_table_cap *= 2) {
    }
    s->def_table = arena_alloc(a, (size_t)s->def_table_cap * sizeof *s->def_table);
    for (int i = 0; i < p->nblocks; i++) {
        const Block *b = p->blocks[i];
        if (b->kind != B_DEF || !b->name) continue;
        DefInfo *prev = find_def(s, b->name);
        if (prev) {
            sema_error(s, b->name_loc, "duplicate def '%s'", b->name);
            sema_note(s, prev->block->name_loc, "'%s' first defined here", b->name);
            continue;
        }
        add_def(s, b);
    }
    for (int i = 0; i < s->ndefs; i++)
        check_def(s, &s->defs[i]);
    analyze_def_graph(s);

    /* models */
    Module **mods = arena_alloc(a, (size_t)(p->nblocks + 1) * sizeof *mods);
    bool *ok = arena_alloc(a, (size_t)(p->nblocks + 1) * sizeof *ok);
    int nmods = 0;
    for (int i = 0; i < p->nblocks; i++) {
        const Block *b = p->blocks[i];
        if (b->kind != B_MODEL || !b->name) continue;
        bool dup = false;
        for (int j = 0; j < nmods && !dup; j++)
            if (!strcmp(mods[j]->name, b->name)) {
                s->pass = PASS_CHECK;
                sema_error(s, b->name_loc, "duplicate model '%s'", b->name);
                sema_note(s, mods[j]->loc, "'%s' first defined here", b->name);
                dup = true;
            }
        if (find_def(s, b->name)) {
            s->pass = PASS_CHECK;
            sema_error(s, b->name_loc, "model '%s' has the name of a def", b->name);
            sema_note(s, find_def(s, b->name)->block->name_loc, "the def is here");
        }
        if (dup) continue;
        Module *m = module_new(a, b->name);
        m->loc = b->name_loc;
        train_config_defaults(&m->train);
        ok[nmods] = lower_model(s, b, m) != NULL;
        mods[nmods++] = m;
    }

    /* train blocks */
    s->pass = PASS_CHECK;
    s->m = NULL;
    Scope empty = {0};
    s->scope = &empty;
    for (int i = 0; i < p->nblocks; i++) {
        const Block *b = p->blocks[i];
        if (b->kind != B_TRAIN || !b->name) continue;
        Module *m = NULL;
        for (int j = 0; j < nmods; j++)
            if (!strcmp(mods[j]->name, b->name)) m = mods[j];
        if (!m) {
            const char **cands = arena_alloc(a, (size_t)(nmods + 1) * sizeof *cands);
            for (int j = 0; j < nmods; j++)
                cands[j] = mods[j]->name;
            const char *close = diag_closest(b->name, cands, nmods);
            if (close)
                sema_error(s, b->name_loc, "train block for unknown model '%s'; did you mean '%s'?",
                           b->name, close);
            else
                sema_error(s, b->name_loc, "train block for unknown model '%s'", b->name);
        }
        if (m && m->train.present) {
            sema_error(s, b->name_loc, "duplicate train block for model '%s'", b->name);
            sema_note(s, m->train.loc, "the first train block is here");
            continue;
        }
        Module scratch = {.arena = a, .name = b->name};
        train_config_defaults(&scratch.train);
        Module *target = m ? m : &scratch;
        train_block(s, b, target);
        if (m) {
            bool has_loss = module_find_func(m, "loss") != NULL;
            bool model_ok = true;
            for (int j = 0; j < nmods; j++)
                if (mods[j] == m) model_ok = ok[j];
            if (model_ok && !has_loss) {
                sema_error(s, b->name_loc, "model '%s' has no 'loss' statement to train", b->name);
                sema_note(s, m->loc, "'%s' defined here", b->name);
            }
        }
    }
    s->scope = NULL;
    flush_trace(s);
    if (d->errors > errors) return 0;
    *out = mods;
    return nmods;
}
