"""The contract between the iSCSI layer and the SCSI emulation.

The iSCSI target hands a :class:`ScsiRequest` to :func:`pyiscsi.scsi.dispatch.execute`, which
answers either a :class:`ScsiResult` (status, sense, optional Data-In payload) or, for
commands that take data from the initiator, a :class:`DataOutPlan` saying where the Data-Out
bytes must land (the store's own memory for plain writes: direct placement) and what to run
once they all arrived.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..proto.wire import ScsiStatus


@dataclass(frozen=True, slots=True)
class Nexus:
    """An I_T nexus: who is asking (SAM-5 §4.6). Reservations are keyed by it."""

    initiator_name: str
    isid: int = 0
    target_portal_group: int = 1

    @property
    def transport_id(self) -> str:
        """iSCSI TransportID name form 'iqn...,i,0x<isid>' (SPC-4 §7.6.4.6)."""
        return f"{self.initiator_name},i,0x{self.isid:012x}"


@dataclass(frozen=True, slots=True)
class ScsiRequest:
    """One SCSI command as received (RFC 7143 §11.3)."""

    cdb: bytes
    """The whole CDB (16-byte field plus any extended CDB AHS), trailing bytes as sent."""
    expected_length: int = 0
    """Expected Data Transfer Length from the PDU (bytes)."""
    read: bool = False
    write: bool = False
    nexus: Nexus = field(default_factory=lambda: Nexus("iqn.unknown"))
    task_tag: int = 0


@dataclass(slots=True)
class ScsiResult:
    """Outcome of a command: status, fixed-format sense (SPC-4 §4.5.3), Data-In bytes.

    ``data`` may be a memoryview of store memory (sent without a copy). Its length is what
    the command would transfer; the iSCSI layer trims to the Expected Data Transfer Length
    and reports residuals.
    """

    status: ScsiStatus = ScsiStatus.GOOD
    sense: bytes = b""
    data: bytes | bytearray | memoryview | None = None
    pending: Callable[[], ScsiResult | None] | None = None
    """Set when the command's status waits for a background operation (SANITIZE with
    IMMED=0, SBC-4 §5.30): the iSCSI layer polls it (on its timer) and sends the result it
    answers; None means still running. An aborted task is never polled again."""


@dataclass(slots=True)
class DataOutPlan:
    """Where a command's Data-Out bytes go and what runs when they have all arrived.

    ``buffer`` has exactly ``length`` bytes (the command's transfer length in bytes).
    ``staged`` is True when ``buffer`` is a private staging buffer (COMPARE AND WRITE,
    WRITE SAME, VERIFY BYTCHK...) rather than the store's own memory; the placement counters
    report those bytes as staged. ``complete`` is called once with the number of bytes that
    actually arrived (fewer than ``length`` when the initiator's EDTL was smaller).
    """

    buffer: memoryview
    length: int
    complete: Callable[[int], ScsiResult]
    staged: bool = False


def lun_from_field(field: int) -> int:
    """LUN number from the 8-byte LUN field (SAM-5 §4.7: peripheral/flat addressing)."""
    return (field >> 48) & 0x3FFF


def lun_to_field(lun: int) -> int:
    """The 8-byte LUN field for a LUN number: peripheral below 256, flat space above."""
    if lun < 256:
        return lun << 48
    return (0x4000 | (lun & 0x3FFF)) << 48
