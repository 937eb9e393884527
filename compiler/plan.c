/* plan.c — the memory planner: where every value of a function lives, and the layout of the
 * work buffer (the arena) one call uses. Code generation (llvm.c) consumes the plan; `nnc
 * summary` prints the work bytes before planning (no reuse) and after.
 *
 * require: topological order (inputs refer to earlier nodes); module_layout done (tensor ids
 * valid); f->mod->max_batch set (regions are sized at the largest batch). No LLVM here.
 *
 * Algorithm (docs/passes.md, "The memory planner"):
 *   1. Storage classes and liveness, one backward walk over the schedule (the node order):
 *      every node gets a class (Storage) and the position where it is computed (eval_pos) and
 *      where its memory is last read (read_pos). Elementwise nodes with one nearby elementwise
 *      consumer are fused into it (recomputed in its loop); views are strided reads; outputs,
 *      arguments, module tensors and reshapes need no region of their own.
 *   2. Stores: a store computes its value directly into the state when that is safe (one store
 *      of the tensor, computed after the loss check, old value read by nobody later), else it
 *      is deferred to the end; outputs computed into the caller's buffers.
 *   3. Regions, one forward walk: each remaining work value gets a region live from its node
 *      to its read_pos; an elementwise node whose operand dies at it, read only at the node's
 *      own element index and of the same size, takes over the operand's region (in place);
 *      kernels needing scratch (im2col columns, double accumulators) get a region live at
 *      their node only.
 *   4. Offsets: regions whose lifetimes intersect never overlap. Online allocators walk the
 *      schedule over a free list (blocks coalesced on free): first fit, best fit (smallest
 *      block that fits, lowest on ties). Offline ones know every lifetime first and place
 *      regions in an order, each in the smallest gap left free for its whole lifetime by the
 *      regions placed before: largest first (three tie orders), or longest-lived first.
 *      PLAN_DEFAULT runs best fit and the offline orders and keeps the smallest arena,
 *      stopping as soon as one reaches the live peak (the most bytes in use at one position:
 *      a lower bound, so that plan is optimal).
 *   5. Outputs the public C entry drops (train_step's metrics) get a discard area after the
 *      arena: work_bytes = arena + discard area, the header's WORK_BYTES at the maximum.
 */
#include "nnc.h"
#include "nnrt.h"

#include <stdlib.h>
#include <string.h>

/* An elementwise value is fused into its consumer only when the consumer comes within this
 * many nodes: fusing moves the reads of its inputs to the consumer, and across a long
 * stretch of the schedule that keeps them alive (31 fused gradient adds of an LSTM kept
 * 62 MB of inputs alive at once). */
enum { FUSE_WINDOW = 16 };

static void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size);
    if (!p) {
        fprintf(stderr, "nnc: out of memory\n");
        abort();
    }
    return p;
}

static int64_t align_up(int64_t x, int64_t a) { return (x + a - 1) / a * a; }
static int64_t region_size(int64_t bytes) { return align_up(bytes ? bytes : 1, PLAN_ALIGN); }
static int64_t at_least_1(int64_t v) { return v > 0 ? v : 1; }

static bool is_splat(const Node *n) { return (n->op == OP_const && !n->attr.data) || n->op == OP_batch_size; }

bool is_view(Op op) { return op == OP_broadcast || op == OP_transpose || op == OP_slice; }
bool is_elementwise(Op op) { return (op_info[op].flags & OPF_ELEM) && op != OP_stop_gradient; }

int64_t node_bytes(const Node *n, int64_t batch) {
    return shape_numel(&n->shape, batch) * dtype_size(n->dtype);
}

int reduce_inner_start(const Shape *in, uint32_t axes) {
    int k = in->rank;
    while (k > 0 && (axes >> (k - 1) & 1)) k--;
    return k;
}

/* ---- spatial ops (NCHW): the geometry of a conv2d-like node */

