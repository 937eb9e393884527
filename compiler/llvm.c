/* llvm.c — IR functions to native code through the LLVM C API (the only file that includes
 * <llvm-c/...>): object/assembly/IR/bitcode files for `nnc compile`, and an ORC LLJIT for the
 * commands that run models in-process.
 *
 * Every IR function F of model M becomes (docs/c-api.md is the contract):
 *   internal  M__F_part0, part1, ...                              the computation, 32 kernels each
 *   internal  M__F_body(state, work, n, [seed,] arg..., out...)   calls the parts; noalias buffers
 *   external  M__F_packed(state, work, n, void **args)             JIT/driver entry, checks arguments
 *   external  M_infer / M_train_step / M_evaluate / M_init / M_prepare   public C entries, check arguments
 *             (M_init and M_train_step then run M__prepare_body: derived tensors, prepare.c)
 *   external  M_info()                                             constant model descriptor
 * docs/architecture.md ("Code generation") explains the design.
 *
 * Code generation in three steps per function:
 *   1. plan_func (plan.c, the memory planner) decides where every node's value lives (see
 *      Storage): recomputed inside its consumers' loops (elementwise fusion, strided views),
 *      aliased (reshape, tensors, args), in a region of the caller's work buffer, directly in
 *      an output buffer, or directly in the state of the tensor it is stored to; it packs the
 *      work regions (liveness over the schedule, in-place reuse, best-fit offsets).
 *   2. emit_func walks the nodes in order and emits one loop nest or runtime call per
 *      materialized node.
 *   3. the wrappers validate arguments (NNRT_EBATCH, NNRT_ENULL) and call the body.
 *
 * Store commit protocol (train_step must leave the state unchanged on a non-finite loss):
 *   - the loss is checked right after the node computing it; a non-finite loss returns
 *     NNRT_ENONFINITE before any byte of the state has been written;
 *   - a store whose value is computed after that check, into a tensor that nothing reads
 *     afterwards in its old version, computes its value directly into the state ("in place":
 *     optimizer updates cost no copy);
 *   - every other store is deferred: its value stays in work (copied there first when it is
 *     itself a state tensor) and is copied into the state at the very end, after the check.
 *   Reads of a tensor after a store to it see the stored value (ops.h).
 *
 * The init seed lives in a u64 slot just after the module tensors, at offset
 * Module.state_bytes; llvm_state_bytes() (STATE_BYTES in the header) includes it. M_init
 * writes it; rand_uniform nodes read it.
 */
#include "nnc.h"
#include "nnrt.h"

#include <llvm-c/Analysis.h>
#include <llvm-c/BitReader.h>
#include <llvm-c/BitWriter.h>
#include <llvm-c/Core.h>
#include <llvm-c/DebugInfo.h>
#include <llvm-c/Error.h>
#include <llvm-c/ErrorHandling.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>
#include <llvm-c/Support.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Transforms/PassBuilder.h>

#include <assert.h>
#include <pthread.h>
#include <sched.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The IR enums are numbered like the runtime's, so descriptors need no translation. */
_Static_assert((int)DT_F32 == (int)NNRT_F32 && (int)DT_I32 == (int)NNRT_I32 &&
                   (int)DT_F64 == (int)NNRT_F64,
               "dtype numbering");
_Static_assert((int)TK_PARAM == (int)NNRT_PARAM && (int)TK_STATE == (int)NNRT_STATE &&
                   (int)TK_SLOT == (int)NNRT_SLOT && (int)TK_STEP == (int)NNRT_STEP &&
                   (int)TK_HYPER == (int)NNRT_HYPER && (int)TK_DERIVED == (int)NNRT_DERIVED,
               "tensor kind numbering");
_Static_assert((int)INIT_ZEROS == (int)NNRT_INIT_ZEROS &&
                   (int)INIT_XAVIER_UNIFORM == (int)NNRT_INIT_XAVIER_UNIFORM &&
                   (int)INIT_ORTHOGONAL == (int)NNRT_INIT_ORTHOGONAL &&
                   (int)INIT_TORCH_DEFAULT == (int)NNRT_INIT_TORCH_DEFAULT,
               "initializer numbering");
_Static_assert((int)IR_MAX_RANK == (int)NNRT_MAX_RANK, "rank limit");

enum { WORK_ALIGN = 64 };


int64_t llvm_seed_offset(const Module *m) { return m->state_bytes; }
int64_t llvm_state_bytes(const Module *m) { return m->state_bytes + 8; }

/* ================================================================ public signatures */

static bool is_c_keyword(const char *s) {
    static const char *const words[] = {
        "auto", "break", "case", "char", "const", "continue", "default", "do", "double", "else",
        "enum", "extern", "float", "for", "goto", "if", "inline", "int", "long", "register",
        "restrict", "return", "short", "signed", "sizeof", "static", "struct", "switch",
        "typedef", "union", "unsigned", "void", "volatile", "while", "bool", "true", "false",
        "class", "new", "delete", "this", "template", "private", "public", "operator"};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (!strcmp(s, words[i])) return true;
    return false;
}

/* A C parameter name for `want`, distinct from the fixed parameters (m, n) and the ones taken. */
static const char *param_name(Arena *a, const char *want, PubParam *taken, int ntaken) {
    char *name = arena_strdup(a, want);
    for (char *c = name; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9')))
            *c = '_';
    for (;;) {
        bool clash = !strcmp(name, "m") || !strcmp(name, "n") || is_c_keyword(name) ||
                     (name[0] >= '0' && name[0] <= '9');
        for (int i = 0; i < ntaken && !clash; i++) clash = !strcmp(taken[i].name, name);
        if (!clash) return name;
        name = arena_printf(a, "%s_", name);
    }
}

int llvm_public_params(const Func *f, PubParam **out) {
    Arena *a = f->mod->arena;
    bool infer = !strcmp(f->name, "infer"), train = !strcmp(f->name, "train_step"),
         eval = !strcmp(f->name, "evaluate"), init = !strcmp(f->name, "init"),
         prepare = !strcmp(f->name, "prepare");
    *out = NULL;
    if (!infer && !train && !eval && !init && !prepare) return -1;
    PubParam *p = arena_alloc(a, (size_t)(f->nargs + f->nouts + 2) * sizeof *p);
    int np = 0;
    if (prepare) { /* int M_prepare(M *m): no batch, no buffers */
        *out = p;
        return 0;
    }
    if (init) {
        p[np] = (PubParam){PP_SEED, -1, "seed"};
        *out = p;
        return 1;
    }
    for (int i = 0; i < f->nargs; i++) {
        p[np].kind = PP_ARG;
        p[np].index = i;
        p[np].name = param_name(a, f->args[i].name, p, np);
        np++;
    }
    for (int i = 0; i < f->nouts; i++) {
        const FuncOut *o = &f->outs[i];
        bool keep = (infer && o->role == OUT_OUTPUT) || ((train || eval) && o->role == OUT_LOSS);
        if (!keep) continue;
        p[np].kind = PP_OUT;
        p[np].index = i;
        p[np].name = param_name(a, o->role == OUT_LOSS ? "loss" : o->name, p, np);
        np++;
    }
    if (eval) {
        p[np].kind = PP_METRICS;
        p[np].index = -1;
        p[np].name = param_name(a, "metrics", p, np);
        np++;
    }
    *out = p;
    return np;
}

bool llvm_public_has_batch(const Func *f) { return strcmp(f->name, "init") && strcmp(f->name, "prepare"); }

/* ================================================================ plan: where values live */

/* plan.c decides, per node, where its value lives (Storage) and packs the work regions;
 * emission reads NodePlan.storage, offset, scratch_offset, alias_of, out, tensor, commit,
 * and Plan.check_after, discard_offset, work_bytes, needs_seed. */

static int64_t at_least_1(int64_t v) { return v > 0 ? v : 1; }
static int64_t align_up(int64_t x, int64_t a) { return (x + a - 1) / a * a; }

int64_t llvm_work_bytes(const Func *f) {
    Plan p;
    plan_func(f, &p);
    int64_t bytes = p.work_bytes;
    plan_free(&p);
    return bytes;
}

/* ================================================================ code generation context */

/* Runtime and libm functions the generated code calls. The JIT resolves them to these
 * addresses, which also keeps them linked into nnc. */
typedef enum RuntimeFn {
    RT_SGEMM, RT_SGEMM_BATCHED, RT_INIT_TENSOR, RT_RNG_UNIFORM, RT_RNG_FILL_UNIFORM, RT_CONV2D, RT_COUNT
} RuntimeFn;

typedef void (*AnyFn)(void);
static const struct {
    const char *name;
    AnyFn addr;
} runtime_symbols[] = {
    {"nnrt_sgemm", (AnyFn)nnrt_sgemm},
    {"nnrt_sgemm_batched", (AnyFn)nnrt_sgemm_batched},
    {"nnrt_init_tensor", (AnyFn)nnrt_init_tensor},
    {"nnrt_rng_uniform", (AnyFn)nnrt_rng_uniform},
    {"nnrt_rng_fill_uniform", (AnyFn)nnrt_rng_fill_uniform},
    {"nnrt_conv2d", (AnyFn)nnrt_conv2d},
    {"expf", (AnyFn)expf}, {"exp", (AnyFn)exp},
    {"expm1f", (AnyFn)expm1f}, {"expm1", (AnyFn)expm1},
    {"logf", (AnyFn)logf}, {"log", (AnyFn)log},
    {"log1pf", (AnyFn)log1pf}, {"log1p", (AnyFn)log1p},
    {"cosf", (AnyFn)cosf}, {"cos", (AnyFn)cos},
    {"powf", (AnyFn)powf}, {"pow", (AnyFn)pow},
    {"erff", (AnyFn)erff}, {"erf", (AnyFn)erf},
    {"erfcf", (AnyFn)erfcf}, {"erfc", (AnyFn)erfc},
    {"tanhf", (AnyFn)tanhf}, {"tanh", (AnyFn)tanh},
};

enum { MAX_LOOP_DEPTH = 16 };

typedef struct Cg {
    LLVMContextRef ctx;
    LLVMModuleRef mod;
    LLVMBuilderRef b;
    Module *m;
    const void *embedded;    /* state bytes baked into .rodata, or NULL */
    LLVMValueRef weights;    /* the embedded state global: the tensors the object reads */
    LLVMValueRef prepare_body;    /* M__prepare_body, emitted first; NULL without derived tensors */
    int64_t prepare_work;         /* its work bytes */
    int64_t *weight_offset;  /* per module tensor: its offset in `weights`, -1 if not there */
    LLVMTypeRef t_void, t_i8, t_i32, t_i64, t_f32, t_f64, t_ptr;
    LLVMValueRef rt[RT_COUNT];
    LLVMTypeRef rt_type[RT_COUNT];
    /* the function being emitted */
    Func *f;
    Plan plan;
    LLVMValueRef fn;
    LLVMBasicBlockRef alloca_block;
    LLVMValueRef state, work, n64, seed;
    LLVMValueRef *argp;      /* nargs inputs, then nouts outputs (of the part being emitted) */
    LLVMValueRef *ptr;       /* per node: its memory in the current part (node_ptr), or NULL */
    LLVMValueRef *globals;   /* per node: the constant global of a non-splat const */
    /* alias scopes (alias_scopes_end): the buffers of the current part, and the loads and
     * stores of the kernel being emitted */
    struct Region { LLVMValueRef ptr, root; int64_t off, size; } *regions;
    int nregions, cap_regions;
    struct Access { LLVMValueRef inst, base; } *accesses;
    int naccesses, cap_accesses;
    bool recording;
    int scope_count;
    /* loops open in the function being emitted (loop_begin/loop_end), and per level whether
     * one opened inside it */
    int loop_depth;
    bool loop_has_inner[MAX_LOOP_DEPTH];
    int errors;
} Cg;

__attribute__((format(printf, 2, 3))) static void cg_error(Cg *cg, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "nnc: error: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    cg->errors++;
}

static LLVMTypeRef ty(Cg *cg, DType dt) {
    switch (dt) {
    case DT_F32: return cg->t_f32;
    case DT_I32: return cg->t_i32;
    case DT_F64: return cg->t_f64;
    default: return cg->t_f32;
    }
}

static bool is_float(DType dt) { return dt != DT_I32; }

static LLVMValueRef i64c(Cg *cg, int64_t v) { return LLVMConstInt(cg->t_i64, (unsigned long long)v, 1); }
static LLVMValueRef i32c(Cg *cg, int64_t v) { return LLVMConstInt(cg->t_i32, (unsigned long long)v, 1); }
static LLVMValueRef fpc(Cg *cg, DType dt, double v) {
    return dt == DT_I32 ? i32c(cg, (int64_t)v) : LLVMConstReal(ty(cg, dt), v);
}

static LLVMValueRef add64(Cg *cg, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildNSWAdd(cg->b, a, b, ""); }
static LLVMValueRef mul64(Cg *cg, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildNSWMul(cg->b, a, b, ""); }

/* dimension `axis` of s at run time (k*n for the batch axis) */
static LLVMValueRef dim_value(Cg *cg, const Shape *s, int axis) {
    if (s->batch_mask >> axis & 1) return s->dim[axis] == 1 ? cg->n64 : mul64(cg, cg->n64, i64c(cg, s->dim[axis]));
    return i64c(cg, s->dim[axis]);
}

static LLVMValueRef dims_product(Cg *cg, const Shape *s, int from, int to) {
    LLVMValueRef p = i64c(cg, 1);
    for (int i = from; i < to; i++) p = mul64(cg, p, dim_value(cg, s, i));
    return p;
}

static LLVMValueRef numel_value(Cg *cg, const Shape *s) { return dims_product(cg, s, 0, s->rank); }

static LLVMValueRef byte_ptr(Cg *cg, LLVMValueRef base, int64_t offset) {
    if (!offset) return base;
    LLVMValueRef idx = i64c(cg, offset);
    return LLVMBuildInBoundsGEP2(cg->b, cg->t_i8, base, &idx, 1, "");
}

static LLVMValueRef elem_ptr(Cg *cg, DType dt, LLVMValueRef base, LLVMValueRef idx) {
    return LLVMBuildInBoundsGEP2(cg->b, ty(cg, dt), base, &idx, 1, "");
}

static void record_access(Cg *cg, LLVMValueRef inst, LLVMValueRef base) {
    if (!cg->recording) return;
    if (cg->naccesses == cg->cap_accesses) {
        cg->cap_accesses = cg->cap_accesses ? 2 * cg->cap_accesses : 64;
        cg->accesses = realloc(cg->accesses, (size_t)cg->cap_accesses * sizeof *cg->accesses);
        if (!cg->accesses) abort();
    }
    cg->accesses[cg->naccesses++] = (struct Access){inst, base};
}

static LLVMValueRef load_at(Cg *cg, DType dt, LLVMValueRef base, LLVMValueRef idx) {
    LLVMValueRef v = LLVMBuildLoad2(cg->b, ty(cg, dt), elem_ptr(cg, dt, base, idx), "");
    LLVMSetAlignment(v, (unsigned)dtype_size(dt));
    record_access(cg, v, base);
    return v;
}

static void store_at(Cg *cg, DType dt, LLVMValueRef val, LLVMValueRef base, LLVMValueRef idx) {
    LLVMValueRef s = LLVMBuildStore(cg->b, val, elem_ptr(cg, dt, base, idx));
    LLVMSetAlignment(s, (unsigned)dtype_size(dt));
    record_access(cg, s, base);
}

/* A stack slot in the entry block (promoted to a register by SROA). */
static LLVMValueRef entry_alloca(Cg *cg, LLVMTypeRef t, const char *name) {
    LLVMBasicBlockRef here = LLVMGetInsertBlock(cg->b);
    LLVMPositionBuilderAtEnd(cg->b, cg->alloca_block);
    LLVMValueRef a = LLVMBuildAlloca(cg->b, t, name);
    LLVMPositionBuilderAtEnd(cg->b, here);
    return a;
}

static LLVMValueRef load_var(Cg *cg, LLVMTypeRef t, LLVMValueRef var) { return LLVMBuildLoad2(cg->b, t, var, ""); }

/* for (iv = 0; iv < count; iv++) — open with loop_begin, close with loop_end.
 * Emitted rotated, as `if (count > 0) do { ... } while (++iv < count)`: the form LLVM's loop
 * passes want, so LoopRotate has nothing to do (rotating thousands of loops of a large
 * model one by one costs time quadratic in their number). */
typedef struct Loop {
    LLVMBasicBlockRef body, exit;
    LLVMValueRef iv, count;
} Loop;

static void loop_no_unroll(Cg *cg, LLVMValueRef br);

static Loop loop_begin(Cg *cg, LLVMValueRef count, const char *name) {
    Loop l = {.count = count};
    if (cg->loop_depth > 0 && cg->loop_depth <= MAX_LOOP_DEPTH) cg->loop_has_inner[cg->loop_depth - 1] = true;
    if (cg->loop_depth < MAX_LOOP_DEPTH) cg->loop_has_inner[cg->loop_depth] = false;
    cg->loop_depth++;
    LLVMBasicBlockRef pre = LLVMGetInsertBlock(cg->b);
    l.body = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, name);
    l.exit = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "");
    LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntSGT, count, i64c(cg, 0), ""), l.body, l.exit);
    LLVMPositionBuilderAtEnd(cg->b, l.body);
    l.iv = LLVMBuildPhi(cg->b, cg->t_i64, "");
    LLVMValueRef zero = i64c(cg, 0);
    LLVMAddIncoming(l.iv, &zero, &pre, 1);
    return l;
}

/* After loop_end: whether the loop it closed had no loop inside. */
static bool closed_innermost(const Cg *cg) {
    return cg->loop_depth >= MAX_LOOP_DEPTH || !cg->loop_has_inner[cg->loop_depth];
}

static LLVMValueRef loop_end(Cg *cg, Loop *l) {
    LLVMValueRef next = LLVMBuildNSWAdd(cg->b, l->iv, i64c(cg, 1), "");
    LLVMBasicBlockRef latch = LLVMGetInsertBlock(cg->b);
    LLVMValueRef br = LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLT, next, l->count, ""), l->body, l->exit);
    LLVMAddIncoming(l->iv, &next, &latch, 1);
    LLVMPositionBuilderAtEnd(cg->b, l->exit);
    cg->loop_depth--;
    /* An innermost loop of 16 or more iterations known at compile time stays a loop: fully
     * unrolled (loop-unroll-full runs before the vectorizer), the loop around it would be
     * vectorized instead, across rows, with gathers and scatters. Shorter rows: loop_end_row;
     * other short loops (convolution and pooling windows) are unrolled, and the loop around
     * them, at unit stride, vectorized (docs/performance.md, W7). */
    if (closed_innermost(cg) && LLVMIsAConstantInt(l->count) && LLVMConstIntGetSExtValue(l->count) >= 16)
        loop_no_unroll(cg, br);
    return br;
}

/* Sets the llvm.loop metadata of the loop whose latch branch is br: llvm.loop.unroll.disable,
 * and with masked, llvm.loop.vectorize.predicate.enable (a hint, not a demand: a loop the
 * vectorizer cannot take stays a plain loop, with no diagnostic). */
static void set_loop_md(Cg *cg, LLVMValueRef br, bool masked) {
    LLVMMetadataRef self = LLVMTemporaryMDNode(cg->ctx, NULL, 0);
    LLVMMetadataRef unroll = LLVMMDStringInContext2(cg->ctx, "llvm.loop.unroll.disable", 24);
    LLVMMetadataRef pred[2] = {LLVMMDStringInContext2(cg->ctx, "llvm.loop.vectorize.predicate.enable", 36),
                               LLVMValueAsMetadata(LLVMConstInt(LLVMInt1TypeInContext(cg->ctx), 1, 0))};
    LLVMMetadataRef ops[3] = {self, LLVMMDNodeInContext2(cg->ctx, &unroll, 1), LLVMMDNodeInContext2(cg->ctx, pred, 2)};
    LLVMMetadataRef loop = LLVMMDNodeInContext2(cg->ctx, ops, masked ? 3 : 2);
    LLVMMetadataReplaceAllUsesWith(self, loop);
    LLVMSetMetadata(br, LLVMGetMDKindIDInContext(cg->ctx, "llvm.loop", 9), LLVMMetadataAsValue(cg->ctx, loop));
}

static void loop_no_unroll(Cg *cg, LLVMValueRef br) { set_loop_md(cg, br, false); }

/* loop_end for a loop over a contiguous row (the last axis: softmax, cross-entropy, argmax,
 * a reduction's inner block, an elementwise nest's last axis). Shorter than 16 and known at
 * compile time (10 classes), such a loop was fully unrolled and the loop around it
 * vectorized across rows, 16 rows at a time with gathers and scatters (stride C): instead
 * it stays a loop, vectorized on its own with masked loads and stores, the whole row in
 * one vector. Same speed for W1-W3, a third less code for the class rows (docs/performance.md,
 * W7). */
static LLVMValueRef loop_end_row(Cg *cg, Loop *l) {
    LLVMValueRef br = loop_end(cg, l);
    if (closed_innermost(cg) && LLVMIsAConstantInt(l->count)) {
        long long c = LLVMConstIntGetSExtValue(l->count);
        if (c >= 2 && c < 16) set_loop_md(cg, br, true);
    }
    return br;
}

/* if (cond) { ... } — close with if_end */
static LLVMBasicBlockRef if_begin(Cg *cg, LLVMValueRef cond) {
    LLVMBasicBlockRef then = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "");
    LLVMBasicBlockRef join = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "");
    LLVMBuildCondBr(cg->b, cond, then, join);
    LLVMPositionBuilderAtEnd(cg->b, then);
    return join;
}

static void if_end(Cg *cg, LLVMBasicBlockRef join) {
    LLVMBuildBr(cg->b, join);
    LLVMPositionBuilderAtEnd(cg->b, join);
}

static LLVMValueRef declare_fn(Cg *cg, const char *name, LLVMTypeRef fty) {
    LLVMValueRef fn = LLVMGetNamedFunction(cg->mod, name);
    if (!fn) {
        fn = LLVMAddFunction(cg->mod, name, fty);
        LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex,
                                LLVMCreateEnumAttribute(cg->ctx, LLVMGetEnumAttributeKindForName("nounwind", 8), 0));
    }
    return fn;
}

static LLVMValueRef call(Cg *cg, LLVMTypeRef fty, LLVMValueRef fn, LLVMValueRef *args, unsigned n) {
    return LLVMBuildCall2(cg->b, fty, fn, args, n, "");
}

/* libm function of one argument (`name` is the double version; f32 calls name + "f") */
static LLVMValueRef libm1(Cg *cg, const char *name, DType dt, LLVMValueRef x) {
    char buf[32];
    snprintf(buf, sizeof buf, "%s%s", name, dt == DT_F32 ? "f" : "");
    LLVMTypeRef t = ty(cg, dt);
    LLVMTypeRef fty = LLVMFunctionType(t, &t, 1, 0);
    return call(cg, fty, declare_fn(cg, buf, fty), &x, 1);
}

static LLVMValueRef libm2(Cg *cg, const char *name, DType dt, LLVMValueRef x, LLVMValueRef y) {
    char buf[32];
    snprintf(buf, sizeof buf, "%s%s", name, dt == DT_F32 ? "f" : "");
    LLVMTypeRef t = ty(cg, dt), params[2] = {t, t};
    LLVMTypeRef fty = LLVMFunctionType(t, params, 2, 0);
    LLVMValueRef args[2] = {x, y};
    return call(cg, fty, declare_fn(cg, buf, fty), args, 2);
}

/* llvm.NAME.f32/f64 intrinsic of one argument (sqrt, fabs, floor: exact operations) */
static LLVMValueRef intrinsic1(Cg *cg, const char *name, LLVMValueRef x) {
    LLVMTypeRef t = LLVMTypeOf(x);
    unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
    LLVMValueRef fn = LLVMGetIntrinsicDeclaration(cg->mod, id, &t, 1);
    LLVMTypeRef fty = LLVMIntrinsicGetType(cg->ctx, id, &t, 1);
    return call(cg, fty, fn, &x, 1);
}

/* max(acc, x) as interp.c takes it: a NaN sticks, the first of equal values stays.
 * (llvm.maximum would do, but LLVM 19 cannot lower it for soft-float targets.) */
static LLVMValueRef max_nan(Cg *cg, LLVMValueRef acc, LLVMValueRef x) {
    LLVMValueRef pick = LLVMBuildSelect(cg->b, LLVMBuildFCmp(cg->b, LLVMRealOGT, x, acc, ""), x, acc, "");
    LLVMValueRef nan = LLVMBuildFCmp(cg->b, LLVMRealUNO, acc, x, "");
    return LLVMBuildSelect(cg->b, nan, LLVMBuildFAdd(cg->b, acc, x, ""), pick, "");
}

static void declare_runtime(Cg *cg) {
    LLVMTypeRef i32 = cg->t_i32, i64 = cg->t_i64, f32 = cg->t_f32, f64 = cg->t_f64, p = cg->t_ptr;
    LLVMTypeRef sgemm[] = {i32, i32, i32, i32, i32, f32, p, i32, p, i32, f32, p, i32};
    LLVMTypeRef batched[] = {i32, i32, i32, i32, i32, i32, f32, p, i32, i64, p, i32, i64, f32, p, i32, i64};
    LLVMTypeRef init[] = {p, i32, p, i32, f64, f64, i64, i64, i64};
    LLVMTypeRef rng[] = {i64, i64, i64};
    LLVMTypeRef fill[] = {p, i64, i64, i64, i64, f32, f32};
    cg->rt_type[RT_SGEMM] = LLVMFunctionType(cg->t_void, sgemm, 13, 0);
    cg->rt_type[RT_SGEMM_BATCHED] = LLVMFunctionType(cg->t_void, batched, 17, 0);
    cg->rt_type[RT_INIT_TENSOR] = LLVMFunctionType(i32, init, 9, 0);
    cg->rt_type[RT_RNG_UNIFORM] = LLVMFunctionType(f32, rng, 3, 0);
    cg->rt_type[RT_RNG_FILL_UNIFORM] = LLVMFunctionType(cg->t_void, fill, 7, 0);
    LLVMTypeRef conv[] = {i32, p, i32, i32, i32, p, p, i32, i32, i32, i32, i32, p, i32, i32, p};
    cg->rt_type[RT_CONV2D] = LLVMFunctionType(cg->t_void, conv, 16, 0);
    for (int i = 0; i < RT_COUNT; i++) cg->rt[i] = NULL;
}

static LLVMValueRef runtime_call(Cg *cg, RuntimeFn which, LLVMValueRef *args, unsigned n) {
    if (!cg->rt[which]) cg->rt[which] = declare_fn(cg, runtime_symbols[which].name, cg->rt_type[which]);
    return call(cg, cg->rt_type[which], cg->rt[which], args, n);
}

static LLVMValueRef to_double(Cg *cg, DType dt, LLVMValueRef v) {
    if (dt == DT_F64) return v;
    if (dt == DT_F32) return LLVMBuildFPExt(cg->b, v, cg->t_f64, "");
    return LLVMBuildSIToFP(cg->b, v, cg->t_f64, "");
}

static LLVMValueRef from_double(Cg *cg, DType dt, LLVMValueRef v) {
    if (dt == DT_F64) return v;
    if (dt == DT_F32) return LLVMBuildFPTrunc(cg->b, v, cg->t_f32, "");
    return LLVMBuildFPToSI(cg->b, v, cg->t_i32, "");
}

static LLVMValueRef reassoc(LLVMValueRef inst) {
    /* Reordering a sum of doubles is harmless for f32 results, and lets loops vectorize. */
    LLVMSetFastMathFlags(inst, LLVMFastMathAllowReassoc);
    return inst;
}

/* ================================================================ elementwise expressions */

/* Where an element is: a linear index (flat loops over same-shaped operands) or one index
 * per axis of the node's shape (loops with broadcasts, transposes and slices fused in). */
typedef struct Index {
    bool flat;
    LLVMValueRef lin;
    LLVMValueRef at[IR_MAX_RANK];
} Index;

static LLVMValueRef value_at(Cg *cg, Ref v, const Index *ix);
static LLVMValueRef node_ptr(Cg *cg, Ref v);

static LLVMValueRef linear_index(Cg *cg, const Shape *s, const Index *ix) {
    if (ix->flat) return ix->lin;
    if (s->rank == 0) return i64c(cg, 0);
    LLVMValueRef off = ix->at[0];
    for (int k = 1; k < s->rank; k++) off = add64(cg, mul64(cg, off, dim_value(cg, s, k)), ix->at[k]);
    return off;
}

static LLVMValueRef fcmp_to(Cg *cg, LLVMRealPredicate pred, LLVMValueRef a, LLVMValueRef b,
                            DType in, DType out) {
    static const LLVMIntPredicate ipred[] = {
        [LLVMRealOEQ] = LLVMIntEQ, [LLVMRealUNE] = LLVMIntNE, [LLVMRealOLT] = LLVMIntSLT,
        [LLVMRealOLE] = LLVMIntSLE, [LLVMRealOGT] = LLVMIntSGT, [LLVMRealOGE] = LLVMIntSGE};
    LLVMValueRef c = in == DT_I32 ? LLVMBuildICmp(cg->b, ipred[pred], a, b, "")
                                  : LLVMBuildFCmp(cg->b, pred, a, b, "");
    return LLVMBuildSelect(cg->b, c, fpc(cg, out, 1), fpc(cg, out, 0), "");
}

static LLVMValueRef f_mul(Cg *cg, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFMul(cg->b, a, b, ""); }
static LLVMValueRef f_add(Cg *cg, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFAdd(cg->b, a, b, ""); }
static LLVMValueRef f_sub(Cg *cg, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFSub(cg->b, a, b, ""); }
static LLVMValueRef f_div(Cg *cg, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFDiv(cg->b, a, b, ""); }
static LLVMValueRef f_gt(Cg *cg, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFCmp(cg->b, LLVMRealOGT, a, b, ""); }
static LLVMValueRef f_lt(Cg *cg, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFCmp(cg->b, LLVMRealOLT, a, b, ""); }
static LLVMValueRef sel(Cg *cg, LLVMValueRef c, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildSelect(cg->b, c, a, b, ""); }

/* ---- f32 transcendentals as straight-line IR
 *
 * libm's expf/tanhf are calls, and a loop with a call in it stays scalar. In f32, exp and
 * tanh are emitted inline instead (Cephes' single-precision approximations: range reduction
 * and a polynomial, within 2 ulp), so every loop around them vectorizes; f64 keeps libm. */

