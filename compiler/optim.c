/* optim.c — `train_step`: gradient, clipping, accumulation, schedule, optimizer update.
 *
 * train_step (inputs, labels) -> loss, metrics is built in IR, so `nnc train` (JIT) and an
 * embedding program calling the compiled function train with the same semantics:
 *
 *   1. the nodes of `grad` (forward, batchnorm stat stores, backward), node for node;
 *   2. gradient accumulation over k = train.accumulate batches: g is added to the slot
 *      <param>.grad_sum; every k-th batch the mean (sum / k) goes on and the slot resets;
 *      on the other batches params and optimizer slots are stored back unchanged;
 *   3. clipping of that gradient: by value (clamp to [-v, v]), then by global norm
 *      (g *= min(1, max_norm / (||g||_2 + 1e-6)) over every param, as
 *      torch.nn.utils.clip_grad_norm_);
 *   4. the learning rate of the schedule, computed from the step counter;
 *   5. the optimizer update, as the torch.optim pseudo-code of each algorithm;
 *   6. `store`s of params, slots and step + 1, after every read.
 * Outputs: loss, metrics, and the learning rate used (OUT_EXTRA "lr", for progress lines).
 *
 * docs/optimizers.md gives every formula, the defaults, and the schedules' granularity.
 *
 * Counters: `step` (TK_STEP, i32) counts train_step calls (batches). The optimizer update
 * index u = floor(step / k) counts updates before this one, t = u + 1 is torch.optim's step
 * number. Per-epoch schedules use epoch = floor(step / steps_per_epoch); per-step ones
 * (cyclic, onecycle) and warmup use u. With k = 1, u = step.
 */
#include "nnc.h"

#include <math.h>
#include <string.h>

typedef struct PendingStore {
    int tensor;
    Ref old;   /* value before the update (kept on batches that do not apply), or REF_NONE */
    Ref value; /* new value */
} PendingStore;

typedef struct Opt {
    Module *m;
    Func *f;
    OptimizerSpec opt;
    ScheduleSpec sched;
    int64_t k;        /* accumulation factor (1 = off) */
    Ref step;         /* i32 batch counter */
    Ref stepf;        /* step as f32 */
    Ref u;            /* f32 optimizer update index 0, 1, ... */
    Ref t;            /* f32 torch.optim step number u + 1 */
    Ref first;        /* f32 scalar: 1 on the first update (t == 1) */
    Ref apply;        /* f32 scalar: 1 when this batch applies the update; REF_NONE if k == 1 */
    Ref spe;          /* steps_per_epoch (f32 hyper tensor) */
    Ref lr;           /* scheduled learning rate (f32 scalar) */
    PendingStore *stores;
    int nstores, stores_cap;
} Opt;

/* ---------------------------------------------------------------- scalar arithmetic (f32) */

static Ref c32(Opt *o, double v) { return ir_scalar(o->f, v); }
static Ref add(Opt *o, Ref a, Ref b) { return ir_binary(o->f, OP_add, a, b); }
static Ref sub(Opt *o, Ref a, Ref b) { return ir_binary(o->f, OP_sub, a, b); }
static Ref mul(Opt *o, Ref a, Ref b) { return ir_binary(o->f, OP_mul, a, b); }
static Ref dvd(Opt *o, Ref a, Ref b) { return ir_binary(o->f, OP_div, a, b); }
static Ref minimum(Opt *o, Ref a, Ref b) { return ir_binary(o->f, OP_minimum, a, b); }
static Ref maximum(Opt *o, Ref a, Ref b) { return ir_binary(o->f, OP_maximum, a, b); }
static Ref floor_(Opt *o, Ref a) { return ir_unary(o->f, OP_floor, a); }
static Ref sqrt_(Opt *o, Ref a) { return ir_unary(o->f, OP_sqrt, a); }
/* a * c, without the multiplication when c is 1 */
static Ref scale(Opt *o, Ref a, double c) { return c == 1 ? a : mul(o, a, c32(o, c)); }
static Ref named(Opt *o, Ref r, const char *name) {
    o->f->nodes[r].name = name;
    return r;
}

/* Cosine annealing from start (pct 0) to end (pct 1), as OneCycleLR's _annealing_cos:
 * end + (start - end) / 2 * (cos(pi pct) + 1). */
