"""A symbolic rule as a functional coordinate-wise optimizer (closed-loop evaluation, recording, meta-tuning).

    features_t = FeatureSet.update(g_t)                 (the same module the LSTM optimizers use)
    x_t        = [features_t, features_{t-1}, …, features_{t-memlen+1}]   (zeros before the history fills)
    Δθ_t       = output_scale · f(x_t)              (times the step gain exp(lgain_t) if the feature set has one)

This follows the :class:`~tf_symbolic_l2o.functional.base.CoordinateOptimizer` protocol, so the meta-training engine,
the evaluator and the recorder drive a rule exactly as they drive an LSTM.
"""

from __future__ import annotations

from tf_symbolic_l2o._lazy import LazyModule
from tf_symbolic_l2o.rules.rule import Rule

tf = LazyModule("tensorflow")


def lag_window(features: tf.Tensor, history: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """The rule's input and the next history, for features of any shape (TensorFlow).

    Args:
        features: this step's features, ``[*shape, F]``.
        history: the previous ``memlen − 1`` steps' features, ``[memlen − 1, *shape, F]``, most recent first.

    Returns:
        ``x`` of shape ``[*shape, memlen·F]`` in the rules' lag-major input order (``[f0_0, f1_0, …, f0_1, …]``),
        and the window without its oldest step (the next ``history``).
    """
    window = tf.concat([features[None], history], axis=0)  # [memlen, *shape, F], lag 0 first
    rank = features.shape.rank - 1
    x = tf.transpose(window, list(range(1, rank + 1)) + [0, rank + 1])  # [*shape, memlen, F]
    x = tf.reshape(x, tf.concat([tf.shape(features)[:-1], [-1]], axis=0))
    return x, window[:-1]


class RuleOptimizer:
    """Apply a :class:`Rule` to a flat vector of coordinates.

    Args:
        rule: the symbolic rule.
        constants: optional replacement for the rule's constants (pre-order): a vector, e.g. a trainable
            ``tf.Variable``, or a callable returning one at every step (the meta-tuner's tied constants).
        name: label in reports.
    """

    def __init__(self, rule: Rule, constants=None, name: str | None = None):
        self.rule = rule = rule.minimal()  # same updates, only the state the formula needs
        self.features = rule.feature_set
        self.memlen = int(rule.memlen)
        self.output_scale = float(rule.output_scale)
        self.constants = constants
        self.name = name or "rule"
        self._f = rule.tf_fn()

    def init_state(self, num_coords):
        history = tf.zeros([self.memlen - 1, num_coords, self.features.num_features])
        return self.features.init_state([num_coords]), history

    def split_state(self, state, sizes):
        """The state of ``sum(sizes)`` coordinates as one state per consecutive block of ``sizes[i]`` coordinates."""
        feat_state, history = state
        feats = {k: tf.split(v, sizes) for k, v in feat_state.items()}
        histories = tf.split(history, sizes, axis=1)
        return [({k: feats[k][i] for k in feat_state}, histories[i]) for i in range(len(sizes))]

    def merge_state(self, states):
        """The inverse of :meth:`split_state`."""
        feats = {k: tf.concat([s[0][k] for s in states], 0) for k in states[0][0]}
        return feats, tf.concat([s[1] for s in states], axis=1)

    def inputs(self, grad, state, step):
        """``(x [n, memlen·F], features [n, F], new_state)``: the rule's input window after this gradient."""
        feat_state, history = state
        feats, feat_state = self.features.update(feat_state, grad, step)
        x, history = lag_window(feats, history)
        return x, feats, (feat_state, history)

    def raw(self, x):
        """``f(x)`` with the current constants."""
        return self._f(x, self.constants() if callable(self.constants) else self.constants)

    def forward(self, grad, state, step):
        """``(raw f(x) [n], features [n, F], new_state)``."""
        x, feats, state = self.inputs(grad, state, step)
        return self.raw(x), feats, state

    def num_coords(self, state):
        """The number of coordinates ``state`` holds: the static size when known, else a scalar tensor."""
        history = state[1]
        return history.shape[1] if history.shape[1] is not None else tf.shape(history)[1]

    def step_scale(self, state, num_coords=None):
        """The factor from ``f(x)`` to the step for an advanced ``state``: ``output_scale``, times the per-coordinate
        step gain when the feature set has one, times the rule's :meth:`~tf_symbolic_l2o.rules.Rule.size_factor`
        of ``num_coords``: the coordinates the optimizer updates, by default those of ``state`` (pass the whole
        vector's size when ``state`` is one block of it, see :meth:`split_state`)."""
        scale = self.output_scale
        if self.rule.size_scale is not None:
            scale = scale * self.rule.size_factor(self.num_coords(state) if num_coords is None else num_coords)
        gain = self.features.step_gain(state[0])
        return scale if gain is None else scale * gain

    def update(self, grad, state, step, params=None):
        """``(output_scale · f(x) [· gain] [· size factor], new_state)``; ``params`` (θ) is not used."""
        del params
        raw, _, state = self.forward(grad, state, step)
        return self.step_scale(state) * raw, state