/* llvm.NAME intrinsic of n arguments, overloaded on the type of the first */
static LLVMValueRef intrinsic_n(Cg *cg, const char *name, LLVMValueRef *args, unsigned n) {
    LLVMTypeRef t = LLVMTypeOf(args[0]);
    unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
    LLVMValueRef fn = LLVMGetIntrinsicDeclaration(cg->mod, id, &t, 1);
    return call(cg, LLVMIntrinsicGetType(cg->ctx, id, &t, 1), fn, args, n);
}

/* a * b + c, fused where the target has FMA */
static LLVMValueRef fmuladd(Cg *cg, LLVMValueRef a, LLVMValueRef b, LLVMValueRef c) {
    LLVMValueRef args[3] = {a, b, c};
    return intrinsic_n(cg, "llvm.fmuladd", args, 3);
}

static LLVMValueRef f32c(Cg *cg, double v) { return LLVMConstReal(cg->t_f32, v); }

/* p(r) = c[0] r^(n-1) + ... + c[n-1], by Horner */
static LLVMValueRef horner(Cg *cg, LLVMValueRef r, const double *c, int n) {
    LLVMValueRef p = f32c(cg, c[0]);
    for (int i = 1; i < n; i++) p = fmuladd(cg, p, r, f32c(cg, c[i]));
    return p;
}

/* 2^k for an i32 k in [-126, 127], built as the float's bits */
static LLVMValueRef pow2_i32(Cg *cg, LLVMValueRef k) {
    LLVMValueRef bits = LLVMBuildShl(cg->b, LLVMBuildAdd(cg->b, k, i32c(cg, 127), ""), i32c(cg, 23), "");
    return LLVMBuildBitCast(cg->b, bits, cg->t_f32, "");
}

/* e^x in f32: n = rint(x log2 e), r = x - n ln 2 (in two parts, exact), e^r by a degree-7
 * polynomial on |r| <= ln2/2, times 2^n applied as two factors 2^(n/2) so that results
 * down to the subnormals come out right. x is clamped to [-104, 88.73] first (beyond:
 * 0 and +inf); a NaN comes back as itself. */
static LLVMValueRef fast_exp_f32(Cg *cg, LLVMValueRef x) {
    static const double P[] = {1.9875691500E-4, 1.3981999507E-3, 8.3334519073E-3, 4.1665795894E-2,
                               1.6666665459E-1, 5.0000001201E-1};
    LLVMValueRef hi = f32c(cg, 88.73), lo = f32c(cg, -104.0);
    LLVMValueRef xc = sel(cg, f_gt(cg, x, hi), hi, sel(cg, f_lt(cg, x, lo), lo, x));
    LLVMValueRef n = intrinsic1(cg, "llvm.rint", f_mul(cg, xc, f32c(cg, 1.44269504088896341)));
    LLVMValueRef r = fmuladd(cg, n, f32c(cg, -0.693359375), xc);
    r = fmuladd(cg, n, f32c(cg, 2.12194440e-4), r);
    LLVMValueRef y = f_add(cg, fmuladd(cg, horner(cg, r, P, 6), f_mul(cg, r, r), r), f32c(cg, 1));
    LLVMValueRef k = LLVMBuildFPToSI(cg->b, sel(cg, LLVMBuildFCmp(cg->b, LLVMRealUNO, n, n, ""), f32c(cg, 0), n),
                                     cg->t_i32, "");
    LLVMValueRef k1 = LLVMBuildAShr(cg->b, k, i32c(cg, 1), ""), k2 = LLVMBuildSub(cg->b, k, k1, "");
    LLVMValueRef e = f_mul(cg, f_mul(cg, y, pow2_i32(cg, k1)), pow2_i32(cg, k2));
    return sel(cg, LLVMBuildFCmp(cg->b, LLVMRealUNO, x, x, ""), x, e);
}

/* tanh in f32: x + x^3 p(x^2) for |x| < 0.625 (no cancellation near 0), else
 * sign(x) (1 - 2 / (e^(2|x|) + 1)), which is 1 once e^(2|x|) overflows. */
static LLVMValueRef fast_tanh_f32(Cg *cg, LLVMValueRef x) {
    static const double P[] = {-5.70498872745E-3, 2.06390887954E-2, -5.37397155531E-2, 1.33314422036E-1,
                               -3.33332819422E-1};
    LLVMValueRef a = intrinsic1(cg, "llvm.fabs", x), z = f_mul(cg, x, x);
    LLVMValueRef small = fmuladd(cg, f_mul(cg, horner(cg, z, P, 5), z), x, x);
    LLVMValueRef e = fast_exp_f32(cg, f_add(cg, a, a));
    LLVMValueRef big = f_sub(cg, f32c(cg, 1), f_div(cg, f32c(cg, 2), f_add(cg, e, f32c(cg, 1))));
    /* the sign of x on both (the polynomial's x + x^3 p would turn -0 into +0) */
    LLVMValueRef args[2] = {sel(cg, f_lt(cg, a, f32c(cg, 0.625)), small, big), x};
    return intrinsic_n(cg, "llvm.copysign", args, 2);
}

/* e^x: inline in f32, libm in f64 */
static LLVMValueRef exp_of(Cg *cg, DType dt, LLVMValueRef x) {
    return dt == DT_F32 ? fast_exp_f32(cg, x) : libm1(cg, "exp", dt, x);
}

static LLVMValueRef tanh_of(Cg *cg, DType dt, LLVMValueRef x) {
    return dt == DT_F32 ? fast_tanh_f32(cg, x) : libm1(cg, "tanh", dt, x);
}

/* 1 / (1 + e^-x), as e^x / (1 + e^x) for x < 0 (no overflow) */
static LLVMValueRef sigmoid(Cg *cg, DType dt, LLVMValueRef x) {
    LLVMValueRef one = fpc(cg, dt, 1);
    /* f32: 1 / (1 + e^-x) directly (e^-x = +inf gives 0; no division of two exps) */
    if (dt == DT_F32) return f_div(cg, one, f_add(cg, one, fast_exp_f32(cg, LLVMBuildFNeg(cg->b, x, ""))));
    LLVMValueRef e = libm1(cg, "exp", dt, LLVMBuildFNeg(cg->b, intrinsic1(cg, "llvm.fabs", x), ""));
    LLVMValueRef pos = f_div(cg, one, f_add(cg, one, e)), neg = f_div(cg, e, f_add(cg, one, e));
    return sel(cg, f_lt(cg, x, fpc(cg, dt, 0)), neg, pos);
}

/* log(1 + e^x) without overflow: x + log1p(e^-x) for x > 0 */
static LLVMValueRef log1p_exp(Cg *cg, DType dt, LLVMValueRef x) {
    LLVMValueRef e = libm1(cg, "exp", dt, LLVMBuildFNeg(cg->b, intrinsic1(cg, "llvm.fabs", x), ""));
    LLVMValueRef l = libm1(cg, "log1p", dt, e);
    return sel(cg, f_gt(cg, x, fpc(cg, dt, 0)), f_add(cg, x, l), l);
}

/* As interp.c: leaky_relu's slope and elu's alpha are attr.f[0] as written (sema sets them);
 * a zero softplus beta or threshold means PyTorch's default. */
static double leaky_slope(const Attr *a) { return a->f[0]; }
static double elu_alpha(const Attr *a) { return a->f[0]; }
static double softplus_beta(const Attr *a) { return a->f[0] != 0 ? a->f[0] : 1.0; }
static double softplus_threshold(const Attr *a) { return a->f[1] != 0 ? a->f[1] : 20.0; }

/* min(max(v, 0), 6), NaN propagating */
static LLVMValueRef relu6(Cg *cg, DType dt, LLVMValueRef v) {
    return sel(cg, f_lt(cg, v, fpc(cg, dt, 0)), fpc(cg, dt, 0), sel(cg, f_gt(cg, v, fpc(cg, dt, 6)), fpc(cg, dt, 6), v));
}

static const double SELU_ALPHA = 1.6732632423543772, SELU_SCALE = 1.0507009873554805;
static const double SQRT1_2 = 0.70710678118654752440, SQRT_2_PI = 0.79788456080286535588,
                    INV_SQRT_2PI = 0.39894228040143267794, GELU_C = 0.044715;

