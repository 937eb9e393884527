/* train.c — `train MODEL { key = value ... }` blocks into the module's TrainConfig.
 *
 * Keys: data, batch, epochs, optimizer, schedule, seed, validation, preprocess, early_stop,
 * clip_norm, clip_value, accumulate. Optimizers take torch.optim's defaults exactly;
 * durations (warmup, step_size, t0) are in epochs. Bare names in a train block are symbols
 * (`data = fashion_mnist`, `on=val_loss`), not model bindings. docs/training.md describes it.
 */
#include "nnc.h"

#include <string.h>

typedef struct TrainKey {
    const char *name;
    void (*read)(Sema *s, const Stmt *st, Module *m);
} TrainKey;

/* ---------------------------------------------------------------- value helpers */

/* A number in a range; lo_open/hi_open make the bound strict; hi < lo means no upper bound. */
static bool num_in(Sema *s, const Call *c, int i, const char *what, double lo, bool lo_open,
                   double hi, bool hi_open, double *out) {
    const Value *v = &c->arg[i];
    if (v->kind != V_NUM) {
        sema_error(s, c->arg_loc[i], "%s: '%s' must be a number, got %s", what, c->arg_name[i],
                   value_type_str(s, v));
        return false;
    }
    double x = v->num;
    bool bad = lo_open ? !(x > lo) : !(x >= lo);
    if (hi >= lo) bad = bad || (hi_open ? !(x < hi) : !(x <= hi));
    if (bad) {
        if (hi < lo)
            sema_error(s, c->arg_loc[i], "%s: '%s' must be %s %g, got %g", what, c->arg_name[i],
                       lo_open ? ">" : ">=", lo, x);
        else
            sema_error(s, c->arg_loc[i], "%s: '%s' must be in %c%g, %g%c, got %g", what,
                       c->arg_name[i], lo_open ? '(' : '[', lo, hi, hi_open ? ')' : ']', x);
        return false;
    }
    *out = x;
    return true;
}

static bool bool_of(Sema *s, const Call *c, int i, const char *what, bool *out) {
    const Value *v = &c->arg[i];
    if (v->kind != V_BOOL) {
        sema_error(s, c->arg_loc[i], "%s: '%s' must be true or false, got %s", what, c->arg_name[i],
                   value_type_str(s, v));
        return false;
    }
    *out = v->num != 0;
    return true;
}

static bool str_of(Sema *s, const Call *c, int i, const char *what, const char **out) {
    const Value *v = &c->arg[i];
    if (v->kind != V_STR) {
        sema_error(s, c->arg_loc[i], "%s: '%s' must be a string, got %s", what, c->arg_name[i],
                   value_type_str(s, v));
        return false;
    }
    *out = v->str;
    return true;
}

/* The callee of `name` or `name(args)`; NULL after reporting. */
static const char *callee_of(Sema *s, const Stmt *st, const char *what) {
    const Expr *e = st->value;
    if (e && (e->kind == E_NAME || e->kind == E_CALL)) return e->str;
    if (e && e->kind != E_ERROR) sema_error(s, e->loc, "'%s' expects %s", st->name, what);
    return NULL;
}

static SrcLoc callee_loc(const Expr *e) {
    return e->kind == E_CALL ? e->callee_loc : e->loc;
}

static void unknown_choice(Sema *s, SrcLoc loc, const char *kind, const char *name,
                           const char *const *names, int n) {
    const char *close = diag_closest(name, names, n);
    const char *list = "";
    for (int i = 0; i < n; i++)
        list = arena_printf(sema_arena(s), "%s%s%s", list, i ? ", " : "", names[i]);
    if (close)
        sema_error(s, loc, "unknown %s '%s'; did you mean '%s'?", kind, name, close);
    else
        sema_error(s, loc, "unknown %s '%s' (one of: %s)", kind, name, list);
}

