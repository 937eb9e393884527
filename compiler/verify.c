/* verify.c — structural checks of an IR function, run between passes in tests.
 *
 * Checks: arity, input refs point to earlier nodes, dtype and shape rules of every op,
 * module tensor ids, argument indices, and the function's outputs. */
#include "nnc.h"

#include <stdarg.h>
#include <string.h>

typedef struct Verifier {
    const Func *f;
    FILE *out;
    int problems;
} Verifier;

__attribute__((format(printf, 3, 4))) static void fail(Verifier *v, int node, const char *fmt,
                                                       ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(v->out, "verify: %s: %%%d (%s): ", v->f->name, node,
            node >= 0 ? op_info[v->f->nodes[node].op].name : "-");
    vfprintf(v->out, fmt, ap);
    fprintf(v->out, "\n");
    va_end(ap);
    v->problems++;
}

static const Shape *in_shape(const Func *f, const Node *n, int i) { return &f->nodes[n->in[i]].shape; }

static void check_same_shape(Verifier *v, int id, const Node *n) {
    char a[96], b[96];
    for (int i = 0; i < n->nin; i++)
        if (!shape_eq(in_shape(v->f, n, i), &n->shape))
            fail(v, id, "input %d has shape %s, node %s", i, shape_str(in_shape(v->f, n, i), a, sizeof a),
                 shape_str(&n->shape, b, sizeof b));
}

/* lstm_seq (xw[B,T,4H], w_hh[4H,H]) -> [B,T,6H] and lstm_seq_grad (ws[B,T,6H], w_hh,
 * d[B,T,6H] or d[B,T,H]) -> [B,T,4H]: float operands of the node's dtype, B (which may carry
 * the batch) and T shared, T static. */
static void check_lstm(Verifier *v, int id, const Node *n) {
    const Func *f = v->f;
    const Shape *seq = in_shape(f, n, 0), *w = in_shape(f, n, 1);
    if (n->dtype == DT_I32) fail(v, id, "must be f32 or f64");
    for (int i = 0; i < n->nin; i++)
        if (f->nodes[n->in[i]].dtype != n->dtype) fail(v, id, "input %d dtype differs", i);
    if (w->rank != 2 || w->batch_mask || w->dim[0] != 4 * w->dim[1]) {
        fail(v, id, "w_hh must be [4H, H]");
        return;
    }
    int64_t H = w->dim[1];
    int64_t width = n->op == OP_lstm_seq ? 4 * H : 6 * H, out = n->op == OP_lstm_seq ? 6 * H : 4 * H;
    if (seq->rank != 3 || seq->dim[2] != width || (seq->batch_mask & ~1u)) {
        fail(v, id, "input 0 must be [B, T, %lld] with the batch, if any, on axis 0", (long long)width);
        return;
    }
    if (n->shape.rank != 3 || n->shape.batch_mask != seq->batch_mask || n->shape.dim[0] != seq->dim[0] ||
        n->shape.dim[1] != seq->dim[1] || n->shape.dim[2] != out)
        fail(v, id, "node shape must be [B, T, %lld] with input 0's B and T", (long long)out);
    if (n->op == OP_lstm_seq_grad) {
        const Shape *d = in_shape(f, n, 2);
        if (d->rank != 3 || d->batch_mask != seq->batch_mask || d->dim[0] != seq->dim[0] ||
            d->dim[1] != seq->dim[1] || (d->dim[2] != 6 * H && d->dim[2] != H))
            fail(v, id, "input 2 must be [B, T, 6H] or [B, T, H] with input 0's B and T");
    }
}

