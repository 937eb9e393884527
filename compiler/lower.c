/* lower.c — the builtin library: argument checks, shape inference and lowering to IR of every
 * builtin layer, activation, math function, loss and metric, plus the operators + - * / ^ @.
 *
 * Each builtin is one function `bi_<name>(Sema *, Call *)` whose Call holds the arguments
 * already bound to its signature (the table at the end). A builtin reports its errors with
 * sema_error (precise location, the shapes involved, a note where the tensor came from) and
 * returns value_error(); otherwise it returns the value it built. Composite layers expand into
 * primitives; conv/pool/upsample/lrn lower to ops of their own (ops.h). docs/layers.md is
 * the user-facing description of every builtin, with its FLOP convention.
 */
#include "nnc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- small IR helpers */

#define F (sema_func(s))

static Value tv(Sema *s, Ref r) {
    return value_tensor(F, r);
}
static Ref scalar(Sema *s, double v) {
    return ir_scalar(F, v);
}
/* An elementwise binary node; float operands of different widths meet in the wider one
 * (a splat constant is rebuilt in that type), so builtins work on f64 tensors too. */
static Ref bin(Sema *s, Op op, Ref a, Ref b) {
    DType da = F->nodes[a].dtype, db = F->nodes[b].dtype;
    if (da != db && da != DT_I32 && db != DT_I32) {
        Ref *narrow = da == DT_F32 ? &a : &b;
        Node *n = &F->nodes[*narrow];
        if (n->op == OP_const && !n->attr.data)
            *narrow = ir_const(F, DT_F64, n->shape, n->attr.f[0]);
        else
            *narrow = ir_cast(F, *narrow, DT_F64);
    }
    return ir_binary(F, op, a, b);
}
static Ref add(Sema *s, Ref a, Ref b) {
    return bin(s, OP_add, a, b);
}
static Ref sub(Sema *s, Ref a, Ref b) {
    return bin(s, OP_sub, a, b);
}
static Ref mul(Sema *s, Ref a, Ref b) {
    return bin(s, OP_mul, a, b);
}
static Ref divide(Sema *s, Ref a, Ref b) {
    return bin(s, OP_div, a, b);
}
static Ref unary(Sema *s, Op op, Ref x) {
    return ir_unary(F, op, x);
}
static const Shape *shape_of(Sema *s, Ref r) {
    return &F->nodes[r].shape;
}

static uint32_t all_axes(int rank) {
    return rank ? (uint32_t)((1u << rank) - 1) : 0;
}
static Ref mean_all(Sema *s, Ref x) {
    return ir_reduce(F, OP_mean, x, all_axes(shape_of(s, x)->rank), false);
}
static Ref sum_all(Sema *s, Ref x) {
    return ir_reduce(F, OP_sum, x, all_axes(shape_of(s, x)->rank), false);
}

/* x[..., start:start+len, ...] along one axis (not the batch axis). */
static Ref slice_axis(Sema *s, Ref x, int axis, int64_t start, int64_t len) {
    Shape out = *shape_of(s, x);
    int64_t st[IR_MAX_RANK] = {0}, step[IR_MAX_RANK];
    for (int i = 0; i < IR_MAX_RANK; i++)
        step[i] = 1;
    st[axis] = start;
    out.dim[axis] = len;
    return ir_slice(F, x, st, step, out);
}

/* in without axis `axis` */
static Shape shape_drop(const Shape *in, int axis) {
    Shape s = {0};
    for (int i = 0; i < in->rank; i++) {
        if (i == axis) continue;
        s.dim[s.rank] = in->dim[i];
        if (in->batch_mask >> i & 1) s.batch_mask |= (uint8_t)(1u << s.rank);
        s.rank++;
    }
    return s;
}

/* in with a new axis of size dim inserted at `axis` */
static Shape shape_insert(const Shape *in, int axis, int64_t dim) {
    Shape s = {0};
    for (int i = 0; i <= in->rank; i++) {
        if (i == axis) s.dim[s.rank++] = dim;
        if (i == in->rank) break;
        s.dim[s.rank] = in->dim[i];
        if (in->batch_mask >> i & 1) s.batch_mask |= (uint8_t)(1u << s.rank);
        s.rank++;
    }
    return s;
}

static bool is_batch_axis(const Shape *sh, int axis) {
    return sh->batch_mask >> axis & 1;
}

static Ref const_data(Sema *s, DType dt, Shape sh, const double *data) {
    Attr a = {.data = data};
    return ir_node(F, OP_const, dt, sh, 0, NULL, &a);
}

/* The run-time number of values along an axis (a constant unless it is the batch axis). */
static Ref axis_count(Sema *s, const Shape *sh, int axis) {
    if (!is_batch_axis(sh, axis)) return scalar(s, (double)sh->dim[axis]);
    Ref n = ir_node(F, OP_batch_size, DT_F32, shape_scalar(), 0, NULL, NULL);
    return sh->dim[axis] == 1 ? n : mul(s, n, scalar(s, (double)sh->dim[axis]));
}

/* ---------------------------------------------------------------- argument checks */

static const char *tstr(Sema *s, const Value *v) {
    return value_type_str(s, v);
}

/* arg i must be a tensor; float when want_float. */
static bool tensor_arg(Sema *s, Call *c, int i, bool want_float) {
    Value *v = &c->arg[i];
    if (v->kind != V_TENSOR) {
        sema_error(s, c->arg_loc[i], "%s expects a tensor for '%s', got %s", c->builtin->name,
                   c->arg_name[i], tstr(s, v));
        return false;
    }
    if (want_float && c->builtin->kind == BK_PARAMS && v->dtype != DT_F32) {
        sema_error(s, c->arg_loc[i], "%s expects an f32 tensor for '%s' (its parameters are f32), got %s",
                   c->builtin->name, c->arg_name[i], tstr(s, v));
        sema_note_origin(s, v);
        return false;
    }
    if (want_float && v->dtype == DT_I32) {
        sema_error(s, c->arg_loc[i], "%s expects a float tensor for '%s', got %s", c->builtin->name,
                   c->arg_name[i], tstr(s, v));
        sema_note_origin(s, v);
        return false;
    }
    return true;
}

static bool int_arg(Sema *s, Call *c, int i, int64_t lo, int64_t *out) {
    Value *v = &c->arg[i];
    if (v->kind != V_NUM || !v->is_int) {
        sema_error(s, c->arg_loc[i], "%s: '%s' must be an integer, got %s", c->builtin->name,
                   c->arg_name[i], tstr(s, v));
        return false;
    }
    if (v->num < (double)lo || v->num > 1e12) {
        if (lo == 1)
            sema_error(s, c->arg_loc[i], "%s: '%s' must be a positive integer, got %lld",
                       c->builtin->name, c->arg_name[i], (long long)v->num);
        else
            sema_error(s, c->arg_loc[i], "%s: '%s' must be at least %lld, got %lld",
                       c->builtin->name, c->arg_name[i], (long long)lo, (long long)v->num);
        return false;
    }
    *out = (int64_t)v->num;
    return true;
}

static bool num_arg(Sema *s, Call *c, int i, double *out) {
    Value *v = &c->arg[i];
    if (v->kind != V_NUM) {
        sema_error(s, c->arg_loc[i], "%s: '%s' must be a number, got %s", c->builtin->name,
                   c->arg_name[i], tstr(s, v));
        return false;
    }
    *out = v->num;
    return true;
}

/* a number in [lo, hi] (hi_open: < hi) */
static bool range_arg(Sema *s, Call *c, int i, double lo, double hi, bool hi_open, double *out) {
    if (!num_arg(s, c, i, out)) return false;
    if (*out < lo || *out > hi || (hi_open && *out == hi)) {
        sema_error(s, c->arg_loc[i], "%s: '%s' must be in [%g, %g%s, got %g", c->builtin->name,
                   c->arg_name[i], lo, hi, hi_open ? ")" : "]", *out);
        return false;
    }
    return true;
}

static bool positive_arg(Sema *s, Call *c, int i, double *out) {
    if (!num_arg(s, c, i, out)) return false;
    if (!(*out > 0)) {
        sema_error(s, c->arg_loc[i], "%s: '%s' must be positive, got %g", c->builtin->name,
                   c->arg_name[i], *out);
        return false;
    }
    return true;
}

static bool bool_arg(Sema *s, Call *c, int i, bool *out) {
    Value *v = &c->arg[i];
    if (v->kind != V_BOOL) {
        sema_error(s, c->arg_loc[i], "%s: '%s' must be true or false, got %s", c->builtin->name,
                   c->arg_name[i], tstr(s, v));
        return false;
    }
    *out = v->num != 0;
    return true;
}

/* A string (or a bare name such as tanh) among choices; returns its index or -1. */
static int choice_arg(Sema *s, Call *c, int i, const char *const *choices, int n) {
    Value *v = &c->arg[i];
    const char *text = v->kind == V_STR                  ? v->str
                       : v->kind == V_FUNC && v->builtin ? v->builtin->name
                                                         : NULL;
    for (int k = 0; text && k < n; k++)
        if (!strcmp(text, choices[k])) return k;
    const char *list = "";
    for (int k = 0; k < n; k++)
        list = arena_printf(sema_arena(s), "%s%s\"%s\"", list, k ? ", " : "", choices[k]);
    const char *close = text ? diag_closest(text, choices, n) : NULL;
    if (close)
        sema_error(s, c->arg_loc[i], "%s: '%s' must be one of %s, got \"%s\"; did you mean \"%s\"?",
                   c->builtin->name, c->arg_name[i], list, text, close);
    else
        sema_error(s, c->arg_loc[i], "%s: '%s' must be one of %s, got %s", c->builtin->name,
                   c->arg_name[i], list, tstr(s, v));
    return -1;
}

/* An integer or a pair of integers (kernel=(3,3)), each >= lo. */
static bool pair_arg(Sema *s, Call *c, int i, int64_t lo, int64_t out[2]) {
    Value *v = &c->arg[i];
    if (v->kind == V_NUM && v->is_int && v->num >= (double)lo && v->num <= 1e9) {
        out[0] = out[1] = (int64_t)v->num;
        return true;
    }
    if (v->kind == V_TUPLE && v->nitems == 2) {
        bool ok = true;
        for (int k = 0; k < 2; k++) {
            Value *it = &v->items[k];
            if (it->kind != V_NUM || !it->is_int || it->num < (double)lo || it->num > 1e9)
                ok = false;
            else
                out[k] = (int64_t)it->num;
        }
        if (ok) return true;
    }
    sema_error(s, c->arg_loc[i], "%s: '%s' must be an integer >= %lld or a pair of them, got %s",
               c->builtin->name, c->arg_name[i], (long long)lo, tstr(s, v));
    return false;
}

/* An axis of a tensor of rank `rank`, negative counting from the end. */
static bool axis_value(Sema *s, Call *c, int i, const Value *v, int rank, int *out) {
    if (v->kind != V_NUM || !v->is_int) {
        sema_error(s, c->arg_loc[i], "%s: '%s' must be an integer axis, got %s", c->builtin->name,
                   c->arg_name[i], tstr(s, v));
        return false;
    }
    int64_t a = (int64_t)v->num;
    if (a < -rank || a >= rank) {
        sema_error(s, c->arg_loc[i], "%s: axis %lld is out of range for rank %d", c->builtin->name,
                   (long long)a, rank);
        return false;
    }
    *out = (int)(a < 0 ? a + rank : a);
    return true;
}

static bool axis_arg(Sema *s, Call *c, int i, int rank, int *out) {
    return axis_value(s, c, i, &c->arg[i], rank, out);
}

