"""The fused PyTorch step of :class:`~tf_symbolic_l2o.optimizers.SymbolicOptimizer` (Keras' PyTorch backend).

Eager PyTorch runs every elementwise operation of a rule step as its own pass over the variable (about 180 passes
for ``SymbolicRP()`` on ResNet-50's 23.5 M parameters, each with its own dispatch), where TensorFlow and JAX fuse
the step into one loop under XLA. Here the step of one variable (``SymbolicOptimizer._math``, the same
:func:`~tf_symbolic_l2o.rules.step.rule_step` as the eager path: features, rule, finiteness guard; then the in-place
writes of state and variable) is traced once per rule and dtype into an ATen graph with symbolic sizes (``make_fx``)
and compiled with ``torch.compile`` (Inductor): one compiled kernel serves every variable of any size, since
variables and slots are passed as flat views. Kernels are cached per process by rule and dtypes, so several
optimizers with the same rule compile once; Inductor's on-disk cache makes later processes compile faster.

Only rules without lag history (``memlen == 1``, e.g. ``SymbolicRP()``'s) take this path: the history's shift by
one step, with the features innermost, compiles to a scalar loop that made a 16-lag rule's ResNet-50 step slower
than the eager one (6.3× Adam's against 4.6×), so rules with lags keep the eager step.

Not public API. The first step compiles (tens of seconds on a CPU, with a C++ compiler); where compilation fails
(e.g. no C++ compiler) a one-line warning says so and the step runs eagerly, with the same values.
"""

from __future__ import annotations

import threading
import warnings

import torch

from tf_symbolic_l2o.optimizers._common import compute_dtype

_KERNELS: dict = {}
_LOCK = threading.Lock()
_TRACE_SIZE = 7  # example size for the symbolic trace (not 0 or 1, which PyTorch specialises)
# Size of the first call that compiles the kernel: Inductor takes it as the size hint when deciding to split the
# loop over threads, and a small variable first (a bias) would leave every variable's loop on one thread.
_COMPILE_SIZE = 1 << 16


def _kernel(optimizer, var_dtype: torch.dtype, state_dtype: torch.dtype):
    """The compiled in-place step for ``optimizer``'s rule (``None`` when compilation failed before): looked up per
    optimizer by dtypes, and per process by the rule's JSON (rendered once per optimizer and dtypes)."""
    local = optimizer.__dict__.setdefault("_torch_kernels", {})
    key = (var_dtype, state_dtype)
    if key not in local:
        shared = (optimizer.rule.to_json(indent=None), *key)
        with _LOCK:
            if shared not in _KERNELS:
                _KERNELS[shared] = _compile(optimizer, var_dtype, state_dtype)
            local[key] = _KERNELS[shared]
    return local[key]


def _compile(optimizer, var_dtype, state_dtype):
    from torch.fx.experimental.proxy_tensor import make_fx

    names = optimizer._state_names

    def step_in_place(g, lr, step, variable, *slots):  # traced once; the graph keeps no reference to the optimizer
        new_state, _, delta = optimizer._math(g.to(state_dtype), dict(zip(names, slots)), None, step, lr)
        for name, slot in zip(names, slots):
            slot.copy_(new_state[name])
        variable.add_(delta.to(var_dtype))

    def example(n):  # gradient, learning rate, step, variable, slots
        return [torch.zeros(n, dtype=var_dtype), torch.ones((), dtype=state_dtype), torch.ones((), dtype=state_dtype),
                torch.zeros(n, dtype=var_dtype), *[torch.zeros(n, dtype=state_dtype) for _ in names]]

    try:
        with torch.no_grad():
            graph = make_fx(step_in_place, tracing_mode="symbolic")(*example(_TRACE_SIZE))
            kernel = torch.compile(graph, dynamic=True, fullgraph=True, options={"cpp.dynamic_threads": True})
            kernel(*example(_COMPILE_SIZE))  # compiles now, on zeros
        return kernel
    except Exception as err:  # noqa: BLE001 - any tracing or compilation failure means: run eagerly
        _warn(err)
        return None


def _warn(err: Exception) -> None:
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    warnings.warn(f"SymbolicOptimizer: the fused PyTorch step could not be compiled ({first[:200]}); running the "
                  f"step eagerly (same values, slower). Pass fused=False to skip the attempt.", RuntimeWarning,
                  stacklevel=4)


def compiling() -> bool:
    """True while ``torch.compile`` traces the caller (e.g. Keras' train step under ``jit_compile=True``)."""
    return bool(torch.compiler.is_compiling())


def _flat(tensor: torch.Tensor) -> torch.Tensor | None:
    return tensor.view(-1) if tensor.is_contiguous() else None


@torch.no_grad()
def apply_fused(optimizer, grads, variables, learning_rate) -> None:
    """One step of ``optimizer`` (a rule without lag history) on every variable: the compiled kernel where it
    applies, else the eager ``update_step`` (non-contiguous tensors, or a kernel that failed to compile)."""
    from keras import ops

    lr_value = ops.convert_to_tensor(learning_rate)
    step_value = ops.convert_to_tensor(optimizer.iterations) + 1  # the update count under gradient accumulation
    scalars = {}
    for grad, variable in zip(grads, variables):
        index = optimizer._get_variable_index(variable)
        slots, var = optimizer._state_slots[index], variable.value
        flat = [_flat(var), *[_flat(s.value) for s in slots]]
        state_dtype = getattr(torch, compute_dtype(variable.dtype))
        kernel = None
        if all(f is not None for f in flat):
            kernel = _kernel(optimizer, var.dtype, state_dtype)
        if kernel is None:
            optimizer.update_step(grad, variable, learning_rate)
            continue
        if state_dtype not in scalars:
            scalars[state_dtype] = (optimizer._scaled(lr_value.to(state_dtype)), step_value.to(state_dtype))
        try:
            kernel(grad.reshape(-1), *scalars[state_dtype], *flat)
        except Exception as err:  # noqa: BLE001 - a later recompilation (e.g. for a size-1 variable, which PyTorch
            # specialises) can still fail: fall back to the eager step for good
            _warn(err)
            with _LOCK:
                for table in (_KERNELS, optimizer._torch_kernels):
                    for key, value in table.items():
                        if value is kernel:
                            table[key] = None
            optimizer.update_step(grad, variable, learning_rate)
