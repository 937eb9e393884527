"""Writes the same 40 samples of 4 byte-valued features as IDX files (images.idx: u8
[40, 2, 2], labels.idx: u8 [40]) and as .npy arrays of their f32 values b / 255 (x.npy,
y.npy), with the standard library only."""
import struct
import sys

out = sys.argv[1]
n = 40
pixels = [(i * 37 + 11) % 256 for i in range(n * 4)]
labels = [(i * 5) % 3 for i in range(n)]
with open(out + "/images.idx", "wb") as f:
    f.write(struct.pack(">HBBIII", 0, 0x08, 3, n, 2, 2) + bytes(pixels))
with open(out + "/labels.idx", "wb") as f:
    f.write(struct.pack(">HBBI", 0, 0x08, 1, n) + bytes(labels))


def save(path, dtype, shape, values):
    header = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (
        dtype, ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else ""))
    header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
        code = "f" if dtype == "<f4" else "i"
        f.write(struct.pack("<%d%s" % (len(values), code), *values))


# struct rounds each double b / 255 to the nearest f32, as (float)b / 255.0f does
save(out + "/x.npy", "<f4", (n, 4), [b / 255.0 for b in pixels])
save(out + "/y.npy", "<i4", (n,), labels)
