"""``tfl2o tune``: meta-tune a symbolic rule's constants (or the ψ family) by truncated unrolls."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cli.common import (DataDirOption, DepthOption, EpochLenOption, InitOption, InputShapeOption, JitCompileOption,
                        MetaClipNormOption, ModelOption, NoProgressOption, ProgressBar, ResumeOption, RunSeedOption,
                        TaskFamilyOption, UnrollOption, check_positive, drop_none, interruptible, note_ignored,
                        int_list, number_list, parse_clip, parse_jit, print_run, say)

_TUNE_ARTIFACTS = (
    ("config.json", "run configuration (with the starting rule)"),
    ("metrics.csv", "per-epoch metrics and constants"),
    ("checkpoints", "checkpoints (for --resume)"),
    ("tensorboard", "TensorBoard logs"),
    ("rule.json", "the tuned rule"),
    ("summary.json", "run summary"),
)


def _strategy(kind: str, cpu_replicas: int | None):
    from tf_symbolic_l2o.distribute import make_strategy, split_cpu

    if cpu_replicas is not None:
        check_positive(cpu_replicas=cpu_replicas)
        split_cpu(cpu_replicas)
    return make_strategy(kind)


def tune(
    rule: Annotated[Optional[str], typer.Argument(
        help="The rule to tune: a rule.json, a shipped rule (symbolic_rp, symbolic_rp_small, …) or the paper's "
             "ψ family: psi[:FEATURES[:LAGS]], e.g. psi:mt+gt:1. Not needed with --resume.")] = None,
    task: Annotated[Optional[str], typer.Option(
        help="Optimizee: cnn, resnet, mlp or quadratic.", show_default="cnn")] = None,
    dataset: Annotated[Optional[str], typer.Option(
        help="Dataset (see 'tfl2o train --help').", show_default="mnist_subset_32")] = None,
    data_dir: DataDirOption = None,
    depth: DepthOption = None,
    model: ModelOption = None,
    input_shape: InputShapeOption = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Optimizee minibatch size.", show_default="64")] = None,
    init: InitOption = None,
    task_family: TaskFamilyOption = None,
    epochs: Annotated[Optional[int], typer.Option(
        help="Meta-tuning epochs (optimizee runs).", show_default="20")] = None,
    epoch_len: EpochLenOption = None,
    unroll: UnrollOption = None,
    meta_optimizer: Annotated[Optional[str], typer.Option(
        help="Meta-optimizer: adam, or sgd (momentum 0.9, the paper's).", show_default="adam")] = None,
    meta_lr: Annotated[Optional[float], typer.Option(
        help="Meta-optimizer learning rate (the constants are relative to their start: 0.003 ≈ 0.3 % a step).",
        show_default="0.003")] = None,
    second_order: Annotated[Optional[bool], typer.Option(
        "--second-order/--first-order",
        help="Exact meta-gradients through the optimizee's gradients, or the paper's first-order ones (less "
             "memory: it does not grow with the optimizee's activations).", show_default="second-order")] = None,
    meta_clip_norm: MetaClipNormOption = None,
    seed: RunSeedOption = None,
    jit_compile: JitCompileOption = None,
    val_every: Annotated[Optional[int], typer.Option(
        help="Validate every N epochs (0 = never; then the last constants are kept).", show_default="2")] = None,
    val_runs: Annotated[Optional[int], typer.Option(help="Optimizee runs per validation.", show_default="4")] = None,
    strategy: Annotated[str, typer.Option(
        help="tf.distribute strategy: default (one device), mirrored (all local GPUs, else all logical CPUs), "
             "multiworker (hosts from TF_CONFIG) or auto.")] = "default",
    cpu_replicas: Annotated[Optional[int], typer.Option(
        help="Split the CPU into N logical devices (with --strategy mirrored on a machine without GPUs).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-d", help="Run directory.",
                                                show_default="runs/tune")] = None,
    resume: ResumeOption = False,
    no_progress: NoProgressOption = False,
) -> None:
    """Meta-tune a symbolic rule's constants by truncated unrolls on a CNN or ResNet; writes the tuned rule."""
    from tf_symbolic_l2o.distribute import is_chief, worker_dir
    from tf_symbolic_l2o.meta.trainer import ignored_on_resume
    from tf_symbolic_l2o.tune import MetaTuner, tune_config

    options = drop_none({
        "epochs": epochs, "epoch_len": epoch_len, "unroll": unroll, "meta_optimizer": meta_optimizer,
        "meta_lr": meta_lr, "second_order": second_order, "seed": seed, "val_every": val_every, "val_runs": val_runs,
        "jit_compile": None if jit_compile is None else parse_jit(jit_compile)})
    if meta_clip_norm is not None:
        options["meta_clip_norm"] = parse_clip(meta_clip_norm)
    task_options = dict(task=task, dataset=dataset, data_dir=data_dir, depth=depth, batch_size=batch_size, init=init,
                        model=model, input_shape=int_list(input_shape, "--input-shape"), family=task_family)
    if resume:
        note_ignored(ignored_on_resume({**options, **task_options, "RULE": rule}))
    run_dir, dist = out or Path("runs") / "tune", _strategy(strategy, cpu_replicas)
    chief = is_chief(dist)  # under multiworker, only the chief prints
    with ProgressBar(chief and not no_progress, "meta-tune") as progress:
        config = None if resume else tune_config(rule, **task_options, **options)
        tuner = MetaTuner(config, worker_dir(run_dir, dist, create=False), resume=resume, progress=progress,
                          log=say if chief else None, epochs=options.get("epochs") if resume else None, strategy=dist)
        summary = interruptible(tuner.run, f"tfl2o tune --resume --out {run_dir}")
    if chief:
        summary["constants"] = ", ".join(f"{k}={v:.6g}" for k, v in summary.get("constants", {}).items())
        print_run("meta-tuning", summary, run_dir, _TUNE_ARTIFACTS)
        say(f"next: tfl2o evaluate {run_dir}   (tuned vs untuned rule vs tuned baselines on held-out runs)")


