/* ops.h — the IR op table (X-macro).
 *
 * OP(name, arity, flags, doc)
 *   arity: number of inputs, or -1 for variadic (1..IR_MAX_INPUTS)
 *   flags: OPF_* below
 *
 * Conventions every backend follows (interp.c is the reference):
 * - Elementwise ops take inputs of exactly the node's shape (the builder inserts explicit
 *   `broadcast` nodes; numpy rules). Comparisons produce f32 1.0/0.0 whatever the input type.
 * - Integer (i32) inputs are allowed for add sub mul div(trunc) maximum minimum neg abs,
 *   comparisons, select, cast, reshape/transpose/slice/concat/broadcast and the tensor/store ops.
 * - attr fields are documented per op; unused fields are zero.
 * - Ops with OPF_GRAD have a rule in grad.c; act_grad, *_grad ops are the hand-written
 *   gradient kernels of composite ops and have no gradient themselves.
 *
 * Adding an op: one line here, a case in interp.c, grad.c (if differentiable) and llvm.c.
 */

/* ---- leaves */
OP(input,      0, OPF_LEAF,          "function argument number attr.index")
OP(tensor,     0, OPF_LEAF,          "read module tensor attr.tensor (param, state, slot, step, hyper)")
OP(const,      0, OPF_LEAF,          "attr.f[0] splatted to the node shape, or attr.data (row-major) when non-NULL")
OP(batch_size, 0, OPF_LEAF,          "the run-time batch n, as a scalar of the node dtype")
OP(init_fill,  0, OPF_LEAF,          "initial value of module tensor attr.tensor per its InitSpec; seeded by the init seed")
OP(rand_uniform, 0, OPF_LEAF,        "U[0,1) of the node shape from the counter RNG: stream attr.index, counter from the step tensor attr.tensor")

/* ---- elementwise binary (same shape), f32 unless noted */
OP(add,      2, OPF_ELEM | OPF_COMM | OPF_GRAD, "a + b")
OP(sub,      2, OPF_ELEM | OPF_GRAD,            "a - b")
OP(mul,      2, OPF_ELEM | OPF_COMM | OPF_GRAD, "a * b")
OP(div,      2, OPF_ELEM | OPF_GRAD,            "a / b (i32: truncating)")
OP(pow,      2, OPF_ELEM | OPF_GRAD,            "a ^ b = powf(a, b)")
OP(maximum,  2, OPF_ELEM | OPF_COMM | OPF_GRAD, "max(a, b); gradient to a where a >= b")
OP(minimum,  2, OPF_ELEM | OPF_COMM | OPF_GRAD, "min(a, b); gradient to a where a <= b")
OP(eq,       2, OPF_ELEM | OPF_COMM | OPF_CMP,  "a == b ? 1 : 0 (f32)")
OP(ne,       2, OPF_ELEM | OPF_COMM | OPF_CMP,  "a != b ? 1 : 0 (f32)")
OP(lt,       2, OPF_ELEM | OPF_CMP,             "a < b ? 1 : 0 (f32)")
OP(le,       2, OPF_ELEM | OPF_CMP,             "a <= b ? 1 : 0 (f32)")
OP(gt,       2, OPF_ELEM | OPF_CMP,             "a > b ? 1 : 0 (f32)")
OP(ge,       2, OPF_ELEM | OPF_CMP,             "a >= b ? 1 : 0 (f32)")
OP(select,   3, OPF_ELEM | OPF_GRAD,            "c != 0 ? a : b")

