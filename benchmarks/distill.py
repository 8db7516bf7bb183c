"""Distillation speed and accuracy: default backend settings on an RNNprop-like behaviour dataset.

Data: ``--rows`` (50 000) rows of the features ``mt_0, gt_0`` (m̃ and g̃ computed by the library's FeatureSet from
simulated per-coordinate gradient sequences, so they have the scales of recorded data; see
``tf_symbolic_l2o.distill.synthetic``) and the target of the RP rule found by the authors,
``y = tanh(tanh(0.0248 + sinh((−1.992·m̃)³)))``, plus Gaussian noise of ``--noise`` (1 %) of its std.

Each backend (``gplearn`` with its default settings; ``operon`` with its defaults when pyoperon is installed;
``sparse``, the deterministic sparse regression over odd basis functions) runs the whole
:func:`tf_symbolic_l2o.distill.distill` (80/20 split, standardisation, SR, fold-back, scoring, selection) on the same
rows, ``--repeats`` times with seeds ``seed, seed+1, …``; the table reports medians of the wall time and the test R².
The machine load (1-minute load average) is recorded before and after each run, since other processes may share the
CPU. "SR rows" is the number of rows the backend fitted on: the symmetrised training rows (2 × train with the default
``odd=True``) capped by its ``max_rows``; the sparse backend drops the mirror half first (same fit).

    python benchmarks/distill.py [--rows 50000] [--repeats 1] [--backends gplearn,operon,sparse]
                                 [--dataset RECORDED.npy] [--out benchmarks/results]

``--dataset`` replaces the synthetic rows by a behaviour dataset recorded with ``tfl2o record`` (e.g. the rows
a shipped rule was distilled from), so the backends are compared on a real teacher.

Outputs: a table on stdout, ``<out>/distill.csv`` (one row per run) and ``<out>/distill.png``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

RP_RULE = "tanh(tanh(0.0248 + sinh((-1.992 * mt_0) ^ 3)))"
BUDGET_S = 120.0


def _load() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:  # pragma: no cover - not on Linux
        return float("nan")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--backends", default=None,
                        help="comma list of gplearn, operon, sparse (default: all three, operon only if pyoperon is "
                             "installed)")
    parser.add_argument("--noise", type=float, default=0.01, help="noise std relative to the std of y")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dataset", default=None, help="a recorded behaviour dataset (.npy + .json) instead of the "
                                                        "synthetic rows")
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)

    import pandas as pd

    from tf_symbolic_l2o.distill import distill, get_backend, synthetic_behaviour

    have_operon = importlib.util.find_spec("pyoperon") is not None
    default = "gplearn,operon,sparse" if have_operon else "gplearn,sparse"
    backends = [b.strip() for b in (args.backends or default).split(",") if b.strip()]
    if "operon" in backends and not have_operon:
        print("pyoperon is not installed (pip install tf-symbolic-l2o[operon]); skipping the operon backend")
        backends.remove("operon")

    t0 = time.perf_counter()
    if args.dataset:
        from tf_symbolic_l2o.record import load_behaviour

        X, y, manifest = load_behaviour(args.dataset)
        args.rows = int(X.shape[0])
        print(f"data: {args.dataset}: {args.rows} rows x {X.shape[1]} features ({', '.join(manifest['columns'])})")
    else:
        X, y, manifest = synthetic_behaviour(args.rows, RP_RULE, features="mt+gt", noise=args.noise,
                                             seed=args.seed)
        gen_s = time.perf_counter() - t0
        print(f"data: {args.rows} rows x {X.shape[1]} features ({', '.join(manifest['columns'])}), y = {RP_RULE} "
              f"+ {args.noise:g}·std noise; generated in {gen_s:.1f} s")
    print(f"machine: {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
          f"load average {_load():.2f}; python {platform.python_version()}")

    rows = []
    for name in backends:
        settings = get_backend(name).settings()
        for r in range(args.repeats):
            seed = args.seed + r
            load_before = _load()
            res = distill(X, y, manifest, backend=name, seed=seed, test_fraction=args.test_fraction)
            load_after = _load()
            rows.append({
                "backend": name, "repeat": r, "seed": seed, "rows": args.rows, "train_rows": res.settings["n_train"],
                "sr_rows": _sr_rows(name, res.settings, settings),
                "total_s": res.timings["total_s"], "backend_s": res.timings["backend_s"],
                "r2_train": res.chosen.r2_train, "r2_test": res.chosen.r2_test, "mse_test": res.chosen.mse_test,
                "complexity": res.chosen.complexity, "n_candidates": len(res.candidates),
                "load_before": load_before, "load_after": load_after, "cpus": os.cpu_count(),
                "within_budget": res.timings["total_s"] <= BUDGET_S,
                "settings": ";".join(f"{k}={v}" for k, v in settings.items()),
                "sympy": str(res.rule.to_sympy(simplify=False)), "infix": res.rule.infix,
            })
            print(f"  {name} seed {seed}: {res.timings['total_s']:.1f} s (SR {res.timings['backend_s']:.1f} s), "
                  f"R² test {res.chosen.r2_test:.4f}, complexity {res.chosen.complexity}, "
                  f"load {load_before:.2f} → {load_after:.2f}", flush=True)

    frame = pd.DataFrame(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out / "distill.csv", index=False)

    summary = []
    for name, g in frame.groupby("backend", sort=False):
        summary.append({
            "backend": name, "rows": int(g["rows"].iloc[0]), "SR rows": int(g["sr_rows"].iloc[0]),
            "runs": len(g), "median s": statistics.median(g["total_s"]),
            "median SR s": statistics.median(g["backend_s"]), "median R² test": statistics.median(g["r2_test"]),
            "min R² test": float(g["r2_test"].min()), "complexity": int(statistics.median(g["complexity"])),
            f"≤{BUDGET_S:.0f} s": bool(g["within_budget"].all()),
            "load": f"{g['load_before'].min():.2f}–{g['load_after'].max():.2f}",
        })
    table = pd.DataFrame(summary)
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.4g}".format):
        print()
        print(table.to_string(index=False))
    for name, g in frame.groupby("backend", sort=False):
        best = g.sort_values("r2_test").iloc[-1]
        print(f"\n{name} rule (seed {best['seed']}): y ≈ {best['sympy']}")

    _plot(frame, out / "distill.png", args)
    print(f"\nwrote {out / 'distill.csv'} and {out / 'distill.png'}")
    return 0


def _sr_rows(name: str, run: dict, backend: dict) -> int:
    """Rows the backend fitted on: the (symmetrised, with ``odd``) training rows, capped by its ``max_rows``."""
    rows = run["n_train"] * (2 if run.get("odd") and name != "sparse" else 1)  # sparse drops the mirror half
    cap = backend.get("max_rows")
    return min(rows, cap) if cap else rows


def _plot(frame, path: Path, args) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(dict.fromkeys(frame["backend"]))
    fig = Figure(figsize=(8.5, 3.6), dpi=110)
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for i, name in enumerate(names):
        g = frame[frame["backend"] == name]
        ax1.bar(i, g["total_s"].median(), color=f"C{i}")
        ax1.scatter([i] * len(g), g["total_s"], color="k", s=10, zorder=3)
        ax2.bar(i, g["r2_test"].median(), color=f"C{i}")
        ax2.scatter([i] * len(g), g["r2_test"], color="k", s=10, zorder=3)
    ax1.axhline(BUDGET_S, color="C3", ls="--", lw=1, label=f"{BUDGET_S:.0f} s budget")
    ax1.set_ylabel("distill wall time (s)")
    ax1.legend(fontsize=8)
    lo = min(0.9, float(frame["r2_test"].min()) - 0.01)
    ax2.set_ylim(lo, 1.0)
    ax2.set_ylabel("test R²")
    for ax in (ax1, ax2):
        ax.set_xticks(range(len(names)), names)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"Distilling {args.rows:,} rows (RP-like rule over m̃, g̃), {os.cpu_count()} CPUs, "
                 f"median of {args.repeats}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)


if __name__ == "__main__":
    sys.exit(main())
