"""Keras training-step cost of the library's optimizers: Adam vs SymbolicRP() vs LearnedOptimizer (RP).

Model: ``keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3), classes=10)`` (23.5 M trainable
parameters; ``--model resnet20`` for the 0.27 M-parameter CIFAR ResNet-20), batch 32 of GENERATED data (N(0, 1)
images, uniform labels; no download), sparse categorical cross-entropy, ``model.compile`` defaults otherwise.

* **Step time** — all optimizers in ONE worker process, interleaved: one model per optimizer (same initial weights),
  each compiled and warmed up, then for every repeat, for every optimizer (the order rotates from repeat to repeat),
  ``--steps`` calls of ``model.train_on_batch`` are timed. Load changes on a shared machine hit every optimizer of a
  repeat alike, so the **ratio to Adam** is the median of the per-repeat ratios.
* **Memory** — each optimizer in its OWN worker process (``ru_maxrss`` is process-wide and never goes down, so the
  peak belongs to that optimizer alone): build the model, compile, run ``--mem-steps`` steps. The parent watches each
  worker's RSS and kills it above ``--max-rss-gib`` (default: 85 % of the memory available at start), reporting that
  as the result instead of letting the machine swap or the OOM killer pick a victim.
* **Optimizer state** — bytes of ``optimizer.variables`` without the ``iterations`` and ``learning_rate`` scalars,
  per trainable parameter (Adam: m, v = 8 B; the RP rule's features m̃, g̃ need m, v = 8 B; the RP LSTM also keeps
  h, c of two 20-unit layers = 80 floats more per coordinate = 328 B).

* **Backend** — ``--backend tensorflow`` (default), ``jax`` or ``torch``: the workers run under
  ``KERAS_BACKEND=<backend>``. On JAX the optimizers' steps are their ``keras.ops`` forms, compiled with the train
  step; on PyTorch ``SymbolicRP()``'s is its ``torch.compile``-d step; on TensorFlow it is the fused XLA step.
  Outputs of another backend than TensorFlow are named ``keras_step_<backend>.*``.

    python benchmarks/keras_step.py [--backend tensorflow] [--model resnet50] [--optimizers adam,symbolic,learned] \
        [--repeats 5] [--steps 3] [--warmup 1] [--rule default|paper|saved_models/.../rule.json] \
        [--l2o saved_models/rp_mnist_mlp] [--jit-compile auto|true|false] [--max-rss-gib G] [--no-memory] \
        [--out benchmarks/results]

Outputs: the table on stdout, ``<out>/keras_step.csv``, ``<out>/keras_step.png`` (median s/step with IQR error bars,
and peak RSS) and ``<out>/keras_step.json`` (every block timing, the arguments and the environment).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys

sys.path.insert(0, str(__import__('pathlib').Path(__file__).resolve().parent))
from _memory import peak_rss_mib, rss_mib  # noqa: E402
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULT_TAG = "@@RESULT@@ "
PHASE_TAG = "@@PHASE@@ "
COLORS = {"adam": "tab:gray", "symbolic": "tab:blue", "learned": "tab:orange"}
OPTIMIZERS = ("adam", "symbolic", "learned")
LABELS = {"adam": "Adam(1e-3)", "symbolic": "SymbolicRP()", "learned": "LearnedOptimizer(RP LSTM)"}
# The paper's RP rule (Zheng et al. 2022, distilled from RNNprop): Δθ = 0.01·tanh(tanh(c0 + sinh((c1·m̃)³))).
PAPER_RP_RULE = "tanh(tanh(0.024803324 + sinh(cube(-1.9923366 * mt_0))))"
DEFAULT_L2O = "saved_models/rp_mnist_mlp"


# ---------------------------------------------------------------------------------------------------------------
# worker side (imports TensorFlow)
# ---------------------------------------------------------------------------------------------------------------




def build_model(name: str, seed: int):
    import keras  # noqa: PLC0415

    keras.utils.set_random_seed(seed)
    if name == "resnet50":
        return keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3), classes=10)
    if name == "resnet20":
        from tf_symbolic_l2o.tasks.keras_models import resnet20  # noqa: PLC0415

        return resnet20()
    raise ValueError(f"unknown model {name!r}; use resnet50 or resnet20")


def load_rule(spec: str):
    from tf_symbolic_l2o.rules import Rule, parse_infix  # noqa: PLC0415

    if spec == "paper":
        return Rule(parse_infix(PAPER_RP_RULE), features="mt+gt", memlen=1, output_scale=0.01,
                    metadata={"source": "Zheng et al. 2022, RP rule"})
    return Rule.load(spec)


def make_optimizer(name: str, args):
    import keras  # noqa: PLC0415

    if name == "adam":
        return keras.optimizers.Adam(1e-3)
    if name == "symbolic":
        from tf_symbolic_l2o.optimizers import SymbolicOptimizer, SymbolicRP  # noqa: PLC0415

        return SymbolicRP() if args.rule == "default" else SymbolicOptimizer(load_rule(args.rule))
    if name == "learned":
        from tf_symbolic_l2o.learned.io import load_l2o  # noqa: PLC0415
        from tf_symbolic_l2o.optimizers import LearnedOptimizer  # noqa: PLC0415

        return LearnedOptimizer(load_l2o(args.l2o))
    raise ValueError(f"unknown optimizer {name!r}; use {', '.join(OPTIMIZERS)}")


def _parse_jit(text: str):
    import keras  # noqa: PLC0415

    if keras.backend.backend() != "tensorflow":  # Keras' own values; no TensorFlow import
        value = {"auto": "auto", "true": True, "false": False}.get(text.strip().lower())
        if value is None:
            raise ValueError(f"--jit-compile takes auto, true or false, got {text!r}")
        return value
    from tf_symbolic_l2o.meta.unroll import parse_jit_compile  # noqa: PLC0415

    return parse_jit_compile(text)


def _versions() -> dict:
    """The Keras backend and the versions that matter for the timings (TensorFlow only when it is the backend)."""
    import keras  # noqa: PLC0415

    out = {"backend": keras.backend.backend(), "keras_version": keras.__version__}
    backend = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}.get(out["backend"])
    if backend:
        out[f"{backend}_version"] = __import__(backend).__version__
    return out


def synthetic_batch(batch_size: int, seed: int):
    import numpy as np  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch_size, 32, 32, 3), dtype=np.float32)
    y = rng.integers(0, 10, size=(batch_size,)).astype(np.int32)
    return x, y


def state_bytes(optimizer) -> tuple[int, int]:
    """``(bytes, count)`` of the optimizer's variables without the ``iterations`` / ``learning_rate`` scalars."""
    import numpy as np  # noqa: PLC0415

    skip = {id(optimizer.iterations)}
    lr = getattr(optimizer, "_learning_rate", None)
    if lr is not None:
        skip.add(id(lr))
    total = count = 0
    for v in optimizer.variables:
        if id(v) in skip:
            continue
        total += int(np.prod(v.shape)) * np.dtype(str(v.dtype)).itemsize
        count += 1
    return total, count


