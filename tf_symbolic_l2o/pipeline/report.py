"""The pipeline's ``report`` stage: ``report.md`` and ``meta_training.png`` from the other stages' outputs."""

from __future__ import annotations

import math
from pathlib import Path

from tf_symbolic_l2o.io import atomic_write_bytes, atomic_write_text, figure_png
from tf_symbolic_l2o.pipeline.fit_check import FIT_BATCH


def write_report(ctx, figures: dict[str, dict], seconds: dict[str, float]) -> dict:
    atomic_write_bytes(ctx.path("meta_training.png"), _meta_training_png(ctx.path("train", "metrics.csv")))
    atomic_write_text(ctx.path("report.md"), _report_markdown(ctx, figures, seconds))
    ctx.log(f"report: {ctx.path('report.md')}")
    return {"report": "report.md"}


def _meta_training_png(metrics_csv: Path) -> bytes:
    import matplotlib
    import pandas as pd

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = pd.read_csv(metrics_csv)
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    ax.plot(m.epoch, m.final_loss, ".-", label="final optimizee loss of the epoch", color="tab:red", alpha=0.7)
    ax.plot(m.epoch, m.meta_loss, ".-", label="meta-loss (mean over the unrolls)", color="tab:gray", alpha=0.7)
    val = m.dropna(subset=["val_loss"])
    if len(val):
        ax.plot(val.epoch, val.val_loss, "o-", label="validation loss", color="tab:blue")
    ax.set(xlabel="meta-training epoch", ylabel="loss", yscale="log", title="meta-training")
    ax.legend()
    fig.tight_layout()
    return figure_png(fig)


def _f(value, digits: int = 4) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}g}"


