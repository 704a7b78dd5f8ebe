"""WRITE AND VERIFY, ORWRITE, WRITE ATOMIC, READ DEFECT DATA and the COMPARE AND WRITE /
WRITE SAME Data-Out length checks, through the dispatcher with byte-exact CDBs."""

from __future__ import annotations

import struct

import pytest

from pyiscsi.backstore.memory import MemoryStore
from pyiscsi.proto.wire import ScsiStatus
from pyiscsi.scsi.dispatch import USAGE, execute
from pyiscsi.scsi.lun import LogicalUnit
from pyiscsi.scsi.task import DataOutPlan, ScsiRequest, ScsiResult
from tests.scsi_run import complete

from .test_sbc import (
    BLOCKS,
    INVALID_FIELD,
    LBA_OOB,
    WRITE_PROTECTED,
    PlainStore,
    SpyStore,
    good,
    make_lu,
    plan,
    read10,
    run,
    send,
    sense_of,
    write_blocks,
)

MISCOMPARE = (0x0E, 0x1D, 0x00)


def wv10(lba: int, n: int, flags: int = 0) -> str:
    return f"2e {flags:02x} {lba:08x} 00 {n:04x} 00"


def wv12(lba: int, n: int, flags: int = 0) -> str:
    return f"ae {flags:02x} {lba:08x} {n:08x} 00 00"


def wv16(lba: int, n: int, flags: int = 0) -> str:
    return f"8e {flags:02x} {lba:016x} {n:08x} 00 00"


def orwrite(lba: int, n: int, flags: int = 0) -> str:
    return f"8b {flags:02x} {lba:016x} {n:08x} 00 00"


def atomic(lba: int, n: int, flags: int = 0, boundary: int = 0) -> str:
    return f"9c {flags:02x} {lba:016x} {boundary:04x} {n:04x} 00 00"


def request(cdb: str, edtl: int) -> ScsiRequest:
    return ScsiRequest(bytes.fromhex(cdb.replace(" ", "")), expected_length=edtl, write=True)


# --- WRITE AND VERIFY -----------------------------------------------------------------------


@pytest.mark.parametrize("cdb", [wv10, wv12, wv16])
def test_write_and_verify_bytchk0_lands_in_store_memory_and_flushes(cdb: object) -> None:
    store = SpyStore(BLOCKS * 512)
    lu = make_lu(store)
    p = plan(lu, cdb(7, 2))  # type: ignore[operator]
    assert not p.staged and p.length == 1024
    assert p.buffer.obj is store.view(0, 1).obj  # direct placement: the store's own memory
    assert good(send(p, b"W" * 1024)) == b""
    assert store.flushes == [(7 * 512, 1024)]  # a verify reads stable media
    assert good(run(lu, read10(7, 2))) == b"W" * 1024


@pytest.mark.parametrize("cdb", [wv10, wv12, wv16])
def test_write_and_verify_bytchk1_is_staged_and_written(cdb: object) -> None:
    lu = make_lu()
    p = plan(lu, cdb(3, 2, flags=0x02))  # type: ignore[operator]
    assert p.staged and p.length == 1024
    assert good(send(p, b"V" * 1024)) == b""
    assert good(run(lu, read10(3, 2))) == b"V" * 1024


def test_write_and_verify_bytchk3_writes_one_block_everywhere() -> None:
    lu = make_lu()
    p = plan(lu, wv16(10, 3, flags=0x06))
    assert p.staged and p.length == 512
    assert good(send(p, b"Q" * 512)) == b""
    assert good(run(lu, read10(10, 3))) == b"Q" * 1536


class CorruptingStore(PlainStore):
    """Flips the first byte of every write: a medium that does not keep what it is given."""

    def write(self, offset: int, data: memoryview | bytes) -> None:
        raw = bytearray(data)
        if raw:
            raw[0] ^= 0xFF
        super().write(offset, bytes(raw))


def test_write_and_verify_miscompare_reports_offset() -> None:
    lu = LogicalUnit(0, CorruptingStore(BLOCKS * 512), "iqn.t")
    result = send(plan(lu, wv10(0, 1, flags=0x02)), b"x" * 512)
    assert sense_of(result) == MISCOMPARE
    assert result.sense[0] == 0xF0 and result.sense[3:7] == b"\x00\x00\x00\x00"


