/* test_optim.c — train_step against reference optimizers and schedules written here in C.
 *
 * The model: params w[3], v[2] and an unused z[2], input x[batch, 3],
 *   loss = sum(a * w^2) + sum(w * x) + sum(v^2 / 2 + d * v)
 * so g_w = 2 a w + sum_batch x and g_v = v + d, computed here directly. Each reference below
 * follows the torch.optim pseudo-code (docs) or the scheduler's step() logic of PyTorch,
 * independently of optim.c; the interpreter runs train_step in f64 and every param must match
 * after every step to 1e-10. z must never change (its .grad is None in PyTorch terms).
 */
#include "check.h"
#include "nnc.h"

#include <stdlib.h>
#include <string.h>

enum { NP = 5 };  /* w (3) then v (2), as one flat vector in the reference */
static const double A[3] = {0.5, 1.0, 2.0}, D[2] = {0.3, -0.7};
static const double W0[3] = {0.5, -0.3, 0.8}, V0[2] = {1.0, -0.5}, Z0[2] = {0.2, 0.4};
static SrcLoc noloc;

/* ---------------------------------------------------------------- the model under test */

typedef struct Trainer {
    Arena arena;
    Module *m;
    Func *step_fn;
    Interp in;
    int w, v, z;
} Trainer;

static Ref cdata(Func *f, const double *data, int64_t n) {
    Attr a = {.data = data};
    return ir_node(f, OP_const, DT_F32, shape_make(1, &n, 0), 0, NULL, &a);
}

static Ref sum_all(Func *f, Ref x) {
    return ir_reduce(f, OP_sum, x, (1u << ir_at(f, x)->shape.rank) - 1, false);
}

/* Builds the model with train config tc (NULL: no train block) and runs init, in f64 or in
 * f32 (every op rounded to float, as compiled code). */
static bool trainer_open(Trainer *t, const TrainConfig *tc, double steps_per_epoch, bool f64) {
    memset(t, 0, sizeof *t);
    Module *m = t->m = module_new(&t->arena, "opt");
    if (tc) m->train = *tc;
    InitSpec zero = {.kind = INIT_ZEROS};
    t->w = module_add_tensor(m, "w", TK_PARAM, DT_F32, shape_make(1, (int64_t[]){3}, 0), zero, noloc);
    t->v = module_add_tensor(m, "v", TK_PARAM, DT_F32, shape_make(1, (int64_t[]){2}, 0), zero, noloc);
    t->z = module_add_tensor(m, "z", TK_PARAM, DT_F32, shape_make(1, (int64_t[]){2}, 0), zero, noloc);
    Func *f = module_add_func(m, "loss");
    int xa = func_add_arg(f, "x", ARG_INPUT, DT_F32, shape_make(2, (int64_t[]){1, 3}, 1), noloc);
    Ref w = ir_tensor(f, t->w), v = ir_tensor(f, t->v), x = ir_input(f, xa);
    Ref lw = sum_all(f, ir_binary(f, OP_mul, cdata(f, A, 3), ir_binary(f, OP_mul, w, w)));
    lw = ir_binary(f, OP_add, lw, sum_all(f, ir_binary(f, OP_mul, w, x)));
    Ref lv = sum_all(f, ir_binary(f, OP_add, ir_binary(f, OP_mul, ir_scalar(f, 0.5), ir_binary(f, OP_mul, v, v)),
                                  ir_binary(f, OP_mul, cdata(f, D, 2), v)));
    func_add_out(f, "loss", OUT_LOSS, ir_binary(f, OP_add, lw, lv));

    bool ok = grad_build(m) && (t->step_fn = optim_build_train_step(m));
    CHECK(ok);
    if (!ok) return false;
    for (int i = 0; i < m->nfuncs; i++) CHECK(ir_verify(m->funcs[i], stderr) == 0);
    module_layout(m);
    Func *init = module_build_init(m);
    interp_init(&t->in, m, f64);
    ITensor none[1] = {{0}};
    char err[256] = "";
    CHECK(interp_run(&t->in, init, 1, NULL, none, err, sizeof err) == 0);
    memcpy(t->in.tensors[t->w].data, W0, sizeof W0);
    memcpy(t->in.tensors[t->v].data, V0, sizeof V0);
    memcpy(t->in.tensors[t->z].data, Z0, sizeof Z0);
    int spe = module_find_tensor(m, "steps_per_epoch"), total = module_find_tensor(m, "total_steps");
    CHECK(spe >= 0 && m->tensors[spe].kind == TK_HYPER);
    if (spe >= 0) t->in.tensors[spe].data[0] = steps_per_epoch;
    if (total >= 0) t->in.tensors[total].data[0] = steps_per_epoch * (double)(tc ? tc->epochs : 1);
    return true;
}

