"""Our initiator against tgtd (a third-party target): discovery, INQUIRY of the controller
LUN 0 and the disk LUN 1, capacity, write/read-back from 512 B to 16 MiB, unaligned sizes,
32 concurrent commands, zero-copy placement, and the CLI.

tgtd is started with ../shared/peers/start-tgtd.sh (PORT=3262, WORKDIR under tmp_path) and
stopped in the fixture's finalizer. Without tgtd or the script the tests skip, except under
CI (``CI`` set), where they fail.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from pyiscsi.initiator.client import connect, discover
from pyiscsi.initiator.errors import InitiatorError

from .conftest import PEERS  # ../shared/peers beside the checkout

pytestmark = pytest.mark.interop


PORT = 3262
IQN = "iqn.2026-11.test:tgt"
PORTAL = f"127.0.0.1:{PORT}"
URL = f"iscsi://{PORTAL}/{IQN}"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"tgtd interop required under CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def tgtd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    start, stop = PEERS / "start-tgtd.sh", PEERS / "stop-tgtd.sh"
    if not start.exists() or not stop.exists():
        _unavailable(f"{start} or {stop} missing")
    if shutil.which("tgtd") is None or shutil.which("tgtadm") is None:
        _unavailable("tgtd/tgtadm not installed (run ../shared/peers/install.sh)")
    workdir = tmp_path_factory.mktemp("tgtd")
    env = {**os.environ, "PORT": str(PORT), "WORKDIR": str(workdir), "CTRL_PORT": "23",
           "SIZE_MB": "256"}
    proc = subprocess.run([str(start)], env=env, capture_output=True, text=True, timeout=60)
    try:
        if proc.returncode != 0:
            _unavailable(f"start-tgtd.sh failed: {proc.stderr.strip()[-300:]}")
        yield proc.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run([str(stop)], env=env, capture_output=True, timeout=60)


def run(coro: Callable[[], Coroutine[Any, Any, None]]) -> None:
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(asyncio.wait_for(coro(), 180))


def test_start_script_prints_the_data_lun(tgtd: str) -> None:
    assert tgtd == f"{URL}/1"


def test_discovery(tgtd: str) -> None:
    async def go() -> None:
        assert await discover(PORTAL) == [(IQN, [f"{PORTAL},1"])]

    run(go)


def test_controller_lun0_is_reported_not_crashed_on(tgtd: str) -> None:
    async def go() -> None:
        async with await connect(f"{URL}/0") as lun:
            inq = await lun.inquiry()
            assert inq.device_type == 0x0C and not inq.is_block_device
            assert sorted(await lun.report_luns()) == [0, 1]
            with pytest.raises(InitiatorError):
                await lun.read_capacity()
            await lun.test_unit_ready()  # the session is still usable

    run(go)


def test_inquiry_and_capacity_of_the_disk(tgtd: str) -> None:
    async def go() -> None:
        async with await connect(f"{URL}/1") as lun:
            inq = await lun.inquiry()
            assert inq.device_type == 0 and inq.is_block_device
            assert inq.vendor == "IET"
            cap = await lun.read_capacity()
            assert (cap.block_size, cap.bytes) == (512, 256 << 20)

    run(go)


SIZES = [512, 1024, 4096, 8192 + 512, 65536 + 512, 262144 + 4608, (1 << 20) + 1536,
         3 * 1000 * 512, 16 << 20]


def test_write_then_read_back(tgtd: str) -> None:
    async def go() -> None:
        async with await connect(f"{URL}/1") as lun:
            lba = 7
            for size in SIZES:
                data = os.urandom(size)
                assert await lun.write(lba, data) == size
                back = bytearray(size)
                assert await lun.read_into(lba, back) == size
                assert back == data, size
                lba += size // 512 + 1
            await lun.sync()

    run(go)


def test_32_concurrent_commands(tgtd: str) -> None:
    async def go() -> None:
        async with await connect(f"{URL}/1") as lun:
            chunks = [os.urandom(512 * (1 + 7 * i)) for i in range(32)]
            lbas = [100000 + 512 * i for i in range(32)]
            await asyncio.gather(*(lun.write(a, c) for a, c in zip(lbas, chunks, strict=True)))
            bufs = [bytearray(len(c)) for c in chunks]
            await asyncio.gather(*(lun.read_into(a, b) for a, b in zip(lbas, bufs, strict=True)))
            assert bufs == chunks

    run(go)


def test_large_reads_are_placed_not_staged(tgtd: str) -> None:
    async def go() -> None:
        async with await connect(f"{URL}/1") as lun:
            data = os.urandom(8 << 20)
            await lun.write(0, data)
            buf = bytearray(len(data))
            before = lun.session.engine.counters.snapshot()
            await lun.read_into(0, buf)
            after = lun.session.engine.counters.snapshot()
            assert buf == data
            assert after["rx_placed"] - before["rx_placed"] == len(data)
            assert after["rx_staged"] - before["rx_staged"] == 0

    run(go)


def _cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "pyiscsi.cli", *args], input=stdin,
                          capture_output=True, timeout=120)


def test_cli(tgtd: str, tmp_path: Path) -> None:
    out = _cli("discover", PORTAL)
    assert out.returncode == 0 and out.stdout.decode() == f"{IQN} {PORTAL},1\n"
    out = _cli("inquiry", f"{URL}/0")
    assert out.returncode == 0 and b"device_type: 0x0c" in out.stdout
    out = _cli("capacity", f"{URL}/0")
    assert out.returncode != 0 and out.stderr.startswith(b"pyiscsi: error: ")
    assert b"Traceback" not in out.stderr and out.stderr.count(b"\n") == 1
    out = _cli("capacity", f"{URL}/1")
    assert out.stdout.decode() == f"blocks={256 << 11} block_size=512 bytes={256 << 20}\n"
    data = os.urandom(3 * 512 + 100)
    out = _cli("write", f"{URL}/1", "--lba", "9", stdin=data)
    assert out.returncode != 0 and b"--pad" in out.stderr
    out = _cli("write", f"{URL}/1", "--lba", "9", "--pad", stdin=data)
    assert out.returncode == 0, out.stderr
    out = _cli("read", f"{URL}/1", "--lba", "9", "--blocks", "4")
    assert out.stdout == data + bytes(4 * 512 - len(data))
    out = _cli("bench", f"{URL}/1", "--rw", "randread", "--bs", "4k", "--qd", "8",
               "--time", "1")
    assert out.returncode == 0, out.stderr
    assert b"MB/s=" in out.stdout and b"lat_p99.9_us=" in out.stdout
