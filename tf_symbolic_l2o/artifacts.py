"""Where the shipped artifacts (``saved_models/``: learned optimizers, distilled and tuned rules) are found."""

from __future__ import annotations

import os
import sys
from pathlib import Path

_REPO_SAVED_MODELS = Path(__file__).resolve().parents[1] / "saved_models"


def saved_models_dir() -> Path:
    """Where the shipped artifacts live: ``$TFL2O_SAVED_MODELS``, the repository's ``saved_models/`` (source or
    editable install) or ``<prefix>/share/tfl2o/saved_models`` (wheel install)."""
    candidates = [os.environ.get("TFL2O_SAVED_MODELS"), _REPO_SAVED_MODELS,
                  Path(sys.prefix) / "share" / "tfl2o" / "saved_models"]
    for c in candidates:
        if c and Path(c).is_dir():
            return Path(c)
    raise FileNotFoundError("the shipped saved_models/ folder was not found; set TFL2O_SAVED_MODELS to its path")
