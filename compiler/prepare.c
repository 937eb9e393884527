/* prepare.c — derived module tensors: the parts of `infer` and `evaluate` that depend on the
 * weights only are computed once after the weights change, not on every call.
 *
 * A node of an inference function is weight-only when it reads nothing but parameters,
 * batchnorm statistics (TK_PARAM, TK_STATE) and constants: no input, no batch size, no
 * randomness, no batch axis in its shape. bnfold's scaled weights W * A and biases c * A + B
 * are such nodes, as are batchnorm's sqrt(running_var + eps) when it is not folded. Where
 * a weight-only value that computes something (more than reading, reshaping or broadcasting
 * a tensor) is read by a node that is not weight-only, it becomes a derived tensor:
 *
 *   infer:   %9 = mul %1, %8 ; %10 = conv2d %0, %9     becomes    %2 = tensor @derived.W
 *                                                                  %3 = conv2d %0, %2
 *   prepare: the weight-only nodes, then store @derived.W (and every other derived tensor)
 *
 * (views on top, a reshape or a broadcast, stay in the inference function: they cost
 * nothing there and would make the derived tensor larger). `infer` and `evaluate` share
 * their derived tensors: prepare is cleaned up with the -O2 passes before the tensors are
 * made, so that equal values (cse) become one tensor.
 *
 * When derived tensors are recomputed. The IR functions stay what they were: init and
 * train_step (and loss, grad: batchnorm statistics) store weights and leave the derived
 * tensors stale; prepare_stale_after says which functions do. Whoever calls them runs
 * prepare before the next infer or evaluate:
 *   - the public C entries M_init and M_train_step call prepare's body after their own
 *     (llvm.c), so a program's infer always sees derived tensors of the current weights;
 *     after writing weights any other way (nnrt_load, memcpy) it calls M_prepare;
 *   - the driver (exec.c) is lazy: a call that leaves them stale, init or a write into the
 *     state (a checkpoint, --resume) marks them so, and the next call that reads them
 *     (prepare_needed_by: infer, evaluate) runs prepare first. `nnc train` prepares once
 *     per validation pass, not once per step.
 * Derived tensors are TK_DERIVED (NNRT_DERIVED in the model descriptor): laid out after all
 * the others, never in a checkpoint (NNRT_KINDS_ALL leaves them out), and never initialized
 * by init_fill. An object with embedded weights gets them computed at compile time
 * (cmd_compile.c runs prepare through the interpreter) and has no prepare entry.
 *
 * Numbers: the derived tensors hold exactly what the inference functions computed before
 * (the same nodes, f32 values stored and read back unchanged), so hoisting is bit-exact.
 */
#include "nnc.h"

#include <stdlib.h>
#include <string.h>

enum { CLEANUP_ROUNDS = 4 };

static void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n + 1, size);
    if (!p) {
        fprintf(stderr, "nnc: out of memory\n");
        abort();
    }
    return p;
}

static bool is_inference(const Func *f) {
    return !strcmp(f->name, "infer") || !strcmp(f->name, "evaluate");
}

/* Ops that compute nothing worth keeping: a read, a constant, or a view of one. */
static bool is_trivial(Op op) {
    return op == OP_tensor || op == OP_const || op == OP_reshape || op == OP_broadcast ||
           op == OP_transpose || op == OP_slice;
}

/* The -O2 clean-up round, repeated until nothing changes. */
static void cleanup(Func *f) {
    for (int round = 0; round < CLEANUP_ROUNDS; round++) {
        int changes = fold_constants(f);
        changes += simplify(f);
        changes += cse(f);
        changes += dce(f);
        if (!changes) break;
    }
}

/* One hoisted value: old node `root` of function `f` is prepare's output `out`. */
typedef struct Hoist {
    Func *f;
    Ref root;
    int out;
} Hoist;

typedef struct Hoister {
    Module *m;
    Func *prep;
    Hoist *hoists;
    int nhoists, cap;
} Hoister;

/* Finds the weight-only values of f read by the rest of f and copies what computes them into
 * prepare, each as an output; records them in h. */