/* A compile-time integer value (batch = 64). */
static bool int_value(Sema *s, const Stmt *st, int64_t lo, int64_t *out) {
    Value v = sema_eval(s, st->value);
    if (v.kind == V_ERROR) return false;
    if (v.kind != V_NUM || !v.is_int || v.num < (double)lo || v.num > 9e15) {
        sema_error(s, st->value->loc, "'%s' must be an integer >= %lld, got %s", st->name,
                   (long long)lo, value_type_str(s, &v));
        return false;
    }
    *out = (int64_t)v.num;
    return true;
}

static bool num_value(Sema *s, const Stmt *st, double lo, bool lo_open, double hi, bool hi_open,
                      double *out) {
    Value v = sema_eval(s, st->value);
    if (v.kind == V_ERROR) return false;
    Call c = {.arg = {v}, .arg_loc = {st->value->loc}, .arg_name = {st->name}};
    return num_in(s, &c, 0, "train", lo, lo_open, hi, hi_open, out);
}

/* ---------------------------------------------------------------- keys */

static void read_batch(Sema *s, const Stmt *st, Module *m) {
    Value v = sema_eval(s, st->value);
    if (v.kind == V_ERROR) return;
    if (v.kind != V_NUM || !v.is_int || v.num <= 0 || v.num > 1e9) {
        sema_error(s, st->value->loc, "batch must be a positive integer, got %s",
                   value_type_str(s, &v));
        return;
    }
    m->train.batch = (int64_t)v.num;
    m->max_batch = m->train.batch;
}

static void read_epochs(Sema *s, const Stmt *st, Module *m) {
    int_value(s, st, 1, &m->train.epochs);
}
static void read_seed(Sema *s, const Stmt *st, Module *m) {
    int_value(s, st, 0, &m->train.seed);
}
static void read_accumulate(Sema *s, const Stmt *st, Module *m) {
    int_value(s, st, 1, &m->train.accumulate);
}

static void read_validation(Sema *s, const Stmt *st, Module *m) {
    num_value(s, st, 0, false, 1, true, &m->train.validation);
}

static void read_clip_norm(Sema *s, const Stmt *st, Module *m) {
    num_value(s, st, 0, true, -1, false, &m->train.clip_norm);
}

static void read_clip_value(Sema *s, const Stmt *st, Module *m) {
    num_value(s, st, 0, true, -1, false, &m->train.clip_value);
}

static void read_preprocess(Sema *s, const Stmt *st, Module *m) {
    static const char *const names[] = {"none", "standardize", "normalize"};
    const Expr *e = st->value;
    const char *name = e && (e->kind == E_NAME || e->kind == E_STR) ? e->str : NULL;
    if (!name) {
        if (e && e->kind != E_ERROR)
            sema_error(s, e->loc, "'preprocess' expects standardize, normalize or none");
        return;
    }
    for (int i = 0; i < 3; i++)
        if (!strcmp(name, names[i])) {
            m->train.preprocess = i;
            return;
        }
    unknown_choice(s, e->loc, "preprocessing", name, names, 3);
}

