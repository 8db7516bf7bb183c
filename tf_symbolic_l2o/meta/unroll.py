"""Compiled inner loops: the truncated unroll that meta-trains an optimizer, and plain rollouts.

One truncated window of ``U`` steps starting from a (detached) optimizee state θ₀ is

    for k = 0 … U:   ℓ_k = f(θ_k ⊙ r; batch_k),   g_k = stop_gradient(∇ℓ_k)
                     θ_{k+1} = θ_k + Δ_k,          (Δ_k, state) = optimizer.update(g_k, state, t_k, params=θ_k)
    meta-loss  = Σ_{k=0..U} ℓ_k        (the TF code's Σ f(θ_t), including the loss after the last update)

``r`` is the per-coordinate random scaling (``None`` when disabled). Gradients of the optimizee are detached
(first-order meta-gradients, as in the paper), and the returned θ and optimizer state carry no tape, so consecutive
windows are truncated.

Because the g_k are detached, θ_k depends on the optimizer's weights φ only through the steps Δ_j, and
∂ℓ_k/∂θ_k is g_k itself; so the first-order meta-gradient is

    ∂ meta-loss / ∂φ = Σ_k g_kᵀ · ∂θ_k/∂φ = ∂/∂φ Σ_k ⟨stop_gradient(g_k), θ_k⟩,

which is what is differentiated: the meta-tape records only the optimizer's updates, never the optimizee's forward
pass, so an unroll's memory does not grow with the optimizee's activations and no second backward pass through the
optimizee is needed. For an optimizer with a handful of weights (a tunable rule) the same sum is accumulated in
forward mode instead, carrying ∂θ_k/∂φ: no tape at all, memory O(n·P) whatever the unroll length (the README's
"Memory of meta-tuning" has the figures for ResNets); the coordinates are then processed in blocks of
``forward_block`` one after another, so the rule's temporaries are those of one block. ``second_order=True``
differentiates through g_k(θ_k) too. Each window is one ``tf.function`` (optionally XLA-compiled); the Python loop
over the U steps is unrolled at trace time.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from tf_symbolic_l2o.seeds import step_seed
from tf_symbolic_l2o.tasks.base import Task


#: Coordinates per block of the forward-mode window (2¹⁹: the rule's temporaries stay in the tens of MB).
FORWARD_BLOCK = 1 << 19

_JIT_WORDS = {"auto": "auto", "true": True, "1": True, "yes": True, "on": True, "xla": True,
              "false": False, "0": False, "no": False, "off": False, "graph": False}


def parse_jit_compile(value: Any) -> str | bool:
    """``"auto"`` or a boolean, from ``None``/``"auto"``, a bool, or a word: true/false, 1/0, yes/no, on/off,
    xla/graph (any case). The one parser of the ``jit_compile`` setting (configs, the CLI, the benchmarks)."""
    if value is None or isinstance(value, bool):
        return "auto" if value is None else value
    if isinstance(value, str) and value.strip().lower() in _JIT_WORDS:
        return _JIT_WORDS[value.strip().lower()]
    raise ValueError(f"jit_compile takes auto, true or false, got {value!r}")


def resolve_jit_compile(jit_compile: Any) -> bool:
    """``"auto"`` means XLA on GPU only: on CPU plain graph mode is used (see benchmarks/README.md)."""
    value = parse_jit_compile(jit_compile)
    return bool(tf.config.list_physical_devices("GPU")) if value == "auto" else value


def loss_and_grad(task: Task, theta: tf.Tensor, scale: tf.Tensor, batch, reduce=None, detach: bool = True):
    """``(f(θ ⊙ r), stop_gradient(∇_θ f))``; ``reduce`` (e.g. a cross-replica mean) is applied to the gradient.

    ``scale=None`` means r = 1 (no random scaling, and no n-sized product). ``detach=False`` keeps the gradient
    differentiable (for second-order meta-gradients).
    """
    with tf.GradientTape() as inner:
        inner.watch(theta)
        loss = task.loss(task.unflatten(theta if scale is None else theta * scale), batch)
    grad = inner.gradient(loss, theta)
    if reduce is not None:
        grad = reduce(grad)
    return loss, tf.stop_gradient(grad) if detach else grad


class _Replicas:
    """Data parallelism inside one unroll: each replica of ``strategy`` takes its slice of the minibatch, and the
    optimizee gradients are averaged across replicas at every step, so θ follows the same trajectory everywhere and
    equals the single-device run (the loss is a mean over examples and the slices have equal sizes)."""

    def __init__(self, strategy: tf.distribute.Strategy | None):
        self.strategy = strategy
        self.count = 1 if strategy is None else int(strategy.num_replicas_in_sync)

    def shard(self, batch):
        if self.count == 1:
            return batch
        rid = tf.distribute.get_replica_context().replica_id_in_sync_group

        def take(t):
            n = t.shape[0]
            if n is None or n % self.count:
                raise ValueError(f"the minibatch ({n}) must split evenly over {self.count} replicas; choose a "
                                 f"batch size that is a multiple of {self.count}")
            size = n // self.count
            return t[rid * size:(rid + 1) * size]

        return tf.nest.map_structure(take, batch)

    def mean(self, value):
        if self.count == 1:
            return value
        return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.MEAN, value)


class Unroller:
    """Builds the compiled functions that meta-train ``l2o`` on ``task``.

    Args:
        task: the optimizee.
        l2o: the learned optimizer (its ``trainable_variables`` get the meta-gradient).
        meta_optimizer: a Keras optimizer for the L2O weights.
        unroll: the truncation length U.
        jit_compile: XLA-compile each window (``"auto"`` = on GPU only).
        clip_norm: clip the meta-gradient to this global norm (``None`` = no clipping).
        teacher: the optimizer imitated in imitation windows (a functional baseline, e.g. Adam(0.01)).
        strategy: a ``tf.distribute`` strategy whose replicas split each minibatch (see :class:`_Replicas`);
            ``None`` = one device.
        second_order: differentiate through the optimizee's gradients too (the exact meta-gradient of the
            window, with Hessian-vector products); memory then grows with the optimizee's activations × the unroll.
            Default: first-order, as in the paper.
        forward_mode: compute first-order meta-gradients in forward mode (``None``: whenever the optimizer has
            ``update_and_jacobian``, i.e. a :class:`~tf_symbolic_l2o.tune.TunableRule`; see ``_forward_window``).
        forward_block: coordinates per block in forward mode (blocks run one after another).
        meta_loss_scale: the factor the meta-gradient is multiplied by (a task family divides each task's
            meta-loss by its loss scale, so that no task dominates); the returned losses are not scaled. It is held
            in the ``tf.Variable`` ``self.meta_loss_scale``, which may be assigned between windows without
            retracing.
    """

    def __init__(self, task: Task, l2o, meta_optimizer, unroll: int, jit_compile: Any = "auto",
                 clip_norm: float | None = None, teacher=None, strategy: tf.distribute.Strategy | None = None,
                 second_order: bool = False, forward_mode: bool | None = None, forward_block: int = FORWARD_BLOCK,
                 meta_loss_scale: float = 1.0):
        if unroll <= 0:
            raise ValueError(f"unroll must be positive, got {unroll}")
        if not (isinstance(meta_loss_scale, (int, float)) and 0 < meta_loss_scale < float("inf")):
            raise ValueError(f"meta_loss_scale must be a positive finite number, got {meta_loss_scale!r}")
        self.meta_loss_scale = tf.Variable(float(meta_loss_scale), trainable=False, dtype=tf.float32,
                                           name="meta_loss_scale")
        if forward_block <= 0:
            raise ValueError(f"forward_block must be positive, got {forward_block}")
        self.forward_block = int(forward_block)
        self.task, self.l2o, self.meta_optimizer = task, l2o, meta_optimizer
        self.unroll = int(unroll)
        self.clip_norm = clip_norm
        self.teacher = teacher
        self.second_order = bool(second_order)
        can_forward = not self.second_order and hasattr(l2o, "update_and_jacobian")
        if forward_mode and not can_forward:
            raise ValueError("forward-mode meta-gradients need first-order mode and an optimizer with "
                             "update_and_jacobian (a TunableRule)")
        self.forward_mode = can_forward if forward_mode is None else bool(forward_mode)
        self.jit_compile = resolve_jit_compile(jit_compile)
        self.replicas = _Replicas(strategy if strategy is not None and strategy.num_replicas_in_sync > 1 else None)
        train, imitation = self._train_window, self._imitation_window
        if self.replicas.count > 1:
            train, imitation = self._distributed(train), self._distributed(imitation)
        self.train_window = tf.function(train, jit_compile=self.jit_compile)
        self.imitation_window = tf.function(imitation, jit_compile=self.jit_compile)

    def _distributed(self, window):
        """Run ``window`` on every replica; its outputs are identical across replicas (all-reduced), so the first
        replica's are returned."""
        strategy = self.replicas.strategy

        def run(*args):
            out = strategy.run(window, args=args)
            return tf.nest.map_structure(lambda v: strategy.experimental_local_results(v)[0], out)

        return run

    def _observe(self, theta, scale, seed, step, detach: bool = True):
        """``(loss, grad)`` of this replica's slice of step ``step``'s minibatch, the gradient averaged over the
        replicas (and detached unless ``detach=False``)."""
        batch = self.replicas.shard(self.task.sample_batch(step_seed(seed, step)))
        return loss_and_grad(self.task, theta, scale, batch, self.replicas.mean, detach=detach)

    def _apply_meta_gradient(self, meta_loss, tape):
        variables = self.l2o.trainable_variables
        grads = tape.gradient(meta_loss, variables)
        return self._apply(grads)

    def _apply(self, grads):
        variables = self.l2o.trainable_variables
        grads = [tf.zeros_like(v) if g is None else g for g, v in zip(grads, variables)]
        grads = [self.replicas.mean(g) * tf.cast(self.meta_loss_scale, g.dtype) for g in grads]
        norm = tf.linalg.global_norm(grads)
        # a non-finite meta-gradient (an overflowing window) must not poison the weights: it becomes zero, and the
        # returned norm (inf/NaN) shows it in metrics.csv
        finite = tf.math.is_finite(norm)
        grads = [tf.where(finite, g, tf.zeros_like(g)) for g in grads]
        if self.clip_norm is not None:
            grads, _ = tf.clip_by_global_norm(grads, self.clip_norm, use_norm=norm)
        if self.replicas.count > 1:  # Keras sums the replicas' gradients: hand it 1/R of the (identical) means
            grads = [g / self.replicas.count for g in grads]
        self.meta_optimizer.apply_gradients(zip(grads, variables))
        return norm

    def _train_window(self, theta, state, step0, seed, scale):
        """One truncated window + meta-update. Returns ``(meta_loss, last_loss, grad_norm, θ, state)``."""
        if self.forward_mode:
            return self._forward_window(theta, state, step0, seed, scale)
        with tf.GradientTape() as tape:
            total = tf.constant(0.0)
            surrogate = total  # Σ_k ⟨g_k, θ_k⟩: its φ-gradient is the meta-gradient (module docstring)
            loss = total
            for k in range(self.unroll + 1):
                if self.second_order:  # recorded: the meta-gradient flows through g_k(θ_k) too (Hessian terms)
                    loss, grad = self._observe(theta, scale, seed, step0 + k, detach=False)
                else:
                    with tape.stop_recording():
                        loss, grad = self._observe(theta, scale, seed, step0 + k)
                    surrogate += tf.reduce_sum(grad * theta)
                total += loss
                if k == self.unroll:
                    break
                delta, state = self.l2o.update(grad, state, step0 + k + 1, params=theta)
                theta = theta + delta
        norm = self._apply_meta_gradient(total if self.second_order else surrogate, tape)
        losses = self.replicas.mean(tf.stack([total / (self.unroll + 1), loss]))
        return losses[0], losses[1], norm, tf.stop_gradient(theta), tf.nest.map_structure(tf.stop_gradient, state)

    def _forward_window(self, theta, state, step0, seed, scale):
        """The first-order window in forward mode, for optimizers with few weights φ (a tunable rule): carry
        J_k = ∂θ_k/∂φ ([n, P]) along the unroll and accumulate Σ_k J_kᵀ g_k — the same meta-gradient as the
        reverse-mode surrogate. Nothing is taped, so the steps run as a ``tf.while_loop`` (on one device) and the
        memory (plain training, the rule's state and J) does not grow with the unroll length.

        The rule is coordinate-wise, so the coordinates are cut into blocks of ``forward_block``, each with its
        own slice of the optimizer state and of J, updated one block after another (control dependencies): the
        temporaries of the rule and of its derivatives are one block's, and each block of J is replaced by its
        update as soon as that is computed, so J is never held twice."""
        (params,) = self.l2o.trainable_variables
        n = int(theta.shape[0])
        sizes = [min(self.forward_block, n - a) for a in range(0, n, self.forward_block)]
        states = self.l2o.split_state(state, sizes)
        jacs = [tf.zeros([size, params.shape[0]], theta.dtype) for size in sizes]
        meta_grad = tf.zeros(params.shape, theta.dtype)
        total = tf.constant(0.0)
        # a tf.while_loop on one device; unrolled at trace time with replicas (their all-reduces cannot sit in a
        # tf.while_loop under strategy.run)
        for k in (tf.range(self.unroll) if self.replicas.count == 1 else range(self.unroll)):
            # one step at a time: overlapping iterations would hold two steps' temporaries at once
            tf.autograph.experimental.set_loop_options(parallel_iterations=1)
            loss, grad = self._observe(theta, scale, seed, step0 + k)
            total += loss
            thetas, new_jacs, new_states, done = [], [], [], []
            for g, th, jac, st in zip(tf.split(grad, sizes), tf.split(theta, sizes), jacs, states):
                with tf.control_dependencies(done):  # block by block
                    g = tf.identity(g)
                    meta_grad += tf.linalg.matvec(jac, g, transpose_a=True)
                    delta, d_delta, st = self.l2o.update_and_jacobian(g, st, step0 + k + 1, num_coords=n)
                    jac = jac + d_delta
                    th = th + delta
                thetas.append(th)
                new_jacs.append(jac)
                new_states.append(st)
                done = [jac, th]
            jacs, states = new_jacs, new_states
            theta = tf.concat(thetas, 0)
        loss, grad = self._observe(theta, scale, seed, step0 + self.unroll)  # the loss after the last update
        total += loss
        for g, jac in zip(tf.split(grad, sizes), jacs):
            meta_grad += tf.linalg.matvec(jac, g, transpose_a=True)
        norm = self._apply([meta_grad])
        losses = self.replicas.mean(tf.stack([total / (self.unroll + 1), loss]))
        return losses[0], losses[1], norm, theta, self.l2o.merge_state(states)

    def _imitation_window(self, theta, state, teacher_state, step0, seed, scale):
        """Imitation learning: θ follows the teacher; the L2O is trained to match the teacher's steps (MSE)."""
        with tf.GradientTape() as tape:
            total = tf.constant(0.0)
            loss = total
            for k in range(self.unroll):
                with tape.stop_recording():
                    loss, grad = self._observe(theta, scale, seed, step0 + k)
                target, teacher_state = self.teacher.update(grad, teacher_state, step0 + k + 1, params=theta)
                delta, state = self.l2o.update(grad, state, step0 + k + 1, params=theta)
                total += 0.5 * tf.reduce_mean(tf.square(delta - target)) / (self.l2o.output_scale ** 2)
                theta = theta + target
        norm = self._apply_meta_gradient(total, tape)
        losses = self.replicas.mean(tf.stack([total / self.unroll, loss]))
        return losses[0], losses[1], norm, theta, tf.nest.map_structure(tf.stop_gradient, state), teacher_state


def make_rollout(task: Task, optimizer, jit_compile: Any = False):
    """A compiled ``rollout(theta, state, seed, scale, start_step, num_steps) -> (theta, state, losses)``.

    Runs ``num_steps`` optimization steps (fresh minibatch each) with any
    :class:`~tf_symbolic_l2o.functional.base.CoordinateOptimizer` (``update`` gets θ as ``params``);
    ``losses[k]`` is the minibatch loss at θ_k, before step k's update. No meta-gradient is taken.
    :class:`~tf_symbolic_l2o.harness.Harness` runs it from a run seed.
    """

    def rollout(theta, state, seed, scale, start_step, num_steps):
        losses = tf.TensorArray(tf.float32, size=num_steps)
        for k in tf.range(num_steps):
            batch = task.sample_batch(step_seed(seed, start_step + k))
            loss, grad = loss_and_grad(task, theta, scale, batch)
            delta, state = optimizer.update(grad, state, start_step + k + 1, params=theta)
            theta = theta + delta
            losses = losses.write(k, loss)
        return theta, state, losses.stack()

    return tf.function(rollout, jit_compile=resolve_jit_compile(jit_compile))