ConvGeom conv_geom(const Func *f, const Node *n) {
    ConvGeom g = {0};
    const Shape *in = NULL, *out = NULL, *w = NULL;
    switch (n->op) {
    case OP_conv2d: in = &f->nodes[n->in[0]].shape, w = &f->nodes[n->in[1]].shape, out = &n->shape; break;
    case OP_conv2d_grad_input: in = &n->shape, w = &f->nodes[n->in[1]].shape, out = &f->nodes[n->in[0]].shape; break;
    case OP_conv2d_grad_weight: in = &f->nodes[n->in[0]].shape, w = &n->shape, out = &f->nodes[n->in[1]].shape; break;
    default: in = &f->nodes[n->in[0]].shape, out = n->op == OP_maxpool2d_grad ? &f->nodes[n->in[1]].shape : &n->shape; break;
    }
    g.C = in->dim[1], g.H = in->dim[2], g.W = in->dim[3];
    g.O = out->dim[1], g.Ho = out->dim[2], g.Wo = out->dim[3];
    g.sh = at_least_1(n->attr.step[0]), g.sw = at_least_1(n->attr.step[1]);
    g.pt = n->attr.start[0], g.pl = n->attr.start[1];
    if (w) {
        g.KH = w->dim[2], g.KW = w->dim[3];
        g.dh = at_least_1(n->attr.perm[0]), g.dw = at_least_1(n->attr.perm[1]);
        g.G = at_least_1(n->attr.perm[2]);
    } else {
        g.KH = at_least_1(n->attr.perm[0]), g.KW = at_least_1(n->attr.perm[1]);
        g.dh = g.dw = g.G = 1;
    }
    g.Cg = g.C / g.G, g.Og = g.O / g.G;
    return g;
}

bool conv_is_pointwise(const ConvGeom *g) {
    return g->KH == 1 && g->KW == 1 && g->sh == 1 && g->sw == 1 && g->pt == 0 && g->pl == 0 &&
           g->Ho == g->H && g->Wo == g->W;
}

bool conv_is_direct(const Func *f, const Node *n, const ConvGeom *g) {
    bool inference = !strcmp(f->name, "infer") || !strcmp(f->name, "evaluate");
    return inference && n->op == OP_conv2d && n->dtype == DT_F32 && g->sh == 1 && g->sw == 1 && g->dh == 1 && g->dw == 1 &&
           g->G == 1 && g->O >= 16 && !conv_is_pointwise(g);
}

int64_t lstm_scratch_bytes(const Node *n, int64_t batch) {
    int64_t B = shape_dim(&n->shape, 0, batch);
    switch (n->op) {
    case OP_lstm_seq: return B * 4 * (n->shape.dim[2] / 6) * 4;
    case OP_gru_seq: return B * 3 * (n->shape.dim[2] / 5) * 4;
    case OP_rnn_seq: return 0; /* the product goes straight into the step's row */
    case OP_rnn_seq_grad: return B * n->shape.dim[2] * 4;
    default: return 2 * B * (n->shape.dim[2] / 4) * 4; /* lstm_seq_grad, gru_seq_grad */
    }
}

static bool is_conv(Op op) { return op == OP_conv2d || op == OP_conv2d_grad_input || op == OP_conv2d_grad_weight; }

/* Reductions over an axis before the trailing reduced block accumulate into scratch (one
 * double per output value); convolutions unfold one image (one group) into columns
 * [Cg*KH*KW, Ho*Wo] (none for a pointwise convolution, which reads its input directly;
 * nnrt_conv2d's own layout for a direct one, conv_is_direct);
 * lstm_seq keeps one step's recurrent product h_{t-1} w_hh^T [B, 4H], lstm_seq_grad one
 * step's dG_{t+1} w_hh [B, H] and the carried dc f [B, H] (lstm_scratch_bytes); gru_seq and
 * gru_seq_grad likewise ([B, 3H]; [B, H] and the carried dh z [B, H]); rnn_seq_grad one
 * step's dP_{t+1} w_hh [B, H]. */
static int64_t node_scratch_bytes(const Func *f, const Node *n, int64_t batch) {
    if (n->op == OP_lstm_seq || n->op == OP_lstm_seq_grad || n->op == OP_gru_seq || n->op == OP_gru_seq_grad ||
        n->op == OP_rnn_seq || n->op == OP_rnn_seq_grad)
        return lstm_scratch_bytes(n, batch);
    if (is_conv(n->op)) {
        ConvGeom g = conv_geom(f, n);
        if (conv_is_direct(f, n, &g))
            return nnrt_conv2d_scratch((int)g.C, (int)g.O, (int)g.KH, (int)g.KW, (int)g.Ho, (int)g.Wo);
        return conv_is_pointwise(&g) ? 0 : g.Cg * g.KH * g.KW * g.Ho * g.Wo * 4;
    }
    if (n->op != OP_sum && n->op != OP_mean && n->op != OP_max) return 0;
    const Shape *in = &f->nodes[n->in[0]].shape;
    int k = reduce_inner_start(in, n->attr.axes);
    if (!(n->attr.axes & ((1u << k) - 1))) return 0;
    return shape_numel(&n->shape, batch) * 8;
}

