#!/usr/bin/python3
"""bench.py: `make bench`, nnc against PyTorch on this machine (docs/performance.md).

    /usr/bin/python3 tests/bench/bench.py [--build build] [--reps 5] [--out build/bench]
    /usr/bin/python3 tests/bench/bench.py --combine run1.json run2.json ...

Standard library only (PyTorch runs in child processes, tests/bench/torch_bench.py). Builds
the timing programs, runs workloads W1..W7 of DESIGN.md section 10 with nnc and PyTorch in the
same run, single-threaded, R repetitions each, and prints a table of medians, which also goes
to OUT/results.md (and every raw measurement to OUT/results.json). --combine prints the table
of the medians over several runs' results.json (docs/performance.md uses three).

A workload nnc cannot run yet is reported as "n/a (reason)"; the script itself fails only
when it cannot build its own programs. Each child runs under a CPU-time limit, so one that
compiles or runs for far too long is stopped and reported instead of stalling the run.
"""
import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PYTHON = "/usr/bin/python3"
CC = os.environ.get("CC", "cc")

# The models: .nn file, PyTorch counterpart (torch_bench.py), workloads (harness modes).
MODELS = {
    "w1_mlp": ("tests/bench/w1_mlp.nn", ["train", "infer1"]),
    "w3_logreg": ("tests/bench/w3_logreg.nn", ["train"]),
    "fashion_cnn": ("examples/fashion_cnn.nn", ["train", "infer", "infer1"]),
    "char_lstm": ("examples/char_lstm.nn", ["train"]),
}

# GEMMs of one call of each workload (M, N, K, transpose A, transpose B, count), for the
# roofline. dense: Y = X @ W^T -> (B, out, in, 0, 1); its gradients dX = dY @ W ->
# (B, in, out, 0, 0) and dW = dY^T @ X -> (out, in, B, 1, 0). conv2d as im2col per image:
# Y[c_out, HW] = W[c_out, c_in*k*k] @ cols -> (c_out, HW, c_in*k*k, 0, 0) per image. The
# LSTM's recurrent GEMM is per time step; the input projection and the output layer cover
# all 32 steps at once (the best a schedule can do).
def dense_fwd(b, i, o):
    return [(b, o, i, 0, 1, 1)]


def dense_bwd(b, i, o, input_grad=True):
    return [(o, i, b, 1, 0, 1)] + ([(b, i, o, 0, 0, 1)] if input_grad else [])


def conv_fwd(images, cin, cout, k, hw):
    return [(cout, hw, cin * k * k, 0, 0, images)]


def conv_bwd(images, cin, cout, k, hw, input_grad=True):
    return [(cout, cin * k * k, hw, 0, 1, images)] + \
        ([(cin * k * k, hw, cout, 1, 0, images)] if input_grad else [])


W1_FWD = dense_fwd(64, 784, 512) + dense_fwd(64, 512, 256) + dense_fwd(64, 256, 10)
CNN_FWD = conv_fwd(64, 1, 32, 5, 784) + conv_fwd(64, 32, 64, 5, 196) + \
    dense_fwd(64, 3136, 256) + dense_fwd(64, 256, 10)
GEMMS = {
    "w1_mlp/train": W1_FWD + dense_bwd(64, 784, 512, False) + dense_bwd(64, 512, 256) +
    dense_bwd(64, 256, 10),
    "w1_mlp/infer1": dense_fwd(1, 784, 512) + dense_fwd(1, 512, 256) + dense_fwd(1, 256, 10),
    "w3_logreg/train": [(64, 10, 784, 0, 0, 1), (784, 10, 64, 1, 0, 1)],
    "fashion_cnn/train": CNN_FWD + conv_bwd(64, 1, 32, 5, 784, False) +
    conv_bwd(64, 32, 64, 5, 196) + dense_bwd(64, 3136, 256) + dense_bwd(64, 256, 10),
    "fashion_cnn/infer": CNN_FWD,
    "fashion_cnn/infer1": conv_fwd(1, 1, 32, 5, 784) + conv_fwd(1, 32, 64, 5, 196) +
    dense_fwd(1, 3136, 256) + dense_fwd(1, 256, 10),
    "char_lstm/train": dense_fwd(1024, 64, 512) + [(32, 512, 128, 0, 1, 32)] +
    dense_fwd(1024, 128, 256) + dense_bwd(1024, 128, 256) + dense_bwd(1024, 64, 512) +
    [(512, 128, 32, 1, 0, 32), (32, 128, 512, 0, 0, 32)],
}

