/* ir.c — the IR: modules, functions, shapes, node builders with shape inference, printer. */
#include "nnc.h"

#include <assert.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

const OpInfo op_info[OP_COUNT] = {
#define OP(name, arity, flags, doc) {#name, arity, flags, doc},
#include "ops.h"
#undef OP
};

const char *const dtype_names[DT_COUNT] = {"f32", "i32", "f64"};
const char *const tensor_kind_names[TK_COUNT] = {"param", "state", "slot", "step", "hyper", "derived"};

/* ---------------------------------------------------------------- modules */

Module *module_new(Arena *a, const char *name) {
    Module *m = arena_alloc(a, sizeof *m);
    m->arena = a;
    m->name = arena_strdup(a, name);
    m->max_batch = 64;
    return m;
}

int module_add_tensor(Module *m, const char *name, TensorKind kind, DType dt, Shape shape,
                      InitSpec init, SrcLoc loc) {
    assert(!shape_has_batch(&shape));
    ModTensor t = {.name = arena_strdup(m->arena, name),
                   .kind = kind,
                   .dtype = dt,
                   .shape = shape,
                   .init = init,
                   .owner = -1,
                   .bytes = shape_numel(&shape, 1) * dtype_size(dt),
                   .loc = loc};
    VEC_PUSH(m->arena, m->tensors, m->ntensors, m->tensors_cap, t);
    return m->ntensors - 1;
}

int module_find_tensor(const Module *m, const char *name) {
    for (int i = 0; i < m->ntensors; i++)
        if (!strcmp(m->tensors[i].name, name)) return i;
    return -1;
}

/* Offsets in declaration order, each 64-byte aligned so vector loads never straddle. */
void module_layout(Module *m) {
    int64_t off = 0;
    for (int i = 0; i < m->ntensors; i++) {
        ModTensor *t = &m->tensors[i];
        t->bytes = shape_numel(&t->shape, 1) * dtype_size(t->dtype);
        t->offset = off;
        off += (t->bytes + 63) & ~(int64_t)63;
    }
    m->state_bytes = off;
}

Func *module_add_func(Module *m, const char *name) {
    Func *f = arena_alloc(m->arena, sizeof *f);
    f->name = arena_strdup(m->arena, name);
    f->mod = m;
    VEC_PUSH(m->arena, m->funcs, m->nfuncs, m->funcs_cap, f);
    return f;
}

Func *module_find_func(const Module *m, const char *name) {
    for (int i = 0; i < m->nfuncs; i++)
        if (!strcmp(m->funcs[i]->name, name)) return m->funcs[i];
    return NULL;
}

Func *module_build_init(Module *m) {
    Func *f = module_find_func(m, "init");
    if (!f) f = module_add_func(m, "init");
    f->nnodes = 0;
    for (int i = 0; i < m->ntensors; i++) {
        Attr a = {.tensor = i};
        Ref v = ir_node(f, OP_init_fill, m->tensors[i].dtype, m->tensors[i].shape, 0, NULL, &a);
        ir_store(f, i, v);
    }
    return f;
}

/* ---------------------------------------------------------------- shapes */

Shape shape_make(int rank, const int64_t *dims, uint8_t batch_mask) {
    assert(rank >= 0 && rank <= IR_MAX_RANK);
    Shape s = {.rank = rank, .batch_mask = batch_mask};
    for (int i = 0; i < rank; i++) s.dim[i] = dims[i];
    return s;
}

Shape shape_scalar(void) { return (Shape){0}; }

bool shape_eq(const Shape *a, const Shape *b) {
    if (a->rank != b->rank || a->batch_mask != b->batch_mask) return false;
    for (int i = 0; i < a->rank; i++)
        if (a->dim[i] != b->dim[i]) return false;
    return true;
}

int64_t shape_dim(const Shape *s, int axis, int64_t batch) {
    return s->batch_mask & (1u << axis) ? s->dim[axis] * batch : s->dim[axis];
}

int64_t shape_numel(const Shape *s, int64_t batch) {
    int64_t n = 1;
    for (int i = 0; i < s->rank; i++) n *= shape_dim(s, i, batch);
    return n;
}

bool shape_has_batch(const Shape *s) { return s->batch_mask != 0; }

/* numpy: align right; each pair of axes must be equal, or one of them 1 (a batch axis counts
 * as unknown-but-equal to another batch axis with the same coefficient). */