def _report_markdown(ctx, figures: dict[str, dict], seconds: dict[str, float]) -> str:
    import pandas as pd

    from tf_symbolic_l2o.rules.rule import Rule

    c, tc = ctx.config, ctx.train_config
    ev, dist, fit = figures["evaluate"], figures["distill"], figures["fit"]
    rule = Rule.load(ctx.path("distill", "rule.json"))
    shown = rule.with_constants([float(f"{v:.4g}") for v in rule.constants])  # for display only
    task = tc.task
    lines = [f"# tfl2o pipeline: {c.optimizer} on {task.get('name')} / {task.get('dataset', '—')}", "",
             f"Configuration: size `{c.size}`, {tc.epochs} meta-training epochs × {tc.horizons[-1]} steps (unroll "
             f"{tc.unroll}, meta-lr {tc.meta_lr:g}), {c.samples} recorded rows with {c.memlen} lags, "
             f"`{c.backend}` distillation, {c.eval_runs} evaluation runs, {c.fit_epochs} epoch(s) × {c.fit_seeds} "
             f"seed(s) of `model.fit`; seed {c.seed}.", "",
             "## Headline", "",
             f"- The learned optimizer ({ev['lstm']}) reaches a final loss of {_f(ev['lstm_final_loss'])} against "
             f"{_f(ev['best_baseline_final_loss'])} for the best tuned baseline ({ev['best_baseline']}): ratio "
             f"**{_f(ev['lstm_vs_best_baseline'], 3)}** (below 1: the learned optimizer wins).",
             f"- The distilled rule explains the LSTM's behaviour with test R² **{dist['r2_test']:.4f}** "
             f"(train {dist['r2_train']:.4f}); run closed-loop in its teacher's place, its final loss is "
             f"**{_f(ev['closed_loop_ratio'], 3)}×** the LSTM's ({_f(ev['rule_vs_best_baseline'], 3)}× the best "
             f"tuned baseline's).",
             f"- As a Keras optimizer (`model.fit`, {fit['model']}, {fit['epochs']} epoch(s)): training loss "
             f"{fit['rule_train_loss_mean']:.4f} ± {fit['rule_train_loss_std']:.2g} against `Adam()`'s "
             f"{fit['Adam()_train_loss_mean']:.4f} ± {fit['Adam()_train_loss_std']:.2g}; test accuracy "
             f"{100 * fit['rule_test_accuracy_mean']:.2f} % against {100 * fit['Adam()_test_accuracy_mean']:.2f} %.",
             "",
             "One meta-training seed is one draw: meta-training is chaotic, and on other hardware float rounding "
             "changes the learned optimizer from the first epoch, so these figures vary across machines (re-running "
             "or resuming on the same machine reproduces them bit for bit). Run several `--seed`s for a "
             "distribution.", "",
             "## Meta-training", "", "![meta-training](meta_training.png)", "",
             "## The distilled rule", "",
             f"`{shown.infix}`", "", f"$$\\Delta\\theta = {shown.latex()}$$", "",
             "Constants to 4 significant digits here; `distill/rule.json` holds them exactly.", "",
             f"Features: `{', '.join(rule.feature_names)}` × {rule.memlen} lags; complexity {dist['complexity']}; "
             f"test R² {dist['r2_test']:.4f}."]
    invariants = rule.metadata.get("invariants", {})
    if invariants:
        lines += ["", "| invariant | holds | detail |", "|---|---|---|"]
        lines += [f"| {name} | {'yes' if inv['passed'] else '**no**'} | {inv['detail']} |"
                  for name, inv in invariants.items()]
    teacher = rule.metadata.get("teacher")
    if teacher:
        lines += ["", "The teacher's own soundness (its raw output; a bias at rest is reported here, not copied into "
                  "the rule): " + ", ".join(f"{k} {_f(v, 3)}" for k, v in teacher.items()) + "."]
    lines += ["", "![Pareto front](distill/pareto.png)", "",
              "## Closed-loop evaluation (held-out split)", ""]
    summary = pd.read_csv(ctx.path("evaluate", "summary.csv"))
    lines += ["| optimizer | final loss | test accuracy | diverged |", "|---|---|---|---|"]
    for _, r in summary.iterrows():
        acc = "—" if math.isnan(r.test_accuracy_mean) else \
            f"{100 * r.test_accuracy_mean:.2f} % ± {100 * r.test_accuracy_std:.2f}"
        lines.append(f"| {r.optimizer} | {r.final_loss_mean:.4g} ± {r.final_loss_std:.2g} | {acc} | "
                     f"{int(r.diverged_runs)}/{int(r.runs)} |")
    lines += ["", "Baselines' learning rates are tuned on the meta-training split; the runs above use the held-out "
                  "split. Final loss: mean of the last 10 % of steps; mean ± std over runs.", "",
              "![evaluation](evaluate/loss_curves.png)", "",
              "## `model.fit` with the rule", "",
              f"{fit['model']} on `{fit['dataset']}`, batch {FIT_BATCH}, {fit['epochs']} epoch(s), "
              f"{fit['seeds']} seed(s). `fit/model.keras` (trained with the rule) loads back with `safe_mode=True` "
              f"to the same outputs (largest difference {fit['reload_max_abs_diff']:.2g}).", "",
              "| optimizer | training loss | test loss | test accuracy |", "|---|---|---|---|"]
    for name in ("rule", "Adam()"):
        lines.append(f"| {name} | {fit[f'{name}_train_loss_mean']:.4f} ± {fit[f'{name}_train_loss_std']:.2g} | "
                     f"{fit[f'{name}_test_loss_mean']:.4f} ± {fit[f'{name}_test_loss_std']:.2g} | "
                     f"{100 * fit[f'{name}_test_accuracy_mean']:.2f} % ± "
                     f"{100 * fit[f'{name}_test_accuracy_std']:.2f} |")
    lines += ["", "![model.fit](fit/fit_curves.png)", "",
              "## Use it", "", "```python",
              "from tf_symbolic_l2o.optimizers import SymbolicOptimizer",
              f"model.compile(optimizer=SymbolicOptimizer(\"{ctx.path('distill', 'rule.json')}\"), loss=...)",
              "```", "",
              f"SavedModels: `{ctx.path('export', 'rule')}` (signatures `init_state`, `update`: the rule for any "
              f"TensorFlow runtime) and `{ctx.path('export', 'model')}` (`serving_default`: the fitted model).", "",
              "## Stages", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {stage} | {value:.1f} |" for stage, value in seconds.items()]
    return "\n".join(lines) + "\n"


