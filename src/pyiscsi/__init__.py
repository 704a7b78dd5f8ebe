"""pyiscsi: an iSCSI target and initiator with tag-steered direct data placement."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .initiator.client import connect, discover

__all__ = ["__version__", "connect", "discover"]

_LAZY = {"connect": "pyiscsi.initiator.client", "discover": "pyiscsi.initiator.client"}


def __getattr__(name: str) -> Any:
    """``pyiscsi.connect`` / ``pyiscsi.discover``, imported on first use (keeps import cheap)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pyiscsi' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
