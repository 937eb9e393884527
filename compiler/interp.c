/* interp.c — the reference evaluator: runs any IR function node by node on doubles.
 *
 * It is the oracle of the project (DESIGN.md §3): gradient checks, constant folding and the
 * differential tests of every pass and of the LLVM backend compare against it. So every op is
 * the plain formula of its doc string in ops.h, written for a reader, not for speed (only
 * matmul cares about the loop order, to stay well under a second on MNIST-sized layers).
 *
 * Numerics: values are held as double. In f32 mode (Interp.f64 == false) the result of every
 * f32 node is rounded to float, so a run matches compiled code: elementwise arithmetic bit for
 * bit, kernels that accumulate (sum, matmul, softmax...) up to their order of accumulation,
 * which here is double. In f64 mode nothing is rounded. i32 results are always integers in
 * [-2^31, 2^31), wrapping around like the generated code.
 *
 * Errors: malformed IR, wrong arguments or an op this file does not know never crash;
 * interp_run returns a negative NNRT_E* code and a message naming the function, node and op.
 * On error the module tensors are rolled back to their values before the call.
 *
 * Definitions other backends must reproduce exactly (also in docs/architecture.md):
 *   init_fill of module tensor t:  nnrt_init_tensor(out, rank, shape, init.kind, init.a,
 *       init.b, init.fan_in, Interp.seed, stream = t); i32 tensors take the floats truncated.
 *   rand_uniform: element i (row-major) = nnrt_rng_uniform(Interp.seed, stream = attr.index,
 *       index = (uint64_t)step * numel + i), step = the current value of the i32 tensor
 *       attr.tensor (converted through int64 to uint64, i.e. two's complement), numel = the
 *       node's element count at the run-time batch n.
 *   maxpool2d and maxpool2d_grad: the element taken is the first maximum of the window in
 *       row-major order; a NaN counts as the maximum and the first NaN is taken (PyTorch's CPU
 *       kernel also gives NaN but routes the gradient to the last NaN); a window of -inf
 *       takes its first element; padding is never taken.
 */
#include "nnc.h"
#include "nnrt.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* A shape with more elements than this is malformed IR, not a request for memory. */
#define MAX_NUMEL (INT64_C(1) << 40)

static const double SELU_SCALE = 1.0507009873554805, SELU_ALPHA = 1.6732632423543772;
static const double SQRT_2_OVER_PI = 0.79788456080286535588; /* gelu tanh approximation */
static const double GELU_KAPPA = 0.044715;
static const double TWO_POW_31 = 2147483648.0, TWO_POW_32 = 4294967296.0;

/* ================================================================ tensors */

void itensor_free(ITensor *t) {
    if (!t) return;
    free(t->data);
    memset(t, 0, sizeof *t);
}

int itensor_alloc(ITensor *t, DType dt, int rank, const int64_t *dim) {
    memset(t, 0, sizeof *t);
    if ((unsigned)dt >= DT_COUNT || rank < 0 || rank > IR_MAX_RANK) return NNRT_EARG;
    int64_t numel = 1;
    for (int i = 0; i < rank; i++) {
        if (dim[i] < 0 || (dim[i] > 0 && numel > MAX_NUMEL / dim[i])) return NNRT_EARG;
        numel *= dim[i];
    }
    double *data = calloc(numel ? (size_t)numel : 1, sizeof *data);
    if (!data) return NNRT_ENOMEM;
    t->dtype = dt;
    t->rank = rank;
    for (int i = 0; i < rank; i++) t->dim[i] = dim[i];
    t->numel = numel;
    t->data = data;
    return 0;
}

/* Concrete dims of a symbolic shape at batch n; false when the shape itself is malformed. */
static bool shape_dims(const Shape *s, int64_t n, int64_t *dim) {
    if (s->rank < 0 || s->rank > IR_MAX_RANK || s->batch_mask >> s->rank) return false;
    for (int i = 0; i < s->rank; i++) {
        if (s->dim[i] < 0 || (s->dim[i] > 0 && n > MAX_NUMEL / s->dim[i])) return false;
        dim[i] = shape_dim(s, i, n);
    }
    return true;
}

int itensor_alloc_shape(ITensor *t, DType dt, const Shape *s, int64_t n) {
    int64_t dim[IR_MAX_RANK];
    if (n < 0 || !shape_dims(s, n, dim)) {
        memset(t, 0, sizeof *t);
        return NNRT_EARG;
    }
    return itensor_alloc(t, dt, s->rank, dim);
}

static int itensor_copy(ITensor *dst, const ITensor *src) {
    int rc = itensor_alloc(dst, src->dtype, src->rank, src->dim);
    if (rc) return rc;
    if (src->numel) memcpy(dst->data, src->data, (size_t)src->numel * sizeof *src->data);
    return 0;
}

static bool same_dims(const ITensor *a, const ITensor *b) {
    if (a->rank != b->rank) return false;
    for (int i = 0; i < a->rank; i++)
        if (a->dim[i] != b->dim[i]) return false;
    return true;
}

static const char *dims_str(const ITensor *t, char *buf, size_t len) {
    size_t used = (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < t->rank && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, "%s%lld", i ? ", " : "",
                                 (long long)t->dim[i]);
    if (used < len) snprintf(buf + used, len - used, "]");
    return buf;
}

static void row_major_strides(int rank, const int64_t *dim, int64_t *stride) {
    int64_t s = 1;
    for (int i = rank - 1; i >= 0; i--) {
        stride[i] = s;
        s *= dim[i];
    }
}

/* Product of dim[from..to). */
static int64_t dims_product(const int64_t *dim, int from, int to) {
    int64_t p = 1;
    for (int i = from; i < to; i++) p *= dim[i];
    return p;
}

static bool is_float(DType dt) { return dt == DT_F32 || dt == DT_F64; }

/* The i32 value of x as the generated code holds it: truncated, wrapped modulo 2^32
 * (two's complement); NaN and infinities give 0. */
static double wrap_i32(double x) {
    if (!isfinite(x)) return 0;
    double m = fmod(trunc(x), TWO_POW_32);  /* exact, in (-2^32, 2^32) */
    if (m < 0) m += TWO_POW_32;
    return m >= TWO_POW_31 ? m - TWO_POW_32 : m;
}

static int64_t as_int(double x) { return (int64_t)wrap_i32(x); }

/* ================================================================ a run: errors and values */

typedef struct Run {
    Interp *in;
    const Func *f;
    int64_t batch;
    const ITensor *args;
    ITensor *vals;   /* the value of every node, freed after its last use */
    int *last_use;   /* last node reading each value; nnodes for outputs; -1 when unread */
    ITensor *saved;  /* module tensors as they were before this run first stored to them */
    int node;        /* the node being evaluated, -1 outside the node loop */
    char *err;
    size_t errlen;
} Run;

static const char *op_name(Op op) { return (unsigned)op < OP_COUNT ? op_info[op].name : "?"; }
static const char *func_name(const Func *f) { return f->name ? f->name : "?"; }

/* Formats "interp: FUNC: %N = OP: message" (or "interp: FUNC: message" outside the node
 * loop) into r->err and returns code. */
__attribute__((format(printf, 3, 4))) static int fail(Run *r, int code, const char *fmt, ...) {
    if (!r->err || !r->errlen) return code;
    int used;
    if (r->node >= 0)
        used = snprintf(r->err, r->errlen, "interp: %s: %%%d = %s: ", func_name(r->f), r->node,
                        op_name(r->f->nodes[r->node].op));
    else
        used = snprintf(r->err, r->errlen, "interp: %s: ", func_name(r->f));
    if (used < 0 || (size_t)used >= r->errlen) return code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err + used, r->errlen - (size_t)used, fmt, ap);
    va_end(ap);
    return code;
}

static int unsupported(Run *r, const Node *n) {
    if (r->err && r->errlen)
        snprintf(r->err, r->errlen, "interp: op '%s' is not supported (%s: %%%d)", op_name(n->op),
                 func_name(r->f), r->node);
    return NNRT_EARG;
}

static const ITensor *input(Run *r, const Node *n, int i) { return &r->vals[n->in[i]]; }

/* Input i must have the dims of t. */
static int need_dims(Run *r, const Node *n, int i, const ITensor *t) {
    const ITensor *x = input(r, n, i);
    if (same_dims(x, t)) return 0;
    char a[96], b[96];
    return fail(r, NNRT_EARG, "input %d has dims %s, expected %s", i, dims_str(x, a, sizeof a),
                dims_str(t, b, sizeof b));
}

static int need_dtype(Run *r, const Node *n, int i, DType dt) {
    DType have = input(r, n, i)->dtype;
    if (have == dt) return 0;
    return fail(r, NNRT_EARG, "input %d is %s, expected %s", i, dtype_names[have], dtype_names[dt]);
}

static int need_float(Run *r, const ITensor *out) {
    if (is_float(out->dtype)) return 0;
    return fail(r, NNRT_EARG, "needs a float type, not %s", dtype_names[out->dtype]);
}

/* Elementwise ops: every input has the node's dims; inputs in `same_type` (a bitmask) have the
 * node's dtype. */
static int need_elementwise(Run *r, const Node *n, const ITensor *out, unsigned same_type) {
    for (int i = 0; i < n->nin; i++) {
        int rc = need_dims(r, n, i, out);
        if (!rc && (same_type >> i & 1)) rc = need_dtype(r, n, i, out->dtype);
        if (rc) return rc;
    }
    return 0;
}

/* The module tensor `id` as the interpreter holds it, or an error. */
static int module_tensor(Run *r, int id, ITensor **t) {
    if (id < 0 || id >= r->in->ntensors || id >= r->in->mod->ntensors)
        return fail(r, NNRT_EARG, "module tensor %d out of range (the module has %d)", id,
                    r->in->mod->ntensors);
    *t = &r->in->tensors[id];
    return 0;
}

/* An odometer over the row-major index space `dim` that keeps `off`, the offset of the current
 * index in another tensor laid out with `stride` (0 repeats an axis, negative reverses it). */
typedef struct Walk {
    int rank;
    int64_t dim[IR_MAX_RANK], idx[IR_MAX_RANK], stride[IR_MAX_RANK];
    int64_t off;
} Walk;

static void walk_step(Walk *w) {
    for (int a = w->rank - 1; a >= 0; a--) {
        w->off += w->stride[a];
        if (++w->idx[a] < w->dim[a]) return;
        w->off -= w->stride[a] * w->dim[a];
        w->idx[a] = 0;
    }
}

/* out[i] = x[walk offset] for every out element in row-major order. */
static void gather_strided(ITensor *out, const ITensor *x, int64_t base, const int64_t *stride) {
    Walk w = {.rank = out->rank, .off = base};
    for (int a = 0; a < out->rank; a++) {
        w.dim[a] = out->dim[a];
        w.stride[a] = stride[a];
    }
    for (int64_t i = 0; i < out->numel; i++, walk_step(&w)) out->data[i] = x->data[w.off];
}

/* ================================================================ leaves */

/* input: a copy of argument attr.index */
static int eval_input(Run *r, const Node *n, ITensor *out) {
    int64_t k = n->attr.index;
    if (k < 0 || k >= r->f->nargs)
        return fail(r, NNRT_EARG, "argument %lld out of range (the function has %d)",
                    (long long)k, r->f->nargs);
    const ITensor *a = &r->args[k];
    char x[96], y[96];
    if (!same_dims(a, out) || a->dtype != out->dtype)
        return fail(r, NNRT_EARG, "argument '%s' is %s%s, the node %s%s", r->f->args[k].name,
                    dtype_names[a->dtype], dims_str(a, x, sizeof x), dtype_names[out->dtype],
                    dims_str(out, y, sizeof y));
    if (out->numel) memcpy(out->data, a->data, (size_t)out->numel * sizeof *out->data);
    return 0;
}

/* tensor: the current value of module tensor attr.tensor (stores earlier in this run included) */
static int eval_tensor(Run *r, const Node *n, ITensor *out) {
    ITensor *t;
    int rc = module_tensor(r, n->attr.tensor, &t);
    if (rc) return rc;
    char x[96], y[96];
    if (!same_dims(t, out) || t->dtype != out->dtype)
        return fail(r, NNRT_EARG, "@%s is %s%s, the node %s%s",
                    r->in->mod->tensors[n->attr.tensor].name, dtype_names[t->dtype],
                    dims_str(t, x, sizeof x), dtype_names[out->dtype], dims_str(out, y, sizeof y));
    memcpy(out->data, t->data, (size_t)out->numel * sizeof *out->data);
    return 0;
}

/* const: attr.f[0] everywhere, or attr.data row-major */
static int eval_const(Run *r, const Node *n, ITensor *out) {
    if (n->attr.data && shape_has_batch(&n->shape))
        return fail(r, NNRT_EARG, "a constant with data cannot have a batch axis");
    for (int64_t i = 0; i < out->numel; i++)
        out->data[i] = n->attr.data ? n->attr.data[i] : n->attr.f[0];
    return 0;
}

