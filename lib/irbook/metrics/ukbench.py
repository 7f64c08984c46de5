"""UKBench N-S score (Nistér and Stewénius 2006)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .ap import check_rankings, check_same_length

TOP = 4


def ns_score(
    rankings: np.ndarray,
    groups: Sequence[int] | np.ndarray,
    query_indices: Sequence[int] | np.ndarray,
) -> float:
    """Mean number of images of the query's group among the top 4 results (0 to 4).

    ``rankings`` (Q, >=4) holds database indices best first, ``groups[i]`` is the group of
    database image ``i`` (``i // 4`` on UKBench) and ``query_indices[q]`` the database index of
    query ``q``. The query itself counts when it is ranked (the usual protocol).
    """
    rankings_arr = check_rankings(rankings)
    groups_arr = np.asarray(groups)
    queries = np.asarray(query_indices, dtype=np.int64).reshape(-1)
    if rankings_arr.shape[1] < TOP:
        raise ValueError(f"rankings must have at least {TOP} columns, got {rankings_arr.shape[1]}")
    check_same_length(queries, rankings_arr, "query_indices")
    same_group = groups_arr[rankings_arr[:, :TOP]] == groups_arr[queries][:, None]
    return float(same_group.sum(axis=1).mean())