static void trainer_close(Trainer *t) {
    interp_free(&t->in);
    arena_free(&t->arena);
}

static int out_index(const Func *f, const char *name) {
    for (int i = 0; i < f->nouts; i++)
        if (!strcmp(f->outs[i].name, name)) return i;
    return -1;
}

static double last_lr;  /* the `lr` output of the last train_step */

/* One train_step with input x[1, 3]; returns the loss output. */
static double trainer_step(Trainer *t, const double *x) {
    double data[3] = {x[0], x[1], x[2]};
    ITensor arg = {.dtype = DT_F32, .rank = 2, .dim = {1, 3}, .numel = 3, .data = data};
    ITensor outs[4] = {{0}};
    char err[256] = "";
    int rc = interp_run(&t->in, t->step_fn, 1, &arg, outs, err, sizeof err);
    if (rc) fprintf(stderr, "train_step failed: %s\n", err);
    CHECK(rc == 0);
    double loss = rc ? NAN : outs[out_index(t->step_fn, "loss")].data[0];
    int lr = out_index(t->step_fn, "lr");
    CHECK(lr >= 0 && t->step_fn->outs[lr].role == OUT_EXTRA);
    last_lr = rc || lr < 0 ? NAN : outs[lr].data[0];
    for (int i = 0; i < t->step_fn->nouts; i++) itensor_free(&outs[i]);
    return loss;
}

static void params_now(Trainer *t, double *p) {
    for (int i = 0; i < 3; i++) p[i] = t->in.tensors[t->w].data[i];
    for (int i = 0; i < 2; i++) p[3 + i] = t->in.tensors[t->v].data[i];
}

static void input_at(int step, double *x) {
    for (int i = 0; i < 3; i++) x[i] = 0.25 * (double)((step * 7 + i * 3) % 5) - 0.4;
}

/* ---------------------------------------------------------------- the reference */

typedef struct Reference {
    double p[NP], acc[NP];
    double buf[NP], sum[NP], square_avg[NP], grad_avg[NP], exp_avg[NP], exp_avg_sq[NP], max_sq[NP];
    int t;          /* optimizer steps taken */
    int batches;    /* train_step calls */
} Reference;

static void gradient_at(const double *p, const double *x, double *g) {
    for (int i = 0; i < 3; i++) g[i] = 2 * A[i] * p[i] + x[i];
    for (int i = 0; i < 2; i++) g[3 + i] = p[3 + i] + D[i];
}

static double loss_at(const double *p, const double *x) {
    double l = 0;
    for (int i = 0; i < 3; i++) l += A[i] * p[i] * p[i] + p[i] * x[i];
    for (int i = 0; i < 2; i++) l += 0.5 * p[3 + i] * p[3 + i] + D[i] * p[3 + i];
    return l;
}

/* One batch of training in the reference, following PyTorch's loop:
 *   loss.backward() accumulates; every k-th batch: grads /= k (loss / k per micro-batch),
 *   clip_grad_value_, clip_grad_norm_, optimizer.step(), zero_grad(). */