/* none = every axis; an integer; or a tuple of distinct axes. */
static bool axes_arg(Sema *s, Call *c, int i, int rank, uint32_t *out) {
    Value *v = &c->arg[i];
    if (v->kind == V_NONE) {
        *out = all_axes(rank);
        return true;
    }
    if (v->kind == V_TUPLE) {
        *out = 0;
        for (int k = 0; k < v->nitems; k++) {
            int a;
            if (!axis_value(s, c, i, &v->items[k], rank, &a)) return false;
            if (*out >> a & 1) {
                sema_error(s, c->arg_loc[i], "%s: axis %d is listed twice", c->builtin->name, a);
                return false;
            }
            *out |= 1u << a;
        }
        return true;
    }
    int a;
    if (!axis_arg(s, c, i, rank, &a)) return false;
    *out = 1u << a;
    return true;
}

/* "conv2d expects [batch, C, H, W], got f32[batch, 784]" with a note at x's origin. */
static bool rank_check(Sema *s, Call *c, int i, int lo, int hi, const char *expect) {
    Value *v = &c->arg[i];
    if (v->shape.rank >= lo && v->shape.rank <= hi) return true;
    sema_error(s, c->arg_loc[i], "%s expects %s, got %s", c->builtin->name, expect, tstr(s, v));
    sema_note_origin(s, v);
    return false;
}

/* The last axis must not be the batch axis (features, classes). */
static bool last_not_batch(Sema *s, Call *c, int i, const char *what) {
    Value *v = &c->arg[i];
    if (v->shape.rank && is_batch_axis(&v->shape, v->shape.rank - 1)) {
        sema_error(s, c->arg_loc[i],
                   "%s: the last axis of %s holds the %s and cannot be the batch axis",
                   c->builtin->name, tstr(s, v), what);
        sema_note_origin(s, v);
        return false;
    }
    return true;
}

/* ---------------------------------------------------------------- operators */

static const char *op_text(int op) {
    switch (op) {
    case '+':
        return "+";
    case '-':
        return "-";
    case '*':
        return "*";
    case '/':
        return "/";
    case '^':
        return "^";
    case '@':
        return "@";
    }
    return "?";
}

static Value fold(Sema *s, SrcLoc loc, int op, Value a, Value b) {
    double x = a.num, y = b.num, r = 0;
    switch (op) {
    case '+':
        r = x + y;
        break;
    case '-':
        r = x - y;
        break;
    case '*':
        r = x * y;
        break;
    case '/':
        if (y == 0) {
            sema_error(s, loc, "division by zero in a constant expression");
            return value_error();
        }
        r = x / y;
        break;
    case '^':
        r = pow(x, y);
        break;
    default:
        sema_error(s, loc, "'%s' needs tensors, got two numbers", op_text(op));
        return value_error();
    }
    if (!isfinite(r)) {
        sema_error(s, loc, "the constant expression overflows or is undefined");
        return value_error();
    }
    Value v = value_num(r);
    v.is_int = a.is_int && b.is_int && v.is_int;
    return v;
}

/* A number as a scalar constant of the given dtype. */
static Value num_tensor(Sema *s, const Value *n, DType dt) {
    Value v = tv(s, ir_const(F, dt, shape_scalar(), n->num));
    v.loc = n->loc;
    return v;
}

static Value matmul(Sema *s, SrcLoc loc, Value a, Value b) {
    if (a.dtype == DT_I32 || b.dtype == DT_I32 || a.dtype != b.dtype) {
        sema_error(s, loc, "'@' needs two float tensors of the same type, got %s and %s",
                   tstr(s, &a), tstr(s, &b));
        sema_note_origin(s, &a);
        sema_note_origin(s, &b);
        return value_error();
    }
    if (a.shape.rank == 0 || b.shape.rank == 0) {
        sema_error(s, loc, "'@' needs tensors of rank 1 or more, got %s and %s", tstr(s, &a),
                   tstr(s, &b));
        return value_error();
    }
    Ref ra = a.ref, rb = b.ref;
    bool vec_a = a.shape.rank == 1, vec_b = b.shape.rank == 1;
    if (vec_a) ra = ir_reshape(F, ra, shape_insert(&a.shape, 0, 1));
    if (vec_b) rb = ir_reshape(F, rb, shape_insert(&b.shape, 1, 1));
    Shape sa = *shape_of(s, ra), sb = *shape_of(s, rb);
    int ka = sa.rank - 1, kb = sb.rank - 2;
    if (sa.dim[ka] != sb.dim[kb] || is_batch_axis(&sa, ka) != is_batch_axis(&sb, kb)) {
        char da[32], db[32];
        snprintf(da, sizeof da, "%s%lld", is_batch_axis(&sa, ka) ? "batch*" : "",
                 (long long)sa.dim[ka]);
        snprintf(db, sizeof db, "%s%lld", is_batch_axis(&sb, kb) ? "batch*" : "",
                 (long long)sb.dim[kb]);
        sema_error(s, loc, "matmul inner dimensions differ: %s @ %s (%s vs %s)", tstr(s, &a),
                   tstr(s, &b), strncmp(da, "batch*1", 8) ? da : "batch",
                   strncmp(db, "batch*1", 8) ? db : "batch");
        sema_note_origin(s, &a);
        sema_note_origin(s, &b);
        return value_error();
    }
    int64_t K = sa.dim[ka];
    Ref r;
    if (sb.rank == 2) {
        r = ir_matmul(F, ra, rb, false, false);
    } else if (sa.rank == 2) {
        /* a[M,K] @ b[..., K, N] = (b^T a^T)^T */
        Ref t = ir_matmul(F, rb, ra, true, true);
        int perm[IR_MAX_RANK];
        int rank = shape_of(s, t)->rank;
        for (int i = 0; i < rank; i++)
            perm[i] = i;
        perm[rank - 2] = rank - 1;
        perm[rank - 1] = rank - 2;
        r = ir_transpose(F, t, perm);
    } else {
        /* broadcast the leading axes, numpy style */
        Shape la = sa, lb = sb, lead;
        la.rank -= 2;
        lb.rank -= 2;
        la.batch_mask &= (uint8_t)((1u << la.rank) - 1);
        lb.batch_mask &= (uint8_t)((1u << lb.rank) - 1);
        if (!shape_broadcast(&la, &lb, &lead) || lead.rank + 2 > IR_MAX_RANK) {
            sema_error(s, loc, "the leading axes of %s @ %s do not broadcast", tstr(s, &a),
                       tstr(s, &b));
            sema_note_origin(s, &a);
            sema_note_origin(s, &b);
            return value_error();
        }
        Shape ta = lead, tb = lead;
        ta.rank = tb.rank = lead.rank + 2;
        ta.dim[lead.rank] = sa.dim[sa.rank - 2];
        ta.dim[lead.rank + 1] = sa.dim[sa.rank - 1];
        tb.dim[lead.rank] = sb.dim[sb.rank - 2];
        tb.dim[lead.rank + 1] = sb.dim[sb.rank - 1];
        for (int k = 0; k < 2; k++) {
            if (is_batch_axis(&sa, sa.rank - 2 + k))
                ta.batch_mask |= (uint8_t)(1u << (lead.rank + k));
            if (is_batch_axis(&sb, sb.rank - 2 + k))
                tb.batch_mask |= (uint8_t)(1u << (lead.rank + k));
        }
        r = ir_matmul(F, ir_broadcast(F, ra, ta), ir_broadcast(F, rb, tb), false, false);
    }
    Shape out = *shape_of(s, r);
    if (vec_b) r = ir_reshape(F, r, shape_drop(&out, out.rank - 1));
    out = *shape_of(s, r);
    if (vec_a) r = ir_reshape(F, r, shape_drop(&out, out.rank - (vec_b ? 1 : 2)));
    Value v = tv(s, r);
    int64_t macs = shape_per_sample(&out) * K;
    sema_layer_op(s, loc, "matmul", v.shape, macs, 2 * macs);
    return v;
}

Value lower_binary(Sema *s, SrcLoc loc, int op, Value a, Value b) {
    if (a.kind == V_ERROR || b.kind == V_ERROR) return value_error();
    if (a.kind == V_UNAVAIL || b.kind == V_UNAVAIL) {
        Value u = a.kind == V_UNAVAIL ? a : b;
        if (!u.label) u.label = a.label ? a.label : b.label;
        return u;
    }
    bool na = a.kind == V_NUM, nb = b.kind == V_NUM;
    if (na && nb) return fold(s, loc, op, a, b);
    if ((!na && a.kind != V_TENSOR) || (!nb && b.kind != V_TENSOR)) {
        sema_error(s, loc, "'%s' needs numbers or tensors, got %s and %s", op_text(op), tstr(s, &a),
                   tstr(s, &b));
        return value_error();
    }
    const Stmt *label = a.label ? a.label : b.label;
    if (op == '@') {
        if (na || nb) {
            sema_error(s, loc, "'@' needs two tensors, got %s and %s", tstr(s, &a), tstr(s, &b));
            return value_error();
        }
        Value v = matmul(s, loc, a, b);
        v.label = label;
        return v;
    }
    /* dtypes: i32 combines with i32 (except / and ^, which are float); otherwise float */
    DType dt;
    if (na)
        dt = b.dtype;
    else if (nb)
        dt = a.dtype;
    else if (a.dtype == b.dtype)
        dt = a.dtype;
    else if (a.dtype == DT_I32)
        dt = b.dtype;
    else if (b.dtype == DT_I32)
        dt = a.dtype;
    else {
        sema_error(s, loc, "'%s' mixes %s and %s; both sides must have the same float type",
                   op_text(op), tstr(s, &a), tstr(s, &b));
        return value_error();
    }
    if (dt == DT_I32 && (op == '/' || op == '^' || (na && !a.is_int) || (nb && !b.is_int)))
        dt = DT_F32;
    if (na) a = num_tensor(s, &a, dt);
    if (nb) b = num_tensor(s, &b, dt);
    Shape out;
    if (!shape_broadcast(&a.shape, &b.shape, &out)) {
        sema_error(s, loc, "shapes %s and %s do not broadcast in '%s'", tstr(s, &a), tstr(s, &b),
                   op_text(op));
        sema_note_origin(s, &a);
        sema_note_origin(s, &b);
        return value_error();
    }
    Ref ra = ir_cast(F, a.ref, dt), rb = ir_cast(F, b.ref, dt);
    Op irop = op == '+'   ? OP_add
              : op == '-' ? OP_sub
              : op == '*' ? OP_mul
              : op == '/' ? OP_div
                          : OP_pow;
    Value v = tv(s, ir_binary(F, irop, ra, rb));
    v.label = label;
    return v;
}

Value lower_neg(Sema *s, SrcLoc loc, Value a) {
    if (a.kind == V_ERROR || a.kind == V_UNAVAIL) return a;
    if (a.kind == V_NUM) {
        Value v = value_num(-a.num);
        v.is_int = a.is_int;
        return v;
    }
    if (a.kind != V_TENSOR) {
        sema_error(s, loc, "unary '-' needs a number or a tensor, got %s", tstr(s, &a));
        return value_error();
    }
    Value v = tv(s, unary(s, OP_neg, a.ref));
    v.label = a.label;
    return v;
}

/* ---------------------------------------------------------------- activations */

/* FLOPs per element: 1 for piecewise-linear, 4 with one transcendental function, 8 for
 * gelu and mish, 5 for softmax (docs/layers.md). */
static Value activation(Sema *s, Call *c, Op op, Attr at, int flops) {
    if (!tensor_arg(s, c, 0, true)) return value_error();
    Value v = tv(s, ir_unary_attr(F, op, c->arg[0].ref, &at));
    sema_layer(s, c, c->builtin->kind_name ? c->builtin->kind_name : c->builtin->name, v.shape, 0,
               flops * shape_per_sample(&v.shape));
    return v;
}

