"""Writes a generated .nn test input to stdout: generate.py KIND [N].

Inputs too big or too binary to commit: deep nesting, long chains, a 10 MB line,
pseudo-random bytes (fixed seed, so every run sees the same file), NUL and invalid UTF-8.
"""
import random
import sys

kind = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
out = sys.stdout.buffer


def model(body):
    out.write(b'model m {\n  x = ' + body + b'\n}\n')


if kind == 'parens':            # (((...x...)))
    model(b'(' * n + b'x' + b')' * n)
elif kind == 'brackets':        # [[[...1...]]]
    model(b'[' * n + b'1' + b']' * n)
elif kind == 'calls':           # f(f(f(...x...)))
    model(b'f(' * n + b'x' + b')' * n)
elif kind == 'minus':           # - - - ... x
    model(b'- ' * n + b'x')
elif kind == 'power':           # x ^ x ^ ... ^ x  (right associative)
    model(b'x ^ ' * n + b'x')
elif kind == 'power-minus':     # x ^ -x ^ -x ...
    model(b'x ^ -' * n + b'x')
elif kind == 'sum':             # x + x + ... + x  (left associative)
    model(b'x + ' * n + b'x')
elif kind == 'index':           # x[0][0]...[0]
    model(b'x' + b'[0]' * n)
elif kind == 'pipe':            # x |> f |> f ...
    model(b'x' + b' |> f' * n)
elif kind == 'long-line':       # an error at the end of a 10 MB line
    out.write(b'model m {\n  a = 1' + b' ' * n + b'oops\n  b = 2\n}\n')
elif kind == 'long-line-middle':  # an error in the middle of a long line
    out.write(b'model m {\n  a = 1' + b' ' * n + b'oops' + b' ' * n + b'# end\n}\n')
elif kind == 'long-comment':    # a 10 MB comment and a 10 MB name parse fine
    out.write(b'model m {\n  # ' + b'c' * n + b'\n  ' + b'v' * n + b' = 1\n}\n')
elif kind == 'garbage':         # n pseudo-random bytes
    rng = random.Random(20240611)
    out.write(bytes(rng.randrange(256) for _ in range(n)))
elif kind == 'nul':             # NUL bytes in code, in a comment and in a string
    out.write(b'model m {\n  x = 1\0 + 2\n  # comment \0 here\n  s = "a\0b"\n}\n')
elif kind == 'invalid-utf8':    # bytes that are not UTF-8, in code and in a string
    out.write(b'model m {\n  x = \xff\xfe 1\n  s = "caf\xe9"\n  t = "ok \xc3\xa9"\n}\n')
elif kind == 'many-errors':     # n independent errors
    out.write(b'model m {\n' + b'  x = 1)\n' * n + b'}\n')
elif kind == 'bom-crlf':        # a byte-order mark and CRLF line ends
    out.write(b'\xef\xbb\xbfmodel m {\r\n  x = 1 +\r\n      2\r\n  y = x\r\n}\r\n')
elif kind == 'bom-crlf-error':
    out.write(b'\xef\xbb\xbfmodel m {\r\n  x = (1\r\n}\r\n')
else:
    sys.exit('generate.py: unknown kind ' + kind)