# Targets (DESIGN.md section 10 and the benchmark issue): ratio = nnc/PyTorch for
# throughput, PyTorch/nnc for latency and memory, so that > 1 always means nnc is better.
TARGETS = {"W1": 1.5, "W2": 1.2, "W3": 5.0, "W4": 2.0, "W5": 1.3, "W6": 5.0}
W7_LIMIT_MS = 100.0


def log(msg):
    print("bench: " + msg, file=sys.stderr, flush=True)


def cpu_used(pid):
    """CPU seconds process pid has used so far (all its threads), from /proc; 0 if unknown.

    The CPU limit of a child is enforced by polling this, not with RLIMIT_CPU: a process
    with a CPU-time rlimit has a running process CPU timer, and Linux then reads the
    process's CLOCK_PROCESS_CPUTIME_ID from that timer's totals, which advance only at
    scheduler ticks: every timed block of ~20 ms read as a whole number of 4 ms ticks, and
    per-call times came out quantized (W1: 20 ms / 18 or / 19 calls, +-5%)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


class Result:
    """What a child did: status (exit code, or None when a signal ended it), its output,
    its own rusage (CPU seconds, peak RSS) and the wall time."""

    def __init__(self, status, signal, out, err, ru, wall):
        self.status, self.signal, self.out, self.err, self.ru, self.wall = \
            status, signal, out, err, ru, wall

    def cpu(self):
        return self.ru.ru_utime + self.ru.ru_stime


def run(cmd, env, cpu_seconds, wall_seconds=None):
    """Runs cmd under a CPU-time limit (polled, see cpu_used; and a wall-clock backstop,
    20x by default) and reaps it with wait4, which gives the child's own rusage."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            cwd=ROOT)
    bufs = {}

    def drain(f, key):
        bufs[key] = f.read()

    readers = [threading.Thread(target=drain, args=(proc.stdout, "out")),
               threading.Thread(target=drain, args=(proc.stderr, "err"))]
    for t in readers:
        t.start()
    deadline = t0 + (wall_seconds or cpu_seconds * 20)
    while any(t.is_alive() for t in readers):
        next(t for t in readers if t.is_alive()).join(0.25)
        if time.perf_counter() > deadline or cpu_used(proc.pid) > cpu_seconds:
            proc.kill()
            break
    for t in readers:
        t.join()
    _, status, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    wall = time.perf_counter() - t0
    code = proc.returncode
    text = {k: v.decode("utf-8", "replace") for k, v in bufs.items()}
    return Result(code if code >= 0 else None, -code if code < 0 else 0, text.get("out", ""),
                  text.get("err", ""), ru, wall)


def json_lines(text):
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def first_error(r, limit):
    """A one-line reason why a child failed."""
    out, err = r.out, r.err
    if r.status is None:
        if r.signal == signal.SIGKILL:
            return "stopped after %d s of CPU time (limit)" % limit
        return "killed by signal %d (%s)" % (r.signal, signal.Signals(r.signal).name)
    lines = [line.strip() for line in err.splitlines() if line.strip()]
    said = [line for line in lines if "error" in line]
    for obj in json_lines(out):
        if "error" in obj and not ("see stderr" in obj["error"] and said):
            return obj["error"]
    if said:
        return re.sub(r"^(nnc: |harness: )?(internal )?error: ", "", said[0])
    return lines[-1] if lines else "exit status %s" % r.status


def short(reason, width=90):
    reason = re.sub(r"\s+", " ", reason)
    return reason if len(reason) <= width else reason[:width - 3] + "..."


def median(values):
    return statistics.median(values) if values else None


# ---------------------------------------------------------------- the run


