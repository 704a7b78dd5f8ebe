"""SPC-4 commands through the dispatcher: byte-exact CDBs in, byte-exact data/sense out."""

from __future__ import annotations

import struct

import pytest

from pyiscsi.backstore.base import BackingStore
from pyiscsi.backstore.memory import MemoryStore
from pyiscsi.proto.wire import ScsiStatus
from pyiscsi.scsi.dispatch import USAGE, execute
from pyiscsi.scsi.lun import LogicalUnit
from pyiscsi.scsi.task import DataOutPlan, ScsiRequest, ScsiResult
from tests.scsi_run import complete

TARGET = "iqn.2024-01.org.example:disk"


def make_lu(size: int = 1 << 20, bs: int = 512, ro: bool = False, number: int = 0) -> LogicalUnit:
    return LogicalUnit(number, MemoryStore(size, block_size=bs, read_only=ro), TARGET)


def run(lu: LogicalUnit, cdb: str) -> ScsiResult:
    result = execute(lu, ScsiRequest(bytes.fromhex(cdb.replace(" ", "")).ljust(16, b"\0")))
    assert isinstance(result, ScsiResult)
    return result


def plan(lu: LogicalUnit, cdb: str) -> DataOutPlan:
    result = execute(lu, ScsiRequest(bytes.fromhex(cdb.replace(" ", "")).ljust(16, b"\0")))
    assert isinstance(result, DataOutPlan)
    return result


def send(p: DataOutPlan, payload: bytes) -> ScsiResult:
    p.buffer[: len(payload)] = payload
    return complete(p, len(payload))


def data(result: ScsiResult) -> bytes:
    assert result.status == ScsiStatus.GOOD, result.sense.hex()
    assert result.data is not None
    return bytes(result.data)


def sense_of(result: ScsiResult) -> tuple[int, int, int]:
    assert result.status == ScsiStatus.CHECK_CONDITION
    return result.sense[2], result.sense[12], result.sense[13]


INVALID_FIELD = (0x05, 0x24, 0x00)

# --- INQUIRY --------------------------------------------------------------------------


def test_standard_inquiry() -> None:
    out = data(run(make_lu(), "12 00 00 01 04 00"))
    assert len(out) == 96
    assert out[:8] == bytes.fromhex("0000061 25b080002".replace(" ", ""))  # 3PC
    assert out[8:16] == b"PYISCSI "
    assert out[16:32] == b"pyiscsi disk    "
    assert out[32:36] == b"0001"
    assert out[4] == len(out) - 5
    assert struct.unpack_from(">4H", out, 58) == (0x00A0, 0x0960, 0x0460, 0x04C0)


def test_inquiry_truncated_to_allocation_length() -> None:
    assert data(run(make_lu(), "12 00 00 00 24 00")) == data(run(make_lu(), "12000000ff00"))[:36]
    assert data(run(make_lu(), "12 00 00 00 05 00")) == bytes.fromhex("000006125b")


@pytest.mark.parametrize("cdb", ["12 00 80 00 ff 00", "12 02 00 00 ff 00", "12 01 99 00 ff 00"])
def test_inquiry_invalid_fields(cdb: str) -> None:
    assert sense_of(run(make_lu(), cdb)) == INVALID_FIELD


def test_inquiry_evpd0_page_code_field_pointer() -> None:
    result = run(make_lu(), "12 00 80 00 ff 00")
    assert result.sense[15:18] == bytes.fromhex("c00002")


def test_vpd_supported_pages() -> None:
    assert data(run(make_lu(), "12 01 00 00 ff 00")) == bytes.fromhex("00000006008083b0b1b2")


def test_vpd_unit_serial_is_stable_and_distinct() -> None:
    a = data(run(make_lu(), "12 01 80 00 ff 00"))
    b = data(run(make_lu(), "12 01 80 00 ff 00"))
    c = data(run(make_lu(number=1), "12 01 80 00 ff 00"))
    assert a == b and a != c
    assert a[:4] == bytes.fromhex("00800010")
    assert len(a) == 20 and a[4:].isalnum()


