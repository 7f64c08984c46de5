"""The one way the book feeds images to a network: a DataLoader over given index batches.

``num_workers`` processes decode and crop the images (0: in the training process), the batches
land in pinned memory when the network is on a GPU (so the copy to it can overlap), and the
workers live as long as the loader (no restart every epoch).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch.utils.data import DataLoader, Dataset

__all__ = ["batch_loader"]


def batch_loader(dataset: Dataset, batches: Iterable[list[int]], num_workers: int = 0,
                 device: str | torch.device = "cpu") -> DataLoader:
    """A DataLoader yielding ``dataset``'s items for every index batch of ``batches`` (a batch
    sampler: P x K, this process's share under torchrun, ...)."""
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"num_workers must be an integer >= 0; got {num_workers!r}")
    return DataLoader(dataset, batch_sampler=batches, num_workers=num_workers,
                      pin_memory=torch.device(device).type == "cuda",
                      persistent_workers=num_workers > 0)
