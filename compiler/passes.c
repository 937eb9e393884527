/* passes.c — the optimization pipeline: the plain list of pass calls per -O level, the
 * verifier between passes, --dump-after, and the rewriting helpers the passes share.
 *
 *   -O0  nothing
 *   -O1  fold, simplify, dce                       (one round; every rewrite bit-exact)
 *   -O2  bnfold, then fold, simplify, cse, dce     (the round repeated until no pass changes
 *   -O3  the same as -O2                            anything, at most MAX_ROUNDS rounds)
 *
 * Each pass runs on every function of the module before the next one starts, so that
 * `--dump-after=PASS` shows the whole module after PASS. docs/passes.md describes the passes.
 */
#include "nnc.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_ROUNDS = 4 };

/* ---------------------------------------------------------------- rewriting */

void rewrite_begin(Rewrite *rw, Func *f) {
    memset(rw, 0, sizeof *rw);
    rw->f = f;
    rw->nold = f->nnodes;
    size_t n = (size_t)f->nnodes + 1;
    rw->old = malloc(n * sizeof *rw->old);
    rw->map = malloc(n * sizeof *rw->map);
    rw->is_out = calloc(n, sizeof *rw->is_out);
    if (!rw->old || !rw->map || !rw->is_out) {
        fprintf(stderr, "nnc: out of memory\n");
        abort();
    }
    if (f->nnodes) memcpy(rw->old, f->nodes, (size_t)f->nnodes * sizeof *rw->old);
    for (int i = 0; i < f->nnodes; i++) rw->map[i] = REF_NONE;
    /* metric_info finds the label of a driver metric (f1, auc, ...) in the name of the
     * output's node: such a node is never renamed */
    for (int i = 0; i < f->nouts; i++)
        if (f->outs[i].role == OUT_METRIC) rw->is_out[f->outs[i].value] = true;
    f->nnodes = 0; /* new nodes reuse the storage; the old ones are read from rw->old */
}

Node rewrite_node(const Rewrite *rw, int i) {
    Node n = rw->old[i];
    for (int j = 0; j < n.nin; j++) {
        n.in[j] = rw->map[n.in[j]];
        assert(n.in[j] >= 0);
    }
    return n;
}

static Ref append(Func *f, const Node *n) {
    Ref r = ir_node(f, n->op, n->dtype, n->shape, n->nin, n->in, &n->attr);
    f->nodes[r].name = n->name;
    f->nodes[r].loc = n->loc;
    return r;
}

Ref rewrite_keep(Rewrite *rw, int i, const Node *n) { return rw->map[i] = append(rw->f, n); }

Ref rewrite_forward(Rewrite *rw, int i, const Node *n, Ref r) {
    Node *to = &rw->f->nodes[r];
    assert(to->dtype == n->dtype && shape_eq(&to->shape, &n->shape));
    if (n->name && to->name && strcmp(n->name, to->name) && rw->is_out[i])
        return rewrite_keep(rw, i, n);
    if (!to->name) to->name = n->name;
    rw->changes++;
    return rw->map[i] = r;
}

Ref rewrite_emit(Rewrite *rw, const Node *like, Op op, DType dt, Shape shape, int nin,
                 const Ref *in, const Attr *attr) {
    Node n = {.op = op, .dtype = dt, .shape = shape, .nin = nin};
    n.name = like->name;
    n.loc = like->loc;
    for (int j = 0; j < nin; j++) n.in[j] = in[j];
    if (attr) n.attr = *attr;
    return append(rw->f, &n);
}

int rewrite_end(Rewrite *rw) {
    Func *f = rw->f;
    for (int i = 0; i < f->nouts; i++) f->outs[i].value = rw->map[f->outs[i].value];
    free(rw->old);
    free(rw->map);
    free(rw->is_out);
    rw->old = NULL;
    rw->map = NULL;
    rw->is_out = NULL;
    return rw->changes;
}

bool splat_const(const Func *f, Ref r, double *v) {
    const Node *n = &f->nodes[r];
    if (n->op != OP_const || n->attr.data) return false;
    *v = n->attr.f[0];
    return true;
}

/* ---------------------------------------------------------------- the pipeline */

static const char *const stage_names[] = {"lower", "bnfold", "fold", "simplify", "cse", "dce"};
enum { NSTAGES = sizeof stage_names / sizeof stage_names[0] };

typedef struct Pipeline {
    Module *m;
    bool verify;             /* ir_verify after every pass (NNC_VERIFY=1) */
    const char *dump_after;  /* NULL, or a name of stage_names */
    FILE *dump;
    bool dumped;
} Pipeline;

/* Runs one pass over every function; returns the number of rewrites. */
static int run(Pipeline *p, const char *name, PassFn pass) {
    int changes = 0;
    for (int i = 0; i < p->m->nfuncs; i++) {
        Func *f = p->m->funcs[i];
        changes += pass(f);
        if (p->verify && ir_verify(f, stderr)) {
            fprintf(stderr, "nnc: internal error: function '%s' of model '%s' fails verification "
                            "after pass '%s'\n", f->name, p->m->name, name);
            abort();
        }
    }
    /* the first run of the pass is the one shown: later rounds only clean up */
    if (p->dump_after && !p->dumped && !strcmp(p->dump_after, name)) {
        ir_print_module(p->dump, p->m, NULL);
        p->dumped = true;
    }
    return changes;
}

int passes_run(Module *m, int opt_level, const char *dump_after, FILE *dump) {
    if (dump_after) {
        bool known = false;
        for (int i = 0; i < NSTAGES; i++) known |= !strcmp(dump_after, stage_names[i]);
        if (!known) {
            const char *close = diag_closest(dump_after, stage_names, NSTAGES);
            fprintf(stderr,
                    "nnc: error: unknown pass '%s'; %s%s%svalid: lower, bnfold, fold, simplify, "
                    "cse, dce\n",
                    dump_after, close ? "did you mean '" : "", close ? close : "",
                    close ? "'? " : "");
            return 2;
        }
    }
    const char *verify = getenv("NNC_VERIFY");
    Pipeline p = {.m = m,
                  .verify = verify && !strcmp(verify, "1"),
                  .dump_after = dump_after,
                  .dump = dump ? dump : stdout};
    if (dump_after && !strcmp(dump_after, "lower")) {
        ir_print_module(p.dump, m, NULL);
        p.dumped = true;
    }

    if (opt_level == 1) {
        run(&p, "fold", fold_constants);
        run(&p, "simplify", simplify);
        run(&p, "dce", dce);
    } else if (opt_level >= 2) {
        run(&p, "bnfold", fold_batchnorm);
        for (int round = 0; round < MAX_ROUNDS; round++) {
            int changes = run(&p, "fold", fold_constants);
            changes += run(&p, "simplify", simplify);
            changes += run(&p, "cse", cse);
            changes += run(&p, "dce", dce);
            if (!changes) break;
        }
    }

    if (dump_after && !p.dumped)
        fprintf(stderr, "nnc: warning: pass '%s' does not run at -O%d; nothing to show\n",
                dump_after, opt_level);
    return 0;
}
