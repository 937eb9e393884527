/* simplify.c — algebraic simplification.
 *
 * Local rewrites of one node given its (already simplified) inputs. Every rule is exact in
 * IEEE arithmetic, NaN and infinities included, with one documented exception: x + 0 -> x
 * turns a +0 result into -0 when x is -0 (as does every compiler that folds x + 0 without
 * knowing the sign of zero; only a division by that zero could tell).
 *
 *   x * 1, 1 * x, x / 1, x ^ 1, x + 0, 0 + x, x - 0  -> x
 *   x * 0, 0 * x (i32 only: for floats, NaN * 0 and inf * 0 are NaN)  -> 0
 *   -(-x)                                         -> x
 *   select(c, a, b), c a constant                 -> a if c != 0 else b
 *   select(c, a, a)                               -> a
 *   cast to the input's dtype                     -> x
 *   stop_gradient(x)                              -> x once gradients exist (see below)
 *   transpose(transpose(x, p), q)                 -> transpose(x, p o q); identity perm -> x
 *   reshape(reshape(x))                           -> reshape(x); to x's own shape -> x
 *   broadcast(broadcast(x))                       -> broadcast(x); to x's own shape -> x
 *   slice(slice(x))                               -> one slice; the whole input -> x
 *   sum/mean/max over no axis, or only over axes of size 1
 *                                                 -> x (keepdims) or reshape(x)
 *   concat of one input                           -> x
 *   add(concat(a0, a1, ...), concat(b0, b1, ...)) along one axis, where at each position at
 *   most one side is not a zero constant, or both sides are parts of the same extent
 *                                                 -> concat(a0 + b0 or the non-zero one, ...)
 *     (grad.c sums the gradients of slices, zero-padded by concat, one add per slice: an
 *     LSTM's gates and time steps; this turns the sum into one concat)
 *   an elementwise op whose inputs are all broadcasts (or splat constants)
 *                                                 -> broadcast(the op on the smaller shape)
 *
 * stop_gradient only matters to grad.c, which differentiates `loss`: it is removed everywhere
 * except in `loss` while the module has no `grad` yet (a later grad_build must still see it).
 */
#include "nnc.h"

#include <string.h>

typedef struct Simplifier {
    Rewrite *rw;
    Func *f;
    bool drop_stop_gradient;
} Simplifier;

static Node *in_node(Simplifier *s, const Node *n, int i) { return &s->f->nodes[n->in[i]]; }

static bool splat_is(Simplifier *s, Ref r, double value) {
    double v;
    return splat_const(s->f, r, &v) && v == value;
}

/* r can stand for n: same dtype and shape. */
static Ref same(Simplifier *s, const Node *n, Ref r) {
    const Node *x = &s->f->nodes[r];
    return x->dtype == n->dtype && shape_eq(&x->shape, &n->shape) ? r : REF_NONE;
}

/* Reducing over `axes` of x only visits axes of size 1 (no axis at all included). */
static bool trivial_reduction(const Shape *x, uint32_t axes) {
    if (axes >> x->rank) return false;
    for (int i = 0; i < x->rank; i++)
        if (axes >> i & 1 && (x->batch_mask >> i & 1 || x->dim[i] != 1)) return false;
    return true;
}

static bool identity_perm(const Node *n) {
    for (int i = 0; i < n->shape.rank; i++)
        if (n->attr.perm[i] != i) return false;
    return true;
}

/* ---------------------------------------------------------------- elementwise of broadcasts */

/* op(broadcast(a, S), broadcast(b, S), splat) -> broadcast(op(a', b', splat'), S) with a', b'
 * broadcast to their common shape only: the op runs on fewer elements, exactly. Rewrites n
 * into the outer broadcast; returns whether it did. */
static bool hoist_broadcasts(Simplifier *s, Node *n) {
    if (!(op_info[n->op].flags & OPF_ELEM) || n->nin == 0) return false;
    Shape common = shape_scalar();
    int broadcasts = 0;
    for (int j = 0; j < n->nin; j++) {
        const Node *x = in_node(s, n, j);
        double v;
        if (x->op == OP_broadcast) {
            if (!shape_broadcast(&common, &in_node(s, x, 0)->shape, &common)) return false;
            broadcasts++;
        } else if (!splat_const(s->f, n->in[j], &v)) {
            return false;
        }
    }
    Shape back;
    if (!broadcasts || shape_eq(&common, &n->shape) ||
        !shape_broadcast(&common, &n->shape, &back) || !shape_eq(&back, &n->shape))
        return false;
    Ref in[IR_MAX_INPUTS];
    for (int j = 0; j < n->nin; j++) {
        const Node *x = in_node(s, n, j);
        if (x->op == OP_broadcast) {
            Ref inner = x->in[0];
            in[j] = shape_eq(&in_node(s, x, 0)->shape, &common)
                        ? inner
                        : ir_node(s->f, OP_broadcast, x->dtype, common, 1, &inner, NULL);
        } else {
            in[j] = ir_node(s->f, OP_const, x->dtype, common, 0, NULL, &x->attr);
        }
    }
    Ref small = ir_node(s->f, n->op, n->dtype, common, n->nin, in, &n->attr);
    n->op = OP_broadcast;
    n->nin = 1;
    n->in[0] = small;
    memset(&n->attr, 0, sizeof n->attr);
    return true;
}

