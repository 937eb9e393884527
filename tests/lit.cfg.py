# lit configuration for the nnc test suite.
#
#   python3 /usr/lib/llvm-19/build/utils/lit/lit.py -sv tests/parse tests/parse-errors
#   ... --param nnc=build/asan/nnc      (test another build of the compiler)
#
# RUN lines may use: nnc (the compiler under test), FileCheck, not, count, %python.
# Output/ directories go under the build of the nnc under test (build/lit, build/asan/lit),
# never into the source tree, so that the two passes of tests/run.sh can run at once.
import os
import shutil

import lit.formats

config.name = 'nnc'
config.test_format = lit.formats.ShTest(execute_external=False)
config.suffixes = ['.nn', '.test']
# Inputs/ hold files used by tests; corpus/ and regress/ are fuzzer inputs that a .test
# file runs explicitly.
config.excludes = ['Inputs', 'corpus', 'regress', 'ref', 'bench']

config.test_source_root = os.path.dirname(os.path.abspath(__file__))
repo_root = os.path.dirname(config.test_source_root)

llvm_bin = lit_config.params.get('llvm_bin', '/usr/lib/llvm-19/bin')
nnc = os.path.abspath(lit_config.params.get('nnc', os.path.join(repo_root, 'build', 'nnc')))
if not os.path.exists(nnc):
    lit_config.fatal('nnc binary not found at %s (run make, or pass --param nnc=PATH)' % nnc)
_build_root = os.path.join(repo_root, 'build')
_nnc_dir = os.path.dirname(nnc)
if os.path.commonpath([_nnc_dir, _build_root]) == _build_root:
    config.test_exec_root = os.path.join(_nnc_dir, 'lit')
else:
    config.test_exec_root = os.path.join(_build_root, 'lit')


def tool(name):
    # Whole words only, so paths and option names that contain the word are left alone.
    return r'(?<![\w/.%-])' + name + r'(?![\w/.-])'


config.substitutions.append((tool('nnc'), nnc))
config.substitutions.append((tool('FileCheck'), os.path.join(llvm_bin, 'FileCheck')))
config.substitutions.append((tool('not'), os.path.join(llvm_bin, 'not')))
config.substitutions.append((tool('count'), os.path.join(llvm_bin, 'count')))
config.substitutions.append(('%python', shutil.which('python3') or 'python3'))

# `REQUIRES: avx512`: the CPU has AVX512F/BW/DQ/VL (nnc then asks OpenBLAS for its
# AVX-512 kernels, tests/cli/blas.test).
try:
    with open('/proc/cpuinfo') as f:
        flags = next((l.split(':', 1)[1].split() for l in f if l.startswith('flags')), [])
    if all(x in flags for x in ('avx512f', 'avx512bw', 'avx512dq', 'avx512vl')):
        config.available_features.add('avx512')
except OSError:
    pass

# Diagnostics are compared as plain text.
config.environment['NO_COLOR'] = '1'
for var in ('LSAN_OPTIONS', 'HOME', 'TMPDIR'):
    if var in os.environ:
        config.environment[var] = os.environ[var]
# With a sanitizer build (--param nnc=build/asan/nnc), a report must fail the test even
# under `not`, which accepts any non-zero exit: make sanitizers abort instead.
config.environment['ASAN_OPTIONS'] = os.environ.get(
    'ASAN_OPTIONS', 'abort_on_error=1:detect_leaks=1')
config.environment['UBSAN_OPTIONS'] = os.environ.get(
    'UBSAN_OPTIONS', 'abort_on_error=1:print_stacktrace=1:halt_on_error=1')
