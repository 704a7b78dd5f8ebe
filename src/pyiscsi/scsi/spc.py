"""Primary commands (SPC-4): INQUIRY and VPD pages, REPORT LUNS, TEST UNIT READY,
REQUEST SENSE, MODE SENSE/SELECT, REPORT SUPPORTED OPERATION CODES / TMFs.

Every handler is ``(lu, request) -> ScsiResult | DataOutPlan`` and raises
:class:`~pyiscsi.scsi.sense.ScsiError` for CHECK CONDITION.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping

from .cdb import (
    ALLOCATION_LENGTH_10,
    ALLOCATION_LENGTH_12,
    ALLOCATION_LENGTH_INQUIRY,
)
from .lun import LogicalUnit
from .sense import (
    Asc,
    ScsiError,
    SenseKey,
    descriptor_sense,
    fixed_sense,
)
from .task import DataOutPlan, ScsiRequest, ScsiResult

PAGE = 4096
"""Granularity we advertise for transfers and unmaps (the host page size)."""

VERSION_DESCRIPTORS = (0x00A0, 0x0960, 0x0460, 0x04C0)
"""SAM-5, iSCSI, SPC-4, SBC-3 (SPC-4 §6.6.2 table 146)."""


def trimmed(data: bytes, allocation_length: int) -> ScsiResult:
    """GOOD with ``data`` cut to the ALLOCATION LENGTH (SPC-4 §4.2.5.6)."""
    return ScsiResult(data=data[:allocation_length])


def _ascii(text: str, width: int) -> bytes:
    return text.encode("ascii")[:width].ljust(width, b" ")


# --- TEST UNIT READY, REQUEST SENSE, START STOP UNIT, PREVENT ALLOW ----------------------


def test_unit_ready(lu: LogicalUnit, request: ScsiRequest) -> ScsiResult:
    """TEST UNIT READY (SPC-4 §6.47): always ready."""
    return ScsiResult()


def request_sense(lu: LogicalUnit, request: ScsiRequest) -> ScsiResult:
    """REQUEST SENSE (SPC-4 §6.39): no pending sense, so NO SENSE; DESC=1 gives 72h format."""
    cdb = request.cdb
    if cdb[1] & 0x01:
        data = descriptor_sense(SenseKey.NO_SENSE, 0, 0)
    else:
        data = fixed_sense(SenseKey.NO_SENSE, 0, 0)
    return trimmed(data, cdb[4])


def start_stop_unit(lu: LogicalUnit, request: ScsiRequest) -> ScsiResult:
    """START STOP UNIT (SBC-3 §5.25): the medium is always there; accepted as a no-op."""
    return ScsiResult()


def prevent_allow_medium_removal(lu: LogicalUnit, request: ScsiRequest) -> ScsiResult:
    """PREVENT ALLOW MEDIUM REMOVAL (SBC-3 §5.9): not removable, so only PREVENT=0 is fine."""
    if request.cdb[4] & 0x03:
        raise ScsiError.invalid_field_in_cdb(4, 1)
    return ScsiResult()


# --- INQUIRY (SPC-4 §6.6) and the VPD pages (SPC-4 §7.8, SBC-3 §6.5) ---------------------


def standard_inquiry_data(lu: LogicalUnit) -> bytes:
    """Standard INQUIRY data, 96 bytes (SPC-4 §6.6.2)."""
    data = bytearray(96)
    data[0] = 0x00  # peripheral qualifier 0, direct access block device
    data[2] = 0x06  # SPC-4
    data[3] = 0x12  # HISUP, RESPONSE DATA FORMAT 2
    data[4] = len(data) - 5
    data[5] = 0x08  # 3PC: EXTENDED COPY (LID1) is supported (SPC-4 §6.4)
    data[7] = 0x02  # CMDQUE
    data[8:16] = _ascii(lu.vendor, 8)
    data[16:32] = _ascii(lu.product, 16)
    data[32:36] = _ascii(lu.revision, 4)
    struct.pack_into(">4H", data, 58, *VERSION_DESCRIPTORS)
    return bytes(data)


def _designator(code_set: int, association: int, kind: int, value: bytes, piv: bool) -> bytes:
    """A designation descriptor (SPC-4 §7.8.6.1); protocol iSCSI (5) when PIV is set."""
    b0 = (0x50 if piv else 0) | code_set
    b1 = (0x80 if piv else 0) | association << 4 | kind
    return bytes((b0, b1, 0, len(value))) + value


def _scsi_name(name: str) -> bytes:
    raw = name.encode() + b"\0"
    return raw.ljust(-(-len(raw) // 4) * 4, b"\0")


def vpd_supported(lu: LogicalUnit) -> bytes:
    """Supported VPD pages (SPC-4 §7.8.16)."""
    return bytes(VPD_PAGES)


def vpd_unit_serial(lu: LogicalUnit) -> bytes:
    """Unit serial number (SPC-4 §7.8.18)."""
    return lu.serial.encode("ascii")


def vpd_device_identification(lu: LogicalUnit) -> bytes:
    """Device identification (SPC-5 §7.7.6): NAA and T10 vendor ID of the LU (the same on
    every gateway exporting it), the target port's relative identifier and its target port
    group (§7.7.6.6.5-7.7.6.6.6: this process's :attr:`LogicalUnit.port`, so two gateways
    differ), and the target device's SCSI name string."""
    port = lu.port
    return b"".join(
        (
            _designator(1, 0, 3, lu.naa, piv=False),
            _designator(2, 0, 1, _ascii(lu.vendor, 8) + lu.serial.encode("ascii"), piv=False),
            _designator(1, 1, 4, port.relative_id.to_bytes(4, "big"), piv=True),
            _designator(1, 1, 5, port.group.to_bytes(4, "big"), piv=True),
            _designator(3, 2, 8, _scsi_name(lu.target_name), piv=True),
        )
    )