/* f(x) of an activation op (formulas of interp.c) */
static LLVMValueRef activation(Cg *cg, Op op, const Attr *a, DType dt, LLVMValueRef x) {
    LLVMValueRef zero = fpc(cg, dt, 0), one = fpc(cg, dt, 1), half = fpc(cg, dt, 0.5);
    switch (op) {
    case OP_relu: return sel(cg, f_lt(cg, x, zero), zero, x);
    case OP_leaky_relu: return sel(cg, f_gt(cg, x, zero), x, f_mul(cg, fpc(cg, dt, leaky_slope(a)), x));
    case OP_elu:
        return sel(cg, f_gt(cg, x, zero), x, f_mul(cg, fpc(cg, dt, elu_alpha(a)), libm1(cg, "expm1", dt, x)));
    case OP_selu:
        return f_mul(cg, fpc(cg, dt, SELU_SCALE),
                     sel(cg, f_gt(cg, x, zero), x, f_mul(cg, fpc(cg, dt, SELU_ALPHA), libm1(cg, "expm1", dt, x))));
    case OP_gelu:
        if (a->flag) { /* x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
            LLVMValueRef x3 = f_mul(cg, f_mul(cg, x, x), x);
            LLVMValueRef u = f_mul(cg, fpc(cg, dt, SQRT_2_PI), f_add(cg, x, f_mul(cg, fpc(cg, dt, GELU_C), x3)));
            return f_mul(cg, f_mul(cg, half, x), f_add(cg, one, tanh_of(cg, dt, u)));
        }
        /* x/2 (1 + erf(x/sqrt 2)) = x/2 erfc(-x/sqrt 2), no cancellation for x << 0 */
        return f_mul(cg, f_mul(cg, half, x), libm1(cg, "erfc", dt, f_mul(cg, x, fpc(cg, dt, -SQRT1_2))));
    case OP_sigmoid: return sigmoid(cg, dt, x);
    case OP_tanh: return tanh_of(cg, dt, x);
    case OP_softplus: { /* log(1 + e^(b x)) / b, x when b x > threshold */
        LLVMValueRef bx = f_mul(cg, fpc(cg, dt, softplus_beta(a)), x);
        LLVMValueRef soft = f_div(cg, log1p_exp(cg, dt, bx), fpc(cg, dt, softplus_beta(a)));
        return sel(cg, f_gt(cg, bx, fpc(cg, dt, softplus_threshold(a))), x, soft);
    }
    case OP_silu: return f_mul(cg, x, sigmoid(cg, dt, x));
    case OP_mish: return f_mul(cg, x, tanh_of(cg, dt, log1p_exp(cg, dt, x)));
    case OP_hard_sigmoid: return f_div(cg, relu6(cg, dt, f_add(cg, x, fpc(cg, dt, 3))), fpc(cg, dt, 6));
    case OP_hard_swish: return f_div(cg, f_mul(cg, x, relu6(cg, dt, f_add(cg, x, fpc(cg, dt, 3)))), fpc(cg, dt, 6));
    default: return NULL;
    }
}

/* f'(x) of an activation op, with PyTorch's choices at the kinks (as interp.c) */
static LLVMValueRef activation_grad(Cg *cg, Op op, const Attr *a, DType dt, LLVMValueRef x) {
    LLVMValueRef zero = fpc(cg, dt, 0), one = fpc(cg, dt, 1), half = fpc(cg, dt, 0.5);
    switch (op) {
    case OP_relu: return sel(cg, f_gt(cg, x, zero), one, zero);
    case OP_leaky_relu: return sel(cg, f_gt(cg, x, zero), one, fpc(cg, dt, leaky_slope(a)));
    case OP_elu: return sel(cg, f_gt(cg, x, zero), one, f_mul(cg, fpc(cg, dt, elu_alpha(a)), exp_of(cg, dt, x)));
    case OP_selu:
        return f_mul(cg, fpc(cg, dt, SELU_SCALE),
                     sel(cg, f_gt(cg, x, zero), one, f_mul(cg, fpc(cg, dt, SELU_ALPHA), exp_of(cg, dt, x))));
    case OP_gelu:
        if (a->flag) {
            /* u = c (x + k x^3): 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) c (1 + 3 k x^2) */
            LLVMValueRef x2 = f_mul(cg, x, x);
            LLVMValueRef u = f_mul(cg, fpc(cg, dt, SQRT_2_PI), f_add(cg, x, f_mul(cg, fpc(cg, dt, GELU_C), f_mul(cg, x2, x))));
            LLVMValueRef t = tanh_of(cg, dt, u);
            LLVMValueRef du = f_mul(cg, fpc(cg, dt, SQRT_2_PI), f_add(cg, one, f_mul(cg, fpc(cg, dt, 3 * GELU_C), x2)));
            return f_add(cg, f_mul(cg, half, f_add(cg, one, t)),
                         f_mul(cg, f_mul(cg, f_mul(cg, half, x), f_sub(cg, one, f_mul(cg, t, t))), du));
        }
        /* Phi(x) + x phi(x) = erfc(-x/sqrt 2)/2 + x e^(-x^2/2) / sqrt(2 pi) */
        return f_add(cg, f_mul(cg, half, libm1(cg, "erfc", dt, f_mul(cg, x, fpc(cg, dt, -SQRT1_2)))),
                     f_mul(cg, f_mul(cg, x, exp_of(cg, dt, f_mul(cg, fpc(cg, dt, -0.5), f_mul(cg, x, x)))),
                           fpc(cg, dt, INV_SQRT_2PI)));
    case OP_sigmoid: {
        LLVMValueRef s = sigmoid(cg, dt, x);
        return f_mul(cg, s, f_sub(cg, one, s));
    }
    case OP_tanh: {
        LLVMValueRef t = tanh_of(cg, dt, x);
        return f_sub(cg, one, f_mul(cg, t, t));
    }
    case OP_softplus: {
        LLVMValueRef bx = f_mul(cg, fpc(cg, dt, softplus_beta(a)), x);
        return sel(cg, f_gt(cg, bx, fpc(cg, dt, softplus_threshold(a))), one, sigmoid(cg, dt, bx));
    }
    case OP_silu: { /* s (1 + x (1 - s)) */
        LLVMValueRef s = sigmoid(cg, dt, x);
        return f_mul(cg, s, f_add(cg, one, f_mul(cg, x, f_sub(cg, one, s))));
    }
    case OP_mish: { /* t + x s (1 - t^2), t = tanh(softplus x), s = sigmoid x */
        LLVMValueRef t = tanh_of(cg, dt, log1p_exp(cg, dt, x));
        return f_add(cg, t, f_mul(cg, f_mul(cg, x, sigmoid(cg, dt, x)), f_sub(cg, one, f_mul(cg, t, t))));
    }
    case OP_hard_sigmoid:
        return sel(cg, LLVMBuildAnd(cg->b, f_gt(cg, x, fpc(cg, dt, -3)), f_lt(cg, x, fpc(cg, dt, 3)), ""),
                   fpc(cg, dt, 1.0 / 6), zero);
    case OP_hard_swish: /* PyTorch's backward kernel */
        return sel(cg, f_lt(cg, x, fpc(cg, dt, -3)), zero,
                   sel(cg, LLVMBuildFCmp(cg->b, LLVMRealOLE, x, fpc(cg, dt, 3), ""),
                       f_add(cg, f_div(cg, x, fpc(cg, dt, 3)), half), one));
    default: return NULL;
    }
}

/* i32 a / b truncating; 0 when b == 0, -a when b == -1 (no undefined behaviour) */
static LLVMValueRef safe_sdiv(Cg *cg, LLVMValueRef a, LLVMValueRef b) {
    LLVMValueRef zero = i32c(cg, 0), one = i32c(cg, 1), minus = i32c(cg, -1);
    LLVMValueRef bz = LLVMBuildICmp(cg->b, LLVMIntEQ, b, zero, "");
    LLVMValueRef bm = LLVMBuildICmp(cg->b, LLVMIntEQ, b, minus, "");
    LLVMValueRef d = sel(cg, LLVMBuildOr(cg->b, bz, bm, ""), one, b);
    LLVMValueRef q = LLVMBuildSDiv(cg->b, a, d, "");
    return sel(cg, bz, zero, sel(cg, bm, LLVMBuildSub(cg->b, zero, a, ""), q));
}

/* Applies elementwise op n to scalar operand values. */
static LLVMValueRef elementwise_op(Cg *cg, const Node *n, const DType *in_dt, LLVMValueRef *x) {
    DType dt = n->dtype;
    bool fl = is_float(dt);
    LLVMBuilderRef b = cg->b;
    static const Op int_ops[] = {OP_add, OP_sub, OP_mul, OP_div, OP_maximum, OP_minimum, OP_neg, OP_abs,
                                 OP_sign, OP_select, OP_cast, OP_stop_gradient, OP_floor};
    bool int_ok = (op_info[n->op].flags & OPF_CMP) != 0;
    for (size_t i = 0; i < sizeof int_ops / sizeof int_ops[0]; i++) int_ok |= n->op == int_ops[i];
    if (!fl && !int_ok) {
        cg_error(cg, "op '%s' does not take i32 values", op_info[n->op].name);
        return LLVMGetUndef(ty(cg, dt));
    }
    switch (n->op) {
    case OP_add: return fl ? f_add(cg, x[0], x[1]) : LLVMBuildAdd(b, x[0], x[1], "");
    case OP_sub: return fl ? f_sub(cg, x[0], x[1]) : LLVMBuildSub(b, x[0], x[1], "");
    case OP_mul: return fl ? f_mul(cg, x[0], x[1]) : LLVMBuildMul(b, x[0], x[1], "");
    case OP_div: return fl ? f_div(cg, x[0], x[1]) : safe_sdiv(cg, x[0], x[1]);
    case OP_pow: return libm2(cg, "pow", dt, x[0], x[1]);
    case OP_maximum: /* a >= b ? a : b, a NaN propagates */
    case OP_minimum: {
        bool max = n->op == OP_maximum;
        if (!fl) return sel(cg, LLVMBuildICmp(b, max ? LLVMIntSGE : LLVMIntSLE, x[0], x[1], ""), x[0], x[1]);
        LLVMValueRef pick = sel(cg, LLVMBuildFCmp(b, max ? LLVMRealOGE : LLVMRealOLE, x[0], x[1], ""), x[0], x[1]);
        return sel(cg, LLVMBuildFCmp(b, LLVMRealUNO, x[0], x[1], ""), f_add(cg, x[0], x[1]), pick);
    }
    case OP_eq: return fcmp_to(cg, LLVMRealOEQ, x[0], x[1], in_dt[0], dt);
    case OP_ne: return fcmp_to(cg, LLVMRealUNE, x[0], x[1], in_dt[0], dt);
    case OP_lt: return fcmp_to(cg, LLVMRealOLT, x[0], x[1], in_dt[0], dt);
    case OP_le: return fcmp_to(cg, LLVMRealOLE, x[0], x[1], in_dt[0], dt);
    case OP_gt: return fcmp_to(cg, LLVMRealOGT, x[0], x[1], in_dt[0], dt);
    case OP_ge: return fcmp_to(cg, LLVMRealOGE, x[0], x[1], in_dt[0], dt);
    case OP_select: {
        LLVMValueRef c = in_dt[0] == DT_I32 ? LLVMBuildICmp(b, LLVMIntNE, x[0], i32c(cg, 0), "")
                                            : LLVMBuildFCmp(b, LLVMRealUNE, x[0], fpc(cg, in_dt[0], 0), "");
        return sel(cg, c, x[1], x[2]);
    }
    case OP_neg: return fl ? LLVMBuildFNeg(b, x[0], "") : LLVMBuildSub(b, i32c(cg, 0), x[0], "");
    case OP_exp: return exp_of(cg, dt, x[0]);
    case OP_log: return libm1(cg, "log", dt, x[0]);
    case OP_sqrt: return intrinsic1(cg, "llvm.sqrt", x[0]);
    case OP_abs:
        return fl ? intrinsic1(cg, "llvm.fabs", x[0])
                  : sel(cg, LLVMBuildICmp(b, LLVMIntSLT, x[0], i32c(cg, 0), ""),
                        LLVMBuildSub(b, i32c(cg, 0), x[0], ""), x[0]);
    case OP_sign:
        if (!fl)
            return sel(cg, LLVMBuildICmp(b, LLVMIntSGT, x[0], i32c(cg, 0), ""), i32c(cg, 1),
                       sel(cg, LLVMBuildICmp(b, LLVMIntSLT, x[0], i32c(cg, 0), ""), i32c(cg, -1), i32c(cg, 0)));
        /* keeps +-0 and NaN */
        return sel(cg, f_gt(cg, x[0], fpc(cg, dt, 0)), fpc(cg, dt, 1),
                   sel(cg, f_lt(cg, x[0], fpc(cg, dt, 0)), fpc(cg, dt, -1), x[0]));
    case OP_floor: return fl ? intrinsic1(cg, "llvm.floor", x[0]) : x[0];
    case OP_cos: return libm1(cg, "cos", dt, x[0]);
    case OP_erf: return libm1(cg, "erf", dt, x[0]);
    case OP_cast: {
        DType from = in_dt[0];
        if (from == dt) return x[0];
        if (from == DT_I32) return LLVMBuildSIToFP(b, x[0], ty(cg, dt), "");
        if (dt == DT_I32) { /* truncating, saturating, NaN -> 0 */
            LLVMTypeRef types[2] = {cg->t_i32, LLVMTypeOf(x[0])};
            unsigned id = LLVMLookupIntrinsicID("llvm.fptosi.sat", 15);
            return call(cg, LLVMIntrinsicGetType(cg->ctx, id, types, 2),
                        LLVMGetIntrinsicDeclaration(cg->mod, id, types, 2), x, 1);
        }
        return dt == DT_F64 ? LLVMBuildFPExt(b, x[0], cg->t_f64, "") : LLVMBuildFPTrunc(b, x[0], cg->t_f32, "");
    }
    case OP_stop_gradient: return x[0];
    case OP_act_grad: {
        LLVMValueRef d = activation_grad(cg, (Op)n->attr.fwd_op, &n->attr, dt, x[0]);
        return d ? f_mul(cg, x[1], d) : NULL;
    }
    default: return activation(cg, n->op, &n->attr, dt, x[0]);
    }
}

static bool broadcast_is_splat(Cg *cg, const Node *n);

/* The value of element ix of node v, computed from v's inputs (v's own memory unused). */
static LLVMValueRef compute_at(Cg *cg, Ref v, const Index *ix) {
    const Node *n = &cg->f->nodes[v];
    switch (n->op) {
    case OP_const: return fpc(cg, n->dtype, n->attr.f[0]);
    case OP_batch_size:
        return n->dtype == DT_I32 ? LLVMBuildTrunc(cg->b, cg->n64, cg->t_i32, "")
                                  : LLVMBuildSIToFP(cg->b, cg->n64, ty(cg, n->dtype), "");
    case OP_broadcast: {
        const Shape *xs = &cg->f->nodes[n->in[0]].shape;
        if (ix->flat) { /* a single value (broadcast_is_splat): its only element */
            Index xi = {.flat = true, .lin = i64c(cg, 0)};
            return value_at(cg, n->in[0], &xi);
        }
        Index xi = {.flat = false};
        for (int j = 0; j < xs->rank; j++) {
            int vj = j + n->shape.rank - xs->rank;
            bool repeat = xs->dim[j] == 1 && !(xs->batch_mask >> j & 1); /* a size-1 axis repeats */
            xi.at[j] = repeat ? i64c(cg, 0) : ix->at[vj];
        }
        return value_at(cg, n->in[0], &xi);
    }
    case OP_transpose: {
        Index xi = {.flat = false};
        for (int i = 0; i < n->shape.rank; i++) xi.at[n->attr.perm[i]] = ix->at[i];
        return value_at(cg, n->in[0], &xi);
    }
    case OP_slice: {
        Index xi = {.flat = false};
        for (int i = 0; i < n->shape.rank; i++)
            xi.at[i] = add64(cg, i64c(cg, n->attr.start[i]), mul64(cg, ix->at[i], i64c(cg, n->attr.step[i])));
        return value_at(cg, n->in[0], &xi);
    }
    default: break;
    }
    LLVMValueRef x[IR_MAX_INPUTS] = {0};
    DType dts[IR_MAX_INPUTS] = {0};
    for (int i = 0; i < n->nin; i++) {
        x[i] = value_at(cg, n->in[i], ix);
        dts[i] = cg->f->nodes[n->in[i]].dtype;
    }
    LLVMValueRef r = elementwise_op(cg, n, dts, x);
    if (!r) {
        cg_error(cg, "the LLVM backend does not support op '%s' yet", op_info[n->op].name);
        return LLVMGetUndef(ty(cg, n->dtype));
    }
    return r;
}

static LLVMValueRef value_at(Cg *cg, Ref v, const Index *ix) {
    const Node *n = &cg->f->nodes[v];
    if (cg->plan.nodes[v].storage == ST_INLINE) return compute_at(cg, v, ix);
    return load_at(cg, n->dtype, node_ptr(cg, v), linear_index(cg, &n->shape, ix));
}

/* A broadcast of one value (a scalar, or all axes of size 1 without the batch) reads the
 * same element everywhere: it needs no per-axis indices. */
static bool broadcast_is_splat(Cg *cg, const Node *n) {
    const Shape *xs = &cg->f->nodes[n->in[0]].shape;
    if (n->op != OP_broadcast || xs->batch_mask) return false;
    for (int j = 0; j < xs->rank; j++)
        if (xs->dim[j] != 1) return false;
    return true;
}

/* Whether the fused expression of v reads anything through a view (then it needs per-axis
 * indices; otherwise one flat loop covers it). */
static bool fused_has_view(Cg *cg, Ref v, bool root) {
    const Node *n = &cg->f->nodes[v];
    if (!root && cg->plan.nodes[v].storage != ST_INLINE) return false;
    if (is_view(n->op) && !broadcast_is_splat(cg, n)) return true;
    for (int i = 0; i < n->nin; i++)
        if (fused_has_view(cg, n->in[i], false)) return true;
    return false;
}

/* Materializes an elementwise node, a view, or a constant: one loop (nest) over its shape. */
static void emit_elementwise(Cg *cg, Ref v) {
    const Node *n = &cg->f->nodes[v];
    LLVMValueRef out = node_ptr(cg, v);
    if (!fused_has_view(cg, v, true)) {
        Index ix = {.flat = true};
        if (n->shape.rank == 0) {
            ix.lin = i64c(cg, 0);
            store_at(cg, n->dtype, compute_at(cg, v, &ix), out, ix.lin);
            return;
        }
        Loop l = loop_begin(cg, numel_value(cg, &n->shape), "elem");
        ix.lin = l.iv;
        store_at(cg, n->dtype, compute_at(cg, v, &ix), out, l.iv);
        loop_end(cg, &l);
        return;
    }
    Index ix = {.flat = false};
    Loop loops[IR_MAX_RANK];
    for (int k = 0; k < n->shape.rank; k++) {
        loops[k] = loop_begin(cg, dim_value(cg, &n->shape, k), "nest");
        ix.at[k] = loops[k].iv;
    }
    store_at(cg, n->dtype, compute_at(cg, v, &ix), out, linear_index(cg, &n->shape, &ix));
    loop_end_row(cg, &loops[n->shape.rank - 1]);
    for (int k = n->shape.rank - 2; k >= 0; k--) loop_end(cg, &loops[k]);
}

/* ================================================================ kernels */

static const Node *in_node(Cg *cg, const Node *n, int i) { return &cg->f->nodes[n->in[i]]; }


static LLVMValueRef reduce_identity(Cg *cg, Op op, DType acc_dt) {
    if (op != OP_max) return fpc(cg, acc_dt, 0);
    return acc_dt == DT_I32 ? i32c(cg, INT32_MIN) : LLVMConstReal(ty(cg, acc_dt), -INFINITY);
}

static LLVMValueRef reduce_combine(Cg *cg, Op op, DType acc_dt, LLVMValueRef acc, LLVMValueRef x) {
    if (op == OP_max) /* a NaN sticks */
        return acc_dt == DT_I32 ? sel(cg, LLVMBuildICmp(cg->b, LLVMIntSGT, x, acc, ""), x, acc)
                                : max_nan(cg, acc, x);
    return acc_dt == DT_I32 ? LLVMBuildAdd(cg->b, acc, x, "") : reassoc(f_add(cg, acc, x));
}

/* sum, mean (in double) and max over attr.axes.
 * The trailing block of reduced axes is contiguous: each output element's share of it is
 * reduced in a register. Reduced axes before it (e.g. the batch axis of a bias gradient)
 * accumulate into a double array in scratch, visited in input order so the inner loop runs
 * over a kept, contiguous axis. */
static void emit_reduce(Cg *cg, Ref v) {
    const Node *n = &cg->f->nodes[v];
    const Node *x = in_node(cg, n, 0);
    const Shape *s = &x->shape;
    uint32_t axes = n->attr.axes;
    Op op = n->op;
    DType acc_dt = op == OP_max ? x->dtype : (x->dtype == DT_I32 ? DT_I32 : DT_F64);
    LLVMTypeRef acc_t = ty(cg, acc_dt);
    int inner = reduce_inner_start(s, axes);
    bool outer_reduced = (axes & ((1u << inner) - 1)) != 0;
    LLVMValueRef inner_count = dims_product(cg, s, inner, s->rank);
    LLVMValueRef xp = node_ptr(cg, n->in[0]), out = node_ptr(cg, v);
    LLVMValueRef count = i64c(cg, 1);  /* reduced elements per output */
    for (int k = 0; k < s->rank; k++)
        if (axes >> k & 1) count = mul64(cg, count, dim_value(cg, s, k));
    LLVMValueRef acc_arr = outer_reduced ? byte_ptr(cg, cg->work, cg->plan.nodes[v].scratch_offset) : NULL;
    LLVMValueRef out_count = numel_value(cg, &n->shape);

    if (outer_reduced) {
        Loop l = loop_begin(cg, out_count, "acc0");
        store_at(cg, acc_dt, reduce_identity(cg, op, acc_dt), acc_arr, l.iv);
        loop_end(cg, &l);
    }
    /* loop over the outer axes, tracking the input offset and the output index */
    Loop loops[IR_MAX_RANK];
    LLVMValueRef in_off = i64c(cg, 0), out_off = i64c(cg, 0);
    for (int k = 0; k < inner; k++) {
        loops[k] = loop_begin(cg, dim_value(cg, s, k), "red");
        in_off = add64(cg, mul64(cg, in_off, dim_value(cg, s, k)), loops[k].iv);
        if (!(axes >> k & 1)) out_off = add64(cg, mul64(cg, out_off, dim_value(cg, s, k)), loops[k].iv);
    }
    in_off = mul64(cg, in_off, inner_count);
    LLVMValueRef part;
    if (inner < s->rank) {
        LLVMValueRef var = entry_alloca(cg, acc_t, "acc");
        LLVMBuildStore(cg->b, reduce_identity(cg, op, acc_dt), var);
        Loop l = loop_begin(cg, inner_count, "inner");
        LLVMValueRef e = load_at(cg, x->dtype, xp, add64(cg, in_off, l.iv));
        if (acc_dt == DT_F64) e = to_double(cg, x->dtype, e);
        LLVMBuildStore(cg->b, reduce_combine(cg, op, acc_dt, load_var(cg, acc_t, var), e), var);
        loop_end_row(cg, &l);
        part = load_var(cg, acc_t, var);
    } else {
        part = load_at(cg, x->dtype, xp, in_off);
        if (acc_dt == DT_F64) part = to_double(cg, x->dtype, part);
    }
    LLVMValueRef result_off = out_off;
    if (outer_reduced) {
        LLVMValueRef cur = load_at(cg, acc_dt, acc_arr, result_off);
        store_at(cg, acc_dt, reduce_combine(cg, op, acc_dt, cur, part), acc_arr, result_off);
    } else {
        if (op == OP_mean) part = f_div(cg, part, LLVMBuildSIToFP(cg->b, count, acc_t, ""));
        if (op == OP_mean && acc_dt == DT_I32) part = LLVMBuildSDiv(cg->b, part, LLVMBuildTrunc(cg->b, count, cg->t_i32, ""), "");
        store_at(cg, n->dtype, acc_dt == DT_F64 ? from_double(cg, n->dtype, part) : part, out, result_off);
    }
    for (int k = inner - 1; k >= 0; k--) loop_end(cg, &loops[k]);
    if (outer_reduced) {
        Loop l = loop_begin(cg, out_count, "fin");
        LLVMValueRef a = load_at(cg, acc_dt, acc_arr, l.iv);
        if (op == OP_mean && acc_dt == DT_F64) a = f_div(cg, a, LLVMBuildSIToFP(cg->b, count, acc_t, ""));
        if (op == OP_mean && acc_dt == DT_I32) a = LLVMBuildSDiv(cg->b, a, LLVMBuildTrunc(cg->b, count, cg->t_i32, ""), "");
        store_at(cg, n->dtype, acc_dt == DT_F64 ? from_double(cg, n->dtype, a) : a, out, l.iv);
        loop_end(cg, &l);
    }
}

static LLVMValueRef row_max_f32(Cg *cg, LLVMValueRef x, LLVMValueRef base, LLVMValueRef C, LLVMValueRef *has_nan);

/* index of the first maximum along attr.axis */
static void emit_argmax(Cg *cg, Ref v) {
    const Node *n = &cg->f->nodes[v];
    const Node *x = in_node(cg, n, 0);
    int axis = n->attr.axis;
    DType dt = x->dtype;
    LLVMValueRef outer = dims_product(cg, &x->shape, 0, axis), len = dim_value(cg, &x->shape, axis),
                 inner = dims_product(cg, &x->shape, axis + 1, x->shape.rank);
    LLVMValueRef best = entry_alloca(cg, ty(cg, dt), "best"), arg = entry_alloca(cg, cg->t_i64, "arg");
    if (dt == DT_F32 && x->shape.rank && axis == x->shape.rank - 1) {
        /* contiguous rows, in two vector loops: m = the row's max (NaN if it has one), then the
         * first index holding m (or the first NaN), as a min reduction over indices */
        Loop lo = loop_begin(cg, outer, "amax_o");
        LLVMValueRef base = mul64(cg, lo.iv, len), has_nan, xp = node_ptr(cg, n->in[0]);
        LLVMValueRef m = row_max_f32(cg, xp, base, len, &has_nan);
        LLVMBuildStore(cg->b, len, arg);
        Loop la = loop_begin(cg, len, "amax_a");
        LLVMValueRef e = load_at(cg, DT_F32, xp, add64(cg, base, la.iv));
        LLVMValueRef hit = sel(cg, has_nan, LLVMBuildFCmp(cg->b, LLVMRealUNO, e, e, ""),
                               LLVMBuildFCmp(cg->b, LLVMRealOEQ, e, m, ""));
        LLVMValueRef cur = load_var(cg, cg->t_i64, arg);
        LLVMValueRef cand = sel(cg, hit, la.iv, len);
        LLVMBuildStore(cg->b, sel(cg, LLVMBuildICmp(cg->b, LLVMIntSLT, cand, cur, ""), cand, cur), arg);
        loop_end_row(cg, &la);
        store_at(cg, DT_I32, LLVMBuildTrunc(cg->b, load_var(cg, cg->t_i64, arg), cg->t_i32, ""), node_ptr(cg, v), lo.iv);
        loop_end(cg, &lo);
        return;
    }
    Loop lo = loop_begin(cg, outer, "amax_o");
    Loop li = loop_begin(cg, inner, "amax_i");
    LLVMValueRef base = add64(cg, mul64(cg, mul64(cg, lo.iv, len), inner), li.iv);
    LLVMBuildStore(cg->b, load_at(cg, dt, node_ptr(cg, n->in[0]), base), best);
    LLVMBuildStore(cg->b, i64c(cg, 0), arg);
    Loop la = loop_begin(cg, len, "amax_a");
    LLVMValueRef e = load_at(cg, dt, node_ptr(cg, n->in[0]), add64(cg, base, mul64(cg, la.iv, inner)));
    LLVMValueRef cur = load_var(cg, ty(cg, dt), best);
    /* the first maximum; a NaN counts as the maximum */
    LLVMValueRef better = dt == DT_I32 ? LLVMBuildICmp(cg->b, LLVMIntSGT, e, cur, "")
                                       : LLVMBuildAnd(cg->b, LLVMBuildFCmp(cg->b, LLVMRealORD, cur, cur, ""),
                                                      LLVMBuildFCmp(cg->b, LLVMRealUGT, e, cur, ""), "");
    LLVMBuildStore(cg->b, sel(cg, better, e, cur), best);
    LLVMBuildStore(cg->b, sel(cg, better, la.iv, load_var(cg, cg->t_i64, arg)), arg);
    loop_end(cg, &la);
    store_at(cg, DT_I32, LLVMBuildTrunc(cg->b, load_var(cg, cg->t_i64, arg), cg->t_i32, ""), node_ptr(cg, v),
             add64(cg, mul64(cg, lo.iv, inner), li.iv));
    loop_end(cg, &li);
    loop_end(cg, &lo);
}

static LLVMValueRef to_i32(Cg *cg, LLVMValueRef v) { return LLVMBuildTrunc(cg->b, v, cg->t_i32, ""); }

/* a[..., M, K] @ b[..., K, N] through nnrt_sgemm (row-major, transposes as flags) */
static void emit_matmul(Cg *cg, Ref v) {
    const Node *n = &cg->f->nodes[v];
    const Node *a = in_node(cg, n, 0), *bn = in_node(cg, n, 1);
    if (n->dtype != DT_F32) {
        cg_error(cg, "the LLVM backend supports matmul of f32 values only (got %s)", dtype_names[n->dtype]);
        return;
    }
    int r = a->shape.rank;
    bool ta = n->attr.trans_a, tb = n->attr.trans_b;
    LLVMValueRef M = dim_value(cg, &n->shape, r - 2), N = dim_value(cg, &n->shape, r - 1);
    LLVMValueRef K = dim_value(cg, &a->shape, ta ? r - 2 : r - 1);
    LLVMValueRef L = dims_product(cg, &a->shape, 0, r - 2);
    LLVMValueRef lda = ta ? M : K, ldb = tb ? K : N;
    LLVMValueRef one = LLVMConstReal(cg->t_f32, 1), zero = LLVMConstReal(cg->t_f32, 0);
    if (bn->shape.rank == 2 && (!ta || r == 2)) {
        /* 2-D, or the leading axes of a fold into M: one gemm */
        LLVMValueRef args[] = {i32c(cg, ta), i32c(cg, tb), to_i32(cg, mul64(cg, L, M)), to_i32(cg, N),
                               to_i32(cg, K), one, node_ptr(cg, n->in[0]), to_i32(cg, lda), node_ptr(cg, n->in[1]),
                               to_i32(cg, ldb), zero, node_ptr(cg, v), to_i32(cg, N)};
        runtime_call(cg, RT_SGEMM, args, 13);
        return;
    }
    LLVMValueRef stride_b = bn->shape.rank == 2 ? i64c(cg, 0) : mul64(cg, K, N);
    LLVMValueRef args[] = {to_i32(cg, L), i32c(cg, ta), i32c(cg, tb), to_i32(cg, M), to_i32(cg, N),
                           to_i32(cg, K), one, node_ptr(cg, n->in[0]), to_i32(cg, lda), mul64(cg, M, K),
                           node_ptr(cg, n->in[1]), to_i32(cg, ldb), stride_b, zero, node_ptr(cg, v), to_i32(cg, N),
                           mul64(cg, M, N)};
    runtime_call(cg, RT_SGEMM_BATCHED, args, 17);
}

static void emit_concat(Cg *cg, Ref v) {
    const Node *n = &cg->f->nodes[v];
    int axis = n->attr.axis;
    LLVMValueRef outer = dims_product(cg, &n->shape, 0, axis);
    LLVMValueRef inner = dims_product(cg, &n->shape, axis + 1, n->shape.rank);
    LLVMValueRef out_row = mul64(cg, dim_value(cg, &n->shape, axis), inner);
    LLVMValueRef col = i64c(cg, 0);
    for (int i = 0; i < n->nin; i++) {
        LLVMValueRef rows = mul64(cg, dim_value(cg, &in_node(cg, n, i)->shape, axis), inner);
        Loop lo = loop_begin(cg, outer, "cat_o");
        Loop lk = loop_begin(cg, rows, "cat_k");
        LLVMValueRef e;
        if (cg->plan.nodes[n->in[i]].storage == ST_INLINE) { /* a constant piece */
            Index ix = {.flat = true, .lin = i64c(cg, 0)};
            e = compute_at(cg, n->in[i], &ix);
        } else {
            e = load_at(cg, n->dtype, node_ptr(cg, n->in[i]), add64(cg, mul64(cg, lo.iv, rows), lk.iv));
        }
        store_at(cg, n->dtype, e, node_ptr(cg, v), add64(cg, add64(cg, mul64(cg, lo.iv, out_row), col), lk.iv));
        loop_end(cg, &lk);
        loop_end(cg, &lo);
        col = add64(cg, col, rows);
    }
}

/* out[p, :] = table[idx[p], :], zeros for an index outside [0, V) */
static void emit_gather(Cg *cg, Ref v) {
    const Node *n = &cg->f->nodes[v];
    const Node *table = in_node(cg, n, 0), *idx = in_node(cg, n, 1);
    LLVMValueRef rows = dim_value(cg, &table->shape, 0);
    LLVMValueRef width = dims_product(cg, &table->shape, 1, table->shape.rank);
    Loop lp = loop_begin(cg, numel_value(cg, &idx->shape), "gather");
    LLVMValueRef i = LLVMBuildSExt(cg->b, load_at(cg, DT_I32, node_ptr(cg, n->in[1]), lp.iv), cg->t_i64, "");
    LLVMValueRef ok = LLVMBuildAnd(cg->b, LLVMBuildICmp(cg->b, LLVMIntSGE, i, i64c(cg, 0), ""),
                                   LLVMBuildICmp(cg->b, LLVMIntSLT, i, rows, ""), "");
    LLVMValueRef src = mul64(cg, sel(cg, ok, i, i64c(cg, 0)), width), dst = mul64(cg, lp.iv, width);
    Loop lk = loop_begin(cg, width, "gather_k");
    LLVMValueRef e = load_at(cg, n->dtype, node_ptr(cg, n->in[0]), add64(cg, src, lk.iv));
    store_at(cg, n->dtype, sel(cg, ok, e, fpc(cg, n->dtype, 0)), node_ptr(cg, v), add64(cg, dst, lk.iv));
    loop_end(cg, &lk);
    loop_end(cg, &lp);
}

/* out = zeros[V, D...]; out[idx[p], :] += dy[p, :] for indices in [0, V) */
static void emit_scatter_add(Cg *cg, Ref v) {
    const Node *n = &cg->f->nodes[v];
    const Node *idx = in_node(cg, n, 0);
    LLVMValueRef rows = dim_value(cg, &n->shape, 0);
    LLVMValueRef width = dims_product(cg, &n->shape, 1, n->shape.rank);
    Loop lz = loop_begin(cg, numel_value(cg, &n->shape), "scatter0");
    store_at(cg, n->dtype, fpc(cg, n->dtype, 0), node_ptr(cg, v), lz.iv);
    loop_end(cg, &lz);
    Loop lp = loop_begin(cg, numel_value(cg, &idx->shape), "scatter");
    LLVMValueRef i = LLVMBuildSExt(cg->b, load_at(cg, DT_I32, node_ptr(cg, n->in[0]), lp.iv), cg->t_i64, "");
    LLVMValueRef ok = LLVMBuildAnd(cg->b, LLVMBuildICmp(cg->b, LLVMIntSGE, i, i64c(cg, 0), ""),
                                   LLVMBuildICmp(cg->b, LLVMIntSLT, i, rows, ""), "");
    LLVMBasicBlockRef join = if_begin(cg, ok);
    LLVMValueRef dst = mul64(cg, i, width), src = mul64(cg, lp.iv, width);
    Loop lk = loop_begin(cg, width, "scatter_k");
    LLVMValueRef cur = load_at(cg, n->dtype, node_ptr(cg, v), add64(cg, dst, lk.iv));
    LLVMValueRef add = load_at(cg, n->dtype, node_ptr(cg, n->in[1]), add64(cg, src, lk.iv));
    store_at(cg, n->dtype, is_float(n->dtype) ? f_add(cg, cur, add) : LLVMBuildAdd(cg->b, cur, add, ""),
             node_ptr(cg, v), add64(cg, dst, lk.iv));
    loop_end(cg, &lk);
    if_end(cg, join);
    loop_end(cg, &lp);
}

/* Row helpers for last-axis kernels: rows = numel / C. */

/* max over row[0..C) of x (a NaN sticks) */
static LLVMValueRef row_max(Cg *cg, DType dt, LLVMValueRef x, LLVMValueRef base, LLVMValueRef C) {
    LLVMValueRef m = entry_alloca(cg, ty(cg, dt), "rmax");
    LLVMBuildStore(cg->b, LLVMConstReal(ty(cg, dt), -INFINITY), m);
    Loop l = loop_begin(cg, C, "rmax");
    LLVMValueRef e = load_at(cg, dt, x, add64(cg, base, l.iv));
    LLVMBuildStore(cg->b, max_nan(cg, load_var(cg, ty(cg, dt), m), e), m);
    loop_end(cg, &l);
    return load_var(cg, ty(cg, dt), m);
}

/* log sum_c e^x_c of one row in double, stable: m + log sum e^(x_c - m); m itself when it is
 * not finite (all -inf, an +inf or a NaN), as interp.c */
static LLVMValueRef row_logsumexp(Cg *cg, DType dt, LLVMValueRef x, LLVMValueRef base, LLVMValueRef C) {
    LLVMValueRef m = to_double(cg, dt, row_max(cg, dt, x, base, C));
    LLVMValueRef s = entry_alloca(cg, cg->t_f64, "rsum");
    LLVMBuildStore(cg->b, LLVMConstReal(cg->t_f64, 0), s);
    Loop l = loop_begin(cg, C, "rlse");
    LLVMValueRef d = f_sub(cg, to_double(cg, dt, load_at(cg, dt, x, add64(cg, base, l.iv))), m);
    LLVMBuildStore(cg->b, reassoc(f_add(cg, load_var(cg, cg->t_f64, s), libm1(cg, "exp", DT_F64, d))), s);
    loop_end(cg, &l);
    LLVMValueRef finite = LLVMBuildFCmp(cg->b, LLVMRealOLT, intrinsic1(cg, "llvm.fabs", m),
                                        LLVMConstReal(cg->t_f64, INFINITY), "");
    return sel(cg, finite, f_add(cg, m, libm1(cg, "log", DT_F64, load_var(cg, cg->t_f64, s))), m);
}

/* sum over row[0..C) of f(c) in double, f given as a callback-free pair of loads */
static LLVMValueRef row_dot(Cg *cg, DType dt, LLVMValueRef a, LLVMValueRef b, LLVMValueRef base, LLVMValueRef C) {
    LLVMValueRef s = entry_alloca(cg, cg->t_f64, "rdot");
    LLVMBuildStore(cg->b, LLVMConstReal(cg->t_f64, 0), s);
    Loop l = loop_begin(cg, C, "rdot");
    LLVMValueRef e = to_double(cg, dt, load_at(cg, dt, a, add64(cg, base, l.iv)));
    if (b) e = f_mul(cg, e, to_double(cg, dt, load_at(cg, dt, b, add64(cg, base, l.iv))));
    LLVMBuildStore(cg->b, reassoc(f_add(cg, load_var(cg, cg->t_f64, s), e)), s);
    loop_end(cg, &l);
    return load_var(cg, cg->t_f64, s);
}

/* f32 rows, in vector loops: m = max_c x_c (NaN when a NaN is in the row: llvm.maxnum, which
 * vectorizes, skips NaNs, so they are counted apart), s = sum_c e^(x_c - m) with the inline exp, and
 * whether m is finite. Then
 *   logsumexp = m + log s,  softmax_c = e^(x_c - m) / s,  log_softmax_c = (x_c - m) - log s
 * with no cancellation where x_c is close to m; when m is not finite (all -inf, an +inf, a
 * NaN), logsumexp is m itself, as in the f64 path and interp.c. */
typedef struct RowStats {
    LLVMValueRef m, s, finite;
} RowStats;

/* maxnum(a, b) flagged nnan nsz, which lets the loop vectorizer take it as a max reduction.
 * Callers must not rely on its NaN or signed-zero results: row_stats_f32 replaces m when the
 * row has a NaN, and e^(x - m) does not see the sign of a zero m. */
static LLVMValueRef maxnum(Cg *cg, LLVMValueRef a, LLVMValueRef b) {
    LLVMValueRef args[2] = {a, b};
    LLVMValueRef r = intrinsic_n(cg, "llvm.maxnum", args, 2);
    LLVMSetFastMathFlags(r, LLVMFastMathNoNaNs | LLVMFastMathNoSignedZeros);
    return r;
}

/* max over row[0..C) of x in f32, NaN when the row has one (*has_nan then true) */
static LLVMValueRef row_max_f32(Cg *cg, LLVMValueRef x, LLVMValueRef base, LLVMValueRef C, LLVMValueRef *has_nan) {
    LLVMValueRef m = entry_alloca(cg, cg->t_f32, "rmax");
    LLVMBuildStore(cg->b, f32c(cg, -INFINITY), m);
    LLVMValueRef nan = entry_alloca(cg, cg->t_i32, "rnan");
    LLVMBuildStore(cg->b, i32c(cg, 0), nan);
    Loop l = loop_begin(cg, C, "rmax");
    LLVMValueRef e = load_at(cg, DT_F32, x, add64(cg, base, l.iv));
    LLVMBuildStore(cg->b, maxnum(cg, load_var(cg, cg->t_f32, m), e), m);
    LLVMValueRef isnan = LLVMBuildZExt(cg->b, LLVMBuildFCmp(cg->b, LLVMRealUNO, e, e, ""), cg->t_i32, "");
    LLVMBuildStore(cg->b, LLVMBuildOr(cg->b, load_var(cg, cg->t_i32, nan), isnan, ""), nan);
    loop_end_row(cg, &l);
    *has_nan = LLVMBuildICmp(cg->b, LLVMIntNE, load_var(cg, cg->t_i32, nan), i32c(cg, 0), "");
    return sel(cg, *has_nan, f32c(cg, NAN), load_var(cg, cg->t_f32, m));
}

static RowStats row_stats_f32(Cg *cg, LLVMValueRef x, LLVMValueRef base, LLVMValueRef C) {
    RowStats r;
    LLVMValueRef has_nan;
    /* a NaN anywhere makes m NaN (not finite): the whole row comes out NaN, as interp.c */
    r.m = row_max_f32(cg, x, base, C, &has_nan);
    LLVMValueRef s = entry_alloca(cg, cg->t_f32, "rsum");
    LLVMBuildStore(cg->b, f32c(cg, 0), s);
    Loop l = loop_begin(cg, C, "rsum");
    LLVMValueRef e = fast_exp_f32(cg, f_sub(cg, load_at(cg, DT_F32, x, add64(cg, base, l.iv)), r.m));
    LLVMBuildStore(cg->b, reassoc(f_add(cg, load_var(cg, cg->t_f32, s), e)), s);
    loop_end_row(cg, &l);
    r.s = load_var(cg, cg->t_f32, s);
    r.finite = LLVMBuildFCmp(cg->b, LLVMRealOLT, intrinsic1(cg, "llvm.fabs", r.m), f32c(cg, INFINITY), "");
    return r;
}

/* 1 / s, or 1 when m is not finite (softmax_c = e^(x_c - m) then, as e^(x_c - logsumexp)) */
static LLVMValueRef row_inv_sum(Cg *cg, const RowStats *r) {
    return sel(cg, r->finite, f_div(cg, f32c(cg, 1), r->s), f32c(cg, 1));
}

/* log s, or 0 when m is not finite */
static LLVMValueRef row_log_sum(Cg *cg, const RowStats *r) {
    return sel(cg, r->finite, libm1(cg, "log", DT_F32, r->s), f32c(cg, 0));
}

/* sum over row[0..C) of a_c (b_c) in f32, reassociated into vector lanes */
static LLVMValueRef row_dot_f32(Cg *cg, LLVMValueRef a, LLVMValueRef b, LLVMValueRef base, LLVMValueRef C) {
    LLVMValueRef s = entry_alloca(cg, cg->t_f32, "rdot");
    LLVMBuildStore(cg->b, f32c(cg, 0), s);
    Loop l = loop_begin(cg, C, "rdot");
    LLVMValueRef e = load_at(cg, DT_F32, a, add64(cg, base, l.iv));
    if (b) e = f_mul(cg, e, load_at(cg, DT_F32, b, add64(cg, base, l.iv)));
    LLVMBuildStore(cg->b, reassoc(f_add(cg, load_var(cg, cg->t_f32, s), e)), s);
    loop_end_row(cg, &l);
    return load_var(cg, cg->t_f32, s);
}

/* The softmax family in f32 (see row_stats_f32). */
static void emit_softmax_f32(Cg *cg, const Node *n, LLVMValueRef x, LLVMValueRef out, LLVMValueRef base,
                             LLVMValueRef C) {
    if (n->op == OP_softmax || n->op == OP_log_softmax) {
        RowStats r = row_stats_f32(cg, x, base, C);
        LLVMValueRef k = n->op == OP_softmax ? row_inv_sum(cg, &r) : row_log_sum(cg, &r);
        Loop l = loop_begin(cg, C, "sm");
        LLVMValueRef d = f_sub(cg, load_at(cg, DT_F32, x, add64(cg, base, l.iv)), r.m);
        LLVMValueRef y = n->op == OP_softmax ? f_mul(cg, fast_exp_f32(cg, d), k) : f_sub(cg, d, k);
        store_at(cg, DT_F32, y, out, add64(cg, base, l.iv));
        loop_end_row(cg, &l);
        return;
    }
    LLVMValueRef dy = node_ptr(cg, n->in[1]);
    bool plain = n->op == OP_softmax_grad; /* y (dy - sum(dy y)); else dy - e^y sum(dy) */
    LLVMValueRef k = plain ? row_dot_f32(cg, x, dy, base, C) : row_dot_f32(cg, dy, NULL, base, C);
    Loop l = loop_begin(cg, C, "smg");
    LLVMValueRef y = load_at(cg, DT_F32, x, add64(cg, base, l.iv)), d = load_at(cg, DT_F32, dy, add64(cg, base, l.iv));
    LLVMValueRef g = plain ? f_mul(cg, y, f_sub(cg, d, k)) : f_sub(cg, d, f_mul(cg, fast_exp_f32(cg, y), k));
    store_at(cg, DT_F32, g, out, add64(cg, base, l.iv));
    loop_end_row(cg, &l);
}

/* softmax, log_softmax, softmax_grad, log_softmax_grad over the last axis */
static void emit_softmax_family(Cg *cg, Ref v) {
    const Node *n = &cg->f->nodes[v];
    DType dt = n->dtype;
    if (!is_float(dt)) {
        cg_error(cg, "%s of i32 values", op_info[n->op].name);
        return;
    }
    int r = n->shape.rank;
    LLVMValueRef C = r ? dim_value(cg, &n->shape, r - 1) : i64c(cg, 1);
    LLVMValueRef rows = r ? dims_product(cg, &n->shape, 0, r - 1) : i64c(cg, 1);
    LLVMValueRef x = node_ptr(cg, n->in[0]), out = node_ptr(cg, v);
    Loop lr = loop_begin(cg, rows, "row");
    LLVMValueRef base = mul64(cg, lr.iv, C);
    if (dt == DT_F32) {
        emit_softmax_f32(cg, n, x, out, base, C);
        loop_end(cg, &lr);
        return;
    }
    switch (n->op) {
    case OP_softmax: { /* e^(x_c - logsumexp(x)) */
        LLVMValueRef lse = row_logsumexp(cg, dt, x, base, C);
        Loop l = loop_begin(cg, C, "sm");
        LLVMValueRef e = to_double(cg, dt, load_at(cg, dt, x, add64(cg, base, l.iv)));
        store_at(cg, dt, from_double(cg, dt, libm1(cg, "exp", DT_F64, f_sub(cg, e, lse))), out, add64(cg, base, l.iv));
        loop_end(cg, &l);
        break;
    }
    case OP_log_softmax: { /* x_c - logsumexp(x) */
        LLVMValueRef lse = row_logsumexp(cg, dt, x, base, C);
        Loop l = loop_begin(cg, C, "lsm");
        LLVMValueRef e = to_double(cg, dt, load_at(cg, dt, x, add64(cg, base, l.iv)));
        store_at(cg, dt, from_double(cg, dt, f_sub(cg, e, lse)), out, add64(cg, base, l.iv));
        loop_end(cg, &l);
        break;
    }
    case OP_softmax_grad: { /* y (dy - sum(dy y)) */
        LLVMValueRef dy = node_ptr(cg, n->in[1]);
        LLVMValueRef dot = row_dot(cg, dt, x, dy, base, C);
        Loop l = loop_begin(cg, C, "smg");
        LLVMValueRef y = to_double(cg, dt, load_at(cg, dt, x, add64(cg, base, l.iv)));
        LLVMValueRef d = to_double(cg, dt, load_at(cg, dt, dy, add64(cg, base, l.iv)));
        store_at(cg, dt, from_double(cg, dt, f_mul(cg, y, f_sub(cg, d, dot))), out, add64(cg, base, l.iv));
        loop_end(cg, &l);
        break;
    }
    case OP_log_softmax_grad: { /* dy - e^y sum(dy) */
        LLVMValueRef dy = node_ptr(cg, n->in[1]);
        LLVMValueRef sum = row_dot(cg, dt, dy, NULL, base, C);
        Loop l = loop_begin(cg, C, "lsmg");
        LLVMValueRef y = to_double(cg, dt, load_at(cg, dt, x, add64(cg, base, l.iv)));
        LLVMValueRef d = to_double(cg, dt, load_at(cg, dt, dy, add64(cg, base, l.iv)));
        store_at(cg, dt, from_double(cg, dt, f_sub(cg, d, f_mul(cg, libm1(cg, "exp", DT_F64, y), sum))), out,
                 add64(cg, base, l.iv));
        loop_end(cg, &l);
        break;
    }
    default: break;
    }
    loop_end(cg, &lr);
}

/* Cross-entropy with label smoothing s and optional class weights w, as PyTorch computes it
 * (reduction mean, labels outside [0, C) ignored):
 *   lse_p = logsumexp(x_p); nll_p = lse_p - x_p[y_p]; smooth_p = sum_c w_c (lse_p - x_p,c)
 *   W = sum over valid p of w[y_p] (the count when unweighted)
 *   loss = (1 - s) sum_p w[y_p] nll_p / W + (s / C) sum_p smooth_p / W
 * Gradient (dloss given): g_p,j = dloss / W ((1 - s) w[y_p] (p_j - [j = y_p]) + (s/C)(p_j sum w - w_j)),
 * zero for ignored positions. */
typedef struct CeArgs {
    LLVMValueRef x, labels, weight; /* weight NULL when absent */
    LLVMValueRef rows, C;
    DType dt;
    double smoothing;
} CeArgs;

static CeArgs ce_args(Cg *cg, const Node *n, bool grad) {
    CeArgs a;
    const Node *x = in_node(cg, n, 0);
    int r = x->shape.rank;
    a.x = node_ptr(cg, n->in[0]);
    a.labels = node_ptr(cg, n->in[1]);
    a.weight = n->nin >= (grad ? 4 : 3) ? node_ptr(cg, n->in[2]) : NULL;
    a.C = dim_value(cg, &x->shape, r - 1);
    a.rows = dims_product(cg, &x->shape, 0, r - 1);
    a.dt = x->dtype;
    a.smoothing = n->attr.f[0];
    return a;
}

/* w[c] as double (1 when unweighted) */
static LLVMValueRef ce_weight(Cg *cg, const CeArgs *a, LLVMValueRef c) {
    if (!a->weight) return LLVMConstReal(cg->t_f64, 1);
    return to_double(cg, a->dt, load_at(cg, a->dt, a->weight, c));
}

/* label of row p (i64) and whether it is in [0, C) */
static LLVMValueRef ce_label(Cg *cg, const CeArgs *a, LLVMValueRef p, LLVMValueRef *valid) {
    LLVMValueRef y = LLVMBuildSExt(cg->b, load_at(cg, DT_I32, a->labels, p), cg->t_i64, "");
    *valid = LLVMBuildAnd(cg->b, LLVMBuildICmp(cg->b, LLVMIntSGE, y, i64c(cg, 0), ""),
                          LLVMBuildICmp(cg->b, LLVMIntSLT, y, a->C, ""), "");
    return sel(cg, *valid, y, i64c(cg, 0));
}

/* sum over valid rows of w[y_p] */
static LLVMValueRef ce_total_weight(Cg *cg, const CeArgs *a) {
    LLVMValueRef W = entry_alloca(cg, cg->t_f64, "ce_w");
    LLVMBuildStore(cg->b, LLVMConstReal(cg->t_f64, 0), W);
    Loop lp = loop_begin(cg, a->rows, "ce_w");
    LLVMValueRef valid;
    LLVMValueRef y = ce_label(cg, a, lp.iv, &valid);
    LLVMValueRef w = sel(cg, valid, ce_weight(cg, a, y), LLVMConstReal(cg->t_f64, 0));
    LLVMBuildStore(cg->b, reassoc(f_add(cg, load_var(cg, cg->t_f64, W), w)), W);
    loop_end(cg, &lp);
    return load_var(cg, cg->t_f64, W);
}

static LLVMValueRef ce_weight_sum(Cg *cg, const CeArgs *a) {
    if (!a->weight) return LLVMBuildSIToFP(cg->b, a->C, cg->t_f64, "");
    LLVMValueRef s = entry_alloca(cg, cg->t_f64, "ce_ws");
    LLVMBuildStore(cg->b, LLVMConstReal(cg->t_f64, 0), s);
    Loop l = loop_begin(cg, a->C, "ce_ws");
    LLVMBuildStore(cg->b, reassoc(f_add(cg, load_var(cg, cg->t_f64, s), ce_weight(cg, a, l.iv))), s);
    loop_end(cg, &l);
    return load_var(cg, cg->t_f64, s);
}

static void emit_cross_entropy(Cg *cg, Ref v) {
    const Node *n = &cg->f->nodes[v];
    CeArgs a = ce_args(cg, n, false);
    if (!is_float(a.dt)) {
        cg_error(cg, "cross_entropy of i32 logits");
        return;
    }
    LLVMValueRef total = entry_alloca(cg, cg->t_f64, "ce_total");
    LLVMValueRef dzero = LLVMConstReal(cg->t_f64, 0);
    LLVMBuildStore(cg->b, dzero, total);
    double s = a.smoothing;
    Loop lp = loop_begin(cg, a.rows, "ce");
    LLVMValueRef valid;
    LLVMValueRef y = ce_label(cg, &a, lp.iv, &valid);
    LLVMBasicBlockRef join = if_begin(cg, valid);
    LLVMValueRef base = mul64(cg, lp.iv, a.C);
    LLVMValueRef xy = to_double(cg, a.dt, load_at(cg, a.dt, a.x, add64(cg, base, y)));
    LLVMValueRef lse, nll;
    if (a.dt == DT_F32) { /* lse - x_y as (m - x_y) + log s: no cancellation when x_y is the max */
        RowStats r = row_stats_f32(cg, a.x, base, a.C);
        LLVMValueRef m = to_double(cg, DT_F32, r.m), logs = to_double(cg, DT_F32, row_log_sum(cg, &r));
        lse = f_add(cg, m, logs);
        nll = f_add(cg, f_sub(cg, m, xy), logs);
    } else {
        lse = row_logsumexp(cg, a.dt, a.x, base, a.C);
        nll = f_sub(cg, lse, xy);
    }
    /* (1-s) w[y] (lse - x_y) + s/C sum_c w[c] (lse - x_c) */
    LLVMValueRef term = f_mul(cg, f_mul(cg, LLVMConstReal(cg->t_f64, 1 - s), ce_weight(cg, &a, y)), nll);
    if (s != 0) {
        LLVMValueRef smooth = entry_alloca(cg, cg->t_f64, "ce_smooth");
        LLVMBuildStore(cg->b, dzero, smooth);
        Loop lc = loop_begin(cg, a.C, "ce_c");
        LLVMValueRef xc = to_double(cg, a.dt, load_at(cg, a.dt, a.x, add64(cg, base, lc.iv)));
        LLVMValueRef t = f_mul(cg, ce_weight(cg, &a, lc.iv), f_sub(cg, lse, xc));
        LLVMBuildStore(cg->b, reassoc(f_add(cg, load_var(cg, cg->t_f64, smooth), t)), smooth);
        loop_end(cg, &lc);
        LLVMValueRef sc = f_div(cg, LLVMConstReal(cg->t_f64, s), LLVMBuildSIToFP(cg->b, a.C, cg->t_f64, ""));
        term = f_add(cg, term, f_mul(cg, sc, load_var(cg, cg->t_f64, smooth)));
    }
    LLVMBuildStore(cg->b, f_add(cg, load_var(cg, cg->t_f64, total), term), total);
    if_end(cg, join);
    loop_end(cg, &lp);
    LLVMValueRef loss = f_div(cg, load_var(cg, cg->t_f64, total), ce_total_weight(cg, &a));
    store_at(cg, n->dtype, from_double(cg, n->dtype, loss), node_ptr(cg, v), i64c(cg, 0));
}

/* The gradient in f32 vector loops: p_j = e^(x_j - m) / s (row_stats_f32), the factors
 * (scale, the label's weight, s/C, sum w) computed in double once and rounded. */
static void emit_cross_entropy_grad_f32(Cg *cg, Ref v, const CeArgs *a, LLVMValueRef scale, LLVMValueRef wsum,
                                        LLVMValueRef sc) {
    LLVMValueRef scale32 = from_double(cg, DT_F32, scale), sc32 = from_double(cg, DT_F32, sc);
    LLVMValueRef wsum32 = from_double(cg, DT_F32, wsum), zero = f32c(cg, 0);
    Loop lp = loop_begin(cg, a->rows, "ceg");
    LLVMValueRef valid;
    LLVMValueRef y = ce_label(cg, a, lp.iv, &valid);
    LLVMValueRef base = mul64(cg, lp.iv, a->C);
    RowStats r = row_stats_f32(cg, a->x, base, a->C);
    LLVMValueRef inv = row_inv_sum(cg, &r);
    /* the row's factors: dloss / W (1 - s) w[y] and dloss / W s/C */
    LLVMValueRef wy = f_mul(cg, scale32, from_double(cg, DT_F32, f_mul(cg, LLVMConstReal(cg->t_f64, 1 - a->smoothing),
                                                                        ce_weight(cg, a, y))));
    LLVMValueRef ks = f_mul(cg, scale32, sc32);
    Loop lc = loop_begin(cg, a->C, "ceg_c");
    LLVMValueRef pj = f_mul(cg, fast_exp_f32(cg, f_sub(cg, load_at(cg, DT_F32, a->x, add64(cg, base, lc.iv)), r.m)), inv);
    LLVMValueRef onehot = LLVMBuildUIToFP(cg->b, LLVMBuildICmp(cg->b, LLVMIntEQ, lc.iv, y, ""), cg->t_f32, "");
    LLVMValueRef g = f_mul(cg, wy, f_sub(cg, pj, onehot));
    if (a->smoothing != 0) {
        LLVMValueRef wj = a->weight ? load_at(cg, DT_F32, a->weight, lc.iv) : f32c(cg, 1);
        g = f_add(cg, g, f_mul(cg, ks, f_sub(cg, f_mul(cg, pj, wsum32), wj)));
    }
    store_at(cg, DT_F32, sel(cg, valid, g, zero), node_ptr(cg, v), add64(cg, base, lc.iv)); /* 0 where ignored */
    loop_end_row(cg, &lc);
    loop_end(cg, &lp);
}

static void emit_cross_entropy_grad(Cg *cg, Ref v) {
    const Node *n = &cg->f->nodes[v];
    CeArgs a = ce_args(cg, n, true);
    if (!is_float(a.dt)) {
        cg_error(cg, "cross_entropy_grad of i32 logits");
        return;
    }
    const Node *dl = in_node(cg, n, n->nin - 1);
    LLVMValueRef dloss = to_double(cg, dl->dtype, load_at(cg, dl->dtype, node_ptr(cg, n->in[n->nin - 1]), i64c(cg, 0)));
    double s = a.smoothing;
    LLVMValueRef scale = f_div(cg, dloss, ce_total_weight(cg, &a));
    LLVMValueRef wsum = ce_weight_sum(cg, &a);
    LLVMValueRef sc = f_div(cg, LLVMConstReal(cg->t_f64, s), LLVMBuildSIToFP(cg->b, a.C, cg->t_f64, ""));
    if (a.dt == DT_F32) {
        emit_cross_entropy_grad_f32(cg, v, &a, scale, wsum, sc);
        return;
    }
    Loop lp = loop_begin(cg, a.rows, "ceg");
    LLVMValueRef valid;
    LLVMValueRef y = ce_label(cg, &a, lp.iv, &valid);
    LLVMValueRef base = mul64(cg, lp.iv, a.C);
    LLVMValueRef lse = row_logsumexp(cg, a.dt, a.x, base, a.C);
    LLVMValueRef wy = f_mul(cg, LLVMConstReal(cg->t_f64, 1 - s), ce_weight(cg, &a, y));
    Loop lc = loop_begin(cg, a.C, "ceg_c");
    LLVMValueRef xc = to_double(cg, a.dt, load_at(cg, a.dt, a.x, add64(cg, base, lc.iv)));
    LLVMValueRef pj = libm1(cg, "exp", DT_F64, f_sub(cg, xc, lse));
    LLVMValueRef onehot = LLVMBuildUIToFP(cg->b, LLVMBuildICmp(cg->b, LLVMIntEQ, lc.iv, y, ""), cg->t_f64, "");
    LLVMValueRef g = f_mul(cg, wy, f_sub(cg, pj, onehot));
    if (s != 0) g = f_add(cg, g, f_mul(cg, sc, f_sub(cg, f_mul(cg, pj, wsum), ce_weight(cg, &a, lc.iv))));
    g = sel(cg, valid, f_mul(cg, g, scale), LLVMConstReal(cg->t_f64, 0));
    store_at(cg, n->dtype, from_double(cg, n->dtype, g), node_ptr(cg, v), add64(cg, base, lc.iv));
    loop_end(cg, &lc);
    loop_end(cg, &lp);
}

/* A private constant global holding `count` elements of dtype dt. */
static LLVMValueRef const_global(Cg *cg, DType dt, const double *data, const int64_t *idata, int64_t count,
                                 const char *name) {
    LLVMValueRef *vals = malloc((size_t)(count ? count : 1) * sizeof *vals);
    if (!vals) abort();
    for (int64_t i = 0; i < count; i++)
        vals[i] = idata ? LLVMConstInt(cg->t_i64, (unsigned long long)idata[i], 1) : fpc(cg, dt, data[i]);
    LLVMTypeRef et = idata ? cg->t_i64 : ty(cg, dt);
    LLVMValueRef arr = LLVMConstArray2(et, vals, (uint64_t)count);
    free(vals);
    LLVMValueRef g = LLVMAddGlobal(cg->mod, LLVMTypeOf(arr), name);
    LLVMSetInitializer(g, arr);
    LLVMSetGlobalConstant(g, 1);
    LLVMSetLinkage(g, LLVMPrivateLinkage);
    LLVMSetUnnamedAddress(g, LLVMGlobalUnnamedAddr);
    LLVMSetAlignment(g, 16);
    return g;
}

static LLVMValueRef tensor_state_ptr(Cg *cg, int t) {
    if (cg->embedded) {
        assert(cg->weight_offset[t] >= 0);
        return byte_ptr(cg, cg->weights, cg->weight_offset[t]);
    }
    return byte_ptr(cg, cg->state, cg->m->tensors[t].offset);
}

/* ---- alias scopes
 *
 * Every value of a function lives in one of a few memory blocks (work, state, the arguments),
 * at offsets LLVM sees as constants but with extents it does not know: for a loop whose
 * indices depend on the batch, it cannot prove that the rows a kernel writes do not overlap
 * the rows it reads, and the loop vectorizer adds run-time overlap checks (and the scalar
 * evolution work to build them) to every such loop. The memory planner does know: values a
 * kernel reads and writes at once occupy disjoint bytes unless one reuses another's (in
 * place). So each kernel's loads and stores carry scoped-noalias metadata: one scope per
 * group of overlapping buffers (same block, intersecting byte ranges), each access in its
 * buffer's scope and `noalias` with the kernel's other scopes. Accesses through pointers
 * that are not a node's memory (rows, scratch) get none, and may alias anything. */

/* Registers the bytes [off, off + size) of block root that pointer p (a node's memory) starts. */
static void add_region(Cg *cg, LLVMValueRef p, LLVMValueRef root, int64_t off, int64_t size) {
    if (cg->nregions == cg->cap_regions) {
        cg->cap_regions = cg->cap_regions ? 2 * cg->cap_regions : 64;
        cg->regions = realloc(cg->regions, (size_t)cg->cap_regions * sizeof *cg->regions);
        if (!cg->regions) abort();
    }
    cg->regions[cg->nregions++] = (struct Region){p, root, off, size};
}

static int find_region(Cg *cg, LLVMValueRef p) {
    for (int i = cg->nregions - 1; i >= 0; i--)
        if (cg->regions[i].ptr == p) return i;
    return -1;
}

static bool regions_overlap(const struct Region *a, const struct Region *b) {
    if (a->root != b->root) return false;
    int64_t a_end = a->size > INT64_MAX - a->off ? INT64_MAX : a->off + a->size;
    int64_t b_end = b->size > INT64_MAX - b->off ? INT64_MAX : b->off + b->size;
    return a->off < b_end && b->off < a_end;
}

/* NNC_NO_SCOPES=1 leaves the metadata out (to rule it out when a kernel computes wrong
 * numbers; tests/compile/loops.test checks that it changes no bit). */
static void alias_scopes_begin(Cg *cg) {
    static int off = -1;
    if (off < 0) off = getenv("NNC_NO_SCOPES") && *getenv("NNC_NO_SCOPES") == '1';
    cg->naccesses = 0;
    cg->recording = !off;
}

static LLVMMetadataRef md_string(Cg *cg, const char *s) { return LLVMMDStringInContext2(cg->ctx, s, strlen(s)); }

static bool same_range(const struct Region *a, const struct Region *b) {
    return a->root == b->root && a->off == b->off && a->size == b->size;
}

static void alias_scopes_end(Cg *cg) {
    cg->recording = false;
    enum { MAX_GROUPS = 32, MAX_MEMBERS = 8 };
    int n = cg->naccesses, group_of_access[n > 0 ? n : 1];
    const struct Region *members[MAX_GROUPS][MAX_MEMBERS];
    int nmembers[MAX_GROUPS] = {0}, ngroups = 0;
    /* each access's region joins the first group it overlaps, or starts one; an access
     * that finds no room stays without scope (may alias anything) */
    for (int a = 0; a < n; a++) {
        group_of_access[a] = -1;
        int r = find_region(cg, cg->accesses[a].base);
        if (r < 0) continue;
        const struct Region *reg = &cg->regions[r];
        int g = -1;
        for (int k = 0; k < ngroups && g < 0; k++)
            for (int j = 0; j < nmembers[k] && g < 0; j++)
                if (regions_overlap(members[k][j], reg)) g = k;
        if (g < 0 && ngroups == MAX_GROUPS) continue;
        if (g < 0) g = ngroups++;
        bool member = false;
        for (int j = 0; j < nmembers[g]; j++) member |= same_range(members[g][j], reg);
        if (!member && nmembers[g] == MAX_MEMBERS) continue;
        if (!member) members[g][nmembers[g]++] = reg;
        group_of_access[a] = g;
    }
    /* a region that joined one group may overlap a member of a later one: then the groups
     * are not disjoint, and the kernel gets no scopes at all (rare) */
    for (int g = 0; g < ngroups; g++)
        for (int h = g + 1; h < ngroups; h++)
            for (int i = 0; i < nmembers[g]; i++)
                for (int j = 0; j < nmembers[h]; j++)
                    if (regions_overlap(members[g][i], members[h][j])) return;
    if (ngroups < 2) return;
    char name[64];
    snprintf(name, sizeof name, "nnc.kernel%d", cg->scope_count++);
    LLVMMetadataRef dom_ops[1] = {md_string(cg, name)};
    LLVMMetadataRef domain = LLVMMDNodeInContext2(cg->ctx, dom_ops, 1);
    LLVMMetadataRef scope[MAX_GROUPS];
    for (int g = 0; g < ngroups; g++) {
        char sname[96];
        snprintf(sname, sizeof sname, "%s.buffer%d", name, g);
        LLVMMetadataRef ops[2] = {md_string(cg, sname), domain};
        scope[g] = LLVMMDNodeInContext2(cg->ctx, ops, 2);
    }
    LLVMValueRef in_scope[MAX_GROUPS], not_in[MAX_GROUPS];
    for (int g = 0; g < ngroups; g++) {
        LLVMMetadataRef others[MAX_GROUPS];
        int k = 0;
        for (int h = 0; h < ngroups; h++)
            if (h != g) others[k++] = scope[h];
        in_scope[g] = LLVMMetadataAsValue(cg->ctx, LLVMMDNodeInContext2(cg->ctx, &scope[g], 1));
        not_in[g] = LLVMMetadataAsValue(cg->ctx, LLVMMDNodeInContext2(cg->ctx, others, (size_t)k));
    }
    unsigned kind_scope = LLVMGetMDKindIDInContext(cg->ctx, "alias.scope", 11);
    unsigned kind_noalias = LLVMGetMDKindIDInContext(cg->ctx, "noalias", 7);
    for (int a = 0; a < n; a++) {
        int g = group_of_access[a];
        if (g < 0) continue;
        LLVMSetMetadata(cg->accesses[a].inst, kind_scope, in_scope[g]);
        LLVMSetMetadata(cg->accesses[a].inst, kind_noalias, not_in[g]);
    }
}

/* The memory of node v in the function being emitted: an argument, the state, work, a
 * constant global. Built once per part, in its entry block, so it dominates every use. */
static LLVMValueRef node_ptr(Cg *cg, Ref v) {
    if (cg->ptr[v]) return cg->ptr[v];
    const NodePlan *np = &cg->plan.nodes[v];
    const Node *n = &cg->f->nodes[v];
    LLVMValueRef p = NULL;
    if (np->storage == ST_ALIAS) return cg->ptr[v] = node_ptr(cg, np->alias_of);
    if (np->storage == ST_CONST) {
        if (!cg->globals[v]) {
            char name[64];
            snprintf(name, sizeof name, "const.%d", v);
            cg->globals[v] = const_global(cg, n->dtype, n->attr.data, NULL, shape_numel(&n->shape, 1), name);
        }
        return cg->ptr[v] = cg->globals[v];
    }
    LLVMBasicBlockRef here = LLVMGetInsertBlock(cg->b);
    LLVMPositionBuilderAtEnd(cg->b, cg->alloca_block);
    switch (np->storage) {
    case ST_ARG: p = cg->argp[n->attr.index]; break;
    case ST_STATE: p = tensor_state_ptr(cg, n->attr.tensor); break;
    case ST_WORK: p = byte_ptr(cg, cg->work, np->offset); break;
    case ST_OUT: p = cg->argp[cg->f->nargs + np->out]; break;
    case ST_INPLACE: p = tensor_state_ptr(cg, np->tensor); break;
    default: assert(!"node without memory"); break;
    }
    LLVMPositionBuilderAtEnd(cg->b, here);
    int64_t bytes = shape_numel(&n->shape, cg->m->max_batch) * dtype_size(n->dtype);
    switch (np->storage) {
    case ST_WORK: add_region(cg, p, cg->work, np->offset, bytes); break;
    case ST_STATE:
    case ST_INPLACE: {
        int t = np->storage == ST_STATE ? n->attr.tensor : np->tensor;
        if (cg->embedded) add_region(cg, p, cg->weights, cg->weight_offset[t], bytes);
        else add_region(cg, p, cg->state, cg->m->tensors[t].offset, bytes);
        break;
    }
    default: add_region(cg, p, p, 0, INT64_MAX); break; /* a parameter of its own */
    }
    return cg->ptr[v] = p;
}

/* Where module tensor t's value is as node v runs: the last store to it before v, or the state. */
static LLVMValueRef tensor_value_ptr(Cg *cg, int t, Ref v) {
    for (Ref s = v - 1; s >= 0; s--)
        if (cg->f->nodes[s].op == OP_store && cg->f->nodes[s].attr.tensor == t) return node_ptr(cg, s);
    LLVMBasicBlockRef here = LLVMGetInsertBlock(cg->b);
    LLVMPositionBuilderAtEnd(cg->b, cg->alloca_block);
    LLVMValueRef p = tensor_state_ptr(cg, t);
    LLVMPositionBuilderAtEnd(cg->b, here);
    return p;
}

/* The initial value of module tensor attr.tensor (nnrt_init_tensor with stream = tensor id;
 * constant fills for non-f32 tensors). A failing initializer (orthogonal: out of memory)
 * makes the function return its status. */
static void emit_init_fill(Cg *cg, Ref v) {
    const Node *n = &cg->f->nodes[v];
    int t = n->attr.tensor;
    const ModTensor *mt = &cg->m->tensors[t];
    const InitSpec *is = &mt->init;
    if (n->dtype != DT_F32) {
        double value = is->kind == INIT_ONES ? 1 : is->kind == INIT_CONSTANT ? is->a : 0;
        if (is->kind != INIT_ZEROS && is->kind != INIT_ONES && is->kind != INIT_CONSTANT) {
            cg_error(cg, "tensor '%s' of type %s cannot have a random initializer", mt->name, dtype_names[n->dtype]);
            return;
        }
        Loop l = loop_begin(cg, numel_value(cg, &n->shape), "fill");
        store_at(cg, n->dtype, fpc(cg, n->dtype, value), node_ptr(cg, v), l.iv);
        loop_end(cg, &l);
        return;
    }
    char name[64];
    snprintf(name, sizeof name, "shape.%d", t);
    LLVMValueRef shape = const_global(cg, DT_F32, NULL, n->shape.dim, n->shape.rank ? n->shape.rank : 1, name);
    LLVMValueRef args[] = {node_ptr(cg, v), i32c(cg, n->shape.rank), shape, i32c(cg, is->kind),
                           LLVMConstReal(cg->t_f64, is->a), LLVMConstReal(cg->t_f64, is->b),
                           i64c(cg, is->fan_in), cg->seed, i64c(cg, t)};
    LLVMValueRef status = runtime_call(cg, RT_INIT_TENSOR, args, 9);
    LLVMBasicBlockRef join = if_begin(cg, LLVMBuildICmp(cg->b, LLVMIntNE, status, i32c(cg, 0), ""));
    LLVMBuildRet(cg->b, status);
    LLVMPositionBuilderAtEnd(cg->b, join);
}

/* element i = nnrt_rng_uniform(seed, attr.index, step * numel + i), step read from the
 * step tensor attr.tensor as it is at this point of the function */
static void emit_rand_uniform(Cg *cg, Ref v) {
    const Node *n = &cg->f->nodes[v];
    LLVMValueRef count = numel_value(cg, &n->shape);
    const ModTensor *st = &cg->m->tensors[n->attr.tensor];
    LLVMValueRef step = load_at(cg, st->dtype, tensor_value_ptr(cg, n->attr.tensor, v), i64c(cg, 0));
    step = st->dtype == DT_I32 ? LLVMBuildSExt(cg->b, step, cg->t_i64, "") : LLVMBuildFPToSI(cg->b, step, cg->t_i64, "");
    LLVMValueRef offset = LLVMBuildMul(cg->b, step, count, "");
    if (n->dtype == DT_F32) {
        LLVMValueRef args[] = {node_ptr(cg, v), count, cg->seed, i64c(cg, n->attr.index), offset,
                               LLVMConstReal(cg->t_f32, 0), LLVMConstReal(cg->t_f32, 1)};
        runtime_call(cg, RT_RNG_FILL_UNIFORM, args, 7);
        return;
    }
    Loop l = loop_begin(cg, count, "rand");
    LLVMValueRef args[] = {cg->seed, i64c(cg, n->attr.index), LLVMBuildAdd(cg->b, offset, l.iv, "")};
    LLVMValueRef u = runtime_call(cg, RT_RNG_UNIFORM, args, 3);
    store_at(cg, n->dtype, n->dtype == DT_F64 ? LLVMBuildFPExt(cg->b, u, cg->t_f64, "") : LLVMBuildFPToSI(cg->b, u, cg->t_i32, ""),
             node_ptr(cg, v), l.iv);
    loop_end(cg, &l);
}

static LLVMValueRef bytes_value(Cg *cg, const Node *n) {
    return mul64(cg, numel_value(cg, &n->shape), i64c(cg, dtype_size(n->dtype)));
}

static void memcpy_node(Cg *cg, LLVMValueRef dst, LLVMValueRef src, const Node *n) {
    LLVMBuildMemCpy(cg->b, dst, (unsigned)dtype_size(n->dtype), src, (unsigned)dtype_size(n->dtype), bytes_value(cg, n));
}

/* ---- spatial kernels (ops.h: NCHW, batch on axis 0, f32) */

static LLVMValueRef in_range(Cg *cg, LLVMValueRef i, int64_t limit) {
    return LLVMBuildAnd(cg->b, LLVMBuildICmp(cg->b, LLVMIntSGE, i, i64c(cg, 0), ""),
                        LLVMBuildICmp(cg->b, LLVMIntSLT, i, i64c(cg, limit), ""), "");
}

/* Input coordinate of output position o and window offset k along one axis. */
static LLVMValueRef window_coord(Cg *cg, LLVMValueRef o, int64_t stride, int64_t pad, LLVMValueRef k, int64_t dil) {
    return add64(cg, mul64(cg, o, i64c(cg, stride)), add64(cg, i64c(cg, -pad), mul64(cg, k, i64c(cg, dil))));
}

static LLVMValueRef smin64(Cg *cg, LLVMValueRef a, LLVMValueRef b) {
    return sel(cg, LLVMBuildICmp(cg->b, LLVMIntSLT, a, b, ""), a, b);
}

/* The output positions o in [lo, hi) of an axis whose input position o*stride + off lies in
 * [0, in), o < out: the part of a window row that is not padding. */
static void valid_outputs(Cg *cg, LLVMValueRef off, int64_t stride, int64_t in, int64_t out, LLVMValueRef *lo,
                          LLVMValueRef *hi) {
    LLVMValueRef zero = i64c(cg, 0);
    LLVMValueRef neg = LLVMBuildICmp(cg->b, LLVMIntSLT, off, zero, "");
    LLVMValueRef first = LLVMBuildSDiv(cg->b, add64(cg, LLVMBuildNSWSub(cg->b, zero, off, ""), i64c(cg, stride - 1)),
                                       i64c(cg, stride), "");
    LLVMValueRef room = LLVMBuildNSWSub(cg->b, i64c(cg, in - 1), off, "");
    LLVMValueRef last = add64(cg, LLVMBuildSDiv(cg->b, room, i64c(cg, stride), ""), i64c(cg, 1));
    *hi = smin64(cg, sel(cg, LLVMBuildICmp(cg->b, LLVMIntSLT, room, zero, ""), zero, last), i64c(cg, out));
    *lo = smin64(cg, sel(cg, neg, first, zero), *hi);
}

/* A loop over [lo, hi): the Loop's iv counts from 0; *o is lo + iv. */
static Loop range_begin(Cg *cg, LLVMValueRef lo, LLVMValueRef hi, const char *name, LLVMValueRef *o) {
    Loop l = loop_begin(cg, LLVMBuildNSWSub(cg->b, hi, lo, ""), name);
    *o = add64(cg, lo, l.iv);
    return l;
}

/* p[base + lo .. base + hi) = 0 (f32), lo <= hi */
static void zero_range(Cg *cg, LLVMValueRef p, LLVMValueRef base, LLVMValueRef lo, LLVMValueRef hi) {
    LLVMValueRef bytes = mul64(cg, LLVMBuildNSWSub(cg->b, hi, lo, ""), i64c(cg, 4));
    LLVMBuildMemSet(cg->b, elem_ptr(cg, DT_F32, p, add64(cg, base, lo)), LLVMConstInt(cg->t_i8, 0, 0), bytes, 4);
}

/* cols[(c*KH + ky)*KW + kx][oy*Wo + ox] = x[c][oy*sh - pt + ky*dh][ox*sw - pl + kx*dw], 0 in
 * the padding; x is one image's group of Cg channels. With add, the adjoint instead:
 * x[...] += cols[...] (col2im). The window rows' valid ranges are computed per (ky, kx), so
 * the inner loops have no bounds checks (contiguous at stride 1: they vectorize), and the
 * adjoint skips the padding instead of testing every element. */
static void emit_im2col(Cg *cg, const ConvGeom *g, LLVMValueRef x, LLVMValueRef cols, bool adjoint) {
    int64_t K2 = g->Cg * g->KH * g->KW, P = g->Ho * g->Wo;
    Loop lr = loop_begin(cg, i64c(cg, K2), "im2col_r");
    LLVMValueRef c = LLVMBuildSDiv(cg->b, lr.iv, i64c(cg, g->KH * g->KW), "");
    LLVMValueRef ky = LLVMBuildSRem(cg->b, LLVMBuildSDiv(cg->b, lr.iv, i64c(cg, g->KW), ""), i64c(cg, g->KH), "");
    LLVMValueRef kx = LLVMBuildSRem(cg->b, lr.iv, i64c(cg, g->KW), "");
    LLVMValueRef off_y = add64(cg, mul64(cg, ky, i64c(cg, g->dh)), i64c(cg, -g->pt));
    LLVMValueRef off_x = add64(cg, mul64(cg, kx, i64c(cg, g->dw)), i64c(cg, -g->pl));
    LLVMValueRef ylo, yhi, xlo, xhi;
    valid_outputs(cg, off_y, g->sh, g->H, g->Ho, &ylo, &yhi);
    valid_outputs(cg, off_x, g->sw, g->W, g->Wo, &xlo, &xhi);
    LLVMValueRef plane = mul64(cg, c, i64c(cg, g->H * g->W)), row0 = mul64(cg, lr.iv, i64c(cg, P));
    if (!adjoint) {
        /* rows above and below the image: zeros */
        zero_range(cg, cols, row0, i64c(cg, 0), mul64(cg, ylo, i64c(cg, g->Wo)));
        zero_range(cg, cols, row0, mul64(cg, yhi, i64c(cg, g->Wo)), i64c(cg, P));
    }
    LLVMValueRef oy, ox;
    Loop ly = range_begin(cg, ylo, yhi, "im2col_y", &oy);
    LLVMValueRef iy = add64(cg, mul64(cg, oy, i64c(cg, g->sh)), off_y);
    LLVMValueRef src_row = add64(cg, add64(cg, plane, mul64(cg, iy, i64c(cg, g->W))), off_x);
    LLVMValueRef col_row = add64(cg, row0, mul64(cg, oy, i64c(cg, g->Wo)));
    if (!adjoint) zero_range(cg, cols, col_row, i64c(cg, 0), xlo);
    if (!adjoint && g->sw == 1) { /* a contiguous run of the input row */
        LLVMValueRef n = mul64(cg, LLVMBuildNSWSub(cg->b, xhi, xlo, ""), i64c(cg, 4));
        LLVMBuildMemCpy(cg->b, elem_ptr(cg, DT_F32, cols, add64(cg, col_row, xlo)), 4,
                        elem_ptr(cg, DT_F32, x, add64(cg, src_row, xlo)), 4, n);
        zero_range(cg, cols, col_row, xhi, i64c(cg, g->Wo));
        loop_end(cg, &ly);
        loop_end(cg, &lr);
        return;
    }
    Loop lx = range_begin(cg, xlo, xhi, "im2col_x", &ox);
    LLVMValueRef src = add64(cg, src_row, mul64(cg, ox, i64c(cg, g->sw))), col = add64(cg, col_row, ox);
    if (!adjoint)
        store_at(cg, DT_F32, load_at(cg, DT_F32, x, src), cols, col);
    else
        store_at(cg, DT_F32, f_add(cg, load_at(cg, DT_F32, x, src), load_at(cg, DT_F32, cols, col)), x, src);
    loop_end(cg, &lx);
    if (!adjoint) zero_range(cg, cols, col_row, xhi, i64c(cg, g->Wo));
    loop_end(cg, &ly);
    loop_end(cg, &lr);
}

static void sgemm_call(Cg *cg, bool ta, bool tb, int64_t M, int64_t N, int64_t K, LLVMValueRef a, int64_t lda,
                       LLVMValueRef b, int64_t ldb, LLVMValueRef beta, LLVMValueRef c, int64_t ldc) {
    LLVMValueRef args[] = {i32c(cg, ta), i32c(cg, tb), i32c(cg, M), i32c(cg, N), i32c(cg, K),
                           LLVMConstReal(cg->t_f32, 1), a, i32c(cg, lda), b, i32c(cg, ldb), beta, c, i32c(cg, ldc)};
    runtime_call(cg, RT_SGEMM, args, 13);
}

static LLVMValueRef f32_ptr(Cg *cg, LLVMValueRef base, LLVMValueRef elems) { return elem_ptr(cg, DT_F32, base, elems); }

/* conv2d and its gradients: per image and group, im2col + sgemm
 *   conv2d:        out[n, g] = w[g] [Og, K2] @ cols(x[n, g]) [K2, P]  (+ b, filled first)
 *   grad_input:    dx[n, g] = col2im(w[g]^T @ dy[n, g])
 *   grad_weight:   dw[g] = sum over n of dy[n, g] @ cols(x[n, g])^T */
static void emit_conv(Cg *cg, Ref v) {
    const Node *n = &cg->f->nodes[v];
    if (n->dtype != DT_F32) {
        cg_error(cg, "the LLVM backend supports %s of f32 values only", op_info[n->op].name);
        return;
    }
    ConvGeom g = conv_geom(cg->f, n);
    int64_t K2 = g.Cg * g.KH * g.KW, P = g.Ho * g.Wo, HW = g.H * g.W;
    if (conv_is_direct(cg->f, n, &g)) { /* the whole batch in one runtime call (runtime/conv.c) */
        LLVMValueRef args[] = {to_i32(cg, dim_value(cg, &n->shape, 0)), node_ptr(cg, n->in[0]), i32c(cg, g.C),
                               i32c(cg, g.H), i32c(cg, g.W), node_ptr(cg, n->in[1]),
                               n->nin > 2 ? node_ptr(cg, n->in[2]) : LLVMConstNull(cg->t_ptr), i32c(cg, g.O),
                               i32c(cg, g.KH), i32c(cg, g.KW), i32c(cg, g.pt), i32c(cg, g.pl), node_ptr(cg, v),
                               i32c(cg, g.Ho), i32c(cg, g.Wo), byte_ptr(cg, cg->work, cg->plan.nodes[v].scratch_offset)};
        runtime_call(cg, RT_CONV2D, args, 16);
        return;
    }
    bool pointwise = conv_is_pointwise(&g);
    LLVMValueRef cols = pointwise ? NULL : byte_ptr(cg, cg->work, cg->plan.nodes[v].scratch_offset);
    LLVMValueRef out = node_ptr(cg, v), zero = LLVMConstReal(cg->t_f32, 0), one = LLVMConstReal(cg->t_f32, 1);
    LLVMValueRef N = dim_value(cg, n->op == OP_conv2d_grad_weight ? &in_node(cg, n, 0)->shape : &n->shape, 0);
    if (n->op == OP_conv2d_grad_input) { /* col2im accumulates */
        Loop lz = loop_begin(cg, numel_value(cg, &n->shape), "dx0");
        store_at(cg, DT_F32, zero, out, lz.iv);
        loop_end(cg, &lz);
    }
    Loop ln = loop_begin(cg, N, "conv_n");
    Loop lg = loop_begin(cg, i64c(cg, g.G), "conv_g");
    LLVMValueRef xg = mul64(cg, add64(cg, mul64(cg, ln.iv, i64c(cg, g.C)), mul64(cg, lg.iv, i64c(cg, g.Cg))), i64c(cg, HW));
    LLVMValueRef yg = mul64(cg, add64(cg, mul64(cg, ln.iv, i64c(cg, g.O)), mul64(cg, lg.iv, i64c(cg, g.Og))), i64c(cg, P));
    LLVMValueRef wg = mul64(cg, lg.iv, i64c(cg, g.Og * K2));
    switch (n->op) {
    case OP_conv2d: {
        LLVMValueRef x = f32_ptr(cg, node_ptr(cg, n->in[0]), xg), c = f32_ptr(cg, out, yg);
        if (!pointwise) emit_im2col(cg, &g, x, cols, false);
        LLVMValueRef beta = zero;
        if (n->nin > 2) { /* the bias fills the output, which the product adds to */
            Loop lo = loop_begin(cg, i64c(cg, g.Og), "bias_o");
            LLVMValueRef b = load_at(cg, DT_F32, node_ptr(cg, n->in[2]), add64(cg, mul64(cg, lg.iv, i64c(cg, g.Og)), lo.iv));
            Loop lp = loop_begin(cg, i64c(cg, P), "bias_p");
            store_at(cg, DT_F32, b, c, add64(cg, mul64(cg, lo.iv, i64c(cg, P)), lp.iv));
            loop_end(cg, &lp);
            loop_end(cg, &lo);
            beta = one;
        }
        sgemm_call(cg, false, false, g.Og, P, K2, f32_ptr(cg, node_ptr(cg, n->in[1]), wg), K2, pointwise ? x : cols, P,
                   beta, c, P);
        break;
    }
    case OP_conv2d_grad_input: {
        LLVMValueRef dy = f32_ptr(cg, node_ptr(cg, n->in[0]), yg), dx = f32_ptr(cg, out, xg);
        sgemm_call(cg, true, false, K2, P, g.Og, f32_ptr(cg, node_ptr(cg, n->in[1]), wg), K2, dy, P, zero,
                   pointwise ? dx : cols, P);
        if (!pointwise) emit_im2col(cg, &g, dx, cols, true);
        break;
    }
    case OP_conv2d_grad_weight: {
        LLVMValueRef x = f32_ptr(cg, node_ptr(cg, n->in[0]), xg), dy = f32_ptr(cg, node_ptr(cg, n->in[1]), yg);
        if (!pointwise) emit_im2col(cg, &g, x, cols, false);
        LLVMValueRef beta = sel(cg, LLVMBuildICmp(cg->b, LLVMIntEQ, ln.iv, i64c(cg, 0), ""), zero, one);
        sgemm_call(cg, false, true, g.Og, K2, P, dy, P, pointwise ? x : cols, P, beta, f32_ptr(cg, out, wg), K2);
        break;
    }
    default: break;
    }
    loop_end(cg, &lg);
    loop_end(cg, &ln);
}

/* the maximum as interp.c takes it, element by element: b replaces a when greater or NaN,
 * unless a is NaN (a NaN sticks; the first of equal values stays). Scalars or vectors. */
static LLVMValueRef pool_pick(Cg *cg, LLVMValueRef a, LLVMValueRef b) {
    LLVMValueRef better = LLVMBuildAnd(cg->b, LLVMBuildFCmp(cg->b, LLVMRealORD, a, a, ""),
                                       LLVMBuildFCmp(cg->b, LLVMRealUGT, b, a, ""), "");
    return sel(cg, better, b, a);
}

static LLVMValueRef splat_i32(Cg *cg, LLVMValueRef x, unsigned lanes) {
    LLVMTypeRef vt = LLVMVectorType(cg->t_i32, lanes);
    LLVMValueRef v = LLVMBuildInsertElement(cg->b, LLVMGetPoison(vt), x, i32c(cg, 0), "");
    return LLVMBuildShuffleVector(cg->b, v, LLVMGetPoison(vt), LLVMConstNull(vt), "");
}

static LLVMValueRef lane_numbers(Cg *cg, unsigned lanes, int64_t step, int64_t first) {
    LLVMValueRef c[128];
    for (unsigned i = 0; i < lanes; i++) c[i] = i32c(cg, first + (int64_t)i * step);
    return LLVMConstVector(c, lanes);
}

/* A maxpool whose windows all lie inside the input (no padding), per output row in vectors
 * of POOL_LANES outputs: for each window row, one masked load of the input the vector's
 * windows span, then for each window column the lanes ox*sw + kx*dw picked out by a shuffle.
 * The maximum runs over the window in interp.c's order (row by row, left to right), so the
 * values are the same bit for bit. Windows wider than a vector span take the scalar loop. */
enum { POOL_LANES = 16, POOL_MAX_SPAN = 128 };
static void emit_maxpool_inside(Cg *cg, const ConvGeom *gp, LLVMValueRef xp, LLVMValueRef out, LLVMValueRef planes) {
    ConvGeom g = *gp;
    int64_t span = (POOL_LANES - 1) * g.sw + (g.KW - 1) * g.dw + 1;
    bool vec = span <= POOL_MAX_SPAN;
    Loop lc = loop_begin(cg, planes, "maxpool_c");
    LLVMValueRef in_base = mul64(cg, lc.iv, i64c(cg, g.H * g.W));
    LLVMValueRef out_base = mul64(cg, lc.iv, i64c(cg, g.Ho * g.Wo));
    Loop ly = loop_begin(cg, i64c(cg, g.Ho), "maxpool_y");
    if (!vec) {
        Loop lx = loop_begin(cg, i64c(cg, g.Wo), "maxpool_x");
        LLVMValueRef m = NULL;
        for (int64_t ky = 0; ky < g.KH; ky++)
            for (int64_t kx = 0; kx < g.KW; kx++) {
                LLVMValueRef iy = add64(cg, mul64(cg, ly.iv, i64c(cg, g.sh)), i64c(cg, ky * g.dh));
                LLVMValueRef ix = add64(cg, mul64(cg, lx.iv, i64c(cg, g.sw)), i64c(cg, kx * g.dw));
                LLVMValueRef e = load_at(cg, DT_F32, xp, add64(cg, in_base, add64(cg, mul64(cg, iy, i64c(cg, g.W)), ix)));
                m = m ? pool_pick(cg, m, e) : e;
            }
        store_at(cg, DT_F32, m, out, add64(cg, out_base, add64(cg, mul64(cg, ly.iv, i64c(cg, g.Wo)), lx.iv)));
        loop_end(cg, &lx);
    } else {
        unsigned L = (unsigned)((span + 15) / 16 * 16);
        LLVMTypeRef vl = LLVMVectorType(cg->t_f32, L), vo = LLVMVectorType(cg->t_f32, POOL_LANES);
        LLVMTypeRef load_types[2] = {vl, cg->t_ptr}, store_types[2] = {vo, cg->t_ptr};
        unsigned load_id = LLVMLookupIntrinsicID("llvm.masked.load", 16);
        unsigned store_id = LLVMLookupIntrinsicID("llvm.masked.store", 17);
        LLVMValueRef load_fn = LLVMGetIntrinsicDeclaration(cg->mod, load_id, load_types, 2);
        LLVMValueRef store_fn = LLVMGetIntrinsicDeclaration(cg->mod, store_id, store_types, 2);
        LLVMTypeRef load_ty = LLVMIntrinsicGetType(cg->ctx, load_id, load_types, 2);
        LLVMTypeRef store_ty = LLVMIntrinsicGetType(cg->ctx, store_id, store_types, 2);
        Loop lv = loop_begin(cg, i64c(cg, (g.Wo + POOL_LANES - 1) / POOL_LANES), "maxpool_v");
        LLVMValueRef ox0 = mul64(cg, lv.iv, i64c(cg, POOL_LANES));
        LLVMValueRef left = LLVMBuildSub(cg->b, i64c(cg, g.Wo), ox0, "");
        LLVMValueRef cnt = sel(cg, LLVMBuildICmp(cg->b, LLVMIntSLT, left, i64c(cg, POOL_LANES), ""), left,
                               i64c(cg, POOL_LANES));
        LLVMValueRef cnt32 = LLVMBuildTrunc(cg->b, cnt, cg->t_i32, "");
        /* input lanes the cnt windows read: (cnt - 1) * sw + (KW - 1) * dw + 1 */
        LLVMValueRef used = LLVMBuildAdd(cg->b, LLVMBuildMul(cg->b, LLVMBuildSub(cg->b, cnt32, i32c(cg, 1), ""),
                                                             i32c(cg, g.sw), ""),
                                         i32c(cg, (g.KW - 1) * g.dw + 1), "");
        LLVMValueRef in_mask = LLVMBuildICmp(cg->b, LLVMIntULT, lane_numbers(cg, L, 1, 0), splat_i32(cg, used, L), "");
        LLVMValueRef out_mask =
            LLVMBuildICmp(cg->b, LLVMIntULT, lane_numbers(cg, POOL_LANES, 1, 0), splat_i32(cg, cnt32, POOL_LANES), "");
        LLVMValueRef m = NULL;
        for (int64_t ky = 0; ky < g.KH; ky++) {
            LLVMValueRef iy = add64(cg, mul64(cg, ly.iv, i64c(cg, g.sh)), i64c(cg, ky * g.dh));
            LLVMValueRef at = add64(cg, in_base, add64(cg, mul64(cg, iy, i64c(cg, g.W)), mul64(cg, ox0, i64c(cg, g.sw))));
            LLVMValueRef args[4] = {f32_ptr(cg, xp, at), i32c(cg, 4), in_mask, LLVMConstNull(vl)};
            LLVMValueRef row = call(cg, load_ty, load_fn, args, 4);
            for (int64_t kx = 0; kx < g.KW; kx++) {
                LLVMValueRef e = LLVMBuildShuffleVector(cg->b, row, LLVMGetPoison(vl),
                                                        lane_numbers(cg, POOL_LANES, g.sw, kx * g.dw), "");
                m = m ? pool_pick(cg, m, e) : e;
            }
        }
        LLVMValueRef dst = add64(cg, out_base, add64(cg, mul64(cg, ly.iv, i64c(cg, g.Wo)), ox0));
        LLVMValueRef sargs[4] = {m, f32_ptr(cg, out, dst), i32c(cg, 4), out_mask};
        call(cg, store_ty, store_fn, sargs, 4);
        loop_end(cg, &lv);
    }
    loop_end(cg, &ly);
    loop_end(cg, &lc);
}

/* maxpool2d, avgpool2d, maxpool2d_grad: for every (image, channel, oy, ox), the window
 * perm[0] x perm[1] at stride step, padding start (padded positions: -inf for max, 0 for avg;
 * avg divides by KH*KW always). maxpool2d_grad adds dy at the window's first maximum (a NaN
 * counts as the maximum, as argmax). */
static void emit_pool(Cg *cg, Ref v) {
    const Node *n = &cg->f->nodes[v];
    if (n->dtype != DT_F32) {
        cg_error(cg, "the LLVM backend supports %s of f32 values only", op_info[n->op].name);
        return;
    }
    ConvGeom g = conv_geom(cg->f, n);
    const Node *x = in_node(cg, n, 0);
    LLVMValueRef xp = node_ptr(cg, n->in[0]), out = node_ptr(cg, v);
    bool grad = n->op == OP_maxpool2d_grad, avg = n->op == OP_avgpool2d;
    if (grad) {
        Loop lz = loop_begin(cg, numel_value(cg, &n->shape), "dx0");
        store_at(cg, DT_F32, LLVMConstReal(cg->t_f32, 0), out, lz.iv);
        loop_end(cg, &lz);
    }
    if (!grad && !avg && g.pt == 0 && g.pl == 0 && (g.Ho - 1) * g.sh + (g.KH - 1) * g.dh < g.H &&
        (g.Wo - 1) * g.sw + (g.KW - 1) * g.dw < g.W) {
        /* maxpool whose windows all lie inside the input: no bounds checks, no index */
        LLVMValueRef planes = mul64(cg, dim_value(cg, &x->shape, 0), i64c(cg, g.C));
        emit_maxpool_inside(cg, &g, xp, out, planes);
        return;
    }
    LLVMTypeRef acc_t = avg ? cg->t_f64 : cg->t_f32;
    LLVMValueRef acc = entry_alloca(cg, acc_t, "pool"), arg = entry_alloca(cg, cg->t_i64, "pool_arg");
    LLVMValueRef planes = mul64(cg, dim_value(cg, &x->shape, 0), i64c(cg, g.C));
    Loop lc = loop_begin(cg, planes, "pool_c");
    LLVMValueRef in_base = mul64(cg, lc.iv, i64c(cg, g.H * g.W)), out_base = mul64(cg, lc.iv, i64c(cg, g.Ho * g.Wo));
    Loop ly = loop_begin(cg, i64c(cg, g.Ho), "pool_y");
    Loop lx = loop_begin(cg, i64c(cg, g.Wo), "pool_x");
    LLVMBuildStore(cg->b, avg ? LLVMConstReal(cg->t_f64, 0) : LLVMConstReal(cg->t_f32, -INFINITY), acc);
    LLVMBuildStore(cg->b, i64c(cg, -1), arg);
    Loop lky = loop_begin(cg, i64c(cg, g.KH), "pool_ky");
    LLVMValueRef iy = window_coord(cg, ly.iv, g.sh, g.pt, lky.iv, g.dh);
    Loop lkx = loop_begin(cg, i64c(cg, g.KW), "pool_kx");
    LLVMValueRef ix = window_coord(cg, lx.iv, g.sw, g.pl, lkx.iv, g.dw);
    LLVMValueRef ok = LLVMBuildAnd(cg->b, in_range(cg, iy, g.H), in_range(cg, ix, g.W), "");
    LLVMBasicBlockRef join = if_begin(cg, ok);
    LLVMValueRef src = add64(cg, in_base, add64(cg, mul64(cg, iy, i64c(cg, g.W)), ix));
    LLVMValueRef e = load_at(cg, DT_F32, xp, src), cur = load_var(cg, acc_t, acc);
    if (avg) {
        LLVMBuildStore(cg->b, reassoc(f_add(cg, cur, to_double(cg, DT_F32, e))), acc);
    } else {
        /* the first maximum; a NaN wins and sticks */
        LLVMValueRef first = LLVMBuildICmp(cg->b, LLVMIntSLT, load_var(cg, cg->t_i64, arg), i64c(cg, 0), "");
        LLVMValueRef better = LLVMBuildAnd(cg->b, LLVMBuildFCmp(cg->b, LLVMRealORD, cur, cur, ""),
                                           LLVMBuildFCmp(cg->b, LLVMRealUGT, e, cur, ""), "");
        better = LLVMBuildOr(cg->b, first, better, "");
        LLVMBuildStore(cg->b, sel(cg, better, e, cur), acc);
        LLVMBuildStore(cg->b, sel(cg, better, src, load_var(cg, cg->t_i64, arg)), arg);
    }
    if_end(cg, join);
    loop_end(cg, &lkx);
    loop_end(cg, &lky);
    LLVMValueRef dst = add64(cg, out_base, add64(cg, mul64(cg, ly.iv, i64c(cg, g.Wo)), lx.iv));
    if (avg) {
        LLVMValueRef mean = f_div(cg, load_var(cg, acc_t, acc), LLVMConstReal(cg->t_f64, (double)(g.KH * g.KW)));
        store_at(cg, DT_F32, from_double(cg, DT_F32, mean), out, dst);
    } else if (!grad) {
        store_at(cg, DT_F32, load_var(cg, acc_t, acc), out, dst);
    } else {
        LLVMValueRef at = load_var(cg, cg->t_i64, arg);
        LLVMBasicBlockRef j2 = if_begin(cg, LLVMBuildICmp(cg->b, LLVMIntSGE, at, i64c(cg, 0), ""));
        LLVMValueRef dy = load_at(cg, DT_F32, node_ptr(cg, n->in[1]), dst);
        store_at(cg, DT_F32, f_add(cg, load_at(cg, DT_F32, out, at), dy), out, at);
        if_end(cg, j2);
    }
    loop_end(cg, &lx);
    loop_end(cg, &ly);
    loop_end(cg, &lc);
}

/* upsample2d by perm[0] x perm[1]: nearest (flag 0): out[y, x] = in[y / sh, x / sw];
 * bilinear (flag 1, align_corners=False): source (y + 0.5) / sh - 0.5 clamped below at 0,
 * interpolating between floor and floor + 1 (clamped to H - 1); the same along x. */
static void emit_upsample(Cg *cg, Ref v) {
    const Node *n = &cg->f->nodes[v];
    const Node *x = in_node(cg, n, 0);
    if (n->dtype != DT_F32) {
        cg_error(cg, "the LLVM backend supports upsample2d of f32 values only");
        return;
    }
    int64_t H = x->shape.dim[2], W = x->shape.dim[3], Ho = n->shape.dim[2], Wo = n->shape.dim[3];
    int64_t sh = at_least_1(n->attr.perm[0]), sw = at_least_1(n->attr.perm[1]);
    LLVMValueRef xp = node_ptr(cg, n->in[0]), out = node_ptr(cg, v);
    LLVMValueRef planes = mul64(cg, dim_value(cg, &x->shape, 0), i64c(cg, x->shape.dim[1]));
    Loop lc = loop_begin(cg, planes, "up_c");
    LLVMValueRef in_base = mul64(cg, lc.iv, i64c(cg, H * W)), out_base = mul64(cg, lc.iv, i64c(cg, Ho * Wo));
    Loop ly = loop_begin(cg, i64c(cg, Ho), "up_y");
    Loop lx = loop_begin(cg, i64c(cg, Wo), "up_x");
    LLVMValueRef value;
    if (!n->attr.flag) {
        LLVMValueRef iy = LLVMBuildSDiv(cg->b, ly.iv, i64c(cg, sh), ""), ix = LLVMBuildSDiv(cg->b, lx.iv, i64c(cg, sw), "");
        value = load_at(cg, DT_F32, xp, add64(cg, in_base, add64(cg, mul64(cg, iy, i64c(cg, W)), ix)));
    } else {
        /* per axis: the two source indices and the weight of the second */
        LLVMValueRef idx[2][2], frac[2];
        LLVMValueRef pos[2] = {ly.iv, lx.iv};
        int64_t scale[2] = {sh, sw}, size[2] = {H, W};
        for (int a = 0; a < 2; a++) {
            LLVMValueRef src = f_sub(cg, f_div(cg, f_add(cg, LLVMBuildSIToFP(cg->b, pos[a], cg->t_f64, ""),
                                                         LLVMConstReal(cg->t_f64, 0.5)),
                                               LLVMConstReal(cg->t_f64, (double)scale[a])),
                                     LLVMConstReal(cg->t_f64, 0.5));
            src = sel(cg, f_lt(cg, src, LLVMConstReal(cg->t_f64, 0)), LLVMConstReal(cg->t_f64, 0), src);
            LLVMValueRef lo = LLVMBuildFPToSI(cg->b, src, cg->t_i64, "");
            lo = sel(cg, LLVMBuildICmp(cg->b, LLVMIntSGT, lo, i64c(cg, size[a] - 1), ""), i64c(cg, size[a] - 1), lo);
            LLVMValueRef hi = add64(cg, lo, i64c(cg, 1));
            hi = sel(cg, LLVMBuildICmp(cg->b, LLVMIntSGT, hi, i64c(cg, size[a] - 1), ""), i64c(cg, size[a] - 1), hi);
            idx[a][0] = lo, idx[a][1] = hi;
            frac[a] = f_sub(cg, src, LLVMBuildSIToFP(cg->b, lo, cg->t_f64, ""));
        }
        LLVMValueRef sum = LLVMConstReal(cg->t_f64, 0);
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 2; j++) {
                LLVMValueRef wy = i ? frac[0] : f_sub(cg, LLVMConstReal(cg->t_f64, 1), frac[0]);
                LLVMValueRef wx = j ? frac[1] : f_sub(cg, LLVMConstReal(cg->t_f64, 1), frac[1]);
                LLVMValueRef e = load_at(cg, DT_F32, xp, add64(cg, in_base, add64(cg, mul64(cg, idx[0][i], i64c(cg, W)), idx[1][j])));
                sum = f_add(cg, sum, f_mul(cg, f_mul(cg, wy, wx), to_double(cg, DT_F32, e)));
            }
        value = from_double(cg, DT_F32, sum);
    }
    store_at(cg, DT_F32, value, out, add64(cg, out_base, add64(cg, mul64(cg, ly.iv, i64c(cg, Wo)), lx.iv)));
    loop_end(cg, &lx);
    loop_end(cg, &ly);
    loop_end(cg, &lc);
}