static void reference_batch(Reference *r, const TrainConfig *tc, const double *x, double lr) {
    OptimizerSpec o = tc->opt;
    int64_t k = tc->accumulate > 1 ? tc->accumulate : 1;
    double g[NP];
    gradient_at(r->p, x, g);
    for (int i = 0; i < NP; i++) r->acc[i] += g[i] / (double)k;
    r->batches++;
    if (r->batches % k) return;
    for (int i = 0; i < NP; i++) {
        g[i] = r->acc[i];
        r->acc[i] = 0;
    }
    if (tc->clip_value > 0)
        for (int i = 0; i < NP; i++) g[i] = fmin(fmax(g[i], -tc->clip_value), tc->clip_value);
    if (tc->clip_norm > 0) {
        double norm = 0;
        for (int i = 0; i < NP; i++) norm += g[i] * g[i];
        norm = sqrt(norm);
        double coef = tc->clip_norm / (norm + 1e-6);
        if (coef < 1)
            for (int i = 0; i < NP; i++) g[i] *= coef;
    }
    r->t++;
    int t = r->t;
    for (int i = 0; i < NP; i++) {
        double gi = g[i], *p = &r->p[i];
        switch (o.kind) {
        case OPT_SGD:
            if (o.weight_decay) gi += o.weight_decay * *p;
            if (o.momentum) {
                r->buf[i] = t > 1 ? o.momentum * r->buf[i] + (1 - o.dampening) * gi : gi;
                gi = o.nesterov ? gi + o.momentum * r->buf[i] : r->buf[i];
            }
            *p -= lr * gi;
            break;
        case OPT_ADAGRAD: {
            double clr = lr / (1 + (t - 1) * o.lr_decay);
            if (o.weight_decay) gi += o.weight_decay * *p;
            if (t == 1) r->sum[i] = o.initial_accumulator;
            r->sum[i] += gi * gi;
            *p -= clr * gi / (sqrt(r->sum[i]) + o.eps);
            break;
        }
        case OPT_RMSPROP: {
            if (o.weight_decay) gi += o.weight_decay * *p;
            r->square_avg[i] = o.alpha * r->square_avg[i] + (1 - o.alpha) * gi * gi;
            double v = r->square_avg[i];
            if (o.centered) {
                r->grad_avg[i] = o.alpha * r->grad_avg[i] + (1 - o.alpha) * gi;
                v -= r->grad_avg[i] * r->grad_avg[i];
            }
            if (o.momentum > 0) {
                r->buf[i] = o.momentum * r->buf[i] + gi / (sqrt(v) + o.eps);
                *p -= lr * r->buf[i];
            } else {
                *p -= lr * gi / (sqrt(v) + o.eps);
            }
            break;
        }
        case OPT_ADAM:
        case OPT_ADAMW: {
            if (o.kind == OPT_ADAMW) *p -= lr * o.weight_decay * *p;
            else if (o.weight_decay) gi += o.weight_decay * *p;
            r->exp_avg[i] = o.beta1 * r->exp_avg[i] + (1 - o.beta1) * gi;
            r->exp_avg_sq[i] = o.beta2 * r->exp_avg_sq[i] + (1 - o.beta2) * gi * gi;
            double mhat = r->exp_avg[i] / (1 - pow(o.beta1, t)), vhat;
            if (o.amsgrad) {
                r->max_sq[i] = fmax(r->max_sq[i], r->exp_avg_sq[i]);
                vhat = r->max_sq[i] / (1 - pow(o.beta2, t));
            } else {
                vhat = r->exp_avg_sq[i] / (1 - pow(o.beta2, t));
            }
            *p -= lr * mhat / (sqrt(vhat) + o.eps);
            break;
        }
        default: break;
        }
    }
}

/* Trains `steps` batches with a constant learning rate and compares after each: to 1e-10 in
 * f64, to 1e-5 in f32. */
static void check_optimizer_in(const char *name, const TrainConfig *tc, int steps, bool f64) {
    Trainer t;
    double tol = f64 ? 1e-10 : 1e-5;
    if (!trainer_open(&t, tc, 1, f64)) return;
    Reference r = {0};
    memcpy(r.p, W0, sizeof W0);
    memcpy(r.p + 3, V0, sizeof V0);
    double worst = 0;
    TrainConfig eff = *tc;
    if (!tc->present) eff.opt = (OptimizerSpec){.kind = OPT_SGD, .lr = 0.01};
    for (int s = 0; s < steps; s++) {
        double x[3], p[NP];
        input_at(s, x);
        double expect_loss = loss_at(r.p, x);
        double loss = trainer_step(&t, x);
        CHECK_NEAR(loss, expect_loss, f64 ? 1e-12 : 1e-5);
        reference_batch(&r, &eff, x, eff.opt.lr);
        params_now(&t, p);
        for (int i = 0; i < NP; i++) {
            double e = fabs(p[i] - r.p[i]) / fmax(1, fabs(r.p[i]));
            worst = fmax(worst, e);
            if (!(e <= tol)) {
                fprintf(stderr, "%s: step %d, param %d: %.15g, expected %.15g\n", name, s + 1, i, p[i], r.p[i]);
                check_failures++;
            }
        }
        for (int i = 0; i < 2; i++) CHECK(t.in.tensors[t.z].data[i] == Z0[i]);
    }
    CHECK(t.in.tensors[module_find_tensor(t.m, "step")].data[0] == steps);
    printf("%-40s max error %.1e%s\n", name, worst, f64 ? "" : " (f32)");
    trainer_close(&t);
}

