"""The LU event boundary: unit attentions that every path must see, out and in (SAM-5 §5.14)."""

from __future__ import annotations

import struct
from collections.abc import Iterator

import pytest

from pyiscsi.backstore.memory import MemoryStore
from pyiscsi.proto import pdu as P
from pyiscsi.proto.wire import TmfFunction
from pyiscsi.scsi.lu_events import (
    SHARED_ATTENTIONS,
    Delivery,
    LuEvent,
    TaskSetClearedEvent,
    UnitAttentionEvent,
    decode_event,
    encode_event,
)
from pyiscsi.scsi.lun import LogicalUnit
from pyiscsi.scsi.task import Nexus
from pyiscsi.target.connection import TargetConnection

from ..pair import TARGET, Initiator, drain, feed, make_catalog, wire


class FakeLink:
    """An EventLink that keeps what was published; the test finishes deliveries."""

    def __init__(self) -> None:
        self.published: list[tuple[LuEvent, Delivery]] = []

    def publish(self, event: LuEvent) -> Delivery:
        delivery = Delivery(event)
        self.published.append((event, delivery))
        return delivery


def make_lu() -> LogicalUnit:
    return LogicalUnit(0, MemoryStore(1 << 20), "iqn.2026-11.org.example:t")


def test_codec_round_trip_and_origin() -> None:
    payload = encode_event(UnitAttentionEvent(0x29, 0x03), "gw-a")
    assert decode_event(payload) == ("gw-a", UnitAttentionEvent(0x29, 0x03))
    cleared = encode_event(TaskSetClearedEvent(), "gw-b")
    assert cleared == b'{"pyiscsi":1,"origin":"gw-b","clear":true}'
    assert decode_event(cleared) == ("gw-b", TaskSetClearedEvent())


@pytest.mark.parametrize("payload", [
    b"", b"\xff\xfe", b"[]", b'{"pyiscsi": 2, "origin": "a", "ua": [41, 3]}',
    b'{"pyiscsi": 1, "origin": 5, "ua": [41, 3]}',
    b'{"pyiscsi": 1, "origin": "a", "ua": [41]}',
    b'{"pyiscsi": 1, "origin": "a", "ua": [41, 300]}',
    b'{"pyiscsi": 1, "origin": "a", "ua": [41, true]}',
    b'{"pyiscsi": 1, "origin": "a", "ua": [63, 14]}',  # REPORTED LUNS DATA CHANGED: not shared
    b'{"pyiscsi": 1, "origin": "a", "clear": 1}',
    b'{"pyiscsi": 1, "origin": "a", "clear": true, "ua": [41, 3]}',
])
def test_decode_refuses_what_is_not_a_shared_event(payload: bytes) -> None:
    with pytest.raises(ValueError):
        decode_event(payload)


def test_shared_attentions_are_resets_and_capacity() -> None:
    assert {(0x29, 0x01), (0x29, 0x02), (0x29, 0x03), (0x2A, 0x09)} == SHARED_ATTENTIONS


def test_attention_everywhere_is_local_and_published() -> None:
    lu, link, nexus = make_lu(), FakeLink(), Nexus("iqn.i", 1)
    lu.attentions.join(nexus)
    assert lu.attention_everywhere(0x29, 0x03) is None  # no link: local only
    assert lu.attentions.pending(nexus) == 1
    lu.events = link
    delivery = lu.attention_everywhere(0x29, 0x03)
    assert delivery is not None and link.published == [(UnitAttentionEvent(0x29, 0x03),
                                                        delivery)]
    assert lu.attention_everywhere(0x3F, 0x0E) is None  # this gateway's LUN inventory
    assert len(link.published) == 1


def test_received_events_apply_and_are_never_published_again() -> None:
    lu, link, nexus = make_lu(), FakeLink(), Nexus("iqn.i", 1)
    lu.events = link
    lu.attentions.join(nexus)
    lu.receive(UnitAttentionEvent(0x29, 0x03))
    assert link.published == []
    sense = lu.attentions.take(nexus, 0x00)
    assert sense is not None and (sense[2], sense[12], sense[13]) == (0x06, 0x29, 0x03)


def test_grow_publishes_capacity_change() -> None:
    lu, link = make_lu(), FakeLink()
    lu.events = link
    lu.grow(2 << 20)
    assert [event for event, _ in link.published] == [UnitAttentionEvent(0x2A, 0x09)]


def test_delivery_finishes_once_and_tells_waiters() -> None:
    delivery = Delivery(UnitAttentionEvent(0x29, 0x03))
    seen: list[object] = []
    delivery.waiters = [seen.append]
    delivery.finish()
    delivery.finish("late")
    assert seen == [delivery] and delivery.done and delivery.error is None


