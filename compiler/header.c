/* header.c — the C header of a compiled model (DESIGN.md section 6, docs/c-api.md).
 *
 * The header and the object agree because both come from the same sources: the entries and
 * their parameters from llvm_public_params, the sizes from llvm_state_bytes and the planner
 * (llvm_max_work_bytes). */
#include "nnc.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* NAME upper-cased, every character that cannot be in a macro name replaced by '_' */
static void upper_ident(char *dst, size_t len, const char *src) {
    size_t i = 0;
    for (; src[i] && i + 1 < len; i++) dst[i] = isalnum((unsigned char)src[i]) ? (char)toupper((unsigned char)src[i]) : '_';
    dst[i] = 0;
}

static const char *c_type(DType dt) {
    switch (dt) {
    case DT_I32: return "int32_t";
    case DT_F64: return "double";
    default: return "float";
    }
}

/* "[n, 784]": the batch axis as n (k*n for k samples per batch entry), "scalar" for rank 0 */
static const char *shape_comment(const Shape *s, char *buf, size_t len) {
    if (s->rank == 0) {
        snprintf(buf, len, "scalar");
        return buf;
    }
    size_t used = (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < s->rank && used < len; i++) {
        const char *sep = i ? ", " : "";
        if (s->batch_mask >> i & 1) {
            if (s->dim[i] == 1) used += (size_t)snprintf(buf + used, len - used, "%sn", sep);
            else used += (size_t)snprintf(buf + used, len - used, "%s%" PRId64 "*n", sep, s->dim[i]);
        } else {
            used += (size_t)snprintf(buf + used, len - used, "%s%" PRId64, sep, s->dim[i]);
        }
    }
    if (used < len) snprintf(buf + used, len - used, "]");
    return buf;
}

/* ---------------------------------------------------------------- macros */

typedef struct SizeMacro {
    const char *name;
    int64_t size;
    const char *what;  /* "input", "label", "output" */
} SizeMacro;

static void add_size(SizeMacro *ms, int *n, const char *name, const Shape *s, const char *what) {
    for (int i = 0; i < *n; i++)
        if (!strcmp(ms[i].name, name)) return;  /* one macro per name */
    ms[*n] = (SizeMacro){name, shape_numel(s, 1), what};
    (*n)++;
}

/* ---------------------------------------------------------------- prototypes */

/* The comment above entry `func`; derived: the model has derived tensors (prepare.c). */
static const char *func_doc(const char *func, const char *upper, bool derived) {
    static char buf[512];
    if (!strcmp(func, "init"))
        snprintf(buf, sizeof buf,
                 "/* Sets every parameter, state, optimizer slot and the step counter to its initial\n"
                 " * value for `seed` (the values `nnc train --seed` starts from)%s */\n",
                 derived ? ", then prepares\n * the derived tensors." : ".");
    else if (!strcmp(func, "infer"))
        snprintf(buf, sizeof buf, "/* Inference on n samples (dropout off, batchnorm running statistics). */\n");
    else if (!strcmp(func, "train_step"))
        snprintf(buf, sizeof buf,
                 "/* One training step on a minibatch of n samples: forward, loss, gradients, optimizer\n"
                 " * update, step counter%s. A NaN or infinite loss returns NNRT_ENONFINITE with the state\n"
                 " * unchanged (*loss holds the value). */\n",
                 derived ? ", then the derived tensors of the new\n * weights" : "");
    else if (!strcmp(func, "prepare"))
        snprintf(buf, sizeof buf,
                 "/* Recomputes the derived tensors (batchnorm folded into the weights, ...) from the\n"
                 " * weights in the state. init and train_step do it themselves; call it after writing\n"
                 " * weights any other way (nnrt_load, memcpy), before infer or evaluate. */\n");
    else if (!strcmp(func, "evaluate"))
        snprintf(buf, sizeof buf,
                 "/* Loss and metrics of n samples in inference mode; metrics[i] as %s_METRIC_NAMES. */\n",
                 upper);
    else
        buf[0] = 0;
    return buf;
}