/* lrn over channels (axis 1) of x[N, C, ...], size s = perm[0]:
 * out[c] = x[c] / (k + alpha/s sum_{c'=c-s/2}^{c+(s-1)/2} x[c']^2)^beta, absent channels 0 */
static void emit_lrn(Cg *cg, Ref v) {
    const Node *n = &cg->f->nodes[v];
    if (n->dtype != DT_F32) {
        cg_error(cg, "the LLVM backend supports lrn of f32 values only");
        return;
    }
    int64_t C = n->shape.dim[1], size = at_least_1(n->attr.perm[0]);
    double alpha = n->attr.f[0], beta = n->attr.f[1], k = n->attr.f[2];
    LLVMValueRef inner = dims_product(cg, &n->shape, 2, n->shape.rank);
    LLVMValueRef xp = node_ptr(cg, n->in[0]), out = node_ptr(cg, v);
    LLVMValueRef acc = entry_alloca(cg, cg->t_f64, "lrn");
    Loop ln = loop_begin(cg, dim_value(cg, &n->shape, 0), "lrn_n");
    Loop lc = loop_begin(cg, i64c(cg, C), "lrn_c");
    Loop li = loop_begin(cg, inner, "lrn_i");
    LLVMBuildStore(cg->b, LLVMConstReal(cg->t_f64, 0), acc);
    LLVMValueRef plane = mul64(cg, ln.iv, i64c(cg, C));
    Loop lj = loop_begin(cg, i64c(cg, size), "lrn_j");
    LLVMValueRef cc = add64(cg, lc.iv, add64(cg, lj.iv, i64c(cg, -(size / 2))));
    LLVMBasicBlockRef join = if_begin(cg, in_range(cg, cc, C));
    LLVMValueRef e = to_double(cg, DT_F32, load_at(cg, DT_F32, xp, add64(cg, mul64(cg, add64(cg, plane, cc), inner), li.iv)));
    LLVMBuildStore(cg->b, f_add(cg, load_var(cg, cg->t_f64, acc), f_mul(cg, e, e)), acc);
    if_end(cg, join);
    loop_end(cg, &lj);
    LLVMValueRef at = add64(cg, mul64(cg, add64(cg, plane, lc.iv), inner), li.iv);
    LLVMValueRef denom = f_add(cg, LLVMConstReal(cg->t_f64, k),
                               f_mul(cg, LLVMConstReal(cg->t_f64, alpha / (double)size), load_var(cg, cg->t_f64, acc)));
    denom = libm2(cg, "pow", DT_F64, denom, LLVMConstReal(cg->t_f64, beta));
    LLVMValueRef xv = to_double(cg, DT_F32, load_at(cg, DT_F32, xp, at));
    store_at(cg, DT_F32, from_double(cg, DT_F32, f_div(cg, xv, denom)), out, at);
    loop_end(cg, &li);
    loop_end(cg, &lc);
    loop_end(cg, &ln);
}

