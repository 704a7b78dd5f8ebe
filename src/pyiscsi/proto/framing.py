"""Receive-side framing: BHS -> AHS -> header digest -> data -> pad -> data digest.

A buffer-oriented, sans-IO state machine (the shape of tgt's receive path): the I/O layer
asks :meth:`Receiver.get_buffer` where the next bytes go and reports with
:meth:`Receiver.advance` how many landed there. The buffer is either a staging area
(headers, small payloads, padding, digests) or, once a header has been decoded and routed,
the payload's final destination itself: the slice of the store a data pointer table entry
points at. That is direct placement (design notes §1, §5): large payloads arrive straight
into their home; payload bytes that happened to arrive inside a staging read are copied
once and counted as staged.

The router (the connection engine) decides each payload's destination at header time:
a memoryview (placed), ``None`` (a control payload such as login text, collected into a
fresh buffer and handed over in the event), :data:`DISCARD` (drained into a scratch
sink), or :data:`VERIFY_FIRST` (decide once the payload is whole and its data digest
verified: :attr:`Receiver.route_verified` is then asked, and a payload that fails its
digest is never routed at all). A router that raises :class:`PduRejected` gets the payload
drained into the sink and the rejection reported in the event, so the connection can answer
with a Reject PDU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

from ..placement.counters import CopyCounters
from . import digest
from .errors import DigestError, LocalProtocolError, PduRejected, RemoteProtocolError
from .pdu import Pdu, decode_bhs, padded
from .wire import BHS_LENGTH, DIGEST_LENGTH, RejectReason

_setattr = object.__setattr__
"""How a frozen dataclass's own ``__init__`` sets its fields (as the generated one does)."""


class _Discard:
    """Sentinel: drain this payload into the scratch sink."""

    def __repr__(self) -> str:
        return "DISCARD"


class _VerifyFirst:
    """Sentinel: route this payload only once it is whole and its data digest verified."""

    def __repr__(self) -> str:
        return "VERIFY_FIRST"


DISCARD: Final = _Discard()
VERIFY_FIRST: Final = _VerifyFirst()
"""A header-time answer that postpones the routing decision until the payload has arrived
(into the receiver's scratch area) and passed its data digest, if one is in use: then
:attr:`Receiver.route_verified` decides (placed, control, DISCARD or a
:class:`PduRejected`). A PDU whose payload fails its digest is rejected
(:attr:`RejectReason.DATA_DIGEST_ERROR`) without ever being routed: RFC 7143 §7.8 has
such a PDU discarded, and a router whose routing has side effects (the target admitting a
SCSI Command with immediate data: a task, its CmdSN, a table entry) must not run for it."""
Route = memoryview | _Discard | _VerifyFirst | None


class PayloadRouter(Protocol):
    """Decides where a PDU's data segment goes, given its decoded header."""

    def route(self, pdu: Pdu, header: bytes, ahs: bytes) -> Route: ...


@dataclass(frozen=True, slots=True)
class PduReceived:
    """One whole PDU has arrived (header, digest-checked payload).

    ``data`` holds a control payload (``route`` returned None). For placed payloads it is
    None: the bytes are already at their destination. ``rejected`` is set when the router
    refused the PDU; its payload was drained into the sink.
    """

    pdu: Pdu | None
    header: bytes
    ahs: bytes = b""
    data: bytes | None = None
    rejected: PduRejected | None = None
    placed: int = 0
    """Payload bytes received straight into the destination (no copy)."""
    staged: int = 0
    """Payload bytes copied from a staging read into the destination."""

    def __init__(self, pdu: Pdu | None, header: bytes, ahs: bytes = b"",
                 data: bytes | None = None, rejected: PduRejected | None = None,
                 placed: int = 0, staged: int = 0) -> None:
        """The fields above, in their order (``dataclass`` keeps an ``__init__`` the class
        defines; the generated one stays interpreted under mypyc, and one event is built
        per PDU: ``tests/dataclass_init.py``)."""
        _setattr(self, "pdu", pdu)
        _setattr(self, "header", header)
        _setattr(self, "ahs", ahs)
        _setattr(self, "data", data)
        _setattr(self, "rejected", rejected)
        _setattr(self, "placed", placed)
        _setattr(self, "staged", staged)


