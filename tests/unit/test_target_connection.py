"""The target engine against an in-memory initiator: Fig 7 reads, Fig 8 writes, sequencing."""

from __future__ import annotations

import struct

import pytest

from pyiscsi.proto import pdu as P
from pyiscsi.proto.discovery import parse_send_targets
from pyiscsi.proto.errors import RemoteProtocolError
from pyiscsi.proto.wire import Opcode, RejectReason
from pyiscsi.target.connection import Phase, TargetConnection

from ..pair import TARGET, Initiator, drain, feed, make_catalog, wire

BLOCK = 512


def read10(lba: int, blocks: int) -> bytes:
    return struct.pack(">BBIBHB", 0x28, 0, lba, 0, blocks, 0)


def write10(lba: int, blocks: int, fua: bool = False) -> bytes:
    return struct.pack(">BBIBHB", 0x2A, 0x08 if fua else 0, lba, 0, blocks, 0)


@pytest.fixture
def pair() -> Initiator:
    conn = TargetConnection(make_catalog(), "test")
    ini = Initiator(conn)
    ini.login(max_recv_data_segment_length=8192, max_burst_length=65536,
              first_burst_length=16384, max_outstanding_r2t=4)
    yield ini
    conn.close()


def store(ini: Initiator) -> memoryview:
    lu = ini.conn.catalog.targets[TARGET].luns[0]
    return lu.store.view(0, lu.store.size)


def test_login_reaches_full_feature_with_agreed_keys(pair: Initiator) -> None:
    assert pair.conn.phase is Phase.FULL_FEATURE
    params = pair.conn.params
    assert params is not None
    assert params.max_send_data_segment_length == 8192  # what the initiator declared
    assert params.max_burst_length == 65536 and params.max_outstanding_r2t == 4
    assert pair.conn.receiver.max_data_length == 262144  # what we declared


def test_read_fig7_data_in_sequence(pair: Initiator) -> None:
    mem = store(pair)
    mem[0:200 * BLOCK] = bytes(i % 251 for i in range(200 * BLOCK))
    cmd = pair.command(read10(0, 200), edtl=200 * BLOCK, read=True)
    out, payload_bytes = pair.conn.take_output()
    # the payload goes to the transport as views of the store's own memory (no copy)
    assert sum(payload_bytes) == 200 * BLOCK
    views = [b for b in out if isinstance(b, memoryview) and b.obj is mem.obj]
    assert sum(len(v) for v in views) == 200 * BLOCK
    replies = drain(pair.conn, out)
    assert all(r.pdu.opcode == Opcode.DATA_IN for r in replies)
    data = b"".join(r.data for r in replies)
    assert data == bytes(mem[:200 * BLOCK])
    assert [r.pdu.datasn for r in replies] == list(range(len(replies)))
    assert all(len(r.data) <= 8192 for r in replies)
    offsets = [r.pdu.buffer_offset for r in replies]
    assert offsets == sorted(offsets) and offsets[0] == 0
    # F bit at every MaxBurstLength boundary; status only in the last (phase collapse)
    assert [r.pdu.buffer_offset + len(r.data) for r in replies if r.pdu.final] == \
        [65536, 200 * BLOCK]
    last = replies[-1].pdu
    assert last.has_status and last.status == 0 and last.itt == cmd.itt
    assert not any(r.pdu.has_status for r in replies[:-1])


def test_read_residual_underflow_and_overflow(pair: Initiator) -> None:
    pair.command(read10(0, 4), edtl=8 * BLOCK, read=True)
    last = drain(pair.conn)[-1].pdu
    assert last.underflow and last.residual == 4 * BLOCK
    pair.command(read10(0, 8), edtl=2 * BLOCK, read=True)
    replies = drain(pair.conn)
    assert sum(len(r.data) for r in replies) == 2 * BLOCK
    assert replies[-1].pdu.overflow and replies[-1].pdu.residual == 6 * BLOCK