static Value bi_relu(Sema *s, Call *c) {
    return activation(s, c, OP_relu, (Attr){0}, 1);
}
static Value bi_selu(Sema *s, Call *c) {
    return activation(s, c, OP_selu, (Attr){0}, 4);
}
static Value bi_sigmoid(Sema *s, Call *c) {
    return activation(s, c, OP_sigmoid, (Attr){0}, 4);
}
static Value bi_tanh(Sema *s, Call *c) {
    return activation(s, c, OP_tanh, (Attr){0}, 4);
}
static Value bi_silu(Sema *s, Call *c) {
    return activation(s, c, OP_silu, (Attr){0}, 4);
}
static Value bi_mish(Sema *s, Call *c) {
    return activation(s, c, OP_mish, (Attr){0}, 8);
}
static Value bi_hard_sigmoid(Sema *s, Call *c) {
    return activation(s, c, OP_hard_sigmoid, (Attr){0}, 1);
}
static Value bi_hard_swish(Sema *s, Call *c) {
    return activation(s, c, OP_hard_swish, (Attr){0}, 1);
}

static Value bi_leaky_relu(Sema *s, Call *c) {
    double slope;
    if (!num_arg(s, c, 1, &slope)) return value_error();
    return activation(s, c, OP_leaky_relu, (Attr){.f = {slope}}, 1);
}

static Value bi_elu(Sema *s, Call *c) {
    double alpha;
    if (!num_arg(s, c, 1, &alpha)) return value_error();
    return activation(s, c, OP_elu, (Attr){.f = {alpha}}, 4);
}

static Value bi_gelu(Sema *s, Call *c) {
    static const char *const modes[] = {"none", "tanh"};
    int k = choice_arg(s, c, 1, modes, 2);
    if (k < 0) return value_error();
    return activation(s, c, OP_gelu, (Attr){.flag = k}, 8);
}

static Value bi_softplus(Sema *s, Call *c) {
    double beta, threshold;
    if (!positive_arg(s, c, 1, &beta) || !num_arg(s, c, 2, &threshold)) return value_error();
    return activation(s, c, OP_softplus, (Attr){.f = {beta, threshold}}, 4);
}

static Value softmax_like(Sema *s, Call *c, Op op) {
    double t;
    if (!tensor_arg(s, c, 0, true) || !positive_arg(s, c, 1, &t)) return value_error();
    if (!rank_check(s, c, 0, 1, IR_MAX_RANK,
                    "a tensor of rank 1 or more (it normalizes the last axis)"))
        return value_error();
    Ref x = c->arg[0].ref;
    if (t != 1) x = divide(s, x, scalar(s, t)); /* temperature: divide the logits first */
    Value v = tv(s, unary(s, op, x));
    sema_layer(s, c, c->builtin->name, v.shape, 0, 5 * shape_per_sample(&v.shape));
    return v;
}

static Value bi_softmax(Sema *s, Call *c) {
    return softmax_like(s, c, OP_softmax);
}
static Value bi_log_softmax(Sema *s, Call *c) {
    return softmax_like(s, c, OP_log_softmax);
}

/* ---------------------------------------------------------------- math */

static Value math_unary(Sema *s, Call *c, Op op, double (*fn)(double)) {
    Value *x = &c->arg[0];
    if (x->kind == V_NUM) { /* fold: sqrt(2) as a layer argument */
        double r = fn(x->num);
        if (!isfinite(r)) {
            sema_error(s, c->loc, "%s(%g) is undefined", c->builtin->name, x->num);
            return value_error();
        }
        return value_num(r);
    }
    bool int_ok = op == OP_abs;
    if (!tensor_arg(s, c, 0, !int_ok)) return value_error();
    return tv(s, unary(s, op, x->ref));
}

static Value bi_exp(Sema *s, Call *c) {
    return math_unary(s, c, OP_exp, exp);
}
static Value bi_log(Sema *s, Call *c) {
    return math_unary(s, c, OP_log, log);
}
static Value bi_sqrt(Sema *s, Call *c) {
    return math_unary(s, c, OP_sqrt, sqrt);
}
static Value bi_abs(Sema *s, Call *c) {
    return math_unary(s, c, OP_abs, fabs);
}
static Value bi_erf(Sema *s, Call *c) {
    return math_unary(s, c, OP_erf, erf);
}
static Value bi_cos(Sema *s, Call *c) {
    return math_unary(s, c, OP_cos, cos);
}

static Value bi_stop_gradient(Sema *s, Call *c) {
    if (!tensor_arg(s, c, 0, false)) return value_error();
    return tv(s, unary(s, OP_stop_gradient, c->arg[0].ref));
}

static Value reduction(Sema *s, Call *c, Op op) {
    uint32_t axes;
    bool keep;
    if (!tensor_arg(s, c, 0, false)) return value_error();
    if (!axes_arg(s, c, 1, c->arg[0].shape.rank, &axes) || !bool_arg(s, c, 2, &keep))
        return value_error();
    Ref x = ir_cast(F, c->arg[0].ref, c->arg[0].dtype == DT_I32 ? DT_F32 : c->arg[0].dtype);
    return tv(s, ir_reduce(F, op, x, axes, keep));
}

static Value bi_sum(Sema *s, Call *c) {
    return reduction(s, c, OP_sum);
}
static Value bi_mean(Sema *s, Call *c) {
    return reduction(s, c, OP_mean);
}
static Value bi_max(Sema *s, Call *c) {
    return reduction(s, c, OP_max);
}

static Value bi_argmax(Sema *s, Call *c) {
    int axis;
    if (!tensor_arg(s, c, 0, false)) return value_error();
    if (!rank_check(s, c, 0, 1, IR_MAX_RANK, "a tensor of rank 1 or more")) return value_error();
    if (!axis_arg(s, c, 1, c->arg[0].shape.rank, &axis)) return value_error();
    Ref x = ir_cast(F, c->arg[0].ref, DT_F32);
    return tv(s, ir_argmax(F, x, axis));
}

/* ---------------------------------------------------------------- shape functions */

static Value bi_flatten(Sema *s, Call *c) {
    if (!tensor_arg(s, c, 0, false)) return value_error();
    const Shape *in = &c->arg[0].shape;
    if (in->rank <= 1) {
        sema_layer(s, c, "flatten", *in, 0, 0);
        return c->arg[0];
    }
    /* keep the first axis; join the others (the batch axis, if among them, scales the result) */
    Shape out = {.rank = 2, .dim = {in->dim[0], 1}, .batch_mask = (uint8_t)(in->batch_mask & 1)};
    for (int i = 1; i < in->rank; i++) {
        out.dim[1] *= in->dim[i];
        if (is_batch_axis(in, i)) out.batch_mask |= 2;
    }
    Value v = tv(s, ir_reshape(F, c->arg[0].ref, out));
    sema_layer(s, c, "flatten", out, 0, 0);
    return v;
}

/* reshape(x, shape): shape lists the per-sample dimensions when x has a batch axis (a leading
 * `batch` may be written); one -1 is inferred. */
static Value bi_reshape(Sema *s, Call *c) {
    if (!tensor_arg(s, c, 0, false)) return value_error();
    const Value *x = &c->arg[0];
    Value *t = &c->arg[1];
    Value one = *t;
    const Value *items = t;
    int n = 1;
    if (t->kind == V_TUPLE) {
        items = t->items;
        n = t->nitems;
    } else {
        items = &one;
    }
    bool has_batch = shape_has_batch(&x->shape);
    if (has_batch && !is_batch_axis(&x->shape, 0)) {
        sema_error(s, c->arg_loc[0], "reshape needs the batch axis first, got %s", tstr(s, x));
        return value_error();
    }
    int first = 0;
    if (n > 0 && items[0].kind == V_BATCH) {
        if (!has_batch) {
            sema_error(s, c->arg_loc[1], "reshape: %s has no batch axis", tstr(s, x));
            return value_error();
        }
        first = 1;
    }
    Shape out = {0};
    if (has_batch) {
        out.dim[0] = 1;
        out.batch_mask = 1;
        out.rank = 1;
    }
    if (out.rank + n - first > IR_MAX_RANK) {
        sema_error(s, c->arg_loc[1], "reshape: rank %d is too large", out.rank + n - first);
        return value_error();
    }
    int infer_at = -1;
    int64_t known = 1;
    for (int i = first; i < n; i++) {
        const Value *it = &items[i];
        if (it->kind == V_NUM && it->is_int && it->num == -1 && infer_at < 0) {
            infer_at = out.rank;
            out.dim[out.rank++] = 1;
            continue;
        }
        if (it->kind != V_NUM || !it->is_int || it->num <= 0 || it->num > 1e12) {
            sema_error(s, c->arg_loc[1],
                       "reshape: dimensions must be positive integers (one may be -1), got %s",
                       tstr(s, it));
            return value_error();
        }
        known *= (int64_t)it->num;
        out.dim[out.rank++] = (int64_t)it->num;
    }
    int64_t have = shape_numel(&x->shape, 1);
    if (infer_at >= 0) {
        if (known == 0 || have % known) {
            sema_error(s, c->arg_loc[1],
                       "reshape: cannot infer -1: %lld values%s are not a multiple of %lld",
                       (long long)have, has_batch ? " per sample" : "", (long long)known);
            sema_note_origin(s, x);
            return value_error();
        }
        out.dim[infer_at] = have / known;
        known = have;
    }
    if (known != have) {
        sema_error(s, c->arg_loc[1], "cannot reshape %s to %s: %lld values%s vs %lld", tstr(s, x),
                   shape_text(s, &out), (long long)have, has_batch ? " per sample" : "",
                   (long long)known);
        sema_note_origin(s, x);
        return value_error();
    }
    return tv(s, ir_reshape(F, x->ref, out));
}

static bool perm_arg(Sema *s, Call *c, int i, int rank, int *perm) {
    Value *p = &c->arg[i];
    if (p->kind != V_TUPLE || p->nitems != rank) {
        sema_error(s, c->arg_loc[i], "%s: 'perm' must list all %d axes of %s, got %s", c->builtin->name,
                   rank, tstr(s, &c->arg[0]), tstr(s, p));
        return false;
    }
    uint32_t seen = 0;
    for (int k = 0; k < rank; k++) {
        if (!axis_value(s, c, i, &p->items[k], rank, &perm[k])) return false;
        if (seen >> perm[k] & 1) {
            sema_error(s, c->arg_loc[i], "%s: 'perm' is not a permutation (axis %d twice)",
                       c->builtin->name, perm[k]);
            return false;
        }
        seen |= 1u << perm[k];
    }
    return true;
}

static Value bi_transpose(Sema *s, Call *c) {
    if (!tensor_arg(s, c, 0, false)) return value_error();
    int rank = c->arg[0].shape.rank, perm[IR_MAX_RANK];
    if (c->arg[1].kind == V_NONE) {
        if (!rank_check(s, c, 0, 2, IR_MAX_RANK,
                        "a tensor of rank 2 or more (without 'perm' it swaps the last two axes)"))
            return value_error();
        for (int i = 0; i < rank; i++)
            perm[i] = i;
        perm[rank - 2] = rank - 1;
        perm[rank - 1] = rank - 2;
    } else if (!perm_arg(s, c, 1, rank, perm)) {
        return value_error();
    }
    return tv(s, ir_transpose(F, c->arg[0].ref, perm));
}

