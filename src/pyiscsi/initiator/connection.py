"""Initiator side of one iSCSI connection as a sans-IO engine (RFC 7143 §4, §6, §11).

Bytes come in through :meth:`InitiatorConnection.get_buffer` / :meth:`~InitiatorConnection.advance`
(a :class:`~pyiscsi.proto.framing.Receiver` with this engine as its router); PDUs go out as
lists of buffers from :meth:`~InitiatorConnection.take_output`. Completions come back as
events (frozen dataclasses) from ``advance``. The engine never touches a socket or a loop.

The data path is claim 1 of US 8,099,470 on the initiator: each task's Initiator Task Tag is
a tag of this connection's :class:`~pyiscsi.placement.table.DataPointerTable` whose entry
points at the caller's read buffer, so a Data-In is routed at header time, in O(1), to
``buffer[BufferOffset:]`` and received straight into it. A tag the table does not know (or
knows as stale) closes the connection; a live tag with a bad offset fails only its task.
Writes send Data-Out from memoryview slices of the caller's buffer (immediate data,
unsolicited Data-Out, then one sequence per R2T; RFC 7143 §3.2.4.2, §11.7, §11.8).
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from ..placement.counters import CopyCounters, size_bucket
from ..placement.table import DataPointerTable, PlacementError, TableEntry, TableFull
from ..proto import pdu as P
from ..proto.errors import LocalProtocolError, LoginFailed, ProtocolError, RemoteProtocolError
from ..proto.framing import DISCARD, PduReceived, Receiver, Route, frame
from ..proto.keys import SessionParams, encode_text
from ..proto.login import LOGIN_MAX_DATA_SEGMENT, InitiatorLogin, InitiatorLoginConfig, LoginDone
from ..proto.serial import sn_add, sn_le, sn_lt
from ..proto.wire import BHS_LENGTH, RESERVED_TAG, LogoutReason, Opcode
from .errors import ConnectionClosed, RejectError

Buffer = bytes | bytearray | memoryview

_EMPTY = memoryview(b"")
LARGE_READ = 65536
"""While a read of at least this many bytes is in flight, headers are read exactly so the
Data-In payload behind them lands in the caller's buffer, never in staging."""


class Phase(Enum):
    """Connection phases (RFC 7143 §8.1, initiator side, collapsed)."""

    IDLE = "idle"
    LOGIN = "login"
    FULL_FEATURE = "full-feature"
    LOGOUT = "logout"
    CLOSED = "closed"


class Kind(Enum):
    SCSI = "scsi"
    TEXT = "text"
    NOP = "nop"
    LOGOUT = "logout"
    TMF = "tmf"


class Task:
    """One request in flight: its ITT is a data pointer table tag whose entry points at
    ``data_in`` (reads) or at nothing (every other request)."""

    __slots__ = ("cdb", "data_in", "data_out", "datasn", "error", "itt", "kind", "lun",
                 "received", "text", "user")

    def __init__(self, kind: Kind, *, cdb: bytes = b"", lun: int = 0,
                 data_in: memoryview | None = None, data_out: memoryview | None = None,
                 text: bytes = b"", user: object = None) -> None:
        self.kind = kind
        self.cdb = cdb
        self.lun = lun
        """The 8-byte LUN field (SAM-5 §4.7), not the LUN number."""
        self.data_in = data_in
        self.data_out = data_out
        self.text = text
        self.user = user
        """Free for the caller (the asyncio layer keeps its future here)."""
        self.itt = RESERVED_TAG
        self.received = 0
        self.datasn = 0
        self.error: Exception | None = None


@dataclass(frozen=True, slots=True)
class ScsiOutcome:
    """How a SCSI command ended (RFC 7143 §11.4): status, sense, and what moved."""

    status: int
    sense: bytes = b""
    transferred: int = 0
    """Data-In bytes placed (reads) or bytes the target took (writes: EDTL - residual)."""
    residual: int = 0
    overflow: bool = False
    underflow: bool = False
    response: int = 0


# ---------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class LoggedIn:
    """Full feature phase reached (RFC 7143 §6.3)."""

    params: SessionParams
    tsih: int


