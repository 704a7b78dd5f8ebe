"""Receive framing: direct placement vs staging, digests, rejects, every split of the stream."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyiscsi.placement.counters import CopyCounters
from pyiscsi.proto import pdu as P
from pyiscsi.proto.errors import (
    DigestError,
    LocalProtocolError,
    PduRejected,
    RemoteProtocolError,
)
from pyiscsi.proto.framing import DISCARD, VERIFY_FIRST, PduReceived, Receiver, Route, frame
from pyiscsi.proto.wire import RejectReason

from ..dataclass_init import assert_init_matches_fields


class Router:
    """Routes Data-Out payloads into ``memory`` at BufferOffset; others are control data."""

    def __init__(self, size: int = 1 << 20) -> None:
        self.memory = bytearray(size)
        self.refuse_ttt: int | None = None

    def route(self, pdu: P.Pdu, header: bytes, ahs: bytes) -> Route:
        if isinstance(pdu, P.DataOut):
            if pdu.ttt == self.refuse_ttt:
                raise PduRejected(RejectReason.INVALID_PDU_FIELD, "refused")
            if pdu.ttt == 0xDEAD:
                return DISCARD
            off = pdu.buffer_offset
            return memoryview(self.memory)[off:off + pdu.data_length]
        return None


def wire(pdu: P.Pdu, payload: bytes = b"", **kw: bool) -> bytes:
    return b"".join(bytes(b) for b in frame(pdu.encode(), payload or None, **kw))


def data_out(offset: int, payload: bytes, ttt: int = 1) -> bytes:
    return wire(P.DataOut(itt=1, ttt=ttt, buffer_offset=offset, data_length=len(payload)),
                payload)


def run(rx: Receiver, stream: bytes, chunk: int) -> list[PduReceived]:
    events = []
    pos = 0
    while pos < len(stream):
        buf = rx.get_buffer()
        assert len(buf) > 0, "the receiver must always offer room"
        n = min(len(buf), chunk, len(stream) - pos)
        buf[:n] = stream[pos:pos + n]
        pos += n
        events += rx.advance(n)
    return events


def test_large_payload_is_placed_directly_after_exact_header() -> None:
    counters = CopyCounters()
    router = Router()
    rx = Receiver(router, max_data_length=1 << 20, counters=counters)
    payload = bytes(range(256)) * 1024  # 256 KiB
    # First PDU: staging read takes the header plus some payload; the rest goes direct.
    stream = data_out(0, payload) + data_out(len(payload), payload)
    events = run(rx, stream, 1 << 20)
    assert len(events) == 2
    assert router.memory[:2 * len(payload)] == payload * 2
    # the second header was read exactly, so its payload was entirely placed
    assert events[1].placed == len(payload) and events[1].staged == 0
    assert counters.rx_placed + counters.rx_staged == 2 * len(payload)
    assert counters.rx_staged == events[0].staged < 65536


def test_direct_buffer_is_a_view_of_the_destination() -> None:
    router = Router()
    rx = Receiver(router, max_data_length=1 << 20, staging_size=1024)
    payload = b"x" * 100000
    stream = data_out(4096, payload)
    buf = rx.get_buffer()
    buf[:1024] = stream[:1024]
    rx.advance(1024)
    direct = rx.get_buffer()
    assert direct.obj is router.memory  # the store's own memory, not a stand-in


def test_small_pdus_are_staged_and_counted() -> None:
    counters = CopyCounters()
    router = Router()
    rx = Receiver(router, counters=counters)
    stream = b"".join(data_out(i * 512, bytes([i]) * 512) for i in range(8))
    events = rx.feed(stream)
    assert len(events) == 8
    assert counters.rx_staged == 4096 and counters.rx_placed == 0
    assert all(router.memory[i * 512:(i + 1) * 512] == bytes([i]) * 512 for i in range(8))


def test_control_payload_is_collected_with_padding_stripped() -> None:
    rx = Receiver(Router())
    text = b"SendTargets=All\0"
    events = rx.feed(wire(P.TextRequest(itt=5, data_length=len(text) - 1), text[:-1]))
    assert events[0].data == text[:-1]


def test_rejected_payload_is_drained_never_placed() -> None:
    counters = CopyCounters()
    router = Router()
    router.refuse_ttt = 7
    rx = Receiver(router, counters=counters, sink_size=1024, max_data_length=1 << 20)
    payload = b"\xff" * 70000
    events = rx.feed(data_out(0, payload, ttt=7) + data_out(0, b"ok!!"))
    assert events[0].rejected is not None and events[0].rejected.header == events[0].header
    assert router.memory[:4] == b"ok!!" and router.memory[4:70004] == bytes(70000)
    assert counters.rx_discarded == 70000


def test_oversized_segment_closes_from_the_bhs_alone() -> None:
    """A DataSegmentLength past what we declared cannot be trusted: the connection closes as
    soon as the 48-byte BHS is in, without waiting for (or draining) the claimed bytes."""
    rx = Receiver(Router(), max_data_length=8192, sink_size=4096)
    before = rx.errors.untrusted_headers
    with pytest.raises(RemoteProtocolError, match="DataSegmentLength 20000"):
        rx.feed(data_out(0, b"a" * 20000)[:48])
    assert rx.errors.untrusted_headers == before + 1


def test_screen_sees_the_bhs_before_its_ahs_arrives() -> None:
    seen: list[tuple[int, int, int]] = []

    def screen(opcode: int, ahs: int, length: int) -> None:
        seen.append((opcode, ahs, length))
        if ahs:
            raise RemoteProtocolError("no AHS here")

    rx = Receiver(Router(), screen=screen)
    header = bytearray(data_out(0, b"")[:48])
    header[4] = 74  # TotalAHSLength 296 bytes, none of which is ever sent
    with pytest.raises(RemoteProtocolError):
        rx.feed(bytes(header))
    assert seen == [(0x05, 296, 0)]
    assert rx.mid_pdu


def test_header_digest_mismatch_raises() -> None:
    rx = Receiver(Router())
    rx.header_digest = True
    good = wire(P.NopOut(itt=1), header_digest=True)
    assert rx.feed(good)[0].pdu == P.NopOut(itt=1)
    bad = bytearray(good)
    bad[-1] ^= 1
    with pytest.raises(DigestError):
        rx.feed(bytes(bad))


def test_data_digest_is_verified_before_placement() -> None:
    counters = CopyCounters()
    router = Router()
    rx = Receiver(router, counters=counters, max_data_length=1 << 20)
    rx.data_digest = True
    payload = b"z" * 10000
    good = wire(P.DataOut(itt=1, ttt=1, buffer_offset=0, data_length=len(payload)), payload,
                data_digest=True)
    bad = bytearray(wire(P.DataOut(itt=1, ttt=1, buffer_offset=20000, data_length=len(payload)),
                         payload, data_digest=True))
    bad[-1] ^= 0x80
    events = rx.feed(good + bytes(bad))
    assert events[0].rejected is None and router.memory[:10000] == payload
    assert events[1].rejected is not None
    assert events[1].rejected.reason == RejectReason.DATA_DIGEST_ERROR
    assert router.memory[20000:30000] == bytes(10000)  # never touched the store
    assert counters.rx_staged == 10000 and counters.rx_placed == 0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 9000), min_size=1, max_size=6),
       st.integers(1, 70000), st.booleans())
def test_every_split_gives_the_same_result(sizes: list[int], chunk: int, digests: bool) -> None:
    router = Router()
    rx = Receiver(router, max_data_length=1 << 20, direct_threshold=1024)
    rx.header_digest = rx.data_digest = digests
    stream = b""
    expected = bytearray(len(router.memory))
    offset = 0
    for i, size in enumerate(sizes):
        payload = bytes([(i * 7 + j) & 0xFF for j in range(size)])
        stream += wire(P.DataOut(itt=1, ttt=1, buffer_offset=offset, data_length=size),
                       payload, header_digest=digests, data_digest=digests)
        stream += wire(P.NopOut(itt=i), header_digest=digests)
        expected[offset:offset + size] = payload
        offset += size
    events = run(rx, stream, chunk)
    assert len(events) == 2 * len(sizes)
    assert router.memory == expected


def test_counters_split_by_payload_size_where_the_bytes_moved() -> None:
    """Each PDU's bytes land in the bucket of its DataSegmentLength (< 4 KiB, 4-64 KiB,
    >= 64 KiB), as placed or staged according to how they actually arrived."""
    counters = CopyCounters()
    router = Router()
    rx = Receiver(router, max_data_length=1 << 20, counters=counters)
    sizes = [4095, 4096, 65535, 65536, 200000]
    stream, offset = b"", 0
    for n in sizes:
        stream += data_out(offset, bytes((offset + i) % 251 for i in range(n)))
        offset += n
    events = run(rx, stream, 1 << 20)
    assert [e.placed + e.staged for e in events] == sizes
    assert router.memory[:offset] == bytes(i % 251 for i in range(offset))
    moved = [counters.rx_placed_by_size[i] + counters.rx_staged_by_size[i] for i in range(3)]
    assert moved == [4095, 4096 + 65535, 65536 + 200000]
    staged = [0, 0, 0]
    placed = [0, 0, 0]
    for n, e in zip(sizes, events, strict=True):
        b = 0 if n < 4096 else 1 if n < 65536 else 2
        staged[b] += e.staged
        placed[b] += e.placed
    assert counters.rx_staged_by_size == staged and counters.rx_placed_by_size == placed
    assert counters.rx_placed_by_size[2] > 0  # the 200000-byte payload went mostly direct


def test_large_payload_behind_a_staging_read_is_copied_and_counted_so() -> None:
    """Headers not read exactly (no burst open): a 64 KiB payload that arrives with its
    header in one staging read is copied out of staging, and ``rx_staged_ge64k`` says so;
    with exact headers the same PDU is placed whole."""
    payload = bytes(range(256)) * 256  # 64 KiB
    for exact, staged in ((False, 65536), (True, 0)):
        counters = CopyCounters()
        router = Router()
        rx = Receiver(router, max_data_length=1 << 20, counters=counters)
        rx.exact_headers = exact
        (event,) = run(rx, data_out(0, payload), 1 << 20)
        assert router.memory[:65536] == payload
        assert counters.rx_staged_by_size == [0, 0, staged]
        assert counters.rx_placed_by_size == [0, 0, 65536 - staged]
        assert (event.staged, event.placed) == (staged, 65536 - staged)


def test_opening_reads_headers_exactly_until_the_first_payload() -> None:
    """A session's opening (``Receiver.opening``, set as full feature phase begins): small
    PDUs without data arrive together with a 64 KiB write, all in the socket at once. With
    the opening, every header is read exactly, so the large payload is placed whole; without
    it, the staging read that takes the large PDU's header takes part of its payload too,
    and that part is copied. The first PDU with data ends the opening."""
    nops = b"".join(wire(P.NopOut(itt=i, ttt=0xFFFFFFFF, cmdsn=i)) for i in range(3))
    payload = bytes(range(256)) * 256  # 64 KiB
    for opening, staged in ((64, 0), (0, 65536)):
        counters = CopyCounters()
        router = Router()
        rx = Receiver(router, max_data_length=1 << 20, counters=counters)
        rx.opening = opening
        events = run(rx, nops + data_out(0, payload) + nops, 1 << 20)
        assert len(events) == 7
        assert router.memory[:65536] == payload
        assert counters.rx_staged_by_size[2] == staged
        assert counters.rx_placed_by_size[2] == 65536 - staged
        assert rx.opening == 0


def test_opening_ends_after_its_budget_of_reads() -> None:
    """A session of commands without data leaves the opening after its budget of reads, and
    then collects several headers per staging read again."""
    rx = Receiver(Router())
    rx.opening = 4
    stream = b"".join(wire(P.NopOut(itt=i, ttt=0xFFFFFFFF, cmdsn=i)) for i in range(10))
    reads = 0
    pos = 0
    while pos < len(stream):
        buf = rx.get_buffer()
        n = min(len(buf), len(stream) - pos)
        buf[:n] = stream[pos:pos + n]
        pos += n
        reads += 1
        rx.advance(n)
    assert rx.opening == 0
    assert reads == 5  # four exact 48-byte reads, then the other six headers in one


class LateRouter(Router):
    """Postpones the routing of Data-Out payloads (VERIFY_FIRST) and records every late
    decision; ``late`` says what :meth:`decide` answers then, by TTT."""

    def __init__(self) -> None:
        super().__init__()
        self.decided: list[int] = []
        self.late: dict[int, str] = {}

    def route(self, pdu: P.Pdu, header: bytes, ahs: bytes) -> Route:
        return VERIFY_FIRST if isinstance(pdu, P.DataOut) else None

    def decide(self, pdu: P.Pdu, header: bytes, ahs: bytes) -> Route:
        assert isinstance(pdu, P.DataOut)
        self.decided.append(pdu.ttt)
        how = self.late.get(pdu.ttt, "place")
        if how == "reject":
            raise PduRejected(RejectReason.INVALID_PDU_FIELD, "refused late")
        if how == "discard":
            return DISCARD
        if how == "control":
            return None
        return super().route(pdu, header, ahs)


@pytest.mark.parametrize("digests", [True, False])
@pytest.mark.parametrize("chunk", [1 << 20, 7, 1000])
def test_verify_first_routes_a_payload_only_once_it_passed_its_digest(digests: bool,
                                                                      chunk: int) -> None:
    """VERIFY_FIRST: the payload lands in scratch and the router's late decision
    (``route_verified``) comes only once the data digest has matched; a payload that fails
    it is rejected (0x02) without the late decision ever being asked, and its bytes reach
    no destination. Placed, control, discarded and refused late answers each do what they
    do at header time. Without a data digest the late decision comes once the payload is
    whole."""
    counters = CopyCounters()
    router = LateRouter()
    router.late = {2: "reject", 3: "discard", 4: "control"}
    rx = Receiver(router, counters=counters, max_data_length=1 << 20,
                  route_verified=router.decide)
    rx.data_digest = rx.header_digest = digests
    payload = bytes(range(200)) * 50  # 10000 bytes: the tail of it is received directly

    def pdu(ttt: int, offset: int, spoil: bool = False) -> bytes:
        raw = bytearray(wire(P.DataOut(itt=1, ttt=ttt, buffer_offset=offset,
                                       data_length=len(payload)), payload,
                             header_digest=digests, data_digest=digests))
        if spoil:
            raw[-1] ^= 0x80  # the data digest
        return bytes(raw)

    stream = (pdu(1, 0) + (pdu(1, 20000, spoil=True) if digests else b"")
              + pdu(2, 40000) + pdu(3, 60000) + pdu(4, 80000))
    events = run(rx, stream, chunk)
    if digests:
        good, bad, refused, dropped, control = events
        assert bad.rejected is not None
        assert bad.rejected.reason == RejectReason.DATA_DIGEST_ERROR
        assert router.memory[20000:30000] == bytes(10000)
    else:
        good, refused, dropped, control = events
    assert router.decided == [1, 2, 3, 4]  # never for the PDU that failed its digest
    assert good.rejected is None and (good.placed, good.staged) == (0, len(payload))
    assert router.memory[:10000] == payload
    assert refused.rejected is not None
    assert refused.rejected.reason == RejectReason.INVALID_PDU_FIELD
    assert refused.rejected.header == refused.header  # the BHS, for the Reject
    assert dropped.rejected is None and dropped.data is None
    assert control.rejected is None and control.data == payload
    assert router.memory[40000:] == bytes(len(router.memory) - 40000)
    assert counters.rx_staged == len(payload)
    assert counters.rx_discarded == len(payload) * (3 if digests else 2)  # bad, refused, dropped


def test_verify_first_needs_a_late_router() -> None:
    rx = Receiver(LateRouter())
    with pytest.raises(LocalProtocolError):
        rx.feed(data_out(0, b"x" * 100))


def test_pdu_received_init_sets_every_field_in_order_with_its_default() -> None:
    """PduReceived writes its own __init__ (compiled: the generated one stays interpreted)."""
    values = (P.NopOut(itt=1), b"h" * 48, b"a" * 4, b"data", PduRejected(
        RejectReason.PROTOCOL_ERROR, "x"), 512, 64)
    assert_init_matches_fields(PduReceived, values, required=2)
