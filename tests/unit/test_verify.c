/* test_verify.c — unit tests of the IR verifier (verify.c) and printer (ir.c) for the layers
 * with kernels of their own: conv2d, conv2d_grad_input, conv2d_grad_weight, maxpool2d,
 * avgpool2d, maxpool2d_grad, upsample2d and lrn.
 *
 * Every case builds one node through the IR API (its operands are function arguments, so any
 * shape and dtype can be given). Well-formed nodes must verify with no problem; each malformed
 * one must be rejected with a line `verify: f: %N (op): ...` that holds the expected text
 * (shapes included). The printer cases check the attribute text of `nnc dump --ir`. */
#include "check.h"
#include "nnc.h"

#include <stdlib.h>
#include <string.h>

static Arena arena;

#define DIMS(...)   ((int64_t[]){__VA_ARGS__})
#define COUNT_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))
/* SHAPE(batch_mask, dims...) */
#define SHAPE(mask, ...) shape_make(COUNT_OF(DIMS(__VA_ARGS__)), DIMS(__VA_ARGS__), (uint8_t)(mask))
#define SHAPES(...)      ((Shape[]){__VA_ARGS__})

static const SrcLoc NOLOC = {0};

static Func *new_func(void) {
    return module_add_func(module_new(&arena, "test"), "f");
}

/* A node of op `op` whose inputs are fresh arguments of shapes ins[0..nin) and dtypes
 * dts[0..nin) (NULL: the node's dtype). Returns the node. */
static Ref build(Func *f, Op op, DType dt, Shape out, int nin, const Shape *ins, const DType *dts,
                 Attr a) {
    Ref in[IR_MAX_INPUTS];
    for (int i = 0; i < nin; i++) {
        char name[16];
        snprintf(name, sizeof name, "a%d", i);
        in[i] = ir_input(f, func_add_arg(f, name, ARG_INPUT, dts ? dts[i] : dt, ins[i], NOLOC));
    }
    return ir_node(f, op, dt, out, nin, in, &a);
}

/* stride, symmetric padding, dilation and groups, each the same along H and W */
static Attr conv_attr(int64_t stride, int64_t pad, int dilation, int groups) {
    Attr a = {0};
    a.step[0] = a.step[1] = stride;
    for (int i = 0; i < 4; i++) a.start[i] = pad;
    a.perm[0] = a.perm[1] = dilation;
    a.perm[2] = groups;
    return a;
}

static Attr pool_attr(int size, int64_t stride, int64_t pad) {
    Attr a = conv_attr(stride, pad, 0, 0);
    a.perm[0] = a.perm[1] = size;
    return a;
}

/* What ir_verify prints for f, and the number of problems. */
static char *verify_text(const Func *f, int *problems) {
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    *problems = ir_verify(f, out);
    fclose(out);
    return text;
}

static void expect_clean_line(const Func *f, int line) {
    int problems;
    char *text = verify_text(f, &problems);
    if (problems) {
        fprintf(stderr, "%s:%d: expected no problem, got %d:\n%s", __FILE__, line, problems, text);
        check_failures++;
    }
    free(text);
}
#define EXPECT_CLEAN(f) expect_clean_line(f, __LINE__)

/* f is rejected with a line about node r that contains `needle`. */
static void expect_rejected_line(const Func *f, Ref r, const char *needle, int line) {
    int problems;
    char *text = verify_text(f, &problems);
    char prefix[96];
    snprintf(prefix, sizeof prefix, "verify: %s: %%%d (%s): ", f->name, r, op_info[f->nodes[r].op].name);
    bool found = false;
    for (char *l = text; l && *l && !found;) {
        char *end = strchr(l, '\n');
        size_t n = end ? (size_t)(end - l) : strlen(l);
        char *copy = strndup(l, n);
        found = !strncmp(copy, prefix, strlen(prefix)) && strstr(copy, needle);
        free(copy);
        l = end ? end + 1 : l + n;
    }
    if (problems == 0 || !found) {
        fprintf(stderr, "%s:%d: expected a problem \"%s...%s\", got %d:\n%s", __FILE__, line, prefix,
                needle, problems, text ? text : "");
        check_failures++;
    }
    free(text);
}

