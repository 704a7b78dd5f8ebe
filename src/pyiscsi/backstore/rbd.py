"""A Ceph RBD image as a LUN, with asynchronous completion through librbd's eventfd.

The image is opened with librbd through :mod:`pyiscsi.ceph` (ctypes, no compiled
binding). READ, WRITE, FLUSH, DISCARD and WRITE SAME are submitted as ``rbd_aio_*`` calls
from the loop thread (:meth:`RbdStore.submit`); librbd signals their completion on an
eventfd that the transport watches, and :meth:`RbdStore.reap` feeds them back. Data-Out
lands in slices of a :class:`~.pool.BufferPool` and is written from there; reads fill a
slice that is sent as is. COMPARE AND WRITE is ``rbd_aio_compare_and_write``: atomic in
the OSD, so against every gateway of the image (librbd allows it within one 512-byte
sector). A librbd errno becomes sense data by table (:data:`ERRNO_SENSE`).

The client runs with ``rbd_cache = false`` (a write is on the OSDs when it completes: no
gateway-local cache to lose or to keep coherent) and OSD/monitor operation timeouts, so a
lost cluster ends commands in errors instead of hanging them.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ..ceph import librados, librbd
from ..ceph.errors import CephError
from ..ceph.librbd import address, iovec
from .base import BackingStore, StoreError
from .ops import StoreOp, StoreOpKind
from .pool import BufferPool

POOLED = 128 << 10
"""Buffers from this size come from the pool (glibc mmaps a fresh one per command)."""
CAW_SECTOR = 512
"""librbd compares and writes within one 512-byte sector (ImageCompareAndWriteRequest)."""


@dataclass(frozen=True, slots=True)
class RbdSpec:
    """Where the image is and how to reach the cluster."""

    pool: str
    image: str
    conf: str | None = None
    """ceph.conf path; None: librados's default search (``$CEPH_CONF``, /etc/ceph)."""
    client: str = "admin"
    """The cephx client id (``client.<id>``)."""
    size: int | None = None
    """Create the image with this size when missing; an existing one must have it."""
    timeout: int = 30
    """Seconds before an OSD or monitor operation fails (``rados_osd_op_timeout``)."""
    threads: int = 1
    """librados's completion threads for this image's cluster handle
    (``librados_thread_count``, Ceph's default 2). The loop polls completions from the
    eventfd, so these threads only finish librbd's requests (a read's copy into our
    buffer); one keeps that work on one thread. Every RBD LU has a handle of its own."""


Sense = tuple[int, int, int]
MEDIUM_WRITE_ERROR: Sense = (0x03, 0x0C, 0x00)
UNRECOVERED_READ_ERROR: Sense = (0x03, 0x11, 0x00)
INTERNAL_TARGET_FAILURE: Sense = (0x04, 0x44, 0x00)

ERRNO_SENSE: dict[int, Sense] = {
    errno.ETIMEDOUT: (0x04, 0x3E, 0x02),  # HARDWARE ERROR: TIMEOUT ON LOGICAL UNIT
    errno.ENOSPC: (0x07, 0x27, 0x07),  # DATA PROTECT: SPACE ALLOCATION FAILED WRITE PROTECT
    errno.EDQUOT: (0x07, 0x27, 0x07),
    errno.EROFS: (0x07, 0x27, 0x00),  # DATA PROTECT: WRITE PROTECTED
    errno.EILSEQ: (0x0E, 0x1D, 0x00),  # MISCOMPARE: MISCOMPARE DURING VERIFY OPERATION
    errno.ENOENT: (0x02, 0x3A, 0x00),  # NOT READY: MEDIUM NOT PRESENT (image removed)
    errno.ESHUTDOWN: (0x04, 0x44, 0x00),  # blocklisted: this gateway is fenced
    errno.ENOTCONN: (0x04, 0x44, 0x00),
    errno.EINVAL: (0x05, 0x24, 0x00),  # ILLEGAL REQUEST: INVALID FIELD IN CDB
}
"""librbd's ``-errno`` -> (sense key, ASC, ASCQ) (SPC-5 §4.4.3 tables); EIO and anything
not listed is a MEDIUM ERROR of the operation's direction (:data:`DIRECTION_SENSE`)."""

