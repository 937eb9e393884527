#!/usr/bin/python3
"""gen.py — PyTorch reference data for nnc's numeric tests (tests/numeric/check.py).

Run with the Debian python (the one that has torch 1.13 and numpy):

    /usr/bin/python3 tests/ref/gen.py            # regenerate every case
    /usr/bin/python3 tests/ref/gen.py dense_mlp  # only the named cases

For each case it writes tests/ref/<case>/:
    model.nn                      the model under test (model name = case name)
    weights.safetensors           f32 parameters and states, PyTorch state_dict names
    <input>.npy                   one batch of inputs and labels (f32 '<f4', labels '<i4')
    train_<input>.npy             the training set of optimizer/schedule cases
    expect_<output>.npy           eval-mode forward (dropout off, batchnorm running stats)
    expect_grad.safetensors       train-mode loss and the gradient of every parameter
    expect_after_<K>.safetensors  parameters and states after K train steps
    cmd                           the nnc commands; check.py compares every file a command
                                  writes to $OUT/NAME with expect_NAME
and tests/numeric/<case>.test, the lit test running `check.py --case <case>`.

Precision: weights and inputs are drawn in f32 and stored in f32; the references are computed
in float64 from exactly those f32 values and rounded to f32 once, when stored. So the reference
carries no f32 noise of its own. Every case is also run in float32 PyTorch, and generation fails
when that run is not within half of check.py's tolerance of the f64 reference: a case must be
passable by a correct f32 implementation. Train cases must also move every parameter by far more
than the tolerance (and schedule cases must differ from a constant schedule), so a missing
update cannot pass.

Seeds: each case seeds torch from a CRC of its name, so adding a case changes no other case.
"""
import copy
import json
import math
import os
import shutil
import struct
import sys
import zlib

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
NUMERIC = os.path.join(ROOT, 'tests', 'numeric')

B = 4                 # batch of run/grad and of every train block
ATOL, RTOL = 1e-5, 1e-4   # check.py's defaults; the f32 self-check must stay within half

# ---------------------------------------------------------------- file writers


