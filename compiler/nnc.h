/* nnc.h — the one internal header of the compiler, one section per file.
 *
 * Pipeline (main.c): parse (lang/) -> sema.c (checks, def expansion, train block)
 *   -> lower.c (IR functions init/infer/evaluate/loss) -> grad.c (gradient, train_step)
 *   -> optim.c (optimizer update, schedule) -> passes -> llvm.c / interp.c.
 *
 * Values are small integer handles (Ref) into a function's node array, never pointers.
 * All memory comes from the module's arena.
 */
#ifndef NNC_H
#define NNC_H

#include "ast.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* ================================================================ ir.c: types */

enum { IR_MAX_RANK = 6, IR_MAX_INPUTS = 8 };

typedef int32_t Ref;              /* index of a node in its function; -1 = none */
#define REF_NONE ((Ref)-1)

typedef enum DType { DT_F32, DT_I32, DT_F64, DT_COUNT } DType;

typedef enum Op {
#define OP(name, arity, flags, doc) OP_##name,
#include "ops.h"
#undef OP
    OP_COUNT
} Op;

enum OpFlag {
    OPF_LEAF = 1 << 0,   /* no inputs */
    OPF_ELEM = 1 << 1,   /* elementwise: inputs and output have the same shape */
    OPF_COMM = 1 << 2,   /* commutative */
    OPF_GRAD = 1 << 3,   /* has a rule in grad.c */
    OPF_EFFECT = 1 << 4, /* writes module state; never removed by DCE */
    OPF_REDUCE = 1 << 5, /* reduction over attr.axes */
    OPF_CMP = 1 << 6,    /* comparison: f32 0/1 result */
    OPF_ACT = 1 << 7,    /* activation with an act_grad rule */
};

typedef struct OpInfo {
    const char *name;
    int arity;
    unsigned flags;
    const char *doc;
} OpInfo;
extern const OpInfo op_info[OP_COUNT];

/* A shape: dim[i] is a constant, or dim[i] * batch when bit i of batch_mask is set.
 * At most one axis carries the batch. Scalars have rank 0. */
typedef struct Shape {
    int rank;
    int64_t dim[IR_MAX_RANK];
    uint8_t batch_mask;
} Shape;

typedef enum InitKind {
    INIT_ZEROS, INIT_ONES, INIT_CONSTANT,      /* a = value */
    INIT_UNIFORM,                              /* U(a, b) */
    INIT_NORMAL,                               /* N(mean a, std b) */
    INIT_XAVIER_UNIFORM, INIT_XAVIER_NORMAL,   /* a = gain */
    INIT_HE_UNIFORM, INIT_HE_NORMAL,           /* kaiming, fan_in, relu gain */
    INIT_ORTHOGONAL,                           /* a = gain */
    INIT_TORCH_DEFAULT,                        /* U(-1/sqrt(fan_in), 1/sqrt(fan_in)): nn.Linear/Conv default */
    INIT_COUNT
} InitKind;

typedef struct InitSpec {
    InitKind kind;
    double a, b;
    int64_t fan_in;  /* used by TORCH_DEFAULT when the tensor is a bias (fan of its weight) */
} InitSpec;

typedef struct Attr {
    int64_t index;           /* input: argument number; rand_uniform: stream */
    int tensor;              /* tensor, store, init_fill, rand_uniform: module tensor id */
    int axis;                /* argmax, concat */
    uint32_t axes;           /* sum/mean/max: bit i = reduce axis i */
    bool keepdims;
    bool trans_a, trans_b;   /* matmul */
    int flag;                /* gelu: 1 = tanh approximation */
    int fwd_op;              /* act_grad: the forward activation (an Op) */
    int perm[IR_MAX_RANK];   /* transpose */
    int64_t start[IR_MAX_RANK], step[IR_MAX_RANK]; /* slice, per input axis */
    double f[4];             /* const value; activation/loss parameters */
    const double *data;      /* const: row-major values of a non-splat constant */
} Attr;

typedef struct Node {
    Op op;
    DType dtype;
    Shape shape;
    int nin;
    Ref in[IR_MAX_INPUTS];
    Attr attr;
    const char *name;  /* source name of the value, or NULL */
    SrcLoc loc;        /* where in the .nn it came from (zero when synthesized) */
} Node;

typedef enum ArgRole { ARG_INPUT, ARG_LABEL } ArgRole;

typedef struct FuncArg {
    const char *name;
    ArgRole role;
    DType dtype;
    Shape shape;
    SrcLoc loc;
} FuncArg;

typedef enum OutRole {
    OUT_OUTPUT,  /* `output` declarations */
    OUT_LOSS,    /* the total loss, a scalar (one per function at most) */
    OUT_METRIC,  /* `metric` declarations (scalars averaged over the batch) */
    OUT_GRAD,    /* gradient of a parameter: name is the parameter's name */
    OUT_EXTRA,   /* anything else a command asks for */
} OutRole;

typedef struct FuncOut {
    const char *name;
    OutRole role;
    Ref value;
} FuncOut;

typedef struct Module Module;

typedef struct Func {
    const char *name;  /* init, infer, evaluate, loss, grad, train_step */
    Module *mod;
    Node *nodes;
    int nnodes, cap;
    FuncArg *args;
    int nargs, args_cap;
    FuncOut *outs;
    int nouts, outs_cap;
} Func;

typedef enum TensorKind {
    TK_PARAM,  /* trainable */
    TK_STATE,  /* persistent, not trained (batchnorm running statistics) */
    TK_SLOT,   /* optimizer slot (momentum buffer, Adam moments, ...) */
    TK_STEP,   /* the step counter (i32 scalar) */
    TK_HYPER,  /* run-time hyperparameter set by the driver (f32 scalar), e.g. steps_per_epoch */
    TK_DERIVED,/* computed from params and states by `prepare` (prepare.c); never checkpointed */
    TK_COUNT
} TensorKind;