static Ref anneal_cos(Opt *o, Ref start, Ref end, Ref pct) {
    Ref c = ir_unary(o->f, OP_cos, mul(o, c32(o, M_PI), pct));
    return add(o, end, mul(o, mul(o, sub(o, start, end), c32(o, 0.5)), add(o, c, c32(o, 1))));
}

/* ---------------------------------------------------------------- module tensors */

/* The tensor called name, created with the given kind, shape and init when absent. */
static int module_tensor(Module *m, const char *name, TensorKind kind, DType dt, Shape shape,
                         InitSpec init, SrcLoc loc) {
    int id = module_find_tensor(m, name);
    return id >= 0 ? id : module_add_tensor(m, name, kind, dt, shape, init, loc);
}

static Ref hyper(Opt *o, const char *name, double init) {
    InitSpec spec = {.kind = INIT_CONSTANT, .a = init};
    int id = module_tensor(o->m, name, TK_HYPER, DT_F32, shape_scalar(), spec, o->sched.loc);
    return ir_tensor(o->f, id);
}

/* Reads optimizer slot <param>.<slot> (created with constant init), for an update whose new
 * value is recorded with slot_store. */
static int slot(Opt *o, int param, const char *name, double init) {
    Module *m = o->m;
    const char *full = arena_printf(m->arena, "%s.%s", m->tensors[param].name, name);
    InitSpec spec = {.kind = init == 0 ? INIT_ZEROS : INIT_CONSTANT, .a = init};
    int id = module_tensor(m, full, TK_SLOT, m->tensors[param].dtype, m->tensors[param].shape,
                           spec, m->tensors[param].loc);
    m->tensors[id].owner = param;
    return id;
}

/* Records `tensor <- value` for the end of the function. With accumulation the store keeps
 * `old` on the batches that do not apply the update (old = REF_NONE: store unconditionally). */
static void store_later(Opt *o, int tensor, Ref old, Ref value) {
    PendingStore s = {tensor, old, value};
    VEC_PUSH(o->m->arena, o->stores, o->nstores, o->stores_cap, s);
}

/* Reads slot `name` of param and returns the read; the new value goes to store_later. */
static Ref slot_read(Opt *o, int param, const char *name, double init, int *id) {
    *id = slot(o, param, name, init);
    return ir_tensor(o->f, *id);
}

/* ---------------------------------------------------------------- schedules */

/* Per-epoch schedules (PyTorch's scheduler.step() once per epoch) see e = floor(step / spe);
 * per-step ones (cyclic, onecycle) and warmup see the update index u. Lengths written in
 * epochs become updates by * spe / k. */
