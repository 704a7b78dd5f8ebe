"""BHS codec: byte vectors and round trips (RFC 7143 §11)."""

from __future__ import annotations

import dataclasses

import pytest

from pyiscsi.proto import pdu as P
from pyiscsi.proto.errors import PduRejected
from pyiscsi.proto.wire import Opcode, RejectReason

from ..dataclass_init import assert_init_matches_fields

# A READ(10) of 8 blocks at LBA 0x1234, ITT 0x11223344, CmdSN 7, ExpStatSN 9, EDTL 4096, LUN 1.
READ10_BHS = bytes.fromhex(
    "01c10000"          # opcode 0x01, F|R|ATTR=simple, reserved
    "00000000"          # TotalAHSLength 0, DataSegmentLength 0
    "0001000000000000"  # LUN 1 (peripheral addressing)
    "11223344"          # ITT
    "00001000"          # EDTL 4096
    "00000007"          # CmdSN
    "00000009"          # ExpStatSN
    "28000000123400000800000000000000"  # CDB (16 bytes)
)


def test_scsi_command_vector() -> None:
    cmd = P.ScsiCommand(itt=0x11223344, cdb=bytes.fromhex("28000000123400000800") + bytes(6),
                        expected_length=4096, cmdsn=7, expstatsn=9, lun=1 << 48, read=True)
    assert cmd.encode() == READ10_BHS
    assert P.decode_bhs(READ10_BHS) == cmd


def test_scsi_command_init_sets_every_field_in_order_with_its_default() -> None:
    """ScsiCommand writes its own __init__ (compiled: the generated one stays interpreted)."""
    values = (0x11223344, bytes(range(16)), 4096, 7, 9, 1 << 48, True, False, False, 2, True,
              4, 512)
    assert_init_matches_fields(P.ScsiCommand, values, required=2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        P.ScsiCommand(*values).itt = 2  # type: ignore[misc]


def test_data_out_vector_fig9d_pdu4() -> None:
    """Fig 9D PDU #4: TTT 0x0011_0123, offset 0x6000, length 0x2000."""
    pdu = P.DataOut(itt=0x42, ttt=0x00110123, buffer_offset=0x6000, data_length=0x2000,
                    datasn=1, final=False)
    raw = pdu.encode()
    assert raw[0] == 0x05 and raw[1] == 0x00
    assert raw[5:8] == b"\x00\x20\x00"
    assert raw[20:24] == bytes.fromhex("00110123")
    assert raw[36:40] == bytes.fromhex("00000001")
    assert raw[40:44] == bytes.fromhex("00006000")
    assert P.decode_bhs(raw) == pdu


def test_r2t_vector() -> None:
    r2t = P.R2T(itt=1, ttt=0x00100123, buffer_offset=0, desired_length=0x4000, r2tsn=0,
                statsn=5, expcmdsn=6, maxcmdsn=70)
    raw = r2t.encode()
    assert raw[:2] == b"\x31\x80"
    assert raw[20:24] == bytes.fromhex("00100123")
    assert raw[44:48] == bytes.fromhex("00004000")
    assert P.decode_bhs(raw) == r2t


def test_login_request_vector() -> None:
    req = P.LoginRequest(itt=0, isid=0x400001370000, tsih=0, cid=0, cmdsn=1, transit=True,
                         csg=1, nsg=3, data_length=20)
    raw = req.encode()
    assert raw[0] == 0x43  # immediate bit always set on login
    assert raw[1] == 0x87  # T, CSG=1, NSG=3
    assert raw[8:14] == bytes.fromhex("400001370000")
    assert P.decode_bhs(raw) == req


def test_login_response_status() -> None:
    rsp = P.LoginResponse(itt=3, isid=1, status_class=2, status_detail=3)
    raw = rsp.encode()
    assert raw[36:38] == b"\x02\x03"
    assert P.decode_bhs(raw) == rsp


def test_data_in_status_flags() -> None:
    d = P.DataIn(itt=9, buffer_offset=512, data_length=512, datasn=1, final=True,
                 has_status=True, status=0, underflow=True, residual=100, statsn=3)
    raw = d.encode()
    assert raw[1] == 0x80 | 0x02 | 0x01
    assert raw[44:48] == (100).to_bytes(4, "big")
    assert P.decode_bhs(raw) == d


def test_unknown_opcode_is_rejected_with_header() -> None:
    raw = bytes([0x1F]) + bytes(47)
    with pytest.raises(PduRejected) as info:
        P.decode_bhs(raw)
    assert info.value.reason == RejectReason.COMMAND_NOT_SUPPORTED
    assert info.value.header == raw


def test_lengths_are_validated() -> None:
    with pytest.raises(ValueError):
        P.NopIn(itt=1, data_length=1 << 24).encode()


def test_every_opcode_has_a_decoder() -> None:
    assert set(P.DECODERS) == {op.value for op in Opcode}


def test_padded() -> None:
    assert [P.padded(n) for n in (0, 1, 4, 5, 8191)] == [0, 4, 4, 8, 8192]
