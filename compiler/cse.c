/* cse.c — common subexpression elimination.
 *
 * Two nodes compute the same value when they have the same op, dtype, shape, inputs and
 * attributes (a constant's value or data included) and the op is pure. Pure here means every
 * op but the effects (store) and the random ones (rand_uniform, init_fill: two of them are
 * two different draws). A `tensor` read is pure between stores to its module tensor: the key
 * of a read includes how many stores to that tensor came before it (its epoch), so a read
 * after `store @w` is never merged with a read before it.
 *
 * add, mul, eq and ne are commutative bit for bit in IEEE arithmetic, so their two inputs
 * match in either order. maximum and minimum are not quite (maximum(-0, +0) is the first
 * operand), so they only match in the same order.
 */
#include "nnc.h"

#include <stdlib.h>
#include <string.h>

typedef struct Table {
    Ref *slot;          /* new refs; REF_NONE = empty */
    uint64_t *hash;     /* hash of the node in each slot */
    size_t mask;
    int *epoch;         /* epoch of each new node (tensor reads; 0 otherwise) */
    int *store_count;   /* per module tensor: stores seen so far */
} Table;

static bool pure(Op op) {
    return !(op_info[op].flags & OPF_EFFECT) && op != OP_rand_uniform && op != OP_init_fill;
}

static bool commutes(Op op) { return op == OP_add || op == OP_mul || op == OP_eq || op == OP_ne; }

static uint64_t mix(uint64_t h, uint64_t v) {
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    return h * 0x100000001b3ull;
}

static uint64_t mix_bytes(uint64_t h, const void *p, size_t len) {
    const unsigned char *b = p;
    for (size_t i = 0; i < len; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

static int64_t const_count(const Node *n) { return shape_numel(&n->shape, 1); }

static uint64_t node_hash(const Node *n, int epoch) {
    uint64_t h = 0xcbf29ce484222325ull;
    h = mix(h, (uint64_t)n->op);
    h = mix(h, (uint64_t)n->dtype);
    h = mix(h, (uint64_t)n->shape.rank);
    h = mix(h, n->shape.batch_mask);
    for (int i = 0; i < n->shape.rank; i++) h = mix(h, (uint64_t)n->shape.dim[i]);
    h = mix(h, (uint64_t)n->nin);
    if (commutes(n->op) && n->nin == 2) {
        Ref lo = n->in[0] < n->in[1] ? n->in[0] : n->in[1], hi = n->in[0] ^ n->in[1] ^ lo;
        h = mix(mix(h, (uint64_t)lo), (uint64_t)hi);
    } else {
        for (int i = 0; i < n->nin; i++) h = mix(h, (uint64_t)n->in[i]);
    }
    const Attr *a = &n->attr;
    h = mix(h, (uint64_t)a->index);
    h = mix(h, (uint64_t)a->tensor);
    h = mix(h, (uint64_t)a->axis);
    h = mix(h, a->axes);
    h = mix(h, (uint64_t)a->fwd_op);
    h = mix(h, (uint64_t)a->flag);
    h = mix(h, (uint64_t)(a->keepdims | a->trans_a << 1 | a->trans_b << 2));
    h = mix_bytes(h, a->perm, sizeof a->perm);
    h = mix_bytes(h, a->start, sizeof a->start);
    h = mix_bytes(h, a->step, sizeof a->step);
    h = mix_bytes(h, a->f, sizeof a->f);
    if (a->data) h = mix_bytes(h, a->data, (size_t)const_count(n) * sizeof *a->data);
    return mix(h, (uint64_t)epoch);
}

/* Attributes equal field by field (floats bit for bit, so 0 and -0 differ and NaN matches
 * itself). Unused fields are zero; comparing them too can only miss a merge. */
static bool attr_eq(const Node *x, const Node *y) {
    const Attr *a = &x->attr, *b = &y->attr;
    if (a->index != b->index || a->tensor != b->tensor || a->axis != b->axis ||
        a->axes != b->axes || a->keepdims != b->keepdims || a->trans_a != b->trans_a ||
        a->trans_b != b->trans_b || a->flag != b->flag || a->fwd_op != b->fwd_op)
        return false;
    if (memcmp(a->perm, b->perm, sizeof a->perm) || memcmp(a->start, b->start, sizeof a->start) ||
        memcmp(a->step, b->step, sizeof a->step) || memcmp(a->f, b->f, sizeof a->f))
        return false;
    if (!a->data != !b->data) return false;
    return !a->data || a->data == b->data ||
           !memcmp(a->data, b->data, (size_t)const_count(x) * sizeof *a->data);
}

static bool node_eq(const Node *x, const Node *y) {
    if (x->op != y->op || x->dtype != y->dtype || x->nin != y->nin ||
        !shape_eq(&x->shape, &y->shape))
        return false;
    bool same = true;
    for (int i = 0; i < x->nin; i++) same &= x->in[i] == y->in[i];
    if (!same && commutes(x->op) && x->nin == 2)
        same = x->in[0] == y->in[1] && x->in[1] == y->in[0];
    return same && attr_eq(x, y);
}

/* require: topological order.
 * Keeps the first of equal nodes (it dominates the others: the function is one block). */
int cse(Func *f) {
    Rewrite rw;
    rewrite_begin(&rw, f);
    size_t cap = 16;
    while (cap < 2 * (size_t)rw.nold) cap *= 2;
    Table t = {.slot = malloc(cap * sizeof *t.slot),
               .hash = malloc(cap * sizeof *t.hash),
               .mask = cap - 1,
               .epoch = calloc((size_t)rw.nold + 1, sizeof *t.epoch),
               .store_count = calloc((size_t)f->mod->ntensors + 1, sizeof *t.store_count)};
    if (!t.slot || !t.hash || !t.epoch || !t.store_count) {
        fprintf(stderr, "nnc: out of memory\n");
        abort();
    }
    for (size_t s = 0; s < cap; s++) t.slot[s] = REF_NONE;

    for (int i = 0; i < rw.nold; i++) {
        Node n = rewrite_node(&rw, i);
        if (!pure(n.op)) {
            if (n.op == OP_store && n.attr.tensor >= 0 && n.attr.tensor < f->mod->ntensors)
                t.store_count[n.attr.tensor]++;
            rewrite_keep(&rw, i, &n);
            continue;
        }
        int epoch = n.op == OP_tensor && n.attr.tensor >= 0 && n.attr.tensor < f->mod->ntensors
                        ? t.store_count[n.attr.tensor]
                        : 0;
        uint64_t h = node_hash(&n, epoch);
        size_t s = h & t.mask;
        Ref found = REF_NONE;
        for (; t.slot[s] != REF_NONE; s = (s + 1) & t.mask)
            if (t.hash[s] == h && t.epoch[t.slot[s]] == epoch &&
                node_eq(&f->nodes[t.slot[s]], &n)) {
                found = t.slot[s];
                break;
            }
        if (found != REF_NONE && rewrite_forward(&rw, i, &n, found) == found) continue;
        Ref r = found != REF_NONE ? rw.map[i] : rewrite_keep(&rw, i, &n);
        t.epoch[r] = epoch;
        if (found == REF_NONE) {
            t.slot[s] = r;
            t.hash[s] = h;
        }
    }
    free(t.slot);
    free(t.hash);
    free(t.epoch);
    free(t.store_count);
    return rewrite_end(&rw);
}