typedef struct ModTensor {
    const char *name;   /* PyTorch state_dict key for params/states; "<param>.<slot>" for slots */
    TensorKind kind;
    DType dtype;
    Shape shape;        /* never batch-dependent */
    InitSpec init;
    int owner;          /* slots: the param tensor id; -1 otherwise */
    int64_t offset;     /* byte offset in the state buffer (64-byte aligned) */
    int64_t bytes;
    SrcLoc loc;
} ModTensor;

/* One row of `nnc summary`: a layer call in the source. */
typedef struct LayerInfo {
    const char *name;   /* parameter prefix, e.g. "h1" or "b1.conv" */
    const char *kind;   /* "dense", "conv2d", ... */
    Shape out_shape;
    int64_t params;
    int64_t macs;       /* per sample */
    int64_t flops;      /* per sample */
    SrcLoc loc;
} LayerInfo;

/* ---- the train block (sema.c fills it; grad.c, optim.c and the driver read it) */

typedef enum OptKind { OPT_SGD, OPT_ADAGRAD, OPT_RMSPROP, OPT_ADAM, OPT_ADAMW, OPT_COUNT } OptKind;

typedef struct OptimizerSpec {
    OptKind kind;
    double lr;
    double momentum, dampening, weight_decay;  /* sgd; weight_decay also adagrad/rmsprop/adam(w) */
    bool nesterov;
    double alpha, eps;                         /* rmsprop alpha; eps for all adaptive ones */
    bool centered;                             /* rmsprop */
    double beta1, beta2;                       /* adam, adamw */
    bool amsgrad;
    double lr_decay, initial_accumulator;      /* adagrad */
    SrcLoc loc;
} OptimizerSpec;

typedef enum SchedKind {
    SCHED_CONSTANT, SCHED_STEP, SCHED_EXP, SCHED_COSINE, SCHED_SGDR, SCHED_CYCLIC, SCHED_ONECYCLE,
    SCHED_COUNT
} SchedKind;

/* Durations are in epochs as written; optim.c converts with the steps_per_epoch hyper tensor. */
typedef struct ScheduleSpec {
    SchedKind kind;
    double warmup;          /* linear warmup length (epochs), combinable with any kind */
    double step_size;       /* step: decay every step_size epochs; cyclic: half-cycle length */
    double gamma;           /* step, exp */
    double t0, t_mult;      /* sgdr */
    double eta_min;         /* cosine, sgdr: final lr */
    double max_lr;          /* cyclic, onecycle; cyclic's base is the optimizer lr */
    double pct_start, div_factor, final_div_factor;  /* onecycle */
    SrcLoc loc;
} ScheduleSpec;

typedef enum DataKind { DATA_NONE, DATA_FASHION_MNIST, DATA_IDX, DATA_CSV, DATA_NPY, DATA_TEXT } DataKind;

typedef struct DataSpec {
    DataKind kind;
    const char *images, *labels;  /* idx */
    const char *path;             /* csv, text */
    const char *label_column;     /* csv */
    bool header;                  /* csv */
    const char *x, *y;            /* npy */
    int64_t seq;                  /* text: sequence length */
    int64_t stride;               /* text: bytes between window starts (default seq) */
    SrcLoc loc;
} DataSpec;

typedef struct TrainConfig {
    bool present;            /* a train block names this model */
    SrcLoc loc;
    DataSpec data;
    int64_t batch, epochs, seed;
    OptimizerSpec opt;
    ScheduleSpec sched;
    double clip_norm, clip_value;  /* 0 = off */
    int64_t accumulate;            /* gradient accumulation over k batches (1 = off) */
    double validation;             /* fraction held out */
    int preprocess;                /* 0 none, 1 standardize, 2 normalize */
    int64_t patience;              /* early stopping, 0 = off */
    const char *early_stop_on;     /* "val_loss", "val_accuracy", ... */
} TrainConfig;

struct Module {
    Arena *arena;
    const char *name;       /* model name */
    SrcLoc loc;
    int64_t max_batch;      /* train batch, or 64 */
    ModTensor *tensors;
    int ntensors, tensors_cap;
    Func **funcs;
    int nfuncs, funcs_cap;
    LayerInfo *layers;
    int nlayers, layers_cap;
    TrainConfig train;
    int64_t state_bytes;
};

/* ================================================================ ir.c: builder, printer */

extern const char *const dtype_names[DT_COUNT];   /* "f32", "i32", "f64" */
extern const char *const tensor_kind_names[TK_COUNT];

Module *module_new(Arena *a, const char *name);
/* Adds a module tensor and returns its id; offsets are assigned by module_layout. */
int module_add_tensor(Module *m, const char *name, TensorKind kind, DType dt, Shape shape,
                      InitSpec init, SrcLoc loc);
int module_find_tensor(const Module *m, const char *name);   /* -1 if absent */
void module_layout(Module *m);                               /* offsets, state_bytes */
Func *module_add_func(Module *m, const char *name);
Func *module_find_func(const Module *m, const char *name);
/* Builds (or rebuilds) `init`: init_fill + store for every module tensor, in order.
 * Call after every tensor exists (after optim_build_train_step). */
Func *module_build_init(Module *m);