def write_safetensors(path, tensors):
    """safetensors: u64 LE header length, JSON header (sorted keys), raw LE data."""
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        a = np.asarray(tensors[name])   # (ascontiguousarray would make a scalar 1-D)
        dtype = {np.dtype('float32'): 'F32', np.dtype('int32'): 'I32',
                 np.dtype('float64'): 'F64', np.dtype('int64'): 'I64'}[a.dtype]
        data = a.astype(a.dtype.newbyteorder('<')).tobytes(order='C')
        header[name] = {'dtype': dtype, 'shape': list(a.shape),
                        'data_offsets': [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(',', ':')).encode()
    text += b' ' * (-len(text) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def f32(t):
    return t.detach().to(torch.float32).cpu().numpy()


# ---------------------------------------------------------------- cases

class Case:
    """One reference case.

    nn       the .nn source; its model is named like the case
    module   a torch nn.Module whose state_dict names are the .nn parameter names; its
             attribute `fwd(module, inputs, labels)` returns ({output: tensor}, loss)
    inputs   {name: np.ndarray} one batch of inputs (`input` declarations)
    labels   {name: np.ndarray} the matching labels (`label` declarations)
    run      eval-mode forward is checked (outputs of the .nn `output`s)
    grad     train-mode loss and gradients are checked
    train    None or a dict: steps (list of K), data ({name: array}, inputs and labels),
             optimizer(params) -> torch optimizer, schedule(opt) -> scheduler or None,
             clip_norm, clip_value
    """

    def __init__(self, name, nn_src, module, inputs, labels, run=True, grad=True, train=None):
        self.name, self.nn, self.module = name, nn_src, module
        self.inputs, self.labels = inputs, labels
        self.run, self.grad, self.train = run, grad, train


CASES = []


def case(fn):
    CASES.append(fn)
    return fn


def seed_for(name):
    torch.manual_seed(zlib.crc32(name.encode()))


def net(fwd, **layers):
    """An nn.Module holding the named layers (or nn.Parameters) and a forward function."""
    m = nn.Module()
    for k, v in layers.items():
        if isinstance(v, nn.Parameter):
            m.register_parameter(k, v)
        else:
            m.add_module(k, v)
    m.fwd = fwd
    return m


def randn(*shape, scale=1.0):
    return (torch.randn(*shape) * scale).numpy().astype(np.float32)


def labels(n_classes, *shape):
    return torch.randint(0, n_classes, shape).numpy().astype(np.int32)


def cls_train(F_in=6, C=3, n=5 * B, **kw):
    """Training data for a classifier with input x [n, F_in] and labels y [n]."""
    return dict(data={'x': randn(n, F_in), 'y': labels(C, n)}, **kw)


def long(y):
    return y.long()


# -- models shared by several cases

def mlp(F_in=6, H=8, C=3, act=torch.tanh):
    def fwd(m, x, y):
        h = act(m.h(x['x']))
        logits = m.logits(h)
        return {'p': F.softmax(logits, -1)}, F.cross_entropy(logits, long(y['y']))
    return net(fwd, h=nn.Linear(F_in, H), logits=nn.Linear(H, C))


def mlp_src(name, train=''):
    return f"""model {name} {{
  input  x: f32[batch, 6]
  label  y: i32[batch]
  h      = dense(x, 8) |> tanh
  logits = dense(h, 3)
  output p = softmax(logits)
  loss   cross_entropy(logits, y)
}}
""" + train


@case
def dense_mlp():
    src = """model dense_mlp {
  input  x: f32[batch, 4]
  label  y: i32[batch]
  h1     = dense(x, 8) |> tanh
  h2     = dense(h1, 8) |> relu
  logits = dense(h2, 3)
  output probs = softmax(logits)
  loss   cross_entropy(logits, y)
}
"""

    def fwd(m, x, y):
        h1 = torch.tanh(m.h1(x['x']))
        h2 = torch.relu(m.h2(h1))
        logits = m.logits(h2)
        return {'probs': F.softmax(logits, -1)}, F.cross_entropy(logits, long(y['y']))
    m = net(fwd, h1=nn.Linear(4, 8), h2=nn.Linear(8, 8), logits=nn.Linear(8, 3))
    return Case('dense_mlp', src, m, {'x': randn(B, 4)}, {'y': labels(3, B)})


# -- primitive math

@case
def prim_logreg():
    src = """model prim_logreg {
  input  x: f32[batch, 6]
  label  y: i32[batch]
  param  W: f32[6, 3] = xavier_uniform
  param  b: f32[3]    = zeros
  logits = x @ W + b
  output p = softmax(logits)
  loss   cross_entropy(logits, y) + 1e-2 * l2(W)
}
"""

    def fwd(m, x, y):
        logits = x['x'] @ m.W + m.b
        return ({'p': F.softmax(logits, -1)},
                F.cross_entropy(logits, long(y['y'])) + 1e-2 * (m.W ** 2).sum())
    m = net(fwd, W=nn.Parameter(torch.randn(6, 3) * 0.5), b=nn.Parameter(torch.randn(3) * 0.1))
    return Case('prim_logreg', src, m, {'x': randn(B, 6)}, {'y': labels(3, B)})


@case
def prim_broadcast():
    src = """model prim_broadcast {
  input  x: f32[batch, 6]
  label  t: f32[batch, 6]
  param  s: f32[6]    = ones
  param  b: f32[6]    = zeros
  param  P: f32[6, 1] = xavier_uniform
  param  c: f32[1, 6] = ones
  u = x * s + b                 # [batch, 6] with [6]
  v = u / (2 + x * x)           # scalar with [batch, 6]; division
  w = v - u @ P                 # [batch, 6] with [batch, 1]
  output o = w * c              # [batch, 6] with [1, 6]
  loss   mse(o, t)
}
"""

    def fwd(m, x, y):
        xx = x['x']
        u = xx * m.s + m.b
        v = u / (2 + xx * xx)
        w = v - u @ m.P
        o = w * m.c
        return {'o': o}, F.mse_loss(o, y['t'])
    m = net(fwd, s=nn.Parameter(torch.randn(6)), b=nn.Parameter(torch.randn(6) * 0.1),
            P=nn.Parameter(torch.randn(6, 1) * 0.5), c=nn.Parameter(torch.randn(1, 6)))
    return Case('prim_broadcast', src, m, {'x': randn(B, 6)}, {'t': randn(B, 6)})


@case
def prim_pow():
    src = """model prim_pow {
  input  x: f32[batch, 5]
  label  t: f32[batch, 5]
  param  s: f32[5] = ones
  a = x * s
  output z = a^2 + (a * a + 1)^0.5 - 0.1 * a^3
  loss   mean((z - t)^2)
}
"""

    def fwd(m, x, y):
        a = x['x'] * m.s
        z = a ** 2 + (a * a + 1) ** 0.5 - 0.1 * a ** 3
        return {'z': z}, ((z - y['t']) ** 2).mean()
    m = net(fwd, s=nn.Parameter(torch.randn(5)))
    return Case('prim_pow', src, m, {'x': randn(B, 5)}, {'t': randn(B, 5)})


@case
def prim_reduce():
    src = """model prim_reduce {
  input  x: f32[batch, 6]
  param  W: f32[6, 5] = xavier_uniform
  a  = x @ W
  s  = sum(a, axis=1)                    # [batch]
  mu = mean(a, axis=0)                   # [5], over the batch
  r  = a - mean(a, axis=1, keepdims=true)
  output o = r * mu
  output total = s
  loss   mean(s * s) + sum(r * r) / 10 + mean(o)
}
"""

    def fwd(m, x, y):
        a = x['x'] @ m.W
        s = a.sum(1)
        mu = a.mean(0)
        r = a - a.mean(1, keepdim=True)
        o = r * mu
        return {'o': o, 'total': s}, (s * s).mean() + (r * r).sum() / 10 + o.mean()
    m = net(fwd, W=nn.Parameter(torch.randn(6, 5) * 0.5))
    return Case('prim_reduce', src, m, {'x': randn(B, 6)}, {})


@case
def prim_max():
    src = """model prim_max {
  input  x: f32[batch, 6]
  param  W: f32[6, 5] = xavier_uniform
  a = x @ W
  output m = max(a, axis=1)                       # [batch]
  output c = max(a, axis=0, keepdims=true)        # [1, 5]
  loss   mean(m * m) + sum(c) + max(a)
}
"""

    def fwd(m, x, y):
        a = x['x'] @ m.W
        mx = a.max(1).values
        c = a.max(0, keepdim=True).values
        return {'m': mx, 'c': c}, (mx * mx).mean() + c.sum() + a.max()
    m = net(fwd, W=nn.Parameter(torch.randn(6, 5) * 0.5))
    return Case('prim_max', src, m, {'x': randn(B, 6)}, {})


@case
def prim_misc():
    # split (a tuple, indexed), erf, cos, stop_gradient, the swish alias of silu
    src = """model prim_misc {
  input  x: f32[batch, 6]
  label  t: f32[batch, 3]
  param  W: f32[6, 6] = xavier_uniform
  parts  = split(x @ W, 2)
  l      = parts[0]
  r      = parts[1]
  u      = l * erf(r) + cos(l) + stop_gradient(r) * l
  output o = swish(u)
  loss   mse(o, t)
}
"""

    def fwd(m, x, y):
        l, r = torch.split(x['x'] @ m.W, 3, -1)
        u = l * torch.erf(r) + torch.cos(l) + r.detach() * l
        o = F.silu(u)
        return {'o': o}, F.mse_loss(o, y['t'])
    m = net(fwd, W=nn.Parameter(torch.randn(6, 6) * 0.5))
    return Case('prim_misc', src, m, {'x': randn(B, 6)}, {'t': randn(B, 3)})


@case
def prim_slice():
    src = """model prim_slice {
  input  x: f32[batch, 6]
  label  t: f32[batch, 4]
  param  W: f32[6, 8] = xavier_uniform
  a = x @ W
  l = a[:, 0:4]
  r = a[:, 4:]
  e = a[:, ::2]
  output o = l * sigmoid(r) + e
  loss   mse(o, t)
}
"""

    def fwd(m, x, y):
        a = x['x'] @ m.W
        o = a[:, 0:4] * torch.sigmoid(a[:, 4:]) + a[:, ::2]
        return {'o': o}, F.mse_loss(o, y['t'])
    m = net(fwd, W=nn.Parameter(torch.randn(6, 8) * 0.5))
    return Case('prim_slice', src, m, {'x': randn(B, 6)}, {'t': randn(B, 4)})


@case
def prim_unary():
    src = """model prim_unary {
  input  x: f32[batch, 6]
  label  t: f32[batch, 6]
  param  W: f32[6, 6] = xavier_uniform
  a = x @ W
  output o = exp(-abs(a)) + log(1 + a * a) + sqrt(a * a + 1) - a
  loss   mse(o, t)
}
"""

    def fwd(m, x, y):
        a = x['x'] @ m.W
        o = torch.exp(-a.abs()) + torch.log(1 + a * a) + torch.sqrt(a * a + 1) - a
        return {'o': o}, F.mse_loss(o, y['t'])
    m = net(fwd, W=nn.Parameter(torch.randn(6, 6) * 0.5))
    return Case('prim_unary', src, m, {'x': randn(B, 6)}, {'t': randn(B, 6)})


@case
def prim_shape():
    src = """model prim_shape {
  input  x: f32[batch, 6]
  label  t: f32[batch, 14]
  param  W: f32[3, 4] = xavier_uniform
  a = reshape(x, [batch, 2, 3])
  b = a @ W                            # [batch, 2, 4]: a 2-D right operand is shared
  c = transpose(b, [0, 2, 1])          # [batch, 4, 2]
  output o = concat([flatten(c), x * 0.5], axis=1)   # [batch, 14]
  loss   mse(o, t)
}
"""

    def fwd(m, x, y):
        c = (x['x'].reshape(-1, 2, 3) @ m.W).permute(0, 2, 1)
        o = torch.cat([c.flatten(1), x['x'] * 0.5], 1)
        return {'o': o}, F.mse_loss(o, y['t'])
    m = net(fwd, W=nn.Parameter(torch.randn(3, 4) * 0.5))
    return Case('prim_shape', src, m, {'x': randn(B, 6)}, {'t': randn(B, 14)})


# -- activations: z = dense(x, 8); output a = act(z); loss mse(dense(a, 2), t)

ACTIVATIONS = [
    # (case, .nn call with z, torch function)
    ('relu', 'relu(z)', F.relu),
    ('leaky_relu', 'leaky_relu(z, slope=0.1)', lambda z: F.leaky_relu(z, 0.1)),
    ('leaky_relu_default', 'leaky_relu(z)', lambda z: F.leaky_relu(z, 0.01)),
    ('elu', 'elu(z, alpha=0.5)', lambda z: F.elu(z, 0.5)),
    ('selu', 'selu(z)', F.selu),
    ('gelu', 'gelu(z)', F.gelu),
    ('gelu_tanh', 'gelu(z, approximate="tanh")', lambda z: F.gelu(z, approximate='tanh')),
    ('sigmoid', 'sigmoid(z)', torch.sigmoid),
    ('tanh', 'tanh(z)', torch.tanh),
    ('softplus', 'softplus(z)', F.softplus),
    ('softplus_beta', 'softplus(z, beta=2, threshold=1)', lambda z: F.softplus(z, 2, 1)),
    ('silu', 'silu(z)', F.silu),
    ('mish', 'mish(z)', F.mish),
    ('hard_sigmoid', 'hard_sigmoid(z)', F.hardsigmoid),
    ('hard_swish', 'hard_swish(z)', F.hardswish),
    ('softmax', 'softmax(z)', lambda z: F.softmax(z, -1)),
    ('softmax_temperature', 'softmax(z, temperature=2.5)', lambda z: F.softmax(z / 2.5, -1)),
    ('log_softmax', 'log_softmax(z)', lambda z: F.log_softmax(z, -1)),
    ('log_softmax_temperature', 'log_softmax(z, temperature=0.5)',
     lambda z: F.log_softmax(z / 0.5, -1)),
]


def activation_case(act, call, fn):
    name = 'act_' + act
    src = f"""model {name} {{
  input  x: f32[batch, 6]
  label  t: f32[batch, 2]
  z = dense(x, 8)
  output a = {call}
  o = dense(a, 2)
  loss   mse(o, t)
}}
"""

    def fwd(m, x, y):
        a = fn(m.z(x['x']))
        return {'a': a}, F.mse_loss(m.o(a), y['t'])

    def make():
        seed_for(name)
        m = net(fwd, z=nn.Linear(6, 8), o=nn.Linear(8, 2))
        with torch.no_grad():
            m.z.weight.mul_(2.5)   # pre-activations spread over about [-5, 5]
        return Case(name, src, m, {'x': randn(B, 6, scale=1.5)}, {'t': randn(B, 2)})
    make.__name__ = name
    return make


for _act in ACTIVATIONS:
    CASES.append(activation_case(*_act))


# -- losses: one dense layer, then the loss under test

def loss_case(name, label, target, body, fwd_tail, C=3, seq=None, layer='logits'):
    """label: the .nn label declaration; body: the .nn lines after `layer = dense(x, C)`;
    fwd_tail(z, y) -> (outputs, loss) in PyTorch, z the dense output, y the labels."""
    shape_x = '[batch, 6]' if seq is None else '[batch, %d, 6]' % seq
    src = """model %s {
  input  x: f32%s
  label  %s
  %s = dense(x, %d)
%s}
""" % (name, shape_x, label, layer, C, ''.join('  %s\n' % l for l in body))

    def fwd(m, x, y):
        return fwd_tail(getattr(m, layer)(x['x']), y)
    m = net(fwd, **{layer: nn.Linear(6, C)})
    with torch.no_grad():
        getattr(m, layer).weight.mul_(2.0)
    xs = (B, 6) if seq is None else (B, seq, 6)
    return Case(name, src, m, {'x': randn(*xs)}, {label.split(':')[0]: target})


def regression_loss(name, call, fn, scale=1.0):
    return loss_case(name, 't: f32[batch, 3]', randn(B, 3, scale=scale),
                     ['output o', 'loss   %s' % call],
                     lambda o, y: ({'o': o}, fn(o, y['t'])), layer='o')


def classifier_loss(name, call, fn, target, C=3, seq=None):
    label = 'y: i32[batch]' if seq is None else 'y: i32[batch, %d]' % seq
    return loss_case(name, label, target, ['output p = softmax(logits)', 'loss   %s' % call],
                     lambda z, y: ({'p': F.softmax(z, -1)}, fn(z, y['y'].long())), C=C, seq=seq)


@case
def loss_mse():
    return regression_loss('loss_mse', 'mse(o, t)', F.mse_loss)


@case
def loss_mae():
    return regression_loss('loss_mae', 'mae(o, t)', F.l1_loss)


@case
def loss_huber():
    # targets both near and far from the outputs: both branches of the loss are taken
    return regression_loss('loss_huber', 'huber(o, t, delta=0.5)',
                           lambda o, t: F.huber_loss(o, t, delta=0.5), scale=1.5)


@case
def loss_cross_entropy():
    return classifier_loss('loss_cross_entropy', 'cross_entropy(logits, y)', F.cross_entropy,
                           labels(3, B))


@case
def loss_cross_entropy_smoothing():
    return classifier_loss('loss_cross_entropy_smoothing',
                           'cross_entropy(logits, y, smoothing=0.1)',
                           lambda l, y: F.cross_entropy(l, y, label_smoothing=0.1), labels(3, B))


CLASS_W = [1.0, 2.0, 0.5, 1.5]
CLASS_W_SRC = 'weight=[1.0, 2.0, 0.5, 1.5]'


def class_weight(ref):
    return torch.tensor(CLASS_W, dtype=ref.dtype)


@case
def loss_cross_entropy_weight():
    return classifier_loss('loss_cross_entropy_weight',
                           'cross_entropy(logits, y, %s)' % CLASS_W_SRC,
                           lambda l, y: F.cross_entropy(l, y, weight=class_weight(l)),
                           np.array([0, 1, 1, 3], np.int32), C=4)


@case
def loss_cross_entropy_smoothing_weight():
    # PyTorch: mean of (1-s) w[y] (-log p_y) + s/C sum_c w_c (-log p_c), divided by sum w[y]
    return classifier_loss('loss_cross_entropy_smoothing_weight',
                           'cross_entropy(logits, y, smoothing=0.2, %s)' % CLASS_W_SRC,
                           lambda l, y: F.cross_entropy(l, y, weight=class_weight(l),
                                                        label_smoothing=0.2),
                           np.array([2, 1, 0, 2], np.int32), C=4)


@case
def loss_cross_entropy_seq():
    # logits [batch, T, C], labels [batch, T]; PyTorch wants the classes on axis 1
    return classifier_loss('loss_cross_entropy_seq',
                           'cross_entropy(logits, y, smoothing=0.1, %s)' % CLASS_W_SRC,
                           lambda l, y: F.cross_entropy(l.transpose(1, 2), y,
                                                        weight=class_weight(l),
                                                        label_smoothing=0.1),
                           labels(4, B, 5), C=4, seq=5)


@case
def loss_hinge():
    return classifier_loss('loss_hinge', 'hinge(logits, y)', F.multi_margin_loss,
                           labels(4, B), C=4)


@case
def loss_hinge_margin():
    return classifier_loss('loss_hinge_margin', 'hinge(logits, y, margin=0.5)',
                           lambda l, y: F.multi_margin_loss(l, y, margin=0.5), labels(4, B), C=4)


@case
def loss_binary_cross_entropy():
    t = (torch.rand(B, 3) < 0.5).float().numpy()
    return loss_case('loss_binary_cross_entropy', 't: f32[batch, 3]', t,
                     ['output p = sigmoid(logits)', 'loss   binary_cross_entropy(logits, t)'],
                     lambda z, y: ({'p': torch.sigmoid(z)},
                                   F.binary_cross_entropy_with_logits(z, y['t'])))


@case
def loss_kl_div():
    t = F.softmax(torch.randn(B, 3) * 1.5, -1).numpy().astype(np.float32)

    def tail(z, y):
        lp = F.log_softmax(z, -1)
        return {'lp': lp}, F.kl_div(lp, y['t'], reduction='batchmean')
    return loss_case('loss_kl_div', 't: f32[batch, 3]', t,
                     ['output lp = log_softmax(logits)', 'loss   kl_div(lp, t)'], tail)


# -- regularizers

def reg_case(name, term, fn):
    src = f"""model {name} {{
  input  x: f32[batch, 6]
  label  y: i32[batch]
  h      = dense(x, 8) |> tanh
  logits = dense(h, 3)
  output p = softmax(logits)
  loss   cross_entropy(logits, y) + {term}
}}
"""

    def fwd(m, x, y):
        logits = m.logits(torch.tanh(m.h(x['x'])))
        return {'p': F.softmax(logits, -1)}, F.cross_entropy(logits, long(y['y'])) + fn(m)
    m = net(fwd, h=nn.Linear(6, 8), logits=nn.Linear(8, 3))
    return Case(name, src, m, {'x': randn(B, 6)}, {'y': labels(3, B)})


def reg_param_case(name, term, fn):
    """The regularizer on a declared param (reg_l1_l2 uses a layer's parameter by name)."""
    src = f"""model {name} {{
  input  x: f32[batch, 6]
  label  y: i32[batch]
  param  W: f32[6, 8] = xavier_uniform
  param  b: f32[8]    = zeros
  h      = tanh(x @ W + b)
  logits = dense(h, 3)
  output p = softmax(logits)
  loss   cross_entropy(logits, y) + {term}
}}
"""

    def fwd(m, x, y):
        logits = m.logits(torch.tanh(x['x'] @ m.W + m.b))
        return {'p': F.softmax(logits, -1)}, F.cross_entropy(logits, long(y['y'])) + fn(m)
    m = net(fwd, W=nn.Parameter(torch.randn(6, 8) * 0.5), b=nn.Parameter(torch.randn(8) * 0.1),
            logits=nn.Linear(8, 3))
    return Case(name, src, m, {'x': randn(B, 6)}, {'y': labels(3, B)})


@case
def reg_l1():
    return reg_param_case('reg_l1', '0.01 * l1(W)', lambda m: 0.01 * m.W.abs().sum())


@case
def reg_l2():
    return reg_param_case('reg_l2', '0.01 * l2(W)', lambda m: 0.01 * (m.W ** 2).sum())


@case
def reg_l1_l2():
    return reg_case('reg_l1_l2', '0.02 * l1(logits.weight) + 0.05 * l2(h.weight) + 0.1 * l2(h.bias)',
                    lambda m: 0.02 * m.logits.weight.abs().sum() + 0.05 * (m.h.weight ** 2).sum()
                    + 0.1 * (m.h.bias ** 2).sum())


# -- optimizers: the mlp, 20 samples, batch 4, 5 steps (one epoch), constant schedule

OPTIMIZERS = [
    ('sgd', 'sgd(lr=0.1)', lambda p: torch.optim.SGD(p, lr=0.1)),
    ('sgd_momentum', 'sgd(lr=0.1, momentum=0.9)',
     lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)),
    ('sgd_dampening', 'sgd(lr=0.1, momentum=0.9, dampening=0.5)',
     lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, dampening=0.5)),
    ('sgd_nesterov', 'sgd(lr=0.1, momentum=0.9, nesterov=true)',
     lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True)),
    ('sgd_weight_decay', 'sgd(lr=0.1, momentum=0.9, weight_decay=0.01)',
     lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01)),
    ('adagrad', 'adagrad(lr=0.1)', lambda p: torch.optim.Adagrad(p, lr=0.1)),
    ('adagrad_options',
     'adagrad(lr=0.1, lr_decay=0.1, weight_decay=0.01, initial_accumulator_value=0.1, eps=1e-6)',
     lambda p: torch.optim.Adagrad(p, lr=0.1, lr_decay=0.1, weight_decay=0.01,
                                   initial_accumulator_value=0.1, eps=1e-6)),
    ('rmsprop', 'rmsprop(lr=0.01, alpha=0.9)',
     lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.9)),
    ('rmsprop_centered', 'rmsprop(lr=0.01, alpha=0.9, centered=true)',
     lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.9, centered=True)),
    ('rmsprop_momentum', 'rmsprop(lr=0.01, alpha=0.9, momentum=0.5)',
     lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.9, momentum=0.5)),
    ('rmsprop_all', 'rmsprop(lr=0.01, momentum=0.5, centered=true, weight_decay=0.01, eps=1e-6)',
     lambda p: torch.optim.RMSprop(p, lr=0.01, momentum=0.5, centered=True, weight_decay=0.01,
                                   eps=1e-6)),
    ('adam', 'adam(lr=0.01)', lambda p: torch.optim.Adam(p, lr=0.01)),
    ('adam_betas', 'adam(lr=0.01, betas=(0.8, 0.95), eps=1e-6)',
     lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.8, 0.95), eps=1e-6)),
    ('adam_amsgrad', 'adam(lr=0.01, amsgrad=true)',
     lambda p: torch.optim.Adam(p, lr=0.01, amsgrad=True)),
    ('adam_weight_decay', 'adam(lr=0.01, weight_decay=0.1)',
     lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=0.1)),
    ('adamw', 'adamw(lr=0.01, weight_decay=0.1)',
     lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1)),
    ('adamw_amsgrad', 'adamw(lr=0.01, betas=(0.85, 0.99), weight_decay=0.05, amsgrad=true)',
     lambda p: torch.optim.AdamW(p, lr=0.01, betas=(0.85, 0.99), weight_decay=0.05,
                                 amsgrad=True)),
]