/* ---- elementwise unary */
OP(neg,      1, OPF_ELEM | OPF_GRAD, "-x")
OP(exp,      1, OPF_ELEM | OPF_GRAD, "e^x")
OP(log,      1, OPF_ELEM | OPF_GRAD, "ln x")
OP(sqrt,     1, OPF_ELEM | OPF_GRAD, "sqrt x")
OP(abs,      1, OPF_ELEM | OPF_GRAD, "|x|; gradient sign(x)")
OP(sign,     1, OPF_ELEM,            "-1, 0 or 1")
OP(floor,    1, OPF_ELEM,            "floor x (schedules)")
OP(cos,      1, OPF_ELEM | OPF_GRAD, "cos x (schedules)")
OP(erf,      1, OPF_ELEM | OPF_GRAD, "erf x")
OP(cast,     1, OPF_ELEM,            "convert to the node dtype (f32 <-> i32, truncating)")
OP(stop_gradient, 1, OPF_ELEM,       "identity; no gradient flows through")
/* activations: gradient through act_grad, which recomputes from the input x */
OP(relu,         1, OPF_ELEM | OPF_GRAD | OPF_ACT, "max(x, 0)")
OP(leaky_relu,   1, OPF_ELEM | OPF_GRAD | OPF_ACT, "x > 0 ? x : attr.f[0]*x  (slope, default 0.01)")
OP(elu,          1, OPF_ELEM | OPF_GRAD | OPF_ACT, "x > 0 ? x : attr.f[0]*(e^x - 1)  (alpha)")
OP(selu,         1, OPF_ELEM | OPF_GRAD | OPF_ACT, "1.0507009873554805 * elu(x, 1.6732632423543772)")
OP(gelu,         1, OPF_ELEM | OPF_GRAD | OPF_ACT, "x/2 (1 + erf(x/sqrt 2)); attr.flag=1: tanh approximation")
OP(sigmoid,      1, OPF_ELEM | OPF_GRAD | OPF_ACT, "1 / (1 + e^-x)")
OP(tanh,         1, OPF_ELEM | OPF_GRAD | OPF_ACT, "tanh x")
OP(softplus,     1, OPF_ELEM | OPF_GRAD | OPF_ACT, "log(1 + e^(b x))/b, x if b x > threshold  (attr.f[0]=beta, attr.f[1]=threshold)")
OP(silu,         1, OPF_ELEM | OPF_GRAD | OPF_ACT, "x sigmoid(x)")
OP(mish,         1, OPF_ELEM | OPF_GRAD | OPF_ACT, "x tanh(softplus(x))")
OP(hard_sigmoid, 1, OPF_ELEM | OPF_GRAD | OPF_ACT, "relu6(x + 3) / 6")
OP(hard_swish,   1, OPF_ELEM | OPF_GRAD | OPF_ACT, "x relu6(x + 3) / 6")
OP(act_grad,     2, OPF_ELEM,                      "dy * f'(x) for activation attr.fwd_op (with its attrs); inputs (x, dy)")

/* ---- reductions */
OP(sum,    1, OPF_REDUCE | OPF_GRAD, "sum over axes attr.axes (bit i = axis i), attr.keepdims")
OP(mean,   1, OPF_REDUCE | OPF_GRAD, "mean over attr.axes (divides by the run-time count)")
OP(max,    1, OPF_REDUCE | OPF_GRAD, "max over attr.axes; gradient to the first maximum")
OP(argmax, 1, 0,                     "index (i32) of the first maximum along attr.axis; axis removed")

/* ---- linear algebra */
OP(matmul, 2, OPF_GRAD, "a[..., M, K] @ b[..., K, N]; attr.trans_a/trans_b transpose the last two axes; b may be 2-D and is then shared by every leading index")

/* ---- shape */
OP(reshape,   1, OPF_GRAD, "same values, node shape (row-major)")
OP(transpose, 1, OPF_GRAD, "out axis i = in axis attr.perm[i]")
OP(broadcast, 1, OPF_GRAD, "numpy broadcast to the node shape (input right-aligned, size-1 or missing axes repeat)")
OP(slice,     1, OPF_GRAD, "out[i] = in[attr.start + i*attr.step] per axis; counts from the node shape")
OP(concat,   -1, OPF_GRAD, "inputs joined along attr.axis")
OP(gather,    2, OPF_GRAD, "rows of table a[V, D...] at i32 indices b[...]: out[..., D...]; out-of-range index gives 0")
OP(scatter_add, 2, 0,      "gradient of gather: zeros of the node shape [V, D...], dy b[..., D...] added at i32 indices a")

/* ---- fused kernels (last axis) */
OP(softmax,           1, OPF_GRAD, "softmax over the last axis")
OP(log_softmax,       1, OPF_GRAD, "log softmax over the last axis")
OP(softmax_grad,      2, 0,        "inputs (y, dy): y * (dy - sum(dy*y, last axis))")
OP(log_softmax_grad,  2, 0,        "inputs (y, dy): dy - e^y * sum(dy, last axis)")
OP(cross_entropy,    -1, OPF_GRAD, "inputs (logits[..., C], labels i32[...][, weight[C]]): scalar mean over positions of -sum_c q_c log p_c, q = (1-s) onehot + s/C (s = attr.f[0]); weighted mean as PyTorch when weight given; labels out of [0,C) contribute 0 (ignore)")
OP(cross_entropy_grad, -1, 0,      "inputs (logits, labels[, weight], dloss scalar): d loss / d logits")