def _compiled(name: str, args, weights=None):
    model = build_model(args.model, args.seed)
    if weights is not None:
        model.set_weights(weights)
    model.compile(optimizer=make_optimizer(name, args), loss="sparse_categorical_crossentropy",
                  jit_compile=_parse_jit(args.jit_compile))
    return model


def _n_params(model) -> int:
    import numpy as np  # noqa: PLC0415

    return int(sum(int(np.prod(v.shape)) for v in model.trainable_variables))


def _phase(name: str, **info) -> None:
    """Progress for the driver (stderr), so a worker killed for memory still tells how far it got."""
    print(PHASE_TAG + json.dumps({"phase": name, "rss_mib": rss_mib(), **info}), file=sys.stderr, flush=True)


def time_train_steps(model, x, y, steps: int) -> tuple[float, list[float], float]:
    """The first ``train_on_batch`` (trace + run) timed alone, then ``steps`` more, each timed:
    ``(first_s, step_seconds, last_loss)``."""
    t0 = time.perf_counter()
    loss = float(model.train_on_batch(x, y))
    first = time.perf_counter() - t0
    _phase("first train step done (trace + run)", first_call_s=first)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        loss = float(model.train_on_batch(x, y))
        times.append(time.perf_counter() - t0)
    return first, times, loss


