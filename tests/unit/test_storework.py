"""Commands that wait for their store (target/storework.py, taskset.py, scsi/busy.py).

A test store completes chosen kinds of operation later: the engine hands them out as store
requests and the test feeds the completions back in whatever order it likes, as a slow disk
or a distributed store would. The engine must keep SCSI's promises meanwhile: ORDERED and
HEAD OF QUEUE, overlapping writes in order, task management fenced on work in flight, one
session's slow command never holding another's, and nothing left behind.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import pytest

from pyiscsi.backstore.base import StoreError
from pyiscsi.backstore.memory import MemoryStore
from pyiscsi.backstore.ops import StoreOp, StoreOpKind
from pyiscsi.proto import pdu as P
from pyiscsi.proto.wire import ScsiStatus, TmfFunction, TmfResponse
from pyiscsi.scsi.lun import LogicalUnit
from pyiscsi.target.catalog import Catalog, Target
from pyiscsi.target.connection import TargetConnection
from pyiscsi.target.storework import StoreRequest

from ..dataclass_init import assert_init_matches_fields
from ..pair import TARGET, Initiator, drain, feed, wire

BLOCK = 512
SIMPLE, ORDERED, HEAD_OF_QUEUE = 1, 2, 3


class SlowStore(MemoryStore):
    """RAM whose operations of the kinds in ``later`` complete only when the test says so;
    ``fail`` makes them raise instead."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.later: set[StoreOpKind] = set()
        self.fail: set[StoreOpKind] = set()

    def synchronous(self, op: StoreOp) -> bool:
        return op.kind not in self.later and super().synchronous(op)

    def perform(self, op: StoreOp) -> None:
        if op.kind in self.fail:
            raise StoreError("medium error", 0x03, 0x0C, 0x00)
        super().perform(op)


def cdb10(opcode: int, lba: int, blocks: int, flags: int = 0) -> bytes:
    return struct.pack(">BBIBHB", opcode, flags, lba, 0, blocks, 0)


@pytest.fixture
def store() -> SlowStore:
    return SlowStore(4 << 20)


@pytest.fixture
def catalog(store: SlowStore) -> Catalog:
    target = Target(TARGET)
    target.luns[0] = LogicalUnit(0, store, TARGET)
    target.luns[1] = LogicalUnit(1, MemoryStore(1 << 20), TARGET)
    for lu in target.luns.values():
        lu.peers = lambda: [0, 1]
    return Catalog([target])


def session(catalog: Catalog, isid: int = 0x400000000001) -> Initiator:
    ini = Initiator(TargetConnection(catalog, "t"), isid=isid)
    ini.login(initial_r2t=False, immediate_data=True)
    replies(ini)
    return ini


@pytest.fixture
def ini(catalog: Catalog) -> Iterator[Initiator]:
    pair = session(catalog)
    yield pair
    pair.conn.close()


def replies(ini: Initiator) -> list[P.Pdu]:
    """What the target sent, without running its store work (the test decides when)."""
    return [r.pdu for r in drain(ini.conn, ini.conn.take_output()[0])]


def requests(ini: Initiator) -> list[StoreRequest]:
    return ini.conn.take_store_requests()


def complete(ini: Initiator, request: StoreRequest, error: BaseException | None = None) -> None:
    if error is None:
        for op in request.ops:
            request.store.perform(op)
    ini.conn.store_completed(request.token, error)


def write(ini: Initiator, lba: int, data: bytes, *, fua: bool = False, attr: int = SIMPLE,
          lun: int = 0) -> P.ScsiCommand:
    cmd = P.ScsiCommand(itt=ini.next_itt(), cdb=cdb10(0x2A, lba, len(data) // BLOCK,
                                                        0x08 if fua else 0).ljust(16, b"\0"),
                        expected_length=len(data), cmdsn=ini.cmdsn, write=True, attr=attr,
                        lun=lun << 48, data_length=len(data))
    ini.cmdsn += 1
    feed(ini.conn, wire(cmd, data))
    return cmd


def read(ini: Initiator, lba: int, blocks: int, *, attr: int = SIMPLE,
         lun: int = 0) -> P.ScsiCommand:
    cmd = P.ScsiCommand(itt=ini.next_itt(), cdb=cdb10(0x28, lba, blocks).ljust(16, b"\0"),
                        expected_length=blocks * BLOCK, cmdsn=ini.cmdsn, read=True, attr=attr,
                        lun=lun << 48)
    ini.cmdsn += 1
    feed(ini.conn, wire(cmd))
    return cmd


