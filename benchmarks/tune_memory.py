"""Peak memory of meta-tuning a symbolic rule vs meta-training an LSTM optimizer vs plain training, on ResNets.

For each model (the functional CIFAR ResNets of :mod:`tf_symbolic_l2o.tasks.resnet`, or ``resnet50``:
``keras.applications.ResNet50`` as a :class:`~tf_symbolic_l2o.tasks.keras_task.KerasModelTask`, all on the offline
MNIST subset at 32×32×3) and each job, ONE worker process (``ru_maxrss`` is process-wide and never goes down) runs
``--windows`` truncated windows of ``--unroll`` steps at batch ``--batch-size``:

* ``fit``    — plain Keras training of the same model: ``model.compile(optimizer=Adam)`` and ``train_on_batch``
  (Keras models only), the reference the issue's "≤ 2× plain Keras training" is measured against;
* ``train``  — plain training of the optimizee with Adam (the same compiled rollout, no meta-gradient): the floor;
* ``tune``   — meta-tuning each rule of ``--rules`` (:class:`~tf_symbolic_l2o.tune.TunableRule`) with the
  paper's first-order meta-gradients, which a rule computes in forward mode (no tape: ∂θ/∂constants is carried,
  n × P floats for P constants);
* ``tune2``  — the same with second-order meta-gradients (``tfl2o tune``'s default: the tape also holds the
  optimizee's forward and backward passes);
* ``lstm``   — meta-training the RNNprop LSTM optimizer (``rp``) by the same unrolls.

The parent watches each worker's RSS and kills it above ``--max-rss-gib`` (reported as "over budget", not a number),
so the LSTM job on a large model cannot take the machine down. Reported: RSS after building the task (model + data
+ TF runtime), peak RSS, peak − base, and per-step time of the last window.

    python benchmarks/tune_memory.py [--models resnet20,resnet18] [--jobs train,tune,lstm] [--unroll 20] \
        [--windows 2] [--batch-size 64] [--rules symbolic_rp] [--max-rss-gib 8] [--out benchmarks/results]
    python benchmarks/tune_memory.py --models resnet50 --jobs fit,train,tune --rules psi,symbolic_rp_small \
        --unroll 5 --batch-size 8 --out benchmarks/results/tune_memory_resnet50

(``--jobs tune2 --out DIR`` runs one job alone; the CSV of a partial run holds only its rows.)

Outputs: the table on stdout, ``<out>/tune_memory.csv``, ``<out>/tune_memory.png`` and ``<out>/tune_memory.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _memory import peak_rss_mib, rss_mib  # noqa: E402
from keras_step import RESULT_TAG, launch  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
MODELS = {"resnet20": {"name": "resnet", "depth": 20}, "resnet18": {"name": "resnet", "depth": 18},
          "cnn": {"name": "cnn"}, "resnet50": {"name": "keras", "model": "resnet50"}}
JOBS = ("fit", "train", "tune", "tune2", "lstm")
LABELS = {"fit": "plain Keras training (Adam)", "train": "train optimizee (Adam)",
          "tune": "meta-tune rule, first-order",
          "tune2": "meta-tune rule, second-order", "lstm": "meta-train LSTM (RP), first-order"}


def worker(args) -> None:
    import keras  # noqa: PLC0415
    import tensorflow as tf  # noqa: PLC0415

    from tf_symbolic_l2o.baselines import Baseline  # noqa: PLC0415
    from tf_symbolic_l2o.learned.registry import make_l2o  # noqa: PLC0415
    from tf_symbolic_l2o.meta.unroll import Unroller, make_rollout  # noqa: PLC0415
    from tf_symbolic_l2o.seeds import step_seed  # noqa: PLC0415
    from tf_symbolic_l2o.tasks.registry import make_task  # noqa: PLC0415
    from tf_symbolic_l2o.tune import TunableRule, resolve_rule  # noqa: PLC0415

    spec = {**MODELS[args.model], "dataset": "mnist_subset_32", "batch_size": args.batch_size}
    if args.job == "fit":
        _fit_worker(args, spec)
        return
    task = make_task(spec, "meta_train")
    n = task.num_params
    theta = task.flatten(task.init_params(step_seed(0, 1)))
    scale = None  # no random scaling
    base = rss_mib()
    times = []
    if args.job == "train":
        opt = Baseline("adam", 1e-3)
        rollout = make_rollout(task, opt)
        state = opt.init_state(n)
        for w in range(args.windows):
            t0 = time.perf_counter()
            theta, state, _ = rollout(theta, state, step_seed(0, 2), scale, tf.constant(w * args.unroll),
                                      tf.constant(args.unroll + 1))
            float(theta[0])
            times.append((time.perf_counter() - t0) / (args.unroll + 1))
        opt_params = 0
    else:
        rule = args.job.startswith("tune")
        l2o = TunableRule(resolve_rule(args.rule)) if rule else make_l2o("rp")
        meta = keras.optimizers.Adam(0.003 if rule else 1e-3)
        meta.build(l2o.trainable_variables)
        unroller = Unroller(task, l2o, meta, args.unroll, jit_compile=False, clip_norm=1.0,
                            second_order=args.job == "tune2")
        state = l2o.init_state(n)
        for w in range(args.windows):
            t0 = time.perf_counter()
            _, _, _, theta, state = unroller.train_window(theta, state, tf.constant(w * args.unroll), step_seed(0, 2),
                                                          scale)
            float(theta[0])
            times.append((time.perf_counter() - t0) / (args.unroll + 1))
        opt_params = int(sum(int(tf.size(v)) for v in l2o.trainable_variables))
    print(RESULT_TAG + json.dumps({"params": n, "optimizer_params": opt_params, "base_rss_mib": base,
                                   "peak_rss_mib": peak_rss_mib(), "s_per_step": times[-1]}), flush=True)


def _fit_worker(args, spec) -> None:
    """Plain Keras training of a Keras model: ``compile(Adam)`` + ``train_on_batch`` on the task's minibatches."""
    import keras  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415

    from tf_symbolic_l2o.tasks.registry import make_task  # noqa: PLC0415

    if spec["name"] != "keras":
        raise SystemExit(f"job 'fit' needs a Keras model (resnet50), not {args.model}")
    task = make_task(spec, "meta_train")
    model = task.model
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=task.loss_fn)
    rng = np.random.default_rng(0)
    x, y = task.dataset.split(task.split)
    base = rss_mib()
    times = []
    for _ in range(args.windows):
        t0 = time.perf_counter()
        for _ in range(args.unroll + 1):
            idx = rng.integers(0, len(x), args.batch_size)
            model.train_on_batch(x[idx], y[idx])
        times.append((time.perf_counter() - t0) / (args.unroll + 1))
    print(RESULT_TAG + json.dumps({"params": task.num_params, "optimizer_params": 0, "base_rss_mib": base,
                                   "peak_rss_mib": peak_rss_mib(), "s_per_step": times[-1]}), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="resnet20,resnet18", help=f"comma list of {', '.join(MODELS)}")
    p.add_argument("--jobs", default=",".join(JOBS), help="comma list of train, tune, tune2, lstm")
    p.add_argument("--unroll", type=int, default=20)
    p.add_argument("--windows", type=int, default=2, help="windows per worker (the first one traces)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--rules", default="symbolic_rp", help="comma list of rules the tune jobs tune (shipped names, "
                   "psi[:FEATURES[:LAGS]] or rule.json paths)")
    p.add_argument("--max-rss-gib", type=float, default=8.0, help="kill a worker above this RSS")
    p.add_argument("--timeout", type=float, default=1200, help="seconds allowed per worker")
    p.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "results"))
    p.add_argument("--worker", choices=JOBS, help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--rule", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        args.job = args.worker
        worker(args)
        return
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    jobs = [j.strip() for j in args.jobs.split(",") if j.strip()]
    bad = [m for m in models if m not in MODELS] + [j for j in jobs if j not in JOBS]
    if bad:
        p.error(f"unknown model/job {bad}; models: {', '.join(MODELS)}; jobs: {', '.join(JOBS)}")
    print(f"tune_memory: models {', '.join(models)}; jobs {', '.join(jobs)}; unroll {args.unroll}, "
          f"{args.windows} windows, batch {args.batch_size}, worker RSS limit {args.max_rss_gib} GiB; "
          f"host {platform.machine()}, {os.cpu_count()} CPUs")
    t_start = time.perf_counter()
    rules = [r.strip() for r in args.rules.split(",") if r.strip()]
    rows = []
    for model in models:
        for job, rule in [(j, r) for j in jobs for r in (rules if j.startswith("tune") else [""])]:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", job, "--model", model, "--rule",
                   rule or "-", "--unroll", str(args.unroll), "--windows", str(args.windows), "--batch-size",
                   str(args.batch_size)]
            r = launch("memory", [], args, args.timeout, cmd=cmd)
            row = {"model": model, "job": job, "rule": rule, "label": LABELS[job] + (f" ({rule})" if rule else ""),
                   "unroll": args.unroll, "batch_size": args.batch_size, "status": "ok"}
            if "error" in r:
                row.update(status=r["error"], peak_rss_mib=float("nan"), max_rss_seen_gib=r["max_rss_seen_gib"])
                print(f"  {model:9s} {job:6s} {rule:18s} {r['error']}")
            else:
                row.update({k: r[k] for k in ("params", "optimizer_params", "base_rss_mib", "peak_rss_mib",
                                              "s_per_step")})
                row["extra_mib"] = r["peak_rss_mib"] - r["base_rss_mib"]
                print(f"  {model:9s} {job:6s} {rule:18s} peak {r['peak_rss_mib'] / 1024:.2f} GiB  "
                      f"({r['wall_s']:.0f} s)")
            rows.append(row)
    import pandas as pd  # noqa: PLC0415

    df = pd.DataFrame(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "tune_memory.csv", index=False)
    (out / "tune_memory.json").write_text(json.dumps({"args": {k: v for k, v in vars(args).items()
                                                                if k not in ("worker", "model", "job")},
                                                       "rows": rows, "host": platform.platform(),
                                                       "cpus": os.cpu_count()}, indent=2, default=str))
    _plot(df, out / "tune_memory.png", args)
    print()
    show = df.copy()
    show["peak GiB"] = [f"{v / 1024:.2f}" if v == v else f"> {args.max_rss_gib:g} (killed)"
                        for v in show["peak_rss_mib"]]
    cols = ["model", "label", "params", "peak GiB"] + [c for c in ("extra_mib", "s_per_step") if c in show]
    print(show[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    for model in models:
        sub = df[df["model"] == model]
        ref = "fit" if "fit" in set(sub["job"]) else "train"
        floor = sub[sub["job"] == ref].iloc[0] if ref in set(sub["job"]) else None
        for _, row in sub[sub["job"].isin(["tune", "tune2"])].iterrows():
            if floor is not None and floor["peak_rss_mib"] == floor["peak_rss_mib"] and \
                    row["peak_rss_mib"] == row["peak_rss_mib"]:
                memory, time_ = row["peak_rss_mib"] / floor["peak_rss_mib"], row["s_per_step"] / floor["s_per_step"]
                print(f"{model}: {row['label']} / {LABELS[ref]}: peak RSS {memory:.2f}×, s per step {time_:.2f}×")
    print(f"wrote {out / 'tune_memory.csv'}, {out / 'tune_memory.png'}, {out / 'tune_memory.json'}; "
          f"wall time {time.perf_counter() - t_start:.0f} s")


def _plot(df, path: Path, args) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    models = list(dict.fromkeys(df["model"]))
    jobs = list(dict.fromkeys(df["label"]))
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / max(1, len(jobs))
    for j, job in enumerate(jobs):
        for m, model in enumerate(models):
            row = df[(df["model"] == model) & (df["label"] == job)].iloc[0]
            killed = row["peak_rss_mib"] != row["peak_rss_mib"]
            height = args.max_rss_gib if killed else row["peak_rss_mib"] / 1024
            ax.bar(m + j * width, height, width, color=f"C{j}", hatch="//" if killed else None,
                   label=job if m == 0 else None)
            if killed:
                ax.text(m + j * width, height, "killed", ha="center", va="bottom", fontsize=8)
    ax.axhline(args.max_rss_gib, color="gray", ls="--", lw=1)
    ax.set_xticks([m + width * (len(jobs) - 1) / 2 for m in range(len(models))], models)
    ax.set_ylabel("peak RSS, GiB")
    ax.set_title(f"peak memory, unroll {args.unroll}, batch {args.batch_size}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
