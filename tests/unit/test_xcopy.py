"""EXTENDED COPY (LID1) and RECEIVE COPY RESULTS through the dispatcher: parameter lists
built the way libiscsi's iscsi-test-cu builds them, byte-exact sense checks."""

from __future__ import annotations

import struct

import pytest

from pyiscsi.backstore.memory import MemoryStore
from pyiscsi.proto.wire import ScsiStatus
from pyiscsi.scsi import xcopy
from pyiscsi.scsi.lun import LogicalUnit
from pyiscsi.scsi.task import DataOutPlan, Nexus, ScsiRequest, ScsiResult
from tests.scsi_run import complete, execute

TARGET = "iqn.2024-01.org.example:xcopy"
BLOCKS = 8192
PARAM_LEN_ERROR = (0x05, 0x1A, 0x00)
INVALID_CDB = (0x05, 0x24, 0x00)
TOO_MANY_CSCD = (0x05, 0x26, 0x06)
UNSUPPORTED_CSCD = (0x05, 0x26, 0x07)
TOO_MANY_SEGMENTS = (0x05, 0x26, 0x08)
UNSUPPORTED_SEGMENT = (0x05, 0x26, 0x09)
UNREACHABLE = (0x0A, 0x08, 0x04)
COPY_ABORTED_OOR = (0x0A, 0x00, 0x00)
NEXUS = Nexus("iqn.2024-01.org.example:host", 0x23D000000001)


def make_lus(count: int = 1, block_size: int = 512) -> list[LogicalUnit]:
    lus = [
        LogicalUnit(n, MemoryStore(BLOCKS * block_size, block_size=block_size), TARGET)
        for n in range(count)
    ]
    registry = {lu.number: lu for lu in lus}
    for lu in lus:
        lu.siblings = lambda: registry
    return lus


def cscd(lu: LogicalUnit, *, code: int = 0xE4, luid_type: int = 0, nul: int = 0) -> bytes:
    """Identification descriptor naming ``lu`` by its NAA designator, like libiscsi."""
    desc = bytearray(32)
    desc[0], desc[1] = code, (luid_type << 6) | (nul << 5)
    desc[4], desc[5], desc[7] = 0x01, 0x03, len(lu.naa)
    desc[8 : 8 + len(lu.naa)] = lu.naa
    desc[29:32] = lu.block_size.to_bytes(3, "big")
    return bytes(desc)


def b2b(src: int, dst: int, blocks: int, src_lba: int, dst_lba: int, dc: int = 0) -> bytes:
    return struct.pack(">BBHHH2xHQQ", 0x02, dc << 1, 24, src, dst, blocks, src_lba, dst_lba)


def param_list(
    cscds: list[bytes], segments: list[bytes], list_id: int = 1, usage: int = 0
) -> bytes:
    c, s = b"".join(cscds), b"".join(segments)
    return struct.pack(">BBH4xII", list_id, usage << 3, len(c), len(s), 0) + c + s


def xcopy_request(length: int) -> ScsiRequest:
    cdb = bytes((0x83, 0x00)) + bytes(8) + struct.pack(">IBB", length, 0, 0)
    return ScsiRequest(cdb, expected_length=length, write=True, nexus=NEXUS)


def run_xcopy(lu: LogicalUnit, data: bytes, length: int | None = None) -> ScsiResult:
    length = len(data) if length is None else length
    p = execute(lu, xcopy_request(length))
    if isinstance(p, ScsiResult):
        return p
    assert isinstance(p, DataOutPlan) and p.staged and p.length == length
    p.buffer[: min(len(data), length)] = data[:length]
    return complete(p, min(len(data), length))


def sense_of(result: ScsiResult) -> tuple[int, int, int]:
    assert result.status == ScsiStatus.CHECK_CONDITION, result
    return result.sense[2], result.sense[12], result.sense[13]


def rcr(lu: LogicalUnit, sa: int, list_id: int = 0, alloc: int = 1024) -> ScsiResult:
    cdb = bytes((0x84, sa, list_id)) + bytes(7) + struct.pack(">IBB", alloc, 0, 0)
    result = execute(lu, ScsiRequest(cdb, read=True, nexus=NEXUS))
    assert isinstance(result, ScsiResult)
    return result


def fill(lu: LogicalUnit, lba: int, data: bytes) -> None:
    lu.store.write(lba * lu.block_size, data)


def blocks_of(lu: LogicalUnit, lba: int, n: int) -> bytes:
    return bytes(lu.store.view(lba * lu.block_size, n * lu.block_size))


