"""The contract between the iSCSI layer and the SCSI emulation.

The iSCSI target hands a :class:`ScsiRequest` to :func:`pyiscsi.scsi.dispatch.execute`, which
answers either a :class:`ScsiResult` (status, sense, optional Data-In payload) or, for
commands that take data from the initiator, a :class:`DataOutPlan` saying where the Data-Out
bytes must land (the store's own memory for plain writes: direct placement) and what to run
once they all arrived.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeAlias

# imported at run time, not under TYPE_CHECKING: a compiled (mypyc) dataclass resolves its
# fields' annotations when the class is created
from ..backstore.base import BackingStore
from ..proto.wire import ScsiStatus

if TYPE_CHECKING:
    from ..backstore.ops import StoreOp


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


@dataclass(slots=True)
class ScsiRequest:
    """One SCSI command as received (RFC 7143 §11.3). Not frozen: one is built per command
    on the hot path, and a frozen dataclass's ``__init__`` costs 0.85 us more (measured)."""

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
    background: StoreWork | None = None
    """Store work that goes on after this result is sent (SANITIZE with IMMED=1, SBC-4
    §5.30): the iSCSI layer submits it and does not wait for it."""


@dataclass(slots=True)
class DataOutPlan:
    """Where a command's Data-Out bytes go and what runs when they have all arrived.

    ``buffer`` has exactly ``length`` bytes (the command's transfer length in bytes).
    ``staged`` is True when ``buffer`` is a private staging buffer (COMPARE AND WRITE,
    WRITE SAME, VERIFY BYTCHK...) rather than the store's own memory; the placement counters
    report those bytes as staged. ``complete`` is called once with the number of bytes that
    actually arrived (fewer than ``length`` when the initiator's EDTL was smaller).
    """

    # builtins.: a compiled dataclass looks a bare name up in this module's globals only
    buffer: builtins.memoryview
    length: int
    complete: Callable[[int], ScsiResult | StoreWork]
    staged: bool = False


@dataclass(slots=True)
class StoreWork:
    """Store operations a command waits for (SAM-5 §5.1: the task stays in the task set).

    The iSCSI layer runs ``ops`` in order, at once when the store says each is
    :meth:`~pyiscsi.backstore.base.BackingStore.synchronous`, else off the loop with the
    completion fed back; then calls ``then()`` for what comes next. A failing op ends the
    command with its :class:`~pyiscsi.backstore.base.StoreError` sense. ``ranges`` are the
    byte ranges the work changes: later commands that overlap them wait for it.
    """

    store: BackingStore
    ops: tuple[StoreOp, ...]
    then: Callable[[], Outcome]
    on_error: Callable[[Exception], ScsiResult | None] | None = None
    """Told of a failure before it becomes the command's sense (e.g. SANITIZE fails)."""
    gated: bool = False
    """The logical unit's own state refuses every overlapping command while the work runs
    (SANITIZE: NOT READY / SANITIZE IN PROGRESS, SBC-4 §4.11.2): no busy ranges, so such
    commands are answered at once instead of waiting for the end."""
    holds: tuple[tuple[int, int], ...] = ()
    """``(start, end)`` byte ranges kept busy although the ops only read them: a read that
    a compare or a read-modify-write depends on (no other command may change the bytes
    between the read and what follows it)."""

    @property
    def ranges(self) -> list[tuple[int, int]]:
        """``(start, end)`` byte ranges the ops change (a CALL: the whole store); none for
        :attr:`gated` work."""
        if self.gated:
            return []
        out = list(self.holds)
        for op in self.ops:
            if op.modifying:
                out.append((op.offset, op.offset + op.length) if op.call is None
                           else (0, self.store.size))
        return out


Outcome: TypeAlias = "ScsiResult | DataOutPlan | StoreWork"
"""What the SCSI layer answers a command with."""


def lun_from_field(field: int) -> int:
    """LUN number from the 8-byte LUN field (SAM-5 §4.7: peripheral/flat addressing)."""
    return (field >> 48) & 0x3FFF


def lun_to_field(lun: int) -> int:
    """The 8-byte LUN field for a LUN number: peripheral below 256, flat space above."""
    if lun < 256:
        return lun << 48
    return (0x4000 | (lun & 0x3FFF)) << 48