/* ---------------------------------------------------------------- sums of padded concats */

enum { MAX_PARTS = 256 };

typedef struct Parts {
    int n;
    Ref ref[MAX_PARTS];
    int64_t start[MAX_PARTS], end[MAX_PARTS];
    bool zero[MAX_PARTS];
} Parts;

/* The pieces of r along axis: a concat's inputs, through nested concats. */
static bool collect_parts(Simplifier *s, Ref r, int axis, int64_t *offset, Parts *p) {
    const Node *x = &s->f->nodes[r];
    if (x->op == OP_concat && x->attr.axis == axis) {
        for (int j = 0; j < x->nin; j++)
            if (!collect_parts(s, x->in[j], axis, offset, p)) return false;
        return true;
    }
    if (p->n == MAX_PARTS) return false;
    p->ref[p->n] = r;
    p->start[p->n] = *offset;
    *offset += x->shape.dim[axis];
    p->end[p->n] = *offset;
    p->zero[p->n] = splat_is(s, r, 0);
    p->n++;
    return true;
}

/* Whether every part of p that meets [from, to) is a zero constant. */
static bool zero_over(const Parts *p, int64_t from, int64_t to) {
    for (int k = 0; k < p->n; k++)
        if (p->start[k] < to && p->end[k] > from && !p->zero[k]) return false;
    return true;
}

/* add(concat(...), concat(...)) along one axis -> one concat (see the rules above). The
 * result is planned first (pieces: a part of either side, the sum of two parts of the same
 * extent, or a run of zeros) and built only when the whole plan works. */
static Ref add_of_concats(Simplifier *s, const Node *n) {
    const Node *a = in_node(s, n, 0), *b = in_node(s, n, 1);
    if (a->op != OP_concat || b->op != OP_concat || a->attr.axis != b->attr.axis) return REF_NONE;
    int axis = a->attr.axis;
    if (n->shape.batch_mask >> axis & 1) return REF_NONE;
    static Parts pa, pb; /* large; simplify is not reentrant */
    int64_t oa = 0, ob = 0;
    pa.n = pb.n = 0;
    if (!collect_parts(s, n->in[0], axis, &oa, &pa) || !collect_parts(s, n->in[1], axis, &ob, &pb))
        return REF_NONE;
    static struct Piece {
        Ref x, y;           /* y != REF_NONE: x + y; x == REF_NONE: zeros */
        int64_t from, to;
    } plan[MAX_PARTS];
    int np = 0, ka = 0, kb = 0;
    for (int64_t pos = 0, end = n->shape.dim[axis]; pos < end;) {
        while (pa.end[ka] <= pos) ka++;
        while (pb.end[kb] <= pos) kb++;
        struct Piece p = {.x = REF_NONE, .y = REF_NONE, .from = pos};
        if (pa.zero[ka] && pb.zero[kb]) {
            p.to = pa.end[ka] < pb.end[kb] ? pa.end[ka] : pb.end[kb];
            if (np && plan[np - 1].x == REF_NONE) { /* one run of zeros */
                plan[np - 1].to = p.to;
                pos = p.to;
                continue;
            }
        } else if (!pa.zero[ka] && !pb.zero[kb]) {
            if (pa.start[ka] != pos || pb.start[kb] != pos || pa.end[ka] != pb.end[kb])
                return REF_NONE;
            p.x = pa.ref[ka];
            p.y = pb.ref[kb];
            p.to = pa.end[ka];
        } else {
            const Parts *live = pa.zero[ka] ? &pb : &pa, *other = pa.zero[ka] ? &pa : &pb;
            int k = pa.zero[ka] ? kb : ka;
            if (live->start[k] != pos || !zero_over(other, pos, live->end[k])) return REF_NONE;
            p.x = live->ref[k];
            p.to = live->end[k];
        }
        if (np == MAX_PARTS) return REF_NONE;
        plan[np++] = p;
        pos = p.to;
    }
    Ref out[MAX_PARTS];
    for (int i = 0; i < np; i++) {
        if (plan[i].y != REF_NONE) {
            out[i] = ir_binary(s->f, OP_add, plan[i].x, plan[i].y);
        } else if (plan[i].x != REF_NONE) {
            out[i] = plan[i].x;
        } else {
            Shape z = n->shape;
            z.dim[axis] = plan[i].to - plan[i].from;
            out[i] = ir_const(s->f, n->dtype, z, 0);
        }
    }
    return np == 1 ? out[0] : ir_concat(s->f, np, out, axis);
}

/* One rule applied to n: returns the value n simplifies to, or REF_NONE with *changed set
 * when n itself was rewritten (it is then tried again), or REF_NONE alone. */
