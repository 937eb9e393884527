/* test_sema.c — semantic analysis and lowering as a library:
 * - every example and every tests/ir file lowers without errors and every function it gets
 *   passes ir_verify with 0 problems;
 * - every tests/diag file reports at least one error and lowers no module (no crash);
 * - fashion_mlp: parameter names and count (535,818), functions and their signatures, the
 *   train block; metric_info on driver metrics. */
#include "check.h"
#include "nnc.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>

typedef struct Loaded {
    Arena arena;
    Source *src;
    Diag diag;
    Module **mods;
    int nmods;
} Loaded;

static FILE *quiet(void) {
    static FILE *null;
    if (!null) null = fopen("/dev/null", "w");
    return null;
}

/* Parses and lowers path; diagnostics go to out. */
static bool load(Loaded *l, const char *path, FILE *out) {
    memset(l, 0, sizeof *l);
    l->src = source_read(path);
    if (!l->src) return false;
    diag_init(&l->diag, l->src, out);
    Program *p = parse_program(&l->arena, l->src, &l->diag);
    if (l->diag.errors) return true;
    l->nmods = lower_program(&l->arena, p, &l->diag, &l->mods);
    for (int i = 0; i < l->nmods; i++) {
        module_layout(l->mods[i]);
        module_build_init(l->mods[i]);
    }
    return true;
}

static void unload(Loaded *l) {
    arena_free(&l->arena);
    if (l->src) source_free(l->src);
}

static int verify_all(Loaded *l, const char *path) {
    int problems = 0;
    for (int i = 0; i < l->nmods; i++)
        for (int j = 0; j < l->mods[i]->nfuncs; j++) {
            int n = ir_verify(l->mods[i]->funcs[j], stderr);
            if (n)
                fprintf(stderr, "%s: %s.%s: %d problem(s)\n", path, l->mods[i]->name,
                        l->mods[i]->funcs[j]->name, n);
            problems += n;
        }
    return problems;
}

/* Calls fn for every .nn file of dir (sorted order does not matter). */
static int for_each_nn(const char *dir, void (*fn)(const char *path, int *count), int *count) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n < 4 || strcmp(e->d_name + n - 3, ".nn")) continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        fn(path, count);
    }
    closedir(d);
    return 0;
}

static void check_valid(const char *path, int *count) {
    Loaded l;
    CHECK(load(&l, path, stderr));
    if (l.diag.errors) fprintf(stderr, "%s: unexpected errors\n", path);
    CHECK(l.diag.errors == 0);
    CHECK(l.nmods > 0);
    CHECK(verify_all(&l, path) == 0);
    unload(&l);
    (*count)++;
}

static void check_invalid(const char *path, int *count) {
    Loaded l;
    CHECK(load(&l, path, quiet()));
    if (!l.diag.errors) fprintf(stderr, "%s: expected errors, got none\n", path);
    CHECK(l.diag.errors > 0);
    CHECK(l.nmods == 0);
    unload(&l);
    (*count)++;
}

static void test_fashion_mlp(void) {
    Loaded l;
    CHECK(load(&l, "examples/fashion_mlp.nn", stderr));
    CHECK(l.nmods == 1);
    if (l.nmods != 1) return;
    Module *m = l.mods[0];
    static const char *const names[] = {"h1.weight", "h1.bias",       "h2.weight",
                                        "h2.bias",   "logits.weight", "logits.bias"};
    int64_t total = 0;
    CHECK(m->ntensors == 6);
    for (int i = 0; i < m->ntensors && i < 6; i++) {
        CHECK(!strcmp(m->tensors[i].name, names[i]));
        CHECK(m->tensors[i].kind == TK_PARAM);
        CHECK(m->tensors[i].init.kind == INIT_TORCH_DEFAULT);
        total += shape_numel(&m->tensors[i].shape, 1);
    }
    CHECK(total == 535818);
    CHECK(m->tensors[0].shape.dim[0] == 512 && m->tensors[0].shape.dim[1] == 784);
    CHECK(m->tensors[0].init.fan_in == 784 && m->tensors[1].init.fan_in == 784);
    int64_t layer_params = 0;
    for (int i = 0; i < m->nlayers; i++)
        layer_params += m->layers[i].params;
    CHECK(layer_params == 535818);

    Func *infer = module_find_func(m, "infer"), *eval = module_find_func(m, "evaluate"),
         *loss = module_find_func(m, "loss");
    CHECK(infer && eval && loss);
    CHECK(m->nfuncs == 4 && !strcmp(m->funcs[0]->name, "infer") &&
          !strcmp(m->funcs[3]->name, "init"));
    if (infer) {
        CHECK(infer->nargs == 1 && infer->args[0].role == ARG_INPUT);
        CHECK(infer->nouts == 1 && infer->outs[0].role == OUT_OUTPUT &&
              !strcmp(infer->outs[0].name, "probs"));
    }
    if (loss) {
        CHECK(loss->nargs == 2 && loss->args[1].role == ARG_LABEL && loss->args[1].dtype == DT_I32);
        CHECK(loss->nouts == 2 && loss->outs[0].role == OUT_LOSS &&
              !strcmp(loss->outs[0].name, "loss"));
        CHECK(loss->outs[1].role == OUT_METRIC && !strcmp(loss->outs[1].name, "accuracy"));
    }
    const TrainConfig *t = &m->train;
    CHECK(t->present);
    CHECK(t->data.kind == DATA_FASHION_MNIST);
    CHECK(t->batch == 64 && m->max_batch == 64 && t->epochs == 10 && t->seed == 42);
    CHECK(t->opt.kind == OPT_SGD && t->opt.nesterov);
    CHECK_NEAR(t->opt.lr, 0.05, 1e-12);
    CHECK_NEAR(t->opt.momentum, 0.9, 1e-12);
    CHECK_NEAR(t->opt.weight_decay, 5e-4, 1e-12);
    CHECK(t->sched.kind == SCHED_COSINE);
    CHECK_NEAR(t->sched.warmup, 1, 1e-12);
    CHECK(t->accumulate == 1);
    unload(&l);
}