/* A function of one node (build's arguments) is rejected with `needle` about that node. */
static void rejects_line(Op op, DType dt, Shape out, int nin, const Shape *ins, const DType *dts,
                         Attr a, const char *needle, int line) {
    Func *f = new_func();
    Ref r = build(f, op, dt, out, nin, ins, dts, a);
    expect_rejected_line(f, r, needle, line);
}
/* REJECTS(op, dt, out, nin, ins, dts, attr, needle) */
#define REJECTS(...) rejects_line(__VA_ARGS__, __LINE__)

/* ---------------------------------------------------------------- conv2d */

/* x [batch, 4, 9, 9], w [6, 2, 3, 3], groups 2, stride 2, pad 1: y [batch, 6, 5, 5] */
#define X   SHAPE(1, 1, 4, 9, 9)
#define W   SHAPE(0, 6, 2, 3, 3)
#define Y   SHAPE(1, 1, 6, 5, 5)
#define B   SHAPE(0, 6)
#define GEO conv_attr(2, 1, 1, 2)

static void test_conv2d(void) {
    Func *f = new_func();
    build(f, OP_conv2d, DT_F32, Y, 3, SHAPES(X, W, B), NULL, GEO);
    build(f, OP_conv2d, DT_F32, Y, 2, SHAPES(X, W), NULL, GEO);
    /* dilation 2, no padding: (9 - 2*2 - 1)/1 + 1 = 5; a constant batch */
    build(f, OP_conv2d, DT_F32, SHAPE(0, 2, 6, 5, 5), 2, SHAPES(SHAPE(0, 2, 4, 9, 9), W), NULL,
          conv_attr(1, 0, 2, 2));
    /* asymmetric padding: (9 + 0 + 3 - 2 - 1)/1 + 1 = 10 rows, (9 + 2 + 1 - 2 - 1)/1 + 1 = 10 columns */
    Attr same = conv_attr(1, 0, 1, 2);
    same.start[1] = 2, same.start[2] = 3, same.start[3] = 1;
    build(f, OP_conv2d, DT_F32, SHAPE(1, 1, 6, 10, 10), 2, SHAPES(X, W), NULL, same);
    EXPECT_CLEAN(f);

    REJECTS(OP_conv2d, DT_F32, SHAPE(1, 1, 6, 4, 5), 3, SHAPES(X, W, B), NULL, GEO,
            "result [batch, 6, 4, 5] does not follow from input [batch, 4, 9, 9] "
            "and weight [6, 2, 3, 3]: expected [batch, 6, 5, 5]");
    /* the same with the asymmetric padding */
    REJECTS(OP_conv2d, DT_F32, SHAPE(1, 1, 6, 9, 10), 2, SHAPES(X, W), NULL, same,
            "expected [batch, 6, 10, 10]");

    /* C_in = 4 != groups 2 * 3 */
    REJECTS(OP_conv2d, DT_F32, Y, 2, SHAPES(X, SHAPE(0, 6, 3, 3, 3)), NULL, GEO,
            "input [batch, 4, 9, 9] has 4 channels, groups=2 times the 3 of weight [6, 3, 3, 3]");

    /* 5 output channels in 2 groups */
    REJECTS(OP_conv2d, DT_F32, SHAPE(1, 1, 5, 5, 5), 2, SHAPES(X, SHAPE(0, 5, 2, 3, 3)), NULL, GEO,
            "groups=2 does not divide the 5 output channels of weight [5, 2, 3, 3]");

    REJECTS(OP_conv2d, DT_F32, SHAPE(1, 1, 7, 5, 5), 2, SHAPES(X, W), NULL, GEO,
            "result [batch, 7, 5, 5] has 7 channels, weight [6, 2, 3, 3] has 6 outputs");

    REJECTS(OP_conv2d, DT_F32, Y, 3, SHAPES(X, W, SHAPE(0, 5)), NULL, GEO,
            "bias [5] must be [6], the output channels of weight [6, 2, 3, 3]");

    /* rank 3 input (conv1d must be lowered through H = 1) */
    REJECTS(OP_conv2d, DT_F32, Y, 2, SHAPES(SHAPE(1, 1, 4, 9), W), NULL, GEO,
            "input [batch, 4, 9] must be [N, C, H, W] with the batch on axis 0 only");

    /* the batch on the channel axis */
    REJECTS(OP_conv2d, DT_F32, Y, 2, SHAPES(SHAPE(2, 1, 4, 9, 9), W), NULL, GEO,
            "input [1, 4*batch, 9, 9] must be [N, C, H, W]");

    REJECTS(OP_conv2d, DT_F32, Y, 2, SHAPES(X, SHAPE(1, 6, 2, 3, 3)), NULL, GEO,
            "weight [6*batch, 2, 3, 3] must be [O, C/groups, KH, KW] without the batch");

    /* a batch of 2 in, the run-time batch out */
    REJECTS(OP_conv2d, DT_F32, Y, 2, SHAPES(SHAPE(0, 2, 4, 9, 9), W), NULL, GEO,
            "input [2, 4, 9, 9] and result [batch, 6, 5, 5] differ in axis 0");

    /* a 3x3 window with dilation 4 spans 9 > 2 + 2 + 2 */
    REJECTS(OP_conv2d, DT_F32, Y, 2, SHAPES(SHAPE(1, 1, 4, 2, 2), W), NULL, conv_attr(1, 2, 4, 2),
            "the 3 x 3 window (dilation 4 x 4) does not fit the padded spatial axes of [batch, 4, 2, 2]");

    REJECTS(OP_conv2d, DT_F32, Y, 2, SHAPES(X, W), (DType[]){DT_F64, DT_F32}, GEO,
            "input 0 is f64, the result f32");

    REJECTS(OP_conv2d, DT_I32, Y, 2, SHAPES(X, W), NULL, GEO,
            "result must be f32 or f64, not i32");

    REJECTS(OP_conv2d, DT_F32, Y, 4, SHAPES(X, W, B, B), NULL, GEO,
            "takes x, w and an optional bias, not 4 inputs");

    /* attribute ranges */
    Attr bad = GEO;
    bad.step[1] = 0;
    REJECTS(OP_conv2d, DT_F32, Y, 2, SHAPES(X, W), NULL, bad,
            "stride=[2, 0] out of range");
    bad = GEO;
    bad.start[3] = -1;
    REJECTS(OP_conv2d, DT_F32, Y, 2, SHAPES(X, W), NULL, bad,
            "pad=[1, 1, 1, -1] out of range");
    REJECTS(OP_conv2d, DT_F32, Y, 2, SHAPES(X, W), NULL, conv_attr(2, 1, 0, 2),
            "dilation=[0, 0] out of range");
    REJECTS(OP_conv2d, DT_F32, Y, 2, SHAPES(X, W), NULL, conv_attr(2, 1, 1, 0),
            "groups=0 out of range");
}

