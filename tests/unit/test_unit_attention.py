"""Unit attention conditions per I_T nexus (SAM-5 §5.14, SPC-4 §4.5.3)."""

from __future__ import annotations

import pytest

from pyiscsi.scsi.sense import SenseKey, fixed_sense
from pyiscsi.scsi.task import Nexus
from pyiscsi.scsi.unit_attention import EXEMPT_OPCODES, RESET_ASC, ResetKind, UnitAttentions

A = Nexus("iqn.2026-11.org.pyiscsi:a", 0x400001230000, 1)
B = Nexus("iqn.2026-11.org.pyiscsi:b", 0x400001230000, 1)
READ_10 = 0x28
TEST_UNIT_READY = 0x00
INQUIRY, REPORT_LUNS, REQUEST_SENSE = 0x12, 0xA0, 0x03

LUN_RESET_SENSE = bytes([
    0x70, 0x00, 0x06, 0x00, 0x00, 0x00, 0x00, 0x0A,
    0x00, 0x00, 0x00, 0x00, 0x29, 0x03, 0x00, 0x00, 0x00, 0x00,
])


def test_reset_asc_table() -> None:
    assert RESET_ASC == {ResetKind.LOGICAL_UNIT: (0x29, 0x03), ResetKind.TARGET_WARM: (0x29, 0x02),
                         ResetKind.TARGET_COLD: (0x29, 0x01)}


def test_exempt_opcodes_are_inquiry_report_luns_request_sense() -> None:
    assert frozenset({INQUIRY, REPORT_LUNS, REQUEST_SENSE}) == EXEMPT_OPCODES


def test_lun_reset_sense_is_byte_exact_fixed_format() -> None:
    ua = UnitAttentions()
    ua.join(A)
    ua.establish(*RESET_ASC[ResetKind.LOGICAL_UNIT])
    sense = ua.take(A, READ_10)
    assert sense == LUN_RESET_SENSE
    assert sense == fixed_sense(SenseKey.UNIT_ATTENTION, 0x29, 0x03)
    assert len(sense) == 18
    assert ua.pending(A) == 0
    assert ua.take(A, READ_10) is None


def test_nexus_that_never_joined_gets_nothing() -> None:
    ua = UnitAttentions()
    ua.establish(0x29, 0x03)
    ua.join(A)  # joins after the reset: not told about it
    assert ua.pending(A) == 0
    assert ua.take(A, READ_10) is None
    assert ua.pending(B) == 0
    assert ua.take(B, READ_10) is None


def test_every_joined_nexus_gets_the_condition_independently() -> None:
    ua = UnitAttentions()
    ua.join(A)
    ua.join(B)
    ua.establish(0x29, 0x02)
    assert ua.pending(A) == 1 and ua.pending(B) == 1
    assert ua.take(A, TEST_UNIT_READY) == fixed_sense(SenseKey.UNIT_ATTENTION, 0x29, 0x02)
    assert ua.pending(A) == 0
    assert ua.pending(B) == 1
    assert ua.take(B, READ_10) == fixed_sense(SenseKey.UNIT_ATTENTION, 0x29, 0x02)


def test_conditions_are_taken_oldest_first() -> None:
    ua = UnitAttentions()
    ua.join(A)
    ua.establish(0x29, 0x01)
    ua.establish(0x2A, 0x01)
    ua.establish(0x29, 0x03)
    taken = [ua.take(A, READ_10) for _ in range(4)]
    assert [(s[12], s[13]) if s else None for s in taken] == [
        (0x29, 0x01), (0x2A, 0x01), (0x29, 0x03), None,
    ]
    assert all(s[2] == SenseKey.UNIT_ATTENTION for s in taken if s)


@pytest.mark.parametrize("opcode", [INQUIRY, REPORT_LUNS, REQUEST_SENSE])
def test_exempt_commands_do_not_consume(opcode: int) -> None:
    ua = UnitAttentions()
    ua.join(A)
    ua.establish(0x29, 0x03)
    assert ua.take(A, opcode) is None
    assert ua.take(A, opcode) is None
    assert ua.pending(A) == 1
    assert ua.take(A, READ_10) == LUN_RESET_SENSE


