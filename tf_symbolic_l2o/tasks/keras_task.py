"""A task made from any Keras 3 model: ``model.stateless_call`` turns a ``keras.Model`` into a functional optimizee.

The parameters θ are the model's trainable variables, in ``model.trainable_variables`` order, and the training loss
is ``loss(y, model.stateless_call(θ, state, x, training=True)[0])`` plus the model's own losses (regularisers): the
model's variables are never assigned, so an optimizer can be meta-trained through the unroll exactly as on the
hand-written networks of :mod:`tf_symbolic_l2o.tasks`.

**Initialisation** (``init="keras"``). Parameter ``i`` is drawn from its layer's own initialiser
(``kernel_initializer``, ``gamma_initializer``, ``depthwise_initializer``, …), re-created from its config with an
integer seed derived from ``step_seed(seed, i)``: a fresh run is a function of its seed alone, and no global state
is touched (no ``keras.utils.set_random_seed``). A parameter whose layer names no initialiser for it starts from the
model's value at construction, whatever the seed (:attr:`KerasModelTask.fixed_init` lists them). ``init="paper"``
draws every entry from N(0, 0.01²), as the functional tasks do.

**Non-trainable state.** The :class:`~tf_symbolic_l2o.tasks.base.Task` protocol carries θ only, and this task keeps
it so, because training-mode BatchNorm normalises with the statistics of the minibatch: the training loss and its
gradients do not depend on the moving statistics, so the unroll neither needs nor carries them. Inference-mode
BatchNorm does need them, so :meth:`KerasModelTask.evaluate` recomputes them at θ: the population mean and
variance of each BatchNorm input over ``bn_batches`` training-mode minibatches of the task's split, drawn from the
fixed stream ``step_seed(STATISTICS, i)`` ("precise BN"). An evaluation is then a function of θ alone, independent
of the momentum and of the run's length. Frozen BatchNorm layers (``trainable=False``) and every other
non-trainable variable keep the model's values. BatchNorm with ``renorm=True``, whose training output does depend on
the moving statistics, is refused.

**Randomness in the forward pass.** Dropout, noise and augmentation layers draw from Keras ``SeedGenerator`` states,
which ``stateless_call`` takes as non-trainable variables. A minibatch is ``(x, y, seeds)`` with ``seeds`` a
``[batch, 2]`` split of the batch seed; the loss sets generator ``j``'s state to ``step_seed(seeds[0], j)``. Masks
therefore change every step, repeat when a step is replayed (determinism, exact resume), and differ between the
replicas of a ``tf.distribute`` unroll, each of which gets its own rows.
"""

from __future__ import annotations

import contextlib
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tf_symbolic_l2o.data import Dataset, load_dataset
from tf_symbolic_l2o.seeds import STATISTICS, step_seed
from tf_symbolic_l2o.tasks.base import ParamSpec, Task, init_param
from tf_symbolic_l2o.tasks.keras_models import resolve_model

__all__ = ["INIT_SCHEMES", "KerasModelTask", "as_dataset"]

#: ``init`` values: the model's own initialisers, seeded, or N(0, 0.01²).
INIT_SCHEMES = ("keras", "paper")
#: Initialiser attributes tried, before ``<variable name>_initializer``, for a variable of that name.
_INIT_ATTRS = {"kernel": ("kernel_initializer", "depthwise_initializer"),
               "depthwise_kernel": ("depthwise_initializer",), "pointwise_kernel": ("pointwise_initializer",)}
_SEED_STATE = "seed_generator_state"
_SPEC_KINDS = ("kernel", "bias", "gamma", "beta")


