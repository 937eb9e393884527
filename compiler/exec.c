/* exec.c — running a module's functions for the driver commands, on compiled code (ORC JIT)
 * or on the reference interpreter (--interp), behind one interface.
 *
 * The state buffer (module_layout's offsets, the compiled code's layout) is the one source of
 * truth between calls: checkpoints are read into it and written from it with libnnrt.
 * Derived tensors (prepare.c) are prepared lazily: a call that stores weights (init,
 * train_step, loss, grad) or a write into the state (exec_state_changed) marks them stale,
 * and the next call that reads them (infer, evaluate) runs `prepare` first. A training run
 * prepares once per validation pass, not once per step. */
#include "nnc.h"
#include "nnrt.h"

#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Compiling touches much of LLVM in nnc's executable: its machine code (36 MB of W1's
 * 114 MB peak during `nnc train`) and read-only tables (7 MB), pages that would stay
 * resident for the whole run though the compiled model needs none of them. They are
 * private mappings of the executable that nothing wrote: MADV_DONTNEED drops them from this
 * process (the page cache keeps them), and a page used again is read back from the file.
 * Only the executable's mappings without a written (anonymous) page, per /proc/self/smaps,
 * so relocated read-only data is never touched; then the heap LLVM freed goes back too. */
static void release_compiler_memory(void) {
    char exe[4096];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    FILE *f = fopen("/proc/self/smaps", "r");
    if (len <= 0 || !f) {
        if (f) fclose(f);
        return;
    }
    exe[len] = 0;
    char line[4096 + 128];
    unsigned long lo = 0, hi = 0;
    bool candidate = false;
    while (fgets(line, sizeof line, f)) {
        unsigned long a, b;
        char perms[8];
        int path_at = 0;
        if (sscanf(line, "%lx-%lx %7s %*s %*s %*s %n", &a, &b, perms, &path_at) >= 3 && path_at) {
            char *path = line + path_at;
            path[strcspn(path, "\n")] = 0;
            lo = a, hi = b;
            candidate = perms[1] == '-' && perms[3] == 'p' && !strcmp(path, exe);
            continue;
        }
        unsigned long anon;
        if (candidate && sscanf(line, "Anonymous: %lu kB", &anon) == 1) {
            if (anon == 0) madvise((void *)lo, hi - lo, MADV_DONTNEED);
            candidate = false;
        }
    }
    fclose(f);
    malloc_trim(0);
}

int exec_open(Exec *e, Module *m, bool use_interp, uint64_t seed, const char *const *funcs) {
    memset(e, 0, sizeof *e);
    e->m = m;
    e->seed = seed;
    e->state = calloc(1, (size_t)m->state_bytes + 64);
    if (!e->state) return NNRT_ENOMEM;
    if (!use_interp) {
        /* compile only the functions the command calls (init and prepare always): a view of
         * the module with a subset of its functions, same tensors, same layout */
        Module *view = m;
        if (funcs) {
            view = arena_alloc(m->arena, sizeof *view);
            *view = *m;
            view->funcs = arena_alloc(m->arena, sizeof *view->funcs * (size_t)(m->nfuncs + 1));
            view->nfuncs = view->funcs_cap = 0;
            for (int i = 0; i < m->nfuncs; i++) {
                bool wanted = !strcmp(m->funcs[i]->name, "init") || !strcmp(m->funcs[i]->name, "prepare");
                for (int k = 0; funcs[k]; k++) wanted |= !strcmp(m->funcs[i]->name, funcs[k]);
                if (wanted) view->funcs[view->nfuncs++] = m->funcs[i];
            }
            view->funcs_cap = view->nfuncs;
        }
        const char *lvl = getenv("NNC_JIT_OPT");
        e->jit = jit_compile(view, lvl && *lvl >= '0' && *lvl <= '3' ? *lvl - '0' : 2);
        e->jit_view = view;
        if (!e->jit) return NNRT_EARG;
        /* the first lookup compiles the whole module; then LLVM's code is not needed */
        if (view->nfuncs && jit_lookup(e->jit, view->funcs[0]->name)) release_compiler_memory();
        for (int i = 0; i < view->nfuncs; i++) {
            int64_t w = jit_work_bytes(e->jit, view->funcs[i]->name);
            if (w > e->work_bytes) e->work_bytes = w;
        }
        e->work = calloc(1, (size_t)e->work_bytes + 64);
        if (!e->work) return NNRT_ENOMEM;
    } else {
        interp_init(&e->interp, m, false);
        e->interp.seed = seed;
        e->use_interp = true;
    }
    return 0;
}