def test_write_and_verify_short_data_out_writes_only_what_arrived() -> None:
    """EDTL one block, TL two: only the first block changes (iSCSIResiduals.WriteVerify)."""
    lu = make_lu()
    write_blocks(lu, 0, b"a" * 1024)
    for flags in (0x00, 0x02):
        p = execute(lu, request(wv10(0, 2, flags), 512))
        assert isinstance(p, DataOutPlan)
        p.buffer[:512] = b"b" * 512
        assert good(complete(p, 512)) == b""
        assert good(run(lu, read10(0, 2))) == b"b" * 512 + b"a" * 512
        write_blocks(lu, 0, b"a" * 1024)


@pytest.mark.parametrize(
    ("cdb", "expected", "sks"),
    [
        (wv10(0, 1, 0x20), INVALID_FIELD, "cf0001"),  # WRPROTECT: no protection information
        (wv10(0, 1, 0x04), INVALID_FIELD, "ca0001"),  # BYTCHK 10b is reserved
        (wv10((1 << 17) - 1, 2), LBA_OOB, "000000"),
        (wv16((1 << 17) + 1, 0), LBA_OOB, "000000"),
        (wv12(0, 0x10001), INVALID_FIELD, "c00006"),  # beyond MAXIMUM TRANSFER LENGTH
    ],
)
def test_write_and_verify_errors(cdb: str, expected: tuple[int, int, int], sks: str) -> None:
    result = run(make_lu(SpyStore(1 << 26)), cdb)
    assert sense_of(result) == expected
    assert result.sense[15:18] == bytes.fromhex(sks)


def test_write_and_verify_zero_blocks_and_read_only() -> None:
    assert run(make_lu(), wv10(0, 0)).status == ScsiStatus.GOOD
    assert sense_of(run(make_lu(ro=True), wv10(0, 1))) == WRITE_PROTECTED


def test_write_and_verify_non_addressable_store_is_staged() -> None:
    store = PlainStore(BLOCKS * 512)
    lu = LogicalUnit(0, store, "iqn.t")
    p = plan(lu, wv10(1, 1))
    assert p.staged
    assert good(send(p, b"N" * 512)) == b""
    assert store.bytes[512:1024] == b"N" * 512 and store.flushed == 1


# --- ORWRITE -------------------------------------------------------------------------------


def test_orwrite_ors_data_into_the_medium() -> None:
    store = SpyStore(BLOCKS * 512)
    lu = make_lu(store)
    write_blocks(lu, 4, bytes([0xA5]) * 1024)
    p = plan(lu, orwrite(4, 2))
    assert p.staged and p.length == 1024
    assert good(send(p, bytes([0x5A]) * 512 + bytes([0x0F]) * 512)) == b""
    assert good(run(lu, read10(4, 2))) == b"\xff" * 512 + b"\xaf" * 512
    assert store.flushes == []
    assert good(send(plan(lu, orwrite(4, 1, flags=0x18)), b"\x00" * 512)) == b""  # DPO+FUA
    assert store.flushes == [(2048, 512)]


def test_orwrite_errors() -> None:
    lu = make_lu()
    for flags in range(0x20, 0x100, 0x20):  # ORPROTECT
        assert sense_of(run(lu, orwrite(0, 1, flags))) == INVALID_FIELD
    assert sense_of(run(lu, orwrite(BLOCKS, 1))) == LBA_OOB
    assert sense_of(run(lu, orwrite(1 << 63, 1))) == LBA_OOB
    assert run(lu, orwrite(0, 0)).status == ScsiStatus.GOOD
    assert sense_of(run(make_lu(ro=True), orwrite(0, 1))) == WRITE_PROTECTED


# --- WRITE ATOMIC (16) -------------------------------------------------------------------------


def test_write_atomic_applies_only_when_complete() -> None:
    lu = make_lu()
    p = plan(lu, atomic(8, 2))
    assert p.staged and p.length == 1024
    p.buffer[:] = b"T" * 1024
    assert good(run(lu, read10(8, 2))) == bytes(1024)  # nothing visible before completion
    assert good(complete(p, 1024)) == b""
    assert good(run(lu, read10(8, 2))) == b"T" * 1024


