"""Stateless seeds: every random draw in tfl2o derives from a base seed and integer counters.

``step_seed(seed, a, b, …)`` folds the counters into the seed one after the other, so a draw depends only on where
it is made (which run, which epoch, which step), never on what was drawn before: a resumed run draws exactly what an
uninterrupted one does. The counters in use are named here, once.

Streams under a user's base seed (the first counter):

=================  =====  ==========================================================================================
name               value  draws
=================  =====  ==========================================================================================
``TRAINING``       1      meta-training epoch ``e``: ``step_seed(seed, TRAINING, e)``
``VALIDATION``     2      meta-training validation run ``r``: ``step_seed(seed, VALIDATION, r)``
``EVALUATION``     7      evaluation run ``i``: ``step_seed(seed, EVALUATION, i)``
``LR_TUNING``      8      learning-rate search run ``i``: ``step_seed(seed, LR_TUNING, i)``
``RECORDING``      11     behaviour-recording run ``i``: ``step_seed(seed, RECORDING, i)``
``STATISTICS``     13     batch ``i`` of the BatchNorm statistics a Keras-model task recomputes to evaluate θ:
                          ``step_seed(STATISTICS, i)`` (no user seed: evaluation is a function of θ alone)
=================  =====  ==========================================================================================

Sub-streams within one optimizee run (the counter after a run's seed):

=================  =====  ==========================================================================================
``INIT``           0      the optimizee's initial parameters
``BATCHES``        1      the minibatch stream; step ``k`` draws from ``step_seed(step_seed(run, BATCHES), k)``
``SCALE``          2      the random objective scaling of a meta-training epoch
``COIN``           3      a meta-training epoch's imitation coin
``FAMILY``         4      which member of a task family (and which horizon) a meta-training epoch trains on
=================  =====  ==========================================================================================
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

TRAINING, VALIDATION, EVALUATION, LR_TUNING, RECORDING, STATISTICS = 1, 2, 7, 8, 11, 13
INIT, BATCHES, SCALE, COIN, FAMILY = 0, 1, 2, 3, 4


def step_seed(seed: Any, *counters: Any) -> tf.Tensor:
    """A ``[2]`` int32 stateless seed derived from a base seed and integer counters (stream, epoch, step, …)."""
    s = tf.constant([0, 0], tf.int32) + tf.cast(seed, tf.int32)
    for c in counters:
        s = tf.random.experimental.stateless_fold_in(s, tf.cast(c, tf.int32))
    return tf.cast(s, tf.int32)