@dataclass(frozen=True, slots=True)
class TaskDone:
    """A request completed: ScsiOutcome (SCSI), response text (Text), bytes (NOP), or the
    logout response code."""

    task: Task
    result: ScsiOutcome | bytes | int


@dataclass(frozen=True, slots=True)
class TaskFailed:
    """A request failed without an answer we can return (reject, bad data, lost connection)."""

    task: Task
    error: Exception


@dataclass(frozen=True, slots=True)
class ConnectionFailed:
    """The connection is unusable (login refused, protocol error, peer gone)."""

    error: Exception


Event = LoggedIn | TaskDone | TaskFailed | ConnectionFailed


def random_isid() -> int:
    """A random-type ISID (RFC 7143 §11.12.5: T=10b, 24-bit qualifier, 16-bit D)."""
    return 0x80 << 40 | random.getrandbits(24) << 16 | random.getrandbits(16)


class InitiatorConnection:
    """Sans-IO engine of one connection of the initiator role (ERL 0, one connection)."""

    def __init__(self, initiator_name: str, target_name: str | None, *,
                 isid: int | None = None, config: InitiatorLoginConfig | None = None,
                 credentials: object | None = None, cid: int = 0,
                 connection_number: int = 0, table_capacity: int = 4096,
                 cmdsn: int = 1, counters: CopyCounters | None = None) -> None:
        self.table = DataPointerTable(connection_number, table_capacity)
        self.counters = counters = counters if counters is not None else CopyCounters()
        self.receiver = Receiver(self, max_data_length=LOGIN_MAX_DATA_SEGMENT,
                                 on_pdu=self._on_pdu, counters=counters)
        self.isid = random_isid() if isid is None else isid
        self.login = InitiatorLogin(initiator_name, target_name, self.isid, config=config,
                                    itt=0, cid=cid, cmdsn=cmdsn, credentials=credentials)
        self.phase = Phase.IDLE
        self.params: SessionParams | None = None
        self.tsih = 0
        self.cid = cid
        self.cmdsn = cmdsn
        self.expcmdsn = cmdsn
        self.maxcmdsn = cmdsn
        self.exp_statsn = 0
        self.close_after_send = False
        self.error: Exception | None = None
        self.in_order = True
        self._queue: deque[Task] = deque()
        self._events: list[Event] = []
        self._out: list[Buffer] = []
        self._tx_payload = [0, 0, 0]  # caller payload bytes to send, by counters.SIZE_BUCKETS
        self._large = 0
        self._route_entry: TableEntry | None = None
        self._route_task: Task | None = None
        self._scratch = memoryview(bytearray(4096))
        self._header_digest = False
        self._data_digest = False
        self._max_send = 8192

    # ------------------------------------------------------------------ I/O API

    def start(self) -> None:
        """Queue the first Login Request (RFC 7143 §6.3)."""
        if self.phase is not Phase.IDLE:
            raise LocalProtocolError("login already started")
        self.phase = Phase.LOGIN
        request, text = self.login.start()
        self._send(request, text)

    def get_buffer(self) -> memoryview:
        """Where the transport should receive the next bytes: staging, or a caller's buffer."""
        if self.phase is Phase.CLOSED:
            return self._scratch
        self.receiver.exact_headers = self._large > 0
        return self.receiver.get_buffer()

    def advance(self, nbytes: int) -> list[Event]:
        """``nbytes`` arrived in the last buffer; returns the events they completed."""
        if self.phase is not Phase.CLOSED:
            try:
                self.receiver.advance(nbytes)
            except ProtocolError as exc:
                self._fail(exc)
            self._pump()
        events, self._events = self._events, []
        return events

    def take_output(self) -> tuple[list[Buffer], list[int]]:
        """The buffers to send, and how many of their bytes are caller payload (by payload
        size bucket)."""
        out, self._out = self._out, []
        payload, self._tx_payload = self._tx_payload, [0, 0, 0]
        return out, payload

    def connection_lost(self, exc: Exception | None = None) -> list[Event]:
        """The transport is gone: every request still in flight fails."""
        if self.phase is not Phase.CLOSED:
            self._fail(ConnectionClosed(f"connection lost: {exc}" if exc
                                        else "connection closed by the target"))
        events, self._events = self._events, []
        return events

    # ------------------------------------------------------------------ requests

    @property
    def window_open(self) -> bool:
        """May a non-immediate request go out now (CmdSN <= MaxCmdSN, RFC 7143 §3.2.2.1)?"""
        return sn_le(self.cmdsn, self.maxcmdsn)

    @property
    def queued(self) -> int:
        """Requests waiting for the CmdSN window or a free table entry."""
        return len(self._queue)

    def submit(self, task: Task) -> Task:
        """Send a SCSI command or Text request now, or when the window opens."""
        if self.phase is not Phase.FULL_FEATURE:
            raise LocalProtocolError(f"cannot submit in phase {self.phase.value}")
        if task.kind is Kind.SCSI:
            if len(task.cdb) > 16:
                raise LocalProtocolError("CDBs over 16 bytes (extended CDB AHS) unsupported")
            if task.data_in is not None and task.data_out is not None:
                raise LocalProtocolError("bidirectional commands are not supported")
        self._queue.append(task)
        self._pump()
        return task

    def scsi(self, cdb: bytes, *, lun: int = 0, data_in: memoryview | None = None,
             data_out: memoryview | None = None, user: object = None) -> Task:
        """Submit a SCSI command (``lun`` is the 8-byte LUN field)."""
        return self.submit(Task(Kind.SCSI, cdb=cdb, lun=lun, data_in=data_in,
                                data_out=data_out, user=user))

    def text(self, pairs: list[tuple[str, str]], *, user: object = None) -> Task:
        """Submit a Text Request (e.g. ``[("SendTargets", "All")]``, RFC 7143 §11.10)."""
        return self.submit(Task(Kind.TEXT, text=encode_text(pairs), user=user))

    def ping(self, data: bytes = b"", *, user: object = None) -> Task:
        """An immediate NOP-Out the target answers with a NOP-In (RFC 7143 §11.18)."""
        task = Task(Kind.NOP, text=data, user=user)
        self._bind(task)
        self._send(P.NopOut(itt=task.itt, ttt=RESERVED_TAG, cmdsn=self.cmdsn,
                            expstatsn=self.exp_statsn, immediate=True,
                            data_length=len(data)), data or None)
        return task

    def task_management(self, function: int, *, lun: int = 0,
                        referenced_tag: int = RESERVED_TAG, refcmdsn: int = 0,
                        user: object = None) -> Task:
        """An immediate Task Management Function Request (RFC 7143 §11.5; ``lun`` is the
        8-byte LUN field); its :class:`TaskDone` carries the response code (§11.6.1)."""
        if self.phase is not Phase.FULL_FEATURE:
            raise LocalProtocolError(f"cannot send a TMF in phase {self.phase.value}")
        task = Task(Kind.TMF, lun=lun, user=user)
        self._bind(task)
        self._send(P.TaskMgmtRequest(itt=task.itt, function=function, lun=lun,
                                     referenced_tag=referenced_tag, cmdsn=self.cmdsn,
                                     expstatsn=self.exp_statsn, refcmdsn=refcmdsn,
                                     immediate=True))
        return task

    def logout(self, reason: int = LogoutReason.CLOSE_SESSION, *, user: object = None) -> Task:
        """An immediate Logout Request (RFC 7143 §11.14); no request is queued after it."""
        if self.phase is not Phase.FULL_FEATURE:
            raise LocalProtocolError(f"cannot log out in phase {self.phase.value}")
        task = Task(Kind.LOGOUT, user=user)
        self._bind(task)
        self.phase = Phase.LOGOUT
        self._send(P.LogoutRequest(itt=task.itt, reason=reason, cid=self.cid, cmdsn=self.cmdsn,
                                   expstatsn=self.exp_statsn, immediate=True))
        for queued in self._queue:
            self._events.append(TaskFailed(queued, ConnectionClosed("logged out")))
        self._queue.clear()
        return task

    # ------------------------------------------------------------------ output

    def _send(self, pdu: P.Pdu, payload: Buffer | None = None) -> None:
        self._out.extend(frame(pdu.encode(), payload, header_digest=self._header_digest,
                               data_digest=self._data_digest))

    def _bind(self, task: Task) -> None:
        dest = task.data_in if task.data_in is not None else _EMPTY
        try:
            task.itt = self.table.allocate(dest, 0, len(dest), owner=task)
        except TableFull:
            raise LocalProtocolError("no free initiator task tag") from None
        if len(dest) >= LARGE_READ:
            self._large += 1

    def _pump(self) -> None:
        """Issue queued requests while the CmdSN window and the table allow."""
        queue = self._queue
        while (queue and self.phase is Phase.FULL_FEATURE and sn_le(self.cmdsn, self.maxcmdsn)
               and self.table.free_entries):
            task = queue.popleft()
            self._bind(task)
            cmdsn, self.cmdsn = self.cmdsn, sn_add(self.cmdsn, 1)
            if task.kind is Kind.SCSI:
                self._issue_scsi(task, cmdsn)
            else:
                self._send(P.TextRequest(itt=task.itt, cmdsn=cmdsn, expstatsn=self.exp_statsn,
                                         final=True, data_length=len(task.text)),
                           task.text or None)

    def _issue_scsi(self, task: Task, cmdsn: int) -> None:
        """SCSI Command with immediate data, then unsolicited Data-Out (RFC 7143 §3.2.4.2)."""
        params = self.params
        assert params is not None
        out = task.data_out
        total = len(out) if out is not None else 0
        immediate = unsolicited = 0
        if total:
            first = params.first_burst_length
            if params.immediate_data:
                immediate = min(total, first, self._max_send)
            unsolicited = immediate if params.initial_r2t else min(total, first)
        expected = total if out is not None else (len(task.data_in) if task.data_in else 0)
        cmd = P.ScsiCommand(itt=task.itt, cdb=task.cdb, expected_length=expected, cmdsn=cmdsn,
                            expstatsn=self.exp_statsn, lun=task.lun,
                            read=task.data_in is not None and expected > 0,
                            write=out is not None and total > 0,
                            final=unsolicited == immediate, data_length=immediate)
        assert out is not None or not immediate
        self._send(cmd, out[:immediate] if out is not None and immediate else None)
        if immediate:
            self._tx_payload[size_bucket(immediate)] += immediate
        if unsolicited > immediate:
            self._send_data_out(task, RESERVED_TAG, immediate, unsolicited - immediate)

    def _send_data_out(self, task: Task, ttt: int, offset: int, length: int) -> None:
        """One Data-Out sequence from slices of the caller's buffer (RFC 7143 §11.7)."""
        view = task.data_out
        assert view is not None
        seg = self._max_send
        end = offset + length
        datasn = 0
        out = self._out
        hd, dd = self._header_digest, self._data_digest
        itt, lun, exp = task.itt, task.lun, self.exp_statsn
        sizes = self._tx_payload
        while offset < end:
            n = min(seg, end - offset)
            header = P.DataOut(itt=itt, ttt=ttt, buffer_offset=offset, data_length=n,
                               datasn=datasn, expstatsn=exp, lun=lun,
                               final=offset + n == end).encode()
            out.extend(frame(header, view[offset:offset + n], header_digest=hd,
                             data_digest=dd))
            sizes[0 if n < 4096 else 1 if n < 65536 else 2] += n
            datasn += 1
            offset += n

    # ------------------------------------------------------------------ routing (header time)

    def route(self, pdu: P.Pdu, header: bytes, ahs: bytes) -> Route:
        """Where a PDU's payload goes: Data-In into the caller's buffer, the rest collected."""
        if type(pdu) is not P.DataIn:
            return None
        if self.phase is Phase.LOGIN:
            raise RemoteProtocolError("Data-In during login")
        entry = self._lookup(pdu.itt, "Data-In")
        task = entry.owner
        assert isinstance(task, Task)
        self._route_entry, self._route_task = entry, task
        if task.error is not None:
            return DISCARD
        if pdu.datasn != task.datasn:
            task.error = RemoteProtocolError(
                f"Data-In DataSN {pdu.datasn}, expected {task.datasn} (ITT 0x{pdu.itt:08x})")
            return DISCARD
        try:
            _, view = self.table.place(pdu.itt, pdu.buffer_offset, pdu.data_length,
                                       in_order=self.in_order)
        except PlacementError as exc:
            task.error = RemoteProtocolError(f"Data-In refused: {exc}")
            return DISCARD
        return view

    def _lookup(self, itt: int, what: str) -> TableEntry:
        """The live entry an ITT names; an unknown or stale ITT is a protocol error."""
        try:
            return self.table.lookup(itt)
        except PlacementError as exc:
            raise RemoteProtocolError(f"{what} for unknown task: {exc}") from None

    def _owner(self, itt: int, what: str) -> Task:
        task = self._lookup(itt, what).owner
        assert isinstance(task, Task)
        return task

    # ------------------------------------------------------------------ events

    def _on_pdu(self, event: PduReceived) -> None:
        pdu = event.pdu
        if event.rejected is not None or pdu is None:
            raise RemoteProtocolError(f"bad PDU from the target: {event.rejected}")
        if self.phase is Phase.LOGIN:
            self._on_login(pdu, event.data or b"")
            return
        handler = _HANDLERS.get(pdu.opcode)
        if handler is None:
            raise RemoteProtocolError(f"{pdu.opcode.name} is not a target PDU")
        handler(self, pdu, event)

    def _on_login(self, pdu: P.Pdu, data: bytes) -> None:
        if not isinstance(pdu, P.LoginResponse):
            raise RemoteProtocolError(f"{pdu.opcode.name} during login")
        step = self.login.receive(pdu, data)
        if isinstance(step, LoginDone):
            self._enter_full_feature(step)
        else:
            self._send(step[0], step[1] or None)

    def _enter_full_feature(self, done: LoginDone) -> None:
        params = done.params
        self.params = params
        self.tsih = done.tsih
        self.exp_statsn = done.exp_statsn
        self.expcmdsn = done.expcmdsn
        self.maxcmdsn = done.maxcmdsn
        self.phase = Phase.FULL_FEATURE
        self.in_order = params.data_pdu_in_order and params.data_sequence_in_order
        self._max_send = params.max_send_data_segment_length
        self._header_digest = self.receiver.header_digest = params.header_digest
        self._data_digest = self.receiver.data_digest = params.data_digest
        self.receiver.max_data_length = params.max_recv_data_segment_length
        self._events.append(LoggedIn(params, done.tsih))

    def _window(self, expcmdsn: int, maxcmdsn: int) -> None:
        """ExpCmdSN/MaxCmdSN update rules of RFC 7143 §4.2.2.1."""
        if sn_lt(maxcmdsn, sn_add(expcmdsn, -1)):
            return
        if sn_lt(self.expcmdsn, expcmdsn):
            self.expcmdsn = expcmdsn
        if sn_lt(self.maxcmdsn, maxcmdsn):
            self.maxcmdsn = maxcmdsn

    def _status(self, statsn: int) -> None:
        """A status PDU arrived: acknowledge it with the next ExpStatSN (RFC 7143 §4.2.2.2)."""
        nxt = sn_add(statsn, 1)
        if sn_lt(self.exp_statsn, nxt):
            self.exp_statsn = nxt

    def _on_data_in(self, pdu: P.DataIn, event: PduReceived) -> None:
        entry, task = self._route_entry, self._route_task
        self._route_entry = self._route_task = None
        assert entry is not None and task is not None
        self._window(pdu.expcmdsn, pdu.maxcmdsn)
        if task.error is None:
            task.datasn += 1
            if pdu.data_length:
                self.table.account(entry, pdu.buffer_offset, pdu.data_length)
                task.received += pdu.data_length
        if pdu.has_status:
            self._status(pdu.statsn)
            self._complete_scsi(task, pdu.status, 0, pdu.residual, pdu.overflow,
                                pdu.underflow, b"")

    def _on_scsi_response(self, pdu: P.ScsiResponse, event: PduReceived) -> None:
        task = self._owner(pdu.itt, "SCSI Response")
        self._window(pdu.expcmdsn, pdu.maxcmdsn)
        self._status(pdu.statsn)
        sense = b""
        data = event.data
        if data and len(data) >= 2:
            length = int.from_bytes(data[:2], "big")
            sense = data[2:2 + length]
        self._complete_scsi(task, pdu.status, pdu.response, pdu.residual, pdu.overflow,
                            pdu.underflow, sense)

    def _complete_scsi(self, task: Task, status: int, response: int, residual: int,
                       overflow: bool, underflow: bool, sense: bytes) -> None:
        if task.kind is not Kind.SCSI:
            raise RemoteProtocolError(f"SCSI status for a {task.kind.value} task")
        self._release(task)
        if task.error is not None:
            self._events.append(TaskFailed(task, task.error))
            return
        if task.data_in is not None:
            transferred = task.received
        else:
            total = len(task.data_out) if task.data_out is not None else 0
            transferred = max(0, total - residual) if underflow else total
        self._events.append(TaskDone(task, ScsiOutcome(
            status, sense, transferred, residual if (overflow or underflow) else 0,
            overflow, underflow, response)))

    def _release(self, task: Task) -> None:
        self.table.free(task.itt)
        if task.data_in is not None and len(task.data_in) >= LARGE_READ:
            self._large -= 1

    def _on_r2t(self, pdu: P.R2T, event: PduReceived) -> None:
        """Answer an R2T with one Data-Out sequence (RFC 7143 §11.8); R2Ts may overlap."""
        task = self._owner(pdu.itt, "R2T")
        self._window(pdu.expcmdsn, pdu.maxcmdsn)
        out = task.data_out
        if task.kind is not Kind.SCSI or out is None:
            raise RemoteProtocolError(f"R2T for a task without data to send (ITT {pdu.itt:#x})")
        if pdu.ttt == RESERVED_TAG or pdu.buffer_offset + pdu.desired_length > len(out) \
                or not pdu.desired_length:
            raise RemoteProtocolError(
                f"R2T asks for [{pdu.buffer_offset}, +{pdu.desired_length}) of "
                f"{len(out)} bytes (TTT {pdu.ttt:#x})")
        self._send_data_out(task, pdu.ttt, pdu.buffer_offset, pdu.desired_length)

    def _on_nop_in(self, pdu: P.NopIn, event: PduReceived) -> None:
        """A ping reply, or the target's ping: echo with a NOP-Out when TTT is set (§11.19)."""
        self._window(pdu.expcmdsn, pdu.maxcmdsn)
        if pdu.itt != RESERVED_TAG:
            task = self._owner(pdu.itt, "NOP-In")
            self._status(pdu.statsn)
            self._release(task)
            self._events.append(TaskDone(task, event.data or b""))
        elif pdu.ttt != RESERVED_TAG:
            data = event.data or None
            self._send(P.NopOut(itt=RESERVED_TAG, ttt=pdu.ttt, cmdsn=self.cmdsn,
                                expstatsn=self.exp_statsn, lun=pdu.lun, immediate=True,
                                data_length=len(data) if data else 0), data)

    def _on_text_response(self, pdu: P.TextResponse, event: PduReceived) -> None:
        """Collect a (possibly continued) text answer (RFC 7143 §11.11)."""
        task = self._owner(pdu.itt, "Text Response")
        self._window(pdu.expcmdsn, pdu.maxcmdsn)
        self._status(pdu.statsn)
        if task.kind is not Kind.TEXT:
            raise RemoteProtocolError("Text Response for a non-text task")
        task.received += len(event.data or b"")
        if task.received > 1 << 20:
            raise RemoteProtocolError("text response over 1 MiB")
        task.text = (task.text if task.datasn else b"") + (event.data or b"")
        task.datasn += 1
        if pdu.final and not pdu.cont:
            self._release(task)
            self._events.append(TaskDone(task, task.text))
            return
        cmdsn, self.cmdsn = self.cmdsn, sn_add(self.cmdsn, 1)
        self._send(P.TextRequest(itt=task.itt, ttt=pdu.ttt, cmdsn=cmdsn,
                                 expstatsn=self.exp_statsn, final=True))

    def _on_logout_response(self, pdu: P.LogoutResponse, event: PduReceived) -> None:
        task = self._owner(pdu.itt, "Logout Response")
        self._status(pdu.statsn)
        self._release(task)
        self._events.append(TaskDone(task, pdu.response))
        self._fail(ConnectionClosed("logged out"), quiet=True)
        self.close_after_send = True

    def _on_reject(self, pdu: P.Reject, event: PduReceived) -> None:
        """Fail the task whose PDU was rejected (RFC 7143 §11.17); its header is the data."""
        self._window(pdu.expcmdsn, pdu.maxcmdsn)
        self._status(pdu.statsn)
        header = event.data or b""
        if len(header) < BHS_LENGTH:
            return
        itt = int.from_bytes(header[16:20], "big")
        try:
            task = self.table.lookup(itt).owner
        except PlacementError:
            return
        assert isinstance(task, Task)
        error = RejectError(pdu.reason)
        if header[0] & 0x3F == Opcode.DATA_OUT:
            task.error = error  # the command still ends with a status
            return
        self._release(task)
        self._events.append(TaskFailed(task, error))

    def _on_async(self, pdu: P.AsyncMessage, event: PduReceived) -> None:
        """Asynchronous Message (RFC 7143 §11.9): a logout request is honoured."""
        self._window(pdu.expcmdsn, pdu.maxcmdsn)
        self._status(pdu.statsn)
        if pdu.event == 1 and self.phase is Phase.FULL_FEATURE:
            self.logout()

    def _on_tmf_response(self, pdu: P.TaskMgmtResponse, event: PduReceived) -> None:
        task = self._owner(pdu.itt, "Task Management Response")
        self._window(pdu.expcmdsn, pdu.maxcmdsn)
        self._status(pdu.statsn)
        self._release(task)
        self._events.append(TaskDone(task, pdu.response))

    # ------------------------------------------------------------------ teardown

    def _fail(self, error: Exception, *, quiet: bool = False) -> None:
        """Close: every request in flight or queued fails with ``error``."""
        self.error = error
        failure: Exception = error
        if not isinstance(error, ConnectionClosed):
            failure = ConnectionClosed(str(error))
            failure.__cause__ = error
        for entry in self.table.entries:
            if entry.in_use and isinstance(entry.owner, Task):
                self._events.append(TaskFailed(entry.owner, failure))
        for task in self._queue:
            self._events.append(TaskFailed(task, failure))
        self._queue.clear()
        self.table.clear()
        self._large = 0
        self.phase = Phase.CLOSED
        self.close_after_send = True
        if not quiet:
            self._events.append(ConnectionFailed(error))