_GAIN_ARTIFACTS = (
    ("ratios.csv", "final loss ÷ tuned Adam's, per candidate and family member"),
    ("scores.csv", "family score (weighted geometric mean of the ratios) per candidate, best first; -1: no gain"),
    ("rule.json", "the rule with the winning step gain"),
    ("summary.json", "run summary"),
)


def tune_gain(
    rule: Annotated[str, typer.Argument(help="The rule: a rule.json or a shipped rule (symbolic_rp_ema_family, …).")],
    task_family: Annotated[str, typer.Option(
        "--task-family", help="The family to choose on: a name (default, small) or a JSON file.")] = "default",
    candidates: Annotated[Optional[str], typer.Option(
        help="Candidates UP/DOWN or UP/DOWN/START, comma-separated, e.g. 1.05/0.95,1.05/0.93/0.3 (START scales "
             "the rule's step).", show_default="1.05/0.95,1.05/0.94,1.05/0.93")] = None,
    low: Annotated[Optional[str], typer.Option(
        help="The gain's lower bound(s), relative to the native step; a comma list multiplies the candidates.",
        show_default="0.01,0.0001")] = None,
    high: Annotated[float, typer.Option(help="The gain's upper bound, relative to the native step.")] = 30.0,
    horizons: Annotated[str, typer.Option(
        help="Steps of the runs, comma-separated; 'max' is each member's longest horizon.")] = "200,max",
    ratio_floor: Annotated[float, typer.Option(
        help="Floor of a member's ratio to tuned Adam in the score (0.1: 10× better counts as 10×).")] = 0.1,
    seeds: Annotated[str, typer.Option(help="Selection seeds, comma-separated.")] = "1000,1001",
    reuse_adam: Annotated[Optional[Path], typer.Option(
        help="An earlier run's ratios.csv (same family, horizons and seeds): reuse its tuned Adam losses.")] = None,
    reference: Annotated[bool, typer.Option(
        "--reference/--no-reference", help="Also score the rule without a gain (candidate -1), never chosen.")] = True,
    size_power: Annotated[float, typer.Option(
        help="Exponent of the written rule's size scale: on a model of n > N parameters (N: the family's largest "
             "member) the step shrinks by (N/n)^power; 0: no size scale.")] = 0.5,
    out: Annotated[Path, typer.Option("--out", "-d", help="Output directory.")] = Path("runs/tune_gain"),
) -> None:
    """Choose a rule's per-coordinate step gain by a grid search on a task family (final loss ÷ tuned Adam's)."""
    from tf_symbolic_l2o.tune.gain import DEFAULT_CANDIDATES, DEFAULT_LOWS, load_adam_losses, parse_candidates, \
        parse_horizons, run_gain_selection

    lows = DEFAULT_LOWS if low is None else number_list(low, "--low", float)
    grid = parse_candidates(candidates or DEFAULT_CANDIDATES, lows, high)
    adam = None if reuse_adam is None else load_adam_losses(reuse_adam)
    summary = run_gain_selection(rule, task_family, out, grid, parse_horizons(horizons), int_list(seeds, "--seeds"),
                                 ratio_floor, adam, log=say, reference=reference, size_power=size_power)
    summary["best"] = ", ".join(f"{k}={v:g}" for k, v in summary["best"].items())
    print_run("step-gain selection", summary, out, _GAIN_ARTIFACTS)
