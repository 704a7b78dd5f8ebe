"""The sans-IO initiator engine, RFC 7143: against our real TargetConnection, in memory,
and against a hostile target whose PDUs are crafted by hand.

Bytes reach the initiator the way a socket's ``recv_into`` would put them: into whatever
``get_buffer()`` returns, at most ``chunk`` bytes at a time.
"""

from __future__ import annotations

import os

import pytest

from pyiscsi.backstore.memory import MemoryStore
from pyiscsi.initiator import scsi
from pyiscsi.initiator.connection import (
    ConnectionFailed,
    Event,
    InitiatorConnection,
    Kind,
    LoggedIn,
    Phase,
    ScsiOutcome,
    Task,
    TaskDone,
    TaskFailed,
)
from pyiscsi.initiator.errors import ConnectionClosed, RejectError, parse_sense
from pyiscsi.placement.counters import CopyCounters
from pyiscsi.placement.tag import Tag
from pyiscsi.proto import pdu as P
from pyiscsi.proto.errors import LoginFailed, RemoteProtocolError
from pyiscsi.proto.framing import frame
from pyiscsi.proto.login import InitiatorLoginConfig
from pyiscsi.proto.wire import RESERVED_TAG, LoginStatus, RejectReason, ScsiStatus
from pyiscsi.scsi.lun import LogicalUnit
from pyiscsi.target.catalog import Catalog, Limits, Target
from pyiscsi.target.connection import TargetConnection

NAME = "iqn.2026-11.org.pyiscsi:unit"
INITIATOR = "iqn.2026-11.org.pyiscsi:unit-initiator"
BS = 512


def _join(buffers: list[bytes | bytearray | memoryview]) -> bytes:
    return b"".join(bytes(b) for b in buffers)


def wire(pdu: P.Pdu, payload: bytes | None = None) -> bytes:
    return _join(frame(pdu.encode(), payload))


