"""A registered buffer pool: the memory Data-Out lands in and Data-In leaves from for a
store that is not memory (Ceph RBD).

R2T bursts for such a LUN are placed into a slice of the pool (the data pointer table
entry points there) and the store submits its I/O from that same slice: no copy between
the wire and librbd. A slice goes back to the pool only when nothing references it any
more (the task, a table entry, an aio in flight, a Data-In send): its memoryview is made
from a ctypes array over the slab, and a weak reference to that array returns the slot
when the array dies. So a buffer is never reused while librbd may still read or fill it.

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

Slot = tuple[mmap.mmap, int]
"""A slab and the offset of a slot in it."""


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
        self._free: dict[int, list[Slot]] = {}
        self._slabs: list[mmap.mmap] = []
        self._out: dict[int, tuple[weakref.ref[ctypes.Array[ctypes.c_char]], list[Slot], Slot]]
        self._out = {}
        """Slots handed out, by ``id`` of the weak reference that returns each."""
        self.stats = PoolStats()

    @staticmethod
    def size_class(length: int) -> int:
        return max(SMALLEST, 1 << (length - 1).bit_length())

    def take(self, length: int) -> memoryview:
        """A writable ``length``-byte view of pool memory (returned when unreferenced)."""
        size = self.size_class(length)
        free = self._free.get(size)
        if free is None:
            free = self._free[size] = []
        if not free and not self._grow(size, free):
            self.stats.overflow += 1
            return memoryview(bytearray(length))
        slot = free.pop()
        array = (ctypes.c_char * length).from_buffer(slot[0], slot[1])
        ref = weakref.ref(array, self._returned)
        self._out[id(ref)] = (ref, free, slot)
        self.stats.taken += 1
        return memoryview(array).cast("B")

    def _returned(self, ref: weakref.ref[ctypes.Array[ctypes.c_char]]) -> None:
        """The array over a slot died (nothing references its memory): the slot is free."""
        _, free, slot = self._out.pop(id(ref))
        free.append(slot)

    def _grow(self, size: int, free: list[Slot]) -> bool:
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
