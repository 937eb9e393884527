/* bnfold.c — batchnorm folding: per-channel affine chains after a conv2d or a dense layer
 * become the layer's own weights and bias.
 *
 * In inference mode, batchnorm is an affine map per channel whose coefficients depend only
 * on module tensors (lower.c):  y = (v - running_mean) / sqrt(running_var + eps) * w + b.
 * Following a layer v = conv2d(x, W) + c or v = x @ W + c, it folds into the layer:
 *
 *   y = v * A + B per channel  =>  y = conv2d(x, W * A[o], c * A + B)   (O axis of W)
 *                                  y = x @ (W * A[o]) + (c * A + B)      (output columns)
 *
 * A and B are built from the chain's own operands, on [C]-sized tensors (A starts at 1, B
 * at 0; v + c: B += c; v - c: B -= c; v * c: A *= c, B *= c; v / c: A /= c, B /= c, with A
 * kept as one quotient of products), so the per-element work over the activations goes:
 * four passes over [batch, C, H, W] (sub, div, mul, add) for one scaling of W.
 *
 * What counts as a chain: starting at the layer, each value has exactly one user, which is
 * add/sub/mul/div of it and a per-channel operand: a splat constant, or the broadcast of a
 * value whose only non-1 axis is the layer's channel axis (1 for conv2d, the last for
 * matmul) and that depends on nothing but module tensors and constants (no input, no batch
 * size, no randomness). Training-mode batchnorm uses batch statistics, which depend on the
 * input, so only inference-mode batchnorm ever matches; the pass runs on infer and evaluate
 * only, so that training keeps its numbers bit for bit (bias adds would be reassociated).
 * Layernorm normalizes per sample, not per channel, and never matches.
 *
 * Numerics: exact in real arithmetic, not in floating point: W * A is rounded before the
 * convolution instead of after it. The differential test bounds the difference (f64: 1e-12,
 * f32: 1e-5 relative). That is why -O1 (bit-exact passes only) leaves batchnorm alone.
 *
 * The scaled weights and the bias depend on the weights only: at -O2, prepare_build
 * (prepare.c) moves them into derived tensors that the generated `prepare` computes once
 * after the weights change (init, a train step, a checkpoint load), so infer and evaluate
 * pay nothing for them. Every chain is therefore folded, whatever the layer's size: in
 * fashion_cnn both blocks (800 and 51,200 weights) fold. The folded values are named after
 * the layer's weight ("b1.conv.weight", "b1.conv.bias"), which names their derived tensors.
 * An object built with --embed-weights gets them computed at compile time.
 */
#include "nnc.h"

#include <stdlib.h>
#include <string.h>

typedef struct Step {
    Op op;      /* add, sub, mul, div */
    Ref c;      /* the per-channel operand (old ref): a splat, or the broadcast's input */
} Step;

enum { MAX_STEPS = 16 };

typedef struct Chain {
    Ref producer;  /* conv2d or matmul (old ref) */
    int nsteps;
    Step step[MAX_STEPS];
} Chain;

typedef struct Folder {
    Func *f;          /* before the rewrite: the old nodes */
    int *uses;        /* uses of each node, outputs included */
    Ref *user;        /* the last node reading each node */
    bool *weight_only;
} Folder;

static bool is_float(DType dt) { return dt == DT_F32 || dt == DT_F64; }

/* The axis of the layer's output channels, or -1 when n is not a layer this pass folds. */
static int channel_axis(const Func *f, const Node *n) {
    if (!is_float(n->dtype)) return -1;
    if (n->op == OP_conv2d && n->shape.rank == 4 && (n->nin == 2 || n->nin == 3)) return 1;
    const Shape *w = n->op == OP_matmul ? &f->nodes[n->in[1]].shape : NULL;
    if (w && w->rank == 2 && !shape_has_batch(w)) return n->shape.rank - 1;
    return -1;
}

/* r broadcasts along every axis of `like` but `axis` (right-aligned), where it is 1 or the
 * channel count; no batch axis. */
static bool per_channel_shape(const Shape *r, const Shape *like, int axis) {
    if (r->rank > like->rank || r->batch_mask) return false;
    for (int i = 0; i < r->rank; i++) {
        int a = i + like->rank - r->rank;
        if (r->dim[i] != 1 && (a != axis || r->dim[i] != like->dim[axis])) return false;
    }
    return true;
}

