"""The SCSI side of the initiator: CDB builders and parsers of the data that comes back.

SPC-4 (INQUIRY §6.6, REPORT LUNS §6.33, TEST UNIT READY §6.47) and SBC-3 (READ CAPACITY
§5.15/§5.16, READ/WRITE(16) §5.8/§5.41, SYNCHRONIZE CACHE(10) §5.22).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

_RW16 = struct.Struct(">BBQIBB")

OP_TEST_UNIT_READY = 0x00
OP_INQUIRY = 0x12
OP_READ_CAPACITY_10 = 0x25
OP_SYNCHRONIZE_CACHE_10 = 0x35
OP_READ_16 = 0x88
OP_WRITE_16 = 0x8A
OP_SERVICE_ACTION_IN_16 = 0x9E
OP_REPORT_LUNS = 0xA0
SA_READ_CAPACITY_16 = 0x10

DEVICE_TYPES = {
    0x00: "direct-access block device",
    0x01: "sequential-access device",
    0x03: "processor device",
    0x05: "CD/DVD device",
    0x07: "optical memory device",
    0x08: "medium changer",
    0x0C: "storage array controller",
    0x0D: "enclosure services device",
    0x0E: "simplified direct-access device",
    0x11: "object-based storage device",
    0x1F: "unknown or no device type",
}
"""PERIPHERAL DEVICE TYPE names, SPC-4 §6.6.2 table 142."""

BLOCK_DEVICE_TYPES = frozenset({0x00, 0x0E})


def test_unit_ready() -> bytes:
    return bytes(6)


def inquiry(allocation: int = 96, page: int | None = None) -> bytes:
    """INQUIRY (SPC-4 §6.6); ``page`` asks for a VPD page (EVPD=1)."""
    evpd, code = (0, 0) if page is None else (1, page)
    return bytes((OP_INQUIRY, evpd, code)) + allocation.to_bytes(2, "big") + b"\0"


def read_capacity_10() -> bytes:
    return bytes((OP_READ_CAPACITY_10,)) + bytes(9)


def read_capacity_16(allocation: int = 32) -> bytes:
    return (bytes((OP_SERVICE_ACTION_IN_16, SA_READ_CAPACITY_16)) + bytes(8)
            + allocation.to_bytes(4, "big") + bytes(2))


def read_16(lba: int, blocks: int, *, fua: bool = False) -> bytes:
    return _RW16.pack(OP_READ_16, 0x08 if fua else 0, lba, blocks, 0, 0)


def write_16(lba: int, blocks: int, *, fua: bool = False) -> bytes:
    return _RW16.pack(OP_WRITE_16, 0x08 if fua else 0, lba, blocks, 0, 0)


def synchronize_cache_10(lba: int = 0, blocks: int = 0) -> bytes:
    return struct.pack(">BBIBHB", OP_SYNCHRONIZE_CACHE_10, 0, lba, 0, blocks, 0)


def report_luns(allocation: int = 16 + 8 * 256) -> bytes:
    return bytes((OP_REPORT_LUNS, 0, 0)) + bytes(3) + allocation.to_bytes(4, "big") + bytes(2)


@dataclass(frozen=True, slots=True)
class Capacity:
    """READ CAPACITY data: logical block length and number of blocks (SBC-3 §5.16.2)."""

    block_size: int
    blocks: int

    @property
    def bytes(self) -> int:
        return self.block_size * self.blocks


def parse_read_capacity_10(data: bytes | bytearray | memoryview) -> Capacity:
    if len(data) < 8:
        raise ValueError("short READ CAPACITY(10) data")
    last, size = struct.unpack_from(">II", data)
    return Capacity(size, last + 1)


def parse_read_capacity_16(data: bytes | bytearray | memoryview) -> Capacity:
    if len(data) < 12:
        raise ValueError("short READ CAPACITY(16) data")
    last, size = struct.unpack_from(">QI", data)
    return Capacity(size, last + 1)


@dataclass(frozen=True, slots=True)
class Inquiry:
    """Standard INQUIRY data (SPC-4 §6.6.2)."""

    qualifier: int
    device_type: int
    removable: bool
    version: int
    vendor: str
    product: str
    revision: str

    @property
    def device_type_name(self) -> str:
        return DEVICE_TYPES.get(self.device_type, "reserved device type")

    @property
    def is_block_device(self) -> bool:
        return self.qualifier == 0 and self.device_type in BLOCK_DEVICE_TYPES


def _ascii(raw: bytes | bytearray | memoryview) -> str:
    return bytes(raw).decode("ascii", "replace").strip(" \0")


def parse_inquiry(data: bytes | bytearray | memoryview) -> Inquiry:
    if len(data) < 5:
        raise ValueError("short INQUIRY data")
    return Inquiry(qualifier=data[0] >> 5, device_type=data[0] & 0x1F,
                   removable=bool(data[1] & 0x80), version=data[2],
                   vendor=_ascii(data[8:16]), product=_ascii(data[16:32]),
                   revision=_ascii(data[32:36]))


def parse_report_luns(data: bytes | bytearray | memoryview) -> list[int]:
    """LUN numbers from REPORT LUNS data (SPC-4 §6.33.2; peripheral and flat addressing)."""
    if len(data) < 8:
        raise ValueError("short REPORT LUNS data")
    length = int.from_bytes(data[0:4], "big")
    out = []
    for pos in range(8, min(8 + length, len(data)) - 7, 8):
        field = int.from_bytes(data[pos:pos + 8], "big")
        out.append((field >> 48) & 0x3FFF)
    return out


def lun_field(lun: int) -> int:
    """The 8-byte LUN field of a LUN number: peripheral below 256, flat above (SAM-5 §4.7)."""
    if lun < 256:
        return lun << 48
    return (0x4000 | (lun & 0x3FFF)) << 48
