"""A RAM backing store on an anonymous private mapping.

:meth:`MemoryStore.view` hands out slices of the mapping itself, so Data-Out payloads land
in the store with no copy. :meth:`MemoryStore.unmap` gives whole pages back to the kernel
with ``madvise(MADV_DONTNEED)`` (they read back as zeros) and zeroes partial edges by hand.
Allocation is tracked with one byte per page, which is what GET LBA STATUS reports.
"""

from __future__ import annotations

import mmap

from mypy_extensions import mypyc_attr

from .base import StoreBusy
from .mapped import PAGE, SYNC_LIMIT, MappedStore
from .ops import StoreOp, StoreOpKind

_ONES = memoryview(b"\x01" * 65536)


@mypyc_attr(allow_interpreted_subclasses=True)  # stores and test doubles subclass it
class MemoryStore(MappedStore):
    """``size`` bytes of RAM, ``block_size`` bytes a block, optionally read-only."""

    grow_needs_quiet = True
    """:meth:`grow` lets go of the view a worker would read through."""

    writes_in_place = True
    """RAM dies with the process: nothing can see a write a crash cut short."""

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
        # Kept out of core dumps (LUN data); the distinct VmFlag also keeps the kernel from
        # merging this mapping with its anonymous neighbours, so /proc/PID/smaps shows the
        # store as one mapping of exactly ``size`` bytes (bench/memory.py leaves it out).
        self._map.madvise(mmap.MADV_DONTDUMP)
        self._view = memoryview(self._map)
        self._pages = bytearray((size + PAGE - 1) // PAGE)
        """1 where a page may hold data (written since last unmapped)."""

    def synchronous(self, op: StoreOp) -> bool:
        """RAM: everything small runs at once; a flush is nothing at all."""
        if op.kind is StoreOpKind.FLUSH or op.kind is StoreOpKind.ALLOCATE:
            return True
        return op.kind is not StoreOpKind.CALL and op.length <= SYNC_LIMIT

    def _mark(self, offset: int, length: int) -> None:
        first = offset // PAGE
        last = (offset + length + PAGE - 1) // PAGE
        pages = self._pages
        if last - first == 1:  # one page (a 4 KiB write): no slices
            pages[first] = 1
            return
        while first < last:
            n = min(last - first, len(_ONES))
            pages[first : first + n] = _ONES[:n]
            first += n

    def prepare_write(self, offset: int, length: int) -> None:
        """Record the range as allocated before it is written through :meth:`view`."""
        self._check(offset, length)
        if length:
            self._mark(offset, length)

    def flush(self, offset: int = 0, length: int | None = None) -> None:
        """RAM is as stable as it gets: nothing to do."""

    def _release(self, first: int, last: int) -> None:
        """Free whole pages (MADV_DONTNEED: they read back as zeros)."""
        self._map.madvise(mmap.MADV_DONTNEED, first, last - first)
        self._pages[first // PAGE : last // PAGE] = bytes((last - first) // PAGE)

    def is_mapped(self, offset: int, length: int) -> bool:
        """Whether any page of the range was written since it was last unmapped."""
        self._check(offset, length)
        if not length:
            return False
        return self._pages.find(1, offset // PAGE, (offset + length + PAGE - 1) // PAGE) >= 0

    def grow(self, size: int) -> None:
        """Grow the mapping in place (``mremap``: the kernel may move it, the bytes stay).
        Only when nothing holds a view of it: with I/O in flight (a memoryview of the
        mapping alive in a task) this is a :class:`StoreBusy`; retry when the I/O ended."""
        self._check_growth(size)
        self._view.release()
        try:
            self._map.resize(size)
        except BufferError:
            raise StoreBusy("I/O in flight holds the RAM store's memory") from None
        finally:
            self._view = memoryview(self._map)
        self._pages.extend(bytes((size + PAGE - 1) // PAGE - len(self._pages)))
        self.size = size

    def close(self) -> None:
        """Release the mapping (left to the GC while views of it are still exported)."""
        self._unmap_mapping()
