"""The class-incremental retrieval protocol of chapters 5 and 6: methods, runner, evaluation."""

from irbook.incremental.evaluation import (
    embed,
    evaluate_classes,
    metric_names,
    retrieval_metrics,
)
from irbook.incremental.methods import METHODS, Method, TaskContext, make_method
from irbook.incremental.runner import (
    IncrementalConfig,
    IncrementalResult,
    build_model,
    run_incremental,
)

__all__ = [
    "METHODS",
    "IncrementalConfig",
    "IncrementalResult",
    "Method",
    "TaskContext",
    "build_model",
    "embed",
    "evaluate_classes",
    "make_method",
    "metric_names",
    "retrieval_metrics",
    "run_incremental",
]