/* Whether node `u` is an affine step on v (old refs); fills the step. */
static bool affine_step(const Folder *fo, Ref v, Ref u, int axis, Step *st) {
    const Func *f = fo->f;
    const Node *n = &f->nodes[u];
    if (n->op != OP_add && n->op != OP_sub && n->op != OP_mul && n->op != OP_div) return false;
    int k; /* the operand that is not v */
    if (n->in[0] == v && n->in[1] != v) k = 1;
    else if (n->in[1] == v && n->in[0] != v && (n->op == OP_add || n->op == OP_mul)) k = 0;
    else return false;
    Ref o = n->in[k];
    const Node *on = &f->nodes[o];
    double value;
    if (splat_const(f, o, &value)) {
        st->c = o;
    } else if (on->op == OP_broadcast && fo->weight_only[on->in[0]] &&
               per_channel_shape(&f->nodes[on->in[0]].shape, &n->shape, axis)) {
        st->c = on->in[0];
    } else {
        return false;
    }
    st->op = n->op;
    return f->nodes[st->c].dtype == n->dtype;
}

/* The chain that starts at layer p and ends at *last; false when there is nothing to fold. */
static bool find_chain(const Folder *fo, Ref p, Chain *ch, Ref *last) {
    const Func *f = fo->f;
    int axis = channel_axis(f, &f->nodes[p]);
    if (axis < 0) return false;
    ch->producer = p;
    ch->nsteps = 0;
    Ref v = p;
    bool shifts = false;
    while (ch->nsteps < MAX_STEPS && fo->uses[v] == 1 && fo->user[v] != REF_NONE) {
        Step st;
        if (!affine_step(fo, v, fo->user[v], axis, &st)) break;
        ch->step[ch->nsteps++] = st;
        shifts |= st.op == OP_add || st.op == OP_sub;
        v = fo->user[v];
    }
    *last = v;
    /* Worth it whenever a step goes: the scaled weights and bias are weight-only, so
     * prepare_build computes them once per weight change, not per call (a dense layer keeps
     * one add for its bias, so a lone bias add is left as it is). */
    int kept = f->nodes[p].op == OP_matmul && shifts;
    return ch->nsteps - kept > 0;
}

/* c (a new ref: splat or per-channel) as a [C] vector. */
static Ref as_vector(Func *f, Ref c, int64_t channels) {
    Shape v = shape_make(1, &channels, 0);
    const Node *n = ir_at(f, c);
    double value;
    if (splat_const(f, c, &value)) return ir_const(f, n->dtype, v, value);
    if (shape_numel(&n->shape, 1) == 1) {
        if (n->shape.rank) c = ir_reshape(f, c, shape_scalar());
        return ir_broadcast(f, c, v);
    }
    return ir_reshape(f, c, v);
}

/* v scaled along `axis` by the [C] vector a: v * a reshaped to 1 everywhere but axis. */
static Ref scale_along(Func *f, Ref v, Ref a, int axis) {
    Shape s = ir_at(f, v)->shape;
    for (int i = 0; i < s.rank; i++)
        if (i != axis) s.dim[i] = 1;
    s.batch_mask = 0;
    return ir_binary(f, OP_mul, v, ir_reshape(f, a, s));
}

/* The name of a folded layer: its weight's prefix ("b1.conv" for tensor b1.conv.weight),
 * else the layer's own name (NULL when it has none). */
static const char *layer_name(Func *f, const Node *layer) {
    const Node *w = &f->nodes[layer->in[1]];
    if (w->op == OP_tensor) {
        const char *t = f->mod->tensors[w->attr.tensor].name;
        size_t len = strlen(t);
        if (len > 7 && !strcmp(t + len - 7, ".weight")) return arena_printf(f->mod->arena, "%.*s", (int)(len - 7), t);
    }
    return layer->name;
}

/* Names a new value of the folded layer ("b1.conv" + ".weight"), for the IR dump and the
 * derived tensor prepare_build makes of it; a value with a name keeps it. */
static void name_part(Func *f, Ref r, const char *layer, const char *part) {
    if (r == REF_NONE || !layer || f->nodes[r].name) return;
    f->nodes[r].name = arena_printf(f->mod->arena, "%s.%s", layer, part);
}