static void print_prototype(FILE *out, const Module *m, const Func *f, const PubParam *pp, int np,
                            const char *upper) {
    char shape[128];
    fputs(func_doc(f->name, upper, module_find_func(m, "prepare") != NULL), out);
    fprintf(out, "int %s_%s(%s *m", m->name, f->name, m->name);
    bool batch = llvm_public_has_batch(f);
    /* one parameter per line, with its shape */
    char (*lines)[256] = malloc((size_t)(np + 1) * sizeof *lines);
    char (*comments)[512] = malloc((size_t)(np + 1) * sizeof *comments);
    if (!lines || !comments) abort();
    int nl = 0;
    if (batch) {
        snprintf(lines[nl], sizeof lines[nl], "int n");
        snprintf(comments[nl++], sizeof comments[0], "/* samples, 1..%s_MAX_BATCH */", upper);
    }
    int nmetrics = public_metric_count(f);
    for (int i = 0; i < np; i++) {
        const PubParam *p = &pp[i];
        switch (p->kind) {
        case PP_SEED:
            snprintf(lines[nl], sizeof lines[nl], "uint64_t %s", p->name);
            comments[nl][0] = 0;
            break;
        case PP_ARG: {
            const FuncArg *a = &f->args[p->index];
            snprintf(lines[nl], sizeof lines[nl], "const %s *%s", c_type(a->dtype), p->name);
            snprintf(comments[nl], sizeof comments[nl], "/* %s%s */", a->role == ARG_LABEL ? "label " : "",
                     shape_comment(&a->shape, shape, sizeof shape));
            break;
        }
        case PP_OUT: {
            const Node *v = &f->nodes[f->outs[p->index].value];
            snprintf(lines[nl], sizeof lines[nl], "%s *%s", c_type(v->dtype), p->name);
            snprintf(comments[nl], sizeof comments[nl], "/* out: %s */", shape_comment(&v->shape, shape, sizeof shape));
            break;
        }
        case PP_METRICS: {
            snprintf(lines[nl], sizeof lines[nl], "float *%s", p->name);
            size_t used = (size_t)snprintf(comments[nl], sizeof comments[nl], "/* out: [%d]", nmetrics);
            for (int o = 0, k = 0; o < f->nouts && used < sizeof comments[nl]; o++)
                if (public_metric(f, o))
                    used += (size_t)snprintf(comments[nl] + used, sizeof comments[nl] - used, "%s %s",
                                             k++ ? "," : ":", f->outs[o].name);
            if (!nmetrics && used < sizeof comments[nl])
                used += (size_t)snprintf(comments[nl] + used, sizeof comments[nl] - used, ", may be NULL");
            if (used < sizeof comments[nl]) snprintf(comments[nl] + used, sizeof comments[nl] - used, " */");
            break;
        }
        }
        nl++;
    }
    bool commented = false;
    for (int i = 0; i < nl; i++) commented |= comments[i][0] != 0;
    if (!commented) {
        for (int i = 0; i < nl; i++) fprintf(out, ", %s", lines[i]);
        fprintf(out, ");\n\n");
        free(lines);
        free(comments);
        return;
    }
    fprintf(out, ",\n");
    size_t width = 0;
    for (int i = 0; i < nl; i++)
        if (strlen(lines[i]) > width) width = strlen(lines[i]);
    int indent = (int)(strlen(m->name) + strlen(f->name) + 6);
    for (int i = 0; i < nl; i++) {
        bool last = i == nl - 1;
        fprintf(out, "%*s%s%s", indent, "", lines[i], last ? ");" : ",");
        if (comments[i][0]) fprintf(out, "%*s %s", (int)(width - strlen(lines[i])) + (last ? 0 : 1), "", comments[i]);
        fprintf(out, "\n");
    }
    fprintf(out, "\n");
    free(lines);
    free(comments);
}

/* ---------------------------------------------------------------- the header */