static Value bi_concat(Sema *s, Call *c) {
    Value *xs = &c->arg[0];
    if (xs->kind != V_TUPLE || xs->nitems == 0) {
        sema_error(s, c->arg_loc[0], "concat expects a list of tensors such as [a, b], got %s",
                   tstr(s, xs));
        return value_error();
    }
    for (int i = 0; i < xs->nitems; i++)
        if (xs->items[i].kind != V_TENSOR) {
            sema_error(s, xs->items[i].loc, "concat expects tensors, got %s",
                       tstr(s, &xs->items[i]));
            return value_error();
        }
    const Value *x0 = &xs->items[0];
    int axis;
    if (!axis_arg(s, c, 1, x0->shape.rank, &axis)) return value_error();
    if (is_batch_axis(&x0->shape, axis)) {
        sema_error(s, c->arg_loc[1], "concat cannot join along the batch axis");
        return value_error();
    }
    Ref *refs = arena_alloc(sema_arena(s), (size_t)xs->nitems * sizeof *refs);
    for (int i = 0; i < xs->nitems; i++) {
        const Value *xi = &xs->items[i];
        bool ok = xi->dtype == x0->dtype && xi->shape.rank == x0->shape.rank &&
                  xi->shape.batch_mask == x0->shape.batch_mask;
        for (int k = 0; ok && k < x0->shape.rank; k++)
            ok = k == axis || xi->shape.dim[k] == x0->shape.dim[k];
        if (!ok) {
            sema_error(s, xi->loc, "concat along axis %d: %s does not match %s in the other axes",
                       axis, tstr(s, xi), tstr(s, x0));
            sema_note_origin(s, xi);
            sema_note_origin(s, x0);
            return value_error();
        }
        refs[i] = xi->ref;
    }
    return tv(s, ir_concat(F, xs->nitems, refs, axis));
}

/* split(x, n, axis): n equal parts, or parts of the listed sizes; a tuple (index it: s[0]). */
static Value bi_split(Sema *s, Call *c) {
    if (!tensor_arg(s, c, 0, false)) return value_error();
    const Value *x = &c->arg[0];
    int axis;
    if (!rank_check(s, c, 0, 1, IR_MAX_RANK, "a tensor of rank 1 or more")) return value_error();
    if (!axis_arg(s, c, 2, x->shape.rank, &axis)) return value_error();
    if (is_batch_axis(&x->shape, axis)) {
        sema_error(s, c->arg_loc[2], "split cannot divide the batch axis");
        return value_error();
    }
    int64_t d = x->shape.dim[axis], sizes[64];
    int n;
    Value *p = &c->arg[1];
    if (p->kind == V_TUPLE) {
        n = p->nitems;
        int64_t total = 0;
        if (n < 1 || n > 64) {
            sema_error(s, c->arg_loc[1], "split: between 1 and 64 parts");
            return value_error();
        }
        for (int i = 0; i < n; i++) {
            if (p->items[i].kind != V_NUM || !p->items[i].is_int || p->items[i].num <= 0) {
                sema_error(s, c->arg_loc[1], "split: part sizes must be positive integers");
                return value_error();
            }
            sizes[i] = (int64_t)p->items[i].num;
            total += sizes[i];
        }
        if (total != d) {
            sema_error(s, c->arg_loc[1],
                       "split: the parts add up to %lld, but axis %d of %s has %lld",
                       (long long)total, axis, tstr(s, x), (long long)d);
            return value_error();
        }
    } else {
        int64_t k;
        if (!int_arg(s, c, 1, 1, &k)) return value_error();
        if (k > 64 || d % k) {
            sema_error(s, c->arg_loc[1],
                       "split: axis %d of %s (size %lld) does not divide into %lld equal parts",
                       axis, tstr(s, x), (long long)d, (long long)k);
            sema_note_origin(s, x);
            return value_error();
        }
        n = (int)k;
        for (int i = 0; i < n; i++)
            sizes[i] = d / k;
    }
    Value t = {.kind = V_TUPLE, .ref = REF_NONE, .tensor = -1, .nitems = n};
    t.items = arena_alloc(sema_arena(s), (size_t)n * sizeof *t.items);
    int64_t at = 0;
    for (int i = 0; i < n; i++) {
        t.items[i] = tv(s, slice_axis(s, x->ref, axis, at, sizes[i]));
        at += sizes[i];
    }
    return t;
}

/* ---------------------------------------------------------------- dense, embedding, norms */

static InitSpec torch_default(int64_t fan_in) {
    return (InitSpec){.kind = INIT_TORCH_DEFAULT, .fan_in = fan_in};
}

/* A parameter the call may go without (bias=false): V_NONE, with ref REF_NONE, when absent. */
static Value optional_param(Sema *s, Call *c, bool wanted, const char *suffix, Shape shape,
                            InitSpec init) {
    if (!wanted) return (Value){.kind = V_NONE, .ref = REF_NONE, .tensor = -1};
    return sema_param(s, c, suffix, TK_PARAM, shape, init);
}

/* x[..., in] @ W^T + b, W [out, in] (nn.Linear). */
static Ref linear(Sema *s, Ref x, Ref w, Ref b) {
    const Shape *sx = shape_of(s, x);
    Ref y;
    if (sx->rank == 1) {
        Ref x2 = ir_reshape(F, x, shape_insert(sx, 0, 1));
        y = ir_matmul(F, x2, w, false, true);
        y = ir_reshape(F, y, shape_drop(shape_of(s, y), 0));
    } else {
        y = ir_matmul(F, x, w, false, true);
    }
    return b == REF_NONE ? y : add(s, y, b);
}

static Value bi_dense(Sema *s, Call *c) {
    int64_t units;
    bool bias;
    if (!tensor_arg(s, c, 0, true) || !int_arg(s, c, 1, 1, &units) || !bool_arg(s, c, 2, &bias))
        return value_error();
    if (!rank_check(s, c, 0, 1, IR_MAX_RANK, "a tensor [batch, features] (or [..., features])") ||
        !last_not_batch(s, c, 0, "input features"))
        return value_error();
    const Value *x = &c->arg[0];
    int64_t in = x->shape.dim[x->shape.rank - 1];
    Value w = sema_param(s, c, "weight", TK_PARAM, shape_make(2, (int64_t[]){units, in}, 0),
                         torch_default(in));
    Value b =
        optional_param(s, c, bias, "bias", shape_make(1, (int64_t[]){units}, 0), torch_default(in));
    if (w.kind == V_ERROR || b.kind == V_ERROR) return value_error();
    Value v = tv(s, linear(s, x->ref, w.ref, b.ref));
    int64_t positions = shape_per_sample(&v.shape) / units;
    int64_t macs = positions * in * units;
    sema_layer(s, c, "dense", v.shape, macs, 2 * macs + (bias ? positions * units : 0));
    return v;
}

static Value bi_embedding(Sema *s, Call *c) {
    int64_t vocab, dim;
    if (!tensor_arg(s, c, 0, false) || !int_arg(s, c, 1, 1, &vocab) || !int_arg(s, c, 2, 1, &dim))
        return value_error();
    const Value *ids = &c->arg[0];
    if (ids->dtype != DT_I32) {
        sema_error(s, c->arg_loc[0], "embedding expects i32 token ids, got %s", tstr(s, ids));
        sema_note_origin(s, ids);
        return value_error();
    }
    if (ids->shape.rank >= IR_MAX_RANK) {
        sema_error(s, c->arg_loc[0],
                   "embedding: ids of rank %d leave no room for the embedding axis",
                   ids->shape.rank);
        return value_error();
    }
    Value w =
        sema_param(s, c, "weight", TK_PARAM, shape_make(2, (int64_t[]){vocab, dim}, 0),
                   (InitSpec){.kind = INIT_NORMAL, .a = 0, .b = 1}); /* nn.Embedding: N(0, 1) */
    if (w.kind == V_ERROR) return value_error();
    Shape out = shape_insert(&ids->shape, ids->shape.rank, dim);
    Ref in[2] = {w.ref, ids->ref};
    Value v = tv(s, ir_node(F, OP_gather, DT_F32, out, 2, in, NULL));
    sema_layer(s, c, "embedding", out, 0, 0);
    return v;
}

static Value bi_dropout(Sema *s, Call *c) {
    double p;
    if (!tensor_arg(s, c, 0, true) || !range_arg(s, c, 1, 0, 1, true, &p)) return value_error();
    const Value *x = &c->arg[0];
    sema_layer(s, c, "dropout", x->shape, 0, 0);
    int stream = sema_next_stream(s); /* every pass numbers the dropouts alike */
    if (!sema_training(s) || p == 0) return *x;
    /* inverted dropout: keep where U[0,1) >= p, scale by 1/(1-p) */
    Attr at = {.index = stream, .tensor = sema_step_tensor(s)};
    Ref r = ir_node(F, OP_rand_uniform, DT_F32, x->shape, 0, NULL, &at);
    Ref mask = ir_binary(F, OP_ge, r, scalar(s, p));
    Ref keep = mul(s, mask, scalar(s, 1 / (1 - p)));
    return tv(s, mul(s, x->ref, keep));
}

static Value bi_layernorm(Sema *s, Call *c) {
    double eps;
    if (!tensor_arg(s, c, 0, true) || !positive_arg(s, c, 1, &eps)) return value_error();
    if (!rank_check(s, c, 0, 1, IR_MAX_RANK,
                    "a tensor of rank 1 or more (it normalizes the last axis)") ||
        !last_not_batch(s, c, 0, "normalized features"))
        return value_error();
    const Value *x = &c->arg[0];
    int last = x->shape.rank - 1;
    int64_t d = x->shape.dim[last];
    Value w =
        sema_param(s, c, "weight", TK_PARAM, shape_make(1, &d, 0), (InitSpec){.kind = INIT_ONES});
    Value b =
        sema_param(s, c, "bias", TK_PARAM, shape_make(1, &d, 0), (InitSpec){.kind = INIT_ZEROS});
    if (w.kind == V_ERROR || b.kind == V_ERROR) return value_error();
    /* y = (x - mean) / sqrt(var + eps) * weight + bias, biased variance over the last axis */
    Ref m = ir_reduce(F, OP_mean, x->ref, 1u << last, true);
    Ref xc = sub(s, x->ref, m);
    Ref var = ir_reduce(F, OP_mean, mul(s, xc, xc), 1u << last, true);
    Ref y = divide(s, xc, unary(s, OP_sqrt, add(s, var, scalar(s, eps))));
    Value v = tv(s, add(s, mul(s, y, w.ref), b.ref));
    sema_layer(s, c, "layernorm", v.shape, 0, 8 * shape_per_sample(&v.shape));
    return v;
}

