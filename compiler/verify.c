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

/* ---------------------------------------------------------------- layers with kernels
 * conv2d, the pools, upsample2d, lrn and their gradient kernels (ops.h): NCHW tensors with
 * the batch on axis 0 only, float of the node's dtype, window attributes in the ranges the
 * interpreter accepts, and every shape the one its operands and attributes imply. */

enum { ATTR_LIMIT = INT32_MAX };  /* strides, paddings, dilations: as interp.c bounds them */

/* Every input is float of the node's dtype. */
static void check_float_operands(Verifier *v, int id, const Node *n) {
    if (n->dtype != DT_F32 && n->dtype != DT_F64) fail(v, id, "result must be f32 or f64, not %s", dtype_names[n->dtype]);
    for (int i = 0; i < n->nin; i++) {
        DType dt = v->f->nodes[n->in[i]].dtype;
        if (dt != n->dtype)
            fail(v, id, "input %d is %s, the result %s", i, dtype_names[dt], dtype_names[n->dtype]);
    }
}

/* `s` (the operand called `what`) is [N, C, H, W] with the batch, if any, on axis 0. */
static bool check_nchw(Verifier *v, int id, const char *what, const Shape *s) {
    char b[96];
    if (s->rank == 4 && !(s->batch_mask & ~1u)) return true;
    fail(v, id, "%s %s must be [N, C, H, W] with the batch on axis 0 only", what, shape_str(s, b, sizeof b));
    return false;
}

/* Axis 0 of a and b is the same batch (or the same constant). */
static bool check_same_batch(Verifier *v, int id, const char *what_a, const Shape *a,
                             const char *what_b, const Shape *b) {
    char ba[96], bb[96];
    if (a->dim[0] == b->dim[0] && (a->batch_mask & 1) == (b->batch_mask & 1)) return true;
    fail(v, id, "%s %s and %s %s differ in axis 0", what_a, shape_str(a, ba, sizeof ba), what_b,
         shape_str(b, bb, sizeof bb));
    return false;
}

/* Strides step[0..1] and paddings start[0..3] in range (and, for convolutions, the dilations
 * perm[0..1] and the groups perm[2]). */
static bool check_window_attrs(Verifier *v, int id, const Attr *a, bool conv) {
    bool ok = true;
    if (a->step[0] < 1 || a->step[1] < 1 || a->step[0] > ATTR_LIMIT || a->step[1] > ATTR_LIMIT)
        fail(v, id, "stride=[%lld, %lld] out of range", (long long)a->step[0], (long long)a->step[1]), ok = false;
    for (int i = 0; i < 4; i++)
        if (a->start[i] < 0 || a->start[i] > ATTR_LIMIT) {
            fail(v, id, "pad=[%lld, %lld, %lld, %lld] out of range", (long long)a->start[0],
                 (long long)a->start[1], (long long)a->start[2], (long long)a->start[3]);
            ok = false;
            break;
        }
    if (conv && (a->perm[0] < 1 || a->perm[1] < 1))
        fail(v, id, "dilation=[%d, %d] out of range", a->perm[0], a->perm[1]), ok = false;
    if (conv && a->perm[2] < 1) fail(v, id, "groups=%d out of range", a->perm[2]), ok = false;
    return ok;
}

/* floor((in + before + after - d (k - 1) - 1) / s) + 1, or -1 when the dilated window does
 * not fit the padded input; paddings, dilation and stride are in range, k >= 1. Written so
 * nothing overflows. */
static int64_t window_out_size(int64_t in, int64_t before, int64_t after, int64_t k, int64_t d,
                               int64_t s) {
    if (in < 0 || in > INT64_MAX - before - after) return -1;
    int64_t padded = in + before + after;
    if (padded < 1 || k - 1 > (padded - 1) / d) return -1;
    return (padded - 1 - d * (k - 1)) / s + 1;
}

/* The spatial axes of y (`what_y`) follow from x's (`what_x`) by the window kh x kw with
 * dilation dh x dw and the stride and padding of attr a; `also` names the other operand the
 * window came from (" and weight [...]"), or is empty. */
