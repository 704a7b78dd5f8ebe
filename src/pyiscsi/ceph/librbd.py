"""A ctypes binding to the parts of librbd the RBD backstore uses.

Images (``rbd_create``/``open``/``close``/``stat``/``get_size``) and asynchronous I/O:
``rbd_aio_read``/``writev``/``flush``/``discard``/``writesame``/``compare_and_write``.
Completions are created without a callback and reported through an eventfd
(``rbd_set_image_notification``) and ``rbd_poll_io_events``, so no librbd thread ever
enters Python (no GIL taken there) and the event loop reaps them with one ``add_reader``.
Buffers are passed by address, never copied by the binding; the caller keeps each buffer
alive and unchanged until its completion is reaped (with ``rbd_disable_zero_copy_writes =
false`` librbd does not copy writes either). Signatures follow ``rbd/librbd.h`` (Ceph >= 14).
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
from dataclasses import dataclass
from typing import Any, cast

from .errors import CephError, check
from .librados import IoCtx
from .loader import load
from .structs import ImageInfo, IoVec

c_void_p = ctypes.c_void_p
c_char_p = ctypes.c_char_p
c_int = ctypes.c_int
c_uint64 = ctypes.c_uint64
c_size_t = ctypes.c_size_t
c_ssize_t = ctypes.c_ssize_t
P = ctypes.POINTER

EVENT_TYPE_EVENTFD = 2
"""``rbd_set_image_notification`` type: ``EVENT_TYPE_PIPE = 1, EVENT_TYPE_EVENTFD = 2``."""


CALLBACK = ctypes.CFUNCTYPE(None, c_void_p, c_void_p)
"""``rbd_callback_t(completion, arg)``: runs on a librbd thread (takes the GIL)."""


DIFF_CALLBACK = ctypes.CFUNCTYPE(c_int, c_uint64, c_size_t, c_int, c_void_p)
"""``int (*cb)(offset, length, exists, arg)`` of ``rbd_diff_iterate2``."""


_SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    "rbd_create": (c_int, [c_void_p, c_char_p, c_uint64, P(c_int)]),
    "rbd_remove": (c_int, [c_void_p, c_char_p]),
    "rbd_open": (c_int, [c_void_p, c_char_p, P(c_void_p), c_char_p]),
    "rbd_close": (c_int, [c_void_p]),
    "rbd_stat": (c_int, [c_void_p, P(ImageInfo), c_size_t]),
    "rbd_get_size": (c_int, [c_void_p, P(c_uint64)]),
    "rbd_aio_create_completion": (c_int, [c_void_p, c_void_p, P(c_void_p)]),
    "rbd_aio_release": (None, [c_void_p]),
    "rbd_aio_get_return_value": (c_ssize_t, [c_void_p]),
    "rbd_aio_wait_for_complete": (c_int, [c_void_p]),
    "rbd_aio_is_complete": (c_int, [c_void_p]),
    "rbd_aio_read": (c_int, [c_void_p, c_uint64, c_size_t, c_void_p, c_void_p]),
    "rbd_aio_readv": (c_int, [c_void_p, P(IoVec), c_int, c_uint64, c_void_p]),
    "rbd_aio_writev": (c_int, [c_void_p, P(IoVec), c_int, c_uint64, c_void_p]),
    "rbd_aio_flush": (c_int, [c_void_p, c_void_p]),
    "rbd_aio_discard": (c_int, [c_void_p, c_uint64, c_uint64, c_void_p]),
    "rbd_aio_writesame": (c_int, [c_void_p, c_uint64, c_size_t, c_void_p, c_size_t,
                                  c_void_p, c_int]),
    "rbd_aio_compare_and_write": (c_ssize_t, [c_void_p, c_uint64, c_size_t, c_void_p,
                                              c_void_p, c_void_p, P(c_uint64), c_int]),
    "rbd_read": (c_ssize_t, [c_void_p, c_uint64, c_size_t, c_void_p]),
    "rbd_write": (c_ssize_t, [c_void_p, c_uint64, c_size_t, c_void_p]),
    "rbd_flush": (c_int, [c_void_p]),
    "rbd_discard": (c_int, [c_void_p, c_uint64, c_uint64]),
    "rbd_writesame": (c_ssize_t, [c_void_p, c_uint64, c_size_t, c_void_p, c_size_t, c_int]),
    "rbd_compare_and_write": (c_ssize_t, [c_void_p, c_uint64, c_size_t, c_void_p, c_void_p,
                                          P(c_uint64), c_int]),
    "rbd_diff_iterate2": (c_int, [c_void_p, c_char_p, c_uint64, c_uint64, ctypes.c_uint8,
                                  ctypes.c_uint8, DIFF_CALLBACK, c_void_p]),
    "rbd_set_image_notification": (c_int, [c_void_p, c_int, c_int]),
    "rbd_poll_io_events": (c_int, [c_void_p, P(c_void_p), c_int]),
}


@functools.cache
def library() -> ctypes.CDLL:
    """librbd, loaded once with its signatures set (:class:`CephUnavailable` if absent)."""
    return load("rbd", "librbd.so.1", "PYISCSI_LIBRBD", _SIGNATURES)


def create(ioctx: IoCtx, name: str, size: int, order: int = 0) -> None:
    """Create image ``name`` of ``size`` bytes (``order``: log2 object size, 0: default)."""
    lib = library()
    check("rbd_create", lib.rbd_create(ioctx.handle, name.encode(), size,
                                       ctypes.byref(c_int(order))), name)


def remove(ioctx: IoCtx, name: str) -> None:
    """Remove image ``name`` (ENOENT if absent, EBUSY while it is open with watchers)."""
    check("rbd_remove", library().rbd_remove(ioctx.handle, name.encode()), name)


@dataclass(frozen=True, slots=True)
class Stat:
    """What ``rbd_stat`` says of an image."""

    size: int
    object_size: int
    order: int


def address(buffer: memoryview | bytes) -> tuple[int, object]:
    """The address of ``buffer``'s bytes (no copy) and the object that keeps it exported."""
    if isinstance(buffer, memoryview) and not buffer.readonly:
        first = ctypes.c_char.from_buffer(buffer)  # exports the whole buffer, as an array would
        return ctypes.addressof(first), first
    data = bytes(buffer) if not isinstance(buffer, bytes) else buffer
    pointer = ctypes.c_char_p(data)
    return ctypes.cast(pointer, c_void_p).value or 0, (pointer, data)