void exec_close(Exec *e) {
    if (e->use_interp) interp_free(&e->interp);
    if (e->jit) jit_free(e->jit);
    free(e->state);
    free(e->work);
    memset(e, 0, sizeof *e);
}

void *exec_state(Exec *e) {
    if (e->use_interp) interp_save_state(&e->interp, e->state);
    return e->state;
}

void exec_state_changed(Exec *e) {
    if (e->use_interp) interp_load_state(&e->interp, e->state);
    e->derived_stale = true;
}

/* Interpreter call: float/int32 buffers <-> double tensors. */
static int call_interp(Exec *e, Func *f, int n, void **bufs, char *err, size_t errlen) {
    ITensor *args = calloc((size_t)f->nargs + 1, sizeof *args);
    ITensor *outs = calloc((size_t)f->nouts + 1, sizeof *outs);
    int rc = 0;
    for (int i = 0; i < f->nargs; i++) {
        const FuncArg *a = &f->args[i];
        ITensor *t = &args[i];
        t->dtype = a->dtype;
        t->rank = a->shape.rank;
        for (int d = 0; d < t->rank; d++) t->dim[d] = shape_dim(&a->shape, d, n);
        t->numel = shape_numel(&a->shape, n);
        t->data = malloc((size_t)(t->numel + 1) * sizeof(double));
        for (int64_t k = 0; k < t->numel; k++)
            t->data[k] = a->dtype == DT_I32 ? ((const int32_t *)bufs[i])[k] : ((const float *)bufs[i])[k];
    }
    rc = interp_run(&e->interp, f, n, args, outs, err, errlen);
    if (rc == 0) {
        for (int i = 0; i < f->nouts; i++) {
            const ITensor *t = &outs[i];
            void *dst = bufs[f->nargs + i];
            if (!dst) continue;
            for (int64_t k = 0; k < t->numel; k++) {
                if (t->dtype == DT_I32) ((int32_t *)dst)[k] = (int32_t)t->data[k];
                else ((float *)dst)[k] = (float)t->data[k];
            }
        }
    }
    for (int i = 0; i < f->nargs; i++) free(args[i].data);
    for (int i = 0; i < f->nouts; i++) itensor_free(&outs[i]);
    free(args);
    free(outs);
    return rc;
}

static int call_func(Exec *e, Func *f, int n, void **bufs, char *err, size_t errlen);

int exec_call(Exec *e, const char *fn, int n, void **bufs, char *err, size_t errlen) {
    Func *f = module_find_func(e->m, fn);
    if (!f) {
        snprintf(err, errlen, "model '%s' has no function '%s'", e->m->name, fn);
        return NNRT_EARG;
    }
    if (e->derived_stale && prepare_needed_by(e->m, f)) {
        int rc = exec_prepare(e, err, errlen);
        if (rc) return rc;
    }
    int rc = call_func(e, f, n, bufs, err, errlen);
    if (!rc && prepare_stale_after(e->m, f)) e->derived_stale = true;
    return rc;
}

/* Runs f on the interpreter or its compiled code. */
static int call_func(Exec *e, Func *f, int n, void **bufs, char *err, size_t errlen) {
    const char *fn = f->name;
    if (e->use_interp) return call_interp(e, f, n, bufs, err, errlen);
    JitFn entry = jit_lookup(e->jit, fn);
    if (!entry) {
        snprintf(err, errlen, "compiled code lacks '%s'", fn);
        return NNRT_EARG;
    }
    /* compiled code refuses NULL buffers: unwanted outputs go to scratch memory */
    void *full[IR_MAX_INPUTS * 4 + 64];
    void *scratch[64] = {0};
    int total = f->nargs + f->nouts;
    if (total > (int)(sizeof full / sizeof full[0])) {
        snprintf(err, errlen, "'%s' has too many arguments and outputs", fn);
        return NNRT_EARG;
    }
    int rc = 0;
    full[0] = bufs ? bufs[0] : NULL; /* init's packed entry takes the seed in args[0] */
    for (int i = 0; i < total; i++) {
        full[i] = bufs[i];
        if (full[i] || i < f->nargs) continue;
        const Node *v = &f->nodes[f->outs[i - f->nargs].value];
        full[i] = scratch[i - f->nargs] = calloc((size_t)shape_numel(&v->shape, n) + 1, 8);
        if (!full[i]) rc = NNRT_ENOMEM;
    }
    if (!rc) rc = entry(e->state, e->work, n, full);
    for (int i = 0; i < 64; i++) free(scratch[i]);
    if (rc) snprintf(err, errlen, "%s", nnrt_strerror(rc));
    return rc;
}

