"""The tx counters, measured: a real TargetServer (asyncio and uvloop) on 127.0.0.1, a READ from
a RAM LUN over a real socket, and a spy on the transport's ``writelines``.

The spy does not trust what the engine or the transport report: for every buffer handed to
``writelines`` it asks the buffer protocol for the buffer's address and checks whether the bytes
lie inside the store's mapping. Payload bytes that do are views of their home memory; a payload
the engine copied (``bytes(view)``, a join, a staging buffer) lies elsewhere. On plain asyncio
the spy also watches the transport's ``write``: Python 3.11's ``writelines`` joins the buffers
into a new ``bytes`` and writes that (a copy), 3.12's sends them with ``sendmsg`` (no copy).
uvloop's transport is a C type that cannot be watched; it writes the views with ``writev``.
Expected: every payload byte leaves as a store view; ``tx_zero_copy`` grows by exactly the
store bytes the loop did not copy, ``tx_copied`` by those it did.
"""

from __future__ import annotations

import asyncio
import ctypes
import socket
import struct
import sys
from dataclasses import dataclass, field
from typing import Any

import pytest

from pyiscsi.placement.counters import SIZE_BUCKETS
from pyiscsi.proto import pdu as P
from pyiscsi.proto.login import InitiatorLogin, InitiatorLoginConfig, LoginDone
from pyiscsi.target.server import TargetServer
from pyiscsi.transport.stream import StreamProtocol

from ..pair import INITIATOR, TARGET, make_catalog, wire

BLOCK = 512
SEGMENT = 8192  # the initiator's MaxRecvDataSegmentLength: Data-In PDUs of 8 KiB at most


class _PyBuffer(ctypes.Structure):
    _fields_ = [("buf", ctypes.c_void_p), ("obj", ctypes.c_void_p),
                ("len", ctypes.c_ssize_t), ("itemsize", ctypes.c_ssize_t),
                ("readonly", ctypes.c_int), ("ndim", ctypes.c_int),
                ("format", ctypes.c_char_p), ("shape", ctypes.c_void_p),
                ("strides", ctypes.c_void_p), ("suboffsets", ctypes.c_void_p),
                ("internal", ctypes.c_void_p)]


_API = ctypes.PyDLL(None)  # our own handle: argtypes set here do not leak into ctypes.pythonapi
_API.PyObject_GetBuffer.argtypes = [ctypes.py_object, ctypes.POINTER(_PyBuffer), ctypes.c_int]
_API.PyObject_GetBuffer.restype = ctypes.c_int
_API.PyBuffer_Release.argtypes = [ctypes.POINTER(_PyBuffer)]
_API.PyBuffer_Release.restype = None


def address(obj: object) -> tuple[int, int]:
    """(address, length) of any contiguous buffer, read-only ones included."""
    view = _PyBuffer()
    _API.PyObject_GetBuffer(obj, ctypes.byref(view), 0)  # PyBUF_SIMPLE
    try:
        return int(view.buf or 0), int(view.len)
    finally:
        _API.PyBuffer_Release(ctypes.byref(view))


def test_address_sees_views_and_copies() -> None:
    """The measuring tool itself: a slice is inside its base, a copy of it is not."""
    base = memoryview(bytearray(1 << 16))
    start, size = address(base)
    at, n = address(base[4096:8192])
    assert (at - start, n) == (4096, 4096)
    at, n = address(bytes(base[4096:8192]))
    assert n == 4096 and not start <= at < start + size
    assert address(base[4096:8192].toreadonly())[0] == start + 4096


@dataclass
class Spy:
    """What reached the target transports' writelines, classified by where its memory is."""

    lo: int
    hi: int
    mapping: object
    store_bytes: int = 0
    """Bytes handed to writelines that lie in the store's mapping (payload views)."""
    loop_copied: int = 0
    """Of those, bytes the transport copied (asyncio's join, seen through write())."""
    foreign_objs: list[str] = field(default_factory=list)
    """Types of store-memory buffers that are not memoryviews of the mapping object."""

    def inside(self, buf: object) -> int:
        at, n = address(buf)
        return n if self.lo <= at and at + n <= self.hi else 0

    def wrap(self, transport: Any) -> Any:
        spy = self
        real_write = None
        if isinstance(transport, asyncio.Transport) and hasattr(transport, "__dict__"):
            real_write = transport.write  # asyncio's Python transport: watch its write() too
        joined: list[int] = []

        def write(data: Any) -> None:
            if not spy.inside(data):
                joined.append(address(data)[1])
            assert real_write is not None
            real_write(data)

        if real_write is not None:
            transport.write = write

        class Proxy:
            def writelines(self, buffers: list[Any]) -> None:
                stored = 0
                for buf in buffers:
                    n = spy.inside(buf)
                    if n and not (isinstance(buf, memoryview) and buf.obj is spy.mapping):
                        spy.foreign_objs.append(type(buf).__name__)
                    stored += n
                total = sum(address(b)[1] for b in buffers)
                joined.clear()
                transport.writelines(buffers)
                spy.store_bytes += stored
                if stored and total in joined:  # one write() of a new object as big as all
                    spy.loop_copied += stored

            def __getattr__(self, name: str) -> Any:
                return getattr(transport, name)

        return Proxy()


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:])
        if not k:
            raise EOFError(f"target closed after {got} of {n} bytes")
        got += k
    return bytes(buf)


