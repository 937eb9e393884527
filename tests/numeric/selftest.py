#!/usr/bin/env python3
"""selftest.py — tests check.py itself against fake_nnc.py (no nnc needed): correct answers
must pass, and each kind of wrong answer must fail with the right message."""
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CASES = ['dense_mlp', 'batchnorm', 'opt_adam']   # run + grad + train, states, train only


def check(mode, cases=CASES, pending=os.devnull):
    env = dict(os.environ, FAKE_NNC=mode)
    args = [sys.executable, os.path.join(HERE, 'check.py'), '--nnc',
            os.path.join(HERE, 'fake_nnc.py'), '--pending', pending]
    for c in cases:
        args += ['--case', c]
    p = subprocess.run(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return p.returncode, p.stdout.decode()


failures = 0


def expect(what, cond, out):
    global failures
    if not cond:
        failures += 1
        print('selftest FAIL: %s\n%s' % (what, out))
    else:
        print('selftest ok: %s' % what)


rc, out = check('')
expect('exact answers pass', rc == 0 and out.endswith('3 passed, 0 failed\n')
       and 'OK   dense_mlp/grad stdout loss' in out and 'OK   batchnorm/train1 bn.running_var' in out,
       out)
for mode, needle in [('perturb', 'worst at'), ('nan', 'NaN at'), ('drop', 'missing from'),
                     ('shape', 'shape ['), ('crash', 'not supported'), ('nowrite', 'did not write')]:
    rc, out = check(mode)
    expect('%s fails' % mode, rc == 1 and needle in out and out.rstrip().endswith('failed')
           and ' 0 failed' not in out, out)

tmp = tempfile.NamedTemporaryFile('w', suffix='.txt', delete=False)
tmp.write('# comment\ndense_mlp  waits for something  # trailing comment\n')
tmp.close()
rc, out = check('crash', ['dense_mlp'], tmp.name)
expect('a failing pending case is PENDING', rc == 0 and 'PENDING dense_mlp: waits for something'
       in out and out.endswith('1 pending (%s)\n0 passed, 0 failed\n' % os.path.relpath(tmp.name, ROOT)), out)
rc, out = check('', ['dense_mlp'], tmp.name)
expect('a passing pending case fails (XPASS)', rc == 1 and 'XPASS' in out, out)
os.unlink(tmp.name)
sys.exit(1 if failures else 0)