def worker_memory(args) -> dict:
    """One optimizer alone: peak RSS, optimizer state, first-call and solo step times."""
    import numpy as np  # noqa: PLC0415

    name = args.optimizer_list[0]
    x, y = synthetic_batch(args.batch_size, args.seed)
    model = build_model(args.model, args.seed)
    model.compile(optimizer=make_optimizer(name, args), loss="sparse_categorical_crossentropy",
                  jit_compile=_parse_jit(args.jit_compile))
    baseline = rss_mib()
    params = _n_params(model)
    _phase("model built and compiled", params=params)
    model.optimizer.build(model.trainable_variables)  # what the first train step would do; here to measure it
    sbytes, nvars = state_bytes(model.optimizer)
    _phase("optimizer state allocated", state_bytes=sbytes, state_bytes_per_param=sbytes / params)
    first, times, loss = time_train_steps(model, x, y, args.mem_steps)
    return {
        "optimizer": name, "model": args.model, "params": params, "state_bytes": sbytes, "state_variables": nvars,
        "state_bytes_per_param": sbytes / params, "baseline_rss_mib": baseline, "peak_rss_mib": peak_rss_mib(),
        "first_call_s": first, "solo_median_s": float(np.median(times)) if times else float("nan"),
        "solo_times_s": times, "final_loss": loss, "jit_compile": str(model.jit_compile), **_versions(),
    }


