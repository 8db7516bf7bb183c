"""Training ResNet-50 with a symbolic rule vs LR-tuned Adam and LR-tuned SGD+momentum+cosine, same epoch budget.

Model: ``keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3), classes=10)`` (23.6 M parameters;
``--model resnet20`` for the 0.27 M-parameter CIFAR ResNet-20, quick runs). Data: the offline MNIST subset padded
to 32×32×3 (``mnist_subset_32``: 3,600 training, 400 validation, 1,000 test images), or ``--dataset cifar10
--data-dir DIR`` from a prepared TFDS directory (never downloaded; fails at once with the command to prepare it).
Everything goes through :mod:`tf_symbolic_l2o.image_data` and :mod:`tf_symbolic_l2o.keras_training`:

* **symbolic** — ``SymbolicOptimizer(--rule)``, by default ``SymbolicRP``'s shipped rule, at ``--symbolic-lr``
  (the multiplier on the rule's step; 1.0 = the rule as distilled, untuned);
* **adam** — Adam, learning rate tuned on ``--lr-grid``;
* **sgd_cosine** — SGD, momentum 0.9, cosine decay to 0 over the run, peak learning rate tuned on ``--lr-grid``;
* **symbolic_cosine** / **adam_cosine** — the same as symbolic / adam with their learning rate (the rule's
  multiplier, untuned; Adam's peak, tuned) decayed to 0 over the run by the same cosine (not in the default list).

Tuning: one ``--tune-epochs`` run per grid value (seed ``--tune-seed``), scored by the final validation loss on the
held-out validation part of the training split; the test split is never used to choose. Then every optimizer
trains ``--epochs`` epochs for each of ``--seeds`` (same initial weights and batch order per seed for all
optimizers) and is evaluated on the validation and test parts after every epoch.

    python benchmarks/resnet50_train.py [--model resnet50|resnet20] [--epochs 10] [--seeds 0,1,2] \
        [--batch-size 64] [--rule saved_models/symbolic_rp/rule.json] [--symbolic-lr 1.0] \
        [--lr-grid 1e-4,1e-3,1e-2,1e-1] [--tune-epochs 2] [--dataset mnist_subset_32] [--data-dir DIR] \
        [--train-limit N] [--strategy default|mirrored|multiworker|auto] [--cpu-replicas N] [--out benchmarks/results]

    python benchmarks/resnet50_train.py --model resnet20 --epochs 1 --seeds 0 --lr-grid 1e-3,1e-2   # smoke run

Several GPUs: ``--strategy mirrored``. Several hosts: run the same command on each with its own ``TF_CONFIG`` and
``--strategy multiworker`` (see :mod:`tf_symbolic_l2o.distribute`); only the chief prints the table and writes
the results. ``--batch-size`` is the global batch.

Outputs: the table on stdout (test accuracy mean ± std over seeds, final train loss, training seconds per run),
``<out>/<model>_train.csv`` (one row per optimizer, seed and epoch: train/val/test loss and accuracy, seconds),
``<out>/<model>_train.png`` (train loss and test accuracy against epoch) and ``<out>/<model>_train.json`` (the
summary, the tuning tables, the arguments and the environment). With the default model the files are
``resnet50_train.{csv,png,json}``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

OPTIMIZERS = ("symbolic", "adam", "sgd_cosine", "symbolic_cosine", "adam_cosine")
DEFAULT_OPTIMIZERS = ("symbolic", "adam", "sgd_cosine")
LABELS = {"symbolic": "symbolic rule", "adam": "Adam (LR tuned)", "sgd_cosine": "SGD+momentum 0.9+cosine (LR tuned)",
          "symbolic_cosine": "symbolic rule+cosine", "adam_cosine": "Adam+cosine (LR tuned)"}
DEFAULT_GRID = "1e-4,1e-3,1e-2,1e-1"


def _numbers(text: str, option: str, kind=float) -> list:
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SystemExit(f"error: {option} takes comma-separated {'integers' if kind is int else 'numbers'}, "
                         f"got {text!r}") from None
    if not values:
        raise SystemExit(f"error: {option} needs at least one value")
    return values


def _resolve(path: str) -> str:
    """An absolute path: relative to the current folder if it exists there, else to the repository root."""
    p = Path(path)
    if p.is_absolute() or p.exists():
        return str(p.resolve())
    return str((REPO_ROOT / p).resolve())


def _fmt(mean: float, std: float, spec: str, scale: float = 1.0) -> str:
    if mean != mean:
        return "-"
    text = format(mean * scale, spec)
    return text + (f" ± {format(std * scale, spec)}" if std == std else "")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="resnet50", choices=["resnet50", "resnet20", "cnn"])
    p.add_argument("--dataset", default="mnist_subset_32",
                   help="mnist_subset_32 (offline), synthetic_cifar (offline) or a prepared TFDS cifar10")
    p.add_argument("--data-dir", default=None, help="TFDS data directory (for --dataset cifar10)")
    p.add_argument("--epochs", type=int, default=10, help="epochs per training run (all optimizers)")
    p.add_argument("--seeds", default="0,1,2", help="comma list of seeds (initial weights and batch order)")
    p.add_argument("--batch-size", type=int, default=64, help="global batch size")
    p.add_argument("--optimizers", default=",".join(DEFAULT_OPTIMIZERS),
                   help=f"comma list of {', '.join(OPTIMIZERS)}")
    p.add_argument("--rule", default=None, help="rule.json for the symbolic optimizer (default: SymbolicRP's rule)")
    p.add_argument("--symbolic-lr", type=float, default=1.0, help="multiplier on the rule's step (1.0 = as distilled)")
    p.add_argument("--lr-grid", default=DEFAULT_GRID, help="learning rates tried for the tuned optimizers (adam, sgd_cosine, adam_cosine)")
    p.add_argument("--tune-epochs", type=int, default=2, help="epochs of each tuning run")
    p.add_argument("--tune-seed", type=int, default=0)
    p.add_argument("--val-fraction", type=float, default=0.1, help="part of the training split held out for tuning")
    p.add_argument("--train-limit", type=int, default=None, help="use only this many training images (quick runs)")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the train/test split and the data order")
    p.add_argument("--strategy", default="default", choices=["default", "mirrored", "multiworker", "auto"])
    p.add_argument("--cpu-replicas", type=int, default=None,
                   help="split the CPU into this many logical devices first (for --strategy mirrored without GPUs)")
    p.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "results"))
    p.add_argument("--quiet", action="store_true", help="no per-epoch progress lines")
    args = p.parse_args(argv)
    args.seed_list = _numbers(args.seeds, "--seeds", int)
    args.grid = _numbers(args.lr_grid, "--lr-grid")
    args.optimizer_list = [o.strip().lower() for o in args.optimizers.split(",") if o.strip()]
    bad = [o for o in args.optimizer_list if o not in OPTIMIZERS]
    if bad or not args.optimizer_list:
        p.error(f"unknown optimizer(s) {bad}; use a comma list of {', '.join(OPTIMIZERS)}")
    if min(args.epochs, args.batch_size, args.tune_epochs) < 1:
        p.error("--epochs, --batch-size and --tune-epochs must be >= 1")
    if min(args.seed_list) < 0 or args.tune_seed < 0 or args.data_seed < 0:
        p.error("seeds must be non-negative")
    if min(args.grid) <= 0 or args.symbolic_lr <= 0:
        p.error("learning rates must be positive")
    if args.cpu_replicas is not None and args.cpu_replicas < 1:
        p.error("--cpu-replicas must be >= 1")
    if args.rule is not None:
        args.rule = _resolve(args.rule)
        if not Path(args.rule).is_file():
            p.error(f"rule file not found: {args.rule}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    start = time.perf_counter()
    # The strategy first: MultiWorkerMirroredStrategy (and split_cpu) must come before any other TensorFlow op.
    from tf_symbolic_l2o import distribute  # noqa: PLC0415

    try:
        if args.cpu_replicas is not None:
            distribute.split_cpu(args.cpu_replicas)
        strategy = distribute.make_strategy(args.strategy)
    except (ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    import numpy as np  # noqa: PLC0415
    import pandas as pd  # noqa: PLC0415
    import tensorflow as tf  # noqa: PLC0415

    from tf_symbolic_l2o import keras_training  # noqa: PLC0415
    from tf_symbolic_l2o.data import DatasetUnavailableError  # noqa: PLC0415
    from tf_symbolic_l2o.image_data import image_data  # noqa: PLC0415

    chief = distribute.is_chief(strategy)
    say = print if chief else (lambda *a, **k: None)
    log = None if args.quiet or not chief else (lambda m: print("    " + m, flush=True))
    try:
        data = image_data(args.dataset, args.data_dir, seed=args.data_seed, val_fraction=args.val_fraction,
                          train_limit=args.train_limit)
    except (ValueError, DatasetUnavailableError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    replicas = strategy.num_replicas_in_sync
    if args.batch_size % replicas:
        print(f"error: --batch-size {args.batch_size} is not a multiple of the {replicas} replicas", file=sys.stderr)
        return 2
    specs = {"symbolic": f"symbolic:{args.rule}" if args.rule else "symbolic_rp", "adam": "adam",
             "sgd_cosine": "sgd_cosine"}
    specs.update(symbolic_cosine=specs["symbolic"] + "+cosine", adam_cosine="adam+cosine")
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    say(f"resnet50_train: {args.model} on {data!r}")
    say(f"strategy {type(strategy).__name__} ({replicas} replica(s)), global batch {args.batch_size}, "
        f"{args.epochs} epoch(s) x seeds {args.seed_list}; LR grid {args.grid} ({args.tune_epochs} epoch(s) each, "
        f"seed {args.tune_seed}, scored on validation loss); symbolic = {specs['symbolic']} at lr {args.symbolic_lr}")
    say(f"host: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; TensorFlow {tf.__version__}", flush=True)

    tuning, lrs = {}, {}
    for name in args.optimizer_list:
        if name.startswith("symbolic"):
            lrs[name] = args.symbolic_lr
            continue
        say(f"  tuning {name} on {args.grid} ...", flush=True)
        try:
            table, best = keras_training.tune_lr(args.model, specs[name], args.grid, epochs=args.tune_epochs,
                                                 batch_size=args.batch_size, seed=args.tune_seed,
                                                 strategy=strategy, data=data, log=log)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        tuning[name], lrs[name] = table, best
        say(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        say(f"  -> {name}: lr {best:g}", flush=True)

    curves, finals = [], []
    for seed in args.seed_list:
        for name in args.optimizer_list:
            say(f"  training {name} (lr {lrs[name]:g}), seed {seed} ...", flush=True)
            result = keras_training.train(args.model, specs[name], lrs[name], args.epochs, args.batch_size, seed,
                                          strategy, data, keep_model=False, log=log)
            curves.append(result.history.assign(optimizer=name, seed=seed, learning_rate=lrs[name],
                                                model=args.model))
            finals.append({**result.final(), "optimizer": name})
    curves = pd.concat(curves, ignore_index=True)
    first = ["model", "optimizer", "seed", "learning_rate"]
    curves = curves[first + [c for c in curves.columns if c not in first]]
    summary = keras_training.summarize(curves)

    header = ["optimizer", "lr", "test accuracy %", "final train loss", "val accuracy %", "s / run"]
    rows = [[LABELS[r.optimizer], f"{r.learning_rate:g}", _fmt(r.test_accuracy_mean, r.test_accuracy_std, ".2f", 100),
             _fmt(r.train_loss_mean, r.train_loss_std, ".4f"), _fmt(r.val_accuracy_mean, r.val_accuracy_std, ".2f", 100),
             f"{r.seconds_mean:.1f}"] for r in summary.itertuples()]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    say()
    say("  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths))))
    for row in rows:
        say("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    say(f"\nafter {args.epochs} epoch(s); mean ± sample std over {len(args.seed_list)} seed(s); train loss = mean "
        f"over the last epoch's batches; s / run = training seconds without evaluation.")

    wall = time.perf_counter() - start
    meta = {
        "args": {k: v for k, v in vars(args).items()},
        "data": {"name": data.name, "train": len(data.y_train), "val": len(data.y_val), "test": len(data.y_test),
                 "input_shape": list(data.input_shape)},
        "strategy": {"kind": args.strategy, "class": type(strategy).__name__, "replicas": replicas},
        "learning_rates": lrs,
        "summary": summary.replace({np.nan: None}).to_dict(orient="records"),
        "tuning": {k: v.to_dict(orient="records") for k, v in tuning.items()},
        "runs": finals,
        "environment": {"python": sys.version.split()[0], "tensorflow": tf.__version__, "cpu_count": os.cpu_count(),
                        "loadavg_at_start": list(load), "platform": platform.platform()},
        "wall_seconds": wall,
    }
    out = distribute.worker_dir(args.out, strategy)
    stem = f"{args.model}_train"
    title = (f"{args.model} on {data.name} ({len(data.y_train)} train images), batch {args.batch_size}, "
             f"{args.epochs} epoch(s), {len(args.seed_list)} seed(s)")
    paths = keras_training.write_results(out, stem, curves, meta, title)
    if not chief:  # the workers' copies are scratch (tf_symbolic_l2o.distribute.worker_dir)
        shutil.rmtree(out, ignore_errors=True)
    say(f"\nwrote {paths['csv']}, {paths['png']}, {paths['json']}")
    say(f"benchmark wall time: {wall:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