def optimizer_case(opt, call, make_opt):
    name = 'opt_' + opt
    train = f"""
train {name} {{
  batch     = {B}
  epochs    = 1
  optimizer = {call}
}}
"""

    def make():
        seed_for(name)
        m = mlp()
        return Case(name, mlp_src(name, train), m, {'x': randn(B, 6)}, {'y': labels(3, B)},
                    run=False, grad=False,
                    train=cls_train(steps=[5], optimizer=make_opt))
    make.__name__ = name
    return make


for _opt in OPTIMIZERS:
    CASES.append(optimizer_case(*_opt))


@case
def train_clip_norm():
    src = mlp_src('train_clip_norm', f"""
train train_clip_norm {{
  batch     = {B}
  epochs    = 1
  optimizer = sgd(lr=0.5, momentum=0.5)
  clip_norm = 0.1
}}
""")
    m = mlp()
    return Case('train_clip_norm', src, m, {'x': randn(B, 6)}, {'y': labels(3, B)},
                run=False, grad=False,
                train=cls_train(steps=[5], clip_norm=0.1,
                                optimizer=lambda p: torch.optim.SGD(p, lr=0.5, momentum=0.5)))


@case
def train_clip_value():
    src = mlp_src('train_clip_value', f"""
train train_clip_value {{
  batch      = {B}
  epochs     = 1
  optimizer  = sgd(lr=0.5)
  clip_value = 0.05
}}
""")
    m = mlp()
    return Case('train_clip_value', src, m, {'x': randn(B, 6)}, {'y': labels(3, B)},
                run=False, grad=False,
                train=cls_train(steps=[5], clip_value=0.05,
                                optimizer=lambda p: torch.optim.SGD(p, lr=0.5)))


