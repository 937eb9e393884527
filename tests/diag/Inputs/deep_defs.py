"""Prints a model whose def expansions nest expressions DEFS x DEPTH levels deep:
def d<i> wraps DEPTH relu calls around a call of d<i+1>."""
import sys

defs, depth = int(sys.argv[1]), int(sys.argv[2])
for i in range(defs):
    inner = 'd%d(x)' % (i + 1) if i + 1 < defs else 'x'
    print('def d%d(x) {\n  return %s%s%s\n}' % (i, 'relu(' * depth, inner, ')' * depth))
print('model m {\n  input x: f32[batch, 4]\n  output y = d0(x)\n}')
