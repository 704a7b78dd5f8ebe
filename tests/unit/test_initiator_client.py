"""The asyncio initiator against our real TargetServer on 127.0.0.1 (port 0), on asyncio and
uvloop: discovery, INQUIRY, capacity, write/read-back from 512 B to 16 MiB, unaligned sizes,
32 concurrent commands, zero-copy placement, errors that carry what the target said."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

import pyiscsi
from pyiscsi.backstore.memory import MemoryStore
from pyiscsi.initiator import blocking
from pyiscsi.initiator.client import connect, discover
from pyiscsi.initiator.errors import LoginFailed, ScsiCommandError
from pyiscsi.proto.wire import LoginStatus
from pyiscsi.scsi.lun import LogicalUnit
from pyiscsi.target.catalog import Catalog, Limits, Target
from pyiscsi.target.server import TargetServer

NAME = "iqn.2026-11.org.pyiscsi:client-test"
SIZE = 64 << 20


class Server:
    def __init__(self, limits: Limits | None = None) -> None:
        self.store = MemoryStore(SIZE)
        lu = LogicalUnit(0, self.store, NAME)
        lu.peers = lambda: [0]
        self.server = TargetServer(Catalog([Target(NAME, {0: lu})], limits=limits))
        self.url = ""
        self.portal = ""

    async def __aenter__(self) -> Server:
        (host, port), = await self.server.start([("127.0.0.1", 0)])
        self.portal = f"{host}:{port}"
        self.url = f"iscsi://{self.portal}/{NAME}/0"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.server.stop()


def run(loop_kind: str, coro: Callable[[], Coroutine[Any, Any, None]]) -> None:
    if loop_kind == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(asyncio.wait_for(coro(), 120))
    else:
        asyncio.run(asyncio.wait_for(coro(), 120))


LOOPS = pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])



@LOOPS
def test_discovery_inquiry_capacity(loop_kind: str) -> None:
    async def go() -> None:
        async with Server() as srv:
            targets = await pyiscsi.discover(srv.portal)
            assert targets == [(NAME, [f"{srv.portal},1"])]
            async with await pyiscsi.connect(srv.url) as lun:
                inq = await lun.inquiry()
                assert (inq.vendor, inq.product, inq.device_type) == ("PYISCSI",
                                                                       "pyiscsi disk", 0)
                cap = await lun.read_capacity()
                assert (cap.block_size, cap.blocks, cap.bytes) == (512, SIZE // 512, SIZE)
                assert await lun.report_luns() == [0]
                await lun.test_unit_ready()
                await lun.sync()

    run(loop_kind, go)


SIZES = [512, 1024, 4096, 8192 + 512, 65536 - 512, 65536 + 512, 262144, 262144 + 4608,
         1 << 20, (1 << 20) + 512 * 3, 5 << 20, 16 << 20]


@LOOPS
def test_write_then_read_back_512b_to_16mib(loop_kind: str) -> None:
    async def go() -> None:
        async with Server() as srv, await connect(srv.url) as lun:
            lba = 1
            for size in SIZES:
                data = os.urandom(size)
                assert await lun.write(lba, memoryview(data)) == size
                assert bytes(srv.store.view(lba * 512, size)) == data
                back = bytearray(size)
                assert await lun.read_into(lba, back) == size
                assert back == data, size
                assert await lun.read(lba, size // 512) == data
                lba += size // 512 + 3

    run(loop_kind, go)


@LOOPS
def test_32_concurrent_reads_and_writes(loop_kind: str) -> None:
    async def go() -> None:
        async with Server(Limits(queue_depth=8)) as srv, await connect(srv.url) as lun:
            chunks = [os.urandom(4096 * (1 + i % 5)) for i in range(32)]
            lbas = [i * 64 for i in range(32)]
            await asyncio.gather(*(lun.write(a, c) for a, c in zip(lbas, chunks, strict=True)))
            bufs = [bytearray(len(c)) for c in chunks]
            await asyncio.gather(*(lun.read_into(a, b) for a, b in zip(lbas, bufs, strict=True)))
            assert bufs == chunks
            assert lun.session.engine.queued == 0

    run(loop_kind, go)


def test_large_read_is_received_straight_into_the_callers_buffer() -> None:
    """Every byte of a 4 MiB read lands in the caller's bytearray through get_buffer()."""

    async def go() -> None:
        async with Server() as srv, await connect(srv.url) as lun:
            data = os.urandom(4 << 20)
            srv.store.write(0, data)
            await lun.read_capacity()
            engine = lun.session.engine  # what the protocol's get_buffer() returns
            buf = bytearray(len(data))
            handed: list[memoryview] = []
            original = engine.get_buffer

            def spy() -> memoryview:
                view = original()
                handed.append(view)
                return view

            engine.get_buffer = spy  # type: ignore[method-assign]
            before = lun.session.engine.counters.snapshot()
            await lun.read_into(0, buf)
            after = lun.session.engine.counters.snapshot()
            assert buf == data
            assert after["rx_staged"] - before["rx_staged"] == 0
            assert after["rx_placed"] - before["rx_placed"] == len(data)
            assert sum(len(v) for v in handed if v.obj is buf) >= len(data)

    run("uvloop", go)