@case
def train_accumulate():
    # 5 batches with accumulate = 2: updates after batches 2 and 4 with the mean of the two
    # gradients; batch 5 is only accumulated. Not Adam: it would not see mean versus sum.
    src = mlp_src('train_accumulate', f"""
train train_accumulate {{
  batch      = {B}
  epochs     = 1
  optimizer  = sgd(lr=0.2, momentum=0.9)
  accumulate = 2
}}
""")
    m = mlp()
    return Case('train_accumulate', src, m, {'x': randn(B, 6)}, {'y': labels(3, B)},
                run=False, grad=False,
                train=cls_train(steps=[5], accumulate=2,
                                optimizer=lambda p: torch.optim.SGD(p, lr=0.2, momentum=0.9)))


# -- schedules: one batch per epoch (dataset size == batch), 6 steps = 6 epochs, plain SGD so
#    every step's change is lr * gradient.

S = 6   # steps (= epochs) of schedule cases


def warmup_then(w, inner):
    """Linear warmup over w epochs, multiplying the schedule: factor (e + 1) / w for e < w."""
    return lambda e: min(1.0, (e + 1) / w) * inner(e)


def cosine_factor(lr, eta_min, T):
    return lambda e: (eta_min + (lr - eta_min) * (1 + math.cos(math.pi * e / T)) / 2) / lr


SCHEDULES = [
    ('constant', 'constant', None),
    ('step', 'step(step_size=2, gamma=0.5)',
     lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.5)),
    ('exp', 'exp(gamma=0.7)', lambda o: torch.optim.lr_scheduler.ExponentialLR(o, gamma=0.7)),
    ('cosine', 'cosine(eta_min=0.01)',
     lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=S, eta_min=0.01)),
    ('sgdr', 'sgdr(t0=2, t_mult=2, eta_min=0.01)',
     lambda o: torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(o, T_0=2, T_mult=2,
                                                                    eta_min=0.01)),
    ('cyclic', 'cyclic(max_lr=0.5, step_size=2)',
     lambda o: torch.optim.lr_scheduler.CyclicLR(o, base_lr=0.1, max_lr=0.5, step_size_up=2,
                                                 cycle_momentum=False)),
    ('onecycle', 'onecycle(max_lr=0.5)',
     lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.5, total_steps=S,
                                                   cycle_momentum=False)),
    ('warmup', 'constant(warmup=3)',
     lambda o: torch.optim.lr_scheduler.LambdaLR(o, warmup_then(3, lambda e: 1.0))),
    ('cosine_warmup', 'cosine(eta_min=0.01, warmup=2)',
     lambda o: torch.optim.lr_scheduler.LambdaLR(
         o, warmup_then(2, cosine_factor(0.1, 0.01, S)))),
]


def schedule_case(sched, call, make_sched):
    name = 'sched_' + sched
    train = f"""
train {name} {{
  batch     = {B}
  epochs    = {S}
  optimizer = sgd(lr=0.1)
  schedule  = {call}
}}
"""

    def make():
        seed_for(name)
        m = mlp()
        return Case(name, mlp_src(name, train), m, {'x': randn(B, 6)}, {'y': labels(3, B)},
                    run=False, grad=False,
                    train=dict(data={'x': randn(B, 6, scale=2), 'y': labels(3, B)}, steps=[S],
                               optimizer=lambda p: torch.optim.SGD(p, lr=0.1),
                               schedule=make_sched))
    make.__name__ = name
    return make


for _s in SCHEDULES:
    CASES.append(schedule_case(*_s))


# -- layers

@case
def layernorm():
    src = """model layernorm {
  input  x: f32[batch, 6]
  label  y: i32[batch]
  h      = dense(x, 8)
  n      = layernorm(h) |> relu
  logits = dense(n, 3)
  output p = softmax(logits)
  loss   cross_entropy(logits, y)
}
"""

    def fwd(m, x, y):
        logits = m.logits(F.relu(m.n(m.h(x['x']))))
        return {'p': F.softmax(logits, -1)}, F.cross_entropy(logits, long(y['y']))
    m = net(fwd, h=nn.Linear(6, 8), n=nn.LayerNorm(8), logits=nn.Linear(8, 3))
    with torch.no_grad():
        m.n.weight.copy_(1 + 0.3 * torch.randn(8))
        m.n.bias.copy_(0.2 * torch.randn(8))
    return Case('layernorm', src, m, {'x': randn(B, 6)}, {'y': labels(3, B)})


@case
def batchnorm():
    src = f"""model batchnorm {{
  input  x: f32[batch, 6]
  label  y: i32[batch]
  h      = dense(x, 8, bias=false)   # batchnorm cancels a bias: its gradient is 0
  bn     = batchnorm(h)
  logits = dense(relu(bn), 3)
  output p = softmax(logits)
  loss   cross_entropy(logits, y)
}}

train batchnorm {{
  batch     = {B}
  epochs    = 1
  optimizer = sgd(lr=0.1)
}}
"""

    def fwd(m, x, y):
        logits = m.logits(F.relu(m.bn(m.h(x['x']))))
        return {'p': F.softmax(logits, -1)}, F.cross_entropy(logits, long(y['y']))
    m = net(fwd, h=nn.Linear(6, 8, bias=False), bn=nn.BatchNorm1d(8), logits=nn.Linear(8, 3))
    with torch.no_grad():   # running statistics far from the batch's, so modes differ
        m.bn.weight.copy_(1 + 0.3 * torch.randn(8))
        m.bn.bias.copy_(0.2 * torch.randn(8))
        m.bn.running_mean.copy_(0.5 * torch.randn(8))
        m.bn.running_var.copy_(0.5 + torch.rand(8))
    return Case('batchnorm', src, m, {'x': randn(B, 6)}, {'y': labels(3, B)},
                train=cls_train(steps=[1, 5],
                                optimizer=lambda p: torch.optim.SGD(p, lr=0.1)))


@case
def batchnorm_options():
    src = f"""model batchnorm_options {{
  input  x: f32[batch, 6]
  label  y: i32[batch]
  h      = dense(x, 8, bias=false)
  bn     = batchnorm(h, momentum=0.3, eps=1e-3)
  logits = dense(tanh(bn), 3)
  output p = softmax(logits)
  loss   cross_entropy(logits, y)
}}

train batchnorm_options {{
  batch     = {B}
  epochs    = 1
  optimizer = sgd(lr=0.1)
}}
"""

    def fwd(m, x, y):
        logits = m.logits(torch.tanh(m.bn(m.h(x['x']))))
        return {'p': F.softmax(logits, -1)}, F.cross_entropy(logits, long(y['y']))
    m = net(fwd, h=nn.Linear(6, 8, bias=False), bn=nn.BatchNorm1d(8, eps=1e-3, momentum=0.3),
            logits=nn.Linear(8, 3))
    with torch.no_grad():
        m.bn.running_mean.copy_(0.5 * torch.randn(8))
        m.bn.running_var.copy_(0.5 + torch.rand(8))
    return Case('batchnorm_options', src, m, {'x': randn(B, 6)}, {'y': labels(3, B)},
                train=cls_train(steps=[2], optimizer=lambda p: torch.optim.SGD(p, lr=0.1)))


