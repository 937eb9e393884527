/* test_plan.c — the memory planner (compiler/plan.c).
 *
 * Checks, on hand-built functions and on every function of every example model (at -O0 and
 * -O2, training functions included), with every allocation strategy:
 *   - every value that needs memory has a region covering its whole lifetime (from its node to
 *     the last read, recomputed here from the consumers), scratch covers its node;
 *   - no two regions in use at the same position of the schedule overlap, all lie in the
 *     arena, the discard area lies after it;
 *   - in-place reuse happens where expected (an elementwise node over its dead operand) and
 *     not where the operand is read later or at another element index;
 *   - the default planner is no worse than first fit (the planner it replaced) nor any other
 *     strategy on every example function, and smaller in total; best fit beats first fit
 *     where first fit splits a hole; the arena lies between the live peak and the unplanned
 *     total.
 * Synthetic region sets test the allocators alone (random lifetimes and sizes). It prints the
 * arena table of docs/passes.md. */
#include "check.h"
#include "nnc.h"

#include <glob.h>
#include <stdlib.h>
#include <string.h>

static const char *const strategy_names[] = {"default", "first-fit", "best-fit", "by-size", "by-lifetime"};
enum { NSTRATEGIES = PLAN_COUNT };

/* ---------------------------------------------------------------- invariants */

static bool lifetimes_meet(const PlanRegion *a, const PlanRegion *b) {
    return a->first <= b->last && b->first <= a->last;
}

static bool bytes_meet(const PlanRegion *a, const PlanRegion *b) {
    return a->offset < b->offset + b->bytes && b->offset < a->offset + a->bytes;
}

/* Regions live at the same time never overlap, and all lie in [0, arena). */
static int check_regions(const char *what, const PlanRegion *rg, int nr, int64_t arena) {
    int bad = 0;
    for (int i = 0; i < nr; i++) {
        if (rg[i].offset < 0 || rg[i].offset % PLAN_ALIGN || rg[i].offset + rg[i].bytes > arena) {
            fprintf(stderr, "%s: region %d at %lld (+%lld) outside the arena of %lld\n", what, i,
                    (long long)rg[i].offset, (long long)rg[i].bytes, (long long)arena);
            bad++;
        }
        for (int j = 0; j < i; j++)
            if (lifetimes_meet(&rg[i], &rg[j]) && bytes_meet(&rg[i], &rg[j])) {
                fprintf(stderr, "%s: regions %d [%d, %d] and %d [%d, %d] overlap in bytes\n", what,
                        i, rg[i].first, rg[i].last, j, rg[j].first, rg[j].last);
                bad++;
            }
    }
    return bad;
}

/* The region holding node v's memory, through aliases; NULL when it is not in work. */
static const PlanRegion *region_of(const Plan *p, Ref v) {
    while (p->nodes[v].storage == ST_ALIAS) v = p->nodes[v].alias_of;
    return p->nodes[v].storage == ST_WORK ? &p->regions[p->nodes[v].region] : NULL;
}

/* Position where consumer u reads its inputs: where it is computed, or for an alias (which
 * has no code of its own) wherever its own value is read. */
static int read_position(const Plan *p, Ref u) {
    const NodePlan *up = &p->nodes[u];
    if (up->storage == ST_ALIAS) return up->read_pos > u ? up->read_pos : u;
    return up->eval_pos;
}