/* ---- the LSTM over a sequence (lstm_seq, lstm_seq_grad; ops.h has the formulas) */

/* C[M, N] = op(A) op(B) + beta C through nnrt_sgemm, with run-time M (the batch) and leading
 * dimensions that step over the time axis of [B, T, ...] tensors. */
static void lstm_sgemm(Cg *cg, bool tb, LLVMValueRef M, int64_t N, int64_t K, LLVMValueRef a, int64_t lda,
                       LLVMValueRef b, int64_t ldb, LLVMValueRef c, int64_t ldc) {
    LLVMValueRef args[] = {i32c(cg, 0), i32c(cg, tb), to_i32(cg, M), i32c(cg, N), i32c(cg, K),
                           LLVMConstReal(cg->t_f32, 1), a, i32c(cg, lda), b, i32c(cg, ldb),
                           LLVMConstReal(cg->t_f32, 0), c, i32c(cg, ldc)};
    runtime_call(cg, RT_SGEMM, args, 13);
}

static void zero_floats(Cg *cg, LLVMValueRef p, LLVMValueRef count, const char *name) {
    Loop l = loop_begin(cg, count, name);
    store_at(cg, DT_F32, LLVMConstReal(cg->t_f32, 0), p, l.iv);
    loop_end(cg, &l);
}

/* ---- kernels with a loop of their own: a small internal function whose pointer parameters
 * are noalias. Every value of a call lives in the one work buffer, so within a kernel that
 * reads and writes rows of it at offsets only known at run time, LLVM cannot prove that the
 * rows do not overlap and leaves the loop scalar; as separate parameters they are known not
 * to, and the loop vectorizes. */

static LLVMValueRef add_internal(Cg *cg, const char *name, LLVMTypeRef fty, bool noinline);

typedef struct SubFn {
    LLVMValueRef fn, saved_fn;
    LLVMBasicBlockRef saved_block, saved_alloca;
} SubFn;