/* ================================================================ storage classes, stores */

static Ref alias_root(const Plan *p, Ref r) {
    while (p->nodes[r].storage == ST_ALIAS) r = p->nodes[r].alias_of;
    return r;
}

/* Whether the read of the value by consumer u happens at the same element index as the
 * write of x: u is x, or an elementwise chain fused into x's loop leads from u to x. */
static bool same_index_path(const Func *f, const Plan *p, Ref u, Ref x) {
    for (;;) {
        if (!is_elementwise(f->nodes[u].op)) return false;
        if (u == x) return true;
        if (p->nodes[u].storage != ST_INLINE || p->nodes[u].uses != 1) return false;
        u = p->nodes[u].user;
        if (u == REF_NONE) return false;
    }
}

/* Whether every read of the entry value of tensor t through node r (a tensor read or an alias
 * of one) happens before x is computed, or at x's own element index inside x's loop. */
static bool reads_done_before(const Func *f, const Plan *p, Ref r, Ref x, bool direct) {
    int px = p->nodes[x].eval_pos;
    for (int o = 0; o < f->nouts; o++)
        if (f->outs[o].value == r) return false;  /* copied out at the end */
    for (Ref u = r + 1; u < f->nnodes; u++) {
        const Node *un = &f->nodes[u];
        const NodePlan *up = &p->nodes[u];
        if (up->storage == ST_DEAD) continue;
        bool uses_r = false;
        for (int i = 0; i < un->nin; i++) uses_r |= un->in[i] == r;
        if (up->storage == ST_ALIAS && up->alias_of == r) uses_r = true;
        if (!uses_r) continue;
        if (un->op == OP_store) return false;  /* conservatively: read at the commit */
        if (up->storage == ST_ALIAS) {
            if (!reads_done_before(f, p, u, x, false)) return false;
            continue;
        }
        if (up->eval_pos < px) continue;
        if (up->eval_pos == px && direct && same_index_path(f, p, u, x)) continue;
        return false;
    }
    return true;
}

/* Store s writes x into tensor t: may x be computed directly into t's state? */
static bool can_store_in_place(const Func *f, const Plan *p, Ref s) {
    const Node *sn = &f->nodes[s];
    int t = sn->attr.tensor;
    Ref x = sn->in[0];
    const NodePlan *xp = &p->nodes[x];
    if (xp->storage != ST_WORK || xp->scratch) return false;
    if (f->nodes[x].op == OP_store) return false;
    if (p->check_after != REF_NONE && xp->eval_pos <= p->check_after) return false;
    for (Ref r = 0; r < f->nnodes; r++) {
        const Node *rn = &f->nodes[r];
        if (r != s && rn->op == OP_store && rn->attr.tensor == t) return false;  /* one store */
        if (p->nodes[r].storage == ST_DEAD) continue;
        if (rn->op == OP_rand_uniform && rn->attr.tensor == t && r < s && r >= xp->eval_pos)
            return false;
        if (rn->op == OP_tensor && rn->attr.tensor == t && p->nodes[r].storage == ST_STATE &&
            !reads_done_before(f, p, r, x, true))
            return false;
    }
    return true;
}

/* A dead operand whose region elementwise node x can write into: a materialized value of x's
 * size whose last read is x's loop, read there only at x's own element index (a direct
 * operand of x or of elementwise nodes fused into x), not already taken over by another
 * node. REF_NONE when there is none. */
