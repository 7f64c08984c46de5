"""Objectives of the thesis and of its continual-learning baselines, one module per objective.

Functions are pure (tensors in, scalar loss out); :class:`EWC` and :class:`ALASSO` are small
classes because they keep state across tasks. Each docstring cites its thesis equation or
reference protocol and states the choices made where those are silent.
"""

from irbook.losses.classification import new_class_cross_entropy
from irbook.losses.deep_hashing import (
    DeepHashingWeights,
    bit_balance_loss,
    decorrelation_loss,
    deep_hashing_loss,
    hashing_pair_loss,
    hashing_quantization_loss,
    relaxed_hamming_distance,
)
from irbook.losses.distillation import (
    KERNELS,
    correlation_distillation,
    feature_distillation,
    gram_matrix,
    lwf_distillation,
    multi_model_correlation,
)
from irbook.losses.estimation import (
    accuracy_change_bounds,
    estimate_features,
    estimate_prior_features,
    estimation_weights,
)
from irbook.losses.finetune import (
    classification_loss,
    contrastive_loss,
    double_margin_siamese_loss,
    joint_loss,
    mine_hard_negatives,
    siamese_loss,
    squared_distance,
    transformation_regression_loss,
    transformation_similarity,
    triplet_loss,
)
from irbook.losses.mmd import MEDIAN_MULTIPLIERS, gaussian_mmd, median_sigma
from irbook.losses.nce import nce_batch_loss, nce_loss
from irbook.losses.regularizers import ALASSO, EWC
from irbook.losses.triplet import DISTANCES, reference_pair_loss, triplet_hard_loss

__all__ = [
    "ALASSO",
    "DISTANCES",
    "DeepHashingWeights",
    "EWC",
    "KERNELS",
    "MEDIAN_MULTIPLIERS",
    "accuracy_change_bounds",
    "bit_balance_loss",
    "classification_loss",
    "contrastive_loss",
    "correlation_distillation",
    "decorrelation_loss",
    "deep_hashing_loss",
    "double_margin_siamese_loss",
    "estimate_features",
    "estimate_prior_features",
    "estimation_weights",
    "feature_distillation",
    "gaussian_mmd",
    "gram_matrix",
    "hashing_pair_loss",
    "hashing_quantization_loss",
    "joint_loss",
    "lwf_distillation",
    "median_sigma",
    "mine_hard_negatives",
    "multi_model_correlation",
    "nce_batch_loss",
    "nce_loss",
    "new_class_cross_entropy",
    "reference_pair_loss",
    "relaxed_hamming_distance",
    "siamese_loss",
    "squared_distance",
    "transformation_regression_loss",
    "transformation_similarity",
    "triplet_hard_loss",
    "triplet_loss",
]
