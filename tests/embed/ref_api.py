#!/usr/bin/env python3
"""ref_api.py — the compiled C API against the PyTorch references of tests/ref.

For each case, `nnc compile` makes model.o and model.h, and this script writes a C program
that does with the generated API what the case's `cmd` file asks of nnc:

    nnc run    ->  <m>_init, nnrt_load of the weights, <m>_prepare, <m>_infer on the inputs
    nnc grad   ->  <m>__grad_packed (docs/c-api.md, "The packed entry") on inputs and labels
    nnc train  ->  <m>_train_step K times on consecutive batches of the training arrays,
                   steps_per_epoch and total_steps set in the state as the driver sets them
    --embed    ->  also <m>_infer of an object compiled with --embed-weights (the case's
                   weights built in, batchnorm folded at compile time; state NULL)

writing the same files ($OUT/p.npy, $OUT/grad.safetensors, $OUT/after_K.safetensors), which
tests/numeric/check.py's comparison then checks against the expected ones (same tolerance).
The program links the object with libnnrt, as an embedding program does.

    python3 tests/embed/ref_api.py --nnc build/nnc CASE...      (default: every case)
    python3 tests/embed/ref_api.py --layers                    (the layer cases; --others)
Needs only the Python standard library. Exit status 1 on any failure.
"""
import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, 'tests', 'numeric'))
import check  # noqa: E402  (the readers and the comparison of the numeric tests)

REF = os.path.join(ROOT, 'tests', 'ref')

# the cases of the layer library (issue 6): --layers runs these, --others the rest
LAYER_CASES = [
    'dense_mlp', 'conv2d', 'conv2d_options', 'conv2d_same', 'conv1d', 'conv1d_options',
    'pool_options', 'pool_pairs', 'conv_bn', 'upsample_lrn', 'upsample_options', 'batchnorm',
    'batchnorm_options', 'batchnorm_3d', 'layernorm', 'layernorm_3d', 'dropout', 'embedding',
    'lstm', 'lstm_layers', 'gru', 'gru_layers', 'rnn', 'rnn_relu', 'rnn_layers', 'attention',
    'attention_cross', 'multi_head_attention', 'shape_ops', 'prim_shape', 'prim_slice',
    'prim_misc', 'char_lstm']


def prototype(header, model, entry):
    """[(c_type, name)] of the arguments after `int n` of <model>_<entry> in the header."""
    m = re.search(r'int %s_%s\(%s \*m,(.*?)\);' % (model, entry, model), header, re.S)
    if not m:
        return None
    body = re.sub(r'/\*.*?\*/', '', m.group(1), flags=re.S)
    params = [p.strip() for p in body.split(',') if p.strip()]
    assert params[0] == 'int n', params
    out = []
    for p in params[1:]:
        t, name = p.rsplit('*', 1)
        out.append((t.strip() + ' *', name.strip()))
    return out


def grad_signature(nnc, model_path):
    """(argument names, output names) of the IR function grad, in order."""
    p = subprocess.run([nnc, 'dump', model_path, '--ir', '--fn=grad'], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True, check=True)
    lines = p.stdout.splitlines()
    head = next(l for l in lines if l.startswith('func grad('))
    args = re.findall(r'(\w+): \w+(?:\[[^\]]*\])?', head[len('func grad('):])
    outs = []
    for l in lines:
        m = re.match(r'\s+(loss|grad) (\S+) = ', l)
        if m:
            outs.append(m.group(2))
    return args, outs


