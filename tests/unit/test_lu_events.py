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


@pytest.mark.parametrize("payload", [
    b"", b"\xff\xfe", b"[]", b'{"pyiscsi": 2, "origin": "a", "ua": [41, 3]}',
    b'{"pyiscsi": 1, "origin": 5, "ua": [41, 3]}',
    b'{"pyiscsi": 1, "origin": "a", "ua": [41]}',
    b'{"pyiscsi": 1, "origin": "a", "ua": [41, 300]}',
    b'{"pyiscsi": 1, "origin": "a", "ua": [41, true]}',
    b'{"pyiscsi": 1, "origin": "a", "ua": [63, 14]}',  # REPORTED LUNS DATA CHANGED: not shared
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
