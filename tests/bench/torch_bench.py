#!/usr/bin/python3
"""torch_bench.py: the PyTorch side of `make bench` (docs/performance.md).

    /usr/bin/python3 tests/bench/torch_bench.py MODEL [--reps R] MODE...

MODEL is w1_mlp, w3_logreg, fashion_cnn or char_lstm: the same models as tests/bench/*.nn
and examples/*.nn, built from torch.nn with PyTorch's default initialization. MODE is one
of train, infer, infer1, mem=STEPS, epoch (one shuffled epoch of training, the counterpart
of `nnc train --epochs 1`). Output: one JSON object per line, as tests/bench/harness.c
prints, with seconds per call; the timing procedure is the harness's, line for line.

Set-up: one thread (torch.set_num_threads(1); the driver sets OPENBLAS_NUM_THREADS=1 and
OPENBLAS_CORETYPE=SkylakeX, PyTorch's fastest set-up on this machine). Inference is timed
both eagerly under torch.inference_mode() and as a frozen TorchScript module
(torch.jit.optimize_for_inference, which folds batchnorm into convolutions); the faster is
reported, with its name.
"""
import gzip
import json
import os
import struct
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

RING = 32
BLOCKS = 15
WARMUP_SECONDS = 0.1
BLOCK_SECONDS = 0.02
DATA_DIR = "/usr/share/datasets/fashion-mnist"
TEXT = "/usr/share/common-licenses/GPL-3"


def fail(msg):
    print(json.dumps({"error": msg}), flush=True)
    sys.exit(1)