static Value bi_batchnorm(Sema *s, Call *c) {
    double momentum, eps;
    if (!tensor_arg(s, c, 0, true) || !range_arg(s, c, 1, 0, 1, false, &momentum) ||
        !positive_arg(s, c, 2, &eps))
        return value_error();
    if (!rank_check(s, c, 0, 2, 4, "[batch, C], [batch, C, L] or [batch, C, H, W]"))
        return value_error();
    const Value *x = &c->arg[0];
    const Shape *sh = &x->shape;
    if (is_batch_axis(sh, 1)) {
        sema_error(s, c->arg_loc[0],
                   "batchnorm: the channel axis (1) of %s cannot be the batch axis", tstr(s, x));
        return value_error();
    }
    int64_t ch = sh->dim[1];
    Shape cs = shape_make(1, &ch, 0);
    Value w = sema_param(s, c, "weight", TK_PARAM, cs, (InitSpec){.kind = INIT_ONES});
    Value b = sema_param(s, c, "bias", TK_PARAM, cs, (InitSpec){.kind = INIT_ZEROS});
    Value rm = sema_param(s, c, "running_mean", TK_STATE, cs, (InitSpec){.kind = INIT_ZEROS});
    Value rv = sema_param(s, c, "running_var", TK_STATE, cs, (InitSpec){.kind = INIT_ONES});
    if (w.kind == V_ERROR || b.kind == V_ERROR || rm.kind == V_ERROR || rv.kind == V_ERROR)
        return value_error();
    uint32_t axes = all_axes(sh->rank) & ~2u; /* every axis but the channels */
    Shape ks = {.rank = sh->rank};            /* [1, C, 1, 1] */
    for (int i = 0; i < sh->rank; i++)
        ks.dim[i] = i == 1 ? ch : 1;
    Ref wk = ir_reshape(F, w.ref, ks), bk = ir_reshape(F, b.ref, ks);
    Ref mean, var;
    if (sema_training(s)) {
        /* batch statistics (biased variance); running stats get the unbiased one, as PyTorch */
        mean = ir_reduce(F, OP_mean, x->ref, axes, true);
        Ref xc = sub(s, x->ref, mean);
        var = ir_reduce(F, OP_mean, mul(s, xc, xc), axes, true);
        /* n = values per channel: the static reduced axes times the run-time batch */
        Ref n = REF_NONE;
        int64_t fixed = 1;
        for (int i = 0; i < sh->rank; i++)
            if (axes >> i & 1) {
                if (is_batch_axis(sh, i))
                    n = axis_count(s, sh, i);
                else
                    fixed *= sh->dim[i];
            }
        n = n == REF_NONE ? scalar(s, (double)fixed)
            : fixed == 1  ? n
                          : mul(s, n, scalar(s, (double)fixed));
        /* n / (n - 1), with n - 1 at least 1: a batch of one [N, C] row (the last, partial
           batch of an epoch can be one) has var = 0, and the running variance then decays by
           (1 - momentum) instead of becoming 0 * inf = NaN (PyTorch refuses such a batch) */
        Ref unbiased = mul(s, ir_reshape(F, var, cs),
                           divide(s, n, bin(s, OP_maximum, sub(s, n, scalar(s, 1)), scalar(s, 1))));
        Ref keep = scalar(s, 1 - momentum), m = scalar(s, momentum);
        ir_store(F, rm.tensor, add(s, mul(s, rm.ref, keep), mul(s, ir_reshape(F, mean, cs), m)));
        ir_store(F, rv.tensor, add(s, mul(s, rv.ref, keep), mul(s, unbiased, m)));
        Ref y = divide(s, xc, unary(s, OP_sqrt, add(s, var, scalar(s, eps))));
        Value v = tv(s, add(s, mul(s, y, wk), bk));
        sema_layer(s, c, "batchnorm", v.shape, 0, 4 * shape_per_sample(&v.shape));
        return v;
    }
    mean = ir_reshape(F, rm.ref, ks);
    var = ir_reshape(F, rv.ref, ks);
    Ref y = divide(s, sub(s, x->ref, mean), unary(s, OP_sqrt, add(s, var, scalar(s, eps))));
    Value v = tv(s, add(s, mul(s, y, wk), bk));
    sema_layer(s, c, "batchnorm", v.shape, 0, 4 * shape_per_sample(&v.shape));
    return v;
}

/* ---------------------------------------------------------------- recurrent layers */

typedef enum Cell { CELL_RNN, CELL_LSTM, CELL_GRU } Cell;

/* rnn/lstm/gru over x [batch, T, F], batch-first; returns every hidden state of the last
 * layer [batch, T, H]. PyTorch's parameter names and gate order (LSTM i, f, g, o; GRU r, z, n
 * with n = tanh(W_in x + b_in + r*(W_hn h + b_hn))). Per layer, the input projection of every
 * step is one matmul; then one op runs the time loop (lstm_seq, gru_seq, rnn_seq: kernels of
 * their own, ops.h). */
static Value recurrent(Sema *s, Call *c, Cell cell, int64_t hidden, int64_t layers, Op act) {
    const Value *x = &c->arg[0];
    if (!rank_check(s, c, 0, 3, 3, "a sequence [batch, T, features]")) return value_error();
    if (!is_batch_axis(&x->shape, 0) && shape_has_batch(&x->shape)) {
        sema_error(s, c->arg_loc[0],
                   "%s expects the batch axis first (batch-first sequences), got %s",
                   c->builtin->name, tstr(s, x));
        return value_error();
    }
    if (is_batch_axis(&x->shape, 1) || is_batch_axis(&x->shape, 2)) {
        sema_error(s, c->arg_loc[0], "%s: the time and feature axes of %s must be static",
                   c->builtin->name, tstr(s, x));
        return value_error();
    }
    int64_t T = x->shape.dim[1], H = hidden, G = cell == CELL_LSTM ? 4 : cell == CELL_GRU ? 3 : 1;
    double k = 1 / sqrt((double)H);
    InitSpec init = {.kind = INIT_UNIFORM, .a = -k, .b = k};
    Ref seq = x->ref;
    int64_t macs = 0, flops = 0;
    for (int64_t l = 0; l < layers; l++) {
        int64_t in = shape_of(s, seq)->dim[2];
        Value wih = sema_param(s, c, arena_printf(sema_arena(s), "weight_ih_l%lld", (long long)l),
                               TK_PARAM, shape_make(2, (int64_t[]){G * H, in}, 0), init);
        Value whh = sema_param(s, c, arena_printf(sema_arena(s), "weight_hh_l%lld", (long long)l),
                               TK_PARAM, shape_make(2, (int64_t[]){G * H, H}, 0), init);
        Value bih = sema_param(s, c, arena_printf(sema_arena(s), "bias_ih_l%lld", (long long)l),
                               TK_PARAM, shape_make(1, (int64_t[]){G * H}, 0), init);
        Value bhh = sema_param(s, c, arena_printf(sema_arena(s), "bias_hh_l%lld", (long long)l),
                               TK_PARAM, shape_make(1, (int64_t[]){G * H}, 0), init);
        if (wih.kind == V_ERROR || whh.kind == V_ERROR || bih.kind == V_ERROR ||
            bhh.kind == V_ERROR)
            return value_error();
        /* the input projection of every step at once: [batch, T, G*H] */
        Ref xw = add(s, ir_matmul(F, seq, wih.ref, false, true), bih.ref);
        if (cell != CELL_GRU) xw = add(s, xw, bhh.ref); /* b_hh joins every step's sum */
        int64_t m = T * G * H * (in + H);
        macs += m;
        flops += 2 * m + T * H * (cell == CELL_LSTM ? 36 : cell == CELL_GRU ? 25 : 7);
        /* one op runs the time loop of a layer */
        Shape ws = *shape_of(s, xw);
        if (cell == CELL_LSTM) { /* row (b, t) of ws is [h | c | i | f | g | o] */
            ws.dim[2] = 6 * H;
            Ref in[2] = {xw, whh.ref};
            seq = slice_axis(s, ir_node(F, OP_lstm_seq, DT_F32, ws, 2, in, NULL), 2, 0, H);
        } else if (cell == CELL_GRU) { /* row (b, t) of ws is [h | r | z | n | hn] */
            ws.dim[2] = 5 * H;
            Ref in[3] = {xw, whh.ref, bhh.ref};
            seq = slice_axis(s, ir_node(F, OP_gru_seq, DT_F32, ws, 3, in, NULL), 2, 0, H);
        } else { /* every h */
            Attr a = {.fwd_op = act};
            Ref in[2] = {xw, whh.ref};
            seq = ir_node(F, OP_rnn_seq, DT_F32, ws, 2, in, &a);
        }
    }
    Value v = tv(s, seq);
    sema_layer(s, c, c->builtin->name, v.shape, macs, flops);
    return v;
}

static Value bi_rnn(Sema *s, Call *c) {
    static const char *const acts[] = {"tanh", "relu"};
    int64_t hidden, layers;
    if (!tensor_arg(s, c, 0, true) || !int_arg(s, c, 1, 1, &hidden) ||
        !int_arg(s, c, 3, 1, &layers))
        return value_error();
    int k = choice_arg(s, c, 2, acts, 2);
    if (k < 0) return value_error();
    return recurrent(s, c, CELL_RNN, hidden, layers, k ? OP_relu : OP_tanh);
}

static Value bi_lstm(Sema *s, Call *c) {
    int64_t hidden, layers;
    if (!tensor_arg(s, c, 0, true) || !int_arg(s, c, 1, 1, &hidden) ||
        !int_arg(s, c, 2, 1, &layers))
        return value_error();
    return recurrent(s, c, CELL_LSTM, hidden, layers, OP_tanh);
}

static Value bi_gru(Sema *s, Call *c) {
    int64_t hidden, layers;
    if (!tensor_arg(s, c, 0, true) || !int_arg(s, c, 1, 1, &hidden) ||
        !int_arg(s, c, 2, 1, &layers))
        return value_error();
    return recurrent(s, c, CELL_GRU, hidden, layers, OP_tanh);
}

/* ---------------------------------------------------------------- attention */

/* [batch, T, h*d] -> [batch, h, T, d] */
static Ref split_heads(Sema *s, Ref x, int64_t heads) {
    const Shape *sh = shape_of(s, x);
    Shape r = {.rank = 4,
               .dim = {sh->dim[0], sh->dim[1], heads, sh->dim[2] / heads},
               .batch_mask = (uint8_t)(sh->batch_mask & 1)};
    return ir_transpose(F, ir_reshape(F, x, r), (int[]){0, 2, 1, 3});
}

/* softmax(q k^T / sqrt(d) [+ causal mask]) v, per head; q [batch, Tq, D], k [batch, Tk, D],
 * v [batch, Tk, Dv]. The causal mask is top-left aligned (key j is visible to query i when
 * j <= i), as torch's scaled_dot_product_attention(is_causal=True). */
static Ref attention_core(Sema *s, Ref q, Ref k, Ref v, int64_t heads, bool causal) {
    const Shape *sq = shape_of(s, q), *sk = shape_of(s, k), *sv = shape_of(s, v);
    int64_t Tq = sq->dim[1], Tk = sk->dim[1], D = sq->dim[2], Dv = sv->dim[2];
    Shape out = *sq;
    out.dim[2] = Dv;
    if (heads > 1) { /* self-attention passes one tensor three times: split it once */
        Ref q0 = q, k0 = k;
        q = split_heads(s, q, heads);
        k = k0 == q0 ? q : split_heads(s, k, heads);
        v = v == k0 ? k : v == q0 ? q : split_heads(s, v, heads);
    }
    Ref scores = ir_matmul(F, q, k, false, true);
    scores = mul(s, scores, scalar(s, 1 / sqrt((double)(D / heads))));
    if (causal) {
        double *mask = arena_alloc(sema_arena(s), (size_t)(Tq * Tk) * sizeof *mask);
        for (int64_t i = 0; i < Tq; i++)
            for (int64_t j = 0; j < Tk; j++)
                mask[i * Tk + j] = j > i ? -1e9 : 0;
        scores = add(s, scores, const_data(s, DT_F32, shape_make(2, (int64_t[]){Tq, Tk}, 0), mask));
    }
    Ref r = ir_matmul(F, unary(s, OP_softmax, scores), v, false, false);
    if (heads > 1) r = ir_reshape(F, ir_transpose(F, r, (int[]){0, 2, 1, 3}), out);
    return r;
}