static Ref inplace_operand(const Func *f, const Plan *p, Ref x) {
    if (!is_elementwise(f->nodes[x].op) || p->nodes[x].storage != ST_WORK) return REF_NONE;
    int64_t bytes = node_bytes(&f->nodes[x], f->mod->max_batch);
    /* the nodes fused into x lie shortly before it (FUSE_WINDOW per level); a donor missed
       beyond that only costs memory */
    for (Ref u = x; u >= 0 && u >= x - 8 * FUSE_WINDOW; u--) {
        if (p->nodes[u].eval_pos != x || (u != x && p->nodes[u].storage != ST_INLINE)) continue;
        if (!is_elementwise(f->nodes[u].op) || !same_index_path(f, p, u, x)) continue;
        for (int i = 0; i < f->nodes[u].nin; i++) {
            Ref y = f->nodes[u].in[i];
            const NodePlan *yp = &p->nodes[y];
            if (yp->storage != ST_WORK || yp->read_pos != x || yp->donated ||
                node_bytes(&f->nodes[y], f->mod->max_batch) != bytes)
                continue;
            /* every read of y at x must be at x's index */
            bool ok = true;
            for (Ref w = y + 1; w <= x && ok; w++) {
                const Node *wn = &f->nodes[w];
                const NodePlan *wp = &p->nodes[w];
                bool reads = false;
                for (int j = 0; j < wn->nin; j++) reads |= wn->in[j] == y;
                if (!reads || wp->storage == ST_DEAD) continue;
                if (wp->storage == ST_ALIAS) ok = wp->read_pos < x;
                else if (wp->eval_pos == x) ok = is_elementwise(wn->op) && same_index_path(f, p, w, x);
            }
            if (ok) return y;
        }
    }
    return REF_NONE;
}

bool func_has_stores(const Func *f) {
    for (int i = 0; i < f->nnodes; i++)
        if (f->nodes[i].op == OP_store) return true;
    return false;
}

/* Steps 1-2: storage classes, liveness, stores and outputs. */
static void plan_storage(const Func *f, Plan *p) {
    int n = f->nnodes;
    for (Ref v = 0; v < n; v++) {
        p->nodes[v].user = REF_NONE;
        p->nodes[v].alias_of = REF_NONE;
        p->nodes[v].out = -1;
        p->nodes[v].tensor = -1;
        p->nodes[v].read_pos = -1;
        p->nodes[v].region = -1;
        p->nodes[v].scratch_region = -1;
        p->nodes[v].inplace_of = REF_NONE;
    }
    /* tensor reads after a store see the stored value */
    int nt = f->mod->ntensors;
    Ref *last_store = xcalloc((size_t)nt + 1, sizeof *last_store);
    for (int t = 0; t < nt; t++) last_store[t] = REF_NONE;
    for (Ref v = 0; v < n; v++) {
        const Node *nd = &f->nodes[v];
        if (nd->op == OP_tensor && last_store[nd->attr.tensor] != REF_NONE)
            p->nodes[v].alias_of = last_store[nd->attr.tensor];
        if (nd->op == OP_store) last_store[nd->attr.tensor] = v;
        if (nd->op == OP_rand_uniform) p->needs_seed = true;
    }
    free(last_store);

    for (int o = 0; o < f->nouts; o++) {
        NodePlan *np = &p->nodes[f->outs[o].value];
        np->uses++;
        np->needs_contig = true;
        np->read_pos = n;
        if (f->outs[o].role == OUT_LOSS) p->loss_out = o;
    }

    /* Pass 1, consumers before producers: liveness, storage class, evaluation positions. */
    for (Ref v = n - 1; v >= 0; v--) {
        const Node *nd = &f->nodes[v];
        NodePlan *np = &p->nodes[v];
        Op op = nd->op;
        if (op != OP_store && np->uses == 0) {
            np->storage = ST_DEAD;
            continue;
        }
        if (op == OP_input) np->storage = ST_ARG;
        else if (op == OP_tensor) np->storage = np->alias_of != REF_NONE ? ST_ALIAS : ST_STATE;
        else if (op == OP_const && nd->attr.data) np->storage = ST_CONST;
        else if (op == OP_const || op == OP_batch_size || is_view(op))
            np->storage = np->needs_contig ? ST_WORK : ST_INLINE;
        else if (op == OP_reshape || op == OP_stop_gradient || op == OP_store) {
            np->storage = ST_ALIAS;
            np->alias_of = nd->in[0];
        } else if (is_elementwise(op)) {
            bool fuse = !np->needs_contig && np->uses == 1 && np->user != REF_NONE &&
                        is_elementwise(f->nodes[np->user].op) && np->user - v <= FUSE_WINDOW;
            np->storage = fuse ? ST_INLINE : ST_WORK;
        } else {
            np->storage = ST_WORK;
        }
        np->eval_pos = np->storage == ST_INLINE ? np->read_pos : v;
        if (np->storage == ST_WORK) np->scratch = node_scratch_bytes(f, nd, f->mod->max_batch);
        /* this node reads its inputs (and its alias target) at read_pos if it only aliases
           them, else where it is evaluated */
        int at = np->storage == ST_ALIAS ? (np->read_pos > v ? np->read_pos : v) : np->eval_pos;
        bool contig = !(is_elementwise(op) || is_view(op));
        bool splat_ok = op == OP_concat; /* concat fills constant pieces without memory */
        Ref targets[IR_MAX_INPUTS + 1];
        int nt2 = 0;
        for (int i = 0; i < nd->nin; i++) targets[nt2++] = nd->in[i];
        if (op == OP_tensor && np->alias_of != REF_NONE) targets[nt2++] = np->alias_of;
        for (int i = 0; i < nt2; i++) {
            NodePlan *xp = &p->nodes[targets[i]];
            xp->uses++;
            xp->user = xp->uses == 1 ? v : REF_NONE;
            if (contig && !(splat_ok && is_splat(&f->nodes[targets[i]]))) xp->needs_contig = true;
            if (at > xp->read_pos) xp->read_pos = at;
        }
    }
    /* a node used twice by the same consumer has no single user */
    for (Ref v = 0; v < n; v++) {
        const Node *nd = &f->nodes[v];
        for (int i = 0; i < nd->nin; i++)
            for (int j = 0; j < i; j++)
                if (nd->in[i] == nd->in[j]) p->nodes[nd->in[i]].user = REF_NONE;
    }

    /* The loss check guards the state: only in functions that write it. */
    if (p->loss_out >= 0 && func_has_stores(f)) p->check_after = f->outs[p->loss_out].value;

    /* Pass 2: stores, in place when safe, else deferred to the end. */
    for (Ref s = 0; s < n; s++) {
        const Node *sn = &f->nodes[s];
        if (sn->op != OP_store) continue;
        NodePlan *sp = &p->nodes[s];
        Ref x = sn->in[0];
        if (can_store_in_place(f, p, s)) {
            p->nodes[x].storage = ST_INPLACE;
            p->nodes[x].tensor = sn->attr.tensor;
            continue;  /* the store stays an alias of x, which now is the state */
        }
        sp->commit = true;
        Storage root = p->nodes[alias_root(p, x)].storage;
        if (root == ST_STATE || root == ST_INPLACE) {
            /* a copy taken now: the state it comes from may change before the commit */
            sp->storage = ST_WORK;
            sp->alias_of = REF_NONE;
            sp->eval_pos = s;
        }
        sp->read_pos = n;
        for (Ref r = s; p->nodes[r].storage == ST_ALIAS; r = p->nodes[r].alias_of)
            p->nodes[p->nodes[r].alias_of].read_pos = n;
    }

    /* Pass 3: outputs computed directly into the caller's buffer. */
    for (int o = 0; o < f->nouts; o++) {
        NodePlan *vp = &p->nodes[f->outs[o].value];
        if (vp->storage == ST_WORK && vp->out < 0) {
            vp->storage = ST_OUT;
            vp->out = o;
        }
    }
}