def as_dataset(dataset, data_dir=None, seed: int = 0):
    """A :class:`~tf_symbolic_l2o.data.Dataset` from a dataset, a name (:func:`load_dataset`), arrays ``(x, y)`` or
    a ``tf.data.Dataset`` of ``(x, y)`` pairs or ``{"image", "label"}`` dicts, batched or not (read into memory
    once); one such source also serves as the test set, a pair ``(train, test)`` of them gives both. Integer labels;
    ``max(label) + 1`` classes."""
    if isinstance(dataset, str):
        return load_dataset(dataset, data_dir=data_dir, seed=seed)
    if hasattr(dataset, "split") and hasattr(dataset, "num_classes"):
        return dataset
    if isinstance(dataset, tf.data.Dataset):
        dataset = _arrays(dataset)
    if isinstance(dataset, (tuple, list)) and len(dataset) == 2:
        if all(isinstance(part, (tuple, list, tf.data.Dataset)) for part in dataset):
            train, test = (_arrays(part) if isinstance(part, tf.data.Dataset) else part for part in dataset)
        else:
            train = test = dataset
        labels = np.concatenate([np.ravel(train[1]), np.ravel(test[1])])
        if labels.size == 0 or not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
            raise ValueError("labels must be integer class ids >= 0 (not one-hot vectors or floats); convert them "
                             "with argmax or astype(int)")
        return Dataset("arrays", train[0], train[1], test[0], test[1], int(labels.max()) + 1)
    raise TypeError(f"dataset must be a Dataset, a dataset name, arrays (x, y) or a tf.data.Dataset, got "
                    f"{type(dataset).__name__}")


