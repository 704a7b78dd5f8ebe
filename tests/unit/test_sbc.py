"""SBC-3 commands through the dispatcher: READ/WRITE families, capacity, cache, verify,
WRITE SAME, UNMAP, GET LBA STATUS, COMPARE AND WRITE."""

from __future__ import annotations

import errno
import os
import struct
from pathlib import Path

import pytest

from pyiscsi.backstore.base import BackingStore, StoreError
from pyiscsi.backstore.file import FileStore
from pyiscsi.backstore.memory import MemoryStore
from pyiscsi.backstore.ops import StoreOp, StoreOpKind
from pyiscsi.proto.wire import ScsiStatus
from pyiscsi.scsi.lun import LogicalUnit
from pyiscsi.scsi.task import DataOutPlan, ScsiRequest, ScsiResult
from tests.scsi_run import complete, execute

TARGET = "iqn.2024-01.org.example:disk"
BLOCKS = 2048  # 1 MiB of 512-byte blocks
INVALID_FIELD = (0x05, 0x24, 0x00)
LBA_OOB = (0x05, 0x21, 0x00)
WRITE_PROTECTED = (0x07, 0x27, 0x00)


class SpyStore(MemoryStore):
    """Records flush and unmap calls."""

    def __init__(self, size: int, **kw: object) -> None:
        super().__init__(size, **kw)  # type: ignore[arg-type]
        self.flushes: list[tuple[int, int | None]] = []
        self.unmaps: list[tuple[int, int]] = []

    def flush(self, offset: int = 0, length: int | None = None) -> None:
        self.flushes.append((offset, length))

    def unmap(self, offset: int, length: int) -> None:
        self.unmaps.append((offset, length))
        super().unmap(offset, length)


class PlainStore(BackingStore):
    """Not memory-addressable: readinto/write only."""

    def __init__(self, size: int, block_size: int = 512) -> None:
        self.size, self.block_size, self.read_only, self.name = size, block_size, False, "plain"
        self.bytes = bytearray(size)
        self.flushed = 0

    def readinto(self, offset: int, buffer: memoryview) -> None:
        buffer[:] = self.bytes[offset : offset + len(buffer)]

    def write(self, offset: int, data: memoryview | bytes) -> None:
        self.bytes[offset : offset + len(data)] = data

    def flush(self, offset: int = 0, length: int | None = None) -> None:
        self.flushed += 1


def make_lu(store: BackingStore | None = None, ro: bool = False) -> LogicalUnit:
    return LogicalUnit(0, store or SpyStore(BLOCKS * 512, read_only=ro), TARGET)


def execute_hex(lu: LogicalUnit, cdb: str) -> ScsiResult | DataOutPlan:
    return execute(lu, ScsiRequest(bytes.fromhex(cdb.replace(" ", "")).ljust(16, b"\0")))


def run(lu: LogicalUnit, cdb: str) -> ScsiResult:
    result = execute_hex(lu, cdb)
    assert isinstance(result, ScsiResult)
    return result


def plan(lu: LogicalUnit, cdb: str) -> DataOutPlan:
    result = execute_hex(lu, cdb)
    assert isinstance(result, DataOutPlan), getattr(result, "sense", b"").hex()
    return result


def send(p: DataOutPlan, payload: bytes) -> ScsiResult:
    p.buffer[: len(payload)] = payload
    return complete(p, len(payload))


def good(result: ScsiResult) -> bytes:
    assert result.status == ScsiStatus.GOOD, result.sense.hex()
    return bytes(result.data) if result.data is not None else b""


def sense_of(result: ScsiResult | DataOutPlan) -> tuple[int, int, int]:
    assert isinstance(result, ScsiResult)
    assert result.status == ScsiStatus.CHECK_CONDITION
    return result.sense[2], result.sense[12], result.sense[13]


def read10(lba: int, n: int, flags: int = 0) -> str:
    return f"28 {flags:02x} {lba:08x} 00 {n:04x} 00"


def write10(lba: int, n: int, flags: int = 0) -> str:
    return f"2a {flags:02x} {lba:08x} 00 {n:04x} 00"