/* batch_size: n */
static int eval_batch_size(Run *r, const Node *n, ITensor *out) {
    (void)n;
    if (out->numel != 1) return fail(r, NNRT_EARG, "must be a scalar");
    out->data[0] = (double)r->batch;
    return 0;
}

/* init_fill: nnrt_init_tensor(..., seed = Interp.seed, stream = tensor id); i32 truncates */
static int eval_init_fill(Run *r, const Node *n, ITensor *out) {
    ITensor *t;
    int rc = module_tensor(r, n->attr.tensor, &t);
    if (rc) return rc;
    const ModTensor *mt = &r->in->mod->tensors[n->attr.tensor];
    if (!same_dims(t, out) || t->dtype != out->dtype || shape_has_batch(&n->shape))
        return fail(r, NNRT_EARG, "node shape or dtype differs from @%s", mt->name);
    if ((unsigned)mt->init.kind >= INIT_COUNT)
        return fail(r, NNRT_EARG, "@%s has a bad init kind %d", mt->name, (int)mt->init.kind);
    float *values = malloc(out->numel ? (size_t)out->numel * sizeof *values : 1);
    if (!values) return fail(r, NNRT_ENOMEM, "out of memory");
    rc = nnrt_init_tensor(values, out->rank, out->dim, (int)mt->init.kind, mt->init.a, mt->init.b,
                          mt->init.fan_in, r->in->seed, (uint64_t)n->attr.tensor);
    if (rc) {
        free(values);
        return fail(r, rc, "cannot initialize @%s: %s", mt->name, nnrt_strerror(rc));
    }
    for (int64_t i = 0; i < out->numel; i++)
        out->data[i] = out->dtype == DT_I32 ? trunc((double)values[i]) : (double)values[i];
    free(values);
    return 0;
}

/* rand_uniform: out[i] = nnrt_rng_uniform(seed, attr.index, step * numel + i) */
static int eval_rand_uniform(Run *r, const Node *n, ITensor *out) {
    ITensor *step;
    int rc = need_float(r, out);
    if (!rc) rc = module_tensor(r, n->attr.tensor, &step);
    if (rc) return rc;
    if (step->dtype != DT_I32 || step->numel != 1)
        return fail(r, NNRT_EARG, "the step tensor @%s must be an i32 scalar",
                    r->in->mod->tensors[n->attr.tensor].name);
    uint64_t first = (uint64_t)as_int(step->data[0]) * (uint64_t)out->numel;
    for (int64_t i = 0; i < out->numel; i++)
        out->data[i] = nnrt_rng_uniform(r->in->seed, (uint64_t)n->attr.index, first + (uint64_t)i);
    return 0;
}

/* ================================================================ elementwise */

static double binary_float(Op op, double a, double b) {
    switch (op) {
    case OP_add: return a + b;                                          /* a + b */
    case OP_sub: return a - b;                                          /* a - b */
    case OP_mul: return a * b;                                          /* a * b */
    case OP_div: return a / b;                                          /* a / b (IEEE) */
    case OP_pow: return pow(a, b);                                      /* a ^ b */
    case OP_maximum: return isnan(a) || isnan(b) ? NAN : a >= b ? a : b; /* NaN propagates */
    case OP_minimum: return isnan(a) || isnan(b) ? NAN : a <= b ? a : b;
    case OP_eq: return a == b;
    case OP_ne: return a != b;
    case OP_lt: return a < b;
    case OP_le: return a <= b;
    case OP_gt: return a > b;
    case OP_ge: return a >= b;
    default: return NAN;
    }
}

/* i32: exact in int64, wrapped by finish_value; division truncates, x / 0 = 0 */
static double binary_int(Op op, int64_t a, int64_t b) {
    switch (op) {
    case OP_add: return (double)(a + b);
    case OP_sub: return (double)(a - b);
    case OP_mul: return (double)(a * b);
    case OP_div: return b == 0 ? 0 : (double)(a / b);
    case OP_maximum: return (double)(a >= b ? a : b);
    case OP_minimum: return (double)(a <= b ? a : b);
    case OP_eq: return a == b;
    case OP_ne: return a != b;
    case OP_lt: return a < b;
    case OP_le: return a <= b;
    case OP_gt: return a > b;
    case OP_ge: return a >= b;
    default: return NAN;
    }
}

/* add sub mul div pow maximum minimum, and the comparisons (f32 1/0 whatever the inputs) */
static int eval_binary(Run *r, const Node *n, ITensor *out) {
    bool cmp = op_info[n->op].flags & OPF_CMP;
    const ITensor *a = input(r, n, 0), *b = input(r, n, 1);
    int rc = need_elementwise(r, n, out, cmp ? 0 : 3);
    if (!rc && cmp) rc = need_float(r, out);
    if (!rc && cmp) rc = need_dtype(r, n, 1, a->dtype);
    if (rc) return rc;
    if (a->dtype == DT_I32) {
        if (n->op == OP_pow) return fail(r, NNRT_EARG, "pow needs float inputs, not i32");
        for (int64_t i = 0; i < out->numel; i++)
            out->data[i] = binary_int(n->op, as_int(a->data[i]), as_int(b->data[i]));
    } else {
        for (int64_t i = 0; i < out->numel; i++)
            out->data[i] = binary_float(n->op, a->data[i], b->data[i]);
    }
    return 0;
}

/* select: c != 0 ? a : b */
static int eval_select(Run *r, const Node *n, ITensor *out) {
    int rc = need_elementwise(r, n, out, 6);
    if (rc) return rc;
    const ITensor *c = input(r, n, 0), *a = input(r, n, 1), *b = input(r, n, 2);
    for (int64_t i = 0; i < out->numel; i++)
        out->data[i] = c->data[i] != 0 ? a->data[i] : b->data[i];
    return 0;
}

static double unary_float(Op op, double x) {
    switch (op) {
    case OP_neg: return -x;                                     /* -x */
    case OP_exp: return exp(x);                                 /* e^x */
    case OP_log: return log(x);                                 /* ln x */
    case OP_sqrt: return sqrt(x);                               /* sqrt x */
    case OP_abs: return fabs(x);                                /* |x| */
    case OP_sign: return x > 0 ? 1 : x < 0 ? -1 : x;            /* keeps ±0 and NaN */
    case OP_floor: return floor(x);                             /* floor x */
    case OP_cos: return cos(x);                                 /* cos x */
    case OP_erf: return erf(x);                                 /* erf x */
    case OP_stop_gradient: return x;                            /* x */
    default: return NAN;
    }
}

/* neg exp log sqrt abs sign floor cos erf stop_gradient; i32 for neg abs sign stop_gradient */
static int eval_unary(Run *r, const Node *n, ITensor *out) {
    int rc = need_elementwise(r, n, out, 1);
    if (rc) return rc;
    const ITensor *x = input(r, n, 0);
    if (out->dtype == DT_I32) {
        if (n->op != OP_neg && n->op != OP_abs && n->op != OP_sign && n->op != OP_stop_gradient)
            return need_float(r, out);
        for (int64_t i = 0; i < out->numel; i++) {
            int64_t v = as_int(x->data[i]);
            out->data[i] = n->op == OP_neg ? (double)-v
                         : n->op == OP_abs ? (double)(v < 0 ? -v : v)
                         : n->op == OP_sign ? (double)((v > 0) - (v < 0))
                         : (double)v;
        }
        return 0;
    }
    for (int64_t i = 0; i < out->numel; i++) out->data[i] = unary_float(n->op, x->data[i]);
    return 0;
}

/* cast: to the node dtype. float -> i32 truncates toward zero and saturates to
 * [-2^31, 2^31 - 1], NaN gives 0 (LLVM's fptosi.sat); i32 -> float is exact in f64 mode and
 * rounded to float in f32 mode. */
static int eval_cast(Run *r, const Node *n, ITensor *out) {
    int rc = need_elementwise(r, n, out, 0);
    if (rc) return rc;
    const ITensor *x = input(r, n, 0);
    for (int64_t i = 0; i < out->numel; i++) {
        double v = x->data[i];
        if (out->dtype == DT_I32 && is_float(x->dtype))
            v = isnan(v)           ? 0
                : v >= TWO_POW_31  ? TWO_POW_31 - 1
                : v <= -TWO_POW_31 ? -TWO_POW_31
                                   : trunc(v);
        out->data[i] = v;
    }
    return 0;
}

/* ================================================================ activations */

/* leaky_relu's slope and elu's alpha are attr.f[0] as written (sema always sets them).
 * softplus: a zero beta (invalid) or threshold means PyTorch's default, 1 and 20. */
static double leaky_slope(const Attr *a) { return a->f[0]; }
static double elu_alpha(const Attr *a) { return a->f[0]; }
static double softplus_beta(const Attr *a) { return a->f[0] != 0 ? a->f[0] : 1.0; }
static double softplus_threshold(const Attr *a) { return a->f[1] != 0 ? a->f[1] : 20.0; }

/* 1 / (1 + e^-x), without overflow for large |x| */
static double sigmoid(double x) {
    if (x >= 0) return 1 / (1 + exp(-x));
    double e = exp(x);
    return e / (1 + e);
}

/* log(1 + e^x), without overflow */
static double log1p_exp(double x) { return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)); }

/* min(max(v, 0), 6), NaN propagating */
static double relu6(double v) { return v < 0 ? 0 : v > 6 ? 6 : v; }

static double act_forward(Op op, const Attr *a, double x) {
    switch (op) {
    case OP_relu: return x < 0 ? 0 : x;                                /* max(x, 0) */
    case OP_leaky_relu: return x > 0 ? x : leaky_slope(a) * x;         /* x or slope x */
    case OP_elu: return x > 0 ? x : elu_alpha(a) * expm1(x);           /* x or alpha (e^x - 1) */
    case OP_selu: return SELU_SCALE * (x > 0 ? x : SELU_ALPHA * expm1(x)); /* scale elu(x, alpha) */
    case OP_gelu:
        if (a->flag) /* x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
            return 0.5 * x * (1 + tanh(SQRT_2_OVER_PI * (x + GELU_KAPPA * x * x * x)));
        /* x/2 (1 + erf(x/sqrt 2)), as erfc: no cancellation for x << 0 */
        return 0.5 * x * erfc(-x / M_SQRT2);
    case OP_sigmoid: return sigmoid(x);                                /* 1 / (1 + e^-x) */
    case OP_tanh: return tanh(x);                                      /* tanh x */
    case OP_softplus: {                                                /* log(1 + e^(b x)) / b */
        double bx = softplus_beta(a) * x;
        return bx > softplus_threshold(a) ? x : log1p_exp(bx) / softplus_beta(a);
    }
    case OP_silu: return x * sigmoid(x);                               /* x sigmoid(x) */
    case OP_mish: return x * tanh(log1p_exp(x));                       /* x tanh(softplus(x)) */
    case OP_hard_sigmoid: return relu6(x + 3) / 6;                     /* relu6(x + 3) / 6 */
    case OP_hard_swish: return x * relu6(x + 3) / 6;                   /* x relu6(x + 3) / 6 */
    default: return NAN;
    }
}

/* f'(x), with PyTorch's choices at the kinks (relu'(0) = 0, hard_swish as its backward kernel) */
static double act_derivative(Op op, const Attr *a, double x) {
    switch (op) {
    case OP_relu: return x > 0 ? 1 : 0;
    case OP_leaky_relu: return x > 0 ? 1 : leaky_slope(a);
    case OP_elu: return x > 0 ? 1 : elu_alpha(a) * exp(x);
    case OP_selu: return SELU_SCALE * (x > 0 ? 1 : SELU_ALPHA * exp(x));
    case OP_gelu: {
        if (a->flag) { /* d/dx x/2 (1 + tanh u), u = sqrt(2/pi) (x + k x^3) */
            double t = tanh(SQRT_2_OVER_PI * (x + GELU_KAPPA * x * x * x));
            double du = SQRT_2_OVER_PI * (1 + 3 * GELU_KAPPA * x * x);
            return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du;
        }
        /* Phi(x) + x phi(x), Phi(x) = (1 + erf(x/sqrt 2))/2 = erfc(-x/sqrt 2)/2 */
        return 0.5 * erfc(-x / M_SQRT2) + x * exp(-0.5 * x * x) / sqrt(2 * M_PI);
    }
    case OP_sigmoid: {
        double s = sigmoid(x);
        return s * (1 - s);                                                 /* s (1 - s) */
    }
    case OP_tanh: {
        double t = tanh(x);
        return 1 - t * t;                                                   /* 1 - tanh^2 */
    }
    case OP_softplus: {                                                     /* sigmoid(b x) */
        double bx = softplus_beta(a) * x;
        return bx > softplus_threshold(a) ? 1 : sigmoid(bx);
    }
    case OP_silu: {
        double s = sigmoid(x);
        return s * (1 + x * (1 - s));                                       /* s (1 + x (1 - s)) */
    }
    case OP_mish: {                                                         /* t + x s (1 - t^2) */
        double t = tanh(log1p_exp(x)), s = sigmoid(x);
        return t + x * s * (1 - t * t);
    }
    case OP_hard_sigmoid: return x > -3 && x < 3 ? 1.0 / 6 : 0;
    case OP_hard_swish: return x < -3 ? 0 : x <= 3 ? x / 3 + 0.5 : 1;     /* PyTorch's kernel */
    default: return NAN;
    }
}