def test_write_fig8_immediate_unsolicited_and_r2ts(pair: Initiator) -> None:
    mem = store(pair)
    blocks = 600  # 300 KiB: 8 KiB immediate, unsolicited up to 16 KiB, the rest by R2T
    payload = bytes((i * 7) % 253 for i in range(blocks * BLOCK))
    cmd = pair.command(write10(10, blocks), edtl=len(payload), write=True,
                       immediate_data=payload[:8192], final=False)
    # unsolicited Data-Out (TTT 0xffffffff) up to FirstBurstLength
    feed(pair.conn, wire(P.DataOut(itt=cmd.itt, ttt=0xFFFFFFFF, buffer_offset=8192,
                                   data_length=8192, final=True), payload[8192:16384]))
    r2ts = [r.pdu for r in drain(pair.conn)]
    assert all(isinstance(r, P.R2T) for r in r2ts)
    assert len(r2ts) == 4  # MaxOutstandingR2T of 5 bursts
    assert r2ts[0].buffer_offset == 16384 and r2ts[0].desired_length == 65536
    assert [r.r2tsn for r in r2ts] == [0, 1, 2, 3]
    pending = list(r2ts)
    sent_r2ts = len(r2ts)
    while pending:
        r2t = pending.pop(0)
        off, end = r2t.buffer_offset, r2t.buffer_offset + r2t.desired_length
        datasn = 0
        while off < end:
            n = min(8192, end - off)
            feed(pair.conn, wire(P.DataOut(itt=cmd.itt, ttt=r2t.ttt, buffer_offset=off,
                                           data_length=n, datasn=datasn, final=off + n == end,
                                           lun=0), payload[off:off + n]))
            datasn += 1
            off += n
        for reply in drain(pair.conn):
            if isinstance(reply.pdu, P.R2T):
                pending.append(reply.pdu)
                sent_r2ts += 1
            else:
                assert isinstance(reply.pdu, P.ScsiResponse)
                assert reply.pdu.status == 0 and reply.pdu.itt == cmd.itt
                assert not pending
    assert sent_r2ts == 5
    assert bytes(mem[10 * BLOCK:(10 + blocks) * BLOCK]) == payload
    assert len(pair.conn.table) == 0  # every entry freed


def test_r2t_data_out_is_received_straight_into_the_store(pair: Initiator) -> None:
    mem = store(pair)
    cmd = pair.command(write10(0, 128), edtl=65536, write=True)
    (r2t,) = [r.pdu for r in drain(pair.conn)]
    assert isinstance(r2t, P.R2T)
    staged = pair.conn.counters.rx_staged
    placed = pair.conn.counters.rx_placed
    header = P.DataOut(itt=cmd.itt, ttt=r2t.ttt, buffer_offset=0, data_length=8192,
                       final=False).encode()
    buf = pair.conn.get_buffer()
    assert len(buf) == 48  # header read exactly while a burst is open
    buf[:] = header
    pair.conn.advance(48)
    direct = pair.conn.get_buffer()
    assert direct.obj is mem.obj  # a view of the store's own memory, not a stand-in
    assert len(direct) == 8192
    direct[:] = b"\x5a" * 8192
    pair.conn.advance(8192)
    assert pair.conn.counters.rx_staged == staged and pair.conn.counters.rx_placed == placed + 8192
    assert bytes(mem[:8192]) == b"\x5a" * 8192


def test_write_beyond_end_drains_immediate_data(pair: Initiator) -> None:
    lu_blocks = (16 << 20) // BLOCK
    mem = store(pair)
    pair.command(write10(lu_blocks - 1, 2), edtl=1024, write=True, immediate_data=b"\1" * 1024)
    (reply,) = drain(pair.conn)
    assert isinstance(reply.pdu, P.ScsiResponse) and reply.pdu.status == 2
    sense = reply.data[2:]
    assert sense[2] & 0x0F == 0x05 and sense[12:14] == b"\x21\x00"  # LBA OUT OF RANGE
    assert bytes(mem[-512:]) == bytes(512)