def write_blocks(lu: LogicalUnit, lba: int, payload: bytes) -> None:
    p = plan(lu, write10(lba, len(payload) // 512))
    assert good(send(p, payload)) == b""


# --- READ / WRITE ---------------------------------------------------------------------------

RW_CDBS = {
    "6": ("08 {lba:06x} {n:02x} 00", "0a {lba:06x} {n:02x} 00"),
    "10": ("28 00 {lba:08x} 00 {n:04x} 00", "2a 00 {lba:08x} 00 {n:04x} 00"),
    "12": ("a8 00 {lba:08x} {n:08x} 00 00", "aa 00 {lba:08x} {n:08x} 00 00"),
    "16": ("88 00 {lba:016x} {n:08x} 00 00", "8a 00 {lba:016x} {n:08x} 00 00"),
}


@pytest.mark.parametrize("size", sorted(RW_CDBS))
def test_write_then_read_every_size(size: str) -> None:
    lu = make_lu()
    read_fmt, write_fmt = RW_CDBS[size]
    payload = bytes(range(256)) * 6  # 3 blocks
    p = plan(lu, write_fmt.format(lba=100, n=3))
    assert p.length == 1536 and not p.staged
    assert good(send(p, payload)) == b""
    assert good(run(lu, read_fmt.format(lba=100, n=3))) == payload
    assert good(run(lu, read_fmt.format(lba=99, n=1))) == bytes(512)


def test_read_is_zero_copy_view_of_store() -> None:
    lu = make_lu()
    write_blocks(lu, 5, b"\x77" * 512)
    result = run(lu, read10(5, 1))
    assert isinstance(result.data, memoryview)
    assert isinstance(lu.store, MemoryStore)
    lu.store.write(5 * 512, b"\x01" * 512)
    assert bytes(result.data) == b"\x01" * 512  # same memory


def test_write_buffer_is_store_memory() -> None:
    lu = make_lu()
    p = plan(lu, write10(7, 1))
    p.buffer[:] = b"\x33" * 512  # direct placement, before complete
    assert good(run(lu, read10(7, 1))) == b"\x33" * 512
    assert lu.store.is_mapped(7 * 512, 512)


def test_read6_and_write6_length_zero_means_256() -> None:
    lu = make_lu()
    p = plan(lu, "0a 00 00 00 00 00")
    assert p.length == 256 * 512
    assert len(good(run(lu, "08 00 00 00 00 00"))) == 256 * 512


@pytest.mark.parametrize(
    "cdb",
    [
        read10(BLOCKS, 1),
        read10(BLOCKS - 1, 2),
        read10(BLOCKS + 1, 0),
        read10(0xFFFFFFFF, 1),
        "88 00 ffffffffffffffff 00000001 00 00",
        "88 00 8000000000000000 00000001 00 00",
        write10(BLOCKS - 2, 3),
        "08 00 08 00 01 00",  # READ6 LBA 2048
    ],
)
def test_lba_out_of_range(cdb: str) -> None:
    lu = make_lu()
    assert sense_of(execute_hex(lu, cdb)) == LBA_OOB


def test_zero_length_transfers() -> None:
    lu = make_lu()
    assert run(lu, read10(0, 0)).data is None
    assert run(lu, read10(BLOCKS, 0)).status == ScsiStatus.GOOD
    assert run(lu, write10(BLOCKS, 0)).status == ScsiStatus.GOOD


def test_rdprotect_wrprotect_rejected() -> None:
    lu = make_lu()
    result = run(lu, read10(0, 1, flags=0x20))
    assert sense_of(result) == INVALID_FIELD
    assert result.sense[15:18] == bytes.fromhex("cf0001")
    assert sense_of(execute_hex(lu, write10(0, 1, flags=0xE0))) == INVALID_FIELD


def test_dpo_fua_flags_accepted_on_read() -> None:
    lu = make_lu()
    assert run(lu, read10(0, 1, flags=0x18)).status == ScsiStatus.GOOD
    assert run(lu, read10(0, 1, flags=0x02)).status == ScsiStatus.GOOD


def test_transfer_length_above_block_limits() -> None:
    lu = make_lu(SpyStore(1 << 27))
    n = lu.max_transfer_blocks + 1
    assert sense_of(run(lu, f"88 00 {0:016x} {n:08x} 00 00")) == INVALID_FIELD


def test_write_fua_flushes_range_in_complete() -> None:
    store = SpyStore(BLOCKS * 512)
    lu = make_lu(store)
    p = plan(lu, write10(8, 2, flags=0x08))
    assert store.flushes == []
    assert good(send(p, b"\x01" * 1024)) == b""
    assert store.flushes == [(4096, 1024)]
    good(send(plan(lu, write10(8, 2)), b"\x02" * 1024))
    assert store.flushes == [(4096, 1024)]


def test_write_through_when_wce_is_off() -> None:
    store = SpyStore(BLOCKS * 512)
    lu = make_lu(store)
    lu.write_cache = False
    good(send(plan(lu, "0a 00 00 01 01 00"), b"\x09" * 512))
    assert store.flushes == [(512, 512)]


def test_write_to_read_only_lu() -> None:
    lu = make_lu(ro=True)
    for cdb in (write10(0, 1), "0a 00 00 00 01 00", f"8a 00 {0:016x} 00000001 00 00"):
        assert sense_of(execute_hex(lu, cdb)) == WRITE_PROTECTED
    assert run(lu, read10(0, 1)).status == ScsiStatus.GOOD


def test_non_addressable_store_is_staged() -> None:
    store = PlainStore(BLOCKS * 512)
    lu = make_lu(store)
    p = plan(lu, write10(3, 2, flags=0x08))
    assert p.staged
    assert store.bytes[1536:2560] == bytes(1024)
    assert good(send(p, b"\xcd" * 1024)) == b""
    assert store.bytes[1536:2560] == b"\xcd" * 1024 and store.flushed == 1
    result = run(lu, read10(3, 2))
    assert isinstance(result.data, memoryview) and isinstance(result.data.obj, bytearray)
    assert good(result) == b"\xcd" * 1024  # a private copy filled by a READ op


def test_file_store_full_disk_is_space_allocation_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileStore(tmp_path / "lun.img", size=BLOCKS * 512)
    lu = make_lu(store)

    def no_space(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", no_space)
    assert sense_of(execute_hex(lu, write10(0, 1))) == (0x07, 0x27, 0x07)
    monkeypatch.undo()
    good(send(plan(lu, write10(0, 1)), b"\x44" * 512))
    assert good(run(lu, read10(0, 1))) == b"\x44" * 512
    store.close()


# --- READ CAPACITY ------------------------------------------------------------------------------


def test_read_capacity_10() -> None:
    assert good(run(make_lu(), "25 00 00000000 0000 00 00")) == bytes.fromhex("000007ff00000200")
    assert sense_of(run(make_lu(), "25 00 00000001 0000 00 00")) == INVALID_FIELD
    assert run(make_lu(), "25 00 00000001 0000 01 00").status == ScsiStatus.GOOD


def test_read_capacity_10_saturates() -> None:
    lu = make_lu()
    lu.blocks = 1 << 33
    assert good(run(lu, "25 00 00000000 0000 00 00"))[:4] == b"\xff\xff\xff\xff"


def test_read_capacity_16() -> None:
    out = good(run(make_lu(), "9e 10 0000000000000000 00000020 00 00"))
    assert out == bytes.fromhex("00000000000007ff 00000200 00 00 c000".replace(" ", "")) + bytes(16)
    assert good(run(make_lu(), "9e 10 0000000000000000 0000000c 00 00")) == out[:12]


def test_unknown_service_action() -> None:
    assert sense_of(run(make_lu(), "9e 1f 0000000000000000 00000020 00 00")) == INVALID_FIELD


# --- SYNCHRONIZE CACHE / PRE-FETCH ------------------------------------------------------------


def test_synchronize_cache() -> None:
    store = SpyStore(BLOCKS * 512)
    lu = make_lu(store)
    assert run(lu, "35 00 00000010 00 0004 00").status == ScsiStatus.GOOD
    assert run(lu, "35 02 00000100 00 0000 00").status == ScsiStatus.GOOD
    assert run(lu, "91 00 0000000000000000 00000000 00 00").status == ScsiStatus.GOOD
    assert store.flushes == [(8192, 2048), (131072, (BLOCKS - 256) * 512), (0, BLOCKS * 512)]
    assert sense_of(run(lu, f"35 00 {BLOCKS - 1:08x} 00 0002 00")) == LBA_OOB
    assert sense_of(run(lu, f"91 00 {BLOCKS + 1:016x} 00000000 00 00")) == LBA_OOB


def test_pre_fetch() -> None:
    lu = make_lu()
    assert run(lu, "34 00 00000000 00 0010 00").status == ScsiStatus.GOOD
    assert run(lu, f"90 00 {BLOCKS - 1:016x} 00000001 00 00").status == ScsiStatus.GOOD
    assert sense_of(run(lu, f"34 00 {BLOCKS:08x} 00 0001 00")) == LBA_OOB


# --- VERIFY -------------------------------------------------------------------------------------


def test_verify_bytchk0_checks_range_only() -> None:
    lu = make_lu()
    assert run(lu, "2f 00 00000000 00 0010 00").status == ScsiStatus.GOOD
    assert sense_of(run(lu, f"2f 00 {BLOCKS - 1:08x} 00 0002 00")) == LBA_OOB
    assert sense_of(run(lu, "2f 04 00000000 00 0001 00")) == INVALID_FIELD  # BYTCHK 10b
    assert sense_of(run(lu, "2f 20 00000000 00 0001 00")) == INVALID_FIELD  # VRPROTECT


@pytest.mark.parametrize(
    "cdb",
    [
        "2f 02 00000004 00 0002 00",
        "af 02 00000004 00000002 00 00",
        "8f 02 0000000000000004 00000002 00 00",
    ],
)
def test_verify_bytchk1_match_and_miscompare(cdb: str) -> None:
    lu = make_lu()
    payload = bytes(range(256)) * 4
    write_blocks(lu, 4, payload)
    p = plan(lu, cdb)
    assert p.staged and p.length == 1024
    assert send(p, payload).status == ScsiStatus.GOOD
    bad = bytearray(payload)
    bad[700] ^= 0xFF
    result = send(plan(lu, cdb), bytes(bad))
    assert sense_of(result) == (0x0E, 0x1D, 0x00)
    assert result.sense[0] == 0xF0 and int.from_bytes(result.sense[3:7], "big") == 700


def test_verify_bytchk3_one_block_for_all() -> None:
    lu = make_lu()
    write_blocks(lu, 0, b"\x5a" * 1536)
    p = plan(lu, "2f 06 00000000 00 0003 00")
    assert p.length == 512
    assert send(p, b"\x5a" * 512).status == ScsiStatus.GOOD
    lu.store.write(1024 + 3, b"\x00")
    result = send(plan(lu, "2f 06 00000000 00 0003 00"), b"\x5a" * 512)
    assert int.from_bytes(result.sense[3:7], "big") == 1027


# --- WRITE SAME ---------------------------------------------------------------------------------


def test_write_same_10_repeats_block() -> None:
    lu = make_lu()
    block = bytes(range(256)) * 2
    p = plan(lu, "41 00 00000010 00 0005 00")
    assert p.staged and p.length == 512
    assert send(p, block).status == ScsiStatus.GOOD
    assert good(run(lu, read10(16, 5))) == block * 5
    assert good(run(lu, read10(21, 1))) == bytes(512)


def test_write_same_unmap_with_zero_block_deallocates() -> None:
    store = SpyStore(BLOCKS * 512)
    lu = make_lu(store)
    write_blocks(lu, 0, b"\xff" * 8192)
    p = plan(lu, "41 08 00000000 00 0010 00")
    assert send(p, bytes(512)).status == ScsiStatus.GOOD
    assert store.unmaps == [(0, 8192)]
    assert good(run(lu, read10(0, 16))) == bytes(8192)
    assert not store.is_mapped(0, 8192)


def test_write_same_unmap_with_data_writes() -> None:
    store = SpyStore(BLOCKS * 512)
    lu = make_lu(store)
    assert send(plan(lu, "41 08 00000000 00 0002 00"), b"\x01" * 512).status == 0
    assert store.unmaps == []
    assert good(run(lu, read10(0, 2))) == b"\x01" * 1024


def test_write_same_16_ndob_needs_no_data() -> None:
    store = SpyStore(BLOCKS * 512)
    lu = make_lu(store)
    write_blocks(lu, 8, b"\xff" * 4096)
    result = run(lu, "93 09 0000000000000008 00000008 00 00")
    assert result.status == ScsiStatus.GOOD
    assert store.unmaps == [(4096, 4096)]
    assert good(run(lu, read10(8, 8))) == bytes(4096)


@pytest.mark.parametrize(
    ("cdb", "expected"),
    [
        ("41 10 00000000 00 0001 00", INVALID_FIELD),  # ANCHOR
        ("41 18 00000000 00 0001 00", INVALID_FIELD),  # ANCHOR + UNMAP
        ("41 04 00000000 00 0001 00", INVALID_FIELD),  # PBDATA
        ("41 01 00000000 00 0001 00", INVALID_FIELD),  # NDOB is not in (10)
        ("41 20 00000000 00 0001 00", INVALID_FIELD),  # WRPROTECT
        (f"41 00 {BLOCKS + 1:08x} 00 0000 00", LBA_OOB),
        ("41 00 80000000 00 0000 00", LBA_OOB),
        ("41 00 ffffffff 00 0000 00", LBA_OOB),
        (f"41 00 {BLOCKS - 1:08x} 00 0002 00", LBA_OOB),
    ],
)
def test_write_same_errors(cdb: str, expected: tuple[int, int, int]) -> None:
    assert sense_of(execute_hex(make_lu(), cdb)) == expected


def test_write_same_longer_than_block_limits() -> None:
    lu = make_lu(SpyStore(1 << 27))
    n = lu.max_write_same_blocks
    assert isinstance(execute_hex(lu, f"93 00 {0:016x} {n:08x} 00 00"), DataOutPlan)
    assert sense_of(execute_hex(lu, f"93 00 {0:016x} {n + 1:08x} 00 00")) == INVALID_FIELD


def test_write_same_zero_blocks() -> None:
    """WSNZ=1: 0 blocks is an error; WSNZ=0: from the LBA to the last one (SBC-4 §5.50)."""
    lu = make_lu()
    assert sense_of(run(lu, "41 00 00000000 00 0000 00")) == INVALID_FIELD
    assert data_of_block_limits(lu)[4] == 1
    lu.write_same_no_zero = False
    assert data_of_block_limits(lu)[4] == 0
    p = plan(lu, f"41 00 {BLOCKS - 3:08x} 00 0000 00")
    assert p.length == 512
    assert send(p, b"Z" * 512).status == ScsiStatus.GOOD
    assert good(run(lu, read10(BLOCKS - 4, 4))) == bytes(512) + b"Z" * 1536
    assert run(lu, f"41 00 {BLOCKS:08x} 00 0000 00").status == ScsiStatus.GOOD  # nothing left
    lu.max_write_same_blocks = 2
    assert sense_of(run(lu, "41 00 00000000 00 0000 00")) == INVALID_FIELD


def data_of_block_limits(lu: LogicalUnit) -> bytes:
    return good(run(lu, "12 01 b0 00 40 00"))


def test_write_same_data_out_must_be_one_block() -> None:
    lu = make_lu()
    cdb = bytes.fromhex("41 08 00000000 00 0001 00".replace(" ", ""))
    for edtl in (256, 1024):
        result = execute(lu, ScsiRequest(cdb, expected_length=edtl, write=True))
        assert isinstance(result, ScsiResult) and sense_of(result) == INVALID_FIELD
    assert isinstance(execute(lu, ScsiRequest(cdb, expected_length=512, write=True)), DataOutPlan)


def test_write_same_read_only() -> None:
    assert sense_of(execute_hex(make_lu(ro=True), "41 00 00000000 00 0001 00")) == WRITE_PROTECTED


# --- UNMAP --------------------------------------------------------------------------------------


def unmap_list(*ranges: tuple[int, int], bd_length: int | None = None) -> bytes:
    body = b"".join(struct.pack(">QI4x", lba, n) for lba, n in ranges)
    bd = len(body) if bd_length is None else bd_length
    return struct.pack(">HH4x", len(body) + 6, bd) + body


def test_unmap_descriptors() -> None:
    store = SpyStore(BLOCKS * 512)
    lu = make_lu(store)
    write_blocks(lu, 0, b"\xff" * (64 * 512))
    payload = unmap_list((0, 8), (16, 16), (40, 0))
    p = plan(lu, f"42 00 0000000000 {len(payload):04x} 00")
    assert p.staged and p.length == len(payload)
    assert send(p, payload).status == ScsiStatus.GOOD
    assert store.unmaps == [(0, 4096), (8192, 8192)]
    assert good(run(lu, read10(0, 8))) == bytes(4096)
    assert good(run(lu, read10(8, 8))) == b"\xff" * 4096


def test_unmap_zero_length_parameter_list() -> None:
    assert run(make_lu(), "42 00 0000000000 0000 00").status == ScsiStatus.GOOD


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (unmap_list((BLOCKS - 1, 2)), LBA_OOB),
        (unmap_list((0xFFFFFFFFFFFFFFFF, 1)), LBA_OOB),
        (unmap_list((0, (1 << 20) + 1)), (0x05, 0x26, 0x00)),
        (unmap_list(*[(i, 1) for i in range(257)]), (0x05, 0x26, 0x00)),
        (b"\x00\x06\x00", (0x05, 0x1A, 0x00)),
    ],
)
def test_unmap_parameter_errors(payload: bytes, expected: tuple[int, int, int]) -> None:
    store = SpyStore(BLOCKS * 512)
    lu = make_lu(store)
    lu.blocks = 1 << 22 if expected[1] == 0x26 else lu.blocks
    p = plan(lu, f"42 00 0000000000 {max(len(payload), 8):04x} 00")
    assert sense_of(send(p, payload)) == expected
    assert store.unmaps == []


def test_unmap_cdb_errors() -> None:
    assert sense_of(run(make_lu(), "42 00 0000000000 0004 00")) == (0x05, 0x1A, 0x00)
    assert sense_of(run(make_lu(), "42 01 0000000000 0018 00")) == INVALID_FIELD
    assert sense_of(run(make_lu(ro=True), "42 00 0000000000 0018 00")) == WRITE_PROTECTED


# --- GET LBA STATUS -----------------------------------------------------------------------------


def lba_status(lu: LogicalUnit, lba: int, alloc: int = 4096) -> list[tuple[int, int, int]]:
    out = good(run(lu, f"9e 12 {lba:016x} {alloc:08x} 00 00"))
    assert int.from_bytes(out[:4], "big") == len(out) - 4
    return [struct.unpack_from(">QIB", out, at) for at in range(8, len(out), 16)]


def test_get_lba_status_runs() -> None:
    lu = make_lu()
    assert lba_status(lu, 0) == [(0, BLOCKS, 1)]
    write_blocks(lu, 16, b"\x01" * 16 * 512)
    assert lba_status(lu, 0) == [(0, 16, 1), (16, 16, 0), (32, BLOCKS - 32, 1)]
    assert lba_status(lu, 20) == [(20, 12, 0), (32, BLOCKS - 32, 1)]
    assert lba_status(lu, 0, alloc=24) == [(0, 16, 1)]


def test_get_lba_status_beyond_end() -> None:
    lu = make_lu()
    assert sense_of(run(lu, f"9e 12 {BLOCKS:016x} 00001000 00 00")) == LBA_OOB
    assert lba_status(lu, BLOCKS - 1) == [(BLOCKS - 1, 1, 1)]


# --- COMPARE AND WRITE ----------------------------------------------------------------------


def caw(lba: int, n: int, flags: int = 0) -> str:
    return f"89 {flags:02x} {lba:016x} 000000 {n:02x} 00 00"


def test_compare_and_write_success() -> None:
    store = SpyStore(BLOCKS * 512)
    lu = make_lu(store)
    write_blocks(lu, 10, b"A" * 1024)
    p = plan(lu, caw(10, 2, flags=0x08))
    assert p.staged and p.length == 2048
    assert send(p, b"A" * 1024 + b"B" * 1024).status == ScsiStatus.GOOD
    assert good(run(lu, read10(10, 2))) == b"B" * 1024
    assert store.flushes == [(5120, 1024)]


def test_compare_and_write_miscompare_leaves_data() -> None:
    lu = make_lu()
    write_blocks(lu, 10, b"A" * 1024)
    verify = bytearray(b"A" * 1024)
    verify[1024 - 27] = ord("C")
    result = send(plan(lu, caw(10, 2)), bytes(verify) + b"B" * 1024)
    assert sense_of(result) == (0x0E, 0x1D, 0x00)
    assert int.from_bytes(result.sense[3:7], "big") == 1024 - 27
    assert good(run(lu, read10(10, 2))) == b"A" * 1024


def test_compare_and_write_limits() -> None:
    lu = make_lu()
    assert sense_of(run(lu, caw(BLOCKS - 1, 2))) == LBA_OOB
    lu.max_compare_write_blocks = 4
    assert sense_of(run(lu, caw(0, 5))) == INVALID_FIELD
    assert run(lu, caw(0, 0)).status == ScsiStatus.GOOD
    assert sense_of(run(make_lu(ro=True), caw(0, 1))) == WRITE_PROTECTED
    assert sense_of(run(lu, caw(0, 1, flags=0x20))) == INVALID_FIELD


# --- a store that offloads COMPARE AND WRITE and submits from its staging buffers (RBD) ---


class OffloadStore(BackingStore):
    """Not memory: bytes in a bytearray; compares and writes itself (as librbd does), and
    Data-Out placed in its staging buffers is what it writes from."""

    places_staging = True

    def __init__(self, size: int) -> None:
        self.size, self.block_size, self.read_only, self.name = size, 512, False, "offload"
        self.atomic_compare_and_write = True  # an instance attribute (BackingStore)
        self.data = bytearray(size)
        self.staged: list[memoryview] = []
        self.ops: list[StoreOpKind] = []

    def limits(self) -> dict[str, int]:
        return {"max_compare_write_blocks": 1, "optimal_transfer_bytes": 4 << 20}

    def staging(self, length: int) -> memoryview:
        view = memoryview(bytearray(length))
        self.staged.append(view)
        return view

    def readinto(self, offset: int, buffer: memoryview) -> None:
        buffer[:] = self.data[offset:offset + len(buffer)]

    def write(self, offset: int, data: memoryview | bytes) -> None:
        self.data[offset:offset + len(data)] = data

    def flush(self, offset: int = 0, length: int | None = None) -> None:
        pass

    def perform(self, op: StoreOp) -> None:
        self.ops.append(op.kind)
        if op.kind is not StoreOpKind.COMPARE_AND_WRITE:
            super().perform(op)
            return
        assert isinstance(op.buffer, memoryview) and op.buffer.obj is self.staged[-1].obj
        verify, new = bytes(op.buffer[:op.length]), op.buffer[op.length:]
        current = bytes(self.data[op.offset:op.offset + op.length])
        if verify != current:
            at = next(i for i, (a, b) in enumerate(zip(verify, current, strict=True)) if a != b)
            raise StoreError("miscompare", 0x0E, 0x1D, 0x00, information=at)
        self.write(op.offset, new)


def test_offloaded_compare_and_write_goes_to_the_store() -> None:
    store = OffloadStore(BLOCKS * 512)
    lu = make_lu(store)
    assert lu.max_compare_write_blocks == 1  # from the store's limits
    store.data[5120:5632] = b"A" * 512
    p = plan(lu, caw(10, 1, flags=0x08))
    assert not p.staged and p.buffer.obj is store.staged[-1].obj  # placed in its buffer
    assert send(p, b"A" * 512 + b"B" * 512).status == ScsiStatus.GOOD
    assert store.ops == [StoreOpKind.COMPARE_AND_WRITE, StoreOpKind.FLUSH]  # FUA: flush
    assert bytes(store.data[5120:5632]) == b"B" * 512
    wrong = bytearray(b"B" * 512)
    wrong[300] = 0
    result = send(plan(lu, caw(10, 1)), bytes(wrong) + b"C" * 512)
    assert sense_of(result) == (0x0E, 0x1D, 0x00)
    assert result.sense[0] & 0x80 and int.from_bytes(result.sense[3:7], "big") == 300
    assert bytes(store.data[5120:5632]) == b"B" * 512
    assert sense_of(run(lu, caw(10, 2))) == INVALID_FIELD  # past the store's maximum


def test_store_staging_buffers_carry_reads_and_writes() -> None:
    store = OffloadStore(BLOCKS * 512)
    lu = make_lu(store)
    p = plan(lu, write10(4, 2))
    assert not p.staged and p.buffer.obj is store.staged[-1].obj
    assert good(send(p, b"x" * 1024)) == b""
    result = execute_hex(lu, read10(4, 2))
    assert isinstance(result, ScsiResult) and bytes(result.data or b"") == b"x" * 1024
    assert isinstance(result.data, memoryview) and result.data.obj is store.staged[-1].obj


def test_vpd_block_limits_from_store_limits() -> None:
    lu = make_lu(OffloadStore(BLOCKS * 512))
    page = good(run(lu, "12 01 b0 00 40 00"))
    assert page[5] == 1
    assert struct.unpack_from(">I", page, 12)[0] == (4 << 20) // 512  # OPTIMAL TRANSFER


def test_unknown_store_limit_is_refused() -> None:
    class Odd(OffloadStore):
        def limits(self) -> dict[str, int]:
            return {"blocks": 1}

    with pytest.raises(ValueError, match="unknown limit 'blocks'"):
        make_lu(Odd(BLOCKS * 512))
