"""Admission is all or nothing (RFC 7143 §3.2.2.1, §11.3, §11.17): a refused command leaves
no task, no table entry, no busy ITT, and the command window never shrinks."""

from __future__ import annotations

import struct
from collections.abc import Iterator

import pytest

from pyiscsi.proto import pdu as P
from pyiscsi.proto.wire import RejectReason, ScsiStatus
from pyiscsi.scsi.sense import SenseKey
from pyiscsi.target.connection import TargetConnection

from ..pair import TARGET, Initiator, drain, feed, make_catalog, wire

BLOCK = 512
DEPTH = 128


def write10(lba: int, blocks: int) -> bytes:
    return struct.pack(">BBIBHB", 0x2A, 0, lba, 0, blocks, 0)


def read10(lba: int, blocks: int) -> bytes:
    return struct.pack(">BBIBHB", 0x28, 0, lba, 0, blocks, 0)


@pytest.fixture
def pair() -> Iterator[Initiator]:
    conn = TargetConnection(make_catalog(), "test")
    ini = Initiator(conn)
    ini.login(max_recv_data_segment_length=8192, max_burst_length=65536,
              first_burst_length=16384, max_outstanding_r2t=4)
    drain(conn)
    yield ini
    conn.close()


def window(ini: Initiator) -> int:
    s = ini.conn.session
    assert s is not None
    s.slide()
    return (s.maxcmdsn - s.expcmdsn + 1) & 0xFFFFFFFF


def nothing_left(ini: Initiator) -> None:
    conn = ini.conn
    assert conn.tasks == {} and len(conn.table) == 0
    assert conn._held == {} and conn.transfers.held_bytes == 0 and conn.transfers.r2t_entries == 0
    assert window(ini) == DEPTH


def sense_key_asc(reply_data: bytes) -> tuple[int, int, int]:
    sense = reply_data[2:]
    return sense[2] & 0x0F, sense[12], sense[13]


def store(ini: Initiator) -> memoryview:
    lu = ini.conn.catalog.targets[TARGET].luns[0]
    return lu.store.view(0, lu.store.size)


def test_immediate_data_past_edtl_is_a_check_condition_that_leaves_nothing(
        pair: Initiator) -> None:
    """The issue's case: WRITE(10) of one block (EDTL 512) carrying 1024 bytes."""
    for _ in range(3):  # three in a row: the window would shrink by one each time
        cmd = pair.command(write10(0, 1), edtl=BLOCK, write=True,
                           immediate_data=b"\xab" * 1024, itt=0x42)
        (reply,) = drain(pair.conn)
        assert isinstance(reply.pdu, P.ScsiResponse) and reply.pdu.itt == cmd.itt
        assert reply.pdu.status == ScsiStatus.CHECK_CONDITION
        assert sense_key_asc(reply.data) == (SenseKey.ABORTED_COMMAND, 0x4B, 0x02)
        assert reply.pdu.expcmdsn == pair.cmdsn  # the CmdSN was taken: no gap
        nothing_left(pair)
    assert bytes(store(pair)[:1024]) == bytes(1024)
    # the same ITT is free for a good command at once
    pair.command(read10(0, 1), edtl=BLOCK, read=True, itt=0x42)
    (reply,) = drain(pair.conn)
    assert isinstance(reply.pdu, P.DataIn) and reply.pdu.has_status
    nothing_left(pair)


def test_immediate_data_past_first_burst_length_is_refused(pair: Initiator) -> None:
    cmd = pair.command(write10(0, 64), edtl=64 * BLOCK, write=True,
                       immediate_data=b"\x01" * 8192, final=False)
    drain(pair.conn)  # 8192 <= FirstBurstLength 16384: admitted, R2Ts for the rest
    assert cmd.itt in pair.conn.tasks
    pair.conn.close()
    conn = TargetConnection(make_catalog(), "t2")
    ini = Initiator(conn)
    ini.login(max_recv_data_segment_length=8192, first_burst_length=4096)
    drain(conn)
    ini.command(write10(0, 64), edtl=64 * BLOCK, write=True, immediate_data=b"\x01" * 8192)
    (reply,) = drain(conn)
    assert isinstance(reply.pdu, P.ScsiResponse)
    assert sense_key_asc(reply.data) == (SenseKey.ABORTED_COMMAND, 0x4B, 0x02)
    nothing_left(ini)
    conn.close()