/* ================================================================ regions */

static int add_region(Plan *p, int64_t bytes, int first, int last, Ref node, bool scratch) {
    p->regions[p->nregions] = (PlanRegion){.offset = -1, .bytes = region_size(bytes), .first = first,
                                           .last = last, .node = node, .scratch = scratch};
    return p->nregions++;
}

/* The most bytes of regions in use at one position: no layout can be smaller. */
static int64_t live_peak(const PlanRegion *rg, int nr, int npos) {
    int64_t *delta = xcalloc((size_t)npos + 1, sizeof *delta), live = 0, peak = 0;
    for (int i = 0; i < nr; i++) {
        delta[rg[i].first] += rg[i].bytes;
        delta[rg[i].last + 1] -= rg[i].bytes;
    }
    for (int i = 0; i < npos; i++) {
        live += delta[i];
        if (live > peak) peak = live;
    }
    free(delta);
    return peak;
}

/* Step 3: one region per work value (an in-place node extends its operand's region to its
 * own last read), one per scratch; also the before-planning total and the live peak. */
static void plan_regions(const Func *f, Plan *p) {
    int n = f->nnodes;
    int64_t batch = f->mod->max_batch;
    p->regions = xcalloc(2 * (size_t)n + 1, sizeof *p->regions);
    for (Ref v = 0; v < n; v++) {
        NodePlan *np = &p->nodes[v];
        int last = np->read_pos > v ? np->read_pos : v;
        Ref donor = inplace_operand(f, p, v);
        if (donor != REF_NONE) { /* x = f(y, ...) overwrites y as it goes */
            np->inplace_of = donor;
            p->nodes[donor].donated = true;
            np->region = p->nodes[donor].region;
            PlanRegion *r = &p->regions[np->region];
            if (last > r->last) r->last = last;
        } else if (np->storage == ST_WORK) {
            np->region = add_region(p, node_bytes(&f->nodes[v], batch), v, last, v, false);
        }
        if (np->storage == ST_WORK) p->unplanned_bytes += region_size(node_bytes(&f->nodes[v], batch));
        if (np->scratch) {
            np->scratch_region = add_region(p, np->scratch, v, v, v, true);
            p->unplanned_bytes += region_size(np->scratch);
        }
    }
    p->live_peak_bytes = live_peak(p->regions, p->nregions, n + 1);
}