@case
def layernorm_3d():
    # layernorm over the last axis of [batch, T, F] with a custom eps
    src = f"""model layernorm_3d {{
  input  x: f32[batch, {T}, 6]
  label  y: i32[batch, {T}]
  n      = layernorm(x, eps=1e-3)
  logits = dense(n, 3)
  output p = softmax(logits)
  loss   cross_entropy(logits, y)
}}
"""

    def fwd(m, x, y):
        logits = m.logits(m.n(x['x']))
        return ({'p': F.softmax(logits, -1)},
                F.cross_entropy(logits.transpose(1, 2), long(y['y'])))
    m = net(fwd, n=nn.LayerNorm(6, eps=1e-3), logits=nn.Linear(6, 3))
    with torch.no_grad():
        m.n.weight.copy_(1 + 0.3 * torch.randn(6))
        m.n.bias.copy_(0.2 * torch.randn(6))
    return Case('layernorm_3d', src, m, {'x': randn(B, T, 6, scale=2)}, {'y': labels(3, B, T)})


@case
def dropout():
    # Only inference: training-mode masks come from nnc's own RNG, not PyTorch's.
    src = """model dropout {
  input  x: f32[batch, 6]
  label  y: i32[batch]
  h      = dense(x, 8) |> relu
  d      = dropout(h, 0.5)
  logits = dense(d, 3)
  output p = softmax(logits)
  loss   cross_entropy(logits, y)
}
"""

    def fwd(m, x, y):
        logits = m.logits(F.dropout(F.relu(m.h(x['x'])), 0.5, m.training))
        return {'p': F.softmax(logits, -1)}, F.cross_entropy(logits, long(y['y']))
    m = net(fwd, h=nn.Linear(6, 8), logits=nn.Linear(8, 3))
    return Case('dropout', src, m, {'x': randn(B, 6)}, {'y': labels(3, B)}, grad=False)


T = 5   # sequence length of sequence cases


def seq_head_case(name, src, layer_name, layer, in_name='x', in_arr=None, C=3, H=8):
    """x [batch, T, F] -> layer -> dense per position -> cross_entropy over [batch, T]."""
    def fwd(m, x, y):
        h = getattr(m, layer_name)
        if isinstance(h, (nn.LSTM, nn.GRU, nn.RNN)):
            seq, _ = h(x[in_name])
        elif isinstance(h, nn.MultiheadAttention):
            xx = x[in_name]
            mask = torch.triu(torch.ones(xx.shape[1], xx.shape[1], dtype=torch.bool), 1)
            seq, _ = h(xx, xx, xx, attn_mask=mask, need_weights=False)
        else:
            seq = h(x[in_name].long())
        logits = m.logits(seq)
        return ({'p': F.softmax(logits, -1)},
                F.cross_entropy(logits.transpose(1, 2), long(y['y'])))
    m = net(fwd, **{layer_name: layer, 'logits': nn.Linear(H, C)})
    return Case(name, src, m, {in_name: in_arr}, {'y': labels(C, B, T)})


def seq_src(name, decl, line):
    return f"""model {name} {{
  input  {decl}
  label  y: i32[batch, {T}]
  {line}
  logits = dense(h, 3)
  output p = softmax(logits)
  loss   cross_entropy(logits, y)
}}
"""


@case
def embedding():
    return seq_head_case('embedding',
                         seq_src('embedding', f'ids: i32[batch, {T}]', 'h      = embedding(ids, 10, 8)'),
                         'h', nn.Embedding(10, 8), 'ids', labels(10, B, T))


@case
def lstm():
    return seq_head_case('lstm', seq_src('lstm', f'x: f32[batch, {T}, 4]', 'h      = lstm(x, 8)'),
                         'h', nn.LSTM(4, 8, batch_first=True), in_arr=randn(B, T, 4))


@case
def gru():
    return seq_head_case('gru', seq_src('gru', f'x: f32[batch, {T}, 4]', 'h      = gru(x, 8)'),
                         'h', nn.GRU(4, 8, batch_first=True), in_arr=randn(B, T, 4))


@case
def rnn():
    return seq_head_case('rnn', seq_src('rnn', f'x: f32[batch, {T}, 4]', 'h      = rnn(x, 8)'),
                         'h', nn.RNN(4, 8, batch_first=True), in_arr=randn(B, T, 4))


@case
def multi_head_attention():
    c = seq_head_case('multi_head_attention',
                      seq_src('multi_head_attention', f'x: f32[batch, {T}, 8]',
                              'h      = multi_head_attention(x, heads=2, causal=true)'),
                      'h', nn.MultiheadAttention(8, 2, batch_first=True), in_arr=randn(B, T, 8))
    with torch.no_grad():   # PyTorch starts these biases at zero; make them matter
        c.module.h.in_proj_bias.copy_(0.1 * torch.randn(24))
        c.module.h.out_proj.bias.copy_(0.1 * torch.randn(8))
    return c


@case
def attention():
    # parameter-free scaled dot-product attention on projections made by dense layers
    src = f"""model attention {{
  input  x: f32[batch, {T}, 8]
  label  y: i32[batch, {T}]
  q      = dense(x, 8)
  k      = dense(x, 8)
  v      = dense(x, 6)
  h      = attention(q, k, v, heads=2, causal=true)     # [batch, T, 6]
  logits = dense(h, 3)
  output p = softmax(logits)
  loss   cross_entropy(logits, y)
}}
"""

    def heads(t):   # [B, T, D] -> [B, 2, T, D/2]
        return t.reshape(t.shape[0], t.shape[1], 2, -1).transpose(1, 2)

    def fwd(m, x, y):
        xx = x['x']
        q, k, v = heads(m.q(xx)), heads(m.k(xx)), heads(m.v(xx))
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
        scores = scores.masked_fill(mask, -math.inf)
        h = (F.softmax(scores, -1) @ v).transpose(1, 2).reshape(xx.shape[0], T, -1)
        logits = m.logits(h)
        return ({'p': F.softmax(logits, -1)},
                F.cross_entropy(logits.transpose(1, 2), long(y['y'])))
    m = net(fwd, q=nn.Linear(8, 8), k=nn.Linear(8, 8), v=nn.Linear(8, 6),
            logits=nn.Linear(6, 3))
    with torch.no_grad():
        m.q.weight.mul_(2.0)   # sharper attention than the default init gives
    return Case('attention', src, m, {'x': randn(B, T, 8)}, {'y': labels(3, B, T)})


@case
def lstm_layers():
    return seq_head_case('lstm_layers',
                         seq_src('lstm_layers', f'x: f32[batch, {T}, 4]', 'h      = lstm(x, 8, layers=2)'),
                         'h', nn.LSTM(4, 8, num_layers=2, batch_first=True), in_arr=randn(B, T, 4))


@case
def gru_layers():
    return seq_head_case('gru_layers',
                         seq_src('gru_layers', f'x: f32[batch, {T}, 4]', 'h      = gru(x, 8, layers=2)'),
                         'h', nn.GRU(4, 8, num_layers=2, batch_first=True), in_arr=randn(B, T, 4))


@case
def rnn_relu():
    return seq_head_case('rnn_relu',
                         seq_src('rnn_relu', f'x: f32[batch, {T}, 4]', "h      = rnn(x, 8, act=\"relu\")"),
                         'h', nn.RNN(4, 8, nonlinearity='relu', batch_first=True),
                         in_arr=randn(B, T, 4))


@case
def char_lstm():
    # W4's shape in miniature: embedding -> lstm -> dense, cross-entropy per position, Adam.
    src = f"""model char_lstm {{
  input  ids: i32[batch, {T}]
  label  y: i32[batch, {T}]
  e      = embedding(ids, 12, 6)
  h      = lstm(e, 8)
  logits = dense(h, 12)
  output p = softmax(logits)
  loss   cross_entropy(logits, y)
}}

train char_lstm {{
  batch     = {B}
  epochs    = 1
  optimizer = adam(lr=0.01)
}}
"""

    def fwd(m, x, y):
        seq, _ = m.h(m.e(x['ids'].long()))
        logits = m.logits(seq)
        return ({'p': F.softmax(logits, -1)},
                F.cross_entropy(logits.transpose(1, 2), long(y['y'])))
    m = net(fwd, e=nn.Embedding(12, 6), h=nn.LSTM(6, 8, batch_first=True),
            logits=nn.Linear(8, 12))
    return Case('char_lstm', src, m, {'ids': labels(12, B, T)}, {'y': labels(12, B, T)},
                train=dict(data={'ids': labels(12, 3 * B, T), 'y': labels(12, 3 * B, T)},
                           steps=[3], optimizer=lambda p: torch.optim.Adam(p, lr=0.01)))


# -- convolution and pooling (NCHW, weights OIHW)

@case
def conv2d():
    src = """model conv2d {
  input  x: f32[batch, 2, 6, 6]
  label  y: i32[batch]
  c      = conv2d(x, 4, kernel=3, pad=1) |> relu
  p      = maxpool(c, 2)                  # [batch, 4, 3, 3]
  logits = dense(flatten(p), 3)
  output probs = softmax(logits)
  loss   cross_entropy(logits, y)
}
"""

    def fwd(m, x, y):
        p = F.max_pool2d(F.relu(m.c(x['x'])), 2)
        logits = m.logits(p.flatten(1))
        return {'probs': F.softmax(logits, -1)}, F.cross_entropy(logits, long(y['y']))
    m = net(fwd, c=nn.Conv2d(2, 4, 3, padding=1), logits=nn.Linear(36, 3))
    return Case('conv2d', src, m, {'x': randn(B, 2, 6, 6)}, {'y': labels(3, B)})