/* relu ... hard_swish: out = f(x) */
static int eval_activation(Run *r, const Node *n, ITensor *out) {
    int rc = need_float(r, out);
    if (!rc) rc = need_elementwise(r, n, out, 1);
    if (rc) return rc;
    const ITensor *x = input(r, n, 0);
    for (int64_t i = 0; i < out->numel; i++)
        out->data[i] = act_forward(n->op, &n->attr, x->data[i]);
    return 0;
}

/* act_grad (x, dy): dy * f'(x) for f = attr.fwd_op with the node's attrs */
static int eval_act_grad(Run *r, const Node *n, ITensor *out) {
    int rc = need_float(r, out);
    if (!rc) rc = need_elementwise(r, n, out, 3);
    if (rc) return rc;
    int f = n->attr.fwd_op;
    if (f < 0 || f >= OP_COUNT || !(op_info[f].flags & OPF_ACT))
        return fail(r, NNRT_EARG, "fwd_op %d (%s) is not an activation", f, op_name((Op)f));
    const ITensor *x = input(r, n, 0), *dy = input(r, n, 1);
    for (int64_t i = 0; i < out->numel; i++)
        out->data[i] = dy->data[i] * act_derivative((Op)f, &n->attr, x->data[i]);
    return 0;
}

/* ================================================================ reductions */

/* sum, mean, max over the axes in attr.axes (bit i = axis i), keepdims or not */
static int eval_reduce(Run *r, const Node *n, ITensor *out) {
    const ITensor *x = input(r, n, 0);
    int rc = need_float(r, out);
    if (!rc) rc = need_dtype(r, n, 0, out->dtype);
    if (rc) return rc;
    uint32_t axes = n->attr.axes;
    if (x->rank < 32 && axes >> x->rank)
        return fail(r, NNRT_EARG, "axes 0x%x beyond the input rank %d", axes, x->rank);
    /* the expected output dims, and where each input axis lands in the output */
    ITensor want = {.rank = 0};
    int64_t out_stride[IR_MAX_RANK], stride[IR_MAX_RANK], count = 1;
    int out_axis[IR_MAX_RANK];
    for (int a = 0; a < x->rank; a++) {
        bool reduced = axes >> a & 1;
        if (reduced) count *= x->dim[a];
        out_axis[a] = reduced && !n->attr.keepdims ? -1 : want.rank;
        if (out_axis[a] >= 0) want.dim[want.rank++] = reduced ? 1 : x->dim[a];
    }
    if (!same_dims(&want, out)) {
        char b1[96], b2[96];
        return fail(r, NNRT_EARG, "result dims %s, expected %s", dims_str(out, b1, sizeof b1),
                    dims_str(&want, b2, sizeof b2));
    }
    row_major_strides(out->rank, out->dim, out_stride);
    for (int a = 0; a < x->rank; a++) stride[a] = axes >> a & 1 ? 0 : out_stride[out_axis[a]];
    for (int64_t i = 0; i < out->numel; i++) out->data[i] = n->op == OP_max ? -INFINITY : 0;
    Walk w = {.rank = x->rank};
    memcpy(w.dim, x->dim, sizeof w.dim);
    memcpy(w.stride, stride, sizeof w.stride);
    for (int64_t i = 0; i < x->numel; i++, walk_step(&w)) {
        double v = x->data[i], *acc = &out->data[w.off];
        if (n->op != OP_max) *acc += v;                   /* sum of x */
        else if (!isnan(*acc) && (isnan(v) || v > *acc)) *acc = v; /* max of x; a NaN sticks */
    }
    if (n->op == OP_mean)                                 /* sum / count (run-time count) */
        for (int64_t i = 0; i < out->numel; i++) out->data[i] /= (double)count;
    return 0;
}

/* argmax: index of the first maximum along attr.axis (a NaN counts as the maximum) */
static int eval_argmax(Run *r, const Node *n, ITensor *out) {
    const ITensor *x = input(r, n, 0);
    int axis = n->attr.axis;
    if (out->dtype != DT_I32) return fail(r, NNRT_EARG, "argmax produces i32");
    if (axis < 0 || axis >= x->rank) return fail(r, NNRT_EARG, "axis %d out of range", axis);
    ITensor want = {.rank = 0};
    for (int a = 0; a < x->rank; a++)
        if (a != axis) want.dim[want.rank++] = x->dim[a];
    if (!same_dims(&want, out))
        return fail(r, NNRT_EARG, "result dims differ from the input's without axis %d", axis);
    int64_t len = x->dim[axis], inner = dims_product(x->dim, axis + 1, x->rank);
    if (len == 0 && out->numel) return fail(r, NNRT_EARG, "argmax over an empty axis");
    for (int64_t o = 0; o < out->numel; o++) {
        const double *row = x->data + (o / inner) * len * inner + o % inner;
        int64_t best = 0;
        for (int64_t k = 1; k < len && !isnan(row[best * inner]); k++)
            if (isnan(row[k * inner]) || row[k * inner] > row[best * inner]) best = k;
        out->data[o] = (double)best;
    }
    return 0;
}

/* ================================================================ linear algebra */

/* Copies the transpose of a rows x cols matrix into dst (cols x rows). */
static void transpose_matrix(double *dst, const double *src, int64_t rows, int64_t cols) {
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) dst[j * rows + i] = src[i * cols + j];
}

/* matmul: out[..., i, j] = sum_k op(a)[..., i, k] op(b)[..., k, j], op = transpose of the last
 * two axes when trans_a / trans_b; a 2-D b is shared by every leading index. */
static int eval_matmul(Run *r, const Node *n, ITensor *out) {
    const ITensor *a = input(r, n, 0), *b = input(r, n, 1);
    int rc = need_float(r, out);
    if (!rc) rc = need_dtype(r, n, 0, out->dtype);
    if (!rc) rc = need_dtype(r, n, 1, out->dtype);
    if (rc) return rc;
    int ra = a->rank, rb = b->rank;
    if (ra < 2 || rb < 2) return fail(r, NNRT_EARG, "operands must have rank >= 2");
    if (rb != 2 && rb != ra) return fail(r, NNRT_EARG, "b must be 2-D or of a's rank");
    bool ta = n->attr.trans_a, tb = n->attr.trans_b;
    int64_t m = a->dim[ta ? ra - 1 : ra - 2], k = a->dim[ta ? ra - 2 : ra - 1];
    int64_t kb = b->dim[tb ? rb - 1 : rb - 2], nn = b->dim[tb ? rb - 2 : rb - 1];
    if (k != kb)
        return fail(r, NNRT_EARG, "inner dimensions %lld and %lld differ", (long long)k,
                    (long long)kb);
    ITensor want = *a;
    want.dim[ra - 2] = m;
    want.dim[ra - 1] = nn;
    for (int i = 0; rb == ra && i < ra - 2; i++)
        if (a->dim[i] != b->dim[i])
            return fail(r, NNRT_EARG, "leading axis %d differs: %lld and %lld", i,
                        (long long)a->dim[i], (long long)b->dim[i]);
    if (!same_dims(&want, out)) {
        char b1[96], b2[96];
        return fail(r, NNRT_EARG, "result dims %s, expected %s", dims_str(out, b1, sizeof b1),
                    dims_str(&want, b2, sizeof b2));
    }
    int64_t batches = dims_product(a->dim, 0, ra - 2);
    /* op(a) and op(b) as contiguous row-major matrices, so the inner loop runs along rows */
    double *pa = ta ? malloc((size_t)(m * k + 1) * sizeof *pa) : NULL;
    double *pb = tb ? malloc((size_t)(k * nn + 1) * sizeof *pb) : NULL;
    if ((ta && !pa) || (tb && !pb)) {
        free(pa);
        free(pb);
        return fail(r, NNRT_ENOMEM, "out of memory");
    }
    for (int64_t s = 0; s < batches; s++) {
        const double *A = a->data + s * m * k, *B = b->data + (rb == 2 ? 0 : s * k * nn);
        double *C = out->data + s * m * nn;
        if (ta) { /* a holds [k, m] */
            transpose_matrix(pa, A, k, m);
            A = pa;
        }
        if (tb) { /* b holds [n, k] */
            transpose_matrix(pb, B, nn, k);
            B = pb;
        }
        for (int64_t i = 0; i < m; i++)
            for (int64_t p = 0; p < k; p++) {
                double aip = A[i * k + p];
                for (int64_t j = 0; j < nn; j++) C[i * nn + j] += aip * B[p * nn + j];
            }
    }
    free(pa);
    free(pb);
    return 0;
}

/* ================================================================ shape ops */

/* reshape: the same values, row-major */
static int eval_reshape(Run *r, const Node *n, ITensor *out) {
    const ITensor *x = input(r, n, 0);
    int rc = need_dtype(r, n, 0, out->dtype);
    if (rc) return rc;
    if (x->numel != out->numel)
        return fail(r, NNRT_EARG, "element count changes from %lld to %lld", (long long)x->numel,
                    (long long)out->numel);
    memcpy(out->data, x->data, (size_t)out->numel * sizeof *out->data);
    return 0;
}

/* transpose: out axis i = in axis perm[i] */
static int eval_transpose(Run *r, const Node *n, ITensor *out) {
    const ITensor *x = input(r, n, 0);
    int rc = need_dtype(r, n, 0, out->dtype);
    if (rc) return rc;
    if (x->rank != out->rank) return fail(r, NNRT_EARG, "rank changes");
    int64_t in_stride[IR_MAX_RANK], stride[IR_MAX_RANK];
    row_major_strides(x->rank, x->dim, in_stride);
    unsigned seen = 0;
    for (int i = 0; i < out->rank; i++) {
        int p = n->attr.perm[i];
        if (p < 0 || p >= x->rank || (seen >> p & 1))
            return fail(r, NNRT_EARG, "perm is not a permutation");
        if (x->dim[p] != out->dim[i])
            return fail(r, NNRT_EARG, "axis %d size differs from input axis %d", i, p);
        seen |= 1u << p;
        stride[i] = in_stride[p];
    }
    gather_strided(out, x, 0, stride);
    return 0;
}

/* broadcast (numpy): input right-aligned; its size-1 and missing axes repeat */
static int eval_broadcast(Run *r, const Node *n, ITensor *out) {
    const ITensor *x = input(r, n, 0);
    int rc = need_dtype(r, n, 0, out->dtype);
    if (rc) return rc;
    int lead = out->rank - x->rank;
    if (lead < 0)
        return fail(r, NNRT_EARG, "input rank %d exceeds the node's %d", x->rank, out->rank);
    int64_t in_stride[IR_MAX_RANK], stride[IR_MAX_RANK];
    row_major_strides(x->rank, x->dim, in_stride);
    for (int i = 0; i < out->rank; i++) {
        int j = i - lead;
        if (j < 0 || (x->dim[j] == 1 && out->dim[i] != 1)) stride[i] = 0;
        else if (x->dim[j] == out->dim[i]) stride[i] = in_stride[j];
        else {
            char b1[96], b2[96];
            return fail(r, NNRT_EARG, "%s does not broadcast to %s", dims_str(x, b1, sizeof b1),
                        dims_str(out, b2, sizeof b2));
        }
    }
    gather_strided(out, x, 0, stride);
    return 0;
}

/* slice: out[i] = in[start + i*step] per axis */
static int eval_slice(Run *r, const Node *n, ITensor *out) {
    const ITensor *x = input(r, n, 0);
    int rc = need_dtype(r, n, 0, out->dtype);
    if (rc) return rc;
    if (x->rank != out->rank) return fail(r, NNRT_EARG, "rank changes");
    int64_t in_stride[IR_MAX_RANK], stride[IR_MAX_RANK], base = 0;
    row_major_strides(x->rank, x->dim, in_stride);
    for (int a = 0; a < x->rank; a++) {
        int64_t start = n->attr.start[a], step = n->attr.step[a], count = out->dim[a];
        if (count > 0) {
            /* first and last read indices in [0, dim); step 0 is malformed (verify.c) */
            if (step == 0 || step == INT64_MIN || start < 0 || start >= x->dim[a] ||
                (count - 1) > (step > 0 ? (x->dim[a] - 1 - start) / step : start / -step))
                return fail(r, NNRT_EARG,
                            "axis %d (start %lld, step %lld, count %lld) reads outside [0, %lld)",
                            a, (long long)start, (long long)step, (long long)count,
                            (long long)x->dim[a]);
            base += start * in_stride[a];
        }
        stride[a] = count > 1 ? step * in_stride[a] : 0; /* bounded by the check above */
    }
    if (out->numel) gather_strided(out, x, base, stride);
    return 0;
}

