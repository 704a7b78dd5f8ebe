"""CDB field decoders (SBC-3 §5) and the CDB length by group code (SPC-4 §4.2.5.1)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyiscsi.scsi.cdb import (
    COUNT_BYTE,
    LBA_COUNT,
    Op,
    cdb_length,
    control_byte,
    lba_count_6,
)


@pytest.mark.parametrize("op", [Op.READ_6, Op.WRITE_6])
@pytest.mark.parametrize(
    ("cdb_tail", "expected"),
    [
        ("0000000800", (0, 8)),
        ("1fffff0100", (0x1FFFFF, 1)),      # 21-bit LBA, largest
        ("e0000010ff", (0, 0x10)),          # top 3 bits of byte 1 are not LBA
        ("0123450000", (0x012345, 256)),    # length 0 means 256 blocks
        ("000000ff00", (0, 0xFF)),
    ],
)
def test_6_byte_decoder(op: Op, cdb_tail: str, expected: tuple[int, int]) -> None:
    cdb = bytes([op]) + bytes.fromhex(cdb_tail)
    assert len(cdb) == 6
    assert LBA_COUNT[op](cdb) == expected
    assert lba_count_6(cdb) == expected


@pytest.mark.parametrize("op", [Op.READ_10, Op.WRITE_10])
def test_10_byte_decoder(op: Op) -> None:
    cdb = bytes([op]) + bytes.fromhex("00" "12345678" "3f" "abcd" "00")
    assert len(cdb) == 10
    assert LBA_COUNT[op](cdb) == (0x12345678, 0xABCD)
    zero = bytes([op]) + bytes.fromhex("00" "ffffffff" "00" "0000" "00")
    assert LBA_COUNT[op](zero) == (0xFFFFFFFF, 0)  # 0 blocks is 0 in 10-byte CDBs


@pytest.mark.parametrize("op", [Op.READ_12, Op.WRITE_12])
def test_12_byte_decoder(op: Op) -> None:
    cdb = bytes([op]) + bytes.fromhex("00" "89abcdef" "00010203" "00" "00")
    assert len(cdb) == 12
    assert LBA_COUNT[op](cdb) == (0x89ABCDEF, 0x00010203)


@pytest.mark.parametrize("op", [Op.READ_16, Op.WRITE_16])
def test_16_byte_decoder(op: Op) -> None:
    cdb = bytes([op]) + bytes.fromhex("00" "0123456789abcdef" "fedcba98" "00" "00")
    assert len(cdb) == 16
    assert LBA_COUNT[op](cdb) == (0x0123456789ABCDEF, 0xFEDCBA98)


def test_write_atomic_16_count_skips_the_atomic_boundary() -> None:
    cdb = bytes([Op.WRITE_ATOMIC_16]) + bytes.fromhex("00" "0000000000001000" "ffff" "0040"
                                                      "00" "00")
    assert LBA_COUNT[Op.WRITE_ATOMIC_16](cdb) == (0x1000, 0x40)


@given(st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFF), st.integers(0, 0xFF))
def test_10_byte_round_trip(lba: int, count: int, group: int) -> None:
    cdb = struct.pack(">BBIBHB", Op.READ_10, 0xFF, lba, group, count, 0xFF)
    assert LBA_COUNT[Op.READ_10](cdb) == (lba, count)


@given(st.integers(0, (1 << 64) - 1), st.integers(0, 0xFFFFFFFF))
def test_16_byte_round_trip(lba: int, count: int) -> None:
    cdb = struct.pack(">BBQIBB", Op.WRITE_16, 0xFF, lba, count, 0xFF, 0xFF)
    assert LBA_COUNT[Op.WRITE_16](cdb) == (lba, count)


@given(st.integers(0, 0x1FFFFF), st.integers(0, 0xFF), st.integers(0, 7))
def test_6_byte_round_trip(lba: int, length: int, flags: int) -> None:
    cdb = bytes([Op.READ_6, flags << 5 | lba >> 16, (lba >> 8) & 0xFF, lba & 0xFF, length, 0])
    assert lba_count_6(cdb) == (lba, length or 256)


@pytest.mark.parametrize(
    ("opcode", "length"),
    [
        (0x00, 6), (0x08, 6), (0x12, 6), (0x1F, 6),      # group 0
        (0x20, 10), (0x28, 10), (0x3F, 10),               # group 1
        (0x41, 10), (0x5A, 10), (0x5F, 10),               # group 2
        (0x80, 16), (0x88, 16), (0x9E, 16), (0x9F, 16),   # group 4
        (0xA0, 12), (0xA8, 12), (0xBF, 12),               # group 5
    ],
)
def test_cdb_length_by_group_code(opcode: int, length: int) -> None:
    assert cdb_length(opcode) == length


def test_every_decoded_opcode_has_a_known_count_byte_for_its_length() -> None:
    for op in LBA_COUNT:
        assert cdb_length(op) in COUNT_BYTE
    assert COUNT_BYTE == {6: 4, 10: 7, 12: 6, 16: 10}


@pytest.mark.parametrize(("opcode", "last"), [(0x08, 5), (0x28, 9), (0xA8, 11), (0x88, 15)])
def test_control_byte_is_the_last_byte(opcode: int, last: int) -> None:
    cdb = bytearray(16)
    cdb[0] = opcode
    cdb[last] = 0xC4
    assert control_byte(bytes(cdb)) == 0xC4
