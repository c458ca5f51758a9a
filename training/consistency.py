"""Look consistency: the model must give a photo and its Roboflow-chained twin the same answer.

The one-look draws (`looks.LookJitter`) give every folder the same odds of each look, yet the model still reads the
look as a cue (the flip test, `training.cue`): the Roboflow copies are always re-encoded, the originals only at
random. Squeezing every photo through the chain at inference (the canonical look) removes the cue but also the
detail it lives in. This tries to make the cue useless in training instead: each photo is paired with its chained twin
(`data.make_dataset(twin_look=...)`, cut and augmented identically) and the loss adds the Jensen-Shannon
divergence between the two answers, as AugMix (Hendrycks et al., 2020) does for its augmented views, while the
photo itself keeps all its detail. The flip test counts, on held-out photos, the answers this term is meant to
hold still; Experiment 18 of models/README.md measures how far one paired epoch gets.
"""

from __future__ import annotations

import keras
from keras import ops

# AugMix's weight of the Jensen-Shannon term; JS between two distributions is at most ln 2.
DEFAULT_CONSISTENCY_WEIGHT = 12.0


def jensen_shannon(p, q, epsilon: float = 1e-7):
    """Per row, the Jensen-Shannon divergence (natural log) between probability rows `p` and `q`."""
    p = ops.clip(p, epsilon, 1.0)
    q = ops.clip(q, epsilon, 1.0)
    mean = (p + q) / 2
    return 0.5 * (ops.sum(p * ops.log(p / mean), axis=-1) + ops.sum(q * ops.log(q / mean), axis=-1))


@keras.saving.register_keras_serializable(package="cassava_edge_training")
class LookConsistencyLoss(keras.losses.CategoricalCrossentropy):
    """Cross-entropy on every image of a paired batch (n photos, then their n twins) plus `consistency_weight`
    times the Jensen-Shannon divergence of each photo's answer and its twin's, counted once on each of the two."""

    def __init__(self, consistency_weight: float = DEFAULT_CONSISTENCY_WEIGHT, label_smoothing: float = 0.0,
                 name: str = "look_consistency", **kwargs) -> None:
        super().__init__(label_smoothing=label_smoothing, name=name, **kwargs)
        self.consistency_weight = consistency_weight

    def call(self, y_true, y_pred):
        cross_entropy = super().call(y_true, y_pred)
        half = ops.shape(y_pred)[0] // 2
        divergence = jensen_shannon(y_pred[:half], y_pred[half:])
        return cross_entropy + self.consistency_weight * ops.concatenate([divergence, divergence], axis=0)

    def get_config(self) -> dict:
        return {**super().get_config(), "consistency_weight": self.consistency_weight}
