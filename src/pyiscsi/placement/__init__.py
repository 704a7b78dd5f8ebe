"""Tag-steered direct data placement (US 7,512,663 / US 8,099,470; Fig 9B-9D)."""

from .counters import CopyCounters
from .table import (
    ConnectionRegistry,
    DataPointerTable,
    PlacementError,
    TableEntry,
)
from .tag import Tag

__all__ = [
    "ConnectionRegistry",
    "CopyCounters",
    "DataPointerTable",
    "PlacementError",
    "TableEntry",
    "Tag",
]
