"""Independent jobs in worker processes: Python's ``concurrent.futures`` process pool.

Chapters whose runs share nothing but a cache (chapter 7's sequences after the first model)
train them in ``workers`` processes ahead of the notebook's cells; each worker writes its
results to the on-disk cache, and the cells then read them from there. A worker runs on one
CPU thread, so the numbers are those of a single-process run (the tests check it).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from typing import Any

from .progress import progress_bar

__all__ = ["JobFailedError", "map_in_processes"]


class JobFailedError(RuntimeError):
    """A job raised in its worker; the message names the job."""


def _check_workers(workers: Any) -> int:
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1; got {workers!r}")
    return workers


def map_in_processes(function: Callable[[Any], Any], jobs: Sequence[Any], workers: int, *,
                     names: Sequence[str] | None = None, desc: str = "jobs",
                     progress: bool = True) -> list[Any]:
    """``[function(job) for job in jobs]``, the jobs in ``workers`` spawned processes (1: in
    this process, in order, errors unchanged). Jobs start in their order (put the longest
    first); the first failure cancels the jobs not started and raises
    :class:`JobFailedError` naming the job (``names[i]``, else its index). ``function`` and
    the jobs must be picklable."""
    workers = _check_workers(workers)
    jobs = list(jobs)
    labels = list(names) if names is not None else [f"job {i}" for i in range(len(jobs))]
    if len(labels) != len(jobs):
        raise ValueError(f"names must have one entry per job; got {len(labels)} for "
                         f"{len(jobs)} jobs")
    if workers == 1 or len(jobs) <= 1:
        return [function(job) for job in jobs]
    context = multiprocessing.get_context("spawn")  # no forked torch/OpenMP state
    results: list[Any] = [None] * len(jobs)
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=context) as pool:
        futures = {pool.submit(function, job): i for i, job in enumerate(jobs)}
        bar = progress_bar(total=len(jobs), enabled=progress, desc=desc, unit="job")
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for future in done:
                index = futures[future]
                if future.exception() is not None:
                    for other in pending:
                        other.cancel()
                    bar.close()
                    raise JobFailedError(f"{labels[index]} failed in its worker: "
                                         f"{future.exception()}") from future.exception()
                results[index] = future.result()
                bar.update(1)
        bar.close()
    return results
