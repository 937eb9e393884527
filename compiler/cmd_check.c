/* cmd_check.c — the front-end commands: `nnc check`, `nnc dump`, `nnc summary`.
 *
 * All three load the file through driver_load (parse, check, lower; grad and train_step only
 * when `dump --fn=grad|train_step` asks for them) and exit 0 on success, 1 on errors in the
 * input, 2 on usage errors (unknown options get a did-you-mean). docs/cli.md lists them.
 */
#include "nnc.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- options */

typedef struct OptSpec {
    const char *name; /* "--model" */
    bool takes_value; /* --model NAME or --model=NAME */
} OptSpec;

typedef struct Options {
    const char *file;
    const char *values[16]; /* by OptSpec index; "" for flags that were given */
} Options;

static int usage_error(const char *cmd, const char *fmt, const char *arg, const char *hint) {
    fprintf(stderr, "nnc %s: error: ", cmd);
    fprintf(stderr, fmt, arg, hint);
    fprintf(stderr, "\nRun 'nnc %s --help' for usage.\n", cmd);
    return 2;
}

/* Parses argv against specs; returns -1 when fine, 0 after printing help, 2 on usage errors. */
static int parse_options(const char *cmd, const char *help, const OptSpec *specs, int nspecs,
                         int argc, char **argv, Options *o) {
    memset(o, 0, sizeof *o);
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(help, stdout);
            return 0;
        }
        if (a[0] != '-' || !a[1]) {
            if (o->file) return usage_error(cmd, "more than one input file ('%s')%s", a, "");
            o->file = a;
            continue;
        }
        const char *eq = strchr(a, '=');
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        int k;
        for (k = 0; k < nspecs; k++)
            if (strlen(specs[k].name) == len && !strncmp(a, specs[k].name, len)) break;
        if (k == nspecs) {
            const char *names[16];
            char given[128];
            snprintf(given, sizeof given, "%.*s", (int)(len < 100 ? len : 100), a);
            for (int j = 0; j < nspecs; j++)
                names[j] = specs[j].name;
            const char *close = diag_closest(given, names, nspecs);
            char hint[160] = "";
            if (close) snprintf(hint, sizeof hint, "; did you mean '%s'?", close);
            return usage_error(cmd, "unknown option '%s'%s", given, hint);
        }
        if (specs[k].takes_value) {
            if (eq)
                o->values[k] = eq + 1;
            else if (i + 1 < argc)
                o->values[k] = argv[++i];
            else
                return usage_error(cmd, "option '%s' needs a value%s", specs[k].name, "");
            if (!o->values[k][0])
                return usage_error(cmd, "option '%s' needs a value%s", specs[k].name, "");
        } else {
            if (eq) return usage_error(cmd, "option '%s' takes no value%s", specs[k].name, "");
            o->values[k] = "";
        }
    }
    if (!o->file) return usage_error(cmd, "no input file%s%s", "", "");
    return -1;
}

/* The models to work on: the one named by --model, or all of them. */
static int pick_models(DriverResult *r, const char *name, Module ***out) {
    if (!name) {
        *out = r->modules;
        return r->nmodules;
    }
    Module *m = driver_pick_model(r, name);
    if (!m) {
        const char **names = arena_alloc(r->arena, (size_t)(r->nmodules + 1) * sizeof *names);
        for (int i = 0; i < r->nmodules; i++)
            names[i] = r->modules[i]->name;
        const char *close = diag_closest(name, names, r->nmodules);
        if (close) fprintf(stderr, "nnc: note: did you mean '%s'?\n", close);
        return -1;
    }
    *out = arena_alloc(r->arena, sizeof **out);
    (*out)[0] = m;
    return 1;
}

/* ---------------------------------------------------------------- check */

static const char check_help[] =
    "usage: nnc check FILE.nn [--model NAME]\n"
    "\n"
    "Parses and checks FILE.nn, lowers every model to IR and verifies it; prints the\n"
    "diagnostics only. Exit status: 0 no errors, 1 errors in the input, 2 usage errors.\n"
    "\n"
    "  --model NAME   check that the file defines model NAME\n";

int cmd_check(int argc, char **argv) {
    static const OptSpec specs[] = {{"--model", true}};
    Options o;
    int rc = parse_options("check", check_help, specs, 1, argc, argv, &o);
    if (rc >= 0) return rc;
    DriverOptions dopts = {.verify = true};
    DriverResult r;
    rc = driver_load(o.file, &dopts, &r);
    if (rc == 0 && o.values[0]) {
        Module **mods;
        if (pick_models(&r, o.values[0], &mods) < 0) rc = 1;
    }
    driver_free(&r);
    return rc;
}