static void read_data(Sema *s, const Stmt *st, Module *m) {
    static const struct {
        const char *name, *sig;
        DataKind kind;
    } sources[] = {
        {"fashion_mnist", "", DATA_FASHION_MNIST},
        {"idx", "images, labels", DATA_IDX},
        {"csv", "path, label='label', header=true", DATA_CSV},
        {"npy", "x, y", DATA_NPY},
        {"text", "path, seq, stride=none", DATA_TEXT},
    };
    enum { N = sizeof sources / sizeof sources[0] };
    const char *name =
        callee_of(s, st, "a data source such as fashion_mnist or csv(\"train.csv\", label=\"y\")");
    if (!name) return;
    int k;
    for (k = 0; k < N; k++)
        if (!strcmp(name, sources[k].name)) break;
    if (k == N) {
        const char *names[N];
        for (int i = 0; i < N; i++)
            names[i] = sources[i].name;
        unknown_choice(s, callee_loc(st->value), "data source", name, names, N);
        return;
    }
    Call c;
    if (!sema_bind_call(s, name, sources[k].sig, st->value, false, &c)) return;
    DataSpec d = {.kind = sources[k].kind, .loc = st->value->loc};
    bool ok = true;
    switch (d.kind) {
    case DATA_IDX:
        ok = str_of(s, &c, 0, name, &d.images) && str_of(s, &c, 1, name, &d.labels);
        break;
    case DATA_NPY:
        ok = str_of(s, &c, 0, name, &d.x) && str_of(s, &c, 1, name, &d.y);
        break;
    case DATA_CSV:
        ok = str_of(s, &c, 0, name, &d.path) && bool_of(s, &c, 2, name, &d.header);
        if (ok && c.arg[1].kind == V_NUM && c.arg[1].is_int && c.arg[1].num >= 0)
            d.label_column =
                arena_printf(sema_arena(s), "%lld", (long long)c.arg[1].num); /* a column index */
        else
            ok = ok && str_of(s, &c, 1, name, &d.label_column);
        break;
    case DATA_TEXT: {
        double seq;
        ok = str_of(s, &c, 0, name, &d.path) && num_in(s, &c, 1, name, 1, false, -1, false, &seq);
        if (ok && seq != (double)(int64_t)seq) {
            sema_error(s, c.arg_loc[1], "text: 'seq' must be an integer, got %g", seq);
            ok = false;
        }
        d.seq = (int64_t)seq;
        double stride = 0;
        if (ok && c.arg[2].kind != V_NONE) {
            ok = num_in(s, &c, 2, name, 1, false, seq, false, &stride);
            if (ok && stride != (double)(int64_t)stride) {
                sema_error(s, c.arg_loc[2], "text: 'stride' must be an integer, got %g", stride);
                ok = false;
            }
        }
        d.stride = stride > 0 ? (int64_t)stride : d.seq;
        break;
    }
    default:
        break;
    }
    if (ok) m->train.data = d;
}

/* optimizer = sgd(...) | momentum(...) | nesterov(...) | adagrad(...) | rmsprop(...) | adam(...) |
 * adamw(...) */
