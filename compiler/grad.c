/* grad.c — reverse-mode differentiation of the `loss` function into `grad`.
 *
 * grad = a copy of loss (same args, same nodes at the same indices, so forward refs stay
 * valid; the batchnorm running-stat stores are kept) followed by the backward pass:
 *
 *   1. needs[i]: node i depends on a TK_PARAM tensor through ops that have a gradient rule
 *      (OPF_GRAD). Only these nodes get adjoints: no gradient work for values that do not
 *      reach a parameter. stop_gradient, comparisons, argmax, floor, sign and cast have no
 *      rule, so nothing flows through them; i32 values never carry gradients.
 *   2. adj[loss] = 1; nodes are visited in reverse order, and each visited node with an
 *      adjoint applies its op's rule (one case per op in grad_rule, the derivative formula in
 *      a comment), adding a contribution to the adjoint of each input that needs one.
 *      Contributions of a value used several times are summed.
 *   3. One OUT_GRAD output per TK_PARAM tensor, named by the parameter: the sum of the
 *      adjoints of every `tensor` node reading it, or zeros when the loss does not depend on
 *      it.
 *
 * Every gradient is built from ordinary IR nodes; ops with kernels of their own use the
 * gradient kernels of ops.h (act_grad, softmax_grad, log_softmax_grad, cross_entropy_grad,
 * scatter_add, conv2d_grad_input, conv2d_grad_weight, maxpool2d_grad). Nodes made by a rule
 * carry the source location of the forward node they differentiate. docs/autodiff.md lists
 * the rules that needed a decision (max ties, slices with steps, matmul's shared b, ...).
 */
#include "nnc.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct Grad {
    Func *f;     /* the function being built: forward copy, then the backward pass */
    int nfwd;    /* forward nodes are f->nodes[0 .. nfwd) */
    bool *needs; /* needs[i]: forward node i depends differentiably on a param */
    Ref *adj;    /* adjoint of forward node i (same shape and dtype), or REF_NONE */
} Grad;

/* ---------------------------------------------------------------- dependency analysis */

/* Can a gradient flow from node n to its inputs? */
static bool flows(const Node *n) { return (op_info[n->op].flags & OPF_GRAD) && n->dtype != DT_I32; }

/* mark[i] = node i depends differentiably on module tensor `tensor` (or on any param when
 * tensor < 0). */
static void mark_dependents(const Func *f, int tensor, bool *mark) {
    const Module *m = f->mod;
    for (int i = 0; i < f->nnodes; i++) {
        const Node *n = &f->nodes[i];
        mark[i] = false;
        if (n->op == OP_tensor) {
            mark[i] = n->dtype != DT_I32 && (tensor < 0 ? m->tensors[n->attr.tensor].kind == TK_PARAM
                                                         : n->attr.tensor == tensor);
        } else if (flows(n)) {
            for (int j = 0; j < n->nin && !mark[i]; j++) mark[i] = mark[n->in[j]];
        }
    }
}

bool grad_depends_on(const Func *f, Ref out, int tensor) {
    if (out < 0 || out >= f->nnodes) return false;
    bool *mark = calloc((size_t)f->nnodes, sizeof *mark);
    if (!mark) abort();
    mark_dependents(f, tensor, mark);
    bool result = mark[out];
    free(mark);
    return result;
}

/* ---------------------------------------------------------------- small builders */

static Node *node(Grad *g, Ref r) { return &g->f->nodes[r]; }

/* A scalar constant of the dtype of `like`; ir_binary splats it to the other operand. */
static Ref cst(Grad *g, Ref like, double v) {
    return ir_const(g->f, node(g, like)->dtype, shape_scalar(), v);
}

static Ref add(Grad *g, Ref a, Ref b) { return ir_binary(g->f, OP_add, a, b); }
static Ref sub(Grad *g, Ref a, Ref b) { return ir_binary(g->f, OP_sub, a, b); }
static Ref mul(Grad *g, Ref a, Ref b) { return ir_binary(g->f, OP_mul, a, b); }
static Ref dvd(Grad *g, Ref a, Ref b) { return ir_binary(g->f, OP_div, a, b); }
static Ref neg(Grad *g, Ref a) { return ir_unary(g->f, OP_neg, a); }

/* A 0/1 mask (comparisons are f32) in the dtype of `like`. */
static Ref as_dtype_of(Grad *g, Ref mask, Ref like) { return ir_cast(g->f, mask, node(g, like)->dtype); }

static Ref zeros_like(Grad *g, Ref x) {
    Node *n = node(g, x);
    return ir_const(g->f, n->dtype, n->shape, 0.0);
}

/* Adds a contribution to the adjoint of forward node x (only when x needs one). */
static void contribute(Grad *g, Ref x, Ref d) {
    if (!g->needs[x]) return;
    assert(shape_eq(&node(g, x)->shape, &node(g, d)->shape));
    g->adj[x] = g->adj[x] == REF_NONE ? d : add(g, g->adj[x], d);
}

/* x with its last two axes swapped. */
static Ref transpose_last2(Func *f, Ref x) {
    int r = ir_at(f, x)->shape.rank, perm[IR_MAX_RANK];
    for (int i = 0; i < r; i++) perm[i] = i;
    perm[r - 2] = r - 1;
    perm[r - 1] = r - 2;
    return ir_transpose(f, x, perm);
}

/* The shape of x after a reduction over axes with keepdims: reduced axes become 1. */
static Shape keepdims_shape(const Shape *x, uint32_t axes) {
    Shape k = *x;
    for (int i = 0; i < x->rank; i++)
        if (axes >> i & 1) {
            k.dim[i] = 1;
            k.batch_mask &= (uint8_t)~(1u << i);
        }
    return k;
}