def load_idx(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    _, _, kind, ndim = struct.unpack(">BBBB", raw[:4])
    if kind != 0x08:
        fail("%s: expected u8 data" % path)
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    return torch.frombuffer(bytearray(raw[4 + 4 * ndim:]), dtype=torch.uint8).reshape(dims)


# ---------------------------------------------------------------- models


class Mlp(nn.Module):
    """W1: 784-512-256-10 ReLU; tests/bench/w1_mlp.nn."""

    def __init__(self):
        super().__init__()
        self.h1 = nn.Linear(784, 512)
        self.h2 = nn.Linear(512, 256)
        self.logits = nn.Linear(256, 10)

    def forward(self, x):
        return self.logits(F.relu(self.h2(F.relu(self.h1(x)))))


class LogReg(nn.Module):
    """W3: logits = x @ W + b; tests/bench/w3_logreg.nn."""

    def __init__(self):
        super().__init__()
        self.W = nn.Parameter(nn.init.xavier_uniform_(torch.empty(784, 10)))
        self.b = nn.Parameter(torch.zeros(10))

    def forward(self, x):
        return x @ self.W + self.b


class ConvBnRelu(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 5, padding=2, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class Cnn(nn.Module):
    """W2: examples/fashion_cnn.nn."""

    def __init__(self):
        super().__init__()
        self.b1 = ConvBnRelu(1, 32)
        self.b2 = ConvBnRelu(32, 64)
        self.h = nn.Linear(3136, 256)
        self.logits = nn.Linear(256, 10)

    def forward(self, x):
        x = F.max_pool2d(self.b1(x), 2)
        x = F.max_pool2d(self.b2(x), 2)
        return self.logits(F.relu(self.h(torch.flatten(x, 1))))


class CharLstm(nn.Module):
    """W4: examples/char_lstm.nn: embedding 64, LSTM 128, dense 256 at every position."""

    def __init__(self):
        super().__init__()
        self.e = nn.Embedding(256, 64)
        self.h = nn.LSTM(64, 128, batch_first=True)
        self.logits = nn.Linear(128, 256)

    def forward(self, x):
        h, _ = self.h(self.e(x))
        return self.logits(h)


# name: (module, optimizer, batch, clip_norm, metric, x shape per sample, text model)
SPECS = {
    "w1_mlp": (Mlp, lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9), 64, None, False,
               (784,), False),
    "w3_logreg": (LogReg, lambda p: torch.optim.SGD(p, lr=0.1), 64, None, False, (784,), False),
    # the .nn models of W2 and W4 declare `metric accuracy`, which nnc's train_step computes:
    # the same is computed here
    "fashion_cnn": (Cnn, lambda p: torch.optim.Adam(p, lr=1e-3), 64, None, True, (1, 28, 28),
                    False),
    "char_lstm": (CharLstm, lambda p: torch.optim.Adam(p, lr=2e-3), 32, 5.0, True, (32,), True),
}


# ---------------------------------------------------------------- data


class Data:
    """Images as bytes (u8 [n, 784]) with labels, or a text as windows of 32 tokens."""

    def __init__(self, text, x_shape):
        self.text = text
        self.x_shape = x_shape
        if text:
            raw = open(TEXT, "rb").read()
            seq = x_shape[0]
            self.n = (len(raw) - 1) // seq
            tokens = torch.tensor(list(raw), dtype=torch.int64)
            self.x = tokens[:self.n * seq].reshape(self.n, seq)
            self.y = tokens[1:self.n * seq + 1].reshape(self.n, seq)
        else:
            self.images = load_idx(os.path.join(DATA_DIR, "train-images-idx3-ubyte.gz"))
            self.labels = load_idx(os.path.join(DATA_DIR, "train-labels-idx1-ubyte.gz")).long()
            self.n = self.images.shape[0]
            self.images = self.images.reshape(self.n, -1)

    def batch(self, first, n):
        idx = torch.arange(first, first + n) % self.n
        if self.text:
            return self.x[idx], self.y[idx]
        x = self.images[idx].float().div_(255.0).reshape((n,) + self.x_shape)
        return x, self.labels[idx]


# ---------------------------------------------------------------- timing


def time_calls(call):
    """Seconds per call (CPU, wall): medians over BLOCKS blocks, as harness.c does."""
    for _ in range(3):
        call()
    t0 = time.process_time()
    warm = 0
    while time.process_time() - t0 < WARMUP_SECONDS:
        call()
        warm += 1
    est = (time.process_time() - t0) / warm
    per_block = max(1, int(BLOCK_SECONDS / est + 0.5))
    cpu, wall = [], []
    for _ in range(BLOCKS):
        c0, w0 = time.process_time(), time.perf_counter()
        for _ in range(per_block):
            call()
        cpu.append((time.process_time() - c0) / per_block)
        wall.append((time.perf_counter() - w0) / per_block)
    cpu.sort()
    wall.sort()
    return cpu[BLOCKS // 2], wall[BLOCKS // 2]


def report(name, mode, rep, batch, cpu, wall, **extra):
    line = {"model": name, "backend": "pytorch", "mode": mode, "rep": rep, "batch": batch,
            "cpu": cpu, "wall": wall}
    line.update(extra)
    print(json.dumps(line), flush=True)


def make_train_step(model, opt, clip, metric):
    def step(x, y):
        opt.zero_grad(set_to_none=True)
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        loss.backward()
        if clip:
            nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        if metric:
            with torch.no_grad():
                (logits.argmax(-1) == y).float().mean()
        return loss
    return step


def inference_variants(model, example):
    """(name, fn) for eager inference and frozen TorchScript; the faster one is reported."""
    model.eval()

    def eager(x):
        with torch.inference_mode():
            return torch.softmax(model(x), -1)

    variants = [("eager", eager)]
    try:
        with torch.no_grad():
            scripted = torch.jit.optimize_for_inference(torch.jit.trace(model, example))

        def frozen(x):
            with torch.inference_mode():
                return torch.softmax(scripted(x), -1)

        frozen(example)
        variants.append(("torchscript-frozen", frozen))
    except Exception as e:  # a variant that fails is left out, not fatal
        print("torch_bench: frozen TorchScript unavailable: %s" % e, file=sys.stderr)
    return variants


def main():
    args = sys.argv[1:]
    if not args or args[0] not in SPECS:
        fail("usage: torch_bench.py {%s} [--reps R] MODE..." % ",".join(SPECS))
    name = args.pop(0)
    reps = 1
    if args[:1] == ["--reps"]:
        reps = int(args[1])
        args = args[2:]
    torch.set_num_threads(1)
    make_model, make_opt, batch, clip, metric, x_shape, text = SPECS[name]
    print(json.dumps({"model": name, "backend": "pytorch", "torch": torch.__version__,
                      "threads": torch.get_num_threads(),
                      "coretype": os.environ.get("OPENBLAS_CORETYPE", "")}), flush=True)
    data = Data(text, x_shape)
    for mode in args:
        if mode.startswith("mem="):
            # W6: images stay bytes, one batch at a time is converted (as harness.c does)
            steps = int(mode[4:])
            torch.manual_seed(1)
            model = make_model()
            step = make_train_step(model, make_opt(model.parameters()), clip, metric)
            c0, w0 = time.process_time(), time.perf_counter()
            for s in range(steps):
                step(*data.batch(s * batch, batch))
            report(name, "mem", 0, batch, (time.process_time() - c0) / steps,
                   (time.perf_counter() - w0) / steps)
            continue
        if mode == "epoch":
            # one epoch as `nnc train` runs it: the whole split converted to f32 up front,
            # a new permutation, a gathered minibatch per step (the last one partial)
            x_all, y_all = data.batch(0, data.n)
            for r in range(reps):
                torch.manual_seed(r + 1)
                model = make_model()
                step = make_train_step(model, make_opt(model.parameters()), clip, metric)
                c0, w0 = time.process_time(), time.perf_counter()
                order = torch.randperm(data.n)
                for first in range(0, data.n, batch):
                    idx = order[first:first + batch]
                    step(x_all[idx], y_all[idx])
                report(name, "epoch", r, batch, time.process_time() - c0,
                       time.perf_counter() - w0, samples=data.n)
            continue
        if mode not in ("train", "infer", "infer1"):
            fail("unknown mode %s" % mode)
        b = 1 if mode == "infer1" else batch
        ring = [data.batch(k * b, b) for k in range(min(RING, max(1, data.n // b)))]
        for r in range(reps):
            torch.manual_seed(r + 1)
            model = make_model()
            nxt = [0]
            if mode == "train":
                step = make_train_step(model, make_opt(model.parameters()), clip, metric)

                def call():
                    x, y = ring[nxt[0] % len(ring)]
                    nxt[0] += 1
                    step(x, y)

                cpu, wall = time_calls(call)
                report(name, mode, r, b, cpu, wall)
                continue
            best = None
            for variant, fn in inference_variants(model, ring[0][0]):
                def call(fn=fn):
                    x, _ = ring[nxt[0] % len(ring)]
                    nxt[0] += 1
                    fn(x)

                cpu, wall = time_calls(call)
                if best is None or cpu < best[0]:
                    best = (cpu, wall, variant)
            report(name, mode, r, b, best[0], best[1], variant=best[2])


if __name__ == "__main__":
    main()
