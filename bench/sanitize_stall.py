"""How long a SANITIZE on one LU stalls I/O to another LU of the same target.

Starts ``pyiscsi serve --lun ram:SIZE0 --lun ram:SIZE1 --sanitize-pace PACE`` (a fresh
server per pace), reads 4 KiB at random LBAs of LUN 1 at queue depth 1 with pyiscsi's own
initiator, first alone for a baseline, then while a SANITIZE OVERWRITE (IMMED=0, so its
GOOD marks the end of the erase) runs on LUN 0 from a second session, and prints the read
latency of both phases (p50 / p99 / p99.9 / max) and the SANITIZE duration.

    python bench/sanitize_stall.py                      # 2 GiB LU 0, 64 MiB LU 1, paces 1G and 0
    python bench/sanitize_stall.py --pace 0 --pace 256M --pattern zero --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

from pyiscsi.backstore.spec import parse_size  # noqa: E402
from pyiscsi.initiator.client import Lun, connect  # noqa: E402

BS = 512
READ = 4096


@dataclass
class Phase:
    latencies: list[float]
    seconds: float

    def summary(self) -> str:
        lat = sorted(self.latencies)
        if not lat:
            return "no reads"

        def q(p: float) -> float:
            return lat[min(len(lat) - 1, int(p * len(lat)))] * 1e3

        return (f"{len(lat):6d} reads {len(lat) / self.seconds:7.0f}/s  p50 {q(0.5):6.3f} ms  "
                f"p99 {q(0.99):6.3f} ms  p99.9 {q(0.999):7.3f} ms  max {lat[-1] * 1e3:7.3f} ms")


def start_server(pace: str, sizes: tuple[str, str]) -> tuple[subprocess.Popen[str], list[str]]:
    cmd = [sys.executable, "-m", "pyiscsi.cli", "serve", "--portal", "127.0.0.1:0",
           "--lun", f"ram:{sizes[0]}", "--lun", f"ram:{sizes[1]}", "--sanitize-pace", pace]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True,
                            env={"PYTHONPATH": str(SRC), **_env()})
    assert proc.stdout is not None
    urls: list[str] = []
    deadline = time.monotonic() + 20
    while len(urls) < 2 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        m = re.match(r"serving (\S+)", line)
        if m:
            urls.append(m.group(1))
    if len(urls) < 2:
        proc.kill()
        raise SystemExit("pyiscsi serve did not start")
    return proc, urls


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


async def read_loop(lun: Lun, blocks: int, stop: asyncio.Event, out: list[float]) -> None:
    rng = random.Random(1)
    buf = bytearray(READ)
    per = READ // BS
    while not stop.is_set():
        lba = rng.randrange(0, blocks - per, per)
        t = time.perf_counter()
        await lun.read_into(lba, buf)
        out.append(time.perf_counter() - t)


async def measure(urls: list[str], baseline: float, pattern: bytes) -> tuple[Phase, Phase,
                                                                             float]:
    lun0 = await connect(urls[0])
    lun1 = await connect(urls[1])
    try:
        blocks = (await lun1.read_capacity()).blocks
        # warm: one pass of reads so the first-touch costs are not in the baseline
        warm: list[float] = []
        stop = asyncio.Event()
        task = asyncio.create_task(read_loop(lun1, blocks, stop, warm))
        await asyncio.sleep(1.0)
        stop.set()
        await task

        before: list[float] = []
        stop = asyncio.Event()
        task = asyncio.create_task(read_loop(lun1, blocks, stop, before))
        await asyncio.sleep(baseline)
        stop.set()
        await task

        during: list[float] = []
        stop = asyncio.Event()
        task = asyncio.create_task(read_loop(lun1, blocks, stop, during))
        await asyncio.sleep(0.2)
        params = b"\x01\x00" + len(pattern).to_bytes(2, "big") + pattern
        cdb = bytes((0x48, 0x01, 0, 0, 0, 0, 0)) + len(params).to_bytes(2, "big") + b"\x00"
        t0 = time.perf_counter()
        await lun0.execute(cdb, data_out=params)  # IMMED=0: GOOD once the erase ended
        erase = time.perf_counter() - t0
        stop.set()
        await task
        return Phase(before, baseline), Phase(during, erase + 0.2), erase
    finally:
        for lun in (lun0, lun1):
            await lun.session.close(timeout=2.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size0", default="2GiB", help="LUN 0, sanitized [2GiB]")
    ap.add_argument("--size1", default="64MiB", help="LUN 1, read [64MiB]")
    ap.add_argument("--pace", action="append", help="--sanitize-pace values [1G and 0]")
    ap.add_argument("--pattern", choices=["aa", "zero"], default="aa",
                    help="aa: every block written; zero: deallocated (thin RAM LU) [aa]")
    ap.add_argument("--baseline", type=float, default=5.0, help="seconds of baseline [5]")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    paces = args.pace or ["1G", "0"]
    pattern = (b"\xaa" if args.pattern == "aa" else b"\x00") * BS
    print(f"LUN 0 ram:{args.size0} SANITIZE OVERWRITE pattern {args.pattern}; "
          f"LUN 1 ram:{args.size1} 4 KiB random reads QD1 (pyiscsi initiator)")
    for pace in paces:
        for n in range(args.repeat):
            proc, urls = start_server(pace, (args.size0, args.size1))
            try:
                before, during, erase = asyncio.run(measure(urls, args.baseline, pattern))
            finally:
                proc.terminate()
                proc.wait(timeout=30)
            size = parse_size(args.size0)
            label = f"pace {pace}" + (f" run {n + 1}" if args.repeat > 1 else "")
            print(f"{label}: SANITIZE {erase:.2f} s ({size / erase / 2**20:.0f} MiB/s)")
            print(f"  without sanitize: {before.summary()}")
            print(f"  during sanitize:  {during.summary()}")
            if during.latencies and before.latencies:
                worst = max(during.latencies) / max(before.latencies)
                typical = statistics.median(during.latencies) / statistics.median(before.latencies)
                print(f"  max latency ratio {worst:.1f}x, median ratio {typical:.2f}x")


if __name__ == "__main__":
    main()
