"""Random quadratic optimizee of the learning-to-optimize literature (Andrychowicz et al., 2016).

    f(θ) = ‖Wθ − y‖² = Σ_i ((Wθ)_i − y_i)²

The squared residuals are **summed** over the ``dim`` rows, as in the DeepMind L2O code
(``reduce_sum((Wx - y)**2, 1)``; their ``reduce_mean`` is over a batch of independent problems, of which a
:class:`QuadraticTask` is one). ``W ~ N(0, 1)^{dim x dim}`` and ``y ~ N(0, 1)^{dim}`` are drawn once from
``problem_seed`` and fixed for the lifetime of the task; the optimizer only controls θ.

A noisy variant perturbs the target every step: a minibatch is a noise vector ``ε ~ N(0, noise_std²)^{dim}``
and the training loss is ``‖Wθ − (y + ε)‖²``. With the default ``noise_std=0`` the minibatch is an all-zero
vector (a batch must still be a tensor so that training loops can stay inside ``tf.function``), and training and test
losses agree.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from tf_symbolic_l2o.seeds import step_seed
from tf_symbolic_l2o.tasks.base import INIT_SCHEMES, ParamSpec, Task


class QuadraticTask(Task):
    """Minimise ``‖Wθ − y‖²`` over ``θ ∈ R^dim`` for one fixed random ``(W, y)``.

    Args:
        dim: dimension of θ (10 in the DM paper); ``W`` is ``[dim, dim]``, ``y`` is ``[dim]``.
        problem_seed: int seed from which ``W`` and ``y`` (both i.i.d. N(0, 1)) are drawn; fixed per instance.
        noise_std: standard deviation of the per-step Gaussian noise added to ``y`` by :meth:`sample_batch`
            (``0`` gives the deterministic quadratic).
        init: ``"paper"``: θ ~ N(0, 1) i.i.d. (the Gaussian initialisation used for quadratics in the L2O
            literature); ``"keras"``: θ = 0 (Keras's default ``zeros`` initialiser for a free vector, giving every
            run the same start ``f(0) = ‖y‖²``).
        name: registry name.

    Attributes:
        w, y: the problem's ``W`` and ``y`` as float32 constants.
    """

    has_accuracy = False

    def __init__(self, dim: int = 10, problem_seed: int = 0, noise_std: float = 0.0, init: str = "paper",
                 name: str = "quadratic"):
        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        if noise_std < 0:
            raise ValueError(f"noise_std must be non-negative, got {noise_std}")
        if init not in INIT_SCHEMES:
            raise ValueError(f"unknown init scheme {init!r}; use one of {INIT_SCHEMES}")
        self.dim = int(dim)
        self.problem_seed = int(problem_seed)
        self.noise_std = float(noise_std)
        self.init = init
        self.name = name
        base = step_seed(self.problem_seed)
        self.w = tf.random.stateless_normal([self.dim, self.dim], step_seed(base, 0))
        self.y = tf.random.stateless_normal([self.dim], step_seed(base, 1))
        self._specs = [ParamSpec("theta", (self.dim,), "kernel", self.dim, self.dim)]

    def param_specs(self) -> list[ParamSpec]:
        return self._specs

    def init_params(self, seed: Any) -> list[tf.Tensor]:
        if self.init == "keras":
            return [tf.zeros([self.dim])]
        return [tf.random.stateless_normal([self.dim], step_seed(seed))]

    def sample_batch(self, seed: tf.Tensor) -> tf.Tensor:
        """The target noise ``ε`` (shape ``[dim]``); all zeros when ``noise_std == 0``."""
        if self.noise_std == 0.0:
            return tf.zeros([self.dim])
        return self.noise_std * tf.random.stateless_normal([self.dim], seed)

    def _loss(self, theta: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
        residual = tf.linalg.matvec(self.w, theta) - target
        return tf.reduce_sum(tf.square(residual))

    def loss(self, params, batch=None) -> tf.Tensor:
        """``‖Wθ − (y + batch)‖²``; ``batch=None`` means the clean target."""
        target = self.y if batch is None else self.y + tf.cast(batch, tf.float32)
        return self._loss(params[0], target)

    def evaluate(self, params) -> dict[str, float]:
        return {"test_loss": float(self._loss(params[0], self.y))}

    def optimum(self) -> tuple[np.ndarray, float]:
        """The least-squares minimiser θ* and the clean loss there (≈ 0 when ``W`` is invertible)."""
        w, y = self.w.numpy().astype(np.float64), self.y.numpy().astype(np.float64)
        theta, *_ = np.linalg.lstsq(w, y, rcond=None)
        return theta, float(np.sum((w @ theta - y) ** 2))

    def config(self) -> dict:
        return {"name": self.name, "type": "quadratic", "dim": self.dim, "problem_seed": self.problem_seed,
                "noise_std": self.noise_std, "init": self.init}
