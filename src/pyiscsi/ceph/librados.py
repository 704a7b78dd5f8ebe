"""A ctypes binding to the parts of librados the RBD backstore and the gateways use.

Cluster handles (``rados_create2``/``conf_read_file``/``conf_set``/``connect``/
``shutdown``), pool I/O contexts, whole-object writes, and watch/notify
(``rados_watch2``/``unwatch2``/``notify2``/``notify_ack``/``watch_flush``/``buffer_free``)
for cross-gateway events. Signatures follow ``rados/librados.h`` (Ceph >= 14). Watch
callbacks run on a librados thread (ctypes takes the GIL there); they are rare events, the
data path does not use them.
"""

from __future__ import annotations

import ctypes
import functools
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import CephError, check
from .loader import load

c_void_p = ctypes.c_void_p
c_char_p = ctypes.c_char_p
c_int = ctypes.c_int
c_uint64 = ctypes.c_uint64
c_size_t = ctypes.c_size_t

WATCHCB2 = ctypes.CFUNCTYPE(None, c_void_p, c_uint64, c_uint64, c_uint64, c_void_p, c_size_t)
"""``rados_watchcb2_t(arg, notify_id, handle, notifier_id, data, data_len)``."""
WATCHERRCB = ctypes.CFUNCTYPE(None, c_void_p, c_uint64, c_int)
"""``rados_watcherrcb_t(arg, cookie, err)``."""

_SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    "rados_create2": (c_int, [ctypes.POINTER(c_void_p), c_char_p, c_char_p, c_uint64]),
    "rados_conf_read_file": (c_int, [c_void_p, c_char_p]),
    "rados_conf_set": (c_int, [c_void_p, c_char_p, c_char_p]),
    "rados_conf_get": (c_int, [c_void_p, c_char_p, c_char_p, c_size_t]),
    "rados_connect": (c_int, [c_void_p]),
    "rados_shutdown": (None, [c_void_p]),
    "rados_ioctx_create": (c_int, [c_void_p, c_char_p, ctypes.POINTER(c_void_p)]),
    "rados_ioctx_destroy": (None, [c_void_p]),
    "rados_write_full": (c_int, [c_void_p, c_char_p, c_char_p, c_size_t]),
    "rados_remove": (c_int, [c_void_p, c_char_p]),
    "rados_watch2": (c_int, [c_void_p, c_char_p, ctypes.POINTER(c_uint64), WATCHCB2,
                             WATCHERRCB, c_void_p]),
    "rados_unwatch2": (c_int, [c_void_p, c_uint64]),
    "rados_watch_check": (c_int, [c_void_p, c_uint64]),
    "rados_notify2": (c_int, [c_void_p, c_char_p, c_char_p, c_int, c_uint64,
                              ctypes.POINTER(ctypes.POINTER(ctypes.c_char)),
                              ctypes.POINTER(c_size_t)]),
    "rados_notify_ack": (c_int, [c_void_p, c_char_p, c_uint64, c_uint64, c_char_p, c_int]),
    "rados_watch_flush": (c_int, [c_void_p]),
    "rados_buffer_free": (None, [c_void_p]),
}


@functools.cache
def library() -> ctypes.CDLL:
    """librados, loaded once with its signatures set (:class:`CephUnavailable` if absent)."""
    return load("rados", "librados.so.2", "PYISCSI_LIBRADOS", _SIGNATURES)


DEFAULT_TIMEOUT = 30
"""Seconds before an OSD or monitor operation fails with ETIMEDOUT instead of hanging."""