@case
def conv2d_options():
    src = """model conv2d_options {
  input  x: f32[batch, 4, 9, 9]
  label  y: i32[batch]
  a      = conv2d(x, 6, kernel=3, stride=2, pad=1) |> tanh      # [batch, 6, 5, 5]
  b      = conv2d(a, 6, kernel=3, dilation=2, groups=2, bias=false) |> tanh   # [batch, 6, 1, 1]
  s      = avgpool(a, 2)                                        # [batch, 6, 2, 2]
  logits = dense(flatten(s), 3) + dense(flatten(b), 3, name="skip")
  output probs = softmax(logits)
  loss   cross_entropy(logits, y)
}
"""

    def fwd(m, x, y):
        a = torch.tanh(m.a(x['x']))
        b = torch.tanh(m.b(a))
        s_ = F.avg_pool2d(a, 2)
        logits = m.logits(s_.flatten(1)) + m.skip(b.flatten(1))
        return {'probs': F.softmax(logits, -1)}, F.cross_entropy(logits, long(y['y']))
    m = net(fwd, a=nn.Conv2d(4, 6, 3, stride=2, padding=1),
            b=nn.Conv2d(6, 6, 3, dilation=2, groups=2, bias=False),
            logits=nn.Linear(24, 3), skip=nn.Linear(6, 3))
    return Case('conv2d_options', src, m, {'x': randn(B, 4, 9, 9)}, {'y': labels(3, B)})


@case
def conv1d():
    src = """model conv1d {
  input  x: f32[batch, 3, 10]
  label  y: i32[batch]
  c      = conv1d(x, 4, kernel=3, stride=1, pad=1) |> relu     # [batch, 4, 10]
  p      = maxpool(c, 2)                                       # [batch, 4, 5]
  logits = dense(flatten(p), 3)
  output probs = softmax(logits)
  loss   cross_entropy(logits, y)
}
"""

    def fwd(m, x, y):
        p = F.max_pool1d(F.relu(m.c(x['x'])), 2)
        logits = m.logits(p.flatten(1))
        return {'probs': F.softmax(logits, -1)}, F.cross_entropy(logits, long(y['y']))
    m = net(fwd, c=nn.Conv1d(3, 4, 3, padding=1), logits=nn.Linear(20, 3))
    return Case('conv1d', src, m, {'x': randn(B, 3, 10)}, {'y': labels(3, B)})


@case
def pool_options():
    # overlapping windows with stride and padding; avgpool counts the padding (PyTorch default)
    src = """model pool_options {
  input  x: f32[batch, 2, 7, 7]
  label  y: i32[batch]
  c      = conv2d(x, 3, kernel=3, pad=1)
  a      = maxpool(c, 3, stride=2, pad=1)                      # [batch, 3, 4, 4]
  b      = avgpool(c, 3, stride=2, pad=1)                      # [batch, 3, 4, 4]
  logits = dense(flatten(a - b), 3)
  output probs = softmax(logits)
  loss   cross_entropy(logits, y)
}
"""

    def fwd(m, x, y):
        c = m.c(x['x'])
        a = F.max_pool2d(c, 3, stride=2, padding=1)
        b = F.avg_pool2d(c, 3, stride=2, padding=1)
        logits = m.logits((a - b).flatten(1))
        return {'probs': F.softmax(logits, -1)}, F.cross_entropy(logits, long(y['y']))
    m = net(fwd, c=nn.Conv2d(2, 3, 3, padding=1), logits=nn.Linear(48, 3))
    return Case('pool_options', src, m, {'x': randn(B, 2, 7, 7)}, {'y': labels(3, B)})


@case
def upsample_lrn():
    src = """model upsample_lrn {
  input  x: f32[batch, 3, 3, 3]
  label  y: i32[batch]
  c      = conv2d(x, 4, kernel=1)
  n      = upsample(c, 2)                                      # nearest, [batch, 4, 6, 6]
  b      = upsample(c, 2, mode="bilinear")                     # align_corners=False
  l      = lrn(n + b, size=3, alpha=0.1, beta=0.75, k=1)
  logits = dense(global_avgpool(l * l), 3)
  output probs = softmax(logits)
  loss   cross_entropy(logits, y)
}
"""

    def fwd(m, x, y):
        c = m.c(x['x'])
        n = F.interpolate(c, scale_factor=2, mode='nearest')
        b = F.interpolate(c, scale_factor=2, mode='bilinear', align_corners=False)
        l_ = F.local_response_norm(n + b, 3, alpha=0.1, beta=0.75, k=1.0)
        logits = m.logits((l_ * l_).mean((2, 3)))
        return {'probs': F.softmax(logits, -1)}, F.cross_entropy(logits, long(y['y']))
    m = net(fwd, c=nn.Conv2d(3, 4, 1), logits=nn.Linear(4, 3))
    with torch.no_grad():
        m.c.weight.mul_(3.0)
    return Case('upsample_lrn', src, m, {'x': randn(B, 3, 3, 3)}, {'y': labels(3, B)})


@case
def conv_bn():
    # W2's block: conv without bias, batchnorm over channels, relu, global average pooling.
    src = f"""model conv_bn {{
  input  x: f32[batch, 2, 6, 6]
  label  y: i32[batch]
  c      = conv2d(x, 4, kernel=3, pad=1, bias=false)
  bn     = batchnorm(c)
  g      = global_avgpool(relu(bn))       # [batch, 4]
  logits = dense(g, 3)
  output probs = softmax(logits)
  loss   cross_entropy(logits, y)
}}

train conv_bn {{
  batch     = {B}
  epochs    = 1
  optimizer = sgd(lr=0.1, momentum=0.9)
}}
"""

    def fwd(m, x, y):
        g = F.relu(m.bn(m.c(x['x']))).mean((2, 3))
        logits = m.logits(g)
        return {'probs': F.softmax(logits, -1)}, F.cross_entropy(logits, long(y['y']))
    m = net(fwd, c=nn.Conv2d(2, 4, 3, padding=1, bias=False), bn=nn.BatchNorm2d(4),
            logits=nn.Linear(4, 3))
    with torch.no_grad():
        m.bn.weight.copy_(1 + 0.3 * torch.randn(4))
        m.bn.bias.copy_(0.2 * torch.randn(4))
        m.bn.running_mean.copy_(0.5 * torch.randn(4))
        m.bn.running_var.copy_(0.5 + torch.rand(4))
    return Case('conv_bn', src, m, {'x': randn(B, 2, 6, 6)}, {'y': labels(3, B)},
                train=dict(data={'x': randn(3 * B, 2, 6, 6), 'y': labels(3, 3 * B)}, steps=[1, 3],
                           optimizer=lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)))


# -- layer options the cases above leave out (the audit of issue 6)

@case
def conv2d_same():
    # pad="same" with an even kernel height (the odd padding after), a (KH, KW) kernel,
    # a dilation pair; then a pair stride and pair padding
    src = """model conv2d_same {
  input  x: f32[batch, 2, 5, 6]
  label  y: i32[batch]
  a      = conv2d(x, 4, kernel=(2, 3), pad="same", dilation=(1, 2)) |> tanh   # [batch, 4, 5, 6]
  b      = conv2d(a, 3, kernel=(3, 1), stride=(2, 1), pad=(1, 0)) |> tanh     # [batch, 3, 3, 6]
  logits = dense(flatten(b), 3)
  output probs = softmax(logits)
  loss   cross_entropy(logits, y)
}
"""

    def fwd(m, x, y):
        b = torch.tanh(m.b(torch.tanh(m.a(x['x']))))
        logits = m.logits(b.flatten(1))
        return {'probs': F.softmax(logits, -1)}, F.cross_entropy(logits, long(y['y']))
    m = net(fwd, a=nn.Conv2d(2, 4, (2, 3), padding='same', dilation=(1, 2)),
            b=nn.Conv2d(4, 3, (3, 1), stride=(2, 1), padding=(1, 0)),
            logits=nn.Linear(54, 3))
    return Case('conv2d_same', src, m, {'x': randn(B, 2, 5, 6)}, {'y': labels(3, B)})


@case
def conv1d_options():
    # conv1d with pad="same" and dilation, then stride and groups without bias; 1-D avgpool
    # with padding, maxpool with stride 1, global_avgpool over L
    src = """model conv1d_options {
  input  x: f32[batch, 4, 12]
  label  y: i32[batch]
  a      = conv1d(x, 6, kernel=3, pad="same", dilation=2) |> tanh            # [batch, 6, 12]
  b      = conv1d(a, 4, kernel=3, stride=2, groups=2, bias=false) |> tanh   # [batch, 4, 5]
  p      = avgpool(b, 3, stride=2, pad=1)                                    # [batch, 4, 3]
  q      = maxpool(a, 2, stride=1)                                           # [batch, 6, 11]
  logits = dense(concat([flatten(p), global_avgpool(q)], axis=1), 3)
  output probs = softmax(logits)
  loss   cross_entropy(logits, y)
}
"""

    def fwd(m, x, y):
        a = torch.tanh(m.a(x['x']))
        b = torch.tanh(m.b(a))
        p = F.avg_pool1d(b, 3, stride=2, padding=1)
        q = F.max_pool1d(a, 2, stride=1)
        logits = m.logits(torch.cat([p.flatten(1), q.mean(2)], 1))
        return {'probs': F.softmax(logits, -1)}, F.cross_entropy(logits, long(y['y']))
    m = net(fwd, a=nn.Conv1d(4, 6, 3, padding='same', dilation=2),
            b=nn.Conv1d(6, 4, 3, stride=2, groups=2, bias=False),
            logits=nn.Linear(18, 3))
    return Case('conv1d_options', src, m, {'x': randn(B, 4, 12)}, {'y': labels(3, B)})