/* dy of a reduction over axes (with or without keepdims), repeated back to x's shape. */
static Ref expand_reduced(Func *f, Ref dy, Shape x, uint32_t axes) {
    Shape k = keepdims_shape(&x, axes);
    return ir_broadcast(f, ir_reshape(f, dy, k), x);
}

/* Row-major [0, 1, ..., n-1] as an i32 constant of shape [n]. */
static Ref iota(Func *f, int64_t n) {
    double *data = arena_alloc(f->mod->arena, (size_t)n * sizeof *data);
    for (int64_t i = 0; i < n; i++) data[i] = (double)i;
    int64_t dims[1] = {n};
    Attr a = {.data = data};
    return ir_node(f, OP_const, DT_I32, shape_make(1, dims, 0), 0, NULL, &a);
}

/* ---------------------------------------------------------------- rules needing more than a line */

/* max over axes: the gradient goes to the first maximum of each reduced group, in row-major
 * order of the reduced axes. The reduced axes are moved last and merged into one axis of
 * size R, argmax finds the first maximum, and eq(iota(R), argmax) is the one-hot mask:
 *   dx = transpose^-1(reshape(onehot(argmax) * dy)).
 * When the batch axis is reduced, R depends on the batch and no iota constant can be built;
 * then the gradient is shared evenly between tied maxima (torch.amax's rule):
 *   dx = (x == y) * dy / count(x == y).
 * With continuous data ties have probability zero and both rules give the same result. */
static void rule_max(Grad *g, int i, const Node *n, Ref dy) {
    Func *f = g->f;
    Ref x = n->in[0];
    Shape xs = node(g, x)->shape;
    uint32_t axes = n->attr.axes;
    if (xs.batch_mask & axes) {
        Ref yb = expand_reduced(f, i, xs, axes);
        Ref mask = as_dtype_of(g, ir_binary(f, OP_eq, x, yb), x);
        Ref count = ir_reduce(f, OP_sum, mask, axes, true);
        Ref share = dvd(g, mask, ir_broadcast(f, count, xs));
        contribute(g, x, mul(g, share, expand_reduced(f, dy, xs, axes)));
        return;
    }
    int perm[IR_MAX_RANK], inverse[IR_MAX_RANK], nkept = 0;
    int64_t reduced = 1;
    Shape merged = {0};
    for (int a = 0; a < xs.rank; a++)
        if (!(axes >> a & 1)) {
            if (xs.batch_mask >> a & 1) merged.batch_mask |= (uint8_t)(1u << nkept);
            merged.dim[nkept] = xs.dim[a];
            perm[nkept++] = a;
        }
    int np = nkept;
    for (int a = 0; a < xs.rank; a++)
        if (axes >> a & 1) {
            reduced *= xs.dim[a];
            perm[np++] = a;
        }
    bool identity = true;
    for (int a = 0; a < xs.rank; a++) {
        inverse[perm[a]] = a;
        identity = identity && perm[a] == a;
    }
    merged.rank = nkept + 1;
    merged.dim[nkept] = reduced;
    Ref xt = identity ? x : ir_transpose(f, x, perm);
    Shape xts = node(g, xt)->shape;
    Ref first = ir_argmax(f, ir_reshape(f, xt, merged), nkept);  /* [kept...] */
    Shape kept1 = merged;
    kept1.dim[nkept] = 1;
    Ref onehot = ir_binary(f, OP_eq, iota(f, reduced), ir_reshape(f, first, kept1));
    Ref d = mul(g, as_dtype_of(g, onehot, x), ir_reshape(f, dy, kept1));  /* [kept..., R] */
    d = ir_reshape(f, d, xts);
    contribute(g, x, identity ? d : ir_transpose(f, d, inverse));
}

/* y = A' @ B' with A' = trans_a ? a^T : a and B' = trans_b ? b^T : b (last two axes):
 *   dA' = dy @ B'^T,  dB' = A'^T @ dy,  and da = dA' (or its transpose), db likewise.
 * When b is 2-D and shared by every leading index of a, db sums over the leading axes:
 * A' and dy are reshaped to [P*M, K] and [P*M, N] and one matmul does the sum. */
static void rule_matmul(Grad *g, const Node *n, Ref dy) {
    Func *f = g->f;
    Ref a = n->in[0], b = n->in[1];
    bool ta = n->attr.trans_a, tb = n->attr.trans_b;
    int ra = node(g, a)->shape.rank, rb = node(g, b)->shape.rank;
    if (g->needs[a]) {
        Ref da;
        if (!ta)
            da = ir_matmul(f, dy, b, false, !tb);            /* dy @ B'^T */
        else if (rb == ra)
            da = ir_matmul(f, b, dy, tb, true);              /* (dy @ B'^T)^T = B' @ dy^T */
        else
            da = transpose_last2(f, ir_matmul(f, dy, b, false, !tb));
        contribute(g, a, da);
    }
    if (g->needs[b]) {
        Ref lhs = a, rhs = dy;
        bool lhs_t = ta;
        if (rb != ra) {
            /* shared b: A' as [P*M, K], dy as [P*M, N] */
            Ref ap = ta ? transpose_last2(f, a) : a;
            lhs_t = false;
            const Shape *as = &node(g, ap)->shape, *ds = &node(g, dy)->shape; /* read before building */
            Shape a2 = {.rank = 2}, d2 = {.rank = 2};
            a2.dim[0] = d2.dim[0] = 1;
            for (int k = 0; k < ra - 1; k++) {
                a2.dim[0] *= as->dim[k];
                if (as->batch_mask >> k & 1) a2.batch_mask |= 1;
            }
            d2.dim[0] = a2.dim[0];
            d2.batch_mask = a2.batch_mask;
            a2.dim[1] = as->dim[ra - 1];
            if (as->batch_mask >> (ra - 1) & 1) a2.batch_mask |= 2;
            d2.dim[1] = ds->dim[ra - 1];
            if (ds->batch_mask >> (ra - 1) & 1) d2.batch_mask |= 2;
            lhs = ir_reshape(f, ap, a2);
            rhs = ir_reshape(f, dy, d2);
        }
        Ref db = !tb ? ir_matmul(f, lhs, rhs, !lhs_t, false)   /* A'^T @ dy */
                     : ir_matmul(f, rhs, lhs, true, lhs_t);    /* (A'^T @ dy)^T = dy^T @ A' */
        contribute(g, b, db);
    }
}

