"""Coordinate-wise LSTM optimizers (DM and RNNprop share this one layer).

Each scalar parameter of the optimizee is one row of a ``[n_coords, F]`` batch; all coordinates share the weights:

    features (F per coordinate, from :mod:`tf_symbolic_l2o.features`)
      → optional input transform (DM: LogAndSign(k))
      → Dense + ELU preprocessing layers (RNNprop)
      → a stack of LSTM cells
      → Dense(1) → tanh (RNNprop) or linear (DM)  = h(x)
    out = h(x)                                    (odd=False)
    out = ½·(h(x) − h(x̄))                         (odd=True: x̄ = the inputs of the negated gradient sequence)
    θ ← θ + output_scale · out        (output_scale = 0.01; the network learns the descent sign)

With ``odd=True`` the network runs twice per step, on the features of the gradient sequence and on those of its
negation (odd features negated, ``t``/``s`` kept; for DM, LogAndSign(−g)), each branch with its own LSTM state.
Negating the whole gradient sequence swaps the two branches, so it negates every output exactly; a zero gradient
history feeds both branches the same inputs, so the output is exactly zero (no drift at rest). The stored LSTM
state is then ``[n, 2·units]`` per layer (the two branches side by side).

The raw output (before the ×0.01) is what the behaviour recorder stores and what symbolic rules imitate.

The layer computes with TensorFlow on Keras' TensorFlow backend (meta-training, recording, export) and with
``keras.ops`` on the other backends (:class:`~tf_symbolic_l2o.optimizers.LearnedOptimizer` under JAX or PyTorch);
TensorFlow is imported only in the first case.
"""

from __future__ import annotations

from typing import Sequence

import keras

from tf_symbolic_l2o.features import FeatureSet, array_ops, keras_array_backend

INPUT_TRANSFORMS = ("none", "log_and_sign")
OUTPUT_ACTIVATIONS = ("linear", "tanh")


def log_and_sign(g, k: float = 5.0, backend: str = "tensorflow"):
    """DM's gradient preprocessing (Andrychowicz et al. 2016, TF code with k = 5).

    ``[clip(log(|g| + eps)/k, -1, 1), clip(g·eᵏ, -1, 1)]`` with eps the float32 machine epsilon; shape ``g + [2]``.
    """
    o = array_ops(backend)
    dtype = o.dtype(g)
    log = o.clip(o.log(o.abs(g) + o.constant(1.1920929e-07, dtype)) / k, -1.0, 1.0)
    sign = o.clip(g * o.exp(o.constant(k, dtype)), -1.0, 1.0)
    return o.stack([log, sign], axis=-1)