static void check_window_output(Verifier *v, int id, const Attr *a, const char *what_x,
                                const Shape *x, const char *what_y, const Shape *y, int64_t kh,
                                int64_t kw, int64_t dh, int64_t dw, const char *also) {
    char bx[96], by[96], be[96];
    int64_t ho = window_out_size(x->dim[2], a->start[0], a->start[2], kh, dh, a->step[0]);
    int64_t wo = window_out_size(x->dim[3], a->start[1], a->start[3], kw, dw, a->step[1]);
    if (ho < 0 || wo < 0) {
        fail(v, id, "the %lld x %lld window (dilation %lld x %lld) does not fit the padded spatial axes of %s",
             (long long)kh, (long long)kw, (long long)dh, (long long)dw, shape_str(x, bx, sizeof bx));
        return;
    }
    if (y->dim[2] == ho && y->dim[3] == wo) return;
    Shape e = *y;
    e.dim[2] = ho, e.dim[3] = wo;
    fail(v, id, "%s %s does not follow from %s %s%s: expected %s", what_y, shape_str(y, by, sizeof by),
         what_x, shape_str(x, bx, sizeof bx), also, shape_str(&e, be, sizeof be));
}

/* conv2d (x, w[, b]) -> y;  conv2d_grad_input (dy, w) -> dx, x's shape;
 * conv2d_grad_weight (x, dy) -> dw, w's shape. Each checks the one geometry
 *   x [N, C, H, W], w [O, C/g, KH, KW], y [N, O, Ho, Wo], b [O],
 *   Ho = floor((H + pt + pb - dh (KH - 1) - 1) / sh) + 1, and Wo alike. */
static void check_conv(Verifier *v, int id, const Node *n) {
    const Func *f = v->f;
    const Shape *x, *w, *y;
    const char *xn = "input", *wn = "weight", *yn = "dy";
    switch (n->op) {
    case OP_conv2d: x = in_shape(f, n, 0), w = in_shape(f, n, 1), y = &n->shape, yn = "result"; break;
    case OP_conv2d_grad_input: x = &n->shape, w = in_shape(f, n, 1), y = in_shape(f, n, 0), xn = "result (dx)"; break;
    default: x = in_shape(f, n, 0), w = &n->shape, y = in_shape(f, n, 1), wn = "result (dw)"; break;
    }
    check_float_operands(v, id, n);
    char bx[96], bw[96], by[96];
    bool ok = check_nchw(v, id, xn, x) & check_nchw(v, id, yn, y);
    if (w->rank != 4 || w->batch_mask) {
        fail(v, id, "%s %s must be [O, C/groups, KH, KW] without the batch", wn, shape_str(w, bw, sizeof bw));
        ok = false;
    }
    if (!check_window_attrs(v, id, &n->attr, true) || !ok) return;
    shape_str(w, bw, sizeof bw);
    int64_t groups = n->attr.perm[2], cin = x->dim[1], cout = w->dim[0];
    for (int i = 0; i < 4; i++)
        if (w->dim[i] < 1) {
            fail(v, id, "%s %s has an empty axis", wn, bw);
            return;
        }
    if (w->dim[1] > INT64_MAX / groups || cin != groups * w->dim[1])
        fail(v, id, "%s %s has %lld channels, groups=%lld times the %lld of %s %s",
             xn, shape_str(x, bx, sizeof bx), (long long)cin, (long long)groups, (long long)w->dim[1], wn, bw);
    if (cout % groups)
        fail(v, id, "groups=%lld does not divide the %lld output channels of %s %s", (long long)groups,
             (long long)cout, wn, bw);
    if (y->dim[1] != cout)
        fail(v, id, "%s %s has %lld channels, %s %s has %lld outputs", yn, shape_str(y, by, sizeof by),
             (long long)y->dim[1], wn, bw, (long long)cout);
    check_same_batch(v, id, xn, x, yn, y);
    char also[160];
    snprintf(also, sizeof also, " and %s %s", wn, bw);
    check_window_output(v, id, &n->attr, xn, x, yn, y, w->dim[2], w->dim[3], n->attr.perm[0],
                        n->attr.perm[1], also);
    if (n->op == OP_conv2d && n->nin == 3) {
        const Shape *b = in_shape(f, n, 2);
        if (b->rank != 1 || b->batch_mask || b->dim[0] != cout)
            fail(v, id, "bias %s must be [%lld], the output channels of %s %s", shape_str(b, by, sizeof by),
                 (long long)cout, wn, bw);
    }
}

/* maxpool2d, avgpool2d (x) -> y;  maxpool2d_grad (x, dy) -> dx, x's shape:
 *   x [N, C, H, W], y [N, C, Ho, Wo], window perm[0] x perm[1] without dilation. */
