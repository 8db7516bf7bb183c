"""The files of a distillation: ``rule.json``, ``report.json``, ``pareto.csv`` and ``pareto.png``
(:func:`write_distill_report`, from a :class:`~tf_symbolic_l2o.distill.result.DistillResult`)."""

from __future__ import annotations

import math
import os
from pathlib import Path

from tf_symbolic_l2o.distill.result import DistillResult, json_number
from tf_symbolic_l2o.io import atomic_write_bytes, atomic_write_json, atomic_write_text, figure_png
from tf_symbolic_l2o.rules import to_infix, to_prefix

__all__ = ["REPORT_FORMAT", "write_distill_report"]

REPORT_FORMAT = "tfl2o-distill-report/1"


def _front_and_chosen(result: DistillResult) -> list:
    """The Pareto front, plus the chosen rule if it is not on it (a refitted rule can fall just off it)."""
    rows = list(result.pareto)
    if not any(c is result.chosen for c in rows):
        rows.append(result.chosen)
        rows.sort(key=lambda c: (c.complexity, -c.r2_test))
    return rows


def _pareto_frame(result: DistillResult):
    """The rows of ``pareto.csv``: scores, origin and both infix forms of the front and the chosen rule."""
    import pandas as pd

    rows = [{"complexity": c.complexity, "r2_train": c.r2_train, "r2_test": c.r2_test, "mse_train": c.mse_train,
             "mse_test": c.mse_test, "chosen": c is result.chosen,
             "origin": c.origin, "infix": c.infix, "standardized_infix": to_infix(c.standardized)}
            for c in _front_and_chosen(result)]
    cols = ["complexity", "r2_train", "r2_test", "mse_train", "mse_test", "chosen", "origin", "infix",
            "standardized_infix"]
    return pd.DataFrame(rows, columns=cols)


def _pareto_png(result: DistillResult) -> bytes:
    """``pareto.png``: every finite candidate, the Pareto front as a step line and the chosen rule as a star."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    finite = [c for c in result.candidates if math.isfinite(c.r2_test)]
    if finite:
        ax.scatter([c.complexity for c in finite], [c.r2_test for c in finite], s=14, color="0.7",
                   label="candidates", zorder=1)
    front = result.pareto
    ax.step([c.complexity for c in front], [c.r2_test for c in front], where="post", color="C0", zorder=2)
    ax.scatter([c.complexity for c in front], [c.r2_test for c in front], s=24, color="C0", label="Pareto front",
               zorder=3)
    ch = result.chosen
    ax.scatter([ch.complexity], [ch.r2_test], s=160, marker="*", color="C3", zorder=4,
               label=f"chosen (R² {ch.r2_test:.4f}, {ch.complexity} nodes)")
    lows = [c.r2_test for c in front]
    if lows:  # R² below −0.1 (worse than a constant) is not worth the vertical space
        lo = max(min(lows) - 0.05, -0.1)
        hi = max(lows)
        ax.set_ylim(lo, hi + 0.05 * max(hi - lo, 1e-3))
    ax.set_xlabel("complexity (nodes, standardised expression)")
    ax.set_ylabel("test R²")
    ax.set_title(f"Distillation ({result.settings.get('backend')}): complexity vs test R²", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return figure_png(fig, dpi=100)


def _report(result: DistillResult) -> dict:
    """``report.json``: the rule in every display form, its scores, the front, settings, timings, dataset and
    standardisation (and the refit, if any)."""
    from tf_symbolic_l2o import __version__

    rule = result.rule
    try:
        latex = rule.latex()
    except Exception as e:  # noqa: BLE001 - a report must not fail on a display form
        latex = f"<unavailable: {type(e).__name__}>"
    try:
        import sympy

        expr = rule.to_sympy(simplify=False)  # sympy's automatic evaluation collects the folded constants
        sympy_text, sympy_latex = str(expr), sympy.latex(expr)
    except Exception as e:  # noqa: BLE001
        sympy_text = sympy_latex = f"<unavailable: {type(e).__name__}>"

    report = {
        "format": REPORT_FORMAT,
        "rule": {"infix": rule.infix, "latex": latex, "sympy": sympy_text, "sympy_latex": sympy_latex,
                 "expression": to_prefix(rule.expression),
                 "standardized_infix": to_infix(result.chosen.standardized), "features": rule.features,
                 "memlen": rule.memlen, "output_scale": rule.output_scale, "update": str(rule)},
        "metrics": result.chosen.metrics(),
        "complexity": result.chosen.complexity,
        "complexity_rule": rule.complexity,
        "pareto": [{"complexity": c.complexity, "r2_train": json_number(c.r2_train),
                    "r2_test": json_number(c.r2_test), "mse_test": json_number(c.mse_test), "origin": c.origin,
                    "infix": c.infix, "chosen": c is result.chosen}
                   for c in _front_and_chosen(result)],
        "n_candidates": len(result.candidates),
        "settings": result.settings,
        "timings": result.timings,
        "dataset": result.dataset,
        "standardization": result.standardizer.to_dict(),
        "created_with": f"tf_symbolic_l2o {__version__}",
    }
    if result.before_refit is not None:
        report["before_refit"] = {**result.before_refit.metrics(), "infix": result.before_refit.infix}
        report["refit_history"] = [json_number(v) for v in (result.refit_history or [])]
    return report


def write_distill_report(result: DistillResult, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``rule.json``, ``report.json``, ``pareto.csv`` and ``pareto.png`` into ``out_dir`` (each atomically).

    Returns the paths by name.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"rule": out / "rule.json", "report": out / "report.json", "pareto_csv": out / "pareto.csv",
             "pareto_png": out / "pareto.png"}
    result.rule.save(paths["rule"])
    atomic_write_json(paths["report"], _report(result))
    atomic_write_text(paths["pareto_csv"], _pareto_frame(result).to_csv(index=False))
    atomic_write_bytes(paths["pareto_png"], _pareto_png(result))
    return paths