bool shape_broadcast(const Shape *a, const Shape *b, Shape *out) {
    int rank = a->rank > b->rank ? a->rank : b->rank;
    Shape r = {.rank = rank};
    for (int i = 0; i < rank; i++) {
        int ia = i - (rank - a->rank), ib = i - (rank - b->rank);
        bool ha = ia >= 0, hb = ib >= 0;
        int64_t da = ha ? a->dim[ia] : 1, db = hb ? b->dim[ib] : 1;
        bool ba = ha && (a->batch_mask >> ia & 1), bb = hb && (b->batch_mask >> ib & 1);
        if (ba || bb) {
            if (ba && bb && da != db) return false;
            if (ba && !bb && db != 1) return false;
            if (bb && !ba && da != 1) return false;
            r.dim[i] = ba ? da : db;
            r.batch_mask |= (uint8_t)(1u << i);
        } else if (da == db || db == 1) {
            r.dim[i] = da;
        } else if (da == 1) {
            r.dim[i] = db;
        } else {
            return false;
        }
    }
    if (__builtin_popcount(r.batch_mask) > 1) return false;
    *out = r;
    return true;
}

const char *shape_str(const Shape *s, char *buf, size_t len) {
    size_t used = 0;
    used += (size_t)snprintf(buf + used, len - used, "[");
    for (int i = 0; i < s->rank && used < len; i++) {
        const char *sep = i ? ", " : "";
        if (s->batch_mask & (1u << i)) {
            if (s->dim[i] == 1)
                used += (size_t)snprintf(buf + used, len - used, "%sbatch", sep);
            else
                used += (size_t)snprintf(buf + used, len - used, "%s%" PRId64 "*batch", sep,
                                         s->dim[i]);
        } else {
            used += (size_t)snprintf(buf + used, len - used, "%s%" PRId64, sep, s->dim[i]);
        }
    }
    if (used < len) snprintf(buf + used, len - used, "]");
    return buf;
}

int64_t dtype_size(DType dt) { return dt == DT_F64 ? 8 : 4; }

/* ---------------------------------------------------------------- functions */

int func_add_arg(Func *f, const char *name, ArgRole role, DType dt, Shape shape, SrcLoc loc) {
    FuncArg a = {.name = arena_strdup(f->mod->arena, name),
                 .role = role,
                 .dtype = dt,
                 .shape = shape,
                 .loc = loc};
    VEC_PUSH(f->mod->arena, f->args, f->nargs, f->args_cap, a);
    return f->nargs - 1;
}

void func_add_out(Func *f, const char *name, OutRole role, Ref value) {
    FuncOut o = {.name = arena_strdup(f->mod->arena, name), .role = role, .value = value};
    VEC_PUSH(f->mod->arena, f->outs, f->nouts, f->outs_cap, o);
}

Ref ir_node(Func *f, Op op, DType dt, Shape shape, int nin, const Ref *in, const Attr *attr) {
    assert(nin >= 0 && nin <= IR_MAX_INPUTS);
    Node n = {.op = op, .dtype = dt, .shape = shape, .nin = nin};
    for (int i = 0; i < nin; i++) {
        assert(in[i] >= 0 && in[i] < f->nnodes);
        n.in[i] = in[i];
    }
    if (attr) n.attr = *attr;
    VEC_PUSH(f->mod->arena, f->nodes, f->nnodes, f->cap, n);
    return f->nnodes - 1;
}

/* ---------------------------------------------------------------- builders */

Ref ir_input(Func *f, int arg) {
    Attr a = {.index = arg};
    return ir_node(f, OP_input, f->args[arg].dtype, f->args[arg].shape, 0, NULL, &a);
}

Ref ir_tensor(Func *f, int tensor) {
    const ModTensor *t = &f->mod->tensors[tensor];
    Attr a = {.tensor = tensor};
    Ref r = ir_node(f, OP_tensor, t->dtype, t->shape, 0, NULL, &a);
    f->nodes[r].name = t->name;
    return r;
}

Ref ir_const(Func *f, DType dt, Shape shape, double value) {
    Attr a = {.f = {value}};
    return ir_node(f, OP_const, dt, shape, 0, NULL, &a);
}

Ref ir_scalar(Func *f, double value) { return ir_const(f, DT_F32, shape_scalar(), value); }

Ref ir_broadcast(Func *f, Ref x, Shape shape) {
    Node *n = ir_at(f, x);
    if (shape_eq(&n->shape, &shape)) return x;
    /* a splat constant broadcasts for free */
    if (n->op == OP_const && !n->attr.data) return ir_const(f, n->dtype, shape, n->attr.f[0]);
    return ir_node(f, OP_broadcast, n->dtype, shape, 1, &x, NULL);
}