def test_vpd_device_identification() -> None:
    lu = make_lu()
    out = data(run(lu, "12 01 83 00 ff 00"))
    assert out[:2] == b"\x00\x83"
    assert int.from_bytes(out[2:4], "big") == len(out) - 4
    # NAA designator first: binary, LU association, type 3, 16 bytes, NAA 6
    assert out[4:8] == bytes.fromhex("01030010")
    assert out[8:24] == lu.naa and out[8] >> 4 == 6
    # T10 vendor id: ASCII, type 1
    assert out[24:26] == bytes.fromhex("0201")
    t10_len = out[27]
    assert out[28:36] == b"PYISCSI "
    at = 28 + t10_len
    # relative target port: iSCSI, PIV, port association, type 4
    assert out[at : at + 8] == bytes.fromhex("5194000400000001")
    at += 8
    # target port group: iSCSI, PIV, port association, type 5 (SPC-5 §7.7.6.6.6)
    assert out[at : at + 8] == bytes.fromhex("5195000400000001")
    at += 8
    assert out[at : at + 2] == bytes.fromhex("53a8")
    name_len = out[at + 3]
    assert name_len % 4 == 0
    assert out[at + 4 : at + 4 + name_len].rstrip(b"\0") == TARGET.encode()


def test_vpd_block_limits_match_lu_limits() -> None:
    lu = make_lu()
    out = data(run(lu, "12 01 b0 00 ff 00"))
    assert out[:4] == bytes.fromhex("00b0003c") and len(out) == 64
    wsnz, max_caw, gran, max_xfer = out[4], out[5], *struct.unpack_from(">HI", out, 6)
    assert (wsnz, max_caw, gran) == (1, lu.max_compare_write_blocks, 8)
    assert max_xfer == lu.max_transfer_blocks
    max_unmap, max_desc = struct.unpack_from(">II", out, 20)
    assert (max_unmap, max_desc) == (lu.max_unmap_lba_count, lu.max_unmap_descriptors)
    assert struct.unpack_from(">Q", out, 36)[0] == lu.max_write_same_blocks
    atomic = struct.unpack_from(">III", out, 44)  # max atomic, alignment, granularity
    assert atomic == (lu.max_atomic_transfer_blocks, 0, 0) and 256 <= atomic[0] <= max_xfer


def test_vpd_block_device_characteristics_and_provisioning() -> None:
    out = data(run(make_lu(), "12 01 b1 00 ff 00"))
    assert out[:6] == bytes.fromhex("00b1003c0001") and len(out) == 64
    assert data(run(make_lu(), "12 01 b2 00 ff 00")) == bytes.fromhex("00b2000400e40200")


class ZeroingStore(MemoryStore):
    """A store without its own unmap: not thin provisioned."""

    unmap = BackingStore.unmap
    is_mapped = BackingStore.is_mapped


def test_no_thin_provisioning_without_store_unmap() -> None:
    lu = LogicalUnit(0, ZeroingStore(1 << 20), TARGET)
    assert not lu.thin
    assert data(run(lu, "12 01 b2 00 ff 00")) == bytes.fromhex("00b2000400000000")
    out = data(run(lu, "12 01 b0 00 ff 00"))
    assert struct.unpack_from(">II", out, 20) == (0, 0)


# --- REPORT LUNS / TUR / REQUEST SENSE / misc ------------------------------------------------


def test_report_luns() -> None:
    lu = make_lu()
    lu.peers = lambda: [300, 0, 2]
    out = data(run(lu, "a0 00 00 000000 00000100 00 00"))
    assert out == bytes.fromhex(
        "00000018 00000000 0000000000000000 0002000000000000 412c000000000000".replace(" ", "")
    )


def test_report_luns_select_and_allocation() -> None:
    lu = make_lu()
    assert data(run(lu, "a0 00 01 000000 00000010 00 00")) == bytes(8)
    assert data(run(lu, "a0 00 02 000000 00000010 00 00"))[3] == 8
    assert sense_of(run(lu, "a0 00 03 000000 00000100 00 00")) == INVALID_FIELD
    assert sense_of(run(lu, "a0 00 00 000000 0000000f 00 00")) == INVALID_FIELD


def test_test_unit_ready() -> None:
    result = run(make_lu(), "00 00 00 00 00 00")
    assert result.status == ScsiStatus.GOOD and result.data is None and result.sense == b""


def test_request_sense_no_sense() -> None:
    out = data(run(make_lu(), "03 00 00 00 ff 00"))
    assert out == bytes.fromhex("700000000000000a000000000000000000 00".replace(" ", ""))
    assert data(run(make_lu(), "03 01 00 00 ff 00")) == bytes.fromhex("7200000000000000")
    assert data(run(make_lu(), "03 00 00 00 08 00")) == bytes.fromhex("700000000000000a")


