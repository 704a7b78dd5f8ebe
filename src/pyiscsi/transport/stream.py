"""asyncio ``BufferedProtocol`` glue: the kernel receives straight into the engine's buffers.

``get_buffer()`` returns whatever the engine's receiver asks for: the header scratch area,
or the slice of a data pointer table entry's destination (the store's own memory), so a
Data-Out payload travels from the socket to its final home with no user-space copy.
Output is handed to ``transport.writelines`` as views (a scatter-gather write on uvloop
and Python >= 3.12; Python 3.11's asyncio joins them, and the counters say so).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable
from typing import Protocol

from ..logfmt import ConnectionLog
from ..proto.errors import ProtocolError
from ..target.state import ServerState
from ..target.storework import StoreRequest
from .store_runner import StoreRunner

log = logging.getLogger("pyiscsi.transport")

Buffer = bytes | bytearray | memoryview
_TICK = 1.0
"""Seconds between engine ticks (NOP-In pings, dead-peer detection)."""


class Engine(Protocol):
    """What a sans-IO connection engine offers the transport."""

    number: int
    close_after_send: bool
    internal_errors: int

    def get_buffer(self) -> memoryview: ...
    def advance(self, nbytes: int) -> None: ...
    def tick(self, now: float) -> None: ...
    def received_at(self, now: float) -> None: ...
    @property
    def dead(self) -> bool: ...
    def take_output(self) -> tuple[list[Buffer], list[int]]: ...
    def take_store_requests(self) -> list[StoreRequest]: ...
    @property
    def wants_turn(self) -> bool: ...
    def turn(self) -> None: ...
    def store_completed(self, token: int, error: BaseException | None = None) -> None: ...
    def close(self) -> None: ...


def writes_without_copy(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether ``writelines`` of memoryviews avoids a user-space copy on this loop."""
    return type(loop).__module__.startswith("uvloop") or sys.version_info >= (3, 12)