/* ---- online allocators: walk the schedule, take a block when a region starts and give it
 * back after its last position. The free list is sorted by offset with neighbours merged;
 * when no block fits, the arena grows at the top (absorbing a free block that ends there). */

typedef struct FreeBlock {
    int64_t offset, size;
} FreeBlock;

typedef struct FreeList {
    FreeBlock *blocks;
    int n, cap;
    int64_t top;
} FreeList;

static int64_t freelist_take(FreeList *fl, int64_t size, bool best) {
    int pick = -1;
    for (int i = 0; i < fl->n; i++) {
        if (fl->blocks[i].size < size) continue;
        if (pick < 0 || fl->blocks[i].size < fl->blocks[pick].size) pick = i; /* ties: lowest */
        if (!best) break;
    }
    if (pick >= 0) {
        FreeBlock *b = &fl->blocks[pick];
        int64_t off = b->offset;
        b->offset += size;
        b->size -= size;
        if (!b->size) memmove(b, b + 1, (size_t)(fl->n - pick - 1) * sizeof *b), fl->n--;
        return off;
    }
    if (fl->n && fl->blocks[fl->n - 1].offset + fl->blocks[fl->n - 1].size == fl->top) {
        int64_t off = fl->blocks[fl->n - 1].offset;
        fl->n--;
        fl->top = off + size;
        return off;
    }
    int64_t off = fl->top;
    fl->top += size;
    return off;
}

static void freelist_give(FreeList *fl, int64_t offset, int64_t size) {
    int i = 0;
    while (i < fl->n && fl->blocks[i].offset < offset) i++;
    if (fl->n == fl->cap) {
        fl->cap = fl->cap ? 2 * fl->cap : 16;
        fl->blocks = realloc(fl->blocks, (size_t)fl->cap * sizeof *fl->blocks);
        if (!fl->blocks) abort();
    }
    memmove(&fl->blocks[i + 1], &fl->blocks[i], (size_t)(fl->n - i) * sizeof *fl->blocks);
    fl->blocks[i] = (FreeBlock){offset, size};
    fl->n++;
    if (i + 1 < fl->n && fl->blocks[i].offset + fl->blocks[i].size == fl->blocks[i + 1].offset) {
        fl->blocks[i].size += fl->blocks[i + 1].size;
        memmove(&fl->blocks[i + 1], &fl->blocks[i + 2], (size_t)(fl->n - i - 2) * sizeof *fl->blocks);
        fl->n--;
    }
    if (i > 0 && fl->blocks[i - 1].offset + fl->blocks[i - 1].size == fl->blocks[i].offset) {
        fl->blocks[i - 1].size += fl->blocks[i].size;
        memmove(&fl->blocks[i], &fl->blocks[i + 1], (size_t)(fl->n - i - 1) * sizeof *fl->blocks);
        fl->n--;
    }
}

/* Takes each region at its first position (in index order among equal firsts) and gives it
 * back after its last one. Returns the arena size. */