static void check_node(Verifier *v, int id) {
    const Func *f = v->f;
    const Node *n = &f->nodes[id];
    const Module *m = f->mod;
    if ((unsigned)n->op >= OP_COUNT) {
        fail(v, id, "bad op %d", (int)n->op);
        return;
    }
    const OpInfo *info = &op_info[n->op];
    if (info->arity >= 0 ? n->nin != info->arity : (n->nin < 1 || n->nin > IR_MAX_INPUTS))
        fail(v, id, "has %d inputs, expected %d", n->nin, info->arity);
    for (int i = 0; i < n->nin; i++)
        if (n->in[i] < 0 || n->in[i] >= id) {
            fail(v, id, "input %d refers to %%%d, not an earlier node", i, n->in[i]);
            return;
        }
    if (n->shape.rank < 0 || n->shape.rank > IR_MAX_RANK) fail(v, id, "rank %d", n->shape.rank);
    if (__builtin_popcount(n->shape.batch_mask) > 1 || n->shape.batch_mask >> n->shape.rank)
        fail(v, id, "bad batch mask 0x%x", n->shape.batch_mask);
    if ((unsigned)n->dtype >= DT_COUNT) fail(v, id, "bad dtype");

    if (info->flags & OPF_ELEM) {
        check_same_shape(v, id, n);
        if (info->flags & OPF_CMP) {
            if (n->dtype != DT_F32) fail(v, id, "comparison must be f32");
        } else if (n->op != OP_cast && n->op != OP_select) {
            for (int i = 0; i < n->nin; i++)
                if (f->nodes[n->in[i]].dtype != n->dtype) fail(v, id, "input %d dtype differs", i);
        }
    }
    switch (n->op) {
    case OP_input:
        if (n->attr.index < 0 || n->attr.index >= f->nargs) fail(v, id, "argument %lld out of range", (long long)n->attr.index);
        else if (!shape_eq(&f->args[n->attr.index].shape, &n->shape)) fail(v, id, "shape differs from argument");
        break;
    case OP_tensor:
    case OP_store:
    case OP_init_fill:
        if (n->attr.tensor < 0 || n->attr.tensor >= m->ntensors) fail(v, id, "tensor %d out of range", n->attr.tensor);
        else if (!shape_eq(&m->tensors[n->attr.tensor].shape, &n->shape)) fail(v, id, "shape differs from @%s", m->tensors[n->attr.tensor].name);
        if (n->op == OP_store && n->nin == 1) check_same_shape(v, id, n);
        break;
    case OP_batch_size:
        if (n->shape.rank != 0) fail(v, id, "must be a scalar");
        break;
    case OP_sum:
    case OP_mean:
    case OP_max: {
        const Shape *s = in_shape(f, n, 0);
        if (n->attr.axes >> s->rank) fail(v, id, "reduces an axis beyond rank %d", s->rank);
        int expect = n->attr.keepdims ? s->rank : s->rank - __builtin_popcount(n->attr.axes);
        if (n->shape.rank != expect) fail(v, id, "rank %d, expected %d", n->shape.rank, expect);
        break;
    }
    case OP_argmax:
        if (n->dtype != DT_I32) fail(v, id, "argmax must be i32");
        if (n->attr.axis < 0 || n->attr.axis >= in_shape(f, n, 0)->rank) fail(v, id, "axis out of range");
        break;
    case OP_matmul: {
        const Shape *a = in_shape(f, n, 0), *b = in_shape(f, n, 1);
        if (a->rank < 2 || b->rank < 2) {
            fail(v, id, "operands must have rank >= 2");
            break;
        }
        int64_t ka = a->dim[n->attr.trans_a ? a->rank - 2 : a->rank - 1];
        int64_t kb = b->dim[n->attr.trans_b ? b->rank - 1 : b->rank - 2];
        if (ka != kb) fail(v, id, "inner dimensions %lld and %lld differ", (long long)ka, (long long)kb);
        if (b->rank != 2 && b->rank != a->rank) fail(v, id, "b must be 2-D or of a's rank");
        if (n->shape.rank != a->rank) fail(v, id, "result rank differs from a");
        break;
    }
    case OP_reshape:
        if (shape_numel(in_shape(f, n, 0), 7) != shape_numel(&n->shape, 7) ||
            shape_numel(in_shape(f, n, 0), 1) != shape_numel(&n->shape, 1))
            fail(v, id, "element count changes");
        break;
    case OP_transpose: {
        const Shape *s = in_shape(f, n, 0);
        unsigned seen = 0;
        if (s->rank != n->shape.rank) fail(v, id, "rank changes");
        for (int i = 0; i < n->shape.rank; i++) {
            int p = n->attr.perm[i];
            if (p < 0 || p >= s->rank || (seen >> p & 1)) fail(v, id, "perm is not a permutation");
            else if (s->dim[p] != n->shape.dim[i]) fail(v, id, "axis %d size differs from input axis %d", i, p);
            if (p >= 0 && p < 32) seen |= 1u << p;
        }
        break;
    }
    case OP_broadcast: {
        Shape r;
        if (!shape_broadcast(in_shape(f, n, 0), &n->shape, &r) || !shape_eq(&r, &n->shape))
            fail(v, id, "input does not broadcast to the node shape");
        break;
    }
    case OP_slice: {
        const Shape *s = in_shape(f, n, 0);
        if (s->rank != n->shape.rank) {
            fail(v, id, "rank changes");
            break;
        }
        for (int i = 0; i < s->rank; i++) {
            if (s->batch_mask >> i & 1) {
                if (n->attr.start[i] != 0 || n->attr.step[i] != 1 || !(n->shape.batch_mask >> i & 1))
                    fail(v, id, "the batch axis can only be taken whole");
                continue;
            }
            int64_t last = n->attr.start[i] + (n->shape.dim[i] - 1) * n->attr.step[i];
            if (n->attr.step[i] == 0 || n->attr.start[i] < 0 || n->attr.start[i] >= s->dim[i] ||
                last < 0 || last >= s->dim[i])
                if (n->shape.dim[i] > 0) fail(v, id, "axis %d reads outside the input", i);
        }
        break;
    }
    case OP_concat: {
        int64_t total = 0;
        for (int i = 0; i < n->nin; i++) {
            const Shape *s = in_shape(f, n, i);
            if (s->rank != n->shape.rank) fail(v, id, "input %d rank differs", i);
            total += s->dim[n->attr.axis];
        }
        if (total != n->shape.dim[n->attr.axis]) fail(v, id, "concatenated size differs");
        break;
    }
    case OP_gather:
        if (f->nodes[n->in[1]].dtype != DT_I32) fail(v, id, "indices must be i32");
        break;
    case OP_lstm_seq:
    case OP_lstm_seq_grad: check_lstm(v, id, n); break;
    case OP_softmax:
    case OP_log_softmax:
    case OP_softmax_grad:
    case OP_log_softmax_grad: check_same_shape(v, id, n); break;
    case OP_cross_entropy:
        if (n->shape.rank != 0) fail(v, id, "loss must be a scalar");
        if (n->nin >= 2 && f->nodes[n->in[1]].dtype != DT_I32) fail(v, id, "labels must be i32");
        break;
    default: break;
    }
}

int ir_verify(const Func *f, FILE *out) {
    Verifier v = {.f = f, .out = out};
    for (int i = 0; i < f->nnodes; i++) check_node(&v, i);
    for (int i = 0; i < f->nouts; i++)
        if (f->outs[i].value < 0 || f->outs[i].value >= f->nnodes)
            fail(&v, -1, "output '%s' refers to %%%d", f->outs[i].name, f->outs[i].value);
    return v.problems;
}
