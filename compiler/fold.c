/* fold.c — constant folding through the reference interpreter.
 *
 * A node whose inputs are all `const` is evaluated by interp.c and replaced by a `const`: a
 * splat (attr.f[0]) when every value is the same, else attr.data (module arena). The
 * interpreter runs in f32 mode, which rounds every f32 result to float as compiled code does,
 * so the constant is bit for bit what the unoptimized program computes at run time (for the
 * accumulating kernels, up to their order of accumulation). One source of truth: no second
 * implementation of the ops' semantics here.
 *
 * What is folded:
 * - any non-leaf, non-effect op whose inputs are constants and whose shape (and its inputs'
 *   shapes) has no batch axis, when the interpreter supports it (an op it does not know is
 *   left alone);
 * - elementwise ops whose inputs are all splats, whatever the shape (batch axes included):
 *   they are evaluated once on scalars;
 * - reshape, transpose, broadcast and slice of a splat, and concat of equal splats: a splat.
 * - a `const` with data whose values are all the same becomes a splat.
 * Never folded: leaves (input, tensor — parameters change at run time —, batch_size,
 * init_fill, rand_uniform) and stores.
 *
 * Limits: a result with data is kept only up to FOLD_MAX_DATA values (larger constants would
 * bloat the object file for no gain: computing them costs one pass over memory), and nothing
 * is evaluated whose inputs and output hold more than FOLD_MAX_EVAL values or, for matmul,
 * needs more than FOLD_MAX_MACS multiply-adds.
 */
#include "nnc.h"

#include <stdlib.h>
#include <string.h>

enum { FOLD_MAX_DATA = 1 << 16, FOLD_MAX_EVAL = 1 << 20 };
static const int64_t FOLD_MAX_MACS = INT64_C(1) << 26;

/* A scratch module with one function that holds the node being folded and its constant
 * inputs; the interpreter runs it at batch 1. */
typedef struct Folder {
    Arena arena;
    Module *m;
    Func *f;
    Interp in;
} Folder;

static void folder_init(Folder *fo) {
    memset(fo, 0, sizeof *fo);
    fo->m = module_new(&fo->arena, "fold");
    fo->f = module_add_func(fo->m, "fold");
    func_add_out(fo->f, "value", OUT_EXTRA, 0);
    interp_init(&fo->in, fo->m, /*f64=*/false);
}

static void folder_free(Folder *fo) {
    interp_free(&fo->in);
    arena_free(&fo->arena);
}

static bool is_const(const Func *f, Ref r) { return f->nodes[r].op == OP_const; }

/* Evaluates n (inputs: constants of f) into *out. With `scalars`, every input is a splat and
 * n is elementwise: the scratch nodes are rank 0 and *out is the one value. */
static bool evaluate(Folder *fo, const Func *f, const Node *n, bool scalars, ITensor *out) {
    Func *sf = fo->f;
    sf->nnodes = 0;
    Ref in[IR_MAX_INPUTS];
    for (int j = 0; j < n->nin; j++) {
        const Node *c = &f->nodes[n->in[j]];
        Shape cs = scalars ? shape_scalar() : c->shape;
        in[j] = ir_node(sf, OP_const, c->dtype, cs, 0, NULL, &c->attr);
    }
    Shape s = scalars ? shape_scalar() : n->shape;
    sf->outs[0].value = ir_node(sf, n->op, n->dtype, s, n->nin, in, &n->attr);
    char err[256];
    return interp_run(&fo->in, sf, 1, NULL, out, err, sizeof err) == 0;
}

static bool all_equal(const double *v, int64_t count) {
    for (int64_t i = 1; i < count; i++)
        if (memcmp(&v[i], &v[0], sizeof v[0])) return false;
    return true;
}

/* Whether evaluating n stays within the limits above. */
static bool affordable(const Func *f, const Node *n) {
    int64_t total = shape_numel(&n->shape, 1);
    for (int j = 0; j < n->nin; j++) total += shape_numel(&f->nodes[n->in[j]].shape, 1);
    if (total > FOLD_MAX_EVAL) return false;
    if (n->op == OP_matmul) {
        const Shape *a = &f->nodes[n->in[0]].shape;
        int64_t k = a->dim[n->attr.trans_a ? a->rank - 2 : a->rank - 1];
        if (shape_numel(&n->shape, 1) * k > FOLD_MAX_MACS) return false;
    }
    return true;
}

