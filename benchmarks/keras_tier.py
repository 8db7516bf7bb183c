"""The Keras tier: ordinary Keras models trained with ``model.fit`` — ``SymbolicRP()`` at its defaults against
``Adam()`` at its defaults and LR-tuned Adam, and ``SymbolicRP`` LR-tuned the same way (see
:mod:`tf_symbolic_l2o.benchmark.keras_tier` for the models, the data and the protocol).

    python benchmarks/keras_tier.py [--models convnet,embedding,lstm,bn_resnet,regression_mlp,resnet50] \
        [--seeds 0,1,2] [--epochs N] [--out benchmarks/results/keras_tier]

    python benchmarks/keras_tier.py --models regression_mlp --seeds 0 --epochs 2   # smoke run
    python benchmarks/keras_tier.py --models resnet50 --reuse-adam benchmarks/results/keras_tier_resnet50/runs.csv
        # only the SymbolicRP rows run; the Adam rows come from the earlier run (same seeds, data and epochs)

Outputs in ``--out``: ``runs.csv`` (one row per model, optimizer and seed), ``summary.csv`` (mean ± std over seeds
and the verdicts), ``results.md`` (the table) and ``keras_tier.png`` (each optimizer's final training loss ÷
``Adam()``'s, per model).
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))


def parse_args(argv=None):
    from tf_symbolic_l2o.benchmark.keras_tier import MODELS

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(MODELS), help=f"comma list of {', '.join(MODELS)}")
    p.add_argument("--seeds", default="0,1,2", help="final seeds (the tuning seed is 1000)")
    p.add_argument("--epochs", type=int, default=None, help="epochs of every run (default: each model's own)")
    p.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "results" / "keras_tier"))
    p.add_argument("--reuse-adam", default=None, metavar="RUNS_CSV",
                   help="a previous runs.csv (same seeds and epochs): its Adam() and LR-tuned Adam rows are reused "
                        "for the models it covers, and only the SymbolicRP rows run there")
    args = p.parse_args(argv)
    if args.reuse_adam is not None:
        args.reuse_adam = _read_runs(p, args.reuse_adam)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in args.models if m not in MODELS]
    if unknown or not args.models:
        p.error(f"unknown model(s) {unknown}; use {', '.join(MODELS)}")
    try:
        args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        p.error(f"--seeds takes comma-separated integers, got {args.seeds!r}")
    if not args.seeds or any(s < 0 or s == 1000 for s in args.seeds):
        p.error("--seeds must be non-negative integers other than the tuning seed 1000")
    if args.epochs is not None and args.epochs < 1:
        p.error(f"--epochs must be a positive integer, got {args.epochs}")
    return args


def _read_runs(p, path: str):
    """The ``runs.csv`` given to ``--reuse-adam``, or a one-line argparse error (exit 2) if it is not one."""
    import pandas as pd

    if not Path(path).is_file():
        p.error(f"--reuse-adam: no such file {path}")
    try:
        runs = pd.read_csv(path)
    except (ValueError, UnicodeDecodeError) as e:
        p.error(f"--reuse-adam: {path} is not a CSV file ({str(e).splitlines()[0]})")
    missing = {"model", "optimizer", "learning_rate", "seed"} - set(runs.columns)
    if missing:
        p.error(f"--reuse-adam: {path} is not a keras_tier runs.csv (no column {', '.join(sorted(missing))})")
    return runs


def _plot(summary, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tf_symbolic_l2o.benchmark.keras_tier import OPTIMIZERS
    from tf_symbolic_l2o.io import atomic_write_bytes

    models = list(dict.fromkeys(summary["model"]))
    fig, ax = plt.subplots(figsize=(1.6 * len(models) + 3.5, 3.6))
    width = 0.8 / len(OPTIMIZERS)
    for i, opt in enumerate(OPTIMIZERS):
        ratios = []
        for m in models:
            rows = summary[summary["model"] == m].set_index("optimizer")
            ratios.append(rows.loc[opt, "train_loss_mean"] / rows.loc["Adam()", "train_loss_mean"])
        ax.bar([k + (i - (len(OPTIMIZERS) - 1) / 2) * width for k in range(len(models))], ratios, width, label=opt)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xticks(range(len(models)), models)
    ax.set_ylabel("final train loss ÷ Adam()'s")
    ax.set_yscale("log")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import pandas as pd

    from tf_symbolic_l2o.benchmark.keras_tier import MODELS, markdown, run_model, summarize
    from tf_symbolic_l2o.io import atomic_write_text

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    frames = []
    for name in args.models:
        runs, _ = run_model(MODELS[name], args.seeds, epochs=args.epochs, log=lambda msg: print(msg, flush=True),
                            reuse=args.reuse_adam)
        frames.append(runs)
        atomic_write_text(out / "runs.csv", pd.concat(frames).to_csv(index=False))  # partial results survive
    runs = pd.concat(frames, ignore_index=True)
    summary = summarize(runs)
    table = markdown(summary)
    atomic_write_text(out / "summary.csv", summary.to_csv(index=False))
    atomic_write_text(out / "results.md", table + "\n")
    _plot(summary, out / "keras_tier.png")
    print(table)
    print(f"wrote {out}/runs.csv, summary.csv, results.md, keras_tier.png; wall time {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