static Ref simplify_node(Simplifier *s, Node *n, bool *changed) {
    Ref a = n->nin > 0 ? n->in[0] : REF_NONE, b = n->nin > 1 ? n->in[1] : REF_NONE;
    if (hoist_broadcasts(s, n)) {
        *changed = true;
        return REF_NONE;
    }
    switch (n->op) {
    case OP_add:
        if (splat_is(s, b, 0)) return same(s, n, a);
        if (splat_is(s, a, 0)) return same(s, n, b);
        return add_of_concats(s, n);
    case OP_sub:
        if (splat_is(s, b, 0)) return same(s, n, a);
        break;
    case OP_mul:
        if (splat_is(s, b, 1)) return same(s, n, a);
        if (splat_is(s, a, 1)) return same(s, n, b);
        if (n->dtype == DT_I32 && (splat_is(s, a, 0) || splat_is(s, b, 0))) {
            Attr zero = {0};
            return rewrite_emit(s->rw, n, OP_const, n->dtype, n->shape, 0, NULL, &zero);
        }
        break;
    case OP_div:
    case OP_pow:
        if (splat_is(s, b, 1)) return same(s, n, a);
        break;
    case OP_neg:
        if (in_node(s, n, 0)->op == OP_neg) return same(s, n, in_node(s, n, 0)->in[0]);
        break;
    case OP_select: {
        double c;
        if (splat_const(s->f, a, &c)) return same(s, n, c != 0 ? b : n->in[2]);
        if (b == n->in[2]) return same(s, n, b);
        break;
    }
    case OP_cast: return same(s, n, a);
    case OP_stop_gradient:
        if (s->drop_stop_gradient) return same(s, n, a);
        break;
    case OP_transpose: {
        const Node *x = in_node(s, n, 0);
        if (x->op == OP_transpose) { /* out axis i = mid axis q[i] = x axis p[q[i]] */
            int perm[IR_MAX_RANK];
            for (int i = 0; i < n->shape.rank; i++) perm[i] = x->attr.perm[n->attr.perm[i]];
            memcpy(n->attr.perm, perm, sizeof perm);
            n->in[0] = x->in[0];
            *changed = true;
            return REF_NONE;
        }
        if (identity_perm(n)) return same(s, n, a);
        break;
    }
    case OP_reshape: {
        const Node *x = in_node(s, n, 0);
        if (x->op == OP_reshape) {
            n->in[0] = x->in[0];
            *changed = true;
            return REF_NONE;
        }
        return same(s, n, a);
    }
    case OP_broadcast: {
        const Node *x = in_node(s, n, 0);
        Shape r;
        if (x->op == OP_broadcast && shape_broadcast(&in_node(s, x, 0)->shape, &n->shape, &r) &&
            shape_eq(&r, &n->shape)) {
            n->in[0] = x->in[0];
            *changed = true;
            return REF_NONE;
        }
        return same(s, n, a);
    }
    case OP_slice: {
        const Node *x = in_node(s, n, 0);
        if (x->op == OP_slice) { /* out[i] = mid[s2 + i t2] = x[s1 + (s2 + i t2) t1] */
            for (int i = 0; i < n->shape.rank; i++) {
                n->attr.start[i] = x->attr.start[i] + n->attr.start[i] * x->attr.step[i];
                n->attr.step[i] *= x->attr.step[i];
            }
            n->in[0] = x->in[0];
            *changed = true;
            return REF_NONE;
        }
        for (int i = 0; i < n->shape.rank; i++)
            if (n->attr.start[i] != 0 || n->attr.step[i] != 1) return REF_NONE;
        return same(s, n, a);
    }
    case OP_sum:
    case OP_mean:
    case OP_max:
        if (trivial_reduction(&in_node(s, n, 0)->shape, n->attr.axes)) {
            if (same(s, n, a) != REF_NONE) return a;
            n->op = OP_reshape;
            memset(&n->attr, 0, sizeof n->attr);
            *changed = true;
        }
        break;
    case OP_concat:
        if (n->nin == 1) return same(s, n, a);
        break;
    default: break;
    }
    return REF_NONE;
}

/* require: topological order. */
int simplify(Func *f) {
    Rewrite rw;
    rewrite_begin(&rw, f);
    Simplifier s = {.rw = &rw, .f = f};
    s.drop_stop_gradient = strcmp(f->name, "loss") || module_find_func(f->mod, "grad");
    for (int i = 0; i < rw.nold; i++) {
        Node n = rewrite_node(&rw, i);
        Ref r = REF_NONE;
        bool rewritten = false;
        for (int tries = 0; tries < 8; tries++) {
            bool changed = false;
            r = simplify_node(&s, &n, &changed);
            if (r != REF_NONE || !changed) break;
            rewritten = true;
        }
        if (rewritten) rw.changes++;
        if (r != REF_NONE) rewrite_forward(&rw, i, &n, r);
        else rewrite_keep(&rw, i, &n);
    }
    return rewrite_end(&rw);
}