_HANDLERS: dict[Opcode, Callable[[InitiatorConnection, P.Pdu, PduReceived], None]] = {
    Opcode.DATA_IN: InitiatorConnection._on_data_in,  # type: ignore[dict-item]
    Opcode.SCSI_RESPONSE: InitiatorConnection._on_scsi_response,  # type: ignore[dict-item]
    Opcode.R2T: InitiatorConnection._on_r2t,  # type: ignore[dict-item]
    Opcode.NOP_IN: InitiatorConnection._on_nop_in,  # type: ignore[dict-item]
    Opcode.TEXT_RESPONSE: InitiatorConnection._on_text_response,  # type: ignore[dict-item]
    Opcode.LOGOUT_RESPONSE: InitiatorConnection._on_logout_response,  # type: ignore[dict-item]
    Opcode.REJECT: InitiatorConnection._on_reject,  # type: ignore[dict-item]
    Opcode.ASYNC_MESSAGE: InitiatorConnection._on_async,  # type: ignore[dict-item]
    Opcode.TASK_MGMT_RESPONSE: InitiatorConnection._on_tmf_response,  # type: ignore[dict-item]
}
"""Full feature phase: the target PDUs the initiator accepts, and their handlers (§11)."""

__all__ = [
    "ConnectionFailed",
    "Event",
    "InitiatorConnection",
    "Kind",
    "LoggedIn",
    "LoginFailed",
    "Phase",
    "ScsiOutcome",
    "Task",
    "TaskDone",
    "TaskFailed",
]