class Bench:
    def __init__(self, args):
        self.args = args
        self.build = os.path.abspath(args.build)
        self.out = os.path.abspath(args.out)
        self.nnc = os.path.join(self.build, "nnc")
        os.makedirs(self.out, exist_ok=True)
        base = dict(os.environ)
        base["OPENBLAS_NUM_THREADS"] = "1"
        base["OMP_NUM_THREADS"] = "1"
        base.pop("OPENBLAS_CORETYPE", None)
        base.pop("NNC_NO_REEXEC", None)
        base.pop("NNC_BLAS_AS_IS", None)
        self.env_nnc = base                      # nnc chooses its kernels itself
        self.env_fast = dict(base, OPENBLAS_CORETYPE="SkylakeX")  # PyTorch, harness, roofline
        self.raw = {"machine": {}, "nnc": {}, "torch": {}, "roofline": {}, "compile": {},
                    "na": {}}

    # ------------------------------------------------------------ machine

    def machine(self):
        m = self.raw["machine"]
        cpuinfo = open("/proc/cpuinfo").read()
        name = re.search(r"model name\s*:\s*(.*)", cpuinfo)
        flags = re.search(r"flags\s*:\s*(.*)", cpuinfo)
        m["cpu"] = name.group(1).strip() if name else "?"
        m["cpus"] = os.cpu_count()
        m["avx512"] = " ".join(sorted(f for f in (flags.group(1).split() if flags else [])
                                      if f.startswith("avx512")))
        m["load_start"] = os.getloadavg()
        r = run([self.nnc, "--version"], self.env_nnc, 10)
        m["nnc_version"] = r.out.strip().replace("\n", "; ")
        blas = re.search(r"BLAS: (.*)", r.out)
        m["nnc_blas"] = blas.group(1) if blas else "?"
        r = run([PYTHON, "-c", "import torch; print(torch.__version__)"], self.env_fast, 60)
        m["torch"] = r.out.strip() or "unavailable: " + first_error(r, 60)
        m["reps"] = self.args.reps

    # ------------------------------------------------------------ build

    def build_tools(self):
        """roofline (libnnrt only) and the JIT harness (every compiler object but main.o)."""
        rt = os.path.join(self.build, "libnnrt.a")
        libs = ["-lopenblas", "-lz", "-lm", "-lpthread", "-ldl"]
        flags = ["-std=c11", "-O2", "-g", "-Wall", "-Wextra", "-Werror", "-D_GNU_SOURCE",
                 "-I" + os.path.join(ROOT, "runtime")]
        self.roofline = os.path.join(self.out, "roofline")
        cc([*flags, "-o", self.roofline, os.path.join(HERE, "roofline.c"), rt, *libs])
        objs = []
        for sub in ("lang", "gen", "compiler"):
            d = os.path.join(self.build, sub)
            objs += sorted(os.path.join(d, f) for f in os.listdir(d)
                           if f.endswith(".o") and f != "main.o")
        llvm = subprocess.run(["llvm-config-19", "--ldflags"], capture_output=True,
                              text=True).stdout.split()
        self.harness_jit = os.path.join(self.out, "harness_jit")
        ok = cc([*flags, "-I" + os.path.join(ROOT, "compiler"), "-I" + os.path.join(ROOT, "lang"),
                 "-I" + os.path.join(self.build, "gen"), "-o", self.harness_jit,
                 os.path.join(HERE, "harness.c"), os.path.join(HERE, "backend_jit.c"), *objs, rt,
                 *llvm, "-lLLVM-19", *libs], must=False)
        if not ok:
            self.harness_jit = None

    def build_aot(self, name, nn):
        """nnc compile + the AOT harness for one model: (command, None) or (None, reason)."""
        obj = os.path.join(self.out, name + ".o")
        hdr = os.path.join(self.out, name + ".h")
        r = run([self.nnc, "compile", nn, "-o", obj, "--header", hdr], self.env_nnc,
                self.args.compile_limit)
        if r.status != 0:
            return None, first_error(r, self.args.compile_limit)
        src = open(hdr).read()
        x_type = "int32_t" if re.search(r"const int32_t \*x\b", src) else "float"
        exe = os.path.join(self.out, "harness_" + name)
        ok = cc(["-std=c11", "-O2", "-g", "-D_GNU_SOURCE", "-I" + os.path.join(ROOT, "runtime"),
                 "-I" + self.out, "-DBENCH_MODEL=" + name, "-DBENCH_MODEL_UPPER=" + name.upper(),
                 '-DBENCH_HEADER="%s.h"' % name, "-DBENCH_X_TYPE=" + x_type, "-o", exe,
                 os.path.join(HERE, "harness.c"), os.path.join(HERE, "backend_aot.c"), obj,
                 os.path.join(self.build, "libnnrt.a"), "-lopenblas", "-lz", "-lm", "-lpthread"],
                must=False)
        if not ok:
            return None, "the harness does not build against %s.h (see above)" % name
        return [exe], None

    # ------------------------------------------------------------ W7

    def compile_times(self):
        """W7: `nnc compile` of every example, CPU and wall time, median of up to 3 runs.
        Without the compile command, the JIT harness's in-process compile stands in."""
        res = self.raw["compile"]
        examples = sorted(f for f in os.listdir(os.path.join(ROOT, "examples"))
                          if f.endswith(".nn"))
        probe = run([self.nnc, "compile", "--help"], self.env_nnc, 10)
        self.have_compile = probe.status == 0 and "not available" not in probe.err
        for ex in examples:
            path = os.path.join("examples", ex)
            cpu, wall, reason = [], [], None
            for rep in range(3):
                if self.have_compile:
                    obj = os.path.join(self.out, "w7.o")
                    r = run([self.nnc, "compile", path, "-o", obj, "--header",
                             os.path.join(self.out, "w7.h")], self.env_nnc,
                            self.args.compile_limit)
                    if r.status != 0:
                        reason = first_error(r, self.args.compile_limit)
                        break
                    cpu.append(r.cpu())
                    wall.append(r.wall)
                else:
                    if not self.harness_jit:
                        reason = "no compile command and no JIT harness"
                        break
                    r = run([self.harness_jit, "--model", path, "compile"], self.env_fast,
                            self.args.compile_limit)
                    line = [o for o in json_lines(r.out) if o.get("mode") == "compile"]
                    if r.status != 0 or not line:
                        reason = first_error(r, self.args.compile_limit)
                        break
                    cpu.append(line[0]["cpu"])
                    wall.append(line[0]["wall"])
                if cpu[-1] > 5:  # slow: once is enough
                    break
            if reason and reason.startswith("stopped after"):
                reason = "compiling " + reason
            res[ex] = {"cpu": cpu, "wall": wall, "reason": reason,
                       "how": "nnc compile" if self.have_compile else "jit"}
            log("W7 %-26s %s" % (ex, ("%.0f ms wall, %.0f ms CPU" % (1e3 * median(wall),
                                                                       1e3 * median(cpu)))
                                 if cpu else "n/a: " + short(reason)))

    # ------------------------------------------------------------ W1..W6

    def harness_for(self, name, nn):
        if name in self.harness_cmd:
            return self.harness_cmd[name]
        cmd, reason = (None, None)
        w7 = self.raw["compile"].get(os.path.basename(nn)) if nn.startswith("examples/") else None
        if w7 and w7["reason"]:  # the example already failed to compile in W7
            reason = w7["reason"]
        elif self.have_compile:
            cmd, reason = self.build_aot(name, nn)
        elif self.harness_jit:
            cmd = [self.harness_jit, "--model", nn]
        else:
            reason = "no compile command and no JIT harness"
        self.harness_cmd[name] = (cmd, reason)
        return cmd, reason

    def workloads(self):
        self.harness_cmd = {}
        reps = str(self.args.reps)
        for name, (nn, modes) in MODELS.items():
            cmd, reason = self.harness_for(name, nn)
            if cmd:
                limit = self.args.run_limit + (self.args.compile_limit if not self.have_compile
                                                else 0)
                r = run(cmd + ["--reps", reps] + modes, self.env_fast, limit)
                lines = json_lines(r.out)
                self.raw["nnc"].setdefault(name, []).extend(lines)
                if r.status != 0:
                    self.raw["na"][name] = first_error(r, limit)
                core = [o.get("blas") for o in lines if "blas" in o]
                if core and core[0] != "SkylakeX":
                    log("warning: the harness runs on %s kernels" % core[0])
            else:
                self.raw["na"][name] = reason
            log("nnc     %-12s %s" % (name, "ok" if name not in self.raw["na"] else
                                      "n/a: " + short(self.raw["na"][name])))
            r = run([PYTHON, os.path.join(HERE, "torch_bench.py"), name, "--reps", reps] + modes,
                    self.env_fast, self.args.run_limit)
            self.raw["torch"].setdefault(name, []).extend(json_lines(r.out))
            if r.status != 0:
                self.raw["na"]["torch/" + name] = first_error(r, self.args.run_limit)
            log("PyTorch %-12s %s" % (name, "ok" if r.status == 0 else
                                      "failed: " + short(self.raw["na"]["torch/" + name])))

    def end_to_end(self):
        """W1 through `nnc train`: one epoch's CPU time is the difference between runs of
        2 and 1 epochs (start-up, JIT and data loading cancel); the epoch line's samples/s is
        kept too. The 1-epoch run's peak RSS is W6's `nnc train` line."""
        nn = MODELS["w1_mlp"][0]
        e2e = self.raw["e2e"] = {"nnc_cpu": [], "nnc_printed": [], "nnc_rss": [], "reason": None}
        for rep in range(self.args.e2e_reps):
            cpu = {}
            for epochs in (1, 2):
                r = run([self.nnc, "train", nn, "--epochs", str(epochs), "--seed", str(rep + 1)],
                        self.env_nnc, self.args.run_limit)
                if r.status != 0:
                    e2e["reason"] = first_error(r, self.args.run_limit)
                    break
                cpu[epochs] = r.cpu()
                if epochs == 1:
                    e2e["nnc_rss"].append(r.ru.ru_maxrss)
                    m = re.search(r"epoch 1/1:.* ([0-9.]+) samples/s", r.out)
                    if m:
                        e2e["nnc_printed"].append(float(m.group(1)))
            if e2e["reason"]:
                break
            e2e["nnc_cpu"].append(cpu[2] - cpu[1])
        r = run([PYTHON, os.path.join(HERE, "torch_bench.py"), "w1_mlp", "--reps",
                 str(self.args.e2e_reps), "epoch"], self.env_fast, self.args.run_limit)
        e2e["torch"] = [o for o in json_lines(r.out) if o.get("mode") == "epoch"]
        log("W1 end-to-end: %s" % ("ok" if not e2e["reason"] else "n/a: " + short(e2e["reason"])))

    def memory(self):
        """W6: peak RSS of W1 training, 300 steps, images kept as bytes on both sides."""
        steps = "mem=%d" % self.args.mem_steps
        res = self.raw["memory"] = {}
        cmd, reason = self.harness_for("w1_mlp", MODELS["w1_mlp"][0])
        if cmd:
            r = run(cmd + [steps], self.env_fast, self.args.run_limit)
            if r.status == 0:
                res["nnc"] = r.ru.ru_maxrss
                res["nnc_backend"] = "jit" if "harness_jit" in cmd[0] else "aot"
            else:
                res["nnc_reason"] = first_error(r, self.args.run_limit)
        else:
            res["nnc_reason"] = reason
        r = run([PYTHON, os.path.join(HERE, "torch_bench.py"), "w1_mlp", steps], self.env_fast,
                self.args.run_limit)
        if r.status == 0:
            res["torch"] = r.ru.ru_maxrss
        else:
            res["torch_reason"] = first_error(r, self.args.run_limit)
        log("W6 memory: nnc %s KiB, PyTorch %s KiB" % (res.get("nnc"), res.get("torch")))

    def roofline_rates(self):
        shapes = sorted({g[:5] for gs in GEMMS.values() for g in gs})
        r = run([self.roofline] + ["%d,%d,%d,%d,%d" % s for s in shapes], self.env_fast, 120)
        for o in json_lines(r.out):
            if "shape" in o:
                self.raw["roofline"][o["shape"]] = o["gflops"]
            elif "core" in o:
                self.raw["machine"]["roofline_core"] = o["core"]
        log("roofline: %d GEMM shapes measured" % len(self.raw["roofline"]))

    # ------------------------------------------------------------ report

    def flops_per_sample(self, nn):
        r = run([self.nnc, "summary", nn], self.env_nnc, 30)
        m = re.search(r"per sample: ([0-9,]+) MACs, ([0-9,]+) FLOPs", r.out)
        return int(m.group(2).replace(",", "")) if m else None

    def ceiling(self, key):
        """FLOP-weighted harmonic mean of the measured sgemm GFLOP/s of a workload's GEMMs:
        the GFLOP/s of the workload if it were nothing but its GEMMs at OpenBLAS speed."""
        total, seconds = 0.0, 0.0
        for m, n, k, ta, tb, count in GEMMS[key]:
            rate = self.raw["roofline"].get("%d,%d,%d,%d,%d" % (m, n, k, ta, tb))
            if not rate:
                return None
            flop = 2.0 * m * n * k * count
            total += flop
            seconds += flop / (rate * 1e9)
        return total / seconds / 1e9

    def per_call(self, side, name, mode, key="cpu"):
        lines = [o for o in self.raw[side].get(name, []) if o.get("mode") == mode]
        vals = [o[key] for o in lines]
        return median(vals), lines

    def flops(self):
        self.raw["flops"] = {n: self.flops_per_sample(nn) for n, (nn, _) in MODELS.items()}

    @classmethod
    def from_raw(cls, raw):
        """A finished run read back from its results.json (for --combine)."""
        b = cls.__new__(cls)
        b.raw = raw
        return b

    def report(self):
        rows = []
        fl = self.raw.get("flops", {})
        na = self.raw["na"]

        def cell_na(name):
            return "n/a (%s)" % short(na.get(name, "no result"), 70)

        def throughput_row(wid, label, name, mode, unit, per_sample_factor, flop_factor,
                           target):
            t_nnc, lines = self.per_call("nnc", name, mode)
            t_pt, pt_lines = self.per_call("torch", name, mode)
            batch = (lines or pt_lines or [{"batch": 1}])[0]["batch"]
            v_nnc = batch * per_sample_factor / t_nnc if t_nnc else None
            v_pt = batch * per_sample_factor / t_pt if t_pt else None
            roof = self.ceiling(name + "/" + mode)
            pct = []
            for t in (t_nnc, t_pt):
                if t and fl.get(name) and roof:
                    pct.append(100.0 * fl[name] * flop_factor * batch / t / 1e9 / roof)
                else:
                    pct.append(None)
            backend = lines[0]["backend"] if lines else None
            variant = pt_lines[0].get("variant") if pt_lines else None
            rows.append(Row(wid, label, v_nnc, v_pt, unit, target, higher_better=True,
                            nnc_na=None if v_nnc else cell_na(name),
                            pt_na=None if v_pt else cell_na("torch/" + name),
                            pct=pct, backend=backend, variant=variant, roof=roof))

        def latency_row(wid, label, name, mode, unit, scale, target, flop_factor=1.0):
            t_nnc, lines = self.per_call("nnc", name, mode)
            t_pt, pt_lines = self.per_call("torch", name, mode)
            roof = self.ceiling(name + "/" + mode)
            batch = (lines or pt_lines or [{"batch": 1}])[0]["batch"]
            pct = [100.0 * fl[name] * flop_factor * batch / t / 1e9 / roof
                   if t and fl.get(name) and roof else None for t in (t_nnc, t_pt)]
            rows.append(Row(wid, label, t_nnc * scale if t_nnc else None,
                            t_pt * scale if t_pt else None, unit, target, higher_better=False,
                            nnc_na=None if t_nnc else cell_na(name),
                            pt_na=None if t_pt else cell_na("torch/" + name), pct=pct,
                            backend=lines[0]["backend"] if lines else None,
                            variant=pt_lines[0].get("variant") if pt_lines else None,
                            roof=roof))

        throughput_row("W1", "mlp train (samples/s)", "w1_mlp", "train", "samples/s", 1, 3,
                       TARGETS["W1"])
        e2e = self.raw.get("e2e", {})
        nnc_e2e = 60000 / median(e2e["nnc_cpu"]) if e2e.get("nnc_cpu") else None
        pt_e2e = [o["samples"] / o["cpu"] for o in e2e.get("torch", [])]
        rows.append(Row("W1", "mlp `nnc train --epochs 1` (samples/s)", nnc_e2e,
                        median(pt_e2e), "samples/s", TARGETS["W1"], True,
                        nnc_na=None if nnc_e2e else "n/a (%s)" % short(e2e.get("reason") or
                                                                       "no result", 70),
                        pt_na=None if pt_e2e else "n/a (PyTorch epoch failed)",
                        backend="nnc train", variant="epoch loop"))
        throughput_row("W2", "cnn train (samples/s)", "fashion_cnn", "train", "samples/s", 1, 3,
                       TARGETS["W2"])
        throughput_row("W2", "cnn inference, batch 64 (samples/s)", "fashion_cnn", "infer",
                       "samples/s", 1, 1, TARGETS["W2"])
        latency_row("W3", "logreg train step (us)", "w3_logreg", "train", "us", 1e6,
                    TARGETS["W3"], flop_factor=3.0)
        throughput_row("W4", "char-LSTM train (tokens/s)", "char_lstm", "train", "tokens/s", 32,
                       3, TARGETS["W4"])
        latency_row("W5", "mlp inference, batch 1 (us)", "w1_mlp", "infer1", "us", 1e6,
                    TARGETS["W5"])
        latency_row("W5", "cnn inference, batch 1 (us)", "fashion_cnn", "infer1", "us", 1e6,
                    TARGETS["W5"])
        mem = self.raw.get("memory", {})
        rows.append(Row("W6", "mlp training peak RSS (MiB)",
                        mem["nnc"] / 1024 if mem.get("nnc") else None,
                        mem["torch"] / 1024 if mem.get("torch") else None, "MiB", TARGETS["W6"],
                        False, nnc_na=None if mem.get("nnc") else
                        "n/a (%s)" % short(mem.get("nnc_reason", "?"), 70),
                        pt_na=None if mem.get("torch") else
                        "n/a (%s)" % short(mem.get("torch_reason", "?"), 70),
                        backend=mem.get("nnc_backend"), variant="mem"))
        rss = e2e.get("nnc_rss")
        rows.append(Row("W6", "mlp peak RSS, `nnc train` (MiB)",
                        median(rss) / 1024 if rss else None,
                        mem["torch"] / 1024 if mem.get("torch") else None, "MiB", TARGETS["W6"],
                        False, nnc_na=None if rss else "n/a (%s)" % short(e2e.get("reason") or
                                                                           "no result", 70),
                        pt_na=None if mem.get("torch") else "n/a", backend="nnc train"))
        comp = self.raw["compile"]
        worst, worst_ex = None, None
        for ex, r in comp.items():  # wall time: nnc compile uses one thread per CPU
            if r["wall"] and (worst is None or median(r["wall"]) > worst):
                worst, worst_ex = median(r["wall"]), ex
        failed = [ex for ex, r in comp.items() if r["reason"]]
        rows.append(Row("W7", "`nnc compile`, slowest example (ms, wall)",
                        worst * 1e3 if worst is not None else None, None, "ms", W7_LIMIT_MS,
                        False, absolute=True, nnc_na=None if worst else "n/a",
                        pt_na="—", backend=(worst_ex or ""),
                        extra_missed=bool(failed)))
        self.rows = rows
        return rows


