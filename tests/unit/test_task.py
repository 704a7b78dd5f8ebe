"""LUN field encoding (SAM-5 §4.7) and the I_T nexus TransportID name."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyiscsi.scsi.task import Nexus, ScsiRequest, lun_from_field, lun_to_field


@pytest.mark.parametrize(
    ("lun", "field"),
    [
        (0, bytes.fromhex("0000000000000000")),      # peripheral, bus 0, LUN 0
        (1, bytes.fromhex("0001000000000000")),      # peripheral
        (255, bytes.fromhex("00ff000000000000")),    # peripheral, largest
        (256, bytes.fromhex("4100000000000000")),    # flat space: 01b << 14 | 256
        (16383, bytes.fromhex("7fff000000000000")),  # flat space, largest
    ],
)
def test_lun_field_byte_exact(lun: int, field: bytes) -> None:
    assert lun_to_field(lun).to_bytes(8, "big") == field
    assert lun_from_field(int.from_bytes(field, "big")) == lun


def test_flat_space_address_method_bits() -> None:
    assert lun_to_field(256) >> 62 == 0b01
    assert lun_to_field(255) >> 62 == 0b00


def test_lun_from_field_ignores_lower_levels() -> None:
    assert lun_from_field(0x0005_1234_5678_9ABC) == 5
    assert lun_from_field(0x4123_FFFF_FFFF_FFFF) == 0x123


@given(st.integers(min_value=0, max_value=16383))
def test_lun_round_trip(lun: int) -> None:
    f = lun_to_field(lun)
    assert 0 <= f < 1 << 64
    assert f & 0xFFFF_FFFF_FFFF == 0  # single level: bytes 2-7 zero
    assert lun_from_field(f) == lun


@pytest.mark.parametrize(
    ("nexus", "expected"),
    [
        (Nexus("iqn.2026-11.org.pyiscsi:tester", 0x400001230000),
         "iqn.2026-11.org.pyiscsi:tester,i,0x400001230000"),
        (Nexus("iqn.x", 0x1), "iqn.x,i,0x000000000001"),
        (Nexus("iqn.x", 0x80ABCDEF0123, 9), "iqn.x,i,0x80abcdef0123"),
    ],
)
def test_transport_id(nexus: Nexus, expected: str) -> None:
    assert nexus.transport_id == expected
    assert len(nexus.transport_id.rpartition(",i,0x")[2]) == 12


def test_nexus_defaults_and_identity() -> None:
    n = Nexus("iqn.x")
    assert (n.isid, n.target_portal_group) == (0, 1)
    assert n == Nexus("iqn.x", 0, 1)
    assert n != Nexus("iqn.x", 0, 2)  # another portal group is another I_T nexus
    assert len({n, Nexus("iqn.x", 0, 1), Nexus("iqn.x", 1, 1)}) == 2


def test_scsi_request_default_nexus() -> None:
    assert ScsiRequest(b"\x00" * 6).nexus == Nexus("iqn.unknown", 0, 1)