@case
def batchnorm_3d():
    # batchnorm over the channels of [batch, C, L] (nn.BatchNorm1d on 3-D input): statistics
    # over batch and L, the unbiased running variance with n = batch * L
    src = f"""model batchnorm_3d {{
  input  x: f32[batch, 3, 5]
  label  y: i32[batch]
  c      = conv1d(x, 4, kernel=3, pad=1, bias=false)
  bn     = batchnorm(c, momentum=0.2)
  logits = dense(flatten(relu(bn)), 3)
  output probs = softmax(logits)
  loss   cross_entropy(logits, y)
}}

train batchnorm_3d {{
  batch     = {B}
  epochs    = 1
  optimizer = sgd(lr=0.1)
}}
"""

    def fwd(m, x, y):
        logits = m.logits(F.relu(m.bn(m.c(x['x']))).flatten(1))
        return {'probs': F.softmax(logits, -1)}, F.cross_entropy(logits, long(y['y']))
    m = net(fwd, c=nn.Conv1d(3, 4, 3, padding=1, bias=False), bn=nn.BatchNorm1d(4, momentum=0.2),
            logits=nn.Linear(20, 3))
    with torch.no_grad():
        m.bn.weight.copy_(1 + 0.3 * torch.randn(4))
        m.bn.bias.copy_(0.2 * torch.randn(4))
        m.bn.running_mean.copy_(0.5 * torch.randn(4))
        m.bn.running_var.copy_(0.5 + torch.rand(4))
    return Case('batchnorm_3d', src, m, {'x': randn(B, 3, 5)}, {'y': labels(3, B)},
                train=dict(data={'x': randn(3 * B, 3, 5), 'y': labels(3, 3 * B)}, steps=[1, 3],
                           optimizer=lambda p: torch.optim.SGD(p, lr=0.1)))


@case
def attention_cross():
    # cross-attention (Tq = 3 queries, Tk = 5 keys, Dv != D): one head without a mask (the
    # defaults), four heads, two causal heads (top-left aligned mask on [Tq, Tk]); and
    # multi_head_attention with separate keys/values, not causal
    src = """model attention_cross {
  input  x: f32[batch, 3, 8]
  input  z: f32[batch, 5, 8]
  label  y: i32[batch, 3]
  q      = dense(x, 8)
  k      = dense(z, 8)
  v      = dense(z, 4)
  a      = attention(q, k, v)                          # [batch, 3, 4]
  b      = attention(q, k, v, heads=4)
  c      = attention(q, k, v, heads=2, causal=true)
  m      = multi_head_attention(x, z, heads=4)        # [batch, 3, 8]
  logits = dense(concat([a, b, c, m], axis=-1), 3)
  output p = softmax(logits)
  loss   cross_entropy(logits, y)
}
"""

    def att(q, k, v, h, causal):
        Bq, Tq, Tk = q.shape[0], q.shape[1], k.shape[1]

        def split(t):
            return t.reshape(Bq, t.shape[1], h, -1).transpose(1, 2)
        qs, ks, vs = split(q), split(k), split(v)
        s = qs @ ks.transpose(-1, -2) / math.sqrt(qs.shape[-1])
        if causal:
            s = s.masked_fill(torch.triu(torch.ones(Tq, Tk, dtype=torch.bool), 1), -math.inf)
        return (F.softmax(s, -1) @ vs).transpose(1, 2).reshape(Bq, Tq, -1)

    def fwd(m, x, y):
        xx, zz = x['x'], x['z']
        q, k, v = m.q(xx), m.k(zz), m.v(zz)
        mo, _ = m.m(xx, zz, zz, need_weights=False)
        h = torch.cat([att(q, k, v, 1, False), att(q, k, v, 4, False), att(q, k, v, 2, True), mo], -1)
        logits = m.logits(h)
        return ({'p': F.softmax(logits, -1)},
                F.cross_entropy(logits.transpose(1, 2), long(y['y'])))
    m = net(fwd, q=nn.Linear(8, 8), k=nn.Linear(8, 8), v=nn.Linear(8, 4),
            m=nn.MultiheadAttention(8, 4, batch_first=True), logits=nn.Linear(20, 3))
    with torch.no_grad():
        m.q.weight.mul_(2.0)
        m.m.in_proj_weight.mul_(2.0)
        m.m.in_proj_bias.copy_(0.1 * torch.randn(24))
        m.m.out_proj.bias.copy_(0.1 * torch.randn(8))
    return Case('attention_cross', src, m, {'x': randn(B, 3, 8), 'z': randn(B, 5, 8)},
                {'y': labels(3, B, 3)})


@case
def shape_ops():
    # permute, reshape with -1, split by sizes and into equal parts, transpose without perm
    # (the last two axes), a negative-step slice, an integer index, concat of four
    src = """model shape_ops {
  input  x: f32[batch, 2, 3, 4]
  label  t: f32[batch, 32]
  param  W: f32[4, 4] = xavier_uniform
  a  = x @ W                                  # [batch, 2, 3, 4]
  p  = permute(a, (0, 3, 1, 2))               # [batch, 4, 2, 3]
  r  = reshape(p, (4, -1))                    # [batch, 4, 6]
  s  = split(r, (2, 4))                       # [batch, 4, 2], [batch, 4, 4]
  u  = split(r, 2, axis=1)                    # two [batch, 2, 6]
  tt = transpose(u[0])                        # [batch, 6, 2]
  s1 = s[1]
  v  = s1[:, 3:0:-1, 1:4:2]                   # [batch, 3, 2]
  u1 = u[-1]
  w  = u1[:, 1, :]                            # [batch, 6]
  output o = concat([flatten(s[0]), flatten(tt), flatten(v), w], axis=1)   # [batch, 32]
  loss   mse(o, t)
}
"""

    def fwd(m, x, y):
        a = x['x'] @ m.W
        r = a.permute(0, 3, 1, 2).reshape(a.shape[0], 4, -1)
        s0, s1 = torch.split(r, [2, 4], -1)
        u0, u1 = torch.split(r, 2, 1)
        tt = u0.transpose(-1, -2)
        v = s1[:, [3, 2, 1], 1:4:2]
        w = u1[:, 1, :]
        o = torch.cat([s0.flatten(1), tt.flatten(1), v.flatten(1), w], 1)
        return {'o': o}, F.mse_loss(o, y['t'])
    m = net(fwd, W=nn.Parameter(torch.randn(4, 4) * 0.5))
    return Case('shape_ops', src, m, {'x': randn(B, 2, 3, 4)}, {'t': randn(B, 32)})


@case
def upsample_options():
    # pair scales (nearest and bilinear), lrn with an even size over [N, C, H, W], and lrn
    # with its defaults over [N, C, L]
    src = """model upsample_options {
  input  x: f32[batch, 3, 3, 4]
  label  y: i32[batch]
  c      = conv2d(x, 4, kernel=1)
  n      = upsample(c, (2, 3))                                 # [batch, 4, 6, 12]
  b      = upsample(c, (3, 2), mode="bilinear")                # [batch, 4, 9, 8]
  l      = lrn(c, size=2, alpha=0.3, beta=0.5, k=2)
  d      = lrn(reshape(c, (4, 12)))                            # size 5, alpha 1e-4, beta 0.75, k 1
  logits = dense(concat([global_avgpool(n * n), global_avgpool(b * b), flatten(l), flatten(d)], axis=1), 3)
  output probs = softmax(logits)
  loss   cross_entropy(logits, y)
}
"""

    def fwd(m, x, y):
        c = m.c(x['x'])
        n = F.interpolate(c, scale_factor=(2, 3), mode='nearest')
        b = F.interpolate(c, scale_factor=(3, 2), mode='bilinear', align_corners=False)
        l_ = F.local_response_norm(c, 2, alpha=0.3, beta=0.5, k=2.0)
        d = F.local_response_norm(c.reshape(c.shape[0], 4, 12), 5)
        h = torch.cat([(n * n).mean((2, 3)), (b * b).mean((2, 3)), l_.flatten(1), d.flatten(1)], 1)
        logits = m.logits(h)
        return {'probs': F.softmax(logits, -1)}, F.cross_entropy(logits, long(y['y']))
    m = net(fwd, c=nn.Conv2d(3, 4, 1), logits=nn.Linear(104, 3))
    with torch.no_grad():
        m.c.weight.mul_(3.0)
    return Case('upsample_options', src, m, {'x': randn(B, 3, 3, 4)}, {'y': labels(3, B)})


