#!/usr/bin/env python3
"""Reference implementation of nnrt's RNG (docs/runtime.md, "Random numbers"), standard
library only. Prints the golden values checked by test_rng.c, so that the definition can be
re-derived independently of the C code:  python3 tests/runtime/rng_reference.py
"""
import math
import struct

M0, M1, W0, W1 = 0xD2511F53, 0xCD9E8D57, 0x9E3779B9, 0xBB67AE85
MASK = 0xFFFFFFFF


def philox(key, counter_hi, counter_lo):
    c = [counter_lo & MASK, counter_lo >> 32, counter_hi & MASK, counter_hi >> 32]
    k = [key & MASK, key >> 32]
    for r in range(10):
        if r:
            k = [(k[0] + W0) & MASK, (k[1] + W1) & MASK]
        p0, p1 = M0 * c[0], M1 * c[2]
        c = [(p1 >> 32) ^ c[1] ^ k[0], p1 & MASK, (p0 >> 32) ^ c[3] ^ k[1], p0 & MASK]
    return c


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def f32_bits(x):
    return struct.unpack("<I", struct.pack("<f", x))[0]


def uniform(seed, stream, index):
    return (philox(seed, stream, index)[0] >> 8) * 2.0**-24


def normal(seed, stream, index):
    w = philox(seed, stream, index)
    a = (w[0] << 21) | (w[1] >> 11)
    b = (w[2] << 21) | (w[3] >> 11)
    u1 = (a + 0.5) * 2.0**-53
    u2 = b * 2.0**-53
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(6.283185307179586476925 * u2)


if __name__ == "__main__":
    kat = [((0, 0, 0, 0), (0, 0)), ((MASK,) * 4, (MASK, MASK)),
           ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0))]
    for ctr, key in kat:
        out = philox(key[0] | key[1] << 32, ctr[2] | ctr[3] << 32, ctr[0] | ctr[1] << 32)
        print("philox", " ".join("%08x" % v for v in out))
    print("uniform(42, 7, i), i = 0..3, float bits:",
          " ".join("0x%08x" % f32_bits(uniform(42, 7, i)) for i in range(4)))
    print("normal(42, 7, i), i = 0..3, float bits:",
          " ".join("0x%08x" % f32_bits(f32(normal(42, 7, i))) for i in range(4)))
    print("uniform values:", [uniform(42, 7, i) for i in range(4)])
    print("normal values:", [f32(normal(42, 7, i)) for i in range(4)])
