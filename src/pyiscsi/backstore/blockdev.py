"""A block device as a LUN: the file store's MAP_SHARED mapping, the device's own size.

The size comes from ``ioctl(BLKGETSIZE64)`` (``stat`` says 0 for a device), and the LUN's
block size must be a multiple of the device's logical block size (``BLKSSZGET``). A device is
always allocated, so nothing is fallocated before a write; flushing is the file store's msync
and ``fdatasync`` (which on a block device also flushes the device's volatile cache).

UNMAP is ``BLKDISCARD``. The LU advertises LBPRZ (SBC-3 §6.5.4: unmapped blocks read as
zeros) but a discard need not make a device read zeros, so the discarded range is read back
and written with ``BLKZEROOUT`` when it does not (or when the device cannot discard). The
device is opened ``O_EXCL``: a mounted or otherwise claimed device is refused.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import struct

from .base import BackingStore, StoreError
from .file import FileStore, check_size

BLKROGET = 0x125E
"""Linux ``_IO(0x12, 94)``: 1 when the device is read-only, an int."""
BLKSSZGET = 0x1268
"""Linux ``_IO(0x12, 104)``: the logical block size, an int."""
BLKDISCARD = 0x1277
"""Linux ``_IO(0x12, 119)``: discard the range ``u64 offset, u64 length``."""
BLKGETSIZE64 = 0x80081272
"""Linux ``_IOR(0x12, 114, size_t)``: the device size in bytes, a u64."""
BLKZEROOUT = 0x127F
"""Linux ``_IO(0x12, 127)``: write zeros over ``u64 offset, u64 length`` (offloaded where the
device can, else the kernel writes zero pages)."""

_RANGE = struct.Struct("=QQ")
_UNSUPPORTED = (errno.EOPNOTSUPP, errno.ENOTTY)
_CHUNK = 1 << 20
_ZEROS = bytes(_CHUNK)


def _ioctl_int(fd: int, request: int, fmt: str) -> int:
    """An ioctl that fills in one integer of struct format ``fmt``."""
    value: int = struct.unpack(fmt, fcntl.ioctl(fd, request, bytes(struct.calcsize(fmt))))[0]
    return value


class BlockStore(FileStore):
    """A Linux block device as a LUN; it must exist, and ``size`` (if given) must match."""

    _discard = True
    """False once the device said it cannot discard: go straight to BLKZEROOUT."""

    def grow(self, size: int) -> None:
        raise ValueError(f"{self.path} is a block device: its size is its own")

    def _refuse_missing(self, size: int | None, read_only: bool) -> None:
        raise ValueError(f"{self.path} does not exist (a block device cannot be created)")

    def _open(self, flags: int) -> int:
        """open(2) with ``O_EXCL``: on a block device, EBUSY when it is mounted or claimed."""
        try:
            return os.open(self.path, flags | os.O_EXCL)
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                raise
            raise ValueError(f"{self.path} is in use (mounted, or opened exclusively)") from None

    def _measure(self, fd: int, size: int | None, created: bool) -> int:
        """BLKGETSIZE64 bytes, if the LUN block size is a multiple of BLKSSZGET and a
        writable LUN is not on a read-only (BLKROGET) device."""
        if not stat.S_ISBLK(os.fstat(fd).st_mode):
            raise ValueError(f"{self.path} is not a block device")
        if not self.read_only and _ioctl_int(fd, BLKROGET, "=i"):
            raise ValueError(f"{self.path} is a read-only device: add ,ro to the LUN spec")
        actual = _ioctl_int(fd, BLKGETSIZE64, "=Q")
        logical = _ioctl_int(fd, BLKSSZGET, "=i")
        if self.block_size % logical:
            raise ValueError(
                f"{self.path} has {logical}-byte logical blocks: the LUN block size "
                f"{self.block_size} must be a multiple of it (bs={logical})"
            )
        check_size(self.path, actual, size)
        return actual

    def _allocate(self, offset: int, length: int) -> None:
        """A block device is always allocated: nothing to do."""

    def needs_allocation(self, offset: int, length: int) -> bool:
        """A device has no holes to fill: writes never wait for an allocation."""
        return False

    def _release(self, first: int, last: int) -> None:
        """BLKDISCARD the range; BLKZEROOUT it if the device cannot, or still reads data."""
        span = _RANGE.pack(first, last - first)
        if self._discard:
            try:
                fcntl.ioctl(self._fd, BLKDISCARD, span)
            except OSError as exc:
                if exc.errno not in _UNSUPPORTED:
                    raise StoreError(f"discard failed: {exc.strerror}") from exc
                self._discard = False
            else:
                if self._reads_zeros(first, last):
                    return
        try:
            fcntl.ioctl(self._fd, BLKZEROOUT, span)
        except OSError as exc:
            if exc.errno not in _UNSUPPORTED:
                raise StoreError(f"zeroing failed: {exc.strerror}") from exc
            BackingStore.unmap(self, first, last - first)  # write zeros

    def _reads_zeros(self, first: int, last: int) -> bool:
        """Whether the range reads back as zeros (discard dropped it from the page cache)."""
        view = self._view
        for at in range(first, last, _CHUNK):
            n = min(_CHUNK, last - at)
            if bytes(view[at : at + n]) != _ZEROS[:n]:
                return False
        return True

    def is_mapped(self, offset: int, length: int) -> bool:
        """A device tells nothing of its allocation: every non-empty range is mapped."""
        self._check(offset, length)
        return length > 0