static bool attention_args(Sema *s, Call *c, int iq, int ik, int iv, int64_t heads,
                           bool same_dims) {
    for (int i = iq; i <= iv; i++)
        if (!tensor_arg(s, c, i, true) || !rank_check(s, c, i, 3, 3, "[batch, T, features]"))
            return false;
    const Value *q = &c->arg[iq], *k = &c->arg[ik], *v = &c->arg[iv];
    for (int i = iq; i <= iv; i++)
        if (is_batch_axis(&c->arg[i].shape, 1) || is_batch_axis(&c->arg[i].shape, 2)) {
            sema_error(s, c->arg_loc[i],
                       "%s expects [batch, T, features] with the batch axis first, got %s",
                       c->builtin->name, tstr(s, &c->arg[i]));
            return false;
        }
    if (q->shape.dim[2] != k->shape.dim[2] || (same_dims && v->shape.dim[2] != q->shape.dim[2])) {
        sema_error(s, c->arg_loc[ik], "%s: query %s and key %s need the same feature size",
                   c->builtin->name, tstr(s, q), tstr(s, k));
        sema_note_origin(s, q);
        sema_note_origin(s, k);
        return false;
    }
    if (k->shape.dim[1] != v->shape.dim[1]) {
        sema_error(s, c->arg_loc[iv], "%s: key %s and value %s need the same length",
                   c->builtin->name, tstr(s, k), tstr(s, v));
        sema_note_origin(s, k);
        sema_note_origin(s, v);
        return false;
    }
    if (q->shape.dim[2] % heads || v->shape.dim[2] % heads) {
        const Value *w = q->shape.dim[2] % heads ? q : v;
        sema_error(s, c->arg_loc[w == q ? iq : iv], "%s: %lld heads do not divide the feature size %lld of %s",
                   c->builtin->name, (long long)heads, (long long)w->shape.dim[2], tstr(s, w));
        return false;
    }
    return true;
}

static Value bi_attention(Sema *s, Call *c) {
    int64_t heads;
    bool causal;
    if (!int_arg(s, c, 3, 1, &heads) || !bool_arg(s, c, 4, &causal) ||
        !attention_args(s, c, 0, 1, 2, heads, false))
        return value_error();
    Value v = tv(s, attention_core(s, c->arg[0].ref, c->arg[1].ref, c->arg[2].ref, heads, causal));
    int64_t Tq = c->arg[0].shape.dim[1], Tk = c->arg[1].shape.dim[1];
    int64_t macs = Tq * Tk * (c->arg[0].shape.dim[2] + c->arg[2].shape.dim[2]);
    sema_layer(s, c, "attention", v.shape, macs, 2 * macs + heads * Tq * Tk * 6);
    return v;
}

/* nn.MultiheadAttention (batch-first): in_proj_weight [3E, E], in_proj_bias [3E],
 * out_proj.weight [E, E], out_proj.bias [E]. k defaults to q and v to k (self-attention). */
static Value bi_multi_head_attention(Sema *s, Call *c) {
    int64_t heads;
    bool causal, bias;
    if (!tensor_arg(s, c, 0, true) || !int_arg(s, c, 3, 1, &heads) || !bool_arg(s, c, 4, &causal) ||
        !bool_arg(s, c, 5, &bias))
        return value_error();
    if (c->arg[1].kind == V_NONE) c->arg[1] = c->arg[0], c->arg_loc[1] = c->arg_loc[0];
    if (c->arg[2].kind == V_NONE) c->arg[2] = c->arg[1], c->arg_loc[2] = c->arg_loc[1];
    if (!attention_args(s, c, 0, 1, 2, heads, true)) return value_error();
    int64_t E = c->arg[0].shape.dim[2];
    Shape w3 = shape_make(2, (int64_t[]){3 * E, E}, 0), b3 = shape_make(1, (int64_t[]){3 * E}, 0);
    Value win = sema_param(s, c, "in_proj_weight", TK_PARAM, w3,
                           (InitSpec){.kind = INIT_XAVIER_UNIFORM, .a = 1, .fan_in = E});
    Value bin = optional_param(s, c, bias, "in_proj_bias", b3, (InitSpec){.kind = INIT_ZEROS});
    Value wout = sema_param(s, c, "out_proj.weight", TK_PARAM, shape_make(2, (int64_t[]){E, E}, 0),
                            torch_default(E));
    Value bout = optional_param(s, c, bias, "out_proj.bias", shape_make(1, &E, 0),
                                (InitSpec){.kind = INIT_ZEROS});
    if (win.kind == V_ERROR || bin.kind == V_ERROR || wout.kind == V_ERROR || bout.kind == V_ERROR)
        return value_error();
    Ref proj[3];
    for (int i = 0; i < 3; i++) {
        Ref w = slice_axis(s, win.ref, 0, i * E, E);
        Ref b = bias ? slice_axis(s, bin.ref, 0, i * E, E) : REF_NONE;
        proj[i] = linear(s, c->arg[i].ref, w, b);
    }
    Ref o = attention_core(s, proj[0], proj[1], proj[2], heads, causal);
    Value v = tv(s, linear(s, o, wout.ref, bout.ref));
    int64_t Tq = c->arg[0].shape.dim[1], Tk = c->arg[1].shape.dim[1];
    int64_t macs = 2 * Tq * E * E + 2 * Tk * E * E + 2 * Tq * Tk * E;
    sema_layer(s, c, "multi_head_attention", v.shape, macs, 2 * macs + heads * Tq * Tk * 6);
    return v;
}

/* ---------------------------------------------------------------- convolution and pooling */

/* pad=N, pad=(ph, pw), pad="same" or "valid"; fills pads[4] = top, left, bottom, right. */
static bool pad_arg(Sema *s, Call *c, int i, const int64_t k[2], const int64_t dil[2],
                    const int64_t stride[2], int64_t pads[4]) {
    Value *v = &c->arg[i];
    if (v->kind == V_STR) {
        if (!strcmp(v->str, "valid")) {
            memset(pads, 0, 4 * sizeof *pads);
            return true;
        }
        if (!strcmp(v->str, "same")) {
            if (stride[0] != 1 || stride[1] != 1) {
                sema_error(s, c->arg_loc[i], "%s: pad=\"same\" needs stride 1 (as PyTorch)",
                           c->builtin->name);
                return false;
            }
            for (int a = 0; a < 2; a++) { /* the odd extra goes after, as PyTorch */
                int64_t total = dil[a] * (k[a] - 1);
                pads[a] = total / 2;
                pads[a + 2] = total - total / 2;
            }
            return true;
        }
        sema_error(s, c->arg_loc[i],
                   "%s: 'pad' must be an integer, a pair, \"same\" or \"valid\", got \"%s\"",
                   c->builtin->name, v->str);
        return false;
    }
    int64_t p[2];
    if (!pair_arg(s, c, i, 0, p)) return false;
    pads[0] = pads[2] = p[0];
    pads[1] = pads[3] = p[1];
    return true;
}

/* Output size of a window op along one axis; reports when the window does not fit. */
static bool window_out(Sema *s, Call *c, const Value *x, int64_t in, int64_t k, int64_t dil,
                       int64_t stride, int64_t pad_lo, int64_t pad_hi, int64_t *out) {
    int64_t span = dil * (k - 1) + 1, padded = in + pad_lo + pad_hi;
    if (span > padded) {
        sema_error(
            s, c->loc,
            "%s: the window (%lld with dilation %lld) is larger than the padded input (%lld) of %s",
            c->builtin->name, (long long)k, (long long)dil, (long long)padded, tstr(s, x));
        sema_note_origin(s, x);
        return false;
    }
    *out = (padded - span) / stride + 1;
    return true;
}

/* conv2d / conv1d: x [N, C, H, W] (or [N, C, L]), weight [O, C/groups, KH, KW] (or [O, C/g, K]). */
static Value convolution(Sema *s, Call *c, bool one_d) {
    int64_t out_ch, k[2], stride[2], dil[2], groups, pads[4];
    bool bias;
    if (!tensor_arg(s, c, 0, true)) return value_error();
    if (!rank_check(s, c, 0, one_d ? 3 : 4, one_d ? 3 : 4,
                    one_d ? "[batch, C, L]" : "[batch, C, H, W]"))
        return value_error();
    const Value *x = &c->arg[0];
    const Shape *sh = &x->shape;
    for (int i = 1; i < sh->rank; i++)
        if (is_batch_axis(sh, i)) {
            sema_error(s, c->arg_loc[0], "%s expects the batch axis first, got %s",
                       c->builtin->name, tstr(s, x));
            return value_error();
        }
    if (!int_arg(s, c, 1, 1, &out_ch) || !pair_arg(s, c, 2, 1, k) ||
        !pair_arg(s, c, 3, 1, stride) || !pair_arg(s, c, 5, 1, dil) ||
        !int_arg(s, c, 6, 1, &groups) || !bool_arg(s, c, 7, &bias))
        return value_error();
    if (one_d && (c->arg[2].kind == V_TUPLE || c->arg[3].kind == V_TUPLE ||
                  c->arg[4].kind == V_TUPLE || c->arg[5].kind == V_TUPLE)) {
        sema_error(s, c->loc, "conv1d takes single integers for kernel, stride, pad and dilation, not pairs");
        return value_error();
    }
    if (one_d) k[0] = stride[0] = dil[0] = 1;
    if (!pad_arg(s, c, 4, k, dil, stride, pads)) return value_error();
    if (one_d) pads[0] = pads[2] = 0;
    int64_t C = sh->dim[1];
    if (C % groups || out_ch % groups) {
        sema_error(s, c->arg_loc[6],
                   "%s: groups=%lld must divide both the input channels (%lld) and 'out' (%lld)",
                   c->builtin->name, (long long)groups, (long long)C, (long long)out_ch);
        sema_note_origin(s, x);
        return value_error();
    }
    int64_t H = one_d ? 1 : sh->dim[2], W = sh->dim[one_d ? 2 : 3], Ho, Wo;
    if (!window_out(s, c, x, H, k[0], dil[0], stride[0], pads[0], pads[2], &Ho) ||
        !window_out(s, c, x, W, k[1], dil[1], stride[1], pads[1], pads[3], &Wo))
        return value_error();
    int64_t cin = C / groups, fan_in = cin * k[0] * k[1];
    Shape ws = one_d ? shape_make(3, (int64_t[]){out_ch, cin, k[1]}, 0)
                     : shape_make(4, (int64_t[]){out_ch, cin, k[0], k[1]}, 0);
    Value w = sema_param(s, c, "weight", TK_PARAM, ws, torch_default(fan_in));
    Value b = optional_param(s, c, bias, "bias", shape_make(1, &out_ch, 0), torch_default(fan_in));
    if (w.kind == V_ERROR || b.kind == V_ERROR) return value_error();
    Ref xr = x->ref, wr = w.ref;
    if (one_d) { /* conv1d is conv2d over [N, C, 1, L] */
        xr = ir_reshape(F, xr, shape_insert(sh, 2, 1));
        wr = ir_reshape(F, wr, shape_make(4, (int64_t[]){out_ch, cin, 1, k[1]}, 0));
    }
    Shape os = {.rank = 4,
                .dim = {sh->dim[0], out_ch, Ho, Wo},
                .batch_mask = (uint8_t)(sh->batch_mask & 1)};
    Attr at = {0};
    at.step[0] = stride[0];
    at.step[1] = stride[1];
    for (int i = 0; i < 4; i++)
        at.start[i] = pads[i];
    at.perm[0] = (int)dil[0];
    at.perm[1] = (int)dil[1];
    at.perm[2] = (int)groups;
    Ref in[3] = {xr, wr, b.ref};
    Ref y = ir_node(F, OP_conv2d, DT_F32, os, bias ? 3 : 2, in, &at);
    if (one_d) y = ir_reshape(F, y, shape_drop(&os, 2));
    Value v = tv(s, y);
    int64_t positions = Ho * Wo * out_ch;
    int64_t macs = positions * fan_in;
    sema_layer(s, c, c->builtin->name, v.shape, macs, 2 * macs + (bias ? positions : 0));
    return v;
}

static Value bi_conv2d(Sema *s, Call *c) {
    return convolution(s, c, false);
}
static Value bi_conv1d(Sema *s, Call *c) {
    return convolution(s, c, true);
}

