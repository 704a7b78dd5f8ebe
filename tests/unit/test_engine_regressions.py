"""Minimal reproducers of engine bugs the model oracle found (tests/oracle.py,
tests/property/test_target_oracle_props.py) on the engine before the admission rework; they
pass now. The last one is RFC 7143 §7.8's reading of a command whose immediate data fails
its data digest (discarded, its CmdSN not taken, retried by the initiator): the engine used
to answer it with Reject 0x02 plus CHECK CONDITION and take its CmdSN.

Every scenario is a logged-in session (ImmediateData=Yes, InitialR2T=No as pair.py
negotiates) on a 1 MiB RAM LUN; the PDUs are spelled out in each test.
"""

from __future__ import annotations

import struct

from pyiscsi.proto import pdu as P
from pyiscsi.proto.framing import frame
from pyiscsi.proto.wire import RejectReason, TmfFunction, TmfResponse
from pyiscsi.target.connection import TargetConnection

from ..pair import Initiator, Reply, drain, feed, make_catalog, wire

SIZE = 1 << 20


def write10(lba: int, blocks: int) -> bytes:
    return struct.pack(">BBIBHB", 0x2A, 0, lba, 0, blocks, 0).ljust(16, b"\0")


TUR = bytes(16)


def setup(**login: object) -> tuple[TargetConnection, Initiator, memoryview]:
    catalog = make_catalog(size=SIZE)
    conn = TargetConnection(catalog, "regression")
    ini = Initiator(conn)
    ini.login(**login)
    conn.take_output()
    store = catalog.targets[next(iter(catalog.targets))].luns[0].store
    return conn, ini, store.view(0, SIZE)  # type: ignore[attr-defined]


def window(conn: TargetConnection) -> int:
    s = conn.session
    assert s is not None
    return (s.maxcmdsn - s.expcmdsn + 1) & 0xFFFFFFFF


def depth(conn: TargetConnection) -> int:
    return conn.catalog.limits.queue_depth


def answer_r2ts(conn: TargetConnection, replies: list[Reply], fill: int = 0xBB) -> list[Reply]:
    """Send the Data-Out burst every R2T in ``replies`` asks for; return what came back."""
    out: list[Reply] = []
    for r in replies:
        if isinstance(r.pdu, P.R2T):
            n = r.pdu.desired_length
            feed(conn, wire(P.DataOut(itt=r.pdu.itt, ttt=r.pdu.ttt, lun=r.pdu.lun,
                                      buffer_offset=r.pdu.buffer_offset, data_length=n,
                                      final=True), bytes([fill]) * n))
            out += drain(conn)
    return out


def test_immediate_data_beyond_edtl_is_refused_without_leftovers() -> None:
    """WRITE(10) LBA 0, 1 block, EDTL 512, F=1, 1024 bytes of immediate data: received, its
    CmdSN taken, answered CHECK CONDITION (TOO MUCH WRITE DATA), nothing left behind."""
    conn, ini, _ = setup()
    cmd = ini.command(write10(0, 1), edtl=512, write=True, immediate_data=b"\xaa" * 1024,
                      itt=0x10)
    (reply,) = drain(conn)
    assert isinstance(reply.pdu, P.ScsiResponse) and reply.pdu.itt == cmd.itt
    assert reply.pdu.status == 0x02 and reply.data[2 + 12:2 + 14] == b"\x4b\x02"
    assert not conn.tasks
    assert len(conn.table) == 0
    assert window(conn) == depth(conn)
    # The ITT is free again: a new command with it is not refused as 'task in progress'.
    ini.command(TUR, itt=0x10)
    (answer,) = drain(conn)
    assert isinstance(answer.pdu, P.ScsiResponse) and answer.pdu.itt == 0x10


def small_table() -> tuple[TargetConnection, Initiator]:
    """A table whose R2T room is one entry (queue depth 2, one immediate command, 5 entries:
    one unsolicited entry stays free for each task the window allows)."""
    catalog = make_catalog(size=SIZE)
    catalog.limits.queue_depth, catalog.limits.immediate_commands = 2, 1
    catalog.limits.table_entries = 5
    conn = TargetConnection(catalog, "regression")
    ini = Initiator(conn)
    ini.login()
    conn.take_output()
    assert conn.transfers.r2t_budget == 1
    return conn, ini