static void check_optimizer(const char *name, const TrainConfig *tc, int steps) {
    check_optimizer_in(name, tc, steps, true);
}

static TrainConfig config(OptimizerSpec o) {
    TrainConfig tc = {.present = true, .epochs = 1, .accumulate = 1, .opt = o};
    tc.sched.kind = SCHED_CONSTANT;
    return tc;
}

static OptimizerSpec sgd(double lr, double momentum, double dampening, double wd, bool nesterov) {
    return (OptimizerSpec){.kind = OPT_SGD, .lr = lr, .momentum = momentum, .dampening = dampening,
                           .weight_decay = wd, .nesterov = nesterov};
}
static OptimizerSpec adagrad(double lr, double lr_decay, double wd, double init, double eps) {
    return (OptimizerSpec){.kind = OPT_ADAGRAD, .lr = lr, .lr_decay = lr_decay, .weight_decay = wd,
                           .initial_accumulator = init, .eps = eps};
}
static OptimizerSpec rmsprop(double lr, double alpha, double eps, double wd, double momentum, bool centered) {
    return (OptimizerSpec){.kind = OPT_RMSPROP, .lr = lr, .alpha = alpha, .eps = eps, .weight_decay = wd,
                           .momentum = momentum, .centered = centered};
}
static OptimizerSpec adam(OptKind kind, double lr, double b1, double b2, double eps, double wd, bool amsgrad) {
    return (OptimizerSpec){.kind = kind, .lr = lr, .beta1 = b1, .beta2 = b2, .eps = eps, .weight_decay = wd,
                           .amsgrad = amsgrad};
}

static void test_optimizers(void) {
    TrainConfig tc;
    check_optimizer("sgd", (tc = config(sgd(0.1, 0, 0, 0, false)), &tc), 5);
    check_optimizer("sgd weight_decay", (tc = config(sgd(0.1, 0, 0, 0.01, false)), &tc), 5);
    check_optimizer("sgd momentum", (tc = config(sgd(0.05, 0.9, 0, 0, false)), &tc), 6);
    check_optimizer("sgd momentum dampening", (tc = config(sgd(0.05, 0.9, 0.1, 0, false)), &tc), 6);
    check_optimizer("sgd nesterov weight_decay", (tc = config(sgd(0.05, 0.9, 0, 5e-4, true)), &tc), 6);
    check_optimizer("adagrad", (tc = config(adagrad(0.01, 0, 0, 0, 1e-10)), &tc), 5);
    check_optimizer("adagrad lr_decay init weight_decay", (tc = config(adagrad(0.1, 0.1, 0.01, 0.5, 1e-10)), &tc), 5);
    check_optimizer("rmsprop", (tc = config(rmsprop(0.01, 0.99, 1e-8, 0, 0, false)), &tc), 5);
    check_optimizer("rmsprop momentum", (tc = config(rmsprop(0.01, 0.9, 1e-8, 0, 0.9, false)), &tc), 5);
    check_optimizer("rmsprop centered momentum wd", (tc = config(rmsprop(0.01, 0.9, 1e-6, 0.01, 0.5, true)), &tc), 5);
    check_optimizer("rmsprop centered", (tc = config(rmsprop(0.01, 0.99, 1e-8, 0, 0, true)), &tc), 5);
    check_optimizer("adam", (tc = config(adam(OPT_ADAM, 1e-3, 0.9, 0.999, 1e-8, 0, false)), &tc), 5);
    check_optimizer("adam amsgrad weight_decay", (tc = config(adam(OPT_ADAM, 0.05, 0.8, 0.9, 1e-8, 0.01, true)), &tc), 8);
    check_optimizer("adamw", (tc = config(adam(OPT_ADAMW, 1e-2, 0.9, 0.999, 1e-8, 0.01, false)), &tc), 5);
    check_optimizer("adamw amsgrad", (tc = config(adam(OPT_ADAMW, 0.05, 0.8, 0.9, 1e-8, 0.1, true)), &tc), 8);

    tc = config(sgd(0.1, 0.9, 0, 0, false));
    tc.clip_norm = 0.5;
    check_optimizer("sgd momentum clip_norm", &tc, 6);
    tc = config(adam(OPT_ADAM, 0.05, 0.9, 0.999, 1e-8, 0, false));
    tc.clip_value = 0.3;
    check_optimizer("adam clip_value", &tc, 6);
    tc = config(sgd(0.1, 0, 0, 0, false));
    tc.clip_value = 0.4;
    tc.clip_norm = 0.6;
    check_optimizer("sgd clip_value + clip_norm", &tc, 4);
    tc = config(sgd(0.05, 0.9, 0, 0.01, false));
    tc.accumulate = 3;
    check_optimizer("sgd momentum accumulate 3", &tc, 10);
    tc = config(adam(OPT_ADAM, 0.05, 0.9, 0.999, 1e-8, 0, false));
    tc.accumulate = 2;
    tc.clip_norm = 0.5;
    check_optimizer("adam accumulate 2 clip_norm", &tc, 9);
    /* initial values come from init_fill, which computes in f32 like compiled code: use
     * values exact in f32 (0.25, not 0.1) so the f64 reference agrees to 1e-10 */
    tc = config(adagrad(0.1, 0.05, 0, 0.25, 1e-10));
    tc.accumulate = 2;
    check_optimizer("adagrad accumulate 2", &tc, 7);
    TrainConfig absent = {0};
    check_optimizer("no train block: sgd(lr=0.01)", &absent, 3);

    /* f32, as compiled code runs */
    check_optimizer_in("sgd nesterov weight_decay", (tc = config(sgd(0.05, 0.9, 0, 5e-4, true)), &tc), 6, false);
    tc = config(adam(OPT_ADAM, 0.05, 0.9, 0.999, 1e-8, 0.01, true));
    tc.accumulate = 2;
    tc.clip_norm = 0.5;
    check_optimizer_in("adam amsgrad accumulate clip_norm", &tc, 9, false);
    check_optimizer_in("rmsprop centered momentum wd", (tc = config(rmsprop(0.01, 0.9, 1e-6, 0.01, 0.5, true)), &tc), 5, false);
}

