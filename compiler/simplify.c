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

/* One rule applied to n: returns the value n simplifies to, or REF_NONE with *changed set
 * when n itself was rewritten (it is then tried again), or REF_NONE alone. */
static Ref simplify_node(Simplifier *s, Node *n, bool *changed) {
    Ref a = n->nin > 0 ? n->in[0] : REF_NONE, b = n->nin > 1 ? n->in[1] : REF_NONE;
    switch (n->op) {
    case OP_add:
        if (splat_is(s, b, 0)) return same(s, n, a);
        if (splat_is(s, a, 0)) return same(s, n, b);
        break;
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
    Simplifier s = {.rw = &rw,
                    .f = f,
                    .drop_stop_gradient = strcmp(f->name, "loss") || module_find_func(f->mod, "grad")};
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
