"""Datasets: the Example type and readers."""

from .example import Example
from .readers import DataError, bundled_sst2, read_table

__all__ = ["DataError", "Example", "bundled_sst2", "read_table"]