static Ref schedule_lr(Opt *o) {
    const ScheduleSpec *s = &o->sched;
    double lr0 = o->opt.lr;
    Ref epoch = named(o, floor_(o, dvd(o, o->stepf, o->spe)), "epoch");
    Ref updates_per_epoch = scale(o, o->spe, 1.0 / (double)o->k);
    Ref lr;
    switch (s->kind) {
    case SCHED_STEP: /* StepLR: lr0 * gamma^floor(e / step_size) */
        lr = mul(o, c32(o, lr0), ir_binary(o->f, OP_pow, c32(o, s->gamma),
                                           floor_(o, dvd(o, epoch, c32(o, s->step_size)))));
        break;
    case SCHED_EXP: /* ExponentialLR: lr0 * gamma^e */
        lr = mul(o, c32(o, lr0), ir_binary(o->f, OP_pow, c32(o, s->gamma), epoch));
        break;
    case SCHED_COSINE: { /* CosineAnnealingLR, T_max = total epochs T: anneal_cos(lr0 -> eta_min, e / T) */
        Ref epochs = dvd(o, hyper(o, "total_steps", (double)(o->m->train.epochs > 0 ? o->m->train.epochs : 1)), o->spe);
        lr = anneal_cos(o, c32(o, lr0), c32(o, s->eta_min), dvd(o, epoch, epochs));
        break;
    }
    case SCHED_SGDR: {
        /* CosineAnnealingWarmRestarts(T_0, T_mult), stepped per epoch:
         * cycle i spans T_i = T_0 T_mult^i epochs from B_i = T_0 (T_mult^i - 1)/(T_mult - 1);
         * lr = anneal_cos(lr0 -> eta_min, (e - B_i) / T_i) for the cycle i holding e.
         * T_mult = 1: B_i = i T_0, so e - B_i = e - T_0 floor(e / T_0). Otherwise the cycle is
         * found by comparing e with each boundary (exact, unlike PyTorch's log formula in
         * floating point), unrolled up to 10^7 epochs. */
        Ref t0 = c32(o, s->t0), since, length;
        if (s->t_mult <= 1) {
            since = sub(o, epoch, mul(o, t0, floor_(o, dvd(o, epoch, t0))));
            length = t0;
        } else {
            since = epoch;
            length = t0;
            double boundary = s->t0, cycle = s->t0;
            for (int i = 1; i < 64 && boundary <= 1e7; i++) {
                Ref past = ir_binary(o->f, OP_ge, epoch, c32(o, boundary));
                cycle *= s->t_mult;
                since = ir_select(o->f, past, sub(o, epoch, c32(o, boundary)), since);
                length = ir_select(o->f, past, c32(o, cycle), length);
                boundary += cycle;
            }
        }
        lr = anneal_cos(o, c32(o, lr0), c32(o, s->eta_min), dvd(o, since, length));
        break;
    }
    case SCHED_CYCLIC: {
        /* CyclicLR(base_lr = lr0, max_lr, step_size_up = step_size epochs, 'triangular'):
         * cycle = floor(1 + u / 2S), x = 1 + u / 2S - cycle,
         * scale = x <= 1/2 ? 2x : 2(1 - x), lr = lr0 + (max_lr - lr0) scale */
        Ref size = mul(o, c32(o, 2 * s->step_size), updates_per_epoch);
        Ref pos = dvd(o, o->u, size);
        Ref cycle = floor_(o, add(o, c32(o, 1), pos));
        Ref x = sub(o, add(o, c32(o, 1), pos), cycle);
        Ref rising = ir_binary(o->f, OP_le, x, c32(o, 0.5));
        Ref scale = ir_select(o->f, rising, mul(o, c32(o, 2), x), mul(o, c32(o, 2), sub(o, c32(o, 1), x)));
        lr = add(o, c32(o, lr0), mul(o, c32(o, s->max_lr - lr0), scale));
        break;
    }
    case SCHED_ONECYCLE: {
        /* OneCycleLR(max_lr, total_steps = T, pct_start, 'cos', div_factor, final_div_factor):
         * initial = max_lr / div_factor, min = initial / final_div_factor,
         * e1 = pct_start T - 1, e2 = T - 1;
         * u <= e1: anneal_cos(initial -> max_lr, u / e1)
         * else:    anneal_cos(max_lr -> min, (u - e1) / (e2 - e1))  (held at min after e2,
         *          where PyTorch raises an error) */
        double initial = s->max_lr / s->div_factor, lowest = initial / s->final_div_factor;
        Ref total = scale(o, hyper(o, "total_steps", (double)(o->m->train.epochs > 0 ? o->m->train.epochs : 1)),
                          1.0 / (double)o->k);
        Ref e1 = sub(o, mul(o, c32(o, s->pct_start), total), c32(o, 1));
        Ref e2 = sub(o, total, c32(o, 1));
        Ref up = anneal_cos(o, c32(o, initial), c32(o, s->max_lr), dvd(o, o->u, e1));
        Ref frac2 = minimum(o, c32(o, 1), dvd(o, sub(o, o->u, e1), sub(o, e2, e1)));
        Ref down = anneal_cos(o, c32(o, s->max_lr), c32(o, lowest), frac2);
        lr = ir_select(o->f, ir_binary(o->f, OP_le, o->u, e1), up, down);
        break;
    }
    case SCHED_CONSTANT:
    default: lr = c32(o, lr0); break;
    }
    if (s->warmup > 0) {
        /* linear warmup: lr * min(1, (u + 1) / W), W = warmup epochs in updates */
        Ref w = scale(o, updates_per_epoch, s->warmup);
        lr = mul(o, lr, minimum(o, c32(o, 1), dvd(o, add(o, o->u, c32(o, 1)), w)));
    }
    return named(o, lr, "lr");
}

/* ---------------------------------------------------------------- optimizers */

/* A scalar f32 ref in dtype dt (params are f32 except in f64 checking models). */
static Ref in_dtype(Opt *o, Ref r, DType dt) { return ir_cast(o->f, r, dt); }
static Ref cst(Opt *o, DType dt, double v) { return ir_const(o->f, dt, shape_scalar(), v); }

/* Returns the new value of param p (current value w) given its gradient g. Slots are read
 * here and their new values recorded with store_later. Formulas: torch.optim docs. */