C_PRELUDE = r'''
#include "%(m)s.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int %(m)s__grad_packed(void *state, void *work, int n, void **args);

static const char *dir, *out;
static nnrt_error err;

/* everything the program allocates, freed before it returns (the sanitized build checks leaks) */
static void *owned[256];
static int n_owned;
static nnrt_array arrays[64];
static int n_arrays;

static void *own(void *p) {
    if (!p || n_owned == 256) abort();
    return owned[n_owned++] = p;
}

static void release(void) {
    while (n_owned) free(owned[--n_owned]);
    while (n_arrays) nnrt_array_free(&arrays[--n_arrays]);
}

static void die(const char *what, int rc) {
    fprintf(stderr, "%%s: %%s (%%s)\n", what, nnrt_strerror(rc), err.msg);
    exit(1);
}

static __attribute__((unused)) nnrt_array load(const char *name) {
    char path[4096];
    snprintf(path, sizeof path, "%%s/%%s", dir, name);
    nnrt_array a;
    int rc = nnrt_npy_load(path, &a, &err);
    if (rc) die(path, rc);
    if (n_arrays == 64) abort();
    return arrays[n_arrays++] = a;
}

static const nnrt_tensor_info *tensor(const char *name) {
    const nnrt_model_info *info = %(m)s_info();
    for (int i = 0; i < info->n_tensors; i++)
        if (!strcmp(info->tensors[i].name, name)) return &info->tensors[i];
    return NULL;
}

/* A fresh context holding the case's weights. */
static %(m)s context(void) {
    %(m)s m = {own(calloc(1, %(M)s_STATE_BYTES + 64)), own(calloc(1, %(M)s_WORK_BYTES + 64))};
    int rc = %(m)s_init(&m, 1);
    if (rc) die("init", rc);
    char path[4096];
    snprintf(path, sizeof path, "%%s/weights.safetensors", dir);
    rc = nnrt_load(%(m)s_info(), m.state, path, NNRT_KINDS_WEIGHTS, 0, &err);
    if (rc) die(path, rc);
    return m;
}

static __attribute__((unused)) void set_hyper(%(m)s *m, const char *name, float value) {
    const nnrt_tensor_info *t = tensor(name);
    if (t && t->kind == NNRT_HYPER) memcpy((char *)m->state + t->offset, &value, sizeof value);
}

/* Saves a model's tensors of the given kinds as the nnc commands save them. */
static __attribute__((unused)) void save_state(%(m)s *m, const char *name) {
    char path[4096];
    snprintf(path, sizeof path, "%%s/%%s", out, name);
    int rc = nnrt_save(%(m)s_info(), m->state, path, NNRT_KINDS_WEIGHTS, 0, NULL, NULL, &err);
    if (rc) die(path, rc);
}

static __attribute__((unused)) void save_npy(const char *name, const nnrt_io_info *io, int n, const void *data) {
    char path[4096];
    int64_t shape[NNRT_MAX_RANK];
    for (int i = 0; i < io->rank; i++) shape[i] = io->shape[i] < 0 ? n : io->shape[i];
    snprintf(path, sizeof path, "%%s/%%s.npy", out, name);
    int rc = nnrt_npy_save(path, io->dtype, io->rank, shape, data, &err);
    if (rc) die(path, rc);
}
'''


C_EMBEDDED = r'''
#include "%(m)s.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *dir, *out;
static nnrt_error err;

/* everything the program allocates, freed before it returns (the sanitized build checks leaks) */
static void *owned[256];
static int n_owned;
static nnrt_array arrays[64];
static int n_arrays;

static void *own(void *p) {
    if (!p || n_owned == 256) abort();
    return owned[n_owned++] = p;
}

static void release(void) {
    while (n_owned) free(owned[--n_owned]);
    while (n_arrays) nnrt_array_free(&arrays[--n_arrays]);
}

static void die(const char *what, int rc) {
    fprintf(stderr, "%%s: %%s (%%s)\n", what, nnrt_strerror(rc), err.msg);
    exit(1);
}

static nnrt_array load(const char *name) {
    char path[4096];
    snprintf(path, sizeof path, "%%s/%%s", dir, name);
    nnrt_array a;
    int rc = nnrt_npy_load(path, &a, &err);
    if (rc) die(path, rc);
    if (n_arrays == 64) abort();
    return arrays[n_arrays++] = a;
}

static void save_npy(const char *name, const nnrt_io_info *io, int n, const void *data) {
    char path[4096];
    int64_t shape[NNRT_MAX_RANK];
    for (int i = 0; i < io->rank; i++) shape[i] = io->shape[i] < 0 ? n : io->shape[i];
    snprintf(path, sizeof path, "%%s/%%s.npy", out, name);
    int rc = nnrt_npy_save(path, io->dtype, io->rank, shape, data, &err);
    if (rc) die(path, rc);
}
'''