static int64_t assign_online(PlanRegion *rg, int nr, int npos, bool best) {
    /* by_first[first_at[i] .. first_at[i+1]): regions starting at i; by_last likewise */
    int *first_at = xcalloc((size_t)npos + 2, sizeof *first_at);
    int *last_at = xcalloc((size_t)npos + 2, sizeof *last_at);
    int *by_first = xcalloc((size_t)nr + 1, sizeof *by_first);
    int *by_last = xcalloc((size_t)nr + 1, sizeof *by_last);
    for (int i = 0; i < nr; i++) first_at[rg[i].first + 1]++, last_at[rg[i].last + 1]++;
    for (int i = 0; i < npos; i++) first_at[i + 1] += first_at[i], last_at[i + 1] += last_at[i];
    int *fill_first = xcalloc((size_t)npos + 1, sizeof *fill_first);
    int *fill_last = xcalloc((size_t)npos + 1, sizeof *fill_last);
    for (int i = 0; i < nr; i++) {
        by_first[first_at[rg[i].first] + fill_first[rg[i].first]++] = i;
        by_last[last_at[rg[i].last] + fill_last[rg[i].last]++] = i;
    }
    FreeList fl = {0};
    for (int pos = 0; pos < npos; pos++) {
        for (int k = first_at[pos]; k < first_at[pos + 1]; k++)
            rg[by_first[k]].offset = freelist_take(&fl, rg[by_first[k]].bytes, best);
        for (int k = last_at[pos]; k < last_at[pos + 1]; k++)
            freelist_give(&fl, rg[by_last[k]].offset, rg[by_last[k]].bytes);
    }
    free(fl.blocks);
    free(first_at);
    free(last_at);
    free(by_first);
    free(by_last);
    free(fill_first);
    free(fill_last);
    return fl.top;
}

/* ---- offline: all lifetimes are known before any offset is chosen, so place the regions in
 * a chosen order (largest first, or longest-lived first), each in the best-fitting gap
 * between the regions already placed whose lifetimes intersect its own (the lowest such gap
 * on ties), else right above them. */

typedef enum Order { BY_SIZE_LONGEST, BY_SIZE_EARLIEST, BY_SIZE_LATEST, BY_LIFETIME } Order;

typedef struct SortCtx {
    const PlanRegion *rg;
    Order order;
} SortCtx;

#define CMP_DESC(a, b) if ((a) != (b)) return (a) > (b) ? -1 : 1
#define CMP_ASC(a, b) if ((a) != (b)) return (a) < (b) ? -1 : 1

static int cmp_order(const void *a, const void *b, void *ctx) {
    const SortCtx *c = ctx;
    int i = *(const int *)a, j = *(const int *)b;
    const PlanRegion *x = &c->rg[i], *y = &c->rg[j];
    int lx = x->last - x->first, ly = y->last - y->first;
    if (c->order == BY_LIFETIME) CMP_DESC(lx, ly);
    CMP_DESC(x->bytes, y->bytes);
    if (c->order == BY_SIZE_EARLIEST) CMP_ASC(x->first, y->first);
    if (c->order == BY_SIZE_LATEST) CMP_DESC(x->last, y->last);
    CMP_DESC(lx, ly);
    CMP_ASC(x->first, y->first);
    return i - j;
}

static int cmp_by_offset(const void *a, const void *b, void *ctx) {
    const PlanRegion *rg = ctx;
    int i = *(const int *)a, j = *(const int *)b;
    CMP_ASC(rg[i].offset, rg[j].offset);
    return i - j;
}

static int64_t assign_offline(PlanRegion *rg, int nr, Order order) {
    int *sorted = xcalloc((size_t)nr, sizeof *sorted);
    int *placed = xcalloc((size_t)nr, sizeof *placed);
    int *live = xcalloc((size_t)nr, sizeof *live);
    for (int i = 0; i < nr; i++) sorted[i] = i;
    SortCtx ctx = {rg, order};
    qsort_r(sorted, (size_t)nr, sizeof *sorted, cmp_order, &ctx);
    int nplaced = 0;
    int64_t top = 0;
    for (int k = 0; k < nr; k++) {
        PlanRegion *r = &rg[sorted[k]];
        int nlive = 0;
        for (int j = 0; j < nplaced; j++) {
            const PlanRegion *q = &rg[placed[j]];
            if (q->first <= r->last && r->first <= q->last) live[nlive++] = placed[j];
        }
        qsort_r(live, (size_t)nlive, sizeof *live, cmp_by_offset, rg);
        int64_t end = 0, best = -1, best_gap = 0;
        for (int j = 0; j < nlive; j++) {
            const PlanRegion *q = &rg[live[j]];
            int64_t gap = q->offset - end;
            if (gap >= r->bytes && (best < 0 || gap < best_gap)) best = end, best_gap = gap;
            if (q->offset + q->bytes > end) end = q->offset + q->bytes;
        }
        r->offset = best >= 0 ? best : end;
        if (r->offset + r->bytes > top) top = r->offset + r->bytes;
        placed[nplaced++] = sorted[k];
    }
    free(sorted);
    free(placed);
    free(live);
    return top;
}