static void collect(Hoister *h, Func *f) {
    Module *m = h->m;
    int n = f->nnodes;
    bool *stored = xcalloc((size_t)m->ntensors, sizeof *stored);
    bool *weight_only = xcalloc((size_t)n, sizeof *weight_only);
    bool *computes = xcalloc((size_t)n, sizeof *computes);
    bool *read_outside = xcalloc((size_t)n, sizeof *read_outside);
    bool *root = xcalloc((size_t)n, sizeof *root);
    bool *needed = xcalloc((size_t)n, sizeof *needed);
    Ref *map = xcalloc((size_t)n, sizeof *map);
    for (int i = 0; i < n; i++)
        if (f->nodes[i].op == OP_store) stored[f->nodes[i].attr.tensor] = true;
    for (int i = 0; i < n; i++) {
        const Node *nd = &f->nodes[i];
        bool wo;
        if (shape_has_batch(&nd->shape)) wo = false;
        else if (nd->op == OP_tensor) {
            TensorKind k = m->tensors[nd->attr.tensor].kind;
            wo = (k == TK_PARAM || k == TK_STATE) && !stored[nd->attr.tensor];
        } else if (nd->op == OP_const) wo = true;
        else wo = !(op_info[nd->op].flags & (OPF_LEAF | OPF_EFFECT)) && nd->nin > 0;
        bool comp = !is_trivial(nd->op);
        for (int j = 0; j < nd->nin && wo; j++) {
            wo = weight_only[nd->in[j]];
            comp |= computes[nd->in[j]];
        }
        weight_only[i] = wo;
        computes[i] = wo && comp;
        for (int j = 0; j < nd->nin && !wo; j++) read_outside[nd->in[j]] = true;
    }
    for (int o = 0; o < f->nouts; o++) read_outside[f->outs[o].value] = true;
    /* the roots: computing weight-only values read outside, below their views */
    for (int i = 0; i < n; i++) {
        if (!computes[i] || !read_outside[i]) continue;
        Ref r = i;
        while ((f->nodes[r].op == OP_reshape || f->nodes[r].op == OP_broadcast) &&
               computes[f->nodes[r].in[0]])
            r = f->nodes[r].in[0];
        root[r] = true;
    }
    for (int i = n - 1; i >= 0; i--) {
        needed[i] |= root[i];
        if (needed[i])
            for (int j = 0; j < f->nodes[i].nin; j++) needed[f->nodes[i].in[j]] = true;
    }
    for (int i = 0; i < n; i++) {
        map[i] = REF_NONE;
        if (!needed[i]) continue;
        Node nd = f->nodes[i];
        for (int j = 0; j < nd.nin; j++) nd.in[j] = map[nd.in[j]];
        map[i] = ir_node(h->prep, nd.op, nd.dtype, nd.shape, nd.nin, nd.in, &nd.attr);
        h->prep->nodes[map[i]].name = nd.name;
        h->prep->nodes[map[i]].loc = nd.loc;
        if (root[i]) {
            func_add_out(h->prep, "derived", OUT_EXTRA, map[i]);
            Hoist x = {f, i, h->prep->nouts - 1};
            VEC_PUSH(m->arena, h->hoists, h->nhoists, h->cap, x);
        }
    }
    free(stored);
    free(weight_only);
    free(computes);
    free(read_outside);
    free(root);
    free(needed);
    free(map);
}

/* A name for the derived tensor of prepare's value v: "derived." and the value's own name
 * (bnfold names the folded weights "b1.conv.weight", ...), else the largest tensor it reads
 * (the first of equal ones); made unique. */
static const char *derived_name(Module *m, const Func *prep, Ref v) {
    if (prep->nodes[v].name && prep->nodes[v].op != OP_tensor) {
        const char *base = arena_printf(m->arena, "derived.%s", prep->nodes[v].name);
        const char *name = base;
        for (int k = 2; module_find_tensor(m, name) >= 0; k++) name = arena_printf(m->arena, "%s.%d", base, k);
        return name;
    }
    bool *reach = xcalloc((size_t)prep->nnodes, sizeof *reach);
    reach[v] = true;
    int best = -1;
    for (Ref i = v; i >= 0; i--) {
        const Node *nd = &prep->nodes[i];
        if (!reach[i]) continue;
        for (int j = 0; j < nd->nin; j++) reach[nd->in[j]] = true;
        if (nd->op != OP_tensor) continue;
        int t = nd->attr.tensor;
        if (best < 0 || m->tensors[t].bytes >= m->tensors[best].bytes) best = t;
    }
    free(reach);
    const char *base = arena_printf(m->arena, "derived.%s", best >= 0 ? m->tensors[best].name : "const");
    const char *name = base;
    for (int k = 2; module_find_tensor(m, name) >= 0; k++) name = arena_printf(m->arena, "%s.%d", base, k);
    return name;
}

