"""irbook.parallel: jobs in spawned worker processes, results in job order, failures named."""

import math

import pytest

from irbook.parallel import JobFailedError, map_in_processes


def test_results_come_back_in_job_order_from_two_processes():
    jobs = [10, 3, 7, 1]
    assert map_in_processes(math.factorial, jobs, 2, progress=False) == [3628800, 6, 5040, 1]


def test_one_worker_runs_in_this_process_with_errors_unchanged():
    calls = []
    assert map_in_processes(lambda x: calls.append(x) or 2 * x, [1, 2], 1) == [2, 4]
    assert calls == [1, 2]  # a lambda cannot be pickled: it ran here, in order
    with pytest.raises(ValueError, match="math domain error"):
        map_in_processes(math.sqrt, [4.0, -1.0], 1)


def test_a_failing_job_is_named():
    with pytest.raises(JobFailedError, match="the negative one failed in its worker: math "
                                             "domain error"):
        map_in_processes(math.sqrt, [4.0, -1.0, 9.0], 2, names=["four", "the negative one",
                                                                "nine"], progress=False)


@pytest.mark.parametrize("workers", [0, -1, 1.5, True, "2"])
def test_bad_worker_counts_are_refused(workers):
    with pytest.raises(ValueError, match="workers must be an integer >= 1"):
        map_in_processes(math.sqrt, [1.0], workers)


def test_names_must_match_the_jobs():
    with pytest.raises(ValueError, match="one entry per job"):
        map_in_processes(math.sqrt, [1.0, 2.0], 2, names=["one"])