def answered(pdus: list[P.Pdu]) -> list[int]:
    """ITTs whose status came (a SCSI Response, or a Data-In with status)."""
    return [p.itt for p in pdus if isinstance(p, P.ScsiResponse)
            or (isinstance(p, P.DataIn) and p.has_status)]


def nothing_left(ini: Initiator) -> None:
    conn = ini.conn
    assert conn.tasks == {} and len(conn.table) == 0 and len(conn.store_works) == 0
    s = conn.session
    assert s is not None
    s.slide()
    assert s.maxcmdsn - s.expcmdsn + 1 == conn.catalog.limits.queue_depth


def test_fua_write_answers_after_its_flush_and_other_commands_go_on(
        ini: Initiator, store: SlowStore) -> None:
    store.later = {StoreOpKind.FLUSH}
    w = write(ini, 0, b"\x5a" * 4096, fua=True)
    assert answered(replies(ini)) == []  # the data is in, the flush is not
    (flush,) = requests(ini)
    assert [op.kind for op in flush.ops] == [StoreOpKind.FLUSH]
    r = read(ini, 100, 8)
    assert answered(replies(ini)) == [r.itt]  # not held behind the flush
    complete(ini, flush)
    (rsp,) = replies(ini)
    assert isinstance(rsp, P.ScsiResponse) and rsp.itt == w.itt and rsp.status == 0
    nothing_left(ini)


def test_a_slow_command_of_one_session_never_holds_another_session(
        catalog: Catalog, ini: Initiator, store: SlowStore) -> None:
    other = session(catalog, isid=0x400000000002)
    store.later = {StoreOpKind.FLUSH}
    ini.command(cdb10(0x35, 0, 0), edtl=0)  # SYNCHRONIZE CACHE: the whole LU, slowly
    assert answered(replies(ini)) == [] and len(requests(ini)) == 1
    w = write(other, 8, b"\x11" * 4096)
    r = read(other, 8, 8)
    got = replies(other)
    assert answered(got) == [w.itt, r.itt]
    data_in = [p for p in got if isinstance(p, P.DataIn)]
    assert data_in and data_in[0].has_status
    other.conn.close()


def test_ordered_waits_for_older_tasks_and_holds_younger_ones(
        ini: Initiator, store: SlowStore) -> None:
    store.later = {StoreOpKind.FLUSH}
    w = write(ini, 0, b"\x01" * 512, fua=True)  # in flight: its flush
    o = read(ini, 0, 1, attr=ORDERED)           # must wait for w
    s = read(ini, 50, 1)                        # must wait for o
    h = read(ini, 60, 1, attr=HEAD_OF_QUEUE)    # runs at once
    assert answered(replies(ini)) == [h.itt]
    (flush,) = requests(ini)
    complete(ini, flush)
    assert answered(replies(ini)) == [w.itt, o.itt, s.itt]
    nothing_left(ini)


def test_a_write_overlapping_a_discard_in_flight_waits_for_it(
        ini: Initiator, store: SlowStore) -> None:
    """UNMAP of LBAs 0-15 is slow; a WRITE to LBA 4, sent after it, must land after it
    (else the discard would wipe the newer data); a READ elsewhere goes on."""
    store.later = {StoreOpKind.DISCARD}
    store.view(0, 8192)[:] = b"\xee" * 8192
    params = struct.pack(">HH4x", 22, 16) + struct.pack(">QI4x", 0, 16)
    u = ini.command(bytes((0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0)), edtl=24, write=True,
                    immediate_data=params)
    assert answered(replies(ini)) == []
    (discard,) = requests(ini)
    w = write(ini, 4, b"\x77" * 512)
    r = read(ini, 1000, 1)
    assert answered(replies(ini)) == [r.itt]  # the write waits, the far read does not
    assert bytes(store.view(4 * 512, 512)) == b"\xee" * 512
    complete(ini, discard)
    assert answered(replies(ini)) == [u.itt, w.itt]
    assert bytes(store.view(4 * 512, 512)) == b"\x77" * 512
    assert bytes(store.view(0, 512)) == bytes(512)
    nothing_left(ini)