static int check_plan(const char *what, const Func *f, const Plan *p) {
    int bad = check_regions(what, p->regions, p->nregions, p->arena_bytes);
    int64_t batch = f->mod->max_batch;
    for (Ref v = 0; v < f->nnodes; v++) {
        const NodePlan *np = &p->nodes[v];
        const Node *nd = &f->nodes[v];
        if (np->storage == ST_WORK) {
            const PlanRegion *r = &p->regions[np->region];
            if (np->region < 0 || np->offset != r->offset || r->bytes < node_bytes(nd, batch) ||
                r->first > v || r->last < v) {
                fprintf(stderr, "%s: %%%d has no proper region\n", what, v);
                bad++;
            }
        } else if (np->region >= 0) {
            fprintf(stderr, "%s: %%%d is not in work but has a region\n", what, v);
            bad++;
        }
        if (np->scratch_region >= 0) {
            const PlanRegion *r = &p->regions[np->scratch_region];
            if (!r->scratch || r->bytes < np->scratch || r->first > v || r->last < v ||
                np->scratch_offset != r->offset) {
                fprintf(stderr, "%s: %%%d scratch region is wrong\n", what, v);
                bad++;
            }
        } else if (np->scratch && np->storage == ST_WORK) {
            fprintf(stderr, "%s: %%%d needs scratch but has none\n", what, v);
            bad++;
        }
        if (np->inplace_of != REF_NONE) {
            const NodePlan *yp = &p->nodes[np->inplace_of];
            if (!is_elementwise(nd->op) || yp->region != np->region || yp->read_pos != v ||
                node_bytes(&f->nodes[np->inplace_of], batch) != node_bytes(nd, batch)) {
                fprintf(stderr, "%s: %%%d overwrites %%%d wrongly\n", what, v, np->inplace_of);
                bad++;
            }
        }
        /* every read of a value in work falls within its region's lifetime */
        if (np->storage == ST_DEAD) continue;
        int at = read_position(p, v);
        for (int i = 0; i < nd->nin; i++) {
            const PlanRegion *r = region_of(p, nd->in[i]);
            if (r && r->last < at) {
                fprintf(stderr, "%s: %%%d reads %%%d at %d, after its region ends at %d\n", what,
                        v, nd->in[i], at, r->last);
                bad++;
            }
        }
    }
    for (int o = 0; o < f->nouts; o++) {
        const PlanRegion *r = region_of(p, f->outs[o].value);
        if (r && r->last != f->nnodes) {
            fprintf(stderr, "%s: output %s is freed before the end\n", what, f->outs[o].name);
            bad++;
        }
    }
    /* the discard area: after the arena, one disjoint piece per dropped output */
    int64_t end = p->arena_bytes;
    for (int o = 0; o < f->nouts; o++) {
        if (p->discard_offset[o] < 0) continue;
        if (p->discard_offset[o] < end) {
            fprintf(stderr, "%s: discard of output %d overlaps\n", what, o);
            bad++;
        }
        end = p->discard_offset[o] + node_bytes(&f->nodes[f->outs[o].value], batch);
    }
    if (end > p->work_bytes) bad++;
    if (p->arena_bytes < p->live_peak_bytes || p->arena_bytes > p->unplanned_bytes) {
        fprintf(stderr, "%s: arena %lld outside [live peak %lld, unplanned %lld]\n", what,
                (long long)p->arena_bytes, (long long)p->live_peak_bytes,
                (long long)p->unplanned_bytes);
        bad++;
    }
    return bad;
}

/* Plans f with every strategy, checks each plan; arena sizes in arena[strategy]. */
static void plan_all(const char *what, const Func *f, int64_t *arena) {
    for (int s = 0; s < NSTRATEGIES; s++) {
        Plan p;
        plan_func_with(f, (PlanStrategy)s, &p);
        char label[160];
        snprintf(label, sizeof label, "%s (%s)", what, strategy_names[s]);
        int bad = check_plan(label, f, &p);
        CHECK(bad == 0);
        arena[s] = p.arena_bytes;
        plan_free(&p);
    }
}

/* ---------------------------------------------------------------- hand-built functions */

typedef struct Fixture {
    Arena arena;
    Module *m;
    Func *f;
    int w;      /* a [256, 256] parameter */
    Ref x;      /* input [batch, 256] */
} Fixture;

static void fixture(Fixture *t) {
    memset(t, 0, sizeof *t);
    t->m = module_new(&t->arena, "p");
    t->m->max_batch = 64;
    t->f = module_add_func(t->m, "infer");
    int64_t d[2] = {1, 256}, wd[2] = {256, 256};
    func_add_arg(t->f, "x", ARG_INPUT, DT_F32, shape_make(2, d, 1), (SrcLoc){0});
    t->w = module_add_tensor(t->m, "w", TK_PARAM, DT_F32, shape_make(2, wd, 0),
                             (InitSpec){INIT_ONES, 0, 0, 0}, (SrcLoc){0});
    t->x = ir_input(t->f, 0);
}

static Ref mm(Fixture *t, Ref a) { return ir_matmul(t->f, a, ir_tensor(t->f, t->w), false, false); }

static const int64_t ONE = 64 * 256 * 4; /* one [64, 256] f32 buffer */

/* A chain of matmul + relu: each relu overwrites its matmul's result, which dies there, and
 * two buffers alternate. */