/* maxpool / avgpool over [N, C, H, W] (or [N, C, L]): size, stride (default size), pad. */
static Value pooling(Sema *s, Call *c, Op op) {
    int64_t k[2], stride[2], pad[2];
    if (!tensor_arg(s, c, 0, true) ||
        !rank_check(s, c, 0, 3, 4, "[batch, C, H, W] or [batch, C, L]"))
        return value_error();
    const Value *x = &c->arg[0];
    const Shape *sh = &x->shape;
    bool one_d = sh->rank == 3;
    for (int i = 1; i < sh->rank; i++)
        if (is_batch_axis(sh, i)) {
            sema_error(s, c->arg_loc[0], "%s expects the batch axis first, got %s",
                       c->builtin->name, tstr(s, x));
            return value_error();
        }
    if (!pair_arg(s, c, 1, 1, k)) return value_error();
    if (c->arg[2].kind == V_NONE)
        stride[0] = k[0], stride[1] = k[1];
    else if (!pair_arg(s, c, 2, 1, stride))
        return value_error();
    if (!pair_arg(s, c, 3, 0, pad)) return value_error();
    if (one_d) k[0] = stride[0] = 1, pad[0] = 0;
    for (int a = 0; a < 2; a++)
        if (2 * pad[a] > k[a]) {
            sema_error(s, c->arg_loc[3], "%s: padding %lld is more than half the window %lld",
                       c->builtin->name, (long long)pad[a], (long long)k[a]);
            return value_error();
        }
    int64_t H = one_d ? 1 : sh->dim[2], W = sh->dim[one_d ? 2 : 3], Ho, Wo;
    if (!window_out(s, c, x, H, k[0], 1, stride[0], pad[0], pad[0], &Ho) ||
        !window_out(s, c, x, W, k[1], 1, stride[1], pad[1], pad[1], &Wo))
        return value_error();
    Ref xr = one_d ? ir_reshape(F, x->ref, shape_insert(sh, 2, 1)) : x->ref;
    Shape os = {.rank = 4,
                .dim = {sh->dim[0], sh->dim[1], Ho, Wo},
                .batch_mask = (uint8_t)(sh->batch_mask & 1)};
    Attr at = {0};
    at.perm[0] = (int)k[0];
    at.perm[1] = (int)k[1];
    at.step[0] = stride[0];
    at.step[1] = stride[1];
    at.start[0] = at.start[2] = pad[0];
    at.start[1] = at.start[3] = pad[1];
    Ref y = ir_node(F, op, x->dtype, os, 1, &xr, &at);
    if (one_d) y = ir_reshape(F, y, shape_drop(&os, 2));
    Value v = tv(s, y);
    sema_layer(s, c, c->builtin->name, v.shape, 0, shape_per_sample(&v.shape) * k[0] * k[1]);
    return v;
}

static Value bi_maxpool(Sema *s, Call *c) {
    return pooling(s, c, OP_maxpool2d);
}
static Value bi_avgpool(Sema *s, Call *c) {
    return pooling(s, c, OP_avgpool2d);
}

static Value bi_global_avgpool(Sema *s, Call *c) {
    if (!tensor_arg(s, c, 0, true) ||
        !rank_check(s, c, 0, 3, 4, "[batch, C, H, W] or [batch, C, L]"))
        return value_error();
    const Value *x = &c->arg[0];
    uint32_t axes = x->shape.rank == 4 ? 0xCu : 0x4u;
    if (x->shape.batch_mask & axes) {
        sema_error(s, c->arg_loc[0],
                   "global_avgpool averages the spatial axes, which cannot hold the batch: %s",
                   tstr(s, x));
        return value_error();
    }
    Value v = tv(s, ir_reduce(F, OP_mean, x->ref, axes, false));
    sema_layer(s, c, "global_avgpool", v.shape, 0, shape_per_sample(&x->shape));
    return v;
}

static Value bi_upsample(Sema *s, Call *c) {
    static const char *const modes[] = {"nearest", "bilinear"};
    int64_t scale[2];
    if (!tensor_arg(s, c, 0, true) || !rank_check(s, c, 0, 4, 4, "[batch, C, H, W]") ||
        !pair_arg(s, c, 1, 1, scale))
        return value_error();
    int mode = choice_arg(s, c, 2, modes, 2);
    if (mode < 0) return value_error();
    const Value *x = &c->arg[0];
    if (x->shape.batch_mask & 0xC) {
        sema_error(s, c->arg_loc[0], "upsample: the spatial axes of %s cannot hold the batch",
                   tstr(s, x));
        return value_error();
    }
    Shape os = x->shape;
    os.dim[2] *= scale[0];
    os.dim[3] *= scale[1];
    Attr at = {.flag = mode};
    at.perm[0] = (int)scale[0];
    at.perm[1] = (int)scale[1];
    Value v = tv(s, ir_node(F, OP_upsample2d, x->dtype, os, 1, &x->ref, &at));
    sema_layer(s, c, "upsample", os, 0, mode ? 7 * shape_per_sample(&os) : 0);
    return v;
}

static Value bi_lrn(Sema *s, Call *c) {
    int64_t size;
    double alpha, beta, k;
    if (!tensor_arg(s, c, 0, true) ||
        !rank_check(s, c, 0, 3, 4, "[batch, C, H, W] or [batch, C, L]") ||
        !int_arg(s, c, 1, 1, &size) || !num_arg(s, c, 2, &alpha) || !num_arg(s, c, 3, &beta) ||
        !num_arg(s, c, 4, &k))
        return value_error();
    const Value *x = &c->arg[0];
    if (x->shape.batch_mask & ~1u) {
        sema_error(s, c->arg_loc[0], "lrn expects the batch axis first, got %s", tstr(s, x));
        return value_error();
    }
    Attr at = {.f = {alpha, beta, k}};
    at.perm[0] = (int)size;
    Value v = tv(s, ir_node(F, OP_lrn, x->dtype, x->shape, 1, &x->ref, &at));
    sema_layer(s, c, "lrn", v.shape, 0, (size + 4) * shape_per_sample(&v.shape));
    return v;
}

/* ---------------------------------------------------------------- losses */

/* pred and target: float tensors of the same shape. */
static bool same_shape_pair(Sema *s, Call *c, int i, int j) {
    if (!tensor_arg(s, c, i, true) || !tensor_arg(s, c, j, true)) return false;
    const Value *a = &c->arg[i], *b = &c->arg[j];
    if (!shape_eq(&a->shape, &b->shape)) {
        sema_error(s, c->loc, "%s: '%s' %s and '%s' %s must have the same shape", c->builtin->name,
                   c->arg_name[i], tstr(s, a), c->arg_name[j], tstr(s, b));
        sema_note_origin(s, a);
        sema_note_origin(s, b);
        return false;
    }
    if (a->dtype != b->dtype) {
        sema_error(s, c->loc, "%s: '%s' and '%s' have different types (%s, %s)", c->builtin->name,
                   c->arg_name[i], c->arg_name[j], tstr(s, a), tstr(s, b));
        return false;
    }
    return true;
}

static Value bi_mse(Sema *s, Call *c) {
    if (!same_shape_pair(s, c, 0, 1)) return value_error();
    Ref d = sub(s, c->arg[0].ref, c->arg[1].ref);
    return tv(s, mean_all(s, mul(s, d, d)));
}

static Value bi_mae(Sema *s, Call *c) {
    if (!same_shape_pair(s, c, 0, 1)) return value_error();
    return tv(s, mean_all(s, unary(s, OP_abs, sub(s, c->arg[0].ref, c->arg[1].ref))));
}

/* 0.5 d^2 for |d| < delta, else delta (|d| - delta/2) = 0.5 q^2 + delta (|d| - q), q = min(|d|,
 * delta) */
static Value bi_huber(Sema *s, Call *c) {
    double delta;
    if (!same_shape_pair(s, c, 0, 1) || !positive_arg(s, c, 2, &delta)) return value_error();
    Ref a = unary(s, OP_abs, sub(s, c->arg[0].ref, c->arg[1].ref));
    Ref q = bin(s, OP_minimum, a, scalar(s, delta));
    Ref l = add(s, mul(s, scalar(s, 0.5), mul(s, q, q)), mul(s, scalar(s, delta), sub(s, a, q)));
    return tv(s, mean_all(s, l));
}

/* logits [..., C] with labels i32 [...] (the logits' shape without the class axis). */
static bool class_pair(Sema *s, Call *c, bool allow_float_labels) {
    if (!tensor_arg(s, c, 0, true) || !tensor_arg(s, c, 1, false)) return false;
    if (!rank_check(s, c, 0, 1, IR_MAX_RANK, "logits [..., classes]") ||
        !last_not_batch(s, c, 0, "classes"))
        return false;
    const Value *lg = &c->arg[0], *lb = &c->arg[1];
    Shape want = shape_drop(&lg->shape, lg->shape.rank - 1);
    if (lb->dtype != DT_I32 && !allow_float_labels) {
        sema_error(s, c->arg_loc[1], "%s expects i32 class labels, got %s", c->builtin->name,
                   tstr(s, lb));
        sema_note_origin(s, lb);
        return false;
    }
    if (!shape_eq(&lb->shape, &want)) {
        sema_error(s, c->arg_loc[1], "%s: labels %s do not match logits %s: expected %s%s",
                   c->builtin->name, tstr(s, lb), tstr(s, lg), dtype_names[lb->dtype],
                   shape_text(s, &want));
        sema_note_origin(s, lb);
        sema_note_origin(s, lg);
        return false;
    }
    return true;
}

static Value bi_cross_entropy(Sema *s, Call *c) {
    double smoothing;
    if (!class_pair(s, c, false) || !range_arg(s, c, 2, 0, 1, false, &smoothing))
        return value_error();
    const Value *lg = &c->arg[0];
    int64_t C = lg->shape.dim[lg->shape.rank - 1];
    Ref in[3] = {lg->ref, c->arg[1].ref, REF_NONE};
    int nin = 2;
    Value *w = &c->arg[3];
    if (w->kind == V_TUPLE) {
        double *data =
            arena_alloc(sema_arena(s), (size_t)(w->nitems ? w->nitems : 1) * sizeof *data);
        for (int i = 0; i < w->nitems; i++) {
            if (w->items[i].kind != V_NUM || w->items[i].num < 0) {
                sema_error(s, c->arg_loc[3],
                           "cross_entropy: class weights must be non-negative numbers");
                return value_error();
            }
            data[i] = w->items[i].num;
        }
        if (w->nitems != C) {
            sema_error(s, c->arg_loc[3], "cross_entropy: %d class weights for %lld classes",
                       w->nitems, (long long)C);
            return value_error();
        }
        in[nin++] = const_data(s, DT_F32, shape_make(1, &C, 0), data);
    } else if (w->kind == V_TENSOR) {
        if (w->dtype == DT_I32 || w->shape.rank != 1 || w->shape.dim[0] != C ||
            shape_has_batch(&w->shape)) {
            sema_error(s, c->arg_loc[3],
                       "cross_entropy: 'weight' must be f32[%lld] (one per class), got %s",
                       (long long)C, tstr(s, w));
            sema_note_origin(s, w);
            return value_error();
        }
        in[nin++] = w->ref;
    } else if (w->kind != V_NONE) {
        sema_error(s, c->arg_loc[3],
                   "cross_entropy: 'weight' must be a list of numbers or a tensor, got %s",
                   tstr(s, w));
        return value_error();
    }
    Attr at = {.f = {smoothing}};
    return tv(s, ir_node(F, OP_cross_entropy, lg->dtype, shape_scalar(), nin, in, &at));
}