/* y = broadcast(x): each element of x feeds every copy, so dx sums dy over the broadcast
 * axes (the leading axes x lacks and the size-1 axes of x that were repeated), then
 * reshapes to x's shape. */
static void rule_broadcast(Grad *g, const Node *n, Ref dy) {
    Ref x = n->in[0];
    const Shape xshape = node(g, x)->shape, *xs = &xshape, *ys = &n->shape;
    int lead = ys->rank - xs->rank;
    uint32_t axes = 0;
    for (int a = 0; a < ys->rank; a++) {
        if (a < lead) {
            axes |= 1u << a;
            continue;
        }
        int xa = a - lead;
        bool x_one = xs->dim[xa] == 1 && !(xs->batch_mask >> xa & 1);
        bool y_one = ys->dim[a] == 1 && !(ys->batch_mask >> a & 1);
        if (x_one && !y_one) axes |= 1u << a;
    }
    Ref d = axes ? ir_reduce(g->f, OP_sum, dy, axes, false) : dy;
    contribute(g, x, ir_reshape(g->f, d, *xs));
}

/* Zeros of `like` with axis `axis` resized to `size`. */
static Ref zeros_block(Func *f, Ref like, int axis, int64_t size) {
    Shape s = ir_at(f, like)->shape;
    s.dim[axis] = size;
    return ir_const(f, ir_at(f, like)->dtype, s, 0.0);
}

/* A step-1 slice along axis of `cur`, keeping every other axis whole. */
static Ref slice_axis(Func *f, Ref cur, int axis, int64_t start, int64_t step, int64_t count) {
    Shape s = ir_at(f, cur)->shape;
    int64_t starts[IR_MAX_RANK] = {0}, steps[IR_MAX_RANK];
    for (int a = 0; a < s.rank; a++) steps[a] = 1;
    starts[axis] = start;
    steps[axis] = step;
    s.dim[axis] = count;
    return ir_slice(f, cur, starts, steps, s);
}

/* y = x[start + k*step] along each axis: dx is dy scattered back, zeros elsewhere. Built one
 * axis at a time from existing ops:
 *   step < 0: reverse dy along the axis (a step -1 slice), which turns it into a positive
 *             step starting at the last element read;
 *   step k > 1: interleave k-1 zero rows after each row (reshape to [.., n, 1, ..], concat
 *             zeros [.., n, k-1, ..], reshape to [.., n*k, ..], drop the k-1 trailing rows),
 *             which turns it into step 1; at rank IR_MAX_RANK there is no axis to spare and
 *             a 0/1 selection matrix does it instead (matmul with the axis moved last);
 *   step 1: concat zeros before and after. */
static Ref unslice_axis(Func *f, Ref cur, int axis, int64_t start, int64_t step, int64_t size) {
    int64_t n = ir_at(f, cur)->shape.dim[axis];
    if (step < 0) {
        cur = slice_axis(f, cur, axis, n - 1, -1, n);
        start += (n - 1) * step;
        step = -step;
    }
    if (step > 1 && n > 1) {
        Shape s = ir_at(f, cur)->shape;
        if (s.rank < IR_MAX_RANK) {
            Shape wide = {.rank = s.rank + 1};
            for (int a = 0, w = 0; a < s.rank; a++, w++) {
                wide.dim[w] = s.dim[a];
                if (s.batch_mask >> a & 1) wide.batch_mask |= (uint8_t)(1u << w);
                if (a == axis) wide.dim[++w] = 1;
            }
            Ref parts[2] = {ir_reshape(f, cur, wide), REF_NONE};
            parts[1] = zeros_block(f, parts[0], axis + 1, step - 1);
            Ref spread = ir_concat(f, 2, parts, axis + 1);
            Shape flat = s;
            flat.dim[axis] = n * step;
            cur = slice_axis(f, ir_reshape(f, spread, flat), axis, 0, 1, (n - 1) * step + 1);
        } else {
            /* cur[..., j, ...] -> out[..., start + j*step, ...] via S[j][start + j*step] = 1 */
            double *sel = arena_alloc(f->mod->arena, (size_t)(n * size) * sizeof *sel);
            for (int64_t j = 0; j < n; j++) sel[j * size + start + j * step] = 1.0;
            int64_t dims[2] = {n, size};
            Attr ca = {.data = sel};
            Ref mat = ir_node(f, OP_const, ir_at(f, cur)->dtype, shape_make(2, dims, 0), 0, NULL, &ca);
            int perm[IR_MAX_RANK], inverse[IR_MAX_RANK];
            for (int a = 0, p = 0; a < s.rank; a++)
                if (a != axis) perm[p++] = a;
            perm[s.rank - 1] = axis;
            for (int a = 0; a < s.rank; a++) inverse[perm[a]] = a;
            Ref moved = ir_transpose(f, cur, perm);
            return ir_transpose(f, ir_matmul(f, moved, mat, false, false), inverse);
        }
    }
    int64_t len = ir_at(f, cur)->shape.dim[axis];
    int64_t after = size - start - len;
    Ref parts[3];
    int np = 0;
    if (start > 0) parts[np++] = zeros_block(f, cur, axis, start);
    parts[np++] = cur;
    if (after > 0) parts[np++] = zeros_block(f, cur, axis, after);
    return np == 1 ? cur : ir_concat(f, np, parts, axis);
}