/* Builds the folded layer in place of the chain's last node; returns its new ref. */
static Ref build_folded(Rewrite *rw, const Chain *ch) {
    Func *f = rw->f;
    const Node *p = &f->nodes[rw->map[ch->producer]];
    Node layer = *p;
    int axis = channel_axis(f, &layer);
    int64_t channels = layer.shape.dim[axis];
    /* A = num / den (one rounding for batchnorm's weight / sqrt(var + eps)); B in the
     * chain's order. REF_NONE: 1 for num and den, 0 for b. */
    Ref num = REF_NONE, den = REF_NONE, b = REF_NONE;
    for (int i = 0; i < ch->nsteps; i++) {
        Op op = ch->step[i].op;
        Ref c = as_vector(f, rw->map[ch->step[i].c], channels);
        if (op == OP_add) b = b == REF_NONE ? c : ir_binary(f, OP_add, b, c);
        if (op == OP_sub) b = b == REF_NONE ? ir_unary(f, OP_neg, c) : ir_binary(f, OP_sub, b, c);
        if (op == OP_mul) num = num == REF_NONE ? c : ir_binary(f, OP_mul, num, c);
        if (op == OP_div) den = den == REF_NONE ? c : ir_binary(f, OP_mul, den, c);
        if ((op == OP_mul || op == OP_div) && b != REF_NONE) b = ir_binary(f, op, b, c);
    }
    Ref a = num;
    if (den != REF_NONE) {
        if (num == REF_NONE) num = ir_const(f, layer.dtype, ir_at(f, den)->shape, 1);
        a = ir_binary(f, OP_div, num, den);
    }
    Ref x = layer.in[0], w = layer.in[1];
    const char *name = layer_name(f, &layer);
    if (layer.op == OP_conv2d) {
        Ref bias = layer.nin == 3 ? layer.in[2] : REF_NONE;
        if (a != REF_NONE) {
            w = scale_along(f, w, a, 0);
            if (bias != REF_NONE) bias = ir_binary(f, OP_mul, bias, a);
        }
        if (b != REF_NONE) bias = bias == REF_NONE ? b : ir_binary(f, OP_add, bias, b);
        name_part(f, w, name, "weight");
        name_part(f, bias, name, "bias");
        Ref in[3] = {x, w, bias};
        int nin = bias == REF_NONE ? 2 : 3;
        return ir_node(f, OP_conv2d, layer.dtype, layer.shape, nin, in, &layer.attr);
    }
    /* matmul: W is [O, K] with trans_b, else [K, O] */
    if (a != REF_NONE) w = scale_along(f, w, a, layer.attr.trans_b ? 0 : 1);
    name_part(f, w, name, "weight");
    name_part(f, b, name, "bias");
    Ref in[2] = {x, w};
    Ref y = ir_node(f, OP_matmul, layer.dtype, layer.shape, 2, in, &layer.attr);
    return b == REF_NONE ? y : ir_binary(f, OP_add, y, b);
}

/* require: topological order.
 * Runs on the inference functions (infer, evaluate) only: training functions keep their
 * numbers bit for bit (their batchnorm uses batch statistics anyway, but bias adds would be
 * reassociated). Leaves the old layer and chain for dce. */
int fold_batchnorm(Func *f) {
    if (strcmp(f->name, "infer") && strcmp(f->name, "evaluate")) return 0;
    int n = f->nnodes;
    Folder fo = {.f = f,
                 .uses = calloc((size_t)n + 1, sizeof *fo.uses),
                 .user = malloc(((size_t)n + 1) * sizeof *fo.user),
                 .weight_only = calloc((size_t)n + 1, sizeof *fo.weight_only)};
    Chain *chains = malloc(((size_t)n + 1) * sizeof *chains);
    bool *ends = calloc((size_t)n + 1, sizeof *ends);
    if (!fo.uses || !fo.user || !fo.weight_only || !chains || !ends) {
        fprintf(stderr, "nnc: out of memory\n");
        abort();
    }
    for (int i = 0; i < n; i++) {
        const Node *nd = &f->nodes[i];
        fo.user[i] = REF_NONE;
        for (int j = 0; j < nd->nin; j++) {
            fo.uses[nd->in[j]]++;
            fo.user[nd->in[j]] = i;
        }
        bool wo = nd->op == OP_tensor || nd->op == OP_const ||
                  (!(op_info[nd->op].flags & (OPF_LEAF | OPF_EFFECT)) && nd->nin > 0);
        for (int j = 0; j < nd->nin && wo; j++) wo = fo.weight_only[nd->in[j]];
        fo.weight_only[i] = wo;
    }
    for (int i = 0; i < f->nouts; i++) {
        fo.uses[f->outs[i].value]++;
        fo.user[f->outs[i].value] = REF_NONE;
    }
    int found = 0;
    for (int i = 0; i < n; i++) {
        Ref last;
        Chain ch;
        if (find_chain(&fo, i, &ch, &last)) {
            ends[last] = true;
            chains[last] = ch; /* indexed by the chain's last node */
            found++;
        }
    }
    int changes = 0;
    if (found) {
        Rewrite rw;
        rewrite_begin(&rw, f);
        for (int i = 0; i < rw.nold; i++) {
            Node nd = rewrite_node(&rw, i);
            if (ends[i]) rewrite_forward(&rw, i, &nd, build_folded(&rw, &chains[i]));
            else rewrite_keep(&rw, i, &nd);
        }
        changes = rewrite_end(&rw);
    }
    free(fo.uses);
    free(fo.user);
    free(fo.weight_only);
    free(chains);
    free(ends);
    return changes;
}