def test_start_stop_and_prevent_allow() -> None:
    lu = make_lu()
    assert run(lu, "1b 00 00 00 01 00").status == ScsiStatus.GOOD
    assert run(lu, "1e 00 00 00 00 00").status == ScsiStatus.GOOD
    assert sense_of(run(lu, "1e 00 00 00 01 00")) == INVALID_FIELD


# --- MODE SENSE / MODE SELECT ---------------------------------------------------------------

CACHING = "0812 04" + "00" * 17
CONTROL = "0a0a 0010 0000 0000 ffff 0000"
IEC = "1c0a 08" + "00" * 9


def test_mode_sense_6_all_pages_with_block_descriptor() -> None:
    out = data(run(make_lu(), "1a 00 3f 00 ff 00"))
    expected = "37 00 10 08" + "00000800 00000200" + CACHING + CONTROL + IEC
    assert out == bytes.fromhex(expected.replace(" ", ""))


def test_mode_sense_6_dbd_and_single_page() -> None:
    out = data(run(make_lu(), "1a 08 08 00 ff 00"))
    assert out == bytes.fromhex(("17 00 10 00" + CACHING).replace(" ", ""))


def test_mode_sense_write_protect_bit() -> None:
    out = data(run(make_lu(ro=True), "1a 08 0a 00 ff 00"))
    assert out[2] == 0x90


def test_mode_sense_changeable_and_default() -> None:
    changeable = data(run(make_lu(), "1a 08 48 00 ff 00"))
    assert changeable[4:] == bytes.fromhex("0812 04" + "00" * 17)
    control = data(run(make_lu(), "1a 08 4a 00 ff 00"))
    assert control[4:] == bytes.fromhex("0a0a 0000 08" + "00" * 7)  # SWP only
    lu = make_lu()
    lu.write_cache = False
    assert data(run(lu, "1a 08 08 00 ff 00"))[6] == 0x00
    assert data(run(lu, "1a 08 88 00 ff 00"))[6] == 0x04


def test_mode_sense_errors() -> None:
    lu = make_lu()
    assert sense_of(run(lu, "1a 00 c8 00 ff 00")) == (0x05, 0x39, 0x00)
    assert sense_of(run(lu, "1a 00 19 00 ff 00")) == INVALID_FIELD
    assert sense_of(run(lu, "1a 00 08 01 ff 00")) == INVALID_FIELD
    assert sense_of(run(lu, "1a 00 3f 01 ff 00")) == INVALID_FIELD


def test_mode_sense_6_truncation() -> None:
    assert data(run(make_lu(), "1a 00 3f 00 04 00")) == bytes.fromhex("37001008")


def test_mode_sense_10_short_and_long_descriptor() -> None:
    short = data(run(make_lu(), "5a 00 08 00 000000 00ff 00"))
    assert short == bytes.fromhex(
        ("0022 00 10 00 00 0008" + "00000800 00000200" + CACHING).replace(" ", "")
    )
    long = data(run(make_lu(), "5a 10 08 00 000000 00ff 00"))
    assert long == bytes.fromhex(
        ("002a 00 10 01 00 0010" + "0000000000000800 00000000 00000200" + CACHING).replace(" ", "")
    )


def test_mode_sense_block_count_saturates() -> None:
    lu = make_lu()
    lu.blocks = 1 << 33
    out = data(run(lu, "1a 00 08 00 ff 00"))
    assert out[4:12] == bytes.fromhex("ffffffff00000200")


def test_mode_select_6_clears_wce() -> None:
    lu = make_lu()
    p = plan(lu, "15 10 00 00 18 00")
    assert p.staged and p.length == 24
    page = bytearray(bytes.fromhex(CACHING))
    page[2] = 0x00
    result = send(p, bytes(4) + bytes(page))
    assert result.status == ScsiStatus.GOOD
    assert lu.write_cache is False
    assert data(run(lu, "1a 08 08 00 ff 00"))[6] == 0x00


