"""Named learned optimizers: DM and the RNNprop family (RP, RP_s, RP_si).

==========  ===========================  ==========  ============  ========  =========================================
name        features                     preproc     LSTM          head      reference
==========  ===========================  ==========  ============  ========  =========================================
``dm``      g → LogAndSign(k=5)          —           (20, 20)      linear    Andrychowicz et al. 2016 (TF version)
``rp``      m̃, g̃                         Dense 20    (20, 20)      tanh      RNNprop, Lv et al. 2017 (full size)
``rp_s``    m̃, g̃                         Dense 6     (7,)          tanh      the paper's small RNNprop
``rp_si``   m̃, g̃, mp25, mp3 ("magic")    Dense 6     (7,)          tanh      RP_s with the p = 2, 2.5, 3 inputs
==========  ===========================  ==========  ============  ========  =========================================

All use β1 = β2 = 0.95 and output scale 0.01, and are built **odd** (``odd=True``, see
:class:`~tf_symbolic_l2o.learned.lstm.CoordinatewiseLSTM`): a zero gradient history gives a zero step and the
negated gradient sequence the negated steps, so the rules distilled from them can be sound optimizers too.
``make_l2o(name, odd=False)`` builds the plain network of the papers.

RP_si is "RP_s with the magic inputs" m̂ / ((v̂ᵖ)^{1/p} + 1e-8), p = 2, 2.5, 3: the p = 2 input is m̃ (up to ε),
so its inputs are m̃, g̃, mp25, mp3. The authors' code also offers the magic inputs alone (``features=
"mp2+mp25+mp3"``); without g̃ that network trains to 1.6× tuned Adam's loss on the MNIST MLP (README, "Distillation
results").
"""

from __future__ import annotations

from typing import Any

from tf_symbolic_l2o.learned.lstm import CoordinatewiseLSTM

PRESETS: dict[str, dict[str, Any]] = {
    "dm": dict(features="g", preproc=(), lstm=(20, 20), output_activation="linear",
               input_transform="log_and_sign", log_and_sign_k=5.0, odd=True),
    "rp": dict(features="mt+gt", preproc=(20,), lstm=(20, 20), output_activation="tanh", odd=True),
    "rp_s": dict(features="mt+gt", preproc=(6,), lstm=(7,), output_activation="tanh", odd=True),
    "rp_si": dict(features="mt+gt+mp25+mp3", preproc=(6,), lstm=(7,), output_activation="tanh", odd=True),
}


def available_optimizers() -> list[str]:
    return sorted(PRESETS)


def make_l2o(name: str, **overrides) -> CoordinatewiseLSTM:
    """Build a named learned optimizer; keyword arguments override the preset (e.g. ``features="mt+g+mom5"``)."""
    key = name.lower()
    if key not in PRESETS:
        raise ValueError(f"unknown learned optimizer {name!r}; use one of {', '.join(available_optimizers())}")
    kwargs = {**PRESETS[key], **{k: v for k, v in overrides.items() if v is not None}}
    return CoordinatewiseLSTM(optimizer_name=key, **kwargs)


def l2o_from_config(config: dict) -> CoordinatewiseLSTM:
    """Rebuild a learned optimizer from :meth:`CoordinatewiseLSTM.get_config` output (weights not included)."""
    return CoordinatewiseLSTM.from_config(dict(config))
