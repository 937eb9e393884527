/* driver.c — the pipeline every command starts from: parse, check and lower a .nn file,
 * build the training functions, lay out the state and build init. A plain list of calls. */
#include "nnc.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Parses, checks and lowers path; then, when opts asks for training functions, builds grad
 * and train_step; lays out the state and builds init; runs the passes of the -O level and,
 * from -O2 on, moves the weight-only work of infer/evaluate into prepare (prepare.c).
 * Diagnostics go to stderr.
 * Returns 0 with the modules in *out, 1 on errors in the input. */
int driver_load(const char *path, const DriverOptions *opts, DriverResult *out) {
    memset(out, 0, sizeof *out);
    out->arena = calloc(1, sizeof *out->arena);
    out->src = source_read(path);
    if (!out->src) return 1;
    diag_init(&out->diag, out->src, stderr);
    out->program = parse_program(out->arena, out->src, &out->diag);
    if (out->diag.errors) return 1;
    out->nmodules = lower_program(out->arena, out->program, &out->diag, &out->modules);
    if (out->diag.errors) return 1;
    for (int i = 0; i < out->nmodules; i++) {
        Module *m = out->modules[i];
        /* a model without a loss (inference only) has nothing to train */
        Func *loss = module_find_func(m, "loss");
        bool has_loss = false;
        for (int j = 0; loss && j < loss->nouts; j++) has_loss |= loss->outs[j].role == OUT_LOSS;
        if (opts->train_functions && has_loss) {
            if (!grad_build(m)) return 1;
            if (!optim_build_train_step(m)) return 1;
        }
        module_layout(m);
        module_build_init(m);
        int level = opts->set_opt ? opts->opt_level : 2;
        int rc = passes_run(m, level, opts->dump_after, opts->dump);
        if (rc) return rc;
        /* weight-only values of infer/evaluate become derived tensors computed by prepare */
        if (level >= 2) prepare_build(m);
        if (opts->verify) {
            int problems = 0;
            for (int j = 0; j < m->nfuncs; j++) problems += ir_verify(m->funcs[j], stderr);
            if (problems) {
                fprintf(stderr, "nnc: internal error: the IR of '%s' failed verification\n", m->name);
                return 1;
            }
        }
    }
    return 0;
}

void driver_free(DriverResult *r) {
    if (r->arena) {
        arena_free(r->arena);
        free(r->arena);
    }
    if (r->src) source_free(r->src);
    memset(r, 0, sizeof *r);
}

Module *driver_pick_model(DriverResult *r, const char *name) {
    if (r->nmodules == 0) {
        fprintf(stderr, "%s: error: the file defines no model\n", r->src->path);
        return NULL;
    }
    if (!name) {
        if (r->nmodules > 1)
            fprintf(stderr, "nnc: note: %s defines %d models; using '%s' (choose with --model)\n",
                    r->src->path, r->nmodules, r->modules[0]->name);
        return r->modules[0];
    }
    for (int i = 0; i < r->nmodules; i++)
        if (!strcmp(r->modules[i]->name, name)) return r->modules[i];
    fprintf(stderr, "%s: error: no model named '%s'\n", r->src->path, name);
    return NULL;
}


bool time_enabled(void) {
    static int enabled = -1;
    if (enabled < 0) {
        const char *e = getenv("NNC_TIME");
        enabled = e && *e == '1';
    }
    return enabled;
}

void time_mark(const char *what) {
    static double last, last_wall, start_wall = -1;
    if (!time_enabled()) return;
    struct timespec ts, wall;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    clock_gettime(CLOCK_MONOTONIC, &wall);
    double ms = ts.tv_sec * 1e3 + ts.tv_nsec / 1e6, wms = wall.tv_sec * 1e3 + wall.tv_nsec / 1e6;
    /* the wall clock starts at the first mark, after the process started: add the CPU time
     * spent before it, which was all on one thread */
    if (start_wall < 0) start_wall = wms - ms;
    wms -= start_wall;
    fprintf(stderr, "nnc: time: %-28s %8.1f ms CPU (+%.1f) %8.1f ms wall (+%.1f)\n", what, ms, ms - last, wms,
            wms - last_wall);
    last = ms;
    last_wall = wms;
}