@case
def pool_pairs():
    # pooling windows, strides and padding given as (H, W) pairs
    src = """model pool_pairs {
  input  x: f32[batch, 2, 6, 7]
  label  y: i32[batch]
  a      = maxpool(x, (2, 3), stride=(2, 1), pad=(1, 1))            # [batch, 2, 4, 7]
  b      = avgpool(x, (3, 2), stride=(1, 2), pad=(1, 0))            # [batch, 2, 6, 3]
  logits = dense(concat([flatten(a), flatten(b)], axis=1), 3)
  output probs = softmax(logits)
  loss   cross_entropy(logits, y)
}
"""

    def fwd(m, x, y):
        a = F.max_pool2d(x['x'], (2, 3), stride=(2, 1), padding=(1, 1))
        b = F.avg_pool2d(x['x'], (3, 2), stride=(1, 2), padding=(1, 0))
        logits = m.logits(torch.cat([a.flatten(1), b.flatten(1)], 1))
        return {'probs': F.softmax(logits, -1)}, F.cross_entropy(logits, long(y['y']))
    m = net(fwd, logits=nn.Linear(92, 3))
    return Case('pool_pairs', src, m, {'x': randn(B, 2, 6, 7)}, {'y': labels(3, B)})


@case
def rnn_layers():
    # two relu layers, the activation given as a bare name
    return seq_head_case('rnn_layers',
                         seq_src('rnn_layers', f'x: f32[batch, {T}, 4]', 'h      = rnn(x, 8, act=relu, layers=2)'),
                         'h', nn.RNN(4, 8, num_layers=2, nonlinearity='relu', batch_first=True),
                         in_arr=randn(B, T, 4))


# ---------------------------------------------------------------- reference computation

def to_torch(arrs, dtype):
    return {k: torch.tensor(v, dtype=dtype if v.dtype == np.float32 else torch.int64)
            for k, v in arrs.items()}


def state_of(m):
    return {k: f32(v) for k, v in m.state_dict().items() if not k.endswith('num_batches_tracked')}


def reference(c, dtype):
    """Everything check.py compares, computed with the module in dtype (from the f32 weights)."""
    m = copy.deepcopy(c.module).to(dtype)
    m.fwd = c.module.fwd
    x, y = to_torch(c.inputs, dtype), to_torch(c.labels, dtype)
    out = {}
    if c.run:
        m.eval()
        with torch.no_grad():
            outs, _ = m.fwd(m, x, y)
        for k, v in outs.items():
            out['expect_%s.npy' % k] = f32(v)
    if c.grad:
        m.train()
        m.zero_grad()
        _, loss = m.fwd(m, x, y)
        loss.backward()
        g = {'loss': f32(loss)}
        for k, p in m.named_parameters():
            g[k] = f32(p.grad)
        out['expect_grad.safetensors'] = g
    if c.train:
        for K in c.train['steps']:
            out['expect_after_%d.safetensors' % K] = train(c, dtype, K, c.train.get('schedule'))
    return out


def train(c, dtype, K, schedule):
    t = c.train
    m = copy.deepcopy(c.module).to(dtype)
    m.fwd = c.module.fwd
    m.train()
    data = to_torch(t['data'], dtype)
    n = len(next(iter(t['data'].values())))
    steps_per_epoch = n // B
    opt = t['optimizer'](m.parameters())
    sched = schedule(opt) if schedule else None
    in_names = set(c.inputs)
    k = t.get('accumulate', 1)   # an update every k batches, with the mean of their gradients
    opt.zero_grad()
    for step in range(K):
        lo = (step % steps_per_epoch) * B
        batch = {n: v[lo:lo + B] for n, v in data.items()}
        _, loss = m.fwd(m, {n: v for n, v in batch.items() if n in in_names},
                        {n: v for n, v in batch.items() if n not in in_names})
        (loss / k).backward()
        if (step + 1) % k:
            continue
        if t.get('clip_value'):
            torch.nn.utils.clip_grad_value_(m.parameters(), t['clip_value'])
        if t.get('clip_norm'):
            torch.nn.utils.clip_grad_norm_(m.parameters(), t['clip_norm'])
        opt.step()
        opt.zero_grad()
        if sched is not None and (step + 1) % steps_per_epoch == 0:
            sched.step()
    return state_of(m)


def worst_ratio(a, b):
    """max over elements of |a - b| / (atol + rtol |b|): <= 1 passes check.py."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b) / (ATOL + RTOL * np.abs(b))))


def compare(ref, other):
    worst = 0.0
    for k, v in ref.items():
        if isinstance(v, dict):
            for n in v:
                worst = max(worst, worst_ratio(other[k][n], v[n]))
        else:
            worst = max(worst, worst_ratio(other[k], v))
    return worst


# ---------------------------------------------------------------- writing a case

def cmd_lines(c, ref):
    run_in = ' '.join('--input %s=%s.npy' % (k, k) for k in c.inputs)
    all_in = ' '.join('--input %s=%s.npy' % (k, k) for k in list(c.inputs) + list(c.labels))
    lines = []
    if c.run:
        outs = [k[len('expect_'):-len('.npy')] for k in ref if k.endswith('.npy')]
        lines.append('nnc run model.nn --weights weights.safetensors %s %s' % (
            run_in, ' '.join('--output %s=$OUT/%s.npy' % (o, o) for o in outs)))
    if c.grad:
        lines.append('nnc grad model.nn --weights weights.safetensors %s '
                     '--out $OUT/grad.safetensors' % all_in)
    if c.train:
        tin = ' '.join('--input %s=train_%s.npy' % (k, k) for k in c.train['data'])
        for K in c.train['steps']:
            lines.append('nnc train model.nn --init weights.safetensors %s --steps %d '
                         '--no-shuffle --save $OUT/after_%d.safetensors' % (tin, K, K))
    return lines


def write_case(c, ref):
    d = os.path.join(HERE, c.name)
    if os.path.isdir(d):
        shutil.rmtree(d)
    os.makedirs(d)
    with open(os.path.join(d, 'model.nn'), 'w') as f:
        f.write('# %s: reference data by tests/ref/gen.py (PyTorch %s); do not edit.\n'
                % (c.name, torch.__version__.split('a')[0]) + c.nn)
    write_safetensors(os.path.join(d, 'weights.safetensors'), state_of(c.module))
    for k, v in list(c.inputs.items()) + list(c.labels.items()):
        np.save(os.path.join(d, k + '.npy'), v)
    if c.train:
        for k, v in c.train['data'].items():
            np.save(os.path.join(d, 'train_%s.npy' % k), v)
    for k, v in ref.items():
        if isinstance(v, dict):
            write_safetensors(os.path.join(d, k), v)
        else:
            np.save(os.path.join(d, k), v)
    with open(os.path.join(d, 'cmd'), 'w') as f:
        f.write('# Run from this directory; $OUT is a scratch directory. check.py compares\n'
                '# every $OUT/NAME a command writes with expect_NAME here.\n')
        for line in cmd_lines(c, ref):
            f.write(line + '\n')
    with open(os.path.join(NUMERIC, c.name + '.test'), 'w') as f:
        f.write('# Numeric reference test (generated by tests/ref/gen.py): nnc against PyTorch.\n'
                '# RUN: %%{numeric_check} --case %s\n' % c.name)


def check_sensitivity(c, ref):
    """Train cases must move the parameters far beyond the tolerance; schedules must matter."""
    if not c.train:
        return
    init = state_of(c.module)
    for K in c.train['steps']:
        after = ref['expect_after_%d.safetensors' % K]
        for k, p in c.module.named_parameters():
            r = worst_ratio(after[k], init[k])
            if r < 30:
                raise SystemExit('%s: %s moves only %.1f tolerances in %d steps' % (c.name, k, r, K))
    if c.train.get('schedule'):
        const = train(c, torch.float64, c.train['steps'][-1], None)
        r = compare(const, ref['expect_after_%d.safetensors' % c.train['steps'][-1]])
        if r < 30:
            raise SystemExit('%s: the schedule changes the result by only %.1f tolerances' % (c.name, r))


def main(argv):
    torch.set_num_threads(1)
    only = set(argv[1:])
    known = {fn.__name__ for fn in CASES}
    for n in only - known:
        raise SystemExit('gen.py: no case named %s' % n)
    os.makedirs(NUMERIC, exist_ok=True)
    if not only:   # a full run also drops cases that no longer exist
        for e in os.listdir(HERE):
            if os.path.isfile(os.path.join(HERE, e, 'cmd')) and e not in known:
                shutil.rmtree(os.path.join(HERE, e))
        for e in os.listdir(NUMERIC):
            if e.endswith('.test') and e[:-5] not in known:
                with open(os.path.join(NUMERIC, e)) as f:
                    if 'generated by tests/ref/gen.py' in f.read():
                        os.remove(os.path.join(NUMERIC, e))
    total = 0
    for fn in CASES:
        if only and fn.__name__ not in only:
            continue
        seed_for(fn.__name__)
        c = fn()
        assert c.name == fn.__name__, (c.name, fn.__name__)
        ref = reference(c, torch.float64)
        r32 = compare(ref, reference(c, torch.float32))
        if r32 > 0.5:
            raise SystemExit('%s: float32 PyTorch is %.2f tolerances from the f64 reference; '
                             'the case is too sensitive to rounding' % (c.name, r32))
        check_sensitivity(c, ref)
        write_case(c, ref)
        size = sum(os.path.getsize(os.path.join(HERE, c.name, e))
                   for e in os.listdir(os.path.join(HERE, c.name)))
        total += size
        print('%-40s f32 torch at %.3f of tolerance  %6d bytes' % (c.name, r32, size))
    print('%d bytes' % total)


if __name__ == '__main__':
    main(sys.argv)
