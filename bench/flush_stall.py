"""The longest stall a big SYNCHRONIZE CACHE causes on another LU of the same target.

Starts ``pyiscsi serve`` (this tree, or PYISCSI_SRC=path/to/other/src for another build)
with a 1 GiB file LUN 0 and a RAM LUN 1, dirties LUN 0's page cache with 1 GiB of writes,
then sends SYNCHRONIZE CACHE to LUN 0 while a second session reads 4 KiB from LUN 1 back to
back (queue depth 1). Prints the flush's duration and LUN 1's read latencies during it
(max, p99) against the same reads with nothing else going on.

    .venv/bin/python bench/flush_stall.py [--size-mib 1024] [--dir /var/tmp]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from pyiscsi.initiator.client import connect  # noqa: E402

TARGET = "iqn.2026-11.org.pyiscsi:disk"


def start_server(src: Path, image: Path, size_mib: int) -> tuple[subprocess.Popen[str], int]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pyiscsi.cli", "serve", "--portal", "127.0.0.1:0",
         "--lun", f"file:{image},size={size_mib}MiB", "--lun", "ram:64MiB"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        m = re.search(r"iscsi://127\.0\.0\.1:(\d+)/", line)
        if m:
            return proc, int(m.group(1))
    raise RuntimeError("the server did not start")


async def reads_while(port: int, busy: asyncio.Event, done: asyncio.Event) -> list[float]:
    """Latencies (s) of back-to-back 4 KiB reads on LUN 1 while ``busy`` is set."""
    out: list[float] = []
    async with await connect(f"iscsi://127.0.0.1:{port}/{TARGET}/1") as lun:
        await busy.wait()
        while not done.is_set():
            t = time.perf_counter()
            await lun.read(0, 8)
            out.append(time.perf_counter() - t)
    return out


async def baseline(port: int, seconds: float) -> list[float]:
    out: list[float] = []
    async with await connect(f"iscsi://127.0.0.1:{port}/{TARGET}/1") as lun:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            t = time.perf_counter()
            await lun.read(0, 8)
            out.append(time.perf_counter() - t)
    return out


async def measure(port: int, size_mib: int) -> None:
    quiet = await baseline(port, 2.0)
    async with await connect(f"iscsi://127.0.0.1:{port}/{TARGET}/0") as lun0:
        chunk = os.urandom(1 << 20)
        for at in range(0, size_mib):  # dirty the page cache: 1 MiB writes, no FUA
            await lun0.write(at * 2048, chunk)
        busy, done = asyncio.Event(), asyncio.Event()
        reader = asyncio.create_task(reads_while(port, busy, done))
        await asyncio.sleep(0.5)
        busy.set()
        t = time.perf_counter()
        await lun0.sync()  # SYNCHRONIZE CACHE (10) of the whole LU
        flush = time.perf_counter() - t
        done.set()
        during = await reader
    def stats(xs: list[float]) -> str:
        xs = sorted(xs)
        p99 = xs[int(len(xs) * 0.99) - 1] if len(xs) > 1 else xs[-1]
        return (f"n={len(xs)} median={statistics.median(xs) * 1e3:.3f} ms "
                f"p99={p99 * 1e3:.3f} ms max={xs[-1] * 1e3:.1f} ms")
    print(f"SYNCHRONIZE CACHE of {size_mib} MiB dirty: {flush * 1e3:.0f} ms")
    print(f"LUN 1 reads, quiet:        {stats(quiet)}")
    print(f"LUN 1 reads, during flush: {stats(during)}")
    print(f"longest stall on the other LU: {max(during) * 1e3:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--dir", default=os.environ.get("TMPDIR", "/var/tmp"))
    args = parser.parse_args()
    src = Path(os.environ.get("PYISCSI_SRC", REPO / "src"))
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        proc, port = start_server(src, Path(tmp) / "lun0.img", args.size_mib)
        try:
            asyncio.run(measure(port, args.size_mib))
        finally:
            proc.terminate()
            proc.wait(30)


if __name__ == "__main__":
    main()
