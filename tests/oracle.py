"""A model oracle for the target's data path, shared by the hypothesis test and the fuzzer.

The store may only ever change where the target *solicited* bytes (an R2T's burst, or the
immediate/unsolicited data of a command it accepted) *and* the peer actually sent bytes for
that command. The oracle keeps:

* the model store: the LUN's bytes when the run started (:class:`StoreModel`);
* every payload the peer sent towards the store, as :class:`Write` records in store
  coordinates, clipped to what was solicited (:class:`CommandRecord` does that bookkeeping
  for the hypothesis test, :class:`PlacementRecorder` for the fuzzer);
* a verdict per byte: the store must hold the initial value or one of the values sent for
  that byte, minus those ruled out by ordering (:func:`check_store`).

A write answered GOOD is a *must* write: its bytes must be there (unless a concurrent or
later write overwrote them). Anything else (CHECK CONDITION, aborted, rejected, unanswered)
is a *may* write: it may have landed partially, only inside its solicited-and-sent ranges.

Also here: a decoder of the target's output (:func:`decode_output`) and a splitter of raw
initiator input into PDUs (:func:`split_input`), both plain RFC 7143 §11 framing.
"""

from __future__ import annotations

import bisect
import ctypes
import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyiscsi.placement import table as table_module
from pyiscsi.placement.table import DataPointerTable
from pyiscsi.proto import pdu as P
from pyiscsi.proto.errors import PduRejected
from pyiscsi.proto.wire import DIGEST_LENGTH
from pyiscsi.scsi import dispatch
from pyiscsi.scsi.task import DataOutPlan
from pyiscsi.target import connection as connection_module
from pyiscsi.target.connection import TargetConnection

PATCHABLE = all(m.__file__ is not None and m.__file__.endswith(".py")
                for m in (table_module, dispatch, connection_module))
"""Whether :class:`PlacementRecorder` can see the engine's calls: it patches
``DataPointerTable.allocate`` and ``dispatch.execute``, which compiled (mypyc) callers reach
directly, so on the compiled build it would record nothing. Its tests run on the pure-Python
build (``PYISCSI_PURE=1``; CI runs them there)."""

INF = math.inf
Buffer = bytes | bytearray | memoryview

# ----------------------------------------------------------------------------- framing


@dataclass
class Reply:
    """One PDU the target sent, with its data segment."""

    pdu: P.Pdu
    data: bytes


def decode_output(buffers: Iterable[Buffer], *, header_digest: bool = False,
                  data_digest: bool = False) -> list[Reply]:
    """Decode what ``take_output()`` returned: whole PDUs only (the engine never splits one)."""
    stream = b"".join(bytes(b) for b in buffers)
    replies: list[Reply] = []
    pos = 0
    while pos < len(stream):
        if len(stream) - pos < 48:
            raise AssertionError(f"target output ends inside a header at {pos}")
        header = stream[pos:pos + 48]
        pdu = P.decode_bhs(header)
        pos += 48 + P.ahs_length(header) + (DIGEST_LENGTH if header_digest else 0)
        n = P.data_segment_length(header)
        data = stream[pos:pos + n]
        if len(data) != n:
            raise AssertionError(f"target output ends inside a data segment at {pos}")
        pos += P.padded(n) + (DIGEST_LENGTH if n and data_digest else 0)
        replies.append(Reply(pdu, data))
    return replies


@dataclass
class InputPdu:
    """One PDU of a raw initiator byte stream: its BHS, decoded header and payload."""

    header: bytes
    pdu: P.Pdu | None
    payload: bytes
    start: int
    """Stream offset of the BHS."""


def split_input(stream: bytes) -> list[InputPdu]:
    """Cut a raw stream into PDUs the way the receiver does (no digests). An undecodable
    header still has a length, so the split stays in step with the target's framing."""
    out: list[InputPdu] = []
    pos = 0
    while len(stream) - pos >= 48:
        header = stream[pos:pos + 48]
        try:
            pdu: P.Pdu | None = P.decode_bhs(header)
        except (PduRejected, ValueError):
            pdu = None
        body = pos + 48 + P.ahs_length(header)
        n = P.data_segment_length(header)
        out.append(InputPdu(header, pdu, stream[body:body + n], pos))
        pos = body + P.padded(n)
    return out


