"""The class-incremental retrieval protocol of chapters 5 and 6: methods, runner, evaluation."""

from irbook.incremental.evaluation import (
    default_dataset_factory,
    embed,
    embed_with_logits,
    evaluate_classes,
    metric_names,
    per_query_metrics,
    per_query_precision_recall,
    precision_recall,
    retrieval_metrics,
)
from irbook.incremental.methods import (
    METHODS,
    FirstStage,
    Method,
    TaskContext,
    make_method,
    stage_accuracy_change,
)
from irbook.incremental.runner import (
    IncrementalConfig,
    IncrementalResult,
    build_model,
    frozen_copy,
    make_optimizer,
    run_incremental,
)

__all__ = [
    "METHODS",
    "FirstStage",
    "IncrementalConfig",
    "IncrementalResult",
    "Method",
    "TaskContext",
    "build_model",
    "default_dataset_factory",
    "embed",
    "embed_with_logits",
    "evaluate_classes",
    "frozen_copy",
    "make_method",
    "make_optimizer",
    "metric_names",
    "per_query_metrics",
    "per_query_precision_recall",
    "precision_recall",
    "retrieval_metrics",
    "run_incremental",
    "stage_accuracy_change",
]