static void read_optimizer(Sema *s, const Stmt *st, Module *m) {
    static const struct {
        const char *name, *sig;
    } opts[] = {
        {"sgd", "lr, momentum=0, dampening=0, nesterov=false, weight_decay=0"},
        {"momentum", "lr, momentum, dampening=0, weight_decay=0"},
        {"nesterov", "lr, momentum, weight_decay=0"},
        {"adagrad", "lr=0.01, lr_decay=0, weight_decay=0, initial_accumulator_value=0, eps=1e-10"},
        {"rmsprop", "lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=false"},
        {"adam", "lr=0.001, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=false"},
        {"adamw", "lr=0.001, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, amsgrad=false"},
    };
    enum { N = sizeof opts / sizeof opts[0] };
    const char *name = callee_of(s, st, "an optimizer such as sgd(lr=0.1) or adam()");
    if (!name) return;
    int k;
    for (k = 0; k < N; k++)
        if (!strcmp(name, opts[k].name)) break;
    if (k == N) {
        const char *names[N];
        for (int i = 0; i < N; i++)
            names[i] = opts[i].name;
        unknown_choice(s, callee_loc(st->value), "optimizer", name, names, N);
        return;
    }
    Call c;
    if (!sema_bind_call(s, name, opts[k].sig, st->value, false, &c)) return;
    OptimizerSpec o = {.loc = st->value->loc};
    if (c.arg[0].kind == V_NUM && c.arg[0].num <= 0) {
        sema_error(s, c.arg_loc[0], "%s: the learning rate must be positive, got %g", name,
                   c.arg[0].num);
        return;
    }
    if (!num_in(s, &c, 0, name, 0, true, -1, false, &o.lr)) return;
    bool ok = true;
    switch (k) {
    case 0:
    case 1:
    case 2:
        o.kind = OPT_SGD;
        ok = num_in(s, &c, 1, name, 0, false, -1, false, &o.momentum) &&
             (k == 2 || num_in(s, &c, 2, name, 0, false, 1, false, &o.dampening)) &&
             num_in(s, &c,
                    k == 2   ? 2
                    : k == 1 ? 3
                             : 4,
                    name, 0, false, -1, false, &o.weight_decay);
        if (ok && k == 0) ok = bool_of(s, &c, 3, name, &o.nesterov);
        if (k == 2) o.nesterov = true;
        if (ok && k > 0 && o.momentum <= 0) {
            sema_error(s, c.arg_loc[1], "%s: 'momentum' must be positive, got %g", name,
                       o.momentum);
            ok = false;
        }
        if (ok && o.nesterov && (o.momentum <= 0 || o.dampening != 0)) {
            sema_error(s, c.given[3] ? c.arg_loc[3] : c.loc,
                       "nesterov momentum needs momentum > 0 and dampening = 0 (momentum is %g, "
                       "dampening %g)",
                       o.momentum, o.dampening);
            ok = false;
        }
        break;
    case 3:
        o.kind = OPT_ADAGRAD;
        ok = num_in(s, &c, 1, name, 0, false, -1, false, &o.lr_decay) &&
             num_in(s, &c, 2, name, 0, false, -1, false, &o.weight_decay) &&
             num_in(s, &c, 3, name, 0, false, -1, false, &o.initial_accumulator) &&
             num_in(s, &c, 4, name, 0, false, -1, false, &o.eps);
        break;
    case 4:
        o.kind = OPT_RMSPROP;
        ok = num_in(s, &c, 1, name, 0, false, 1, false, &o.alpha) &&
             num_in(s, &c, 2, name, 0, false, -1, false, &o.eps) &&
             num_in(s, &c, 3, name, 0, false, -1, false, &o.weight_decay) &&
             num_in(s, &c, 4, name, 0, false, -1, false, &o.momentum) &&
             bool_of(s, &c, 5, name, &o.centered);
        break;
    default: {
        o.kind = k == 5 ? OPT_ADAM : OPT_ADAMW;
        const Value *b = &c.arg[1];
        if (b->kind != V_TUPLE || b->nitems != 2 || b->items[0].kind != V_NUM ||
            b->items[1].kind != V_NUM || b->items[0].num < 0 || b->items[0].num >= 1 ||
            b->items[1].num < 0 || b->items[1].num >= 1) {
            sema_error(s, c.arg_loc[1], "%s: 'betas' must be a pair of numbers in [0, 1), got %s",
                       name, value_type_str(s, b));
            ok = false;
            break;
        }
        o.beta1 = b->items[0].num;
        o.beta2 = b->items[1].num;
        ok = num_in(s, &c, 2, name, 0, false, -1, false, &o.eps) &&
             num_in(s, &c, 3, name, 0, false, -1, false, &o.weight_decay) &&
             bool_of(s, &c, 4, name, &o.amsgrad);
        break;
    }
    }
    if (ok) m->train.opt = o;
}

/* schedule = constant | step(step_size, gamma=0.1) | exp(gamma) | cosine(eta_min=0) | sgdr(t0, ...)
 *          | cyclic(max_lr, step_size) | onecycle(max_lr, ...), each with warmup= (epochs). */