def test_write_atomic_short_transfer_changes_nothing() -> None:
    lu = make_lu()
    p = plan(lu, atomic(0, 2))
    p.buffer[:512] = b"T" * 512
    assert sense_of(complete(p, 512)) == INVALID_FIELD
    assert good(run(lu, read10(0, 2))) == bytes(1024)


def test_write_atomic_limits_and_fields() -> None:
    big = make_lu(SpyStore(1 << 26))
    assert big.max_atomic_transfer_blocks == 2048
    result = run(big, atomic(0, big.max_atomic_transfer_blocks + 1))
    assert sense_of(result) == INVALID_FIELD and result.sense[15:18] == bytes.fromhex("c0000c")
    lu = make_lu()
    result = run(lu, atomic(0, 1, boundary=1))
    assert sense_of(result) == INVALID_FIELD and result.sense[15:18] == bytes.fromhex("c0000a")
    assert sense_of(run(lu, atomic(BLOCKS - 1, 2))) == LBA_OOB
    assert sense_of(run(lu, atomic(BLOCKS + 1, 0))) == LBA_OOB
    assert sense_of(run(lu, atomic(0, 1, flags=0x40))) == INVALID_FIELD
    assert run(lu, atomic(0, 0)).status == ScsiStatus.GOOD
    assert sense_of(execute(lu, request(atomic(0, 2), 512))) == INVALID_FIELD  # EDTL != TL
    assert sense_of(run(make_lu(ro=True), atomic(0, 1))) == WRITE_PROTECTED


def test_write_atomic_fua_flushes() -> None:
    store = SpyStore(BLOCKS * 512)
    lu = make_lu(store)
    assert good(send(plan(lu, atomic(2, 1, flags=0x08)), b"F" * 512)) == b""
    assert store.flushes == [(1024, 512)]


# --- READ DEFECT DATA ----------------------------------------------------------------------


def test_read_defect_data_10_empty_lists() -> None:
    lu = make_lu()
    assert good(run(lu, "37 00 00 00000000 0020 00")) == bytes(4)
    assert good(run(lu, "37 00 1d 00000000 0020 00")) == bytes.fromhex("001d0000")
    assert good(run(lu, "37 00 18 00000000 0002 00")) == bytes.fromhex("0018")


def test_read_defect_data_12_empty_lists() -> None:
    lu = make_lu()
    assert good(run(lu, "b7 00 00000000 00000020 00 00")) == bytes(8)
    assert good(run(lu, "b7 1b 00000000 00000020 00 00")) == bytes.fromhex("001b000000000000")


# --- Data-Out length checks (COMPARE AND WRITE, WRITE SAME) ------------------------------------


def test_compare_and_write_rejects_a_data_out_size_other_than_2n_blocks() -> None:
    """NUMBER OF LOGICAL BLOCKS is one byte: 256 blocks wrap to 0 with 256 KiB of data-out;
    that and any EDTL != 2 * n * block size is INVALID FIELD IN CDB at byte 13."""
    lu = make_lu()
    cdb = "89 00 0000000000000000 000000 {:02x} 00 00"
    for n, edtl in ((0, 2 * 256 * 512), (1, 4 * 512), (3, 4 * 512)):
        result = execute(lu, request(cdb.format(n), edtl))
        assert sense_of(result) == INVALID_FIELD
        assert isinstance(result, ScsiResult) and result.sense[15:18] == bytes.fromhex("c0000d")
    assert isinstance(execute(lu, request(cdb.format(2), 4 * 512)), DataOutPlan)
    assert execute(lu, request(cdb.format(0), 0)) == ScsiResult()


def test_usage_data_advertises_dpo_fua() -> None:
    for op in (0x2E, 0xAE, 0x8E):
        assert USAGE[(op, None)][1] & 0x10  # DPO
    for op in (0x8B, 0x9C):
        assert USAGE[(op, None)][1] & 0x18 == 0x18
    assert struct.unpack(">H", USAGE[(0x9C, None)][12:14]) == (0xFFFF,)
    assert USAGE[(0x37, None)] == bytes.fromhex("37001f00000000ffff00")


def test_block_limits_atomic_fields() -> None:
    lu = LogicalUnit(0, MemoryStore(1 << 22, block_size=4096), "iqn.t")
    out = good(run(lu, "12 01 b0 00 40 00"))
    assert struct.unpack_from(">III", out, 44) == (256, 0, 0)
