"""One target-side iSCSI connection as a sans-IO engine (RFC 7143 §4, §6, §11).

Bytes come in through :meth:`TargetConnection.get_buffer` / :meth:`TargetConnection.advance`
(the :class:`~pyiscsi.proto.framing.Receiver` underneath), PDUs go out as lists of buffers
collected by :meth:`TargetConnection.take_output`. The engine never touches a socket.

The data path is the patent's (US 7,512,663, Fig 8 and 9): each R2T's Target Transfer Tag
is a data pointer table entry whose destination is the store's own memory; each Data-Out
is routed at header time through the table and received straight into
``destination[BufferOffset - entry offset:]``. Immediate and unsolicited data (TTT
0xFFFFFFFF) are placed through the task's own entry, found by ITT.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from dataclasses import replace
from time import perf_counter_ns
from typing import TYPE_CHECKING, Final

from ..backstore.base import StoreError
from ..logfmt import ConnectionLog
from ..placement.counters import size_bucket
from ..placement.table import DataPointerTable
from ..proto import fastcodec
from ..proto import pdu as P
from ..proto.errors import LoginFailed, PduRejected, RemoteProtocolError
from ..proto.framing import DISCARD, VERIFY_FIRST, PduReceived, Receiver, Route, frame
from ..proto.login import TargetLogin
from ..proto.serial import sn_add
from ..proto.wire import (
    BHS_LENGTH,
    RESERVED_TAG,
    LoginStatus,
    LogoutResponse,
    Opcode,
    RejectReason,
    ScsiStatus,
)
from ..scsi import dispatch
from ..scsi.busy import command_range
from ..scsi.iostats import IoStats
from ..scsi.sense import Asc, SenseKey
from ..scsi.task import DataOutPlan, Nexus, Outcome, ScsiRequest, ScsiResult, lun_from_field
from . import tmf
from .attach import attach, login_config
from .opcodes import FULL_FEATURE_ONLY, LOGIN_ONLY, NEVER, OpcodeRule, Ordering, Phase
from .session import Admission, Session
from .storework import INTERNAL_FAILURE, StoreRequest, StoreWorks
from .task import Task
from .taskset import ORDERED, TaskSets
from .text import TextExchange
from .transfer import Transfers, check_condition

if TYPE_CHECKING:
    from ..proto.keys import SessionParams
    from ..scsi.lun import LogicalUnit
    from .catalog import Catalog, Target

log = logging.getLogger("pyiscsi.target")

Buffer = bytes | bytearray | memoryview


_SENSE_LEN = 2
_CMD_HEAD = fastcodec.CMD_HEAD.unpack_from
_FAST_CDBS: dict[int, struct.Struct] = {
    0x28: struct.Struct(">IxH"), 0x2A: struct.Struct(">IxH"),   # READ/WRITE (10)
    0x88: struct.Struct(">QIx"), 0x8A: struct.Struct(">QIx"),   # READ/WRITE (16)
}
"""The fast path's opcodes: LOGICAL BLOCK ADDRESS and TRANSFER LENGTH from CDB byte 2
and (16) its GROUP NUMBER (SBC-4 §5.15, §5.17, §5.41, §5.43); the CONTROL byte follows."""
_FAST_READ_FLAGS: Final = 0xC1
"""SCSI Command byte 1 of a fast-path read: F, R, ATTR=SIMPLE (RFC 7143 §11.3.1)."""
_FAST_WRITE_FLAGS: Final = 0xA1
"""F, W, ATTR=SIMPLE."""
_RDPROTECT: Final = 0xE0
_WRITE_PROTECT_FUA: Final = 0xE8
"""WRPROTECT and FUA (a FUA write flushes: general path)."""
_LOGIN_DATA_LIMIT = 8192
LOGOUT_GRACE = 5.0
"""Seconds past an asked logout's deadline before the connection is dropped."""
"""MaxRecvDataSegmentLength during login (RFC 7143 §13.12: the default until negotiated)."""


OPENING_READS: Final = 64
"""Staging reads at the start of full feature phase that read headers exactly (see
:attr:`Receiver.opening`): enough for an initiator's INQUIRY / READ CAPACITY / REPORT LUNS
preamble, few enough that a session of small reads soon batches its headers again."""

_CRC_ERROR = check_condition(SenseKey.ABORTED_COMMAND, Asc.PROTOCOL_SERVICE_CRC_ERROR)
"""A data digest error (RFC 7143 §11.4.7.2)."""
_TOO_MUCH_WRITE_DATA = check_condition(SenseKey.ABORTED_COMMAND, Asc.TOO_MUCH_WRITE_DATA)
"""Immediate data past the Expected Data Transfer Length or FirstBurstLength, or on a
command that writes nothing (4Bh/02h)."""
_UNWANTED_IMMEDIATE_DATA = check_condition(SenseKey.ILLEGAL_REQUEST,
                                            Asc.INVALID_FIELD_IN_COMMAND_INFORMATION_UNIT)
"""Immediate data while ImmediateData=No was negotiated (RFC 7143 §13.11)."""
_TASK_SET_FULL = ScsiResult(ScsiStatus.TASK_SET_FULL)
"""No room to stage a held command's unsolicited data (SAM-5 §5.3.1): retry later."""