/* conv2d_grad_input (dy, w) -> dx of x's shape; conv2d_grad_weight (x, dy) -> dw of w's. */
static void test_conv2d_grads(void) {
    Func *f = new_func();
    build(f, OP_conv2d_grad_input, DT_F32, X, 2, SHAPES(Y, W), NULL, GEO);
    build(f, OP_conv2d_grad_weight, DT_F32, W, 2, SHAPES(X, Y), NULL, GEO);
    /* f64, as the gradient of an f64 avgpool: depthwise, groups = C */
    build(f, OP_conv2d_grad_input, DT_F64, SHAPE(1, 1, 3, 8, 8), 2,
          SHAPES(SHAPE(1, 1, 3, 4, 4), SHAPE(0, 3, 1, 2, 2)), NULL, conv_attr(2, 0, 1, 3));
    EXPECT_CLEAN(f);

    /* dx of 12 rows cannot be the input of a convolution giving dy's 5 rows */
    REJECTS(OP_conv2d_grad_input, DT_F32, SHAPE(1, 1, 4, 12, 9), 2, SHAPES(Y, W), NULL, GEO,
            "dy [batch, 6, 5, 5] does not follow from result (dx) [batch, 4, 12, 9] "
            "and weight [6, 2, 3, 3]: expected [batch, 6, 6, 5]");
    REJECTS(OP_conv2d_grad_input, DT_F32, SHAPE(1, 1, 6, 9, 9), 2, SHAPES(Y, W), NULL, GEO,
            "result (dx) [batch, 6, 9, 9] has 6 channels, groups=2 times the 2 of weight [6, 2, 3, 3]");
    REJECTS(OP_conv2d_grad_input, DT_F32, X, 2, SHAPES(SHAPE(1, 1, 6, 5, 5, 1), W), NULL, GEO,
            "dy [batch, 6, 5, 5, 1] must be [N, C, H, W]");
    REJECTS(OP_conv2d_grad_input, DT_F32, X, 2, SHAPES(Y, W), (DType[]){DT_F32, DT_F64}, GEO,
            "input 1 is f64, the result f32");

    /* dw must have w's shape: groups 2 makes it [6, 2, 3, 3] */
    REJECTS(OP_conv2d_grad_weight, DT_F32, SHAPE(0, 6, 4, 3, 3), 2, SHAPES(X, Y), NULL, GEO,
            "input [batch, 4, 9, 9] has 4 channels, groups=2 times the 4 of result (dw) [6, 4, 3, 3]");
    /* a 5-row kernel gives (9 + 2 - 4 - 1)/2 + 1 = 4 rows, not dy's 5 */
    REJECTS(OP_conv2d_grad_weight, DT_F32, SHAPE(0, 6, 2, 5, 3), 2, SHAPES(X, Y), NULL, GEO,
            "dy [batch, 6, 5, 5] does not follow from input [batch, 4, 9, 9] and result (dw) [6, 2, 5, 3]: "
            "expected [batch, 6, 4, 5]");
    REJECTS(OP_conv2d_grad_weight, DT_F32, SHAPE(1, 6, 2, 3, 3), 2, SHAPES(X, Y), NULL, GEO,
            "result (dw) [6*batch, 2, 3, 3] must be [O, C/groups, KH, KW] without the batch");
    REJECTS(OP_conv2d_grad_weight, DT_F32, SHAPE(0, 6, 2, 0, 3), 2, SHAPES(X, Y), NULL, GEO,
            "result (dw) [6, 2, 0, 3] has an empty axis");
    REJECTS(OP_conv2d_grad_weight, DT_F32, W, 2, SHAPES(X, SHAPE(0, 3, 6, 5, 5)), NULL, GEO,
            "input [batch, 4, 9, 9] and dy [3, 6, 5, 5] differ in axis 0");
}

