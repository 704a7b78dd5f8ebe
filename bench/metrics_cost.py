"""What the engine's own I/O figures (per-LU and per-session counters and latency histogram,
:mod:`pyiscsi.scsi.iostats`) cost per command.

Two measurements:
  1. the engine's per-command line alone (``_respond``: find the connection's figures for the
     LUN, ``IoStats.done``: clock read, increments, histogram slot), timed on a real
     connection and task, in ns per command (plus the clock read ``Task`` takes at admission);
  2. bench/engine_cost.py's 4 KiB READ/WRITE loop with ``IoStats.done`` on and off (patched
     to a no-op), interleaved, ``ROUNDS`` rounds of best-of-3, and the median difference.

    PYTHONPATH=src python bench/metrics_cost.py
"""

from __future__ import annotations

import os
import statistics
import sys
import timeit
from pathlib import Path
from time import perf_counter_ns

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import engine_cost
from tests.pair import Initiator, make_catalog

from pyiscsi.proto import pdu as P
from pyiscsi.scsi.iostats import IoStats
from pyiscsi.target.connection import TargetConnection
from pyiscsi.target.task import Task

ROUNDS = int(os.environ.get("ROUNDS", "3"))
N = int(os.environ.get("N", "20000"))


def accounting_ns() -> tuple[float, float]:
    """ns per accounting line (a 4 KiB read) and per ``perf_counter_ns()``."""
    conn = TargetConnection(make_catalog(1 << 20), "bench")
    Initiator(conn).login()
    cmd = P.ScsiCommand(itt=1, cdb=b"\x28" + bytes(15), expected_length=4096, read=True)
    task = Task(cmd, 0)
    data = memoryview(bytes(4096))
    n = 200_000

    def line() -> None:  # what _respond runs
        (conn.io.get(task.lun) or conn._new_io(task.lun)).done(task, data, True)

    per_call = min(timeit.repeat(line, number=n, repeat=5)) / n
    empty = min(timeit.repeat(lambda: None, number=n, repeat=5)) / n
    clock = min(timeit.repeat(perf_counter_ns, number=n, repeat=5)) / n
    return (per_call - empty) * 1e9, clock * 1e9


def main() -> None:
    real = IoStats.done
    call, clock = accounting_ns()
    print(f"accounting per command: {call:.0f} ns; perf_counter_ns (Task.t0): {clock:.0f} ns")
    results: dict[tuple[str, bool], list[float]] = {}
    for kind in ("read", "write"):
        engine_cost.run(kind, 2000)
        for _ in range(ROUNDS):
            for on in (False, True):
                IoStats.done = real if on else (  # type: ignore[method-assign]
                    lambda self, task, data, good: None)
                best = min(engine_cost.run(kind, N) for _ in range(3))
                results.setdefault((kind, on), []).append(best)
    IoStats.done = real  # type: ignore[method-assign]
    for kind in ("read", "write"):
        off = results[(kind, False)]
        on = results[(kind, True)]
        print(f"{kind:5s} 4KiB: off {' '.join(f'{x:.2f}' for x in off)} | "
              f"on {' '.join(f'{x:.2f}' for x in on)} us/command; median delta "
              f"{statistics.median(on) - statistics.median(off):+.2f} us")


if __name__ == "__main__":
    main()