def test_bad_datasn_fails_the_command(pair: Initiator) -> None:
    cmd = pair.command(write10(0, 2), edtl=1024, write=True)
    (r2t,) = [r.pdu for r in drain(pair.conn)]
    feed(pair.conn, wire(P.DataOut(itt=cmd.itt, ttt=r2t.ttt, buffer_offset=0, data_length=1024,
                                   datasn=27, final=True), b"\x01" * 1024))
    (reply,) = drain(pair.conn)
    assert reply.pdu.status == 2 and reply.data[2 + 2] & 0x0F == 0x0B  # ABORTED COMMAND
    assert bytes(store(pair)[:1024]) == bytes(1024)


def test_cmdsn_outside_window_is_ignored_and_gap_is_queued(pair: Initiator) -> None:
    tur = bytes(6)
    exp = pair.cmdsn
    pair.cmdsn = exp + 1000  # beyond MaxCmdSN
    pair.command(tur)
    assert drain(pair.conn) == []
    pair.cmdsn = exp + 1  # a gap: held until exp arrives
    later = pair.command(tur)
    assert drain(pair.conn) == []
    pair.cmdsn = exp
    first = pair.command(tur)
    replies = drain(pair.conn)
    assert [r.pdu.itt for r in replies] == [first.itt, later.itt]
    assert replies[-1].pdu.expcmdsn == exp + 2


def test_nop_out_ping_is_echoed(pair: Initiator) -> None:
    feed(pair.conn, wire(P.NopOut(itt=0x99, cmdsn=pair.cmdsn, data_length=5), b"hello"))
    (reply,) = drain(pair.conn)
    assert isinstance(reply.pdu, P.NopIn) and reply.pdu.itt == 0x99 and reply.data == b"hello"


def test_unknown_opcode_is_rejected(pair: Initiator) -> None:
    raw = bytes([0x1C]) + bytes(47)
    feed(pair.conn, raw)
    (reply,) = drain(pair.conn)
    assert isinstance(reply.pdu, P.Reject)
    assert reply.pdu.reason == RejectReason.COMMAND_NOT_SUPPORTED and reply.data == raw


def test_oversized_data_segment_closes_and_stores_nothing(pair: Initiator) -> None:
    cmd = pair.command(write10(0, 1024), edtl=1024 * BLOCK, write=True)
    r2t = drain(pair.conn)[0].pdu
    assert isinstance(r2t, P.R2T)
    size = 300000  # more than our MaxRecvDataSegmentLength
    with pytest.raises(RemoteProtocolError, match="DataSegmentLength"):
        feed(pair.conn, wire(P.DataOut(itt=cmd.itt, ttt=r2t.ttt, buffer_offset=0,
                                       data_length=size), b"\xff" * size))
    assert bytes(store(pair)[:size]) == bytes(size)


def test_abort_task_drains_open_bursts(pair: Initiator) -> None:
    cmd = pair.command(write10(0, 64), edtl=64 * BLOCK, write=True)
    (r2t,) = [r.pdu for r in drain(pair.conn)]
    feed(pair.conn, wire(P.TaskMgmtRequest(itt=0x500, function=1, referenced_tag=cmd.itt,
                                           cmdsn=pair.cmdsn, refcmdsn=cmd.cmdsn)))
    (reply,) = drain(pair.conn)
    assert isinstance(reply.pdu, P.TaskMgmtResponse) and reply.pdu.response == 0
    # §4.2.3.3: Data-Out for the aborted task's TTT is still accepted, and goes nowhere
    feed(pair.conn, wire(P.DataOut(itt=cmd.itt, ttt=r2t.ttt, buffer_offset=0,
                                   data_length=64 * BLOCK, final=True), b"\xff" * 64 * BLOCK))
    assert drain(pair.conn) == []
    assert bytes(store(pair)[:64 * BLOCK]) == bytes(64 * BLOCK)
    # the entry was freed: its tag is stale now
    feed(pair.conn, wire(P.DataOut(itt=cmd.itt, ttt=r2t.ttt, buffer_offset=0, data_length=512),
                         b"\xff" * 512))
    (reply,) = drain(pair.conn)
    assert isinstance(reply.pdu, P.Reject) and reply.pdu.reason == 0x09