/* ---------------------------------------------------------------- pools */

/* x [batch, 3, 8, 8], window 3, stride 2, pad 1: (8 + 2 - 2 - 1)/2 + 1 = 4 */
#define PX SHAPE(1, 1, 3, 8, 8)
#define PY SHAPE(1, 1, 3, 4, 4)

static void test_pools(void) {
    Func *f = new_func();
    build(f, OP_maxpool2d, DT_F32, PY, 1, SHAPES(PX), NULL, pool_attr(3, 2, 1));
    build(f, OP_avgpool2d, DT_F64, PY, 1, SHAPES(PX), NULL, pool_attr(3, 2, 1));
    build(f, OP_maxpool2d_grad, DT_F32, PX, 2, SHAPES(PX, PY), NULL, pool_attr(3, 2, 1));
    Attr rect = pool_attr(1, 1, 0); /* pool1d as a 1 x 2 window over H = 1 */
    rect.perm[1] = 2, rect.step[1] = 2;
    build(f, OP_maxpool2d, DT_F32, SHAPE(1, 1, 3, 1, 5), 1, SHAPES(SHAPE(1, 1, 3, 1, 10)), NULL, rect);
    EXPECT_CLEAN(f);

    REJECTS(OP_maxpool2d, DT_F32, SHAPE(1, 1, 3, 5, 4), 1, SHAPES(PX), NULL, pool_attr(3, 2, 1),
            "result [batch, 3, 5, 4] does not follow from input [batch, 3, 8, 8]: expected [batch, 3, 4, 4]");
    REJECTS(OP_avgpool2d, DT_F32, SHAPE(1, 1, 4, 4, 4), 1, SHAPES(PX), NULL, pool_attr(3, 2, 1),
            "result [batch, 4, 4, 4] has 4 channels, the input [batch, 3, 8, 8] has 3");
    REJECTS(OP_avgpool2d, DT_F32, PY, 1, SHAPES(PX), NULL, pool_attr(0, 2, 1),
            "size=[0, 0] out of range");
    REJECTS(OP_maxpool2d, DT_F32, PY, 1, SHAPES(PX), NULL, pool_attr(3, -2, 1),
            "stride=[-2, -2] out of range");
    REJECTS(OP_avgpool2d, DT_I32, PY, 1, SHAPES(PX), NULL, pool_attr(3, 2, 1),
            "result must be f32 or f64, not i32");
    REJECTS(OP_maxpool2d, DT_F32, SHAPE(1, 1, 3, 4), 1, SHAPES(SHAPE(1, 1, 3, 8)), NULL, pool_attr(3, 2, 1),
            "input [batch, 3, 8] must be [N, C, H, W]");
    /* a 9-wide window on a padded 8 + 2 */
    REJECTS(OP_maxpool2d, DT_F32, PY, 1, SHAPES(SHAPE(1, 1, 3, 6, 6)), NULL, pool_attr(9, 2, 1),
            "the 9 x 9 window (dilation 1 x 1) does not fit the padded spatial axes of [batch, 3, 6, 6]");

    /* maxpool2d_grad: the result is x's shape, dy the forward result's */
    REJECTS(OP_maxpool2d_grad, DT_F32, SHAPE(1, 1, 3, 8, 7), 2, SHAPES(PX, PY), NULL, pool_attr(3, 2, 1),
            "result [batch, 3, 8, 7] differs from the input [batch, 3, 8, 8] it differentiates");
    REJECTS(OP_maxpool2d_grad, DT_F32, PX, 2, SHAPES(PX, SHAPE(1, 1, 3, 3, 4)), NULL, pool_attr(3, 2, 1),
            "dy [batch, 3, 3, 4] does not follow from input [batch, 3, 8, 8]: expected [batch, 3, 4, 4]");
    REJECTS(OP_maxpool2d_grad, DT_F32, PX, 2, SHAPES(PX, PY), (DType[]){DT_F32, DT_F64}, pool_attr(3, 2, 1),
            "input 1 is f64, the result f32");
}

