"""Sense data (SPC-4 §4.5) and ScsiError."""

from __future__ import annotations

import pytest

from pyiscsi.backstore.base import StoreError
from pyiscsi.proto.wire import ScsiStatus
from pyiscsi.scsi.sense import (
    Asc,
    ScsiError,
    SenseKey,
    descriptor_sense,
    field_pointer,
    fixed_sense,
    guarded,
    store_error_result,
)
from pyiscsi.scsi.task import ScsiResult


def test_fixed_sense_layout_without_information() -> None:
    sense = fixed_sense(SenseKey.ILLEGAL_REQUEST, 0x20, 0x00)
    assert sense == bytes.fromhex("700005000000000a00000000200000000000")
    assert len(sense) == 18


def test_fixed_sense_information_sets_valid_bit() -> None:
    sense = fixed_sense(SenseKey.MISCOMPARE, 0x1D, 0x00, information=0x01020304)
    assert sense == bytes.fromhex("f0000e010203040a000000001d0000000000")


def test_field_pointer_with_and_without_bit() -> None:
    assert field_pointer(1, 7) == bytes.fromhex("cf0001")
    assert field_pointer(0x102) == bytes.fromhex("c00102")
    assert field_pointer(8, in_cdb=False) == bytes.fromhex("800008")


def test_invalid_field_in_cdb_sense_bytes() -> None:
    err = ScsiError.invalid_field_in_cdb(2, 5)
    assert err.sense == bytes.fromhex("700005000000000a00000000240000cd0002")
    result = err.result()
    assert result.status == ScsiStatus.CHECK_CONDITION
    assert result.sense == err.sense
    assert result.data is None


def test_invalid_field_in_parameter_list_clears_cd() -> None:
    sense = ScsiError.invalid_field_in_parameter_list(24).sense
    assert sense[12:14] == b"\x26\x00"
    assert sense[15:18] == bytes.fromhex("800018")


@pytest.mark.parametrize(
    ("err", "key", "asc", "ascq"),
    [
        (ScsiError.lba_out_of_range(), 0x05, 0x21, 0x00),
        (ScsiError.write_protected(), 0x07, 0x27, 0x00),
        (ScsiError.illegal(Asc.INVALID_COMMAND_OPERATION_CODE), 0x05, 0x20, 0x00),
        (ScsiError.illegal(Asc.SAVING_PARAMETERS_NOT_SUPPORTED), 0x05, 0x39, 0x00),
        (ScsiError.illegal(Asc.PARAMETER_LIST_LENGTH_ERROR), 0x05, 0x1A, 0x00),
        (ScsiError.illegal(Asc.LOGICAL_UNIT_NOT_SUPPORTED), 0x05, 0x25, 0x00),
    ],
)
def test_constructors(err: ScsiError, key: int, asc: int, ascq: int) -> None:
    sense = err.sense
    assert (sense[0], sense[2], sense[12], sense[13]) == (0x70, key, asc, ascq)
    assert sense[15] == 0  # no sense-key specific field


def test_miscompare_reports_offset() -> None:
    sense = ScsiError.miscompare(1234).sense
    assert sense[0] == 0xF0
    assert sense[2] == 0x0E
    assert int.from_bytes(sense[3:7], "big") == 1234
    assert sense[12:14] == b"\x1d\x00"


def test_asc_split() -> None:
    assert Asc.SPACE_ALLOCATION_FAILED_WRITE_PROTECT.asc == 0x27
    assert Asc.SPACE_ALLOCATION_FAILED_WRITE_PROTECT.ascq == 0x07
    assert Asc.POWER_ON_RESET.asc == 0x29


def test_descriptor_sense() -> None:
    assert descriptor_sense(SenseKey.NO_SENSE, 0, 0) == bytes.fromhex("7200000000000000")


def test_store_error_result() -> None:
    result = store_error_result(StoreError("full", 0x07, 0x27, 0x07))
    assert result.status == ScsiStatus.CHECK_CONDITION
    assert result.sense == bytes.fromhex("700007000000000a00000000270700000000")


def test_guarded_turns_errors_into_results() -> None:
    def fails(n: int) -> ScsiResult:
        raise ScsiError.lba_out_of_range()

    def store_fails(n: int) -> ScsiResult:
        raise StoreError("io")

    def fine(n: int) -> ScsiResult:
        return ScsiResult(data=bytes([n]))

    assert guarded(fails)(0).sense[12] == 0x21
    assert guarded(store_fails)(0).sense[2] == 0x03
    assert guarded(fine)(7).data == b"\x07"