class StreamProtocol(asyncio.BufferedProtocol):
    """One TCP connection: feeds bytes to an engine and writes what it produces."""

    def __init__(self, make_engine: Callable[[str], Engine], *,
                 login_timeout: float | None = None,
                 on_lost: Callable[[StreamProtocol], None] | None = None,
                 store_runner: StoreRunner | None = None,
                 state: ServerState | None = None) -> None:
        self._make_engine = make_engine
        self.state = state if state is not None else ServerState()
        self._runner = store_runner
        self._login_timeout = login_timeout
        self._on_lost = on_lost
        self.engine: Engine | None = None
        self.transport: asyncio.Transport | None = None
        self.local: tuple[str, int] | None = None
        """The local address (host, port) of the connection, the portal it came in
        through; known from ``connection_made`` on, before the engine is made (its factory
        reads it)."""
        self._zero_copy = False
        self._paused = False
        self._timer: asyncio.TimerHandle | None = None
        self._ticker: asyncio.TimerHandle | None = None
        self._flush_pending = False
        self._turn_pending = False
        self._scratch = memoryview(bytearray(4096))

    # -- asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        peer = transport.get_extra_info("peername")
        assert self.transport is not None
        name = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        sockname = transport.get_extra_info("sockname")
        if isinstance(sockname, tuple) and len(sockname) >= 2:
            self.local = (str(sockname[0]), int(sockname[1]))
        loop = asyncio.get_running_loop()
        self._zero_copy = writes_without_copy(loop)
        self.engine = self._make_engine(name)
        self.state.transport.connections += 1
        self.transport.set_write_buffer_limits(high=8 << 20, low=1 << 20)
        if self._login_timeout:
            self._timer = loop.call_later(self._login_timeout, self._login_expired)
        self._loop = loop
        self._ticker = loop.call_later(_TICK, self._tick)

    def get_buffer(self, sizehint: int) -> memoryview:
        engine = self.engine
        if engine is None:
            return self._scratch
        try:
            return engine.get_buffer()
        except Exception:
            self._internal_error("get_buffer")
            return self._scratch

    def buffer_updated(self, nbytes: int) -> None:
        engine = self.engine
        if engine is None or self.transport is None or self.transport.is_closing():
            return
        try:
            engine.received_at(self._loop.time())
            engine.advance(nbytes)
        except ProtocolError as exc:
            self.state.transport.protocol_errors += 1
            ConnectionLog(log, engine).info("closing: %s", exc)
            self._flush()
            self.transport.close()
            return
        except Exception:
            self._internal_error("advance")
            return
        # Coalesce: the loop may deliver several reads in one iteration (libuv reads until
        # the socket is drained); their replies leave in one writev at the iteration's end.
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        """Flush once at the end of this loop iteration (replies coalesce into one write)."""
        if not self._flush_pending:
            self._flush_pending = True
            self._loop.call_soon(self._deferred_flush)

    def _deferred_flush(self) -> None:
        self._flush_pending = False
        self._flush()

    def eof_received(self) -> bool | None:
        # The peer is gone: end its session state now, not in connection_lost (a later
        # callback), so a command another connection sent after this FIN already sees the
        # I_T nexus lost (e.g. its RESERVE(6) released, SPC-2 §5.5.1).
        if self.engine is not None:
            try:
                self.engine.close()
            except Exception:
                self._internal_error("close")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        if self.engine is not None:
            try:
                self.engine.close()
            except Exception:
                self._internal_error("close")
        if self._on_lost is not None:
            self._on_lost(self)

    def pause_writing(self) -> None:
        # Bounded memory: stop reading new requests while the peer is not draining replies.
        self._paused = True
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self._paused = False
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    # -- helpers

    def _flush(self) -> None:
        engine, transport = self.engine, self.transport
        if engine is None or transport is None:
            return
        try:
            out, payload = engine.take_output()
            requests = engine.take_store_requests()
        except Exception:
            self._internal_error("take_output")
            return
        for request in requests:
            self._run_store(request)
        if engine.wants_turn and not self._turn_pending:
            # one turn of the loop: a timer callback runs after the I/O events queued now
            self._turn_pending = True
            self._loop.call_later(0, self._turn)
        if out:
            if transport.is_closing():
                return
            transport.writelines(out)
            self.state.copies.sent(payload, self._zero_copy)
        if engine.close_after_send:
            transport.close()

    def _turn(self) -> None:
        self._turn_pending = False
        engine = self.engine
        if engine is None or self.transport is None or self.transport.is_closing():
            return
        try:
            engine.turn()
        except Exception:
            self._internal_error("turn")
            return
        self._flush()

    def _run_store(self, request: StoreRequest) -> None:
        """Store work goes to the runner; without one (tests), it runs here and now."""
        if self._runner is not None:
            self._runner.submit(request, self._store_done)
            return
        self._loop.call_soon(self._store_done, request.token, request.run())

    def _store_done(self, token: int, error: BaseException | None) -> None:
        """A store request completed: feed it to the engine, send what that produced."""
        engine = self.engine
        if engine is None:
            return
        try:
            engine.store_completed(token, error)
        except Exception:
            self._internal_error("store_completed")
            return
        self._schedule_flush()

    def _tick(self) -> None:
        engine, transport = self.engine, self.transport
        if engine is None or transport is None or transport.is_closing():
            return
        try:
            engine.tick(self._loop.time())
        except Exception:
            self._internal_error("tick")
            return
        if engine.dead:
            transport.abort()
            return
        self._flush()
        self._ticker = self._loop.call_later(_TICK, self._tick)

    def _internal_error(self, where: str) -> None:
        self.state.transport.internal_errors += 1
        ConnectionLog(log, self.engine).exception("internal error in %s; closing the connection",
                                                  where)
        if self.engine is not None:
            self.engine.internal_errors += 1
        if self.transport is not None:
            self.transport.abort()

    def _login_expired(self) -> None:
        engine = self.engine
        if engine is not None and getattr(engine, "logged_in", True) is False \
                and self.transport is not None:
            ConnectionLog(log, engine).info("login timeout")
            self.transport.abort()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def poke(self) -> None:
        """Something outside the connection's own events changed its engine (a catalog
        change ended its session or aborted tasks): send what it has now, drop it if dead."""
        engine, transport = self.engine, self.transport
        if engine is None or transport is None or transport.is_closing():
            return
        self._flush()
        if engine.dead:
            transport.abort()