_BLOCK_LIMITS = struct.Struct(">BBHIIIIIIIQIII8x")


def vpd_block_limits(lu: LogicalUnit) -> bytes:
    """Block limits (SBC-4 §6.6.4); the limits the SBC handlers enforce, WSNZ as the LU
    says; atomic writes without alignment or granularity restrictions."""
    granularity = max(1, PAGE // lu.block_size)
    unmap_granularity = max(1, lu.unmap_granularity_bytes // lu.block_size)
    return _BLOCK_LIMITS.pack(
        int(lu.write_same_no_zero),  # WSNZ
        lu.max_compare_write_blocks,
        granularity,
        lu.max_transfer_blocks,
        min(lu.max_transfer_blocks, lu.optimal_transfer_bytes // lu.block_size),
        lu.max_transfer_blocks,  # maximum prefetch length
        lu.max_unmap_lba_count if lu.thin else 0,
        lu.max_unmap_descriptors if lu.thin else 0,
        unmap_granularity if lu.thin else 0,
        0,  # unmap granularity alignment, UGAVALID=0
        lu.max_write_same_blocks,
        lu.max_atomic_transfer_blocks,
        0,  # atomic alignment: none
        0,  # atomic transfer length granularity: none
    )


def vpd_block_device_characteristics(lu: LogicalUnit) -> bytes:
    """Block device characteristics (SBC-4 §6.6.2): non-rotating medium; WABEREQ and
    WACEREQ 01b: reads after a SANITIZE BLOCK / CRYPTOGRAPHIC ERASE succeed (zeros)."""
    return b"\x00\x01\x00\x50" + bytes(56)


def vpd_logical_block_provisioning(lu: LogicalUnit) -> bytes:
    """Logical block provisioning (SBC-3 §6.5.4): LBPU, LBPWS, LBPWS10, LBPRZ; thin."""
    if lu.thin:
        return bytes((0, 0x80 | 0x40 | 0x20 | 0x04, 0x02, 0))
    return bytes(4)


VPD_PAGES: dict[int, Callable[[LogicalUnit], bytes]] = {
    0x00: vpd_supported,
    0x80: vpd_unit_serial,
    0x83: vpd_device_identification,
    0xB0: vpd_block_limits,
    0xB1: vpd_block_device_characteristics,
    0xB2: vpd_logical_block_provisioning,
}
"""Page code -> page body builder (after the 4-byte page header)."""

_VPD_HEADER = struct.Struct(">BBH")


def inquiry(lu: LogicalUnit, request: ScsiRequest) -> ScsiResult:
    """INQUIRY (SPC-4 §6.6): standard data or a VPD page, cut to the allocation length."""
    cdb = request.cdb
    (allocation_length,) = ALLOCATION_LENGTH_INQUIRY.unpack_from(cdb)
    if cdb[1] & 0xFE:
        raise ScsiError.invalid_field_in_cdb(1, 1)  # CMDDT (obsolete) or reserved bits
    page_code = cdb[2]
    if not cdb[1] & 0x01:
        if page_code:
            raise ScsiError.invalid_field_in_cdb(2)
        return trimmed(standard_inquiry_data(lu), allocation_length)
    page = VPD_PAGES.get(page_code)
    if page is None:
        raise ScsiError.invalid_field_in_cdb(2)
    body = page(lu)
    return trimmed(_VPD_HEADER.pack(0, page_code, len(body)) + body, allocation_length)


# --- REPORT LUNS (SPC-4 §6.33) --------------------------------------------------------


def lun_field(lun: int) -> bytes:
    """8-byte LUN: peripheral addressing below 256, flat space up to 16383 (SAM-5 §4.7)."""
    if lun < 256:
        return bytes((0, lun, 0, 0, 0, 0, 0, 0))
    return bytes((0x40 | (lun >> 8) & 0x3F, lun & 0xFF, 0, 0, 0, 0, 0, 0))


def report_luns(lu: LogicalUnit, request: ScsiRequest) -> ScsiResult:
    """REPORT LUNS: SELECT REPORT 0 (all), 1 (well known: none) or 2 (all)."""
    cdb = request.cdb
    (allocation_length,) = ALLOCATION_LENGTH_12.unpack_from(cdb)
    select = cdb[2]
    if select not in (0, 1, 2):
        raise ScsiError.invalid_field_in_cdb(2)
    if allocation_length < 16:
        raise ScsiError.invalid_field_in_cdb(6)
    luns = () if select == 1 else sorted(lu.peers())
    body = b"".join(lun_field(n) for n in luns)
    return trimmed(struct.pack(">I4x", len(body)) + body, allocation_length)


# --- MODE SENSE / MODE SELECT (SPC-4 §6.11-6.14) ------------------------------------------

PC_CURRENT, PC_CHANGEABLE, PC_DEFAULT, PC_SAVED = 0, 1, 2, 3

ModePage = Callable[[LogicalUnit, int], bytes]


def caching_page(lu: LogicalUnit, pc: int) -> bytes:
    """Caching mode page 08h (SBC-3 §6.4.5): only WCE is changeable."""
    page = bytearray(20)
    page[0], page[1] = 0x08, 18
    if pc in (PC_CHANGEABLE, PC_DEFAULT) or lu.write_cache:
        page[2] = 0x04  # WCE
    return bytes(page)


SWP = 0x08
"""SWP, software write protect: control mode page byte 4 bit 3 (SPC-4 §7.5.8)."""


def control_page(lu: LogicalUnit, pc: int) -> bytes:
    """Control mode page 0Ah (SPC-4 §7.5.8): unrestricted reordering; only SWP changeable."""
    if pc == PC_CHANGEABLE:
        return b"\x0a\x0a\x00\x00" + bytes((SWP,)) + bytes(7)
    swp = SWP if pc == PC_CURRENT and lu.software_write_protect else 0
    return b"\x0a\x0a\x00\x10" + bytes((swp,)) + b"\x00\x00\x00\xff\xff\x00\x00"


def informational_exceptions_page(lu: LogicalUnit, pc: int) -> bytes:
    """Informational exceptions control page 1Ch (SPC-4 §7.5.12): DEXCPT, disabled."""
    if pc == PC_CHANGEABLE:
        return b"\x1c\x0a" + bytes(10)
    return b"\x1c\x0a\x08" + bytes(9)


MODE_PAGES: dict[int, ModePage] = {
    0x08: caching_page,
    0x0A: control_page,
    0x1C: informational_exceptions_page,
}
"""Page code -> builder, in ascending page order (the order of 3Fh, return all pages)."""

ALL_PAGES = 0x3F


def _mode_pages(lu: LogicalUnit, cdb: bytes) -> bytes:
    pc, page_code, subpage = cdb[2] >> 6, cdb[2] & 0x3F, cdb[3]
    if pc == PC_SAVED:
        raise ScsiError.illegal(Asc.SAVING_PARAMETERS_NOT_SUPPORTED)
    if page_code == ALL_PAGES:
        if subpage not in (0x00, 0xFF):
            raise ScsiError.invalid_field_in_cdb(3)
        return b"".join(page(lu, pc) for page in MODE_PAGES.values())
    page = MODE_PAGES.get(page_code)
    if page is None:
        raise ScsiError.invalid_field_in_cdb(2, 5)
    if subpage:
        raise ScsiError.invalid_field_in_cdb(3)
    return page(lu, pc)


def _device_specific(lu: LogicalUnit) -> int:
    """WP when read-only, DPOFUA always (SBC-3 §6.4.1)."""
    return (0x80 if lu.read_only else 0) | 0x10


def mode_sense_6(lu: LogicalUnit, request: ScsiRequest) -> ScsiResult:
    """MODE SENSE (6) (SPC-4 §6.11): header, short block descriptor unless DBD, pages."""
    cdb = request.cdb
    pages = _mode_pages(lu, cdb)
    if cdb[1] & 0x08:
        descriptor = b""
    else:
        descriptor = struct.pack(">II", min(lu.blocks, 0xFFFFFFFF), lu.block_size & 0xFFFFFF)
    header = bytes((3 + len(descriptor) + len(pages), 0, _device_specific(lu), len(descriptor)))
    return trimmed(header + descriptor + pages, cdb[4])


def mode_sense_10(lu: LogicalUnit, request: ScsiRequest) -> ScsiResult:
    """MODE SENSE (10) (SPC-4 §6.12): as (6), with LLBAA selecting the long descriptor."""
    cdb = request.cdb
    (allocation_length,) = ALLOCATION_LENGTH_10.unpack_from(cdb)
    pages = _mode_pages(lu, cdb)
    long_lba = bool(cdb[1] & 0x10)
    if cdb[1] & 0x08:
        descriptor = b""
    elif long_lba:
        descriptor = struct.pack(">Q4xI", lu.blocks, lu.block_size)
    else:
        descriptor = struct.pack(">II", min(lu.blocks, 0xFFFFFFFF), lu.block_size & 0xFFFFFF)
    header = struct.pack(
        ">HBBBxH",
        6 + len(descriptor) + len(pages),
        0,
        _device_specific(lu),
        1 if long_lba and descriptor else 0,
        len(descriptor),
    )
    return trimmed(header + descriptor + pages, allocation_length)


def _apply_caching(lu: LogicalUnit, page: bytes) -> None:
    lu.write_cache = bool(page[2] & 0x04)


def _apply_control(lu: LogicalUnit, page: bytes) -> None:
    lu.software_write_protect = bool(page[4] & SWP)


def _apply_nothing(lu: LogicalUnit, page: bytes) -> None:
    pass


_MODE_SELECT_APPLY: dict[int, Callable[[LogicalUnit, bytes], None]] = {
    0x08: _apply_caching,
    0x0A: _apply_control,
    0x1C: _apply_nothing,
}


def _parameter_list_length_error() -> ScsiError:
    return ScsiError.illegal(Asc.PARAMETER_LIST_LENGTH_ERROR)


def _mode_select_pages(lu: LogicalUnit, data: bytes, offset: int) -> None:
    """Check every page against current+changeable, then apply them (SPC-4 §6.9)."""
    updates: list[tuple[int, bytes]] = []
    while offset < len(data):
        if offset + 2 > len(data):
            raise _parameter_list_length_error()
        code = data[offset] & 0x3F
        if data[offset] & 0x40 or code not in _MODE_SELECT_APPLY:
            raise ScsiError.invalid_field_in_parameter_list(offset, 5)
        current = MODE_PAGES[code](lu, PC_CURRENT)
        changeable = MODE_PAGES[code](lu, PC_CHANGEABLE)
        if data[offset + 1] != len(current) - 2:
            raise ScsiError.invalid_field_in_parameter_list(offset + 1)
        end = offset + len(current)
        if end > len(data):
            raise _parameter_list_length_error()
        page = data[offset:end]
        for i in range(2, len(current)):
            if (page[i] ^ current[i]) & ~changeable[i]:
                raise ScsiError.invalid_field_in_parameter_list(offset + i)
        updates.append((code, page))
        offset = end
    for code, page in updates:
        _MODE_SELECT_APPLY[code](lu, page)


def _check_block_descriptor(lu: LogicalUnit, data: bytes, at: int, length: int) -> None:
    if at + length > len(data):
        raise _parameter_list_length_error()
    if length == 8:
        block_length = int.from_bytes(data[at + 5 : at + 8], "big")
    elif length == 16:
        block_length = int.from_bytes(data[at + 12 : at + 16], "big")
    else:
        raise ScsiError.invalid_field_in_parameter_list(3 if at == 4 else 6)
    if block_length != lu.block_size:
        raise ScsiError.invalid_field_in_parameter_list(at + length - 3)


def _mode_select(lu: LogicalUnit, cdb: bytes, length: int, header: int) -> ScsiResult | DataOutPlan:
    if cdb[1] & 0x01:
        raise ScsiError.invalid_field_in_cdb(1, 0)  # SP: saving not supported
    if not cdb[1] & 0x10:
        raise ScsiError.invalid_field_in_cdb(1, 4)  # PF=0: vendor format not supported
    if not length:
        return ScsiResult()
    buffer = memoryview(bytearray(length))

    def complete(received: int) -> ScsiResult:
        data = bytes(buffer[: min(received, length)])
        if len(data) < header:
            raise _parameter_list_length_error()
        descriptor_length = data[3] if header == 4 else int.from_bytes(data[6:8], "big")
        if descriptor_length:
            _check_block_descriptor(lu, data, header, descriptor_length)
        _mode_select_pages(lu, data, header + descriptor_length)
        return ScsiResult()

    return DataOutPlan(buffer=buffer, length=length, complete=complete, staged=True)


def mode_select_6(lu: LogicalUnit, request: ScsiRequest) -> ScsiResult | DataOutPlan:
    """MODE SELECT (6) (SPC-4 §6.9): PF=1, SP=0; caching (WCE) and control (SWP) pages."""
    return _mode_select(lu, request.cdb, request.cdb[4], 4)


def mode_select_10(lu: LogicalUnit, request: ScsiRequest) -> ScsiResult | DataOutPlan:
    """MODE SELECT (10) (SPC-4 §6.10): as (6) with an 8-byte header."""
    (length,) = ALLOCATION_LENGTH_10.unpack_from(request.cdb)
    return _mode_select(lu, request.cdb, length, 8)


# --- REPORT SUPPORTED OPERATION CODES / TASK MANAGEMENT FUNCTIONS (SPC-4 §6.35, §6.36) ---

UsageKey = tuple[int, int | None]
"""(operation code, service action or None)."""

_TIMEOUTS = struct.Struct(">HxxII").pack(0x000A, 0, 0)
"""Command timeouts descriptor (SPC-4 §6.35.4): no nominal/recommended timeout."""


def report_supported_operation_codes(
    lu: LogicalUnit, request: ScsiRequest, usage: Mapping[UsageKey, bytes]
) -> ScsiResult:
    """REPORT SUPPORTED OPERATION CODES; ``usage`` maps each command to its CDB usage data."""
    cdb = request.cdb
    (allocation_length,) = ALLOCATION_LENGTH_12.unpack_from(cdb)
    rctd = bool(cdb[2] & 0x80)
    options = cdb[2] & 0x07
    timeouts = _TIMEOUTS if rctd else b""
    if options == 0:
        descriptors = b"".join(
            struct.pack(
                ">BxHxBH",
                op,
                sa or 0,
                (0x02 if rctd else 0) | (sa is not None),
                len(usage[(op, sa)]),
            )
            + timeouts
            for op, sa in sorted(usage, key=lambda k: (k[0], k[1] or 0))
        )
        return trimmed(struct.pack(">I", len(descriptors)) + descriptors, allocation_length)
    opcode = cdb[3]
    sa = int.from_bytes(cdb[4:6], "big")
    has_actions = any(k[0] == opcode and k[1] is not None for k in usage)
    if options == 1:
        if has_actions:
            raise ScsiError.invalid_field_in_cdb(2, 2)
        key: UsageKey = (opcode, None)
    elif options == 2:
        if not has_actions and (opcode, None) in usage:
            raise ScsiError.invalid_field_in_cdb(2, 2)
        key = (opcode, sa)
    elif options == 3:
        key = (opcode, sa) if has_actions else (opcode, None)
    else:
        raise ScsiError.invalid_field_in_cdb(2, 2)
    data = usage.get(key)
    if data is None:
        return trimmed(b"\x00\x01\x00\x00", allocation_length)
    head = struct.pack(">xBH", (0x80 if rctd else 0) | 0x03, len(data))
    return trimmed(head + data + timeouts, allocation_length)


def report_supported_tmfs(lu: LogicalUnit, request: ScsiRequest) -> ScsiResult:
    """REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS (SPC-4 §6.36): ABORT TASK (SET),
    CLEAR TASK SET, LOGICAL UNIT RESET, TARGET RESET; REPD=1 gives the 16-byte form."""
    cdb = request.cdb
    (allocation_length,) = ALLOCATION_LENGTH_12.unpack_from(cdb)
    if allocation_length < 4:
        raise ScsiError.invalid_field_in_cdb(6)
    flags = 0x80 | 0x40 | 0x10 | 0x08 | 0x02
    repd = bool(cdb[2] & 0x80)
    data = bytes((flags, 0, 0, 0x0C)) + bytes(12) if repd else bytes((flags, 0, 0, 0))
    return trimmed(data, allocation_length)
