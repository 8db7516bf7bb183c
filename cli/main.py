"""The ``tfl2o`` command line: a thin layer that parses options, calls :mod:`tf_symbolic_l2o` and prints results.

Commands::

    tfl2o pipeline  every stage below in one run directory, ending in a report (resumable, --until STAGE)
    tfl2o train     meta-train a learned optimizer into a run directory (or --resume one)
    tfl2o evaluate  compare a trained run's optimizer (and symbolic rules) with learning-rate-tuned baselines
    tfl2o tune      meta-tune a symbolic rule's constants (or the ψ family) on a CNN or ResNet
    tfl2o tune-gain choose a rule's per-coordinate step gain by a grid search on a task family
    tfl2o benchmark tuned baselines vs the shipped learned and symbolic optimizers on a task suite
    tfl2o record    record an optimizer's behaviour as a symbolic-regression dataset (.npy + manifest)
    tfl2o distill   distill a behaviour dataset into a symbolic rule (gplearn, sparse; operon optional)
    tfl2o show      print a rule or a learned optimizer (formula, LaTeX, features, R², invariants)
    tfl2o export    export a rule or a trained Keras model as a SavedModel

TensorFlow and the library are imported inside the commands, so ``tfl2o --help`` stays instant; before a command
runs, TensorFlow is imported with its C++ start-up log lines hidden (``tfl2o --verbose COMMAND`` shows them).

The commands live in ``cli/*_cmd.py`` and share ``cli/common.py`` (the app, shared options, errors, printing,
progress). Adding a command: in a ``cli/*_cmd.py`` module, write a function whose typer-annotated parameters
are its options and whose body parses them, calls one library function and prints; import the library inside the
function (never at module level), and raise ``ValueError`` / ``FileNotFoundError`` / … for user errors:
``cli_errors`` turns them into one ``error: …`` line on stderr and exit code 2. Then register it below.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from cli.benchmark_cmd import benchmark
from cli.common import HELP, SETTINGS, app, cli_errors
from cli.pipeline_cmd import pipeline
from cli.record_cmd import distill, record
from cli.show_cmd import export, show
from cli.train_cmd import evaluate, train
from cli.tune_cmd import tune, tune_gain

__all__ = ["app", "cli_errors"]


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
    verbose: Annotated[bool, typer.Option(
        "--verbose", help="Also show TensorFlow's own start-up log lines (oneDNN, CUDA), hidden by default.")] = False,
) -> None:
    SETTINGS["verbose"] = bool(verbose)  # read when a command runs (after its own --help, which stays instant)


main.__doc__ = HELP  # the app's help (a callback's docstring is what typer shows)
# the pipeline's order
for command in (pipeline, train, evaluate, record, distill, show, tune, tune_gain, export, benchmark):
    app.command()(cli_errors(command))


if __name__ == "__main__":  # pragma: no cover
    app()