class TargetConnection:
    """Sans-IO engine of one connection of the target role."""

    def __init__(self, catalog: Catalog, peer: str = "?", *,
                 on_close: Callable[[TargetConnection], None] | None = None,
                 number: int | None = None, local: tuple[str, int] | None = None) -> None:
        limits = catalog.limits
        self.catalog = catalog
        self.peer = peer
        self.local = local
        """The portal (local address) the connection came in through; None: unknown."""
        self.table = DataPointerTable(0, capacity=limits.table_entries)
        # A table entry for every task's unsolicited data is always there: R2Ts use at most
        # what is left once each task the window (plus immediate commands) allows has one.
        r2t_budget = limits.table_entries - (limits.queue_depth + limits.immediate_commands + 1)
        if r2t_budget < 1:
            raise ValueError(f"{limits.table_entries} table entries cannot serve a queue "
                             f"depth of {limits.queue_depth}")
        self.state = catalog.state
        self.counters = catalog.state.copies
        self.number = self.state.connections.register(self, number)
        self.table.connection_number = self.number
        self.log = ConnectionLog(log, self)
        self.transfers = Transfers(self.table, r2t_budget=r2t_budget, send_r2t=self._send_r2t,
                                   log=self.log)
        self.tasks = self.transfers.tasks
        self.store_works = StoreWorks()
        self._task_sets = TaskSets(self._run_task, self._resume_task)
        self.receiver = Receiver(self, max_data_length=_LOGIN_DATA_LIMIT,
                                 on_pdu=self._on_pdu, screen=self._screen,
                                 counters=self.counters, errors=self.state.receive,
                                 route_verified=self._route_verified)
        self.phase = Phase.LOGIN
        self._rules = LOGIN_RULES
        """The opcode rules legal in the current phase, by PDU class."""
        self.session: Session | None = None
        self.params: SessionParams | None = None
        self.target: Target | None = None
        self.cid = 0
        self.statsn = 0
        self._held: dict[int, Callable[[], None] | tuple[P.ScsiCommand, ScsiResult] | None] = {}
        """Requests held behind a CmdSN gap, by CmdSN: what runs when it is reached; a
        refused command and the answer it gets then (it has no task: an ABORT TASK finds it
        here, :meth:`consider_received`); None: a CmdSN only taken."""
        self._admitted: tuple[Task | None, ScsiResult | None] | None = None
        """The admission decision about the SCSI Command being received (made at its
        header, or once its immediate data passed its data digest): its task, or the SCSI
        answer it gets once whole."""
        self._out: list[Buffer] = []
        self._tx_payload = [0, 0, 0]  # store payload bytes to send, by counters.SIZE_BUCKETS
        self._login = TargetLogin(login_config(catalog, local))
        self._texts = TextExchange(catalog, local)
        self._login_first = True
        self._nexus = Nexus("iqn.unknown")
        self.close_after_send = False
        self.dead = False
        """Set by :meth:`tick` when the peer stopped answering NOP-In pings, or sat on part
        of a PDU past the partial-PDU deadline."""
        self._next_turn: list[Task] = []
        self.internal_errors = 0
        self.ping_interval = limits.nop_interval
        self.dead_after = limits.nop_timeout
        self.partial_pdu_timeout = limits.partial_pdu_timeout
        self._last_rx = 0.0
        self._ping_sent = 0.0
        self._ping_ttt = 0
        self._on_close = on_close
        self._logout_deadline = 0.0
        """When an initiator asked to log out (:meth:`request_logout`) is dropped; 0: not
        asked."""
        self.io: dict[int, IoStats] = {}
        """Figures of the commands answered on this connection, by LUN (see :meth:`close`)."""
        self.fast_path = True
        """Whether READ/WRITE (10/16) that complete at once skip the general path
        (:meth:`_fast_command`); tests turn it off to compare both paths' bytes."""
        self.fast_commands = 0
        """Commands the fast path answered."""

    # ------------------------------------------------------------------ I/O API

    def get_buffer(self) -> memoryview:
        """Where the transport should receive the next bytes (header scratch or a store slice)."""
        return self.receiver.get_buffer()

    def tick(self, now: float) -> None:
        """Time passes (aioquic-style ``handle_timer``): ping an idle initiator with a NOP-In
        (RFC 7143 §11.19, TTT != 0xFFFFFFFF asks for an answer), declare it dead when it
        has been silent for ``dead_after`` seconds, and close a connection that has sat on
        part of a PDU for ``partial_pdu_timeout`` seconds."""
        if not self._last_rx:
            self._last_rx = now
        if self._logout_deadline and now >= self._logout_deadline:
            self.log.info("peer %s did not log out when asked: dropping it", self.peer)
            self.dead = True
            return
        idle = now - self._last_rx
        if (self.partial_pdu_timeout and idle >= self.partial_pdu_timeout
                and self.receiver.mid_pdu and self.phase is not Phase.CLOSED):
            self.log.info("peer %s sent part of a PDU and nothing for %.0f s: closing",
                          self.peer, idle)
            self.state.receive.partial_pdus += 1
            self.dead = True
            return
        if self.phase is not Phase.FULL_FEATURE or not self.ping_interval:
            return
        if self.dead_after and idle >= self.dead_after:
            self.log.info("peer %s silent for %.0f s: connection dead", self.peer, idle)
            self.dead = True
            return
        if idle >= self.ping_interval and now - self._ping_sent >= self.ping_interval:
            self._ping_sent = now
            self._ping_ttt = (self._ping_ttt + 1) & 0x7FFFFFFF
            exp, mx = self._window()
            self._send(P.NopIn(itt=RESERVED_TAG, ttt=self._ping_ttt, statsn=self.statsn,
                               expcmdsn=exp, maxcmdsn=mx))

    def received_at(self, now: float) -> None:
        """The transport saw bytes from the peer at ``now``."""
        self._last_rx = now

    def advance(self, nbytes: int) -> None:
        """``nbytes`` arrived in the last buffer; may raise RemoteProtocolError (close)."""
        receiver = self.receiver
        events = receiver.advance(nbytes)
        assert not events  # delivered synchronously through _on_pdu
        # While bursts are open, Data-Outs are coming: read their headers exactly so the
        # payloads go straight to the store instead of through the staging area.
        receiver.exact_headers = len(self.table) > 0

    def take_output(self) -> tuple[list[Buffer], list[int]]:
        """The buffers to send and how many of their bytes are store payload (zero-copy),
        by payload size bucket."""
        out, self._out = self._out, []
        payload, self._tx_payload = self._tx_payload, [0, 0, 0]
        return out, payload

    def close(self) -> None:
        """Tear down: free every table entry, end every task, leave the session."""
        if self.phase is Phase.CLOSED:
            return
        self.phase = Phase.CLOSED
        self._rules = {}
        self.receiver.fast = None
        session = self.session
        for task in list(self.tasks.values()):
            if session is not None and task.started:
                session.task_done(task.immediate)
        self.transfers.clear()
        self.store_works.clear()
        self._held.clear()
        self._fold_io()
        self.state.connections.unregister(self.number)
        self.log.info("connection from %s closed%s", self.peer,
                      f" (TSIH {session.tsih})" if session is not None else "")
        if session is not None and self in session.connections:
            session.connections.remove(self)
            if not session.connections:
                self.catalog.sessions.pop(session.tsih, None)
                for lu in self.target.luns.values() if self.target is not None else ():
                    lu.nexus_lost(self._nexus)  # the I_T nexus is gone: RESERVE (6) goes
                    lu.attentions.leave(self._nexus)
        if self._on_close is not None:
            self._on_close(self)

    @property
    def logged_in(self) -> bool:
        return self.phase is not Phase.LOGIN

    # ------------------------------------------------------------------ output helpers

    def _send(self, pdu: P.Pdu, payload: Buffer | None = None, *, store: bool = False) -> None:
        self._send_header(pdu.encode(), payload, store=store)

    def _send_header(self, header: bytes, payload: Buffer | None = None, *,
                     store: bool = False) -> None:
        """Send an encoded BHS (:mod:`~pyiscsi.proto.fastcodec` on the hot paths, which
        builds no PDU object) and its payload, with the negotiated digests."""
        digests = self.params is not None and self.phase is Phase.FULL_FEATURE
        self._out.extend(frame(header, payload,
                               header_digest=digests and self.receiver.header_digest,
                               data_digest=digests and self.receiver.data_digest))
        if store and payload is not None:
            n = len(payload)
            self._tx_payload[0 if n < 4096 else 1 if n < 65536 else 2] += n

    def _next_statsn(self) -> int:
        sn = self.statsn
        self.statsn = sn_add(sn, 1)
        return sn

    def _window(self) -> tuple[int, int]:
        """ExpCmdSN and MaxCmdSN to send (the session slides MaxCmdSN as CmdSNs are taken
        and tasks end)."""
        s = self.session
        return (s.expcmdsn, s.maxcmdsn) if s is not None else (0, 0)

    def _reject(self, reason: RejectReason, header: bytes, why: str = "") -> None:
        self.log.info("reject 0x%02x: %s", reason, why)
        self.state.events.rejected(header, reason)
        exp, mx = self._window()
        self._send(P.Reject(reason=reason, statsn=self._next_statsn(), expcmdsn=exp,
                            maxcmdsn=mx, datasn=0, data_length=len(header)), header)

    # ------------------------------------------------------------------ header time

    def _screen(self, opcode: int, ahs_length: int, data_length: int) -> None:
        """RFC 7143 §11.2: judge a header from its first 48 bytes, before waiting for its
        AHS or data. During login only a Login Request without AHS is legal; afterwards an
        AHS comes only where the opcode table allows one. Anything else cannot be framed
        with trust: the connection closes. (DataSegmentLength is bounded by the receiver.)"""
        if self.phase is Phase.LOGIN:
            if opcode != Opcode.LOGIN_REQUEST or ahs_length:
                raise RemoteProtocolError(f"opcode 0x{opcode:02x} (AHS {ahs_length} bytes) "
                                          "during login")
            return
        if ahs_length:
            rule = OPCODES.get(opcode)
            if rule is None or not rule.ahs:
                raise RemoteProtocolError(f"opcode 0x{opcode:02x} with TotalAHSLength "
                                          f"{ahs_length}")

    def route(self, pdu: P.Pdu, header: bytes, ahs: bytes) -> Route:
        """Decide where a PDU's data segment goes, before a payload byte is received."""
        if self.phase is not Phase.FULL_FEATURE:
            return None
        rule = FULL_FEATURE_RULES.get(type(pdu))
        if rule is None:
            return DISCARD  # refused once whole; its payload is drained meanwhile
        return rule.route(self, pdu, ahs) if rule.route is not None else None

    def _route_data_out(self, pdu: P.DataOut, ahs: bytes) -> Route:
        return self.transfers.route_data_out(pdu)

    def _route_command(self, cmd: P.ScsiCommand, ahs: bytes) -> Route:
        """A SCSI Command's header is in: admit it now (:meth:`_admit`), or, when it
        carries immediate data under DataDigest=CRC32C, once that data has passed its
        digest (:data:`~pyiscsi.proto.framing.VERIFY_FIRST`, then :meth:`_route_verified`).

        RFC 7143 §7.8: a command PDU whose immediate data fails its data digest is
        answered with a Reject (reason 0x02) and discarded like a non-data PDU; its data
        is recovered when the initiator retries the command (§7.2.1: same ITT, same
        CmdSN). Admitting it at header time would start a task, take its CmdSN and bind
        its unsolicited entry, none of which a discarded command may leave behind, so the
        decision waits for the digest. (The payload is staged and copied once with a data
        digest anyway: the wait costs no copy.)"""
        if cmd.data_length and self.receiver.data_digest:
            return VERIFY_FIRST
        return self._admit(cmd, ahs)

    def _route_verified(self, pdu: P.Pdu, header: bytes, ahs: bytes) -> Route:
        """A SCSI Command's immediate data passed its data digest: admit it now."""
        if self.phase is not Phase.FULL_FEATURE or not isinstance(pdu, P.ScsiCommand):
            return DISCARD
        return self._admit(pdu, ahs)

    def _admit(self, cmd: P.ScsiCommand, ahs: bytes) -> Route:
        """Admission, all or nothing (RFC 7143 §3.2.2.1, §11.3): every field is checked
        before the command takes its CmdSN, a table entry or a task.

        Outside the window: ignored. Too many immediate commands, or an ITT already in
        use: a Reject, no task (a non-immediate one's CmdSN is taken, so no gap remains).
        Sound framing with wrong fields: the command is received, takes its CmdSN and is
        answered with CHECK CONDITION. Otherwise it runs now (its CmdSN is next) or is
        held behind the gap with its unsolicited data staged.
        """
        session = self.session
        assert session is not None
        if session.discovery:
            raise PduRejected(RejectReason.PROTOCOL_ERROR, "SCSI command in a discovery session")
        verdict = session.classify(cmd.cmdsn, cmd.immediate)
        if verdict is Admission.DROP:
            self.log.debug("CmdSN %d outside window, ignored", cmd.cmdsn)
            return DISCARD
        if cmd.immediate and session.immediate_active >= self.catalog.limits.immediate_commands:
            raise PduRejected(RejectReason.IMMEDIATE_COMMAND_REJECT,
                              f"{session.immediate_active} immediate commands running")
        if cmd.itt == RESERVED_TAG or cmd.itt in self.tasks:
            self._take_cmdsn(cmd, verdict, None)
            raise PduRejected(RejectReason.TASK_IN_PROGRESS if cmd.itt in self.tasks
                              else RejectReason.INVALID_PDU_FIELD,
                              f"ITT 0x{cmd.itt:08x} already in use")
        unsolicited = n = cmd.data_length
        if n or not cmd.final:
            params = self._params
            if (n and params.immediate_data and cmd.write and n <= cmd.expected_length
                    and n <= params.first_burst_length and (cmd.final or params.initial_r2t)
                    and verdict is Admission.NOW):
                pass  # the common write with immediate data: nothing to refuse
            else:
                unsolicited = self._unsolicited_length(cmd)
                refusal = self._refusal(cmd, unsolicited, verdict)
                if refusal is not None:
                    self._take_cmdsn(cmd, verdict, refusal)
                    return DISCARD
        task = Task(cmd, lun_from_field(cmd.lun), ahs)
        task.unsol_end = task.next_r2t = unsolicited
        self.tasks[cmd.itt] = task
        if verdict is Admission.NOW:
            if not cmd.immediate:
                session.take()
            self._execute(task)
        else:
            self._held[cmd.cmdsn] = lambda: self._start_held(task)
        if unsolicited:
            self.transfers.bind_unsolicited(task)
        self._admitted = (task, None)
        return self.transfers.immediate_destination(task) if cmd.data_length else None

    def _unsolicited_length(self, cmd: P.ScsiCommand) -> int:
        """Immediate data plus the unsolicited Data-Outs that follow when the F bit is
        clear and InitialR2T=No: up to FirstBurstLength or EDTL (RFC 7143 §13.13-14)."""
        params = self._params
        if cmd.write and not cmd.final and not params.initial_r2t:
            return max(cmd.data_length, min(params.first_burst_length, cmd.expected_length))
        return cmd.data_length

    def _refusal(self, cmd: P.ScsiCommand, unsolicited: int,
                 verdict: Admission) -> ScsiResult | None:
        """The SCSI answer of a command whose fields are wrong, or None when it is sound."""
        params = self._params
        n = cmd.data_length
        if n and not params.immediate_data:
            return _UNWANTED_IMMEDIATE_DATA
        if n and (not cmd.write or n > cmd.expected_length
                  or n > params.first_burst_length):
            return _TOO_MUCH_WRITE_DATA
        if (verdict is Admission.LATER and unsolicited
                and self.transfers.held_bytes + unsolicited > self.catalog.limits.held_data_limit):
            return _TASK_SET_FULL
        return None

    def _take_cmdsn(self, cmd: P.ScsiCommand, verdict: Admission,
                    refusal: ScsiResult | None) -> None:
        """A command that starts no task still takes its CmdSN, now or when the gap before
        it closes; a refusal is answered then."""
        session = self.session
        assert session is not None
        if verdict is Admission.NOW:
            session.admit(cmd.cmdsn, cmd.immediate)
            session.slide()  # a CmdSN taken without a task: the window moves on
            if refusal is not None:
                self._admitted = (None, refusal)
        elif refusal is not None:
            self._held[cmd.cmdsn] = (cmd, refusal)
        else:
            self._held[cmd.cmdsn] = None

    # ------------------------------------------------------------------ fast path

    def _fast_command(self, buf: memoryview, start: int, length: int) -> bool:
        """READ/WRITE (10/16) that complete in the call that received them, with no Task,
        ScsiRequest or ScsiResult: a non-immediate SIMPLE command whose CmdSN is the next
        one (nothing held), on a LU with nothing pending (no unit attention, reservation,
        sanitize or busy range), of a memory-addressable store (a file mapping only where
        it is allocated and resident, as the general path would find it), transferring
        exactly EDTL: a read in one Data-In with status, a write whose immediate data is
        all of it. Anything else (and every error) answers False having changed nothing,
        and takes the general path, whose answer this one reproduces byte for byte
        (RFC 7143 §11.3, §11.4, §11.8; SBC-4 §5.15, §5.41)."""
        b0, b1, _lens, lun_field, itt, edtl, cmdsn = _CMD_HEAD(buf, start)
        cdb = start + fastcodec.CDB_OFFSET
        op = buf[cdb]
        layout = _FAST_CDBS.get(op)
        if layout is None:
            return False
        lba, count = layout.unpack_from(buf, cdb + 2)
        write = op & 0x02
        if (b0 != fastcodec.SCSI_COMMAND_OPCODE
                or b1 != (_FAST_WRITE_FLAGS if write else _FAST_READ_FLAGS)
                or buf[cdb + 2 + layout.size] & 0x05  # CONTROL: NACA, LINK
                or buf[cdb + 1] & (_WRITE_PROTECT_FUA if write else _RDPROTECT)):
            return False
        session = self.session
        target = self.target
        params = self.params
        if (session is None or target is None or params is None or self._held
                or cmdsn != session.expcmdsn
                or (session.maxcmdsn - cmdsn) & 0xFFFFFFFF >= 0x80000000  # not sn_le
                or itt == RESERVED_TAG or itt in self.tasks or self._task_sets.barriers):
            return False
        lun = (lun_field >> 48) & 0x3FFF
        lu = target.luns.get(lun)
        if lu is None:
            return False
        store = lu.store
        reservations = lu.reservations
        if (lu.attentions.queued or lu.sanitize.active or lu.busy.ranges
                or reservations.spc2_holder is not None or reservations.reservation is not None
                or not lu.memory_addressable
                or not count or lba + count > lu.blocks or count > lu.max_transfer_blocks):
            return False
        bs = lu.block_size
        n = count * bs
        if n != edtl:
            return False
        offset = lba * bs
        if write:
            if (length != n or not params.immediate_data or n > params.first_burst_length
                    or not lu.write_cache or lu.read_only):
                return False
        elif length or n > params.max_send_data_segment_length or n > params.max_burst_length:
            return False
        if store.paged and ((write and store.needs_allocation(offset, n))
                            or not store.resident(offset, n)):
            return False  # a hole to allocate, pages to fault in: off the loop (general)
        data = start + BHS_LENGTH
        if write and not lu.writes_in_place:
            # pwrite from the staging buffer (a file: see BackingStore.writes_in_place),
            # before anything is taken: a failure goes the general path, which reports it
            try:
                store.write(offset, buf[data:data + n])
            except StoreError:
                return False
        # Taken: the CmdSN, the StatSN, the answer (the general path's window is the one
        # before the task ends, then MaxCmdSN slides as its task_done would).
        t0 = perf_counter_ns()
        exp = session.expcmdsn = (cmdsn + 1) & 0xFFFFFFFF
        statsn = self.statsn
        self.statsn = (statsn + 1) & 0xFFFFFFFF
        out = self._out
        if write:
            if lu.writes_in_place:
                store.prepare_write(offset, n)
                store.view(offset, n)[:] = buf[data:data + n]
            self.counters.rx_staged_by_size[0 if n < 4096 else 1 if n < 65536 else 2] += n
            out.append(fastcodec.scsi_response_good(itt, statsn, exp, session.maxcmdsn))
        else:
            out.append(fastcodec.data_in_good(n, lun_field, itt, statsn, exp, session.maxcmdsn))
            out.append(store.view(offset, n))
            if n & 3:
                out.append(bytes(-n & 3))
            self._tx_payload[0 if n < 4096 else 1 if n < 65536 else 2] += n
        session.slide()
        io = self.io.get(lun)
        if io is None:
            io = self._new_io(lun)
        io.record(not write, bool(write), n, True, perf_counter_ns() - t0)
        self.fast_commands += 1
        return True

    # ------------------------------------------------------------------ commands

    def _execute(self, task: Task) -> None:
        """A task's CmdSN was reached: it counts in the window and runs in task-set order
        (ORDERED / HEAD OF QUEUE, :mod:`.taskset`)."""
        session = self.session
        assert session is not None
        session.task_started(task.immediate)
        task.started = True
        task_sets = self._task_sets
        if task_sets.barriers or task.cmd.attr == ORDERED:
            task_sets.start(task)
        else:  # SIMPLE or HEAD OF QUEUE with no ORDERED task around: it runs now
            task_sets.active[task.lun] = task_sets.active.get(task.lun, 0) + 1
            task.in_task_set = True
            self._run_task(task)

    def _run_task(self, task: Task) -> None:
        """Run the SCSI layer for a task, once no store work in flight changes the bytes it
        touches (on this LU, from any session)."""
        assert self.target is not None
        lu = self.target.luns.get(task.lun)
        if lu is not None and lu.busy.ranges and self._waits_for_busy(lu, task):
            lu.busy.wait(lambda: self._retry(task))
            return
        if (lu is not None and lu.reservations.spc2_holder not in (None, self._nexus)
                and not task.turned):
            # Another I_T nexus holds RESERVE(6). If its peer has just gone, the FIN may be
            # queued behind this command in the loop: wait one turn of the loop, so that
            # nexus loss is seen first and never answered as a conflict (SPC-2 §5.5.1).
            task.turned = True
            self._next_turn.append(task)
            return
        cmd = task.cmd
        cdb = cmd.cdb + _extended_cdb(task.ahs) if task.ahs else cmd.cdb
        request = ScsiRequest(cdb=cdb, expected_length=cmd.expected_length, read=cmd.read,
                              write=cmd.write, nexus=self._nexus, task_tag=cmd.itt)
        outcome: Outcome
        try:
            ua = lu.attentions.take(self._nexus, cdb[0]) if lu is not None else None
            if ua is not None:
                outcome = ScsiResult(ScsiStatus.CHECK_CONDITION, ua)
            elif lu is not None:
                outcome = dispatch.execute(lu, request)
            else:
                outcome = dispatch.execute_without_lu(request)
        except Exception:
            self.log.exception("ITT 0x%08x opcode 0x%02x: SCSI layer failed", cmd.itt, cdb[0])
            self.internal_errors += 1
            outcome = INTERNAL_FAILURE
        self._settle(task, outcome)

    def _resume_task(self, task: Task) -> None:
        """A task that waited behind an ORDERED one runs now."""
        if self.tasks.get(task.itt) is task:
            self._run_task(task)
            self._progress(task)

    def _waits_for_busy(self, lu: LogicalUnit, task: Task) -> bool:
        span = command_range(task.cmd.cdb, lu.block_size, lu.blocks)
        return span is not None and lu.busy.overlaps(*span)

    def _retry(self, task: Task) -> bool:
        """A busy range freed: run the waiting task if it may; True once it waits no more."""
        if self.phase is Phase.CLOSED or self.tasks.get(task.itt) is not task:
            return True
        if task.aborted:
            self._progress(task)
            return True
        assert self.target is not None
        lu = self.target.luns.get(task.lun)
        if lu is not None and lu.busy.ranges and self._waits_for_busy(lu, task):
            return False
        self._run_task(task)
        self._progress(task)
        return True

    def _settle(self, task: Task, outcome: Outcome) -> None:
        """Take what the SCSI layer answered: store work runs at once when the store can,
        else the task waits for its completion (:meth:`store_completed`); a plan opens the
        data phase; a result ends the task (once its open bursts have drained)."""
        settled: ScsiResult | DataOutPlan | None
        if isinstance(outcome, DataOutPlan) or (isinstance(outcome, ScsiResult)
                                                and outcome.background is None):
            settled = outcome  # nothing for the store to do: the common case, kept cheap
        else:
            lu = self.target.luns.get(task.lun) if self.target is not None else None
            settled = self.store_works.settle(outcome, lambda o: self._resumed(task, o),
                                              lu.busy if lu is not None else None)
        if settled is None:
            task.store_busy = True
            task.fenced = self.store_works.last_fenced
        elif isinstance(settled, DataOutPlan):
            if task.data_done:  # a completion may not ask for more data
                task.result = INTERNAL_FAILURE
                return
            task.plan = settled
            task.want = settled.length
            # The Data-Out bytes land in the plan's buffer (the store's memory). Only what the
            # CDB transfers is solicited: an EDTL beyond it is never allocated (§11.4.5).
            task.limit = min(task.edtl, settled.length)
            task.buffer = settled.buffer
        else:
            task.result = settled
            if not task.data_done:
                self.transfers.drain(task)

    def _resumed(self, task: Task, outcome: Outcome) -> None:
        """Store work of the task completed (fed in by the transport)."""
        task.store_busy = False
        if self.phase is Phase.CLOSED or self.tasks.get(task.itt) is not task:
            return
        if not task.aborted:
            self._settle(task, outcome)
        self._progress(task)

    def store_completed(self, token: int, error: BaseException | None = None) -> None:
        """The transport ran store request ``token`` (``error``: what it raised)."""
        self.store_works.completed(token, error)

    def take_store_requests(self) -> list[StoreRequest]:
        """Store work to run off the loop (each answered with :meth:`store_completed`)."""
        return self.store_works.take()

    def _start_held(self, task: Task) -> None:
        """A held command's CmdSN is reached: it runs, unless it was aborted meanwhile."""
        if self.tasks.get(task.itt) is not task:
            return
        if task.result is None and not task.aborted:
            self._execute(task)
        else:
            assert self.session is not None
            self.session.task_started(task.immediate)
            task.started = True
        self._progress(task)

    @property
    def wants_turn(self) -> bool:
        """Whether some task waits for the next turn of the event loop (:meth:`turn`)."""
        return bool(self._next_turn)

    def turn(self) -> None:
        """The event loop went round once (every I/O event queued before has been fed in):
        the tasks that waited for it run."""
        waiting, self._next_turn = self._next_turn, []
        for task in waiting:
            if self.tasks.get(task.itt) is task and not task.aborted:
                self._run_task(task)
            self._progress(task)

    def _progress(self, task: Task) -> None:
        """Move a task forward: more R2Ts, the data phase's completion once every byte has
        landed, or the response; nothing while its store work is in flight."""
        if task.aborted:
            if (task.unsol_tag is None and not task.outstanding
                    and not (task.store_busy and task.fenced)):
                self._finish_task(task)
            return
        if not task.started or task.store_busy:
            return
        result = task.result  # a local: a narrowed task.result would outlive _settle below
        if result is not None:
            if task.unsol_tag is None and not task.outstanding:  # every burst has ended
                self._respond(task, result)
            return
        plan = task.plan
        if plan is None:
            return
        if task.next_r2t >= task.limit and task.unsol_tag is None and not task.outstanding:
            arrived = min(task.received, task.limit)
            if task.unsol_buffer is not None:
                n = min(task.unsol_end, task.limit)
                plan.buffer[:n] = task.unsol_buffer[:n]
                self.counters.rx_staged_by_size[size_bucket(n)] += n
            if plan.staged:
                self.counters.rx_staged_by_size[size_bucket(arrived)] += arrived  # SCSI copies it
            task.data_done = True
            self._settle(task, plan.complete(arrived))
            if task.result is not None:
                self._respond(task, task.result)
            return
        self.transfers.solicit(task)

    def _send_r2t(self, task: Task, ttt: int, offset: int, length: int) -> None:
        self.state.events.r2ts += 1
        exp, mx = self._window()
        self._send(P.R2T(itt=task.itt, ttt=ttt, buffer_offset=offset, desired_length=length,
                         r2tsn=task.r2tsn, statsn=self.statsn, expcmdsn=exp, maxcmdsn=mx,
                         lun=task.cmd.lun))

    def _respond_refusal(self, cmd: P.ScsiCommand, result: ScsiResult) -> None:
        """Answer a command that was received but refused: no task was ever made for it."""
        self.log.info("ITT 0x%08x refused: status 0x%02x sense %s", cmd.itt, result.status,
                      result.sense[:18].hex())
        self._respond(Task(cmd, lun_from_field(cmd.lun)), result)

    def _respond(self, task: Task, result: ScsiResult) -> None:
        """Send Data-In (reads) and status: in the last Data-In when GOOD without sense
        (phase collapse, RFC 7143 §11.7.4), else a SCSI Response with sense (§11.4).

        Residuals (§11.4.5): the command's own transfer amount (the CDB's, for writes the
        plan's length) against the Expected Data Transfer Length.
        """
        if result.status != ScsiStatus.GOOD and self.log.isEnabledFor(logging.DEBUG):
            self.log.debug("ITT 0x%08x opcode 0x%02x: status 0x%02x sense %s", task.itt,
                           task.cmd.cdb[0], result.status, result.sense[:18].hex())
        data = result.data
        edtl = task.edtl
        if task.plan is not None:
            length = task.want
        elif data is not None:
            length = len(data)
        else:
            length = edtl
        overflow = length > edtl
        underflow = length < edtl
        residual = abs(length - edtl)
        good = result.status == ScsiStatus.GOOD and not result.sense
        (self.io.get(task.lun) or self._new_io(task.lun)).done(task, data, good)  # figures
        if data is not None and task.cmd.read and edtl and len(data):
            self._send_data_in(task, memoryview(data)[:min(len(data), edtl)], result,
                               overflow, underflow, residual, good)
            if good:
                self._finish_task(task)
                return
        exp, mx = self._window()
        sense = result.sense
        payload = (len(sense).to_bytes(_SENSE_LEN, "big") + sense) if sense else None
        flags = (fastcodec.OVERFLOW if overflow else 0) | (fastcodec.UNDERFLOW if underflow else 0)
        self._send_header(fastcodec.scsi_response(
            flags, 0, result.status, len(payload) if payload else 0, task.itt, 0,
            self._next_statsn(), exp, mx, task.datasn if task.cmd.read else task.r2tsn, 0,
            residual if flags else 0), payload)
        self._finish_task(task)

    def _new_io(self, lun: int) -> IoStats:
        io = self.io[lun] = IoStats()
        return io

    def _fold_io(self) -> None:
        """Closing: this connection's figures go to its LUs and its session, which keep
        them (:mod:`.status` adds live connections' figures to theirs)."""
        io, self.io = self.io, {}
        luns = self.target.luns if self.target is not None else {}
        for lun, stats in io.items():
            if (lu := luns.get(lun)) is not None:
                lu.stats.add(stats)
            if self.session is not None:
                self.session.io.add(stats)

    def _send_data_in(self, task: Task, data: memoryview, result: ScsiResult, overflow: bool,
                      underflow: bool, residual: int, good: bool) -> None:
        params = self._params
        seg = params.max_send_data_segment_length
        burst = params.max_burst_length
        total = len(data)
        offset = 0
        lun = task.cmd.lun
        # the O/U bits and the residual ride with the status, in the last Data-In (§11.8)
        last_flags = (fastcodec.FLAG_FINAL | fastcodec.DATA_IN_STATUS
                      | (fastcodec.OVERFLOW if overflow else 0)
                      | (fastcodec.UNDERFLOW if underflow else 0))
        last_residual = residual if overflow or underflow else 0
        while offset < total:
            n = min(seg, total - offset, burst - offset % burst)
            last = offset + n == total
            exp, mx = self._window()
            if last and good:
                header = fastcodec.data_in(last_flags, result.status, n, lun, task.itt,
                                           RESERVED_TAG, self._next_statsn(), exp, mx,
                                           task.datasn, offset, last_residual)
            else:
                end_of_burst = last or (offset + n) % burst == 0
                header = fastcodec.data_in(fastcodec.FLAG_FINAL if end_of_burst else 0, 0, n,
                                           lun, task.itt, RESERVED_TAG, 0, exp, mx,
                                           task.datasn, offset, 0)
            self._send_header(header, data[offset:offset + n], store=True)
            task.datasn += 1
            offset += n

    def _finish_task(self, task: Task) -> None:
        if task.unsol_tag is None and not task.outstanding and not task.held_bytes:
            live = self.tasks.get(task.itt) is task  # no entry, no staging: the cheap case
            if live:
                del self.tasks[task.itt]
        else:
            live = self.transfers.forget(task)
        if live and task.started and self.session is not None:
            self.session.task_done(task.immediate)
        if task.in_task_set:
            task_sets = self._task_sets
            if task_sets.barriers or task.cmd.attr == ORDERED:
                task_sets.ended(task)
            else:  # nothing waits behind it: just count it out
                task.in_task_set = False
                task_sets.active[task.lun] -= 1
        elif task.started:
            self._task_sets.forget(task)
        if task.waiters:
            waiters, task.waiters = task.waiters, None
            for waiter in waiters:
                waiter(task)

    # ------------------------------------------------------------------ events

    def _on_pdu(self, event: PduReceived) -> None:
        pdu = event.pdu
        if event.rejected is not None:
            if self.phase is Phase.LOGIN:
                raise RemoteProtocolError(str(event.rejected))
            self._reject(event.rejected.reason, event.header, str(event.rejected))
            self._after_refusal(pdu, event.rejected.reason)
            self.transfers.entry = None
            return
        assert pdu is not None
        if self.phase is Phase.CLOSED:
            return
        rule = self._rules.get(type(pdu))
        if rule is None:
            rule = RULES.get(type(pdu))
            if self.phase is Phase.LOGIN:
                raise RemoteProtocolError(f"{pdu.opcode.name} during login")
            self._reject(rule.refusal if rule is not None else RejectReason.PROTOCOL_ERROR,
                         event.header, f"{pdu.opcode.name} not accepted here")
            return
        if rule.ordering is Ordering.AT_END:
            self._ordered(pdu, event.data, rule)
        else:
            rule.handler(self, pdu, event.data)

    def _after_refusal(self, pdu: P.Pdu | None, reason: RejectReason) -> None:
        """A PDU was rejected.

        A SCSI Command is rejected before admission or by it, never after: its immediate
        data is verified before it is admitted (:meth:`_route_command`), so there is no
        task, table entry or staging of it to undo. One whose immediate data failed its
        data digest was discarded whole, its CmdSN not taken (RFC 7143 §7.8: the non-data
        PDU rule; the initiator retries it, §7.2.1); one that admission refused may have
        taken its CmdSN, and what was held behind it runs.

        A Data-Out whose burst is drained still ends that burst with its F bit. A data
        digest error on a Data-Out (RFC 7143 §7.8, ERL 0) fails the task it was for: its
        bytes never reached the store, and the task ends in CHECK CONDITION (PROTOCOL
        SERVICE CRC ERROR) once its bursts are drained."""
        if isinstance(pdu, P.ScsiCommand):
            assert self._admitted is None, "a rejected command was admitted"
            self._run_held()
            return
        if not isinstance(pdu, P.DataOut):
            return
        entry = self.transfers.entry
        if entry is None:
            entry = self.transfers.drained_entry(pdu)
            if entry is None:
                return
        owner = entry.owner
        if not isinstance(owner, Task):
            return
        if reason == RejectReason.DATA_DIGEST_ERROR:
            self.transfers.fail(owner, _CRC_ERROR)
        self.transfers.landed(owner, pdu.buffer_offset, 0, pdu.final)
        self._progress(owner)

    def _on_data_out(self, pdu: P.DataOut, data: bytes | None) -> None:
        entry = self.transfers.entry
        owner = entry.owner if entry is not None else None
        if not isinstance(owner, Task):
            self.transfers.entry = None
            return
        self.transfers.landed(owner, pdu.buffer_offset, pdu.data_length, pdu.final)
        self._progress(owner)

    def _on_command(self, cmd: P.ScsiCommand, data: bytes | None) -> None:
        """A SCSI Command is whole: its immediate data has landed (admission was decided
        when its header arrived)."""
        admitted, self._admitted = self._admitted, None
        if admitted is not None:
            task, refusal = admitted
            if task is not None:
                if cmd.data_length:
                    self.transfers.landed(task, 0, cmd.data_length, cmd.final)
                self._progress(task)
            elif refusal is not None:
                self._respond_refusal(cmd, refusal)
        self._run_held()

    def _run_held(self) -> None:
        """Run what was held behind a CmdSN gap, in CmdSN order, as far as the gap allows."""
        session = self.session
        while (session is not None and self.phase is Phase.FULL_FEATURE
               and session.expcmdsn in self._held):
            run = self._held.pop(session.expcmdsn)
            verdict = session.admit(session.expcmdsn, False)
            assert verdict is Admission.NOW
            if isinstance(run, tuple):
                self._respond_refusal(*run)
            elif run is not None:
                run()
            session.slide()

    def consider_received(self, cmdsn: int, itt: int) -> None:
        """ABORT TASK (ITT ``itt``, RefCmdSN ``cmdsn``) of a command with no task here, its
        CmdSN in the window (RFC 7143 §11.5.1, §11.6.1 b): 'consider the CmdSN as
        received'. It is taken with no task when the window reaches it: at once when it is
        ExpCmdSN (:meth:`_ordered` runs what is held after the TMF), else once the gap
        before it closes. Commands held behind it then run, and the command itself,
        should it still arrive (one discarded for a data digest error and retried, §7.8),
        is a duplicate and ignored (§3.2.2.1).

        A command received but refused, held behind a gap with its CHECK CONDITION, is
        that task: it is aborted, so that answer is never sent (§11.5.1: no response for
        an aborted task after the TMF response). Anything else held at that CmdSN stays."""
        held = self._held.get(cmdsn)
        if cmdsn not in self._held or (isinstance(held, tuple) and held[0].itt == itt):
            self._held[cmdsn] = None

    def _ordered(self, pdu: P.Pdu, data: bytes | None, rule: OpcodeRule) -> None:
        """CmdSN ordering for requests other than SCSI commands (RFC 7143 §3.2.2.1)."""
        session = self.session
        assert session is not None
        cmdsn, immediate = _cmdsn(pdu), bool(getattr(pdu, "immediate", False))
        verdict = session.admit(cmdsn, immediate)
        if verdict is Admission.LATER:
            self._held[cmdsn] = lambda: rule.handler(self, pdu, data)
        elif verdict is Admission.NOW:
            session.slide()
            rule.handler(self, pdu, data)
            self._run_held()

    def _nop(self, pdu: P.NopOut, data: bytes | None) -> None:
        if pdu.itt == RESERVED_TAG:
            return  # a reply to our ping, or a ping wanting no answer (§11.18)
        exp, mx = self._window()
        payload = data or None
        self._send(P.NopIn(itt=pdu.itt, ttt=RESERVED_TAG, statsn=self._next_statsn(),
                           expcmdsn=exp, maxcmdsn=mx, lun=pdu.lun,
                           data_length=len(payload) if payload else 0), payload)

    def _text(self, pdu: P.TextRequest, data: bytes | None) -> None:
        """Text request (RFC 7143 §11.10): see :mod:`.text`."""
        session = self.session
        initiator = (self.params.initiator_name or "") if self.params else ""
        try:
            answer = self._texts.receive(pdu, data or b"", initiator=initiator,
                                         target=self.target,
                                         discovery=session is None or session.discovery)
        except PduRejected as exc:
            self._reject(exc.reason, exc.header, str(exc))
            return
        exp, mx = self._window()
        body = answer.body
        self._send(P.TextResponse(itt=pdu.itt, ttt=RESERVED_TAG, statsn=self._next_statsn(),
                                  expcmdsn=exp, maxcmdsn=mx, final=answer.final,
                                  data_length=len(body)), body or None)

    def _tmf(self, pdu: P.TaskMgmtRequest, data: bytes | None) -> None:
        """Task management (RFC 7143 §11.5): see :mod:`.tmf`."""
        fence = tmf.Fence()
        response = tmf.perform(self, pdu, fence)

        def answer() -> None:
            exp, mx = self._window()
            self._send(P.TaskMgmtResponse(itt=pdu.itt, response=response,
                                          statsn=self._next_statsn(), expcmdsn=exp,
                                          maxcmdsn=mx))

        pending = fence.pending()
        if not pending:
            answer()
            return
        tmf.when_ended(pending, lambda: answer() if self.phase is Phase.FULL_FEATURE else None)

    def abort(self, task: Task, fence: list[Task] | None = None) -> None:
        """Abort a task: no response; its entries are freed as their bursts end. One whose
        store work is in flight stays (its ITT busy, its buffers referenced) until that
        completes, and goes in ``fence``."""
        task.aborted = True
        self.transfers.drain(task)
        self._progress(task)
        if task.store_busy and task.fenced and fence is not None:
            fence.append(task)

    def abort_tasks(self, luns: set[int], fence: list[Task] | None = None) -> int:
        """Abort this connection's tasks on ``luns`` (ABORT TASK SET, CLEAR TASK SET, LOGICAL
        UNIT RESET, TARGET WARM/COLD RESET: RFC 7143 §11.5.1; SAM-5 §7.3, §7.5, §7.7).

        Held tasks are aborted like the others (:meth:`_start_held` takes their CmdSN with
        no response when the gap closes). So are refused commands held behind a gap on
        those LUs: received, with no task, their CHECK CONDITION waiting for the gap to
        close. After the function's response no status may be returned for a task it
        aborted (RFC 7143 §11.5.1; SAM-5 clause 7), so that answer is dropped; the CmdSN
        stays held, taken with no answer when the window reaches it, so the commands behind
        it still run (the same as :meth:`consider_received` for ABORT TASK).

        Answers how many commands it aborted, tasks and held refusals (a CLEAR TASK SET
        establishes a unit attention for the other I_T nexuses that had any: SAM-5 §7.5)."""
        count = 0
        for task in [t for t in self.tasks.values() if t.lun in luns]:
            count += not task.aborted  # one aborted before still fences this function
            self.abort(task, fence)
        for cmdsn, held in self._held.items():
            if isinstance(held, tuple) and lun_from_field(held[0].lun) in luns:
                self._held[cmdsn] = None
                count += 1
        return count

    def _logout(self, pdu: P.LogoutRequest, data: bytes | None) -> None:
        exp, mx = self._window()
        response = LogoutResponse.SUCCESS
        if pdu.reason == 1 and pdu.cid != self.cid:
            response = LogoutResponse.CID_NOT_FOUND
        elif pdu.reason == 2:
            response = LogoutResponse.RECOVERY_NOT_SUPPORTED
        self._send(P.LogoutResponse(itt=pdu.itt, response=response, statsn=self._next_statsn(),
                                    expcmdsn=exp, maxcmdsn=mx, time2wait=0, time2retain=0))
        if response == LogoutResponse.SUCCESS:
            self.close_after_send = True

    def request_logout(self, within: int, now: float) -> None:
        """Ask the initiator to log out (Async Message, AsyncEvent 1, RFC 7143 §11.9.1): it
        must within Parameter3 = ``within`` seconds; :meth:`tick` drops the connection
        :data:`LOGOUT_GRACE` seconds after that. The transport must flush (``poke``)."""
        if self.phase is not Phase.FULL_FEATURE:
            raise ValueError(f"connection {self.number} is not in full feature phase")
        exp, mx = self._window()
        self._send(P.AsyncMessage(event=1, param3=within, statsn=self._next_statsn(),
                                  expcmdsn=exp, maxcmdsn=mx))
        self._logout_deadline = now + within + LOGOUT_GRACE

    # ------------------------------------------------------------------ login

    def _on_login(self, req: P.LoginRequest, data: bytes | None) -> None:
        data = data or b""
        if self._login_first:
            self._login_first = False
            self.statsn = req.expstatsn
            self.cid = req.cid
        try:
            step = self._login.receive(req, data)
        except LoginFailed as exc:
            self._login_reject(req, exc.status)
            return
        response = step.response
        tsih = response.tsih
        if step.complete and step.params is not None:
            self.params = step.params
            attached = attach(self.catalog, self, req, step.params)
            if isinstance(attached, LoginStatus):
                self._login_reject(req, attached)
                return
            self.session, self.target = attached.session, attached.target
            self._nexus = attached.nexus
            tsih = attached.session.tsih
        exp = req.cmdsn
        mx = sn_add(exp, self.catalog.limits.queue_depth - 1)
        if self.session is not None:
            exp, mx = self._window()
        response = replace(response, tsih=tsih, statsn=self._next_statsn(), expcmdsn=exp,
                           maxcmdsn=mx, data_length=len(step.data))
        self._send(response, step.data or None)
        if step.failed:
            self.log.info("login from %s refused: %s", self.peer, step.status.name)
            self.state.events.login_failures += 1
            self.close_after_send = True
        elif step.complete:
            self._enter_full_feature()

    def _login_reject(self, req: P.LoginRequest, status: LoginStatus) -> None:
        self.log.info("login from %s refused: %s", self.peer, status.name)
        self.state.events.login_failures += 1
        self._send(P.LoginResponse(itt=req.itt, isid=req.isid, tsih=0,
                                   statsn=self._next_statsn(), expcmdsn=req.cmdsn,
                                   maxcmdsn=req.cmdsn, status_class=status.status_class,
                                   status_detail=status.status_detail, csg=req.csg,
                                   nsg=req.nsg))
        self.close_after_send = True

    def _enter_full_feature(self) -> None:
        params = self._params
        self.phase = Phase.FULL_FEATURE
        self._rules = FULL_FEATURE_RULES
        self.receiver.max_data_length = params.max_recv_data_segment_length
        self.receiver.screen_every_header = False  # only headers with an AHS need a look
        self.transfers.max_burst_length = params.max_burst_length
        self.transfers.max_outstanding_r2t = params.max_outstanding_r2t
        self.receiver.header_digest = params.header_digest
        self.receiver.data_digest = params.data_digest
        self.receiver.opening = OPENING_READS
        if (self.fast_path and self.session is not None and not self.session.discovery
                and not params.header_digest and not params.data_digest):
            self.receiver.fast = self._fast_command
        self.state.events.logins += 1
        self.log.info("%s logged in to %s (%s), TSIH %d", params.initiator_name,
                      params.target_name or "discovery", self.peer,
                      self.session.tsih if self.session else 0)

    @property
    def _params(self) -> SessionParams:
        assert self.params is not None
        return self.params