def test_copy_within_one_lu() -> None:
    (lu,) = make_lus()
    fill(lu, 0, b"A" * 2048 * 512)
    result = run_xcopy(lu, param_list([cscd(lu)], [b2b(0, 0, 2048, 0, BLOCKS - 2048)], usage=3))
    assert result.status == ScsiStatus.GOOD
    assert blocks_of(lu, BLOCKS - 2048, 2048) == b"A" * 2048 * 512
    assert xcopy.held_results(lu) == {}  # LIST ID USAGE 11b: nothing held


def test_copy_between_sibling_lus_and_overlapping_ranges() -> None:
    a, b = make_lus(2)
    fill(a, 10, bytes(range(256)) * 8)
    assert run_xcopy(a, param_list([cscd(a), cscd(b)], [b2b(0, 1, 4, 10, 100)])).status == 0
    assert blocks_of(b, 100, 4) == bytes(range(256)) * 8
    assert blocks_of(a, 100, 4) == bytes(2048)
    # overlapping source and destination in one LU: the source is read before writing
    assert run_xcopy(b, param_list([cscd(b)], [b2b(0, 0, 4, 100, 102)])).status == 0
    assert blocks_of(b, 102, 4) == bytes(range(256)) * 8


def test_copy_status_is_held_per_nexus_and_list_id_then_discarded() -> None:
    (lu,) = make_lus()
    assert sense_of(rcr(lu, 0x00, list_id=7)) == INVALID_CDB
    assert run_xcopy(lu, param_list([cscd(lu)], [b2b(0, 0, 8, 0, 64)], list_id=7)).status == 0
    status = rcr(lu, 0x00, list_id=7)
    assert status.data == bytes.fromhex("00000008 01 0001 00 00001000".replace(" ", ""))
    assert sense_of(rcr(lu, 0x00, list_id=7)) == INVALID_CDB  # reported once, then gone


def test_operating_parameters() -> None:
    (lu,) = make_lus()
    data = rcr(lu, 0x03).data
    assert data is not None and len(data) == 46
    assert struct.unpack_from(">IB3xHHII", data) == (
        42,
        0x01,
        xcopy.MAX_CSCD_DESCRIPTORS,
        xcopy.MAX_SEGMENT_DESCRIPTORS,
        xcopy.MAX_DESCRIPTOR_LIST_LENGTH,
        xcopy.MAX_SEGMENT_BYTES,
    )
    assert data[37] == 9 and data[43:] == b"\x02\x02\xe4"
    assert rcr(lu, 0x03, alloc=8).data == data[:8]
    assert sense_of(rcr(lu, 0x01)) == INVALID_CDB  # RECEIVE DATA: not supported


def test_parameter_list_length_errors() -> None:
    (lu,) = make_lus()
    data = param_list([cscd(lu)], [b2b(0, 0, 2048, 0, BLOCKS - 2048)])
    assert sense_of(run_xcopy(lu, data, 16 + 32 - 1)) == PARAM_LEN_ERROR
    assert sense_of(run_xcopy(lu, data, 16 + 32 + 28 - 1)) == PARAM_LEN_ERROR
    assert sense_of(run_xcopy(lu, data[:10])) == PARAM_LEN_ERROR
    assert run_xcopy(lu, b"", 0) == ScsiResult()  # parameter list length 0: nothing to do


def test_descriptor_limits() -> None:
    (lu,) = make_lus()
    seg = b2b(0, 0, 1, 0, 1)
    too_many_cscds = param_list([cscd(lu)] * (xcopy.MAX_CSCD_DESCRIPTORS + 1), [seg])
    assert sense_of(run_xcopy(lu, too_many_cscds)) == TOO_MANY_CSCD
    too_many_segments = param_list([cscd(lu)], [seg] * (xcopy.MAX_SEGMENT_DESCRIPTORS + 1))
    assert sense_of(run_xcopy(lu, too_many_segments)) == TOO_MANY_SEGMENTS
    # both too many and longer than MAXIMUM DESCRIPTOR LIST LENGTH: the length wins
    too_long = param_list(
        [cscd(lu)] * (xcopy.MAX_CSCD_DESCRIPTORS + 1), [seg] * (xcopy.MAX_SEGMENT_DESCRIPTORS + 1)
    )
    assert sense_of(run_xcopy(lu, too_long)) == PARAM_LEN_ERROR
    assert blocks_of(lu, 1, 1) == bytes(512)