def _recv_pdu(sock: socket.socket) -> tuple[P.Pdu, bytes]:
    pdu = P.decode_bhs(_recv_exact(sock, 48))
    n = pdu.data_length_
    return pdu, _recv_exact(sock, P.padded(n))[:n]


def read_over_socket(port: int, lba: int, length: int,
                     segments: list[int] | None = None,
                     segment: int = SEGMENT) -> tuple[bytes, int]:
    """Log in with a plain blocking socket (no pyiscsi transport on this side) and READ(10);
    ``segments`` collects the Data-In data segment lengths seen on the wire."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        login = InitiatorLogin(INITIATOR, TARGET, isid=0x400001230000, config=InitiatorLoginConfig(
            header_digest=("None",), data_digest=("None",),
            max_recv_data_segment_length=segment))
        req, data = login.start()
        while True:
            sock.sendall(wire(req, data or None))
            reply, data = _recv_pdu(sock)
            assert isinstance(reply, P.LoginResponse)
            result = login.receive(reply, data)
            if isinstance(result, LoginDone):
                break
            req, data = result
        cdb = struct.pack(">BBIBHB", 0x28, 0, lba, 0, length // BLOCK, 0)
        cmd = P.ScsiCommand(itt=0x77, cdb=cdb.ljust(16, b"\0"), expected_length=length,
                            cmdsn=result.expcmdsn, expstatsn=result.exp_statsn, lun=0,
                            read=True, write=False, final=True, data_length=0)
        sock.sendall(wire(cmd))
        out = bytearray(length)
        while True:
            pdu, data = _recv_pdu(sock)
            if isinstance(pdu, P.DataIn):
                out[pdu.buffer_offset:pdu.buffer_offset + len(data)] = data
                if segments is not None:
                    segments.append(len(data))
                if pdu.has_status:
                    return bytes(out), pdu.status
            elif isinstance(pdu, P.ScsiResponse):
                return bytes(out), pdu.status
            else:
                raise AssertionError(f"unexpected {pdu!r}")


@pytest.mark.parametrize("segment", [SEGMENT, 256 << 10])
@pytest.mark.parametrize("length", [4096, 256 << 10])
@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_read_payload_leaves_as_store_views_and_the_counters_say_so(
        loop_kind: str, length: int, segment: int, monkeypatch: pytest.MonkeyPatch) -> None:
    catalog = make_catalog(size=4 << 20)
    store = catalog.targets[TARGET].luns[0].store
    whole = store.view(0, store.size)
    lo, size = address(whole)
    spy = Spy(lo, lo + size, whole.obj)
    del whole
    lba = 24
    pattern = bytes((i * 7 + 3) % 251 for i in range(length))
    store.write(lba * BLOCK, pattern)

    original = StreamProtocol.connection_made

    def connection_made(self: StreamProtocol, transport: asyncio.BaseTransport) -> None:
        original(self, transport)
        self.transport = spy.wrap(self.transport)

    monkeypatch.setattr(StreamProtocol, "connection_made", connection_made)

    segments: list[int] = []

    async def main() -> tuple[bytes, int, dict[str, int], dict[str, int]]:
        server = TargetServer(catalog)
        ((_, port),) = await server.start([("127.0.0.1", 0)])
        try:
            before = catalog.state.copies.snapshot()
            data, status = await asyncio.to_thread(read_over_socket, port, lba, length,
                                                   segments, segment)
            after = catalog.state.copies.snapshot()
        finally:
            await server.stop()
        return data, status, before, after

    if loop_kind == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            data, status, before, after = runner.run(asyncio.wait_for(main(), 60))
    else:
        data, status, before, after = asyncio.run(asyncio.wait_for(main(), 60))

    assert status == 0 and data == pattern
    # every payload byte was handed over as a view of the store's memory (the engine copied none)
    assert spy.store_bytes == length
    assert spy.foreign_objs == []
    if loop_kind == "asyncio" and sys.version_info < (3, 12):
        assert spy.loop_copied == length  # 3.11's writelines joins: observed, not assumed
    if loop_kind == "uvloop":
        assert spy.loop_copied == 0  # writev of the views (not observable from Python)
    zero = after["tx_zero_copy"] - before["tx_zero_copy"]
    copied = after["tx_copied"] - before["tx_copied"]
    assert (zero, copied) == (spy.store_bytes - spy.loop_copied, spy.loop_copied)
    # split by the size of each Data-In's data segment, as the initiator saw them on the wire
    path = "tx_copied" if spy.loop_copied else "tx_zero_copy"
    wire_sizes = dict.fromkeys(SIZE_BUCKETS, 0)
    for n in segments:
        wire_sizes["lt4k" if n < 4096 else "4k_64k" if n < 65536 else "ge64k"] += n
    assert sum(segments) == length
    assert {b: after[f"{path}_{b}"] - before[f"{path}_{b}"] for b in SIZE_BUCKETS} == wire_sizes