Ref ir_binary(Func *f, Op op, Ref a, Ref b) {
    assert(op_info[op].flags & OPF_ELEM && op_info[op].arity == 2);
    Shape s;
    bool ok = shape_broadcast(&ir_at(f, a)->shape, &ir_at(f, b)->shape, &s);
    assert(ok);
    (void)ok;
    DType dt = ir_at(f, a)->dtype;
    if (op_info[op].flags & OPF_CMP) dt = DT_F32;
    Ref in[2] = {ir_broadcast(f, a, s), ir_broadcast(f, b, s)};
    return ir_node(f, op, dt, s, 2, in, NULL);
}

Ref ir_unary_attr(Func *f, Op op, Ref x, const Attr *attr) {
    Node *n = ir_at(f, x);
    return ir_node(f, op, n->dtype, n->shape, 1, &x, attr);
}

Ref ir_unary(Func *f, Op op, Ref x) { return ir_unary_attr(f, op, x, NULL); }

Ref ir_select(Func *f, Ref c, Ref a, Ref b) {
    Shape s, t;
    bool ok = shape_broadcast(&ir_at(f, a)->shape, &ir_at(f, b)->shape, &s) &&
              shape_broadcast(&s, &ir_at(f, c)->shape, &t);
    assert(ok);
    (void)ok;
    Ref in[3] = {ir_broadcast(f, c, t), ir_broadcast(f, a, t), ir_broadcast(f, b, t)};
    return ir_node(f, OP_select, ir_at(f, a)->dtype, t, 3, in, NULL);
}

Ref ir_cast(Func *f, Ref x, DType dt) {
    if (ir_at(f, x)->dtype == dt) return x;
    return ir_node(f, OP_cast, dt, ir_at(f, x)->shape, 1, &x, NULL);
}

Ref ir_reduce(Func *f, Op op, Ref x, uint32_t axes, bool keepdims) {
    const Shape *in = &ir_at(f, x)->shape;
    Shape s = {0};
    for (int i = 0; i < in->rank; i++) {
        bool reduced = axes >> i & 1;
        if (reduced && !keepdims) continue;
        s.dim[s.rank] = reduced ? 1 : in->dim[i];
        if (!reduced && (in->batch_mask >> i & 1)) s.batch_mask |= (uint8_t)(1u << s.rank);
        s.rank++;
    }
    Attr a = {.axes = axes, .keepdims = keepdims};
    return ir_node(f, op, ir_at(f, x)->dtype, s, 1, &x, &a);
}

Ref ir_argmax(Func *f, Ref x, int axis) {
    const Shape *in = &ir_at(f, x)->shape;
    Shape s = {0};
    for (int i = 0; i < in->rank; i++) {
        if (i == axis) continue;
        s.dim[s.rank] = in->dim[i];
        if (in->batch_mask >> i & 1) s.batch_mask |= (uint8_t)(1u << s.rank);
        s.rank++;
    }
    Attr a = {.axis = axis};
    return ir_node(f, OP_argmax, DT_I32, s, 1, &x, &a);
}

/* a[..., M, K] @ b[..., K, N] (after the optional transposes); b may be 2-D. */
Ref ir_matmul(Func *f, Ref a, Ref b, bool trans_a, bool trans_b) {
    const Shape *sa = &ir_at(f, a)->shape, *sb = &ir_at(f, b)->shape;
    assert(sa->rank >= 2 && sb->rank >= 2);
    Shape s = *sa;
    int r = sa->rank;
    int m_axis = trans_a ? r - 1 : r - 2;
    int n_axis = trans_b ? sb->rank - 2 : sb->rank - 1;
    s.dim[r - 2] = sa->dim[m_axis];
    s.dim[r - 1] = sb->dim[n_axis];
    s.batch_mask = sa->batch_mask & (uint8_t)~(3u << (r - 2));
    if (sa->batch_mask >> m_axis & 1) s.batch_mask |= (uint8_t)(1u << (r - 2));
    if (sb->batch_mask >> n_axis & 1) s.batch_mask |= (uint8_t)(1u << (r - 1));
    if (sb->rank == r) s.batch_mask |= sb->batch_mask & (uint8_t)((1u << (r - 2)) - 1);
    Attr at = {.trans_a = trans_a, .trans_b = trans_b};
    Ref in[2] = {a, b};
    return ir_node(f, OP_matmul, ir_at(f, a)->dtype, s, 2, in, &at);
}

Ref ir_reshape(Func *f, Ref x, Shape shape) {
    if (shape_eq(&ir_at(f, x)->shape, &shape)) return x;
    return ir_node(f, OP_reshape, ir_at(f, x)->dtype, shape, 1, &x, NULL);
}