@keras.saving.register_keras_serializable(package="tfl2o")
class CoordinatewiseLSTM(keras.layers.Layer):
    """A coordinate-wise LSTM learned optimizer.

    Args:
        features: feature string or :class:`FeatureSet` (``"g"`` for DM, ``"mt+gt"`` for RNNprop).
        preproc: widths of the Dense+ELU preprocessing layers (``()`` for DM).
        lstm: widths of the stacked LSTM cells.
        output_activation: ``"tanh"`` (RNNprop) or ``"linear"`` (DM).
        input_transform: ``"log_and_sign"`` (DM) or ``"none"``.
        log_and_sign_k: k of LogAndSign.
        output_scale: the fixed step scale (0.01 in the paper).
        beta1, beta2: decays of the feature moments.
        optimizer_name: a label (``"rp"``, ``"dm"``, …).
        seed: seeds the weight initialisers (Keras defaults: Glorot-uniform kernels, orthogonal recurrent
            kernels), so two optimizers built with the same seed start identical. ``None``: unseeded.
        odd: antisymmetrise the output, ½·(h(x) − h(x̄)) (see the module docstring): the optimizer then steps
            zero at rest and exactly opposite for opposite gradient sequences. ``False`` (the layer's default, and
            what configs saved without the key mean) is the plain network.
    """

    def __init__(self, features="mt+gt", preproc: Sequence[int] = (20,), lstm: Sequence[int] = (20, 20),
                 output_activation: str = "tanh", input_transform: str = "none", log_and_sign_k: float = 5.0,
                 output_scale: float = 0.01, beta1: float = 0.95, beta2: float = 0.95,
                 optimizer_name: str = "l2o", seed: int | None = None, odd: bool = False, **kwargs):
        super().__init__(**kwargs)
        if output_activation not in OUTPUT_ACTIVATIONS:
            raise ValueError(f"output_activation must be one of {OUTPUT_ACTIVATIONS}, got {output_activation!r}")
        if input_transform not in INPUT_TRANSFORMS:
            raise ValueError(f"input_transform must be one of {INPUT_TRANSFORMS}, got {input_transform!r}")
        if not lstm or any(int(u) <= 0 for u in lstm) or any(int(u) <= 0 for u in preproc):
            raise ValueError(f"layer widths must be positive and lstm non-empty, got preproc={list(preproc)} "
                             f"lstm={list(lstm)}")
        if not output_scale > 0:
            raise ValueError(f"output_scale must be positive, got {output_scale}")
        self.feature_set = features if isinstance(features, FeatureSet) else FeatureSet(features, beta1, beta2)
        if input_transform == "log_and_sign" and self.feature_set.names != ("g",):
            raise ValueError("log_and_sign preprocessing expects the raw gradient: use features='g'")
        self.preproc_units = tuple(int(u) for u in preproc)
        self.lstm_units = tuple(int(u) for u in lstm)
        self.output_activation = output_activation
        self.input_transform = input_transform
        self.log_and_sign_k = float(log_and_sign_k)
        self.output_scale = float(output_scale)
        self.optimizer_name = optimizer_name
        self.seed = seed
        self.odd = bool(odd)
        init = self._initializer
        self.preproc_layers = [keras.layers.Dense(u, activation="elu", name=f"preproc_{i}",
                                                  kernel_initializer=init("glorot_uniform", 10 + i))
                               for i, u in enumerate(self.preproc_units)]
        self.cells = [keras.layers.LSTMCell(u, name=f"lstm_{i}", kernel_initializer=init("glorot_uniform", 20 + i),
                                            recurrent_initializer=init("orthogonal", 30 + i))
                      for i, u in enumerate(self.lstm_units)]
        self.head = keras.layers.Dense(1, name="output", kernel_initializer=init("glorot_uniform", 40))
        self.build_all()

    @property
    def num_inputs(self) -> int:
        return 2 if self.input_transform == "log_and_sign" else self.feature_set.num_features

    def _initializer(self, kind: str, offset: int):
        seed = None if self.seed is None else int(self.seed) * 1000 + offset
        return keras.initializers.get({"class_name": kind, "config": {"seed": seed}})

    def build_all(self):
        """Create every weight now (deterministic variable order for checkpoints and export)."""
        width = self.num_inputs
        for layer in self.preproc_layers:
            layer.build((None, width))
            width = layer.units
        for cell in self.cells:
            cell.build((None, width))
            width = cell.units
        self.head.build((None, width))
        self.built = True

    @property
    def state_units(self) -> tuple[int, ...]:
        """Width of the stored ``h`` and ``c`` of each LSTM layer: its units, doubled when ``odd``."""
        return tuple(2 * u if self.odd else u for u in self.lstm_units)

    # -- the CoordinateOptimizer protocol ---------------------------------------------------------------
    def init_state(self, num_coords):
        """``(feature_state, ((h, c) per LSTM layer))``, all zeros; ``h``, ``c`` are ``[n, state_units[i]]``."""
        backend = keras_array_backend()
        zeros = array_ops(backend).zeros
        lstm = tuple((zeros([num_coords, u]), zeros([num_coords, u])) for u in self.state_units)
        return self.feature_set.init_state([num_coords], backend=backend), lstm

    def _inputs(self, grad, feats, backend):
        """The network's input ``[n, num_inputs]`` and, when ``odd``, that of the negated gradient sequence."""
        if self.input_transform == "log_and_sign":
            x = log_and_sign(grad, self.log_and_sign_k, backend)
            return x, (log_and_sign(-grad, self.log_and_sign_k, backend) if self.odd else None)
        if not self.odd:
            return feats, None
        o = array_ops(backend)
        return feats, feats * o.constant(self.feature_set.parity(), o.dtype(feats))

    def _network(self, x, lstm_state, backend):
        """h(x) ``[rows]`` and the new ``((h, c), …)`` for rows of inputs ``x`` and states ``lstm_state``."""
        for layer in self.preproc_layers:
            x = layer(x)
        new_lstm = []
        for cell, (h, c) in zip(self.cells, lstm_state):
            x, (h, c) = cell(x, [h, c])
            new_lstm.append((h, c))
        out = self.head(x)[:, 0]
        if self.output_activation == "tanh":
            out = array_ops(backend).tanh(out)
        return out, tuple(new_lstm)

    def forward(self, grad, state, step):
        """One step: ``(raw_output [n], features [n, F], new_state)``."""
        feat_state, lstm_state = state
        backend = keras_array_backend()
        feats, feat_state = self.feature_set.update(feat_state, grad, step, backend)
        x, x_neg = self._inputs(grad, feats, backend)
        if not self.odd:
            out, new_lstm = self._network(x, lstm_state, backend)
            return out, feats, (feat_state, new_lstm)
        # Two calls of the same shape, not one batch of 2n rows: a matrix product may round a row differently by
        # its position in the batch, and then the branches would not mirror each other bit for bit.
        pos_state = tuple((h[:, :u], c[:, :u]) for (h, c), u in zip(lstm_state, self.lstm_units))
        neg_state = tuple((h[:, u:], c[:, u:]) for (h, c), u in zip(lstm_state, self.lstm_units))
        pos, new_pos = self._network(x, pos_state, backend)
        neg, new_neg = self._network(x_neg, neg_state, backend)
        join = array_ops(backend).concatenate
        new_lstm = tuple((join([hp, hn], axis=1), join([cp, cn], axis=1))
                         for (hp, cp), (hn, cn) in zip(new_pos, new_neg))
        return 0.5 * (pos - neg), feats, (feat_state, new_lstm)

    def update(self, grad, state, step, params=None):
        """``(output_scale · forward's raw output, new_state)``; ``params`` (θ) is not used."""
        del params
        out, _, state = self.forward(grad, state, step)
        return self.output_scale * out, state

    def call(self, grad, state, step):
        return self.update(grad, state, step)

    def state_floats_per_coordinate(self) -> int:
        return len(self.feature_set.state_names()) + 2 * sum(self.state_units)

    def get_config(self):
        config = super().get_config()
        config.update({
            "features": self.feature_set.spec, "preproc": list(self.preproc_units), "lstm": list(self.lstm_units),
            "output_activation": self.output_activation, "input_transform": self.input_transform,
            "log_and_sign_k": self.log_and_sign_k, "output_scale": self.output_scale,
            "beta1": self.feature_set.beta1, "beta2": self.feature_set.beta2,
            "optimizer_name": self.optimizer_name, "seed": self.seed, "odd": self.odd,
        })
        return config