class Row:
    def __init__(self, wid, label, nnc, torch, unit, target, higher_better, nnc_na=None,
                 pt_na=None, pct=None, backend=None, variant=None, roof=None, absolute=False,
                 extra_missed=False):
        self.__dict__.update(locals())
        del self.__dict__["self"]

    def ratio(self):
        if self.absolute or not self.nnc or not self.torch:
            return None
        return self.nnc / self.torch if self.higher_better else self.torch / self.nnc

    def status(self):
        if self.absolute:
            if self.nnc is None:
                return "n/a"
            return "missed" if self.nnc >= self.target or self.extra_missed else "met"
        r = self.ratio()
        if r is None:
            return "n/a"
        return "met" if r >= self.target else "missed"

    def target_text(self):
        if self.absolute:
            return "< %g ms" % self.target
        if self.wid == "W6":
            return "<= 1/%g" % self.target
        if not self.higher_better:
            return ">= %gx lower" % self.target
        return ">= %gx" % self.target


def fmt(v, unit):
    if v is None:
        return None
    if unit in ("samples/s", "tokens/s"):
        return "{:,.0f}".format(v)
    if unit == "us":
        return "%.1f" % v if v < 1000 else "{:,.0f}".format(v)
    if unit == "MiB":
        return "%.1f" % v
    if unit == "ms":
        return "%.0f" % v
    return "%.3g" % v


