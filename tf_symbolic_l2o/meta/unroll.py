"""Compiled inner loops: the truncated unroll that meta-trains an optimizer, and plain rollouts.

One truncated window of ``U`` steps starting from a (detached) optimizee state θ₀ is

    for k = 0 … U:   ℓ_k = f(θ_k ⊙ r; batch_k),   g_k = stop_gradient(∇ℓ_k)
                     θ_{k+1} = θ_k + Δ_k,          (Δ_k, state) = optimizer.update(g_k, state, t_k)
    meta-loss  = Σ_{k=0..U} ℓ_k        (the TF code's Σ f(θ_t), including the loss after the last update)

``r`` is the per-coordinate random scaling (ones when disabled). Gradients of the optimizee are detached
(first-order meta-gradients, as in the paper), and the returned θ and optimizer state carry no tape, so consecutive
windows are truncated. Each window is one ``tf.function`` (optionally XLA-compiled); the Python loop over the U
steps is unrolled at trace time, which was measured fastest.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from tf_symbolic_l2o.tasks.base import Task, step_seed


def resolve_jit_compile(jit_compile: Any) -> bool:
    """``"auto"`` means XLA on GPU only (XLA was measured slower than graph mode on CPU)."""
    if jit_compile == "auto" or jit_compile is None:
        return bool(tf.config.list_physical_devices("GPU"))
    if isinstance(jit_compile, str):
        low = jit_compile.lower()
        if low in ("true", "1", "yes", "xla"):
            return True
        if low in ("false", "0", "no", "graph"):
            return False
        raise ValueError(f"jit_compile must be 'auto', true or false, got {jit_compile!r}")
    return bool(jit_compile)


def loss_and_grad(task: Task, theta: tf.Tensor, scale: tf.Tensor, batch, tape: tf.GradientTape | None = None):
    """``(f(θ ⊙ r), stop_gradient(∇_θ f))``; the gradient is taken outside ``tape``'s recording."""
    with tf.GradientTape() as inner:
        inner.watch(theta)
        loss = task.loss(task.unflatten(theta * scale), batch)
    if tape is not None:
        with tape.stop_recording():
            grad = inner.gradient(loss, theta)
    else:
        grad = inner.gradient(loss, theta)
    return loss, tf.stop_gradient(grad)


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
    """

    def __init__(self, task: Task, l2o, meta_optimizer, unroll: int, jit_compile: Any = "auto",
                 clip_norm: float | None = None, teacher=None):
        if unroll <= 0:
            raise ValueError(f"unroll must be positive, got {unroll}")
        self.task, self.l2o, self.meta_optimizer = task, l2o, meta_optimizer
        self.unroll = int(unroll)
        self.clip_norm = clip_norm
        self.teacher = teacher
        self.jit_compile = resolve_jit_compile(jit_compile)
        self.train_window = tf.function(self._train_window, jit_compile=self.jit_compile)
        self.imitation_window = tf.function(self._imitation_window, jit_compile=self.jit_compile)

    def _apply_meta_gradient(self, meta_loss, tape):
        variables = self.l2o.trainable_variables
        grads = tape.gradient(meta_loss, variables)
        grads = [tf.zeros_like(v) if g is None else g for g, v in zip(grads, variables)]
        norm = tf.linalg.global_norm(grads)
        if self.clip_norm is not None:
            grads, _ = tf.clip_by_global_norm(grads, self.clip_norm, use_norm=norm)
        self.meta_optimizer.apply_gradients(zip(grads, variables))
        return norm

    def _train_window(self, theta, state, step0, seed, scale):
        """One truncated window + meta-update. Returns ``(meta_loss, last_loss, grad_norm, θ, state)``."""
        with tf.GradientTape() as tape:
            total = tf.constant(0.0)
            loss = total
            for k in range(self.unroll + 1):
                batch = self.task.sample_batch(step_seed(seed, step0 + k))
                loss, grad = loss_and_grad(self.task, theta, scale, batch, tape)
                total += loss
                if k == self.unroll:
                    break
                delta, state = self.l2o.update(grad, state, step0 + k + 1)
                theta = theta + delta
        norm = self._apply_meta_gradient(total, tape)
        return total / (self.unroll + 1), loss, norm, tf.stop_gradient(theta), tf.nest.map_structure(
            tf.stop_gradient, state)

    def _imitation_window(self, theta, state, teacher_state, step0, seed, scale):
        """Imitation learning: θ follows the teacher; the L2O is trained to match the teacher's steps (MSE)."""
        with tf.GradientTape() as tape:
            total = tf.constant(0.0)
            loss = total
            for k in range(self.unroll):
                batch = self.task.sample_batch(step_seed(seed, step0 + k))
                loss, grad = loss_and_grad(self.task, theta, scale, batch, tape)
                target, teacher_state = self.teacher.update(grad, teacher_state, step0 + k + 1)
                delta, state = self.l2o.update(grad, state, step0 + k + 1)
                total += 0.5 * tf.reduce_mean(tf.square(delta - target)) / (self.l2o.output_scale ** 2)
                theta = theta + target
        norm = self._apply_meta_gradient(total, tape)
        return total / self.unroll, loss, norm, theta, tf.nest.map_structure(tf.stop_gradient, state), teacher_state


def make_rollout(task: Task, optimizer, jit_compile: Any = False):
    """A compiled ``rollout(theta, state, seed, scale, start_step, num_steps) -> (theta, state, losses)``.

    Runs ``num_steps`` optimization steps (fresh minibatch each) with any
    :class:`~tf_symbolic_l2o.learned.base.CoordinateOptimizer`; ``losses[k]`` is the minibatch loss at θ_k,
    before step k's update. No meta-gradient is taken.
    """

    def rollout(theta, state, seed, scale, start_step, num_steps):
        losses = tf.TensorArray(tf.float32, size=num_steps)
        for k in tf.range(num_steps):
            batch = task.sample_batch(step_seed(seed, start_step + k))
            loss, grad = loss_and_grad(task, theta, scale, batch)
            delta, state = optimizer.update(grad, state, start_step + k + 1)
            theta = theta + delta
            losses = losses.write(k, loss)
        return theta, state, losses.stack()

    return tf.function(rollout, jit_compile=resolve_jit_compile(jit_compile))