/* concat: inputs joined along attr.axis */
static int eval_concat(Run *r, const Node *n, ITensor *out) {
    int axis = n->attr.axis;
    if (axis < 0 || axis >= out->rank) return fail(r, NNRT_EARG, "axis %d out of range", axis);
    int64_t total = 0;
    for (int i = 0; i < n->nin; i++) {
        const ITensor *x = input(r, n, i);
        int rc = need_dtype(r, n, i, out->dtype);
        if (rc) return rc;
        bool ok = x->rank == out->rank;
        for (int a = 0; ok && a < x->rank; a++) ok = a == axis || x->dim[a] == out->dim[a];
        if (!ok) {
            char b1[96], b2[96];
            return fail(r, NNRT_EARG, "input %d dims %s do not fit %s along axis %d", i,
                        dims_str(x, b1, sizeof b1), dims_str(out, b2, sizeof b2), axis);
        }
        total += x->dim[axis];
    }
    if (total != out->dim[axis])
        return fail(r, NNRT_EARG, "inputs add up to %lld along axis %d, the node has %lld",
                    (long long)total, axis, (long long)out->dim[axis]);
    int64_t outer = dims_product(out->dim, 0, axis),
            inner = dims_product(out->dim, axis + 1, out->rank);
    double *dst = out->data;
    for (int64_t o = 0; o < outer; o++)
        for (int i = 0; i < n->nin; i++) {
            const ITensor *x = input(r, n, i);
            int64_t chunk = x->dim[axis] * inner;
            if (chunk) memcpy(dst, x->data + o * chunk, (size_t)chunk * sizeof *dst);
            dst += chunk;
        }
    return 0;
}

/* Checks that `rows` (the dims of `index` followed by the dims of `table` after the first) are
 * the dims of `t`, and returns the element count of one row. */
static int need_row_dims(Run *r, const ITensor *index, const ITensor *table, const ITensor *t,
                         const char *what, int64_t *row) {
    ITensor want = *index;
    if (table->rank < 1) return fail(r, NNRT_EARG, "the table must have rank >= 1");
    if (index->rank + table->rank - 1 > IR_MAX_RANK) return fail(r, NNRT_EARG, "rank too large");
    for (int a = 1; a < table->rank; a++) want.dim[want.rank++] = table->dim[a];
    if (!same_dims(&want, t)) {
        char b1[96], b2[96];
        return fail(r, NNRT_EARG, "%s dims %s, expected %s", what, dims_str(t, b1, sizeof b1),
                    dims_str(&want, b2, sizeof b2));
    }
    *row = dims_product(table->dim, 1, table->rank);
    return 0;
}

/* gather (table a[V, D...], i32 indices b[...]): out[j, D...] = a[b[j], D...], or 0 when b[j]
 * is out of range */
static int eval_gather(Run *r, const Node *n, ITensor *out) {
    const ITensor *table = input(r, n, 0), *index = input(r, n, 1);
    int64_t row;
    int rc = need_dtype(r, n, 0, out->dtype);
    if (!rc) rc = need_dtype(r, n, 1, DT_I32);
    if (!rc) rc = need_row_dims(r, index, table, out, "result", &row);
    if (rc) return rc;
    int64_t v = table->rank ? table->dim[0] : 0;
    for (int64_t j = 0; j < index->numel; j++) {
        int64_t id = as_int(index->data[j]);
        if (id >= 0 && id < v && row)
            memcpy(out->data + j * row, table->data + id * row, (size_t)row * sizeof *out->data);
    }
    return 0;
}

/* scatter_add (i32 indices a[...], dy b[..., D...]): out = zeros[V, D...]; out[a[j]] += b[j],
 * indices out of range skipped */
static int eval_scatter_add(Run *r, const Node *n, ITensor *out) {
    const ITensor *index = input(r, n, 0), *dy = input(r, n, 1);
    int64_t row;
    int rc = need_float(r, out);
    if (!rc) rc = need_dtype(r, n, 0, DT_I32);
    if (!rc) rc = need_dtype(r, n, 1, out->dtype);
    if (!rc) rc = need_row_dims(r, index, out, dy, "input 1", &row);
    if (rc) return rc;
    for (int64_t j = 0; j < index->numel; j++) {
        int64_t id = as_int(index->data[j]);
        if (id < 0 || id >= out->dim[0]) continue;
        for (int64_t e = 0; e < row; e++) out->data[id * row + e] += dy->data[j * row + e];
    }
    return 0;
}

/* ================================================================ softmax and cross-entropy */

/* log sum_j e^x_j over one row, stable: m + log sum e^(x_j - m) */
static double log_sum_exp(const double *x, int64_t c) {
    double m = -INFINITY;
    for (int64_t j = 0; j < c; j++)
        if (x[j] > m || isnan(x[j])) m = x[j];
    if (isinf(m) || isnan(m)) return m; /* all -inf (or a NaN, an +inf): no finite shift */
    double s = 0;
    for (int64_t j = 0; j < c; j++) s += exp(x[j] - m);
    return m + log(s);
}

/* softmax: e^(x - lse), log_softmax: x - lse, over the last axis */
static int eval_softmax(Run *r, const Node *n, ITensor *out) {
    int rc = need_float(r, out);
    if (!rc) rc = need_elementwise(r, n, out, 1);
    if (rc) return rc;
    if (out->rank < 1) return fail(r, NNRT_EARG, "needs rank >= 1");
    const ITensor *x = input(r, n, 0);
    int64_t c = out->dim[out->rank - 1], rows = c ? out->numel / c : 0;
    for (int64_t i = 0; i < rows; i++) {
        const double *xi = x->data + i * c;
        double lse = log_sum_exp(xi, c);
        for (int64_t j = 0; j < c; j++)
            out->data[i * c + j] = n->op == OP_softmax ? exp(xi[j] - lse) : xi[j] - lse;
    }
    return 0;
}

/* softmax_grad (y, dy): y * (dy - sum(dy*y)); log_softmax_grad (y, dy): dy - e^y * sum(dy) */
static int eval_softmax_grad(Run *r, const Node *n, ITensor *out) {
    int rc = need_float(r, out);
    if (!rc) rc = need_elementwise(r, n, out, 3);
    if (rc) return rc;
    if (out->rank < 1) return fail(r, NNRT_EARG, "needs rank >= 1");
    const ITensor *y = input(r, n, 0), *dy = input(r, n, 1);
    int64_t c = out->dim[out->rank - 1], rows = c ? out->numel / c : 0;
    for (int64_t i = 0; i < rows; i++) {
        const double *yi = y->data + i * c, *gi = dy->data + i * c;
        double s = 0;
        for (int64_t j = 0; j < c; j++) s += n->op == OP_softmax_grad ? gi[j] * yi[j] : gi[j];
        for (int64_t j = 0; j < c; j++)
            out->data[i * c + j] =
                n->op == OP_softmax_grad ? yi[j] * (gi[j] - s) : gi[j] - exp(yi[j]) * s;
    }
    return 0;
}

/* The operands of cross_entropy and cross_entropy_grad: logits[..., C], labels i32[...],
 * optional weight[C]. */
typedef struct CrossEntropy {
    const ITensor *logits, *labels, *weight;
    int64_t classes, positions;
    double smoothing;
} CrossEntropy;

static int cross_entropy_operands(Run *r, const Node *n, int nin, CrossEntropy *ce) {
    if (nin != 2 && nin != 3)
        return fail(r, NNRT_EARG, "takes logits, labels and an optional weight");
    ce->logits = input(r, n, 0);
    ce->labels = input(r, n, 1);
    ce->weight = nin == 3 ? input(r, n, 2) : NULL;
    ce->smoothing = n->attr.f[0];
    const ITensor *x = ce->logits;
    if (!is_float(x->dtype)) return fail(r, NNRT_EARG, "logits must be float");
    int rc = need_dtype(r, n, 1, DT_I32);
    if (rc) return rc;
    if (x->rank < 1) return fail(r, NNRT_EARG, "logits need rank >= 1");
    ITensor want = *x;
    want.rank--;
    if (!same_dims(&want, ce->labels)) {
        char b1[96], b2[96];
        return fail(r, NNRT_EARG, "labels have dims %s, expected %s",
                    dims_str(ce->labels, b1, sizeof b1), dims_str(&want, b2, sizeof b2));
    }
    ce->classes = x->dim[x->rank - 1];
    ce->positions = ce->labels->numel;
    if (ce->weight && (ce->weight->rank != 1 || ce->weight->dim[0] != ce->classes ||
                       !is_float(ce->weight->dtype)))
        return fail(r, NNRT_EARG, "weight must be a float vector of %lld classes",
                    (long long)ce->classes);
    return 0;
}

static double class_weight(const CrossEntropy *ce, int64_t c) {
    return ce->weight ? ce->weight->data[c] : 1;
}

/* The label of position i, or -1 when it is out of [0, C) and therefore ignored. */
static int64_t label_at(const CrossEntropy *ce, int64_t i) {
    int64_t y = as_int(ce->labels->data[i]);
    return y >= 0 && y < ce->classes ? y : -1;
}

/* sum over valid positions of w[y_i] (the count when unweighted): the mean's denominator */
static double weight_total(const CrossEntropy *ce) {
    double total = 0;
    for (int64_t i = 0; i < ce->positions; i++) {
        int64_t y = label_at(ce, i);
        if (y >= 0) total += class_weight(ce, y);
    }
    return total;
}

/* cross_entropy, torch.nn.functional.cross_entropy(reduction='mean', label_smoothing=s):
 *   loss = sum_i [(1-s) w[y_i] (-log p_i[y_i]) + (s/C) sum_c w[c] (-log p_i[c])] / sum_i w[y_i]
 * over positions i whose label is in [0, C) (w = 1 without weights; all ignored gives 0/0). */
static int eval_cross_entropy(Run *r, const Node *n, ITensor *out) {
    CrossEntropy ce;
    int rc = need_float(r, out);
    if (!rc) rc = cross_entropy_operands(r, n, n->nin, &ce);
    if (rc) return rc;
    if (out->numel != 1) return fail(r, NNRT_EARG, "the loss must be a scalar");
    int64_t c = ce.classes;
    double s = ce.smoothing, total = 0;
    for (int64_t i = 0; i < ce.positions; i++) {
        int64_t y = label_at(&ce, i);
        if (y < 0) continue;
        const double *xi = ce.logits->data + i * c;
        double lse = log_sum_exp(xi, c), smooth = 0;
        for (int64_t k = 0; k < c; k++) smooth += class_weight(&ce, k) * (lse - xi[k]);
        total += (1 - s) * class_weight(&ce, y) * (lse - xi[y]) + s / (double)c * smooth;
    }
    out->data[0] = total / weight_total(&ce);
    return 0;
}

/* cross_entropy_grad (logits, labels[, weight], dloss): d loss / d logits, for valid i:
 *   dloss / W * [(1-s) w[y] (p_j - [j = y]) + (s/C) (p_j sum_c w[c] - w[j])],  W = sum_i w[y_i]
 * and 0 at ignored positions. */
static int eval_cross_entropy_grad(Run *r, const Node *n, ITensor *out) {
    CrossEntropy ce;
    int rc = need_float(r, out);
    if (!rc) rc = cross_entropy_operands(r, n, n->nin - 1, &ce);
    if (rc) return rc;
    const ITensor *dloss = input(r, n, n->nin - 1);
    if (dloss->numel != 1 || !is_float(dloss->dtype))
        return fail(r, NNRT_EARG, "dloss must be a float scalar");
    if (!same_dims(ce.logits, out) || ce.logits->dtype != out->dtype)
        return fail(r, NNRT_EARG, "the result must have the logits' dims and dtype");
    int64_t c = ce.classes;
    double s = ce.smoothing, scale = dloss->data[0] / weight_total(&ce), weight_sum = 0;
    for (int64_t k = 0; k < c; k++) weight_sum += class_weight(&ce, k);
    for (int64_t i = 0; i < ce.positions; i++) {
        int64_t y = label_at(&ce, i);
        if (y < 0) continue; /* out is zeroed */
        const double *xi = ce.logits->data + i * c;
        double lse = log_sum_exp(xi, c), wy = class_weight(&ce, y);
        for (int64_t j = 0; j < c; j++) {
            double p = exp(xi[j] - lse);
            double g = (1 - s) * wy * (p - (j == y)) +
                       s / (double)c * (p * weight_sum - class_weight(&ce, j));
            out->data[i * c + j] = scale * g;
        }
    }
    return 0;
}

/* ================================================================ spatial layers (NCHW) */

/* The geometry shared by conv2d, the pools and their gradient kernels (ops.h): an input
 * x[N, C, H, W] and an output y[N, Co, Ho, Wo]; tap (ky, kx) of output (oy, ox) reads input
 * row oy*sh - pt + ky*dh and column ox*sw - pl + kx*dw, which is padding outside [0, H) x
 * [0, W). Names follow the doc strings of ops.h: k kernel, s stride, d dilation, pt/pl padding
 * before (top, left). */
typedef struct Window {
    int64_t n, c, h, w;       /* input dims */
    int64_t co, ho, wo;       /* output channels and spatial size */
    int64_t kh, kw, sh, sw, dh, dw, pt, pl;
} Window;

/* The input index tap k of output position o reads along one axis, or -1 for padding. */
static int64_t window_tap(int64_t o, int64_t stride, int64_t pad, int64_t k, int64_t dilation,
                          int64_t in) {
    int64_t i = o * stride - pad + k * dilation;
    return i >= 0 && i < in ? i : -1;
}