_HEADER, _PAYLOAD, _DIRECT, _TAIL = range(4)
_SCSI_COMMAND: Final = 0x01
"""Byte 0 of a non-immediate SCSI Command BHS (RFC 7143 §11.3): the fast path's candidates."""


@dataclass(slots=True)
class ReceiveErrors:
    """Counts of CRC32C digest failures (RFC 7143 §7.8), of headers whose lengths could not
    be trusted and of partial PDUs left hanging (the connection was closed on them)."""

    header: int = 0
    data: int = 0
    untrusted_headers: int = 0
    partial_pdus: int = 0
    """Connections closed for sitting on part of a PDU past the deadline."""


FastCommand = Callable[[memoryview, int, int], bool]
"""Called with (staging view, BHS offset, DataSegmentLength) for a non-immediate SCSI
Command without AHS whose whole PDU (header, data, pad) sits in the staging area; answers
True when it took the command whole (the bytes are then skipped), False (having changed
nothing) to leave it to the general path."""
VerifiedRoute = Callable[[Pdu, bytes, bytes], Route]
"""Called with (PDU, BHS, AHS) for a PDU the router answered :data:`VERIFY_FIRST`, once its
payload is whole and verified; answers where the payload goes (the payload is then copied
there from scratch; not :data:`VERIFY_FIRST` again) or raises :class:`PduRejected`."""
HeaderScreen = Callable[[int, int, int], None]
"""Called with (opcode, TotalAHSLength in bytes, DataSegmentLength) as soon as a BHS's first
48 bytes are in, before any AHS, digest or data is waited for; raises
:class:`RemoteProtocolError` to close the connection."""