def cc(cmd, must=True):
    p = subprocess.run([CC] + cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.stderr.write(p.stderr[-3000:])
        if must:
            sys.exit("bench: cannot build %s" % cmd[cmd.index("-o") + 1])
        return False
    return True


def table(bench):
    m = bench.raw["machine"]
    lines = []
    lines.append("machine: %s, %s CPUs, %s" % (m["cpu"], m["cpus"], m["avx512"] or "no AVX-512"))
    lines.append("BLAS (nnc --version): %s" % m.get("nnc_blas"))
    lines.append("PyTorch %s, 1 thread, OPENBLAS_CORETYPE=SkylakeX; harness/roofline kernels: %s"
                 % (m.get("torch"), m.get("roofline_core", "?")))
    w1 = bench.raw["roofline"].get("64,512,784,0,1")
    load = m.get("load_text") or "load average %.1f at start, %.1f at end" % (
        m["load_start"][0], m["load_end"][0])
    lines.append("sgemm 64x512x784 (W1 layer 1): %s GFLOP/s; %s; medians of %s repetitions; "
                 "times are process CPU time" % ("%.0f" % w1 if w1 else "?", load, m["reps"]))
    lines.append("")
    lines.append("| workload | nnc | PyTorch | ratio | target | status "
                 "| % roofline nnc (PyTorch) |")
    lines.append("|---|---:|---:|---:|---|---|---:|")
    for r in bench.rows:
        n = fmt(r.nnc, r.unit) or r.nnc_na
        if r.backend == "jit" and r.nnc is not None:
            n += " (jit)"
        p = fmt(r.torch, r.unit) or r.pt_na or "—"
        if r.variant and r.variant not in ("mem", "epoch loop") and r.torch is not None:
            p += " (%s)" % r.variant
        if r.absolute and r.backend and r.nnc is not None:
            n += " (%s)" % r.backend
        ratio = r.ratio()
        pct = ""
        if r.pct and r.pct[0] is not None:
            pct = "%.0f%%" % r.pct[0]
            if r.pct[1] is not None:
                pct += " (%.0f%%)" % r.pct[1]
        lines.append("| %s %s | %s | %s | %s | %s | %s | %s |" % (
            r.wid, r.label, n, p, "%.2fx" % ratio if ratio else "—", r.target_text(),
            r.status(), pct))
    lines.append("")
    comp = bench.raw["compile"]
    how = next((c["how"] for c in comp.values()), "?")
    lines.append("W7 per example (%s; wall ms, CPU ms): " % (
        "`nnc compile`" if how == "nnc compile" else
        "`nnc compile` unavailable, in-process JIT compile of the harness instead") +
        "; ".join("%s %s" % (ex.replace(".nn", ""),
                             "%.0f, %.0f" % (1e3 * median(c["wall"]), 1e3 * median(c["cpu"]))
                             if c["cpu"] else "n/a (%s)" % short(c["reason"] or "?", 60))
                  for ex, c in sorted(comp.items())))
    roofs = ["%s %.0f" % (r.wid + " " + r.label.split(" (")[0], r.roof) for r in bench.rows
             if r.roof]
    lines.append("roofline ceilings (GFLOP/s, FLOP-weighted sgemm rate of each workload's GEMM "
                 "shapes): " + "; ".join(roofs))
    return "\n".join(lines) + "\n"


def combine(paths):
    """The median over several runs (results.json files) of every cell of the table."""
    runs = [Bench.from_raw(json.load(open(p))) for p in paths]
    for r in runs:
        r.report()
    first = runs[0]
    rows = []
    for i, row in enumerate(first.rows):
        same = [r.rows[i] for r in runs]
        merged = Row(**{k: v for k, v in row.__dict__.items()})
        for key in ("nnc", "torch", "roof"):
            vals = [getattr(x, key) for x in same if getattr(x, key) is not None]
            setattr(merged, key, median(vals))
        variants = {x.variant for x in same if x.torch is not None}
        if len(variants) > 1:
            merged.variant = "best of eager and frozen"
        if row.pct:
            merged.pct = [median([x.pct[j] for x in same if x.pct and x.pct[j] is not None])
                          for j in range(2)]
        rows.append(merged)
    first.rows = rows
    m = first.raw["machine"]
    loads = [r.raw["machine"]["load_start"][0] for r in runs] + \
        [r.raw["machine"]["load_end"][0] for r in runs]
    m["load_text"] = "load average %.1f to %.1f over the runs" % (min(loads), max(loads))
    m["reps"] = "%d runs x %s" % (len(runs), m["reps"])
    for ex, c in first.raw["compile"].items():
        per_run = [r.raw["compile"].get(ex, {}) for r in runs]
        c["cpu"] = [median(x["cpu"]) for x in per_run if x.get("cpu")]
        c["wall"] = [median(x["wall"]) for x in per_run if x.get("wall")]
    for key in ("64,512,784,0,1",):
        vals = [r.raw["roofline"].get(key) for r in runs if r.raw["roofline"].get(key)]
        first.raw["roofline"][key] = median(vals)
    return table(first)


def main():
    if sys.argv[1:2] == ["--combine"]:
        print(combine(sys.argv[2:]), end="")
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--out", default=None)
    ap.add_argument("--reps", type=int, default=int(os.environ.get("BENCH_REPS", "5")))
    ap.add_argument("--e2e-reps", type=int, default=None)
    ap.add_argument("--mem-steps", type=int, default=300)
    ap.add_argument("--compile-limit", type=int, default=30,
                    help="CPU seconds a compile may take before it is stopped")
    ap.add_argument("--run-limit", type=int, default=120,
                    help="CPU seconds a measuring child may take before it is stopped")
    args = ap.parse_args()
    args.out = args.out or os.path.join(args.build, "bench")
    if args.e2e_reps is None:
        args.e2e_reps = min(args.reps, 3)
    b = Bench(args)
    b.machine()
    b.build_tools()
    b.compile_times()
    b.roofline_rates()
    b.workloads()
    b.end_to_end()
    b.memory()
    b.raw["machine"]["load_end"] = os.getloadavg()
    b.flops()
    b.report()
    text = table(b)
    print(text)
    with open(os.path.join(b.out, "results.md"), "w") as f:
        f.write(text)
    with open(os.path.join(b.out, "results.json"), "w") as f:
        json.dump(b.raw, f, indent=1, default=str)
    print("written: %s/results.md, results.json" % os.path.relpath(b.out, ROOT))


if __name__ == "__main__":
    main()