static void rule_slice(Grad *g, const Node *n, Ref dy) {
    Func *f = g->f;
    Ref x = n->in[0];
    Shape xs = node(g, x)->shape;
    if (shape_numel(&n->shape, 1) == 0) {
        contribute(g, x, zeros_like(g, x));
        return;
    }
    Ref cur = dy;
    for (int a = 0; a < xs.rank; a++) {
        if (xs.batch_mask >> a & 1) continue;  /* the batch axis is always taken whole */
        int64_t start = n->attr.start[a], step = n->attr.step[a], count = n->shape.dim[a];
        if (start == 0 && step == 1 && count == xs.dim[a]) continue;
        if (count == 1) step = 1;  /* a single element: the step does not matter */
        cur = unslice_axis(f, cur, a, start, step, xs.dim[a]);
    }
    contribute(g, x, cur);
}

/* ---------------------------------------------------------------- layers with kernels */

/* y = conv2d(x, w[, b]):
 *   dx = conv2d_grad_input(dy, w)    the adjoint of the convolution in x
 *   dw = conv2d_grad_weight(x, dy)   the correlation of x with dy over batch and positions
 *   db = sum of dy over N, H, W */
static void rule_conv2d(Grad *g, const Node *n, Ref dy) {
    Func *f = g->f;
    Ref x = n->in[0], w = n->in[1];
    if (g->needs[x]) {
        Ref in[2] = {dy, w};
        contribute(g, x, ir_node(f, OP_conv2d_grad_input, n->dtype, node(g, x)->shape, 2, in, &n->attr));
    }
    if (g->needs[w]) {
        Ref in[2] = {x, dy};
        contribute(g, w, ir_node(f, OP_conv2d_grad_weight, n->dtype, node(g, w)->shape, 2, in, &n->attr));
    }
    if (n->nin > 2 && g->needs[n->in[2]]) contribute(g, n->in[2], ir_reduce(f, OP_sum, dy, 0xDu, false));
}

/* y = avgpool2d(x) = window sum / (KH KW), padding counted: the depthwise convolution with
 * weights 1/(KH KW) (groups = C, dilation 1, the pool's stride and padding), so
 *   dx = conv2d_grad_input(dy, w) with w = 1/(KH KW) of shape [C, 1, KH, KW]. */
static void rule_avgpool2d(Grad *g, const Node *n, Ref dy) {
    Func *f = g->f;
    Ref x = n->in[0];
    Shape xs = node(g, x)->shape;
    int64_t kh = n->attr.perm[0], kw = n->attr.perm[1];
    Ref w = ir_const(f, n->dtype, shape_make(4, (int64_t[]){xs.dim[1], 1, kh, kw}, 0), 1.0 / (double)(kh * kw));
    Attr at = n->attr;
    at.perm[0] = at.perm[1] = 1;  /* dilation */
    at.perm[2] = (int)xs.dim[1];  /* groups */
    Ref in[2] = {dy, w};
    contribute(g, x, ir_node(f, OP_conv2d_grad_input, n->dtype, xs, 2, in, &at));
}

/* The [in*scale, in] matrix of bilinear upsampling along one axis (align_corners=False):
 * output o reads source position s = max(0, (o + 1/2)/scale - 1/2) as
 * (1 - l) in[i0] + l in[i1], i0 = floor(s), i1 = min(i0 + 1, in - 1), l = s - i0. */
static Ref bilinear_matrix(Func *f, DType dt, int64_t in, int64_t scale) {
    int64_t out = in * scale;
    double *m = arena_alloc(f->mod->arena, (size_t)(out * in) * sizeof *m);
    for (int64_t o = 0; o < out; o++) {
        double src = ((double)o + 0.5) / (double)scale - 0.5;
        if (src < 0) src = 0;
        int64_t i0 = (int64_t)src, i1 = i0 + 1 < in ? i0 + 1 : in - 1;
        double l = src - (double)i0;
        m[o * in + i0] += 1 - l;
        m[o * in + i1] += l;
    }
    Attr a = {.data = m};
    return ir_node(f, OP_const, dt, shape_make(2, (int64_t[]){out, in}, 0), 0, NULL, &a);
}

/* y = upsample2d(x) by (sh, sw):
 *   nearest: y[i, j] = x[i / sh, j / sw], so dx sums dy over each sh x sw block
 *            (reshape to [N, C, H, sh, W, sw], sum axes 3 and 5);
 *   bilinear: y = A_h x A_w^T for each (n, c), A the matrix of bilinear_matrix, so
 *            dx = A_h^T dy A_w: dy @ A_w, then (.)^T @ A_h, transposed back. */
static void rule_upsample2d(Grad *g, const Node *n, Ref dy) {
    Func *f = g->f;
    Ref x = n->in[0];
    Shape xs = node(g, x)->shape;
    int64_t sh = n->attr.perm[0], sw = n->attr.perm[1];
    if (n->attr.flag == 0) {
        Shape blocks = {.rank = 6, .dim = {xs.dim[0], xs.dim[1], xs.dim[2], sh, xs.dim[3], sw}};
        for (int a = 0; a < 4; a++)
            if (xs.batch_mask >> a & 1) blocks.batch_mask = (uint8_t)(1u << (a < 3 ? a : 4));
        contribute(g, x, ir_reduce(f, OP_sum, ir_reshape(f, dy, blocks), (1u << 3) | (1u << 5), false));
        return;
    }
    Ref aw = bilinear_matrix(f, n->dtype, xs.dim[3], sw), ah = bilinear_matrix(f, n->dtype, xs.dim[2], sh);
    Ref t = ir_matmul(f, dy, aw, false, false);         /* [N, C, Ho, W] */
    Ref u = ir_matmul(f, t, ah, true, false);           /* [N, C, W, H] */
    contribute(g, x, transpose_last2(f, u));
}

