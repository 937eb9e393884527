"""Writes a safetensors checkpoint of examples/logreg.nn (W [784, 10], b [10]) with fixed
values, plus an extra tensor of a kind an inference object does not have (the step).
Standard library only."""
import json
import math
import struct
import sys


def tensor(values, dtype):
    fmt = '<%d%s' % (len(values), 'f' if dtype == 'F32' else 'i')
    return struct.pack(fmt, *values)


W = [0.05 * math.sin(0.37 * i + 1.3 * j) for i in range(784) for j in range(10)]
b = [0.1 * j - 0.4 for j in range(10)]
blobs = [('W', 'F32', [784, 10], tensor(W, 'F32')), ('b', 'F32', [10], tensor(b, 'F32')),
         ('step', 'I32', [], tensor([17], 'I32'))]
header, offset = {}, 0
for name, dtype, shape, data in blobs:
    header[name] = {'dtype': dtype, 'shape': shape, 'data_offsets': [offset, offset + len(data)]}
    offset += len(data)
text = json.dumps(header).encode()
text += b' ' * (-len(text) % 8)
with open(sys.argv[1], 'wb') as f:
    f.write(struct.pack('<Q', len(text)) + text + b''.join(d for _, _, _, d in blobs))