/* The slots are named and owned as documented. */
static void test_slot_names(void) {
    TrainConfig tc = config(adam(OPT_ADAM, 1e-3, 0.9, 0.999, 1e-8, 0, true));
    tc.accumulate = 2;
    Trainer t;
    if (!trainer_open(&t, &tc, 1, true)) return;
    static const char *const names[] = {"w.exp_avg", "w.exp_avg_sq", "w.max_exp_avg_sq", "w.grad_sum",
                                        "v.exp_avg", "v.exp_avg_sq", "v.max_exp_avg_sq", "v.grad_sum"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        int id = module_find_tensor(t.m, names[i]);
        CHECK(id >= 0);
        if (id < 0) continue;
        CHECK(t.m->tensors[id].kind == TK_SLOT);
        CHECK(t.m->tensors[id].owner == (names[i][0] == 'w' ? t.w : t.v));
    }
    CHECK(module_find_tensor(t.m, "z.exp_avg") < 0);  /* unused params get no slots */
    int step = module_find_tensor(t.m, "step");
    CHECK(step >= 0 && t.m->tensors[step].kind == TK_STEP && t.m->tensors[step].dtype == DT_I32);
    trainer_close(&t);
}

/* ---------------------------------------------------------------- schedules */

/* PyTorch's scheduler objects, stepped as a training loop steps them: per-epoch schedulers
 * once per epoch, CyclicLR and OneCycleLR once per batch. The recursive ("chainable") forms are
 * used where PyTorch has them, so that this is independent of optim.c's closed forms. */
typedef struct RefSched {
    ScheduleSpec s;
    double lr0, lr;     /* base lr, current lr */
    int last_epoch;     /* scheduler's counter */
    double t_cur, t_i;  /* sgdr */
    int total_steps;
} RefSched;

static void ref_sched_init(RefSched *r, const ScheduleSpec *s, double lr0, int total_steps) {
    *r = (RefSched){.s = *s, .lr0 = lr0, .lr = lr0, .t_i = s->t0, .total_steps = total_steps};
    if (s->kind == SCHED_CYCLIC) r->lr = lr0;
    if (s->kind == SCHED_ONECYCLE) r->lr = s->max_lr / s->div_factor;
}