static void check_pool(Verifier *v, int id, const Node *n) {
    const Func *f = v->f;
    const Shape *x = in_shape(f, n, 0);
    bool grad = n->op == OP_maxpool2d_grad;
    const Shape *y = grad ? in_shape(f, n, 1) : &n->shape;
    const char *yn = grad ? "dy" : "result";
    char bx[96], by[96];
    check_float_operands(v, id, n);
    bool ok = check_nchw(v, id, "input", x) & check_nchw(v, id, yn, y);
    if (grad && !shape_eq(&n->shape, x)) {
        fail(v, id, "result %s differs from the input %s it differentiates", shape_str(&n->shape, by, sizeof by),
             shape_str(x, bx, sizeof bx));
        ok = false;
    }
    if (n->attr.perm[0] < 1 || n->attr.perm[1] < 1) {
        fail(v, id, "size=[%d, %d] out of range", n->attr.perm[0], n->attr.perm[1]);
        ok = false;
    }
    if (!check_window_attrs(v, id, &n->attr, false) || !ok) return;
    if (y->dim[1] != x->dim[1])
        fail(v, id, "%s %s has %lld channels, the input %s has %lld", yn, shape_str(y, by, sizeof by),
             (long long)y->dim[1], shape_str(x, bx, sizeof bx), (long long)x->dim[1]);
    check_same_batch(v, id, "input", x, yn, y);
    check_window_output(v, id, &n->attr, "input", x, yn, y, n->attr.perm[0], n->attr.perm[1], 1, 1, "");
}

/* upsample2d (x) -> y: x [N, C, H, W], y [N, C, H sh, W sw], (sh, sw) = perm[0..1],
 * mode attr.flag 0 (nearest) or 1 (bilinear). */
static void check_upsample(Verifier *v, int id, const Node *n) {
    const Shape *x = in_shape(v->f, n, 0), *y = &n->shape;
    int64_t sh = n->attr.perm[0], sw = n->attr.perm[1];
    char bx[96], by[96];
    check_float_operands(v, id, n);
    if (n->attr.flag != 0 && n->attr.flag != 1)
        fail(v, id, "mode %d is neither nearest (0) nor bilinear (1)", n->attr.flag);
    bool ok = check_nchw(v, id, "input", x) & check_nchw(v, id, "result", y);
    if (sh < 1 || sw < 1) {
        fail(v, id, "scale=[%lld, %lld] out of range", (long long)sh, (long long)sw);
        return;
    }
    if (!ok) return;
    if (y->dim[0] != x->dim[0] || y->batch_mask != x->batch_mask || y->dim[1] != x->dim[1] ||
        y->dim[2] % sh || y->dim[2] / sh != x->dim[2] || y->dim[3] % sw || y->dim[3] / sw != x->dim[3])
        fail(v, id, "result %s is not the input %s scaled by [%lld, %lld]", shape_str(y, by, sizeof by),
             shape_str(x, bx, sizeof bx), (long long)sh, (long long)sw);
}

/* lrn (x) -> y over the channels (axis 1): x [N, C, ...], y of x's shape, size perm[0] >= 1. */
static void check_lrn(Verifier *v, int id, const Node *n) {
    const Shape *x = in_shape(v->f, n, 0);
    char bx[96], by[96];
    check_float_operands(v, id, n);
    if (x->rank < 2 || (x->batch_mask & ~1u))
        fail(v, id, "input %s must be [N, C, ...] with the batch on axis 0 only", shape_str(x, bx, sizeof bx));
    if (!shape_eq(x, &n->shape))
        fail(v, id, "result %s differs from the input %s", shape_str(&n->shape, by, sizeof by),
             shape_str(x, bx, sizeof bx));
    if (n->attr.perm[0] < 1) fail(v, id, "size=%d out of range", n->attr.perm[0]);
}

/* The gated recurrent ops, with G gates and P parts per row of ws:
 *   lstm_seq (xw[B,T,4H], w_hh[4H,H]) -> ws[B,T,6H], lstm_seq_grad (ws, w_hh, d) -> [B,T,4H];
 *   gru_seq (xw[B,T,3H], w_hh[3H,H], b_hh[3H]) -> ws[B,T,5H], gru_seq_grad (ws, w_hh, d) -> [B,T,4H];
 * d is [B,T,P*H] or [B,T,H]. Float operands of the node's dtype, B (which may carry the batch)
 * and T shared, T static. */
