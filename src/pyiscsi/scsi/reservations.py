"""Reservations of a logical unit: SPC-2 RESERVE/RELEASE (6) and SPC-4 persistent
reservations (§5.13), their access rules as data, and the command handlers.

:class:`Reservations` is the per-LU state: registrations keyed by I_T nexus
(:class:`~pyiscsi.scsi.task.Nexus`), the persistent reservation (holder and type), the
PRgeneration, APTPL and the SPC-2 reservation holder. :meth:`Reservations.check` runs
before every command (:func:`pyiscsi.scsi.dispatch.execute`) and raises RESERVATION
CONFLICT (status 18h, no sense data) where SPC-4 §5.13.1 table 45 / SBC-3 §4.17 say so.

With APTPL set and a store that has a ``path``, the state is saved as JSON next to the
backing file (``<path>.pr.json``, replaced atomically) and loaded when the LU is built
(SPC-4 §5.13.4).
"""

from __future__ import annotations

import json
import logging
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..proto.wire import ScsiStatus
from .cdb import ALLOCATION_LENGTH_10, Op
from .sense import Asc, ScsiError, SenseKey
from .task import DataOutPlan, Nexus, ScsiRequest, ScsiResult

if TYPE_CHECKING:
    from .lun import LogicalUnit
    from .unit_attention import ResetKind

log = logging.getLogger("pyiscsi.scsi")


class PrType(IntEnum):
    """Persistent reservation types (SPC-4 §6.16.3 table 212)."""

    WRITE_EXCLUSIVE = 1
    EXCLUSIVE_ACCESS = 3
    WRITE_EXCLUSIVE_REGISTRANTS_ONLY = 5
    EXCLUSIVE_ACCESS_REGISTRANTS_ONLY = 6
    WRITE_EXCLUSIVE_ALL_REGISTRANTS = 7
    EXCLUSIVE_ACCESS_ALL_REGISTRANTS = 8


ALL_REGISTRANTS = frozenset({PrType.WRITE_EXCLUSIVE_ALL_REGISTRANTS,
                             PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS})
"""Types whose every registrant is a reservation holder (SPC-4 §5.13.10)."""

LU_SCOPE = 0


class PrinAction(IntEnum):
    """PERSISTENT RESERVE IN service actions (SPC-4 §6.15.1 table 198)."""

    READ_KEYS = 0x00
    READ_RESERVATION = 0x01
    REPORT_CAPABILITIES = 0x02
    READ_FULL_STATUS = 0x03


class ProutAction(IntEnum):
    """PERSISTENT RESERVE OUT service actions (SPC-4 §6.16.2 table 209)."""

    REGISTER = 0x00
    RESERVE = 0x01
    RELEASE = 0x02
    CLEAR = 0x03
    PREEMPT = 0x04
    PREEMPT_AND_ABORT = 0x05
    REGISTER_AND_IGNORE_EXISTING_KEY = 0x06


# --- access rules (SPC-4 §5.13.1 table 45, SBC-3 §4.17.1 table 13) ----------------------


class Access(Enum):
    """How a command behaves in the presence of a persistent reservation."""

    ALLOWED = "allowed"
    """Allowed from every I_T nexus under every type."""
    READ = "read"
    """Reads medium: conflicts under Exclusive Access for non-holders."""
    WRITE = "write"
    """Changes state (or is unknown): conflicts for every non-holder of WE/EA."""


_WE, _EA = PrType.WRITE_EXCLUSIVE, PrType.EXCLUSIVE_ACCESS
_WERO, _EARO = PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY, PrType.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY
_WEAR, _EAAR = PrType.WRITE_EXCLUSIVE_ALL_REGISTRANTS, PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS

ACCESS: dict[tuple[Access, PrType], tuple[bool, bool]] = {
    # (class, type): (allowed from a registered non-holder, allowed from a non-registrant)
    (Access.ALLOWED, _WE): (True, True),
    (Access.ALLOWED, _EA): (True, True),
    (Access.ALLOWED, _WERO): (True, True),
    (Access.ALLOWED, _EARO): (True, True),
    (Access.ALLOWED, _WEAR): (True, True),
    (Access.ALLOWED, _EAAR): (True, True),
    (Access.READ, _WE): (True, True),
    (Access.READ, _EA): (False, False),
    (Access.READ, _WERO): (True, True),
    (Access.READ, _EARO): (True, False),
    (Access.READ, _WEAR): (True, True),
    (Access.READ, _EAAR): (True, False),
    (Access.WRITE, _WE): (False, False),
    (Access.WRITE, _EA): (False, False),
    (Access.WRITE, _WERO): (True, False),
    (Access.WRITE, _EARO): (True, False),
    (Access.WRITE, _WEAR): (True, False),
    (Access.WRITE, _EAAR): (True, False),
}
"""SPC-4 table 45 / SBC-3 table 13: who a non-holder may be and still run a command."""

SERVICE_ACTION_OPCODES = frozenset({0x5E, 0x5F, 0x9E, 0xA3, 0xAB})
"""Opcodes whose class depends on the SERVICE ACTION (CDB byte 1, bits 4-0)."""

COMMAND_ACCESS: dict[tuple[int, int | None], Access] = {
    (0x00, None): Access.ALLOWED,  # TEST UNIT READY
    (0x03, None): Access.ALLOWED,  # REQUEST SENSE
    (0x08, None): Access.READ,  # READ (6)
    (0x12, None): Access.ALLOWED,  # INQUIRY
    (0x1E, None): Access.ALLOWED,  # PREVENT ALLOW MEDIUM REMOVAL (PREVENT=0 only here)
    (0x25, None): Access.ALLOWED,  # READ CAPACITY (10)
    (0x28, None): Access.READ,  # READ (10)
    (0x2F, None): Access.READ,  # VERIFY (10)
    (0x34, None): Access.READ,  # PRE-FETCH (10)
    (0x37, None): Access.READ,  # READ DEFECT DATA (10)
    (0x3E, None): Access.READ,  # READ LONG (10)
    (0x4D, None): Access.ALLOWED,  # LOG SENSE
    (0x5E, None): Access.ALLOWED,  # PERSISTENT RESERVE IN
    (0x5F, None): Access.ALLOWED,  # PERSISTENT RESERVE OUT (checks keys itself)
    (0x88, None): Access.READ,  # READ (16)
    (0x8F, None): Access.READ,  # VERIFY (16)
    (0x90, None): Access.READ,  # PRE-FETCH (16)
    (0x9E, 0x10): Access.ALLOWED,  # READ CAPACITY (16)
    (0x9E, 0x11): Access.READ,  # READ LONG (16)
    (0x9E, 0x12): Access.READ,  # GET LBA STATUS
    (0x9E, 0x13): Access.ALLOWED,  # REPORT REFERRALS
    (0xA0, None): Access.ALLOWED,  # REPORT LUNS
    (0xA3, 0x05): Access.ALLOWED,  # REPORT IDENTIFYING INFORMATION
    (0xA3, 0x0A): Access.ALLOWED,  # REPORT TARGET PORT GROUPS
    (0xA3, 0x0B): Access.ALLOWED,  # REPORT ALIASES
    (0xA3, 0x0C): Access.ALLOWED,  # REPORT SUPPORTED OPERATION CODES
    (0xA3, 0x0D): Access.ALLOWED,  # REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS
    (0xA3, 0x0E): Access.ALLOWED,  # REPORT PRIORITY
    (0xA3, 0x0F): Access.ALLOWED,  # REPORT TIMESTAMP
    (0xA8, None): Access.READ,  # READ (12)
    (0xAB, 0x01): Access.ALLOWED,  # READ MEDIA SERIAL NUMBER
    (0xAF, None): Access.READ,  # VERIFY (12)
    (0xB7, None): Access.READ,  # READ DEFECT DATA (12)
}
"""(opcode, service action or None) -> access class; anything else is Access.WRITE (MODE
SENSE/SELECT, RESERVE/RELEASE, writes, UNMAP, SYNCHRONIZE CACHE, buffers, diagnostics...)."""

