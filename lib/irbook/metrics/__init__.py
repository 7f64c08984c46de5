"""Retrieval metrics: AP/mAP, the revisited Oxford/Paris protocol, N-S score, Recall@K."""

from .ap import (
    RULES,
    ap_code_faithful,
    ap_from_ranking,
    average_precision,
    mean_average_precision,
)
from .recall import drop_self, precision_at_k, rankings_excluding_self, recall_at_k
from .revisited import SETUPS, revisited_map, revisited_precision_at_k, setup_ground_truth
from .ukbench import ns_score

__all__ = [
    "RULES",
    "SETUPS",
    "ap_code_faithful",
    "ap_from_ranking",
    "average_precision",
    "drop_self",
    "mean_average_precision",
    "ns_score",
    "precision_at_k",
    "rankings_excluding_self",
    "recall_at_k",
    "revisited_map",
    "revisited_precision_at_k",
    "setup_ground_truth",
]
