"""irbook: the shared library of the executable thesis book."""

__version__ = "0.1.0"