Ref ir_transpose(Func *f, Ref x, const int *perm) {
    const Shape *in = &ir_at(f, x)->shape;
    Shape s = {.rank = in->rank};
    Attr a = {0};
    for (int i = 0; i < in->rank; i++) {
        a.perm[i] = perm[i];
        s.dim[i] = in->dim[perm[i]];
        if (in->batch_mask >> perm[i] & 1) s.batch_mask |= (uint8_t)(1u << i);
    }
    return ir_node(f, OP_transpose, ir_at(f, x)->dtype, s, 1, &x, &a);
}

Ref ir_slice(Func *f, Ref x, const int64_t *start, const int64_t *step, Shape out) {
    Attr a = {0};
    for (int i = 0; i < out.rank; i++) {
        a.start[i] = start[i];
        a.step[i] = step[i];
    }
    return ir_node(f, OP_slice, ir_at(f, x)->dtype, out, 1, &x, &a);
}

Ref ir_concat(Func *f, int n, const Ref *xs, int axis) {
    assert(n >= 1);
    if (n == 1) return xs[0];
    if (n > IR_MAX_INPUTS) {
        /* concatenation is associative: join the first IR_MAX_INPUTS, then the rest */
        Ref parts[2] = {ir_concat(f, IR_MAX_INPUTS, xs, axis),
                        ir_concat(f, n - IR_MAX_INPUTS, xs + IR_MAX_INPUTS, axis)};
        return ir_concat(f, 2, parts, axis);
    }
    Shape s = ir_at(f, xs[0])->shape;
    for (int i = 1; i < n; i++) s.dim[axis] += ir_at(f, xs[i])->shape.dim[axis];
    Attr a = {.axis = axis};
    return ir_node(f, OP_concat, ir_at(f, xs[0])->dtype, s, n, xs, &a);
}

Ref ir_store(Func *f, int tensor, Ref value) {
    Attr a = {.tensor = tensor};
    Ref r = ir_node(f, OP_store, ir_at(f, value)->dtype, ir_at(f, value)->shape, 1, &value, &a);
    f->nodes[r].name = f->mod->tensors[tensor].name;
    return r;
}

/* ---------------------------------------------------------------- printer */

/* ` key=[a, b]`: the style of every list attribute */
static void print_pair(FILE *out, const char *key, int64_t a, int64_t b) {
    fprintf(out, " %s=[%" PRId64 ", %" PRId64 "]", key, a, b);
}

/* Window padding: `pad=[top, left]` when each side equals its opposite, else
 * `pad=[top, left, bottom, right]` (asymmetric "same" padding of an even kernel). */
static void print_padding(FILE *out, const Attr *a) {
    if (a->start[0] == a->start[2] && a->start[1] == a->start[3])
        print_pair(out, "pad", a->start[0], a->start[1]);
    else
        fprintf(out, " pad=[%" PRId64 ", %" PRId64 ", %" PRId64 ", %" PRId64 "]", a->start[0],
                a->start[1], a->start[2], a->start[3]);
}

