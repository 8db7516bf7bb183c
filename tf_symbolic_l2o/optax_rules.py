"""A symbolic rule as an optax gradient transformation (``pip install tf-symbolic-l2o[jax]`` and ``optax``).

    import optax
    from tf_symbolic_l2o.optax_rules import symbolic_rule

    tx = symbolic_rule("saved_models/symbolic_rp_gain/rule.json")
    state = tx.init(params)
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)

The updates are the rule's steps (``learning_rate`` times its native step), computed by the same function as the
Keras optimizer's (:func:`~tf_symbolic_l2o.rules.step.rule_step`) on ``jax.numpy``: the same features, lag history
and non-finite guard, per leaf of the parameter tree, so the trajectory equals
``SymbolicOptimizer(rule, learning_rate)`` on the same gradients (a rule's size factor counts the coordinates of
every leaf). Compose it with optax's own transformations for clipping or weight decay
(``optax.chain(optax.clip_by_global_norm(1.0), symbolic_rule(rule))``).
"""

from __future__ import annotations

from typing import Any, NamedTuple


class SymbolicRuleState(NamedTuple):
    """The transformation's state: the step count and, per parameter leaf, the rule's state slots (a dict) and lag
    history (``None`` for a rule without lags)."""

    count: Any
    slots: Any
    history: Any


def symbolic_rule(rule, learning_rate: float = 1.0):
    """An ``optax.GradientTransformation`` applying ``rule`` (a :class:`~tf_symbolic_l2o.rules.Rule`, its dict or the
    path of a ``rule.json``) coordinate by coordinate; ``learning_rate`` multiplies the rule's native step.

    Raises:
        ValueError: a rule that is not valid, a non-positive or non-finite ``learning_rate``.
    """
    import math

    import jax
    import jax.numpy as jnp
    import optax

    from tf_symbolic_l2o.rules.rule import as_rule
    from tf_symbolic_l2o.rules.step import rule_step

    rule = as_rule(rule).minimal()
    lr = float(learning_rate)
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"learning_rate must be a positive finite number, got {learning_rate!r}")
    fs, memlen, scale = rule.feature_set, int(rule.memlen), float(rule.output_scale)
    names, rule_fn = fs.state_names(), rule.keras_fn(backend="jax")

    def dtype_of(p):
        return jnp.float32 if p.dtype in (jnp.float16, jnp.bfloat16) else p.dtype

    def init(params):
        slots = jax.tree.map(lambda p: {n: jnp.zeros(p.shape, dtype_of(p)) for n in names}, params)
        history = jax.tree.map(
            lambda p: jnp.zeros((memlen - 1, *p.shape, fs.num_features), dtype_of(p)) if memlen > 1 else None,
            params)
        return SymbolicRuleState(jnp.zeros([], jnp.int32), slots, history)

    def update(updates, state, params=None):
        del params  # the rule reads only gradients
        step = state.count + 1
        leaves, treedef = jax.tree.flatten(updates)
        slots = treedef.flatten_up_to(state.slots)
        history = treedef.flatten_up_to(state.history)
        out, new_slots, new_history = [], [], []
        step_lr = lr * rule.size_factor(sum(math.prod(g.shape) for g in leaves))  # the size factor: every leaf
        for g, s, h in zip(leaves, slots, history):
            dtype = dtype_of(g)
            g32 = g.astype(dtype)
            new_s, new_h, delta = rule_step(fs, rule_fn, rule.inputs, scale, g32, s, h, step.astype(dtype),
                                            jnp.asarray(step_lr, dtype), backend="jax")
            out.append(delta.astype(g.dtype))
            new_slots.append(new_s)
            new_history.append(new_h)
        return (treedef.unflatten(out), SymbolicRuleState(step, treedef.unflatten(new_slots),
                                                          treedef.unflatten(new_history)))

    return optax.GradientTransformation(init, update)
