"""The benchmark report, built from the saved curves alone (:func:`build_report` never runs an optimizer).

``OUT/report/`` holds:

* ``metrics.csv`` — :func:`~tf_symbolic_l2o.benchmark.metrics.task_metrics` (one row per task and optimizer);
* ``profile.csv`` — the Dolan–Moré performance profile over tasks (final training loss);
* ``results.md`` — the markdown results tables (one per task, grouped by tier) and the profile summary;
* ``loss_curves.png`` — training loss vs step per task, mean ± std bands over the final seeds;
* ``performance_profile.png`` — ρ_s(τ) per optimizer;
* ``cost.png`` — wall time per step and optimizer-state bytes per parameter.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from tf_symbolic_l2o.benchmark.metrics import performance_profile, profile_by_seed, task_metrics
from tf_symbolic_l2o.benchmark.optimizers import LABELS, PRESETS, RULES, TUNED_PRESETS, artifact_path
from tf_symbolic_l2o.benchmark.records import load_records
from tf_symbolic_l2o.io import atomic_directory, atomic_write_bytes, atomic_write_text, figure_png
from tf_symbolic_l2o.rules import Rule

REPORT_DIR = "report"
REPORT_FILES = ("metrics.csv", "profile.csv", "results.md", "loss_curves.png", "performance_profile.png", "cost.png")


def _label(name: str) -> str:
    return LABELS.get(name, name)


def _fmt(x: float, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    if isinstance(x, float) and math.isinf(x):
        return "∞"
    return f"{x:.{digits}g}"


def _test_cell(row) -> str:
    if math.isnan(row.test_metric_mean):
        return "—"
    if row.test_metric == "test_accuracy":
        return f"{100 * row.test_metric_mean:.2f} % ± {100 * row.test_metric_std:.2f}"
    return f"{_fmt(row.test_metric_mean)} ± {_fmt(row.test_metric_std, 2)}"


def _seeded(row, name: str, fmt: str, missing: str = "not reached") -> str:
    """``mean ± std`` over the seeds that reached the target, with ``(k/n seeds)`` when not all did."""
    reached, n = int(row[f"{name}_reached"]), int(row.seeds)
    if reached == 0:
        return missing
    text = f"{fmt.format(row[name])} ± {fmt.format(row[f'{name}_std'])}"
    return text if reached == n else f"{text} ({reached}/{n} seeds)"


def markdown_table(metrics: pd.DataFrame, profile: pd.DataFrame | None = None, suite: dict | None = None) -> str:
    """The results as markdown: protocol line, one table per task (grouped by tier), and the profile summary."""
    lines = ["# Benchmark results", ""]
    if suite:
        lines += [f"Suite `{suite.get('name', '?')}`: learning rates tuned on selection seeds "
                  f"{suite.get('selection_seeds')} ({suite.get('tune_split')} split), reported runs on final seeds "
                  f"{suite.get('final_seeds')} ({suite.get('final_split')} split). Learned and symbolic optimizers "
                  "run untuned. Final loss = mean of the last 10 % of steps; mean ± std over final seeds. "
                  "Steps to Adam@50 %/100 %: per seed, the first step at which the run's smoothed curve reaches "
                  "tuned Adam's (mean) loss at half / all of the budget; speed-up = Adam's steps to its final loss ÷ "
                  "the run's; mean ± std over the seeds that reach it (how many, when not all). ms/step: mean ± "
                  "std over runs. The learning rate and the state size are settings, not measurements.", ""]
    members = {t["name"]: t.get("default_family_member") for t in (suite or {}).get("tasks", [])}
    header = ("| optimizer | lr | final train loss | test metric | steps to Adam@50 % | steps to Adam@100 % | "
              "speed-up vs Adam | diverged | ms/step | state B/param |")
    for tier in dict.fromkeys(metrics["tier"]):
        lines += [f"## {tier}", ""]
        for task in dict.fromkeys(metrics.loc[metrics["tier"] == tier, "task"]):
            sub = metrics[metrics["task"] == task]
            first = sub.iloc[0]
            lines += [f"### {task} ({int(first.steps)} steps, {int(first.num_params)} parameters, "
                      f"{int(first.seeds)} seed{'s' if first.seeds > 1 else ''}; test metric: "
                      f"{first.test_metric.replace('_', ' ')})", "", *_family_note(members, task),
                      header, "|---" * 10 + "|"]
            best = sub["final_loss_mean"].min()
            for _, r in sub.iterrows():
                fl = f"{_fmt(r.final_loss_mean)} ± {_fmt(r.final_loss_std, 2)}"
                if r.final_loss_mean == best:
                    fl = f"**{fl}**"
                untuned = r.learning_rate is None or (isinstance(r.learning_rate, float) and math.isnan(r.learning_rate))
                lr = "untuned" if untuned else f"{r.learning_rate:g}"
                steps50 = _seeded(r, "steps_to_adam50", "{:.0f}")
                steps100 = _seeded(r, "steps_to_adam100", "{:.0f}")
                speed = _seeded(r, "speedup_vs_adam", "{:.2f}", missing="—")
                lines.append(f"| {_label(r.optimizer)} | {lr} | {fl} | {_test_cell(r)} | {steps50} | {steps100} | "
                             f"{speed} | {100 * r.divergence_rate:.0f} % | "
                             f"{r.ms_per_step:.3f} ± {r.ms_per_step_std:.3f} | {r.state_bytes_per_param:.0f} |")
            lines.append("")
    if profile is not None and len(profile):
        taus = (1.0, 1.1, 2.0, 10.0)
        by_seed = profile_by_seed(metrics, taus)
        lines += ["## Performance profile (final training loss, all tasks)", "",
                  "ρ(τ): fraction of tasks on which the optimizer's final loss is within a factor τ of the best, "
                  "computed for each final seed (seeds paired across optimizers); mean ± std over the seeds.",
                  "", "| optimizer | ρ(1) (best) | ρ(1.1) | ρ(2) | ρ(10) |", "|---|---|---|---|---|"]
        for opt in dict.fromkeys(by_seed["optimizer"]):
            sub = by_seed[by_seed["optimizer"] == opt]
            cells = [f"{m:.2f} ± {sd:.2f}" for m, sd in zip(sub["mean"], sub["std"])]
            lines.append(f"| {_label(opt)} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += symbolic_lines(metrics)
    return "\n".join(lines)


def _family_note(members: dict, task: str) -> list[str]:
    """The line under a task's heading saying whether the ``default`` task family trains on it (suites saved before
    the families say nothing)."""
    if task not in members:
        return []
    member = members[task]
    return [f"Meta-training task: the `default` family's `{member}` member has this optimizee and data.", ""] \
        if member else ["Held out: no member of the `default` task family has this optimizee and data.", ""]


#: The learned optimizer the symbolic rules are compared with in closed loop (the suite's LSTM).
LSTM_REFERENCE = "rp_mnist_mlp"


def symbolic_lines(metrics: pd.DataFrame) -> list[str]:
    """Markdown for the symbolic rules: the test R² of each distilled rule against its LSTM teacher (from the rule's
    own metadata, written by ``tfl2o distill``) and the closed-loop gap on every task: the rule's mean final loss
    ÷ the suite's LSTM optimizer's, on the same seeds."""
    rules = [o for o in dict.fromkeys(metrics["optimizer"]) if o in RULES]
    lstm = metrics[metrics["optimizer"] == LSTM_REFERENCE].set_index("task")["final_loss_by_seed"]
    if not rules:
        return []
    tasks = list(dict.fromkeys(metrics["task"]))
    lines = ["## Symbolic rules: fidelity and closed-loop gap", "",
             f"R² = test R² of the distilled rule against its LSTM teacher's steps (`tfl2o distill`; — for a "
             f"meta-tuned rule, which imitates nothing). Gap = the rule's final loss ÷ {_label(LSTM_REFERENCE)}'s on "
             f"the same task and seed (< 1: the rule is better), mean ± std over the seeds.", "",
             "| rule | R² vs teacher | " + " | ".join(tasks) + " |", "|---" * (2 + len(tasks)) + "|"]
    for name in rules:
        meta = Rule.load(artifact_path(name) / "rule.json").metadata
        r2 = meta.get("r2_test")
        cells = []
        for task in tasks:
            row = metrics[(metrics["optimizer"] == name) & (metrics["task"] == task)]
            ref = lstm.get(task)
            if not len(row) or ref is None:
                cells.append("—")
                continue
            gap = np.asarray(row["final_loss_by_seed"].iloc[0]) / np.asarray(ref)  # per seed, paired
            cells.append(f"{gap.mean():.2f} ± {gap.std():.2f}" if np.all(np.isfinite(gap)) else "—")
        lines.append(f"| {_label(name)} | {'—' if r2 is None else f'{r2:.3f}'} | " + " | ".join(cells) + " |")
    lines.append("")
    return lines


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_loss_curves(records: Sequence, path: str | Path) -> None:
    """One panel per task: training loss vs step, mean ± std over final seeds, per optimizer (log scale)."""
    plt = _plt()
    final = [r for r in records if r.phase == "final"]
    tasks = list(dict.fromkeys(r.task for r in final))
    opts = list(dict.fromkeys(r.optimizer for r in final))
    cols = min(3, max(1, len(tasks)))
    rows = math.ceil(len(tasks) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    colors = {o: plt.cm.tab10(i % 10) for i, o in enumerate(opts)}
    for ax, task in zip(axes.flat, tasks):
        positive = True
        for opt in opts:
            rs = sorted((r for r in final if r.task == task and r.optimizer == opt), key=lambda r: r.seed)
            if not rs:
                continue
            curves = np.stack([np.asarray(r.losses, np.float64) for r in rs])
            mean, std = curves.mean(0), curves.std(0)
            x = np.arange(1, len(mean) + 1)
            lr = rs[0].learning_rate
            ax.plot(x, mean, color=colors[opt], lw=1.2,
                    label=f"{_label(opt)}" + (f" ({lr:g})" if lr is not None else ""))
            ax.fill_between(x, np.maximum(mean - std, 1e-12), mean + std, color=colors[opt], alpha=0.2, lw=0)
            positive &= bool(np.all(mean[np.isfinite(mean)] > 0))
        if positive:
            ax.set_yscale("log")
        ax.set_title(task)
        ax.set_xlabel("step")
        ax.set_ylabel("training loss")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(tasks):]:
        ax.axis("off")
    fig.tight_layout()
    atomic_write_bytes(path, figure_png(fig))


def plot_performance_profile(profile: pd.DataFrame, path: str | Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for opt in [c for c in profile.columns if c != "tau"]:
        ax.step(profile["tau"], profile[opt], where="post", label=_label(opt))
    ax.set_xscale("log")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("τ (ratio to the best final loss)")
    ax.set_ylabel("fraction of tasks ρ(τ)")
    ax.set_title("performance profile (Dolan–Moré)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    atomic_write_bytes(path, figure_png(fig))


def plot_cost(metrics: pd.DataFrame, path: str | Path) -> None:
    """Bars per optimizer: median wall time per step over tasks, and optimizer-state bytes per parameter."""
    plt = _plt()
    agg = metrics.groupby("optimizer", sort=False).agg(ms=("ms_per_step", "median"),
                                                       mem=("state_bytes_per_param", "median"))
    labels = [_label(o) for o in agg.index]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.8))
    a1.bar(labels, agg["ms"], color="tab:blue")
    a1.set_ylabel("ms per step (median over tasks)")
    a2.bar(labels, agg["mem"], color="tab:orange")
    a2.set_ylabel("optimizer state, bytes / parameter")
    for a in (a1, a2):
        a.tick_params(axis="x", rotation=45, labelsize=7)
        for lab in a.get_xticklabels():
            lab.set_horizontalalignment("right")
    fig.tight_layout()
    atomic_write_bytes(path, figure_png(fig))


def build_report(out_dir: str | Path, records: Sequence | None = None, suite_config: dict | None = None) -> Path:
    """Write ``out_dir/report/`` (see the module docstring) from saved runs: ``records`` if given, otherwise the
    runs listed in ``out_dir/index.json``. Returns the report folder."""
    out_dir = Path(out_dir)
    if records is None:
        records, suite_config = load_records(out_dir)
    metrics = task_metrics(records)
    if metrics.empty:
        raise ValueError(f"no final runs to report in {out_dir}")
    profile = performance_profile(metrics)
    with atomic_directory(out_dir / REPORT_DIR) as tmp:
        metrics.to_csv(tmp / "metrics.csv", index=False)
        # the presets' columns are named as users call them: SymbolicRP(), SymbolicRP(learning_rate tuned), …
        profile.rename(columns={k: LABELS[k] for k in (*PRESETS, *TUNED_PRESETS)}).to_csv(tmp / "profile.csv",
                                                                                      index=False)
        (tmp / "results.md").write_text(markdown_table(metrics, profile, suite_config), encoding="utf-8")
        plot_loss_curves(records, tmp / "loss_curves.png")
        plot_performance_profile(profile, tmp / "performance_profile.png")
        plot_cost(metrics, tmp / "cost.png")
    return out_dir / REPORT_DIR


#: The README block that :func:`write_into_readme` replaces.
README_START = "<!-- tfl2o benchmark results: start (generated by `tfl2o benchmark --readme README.md`) -->"
README_END = "<!-- tfl2o benchmark results: end -->"


def write_into_readme(report_dir: str | Path, readme: str | Path, image_prefix: str | None = None) -> Path:
    """Put ``report_dir/results.md`` (and its plots) between :data:`README_START` and :data:`README_END` in
    ``readme``, atomically; the table is never typed by hand. ``image_prefix`` is how the README reaches
    ``report_dir`` (default: its path relative to the README's folder)."""
    report_dir, readme = Path(report_dir), Path(readme)
    text = readme.read_text(encoding="utf-8")
    if text.count(README_START) != 1 or text.count(README_END) != 1 or text.index(README_START) > text.index(
            README_END):
        raise ValueError(f"{readme} needs one '{README_START}' line and one '{README_END}' line after it, where the "
                         f"results go")
    table = (report_dir / "results.md").read_text(encoding="utf-8").strip()
    prefix = image_prefix if image_prefix is not None else os.path.relpath(report_dir, readme.parent)
    images = (f"\n\n![loss curves]({prefix}/loss_curves.png)\n![performance profile]({prefix}/performance_profile.png)"
              f"\n![time and memory]({prefix}/cost.png)")
    head, rest = text.split(README_START)
    _, tail = rest.split(README_END)
    atomic_write_text(readme, f"{head}{README_START}\n{table}{images}\n{README_END}{tail}")
    return readme