/* Runs the candidates (strategy s, or for PLAN_DEFAULT: best fit, by lifetime and the by-size
 * orders) on copies and keeps the smallest arena (the first one on ties); stops early at the
 * live peak, which no layout beats. */
int64_t plan_assign_offsets(PlanRegion *regions, int nregions, int npositions, PlanStrategy s) {
    static const struct {
        bool online;
        int kind; /* online: best fit (else first fit); offline: an Order */
    } cand[] = {{false, BY_SIZE_LONGEST}, {false, BY_SIZE_EARLIEST}, {false, BY_SIZE_LATEST},
                {false, BY_LIFETIME},     {true, true},              {true, false}};
    /* the candidates of each strategy: cand[from[s] .. to[s]) */
    static const int from[PLAN_COUNT] = {[PLAN_DEFAULT] = 0, [PLAN_BY_SIZE] = 0,
                                         [PLAN_BY_LIFETIME] = 3, [PLAN_BEST_FIT] = 4,
                                         [PLAN_FIRST_FIT] = 5};
    static const int to[PLAN_COUNT] = {[PLAN_DEFAULT] = 5, [PLAN_BY_SIZE] = 3,
                                       [PLAN_BY_LIFETIME] = 4, [PLAN_BEST_FIT] = 5,
                                       [PLAN_FIRST_FIT] = 6};
    int64_t peak = live_peak(regions, nregions, npositions), best = -1;
    PlanRegion *trial = xcalloc((size_t)nregions + 1, sizeof *trial);
    for (int c = from[s]; c < to[s] && best != peak; c++) {
        memcpy(trial, regions, (size_t)nregions * sizeof *trial);
        int64_t arena = cand[c].online ? assign_online(trial, nregions, npositions, cand[c].kind)
                                       : assign_offline(trial, nregions, (Order)cand[c].kind);
        if (best < 0 || arena < best) {
            best = arena;
            memcpy(regions, trial, (size_t)nregions * sizeof *trial);
        }
    }
    free(trial);
    return best < 0 ? 0 : best;
}

/* Whether output o of f reaches the caller of the public C entry (else it is discarded). */
static bool public_keeps_output(const Func *f, const PubParam *pp, int np, int o) {
    for (int i = 0; i < np; i++) {
        if (pp[i].kind == PP_OUT && pp[i].index == o) return true;
        if (pp[i].kind == PP_METRICS && public_metric(f, o)) return true;
    }
    return false;
}

void plan_func_with(const Func *f, PlanStrategy strategy, Plan *p) {
    int n = f->nnodes;
    memset(p, 0, sizeof *p);
    p->nodes = xcalloc((size_t)n + 1, sizeof *p->nodes);
    p->discard_offset = xcalloc((size_t)f->nouts + 1, sizeof *p->discard_offset);
    p->check_after = REF_NONE;
    p->loss_out = -1;
    plan_storage(f, p);
    plan_regions(f, p);
    p->arena_bytes = plan_assign_offsets(p->regions, p->nregions, n + 1, strategy);
    for (Ref v = 0; v < n; v++) {
        NodePlan *np = &p->nodes[v];
        if (np->region >= 0) np->offset = p->regions[np->region].offset;
        if (np->scratch_region >= 0) np->scratch_offset = p->regions[np->scratch_region].offset;
    }

    /* Step 5: outputs the public entry drops go to a discard area after the arena. */
    PubParam *pp;
    int npp = llvm_public_params(f, &pp);
    int64_t top = p->arena_bytes;
    for (int o = 0; o < f->nouts; o++) {
        p->discard_offset[o] = -1;
        if (npp < 0 || public_keeps_output(f, pp, npp, o)) continue;
        p->discard_offset[o] = top;
        top += align_up(node_bytes(&f->nodes[f->outs[o].value], f->mod->max_batch), PLAN_ALIGN);
    }
    p->work_bytes = top;
}

void plan_func(const Func *f, Plan *p) { plan_func_with(f, PLAN_DEFAULT, p); }

void plan_free(Plan *p) {
    free(p->nodes);
    free(p->regions);
    free(p->discard_offset);
    memset(p, 0, sizeof *p);
}
