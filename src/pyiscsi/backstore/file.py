"""A sparse-file backing store, memory-mapped with MAP_SHARED for reads, written with pwrite.

Reads are sent from the mapping (no copy). Writes go through ``pwrite(2)`` from the buffer
the Data-Out landed in: the mapping is the file's page cache, which outlives a crash of the
target, and a receive or copy into it that a SIGKILL cuts short would leave a torn block,
whereas the kernel copies a pwrite page by page and a dying process stops it only between
pages (so each block of a write in flight at a crash is wholly old or wholly new).

Writing through the mapping into a hole of a sparse file on a full disk raises SIGBUS and
kills the process, so :meth:`FileStore.prepare_write` allocates the range with
``posix_fallocate`` first and turns a failure into DATA PROTECT / SPACE ALLOCATION FAILED
WRITE PROTECT (SBC-3 §4.7.3.6). UNMAP punches holes (``fallocate(PUNCH_HOLE|KEEP_SIZE)``),
GET LBA STATUS asks ``lseek(SEEK_DATA)``.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import stat
from pathlib import Path

from .base import StoreError
from .mapped import PAGE, SYNC_LIMIT, MappedStore
from .ops import StoreOp, StoreOpKind

_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02

_libc = ctypes.CDLL(None, use_errno=True)
_fallocate = _libc.fallocate
_fallocate.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
_fallocate.restype = ctypes.c_int
_msync = _libc.msync
_msync.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
_msync.restype = ctypes.c_int
_MS_SYNC = 4
_mincore = _libc.mincore
_mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p)
_mincore.restype = ctypes.c_int

EXTENT = 64 << 10
"""Granule of the allocation map (a byte each: 16 KiB of map per GiB of LUN)."""


def check_size(path: Path, actual: int, size: int | None) -> None:
    """An existing file or device keeps its size: a different ``size`` is a ValueError."""
    if size is not None and size != actual:
        raise ValueError(f"{path} has {actual} bytes, not the {size} bytes asked for")


def _space_error(exc: OSError) -> StoreError:
    """DATA PROTECT / SPACE ALLOCATION FAILED WRITE PROTECT (SBC-3 §4.7.3.6)."""
    return StoreError(f"cannot allocate space: {exc}", sense_key=0x07, asc=0x27, ascq=0x07)


class FileStore(MappedStore):
    """A regular file as a LUN. A missing file is created sparse with ``size`` bytes."""

    paged = True
    places_staging = True
    """Data-Out lands in a buffer of ours and ``pwrite`` goes from there (no copy of ours;
    the kernel's copy into the page cache is the one every buffered write pays)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        size: int | None = None,
        block_size: int = 512,
        read_only: bool = False,
    ) -> None:
        self.path = Path(path)
        self.name = str(self.path)
        self.block_size = block_size
        self.read_only = read_only
        if size is not None and (size <= 0 or size % block_size):
            raise ValueError(f"size {size} must be a positive multiple of block size {block_size}")
        exists = self.path.exists()
        if not exists:
            self._refuse_missing(size, read_only)
        flags = os.O_RDONLY if read_only else os.O_RDWR
        if not exists:
            flags |= os.O_CREAT | os.O_EXCL
        fd = self._open(flags | getattr(os, "O_CLOEXEC", 0))
        try:
            actual = self._measure(fd, size, created=not exists)
            if actual <= 0 or actual % block_size:
                raise ValueError(
                    f"{self.path} has {actual} bytes: not a positive multiple of "
                    f"block size {block_size}"
                )
            # A read-only LUN maps the file copy-on-write: nothing can reach the file (the
            # SCSI layer refuses writes before a byte lands), and the mapping still has a
            # writable address for mincore(2).
            flags = mmap.MAP_PRIVATE if read_only else mmap.MAP_SHARED
            self._map = mmap.mmap(fd, actual, flags=flags,
                                  prot=mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self.size = actual
        view = memoryview(self._map)
        self._view = view.toreadonly() if read_only else view
        self._base = ctypes.c_char.from_buffer(self._map)
        """Keeps the mapping's address for mincore(2) (released before the map closes)."""
        self._address = ctypes.addressof(self._base)
        self._residency = bytearray(SYNC_LIMIT // PAGE + 2)
        self._residency_arg = (ctypes.c_char * len(self._residency)).from_buffer(
            self._residency)
        """mincore(2)'s vector argument over ``_residency``, made once (a ctypes array per
        call cost more than the system call)."""
        self._extents = self._allocation_map(fd)

    def _refuse_missing(self, size: int | None, read_only: bool) -> None:
        """Raise ValueError when a missing ``path`` must not be created."""
        if size is None:
            raise ValueError(f"{self.path} does not exist; give a size to create it")
        if read_only:
            raise ValueError(f"{self.path} does not exist; a read-only LUN cannot create it")

    def _open(self, flags: int) -> int:
        """The descriptor for ``path`` (open(2) with ``flags``)."""
        return os.open(self.path, flags, 0o644)

    def _measure(self, fd: int, size: int | None, created: bool) -> int:
        """The store's size in bytes: ``size`` for a new file, else the file's (which
        must then equal ``size`` when one is given)."""
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{self.path} is neither a regular file nor a block device")
        if created:
            assert size is not None
            os.ftruncate(fd, size)
            return size
        check_size(self.path, st.st_size, size)
        return st.st_size

    def _allocation_map(self, fd: int) -> bytearray:
        """One byte per :data:`EXTENT`, 1 where the extent is wholly allocated, seeded from
        the file's data segments (``lseek(SEEK_DATA/SEEK_HOLE)``)."""
        extents = bytearray(-(-self.size // EXTENT))
        position = 0
        while position < self.size:
            try:
                data = os.lseek(fd, position, os.SEEK_DATA)
                hole = os.lseek(fd, data, os.SEEK_HOLE)
            except OSError:
                break  # ENXIO: no data past here (or no SEEK_DATA: treat all as holes)
            _mark_whole(extents, data, hole, self.size)
            position = hole
        return extents

    def needs_allocation(self, offset: int, length: int) -> bool:
        """Whether some of the range may be a hole: the map answers for extents known to
        be allocated, one ``lseek(SEEK_HOLE)`` for the rest (which refreshes the map)."""
        if not length:
            return False
        end = offset + length
        if self._extents.find(0, offset // EXTENT, -(-end // EXTENT)) < 0:
            return False
        try:
            hole = os.lseek(self._fd, offset, os.SEEK_HOLE)
        except OSError:
            return True
        if hole < end:
            return True
        _mark_whole(self._extents, offset, hole, self.size)
        return False

    def prepare_write(self, offset: int, length: int) -> None:
        """Allocate ``[offset, offset+length)`` so writing the mapping cannot SIGBUS; only
        the extents not yet allocated (the map says which) cost a fallocate."""
        self._check(offset, length)
        if self.read_only:
            raise StoreError("store is read-only", sense_key=0x07, asc=0x27, ascq=0x00)
        if self.needs_allocation(offset, length):
            self._allocate(offset, length)
            _mark_whole(self._extents, offset, offset + length, self.size)

    def synchronous(self, op: StoreOp) -> bool:
        """Small reads and writes of resident pages run at once, except a write into a
        hole (it is allocated on a worker first)."""
        return super().synchronous(op) and not (
            op.kind is StoreOpKind.WRITE and self.needs_allocation(op.offset, op.length))

    def write(self, offset: int, data: memoryview | bytes) -> None:
        """``pwrite(2)`` the data (allocated first: a full disk is DATA PROTECT, SBC-3
        §4.7.3.6); an I/O error is MEDIUM ERROR / WRITE ERROR."""
        n = len(data)
        self.prepare_write(offset, n)
        view = memoryview(data)
        done = 0
        try:
            while done < n:
                done += os.pwrite(self._fd, view[done:], offset + done)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise _space_error(exc) from exc
            raise StoreError(f"write failed: {exc}") from exc

    def resident(self, offset: int, length: int) -> bool:
        """Whether every page of the range is in memory (mincore(2)): touching it from the
        loop then costs no disk read."""
        start = offset // PAGE * PAGE
        pages = -(-(offset + length - start) // PAGE)
        if not length or pages > len(self._residency):
            return not length
        if _mincore(self._address + start, pages * PAGE, self._residency_arg) != 0:
            return False
        return self._residency.find(0, 0, pages) < 0

    def fault_in(self, offset: int, length: int) -> None:
        """Read every page of the range once (off the loop), so the loop finds it present."""
        self._check(offset, length)
        self._map.madvise(mmap.MADV_WILLNEED, offset // PAGE * PAGE,
                          offset + length - offset // PAGE * PAGE)
        view = self._view
        for page in range(offset // PAGE * PAGE, offset + length, PAGE):
            view[page]

    def _allocate(self, offset: int, length: int) -> None:
        """Allocate the blocks of a non-empty range (``posix_fallocate``)."""
        try:
            os.posix_fallocate(self._fd, offset, length)
        except OSError as exc:
            raise _space_error(exc) from exc

    def flush(self, offset: int = 0, length: int | None = None) -> None:
        """msync the page-aligned range, then fdatasync (SBC-3 §5.24 SYNCHRONIZE CACHE)."""
        if length is None:
            length = self.size - offset
        self._check(offset, length)
        if self.read_only:
            return
        start = offset // PAGE * PAGE
        try:
            # msync(2) through ctypes, which lets go of the GIL (mmap.flush holds it for the
            # whole write-back: a flush on a worker thread would stall the event loop)
            if length and _msync(self._address + start, offset + length - start, _MS_SYNC):
                raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
            os.fdatasync(self._fd)
        except OSError as exc:
            raise StoreError(f"flush failed: {exc}") from exc

    def unmap(self, offset: int, length: int) -> None:
        """Punch out whole pages, zero the partial pages at the edges by hand."""
        if self.read_only:
            raise StoreError("store is read-only", sense_key=0x07, asc=0x27, ascq=0x00)
        super().unmap(offset, length)

    def _release(self, first: int, last: int) -> None:
        self._extents[first // EXTENT:-(-last // EXTENT)] = bytes(
            -(-last // EXTENT) - first // EXTENT)
        mode = _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE
        if _fallocate(self._fd, mode, first, last - first) != 0:
            err = ctypes.get_errno()
            if err not in (errno.EOPNOTSUPP, errno.ENOSYS):
                raise StoreError(f"punching a hole failed: {os.strerror(err)}")
            self.write(first, bytes(last - first))  # no hole punching here: write zeros

    def is_mapped(self, offset: int, length: int) -> bool:
        """Whether the range holds any data extent (``lseek(SEEK_DATA)``)."""
        self._check(offset, length)
        if not length:
            return False
        try:
            return os.lseek(self._fd, offset, os.SEEK_DATA) < offset + length
        except OSError as exc:
            return exc.errno != errno.ENXIO

    def grow(self, size: int) -> None:
        """``ftruncate`` the file to ``size`` bytes and map it anew. The old mapping is not
        unmapped: memoryviews of it held by tasks in flight (data pointer table entries,
        store work on a worker) keep it alive and still reach the same file pages
        (MAP_SHARED), and it goes with the last of them."""
        self._check_growth(size)
        if self.read_only:
            raise ValueError(f"{self.path} is a read-only LUN")
        if self._fd < 0:
            raise ValueError(f"{self.path} is closed")
        os.ftruncate(self._fd, size)
        new = mmap.mmap(self._fd, size, flags=mmap.MAP_SHARED,
                        prot=mmap.PROT_READ | mmap.PROT_WRITE)
        extents = bytearray(-(-size // EXTENT))
        whole = self.size // EXTENT  # a partial last extent now has a hole past it
        extents[:whole] = self._extents[:whole]
        self._map, self._view = new, memoryview(new)
        self._base = ctypes.c_char.from_buffer(new)
        self._address = ctypes.addressof(self._base)
        self._extents = extents
        self.size = size

    def close(self) -> None:
        """Flush, then release the mapping and the file descriptor."""
        if self._fd < 0:
            return
        try:
            self.flush()
        finally:
            del self._base
            self._unmap_mapping()
            os.close(self._fd)
            self._fd = -1


def _mark_whole(extents: bytearray, start: int, end: int, size: int) -> None:
    """Mark the extents lying wholly inside the allocated range ``[start, end)``."""
    first = -(-start // EXTENT)
    last = len(extents) if end >= size else end // EXTENT
    if last > first:
        extents[first:last] = b"\x01" * (last - first)
