#!/usr/bin/env python3
"""dropout_train.py — dropout in training mode, which no PyTorch reference can check (its
masks come from nnc's counter-based RNG): inverted dropout, the drop rate, reproducibility.

The model's loss is sum(dropout(x * w, p)) with x and w ones, so `nnc grad` gives the mask
itself: dL/dw = keep / (1 - p). Checked:
  - every gradient is 0 or 1 / (1 - p) (inverted scaling), and the share of zeros is p
    within 4 standard deviations;
  - the same weights, seed and step give the same mask, bit for bit, run after run and in
    the interpreter (--interp) as in compiled code;
  - another seed (--seed) or another step counter (the `step` tensor, which train_step
    advances) gives another mask, about 2 p (1 - p) of the positions differing.

    python3 tests/numeric/dropout_train.py --nnc build/nnc --dir SCRATCH
Standard library only; prints 'ok' lines and exits 1 on a failure.
"""
import argparse
import json
import math
import os
import struct
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check  # noqa: E402

N, P = 4000, 0.3
MODEL = """model dropout_mask {
  input x: f32[batch, %d]
  param w: f32[%d] = ones
  output o = x
  loss sum(dropout(x * w, %g))
}
""" % (N, N, P)


def write_npy(path, shape, values):
    hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }" % ''.join('%d,' % d for d in shape)
    hdr += ' ' * ((64 - (10 + len(hdr) + 1) % 64) % 64) + '\n'
    with open(path, 'wb') as f:
        f.write(b'\x93NUMPY\x01\x00' + struct.pack('<H', len(hdr)) + hdr.encode())
        f.write(struct.pack('<%df' % len(values), *values))


def write_safetensors(path, tensors):
    header, data = {}, b''
    for name, (dtype, shape, raw) in sorted(tensors.items()):
        header[name] = {'dtype': dtype, 'shape': list(shape), 'data_offsets': [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header).encode()
    text += b' ' * (-len(text) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(text)) + text + data)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--nnc', required=True)
    ap.add_argument('--dir', required=True)
    o = ap.parse_args()
    os.makedirs(o.dir, exist_ok=True)
    d = lambda name: os.path.join(o.dir, name)  # noqa: E731
    with open(d('dropout_mask.nn'), 'w') as f:
        f.write(MODEL)
    write_npy(d('x.npy'), (1, N), [1.0] * N)
    ones = struct.pack('<%df' % N, *[1.0] * N)
    write_safetensors(d('w.safetensors'), {'w': ('F32', (N,), ones)})
    write_safetensors(d('w_step3.safetensors'), {'w': ('F32', (N,), ones),
                                                  'step': ('I32', (), struct.pack('<i', 3))})
    failed = []

    def grad(out, weights='w.safetensors', *extra):
        subprocess.run([o.nnc, 'grad', d('dropout_mask.nn'), '--weights', d(weights), '--input',
                        'x=' + d('x.npy'), '--out', d(out)] + list(extra), check=True,
                       stdout=subprocess.DEVNULL)
        return check.read_safetensors(d(out))['w'].values

    def expect(cond, what):
        print(('ok   ' if cond else 'FAIL ') + what)
        if not cond:
            failed.append(what)

    base = grad('g.safetensors')
    scale = 1 / (1 - P)
    expect(all(v == 0 or abs(v - scale) <= 1e-6 * scale for v in base),
           'every value is 0 or 1/(1-p) = %.6f' % scale)
    dropped = sum(1 for v in base if v == 0) / N
    sd = math.sqrt(P * (1 - P) / N)
    expect(abs(dropped - P) <= 4 * sd, 'drop rate %.4f, p = %g' % (dropped, P))
    expect(grad('g_again.safetensors') == base, 'the same mask in a second run')
    expect(grad('g_interp.safetensors', 'w.safetensors', '--interp') == base,
           'the same mask in the interpreter')
    for name, values in (('seed 7', grad('g_seed.safetensors', 'w.safetensors', '--seed', '7')),
                         ('step 3', grad('g_step.safetensors', 'w_step3.safetensors'))):
        differ = sum(1 for a, b in zip(values, base) if (a == 0) != (b == 0)) / N
        want = 2 * P * (1 - P)
        expect(abs(differ - want) <= 4 * math.sqrt(want * (1 - want) / N),
               'another mask at %s (%.3f of the positions differ, expected %.3f)' % (name, differ, want))
    print('%d failed' % len(failed))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
