"""Retrieval metrics: AP/mAP, the revisited Oxford/Paris protocol, N-S score, Recall@K;
forgetting and incremental accuracy of continual learning."""

from .ap import (
    RULES,
    ap_code_faithful,
    ap_from_ranking,
    average_precision,
    mean_average_precision,
)
from .continual import (
    average_forgetting,
    average_incremental_accuracy,
    forgetting_curve,
    harmonic_mean,
    old_new_summary,
)
from .fast_map import map_from_scores
from .pr import RECALL_LEVELS, interpolated_precision, mean_precision_recall
from .recall import drop_self, precision_at_k, rankings_excluding_self, recall_at_k
from .revisited import SETUPS, revisited_map, revisited_precision_at_k, setup_ground_truth
from .ukbench import ns_score

__all__ = [
    "RECALL_LEVELS",
    "RULES",
    "SETUPS",
    "ap_code_faithful",
    "ap_from_ranking",
    "average_forgetting",
    "average_incremental_accuracy",
    "average_precision",
    "drop_self",
    "forgetting_curve",
    "harmonic_mean",
    "interpolated_precision",
    "mean_average_precision",
    "mean_precision_recall",
    "ns_score",
    "old_new_summary",
    "precision_at_k",
    "rankings_excluding_self",
    "recall_at_k",
    "revisited_map",
    "revisited_precision_at_k",
    "setup_ground_truth",
    "map_from_scores",
]
