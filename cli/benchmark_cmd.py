"""``tfl2o benchmark``: run a benchmark suite (tuned baselines vs the shipped learned and symbolic optimizers) and
write its report. The library does the work (:mod:`tf_symbolic_l2o.benchmark`); this module only parses options.

Registered on the app, with the other commands, in ``cli/main.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cli.common import check_positive, split_list

SUITE_NAMES = ("smoke", "full")


def benchmark(
    suite: Annotated[str, typer.Option(
        help="Task suite: 'smoke' (3 small tasks, 1 seed, seconds) or 'full' (8 tasks in 4 tiers).")] = "smoke",
    out: Annotated[Path, typer.Option("--out", "-d", help="Output folder: cached runs, index.json, report/.")] = Path(
        "runs/benchmark"),
    seeds: Annotated[Optional[int], typer.Option(
        help="Number of final seeds (seeds 0…N−1).", show_default="the suite's (smoke 1, full 3)")] = None,
    optimizers: Annotated[Optional[str], typer.Option(
        help="Comma list of the optimizers to run instead of the suite's (e.g. adam,symbolic_rp,symbolic_rp+lr).",
        show_default="the suite's")] = None,
    horizon_scale: Annotated[int, typer.Option(
        help="Run every task for N times its step budget (e.g. 5: do the optimizers hold up past the horizon they "
             "were meta-trained at?); use another --out.")] = 1,
    report_only: Annotated[bool, typer.Option(
        "--report-only", help="Rebuild the report from the saved curves in --out without running anything.")] = False,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="Do not print a line per finished step.")] = False,
    readme: Annotated[Optional[Path], typer.Option(
        help="Also write the results table and plots into this README, between its 'tfl2o benchmark results' "
             "marker lines.")] = None,
) -> None:
    """Benchmark tuned baselines (Adam, AdamW, SGD+momentum, RMSprop, Lion) against the shipped learned and symbolic
    optimizers on a task suite; cached runs are reused, and the report is written to OUT/report."""
    if suite not in SUITE_NAMES:
        raise ValueError(f"--suite takes {' or '.join(SUITE_NAMES)}, got {suite!r}")
    check_positive(seeds=seeds, horizon_scale=horizon_scale)
    from tf_symbolic_l2o.benchmark.report import REPORT_DIR, build_report, write_into_readme
    from tf_symbolic_l2o.benchmark.runner import run_benchmark
    from tf_symbolic_l2o.benchmark.suite import get_suite

    if report_only:
        folder = build_report(out)
    else:
        s = get_suite(suite, seeds, horizon_scale, None if optimizers is None else split_list(optimizers))
        typer.echo(f"benchmark suite {s.name}: {len(s.tasks)} tasks, {len(s.optimizers)} optimizers, final seeds "
                   f"{list(s.final_seeds)}, output {out}")
        runner = run_benchmark(s, out, log=None if no_progress else typer.echo)
        if no_progress:
            typer.echo(f"{runner.executed} runs computed, {runner.reused} loaded from the cache")
        folder = out / REPORT_DIR
    typer.echo(f"report written to {folder} (results.md, metrics.csv, profile.csv, loss_curves.png, "
               f"performance_profile.png, cost.png)")
    if readme is not None:
        write_into_readme(folder, readme)
        typer.echo(f"results table written into {readme}")