static Ref optimizer_update(Opt *o, int p, Ref w, Ref g) {
    const OptimizerSpec *op = &o->opt;
    DType dt = o->m->tensors[p].dtype;
    Ref lr = in_dtype(o, o->lr, dt), t = in_dtype(o, o->t, dt);
    int id;
    switch (op->kind) {
    case OPT_SGD:
    default: {
        /* g += wd w;  b = t == 1 ? g : mu b + (1 - dampening) g;
         * g = nesterov ? g + mu b : b;  w -= lr g */
        if (op->weight_decay != 0) g = add(o, g, mul(o, cst(o, dt, op->weight_decay), w));
        if (op->momentum != 0) {
            Ref buf = slot_read(o, p, "momentum_buffer", 0, &id);
            if (o->first == REF_NONE) o->first = ir_binary(o->f, OP_eq, o->u, c32(o, 0));
            Ref damped = op->dampening != 0 ? mul(o, cst(o, dt, 1 - op->dampening), g) : g;
            Ref b = ir_select(o->f, o->first, g, add(o, mul(o, cst(o, dt, op->momentum), buf), damped));
            store_later(o, id, buf, b);
            g = op->nesterov ? add(o, g, mul(o, cst(o, dt, op->momentum), b)) : b;
        }
        return sub(o, w, mul(o, lr, g));
    }
    case OPT_ADAGRAD: {
        /* clr = lr / (1 + (t - 1) lr_decay);  g += wd w;  sum += g^2;
         * w -= clr g / (sqrt(sum) + eps) */
        Ref clr = dvd(o, lr, add(o, cst(o, dt, 1), mul(o, sub(o, t, cst(o, dt, 1)), cst(o, dt, op->lr_decay))));
        if (op->weight_decay != 0) g = add(o, g, mul(o, cst(o, dt, op->weight_decay), w));
        Ref sum = slot_read(o, p, "sum", op->initial_accumulator, &id);
        Ref sum_new = add(o, sum, mul(o, g, g));
        store_later(o, id, sum, sum_new);
        Ref denom = add(o, sqrt_(o, sum_new), cst(o, dt, op->eps));
        return sub(o, w, mul(o, clr, dvd(o, g, denom)));
    }
    case OPT_RMSPROP: {
        /* g += wd w;  v = alpha v + (1 - alpha) g^2;  centered: ga = alpha ga + (1 - alpha) g,
         * v~ = v - ga^2 (else v~ = v);  mu > 0: b = mu b + g / (sqrt(v~) + eps), w -= lr b;
         * else w -= lr g / (sqrt(v~) + eps) */
        if (op->weight_decay != 0) g = add(o, g, mul(o, cst(o, dt, op->weight_decay), w));
        Ref a = cst(o, dt, op->alpha), one_minus_a = cst(o, dt, 1 - op->alpha);
        Ref v = slot_read(o, p, "square_avg", 0, &id);
        Ref v_new = add(o, mul(o, a, v), mul(o, one_minus_a, mul(o, g, g)));
        store_later(o, id, v, v_new);
        Ref avg = v_new;
        if (op->centered) {
            Ref ga = slot_read(o, p, "grad_avg", 0, &id);
            Ref ga_new = add(o, mul(o, a, ga), mul(o, one_minus_a, g));
            store_later(o, id, ga, ga_new);
            avg = sub(o, avg, mul(o, ga_new, ga_new));
        }
        Ref step = dvd(o, g, add(o, sqrt_(o, avg), cst(o, dt, op->eps)));
        if (op->momentum > 0) {
            Ref buf = slot_read(o, p, "momentum_buffer", 0, &id);
            Ref b = add(o, mul(o, cst(o, dt, op->momentum), buf), step);
            store_later(o, id, buf, b);
            step = b;
        }
        return sub(o, w, mul(o, lr, step));
    }
    case OPT_ADAM:
    case OPT_ADAMW: {
        /* adam: g += wd w;  adamw: w *= 1 - lr wd;
         * m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
         * amsgrad: vmax = max(vmax, v), v^ = vmax (else v^ = v);
         * w -= lr / (1 - b1^t) * m / (sqrt(v^) / sqrt(1 - b2^t) + eps) */
        if (op->weight_decay != 0) {
            if (op->kind == OPT_ADAM)
                g = add(o, g, mul(o, cst(o, dt, op->weight_decay), w));
            else
                w = mul(o, w, sub(o, cst(o, dt, 1), mul(o, lr, cst(o, dt, op->weight_decay))));
        }
        Ref b1 = cst(o, dt, op->beta1), b2 = cst(o, dt, op->beta2);
        Ref m = slot_read(o, p, "exp_avg", 0, &id);
        Ref m_new = add(o, mul(o, b1, m), mul(o, cst(o, dt, 1 - op->beta1), g));
        store_later(o, id, m, m_new);
        Ref v = slot_read(o, p, "exp_avg_sq", 0, &id);
        Ref v_new = add(o, mul(o, b2, v), mul(o, cst(o, dt, 1 - op->beta2), mul(o, g, g)));
        store_later(o, id, v, v_new);
        Ref vhat = v_new;
        if (op->amsgrad) {
            Ref vmax = slot_read(o, p, "max_exp_avg_sq", 0, &id);
            vhat = maximum(o, vmax, v_new);
            store_later(o, id, vmax, vhat);
        }
        Ref bc1 = sub(o, cst(o, dt, 1), ir_binary(o->f, OP_pow, b1, t));
        Ref bc2 = sub(o, cst(o, dt, 1), ir_binary(o->f, OP_pow, b2, t));
        Ref denom = add(o, dvd(o, sqrt_(o, vhat), sqrt_(o, bc2)), cst(o, dt, op->eps));
        return sub(o, w, mul(o, dvd(o, lr, bc1), dvd(o, m_new, denom)));
    }
    }
}

