"""Store operations as data: what the SCSI layer asks of a backing store.

A command that needs its store answers with the operations to run (SYNCHRONIZE CACHE is a
FLUSH, UNMAP a DISCARD per range, a write to an unallocated file extent an ALLOCATE first).
The store says which of them it completes at once (:meth:`BackingStore.synchronous`, e.g.
RAM); the others run elsewhere (a worker thread, or librbd's own completions) and their
completion is fed back into the sans-IO engine, like time. The same list fits a Ceph RBD
image: read, write, flush, discard, write-same and compare-and-write each map to one
``rbd_aio_*`` call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

_setattr = object.__setattr__
"""How a frozen dataclass's own ``__init__`` sets its fields (as the generated one does)."""


class StoreOpKind(Enum):
    """The kinds of store operation (SBC-4 §4.x commands they serve in brackets)."""

    READ = "read"
    """Fill ``buffer`` from ``offset`` (READ from a store that is not memory)."""
    WRITE = "write"
    """Store ``buffer`` at ``offset`` (WRITE to a store that is not memory)."""
    FLUSH = "flush"
    """Make the range stable (SYNCHRONIZE CACHE, FUA)."""
    DISCARD = "discard"
    """Deallocate the range; it reads back as zeros (UNMAP, WRITE SAME with UNMAP)."""
    WRITE_SAME = "write-same"
    """Write the one block in ``buffer`` over the range (WRITE SAME)."""
    COMPARE_AND_WRITE = "compare-and-write"
    """``buffer`` holds the verify then the write data (COMPARE AND WRITE)."""
    ALLOCATE = "allocate"
    """Allocate the range so writing through memory cannot fail (file stores)."""
    FAULT_IN = "fault-in"
    """Bring the range's pages into memory before the loop touches them (file stores)."""
    CALL = "call"
    """Bulk work of the SCSI layer itself (EXTENDED COPY, SANITIZE): ``call()``."""


MODIFYING = frozenset({StoreOpKind.WRITE, StoreOpKind.DISCARD, StoreOpKind.WRITE_SAME,
                       StoreOpKind.COMPARE_AND_WRITE, StoreOpKind.CALL})
"""Kinds that change what the range reads back: later overlapping commands wait for them."""


@dataclass(frozen=True, slots=True)
class StoreOp:
    """One operation on a byte range of a store."""

    kind: StoreOpKind
    offset: int = 0
    length: int = 0
    buffer: memoryview | bytes | None = None
    call: Callable[[], None] | None = None
    """For :attr:`StoreOpKind.CALL`: the blocking work to run."""

    def __init__(self, kind: StoreOpKind, offset: int = 0, length: int = 0,
                 buffer: memoryview | bytes | None = None,
                 call: Callable[[], None] | None = None) -> None:
        """The fields above, in their order (``dataclass`` keeps an ``__init__`` the class
        defines; the generated one stays interpreted under mypyc, and every command that
        reaches a store builds one: ``tests/dataclass_init.py``)."""
        _setattr(self, "kind", kind)
        _setattr(self, "offset", offset)
        _setattr(self, "length", length)
        _setattr(self, "buffer", buffer)
        _setattr(self, "call", call)

    @property
    def modifying(self) -> bool:
        return self.kind in MODIFYING