/* Opens void NAME(ptr noalias x nptr, i64 x ni64); the parameters go to params. */
static void sub_begin(Cg *cg, SubFn *sf, const char *what, Ref v, int nptr, int ni64, LLVMValueRef *params) {
    LLVMTypeRef types[16];
    for (int i = 0; i < nptr + ni64; i++) types[i] = i < nptr ? cg->t_ptr : cg->t_i64;
    char name[256];
    snprintf(name, sizeof name, "%s__%s_%s%d", cg->m->name, cg->f->name, what, (int)v);
    sf->saved_fn = cg->fn;
    sf->saved_block = LLVMGetInsertBlock(cg->b);
    sf->saved_alloca = cg->alloca_block;
    sf->fn = add_internal(cg, name, LLVMFunctionType(cg->t_void, types, (unsigned)(nptr + ni64), 0), true);
    cg->fn = sf->fn;
    cg->alloca_block = LLVMAppendBasicBlockInContext(cg->ctx, sf->fn, "entry");
    LLVMPositionBuilderAtEnd(cg->b, cg->alloca_block);
    for (int i = 0; i < nptr + ni64; i++) params[i] = LLVMGetParam(sf->fn, (unsigned)i);
}

static void sub_end(Cg *cg, SubFn *sf) {
    LLVMBuildRetVoid(cg->b);
    cg->fn = sf->saved_fn;
    cg->alloca_block = sf->saved_alloca;
    LLVMPositionBuilderAtEnd(cg->b, sf->saved_block);
}

static void sub_call(Cg *cg, SubFn *sf, LLVMValueRef *args, unsigned n) {
    LLVMTypeRef types[16];
    for (unsigned i = 0; i < n; i++) types[i] = LLVMTypeOf(args[i]);
    call(cg, LLVMFunctionType(cg->t_void, types, n, 0), sf->fn, args, n);
}

/* The time loops of the gated cells (LSTM, GRU), which differ only in widths. Rows of ws
 * are [B, T, ws_width]; the state the cell carries from step to step (c for the LSTM, h for
 * the GRU) sits at carried_at in a row; xw and the scratch p have `gates` parts of H. */
typedef struct GatedSeq {
    int64_t T, H, gates, ws_width, carried_at;
} GatedSeq;

/* Forward: p = h_{t-1} w_hh^T by one sgemm into scratch (h_{t-1} read in place from ws,
 * leading dimension T * ws_width; skipped at t = 0, p = 0 then), then per (b, t) the cell
 * (xw row, p row, [extra,] the carried row of step t-1 (p's zero row at t = 0), ws row). */
static void gated_seq_loop(Cg *cg, const GatedSeq *s, SubFn *cell, LLVMValueRef B, LLVMValueRef xw, LLVMValueRef w,
                           LLVMValueRef extra, LLVMValueRef ws, LLVMValueRef p) {
    int64_t T = s->T, H = s->H, G = s->gates * s->H, W = s->ws_width;
    zero_floats(cg, p, mul64(cg, B, i64c(cg, G)), "seq_p0");
    Loop lt = loop_begin(cg, i64c(cg, T), "seq_t");
    LLVMValueRef t = lt.iv, has_prev = LLVMBuildICmp(cg->b, LLVMIntSGT, t, i64c(cg, 0), "");
    LLVMValueRef tprev = sel(cg, has_prev, add64(cg, t, i64c(cg, -1)), i64c(cg, 0));
    LLVMBasicBlockRef join = if_begin(cg, has_prev);
    lstm_sgemm(cg, true, B, G, H, f32_ptr(cg, ws, mul64(cg, tprev, i64c(cg, W))), T * W, w, H, p, G);
    if_end(cg, join);
    Loop lb = loop_begin(cg, B, "seq_b");
    LLVMValueRef bt = add64(cg, mul64(cg, lb.iv, i64c(cg, T)), t);
    LLVMValueRef prow = f32_ptr(cg, p, mul64(cg, lb.iv, i64c(cg, G)));
    LLVMValueRef carried =
        add64(cg, mul64(cg, add64(cg, mul64(cg, lb.iv, i64c(cg, T)), tprev), i64c(cg, W)), i64c(cg, s->carried_at));
    LLVMValueRef args[5];
    unsigned na = 0;
    args[na++] = f32_ptr(cg, xw, mul64(cg, bt, i64c(cg, G)));
    args[na++] = prow;
    if (extra) args[na++] = extra;
    args[na++] = sel(cg, has_prev, f32_ptr(cg, ws, carried), prow);
    args[na++] = f32_ptr(cg, ws, mul64(cg, bt, i64c(cg, W)));
    sub_call(cg, cell, args, na);
    loop_end(cg, &lb);
    loop_end(cg, &lt);
}

/* Backward in time: q = dG_{t+1}[0 : gates H] w_hh by one sgemm into scratch [B, H]
 * (skipped at T-1, q = 0), then per (b, t) the cell's gradient (ws row, the carried row of
 * step t-1 (any readable row at t = 0: the cell selects 0), d row [D], q row, carry row,
 * dG row [4H], has_prev); carry (scratch [B, H], zero at first) is the cell's to update. */
typedef struct GatedGrad {
    GatedSeq seq;
    int64_t D;                                  /* width of d's rows: ws_width, or H */
    LLVMValueRef B, ws, w, d, dG, q, carry;     /* q and carry: the node's scratch, [B, H] each */
} GatedGrad;

/* The operands of lstm_seq_grad (gates 4, ws rows 6H, c carried at H) or gru_seq_grad
 * (3, 5H, h at 0): dG = op(ws, w_hh, d), dG [B, T, 4H]. */
static GatedGrad gated_grad_operands(Cg *cg, Ref v, int gates, int parts) {
    const Node *n = &cg->f->nodes[v];
    GatedGrad g;
    int64_t H = n->shape.dim[2] / 4, max_rows = shape_dim(&n->shape, 0, cg->m->max_batch);
    g.seq = (GatedSeq){.T = n->shape.dim[1], .H = H, .gates = gates, .ws_width = parts * H, .carried_at = gates == 4 ? H : 0};
    g.D = in_node(cg, n, 2)->shape.dim[2];
    g.B = dim_value(cg, &n->shape, 0);
    g.ws = node_ptr(cg, n->in[0]);
    g.w = node_ptr(cg, n->in[1]);
    g.d = node_ptr(cg, n->in[2]);
    g.dG = node_ptr(cg, v);
    g.q = byte_ptr(cg, cg->work, cg->plan.nodes[v].scratch_offset);
    g.carry = byte_ptr(cg, cg->work, cg->plan.nodes[v].scratch_offset + max_rows * H * 4);
    return g;
}

static void gated_seq_grad_loop(Cg *cg, const GatedGrad *g, SubFn *cell) {
    const GatedSeq *s = &g->seq;
    int64_t T = s->T, H = s->H, W = s->ws_width, D = g->D;
    LLVMValueRef B = g->B, ws = g->ws, w = g->w, d = g->d, dG = g->dG, q = g->q, carry = g->carry;
    zero_floats(cg, q, mul64(cg, B, i64c(cg, H)), "seq_q0");
    zero_floats(cg, carry, mul64(cg, B, i64c(cg, H)), "seq_carry0");
    Loop lk = loop_begin(cg, i64c(cg, T), "seq_t");
    LLVMValueRef t = LLVMBuildNSWSub(cg->b, i64c(cg, T - 1), lk.iv, "");
    LLVMValueRef has_prev = LLVMBuildICmp(cg->b, LLVMIntSGT, t, i64c(cg, 0), "");
    LLVMValueRef tprev = sel(cg, has_prev, add64(cg, t, i64c(cg, -1)), i64c(cg, 0));
    LLVMBasicBlockRef join = if_begin(cg, LLVMBuildICmp(cg->b, LLVMIntSGT, lk.iv, i64c(cg, 0), ""));
    lstm_sgemm(cg, false, B, H, s->gates * H, f32_ptr(cg, dG, mul64(cg, add64(cg, t, i64c(cg, 1)), i64c(cg, 4 * H))),
               T * 4 * H, w, H, q, H);
    if_end(cg, join);
    Loop lb = loop_begin(cg, B, "seq_b");
    LLVMValueRef bt = add64(cg, mul64(cg, lb.iv, i64c(cg, T)), t), srow = mul64(cg, lb.iv, i64c(cg, H));
    LLVMValueRef carried =
        add64(cg, mul64(cg, add64(cg, mul64(cg, lb.iv, i64c(cg, T)), tprev), i64c(cg, W)), i64c(cg, s->carried_at));
    LLVMValueRef args[7] = {f32_ptr(cg, ws, mul64(cg, bt, i64c(cg, W))), f32_ptr(cg, ws, carried),
                            f32_ptr(cg, d, mul64(cg, bt, i64c(cg, D))), f32_ptr(cg, q, srow), f32_ptr(cg, carry, srow),
                            f32_ptr(cg, dG, mul64(cg, bt, i64c(cg, 4 * H))), LLVMBuildZExt(cg->b, has_prev, cg->t_i64, "")};
    sub_call(cg, cell, args, 7);
    loop_end(cg, &lb);
    loop_end(cg, &lk);
}

/* ws = lstm_seq(xw, w_hh), one step at a time:
 *   p = h_{t-1} w_hh^T            one sgemm into scratch [B, 4H]; h_{t-1} is read in place
 *                                 from ws (leading dimension T*6H); skipped at t = 0 (p = 0)
 *   then per (b, t) one call of the cell: the four gates of xw[b, t] + p, c and h, into
 *   ws[b, t], in one loop over j < H. */
static void emit_lstm_seq(Cg *cg, Ref v) {
    const Node *n = &cg->f->nodes[v];
    if (n->dtype != DT_F32) {
        cg_error(cg, "the LLVM backend supports lstm_seq of f32 values only");
        return;
    }
    int64_t T = n->shape.dim[1], H = n->shape.dim[2] / 6;
    LLVMValueRef B = dim_value(cg, &n->shape, 0);
    LLVMValueRef xw = node_ptr(cg, n->in[0]), w = node_ptr(cg, n->in[1]), ws = node_ptr(cg, v);
    LLVMValueRef p = byte_ptr(cg, cg->work, cg->plan.nodes[v].scratch_offset);
    Attr none = {0};

    /* cell(xw row [4H], p row [4H], c_{t-1} [H] (zeros at t = 0), out row of ws [6H]) */
    SubFn cell;
    LLVMValueRef a[4];
    sub_begin(cg, &cell, "lstm_cell", v, 4, 0, a);
    Loop lj = loop_begin(cg, i64c(cg, H), "lstm_j");
    LLVMValueRef j = lj.iv, gate[4];
    for (int k = 0; k < 4; k++) {
        LLVMValueRef at = add64(cg, j, i64c(cg, k * H));
        LLVMValueRef pre = f_add(cg, load_at(cg, DT_F32, a[0], at), load_at(cg, DT_F32, a[1], at));
        gate[k] = activation(cg, k == 2 ? OP_tanh : OP_sigmoid, &none, DT_F32, pre);
    }
    LLVMValueRef c = f_add(cg, f_mul(cg, gate[1], load_at(cg, DT_F32, a[2], j)), f_mul(cg, gate[0], gate[2]));
    LLVMValueRef h = f_mul(cg, gate[3], activation(cg, OP_tanh, &none, DT_F32, c));
    LLVMValueRef parts[6] = {h, c, gate[0], gate[1], gate[2], gate[3]};
    for (int k = 0; k < 6; k++) store_at(cg, DT_F32, parts[k], a[3], add64(cg, j, i64c(cg, k * H)));
    loop_end(cg, &lj);
    sub_end(cg, &cell);

    GatedSeq seq = {.T = T, .H = H, .gates = 4, .ws_width = 6 * H, .carried_at = H};
    gated_seq_loop(cg, &seq, &cell, B, xw, w, NULL, ws, p);
}

/* dG = lstm_seq_grad(ws, w_hh, d), backwards in time:
 *   q = dG_{t+1} w_hh             one sgemm into scratch [B, H]; dG_{t+1} is read in place from
 *                                 the result (leading dimension T*4H); skipped at T-1 (q = 0)
 *   then per (b, t) one call of the cell's gradient: dh, dc (plus the carry dc_{t+1} f_{t+1},
 *   kept in scratch), the four gate gradients into dG[b, t], and the next carry dc f, in one
 *   loop over j < H. d is [B, T, 6H] or its h part [B, T, H] (the other parts zero: not read). */
static void emit_lstm_seq_grad(Cg *cg, Ref v) {
    const Node *n = &cg->f->nodes[v];
    if (n->dtype != DT_F32) {
        cg_error(cg, "the LLVM backend supports lstm_seq_grad of f32 values only");
        return;
    }
    GatedGrad op = gated_grad_operands(cg, v, 4, 6);
    int64_t H = op.seq.H, D = op.D;
    bool full = D == 6 * H;
    LLVMValueRef zero = LLVMConstReal(cg->t_f32, 0), one = LLVMConstReal(cg->t_f32, 1);
    Attr none = {0};

    /* cell(ws row [6H], c_{t-1} [H], d row [D], q row [H], carry row [H], dG row [4H], has_prev) */
    SubFn cell;
    LLVMValueRef a[7];
    sub_begin(cg, &cell, "lstm_cell_grad", v, 6, 1, a);
    LLVMValueRef prev = LLVMBuildICmp(cg->b, LLVMIntNE, a[6], i64c(cg, 0), "");
    Loop lj = loop_begin(cg, i64c(cg, H), "lstm_j");
    LLVMValueRef j = lj.iv, part[6], dpart[6];
    for (int k = 1; k < 6; k++) part[k] = load_at(cg, DT_F32, a[0], add64(cg, j, i64c(cg, k * H)));
    for (int k = 1; k < 6; k++) dpart[k] = full ? load_at(cg, DT_F32, a[2], add64(cg, j, i64c(cg, k * H))) : NULL;
    LLVMValueRef c = part[1], i = part[2], f = part[3], g = part[4], o = part[5];
    LLVMValueRef c_prev = sel(cg, prev, load_at(cg, DT_F32, a[1], j), zero);
    LLVMValueRef tc = activation(cg, OP_tanh, &none, DT_F32, c);
    LLVMValueRef dh = f_add(cg, load_at(cg, DT_F32, a[2], j), load_at(cg, DT_F32, a[3], j));
    LLVMValueRef dc = f_mul(cg, f_mul(cg, dh, o), f_sub(cg, one, f_mul(cg, tc, tc)));
    if (full) dc = f_add(cg, dpart[1], dc);
    dc = f_add(cg, dc, load_at(cg, DT_F32, a[4], j));
    LLVMValueRef d_o = f_mul(cg, dh, tc), di = f_mul(cg, dc, g), dg = f_mul(cg, dc, i), df = f_mul(cg, dc, c_prev);
    if (full) {
        di = f_add(cg, di, dpart[2]);
        df = f_add(cg, df, dpart[3]);
        dg = f_add(cg, dg, dpart[4]);
        d_o = f_add(cg, d_o, dpart[5]);
    }
    LLVMValueRef grads[4] = {f_mul(cg, f_mul(cg, di, i), f_sub(cg, one, i)), f_mul(cg, f_mul(cg, df, f), f_sub(cg, one, f)),
                             f_mul(cg, dg, f_sub(cg, one, f_mul(cg, g, g))), f_mul(cg, f_mul(cg, d_o, o), f_sub(cg, one, o))};
    for (int k = 0; k < 4; k++) store_at(cg, DT_F32, grads[k], a[5], add64(cg, j, i64c(cg, k * H)));
    store_at(cg, DT_F32, f_mul(cg, dc, f), a[4], j);
    loop_end(cg, &lj);
    sub_end(cg, &cell);

    gated_seq_grad_loop(cg, &op, &cell);
}

/* ---- the Elman RNN over a sequence (rnn_seq, rnn_seq_grad; ops.h has the formulas) */

/* h = rnn_seq(xw, w_hh), one step at a time: h_{t-1} w_hh^T by one sgemm straight into the
 * step's rows of h (skipped at t = 0), then per (b, t) the cell: h = act(xw + that). */
static void emit_rnn_seq(Cg *cg, Ref v) {
    const Node *n = &cg->f->nodes[v];
    if (n->dtype != DT_F32) {
        cg_error(cg, "the LLVM backend supports rnn_seq of f32 values only");
        return;
    }
    int64_t T = n->shape.dim[1], H = n->shape.dim[2];
    LLVMValueRef B = dim_value(cg, &n->shape, 0);
    LLVMValueRef xw = node_ptr(cg, n->in[0]), w = node_ptr(cg, n->in[1]), h = node_ptr(cg, v);
    Attr none = {0};

    /* cell(xw row [H], h row [H], has_prev) */
    SubFn cell;
    LLVMValueRef a[3];
    sub_begin(cg, &cell, "rnn_cell", v, 2, 1, a);
    LLVMValueRef prev = LLVMBuildICmp(cg->b, LLVMIntNE, a[2], i64c(cg, 0), "");
    Loop lj = loop_begin(cg, i64c(cg, H), "rnn_j");
    LLVMValueRef p = sel(cg, prev, load_at(cg, DT_F32, a[1], lj.iv), LLVMConstReal(cg->t_f32, 0));
    LLVMValueRef y = activation(cg, (Op)n->attr.fwd_op, &none, DT_F32, f_add(cg, load_at(cg, DT_F32, a[0], lj.iv), p));
    store_at(cg, DT_F32, y, a[1], lj.iv);
    loop_end(cg, &lj);
    sub_end(cg, &cell);

    Loop lt = loop_begin(cg, i64c(cg, T), "rnn_t");
    LLVMValueRef t = lt.iv, has_prev = LLVMBuildICmp(cg->b, LLVMIntSGT, t, i64c(cg, 0), "");
    LLVMBasicBlockRef join = if_begin(cg, has_prev);
    lstm_sgemm(cg, true, B, H, H, f32_ptr(cg, h, mul64(cg, add64(cg, t, i64c(cg, -1)), i64c(cg, H))), T * H, w, H,
               f32_ptr(cg, h, mul64(cg, t, i64c(cg, H))), T * H);
    if_end(cg, join);
    Loop lb = loop_begin(cg, B, "rnn_b");
    LLVMValueRef row = mul64(cg, add64(cg, mul64(cg, lb.iv, i64c(cg, T)), t), i64c(cg, H));
    LLVMValueRef args[3] = {f32_ptr(cg, xw, row), f32_ptr(cg, h, row), LLVMBuildZExt(cg->b, has_prev, cg->t_i64, "")};
    sub_call(cg, &cell, args, 3);
    loop_end(cg, &lb);
    loop_end(cg, &lt);
}

/* dP = rnn_seq_grad(h, w_hh, d), backwards in time: q = dP_{t+1} w_hh by one sgemm into
 * scratch [B, H] (q = 0 at T-1), then per (b, t) dP = (d + q) act'(h). */
static void emit_rnn_seq_grad(Cg *cg, Ref v) {
    const Node *n = &cg->f->nodes[v];
    if (n->dtype != DT_F32) {
        cg_error(cg, "the LLVM backend supports rnn_seq_grad of f32 values only");
        return;
    }
    int64_t T = n->shape.dim[1], H = n->shape.dim[2];
    LLVMValueRef B = dim_value(cg, &n->shape, 0);
    LLVMValueRef h = node_ptr(cg, n->in[0]), w = node_ptr(cg, n->in[1]), d = node_ptr(cg, n->in[2]);
    LLVMValueRef dp = node_ptr(cg, v), q = byte_ptr(cg, cg->work, cg->plan.nodes[v].scratch_offset);

    /* cell(h row [H], d row [H], q row [H], dP row [H]) */
    SubFn cell;
    LLVMValueRef a[4];
    sub_begin(cg, &cell, "rnn_cell_grad", v, 4, 0, a);
    Loop lj = loop_begin(cg, i64c(cg, H), "rnn_j");
    LLVMValueRef j = lj.iv, hv = load_at(cg, DT_F32, a[0], j);
    LLVMValueRef deriv = n->attr.fwd_op == OP_relu
                             ? sel(cg, f_gt(cg, hv, LLVMConstReal(cg->t_f32, 0)), LLVMConstReal(cg->t_f32, 1),
                                   LLVMConstReal(cg->t_f32, 0))
                             : f_sub(cg, LLVMConstReal(cg->t_f32, 1), f_mul(cg, hv, hv));
    LLVMValueRef g = f_mul(cg, f_add(cg, load_at(cg, DT_F32, a[1], j), load_at(cg, DT_F32, a[2], j)), deriv);
    store_at(cg, DT_F32, g, a[3], j);
    loop_end(cg, &lj);
    sub_end(cg, &cell);

    zero_floats(cg, q, mul64(cg, B, i64c(cg, H)), "rnn_q0");
    Loop lk = loop_begin(cg, i64c(cg, T), "rnn_t");
    LLVMValueRef t = LLVMBuildNSWSub(cg->b, i64c(cg, T - 1), lk.iv, "");
    LLVMBasicBlockRef join = if_begin(cg, LLVMBuildICmp(cg->b, LLVMIntSGT, lk.iv, i64c(cg, 0), ""));
    lstm_sgemm(cg, false, B, H, H, f32_ptr(cg, dp, mul64(cg, add64(cg, t, i64c(cg, 1)), i64c(cg, H))), T * H, w, H, q, H);
    if_end(cg, join);
    Loop lb = loop_begin(cg, B, "rnn_b");
    LLVMValueRef row = mul64(cg, add64(cg, mul64(cg, lb.iv, i64c(cg, T)), t), i64c(cg, H));
    LLVMValueRef args[4] = {f32_ptr(cg, h, row), f32_ptr(cg, d, row), f32_ptr(cg, q, mul64(cg, lb.iv, i64c(cg, H))),
                            f32_ptr(cg, dp, row)};
    sub_call(cg, &cell, args, 4);
    loop_end(cg, &lb);
    loop_end(cg, &lk);
}

/* ---- the GRU over a sequence (gru_seq, gru_seq_grad; ops.h has the formulas), in the
 * LSTM's shape: one sgemm per step, then one cell call per (b, t). */

/* ws = gru_seq(xw, w_hh, b_hh), one step at a time:
 *   p = h_{t-1} w_hh^T            one sgemm into scratch [B, 3H]; skipped at t = 0 (p = 0)
 *   then per (b, t) the cell: q = p + b_hh, the gates, n and h, into ws[b, t]. */
static void emit_gru_seq(Cg *cg, Ref v) {
    const Node *n = &cg->f->nodes[v];
    if (n->dtype != DT_F32) {
        cg_error(cg, "the LLVM backend supports gru_seq of f32 values only");
        return;
    }
    int64_t T = n->shape.dim[1], H = n->shape.dim[2] / 5;
    LLVMValueRef B = dim_value(cg, &n->shape, 0);
    LLVMValueRef xw = node_ptr(cg, n->in[0]), w = node_ptr(cg, n->in[1]), bias = node_ptr(cg, n->in[2]);
    LLVMValueRef ws = node_ptr(cg, v), p = byte_ptr(cg, cg->work, cg->plan.nodes[v].scratch_offset);
    Attr none = {0};

    /* cell(xw row [3H], p row [3H], b_hh [3H], h_{t-1} [H] (zeros at t = 0), out row of ws [5H]) */
    SubFn cell;
    LLVMValueRef a[5];
    sub_begin(cg, &cell, "gru_cell", v, 5, 0, a);
    Loop lj = loop_begin(cg, i64c(cg, H), "gru_j");
    LLVMValueRef j = lj.iv, q[3], x[3];
    for (int k = 0; k < 3; k++) {
        LLVMValueRef at = add64(cg, j, i64c(cg, k * H));
        q[k] = f_add(cg, load_at(cg, DT_F32, a[1], at), load_at(cg, DT_F32, a[2], at));
        x[k] = load_at(cg, DT_F32, a[0], at);
    }
    LLVMValueRef r = activation(cg, OP_sigmoid, &none, DT_F32, f_add(cg, x[0], q[0]));
    LLVMValueRef z = activation(cg, OP_sigmoid, &none, DT_F32, f_add(cg, x[1], q[1]));
    LLVMValueRef ng = activation(cg, OP_tanh, &none, DT_F32, f_add(cg, x[2], f_mul(cg, r, q[2])));
    LLVMValueRef h = f_add(cg, ng, f_mul(cg, z, f_sub(cg, load_at(cg, DT_F32, a[3], j), ng)));
    LLVMValueRef parts[5] = {h, r, z, ng, q[2]};
    for (int k = 0; k < 5; k++) store_at(cg, DT_F32, parts[k], a[4], add64(cg, j, i64c(cg, k * H)));
    loop_end(cg, &lj);
    sub_end(cg, &cell);

    GatedSeq seq = {.T = T, .H = H, .gates = 3, .ws_width = 5 * H, .carried_at = 0};
    gated_seq_loop(cg, &seq, &cell, B, xw, w, bias, ws, p);
}

/* dG = gru_seq_grad(ws, w_hh, d), backwards in time:
 *   q = dG_{t+1}[0:3H] w_hh       one sgemm into scratch [B, H]; skipped at T-1 (q = 0)
 *   then per (b, t) the cell's gradient: dh = d.h + q + carry (carry = dh_{t+1} z_{t+1}, kept
 *   in scratch), the four parts of dG[b, t], and the next carry dh z. */
static void emit_gru_seq_grad(Cg *cg, Ref v) {
    const Node *n = &cg->f->nodes[v];
    if (n->dtype != DT_F32) {
        cg_error(cg, "the LLVM backend supports gru_seq_grad of f32 values only");
        return;
    }
    GatedGrad op = gated_grad_operands(cg, v, 3, 5);
    int64_t H = op.seq.H, D = op.D;
    bool full = D == 5 * H;
    LLVMValueRef zero = LLVMConstReal(cg->t_f32, 0), one = LLVMConstReal(cg->t_f32, 1);

    /* cell(ws row [5H], h_{t-1} [H], d row [D], q row [H], carry row [H], dG row [4H], has_prev) */
    SubFn cell;
    LLVMValueRef a[7];
    sub_begin(cg, &cell, "gru_cell_grad", v, 6, 1, a);
    LLVMValueRef prev = LLVMBuildICmp(cg->b, LLVMIntNE, a[6], i64c(cg, 0), "");
    Loop lj = loop_begin(cg, i64c(cg, H), "gru_j");
    LLVMValueRef j = lj.iv, part[5], dpart[5];
    for (int k = 1; k < 5; k++) part[k] = load_at(cg, DT_F32, a[0], add64(cg, j, i64c(cg, k * H)));
    for (int k = 1; k < 5; k++) dpart[k] = full ? load_at(cg, DT_F32, a[2], add64(cg, j, i64c(cg, k * H))) : NULL;
    LLVMValueRef r = part[1], z = part[2], ng = part[3], hn = part[4];
    LLVMValueRef hp = sel(cg, prev, load_at(cg, DT_F32, a[1], j), zero);
    LLVMValueRef dh = f_add(cg, f_add(cg, load_at(cg, DT_F32, a[2], j), load_at(cg, DT_F32, a[3], j)),
                            load_at(cg, DT_F32, a[4], j));
    LLVMValueRef dn = f_mul(cg, dh, f_sub(cg, one, z)), dz = f_mul(cg, dh, f_sub(cg, hp, ng));
    if (full) {
        dn = f_add(cg, dn, dpart[3]);
        dz = f_add(cg, dz, dpart[2]);
    }
    LLVMValueRef dnp = f_mul(cg, dn, f_sub(cg, one, f_mul(cg, ng, ng)));
    LLVMValueRef dr = f_mul(cg, dnp, hn), dqn = f_mul(cg, dnp, r);
    if (full) {
        dr = f_add(cg, dr, dpart[1]);
        dqn = f_add(cg, dqn, dpart[4]);
    }
    LLVMValueRef grads[4] = {f_mul(cg, f_mul(cg, dr, r), f_sub(cg, one, r)), f_mul(cg, f_mul(cg, dz, z), f_sub(cg, one, z)),
                             dqn, dnp};
    for (int k = 0; k < 4; k++) store_at(cg, DT_F32, grads[k], a[5], add64(cg, j, i64c(cg, k * H)));
    store_at(cg, DT_F32, f_mul(cg, dh, z), a[4], j);
    loop_end(cg, &lj);
    sub_end(cg, &cell);

    gated_seq_grad_loop(cg, &op, &cell);
}

/* Emits the computation of materialized node v into node_ptr(cg, v). */
static void emit_node(Cg *cg, Ref v) {
    const Node *n = &cg->f->nodes[v];
    switch (n->op) {
    case OP_sum:
    case OP_mean:
    case OP_max: emit_reduce(cg, v); break;
    case OP_argmax: emit_argmax(cg, v); break;
    case OP_matmul: emit_matmul(cg, v); break;
    case OP_concat: emit_concat(cg, v); break;
    case OP_gather: emit_gather(cg, v); break;
    case OP_scatter_add: emit_scatter_add(cg, v); break;
    case OP_softmax:
    case OP_log_softmax:
    case OP_softmax_grad:
    case OP_log_softmax_grad: emit_softmax_family(cg, v); break;
    case OP_cross_entropy: emit_cross_entropy(cg, v); break;
    case OP_cross_entropy_grad: emit_cross_entropy_grad(cg, v); break;
    case OP_init_fill: emit_init_fill(cg, v); break;
    case OP_rand_uniform: emit_rand_uniform(cg, v); break;
    case OP_store: memcpy_node(cg, node_ptr(cg, v), node_ptr(cg, n->in[0]), n); break;
    case OP_conv2d:
    case OP_conv2d_grad_input:
    case OP_conv2d_grad_weight: emit_conv(cg, v); break;
    case OP_maxpool2d:
    case OP_avgpool2d:
    case OP_maxpool2d_grad: emit_pool(cg, v); break;
    case OP_upsample2d: emit_upsample(cg, v); break;
    case OP_lrn: emit_lrn(cg, v); break;
    case OP_lstm_seq: emit_lstm_seq(cg, v); break;
    case OP_lstm_seq_grad: emit_lstm_seq_grad(cg, v); break;
    case OP_gru_seq: emit_gru_seq(cg, v); break;
    case OP_rnn_seq: emit_rnn_seq(cg, v); break;
    case OP_rnn_seq_grad: emit_rnn_seq_grad(cg, v); break;
    case OP_gru_seq_grad: emit_gru_seq_grad(cg, v); break;
    default:
        if (is_elementwise(n->op) || is_view(n->op) || n->op == OP_const || n->op == OP_batch_size)
            emit_elementwise(cg, v);
        else
            cg_error(cg, "the LLVM backend does not support op '%s' yet", op_info[n->op].name);
        break;
    }
}

/* ================================================================ functions */

static bool is_init(const Func *f) { return !strcmp(f->name, "init"); }

/* Functions that run once per process or per command: init, and loss and grad (only `nnc grad`
 * calls them). Their parts are `optnone`: no IR passes and fast instruction selection. They
 * are a third to a half of a model's code and none of its training or inference time. */
