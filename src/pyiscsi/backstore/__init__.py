"""Backing stores behind one small interface (see :mod:`pyiscsi.backstore.base`)."""

from .base import BackingStore, StoreError

__all__ = ["BackingStore", "StoreError"]
