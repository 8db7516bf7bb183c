"""What every ``tfl2o`` command shares: the Typer app, the options several commands use, one-line errors, printing
and the progress display. The commands live in ``cli/*_cmd.py``; ``cli/main.py`` assembles them."""

from __future__ import annotations

import functools
import math
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

#: The app's help: the pipeline command, then the stages' commands in order.
HELP = ("Learned and symbolic optimizers on TensorFlow 2 / Keras 3. 'tfl2o pipeline' runs every stage in one "
        "go and writes a report. The stages: train (meta-train an LSTM "
        "optimizer), evaluate (against tuned baselines), record (its behaviour), distill (a symbolic rule), show (a "
        "rule or optimizer, with its invariants), tune (a rule's constants), tune-gain (its step gain), export "
        "(SavedModels), benchmark (a task suite).")

app = typer.Typer(
    name="tfl2o",
    help=HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

err_console = Console(stderr=True)

# Options that several commands share, word for word (typer reads the help and defaults from these).
DataDirOption = Annotated[Optional[Path], typer.Option(help="TFDS data directory (prepared datasets).")]
DepthOption = Annotated[Optional[int], typer.Option(help="ResNet depth (8/20/32/44/56 or 18).")]
ModelOption = Annotated[Optional[str], typer.Option(
    help="Any Keras model as the optimizee: a .keras file or a keras.applications name (resnet50, mobilenetv2, …); "
         "implies --task keras.")]
InputShapeOption = Annotated[Optional[str], typer.Option(
    help="Input shape of a --model that is not built, e.g. '32,32,3'.")]
InitOption = Annotated[Optional[str], typer.Option(help="Optimizee initialisation: paper or keras.")]
TaskFamilyOption = Annotated[Optional[str], typer.Option(
    help="Meta-learn on a task family instead of one task: a name (default: MLPs, the CNN, ResNet-20, a Keras "
         "model, an autoencoder at horizons 100-1,000; small) or a JSON file; each epoch draws a member and a "
         "horizon. Replaces --task, --dataset and the other task options.")]
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


def import_tensorflow_quietly() -> None:
    """Import TensorFlow with its C++ start-up lines (oneDNN, CUDA stubs, absl's "log messages before
    InitializeLog") kept off the terminal: they are written to file descriptor 2 during the import, before
    ``TF_CPP_MIN_LOG_LEVEL`` is read, so the descriptor points to /dev/null for the import's duration. A no-op once
    TensorFlow is imported; Python's own warnings and errors afterwards are untouched."""
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # the lines TensorFlow writes after its import
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        sys.stderr.flush()
        os.dup2(devnull, 2)
        import tensorflow  # noqa: F401, PLC0415
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def console() -> Console:
    """rich's global console: the one the library's progress bars use, so log lines and bars do not collide."""
    import rich

    return rich.get_console()


def say(msg: Any = "", **kwargs) -> None:
    console().print(msg, **{"soft_wrap": True, "markup": False, "highlight": False, **kwargs})


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


#: Set by ``tfl2o --verbose``: TensorFlow's start-up log lines are then shown.
SETTINGS = {"verbose": False}


def cli_errors(fn: Callable) -> Callable:
    """Run a command: TensorFlow is imported first without its C++ start-up lines (unless ``--verbose``), and
    expected errors become one ``error: …`` line on stderr and exit code 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        for name, value in kwargs.items():  # typer turns "nan" and "inf" into floats: no option takes them
            if isinstance(value, float) and not math.isfinite(value):
                raise fail(f"--{name.replace('_', '-')} must be a finite number, got {value}")
        if not SETTINGS["verbose"]:
            import_tensorflow_quietly()
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except Exception as err:  # noqa: BLE001 - filtered right below
            if isinstance(err, _expected_errors()):
                raise fail(_one_line(err)) from None
            raise

    return wrapper


def split_list(text: str | None) -> list[str]:
    """``"a, b,,c"`` → ``["a", "b", "c"]``."""
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def number_list(text: str, option: str, kind=float) -> list:
    """``"1,2,3"`` → numbers of type ``kind`` (``int`` or ``float``), or a one-line error naming ``option``."""
    try:
        values = [kind(v) for v in split_list(text)]
    except ValueError:
        what = "integers" if kind is int else "numbers"
        raise ValueError(f"{option} takes comma-separated {what}, got {text!r}") from None
    if not values:
        raise ValueError(f"{option} needs at least one value")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"{option} takes finite numbers, got {text!r}")
    return values


def int_list(text: str | None, option: str) -> list[int] | None:
    """``"32,32,3"`` → ``[32, 32, 3]``; ``None`` (not given) stays ``None``."""
    return None if text is None else number_list(text, option, int)


def check_positive(**values: int | None) -> None:
    """Check CLI counts the library does not validate up front (``None`` = not given)."""
    for name, value in values.items():
        if value is not None and value <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {value}")


def parse_jit(text: str) -> str | bool:
    from tf_symbolic_l2o.meta.unroll import parse_jit_compile

    try:
        return parse_jit_compile(text)
    except ValueError:
        raise ValueError(f"--jit-compile takes auto, true or false, got {text!r}") from None


def parse_clip(text: str) -> float | None:
    if text.strip().lower() in ("none", "off"):
        return None
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"--meta-clip-norm takes a positive number or 'none', got {text!r}") from None


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return "—" if math.isnan(value) else f"{value:.6g}"
    if value is None:
        return "—"
    return str(value)


def print_run(title: str, summary: dict, run_dir: Path, artifacts) -> None:
    """A finished run: its summary as a two-column table, then the files it wrote."""
    table = Table(title=title, show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    for key, value in summary.items():
        table.add_row(key.replace("_", " "), fmt(value))
    console().print(table)
    say("written:")
    for name, what in artifacts:
        if (run_dir / name).exists():
            say(f"  {run_dir / name}  ({what})")


class ProgressBar:
    """A rich progress bar driven by the library's ``progress(done, total, info="")`` callback. When the output is
    not a terminal (CI logs, a file) it prints one plain line per tenth of the work instead; disabled, the callback
    does nothing."""

    def __init__(self, enabled: bool, label: str):
        self.enabled, self.label, self._bar = enabled, label, None

    def __enter__(self) -> Callable[..., None]:
        if not self.enabled:
            return lambda done, total, info="": None
        if not console().is_terminal:
            return self._lines()
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        self._bar = Progress(TextColumn(self.label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                             TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=console())
        self._bar.__enter__()
        task = self._bar.add_task(self.label, total=None, info="")
        return lambda done, total, info="": self._bar.update(task, completed=done, total=total, info=info)

    def _lines(self) -> Callable[..., None]:
        printed = {"tenth": -1}

        def update(done, total, info=""):
            tenth = int(10 * done / total) if total else -1
            if total and (tenth > printed["tenth"] or done >= total):
                printed["tenth"] = tenth
                say(f"{self.label}: {done}/{total}" + (f"  {info}" if info else ""))

        return update

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.__exit__(*exc)
        return False


def drop_none(options: dict) -> dict:
    """The options that were given (``None`` = not given)."""
    return {k: v for k, v in options.items() if v is not None}


def note_ignored(ignored: list[str]) -> None:
    """The note a resumed run prints for options its saved config overrides."""
    if ignored:
        say(f"note: --resume uses the run's saved config (only --epochs can change); ignoring {', '.join(ignored)}",
            style="yellow")


def interruptible(run: Callable[[], Any], resume_command: str) -> Any:
    """``run()``; Ctrl-C becomes one line naming the command that continues the run (exit code 130)."""
    try:
        return run()
    except KeyboardInterrupt:
        raise fail(f"interrupted; continue with: {resume_command}", code=130) from None
