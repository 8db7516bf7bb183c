"""The package as users install it: a wheel and an sdist built from the source tree, what is inside them, and the
installed wheel used from another directory (shipped optimizers by name, the CLI)."""

import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_RULES = ("symbolic_rp_gain", "symbolic_rp_ema_family", "symbolic_rp_ema", "symbolic_rp_family", "symbolic_rp",
                 "symbolic_rp_si", "symbolic_rp_si_gain", "symbolic_dm", "symbolic_dm_gain", "symbolic_rp_small",
                 "symbolic_psi_tuned", "symbolic_psi_resnet50")
SHIPPED_LSTMS = ("rp_mnist_mlp", "rp_s_mnist_mlp", "rp_si_mnist_mlp", "dm_mnist_mlp")


def _build(kind: str, out: Path) -> Path:
    """Build through setuptools' PEP 517 hooks in a fresh process (no network, no build isolation)."""
    code = f"from setuptools import build_meta; print(build_meta.build_{kind}({str(out)!r}))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return out / done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    return _build("wheel", tmp_path_factory.mktemp("wheel"))


def test_the_wheel_holds_every_package_and_the_shipped_artifacts(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = {p.parent.relative_to(ROOT).as_posix() for p in ROOT.glob("tf_symbolic_l2o/**/__init__.py")}
    for package in packages | {"cli"}:
        assert f"{package}/__init__.py" in names, f"{package} missing from the wheel (pyproject.toml packages)"
    for rule in SHIPPED_RULES:
        assert f"tf_symbolic_l2o/saved_models/{rule}/rule.json" in names
    for lstm in SHIPPED_LSTMS:
        for f in ("l2o.json", "weights.index", "weights.data-00000-of-00001"):
            assert f"tf_symbolic_l2o/saved_models/{lstm}/{f}" in names
    assert "tf_symbolic_l2o/saved_models/MANIFEST.json" in names
    assert not any(n.startswith(("tests/", "benchmarks/", "saved_models/")) for n in names)
    assert not any("/saved_model/" in n for n in names)  # the LSTMs' SavedModel exports stay in the repository


def test_the_sdist_holds_the_sources_and_saved_models(tmp_path):
    sdist = _build("sdist", tmp_path)
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for needed in ("pyproject.toml", "README.md", "cli/main.py", "tf_symbolic_l2o/__init__.py",
                   "saved_models/symbolic_rp/rule.json", "saved_models/rp_mnist_mlp/l2o.json"):
        assert needed in names, needed


def test_the_installed_wheel_works_from_another_directory(wheel, tmp_path):
    """`pip install` of the wheel (dependencies from this environment: no network), then from an unrelated
    directory: the presets, a shipped LSTM by name, `tfl2o record` of it and the smoke benchmark."""
    target = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target",
                           str(target), str(wheel)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target), "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("TFL2O_SAVED_MODELS", None)
    code = ("import tf_symbolic_l2o, keras\n"
            f"assert tf_symbolic_l2o.__file__.startswith({str(target)!r}), tf_symbolic_l2o.__file__\n"
            "from tf_symbolic_l2o.artifacts import saved_models_dir\n"
            f"assert str(saved_models_dir()).startswith({str(target)!r}), saved_models_dir()\n"
            "from tf_symbolic_l2o.optimizers import SymbolicRP, SymbolicRPsi, SymbolicDM, LearnedOptimizer\n"
            "for opt in (SymbolicRP(), SymbolicRPsi(), SymbolicDM(), LearnedOptimizer('rp_mnist_mlp')):\n"
            "    v = keras.Variable([1.0, -2.0])\n"
            "    opt.apply_gradients([(keras.ops.convert_to_tensor([0.5, -0.5]), v)])\n"
            "    assert float(v[0]) < 1.0 and float(v[1]) > -2.0, (opt, v)\n"
            "print('presets ok')\n")
    run = subprocess.run([sys.executable, "-c", code], cwd=work, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0 and "presets ok" in run.stdout, run.stderr[-2000:]
    record = subprocess.run([sys.executable, "-m", "cli", "record", "rp_mnist_mlp", "--out", "rows.npy",
                             "--samples", "200", "--steps", "20", "--no-progress"], cwd=work, env=env,
                            capture_output=True, text=True, timeout=300)
    assert record.returncode == 0, record.stdout[-1000:] + record.stderr[-2000:]
    assert np.load(work / "rows.npy", allow_pickle=False).shape[0] == 200
    bench = subprocess.run([sys.executable, "-m", "cli", "benchmark", "--suite", "smoke", "--out", "bench",
                            "--no-progress"], cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert bench.returncode == 0, bench.stdout[-1000:] + bench.stderr[-2000:]
    assert (work / "bench" / "report" / "results.md").is_file()
