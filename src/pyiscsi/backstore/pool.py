"""A registered buffer pool: the memory Data-Out lands in and Data-In leaves from for a
store that is not memory (Ceph RBD).

R2T bursts for such a LUN are placed into a slice of the pool (the data pointer table
entry points there) and the store submits its I/O from that same slice: no copy between
the wire and librbd. A slice goes back to the pool only when nothing references it any
more (the task, a table entry, an aio in flight, a Data-In send): its memoryview is made
from a ctypes array over the slab, and a :func:`weakref.finalize` on that array returns
the slot. So a buffer is never reused while librbd may still read or fill it.

Slabs are anonymous mmaps per power-of-two size class (4 KiB to ``largest``); at most
``limit`` bytes are mapped, past it requests get a private buffer (counted in
:attr:`PoolStats.overflow`).
"""

from __future__ import annotations

import ctypes
import mmap
import weakref
from dataclasses import dataclass

SMALLEST = 4096


@dataclass(slots=True)
class PoolStats:
    """What the pool handed out (read by tests and the status output)."""

    taken: int = 0
    """Slices handed out from the slabs."""
    overflow: int = 0
    """Requests past the pool's limit (or larger than its largest class): private buffers."""
    mapped: int = 0
    """Bytes of slabs mapped."""


class BufferPool:
    """Power-of-two size classes of page-aligned slots in anonymous mmaps."""

    def __init__(self, largest: int = 8 << 20, limit: int = 256 << 20) -> None:
        self.largest = largest
        self.limit = limit
        self._free: dict[int, list[tuple[mmap.mmap, int]]] = {}
        self._slabs: list[mmap.mmap] = []
        self.stats = PoolStats()

    @staticmethod
    def size_class(length: int) -> int:
        size = SMALLEST
        while size < length:
            size <<= 1
        return size

    def take(self, length: int) -> memoryview:
        """A writable ``length``-byte view of pool memory (returned when unreferenced)."""
        size = self.size_class(length)
        free = self._free.setdefault(size, [])
        if not free and not self._grow(size, free):
            self.stats.overflow += 1
            return memoryview(bytearray(length))
        slab, offset = free.pop()
        array = (ctypes.c_char * length).from_buffer(slab, offset)
        weakref.finalize(array, free.append, (slab, offset))
        self.stats.taken += 1
        return memoryview(array).cast("B")

    def _grow(self, size: int, free: list[tuple[mmap.mmap, int]]) -> bool:
        if size > self.largest:
            return False
        slab_bytes = max(size, 4 << 20)
        if self.stats.mapped + slab_bytes > self.limit:
            return False
        slab = mmap.mmap(-1, slab_bytes)
        self._slabs.append(slab)
        self.stats.mapped += slab_bytes
        free.extend((slab, offset) for offset in range(slab_bytes - size, -1, -size))
        return True

    @property
    def in_use(self) -> int:
        """Slots handed out and not yet returned."""
        total = sum(len(s) for s in self._slabs)
        free = sum(size * len(slots) for size, slots in self._free.items())
        return (total - free) if total else 0
