/* dce.c — dead code elimination.
 *
 * A node is live when a function output or an effect (store) reads it, directly or through
 * other nodes. Everything else goes, leaves included (an `input` node nobody reads; the
 * argument itself stays in f->args, so the function's signature never changes).
 */
#include "nnc.h"

#include <stdlib.h>

/* require: topological order (inputs refer to earlier nodes).
 * Keeps: every OPF_EFFECT node, every output's value, and what they read; the order. */
int dce(Func *f) {
    if (!f->nnodes) return 0;
    bool *live = calloc((size_t)f->nnodes, sizeof *live);
    Ref *map = malloc((size_t)f->nnodes * sizeof *map);
    if (!live || !map) {
        fprintf(stderr, "nnc: out of memory\n");
        abort();
    }
    for (int i = 0; i < f->nouts; i++) live[f->outs[i].value] = true;
    for (int i = f->nnodes - 1; i >= 0; i--) {
        if (op_info[f->nodes[i].op].flags & OPF_EFFECT) live[i] = true;
        if (live[i])
            for (int j = 0; j < f->nodes[i].nin; j++) live[f->nodes[i].in[j]] = true;
    }
    int n = 0;
    for (int i = 0; i < f->nnodes; i++) {
        map[i] = REF_NONE;
        if (!live[i]) continue;
        Node nd = f->nodes[i];
        for (int j = 0; j < nd.nin; j++) nd.in[j] = map[nd.in[j]];
        map[i] = n;
        f->nodes[n++] = nd;
    }
    int removed = f->nnodes - n;
    f->nnodes = n;
    for (int i = 0; i < f->nouts; i++) f->outs[i].value = map[f->outs[i].value];
    free(live);
    free(map);
    return removed;
}