/* ---- effects */
OP(store, 1, OPF_EFFECT, "write the input into module tensor attr.tensor (visible to later reads in this function)")

/* ---- layers with kernels of their own
 * Spatial ops work on NCHW f32 tensors; the batch may only be axis 0. Window positions:
 * out[y] reads in[y*stride - pad_before + k*dilation], k = 0..K-1; positions outside
 * [0, in) are padding. Output size = (in + pad_before + pad_after - dilation*(K-1) - 1) / stride + 1
 * (floor). Attr usage: step[0], step[1] = stride (H, W); start[0], start[1] = padding before
 * (top, left), start[2], start[3] = padding after (bottom, right); perm[] as noted per op.
 * conv1d, maxpool/avgpool on [N, C, L] are lowered through these with H = 1. */
OP(conv2d,     -1, OPF_GRAD, "inputs x[N,C,H,W], w[O,C/g,KH,KW][, b[O]]: out[n,o,y,x] = b[o] + sum over c in o's group (C/g channels), ky, kx of x[n, c, y*sh - pt + ky*dh, x*sw - pl + kx*dw] * w[o, c, ky, kx]; zero padding; perm[0], perm[1] = dilation (H, W), perm[2] = groups g (input channel group of o = o / (O/g)); output [N, O, Ho, Wo]")
OP(maxpool2d,   1, OPF_GRAD, "x[N,C,H,W] -> [N,C,Ho,Wo]: max over the window perm[0] x perm[1] (KH, KW), stride step[0..1], padding start[0..3] (padded positions never win, as -inf); gradient to the first maximum in row-major window order")
OP(avgpool2d,   1, OPF_GRAD, "x[N,C,H,W] -> [N,C,Ho,Wo]: sum over the window perm[0] x perm[1], stride step[0..1], zero padding start[0..3], divided by KH*KW always (PyTorch's count_include_pad=True)")
OP(upsample2d,  1, OPF_GRAD, "x[N,C,H,W] -> [N,C,H*perm[0],W*perm[1]]: attr.flag=0 nearest: out[y,x] = in[y/sh, x/sw]; flag=1 bilinear with align_corners=False: source coordinate (y+0.5)/sh - 0.5 clamped below at 0, linear interpolation between floor and floor+1 (clamped to H-1), the same along W (PyTorch's F.interpolate)")
OP(lrn,         1, OPF_GRAD, "local response norm over channels (axis 1) of x[N,C,...], size n = perm[0], alpha = f[0], beta = f[1], k = f[2]: out[c] = x[c] / (k + alpha/n * sum_{c' = c - n/2}^{c + (n-1)/2} x[c']^2)^beta, channels outside [0, C) count as 0 (torch.nn.LocalResponseNorm)")
/* The LSTM over a whole sequence (batch first, zero initial state, PyTorch's gate order i, f,
 * g, o). Row (b, t) of its result holds the step's state and post-activation gates, each H
 * wide: ws[b,t] = [h | c | i | f | g | o]; the layer's output is the h part. */
/* The Elman RNN over a whole sequence (batch first, zero initial state): every hidden state. */
OP(rnn_seq,     2, OPF_GRAD, "inputs xw[B,T,H] (x W_ih^T + b_ih + b_hh, every step), w_hh[H,H]; attr.fwd_op the activation (tanh or relu); node shape [B,T,H]: for t = 0..T-1, with h_{-1} = 0: h_t = act(xw[b,t] + h_{t-1} w_hh^T)")
/* The GRU over a whole sequence (batch first, zero initial state, PyTorch's gate order r, z,
 * n). Row (b, t) of its result holds h and what the gradient needs: ws[b,t] = [h | r | z | n | hn]
 * with hn = h_{t-1} w_hn^T + b_hn (the recurrent part of n before r scales it). */