static void test_chain(void) {
    Fixture t;
    fixture(&t);
    Ref h = t.x, mms[8], relus[8];
    for (int i = 0; i < 8; i++) {
        mms[i] = mm(&t, h);
        h = relus[i] = ir_unary(t.f, OP_relu, mms[i]);
    }
    func_add_out(t.f, "y", OUT_OUTPUT, mm(&t, h));
    module_layout(t.m);
    int64_t arena[NSTRATEGIES];
    plan_all("chain", t.f, arena);
    Plan p;
    plan_func(t.f, &p);
    for (int i = 0; i < 8; i++) {
        CHECK(p.nodes[relus[i]].inplace_of == mms[i]);
        CHECK(p.nodes[relus[i]].offset == p.nodes[mms[i]].offset);
    }
    CHECK(p.unplanned_bytes == 16 * ONE); /* 8 matmuls and 8 relus, each its own buffer */
    CHECK(p.live_peak_bytes == 2 * ONE);
    CHECK(p.arena_bytes == 2 * ONE);
    CHECK(p.work_bytes == llvm_work_bytes(t.f));
    plan_free(&p);
    arena_free(&t.arena);
}

/* No in-place reuse when the operand is read after the node, or read at another element
 * index (through a transpose); g = h + h may overwrite h. */
static void test_inplace_rules(void) {
    Fixture t;
    fixture(&t);
    Ref h = mm(&t, t.x);
    Ref g = ir_unary(t.f, OP_relu, h); /* h is read again below */
    func_add_out(t.f, "a", OUT_OUTPUT, mm(&t, g));
    func_add_out(t.f, "b", OUT_OUTPUT, mm(&t, h));
    module_layout(t.m);
    Plan p;
    plan_func(t.f, &p);
    CHECK(p.nodes[g].storage == ST_WORK && p.nodes[g].inplace_of == REF_NONE);
    CHECK(p.nodes[g].offset != p.nodes[h].offset);
    CHECK(check_plan("operand read later", t.f, &p) == 0);
    plan_free(&p);
    arena_free(&t.arena);

    /* a square [256, 256] value plus its own transpose: element (i, j) reads (j, i) */
    fixture(&t);
    Ref sq = ir_matmul(t.f, ir_tensor(t.f, t.w), ir_tensor(t.f, t.w), false, false);
    Ref perm_sum = ir_binary(t.f, OP_add, sq, ir_transpose(t.f, sq, (int[]){1, 0}));
    func_add_out(t.f, "y", OUT_OUTPUT, ir_matmul(t.f, t.x, perm_sum, false, false));
    module_layout(t.m);
    plan_func(t.f, &p);
    CHECK(p.nodes[perm_sum].storage == ST_WORK && p.nodes[perm_sum].inplace_of == REF_NONE);
    CHECK(check_plan("transposed operand", t.f, &p) == 0);
    plan_free(&p);
    arena_free(&t.arena);

    fixture(&t);
    h = mm(&t, t.x);
    g = ir_binary(t.f, OP_add, h, h);
    func_add_out(t.f, "a", OUT_OUTPUT, mm(&t, g));
    func_add_out(t.f, "b", OUT_OUTPUT, ir_matmul(t.f, g, ir_tensor(t.f, t.w), true, false));
    module_layout(t.m);
    plan_func(t.f, &p);
    CHECK(p.nodes[g].inplace_of == h);
    CHECK(p.arena_bytes == ONE);
    CHECK(check_plan("h + h", t.f, &p) == 0);
    plan_free(&p);
    arena_free(&t.arena);
}

/* A convolution's im2col scratch is live at its node only: disjoint from the input and the
 * output, free again for the next layer. */
static void test_scratch(void) {
    Arena arena = {0};
    Module *m = module_new(&arena, "c");
    m->max_batch = 8;
    Func *f = module_add_func(m, "infer");
    int64_t xd[4] = {1, 3, 16, 16}, wd[4] = {8, 3, 3, 3}, w2d[4] = {8, 8, 3, 3};
    func_add_arg(f, "x", ARG_INPUT, DT_F32, shape_make(4, xd, 1), (SrcLoc){0});
    int w = module_add_tensor(m, "w", TK_PARAM, DT_F32, shape_make(4, wd, 0),
                              (InitSpec){INIT_ONES, 0, 0, 0}, (SrcLoc){0});
    int w2 = module_add_tensor(m, "w2", TK_PARAM, DT_F32, shape_make(4, w2d, 0),
                               (InitSpec){INIT_ONES, 0, 0, 0}, (SrcLoc){0});
    Attr a = {0};
    for (int i = 0; i < 4; i++) a.start[i] = 1; /* pad 1 on every side */
    a.step[0] = a.step[1] = 1, a.perm[0] = a.perm[1] = 1, a.perm[2] = 1;
    int64_t od[4] = {1, 8, 16, 16};
    Shape os = shape_make(4, od, 1);
    Ref in2[2] = {ir_input(f, 0), ir_tensor(f, w)};
    Ref c1 = ir_node(f, OP_conv2d, DT_F32, os, 2, in2, &a);
    Ref r1 = ir_unary(f, OP_relu, c1);
    Ref in3[2] = {r1, ir_tensor(f, w2)};
    Ref c2 = ir_node(f, OP_conv2d, DT_F32, os, 2, in3, &a);
    func_add_out(f, "y", OUT_OUTPUT, ir_unary(f, OP_tanh, c2));
    module_layout(m);
    CHECK(ir_verify(f, stderr) == 0);
    Plan p;
    plan_func(f, &p);
    CHECK(check_plan("conv scratch", f, &p) == 0);
    const NodePlan *n1 = &p.nodes[c1], *n2 = &p.nodes[c2];
    CHECK(n1->scratch == 3 * 9 * 16 * 16 * 4 && n2->scratch == 8 * 9 * 16 * 16 * 4);
    CHECK(n1->scratch_region >= 0 && n2->scratch_region >= 0);
    CHECK(p.regions[n1->scratch_region].first == c1 && p.regions[n1->scratch_region].last == c1);
    /* r1 overwrites c1; c2's scratch and c2 itself must not overlap r1, which c2 reads */
    CHECK(p.nodes[r1].inplace_of == c1);
    const PlanRegion *rr = &p.regions[p.nodes[r1].region], *s2 = &p.regions[n2->scratch_region];
    CHECK(!bytes_meet(rr, s2) && !bytes_meet(rr, &p.regions[n2->region]));
    /* the first conv's scratch is reused later: the arena is below the unplanned total */
    CHECK(p.arena_bytes < p.unplanned_bytes);
    plan_free(&p);
    arena_free(&arena);
}