static void print_usage_comment(FILE *out, const Module *m, const char *upper, bool embedded, bool has_train) {
    fprintf(out, "/* %s.h — the C interface of model '%s', generated by nnc. Do not edit.\n *\n", m->name, m->name);
    fprintf(out, " * Memory is the caller's: a context holds a state block (the weights, and whatever\n"
                 " * training adds) and a work block (scratch for one call). The generated code uses no\n"
                 " * globals, allocates nothing and does no I/O, so any number of contexts may run in\n"
                 " * parallel, one per thread.\n *\n");
    fprintf(out, " *     %s m = {", m->name);
    if (embedded) fprintf(out, "NULL, malloc(%s_WORK_BYTES)};    weights are built in\n", upper);
    else fprintf(out, "malloc(%s_STATE_BYTES), malloc(%s_WORK_BYTES)};\n", upper, upper);
    if (!embedded) {
        fprintf(out, " *     %s_init(&m, 42);                      or nnrt_load(%s_info(), m.state, ...)\n",
                m->name, m->name);
        /* under "or nnrt_load" */
        fprintf(out, " *%*sthen %s_prepare(&m)\n", (int)(strlen(m->name) + 5 + 14 + 22), "", m->name);
        if (has_train)
            fprintf(out, " *     %s_train_step(&m, n, x, y, &loss);    n <= %s_MAX_BATCH\n", m->name, upper);
    }
    fprintf(out, " *     %s_infer(&m, n, x, out);\n *\n", m->name);
    fprintf(out, " * Every entry returns 0 or a negative NNRT_E* code (nnrt.h): NNRT_EBATCH when n is\n"
                 " * outside 1..%s_MAX_BATCH, NNRT_ENULL for a NULL pointer; nothing is written then.\n"
                 " * Buffers are row-major; outputs must not overlap inputs.\n *\n",
            upper);
    fprintf(out, " * Build: cc app.c %s.o -lnnrt -lopenblas -lz -lm   (docs/c-api.md)\n */\n", m->name);
}

