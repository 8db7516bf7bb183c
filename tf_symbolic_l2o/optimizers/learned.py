"""A trained coordinate-wise LSTM optimizer (DM / RNNprop) as a Keras 3 optimizer."""

from __future__ import annotations

import os
from typing import Mapping

import keras
import numpy as np

from tf_symbolic_l2o.features import array_ops, keep_where, keras_array_backend
from tf_symbolic_l2o.learned.io import load_l2o, set_checked_weights
from tf_symbolic_l2o.learned.lstm import CoordinatewiseLSTM
from tf_symbolic_l2o.learned.registry import l2o_from_config
from tf_symbolic_l2o.optimizers._common import BASE_ARGS_DOC, add_slot, all_finite, dense_gradient


def _l2o_from_dict(d: Mapping) -> CoordinatewiseLSTM:
    """Rebuild an L2O from ``{"config": layer config, "weights": [nested lists]}`` (the :meth:`get_config` layout)."""
    unknown = set(d) - {"config", "weights"}
    if unknown or "config" not in d or "weights" not in d:
        raise ValueError("a learned-optimizer dict needs exactly the keys 'config' and 'weights', got "
                         f"{sorted(map(str, d))[:10]}")
    config = d["config"]
    if not isinstance(config, Mapping):
        raise ValueError(f"l2o 'config' must be a dict, got {type(config).__name__}")
    try:
        l2o = l2o_from_config({**config, "dtype": "float32"})
    except (KeyError, TypeError) as e:
        raise ValueError(f"l2o 'config' does not describe a learned optimizer ({e})") from None
    weights = d["weights"]
    if not isinstance(weights, (list, tuple)):
        raise ValueError(f"l2o 'weights' must be a list of arrays, got {type(weights).__name__}")
    set_checked_weights(l2o, weights, "the l2o dict")
    return l2o


def _float32(l2o: CoordinatewiseLSTM) -> CoordinatewiseLSTM:
    """``l2o`` itself if it computes in float32, else a float32 copy (e.g. one built under a ``mixed_float16``
    global policy): the optimizer always runs the network in float32."""
    policy = l2o.dtype_policy
    if policy.compute_dtype == "float32" and policy.variable_dtype == "float32":
        return l2o
    copy = l2o_from_config({**l2o.get_config(), "dtype": "float32"})
    copy.set_weights([np.asarray(w, np.float32) for w in l2o.get_weights()])
    return copy


def as_l2o(l2o) -> CoordinatewiseLSTM:
    """A float32 :class:`CoordinatewiseLSTM` from one, a saved L2O folder / run directory, or a config+weights
    dict."""
    if isinstance(l2o, CoordinatewiseLSTM):
        return _float32(l2o)
    if isinstance(l2o, Mapping):
        return _l2o_from_dict(l2o)
    if isinstance(l2o, (str, os.PathLike)):
        return _float32(load_l2o(l2o))
    raise ValueError("l2o must be a CoordinatewiseLSTM, the path of a saved learned optimizer or a "
                     f"{{'config', 'weights'}} dict, got {type(l2o).__name__}")