static double onecycle_lr(const RefSched *r, int step) {
    const ScheduleSpec *s = &r->s;
    double initial = s->max_lr / s->div_factor, lowest = initial / s->final_div_factor;
    double ends[2] = {s->pct_start * r->total_steps - 1, r->total_steps - 1};
    double starts_lr[2] = {initial, s->max_lr}, ends_lr[2] = {s->max_lr, lowest};
    double start = 0;
    for (int i = 0; i < 2; i++) {
        if (step <= ends[i] || i == 1) {
            double pct = (step - start) / (ends[i] - start);
            return ends_lr[i] + (starts_lr[i] - ends_lr[i]) / 2 * (cos(M_PI * pct) + 1);
        }
        start = ends[i];
    }
    return NAN;
}

static double cyclic_lr(const RefSched *r, int it, double step_size_up) {
    double total = 2 * step_size_up, ratio = 0.5;
    double cycle = floor(1 + it / total), x = 1 + it / total - cycle;
    double scale = x <= ratio ? x / ratio : (x - 1) / (ratio - 1);
    return r->lr0 + (r->s.max_lr - r->lr0) * scale;
}

/* scheduler.step() of a per-epoch scheduler */
static void ref_sched_epoch(RefSched *r, int epochs_total) {
    const ScheduleSpec *s = &r->s;
    r->last_epoch++;
    int e = r->last_epoch;
    switch (s->kind) {
    case SCHED_STEP:
        if (e % (int)s->step_size == 0) r->lr *= s->gamma;
        break;
    case SCHED_EXP: r->lr *= s->gamma; break;
    case SCHED_COSINE: {
        double T = epochs_total;
        if ((e - 1 - (int)T) % (2 * (int)T) == 0)
            r->lr += (r->lr0 - s->eta_min) * (1 - cos(M_PI / T)) / 2;
        else
            r->lr = (1 + cos(M_PI * e / T)) / (1 + cos(M_PI * (e - 1) / T)) * (r->lr - s->eta_min) + s->eta_min;
        break;
    }
    case SCHED_SGDR:
        r->t_cur += 1;
        if (r->t_cur >= r->t_i) {
            r->t_cur -= r->t_i;
            r->t_i *= s->t_mult;
        }
        r->lr = s->eta_min + (r->lr0 - s->eta_min) * (1 + cos(M_PI * r->t_cur / r->t_i)) / 2;
        break;
    default: break;
    }
}

/* Runs `steps` batches (steps_per_epoch spe) and compares the lr each batch used. */
static void check_schedule(const char *name, ScheduleSpec s, int steps) {
    const int spe = 3, epochs = 4;
    TrainConfig tc = config(sgd(0.1, 0, 0, 0, false));
    tc.epochs = epochs;
    tc.sched = s;
    Trainer t;
    if (!trainer_open(&t, &tc, spe, true)) return;
    RefSched r;
    ref_sched_init(&r, &s, tc.opt.lr, epochs * spe);
    double worst = 0;
    for (int step = 0; step < steps; step++) {
        int epoch = step / spe;
        double expect;
        if (s.kind == SCHED_ONECYCLE) expect = onecycle_lr(&r, step);
        else if (s.kind == SCHED_CYCLIC) expect = cyclic_lr(&r, step, s.step_size * spe);
        else {
            while (r.last_epoch < epoch) ref_sched_epoch(&r, epochs);
            expect = r.lr;
        }
        if (s.warmup > 0) expect *= fmin(1, (step + 1) / (s.warmup * spe));
        /* every step starts from v = V0: g_v[0] = V0[0] + D[0], so lr = -dv / g */
        memcpy(t.in.tensors[t.v].data, V0, sizeof V0);
        double x[3] = {0, 0, 0};
        trainer_step(&t, x);
        double lr = (V0[0] - t.in.tensors[t.v].data[0]) / (V0[0] + D[0]);
        CHECK_NEAR(last_lr, lr, 1e-12);
        double e = fabs(lr - expect) / fmax(1e-3, fabs(expect));
        worst = fmax(worst, e);
        if (!(e <= 1e-9)) {
            fprintf(stderr, "%s: step %d (epoch %d): lr %.12g, expected %.12g\n", name, step, epoch, lr, expect);
            check_failures++;
        }
    }
    printf("%-40s max error %.1e\n", name, worst);
    trainer_close(&t);
}

