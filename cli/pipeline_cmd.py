"""``tfl2o pipeline``: data → learned optimizer → symbolic rule → Keras optimizer → report, in one run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cli.common import (DataDirOption, EpochLenOption, NoProgressOption, ProgressBar, RunSeedOption, check_positive,
                        drop_none, int_list, say, split_list)

_STAGES = "train, record, distill, evaluate, fit, export, report"


def pipeline(
    out: Annotated[Path, typer.Option("--out", "-d", help="Run directory (an existing one is continued).")]
    = Path("runs/pipeline"),
    size: Annotated[str, typer.Option(
        help="Default sizes: quick (10 epochs × 100 steps, unroll 10, meta-lr 3e-3, 5,000 rows, 3-epoch fit; about "
             "6 minutes on 2 CPU cores) or full (as the shipped RNNprop: 50 epochs × 200 steps, unroll 20, meta-lr "
             "1e-3; 20,000 rows, 10-epoch fit).")] = "quick",
    until: Annotated[str, typer.Option(help=f"Stop after this stage ({_STAGES}).")] = "report",
    optimizer: Annotated[str, typer.Option("--optimizer", "-o", help="Learned optimizer: rp, rp_s, rp_si or dm.")]
    = "rp",
    task: Annotated[Optional[str], typer.Option(help="Optimizee: mlp, cnn, resnet or quadratic.",
                                                show_default="mlp")] = None,
    dataset: Annotated[Optional[str], typer.Option(
        help="Dataset of the task (mnist_subset, digits, TFDS mnist with --data-dir, …).",
        show_default="the task's, e.g. mnist_subset")] = None,
    data_dir: DataDirOption = None,
    hidden: Annotated[Optional[str], typer.Option(help="MLP hidden widths, e.g. '30,20'.")] = None,
    activation: Annotated[Optional[str], typer.Option(help="MLP activation.")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Meta-training epochs.", show_default="by --size")] = None,
    epoch_len: EpochLenOption = None,
    unroll: Annotated[Optional[int], typer.Option(help="Truncation length of the unrolls.",
                                                  show_default="by --size")] = None,
    meta_lr: Annotated[Optional[float], typer.Option(help="Meta-optimizer learning rate.",
                                                     show_default="by --size")] = None,
    samples: Annotated[Optional[int], typer.Option(help="Recorded rows.", show_default="by --size")] = None,
    memlen: Annotated[Optional[int], typer.Option(help="Lags per recorded row.", show_default="4")] = None,
    backend: Annotated[str, typer.Option(help="Distillation backend: sparse (seconds), gplearn or operon.")]
    = "sparse",
    eval_runs: Annotated[Optional[int], typer.Option(help="Evaluation runs per optimizer.",
                                                     show_default="by --size")] = None,
    baselines: Annotated[str, typer.Option(help="Tuned baselines of the evaluation.")] = "adam,rmsprop,momentum",
    fit_epochs: Annotated[Optional[int], typer.Option(help="Epochs of the model.fit check.",
                                                      show_default="by --size")] = None,
    fit_seeds: Annotated[Optional[int], typer.Option(help="Seeds of the model.fit check.",
                                                     show_default="by --size")] = None,
    seed: RunSeedOption = None,
    no_progress: NoProgressOption = False,
) -> None:
    """Run the whole method: meta-train an LSTM optimizer, record it, distill a rule, evaluate both against tuned
    baselines, train a Keras model with the rule (model.fit), export SavedModels and write OUT/report.md. Stages
    whose outputs are current are skipped: the same command again continues a killed pipeline."""
    check_positive(epochs=epochs, epoch_len=epoch_len, unroll=unroll, samples=samples, memlen=memlen,
                   eval_runs=eval_runs, fit_epochs=fit_epochs, fit_seeds=fit_seeds)
    from tf_symbolic_l2o.pipeline import PipelineConfig, run_pipeline
    from tf_symbolic_l2o.tasks.registry import task_spec

    config = PipelineConfig(**drop_none({
        "size": size, "optimizer": optimizer, "epochs": epochs, "epoch_len": epoch_len, "unroll": unroll,
        "meta_lr": meta_lr, "samples": samples, "memlen": memlen, "backend": backend, "eval_runs": eval_runs,
        "baselines": tuple(split_list(baselines)), "fit_epochs": fit_epochs, "fit_seeds": fit_seeds, "seed": seed,
        "task": task_spec(task, dataset=dataset, data_dir=data_dir, hidden=int_list(hidden, "--hidden"),
                          activation=activation)}))
    result = run_pipeline(out, config, until=until, log=say,
                          progress=lambda label: ProgressBar(not no_progress, label))
    _print_result(result, until)


def _print_result(result, until: str) -> None:
    ran = ", ".join(f"{s} {'%.0f s' % r['seconds'] if r['status'] == 'ran' else '(skipped)'}"
                    for s, r in result.stages.items())
    say(f"stages: {ran}")
    h = result.headline
    if "evaluate.lstm_vs_best_baseline" in h:
        say(f"{h['evaluate.lstm']} / best tuned baseline ({h['evaluate.best_baseline']}) final loss: "
            f"{h['evaluate.lstm_vs_best_baseline']:.3f}; rule / {h['evaluate.lstm']} (closed loop): "
            f"{h['evaluate.closed_loop_ratio']:.3f}; rule test R² {h['distill.r2_test']:.4f}", style="bold")
    if result.report is not None:
        say(f"report: {result.report}")
    else:
        say(f"stopped after {until}; run again without --until to finish")