/* ---------------------------------------------------------------- allocators alone */

static uint64_t rng = 0x243f6a8885a308d3ull;
static uint64_t next_random(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return rng;
}

/* Random lifetimes and sizes: every strategy gives a valid layout within [peak, sum]. */
static void test_random_regions(void) {
    enum { N = 300, POS = 200 };
    static PlanRegion rg[N];
    int64_t totals[NSTRATEGIES] = {0};
    for (int round = 0; round < 50; round++) {
        for (int i = 0; i < N; i++) {
            int a = (int)(next_random() % POS), b = (int)(next_random() % POS);
            int len = (int)(next_random() % 4) == 0 ? POS : 12; /* a few long-lived ones */
            if (b < a) { int t = a; a = b; b = t; }
            if (b - a > len) b = a + len;
            int64_t units = 1 + (int64_t)(next_random() % (next_random() % 3 ? 16 : 400));
            rg[i] = (PlanRegion){.offset = -1, .bytes = units * PLAN_ALIGN, .first = a, .last = b};
        }
        int64_t peak = 0, sum = 0;
        for (int pos = 0; pos < POS; pos++) {
            int64_t live = 0;
            for (int i = 0; i < N; i++) live += rg[i].first <= pos && pos <= rg[i].last ? rg[i].bytes : 0;
            if (live > peak) peak = live;
        }
        for (int i = 0; i < N; i++) sum += rg[i].bytes;
        for (int s = 0; s < NSTRATEGIES; s++) {
            for (int i = 0; i < N; i++) rg[i].offset = -1;
            int64_t arena = plan_assign_offsets(rg, N, POS, (PlanStrategy)s);
            char what[64];
            snprintf(what, sizeof what, "random round %d (%s)", round, strategy_names[s]);
            CHECK(check_regions(what, rg, N, arena) == 0);
            CHECK(arena >= peak && arena <= sum);
            totals[s] += arena;
        }
    }
    printf("random regions, total arena over 50 rounds: default %lld, first-fit %lld, best-fit "
           "%lld, by-size %lld\n",
           (long long)totals[0], (long long)totals[1], (long long)totals[2], (long long)totals[3]);
    CHECK(totals[PLAN_DEFAULT] <= totals[PLAN_BEST_FIT] && totals[PLAN_DEFAULT] <= totals[PLAN_BY_SIZE]);
}

/* A schedule where first fit splits the one hole a later region needs: A (4 units) and B
 * (2 units) die, leaving holes of 4 and 2; C (2 units) then goes into the first hole under
 * first fit, and D (4 units) no longer fits anywhere but the top. Best fit puts C in the
 * 2-unit hole and D in the 4-unit one. */