def test_immediate_data_on_a_read_is_refused(pair: Initiator) -> None:
    pair.command(read10(0, 1), edtl=BLOCK, read=True, immediate_data=b"\x00" * 16)
    (reply,) = drain(pair.conn)
    assert isinstance(reply.pdu, P.ScsiResponse)
    assert reply.pdu.status == ScsiStatus.CHECK_CONDITION
    nothing_left(pair)


def test_immediate_data_when_immediatedata_no_is_refused() -> None:
    conn = TargetConnection(make_catalog(), "t")
    ini = Initiator(conn)
    ini.login(immediate_data=False)
    drain(conn)
    ini.command(write10(0, 1), edtl=BLOCK, write=True, immediate_data=b"\x01" * BLOCK)
    (reply,) = drain(conn)
    assert isinstance(reply.pdu, P.ScsiResponse)
    assert sense_key_asc(reply.data) == (SenseKey.ILLEGAL_REQUEST, 0x0E, 0x03)
    assert bytes(store(ini)[:BLOCK]) == bytes(BLOCK)
    nothing_left(ini)
    conn.close()


def test_a_refused_command_behind_a_gap_takes_its_cmdsn_and_the_session_goes_on(
        pair: Initiator) -> None:
    """The raise that used to close the connection: the bad command waits behind a gap."""
    first = pair.cmdsn
    pair.cmdsn += 1  # leave a gap at `first`
    bad = pair.command(write10(0, 1), edtl=BLOCK, write=True, immediate_data=b"\xcd" * 1024)
    assert drain(pair.conn) == []  # held: nothing runs past the gap
    gap_filler = P.ScsiCommand(itt=0x900, cdb=read10(0, 1).ljust(16, b"\0"),
                               expected_length=BLOCK, cmdsn=first, read=True)
    feed(pair.conn, wire(gap_filler))
    replies = drain(pair.conn)
    assert [r.pdu.itt for r in replies] == [0x900, bad.itt]
    assert isinstance(replies[1].pdu, P.ScsiResponse)
    assert replies[1].pdu.status == ScsiStatus.CHECK_CONDITION
    assert pair.conn.phase.name == "FULL_FEATURE"
    nothing_left(pair)


def test_itt_in_use_is_rejected_without_a_gap(pair: Initiator) -> None:
    running = pair.command(write10(0, 64), edtl=64 * BLOCK, write=True)
    (r2t,) = [r.pdu for r in drain(pair.conn)]
    assert isinstance(r2t, P.R2T)
    pair.command(read10(0, 1), edtl=BLOCK, read=True, itt=running.itt)
    (reply,) = drain(pair.conn)
    assert isinstance(reply.pdu, P.Reject) and reply.pdu.reason == RejectReason.TASK_IN_PROGRESS
    # the duplicate took its CmdSN: the next command runs, it is not held behind a gap
    pair.command(read10(0, 1), edtl=BLOCK, read=True)
    (reply,) = drain(pair.conn)
    assert isinstance(reply.pdu, P.DataIn)
    assert list(pair.conn.tasks) == [running.itt]  # the original task is untouched