static void read_schedule(Sema *s, const Stmt *st, Module *m) {
    static const struct {
        const char *name, *sig;
        SchedKind kind;
    } scheds[] = {
        {"constant", "warmup=0", SCHED_CONSTANT},
        {"step", "step_size, gamma=0.1, warmup=0", SCHED_STEP},
        {"exp", "gamma, warmup=0", SCHED_EXP},
        {"cosine", "warmup=0, eta_min=0", SCHED_COSINE},
        {"sgdr", "t0, t_mult=1, eta_min=0, warmup=0", SCHED_SGDR},
        {"cyclic", "max_lr, step_size, warmup=0", SCHED_CYCLIC},
        {"onecycle", "max_lr, pct_start=0.3, div_factor=25, final_div_factor=1e4, warmup=0",
         SCHED_ONECYCLE},
    };
    enum { N = sizeof scheds / sizeof scheds[0] };
    const char *name =
        callee_of(s, st, "a schedule such as cosine(warmup=1) or step(10, gamma=0.5)");
    if (!name) return;
    int k;
    for (k = 0; k < N; k++)
        if (!strcmp(name, scheds[k].name)) break;
    if (k == N) {
        const char *names[N];
        for (int i = 0; i < N; i++)
            names[i] = scheds[i].name;
        unknown_choice(s, callee_loc(st->value), "schedule", name, names, N);
        return;
    }
    Call c;
    if (!sema_bind_call(s, name, scheds[k].sig, st->value, false, &c)) return;
    ScheduleSpec sc = {.kind = scheds[k].kind, .loc = st->value->loc, .t_mult = 1};
    bool ok = true;
    switch (sc.kind) {
    case SCHED_CONSTANT:
        ok = num_in(s, &c, 0, name, 0, false, -1, false, &sc.warmup);
        break;
    case SCHED_STEP:
        ok = num_in(s, &c, 0, name, 0, true, -1, false, &sc.step_size) &&
             num_in(s, &c, 1, name, 0, true, -1, false, &sc.gamma) &&
             num_in(s, &c, 2, name, 0, false, -1, false, &sc.warmup);
        break;
    case SCHED_EXP:
        ok = num_in(s, &c, 0, name, 0, true, -1, false, &sc.gamma) &&
             num_in(s, &c, 1, name, 0, false, -1, false, &sc.warmup);
        break;
    case SCHED_COSINE:
        ok = num_in(s, &c, 0, name, 0, false, -1, false, &sc.warmup) &&
             num_in(s, &c, 1, name, 0, false, -1, false, &sc.eta_min);
        break;
    case SCHED_SGDR:
        ok = num_in(s, &c, 0, name, 0, true, -1, false, &sc.t0) &&
             num_in(s, &c, 1, name, 1, false, -1, false, &sc.t_mult) &&
             num_in(s, &c, 2, name, 0, false, -1, false, &sc.eta_min) &&
             num_in(s, &c, 3, name, 0, false, -1, false, &sc.warmup);
        break;
    case SCHED_CYCLIC:
        ok = num_in(s, &c, 0, name, 0, true, -1, false, &sc.max_lr) &&
             num_in(s, &c, 1, name, 0, true, -1, false, &sc.step_size) &&
             num_in(s, &c, 2, name, 0, false, -1, false, &sc.warmup);
        break;
    case SCHED_ONECYCLE:
        ok = num_in(s, &c, 0, name, 0, true, -1, false, &sc.max_lr) &&
             num_in(s, &c, 1, name, 0, true, 1, true, &sc.pct_start) &&
             num_in(s, &c, 2, name, 0, true, -1, false, &sc.div_factor) &&
             num_in(s, &c, 3, name, 0, true, -1, false, &sc.final_div_factor) &&
             num_in(s, &c, 4, name, 0, false, -1, false, &sc.warmup);
        break;
    default:
        break;
    }
    if (ok) m->train.sched = sc;
}

