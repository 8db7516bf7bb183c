"""``tfl2o train`` and ``tfl2o evaluate``: meta-train a learned optimizer; evaluate a run against tuned baselines."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from cli.common import (DataDirOption, DepthOption, EpochLenOption, InitOption, InputShapeOption, JitCompileOption,
                        MetaClipNormOption, ModelOption, NoProgressOption, ProgressBar, ResumeOption, RunSeedOption,
                        TaskFamilyOption, UnrollOption, check_positive, console, drop_none, fmt, int_list,
                        interruptible, note_ignored,
                        number_list, parse_clip, parse_jit, print_run, say, split_list)

_TRAIN_ARTIFACTS = (
    ("config.json", "run configuration"),
    ("metrics.csv", "per-epoch metrics"),
    ("checkpoints", "checkpoints (for --resume)"),
    ("tensorboard", "TensorBoard logs"),
    ("l2o", "trained optimizer (l2o.json, weights, saved_model/)"),
    ("summary.json", "run summary"),
)


def train(
    optimizer: Annotated[Optional[str], typer.Option(
        "--optimizer", "-o", help="Learned optimizer: dm, rp, rp_s or rp_si.", show_default="rp")] = None,
    task: Annotated[Optional[str], typer.Option(
        help="Optimizee: mlp, cnn, resnet or quadratic.", show_default="mlp")] = None,
    dataset: Annotated[Optional[str], typer.Option(
        help="Dataset (mnist_subset, mnist_subset_32, digits, synthetic_mnist, synthetic_cifar, or TFDS mnist, "
             "fashion_mnist, cifar10).", show_default="the task's, e.g. mnist_subset for mlp")] = None,
    data_dir: DataDirOption = None,
    hidden: Annotated[Optional[str], typer.Option(help="MLP hidden widths, e.g. '30,20'.")] = None,
    activation: Annotated[Optional[str], typer.Option(help="MLP activation, e.g. relu, sigmoid, tanh.")] = None,
    depth: DepthOption = None,
    model: ModelOption = None,
    input_shape: InputShapeOption = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Optimizee minibatch size.", show_default="128")] = None,
    init: InitOption = None,
    task_family: TaskFamilyOption = None,
    features: Annotated[Optional[str], typer.Option(
        help="Override the L2O's input features, e.g. 'mt+gt' or 'mt+g+mom5'.")] = None,
    epochs: Annotated[Optional[int], typer.Option(
        help="Meta-training epochs (optimizee runs).", show_default="50")] = None,
    epoch_len: EpochLenOption = None,
    unroll: UnrollOption = None,
    meta_lr: Annotated[Optional[float], typer.Option(
        help="Meta-optimizer (Adam) learning rate.", show_default="1e-3")] = None,
    meta_clip_norm: MetaClipNormOption = None,
    seed: RunSeedOption = None,
    curriculum: Annotated[Optional[str], typer.Option(
        help="Increasing horizons, e.g. '100,200,500' (replaces --epoch-len).")] = None,
    imitation_prob: Annotated[Optional[float], typer.Option(
        help="Probability that an epoch imitates Adam(0.01).", show_default="0")] = None,
    random_scale: Annotated[Optional[float], typer.Option(
        help="Bound b of the random objective scaling exp(U(-b, b)) (0 = off).", show_default="0")] = None,
    jit_compile: JitCompileOption = None,
    checkpoint_every: Annotated[Optional[int], typer.Option(
        help="Checkpoint every N epochs.", show_default="1")] = None,
    val_every: Annotated[Optional[int], typer.Option(
        help="Validate every N epochs (0 = never).", show_default="5")] = None,
    val_runs: Annotated[Optional[int], typer.Option(help="Optimizee runs per validation.", show_default="2")] = None,
    init_from: Annotated[Optional[Path], typer.Option(
        help="Start from the weights of a saved learned optimizer of the same architecture (a run directory or "
             "saved_models/<name>_mnist_mlp), e.g. to re-train a plain network as an odd one.")] = None,
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-d", help="Run directory.", show_default="runs/<optimizer>")] = None,
    resume: ResumeOption = False,
    no_progress: NoProgressOption = False,
) -> None:
    """Meta-train a learned optimizer into a run directory (config, metrics, checkpoints, TensorBoard, l2o/)."""
    from tf_symbolic_l2o.meta.trainer import MetaTrainer, TrainConfig, ignored_on_resume
    from tf_symbolic_l2o.tasks.registry import task_spec

    options = drop_none({
        "optimizer": optimizer, "epochs": epochs, "epoch_len": epoch_len, "unroll": unroll, "meta_lr": meta_lr,
        "seed": seed, "imitation_prob": imitation_prob, "random_scale": random_scale, "val_runs": val_runs,
        "checkpoint_every": checkpoint_every, "val_every": val_every,
        "curriculum": int_list(curriculum, "--curriculum"),
        "jit_compile": None if jit_compile is None else parse_jit(jit_compile),
        "init_from": None if init_from is None else str(init_from.resolve()),
        "l2o": None if features is None else {"features": features},
        "task": task_spec(task, dataset=dataset, data_dir=data_dir, hidden=int_list(hidden, "--hidden"), depth=depth,
                          activation=activation, batch_size=batch_size, init=init, model=model,
                          input_shape=int_list(input_shape, "--input-shape"), family=task_family)})
    if meta_clip_norm is not None:
        options["meta_clip_norm"] = parse_clip(meta_clip_norm)
    run_dir = out or Path("runs") / (optimizer or TrainConfig.optimizer)
    if resume:
        note_ignored(ignored_on_resume(options, kept=("epochs",) if out else ("epochs", "optimizer")))
    with ProgressBar(not no_progress, "meta-train") as progress:
        trainer = MetaTrainer(None if resume else TrainConfig(**options), run_dir, resume=resume, progress=progress,
                              log=say, epochs=options.get("epochs") if resume else None)
        summary = interruptible(trainer.run, f"tfl2o train --resume --out {run_dir}")
    print_run(f"meta-training of {trainer.config.optimizer}", summary, run_dir, _TRAIN_ARTIFACTS)
    say(f"next: tfl2o evaluate {run_dir}")


def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by 'tfl2o train' or 'tfl2o tune'.")],
    runs: Annotated[int, typer.Option(help="Evaluation runs per optimizer.")] = 5,
    steps: Annotated[Optional[int], typer.Option(
        help="Steps per run.", show_default="the run's training horizon (last curriculum horizon)")] = None,
    baselines: Annotated[str, typer.Option(
        help="Comma-separated tuned baselines (adam, rmsprop, momentum, …); '' for none.")] = "adam,rmsprop,momentum",
    lr_grid: Annotated[Optional[str], typer.Option(
        help="Comma-separated learning rates tried for each baseline.", show_default="1e-4,3e-4,…,1e-1")] = None,
    tune_runs: Annotated[int, typer.Option(help="Runs per grid point when tuning the baselines.")] = 2,
    seed: Annotated[int, typer.Option(help="Base seed of the evaluation runs.")] = 0,
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-d", help="Report directory.", show_default="RUN_DIR/eval")] = None,
    rule: Annotated[Optional[list[Path]], typer.Option(
        "--rule", help="A symbolic rule (rule.json from 'tfl2o distill') to run closed-loop beside the L2O, "
                       "from the same initialisations and minibatches; repeatable.")] = None,
) -> None:
    """Evaluate a trained run's optimizer (and symbolic rules) against learning-rate-tuned baselines on
    held-out runs."""
    check_positive(runs=runs, steps=steps, tune_runs=tune_runs)
    from tf_symbolic_l2o.runs import evaluate_run, verdict_lines

    evaluation = evaluate_run(run_dir, rules=rule or (), runs=runs, steps=steps, baselines=split_list(baselines),
                              lr_grid=None if lr_grid is None else number_list(lr_grid, "--lr-grid"),
                              tune_runs=tune_runs, seed=seed, out=out, log=say)
    _print_eval_table(evaluation)
    for line in verdict_lines(evaluation):
        say(line, style="bold")
    say(f"report written to {evaluation.out} (summary.csv, summary.md, curves.csv, final.csv, tuning.csv, "
        "loss_curves.png)")


def _print_eval_table(evaluation) -> None:
    table = Table(title="evaluation: mean ± std over runs; final loss = mean of the last 10 % of steps")
    for name in ("optimizer", "learning rate", "final loss", "test accuracy", "diverged"):
        table.add_column(name, justify="left" if name == "optimizer" else "right")
    for result, (_, row) in zip(evaluation.results, evaluation.summary.iterrows()):
        acc = "—" if math.isnan(row.test_accuracy_mean) else \
            f"{100 * row.test_accuracy_mean:.2f} % ± {100 * row.test_accuracy_std:.2f}"
        table.add_row(str(row.optimizer), fmt(result.learning_rate),
                      f"{row.final_loss_mean:.4g} ± {row.final_loss_std:.2g}", acc,
                      f"{int(row.diverged_runs)}/{int(row.runs)}")
    console().print(table)