def test_scsi_error_carries_status_and_sense() -> None:
    async def go() -> None:
        async with Server() as srv, await connect(srv.url) as lun:
            with pytest.raises(ScsiCommandError) as info:
                await lun.read(SIZE // 512, 1)
            err = info.value
            assert (err.status, err.sense_key, err.asc, err.ascq) == (0x02, 0x5, 0x21, 0x00)
            assert "LOGICAL BLOCK ADDRESS OUT OF RANGE" in str(err)
            out = await lun.execute(bytes([0xFF]) + bytes(5), check=False)
            assert out.status == 0x02
            assert (await lun.read(0, 1)) == bytes(512)  # the session survives

    run("asyncio", go)


def test_login_failure_carries_status() -> None:
    async def go() -> None:
        async with Server() as srv:
            with pytest.raises(LoginFailed) as info:
                await connect(f"iscsi://{srv.portal}/iqn.2026-11.org.example:nope/0")
            assert info.value.status == LoginStatus.NOT_FOUND

    run("asyncio", go)


def test_unaligned_buffer_is_refused() -> None:
    async def go() -> None:
        async with Server() as srv, await connect(srv.url) as lun:
            with pytest.raises(ValueError, match="block size"):
                await lun.write(0, bytes(1000))
            with pytest.raises(TypeError):
                await lun.read_into(0, bytes(512))

    run("asyncio", go)


def test_commands_after_close_fail_cleanly() -> None:
    async def go() -> None:
        async with Server() as srv:
            lun = await connect(srv.url)
            await lun.close()
            assert lun.session.is_closed
            with pytest.raises(ConnectionError):
                await lun.read(0, 1)

    run("asyncio", go)


def test_target_stopping_fails_inflight_commands() -> None:
    async def go() -> None:
        srv = Server()
        await srv.__aenter__()
        lun = await connect(srv.url)
        await srv.__aexit__()
        with pytest.raises(ConnectionError):
            for _ in range(3):
                await lun.read(0, 1)
                await asyncio.sleep(0.05)
        await lun.close()

    run("asyncio", go)


def test_blocking_wrapper() -> None:
    srv = Server()
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop = asyncio.Event()

    async def serve() -> None:
        await srv.__aenter__()
        ready.set()
        await stop.wait()
        await srv.__aexit__()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),))
    thread.start()
    try:
        assert ready.wait(10)
        assert blocking.discover(srv.portal)[0][0] == NAME
        with blocking.connect(srv.url) as lun:
            assert lun.read_capacity().block_size == 512
            lun.write(2, b"\x42" * 1024)
            assert lun.read(2, 2) == b"\x42" * 1024
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()


def test_import_pyiscsi_is_cheap() -> None:
    import subprocess
    import sys

    code = ("import sys, pyiscsi; assert 'pyiscsi.initiator.client' not in sys.modules; "
            "assert callable(pyiscsi.connect) and callable(pyiscsi.discover)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_discover_function_is_exported() -> None:
    assert pyiscsi.discover is discover and pyiscsi.connect is connect
