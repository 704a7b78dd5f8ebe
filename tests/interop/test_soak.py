"""The data-safety soak (bench/soak.py) against a real ``pyiscsi serve`` on a file LUN.

64 sessions of verified writes and reads while random connections are aborted server side
with ``ss -K``: every write acknowledged GOOD reads back intact, a write in flight at a kill
holds old or new data, the target never crashes (process alive, ``internal_errors`` 0, no
command or login over 5 s) and its anonymous memory stays bounded.

``SOAK_SECONDS`` (default 15; 60 for the full run by hand) and ``SOAK_SESSIONS`` (default 64)
set the length and width.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import Server, require, start_server, stop_server

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.soak import HEADER, Pattern, Region, Soak, SoakConfig  # noqa: E402

SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "15"))
SOAK_SESSIONS = int(os.environ.get("SOAK_SESSIONS", "64"))
LUN_SIZE = "256MiB"


def require_socket_kill() -> None:
    """``ss -K`` needs CAP_NET_ADMIN: root, or passwordless sudo (fails in CI, else skips)."""
    require("ss")
    if os.geteuid() == 0:
        return
    sudo = subprocess.run(["sudo", "-n", "true"], capture_output=True, timeout=10)
    if sudo.returncode != 0:
        message = "ss -K needs root or passwordless sudo"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


# -- the checker itself: it must be able to fail ---------------------------------------------


def test_region_verify_accepts_acked_and_in_flight_data_only() -> None:
    pattern = Pattern(512, seed=7)
    region = Region(session=3, first_lba=100, blocks=8, pattern=pattern)
    region.acknowledge(100, 2, generation=1)
    region.maybe_written(101, 2, generation=2)  # in flight at a kill: LBA 101-102
    on_disk = bytearray(pattern.blocks(3, 100, 1, 1) + pattern.blocks(3, 101, 1, 2)
                        + bytes(512) + bytes(5 * 512))
    assert region.verify(100, on_disk) == []  # old at 102 (zeros), new at 101
    on_disk[512:1024] = pattern.block(3, 101, 1)
    assert region.verify(100, on_disk) == []  # old at 101 is fine too

    flipped = bytearray(on_disk)
    flipped[HEADER.size + 10] ^= 0x01
    assert [m.lba for m in region.verify(100, flipped)] == [100]
    misplaced = bytearray(on_disk)
    misplaced[0:512] = pattern.block(3, 101, 1)  # a right block at the wrong LBA
    assert [m.lba for m in region.verify(100, misplaced)] == [100]
    foreign = bytearray(on_disk)
    foreign[3 * 512:4 * 512] = pattern.block(4, 103, 1)  # another session's data
    assert [m.lba for m in region.verify(100, foreign)] == [103]

    region.acknowledge(101, 1, generation=3)  # a later GOOD write ends the uncertainty
    assert [m.lba for m in region.verify(100, on_disk)] == [101]
    stale = bytearray(on_disk)
    stale[512:1024] = pattern.block(3, 101, 2)
    assert [m.lba for m in region.verify(100, stale)] == [101]


# -- the soak ----------------------------------------------------------------------------------


def corrupt_and_verify(soak: Soak, image: Path) -> list[int]:
    """Corrupt two acknowledged blocks of session 0 in the file; the LBAs the soak flags."""
    region = soak.regions[0]
    bs = region.pattern.block_size
    written = region.written_lbas()
    assert len(written) >= 3, "session 0 wrote too little"
    flipped, misplaced = written[0], written[-1]
    with open(image, "r+b") as f:  # the target maps the file MAP_SHARED: same page cache
        block = bytearray(os.pread(f.fileno(), bs, flipped * bs))
        block[bs // 2] ^= 0xFF
        os.pwrite(f.fileno(), bytes(block), flipped * bs)
        os.pwrite(f.fileno(), os.pread(f.fileno(), bs, written[1] * bs), misplaced * bs)
    mismatches = asyncio.run(asyncio.wait_for(soak.verify_all([0]), 60))
    return sorted(m.lba for m in mismatches)


def test_soak_kills_connections_and_loses_no_acknowledged_write(tmp_path: Path) -> None:
    require_socket_kill()
    image = tmp_path / "soak.img"
    server: Server = start_server(tmp_path, "--portal", "127.0.0.1:0",
                                  "--lun", f"file:{image},size={LUN_SIZE}")
    try:
        soak = Soak(SoakConfig(url=server.url, target_pid=server.process.pid,
                               stats_path=server.stats_path, sessions=SOAK_SESSIONS,
                               seconds=SOAK_SECONDS))
        result = asyncio.run(asyncio.wait_for(soak.run(), SOAK_SECONDS + 120))
        print(f"\n{result.figures()}")
        assert result.failures == []
        assert result.target_alive and server.process.poll() is None
        assert result.internal_errors == 0
        assert result.rss_anon_max <= result.rss_anon_bound
        assert result.kills >= 3 and result.reconnects >= 3, "the killer did not kill"
        assert result.writes_acked > SOAK_SESSIONS
        assert result.bytes_verified >= soak.result.region_blocks * result.block_size \
            * SOAK_SESSIONS
        # The same checker flags a corrupted block and a misplaced one.
        first, last = soak.regions[0].written_lbas()[0], soak.regions[0].written_lbas()[-1]
        assert corrupt_and_verify(soak, image) == sorted({first, last})
    finally:
        status = stop_server(server)
    assert status == 0
    assert server.stats()["internal_errors"] == 0