def _arrays(ds: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` arrays holding a whole ``tf.data.Dataset`` of ``(x, y)`` pairs or ``{"image", "label"}`` dicts
    (batched or not: unbatched elements have scalar labels)."""
    spec = ds.element_spec
    if isinstance(spec, dict) and {"image", "label"} <= set(spec):
        ds, spec = ds.map(lambda e: (e["image"], e["label"])), (spec["image"], spec["label"])
    if not (isinstance(spec, tuple) and len(spec) == 2):
        raise ValueError("a tf.data.Dataset for a task must yield (x, y) pairs or {'image', 'label'} dicts; map it "
                         "to (x, y) first")
    if spec[1].shape.rank == 0:  # one example per element
        ds = ds.batch(1024)
    batches = list(ds.as_numpy_iterator())
    if not batches:
        raise ValueError("the tf.data.Dataset is empty; give it some (x, y) examples")
    return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])


class KerasModelTask(Task):
    """Classification with any Keras 3 model as the optimizee (see the module docstring for the design).

    Args:
        model: a ``keras.Model``; a ``.keras`` file (loaded with ``safe_mode=True``); or a name, ``resnet20`` or a
            ``keras.applications`` model such as ``resnet50`` or ``mobilenetv2``, built with ``weights=None``,
            ``input_shape`` (default: the dataset's) and the dataset's classes.
        dataset: a :class:`~tf_symbolic_l2o.data.Dataset`, a dataset name, or arrays (see :func:`as_dataset`).
        split: the training split (``meta_train``, ``eval`` or ``train``, as for
            :class:`~tf_symbolic_l2o.tasks.base.ClassificationTask`, which draws the same examples for a seed).
        batch_size: minibatch size (a fresh minibatch each step, sampled with replacement).
        input_shape: the shape of one example; required for an unbuilt model. Inputs are reshaped to the model's
            input shape when their sizes agree (flat MNIST for a 28×28×1 model).
        loss: a Keras loss (object or name) of ``(labels, outputs)``. Default: sparse categorical cross-entropy,
            from logits unless the outputs are probabilities (rows ≥ 0 that sum to one on a probe batch, as after
            a softmax head).
        init: ``"keras"`` (the model's own initialisers, seeded) or ``"paper"`` (N(0, 0.01²)).
        bn_batches: training minibatches over which :meth:`evaluate` recomputes BatchNorm statistics.
        data_dir, data_seed: where and how to load a dataset given by name.
    """

    name = "keras"
    has_accuracy = True

    def __init__(self, model, dataset, split: str = "meta_train", batch_size: int = 128, input_shape=None,
                 loss=None, init: str = "keras", bn_batches: int = 16, data_dir=None, data_seed: int = 0):
        if batch_size <= 0 or bn_batches <= 0:
            raise ValueError(f"batch_size and bn_batches must be positive, got {batch_size} and {bn_batches}")
        if init not in INIT_SCHEMES:
            raise ValueError(f"unknown init scheme {init!r} for a Keras model; use one of {INIT_SCHEMES}")
        self.dataset = as_dataset(dataset, data_dir, data_seed)
        self.split, self.batch_size, self.init, self.bn_batches = split, int(batch_size), init, int(bn_batches)
        given = None if input_shape is None else tuple(int(d) for d in input_shape)
        self.model, self.model_ref = resolve_model(model, given or self.dataset.input_shape, self.dataset.num_classes)
        if not self.model.built:
            if given is None:
                raise ValueError("the model is not built and no input_shape is given; pass input_shape "
                                 "(--input-shape), e.g. 32,32,3, or start the model with keras.Input")
            self.model(np.zeros((1, *given), np.float32))
        self.input_shape, dtype = self._input_signature(given)
        x, y = self.dataset.split(split)
        self._x, self._y = self._fit_inputs(x, dtype), tf.constant(y, tf.int32)
        self._x_test = self._fit_inputs(self.dataset.x_test, dtype)
        self._y_test = tf.constant(self.dataset.y_test, tf.int32)
        self.loss_fn, self.loss_config = self._make_loss(loss)
        self._trainable = list(self.model.trainable_variables)
        not_float = [v.path for v in self._trainable if v.dtype != "float32"]
        if not_float:
            raise ValueError(f"trainable variables must be float32, got {not_float[:3]}; build the model in float32 "
                             f"(a mixed-precision policy keeps float32 variables)")
        self._specs = [ParamSpec(v.path, tuple(v.shape), v.name if v.name in _SPEC_KINDS else "kernel")
                       for v in self._trainable]
        self._initializers = _initializers(self.model, self._trainable)
        # the construction values of the parameters without an initialiser (kept: the model's may be reassigned)
        self._initial = [None if i is not None else tf.constant(v.numpy())
                         for v, i in zip(self._trainable, self._initializers)]
        self.fixed_init = [v.path for v, i in zip(self._trainable, self._initializers) if i is None]
        self._init_state()
        self._predict = tf.function(lambda params, state, x: self.model.stateless_call(params, state, x)[0])
        self._statistics = tf.function(self._batch_statistics)

    # -- construction ------------------------------------------------------------------------------------------
    def _input_signature(self, given):
        try:
            inputs = self.model.inputs  # functional and Sequential models; subclassed ones have none
        except (AttributeError, ValueError):
            inputs = None
        if inputs is not None and len(inputs) != 1:
            raise ValueError(f"the model takes {len(inputs)} inputs; a classification task feeds one")
        if inputs:
            shape = tuple(inputs[0].shape[1:])
            if None not in shape:
                if given is not None and given != shape:
                    raise ValueError(f"input_shape {given} differs from the model's input {shape}; drop "
                                     f"input_shape or rebuild the model for it")
                return shape, inputs[0].dtype
        return given or tuple(self.dataset.input_shape), "float32"

    def _fit_inputs(self, x, dtype) -> tf.Tensor:
        x = np.asarray(x)
        if x.shape[1:] != self.input_shape:
            if int(np.prod(x.shape[1:])) != int(np.prod(self.input_shape)):
                raise ValueError(f"dataset {self.dataset.name!r} inputs {x.shape[1:]} do not fit the model's input "
                                 f"{self.input_shape}; use a dataset of that shape (mnist_subset_32 is 32×32×3) "
                                 f"or pass the matching input_shape")
            x = x.reshape((-1, *self.input_shape))
        return tf.constant(x, dtype)

    def _make_loss(self, loss):
        """The loss and its config, after checking on a probe batch that the output is ``[batch, classes]``."""
        out = self.model(self._x[:2], training=False)
        if isinstance(out, (list, tuple, dict)):
            raise ValueError("the model has several outputs; a classification task needs one [batch, classes] output")
        out, classes = keras.ops.convert_to_numpy(out), self.dataset.num_classes
        if out.ndim != 2 or out.shape[-1] != classes:
            raise ValueError(f"the model's output shape {tuple(out.shape[1:])} does not fit dataset "
                             f"{self.dataset.name!r} ({classes} classes); end the model with Dense({classes}) "
                             f"(keras.applications: classes={classes})")
        if loss is not None:
            fn = keras.losses.get(loss)
            return fn, (loss if isinstance(loss, str) else keras.losses.serialize(fn))
        from_logits = not (np.all(out >= 0) and np.allclose(out.sum(-1), 1.0, atol=1e-3))
        return (keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits),
                {"name": "sparse_categorical_crossentropy", "from_logits": bool(from_logits)})

    def _init_state(self) -> None:
        """The non-trainable values, which seed-generator slots get a per-step seed, and which BatchNorm
        statistics :meth:`inference_state` recomputes."""
        variables = self.model.non_trainable_variables
        self._state = [tf.constant(v.numpy(), v.dtype) for v in variables]
        self._seed_slots = [i for i, v in enumerate(variables) if v.name == _SEED_STATE]
        position = {id(v): i for i, v in enumerate(variables)}
        layers = [la for la in _all_layers(self.model, include_self=False)
                  if isinstance(la, keras.layers.BatchNormalization) and la.trainable]
        renorm = [la.name for la in layers if la.renorm]
        if renorm:
            raise ValueError(f"BatchNormalization with renorm=True ({renorm[0]}) is not supported: its training "
                             f"output depends on the moving statistics; rebuild the model with renorm=False")
        self._bn_layers = layers
        self._bn_slots = [(position[id(la.moving_mean)], position[id(la.moving_variance)]) for la in layers]

    # -- the Task protocol --------------------------------------------------------------------------------------
    def param_specs(self) -> list[ParamSpec]:
        return self._specs

    def init_params(self, seed: Any) -> list[tf.Tensor]:
        """Fresh parameters (eager: the Keras initialisers take integer seeds)."""
        base = step_seed(seed)
        if self.init == "paper":
            return [init_param(s, step_seed(base, i), "paper") for i, s in enumerate(self._specs)]
        params = []
        for i, (v, initializer, start) in enumerate(zip(self._trainable, self._initializers, self._initial)):
            if initializer is None:
                params.append(start)
                continue
            value = _seeded(initializer, _int_seed(step_seed(base, i)))(v.shape, v.dtype)
            params.append(tf.cast(value, tf.float32))
        return params

    def sample_batch(self, seed: tf.Tensor):
        n = tf.shape(self._x, out_type=tf.int32)[0]
        idx = tf.random.stateless_uniform([self.batch_size], seed, 0, n, dtype=tf.int32)
        seeds = tf.random.experimental.stateless_split(step_seed(seed, 0), self.batch_size)
        return tf.gather(self._x, idx), tf.gather(self._y, idx), seeds

    def loss(self, params, batch) -> tf.Tensor:
        """The training loss of a minibatch ``(x, y, seeds)`` (or ``(x, y)``: random layers then use seed 0)."""
        x, y, *rest = batch
        state = self._state_with_seed(rest[0][0] if rest else tf.zeros([2], tf.int32))
        out, _, losses = self.model.stateless_call(list(params), state, x, training=True, return_losses=True)
        value = tf.reduce_mean(self.loss_fn(y, out))
        if losses:
            value = value + tf.add_n(losses)
        return tf.cast(value, tf.float32)

    def inference_state(self, params) -> list[tf.Tensor]:
        """The non-trainable values for inference at ``params``: BatchNorm statistics recomputed (module docstring),
        the rest as in the model."""
        state = list(self._state)
        if not self._bn_slots:
            return state
        params = [tf.convert_to_tensor(p) for p in params]
        sums = [(0.0, 0.0)] * len(self._bn_slots)
        for i in range(self.bn_batches):
            x, _, seeds = self.sample_batch(step_seed(STATISTICS, i))
            with _momentum(self._bn_layers, 0.0):  # moving statistics := this batch's (traced so)
                means, variances = self._statistics(params, self._state_with_seed(seeds[0]), x)
            sums = [(a + m, b + v + tf.square(m)) for (a, b), m, v in zip(sums, means, variances)]
        for (mean_slot, var_slot), (first, second) in zip(self._bn_slots, sums):
            mean = first / self.bn_batches
            state[mean_slot] = mean
            state[var_slot] = tf.maximum(second / self.bn_batches - tf.square(mean), 0.0)
        return state

    def evaluate(self, params, batch_size: int = 1000) -> dict[str, float]:
        params = [tf.convert_to_tensor(p) for p in params]
        state = self.inference_state(params)
        total_loss, correct, n = 0.0, 0, int(self._x_test.shape[0])
        for start in range(0, n, batch_size):
            x, y = self._x_test[start:start + batch_size], self._y_test[start:start + batch_size]
            out = self._predict(params, state, x)
            total_loss += float(tf.reduce_mean(self.loss_fn(y, out))) * int(y.shape[0])
            correct += int(tf.reduce_sum(tf.cast(tf.equal(tf.argmax(out, -1, output_type=tf.int32), y), tf.int32)))
        return {"test_loss": total_loss / n, "test_accuracy": correct / n}

    def config(self) -> dict:
        return {"name": self.name, "model": self.model_ref, "model_name": self.model.name,
                "dataset": self.dataset.name, "split": self.split, "input_shape": list(self.input_shape),
                "batch_size": self.batch_size, "loss": self.loss_config, "init": self.init,
                "bn_batches": self.bn_batches}

    # -- helpers ------------------------------------------------------------------------------------------------
    def _state_with_seed(self, seed) -> list[tf.Tensor]:
        state = list(self._state)
        for j, i in enumerate(self._seed_slots):
            state[i] = tf.cast(step_seed(seed, j), state[i].dtype)
        return state

    def _batch_statistics(self, params, state, x):
        _, new = self.model.stateless_call(params, state, x, training=True)
        return [new[m] for m, _ in self._bn_slots], [new[v] for _, v in self._bn_slots]


def _initializers(model: keras.Model, variables) -> list:
    """Each variable's initialiser, found on the layer that owns it (``None`` where the layer names none)."""
    owner = {}
    for layer in _all_layers(model, include_self=True):  # parents first: the innermost owner wins
        for v in layer.trainable_variables:
            owner[id(v)] = layer
    found = []
    for v in variables:
        layer = owner.get(id(v))
        names = _INIT_ATTRS.get(v.name, ()) + (f"{v.name}_initializer",)
        found.append(next((getattr(layer, a) for a in names if callable(getattr(layer, a, None))), None))
    return found


def _all_layers(model: keras.Model, include_self: bool):
    """Every layer inside ``model``, nested models and layers' sublayers included, parents first (Keras's own walk,
    which ``Model.summary`` uses too)."""
    return model._flatten_layers(include_self=include_self, recursive=True)


def _int_seed(seed: tf.Tensor) -> int:
    """An integer seed for a Keras initialiser from a ``[2]`` stateless seed (Keras keeps it modulo 2³¹ − 2)."""
    s = seed.numpy()
    return (int(s[0]) * 1_000_003 + int(s[1])) % (2 ** 31 - 2)


def _seeded(initializer, seed: int):
    """``initializer`` re-created with an integer seed (initialisers without a seed are returned as they are)."""
    if isinstance(initializer, keras.initializers.Initializer) and "seed" in initializer.get_config():
        return type(initializer).from_config({**initializer.get_config(), "seed": seed})
    return initializer


@contextlib.contextmanager
def _momentum(layers, value: float):
    saved = [layer.momentum for layer in layers]
    for layer in layers:
        layer.momentum = value
    try:
        yield
    finally:
        for layer, m in zip(layers, saved):
            layer.momentum = m