int exec_init(Exec *e, char *err, size_t errlen) {
    e->derived_stale = true;
    if (e->use_interp) {
        e->interp.seed = e->seed;
        return interp_run(&e->interp, module_find_func(e->m, "init"), 1, NULL, NULL, err, errlen);
    }
    void *args[1] = {&e->seed};
    return exec_call(e, "init", 1, args, err, errlen);
}

int exec_prepare(Exec *e, char *err, size_t errlen) {
    Func *f = module_find_func(e->m, "prepare");
    int rc = f ? call_func(e, f, 1, NULL, err, errlen) : 0;
    if (!rc) e->derived_stale = false;
    return rc;
}

/* ---------------------------------------------------------------- model descriptors */

static void io_from_arg(nnrt_io_info *io, const char *name, DType dt, const Shape *s) {
    io->name = name;
    io->dtype = dt == DT_I32 ? NNRT_I32 : dt == DT_F64 ? NNRT_F64 : NNRT_F32;
    io->rank = s->rank;
    io->size = 1;
    for (int d = 0; d < s->rank; d++) {
        io->shape[d] = (s->batch_mask >> d & 1) ? -1 : s->dim[d];
        io->size *= s->dim[d];
    }
}

const nnrt_model_info *module_info(Module *m) {
    Arena *a = m->arena;
    nnrt_model_info *info = arena_alloc(a, sizeof *info);
    nnrt_tensor_info *ts = arena_alloc(a, sizeof *ts * (size_t)(m->ntensors + 1));
    for (int i = 0; i < m->ntensors; i++) {
        const ModTensor *t = &m->tensors[i];
        ts[i].name = t->name;
        ts[i].kind = (int)t->kind;
        ts[i].dtype = t->dtype == DT_I32 ? NNRT_I32 : t->dtype == DT_F64 ? NNRT_F64 : NNRT_F32;
        ts[i].rank = t->shape.rank;
        for (int d = 0; d < t->shape.rank; d++) ts[i].shape[d] = t->shape.dim[d];
        ts[i].offset = (uint64_t)t->offset;
        ts[i].bytes = (uint64_t)t->bytes;
    }
    info->name = m->name;
    info->max_batch = (int)m->max_batch;
    info->state_bytes = (uint64_t)m->state_bytes;
    info->n_tensors = m->ntensors;
    info->tensors = ts;
    info->prepare = NULL; /* the driver prepares lazily (exec_call), not in nnrt_load */
    info->prepare_work_bytes = 0;
    Func *ev = module_find_func(m, "evaluate");
    Func *inf = module_find_func(m, "infer");
    if (ev) {
        int ni = 0, nl = 0;
        for (int i = 0; i < ev->nargs; i++) *(ev->args[i].role == ARG_LABEL ? &nl : &ni) += 1;
        nnrt_io_info *in = arena_alloc(a, sizeof *in * (size_t)(ni + 1));
        nnrt_io_info *lb = arena_alloc(a, sizeof *lb * (size_t)(nl + 1));
        ni = nl = 0;
        for (int i = 0; i < ev->nargs; i++) {
            const FuncArg *arg = &ev->args[i];
            io_from_arg(arg->role == ARG_LABEL ? &lb[nl++] : &in[ni++], arg->name, arg->dtype, &arg->shape);
        }
        info->n_inputs = ni;
        info->inputs = in;
        info->n_labels = nl;
        info->labels = lb;
    }
    if (inf) {
        nnrt_io_info *out = arena_alloc(a, sizeof *out * (size_t)(inf->nouts + 1));
        for (int i = 0; i < inf->nouts; i++) {
            const Node *v = &inf->nodes[inf->outs[i].value];
            io_from_arg(&out[i], inf->outs[i].name, v->dtype, &v->shape);
        }
        info->n_outputs = inf->nouts;
        info->outputs = out;
    }
    return info;
}
