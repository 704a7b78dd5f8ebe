"""Target sessions: the CmdSN window (RFC 7143 §3.2.2.1) and the I_T nexus."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyiscsi.proto.keys import SessionParams
from pyiscsi.proto.serial import sn_add, sn_le
from pyiscsi.scsi.task import Nexus
from pyiscsi.target.connection import TargetConnection
from pyiscsi.target.session import Admission, Session

from ..pair import INITIATOR, TARGET, Initiator, make_catalog

MAX = 0xFFFFFFFF


def make(depth: int = 4, cmdsn: int = 10, *, session_type: str = "Normal") -> Session:
    s = Session(tsih=1, isid=0x400001230000, initiator_name="iqn.x", target=None,
                params=SessionParams(session_type=session_type), depth=depth)
    s.start(cmdsn)
    return s


def test_start_opens_a_window_of_depth_commands() -> None:
    s = make(depth=4, cmdsn=10)
    assert (s.expcmdsn, s.maxcmdsn) == (10, 13)
    s = make(depth=1, cmdsn=7)
    assert (s.expcmdsn, s.maxcmdsn) == (7, 7)


def test_in_order_commands_run_now_and_advance_expcmdsn() -> None:
    s = make(depth=4, cmdsn=10)
    assert [s.admit(n, False) for n in (10, 11, 12, 13)] == [Admission.NOW] * 4
    assert s.expcmdsn == 14
    assert s.maxcmdsn == 13  # no slide without task completions


def test_gap_is_later_and_does_not_advance() -> None:
    s = make(depth=4, cmdsn=10)
    assert s.admit(12, False) == Admission.LATER
    assert s.admit(13, False) == Admission.LATER
    assert s.expcmdsn == 10
    assert s.admit(10, False) == Admission.NOW
    assert s.expcmdsn == 11


@pytest.mark.parametrize("cmdsn", [14, 15, 10 + (1 << 20), sn_add(10, (1 << 31) - 1)])
def test_beyond_maxcmdsn_is_dropped(cmdsn: int) -> None:
    s = make(depth=4, cmdsn=10)
    assert s.admit(cmdsn, False) == Admission.DROP
    assert (s.expcmdsn, s.maxcmdsn) == (10, 13)


def test_duplicates_and_stale_cmdsns_are_dropped() -> None:
    s = make(depth=4, cmdsn=10)
    assert s.admit(10, False) == Admission.NOW
    assert s.admit(10, False) == Admission.DROP  # duplicate of a command already taken
    assert s.admit(9, False) == Admission.DROP
    assert s.admit(0, False) == Admission.DROP
    assert s.expcmdsn == 11


def test_immediate_commands_run_now_without_advancing() -> None:
    s = make(depth=4, cmdsn=10)
    # RFC 7143 §3.2.2.1: an immediate command carries the next CmdSN but does not advance it
    assert s.admit(10, True) == Admission.NOW
    assert s.expcmdsn == 10
    # even a CmdSN outside the window: immediate delivery is not subject to it
    assert s.admit(100, True) == Admission.NOW
    assert s.admit(5, True) == Admission.NOW
    assert (s.expcmdsn, s.maxcmdsn) == (10, 13)
    assert s.admit(10, False) == Admission.NOW
    assert s.expcmdsn == 11


def test_window_slides_as_tasks_complete() -> None:
    s = make(depth=4, cmdsn=10)
    for n in (10, 11, 12, 13):
        assert s.admit(n, False) == Admission.NOW
        s.task_started()
    assert (s.active, s.expcmdsn, s.maxcmdsn) == (4, 14, 13)
    assert s.admit(14, False) == Admission.DROP  # window closed until a task completes
    s.task_done()
    assert s.active == 3
    assert s.maxcmdsn == 14  # ExpCmdSN 14 + (4 - 3) - 1
    assert s.admit(14, False) == Admission.NOW
    s.task_started()
    s.task_done()
    assert s.maxcmdsn == 15
    s.task_done()
    assert s.active == 2
    assert s.maxcmdsn == 16  # ExpCmdSN 15 + (4 - 2) - 1
    s.task_done()
    s.task_done()
    assert s.active == 0
    assert s.maxcmdsn == 18  # ExpCmdSN 15 + 4 - 1
    assert s.admit(18, False) == Admission.LATER
    assert s.admit(19, False) == Admission.DROP


def test_window_reopens_by_one_even_when_tasks_exceed_depth() -> None:
    s = make(depth=2, cmdsn=0)
    assert [s.admit(0, False), s.admit(1, False)] == [Admission.NOW, Admission.NOW]
    for _ in range(5):  # in-window commands plus immediate ones still running
        s.task_started()
    assert (s.expcmdsn, s.maxcmdsn) == (2, 1)  # closed: MaxCmdSN = ExpCmdSN - 1
    s.task_done()
    assert s.active == 4
    assert s.maxcmdsn == 2  # floor: MaxCmdSN = ExpCmdSN, room for one command
    s.task_done()
    assert s.maxcmdsn == 2


def test_maxcmdsn_never_decreases() -> None:
    s = make(depth=8, cmdsn=100)
    assert s.maxcmdsn == 107
    for _ in range(8):
        s.task_started()
    s.slide()
    assert s.maxcmdsn == 107  # busier, but the window already granted is kept
    s.active = 7
    s.slide()
    assert s.maxcmdsn == 107
    s.depth = 2  # a smaller depth never takes back granted CmdSNs
    s.active = 0
    s.slide()
    assert s.maxcmdsn == 107


def test_serial_wrap_near_2_32() -> None:
    s = make(depth=4, cmdsn=MAX - 1)
    assert s.maxcmdsn == 1  # window MAX-1, MAX, 0, 1
    assert s.admit(0, False) == Admission.LATER  # inside the window, past the wrap
    assert s.admit(1, False) == Admission.LATER
    assert s.admit(2, False) == Admission.DROP
    assert s.admit(MAX - 2, False) == Admission.DROP  # just before ExpCmdSN: stale
    assert s.admit(MAX - 1, False) == Admission.NOW
    assert s.admit(MAX, False) == Admission.NOW
    assert s.expcmdsn == 0
    assert s.admit(0, False) == Admission.NOW
    assert s.expcmdsn == 1
    s.slide()
    assert s.maxcmdsn == 4


def test_maxcmdsn_slides_across_the_wrap() -> None:
    s = make(depth=4, cmdsn=MAX - 5)
    assert s.maxcmdsn == MAX - 2
    for n in (MAX - 5, MAX - 4, MAX - 3):
        assert s.admit(n, False) == Admission.NOW
        s.task_started()
    for _ in range(3):
        s.task_done()
    assert s.expcmdsn == MAX - 2
    assert s.maxcmdsn == 0  # numerically smaller, serially larger: MaxCmdSN moved forward
    assert s.admit(MAX - 1, False) == Admission.LATER
    assert s.admit(0, False) == Admission.LATER
    assert s.admit(1, False) == Admission.DROP


@given(st.integers(min_value=0, max_value=MAX), st.integers(min_value=1, max_value=64),
       st.lists(st.sampled_from(["cmd", "done", "imm"]), max_size=60))
def test_window_invariants(start: int, depth: int, ops: list[str]) -> None:
    s = make(depth=depth, cmdsn=start)
    sent = start
    for op in ops:
        before_max = s.maxcmdsn
        if op == "cmd":
            verdict = s.admit(sent, False)
            if verdict == Admission.NOW:
                s.task_started()
                sent = sn_add(sent, 1)
            else:
                assert verdict == Admission.DROP  # in-order CmdSNs are never 'later'
        elif op == "imm":
            assert s.admit(sent, True) == Admission.NOW
        elif s.active:
            s.task_done()
        assert sn_le(before_max, s.maxcmdsn)
        assert s.expcmdsn == sent
        # open window (MaxCmdSN + 1 - ExpCmdSN) plus running tasks is exactly the depth
        assert (s.maxcmdsn + 1 - s.expcmdsn) % (1 << 32) == depth - s.active


def test_nexus_property() -> None:
    s = Session(tsih=3, isid=0x80123456789A, initiator_name="iqn.2026-11.org.i:one",
                target=None, params=SessionParams(), target_portal_group=7)
    assert s.nexus == Nexus("iqn.2026-11.org.i:one", 0x80123456789A, 7)
    assert s.nexus.transport_id == "iqn.2026-11.org.i:one,i,0x80123456789a"
    s.target_portal_group = 2
    assert s.nexus.target_portal_group == 2
    assert s.nexus != Nexus("iqn.2026-11.org.i:one", 0x80123456789A, 7)


def test_discovery_follows_session_type() -> None:
    assert make(session_type="Discovery").discovery is True
    assert make(session_type="Normal").discovery is False


def test_logged_in_session_nexus_is_the_one_the_luns_know() -> None:
    catalog = make_catalog()
    catalog.portal_group_tag = 5
    conn = TargetConnection(catalog, "peer")
    ini = Initiator(conn)
    ini.login()
    (session,) = catalog.sessions.values()
    assert session.nexus == Nexus(INITIATOR, ini.isid, 5)
    lu = catalog.targets[TARGET].luns[0]
    lu.attentions.establish(0x29, 0x03)
    assert lu.attentions.pending(session.nexus) == 1
