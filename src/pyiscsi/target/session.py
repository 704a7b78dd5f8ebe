"""Target-side sessions: the CmdSN window and command ordering (RFC 7143 §3.2.2, §4.2.2)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..proto.serial import sn_add, sn_in_window, sn_lt
from ..scsi.task import Nexus

if TYPE_CHECKING:
    from ..proto.keys import SessionParams
    from .catalog import Target
    from .connection import TargetConnection


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
    connections: list[TargetConnection] = field(default_factory=list)
    target_portal_group: int = 1

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

    def admit(self, cmdsn: int, immediate: bool) -> str:
        """Classify a request by its CmdSN: 'now', 'later' (queued: a gap) or 'drop'.

        Non-immediate requests outside ExpCmdSN..MaxCmdSN, and duplicates, are silently
        ignored (§3.2.2.1). 'now' advances ExpCmdSN.
        """
        if immediate:
            return "now"
        if not sn_in_window(cmdsn, self.expcmdsn, self.maxcmdsn):
            return "drop"
        if cmdsn != self.expcmdsn:
            return "later"
        self.expcmdsn = sn_add(self.expcmdsn, 1)
        return "now"

    def task_started(self) -> None:
        self.active += 1

    def task_done(self) -> None:
        self.active -= 1
        self.slide()

    def slide(self) -> None:
        """Advance MaxCmdSN as tasks complete; it never moves backwards."""
        candidate = sn_add(self.expcmdsn, max(self.depth - self.active, 1) - 1)
        if sn_lt(self.maxcmdsn, candidate):
            self.maxcmdsn = candidate
