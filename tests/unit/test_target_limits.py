"""The engine under resource limits: a full data pointer table never stalls a legal write,
stale tags at queue depth 1, the partial-PDU deadline."""

from __future__ import annotations

import random
import struct

from pyiscsi.proto import pdu as P
from pyiscsi.proto.wire import RejectReason, ScsiStatus
from pyiscsi.target.connection import TargetConnection

from ..pair import TARGET, Initiator, drain, feed, make_catalog, wire

BLOCK = 512


def write10(lba: int, blocks: int) -> bytes:
    return struct.pack(">BBIBHB", 0x2A, 0, lba, 0, blocks, 0)


def test_a_full_table_makes_writes_wait_first_come_first_served() -> None:
    """Eight writes of 16 bursts each, with R2T room for two entries in the whole table:
    every write gets its R2Ts as entries free up, in arrival order, and lands intact."""
    catalog = make_catalog()
    limits = catalog.limits
    limits.queue_depth, limits.immediate_commands, limits.table_entries = 8, 1, 12
    conn = TargetConnection(catalog, "full")
    assert conn.transfers.r2t_budget == 2
    ini = Initiator(conn)
    ini.login(max_burst_length=4096, max_outstanding_r2t=8, initial_r2t=True,
              immediate_data=False)
    drain(conn)
    rng = random.Random(7)
    payloads = {}
    for n in range(8):
        cmd = ini.command(write10(n * 128, 128), edtl=128 * BLOCK, write=True)
        payloads[cmd.itt] = (n, rng.randbytes(128 * BLOCK))
    answered: list[int] = []
    first_r2t: list[int] = []
    pending = [r.pdu for r in drain(conn)]
    assert len(pending) == 2  # the table's R2T room
    for _ in range(1000):
        if not pending:
            break
        pdu = pending.pop(0)
        if isinstance(pdu, P.ScsiResponse):
            assert pdu.status == ScsiStatus.GOOD
            answered.append(pdu.itt)
            continue
        assert isinstance(pdu, P.R2T)
        if pdu.r2tsn == 0:
            first_r2t.append(pdu.itt)
        _, data = payloads[pdu.itt]
        chunk = data[pdu.buffer_offset:pdu.buffer_offset + pdu.desired_length]
        feed(conn, wire(P.DataOut(itt=pdu.itt, ttt=pdu.ttt, buffer_offset=pdu.buffer_offset,
                                  data_length=len(chunk), final=True), chunk))
        pending += [r.pdu for r in drain(conn)]
    assert sorted(answered) == sorted(payloads)
    assert first_r2t == sorted(payloads)  # FIFO: in the order the commands came
    view = catalog.targets[TARGET].luns[0].store.view(0, 8 * 128 * BLOCK)
    for n, data in payloads.values():
        assert bytes(view[n * 128 * BLOCK:(n + 1) * 128 * BLOCK]) == data
    assert conn.tasks == {} and len(conn.table) == 0 and conn.transfers.r2t_entries == 0
    conn.close()


def test_stale_ttt_at_queue_depth_one_is_refused() -> None:
    """The same write again and again: an old TTT with the right ITT, LUN and offset is
    caught by its generation, never written through."""
    conn = TargetConnection(make_catalog(), "qd1")
    ini = Initiator(conn)
    ini.login(initial_r2t=True, immediate_data=False)
    drain(conn)
    ttts = []
    for _ in range(40):
        cmd = ini.command(write10(0, 8), edtl=8 * BLOCK, write=True, itt=0x10)
        (r2t,) = [r.pdu for r in drain(conn)]
        assert isinstance(r2t, P.R2T)
        ttts.append(r2t.ttt)
        feed(conn, wire(P.DataOut(itt=cmd.itt, ttt=r2t.ttt, buffer_offset=0,
                                  data_length=8 * BLOCK, final=True), b"\x01" * 8 * BLOCK))
        (rsp,) = [r.pdu for r in drain(conn)]
        assert isinstance(rsp, P.ScsiResponse)
    assert len(set(ttts)) == len(ttts)  # no TTT value came back
    cmd = ini.command(write10(0, 8), edtl=8 * BLOCK, write=True, itt=0x10)
    (r2t,) = [r.pdu for r in drain(conn)]
    feed(conn, wire(P.DataOut(itt=cmd.itt, ttt=ttts[-1], buffer_offset=0,
                              data_length=8 * BLOCK, final=True), b"\xee" * 8 * BLOCK))
    (reject,) = [r.pdu for r in drain(conn)]
    assert isinstance(reject, P.Reject) and reject.reason == RejectReason.INVALID_PDU_FIELD
    view = conn.catalog.targets[TARGET].luns[0].store.view(0, 8 * BLOCK)
    assert bytes(view) == b"\x01" * 8 * BLOCK
    conn.close()


def test_a_partial_pdu_is_closed_after_the_deadline() -> None:
    catalog = make_catalog()
    catalog.limits.partial_pdu_timeout = 10.0
    conn = TargetConnection(catalog, "slow")
    ini = Initiator(conn)
    ini.login()
    drain(conn)
    conn.received_at(100.0)
    conn.tick(100.0)
    half = wire(P.NopOut(itt=5, data_length=100), b"x" * 100)[:70]
    feed(conn, half)
    conn.received_at(101.0)
    conn.tick(105.0)
    assert not conn.dead
    before = conn.state.receive.partial_pdus
    conn.tick(111.0)
    assert conn.dead and conn.state.receive.partial_pdus == before + 1
    conn.close()


def test_an_idle_connection_between_pdus_is_not_a_partial_pdu() -> None:
    catalog = make_catalog()
    catalog.limits.nop_interval = 0  # no pings: only the partial-PDU rule could close it
    conn = TargetConnection(catalog, "idle")
    Initiator(conn).login()
    conn.received_at(1.0)
    conn.tick(1.0)
    conn.tick(1000.0)
    assert not conn.dead
    conn.close()