DIRECTION_SENSE: dict[StoreOpKind, Sense] = {
    StoreOpKind.READ: UNRECOVERED_READ_ERROR,
    StoreOpKind.FLUSH: MEDIUM_WRITE_ERROR,
}
"""The MEDIUM ERROR an unlisted errno becomes, by operation (default: WRITE ERROR)."""


def store_error(kind: StoreOpKind, ret: int, information: int | None = None) -> StoreError:
    """The :class:`StoreError` that reports librbd's ``ret`` (``-errno``) for ``kind``."""
    code = -ret
    key, asc, ascq = ERRNO_SENSE.get(code, DIRECTION_SENSE.get(kind, MEDIUM_WRITE_ERROR))
    name = errno.errorcode.get(code, str(code))
    return StoreError(f"librbd {kind.value}: -{name}", key, asc, ascq,
                      information if code == errno.EILSEQ else None)


Done = Callable[[BaseException | None], None]


class _Pending:
    """An operation librbd has not completed; ``keep``: what must stay alive until then
    (buffers, iovecs, the mismatch word)."""

    __slots__ = ("keep", "mismatch", "on_done", "op")

    def __init__(self, op: StoreOp, on_done: Done, keep: object,
                 mismatch: ctypes.c_uint64 | None = None) -> None:
        self.op = op
        self.on_done = on_done
        self.keep = keep
        self.mismatch = mismatch