def worker_time(args) -> dict:
    """All optimizers in one process, interleaved timing blocks."""
    import numpy as np  # noqa: PLC0415

    names = args.optimizer_list
    x, y = synthetic_batch(args.batch_size, args.seed)
    w0 = build_model(args.model, args.seed).get_weights()
    models = {n: _compiled(n, args, w0) for n in names}
    first = {}
    for n in names:  # trace / compile + one step
        t0 = time.perf_counter()
        models[n].train_on_batch(x, y)
        first[n] = time.perf_counter() - t0
        print(f"    [{n}] first call {first[n]:.1f} s", file=sys.stderr, flush=True)
    for _ in range(args.warmup):
        for n in names:
            models[n].train_on_batch(x, y)
    blocks = {n: [] for n in names}
    cpu_blocks = {n: [] for n in names}  # process CPU seconds per step: the work done, whatever else runs
    losses = {}
    for r in range(args.repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(args.steps):
                losses[n] = float(models[n].train_on_batch(x, y))
            blocks[n].append((time.perf_counter() - t0) / args.steps)
            cpu_blocks[n].append((time.process_time() - c0) / args.steps)
        print(f"    repeat {r + 1}/{args.repeats}: " + ", ".join(f"{n} {blocks[n][-1]:.3f}" for n in names),
              file=sys.stderr, flush=True)
    out = {}
    for n in names:
        arr = np.asarray(blocks[n])
        q25, med, q75 = (float(v) for v in np.percentile(arr, [25, 50, 75]))
        ratio = (float(np.median(arr / np.asarray(blocks["adam"]))) if "adam" in blocks else float("nan"))
        cpu = np.asarray(cpu_blocks[n])
        cpu_ratio = (float(np.median(cpu / np.asarray(cpu_blocks["adam"]))) if "adam" in blocks else float("nan"))
        sbytes, nvars = state_bytes(models[n].optimizer)
        out[n] = {"median_s": med, "q25_s": q25, "q75_s": q75, "min_s": float(arr.min()), "ratio_vs_adam": ratio,
                  "cpu_s": float(np.median(cpu)), "cpu_ratio_vs_adam": cpu_ratio,
                  "first_call_s": first[n], "block_s": [float(v) for v in arr],
                  "cpu_block_s": [float(v) for v in cpu], "final_loss": losses.get(n),
                  "state_bytes": sbytes, "params": _n_params(models[n]),
                  "jit_compile": str(models[n].jit_compile)}
    return {"timing": out, "peak_rss_mib_all": peak_rss_mib(), **_versions()}


# ---------------------------------------------------------------------------------------------------------------
# driver side (no TensorFlow import)
# ---------------------------------------------------------------------------------------------------------------
def _mem_available_gib() -> float:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("nan")


def _cpu_times() -> list[int] | None:
    """The machine's aggregate CPU jiffies from /proc/stat (user … steal), or None off Linux."""
    try:
        with open("/proc/stat") as f:
            return [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None


def _busy_other_share(before, after, own_cpu_s: float) -> tuple[float, float]:
    """``(steal, others)``: shares of the machine's CPU time taken by the hypervisor (steal) and by processes
    other than the timing worker (busy time minus the worker's own CPU seconds) between two /proc/stat reads."""
    if not before or not after:
        return float("nan"), float("nan")
    d = [b - a for a, b in zip(before, after)]
    total = sum(d)
    if total <= 0:
        return float("nan"), float("nan")
    hz = os.sysconf("SC_CLK_TCK")
    busy = total - d[3] - d[4] - d[7]  # minus idle, iowait, steal
    return d[7] / total, max(0.0, busy - own_cpu_s * hz) / total


def _proc_rss_gib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 0.0


def launch(mode: str, optimizers: list[str], args, timeout: float, cmd: list[str] | None = None) -> dict:
    """Run a worker (``cmd``, default: this script's own) and collect its result; kill it (its own process
    group) above ``args.max_rss_gib`` or after ``timeout`` seconds. The worker runs under ``args.backend`` (Keras
    backend; TensorFlow for the scripts that have no ``--backend``)."""
    backend = getattr(args, "backend", "tensorflow")
    if cmd is None:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", mode, "--optimizers", ",".join(optimizers),
               "--model", args.model, "--batch-size", str(args.batch_size), "--repeats", str(args.repeats),
               "--steps", str(args.steps), "--warmup", str(args.warmup), "--mem-steps", str(args.mem_steps),
               "--rule", args.rule, "--l2o", args.l2o, "--jit-compile", args.jit_compile, "--seed", str(args.seed),
               "--backend", backend]
    env = dict(os.environ)
    env["KERAS_BACKEND"] = backend
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    t0 = time.perf_counter()
    max_seen = 0.0
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, text=True, cwd=str(REPO_ROOT),
                                start_new_session=True)
        reason = None
        while proc.poll() is None:
            time.sleep(0.25)
            rss = _proc_rss_gib(proc.pid)
            max_seen = max(max_seen, rss)
            if rss > args.max_rss_gib:
                reason = f"killed at RSS {rss:.1f} GiB > limit {args.max_rss_gib:.1f} GiB"
            elif time.perf_counter() - t0 > timeout:
                reason = f"killed after {timeout:.0f} s (timeout)"
            if reason:
                os.killpg(proc.pid, signal.SIGKILL)  # the worker's own session, started above
                proc.wait()
                break
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if mode == "time":  # progress lines
        for line in stderr.splitlines():
            if line.startswith("    "):
                print(line)
    lines = [ln for ln in stdout.splitlines() if ln.startswith(RESULT_TAG)]
    if reason or proc.returncode != 0 or not lines:
        tail = "\n".join(ln for ln in stderr.strip().splitlines() if not ln.startswith(PHASE_TAG))
        phases = [json.loads(ln[len(PHASE_TAG):]) for ln in stderr.splitlines() if ln.startswith(PHASE_TAG)]
        return {"error": reason or f"worker exit {proc.returncode}", "detail": "\n".join(tail.splitlines()[-8:]),
                "wall_s": wall, "max_rss_seen_gib": max_seen, "phases": phases}
    result = json.loads(lines[-1][len(RESULT_TAG):])
    result["wall_s"] = wall
    result["max_rss_seen_gib"] = max_seen
    return result