/* ---------------------------------------------------------------- upsample2d, lrn */

static void test_upsample(void) {
    Attr nearest = {0}, bilinear = {.flag = 1};
    nearest.perm[0] = bilinear.perm[0] = 2;
    nearest.perm[1] = bilinear.perm[1] = 3;
    Func *f = new_func();
    build(f, OP_upsample2d, DT_F32, SHAPE(1, 1, 3, 8, 15), 1, SHAPES(SHAPE(1, 1, 3, 4, 5)), NULL, nearest);
    build(f, OP_upsample2d, DT_F64, SHAPE(0, 2, 3, 8, 15), 1, SHAPES(SHAPE(0, 2, 3, 4, 5)), NULL, bilinear);
    EXPECT_CLEAN(f);

    REJECTS(OP_upsample2d, DT_F32, SHAPE(1, 1, 3, 8, 14), 1, SHAPES(SHAPE(1, 1, 3, 4, 5)), NULL, nearest,
            "result [batch, 3, 8, 14] is not the input [batch, 3, 4, 5] scaled by [2, 3]");
    REJECTS(OP_upsample2d, DT_F32, SHAPE(1, 1, 4, 8, 15), 1, SHAPES(SHAPE(1, 1, 3, 4, 5)), NULL, nearest,
            "is not the input");
    Attr bad = bilinear;
    bad.flag = 2;
    REJECTS(OP_upsample2d, DT_F32, SHAPE(1, 1, 3, 8, 15), 1, SHAPES(SHAPE(1, 1, 3, 4, 5)), NULL, bad,
            "mode 2 is neither nearest (0) nor bilinear (1)");
    bad = nearest;
    bad.perm[0] = 0;
    REJECTS(OP_upsample2d, DT_F32, SHAPE(1, 1, 3, 8, 15), 1, SHAPES(SHAPE(1, 1, 3, 4, 5)), NULL, bad,
            "scale=[0, 3] out of range");
    REJECTS(OP_upsample2d, DT_F32, SHAPE(1, 1, 3, 8, 15), 1, SHAPES(SHAPE(1, 1, 3, 4, 5)),
              (DType[]){DT_I32}, nearest,
            "input 0 is i32, the result f32");
}