Shape shape_make(int rank, const int64_t *dims, uint8_t batch_mask);
Shape shape_scalar(void);
bool shape_eq(const Shape *a, const Shape *b);
int64_t shape_numel(const Shape *s, int64_t batch);      /* element count for a concrete batch */
int64_t shape_dim(const Shape *s, int axis, int64_t batch);
bool shape_has_batch(const Shape *s);
/* numpy broadcasting of two shapes; false when incompatible */
bool shape_broadcast(const Shape *a, const Shape *b, Shape *out);
/* "[batch, 784]" into buf */
const char *shape_str(const Shape *s, char *buf, size_t len);
int64_t dtype_size(DType dt);

int func_add_arg(Func *f, const char *name, ArgRole role, DType dt, Shape shape, SrcLoc loc);
void func_add_out(Func *f, const char *name, OutRole role, Ref value);

/* Low-level: append a node with an explicit dtype and shape. Returns its Ref. */
Ref ir_node(Func *f, Op op, DType dt, Shape shape, int nin, const Ref *in, const Attr *attr);

/* Builders that infer dtype and shape. They never fail on valid input; the caller (lower.c)
 * checks shapes and reports errors first. Binary elementwise builders broadcast (numpy). */
Ref ir_input(Func *f, int arg);
Ref ir_tensor(Func *f, int tensor);
Ref ir_const(Func *f, DType dt, Shape shape, double value);
Ref ir_scalar(Func *f, double value);                  /* f32 scalar */
Ref ir_binary(Func *f, Op op, Ref a, Ref b);           /* add..ge, with broadcasting */
Ref ir_unary(Func *f, Op op, Ref x);                   /* neg..hard_swish, attrs zero */
Ref ir_unary_attr(Func *f, Op op, Ref x, const Attr *attr);
Ref ir_select(Func *f, Ref c, Ref a, Ref b);
Ref ir_cast(Func *f, Ref x, DType dt);
Ref ir_reduce(Func *f, Op op, Ref x, uint32_t axes, bool keepdims);  /* sum, mean, max */
Ref ir_argmax(Func *f, Ref x, int axis);
Ref ir_matmul(Func *f, Ref a, Ref b, bool trans_a, bool trans_b);
Ref ir_reshape(Func *f, Ref x, Shape shape);
Ref ir_transpose(Func *f, Ref x, const int *perm);
Ref ir_broadcast(Func *f, Ref x, Shape shape);         /* no-op when shapes are equal */
Ref ir_slice(Func *f, Ref x, const int64_t *start, const int64_t *step, Shape out);
Ref ir_concat(Func *f, int n, const Ref *xs, int axis); /* chains when n > IR_MAX_INPUTS */
Ref ir_store(Func *f, int tensor, Ref value);

static inline Node *ir_at(Func *f, Ref r) { return &f->nodes[r]; }
static inline const OpInfo *ir_info(Op op) { return &op_info[op]; }

/* Text form (nnc dump --ir): one line per node,
 *   %3 = matmul %0, %2 trans_b : f32[batch, 512]   # h1  (line:col)
 * Module tensors first, then each function. */
void ir_print_module(FILE *out, const Module *m, const char *only_func /* NULL = all */);
void ir_print_func(FILE *out, const Func *f);

/* ================================================================ verify.c */

/* Checks arity, input refs (earlier nodes only), shapes and dtypes of every node against the
 * op's rules, outputs and args. Prints each problem to out and returns the problem count. */
int ir_verify(const Func *f, FILE *out);

/* ================================================================ sema.c, lower.c */

/* Checks the program, expands defs, reads train blocks, and lowers every model into a Module
 * with functions:
 *   init        (no args)                     init_fill + store for every param/state/slot/step
 *   infer       (inputs)        -> outputs    inference mode (dropout off, running stats)
 *   evaluate    (inputs, labels)-> loss, metrics   inference mode
 *   loss        (inputs, labels)-> loss, metrics   training mode, plus state updates (stores)
 * Errors go to d. Returns the number of modules in *out (0 when there were errors). */
int lower_program(Arena *a, const Program *p, Diag *d, Module ***out);

/* Metrics the training driver computes itself (precision, recall, f1, confusion, auc) are
 * OUT_METRIC outputs that are not scalars: predicted classes (i32 [batch], argmax of the
 * logits) or, for auc, the positive-class score (f32 [batch]). metric_info describes the
 * metric output number `out` of f; returns false for ordinary scalar metrics. */
typedef struct MetricInfo {
    const char *kind;   /* "precision", "recall", "f1", "confusion", "auc" */
    int label_arg;      /* index in f->args of the label the predictions are compared with */
    int64_t classes;    /* number of classes (2 for a single logit) */
} MetricInfo;
bool metric_info(const Func *f, int out, MetricInfo *mi);
/* Whether output `out` of f is one of the scalar metrics the public C entry writes to its
 * `metrics` array (the per-sample outputs of the metrics above are not: the C API has no
 * split to compute them over). */
bool public_metric(const Func *f, int out);
int public_metric_count(const Func *f);

/* ---- internal to sema.c (names, scopes, defs, statements), lower.c (the builtin library)
 *      and train.c (train blocks) */

typedef enum ValueKind {
    V_ERROR,    /* poisoned: an error was already reported; propagates silently */
    V_NONE,     /* an optional argument that was not given */
    V_NUM,      /* compile-time number (num, is_int) */
    V_BOOL,     /* num is 0 or 1 */
    V_STR,      /* str */
    V_BATCH,    /* the name `batch` (in reshape targets) */
    V_TENSOR,   /* ref, dtype, shape */
    V_TUPLE,    /* tuples, lists, split results: items */
    V_FUNC,     /* a builtin (builtin) or def (def) named as a value: act=tanh */
    V_UNAVAIL,  /* depends on a label in a function that has none (infer) */
} ValueKind;

typedef struct Builtin Builtin;