def test_too_many_immediate_commands_are_rejected_0x06() -> None:
    catalog = make_catalog()
    catalog.limits.immediate_commands = 2
    conn = TargetConnection(catalog, "t")
    ini = Initiator(conn)
    ini.login(max_burst_length=65536)
    drain(conn)
    for n in range(3):
        cmd = P.ScsiCommand(itt=0x500 + n, cdb=write10(n * 64, 64).ljust(16, b"\0"),
                            expected_length=64 * BLOCK, cmdsn=ini.cmdsn, write=True,
                            immediate=True)
        feed(conn, wire(cmd))
    replies = [r.pdu for r in drain(conn)]
    assert [type(p).__name__ for p in replies] == ["R2T", "R2T", "Reject"]
    assert isinstance(replies[2], P.Reject)
    assert replies[2].reason == RejectReason.IMMEDIATE_COMMAND_REJECT
    assert sorted(conn.tasks) == [0x500, 0x501]
    conn.close()


def test_a_bad_lun_is_a_scsi_answer_not_a_refusal(pair: Initiator) -> None:
    pair.command(bytes([0x12, 0, 0, 0, 96, 0]), lun=7, edtl=96, read=True)
    (reply,) = drain(pair.conn)
    assert isinstance(reply.pdu, P.DataIn)
    assert reply.data[0] >> 5 == 3  # PQ=3: no logical unit here (SPC-4 §6.6.2)
    nothing_left(pair)


def test_a_bad_data_out_gets_its_reject_plus_the_commands_check_condition(
        pair: Initiator) -> None:
    cmd = pair.command(write10(0, 16), edtl=16 * BLOCK, write=True)
    (r2t,) = [r.pdu for r in drain(pair.conn)]
    assert isinstance(r2t, P.R2T)
    # the burst's first PDU at the wrong offset, then the rest of the burst with F
    feed(pair.conn, wire(P.DataOut(itt=cmd.itt, ttt=r2t.ttt, buffer_offset=512,
                                   data_length=4096), b"\x11" * 4096))
    feed(pair.conn, wire(P.DataOut(itt=cmd.itt, ttt=r2t.ttt, buffer_offset=4096,
                                   data_length=4096, datasn=1, final=True), b"\x22" * 4096))
    replies = [r for r in drain(pair.conn)]
    assert isinstance(replies[0].pdu, P.Reject)
    assert replies[0].pdu.reason == RejectReason.INVALID_PDU_FIELD
    assert isinstance(replies[-1].pdu, P.ScsiResponse) and replies[-1].pdu.itt == cmd.itt
    assert sense_key_asc(replies[-1].data) == (SenseKey.ABORTED_COMMAND, 0x4B, 0x05)
    assert bytes(store(pair)[:8192]) == bytes(8192)  # nothing of it was stored
    nothing_left(pair)


def test_a_final_data_out_before_the_burst_is_whole_fails_the_task(pair: Initiator) -> None:
    cmd = pair.command(write10(0, 16), edtl=16 * BLOCK, write=True)
    (r2t,) = [r.pdu for r in drain(pair.conn)]
    assert isinstance(r2t, P.R2T)
    feed(pair.conn, wire(P.DataOut(itt=cmd.itt, ttt=r2t.ttt, buffer_offset=0,
                                   data_length=4096, final=True), b"\x11" * 4096))
    (reply,) = drain(pair.conn)
    assert isinstance(reply.pdu, P.ScsiResponse)
    assert sense_key_asc(reply.data) == (SenseKey.ABORTED_COMMAND, 0x4B, 0x00)
    nothing_left(pair)


def test_snack_and_target_opcodes_are_rejected_by_the_table(pair: Initiator) -> None:
    feed(pair.conn, wire(P.SnackRequest(itt=1)))
    feed(pair.conn, wire(P.NopIn(itt=2, ttt=0xFFFFFFFF)))
    header = bytearray(wire(P.NopOut(itt=3)))
    header[0] = 0x1C  # no such opcode
    feed(pair.conn, bytes(header))
    reasons = [r.pdu.reason for r in drain(pair.conn) if isinstance(r.pdu, P.Reject)]
    assert reasons == [RejectReason.PROTOCOL_ERROR, RejectReason.PROTOCOL_ERROR,
                       RejectReason.COMMAND_NOT_SUPPORTED]
    nothing_left(pair)
