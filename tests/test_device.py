"""CPU thread limits."""

import pytest
import torch

from irbook.device import cpu_threads


def test_cpu_threads_sets_and_restores_the_thread_count_even_on_error():
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError):
        with cpu_threads(1):
            assert torch.get_num_threads() == 1
            raise RuntimeError("inside")
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_cpu_threads_rejects_a_bad_count(bad):
    with pytest.raises(ValueError, match="count must be an integer >= 1"):
        with cpu_threads(bad):
            pass