/* require: the -O2 pipeline has run (the inference functions are folded and clean); module
 * tensors laid out. Adds the derived tensors and `prepare`, rewrites infer and evaluate to
 * read them, and lays out the state again. Returns the number of derived tensors (0:
 * nothing changed). */
int prepare_build(Module *m) {
    if (module_find_func(m, "prepare")) return 0;
    Hoister h = {.m = m};
    int nfuncs = m->nfuncs;
    h.prep = module_add_func(m, "prepare");
    for (int i = 0; i < nfuncs; i++)
        if (is_inference(m->funcs[i])) collect(&h, m->funcs[i]);
    Func *prep = h.prep;
    if (!h.nhoists) {
        m->nfuncs--; /* prepare is the last function */
        return 0;
    }
    cleanup(prep);

    /* one derived tensor per distinct value; a plain read or constant is not worth one */
    int nouts = prep->nouts;
    int *tensor_of = xcalloc((size_t)nouts, sizeof *tensor_of);
    int nderived = 0;
    for (int o = 0; o < nouts; o++) {
        Ref v = prep->outs[o].value;
        tensor_of[o] = -1;
        const Node *nd = &prep->nodes[v];
        if (nd->op == OP_tensor || nd->op == OP_const) continue;
        for (int k = 0; k < o && tensor_of[o] < 0; k++)
            if (prep->outs[k].value == v) tensor_of[o] = tensor_of[k];
        if (tensor_of[o] >= 0) continue;
        const char *name = derived_name(m, prep, v);
        nd = &prep->nodes[v];
        tensor_of[o] = module_add_tensor(m, name, TK_DERIVED, nd->dtype, nd->shape,
                                         (InitSpec){.kind = INIT_ZEROS}, nd->loc);
        ir_store(prep, tensor_of[o], v);
        nderived++;
    }

    /* the inference functions read the derived tensors (or the read or constant itself) */
    for (int i = 0; i < nfuncs; i++) {
        Func *f = m->funcs[i];
        bool any = false;
        for (int k = 0; k < h.nhoists; k++) any |= h.hoists[k].f == f;
        if (!any) continue;
        Rewrite rw;
        rewrite_begin(&rw, f);
        for (int j = 0; j < rw.nold; j++) {
            Node nd = rewrite_node(&rw, j);
            int out = -1;
            for (int k = 0; k < h.nhoists && out < 0; k++)
                if (h.hoists[k].f == f && h.hoists[k].root == j) out = h.hoists[k].out;
            if (out < 0) {
                rewrite_keep(&rw, j, &nd);
                continue;
            }
            Ref r;
            if (tensor_of[out] >= 0) {
                r = ir_tensor(f, tensor_of[out]);
            } else {
                const Node *src = &prep->nodes[prep->outs[out].value];
                r = ir_node(f, src->op, src->dtype, src->shape, 0, NULL, &src->attr);
                f->nodes[r].name = src->name;
            }
            rewrite_forward(&rw, j, &nd, r);
        }
        rewrite_end(&rw);
        cleanup(f);
    }
    free(tensor_of);
    prep->nouts = 0;
    dce(prep);
    if (!nderived) {
        m->nfuncs--;
        return 0;
    }

    module_layout(m);
    return nderived;
}

bool prepare_stale_after(const Module *m, const Func *f) {
    const Func *prep = module_find_func(m, "prepare");
    if (!prep || f == prep) return false;
    for (int i = 0; i < f->nnodes; i++) {
        if (f->nodes[i].op != OP_store) continue;
        for (int j = 0; j < prep->nnodes; j++)
            if (prep->nodes[j].op == OP_tensor && prep->nodes[j].attr.tensor == f->nodes[i].attr.tensor) return true;
    }
    return false;
}

bool prepare_needed_by(const Module *m, const Func *f) {
    for (int i = 0; i < f->nnodes; i++)
        if (f->nodes[i].op == OP_tensor && m->tensors[f->nodes[i].attr.tensor].kind == TK_DERIVED) return true;
    return false;
}