class Receiver:
    """The receive state machine of one connection (RFC 7143 §11.2).

    ``staging_size`` bounds the staging reads; payload remainders of at least
    ``direct_threshold`` bytes are received directly into their destination. After a
    directly placed payload of at least ``exact_after`` bytes the next header is read
    exactly (48 bytes plus AHS and digest), so a stream of large Data-Outs is placed
    entirely directly. A small SCSI Command that an engine's :attr:`fast` path may take
    whole is collected whole in staging first (up to ``fast_wait_limit`` bytes).
    """

    def __init__(self, router: PayloadRouter, *, max_data_length: int = 8192,
                 staging_size: int = 65536, direct_threshold: int = 4096,
                 sink_size: int = 65536, counters: CopyCounters | None = None,
                 errors: ReceiveErrors | None = None,
                 on_pdu: Callable[[PduReceived], None] | None = None,
                 screen: HeaderScreen | None = None,
                 route_verified: VerifiedRoute | None = None) -> None:
        self.router = router
        self.route_verified = route_verified
        """Routes a payload the router postponed with :data:`VERIFY_FIRST`."""
        self.screen = screen
        """Checks a header's opcode and lengths from the BHS alone (see :data:`HeaderScreen`)."""
        self.screen_every_header = True
        """Whether :attr:`screen` sees every header, or only those claiming an AHS (full
        feature phase: an opcode's legality is then the engine's matter at :meth:`route`)."""
        self.on_pdu = on_pdu
        self.fast: FastCommand | None = None
        """The engine's fast path for SCSI Commands (see :data:`FastCommand`); set only
        while no digest is in use."""
        """If given, called with each PDU as soon as it is complete, before the next header is
        routed (so the engine's state is current when it routes the next PDU). Otherwise the
        events are returned by :meth:`advance`."""
        self.max_data_length = max_data_length
        self.header_digest = False
        self.data_digest = False
        self.direct_threshold = direct_threshold
        self.counters = counters if counters is not None else CopyCounters()
        self.errors = errors if errors is not None else ReceiveErrors()
        self._stage = bytearray(max(staging_size, BHS_LENGTH + 1024 + 2 * DIGEST_LENGTH))
        self._view = memoryview(self._stage)
        self._start = 0
        self._end = 0
        self._sink = memoryview(bytearray(sink_size))
        self._scratch = bytearray()
        self._exact = False
        self.exact_headers = False
        self.fast_wait_limit = 16384
        """A SCSI Command of at most this many bytes (header, data, pad) that arrived in
        part waits in staging for the rest, so the fast path can take it whole."""
        self._whole = 0
        """Bytes of the PDU at ``_start`` staging must hold at once (0: no such need)."""
        self.exact_after = 16384
        self.opening = 0
        """Staging reads left to read headers exactly at a session's opening (set by the
        engine as full feature phase begins); the first PDU with a data segment ends it. A
        session whose first payloads are large (a stream of 1 MiB writes after INQUIRY and
        READ CAPACITY) then places them whole instead of copying the part of the first one
        that a staging read took with its header."""
        """After a payload of at least this many bytes was placed directly, the next header
        is read exactly (a stream of large Data-Outs lands entirely directly); after a
        smaller one the next read stages as much as has arrived, so a run of small
        commands with immediate data costs one read, not two per command."""
        """Set by the engine while it expects large solicited payloads (R2Ts outstanding):
        headers are then read exactly, so the payload behind them is placed, not staged."""
        self._state = _HEADER
        self._events: list[PduReceived] = []
        # current PDU
        self._pdu: Pdu | None = None
        self._header = b""
        self._ahs = b""
        self._length = 0
        self._pos = 0
        self._dest: memoryview | None = None
        self._final_dest: memoryview | None = None
        self._control: bytearray | None = None
        self._discard = False
        self._verify_first = False
        """The router postponed the current payload's routing (:data:`VERIFY_FIRST`)."""
        self._rejected: PduRejected | None = None
        self._placed = 0
        self._staged = 0
        self._tail = 0

    # ------------------------------------------------------------------ I/O side

    def get_buffer(self) -> memoryview:
        """Where the next received bytes should be written."""
        if self._state == _DIRECT:
            return self._slice(self._pos, self._length - self._pos)
        if self._start == self._end:
            self._start = self._end = 0
        elif (len(self._stage) - self._end < BHS_LENGTH + 1024 + 2 * DIGEST_LENGTH
              or len(self._stage) - self._start < self._whole):
            n = self._end - self._start
            self._stage[:n] = self._view[self._start:self._end]
            self._start, self._end = 0, n
        limit = len(self._stage)
        if self._exact or self.exact_headers or self.opening:
            want = self._wanted()
            if want > 0:
                limit = min(limit, self._end + want)
        return self._view[self._end:limit]

    def advance(self, nbytes: int) -> list[PduReceived]:
        """``nbytes`` were written into the last buffer; returns the PDUs completed."""
        if nbytes <= 0:
            return []
        if self._state == _DIRECT:
            self._pos += nbytes
            self._placed += nbytes
            if self._pos == self._length:
                self._state = _TAIL
                self._exact = True
        else:
            self._end += nbytes
            if self.opening:
                self.opening -= 1
        self._process()
        events, self._events = self._events, []
        return events

    def feed(self, data: bytes | bytearray | memoryview) -> list[PduReceived]:
        """Copy ``data`` through the buffer interface (tests, fuzzers, stream drivers)."""
        events: list[PduReceived] = []
        src = memoryview(data)
        while src:
            buf = self.get_buffer()
            n = min(len(buf), len(src))
            buf[:n] = src[:n]
            src = src[n:]
            events.extend(self.advance(n))
        return events

    @property
    def mid_pdu(self) -> bool:
        """Whether part of a PDU has arrived and the rest has not (a partial PDU)."""
        return self._state != _HEADER or self._end > self._start

    # ------------------------------------------------------------------ internals

    def _wanted(self) -> int:
        """Bytes still needed in staging to make progress in the current state."""
        avail = self._end - self._start
        if self._state == _HEADER:
            need = BHS_LENGTH
            if avail >= BHS_LENGTH:
                need += self._stage[self._start + 4] * 4
                need += DIGEST_LENGTH if self.header_digest else 0
            return need - avail
        if self._state == _TAIL:
            return self._tail - avail
        return 0

    def _slice(self, pos: int, n: int) -> memoryview:
        if self._discard:
            return self._sink[:min(n, len(self._sink))]
        assert self._dest is not None
        return self._dest[pos:pos + n]

    def _process(self) -> None:
        while True:
            avail = self._end - self._start
            if self._state == _HEADER:
                if avail < BHS_LENGTH:
                    return
                stage, start = self._stage, self._start
                ahs_len = stage[start + 4] * 4
                length = stage[start + 5] << 16 | stage[start + 6] << 8 | stage[start + 7]
                if ahs_len or self.screen_every_header or length > self.max_data_length:
                    self._screen(ahs_len, length)
                fast = self.fast
                self._whole = 0
                if fast is not None and stage[start] == _SCSI_COMMAND and not ahs_len:
                    whole = BHS_LENGTH + ((length + 3) & ~3)
                    if avail >= whole:
                        if fast(self._view, start, length):
                            self._start = start + whole
                            continue
                    elif (whole <= self.fast_wait_limit and not self._exact
                          and not self.exact_headers):
                        # the rest of a small command is on its way: wait for it in
                        # staging (made room for by get_buffer), then take it whole
                        self._whole = whole
                        return
                hlen = BHS_LENGTH + ahs_len
                need = hlen + (DIGEST_LENGTH if self.header_digest else 0)
                if avail < need:
                    return
                self._begin(hlen)
                self._start += need
            elif self._state == _PAYLOAD:
                take = min(self._length - self._pos, avail)
                while take:
                    chunk = self._slice(self._pos, take)
                    n = len(chunk)
                    chunk[:] = self._view[self._start:self._start + n]
                    self._start += n
                    self._pos += n
                    self._staged += n
                    take -= n
                remaining = self._length - self._pos
                if remaining == 0:
                    self._state = _TAIL
                elif remaining >= self.direct_threshold:
                    self._state = _DIRECT
                    return
                else:
                    return
            elif self._state == _TAIL:
                if avail < self._tail:
                    return
                tail = bytes(self._view[self._start:self._start + self._tail])
                self._start += self._tail
                self._finish(tail)
            else:  # _DIRECT: bytes arrive through get_buffer only
                return

    def _screen(self, ahs_len: int, length: int) -> None:
        """RFC 7143 §11.2: check the lengths a BHS claims before waiting for them. A
        DataSegmentLength beyond what we declared (MaxRecvDataSegmentLength, or the login
        limit) cannot be trusted: the connection closes at once rather than draining
        megabytes of whatever follows."""
        stage, start = self._stage, self._start
        try:
            if length > self.max_data_length:
                raise RemoteProtocolError(
                    f"DataSegmentLength {length} > MaxRecvDataSegmentLength "
                    f"{self.max_data_length}")
            if self.screen is not None:
                self.screen(stage[start] & 0x3F, ahs_len, length)
        except RemoteProtocolError:
            self.errors.untrusted_headers += 1
            raise

    def _begin(self, hlen: int) -> None:
        raw = bytes(self._view[self._start:self._start + hlen])
        header, ahs = raw[:BHS_LENGTH], raw[BHS_LENGTH:]
        if self.header_digest:
            got = self._view[self._start + hlen:self._start + hlen + DIGEST_LENGTH]
            if not digest.verify(got, raw):
                self.errors.header += 1
                raise DigestError("header")
        length = int.from_bytes(header[5:8], "big")
        self._header, self._ahs, self._length = header, ahs, length
        self._pos = self._placed = self._staged = 0
        self._dest = self._final_dest = None
        self._control = None
        self._discard = self._verify_first = False
        self._rejected = None
        self._pdu = None
        self._tail = padded(length) - length
        if length and self.data_digest:
            self._tail += DIGEST_LENGTH
        self._state = _PAYLOAD if length else _TAIL
        self._exact = False
        try:
            self._pdu = decode_bhs(header)
            route = self.router.route(self._pdu, header, ahs)
        except PduRejected as exc:
            self._reject(exc)
            route = DISCARD
        if isinstance(route, _VerifyFirst):
            # Received whole into scratch; routed in _finish once verified.
            self._verify_first = True
            if length:
                self._dest = self._scratch_view(length)
            return
        if not length:
            return
        if route is None:
            self._control = bytearray(length)
            self._dest = memoryview(self._control)
        elif isinstance(route, _Discard):
            self._discard = True
        else:
            if len(route) != length:
                raise RemoteProtocolError("router returned a destination of the wrong size")
            if self.data_digest:
                # Verify before a byte touches the store: stage, check, then copy once.
                self._final_dest = route
                self._dest = self._scratch_view(length)
            else:
                self._dest = route

    def _reject(self, exc: PduRejected) -> None:
        """The router refused the PDU: its payload is drained and the Reject carries the
        header (the current BHS unless the router named another)."""
        if not exc.header:
            exc.header = self._header
        self._rejected = exc

    def _scratch_view(self, length: int) -> memoryview:
        """``length`` bytes of the scratch area a payload is staged in until its digest is
        checked (grown when too small)."""
        if len(self._scratch) < length:
            self._scratch = bytearray(length)
        return memoryview(self._scratch)[:length]

    def _finish(self, tail: bytes) -> None:
        length = self._length
        placed, staged = self._placed, self._staged
        if length and self.data_digest and not self._discard:
            assert self._dest is not None
            if not digest.verify(tail[-DIGEST_LENGTH:], self._dest[:length],
                                 tail[:-DIGEST_LENGTH]):
                # RFC 7143 §7.8: Reject with reason 0x02 and discard the PDU (what follows
                # for its task is the engine's matter).
                self.errors.data += 1
                self._rejected = PduRejected(RejectReason.DATA_DIGEST_ERROR,
                                             "data digest mismatch", self._header)
                self._final_dest = None
        if self._verify_first and self._rejected is None:
            self._route_verified()
        if self._final_dest is not None:
            assert self._dest is not None
            self._final_dest[:] = self._dest[:length]
            placed, staged = 0, length
        data = None
        if self._control is not None:
            data = bytes(self._control)
        elif self._discard or self._rejected is not None:
            self.counters.rx_discarded += length
            placed = staged = 0
        else:  # by payload size (counters.size_bucket, inlined): one index per PDU
            bucket = 0 if length < 4096 else 1 if length < 65536 else 2
            counters = self.counters
            counters.rx_placed_by_size[bucket] += placed
            counters.rx_staged_by_size[bucket] += staged
        event = PduReceived(self._pdu, self._header, self._ahs, data, self._rejected,
                            placed, staged)
        self._state = _HEADER
        self._exact = self._placed >= self.exact_after and not self._discard
        if length and self.opening:
            self.opening = 0
        self._dest = self._final_dest = None
        self._control = None
        if self.on_pdu is not None:
            self.on_pdu(event)
        else:
            self._events.append(event)

    def _route_verified(self) -> None:
        """The payload of a PDU routed :data:`VERIFY_FIRST` is whole in scratch and has
        passed its digest: ask :attr:`route_verified` where it goes."""
        length = self._length
        decide = self.route_verified
        if decide is None:
            raise LocalProtocolError("VERIFY_FIRST without a route_verified callback")
        assert self._pdu is not None  # a BHS that did not decode was never routed
        try:
            route = decide(self._pdu, self._header, self._ahs)
        except PduRejected as exc:
            self._reject(exc)
            return
        if route is None:
            self._control = bytearray(self._scratch[:length]) if length else None
        elif isinstance(route, _Discard):
            self._discard = True
        elif isinstance(route, _VerifyFirst):
            raise LocalProtocolError("route_verified answered VERIFY_FIRST")
        elif len(route) != length:
            raise RemoteProtocolError("router returned a destination of the wrong size")
        elif length:
            self._final_dest = route


def frame(header: bytes, payload: bytes | bytearray | memoryview | None = None, *,
          header_digest: bool = False, data_digest: bool = False,
          ahs: bytes = b"") -> list[bytes | bytearray | memoryview]:
    """The buffers that put one PDU on the wire: BHS[+AHS][+digest], payload, pad[+digest].

    The payload is passed through as given (a view of its home memory: no copy here).
    """
    head = header + ahs if ahs else header
    out: list[bytes | bytearray | memoryview] = [
        head + digest.digest_bytes(head) if header_digest else head]
    if payload is not None and len(payload):
        out.append(payload)
        pad = b"\0" * (padded(len(payload)) - len(payload))
        if data_digest:
            pad += digest.digest_bytes(payload, pad)
        if pad:
            out.append(pad)
    return out