SPC2_ALLOWED = frozenset({
    0x03,  # REQUEST SENSE
    0x12,  # INQUIRY
    0x17,  # RELEASE (6): a no-op from a non-holder
    0x57,  # RELEASE (10)
    0xA0,  # REPORT LUNS
})
"""Opcodes another I_T nexus may run while an SPC-2 reservation is held (SPC-2 §5.5.1)."""


def command_access(cdb: bytes) -> Access:
    """The access class of a CDB (table lookup, service action aware)."""
    op = cdb[0]
    if op in SERVICE_ACTION_OPCODES:
        found = COMMAND_ACCESS.get((op, cdb[1] & 0x1F))
        if found is not None:
            return found
    return COMMAND_ACCESS.get((op, None), Access.WRITE)


def reservation_conflict() -> ScsiError:
    """RESERVATION CONFLICT status, no sense data (SAM-5 §5.3.1)."""
    return ScsiError(SenseKey.NO_SENSE, Asc.NO_ADDITIONAL_SENSE,
                     status=ScsiStatus.RESERVATION_CONFLICT)


# --- state --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reservation:
    """A persistent reservation: who established it, its type (scope is always LU)."""

    holder: Nexus
    type: PrType


@dataclass(frozen=True, slots=True)
class ProutParameters:
    """PERSISTENT RESERVE OUT CDB fields and basic parameter list (SPC-4 §6.16.3)."""

    scope: int
    type: int
    key: int
    service_action_key: int
    spec_i_pt: bool
    all_tg_pt: bool
    aptpl: bool

    @classmethod
    def parse(cls, cdb: bytes, data: bytes) -> ProutParameters:
        key, sa_key, _obsolete, flags = _PROUT_PARAMETERS.unpack_from(data)
        return cls(scope=cdb[2] >> 4, type=cdb[2] & 0x0F, key=key,
                   service_action_key=sa_key, spec_i_pt=bool(flags & 0x08),
                   all_tg_pt=bool(flags & 0x04), aptpl=bool(flags & 0x01))


_PROUT_PARAMETERS = struct.Struct(">QQIB3x")
_FULL_STATUS = struct.Struct(">Q4xBB4xHI")
"""READ FULL STATUS descriptor header (SPC-4 §6.15.5 table 204), TransportID follows."""
RELATIVE_TARGET_PORT = 1
"""Our one target port (as the Device Identification VPD page reports it)."""
PROUT_PARAMETER_LIST_LENGTH = 24
"""Basic parameter list length (SPEC_I_PT=0, SPC-4 §6.16.3)."""