class Cluster:
    """A connected cluster handle (``rados_t``)."""

    def __init__(self, conf: str | None = None, client: str = "admin", *,
                 options: dict[str, str] | None = None, timeout: int = DEFAULT_TIMEOUT) -> None:
        """Read ``conf`` (None: librados's default search, ``$CEPH_CONF``), apply
        ``options`` and the operation timeouts, connect. :class:`CephError` on failure."""
        self.lib = library()
        handle = c_void_p()
        name = client if client.startswith("client.") else f"client.{client}"
        check("rados_create2", self.lib.rados_create2(ctypes.byref(handle), b"ceph",
                                                      name.encode(), 0))
        self.handle = handle
        try:
            ret = self.lib.rados_conf_read_file(handle, conf.encode() if conf else None)
            check("rados_conf_read_file", ret, conf or "default ceph.conf search")
            settings = {"rados_osd_op_timeout": str(timeout),
                        "rados_mon_op_timeout": str(timeout),
                        "client_mount_timeout": str(timeout)}
            settings.update(options or {})
            for key, value in settings.items():
                self.conf_set(key, value)
            check("rados_connect", self.lib.rados_connect(handle), conf or "")
        except BaseException:
            self.lib.rados_shutdown(handle)
            self.handle = c_void_p()
            raise

    def conf_set(self, key: str, value: str) -> None:
        check("rados_conf_set", self.lib.rados_conf_set(self.handle, key.encode(),
                                                        value.encode()), key)

    def conf_get(self, key: str) -> str:
        buf = ctypes.create_string_buffer(4096)
        check("rados_conf_get", self.lib.rados_conf_get(self.handle, key.encode(), buf,
                                                        len(buf)), key)
        return buf.value.decode()

    def ioctx(self, pool: str) -> IoCtx:
        """An I/O context on ``pool`` (ENOENT when the pool does not exist)."""
        return IoCtx(self, pool)

    def watch_flush(self) -> None:
        """Wait until every watch callback already queued has run (before unloading)."""
        check("rados_watch_flush", self.lib.rados_watch_flush(self.handle))

    def shutdown(self) -> None:
        if self.handle:
            self.lib.rados_shutdown(self.handle)
            self.handle = c_void_p()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


@dataclass(frozen=True, slots=True)
class NotifyAck:
    """One watcher's acknowledgement of a notify: its id, watch cookie and reply payload."""

    notifier_id: int
    cookie: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class NotifyResult:
    """What ``rados_notify2`` gathered: acks and the (gid, cookie) of watchers that timed out."""

    acks: tuple[NotifyAck, ...]
    timeouts: tuple[tuple[int, int], ...]


def decode_notify_reply(data: bytes) -> NotifyResult:
    """Decode the reply buffer of ``rados_notify2``: ``le32 n, n x (le64 gid, le64 cookie,
    le32 len, len bytes), le32 m, m x (le64 gid, le64 cookie)`` (librados.h)."""
    pos = 0

    def take(fmt: str) -> tuple[int, ...]:
        nonlocal pos
        values = struct.unpack_from(fmt, data, pos)
        pos += struct.calcsize(fmt)
        return values

    acks = []
    (count,) = take("<I")
    for _ in range(count):
        gid, cookie, length = take("<QQI")
        acks.append(NotifyAck(gid, cookie, bytes(data[pos:pos + length])))
        pos += length
    timeouts = []
    if pos < len(data):
        (count,) = take("<I")
        timeouts = [(gid, cookie) for gid, cookie in (take("<QQ") for _ in range(count))]
    return NotifyResult(tuple(acks), tuple(timeouts))


NotifyHandler = Callable[["Watch", int, int, bytes], None]
"""``handler(watch, notify_id, notifier_id, payload)``, called on a librados thread: it
must call :meth:`Watch.ack` (or the notifier waits for its timeout)."""
ErrorHandler = Callable[["Watch", int], None]
"""``on_error(watch, -errno)``: the watch was lost (e.g. -ENOTCONN); re-watch."""


