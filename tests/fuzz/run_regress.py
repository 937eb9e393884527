"""run_regress.py NNC DIR: runs `NNC check` on every file in DIR and fails if any run
crashes, times out, exits with a status other than 0 or 1, or prints a sanitizer report."""
import os
import subprocess
import sys

nnc, directory = sys.argv[1], sys.argv[2]
failed = 0
for name in sorted(os.listdir(directory)):
    path = os.path.join(directory, name)
    try:
        r = subprocess.run([nnc, 'check', path], capture_output=True, timeout=60)
    except subprocess.TimeoutExpired:
        print('TIMEOUT %s' % name)
        failed += 1
        continue
    report = b'Sanitizer' in r.stderr or b'runtime error' in r.stderr
    if r.returncode not in (0, 1) or report:
        print('FAIL %s: exit status %d' % (name, r.returncode))
        sys.stdout.write(r.stderr.decode('utf-8', 'replace')[-2000:])
        failed += 1
print('%d of %d inputs failed' % (failed, len(os.listdir(directory))))
sys.exit(1 if failed else 0)
