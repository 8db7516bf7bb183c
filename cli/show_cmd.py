"""``tfl2o show`` and ``tfl2o export``: print a rule or learned optimizer with its invariants; export SavedModels."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cli.common import console, fmt, say

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
    _update_rows(table, r)
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
            table.add_row(key, fmt(r.metadata[key]))
    if check:
        _invariant_rows(table, r)
    console().print(table)


def _update_rows(table, r) -> None:
    """The update's form, and the step gain's and the size scale's constants when the rule has them."""
    gain, size = r.feature_set.gain, r.size_scale
    table.add_row("update", f"Δθ = {r.output_scale:g} · f(x)" + (" · exp(lgain)" if gain else "")
                  + (" · size factor" if size else ""))
    if gain:
        table.add_row("step gain", f"per coordinate, starts at 1: × {gain.up:g} when g·m_(t−1) > 0, × {gain.down:g} "
                                   f"when < 0, kept in [{gain.low:g}, {gain.high:g}]")
    if size:
        table.add_row("size factor", f"min(1, ({size['reference']:,.0f} / n)^{size['power']:g}) on a model of n "
                                     f"parameters")


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
    console().print(table)


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
    say(f"wrote {out}")
    for name, sig in signatures_summary(out).items():
        ins = ", ".join(f"{k}{v['shape']}" for k, v in sig["inputs"].items())
        outs = ", ".join(sig["outputs"])
        say(f"  signature {name}({ins}) -> {outs}")