static void test_fashion_cnn(void) {
    Loaded l;
    CHECK(load(&l, "examples/fashion_cnn.nn", stderr));
    if (l.nmods != 1) {
        CHECK(l.nmods == 1);
        return;
    }
    Module *m = l.mods[0];
    CHECK(module_find_tensor(m, "b1.conv.weight") == 0);
    CHECK(module_find_tensor(m, "b1.conv.bias") < 0);
    int rm = module_find_tensor(m, "b2.bn.running_var");
    CHECK(rm >= 0 && m->tensors[rm].kind == TK_STATE && m->tensors[rm].init.kind == INIT_ONES);
    CHECK(m->tensors[0].init.fan_in == 25);
    /* training mode stores the running statistics; inference reads them */
    Func *loss = module_find_func(m, "loss"), *infer = module_find_func(m, "infer");
    int stores = 0, reads = 0;
    for (int i = 0; loss && i < loss->nnodes; i++)
        stores += loss->nodes[i].op == OP_store;
    for (int i = 0; infer && i < infer->nnodes; i++)
        reads += infer->nodes[i].op == OP_tensor && infer->nodes[i].attr.tensor == rm;
    CHECK(stores == 4);
    CHECK(reads == 1);
    CHECK(m->train.opt.kind == OPT_ADAM);
    CHECK_NEAR(m->train.opt.beta2, 0.999, 1e-12);
    unload(&l);
}

static void test_metric_info(void) {
    Loaded l;
    CHECK(load(&l, "tests/ir/metric-driver.nn", stderr));
    if (l.nmods != 1) {
        CHECK(l.nmods == 1);
        return;
    }
    Func *f = module_find_func(l.mods[0], "evaluate");
    MetricInfo mi;
    CHECK(f && f->nouts == 7);
    if (!f || f->nouts != 7) return;
    CHECK(!metric_info(f, 0, &mi)); /* the loss */
    CHECK(metric_info(f, 1, &mi) && !strcmp(mi.kind, "f1") && mi.classes == 8 && mi.label_arg == 2);
    CHECK(metric_info(f, 4, &mi) && !strcmp(mi.kind, "confusion"));
    CHECK(metric_info(f, 5, &mi) && !strcmp(mi.kind, "auc"));
    CHECK(metric_info(f, 6, &mi) && !strcmp(mi.kind, "f1") && mi.classes == 2);
    unload(&l);
}

static void test_dropout_streams(void) {
    Loaded l;
    CHECK(load(&l, "examples/autoencoder.nn", stderr));
    if (l.nmods != 1) {
        CHECK(l.nmods == 1);
        return;
    }
    Module *m = l.mods[0];
    int step = module_find_tensor(m, "step");
    CHECK(step == m->ntensors - 1 && m->tensors[step].kind == TK_STEP &&
          m->tensors[step].dtype == DT_I32);
    Func *loss = module_find_func(m, "loss"), *infer = module_find_func(m, "infer");
    int streams = 0, in_infer = 0;
    for (int i = 0; loss && i < loss->nnodes; i++)
        if (loss->nodes[i].op == OP_rand_uniform) {
            CHECK(loss->nodes[i].attr.index == streams && loss->nodes[i].attr.tensor == step);
            streams++;
        }
    for (int i = 0; infer && i < infer->nnodes; i++)
        in_infer += infer->nodes[i].op == OP_rand_uniform;
    CHECK(streams == 2 && in_infer == 0);
    CHECK(!module_find_func(m, "evaluate") ||
          module_find_func(m, "evaluate")->nargs == 1); /* no labels */
    unload(&l);
}

/* `l2(h.weight)`: a dotted name reads a declared parameter (the parser may not produce
 * dotted names yet, so the test renames a parsed name). */