@keras.saving.register_keras_serializable(package="tfl2o")
class LearnedOptimizer(keras.optimizers.Optimizer):
    """Optimizer that runs a trained coordinate-wise LSTM optimizer (DM, RNNprop) on every coordinate.

    For every coordinate of every variable, at step ``t`` (1-based, ``optimizer.iterations + 1``)::

        raw, state ← l2o.forward(g_t, state, t)
        θ          ← θ + learning_rate · output_scale · raw

    which is the same trajectory as driving the L2O functionally (``l2o.update``) on the flattened variable.
    ``learning_rate`` is a **multiplier on the L2O's native step** (default 1.0 = as meta-trained); schedules and
    callables work as for any Keras optimizer.

    The network always runs in float32 (an L2O built under a mixed-precision global policy is copied to a float32
    one), whatever the variables' dtype; the step is cast back to the variable's dtype. The L2O's weights are
    constants of the optimizer: they are not trainable variables of the model being
    optimized and are never updated. :meth:`get_config` stores the L2O's layer config **and its weights** (as
    nested lists; the networks are small — 418 floats for ``rp_s``), so a ``.keras`` file is self-contained and
    loads without the original L2O folder. (Keras' saving also walks the optimizer's attributes, so the ``.keras``
    weights file holds a second, identical copy of the network's weights under ``optimizer/l2o``; a
    ``tf.train.Checkpoint`` of the optimizer likewise includes them. Both are restored to the same values.)

    Optimizer variables (created in :meth:`build`, in this order, for each trainable variable ``θ`` in turn, all
    float32): one slot per name of ``l2o.feature_set.state_names()``, shaped like ``θ``; then, for each LSTM
    layer ``i``, ``lstm_{i}_h`` and ``lstm_{i}_c`` of shape ``[*θ.shape, l2o.state_units[i]]`` (the layer's
    units, doubled for an odd L2O, which carries the state of its negated branch beside it).

    It runs on every Keras backend: with TensorFlow ops on TensorFlow, with ``keras.ops`` on JAX and PyTorch (the
    same values to float32 rounding; the L2O's weights are read from ``weights.npz``, no TensorFlow needed).

    Sparse gradients are densified (the LSTM state of every coordinate advances at every step); non-finite
    values are handled as in :class:`~tf_symbolic_l2o.optimizers.SymbolicOptimizer`: a coordinate whose gradient,
    new state or step is not finite keeps its parameter and state for this step.

    Args:
        l2o: the learned optimizer: a :class:`~tf_symbolic_l2o.learned.lstm.CoordinatewiseLSTM`, the path of a
            folder written by :func:`~tf_symbolic_l2o.learned.io.save_l2o` (or a run directory containing
            ``l2o/``), or a ``{"config": …, "weights": …}`` dict as stored by :meth:`get_config`.
        learning_rate: A float, a ``keras.optimizers.schedules.LearningRateSchedule`` instance, or a callable that
            takes no arguments and returns the value to use: the multiplier on the L2O's step. Defaults to 1.0.
        {{base_args}}

    References:
        - Andrychowicz et al., "Learning to learn by gradient descent by gradient descent", NeurIPS 2016 (DM).
        - Lv, Jiang, Li, "Learning Gradient Descent: Better Generalization and Longer Horizons", ICML 2017
          (RNNprop).
        - Zheng, Chen, Hu, Wang, "Symbolic Learning to Optimize", ICLR 2022.
    """

    def __init__(
        self,
        l2o,
        learning_rate=1.0,
        weight_decay=None,
        clipnorm=None,
        clipvalue=None,
        global_clipnorm=None,
        use_ema=False,
        ema_momentum=0.99,
        ema_overwrite_frequency=None,
        loss_scale_factor=None,
        gradient_accumulation_steps=None,
        name="learned",
        **kwargs,
    ):
        l2o = as_l2o(l2o)
        super().__init__(
            learning_rate=learning_rate,
            name=name,
            weight_decay=weight_decay,
            clipnorm=clipnorm,
            clipvalue=clipvalue,
            global_clipnorm=global_clipnorm,
            use_ema=use_ema,
            ema_momentum=ema_momentum,
            ema_overwrite_frequency=ema_overwrite_frequency,
            loss_scale_factor=loss_scale_factor,
            gradient_accumulation_steps=gradient_accumulation_steps,
            **kwargs,
        )
        self.l2o = l2o
        self._state_names = l2o.feature_set.state_names()
        self._lstm_units = tuple(l2o.state_units)
        self._output_scale = float(l2o.output_scale)

    def build(self, var_list):
        """Create the optimizer variables (see the class docstring for names, shapes and order).

        Args:
            var_list: list of model variables to build the L2O's state on.
        """
        if self.built:
            return
        super().build(var_list)
        state_slots, lstm_slots = [], []
        for var in var_list:
            if self._overwrite_variable_with_gradient(var):
                state_slots.append(None)
                lstm_slots.append(None)
                continue
            state_slots.append([add_slot(self, var, name, dtype="float32") for name in self._state_names])
            lstm_slots.append([
                (add_slot(self, var, f"lstm_{i}_h", shape=(*var.shape, u), dtype="float32"),
                 add_slot(self, var, f"lstm_{i}_c", shape=(*var.shape, u), dtype="float32"))
                for i, u in enumerate(self._lstm_units)])
        self._state_slots = state_slots
        self._lstm_slots = lstm_slots

    def update_step(self, gradient, variable, learning_rate):
        """Update step given gradient and the associated model variable."""
        backend = keras_array_backend()
        o = array_ops(backend)
        index = self._get_variable_index(variable)
        var_dtype = keras.backend.standardize_dtype(variable.dtype)
        if backend == "tensorflow":
            gradient = dense_gradient(gradient, variable)
        g = o.reshape(o.cast(gradient, "float32"), [-1])
        lr = o.cast(learning_rate, "float32")
        step = o.cast(self.iterations + 1, "float32")

        slots = self._state_slots[index]
        lstm = self._lstm_slots[index]
        old_feat = {name: o.reshape(slot, [-1]) for name, slot in zip(self._state_names, slots)}
        old_lstm = tuple((o.reshape(h, [-1, u]), o.reshape(c, [-1, u])) for (h, c), u in zip(lstm, self._lstm_units))
        raw, feats, (new_feat, new_lstm) = self.l2o.forward(g, (old_feat, old_lstm), step)
        # the network's sub-layers may compute in a mixed-precision global policy's dtype: back to float32
        raw, feats = o.cast(raw, "float32"), o.cast(feats, "float32")
        new_feat = {k: o.cast(t, "float32") for k, t in new_feat.items()}
        new_lstm = tuple((o.cast(h, "float32"), o.cast(c, "float32")) for h, c in new_lstm)
        delta = o.cast(lr * o.constant(self._output_scale, "float32") * raw, var_dtype)

        ok = all_finite(g, delta, *new_feat.values(), backend=backend)
        ok = o.logical_and(ok, all_finite(feats, *[t for hc in new_lstm for t in hc], event_dims=1, backend=backend))
        shape = tuple(variable.shape)
        for name, slot in zip(self._state_names, slots):
            self.assign(slot, o.reshape(keep_where(ok, new_feat[name], old_feat[name], backend=backend), shape))
        for (h_slot, c_slot), (h_old, c_old), (h_new, c_new) in zip(lstm, old_lstm, new_lstm):
            self.assign(h_slot, o.reshape(keep_where(ok, h_new, h_old, event_dims=1, backend=backend), h_slot.shape))
            self.assign(c_slot, o.reshape(keep_where(ok, c_new, c_old, event_dims=1, backend=backend), c_slot.shape))
        self.assign_add(variable, o.reshape(o.where(ok, delta, o.zeros_like(delta)), shape))

    def get_config(self):
        config = super().get_config()
        config.update({"l2o": {"config": self.l2o.get_config(),
                               "weights": [np.asarray(w).tolist() for w in self.l2o.get_weights()]}})
        return config


LearnedOptimizer.__doc__ = LearnedOptimizer.__doc__.replace("{{base_args}}", BASE_ARGS_DOC)