int header_emit_embedded(const Module *m, const char *path, bool embedded) {
    FILE *out = fopen(path, "w");
    if (!out) {
        fprintf(stderr, "nnc: error: cannot write '%s': %s\n", path, strerror(errno));
        return 1;
    }
    char upper[256];
    upper_ident(upper, sizeof upper, m->name);
    const Func *train = module_find_func(m, "train_step");
    print_usage_comment(out, m, upper, embedded, train && llvm_func_emitted(train, embedded));
    fprintf(out, "#ifndef %s_H\n#define %s_H\n\n#include <stdint.h>\n\n#include \"nnrt.h\"\n\n", upper, upper);
    fprintf(out, "#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n");

    /* sizes */
    SizeMacro sizes[256];
    int nsizes = 0;
    for (int i = 0; i < m->nfuncs; i++) {
        const Func *f = m->funcs[i];
        if (!llvm_func_emitted(f, embedded)) continue;
        for (int a = 0; a < f->nargs && nsizes < 250; a++)
            add_size(sizes, &nsizes, f->args[a].name, &f->args[a].shape, f->args[a].role == ARG_LABEL ? "label" : "input");
    }
    const Func *infer = module_find_func(m, "infer");
    for (int o = 0; infer && o < infer->nouts && nsizes < 250; o++)
        if (infer->outs[o].role == OUT_OUTPUT)
            add_size(sizes, &nsizes, infer->outs[o].name, &infer->nodes[infer->outs[o].value].shape, "output");
    /* every #define aligned on one column */
    typedef struct Define {
        char name[600];
        char value[64];
        char comment[700];
    } Define;
    Define *defs = calloc((size_t)nsizes + 8, sizeof *defs);
    if (!defs) abort();
    int nd = 0;
    const Func *eval = module_find_func(m, "evaluate");
    bool has_eval = eval && llvm_func_emitted(eval, embedded);
    int nmetrics = has_eval ? public_metric_count(eval) : 0;
    snprintf(defs[nd].name, sizeof defs[nd].name, "%s_MAX_BATCH", upper);
    snprintf(defs[nd++].value, sizeof defs[0].value, "%" PRId64, m->max_batch);
    snprintf(defs[nd].name, sizeof defs[nd].name, "%s_STATE_BYTES", upper);
    snprintf(defs[nd].value, sizeof defs[0].value, "%" PRId64, embedded ? 0 : llvm_state_bytes(m));
    snprintf(defs[nd++].comment, sizeof defs[0].comment, "/* %s */",
             embedded ? "the weights are built into the object: state may be NULL"
             : module_find_func(m, "prepare") ? "params, states, optimizer slots, step counter, derived tensors, init seed"
                                              : "params, states, optimizer slots, step counter, init seed");
    snprintf(defs[nd].name, sizeof defs[nd].name, "%s_WORK_BYTES", upper);
    snprintf(defs[nd].value, sizeof defs[0].value, "%" PRId64, llvm_max_work_bytes(m, embedded));
    snprintf(defs[nd++].comment, sizeof defs[0].comment, "/* scratch for one call of any entry */");
    for (int i = 0; i < nsizes; i++) {
        char u[256];
        upper_ident(u, sizeof u, sizes[i].name);
        snprintf(defs[nd].name, sizeof defs[nd].name, "%s_%s_SIZE", upper, u);
        snprintf(defs[nd].value, sizeof defs[0].value, "%" PRId64, sizes[i].size);
        snprintf(defs[nd++].comment, sizeof defs[0].comment, "/* values per sample of %s %s */", sizes[i].what,
                 sizes[i].name);
    }
    if (has_eval) {
        snprintf(defs[nd].name, sizeof defs[nd].name, "%s_N_METRICS", upper);
        snprintf(defs[nd].value, sizeof defs[0].value, "%d", nmetrics);
        snprintf(defs[nd++].comment, sizeof defs[0].comment, "/* values %s_evaluate writes to metrics */",
                 m->name);
    }
    size_t wn = 0, wv = 0;
    for (int i = 0; i < nd; i++) {
        if (strlen(defs[i].name) > wn) wn = strlen(defs[i].name);
        if (strlen(defs[i].value) > wv) wv = strlen(defs[i].value);
    }
    for (int i = 0; i < nd; i++) {
        if (defs[i].comment[0])
            fprintf(out, "#define %-*s %-*s  %s\n", (int)wn, defs[i].name, (int)wv, defs[i].value, defs[i].comment);
        else
            fprintf(out, "#define %-*s %s\n", (int)wn, defs[i].name, defs[i].value);
    }
    free(defs);
    if (has_eval && nmetrics) {
        fprintf(out, "#define %s_METRIC_NAMES {", upper);
        for (int o = 0, j = 0; o < eval->nouts; o++)
            if (public_metric(eval, o)) fprintf(out, "%s\"%s\"", j++ ? ", " : "", eval->outs[o].name);
        fprintf(out, "}\n");
    }
    fprintf(out, "\n/* Caller-owned memory: state (%s_STATE_BYTES bytes) and work (%s_WORK_BYTES bytes). */\n",
            upper, upper);
    fprintf(out, "typedef struct %s { void *state; void *work; } %s;\n\n", m->name, m->name);

    /* entries, in the order init, prepare, infer, train_step, evaluate; every object but an
     * embedded one has prepare (without derived tensors it only checks its argument) */
    static const char *const order[] = {"init", "prepare", "infer", "train_step", "evaluate"};
    for (size_t k = 0; k < sizeof order / sizeof order[0]; k++) {
        const Func *f = module_find_func(m, order[k]);
        if (!f && !strcmp(order[k], "prepare") && !embedded) {
            fputs(func_doc("prepare", upper, false), out);
            fprintf(out, "int %s_prepare(%s *m);\n\n", m->name, m->name);
            continue;
        }
        if (!f || !llvm_func_emitted(f, embedded)) continue;
        PubParam *pp;
        int np = llvm_public_params(f, &pp);
        if (np >= 0) print_prototype(out, m, f, pp, np, upper);
    }
    fprintf(out, "/* Names, kinds, shapes and state offsets of every tensor; inputs, labels, outputs.\n"
                 " * nnrt_save / nnrt_load (nnrt.h) read and write checkpoints through it. */\n");
    fprintf(out, "const nnrt_model_info *%s_info(void);\n\n", m->name);
    fprintf(out, "#ifdef __cplusplus\n}\n#endif\n\n#endif /* %s_H */\n", upper);
    if (fclose(out) != 0) {
        fprintf(stderr, "nnc: error: cannot write '%s': %s\n", path, strerror(errno));
        return 1;
    }
    return 0;
}

int header_emit(const Module *m, const char *path) { return header_emit_embedded(m, path, false); }
