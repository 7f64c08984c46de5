"""Errors raised when a dataset is missing or damaged on disk.

Every loader in :mod:`irbook.data` checks its inputs through :func:`require` so that a missing
dataset stops a run at once with the path that was looked at and how to obtain the data.
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path


class DatasetNotFoundError(FileNotFoundError):
    """A dataset file or folder is missing. The message names the path, the dataset and how to
    get it."""

    def __init__(self, path: str | PathLike[str], dataset: str, how_to_get: str) -> None:
        self.path = Path(path)
        self.dataset = dataset
        self.how_to_get = how_to_get
        message = (
            f"{dataset}: nothing found at '{self.path}'. How to get it: {how_to_get}"
        )
        super().__init__(message)
        self.filename = str(self.path)

    def __str__(self) -> str:  # FileNotFoundError.__str__ would print an errno prefix
        return str(self.args[0])


class DatasetCorruptError(ValueError):
    """A dataset file exists but is damaged: unreadable, wrong structure, or it refers to an
    image that is not there. The message names the path."""

    def __init__(self, path: str | PathLike[str], problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"'{self.path}' is damaged: {problem}")


def require(path: str | PathLike[str], dataset: str, how_to_get: str) -> Path:
    """Return ``path`` as a :class:`~pathlib.Path` if it exists, else raise
    :class:`DatasetNotFoundError` naming the path, the dataset and ``how_to_get``."""
    path = Path(path)
    if not path.exists():
        raise DatasetNotFoundError(path, dataset, how_to_get)
    return path
