"""Task-set-wide task management functions and refused commands held behind a CmdSN gap.

A command whose fields are wrong is refused: it takes its CmdSN and is answered with CHECK
CONDITION, with no task. Held behind a CmdSN gap, that answer waits for the gap to close.
ABORT TASK SET, CLEAR TASK SET and LOGICAL UNIT RESET abort it like any task on their LU
(RFC 7143 §11.5.1; SAM-5 §7.3, §7.5, §7.7): after the function's response no status may be
returned for it. Its CmdSN is still considered received, so the window moves on when the
gap closes and the commands behind it run. A refused command on another LU is not affected.

Every scenario is a logged-in session (ImmediateData=Yes, InitialR2T=No as pair.py
negotiates) on two 1 MiB RAM LUNs; the refused command is a WRITE(10) with more immediate
data than its EDTL (TOO MUCH WRITE DATA).
"""

from __future__ import annotations

import struct

import pytest

from pyiscsi.proto import pdu as P
from pyiscsi.proto.wire import TmfFunction, TmfResponse
from pyiscsi.scsi.spc import PC_CURRENT, control_page
from pyiscsi.target.connection import TargetConnection

from ..pair import TARGET, Initiator, Reply, drain, feed, make_catalog, wire

SIZE = 1 << 20
TUR = bytes(16)
LU_SCOPED = [TmfFunction.ABORT_TASK_SET, TmfFunction.CLEAR_TASK_SET,
             TmfFunction.LOGICAL_UNIT_RESET]


def write10(lba: int, blocks: int) -> bytes:
    return struct.pack(">BBIBHB", 0x2A, 0, lba, 0, blocks, 0).ljust(16, b"\0")


def setup() -> tuple[TargetConnection, Initiator]:
    catalog = make_catalog(size=SIZE, luns=2)
    conn = TargetConnection(catalog, "tmf")
    ini = Initiator(conn)
    ini.login()
    conn.take_output()
    return conn, ini


def two_sessions() -> tuple[Initiator, Initiator]:
    """Sessions A and B (other ISID, so another I_T nexus) on one target with two LUs."""
    catalog = make_catalog(size=SIZE, luns=2)
    ini_a = Initiator(TargetConnection(catalog, "a"))
    ini_b = Initiator(TargetConnection(catalog, "b"), isid=0x400001230001)
    for ini in (ini_a, ini_b):
        ini.login()
        ini.conn.take_output()
    return ini_a, ini_b


def window(conn: TargetConnection) -> int:
    s = conn.session
    assert s is not None
    return (s.maxcmdsn - s.expcmdsn + 1) & 0xFFFFFFFF


def refused(conn: TargetConnection, itt: int, cmdsn: int, lun: int = 0) -> None:
    """WRITE(10) LBA 8 x1, EDTL 512 with 513 bytes of immediate data: refused (TOO MUCH
    WRITE DATA); behind a gap its CHECK CONDITION waits for the gap to close."""
    feed(conn, wire(P.ScsiCommand(itt=itt, cdb=write10(8, 1), expected_length=512,
                                  cmdsn=cmdsn, lun=lun << 48, write=True, data_length=513),
                    b"\xaa" * 513))


def tmf(conn: TargetConnection, function: TmfFunction, cmdsn: int, lun: int = 0) -> None:
    feed(conn, wire(P.TaskMgmtRequest(itt=0x20, function=function, lun=lun << 48,
                                      cmdsn=cmdsn, immediate=True)))


def completes(conn: TargetConnection) -> None:
    """The one reply is the TMF response 'Function complete'."""
    (reply,) = drain(conn)
    assert isinstance(reply.pdu, P.TaskMgmtResponse)
    assert reply.pdu.response == TmfResponse.FUNCTION_COMPLETE


def plug_gap_silently(conn: TargetConnection, cmdsn: int, expcmdsn: int) -> None:
    """A NOP-Out at ``cmdsn`` closes the gap: only its NOP-In comes back (nothing held
    behind the gap is answered), ExpCmdSN reaches ``expcmdsn`` and the window is whole."""
    feed(conn, wire(P.NopOut(itt=0x21, cmdsn=cmdsn, immediate=False)))
    assert [(type(r.pdu), r.pdu.itt) for r in drain(conn)] == [(P.NopIn, 0x21)]
    assert conn.session is not None and conn.session.expcmdsn == expcmdsn
    assert window(conn) == conn.catalog.limits.queue_depth


