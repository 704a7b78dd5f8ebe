"""Per logical unit and per session I/O figures, kept by the engine itself.

Cheap by design: answering a command adds to a few integers and one slot of a fixed list
(a log2 latency histogram). Nothing here knows about a metrics library; exporters
(:mod:`pyiscsi.metrics`, :mod:`pyiscsi.target.status`) read these objects when asked.
"""

from __future__ import annotations

from time import perf_counter_ns
from typing import Protocol

LATENCY_UNIT_NS = 1024
"""Latencies are bucketed in units of 1024 ns (a shift, no division)."""
LATENCY_BUCKETS = 26
"""Bucket 0 counts latencies below 1 unit, bucket i (0 < i < 25) those below ``unit << i``
(1.024 us .. 17 s), the last one everything longer."""


def bucket_bounds_seconds() -> list[float]:
    """Upper bound of each bucket but the last (which is unbounded), in seconds."""
    return [(LATENCY_UNIT_NS << i) / 1e9 for i in range(LATENCY_BUCKETS - 1)]


class _Command(Protocol):
    @property
    def read(self) -> bool: ...
    @property
    def write(self) -> bool: ...


class Answered(Protocol):
    """What :meth:`IoStats.done` reads of a task (``pyiscsi.target.task.Task``)."""

    @property
    def cmd(self) -> _Command: ...
    @property
    def t0(self) -> int: ...
    @property
    def edtl(self) -> int: ...
    @property
    def received(self) -> int: ...


class IoStats:
    """Commands, bytes and latency of the SCSI commands answered for one LU or session."""

    __slots__ = ("errors", "latency", "latency_ns", "other_commands", "read_bytes",
                 "read_commands", "write_bytes", "write_commands")

    def __init__(self) -> None:
        self.read_commands = 0
        self.read_bytes = 0
        """Data-In payload bytes sent."""
        self.write_commands = 0
        self.write_bytes = 0
        """Data-Out (immediate, unsolicited, solicited) payload bytes that landed."""
        self.other_commands = 0
        """Commands transferring no data (TEST UNIT READY, SYNCHRONIZE CACHE, ...)."""
        self.errors = 0
        """Commands answered with a status other than GOOD, or with sense."""
        self.latency_ns = 0
        """Sum of the latencies (command header in to status out), nanoseconds."""
        self.latency = [0] * LATENCY_BUCKETS
        """Log2 latency histogram (:data:`LATENCY_BUCKETS`), not cumulative."""

    def done(self, task: Answered, data: bytes | bytearray | memoryview | None,
             good: bool) -> None:
        """``task`` is answered now, with ``data`` (reads: Data-In up to its EDTL; writes:
        what landed of its Data-Out). The engine's per-command call: kept to increments."""
        cmd = task.cmd
        ns = perf_counter_ns() - task.t0
        if cmd.read:
            self.read_commands += 1
            if data is not None:
                n = len(data)
                edtl = task.edtl
                self.read_bytes += n if n < edtl else edtl
        elif cmd.write:
            self.write_commands += 1
            self.write_bytes += task.received
        else:
            self.other_commands += 1
        if not good:
            self.errors += 1
        self.latency_ns += ns
        b = (ns >> 10).bit_length()
        self.latency[b if b < LATENCY_BUCKETS else LATENCY_BUCKETS - 1] += 1

    def record(self, read: bool, write: bool, nbytes: int, good: bool, ns: int) -> None:
        """One command answered after ``ns`` nanoseconds, having moved ``nbytes``."""
        if read:
            self.read_commands += 1
            self.read_bytes += nbytes
        elif write:
            self.write_commands += 1
            self.write_bytes += nbytes
        else:
            self.other_commands += 1
        if not good:
            self.errors += 1
        self.latency_ns += ns
        b = (ns >> 10).bit_length()
        self.latency[b if b < LATENCY_BUCKETS else LATENCY_BUCKETS - 1] += 1

    def add(self, other: IoStats) -> None:
        """Add ``other``'s figures to these (a closing connection's to its LU's)."""
        self.read_commands += other.read_commands
        self.read_bytes += other.read_bytes
        self.write_commands += other.write_commands
        self.write_bytes += other.write_bytes
        self.other_commands += other.other_commands
        self.errors += other.errors
        self.latency_ns += other.latency_ns
        self.latency = [a + b for a, b in zip(self.latency, other.latency, strict=True)]

    @property
    def commands(self) -> int:
        return self.read_commands + self.write_commands + self.other_commands

    def snapshot(self) -> dict[str, int | list[int]]:
        """The figures as a JSON-able dict (the histogram as a plain list)."""
        return {"read_commands": self.read_commands, "read_bytes": self.read_bytes,
                "write_commands": self.write_commands, "write_bytes": self.write_bytes,
                "other_commands": self.other_commands, "errors": self.errors,
                "latency_ns": self.latency_ns, "latency_buckets": list(self.latency)}
