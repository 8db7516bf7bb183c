"""Where the shipped artifacts (``saved_models/``: learned optimizers, distilled and tuned rules) are found."""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

_REPO_SAVED_MODELS = Path(__file__).resolve().parents[1] / "saved_models"
#: The package a wheel installs ``saved_models/`` as (``pyproject.toml``: ``package-dir``).
PACKAGE = "tf_symbolic_l2o.saved_models"


def _installed() -> Path | None:
    """The ``saved_models/`` of a wheel install, through :mod:`importlib.resources` (``None`` when absent)."""
    try:
        path = Path(str(importlib.resources.files(PACKAGE)))  # a regular package: a real folder
    except (ModuleNotFoundError, TypeError):
        return None
    return path if path.is_dir() else None


def saved_models_dir() -> Path:
    """Where the shipped artifacts live: ``$TFL2O_SAVED_MODELS``, the repository's ``saved_models/`` (source or
    editable install) or the installed package data ``tf_symbolic_l2o/saved_models`` (wheel install)."""
    for c in (os.environ.get("TFL2O_SAVED_MODELS"), _REPO_SAVED_MODELS):
        if c and Path(c).is_dir():
            return Path(c)
    installed = _installed()
    if installed is not None:
        return installed
    raise FileNotFoundError("the shipped saved_models/ folder was not found; set TFL2O_SAVED_MODELS to its path")


def resolve_artifact(ref: str | os.PathLike) -> Path:
    """``ref`` as a path when it exists; a bare name of a shipped artifact (``rp_mnist_mlp``, ``symbolic_rp``) as
    its folder in :func:`saved_models_dir`; otherwise ``ref`` unchanged as a path (the caller reports it missing)."""
    path = Path(ref)
    if path.exists() or len(path.parts) != 1:
        return path
    try:
        shipped = saved_models_dir() / path
    except FileNotFoundError:
        return path
    return shipped if shipped.is_dir() else path