def test_abort_of_a_task_in_flight_answers_only_after_its_store_work(
        ini: Initiator, store: SlowStore) -> None:
    store.later = {StoreOpKind.FLUSH}
    w = write(ini, 0, b"\x42" * 512, fua=True)
    (flush,) = requests(ini)
    feed(ini.conn, wire(P.TaskMgmtRequest(itt=0x999, function=1, referenced_tag=w.itt,
                                          cmdsn=ini.cmdsn, refcmdsn=w.cmdsn, immediate=True)))
    assert replies(ini) == []  # fenced: the write may still land
    assert w.itt in ini.conn.tasks  # its ITT stays busy, its buffers referenced
    complete(ini, flush)
    (rsp,) = replies(ini)
    assert isinstance(rsp, P.TaskMgmtResponse) and rsp.response == TmfResponse.FUNCTION_COMPLETE
    nothing_left(ini)


def test_clear_task_set_answers_only_after_another_sessions_store_work(
        catalog: Catalog, ini: Initiator, store: SlowStore) -> None:
    """CLEAR TASK SET aborts another I_T nexus's task too (SAM-5 §7.5, TST=000b), and is
    complete only once that task's store work has ended: B's FUA write is flushing; A's
    CLEAR TASK SET of LUN 0 is answered when the flush completes, B's write never."""
    other = session(catalog, isid=0x400000000002)
    store.later = {StoreOpKind.FLUSH}
    w = write(other, 0, b"\x42" * 512, fua=True)
    (flush,) = requests(other)
    feed(ini.conn, wire(P.TaskMgmtRequest(itt=0x999, function=TmfFunction.CLEAR_TASK_SET,
                                          cmdsn=ini.cmdsn, immediate=True)))
    assert replies(ini) == []  # fenced: B's write may still land
    assert w.itt in other.conn.tasks
    complete(other, flush)
    (rsp,) = replies(ini)
    assert isinstance(rsp, P.TaskMgmtResponse) and rsp.response == TmfResponse.FUNCTION_COMPLETE
    assert answered(replies(other)) == []
    nothing_left(other)
    other.conn.close()


def test_a_failing_store_operation_is_check_condition_with_its_sense(
        ini: Initiator, store: SlowStore) -> None:
    store.later = {StoreOpKind.FLUSH}
    store.fail = {StoreOpKind.FLUSH}
    w = write(ini, 0, b"\x42" * 512, fua=True)
    (flush,) = requests(ini)
    complete(ini, flush, StoreError("medium error", 0x03, 0x0C, 0x00))
    (rsp,) = replies(ini)
    assert isinstance(rsp, P.ScsiResponse) and rsp.itt == w.itt
    assert rsp.status == ScsiStatus.CHECK_CONDITION
    nothing_left(ini)


def test_connection_loss_with_work_in_flight_fences_the_next_session(
        catalog: Catalog, ini: Initiator, store: SlowStore) -> None:
    """The first session dies while its discard runs; a new session's write to the same
    LBAs waits until the discard has completed, and a completion for the dead connection
    is ignored."""
    store.later = {StoreOpKind.DISCARD}
    params = struct.pack(">HH4x", 22, 16) + struct.pack(">QI4x", 0, 8)
    ini.command(bytes((0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0)), edtl=24, write=True,
                immediate_data=params)
    (discard,) = requests(ini)
    ini.conn.close()
    again = session(catalog, isid=0x400000000003)
    w = write(again, 2, b"\x33" * 512)
    assert answered(replies(again)) == []
    complete(ini, discard)  # the old engine ignores it; the LU's busy range frees
    assert answered(replies(again)) == [w.itt]
    assert bytes(store.view(2 * 512, 512)) == b"\x33" * 512
    nothing_left(again)
    again.conn.close()


