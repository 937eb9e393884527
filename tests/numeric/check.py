#!/usr/bin/env python3
"""check.py — compare nnc's numbers with the PyTorch references in tests/ref/.

    python3 tests/numeric/check.py [--nnc build/nnc] [--case NAME]... [--rtol 1e-4] [--atol 1e-5]
                                   [--nnc-arg=--interp] [--keep] [-v] [--list]

Standard library only. For every case directory tests/ref/<case>/ it runs each command of its
`cmd` file (from the case directory, `nnc` replaced by the binary, `$OUT` by a scratch
directory) and compares every file a command writes to $OUT/NAME with expect_NAME:
.npy arrays as a whole, .safetensors tensor by tensor (every expected tensor must be there;
extra tensors, such as optimizer slots, are not compared). `nnc grad`'s printed `loss=` is
compared with the `loss` tensor of expect_grad.safetensors.

A tensor passes when max |got - expected| <= atol + rtol * |expected| holds elementwise.
One line per tensor (llm.c style), then `N passed, N failed` counting cases. A case passes when
all its commands run and all its tensors pass. A case listed in tests/numeric/pending.txt is
reported PENDING and counted apart; if it passes, it is a failure (XPASS) until it is removed
from the list, so the list stays honest. Exit status 1 on any failure, 2 on usage errors.
"""
import argparse
import ast
import json
import math
import os
import shlex
import shutil
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
REF = os.path.join(ROOT, 'tests', 'ref')
PENDING = os.path.join(HERE, 'pending.txt')

# ---------------------------------------------------------------- readers


class Tensor:
    """A dense row-major tensor: shape (tuple), dtype (numpy-style name), flat list of values."""

    def __init__(self, shape, dtype, values):
        self.shape, self.dtype, self.values = tuple(shape), dtype, values

    def __repr__(self):
        return 'Tensor(%s, %s)' % (self.dtype, list(self.shape))


class FormatError(Exception):
    pass


# element size, struct format character
_NPY_TYPES = {'f4': (4, 'f'), 'f8': (8, 'd'), 'f2': (2, 'e'), 'i1': (1, 'b'), 'i2': (2, 'h'),
              'i4': (4, 'i'), 'i8': (8, 'q'), 'u1': (1, 'B'), 'u4': (4, 'I'), 'b1': (1, '?')}
_ST_TYPES = {'F32': 'f4', 'F64': 'f8', 'F16': 'f2', 'BF16': 'bf16', 'I8': 'i1', 'I16': 'i2',
             'I32': 'i4', 'I64': 'i8', 'U8': 'u1', 'U32': 'u4', 'BOOL': 'b1'}


def _decode(raw, kind, big_endian, count, where):
    """count values of kind ('f4', ..., or 'bf16') from raw bytes, as a list of numbers."""
    order = '>' if big_endian else '<'
    size, code = (2, 'H') if kind == 'bf16' else _NPY_TYPES[kind]
    if len(raw) != size * count:
        raise FormatError('%s: expected %d bytes of data, found %d' % (where, size * count, len(raw)))
    values = struct.unpack('%s%d%s' % (order, count, code), raw)
    if kind == 'bf16':   # the high half of an f32
        return [struct.unpack('<f', struct.pack('<I', h << 16))[0] for h in values]
    return list(values)