class Reservations:
    """Reservation state of one logical unit (SPC-4 §5.13, SPC-2 §5.5)."""

    __slots__ = ("aptpl", "generation", "path", "registrations", "reservation", "spc2_holder")

    def __init__(self, path: Path | None = None) -> None:
        self.registrations: dict[Nexus, int] = {}
        """I_T nexus -> reservation key, in registration order."""
        self.reservation: Reservation | None = None
        self.generation = 0
        """PRgeneration (SPC-4 §6.15.2): bumped by REGISTER, CLEAR, PREEMPT."""
        self.aptpl = False
        self.spc2_holder: Nexus | None = None
        """Holder of the SPC-2 RESERVE (6) reservation, if any."""
        self.path = path
        """Where APTPL state is saved (None: memory only)."""
        if path is not None and path.exists():
            self.load()

    # -- queries --

    def is_holder(self, nexus: Nexus) -> bool:
        """Is ``nexus`` a persistent reservation holder (SPC-4 §5.13.10)?"""
        r = self.reservation
        if r is None:
            return False
        if r.type in ALL_REGISTRANTS:
            return nexus in self.registrations
        return r.holder == nexus

    def check(self, nexus: Nexus, cdb: bytes) -> None:
        """Raise RESERVATION CONFLICT if ``cdb`` from ``nexus`` conflicts with a reservation."""
        holder = self.spc2_holder
        if holder is not None and holder != nexus and cdb[0] not in SPC2_ALLOWED:
            raise reservation_conflict()
        r = self.reservation
        if r is None or self.is_holder(nexus):
            return
        registrant_ok, other_ok = ACCESS[(command_access(cdb), r.type)]
        if not (registrant_ok if nexus in self.registrations else other_ok):
            raise reservation_conflict()

    # -- SPC-2 RESERVE / RELEASE (6) --

    def reserve6(self, nexus: Nexus) -> None:
        """RESERVE (6) (SPC-2 §7.21): conflicts with registrations (SPC-4 §5.13.3)."""
        if self.registrations or (self.spc2_holder not in (None, nexus)):
            raise reservation_conflict()
        self.spc2_holder = nexus

    def release6(self, nexus: Nexus) -> None:
        """RELEASE (6) (SPC-2 §7.17): releases only the caller's own reservation."""
        if self.registrations:
            raise reservation_conflict()
        if self.spc2_holder == nexus:
            self.spc2_holder = None

    def nexus_lost(self, nexus: Nexus) -> None:
        """The I_T nexus ended: its SPC-2 reservation goes; persistent state stays."""
        if self.spc2_holder == nexus:
            self.spc2_holder = None

    def reset(self, kind: ResetKind) -> None:
        """LU reset / target warm or cold reset: SPC-2 reservations go, PRs stay (SAM-5
        §6.3.2, SPC-4 §5.13.4)."""
        self.spc2_holder = None

    # -- PERSISTENT RESERVE OUT (SPC-4 §5.13.5 - §5.13.11) --

    def prout(self, action: ProutAction, nexus: Nexus, p: ProutParameters) -> None:
        """Run one PERSISTENT RESERVE OUT service action, then save APTPL state."""
        if p.spec_i_pt:
            raise ScsiError.invalid_field_in_parameter_list(20, 3)  # SIP_C=0
        if action not in _REGISTERING:
            registered = self.registrations.get(nexus)
            if registered is None or registered != p.key:
                raise reservation_conflict()
        _PROUT[action](self, nexus, p)
        self.save()

    def _register(self, nexus: Nexus, p: ProutParameters) -> None:
        """REGISTER (SPC-4 §5.13.7 table 48): the RESERVATION KEY must match."""
        if self.registrations.get(nexus, 0) != p.key:
            raise reservation_conflict()
        self._register_and_ignore(nexus, p)

    def _register_and_ignore(self, nexus: Nexus, p: ProutParameters) -> None:
        """REGISTER AND IGNORE EXISTING KEY (SPC-4 §5.13.7): set, change or drop the key."""
        new = p.service_action_key
        if nexus not in self.registrations and not new:
            return  # unregistered and nothing to register: GOOD, no change
        if new:
            self.registrations[nexus] = new
        else:
            self._unregister(nexus)
        self.aptpl = p.aptpl
        self.generation += 1

    def _unregister(self, nexus: Nexus) -> None:
        """Drop a registration; a reservation it held goes with it (SPC-4 §5.13.11.2.1)."""
        del self.registrations[nexus]
        r = self.reservation
        if r is None:
            return
        if r.type in ALL_REGISTRANTS:
            if not self.registrations:
                self.reservation = None
        elif r.holder == nexus:
            self.reservation = None

    def _reserve(self, nexus: Nexus, p: ProutParameters) -> None:
        """RESERVE (SPC-4 §5.13.9): a holder may only repeat its own type."""
        kind = _checked_type(p)
        r = self.reservation
        if r is None:
            self.reservation = Reservation(nexus, kind)
        elif not self.is_holder(nexus) or r.type != kind:
            raise reservation_conflict()

    def _release(self, nexus: Nexus, p: ProutParameters) -> None:
        """RELEASE (SPC-4 §5.13.11.2.2): a no-op unless the caller holds it."""
        r = self.reservation
        if r is None or not self.is_holder(nexus):
            return
        if p.scope != LU_SCOPE or p.type != r.type:
            raise ScsiError.illegal(Asc.INVALID_RELEASE_OF_PERSISTENT_RESERVATION)
        self.reservation = None

    def _clear(self, nexus: Nexus, p: ProutParameters) -> None:
        """CLEAR (SPC-4 §5.13.11.2.6): every registration and the reservation go."""
        self.registrations.clear()
        self.reservation = None
        self.generation += 1

    def _preempt(self, nexus: Nexus, p: ProutParameters) -> None:
        """PREEMPT / PREEMPT AND ABORT (SPC-4 §5.13.11.4; aborting tasks is a no-op here)."""
        victim = p.service_action_key
        r = self.reservation
        if r is not None and r.type in ALL_REGISTRANTS and not victim:
            kind = _checked_type(p)  # preempt every other registrant, take a new reservation
            for other in [n for n in self.registrations if n != nexus]:
                del self.registrations[other]
            self.reservation = Reservation(nexus, kind)
        elif r is not None and r.type not in ALL_REGISTRANTS and \
                self.registrations.get(r.holder) == victim:
            kind = _checked_type(p)  # preempt the holder: its key's registrations go
            for other in [n for n, k in self.registrations.items()
                          if k == victim and n != nexus]:
                del self.registrations[other]
            self.reservation = Reservation(nexus, kind)
        else:
            if not victim:
                raise ScsiError.invalid_field_in_parameter_list(8)
            doomed = [n for n, k in self.registrations.items() if k == victim]
            if not doomed:
                raise reservation_conflict()
            for other in doomed:
                self._unregister(other)
        self.generation += 1

    # -- PERSISTENT RESERVE IN (SPC-4 §6.15) --

    def read_keys(self) -> bytes:
        """READ KEYS parameter data (SPC-4 §6.15.2)."""
        keys = b"".join(k.to_bytes(8, "big") for k in self.registrations.values())
        return struct.pack(">II", self.generation, len(keys)) + keys

    def read_reservation(self) -> bytes:
        """READ RESERVATION parameter data (SPC-4 §6.15.3); key 0 for all-registrants."""
        r = self.reservation
        if r is None:
            return struct.pack(">II", self.generation, 0)
        key = 0 if r.type in ALL_REGISTRANTS else self.registrations.get(r.holder, 0)
        return struct.pack(">IIQ4xxBxx", self.generation, 16, key, LU_SCOPE << 4 | r.type)

    def report_capabilities(self) -> bytes:
        """REPORT CAPABILITIES parameter data (SPC-4 §6.15.4): CRH, ATP_C, PTPL_C, TMV."""
        mask = sum(_TYPE_MASK[t] for t in PrType)
        return struct.pack(">HBBHxx", 8, 0x10 | 0x04 | 0x01, 0x80 | int(self.aptpl), mask)

    def read_full_status(self) -> bytes:
        """READ FULL STATUS parameter data (SPC-4 §6.15.5): one descriptor a registration."""
        r = self.reservation
        descriptors = b""
        for nexus, key in self.registrations.items():
            holder = r is not None and self.is_holder(nexus)
            scope_type = LU_SCOPE << 4 | r.type if r is not None and holder else 0
            tid = transport_id(nexus)
            descriptors += _FULL_STATUS.pack(key, int(holder), scope_type,
                                             RELATIVE_TARGET_PORT, len(tid)) + tid
        return struct.pack(">II", self.generation, len(descriptors)) + descriptors

    # -- APTPL persistence (SPC-4 §5.13.4) --

    def save(self) -> None:
        """Write the state to ``path`` (atomically) while APTPL is set; else remove it."""
        if self.path is None:
            return
        if not self.aptpl:
            self.path.unlink(missing_ok=True)
            return
        r = self.reservation
        state: dict[str, Any] = {
            "version": 1,
            "generation": self.generation,
            "registrations": [{**_nexus_json(n), "key": k}
                              for n, k in self.registrations.items()],
            "reservation": None if r is None else {"holder": _nexus_json(r.holder),
                                                   "type": int(r.type)},
        }
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(state, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def load(self) -> None:
        """Read state saved by :meth:`save`; an unreadable file is logged and ignored."""
        assert self.path is not None
        try:
            state = json.loads(self.path.read_text(encoding="utf-8"))
            registrations = {_nexus_from(e): int(e["key"]) for e in state["registrations"]}
            saved = state["reservation"]
            reservation = None if saved is None else Reservation(
                _nexus_from(saved["holder"]), PrType(saved["type"]))
            generation = int(state["generation"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring persistent reservation state %s: %s", self.path, exc)
            return
        self.registrations, self.reservation = registrations, reservation
        self.generation, self.aptpl = generation, True


_REGISTERING = frozenset({ProutAction.REGISTER, ProutAction.REGISTER_AND_IGNORE_EXISTING_KEY})

_PROUT: dict[ProutAction, Callable[[Reservations, Nexus, ProutParameters], None]] = {
    ProutAction.REGISTER: Reservations._register,
    ProutAction.RESERVE: Reservations._reserve,
    ProutAction.RELEASE: Reservations._release,
    ProutAction.CLEAR: Reservations._clear,
    ProutAction.PREEMPT: Reservations._preempt,
    ProutAction.PREEMPT_AND_ABORT: Reservations._preempt,
    ProutAction.REGISTER_AND_IGNORE_EXISTING_KEY: Reservations._register_and_ignore,
}
"""Service action -> what it does to the state (REGISTER AND MOVE is not supported)."""

_TYPE_MASK: dict[PrType, int] = {
    PrType.WRITE_EXCLUSIVE_ALL_REGISTRANTS: 0x8000,
    PrType.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY: 0x4000,
    PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY: 0x2000,
    PrType.EXCLUSIVE_ACCESS: 0x0800,
    PrType.WRITE_EXCLUSIVE: 0x0200,
    PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS: 0x0001,
}
"""PERSISTENT RESERVATION TYPE MASK bits (SPC-4 §6.15.4 table 206)."""


def _checked_type(p: ProutParameters) -> PrType:
    """SCOPE must be LU, TYPE one of table 212, else INVALID FIELD IN CDB."""
    if p.scope != LU_SCOPE:
        raise ScsiError.invalid_field_in_cdb(2, 7)
    try:
        return PrType(p.type)
    except ValueError:
        raise ScsiError.invalid_field_in_cdb(2, 3) from None


def transport_id(nexus: Nexus) -> bytes:
    """iSCSI TransportID, initiator port form 01b (SPC-4 §7.6.4.6), padded to 4 bytes."""
    name = nexus.transport_id.encode() + b"\0"
    name = name.ljust(-(-len(name) // 4) * 4, b"\0")
    return bytes((0x40 | 0x05, 0)) + len(name).to_bytes(2, "big") + name


def _nexus_json(nexus: Nexus) -> dict[str, Any]:
    return {"initiator_name": nexus.initiator_name, "isid": nexus.isid,
            "target_portal_group": nexus.target_portal_group}


def _nexus_from(entry: dict[str, Any]) -> Nexus:
    return Nexus(str(entry["initiator_name"]), int(entry["isid"]),
                 int(entry["target_portal_group"]))


# --- handlers (``(lu, request) -> ScsiResult | DataOutPlan``) ------------------------------


def reserve_6(lu: LogicalUnit, request: ScsiRequest) -> ScsiResult:
    """RESERVE (6) (SPC-2 §7.21): whole-LU reservation; extents/third party unsupported."""
    if request.cdb[1]:
        raise ScsiError.invalid_field_in_cdb(1)
    lu.reservations.reserve6(request.nexus)
    return ScsiResult()


def release_6(lu: LogicalUnit, request: ScsiRequest) -> ScsiResult:
    """RELEASE (6) (SPC-2 §7.17)."""
    if request.cdb[1]:
        raise ScsiError.invalid_field_in_cdb(1)
    lu.reservations.release6(request.nexus)
    return ScsiResult()


PrinData = Callable[[Reservations], bytes]

PRIN: dict[PrinAction, PrinData] = {
    PrinAction.READ_KEYS: Reservations.read_keys,
    PrinAction.READ_RESERVATION: Reservations.read_reservation,
    PrinAction.REPORT_CAPABILITIES: Reservations.report_capabilities,
    PrinAction.READ_FULL_STATUS: Reservations.read_full_status,
}
"""PERSISTENT RESERVE IN service action -> parameter data builder."""


def prin_handler(action: PrinAction) -> Callable[[LogicalUnit, ScsiRequest], ScsiResult]:
    """PERSISTENT RESERVE IN (SPC-4 §6.15): parameter data cut to the ALLOCATION LENGTH."""
    build = PRIN[action]

    def persistent_reserve_in(lu: LogicalUnit, request: ScsiRequest) -> ScsiResult:
        (allocation_length,) = ALLOCATION_LENGTH_10.unpack_from(request.cdb)
        return ScsiResult(data=build(lu.reservations)[:allocation_length])

    return persistent_reserve_in


_PROUT_LENGTH = struct.Struct(">5xI")
"""PERSISTENT RESERVE OUT PARAMETER LIST LENGTH, bytes 5-8 (SPC-4 §6.16.1)."""


def prout_handler(
    action: ProutAction,
) -> Callable[[LogicalUnit, ScsiRequest], ScsiResult | DataOutPlan]:
    """PERSISTENT RESERVE OUT (SPC-4 §6.16): receive the 24-byte list, then run ``action``."""

    def persistent_reserve_out(lu: LogicalUnit, request: ScsiRequest) -> DataOutPlan:
        cdb = request.cdb
        (length,) = _PROUT_LENGTH.unpack_from(cdb)
        if length != PROUT_PARAMETER_LIST_LENGTH:
            raise ScsiError.illegal(Asc.PARAMETER_LIST_LENGTH_ERROR)
        buffer = memoryview(bytearray(length))

        def complete(received: int) -> ScsiResult:
            if received < length:
                raise ScsiError.illegal(Asc.PARAMETER_LIST_LENGTH_ERROR)
            parameters = ProutParameters.parse(cdb, bytes(buffer))
            lu.reservations.prout(action, request.nexus, parameters)
            return ScsiResult()

        return DataOutPlan(buffer=buffer, length=length, complete=complete, staged=True)

    return persistent_reserve_out


RESERVE_6_USAGE = bytes.fromhex(f"{Op.RESERVE_6:02x}0000000000")
RELEASE_6_USAGE = bytes.fromhex(f"{Op.RELEASE_6:02x}0000000000")


def prin_usage(action: PrinAction) -> bytes:
    """CDB usage data of a PERSISTENT RESERVE IN service action (SPC-4 §6.35.3)."""
    return bytes.fromhex(f"5e{action:02x}0000000000ffff00")


def prout_usage(action: ProutAction) -> bytes:
    """CDB usage data of a PERSISTENT RESERVE OUT service action (SPC-4 §6.35.3)."""
    return bytes.fromhex(f"5f{action:02x}ff0000ffffffff00")