class Pair:
    """Our initiator engine wired to our target engine through byte buffers."""

    def __init__(self, *, limits: Limits | None = None,
                 config: InitiatorLoginConfig | None = None, size: int = 32 << 20,
                 chunk: int = 1 << 30, target_name: str = NAME, login: bool = True) -> None:
        self.store = MemoryStore(size)
        lu = LogicalUnit(0, self.store, NAME)
        lu.peers = lambda: [0]
        self.catalog = Catalog([Target(NAME, {0: lu})], limits=limits)
        self.target = TargetConnection(self.catalog, "unit")
        self.counters = CopyCounters()
        self.ini = InitiatorConnection(INITIATOR, target_name, config=config,
                                       counters=self.counters)
        self.chunk = chunk
        self.events: list[Event] = []
        self.seen: list[memoryview] = []
        if login:
            self.ini.start()
            self.pump()
            assert self.ini.phase is Phase.FULL_FEATURE, self.events

    def to_target(self) -> bool:
        out, _ = self.ini.take_output()
        data = memoryview(_join(out))
        while data:
            buf = self.target.get_buffer()
            n = min(len(buf), len(data))
            buf[:n] = data[:n]
            data = data[n:]
            self.target.advance(n)
        return bool(out)

    def deliver(self, raw: bytes) -> None:
        """Hand bytes to the initiator as recv_into would (chunked by ``self.chunk``)."""
        data = memoryview(raw)
        while data:
            buf = self.ini.get_buffer()
            self.seen.append(buf)
            n = min(len(buf), len(data), self.chunk)
            buf[:n] = data[:n]
            data = data[n:]
            self.events.extend(self.ini.advance(n))

    def pump(self) -> None:
        moving = True
        while moving:
            moving = self.to_target()
            out, _ = self.target.take_output()
            if out:
                moving = True
                self.deliver(_join(out))

    def run(self, task: Task) -> ScsiOutcome | bytes | int:
        self.ini.submit(task)
        self.pump()
        return self.result(task)

    def result(self, task: Task) -> ScsiOutcome | bytes | int:
        for event in self.events:
            if isinstance(event, TaskDone) and event.task is task:
                return event.result
            if isinstance(event, TaskFailed) and event.task is task:
                raise event.error
        raise AssertionError(f"task not completed: {self.events}")

    def read(self, lba: int, buf: bytearray | memoryview) -> ScsiOutcome:
        view = memoryview(buf)
        out = self.run(scsi_task(scsi.read_16(lba, len(view) // BS), data_in=view))
        assert isinstance(out, ScsiOutcome)
        return out

    def write(self, lba: int, data: bytes | bytearray) -> ScsiOutcome:
        out = self.run(scsi_task(scsi.write_16(lba, len(data) // BS),
                                 data_out=memoryview(data)))
        assert isinstance(out, ScsiOutcome)
        return out


def scsi_task(cdb: bytes, *, data_in: memoryview | None = None,
              data_out: memoryview | None = None) -> Task:
    return Task(Kind.SCSI, cdb=cdb, lun=0, data_in=data_in, data_out=data_out)


# ---------------------------------------------------------------- against our target


def test_login_reaches_full_feature_and_negotiates() -> None:
    pair = Pair()
    assert any(isinstance(e, LoggedIn) for e in pair.events)
    params = pair.ini.params
    assert params is not None and params.target_name == NAME
    assert pair.ini.tsih != 0
    assert params.max_send_data_segment_length == 262144  # the target's declaration


def test_inquiry_capacity_report_luns() -> None:
    pair = Pair(size=8 << 20)
    buf = bytearray(96)
    out = pair.run(scsi_task(scsi.inquiry(96), data_in=memoryview(buf)))
    assert isinstance(out, ScsiOutcome) and out.status == ScsiStatus.GOOD
    inq = scsi.parse_inquiry(buf[:out.transferred])
    assert (inq.vendor, inq.device_type, inq.is_block_device) == ("PYISCSI", 0, True)
    cap_buf = bytearray(32)
    out = pair.run(scsi_task(scsi.read_capacity_16(), data_in=memoryview(cap_buf)))
    assert isinstance(out, ScsiOutcome)
    assert scsi.parse_read_capacity_16(cap_buf) == scsi.Capacity(512, (8 << 20) // 512)
    luns = bytearray(64)
    out = pair.run(scsi_task(scsi.report_luns(64), data_in=memoryview(luns)))
    assert isinstance(out, ScsiOutcome)
    assert scsi.parse_report_luns(luns[:out.transferred]) == [0]


SIZES = [512, 4096, 8192 + 512, 65536, 65536 + 3 * 512, 262144 + 512, 1 << 20,
         (1 << 20) + 7 * 512, 3 << 20]


@pytest.mark.parametrize("size", SIZES)
def test_write_then_read_back(size: int) -> None:
    pair = Pair()
    data = os.urandom(size)
    out = pair.write(16, data)
    assert out.status == ScsiStatus.GOOD and out.transferred == size
    assert bytes(pair.store.view(16 * BS, size)) == data
    back = bytearray(size)
    out = pair.read(16, back)
    assert out.status == ScsiStatus.GOOD and out.transferred == size
    assert back == data


CONFIGS = {
    "immediate+unsolicited": (InitiatorLoginConfig(), Limits()),
    "r2t-only": (InitiatorLoginConfig(initial_r2t=True, immediate_data=False), Limits()),
    "immediate-then-r2t": (InitiatorLoginConfig(initial_r2t=True), Limits()),
    "small-segments-many-r2t": (
        InitiatorLoginConfig(max_recv_data_segment_length=8192, max_outstanding_r2t=4,
                             first_burst_length=16384, max_burst_length=65536),
        Limits(max_recv_data_segment_length=8192, first_burst_length=16384,
               max_burst_length=65536, max_outstanding_r2t=4)),
    "unaligned-burst": (
        InitiatorLoginConfig(first_burst_length=12288, max_burst_length=20480,
                             max_recv_data_segment_length=4096),
        Limits(max_recv_data_segment_length=6144, first_burst_length=12288,
               max_burst_length=20480, max_outstanding_r2t=8)),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("size", [512, 12800, 65536 + 512, (1 << 20) + 1536])
def test_write_paths_per_negotiated_keys(name: str, size: int) -> None:
    config, limits = CONFIGS[name]
    pair = Pair(config=config, limits=limits)
    data = os.urandom(size)
    assert pair.write(3, data).transferred == size
    assert bytes(pair.store.view(3 * BS, size)) == data
    back = bytearray(size)
    assert pair.read(3, back).transferred == size
    assert back == data


def test_small_receive_chunks_still_place_correctly() -> None:
    pair = Pair(chunk=997)
    data = os.urandom(300 * 1024)
    pair.write(0, data)
    back = bytearray(len(data))
    pair.read(0, back)
    assert back == data


def test_read_data_in_is_placed_straight_into_the_callers_buffer() -> None:
    """Zero copy (design §1): the large Data-In payloads land with ``placed``, nothing is
    staged, and the buffers handed to recv_into are views of the caller's bytearray."""
    pair = Pair()
    data = os.urandom(4 << 20)
    pair.store.write(0, data)
    buf = bytearray(len(data))
    pair.counters.reset()
    pair.seen.clear()
    pair.read(0, buf)
    assert buf == data
    assert pair.counters.rx_staged == 0
    assert pair.counters.rx_placed == len(data)
    mine = [v for v in pair.seen if v.obj is buf]
    assert sum(len(v) for v in mine) == len(data)


def test_32_commands_wait_for_the_cmdsn_window() -> None:
    pair = Pair(limits=Limits(queue_depth=4))
    assert pair.ini.maxcmdsn - pair.ini.expcmdsn + 1 == 4
    pair.store.write(0, bytes(range(256)) * 512)
    bufs = [bytearray(4096) for _ in range(32)]
    tasks = [pair.ini.submit(scsi_task(scsi.read_16(i * 8, 8), data_in=memoryview(b)))
             for i, b in enumerate(bufs)]
    assert pair.ini.queued == 28  # only MaxCmdSN - CmdSN + 1 went out
    pair.pump()
    assert pair.ini.queued == 0
    for i, (task, buf) in enumerate(zip(tasks, bufs, strict=True)):
        assert isinstance(pair.result(task), ScsiOutcome)
        assert buf == bytes(pair.store.view(i * 4096, 4096))


def test_itt_is_table_index_with_generation() -> None:
    pair = Pair()
    first = pair.ini.submit(scsi_task(scsi.test_unit_ready()))
    pair.pump()
    second = pair.ini.submit(scsi_task(scsi.test_unit_ready()))
    a, b = Tag.from_int(first.itt), Tag.from_int(second.itt)
    # a fresh index until the table is full (then FIFO reuse): tags age across commands
    assert b.index == a.index + 1 and a.generation == b.generation == 0
    assert first.itt != second.itt


def test_check_condition_carries_sense() -> None:
    pair = Pair(size=1 << 20)
    buf = bytearray(BS)
    out = pair.read(1 << 20, buf)  # LBA beyond the end
    assert out.status == ScsiStatus.CHECK_CONDITION
    sense = parse_sense(out.sense)
    assert sense is not None and (sense.key, sense.asc, sense.ascq) == (0x5, 0x21, 0x00)


def test_discovery_send_targets() -> None:
    pair = Pair(target_name=None, login=False)  # type: ignore[arg-type]
    pair.catalog.portals = [("127.0.0.1", 3260)]
    pair.ini.start()
    pair.pump()
    task = pair.ini.text([("SendTargets", "All")])
    pair.pump()
    text = pair.result(task)
    assert isinstance(text, bytes)
    assert b"TargetName=" + NAME.encode() in text
    assert b"TargetAddress=127.0.0.1:3260,1" in text


def test_login_to_unknown_target_fails_with_status() -> None:
    pair = Pair(target_name="iqn.2026-11.org.example:nope", login=False)
    pair.ini.start()
    pair.pump()
    failed = [e for e in pair.events if isinstance(e, ConnectionFailed)]
    assert failed and isinstance(failed[0].error, LoginFailed)
    assert failed[0].error.status == LoginStatus.NOT_FOUND
    assert pair.ini.phase is Phase.CLOSED


def test_logout_closes_and_fails_nothing_else() -> None:
    pair = Pair()
    task = pair.ini.logout()
    pair.pump()
    assert pair.result(task) == 0
    assert pair.ini.phase is Phase.CLOSED
    assert pair.ini.close_after_send


def test_ping() -> None:
    pair = Pair()
    task = pair.ini.ping(b"hello")
    pair.pump()
    assert pair.result(task) == b"hello"


def test_task_management_lun_reset_and_unknown_lun() -> None:
    pair = Pair()
    task = pair.ini.task_management(5, lun=scsi.lun_field(0))  # LOGICAL UNIT RESET
    pair.pump()
    assert task.kind is Kind.TMF and pair.result(task) == 0  # Function complete
    task = pair.ini.task_management(5, lun=scsi.lun_field(9))
    pair.pump()
    assert pair.result(task) == 2  # LUN does not exist (RFC 7143 §11.6.1)


def test_task_management_needs_full_feature_phase() -> None:
    pair = Pair(login=False)
    with pytest.raises(Exception, match="cannot send a TMF"):
        pair.ini.task_management(5)


# ---------------------------------------------------------------- against a hostile target


def _statsn(pair: Pair) -> int:
    return pair.ini.exp_statsn


def _window(pair: Pair) -> dict[str, int]:
    return {"expcmdsn": pair.ini.expcmdsn, "maxcmdsn": pair.ini.maxcmdsn}


def _submit_unsent(pair: Pair, task: Task) -> Task:
    """Submit, and drop the command instead of sending it: we play the target by hand."""
    pair.ini.submit(task)
    pair.ini.take_output()
    return task


def test_unknown_itt_closes_the_connection_and_touches_no_buffer() -> None:
    pair = Pair()
    buf = bytearray(8192)
    task = _submit_unsent(pair, scsi_task(scsi.read_16(0, 16), data_in=memoryview(buf)))
    forged = task.itt ^ (1 << 16)  # another index
    pair.deliver(wire(P.DataIn(itt=forged, buffer_offset=0, data_length=4096,
                               **_window(pair)), b"\xee" * 4096))
    assert any(isinstance(e, ConnectionFailed) for e in pair.events)
    with pytest.raises(ConnectionClosed):
        pair.result(task)
    assert buf == bytes(8192)
    assert pair.ini.phase is Phase.CLOSED


def test_stale_itt_is_never_written_through() -> None:
    pair = Pair()
    old = bytearray(4096)
    done = pair.read(0, old)
    assert done.status == ScsiStatus.GOOD
    stale = [e.task for e in pair.events if isinstance(e, TaskDone)][-1].itt
    live_buf = bytearray(4096)
    live = _submit_unsent(pair, scsi_task(scsi.read_16(0, 8), data_in=memoryview(live_buf)))
    assert Tag.from_int(live.itt).index != Tag.from_int(stale).index  # a fresh entry
    pair.deliver(wire(P.DataIn(itt=stale, buffer_offset=0, data_length=4096,
                               **_window(pair)), b"\xee" * 4096))
    assert any(isinstance(e, ConnectionFailed) for e in pair.events)
    assert live_buf == bytes(4096) and old == bytes(4096)


def test_out_of_bounds_data_in_fails_only_its_task() -> None:
    pair = Pair()
    a_buf, b_buf = bytearray(4096), bytearray(4096)
    a = _submit_unsent(pair, scsi_task(scsi.read_16(0, 8), data_in=memoryview(a_buf)))
    b = _submit_unsent(pair, scsi_task(scsi.read_16(8, 8), data_in=memoryview(b_buf)))
    pair.deliver(wire(P.DataIn(itt=a.itt, buffer_offset=4096, data_length=512, final=True,
                               has_status=True, statsn=_statsn(pair), **_window(pair)),
                      b"\xee" * 512))
    with pytest.raises(RemoteProtocolError):
        pair.result(a)
    assert pair.ini.phase is Phase.FULL_FEATURE
    pair.deliver(wire(P.DataIn(itt=b.itt, buffer_offset=0, data_length=4096, final=True,
                               has_status=True, statsn=_statsn(pair), **_window(pair)),
                      b"\x11" * 4096))
    out = pair.result(b)
    assert isinstance(out, ScsiOutcome) and out.transferred == 4096
    assert a_buf == bytes(4096) and b_buf == b"\x11" * 4096


def test_data_in_for_a_write_never_lands_in_the_write_buffer() -> None:
    pair = Pair(config=InitiatorLoginConfig(immediate_data=False, initial_r2t=True))
    data = bytearray(b"\x55" * 4096)
    task = _submit_unsent(pair, scsi_task(scsi.write_16(0, 8), data_out=memoryview(data)))
    pair.deliver(wire(P.DataIn(itt=task.itt, buffer_offset=0, data_length=512, final=True,
                               has_status=True, statsn=_statsn(pair), **_window(pair)),
                      b"\xee" * 512))
    with pytest.raises(RemoteProtocolError):
        pair.result(task)
    assert data == b"\x55" * 4096


def test_out_of_order_data_sn_fails_the_task() -> None:
    pair = Pair()
    buf = bytearray(4096)
    task = _submit_unsent(pair, scsi_task(scsi.read_16(0, 8), data_in=memoryview(buf)))
    pair.deliver(wire(P.DataIn(itt=task.itt, buffer_offset=0, data_length=4096, datasn=3,
                               final=True, has_status=True, statsn=_statsn(pair),
                               **_window(pair)), b"\xee" * 4096))
    with pytest.raises(RemoteProtocolError, match="DataSN"):
        pair.result(task)
    assert buf == bytes(4096)


def test_r2t_outside_the_write_buffer_closes_the_connection() -> None:
    pair = Pair(config=InitiatorLoginConfig(immediate_data=False, initial_r2t=True))
    task = _submit_unsent(pair, scsi_task(scsi.write_16(0, 8),
                                          data_out=memoryview(bytearray(4096))))
    pair.deliver(wire(P.R2T(itt=task.itt, ttt=0x42, buffer_offset=2048, desired_length=4096,
                            **_window(pair))))
    assert any(isinstance(e, ConnectionFailed) for e in pair.events)
    with pytest.raises(ConnectionClosed):
        pair.result(task)


def test_several_r2ts_answered_from_slices_of_the_callers_buffer() -> None:
    pair = Pair(config=InitiatorLoginConfig(immediate_data=False, initial_r2t=True),
                limits=Limits(max_recv_data_segment_length=4096))
    data = memoryview(bytes(range(256)) * 64)  # 16 KiB
    task = _submit_unsent(pair, scsi_task(scsi.write_16(0, 32), data_out=data))
    for ttt, offset in ((0x10, 8192), (0x11, 0)):
        pair.deliver(wire(P.R2T(itt=task.itt, ttt=ttt, buffer_offset=offset,
                                desired_length=8192, **_window(pair))))
    out, payload = pair.ini.take_output()
    assert payload == [0, 16384, 0]  # four 4 KiB Data-Outs
    views = [b for b in out if isinstance(b, memoryview) and b.obj is data.obj]
    assert sum(len(v) for v in views) == 16384  # Data-Out payloads are views, not copies
    headers = [P.decode_bhs(bytes(b)) for b in out if len(b) == 48]
    offsets = [(h.ttt, h.buffer_offset, h.final) for h in headers if isinstance(h, P.DataOut)]
    assert offsets == [(0x10, 8192, False), (0x10, 12288, True), (0x11, 0, False),
                       (0x11, 4096, True)]  # each PDU capped by the target's MRDSL


def test_target_nop_in_with_ttt_gets_a_nop_out_echo() -> None:
    pair = Pair()
    pair.deliver(wire(P.NopIn(itt=RESERVED_TAG, ttt=0x1234, statsn=_statsn(pair), lun=0,
                              data_length=4, **_window(pair)), b"ping"))
    out, _ = pair.ini.take_output()
    nop = P.decode_bhs(bytes(out[0]))
    assert isinstance(nop, P.NopOut)
    assert (nop.itt, nop.ttt, nop.immediate) == (RESERVED_TAG, 0x1234, True)
    assert bytes(out[1]) == b"ping"
    pair.deliver(wire(P.NopIn(itt=RESERVED_TAG, ttt=RESERVED_TAG, statsn=_statsn(pair),
                              **_window(pair))))
    assert pair.ini.take_output() == ([], [0, 0, 0])  # no answer wanted


def test_reject_fails_the_rejected_command() -> None:
    pair = Pair()
    task = scsi_task(scsi.test_unit_ready())
    pair.ini.submit(task)
    out, _ = pair.ini.take_output()
    header = bytes(out[0])[:48]
    pair.deliver(wire(P.Reject(reason=RejectReason.INVALID_PDU_FIELD, statsn=_statsn(pair),
                               data_length=48, **_window(pair)), header))
    with pytest.raises(RejectError) as info:
        pair.result(task)
    assert info.value.reason == RejectReason.INVALID_PDU_FIELD
    assert pair.ini.phase is Phase.FULL_FEATURE


def test_scsi_response_for_unknown_itt_closes() -> None:
    pair = Pair()
    pair.deliver(wire(P.ScsiResponse(itt=0x0ABC0000, statsn=_statsn(pair), **_window(pair))))
    failed = [e for e in pair.events if isinstance(e, ConnectionFailed)]
    assert failed and isinstance(failed[0].error, RemoteProtocolError)


def test_window_update_ignores_stale_and_invalid_values() -> None:
    pair = Pair()
    exp, mx = pair.ini.expcmdsn, pair.ini.maxcmdsn
    pair.deliver(wire(P.NopIn(itt=RESERVED_TAG, statsn=_statsn(pair), expcmdsn=exp + 10,
                              maxcmdsn=exp)))  # MaxCmdSN < ExpCmdSN - 1: ignored
    assert (pair.ini.expcmdsn, pair.ini.maxcmdsn) == (exp, mx)
    pair.deliver(wire(P.NopIn(itt=RESERVED_TAG, statsn=_statsn(pair), expcmdsn=exp,
                              maxcmdsn=mx + 5)))
    assert pair.ini.maxcmdsn == mx + 5