static bool is_cold(const Func *f) {
    return is_init(f) || !strcmp(f->name, "loss") || !strcmp(f->name, "grad");
}

static void add_attr(Cg *cg, LLVMValueRef fn, LLVMAttributeIndex idx, const char *name) {
    unsigned kind = LLVMGetEnumAttributeKindForName(name, strlen(name));
    LLVMAddAttributeAtIndex(fn, idx, LLVMCreateEnumAttribute(cg->ctx, kind, 0));
}

static LLVMValueRef status(Cg *cg, int code) { return i32c(cg, code); }

/* if (cond) return code; */
static void return_if(Cg *cg, LLVMValueRef cond, int code) {
    LLVMBasicBlockRef join = if_begin(cg, cond);
    LLVMBuildRet(cg->b, status(cg, code));
    LLVMPositionBuilderAtEnd(cg->b, join);
}

static LLVMValueRef is_null(Cg *cg, LLVMValueRef p) { return LLVMBuildIsNull(cg->b, p, ""); }

static void check_batch(Cg *cg, LLVMValueRef n32) {
    LLVMValueRef lo = LLVMBuildICmp(cg->b, LLVMIntSLT, n32, i32c(cg, 1), "");
    LLVMValueRef hi = LLVMBuildICmp(cg->b, LLVMIntSGT, n32, i32c(cg, cg->m->max_batch), "");
    return_if(cg, LLVMBuildOr(cg->b, lo, hi, ""), NNRT_EBATCH);
}

/* Emits the loss check: a non-finite loss returns NNRT_ENONFINITE before any state write. */
static void emit_loss_check(Cg *cg, Ref loss) {
    const Node *n = &cg->f->nodes[loss];
    LLVMValueRef l = to_double(cg, n->dtype, load_at(cg, n->dtype, node_ptr(cg, loss), i64c(cg, 0)));
    LLVMValueRef finite = LLVMBuildFCmp(cg->b, LLVMRealOLT, intrinsic1(cg, "llvm.fabs", l),
                                        LLVMConstReal(cg->t_f64, INFINITY), "");
    return_if(cg, LLVMBuildNot(cg->b, finite, ""), NNRT_ENONFINITE);
}

static LLVMTypeRef body_type(Cg *cg, const Func *f) {
    int np = 3 + is_init(f) + f->nargs + f->nouts;
    LLVMTypeRef *params = malloc((size_t)np * sizeof *params);
    if (!params) abort();
    int k = 0;
    params[k++] = cg->t_ptr;
    params[k++] = cg->t_ptr;
    params[k++] = cg->t_i32;
    if (is_init(f)) params[k++] = cg->t_i64;
    while (k < np) params[k++] = cg->t_ptr;
    LLVMTypeRef t = LLVMFunctionType(cg->t_i32, params, (unsigned)np, 0);
    free(params);
    return t;
}

enum { PART_KERNELS = 32 };  /* kernels per part function */

static bool materialized(Storage st) { return st == ST_WORK || st == ST_OUT || st == ST_INPLACE; }

static LLVMValueRef add_internal(Cg *cg, const char *name, LLVMTypeRef fty, bool noinline) {
    LLVMValueRef fn = LLVMAddFunction(cg->mod, name, fty);
    LLVMSetLinkage(fn, LLVMInternalLinkage);
    add_attr(cg, fn, LLVMAttributeFunctionIndex, "nounwind");
    if (noinline) add_attr(cg, fn, LLVMAttributeFunctionIndex, "noinline");
    if (noinline && is_cold(cg->f)) add_attr(cg, fn, LLVMAttributeFunctionIndex, "optnone");
    unsigned nparams = LLVMCountParams(fn);
    for (unsigned i = 0; i < nparams; i++)
        if (LLVMTypeOf(LLVMGetParam(fn, i)) == cg->t_ptr) add_attr(cg, fn, i + 1, "noalias");
    return fn;
}

/* Opens function fn (of body_type) for emission: entry block for allocas and pointers, the
 * parameters, an empty pointer cache. Returns the block code starts in. */
static LLVMBasicBlockRef begin_function(Cg *cg, LLVMValueRef fn, bool first) {
    const Func *f = cg->f;
    Module *m = cg->m;
    cg->fn = fn;
    cg->alloca_block = LLVMAppendBasicBlockInContext(cg->ctx, fn, "entry");
    LLVMBasicBlockRef start = LLVMAppendBasicBlockInContext(cg->ctx, fn, "start");
    LLVMPositionBuilderAtEnd(cg->b, cg->alloca_block);
    unsigned k = 0;
    cg->state = LLVMGetParam(fn, k++);
    if (cg->embedded) cg->state = cg->weights;
    cg->work = LLVMGetParam(fn, k++);
    cg->n64 = LLVMBuildSExt(cg->b, LLVMGetParam(fn, k++), cg->t_i64, "n");
    cg->seed = NULL;
    if (is_init(f)) {
        cg->seed = LLVMGetParam(fn, k++);
        if (first) { /* init keeps the seed for rand_uniform */
            LLVMValueRef slot = byte_ptr(cg, cg->state, llvm_seed_offset(m));
            LLVMSetAlignment(LLVMBuildStore(cg->b, cg->seed, slot), 8);
        }
    } else if (cg->plan.needs_seed && cg->embedded) {
        cg->seed = i64c(cg, 0); /* embedded weights carry no init seed */
    } else if (cg->plan.needs_seed) {
        cg->seed = LLVMBuildLoad2(cg->b, cg->t_i64, byte_ptr(cg, cg->state, llvm_seed_offset(m)), "seed");
        LLVMSetAlignment(cg->seed, 8);
    }
    for (int i = 0; i < f->nargs + f->nouts; i++) cg->argp[i] = LLVMGetParam(fn, k++);
    memset(cg->ptr, 0, ((size_t)f->nnodes + 1) * sizeof *cg->ptr);
    cg->nregions = 0;
    LLVMPositionBuilderAtEnd(cg->b, start);
    return start;
}

static void end_function(Cg *cg, LLVMBasicBlockRef start) {
    LLVMBuildRet(cg->b, status(cg, NNRT_OK));
    LLVMPositionBuilderAtEnd(cg->b, cg->alloca_block);
    LLVMBuildBr(cg->b, start);
}

/* M__F_body(state, work, n, [seed,] args..., outs...): the computation, no argument checks.
 * It calls M__F_part0, part1, ... in turn, each emitting up to PART_KERNELS kernels and
 * returning a status (the loss check, a failing initializer). Parts stay small functions,
 * so LLVM's per-loop passes run in time linear in the model's size. The last part copies
 * the outputs and commits the deferred stores. */
static LLVMValueRef emit_body(Cg *cg, Func *f) {
    Module *m = cg->m;
    cg->f = f;
    LLVMTypeRef fty = body_type(cg, f);
    char name[256];
    cg->argp = malloc(((size_t)f->nargs + (size_t)f->nouts + 1) * sizeof *cg->argp);
    cg->ptr = calloc((size_t)f->nnodes + 1, sizeof *cg->ptr);
    cg->globals = calloc((size_t)f->nnodes + 1, sizeof *cg->globals);
    if (!cg->argp || !cg->ptr || !cg->globals) abort();
    LLVMValueRef *parts = NULL;
    int nparts = 0;
    Ref v = 0;
    do {
        snprintf(name, sizeof name, "%s__%s_part%d", m->name, f->name, nparts);
        LLVMValueRef part = add_internal(cg, name, fty, true);
        parts = realloc(parts, (size_t)(nparts + 1) * sizeof *parts);
        if (!parts) abort();
        parts[nparts++] = part;
        LLVMBasicBlockRef start = begin_function(cg, part, nparts == 1);
        for (int kernels = 0; v < f->nnodes && kernels < PART_KERNELS && !cg->errors; v++) {
            const NodePlan *np = &cg->plan.nodes[v];
            if (materialized(np->storage)) {
                alias_scopes_begin(cg);
                emit_node(cg, v);
                alias_scopes_end(cg);
                kernels++;
            }
            if (v == cg->plan.check_after) emit_loss_check(cg, v);
        }
        if (v == f->nnodes) {
            /* outputs not computed in place, then the deferred stores */
            for (int o = 0; o < f->nouts && !cg->errors; o++) {
                Ref x = f->outs[o].value;
                const NodePlan *xp = &cg->plan.nodes[x];
                if (xp->storage == ST_OUT && xp->out == o) continue;
                memcpy_node(cg, cg->argp[f->nargs + o], node_ptr(cg, x), &f->nodes[x]);
            }
            for (Ref s = 0; s < f->nnodes && !cg->errors; s++)
                if (f->nodes[s].op == OP_store && cg->plan.nodes[s].commit)
                    memcpy_node(cg, tensor_state_ptr(cg, f->nodes[s].attr.tensor), node_ptr(cg, s), &f->nodes[s]);
        }
        end_function(cg, start);
    } while (v < f->nnodes && !cg->errors);

    snprintf(name, sizeof name, "%s__%s_body", m->name, f->name);
    LLVMValueRef body = add_internal(cg, name, fty, false);
    cg->fn = body;
    LLVMPositionBuilderAtEnd(cg->b, LLVMAppendBasicBlockInContext(cg->ctx, body, "entry"));
    unsigned nparams = LLVMCountParams(body);
    LLVMValueRef *args = malloc((size_t)nparams * sizeof *args);
    if (!args) abort();
    for (unsigned i = 0; i < nparams; i++) args[i] = LLVMGetParam(body, i);
    for (int i = 0; i < nparts; i++) {
        LLVMValueRef rc = call(cg, fty, parts[i], args, nparams);
        if (i < nparts - 1) {
            LLVMBasicBlockRef join = if_begin(cg, LLVMBuildICmp(cg->b, LLVMIntNE, rc, status(cg, 0), ""));
            LLVMBuildRet(cg->b, rc);
            LLVMPositionBuilderAtEnd(cg->b, join);
        } else {
            LLVMBuildRet(cg->b, rc);
        }
    }
    free(args);
    free(parts);
    free(cg->argp);
    free(cg->ptr);
    free(cg->globals);
    cg->argp = cg->ptr = cg->globals = NULL;
    return body;
}

/* Shared tail of the wrappers: null checks of state/work, then the body call; with
 * then_prepare, prepare's body after it when it succeeded (the public init and train_step:
 * derived tensors follow the weights they stored, prepare.c). */
static void call_body(Cg *cg, LLVMValueRef body, LLVMTypeRef fty, LLVMValueRef state, LLVMValueRef work,
                      LLVMValueRef n32, LLVMValueRef seed, LLVMValueRef *bufs, int nbufs, bool then_prepare) {
    if (!cg->embedded) return_if(cg, is_null(cg, state), NNRT_ENULL);
    if (cg->plan.work_bytes > 0 || (then_prepare && cg->prepare_work > 0))
        return_if(cg, is_null(cg, work), NNRT_ENULL);
    LLVMValueRef *args = malloc((size_t)(nbufs + 4) * sizeof *args);
    if (!args) abort();
    int k = 0;
    args[k++] = cg->embedded ? LLVMConstPointerNull(cg->t_ptr) : state;
    args[k++] = work;
    args[k++] = n32;
    if (seed) args[k++] = seed;
    for (int i = 0; i < nbufs; i++) args[k++] = bufs[i];
    LLVMValueRef rc = call(cg, fty, body, args, (unsigned)k);
    free(args);
    if (then_prepare) {
        LLVMBasicBlockRef join = if_begin(cg, LLVMBuildICmp(cg->b, LLVMIntNE, rc, status(cg, NNRT_OK), ""));
        LLVMBuildRet(cg->b, rc);
        LLVMPositionBuilderAtEnd(cg->b, join);
        LLVMTypeRef pt[] = {cg->t_ptr, cg->t_ptr, cg->t_i32};
        LLVMValueRef pargs[] = {state, work, i32c(cg, 1)};
        rc = call(cg, LLVMFunctionType(cg->t_i32, pt, 3, 0), cg->prepare_body, pargs, 3);
    }
    LLVMBuildRet(cg->b, rc);
}

static LLVMValueRef begin_entry(Cg *cg, const char *name, LLVMTypeRef fty) {
    LLVMValueRef fn = LLVMAddFunction(cg->mod, name, fty);
    add_attr(cg, fn, LLVMAttributeFunctionIndex, "nounwind");
    cg->fn = fn;
    LLVMPositionBuilderAtEnd(cg->b, LLVMAppendBasicBlockInContext(cg->ctx, fn, "entry"));
    return fn;
}

/* int M__F_packed(void *state, void *work, int n, void **args) */
static void emit_packed(Cg *cg, Func *f, LLVMValueRef body) {
    char name[256];
    snprintf(name, sizeof name, "%s__%s_packed", cg->m->name, f->name);
    LLVMTypeRef params[] = {cg->t_ptr, cg->t_ptr, cg->t_i32, cg->t_ptr};
    LLVMValueRef fn = begin_entry(cg, name, LLVMFunctionType(cg->t_i32, params, 4, 0));
    add_attr(cg, fn, 3, "signext");
    add_attr(cg, fn, LLVMAttributeReturnIndex, "signext");
    LLVMValueRef state = LLVMGetParam(fn, 0), work = LLVMGetParam(fn, 1), n32 = LLVMGetParam(fn, 2),
                 args = LLVMGetParam(fn, 3);
    if (!is_init(f)) check_batch(cg, n32);
    int nbufs = f->nargs + f->nouts;
    LLVMValueRef *bufs = malloc(((size_t)nbufs + 1) * sizeof *bufs);
    if (!bufs) abort();
    if (nbufs || is_init(f)) return_if(cg, is_null(cg, args), NNRT_ENULL);
    LLVMValueRef seed = NULL;
    if (is_init(f)) {
        LLVMValueRef p = LLVMBuildLoad2(cg->b, cg->t_ptr, args, "");
        return_if(cg, is_null(cg, p), NNRT_ENULL);
        seed = LLVMBuildLoad2(cg->b, cg->t_i64, p, "seed");
        LLVMSetAlignment(seed, 1);
    }
    for (int i = 0; i < nbufs; i++) {
        LLVMValueRef idx = i64c(cg, i);
        bufs[i] = LLVMBuildLoad2(cg->b, cg->t_ptr, LLVMBuildInBoundsGEP2(cg->b, cg->t_ptr, args, &idx, 1, ""), "");
        return_if(cg, is_null(cg, bufs[i]), NNRT_ENULL);
    }
    call_body(cg, body, body_type(cg, f), state, work, n32, seed, bufs, nbufs, false);
    free(bufs);
}

/* The public entry of docs/c-api.md: int M_F(M *m, ...). */
static void emit_public(Cg *cg, Func *f, LLVMValueRef body) {
    PubParam *pp;
    int np = llvm_public_params(f, &pp);
    if (np < 0) return;
    char name[256];
    snprintf(name, sizeof name, "%s_%s", cg->m->name, f->name);
    bool batch = llvm_public_has_batch(f);
    int nparams = 1 + batch + np;
    LLVMTypeRef *params = malloc((size_t)nparams * sizeof *params);
    if (!params) abort();
    int k = 0;
    params[k++] = cg->t_ptr;
    if (batch) params[k++] = cg->t_i32;
    for (int i = 0; i < np; i++) params[k++] = pp[i].kind == PP_SEED ? cg->t_i64 : cg->t_ptr;
    LLVMValueRef fn = begin_entry(cg, name, LLVMFunctionType(cg->t_i32, params, (unsigned)nparams, 0));
    free(params);
    add_attr(cg, fn, LLVMAttributeReturnIndex, "signext");
    if (batch) add_attr(cg, fn, 2, "signext");
    LLVMValueRef ctx = LLVMGetParam(fn, 0);
    return_if(cg, is_null(cg, ctx), NNRT_ENULL);
    LLVMValueRef n32 = batch ? LLVMGetParam(fn, 1) : i32c(cg, 1);
    if (batch) check_batch(cg, n32);
    LLVMValueRef one = i64c(cg, 1);
    LLVMValueRef state = LLVMBuildLoad2(cg->b, cg->t_ptr, ctx, "state");
    LLVMValueRef work = LLVMBuildLoad2(cg->b, cg->t_ptr, LLVMBuildInBoundsGEP2(cg->b, cg->t_ptr, ctx, &one, 1, ""), "work");
    int nbufs = f->nargs + f->nouts;
    LLVMValueRef *bufs = calloc((size_t)nbufs + 1, sizeof *bufs);
    if (!bufs) abort();
    LLVMValueRef seed = NULL, metrics = NULL;
    for (int i = 0; i < np; i++) {
        LLVMValueRef p = LLVMGetParam(fn, (unsigned)(1 + batch + i));
        switch (pp[i].kind) {
        case PP_SEED: seed = p; break;
        case PP_ARG: bufs[pp[i].index] = p; break;
        case PP_OUT: bufs[f->nargs + pp[i].index] = p; break;
        case PP_METRICS: metrics = p; break;
        }
        if (pp[i].kind != PP_SEED && pp[i].kind != PP_METRICS) return_if(cg, is_null(cg, p), NNRT_ENULL);
    }
    if (metrics && public_metric_count(f)) return_if(cg, is_null(cg, metrics), NNRT_ENULL);
    int64_t metric_off = 0;
    for (int o = 0; o < f->nouts; o++) {
        if (bufs[f->nargs + o]) continue;
        const Node *v = &f->nodes[f->outs[o].value];
        if (metrics && public_metric(f, o)) {
            bufs[f->nargs + o] = byte_ptr(cg, metrics, metric_off);
            metric_off += node_bytes(v, 1);
        } else {
            bufs[f->nargs + o] = byte_ptr(cg, work, cg->plan.discard_offset[o]);
        }
    }
    bool then_prepare = cg->prepare_body && prepare_stale_after(cg->m, f);
    call_body(cg, body, body_type(cg, f), state, work, n32, seed, bufs, nbufs, then_prepare);
    free(bufs);
}

/* int M_prepare(M *m) of a module without derived tensors: nothing to compute, the checks
 * of every entry. Programs call M_prepare after loading weights whatever the -O level. */
static void emit_empty_prepare(Cg *cg) {
    char name[256];
    snprintf(name, sizeof name, "%s_prepare", cg->m->name);
    LLVMTypeRef params[] = {cg->t_ptr};
    LLVMValueRef fn = begin_entry(cg, name, LLVMFunctionType(cg->t_i32, params, 1, 0));
    add_attr(cg, fn, LLVMAttributeReturnIndex, "signext");
    LLVMValueRef ctx = LLVMGetParam(fn, 0);
    return_if(cg, is_null(cg, ctx), NNRT_ENULL);
    LLVMValueRef state = LLVMBuildLoad2(cg->b, cg->t_ptr, ctx, "state");
    return_if(cg, is_null(cg, state), NNRT_ENULL);
    LLVMBuildRet(cg->b, status(cg, NNRT_OK));
}

/* ================================================================ the model descriptor */

static LLVMValueRef const_string(Cg *cg, const char *s) {
    LLVMValueRef str = LLVMConstStringInContext2(cg->ctx, s, strlen(s), 0);
    LLVMValueRef g = LLVMAddGlobal(cg->mod, LLVMTypeOf(str), ".str");
    LLVMSetInitializer(g, str);
    LLVMSetGlobalConstant(g, 1);
    LLVMSetLinkage(g, LLVMPrivateLinkage);
    LLVMSetUnnamedAddress(g, LLVMGlobalUnnamedAddr);
    return g;
}

static LLVMValueRef shape_array(Cg *cg, const Shape *s, bool mark_batch) {
    LLVMValueRef d[IR_MAX_RANK];
    for (int i = 0; i < IR_MAX_RANK; i++) {
        int64_t v = i < s->rank ? s->dim[i] : 0;
        if (mark_batch && i < s->rank && (s->batch_mask >> i & 1)) v = -1;
        d[i] = i64c(cg, v);
    }
    return LLVMConstArray2(cg->t_i64, d, IR_MAX_RANK);
}

static LLVMValueRef const_table(Cg *cg, LLVMTypeRef elem, LLVMValueRef *rows, int n, const char *name) {
    if (!n) return LLVMConstPointerNull(cg->t_ptr);
    LLVMValueRef arr = LLVMConstArray2(elem, rows, (uint64_t)n);
    LLVMValueRef g = LLVMAddGlobal(cg->mod, LLVMTypeOf(arr), name);
    LLVMSetInitializer(g, arr);
    LLVMSetGlobalConstant(g, 1);
    LLVMSetLinkage(g, LLVMPrivateLinkage);
    return g;
}

static const Func *io_func(const Module *m, ArgRole role) {
    static const char *const order[][3] = {{"infer", "evaluate", "train_step"}, {"evaluate", "train_step", "loss"}};
    for (int i = 0; i < 3; i++) {
        const Func *f = module_find_func(m, order[role == ARG_LABEL][i]);
        if (f) return f;
    }
    return NULL;
}

/* nnrt_io_info rows for the args of one role, or the infer outputs (role < 0) */
static LLVMValueRef io_table(Cg *cg, LLVMTypeRef io_t, int role, int *count, const char *name) {
    const Func *f = role < 0 ? module_find_func(cg->m, "infer") : io_func(cg->m, (ArgRole)role);
    *count = 0;
    if (!f) return LLVMConstPointerNull(cg->t_ptr);
    int cap = f->nargs + f->nouts;
    LLVMValueRef *rows = malloc(((size_t)cap + 1) * sizeof *rows);
    if (!rows) abort();
    int n = 0;
    for (int i = 0; i < (role < 0 ? f->nouts : f->nargs); i++) {
        const char *nm;
        DType dt;
        const Shape *s;
        if (role < 0) {
            if (f->outs[i].role != OUT_OUTPUT) continue;
            const Node *v = &f->nodes[f->outs[i].value];
            nm = f->outs[i].name, dt = v->dtype, s = &v->shape;
        } else {
            if ((int)f->args[i].role != role) continue;
            nm = f->args[i].name, dt = f->args[i].dtype, s = &f->args[i].shape;
        }
        LLVMValueRef fields[] = {const_string(cg, nm), i32c(cg, dt), i32c(cg, s->rank), shape_array(cg, s, true),
                                 i64c(cg, shape_numel(s, 1))};
        rows[n++] = LLVMConstNamedStruct(io_t, fields, 5);
    }
    LLVMValueRef g = const_table(cg, io_t, rows, n, name);
    free(rows);
    *count = n;
    return g;
}

/* const nnrt_model_info *M_info(void) */
static LLVMValueRef prepare_packed(Cg *cg) {
    char name[256];
    snprintf(name, sizeof name, "%s__prepare_packed", cg->m->name);
    LLVMValueRef fn = LLVMGetNamedFunction(cg->mod, name);
    return fn ? fn : LLVMConstNull(cg->t_ptr);
}

static void emit_info(Cg *cg, int64_t work_bytes) {
    Module *m = cg->m;
    LLVMTypeRef shape_t = LLVMArrayType2(cg->t_i64, IR_MAX_RANK);
    LLVMTypeRef tensor_t = LLVMStructCreateNamed(cg->ctx, "nnrt_tensor_info");
    LLVMTypeRef tf[] = {cg->t_ptr, cg->t_i32, cg->t_i32, cg->t_i32, shape_t, cg->t_i64, cg->t_i64};
    LLVMStructSetBody(tensor_t, tf, 7, 0);
    LLVMTypeRef io_t = LLVMStructCreateNamed(cg->ctx, "nnrt_io_info");
    LLVMTypeRef iof[] = {cg->t_ptr, cg->t_i32, cg->t_i32, shape_t, cg->t_i64};
    LLVMStructSetBody(io_t, iof, 5, 0);
    LLVMTypeRef info_t = LLVMStructCreateNamed(cg->ctx, "nnrt_model_info");
    LLVMTypeRef inf[] = {cg->t_ptr, cg->t_i32, cg->t_i64, cg->t_i64, cg->t_i32, cg->t_ptr, cg->t_i32,
                         cg->t_ptr, cg->t_i32, cg->t_ptr, cg->t_i32, cg->t_ptr, cg->t_ptr, cg->t_i64};
    LLVMStructSetBody(info_t, inf, 14, 0);

    LLVMValueRef *rows = malloc(((size_t)m->ntensors + 1) * sizeof *rows);
    if (!rows) abort();
    for (int i = 0; i < m->ntensors; i++) {
        const ModTensor *t = &m->tensors[i];
        LLVMValueRef fields[] = {const_string(cg, t->name), i32c(cg, t->kind), i32c(cg, t->dtype),
                                 i32c(cg, t->shape.rank), shape_array(cg, &t->shape, false),
                                 i64c(cg, t->offset), i64c(cg, t->bytes)};
        rows[i] = LLVMConstNamedStruct(tensor_t, fields, 7);
    }
    LLVMValueRef tensors = const_table(cg, tensor_t, rows, m->ntensors, "tensors");
    free(rows);
    int n_in, n_lab, n_out;
    LLVMValueRef inputs = io_table(cg, io_t, ARG_INPUT, &n_in, "inputs");
    LLVMValueRef labels = io_table(cg, io_t, ARG_LABEL, &n_lab, "labels");
    LLVMValueRef outputs = io_table(cg, io_t, -1, &n_out, "outputs");
    LLVMValueRef fields[] = {const_string(cg, m->name), i32c(cg, m->max_batch), i64c(cg, llvm_state_bytes(m)),
                             i64c(cg, work_bytes), i32c(cg, m->ntensors), tensors, i32c(cg, n_in), inputs,
                             i32c(cg, n_lab), labels, i32c(cg, n_out), outputs,
                             /* nnrt_load prepares what it loads (a packed entry: no argument checks to skip) */
                             cg->prepare_body ? prepare_packed(cg) : LLVMConstNull(cg->t_ptr),
                             i64c(cg, cg->prepare_body ? cg->prepare_work : 0)};
    LLVMValueRef info = LLVMAddGlobal(cg->mod, info_t, "info");
    LLVMSetInitializer(info, LLVMConstNamedStruct(info_t, fields, 14));
    LLVMSetGlobalConstant(info, 1);
    LLVMSetLinkage(info, LLVMPrivateLinkage);

    char name[256];
    snprintf(name, sizeof name, "%s_info", m->name);
    begin_entry(cg, name, LLVMFunctionType(cg->t_ptr, NULL, 0, 0));
    LLVMBuildRet(cg->b, info);
}

/* ================================================================ modules */

/* Functions an object carries: all, or with embedded weights those that neither initialize
 * nor write the (read-only) state, nor draw dropout masks (rand_uniform reads the step
 * counter, which is not built in: `loss` and `grad` of a model with dropout). */
static bool func_draws_random(const Func *f) {
    for (int v = 0; v < f->nnodes; v++)
        if (f->nodes[v].op == OP_rand_uniform) return true;
    return false;
}

bool llvm_func_emitted(const Func *f, bool embedded) {
    return !embedded || (!is_init(f) && !func_has_stores(f) && !func_draws_random(f));
}

static bool check_limits(const Module *m) {
    /* index arithmetic is 64-bit; sgemm dimensions are int */
    for (int i = 0; i < m->nfuncs; i++) {
        const Func *f = m->funcs[i];
        for (int v = 0; v < f->nnodes; v++) {
            const Node *n = &f->nodes[v];
            for (int k = 0; k < n->shape.rank; k++)
                if (shape_dim(&n->shape, k, m->max_batch) > INT32_MAX / 2 ||
                    (n->op == OP_matmul && shape_numel(&n->shape, m->max_batch) > INT32_MAX)) {
                    fprintf(stderr, "nnc: error: a tensor of '%s' in %s is too large for the LLVM backend\n",
                            m->name, f->name);
                    return false;
                }
        }
    }
    return true;
}

/* The constant weights of an object built with --embed-weights: the tensors its functions
 * read, packed (64-byte aligned) from the state block cg->embedded. Parameters that only
 * prepare reads (a convolution's weights once batchnorm is folded into derived tensors)
 * are left out. */
static void embed_weights(Cg *cg) {
    Module *m = cg->m;
    cg->weight_offset = malloc(((size_t)m->ntensors + 1) * sizeof *cg->weight_offset);
    if (!cg->weight_offset) abort();
    for (int t = 0; t < m->ntensors; t++) cg->weight_offset[t] = -1;
    int64_t bytes = 0;
    for (int i = 0; i < m->nfuncs; i++) {
        const Func *f = m->funcs[i];
        if (!llvm_func_emitted(f, true)) continue;
        for (int v = 0; v < f->nnodes; v++) {
            int t = f->nodes[v].attr.tensor;
            if (f->nodes[v].op != OP_tensor || cg->weight_offset[t] >= 0) continue;
            cg->weight_offset[t] = bytes;
            bytes = align_up(bytes + m->tensors[t].bytes, WORK_ALIGN);
        }
    }
    uint8_t *blob = calloc(1, (size_t)bytes + 1);
    if (!blob) abort();
    for (int t = 0; t < m->ntensors; t++)
        if (cg->weight_offset[t] >= 0)
            memcpy(blob + cg->weight_offset[t], (const uint8_t *)cg->embedded + m->tensors[t].offset,
                   (size_t)m->tensors[t].bytes);
    LLVMValueRef data = LLVMConstStringInContext2(cg->ctx, (const char *)blob, (size_t)bytes, 1);
    free(blob);
    cg->weights = LLVMAddGlobal(cg->mod, LLVMTypeOf(data), "weights");
    LLVMSetInitializer(cg->weights, data);
    LLVMSetGlobalConstant(cg->weights, 1);
    LLVMSetLinkage(cg->weights, LLVMPrivateLinkage);
    LLVMSetAlignment(cg->weights, WORK_ALIGN);
}

/* Builds the LLVM module of m in ctx. work_bytes[i] receives each function's work size (-1
 * when not emitted). Returns NULL after printing errors. */