/* ---------------------------------------------------------------- dump */

static const char dump_help[] =
    "usage: nnc dump FILE.nn [--ir | --ast] [--fn=NAME] [--model NAME] [--dump-after=PASS] "
    "[-O0..3]\n"
    "\n"
    "Prints the IR of every model (module tensors, then each function), or the AST.\n"
    "\n"
    "  --ir              the IR (the default)\n"
    "  --ast             the syntax tree as parsed, before any check\n"
    "  --fn=NAME         one function: infer, evaluate, loss, init; grad and train_step\n"
    "                    build the training functions first\n"
    "  --model NAME      one model of several\n"
    "  --dump-after=PASS the IR right after a stage of the pipeline: lower (before any pass),\n"
    "                    bnfold, fold, simplify, cse, dce (docs/passes.md)\n"
    "  -O0 .. -O3        run the pass pipeline of that level first (default: none, the IR\n"
    "                    as lowered; -O2 with --dump-after)\n";

int cmd_dump(int argc, char **argv) {
    static const OptSpec specs[] = {{"--ir", false},   {"--ast", false},       {"--fn", true},
                                    {"--model", true}, {"--dump-after", true}, {"-O0", false},
                                    {"-O1", false},    {"-O2", false},         {"-O3", false}};
    enum { IR, AST, FN, MODEL, AFTER };
    Options o;
    int rc = parse_options("dump", dump_help, specs, 9, argc, argv, &o);
    if (rc >= 0) return rc;
    if (o.values[IR] && o.values[AST])
        return usage_error("dump", "--ir and --ast exclude each other%s%s", "", "");
    const char *after = o.values[AFTER]; /* passes_run validates the name (exit 2) */
    if (o.values[AST]) {
        Source *src = source_read(o.file);
        if (!src) return 1;
        Arena arena = {0};
        Diag d;
        diag_init(&d, src, stderr);
        Program *p = parse_program(&arena, src, &d);
        if (!d.errors) ast_print(stdout, p);
        rc = d.errors ? 1 : 0;
        arena_free(&arena);
        source_free(src);
        return rc;
    }
    const char *fn = o.values[FN];
    DriverOptions dopts = {.verify = true,
                           .train_functions =
                               fn && (!strcmp(fn, "grad") || !strcmp(fn, "train_step"))};
    /* the IR as lowered unless a level or a pass is asked for (then -O2 by default) */
    dopts.set_opt = true;
    dopts.opt_level = after ? 2 : 0;
    for (int level = 0; level <= 3; level++)
        if (o.values[5 + level]) dopts.opt_level = level;
    /* --dump-after prints the whole module from inside the pipeline; with --fn, capture it
     * and keep that function's text */
    char *captured = NULL;
    size_t captured_len = 0;
    if (after) {
        dopts.dump_after = after;
        dopts.dump = fn ? open_memstream(&captured, &captured_len) : stdout;
    }
    DriverResult r;
    rc = driver_load(o.file, &dopts, &r);
    if (after) {
        if (fn) {
            fclose(dopts.dump);
            char head[256];
            snprintf(head, sizeof head, "func %s(", fn);
            const char *start = captured ? strstr(captured, head) : NULL;
            const char *end = start ? strstr(start, "\n}\n") : NULL;
            if (start && end)
                fwrite(start, 1, (size_t)(end - start) + 3, stdout);
            else if (!rc) {
                fprintf(stderr, "nnc dump: error: no function '%s' after '%s'\n", fn, after);
                rc = 2;
            }
            free(captured);
        }
        driver_free(&r);
        return rc;
    }
    Module **mods = NULL;
    int n = rc ? 0 : pick_models(&r, o.values[MODEL], &mods);
    if (n < 0) rc = 1;
    for (int i = 0; i < n && !rc; i++) {
        if (fn && !module_find_func(mods[i], fn)) {
            const char **names =
                arena_alloc(r.arena, (size_t)(mods[i]->nfuncs + 2) * sizeof *names);
            char list[256] = "";
            for (int j = 0; j < mods[i]->nfuncs; j++) {
                names[j] = mods[i]->funcs[j]->name;
                snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", j ? ", " : "",
                         names[j]);
            }
            const char *close = diag_closest(fn, names, mods[i]->nfuncs);
            fprintf(stderr, "nnc dump: error: model '%s' has no function '%s'%s%s%s (it has: %s)\n",
                    mods[i]->name, fn, close ? "; did you mean '" : "", close ? close : "",
                    close ? "'?" : "", list);
            rc = 2;
            break;
        }
        if (i) printf("\n");
        ir_print_module(stdout, mods[i], fn);
    }
    driver_free(&r);
    return rc;
}

