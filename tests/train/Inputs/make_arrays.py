"""Writes x.npy (6x4 f32), y.npy (6 i32) and bad.npy (6x5 f32) into the given folder,
with the standard library only."""
import struct
import sys


def save(path, dtype, shape, values):
    header = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (
        dtype, ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else ""))
    header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
        code = "f" if dtype == "<f4" else "i"
        f.write(struct.pack("<%d%s" % (len(values), code), *values))


out = sys.argv[1]
save(out + "/x.npy", "<f4", (6, 4), [((i * 7) % 11) / 11.0 - 0.5 for i in range(24)])
save(out + "/y.npy", "<i4", (6,), [0, 1, 2, 0, 1, 2])
save(out + "/bad.npy", "<f4", (6, 5), [0.0] * 30)