static LLVMModuleRef build_module(LLVMContextRef ctx, Module *m, const void *embedded, int64_t *work_bytes) {
    if (!check_limits(m)) return NULL;
    Cg cg = {.ctx = ctx, .m = m, .embedded = embedded};
    cg.mod = LLVMModuleCreateWithNameInContext(m->name, ctx);
    cg.b = LLVMCreateBuilderInContext(ctx);
    cg.t_void = LLVMVoidTypeInContext(ctx);
    cg.t_i8 = LLVMInt8TypeInContext(ctx);
    cg.t_i32 = LLVMInt32TypeInContext(ctx);
    cg.t_i64 = LLVMInt64TypeInContext(ctx);
    cg.t_f32 = LLVMFloatTypeInContext(ctx);
    cg.t_f64 = LLVMDoubleTypeInContext(ctx);
    cg.t_ptr = LLVMPointerTypeInContext(ctx, 0);
    declare_runtime(&cg);
    if (embedded) embed_weights(&cg);
    int64_t max_work = 0;
    /* prepare first: the public init and train_step call its body */
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < m->nfuncs && !cg.errors; i++) {
            Func *f = m->funcs[i];
            bool is_prepare = !strcmp(f->name, "prepare");
            if (is_prepare != (pass == 0)) continue;
            work_bytes[i] = -1;
            if (!llvm_func_emitted(f, embedded != NULL)) continue;
            plan_func(f, &cg.plan);
            work_bytes[i] = cg.plan.work_bytes;
            if (cg.plan.work_bytes > max_work) max_work = cg.plan.work_bytes;
            LLVMValueRef body = emit_body(&cg, f);
            if (!cg.errors) {
                emit_packed(&cg, f, body);
                emit_public(&cg, f, body);
            }
            if (is_prepare) {
                cg.prepare_body = body;
                cg.prepare_work = cg.plan.work_bytes;
            }
            plan_free(&cg.plan);
        }
    if (!cg.errors && !embedded && !module_find_func(m, "prepare")) emit_empty_prepare(&cg);
    if (!cg.errors) emit_info(&cg, max_work);
    LLVMDisposeBuilder(cg.b);
    free(cg.weight_offset);
    free(cg.regions);
    free(cg.accesses);
    if (cg.errors) {
        LLVMDisposeModule(cg.mod);
        return NULL;
    }
    char *msg = NULL;
    if (LLVMVerifyModule(cg.mod, LLVMReturnStatusAction, &msg)) {
        fprintf(stderr, "nnc: internal error: the LLVM IR of '%s' does not verify:\n%s\n", m->name, msg);
        LLVMDisposeMessage(msg);
        LLVMDisposeModule(cg.mod);
        return NULL;
    }
    LLVMDisposeMessage(msg);
    return cg.mod;
}

int64_t llvm_max_work_bytes(const Module *m, bool embedded) {
    int64_t max = 0;
    for (int i = 0; i < m->nfuncs; i++) {
        if (!llvm_func_emitted(m->funcs[i], embedded)) continue;
        int64_t w = llvm_work_bytes(m->funcs[i]);
        if (w > max) max = w;
    }
    return max;
}

/* LLVM reports what it cannot do (e.g. an instruction a target cannot lower) through this,
 * then exits: say so as nnc does. */
static void llvm_fatal_error(const char *reason) {
    fprintf(stderr, "nnc: error: LLVM cannot generate this code: %s\n", reason);
}

/* LLVM's own options, set once per process before the first target machine (they are
 * global): nnc's defaults, then NNC_LLVM_ARGS (options as `llc` takes them, e.g.
 * "-time-passes", for experiments; later ones win).
 *
 * -disable-lsr: no Loop Strength Reduction in code generation. It rewrites the address
 * arithmetic of every loop and, with its IVUsers analysis, took a quarter of code
 * generation (attention_classifier: 190 of 650 ms); with the generated loops' simple
 * affine addresses, which x86 addressing modes absorb, the compiled code runs at the same
 * speed without it (docs/performance.md, W7). */
static void llvm_options(void) {
    static bool done;
    if (done) return;
    done = true;
    enum { MAX_ARGS = 64 };
    static char buf[4096];
    const char *argv[MAX_ARGS + 1] = {"nnc", "-disable-lsr"};
    int argc = 2;
    const char *env = getenv("NNC_LLVM_ARGS");
    snprintf(buf, sizeof buf, "%s", env ? env : "");
    for (char *tok = strtok(buf, " "); tok && argc < MAX_ARGS; tok = strtok(NULL, " ")) argv[argc++] = tok;
    LLVMParseCommandLineOptions(argc, argv, "nnc");
}

static void init_targets(bool all) {
    static bool native_done, all_done;
    LLVMInstallFatalErrorHandler(llvm_fatal_error);
    llvm_options();
    if (all && !all_done) {
#ifdef NNC_TARGETS /* the Makefile's list: T(X86) T(AArch64) ... */
#define T(name)                                                                                   \
    LLVMInitialize##name##TargetInfo();                                                           \
    LLVMInitialize##name##Target();                                                               \
    LLVMInitialize##name##TargetMC();                                                             \
    LLVMInitialize##name##AsmPrinter();
        NNC_TARGETS
#undef T
#else
        LLVMInitializeAllTargetInfos();
        LLVMInitializeAllTargets();
        LLVMInitializeAllTargetMCs();
        LLVMInitializeAllAsmPrinters();
#endif
        all_done = native_done = true;
    }
    if (!native_done) {
        LLVMInitializeNativeTarget();
        LLVMInitializeNativeAsmPrinter();
        native_done = true;
    }
}

/* A target machine for triple/cpu (NULL: the host, with its features). */
static LLVMTargetMachineRef make_target_machine(const char *target, const char *cpu, int opt_level) {
    init_targets(target != NULL);
    char *triple = target ? LLVMNormalizeTargetTriple(target) : LLVMGetDefaultTargetTriple();
    char *host_cpu = NULL, *features = NULL;
    if (!target) {
        host_cpu = LLVMGetHostCPUName();
        features = cpu ? NULL : LLVMGetHostCPUFeatures();
    }
    LLVMTargetRef t;
    char *err = NULL;
    LLVMTargetMachineRef tm = NULL;
    if (LLVMGetTargetFromTriple(triple, &t, &err)) {
        fprintf(stderr, "nnc: error: unknown target '%s': %s\n", target ? target : triple, err);
        fprintf(stderr, "nnc: note: this nnc compiles for:");
        for (LLVMTargetRef k = LLVMGetFirstTarget(); k; k = LLVMGetNextTarget(k)) fprintf(stderr, " %s", LLVMGetTargetName(k));
        fprintf(stderr, "\n");
        LLVMDisposeMessage(err);
    } else {
        /* -O2 generates code at LLVM's "Less" level: for the generated kernels it produces the
         * same instructions as "Default" up to register assignment and order (objects of the
         * same size for every example) in 10-12% less time (docs/performance.md, W7). */
        static const LLVMCodeGenOptLevel levels[] = {LLVMCodeGenLevelNone, LLVMCodeGenLevelLess,
                                                     LLVMCodeGenLevelLess, LLVMCodeGenLevelAggressive};
        tm = LLVMCreateTargetMachine(t, triple, cpu ? cpu : host_cpu ? host_cpu : "generic",
                                     features ? features : "", levels[opt_level < 0 ? 0 : opt_level > 3 ? 3 : opt_level],
                                     LLVMRelocPIC, LLVMCodeModelDefault);
        if (!tm) fprintf(stderr, "nnc: error: cannot create a target machine for '%s'\n", triple);
    }
    LLVMDisposeMessage(triple);
    LLVMDisposeMessage(host_cpu);
    LLVMDisposeMessage(features);
    return tm;
}

/* The LLVM pass pipeline per -O level. The generated code is loop nests over arrays in
 * small functions (one per few kernels) that call OpenBLAS: what they need is SSA form (sroa),
 * clean-up (early-cse, instcombine, simplifycfg), loop-invariant address arithmetic hoisted
 * (licm after loop-rotate), canonical induction variables and small constant-trip loops (a
 * convolution's 5x5 window) unrolled (indvars, loop-unroll-full), and the loop vectorizer.
 * That list compiles in 55-75% of the time of LLVM's default<O2> with the same speed of the
 * workloads (docs/performance.md, W7); -O3 is LLVM's full default<O3>. NNC_LLVM_PASSES replaces the
 * list (any `opt -passes=` string), for experiments. */
/* A textual `instcombine` verifies that one run reaches a fixpoint and aborts the process
 * when it does not (LLVM 18+; meant for LLVM's own tests, and some loops of the lrn kernel
 * trip it); the default<On> pipelines do not verify. */
#define IC "instcombine<no-verify-fixpoint>"
static const char *llvm_pipeline(int opt_level) {
    const char *env = getenv("NNC_LLVM_PASSES");
    if (env && *env) return env;
    switch (opt_level < 0 ? 0 : opt_level > 3 ? 3 : opt_level) {
    case 0: return "default<O0>";
    case 1: return "function(sroa,early-cse," IC ",simplifycfg)";
    case 2:
        return "function(sroa,early-cse," IC ",simplifycfg,loop-rotate,loop-mssa(licm),"
               "loop(indvars,loop-unroll-full),loop-vectorize," IC ",simplifycfg)";
    default: return "default<O3>";
    }
}

static int run_passes(LLVMModuleRef mod, LLVMTargetMachineRef tm, int opt_level) {
    LLVMPassBuilderOptionsRef po = LLVMCreatePassBuilderOptions();
    LLVMErrorRef e = LLVMRunPasses(mod, llvm_pipeline(opt_level), tm, po);
    LLVMDisposePassBuilderOptions(po);
    if (e) {
        char *msg = LLVMGetErrorMessage(e);
        fprintf(stderr, "nnc: internal error: LLVM passes failed: %s\n", msg);
        LLVMDisposeErrorMessage(msg);
        return 1;
    }
    return 0;
}

static void set_layout(LLVMModuleRef mod, LLVMTargetMachineRef tm) {
    LLVMTargetDataRef td = LLVMCreateTargetDataLayout(tm);
    LLVMSetModuleDataLayout(mod, td);
    LLVMDisposeTargetData(td);
    char *triple = LLVMGetTargetMachineTriple(tm);
    LLVMSetTarget(mod, triple);
    LLVMDisposeMessage(triple);
}

/* ================================================================ parallel object code */

/* `nnc compile` to an object file for the host runs the LLVM passes and code generation on
 * several threads: the module is split by function into pieces, each compiled in its own
 * LLVMContext (a context is single-threaded), and objlink.c joins the pieces' objects into
 * one. Every piece starts from the same bitcode of the whole module and keeps the bodies of
 * the functions it owns; the others become declarations. What the pieces share — the
 * internal functions and the large constants (embedded weights) — becomes hidden and
 * prefixed with the model's name, and objlink localizes it again, so the object exports what
 * a one-piece compile exports. Small private constants are copied into each piece, so that
 * constant folding still sees them. The split balances instructions, counting `optnone`
 * functions (fast instruction selection) at a quarter. Without binutils, for another target,
 * for --emit other than obj, or with -j1, the module is compiled in one piece. */

enum { MAX_PIECES = 8, SHARED_CONST_BYTES = 4096, MIN_SPLIT_INSTRUCTIONS = 1500 };

typedef struct Piece {
    const char *bc;             /* the whole module as bitcode (read-only, shared) */
    size_t bc_len;
    char **names;               /* the functions with a body, and the piece that owns each */
    const int *owner;
    int nfuncs, index;
    const char *prefix;         /* the model's name */
    LLVMTargetMachineRef tm;
    int opt_level;
    LLVMMemoryBufferRef obj;    /* out: the piece's object */
    int rc;
    double cpu_ms;              /* out: the thread's CPU time */
} Piece;

static int owner_of(const Piece *p, const char *name) {
    for (int i = 0; i < p->nfuncs; i++)
        if (!strcmp(p->names[i], name)) return p->owner[i];
    return 0;
}

/* Turns a definition into a declaration: every instruction goes (its uses replaced by
 * poison first, so none is left dangling), then the empty blocks. */
static void drop_body(LLVMValueRef fn) {
    for (LLVMBasicBlockRef bb = LLVMGetFirstBasicBlock(fn); bb; bb = LLVMGetNextBasicBlock(bb))
        for (LLVMValueRef in = LLVMGetFirstInstruction(bb); in;) {
            LLVMValueRef next = LLVMGetNextInstruction(in);
            LLVMTypeRef t = LLVMTypeOf(in);
            if (LLVMGetTypeKind(t) != LLVMVoidTypeKind) LLVMReplaceAllUsesWith(in, LLVMGetPoison(t));
            LLVMInstructionEraseFromParent(in);
            in = next;
        }
    while (LLVMGetFirstBasicBlock(fn)) LLVMDeleteBasicBlock(LLVMGetFirstBasicBlock(fn));
}

static bool is_local(LLVMValueRef g) {
    LLVMLinkage l = LLVMGetLinkage(g);
    return l == LLVMPrivateLinkage || l == LLVMInternalLinkage;
}

/* A local symbol the pieces share: external, hidden, named after the model. */
static void share(LLVMValueRef g, const char *prefix) {
    if (!is_local(g)) return;
    size_t len, plen = strlen(prefix);
    const char *name = LLVMGetValueName2(g, &len);
    if (len < plen + 2 || strncmp(name, prefix, plen) || strncmp(name + plen, "__", 2)) {
        char *renamed = malloc(plen + len + 8);
        if (!renamed) abort();
        int n = sprintf(renamed, "%s__g_%.*s", prefix, (int)len, name);
        LLVMSetValueName2(g, renamed, (size_t)n);
        free(renamed);
    }
    LLVMSetLinkage(g, LLVMExternalLinkage);
    LLVMSetVisibility(g, LLVMHiddenVisibility);
    LLVMSetUnnamedAddress(g, LLVMNoUnnamedAddr);
}

static void keep_piece(LLVMModuleRef mod, const Piece *p) {
    for (LLVMValueRef fn = LLVMGetFirstFunction(mod); fn; fn = LLVMGetNextFunction(fn)) {
        if (LLVMIsDeclaration(fn)) continue;
        size_t len;
        if (owner_of(p, LLVMGetValueName2(fn, &len)) != p->index) drop_body(fn);
        share(fn, p->prefix);
    }
    LLVMTargetDataRef td = LLVMGetModuleDataLayout(mod);
    for (LLVMValueRef g = LLVMGetFirstGlobal(mod); g; g = LLVMGetNextGlobal(g)) {
        if (LLVMIsDeclaration(g)) continue;
        if (is_local(g) && LLVMIsGlobalConstant(g) &&
            LLVMABISizeOfType(td, LLVMGlobalGetValueType(g)) <= SHARED_CONST_BYTES)
            continue; /* each piece keeps its copy */
        if (p->index) LLVMSetInitializer(g, NULL);
        share(g, p->prefix);
    }
    /* the copies this piece does not use (a string of the model descriptor, say) */
    for (bool again = true; again;) {
        again = false;
        for (LLVMValueRef g = LLVMGetFirstGlobal(mod), next; g; g = next) {
            next = LLVMGetNextGlobal(g);
            if (is_local(g) && !LLVMGetFirstUse(g)) {
                LLVMDeleteGlobal(g);
                again = true;
            }
        }
    }
}

static double thread_cpu_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void *compile_piece(void *arg) {
    Piece *p = arg;
    p->rc = 1;
    p->cpu_ms = thread_cpu_ms();
    LLVMContextRef ctx = LLVMContextCreate();
    LLVMMemoryBufferRef in = LLVMCreateMemoryBufferWithMemoryRange(p->bc, p->bc_len, "module", 0);
    LLVMModuleRef mod = NULL;
    if (LLVMParseBitcodeInContext2(ctx, in, &mod)) {
        fprintf(stderr, "nnc: internal error: cannot read back the module's bitcode\n");
    } else {
        keep_piece(mod, p);
        char *err = NULL;
        if (LLVMVerifyModule(mod, LLVMReturnStatusAction, &err)) {
            fprintf(stderr, "nnc: internal error: piece %d of the module does not verify:\n%s\n", p->index, err);
        } else if (!run_passes(mod, p->tm, p->opt_level)) {
            LLVMDisposeMessage(err);
            err = NULL;
            if (LLVMTargetMachineEmitToMemoryBuffer(p->tm, mod, LLVMObjectFile, &err, &p->obj))
                fprintf(stderr, "nnc: error: cannot generate code: %s\n", err ? err : "");
            else
                p->rc = 0;
        }
        LLVMDisposeMessage(err);
        LLVMDisposeModule(mod);
    }
    LLVMDisposeMemoryBuffer(in);
    LLVMContextDispose(ctx);
    p->cpu_ms = thread_cpu_ms() - p->cpu_ms;
    return NULL;
}

static int cpus_available(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set)) return 1;
    return CPU_COUNT(&set);
}

/* The default number of pieces: the CPUs not busy with other work now, at least 1: the
 * CPUs minus the threads running at this moment besides this one (the fourth field of
 * /proc/loadavg, "running/total"). On a machine whose other CPUs are busy, pieces only add
 * their cost (the join, ~20 ms; docs/performance.md W7). Where /proc/loadavg cannot be
 * read: every CPU. */
static int cpus_idle(void) {
    int n = cpus_available(), running = 0, total = 0;
    double avg[3];
    FILE *f = fopen("/proc/loadavg", "r");
    if (!f) return n;
    int got = fscanf(f, "%lf %lf %lf %d/%d", &avg[0], &avg[1], &avg[2], &running, &total);
    fclose(f);
    if (got != 5 || running < 1) return n;
    int idle = n - (running - 1);
    return idle < 1 ? 1 : idle > n ? n : idle;
}

/* Instructions of fn, a quarter for optnone functions (fast instruction selection). */
static double compile_cost(LLVMValueRef fn) {
    double n = 0;
    for (LLVMBasicBlockRef bb = LLVMGetFirstBasicBlock(fn); bb; bb = LLVMGetNextBasicBlock(bb))
        for (LLVMValueRef in = LLVMGetFirstInstruction(bb); in; in = LLVMGetNextInstruction(in)) n++;
    unsigned kind = LLVMGetEnumAttributeKindForName("optnone", 7);
    if (LLVMGetEnumAttributeAtIndex(fn, LLVMAttributeFunctionIndex, kind)) n /= 4;
    return n;
}

/* Compiles mod to the object file path in pieces. 0: done; 1: an error was printed; -1: not
 * worth it or not possible here (nothing was written; compile in one piece). */
static int emit_object_in_pieces(LLVMModuleRef mod, const Module *m, const CodegenOptions *o, const char *path) {
    int idle = o->jobs ? 0 : cpus_idle();
    int jobs = o->jobs ? o->jobs : idle > 4 ? 4 : idle;
    if (!o->jobs && time_enabled())
        fprintf(stderr, "nnc: time: %d of %d CPUs idle: up to %d piece%s\n", idle, cpus_available(), jobs,
                jobs == 1 ? "" : "s");
    if (jobs > MAX_PIECES) jobs = MAX_PIECES;
    if (jobs < 2 || o->target || !objlink_available()) return -1;
    int nf = 0;
    for (LLVMValueRef fn = LLVMGetFirstFunction(mod); fn; fn = LLVMGetNextFunction(fn)) nf += !LLVMIsDeclaration(fn);
    char **names = calloc((size_t)nf + 1, sizeof *names);
    double *cost = calloc((size_t)nf + 1, sizeof *cost);
    int *owner = calloc((size_t)nf + 1, sizeof *owner);
    if (!names || !cost || !owner) abort();
    double total = 0;
    int k = 0;
    for (LLVMValueRef fn = LLVMGetFirstFunction(mod); fn; fn = LLVMGetNextFunction(fn)) {
        if (LLVMIsDeclaration(fn)) continue;
        size_t len;
        names[k] = strdup(LLVMGetValueName2(fn, &len));
        if (!names[k]) abort();
        total += cost[k] = compile_cost(fn);
        k++;
    }
    if (jobs > nf) jobs = nf;
    int rc = -1;
    if (jobs >= 2 && (o->jobs || total >= MIN_SPLIT_INSTRUCTIONS)) { /* -j N splits whatever the size */
        /* longest first, each to the piece with the least so far */
        double load[MAX_PIECES] = {0};
        for (int done = 0; done < nf; done++) {
            int best = -1;
            for (int i = 0; i < nf; i++)
                if (cost[i] >= 0 && (best < 0 || cost[i] > cost[best])) best = i;
            int to = 0;
            for (int j = 1; j < jobs; j++)
                if (load[j] < load[to]) to = j;
            owner[best] = to;
            load[to] += cost[best];
            cost[best] = -1;
        }
        LLVMMemoryBufferRef bc = LLVMWriteBitcodeToMemoryBuffer(mod);
        Piece pieces[MAX_PIECES];
        pthread_t threads[MAX_PIECES];
        bool started[MAX_PIECES] = {0};
        bool ok = true;
        for (int j = 0; j < jobs; j++) {
            pieces[j] = (Piece){.bc = LLVMGetBufferStart(bc), .bc_len = LLVMGetBufferSize(bc), .names = names,
                                .owner = owner, .nfuncs = nf, .index = j, .prefix = m->name,
                                .tm = make_target_machine(NULL, o->cpu, o->opt_level),
                                .opt_level = o->opt_level, .rc = 1};
            if (!pieces[j].tm) ok = false;
        }
        for (int j = 1; j < jobs && ok; j++) started[j] = !pthread_create(&threads[j], NULL, compile_piece, &pieces[j]);
        if (ok) compile_piece(&pieces[0]);
        for (int j = 1; j < jobs; j++) {
            if (started[j]) pthread_join(threads[j], NULL);
            else if (ok) compile_piece(&pieces[j]); /* no thread: compile it here */
        }
        time_mark("LLVM passes and code generation");
        if (time_enabled())
            for (int j = 0; j < jobs; j++)
                fprintf(stderr, "nnc: time:   piece %d: %.0f instructions, %.1f ms CPU\n", j, load[j], pieces[j].cpu_ms);
        const void *objs[MAX_PIECES];
        size_t sizes[MAX_PIECES];
        for (int j = 0; j < jobs; j++) {
            if (pieces[j].rc) ok = false;
            objs[j] = pieces[j].obj ? LLVMGetBufferStart(pieces[j].obj) : NULL;
            sizes[j] = pieces[j].obj ? LLVMGetBufferSize(pieces[j].obj) : 0;
        }
        /* an LLVM error was printed: 1; a failed join: compile in one piece after all */
        rc = !ok ? 1 : objlink_join(path, objs, sizes, jobs) ? 0 : -1;
        time_mark("joining the pieces (ld -r)");
        for (int j = 0; j < jobs; j++) {
            if (pieces[j].obj) LLVMDisposeMemoryBuffer(pieces[j].obj);
            if (pieces[j].tm) LLVMDisposeTargetMachine(pieces[j].tm);
        }
        LLVMDisposeMemoryBuffer(bc);
    }
    for (int i = 0; i < nf; i++) free(names[i]);
    free(names);
    free(cost);
    free(owner);
    return rc;
}

int llvm_emit_module(Module *m, const CodegenOptions *o, const char *path) {
    const char *emit = o->emit ? o->emit : "obj";
    if (strcmp(emit, "obj") && strcmp(emit, "asm") && strcmp(emit, "llvm") && strcmp(emit, "bc")) {
        fprintf(stderr, "nnc: error: unknown output kind '%s' (expected obj, asm, llvm or bc)\n", emit);
        return 1;
    }
    LLVMTargetMachineRef tm = make_target_machine(o->target, o->cpu, o->opt_level);
    if (!tm) return 1;
    time_mark("target machine");
    LLVMContextRef ctx = LLVMContextCreate();
    int64_t *work = calloc((size_t)m->nfuncs + 1, sizeof *work);
    if (!work) abort();
    LLVMModuleRef mod = build_module(ctx, m, o->embed_weights, work);
    free(work);
    time_mark("LLVM IR built");
    int rc = 1;
    if (mod) {
        set_layout(mod, tm);
        int split = !strcmp(emit, "obj") ? emit_object_in_pieces(mod, m, o, path) : -1;
        rc = split >= 0 ? split : run_passes(mod, tm, o->opt_level);
        if (split < 0) time_mark("LLVM IR passes");
        char *err = NULL;
        if (split >= 0) {
            /* done in pieces */
        } else if (!rc && !strcmp(emit, "llvm")) {
            rc = LLVMPrintModuleToFile(mod, path, &err) != 0;
        } else if (!rc && !strcmp(emit, "bc")) {
            rc = LLVMWriteBitcodeToFile(mod, path) != 0;
            if (rc) fprintf(stderr, "nnc: error: cannot write '%s'\n", path);
        } else if (!rc) {
            rc = LLVMTargetMachineEmitToFile(tm, mod, path, !strcmp(emit, "asm") ? LLVMAssemblyFile : LLVMObjectFile,
                                             &err) != 0;
        }
        if (split < 0) time_mark("code generation");
        if (err) {
            fprintf(stderr, "nnc: error: cannot write '%s': %s\n", path, err);
            LLVMDisposeMessage(err);
        }
        LLVMDisposeModule(mod);
    }
    LLVMContextDispose(ctx);
    LLVMDisposeTargetMachine(tm);
    /* LLVM prints the reports some of its options ask for (-time-passes) at shutdown; the
     * object is the last thing `nnc compile` asks of LLVM */
    if (getenv("NNC_LLVM_ARGS")) LLVMShutdown();
    return rc;
}

/* ================================================================ JIT */

typedef struct JitFunc {
    char *name;      /* IR function name */
    int64_t work_bytes;
} JitFunc;

struct Jit {
    LLVMOrcLLJITRef lljit;
    char *model;
    JitFunc *funcs;
    int nfuncs;
};

static bool jit_failed(LLVMErrorRef e, const char *what) {
    if (!e) return false;
    char *msg = LLVMGetErrorMessage(e);
    fprintf(stderr, "nnc: internal error: %s: %s\n", what, msg);
    LLVMDisposeErrorMessage(msg);
    return true;
}

static char *dup_string(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (!d) abort();
    return memcpy(d, s, n);
}

/* Defines the runtime and libm functions the generated code calls as absolute symbols, so
 * they resolve even in executables not linked with -rdynamic. */
static LLVMErrorRef jit_define_runtime(LLVMOrcLLJITRef j) {
    enum { N = sizeof runtime_symbols / sizeof runtime_symbols[0] };
    LLVMOrcCSymbolMapPair pairs[N];
    for (int i = 0; i < N; i++) {
        pairs[i].Name = LLVMOrcLLJITMangleAndIntern(j, runtime_symbols[i].name);
        pairs[i].Sym.Address = (LLVMOrcExecutorAddress)(uintptr_t)runtime_symbols[i].addr;
        pairs[i].Sym.Flags.GenericFlags = LLVMJITSymbolGenericFlagsExported | LLVMJITSymbolGenericFlagsCallable;
        pairs[i].Sym.Flags.TargetFlags = 0;
    }
    LLVMOrcMaterializationUnitRef mu = LLVMOrcAbsoluteSymbols(pairs, N);
    LLVMErrorRef e = LLVMOrcJITDylibDefine(LLVMOrcLLJITGetMainJITDylib(j), mu);
    if (e) LLVMOrcDisposeMaterializationUnit(mu);
    return e;
}

Jit *jit_compile(Module *m, int opt_level) {
    LLVMTargetMachineRef tm = make_target_machine(NULL, NULL, opt_level);
    if (!tm) return NULL;
    Jit *j = calloc(1, sizeof *j);
    if (!j) abort();
    j->model = dup_string(m->name);
    j->nfuncs = m->nfuncs;
    j->funcs = calloc((size_t)m->nfuncs + 1, sizeof *j->funcs);
    int64_t *work = calloc((size_t)m->nfuncs + 1, sizeof *work);
    if (!j->funcs || !work) abort();

    LLVMOrcThreadSafeContextRef tsc = LLVMOrcCreateNewThreadSafeContext();
    LLVMModuleRef mod = build_module(LLVMOrcThreadSafeContextGetContext(tsc), m, NULL, work);
    for (int i = 0; i < m->nfuncs; i++) {
        j->funcs[i].name = dup_string(m->funcs[i]->name);
        j->funcs[i].work_bytes = work[i];
    }
    free(work);
    bool ok = mod != NULL;
    if (ok) {
        set_layout(mod, tm);
        ok = !run_passes(mod, tm, opt_level);
    }
    if (ok) {
        /* the JIT compiles with a host machine of the same optimization level */
        LLVMOrcLLJITBuilderRef builder = LLVMOrcCreateLLJITBuilder();
        LLVMOrcLLJITBuilderSetJITTargetMachineBuilder(
            builder, LLVMOrcJITTargetMachineBuilderCreateFromTargetMachine(tm));
        tm = NULL;
        ok = !jit_failed(LLVMOrcCreateLLJIT(&j->lljit, builder), "cannot create the JIT");
    }
    if (ok) {
        LLVMOrcDefinitionGeneratorRef gen;
        ok = !jit_failed(LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(
                             &gen, LLVMOrcLLJITGetGlobalPrefix(j->lljit), NULL, NULL),
                         "cannot search the process for symbols");
        if (ok) LLVMOrcJITDylibAddGenerator(LLVMOrcLLJITGetMainJITDylib(j->lljit), gen);
    }
    if (ok) ok = !jit_failed(jit_define_runtime(j->lljit), "cannot define the runtime symbols");
    if (ok) {
        LLVMOrcThreadSafeModuleRef tsm = LLVMOrcCreateNewThreadSafeModule(mod, tsc);
        mod = NULL;
        LLVMErrorRef e = LLVMOrcLLJITAddLLVMIRModule(j->lljit, LLVMOrcLLJITGetMainJITDylib(j->lljit), tsm);
        if (e) LLVMOrcDisposeThreadSafeModule(tsm);
        ok = !jit_failed(e, "cannot add the module to the JIT");
    }
    if (mod) LLVMDisposeModule(mod);
    LLVMOrcDisposeThreadSafeContext(tsc);
    if (tm) LLVMDisposeTargetMachine(tm);
    if (!ok) {
        jit_free(j);
        return NULL;
    }
    return j;
}

static const JitFunc *jit_func(Jit *j, const char *func_name) {
    for (int i = 0; i < j->nfuncs; i++)
        if (!strcmp(j->funcs[i].name, func_name) && j->funcs[i].work_bytes >= 0) return &j->funcs[i];
    return NULL;
}

JitFn jit_lookup(Jit *j, const char *func_name) {
    if (!jit_func(j, func_name)) return NULL;
    char name[512];
    snprintf(name, sizeof name, "%s__%s_packed", j->model, func_name);
    LLVMOrcExecutorAddress addr = 0;
    if (jit_failed(LLVMOrcLLJITLookup(j->lljit, &addr, name), "JIT lookup failed")) return NULL;
    JitFn fn;
    uintptr_t a = (uintptr_t)addr;
    memcpy(&fn, &a, sizeof fn);
    return fn;
}

int64_t jit_work_bytes(Jit *j, const char *func_name) {
    const JitFunc *f = jit_func(j, func_name);
    return f ? f->work_bytes : -1;
}

void jit_free(Jit *j) {
    if (!j) return;
    if (j->lljit) jit_failed(LLVMOrcDisposeLLJIT(j->lljit), "cannot dispose of the JIT");
    for (int i = 0; i < j->nfuncs; i++) free(j->funcs[i].name);
    free(j->funcs);
    free(j->model);
    free(j);
}