/* y = lrn(x) over channels (axis 1): with B[c', c] = 1 when c - n/2 <= c' <= c + (n-1)/2,
 *   s_c = k + alpha/n sum_c' B[c', c] x_c'^2,   y_c = x_c s_c^-beta,
 *   dx_j = dy_j s_j^-beta - (2 alpha beta / n) x_j sum_c B[j, c] dy_c x_c s_c^(-beta-1).
 * Channels are moved last so both window sums are matmuls with the constant band B. */
static void rule_lrn(Grad *g, const Node *n, Ref dy) {
    Func *f = g->f;
    Ref x = n->in[0];
    Shape xs = node(g, x)->shape;
    int r = xs.rank, size = n->attr.perm[0];
    int64_t channels = xs.dim[1];
    double alpha = n->attr.f[0], beta = n->attr.f[1], k = n->attr.f[2];
    int perm[IR_MAX_RANK], inverse[IR_MAX_RANK];
    perm[0] = 0;
    for (int a = 2; a < r; a++) perm[a - 1] = a;
    perm[r - 1] = 1;
    for (int a = 0; a < r; a++) inverse[perm[a]] = a;
    double *band = arena_alloc(f->mod->arena, (size_t)(channels * channels) * sizeof *band);
    for (int64_t c = 0; c < channels; c++)
        for (int64_t from = c - size / 2; from <= c + (size - 1) / 2; from++)
            if (from >= 0 && from < channels) band[from * channels + c] = 1;
    Attr ba = {.data = band};
    Ref b = ir_node(f, OP_const, n->dtype, shape_make(2, (int64_t[]){channels, channels}, 0), 0, NULL, &ba);
    Ref xt = ir_transpose(f, x, perm), dyt = ir_transpose(f, dy, perm);
    Ref s = add(g, cst(g, x, k), mul(g, cst(g, x, alpha / size), ir_matmul(f, mul(g, xt, xt), b, false, false)));
    Ref s_beta = ir_binary(f, OP_pow, s, cst(g, x, -beta));
    Ref t = mul(g, mul(g, dyt, xt), dvd(g, s_beta, s));
    Ref u = ir_matmul(f, t, b, false, true);
    Ref dxt = sub(g, mul(g, dyt, s_beta), mul(g, cst(g, x, 2 * alpha * beta / size), mul(g, xt, u)));
    contribute(g, x, ir_transpose(f, dxt, inverse));
}

/* When the adjoint of a recurrent op's rows is the gradient of their h part alone (the slice
 * the layer outputs: concat(dh, zeros) along the last axis), dh itself: the gradient kernels
 * take it without the zeros. */
static Ref h_part_adjoint(Grad *g, Ref dy, int64_t H) {
    const Node *dn = node(g, dy);
    double zero;
    if (dn->op == OP_concat && dn->nin == 2 && dn->attr.axis == 2 && node(g, dn->in[0])->shape.dim[2] == H &&
        splat_const(g->f, dn->in[1], &zero) && zero == 0)
        return dn->in[0];
    return dy;
}

/* d w_hh of a recurrent op whose output seq [B, T, W] starts every row with h_t:
 * sum_t dG_t^T h_{t-1} = dG^T Hprev, one matmul of dG [B*T, GH] with
 * Hprev = concat(0 [B, 1, H], h[:, 0:T-1]) [B*T, H]  (h_{-1} = 0; nothing at T = 1). */
static void contribute_recurrent_weight(Grad *g, Ref w, Ref seq, Ref dG, int64_t H, int64_t GH) {
    Func *f = g->f;
    Shape ss = node(g, seq)->shape;
    int64_t B = ss.dim[0], T = ss.dim[1];
    if (!g->needs[w] || T < 2) return;
    Shape hs = ss;
    hs.dim[1] = T - 1;
    hs.dim[2] = H;
    int64_t start[IR_MAX_RANK] = {0}, step[IR_MAX_RANK] = {1, 1, 1};
    Ref parts[2] = {REF_NONE, ir_slice(f, seq, start, step, hs)}; /* h_0 .. h_{T-2} */
    Shape z = hs;
    z.dim[1] = 1;
    parts[0] = ir_const(f, node(g, seq)->dtype, z, 0.0);
    Shape g2 = {.rank = 2, .dim = {B * T, GH}, .batch_mask = ss.batch_mask & 1};
    Shape h2 = {.rank = 2, .dim = {B * T, H}, .batch_mask = ss.batch_mask & 1};
    contribute(g, w, ir_matmul(f, ir_reshape(f, dG, g2), ir_reshape(f, ir_concat(f, 2, parts, 1), h2), true, false));
}

/* ws = lstm_seq(xw, w_hh), the LSTM over the sequence (ops.h): per step
 * p_t = xw_t + h_{t-1} w_hh^T and ws_t = [h_t | c_t | i | f | g | o] from p_t. The reverse time
 * loop is the lstm_seq_grad kernel, which gives dG = d loss/d p (every step at once):
 *   d xw   = dG
 *   d w_hh = sum_t dG_t^T h_{t-1} = dG^T Hprev  with dG as [B*T, 4H] and
 *            Hprev = concat(0 [B, 1, H], h[:, 0:T-1]) as [B*T, H]  (h_{-1} = 0; nothing at T = 1)
 * When the adjoint of ws is the gradient of its h part alone (the slice the layer outputs:
 * concat(dh, zeros) along the last axis), the kernel takes dh [B, T, H] directly. */
