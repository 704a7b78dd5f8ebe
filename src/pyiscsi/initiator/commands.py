"""Initiator commands of the ``pyiscsi`` CLI: discover, inquiry, capacity, read, write, bench.

Every command runs on uvloop when it is installed. Errors are one line on stderr
(``pyiscsi: error: ...``) and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import stat
import sys
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, NoReturn, TypeVar

import click

from ..proto.errors import ProtocolError
from .client import Lun, connect, discover
from .errors import InitiatorError
from .scsi import Inquiry

T = TypeVar("T")
EXIT_ERROR = 1

_SIZE = re.compile(r"^\s*(\d+)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    """``4096``, ``4k``, ``1m``, ``1MiB`` -> bytes (binary units)."""
    match = _SIZE.match(text)
    if not match:
        raise click.BadParameter(f"bad size {text!r} (e.g. 4k, 128k, 1m)")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def _fail(message: str) -> NoReturn:
    click.echo(f"pyiscsi: error: {message}", err=True)
    sys.exit(EXIT_ERROR)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop if available; turn every expected failure into one error line."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover
        pass
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(coro)
    except (InitiatorError, ProtocolError, OSError, ValueError) as exc:
        _fail(str(exc) or type(exc).__name__)
    except TimeoutError:
        _fail("timed out")


async def _block_device(lun: Lun) -> Inquiry:
    """INQUIRY first: a LUN that is no block device (e.g. tgtd's controller LUN 0, peripheral
    type 0x0c) is reported as such instead of as a failed READ CAPACITY."""
    inq = await lun.inquiry()
    if not inq.is_block_device:
        raise ValueError(f"LUN {lun.lun} is a {inq.device_type_name} (peripheral type "
                         f"0x{inq.device_type:02x}, qualifier {inq.qualifier}), "
                         "not a block device")
    return inq


@click.command("discover")
@click.argument("portal", metavar="HOST[:PORT]")
def discover_cmd(portal: str) -> None:
    """List the targets a portal offers (SendTargets=All): one `IQN HOST:PORT,TPGT` a line."""
    for name, addresses in _run(discover(portal)):
        for address in addresses or ["-"]:
            click.echo(f"{name} {address}")


@click.command("inquiry")
@click.argument("url")
def inquiry_cmd(url: str) -> None:
    """Standard INQUIRY data of a LUN (iscsi://host[:port]/iqn/lun)."""

    async def go() -> Inquiry:
        async with await connect(url) as lun:
            return await lun.inquiry()

    inq = _run(go())
    click.echo(f"vendor: {inq.vendor}")
    click.echo(f"product: {inq.product}")
    click.echo(f"revision: {inq.revision}")
    click.echo(f"device_type: 0x{inq.device_type:02x} ({inq.device_type_name})")
    click.echo(f"peripheral_qualifier: {inq.qualifier}")
    click.echo(f"removable: {'yes' if inq.removable else 'no'}")


@click.command("capacity")
@click.argument("url")
def capacity_cmd(url: str) -> None:
    """READ CAPACITY of a LUN: `blocks=N block_size=B bytes=N`."""

    async def go() -> tuple[int, int]:
        async with await connect(url) as lun:
            await _block_device(lun)
            cap = await lun.read_capacity()
            return cap.blocks, cap.block_size

    blocks, size = _run(go())
    click.echo(f"blocks={blocks} block_size={size} bytes={blocks * size}")


CHUNK = 8 << 20


@click.command("read")
@click.argument("url")
@click.option("--lba", default=0, show_default=True, type=click.IntRange(0))
@click.option("--blocks", default=None, type=click.IntRange(1),
              help="blocks to read [default: to the end of the LUN]")
def read_cmd(url: str, lba: int, blocks: int | None) -> None:
    """Read blocks to stdout (pipelined READ(16)s of 8 MiB)."""
    out = sys.stdout.buffer

    async def go() -> None:
        async with await connect(url) as lun:
            await _block_device(lun)
            cap = await lun.read_capacity()
            count = cap.blocks - lba if blocks is None else blocks
            if lba + count > cap.blocks or count <= 0:
                raise ValueError(f"blocks {lba}..{lba + count - 1} outside the LUN's "
                                 f"{cap.blocks} blocks")
            per = max(1, CHUNK // cap.block_size)
            pending: deque[tuple[asyncio.Future[int], bytearray]] = deque()
            loop = asyncio.get_running_loop()

            async def drain_one() -> None:
                task, data = pending.popleft()
                await task
                await loop.run_in_executor(None, out.write, data)

            for start in range(lba, lba + count, per):
                buf = bytearray(min(per, lba + count - start) * cap.block_size)
                pending.append((asyncio.ensure_future(lun.read_into(start, buf)), buf))
                if len(pending) >= 4:
                    await drain_one()
            while pending:
                await drain_one()
            out.flush()

    _run(go())


@click.command("write")
@click.argument("url")
@click.option("--lba", default=0, show_default=True, type=click.IntRange(0))
@click.option("--pad", is_flag=True, help="zero-fill a last partial block")
def write_cmd(url: str, lba: int, pad: bool) -> None:
    """Write stdin to the LUN at --lba (a whole number of blocks, or --pad)."""
    src = sys.stdin.buffer

    async def go() -> int:
        async with await connect(url) as lun:
            await _block_device(lun)
            cap = await lun.read_capacity()
            bs = cap.block_size
            st = os.fstat(src.fileno())
            if stat.S_ISREG(st.st_mode):
                size = st.st_size - src.tell()
                if size % bs and not pad:
                    raise ValueError(f"input is {size} bytes, not a whole number of {bs}-byte "
                                     "blocks (use --pad to zero-fill the last block)")
                if lba + -(-size // bs) > cap.blocks:
                    raise ValueError(f"input of {size} bytes does not fit at LBA {lba}")
            at, written = lba, 0
            loop = asyncio.get_running_loop()
            while True:
                buf = bytearray(CHUNK)
                n = await loop.run_in_executor(None, _read_full, src, buf)
                if n == 0:
                    break
                if n % bs:
                    if not pad:
                        raise ValueError(f"input is {written + n} bytes, not a whole number "
                                         f"of {bs}-byte blocks (use --pad); {written} bytes "
                                         "written")
                    full = -(-n // bs) * bs
                    buf[n:full] = bytes(full - n)
                    n = full
                if at + n // bs > cap.blocks:
                    raise ValueError(f"input does not fit: LUN has {cap.blocks} blocks")
                await lun.write(at, memoryview(buf)[:n])
                at += n // bs
                written += n
            await lun.sync()
            return written

    written = _run(go())
    click.echo(f"wrote {written} bytes", err=True)


def _read_full(src: Any, buf: bytearray) -> int:
    view = memoryview(buf)
    got = 0
    while got < len(buf):
        n = src.readinto(view[got:])
        if not n:
            break
        got += n
    return got


def _percentile(sorted_ns: list[int], p: float) -> float:
    if not sorted_ns:
        return 0.0
    k = min(len(sorted_ns) - 1, max(0, round(p / 100 * len(sorted_ns) + 0.5) - 1))
    return sorted_ns[k] / 1e3


@click.command("bench")
@click.argument("url")
@click.option("--rw", type=click.Choice(["read", "write", "randread", "randwrite"]),
              default="randread", show_default=True)
@click.option("--bs", "bs_text", default="4k", show_default=True, help="I/O size (4k, 1m)")
@click.option("--qd", default=32, show_default=True, type=click.IntRange(1, 1024))
@click.option("--time", "seconds", default=10.0, show_default=True, type=click.FloatRange(0.1))
@click.option("--ramp", default=0.0, show_default=True, type=click.FloatRange(0),
              help="seconds run before measuring")
def bench_cmd(url: str, rw: str, bs_text: str, qd: int, seconds: float, ramp: float) -> None:
    """Measure throughput and latency: MB/s, IOPS, latency p50/p99/p99.9."""
    bs = parse_size(bs_text)
    tty = sys.stderr.isatty()

    async def go() -> tuple[int, float, list[int]]:
        async with await connect(url) as lun:
            await _block_device(lun)
            cap = await lun.read_capacity()
            if bs % cap.block_size or bs > cap.bytes:
                raise ValueError(f"--bs {bs} must be a multiple of the block size "
                                 f"{cap.block_size} and fit the LUN")
            per = bs // cap.block_size
            slots = cap.blocks // per
            write = rw.endswith("write")
            rand = rw.startswith("rand")
            lats: list[int] = []
            done = 0
            cursor = 0
            measuring = ramp == 0
            clock = time.perf_counter_ns
            t_start = clock()
            t_measure = t_start + int(ramp * 1e9)
            t_end = t_measure + int(seconds * 1e9)

            async def worker(seed: int) -> None:
                nonlocal done, cursor
                rnd = random.Random(seed)
                buf = bytearray(os.urandom(bs) if write else bs)
                op = lun.write if write else lun.read_into
                while True:
                    if rand:
                        slot = rnd.randrange(slots)
                    else:
                        slot, cursor = cursor, (cursor + 1) % slots
                    t0 = clock()
                    if t0 >= t_end:
                        return
                    await op(slot * per, buf)
                    t1 = clock()
                    if t0 >= t_measure:
                        lats.append(t1 - t0)
                        done += 1

            async def progress() -> None:
                nonlocal measuring
                last_n, last_t = 0, clock()
                while True:
                    await asyncio.sleep(1.0)
                    now = clock()
                    n = done
                    rate = (n - last_n) / ((now - last_t) / 1e9)
                    last_n, last_t = n, now
                    phase = "ramp" if now < t_measure else f"{(now - t_measure) / 1e9:5.1f}s"
                    line = (f"{rw} bs={bs_text} qd={qd} [{phase}] {rate * bs / 1e6:9.1f} MB/s "
                            f"{rate:9.0f} IOPS")
                    click.echo(f"\r{line}" if tty else line, err=True, nl=not tty)

            ticker = asyncio.ensure_future(progress())
            try:
                await asyncio.gather(*(worker(i) for i in range(qd)))
            finally:
                ticker.cancel()
            elapsed = (min(clock(), max(t_end, clock())) - t_measure) / 1e9
            if tty:
                click.echo("", err=True)
            return done, elapsed, lats

    done, elapsed, lats = _run(go())
    lats.sort()
    iops = done / elapsed if elapsed > 0 else 0.0
    mean = sum(lats) / len(lats) / 1e3 if lats else 0.0
    click.echo(f"rw={rw} bs={bs} qd={qd} time={elapsed:.2f}s ios={done}")
    click.echo(f"MB/s={iops * bs / 1e6:.1f} IOPS={iops:.0f} lat_mean_us={mean:.1f} "
               f"lat_p50_us={_percentile(lats, 50):.1f} lat_p99_us={_percentile(lats, 99):.1f} "
               f"lat_p99.9_us={_percentile(lats, 99.9):.1f}")


COMMANDS = [discover_cmd, inquiry_cmd, capacity_cmd, read_cmd, write_cmd, bench_cmd]
"""Registered on the ``pyiscsi`` group by :mod:`pyiscsi.cli`."""
