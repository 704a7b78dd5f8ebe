"""One SCSI task in flight on the target: the bookkeeping of Fig 8 (US 7,512,663) for one
command (RFC 7143 §11.3, §11.7, §11.8)."""

from __future__ import annotations

from collections.abc import Callable
from time import perf_counter_ns
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..proto import pdu as P
    from ..scsi.task import DataOutPlan, ScsiResult


class Task:
    """A SCSI task in flight: Fig 8's bookkeeping for one command."""

    __slots__ = (
        "aborted",
        "ahs",
        "buffer",
        "cmd",
        "data_done",
        "datasn",
        "edtl",
        "fenced",
        "held_bytes",
        "immediate",
        "in_task_set",
        "itt",
        "limit",
        "lun",
        "next_r2t",
        "outstanding",
        "plan",
        "r2tsn",
        "received",
        "result",
        "started",
        "store_busy",
        "t0",
        "turned",
        "unsol_buffer",
        "unsol_end",
        "unsol_tag",
        "waiters",
        "waiting",
        "want",
    )

    def __init__(self, cmd: P.ScsiCommand, lun: int, ahs: bytes = b"") -> None:
        self.cmd = cmd
        self.t0 = perf_counter_ns()
        """When the command's header was taken in (its latency runs to the response)."""
        self.ahs = ahs
        self.itt = cmd.itt
        self.lun = lun
        self.immediate = cmd.immediate
        self.edtl = cmd.expected_length
        self.limit = 0
        """Bytes the command stores: min(EDTL, the CDB's transfer length); R2Ts stop there."""
        self.plan: DataOutPlan | None = None
        self.result: ScsiResult | None = None
        self.buffer: memoryview | None = None
        self.unsol_buffer: memoryview | None = None
        """A private landing area for unsolicited data (a command held behind a CmdSN gap,
        or one whose unsolicited data outruns what it stores); copied once at the end."""
        self.held_bytes = 0
        self.want = 0
        self.received = 0
        self.unsol_tag: int | None = None
        self.unsol_end = 0
        self.next_r2t = 0
        self.outstanding: set[int] = set()
        self.r2tsn = 0
        self.datasn = 0
        self.aborted = False
        self.started = False
        """Executed: its CmdSN was reached (it counts in the session's window)."""
        self.in_task_set = False
        """Counted as running in its session's task set of its LU (:mod:`.taskset`)."""
        self.turned = False
        """Already waited one turn of the event loop (see ``TargetConnection.turn``)."""
        self.store_busy = False
        self.fenced = True
        """Its store work in flight must end before an abort of it is reported."""
        """Store work of this task is in flight: the task waits for its completion."""
        self.data_done = False
        """Every Data-Out byte has landed and the data phase's completion has run."""
        self.waiters: list[Callable[[Task], None]] | None = None
        """Called when the task ends (a task management response fenced on it)."""
        self.waiting = False
        """Queued for a data pointer table entry (its next R2T waits for one)."""


