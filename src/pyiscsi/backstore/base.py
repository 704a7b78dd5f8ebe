"""The backing-store interface: byte-addressed, block-sized, optionally memory-addressable.

A memory-addressable store (RAM, mmap'd file) hands out ``view(offset, length)``: a
memoryview of its own memory, which is what data pointer table entries point into, so
Data-Out payloads land in the store with no copy. Other stores implement ``readinto`` and
``write`` only and are staged through a buffer by the caller.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import ClassVar

from mypy_extensions import mypyc_attr

from .ops import StoreOp, StoreOpKind


class StoreError(Exception):
    """A backing-store operation failed; carries the SCSI sense to report.

    ``sense_key``/``asc``/``ascq`` follow SPC-4 (e.g. MEDIUM ERROR 0x03/0x0C/0x00 for a write
    error, 0x03/0x11/0x00 for an unrecovered read error, DATA PROTECT 0x07/0x27/0x07 for
    space allocation failed write protect). ``information`` fills the INFORMATION field
    (MISCOMPARE: the offset of the first differing byte, SBC-4 §5.3).
    """

    def __init__(self, message: str, sense_key: int = 0x03, asc: int = 0x0C, ascq: int = 0x00,
                 information: int | None = None):
        super().__init__(message)
        self.sense_key = sense_key
        self.asc = asc
        self.ascq = ascq
        self.information = information


class StoreBusy(ValueError):
    """The store cannot do this now (I/O in flight uses it): retry later."""


@mypyc_attr(allow_interpreted_subclasses=True)  # stores and test doubles subclass it
class BackingStore(abc.ABC):
    """A LUN's bytes. Offsets and lengths are in bytes; callers keep them block aligned."""

    size: int
    """Capacity in bytes (a multiple of ``block_size``)."""
    block_size: int
    read_only: bool
    name: str
    """Human-readable identity (path or ``ram``), used in logs and the serial number."""
    stable_name: str | None = None
    """A name the same storage has wherever it is opened (an image in a cluster, e.g.
    ``rbd:POOL/IMAGE``), or None (local storage). When set, the LU identity derives from it
    alone (every gateway exporting it agrees) and the LU is shared by default."""

    # What a kind of store is, set by subclasses in their class body: ClassVar, so that the
    # compiled (mypyc) readers see an interpreted subclass's value (a plain attribute would be
    # an instance slot that keeps this default). Set per instance: the attributes below these.
    grow_needs_quiet: ClassVar[bool] = False
    """Whether :meth:`grow` must not run while store work on a worker uses the store."""

    paged: ClassVar[bool] = False
    """Whether the store's memory may need work before the loop touches it (a file mapping:
    holes to allocate, pages to fault in): when False, :meth:`needs_allocation` and
    :meth:`resident` need not be asked (RAM)."""

    atomic_compare_and_write = False
    """Whether the store performs :attr:`StoreOpKind.COMPARE_AND_WRITE` itself, atomically
    against every other writer of the medium (a Ceph image shared by gateways). Set per
    instance (``self.atomic_compare_and_write = ...``), never in a subclass's class body."""

    places_staging: ClassVar[bool] = False
    """Whether a buffer from :meth:`staging` is where the store's I/O is submitted from
    and received into, with no copy (so Data-Out placed there counts as placed)."""

    writes_in_place: ClassVar[bool] = False
    """Whether Data-Out may land in :meth:`view` itself (a write is then no copy at all).
    Only memory that dies with the process may: a file's mapping is its page cache, which
    outlives a crash of the target, and a copy or receive into it that the crash cuts short
    leaves a torn block; a file store writes with ``pwrite(2)`` instead, whose copy into the
    page cache a dying process cannot cut inside a page (every block whole, old or new)."""

    @property
    def completion_fd(self) -> int | None:
        """A file descriptor that is readable when operations started with :meth:`submit`
        completed (then the loop calls :meth:`reap`); None: the store has no asynchronous
        submission, worker threads :meth:`perform` its operations. A property, so that a
        compiled caller asks the subclass (a class attribute would be read from the base's
        slot)."""
        return None

    def limits(self) -> dict[str, int]:
        """Limits of the medium that override the logical unit's defaults (names of
        :class:`~pyiscsi.scsi.lun.LogicalUnit` limit attributes). Default: none."""
        return {}

    def staging(self, length: int) -> memoryview:
        """A buffer for ``length`` bytes going to or coming from the store."""
        return memoryview(bytearray(length))

    def asynchronous(self, op: StoreOp) -> bool:
        """Whether :meth:`submit` takes ``op`` (else a worker thread performs it)."""
        return False

    def submit(self, op: StoreOp, on_done: Callable[[BaseException | None], None]) -> None:
        """Start ``op``; ``on_done(error)`` is called from :meth:`reap` on the loop thread.
        The op's buffer stays referenced until then: it must not be reused earlier."""
        raise NotImplementedError(f"{type(self).__name__} has no asynchronous submission")

    def reap(self) -> None:  # noqa: B027
        """Finish the operations that completed (``completion_fd`` was readable)."""

    @property
    def memory_addressable(self) -> bool:
        """True when :meth:`view` hands out the store's own memory."""
        return False

    def view(self, offset: int, length: int) -> memoryview:
        """A writable memoryview of the store's own memory for ``[offset, offset+length)``."""
        raise NotImplementedError(f"{type(self).__name__} is not memory-addressable")

    @abc.abstractmethod
    def readinto(self, offset: int, buffer: memoryview) -> None:
        """Fill ``buffer`` with the bytes at ``offset``."""

    @abc.abstractmethod
    def write(self, offset: int, data: memoryview | bytes) -> None:
        """Store ``data`` at ``offset`` (a copy for memory-addressable stores)."""

    def prepare_write(self, offset: int, length: int) -> None:  # noqa: B027
        """Make ``[offset, offset+length)`` safe to write through :meth:`view`.

        The file store allocates the blocks here (so a full disk is a :class:`StoreError`,
        never a SIGBUS when the mapping is written). Default: nothing to do.
        """

    @abc.abstractmethod
    def flush(self, offset: int = 0, length: int | None = None) -> None:
        """Make the range (default: everything) stable (SYNCHRONIZE CACHE, FUA)."""

    def unmap(self, offset: int, length: int) -> None:
        """Release the range; it reads back as zeros afterwards (UNMAP, WRITE SAME/UNMAP)."""
        zero = bytes(min(length, 1 << 20))
        done = 0
        while done < length:
            n = min(len(zero), length - done)
            self.write(offset + done, zero[:n])
            done += n

    def is_mapped(self, offset: int, length: int) -> bool:
        """Whether any block of the range is allocated (GET LBA STATUS). Default: mapped."""
        return True

    def synchronous(self, op: StoreOp) -> bool:
        """Whether ``op`` completes at once on the calling thread (the fast path, no thread
        hop): memory that is present. Default: no, everything completes later."""
        return False

    def needs_allocation(self, offset: int, length: int) -> bool:
        """Whether a write to the range must first :attr:`StoreOpKind.ALLOCATE` it."""
        return False

    def resident(self, offset: int, length: int) -> bool:
        """Whether the range's memory can be touched without waiting for a disk."""
        return True

    def fault_in(self, offset: int, length: int) -> None:  # noqa: B027
        """Bring the range into memory (a blocking read of each page). Default: nothing."""

    def write_same(self, offset: int, length: int, block: bytes) -> None:
        """Write ``block`` repeated over ``[offset, offset+length)`` (WRITE SAME)."""
        per_chunk = max(1, (1 << 20) // len(block))
        pattern = block * per_chunk
        done = 0
        while done < length:
            n = min(len(pattern), length - done)
            self.write(offset + done, pattern[:n])
            done += n

    def perform(self, op: StoreOp) -> None:
        """Run ``op`` to completion on the calling thread; :class:`StoreError` on failure."""
        _PERFORM[op.kind](self, op)

    def grow(self, size: int) -> None:
        """Grow the store to ``size`` bytes (the new blocks read as zeros). ValueError when
        it cannot: a smaller size, one that is not a multiple of the block size, or a store
        whose size is not its own to change (a block device). Default: cannot."""
        raise ValueError(f"a {type(self).__name__} cannot grow")

    def _check_growth(self, size: int) -> None:
        if size <= self.size:
            raise ValueError(f"{size} bytes is not more than the {self.size} bytes the store "
                             "has (a LUN only grows)")
        if size % self.block_size:
            raise ValueError(f"{size} bytes is not a multiple of the block size "
                             f"{self.block_size}")

    def close(self) -> None:  # noqa: B027
        """Flush and release resources."""


def _read(store: BackingStore, op: StoreOp) -> None:
    assert isinstance(op.buffer, memoryview)
    store.readinto(op.offset, op.buffer)


def _write(store: BackingStore, op: StoreOp) -> None:
    assert op.buffer is not None
    store.write(op.offset, op.buffer)


def _write_same(store: BackingStore, op: StoreOp) -> None:
    assert op.buffer is not None
    store.write_same(op.offset, op.length, bytes(op.buffer))


def _compare_and_write(store: BackingStore, op: StoreOp) -> None:
    raise StoreError("COMPARE AND WRITE is not offloaded by this store")


def _call(store: BackingStore, op: StoreOp) -> None:
    assert op.call is not None
    op.call()


_PERFORM = {
    StoreOpKind.READ: _read,
    StoreOpKind.WRITE: _write,
    StoreOpKind.FLUSH: lambda store, op: store.flush(op.offset, op.length),
    StoreOpKind.DISCARD: lambda store, op: store.unmap(op.offset, op.length),
    StoreOpKind.WRITE_SAME: _write_same,
    StoreOpKind.COMPARE_AND_WRITE: _compare_and_write,
    StoreOpKind.ALLOCATE: lambda store, op: store.prepare_write(op.offset, op.length),
    StoreOpKind.FAULT_IN: lambda store, op: store.fault_in(op.offset, op.length),
    StoreOpKind.CALL: _call,
}
"""How a store performs each kind of operation, synchronously (a worker thread calls this
for the operations that are not :meth:`BackingStore.synchronous`)."""
