"""Crash recovery: SIGKILL ``pyiscsi serve`` under a write load, restart it on the same file.

Every write acknowledged GOOD before the kill must read back intact from the restarted target
(a write in flight at the kill may hold old or new data, nothing else); the restarted target
must open the store, serve fresh writes and reads, and stop cleanly with ``internal_errors`` 0.
Three kill/restart cycles run on the one file, each checking everything acknowledged so far.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
from pathlib import Path

from pyiscsi.initiator.client import Lun, connect
from pyiscsi.initiator.errors import ConnectionClosed

from .conftest import Server, start_server, stop_server

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.soak import Pattern, Region  # noqa: E402

WRITERS = 8
LUN_SIZE = 64 << 20
CYCLES = 3
HANG = 5.0  # seconds: any single step longer than this is a hang


async def open_lun(url: str) -> Lun:
    async with asyncio.timeout(HANG):
        lun = await connect(url, timeout=None)
        await lun.read_capacity()
        return lun


async def write_until_dead(url: str, region: Region, seed: int) -> int:
    """Write random ranges of ``region`` until the connection dies; acknowledged writes."""
    rng = random.Random(seed)
    lun = await open_lun(url)
    acked = 0
    try:
        while True:
            # Mostly immediate data; one write in ten up to 1 MiB (R2T, Data-Out bursts).
            lba, count, generation, data = region.next_write(
                rng, 2048 if rng.random() < 0.1 else 64)
            try:
                async with asyncio.timeout(HANG):
                    await lun.write(lba, data)
            except (ConnectionClosed, OSError):
                region.maybe_written(lba, count, generation)
                return acked
            region.acknowledge(lba, count, generation)
            acked += 1
    finally:
        with contextlib.suppress(Exception):
            await lun.session.close(timeout=1.0)


async def load_then_kill(server: Server, regions: list[Region], cycle: int) -> int:
    """Writers on every region; SIGKILL the target after 1.5 s; acknowledged writes."""
    writers = [asyncio.create_task(write_until_dead(server.url, region, cycle * 100 + n))
               for n, region in enumerate(regions)]
    await asyncio.sleep(1.5)
    assert not any(w.done() for w in writers), [w.exception() for w in writers if w.done()]
    server.process.kill()
    async with asyncio.timeout(HANG * 2):
        counts = await asyncio.gather(*writers)
    assert server.process.wait(timeout=HANG) == -9
    return sum(counts)


async def verify(url: str, regions: list[Region]) -> list[str]:
    """Read every region back in full; the mismatches."""
    lun = await open_lun(url)
    try:
        cap = lun.capacity
        assert cap is not None and cap.blocks * cap.block_size == LUN_SIZE
        mismatches: list[str] = []
        for region in regions:
            async with asyncio.timeout(HANG):
                data = await lun.read(region.first_lba, region.blocks)
            mismatches += [str(m) for m in region.verify(region.first_lba, data)]
        return mismatches
    finally:
        async with asyncio.timeout(HANG):
            await lun.close()


async def fresh_write_and_read(url: str, region: Region) -> None:
    """A new write on the restarted target reads back (and is checked in later cycles)."""
    lun = await open_lun(url)
    try:
        async with asyncio.timeout(HANG):
            lba, count, generation, data = region.next_write(random.Random(region.session), 16)
            await lun.write(lba, data)
            region.acknowledge(lba, count, generation)
            assert await lun.read(lba, count) == data
    finally:
        async with asyncio.timeout(HANG):
            await lun.close()


def test_sigkill_under_write_load_keeps_every_acknowledged_write(tmp_path: Path) -> None:
    image = tmp_path / "lun.img"
    pattern = Pattern(512, seed=11)
    blocks = LUN_SIZE // 512 // WRITERS
    regions = [Region(n, n * blocks, blocks, pattern) for n in range(WRITERS)]

    def serve(run: str, lun: str) -> Server:
        directory = tmp_path / run
        directory.mkdir()
        return start_server(directory, "--portal", "127.0.0.1:0", "--lun", lun)

    server = serve("initial", f"file:{image},size={LUN_SIZE}")
    status: int | None = None
    try:
        for cycle in range(CYCLES):
            acked = asyncio.run(load_then_kill(server, regions, cycle))
            assert acked > WRITERS, f"cycle {cycle}: {acked} writes acknowledged before the kill"
            # Restart on the existing file: without size=, then with the same size.
            spec = f"file:{image}" if cycle % 2 == 0 else f"file:{image},size={LUN_SIZE}"
            server = serve(f"restart{cycle}", spec)
            mismatches = asyncio.run(verify(server.url, regions))
            assert mismatches == [], f"cycle {cycle}: {mismatches[:10]}"
            asyncio.run(fresh_write_and_read(server.url, regions[cycle]))
        assert asyncio.run(verify(server.url, regions)) == []
    finally:
        if server.process.poll() is None:
            status = stop_server(server)
    assert status == 0
    assert server.stats()["internal_errors"] == 0

