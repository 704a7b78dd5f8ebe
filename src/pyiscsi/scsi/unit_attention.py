"""Unit attention conditions per I_T nexus (SAM-5 §5.14; their sense data: SPC-4 §4.5).

A reset establishes a unit attention for every I_T nexus that knows the logical unit, a CLEAR
TASK SET one for each other I_T nexus whose commands it aborted (SAM-5 §7.5); the next
command from that nexus (except INQUIRY, REPORT LUNS and REQUEST SENSE) ends in CHECK
CONDITION with UNIT ATTENTION sense, which clears it. REQUEST SENSE reports it as its data.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection
from enum import Enum

from .sense import SenseKey, fixed_sense
from .task import Nexus

EXEMPT_OPCODES = frozenset({0x12, 0xA0, 0x03})
"""INQUIRY, REPORT LUNS, REQUEST SENSE run despite a pending unit attention (SAM-5 §5.14)."""

class ResetKind(Enum):
    """The resets task management can ask for (SAM-5 §6.3-6.7)."""

    LOGICAL_UNIT = "lun"
    TARGET_WARM = "warm"
    TARGET_COLD = "cold"


RESET_ASC = {
    ResetKind.LOGICAL_UNIT: (0x29, 0x03),  # BUS DEVICE RESET FUNCTION OCCURRED
    ResetKind.TARGET_WARM: (0x29, 0x02),   # SCSI BUS RESET OCCURRED (target reset)
    ResetKind.TARGET_COLD: (0x29, 0x01),   # POWER ON OCCURRED
}
"""ASC/ASCQ established by each kind of reset (SPC-4 Annex D)."""

_MAX_PENDING = 16


class UnitAttentions:
    """Pending unit attention conditions of one logical unit, by I_T nexus."""

    def __init__(self) -> None:
        self._pending: dict[Nexus, deque[tuple[int, int]]] = {}
        self.queued = 0
        """Unit attentions pending over all nexuses: 0 lets a command skip :meth:`take`
        (the target's fast path tests this one integer)."""

    def join(self, nexus: Nexus) -> None:
        """A nexus starts using the logical unit (its session logged in)."""
        self._pending.setdefault(nexus, deque(maxlen=_MAX_PENDING))

    def leave(self, nexus: Nexus) -> None:
        queue = self._pending.pop(nexus, None)
        if queue:
            self.queued -= len(queue)

    def establish(self, asc: int, ascq: int, only: Collection[Nexus] | None = None) -> None:
        """Queue a unit attention for every nexus that knows the logical unit, or for those
        of ``only`` that do (a CLEAR TASK SET: the other nexuses whose commands it aborted,
        SAM-5 §7.5)."""
        if only is None:
            queues = list(self._pending.values())
        else:
            queues = [q for n in only if (q := self._pending.get(n)) is not None]
        for queue in queues:
            if (asc, ascq) not in queue:
                if len(queue) < _MAX_PENDING:
                    self.queued += 1  # a full queue drops its oldest instead
                queue.append((asc, ascq))

    def take(self, nexus: Nexus, opcode: int) -> bytes | None:
        """The sense data of the oldest pending unit attention, consumed; None if none
        or the command is exempt."""
        queue = self._pending.get(nexus)
        if not queue or opcode in EXEMPT_OPCODES:
            return None
        asc, ascq = queue.popleft()
        self.queued -= 1
        return fixed_sense(SenseKey.UNIT_ATTENTION, asc, ascq)

    def pending(self, nexus: Nexus) -> int:
        queue = self._pending.get(nexus)
        return len(queue) if queue else 0