typedef struct Value {
    ValueKind kind;
    double num;
    bool is_int;
    const char *str;
    Ref ref;
    DType dtype;
    Shape shape;
    struct Value *items;
    int nitems;
    const Builtin *builtin;  /* V_FUNC */
    const Block *def;        /* V_FUNC */
    SrcLoc loc;              /* the expression that produced the value */
    const char *origin;      /* the declaration or binding it comes from (for notes), or NULL */
    SrcLoc origin_loc;
    const Stmt *label;       /* the label declaration it depends on, or NULL */
    int tensor;              /* module tensor id when the value is a plain read of one, else -1 */
} Value;

typedef struct Sema Sema;

enum { CALL_MAX_ARGS = 16 };

/* A builtin call after argument binding: arg[i] follows the builtin's signature; absent
 * optional arguments hold their default (V_NONE when the signature gives none). */
typedef struct Call {
    const Builtin *builtin;
    SrcLoc loc;                     /* the whole call */
    Value arg[CALL_MAX_ARGS];
    SrcLoc arg_loc[CALL_MAX_ARGS];  /* the call's location for defaulted arguments */
    bool given[CALL_MAX_ARGS];
    const char *arg_name[CALL_MAX_ARGS];
    const char *name;               /* parameter prefix (layers with parameters) / display name */
    int64_t params;                 /* trainable values declared by this call (LayerInfo) */
} Call;

typedef enum BuiltinKind {
    BK_MATH,       /* math and shape functions: no LayerInfo */
    BK_LAYER,      /* a layer without parameters (activations, pooling, ...): LayerInfo */
    BK_PARAMS,     /* a layer with parameters: named by the naming rule, LayerInfo */
    BK_LOSS,       /* losses and regularizers: scalars */
    BK_METRIC,     /* scalar metrics (accuracy) */
    BK_DRIVER_METRIC, /* metrics the training driver computes: only in `metric` statements */
} BuiltinKind;

struct Builtin {
    const char *name;
    const char *sig;   /* "x, units, bias=true": defaults are numbers, true/false, 'text', none */
    BuiltinKind kind;
    Value (*lower)(Sema *s, Call *c);
    const char *kind_name;  /* LayerInfo kind when it differs from name (aliases) */
};

extern const Builtin builtins[];
extern const int builtin_count;
const Builtin *builtin_find(const char *name);

