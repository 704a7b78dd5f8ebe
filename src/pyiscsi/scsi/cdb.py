"""CDB field decoders as data (SPC-4 §4.2, SBC-3 §5).

Each decoder answers ``(lba, count)`` for one CDB layout; :data:`LBA_COUNT` maps the opcodes
of the READ/WRITE/VERIFY/WRITE SAME/SYNCHRONIZE CACHE/PRE-FETCH families to theirs.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from enum import IntEnum


class Op(IntEnum):
    """Operation codes we know (SPC-4 annex D, SBC-3 table 13)."""

    TEST_UNIT_READY = 0x00
    REQUEST_SENSE = 0x03
    READ_6 = 0x08
    WRITE_6 = 0x0A
    INQUIRY = 0x12
    MODE_SELECT_6 = 0x15
    RESERVE_6 = 0x16
    RELEASE_6 = 0x17
    MODE_SENSE_6 = 0x1A
    START_STOP_UNIT = 0x1B
    PREVENT_ALLOW_MEDIUM_REMOVAL = 0x1E
    READ_CAPACITY_10 = 0x25
    READ_10 = 0x28
    WRITE_10 = 0x2A
    WRITE_AND_VERIFY_10 = 0x2E
    VERIFY_10 = 0x2F
    PRE_FETCH_10 = 0x34
    SYNCHRONIZE_CACHE_10 = 0x35
    READ_DEFECT_DATA_10 = 0x37
    WRITE_SAME_10 = 0x41
    UNMAP = 0x42
    SANITIZE = 0x48
    MODE_SELECT_10 = 0x55
    MODE_SENSE_10 = 0x5A
    PERSISTENT_RESERVE_IN = 0x5E
    PERSISTENT_RESERVE_OUT = 0x5F
    EXTENDED_COPY = 0x83
    RECEIVE_COPY_RESULTS = 0x84
    READ_16 = 0x88
    COMPARE_AND_WRITE = 0x89
    WRITE_16 = 0x8A
    ORWRITE_16 = 0x8B
    WRITE_AND_VERIFY_16 = 0x8E
    VERIFY_16 = 0x8F
    PRE_FETCH_16 = 0x90
    SYNCHRONIZE_CACHE_16 = 0x91
    WRITE_SAME_16 = 0x93
    WRITE_ATOMIC_16 = 0x9C
    SERVICE_ACTION_IN_16 = 0x9E
    REPORT_LUNS = 0xA0
    MAINTENANCE_IN = 0xA3
    READ_12 = 0xA8
    WRITE_12 = 0xAA
    WRITE_AND_VERIFY_12 = 0xAE
    VERIFY_12 = 0xAF
    READ_DEFECT_DATA_12 = 0xB7


class ServiceAction(IntEnum):
    """Service actions of SERVICE ACTION IN (16) and MAINTENANCE IN."""

    READ_CAPACITY_16 = 0x10
    GET_LBA_STATUS = 0x12
    REPORT_SUPPORTED_OPERATION_CODES = 0x0C
    REPORT_SUPPORTED_TASK_MANAGEMENT_FUNCTIONS = 0x0D


LbaCount = Callable[[bytes], tuple[int, int]]

LBA_COUNT_10 = struct.Struct(">2xIxH")
"""10-byte layout: LBA in bytes 2-5, count in bytes 7-8 (SBC-3 §5.11 READ (10))."""
LBA_COUNT_12 = struct.Struct(">2xII")
"""12-byte layout: LBA in bytes 2-5, count in bytes 6-9 (SBC-3 §5.12 READ (12))."""
LBA_COUNT_16 = struct.Struct(">2xQI")
"""16-byte layout: LBA in bytes 2-9, count in bytes 10-13 (SBC-3 §5.13 READ (16))."""
LBA_COMPARE_AND_WRITE = struct.Struct(">2xQ3xB")
"""COMPARE AND WRITE: LBA in bytes 2-9, NUMBER OF LOGICAL BLOCKS in byte 13 (SBC-3 §5.2)."""
LBA_COUNT_ATOMIC_16 = struct.Struct(">2xQ2xH")
"""WRITE ATOMIC (16): LBA in bytes 2-9, ATOMIC BOUNDARY 10-11, count in 12-13 (SBC-4 §5.48)."""


def lba_count_6(cdb: bytes) -> tuple[int, int]:
    """READ (6)/WRITE (6): 21-bit LBA, length byte where 0 means 256 (SBC-3 §5.10)."""
    return ((cdb[1] & 0x1F) << 16) | (cdb[2] << 8) | cdb[3], cdb[4] or 256


LBA_COUNT: dict[int, LbaCount] = {
    Op.READ_6: lba_count_6,
    Op.WRITE_6: lba_count_6,
    Op.READ_10: LBA_COUNT_10.unpack_from,
    Op.WRITE_10: LBA_COUNT_10.unpack_from,
    Op.VERIFY_10: LBA_COUNT_10.unpack_from,
    Op.WRITE_AND_VERIFY_10: LBA_COUNT_10.unpack_from,
    Op.PRE_FETCH_10: LBA_COUNT_10.unpack_from,
    Op.SYNCHRONIZE_CACHE_10: LBA_COUNT_10.unpack_from,
    Op.WRITE_SAME_10: LBA_COUNT_10.unpack_from,
    Op.READ_12: LBA_COUNT_12.unpack_from,
    Op.WRITE_12: LBA_COUNT_12.unpack_from,
    Op.VERIFY_12: LBA_COUNT_12.unpack_from,
    Op.WRITE_AND_VERIFY_12: LBA_COUNT_12.unpack_from,
    Op.READ_16: LBA_COUNT_16.unpack_from,
    Op.WRITE_16: LBA_COUNT_16.unpack_from,
    Op.VERIFY_16: LBA_COUNT_16.unpack_from,
    Op.WRITE_AND_VERIFY_16: LBA_COUNT_16.unpack_from,
    Op.ORWRITE_16: LBA_COUNT_16.unpack_from,
    Op.WRITE_ATOMIC_16: LBA_COUNT_ATOMIC_16.unpack_from,
    Op.PRE_FETCH_16: LBA_COUNT_16.unpack_from,
    Op.SYNCHRONIZE_CACHE_16: LBA_COUNT_16.unpack_from,
    Op.WRITE_SAME_16: LBA_COUNT_16.unpack_from,
}
"""Opcode -> ``(lba, count)`` decoder."""

COUNT_BYTE: dict[int, int] = {6: 4, 10: 7, 12: 6, 16: 10}
"""CDB length -> first byte of the transfer length field (for field pointers)."""


def cdb_length(opcode: int) -> int:
    """CDB length implied by the opcode's group code (SPC-4 §4.2.5.1 table 10)."""
    return _GROUP_LENGTH[opcode >> 5]


_GROUP_LENGTH = (6, 10, 10, 16, 16, 12, 16, 16)
"""Group code (opcode bits 7-5) -> CDB length; groups 3, 6, 7 are variable/vendor."""


def control_byte(cdb: bytes) -> int:
    """The CONTROL byte: the CDB's last byte (SAM-5 §5.2)."""
    return cdb[_GROUP_LENGTH[cdb[0] >> 5] - 1]


ALLOCATION_LENGTH_16 = struct.Struct(">10xI")
"""Allocation length in bytes 10-13 (READ CAPACITY (16), GET LBA STATUS)."""
ALLOCATION_LENGTH_12 = struct.Struct(">6xI")
"""Allocation length in bytes 6-9 (REPORT LUNS, MAINTENANCE IN)."""
ALLOCATION_LENGTH_10 = struct.Struct(">7xH")
"""Allocation/parameter list length in bytes 7-8 (MODE SENSE (10), UNMAP...)."""
ALLOCATION_LENGTH_INQUIRY = struct.Struct(">3xH")
"""INQUIRY allocation length in bytes 3-4 (SPC-4 §6.6)."""