static void test_best_fit_beats_first_fit(void) {
    const int64_t u = PLAN_ALIGN;
    PlanRegion base[] = {
        {.bytes = 4 * u, .first = 0, .last = 1},  /* A at 0 */
        {.bytes = 1 * u, .first = 0, .last = 9},  /* a separator at 4u, alive throughout */
        {.bytes = 2 * u, .first = 0, .last = 1},  /* B at 5u */
        {.bytes = 1 * u, .first = 0, .last = 9},  /* the top at 7u, alive throughout */
        {.bytes = 2 * u, .first = 2, .last = 9},  /* C */
        {.bytes = 4 * u, .first = 3, .last = 9},  /* D */
    };
    enum { NB = sizeof base / sizeof base[0] };
    PlanRegion rg[NB];
    int64_t arena[NSTRATEGIES];
    for (int s = 0; s < NSTRATEGIES; s++) {
        memcpy(rg, base, sizeof rg);
        arena[s] = plan_assign_offsets(rg, NB, 10, (PlanStrategy)s);
        CHECK(check_regions(strategy_names[s], rg, NB, arena[s]) == 0);
        if (s == PLAN_BEST_FIT) CHECK(rg[4].offset == 5 * u && rg[5].offset == 0);
        if (s == PLAN_FIRST_FIT) CHECK(rg[4].offset == 0 && rg[5].offset == 8 * u);
    }
    CHECK(arena[PLAN_FIRST_FIT] == 12 * u);
    CHECK(arena[PLAN_BEST_FIT] == 8 * u);
    CHECK(arena[PLAN_DEFAULT] <= arena[PLAN_BEST_FIT]);
}

/* ---------------------------------------------------------------- examples */

static void test_examples(void) {
    glob_t g;
    if (glob("examples/*.nn", 0, NULL, &g) || g.gl_pathc == 0) {
        fprintf(stderr, "no examples/*.nn (run from the repository root)\n");
        check_failures++;
        return;
    }
    int64_t totals[NSTRATEGIES] = {0};
    printf("%-22s %-11s %3s %7s %11s %11s %11s %11s %11s %11s %11s\n", "model", "function", "-O",
           "buffers", "unplanned", "first-fit", "best-fit", "by-size", "by-lifetime", "default",
           "live peak");
    for (int level = 0; level <= 2; level += 2)
        for (size_t i = 0; i < g.gl_pathc; i++) {
            DriverOptions o = {.train_functions = true, .verify = true, .set_opt = true,
                               .opt_level = level};
            DriverResult r;
            if (driver_load(g.gl_pathv[i], &o, &r)) {
                fprintf(stderr, "%s: does not load\n", g.gl_pathv[i]);
                check_failures++;
                driver_free(&r);
                continue;
            }
            for (int mi = 0; mi < r.nmodules; mi++)
                for (int fi = 0; fi < r.modules[mi]->nfuncs; fi++) {
                    const Func *f = r.modules[mi]->funcs[fi];
                    char what[160];
                    snprintf(what, sizeof what, "%s %s -O%d", r.modules[mi]->name, f->name, level);
                    int64_t arena[NSTRATEGIES];
                    plan_all(what, f, arena);
                    /* first fit is the planner this one replaced: never worse than it */
                    CHECK(arena[PLAN_DEFAULT] <= arena[PLAN_FIRST_FIT]);
                    for (int s = 0; s < NSTRATEGIES; s++)
                        if (s != PLAN_FIRST_FIT) CHECK(arena[PLAN_DEFAULT] <= arena[s]);
                    for (int s = 0; s < NSTRATEGIES; s++) totals[s] += arena[s];
                    Plan p;
                    plan_func(f, &p);
                    CHECK(p.work_bytes == llvm_work_bytes(f));
                    printf("%-22s %-11s %3d %7d %11lld %11lld %11lld %11lld %11lld %11lld %11lld\n",
                           r.modules[mi]->name, f->name, level, p.nregions,
                           (long long)p.unplanned_bytes, (long long)arena[PLAN_FIRST_FIT],
                           (long long)arena[PLAN_BEST_FIT], (long long)arena[PLAN_BY_SIZE],
                           (long long)arena[PLAN_BY_LIFETIME], (long long)arena[PLAN_DEFAULT],
                           (long long)p.live_peak_bytes);
                    plan_free(&p);
                }
            driver_free(&r);
        }
    printf("all example functions: first-fit %lld, best-fit %lld, by-size %lld, by-lifetime "
           "%lld, default %lld\n",
           (long long)totals[PLAN_FIRST_FIT], (long long)totals[PLAN_BEST_FIT],
           (long long)totals[PLAN_BY_SIZE], (long long)totals[PLAN_BY_LIFETIME],
           (long long)totals[PLAN_DEFAULT]);
    CHECK(totals[PLAN_DEFAULT] < totals[PLAN_FIRST_FIT]);
    globfree(&g);
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    test_chain();
    test_inplace_rules();
    test_scratch();
    test_random_regions();
    test_best_fit_beats_first_fit();
    test_examples();
    return check_done();
}