/* Output size of a window along one axis: (in + before + after - d (k - 1) - 1) / s + 1 (floor),
 * or -1 when the window does not fit in the padded input. Written so nothing overflows. */
static int64_t window_out_size(int64_t in, int64_t before, int64_t after, int64_t k,
                               int64_t dilation, int64_t stride) {
    int64_t padded = in + before + after;
    if (padded < 1 || k - 1 > (padded - 1) / dilation) return -1;
    return (padded - 1 - dilation * (k - 1)) / stride + 1;
}

/* Fills g from x [N, C, H, W], y [N, Co, Ho, Wo], the kernel and dilation given, and the
 * stride step[0..1] and padding start[0..3] of attr a; checks every attribute is in range and
 * that y's spatial size is the one the formula gives. Channels are the caller's to check. */
static int window_geometry(Run *r, const Attr *a, const ITensor *x, const ITensor *y, int64_t kh,
                           int64_t kw, int64_t dh, int64_t dw, Window *g) {
    if (x->rank != 4 || y->rank != 4)
        return fail(r, NNRT_EARG, "needs NCHW tensors, got ranks %d and %d", x->rank, y->rank);
    const int64_t limit = INT32_MAX;
    int64_t sh = a->step[0], sw = a->step[1];
    if (kh < 1 || kw < 1 || kh > limit || kw > limit)
        return fail(r, NNRT_EARG, "kernel %lld x %lld out of range", (long long)kh, (long long)kw);
    if (sh < 1 || sw < 1 || sh > limit || sw > limit)
        return fail(r, NNRT_EARG, "stride %lld x %lld out of range", (long long)sh, (long long)sw);
    if (dh < 1 || dw < 1 || dh > limit || dw > limit)
        return fail(r, NNRT_EARG, "dilation %lld x %lld out of range", (long long)dh,
                    (long long)dw);
    for (int i = 0; i < 4; i++)
        if (a->start[i] < 0 || a->start[i] > limit)
            return fail(r, NNRT_EARG, "padding %lld out of range", (long long)a->start[i]);
    *g = (Window){.n = x->dim[0], .c = x->dim[1], .h = x->dim[2], .w = x->dim[3],
                  .co = y->dim[1], .kh = kh, .kw = kw, .sh = sh, .sw = sw, .dh = dh, .dw = dw,
                  .pt = a->start[0], .pl = a->start[1]};
    g->ho = window_out_size(g->h, a->start[0], a->start[2], kh, dh, sh);
    g->wo = window_out_size(g->w, a->start[1], a->start[3], kw, dw, sw);
    if (g->ho < 0 || g->wo < 0)
        return fail(r, NNRT_EARG, "the %lld x %lld window (dilation %lld x %lld) does not fit "
                    "the padded %lld x %lld input", (long long)kh, (long long)kw, (long long)dh,
                    (long long)dw, (long long)(g->h + a->start[0] + a->start[2]),
                    (long long)(g->w + a->start[1] + a->start[3]));
    if (y->dim[0] != g->n || y->dim[2] != g->ho || y->dim[3] != g->wo) {
        char b1[96], b2[96];
        return fail(r, NNRT_EARG, "output dims %s do not follow from input dims %s: expected "
                    "[%lld, %lld, %lld, %lld]", dims_str(y, b1, sizeof b1),
                    dims_str(x, b2, sizeof b2), (long long)g->n, (long long)g->co,
                    (long long)g->ho, (long long)g->wo);
    }
    return 0;
}

/* Every input and the result are float of the node's dtype. */
static int need_float_inputs(Run *r, const Node *n, const ITensor *out) {
    int rc = need_float(r, out);
    for (int i = 0; !rc && i < n->nin; i++) rc = need_dtype(r, n, i, out->dtype);
    return rc;
}

/* The operands of conv2d and its gradient kernels: x [N, C, H, W], w [O, C/g, KH, KW] and
 * y [N, O, Ho, Wo] (any of them may be the node's result), dilation perm[0..1], groups perm[2].
 * Sets the geometry and the group size of input (cg = C/g) and output (og = O/g) channels. */
static int conv_operands(Run *r, const Node *n, const ITensor *x, const ITensor *w,
                         const ITensor *y, Window *g, int64_t *cg, int64_t *og) {
    if (w->rank != 4) return fail(r, NNRT_EARG, "the weight must be [O, C/groups, KH, KW]");
    int rc = window_geometry(r, &n->attr, x, y, w->dim[2], w->dim[3], n->attr.perm[0],
                             n->attr.perm[1], g);
    if (rc) return rc;
    int64_t groups = n->attr.perm[2];
    if (groups < 1 || g->c % groups || g->co % groups)
        return fail(r, NNRT_EARG, "groups %lld must divide the %lld input and %lld output "
                    "channels", (long long)groups, (long long)g->c, (long long)g->co);
    *cg = g->c / groups;
    *og = g->co / groups;
    if (w->dim[0] != g->co || w->dim[1] != *cg) {
        char b[96];
        return fail(r, NNRT_EARG, "weight dims %s, expected [%lld, %lld, KH, KW] for %lld input "
                    "and %lld output channels in %lld groups", dims_str(w, b, sizeof b),
                    (long long)g->co, (long long)*cg, (long long)g->c, (long long)g->co,
                    (long long)groups);
    }
    return 0;
}

/* conv2d (x, w[, b]):
 *   out[n,o,oy,ox] = b[o] + sum_{c < C/g, ky, kx} x[n, (o/(O/g))*(C/g) + c, iy, ix] w[o,c,ky,kx]
 * with iy = oy*sh - pt + ky*dh, ix = ox*sw - pl + kx*dw, padding taps contributing 0. */
static int eval_conv2d(Run *r, const Node *n, ITensor *out) {
    if (n->nin != 2 && n->nin != 3)
        return fail(r, NNRT_EARG, "takes x, w and an optional bias");
    const ITensor *x = input(r, n, 0), *w = input(r, n, 1);
    const ITensor *b = n->nin == 3 ? input(r, n, 2) : NULL;
    Window g;
    int64_t cg, og;
    int rc = need_float_inputs(r, n, out);
    if (!rc) rc = conv_operands(r, n, x, w, out, &g, &cg, &og);
    if (rc) return rc;
    if (b && (b->rank != 1 || b->dim[0] != g.co))
        return fail(r, NNRT_EARG, "the bias must be a vector of %lld", (long long)g.co);
    for (int64_t i = 0; i < g.n; i++)
        for (int64_t o = 0; o < g.co; o++) {
            const double *xg = x->data + (i * g.c + o / og * cg) * g.h * g.w; /* o's group */
            const double *kernel = w->data + o * cg * g.kh * g.kw; /* o's weights */
            double *plane = out->data + (i * g.co + o) * g.ho * g.wo;
            for (int64_t oy = 0; oy < g.ho; oy++)
                for (int64_t ox = 0; ox < g.wo; ox++) {
                    double acc = b ? b->data[o] : 0;
                    for (int64_t c = 0; c < cg; c++)
                        for (int64_t ky = 0; ky < g.kh; ky++) {
                            int64_t iy = window_tap(oy, g.sh, g.pt, ky, g.dh, g.h);
                            if (iy < 0) continue;
                            const double *row = xg + (c * g.h + iy) * g.w;
                            const double *wrow = kernel + (c * g.kh + ky) * g.kw;
                            for (int64_t kx = 0; kx < g.kw; kx++) {
                                int64_t ix = window_tap(ox, g.sw, g.pl, kx, g.dw, g.w);
                                if (ix >= 0) acc += row[ix] * wrow[kx];
                            }
                        }
                    plane[oy * g.wo + ox] = acc;
                }
        }
    return 0;
}

/* conv2d_grad_input (dy, w), the adjoint of conv2d in x: every product x[n,c,iy,ix] w[o,c',ky,kx]
 * that conv2d adds into y[n,o,oy,ox] sends dy[n,o,oy,ox] w[o,c',ky,kx] back to dx[n,c,iy,ix]. */
static int eval_conv2d_grad_input(Run *r, const Node *n, ITensor *out) {
    const ITensor *dy = input(r, n, 0), *w = input(r, n, 1);
    Window g;
    int64_t cg, og;
    int rc = need_float_inputs(r, n, out);
    if (!rc) rc = conv_operands(r, n, out, w, dy, &g, &cg, &og);
    if (rc) return rc;
    for (int64_t i = 0; i < g.n; i++)
        for (int64_t o = 0; o < g.co; o++) {
            double *dxg = out->data + (i * g.c + o / og * cg) * g.h * g.w; /* o's group */
            const double *kernel = w->data + o * cg * g.kh * g.kw; /* o's weights */
            const double *plane = dy->data + (i * g.co + o) * g.ho * g.wo;
            for (int64_t oy = 0; oy < g.ho; oy++)
                for (int64_t ox = 0; ox < g.wo; ox++) {
                    double d = plane[oy * g.wo + ox];
                    for (int64_t c = 0; c < cg; c++)
                        for (int64_t ky = 0; ky < g.kh; ky++) {
                            int64_t iy = window_tap(oy, g.sh, g.pt, ky, g.dh, g.h);
                            if (iy < 0) continue;
                            double *row = dxg + (c * g.h + iy) * g.w;
                            const double *wrow = kernel + (c * g.kh + ky) * g.kw;
                            for (int64_t kx = 0; kx < g.kw; kx++) {
                                int64_t ix = window_tap(ox, g.sw, g.pl, kx, g.dw, g.w);
                                if (ix >= 0) row[ix] += d * wrow[kx];
                            }
                        }
                }
        }
    return 0;
}

/* conv2d_grad_weight (x, dy):
 *   dw[o,c,ky,kx] = sum_{n, oy, ox} dy[n,o,oy,ox] x[n, (o/(O/g))*(C/g) + c, iy, ix]
 * with iy, ix as in conv2d, padding taps contributing 0. */
static int eval_conv2d_grad_weight(Run *r, const Node *n, ITensor *out) {
    const ITensor *x = input(r, n, 0), *dy = input(r, n, 1);
    Window g;
    int64_t cg, og;
    int rc = need_float_inputs(r, n, out);
    if (!rc) rc = conv_operands(r, n, x, out, dy, &g, &cg, &og);
    if (rc) return rc;
    for (int64_t o = 0; o < g.co; o++)
        for (int64_t c = 0; c < cg; c++)
            for (int64_t ky = 0; ky < g.kh; ky++)
                for (int64_t kx = 0; kx < g.kw; kx++) {
                    double acc = 0;
                    for (int64_t i = 0; i < g.n; i++) {
                        const double *xc = x->data + (i * g.c + o / og * cg + c) * g.h * g.w;
                        const double *plane = dy->data + (i * g.co + o) * g.ho * g.wo;
                        for (int64_t oy = 0; oy < g.ho; oy++) {
                            int64_t iy = window_tap(oy, g.sh, g.pt, ky, g.dh, g.h);
                            if (iy < 0) continue;
                            for (int64_t ox = 0; ox < g.wo; ox++) {
                                int64_t ix = window_tap(ox, g.sw, g.pl, kx, g.dw, g.w);
                                if (ix >= 0) acc += plane[oy * g.wo + ox] * xc[iy * g.w + ix];
                            }
                        }
                    }
                    out->data[((o * cg + c) * g.kh + ky) * g.kw + kx] = acc;
                }
    return 0;
}

/* The pools: x [N, C, H, W] and y [N, C, Ho, Wo] (either may be the node's result), window
 * perm[0] x perm[1], no dilation. */
static int pool_operands(Run *r, const Node *n, const ITensor *x, const ITensor *y, Window *g) {
    int rc = window_geometry(r, &n->attr, x, y, n->attr.perm[0], n->attr.perm[1], 1, 1, g);
    if (!rc && g->co != g->c)
        return fail(r, NNRT_EARG, "%lld output channels, the input has %lld", (long long)g->co,
                    (long long)g->c);
    return rc;
}

/* The offset in an H x W plane of the element maxpool2d takes for output (oy, ox): the first
 * maximum in row-major window order (a NaN counts as the maximum, the first one wins), padding
 * never; -1 when the window holds no input element. */
static int64_t maxpool_choice(const double *plane, const Window *g, int64_t oy, int64_t ox) {
    int64_t best = -1;
    for (int64_t ky = 0; ky < g->kh; ky++) {
        int64_t iy = window_tap(oy, g->sh, g->pt, ky, 1, g->h);
        if (iy < 0) continue;
        for (int64_t kx = 0; kx < g->kw; kx++) {
            int64_t ix = window_tap(ox, g->sw, g->pl, kx, 1, g->w);
            if (ix < 0) continue;
            double v = plane[iy * g->w + ix];
            if (best < 0 || (!isnan(plane[best]) && (v > plane[best] || isnan(v))))
                best = iy * g->w + ix;
        }
    }
    return best;
}