static void rule_lstm_seq(Grad *g, int i, const Node *n, Ref dy) {
    Func *f = g->f;
    Ref xw = n->in[0], w = n->in[1];
    Shape ws = n->shape;
    int64_t H = ws.dim[2] / 6;
    dy = h_part_adjoint(g, dy, H);
    Ref in[3] = {i, w, dy};
    Ref dxw = ir_node(f, OP_lstm_seq_grad, n->dtype, node(g, xw)->shape, 3, in, NULL);
    contribute(g, xw, dxw);
    contribute_recurrent_weight(g, w, i, dxw, H, 4 * H);
}

/* h = rnn_seq(xw, w_hh): the rnn_seq_grad kernel gives dP = d loss/d xw for every step, and
 * d w_hh = dP^T Hprev (one matmul, Hprev as for lstm_seq). */
static void rule_rnn_seq(Grad *g, int i, const Node *n, Ref dy) {
    Func *f = g->f;
    Ref xw = n->in[0], w = n->in[1];
    Shape hs = n->shape;
    int64_t H = hs.dim[2];
    Ref in[3] = {i, w, dy};
    Ref dp = ir_node(f, OP_rnn_seq_grad, n->dtype, hs, 3, in, &n->attr);
    contribute(g, xw, dp);
    contribute_recurrent_weight(g, w, i, dp, H, H);
}

/* The slice [from, from + width) of the last axis of x [B, T, W]. */
static Ref last_axis_slice(Func *f, Ref x, int64_t from, int64_t width) {
    Shape s = f->nodes[x].shape;
    int64_t start[IR_MAX_RANK] = {0, 0, from}, step[IR_MAX_RANK] = {1, 1, 1};
    s.dim[2] = width;
    return ir_slice(f, x, start, step, s);
}

/* ws = gru_seq(xw, w_hh, b_hh), the GRU over the sequence (ops.h): per step
 * q_t = h_{t-1} w_hh^T + b_hh and ws_t = [h_t | r | z | n | hn]. The reverse time loop is the
 * gru_seq_grad kernel, which gives dG_t = [dr', dz', dq_n, dn'] (every step at once):
 *   d xw   = [dr', dz', dn']                       = concat(dG[0:2H], dG[3H:4H])
 *   dQ     = [dr', dz', dq_n]                      = dG[0:3H]
 *   d w_hh = sum_t dQ_t^T h_{t-1} = dQ^T Hprev   with dQ as [B*T, 3H], Hprev as in lstm_seq
 *   d b_hh = sum over b, t of dQ
 * When the adjoint of ws is the gradient of its h part alone, the kernel takes dh directly. */
static void rule_gru_seq(Grad *g, int i, const Node *n, Ref dy) {
    Func *f = g->f;
    Ref xw = n->in[0], w = n->in[1], bias = n->in[2];
    Shape ws = n->shape;
    int64_t H = ws.dim[2] / 5;
    dy = h_part_adjoint(g, dy, H);
    Ref in[3] = {i, w, dy};
    Shape gs = ws;
    gs.dim[2] = 4 * H;
    Ref dG = ir_node(f, OP_gru_seq_grad, n->dtype, gs, 3, in, NULL);
    Ref parts[2] = {last_axis_slice(f, dG, 0, 2 * H), last_axis_slice(f, dG, 3 * H, H)};
    contribute(g, xw, ir_concat(f, 2, parts, 2));
    Ref dq = last_axis_slice(f, dG, 0, 3 * H);
    if (g->needs[bias]) contribute(g, bias, ir_reduce(f, OP_sum, dq, 0x3u, false));
    contribute_recurrent_weight(g, w, i, dq, H, 3 * H);
}

/* ---------------------------------------------------------------- the rules */

/* Applies the rule of forward node i, whose adjoint is dy. Returns false for an op with
 * OPF_GRAD but no rule (an internal error). */