static void test_dotted_names(void) {
    static const char text[] = "model m {\n  input x: f32[batch, 4]\n  label t: f32[batch, 3]\n"
                               "  h = dense(x, 3)\n  output p = h\n  loss mse(h, t) + l2(W)\n}\n";
    for (int variant = 0; variant < 2; variant++) {
        Arena a = {0};
        Source *src = source_from_string("dotted.nn", text, sizeof text - 1);
        Diag d;
        diag_init(&d, src, quiet());
        Program *p = parse_program(&a, src, &d);
        CHECK(d.errors == 0);
        Stmt *st = p->blocks[0]->stmts[4];
        CHECK(st->kind == S_LOSS && st->value->rhs && st->value->rhs->kind == E_CALL);
        Expr *name = st->value->rhs->args[0].value;
        CHECK(name->kind == E_NAME);
        name->str = variant ? "h.wieght" : "h.weight";
        Module **mods;
        int n = lower_program(&a, p, &d, &mods);
        CHECK(variant ? n == 0 && d.errors == 1 : n == 1 && d.errors == 0);
        if (!variant && n == 1) {
            Func *f = module_find_func(mods[0], "loss");
            int reads = 0;
            for (int i = 0; f && i < f->nnodes; i++)
                reads += f->nodes[i].op == OP_tensor && f->nodes[i].attr.tensor == 0;
            CHECK(reads == 1);
        }
        arena_free(&a);
        source_free(src);
    }
}

/* The attributes of the ops with kernels of their own (the IR printer does not show them). */
static const Node *nth_op(Func *f, Op op, int n) {
    for (int i = 0; f && i < f->nnodes; i++)
        if (f->nodes[i].op == op && n-- == 0) return &f->nodes[i];
    return NULL;
}

static void test_spatial_attrs(void) {
    Loaded l;
    CHECK(load(&l, "tests/ir/layer-conv2d-options.nn", stderr));
    if (l.nmods == 1) {
        Func *f = module_find_func(l.mods[0], "infer");
        const Node *a = nth_op(f, OP_conv2d, 0), *b = nth_op(f, OP_conv2d, 1);
        CHECK(a && b);
        if (a && b) {
            /* kernel (3, 5), stride (2, 1), pad (1, 2), groups 2, no bias */
            CHECK(a->nin == 2 && a->attr.step[0] == 2 && a->attr.step[1] == 1);
            CHECK(a->attr.start[0] == 1 && a->attr.start[1] == 2 && a->attr.start[2] == 1 &&
                  a->attr.start[3] == 2);
            CHECK(a->attr.perm[0] == 1 && a->attr.perm[1] == 1 && a->attr.perm[2] == 2);
            CHECK(a->shape.dim[2] == 5 && a->shape.dim[3] == 9);
            /* kernel 3, pad "same", dilation 2: 4 in total, 2 on each side */
            CHECK(b->nin == 3 && b->attr.step[0] == 1 && b->attr.start[0] == 2 &&
                  b->attr.start[3] == 2);
            CHECK(b->attr.perm[0] == 2 && b->attr.perm[1] == 2 && b->attr.perm[2] == 1);
        }
    }
    unload(&l);
    CHECK(load(&l, "tests/ir/layer-avgpool.nn", stderr));
    if (l.nmods == 1) {
        const Node *p = nth_op(module_find_func(l.mods[0], "infer"), OP_avgpool2d, 0);
        CHECK(p && p->attr.perm[0] == 3 && p->attr.perm[1] == 3 && p->attr.step[0] == 2 &&
              p->attr.start[0] == 1 && p->attr.start[3] == 1 && p->shape.dim[2] == 4);
    }
    unload(&l);
    CHECK(load(&l, "tests/ir/layer-upsample.nn", stderr));
    if (l.nmods == 1) {
        Func *f = module_find_func(l.mods[0], "infer");
        const Node *a = nth_op(f, OP_upsample2d, 0), *b = nth_op(f, OP_upsample2d, 1);
        CHECK(a && a->attr.flag == 0 && a->attr.perm[0] == 2 && a->attr.perm[1] == 2);
        CHECK(b && b->attr.flag == 1 && b->attr.perm[0] == 2 && b->attr.perm[1] == 3 &&
              b->shape.dim[3] == 12);
    }
    unload(&l);
    CHECK(load(&l, "tests/ir/layer-lrn.nn", stderr));
    if (l.nmods == 1) {
        const Node *n = nth_op(module_find_func(l.mods[0], "infer"), OP_lrn, 0);
        CHECK(n && n->attr.perm[0] == 3 && n->attr.f[0] == 1e-4 && n->attr.f[1] == 0.75 &&
              n->attr.f[2] == 1);
    }
    unload(&l);
}

int main(void) {
    int valid = 0, invalid = 0;
    CHECK(for_each_nn("examples", check_valid, &valid) == 0);
    CHECK(for_each_nn("tests/ir", check_valid, &valid) == 0);
    CHECK(for_each_nn("tests/diag", check_invalid, &invalid) == 0);
    CHECK(valid >= 100);
    CHECK(invalid >= 45);
    test_fashion_mlp();
    test_fashion_cnn();
    test_metric_info();
    test_dropout_streams();
    test_dotted_names();
    test_spatial_attrs();
    fprintf(stderr, "%d valid and %d invalid files\n", valid, invalid);
    return check_done();
}