static void print_attrs(FILE *out, const Func *f, const Node *n) {
    const Attr *a = &n->attr;
    switch (n->op) {
    case OP_input: fprintf(out, " %s", f->args[a->index].name); break;
    case OP_tensor:
    case OP_store:
    case OP_init_fill: fprintf(out, " @%s", f->mod->tensors[a->tensor].name); break;
    case OP_rand_uniform: fprintf(out, " stream=%" PRId64, a->index); break;
    case OP_const:
        if (a->data) {
            int64_t count = shape_numel(&n->shape, 1);
            fprintf(out, " [");
            for (int64_t i = 0; i < count && i < 8; i++) fprintf(out, "%s%g", i ? ", " : "", a->data[i]);
            fprintf(out, count > 8 ? ", ...]" : "]");
        } else {
            fprintf(out, " %g", a->f[0]);
        }
        break;
    case OP_sum:
    case OP_mean:
    case OP_max:
        fprintf(out, " axes=[");
        for (int i = 0, first = 1; i < 32; i++)
            if (a->axes >> i & 1) fprintf(out, "%s%d", first ? "" : ", ", i), first = 0;
        fprintf(out, "]%s", a->keepdims ? " keepdims" : "");
        break;
    case OP_argmax:
    case OP_concat: fprintf(out, " axis=%d", a->axis); break;
    case OP_matmul:
        if (a->trans_a) fprintf(out, " trans_a");
        if (a->trans_b) fprintf(out, " trans_b");
        break;
    case OP_transpose: {
        fprintf(out, " perm=[");
        for (int i = 0; i < n->shape.rank; i++) fprintf(out, "%s%d", i ? ", " : "", a->perm[i]);
        fprintf(out, "]");
        break;
    }
    case OP_slice: {
        fprintf(out, " start=[");
        for (int i = 0; i < n->shape.rank; i++) fprintf(out, "%s%" PRId64, i ? ", " : "", a->start[i]);
        fprintf(out, "] step=[");
        for (int i = 0; i < n->shape.rank; i++) fprintf(out, "%s%" PRId64, i ? ", " : "", a->step[i]);
        fprintf(out, "]");
        break;
    }
    case OP_leaky_relu:
    case OP_elu: fprintf(out, " %g", a->f[0]); break;
    case OP_softplus: fprintf(out, " beta=%g threshold=%g", a->f[0], a->f[1]); break;
    case OP_gelu:
        if (a->flag) fprintf(out, " tanh");
        break;
    case OP_act_grad:
    case OP_rnn_seq:
    case OP_rnn_seq_grad: fprintf(out, " %s", op_info[a->fwd_op].name); break;
    case OP_cross_entropy:
    case OP_cross_entropy_grad:
        if (a->f[0] != 0) fprintf(out, " smoothing=%g", a->f[0]);
        break;
    /* the kernel size of a convolution is its weight's shape; a pool's is an attribute */
    case OP_conv2d:
    case OP_conv2d_grad_input:
    case OP_conv2d_grad_weight:
        print_pair(out, "stride", a->step[0], a->step[1]);
        print_padding(out, a);
        print_pair(out, "dilation", a->perm[0], a->perm[1]);
        fprintf(out, " groups=%d", a->perm[2]);
        break;
    case OP_maxpool2d:
    case OP_avgpool2d:
    case OP_maxpool2d_grad:
        print_pair(out, "size", a->perm[0], a->perm[1]);
        print_pair(out, "stride", a->step[0], a->step[1]);
        print_padding(out, a);
        break;
    case OP_upsample2d:
        print_pair(out, "scale", a->perm[0], a->perm[1]);
        if (a->flag == 0 || a->flag == 1) fprintf(out, " mode=%s", a->flag ? "bilinear" : "nearest");
        else fprintf(out, " mode=%d", a->flag);  /* invalid; the verifier names it */
        break;
    case OP_lrn:
        fprintf(out, " size=%d alpha=%g beta=%g k=%g", a->perm[0], a->f[0], a->f[1], a->f[2]);
        break;
    default: break;
    }
}

void ir_print_func(FILE *out, const Func *f) {
    char buf[128];
    fprintf(out, "func %s(", f->name);
    for (int i = 0; i < f->nargs; i++) {
        const FuncArg *a = &f->args[i];
        fprintf(out, "%s%s%s: %s%s", i ? ", " : "", a->role == ARG_LABEL ? "label " : "", a->name,
                dtype_names[a->dtype], shape_str(&a->shape, buf, sizeof buf));
    }
    fprintf(out, ") {\n");
    for (int i = 0; i < f->nnodes; i++) {
        const Node *n = &f->nodes[i];
        fprintf(out, "  %%%d = %s", i, op_info[n->op].name);
        for (int j = 0; j < n->nin; j++) fprintf(out, "%s%%%d", j ? ", " : " ", n->in[j]);
        print_attrs(out, f, n);
        fprintf(out, " : %s%s", dtype_names[n->dtype], shape_str(&n->shape, buf, sizeof buf));
        if (n->name && n->op != OP_tensor && n->op != OP_store) fprintf(out, "  # %s", n->name);
        fprintf(out, "\n");
    }
    static const char *const role_names[] = {"output", "loss", "metric", "grad", "extra"};
    for (int i = 0; i < f->nouts; i++)
        fprintf(out, "  %s %s = %%%d\n", role_names[f->outs[i].role], f->outs[i].name,
                f->outs[i].value);
    fprintf(out, "}\n");
}

void ir_print_module(FILE *out, const Module *m, const char *only_func) {
    char buf[128];
    if (!only_func) {
        fprintf(out, "module %s  # max_batch=%" PRId64 " state_bytes=%" PRId64 "\n", m->name,
                m->max_batch, m->state_bytes);
        for (int i = 0; i < m->ntensors; i++) {
            const ModTensor *t = &m->tensors[i];
            fprintf(out, "  %s @%s: %s%s\n", tensor_kind_names[t->kind], t->name,
                    dtype_names[t->dtype], shape_str(&t->shape, buf, sizeof buf));
        }
    }
    for (int i = 0; i < m->nfuncs; i++) {
        if (only_func && strcmp(m->funcs[i]->name, only_func)) continue;
        if (!only_func || i) fprintf(out, "\n");
        ir_print_func(out, m->funcs[i]);
    }
}
