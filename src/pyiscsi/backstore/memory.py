"""A RAM backing store on an anonymous private mapping.

:meth:`MemoryStore.view` hands out slices of the mapping itself, so Data-Out payloads land
in the store with no copy. :meth:`MemoryStore.unmap` gives whole pages back to the kernel
with ``madvise(MADV_DONTNEED)`` (they read back as zeros) and zeroes partial edges by hand.
Allocation is tracked with one byte per page, which is what GET LBA STATUS reports.
"""

from __future__ import annotations

import contextlib
import mmap

from .base import BackingStore

PAGE = mmap.PAGESIZE
_ONES = memoryview(b"\x01" * 65536)


class MemoryStore(BackingStore):
    """``size`` bytes of RAM, ``block_size`` bytes a block, optionally read-only."""

    def __init__(self, size: int, block_size: int = 512, read_only: bool = False) -> None:
        if block_size <= 0 or size <= 0 or size % block_size:
            raise ValueError(
                f"RAM store size {size} must be a positive multiple of block size {block_size}"
            )
        self.size = size
        self.block_size = block_size
        self.read_only = read_only
        self.name = "ram"
        flags = mmap.MAP_PRIVATE | getattr(mmap, "MAP_NORESERVE", 0)
        self._map = mmap.mmap(-1, size, flags=flags)
        self._view = memoryview(self._map)
        self._pages = bytearray((size + PAGE - 1) // PAGE)
        """1 where a page may hold data (written since last unmapped)."""

    @property
    def memory_addressable(self) -> bool:
        return True

    def _check(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise ValueError(f"range {offset}+{length} outside store of {self.size} bytes")

    def _mark(self, offset: int, length: int) -> None:
        first = offset // PAGE
        last = (offset + length + PAGE - 1) // PAGE
        pages = self._pages
        while first < last:
            n = min(last - first, len(_ONES))
            pages[first : first + n] = _ONES[:n]
            first += n

    def view(self, offset: int, length: int) -> memoryview:
        """The mapping's own bytes ``[offset, offset+length)``."""
        self._check(offset, length)
        return self._view[offset : offset + length]

    def prepare_write(self, offset: int, length: int) -> None:
        """Record the range as allocated before it is written through :meth:`view`."""
        self._check(offset, length)
        if length:
            self._mark(offset, length)

    def readinto(self, offset: int, buffer: memoryview) -> None:
        n = len(buffer)
        self._check(offset, n)
        buffer[:] = self._view[offset : offset + n]

    def write(self, offset: int, data: memoryview | bytes) -> None:
        n = len(data)
        self._check(offset, n)
        if n:
            self._mark(offset, n)
            self._view[offset : offset + n] = data

    def flush(self, offset: int = 0, length: int | None = None) -> None:
        """RAM is as stable as it gets: nothing to do."""

    def unmap(self, offset: int, length: int) -> None:
        """Free whole pages (MADV_DONTNEED) and zero the partial pages at the edges."""
        self._check(offset, length)
        end = offset + length
        first = -(-offset // PAGE) * PAGE
        last = end // PAGE * PAGE
        if first >= last:
            self._view[offset:end] = bytes(length)
            return
        if offset < first:
            self._view[offset:first] = bytes(first - offset)
        if last < end:
            self._view[last:end] = bytes(end - last)
        self._map.madvise(mmap.MADV_DONTNEED, first, last - first)
        self._pages[first // PAGE : last // PAGE] = bytes((last - first) // PAGE)

    def is_mapped(self, offset: int, length: int) -> bool:
        """Whether any page of the range was written since it was last unmapped."""
        self._check(offset, length)
        if not length:
            return False
        return self._pages.find(1, offset // PAGE, (offset + length + PAGE - 1) // PAGE) >= 0

    def close(self) -> None:
        """Release the mapping (left to the GC while views of it are still exported)."""
        self._view.release()
        with contextlib.suppress(BufferError):
            self._map.close()