class Watch:
    """A watch on one object (``rados_watch2``)."""

    def __init__(self, ioctx: IoCtx, oid: str, handler: NotifyHandler,
                 on_error: ErrorHandler | None = None) -> None:
        self.ioctx = ioctx
        self.oid = oid
        self._handler = handler
        self._on_error = on_error
        self._cb = WATCHCB2(self._notified)
        self._errcb = WATCHERRCB(self._failed)
        cookie = c_uint64()
        check("rados_watch2", ioctx.lib.rados_watch2(ioctx.handle, oid.encode(),
                                                     ctypes.byref(cookie), self._cb,
                                                     self._errcb, None), oid)
        self.cookie = cookie.value

    def _notified(self, arg: int | None, notify_id: int, handle: int, notifier_id: int,
                  data: int | None, length: int) -> None:
        payload = ctypes.string_at(data, length) if data and length else b""
        self._handler(self, notify_id, notifier_id, payload)

    def _failed(self, arg: int | None, cookie: int, err: int) -> None:
        if self._on_error is not None:
            self._on_error(self, err)

    def ack(self, notify_id: int, payload: bytes = b"") -> None:
        """Acknowledge a notify (``rados_notify_ack``), with an optional reply payload."""
        ret = self.ioctx.lib.rados_notify_ack(self.ioctx.handle, self.oid.encode(), notify_id,
                                              self.cookie, payload or None, len(payload))
        check("rados_notify_ack", ret, self.oid)

    def check(self) -> int:
        """Milliseconds since the watch was last confirmed; :class:`CephError` if lost."""
        return check("rados_watch_check", self.ioctx.lib.rados_watch_check(self.ioctx.handle,
                                                                           self.cookie))

    def close(self) -> None:
        """Unwatch (``rados_unwatch2``); callbacks already queued may still run until
        :meth:`Cluster.watch_flush`."""
        if self.cookie:
            cookie, self.cookie = self.cookie, 0
            check("rados_unwatch2", self.ioctx.lib.rados_unwatch2(self.ioctx.handle, cookie))


class IoCtx:
    """An I/O context on one pool (``rados_ioctx_t``)."""

    def __init__(self, cluster: Cluster, pool: str) -> None:
        self.cluster = cluster
        self.lib = cluster.lib
        self.pool = pool
        handle = c_void_p()
        check("rados_ioctx_create", self.lib.rados_ioctx_create(cluster.handle, pool.encode(),
                                                                ctypes.byref(handle)),
              f"pool {pool!r}")
        self.handle = handle

    def write_full(self, oid: str, data: bytes) -> None:
        check("rados_write_full", self.lib.rados_write_full(self.handle, oid.encode(), data,
                                                            len(data)), oid)

    def remove(self, oid: str) -> None:
        check("rados_remove", self.lib.rados_remove(self.handle, oid.encode()), oid)

    def watch(self, oid: str, handler: NotifyHandler,
              on_error: ErrorHandler | None = None) -> Watch:
        """Watch ``oid`` (it must exist: :meth:`write_full` creates it)."""
        return Watch(self, oid, handler, on_error)

    def notify(self, oid: str, payload: bytes = b"", timeout_ms: int = 5000) -> NotifyResult:
        """Notify every watcher of ``oid`` and wait for their acks (``rados_notify2``).
        A watcher that does not ack in time is listed in ``timeouts`` (the call then
        returns -ETIMEDOUT, which is not raised: the acks that came are still useful)."""
        reply = ctypes.POINTER(ctypes.c_char)()
        length = c_size_t()
        ret = self.lib.rados_notify2(self.handle, oid.encode(), payload or None, len(payload),
                                     timeout_ms, ctypes.byref(reply), ctypes.byref(length))
        try:
            data = ctypes.string_at(reply, length.value) if reply else b""
        finally:
            if reply:
                self.lib.rados_buffer_free(ctypes.cast(reply, c_void_p))
        if ret < 0 and not (ret == -110 and data):
            raise CephError("rados_notify2", ret, oid)
        return decode_notify_reply(data) if data else NotifyResult((), ())

    def close(self) -> None:
        if self.handle:
            self.lib.rados_ioctx_destroy(self.handle)
            self.handle = c_void_p()


__all__ = [
    "CephError",
    "Cluster",
    "IoCtx",
    "NotifyAck",
    "NotifyResult",
    "Watch",
    "decode_notify_reply",
    "library",
]
