"""Less common block commands (SBC-3/SBC-4): WRITE AND VERIFY (10)/(12)/(16), ORWRITE (16),
WRITE ATOMIC (16), READ DEFECT DATA (10)/(12).

Handlers follow :mod:`pyiscsi.scsi.sbc`: ``(lu, request) -> ScsiResult | DataOutPlan``,
errors raised as :class:`~pyiscsi.scsi.sense.ScsiError`. WRITE AND VERIFY with BYTCHK=0 lands
its data straight in the store's memory; everything that must look at the data first (the
compare of BYTCHK=1, the OR of ORWRITE, the all-or-nothing of WRITE ATOMIC) is staged.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from .cdb import ALLOCATION_LENGTH_10, ALLOCATION_LENGTH_12, COUNT_BYTE, LbaCount, cdb_length
from .lun import LogicalUnit
from .sbc import (
    _CHUNK,
    Handler,
    _check_range,
    check_data_out_length,
    first_difference,
    flushed,
    stored,
    with_stored,
)
from .sense import ScsiError
from .task import DataOutPlan, ScsiRequest, ScsiResult, StoreWork

Limit = Callable[[LogicalUnit], int]


def _transfer_limit(lu: LogicalUnit) -> int:
    return lu.max_transfer_blocks


def _atomic_limit(lu: LogicalUnit) -> int:
    return lu.max_atomic_transfer_blocks


def _write_prologue(
    lu: LogicalUnit,
    cdb: bytes,
    decode: LbaCount,
    limit: Limit = _transfer_limit,
    count_byte: int | None = None,
) -> tuple[int, int]:
    """The checks every write-type CDB shares (SBC-3 §4.5, §4.13, §4.22.2): no protection
    information (WRPROTECT/ORPROTECT 0), writable, in range, within the transfer limit."""
    if cdb[1] & 0xE0:
        raise ScsiError.invalid_field_in_cdb(1, 7)
    if lu.read_only:
        raise ScsiError.write_protected()
    lba, count = decode(cdb)
    _check_range(lu, lba, count)
    if count > limit(lu):
        raise ScsiError.invalid_field_in_cdb(count_byte or COUNT_BYTE[cdb_length(cdb[0])])
    return lba, count


def _flush_after(lu: LogicalUnit, cdb: bytes) -> bool:
    """FUA set, or the write cache disabled: the data must be stable before GOOD."""
    return bool(cdb[1] & 0x08) or not lu.write_cache


# --- WRITE AND VERIFY (SBC-3 §5.33-5.35) ------------------------------------------------


def write_and_verify_handler(decode: LbaCount) -> Handler:
    """WRITE AND VERIFY (10)/(12)/(16): write, make the range stable, verify it. BYTCHK 00b
    (medium verification only) writes straight into store memory; 01b compares the written
    blocks with the Data-Out, 11b writes and compares one Data-Out block to every LBA
    (SBC-4 §5.53); 10b is reserved. A mismatch is MISCOMPARE with the offset of the first
    differing byte in INFORMATION."""

    def write_and_verify(lu: LogicalUnit, request: ScsiRequest) -> ScsiResult | DataOutPlan:
        cdb = request.cdb
        bytchk = (cdb[1] >> 1) & 0x03
        if bytchk == 2:
            raise ScsiError.invalid_field_in_cdb(1, 2)
        lba, count = _write_prologue(lu, cdb, decode)
        if not count:
            return ScsiResult()
        bs = lu.block_size
        offset, length = lba * bs, count * bs
        store = lu.store

        if not bytchk and lu.writes_in_place:
            store.prepare_write(offset, length)
            return DataOutPlan(store.view(offset, length), length,
                               lambda received: flushed(store, offset, length))
        size = bs if bytchk == 3 else length
        buffer = memoryview(bytearray(size))

        def write_then_compare(received: int) -> StoreWork:
            # Only what arrived is written (an EDTL below the CDB's length, RFC 7143 §11.4.5.1).
            if bytchk == 3:
                data = memoryview(bytes(buffer) * count if received >= bs else b"")
            else:
                data = buffer[: min(received, length)]

            def compare(written: memoryview) -> ScsiResult:
                at = first_difference(data, written)
                if at is not None:
                    raise ScsiError.miscompare(at)
                return ScsiResult()

            if not bytchk:
                return stored(store, offset, data, True)
            return stored(store, offset, data, True,
                          lambda: with_stored(lu, offset, len(data), compare))

        return DataOutPlan(buffer, size, write_then_compare, staged=True)

    return write_and_verify


# --- ORWRITE (16) (SBC-3 §5.8) ---------------------------------------------------------


def _or_into(target: memoryview, data: memoryview) -> None:
    """``target |= data`` bytewise, a chunk at a time (big-int OR is the fast path)."""
    for start in range(0, len(data), _CHUNK):
        end = min(len(data), start + _CHUNK)
        a = int.from_bytes(target[start:end], "big")
        b = int.from_bytes(data[start:end], "big")
        target[start:end] = (a | b).to_bytes(end - start, "big")


def orwrite_handler(decode: LbaCount) -> Handler:
    """ORWRITE (16): the medium becomes medium OR Data-Out, the read-modify-write holding its
    range busy from the read to the write, so no other command sees or changes half of it.
    DPO ignored, FUA (or WCE=0) flushes."""

    def orwrite(lu: LogicalUnit, request: ScsiRequest) -> ScsiResult | DataOutPlan:
        cdb = request.cdb
        lba, count = _write_prologue(lu, cdb, decode)
        if not count:
            return ScsiResult()
        bs = lu.block_size
        offset, length = lba * bs, count * bs
        sync = _flush_after(lu, cdb)
        buffer = memoryview(bytearray(length))

        def or_in(received: int) -> ScsiResult | StoreWork:
            n = min(received, length) // bs * bs

            def merge(current: memoryview) -> StoreWork:
                merged = memoryview(bytearray(current))
                _or_into(merged, buffer[:n])
                return stored(lu.store, offset, merged, sync)

            return with_stored(lu, offset, n, merge)

        return DataOutPlan(buffer, length, or_in, staged=True)

    return orwrite


# --- WRITE ATOMIC (16) (SBC-4 §5.48) -----------------------------------------------------


ATOMIC_COUNT_BYTE = 12
"""WRITE ATOMIC (16) TRANSFER LENGTH: bytes 12-13 (bytes 10-11 are ATOMIC BOUNDARY)."""


def write_atomic_handler(decode: LbaCount) -> Handler:
    """WRITE ATOMIC (16): staged, then applied in one store write when the whole Data-Out
    has arrived; commands run on one thread, so others see all of it or none. Limits come
    from the Block Limits VPD page: MAXIMUM ATOMIC TRANSFER LENGTH, no alignment or
    granularity, ATOMIC BOUNDARY 0 only (MAXIMUM ATOMIC BOUNDARY SIZE 0)."""

    def write_atomic(lu: LogicalUnit, request: ScsiRequest) -> ScsiResult | DataOutPlan:
        cdb = request.cdb
        lba, count = _write_prologue(lu, cdb, decode, _atomic_limit, ATOMIC_COUNT_BYTE)
        if cdb[10] or cdb[11]:
            raise ScsiError.invalid_field_in_cdb(10)
        if not count:
            return ScsiResult()
        bs = lu.block_size
        offset, length = lba * bs, count * bs
        check_data_out_length(request, length, ATOMIC_COUNT_BYTE)
        sync = _flush_after(lu, cdb)
        buffer = memoryview(bytearray(length))

        def apply(received: int) -> StoreWork:
            if received < length:  # all or nothing: a short transfer changes no LBA
                raise ScsiError.invalid_field_in_cdb(ATOMIC_COUNT_BYTE)
            return stored(lu.store, offset, buffer, sync)

        return DataOutPlan(buffer, length, apply, staged=True)

    return write_atomic


# --- READ DEFECT DATA (SBC-3 §5.13, §5.14) -------------------------------------------------

_DEFECT_HEADER_12 = struct.Struct(">xBxxI")


def _defect_flags(flags: int) -> int:
    """PLISTV/GLISTV echo what was requested (both lists are empty), in the format asked."""
    return flags & 0x1F


def read_defect_data_10(lu: LogicalUnit, request: ScsiRequest) -> ScsiResult:
    """READ DEFECT DATA (10): a 4-byte header and empty PLIST/GLIST; a virtual medium has
    no defects."""
    cdb = request.cdb
    (allocation_length,) = ALLOCATION_LENGTH_10.unpack_from(cdb)
    data = bytes((0, _defect_flags(cdb[2]), 0, 0))
    return ScsiResult(data=data[:allocation_length])


def read_defect_data_12(lu: LogicalUnit, request: ScsiRequest) -> ScsiResult:
    """READ DEFECT DATA (12): an 8-byte header and empty lists (REQ_PLIST, REQ_GLIST and the
    format are in byte 1)."""
    cdb = request.cdb
    (allocation_length,) = ALLOCATION_LENGTH_12.unpack_from(cdb)
    data = _DEFECT_HEADER_12.pack(_defect_flags(cdb[1]), 0)
    return ScsiResult(data=data[:allocation_length])
