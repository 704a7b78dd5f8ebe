"""The asyncio BufferedProtocol glue, driven with a fake transport and a fake engine."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from pyiscsi.proto.errors import ProtocolError, RemoteProtocolError
from pyiscsi.target.state import ServerState
from pyiscsi.target.storework import StoreRequest
from pyiscsi.transport import stream
from pyiscsi.transport.stream import Buffer, Engine, StreamProtocol


class FakeTransport:
    def __init__(self, peer: object = ("192.0.2.1", 50123)) -> None:
        self.peer = peer
        self.calls: list[Any] = []
        self.closing = False
        self.limits: tuple[int | None, int | None] | None = None

    def get_extra_info(self, name: str, default: object = None) -> object:
        return self.peer if name == "peername" else default

    def writelines(self, data: list[Buffer]) -> None:
        self.calls.append(("writelines", list(data)))

    def close(self) -> None:
        self.calls.append("close")
        self.closing = True

    def abort(self) -> None:
        self.calls.append("abort")
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.limits = (high, low)

    def pause_reading(self) -> None:
        self.calls.append("pause_reading")

    def resume_reading(self) -> None:
        self.calls.append("resume_reading")

    @property
    def writes(self) -> list[list[Buffer]]:
        return [c[1] for c in self.calls if isinstance(c, tuple)]


STATE = ServerState()
"""The figures every transport of this module counts into."""
Stats = STATE.transport


class FakeEngine:
    """Each advance queues one reply (``reply``) carrying ``payload`` payload bytes."""

    def __init__(self, peer: str) -> None:
        self.peer = peer
        self.number = 7
        self.close_after_send = False
        self.internal_errors = 0
        self.buffer = memoryview(bytearray(48))
        self.advanced: list[int] = []
        self.received: list[float] = []
        self.ticks: list[float] = []
        self.output: list[Buffer] = []
        self.payload = 0
        self.closed = 0
        self.store_requests: list[StoreRequest] = []
        self.turns = 0
        self.completed: list[tuple[int, BaseException | None]] = []
        self.fail: BaseException | None = None
        self.fail_get_buffer = False
        self.fail_close = False
        self.reply: Buffer | None = None
        self.reply_payload = 0
        self.is_dead = False

    def get_buffer(self) -> memoryview:
        if self.fail_get_buffer:
            raise RuntimeError("boom")
        return self.buffer

    def advance(self, nbytes: int) -> None:
        self.advanced.append(nbytes)
        if self.reply is not None:
            self.output.append(self.reply)
            self.payload += self.reply_payload
        if self.fail is not None:
            raise self.fail

    def tick(self, now: float) -> None:
        self.ticks.append(now)

    def received_at(self, now: float) -> None:
        self.received.append(now)

    @property
    def dead(self) -> bool:
        return self.is_dead

    def take_output(self) -> tuple[list[Buffer], list[int]]:
        out, payload = self.output, self.payload
        self.output, self.payload = [], 0
        return out, [0, payload, 0]  # all in the 4-64 KiB bucket

    wants_turn = False

    def turn(self) -> None:
        self.turns += 1

    def take_store_requests(self) -> list[StoreRequest]:
        requests, self.store_requests = self.store_requests, []
        return requests

    def store_completed(self, token: int, error: BaseException | None = None) -> None:
        self.completed.append((token, error))

    def close(self) -> None:
        self.closed += 1
        if self.fail_close:
            raise RuntimeError("close failed")


Check = Callable[[StreamProtocol, FakeTransport, FakeEngine], Awaitable[None]]


def run(check: Check, *, loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
        peer: object = ("192.0.2.1", 50123), **kwargs: Any) -> tuple[StreamProtocol,
                                                                     FakeTransport, FakeEngine]:
    engines: list[FakeEngine] = []

    def make(name: str) -> Engine:
        engines.append(FakeEngine(name))
        return engines[-1]

    proto = StreamProtocol(make, **kwargs, state=STATE)
    transport = FakeTransport(peer)

    async def main() -> None:
        proto.connection_made(transport)  # type: ignore[arg-type]
        (engine,) = engines
        try:
            await check(proto, transport, engine)
        finally:
            if proto._ticker is not None:
                proto._ticker.cancel()
            if proto._timer is not None:
                proto._timer.cancel()

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(main())
    return proto, transport, engines[0]


def test_connection_made_names_the_engine_and_sets_limits() -> None:
    async def check(proto: StreamProtocol, t: FakeTransport, e: FakeEngine) -> None:
        assert proto.engine is e
        assert proto.transport is t
        assert e.peer == "192.0.2.1:50123"
        assert t.limits == (8 << 20, 1 << 20)
        assert proto._ticker is not None

    before = Stats.connections
    run(check)
    assert Stats.connections == before + 1


def test_non_tuple_peer_is_named_by_str() -> None:
    async def check(proto: StreamProtocol, t: FakeTransport, e: FakeEngine) -> None:
        assert e.peer == "/run/iscsi.sock"

    run(check, peer="/run/iscsi.sock")


def test_get_buffer_is_the_engines_buffer_itself() -> None:
    async def check(proto: StreamProtocol, t: FakeTransport, e: FakeEngine) -> None:
        assert proto.get_buffer(65536) is e.buffer
        e.buffer = memoryview(bytearray(1000))[10:20]
        assert proto.get_buffer(-1) is e.buffer

    run(check)


def test_get_buffer_before_connection_made_is_scratch() -> None:
    proto = StreamProtocol(lambda name: FakeEngine(name, state=STATE))
    buf = proto.get_buffer(10)
    assert isinstance(buf, memoryview) and len(buf) == 4096


def test_get_buffer_failure_is_an_internal_error_and_aborts() -> None:
    before = Stats.internal_errors

    async def check(proto: StreamProtocol, t: FakeTransport, e: FakeEngine) -> None:
        e.fail_get_buffer = True
        buf = proto.get_buffer(100)
        assert buf is not e.buffer and len(buf) == 4096
        assert t.calls == ["abort"]
        assert e.internal_errors == 1

    run(check)
    assert Stats.internal_errors == before + 1


def test_buffer_updated_advances_and_writes_once_at_the_end_of_the_iteration() -> None:
    r1, r2 = memoryview(b"A" * 48), memoryview(bytearray(b"B" * 64))

    async def check(proto: StreamProtocol, t: FakeTransport, e: FakeEngine) -> None:
        e.reply = r1
        proto.buffer_updated(48)
        e.reply = r2
        proto.buffer_updated(17)
        assert e.advanced == [48, 17]
        assert len(e.received) == 2
        assert t.calls == []  # deferred, not written inline
        await asyncio.sleep(0)
        assert len(t.writes) == 1
        (written,) = t.writes
        assert len(written) == 2
        assert written[0] is r1 and written[1] is r2  # the engine's views, not copies
        await asyncio.sleep(0)
        assert len(t.writes) == 1

    run(check)


def test_buffer_updated_with_no_output_writes_nothing() -> None:
    async def check(proto: StreamProtocol, t: FakeTransport, e: FakeEngine) -> None:
        proto.buffer_updated(5)
        await asyncio.sleep(0)
        assert e.advanced == [5]
        assert t.calls == []

    run(check)


def test_buffer_updated_on_a_closing_transport_is_ignored() -> None:
    async def check(proto: StreamProtocol, t: FakeTransport, e: FakeEngine) -> None:
        t.closing = True
        e.reply = b"x"
        proto.buffer_updated(48)
        await asyncio.sleep(0)
        assert e.advanced == []
        assert t.calls == []

    run(check)


def test_protocol_error_flushes_then_closes_and_counts() -> None:
    before = Stats.protocol_errors, Stats.internal_errors
    reject = b"R" * 48

    async def check(proto: StreamProtocol, t: FakeTransport, e: FakeEngine) -> None:
        e.reply = reject
        e.fail = RemoteProtocolError("bad opcode")
        proto.buffer_updated(48)
        assert t.calls == [("writelines", [reject]), "close"]
        assert e.internal_errors == 0
        await asyncio.sleep(0)
        assert t.calls == [("writelines", [reject]), "close"]

    run(check)
    assert (Stats.protocol_errors, Stats.internal_errors) == (before[0] + 1, before[1])


def test_plain_protocol_error_base_class_is_also_a_protocol_error() -> None:
    before = Stats.protocol_errors

    async def check(proto: StreamProtocol, t: FakeTransport, e: FakeEngine) -> None:
        e.fail = ProtocolError("x")
        proto.buffer_updated(1)
        assert t.calls == ["close"]

    run(check)
    assert Stats.protocol_errors == before + 1


def test_other_exception_aborts_and_counts_an_internal_error() -> None:
    before = Stats.protocol_errors, Stats.internal_errors

    async def check(proto: StreamProtocol, t: FakeTransport, e: FakeEngine) -> None:
        e.reply = b"never sent"
        e.fail = KeyError("bug")
        proto.buffer_updated(48)
        assert t.calls == ["abort"]
        assert e.internal_errors == 1
        await asyncio.sleep(0)
        assert t.calls == ["abort"]  # nothing flushed after the abort

    run(check)
    assert (Stats.protocol_errors, Stats.internal_errors) == (before[0], before[1] + 1)


def test_eof_received_closes_the_engine_at_once() -> None:
    async def check(proto: StreamProtocol, t: FakeTransport, e: FakeEngine) -> None:
        assert e.closed == 0
        assert proto.eof_received() is False  # let the transport close itself
        assert e.closed == 1
        assert t.calls == []

    run(check)


def test_eof_close_failure_is_an_internal_error() -> None:
    before = Stats.internal_errors

    async def check(proto: StreamProtocol, t: FakeTransport, e: FakeEngine) -> None:
        e.fail_close = True
        assert proto.eof_received() is False
        assert t.calls == ["abort"]
        assert e.internal_errors == 1

    run(check)
    assert Stats.internal_errors == before + 1


def test_connection_lost_closes_engine_cancels_timers_and_reports() -> None:
    lost: list[StreamProtocol] = []

    async def check(proto: StreamProtocol, t: FakeTransport, e: FakeEngine) -> None:
        ticker = proto._ticker
        assert ticker is not None
        proto.connection_lost(None)
        assert ticker.cancelled()
        assert proto._ticker is None
        assert e.closed == 1
        assert lost == [proto]

    run(check, on_lost=lost.append)


def test_close_after_send_closes_after_the_flush() -> None:
    reply = b"logout response".ljust(48, b"\0")

    async def check(proto: StreamProtocol, t: FakeTransport, e: FakeEngine) -> None:
        e.reply = reply
        e.close_after_send = True
        proto.buffer_updated(48)
        assert t.calls == []
        await asyncio.sleep(0)
        assert t.calls == [("writelines", [reply]), "close"]

    run(check)


def test_pause_and_resume_writing_pause_and_resume_reading() -> None:
    async def check(proto: StreamProtocol, t: FakeTransport, e: FakeEngine) -> None:
        proto.pause_writing()
        assert t.calls == ["pause_reading"]
        assert proto._paused is True
        proto.resume_writing()
        assert t.calls == ["pause_reading", "resume_reading"]
        assert proto._paused is False
        t.closing = True
        proto.pause_writing()
        proto.resume_writing()  # a closing transport is not resumed
        assert t.calls == ["pause_reading", "resume_reading", "pause_reading"]

    run(check)


def test_an_engine_wanting_a_turn_gets_it_after_the_queued_io() -> None:
    engines: list[FakeEngine] = []

    def make(name: str) -> Engine:
        engines.append(FakeEngine(name))
        return engines[-1]

    proto = StreamProtocol(make, state=STATE)

    async def main() -> None:
        proto.connection_made(FakeTransport())  # type: ignore[arg-type]
        engine = engines[0]
        engine.wants_turn = True  # type: ignore[misc]
        proto._flush()
        assert engine.turns == 0  # not now: after the loop has gone round
        engine.wants_turn = False  # type: ignore[misc]
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert engine.turns == 1
        proto.connection_lost(None)

    asyncio.run(main())


def test_tick_flushes_and_dead_engine_is_aborted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream, "_TICK", 0.001)

    async def check(proto: StreamProtocol, t: FakeTransport, e: FakeEngine) -> None:
        e.output.append(b"nop-in")
        for _ in range(200):
            await asyncio.sleep(0.001)
            if e.ticks:
                break
        assert e.ticks
        assert t.writes == [[b"nop-in"]]
        e.is_dead = True
        for _ in range(200):
            await asyncio.sleep(0.001)
            if "abort" in t.calls:
                break
        assert t.calls[-1] == "abort"

    run(check)


def test_login_timeout_aborts_a_connection_not_logged_in() -> None:
    async def check(proto: StreamProtocol, t: FakeTransport, e: FakeEngine) -> None:
        e.logged_in = False  # type: ignore[attr-defined]
        await asyncio.sleep(0.02)
        assert t.calls == ["abort"]

    run(check, login_timeout=0.005)


def test_login_timeout_spares_a_logged_in_connection() -> None:
    async def check(proto: StreamProtocol, t: FakeTransport, e: FakeEngine) -> None:
        e.logged_in = True  # type: ignore[attr-defined]
        await asyncio.sleep(0.02)
        assert t.calls == []

    run(check, login_timeout=0.005)


def test_take_output_failure_is_an_internal_error() -> None:
    before = Stats.internal_errors

    class BrokenOutput(FakeEngine):
        def take_output(self) -> tuple[list[Buffer], list[int]]:
            raise RuntimeError("encoder bug")

    engines: list[BrokenOutput] = []

    def make(name: str) -> Engine:
        engines.append(BrokenOutput(name))
        return engines[-1]

    proto = StreamProtocol(make, state=STATE)
    transport = FakeTransport()

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: None)
        proto.connection_made(transport)  # type: ignore[arg-type]
        proto.buffer_updated(48)
        await asyncio.sleep(0)
        proto.connection_lost(None)

    asyncio.run(main())
    assert transport.calls == ["abort"]
    assert engines[0].internal_errors == 1
    assert Stats.internal_errors == before + 1


class LocalTransport(FakeTransport):
    def __init__(self, sockname: object) -> None:
        super().__init__()
        self.sockname = sockname

    def get_extra_info(self, name: str, default: object = None) -> object:
        return self.sockname if name == "sockname" else super().get_extra_info(name, default)


@pytest.mark.parametrize("sockname,local", [
    (("127.0.0.2", 3260), ("127.0.0.2", 3260)),
    (("::1", 3261, 0, 0), ("::1", 3261)),
    ("/run/iscsi.sock", None)])
def test_the_engine_factory_knows_the_local_portal(sockname: object,
                                                   local: tuple[str, int] | None) -> None:
    seen: list[tuple[str, int] | None] = []

    def make(name: str) -> Engine:
        seen.append(proto.local)
        return FakeEngine(name)

    proto = StreamProtocol(make, state=STATE)

    async def main() -> None:
        proto.connection_made(LocalTransport(sockname))  # type: ignore[arg-type]
        assert proto._ticker is not None
        proto._ticker.cancel()

    asyncio.run(main())
    assert seen == [local]


def test_poke_sends_what_the_engine_has_and_drops_a_dead_one() -> None:
    async def check(proto: StreamProtocol, t: FakeTransport, e: FakeEngine) -> None:
        e.output.append(b"late")
        proto.poke()
        assert t.writes == [[b"late"]] and "abort" not in t.calls
        e.is_dead = True
        proto.poke()
        assert t.calls[-1] == "abort"
        proto.poke()  # closing: nothing more

    run(check)