# ----------------------------------------------------------------------------- ranges


class Ranges:
    """A set of byte offsets as sorted disjoint half-open intervals."""

    def __init__(self, spans: Iterable[tuple[int, int]] = ()) -> None:
        self.spans: list[tuple[int, int]] = []
        for lo, hi in spans:
            self.add(lo, hi)

    def add(self, lo: int, hi: int) -> None:
        if hi <= lo:
            return
        merged: list[tuple[int, int]] = []
        for a, b in self.spans:
            if b < lo or a > hi:
                merged.append((a, b))
            else:
                lo, hi = min(lo, a), max(hi, b)
        merged.append((lo, hi))
        merged.sort()
        self.spans = merged

    def clip(self, lo: int, hi: int) -> list[tuple[int, int]]:
        """The parts of ``[lo, hi)`` inside the set."""
        out = []
        for a, b in self.spans:
            x, y = max(a, lo), min(b, hi)
            if x < y:
                out.append((x, y))
        return out

    def __contains__(self, offset: int) -> bool:
        return any(a <= offset < b for a, b in self.spans)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(self.spans)

    def __repr__(self) -> str:
        return "Ranges(" + ", ".join(f"[{a:#x},{b:#x})" for a, b in self.spans) + ")"


# ----------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class Write:
    """Bytes the peer sent for a command, at store offset ``start``, inside what the target
    solicited for it. ``must``: the command was answered GOOD, so they have landed.

    Times come from the driver's clock: ``issued`` when the command went out, ``finished``
    when its answer (or the abort's) came back (INF: never), ``sent`` when these bytes went
    out. A write is *overruled* by a must-write of a command issued after it finished."""

    start: int
    data: bytes
    must: bool
    issued: float = -INF
    finished: float = INF
    sent: float = -INF
    label: str = ""

    @property
    def end(self) -> int:
        return self.start + len(self.data)


class StoreModel:
    """The LUN as it was when the run started."""

    def __init__(self, initial: Buffer) -> None:
        self.initial = bytes(initial)
        self.size = len(self.initial)


def check_store(model: StoreModel, actual: Buffer, writes: Sequence[Write], *, lo: int = 0,
                issued: float = INF, finished: float = INF) -> str | None:
    """Whether ``actual`` (the bytes of store range ``[lo, lo+len(actual))``) is explained by
    the initial contents and ``writes``; a description of the first unexplained byte if not.

    ``issued``/``finished`` bound when the bytes were observed: the store itself now (both
    INF: every write that was sent may be there), or a READ issued at ``issued`` whose data
    was taken at ``finished`` (only writes sent before ``finished``, and nothing that a
    must-write finished before ``issued`` overwrote).
    """
    hi = lo + len(actual)
    actual = memoryview(actual).cast("B") if not isinstance(actual, bytes) else actual
    live = [w for w in writes if w.sent < finished and w.start < hi and w.end > lo and w.data]
    cuts = {lo, hi}
    for w in live:
        cuts.add(max(w.start, lo))
        cuts.add(min(w.end, hi))
    points = sorted(cuts)
    live.sort(key=lambda w: w.start)
    starts = [w.start for w in live]
    for a, b in itertools.pairwise(points):
        got = bytes(actual[a - lo:b - lo])
        init = model.initial[a:b]
        if got == init and not live:
            continue
        cover = [w for w in live[:bisect.bisect_right(starts, a)] if w.end >= b]
        candidates = _candidates(cover, issued)
        init_ok = not any(w.must and w.finished < issued for w in cover)
        options = [w.data[a - w.start:b - w.start] for w in candidates]
        if init_ok:
            options.append(init)
        if got in options:
            continue
        for i, value in enumerate(got):
            if not any(opt[i] == value for opt in options):
                where = a + i
                what = ", ".join(f"{w.label or 'write'}({'must' if w.must else 'may'})"
                                 f"={w.data[where - w.start]:#04x}" for w in cover)
                return (f"store byte {where:#x} is {value:#04x}: initial "
                        f"{model.initial[where]:#04x}{' (overwritten)' if not init_ok else ''}"
                        f"; sent here: {what or 'nothing'}")
    return None


