"""``tfl2o record`` and ``tfl2o distill``: an optimizer's behaviour as a dataset; a dataset as a symbolic rule."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from cli.common import DataDirOption, NoProgressOption, ProgressBar, check_positive, console, drop_none, say

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
    from tf_symbolic_l2o.tasks.registry import task_spec

    config = RecordConfig(samples=samples, memlen=memlen, steps=steps, coords_per_tensor=coords_per_tensor,
                          seed=seed)
    with ProgressBar(not no_progress, "recording") as advance:
        manifest = record_to_file(source, out, config, task_spec=task_spec(task, dataset=dataset, data_dir=data_dir),
                                  features=features, beta1=beta1, beta2=beta2, split=split, progress=advance)
    counts = manifest["counts"]
    say(f"wrote {out} {tuple(manifest['shape'])} and {out.with_suffix('.json')}: columns "
        f"{', '.join(manifest['columns'])} + y; {counts['runs']} runs, "
        f"{counts['windows_dropped_zero_gradient']} zero-gradient windows dropped")


def distill(
    dataset: Annotated[Path, typer.Argument(help="A behaviour dataset written by 'tfl2o record' (.npy + .json).")],
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-d", help="Report directory (rule.json, report.json, pareto.csv, pareto.png).",
        show_default="DATASET without .npy + '_distill'")] = None,
    backend: Annotated[str, typer.Option(help="Symbolic-regression backend: gplearn, operon (pip install "
                                              "tf-symbolic-l2o[operon]) or sparse (fast, deterministic sparse "
                                              "regression over odd basis functions).")] = "gplearn",
    population_size: Annotated[Optional[int], typer.Option(
        help="gplearn / operon population.", show_default="2000 / 1000")] = None,
    generations: Annotated[Optional[int], typer.Option(
        help="gplearn / operon generations.", show_default="20 / 1000")] = None,
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
    check_positive(max_train_rows=max_train_rows, population_size=population_size, generations=generations,
                   max_evaluations=max_evaluations, max_length=max_length, fit_rows=fit_rows, max_terms=max_terms)
    from tf_symbolic_l2o.distill import distill_file, write_distill_report

    out = out or dataset.with_name(dataset.stem + "_distill")
    options = drop_none({"population_size": population_size, "generations": generations,
                         "parsimony_coefficient": parsimony, "max_evaluations": max_evaluations,
                         "max_length": max_length, "max_rows": fit_rows, "max_terms": max_terms, "families": families})
    say(f"distilling {dataset} with {backend} …")
    result = distill_file(dataset, None, backend=backend, test_fraction=test_fraction, seed=seed,
                          max_train_rows=max_train_rows, refit_constants=refit_constants,
                          odd=not unconstrained, check=not unconstrained, **options)
    write_distill_report(result, out)
    console().print(_rule_table(result))
    say(f"written to {out} (rule.json, report.json, pareto.csv, pareto.png)")


def _rule_table(result) -> Table:
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
    return table