def c_program(model, run, grad, trains, infer_proto, train_proto, grad_args, grad_outs, epochs,
              embedded=False):
    """The C program; embedded: for an object of --embed-weights (infer only, state NULL)."""
    M = model.upper()
    src = [(C_EMBEDDED if embedded else C_PRELUDE) % {'m': model, 'M': M}]
    src.append('int main(int argc, char **argv) {\n    if (argc != 3) return 2;\n'
               '    dir = argv[1], out = argv[2];\n    int rc;\n')
    if run:
        ins = [(t, n) for t, n in infer_proto if t.startswith('const')]
        outs = [(t, n) for t, n in infer_proto if not t.startswith('const')]
        if embedded:   # the weights are in the object: no state at all
            src.append('    {   /* nnc run */\n        %s m = {NULL, own(calloc(1, %s_WORK_BYTES + 64))};\n'
                       % (model, M))
        else:
            src.append('    {   /* nnc run */\n        %s m = context();\n' % model)
            src.append('        if ((rc = %s_prepare(&m))) die("prepare", rc);\n' % model)
        for t, n in ins:
            src.append('        nnrt_array in_%s = load("%s.npy");\n' % (n, n))
        src.append('        int n = (int)in_%s.shape[0];\n' % ins[0][1])
        src.append('        const nnrt_model_info *info = %s_info();\n' % model)
        for k, (t, n) in enumerate(outs):
            src.append('        float *out_%s = own(calloc((size_t)(n * info->outputs[%d].size) + 1, sizeof(float)));\n'
                       % (n, k))
        call = ', '.join(['&m', 'n'] + ['(%s)in_%s.data' % (t, n) for t, n in ins] +
                         ['out_%s' % n for t, n in outs])
        src.append('        if ((rc = %s_infer(%s))) die("infer", rc);\n' % (model, call))
        for k, (t, n) in enumerate(outs):
            src.append('        save_npy(info->outputs[%d].name, &info->outputs[%d], n, out_%s);\n' % (k, k, n))
        src.append('    }\n')
    if grad:
        src.append('    {   /* nnc grad, through the packed entry */\n        %s m = context();\n' % model)
        for a in grad_args:
            src.append('        nnrt_array in_%s = load("%s.npy");\n' % (a, a))
        src.append('        int n = (int)in_%s.shape[0];\n' % grad_args[0])
        src.append('        void *args[%d];\n        nnrt_st_tensor g[%d];\n'
                   % (len(grad_args) + len(grad_outs), len(grad_outs)))
        for i, a in enumerate(grad_args):
            src.append('        args[%d] = in_%s.data;\n' % (i, a))
        for k, name in enumerate(grad_outs):
            i = len(grad_args) + k
            if k == 0:   # the loss
                src.append('        g[0] = (nnrt_st_tensor){.name = "%s", .dtype = NNRT_F32, .rank = 0, '
                           '.bytes = 4};\n' % name)
            else:
                src.append('        {\n            const nnrt_tensor_info *t = tensor("%s");\n'
                           '            if (!t) die("no tensor %s", 0);\n'
                           '            g[%d] = (nnrt_st_tensor){.name = "%s", .dtype = t->dtype, '
                           '.rank = t->rank, .bytes = t->bytes};\n'
                           '            memcpy(g[%d].shape, t->shape, sizeof t->shape);\n        }\n'
                           % (name, name, k, name, k))
            src.append('        g[%d].data = own(calloc(1, g[%d].bytes + 4));\n        args[%d] = g[%d].data;\n'
                       % (k, k, i, k))
        src.append('        if ((rc = %s__grad_packed(m.state, m.work, n, args))) die("grad", rc);\n' % model)
        src.append('        char path[4096];\n        snprintf(path, sizeof path, "%%s/grad.safetensors", out);\n'
                   '        if ((rc = nnrt_st_write(path, %d, g, 0, NULL, NULL, &err))) die(path, rc);\n'
                   '    }\n' % len(grad_outs))
    for K, data in trains:
        src.append('    {   /* nnc train --steps %d --no-shuffle */\n        %s m = context();\n' % (K, model))
        names = [n for t, n in train_proto if t.startswith('const')]
        for n in names:
            src.append('        nnrt_array in_%s = load("%s");\n' % (n, data[n]))
        src.append('        int total = (int)in_%s.shape[0], batch = %s_MAX_BATCH;\n' % (names[0], M))
        src.append('        int spe = (total + batch - 1) / batch;\n'
                   '        set_hyper(&m, "steps_per_epoch", (float)spe);\n'
                   '        set_hyper(&m, "total_steps", (float)(%d * spe));\n' % epochs)
        src.append('        for (int step = 0; step < %d; step++) {\n'
                   '            int first = (step %% spe) * batch;\n'
                   '            int bn = total - first < batch ? total - first : batch;\n'
                   '            float loss;\n' % K)
        args = ', '.join(['&m', 'bn'] + ['(%s)((char *)in_%s.data + (size_t)first * (size_t)(in_%s.numel / total) * 4)'
                                         % (t, n, n) for t, n in train_proto
                                         if t.startswith('const')] + ['&loss'])
        src.append('            if ((rc = %s_train_step(%s))) die("train_step", rc);\n        }\n' % (model, args))
        src.append('        save_state(&m, "after_%d.safetensors");\n    }\n' % K)
    src.append('    release();\n    return 0;\n}\n')
    return ''.join(src)