/* sema.c services for the builtins */
Func *sema_func(Sema *s);
bool sema_training(const Sema *s);
Arena *sema_arena(Sema *s);
bool sema_error(Sema *s, SrcLoc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void sema_note(Sema *s, SrcLoc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* A note "'x' declared here" at v's origin when it has one. */
void sema_note_origin(Sema *s, const Value *v);
/* Declares (first pass) or finds the module tensor "<c->name>.<suffix>" and returns a read. */
Value sema_param(Sema *s, Call *c, const char *suffix, TensorKind kind, Shape shape, InitSpec init);
Ref sema_read_tensor(Sema *s, int tensor);
int sema_step_tensor(Sema *s);        /* the "step" counter (created on first use) */
int sema_next_stream(Sema *s);        /* a fresh random stream number for dropout */
void sema_layer(Sema *s, const Call *c, const char *kind, Shape out, int64_t macs, int64_t flops);
/* A LayerInfo row for an operator (`@`), named after the statement's binding. */
void sema_layer_op(Sema *s, SrcLoc loc, const char *kind, Shape out, int64_t macs, int64_t flops);
/* Evaluates a compile-time expression (train blocks). */
Value sema_eval(Sema *s, const Expr *e);
/* Binds the arguments of `call` (an E_CALL, or an E_NAME meaning no arguments) to sig,
 * evaluating them (a bare name becomes a V_STR symbol when `symbols`); false after reporting. */
bool sema_bind_call(Sema *s, const char *fname, const char *sig, const Expr *call, bool symbols, Call *c);

Value value_error(void);
Value value_num(double v);
Value value_tensor(Func *f, Ref r);
const char *value_type_str(Sema *s, const Value *v);  /* "f32[batch, 784]", "a number", ... */
const char *shape_text(Sema *s, const Shape *shape);
/* Values per sample of a shape: the batch axis counts its coefficient, others their size. */
int64_t shape_per_sample(const Shape *shape);

/* lower.c helpers shared with sema.c (operators) */
Value lower_binary(Sema *s, SrcLoc loc, int op, Value a, Value b);  /* + - * / ^ @ */
Value lower_neg(Sema *s, SrcLoc loc, Value a);

/* train.c */
void train_block(Sema *s, const Block *b, Module *m);
void train_config_defaults(TrainConfig *t);

/* ================================================================ grad.c */

/* Builds `grad` (inputs, labels) -> loss, metrics, one OUT_GRAD per param, from `loss`.
 * Reverse mode, one rule per op; contributions summed; no work for values that do not
 * reach a parameter. Returns the existing `grad` when there is one. Returns NULL when the
 * model has no loss or on an internal error (printed). */
Func *grad_build(Module *m);
/* True when value `out` of f depends on module tensor `tensor` through ops with gradient
 * rules (OPF_GRAD): false means its gradient is identically zero. The optimizer leaves such
 * params alone, as torch.optim skips parameters whose .grad is None. */
bool grad_depends_on(const Func *f, Ref out, int tensor);

/* ================================================================ optim.c */

/* Builds `train_step` (inputs, labels) -> loss, metrics: the gradient, clipping, accumulation,
 * schedule, optimizer update and step increment, with stores. Adds the optimizer slots and
 * hyper tensors to the module (call before module_layout). */
Func *optim_build_train_step(Module *m);

/* ================================================================ interp.c */

/* The reference evaluator, the oracle of the project (docs/architecture.md, "The reference
 * interpreter"). It runs any IR function node by node with the semantics of ops.h.
 *
 * A concrete tensor: values are always held as double, row-major; i32 values are integers in
 * [-2^31, 2^31). In f32 mode every f32 op's result is rounded to float, so f32 runs match
 * compiled code; in f64 mode nothing is rounded (gradient checks). An ITensor owns its data
 * (malloc); release it with itensor_free. */
typedef struct ITensor {
    DType dtype;
    int rank;
    int64_t dim[IR_MAX_RANK];
    int64_t numel;
    double *data;
} ITensor;

typedef struct Interp {
    Module *mod;
    bool f64;            /* evaluate in double precision (gradcheck) */
    uint64_t seed;       /* init seed; also seeds rand_uniform */
    ITensor *tensors;    /* module tensors, indexed like mod->tensors */
    int ntensors;        /* entries of `tensors`; grows when the module gains tensors */
} Interp;

/* Sets up an interpreter for m: every module tensor zeroed, seed 0 (set in->seed, then run
 * `init` with interp_run_init, or interp_load_state). Owns in->tensors until interp_free. */
void interp_init(Interp *in, Module *m, bool f64);
void interp_free(Interp *in);
/* Runs f with batch n. args[i] must match f->args[i] (dims with batch = n). Outputs are
 * allocated into outs[0..f->nouts); the caller frees them with itensor_free. Returns 0 or a
 * negative NNRT_E* code with a message in err (NNRT_EBATCH: n < 1; NNRT_ENULL: missing
 * data; NNRT_EARG: mismatched args or malformed IR; NNRT_ENOMEM). On error outs are zeroed
 * and the module tensors are left as they were before the call. */
int interp_run(Interp *in, Func *f, int64_t n, const ITensor *args, ITensor *outs, char *err,
               size_t errlen);
/* Runs the module's `init` function (init_fill + store for every tensor) with in->seed. */
int interp_run_init(Interp *in, char *err, size_t errlen);
void itensor_free(ITensor *t);
/* A zeroed tensor (data is never NULL, even when empty). 0, NNRT_EARG or NNRT_ENOMEM. */
int itensor_alloc(ITensor *t, DType dt, int rank, const int64_t *dim);
/* A zeroed tensor of shape s at batch n, e.g. for f->args[i]. */
int itensor_alloc_shape(ITensor *t, DType dt, const Shape *s, int64_t n);
/* State buffer (the compiled layout, module_layout offsets) <-> interpreter tensors. */
void interp_load_state(Interp *in, const void *state);
void interp_save_state(const Interp *in, void *state);

/* ================================================================ plan.c: the memory planner */

/* Where each node's value lives in compiled code, and the layout of the work buffer (the
 * arena) one call of the function uses. llvm.c emits code from it; `nnc summary` prints it.
 * require: topological order, module_layout done, f->mod->max_batch set. */

enum { PLAN_ALIGN = 64 };  /* every region of the work buffer starts at a multiple of this */

typedef enum Storage {
    ST_DEAD,    /* not needed by any output or effect */
    ST_INLINE,  /* recomputed inside each consumer's loop (elementwise, views, splat consts) */
    ST_ARG,     /* the function argument's buffer */
    ST_STATE,   /* a module tensor's bytes in the state, as they were on entry */
    ST_CONST,   /* non-splat constant: a private constant global */
    ST_ALIAS,   /* the memory of NodePlan.alias_of (reshape, stop_gradient, stores, tensor reads
                   after a store) */
    ST_WORK,    /* a region of the work buffer */
    ST_OUT,     /* computed directly into output buffer NodePlan.out */
    ST_INPLACE, /* computed directly into the state of module tensor NodePlan.tensor */
} Storage;

typedef struct NodePlan {
    Storage storage;
    int uses;          /* live consumers, outputs and stores reading the value */
    Ref user;          /* the consumer when there is exactly one node consumer */
    bool needs_contig; /* some consumer needs the value in contiguous memory */
    int eval_pos;      /* node index where the value is computed */
    int read_pos;      /* last node index where the value's memory is read (nnodes = the end) */
    Ref alias_of;      /* ST_ALIAS: the node whose memory this is */
    int out;           /* ST_OUT: output index */
    int tensor;        /* ST_INPLACE: module tensor */
    bool commit;       /* stores: copy into the state at the end (deferred) */
    int64_t offset;    /* ST_WORK: byte offset in work */
    int64_t scratch;   /* bytes of temporary scratch while the node runs */
    int64_t scratch_offset;
    int region, scratch_region; /* indices in Plan.regions, or -1 */
    Ref inplace_of;    /* ST_WORK: the dead operand whose region this node overwrites */
    bool donated;      /* ST_WORK: its region was taken over by a later elementwise node */
} NodePlan;

/* A region of the arena, in use from schedule position first to last inclusive (node
 * indices; nnodes = after the last node, i.e. until the call returns). An in-place chain
 * (y, then x = f(y) over y's bytes, ...) shares one region. */
typedef struct PlanRegion {
    int64_t offset, bytes;  /* bytes rounded up to PLAN_ALIGN */
    int first, last;
    Ref node;               /* the value stored first, or the node whose scratch it is */
    bool scratch;
} PlanRegion;

typedef enum PlanStrategy {
    PLAN_DEFAULT,     /* the smallest arena of all the others but first fit */
    PLAN_FIRST_FIT,   /* along the schedule, the first free block that fits */
    PLAN_BEST_FIT,    /* along the schedule, the smallest free block that fits (lowest on ties) */
    PLAN_BY_SIZE,     /* largest region first, into the smallest gap free for its lifetime; the
                         best of three tie orders (longest-lived, earliest, latest-ending first) */
    PLAN_BY_LIFETIME, /* longest-lived region first, then as PLAN_BY_SIZE */
    PLAN_COUNT
} PlanStrategy;

typedef struct Plan {
    NodePlan *nodes;
    Ref check_after;         /* emit the loss check after this node; REF_NONE: no check */
    int loss_out;            /* output index of the loss, -1 */
    bool needs_seed;
    PlanRegion *regions;
    int nregions;
    int64_t arena_bytes;     /* the planned regions */
    int64_t *discard_offset; /* per output: where the public entry sends outputs it drops, or -1 */
    int64_t work_bytes;      /* arena + discard area: what one call needs */
    int64_t unplanned_bytes; /* the arena without reuse: every region its own bytes */
    int64_t live_peak_bytes; /* most bytes of regions in use at one position: a lower bound */
} Plan;

void plan_func(const Func *f, Plan *p);  /* PLAN_DEFAULT */
void plan_func_with(const Func *f, PlanStrategy strategy, Plan *p);
void plan_free(Plan *p);
/* Step 4 alone: sets the offset of every region (lifetimes within [0, npositions), sizes
 * multiples of PLAN_ALIGN) so that regions live at the same position never overlap; returns
 * the arena size. */
int64_t plan_assign_offsets(PlanRegion *regions, int nregions, int npositions, PlanStrategy s);

/* Shared with code generation. */
bool is_view(Op op);         /* broadcast, transpose, slice: strided reads of their input */
bool is_elementwise(Op op);  /* OPF_ELEM except stop_gradient (an alias) */
int64_t node_bytes(const Node *n, int64_t batch);
bool func_has_stores(const Func *f);
/* The first axis of the trailing block of reduced axes (rank when the last axis is kept). */
int reduce_inner_start(const Shape *in, uint32_t axes);

/* The geometry of a spatial node (NCHW): conv2d (x, w[, b]), conv2d_grad_input (dy, w),
 * conv2d_grad_weight (x, dy), and the pools (window attr.perm[0] x attr.perm[1]). */
typedef struct ConvGeom {
    int64_t C, H, W;      /* input channels and size */
    int64_t O, Ho, Wo;    /* output channels and size */
    int64_t KH, KW;       /* window */
    int64_t sh, sw;       /* stride */
    int64_t pt, pl;       /* padding before (top, left) */
    int64_t dh, dw;       /* dilation */
    int64_t G, Cg, Og;    /* groups, channels per group */
} ConvGeom;
ConvGeom conv_geom(const Func *f, const Node *n);
/* A 1x1 convolution with stride 1 and no padding reads its input as the GEMM operand. */
bool conv_is_pointwise(const ConvGeom *g);
/* conv2d that runs as nnrt_conv2d (runtime/conv.c: direct convolution, no im2col matrix in
 * the plan; scratch nnrt_conv2d_scratch): in the inference functions (infer, evaluate) at
 * stride 1, dilation 1, one group, not pointwise, at least 16 output channels (the kernel's
 * vectors run over output channels). Training functions keep im2col + sgemm, so their
 * numbers stay those of that summation order bit for bit. */
bool conv_is_direct(const Func *f, const Node *n, const ConvGeom *g);
/* Scratch of lstm_seq ([B, 4H] floats), gru_seq ([B, 3H]), lstm_seq_grad and gru_seq_grad
 * (two [B, H] blocks, the second at B*H floats), rnn_seq_grad ([B, H]; rnn_seq none) at
 * batch `batch`. */
int64_t lstm_scratch_bytes(const Node *n, int64_t batch);

/* ================================================================ llvm.c */

typedef struct CodegenOptions {
    int opt_level;            /* 0..3 */
    const char *target;       /* triple, NULL = host */
    const char *cpu;          /* NULL = host */
    const char *emit;         /* "obj", "asm", "llvm", "bc" */
    const void *embed_weights;/* state buffer to bake into .rodata (inference-only), or NULL */
    int jobs;                 /* threads for an object file: 0 = one per CPU (at most 4), 1 = none */
} CodegenOptions;

/* Emits every function of m (C ABI of docs/c-api.md) to path. Returns 0 or prints and fails.
 * With o->embed_weights (llvm_state_bytes(m) bytes), only the functions that neither
 * initialize nor store are emitted, and they read the weights from .rodata. */
int llvm_emit_module(Module *m, const CodegenOptions *o, const char *path);

/* objlink.c: one relocatable object from pieces compiled in parallel, with the system's
 * `ld -r` and `objcopy --localize-hidden` (hidden symbols become local). */
bool objlink_available(void);
bool objlink_join(const char *out, const void *const *objs, const size_t *sizes, int n);

/* The state block of compiled code: the module tensors (module_layout offsets), then the u64
 * init seed at llvm_seed_offset(m), written by init and read by rand_uniform. Allocate
 * llvm_state_bytes(m) bytes (STATE_BYTES of the header), not m->state_bytes. */
int64_t llvm_seed_offset(const Module *m);
int64_t llvm_state_bytes(const Module *m);
/* Bytes of work one call of f needs (WORK_BYTES is the max over the functions). */
int64_t llvm_work_bytes(const Func *f);
int64_t llvm_max_work_bytes(const Module *m, bool embedded);
/* Whether an object carries f: all functions, or with embedded weights only those that
 * neither initialize nor store (infer, evaluate). */
bool llvm_func_emitted(const Func *f, bool embedded);

/* Parameters of a public C entry after `M *m` (and `int n`, except for init and prepare), in
 * order: init(seed); prepare(); infer(args..., outputs...); train_step(args..., loss);
 * evaluate(args..., loss, metrics). Names are C identifiers, distinct from m, n and each
 * other. Returns the count (arena memory in *params), or -1 when f has no public entry. */
typedef enum PubParamKind { PP_SEED, PP_ARG, PP_OUT, PP_METRICS } PubParamKind;
typedef struct PubParam {
    PubParamKind kind;
    int index;        /* PP_ARG: f->args index; PP_OUT: f->outs index */
    const char *name;
} PubParam;
int llvm_public_params(const Func *f, PubParam **params);
/* Whether the public entry of f takes `int n` (all but init and prepare). */
bool llvm_public_has_batch(const Func *f);

/* In-process JIT. Each function gets the packed entry
 *   int fn(void *state, void *work, int n, void **args)   args = inputs, then outputs.  */
typedef struct Jit Jit;
typedef int (*JitFn)(void *state, void *work, int n, void **args);
Jit *jit_compile(Module *m, int opt_level);
JitFn jit_lookup(Jit *j, const char *func_name);
int64_t jit_work_bytes(Jit *j, const char *func_name);
void jit_free(Jit *j);

/* ================================================================ driver.c: the shared pipeline */

typedef struct DriverOptions {
    bool train_functions;  /* build grad and train_step too */
    bool verify;           /* run ir_verify on every function */
    int opt_level;         /* 0..3: the pass pipeline of passes_run (default 2 when set_opt is false) */
    bool set_opt;          /* opt_level was given (-O0..-O3) */
    const char *dump_after;/* print the module after this pass (nnc dump --dump-after=PASS) */
    FILE *dump;            /* where to print it */
} DriverOptions;

typedef struct DriverResult {
    Arena *arena;
    Source *src;
    Diag diag;
    Program *program;
    Module **modules;
    int nmodules;
} DriverResult;

int driver_load(const char *path, const DriverOptions *opts, DriverResult *out);
/* With NNC_TIME=1 in the environment, prints the process CPU time and the wall time (ms,
 * since start), each with the time since the previous mark, to stderr, labelled `what`
 * (docs/performance.md, Profiling). */
void time_mark(const char *what);
bool time_enabled(void); /* NNC_TIME=1 */
void driver_free(DriverResult *r);
/* The model called name (NULL: the first, with a note when there are several). */
Module *driver_pick_model(DriverResult *r, const char *name);

/* Commands: argv holds the arguments after the command name. Return the exit status. */
int cmd_check(int argc, char **argv);     /* cmd_check.c: check, dump, summary */
int cmd_dump(int argc, char **argv);
int cmd_summary(int argc, char **argv);
int cmd_compile(int argc, char **argv);   /* cmd_compile.c */
int cmd_train(int argc, char **argv);     /* cmd_run.c: train, eval, run, grad, sample */
int cmd_eval(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_grad(int argc, char **argv);
int cmd_sample(int argc, char **argv);
int cmd_gradcheck(int argc, char **argv); /* gradcheck.c */

/* blasload.c: OpenBLAS, opened with dlopen when first needed, its kernel set chosen first
 * (OPENBLAS_CORETYPE=SkylakeX on AVX-512 CPUs; NNC_BLAS_CORETYPE=NAME forces a set,
 * NNC_BLAS_AS_IS=1 leaves the environment alone). blas_load exits with a message when the
 * library cannot be opened; blas_choice loads it and says who chose the kernels. */
void blas_load(void);
const char *blas_choice(void);

/* ================================================================ passes.c: the optimization pipeline */

/* Runs the pass pipeline of opt_level on every function of m: the plain list of calls per -O
 * level lives in passes.c. With dump_after naming a pass, prints the module after that pass
 * to dump ("lower" = before any pass). Returns 0, or 2 when dump_after names no pass (the
 * message lists the valid names). */
int passes_run(Module *m, int opt_level, const char *dump_after, FILE *dump);

/* Each pass returns how many nodes it rewrote (0: the function is unchanged), so that
 * passes_run can repeat the -O2 round until nothing changes. */
typedef int (*PassFn)(Func *f);

/* ---- rewriting a function: every pass but dce rebuilds the node array in one forward walk.
 * rewrite_begin moves the old nodes aside (f->nnodes becomes 0, the storage is reused); for
 * each old node i in order, rewrite_node gives it with its inputs renamed to new refs, and the
 * pass either appends it (possibly changed) with rewrite_keep or maps it to an existing new
 * value with rewrite_forward. Topological order holds by construction. */
typedef struct Rewrite {
    Func *f;
    Node *old;     /* the nodes before the rewrite (malloc'd copy) */
    int nold;
    Ref *map;      /* old ref -> new ref, for the old nodes visited so far */
    bool *is_out;  /* old node i is the value of a metric output (its name is kept) */
    int changes;   /* rewrites so far (the pass's return value) */
} Rewrite;

void rewrite_begin(Rewrite *rw, Func *f);
Node rewrite_node(const Rewrite *rw, int i);
/* Appends n as the new version of old node i; returns its new ref. */
Ref rewrite_keep(Rewrite *rw, int i, const Node *n);
/* Old node i (whose renamed form is n) becomes the new value r, which must have n's dtype
 * and shape. r inherits n's source name when it has none. When n is a metric output whose
 * name differs from r's (metric_info reads the label there), n is kept instead. Returns the
 * new ref of node i. */
Ref rewrite_forward(Rewrite *rw, int i, const Node *n, Ref r);
/* Appends a node built from scratch (op, dtype, shape, inputs, attrs) with n's name and
 * location, e.g. a folded constant; returns its ref. Not mapped to any old node. */
Ref rewrite_emit(Rewrite *rw, const Node *like, Op op, DType dt, Shape shape, int nin,
                 const Ref *in, const Attr *attr);
/* Remaps the outputs and frees the scratch memory; returns rw->changes. */
int rewrite_end(Rewrite *rw);

/* True when r is a splat constant (attr.data NULL); its value in *v. */
bool splat_const(const Func *f, Ref r, double *v);

/* ================================================================ fold.c */

/* Constant folding: a node whose inputs are all constants is evaluated by interp.c (f32
 * mode, so the constant equals what compiled code would compute) and becomes a `const`. */
int fold_constants(Func *f);

/* ================================================================ simplify.c */

/* Algebraic simplification: identities (x*1, x+0, x/1, x^1, --x), chains of transposes,
 * reshapes, broadcasts and slices, no-op casts and reductions, constant selects,
 * stop_gradient once gradients exist. Exact in IEEE arithmetic (see docs/passes.md). */
int simplify(Func *f);

/* ================================================================ cse.c */

/* Common subexpression elimination over pure nodes (module tensor reads count as pure
 * between two stores to the tensor). */
int cse(Func *f);

/* ================================================================ bnfold.c */

/* Batchnorm folding: a per-channel affine chain (inference batchnorm, bias adds, scalings)
 * after conv2d or a dense matmul becomes the layer's scaled weights and bias. Changes f32
 * rounding (W * a before the product instead of after), so it runs at -O2 and above only. */
int fold_batchnorm(Func *f);

/* ================================================================ prepare.c */

/* Derived tensors: every weight-only value that infer or evaluate computes (bnfold's scaled
 * weights, ...) becomes a TK_DERIVED module tensor computed by a new function `prepare`
 * (no args, no outputs, only stores). Run after the -O2 passes; lays the state out again.
 * Returns the number of derived tensors (0: the module is unchanged). */
int prepare_build(Module *m);
/* Whether f stores into a tensor prepare reads (init, train_step; loss and grad through the
 * batchnorm statistics): after it, prepare must run before the derived tensors are read. */
bool prepare_stale_after(const Module *m, const Func *f);
/* Whether f reads a derived tensor (infer, evaluate at -O2). */
bool prepare_needed_by(const Module *m, const Func *f);

/* ================================================================ dce.c */

/* Dead code elimination: removes nodes that reach no output and no store. */
int dce(Func *f);

/* ================================================================ exec.c */

/* Runs a module's functions on compiled code (JIT) or the interpreter. The state buffer
 * (module_layout's layout) is authoritative between calls for checkpoint I/O. */
typedef struct Exec {
    Module *m;
    bool use_interp;
    Interp interp;
    Jit *jit;
    Module *jit_view;   /* the module as compiled: a subset of its functions */
    uint8_t *state;
    void *work;
    int64_t work_bytes;
    uint64_t seed;
    bool derived_stale;  /* the weights changed since the last prepare (prepare.c) */
} Exec;

/* funcs: NULL-terminated names of the functions to compile (init is always included), or NULL
 * for all of them. */
int exec_open(Exec *e, Module *m, bool use_interp, uint64_t seed, const char *const *funcs);
void exec_close(Exec *e);
int exec_init(Exec *e, char *err, size_t errlen);  /* runs init with e->seed */
/* bufs: the function's args, then its outputs (float or int32_t arrays by dtype; an output
 * buffer may be NULL when not wanted). Runs prepare first when f reads derived tensors that
 * are stale. Returns 0 or a negative NNRT_E* code (err filled). */
int exec_call(Exec *e, const char *fn, int n, void **bufs, char *err, size_t errlen);
void *exec_state(Exec *e);          /* the up-to-date state buffer */
/* Call after writing into exec_state()'s buffer (a checkpoint, a hyperparameter): the
 * interpreter reloads it, and the derived tensors are stale until the next prepare. */
void exec_state_changed(Exec *e);
/* Runs `prepare` now when the module has one (derived tensors from the state). exec_call
 * does it by itself before a function that reads stale derived tensors. */
int exec_prepare(Exec *e, char *err, size_t errlen);
/* The runtime descriptor of a module (names, shapes, offsets), allocated in its arena. */
struct nnrt_model_info;
const struct nnrt_model_info *module_info(Module *m);

/* ================================================================ cmd_run.c: shared by the execution commands */

typedef struct Session {
    DriverResult dr;
    Module *m;
    const struct nnrt_model_info *info;
    Exec exec;
    bool exec_open;
} Session;

/* funcs: the functions the command calls (NULL-terminated), see exec_open. */
int session_open(Session *s, const char *file, const char *model, bool interp, int64_t seed,
                 const char *weights, unsigned required_kinds, const char *const *funcs);
void session_close(Session *s);
int save_checkpoint(Session *s, const char *path, int64_t step, int64_t epoch);
void set_hyper(Exec *e, const char *name, double value);
void shuffle_order(int64_t *order, int64_t n, uint64_t seed, int64_t epoch);
/* "--name VALUE" or "--name=VALUE" at argv[*i] (advances *i); *value NULL when missing. */
bool opt_value(int argc, char **argv, int *i, const char *name, const char **value);
bool parse_int_arg(const char *opt, const char *s, int64_t lo, int64_t hi, int64_t *out);
int unknown_option(const char *cmd, const char *arg, const char *const *known, int nknown);

/* ================================================================ cmd_train.c: dataset-mode training, eval, sample */

int train_dataset(int argc, char **argv);

/* ================================================================ header.c */

/* Writes the C header of docs/c-api.md for m. embedded: the object was compiled with
 * --embed-weights (inference entries only, the state pointer may be NULL). 0 or prints, 1. */
int header_emit(const Module *m, const char *path);
int header_emit_embedded(const Module *m, const char *path, bool embedded);

#endif