/* ---------------------------------------------------------------- summary */

static const char summary_help[] =
    "usage: nnc summary FILE.nn [--model NAME] [-O0..3]\n"
    "\n"
    "Per layer: name, kind, output shape, parameters, multiply-accumulates and FLOPs per\n"
    "sample (inference forward pass; docs/layers.md gives the FLOP convention), then the\n"
    "totals and the bytes of persistent state. Then the work memory one call of each\n"
    "generated function needs at the maximum batch, before memory planning (every buffer\n"
    "its own bytes) and after (docs/passes.md), and WORK_BYTES, the largest.\n"
    "\n"
    "  --model NAME   one model of several\n"
    "  -O0 .. -O3     the pass pipeline the work memory is planned after (default -O2)\n";

/* 1234567 -> "1,234,567" */
static const char *thousands(char *buf, size_t len, int64_t v) {
    char digits[32];
    snprintf(digits, sizeof digits, "%" PRId64, v < 0 ? -v : v);
    size_t n = strlen(digits), o = 0;
    if (v < 0 && o + 1 < len) buf[o++] = '-';
    for (size_t i = 0; i < n && o + 2 < len; i++) {
        if (i && (n - i) % 3 == 0) buf[o++] = ',';
        buf[o++] = digits[i];
    }
    buf[o] = 0;
    return buf;
}

static void print_summary(const Module *m) {
    enum { NCOLS = 6 };
    static const char *const heads[NCOLS] = {"layer", "kind", "output", "params", "MACs", "FLOPs"};
    int width[NCOLS];
    for (int c = 0; c < NCOLS; c++)
        width[c] = (int)strlen(heads[c]);
    char buf[160];
    int64_t params = 0, macs = 0, flops = 0;
    for (int i = 0; i < m->nlayers; i++) {
        const LayerInfo *l = &m->layers[i];
        int w[NCOLS] = {(int)strlen(l->name),
                        (int)strlen(l->kind),
                        (int)strlen(shape_str(&l->out_shape, buf, sizeof buf)),
                        (int)strlen(thousands(buf, sizeof buf, l->params)),
                        (int)strlen(thousands(buf, sizeof buf, l->macs)),
                        (int)strlen(thousands(buf, sizeof buf, l->flops))};
        for (int c = 0; c < NCOLS; c++)
            if (w[c] > width[c]) width[c] = w[c];
        params += l->params;
        macs += l->macs;
        flops += l->flops;
    }
    char tp[32], tm[32], tf[32];
    thousands(tp, sizeof tp, params);
    thousands(tm, sizeof tm, macs);
    thousands(tf, sizeof tf, flops);
    if ((int)strlen(tp) > width[3]) width[3] = (int)strlen(tp);
    if ((int)strlen(tm) > width[4]) width[4] = (int)strlen(tm);
    if ((int)strlen(tf) > width[5]) width[5] = (int)strlen(tf);

    printf("model %s\n\n", m->name);
    printf("  %-*s  %-*s  %-*s  %*s  %*s  %*s\n", width[0], heads[0], width[1], heads[1], width[2],
           heads[2], width[3], heads[3], width[4], heads[4], width[5], heads[5]);
    for (int i = 0; i < m->nlayers; i++) {
        const LayerInfo *l = &m->layers[i];
        char p[32], a[32], f[32];
        printf("  %-*s  %-*s  %-*s  %*s  %*s  %*s\n", width[0], l->name, width[1], l->kind,
               width[2], shape_str(&l->out_shape, buf, sizeof buf), width[3],
               thousands(p, sizeof p, l->params), width[4], thousands(a, sizeof a, l->macs),
               width[5], thousands(f, sizeof f, l->flops));
    }
    printf("  %-*s  %-*s  %-*s  %*s  %*s  %*s\n\n", width[0], "total", width[1], "", width[2], "",
           width[3], tp, width[4], tm, width[5], tf);

    int64_t state_values = 0, param_bytes = 0, derived_bytes = 0;
    for (int i = 0; i < m->ntensors; i++) {
        const ModTensor *t = &m->tensors[i];
        if (t->kind == TK_STATE) state_values += shape_numel(&t->shape, 1);
        if (t->kind == TK_PARAM) param_bytes += t->bytes;
        if (t->kind == TK_DERIVED) derived_bytes += (t->bytes + 63) & ~(int64_t)63;
    }
    char sv[32], sb[32], pb[32];
    printf("parameters: %s (%s bytes)\n", tp, thousands(pb, sizeof pb, param_bytes));
    printf("state values (not trained): %s\n", thousands(sv, sizeof sv, state_values));
    printf("per sample: %s MACs, %s FLOPs\n", tm, tf);
    printf("state bytes: %s (params, states and counters, 64-byte aligned; training adds optimizer "
           "slots)\n",
           thousands(sb, sizeof sb, m->state_bytes));
    if (derived_bytes)
        printf("derived tensors: %s of these bytes (weight-only values of infer and evaluate, "
               "computed once per weight change)\n",
               thousands(sb, sizeof sb, derived_bytes));
}