def run_case(name, opts):
    case_dir = os.path.join(REF, name)
    cmds = check.read_cmds(case_dir)
    cr = check.CaseRun(name, opts)
    subs = [a[1] for a in cmds]
    run, grad = 'run' in subs, 'grad' in subs
    trains = []
    for argv in cmds:
        if argv[1] == 'train':
            data = {a.split('=', 1)[0]: a.split('=', 1)[1] for a in argv if '=train_' in a}
            trains.append((int(argv[argv.index('--steps') + 1]), data))
    tmp = tempfile.mkdtemp(prefix='nnc-api-%s-' % name)
    out = os.path.join(tmp, 'out')
    os.mkdir(out)

    def sh(argv, what):
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True, cwd=case_dir)
        if p.returncode:
            cr.say('FAIL', what, '%s: exit %d: %s' % (argv[0], p.returncode,
                                                      ' | '.join(p.stdout.strip().splitlines()[:6])))
            if opts.verbose:
                cr.lines.append('     $ ' + ' '.join(map(shlex.quote, argv)))
        return p.returncode == 0

    try:
        model_path = os.path.join(case_dir, 'model.nn')
        obj, hdr = os.path.join(tmp, name + '.o'), os.path.join(tmp, name + '.h')
        if not sh([opts.nnc, 'compile', model_path, '-o', obj, '--header', hdr], 'compile'):
            return cr
        with open(hdr) as f:
            header = f.read()
        infer_proto = prototype(header, name, 'infer')
        train_proto = prototype(header, name, 'train_step')
        grad_args, grad_outs = grad_signature(opts.nnc, model_path) if grad else ([], [])
        with open(model_path) as f:
            m = re.search(r'^\s*epochs\s*=\s*(\d+)', f.read(), re.M)
        epochs = int(m.group(1)) if m else 1
        with open(os.path.join(tmp, 'main.c'), 'w') as f:
            f.write(c_program(name, run, grad, trains, infer_proto, train_proto, grad_args,
                              grad_outs, epochs))
        exe = os.path.join(tmp, 'api')
        if not sh([opts.cc] + shlex.split(opts.cflags) + ['-I' + tmp, os.path.join(tmp, 'main.c'), obj]
                  + shlex.split(opts.libs) + ['-o', exe], 'cc'):
            return cr
        if not sh([exe, case_dir, out], 'api'):
            return cr
        if run and opts.embed:   # the same infer with the weights built into the object
            eobj, ehdr = os.path.join(tmp, 'embedded', name + '.o'), os.path.join(tmp, 'embedded', name + '.h')
            os.mkdir(os.path.join(tmp, 'embedded'))
            os.mkdir(os.path.join(tmp, 'out_embedded'))
            if not sh([opts.nnc, 'compile', model_path, '-o', eobj, '--header', ehdr, '--embed-weights',
                       os.path.join(case_dir, 'weights.safetensors')], 'compile --embed-weights'):
                return cr
            with open(os.path.join(tmp, 'embedded', 'main.c'), 'w') as f:
                f.write(c_program(name, True, False, [], infer_proto, None, [], [], 1, embedded=True))
            eexe = os.path.join(tmp, 'embedded', 'api')
            if not sh([opts.cc] + shlex.split(opts.cflags) + ['-I' + os.path.join(tmp, 'embedded'),
                                                              os.path.join(tmp, 'embedded', 'main.c'), eobj]
                      + shlex.split(opts.libs) + ['-o', eexe], 'cc (embedded)'):
                return cr
            if not sh([eexe, case_dir, os.path.join(tmp, 'out_embedded')], 'api (embedded)'):
                return cr
            for argv in cmds:
                if argv[1] == 'run':
                    for a in argv:
                        if '=$OUT/' in a:
                            cr.check_output(case_dir, os.path.join(tmp, 'out_embedded'), 'infer --embed-weights',
                                            a.split('=', 1)[1].replace('$OUT/', ''), '')
        label = {'run': 'infer', 'grad': 'grad_packed'}
        for argv in cmds:
            produced = [a.replace('$OUT/', '') for a in argv if a.startswith('$OUT/')]
            produced += [a.split('=', 1)[1].replace('$OUT/', '') for a in argv if '=$OUT/' in a]
            what = label.get(argv[1], 'train_step x%s' % (argv[argv.index('--steps') + 1]
                                                          if '--steps' in argv else ''))
            for p in produced:
                cr.check_output(case_dir, out, what, p, '')
    finally:
        if opts.keep:
            cr.lines.append('     (kept in %s)' % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return cr


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('cases', nargs='*')
    ap.add_argument('--nnc', default=os.path.join(ROOT, 'build', 'nnc'))
    ap.add_argument('--cc', default=os.environ.get('CC', 'cc'))
    ap.add_argument('--cflags', default='-std=c11 -O1 -Wall -Wextra -Werror -D_GNU_SOURCE -I%s'
                    % os.path.join(ROOT, 'runtime'))
    ap.add_argument('--libs', default=None)
    ap.add_argument('--atol', type=float, default=1e-5)
    ap.add_argument('--rtol', type=float, default=1e-4)
    ap.add_argument('--layers', action='store_true', help='the layer cases')
    ap.add_argument('--others', action='store_true', help='every case but the layer cases')
    ap.add_argument('--embed', action='store_true',
                    help='also infer with an object of --embed-weights (state NULL)')
    ap.add_argument('--keep', action='store_true')
    ap.add_argument('-v', '--verbose', action='store_true')
    opts = ap.parse_args(argv)
    opts.nnc = os.path.abspath(opts.nnc) if os.sep in opts.nnc else opts.nnc   # commands run in the case directory
    if opts.libs is None:
        opts.libs = '%s -lopenblas -lz -lm -lpthread' % os.path.join(
            os.path.dirname(os.path.abspath(opts.nnc)), 'libnnrt.a')
    cases = list(opts.cases)
    if opts.layers:
        cases += LAYER_CASES
    if opts.others:
        cases += [c for c in check.list_cases() if c not in LAYER_CASES]
    if not cases:
        cases = check.list_cases()
    passed = failed = 0
    for name in cases:
        cr = run_case(name, opts)
        for l in cr.lines:
            print(l)
        if cr.ok and cr.ntensors:
            passed += 1
        else:
            failed += 1
            if not cr.ntensors and cr.ok:
                print('FAIL %s: nothing compared' % name)
    print('%d passed, %d failed' % (passed, failed))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