def test_join_twice_keeps_pending_conditions() -> None:
    ua = UnitAttentions()
    ua.join(A)
    ua.establish(0x29, 0x03)
    ua.join(A)
    assert ua.pending(A) == 1


def test_leave_drops_the_nexus_and_its_conditions() -> None:
    ua = UnitAttentions()
    ua.join(A)
    ua.join(B)
    ua.establish(0x29, 0x03)
    ua.leave(A)
    assert ua.pending(A) == 0
    assert ua.take(A, READ_10) is None
    assert ua.pending(B) == 1
    ua.establish(0x29, 0x01)  # A left: it is not told about later resets either
    assert ua.pending(A) == 0
    assert ua.pending(B) == 2
    ua.leave(A)  # leaving twice is harmless
    ua.join(A)
    assert ua.pending(A) == 0


def test_same_condition_is_not_queued_twice() -> None:
    ua = UnitAttentions()
    ua.join(A)
    ua.establish(0x29, 0x03)
    ua.establish(0x29, 0x03)
    ua.establish(0x29, 0x03)
    assert ua.pending(A) == 1
    ua.establish(0x29, 0x02)
    ua.establish(0x29, 0x03)
    assert ua.pending(A) == 2
    assert ua.take(A, READ_10) == LUN_RESET_SENSE
    ua.establish(0x29, 0x03)  # consumed: may be established again
    assert ua.pending(A) == 2


def test_queue_is_bounded_and_keeps_the_newest() -> None:
    ua = UnitAttentions()
    ua.join(A)
    for ascq in range(40):
        ua.establish(0x3F, ascq)
    assert ua.pending(A) == 16
    first = ua.take(A, READ_10)
    assert first is not None and (first[12], first[13]) == (0x3F, 40 - 16)
    assert ua.pending(A) == 15


def test_queued_counts_every_pending_attention() -> None:
    """``queued`` is the sum of the per-nexus queues through join, establish, take, a full
    queue dropping its oldest, and leave (the target's fast path trusts it alone)."""
    ua = UnitAttentions()
    ua.join(A)
    ua.join(B)
    assert ua.queued == 0
    ua.establish(0x29, 0x03)
    ua.establish(0x29, 0x03)  # the same condition twice: queued once per nexus
    assert ua.queued == 2 == ua.pending(A) + ua.pending(B)
    assert ua.take(A, INQUIRY) is None and ua.queued == 2  # exempt: nothing consumed
    assert ua.take(A, READ_10) is not None and ua.queued == 1
    for ascq in range(40):  # B's queue fills up and drops its oldest
        ua.establish(0x2A, ascq)
    assert ua.queued == ua.pending(A) + ua.pending(B)
    ua.leave(B)
    assert ua.queued == ua.pending(A)
    while ua.take(A, READ_10) is not None:
        pass
    assert ua.queued == 0


def test_establish_for_some_nexuses_only() -> None:
    """CLEAR TASK SET's unit attention goes to the nexuses it names (SAM-5 §7.5); a nexus
    that does not know the LU is skipped, and a pending one is not queued twice."""
    c = Nexus("iqn.2026-11.org.pyiscsi:c", 0x400001230000, 1)
    ua = UnitAttentions()
    ua.join(A)
    ua.join(B)
    ua.establish(0x2F, 0x00, only=[B, c])
    ua.establish(0x2F, 0x00, only=[B])
    assert (ua.pending(A), ua.pending(B), ua.pending(c), ua.queued) == (0, 1, 0, 1)
    assert ua.take(A, TEST_UNIT_READY) is None
    assert ua.take(B, TEST_UNIT_READY) == fixed_sense(SenseKey.UNIT_ATTENTION, 0x2F, 0x00)
    assert ua.queued == 0