def test_write_waiting_for_a_table_entry_resumes_when_one_frees() -> None:
    """Table capacity 1 (reachable by default only with larger queue_depth or
    MaxOutstandingR2T limits): WRITE(10) A (ITT 0x10, LBA 0, 1 block, no data) takes the
    only entry for its R2T; WRITE(10) B (ITT 0x11, LBA 8, 1 block, no data) gets no R2T;
    A's Data-Out frees the entry, A is answered GOOD, and B must now get its R2T."""
    conn, ini = small_table()
    ini.command(write10(0, 1), edtl=512, write=True, itt=0x10)
    ini.command(write10(8, 1), edtl=512, write=True, itt=0x11)
    first = drain(conn)
    assert [type(r.pdu) for r in first] == [P.R2T]
    after = answer_r2ts(conn, first)
    assert any(isinstance(r.pdu, P.ScsiResponse) and r.pdu.itt == 0x10 for r in after)
    assert any(isinstance(r.pdu, P.R2T) and r.pdu.itt == 0x11 for r in after), \
        "WRITE B never gets an R2T: it waits forever"


def test_full_table_still_takes_unsolicited_data() -> None:
    """WRITE(10) A (ITT 0x10, 1 block, no data) takes the only R2T entry; WRITE(10) B (ITT
    0x11, LBA 8, 1 block, EDTL 512) with 512 bytes of immediate data still lands: an entry
    for each task's unsolicited data is always kept free, so a legal command is never
    refused for lack of one."""
    conn, ini = small_table()
    ini.command(write10(0, 1), edtl=512, write=True, itt=0x10)
    ini.command(write10(8, 1), edtl=512, write=True, itt=0x11, immediate_data=b"\xaa" * 512)
    replies = drain(conn)
    assert any(isinstance(r.pdu, P.ScsiResponse) and r.pdu.itt == 0x11 and r.pdu.status == 0
               for r in replies)
    view = conn.catalog.targets[next(iter(conn.catalog.targets))].luns[0].store.view(8 * 512, 512)
    assert bytes(view) == b"\xaa" * 512


def abort_held_write(conn: TargetConnection, n: int, immediate: int) -> list[Reply]:
    """CmdSN n missing; CmdSN n+1 a WRITE(10) ITT 0x11 LBA 8 x1, EDTL 512, with
    ``immediate`` bytes 0xAA (held behind the gap); ABORT TASK of it (immediate) answered
    'function complete'; then a NOP-Out at CmdSN n plugs the gap. What came after."""
    feed(conn, wire(P.ScsiCommand(itt=0x11, cdb=write10(8, 1), expected_length=512,
                                  cmdsn=n + 1, write=True, data_length=immediate),
                    b"\xaa" * immediate))
    feed(conn, wire(P.TaskMgmtRequest(itt=0x20, function=TmfFunction.ABORT_TASK,
                                      referenced_tag=0x11, cmdsn=n + 2, refcmdsn=n + 1,
                                      immediate=True)))
    replies = drain(conn)
    assert [type(r.pdu) for r in replies] == [P.TaskMgmtResponse]
    assert replies[0].pdu.response == TmfResponse.FUNCTION_COMPLETE  # type: ignore[attr-defined]
    feed(conn, wire(P.NopOut(itt=0x21, cmdsn=n, immediate=False)))
    return drain(conn)


def test_abort_of_a_command_queued_behind_a_gap_really_aborts_it() -> None:
    """CmdSN n is missing (a gap). CmdSN n+1: WRITE(10) ITT 0x11 LBA 8 x1, EDTL 512, 512 bytes
    0xAA immediate (held behind the gap). ABORT TASK (immediate) RefTaskTag 0x11 RefCmdSN n+1
    -> 'function complete'. NOP-Out CmdSN n plugs the gap: the aborted WRITE must not run, its
    data must not land, and nothing is left behind."""
    conn, ini, store = setup()
    n = ini.cmdsn
    before = bytes(store[8 * 512:9 * 512])
    later = abort_held_write(conn, n, 512)
    assert not [r for r in later if isinstance(r.pdu, P.ScsiResponse) and r.pdu.itt == 0x11]
    assert bytes(store[8 * 512:9 * 512]) == before, "the aborted WRITE's data landed"
    assert not conn.tasks and len(conn.table) == 0
    assert window(conn) == depth(conn)