def responses(replies: list[Reply]) -> list[tuple[int, int]]:
    """(ITT, status) of every SCSI Response."""
    return [(r.pdu.itt, r.pdu.status) for r in replies if isinstance(r.pdu, P.ScsiResponse)]


@pytest.mark.parametrize("function", LU_SCOPED, ids=lambda f: f.name)
def test_refused_command_held_behind_a_gap_is_aborted(function: TmfFunction) -> None:
    """CmdSN n missing (a gap). CmdSN n+1: refused WRITE ITT 0x11 on LUN 0 (held). The
    function on LUN 0 (immediate, CmdSN n+2) -> 'Function complete'. NOP-Out CmdSN n plugs
    the gap: no CHECK CONDITION for ITT 0x11 follows the TMF response, ExpCmdSN passes
    n+1, and a later command runs (the window is not stalled)."""
    conn, ini = setup()
    n = ini.cmdsn
    refused(conn, 0x11, n + 1)
    assert drain(conn) == []
    tmf(conn, function, n + 2)
    completes(conn)
    plug_gap_silently(conn, n, n + 2)
    ini.cmdsn = n + 2
    ini.command(TUR, lun=1, itt=0x30)  # LUN 1: no unit attention from a LUN 0 reset
    assert responses(drain(conn)) == [(0x30, 0x00)]
    assert not conn.tasks and len(conn.table) == 0


@pytest.mark.parametrize("function", LU_SCOPED, ids=lambda f: f.name)
def test_refused_command_on_another_lun_is_still_answered(function: TmfFunction) -> None:
    """CmdSN n missing. CmdSN n+1: refused WRITE ITT 0x11 on LUN 1; CmdSN n+2: refused WRITE
    ITT 0x12 on LUN 0. The function on LUN 0 (immediate, CmdSN n+3). NOP-Out CmdSN n plugs
    the gap: ITT 0x11 (another LU) still gets its CHECK CONDITION, ITT 0x12 does not."""
    conn, ini = setup()
    n = ini.cmdsn
    refused(conn, 0x11, n + 1, lun=1)
    refused(conn, 0x12, n + 2, lun=0)
    tmf(conn, function, n + 3)
    completes(conn)
    feed(conn, wire(P.NopOut(itt=0x21, cmdsn=n, immediate=False)))
    later = drain(conn)
    assert [(type(r.pdu), r.pdu.itt) for r in later] == [(P.NopIn, 0x21), (P.ScsiResponse, 0x11)]
    sense = later[1].data
    assert later[1].pdu.status == 0x02  # type: ignore[attr-defined]
    assert sense[2 + 12:2 + 14] == b"\x4b\x02"  # TOO MUCH WRITE DATA
    assert conn.session is not None and conn.session.expcmdsn == n + 3
    assert window(conn) == conn.catalog.limits.queue_depth


def test_held_refusal_on_the_lu_of_another_session_is_aborted_by_lu_reset() -> None:
    """Two sessions on the target. Session B: CmdSN m missing, CmdSN m+1 a refused WRITE ITT
    0x11 on LUN 0 (held). Session A: LOGICAL UNIT RESET of LUN 0 (all tasks on the LU, every
    I_T nexus: SAM-5 §7.7). Session B plugs its gap: no CHECK CONDITION for ITT 0x11, and
    its window moves on."""
    ini_a, ini_b = two_sessions()
    conn_a, conn_b = ini_a.conn, ini_b.conn
    m = ini_b.cmdsn
    refused(conn_b, 0x11, m + 1)
    tmf(conn_a, TmfFunction.LOGICAL_UNIT_RESET, ini_a.cmdsn)
    completes(conn_a)
    plug_gap_silently(conn_b, m, m + 2)