static bool grad_rule(Grad *g, int i, Ref dy) {
    Func *f = g->f;
    const Node copy = f->nodes[i], *n = &copy;  /* builders may move f->nodes */
    Op op = n->op;
    Ref x = n->nin > 0 ? n->in[0] : REF_NONE, b = n->nin > 1 ? n->in[1] : REF_NONE;
    if (op_info[op].flags & OPF_ACT) {
        /* y = act(x): dx = dy * act'(x), by the act_grad kernel with the forward's attrs */
        Attr at = n->attr;
        at.fwd_op = op;
        Ref in[2] = {x, dy};
        contribute(g, x, ir_node(f, OP_act_grad, n->dtype, n->shape, 2, in, &at));
        return true;
    }
    switch (op) {
    case OP_add: /* y = a + b: da = dy, db = dy */
        contribute(g, x, dy);
        contribute(g, b, dy);
        return true;
    case OP_sub: /* y = a - b: da = dy, db = -dy */
        contribute(g, x, dy);
        if (g->needs[b]) contribute(g, b, neg(g, dy));
        return true;
    case OP_mul: /* y = a * b: da = dy * b, db = dy * a */
        if (g->needs[x]) contribute(g, x, mul(g, dy, b));
        if (g->needs[b]) contribute(g, b, mul(g, dy, x));
        return true;
    case OP_div: /* y = a / b: da = dy / b, db = -dy * a / b^2 */
        if (g->needs[x]) contribute(g, x, dvd(g, dy, b));
        if (g->needs[b]) contribute(g, b, neg(g, dvd(g, mul(g, dy, x), mul(g, b, b))));
        return true;
    case OP_pow: { /* y = a^b: da = dy * b * a^(b-1), db = dy * y * ln a (0 where a = 0) */
        if (g->needs[x]) {
            Node *bn = node(g, b);
            Ref da;
            if (bn->op == OP_const && !bn->attr.data) {
                double c = bn->attr.f[0];
                if (c == 1) da = dy;
                else if (c == 2) da = mul(g, dy, mul(g, cst(g, x, 2), x));
                else da = mul(g, dy, mul(g, cst(g, x, c), ir_binary(f, OP_pow, x, cst(g, x, c - 1))));
            } else {
                da = mul(g, dy, mul(g, b, ir_binary(f, OP_pow, x, sub(g, b, cst(g, b, 1)))));
            }
            contribute(g, x, da);
        }
        if (g->needs[b]) {
            Ref zero = ir_binary(f, OP_eq, x, cst(g, x, 0));
            Ref term = mul(g, dy, mul(g, i, ir_unary(f, OP_log, x)));
            contribute(g, b, ir_select(f, zero, zeros_like(g, b), term));
        }
        return true;
    }
    case OP_maximum:   /* y = max(a, b): da = dy where a >= b, db = dy elsewhere */
    case OP_minimum: { /* y = min(a, b): da = dy where a <= b, db = dy elsewhere */
        Ref to_a = ir_binary(f, op == OP_maximum ? OP_ge : OP_le, x, b);
        if (g->needs[x]) contribute(g, x, ir_select(f, to_a, dy, zeros_like(g, x)));
        if (g->needs[b]) contribute(g, b, ir_select(f, to_a, zeros_like(g, b), dy));
        return true;
    }
    case OP_select: { /* y = c ? a : b: da = c ? dy : 0, db = c ? 0 : dy; no gradient to c */
        Ref c = n->in[0], a = n->in[1], e = n->in[2];
        if (g->needs[a]) contribute(g, a, ir_select(f, c, dy, zeros_like(g, a)));
        if (g->needs[e]) contribute(g, e, ir_select(f, c, zeros_like(g, e), dy));
        return true;
    }
    case OP_neg: /* y = -x: dx = -dy */
        contribute(g, x, neg(g, dy));
        return true;
    case OP_exp: /* y = e^x: dx = dy * y */
        contribute(g, x, mul(g, dy, i));
        return true;
    case OP_log: /* y = ln x: dx = dy / x */
        contribute(g, x, dvd(g, dy, x));
        return true;
    case OP_sqrt: /* y = sqrt x: dx = dy / (2 y) */
        contribute(g, x, dvd(g, dy, mul(g, cst(g, x, 2), i)));
        return true;
    case OP_abs: /* y = |x|: dx = dy * sign(x) (0 at 0, as PyTorch) */
        contribute(g, x, mul(g, dy, ir_unary(f, OP_sign, x)));
        return true;
    case OP_cos: /* y = cos x: dx = -dy sin x = dy cos(x + pi/2) (the IR has no sin) */
        contribute(g, x, mul(g, dy, ir_unary(f, OP_cos, add(g, x, cst(g, x, M_PI / 2)))));
        return true;
    case OP_erf: /* y = erf x: dx = dy * 2/sqrt(pi) * e^(-x^2) */
        contribute(g, x, mul(g, dy, mul(g, cst(g, x, 2 / sqrt(M_PI)),
                                         ir_unary(f, OP_exp, neg(g, mul(g, x, x))))));
        return true;
    case OP_sum: /* y = sum_axes x: dx = broadcast(dy) */
        contribute(g, x, expand_reduced(f, dy, node(g, x)->shape, n->attr.axes));
        return true;
    case OP_mean: { /* y = sum_axes x / count: dx = broadcast(dy) / count (count at run time) */
        const Shape xshape = node(g, x)->shape, *xs = &xshape;
        double count = 1;
        bool batch = false;
        for (int a = 0; a < xs->rank; a++)
            if (n->attr.axes >> a & 1) {
                count *= (double)xs->dim[a];
                batch = batch || (xs->batch_mask >> a & 1);
            }
        Ref d = expand_reduced(f, dy, xshape, n->attr.axes);
        Ref denom = cst(g, x, count);
        if (batch) {
            Ref nb = ir_node(f, OP_batch_size, n->dtype, shape_scalar(), 0, NULL, NULL);
            denom = count == 1 ? nb : mul(g, denom, nb);
        }
        contribute(g, x, dvd(g, d, denom));
        return true;
    }
    case OP_max: rule_max(g, i, n, dy); return true;
    case OP_matmul: rule_matmul(g, n, dy); return true;
    case OP_reshape: /* same values: dx = reshape(dy, shape of x) */
        contribute(g, x, ir_reshape(f, dy, node(g, x)->shape));
        return true;
    case OP_transpose: { /* y axis k = x axis perm[k]: dx = transpose(dy, perm^-1) */
        int inverse[IR_MAX_RANK];
        for (int a = 0; a < n->shape.rank; a++) inverse[n->attr.perm[a]] = a;
        contribute(g, x, ir_transpose(f, dy, inverse));
        return true;
    }
    case OP_broadcast: rule_broadcast(g, n, dy); return true;
    case OP_slice: rule_slice(g, n, dy); return true;
    case OP_concat: { /* y = [x0; x1; ...] along axis: dxj = dy[offset_j : offset_j + len_j] */
        int axis = n->attr.axis;
        int64_t offset = 0;
        for (int j = 0; j < n->nin; j++) {
            Ref xj = n->in[j];
            int64_t len = node(g, xj)->shape.dim[axis];
            if (g->needs[xj]) contribute(g, xj, slice_axis(f, dy, axis, offset, 1, len));
            offset += len;
        }
        return true;
    }
    case OP_gather: { /* y = table[idx]: dtable = scatter_add(idx, dy); no gradient to idx */
        Ref in[2] = {b, dy};
        contribute(g, x, ir_node(f, OP_scatter_add, node(g, x)->dtype, node(g, x)->shape, 2, in, NULL));
        return true;
    }
    case OP_softmax: { /* y = softmax x: dx = y * (dy - sum(dy * y)) */
        Ref in[2] = {i, dy};
        contribute(g, x, ir_node(f, OP_softmax_grad, n->dtype, n->shape, 2, in, NULL));
        return true;
    }
    case OP_log_softmax: { /* y = log softmax x: dx = dy - e^y * sum(dy) */
        Ref in[2] = {i, dy};
        contribute(g, x, ir_node(f, OP_log_softmax_grad, n->dtype, n->shape, 2, in, NULL));
        return true;
    }
    case OP_cross_entropy: {
        /* L = mean over positions of -sum_c q_c log softmax(z)_c:
         * dz = dL * (softmax(z) - q) / count (weighted as PyTorch), by cross_entropy_grad.
         * Labels and class weights get no gradient. */
        Ref in[IR_MAX_INPUTS];
        for (int j = 0; j < n->nin; j++) in[j] = n->in[j];
        in[n->nin] = dy;
        contribute(g, x, ir_node(f, OP_cross_entropy_grad, node(g, x)->dtype, node(g, x)->shape,
                                 n->nin + 1, in, &n->attr));
        return true;
    }
    case OP_conv2d: rule_conv2d(g, n, dy); return true;
    case OP_maxpool2d: { /* dy goes to the element each window took (its first maximum) */
        Ref in[2] = {x, dy};
        contribute(g, x, ir_node(f, OP_maxpool2d_grad, n->dtype, node(g, x)->shape, 2, in, &n->attr));
        return true;
    }
    case OP_avgpool2d: rule_avgpool2d(g, n, dy); return true;
    case OP_upsample2d: rule_upsample2d(g, n, dy); return true;
    case OP_lrn: rule_lrn(g, n, dy); return true;
    case OP_lstm_seq: rule_lstm_seq(g, i, n, dy); return true;
    case OP_gru_seq: rule_gru_seq(g, i, n, dy); return true;
    case OP_rnn_seq: rule_rnn_seq(g, i, n, dy); return true;
    default:
        fprintf(stderr, "nnc: internal error: grad: no gradient rule for op '%s' (%%%d)\n",
                op_info[op].name, i);
        return false;
    }
}

