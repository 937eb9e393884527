#!/usr/bin/env python3
"""fake_nnc.py — stands in for nnc in selftest.py: answers run/grad/train by copying the
expected files of the case it is run in, so check.py's own logic can be tested without nnc.

FAKE_NNC selects a misbehaviour: perturb (one value off by 1%), nan, drop (a gradient
missing), shape (wrong shape), crash (exit 1 with an 'unsupported' message), nowrite.
"""
import os
import shutil
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check import read_safetensors  # noqa: E402

MODE = os.environ.get('FAKE_NNC', '')


def write_safetensors(path, tensors):
    import json
    header, blobs, off = {}, [], 0
    for k in sorted(tensors):
        t = tensors[k]
        data = struct.pack('<%df' % len(t.values), *t.values)
        header[k] = {'dtype': 'F32', 'shape': list(t.shape), 'data_offsets': [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    text = json.dumps(header).encode()
    text += b' ' * (-len(text) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(text)) + text + b''.join(blobs))


def emit(expect, dest):
    if MODE == 'nowrite':
        return
    if dest.endswith('.npy') or not MODE:
        shutil.copyfile(expect, dest)
        return
    ts = read_safetensors(expect)
    name = sorted(k for k in ts if k != 'loss')[0]
    t = ts[name]
    if MODE == 'perturb':
        t.values[-1] = t.values[-1] * 1.01 + 1e-3
    elif MODE == 'nan':
        t.values[0] = float('nan')
    elif MODE == 'drop':
        del ts[name]
    elif MODE == 'shape':
        t.shape = (len(t.values),) if len(t.shape) != 1 else (1, len(t.values))
    write_safetensors(dest, ts)


def main(argv):
    cmd = argv[1]
    if MODE == 'crash':
        print('model.nn:3:7: error: lstm is not supported yet', file=sys.stderr)
        return 1
    args = argv[2:]
    for i, a in enumerate(args):
        if a == '--output':
            name, dest = args[i + 1].split('=', 1)
            emit('expect_%s.npy' % name, dest)
        elif a == '--out':
            emit('expect_grad.safetensors', args[i + 1])
            print('loss=%.7g' % read_safetensors('expect_grad.safetensors')['loss'].values[0])
        elif a == '--save':
            emit('expect_' + os.path.basename(args[i + 1]), args[i + 1])
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