/* maxpool2d: out[n,c,oy,ox] = max of the window's input elements (padding never wins) */
static int eval_maxpool2d(Run *r, const Node *n, ITensor *out) {
    const ITensor *x = input(r, n, 0);
    Window g;
    int rc = need_float_inputs(r, n, out);
    if (!rc) rc = pool_operands(r, n, x, out, &g);
    if (rc) return rc;
    for (int64_t p = 0; p < g.n * g.c; p++) { /* one (n, c) plane at a time */
        const double *plane = x->data + p * g.h * g.w;
        for (int64_t oy = 0; oy < g.ho; oy++)
            for (int64_t ox = 0; ox < g.wo; ox++) {
                int64_t at = maxpool_choice(plane, &g, oy, ox);
                out->data[(p * g.ho + oy) * g.wo + ox] = at < 0 ? -INFINITY : plane[at];
            }
    }
    return 0;
}

/* maxpool2d_grad (x, dy): zeros, plus dy[n,c,oy,ox] added where maxpool2d took output (oy, ox) */
static int eval_maxpool2d_grad(Run *r, const Node *n, ITensor *out) {
    const ITensor *x = input(r, n, 0), *dy = input(r, n, 1);
    Window g;
    int rc = need_float_inputs(r, n, out);
    if (!rc) rc = need_dims(r, n, 0, out);
    if (!rc) rc = pool_operands(r, n, x, dy, &g);
    if (rc) return rc;
    for (int64_t p = 0; p < g.n * g.c; p++) {
        const double *plane = x->data + p * g.h * g.w;
        for (int64_t oy = 0; oy < g.ho; oy++)
            for (int64_t ox = 0; ox < g.wo; ox++) {
                int64_t at = maxpool_choice(plane, &g, oy, ox);
                if (at >= 0) out->data[p * g.h * g.w + at] += dy->data[(p * g.ho + oy) * g.wo + ox];
            }
    }
    return 0;
}

/* avgpool2d: out[n,c,oy,ox] = (sum of the window's input elements) / (KH KW), padding counted
 * as zeros in the divisor (PyTorch's count_include_pad=True) */
static int eval_avgpool2d(Run *r, const Node *n, ITensor *out) {
    const ITensor *x = input(r, n, 0);
    Window g;
    int rc = need_float_inputs(r, n, out);
    if (!rc) rc = pool_operands(r, n, x, out, &g);
    if (rc) return rc;
    for (int64_t p = 0; p < g.n * g.c; p++) {
        const double *plane = x->data + p * g.h * g.w;
        for (int64_t oy = 0; oy < g.ho; oy++)
            for (int64_t ox = 0; ox < g.wo; ox++) {
                double sum = 0;
                for (int64_t ky = 0; ky < g.kh; ky++) {
                    int64_t iy = window_tap(oy, g.sh, g.pt, ky, 1, g.h);
                    if (iy < 0) continue;
                    for (int64_t kx = 0; kx < g.kw; kx++) {
                        int64_t ix = window_tap(ox, g.sw, g.pl, kx, 1, g.w);
                        if (ix >= 0) sum += plane[iy * g.w + ix];
                    }
                }
                out->data[(p * g.ho + oy) * g.wo + ox] = sum / (double)(g.kh * g.kw);
            }
    }
    return 0;
}

/* One axis of bilinear upsampling by `scale` (align_corners=False, as PyTorch's
 * upsample_bilinear2d): output o reads source position s = max(0, (o + 1/2)/scale - 1/2) as
 * (1 - l) in[i0] + l in[i1], i0 = floor(s), i1 = min(i0 + 1, in - 1), l = s - i0. */
static void bilinear_source(int64_t o, int64_t scale, int64_t in, int64_t *i0, int64_t *i1,
                            double *l) {
    double s = ((double)o + 0.5) / (double)scale - 0.5;
    if (s < 0) s = 0;
    *i0 = (int64_t)s;
    *i1 = *i0 + 1 < in ? *i0 + 1 : in - 1;
    *l = s - (double)*i0;
}

/* upsample2d by (sh, sw) = perm[0..1]: flag 0 nearest, out[oy, ox] = in[oy/sh, ox/sw];
 * flag 1 bilinear, the interpolation of bilinear_source along H, then along W */
static int eval_upsample2d(Run *r, const Node *n, ITensor *out) {
    const ITensor *x = input(r, n, 0);
    int rc = need_float_inputs(r, n, out);
    if (rc) return rc;
    int64_t sh = n->attr.perm[0], sw = n->attr.perm[1];
    if (sh < 1 || sw < 1) return fail(r, NNRT_EARG, "scale %lld x %lld out of range",
                                      (long long)sh, (long long)sw);
    if (n->attr.flag != 0 && n->attr.flag != 1)
        return fail(r, NNRT_EARG, "mode %d is neither nearest (0) nor bilinear (1)", n->attr.flag);
    if (x->rank != 4 || out->rank != 4 || out->dim[0] != x->dim[0] || out->dim[1] != x->dim[1] ||
        out->dim[2] % sh || out->dim[2] / sh != x->dim[2] || out->dim[3] % sw ||
        out->dim[3] / sw != x->dim[3]) {
        char b1[96], b2[96];
        return fail(r, NNRT_EARG, "output dims %s are not input dims %s scaled by %lld x %lld",
                    dims_str(out, b1, sizeof b1), dims_str(x, b2, sizeof b2), (long long)sh,
                    (long long)sw);
    }
    int64_t h = x->dim[2], w = x->dim[3], ho = out->dim[2], wo = out->dim[3];
    for (int64_t p = 0; p < x->dim[0] * x->dim[1]; p++) {
        const double *in = x->data + p * h * w;
        double *plane = out->data + p * ho * wo;
        for (int64_t oy = 0; oy < ho; oy++)
            for (int64_t ox = 0; ox < wo; ox++) {
                if (n->attr.flag == 0) {
                    plane[oy * wo + ox] = in[oy / sh * w + ox / sw];
                    continue;
                }
                int64_t y0, y1, x0, x1;
                double ly, lx;
                bilinear_source(oy, sh, h, &y0, &y1, &ly);
                bilinear_source(ox, sw, w, &x0, &x1, &lx);
                const double *top = in + y0 * w, *bottom = in + y1 * w;
                plane[oy * wo + ox] = (1 - ly) * ((1 - lx) * top[x0] + lx * top[x1]) +
                                      ly * ((1 - lx) * bottom[x0] + lx * bottom[x1]);
            }
    }
    return 0;
}

/* lrn over the channels (axis 1) of x [N, C, ...], size n = perm[0]:
 *   out[c] = x[c] / (k + alpha/n sum_{c' = c - n/2}^{c + (n-1)/2} x[c']^2)^beta
 * channels outside [0, C) counting as 0 (torch.nn.LocalResponseNorm) */
static int eval_lrn(Run *r, const Node *n, ITensor *out) {
    const ITensor *x = input(r, n, 0);
    int rc = need_float(r, out);
    if (!rc) rc = need_elementwise(r, n, out, 1);
    if (rc) return rc;
    int64_t size = n->attr.perm[0];
    double alpha = n->attr.f[0], beta = n->attr.f[1], k = n->attr.f[2];
    if (out->rank < 2) return fail(r, NNRT_EARG, "needs [N, C, ...], rank >= 2");
    if (size < 1) return fail(r, NNRT_EARG, "size %lld out of range", (long long)size);
    int64_t channels = out->dim[1], inner = dims_product(out->dim, 2, out->rank);
    for (int64_t i = 0; i < out->dim[0]; i++)
        for (int64_t c = 0; c < channels; c++)
            for (int64_t e = 0; e < inner; e++) {
                double sum = 0;
                for (int64_t from = c - size / 2; from <= c + (size - 1) / 2; from++)
                    if (from >= 0 && from < channels) {
                        double v = x->data[(i * channels + from) * inner + e];
                        sum += v * v;
                    }
                int64_t at = (i * channels + c) * inner + e;
                out->data[at] = x->data[at] / pow(k + alpha / (double)size * sum, beta);
            }
    return 0;
}

/* ================================================================ the LSTM over a sequence */

/* A value as compiled code keeps it in memory: rounded to float for f32 nodes in f32 mode.
 * The recurrences below read back what they wrote (h_{t-1}, c_{t-1}, dG_{t+1}, the carried
 * dc f), so f32 runs round there as compiled code does, not only the node's result. */
static double as_stored(const Run *r, DType dt, double x) {
    return dt == DT_F32 && !r->in->f64 ? (double)(float)x : x;
}

/* The operands of lstm_seq/gru_seq and their gradients: seq [B, T, width] (xw or ws), w_hh
 * [gates*H, H], and the result [B, T, out_width]; width and out_width in units of H. Sets B,
 * T, H. */
static int recurrent_operands(Run *r, const Node *n, const ITensor *out, int64_t gates, int64_t width,
                              int64_t out_width, int64_t *B, int64_t *T, int64_t *H) {
    const ITensor *seq = input(r, n, 0), *w = input(r, n, 1);
    int rc = need_float_inputs(r, n, out);
    if (rc) return rc;
    if (w->rank != 2 || w->dim[0] != gates * w->dim[1])
        return fail(r, NNRT_EARG, "w_hh must be [%lldH, H]", (long long)gates);
    *H = w->dim[1];
    if (seq->rank != 3 || seq->dim[2] != width * *H)
        return fail(r, NNRT_EARG, "input 0 must be [B, T, %lld]", (long long)(width * *H));
    *B = seq->dim[0];
    *T = seq->dim[1];
    if (out->rank != 3 || out->dim[0] != *B || out->dim[1] != *T || out->dim[2] != out_width * *H)
        return fail(r, NNRT_EARG, "the result must be [%lld, %lld, %lld]", (long long)*B,
                    (long long)*T, (long long)(out_width * *H));
    return 0;
}

/* The d operand of lstm_seq_grad/gru_seq_grad: the gradient of ws [B, T, width H], or of
 * its h part alone [B, T, H]. Sets D, its last dimension. */
static int gated_grad_d(Run *r, const ITensor *d, int64_t B, int64_t T, int64_t H, int64_t width, int64_t *D) {
    if (d->rank != 3 || d->dim[0] != B || d->dim[1] != T || (d->dim[2] != width * H && d->dim[2] != H))
        return fail(r, NNRT_EARG, "d must be [%lld, %lld, %lld] or [%lld, %lld, %lld]", (long long)B, (long long)T,
                    (long long)(width * H), (long long)B, (long long)T, (long long)H);
    *D = d->dim[2];
    return 0;
}

/* lstm_seq (xw, w_hh) -> ws: for t = 0..T-1, p = xw[b,t] + h_{t-1} w_hh^T (sums in double),
 *   i, f, o = sigmoid(p_i, p_f, p_o), g = tanh(p_g), c = f c_{t-1} + i g, h = o tanh(c),
 *   ws[b,t] = [h | c | i | f | g | o],  h_{-1} = c_{-1} = 0. */
static int eval_lstm_seq(Run *r, const Node *n, ITensor *out) {
    const ITensor *xw = input(r, n, 0), *w = input(r, n, 1);
    int64_t B, T, H;
    int rc = recurrent_operands(r, n, out, 4, 4, 6, &B, &T, &H);
    if (rc) return rc;
    DType dt = out->dtype;
    double *p = malloc((size_t)(4 * H + 1) * sizeof *p);
    if (!p) return fail(r, NNRT_ENOMEM, "out of memory");
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++) {
            const double *x = xw->data + (b * T + t) * 4 * H;
            const double *prev = t ? out->data + (b * T + t - 1) * 6 * H : NULL; /* [h | c ...] */
            double *ws = out->data + (b * T + t) * 6 * H;
            for (int64_t j = 0; j < 4 * H; j++) {
                double acc = 0;
                for (int64_t k = 0; prev && k < H; k++) acc += prev[k] * w->data[j * H + k];
                p[j] = x[j] + acc;
            }
            for (int64_t j = 0; j < H; j++) {
                double i = as_stored(r, dt, sigmoid(p[j])), f = as_stored(r, dt, sigmoid(p[H + j]));
                double g = as_stored(r, dt, tanh(p[2 * H + j])), o = as_stored(r, dt, sigmoid(p[3 * H + j]));
                double c = as_stored(r, dt, f * (prev ? prev[H + j] : 0) + i * g);
                ws[j] = as_stored(r, dt, o * tanh(c));
                ws[H + j] = c;
                ws[2 * H + j] = i;
                ws[3 * H + j] = f;
                ws[4 * H + j] = g;
                ws[5 * H + j] = o;
            }
        }
    free(p);
    return 0;
}

/* lstm_seq_grad (ws, w_hh, d) -> dG = d loss/d xw, the reverse of lstm_seq's time loop (c_t, h_t,
 * i, f, g, o read from ws; d the gradient of ws, or of its h part alone). For t = T-1..0:
 *   dh = d.h[t] + dG_{t+1} w_hh                       (dG_T = 0)
 *   dc = d.c[t] + dh o (1 - tanh(c_t)^2) + carry      (carry = dc_{t+1} f_{t+1}, 0 at T-1)
 *   do = dh tanh(c_t) + d.o[t],  di = dc g + d.i[t],  dg = dc i + d.g[t],  df = dc c_{t-1} + d.f[t]
 *   dG_t = [di i (1 - i), df f (1 - f), dg (1 - g^2), do o (1 - o)],  carry = dc f. */
