# lit configuration for the nnc test suite.
#
#   python3 /usr/lib/llvm-19/build/utils/lit/lit.py -sv tests/parse tests/parse-errors
#   ... --param nnc=build/asan/nnc      (test another build of the compiler)
#
# RUN lines may use: nnc (the compiler under test), FileCheck, not, count, %python.
# Output/ directories go under build/lit, never into the source tree.
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
config.test_exec_root = os.path.join(repo_root, 'build', 'lit')

llvm_bin = lit_config.params.get('llvm_bin', '/usr/lib/llvm-19/bin')
nnc = os.path.abspath(lit_config.params.get('nnc', os.path.join(repo_root, 'build', 'nnc')))
if not os.path.exists(nnc):
    lit_config.fatal('nnc binary not found at %s (run make, or pass --param nnc=PATH)' % nnc)


def tool(name):
    # Whole words only, so paths and option names that contain the word are left alone.
    return r'(?<![\w/.%-])' + name + r'(?![\w/.-])'


config.substitutions.append((tool('nnc'), nnc))
config.substitutions.append((tool('FileCheck'), os.path.join(llvm_bin, 'FileCheck')))
config.substitutions.append((tool('not'), os.path.join(llvm_bin, 'not')))
config.substitutions.append((tool('count'), os.path.join(llvm_bin, 'count')))
config.substitutions.append(('%python', shutil.which('python3') or 'python3'))

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
