"""An interrupted SANITIZE on a file LUN (SBC-4 §4.11.3): ``pyiscsi serve`` dies mid-erase
(SIGKILL) or is stopped (SIGTERM); restarted on the same file, the LU is in sanitize failure
mode (MEDIUM ERROR / SANITIZE COMMAND FAILED) until EXIT FAILURE MODE (the command had
AUSE=1) or a new SANITIZE. Driven by pyiscsi's own initiator."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

from pyiscsi.initiator.client import Lun, connect
from pyiscsi.initiator.errors import ScsiCommandError

from .conftest import Server, start_server, stop_server

SIZE = 16 << 20
BS = 512
PACE = 1 << 20  # 1 MiB/s: the erase of 16 MiB lasts 16 s, the test ends it after ~1 MiB
PATTERN = b"\xa5" * BS
OVERWRITE_IMMED_AUSE = bytes.fromhex("48 a1 0000000000 0204 00".replace(" ", ""))
BLOCK_ERASE = bytes.fromhex("48 02 0000000000 0000 00".replace(" ", ""))
EXIT_FAILURE_MODE = bytes.fromhex("48 1f 0000000000 0000 00".replace(" ", ""))
REQUEST_SENSE = bytes.fromhex("03 00 00 00 12 00".replace(" ", ""))
LAST = SIZE // BS - 1


def serve(tmp_path: Path, image: Path, pace: int) -> Server:
    return start_server(tmp_path, "--portal", "127.0.0.1:0", "--lun",
                        f"file:{image},size={SIZE}", "--sanitize-pace", str(pace))


async def progress(lun: Lun) -> int | None:
    """PROGRESS INDICATION of a running sanitize (REQUEST SENSE), None when none runs."""
    buf = bytearray(18)
    await lun.execute(REQUEST_SENSE, data_in=buf)
    if buf[2] & 0x0F != 0x02 or buf[12:14] != b"\x04\x1b":
        return None
    assert buf[15] & 0x80  # SKSV: the progress indication is valid
    return int.from_bytes(buf[16:18], "big")


async def start_erase(url: str) -> None:
    """Fill the first and last blocks, SANITIZE OVERWRITE IMMED=1 AUSE=1, wait until the
    erase is past its first 1 MiB chunk (the real progress) but far from the end."""
    lun = await connect(url)
    try:
        await lun.write(0, b"z" * BS)
        await lun.write(LAST, b"z" * BS)
        await lun.sync()
        await lun.execute(OVERWRITE_IMMED_AUSE,
                          data_out=b"\x01\x00" + BS.to_bytes(2, "big") + PATTERN)
        with pytest.raises(ScsiCommandError) as info:
            await lun.test_unit_ready()
        assert (info.value.sense_key, info.value.asc, info.value.ascq) == (0x2, 0x04, 0x1B)
        async with asyncio.timeout(10):
            while True:
                done = await progress(lun)
                assert done is not None, "the erase ended before it could be interrupted"
                if done >= 0x10000 // 16:  # >= 1 MiB of 16 erased
                    break
                await asyncio.sleep(0.05)
        assert done < 0x10000 // 2
    finally:
        await lun.session.close(timeout=1.0)


async def check_failure_mode(url: str) -> None:
    """Medium access: SANITIZE COMMAND FAILED; INQUIRY works; EXIT FAILURE MODE (AUSE was 1)
    ends it, and the medium shows the interrupted erase: pattern first, old data last."""
    lun = await connect(url)
    try:
        await lun.inquiry()
        for command in (lun.test_unit_ready(), lun.read(0, 1)):
            with pytest.raises(ScsiCommandError) as info:
                await command
            assert (info.value.sense_key, info.value.asc, info.value.ascq) == (0x3, 0x31, 0x03)
        await lun.execute(EXIT_FAILURE_MODE)
        await lun.test_unit_ready()
        assert await lun.read(0, 1) == PATTERN
        assert await lun.read(LAST, 1) == b"z" * BS
    finally:
        await lun.session.close(timeout=1.0)


def marker(image: Path) -> Path:
    return image.with_name(image.name + ".sanitize.json")


def test_sigkill_mid_sanitize_leaves_the_lu_in_failure_mode(tmp_path: Path) -> None:
    image = tmp_path / "lun.img"
    server = serve(tmp_path, image, PACE)
    try:
        asyncio.run(start_erase(server.url))
        assert marker(image).exists()
    finally:
        server.process.kill()
    assert server.process.wait(timeout=10) == -signal.SIGKILL
    server = serve(tmp_path, image, 0)
    try:
        asyncio.run(check_failure_mode(server.url))
        assert not marker(image).exists()
    finally:
        assert stop_server(server) == 0


def test_sigterm_mid_sanitize_stops_promptly_and_restarts_in_failure_mode(tmp_path: Path
                                                                         ) -> None:
    image = tmp_path / "lun.img"
    server = serve(tmp_path, image, PACE)
    asyncio.run(start_erase(server.url))
    started = time.monotonic()
    assert stop_server(server) == 0
    assert time.monotonic() - started < 5  # not the 15 s the rest of the erase would take
    assert marker(image).exists()
    server = serve(tmp_path, image, 0)
    try:
        asyncio.run(check_failure_mode(server.url))
    finally:
        assert stop_server(server) == 0


def test_a_completed_sanitize_leaves_no_marker(tmp_path: Path) -> None:
    image = tmp_path / "lun.img"
    server = serve(tmp_path, image, 0)

    async def erase() -> None:
        lun = await connect(server.url)
        try:
            await lun.write(0, b"z" * BS)
            await lun.execute(BLOCK_ERASE)  # IMMED=0: GOOD once erased
            assert await lun.read(0, 1) == bytes(BS)
        finally:
            await lun.session.close(timeout=1.0)

    try:
        asyncio.run(erase())
        assert not marker(image).exists()
    finally:
        assert stop_server(server) == 0
