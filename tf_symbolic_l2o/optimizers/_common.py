"""Helpers shared by the Keras optimizers of this package (slot creation, dtypes, sparse gradients, the finite guard).

Not public API.
"""

from __future__ import annotations

import keras

from tf_symbolic_l2o._lazy import LazyModule
from tf_symbolic_l2o.features import array_ops

tf = LazyModule("tensorflow")

_LOW_PRECISION = ("float16", "bfloat16")

BASE_ARGS_DOC = """weight_decay: Float. If set, decoupled weight decay ``θ ← θ − lr·wd·θ`` is applied before the
            update (``exclude_from_weight_decay`` is honoured).
        clipnorm: Float. If set, the gradient of each weight is individually clipped so that its norm is no
            higher than this value. As in every Keras optimizer, a sparse (``IndexedSlices``) gradient is clipped
            by the norm of its slices before repeated indices are summed, so an embedding row looked up twice can
            end with a norm above the value.
        clipvalue: Float. If set, the gradient of each weight is clipped to be no higher than this value.
        global_clipnorm: Float. If set, the gradient of all weights is clipped so that their global norm is no
            higher than this value.
        use_ema: Boolean, defaults to ``False``. If ``True``, an exponential moving average of the model weights
            is maintained (as in every Keras optimizer).
        ema_momentum: Float, defaults to 0.99. The momentum of that EMA.
        ema_overwrite_frequency: Int or ``None``. How often (in iterations) the model weights are overwritten
            by their EMA; ``None`` overwrites only at the end of ``fit``.
        loss_scale_factor: Float or ``None``. Static loss scaling: the loss is multiplied by this factor and the
            gradients divided by it before the update.
        gradient_accumulation_steps: Int or ``None``. If an int ≥ 2, gradients are averaged over that many
            ``apply`` calls and the update is made once per group; the rule then sees the number of *updates*
            (1, 2, …) as its step ``t``, not the number of ``apply`` calls.
        name: String. The name of the optimizer's variables' name scope."""


def compute_dtype(dtype) -> str:
    """The dtype (a Keras dtype name) the optimizer's state and features use for a variable of ``dtype``: float32
    for float16 and bfloat16 variables (their range and resolution are too small for second moments), else the
    variable's."""
    dtype = keras.backend.standardize_dtype(dtype)
    return "float32" if dtype in _LOW_PRECISION else dtype


def add_slot(optimizer: keras.optimizers.Optimizer, variable, name: str, shape=None, dtype=None):
    """An optimizer variable for ``variable``, named like ``add_variable_from_reference`` names it.

    When the shape and dtype are the variable's own, this *is* ``add_variable_from_reference``; otherwise
    (lag history, LSTM state, float32 state of a half-precision variable) the variable is created with
    ``add_variable`` under the same name and, as ``add_variable_from_reference`` does on TensorFlow, colocated
    with ``variable`` for ``tf.distribute``.
    """
    shape = tuple(variable.shape) if shape is None else tuple(int(s) for s in shape)
    var_dtype = keras.backend.standardize_dtype(variable.dtype)
    dtype = var_dtype if dtype is None else keras.backend.standardize_dtype(dtype)
    if shape == tuple(variable.shape) and dtype == var_dtype:
        return optimizer.add_variable_from_reference(variable, name=name)
    if hasattr(variable, "path"):
        full_name = f"{variable.path.replace('/', '_')}_{name}"
    else:
        full_name = f"{str(variable.name).replace('/', '_').replace(':', '_')}_{name}"
    strategy = getattr(optimizer, "_distribution_strategy", None)
    if strategy is None:
        return optimizer.add_variable(shape=shape, dtype=dtype, initializer="zeros", name=full_name)
    colocate = variable.value if isinstance(variable, keras.Variable) else variable
    with strategy.extended.colocate_vars_with(colocate):
        return optimizer.add_variable(shape=shape, dtype=dtype, initializer="zeros", name=full_name)


def dense_gradient(gradient, variable) -> tf.Tensor:
    """The dense gradient: a ``tf.IndexedSlices`` (e.g. from an ``Embedding``) is scattered, duplicate indices
    summed, into a zero tensor of the variable's shape; a dense gradient is returned unchanged."""
    if isinstance(gradient, tf.IndexedSlices):
        shape = tuple(variable.shape)
        values = tf.reshape(gradient.values, (-1,) + shape[1:])
        return tf.math.unsorted_segment_sum(values, gradient.indices, num_segments=shape[0])
    return tf.convert_to_tensor(gradient)


def all_finite(*tensors, event_dims: int = 0, backend: str = "tensorflow"):
    """Per-coordinate ``True`` where every tensor is finite; the trailing ``event_dims`` axes are reduced
    (``backend`` as in :func:`~tf_symbolic_l2o.features.array_ops`)."""
    o = array_ops(backend)
    ok = None
    for t in tensors:
        f = o.isfinite(t)
        if event_dims:
            f = o.all(f, axis=list(range(-event_dims, 0)))
        ok = f if ok is None else o.logical_and(ok, f)
    return ok
