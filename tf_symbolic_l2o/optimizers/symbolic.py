"""A distilled symbolic update rule as a Keras 3 optimizer."""

from __future__ import annotations

import math

import keras

from tf_symbolic_l2o._lazy import LazyModule
from tf_symbolic_l2o.features import keras_array_backend
from tf_symbolic_l2o.optimizers._common import BASE_ARGS_DOC, add_slot, compute_dtype, dense_gradient
from tf_symbolic_l2o.rules.rule import as_rule
from tf_symbolic_l2o.rules.step import rule_step

tf = LazyModule("tensorflow")


# Variables per XLA cluster in a fused step (no tf.distribute). The value was chosen by timing ResNet-50's fit step:
# see benchmarks/README.md, "Design measurements behind the code".
_VARIABLES_PER_CLUSTER = 10


@keras.saving.register_keras_serializable(package="tfl2o")
class SymbolicOptimizer(keras.optimizers.Optimizer):
    """Optimizer that applies a closed-form (symbolic) update rule coordinate by coordinate.

    The rule is the distilled replacement of a learned optimizer (Zheng et al., 2022). For every coordinate of
    every variable, at step ``t`` (1-based, ``optimizer.iterations + 1``)::

        features_t = FeatureSet.update(g_t)                 (m̃, g̃, momenta, … of the rule's feature set)
        x_t        = [features_t, features_{t−1}, …, features_{t−memlen+1}]    (zeros before the history fills)
        θ         ← θ + learning_rate · output_scale · f(x_t)

    ``f`` carries its own sign (the rule learned to descend), so the update is *added*. ``learning_rate`` is a
    **multiplier on the rule's native step**: the default 1.0 applies the rule exactly as distilled — the same
    trajectory as :class:`tf_symbolic_l2o.rules.coordinate.RuleOptimizer` for the same gradients — and e.g. 0.5
    halves every step. A rule with a ``size_scale`` (the presets') also multiplies every step by
    ``rule.size_factor(n)``, ``n`` the number of parameters the optimizer was built on (the sizes of the trainable
    variables with a slot): 1 on models up to the rule's reference size, smaller on larger models (see
    :class:`~tf_symbolic_l2o.rules.Rule`). Like any Keras learning rate it may be a ``LearningRateSchedule`` or a
    callable, so warm-up and decay schedules work; decoupled weight decay uses the same value
    (``θ ← θ − learning_rate·wd·θ``, without the size factor).

    Numerics:

    * **Sparse gradients** (``tf.IndexedSlices``, e.g. from ``Embedding``) are densified before the update. The
      rule is elementwise but stateful: every moment decays at every step, also in rows whose gradient is zero,
      and the rule's output is in general non-zero there, so the dense treatment is the exact one; sparse and
      dense gradients give the same result. All writes go through ``self.assign*``.
    * **Non-finite values**: if, for a coordinate, the gradient is not finite (inf or NaN) or would make the
      state non-finite (e.g. g² overflowing float32), that coordinate is left unchanged for this step — its
      parameter, moments and lag history keep their old values (the step counter still advances); if only the
      rule's step is not finite, the state advances and the parameter stays. Finite coordinates are updated
      normally, so one bad gradient entry never writes NaN into the parameters or the optimizer state.
      (``LossScaleOptimizer``, which ``compile`` adds under ``mixed_float16``, already skips whole steps with
      non-finite gradients.)
    * **Precision**: features, state and the rule are computed in float32 for float16 and bfloat16 variables
      (their slots are float32) and the step is cast back to the variable's dtype; float32 and float64 variables
      are updated in their own dtype. Under ``mixed_float16`` / ``mixed_bfloat16`` policies the variables are
      float32 anyway.

    Optimizer variables (created in :meth:`build`, in this order, for each trainable variable ``θ`` in turn):
    one slot per name of ``rule.feature_set.state_names()`` (e.g. ``m``, ``v``, ``mom9``), shaped like ``θ``;
    then, if ``rule.memlen > 1``, a ``lag_history`` slot of shape ``[memlen − 1, *θ.shape, F]`` holding the
    features of the previous ``memlen − 1`` steps (most recent first), ``F = rule.feature_set.num_features``.

    Args:
        rule: the update rule: a :class:`~tf_symbolic_l2o.rules.Rule`, a rule dict (the ``Rule.to_dict()``
            layout, as stored by :meth:`get_config`; validated strictly), the path of a ``rule.json`` file or the
            name of a shipped rule (``"symbolic_rp_small"``).
        learning_rate: A float, a ``keras.optimizers.schedules.LearningRateSchedule`` instance, or a callable that
            takes no arguments and returns the value to use: the multiplier on the rule's step. Defaults to 1.0.
        fused: on the TensorFlow backend, run each step (features, rule, finiteness guard and the writes of
            state and variable) as XLA-compiled code, also when the model itself runs in graph mode: outside
            ``tf.distribute`` in compiled functions of about ten variables each, under a strategy one per variable.
            Same values either way (to float rounding). The fused step is cheaper; its first call also compiles
            it, so the first step takes longer. Defaults to True. On the PyTorch backend the step of each variable
            is compiled once per rule and dtype with ``torch.compile`` (a C++ compiler is needed; without one a
            warning says so and the step runs eagerly) and writes the state and variable in place, as Keras'
            own PyTorch optimizers do, for rules without lag history (``memlen == 1``; rules with lags, and
            ``fused=False``, run the step eagerly, one ``keras.ops`` pass per operation). On
            the JAX backend the step is written in ``keras.ops`` and compiled with the rest of the train step by
            JAX (``fused`` has no effect there).
        {{base_args}}

    Reference:
        - Zheng, Chen, Hu, Wang, "Symbolic Learning to Optimize: Towards Interpretability and Scalability",
          ICLR 2022 (https://openreview.net/forum?id=ef0nInZHKIC, arXiv:2203.06578).
    """

    def __init__(
        self,
        rule,
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
        fused=True,
        name="symbolic",
        **kwargs,
    ):
        rule = as_rule(rule).minimal()  # same updates, only the slots the formula needs
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
        self.rule = rule
        self._feature_set = rule.feature_set
        self._state_names = self._feature_set.state_names()
        self._memlen = int(rule.memlen)
        self._num_features = self._feature_set.num_features
        self._output_scale = float(rule.output_scale)
        self.fused = fused
        self._backend = keras_array_backend()
        if self._backend == "tensorflow":
            self._rule_fn = rule.tf_fn()
            # XLA fuses the ~30 elementwise ops of a step, reads and writes of the state included, into one loop
            # (graph mode runs every op as its own pass over the variable).
            self._fused_update = tf.function(self._update, jit_compile=True)
            self._fused_update_group = tf.function(self._update_group, jit_compile=True)
        else:
            self._rule_fn = rule.keras_fn()

    def build(self, var_list):
        """Create the optimizer variables (see the class docstring for names, shapes and order).

        Args:
            var_list: list of model variables to build the rule's state on.
        """
        if self.built:
            return
        super().build(var_list)
        state_slots, history_slots, num_coords = [], [], 0
        for var in var_list:
            if self._overwrite_variable_with_gradient(var):
                state_slots.append(None)
                history_slots.append(None)
                continue
            dtype = compute_dtype(var.dtype)
            num_coords += math.prod(var.shape)
            state_slots.append([add_slot(self, var, name, dtype=dtype) for name in self._state_names])
            if self._memlen > 1:
                shape = (self._memlen - 1, *var.shape, self._num_features)
                history_slots.append(add_slot(self, var, "lag_history", shape=shape, dtype=dtype))
            else:
                history_slots.append(None)
        self._state_slots = state_slots
        self._history_slots = history_slots
        self._size_factor = self.rule.size_factor(num_coords)  # 1.0 without a size_scale or on a small model

    def _scaled(self, lr):
        """The learning rate times the rule's size factor (unchanged where the factor is 1)."""
        return lr if self._size_factor == 1.0 else lr * self._size_factor

    def update_step(self, gradient, variable, learning_rate):
        """Update step given gradient and the associated model variable."""
        if self._backend != "tensorflow":
            self._keras_update(gradient, variable, learning_rate)
            return
        update = self._fused_update if self.fused else self._update
        update(*self._update_args(gradient, variable, learning_rate))

    def _keras_update(self, gradient, variable, learning_rate):
        """The step in ``keras.ops`` (JAX and PyTorch backends): the same math as the TensorFlow step."""
        from keras import ops

        index = self._get_variable_index(variable)
        dtype = compute_dtype(variable.dtype)
        g = ops.cast(gradient, dtype)
        lr, step = self._scaled(ops.cast(learning_rate, dtype)), ops.cast(self.iterations + 1, dtype)
        slots, history = self._state_slots[index], self._history_slots[index]
        old_state = {name: ops.convert_to_tensor(slot) for name, slot in zip(self._state_names, slots)}
        old_history = None if history is None else ops.convert_to_tensor(history)
        self._write(variable, slots, history, *self._math(g, old_state, old_history, step, lr))

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        # PyTorch, a rule without lags: the compiled in-place step of each variable (see _torch_fused), unless the
        # train step itself is being compiled (jit_compile=True), which then compiles the keras.ops step with it
        if self.fused and self._memlen == 1 and keras.backend.backend() == "torch":
            from tf_symbolic_l2o.optimizers._torch_fused import apply_fused, compiling

            if not compiling():
                apply_fused(self, grads, trainable_variables, learning_rate)
                return
        super()._backend_update_step(grads, trainable_variables, learning_rate)

    def _distributed_tf_update_step(self, distribution, grads_and_vars, learning_rate):
        # Outside tf.distribute, a fused optimizer updates its variables in XLA clusters of up to
        # _VARIABLES_PER_CLUSTER, in Keras' order, so that a model with many small variables does not pay one
        # launch per variable. Each variable's update is still update_step's (``_update``). Under a strategy:
        # Keras' per-variable path.
        if not self.fused or tf.distribute.has_strategy():
            return super()._distributed_tf_update_step(distribution, grads_and_vars, learning_rate)
        scalars = {}  # learning rate and step per compute dtype: read and cast once per step, not per variable
        batch = [self._update_args(g, v, learning_rate, scalars) for g, v in grads_and_vars]
        for start in range(0, len(batch), _VARIABLES_PER_CLUSTER):
            self._fused_update_group(batch[start:start + _VARIABLES_PER_CLUSTER])

    def _all_reduce_sum_gradients(self, grads_and_vars):
        # Outside tf.distribute the sum over the one replica is the identity, but Keras' all-reduce puts one
        # IdentityN over ALL gradients in the graph. Grappler removes it in front of plain ops; in front of the
        # XLA clusters it stays, and every cluster would wait for the last gradient of the backward pass instead
        # of starting as soon as its own gradients exist. Skipping the identity lets the update overlap backprop.
        if tf.distribute.has_strategy():
            return super()._all_reduce_sum_gradients(grads_and_vars)
        return list(grads_and_vars)

    def _update_args(self, gradient, variable, learning_rate, scalars=None):
        index = self._get_variable_index(variable)
        dtype = compute_dtype(variable.dtype)
        g = tf.cast(dense_gradient(gradient, variable), dtype)
        scalars = {} if scalars is None else scalars
        if dtype not in scalars:
            scalars[dtype] = (self._scaled(tf.cast(learning_rate, dtype)), tf.cast(self.iterations + 1, dtype))
        lr, step = scalars[dtype]
        history = self._history_slots[index]
        return (g, lr, step, _tf_variable(variable), [_tf_variable(s) for s in self._state_slots[index]],
                None if history is None else _tf_variable(history))

    def _update(self, g, lr, step, variable, slots, history):
        """One variable's update: features, rule, finite guard, then ``self.assign*`` of state and variable."""
        old_state = {name: tf.convert_to_tensor(slot) for name, slot in zip(self._state_names, slots)}
        old_history = None if history is None else tf.convert_to_tensor(history)
        self._write(variable, slots, history, *self._math(g, old_state, old_history, step, lr))

    def _write(self, variable, slots, history, new_state, new_history, delta):
        """``self.assign*`` of the new state, lag history and variable."""
        for name, slot in zip(self._state_names, slots):
            self.assign(slot, new_state[name])
        if history is not None:
            self.assign(history, new_history)
        self.assign_add(variable, keras.ops.cast(delta, variable.dtype))

    def _update_group(self, batch):
        for args in batch:
            self._update(*args)

    def _math(self, g, old_state, old_history, step, lr):
        """The elementwise part of the step (:func:`~tf_symbolic_l2o.rules.step.rule_step`)."""
        return rule_step(self._feature_set, self._rule_fn, self.rule.inputs, self._output_scale, g, old_state,
                         old_history, step, lr, self._backend)

    def get_config(self):
        config = super().get_config()
        config.update({"rule": self.rule.to_dict(), "fused": self.fused})
        return config


def _tf_variable(variable) -> tf.Variable:
    """The ``tf.Variable`` behind a Keras variable (Keras' TensorFlow optimizer passes either)."""
    return variable if isinstance(variable, tf.Variable) else variable.value


SymbolicOptimizer.__doc__ = SymbolicOptimizer.__doc__.replace("{{base_args}}", BASE_ARGS_DOC)