static int eval_lstm_seq_grad(Run *r, const Node *n, ITensor *out) {
    const ITensor *ws = input(r, n, 0), *w = input(r, n, 1), *d = input(r, n, 2);
    int64_t B, T, H;
    int rc = recurrent_operands(r, n, out, 4, 6, 4, &B, &T, &H);
    if (rc) return rc;
    int64_t D;
    if ((rc = gated_grad_d(r, d, B, T, H, 6, &D))) return rc;
    DType dt = out->dtype;
    double *carry = calloc((size_t)(H + 1), sizeof *carry);
    if (!carry) return fail(r, NNRT_ENOMEM, "out of memory");
    for (int64_t b = 0; b < B; b++) {
        memset(carry, 0, (size_t)H * sizeof *carry);
        for (int64_t t = T - 1; t >= 0; t--) {
            const double *row = ws->data + (b * T + t) * 6 * H, *dr = d->data + (b * T + t) * D;
            const double *next = t + 1 < T ? out->data + (b * T + t + 1) * 4 * H : NULL; /* dG_{t+1} */
            double *dG = out->data + (b * T + t) * 4 * H;
            for (int64_t j = 0; j < H; j++) {
                double acc = 0;
                for (int64_t k = 0; next && k < 4 * H; k++) acc += next[k] * w->data[k * H + j];
                double c = row[H + j], i = row[2 * H + j], f = row[3 * H + j];
                double g = row[4 * H + j], o = row[5 * H + j];
                double c_prev = t ? ws->data[(b * T + t - 1) * 6 * H + H + j] : 0;
                double tc = tanh(c);
                double dh = dr[j] + acc;
                double dc = (D > H ? dr[H + j] : 0) + dh * o * (1 - tc * tc) + carry[j];
                double d_o = dh * tc + (D > H ? dr[5 * H + j] : 0);
                double di = dc * g + (D > H ? dr[2 * H + j] : 0);
                double dg = dc * i + (D > H ? dr[4 * H + j] : 0);
                double df = dc * c_prev + (D > H ? dr[3 * H + j] : 0);
                dG[j] = as_stored(r, dt, di * i * (1 - i));
                dG[H + j] = as_stored(r, dt, df * f * (1 - f));
                dG[2 * H + j] = as_stored(r, dt, dg * (1 - g * g));
                dG[3 * H + j] = as_stored(r, dt, d_o * o * (1 - o));
                carry[j] = as_stored(r, dt, dc * f);
            }
        }
    }
    free(carry);
    return 0;
}

/* rnn_seq's activation of p, and its derivative from the output h (tanh: 1 - h^2, relu: h > 0) */
static double rnn_act(const Node *n, double p) { return n->attr.fwd_op == OP_relu ? (p < 0 ? 0 : p) : tanh(p); }
static double rnn_act_grad(const Node *n, double h) { return n->attr.fwd_op == OP_relu ? (h > 0) : 1 - h * h; }

/* rnn_seq (xw, w_hh) -> h: h_t = act(xw[b,t] + h_{t-1} w_hh^T) (sums in double), h_{-1} = 0;
 * rnn_seq_grad (h, w_hh, d) -> dP: dP_t = (d[t] + dP_{t+1} w_hh) act'(h_t), dP_T = 0. */
static int eval_rnn_seq(Run *r, const Node *n, ITensor *out) {
    const ITensor *seq = input(r, n, 0), *w = input(r, n, 1), *d = n->op == OP_rnn_seq_grad ? input(r, n, 2) : NULL;
    int rc = need_float_inputs(r, n, out);
    if (rc) return rc;
    if (n->attr.fwd_op != OP_tanh && n->attr.fwd_op != OP_relu)
        return fail(r, NNRT_EARG, "the activation must be tanh or relu");
    if (w->rank != 2 || w->dim[0] != w->dim[1]) return fail(r, NNRT_EARG, "w_hh must be [H, H]");
    int64_t H = w->dim[0];
    if (seq->rank != 3 || seq->dim[2] != H || !same_dims(seq, out) || (d && !same_dims(d, out)))
        return fail(r, NNRT_EARG, "the sequences must be [B, T, %lld]", (long long)H);
    int64_t B = seq->dim[0], T = seq->dim[1];
    DType dt = out->dtype;
    for (int64_t b = 0; b < B; b++)
        for (int64_t k = 0; k < T; k++) {
            int64_t t = d ? T - 1 - k : k;
            const double *x = seq->data + (b * T + t) * H;
            double *y = out->data + (b * T + t) * H;
            if (!d) {
                const double *prev = t ? out->data + (b * T + t - 1) * H : NULL;
                for (int64_t j = 0; j < H; j++) {
                    double acc = 0;
                    for (int64_t i = 0; prev && i < H; i++) acc += prev[i] * w->data[j * H + i];
                    y[j] = as_stored(r, dt, rnn_act(n, x[j] + as_stored(r, dt, acc)));
                }
            } else {
                const double *next = t + 1 < T ? out->data + (b * T + t + 1) * H : NULL; /* dP_{t+1} */
                const double *dr = d->data + (b * T + t) * H;
                for (int64_t j = 0; j < H; j++) {
                    double acc = 0;
                    for (int64_t i = 0; next && i < H; i++) acc += next[i] * w->data[i * H + j];
                    y[j] = as_stored(r, dt, (dr[j] + as_stored(r, dt, acc)) * rnn_act_grad(n, x[j]));
                }
            }
        }
    return 0;
}

/* gru_seq (xw, w_hh, b_hh) -> ws: for t = 0..T-1, q = h_{t-1} w_hh^T + b_hh (sums in double),
 *   r = sigmoid(xw_r + q_r), z = sigmoid(xw_z + q_z), hn = q_n, n = tanh(xw_n + r hn),
 *   h = n + z (h_{t-1} - n);  ws[b,t] = [h | r | z | n | hn],  h_{-1} = 0. */
static int eval_gru_seq(Run *r, const Node *n, ITensor *out) {
    const ITensor *xw = input(r, n, 0), *w = input(r, n, 1), *bias = input(r, n, 2);
    int64_t B, T, H;
    int rc = recurrent_operands(r, n, out, 3, 3, 5, &B, &T, &H);
    if (rc) return rc;
    if (bias->rank != 1 || bias->dim[0] != 3 * H) return fail(r, NNRT_EARG, "b_hh must be [%lld]", (long long)(3 * H));
    DType dt = out->dtype;
    double *q = malloc((size_t)(3 * H + 1) * sizeof *q);
    if (!q) return fail(r, NNRT_ENOMEM, "out of memory");
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++) {
            const double *x = xw->data + (b * T + t) * 3 * H;
            const double *prev = t ? out->data + (b * T + t - 1) * 5 * H : NULL; /* [h ...] */
            double *ws = out->data + (b * T + t) * 5 * H;
            for (int64_t j = 0; j < 3 * H; j++) {
                double acc = 0;
                for (int64_t k = 0; prev && k < H; k++) acc += prev[k] * w->data[j * H + k];
                q[j] = as_stored(r, dt, acc) + bias->data[j];
            }
            for (int64_t j = 0; j < H; j++) {
                double rg = as_stored(r, dt, sigmoid(x[j] + q[j]));
                double z = as_stored(r, dt, sigmoid(x[H + j] + q[H + j]));
                double hn = as_stored(r, dt, q[2 * H + j]);
                double ng = as_stored(r, dt, tanh(x[2 * H + j] + rg * hn));
                double hp = prev ? prev[j] : 0;
                ws[j] = as_stored(r, dt, ng + z * (hp - ng));
                ws[H + j] = rg;
                ws[2 * H + j] = z;
                ws[3 * H + j] = ng;
                ws[4 * H + j] = hn;
            }
        }
    free(q);
    return 0;
}

/* gru_seq_grad (ws, w_hh, d) -> dG, the reverse of gru_seq's time loop (ops.h has the
 * formulas); d is the gradient of ws, or of its h part alone. */
static int eval_gru_seq_grad(Run *r, const Node *n, ITensor *out) {
    const ITensor *ws = input(r, n, 0), *w = input(r, n, 1), *d = input(r, n, 2);
    int64_t B, T, H;
    int rc = recurrent_operands(r, n, out, 3, 5, 4, &B, &T, &H);
    if (rc) return rc;
    int64_t D;
    if ((rc = gated_grad_d(r, d, B, T, H, 5, &D))) return rc;
    DType dt = out->dtype;
    double *carry = calloc((size_t)(H + 1), sizeof *carry);
    if (!carry) return fail(r, NNRT_ENOMEM, "out of memory");
    for (int64_t b = 0; b < B; b++) {
        memset(carry, 0, (size_t)H * sizeof *carry);
        for (int64_t t = T - 1; t >= 0; t--) {
            const double *row = ws->data + (b * T + t) * 5 * H, *dr = d->data + (b * T + t) * D;
            const double *next = t + 1 < T ? out->data + (b * T + t + 1) * 4 * H : NULL; /* dG_{t+1} */
            double *dG = out->data + (b * T + t) * 4 * H;
            for (int64_t j = 0; j < H; j++) {
                double acc = 0;
                for (int64_t k = 0; next && k < 3 * H; k++) acc += next[k] * w->data[k * H + j];
                double rg = row[H + j], z = row[2 * H + j], ng = row[3 * H + j], hn = row[4 * H + j];
                double hp = t ? ws->data[(b * T + t - 1) * 5 * H + j] : 0;
                double dh = dr[j] + as_stored(r, dt, acc) + carry[j];
                double dn = dh * (1 - z) + (D > H ? dr[3 * H + j] : 0);
                double dz = dh * (hp - ng) + (D > H ? dr[2 * H + j] : 0);
                double dnp = as_stored(r, dt, dn * (1 - ng * ng));
                double dr_ = dnp * hn + (D > H ? dr[H + j] : 0);
                dG[j] = as_stored(r, dt, dr_ * rg * (1 - rg));
                dG[H + j] = as_stored(r, dt, dz * z * (1 - z));
                dG[2 * H + j] = as_stored(r, dt, dnp * rg + (D > H ? dr[4 * H + j] : 0));
                dG[3 * H + j] = dnp;
                carry[j] = as_stored(r, dt, dh * z);
            }
        }
    }
    free(carry);
    return 0;
}

/* ================================================================ effects */

/* store: module tensor attr.tensor = x; later `tensor` reads in this run see the new value.
 * The old value is kept in r->saved until the run succeeds, for rollback. */
static int eval_store(Run *r, const Node *n, ITensor *out) {
    ITensor *t;
    int rc = module_tensor(r, n->attr.tensor, &t);
    if (!rc) rc = need_elementwise(r, n, out, 1);
    if (rc) return rc;
    const ITensor *x = input(r, n, 0);
    if (!same_dims(x, t) || x->dtype != t->dtype) {
        char b1[96], b2[96];
        return fail(r, NNRT_EARG, "stores %s%s into @%s: %s%s", dtype_names[x->dtype],
                    dims_str(x, b1, sizeof b1), r->in->mod->tensors[n->attr.tensor].name,
                    dtype_names[t->dtype], dims_str(t, b2, sizeof b2));
    }
    ITensor value;
    rc = itensor_copy(&value, x);
    if (rc) return fail(r, rc, "out of memory");
    ITensor *saved = &r->saved[n->attr.tensor];
    if (saved->data) itensor_free(t);
    else *saved = *t;
    *t = value;
    memcpy(out->data, x->data, (size_t)out->numel * sizeof *out->data);
    return 0;
}

/* ================================================================ the node loop */