static void test_lrn(void) {
    Attr a = {.f = {1e-4, 0.75, 1}};
    a.perm[0] = 5;
    Func *f = new_func();
    build(f, OP_lrn, DT_F32, SHAPE(1, 1, 6, 4, 4), 1, SHAPES(SHAPE(1, 1, 6, 4, 4)), NULL, a);
    build(f, OP_lrn, DT_F64, SHAPE(1, 1, 6, 10), 1, SHAPES(SHAPE(1, 1, 6, 10)), NULL, a);
    EXPECT_CLEAN(f);

    REJECTS(OP_lrn, DT_F32, SHAPE(1, 1, 6, 4, 5), 1, SHAPES(SHAPE(1, 1, 6, 4, 4)), NULL, a,
            "result [batch, 6, 4, 5] differs from the input [batch, 6, 4, 4]");
    REJECTS(OP_lrn, DT_F32, SHAPE(1, 1), 1, SHAPES(SHAPE(1, 1)), NULL, a,
            "input [batch] must be [N, C, ...] with the batch on axis 0 only");
    REJECTS(OP_lrn, DT_F32, SHAPE(2, 2, 6, 4), 1, SHAPES(SHAPE(2, 2, 6, 4)), NULL, a,
            "input [2, 6*batch, 4] must be [N, C, ...]");
    Attr bad = a;
    bad.perm[0] = 0;
    REJECTS(OP_lrn, DT_F32, SHAPE(1, 1, 6, 4), 1, SHAPES(SHAPE(1, 1, 6, 4)), NULL, bad,
            "size=0 out of range");
}

/* ---------------------------------------------------------------- the printer */

/* The line ir_print_func writes for node r, without its "  %N = " prefix. */
static char *printed(const Func *f, Ref r) {
    char *text = NULL, key[32];
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    ir_print_func(out, f);
    fclose(out);
    snprintf(key, sizeof key, "  %%%d = ", r);
    char *at = strstr(text, key), *line = NULL;
    if (at) {
        at += strlen(key);
        line = strndup(at, strcspn(at, "\n"));
    }
    free(text);
    return line ? line : strdup("(not printed)");
}

