"""The common half of memory-mapped stores (RAM and file): the bytes *are* a mapping.

:meth:`MappedStore.view` hands out slices of the mapping itself, which is what data pointer
table entries point into; reads and writes are slices of the same view; UNMAP zeroes the
partial pages at the edges and gives whole pages back through :meth:`MappedStore._release`.
"""

from __future__ import annotations

import abc
import contextlib
import mmap

from mypy_extensions import mypyc_attr

from .base import BackingStore
from .ops import StoreOp, StoreOpKind

PAGE = mmap.PAGESIZE
SYNC_LIMIT = 1 << 20
"""Memory operations up to this size run on the loop (a memcpy of at most ~50 µs); larger
ones go to a worker so other commands are not held up."""
_MEMORY_KINDS = frozenset({StoreOpKind.READ, StoreOpKind.WRITE, StoreOpKind.WRITE_SAME})


@mypyc_attr(allow_interpreted_subclasses=True)  # stores and test doubles subclass it
class MappedStore(BackingStore):
    """A store backed by one memory mapping (``_map``, viewed as ``_view``)."""

    _map: mmap.mmap
    _view: memoryview

    @property
    def memory_addressable(self) -> bool:
        return True

    def synchronous(self, op: StoreOp) -> bool:
        """Small reads and writes of memory that is present run at once."""
        return (op.kind in _MEMORY_KINDS and op.length <= SYNC_LIMIT
                and self.resident(op.offset, op.length))

    def _check(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise ValueError(f"range {offset}+{length} outside store of {self.size} bytes")

    def view(self, offset: int, length: int) -> memoryview:
        """The mapping's own bytes; call :meth:`prepare_write` before writing into them."""
        self._check(offset, length)
        return self._view[offset : offset + length]

    def readinto(self, offset: int, buffer: memoryview) -> None:
        n = len(buffer)
        self._check(offset, n)
        buffer[:] = self._view[offset : offset + n]

    def write(self, offset: int, data: memoryview | bytes) -> None:
        n = len(data)
        self.prepare_write(offset, n)
        if n:
            self._view[offset : offset + n] = data

    def unmap(self, offset: int, length: int) -> None:
        """Zero the partial pages at the edges, release the whole pages in between."""
        self._check(offset, length)
        end = offset + length
        first = -(-offset // PAGE) * PAGE
        last = end // PAGE * PAGE
        if first >= last:
            self.write(offset, bytes(length))
            return
        if offset < first:
            self.write(offset, bytes(first - offset))
        if last < end:
            self.write(last, bytes(end - last))
        self._release(first, last)

    @abc.abstractmethod
    def _release(self, first: int, last: int) -> None:
        """Give the page-aligned range back; it must read as zeros afterwards."""

    def _unmap_mapping(self) -> None:
        """Release the view and the mapping (left to the GC while views are exported)."""
        self._view.release()
        with contextlib.suppress(BufferError):
            self._map.close()
