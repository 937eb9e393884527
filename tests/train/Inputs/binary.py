"""Writes a binary CSV task (x0, x1, label) to argv[1]: label 1 when x0 + x1/2 + noise > 0."""
import random
import sys

rng = random.Random(7)
with open(sys.argv[1], "w") as f:
    f.write("x0,x1,label\n")
    for _ in range(400):
        a, b = rng.uniform(-1, 1), rng.uniform(-1, 1)
        f.write("%.6f,%.6f,%d\n" % (a, b, int(a + b / 2 + rng.gauss(0, 0.4) > 0)))

# the test split (the last 10% of the rows) as an .npy of features, for `nnc run`
import struct  # noqa: E402

rows = [line.split(",") for line in open(sys.argv[1]).read().split("\n")[1:] if line]
test = rows[len(rows) - len(rows) // 10:]
header = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, 2), }" % len(test)
header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
with open(sys.argv[2], "wb") as f:
    f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
    f.write(struct.pack("<%df" % (2 * len(test)), *[float(v) for r in test for v in r[:2]]))
