"""asyncio layer of the initiator: a ``BufferedProtocol`` around :class:`InitiatorConnection`.

``get_buffer()`` returns what the engine asks for, so Data-In payloads are received by the
kernel straight into the caller's buffer (the engine's data pointer table entry for the ITT
points there). Output goes to ``transport.writelines`` as views of the caller's memory (a
scatter-gather write on uvloop and Python >= 3.12). The loop is whatever the caller runs:
uvloop when the caller uses it, never forced.

    async with await connect("iscsi://127.0.0.1:3260/iqn.2026-11.org.example:disk/0") as lun:
        cap = await lun.read_capacity()
        buf = bytearray(1 << 20)
        await lun.read_into(lba=0, buffer=buf)
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

from ..proto.discovery import parse_send_targets
from ..proto.keys import encode_text
from ..proto.login import InitiatorLoginConfig
from ..proto.wire import ScsiStatus
from . import scsi
from .connection import (
    ConnectionFailed,
    Event,
    InitiatorConnection,
    Kind,
    LoggedIn,
    Phase,
    ScsiOutcome,
    Task,
    TaskDone,
    TaskFailed,
)
from .errors import ConnectionClosed, ScsiCommandError, parse_sense
from .url import IscsiUrl, parse_url, split_host_port

DEFAULT_INITIATOR = "iqn.2026-11.org.pyiscsi:initiator"
Buffer = bytes | bytearray | memoryview
BufferLike = Any  # anything exposing the buffer protocol (bytearray, mmap, array, ...)


def _zero_copy_writes(loop: asyncio.AbstractEventLoop) -> bool:
    return type(loop).__module__.startswith("uvloop") or sys.version_info >= (3, 12)


class _Protocol(asyncio.BufferedProtocol):
    """Feeds the engine and resolves futures from its events."""

    def __init__(self, engine: InitiatorConnection, loop: asyncio.AbstractEventLoop) -> None:
        self.engine = engine
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.logged_in: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self._zero_copy = _zero_copy_writes(loop)
        self._flush_pending = False

    # -- asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        assert self.transport is not None
        self.transport.set_write_buffer_limits(high=64 << 20, low=1 << 20)
        self.engine.start()
        self.flush()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.engine.get_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        self._dispatch(self.engine.advance(nbytes))
        self.flush()

    def eof_received(self) -> bool | None:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._dispatch(self.engine.connection_lost(exc))
        if not self.logged_in.done():
            self.logged_in.set_exception(ConnectionClosed(
                f"connection closed during login{f': {exc}' if exc else ''}"))
        if not self.closed.done():
            self.closed.set_result(None)

    # -- output

    def schedule_flush(self) -> None:
        """Flush once per loop iteration: commands submitted together leave in one write."""
        if not self._flush_pending:
            self._flush_pending = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        self._flush_pending = False
        transport = self.transport
        out, payload = self.engine.take_output()
        if transport is None or transport.is_closing():
            return
        if out:
            transport.writelines(out)
            self.engine.counters.sent(payload, self._zero_copy)
        if self.engine.close_after_send:
            transport.close()

    # -- events -> futures

    def _dispatch(self, events: list[Event]) -> None:
        for event in events:
            _EVENT_HANDLERS[type(event)](self, event)

    def _on_logged_in(self, event: LoggedIn) -> None:
        if not self.logged_in.done():
            self.logged_in.set_result(None)

    def _on_done(self, event: TaskDone) -> None:
        fut = event.task.user
        if isinstance(fut, asyncio.Future) and not fut.done():
            fut.set_result(event.result)

    def _on_failed(self, event: TaskFailed) -> None:
        fut = event.task.user
        if isinstance(fut, asyncio.Future) and not fut.done():
            fut.set_exception(event.error)

    def _on_connection_failed(self, event: ConnectionFailed) -> None:
        if not self.logged_in.done():
            self.logged_in.set_exception(event.error)


_EVENT_HANDLERS: dict[type, Callable[[_Protocol, Any], None]] = {
    LoggedIn: _Protocol._on_logged_in,
    TaskDone: _Protocol._on_done,
    TaskFailed: _Protocol._on_failed,
    ConnectionFailed: _Protocol._on_connection_failed,
}


class Session:
    """One logged-in iSCSI session over one connection (ERL 0)."""

    unit_attention_retries = 4
    """Times a command is sent when the target answers UNIT ATTENTION (then reported; 0 or 1:
    sent once, the unit attention reported at once)."""

    def __init__(self, protocol: _Protocol) -> None:
        self._protocol = protocol
        self.engine = protocol.engine

    @classmethod
    async def open(cls, host: str, port: int, target: str | None, *,
                   initiator_name: str = DEFAULT_INITIATOR,
                   config: InitiatorLoginConfig | None = None,
                   credentials: object | None = None, timeout: float | None = 15.0
                   ) -> Session:
        """Connect and log in (``target=None``: a discovery session)."""
        loop = asyncio.get_running_loop()
        engine = InitiatorConnection(initiator_name, target, config=config,
                                     credentials=credentials)
        protocol = _Protocol(engine, loop)
        async with asyncio.timeout(timeout):
            transport, _ = await loop.create_connection(lambda: protocol, host, port)
            try:
                await protocol.logged_in
            except BaseException:
                transport.abort()
                raise
        return cls(protocol)

    @property
    def params(self) -> Any:
        return self.engine.params

    @property
    def is_closed(self) -> bool:
        return self._protocol.closed.done()

    async def _run(self, task: Task) -> Any:
        fut: asyncio.Future[Any] = self._protocol.loop.create_future()
        task.user = fut
        error = self.engine.error
        if error is not None or self._protocol.closed.done():
            raise ConnectionClosed(f"connection is closed: {error}" if error
                                   else "connection is closed")
        self.engine.submit(task)
        self._protocol.schedule_flush()
        return await fut

    async def execute(self, cdb: bytes, *, lun: int = 0, data_in: BufferLike | None = None,
                      data_out: BufferLike | None = None, check: bool = True,
                      name: str = "") -> ScsiOutcome:
        """Run one SCSI command; Data-In lands in ``data_in``, Data-Out comes from ``data_out``.

        ``check`` raises :class:`ScsiCommandError` for a status other than GOOD/CONDITION MET.
        """
        din = (data_in if type(data_in) is memoryview and data_in.format == "B"
               and not data_in.readonly else
               _writable_view(data_in) if data_in is not None else None)
        dout = (data_out if type(data_out) is memoryview and data_out.format == "B" else
                memoryview(data_out).cast("B") if data_out is not None else None)
        field = scsi.lun_field(lun)
        for _ in range(max(1, self.unit_attention_retries)):  # sent once at least
            outcome: ScsiOutcome = await self._run(Task(
                Kind.SCSI, cdb=cdb, lun=field, data_in=din, data_out=dout))
            if outcome.status != ScsiStatus.CHECK_CONDITION or outcome.response:
                break
            sense = parse_sense(outcome.sense)
            if sense is None or sense.key != _UNIT_ATTENTION:
                break
            # SAM-5 §5.14: a unit attention condition ended this command unexecuted; retry.
        if check and (outcome.response or outcome.status not in _GOOD):
            raise ScsiCommandError(outcome.status, parse_sense(outcome.sense),
                                   response=outcome.response, command=name or _cdb_name(cdb))
        return outcome

    async def text(self, pairs: list[tuple[str, str]]) -> bytes:
        """A Text Request/Response exchange (RFC 7143 §11.10-11.11); the answer's raw text."""
        result: bytes = await self._run(Task(Kind.TEXT, text=encode_text(pairs)))
        return result

    async def send_targets(self, value: str = "All") -> list[tuple[str, list[str]]]:
        """SendTargets (RFC 7143 §13.3, Appendix C): ``[(iqn, ["host:port,tpgt", ...])]``."""
        return parse_send_targets(await self.text([("SendTargets", value)]))

    async def ping(self, data: bytes = b"") -> bytes:
        fut: asyncio.Future[bytes] = self._protocol.loop.create_future()
        self.engine.ping(data, user=fut)
        self._protocol.schedule_flush()
        return await fut

    async def task_management(self, function: int, *, lun: int = 0) -> int:
        """A task management function on LUN ``lun`` (RFC 7143 §11.5, e.g.
        :attr:`~pyiscsi.proto.wire.TmfFunction.LOGICAL_UNIT_RESET`); its response code
        (§11.6.1: 0 is Function complete)."""
        fut: asyncio.Future[int] = self._protocol.loop.create_future()
        self.engine.task_management(function, lun=scsi.lun_field(lun), user=fut)
        self._protocol.schedule_flush()
        return await fut

    async def close(self, timeout: float = 5.0) -> None:
        """Log out (RFC 7143 §11.14) and close the connection."""
        protocol = self._protocol
        if protocol.closed.done():
            return
        transport = protocol.transport
        try:
            if self.engine.error is None and self.engine.phase is Phase.FULL_FEATURE:
                fut: asyncio.Future[int] = protocol.loop.create_future()
                self.engine.logout(user=fut)
                protocol.flush()
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(timeout):
                        await fut
        finally:
            if transport is not None:
                transport.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(timeout):
                    await asyncio.shield(protocol.closed)
            if transport is not None and not protocol.closed.done():
                transport.abort()


