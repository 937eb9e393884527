#!/usr/bin/env python3
"""Regenerates the CHECK lines of golden tests from the compiler's current output.

A golden test is a lit test (.nn or .test under tests/) with a line `# GOLDEN`. Its first
`# RUN:` line is run with nnc (build/nnc unless --nnc), FileCheck and `not` removed, and
every existing `# CHECK...` line is replaced by one line per output line:

    # CHECK: first line
    # CHECK-NEXT: following lines
    # CHECK-EMPTY:                    (blank lines)

The test file's path becomes {{.*}}<file name>; a line that starts with whitespace (source
and caret lines of diagnostics) is anchored with {{^}} so that, under
`FileCheck --strict-whitespace`, the caret's column is checked exactly. Review the result
with `git diff tests/`.

    python3 tests/golden.py [--nnc build/nnc] [--check] [FILE...]

--check reports the tests whose CHECK lines differ from the current output and exits 1,
without writing anything. Standard library only.
"""
import argparse
import os
import re
import shlex
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(ROOT, 'tests')


def golden_files(paths):
    if paths:
        return [os.path.abspath(p) for p in paths]
    found = []
    for dirpath, dirnames, filenames in os.walk(TESTS):
        dirnames[:] = sorted(d for d in dirnames if d not in ('Inputs', 'corpus', 'regress'))
        for name in sorted(filenames):
            if not name.endswith(('.nn', '.test')):
                continue
            path = os.path.join(dirpath, name)
            with open(path, encoding='utf-8', errors='replace') as f:
                if any(line.strip() == '# GOLDEN' for line in f):
                    found.append(path)
    return found


def run_command(path, run, nnc):
    """The RUN line as a shell command that prints what FileCheck would read."""
    cmd = run.split('|')
    # drop the FileCheck stage (the last pipe stage naming FileCheck)
    cmd = [c for c in cmd if 'FileCheck' not in c]
    cmd = '|'.join(cmd).strip()
    cmd = re.sub(r'^not\s+', '', cmd)
    cmd = re.sub(r'(?<![\w/.%-])not\s+', '', cmd)
    cmd = re.sub(r'(?<![\w/.%-])nnc(?![\w/.-])', shlex.quote(nnc), cmd)
    cmd = cmd.replace('%s', shlex.quote(path)).replace('%S', shlex.quote(os.path.dirname(path)))
    cmd = cmd.replace('%python', shlex.quote(sys.executable))
    env = dict(os.environ, NO_COLOR='1')
    out = subprocess.run(cmd, shell=True, cwd=os.path.dirname(path), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env)
    return out.stdout.decode('utf-8', errors='replace')


def escape(text):
    # FileCheck treats [[ and {{ as the start of a variable or a regex
    text = text.replace('{{', '{{\\{\\{}}').replace('[[', '{{\\[\\[}}')
    return text


def check_lines(output, path, input_paths):
    lines = output.split('\n')
    if lines and lines[-1] == '':
        lines.pop()
    while lines and not lines[0].strip():  # FileCheck cannot start with CHECK-EMPTY
        lines.pop(0)
    result = []
    for i, line in enumerate(lines):
        line = line.rstrip()
        text = escape(line)
        for p in input_paths:
            text = text.replace(escape(p), '{{.*}}' + escape(os.path.basename(p)))
        if text[:1] in (' ', '\t'):
            text = '{{^}}' + text
        if i == 0:
            result.append('# CHECK: ' + text if text else '# CHECK-EMPTY:')
        elif not text:
            result.append('# CHECK-EMPTY:')
        else:
            result.append('# CHECK-NEXT: ' + text)
    return result


def regenerate(path, nnc, check_only):
    with open(path, encoding='utf-8') as f:
        text = f.read()
    runs = [m.group(1) for m in re.finditer(r'^#\s*RUN:\s*(.*)$', text, re.M)]
    if not runs:
        print('%s: no RUN line' % os.path.relpath(path, ROOT), file=sys.stderr)
        return False
    run = runs[0]
    # files the command reads: the test itself and any %S/... path
    inputs = [path]
    for m in re.finditer(r'%S(/[^\s|]+)', run):
        inputs.append(os.path.normpath(os.path.dirname(path) + m.group(1)))
    output = run_command(path, run, nnc)
    # keep every line that is not a CHECK line; drop trailing blank lines
    kept = [l for l in text.split('\n') if not re.match(r'^#\s*CHECK(-[A-Z]+)?:', l)]
    while kept and kept[-1].strip() == '':
        kept.pop()
    new = '\n'.join(kept + [''] + check_lines(output, path, inputs)) + '\n'
    if new == text:
        return True
    if check_only:
        print('differs: %s' % os.path.relpath(path, ROOT))
        return False
    with open(path, 'w', encoding='utf-8') as f:
        f.write(new)
    print('updated: %s' % os.path.relpath(path, ROOT))
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--nnc', default=os.path.join(ROOT, 'build', 'nnc'))
    ap.add_argument('--check', action='store_true', help='only report differences')
    ap.add_argument('files', nargs='*')
    args = ap.parse_args()
    nnc = os.path.abspath(args.nnc)
    if not os.path.exists(nnc):
        sys.exit('golden.py: %s not found (run make)' % nnc)
    files = golden_files(args.files)
    ok = True
    for path in files:
        ok = regenerate(path, nnc, args.check) and ok
    print('%d golden test(s) %s' % (len(files), 'checked' if args.check else 'processed'))
    sys.exit(0 if ok else 1)


if __name__ == '__main__':
    main()
