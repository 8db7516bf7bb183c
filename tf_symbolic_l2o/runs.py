"""Read back a finished run directory — ``tfl2o train`` (an LSTM optimizer) or ``tfl2o tune`` (a tuned rule) — as
the optimizers to evaluate."""

from __future__ import annotations

from pathlib import Path

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
