"""Keras image classifiers for :func:`tf_symbolic_l2o.keras_training.train` and
:class:`~tf_symbolic_l2o.tasks.keras_task.KerasModelTask`.

:func:`make_model` builds a fresh, uncompiled classifier by name (:data:`MODELS`): ``resnet50``
(``keras.applications.ResNet50(weights=None)``, 23.6 M parameters), ``resnet20`` (the CIFAR ResNet-20 of He et al.,
0.27 M, from :func:`cifar_resnet`) and ``cnn`` (a 2-layer convnet without BatchNorm, for tests).
:func:`resolve_model` also takes any ``keras.applications`` name (``mobilenetv2``, ``efficientnetb0``, …), a
``.keras`` file or a model object.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import keras

__all__ = ["BN_MOMENTUM", "MODELS", "application_names", "cifar_resnet", "make_model", "resnet20", "resolve_model"]

#: Names :func:`make_model` accepts.
MODELS = ("resnet50", "resnet20", "cnn")
#: BatchNormalization momentum of the models of :func:`make_model` (see there).
BN_MOMENTUM = 0.9


def cifar_resnet(depth: int = 20, width: int = 1, input_shape=(32, 32, 3), classes: int = 10) -> keras.Model:
    """The CIFAR ResNet of He et al. (2016): ``depth = 6n + 2`` (3 stages × n basic blocks), ``16·width`` /
    ``32·width`` / ``64·width`` filters; ``depth=20, width=1`` is ResNet-20 (0.27 M parameters)."""
    if (depth - 2) % 6 or depth < 8 or width < 1:
        raise ValueError(f"CIFAR ResNet depth must be 6n + 2 >= 8 and width >= 1, got {depth}, {width}")
    L = keras.layers
    inputs = keras.Input(input_shape)
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(16 * width, 3, padding="same", use_bias=False)(inputs)))
    for stage, base in enumerate((16, 32, 64)):
        filters = base * width
        for block in range((depth - 2) // 6):
            strides = 2 if stage > 0 and block == 0 else 1
            y = L.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False)(x)
            y = L.ReLU()(L.BatchNormalization()(y))
            y = L.BatchNormalization()(L.Conv2D(filters, 3, padding="same", use_bias=False)(y))
            if strides != 1 or x.shape[-1] != filters:
                x = L.BatchNormalization()(L.Conv2D(filters, 1, strides=strides, use_bias=False)(x))
            x = L.ReLU()(L.Add()([x, y]))
    x = L.GlobalAveragePooling2D()(x)
    name = f"resnet{depth}" + (f"x{width}" if width > 1 else "")
    return keras.Model(inputs, L.Dense(classes, activation="softmax")(x), name=name)


def resnet20(input_shape=(32, 32, 3), classes=10) -> keras.Model:
    """The CIFAR ResNet-20 (:func:`cifar_resnet` with depth 20)."""
    return cifar_resnet(20, 1, input_shape, classes)


def _tiny_cnn(input_shape, classes):
    L = keras.layers
    return keras.Sequential([keras.Input(input_shape), L.Conv2D(8, 3, strides=2, activation="relu"),
                             L.Conv2D(16, 3, strides=2, activation="relu"), L.GlobalAveragePooling2D(),
                             L.Dense(classes, activation="softmax")], name="cnn")


def _check_model_name(name) -> str:
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in MODELS:
        raise ValueError(f"unknown model {name!r}; use one of {', '.join(MODELS)}")
    return key


def make_model(name: str, input_shape=(32, 32, 3), classes: int = 10,
               bn_momentum: float | None = BN_MOMENTUM) -> keras.Model:
    """A fresh, uncompiled classifier with a softmax output (its weights come from Keras's global seed).

    ``bn_momentum`` replaces the momentum of every ``BatchNormalization`` layer (Keras's default is 0.99;
    ``None`` keeps it). With 0.99 the moving statistics that inference uses still weigh the initial ones by
    0.99^steps — 57 % after one 56-step epoch of the default data — so evaluation after a short run, which the
    learning-rate tuning relies on, would measure the statistics rather than the weights; 0.9 (PyTorch's default,
    the usual choice for CIFAR ResNets) forgets them within an epoch.
    """
    key = _check_model_name(name)
    if key == "resnet50":
        model = keras.applications.ResNet50(weights=None, input_shape=tuple(input_shape), classes=int(classes))
    elif key == "resnet20":
        model = resnet20(tuple(input_shape), int(classes))
    else:
        model = _tiny_cnn(tuple(input_shape), int(classes))
    if bn_momentum is not None:
        for layer in _all_layers(model):
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = float(bn_momentum)
    return model


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def _key(name: str) -> str:
    return name.strip().lower().replace("_", "").replace("-", "")


def _applications() -> dict:
    return {_key(n): getattr(keras.applications, n) for n in dir(keras.applications)
            if n[:1].isupper() and callable(getattr(keras.applications, n))}


def application_names() -> list[str]:
    """The ``keras.applications`` constructors :func:`resolve_model` builds, as lower-case keys (``resnet50``)."""
    return sorted(_applications())


def _is_path(ref: str | os.PathLike) -> bool:
    text = os.fspath(ref)
    return text.endswith(".keras") or os.sep in text or Path(text).exists()


def _load_file(path: str | os.PathLike) -> keras.Model:
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} not found; pass a .keras file saved by model.save() or a "
                                f"keras.applications name such as resnet50")
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as e:  # keras raises ValueError, zipfile.BadZipFile, KeyError, … for a foreign file
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise ValueError(f"{path} is not a Keras model file ({reason}); save one with model.save('model.keras')") \
            from e
    if not isinstance(model, keras.Model):
        raise ValueError(f"{path} holds a {type(model).__name__}, not a keras.Model; save a model with model.save()")
    return model


def _build_named(name: str, input_shape, classes: int) -> keras.Model:
    key, apps = _key(name), _applications()
    if key not in MODELS and key not in apps:
        close = difflib.get_close_matches(key, sorted(set(apps) | set(MODELS)), n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ValueError(f"unknown model {name!r}: not a .keras file nor a keras.applications name; {hint}"
                         f"use a path ending in .keras or one of {', '.join(MODELS)} or "
                         f"keras.applications' {len(apps)} models (e.g. resnet50, mobilenetv2)")
    if input_shape is None:
        raise ValueError(f"model {name!r} needs an input shape; pass input_shape (--input-shape), e.g. 32,32,3")
    if key in MODELS:
        return make_model(key, tuple(input_shape), int(classes))
    try:
        return apps[key](weights=None, input_shape=tuple(int(d) for d in input_shape), classes=int(classes))
    except ValueError as e:
        reason = (str(e).strip().splitlines() or ["invalid arguments"])[0][:200]
        raise ValueError(f"keras.applications {name!r} cannot be built for input_shape {tuple(input_shape)} and "
                         f"{classes} classes: {reason}") from e


def resolve_model(model, input_shape=None, classes: int = 10) -> tuple[keras.Model, str | None]:
    """``(model, reference)`` for a ``keras.Model`` (reference ``None``), a ``.keras`` path (loaded with
    ``safe_mode=True``, reference the path) or a name of :data:`MODELS` or ``keras.applications`` (built with
    ``weights=None``, ``input_shape`` and ``classes``; reference the name). The model may still be unbuilt.

    Raises:
        FileNotFoundError: a path that does not exist.
        ValueError: a file that is not a Keras model, an unknown name, a name without ``input_shape``.
    """
    if isinstance(model, keras.Model):
        return model, None
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(f"model must be a keras.Model, a .keras path or a model name, got {type(model).__name__}")
    if _is_path(model):
        return _load_file(model), os.fspath(model)
    return _build_named(str(model), input_shape, classes), _key(str(model))