class RbdStore(BackingStore):
    """An RBD image (``rbd:POOL/IMAGE``)."""

    places_staging = True
    paged = False

    def __init__(self, spec: RbdSpec, block_size: int = 512, read_only: bool = False) -> None:
        self.spec = spec
        self.block_size = block_size
        self.read_only = read_only
        self.name = f"rbd:{spec.pool}/{spec.image}"
        self.stable_name = self.name  # every gateway of the image: one LU identity, shared
        options = {"rbd_cache": "false", "rbd_disable_zero_copy_writes": "false",
                   "rbd_skip_partial_discard": "false",
                   "librados_thread_count": str(spec.threads)}
        self.cluster = librados.Cluster(spec.conf, spec.client, options=options,
                                        timeout=spec.timeout)
        try:
            self.ioctx = self.cluster.ioctx(spec.pool)
            self.image = self._open(spec)
        except BaseException:
            self.cluster.shutdown()
            raise
        stat = self.image.stat()
        self.size = stat.size
        self.object_size = stat.object_size
        if spec.size is not None and spec.size != self.size:
            self.close()
            raise ValueError(f"{self.name} has {self.size} bytes, not the {spec.size} of "
                             "size= (an existing image keeps its size)")
        if self.size % block_size:
            self.close()
            raise ValueError(f"{self.name}: {self.size} bytes is not a multiple of the block "
                             f"size {block_size}")
        self.atomic_compare_and_write = block_size <= CAW_SECTOR
        self.pool = BufferPool()
        self._pending: dict[int, _Pending] = {}
        self._called_back: deque[int] = deque()
        """Completions librbd reported by callback (on its thread) instead of the eventfd."""
        self._refused: deque[tuple[Done, StoreError]] = deque()
        """Operations librbd refused at submission, to report from :meth:`reap`."""
        self._callback = librbd.CALLBACK(self._completed_elsewhere)

    def _open(self, spec: RbdSpec) -> librbd.Image:
        """Open the image; create it when missing and ``size=`` was given."""
        try:
            return librbd.Image(self.ioctx, spec.image)
        except CephError as exc:
            if exc.errno != errno.ENOENT:
                raise
            if spec.size is None:
                raise ValueError(f"{self.name} does not exist (give size= to create it)"
                                 ) from None
        librbd.create(self.ioctx, spec.image, spec.size)
        return librbd.Image(self.ioctx, spec.image)

    @property
    def identity(self) -> str:
        """A name every gateway of the image derives alike (LU identity, reservations)."""
        return self.name

    @property
    def completion_fd(self) -> int | None:
        return self.image.event_fd

    def limits(self) -> dict[str, int]:
        """MAXIMUM COMPARE AND WRITE LENGTH as librbd allows (one 512-byte sector); unmap
        granularity and optimal transfer length from the object size (SBC-4 §6.6.4)."""
        return {"max_compare_write_blocks": CAW_SECTOR // self.block_size
                if self.atomic_compare_and_write else 0,
                "unmap_granularity_bytes": self.object_size,
                "optimal_transfer_bytes": self.object_size}

    def staging(self, length: int) -> memoryview:
        """A slice of the pool from :data:`POOLED` bytes; below, a fresh bytearray (librbd
        reads into or writes from either without a copy; the pool's bookkeeping costs
        4-5 us a slice, a small bytearray 0.3-1 us, a 1 MiB one 35 us with its page faults)."""
        if length < POOLED:
            return memoryview(bytearray(length))
        return self.pool.take(length)

    # --- asynchronous path -------------------------------------------------------------

    def asynchronous(self, op: StoreOp) -> bool:
        return op.kind in _SUBMIT

    def submit(self, op: StoreOp, on_done: Done) -> None:
        """Start ``op`` with ``rbd_aio_*``; a refusal at submission is a completion too."""
        try:
            comp, keep, mismatch = _SUBMIT[op.kind](self, op)
        except CephError as exc:  # reported from reap(), like any completion
            self._refused.append((on_done, store_error(op.kind, -(exc.errno or errno.EIO))))
            os.eventfd_write(self.image.event_fd, 1)
            return
        self._pending[comp] = _Pending(op, on_done, keep, mismatch)

    def reap(self) -> None:
        self.image.drain_event_fd()
        done = self.image.poll()  # librbd posts only completions that are complete
        polled = len(done)
        while self._called_back:
            done.append(self._called_back.popleft())
        for i, comp in enumerate(done):
            # only ours, and only once: a completion reported twice (callback and eventfd)
            # must not release it twice nor finish a later one that reuses its address
            if comp not in self._pending or (i >= polled
                                             and not self.image.is_complete(comp)):
                continue
            entry = self._pending.pop(comp)
            ret = self.image.result(comp)
            error = None
            if ret < 0:
                at = entry.mismatch.value if entry.mismatch is not None else None
                error = store_error(entry.op.kind, ret, at)
            entry.on_done(error)
        while self._refused:
            on_done, refusal = self._refused.popleft()
            on_done(refusal)

    def _completed_elsewhere(self, comp: int | None, arg: int | None) -> None:
        """librbd's callback for completions it does not post on the eventfd (compare and
        write, Ceph 16): runs on a librbd thread, queues it and wakes the loop."""
        self._called_back.append(comp or 0)
        with contextlib.suppress(OSError):
            os.eventfd_write(self.image.event_fd, 1)

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    # --- synchronous path (worker threads: EXTENDED COPY, SANITIZE, tests) -------------

    def readinto(self, offset: int, buffer: memoryview) -> None:
        addr, keep = address(buffer)
        self._sync(StoreOpKind.READ, lambda: self.image.read(offset, len(buffer), addr))
        del keep

    def write(self, offset: int, data: memoryview | bytes) -> None:
        addr, keep = address(data)
        self._sync(StoreOpKind.WRITE, lambda: self.image.write(offset, len(data), addr))
        del keep

    def flush(self, offset: int = 0, length: int | None = None) -> None:
        self._sync(StoreOpKind.FLUSH, self.image.flush)

    def unmap(self, offset: int, length: int) -> None:
        self._sync(StoreOpKind.DISCARD, lambda: self.image.discard(offset, length))

    def is_mapped(self, offset: int, length: int) -> bool:
        """GET LBA STATUS: whether an object of the range exists (a discarded whole object
        is gone; a partly discarded one is zeroed and stays mapped). Errors: mapped."""
        try:
            return self.image.allocated(offset, length)
        except CephError:
            return True

    def write_same(self, offset: int, length: int, block: bytes) -> None:
        addr, keep = address(block)
        self._sync(StoreOpKind.WRITE_SAME,
                   lambda: self.image.writesame(offset, length, addr, len(block)))
        del keep

    def perform(self, op: StoreOp) -> None:
        if op.kind is StoreOpKind.COMPARE_AND_WRITE:
            self._compare_and_write(op)
        else:
            super().perform(op)

    def _compare_and_write(self, op: StoreOp) -> None:
        assert isinstance(op.buffer, memoryview)
        half = op.length
        (compare, keep1), (data, keep2) = (address(op.buffer[:half]),
                                           address(op.buffer[half:]))
        mismatch = ctypes.c_uint64(0)
        ret = self.image.compare_and_write(op.offset, half, compare, data, mismatch)
        del keep1, keep2
        if ret < 0:
            raise store_error(op.kind, ret, mismatch.value)

    @staticmethod
    def _sync(kind: StoreOpKind, call: Callable[[], object]) -> None:
        try:
            call()
        except CephError as exc:
            raise store_error(kind, -(exc.errno or errno.EIO)) from exc

    def close(self) -> None:
        """Close the image (librbd waits for the aio in flight), the pool, the cluster."""
        image = getattr(self, "image", None)
        if image is not None:
            with contextlib.suppress(CephError):
                image.close()
        if getattr(self, "ioctx", None) is not None:
            self.ioctx.close()
        self.cluster.shutdown()


