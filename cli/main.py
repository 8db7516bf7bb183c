"""The ``tfl2o`` command line: a thin layer that parses options, calls :mod:`tf_symbolic_l2o` and prints results.

Commands::

    tfl2o train     meta-train a learned optimizer into a run directory (or --resume one)
    tfl2o evaluate  compare a trained run's optimizer (and symbolic rules) with learning-rate-tuned baselines
    tfl2o tune      meta-tune a symbolic rule's constants (or the ψ family) on a CNN or ResNet
    tfl2o benchmark tuned baselines vs the shipped learned and symbolic optimizers on a task suite
    tfl2o record    record an optimizer's behaviour as a symbolic-regression dataset (.npy + manifest)
    tfl2o distill   distill a behaviour dataset into a symbolic rule (gplearn; operon optional)
    tfl2o show      print a rule (formula, LaTeX, features, R²)
    tfl2o export    export a rule or a trained Keras model as a SavedModel

TensorFlow and the library are imported inside the commands, so ``tfl2o --help`` stays instant.

Adding a command: write a function decorated with ``@app.command()`` and then ``@cli_errors`` (in that order, the
decorator closest to the function), import what it needs from the library inside the function (never at module
level), and raise ``ValueError`` / ``FileNotFoundError`` / … for user errors: ``cli_errors`` turns them into one
``error: …`` line on stderr and exit code 2.
"""

from __future__ import annotations

import functools
import math
import sys
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