static void test_schedules(void) {
    check_schedule("constant", (ScheduleSpec){.kind = SCHED_CONSTANT}, 7);
    check_schedule("step 2, gamma 0.5", (ScheduleSpec){.kind = SCHED_STEP, .step_size = 2, .gamma = 0.5}, 15);
    check_schedule("step 1, gamma 0.1", (ScheduleSpec){.kind = SCHED_STEP, .step_size = 1, .gamma = 0.1}, 12);
    check_schedule("exponential 0.8", (ScheduleSpec){.kind = SCHED_EXP, .gamma = 0.8}, 12);
    check_schedule("cosine", (ScheduleSpec){.kind = SCHED_COSINE}, 12);
    check_schedule("cosine eta_min", (ScheduleSpec){.kind = SCHED_COSINE, .eta_min = 0.01}, 12);
    check_schedule("sgdr t0 1 t_mult 2", (ScheduleSpec){.kind = SCHED_SGDR, .t0 = 1, .t_mult = 2, .eta_min = 0.01}, 30);
    check_schedule("sgdr t0 2 t_mult 1", (ScheduleSpec){.kind = SCHED_SGDR, .t0 = 2, .t_mult = 1}, 24);
    check_schedule("sgdr t0 1 t_mult 3", (ScheduleSpec){.kind = SCHED_SGDR, .t0 = 1, .t_mult = 3, .eta_min = 0.001}, 45);
    check_schedule("cyclic", (ScheduleSpec){.kind = SCHED_CYCLIC, .step_size = 1, .max_lr = 0.5}, 20);
    check_schedule("cyclic half epoch", (ScheduleSpec){.kind = SCHED_CYCLIC, .step_size = 2.0 / 3, .max_lr = 0.3}, 14);
    check_schedule("onecycle", (ScheduleSpec){.kind = SCHED_ONECYCLE, .max_lr = 0.5, .pct_start = 0.3,
                                              .div_factor = 25, .final_div_factor = 1e4}, 12);
    check_schedule("onecycle pct 0.5", (ScheduleSpec){.kind = SCHED_ONECYCLE, .max_lr = 1, .pct_start = 0.5,
                                                      .div_factor = 10, .final_div_factor = 100}, 12);
    check_schedule("cosine + warmup 1", (ScheduleSpec){.kind = SCHED_COSINE, .warmup = 1}, 12);
    check_schedule("constant + warmup 2", (ScheduleSpec){.kind = SCHED_CONSTANT, .warmup = 2}, 9);
    check_schedule("step + warmup 0.5", (ScheduleSpec){.kind = SCHED_STEP, .step_size = 1, .gamma = 0.5, .warmup = 0.5}, 9);
}

/* A model tensor under a reserved training name is an error, not a silent reuse. */
static void test_reserved_names(void) {
    Arena arena = {0};
    Module *m = module_new(&arena, "clash");
    InitSpec zero = {.kind = INIT_ZEROS};
    int p = module_add_tensor(m, "lr_scale", TK_PARAM, DT_F32, shape_make(1, (int64_t[]){2}, 0), zero, noloc);
    Func *f = module_add_func(m, "loss");
    Ref w = ir_tensor(f, p);
    func_add_out(f, "loss", OUT_LOSS, ir_reduce(f, OP_sum, ir_binary(f, OP_mul, w, w), 1u, false));
    CHECK(grad_build(m) != NULL);
    CHECK(optim_build_train_step(m) == NULL);
    arena_free(&arena);
}

/* lr_scale multiplies the scheduled rate (nnc train --lr, --lr-find); `lr` reports it. */
static void test_lr_scale(void) {
    TrainConfig tc = config(sgd(0.1, 0, 0, 0, false));
    tc.sched = (ScheduleSpec){.kind = SCHED_STEP, .step_size = 1, .gamma = 0.5};
    Trainer t;
    if (!trainer_open(&t, &tc, 2, true)) return;
    int scale = module_find_tensor(t.m, "lr_scale");
    CHECK(scale >= 0 && t.m->tensors[scale].kind == TK_HYPER);
    if (scale >= 0) t.in.tensors[scale].data[0] = 3;
    for (int step = 0; step < 4; step++) {
        memcpy(t.in.tensors[t.v].data, V0, sizeof V0);
        double x[3] = {0, 0, 0};
        trainer_step(&t, x);
        double got = (V0[0] - t.in.tensors[t.v].data[0]) / (V0[0] + D[0]);
        CHECK_NEAR(got, 0.3 * pow(0.5, step / 2), 1e-12);
    }
    trainer_close(&t);
}

int main(void) {
    test_optimizers();
    test_slot_names();
    test_schedules();
    test_lr_scale();
    test_reserved_names();
    return check_done();
}
