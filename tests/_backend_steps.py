"""Apply a symbolic Keras optimizer to a fixed gradient sequence on the current Keras backend (tests/test_backends.py
runs it in-process on TensorFlow and as ``python -m _backend_steps`` under ``KERAS_BACKEND=jax`` or ``torch``)."""

import json
import sys

import keras
import numpy as np

from tf_symbolic_l2o import optimizers

INIT = (np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4), np.linspace(0.5, -0.5, 5, dtype=np.float32))


def run(name, kwargs, grads, sign=1.0):
    """Weights after every step (lists of arrays) and the optimizer's variables at the end."""
    kwargs = dict(kwargs)
    from_config = kwargs.pop("from_config", False)
    opt = getattr(optimizers, name.split("_")[0])(**kwargs)  # "SymbolicRP_lr" is SymbolicRP with other kwargs
    if from_config:  # the optimizer rebuilt from its config (a JSON round trip) takes the steps
        opt = type(opt).from_config(json.loads(json.dumps(opt.get_config())))
    variables = [keras.Variable(v) for v in INIT]
    opt.build(variables)
    weights = []
    for step in grads:
        opt.apply_gradients([(keras.ops.convert_to_tensor(sign * g), v) for g, v in zip(step, variables)])
        weights.append([np.asarray(keras.ops.convert_to_numpy(v)) for v in variables])
    return weights, [np.asarray(keras.ops.convert_to_numpy(s)) for s in opt.variables]


def main():
    data = np.load("grads.npz", allow_pickle=False)
    flat = [data[f"arr_{i}"] for i in range(len(data.files))]
    grads = [flat[i:i + 2] for i in range(0, len(flat), 2)]
    out = {}
    for name, kwargs in json.loads(open("cases.json").read()).items():
        for sign in (1.0, -1.0):
            weights, slots = run(name, kwargs, grads, sign)
            for t, ws in enumerate(weights):
                for i, w in enumerate(ws):
                    out[f"{name}|{sign}|w|{t}|{i}"] = w
            for i, s in enumerate(slots):
                out[f"{name}|{sign}|s|{i}"] = s
        rest, _ = run(name, kwargs, [[np.zeros_like(g) for g in grads[0]]] * 3)  # from the zero state
        for i, w in enumerate(rest[-1]):
            out[f"{name}|rest|{i}"] = w
    np.savez("out.npz", **out)
    print(keras.backend.backend(), "tensorflow imported:", "tensorflow" in sys.modules)


if __name__ == "__main__":
    main()