class Image:
    """An open image with an eventfd that becomes readable as its aio completes."""

    def __init__(self, ioctx: IoCtx, name: str) -> None:
        self.lib = library()
        self.ioctx = ioctx
        self.name = name
        handle = c_void_p()
        check("rbd_open", self.lib.rbd_open(ioctx.handle, name.encode(), ctypes.byref(handle),
                                            None), f"{ioctx.pool}/{name}")
        self.handle = handle
        self.event_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        try:
            check("rbd_set_image_notification",
                  self.lib.rbd_set_image_notification(handle, self.event_fd,
                                                      EVENT_TYPE_EVENTFD))
        except CephError:
            self.close()
            raise
        self._events = (c_void_p * 64)()
        self._comp = c_void_p()
        self._comp_ref = ctypes.byref(self._comp)
        """Where ``rbd_aio_create_completion`` writes (aio is submitted from one thread)."""

    def stat(self) -> Stat:
        info = ImageInfo()
        check("rbd_stat", self.lib.rbd_stat(self.handle, ctypes.byref(info),
                                            ctypes.sizeof(info)))
        return Stat(info.size, info.obj_size, info.order)

    def get_size(self) -> int:
        size = c_uint64()
        check("rbd_get_size", self.lib.rbd_get_size(self.handle, ctypes.byref(size)))
        return size.value

    # --- synchronous I/O (worker threads; not reported on the eventfd) -----------------

    def read(self, offset: int, length: int, buffer: int) -> int:
        return check("rbd_read", self.lib.rbd_read(self.handle, offset, length, buffer))

    def write(self, offset: int, length: int, buffer: int) -> int:
        return check("rbd_write", self.lib.rbd_write(self.handle, offset, length, buffer))

    def flush(self) -> None:
        check("rbd_flush", self.lib.rbd_flush(self.handle))

    def discard(self, offset: int, length: int) -> None:
        check("rbd_discard", self.lib.rbd_discard(self.handle, offset, length))

    def writesame(self, offset: int, length: int, buffer: int, data_length: int) -> None:
        check("rbd_writesame", self.lib.rbd_writesame(self.handle, offset, length, buffer,
                                                      data_length, 0))

    def compare_and_write(self, offset: int, length: int, compare: int, write: int,
                          mismatch: ctypes.c_uint64) -> int:
        """Bytes written, or -EILSEQ with ``mismatch`` set (not raised: a verdict)."""
        return int(self.lib.rbd_compare_and_write(self.handle, offset, length, compare, write,
                                                  ctypes.byref(mismatch), 0))

    def allocated(self, offset: int, length: int) -> bool:
        """Whether any object under ``[offset, offset+length)`` exists (``rbd_diff_iterate2``
        from the beginning, whole objects: the object map when the image has fast-diff)."""
        found: list[bool] = []

        def seen(off: int, n: int, exists: int, arg: int | None) -> int:
            if exists:
                found.append(True)
                return -errno.ECANCELED  # one is enough: stop iterating
            return 0

        ret = self.lib.rbd_diff_iterate2(self.handle, None, offset, length, 1, 1,
                                         DIFF_CALLBACK(seen), None)
        if found:
            return True
        check("rbd_diff_iterate2", ret)
        return False

    # --- asynchronous I/O: each call answers the completion (an address) ---------------

    def completion(self, callback: Any = None) -> int:
        """A completion reported on the eventfd (``callback``: a :data:`CALLBACK` instead,
        for calls librbd does not report there)."""
        cb = ctypes.cast(callback, c_void_p) if callback is not None else None
        check("rbd_aio_create_completion",
              self.lib.rbd_aio_create_completion(None, cb, self._comp_ref))
        return self._comp.value or 0

    def _submitted(self, call: str, comp: int, ret: int) -> int:
        if ret < 0:
            self.lib.rbd_aio_release(comp)
            raise CephError(call, ret)
        return comp

    def aio_read(self, offset: int, length: int, buffer: int) -> int:
        comp = self.completion()
        return self._submitted("rbd_aio_read", comp, self.lib.rbd_aio_read(
            self.handle, offset, length, buffer, comp))

    def aio_writev(self, offset: int, iov: ctypes.Array[IoVec]) -> int:
        comp = self.completion()
        return self._submitted("rbd_aio_writev", comp, self.lib.rbd_aio_writev(
            self.handle, iov, len(iov), offset, comp))

    def aio_flush(self) -> int:
        comp = self.completion()
        return self._submitted("rbd_aio_flush", comp, self.lib.rbd_aio_flush(self.handle, comp))

    def aio_discard(self, offset: int, length: int) -> int:
        comp = self.completion()
        return self._submitted("rbd_aio_discard", comp, self.lib.rbd_aio_discard(
            self.handle, offset, length, comp))

    def aio_writesame(self, offset: int, length: int, buffer: int, data_length: int) -> int:
        comp = self.completion()
        return self._submitted("rbd_aio_writesame", comp, self.lib.rbd_aio_writesame(
            self.handle, offset, length, buffer, data_length, comp, 0))

    def aio_compare_and_write(self, offset: int, length: int, compare: int, write: int,
                              mismatch: ctypes.c_uint64, callback: Any) -> int:
        """``mismatch`` receives the offset of the first differing byte (from ``offset``,
        Ceph 16) when the completion's return value is -EILSEQ; keep it alive until then.
        Ceph 16 does not post this completion on the eventfd: ``callback`` reports it."""
        comp = self.completion(callback)
        return self._submitted("rbd_aio_compare_and_write", comp,
                               self.lib.rbd_aio_compare_and_write(
                                   self.handle, offset, length, compare, write, comp,
                                   ctypes.byref(mismatch), 0))

    def poll(self) -> list[int]:
        """Completions that are done (after the eventfd was read), oldest first."""
        done: list[int] = []
        while True:
            n = check("rbd_poll_io_events", self.lib.rbd_poll_io_events(
                self.handle, self._events, len(self._events)))
            # a slice of c_void_p reads back as ints (librbd never posts NULL)
            done.extend(cast("list[int]", self._events[:n]))
            if n < len(self._events):
                return done

    def drain_event_fd(self) -> None:
        try:  # noqa: SIM105 (once per wake-up: contextlib.suppress is an object and 2 calls)
            os.eventfd_read(self.event_fd)
        except BlockingIOError:  # already drained by an earlier wake-up
            pass

    def result(self, comp: int) -> int:
        """The completion's return value (bytes or -errno); releases it."""
        ret = self.lib.rbd_aio_get_return_value(comp)
        self.lib.rbd_aio_release(comp)
        return int(ret)

    def is_complete(self, comp: int) -> bool:
        return bool(self.lib.rbd_aio_is_complete(comp))

    def wait(self, comp: int) -> None:
        self.lib.rbd_aio_wait_for_complete(comp)

    def close(self) -> None:
        """Close the image (librbd waits for its I/O in flight first)."""
        if self.handle:
            handle, self.handle = self.handle, c_void_p()
            check("rbd_close", self.lib.rbd_close(handle))
        if self.event_fd >= 0:
            os.close(self.event_fd)
            self.event_fd = -1


def iovec(address: int, length: int) -> ctypes.Array[IoVec]:
    """A one-entry iovec array for ``rbd_aio_writev``."""
    iov = (IoVec * 1)()
    iov[0].iov_base = address
    iov[0].iov_len = length
    return iov
