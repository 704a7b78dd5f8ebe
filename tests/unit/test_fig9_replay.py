"""Fig 9 of US 7,512,663, replayed through the target's real receive path.

Fig 9C's three table entries (index 0x10, 0x11, 0x12 on connection 0x0123) point into one
bytearray standing for memory from 0x0005_4000 up; Fig 9D's eight Data-Outs are fed as
wire bytes into the connection's ``get_buffer()``/``advance()``. Each payload must land at
``pointer + (BufferOffset - data offset)``, and nowhere else.
"""

from __future__ import annotations

import pytest

from pyiscsi.proto import pdu as P
from pyiscsi.proto.wire import Opcode
from pyiscsi.scsi.task import DataOutPlan, ScsiResult
from pyiscsi.target.connection import TargetConnection
from pyiscsi.target.task import Task

from ..pair import Initiator, drain, feed, make_catalog, wire

BASE = 0x0005_4000
FIG9C = [  # index, data pointer, data offset, data length
    (0x10, 0x0005_4000, 0x0000, 0x4000),
    (0x11, 0x0006_8000, 0x4000, 0x8000),
    (0x12, 0x0008_0000, 0xC000, 0x4000),
]
FIG9D = [  # TTT, offset, length
    (0x0010_0123, 0x0000, 0x2000),
    (0x0010_0123, 0x2000, 0x2000),
    (0x0011_0123, 0x4000, 0x2000),
    (0x0011_0123, 0x6000, 0x2000),
    (0x0011_0123, 0x8000, 0x2000),
    (0x0011_0123, 0xA000, 0x2000),
    (0x0012_0123, 0xC000, 0x2000),
    (0x0012_0123, 0xE000, 0x2000),
]
ITT = 0x77


@pytest.fixture
def conn() -> TargetConnection:
    c = TargetConnection(make_catalog(), "fig9", number=0x0123)
    Initiator(c).login()
    yield c
    c.close()


@pytest.mark.parametrize("chunk", [1 << 20, 4096, 48, 7])
def test_fig9_data_outs_land_where_the_table_points(conn: TargetConnection, chunk: int) -> None:
    memory = bytearray(b"\xee" * (0x0008_4000 - BASE))
    cmd = P.ScsiCommand(itt=ITT, cdb=b"\x2a" + bytes(15), expected_length=0x10000, write=True)
    task = Task(cmd, 0)
    task.started = True  # its CmdSN was reached: the SCSI layer ran (the plan below)
    conn.tasks[ITT] = task
    tags = []
    for index, pointer, offset, length in FIG9C:
        dest = memoryview(memory)[pointer - BASE:pointer - BASE + length]
        tags.append(conn.table.allocate(dest, offset, length, itt=ITT, owner=task, index=index))
        task.outstanding.add(tags[-1])
        conn.transfers.r2t_entries += 1
    assert tags == [0x0010_0123, 0x0011_0123, 0x0012_0123]  # Fig 9B's TTTs
    task.next_r2t = task.edtl = task.want = task.limit = 0x10000
    completed = []
    task.plan = DataOutPlan(memoryview(memory), 0x10000,
                            lambda n: completed.append(n) or ScsiResult())

    placed_before = conn.counters.rx_placed + conn.counters.rx_staged
    expected = bytearray(memory)
    stream = b""
    datasn = {t: 0 for t in tags}
    for n, (ttt, offset, length) in enumerate(FIG9D, start=1):
        payload = bytes([n]) * length
        entry = next(e for e in FIG9C if (ttt >> 16) & 0xFFF == e[0])
        address = entry[1] + (offset - entry[2])
        expected[address - BASE:address - BASE + length] = payload
        last = offset + length == entry[2] + entry[3]
        stream += wire(P.DataOut(itt=ITT, ttt=ttt, buffer_offset=offset, data_length=length,
                                 datasn=datasn[ttt], final=last), payload)
        datasn[ttt] += 1
    feed(conn, stream, chunk)

    assert memory == expected  # every payload at its address, 0xee everywhere else
    # the worked example of the design notes: TTT 0x0011_0123, offset 0x6000 -> 0x0006_a000
    assert memory[0x0006_A000 - BASE:0x0006_C000 - BASE] == bytes([4]) * 0x2000
    assert conn.counters.rx_placed + conn.counters.rx_staged - placed_before == 0x10000
    # all data in: entries freed (tags now stale) and the command answered
    assert all(not conn.table.entries[i].in_use for i, *_ in FIG9C)
    assert completed == [0x10000]
    (reply,) = drain(conn)
    assert reply.pdu.opcode == Opcode.SCSI_RESPONSE and reply.pdu.itt == ITT
    assert reply.pdu.status == 0


def test_fig9_stale_and_foreign_tags_never_write(conn: TargetConnection) -> None:
    memory = bytearray(0x4000)
    cmd = P.ScsiCommand(itt=ITT, cdb=b"\x2a" + bytes(15), expected_length=0x4000, write=True)
    task = Task(cmd, 0)
    task.started = True  # its CmdSN was reached: the SCSI layer ran (the plan below)
    conn.tasks[ITT] = task
    tag = conn.table.allocate(memoryview(memory), 0, 0x4000, itt=ITT, owner=task, index=0x10)
    task.outstanding.add(tag)
    for bad in (0x1010_0123,   # wrong generation (stale)
                0x0010_0124,   # another connection's number
                0x0013_0123):  # an entry that is not live
        feed(conn, wire(P.DataOut(itt=ITT, ttt=bad, buffer_offset=0, data_length=0x2000),
                        b"\xff" * 0x2000))
        (reply,) = drain(conn)
        assert reply.pdu.opcode == Opcode.REJECT and reply.pdu.reason == 0x09
        assert reply.data[:48] == wire(P.DataOut(itt=ITT, ttt=bad, buffer_offset=0,
                                                 data_length=0x2000))[:48]
    # out of the burst's bounds
    feed(conn, wire(P.DataOut(itt=ITT, ttt=tag, buffer_offset=0x3000, data_length=0x2000),
                    b"\xff" * 0x2000))
    (reply,) = drain(conn)
    assert reply.pdu.opcode == Opcode.REJECT and reply.pdu.reason == 0x09
    assert memory == bytes(0x4000)