def test_logout_closes_after_response(pair: Initiator) -> None:
    feed(pair.conn, wire(P.LogoutRequest(itt=0x42, reason=0, cmdsn=pair.cmdsn)))
    (reply,) = drain(pair.conn)
    assert isinstance(reply.pdu, P.LogoutResponse) and reply.pdu.response == 0
    assert pair.conn.close_after_send


def test_discovery_send_targets() -> None:
    catalog = make_catalog()
    catalog.portals = [("127.0.0.1", 3260), ("::1", 3261)]
    conn = TargetConnection(catalog, "disc")
    ini = Initiator(conn)
    ini.login(target=None)
    body = b"SendTargets=All\0"
    feed(conn, wire(P.TextRequest(itt=7, cmdsn=ini.cmdsn, data_length=len(body)), body))
    (reply,) = drain(conn)
    assert parse_send_targets(reply.data) == [
        (TARGET, ["127.0.0.1:3260,1", "[::1]:3261,1"])]
    conn.close()


def test_login_unknown_target_is_0203() -> None:
    conn = TargetConnection(make_catalog(), "x")
    ini = Initiator(conn)
    with pytest.raises(Exception) as info:
        ini.login(target="iqn.2026-11.org.nowhere:none")
    assert "0203" in str(info.value) or "NOT_FOUND" in str(info.value)
    status = ini.login_replies[-1].pdu
    assert (status.status_class, status.status_detail) == (2, 3)
    assert conn.close_after_send


def test_scsi_command_during_login_closes() -> None:
    conn = TargetConnection(make_catalog(), "x")
    with pytest.raises(RemoteProtocolError, match="opcode 0x01"):
        feed(conn, wire(P.ScsiCommand(itt=1, cdb=bytes(16))))


def test_idle_initiator_is_pinged_then_declared_dead(pair: Initiator) -> None:
    conn = pair.conn
    conn.tick(100.0)
    conn.tick(104.0)
    assert drain(conn) == []
    conn.tick(105.5)  # 5 s of silence: NOP-In asking for an answer
    (ping,) = drain(conn)
    assert isinstance(ping.pdu, P.NopIn)
    assert ping.pdu.itt == 0xFFFFFFFF and ping.pdu.ttt != 0xFFFFFFFF
    conn.received_at(106.0)  # the initiator answered
    feed(conn, wire(P.NopOut(itt=0xFFFFFFFF, ttt=ping.pdu.ttt, cmdsn=pair.cmdsn)))
    assert drain(conn) == [] and not conn.dead
    conn.tick(130.0)
    assert not conn.dead
    conn.tick(136.5)  # 30 s without a byte
    assert conn.dead


def test_text_continuations_are_bounded(pair: Initiator) -> None:
    chunk = b"X" * 8192
    for _ in range(9):
        feed(pair.conn, wire(P.TextRequest(itt=9, cmdsn=pair.cmdsn, final=False, cont=True,
                                           data_length=len(chunk)), chunk))
        pair.cmdsn += 1
    kinds = [type(r.pdu).__name__ for r in drain(pair.conn)]
    assert kinds[-1] == "Reject" and kinds.count("TextResponse") == 8


def test_huge_edtl_with_small_cdb_allocates_nothing_big(pair: Initiator) -> None:
    """Found by the fuzzer: EDTL 1.7 GB on a WRITE(6) of 256 blocks must not allocate EDTL."""
    import tracemalloc

    tracemalloc.start()
    try:
        cmd = pair.command(bytes.fromhex("0a0000000000"), edtl=0x6B0A0000, write=True,
                           immediate_data=b"\x01" * 8192, final=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20
    replies = drain(pair.conn)
    # only what the CDB transfers (128 KiB) is solicited, beyond the unsolicited burst
    r2ts = [r.pdu for r in replies if isinstance(r.pdu, P.R2T)]
    assert r2ts and all(r.itt == cmd.itt for r in r2ts)
    assert max(r.buffer_offset + r.desired_length for r in r2ts) <= 256 * BLOCK