def test_abort_of_a_refused_command_queued_behind_a_gap_sends_no_answer() -> None:
    """CmdSN n is missing (a gap). CmdSN n+1: WRITE(10) ITT 0x11 LBA 8 x1, EDTL 512, 513
    bytes of immediate data: refused (TOO MUCH WRITE DATA), its CHECK CONDITION held until
    the gap closes; it has no task. ABORT TASK (immediate) RefTaskTag 0x11 RefCmdSN n+1 ->
    'function complete'. NOP-Out CmdSN n plugs the gap: the aborted command's CHECK
    CONDITION must not follow the TMF response (RFC 7143 §11.5.1). Found by the oracle
    once commands discarded for a data digest error left gaps."""
    conn, ini, _ = setup()
    n = ini.cmdsn
    later = abort_held_write(conn, n, 513)
    assert [(type(r.pdu), r.pdu.itt) for r in later] == [(P.NopIn, 0x21)]
    assert not conn.tasks and len(conn.table) == 0
    assert conn.session is not None and conn.session.expcmdsn == n + 2
    assert window(conn) == depth(conn)


def test_duplicate_itt_among_queued_commands_leaves_nothing_behind() -> None:
    """CmdSN n missing (a gap). CmdSN n+1: WRITE(10) ITT 0x11 LBA 8 x1, no data (held). CmdSN
    n+2: TEST UNIT READY reusing ITT 0x11 -> Reject 0x07, its CmdSN taken when the gap closes.
    NOP-Out CmdSN n plugs the gap; the R2T is answered. Everything ends, the window is whole."""
    conn, ini, _ = setup()
    n = ini.cmdsn
    feed(conn, wire(P.ScsiCommand(itt=0x11, cdb=write10(8, 1), expected_length=512,
                                  cmdsn=n + 1, write=True)))
    feed(conn, wire(P.ScsiCommand(itt=0x11, cdb=TUR, cmdsn=n + 2)))
    replies = drain(conn)
    assert [(type(r.pdu), getattr(r.pdu, "reason", None)) for r in replies] == [
        (P.Reject, RejectReason.TASK_IN_PROGRESS)]
    feed(conn, wire(P.NopOut(itt=0x21, cmdsn=n, immediate=False)))
    replies += drain(conn)
    done = answer_r2ts(conn, replies)
    assert any(isinstance(r.pdu, P.ScsiResponse) and r.pdu.itt == 0x11 for r in done)
    assert not conn.tasks and len(conn.table) == 0
    assert window(conn) == depth(conn)


def test_command_with_a_bad_data_digest_is_discarded() -> None:
    """DataDigest=CRC32C. CmdSN n: WRITE(10) ITT 0x10 LBA 0 x1, EDTL 512, F=1, 512 bytes 0xAA
    immediate, the last payload byte flipped after the CRC32C was computed. RFC 7143 §7.8:
    Reject 0x02 and discard the command (a non-data PDU); its immediate data is recovered
    when the initiator retries it. The retry (same ITT and CmdSN, good digest) must be
    answered."""
    conn, ini, store = setup(data_digest=("CRC32C",))
    n = ini.cmdsn
    cmd = P.ScsiCommand(itt=0x10, cdb=write10(0, 1), expected_length=512, cmdsn=n,
                        write=True, data_length=512)
    good = b"".join(bytes(b) for b in frame(cmd.encode(), b"\xaa" * 512, data_digest=True))
    bad = bytearray(good)
    bad[48 + 511] ^= 0x01
    feed(conn, bytes(bad))
    out, _ = conn.take_output()
    stream = b"".join(bytes(b) for b in out)
    reject = P.decode_bhs(stream[:48])
    assert isinstance(reject, P.Reject) and reject.reason == RejectReason.DATA_DIGEST_ERROR
    assert len(stream) == 48 + 48 + 4, "more than the Reject was sent"
    assert store[511] != 0xAA ^ 0x01
    feed(conn, good)  # the retry
    out, _ = conn.take_output()
    stream = b"".join(bytes(b) for b in out)
    assert stream, "the retried command was dropped"
    answer = P.decode_bhs(stream[:48])
    assert isinstance(answer, P.ScsiResponse) and answer.itt == 0x10 and answer.status == 0
    assert bytes(store[:512]) == b"\xaa" * 512
