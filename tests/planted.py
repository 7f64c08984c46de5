"""A real IncrementalResult without a model, with planted evaluations, shared by the tests of
the chapter layer (test_experiments, test_chapter5, test_chapter6)."""

import numpy as np
import pandas as pd

from irbook.incremental.runner import IncrementalResult

NAN = float("nan")
OFFSETS = np.array([-1.5, -0.5, 0.5, 1.5])
"""Every planted evaluation holds four queries per task: its mean plus these offsets."""


def planted(tasks, acc, before=None, new=None, split_id="toy") -> IncrementalResult:
    """A real result without a model: ``acc`` metric → (T, T) matrix (lower triangle),
    ``before`` metric → (T,) accuracy before each task, ``new`` metric → final mean on tasks
    1.. (default: the mean of the last row); per-query values are the means + OFFSETS."""
    tasks = [np.asarray(t) for t in tasks]
    size, last = len(tasks), len(tasks) - 1
    acc = {m: np.asarray(v, dtype=float) for m, v in acc.items()}
    before = before or {m: np.full(size, 10.0) for m in acc}
    new = new or {m: float(np.mean(v[last, 1:])) for m, v in acc.items()}

    def spread(value, n_tasks=1):
        return value + np.tile(OFFSETS, n_tasks)

    per_query, rows, before_rows = {}, [], []
    for m, matrix in acc.items():
        for i in range(size):
            for j in range(i + 1):
                rows.append(dict(after_task=i, task=j, metric=m, value=matrix[i, j]))
                per_query.setdefault(("after", i, j), {})[m] = spread(matrix[i, j])
        for j in range(1, size):
            before_rows.append(dict(task=j, metric=m, value=float(before[m][j])))
            per_query.setdefault(("before", j - 1, j), {})[m] = spread(before[m][j])
        per_query.setdefault(("old", last, 0), {})[m] = spread(matrix[last, 0])
        per_query.setdefault(("new", last, -1), {})[m] = spread(new[m], last)
    old_new = pd.DataFrame([dict(subset=s, metric=m, value=v) for m in acc
                            for s, v in (("old", acc[m][last, 0]), ("new", new[m]))])
    return IncrementalResult(
        method="planted", hparams={}, tasks=tasks, accuracy=pd.DataFrame(rows),
        before=pd.DataFrame(before_rows), old_new=old_new, train_seconds=[0.0] * size,
        histories=[[] for _ in tasks], first_stage_cached=False, model=None, model_state={},
        per_query=per_query, split_id=split_id)