_UNIT_ATTENTION = 0x6
_GOOD = frozenset({ScsiStatus.GOOD, ScsiStatus.CONDITION_MET})
_CDB_NAMES = {
    scsi.OP_TEST_UNIT_READY: "TEST UNIT READY", scsi.OP_INQUIRY: "INQUIRY",
    scsi.OP_READ_CAPACITY_10: "READ CAPACITY(10)",
    scsi.OP_SERVICE_ACTION_IN_16: "READ CAPACITY(16)",
    scsi.OP_READ_16: "READ(16)", scsi.OP_WRITE_16: "WRITE(16)",
    scsi.OP_SYNCHRONIZE_CACHE_10: "SYNCHRONIZE CACHE(10)", scsi.OP_REPORT_LUNS: "REPORT LUNS",
}


def _cdb_name(cdb: bytes) -> str:
    return _CDB_NAMES.get(cdb[0], f"SCSI opcode 0x{cdb[0]:02x}") if cdb else "SCSI command"


def _writable_view(buffer: BufferLike) -> memoryview:
    view = memoryview(buffer)
    if view.readonly:
        raise TypeError("read buffer must be writable (bytearray, mmap, memoryview of one)")
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view


class Lun:
    """One logical unit of a logged-in session: block I/O into and out of caller buffers."""

    max_transfer = 16 << 20
    """Largest single READ/WRITE; larger requests are split and run concurrently."""

    def __init__(self, session: Session, lun: int, url: IscsiUrl | None = None) -> None:
        self.session = session
        self.lun = lun
        self.url = url
        self.capacity: scsi.Capacity | None = None

    async def __aenter__(self) -> Lun:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        await self.session.close()

    async def execute(self, cdb: bytes, *, data_in: BufferLike | None = None,
                      data_out: BufferLike | None = None, check: bool = True) -> ScsiOutcome:
        """Any SCSI command on this LUN (see :meth:`Session.execute`)."""
        return await self.session.execute(cdb, lun=self.lun, data_in=data_in,
                                          data_out=data_out, check=check)

    async def test_unit_ready(self) -> None:
        await self.execute(scsi.test_unit_ready())

    async def inquiry(self) -> scsi.Inquiry:
        buf = bytearray(96)
        out = await self.execute(scsi.inquiry(len(buf)), data_in=buf)
        return scsi.parse_inquiry(buf[:out.transferred])

    async def report_luns(self) -> list[int]:
        buf = bytearray(16 + 8 * 256)
        out = await self.execute(scsi.report_luns(len(buf)), data_in=buf)
        return scsi.parse_report_luns(buf[:out.transferred])

    async def read_capacity(self) -> scsi.Capacity:
        """READ CAPACITY(16), or (10) when the target does not know (16) (SBC-3 §5.15-16)."""
        buf = bytearray(32)
        try:
            out = await self.execute(scsi.read_capacity_16(len(buf)), data_in=buf)
            cap = scsi.parse_read_capacity_16(buf[:out.transferred])
        except ScsiCommandError as exc:
            if exc.sense_key != 0x5 or exc.asc != 0x20:
                raise
            out = await self.execute(scsi.read_capacity_10(), data_in=buf)
            cap = scsi.parse_read_capacity_10(buf[:out.transferred])
        self.capacity = cap
        return cap

    async def block_size(self) -> int:
        cap = self.capacity or await self.read_capacity()
        return cap.block_size

    async def _chunks(self, lba: int, view: memoryview,
                      op: Callable[[int, memoryview, int], Awaitable[int]]) -> int:
        bs = await self.block_size()
        if len(view) % bs:
            raise ValueError(f"buffer of {len(view)} bytes is not a multiple of the "
                             f"{bs}-byte block size")
        step = max(bs, self.max_transfer // bs * bs)
        if len(view) <= step:
            return await op(lba, view, bs)
        parts = [op(lba + off // bs, view[off:off + step], bs)
                 for off in range(0, len(view), step)]
        return sum(await asyncio.gather(*parts))

    async def read_into(self, lba: int, buffer: BufferLike, *, fua: bool = False) -> int:
        """READ(16) of ``len(buffer)`` bytes at ``lba``: Data-In placed straight into it."""
        view = _writable_view(buffer)
        cap = self.capacity
        if cap is not None and len(view) <= self.max_transfer and not len(view) % cap.block_size:
            out = await self.session.execute(  # fast path: one command, no chunking layers
                scsi.read_16(lba, len(view) // cap.block_size, fua=fua), lun=self.lun,
                data_in=view)
            return out.transferred

        async def one(at: int, part: memoryview, bs: int) -> int:
            out = await self.execute(scsi.read_16(at, len(part) // bs, fua=fua), data_in=part)
            return out.transferred

        return await self._chunks(lba, view, one)

    async def read(self, lba: int, blocks: int) -> bytearray:
        buf = bytearray(blocks * await self.block_size())
        await self.read_into(lba, buf)
        return buf

    async def write(self, lba: int, data: BufferLike, *, fua: bool = False) -> int:
        """WRITE(16) of ``data`` at ``lba``; Data-Out is sent from slices of ``data``."""
        view = memoryview(data).cast("B")
        cap = self.capacity
        if cap is not None and len(view) <= self.max_transfer and not len(view) % cap.block_size:
            out = await self.session.execute(
                scsi.write_16(lba, len(view) // cap.block_size, fua=fua), lun=self.lun,
                data_out=view)
            return out.transferred

        async def one(at: int, part: memoryview, bs: int) -> int:
            out = await self.execute(scsi.write_16(at, len(part) // bs, fua=fua), data_out=part)
            return out.transferred

        return await self._chunks(lba, view, one)

    async def sync(self) -> None:
        """SYNCHRONIZE CACHE(10) of the whole LUN."""
        await self.execute(scsi.synchronize_cache_10())


async def connect(url: str | IscsiUrl, *, initiator_name: str = DEFAULT_INITIATOR,
                  config: InitiatorLoginConfig | None = None,
                  timeout: float | None = 15.0) -> Lun:
    """Log in to the target of ``url`` and return its LUN (an async context manager)."""
    parsed = parse_url(url) if isinstance(url, str) else url
    credentials = ((parsed.user, parsed.password) if parsed.user is not None else None)
    session = await Session.open(parsed.host, parsed.port, parsed.target,
                                 initiator_name=initiator_name, config=config,
                                 credentials=credentials, timeout=timeout)
    return Lun(session, parsed.lun or 0, parsed)


async def discover(portal: str, *, initiator_name: str = DEFAULT_INITIATOR,
                   timeout: float | None = 15.0) -> list[tuple[str, list[str]]]:
    """SendTargets=All over a discovery session: ``[(iqn, ["host:port,tpgt", ...])]``."""
    text = portal.removeprefix("iscsi://").rstrip("/")
    host, port = split_host_port(text)
    session = await Session.open(host, port, None, initiator_name=initiator_name,
                                 timeout=timeout)
    try:
        async with asyncio.timeout(timeout):
            return await session.send_targets("All")
    finally:
        await session.close()