def _candidates(cover: Sequence[Write], issued: float) -> list[Write]:
    """The writes whose bytes may still be visible: not overruled by a must-write that was
    issued after they finished and itself finished before the observation was issued."""
    musts = [w for w in cover if w.must and w.finished < issued]
    return [w for w in cover
            if not any(m.issued > w.finished for m in musts if m is not w)]


# ----------------------------------------------------------------------------- commands


@dataclass
class Burst:
    """One solicitation: an R2T's burst, or the unsolicited burst (``ttt`` None)."""

    ttt: int | None
    offset: int
    length: int
    sent: int = 0
    """Bytes sent (and not refused) so far, from ``offset``."""
    datasn: int = 0
    retries: int = 0
    seq: int = 0
    """How many table entries the target had allocated, at most, when it solicited this."""

    @property
    def remaining(self) -> int:
        return self.length - self.sent


@dataclass
class Send:
    """One data segment the peer sent for a command (Data-Out or immediate data)."""

    offset: int
    data: bytes
    valid: bool
    header: bytes
    burst: Burst | None = None
    datasn: int = 0
    at: float = INF
    refused: bool = False
    """The target answered this PDU with a Reject: it was not accepted."""
    poisoned: bool = False
    """Sent with a wrong data digest: these bytes must never reach the store."""
    resend: bool = True
    """Whether a Reject of this PDU means its bytes are still owed (False for a data digest
    error: the target fails the task instead, RFC 7143 §7.8)."""


@dataclass
class CommandRecord:
    """The peer's view of one command: what it sent, what was solicited, what came back."""

    index: int
    itt: int
    cmdsn: int
    kind: str
    """'write', 'read' or 'nop' (a CmdSN gap plug)."""
    header: bytes = b""
    lba: int = 0
    count: int = 0
    edtl: int = 0
    block_size: int = 512
    storable: bool = False
    """The CDB names a range inside the LU (and a transfer the LU accepts): the only case
    where any of its bytes may reach the store."""
    unsolicited: int = 0
    """Bytes of immediate plus unsolicited data this command carries (offset 0 on)."""
    unsol: Burst | None = None
    bursts: list[Burst] = field(default_factory=list)
    sends: list[Send] = field(default_factory=list)
    issued: float = INF
    finished: float = INF
    status: int | None = None
    answers: int = 0
    rejected: bool = False
    aborted: bool = False
    abort_pending: bool = False
    read_data: bytearray = field(default_factory=bytearray)
    next_datasn: int = 0
    next_r2tsn: int = 0
    residual: tuple[bool, bool, int] = (False, False, 0)

    @property
    def base(self) -> int:
        return self.lba * self.block_size

    @property
    def xfer(self) -> int:
        """Bytes the CDB transfers."""
        return self.count * self.block_size

    @property
    def limit(self) -> int:
        """Bytes the command may store: the CDB's transfer cut at the EDTL."""
        return min(self.edtl, self.xfer) if self.storable else 0

    @property
    def good(self) -> bool:
        return self.status == 0 and not self.rejected

    @property
    def done(self) -> bool:
        return self.answers > 0 or self.rejected or self.aborted

    def solicited(self) -> Ranges:
        """Buffer offsets the target solicited: R2T bursts and the accepted unsolicited part,
        inside what the CDB stores."""
        ranges = Ranges()
        if self.rejected or not self.storable:
            return ranges
        ranges.add(0, min(self.unsolicited, self.limit))
        for b in self.bursts:
            ranges.add(b.offset, min(b.offset + b.length, self.limit))
        return ranges

    def writes(self, *, label: str = "") -> list[Write]:
        """This command's sends as :class:`Write` records in store coordinates, clipped to
        what was solicited. A GOOD command's accepted valid sends must have landed; its
        invalid or refused sends must not have; anything else may have, partially."""
        solicited = self.solicited()
        out = []
        for s in self.sends:
            if s.poisoned:
                continue
            must = self.good and s.valid and not s.refused
            if self.good and not must:
                continue
            for a, b in solicited.clip(s.offset, s.offset + len(s.data)):
                out.append(Write(self.base + a, s.data[a - s.offset:b - s.offset], must,
                                 self.issued, self.finished, s.at,
                                 label or f"cmd{self.index}@{a:#x}"))
        return out

    def obligations(self) -> list[Burst]:
        """Bursts with bytes still to send (the peer keeps answering R2Ts of aborted tasks,
        RFC 7143 §11.5.1; a task that got its final answer retires its transfer tags)."""
        if self.rejected or self.answers:
            return []
        out = [b for b in self.bursts if b.remaining > 0]
        if self.unsol is not None and self.unsol.remaining > 0:
            out.insert(0, self.unsol)
        return out