/* The folded value of n, or REF_NONE. */
static Ref fold_node(Rewrite *rw, Folder *fo, const Node *n) {
    const Func *f = rw->f;
    const OpInfo *info = &op_info[n->op];
    Attr splat = {0};

    /* a constant whose values are all equal */
    if (n->op == OP_const) {
        if (!n->attr.data || !all_equal(n->attr.data, shape_numel(&n->shape, 1))) return REF_NONE;
        splat.f[0] = shape_numel(&n->shape, 1) ? n->attr.data[0] : 0;
        return rewrite_emit(rw, n, OP_const, n->dtype, n->shape, 0, NULL, &splat);
    }
    if (info->flags & (OPF_LEAF | OPF_EFFECT) || n->nin == 0) return REF_NONE;
    for (int j = 0; j < n->nin; j++)
        if (!is_const(f, n->in[j])) return REF_NONE;

    bool splats = true;
    double v0 = 0;
    for (int j = 0; j < n->nin; j++) {
        double v;
        splats &= splat_const(f, n->in[j], &v);
        if (j == 0) v0 = v;
    }

    /* shape ops of splats */
    if (splats && (n->op == OP_reshape || n->op == OP_transpose || n->op == OP_broadcast ||
                   n->op == OP_slice)) {
        splat.f[0] = v0;
        return rewrite_emit(rw, n, OP_const, n->dtype, n->shape, 0, NULL, &splat);
    }
    if (splats && n->op == OP_concat) {
        bool same = true;
        for (int j = 1; j < n->nin; j++)
            same &= !memcmp(&f->nodes[n->in[j]].attr.f[0], &v0, sizeof v0) &&
                    f->nodes[n->in[j]].dtype == n->dtype;
        if (same) {
            splat.f[0] = v0;
            return rewrite_emit(rw, n, OP_const, n->dtype, n->shape, 0, NULL, &splat);
        }
    }

    /* elementwise ops of splats: one scalar evaluation, any shape */
    ITensor out;
    if (splats && info->flags & OPF_ELEM) {
        if (!evaluate(fo, f, n, true, &out)) return REF_NONE;
        splat.f[0] = out.data[0];
        itensor_free(&out);
        return rewrite_emit(rw, n, OP_const, n->dtype, n->shape, 0, NULL, &splat);
    }

    /* everything else without a batch axis */
    if (shape_has_batch(&n->shape)) return REF_NONE;
    for (int j = 0; j < n->nin; j++)
        if (shape_has_batch(&f->nodes[n->in[j]].shape)) return REF_NONE;
    if (!affordable(f, n) || !evaluate(fo, f, n, false, &out)) return REF_NONE;
    Ref r = REF_NONE;
    if (out.numel == 0 || all_equal(out.data, out.numel)) {
        splat.f[0] = out.numel ? out.data[0] : 0;
        r = rewrite_emit(rw, n, OP_const, n->dtype, n->shape, 0, NULL, &splat);
    } else if (out.numel <= FOLD_MAX_DATA) {
        double *data = arena_alloc(f->mod->arena, (size_t)out.numel * sizeof *data);
        memcpy(data, out.data, (size_t)out.numel * sizeof *data);
        Attr a = {.data = data};
        r = rewrite_emit(rw, n, OP_const, n->dtype, n->shape, 0, NULL, &a);
    }
    itensor_free(&out);
    return r;
}

/* require: topological order.
 * Inputs of folded nodes are left for dce. */
int fold_constants(Func *f) {
    Folder fo;
    folder_init(&fo);
    Rewrite rw;
    rewrite_begin(&rw, f);
    for (int i = 0; i < rw.nold; i++) {
        Node n = rewrite_node(&rw, i);
        Ref r = fold_node(&rw, &fo, &n);
        if (r == REF_NONE) rewrite_keep(&rw, i, &n);
        else rewrite_forward(&rw, i, &n, r);
    }
    folder_free(&fo);
    return rewrite_end(&rw);
}