def test_write_to_a_store_that_allocates_later_stages_its_immediate_data(
        ini: Initiator, store: SlowStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """The command's plan is not known when its immediate data arrives (its store is busy
    allocating): the bytes wait in a private area and are copied once, never dropped."""
    store.later = {StoreOpKind.ALLOCATE}
    # like a sparse file: holes to allocate (a class attribute, as FileStore sets it)
    monkeypatch.setattr(SlowStore, "paged", True)
    store.needs_allocation = lambda offset, length: True  # type: ignore[method-assign]
    store.resident = lambda offset, length: True  # type: ignore[method-assign]
    w = write(ini, 16, b"\x99" * 4096)
    (allocate,) = requests(ini)
    assert [op.kind for op in allocate.ops] == [StoreOpKind.ALLOCATE]
    assert bytes(store.view(16 * 512, 4096)) == bytes(4096)
    complete(ini, allocate)
    assert answered(replies(ini)) == [w.itt]
    assert bytes(store.view(16 * 512, 4096)) == b"\x99" * 4096
    nothing_left(ini)


class RemoteStore(SlowStore):
    """A store that is not memory (Ceph RBD): the SCSI layer reads it with READ operations."""

    @property
    def memory_addressable(self) -> bool:
        return False


@pytest.fixture
def remote(catalog: Catalog) -> Iterator[tuple[Initiator, RemoteStore]]:
    store = RemoteStore(1 << 20)
    store.later = {StoreOpKind.READ, StoreOpKind.WRITE}
    catalog.targets[TARGET].luns[2] = LogicalUnit(2, store, TARGET)
    pair = session(catalog)
    yield pair, store
    pair.conn.close()


def with_data(ini: Initiator, cdb: bytes, data: bytes, lun: int = 2) -> P.ScsiCommand:
    cmd = P.ScsiCommand(itt=ini.next_itt(), cdb=cdb.ljust(16, b"\0"), expected_length=len(data),
                        cmdsn=ini.cmdsn, write=True, lun=lun << 48, data_length=len(data))
    ini.cmdsn += 1
    feed(ini.conn, wire(cmd, data))
    return cmd


def kinds(reqs: list[StoreRequest]) -> list[list[StoreOpKind]]:
    return [[op.kind for op in r.ops] for r in reqs]


def test_verify_of_a_store_that_is_not_memory_reads_it_off_the_loop(
        remote: tuple[Initiator, RemoteStore]) -> None:
    """VERIFY with BYTCHK=1 compares against a READ the transport runs (an RBD read never
    blocks the event loop); the answer waits for it, a mismatch names its offset."""
    ini, store = remote
    store.write(0, bytes(range(256)) * 8)
    good = with_data(ini, cdb10(0x2F, 0, 4, 0x02), bytes(range(256)) * 8)
    assert answered(replies(ini)) == []
    [req] = requests(ini)
    assert kinds([req]) == [[StoreOpKind.READ]]
    complete(ini, req)
    pdus = replies(ini)
    assert answered(pdus) == [good.itt] and pdus[-1].status == ScsiStatus.GOOD  # type: ignore[attr-defined]
    wrong = bytearray(range(256)) * 8
    wrong[700] ^= 0xFF
    bad = with_data(ini, cdb10(0x2F, 0, 4, 0x02), bytes(wrong))
    [req] = requests(ini)
    complete(ini, req)
    [resp] = [r for r in drain(ini.conn, ini.conn.take_output()[0])
              if isinstance(r.pdu, P.ScsiResponse)]
    assert resp.pdu.itt == bad.itt and resp.pdu.status == ScsiStatus.CHECK_CONDITION
    sense = resp.data[2:]
    assert sense[2] & 0x0F == 0x0E and int.from_bytes(sense[3:7], "big") == 700  # MISCOMPARE
    nothing_left(ini)


def test_orwrite_holds_its_range_from_the_read_to_the_write(
        remote: tuple[Initiator, RemoteStore]) -> None:
    """ORWRITE reads, merges and writes: a WRITE of the same blocks arriving while the read
    is in flight waits until ORWRITE's write is done, so it is never lost under the merge."""
    ini, store = remote
    store.write(0, b"\x0f" * 1024)
    orw = with_data(ini, struct.pack(">BBQIBB", 0x8B, 0, 0, 2, 0, 0), b"\xf0" * 1024)
    [read_req] = requests(ini)
    assert kinds([read_req]) == [[StoreOpKind.READ]]
    late = with_data(ini, cdb10(0x2A, 0, 2), b"\x55" * 1024)
    assert requests(ini) == [] and answered(replies(ini)) == []  # the WRITE waits
    complete(ini, read_req)  # the merge is written; the late WRITE still waits for it
    [merged] = requests(ini)
    assert kinds([merged]) == [[StoreOpKind.WRITE]]
    assert bytes(merged.ops[0].buffer or b"") == b"\xff" * 1024  # 0x0f | 0xf0
    assert answered(replies(ini)) == []
    complete(ini, merged)
    assert answered(replies(ini)) == [orw.itt]
    [after] = requests(ini)  # now the late WRITE runs
    complete(ini, after)
    assert answered(replies(ini)) == [late.itt]
    assert store.view(0, 1024).tobytes() == b"\x55" * 1024
    nothing_left(ini)


def test_compare_and_write_of_a_store_that_is_not_memory_reads_it_off_the_loop(
        remote: tuple[Initiator, RemoteStore]) -> None:
    """COMPARE AND WRITE emulated by the target (a store without an atomic one): the compare
    waits for a READ off the loop, then the write; a mismatch names its offset, writes nothing."""
    ini, store = remote
    store.write(0, b"\x11" * 512)
    caw = struct.pack(">BBQ3xBBB", 0x89, 0, 0, 1, 0, 0)  # 1 block at LBA 0
    ok = with_data(ini, caw, b"\x11" * 512 + b"\x22" * 512)
    [read_req] = requests(ini)
    assert kinds([read_req]) == [[StoreOpKind.READ]]
    complete(ini, read_req)
    [write_req] = requests(ini)
    assert kinds([write_req]) == [[StoreOpKind.WRITE]]
    complete(ini, write_req)
    assert answered(replies(ini)) == [ok.itt] and store.view(0, 512).tobytes() == b"\x22" * 512
    expected = bytearray(b"\x22" * 512)
    expected[300] = 0
    bad = with_data(ini, caw, bytes(expected) + b"\x33" * 512)
    [read_req] = requests(ini)
    complete(ini, read_req)
    assert requests(ini) == []
    [resp] = [r for r in drain(ini.conn, ini.conn.take_output()[0])
              if isinstance(r.pdu, P.ScsiResponse)]
    sense = resp.data[2:]
    assert resp.pdu.itt == bad.itt and sense[2] & 0x0F == 0x0E
    assert int.from_bytes(sense[3:7], "big") == 300
    assert store.view(0, 512).tobytes() == b"\x22" * 512
    nothing_left(ini)


def test_a_reset_by_another_gateway_aborts_this_gateways_tasks_and_fences_their_work(
        catalog: Catalog, store: SlowStore) -> None:
    """A LOGICAL UNIT RESET through another gateway of a shared LU ends this gateway's
    tasks on it too (SAM-5 §6.3), with no response; the ones with store work in flight are
    answered for the acknowledgement to wait on. Other LUs and other events: untouched."""
    from pyiscsi.scsi.lu_events import UnitAttentionEvent
    from pyiscsi.target.tmf import after_another_gateway

    a, b = session(catalog), session(catalog, isid=0x400000000002)
    store.later = {StoreOpKind.FLUSH}
    lu = catalog.targets[TARGET].luns[0]
    w1 = write(a, 0, b"\x01" * 4096, fua=True)  # flushing: its store work is in flight
    w2 = write(b, 64, b"\x02" * 4096, fua=True)
    other = write(a, 0, b"\x03" * 512, lun=1, fua=True)  # LUN 1 is RAM: done at once
    assert answered(replies(a)) == [other.itt]
    in_flight = requests(a) + requests(b)
    assert len(in_flight) == 2
    grown = UnitAttentionEvent(0x2A, 0x09)
    assert after_another_gateway(catalog, lu, grown) == []  # not a reset
    fenced = after_another_gateway(catalog, lu, UnitAttentionEvent(0x29, 0x03))
    assert sorted(t.itt for t in fenced) == sorted([w1.itt, w2.itt])
    assert catalog.state.events.remote_aborts == 2
    ended: list[int] = []
    for task in fenced:
        task.waiters = [lambda t: ended.append(t.itt)]
    for request, pair in zip(in_flight, (a, b), strict=True):
        complete(pair, request)
    assert sorted(ended) == sorted([w1.itt, w2.itt])
    assert answered(replies(a)) == [] and answered(replies(b)) == []  # TAS=0: no status
    for pair in (a, b):
        nothing_left(pair)
        pair.conn.close()


def test_store_request_init_sets_every_field_in_order() -> None:
    """StoreRequest writes its own __init__ (compiled: the generated one stays interpreted)."""
    values = (7, MemoryStore(4096), (StoreOp(StoreOpKind.FLUSH),), 4096)
    assert_init_matches_fields(StoreRequest, values, required=4)