# ----------------------------------------------------------------------------- engine taps


def address(view: memoryview) -> int | None:
    """The memory address of a writable buffer's first byte (None for empty/read-only)."""
    if view.readonly or not view.nbytes:
        return None
    return ctypes.addressof(ctypes.c_char.from_buffer(view))


@dataclass
class Allocation:
    """One data pointer table entry the target handed out."""

    itt: int
    offset: int
    length: int
    store_start: int | None
    """Where its destination lies in the store; None when elsewhere (a private buffer)."""
    discarding: bool


@dataclass
class Plan:
    """A Data-Out plan of the SCSI layer: where a command's bytes belong in the store."""

    itt: int
    opcode: int
    store_start: int | None
    length: int


class PlacementRecorder:
    """Records, while active, every table entry allocated (the solicited destinations) and
    every Data-Out plan the SCSI layer returned (where each ITT's data belongs), mapped to
    store offsets by address. Patches :meth:`DataPointerTable.allocate`,
    :func:`pyiscsi.scsi.dispatch.execute` and the engine's fast path (class/module-wide, so
    any connection logged in while it is active is seen): a command the fast path took is
    recorded as the entry and plan the general path would have made for it."""

    def __init__(self, store_view: memoryview) -> None:
        base = address(store_view)
        assert base is not None
        self.base = base
        self.size = store_view.nbytes
        self.allocations: list[Allocation] = []
        self.plans: list[Plan] = []
        self.executed: list[tuple[int, Plan | None]] = []
        """Every command the SCSI layer ran: its opcode and its Data-Out plan, if any."""
        self._undo: list[Callable[[], None]] = []

    def reset(self) -> None:
        self.allocations.clear()
        self.plans.clear()
        self.executed.clear()

    def store_offset(self, view: memoryview) -> int | None:
        addr = address(view)
        if addr is None or not 0 <= addr - self.base < self.size:
            return None
        return addr - self.base

    def __enter__(self) -> PlacementRecorder:
        if not PATCHABLE:
            raise RuntimeError("PlacementRecorder needs the pure-Python build: compiled modules "
                               "call the patched functions directly (build with PYISCSI_PURE=1)")
        recorder = self
        allocate = DataPointerTable.allocate
        execute = dispatch.execute

        def recording_allocate(table: DataPointerTable, destination: memoryview, offset: int,
                               length: int, *args: Any, **kwargs: Any) -> int:
            tag = allocate(table, destination, offset, length, *args, **kwargs)
            discarding = bool(kwargs.get("discarding", False))
            start = None if discarding else recorder.store_offset(destination)
            recorder.allocations.append(
                Allocation(int(kwargs.get("itt", 0)), offset, length, start, discarding))
            return tag

        def recording_execute(lu: Any, request: Any) -> Any:
            outcome = execute(lu, request)
            plan = None
            if isinstance(outcome, DataOutPlan):
                plan = Plan(request.task_tag, request.cdb[0],
                            recorder.store_offset(outcome.buffer), outcome.length)
                recorder.plans.append(plan)
            recorder.executed.append((request.cdb[0], plan))
            return outcome

        fast = TargetConnection._fast_command

        def recording_fast(conn: TargetConnection, buf: memoryview, start: int,
                           length: int) -> bool:
            if not fast(conn, buf, start, length):
                return False
            cmd = P.decode_bhs(bytes(buf[start:start + 48]))
            assert isinstance(cmd, P.ScsiCommand) and conn.target is not None
            op = cmd.cdb[0]
            plan = None
            if cmd.write:
                lu = conn.target.luns[(cmd.lun >> 48) & 0x3FFF]
                lba = int.from_bytes(cmd.cdb[2:6] if op == 0x2A else cmd.cdb[2:10], "big")
                where = recorder.store_offset(
                    lu.store.view(lba * lu.block_size, cmd.expected_length))
                recorder.allocations.append(
                    Allocation(cmd.itt, 0, cmd.expected_length, where, False))
                plan = Plan(cmd.itt, op, where, cmd.expected_length)
                recorder.plans.append(plan)
            recorder.executed.append((op, plan))
            return True

        DataPointerTable.allocate = recording_allocate  # type: ignore[method-assign]
        dispatch.execute = recording_execute
        TargetConnection._fast_command = recording_fast  # type: ignore[method-assign]
        self._undo = [lambda: setattr(DataPointerTable, "allocate", allocate),
                      lambda: setattr(dispatch, "execute", execute),
                      lambda: setattr(TargetConnection, "_fast_command", fast)]
        return self

    def __exit__(self, *exc: object) -> None:
        for undo in self._undo:
            undo()
        self._undo = []

    def solicited(self) -> Ranges:
        """Store ranges the target solicited: entries pointing into the store, and entries
        with a private destination (bytes copied to the store later) mapped through the plan
        of the same ITT."""
        ranges = Ranges()
        for a in self.allocations:
            if a.discarding:
                continue
            if a.store_start is not None:
                ranges.add(a.store_start, a.store_start + a.length)
                continue
            for p in self.plans:
                if p.itt == a.itt and p.store_start is not None:
                    hi = min(a.offset + a.length, p.length)
                    ranges.add(p.store_start + a.offset, p.store_start + hi)
        return ranges

    def unexplained(self) -> list[int]:
        """Opcodes run that may change the LU's data other than by direct placement."""
        return [op for op, plan in self.executed
                if op not in STORE_NEUTRAL_OPCODES
                and (plan is None or plan.store_start is None)]