def _lun_reset(ini: Initiator) -> None:
    feed(ini.conn, wire(P.TaskMgmtRequest(itt=0x600, function=TmfFunction.LOGICAL_UNIT_RESET,
                                          lun=0, cmdsn=ini.cmdsn)))


@pytest.fixture
def ini() -> Iterator[Initiator]:
    conn = TargetConnection(make_catalog(), "test")
    pair = Initiator(conn)
    pair.login()
    yield pair
    conn.close()


def test_lun_reset_response_waits_for_the_other_gateways(ini: Initiator) -> None:
    lu = ini.conn.catalog.targets[TARGET].luns[0]
    link = FakeLink()
    lu.events = link
    _lun_reset(ini)
    assert drain(ini.conn) == []  # not before every path has the unit attention
    ((event, delivery),) = link.published
    assert event == UnitAttentionEvent(0x29, 0x03)
    delivery.finish()
    (reply,) = drain(ini.conn)
    assert isinstance(reply.pdu, P.TaskMgmtResponse) and reply.pdu.response == 0


def test_lun_reset_without_link_answers_at_once(ini: Initiator) -> None:
    _lun_reset(ini)
    (reply,) = drain(ini.conn)
    assert isinstance(reply.pdu, P.TaskMgmtResponse) and reply.pdu.response == 0


def test_remote_reset_reaches_a_local_session(ini: Initiator) -> None:
    lu = ini.conn.catalog.targets[TARGET].luns[0]
    lu.receive(UnitAttentionEvent(0x29, 0x03))
    ini.command(struct.pack(">6B", 0, 0, 0, 0, 0, 0))  # TEST UNIT READY
    (reply,) = drain(ini.conn)
    assert isinstance(reply.pdu, P.ScsiResponse) and reply.pdu.status == 0x02  # CHECK COND.
    sense = reply.data[2:]
    assert (sense[2] & 0x0F, sense[12], sense[13]) == (0x06, 0x29, 0x03)


def test_clear_task_set_response_waits_for_the_other_gateways(ini: Initiator) -> None:
    """CLEAR TASK SET of a shared LU is published to the other gateways (their sessions'
    tasks are in the same task set, TST=000b) and answered once they acknowledged."""
    lu = ini.conn.catalog.targets[TARGET].luns[0]
    link = FakeLink()
    lu.events = link
    feed(ini.conn, wire(P.TaskMgmtRequest(itt=0x601, function=TmfFunction.CLEAR_TASK_SET,
                                          lun=0, cmdsn=ini.cmdsn)))
    assert drain(ini.conn) == []
    ((event, delivery),) = link.published
    assert event == TaskSetClearedEvent()
    delivery.finish()
    (reply,) = drain(ini.conn)
    assert isinstance(reply.pdu, P.TaskMgmtResponse) and reply.pdu.response == 0


def test_a_clear_from_another_gateway_aborts_and_tells_the_nexuses_that_had_tasks() -> None:
    """Received, a cleared task set aborts this gateway's tasks on the LU (none answered)
    and gives COMMANDS CLEARED BY ANOTHER INITIATOR (2Fh/00h) to each nexus that had any;
    a session with nothing there gets no unit attention. Other LUs keep their tasks."""
    from pyiscsi.target.tmf import after_another_gateway

    catalog = make_catalog()
    busy, idle = Initiator(TargetConnection(catalog, "b")), Initiator(
        TargetConnection(catalog, "i"), isid=0x400000000002)
    for pair in (busy, idle):
        pair.login()
    lu = catalog.targets[TARGET].luns[0]
    held = busy.cmdsn
    busy.cmdsn += 1  # a gap: the next command is held, a task on LUN 0 that has not run
    busy.command(struct.pack(">6B", 0, 0, 0, 0, 0, 0))  # TEST UNIT READY, held
    assert len(busy.conn.tasks) == 1
    assert after_another_gateway(catalog, lu, TaskSetClearedEvent()) == []
    assert all(task.aborted for task in busy.conn.tasks.values())
    assert catalog.state.events.remote_aborts == 1
    assert lu.attentions.pending(busy.conn.session.nexus) == 1  # type: ignore[union-attr]
    assert lu.attentions.pending(idle.conn.session.nexus) == 0  # type: ignore[union-attr]
    busy.cmdsn = held  # the gap closes: the aborted command is taken, never answered
    busy.command(struct.pack(">6B", 0, 0, 0, 0, 0, 0))
    statuses = [r.pdu for r in drain(busy.conn) if isinstance(r.pdu, P.ScsiResponse)]
    assert len(statuses) == 1 and statuses[0].status == 0x02  # the UA, for the new one
    for pair in (busy, idle):
        pair.conn.close()