def test_abort_task_set_leaves_other_sessions_held_refusals() -> None:
    """ABORT TASK SET aborts only its own I_T nexus's tasks (SAM-5 §7.3): a refused command
    held behind a gap in another session, on the same LU, still gets its CHECK CONDITION."""
    ini_a, ini_b = two_sessions()
    conn_a, conn_b = ini_a.conn, ini_b.conn
    m = ini_b.cmdsn
    refused(conn_b, 0x11, m + 1)
    tmf(conn_a, TmfFunction.ABORT_TASK_SET, ini_a.cmdsn)
    drain(conn_a)
    feed(conn_b, wire(P.NopOut(itt=0x21, cmdsn=m, immediate=False)))
    later = drain(conn_b)
    assert [(type(r.pdu), r.pdu.itt) for r in later] == [(P.NopIn, 0x21), (P.ScsiResponse, 0x11)]


def test_target_warm_reset_aborts_held_refusals_on_every_lu() -> None:
    """CmdSN n missing. Refused WRITEs held at n+1 (LUN 0, ITT 0x11) and n+2 (LUN 1, ITT
    0x12). TARGET WARM RESET (immediate; every LU of the target, RFC 7143 §11.5.1) ->
    'Function complete'. NOP-Out CmdSN n plugs the gap: neither CHECK CONDITION follows,
    and ExpCmdSN passes both CmdSNs."""
    conn, ini = setup()
    n = ini.cmdsn
    refused(conn, 0x11, n + 1, lun=0)
    refused(conn, 0x12, n + 2, lun=1)
    tmf(conn, TmfFunction.TARGET_WARM_RESET, n + 3)
    completes(conn)
    plug_gap_silently(conn, n, n + 3)


# --- CLEAR TASK SET: the LU's whole task set (SAM-5 §7.5) --------------------------------
#
# The control mode page reports TST=000b (one task set per LU, shared by every I_T nexus)
# and TAS=0 (SPC-4 §7.5.8): CLEAR TASK SET aborts the commands of every I_T nexus on the LU
# with no response, and each other I_T nexus that had commands aborted gets UNIT ATTENTION,
# COMMANDS CLEARED BY ANOTHER INITIATOR (2Fh/00h; SAM-5 §5.6, §7.5).

CHECK_CONDITION = 0x02
UNIT_ATTENTION = 0x6


def pending_write(ini: Initiator, itt: int, lun: int = 0) -> int:
    """WRITE(10) LBA 0 x2 with one block of immediate data: the target asks for the rest
    with an R2T (its TTT is the answer), and the task stays outstanding until the Data-Out
    comes."""
    ini.command(write10(0, 2), lun=lun, edtl=1024, write=True,
                immediate_data=b"\x5a" * 512, itt=itt)
    (r2t,) = drain(ini.conn)
    assert isinstance(r2t.pdu, P.R2T) and r2t.pdu.itt == itt
    return r2t.pdu.ttt


def finish_write(ini: Initiator, itt: int, ttt: int, lun: int = 0) -> None:
    """The Data-Out the R2T asked for."""
    feed(ini.conn, wire(P.DataOut(itt=itt, ttt=ttt, buffer_offset=512, data_length=512,
                                  lun=lun << 48, final=True), b"\x5b" * 512))


def function_complete(ini: Initiator, function: TmfFunction, lun: int = 0) -> None:
    tmf(ini.conn, function, ini.cmdsn, lun=lun)
    completes(ini.conn)


def tur(ini: Initiator, lun: int = 0) -> tuple[int, bytes]:
    """TEST UNIT READY: (status, (sense key, ASC, ASCQ) bytes or b'')."""
    ini.command(TUR, lun=lun)
    (reply,) = drain(ini.conn)
    assert isinstance(reply.pdu, P.ScsiResponse)
    sense = reply.data[2:]
    key = bytes((sense[2] & 0x0F, sense[12], sense[13])) if sense else b""
    return reply.pdu.status, key


CLEARED = (CHECK_CONDITION, bytes((UNIT_ATTENTION, 0x2F, 0x00)))
GOOD = (0x00, b"")


def test_control_mode_page_reports_one_shared_task_set_and_tas_zero() -> None:
    """What CLEAR TASK SET's scope and its unit attention rest on (SPC-4 §7.5.8): TST
    (byte 2, bits 7-5) = 000b, TAS (byte 5, bit 6) = 0."""
    lu = make_catalog(size=SIZE).targets[TARGET].luns[0]
    page = control_page(lu, PC_CURRENT)
    assert page[2] >> 5 == 0 and not page[5] & 0x40


