"""Mutation check: break one line in each pipeline stage and show that the test suite notices.

Not part of CI (it runs the relevant tests up to 14 times). For each mutation below the script copies the working
tree (``git ls-files``: tracked and untracked-but-not-ignored files) into a temporary folder, applies the one-line
break there (the original tree is never touched), runs the tests that cover that stage with the copy first on
``PYTHONPATH``, and records whether at least one test failed. With ``--baseline`` (the default) it first runs the
same tests on the unbroken copy, so a failure is known to come from the break.

    python tests/mutation/mutate.py                 # all seven, writes tests/mutation/RESULTS.md
    python tests/mutation/mutate.py --only recorder --no-baseline

A mutation that leaves every selected test passing is a *survivor*: the suite would not notice that break.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclasses.dataclass(frozen=True)
class Mutation:
    name: str
    file: str
    old: str  # must occur exactly once in the file
    new: str
    why: str
    tests: tuple[str, ...]  # pytest arguments (files, -k expressions)


MUTATIONS = [
    Mutation("features", "tf_symbolic_l2o/features.py",
             'cache["mhat"] = new["m"] / (1.0 - tf.pow(b1, t))', 'cache["mhat"] = new["m"]',
             "m̃ loses its bias correction",
             ("tests/test_features.py",)),
    Mutation("rules", "tf_symbolic_l2o/rules/ops.py",
             "x2 * (1.0 / 5040.0)", "x2 * (1.0 / 504.0)",
             "the float32 sinh's Taylor series gets a wrong x⁷ coefficient (≤ 3e-5 relative error for x within ±½)",
             ("tests/test_rules.py",)),
    Mutation("unroll", "tf_symbolic_l2o/meta/unroll.py",
             "                delta, state = self.l2o.update(grad, state, step0 + k + 1, params=theta)\n"
             "                theta = theta + delta\n",
             "                delta, state = self.l2o.update(grad, state, step0 + k + 1, params=theta)\n"
             "                theta = theta + 0.5 * delta\n",
             "the meta-training window applies half of each step",
             ("tests/test_meta.py", "-k", "rollout or finite_differences or numpy or xla")),
    Mutation("trainer_resume", "tf_symbolic_l2o/meta/trainer.py",
             "latest = self.manager.latest_checkpoint", "latest = None",
             "resume silently restarts from epoch 0 (every draw is stateless, so the weights still match)",
             ("tests/test_meta.py", "tests/test_tune.py", "-k", "resume")),
    Mutation("keras_update", "tf_symbolic_l2o/optimizers/symbolic.py",
             "self.assign(history, new_history)", "self.assign(history, old_history)",
             "the Keras optimizer never advances its lag history (lagged inputs stay zero)",
             ("tests/test_keras_optimizers.py",)),
    Mutation("recorder", "tf_symbolic_l2o/record.py",
             "ya = ya.write(k, tf.gather(raw, coords))", "ya = ya.write(k, tf.gather(raw, tf.reverse(coords, [0])))",
             "recorded targets come from other coordinates than their features",
             ("tests/test_record.py",)),
    Mutation("distiller", "tf_symbolic_l2o/distill/distill.py",
             "np.concatenate([y_tr, -y_tr])", "np.concatenate([y_tr, y_tr])",
             "the symmetrised rows keep y instead of −y",
             ("tests/test_distill.py", "tests/test_distill_sparse.py", "-k", "not operon")),
]


def copy_tree(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                           check=True, capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def run_tests(tree: Path, args: tuple[str, ...], timeout: int) -> tuple[bool, str, float]:
    """Runs pytest on ``tree``; returns (all passed, the first failing test or a summary, seconds)."""
    env = {**os.environ, "PYTHONPATH": str(tree), "TF_CPP_MIN_LOG_LEVEL": "3"}
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *args]
    t0 = time.time()
    try:
        out = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f"timed out after {timeout} s", time.time() - t0
    seconds = time.time() - t0
    lines = out.stdout.strip().splitlines()
    failed = [ln.split(" ")[1] for ln in lines if ln.startswith("FAILED ") or ln.startswith("ERROR ")]
    summary = lines[-1] if lines else out.stderr.strip()[-200:]
    return out.returncode == 0, (failed[0] if failed else summary), seconds


def check_imports_copy(tree: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    where = subprocess.run([sys.executable, "-c", "import tf_symbolic_l2o, sys; sys.stdout.write(tf_symbolic_l2o.__file__)"],
                           cwd=tree, env=env, capture_output=True, text=True, check=True).stdout
    if not Path(where).resolve().is_relative_to(tree.resolve()):
        raise SystemExit(f"the copy does not shadow the installed package (imported {where})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="mutation names (default: all)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the run on the unbroken copy")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per pytest run")
    parser.add_argument("--out", default=str(ROOT / "tests" / "mutation" / "RESULTS.md"))
    args = parser.parse_args()
    chosen = [m for m in MUTATIONS if not args.only or m.name in args.only]
    if args.only and len(chosen) != len(args.only):
        raise SystemExit(f"unknown mutation among {args.only}; known: {[m.name for m in MUTATIONS]}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="tfl2o-mutate-") as tmp:
        tree = Path(tmp) / "tree"
        copy_tree(tree)
        check_imports_copy(tree)
        for m in chosen:
            path = tree / m.file
            original = path.read_text()
            if original.count(m.old) != 1:
                raise SystemExit(f"{m.name}: the line to break occurs {original.count(m.old)} times in {m.file}")
            base = "skipped"
            if not args.no_baseline:
                ok, what, s = run_tests(tree, m.tests, args.timeout)
                base = f"pass ({s:.0f} s)" if ok else f"FAILS UNBROKEN: {what}"
            path.write_text(original.replace(m.old, m.new))
            try:
                ok, what, s = run_tests(tree, m.tests, args.timeout)
            finally:
                path.write_text(original)
            verdict = "SURVIVED" if ok else "killed"
            rows.append((m, base, verdict, what, s))
            print(f"{m.name:15s} baseline {base:22s} mutated: {verdict:8s} {what} ({s:.0f} s)", flush=True)
    lines = ["# Mutation check", "", f"`python tests/mutation/mutate.py`, run {time.strftime('%Y-%m-%d %H:%M')} "
             "(one deliberate break per stage; a break is *killed* when at least one selected test fails).", "",
             "| stage | file | break | tests run | unbroken | broken | first failing test | s |", "|---|---|---|---|---|---|---|---|"]
    for m, base, verdict, what, s in rows:
        lines.append(f"| {m.name} | `{m.file}` | {m.why} | `{' '.join(m.tests)}` | {base} | {verdict} | `{what}` | "
                     f"{s:.0f} |")
    survivors = [r[0].name for r in rows if r[2] == "SURVIVED"]
    lines += ["", f"Survivors: {', '.join(survivors) if survivors else 'none'}."]
    if not args.only:
        Path(args.out).write_text("\n".join(lines) + "\n")
        print(f"wrote {args.out}")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
