"""The engine's READ/WRITE fast path answers byte for byte as the general path does.

The same command stream goes through two in-memory pairs, one with the fast path, one
without (``TargetConnection.fast_path = False``); the wire replies, the LU's bytes, the
CmdSN window, the StatSN, the copy counters and the I/O figures must be equal. R2T Target
Transfer Tags are the target's own handles (RFC 7143 §11.9.4: data pointer table entries,
whose generations advance with every entry used), so they are compared up to renaming.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from hypothesis import event, given, settings
from hypothesis import strategies as st

from pyiscsi.proto import pdu as P
from pyiscsi.target.connection import TargetConnection

from ..pair import TARGET, Initiator, drain, feed, make_catalog, run_store_work, wire

BLOCK = 512
BLOCKS = (1 << 20) // BLOCK


@dataclass(frozen=True)
class Step:
    """One request of the stream: a SCSI command, or a task management function."""

    op: int
    lba: int = 0
    blocks: int = 0
    edtl_delta: int = 0
    immediate_share: int = 2
    """Of the write data: 0 none, 1 half, 2 all as immediate data."""
    flags: int = 0
    attr: int = 1
    lun: int = 0
    immediate: bool = False
    swap: bool = False
    """Send this command after the next one (a CmdSN gap that closes at once)."""
    reuse_itt: bool = False
    tmf: int = 0


def cdb_of(step: Step) -> bytes:
    op = step.op
    if op in (0x28, 0x2A):
        return struct.pack(">BBIBHB", op, step.flags, step.lba & 0xFFFFFFFF, 0,
                           step.blocks & 0xFFFF, 0)
    if op in (0x88, 0x8A):
        return struct.pack(">BBQIBB", op, step.flags, step.lba, step.blocks, 0, 0)
    return bytes((op,)) + bytes(5)  # TEST UNIT READY, RESERVE (6), RELEASE (6)


def payload_of(step: Step, itt: int) -> bytes:
    n = max(0, step.blocks * BLOCK + step.edtl_delta)
    return bytes((itt + i) & 0xFF for i in range(min(n, 65536)))


def normalise(stream: list[P.Pdu | bytes], ttts: dict[int, int]) -> list[bytes]:
    out: list[bytes] = []
    for item in stream:
        if isinstance(item, bytes):
            out.append(item)
            continue
        raw = bytearray(item.encode())
        if isinstance(item, P.R2T):
            tag = ttts.setdefault(item.ttt, len(ttts))
            raw[20:24] = tag.to_bytes(4, "big")
        out.append(bytes(raw))
    return out


def run(steps: list[Step], fast: bool, chunk: int) -> tuple[list[bytes], TargetConnection]:
    conn = TargetConnection(make_catalog(1 << 20, luns=2), "test")
    conn.fast_path = fast
    ini = Initiator(conn)
    ini.login(max_recv_data_segment_length=8192, max_burst_length=65536,
              first_burst_length=16384, max_outstanding_r2t=4)
    lu0 = conn.catalog.targets[TARGET].luns[0]
    lu0.store.write(0, bytes(i % 253 for i in range(1 << 20)))
    stream: list[P.Pdu | bytes] = []
    ttts: dict[int, int] = {}
    writes: dict[int, bytes] = {}
    pending: bytes | None = None
    last_itt = 0

    tx_payload = [0]

    def collect() -> None:
        run_store_work(conn)
        out, payload = conn.take_output()
        tx_payload[0] += sum(payload)
        for reply in drain(conn, out):
            stream.append(reply.pdu)
            stream.append(reply.data)
            if isinstance(reply.pdu, P.R2T):  # answer each R2T with its Data-Outs
                r2t = reply.pdu
                data = writes.get(r2t.itt, b"")
                offset, end = r2t.buffer_offset, r2t.buffer_offset + r2t.desired_length
                datasn = 0
                while offset < end:
                    n = min(8192, end - offset)
                    piece = data[offset:offset + n].ljust(n, b"\0")
                    data_out = P.DataOut(itt=r2t.itt, ttt=r2t.ttt, buffer_offset=offset,
                                    data_length=n, datasn=datasn, final=offset + n == end,
                                    lun=r2t.lun)
                    feed(conn, wire(data_out, piece), chunk)
                    offset += n
                    datasn += 1
                collect()
                return

    for step in steps:
        if step.tmf:
            tmf = P.TaskMgmtRequest(itt=ini.next_itt(), function=step.tmf, lun=step.lun << 48,
                                    cmdsn=ini.cmdsn, expstatsn=ini.expstatsn)
            feed(conn, wire(tmf), chunk)
            collect()
            continue
        itt = last_itt if step.reuse_itt and last_itt else ini.next_itt()
        last_itt = itt
        write = step.op in (0x2A, 0x8A)
        read = step.op in (0x28, 0x88)
        edtl = max(0, step.blocks * BLOCK + step.edtl_delta) if read or write else 0
        data = payload_of(step, itt) if write else b""
        writes[itt] = data
        immediate = data[:len(data) * step.immediate_share // 2][:16384]
        cmd = P.ScsiCommand(itt=itt, cdb=cdb_of(step).ljust(16, b"\0"), expected_length=edtl,
                            cmdsn=ini.cmdsn, expstatsn=ini.expstatsn, lun=step.lun << 48,
                            read=read, write=write, final=True, attr=step.attr,
                            immediate=step.immediate, data_length=len(immediate))
        if not step.immediate:
            ini.cmdsn += 1
        raw = wire(cmd, immediate or None)
        if step.swap and pending is None:
            pending = raw
            continue
        feed(conn, raw, chunk)
        if pending is not None:
            feed(conn, pending, chunk)
            pending = None
        collect()
    if pending is not None:
        feed(conn, pending, chunk)
        collect()
    lu = conn.catalog.targets[TARGET].luns[0]
    session = conn.session
    assert session is not None
    figures = [bytes(lu.store.view(0, lu.store.size)),
               repr((session.expcmdsn, session.maxcmdsn, session.active, conn.statsn)).encode(),
               repr({n: io.snapshot() | {"latency_ns": 0, "latency_buckets": sum(
                   io.latency)} for n, io in sorted(conn.io.items())}).encode(),
               repr((conn.counters.snapshot(), tx_payload[0])).encode()]
    return normalise(stream, ttts) + figures, conn


rw_ops = st.sampled_from([0x28, 0x2A, 0x88, 0x8A])
plain = st.builds(Step, op=rw_ops, lba=st.integers(0, BLOCKS - 16),
                  blocks=st.sampled_from([1, 8, 16]))
"""Commands the fast path takes when nothing else is going on."""
steps = st.one_of(
    plain, plain, plain,
    st.builds(Step, op=rw_ops, lba=st.integers(0, BLOCKS - 1) | st.integers(BLOCKS - 8,
                                                                            BLOCKS + 8),
              blocks=st.sampled_from([0, 1, 8, 16, 40, 200])),
    st.builds(Step, op=rw_ops, lba=st.integers(0, BLOCKS - 64),
              blocks=st.sampled_from([1, 8, 32]),
              edtl_delta=st.sampled_from([0, 0, 0, -512, 512, -3]),
              immediate_share=st.sampled_from([0, 1, 2, 2]),
              flags=st.sampled_from([0, 0, 0, 0x08, 0x20, 0x10]),
              attr=st.sampled_from([1, 1, 1, 0, 2, 4]), lun=st.sampled_from([0, 0, 0, 1, 5]),
              immediate=st.booleans(), swap=st.booleans(), reuse_itt=st.booleans()),
    st.builds(Step, op=st.sampled_from([0x00, 0x16, 0x17])),
    st.builds(Step, op=st.just(0), tmf=st.sampled_from([5, 6]), lun=st.sampled_from([0, 1])),
)


@settings(max_examples=60, deadline=None)
@given(script=st.lists(steps, min_size=1, max_size=25),
       chunk=st.sampled_from([1 << 30, 1 << 30, 1 << 30, 4144, 100, 4096]))
def test_fast_path_answers_as_the_general_path(script: list[Step], chunk: int) -> None:
    fast, fast_conn = run(script, True, chunk)
    event(f"fast path taken: {bool(fast_conn.fast_commands)}")
    slow, slow_conn = run(script, False, chunk)
    assert slow_conn.fast_commands == 0
    assert fast == slow


def test_the_fast_path_is_taken_and_answers_right() -> None:
    """A plain read and write go the fast way; their answers are the general path's and
    the data is where it belongs (a comparison that could never see the fast path would
    prove nothing)."""
    script = [Step(0x2A, lba=8, blocks=8), Step(0x28, lba=8, blocks=8),
              Step(0x8A, lba=100, blocks=1), Step(0x88, lba=100, blocks=1)]
    fast, conn = run(script, True, 1 << 30)
    slow, _ = run(script, False, 1 << 30)
    assert conn.fast_commands == 4
    assert fast == slow
    store = conn.catalog.targets[TARGET].luns[0].store
    itt = 0x1001  # the first command's ITT (pair.Initiator numbers from 0x1000)
    assert bytes(store.view(8 * BLOCK, 8 * BLOCK)) == payload_of(script[0], itt)


def test_nothing_pending_gates_the_fast_path() -> None:
    """A unit attention (a LU reset) and a RESERVE (6) send commands the general way."""
    reset = [Step(0, tmf=5), Step(0x28, lba=0, blocks=8), Step(0x28, lba=0, blocks=8)]
    fast, conn = run(reset, True, 1 << 30)
    assert conn.fast_commands == 1  # the first read after the reset reports the UA
    assert fast == run(reset, False, 1 << 30)[0]
    reserved = [Step(0x16), Step(0x28, lba=0, blocks=8), Step(0x17),
                Step(0x28, lba=0, blocks=8)]
    fast, conn = run(reserved, True, 1 << 30)
    assert conn.fast_commands == 1
    assert fast == run(reserved, False, 1 << 30)[0]


def test_out_of_range_and_fua_take_the_general_path() -> None:
    """LBA OUT OF RANGE (one block past the end, READ and WRITE, 10 and 16), a FUA write,
    an EDTL that is not the transfer length: the general path's answers; the last blocks
    themselves go the fast way."""
    script = [Step(0x28, lba=BLOCKS - 7, blocks=8), Step(0x8A, lba=BLOCKS - 7, blocks=8),
              Step(0x88, lba=BLOCKS, blocks=1), Step(0x2A, lba=BLOCKS - 1, blocks=2),
              Step(0x2A, lba=0, blocks=8, flags=0x08),
              Step(0x28, lba=0, blocks=8, edtl_delta=-512),
              Step(0x2A, lba=0, blocks=8, edtl_delta=512)]
    fast, conn = run(script, True, 1 << 30)
    assert conn.fast_commands == 0
    assert fast == run(script, False, 1 << 30)[0]
    edge = [Step(0x28, lba=BLOCKS - 8, blocks=8), Step(0x8A, lba=BLOCKS - 8, blocks=8)]
    fast, conn = run(edge, True, 1 << 30)
    assert conn.fast_commands == 2
    assert fast == run(edge, False, 1 << 30)[0]
