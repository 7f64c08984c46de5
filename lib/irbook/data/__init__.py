"""Dataset loaders (official on-disk layouts), torch Datasets and synthetic data writers.

Import torch-dependent parts from :mod:`irbook.data.images`; this package imports no torch.
"""

from irbook.data.errors import DatasetCorruptError, DatasetNotFoundError, require

__all__ = ["DatasetCorruptError", "DatasetNotFoundError", "require"]