/* ---------------------------------------------------------------- the function */

Func *optim_build_train_step(Module *m) {
    Func *existing = module_find_func(m, "train_step");
    if (existing) return existing;
    Func *g = module_find_func(m, "grad");
    if (!g) g = grad_build(m);
    if (!g) return NULL;

    Opt o = {.m = m, .k = 1};
    if (m->train.present) {
        o.opt = m->train.opt;
        o.sched = m->train.sched;
        if (m->train.accumulate > 1) o.k = m->train.accumulate;
    } else {
        /* no train block: sgd(lr=0.01), constant schedule (docs/optimizers.md) */
        o.opt = (OptimizerSpec){.kind = OPT_SGD, .lr = 0.01};
        o.sched = (ScheduleSpec){.kind = SCHED_CONSTANT};
    }

    /* the counters and hyperparameters live under reserved names */
    static const struct {
        const char *name;
        TensorKind kind;
    } reserved[] = {{"step", TK_STEP}, {"steps_per_epoch", TK_HYPER}, {"total_steps", TK_HYPER},
                    {"lr_scale", TK_HYPER}};
    for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++) {
        int id = module_find_tensor(m, reserved[i].name);
        if (id >= 0 && m->tensors[id].kind != reserved[i].kind) {
            fprintf(stderr, "nnc: error: model '%s' has a %s named '%s', a name reserved for training\n",
                    m->name, tensor_kind_names[m->tensors[id].kind], reserved[i].name);
            return NULL;
        }
    }

    Func *f = module_add_func(m, "train_step");
    o.f = f;
    for (int i = 0; i < g->nargs; i++)
        func_add_arg(f, g->args[i].name, g->args[i].role, g->args[i].dtype, g->args[i].shape,
                     g->args[i].loc);
    for (int i = 0; i < g->nnodes; i++) {
        const Node *src = &g->nodes[i];
        Ref r = ir_node(f, src->op, src->dtype, src->shape, src->nin, src->in, &src->attr);
        f->nodes[r].name = src->name;
        f->nodes[r].loc = src->loc;
    }
    Ref loss_ref = REF_NONE;
    for (int i = 0; i < g->nouts; i++) {
        if (g->outs[i].role == OUT_GRAD) continue;
        func_add_out(f, g->outs[i].name, g->outs[i].role, g->outs[i].value);
        if (g->outs[i].role == OUT_LOSS) loss_ref = g->outs[i].value;
    }

    /* counters */
    InitSpec zero = {.kind = INIT_ZEROS};
    int step_id = module_tensor(m, "step", TK_STEP, DT_I32, shape_scalar(), zero, m->train.loc);
    o.step = ir_tensor(f, step_id);
    o.stepf = ir_cast(f, o.step, DT_F32);
    o.spe = hyper(&o, "steps_per_epoch", 1);
    o.apply = REF_NONE;
    if (o.k > 1) {
        /* apply on every k-th batch: (step + 1) / k * k == step + 1 (i32), u = step / k */
        Ref k = ir_const(f, DT_I32, shape_scalar(), (double)o.k);
        Ref next = ir_binary(f, OP_add, o.step, ir_const(f, DT_I32, shape_scalar(), 1));
        o.apply = named(&o, ir_binary(f, OP_eq, ir_binary(f, OP_mul, ir_binary(f, OP_div, next, k), k), next),
                        "apply_update");
        o.u = ir_cast(f, ir_binary(f, OP_div, o.step, k), DT_F32);
    } else {
        o.u = o.stepf;
    }
    o.t = add(&o, o.u, c32(&o, 1));
    o.first = REF_NONE;  /* made by the first update that needs it */
    /* lr_scale (1 by default) lets the driver override the rate (--lr) and sweep it
     * (--lr-find) without recompiling; the scaled rate is an extra output for progress lines */
    o.lr = named(&o, mul(&o, schedule_lr(&o), hyper(&o, "lr_scale", 1)), "lr");
    func_add_out(f, "lr", OUT_EXTRA, o.lr);

    /* the gradient of every param the loss depends on (others are left alone, as torch.optim
     * skips params whose .grad is None) */
    int nparams = 0;
    int *params = arena_alloc(m->arena, (size_t)(g->nouts + 1) * sizeof *params);
    Ref *grads = arena_alloc(m->arena, (size_t)(g->nouts + 1) * sizeof *grads);
    for (int i = 0; i < g->nouts; i++) {
        if (g->outs[i].role != OUT_GRAD) continue;
        int p = module_find_tensor(m, g->outs[i].name);
        if (p < 0 || !grad_depends_on(g, loss_ref, p)) continue;
        params[nparams] = p;
        grads[nparams++] = g->outs[i].value;
    }

    /* accumulation: sum = grad_sum + g; mean = sum / k; grad_sum <- apply ? 0 : sum */
    if (o.k > 1)
        for (int i = 0; i < nparams; i++) {
            int id;
            DType dt = m->tensors[params[i]].dtype;
            Ref acc = slot_read(&o, params[i], "grad_sum", 0, &id);
            Ref sum = add(&o, acc, grads[i]);
            store_later(&o, id, REF_NONE, ir_select(f, o.apply, ir_const(f, dt, m->tensors[params[i]].shape, 0), sum));
            grads[i] = mul(&o, sum, cst(&o, dt, 1.0 / (double)o.k));
        }

    /* clipping by value, then by global norm */
    double clip_value = m->train.present ? m->train.clip_value : 0;
    double clip_norm = m->train.present ? m->train.clip_norm : 0;
    if (clip_value > 0)
        for (int i = 0; i < nparams; i++) {
            DType dt = m->tensors[params[i]].dtype;
            grads[i] = minimum(&o, maximum(&o, grads[i], cst(&o, dt, -clip_value)), cst(&o, dt, clip_value));
        }
    if (clip_norm > 0 && nparams > 0) {
        /* norm = sqrt(sum_p sum g_p^2);  g *= min(1, max_norm / (norm + 1e-6)) */
        Ref total = REF_NONE;
        for (int i = 0; i < nparams; i++) {
            uint32_t all = (1u << ir_at(f, grads[i])->shape.rank) - 1;
            Ref sq = ir_cast(f, ir_reduce(f, OP_sum, mul(&o, grads[i], grads[i]), all, false), DT_F32);
            total = total == REF_NONE ? sq : add(&o, total, sq);
        }
        Ref norm = named(&o, sqrt_(&o, total), "grad_norm");
        Ref coef = named(&o, minimum(&o, c32(&o, 1), dvd(&o, c32(&o, clip_norm), add(&o, norm, c32(&o, 1e-6)))),
                         "clip_coef");
        for (int i = 0; i < nparams; i++)
            grads[i] = mul(&o, grads[i], in_dtype(&o, coef, m->tensors[params[i]].dtype));
    }

    for (int i = 0; i < nparams; i++) {
        Ref w = ir_tensor(f, params[i]);
        store_later(&o, params[i], w, optimizer_update(&o, params[i], w, grads[i]));
    }

    /* every read is above; now the stores */
    for (int i = 0; i < o.nstores; i++) {
        PendingStore *s = &o.stores[i];
        Ref value = s->value;
        if (o.apply != REF_NONE && s->old != REF_NONE) value = ir_select(f, o.apply, value, s->old);
        ir_store(f, s->tensor, value);
    }
    ir_store(f, step_id, ir_binary(f, OP_add, o.step, ir_const(f, DT_I32, shape_scalar(), 1)));
    return f;
}