/* early_stop = patience(3, on=val_loss) */
static void read_early_stop(Sema *s, const Stmt *st, Module *m) {
    const char *name = callee_of(s, st, "patience(N, on=val_loss)");
    if (!name) return;
    if (strcmp(name, "patience")) {
        const char *names[] = {"patience"};
        unknown_choice(s, callee_loc(st->value), "early stopping rule", name, names, 1);
        return;
    }
    Call c;
    double n;
    const char *on;
    if (!sema_bind_call(s, name, "n, on=val_loss", st->value, true, &c)) return;
    if (!num_in(s, &c, 0, name, 1, false, -1, false, &n) || !str_of(s, &c, 1, name, &on)) return;
    if (n != (double)(int64_t)n) {
        sema_error(s, c.arg_loc[0], "patience: 'n' must be an integer, got %g", n);
        return;
    }
    /* loss, or a scalar metric of the model, optionally on the validation split */
    const char *base = strncmp(on, "val_", 4) ? on : on + 4;
    bool known = !strcmp(base, "loss");
    Func *ev = module_find_func(m, "evaluate");
    int ncands = 2;
    const char *cands[34] = {"val_loss", "loss"};
    for (int i = 0; ev && i < ev->nouts; i++)
        if (ev->outs[i].role == OUT_METRIC && ev->nodes[ev->outs[i].value].shape.rank == 0) {
            if (!strcmp(base, ev->outs[i].name)) known = true;
            if (ncands < 32) {
                cands[ncands++] = arena_printf(sema_arena(s), "val_%s", ev->outs[i].name);
                cands[ncands++] = ev->outs[i].name;
            }
        }
    if (!known && ev) {
        unknown_choice(s, c.arg_loc[1], "quantity to monitor", on, cands, ncands);
        return;
    }
    m->train.patience = (int64_t)n;
    m->train.early_stop_on = on;
}

static const TrainKey keys[] = {
    {"data", read_data},
    {"batch", read_batch},
    {"epochs", read_epochs},
    {"optimizer", read_optimizer},
    {"schedule", read_schedule},
    {"seed", read_seed},
    {"validation", read_validation},
    {"preprocess", read_preprocess},
    {"early_stop", read_early_stop},
    {"clip_norm", read_clip_norm},
    {"clip_value", read_clip_value},
    {"accumulate", read_accumulate},
};
enum { NKEYS = sizeof keys / sizeof keys[0] };

/* ---------------------------------------------------------------- the block */

void train_config_defaults(TrainConfig *t) {
    memset(t, 0, sizeof *t);
    t->batch = 64;
    t->epochs = 10;
    t->accumulate = 1;
    t->early_stop_on = "val_loss";
    t->opt = (OptimizerSpec){.kind = OPT_SGD, .lr = 0.01}; /* as optim.c without a train block */
    t->sched = (ScheduleSpec){.kind = SCHED_CONSTANT, .t_mult = 1};
}

void train_block(Sema *s, const Block *b, Module *m) {
    m->train.present = true;
    m->train.loc = b->name_loc;
    const Stmt *seen[NKEYS] = {0};
    for (int i = 0; i < b->nstmts; i++) {
        const Stmt *st = b->stmts[i];
        if (st->kind == S_ERROR) continue;
        if (st->kind != S_LET || !st->value) {
            sema_error(s, st->loc, "a train block holds only 'key = value' entries");
            continue;
        }
        int k;
        for (k = 0; k < NKEYS; k++)
            if (!strcmp(st->name, keys[k].name)) break;
        if (k == NKEYS) {
            const char *names[NKEYS];
            for (int j = 0; j < NKEYS; j++)
                names[j] = keys[j].name;
            const char *close = diag_closest(st->name, names, NKEYS);
            if (close)
                sema_error(s, st->name_loc, "unknown train setting '%s'; did you mean '%s'?",
                           st->name, close);
            else
                sema_error(s, st->name_loc, "unknown train setting '%s'", st->name);
            continue;
        }
        if (seen[k]) {
            sema_error(s, st->name_loc, "'%s' is set twice", st->name);
            sema_note(s, seen[k]->name_loc, "first set here");
            continue;
        }
        seen[k] = st;
        keys[k].read(s, st, m);
    }
}