static void expect_printed_line(const Func *f, Ref r, const char *want, int line) {
    char *got = printed(f, r);
    if (strcmp(got, want)) {
        fprintf(stderr, "%s:%d: printed \"%s\", expected \"%s\"\n", __FILE__, line, got, want);
        check_failures++;
    }
    free(got);
}
#define EXPECT_PRINTED(f, r, want) expect_printed_line(f, r, want, __LINE__)

static void test_printer(void) {
    Func *f = new_func();
    Attr same = conv_attr(1, 0, 1, 2);
    same.start[1] = 2, same.start[2] = 3, same.start[3] = 1;
    Ref r = build(f, OP_conv2d, DT_F32, SHAPE(1, 1, 6, 10, 10), 2, SHAPES(X, W), NULL, same);
    EXPECT_PRINTED(f, r, "conv2d %0, %1 stride=[1, 1] pad=[0, 2, 3, 1] dilation=[1, 1] groups=2 : f32[batch, 6, 10, 10]");
    r = build(f, OP_conv2d_grad_input, DT_F32, X, 2, SHAPES(Y, W), NULL, GEO);
    EXPECT_PRINTED(f, r, "conv2d_grad_input %3, %4 stride=[2, 2] pad=[1, 1] dilation=[1, 1] groups=2 : f32[batch, 4, 9, 9]");
    r = build(f, OP_conv2d_grad_weight, DT_F32, W, 2, SHAPES(X, Y), NULL, conv_attr(2, 1, 3, 2));
    EXPECT_PRINTED(f, r, "conv2d_grad_weight %6, %7 stride=[2, 2] pad=[1, 1] dilation=[3, 3] groups=2 : f32[6, 2, 3, 3]");
    Attr pool = pool_attr(3, 2, 1);
    pool.perm[1] = 2, pool.step[0] = 1, pool.start[1] = pool.start[3] = 0;
    r = build(f, OP_avgpool2d, DT_F32, PY, 1, SHAPES(PX), NULL, pool);
    EXPECT_PRINTED(f, r, "avgpool2d %9 size=[3, 2] stride=[1, 2] pad=[1, 0] : f32[batch, 3, 4, 4]");
    r = build(f, OP_maxpool2d_grad, DT_F32, PX, 2, SHAPES(PX, PY), NULL, pool_attr(3, 2, 1));
    EXPECT_PRINTED(f, r, "maxpool2d_grad %11, %12 size=[3, 3] stride=[2, 2] pad=[1, 1] : f32[batch, 3, 8, 8]");
    Attr up = {.flag = 1};
    up.perm[0] = 2, up.perm[1] = 3;
    r = build(f, OP_upsample2d, DT_F32, SHAPE(1, 1, 3, 8, 15), 1, SHAPES(SHAPE(1, 1, 3, 4, 5)), NULL, up);
    EXPECT_PRINTED(f, r, "upsample2d %14 scale=[2, 3] mode=bilinear : f32[batch, 3, 8, 15]");
    up.flag = 7; /* invalid IR still prints, with the raw mode */
    r = build(f, OP_upsample2d, DT_F32, SHAPE(1, 1, 3, 8, 15), 1, SHAPES(SHAPE(1, 1, 3, 4, 5)), NULL, up);
    EXPECT_PRINTED(f, r, "upsample2d %16 scale=[2, 3] mode=7 : f32[batch, 3, 8, 15]");
    Attr norm = {.f = {1e-4, 0.75, 2}};
    norm.perm[0] = 5;
    r = build(f, OP_lrn, DT_F32, SHAPE(1, 1, 6, 4), 1, SHAPES(SHAPE(1, 1, 6, 4)), NULL, norm);
    EXPECT_PRINTED(f, r, "lrn %18 size=5 alpha=0.0001 beta=0.75 k=2 : f32[batch, 6, 4]");
}

int main(void) {
    test_conv2d();
    test_conv2d_grads();
    test_pools();
    test_upsample();
    test_lrn();
    test_printer();
    arena_free(&arena);
    return check_done();
}