def test_unsupported_descriptor_types() -> None:
    (lu,) = make_lus()
    seg = b2b(0, 0, 1, 0, 1)
    assert sense_of(run_xcopy(lu, param_list([cscd(lu, code=0xE0)], [seg]))) == UNSUPPORTED_CSCD
    stream = struct.pack(">BBHHH", 0x03, 0, 16, 0, 0) + bytes(12)
    assert sense_of(run_xcopy(lu, param_list([cscd(lu)], [stream]))) == UNSUPPORTED_SEGMENT


def test_lu_id_type_and_nul_are_ignored() -> None:
    """SPC-4 made LU ID TYPE and NUL obsolete (ExtendedCopy.ValidTgtDescr for SPC-4)."""
    (lu,) = make_lus()
    data = param_list([cscd(lu, luid_type=2, nul=1)], [b2b(0, 0, 1, 0, 1)])
    assert run_xcopy(lu, data).status == ScsiStatus.GOOD


@pytest.mark.parametrize(
    ("segment", "expected"),
    [
        (b2b(0, 1, 8, 0, 16), UNREACHABLE),  # no CSCD descriptor 1
        (b2b(0, 0, 2048, 0, BLOCKS - 1), COPY_ABORTED_OOR),  # beyond the destination
        (b2b(0, 0, 8, BLOCKS - 4, 0), COPY_ABORTED_OOR),  # beyond the source
    ],
)
def test_segment_errors_copy_nothing(segment: bytes, expected: tuple[int, int, int]) -> None:
    (lu,) = make_lus()
    fill(lu, 0, b"S" * 4096)
    result = run_xcopy(lu, param_list([cscd(lu)], [b2b(0, 0, 8, 0, 100), segment]))
    assert sense_of(result) == expected
    assert blocks_of(lu, 100, 8) == bytes(4096)  # the valid first segment did not run either
    assert xcopy.held_results(lu) == {}


def test_unknown_designator_is_unreachable() -> None:
    (lu,) = make_lus()
    (other,) = [LogicalUnit(5, MemoryStore(1 << 20), "iqn.other:target")]
    result = run_xcopy(lu, param_list([cscd(other)], [b2b(0, 0, 1, 0, 1)]))
    assert sense_of(result) == UNREACHABLE
    wrong_block_length = bytearray(cscd(lu))
    wrong_block_length[29:32] = (4096).to_bytes(3, "big")
    result = run_xcopy(lu, param_list([bytes(wrong_block_length)], [b2b(0, 0, 1, 0, 1)]))
    assert sense_of(result) == UNREACHABLE


def test_mixed_block_sizes_and_dc() -> None:
    (small,) = make_lus()
    big = LogicalUnit(1, MemoryStore(BLOCKS * 4096, block_size=4096), TARGET)
    registry = {0: small, 1: big}
    small.siblings = big.siblings = lambda: registry
    fill(small, 0, b"m" * 4096)
    # DC=1: NUMBER OF BLOCKS counts destination (4096-byte) blocks
    both = [cscd(small), cscd(big)]
    assert run_xcopy(small, param_list(both, [b2b(0, 1, 1, 0, 3, dc=1)])).status == 0
    assert blocks_of(big, 3, 1) == b"m" * 4096
    # 3 source blocks of 512 bytes are not whole destination blocks
    result = run_xcopy(small, param_list(both, [b2b(0, 1, 3, 0, 3)]))
    assert sense_of(result) == (0x0A, 0x26, 0x0A)


def test_read_only_destination() -> None:
    lu = LogicalUnit(0, MemoryStore(1 << 20, read_only=True), TARGET)
    result = run_xcopy(lu, param_list([cscd(lu)], [b2b(0, 0, 1, 0, 1)]))
    assert sense_of(result) == (0x0A, 0x27, 0x00)


def test_inquiry_reports_3pc() -> None:
    (lu,) = make_lus()
    result = execute(lu, ScsiRequest(bytes.fromhex("120000006000")))
    assert isinstance(result, ScsiResult) and result.data is not None
    assert result.data[5] & 0x08


def test_huge_parameter_list_length_is_refused_before_staging() -> None:
    """Found by fuzzing: a 1.8 GB PARAMETER LIST LENGTH must not be allocated."""
    import tracemalloc

    (lu,) = make_lus()
    tracemalloc.start()
    try:
        result = execute(lu, xcopy_request(0x6E00C6C6))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(result, ScsiResult) and result.status == ScsiStatus.CHECK_CONDITION
    assert sense_of(result) == (0x05, 0x1A, 0x00)  # PARAMETER LIST LENGTH ERROR
    assert peak < 1 << 20