def _extended_cdb(ahs: bytes) -> bytes:
    """Extended CDB bytes from AHS type 1 (RFC 7143 §11.3.5)."""
    out = b""
    pos = 0
    while pos + 4 <= len(ahs):
        length = int.from_bytes(ahs[pos:pos + 2], "big")
        kind = ahs[pos + 2]
        if kind == 1:
            out += ahs[pos + 4:pos + 3 + length]
        pos += 3 + length
        pos = (pos + 3) & ~3
    return out


def _cmdsn(pdu: P.Pdu) -> int:
    return int(getattr(pdu, "cmdsn", 0))


_C = TargetConnection
OPCODES: dict[int, OpcodeRule] = {
    Opcode.LOGIN_REQUEST: OpcodeRule(LOGIN_ONLY, _C._on_login),
    Opcode.SCSI_COMMAND: OpcodeRule(FULL_FEATURE_ONLY, _C._on_command, Ordering.AT_HEADER,
                                    route=_C._route_command, ahs=True),
    Opcode.DATA_OUT: OpcodeRule(FULL_FEATURE_ONLY, _C._on_data_out,
                                route=_C._route_data_out),
    Opcode.NOP_OUT: OpcodeRule(FULL_FEATURE_ONLY, _C._nop, Ordering.AT_END),
    Opcode.TEXT_REQUEST: OpcodeRule(FULL_FEATURE_ONLY, _C._text, Ordering.AT_END),
    Opcode.TASK_MGMT_REQUEST: OpcodeRule(FULL_FEATURE_ONLY, _C._tmf, Ordering.AT_END),
    Opcode.LOGOUT_REQUEST: OpcodeRule(FULL_FEATURE_ONLY, _C._logout, Ordering.AT_END),
    # ErrorRecoveryLevel 0: a SNACK is a protocol error (RFC 7143 §11.16).
    Opcode.SNACK_REQUEST: OpcodeRule(NEVER, _C._on_data_out),
}
"""Every opcode the target accepts from an initiator (RFC 7143 §11), as data. Target
opcodes (0x20 and up) have no rule: Reject 0x04; unknown ones: Reject 0x05 (the codec)."""
RULES: dict[type[P.Pdu], OpcodeRule] = {
    cls: OPCODES[cls.OPCODE] for cls in P.PDU_CLASSES if cls.OPCODE in OPCODES}
"""The same table keyed by PDU class (a decoded PDU finds its rule without hashing an
enum member)."""
LOGIN_RULES = {cls: rule for cls, rule in RULES.items() if Phase.LOGIN in rule.phases}
FULL_FEATURE_RULES = {cls: rule for cls, rule in RULES.items()
                      if Phase.FULL_FEATURE in rule.phases}
"""The rules legal in each phase: the engine looks a PDU up in its phase's table alone."""
