"""Target-side sessions: the CmdSN window and command ordering (RFC 7143 §3.2.2, §4.2.2)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

# imported at run time, not under TYPE_CHECKING: a compiled (mypyc) dataclass resolves its
# fields' annotations when the class is created
from ..proto.keys import SessionParams
from ..proto.serial import sn_add, sn_in_window
from ..scsi.iostats import IoStats
from ..scsi.task import Nexus

if TYPE_CHECKING:
    from .catalog import Target
    from .connection import TargetConnection
    from .task import Task


class Admission(Enum):
    """Where a request stands by its CmdSN (RFC 7143 §3.2.2.1)."""

    NOW = "now"
    """Immediate, or CmdSN == ExpCmdSN: it runs now (a non-immediate one advances ExpCmdSN)."""
    LATER = "later"
    """Inside the window past a gap: held until the missing CmdSNs arrive."""
    DROP = "drop"
    """Outside the window, or a duplicate: silently ignored."""


@dataclass(eq=False, slots=True)
class Session:
    """One iSCSI session (I_T nexus), keyed by InitiatorName + ISID, named by its TSIH."""

    tsih: int
    isid: int
    initiator_name: str
    target: Target | None
    params: SessionParams
    depth: int = 128
    """Commands the session may have admitted and not yet completed (the CmdSN window)."""
    expcmdsn: int = 0
    maxcmdsn: int = 0
    active: int = 0
    """Tasks admitted and not yet completed."""
    immediate_active: int = 0
    """Of those, tasks that came as immediate commands (they take no CmdSN slot)."""
    connections: list[TargetConnection] = field(default_factory=list)
    target_portal_group: int = 1
    io: IoStats = field(default_factory=IoStats)
    """Commands, bytes and latency answered for this session (status, ``pyiscsi top``)."""

    @property
    def nexus(self) -> Nexus:
        """The session's I_T nexus (SAM-5 §4.6)."""
        tpgt = self.target_portal_group
        return Nexus(self.initiator_name, self.isid, tpgt)

    @property
    def discovery(self) -> bool:
        return self.params.session_type == "Discovery"

    def start(self, cmdsn: int) -> None:
        """The leading login's CmdSN opens the window (RFC 7143 §4.2.2.1)."""
        self.expcmdsn = cmdsn
        self.maxcmdsn = sn_add(cmdsn, self.depth - 1)

    def classify(self, cmdsn: int, immediate: bool) -> Admission:
        """Where a request stands by its CmdSN, changing nothing.

        Non-immediate requests outside ExpCmdSN..MaxCmdSN, and duplicates, are silently
        ignored (§3.2.2.1).
        """
        if immediate:
            return Admission.NOW
        if not sn_in_window(cmdsn, self.expcmdsn, self.maxcmdsn):
            return Admission.DROP
        if cmdsn != self.expcmdsn:
            return Admission.LATER
        return Admission.NOW

    def admit(self, cmdsn: int, immediate: bool) -> Admission:
        """:meth:`classify`, and take the CmdSN when the request runs now (ExpCmdSN
        advances). MaxCmdSN moves in :meth:`slide`, once the caller has counted the task
        it started, if any: a request that leaves no task never narrows the window."""
        verdict = self.classify(cmdsn, immediate)
        if verdict is Admission.NOW and not immediate:
            self.expcmdsn = sn_add(self.expcmdsn, 1)
        return verdict

    def take(self) -> None:
        """Take the next CmdSN (the caller classified its request as :attr:`Admission.NOW`,
        not immediate): :meth:`admit` without classifying again."""
        self.expcmdsn = (self.expcmdsn + 1) & 0xFFFFFFFF

    def task_started(self, immediate: bool = False) -> None:
        self.active += 1
        if immediate:
            self.immediate_active += 1

    def task_done(self, immediate: bool = False) -> None:
        self.active -= 1
        if immediate:
            self.immediate_active -= 1
        self.slide()

    def abort_tasks(self, luns: set[int], fence: list[Task] | None = None) -> int:
        """Abort the session's tasks on ``luns`` on every connection (SAM-5 §6.3); those
        whose store work is still in flight go in ``fence``. Answers how many commands
        were aborted."""
        return sum(conn.abort_tasks(luns, fence) for conn in self.connections)

    def end(self) -> None:
        """Session reinstatement (RFC 7143 §6.3.5): the old session's connections close now
        (their transports drop the sockets at the next tick)."""
        for conn in list(self.connections):
            conn.close()
            conn.dead = True

    def drop(self, keep: TargetConnection | None = None) -> None:
        """End the session's connections (a target cold reset); ``keep`` closes itself
        after its answer is sent."""
        for conn in self.connections:
            if conn is not keep:
                conn.dead = True

    def slide(self) -> None:
        """Advance MaxCmdSN as tasks complete; it never moves backwards."""
        room = self.depth - self.active
        candidate = (self.expcmdsn + (room - 1 if room > 1 else 0)) & 0xFFFFFFFF
        if 0 < (candidate - self.maxcmdsn) & 0xFFFFFFFF < 0x80000000:  # sn_lt, inline
            self.maxcmdsn = candidate