static int eval_node(Run *r, const Node *n, ITensor *out) {
    switch (n->op) {
    case OP_input: return eval_input(r, n, out);
    case OP_tensor: return eval_tensor(r, n, out);
    case OP_const: return eval_const(r, n, out);
    case OP_batch_size: return eval_batch_size(r, n, out);
    case OP_init_fill: return eval_init_fill(r, n, out);
    case OP_rand_uniform: return eval_rand_uniform(r, n, out);
    case OP_add: case OP_sub: case OP_mul: case OP_div: case OP_pow: case OP_maximum:
    case OP_minimum: case OP_eq: case OP_ne: case OP_lt: case OP_le: case OP_gt: case OP_ge:
        return eval_binary(r, n, out);
    case OP_select: return eval_select(r, n, out);
    case OP_neg: case OP_exp: case OP_log: case OP_sqrt: case OP_abs: case OP_sign:
    case OP_floor: case OP_cos: case OP_erf: case OP_stop_gradient:
        return eval_unary(r, n, out);
    case OP_cast: return eval_cast(r, n, out);
    case OP_relu: case OP_leaky_relu: case OP_elu: case OP_selu: case OP_gelu: case OP_sigmoid:
    case OP_tanh: case OP_softplus: case OP_silu: case OP_mish: case OP_hard_sigmoid:
    case OP_hard_swish:
        return eval_activation(r, n, out);
    case OP_act_grad: return eval_act_grad(r, n, out);
    case OP_sum: case OP_mean: case OP_max: return eval_reduce(r, n, out);
    case OP_argmax: return eval_argmax(r, n, out);
    case OP_matmul: return eval_matmul(r, n, out);
    case OP_reshape: return eval_reshape(r, n, out);
    case OP_transpose: return eval_transpose(r, n, out);
    case OP_broadcast: return eval_broadcast(r, n, out);
    case OP_slice: return eval_slice(r, n, out);
    case OP_concat: return eval_concat(r, n, out);
    case OP_gather: return eval_gather(r, n, out);
    case OP_scatter_add: return eval_scatter_add(r, n, out);
    case OP_softmax: case OP_log_softmax: return eval_softmax(r, n, out);
    case OP_softmax_grad: case OP_log_softmax_grad: return eval_softmax_grad(r, n, out);
    case OP_cross_entropy: return eval_cross_entropy(r, n, out);
    case OP_cross_entropy_grad: return eval_cross_entropy_grad(r, n, out);
    case OP_conv2d: return eval_conv2d(r, n, out);
    case OP_conv2d_grad_input: return eval_conv2d_grad_input(r, n, out);
    case OP_conv2d_grad_weight: return eval_conv2d_grad_weight(r, n, out);
    case OP_maxpool2d: return eval_maxpool2d(r, n, out);
    case OP_maxpool2d_grad: return eval_maxpool2d_grad(r, n, out);
    case OP_avgpool2d: return eval_avgpool2d(r, n, out);
    case OP_upsample2d: return eval_upsample2d(r, n, out);
    case OP_lrn: return eval_lrn(r, n, out);
    case OP_lstm_seq: return eval_lstm_seq(r, n, out);
    case OP_lstm_seq_grad: return eval_lstm_seq_grad(r, n, out);
    case OP_gru_seq: return eval_gru_seq(r, n, out);
    case OP_rnn_seq:
    case OP_rnn_seq_grad: return eval_rnn_seq(r, n, out);
    case OP_gru_seq_grad: return eval_gru_seq_grad(r, n, out);
    case OP_store: return eval_store(r, n, out);
    default: return unsupported(r, n);
    }
}

/* f32 mode rounds every f32 result to float; i32 results are wrapped integers everywhere. */
static void finish_value(const Run *r, ITensor *t) {
    if (t->dtype == DT_F32 && !r->in->f64)
        for (int64_t i = 0; i < t->numel; i++) t->data[i] = (double)(float)t->data[i];
    else if (t->dtype == DT_I32)
        for (int64_t i = 0; i < t->numel; i++) t->data[i] = wrap_i32(t->data[i]);
}

/* Arity and input refs of every node (inputs must be earlier nodes), before anything runs. */
static int check_structure(Run *r) {
    const Func *f = r->f;
    for (int i = 0; i < f->nnodes; i++) {
        const Node *n = &f->nodes[i];
        r->node = i;
        if ((unsigned)n->op >= OP_COUNT) return fail(r, NNRT_EARG, "bad op number %d", (int)n->op);
        int arity = op_info[n->op].arity;
        if (n->nin < 0 || n->nin > IR_MAX_INPUTS || (arity >= 0 ? n->nin != arity : n->nin < 1))
            return fail(r, NNRT_EARG, "has %d inputs, expected %d", n->nin, arity);
        for (int j = 0; j < n->nin; j++)
            if (n->in[j] < 0 || n->in[j] >= i)
                return fail(r, NNRT_EARG, "input %d refers to %%%d, not an earlier node", j,
                            n->in[j]);
        if ((unsigned)n->dtype >= DT_COUNT)
            return fail(r, NNRT_EARG, "bad dtype %d", (int)n->dtype);
    }
    r->node = -1;
    for (int i = 0; i < f->nouts; i++)
        if (f->outs[i].value < 0 || f->outs[i].value >= f->nnodes)
            return fail(r, NNRT_EARG, "output '%s' refers to %%%d",
                        f->outs[i].name ? f->outs[i].name : "?", f->outs[i].value);
    return 0;
}

/* Every argument has the dtype and dims of f->args[i] at batch n, and data. */
static int check_args(Run *r) {
    const Func *f = r->f;
    for (int i = 0; i < f->nargs; i++) {
        const FuncArg *fa = &f->args[i];
        const ITensor *t = &r->args[i];
        ITensor want = {.rank = fa->shape.rank};
        if (!shape_dims(&fa->shape, r->batch, want.dim))
            return fail(r, NNRT_EARG, "argument %d '%s' has a malformed shape", i, fa->name);
        char b1[96], b2[96];
        if (t->dtype != fa->dtype)
            return fail(r, NNRT_EARG, "argument %d '%s' is %s, expected %s", i, fa->name,
                        (unsigned)t->dtype < DT_COUNT ? dtype_names[t->dtype] : "?",
                        dtype_names[fa->dtype]);
        if (t->rank < 0 || t->rank > IR_MAX_RANK || !same_dims(t, &want))
            return fail(r, NNRT_EARG, "argument %d '%s' has dims %s, expected %s at batch %lld", i,
                        fa->name,
                        t->rank >= 0 && t->rank <= IR_MAX_RANK ? dims_str(t, b1, sizeof b1)
                                                               : "(bad rank)",
                        dims_str(&want, b2, sizeof b2), (long long)r->batch);
        if (t->numel != dims_product(t->dim, 0, t->rank))
            return fail(r, NNRT_EARG, "argument %d '%s' has numel %lld, its dims say %lld", i,
                        fa->name, (long long)t->numel, (long long)dims_product(t->dim, 0, t->rank));
        if (!t->data && t->numel)
            return fail(r, NNRT_ENULL, "argument %d '%s' has no data", i, fa->name);
    }
    return 0;
}

/* Module tensors added since interp_init (optim.c adds slots) get zeroed storage. */
static int sync_tensors(Interp *in) {
    const Module *m = in->mod;
    if (in->ntensors >= m->ntensors) return 0;
    ITensor *grown = realloc(in->tensors, (size_t)m->ntensors * sizeof *grown);
    if (!grown) return NNRT_ENOMEM;
    in->tensors = grown;
    for (int i = in->ntensors; i < m->ntensors; i++) {
        int rc = itensor_alloc_shape(&in->tensors[i], m->tensors[i].dtype, &m->tensors[i].shape, 1);
        if (rc) return rc;
        in->ntensors = i + 1;
    }
    return 0;
}

void interp_init(Interp *in, Module *m, bool f64) {
    memset(in, 0, sizeof *in);
    in->mod = m;
    in->f64 = f64;
    if (m) sync_tensors(in); /* a failure shows again, with a message, in interp_run */
}

void interp_free(Interp *in) {
    for (int i = 0; i < in->ntensors; i++) itensor_free(&in->tensors[i]);
    free(in->tensors);
    in->tensors = NULL;
    in->ntensors = 0;
}

int interp_run(Interp *in, Func *f, int64_t n, const ITensor *args, ITensor *outs, char *err,
               size_t errlen) {
    Run r = {.in = in, .f = f, .batch = n, .args = args, .node = -1, .err = err, .errlen = errlen};
    if (err && errlen) err[0] = 0;
    if (!f || !in || !in->mod) {
        if (err && errlen) snprintf(err, errlen, "interp: no function or interpreter");
        return NNRT_ENULL;
    }
    if (outs)
        for (int i = 0; i < f->nouts; i++) memset(&outs[i], 0, sizeof outs[i]);
    if (f->mod != in->mod) return fail(&r, NNRT_EARG, "the function belongs to another module");
    if (n < 1) return fail(&r, NNRT_EBATCH, "batch %lld, expected at least 1", (long long)n);
    if ((f->nargs && !args) || (f->nouts && !outs))
        return fail(&r, NNRT_ENULL, "args or outs is NULL");
    if (f->nnodes < 0 || (f->nnodes && !f->nodes))
        return fail(&r, NNRT_EARG, "malformed node array");
    int rc = sync_tensors(in);
    if (rc) return fail(&r, rc, "cannot allocate the module tensors");
    rc = check_args(&r);
    if (!rc) rc = check_structure(&r);
    if (rc) return rc;

    r.vals = calloc((size_t)f->nnodes + 1, sizeof *r.vals);
    r.last_use = malloc(((size_t)f->nnodes + 1) * sizeof *r.last_use);
    r.saved = calloc((size_t)in->ntensors + 1, sizeof *r.saved);
    if (!r.vals || !r.last_use || !r.saved) {
        rc = fail(&r, NNRT_ENOMEM, "out of memory");
        goto done;
    }
    for (int i = 0; i < f->nnodes; i++) {
        r.last_use[i] = -1;
        for (int j = 0; j < f->nodes[i].nin; j++) r.last_use[f->nodes[i].in[j]] = i;
    }
    for (int i = 0; i < f->nouts; i++) r.last_use[f->outs[i].value] = f->nnodes;

    for (int i = 0; i < f->nnodes && !rc; i++) {
        const Node *node = &f->nodes[i];
        r.node = i;
        rc = itensor_alloc_shape(&r.vals[i], node->dtype, &node->shape, n);
        if (rc) {
            char b[96];
            rc = fail(&r, rc, "cannot allocate %s at batch %lld (%s)",
                      shape_str(&node->shape, b, sizeof b), (long long)n,
                      rc == NNRT_ENOMEM ? "out of memory" : "malformed shape");
            break;
        }
        rc = eval_node(&r, node, &r.vals[i]);
        if (rc) break;
        finish_value(&r, &r.vals[i]);
        for (int j = 0; j < node->nin; j++)
            if (r.last_use[node->in[j]] == i) itensor_free(&r.vals[node->in[j]]);
        if (r.last_use[i] < 0) itensor_free(&r.vals[i]);
    }
    r.node = -1;
    for (int i = 0; i < f->nouts && !rc; i++) {
        rc = itensor_copy(&outs[i], &r.vals[f->outs[i].value]);
        if (rc) rc = fail(&r, rc, "out of memory for the outputs");
    }

done:
    if (r.saved)
        for (int t = 0; t < in->ntensors; t++) {
            if (!r.saved[t].data) continue;
            if (rc) { /* roll back: the tensor as it was before the run */
                itensor_free(&in->tensors[t]);
                in->tensors[t] = r.saved[t];
            } else {
                itensor_free(&r.saved[t]);
            }
        }
    if (r.vals)
        for (int i = 0; i < f->nnodes; i++) itensor_free(&r.vals[i]);
    if (rc && outs)
        for (int i = 0; i < f->nouts; i++) itensor_free(&outs[i]);
    free(r.vals);
    free(r.last_use);
    free(r.saved);
    return rc;
}

int interp_run_init(Interp *in, char *err, size_t errlen) {
    Func *init = in && in->mod ? module_find_func(in->mod, "init") : NULL;
    if (!init) {
        if (err && errlen) snprintf(err, errlen, "interp: the module has no init function");
        return NNRT_EARG;
    }
    return interp_run(in, init, 1, NULL, NULL, err, errlen);
}

/* ================================================================ the state buffer */

/* The tensors both the interpreter and the module know, with matching element counts. */
static bool state_tensor_ok(const Interp *in, int i) {
    const ModTensor *t = &in->mod->tensors[i];
    return i < in->ntensors && in->tensors[i].data &&
           in->tensors[i].numel == shape_numel(&t->shape, 1) && in->tensors[i].dtype == t->dtype;
}

void interp_load_state(Interp *in, const void *state) {
    if (!in || !in->mod || !state) return;
    sync_tensors(in);
    for (int i = 0; i < in->mod->ntensors; i++) {
        if (!state_tensor_ok(in, i)) continue;
        const ModTensor *t = &in->mod->tensors[i];
        const unsigned char *src = (const unsigned char *)state + t->offset;
        ITensor *x = &in->tensors[i];
        for (int64_t e = 0; e < x->numel; e++) {
            if (t->dtype == DT_F32) {
                float v;
                memcpy(&v, src + e * 4, 4);
                x->data[e] = v;
            } else if (t->dtype == DT_I32) {
                int32_t v;
                memcpy(&v, src + e * 4, 4);
                x->data[e] = v;
            } else {
                memcpy(&x->data[e], src + e * 8, 8);
            }
        }
    }
}

void interp_save_state(const Interp *in, void *state) {
    if (!in || !in->mod || !state) return;
    for (int i = 0; i < in->mod->ntensors; i++) {
        if (!state_tensor_ok(in, i)) continue;
        const ModTensor *t = &in->mod->tensors[i];
        unsigned char *dst = (unsigned char *)state + t->offset;
        const ITensor *x = &in->tensors[i];
        for (int64_t e = 0; e < x->numel; e++) {
            if (t->dtype == DT_F32) {
                float v = (float)x->data[e];
                memcpy(dst + e * 4, &v, 4);
            } else if (t->dtype == DT_I32) {
                int32_t v = (int32_t)as_int(x->data[e]);
                memcpy(dst + e * 4, &v, 4);
            } else {
                memcpy(dst + e * 8, &x->data[e], 8);
            }
        }
    }
}
