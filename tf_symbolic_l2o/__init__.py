"""tf_symbolic_l2o — learned and symbolic optimizers on TensorFlow 2 / Keras 3.

A rebuild of *Symbolic Learning to Optimize* (Zheng, Chen, Hu, Wang, ICLR 2022):

1. meta-train coordinate-wise LSTM optimizers (DM, RNNprop: ``rp``, ``rp_s``, ``rp_si``) — :mod:`.meta`;
2. record their behaviour as ``.npy`` datasets — :mod:`.record`;
3. distill closed-form rules by symbolic regression — :mod:`.distill`, in the canonical format of :mod:`.rules`;
4. use the rules (and the LSTMs) as Keras optimizers — :mod:`.optimizers` — and train Keras models such as
   ResNet-50 with any of them — :mod:`.keras_training` (:mod:`.image_data`, :mod:`.tasks.keras_models`);
5. meta-tune a rule's constants (or the paper's ψ family) on CNNs, ResNets or any Keras model
   (:class:`~.tasks.keras_task.KerasModelTask`) — :mod:`.tune` — on one device or several (:mod:`.distribute`);
6. export rules and trained models as SavedModels — :mod:`.export`;

and compare them with tuned baselines on a task suite — :mod:`.benchmark`.

Other modules: :mod:`.features` (per-coordinate optimizer state), :mod:`.data`, :mod:`.tasks` (functional
optimizees), :mod:`.learned` (LSTM optimizers), :mod:`.functional` (the optimizer protocol and the hand-designed
optimizers; :mod:`.baselines` keeps ``Baseline``), :mod:`.harness` (runs and learning-rate search), :mod:`.invariants`
(rest, sign symmetry, descent), :mod:`.seeds` (the named streams of stateless seeds), :mod:`.artifacts` (where
``saved_models/`` is found); :mod:`.fit` re-exports the Keras-training names from their homes.
"""

__version__ = "0.1.0"

from tf_symbolic_l2o import optimizers as _optimizers  # noqa: F401 - registers the Keras optimizers for loading

# The other names are imported on first use (PEP 562), so that under Keras' JAX or PyTorch backend importing the
# package or its optimizers does not import TensorFlow.
_HOMES = {
    "Baseline": "baselines", "FEATURE_NAMES": "features", "FeatureSet": "features", "load_l2o": "learned.io",
    "save_l2o": "learned.io", "CoordinatewiseLSTM": "learned.lstm", "available_optimizers": "learned.registry",
    "make_l2o": "learned.registry", "evaluate_optimizers": "meta.evaluate", "write_report": "meta.evaluate",
    "MetaTrainer": "meta.trainer", "TrainConfig": "meta.trainer", "LearnedOptimizer": "optimizers",
    "SymbolicDM": "optimizers", "SymbolicOptimizer": "optimizers", "SymbolicRP": "optimizers",
    "SymbolicRPsi": "optimizers", "Rule": "rules", "KerasModelTask": "tasks.keras_task",
    "available_tasks": "tasks.registry", "make_task": "tasks.registry", "MetaTuner": "tune", "TunableRule": "tune",
    "TuneConfig": "tune", "psi_rule": "tune",
}


def __getattr__(name: str):
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_HOMES))


__all__ = [
    "Baseline", "CoordinatewiseLSTM", "FEATURE_NAMES", "FeatureSet", "KerasModelTask", "LearnedOptimizer",
    "MetaTrainer", "Rule",
    "MetaTuner", "SymbolicDM", "SymbolicOptimizer", "SymbolicRP", "SymbolicRPsi", "TrainConfig", "TunableRule",
    "TuneConfig", "psi_rule",
    "available_optimizers", "available_tasks", "evaluate_optimizers", "load_l2o", "make_l2o", "make_task",
    "save_l2o", "write_report", "__version__",
]