/* ---------------------------------------------------------------- the function */

Func *grad_build(Module *m) {
    Func *existing = module_find_func(m, "grad");
    if (existing) return existing;
    Func *loss = module_find_func(m, "loss");
    Ref loss_ref = REF_NONE;
    for (int i = 0; loss && i < loss->nouts; i++)
        if (loss->outs[i].role == OUT_LOSS) loss_ref = loss->outs[i].value;
    if (loss_ref == REF_NONE) {
        fprintf(stderr, "nnc: error: model '%s' has no loss, so it cannot be trained\n", m->name);
        return NULL;
    }

    Func *f = module_add_func(m, "grad");
    for (int i = 0; i < loss->nargs; i++) {
        const FuncArg *a = &loss->args[i];
        func_add_arg(f, a->name, a->role, a->dtype, a->shape, a->loc);
    }
    /* the forward pass, node for node: refs below nfwd mean the same in both functions */
    for (int i = 0; i < loss->nnodes; i++) {
        const Node *src = &loss->nodes[i];
        Ref r = ir_node(f, src->op, src->dtype, src->shape, src->nin, src->in, &src->attr);
        f->nodes[r].name = src->name;
        f->nodes[r].loc = src->loc;
    }
    for (int i = 0; i < loss->nouts; i++)
        func_add_out(f, loss->outs[i].name, loss->outs[i].role, loss->outs[i].value);

    Grad g = {.f = f, .nfwd = loss->nnodes};
    g.needs = calloc((size_t)g.nfwd, sizeof *g.needs);
    g.adj = malloc((size_t)g.nfwd * sizeof *g.adj);
    if (!g.needs || !g.adj) abort();
    mark_dependents(f, -1, g.needs);
    for (int i = 0; i < g.nfwd; i++) g.adj[i] = REF_NONE;

    bool ok = true;
    if (g.needs[loss_ref]) {
        g.adj[loss_ref] = cst(&g, loss_ref, 1.0);  /* d loss / d loss */
        for (int i = g.nfwd - 1; i >= 0 && ok; i--) {
            if (g.adj[i] == REF_NONE || !g.needs[i] || !flows(&f->nodes[i])) continue;
            int first_new = f->nnodes;
            ok = grad_rule(&g, i, g.adj[i]);
            for (int j = first_new; j < f->nnodes; j++) f->nodes[j].loc = f->nodes[i].loc;
        }
    }

    /* one gradient per parameter: the sum over every read of it */
    for (int t = 0; ok && t < m->ntensors; t++) {
        if (m->tensors[t].kind != TK_PARAM) continue;
        Ref sum = REF_NONE;
        for (int i = 0; i < g.nfwd; i++) {
            const Node *n = &f->nodes[i];
            if (n->op != OP_tensor || n->attr.tensor != t || g.adj[i] == REF_NONE) continue;
            sum = sum == REF_NONE ? g.adj[i] : add(&g, sum, g.adj[i]);
        }
        if (sum == REF_NONE) sum = ir_const(f, m->tensors[t].dtype, m->tensors[t].shape, 0.0);
        func_add_out(f, m->tensors[t].name, OUT_GRAD, sum);
    }
    free(g.needs);
    free(g.adj);
    return ok ? f : NULL;
}
