"""One step of a symbolic rule on a tensor of coordinates, written once for every array backend: the Keras
optimizer (:class:`~tf_symbolic_l2o.optimizers.SymbolicOptimizer`, TensorFlow or ``keras.ops``) and the optax
transformation (:mod:`tf_symbolic_l2o.optax_rules`, ``jax.numpy``) both call :func:`rule_step`."""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

from tf_symbolic_l2o._lazy import not_converted_by_autograph
from tf_symbolic_l2o.features import FeatureSet, array_ops, keep_where


@not_converted_by_autograph  # its Python control flow is on static values only
def rule_step(feature_set: FeatureSet, rule_fn: Callable, input_names: Sequence[str], output_scale: float, g,
              old_state: Mapping, old_history, step, lr, backend: str = "tensorflow"):
    """The elementwise part of a step, a pure function: ``(new_state, new_history, delta)``; the caller adds
    ``delta`` to the parameters.

    Coordinates whose gradient, or a quantity the state averages (g², |g|ᵖ), is not finite keep their old state
    (and lag history) and get a zero step; a state slot whose new value is not finite keeps its old value; a
    coordinate whose step alone is not finite keeps its parameter. The guard is a function of the gradient alone
    (``FeatureSet.inputs_finite``) and the features come from the guarded state: XLA then writes the mask, each slot
    and the variable in one loop each (SymbolicRP: 4 loops per variable, against 6 with a guard on the whole new
    state).

    Args:
        feature_set: the rule's features; ``old_state`` holds its ``state_names()``.
        rule_fn: the rule on a dict of its inputs (``Rule.tf_fn()`` or ``Rule.keras_fn(backend)``).
        input_names: the rule's inputs (``Rule.inputs``, lag-major: ``[f0_0, f1_0, …, f0_1, …]``). Each is read
            straight from this step's features or the history (a view per input, no copy of the whole window).
        output_scale: the rule's output scale (the step is ``lr · output_scale · f(x)``, times the feature set's
            step gain if it has one).
        g: the gradient (dense), in the state's dtype.
        old_history: ``[memlen − 1, *g.shape, F]`` or ``None`` (``memlen == 1``).
        step: the 1-based step, ``lr`` the multiplier on the rule's step (both in ``g``'s dtype).
        backend: ``"tensorflow"``, ``"keras"`` or ``"jax"`` (:func:`~tf_symbolic_l2o.features.array_ops`).
    """
    o, fs = array_ops(backend), feature_set
    ok = fs.inputs_finite(g, backend)
    new_state = fs.advance(old_state, o.where(ok, g, o.zeros_like(g)), backend, step)
    state = {name: keep_where(o.logical_and(ok, o.isfinite(new_state[name])), new_state[name], old_state[name],
                              backend=backend) for name in old_state}
    cols = fs.features(state, g, step, backend, stack=False)  # this step's features, unstacked: the rule reads them
    num, memlen = len(cols), 1 if old_history is None else old_history.shape[0] + 1
    if len(input_names) != memlen * num:
        raise ValueError(f"the rule has {len(input_names)} inputs, its features and history give {memlen * num}")
    x = {name: cols[i] if i < num else old_history[i // num - 1, ..., i % num] for i, name in enumerate(input_names)}
    delta = lr * o.constant(output_scale, o.dtype(g)) * rule_fn(x)
    gain = fs.step_gain(state, backend)
    if gain is not None:
        delta = delta * gain
    new_history = None
    if old_history is not None:
        shifted = o.concatenate([o.stack(cols, axis=-1)[None], old_history[:-1]], axis=0)

        def guarded():
            return keep_where(ok[None], shifted, old_history, event_dims=1, backend=backend)

        # XLA fuses the guard into the history's write on TensorFlow; elsewhere a select over the whole history
        # costs a pass of its own (eager PyTorch), so it runs only when a coordinate is not finite
        new_history = guarded() if backend == "tensorflow" else o.cond(o.all(ok), lambda: shifted, guarded)
    step_ok = o.logical_and(ok, o.isfinite(delta))
    return state, new_history, o.where(step_ok, delta, o.zeros_like(delta))