STORE_NEUTRAL_OPCODES = frozenset({
    0x00, 0x03, 0x08, 0x12, 0x15, 0x16, 0x17, 0x1A, 0x1B, 0x1E, 0x25, 0x28, 0x2F, 0x34, 0x35,
    0x37, 0x55, 0x5A, 0x5E, 0x5F, 0x84, 0x88, 0x8F, 0x90, 0x91, 0x9E, 0xA0, 0xA3, 0xA8, 0xAF,
    0xB7,
})
"""Opcodes that never change the LU's data (reads, inquiries, mode pages, reservations,
verifies, cache flushes). Plain writes are recognised by their plan pointing into the store;
anything else (WRITE SAME, UNMAP, SANITIZE, COMPARE AND WRITE, EXTENDED COPY, staged
writes...) changes data by its own rules, outside this oracle."""


def sent_writes(recorder: PlacementRecorder, stream: bytes) -> list[Write]:
    """What a raw initiator stream sent towards the store, as may-writes: each data segment
    (immediate data at offset 0, a Data-Out at its BufferOffset) placed where the plans of
    its ITT put that command's bytes, clipped to the store ranges the target solicited."""
    solicited = recorder.solicited()
    plans: dict[int, list[Plan]] = {}
    for p in recorder.plans:
        if p.store_start is not None:
            plans.setdefault(p.itt, []).append(p)
    writes = []
    for i, item in enumerate(split_input(stream)):
        pdu = item.pdu
        if isinstance(pdu, P.DataOut):
            offset = pdu.buffer_offset
        elif isinstance(pdu, P.ScsiCommand):
            offset = 0
        else:
            continue
        if not item.payload:
            continue
        for plan in plans.get(pdu.itt, ()):
            assert plan.store_start is not None
            lo = plan.store_start + offset
            hi = min(lo + len(item.payload), plan.store_start + plan.length)
            for a, b in solicited.clip(lo, hi):
                writes.append(Write(a, item.payload[a - lo:b - lo], must=False,
                                    label=f"pdu{i}"))
    return writes


def check_placements(model: StoreModel, store: Buffer, recorder: PlacementRecorder,
                     stream: bytes) -> str | None:
    """The oracle for arbitrary input: the store differs from ``model`` only where the target
    solicited bytes and ``stream`` sent them for the command that owned them (None: OK).
    Only meaningful when :meth:`PlacementRecorder.unexplained` is empty and the stream has no
    digests."""
    return check_store(model, store, sent_writes(recorder, stream))
