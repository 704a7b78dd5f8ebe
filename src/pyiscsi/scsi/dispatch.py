"""The opcode table and :func:`execute`, the one entry point of the SCSI emulation.

``COMMANDS`` maps an operation code to its handler and CDB usage data (the bits we look
at, reported by REPORT SUPPORTED OPERATION CODES, SPC-4 §6.35.3); opcodes with service
actions map to a nested table keyed by service action. Errors raised by handlers and
stores become CHECK CONDITION with fixed-format sense here, including errors raised later
by a :class:`DataOutPlan`'s ``complete``.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass

from ..backstore.base import StoreError
from ..proto.wire import ScsiStatus
from . import reservations, sanitize, sbc, sbc_extra, spc, xcopy
from .cdb import LBA_COUNT, Op, ServiceAction, cdb_length, control_byte
from .lun import LogicalUnit
from .sbc import Handler
from .sense import Asc, ScsiError, SenseKey, fixed_sense, guarded, store_error_result
from .task import DataOutPlan, Outcome, ScsiRequest, ScsiResult


@dataclass(frozen=True, slots=True)
class Command:
    """One supported command: its handler and its CDB usage data."""

    handler: Handler
    usage: bytes


def _usage(text: str) -> bytes:
    return bytes.fromhex(text)


def _rsoc(lu: LogicalUnit, request: ScsiRequest) -> ScsiResult:
    return spc.report_supported_operation_codes(lu, request,
                                                SHARED_USAGE if lu.shared else USAGE)


SERVICE_ACTIONS: dict[int, dict[int, Command]] = {
    Op.SERVICE_ACTION_IN_16: {
        ServiceAction.READ_CAPACITY_16: Command(
            sbc.read_capacity_16, _usage("9e10 0000000000000000 ffffffff 0000")
        ),
        ServiceAction.GET_LBA_STATUS: Command(
            sbc.get_lba_status, _usage("9e12 ffffffffffffffff ffffffff 0000")
        ),
    },
    Op.MAINTENANCE_IN: {
        ServiceAction.REPORT_SUPPORTED_OPERATION_CODES: Command(
            _rsoc, _usage("a30c 87 ffffff ffffffff 0000")
        ),
        ServiceAction.REPORT_SUPPORTED_TASK_MANAGEMENT_FUNCTIONS: Command(
            spc.report_supported_tmfs, _usage("a30d 80 000000 ffffffff 0000")
        ),
    },
    Op.EXTENDED_COPY: {
        xcopy.LID1: Command(xcopy.extended_copy, _usage("83 00 0000000000000000 ffffffff 00 00")),
    },
    Op.RECEIVE_COPY_RESULTS: {
        xcopy.COPY_STATUS: Command(
            xcopy.copy_status, _usage("84 00 ff 00000000000000 ffffffff 00 00")
        ),
        xcopy.OPERATING_PARAMETERS: Command(
            xcopy.operating_parameters, _usage("84 03 00 00000000000000 ffffffff 00 00")
        ),
    },
    Op.SANITIZE: {
        sa: Command(handler, sanitize.usage(sa)) for sa, handler in sanitize.HANDLERS.items()
    },
    Op.PERSISTENT_RESERVE_IN: {
        sa: Command(reservations.prin_handler(sa), reservations.prin_usage(sa))
        for sa in reservations.PrinAction
    },
    Op.PERSISTENT_RESERVE_OUT: {
        sa: Command(reservations.prout_handler(sa), reservations.prout_usage(sa))
        for sa in reservations.ProutAction
    },
}
"""Opcode -> service action (CDB byte 1, bits 4-0) -> command."""

_RW10 = "fa ffffffff 00 ffff 00"
_RW12 = "fa ffffffff ffffffff 00 00"
_RW16 = "fa ffffffffffffffff ffffffff 00 00"

COMMANDS: dict[int, Command] = {
    Op.TEST_UNIT_READY: Command(spc.test_unit_ready, _usage("00 0000000000")),
    Op.REQUEST_SENSE: Command(spc.request_sense, _usage("03 01 0000 ff 00")),
    Op.READ_6: Command(sbc.read_handler(LBA_COUNT[Op.READ_6], False), _usage("08 1fffffff00")),
    Op.WRITE_6: Command(sbc.write_handler(LBA_COUNT[Op.WRITE_6], False), _usage("0a 1fffffff00")),
    Op.INQUIRY: Command(spc.inquiry, _usage("12 01 ff ffff 00")),
    Op.MODE_SELECT_6: Command(spc.mode_select_6, _usage("15 11 0000 ff 00")),
    Op.RESERVE_6: Command(reservations.reserve_6, reservations.RESERVE_6_USAGE),
    Op.RELEASE_6: Command(reservations.release_6, reservations.RELEASE_6_USAGE),
    Op.MODE_SENSE_6: Command(spc.mode_sense_6, _usage("1a 08 ff ff ff 00")),
    Op.START_STOP_UNIT: Command(spc.start_stop_unit, _usage("1b 01 00 0f f7 00")),
    Op.PREVENT_ALLOW_MEDIUM_REMOVAL: Command(
        spc.prevent_allow_medium_removal, _usage("1e 000000 03 00")
    ),
    Op.READ_CAPACITY_10: Command(sbc.read_capacity_10, _usage("25 00 ffffffff 0000 01 00")),
    Op.READ_10: Command(sbc.read_handler(LBA_COUNT[Op.READ_10], True), _usage("28" + _RW10)),
    Op.WRITE_10: Command(sbc.write_handler(LBA_COUNT[Op.WRITE_10], True), _usage("2a" + _RW10)),
    Op.WRITE_AND_VERIFY_10: Command(
        sbc_extra.write_and_verify_handler(LBA_COUNT[Op.WRITE_AND_VERIFY_10]),
        _usage("2e f6 ffffffff 00 ffff 00"),
    ),
    Op.VERIFY_10: Command(
        sbc.verify_handler(LBA_COUNT[Op.VERIFY_10]), _usage("2f f6 ffffffff 00 ffff 00")
    ),
    Op.PRE_FETCH_10: Command(
        sbc.pre_fetch_handler(LBA_COUNT[Op.PRE_FETCH_10]), _usage("34 02 ffffffff 00 ffff 00")
    ),
    Op.SYNCHRONIZE_CACHE_10: Command(
        sbc.synchronize_cache_handler(LBA_COUNT[Op.SYNCHRONIZE_CACHE_10]),
        _usage("35 06 ffffffff 00 ffff 00"),
    ),
    Op.READ_DEFECT_DATA_10: Command(
        sbc_extra.read_defect_data_10, _usage("37 00 1f 00000000 ffff 00")
    ),
    Op.WRITE_SAME_10: Command(
        sbc.write_same_handler(LBA_COUNT[Op.WRITE_SAME_10], ndob=False),
        _usage("41 fe ffffffff 00 ffff 00"),
    ),
    Op.UNMAP: Command(sbc.unmap, _usage("42 01 00000000 00 ffff 00")),
    Op.MODE_SELECT_10: Command(spc.mode_select_10, _usage("55 11 0000000000 ffff 00")),
    Op.MODE_SENSE_10: Command(spc.mode_sense_10, _usage("5a 18 ff ff 000000 ffff 00")),
    Op.READ_16: Command(sbc.read_handler(LBA_COUNT[Op.READ_16], True), _usage("88" + _RW16)),
    Op.COMPARE_AND_WRITE: Command(
        sbc.compare_and_write, _usage("89 fa ffffffffffffffff 000000 ff 00 00")
    ),
    Op.WRITE_16: Command(sbc.write_handler(LBA_COUNT[Op.WRITE_16], True), _usage("8a" + _RW16)),
    Op.ORWRITE_16: Command(
        sbc_extra.orwrite_handler(LBA_COUNT[Op.ORWRITE_16]), _usage("8b" + _RW16)
    ),
    Op.WRITE_AND_VERIFY_16: Command(
        sbc_extra.write_and_verify_handler(LBA_COUNT[Op.WRITE_AND_VERIFY_16]),
        _usage("8e f6 ffffffffffffffff ffffffff 00 00"),
    ),
    Op.VERIFY_16: Command(
        sbc.verify_handler(LBA_COUNT[Op.VERIFY_16]),
        _usage("8f f6 ffffffffffffffff ffffffff 00 00"),
    ),
    Op.PRE_FETCH_16: Command(
        sbc.pre_fetch_handler(LBA_COUNT[Op.PRE_FETCH_16]),
        _usage("90 02 ffffffffffffffff ffffffff 00 00"),
    ),
    Op.SYNCHRONIZE_CACHE_16: Command(
        sbc.synchronize_cache_handler(LBA_COUNT[Op.SYNCHRONIZE_CACHE_16]),
        _usage("91 06 ffffffffffffffff ffffffff 00 00"),
    ),
    Op.WRITE_SAME_16: Command(
        sbc.write_same_handler(LBA_COUNT[Op.WRITE_SAME_16], ndob=True),
        _usage("93 ff ffffffffffffffff ffffffff 00 00"),
    ),
    Op.WRITE_ATOMIC_16: Command(
        sbc_extra.write_atomic_handler(LBA_COUNT[Op.WRITE_ATOMIC_16]),
        _usage("9c f8 ffffffffffffffff 0000 ffff 00 00"),
    ),
    Op.REPORT_LUNS: Command(spc.report_luns, _usage("a0 00 ff 000000 ffffffff 00 00")),
    Op.READ_12: Command(sbc.read_handler(LBA_COUNT[Op.READ_12], True), _usage("a8" + _RW12)),
    Op.WRITE_12: Command(sbc.write_handler(LBA_COUNT[Op.WRITE_12], True), _usage("aa" + _RW12)),
    Op.WRITE_AND_VERIFY_12: Command(
        sbc_extra.write_and_verify_handler(LBA_COUNT[Op.WRITE_AND_VERIFY_12]),
        _usage("ae f6 ffffffff ffffffff 00 00"),
    ),
    Op.VERIFY_12: Command(
        sbc.verify_handler(LBA_COUNT[Op.VERIFY_12]), _usage("af f6 ffffffff ffffffff 00 00")
    ),
    Op.READ_DEFECT_DATA_12: Command(
        sbc_extra.read_defect_data_12, _usage("b7 1f 00000000 ffffffff 00 00")
    ),
}
"""Opcode -> command, for opcodes without service actions."""

USAGE: Mapping[spc.UsageKey, bytes] = {
    **{(op, None): command.usage for op, command in COMMANDS.items()},
    **{
        (op, sa): command.usage
        for op, actions in SERVICE_ACTIONS.items()
        for sa, command in actions.items()
    },
}
"""(opcode, service action) -> CDB usage data, as REPORT SUPPORTED OPERATION CODES lists."""


def _service_action_handler(actions: Mapping[int, Command]) -> Handler:
    """Dispatch on the SERVICE ACTION field; unknown -> INVALID FIELD IN CDB (SPC-4 §4.2.5.2)."""
    handlers = {sa: command.handler for sa, command in actions.items()}

    def by_service_action(lu: LogicalUnit, request: ScsiRequest) -> Outcome:
        handler = handlers.get(request.cdb[1] & 0x1F)
        if handler is None:
            raise ScsiError.invalid_field_in_cdb(1, 4)
        return handler(lu, request)

    return by_service_action


HANDLERS: dict[int, Handler] = {
    **{op: command.handler for op, command in COMMANDS.items()},
    **{op: _service_action_handler(actions) for op, actions in SERVICE_ACTIONS.items()},
}
"""The flat table :func:`execute` indexes: opcode -> handler."""

SHARED_REFUSED: frozenset[int] = frozenset({
    Op.RESERVE_6, Op.RELEASE_6, Op.PERSISTENT_RESERVE_IN, Op.PERSISTENT_RESERVE_OUT,
})
"""Commands a shared LU (:attr:`LogicalUnit.shared`: exported by more than one gateway)
does not support: reservations live in one process, so a reservation taken through one
gateway would not fence the other, and cluster fencing would half-work in silence. They
end in ILLEGAL REQUEST / INVALID COMMAND OPERATION CODE (20h/00h, SPC-5 §4.4.2: the LU
does not support the operation code), as any opcode missing from the table, and REPORT
SUPPORTED OPERATION CODES does not list them (SUPPORT 001b when asked for one of them)."""

SHARED_HANDLERS: dict[int, Handler] = {
    op: handler for op, handler in HANDLERS.items() if op not in SHARED_REFUSED
}
"""The table :func:`execute` indexes for a shared LU."""

SHARED_USAGE: Mapping[spc.UsageKey, bytes] = {
    key: usage for key, usage in USAGE.items() if key[0] not in SHARED_REFUSED
}
"""What REPORT SUPPORTED OPERATION CODES lists for a shared LU."""

_INVALID_OPCODE = fixed_sense(
    SenseKey.ILLEGAL_REQUEST,
    Asc.INVALID_COMMAND_OPERATION_CODE.asc,
    Asc.INVALID_COMMAND_OPERATION_CODE.ascq,
)


def execute(lu: LogicalUnit, request: ScsiRequest) -> Outcome:
    """Run one command on ``lu`` (SAM-5 §5.1): a result, or where its Data-Out goes."""
    cdb = request.cdb
    handler = (SHARED_HANDLERS if lu.shared else HANDLERS).get(cdb[0])
    if handler is None:
        return ScsiResult(status=ScsiStatus.CHECK_CONDITION, sense=_INVALID_OPCODE)
    try:
        control = control_byte(cdb)
        if control & 0x05:  # NACA (ACA not supported) or LINK (obsolete)
            raise ScsiError.invalid_field_in_cdb(cdb_length(cdb[0]) - 1, 2 if control & 4 else 0)
        if lu.sanitize.active:  # NOT READY / SANITIZE IN PROGRESS... (SBC-4 §4.11)
            blocked = sanitize.gate(lu, request)
            if blocked is not None:
                return blocked
        lu.reservations.check(request.nexus, cdb)  # RESERVATION CONFLICT (SPC-4 §5.13.1)
        result = handler(lu, request)
    except ScsiError as err:
        return err.result()
    except StoreError as store_err:  # its own name: one name is one type when compiled
        return store_error_result(store_err)
    except (IndexError, struct.error):
        return ScsiError.invalid_field_in_cdb(0).result()  # CDB shorter than its opcode
    if type(result) is DataOutPlan and result.complete is not sbc.write_done:
        result.complete = guarded(result.complete)
    return result


_NO_LUN_INQUIRY = bytes((0x7F, 0, 0x06, 0x12, 31)) + bytes(31)


def execute_without_lu(request: ScsiRequest) -> ScsiResult:
    """A command addressed to a LUN that does not exist (SPC-4 §4.6.5.2 / §6.6.2): INQUIRY
    answers peripheral qualifier 011b, everything else LOGICAL UNIT NOT SUPPORTED."""
    cdb = request.cdb
    if cdb and cdb[0] == Op.INQUIRY and len(cdb) >= 5 and not cdb[1] & 0x01:
        return spc.trimmed(_NO_LUN_INQUIRY, int.from_bytes(cdb[3:5], "big"))
    return ScsiError.illegal(Asc.LOGICAL_UNIT_NOT_SUPPORTED).result()
