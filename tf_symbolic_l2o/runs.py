"""A finished run directory — ``tfl2o train`` (an LSTM optimizer) or ``tfl2o tune`` (a tuned rule): read back as the
optimizers to evaluate (:func:`load_run`), evaluated with symbolic rules beside it against tuned baselines
(:func:`evaluate_run`), and the evaluation's verdict (:func:`verdict_lines`)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Callable, Sequence

from tf_symbolic_l2o.io import read_json


def load_run(run_dir: str | Path):
    """``(config, label, optimizers)`` of a run directory.

    * a meta-training run: its :class:`~tf_symbolic_l2o.meta.trainer.TrainConfig`, the optimizer's name and
      ``{name: the trained L2O}``;
    * a meta-tuning run: its :class:`~tf_symbolic_l2o.tune.tuner.TuneConfig`, ``"tuned"`` and
      ``{"tuned": the tuned rule, "untuned": the starting rule}`` (both as
      :class:`~tf_symbolic_l2o.rules.coordinate.RuleOptimizer`), so an evaluation shows what tuning bought.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"no run directory {run_dir}")
    if not (run_dir / "config.json").is_file():
        raise FileNotFoundError(f"{run_dir} holds no trained optimizer or tuned rule (config.json missing); give a "
                                f"directory written by 'tfl2o train' or 'tfl2o tune'")
    raw = read_json(run_dir / "config.json", "run config")
    if not isinstance(raw, dict):
        raise ValueError(f"{run_dir / 'config.json'} is not a run config (expected a JSON object)")
    if "rule" in raw:
        from tf_symbolic_l2o.rules.coordinate import RuleOptimizer
        from tf_symbolic_l2o.tune.tuner import TuneConfig, load_tuned_rule

        config = TuneConfig.from_dict(raw)
        tuned = load_tuned_rule(run_dir)
        return config, "tuned", {"tuned": RuleOptimizer(tuned, name="tuned"),
                                 "untuned": RuleOptimizer(config.start_rule, name="untuned")}
    from tf_symbolic_l2o.learned.io import load_l2o
    from tf_symbolic_l2o.meta.trainer import TrainConfig

    config = TrainConfig.from_dict(raw)
    if not (run_dir / "l2o").is_dir() and not (run_dir / "l2o.json").is_file():
        raise FileNotFoundError(f"{run_dir} holds no trained optimizer (l2o/ missing); finish the run with: "
                                f"tfl2o train --resume --out {run_dir}")
    return config, config.optimizer, {config.optimizer: load_l2o(run_dir)}


def rule_label(path: str | Path) -> str:
    """``rule:<name>`` for a rule file: its folder's name for ``…/rule.json``, else the file's stem."""
    path = Path(path)
    return f"rule:{path.parent.name if path.name == 'rule.json' else path.stem}"


@dataclasses.dataclass
class RunEvaluation:
    """What :func:`evaluate_run` measured: the run's label, every optimizer's :class:`RunResult`, the summary table
    (one row per optimizer), the report folder, the names of the untuned (learned, tuned or rule) optimizers."""

    label: str
    results: list
    summary: Any
    out: Path
    learned: set[str]
    steps: int


def evaluate_run(run_dir: str | Path, rules: Sequence[str | Path] = (), runs: int = 5, steps: int | None = None,
                 baselines: Sequence[str] | None = None, lr_grid: Sequence[float] | None = None, tune_runs: int = 2,
                 seed: int = 0, out: str | Path | None = None, log: Callable[[str], None] | None = None
                 ) -> RunEvaluation:
    """Evaluate a run's optimizer(s) — and symbolic ``rules`` closed-loop beside them, from the same
    initialisations and minibatches — against learning-rate-tuned ``baselines`` on held-out runs, and write the
    report (``out``, default ``RUN_DIR/eval``). ``steps`` defaults to the run's last training horizon."""
    from tf_symbolic_l2o.meta.evaluate import DEFAULT_BASELINES, DEFAULT_LR_GRID, evaluate_optimizers, write_report
    from tf_symbolic_l2o.rules.coordinate import RuleOptimizer
    from tf_symbolic_l2o.rules.rule import Rule
    from tf_symbolic_l2o.tasks.family import primary_task
    from tf_symbolic_l2o.tasks.registry import make_task

    log = log or (lambda msg: None)
    config, label, learned = load_run(run_dir)
    for path in rules:
        name = rule_label(path)
        learned[name] = RuleOptimizer(Rule.load(path), name=name)
    steps = steps or config.horizons[-1]
    out = Path(out) if out is not None else Path(run_dir) / "eval"
    baselines = DEFAULT_BASELINES if baselines is None else tuple(baselines)
    task = primary_task(config.task)  # a task family's runs are evaluated on its first member
    log(f"evaluating {label} from {run_dir} on {task['name']}{' / ' + task['dataset'] if 'dataset' in task else ''}: "
        f"{runs} runs × {steps} steps, baselines {', '.join(baselines) or 'none'}")
    results, tuning = evaluate_optimizers(learned, make_task(task, split="meta_train"), make_task(task, split="eval"),
                                          steps, n_runs=runs, baselines=baselines,
                                          lr_grid=DEFAULT_LR_GRID if lr_grid is None else lr_grid,
                                          tune_runs=tune_runs, seed=seed, log=log)
    summary = write_report(results, tuning, out, title=f"{label} vs tuned baselines ({task['name']}, {steps} steps)")
    return RunEvaluation(label, results, summary, out, set(learned), steps)


def best_baseline(final: dict[str, float], learned) -> tuple[str | None, float | None]:
    """``(name, final loss)`` of the best tuned baseline among ``final`` (``{optimizer: final loss}``), the
    optimizers not in ``learned`` that did not diverge; ``(None, None)`` if there is none."""
    finite = {k: v for k, v in final.items() if k not in learned and math.isfinite(v) and v > 0}
    if not finite:
        return None, None
    best = min(finite, key=finite.get)
    return best, finite[best]


def verdict_lines(evaluation: RunEvaluation) -> list[str]:
    """The evaluation's verdict: each rule's final loss over its LSTM teacher's (closed loop), then the run's
    optimizer's final loss over the best tuned baseline's."""
    summary, label = evaluation.summary, evaluation.label
    final = dict(zip(summary["optimizer"], summary["final_loss_mean"]))
    mine = final.get(label)
    lines = [f"{name} / {label} final loss: {final[name] / mine:.3f}"
             for name in sorted(evaluation.learned - {label}) if name in final and mine is not None and mine > 0]
    others = {k: v for k, v in final.items() if k not in evaluation.learned}
    if mine is None or not others:
        return lines
    best, value = best_baseline(final, evaluation.learned)
    if best is None:
        return lines + [f"{label} / best baseline final loss: n/a (every baseline diverged)"]
    ratio = mine / value
    return lines + [f"{label} / best baseline ({best}) final loss: {ratio:.3f}  "
                    f"({label} reaches a {'lower' if ratio < 1 else 'higher'} loss)"]