def test_mode_select_10_with_block_descriptor_sets_wce() -> None:
    lu = make_lu()
    lu.write_cache = False
    descriptor = bytes.fromhex("0000080000000200")
    payload = bytes.fromhex("0000 00 00 00 00 0008".replace(" ", "")) + descriptor
    payload += bytes.fromhex(CACHING) + bytes.fromhex(CONTROL)
    p = plan(lu, f"55 10 00 00000000 {len(payload):04x} 00")
    assert send(p, payload).status == ScsiStatus.GOOD
    assert lu.write_cache is True


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ("00000000" + "0812 04" + "00" * 16 + "01", (0x05, 0x26, 0x00)),  # unchangeable bit
        ("00000000" + "0813" + "00" * 19, (0x05, 0x26, 0x00)),  # bad page length
        ("00000000" + "1902" + "0000", (0x05, 0x26, 0x00)),  # unknown page
        ("00000000" + "0812 04", (0x05, 0x1A, 0x00)),  # truncated page
        ("00000008 0000080000000400", (0x05, 0x26, 0x00)),  # wrong block length
        ("0000", (0x05, 0x1A, 0x00)),  # truncated header
    ],
)
def test_mode_select_errors(payload: str, expected: tuple[int, int, int]) -> None:
    lu = make_lu()
    raw = bytes.fromhex(payload.replace(" ", ""))
    p = plan(lu, f"15 10 00 00 {max(len(raw), 4):02x} 00")
    assert sense_of(send(p, raw)) == expected
    assert lu.write_cache is True


def test_mode_select_cdb_checks() -> None:
    lu = make_lu()
    assert sense_of(run(lu, "15 11 00 00 18 00")) == INVALID_FIELD  # SP
    assert sense_of(run(lu, "15 00 00 00 18 00")) == INVALID_FIELD  # PF=0
    assert run(lu, "15 10 00 00 00 00").status == ScsiStatus.GOOD


# --- REPORT SUPPORTED OPERATION CODES / TMFs ---------------------------------------------------


def test_rsoc_all_commands() -> None:
    out = data(run(make_lu(), "a3 0c 00 000000 00010000 00 00"))
    length = int.from_bytes(out[:4], "big")
    assert length == len(out) - 4 == 8 * len(USAGE)
    descriptors = [out[4 + i : 12 + i] for i in range(0, length, 8)]
    by_op = {(d[0], int.from_bytes(d[2:4], "big")): d for d in descriptors}
    assert by_op[(0x28, 0)] == bytes.fromhex("280000000000000a")
    assert by_op[(0x9E, 0x10)] == bytes.fromhex("9e00001000010010")
    assert by_op[(0x89, 0)] == bytes.fromhex("8900000000000010")


def test_rsoc_all_commands_with_timeouts() -> None:
    out = data(run(make_lu(), "a3 0c 80 000000 00010000 00 00"))
    assert int.from_bytes(out[:4], "big") == 20 * len(USAGE)
    first = out[4:24]
    assert first[5] & 0x02  # CTDP
    assert first[8:20] == bytes.fromhex("000a0000 00000000 00000000".replace(" ", ""))


def test_rsoc_one_command() -> None:
    out = data(run(make_lu(), "a3 0c 01 28 0000 00000100 00 00"))
    assert out == bytes.fromhex("0003000a 28faffffffff00ffff00".replace(" ", ""))
    out = data(run(make_lu(), "a3 0c 02 9e 0010 00000100 00 00"))
    assert out[:4] == bytes.fromhex("00030010") and out[4:6] == b"\x9e\x10"
    unsupported = data(run(make_lu(), "a3 0c 01 ee 0000 00000100 00 00"))
    assert unsupported == bytes.fromhex("00010000")


def test_rsoc_one_command_option_mismatch() -> None:
    lu = make_lu()
    assert sense_of(run(lu, "a3 0c 01 9e 0010 00000100 00 00")) == INVALID_FIELD
    assert sense_of(run(lu, "a3 0c 02 28 0000 00000100 00 00")) == INVALID_FIELD
    assert sense_of(run(lu, "a3 0c 07 28 0000 00000100 00 00")) == INVALID_FIELD


def test_rsoc_every_listed_command_is_consistent() -> None:
    lu = make_lu()
    for (op, sa), usage in USAGE.items():
        option = "01" if sa is None else "02"
        cdb = f"a3 0c {option} {op:02x} {sa or 0:04x} 00000100 00 00"
        out = data(run(lu, cdb))
        assert out[1] == 0x03
        assert out[4:] == usage and usage[0] == op
        assert int.from_bytes(out[2:4], "big") == len(usage) in (6, 10, 12, 16)


def test_report_supported_tmfs() -> None:
    assert data(run(make_lu(), "a3 0d 00 000000 00000004 00 00")) == bytes.fromhex("da000000")
    repd = data(run(make_lu(), "a3 0d 80 000000 00000010 00 00"))
    assert repd == bytes.fromhex("da00000c") + bytes(12)
    assert sense_of(run(make_lu(), "a3 0d 00 000000 00000003 00 00")) == INVALID_FIELD