Submitted = tuple[int, object, "ctypes.c_uint64 | None"]


def _aio_read(store: RbdStore, op: StoreOp) -> Submitted:
    assert isinstance(op.buffer, memoryview)
    addr, keep = address(op.buffer)
    return store.image.aio_read(op.offset, len(op.buffer), addr), (op.buffer, keep), None


def _aio_write(store: RbdStore, op: StoreOp) -> Submitted:
    assert op.buffer is not None
    addr, keep = address(op.buffer)
    iov = iovec(addr, len(op.buffer))
    return store.image.aio_writev(op.offset, iov), (op.buffer, keep, iov), None


def _aio_flush(store: RbdStore, op: StoreOp) -> Submitted:
    return store.image.aio_flush(), None, None


def _aio_discard(store: RbdStore, op: StoreOp) -> Submitted:
    return store.image.aio_discard(op.offset, op.length), None, None


def _aio_write_same(store: RbdStore, op: StoreOp) -> Submitted:
    assert op.buffer is not None
    addr, keep = address(op.buffer)
    comp = store.image.aio_writesame(op.offset, op.length, addr, len(op.buffer))
    return comp, (op.buffer, keep), None


def _aio_compare_and_write(store: RbdStore, op: StoreOp) -> Submitted:
    assert isinstance(op.buffer, memoryview)
    half = op.length
    compare, keep1 = address(op.buffer[:half])
    data, keep2 = address(op.buffer[half:])
    mismatch = ctypes.c_uint64(0)
    comp = store.image.aio_compare_and_write(op.offset, half, compare, data, mismatch,
                                             store._callback)
    return comp, (op.buffer, keep1, keep2), mismatch


_SUBMIT: dict[StoreOpKind, Callable[[RbdStore, StoreOp], Submitted]] = {
    StoreOpKind.READ: _aio_read,
    StoreOpKind.WRITE: _aio_write,
    StoreOpKind.FLUSH: _aio_flush,
    StoreOpKind.DISCARD: _aio_discard,
    StoreOpKind.WRITE_SAME: _aio_write_same,
    StoreOpKind.COMPARE_AND_WRITE: _aio_compare_and_write,
}
"""How each kind of operation is started with librbd (the others run on a worker)."""