def test_clear_task_set_aborts_another_sessions_task_with_a_unit_attention() -> None:
    """B has a WRITE outstanding on LUN 0 (waiting for its Data-Out). A: CLEAR TASK SET of
    LUN 0 -> 'Function complete'. B's task ends with no response (TAS=0), not even once
    B has sent the Data-Out its R2T asked for, and B's next
    command on LUN 0 ends in CHECK CONDITION, UNIT ATTENTION 2Fh/00h, once (SAM-5 §7.5);
    LUN 1 has no unit attention for B."""
    ini_a, ini_b = two_sessions()
    ttt = pending_write(ini_b, 0x11)
    function_complete(ini_a, TmfFunction.CLEAR_TASK_SET)
    assert drain(ini_b.conn) == []
    assert ini_b.conn.tasks[0x11].aborted
    finish_write(ini_b, 0x11, ttt)  # the burst the R2T asked for ends: still no response
    assert drain(ini_b.conn) == []
    assert not ini_b.conn.tasks and len(ini_b.conn.table) == 0
    assert tur(ini_b, lun=1) == GOOD
    assert tur(ini_b) == CLEARED
    assert tur(ini_b) == GOOD
    assert tur(ini_a) == GOOD


def test_clear_task_set_aborts_the_senders_own_tasks_without_a_unit_attention() -> None:
    """A has a WRITE outstanding on LUN 0; B has nothing on it. A: CLEAR TASK SET of LUN 0.
    A's task ends with no response, and neither A (the sender) nor B (no commands aborted:
    SAM-5 §7.5) gets a unit attention."""
    ini_a, ini_b = two_sessions()
    ttt = pending_write(ini_a, 0x11)
    function_complete(ini_a, TmfFunction.CLEAR_TASK_SET)
    finish_write(ini_a, 0x11, ttt)
    assert drain(ini_a.conn) == []
    assert not ini_a.conn.tasks and len(ini_a.conn.table) == 0
    assert tur(ini_a) == GOOD
    assert tur(ini_b) == GOOD


def test_clear_task_set_leaves_tasks_on_another_lu() -> None:
    """B has a WRITE outstanding on LUN 1. A: CLEAR TASK SET of LUN 0. B's Data-Out then
    completes its WRITE (GOOD), and B has no unit attention on either LU."""
    ini_a, ini_b = two_sessions()
    ttt = pending_write(ini_b, 0x11, lun=1)
    function_complete(ini_a, TmfFunction.CLEAR_TASK_SET)
    finish_write(ini_b, 0x11, ttt, lun=1)
    assert responses(drain(ini_b.conn)) == [(0x11, 0x00)]
    assert tur(ini_b) == GOOD
    assert tur(ini_b, lun=1) == GOOD


def test_abort_task_set_leaves_another_sessions_task() -> None:
    """ABORT TASK SET aborts only the sender's I_T nexus's tasks (SAM-5 §7.3): B's WRITE
    outstanding on LUN 0 completes after A's ABORT TASK SET of LUN 0, and B has no unit
    attention."""
    ini_a, ini_b = two_sessions()
    pending_write(ini_a, 0x12)
    ttt = pending_write(ini_b, 0x11)
    function_complete(ini_a, TmfFunction.ABORT_TASK_SET)
    assert ini_a.conn.tasks[0x12].aborted and not ini_b.conn.tasks[0x11].aborted
    finish_write(ini_b, 0x11, ttt)
    assert responses(drain(ini_b.conn)) == [(0x11, 0x00)]
    assert tur(ini_b) == GOOD
    assert tur(ini_a) == GOOD


def test_clear_task_set_aborts_another_sessions_held_refusal() -> None:
    """Session B: CmdSN m missing, CmdSN m+1 a refused WRITE on LUN 0 (held behind the gap,
    its CHECK CONDITION waiting). A: CLEAR TASK SET of LUN 0. B plugs its gap: no CHECK
    CONDITION for it, the window moves on, and B's next command on LUN 0 gets the unit
    attention (a command of B's was aborted)."""
    ini_a, ini_b = two_sessions()
    conn_b = ini_b.conn
    m = ini_b.cmdsn
    refused(conn_b, 0x11, m + 1)
    function_complete(ini_a, TmfFunction.CLEAR_TASK_SET)
    plug_gap_silently(conn_b, m, m + 2)
    ini_b.cmdsn = m + 2
    assert tur(ini_b) == CLEARED