app = typer.Typer(
    name="tfl2o",
    help="Learned optimizers (DM, RNNprop) on TensorFlow 2 / Keras 3: meta-train and evaluate them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

err_console = Console(stderr=True)

# Options that several commands share, word for word (typer reads the help and defaults from these).
DataDirOption = Annotated[Optional[Path], typer.Option(help="TFDS data directory (prepared datasets).")]
DepthOption = Annotated[Optional[int], typer.Option(help="ResNet depth (8/20/32/44/56 or 18).")]
InitOption = Annotated[Optional[str], typer.Option(help="Optimizee initialisation: paper or keras.")]
EpochLenOption = Annotated[Optional[int], typer.Option(
    help="Steps per epoch (training horizon).", show_default="200")]
UnrollOption = Annotated[Optional[int], typer.Option(help="Truncation length of the unrolls.", show_default="20")]
MetaClipNormOption = Annotated[Optional[str], typer.Option(
    help="Clip meta-gradients to this global norm, or 'none'.", show_default="1.0")]
RunSeedOption = Annotated[Optional[int], typer.Option(help="Base seed of every random draw.", show_default="0")]
JitCompileOption = Annotated[Optional[str], typer.Option(
    help="XLA: auto (on GPU only), true or false.", show_default="auto")]
ResumeOption = Annotated[bool, typer.Option(
    "--resume", help="Continue the run in --out from its latest checkpoint (its saved config wins; "
                    "--epochs may extend it).")]
NoProgressOption = Annotated[bool, typer.Option("--no-progress", help="Hide the progress bar.")]

#: Exit code of every expected (user-facing) error.
ERROR_EXIT_CODE = 2

# Exception types that are user errors rather than bugs; library-specific ones are added in ``_expected_errors``.
_BUILTIN_EXPECTED = (ValueError, KeyError, FileNotFoundError, FileExistsError, NotADirectoryError,
                     IsADirectoryError, PermissionError)
# (module, class) of library exceptions that are user errors. They are looked up in ``sys.modules`` only: if the
# module was never imported, the exception cannot have been raised, and importing it here would load TensorFlow.
_LIBRARY_EXPECTED = (
    ("tf_symbolic_l2o.meta.trainer", "CheckpointError"),
    ("tf_symbolic_l2o.data", "DatasetUnavailableError"),
)


# ----------------------------------------------------------------------------------------------------------------
# shared helpers
# ----------------------------------------------------------------------------------------------------------------


def _console() -> Console:
    """rich's global console: the one the library's progress bars use, so log lines and bars do not collide."""
    import rich

    return rich.get_console()


def _print(msg: Any = "", **kwargs) -> None:
    _console().print(msg, **{"soft_wrap": True, "markup": False, "highlight": False, **kwargs})


def _expected_errors() -> tuple[type[BaseException], ...]:
    types = list(_BUILTIN_EXPECTED)
    for module, name in _LIBRARY_EXPECTED:
        cls = getattr(sys.modules.get(module), name, None)
        if cls is not None:
            types.append(cls)
    return tuple(types)


def _one_line(err: BaseException) -> str:
    if isinstance(err, KeyError):
        return f"missing entry {err.args[0]!r}" if err.args else "missing entry"
    text = " ".join(str(err).split())
    return text or type(err).__name__


def fail(message: str, code: int = ERROR_EXIT_CODE) -> typer.Exit:
    """Print ``error: message`` (one red line on stderr); returns the ``typer.Exit`` to raise."""
    err_console.print(Text.assemble(("error: ", "bold red"), (message, "red")), soft_wrap=True, highlight=False)
    return typer.Exit(code=code)


def cli_errors(fn: Callable) -> Callable:
    """Turn expected errors into one ``error: …`` line on stderr and exit code 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except Exception as err:  # noqa: BLE001 - filtered right below
            if isinstance(err, _expected_errors()):
                raise fail(_one_line(err)) from None
            raise

    return wrapper


def _split(text: str | None) -> list[str]:
    """``"a, b,,c"`` → ``["a", "b", "c"]``."""
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def _number_list(text: str, option: str, kind=float) -> list:
    """``"1,2,3"`` → numbers of type ``kind`` (``int`` or ``float``), or a one-line error naming ``option``."""
    try:
        values = [kind(v) for v in _split(text)]
    except ValueError:
        what = "integers" if kind is int else "numbers"
        raise ValueError(f"{option} takes comma-separated {what}, got {text!r}") from None
    if not values:
        raise ValueError(f"{option} needs at least one value")
    return values


def _positive(**values: int | None) -> None:
    """Check CLI counts the library does not validate up front (``None`` = not given)."""
    for name, value in values.items():
        if value is not None and value <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {value}")


def _parse_jit(text: str) -> str | bool:
    key = text.strip().lower()
    if key == "auto":
        return "auto"
    if key in ("true", "1", "yes", "on"):
        return True
    if key in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"--jit-compile takes auto, true or false, got {text!r}")


def _parse_clip(text: str) -> float | None:
    if text.strip().lower() in ("none", "off"):
        return None
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"--meta-clip-norm takes a positive number or 'none', got {text!r}") from None


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "—" if math.isnan(value) else f"{value:.6g}"
    if value is None:
        return "—"
    return str(value)


def _print_run(title: str, summary: dict, run_dir: Path, artifacts) -> None:
    """A finished run: its summary as a two-column table, then the files it wrote."""
    table = Table(title=title, show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    for key, value in summary.items():
        table.add_row(key.replace("_", " "), _fmt(value))
    _console().print(table)
    _print("written:")
    for name, what in artifacts:
        if (run_dir / name).exists():
            _print(f"  {run_dir / name}  ({what})")


def _version_callback(value: bool) -> None:
    if not value:
        return
    try:
        from importlib.metadata import version

        v = version("tf-symbolic-l2o")
    except Exception:  # noqa: BLE001 - not installed: ask the package itself (slower, imports TensorFlow)
        from tf_symbolic_l2o import __version__ as v
    typer.echo(f"tfl2o {v}")
    raise typer.Exit()


@app.callback()
def main(
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version_callback, is_eager=True,
                                                    help="Print the version and exit.")] = None,
) -> None:
    """Learned optimizers (DM, RNNprop) on TensorFlow 2 / Keras 3: meta-train and evaluate them."""


# ----------------------------------------------------------------------------------------------------------------
# train
# ----------------------------------------------------------------------------------------------------------------

_TRAIN_ARTIFACTS = (
    ("config.json", "run configuration"),
    ("metrics.csv", "per-epoch metrics"),
    ("checkpoints", "checkpoints (for --resume)"),
    ("tensorboard", "TensorBoard logs"),
    ("l2o", "trained optimizer (l2o.json, weights, saved_model/)"),
    ("summary.json", "run summary"),
)


@app.command()
@cli_errors
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
    batch_size: Annotated[Optional[int], typer.Option(help="Optimizee minibatch size.", show_default="128")] = None,
    init: InitOption = None,
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
    task_options = {"dataset": dataset, "data_dir": None if data_dir is None else str(data_dir),
                    "hidden": None if hidden is None else _number_list(hidden, "--hidden", int),
                    "activation": activation, "depth": depth, "batch_size": batch_size, "init": init}
    task_options = {k: v for k, v in task_options.items() if v is not None}
    options = {"optimizer": optimizer, "epochs": epochs, "epoch_len": epoch_len, "unroll": unroll,
               "meta_lr": meta_lr, "seed": seed, "imitation_prob": imitation_prob, "random_scale": random_scale,
               "checkpoint_every": checkpoint_every, "val_every": val_every, "val_runs": val_runs,
               "curriculum": None if curriculum is None else _number_list(curriculum, "--curriculum", int),
               "jit_compile": None if jit_compile is None else _parse_jit(jit_compile),
               "init_from": None if init_from is None else str(init_from.resolve())}
    options = {k: v for k, v in options.items() if v is not None}
    if meta_clip_norm is not None:
        options["meta_clip_norm"] = _parse_clip(meta_clip_norm)
    if features is not None:
        options["l2o"] = {"features": features}
    if task is not None or task_options:
        options["task"] = {"name": task or "mlp", **task_options}

    from tf_symbolic_l2o.meta.trainer import MetaTrainer, TrainConfig

    if resume:
        run_dir = out or Path("runs") / (optimizer or TrainConfig.optimizer)
        ignored = sorted(k for k in options if not (k == "optimizer" and out is None) and k != "epochs")
        if ignored:
            _print(f"note: --resume uses the run's saved config (only --epochs can change); ignoring "
                   f"{', '.join(ignored)}", style="yellow")
        config = None
    else:
        config = TrainConfig(**options)
        run_dir = out or Path("runs") / config.optimizer

    trainer = MetaTrainer(config, run_dir, resume=resume, progress=not no_progress, log=_print,
                          epochs=options.get("epochs") if resume else None)
    cfg = trainer.config
    _print(f"{'resuming' if resume else 'meta-training'} {cfg.optimizer} on {cfg.task['name']}"
           f"{' / ' + cfg.task['dataset'] if 'dataset' in cfg.task else ''}: {cfg.epochs} epochs, horizon "
           f"{'→'.join(str(h) for h in cfg.horizons)}, unroll {cfg.unroll}, {trainer.num_coords} optimizee "
           f"parameters, run directory {run_dir}")
    try:
        summary = trainer.run()
    except KeyboardInterrupt:
        raise fail(f"interrupted; continue with: tfl2o train --resume --out {run_dir}", code=130) from None

    _print_run(f"meta-training of {cfg.optimizer}", summary, run_dir, _TRAIN_ARTIFACTS)
    _print(f"next: tfl2o evaluate {run_dir}")


# ----------------------------------------------------------------------------------------------------------------
# evaluate
# ----------------------------------------------------------------------------------------------------------------


@app.command()
@cli_errors
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
    _positive(runs=runs, steps=steps, tune_runs=tune_runs)
    baseline_names = _split(baselines)
    grid = None if lr_grid is None else _number_list(lr_grid, "--lr-grid")
    from tf_symbolic_l2o.meta.evaluate import DEFAULT_LR_GRID, evaluate_optimizers, write_report
    from tf_symbolic_l2o.runs import load_run
    from tf_symbolic_l2o.tasks.registry import make_task

    config, label, learned = load_run(run_dir)
    steps = steps or config.horizons[-1]
    out = out or run_dir / "eval"
    if rule:
        from tf_symbolic_l2o.rules import Rule
        from tf_symbolic_l2o.rules.coordinate import RuleOptimizer

        for path in rule:
            name = f"rule:{path.parent.name if path.name == 'rule.json' else path.stem}"
            learned[name] = RuleOptimizer(Rule.load(path), name=name)
    tune_task = make_task(config.task, split="meta_train")
    eval_task = make_task(config.task, split="eval")
    _print(f"evaluating {label} from {run_dir} on {config.task['name']}"
           f"{' / ' + config.task['dataset'] if 'dataset' in config.task else ''}: {runs} runs × {steps} steps, "
           f"baselines {', '.join(baseline_names) or 'none'}")
    results, tuning = evaluate_optimizers(learned, tune_task, eval_task, steps, n_runs=runs,
                                          baselines=baseline_names,
                                          lr_grid=DEFAULT_LR_GRID if grid is None else grid,
                                          tune_runs=tune_runs, seed=seed, log=_print)
    summary = write_report(results, tuning, out, title=f"{label} vs tuned baselines ({config.task['name']}, "
                                                        f"{steps} steps)")
    _print_eval_summary(results, summary, label, set(learned))
    _print(f"report written to {out} (summary.csv, summary.md, curves.csv, final.csv, tuning.csv, loss_curves.png)")


def _print_eval_summary(results, summary, label: str, learned: set[str]) -> None:
    table = Table(title="evaluation: mean ± std over runs; final loss = mean of the last 10 % of steps")
    for name in ("optimizer", "learning rate", "final loss", "test accuracy", "diverged"):
        table.add_column(name, justify="left" if name == "optimizer" else "right")
    for result, (_, row) in zip(results, summary.iterrows()):
        acc = "—" if math.isnan(row.test_accuracy_mean) else \
            f"{100 * row.test_accuracy_mean:.2f} % ± {100 * row.test_accuracy_std:.2f}"
        table.add_row(str(row.optimizer), _fmt(result.learning_rate),
                      f"{row.final_loss_mean:.4g} ± {row.final_loss_std:.2g}", acc,
                      f"{int(row.diverged_runs)}/{int(row.runs)}")
    _console().print(table)
    mine = summary[summary["optimizer"] == label]["final_loss_mean"]
    for name in sorted(learned - {label}):  # closed loop: each rule against its LSTM teacher
        rule_loss = summary[summary["optimizer"] == name]["final_loss_mean"]
        if not mine.empty and not rule_loss.empty and float(mine.iloc[0]) > 0:
            _print(f"{name} / {label} final loss: {float(rule_loss.iloc[0]) / float(mine.iloc[0]):.3f}", style="bold")
    others = summary[~summary["optimizer"].isin(learned)]
    if mine.empty or others.empty:
        return
    best = others.loc[others["final_loss_mean"].idxmin()] if others["final_loss_mean"].notna().any() else None
    if best is None or not math.isfinite(best.final_loss_mean) or best.final_loss_mean <= 0:
        _print(f"{label} / best baseline final loss: n/a (every baseline diverged)")
        return
    ratio = float(mine.iloc[0]) / float(best.final_loss_mean)
    verdict = "lower" if ratio < 1 else "higher"
    _print(f"{label} / best baseline ({best.optimizer}) final loss: {ratio:.3f}  "
           f"({label} reaches a {verdict} loss)", style="bold")


# ----------------------------------------------------------------------------------------------------------------
# tune
# ----------------------------------------------------------------------------------------------------------------

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
        _positive(cpu_replicas=cpu_replicas)
        split_cpu(cpu_replicas)
    return make_strategy(kind)


@app.command()
@cli_errors
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
    batch_size: Annotated[Optional[int], typer.Option(help="Optimizee minibatch size.", show_default="64")] = None,
    init: InitOption = None,
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
    task_options = {"dataset": dataset, "data_dir": None if data_dir is None else str(data_dir), "depth": depth,
                    "batch_size": batch_size, "init": init}
    task_options = {k: v for k, v in task_options.items() if v is not None}
    options = {"epochs": epochs, "epoch_len": epoch_len, "unroll": unroll, "meta_optimizer": meta_optimizer,
               "meta_lr": meta_lr, "second_order": second_order, "seed": seed, "val_every": val_every,
               "val_runs": val_runs,
               "jit_compile": None if jit_compile is None else _parse_jit(jit_compile)}
    options = {k: v for k, v in options.items() if v is not None}
    if meta_clip_norm is not None:
        options["meta_clip_norm"] = _parse_clip(meta_clip_norm)
    run_dir = out or Path("runs") / "tune"

    from tf_symbolic_l2o.distribute import is_chief, worker_dir
    from tf_symbolic_l2o.tune import MetaTuner, TuneConfig, resolve_rule

    dist = _strategy(strategy, cpu_replicas)
    if resume:
        ignored = sorted(k for k in options if k != "epochs") + (["RULE"] if rule else [])
        if ignored:
            _print(f"note: --resume uses the run's saved config (only --epochs can change); ignoring "
                   f"{', '.join(ignored)}", style="yellow")
        config = None
    else:
        if rule is None:
            raise ValueError("give the RULE to tune (a rule.json, a shipped rule name or psi), or --resume a run")
        if task is not None or task_options:
            from tf_symbolic_l2o.tune.tuner import DEFAULT_TUNE_TASK

            base = DEFAULT_TUNE_TASK if task in (None, "cnn") else {"name": task}
            options["task"] = {**base, "name": task or "cnn", **task_options}
        config = TuneConfig(rule=resolve_rule(rule).to_dict(), **options)
    chief = is_chief(dist)
    tuner = MetaTuner(config, worker_dir(run_dir, dist), resume=resume, progress=chief and not no_progress,
                      log=_print if chief else (lambda msg: None),
                      epochs=options.get("epochs") if resume else None, strategy=dist)
    cfg = tuner.config
    if chief:
        _print(f"{'resuming' if resume else 'meta-tuning'} {cfg.start_rule.infix} ({tuner.l2o.params.shape[0]} "
               f"constants) on {cfg.task['name']}{' / ' + cfg.task['dataset'] if 'dataset' in cfg.task else ''}: "
               f"{cfg.epochs} epochs, horizon {cfg.horizons[-1]}, unroll {cfg.unroll}, {cfg.meta_optimizer} "
               f"lr {cfg.meta_lr}, {'second' if cfg.second_order else 'first'}-order meta-gradients, "
               f"{dist.num_replicas_in_sync} replica(s), run directory {run_dir}")
    try:
        summary = tuner.run()
    except KeyboardInterrupt:
        raise fail(f"interrupted; continue with: tfl2o tune --resume --out {run_dir}", code=130) from None
    if not chief:
        return
    summary["constants"] = ", ".join(f"{k}={v:.6g}" for k, v in summary.get("constants", {}).items())
    _print_run("meta-tuning", summary, run_dir, _TUNE_ARTIFACTS)
    _print(f"next: tfl2o evaluate {run_dir}   (tuned vs untuned rule vs tuned baselines on held-out runs)")


# ----------------------------------------------------------------------------------------------------------------
# record
# ----------------------------------------------------------------------------------------------------------------


@app.command()
@cli_errors
def record(
    source: Annotated[str, typer.Argument(
        help="A trained optimizer (run directory or l2o folder, e.g. saved_models/rp_mnist_mlp) or a teacher "
             "KIND:LR (sgd:0.01, momentum:0.01, adam:0.001, rmsprop:0.001).")],
    out: Annotated[Path, typer.Option("--out", "-d", help="The dataset to write (.npy; the manifest goes "
                                                         "beside it as .json).")] = Path("behaviour.npy"),
    samples: Annotated[int, typer.Option(help="Rows in the dataset.")] = 10_000,
    memlen: Annotated[int, typer.Option(help="Lags per row (window length).")] = 1,
    steps: Annotated[int, typer.Option(help="Steps per optimizee run.")] = 200,
    coords_per_tensor: Annotated[int, typer.Option(help="Coordinates sampled per parameter tensor per run.")] = 10,
    features: Annotated[Optional[str], typer.Option(
        help="Recorded features, e.g. 'mt+gt+mom9'.", show_default="the L2O's own; teachers: mt+gt+g+mom5+mom9+mom99")]
    = None,
    beta1: Annotated[Optional[float], typer.Option(help="β1 of the recorded moments.", show_default="0.95")] = None,
    beta2: Annotated[Optional[float], typer.Option(help="β2 of the recorded moments.", show_default="0.95")] = None,
    task: Annotated[Optional[str], typer.Option(help="Optimizee (mlp, cnn, resnet, quadratic).",
                                                show_default="the run's task; teachers: mlp")] = None,
    dataset: Annotated[Optional[str], typer.Option(help="Dataset of the task.")] = None,
    data_dir: DataDirOption = None,
    split: Annotated[str, typer.Option(help="Data split the runs train on (meta_train or eval).")] = "meta_train",
    seed: Annotated[int, typer.Option(help="Base seed (runs, coordinates, shuffling).")] = 0,
    no_progress: NoProgressOption = False,
) -> None:
    """Record an optimizer's behaviour (features × lags → raw output) as a .npy dataset with a manifest."""
    from tf_symbolic_l2o.record import RecordConfig, record_to_file

    config = RecordConfig(samples=samples, memlen=memlen, steps=steps, coords_per_tensor=coords_per_tensor,
                          seed=seed)
    task_spec = None
    if task is not None or dataset is not None or data_dir is not None:
        task_spec = {"name": task or "mlp", **({"dataset": dataset} if dataset else {}),
                     **({"data_dir": str(data_dir)} if data_dir else {})}
    with _progress_bar(not no_progress, "recording") as advance:
        manifest = record_to_file(source, out, config, task_spec=task_spec, features=features, beta1=beta1,
                                  beta2=beta2, split=split, progress=advance)
    counts = manifest["counts"]
    _print(f"wrote {out} {tuple(manifest['shape'])} and {out.with_suffix('.json')}: columns "
           f"{', '.join(manifest['columns'])} + y; {counts['runs']} runs, "
           f"{counts['windows_dropped_zero_gradient']} zero-gradient windows dropped")


# ----------------------------------------------------------------------------------------------------------------
# distill
# ----------------------------------------------------------------------------------------------------------------


@app.command()
@cli_errors
def distill(
    dataset: Annotated[Path, typer.Argument(help="A behaviour dataset written by 'tfl2o record' (.npy + .json).")],
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-d", help="Report directory (rule.json, report.json, pareto.csv, pareto.png).",
        show_default="DATASET without .npy + '_distill'")] = None,
    backend: Annotated[str, typer.Option(help="Symbolic-regression backend: gplearn, operon (pip install "
                                              "tf-symbolic-l2o[operon]) or sparse (fast, deterministic sparse "
                                              "regression over odd basis functions).")] = "gplearn",
    population_size: Annotated[Optional[int], typer.Option(help="gplearn population.", show_default="2000")] = None,
    generations: Annotated[Optional[int], typer.Option(help="gplearn generations.", show_default="20")] = None,
    parsimony: Annotated[Optional[float], typer.Option(help="gplearn parsimony coefficient.",
                                                       show_default="0.001")] = None,
    max_evaluations: Annotated[Optional[int], typer.Option(help="operon: fitness evaluations.",
                                                           show_default="50000")] = None,
    max_length: Annotated[Optional[int], typer.Option(help="operon: largest expression (nodes).",
                                                      show_default="25")] = None,
    fit_rows: Annotated[Optional[int], typer.Option(
        help="operon / sparse: fit on at most this many training rows.", show_default="10000 / 50000")] = None,
    max_terms: Annotated[Optional[int], typer.Option(help="sparse: most basis terms in a candidate.",
                                                     show_default="16")] = None,
    families: Annotated[Optional[str], typer.Option(
        help="sparse: comma-separated basis families (linear, pairs, cube, tanh, asinh, tanhpairs, even).",
        show_default="linear,pairs,cube,tanh,even")] = None,
    test_fraction: Annotated[float, typer.Option(help="Held-out fraction of rows for the test R².")] = 0.2,
    max_train_rows: Annotated[Optional[int], typer.Option(help="Use at most this many training rows.")] = None,
    refit_constants: Annotated[bool, typer.Option(
        "--refit-constants",
        help="Refit the chosen rule's constants by gradient descent (the second phase of distillation).")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the split and the search.")] = 0,
    unconstrained: Annotated[bool, typer.Option(
        "--unconstrained", help="Search without the odd-rule constraint (no symmetrised rows, an intercept allowed, "
                                "no odd-part projection) and write the chosen rule even if it fails the invariant "
                                "checks (rest, sign symmetry, descent).")] = False,
) -> None:
    """Distill a behaviour dataset into a symbolic rule (R², LaTeX, Pareto front).

    By default the search is restricted to rules that are odd in the gradient (zero step at rest, opposite steps
    for opposite gradients), and only a rule that passes the invariant checks is written."""
    _positive(max_train_rows=max_train_rows, population_size=population_size, generations=generations,
              max_evaluations=max_evaluations, max_length=max_length, fit_rows=fit_rows, max_terms=max_terms)
    from tf_symbolic_l2o.distill import distill_file, write_distill_report

    out = out or dataset.with_name(dataset.stem + "_distill")
    options = {k: v for k, v in {"population_size": population_size, "generations": generations,
                                 "parsimony_coefficient": parsimony}.items() if v is not None}
    if options and backend != "gplearn":
        raise ValueError(f"--population-size/--generations/--parsimony apply to gplearn, not {backend!r}")
    operon_options = {k: v for k, v in {"max_evaluations": max_evaluations, "max_length": max_length}.items()
                      if v is not None}
    if operon_options and backend != "operon":
        raise ValueError(f"--max-evaluations/--max-length apply to operon, not {backend!r}")
    if fit_rows is not None:
        if backend not in ("operon", "sparse"):
            raise ValueError(f"--fit-rows applies to operon and sparse, not {backend!r}")
        operon_options["max_rows"] = fit_rows
    for flag, key, value in (("--max-terms", "max_terms", max_terms), ("--families", "families", families)):
        if value is not None:
            if backend != "sparse":
                raise ValueError(f"{flag} applies to sparse, not {backend!r}")
            operon_options[key] = value
    options.update(operon_options)
    _print(f"distilling {dataset} with {backend} …")
    result = distill_file(dataset, None, backend=backend, test_fraction=test_fraction, seed=seed,
                          max_train_rows=max_train_rows, refit_constants=refit_constants,
                          odd=not unconstrained, check=not unconstrained, **options)
    write_distill_report(result, out)
    c = result.chosen
    table = Table(title="distilled rule", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    for key, value in (("rule", c.rule.infix), ("LaTeX", c.rule.latex()), ("R² train", f"{c.r2_train:.4f}"),
                       ("R² test", f"{c.r2_test:.4f}"), ("MSE test", f"{c.mse_test:.3g}"),
                       ("complexity", str(c.complexity)), ("candidates on the Pareto front", str(len(result.pareto)))):
        table.add_row(key, value)
    for name, inv in c.rule.metadata.get("invariants", {}).items():
        table.add_row(f"invariant: {name}", ("holds" if inv["passed"] else "FAILS") + f" ({inv['detail']})")
    _console().print(table)
    _print(f"written to {out} (rule.json, report.json, pareto.csv, pareto.png)")


# ----------------------------------------------------------------------------------------------------------------
# show / export
# ----------------------------------------------------------------------------------------------------------------


@app.command()
@cli_errors
def show(
    rule: Annotated[Path, typer.Argument(help="A rule.json (from 'tfl2o distill' or saved_models/), or a learned "
                                              "optimizer (a run directory or saved_models/<name>_mnist_mlp).")],
    simplify: Annotated[bool, typer.Option("--simplify/--no-simplify",
                                           help="Also print the sympy-simplified form.")] = True,
    check: Annotated[bool, typer.Option("--check/--no-check",
                                        help="Check the invariants (rest, sign symmetry, descent).")] = True,
) -> None:
    """Print a symbolic rule (formula, LaTeX, features, stored figures) or a learned optimizer, and whether it holds
    the invariants of an optimizer: rest (zero gradients, zero step), sign symmetry (−g, opposite steps), descent."""
    from tf_symbolic_l2o.rules import Rule

    if rule.is_dir():
        _show_l2o(rule, check)
        return
    r = Rule.load(rule)
    table = Table(title=str(rule), show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    table.add_row("update", f"Δθ = {r.output_scale:g} · f(x)")
    table.add_row("f", r.infix)
    table.add_row("LaTeX", r.latex())
    if simplify:
        table.add_row("sympy (simplified)", str(r.to_sympy(simplify=True)))
    fs = r.feature_set
    table.add_row("features", f"{fs.spec} (β1 = {fs.beta1:g}, β2 = {fs.beta2:g}), memlen {r.memlen}")
    table.add_row("uses", ", ".join(r.variables) or "—")
    table.add_row("complexity", str(r.complexity))
    for key in ("r2_train", "r2_test", "mse_test", "backend", "source"):
        if key in r.metadata:
            table.add_row(key, _fmt(r.metadata[key]))
    if check:
        _invariant_rows(table, r)
    _console().print(table)


def _invariant_rows(table, optimizer) -> None:
    from tf_symbolic_l2o.invariants import check_invariants

    for res in check_invariants(optimizer).results:
        table.add_row(f"invariant: {res.name}", ("holds" if res.passed else "[red]FAILS[/red]") + f" ({res.detail})")


def _show_l2o(path: Path, check: bool) -> None:
    from tf_symbolic_l2o.learned.io import load_l2o

    l2o = load_l2o(path)
    cfg = l2o.get_config()
    table = Table(title=str(path), show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    table.add_row("learned optimizer", f"{l2o.optimizer_name}: Δθ = {l2o.output_scale:g} · out")
    table.add_row("features", f"{l2o.feature_set.spec} (β1 = {l2o.feature_set.beta1:g}, "
                              f"β2 = {l2o.feature_set.beta2:g}), input transform {cfg['input_transform']}")
    table.add_row("network", f"preproc {list(l2o.preproc_units)}, LSTM {list(l2o.lstm_units)}, "
                             f"{cfg['output_activation']} head, odd: {'yes' if l2o.odd else 'no'}")
    table.add_row("parameters", str(int(sum(w.numpy().size for w in l2o.weights))))
    table.add_row("state floats per coordinate", str(l2o.state_floats_per_coordinate()))
    if check:
        _invariant_rows(table, l2o)
    _console().print(table)


@app.command()
@cli_errors
def export(
    source: Annotated[Path, typer.Argument(help="A rule.json (exported as an update-rule SavedModel) or a trained "
                                                "Keras model .keras file (exported for serving).")],
    out: Annotated[Path, typer.Option("--out", "-d", help="The SavedModel directory to write.")],
) -> None:
    """Export a rule (signatures init_state/update) or a trained Keras model (serving_default) as a SavedModel."""
    if not source.is_file():
        raise FileNotFoundError(f"nothing to export: {source} is not a file")
    from tf_symbolic_l2o.export import export_model, export_rule, signatures_summary

    if source.suffix == ".json":
        export_rule(source, out)
    elif source.suffix == ".keras":
        import keras

        import tf_symbolic_l2o  # noqa: F401 - registers the optimizers for deserialisation

        export_model(keras.saving.load_model(source, safe_mode=True), out)
    else:
        raise ValueError(f"cannot export {source}: expected a rule .json or a Keras .keras model")
    _print(f"wrote {out}")
    for name, sig in signatures_summary(out).items():
        ins = ", ".join(f"{k}{v['shape']}" for k, v in sig["inputs"].items())
        outs = ", ".join(sig["outputs"])
        _print(f"  signature {name}({ins}) -> {outs}")


class _progress_bar:
    """A rich progress bar whose ``advance(done, total)`` callback the library calls (or a no-op)."""

    def __init__(self, enabled: bool, label: str):
        self.enabled, self.label, self._bar = enabled, label, None

    def __enter__(self):
        if not self.enabled:
            return lambda done, total: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._bar = Progress(TextColumn(self.label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                             console=_console())
        self._bar.__enter__()
        task = self._bar.add_task(self.label, total=None)
        return lambda done, total: self._bar.update(task, completed=done, total=total)

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.__exit__(*exc)
        return False


from cli.benchmark_cmd import benchmark  # noqa: E402 - its own module; registered like the commands above

app.command()(cli_errors(benchmark))


if __name__ == "__main__":  # pragma: no cover
    app()