def _count(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def read_npy(path):
    """A .npy file (format 1.0-3.0, C order) as a Tensor."""
    with open(path, 'rb') as f:
        data = f.read()
    if data[:6] != b'\x93NUMPY':
        raise FormatError('%s: not a .npy file (bad magic)' % path)
    major = data[6]
    if major == 1:
        (hlen,), start = struct.unpack('<H', data[8:10]), 10
    elif major in (2, 3):
        (hlen,), start = struct.unpack('<I', data[8:12]), 12
    else:
        raise FormatError('%s: unknown .npy version %d' % (path, major))
    try:
        header = ast.literal_eval(data[start:start + hlen].decode('latin1'))
        descr, fortran, shape = header['descr'], header['fortran_order'], tuple(header['shape'])
    except (ValueError, SyntaxError, KeyError, TypeError):
        raise FormatError('%s: malformed .npy header' % path)
    if fortran and len(shape) > 1:
        raise FormatError('%s: Fortran-order arrays are not supported' % path)
    if not isinstance(descr, str) or descr[1:] not in _NPY_TYPES:
        raise FormatError('%s: unsupported dtype %r' % (path, descr))
    n = _count(shape)
    values = _decode(data[start + hlen:], descr[1:], descr[0] == '>', n, path)
    return Tensor(shape, descr[1:], values)


def read_safetensors(path):
    """A .safetensors file as {name: Tensor} (the __metadata__ entry is skipped)."""
    with open(path, 'rb') as f:
        data = f.read()
    if len(data) < 8:
        raise FormatError('%s: too short for a safetensors file' % path)
    (hlen,) = struct.unpack('<Q', data[:8])
    if 8 + hlen > len(data):
        raise FormatError('%s: header length %d runs past the end of the file' % (path, hlen))
    try:
        header = json.loads(data[8:8 + hlen].decode('utf-8'))
    except (UnicodeDecodeError, ValueError):
        raise FormatError('%s: malformed JSON header' % path)
    body = data[8 + hlen:]
    out = {}
    for name, info in header.items():
        if name == '__metadata__':
            continue
        try:
            kind = _ST_TYPES[info['dtype']]
            shape = tuple(info['shape'])
            lo, hi = info['data_offsets']
        except (KeyError, TypeError, ValueError):
            raise FormatError('%s: bad header entry for %r' % (path, name))
        if not 0 <= lo <= hi <= len(body):
            raise FormatError('%s: tensor %r lies outside the file' % (path, name))
        out[name] = Tensor(shape, kind, _decode(body[lo:hi], kind, False, _count(shape),
                                                '%s: %s' % (path, name)))
    return out


# ---------------------------------------------------------------- comparison


def unravel(i, shape):
    idx = []
    for d in reversed(shape):
        idx.append(i % d if d else 0)
        i = i // d if d else 0
    return list(reversed(idx))


def compare(got, want, atol, rtol):
    """Returns (ok, max_abs_diff, message). NaN or infinity in got never passes (unless the
    reference has the same infinity)."""
    if got.shape != want.shape:
        return False, math.inf, 'shape %s, expected %s' % (list(got.shape), list(want.shape))
    worst_i, worst_ratio, max_diff = -1, 0.0, 0.0
    for i, (g, w) in enumerate(zip(got.values, want.values)):
        if g == w:
            continue
        d = abs(g - w)
        if d != d:   # NaN
            return False, math.nan, 'NaN at %s (expected %g)' % (unravel(i, got.shape), w)
        ratio = d / (atol + rtol * abs(w)) if d != math.inf else math.inf
        if d > max_diff:
            max_diff = d
        if ratio > worst_ratio:
            worst_i, worst_ratio = i, ratio
    if worst_ratio <= 1.0:
        return True, max_diff, ''
    return False, max_diff, 'worst at %s: got %.8g expected %.8g' % (
        unravel(worst_i, got.shape), got.values[worst_i], want.values[worst_i])


# ---------------------------------------------------------------- running a case


def list_cases():
    return sorted(e for e in os.listdir(REF) if os.path.isfile(os.path.join(REF, e, 'cmd')))


def read_pending(path):
    """pending.txt: one `case reason...` a line; # starts a comment."""
    pending = {}
    if not os.path.exists(path):
        return pending
    with open(path) as f:
        for line in f:
            line = line.split('#', 1)[0].strip()
            if line:
                name, _, reason = line.partition(' ')
                pending[name] = reason.strip()
    return pending


def read_cmds(case_dir):
    with open(os.path.join(case_dir, 'cmd')) as f:
        return [shlex.split(l) for l in f if l.strip() and not l.lstrip().startswith('#')]


class CaseRun:
    """Runs one case and prints its lines; .ok says whether everything passed."""

    def __init__(self, name, opts):
        self.name, self.opts = name, opts
        self.ok, self.lines, self.ntensors = True, [], 0

    def say(self, status, what, detail=''):
        line = '%-4s %s/%s' % (status, self.name, what) + (' ' + detail if detail else '')
        self.lines.append(line)
        if status == 'FAIL':
            self.ok = False

    def check_tensor(self, what, got, want):
        self.ntensors += 1
        ok, diff, msg = compare(got, want, self.opts.atol, self.opts.rtol)
        self.say('OK' if ok else 'FAIL', what, 'max diff %.1e' % diff + ('  ' + msg if msg else ''))

    def run(self):
        case_dir = os.path.join(REF, self.name)
        out = tempfile.mkdtemp(prefix='nnc-check-%s-' % self.name)
        try:
            for argv in read_cmds(case_dir):
                self.run_command(case_dir, out, argv)
        finally:
            if self.opts.keep:
                self.lines.append('     (outputs kept in %s)' % out)
            else:
                shutil.rmtree(out, ignore_errors=True)
        return self

    def run_command(self, case_dir, out, argv):
        sub = argv[1] if len(argv) > 1 else '?'
        produced = [a.replace('$OUT/', '') for a in argv if a.startswith('$OUT/')]
        produced += [a.split('=', 1)[1].replace('$OUT/', '') for a in argv
                     if '=$OUT/' in a]
        label = sub
        if sub == 'train':
            label = 'train%s' % argv[argv.index('--steps') + 1] if '--steps' in argv else 'train'
        real = [self.opts.nnc] + [a.replace('$OUT', out) for a in argv[1:]] + self.opts.nnc_arg
        try:
            p = subprocess.run(real, cwd=case_dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               timeout=self.opts.timeout)
        except subprocess.TimeoutExpired:
            self.say('FAIL', label, 'nnc %s timed out after %d s' % (sub, self.opts.timeout))
            return
        except OSError as e:
            self.say('FAIL', label, 'cannot run %s: %s' % (self.opts.nnc, e.strerror))
            return
        stdout = p.stdout.decode('utf-8', 'replace')
        stderr = p.stderr.decode('utf-8', 'replace')
        if p.returncode != 0:
            msg = ' | '.join(l for l in stderr.strip().splitlines()[:6]) or '(no message)'
            status = ('killed by signal %d' % -p.returncode if p.returncode < 0
                      else 'exit %d' % p.returncode)
            self.say('FAIL', label, 'nnc %s: %s: %s' % (sub, status, msg))
            if self.opts.verbose:
                self.lines.append('     $ cd %s && %s' % (case_dir, ' '.join(map(shlex.quote, real))))
            return
        for name in produced:
            self.check_output(case_dir, out, label, name, stdout)

    def check_output(self, case_dir, out, label, name, stdout):
        got_path = os.path.join(out, name)
        want_path = os.path.join(case_dir, 'expect_' + name)
        if not os.path.exists(got_path):
            self.say('FAIL', label, 'nnc did not write %s' % name)
            return
        try:
            if name.endswith('.npy'):
                self.check_tensor('%s %s' % (label, name[:-4]), read_npy(got_path),
                                  read_npy(want_path))
                return
            got, want = read_safetensors(got_path), read_safetensors(want_path)
        except FormatError as e:
            self.say('FAIL', label, str(e))
            return
        for k in sorted(want):
            if k not in got:
                self.say('FAIL', '%s %s' % (label, k), 'missing from nnc\'s %s' % name)
            else:
                self.check_tensor('%s %s' % (label, k), got[k], want[k])
        if label == 'grad' and 'loss' in want:
            printed = [w for w in stdout.split() if w.startswith('loss=')]
            try:
                value = float(printed[-1][len('loss='):])
            except (IndexError, ValueError):
                self.say('FAIL', 'grad stdout', 'no loss=<float> printed')
                return
            self.check_tensor('grad stdout loss', Tensor((), 'f8', [value]), want['loss'])


def main(argv=None):
    ap = argparse.ArgumentParser(description='nnc numeric reference tests (PyTorch data).')
    ap.add_argument('--nnc', default=os.environ.get('NNC') or os.path.join(ROOT, 'build', 'nnc'),
                    help='the nnc binary (default: $NNC or build/nnc)')
    ap.add_argument('--nnc-arg', action='append', default=[], metavar='ARG',
                    help='extra argument for every nnc command, e.g. --nnc-arg=--interp')
    ap.add_argument('--case', action='append', default=[], help='run only this case (repeatable)')
    ap.add_argument('--rtol', type=float, default=1e-4)
    ap.add_argument('--atol', type=float, default=1e-5)
    ap.add_argument('--timeout', type=int, default=900,
                    help='seconds per nnc command (JIT compiles of recurrent models are slow)')
    ap.add_argument('--keep', action='store_true', help='keep the scratch directories')
    ap.add_argument('--verbose', '-v', action='store_true', help='print failing commands')
    ap.add_argument('--list', action='store_true', help='list the cases and exit')
    ap.add_argument('--pending', default=PENDING, help='the pending list (default: %(default)s)')
    opts = ap.parse_args(argv)
    opts.nnc = os.path.abspath(opts.nnc) if os.sep in opts.nnc else opts.nnc

    cases = list_cases()
    if opts.list:
        print('\n'.join(cases))
        return 0
    for c in opts.case:
        if c not in cases:
            print('check.py: no case named %r in %s' % (c, REF), file=sys.stderr)
            return 2
    pending = read_pending(opts.pending)
    for c in pending:
        if c not in cases:
            print('check.py: %s lists %r, which is not a case' % (opts.pending, c), file=sys.stderr)
            return 2
    passed = failed = npending = 0
    for name in opts.case or cases:
        r = CaseRun(name, opts).run()
        if name in pending:
            if r.ok:
                print('FAIL %s: passes but is listed in %s (XPASS); remove it from the list'
                      % (name, os.path.relpath(opts.pending, ROOT)))
                failed += 1
            else:
                print('PENDING %s: %s' % (name, pending[name]))
                for l in r.lines:
                    if opts.verbose or l.startswith('FAIL'):
                        print('     ' + l)
                npending += 1
            continue
        for l in r.lines:
            print(l)
        if r.ok:
            passed += 1
        else:
            failed += 1
    if npending:
        print('%d pending (%s)' % (npending, os.path.relpath(opts.pending, ROOT)))
    print('%d passed, %d failed' % (passed, failed))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