/* BCEWithLogits: softplus(x) - x t, stable for any x. */
static Value bi_binary_cross_entropy(Sema *s, Call *c) {
    if (!same_shape_pair(s, c, 0, 1)) return value_error();
    Ref x = c->arg[0].ref;
    Attr sp = {.f = {1, 20}};
    Ref l = sub(s, ir_unary_attr(F, OP_softplus, x, &sp), mul(s, x, c->arg[1].ref));
    return tv(s, mean_all(s, l));
}

/* KLDivLoss(reduction='batchmean'): sum(t (log t - log_pred)) / size of axis 0, 0 log 0 = 0. */
static Value bi_kl_div(Sema *s, Call *c) {
    if (!same_shape_pair(s, c, 0, 1)) return value_error();
    Ref lp = c->arg[0].ref, t = c->arg[1].ref;
    Ref tlogt = mul(s, t, unary(s, OP_log, bin(s, OP_maximum, t, scalar(s, 1e-30))));
    Ref total = sum_all(s, sub(s, tlogt, mul(s, t, lp)));
    const Shape *sh = &c->arg[0].shape;
    return tv(s, sh->rank ? divide(s, total, axis_count(s, sh, 0)) : total);
}

/* i32 labels [...] -> f32 one-hot [..., C] */
static Ref one_hot(Sema *s, Ref labels, int64_t C) {
    double *iota = arena_alloc(sema_arena(s), (size_t)C * sizeof *iota);
    for (int64_t i = 0; i < C; i++)
        iota[i] = (double)i;
    Ref ids = const_data(s, DT_I32, shape_make(1, &C, 0), iota);
    const Shape *ls = shape_of(s, labels);
    Ref col = ir_reshape(F, labels, shape_insert(ls, ls->rank, 1));
    return ir_binary(F, OP_eq, col, ids);
}

/* MultiMarginLoss(p=1): mean over samples of sum_{j != y} max(0, margin - s_y + s_j) / C. */
static Value bi_hinge(Sema *s, Call *c) {
    double margin;
    if (!class_pair(s, c, false) || !positive_arg(s, c, 2, &margin)) return value_error();
    const Value *sc = &c->arg[0];
    int last = sc->shape.rank - 1;
    Ref oh = one_hot(s, c->arg[1].ref, sc->shape.dim[last]);
    Ref sy = ir_reduce(F, OP_sum, mul(s, sc->ref, oh), 1u << last, true);
    Ref m = unary(s, OP_relu, add(s, sub(s, sc->ref, sy), scalar(s, margin)));
    m = mul(s, m, sub(s, scalar(s, 1), oh));
    return tv(s, mean_all(s, m));
}

static Value bi_l1(Sema *s, Call *c) {
    if (!tensor_arg(s, c, 0, true)) return value_error();
    return tv(s, sum_all(s, unary(s, OP_abs, c->arg[0].ref)));
}

static Value bi_l2(Sema *s, Call *c) {
    if (!tensor_arg(s, c, 0, true)) return value_error();
    return tv(s, sum_all(s, mul(s, c->arg[0].ref, c->arg[0].ref)));
}

/* ---------------------------------------------------------------- metrics */

/* Predicted classes (i32): argmax over the classes, or logit > 0 for a single logit. */
static Ref predictions(Sema *s, const Value *logits) {
    int last = logits->shape.rank - 1;
    if (logits->shape.dim[last] == 1) {
        Ref p = bin(s, OP_gt, logits->ref, scalar(s, 0));
        return ir_cast(F, ir_reshape(F, p, shape_drop(&logits->shape, last)), DT_I32);
    }
    return ir_argmax(F, logits->ref, last);
}

static Value bi_accuracy(Sema *s, Call *c) {
    if (!class_pair(s, c, true)) return value_error();
    const Value *lg = &c->arg[0], *lb = &c->arg[1];
    if (lb->dtype != DT_I32 && lg->shape.dim[lg->shape.rank - 1] != 1) {
        sema_error(s, c->arg_loc[1], "accuracy expects i32 class labels, got %s", tstr(s, lb));
        sema_note_origin(s, lb);
        return value_error();
    }
    Ref pred = predictions(s, lg);
    Ref hit = ir_binary(F, OP_eq, ir_cast(F, pred, lb->dtype), lb->ref);
    return tv(s, mean_all(s, hit));
}

/* precision, recall, f1, confusion: the predicted classes; the driver compares them with the
 * labels over a whole split (metric_info). */
static Value bi_driver_metric(Sema *s, Call *c) {
    if (!class_pair(s, c, false)) return value_error();
    return tv(s, predictions(s, &c->arg[0]));
}

/* auc: the positive-class score of a binary classifier (one logit, or two classes). */
static Value bi_auc(Sema *s, Call *c) {
    if (!class_pair(s, c, false)) return value_error();
    const Value *lg = &c->arg[0];
    int last = lg->shape.rank - 1;
    int64_t C = lg->shape.dim[last];
    if (C > 2) {
        sema_error(s, c->arg_loc[0],
                   "auc needs a binary classifier (logits [..., 1] or [..., 2]), got %s",
                   tstr(s, lg));
        sema_note_origin(s, lg);
        return value_error();
    }
    Ref p = C == 1 ? unary(s, OP_sigmoid, lg->ref)
                   : slice_axis(s, unary(s, OP_softmax, lg->ref), last, 1, 1);
    return tv(s, ir_reshape(F, p, shape_drop(&lg->shape, last)));
}

/* ---------------------------------------------------------------- the table */

const Builtin builtins[] = {
    /* activations */
    {"relu", "x", BK_LAYER, bi_relu, NULL},
    {"leaky_relu", "x, slope=0.01", BK_LAYER, bi_leaky_relu, NULL},
    {"elu", "x, alpha=1", BK_LAYER, bi_elu, NULL},
    {"selu", "x", BK_LAYER, bi_selu, NULL},
    {"gelu", "x, approximate='none'", BK_LAYER, bi_gelu, NULL},
    {"sigmoid", "x", BK_LAYER, bi_sigmoid, NULL},
    {"tanh", "x", BK_LAYER, bi_tanh, NULL},
    {"softplus", "x, beta=1, threshold=20", BK_LAYER, bi_softplus, NULL},
    {"silu", "x", BK_LAYER, bi_silu, NULL},
    {"swish", "x", BK_LAYER, bi_silu, "silu"},
    {"mish", "x", BK_LAYER, bi_mish, NULL},
    {"hard_sigmoid", "x", BK_LAYER, bi_hard_sigmoid, NULL},
    {"hard_swish", "x", BK_LAYER, bi_hard_swish, NULL},
    {"softmax", "x, temperature=1", BK_LAYER, bi_softmax, NULL},
    {"log_softmax", "x, temperature=1", BK_LAYER, bi_log_softmax, NULL},
    /* math */
    {"exp", "x", BK_MATH, bi_exp, NULL},
    {"log", "x", BK_MATH, bi_log, NULL},
    {"sqrt", "x", BK_MATH, bi_sqrt, NULL},
    {"abs", "x", BK_MATH, bi_abs, NULL},
    {"erf", "x", BK_MATH, bi_erf, NULL},
    {"cos", "x", BK_MATH, bi_cos, NULL},
    {"sum", "x, axis=none, keepdims=false", BK_MATH, bi_sum, NULL},
    {"mean", "x, axis=none, keepdims=false", BK_MATH, bi_mean, NULL},
    {"max", "x, axis=none, keepdims=false", BK_MATH, bi_max, NULL},
    {"argmax", "x, axis=-1", BK_MATH, bi_argmax, NULL},
    {"stop_gradient", "x", BK_MATH, bi_stop_gradient, NULL},
    /* shapes */
    {"flatten", "x", BK_LAYER, bi_flatten, NULL},
    {"reshape", "x, shape", BK_MATH, bi_reshape, NULL},
    {"transpose", "x, perm=none", BK_MATH, bi_transpose, NULL},
    {"permute", "x, perm", BK_MATH, bi_transpose, NULL},
    {"concat", "xs, axis=-1", BK_MATH, bi_concat, NULL},
    {"split", "x, n, axis=-1", BK_MATH, bi_split, NULL},
    /* layers */
    {"dense", "x, units, bias=true", BK_PARAMS, bi_dense, NULL},
    {"conv2d", "x, out, kernel, stride=1, pad=0, dilation=1, groups=1, bias=true", BK_PARAMS,
     bi_conv2d, NULL},
    {"conv1d", "x, out, kernel, stride=1, pad=0, dilation=1, groups=1, bias=true", BK_PARAMS,
     bi_conv1d, NULL},
    {"embedding", "ids, vocab, dim", BK_PARAMS, bi_embedding, NULL},
    {"layernorm", "x, eps=1e-5", BK_PARAMS, bi_layernorm, NULL},
    {"batchnorm", "x, momentum=0.1, eps=1e-5", BK_PARAMS, bi_batchnorm, NULL},
    {"rnn", "x, hidden, act='tanh', layers=1", BK_PARAMS, bi_rnn, NULL},
    {"lstm", "x, hidden, layers=1", BK_PARAMS, bi_lstm, NULL},
    {"gru", "x, hidden, layers=1", BK_PARAMS, bi_gru, NULL},
    {"multi_head_attention", "q, k=none, v=none, heads=1, causal=false, bias=true", BK_PARAMS,
     bi_multi_head_attention, "mha"},
    {"dropout", "x, p=0.5", BK_LAYER, bi_dropout, NULL},
    {"maxpool", "x, size, stride=none, pad=0", BK_LAYER, bi_maxpool, NULL},
    {"avgpool", "x, size, stride=none, pad=0", BK_LAYER, bi_avgpool, NULL},
    {"global_avgpool", "x", BK_LAYER, bi_global_avgpool, NULL},
    {"upsample", "x, scale=2, mode='nearest'", BK_LAYER, bi_upsample, NULL},
    {"lrn", "x, size=5, alpha=1e-4, beta=0.75, k=1", BK_LAYER, bi_lrn, NULL},
    {"attention", "q, k, v, heads=1, causal=false", BK_LAYER, bi_attention, NULL},
    /* losses and regularizers */
    {"mse", "pred, target", BK_LOSS, bi_mse, NULL},
    {"mae", "pred, target", BK_LOSS, bi_mae, NULL},
    {"huber", "pred, target, delta=1", BK_LOSS, bi_huber, NULL},
    {"cross_entropy", "logits, labels, smoothing=0, weight=none", BK_LOSS, bi_cross_entropy, NULL},
    {"binary_cross_entropy", "logits, targets", BK_LOSS, bi_binary_cross_entropy, NULL},
    {"kl_div", "log_pred, target", BK_LOSS, bi_kl_div, NULL},
    {"hinge", "scores, labels, margin=1", BK_LOSS, bi_hinge, NULL},
    {"l1", "w", BK_LOSS, bi_l1, NULL},
    {"l2", "w", BK_LOSS, bi_l2, NULL},
    /* metrics */
    {"accuracy", "logits, labels", BK_METRIC, bi_accuracy, NULL},
    {"precision", "logits, labels", BK_DRIVER_METRIC, bi_driver_metric, NULL},
    {"recall", "logits, labels", BK_DRIVER_METRIC, bi_driver_metric, NULL},
    {"f1", "logits, labels", BK_DRIVER_METRIC, bi_driver_metric, NULL},
    {"confusion", "logits, labels", BK_DRIVER_METRIC, bi_driver_metric, NULL},
    {"auc", "logits, labels", BK_DRIVER_METRIC, bi_auc, NULL},
};
const int builtin_count = (int)(sizeof builtins / sizeof builtins[0]);

const Builtin *builtin_find(const char *name) {
    for (int i = 0; i < builtin_count; i++)
        if (!strcmp(builtins[i].name, name)) return &builtins[i];
    return NULL;
}
