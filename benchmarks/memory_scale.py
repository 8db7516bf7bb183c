"""Memory at scale: optimizer-state bytes, peak memory and the largest ResNet each optimizer fits in a budget.

Optimizers: ``adam`` = ``keras.optimizers.Adam(1e-3)``, ``symbolic`` = ``SymbolicRP()`` (the shipped distilled RP
rule), ``learned`` = ``LearnedOptimizer("saved_models/rp_mnist_mlp")`` (the RNNprop LSTM it was distilled from).
Models, all ResNets in Keras at 32×32×3 with 10 classes, smallest first: the CIFAR ResNets of He et al. (2016)
ResNet-20 / -56 / -110 (0.27 / 0.85 / 1.7 M parameters) and ResNet-20 with 4× and 8× the filters (4.3 / 17 M), and
``keras.applications`` ResNet50 / ResNet101 / ResNet152 (``weights=None``; 23.5 / 42.6 / 58.3 M). Batch
``--batch-size`` (32) of GENERATED data (N(0, 1) images, uniform labels; no download).

* **One worker process per (optimizer, model)** (the machinery of ``keras_step.py``: ``ru_maxrss`` is process-wide
  and never goes down, so each peak belongs to one configuration alone). The worker imports TensorFlow, builds the
  model (**baseline RSS**), compiles it, allocates the optimizer state (``optimizer.build``; **state bytes** =
  ``optimizer.variables`` without the ``iterations`` / ``learning_rate`` scalars, and bytes per trainable parameter),
  then runs ``1 + --steps`` calls of ``train_on_batch`` (**peak RSS** = the worker's ``ru_maxrss``).
* **Watchdog**: the parent samples each worker's RSS every 0.25 s and kills it above ``--max-rss-gib`` (default
  12 GiB, so that the machine stays usable); that point is reported as *over the limit* with the phase it had
  reached, not as a number.
* **Fit and budgets**: per optimizer, least squares ``peak RSS ≈ a + b·params`` over the points that fit (``a``:
  TF runtime, data and fixed costs; ``b``: bytes per parameter — weights, gradients, optimizer state and the
  update's temporaries). For every budget in ``--budgets-gib`` (plus ``--budget-gib``) the largest parameter count
  is ``(budget − a) / b`` (*extrapolated* where it lies beyond the largest measured model), next to the pure
  state-bytes bound ``budget / (4 B weights + 4 B gradients + state B/param)``, which ignores everything else.
  The fit is verified on the measured points (predicted vs measured peak), by predicting the largest measured model
  of each optimizer from a fit to the others (hold-out), and against the points that went over the limit.

    python benchmarks/memory_scale.py [--models resnet20,resnet56,resnet110,resnet20x4,resnet20x8,resnet50,\
resnet101,resnet152] [--optimizers adam,symbolic,learned] [--steps 2] [--batch-size 32] [--max-rss-gib 12] \
        [--budget-gib 16] [--budgets-gib 16,40,80] [--l2o saved_models/rp_mnist_mlp] [--jit-compile auto] \
        [--timeout 900] [--out benchmarks/results] [--replot]

Outputs: the tables on stdout, ``<out>/memory_scale.csv`` (one row per (optimizer, model): measured figures and the
fit's prediction), ``<out>/memory_scale.json`` (arguments, environment, every worker's raw result, the fits, the
budget table and the checks) and ``<out>/memory_scale.png`` (peak RSS against parameters with the fit lines, the
watchdog limit and the budgets). ``--replot`` redoes the analysis and the outputs from ``memory_scale.json`` without
running any worker.

Caveat: these are host (CPU) resident-memory figures of the TensorFlow CPU runtime. On an accelerator the state
bytes per parameter are the same, but the runtime's fixed cost, the allocator and the activation memory differ, so
the 40 / 80 GiB rows mirror common GPU sizes only as far as the per-parameter cost carries over.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import keras_step as ks  # noqa: E402  (worker machinery: launch, watchdog, state_bytes, synthetic data, ...)
from _memory import peak_rss_mib, rss_mib  # noqa: E402

REPO_ROOT = ks.REPO_ROOT
OPTIMIZERS = ("adam", "symbolic", "learned")
LABELS = {"adam": "Adam(1e-3)", "symbolic": "SymbolicRP()", "learned": "LearnedOptimizer(rp_mnist_mlp)"}
COLORS = ks.COLORS
# name -> (label, builder); "cifar" = CIFAR ResNet of He et al. (depth, width multiplier), "keras" = keras.applications
MODELS = {
    "resnet20": ("ResNet-20", ("cifar", 20, 1)),
    "resnet56": ("ResNet-56", ("cifar", 56, 1)),
    "resnet110": ("ResNet-110", ("cifar", 110, 1)),
    "resnet20x4": ("ResNet-20 x4 wide", ("cifar", 20, 4)),
    "resnet20x8": ("ResNet-20 x8 wide", ("cifar", 20, 8)),
    "resnet50": ("ResNet50", ("keras", "ResNet50")),
    "resnet101": ("ResNet101", ("keras", "ResNet101")),
    "resnet152": ("ResNet152", ("keras", "ResNet152")),
}
DEFAULT_MODELS = ",".join(MODELS)
GIB = 2.0**30
MIB = 2.0**20


# ---------------------------------------------------------------------------------------------------------------
# worker side (imports TensorFlow)
# ---------------------------------------------------------------------------------------------------------------
def build_model(name: str, seed: int):
    import keras  # noqa: PLC0415

    if name in ("resnet20", "resnet50"):  # exactly keras_step's models
        return ks.build_model(name, seed)
    keras.utils.set_random_seed(seed)
    kind, *spec = MODELS[name][1]
    if kind == "cifar":
        from tf_symbolic_l2o.tasks.keras_models import cifar_resnet  # noqa: PLC0415

        return cifar_resnet(*spec)
    return getattr(keras.applications, spec[0])(weights=None, input_shape=(32, 32, 3), classes=10)


def make_optimizer(name: str, args):
    if name == "symbolic":
        from tf_symbolic_l2o.optimizers import SymbolicRP  # noqa: PLC0415

        return SymbolicRP()
    return ks.make_optimizer(name, args)  # adam, learned (args.l2o)


def worker(args) -> dict:
    """One optimizer on one model: state bytes, baseline and peak RSS (phases go to stderr for the watchdog)."""
    import keras  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415
    import tensorflow as tf  # noqa: PLC0415

    rss_runtime = rss_mib()
    x, y = ks.synthetic_batch(args.batch_size, args.seed)
    model = build_model(args.model, args.seed)
    params = ks._n_params(model)
    weight_bytes = int(sum(int(np.prod(v.shape)) * np.dtype(str(v.dtype)).itemsize for v in model.weights))
    baseline = rss_mib()
    ks._phase("model built", params=params)
    optimizer = make_optimizer(args.optimizer, args)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                  jit_compile=ks._parse_jit(args.jit_compile))
    optimizer.build(model.trainable_variables)  # what the first train step would do; here to measure it alone
    sbytes, nvars = ks.state_bytes(optimizer)
    rss_state = rss_mib()
    ks._phase("optimizer state allocated", state_bytes=sbytes, state_bytes_per_param=sbytes / params)
    first, times, loss = ks.time_train_steps(model, x, y, args.steps)
    return {
        "optimizer": args.optimizer, "model": args.model, "params": params, "weight_bytes": weight_bytes,
        "state_bytes": sbytes, "state_variables": nvars, "state_bytes_per_param": sbytes / params,
        "runtime_rss_mib": rss_runtime, "baseline_rss_mib": baseline, "state_rss_mib": rss_state,
        "peak_rss_mib": peak_rss_mib(), "first_call_s": first,
        "median_step_s": float(np.median(times)) if times else float("nan"), "final_loss": loss,
        "jit_compile": str(model.jit_compile), "tf_version": tf.__version__, "keras_version": keras.__version__,
        "numpy_version": np.__version__,
    }


# ---------------------------------------------------------------------------------------------------------------
# driver side (no TensorFlow import)
# ---------------------------------------------------------------------------------------------------------------
def run_point(optimizer: str, model: str, args) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--optimizer", optimizer, "--model", model,
           "--batch-size", str(args.batch_size), "--steps", str(args.steps), "--l2o", args.l2o,
           "--jit-compile", args.jit_compile, "--seed", str(args.seed)]
    r = ks.launch("memory", [optimizer], args, args.timeout, cmd=cmd)
    reached = {k: v for ph in r.get("phases", []) for k, v in ph.items()}  # what a killed worker got to
    point = {"optimizer": optimizer, "model": model, "model_label": MODELS[model][0]}
    if "error" in r:
        killed = r["error"].startswith("killed at RSS")
        last = r["phases"][-1]["phase"] if r.get("phases") else "start-up"
        point.update(status="over limit" if killed else "failed", error=r["error"], reached=last,
                     detail=r.get("detail", ""), params=reached.get("params"), state_bytes=reached.get("state_bytes"),
                     baseline_rss_mib=next((ph["rss_mib"] for ph in r.get("phases", [])
                                            if ph["phase"] == "model built"), None),
                     peak_rss_mib=None, max_rss_seen_gib=r["max_rss_seen_gib"], wall_s=r["wall_s"],
                     phases=r.get("phases", []))
    else:
        point.update(status="measured", **{k: v for k, v in r.items() if k not in ("optimizer", "model")})
    if point.get("params") and point.get("state_bytes") is not None:
        point["state_bytes_per_param"] = point["state_bytes"] / point["params"]
    return point


def _lstsq(xs, ys):
    import numpy as np  # noqa: PLC0415

    A = np.stack([np.ones(len(xs)), np.asarray(xs, float)], axis=1)
    (a, b), *_ = np.linalg.lstsq(A, np.asarray(ys, float), rcond=None)
    return float(a), float(b)


def analyse(points: list[dict], args) -> dict:
    """Fits, checks and the budget table from the measured points (pure arithmetic, no TensorFlow)."""
    import numpy as np  # noqa: PLC0415

    budgets = sorted({args.budget_gib, *args.budget_list})
    params_of = {p["model"]: p["params"] for p in points if p.get("params")}
    fits, budget_rows = {}, []
    for opt in args.optimizer_list:
        mine = [p for p in points if p["optimizer"] == opt]
        ok = sorted((p for p in mine if p["status"] == "measured"), key=lambda p: p["params"])
        over = [p for p in mine if p["status"] == "over limit"]
        bpp = [p["state_bytes_per_param"] for p in mine if p.get("state_bytes_per_param") is not None]
        s_bpp = float(np.median(bpp)) if bpp else None
        fit = {"optimizer": opt, "n_points": len(ok), "state_bytes_per_param": s_bpp,
               "largest_measured_model": ok[-1]["model"] if ok else None,
               "largest_measured_params": ok[-1]["params"] if ok else None}
        if len(ok) >= 2:
            xs = [p["params"] for p in ok]
            ys = [p["peak_rss_mib"] * MIB for p in ok]
            a, b = _lstsq(xs, ys)
            pred = [a + b * x for x in xs]
            ss_res = float(sum((y - q) ** 2 for y, q in zip(ys, pred)))
            ss_tot = float(sum((y - np.mean(ys)) ** 2 for y in ys))
            fit.update(a_mib=a / MIB, b_bytes_per_param=b, r2=1 - ss_res / ss_tot if ss_tot > 0 else float("nan"),
                       max_abs_err_pct=max(abs(q / y - 1) * 100 for y, q in zip(ys, pred)))
            for p in ok:
                p["fit_peak_mib"] = (a + b * p["params"]) / MIB
                p["fit_err_pct"] = (p["fit_peak_mib"] / p["peak_rss_mib"] - 1) * 100
            if len(ok) >= 3:  # hold-out: the largest measured model predicted from the smaller ones
                ha, hb = _lstsq(xs[:-1], ys[:-1])
                fit.update(holdout_model=ok[-1]["model"], holdout_pred_mib=(ha + hb * xs[-1]) / MIB,
                           holdout_meas_mib=ys[-1] / MIB,
                           holdout_err_pct=((ha + hb * xs[-1]) / ys[-1] - 1) * 100)
            for p in over:
                if p.get("params"):
                    p["fit_peak_mib"] = (a + b * p["params"]) / MIB
            fit["over_limit_checks"] = [
                {"model": p["model"], "params": p["params"], "pred_peak_gib": (a + b * p["params"]) / GIB,
                 "limit_gib": args.max_rss_gib, "consistent": (a + b * p["params"]) / GIB > args.max_rss_gib}
                for p in over if p.get("params")]
        for p in mine:  # a worker killed before its state was allocated: the state it would have had
            if p.get("state_bytes") is None and p.get("params") and s_bpp is not None:
                p["state_bytes_est"] = s_bpp * p["params"]
        fits[opt] = fit
        for B in budgets:
            row = {"optimizer": opt, "budget_gib": B, "state_bound_params": None, "fit_params": None,
                   "fit_basis": "no fit (fewer than 2 measured points)", "largest_listed_fit": None,
                   "largest_measured_within": None}
            if s_bpp is not None:
                row["state_bound_params"] = B * GIB / (8.0 + s_bpp)
            if "b_bytes_per_param" in fit and fit["b_bytes_per_param"] > 0:
                n = (B * GIB - fit["a_mib"] * MIB) / fit["b_bytes_per_param"]
                row["fit_params"] = n
                row["fit_basis"] = ("extrapolated" if n > fit["largest_measured_params"] else "interpolated")
                fitting = [m for m, n_m in params_of.items() if n_m <= n]
                row["largest_listed_fit"] = max(fitting, key=params_of.get) if fitting else None
            within = [p for p in ok if p["peak_rss_mib"] <= B * 1024]
            if within:
                row["largest_measured_within"] = within[-1]["model"]
            budget_rows.append(row)
    return {"budgets_gib": budgets, "fits": fits, "budget_table": budget_rows}


def _print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    print("  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(header, widths))))
    for r in rows:
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))


def _m(n) -> str:
    return "-" if n is None else f"{n / 1e6:,.2f} M" if n < 1e9 else f"{n / 1e9:,.2f} G"


def report(points: list[dict], analysis: dict, args) -> None:
    f = ks._fmt
    print(f"\nMeasured points (one worker per row; peak RSS = ru_maxrss incl. the TF runtime; worker limit "
          f"{args.max_rss_gib:g} GiB):")
    rows = []
    for p in points:
        if p["status"] == "measured":
            status = "measured"
        elif p["status"] == "over limit":
            status = f"OVER LIMIT (killed at {p['max_rss_seen_gib']:.1f} GiB; last phase done: {p['reached']})"
        else:
            status = f"failed: {p.get('error')}"
        rows.append([LABELS[p["optimizer"]], p["model_label"], f(p.get("params"), ","),
                     f(p.get("state_bytes_per_param"), ".1f"),
                     f(p["state_bytes"] / MIB if p.get("state_bytes") is not None else None, ",.0f")
                     if "state_bytes_est" not in p else "~" + f(p["state_bytes_est"] / MIB, ",.0f"),
                     f(p.get("baseline_rss_mib"), ",.0f"), f(p.get("peak_rss_mib"), ",.0f"),
                     f(p.get("fit_peak_mib"), ",.0f"), f(p.get("fit_err_pct"), "+.1f"),
                     f(p.get("first_call_s"), ".1f"), status])
    _print_table(["optimizer", "model", "params", "state B/param", "state MiB", "baseline MiB", "peak MiB",
                  "fit MiB", "fit err %", "1st step s", "status"], rows)

    print("\nFit peak RSS = a + b * params over the measured points of each optimizer:")
    rows, checks = [], []
    for opt, fit in analysis["fits"].items():
        hold = (f"{MODELS[fit['holdout_model']][0]}: {fit['holdout_pred_mib']:,.0f} vs {fit['holdout_meas_mib']:,.0f}"
                f" ({fit['holdout_err_pct']:+.1f} %)" if "holdout_model" in fit else "-")
        rows.append([LABELS[opt], str(fit["n_points"]), f(fit.get("a_mib"), ",.0f"),
                     f(fit.get("b_bytes_per_param"), ".1f"), f(fit.get("state_bytes_per_param"), ".1f"),
                     f(fit.get("r2"), ".4f"), f(fit.get("max_abs_err_pct"), ".1f"), hold])
        for c in fit.get("over_limit_checks", []):
            checks.append(f"  {LABELS[opt]} on {MODELS[c['model']][0]}: fit predicts {c['pred_peak_gib']:.1f} GiB, "
                          f"measured > {c['limit_gib']:g} GiB (killed): "
                          + ("consistent" if c["consistent"] else "NOT consistent"))
    _print_table(["optimizer", "points", "a MiB", "b B/param", "state B/param", "R^2", "max |err| %",
                  "hold-out: largest measured predicted from the others, pred vs meas MiB"], rows)
    if checks:
        print("Over-limit points against the fit (extrapolated):")
        print("\n".join(checks))

    print("\nLargest model per memory budget (fit = (budget - a) / b; state bound = budget / (8 + state B/param)):")
    rows = []
    for r in analysis["budget_table"]:
        listed = MODELS[r["largest_listed_fit"]][0] if r["largest_listed_fit"] else "none"
        meas = MODELS[r["largest_measured_within"]][0] if r["largest_measured_within"] else "none"
        rows.append([LABELS[r["optimizer"]], f"{r['budget_gib']:g}", _m(r["fit_params"]), r["fit_basis"],
                     listed, meas, _m(r["state_bound_params"])])
    _print_table(["optimizer", "budget GiB", "fit: max params", "basis", "largest listed ResNet (fit)",
                  "largest measured <= budget", "state bound: max params"], rows)
    print(f"measured: state bytes, baseline and peak RSS of the rows marked 'measured'; 'largest measured <= budget'"
          f" (only up to the {args.max_rss_gib:g} GiB worker limit). Extrapolated: every 'fit: max params' marked "
          f"'extrapolated' (beyond the largest measured model) and the 'fit MiB' of over-limit rows; '~' state MiB = "
          f"the optimizer's measured B/param x params (worker killed before allocating it); the state bound is "
          f"arithmetic.")


def make_plot(points: list[dict], analysis: dict, args, path: Path) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415

    fig, axes = plt.subplots(1, 2, figsize=(13, 5.0))
    maxp = max((p["params"] for p in points if p.get("params")), default=1e6)
    params_of = {p["model"]: p["params"] for p in points if p.get("params")}
    for ax, log in zip(axes, (False, True)):
        top_n = maxp * 1.05
        if log:
            top_n = max([top_n] + [r["fit_params"] for r in analysis["budget_table"] if r["fit_params"]]) * 1.5
        for opt in args.optimizer_list:
            c = COLORS[opt]
            ok = [p for p in points if p["optimizer"] == opt and p["status"] == "measured"]
            over = [p for p in points if p["optimizer"] == opt and p["status"] == "over limit" and p.get("params")]
            ax.plot([p["params"] for p in ok], [p["peak_rss_mib"] / 1024 for p in ok], "o", color=c,
                    label=f"{LABELS[opt]} measured")
            if over:
                ax.plot([p["params"] for p in over], [p["max_rss_seen_gib"] for p in over], "^", color=c,
                        mfc="none", ms=9, label=f"{LABELS[opt]} killed (peak > limit, shown at the limit)")
            fit = analysis["fits"][opt]
            if "b_bytes_per_param" in fit:
                if log:  # where the fit line crosses each budget: the largest model it predicts there
                    bt = [r for r in analysis["budget_table"] if r["optimizer"] == opt and r["fit_params"]]
                    ax.plot([r["fit_params"] for r in bt], [r["budget_gib"] for r in bt], "D", color=c, ms=5)
                xs = np.geomspace(1e5, top_n, 200) if log else np.linspace(0, top_n, 50)
                ys = (fit["a_mib"] * MIB + fit["b_bytes_per_param"] * xs) / GIB
                ax.plot(xs, ys, "-", color=c, alpha=0.6, lw=1,
                        label=f"fit {fit['a_mib'] / 1024:.2f} GiB + {fit['b_bytes_per_param']:.0f} B/param")
        ax.axhline(args.max_rss_gib, color="red", ls=":", lw=1, label=f"worker limit {args.max_rss_gib:g} GiB")
        if log:
            for B in analysis["budgets_gib"]:
                ax.axhline(B, color="k", ls="--", lw=0.8, alpha=0.6)
                ax.text(1.1e5, B * 1.05, f"budget {B:g} GiB", fontsize=7)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlim(1e5, top_n)
            ax.set_ylim(0.3, max(analysis["budgets_gib"]) * 2)
            ax.set_title("extrapolation to the budgets (log-log)", fontsize=9)
        else:
            ax.set_xlim(0, top_n)
            ax.set_ylim(0, args.max_rss_gib * 1.15)
            groups: list[tuple[float, list[str]]] = []  # labels of models closer than 3 % of the axis share one
            for m, (label, _) in sorted(MODELS.items(), key=lambda kv: params_of.get(kv[0], 0)):
                n = params_of.get(m)
                if n:
                    ax.axvline(n, color="gray", lw=0.5, alpha=0.4)
                    if groups and n - groups[-1][0] < 0.03 * top_n:
                        groups[-1][1].append(label)
                    else:
                        groups.append((n, [label]))
            for n, labels in groups:
                ax.text(n, args.max_rss_gib * 1.13, " / ".join(labels), rotation=90, fontsize=6, va="top", ha="right")
            ax.set_title("measured range (linear)", fontsize=9)
        ax.set_xlabel("trainable parameters")
        ax.set_ylabel("peak RSS of the worker, GiB")
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=7, loc="center right")
    fig.suptitle(f"Keras ResNets at 32x32x3, batch {args.batch_size}, {1 + args.steps} train steps, CPU "
                 f"({os.cpu_count()} cores): peak memory vs parameters", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_csv(points: list[dict], path: Path) -> None:
    cols = ["optimizer", "model", "model_label", "status", "params", "weight_bytes", "state_bytes",
            "state_bytes_per_param", "runtime_rss_mib", "baseline_rss_mib", "state_rss_mib", "peak_rss_mib",
            "fit_peak_mib", "fit_err_pct", "max_rss_seen_gib", "reached", "first_call_s", "median_step_s",
            "wall_s", "jit_compile", "final_loss"]
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for p in points:
            w.writerow({k: ("" if p.get(k) is None else p.get(k)) for k in cols})


def environment() -> dict:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                                timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"python": sys.version.split()[0], "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "loadavg_at_start": list(load), "mem_available_gib_at_start": ks._mem_available_gib(),
            "git_commit": commit}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=DEFAULT_MODELS, help=f"comma list of {', '.join(MODELS)}")
    p.add_argument("--optimizers", default=",".join(OPTIMIZERS), help="comma list of adam, symbolic, learned")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=2, help="train_on_batch calls after the first one")
    p.add_argument("--l2o", default=ks.DEFAULT_L2O, help="saved learned optimizer for LearnedOptimizer")
    p.add_argument("--jit-compile", default="auto", help="model.compile(jit_compile=...): auto, true or false")
    p.add_argument("--max-rss-gib", type=float, default=12.0, help="kill a worker above this RSS (GiB)")
    p.add_argument("--budget-gib", type=float, default=16.0, help="the memory budget of the headline figure")
    p.add_argument("--budgets-gib", default="16,40,80", help="further budgets (comma list, GiB)")
    p.add_argument("--timeout", type=float, default=900, help="seconds allowed per worker")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "results"))
    p.add_argument("--replot", action="store_true", help="redo tables and outputs from <out>/memory_scale.json")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--optimizer", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:
        args.l2o = ks._resolve(args.l2o)
        print(ks.RESULT_TAG + json.dumps(worker(args)), flush=True)
        return 0

    out = Path(args.out)
    if args.replot:
        meta = json.loads((out / "memory_scale.json").read_text())
        args = argparse.Namespace(**{**meta["args"], "out": str(out), "replot": True})
        points = meta["points"]
    else:
        args.optimizer_list = [o.strip().lower() for o in args.optimizers.split(",") if o.strip()]
        args.model_list = [m.strip().lower() for m in args.models.split(",") if m.strip()]
        bad = [o for o in args.optimizer_list if o not in OPTIMIZERS] + [m for m in args.model_list if m not in MODELS]
        if bad or not args.optimizer_list or not args.model_list:
            p.error(f"unknown optimizer(s)/model(s) {bad}; optimizers: {', '.join(OPTIMIZERS)}; models: "
                    f"{', '.join(MODELS)}")
        try:
            args.budget_list = [float(b) for b in args.budgets_gib.split(",") if b.strip()]
            ks._parse_jit(args.jit_compile)
        except (ValueError, KeyError):
            p.error("--budgets-gib must be a comma list of numbers and --jit-compile auto, true or false")
        if min(args.batch_size, args.max_rss_gib, args.budget_gib, *args.budget_list) <= 0 or args.steps < 0:
            p.error("--batch-size, --max-rss-gib and the budgets must be > 0, --steps >= 0")
        args.l2o = ks._resolve(args.l2o)
        if "learned" in args.optimizer_list and not (Path(args.l2o) / "l2o.json").is_file() \
                and not (Path(args.l2o) / "l2o" / "l2o.json").is_file():
            p.error(f"no learned optimizer in {args.l2o} (l2o.json missing)")

    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if not args.replot:
        env = environment()
        print(f"memory_scale: models {', '.join(args.model_list)}; optimizers {', '.join(args.optimizer_list)}; "
              f"batch {args.batch_size} of generated data; 1 + {args.steps} train_on_batch steps per worker; "
              f"model.compile(jit_compile={args.jit_compile}); l2o {args.l2o}")
        print(f"host: {env['processor']}, {env['cpu_count']} CPUs, load average "
              f"{' '.join(f'{v:.2f}' for v in env['loadavg_at_start'])}, MemAvailable "
              f"{env['mem_available_gib_at_start']:.1f} GiB, worker RSS limit {args.max_rss_gib:g} GiB", flush=True)
        points = []
        for model in args.model_list:
            for opt in args.optimizer_list:
                print(f"  {opt:8s} on {MODELS[model][0]:18s} ...", end=" ", flush=True)
                pt = run_point(opt, model, args)
                points.append(pt)
                if pt["status"] == "measured":
                    print(f"{pt['params']:>11,} params, state {pt['state_bytes_per_param']:.0f} B/param, baseline "
                          f"{pt['baseline_rss_mib']:,.0f} MiB, peak {pt['peak_rss_mib']:,.0f} MiB, first step "
                          f"{pt['first_call_s']:.1f} s, worker {pt['wall_s']:.0f} s", flush=True)
                else:
                    print(f"{pt['status'].upper()}: {pt['error']} (reached '{pt['reached']}', worker "
                          f"{pt['wall_s']:.0f} s)", flush=True)
                    if pt["status"] == "failed" and pt.get("detail"):
                        print("      " + pt["detail"].replace("\n", "\n      "))
        workers = [pt for pt in points if "tf_version" in pt]
        if workers:
            env.update({k: workers[0][k] for k in ("tf_version", "keras_version", "numpy_version")})
    else:
        env = meta["environment"]

    analysis = analyse(points, args)
    report(points, analysis, args)
    write_csv(points, out / "memory_scale.csv")
    make_plot(points, analysis, args, out / "memory_scale.png")
    if args.replot:
        meta.update(analysis=analysis, points=points)
    else:
        meta = {"args": {k: v for k, v in vars(args).items() if k not in ("worker", "optimizer", "model", "replot")},
                "environment": env, "points": points, "analysis": analysis,
                "wall_s": time.perf_counter() - start}
    (out / "memory_scale.json").write_text(json.dumps(meta, indent=1, default=str))
    print(f"\nwrote {out / 'memory_scale.csv'}, {out / 'memory_scale.png'}, {out / 'memory_scale.json'}")
    if args.replot:
        print(f"(redone from {out / 'memory_scale.json'}; the measured run took {meta.get('wall_s', float('nan')):.0f} s)")
    else:
        print(f"benchmark wall time: {time.perf_counter() - start:.1f} s")
    return 0 if any(pt["status"] == "measured" for pt in points) else 1


if __name__ == "__main__":
    sys.exit(main())