OP(gru_seq,     3, OPF_GRAD, "inputs xw[B,T,3H] (x W_ih^T + b_ih, every step), w_hh[3H,H], b_hh[3H]; node shape [B,T,5H]: for t = 0..T-1, with h_{-1} = 0 and q = h_{t-1} w_hh^T + b_hh: r = sigmoid(xw[0:H] + q[0:H]), z = sigmoid(xw[H:2H] + q[H:2H]), hn = q[2H:3H], n = tanh(xw[2H:3H] + r hn), h_t = n + z (h_{t-1} - n); ws[b,t] = [h_t, r, z, n, hn]")
OP(lstm_seq,    2, OPF_GRAD, "inputs xw[B,T,4H] (x W_ih^T + b_ih + b_hh, every step), w_hh[4H,H]; node shape [B,T,6H]: for t = 0..T-1, with h_{-1} = c_{-1} = 0 and p = xw[b,t] + h_{t-1} w_hh^T: i = sigmoid(p[0:H]), f = sigmoid(p[H:2H]), g = tanh(p[2H:3H]), o = sigmoid(p[3H:4H]), c_t = f c_{t-1} + i g, h_t = o tanh(c_t); ws[b,t] = [h_t, c_t, i, f, g, o]")

/* ---- gradient kernels (grad.c builds them with the attrs of the forward op they differentiate) */
OP(conv2d_grad_input,  2, 0, "inputs (dy[N,O,Ho,Wo], w[O,C/g,KH,KW]), conv2d's attrs; node shape [N,C,H,W] (x's): dx[n,c,i,j] = sum of dy[n,o,y,x] * w[o, c mod (C/g), ky, kx] over the o of c's group (o / (O/g) == c / (C/g)) and all ky, kx, y, x with y*sh - pt + ky*dh = i and x*sw - pl + kx*dw = j (the adjoint of conv2d in x)")
OP(conv2d_grad_weight, 2, 0, "inputs (x[N,C,H,W], dy[N,O,Ho,Wo]), conv2d's attrs; node shape [O,C/g,KH,KW] (w's): dw[o,c,ky,kx] = sum over n, y, x of dy[n,o,y,x] * x[n, (o / (O/g))*(C/g) + c, y*sh - pt + ky*dh, x*sw - pl + kx*dw], 0 where that position is padding")
OP(maxpool2d_grad,     2, 0, "inputs (x[N,C,H,W], dy[N,C,Ho,Wo]), maxpool2d's attrs; node shape x's: zeros, plus each dy[n,c,y,x] added at the position maxpool2d took for output (y, x): the first maximum of the window in row-major order, padding never chosen")
OP(rnn_seq_grad,       3, 0, "inputs (h[B,T,H] = rnn_seq(xw, w_hh), w_hh[H,H], d[B,T,H] = d loss/d h); attr.fwd_op as rnn_seq's; node shape [B,T,H] (xw's): dP = d loss/d xw, backwards from t = T-1 with dP_T = 0: dP_t = (d[t] + dP_{t+1} w_hh) act'(h_t), act' from the output: 1 - h^2 for tanh, [h > 0] for relu")
OP(gru_seq_grad,       3, 0, "inputs (ws[B,T,5H] = gru_seq(xw, w_hh, b_hh), w_hh[3H,H], d[B,T,5H] = d loss/d ws, or d[B,T,H]: its h part, the rest 0); node shape [B,T,4H]: dG_t = [dr', dz', dq_n, dn'] where dr', dz', dn' are the gradients of the pre-activations (d loss/d xw = [dr', dz', dn'], d loss/d q = [dr', dz', dq_n], q = h_{t-1} w_hh^T + b_hh), backwards from t = T-1 with dG_T = 0 and carry_T = 0, h_{-1} = 0: dh = d.h[t] + dG_{t+1}[0:3H] w_hh + carry; dn = dh (1 - z) + d.n[t]; dz = dh (h_{t-1} - n) + d.z[t]; dn' = dn (1 - n^2); dq_n = dn' r + d.hn[t]; dr = dn' hn + d.r[t]; dr' = dr r (1 - r); dz' = dz z (1 - z); carry = dh z")
OP(lstm_seq_grad,      3, 0, "inputs (ws[B,T,6H] = lstm_seq(xw, w_hh), w_hh[4H,H], d[B,T,6H] = d loss/d ws, or d[B,T,H]: its h part, the rest 0); node shape [B,T,4H] (xw's): dG = d loss/d xw, backwards from t = T-1 with dG_T = 0, dc_T f_T = 0, c_{-1} = 0: dh = d.h[t] + dG_{t+1} w_hh; tc = tanh(c_t); dc = d.c[t] + dh o (1 - tc^2) + dc_{t+1} f_{t+1}; do = dh tc + d.o[t]; di = dc g + d.i[t]; dg = dc i + d.g[t]; df = dc c_{t-1} + d.f[t]; dG_t = [di i (1-i), df f (1-f), dg (1 - g^2), do o (1-o)]")