/* The work memory of every function of m (built with its training functions, after the
 * passes of -O`level`): before planning, every buffer its own bytes; after, the plan. */
static void print_work(const Module *m, int level) {
    enum { NCOLS = 5 };
    static const char *const heads[NCOLS] = {"function", "buffers", "before", "after", "saved"};
    char cells[64][NCOLS][32];
    int width[NCOLS], rows = 0;
    for (int c = 0; c < NCOLS; c++) width[c] = (int)strlen(heads[c]);
    int64_t max_work = 0;
    const char *max_name = NULL;
    for (int i = 0; i < m->nfuncs && rows < 64; i++, rows++) {
        const Func *f = m->funcs[i];
        Plan p;
        plan_func(f, &p);
        int buffers = 0;
        for (Ref v = 0; v < f->nnodes; v++)
            buffers += (p.nodes[v].storage == ST_WORK) + (p.nodes[v].scratch_region >= 0);
        for (int o = 0; o < f->nouts; o++) buffers += p.discard_offset[o] >= 0;
        int64_t before = p.unplanned_bytes + (p.work_bytes - p.arena_bytes), after = p.work_bytes;
        snprintf(cells[rows][0], sizeof cells[0][0], "%s", f->name);
        snprintf(cells[rows][1], sizeof cells[0][1], "%d", buffers);
        thousands(cells[rows][2], sizeof cells[0][2], before);
        thousands(cells[rows][3], sizeof cells[0][3], after);
        if (before > 0)
            snprintf(cells[rows][4], sizeof cells[0][4], "%.1f%%", 100.0 * (double)(before - after) / (double)before);
        else
            snprintf(cells[rows][4], sizeof cells[0][4], "-");
        for (int c = 0; c < NCOLS; c++)
            if ((int)strlen(cells[rows][c]) > width[c]) width[c] = (int)strlen(cells[rows][c]);
        if (!max_name || after > max_work) max_work = after, max_name = f->name;
        plan_free(&p);
    }
    printf("\nwork bytes per call at batch %" PRId64 ", -O%d (before: every buffer its own memory; "
           "after: the memory planner)\n",
           m->max_batch, level);
    printf("  %-*s  %*s  %*s  %*s  %*s\n", width[0], heads[0], width[1], heads[1], width[2],
           heads[2], width[3], heads[3], width[4], heads[4]);
    for (int r = 0; r < rows; r++)
        printf("  %-*s  %*s  %*s  %*s  %*s\n", width[0], cells[r][0], width[1], cells[r][1],
               width[2], cells[r][2], width[3], cells[r][3], width[4], cells[r][4]);
    char mw[32];
    if (max_name)
        printf("work bytes: %s (the largest: %s)\n", thousands(mw, sizeof mw, max_work), max_name);
}

int cmd_summary(int argc, char **argv) {
    static const OptSpec specs[] = {{"--model", true}, {"-O0", false}, {"-O1", false},
                                    {"-O2", false},    {"-O3", false}};
    Options o;
    int rc = parse_options("summary", summary_help, specs, 5, argc, argv, &o);
    if (rc >= 0) return rc;
    int level = 2;
    for (int l = 0; l <= 3; l++)
        if (o.values[1 + l]) level = l;
    /* the layers and the state as declared; the work memory of the functions as compiled,
       training functions included (which add optimizer slots to the state) */
    DriverOptions dopts = {.verify = true};
    DriverOptions topts = {.verify = true, .train_functions = true, .set_opt = true, .opt_level = level};
    DriverResult r, t = {0};
    rc = driver_load(o.file, &dopts, &r);
    Module **mods = NULL;
    int n = rc ? 0 : pick_models(&r, o.values[0], &mods);
    if (n < 0) rc = 1;
    if (n > 0) rc = driver_load(o.file, &topts, &t);
    for (int i = 0; i < n && !rc; i++) {
        if (i) printf("\n");
        print_summary(mods[i]);
        for (int j = 0; j < t.nmodules; j++)
            if (!strcmp(t.modules[j]->name, mods[i]->name)) print_work(t.modules[j], level);
    }
    driver_free(&r);
    driver_free(&t);
    return rc;
}