def make_plot(rows: list[dict], title: str, path: Path) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    labels = [r["optimizer"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.0))
    med = [r.get("median_s", float("nan")) for r in rows]
    lo = [max(0.0, r.get("median_s", 0) - r.get("q25_s", 0)) if "median_s" in r else 0 for r in rows]
    hi = [max(0.0, r.get("q75_s", 0) - r.get("median_s", 0)) if "median_s" in r else 0 for r in rows]
    colors = [COLORS[r["optimizer"]] for r in rows]
    ax1.bar(labels, [m if m == m else 0 for m in med], yerr=[lo, hi], capsize=5, color=colors)
    for i, r in enumerate(rows):
        if r.get("median_s") == r.get("median_s") and "median_s" in r:
            ax1.text(i, r["median_s"] + hi[i], f"{r['median_s']:.3f} s\n×{r.get('ratio_vs_adam', float('nan')):.2f}",
                     ha="center", va="bottom", fontsize=8)
        else:
            why = "killed (memory)" if str(r.get("memory_status", "")).startswith("killed") else "not measured"
            ax1.text(i, 0, why, ha="center", va="bottom", fontsize=8)
    ax1.set_ylabel("median s / train step (error bar: IQR)")
    ax1.set_title("step time (interleaved, one process)", fontsize=9)
    ax1.grid(axis="y", alpha=0.3)
    finite_tops = [m + h for m, h in zip(med, hi) if m == m]
    if finite_tops:
        ax1.set_ylim(0, max(finite_tops) * 1.3)
    peaks = [r.get("peak_rss_mib", float("nan")) / 1024 for r in rows]
    ax2.bar(labels, [p if p == p else 0 for p in peaks], color=colors)
    for i, r in enumerate(rows):
        bpp = r.get("state_bytes_per_param")
        if peaks[i] == peaks[i]:
            txt = f"{peaks[i]:.2f} GiB"
        elif str(r.get("memory_status", "")).startswith("killed"):
            txt = f"killed > {r.get('max_rss_seen_gib', float('nan')):.1f} GiB"
        else:
            txt = str(r.get("memory_status", "n/a"))
        if bpp == bpp and bpp is not None:
            txt += f"\nstate {bpp:.0f} B/param"
        ax2.text(i, peaks[i] if peaks[i] == peaks[i] else 0, txt, ha="center", va="bottom", fontsize=8)
    finite = [p for p in peaks if p == p]
    if finite:
        ax2.set_ylim(0, max(finite) * 1.3)
    ax2.set_ylabel("peak RSS of a separate process, GiB")
    ax2.set_title("memory (one process per optimizer)", fontsize=9)
    ax2.grid(axis="y", alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _resolve(path: str) -> str:
    """An absolute path: relative to the current folder if it exists there, else to the repository root."""
    p = Path(path)
    if p.is_absolute() or p.exists():
        return str(p.resolve())
    return str((REPO_ROOT / p).resolve())


def _fmt(v, spec: str) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    return format(v, spec)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", default="tensorflow", choices=["tensorflow", "jax", "torch"],
                   help="Keras backend of the workers")
    p.add_argument("--model", default="resnet50", choices=["resnet50", "resnet20"])
    p.add_argument("--optimizers", default=",".join(OPTIMIZERS), help="comma list of adam, symbolic, learned")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=5, help="timed blocks per optimizer (interleaved)")
    p.add_argument("--steps", type=int, default=3, help="train_on_batch calls per timed block")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps per optimizer after the first call")
    p.add_argument("--mem-steps", type=int, default=2, help="steps after the first call in each memory worker")
    p.add_argument("--rule", default="default",
                   help="the symbolic optimizer's rule: 'default' (SymbolicRP() with its shipped rule), 'paper' (the "
                        "paper's RP rule) or a rule.json")
    p.add_argument("--l2o", default=DEFAULT_L2O, help="saved learned optimizer for LearnedOptimizer")
    p.add_argument("--jit-compile", default="auto", help="model.compile(jit_compile=...): auto, true or false")
    p.add_argument("--max-rss-gib", type=float, default=None,
                   help="kill a worker above this RSS (default: 85%% of MemAvailable at start)")
    p.add_argument("--timeout", type=float, default=900, help="seconds allowed per worker")
    p.add_argument("--no-memory", action="store_true", help="skip the per-optimizer memory workers")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "results"))
    p.add_argument("--replot", action="store_true", help="only redraw <out>/keras_step.png from keras_step.json")
    p.add_argument("--worker", choices=["memory", "time"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.optimizer_list = [o.strip().lower() for o in args.optimizers.split(",") if o.strip()]
    bad = [o for o in args.optimizer_list if o not in OPTIMIZERS]
    if bad or not args.optimizer_list:
        p.error(f"unknown optimizer(s) {bad}; use a comma list of {', '.join(OPTIMIZERS)}")
    if min(args.batch_size, args.repeats, args.steps) < 1 or min(args.warmup, args.mem_steps) < 0:
        p.error("--batch-size, --repeats, --steps must be >= 1 and --warmup, --mem-steps >= 0")
    try:
        _parse_jit(args.jit_compile)
    except KeyError:
        p.error("--jit-compile must be auto, true or false")
    if args.rule not in ("paper", "default"):
        args.rule = _resolve(args.rule)
        if not Path(args.rule).is_file():
            p.error(f"rule file not found: {args.rule}")
    args.l2o = _resolve(args.l2o)
    stem = "keras_step" if args.backend == "tensorflow" else f"keras_step_{args.backend}"
    if "learned" in args.optimizer_list and not (Path(args.l2o) / "l2o.json").is_file() \
            and not (Path(args.l2o) / "l2o" / "l2o.json").is_file():
        p.error(f"no learned optimizer in {args.l2o} (l2o.json missing)")

    if args.worker:
        result = worker_memory(args) if args.worker == "memory" else worker_time(args)
        print(RESULT_TAG + json.dumps(result), flush=True)
        return 0

    out = Path(args.out)
    if args.replot:
        meta = json.loads((out / f"{stem}.json").read_text())
        a = meta["args"]
        make_plot(meta["rows"], f"Keras train step, {a['model']} (32x32x3, 10 classes), batch {a['batch_size']}, "
                                f"{meta['cpu_count']} CPUs", out / f"{stem}.png")
        print(f"wrote {out / f'{stem}.png'}")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    avail = _mem_available_gib()
    if args.max_rss_gib is None:
        args.max_rss_gib = 0.85 * avail if avail == avail else 16.0
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    names = args.optimizer_list
    print(f"keras_step: {args.model}, batch {args.batch_size}, generated data, model.compile(jit_compile="
          f"{args.jit_compile}); optimizers {', '.join(names)}; rule {args.rule}; l2o {args.l2o}")
    print(f"timing: one process, interleaved, {args.warmup} warm-up + {args.repeats} repeats x {args.steps} "
          f"train_on_batch steps per optimizer; memory: one process per optimizer, {1 + args.mem_steps} steps")
    print(f"host: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, MemAvailable {avail:.1f} GiB, worker RSS limit "
          f"{args.max_rss_gib:.1f} GiB", flush=True)

    memory: dict[str, dict] = {}
    if not args.no_memory:
        for n in names:
            print(f"  memory worker: {n} ...", end=" ", flush=True)
            r = launch("memory", [n], args, args.timeout)
            memory[n] = r
            if "error" in r:
                print(f"FAILED ({r['error']}; max RSS seen {r['max_rss_seen_gib']:.1f} GiB, {r['wall_s']:.0f} s)")
                for ph in r.get("phases", []):
                    extra = {k: v for k, v in ph.items() if k not in ("phase", "rss_mib")}
                    print(f"      reached: {ph['phase']} (RSS {ph['rss_mib']:.0f} MiB) {extra if extra else ''}")
                if r.get("detail") and not r["error"].startswith("killed"):
                    print("      " + r["detail"].replace("\n", "\n      "))
            else:
                print(f"peak RSS {r['peak_rss_mib']:.0f} MiB, state {r['state_bytes_per_param']:.1f} B/param, "
                      f"first call {r['first_call_s']:.1f} s, solo {r['solo_median_s']:.3f} s/step, "
                      f"worker {r['wall_s']:.0f} s", flush=True)

    timed = [n for n in names if "error" not in memory.get(n, {})]
    timing: dict = {}
    errors = []
    if timed:
        print(f"  timing worker: {', '.join(timed)} (interleaved) ...", flush=True)
        cpu_before, own_before = _cpu_times(), os.times()
        t = launch("time", timed, args, args.timeout)
        if "error" in t and "learned" in timed and len(timed) > 1:
            errors.append(f"timing worker with {', '.join(timed)}: {t['error']}; retried without learned")
            timed = [n for n in timed if n != "learned"]
            print(f"  FAILED ({t['error']}); retrying with {', '.join(timed)} ...", flush=True)
            t = launch("time", timed, args, args.timeout)
        if "error" in t:
            errors.append(f"timing worker: {t['error']}\n{t.get('detail', '')}")
        else:
            timing = t
            own = os.times()
            worker_cpu = (own.children_user - own_before.children_user) + (own.children_system
                                                                            - own_before.children_system)
            timing["steal_share"], timing["other_share"] = _busy_other_share(cpu_before, _cpu_times(), worker_cpu)

    rows = []
    for n in names:
        m, tm = memory.get(n, {}), timing.get("timing", {}).get(n, {})
        reached = {k: v for ph in m.get("phases", []) for k, v in ph.items()}  # what a killed worker got to
        params = tm.get("params", m.get("params", reached.get("params")))
        sbytes = m.get("state_bytes", tm.get("state_bytes", reached.get("state_bytes")))
        label = LABELS[n] if n != "symbolic" or args.rule == "default" else f"SymbolicOptimizer({args.rule} rule)"
        row = {"model": args.model, "optimizer": n, "label": label, "batch_size": args.batch_size,
               "params": params, "state_bytes": sbytes,
               "state_bytes_per_param": (sbytes / params) if sbytes is not None and params else float("nan"),
               "state_mib": sbytes / 2**20 if sbytes is not None else float("nan")}
        for k in ("median_s", "q25_s", "q75_s", "min_s", "ratio_vs_adam", "cpu_s", "cpu_ratio_vs_adam",
                  "first_call_s", "final_loss",
                  "jit_compile"):
            if k in tm:
                row[k] = tm[k]
        row["timing_status"] = "ok" if tm else ("not timed" if n not in timed else "failed")
        if m:
            row["memory_status"] = "ok" if "error" not in m else m["error"]
            if "error" in m and m.get("phases"):
                last = m["phases"][-1]
                row["memory_status"] += f" after '{last['phase']}' (RSS then {last['rss_mib'] / 1024:.1f} GiB)"
            row["peak_rss_mib"] = m.get("peak_rss_mib", float("nan"))
            row["baseline_rss_mib"] = m.get("baseline_rss_mib", float("nan"))
            row["max_rss_seen_gib"] = m.get("max_rss_seen_gib")
            row["solo_median_s"] = m.get("solo_median_s", float("nan"))
            row["mem_first_call_s"] = m.get("first_call_s", float("nan"))
        else:
            row["memory_status"] = "skipped"
        row["repeats"], row["steps"], row["warmup"] = args.repeats, args.steps, args.warmup
        rows.append(row)
        if "error" in m:
            errors.insert(0, f"{n} (memory worker, so not timed either): {row['memory_status']}; state would be "
                             f"{_fmt(row['state_bytes_per_param'], '.0f')} B/param = "
                             f"{_fmt(row['state_mib'] / 1024, '.2f')} GiB")

    import csv  # noqa: PLC0415

    cols = ["model", "optimizer", "label", "batch_size", "params", "state_bytes", "state_bytes_per_param",
            "state_mib", "median_s", "q25_s", "q75_s", "min_s", "ratio_vs_adam", "cpu_s", "cpu_ratio_vs_adam",
            "first_call_s", "solo_median_s",
            "peak_rss_mib", "baseline_rss_mib", "max_rss_seen_gib", "timing_status", "memory_status", "final_loss",
            "jit_compile", "repeats", "steps", "warmup"]
    with open(out / f"{stem}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in cols})
    title = (f"Keras train step, {args.model} (32x32x3, 10 classes), batch {args.batch_size}, "
             f"{os.cpu_count()} CPUs")
    make_plot(rows, title, out / f"{stem}.png")
    meta = {"args": {k: v for k, v in vars(args).items() if k not in ("worker",)}, "loadavg_at_start": list(load),
            "mem_available_gib_at_start": avail, "cpu_count": os.cpu_count(), "python": sys.version.split()[0],
            "rows": rows, "memory_workers": memory, "timing_worker": timing, "errors": errors}
    (out / f"{stem}.json").write_text(json.dumps(meta, indent=1, default=str))

    header = ["optimizer", "params", "state B/param", "state MiB", "first call s", "median s/step", "IQR s",
              "x Adam", "CPU s/step", "CPU x Adam", "peak RSS MiB", "status"]
    table = []
    for r in rows:
        iqr = r["q75_s"] - r["q25_s"] if "q75_s" in r else None
        if r["memory_status"] in ("ok", "skipped"):
            status = r["timing_status"]
        elif r["memory_status"].startswith("killed at RSS"):
            status = f"killed: RSS > {args.max_rss_gib:.1f} GiB (see note)"
        else:
            status = "memory worker failed (see note)"
        table.append([r["label"], _fmt(r["params"], ","), _fmt(r["state_bytes_per_param"], ".1f"),
                      _fmt(r["state_mib"], ".1f"), _fmt(r.get("first_call_s"), ".1f"), _fmt(r.get("median_s"), ".4f"),
                      _fmt(iqr, ".4f"), _fmt(r.get("ratio_vs_adam"), ".2f"), _fmt(r.get("cpu_s"), ".4f"),
                      _fmt(r.get("cpu_ratio_vs_adam"), ".2f"), _fmt(r.get("peak_rss_mib"), ".0f"),
                      status])
    widths = [max(len(h), *(len(t[i]) for t in table)) for i, h in enumerate(header)]
    print()
    print("  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(header, widths))))
    for t in table:
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(t, widths))))
    print("\nmedian s/step over the repeats (each = mean of a block of steps); x Adam = median of per-repeat ratios "
          "(same repeat, interleaved); CPU = process CPU time per step (both cores; unlike the wall time it "
          "does not grow when other processes take the cores) and its median per-repeat ratio; peak RSS = "
          "ru_maxrss of a separate process per optimizer (model + data + TF runtime included).")
    if timing:
        print(f"while timing: {_fmt(100 * timing.get('steal_share', float('nan')), '.1f')} % of the machine's CPU "
              f"time stolen by the hypervisor, {_fmt(100 * timing.get('other_share', float('nan')), '.1f')} % used "
              f"by other processes (ratios are comparable between runs only when both are near 0)")
        print(f"model.jit_compile resolved to: "
              f"{ {n: v.get('jit_compile') for n, v in timing['timing'].items()} }")
    for e in errors:
        print(f"[note] {e}")
    print(f"\nwrote {out / f'{stem}.csv'}, {out / f'{stem}.png'}, {out / f'{stem}.json'}")
    print(f"benchmark wall time: {time.perf_counter() - start:.1f} s")
    return 1 if errors and not timing else 0


if __name__ == "__main__":
    sys.exit(main())