static void check_gated(Verifier *v, int id, const Node *n) {
    const Func *f = v->f;
    const Shape *seq = in_shape(f, n, 0), *w = in_shape(f, n, 1);
    bool lstm = n->op == OP_lstm_seq || n->op == OP_lstm_seq_grad;
    bool fwd = n->op == OP_lstm_seq || n->op == OP_gru_seq;
    int64_t G = lstm ? 4 : 3, P = lstm ? 6 : 5;
    if (n->dtype == DT_I32) fail(v, id, "must be f32 or f64");
    for (int i = 0; i < n->nin; i++)
        if (f->nodes[n->in[i]].dtype != n->dtype) fail(v, id, "input %d dtype differs", i);
    if (w->rank != 2 || w->batch_mask || w->dim[0] != G * w->dim[1]) {
        fail(v, id, "w_hh must be [%lldH, H]", (long long)G);
        return;
    }
    int64_t H = w->dim[1];
    int64_t width = fwd ? G * H : P * H, out = fwd ? P * H : 4 * H;
    if (seq->rank != 3 || seq->dim[2] != width || (seq->batch_mask & ~1u)) {
        fail(v, id, "input 0 must be [B, T, %lld] with the batch, if any, on axis 0", (long long)width);
        return;
    }
    if (n->shape.rank != 3 || n->shape.batch_mask != seq->batch_mask || n->shape.dim[0] != seq->dim[0] ||
        n->shape.dim[1] != seq->dim[1] || n->shape.dim[2] != out)
        fail(v, id, "node shape must be [B, T, %lld] with input 0's B and T", (long long)out);
    if (fwd && !lstm) {
        const Shape *b = in_shape(f, n, 2);
        if (b->rank != 1 || b->batch_mask || b->dim[0] != 3 * H) fail(v, id, "b_hh must be [3H]");
    }
    if (!fwd) {
        const Shape *d = in_shape(f, n, 2);
        if (d->rank != 3 || d->batch_mask != seq->batch_mask || d->dim[0] != seq->dim[0] ||
            d->dim[1] != seq->dim[1] || (d->dim[2] != P * H && d->dim[2] != H))
            fail(v, id, "input 2 must be [B, T, %lldH] or [B, T, H] with input 0's B and T", (long long)P);
    }
}

/* rnn_seq (xw[B,T,H], w_hh[H,H]) and rnn_seq_grad (h[B,T,H], w_hh, d[B,T,H]) -> [B,T,H], the
 * activation tanh or relu. */
static void check_rnn(Verifier *v, int id, const Node *n) {
    const Func *f = v->f;
    const Shape *w = in_shape(f, n, 1);
    if (n->dtype == DT_I32) fail(v, id, "must be f32 or f64");
    if (n->attr.fwd_op != OP_tanh && n->attr.fwd_op != OP_relu) fail(v, id, "the activation must be tanh or relu");
    for (int i = 0; i < n->nin; i++)
        if (f->nodes[n->in[i]].dtype != n->dtype) fail(v, id, "input %d dtype differs", i);
    if (w->rank != 2 || w->batch_mask || w->dim[0] != w->dim[1]) {
        fail(v, id, "w_hh must be [H, H]");
        return;
    }
    if (n->shape.rank != 3 || n->shape.dim[2] != w->dim[0] || (n->shape.batch_mask & ~1u))
        fail(v, id, "node shape must be [B, T, %lld] with the batch, if any, on axis 0", (long long)w->dim[0]);
    for (int i = 0; i < n->nin; i += 2)
        if (!shape_eq(in_shape(f, n, i), &n->shape)) fail(v, id, "input %d must have the node's shape", i);
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
    if (info->arity >= 0 ? n->nin != info->arity : (n->nin < 1 || n->nin > IR_MAX_INPUTS)) {
        fail(v, id, "has %d inputs, expected %d", n->nin, info->arity);
        return; /* the op's rules read its inputs */
    }
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
    case OP_lstm_seq_grad:
    case OP_gru_seq:
    case OP_gru_seq_grad: check_gated(v, id, n); break;
    case OP_rnn_seq:
    case OP_rnn_seq_grad: check_rnn(v, id, n); break;
    case OP_softmax:
    case OP_log_softmax:
    case OP_softmax_grad:
    case OP_log_softmax_grad: check_same_shape(v, id, n); break;
    case OP_cross_entropy:
        if (n->shape.rank != 0) fail(v, id, "loss must be a scalar");
        if (n->nin >= 2 && f->nodes[n->in[1]].dtype != DT_I32) fail(v, id, "labels must be i32");
        break;
    case OP_conv2d:
        if (n->nin != 2 && n->nin != 3) {
            fail(v, id, "takes x, w and an optional bias, not %d inputs", n->nin);
            break;
        }
        check_conv(v, id, n);
        break;
    case OP_conv2d_grad_input:
    case OP_conv2d_grad_weight: check_conv(v, id, n); break;
    case OP_maxpool2d:
    case OP_avgpool2d:
    case OP_maxpool2d_grad: check_pool(v, id, n); break;
    case OP_upsample2d: check_upsample(v, id, n); break;
    case OP_lrn: check_lrn(v, id, n); break;
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
