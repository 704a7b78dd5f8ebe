"""Block commands (SBC-3): READ/WRITE 6/10/12/16, READ CAPACITY, SYNCHRONIZE CACHE,
VERIFY, WRITE SAME, UNMAP, GET LBA STATUS, COMPARE AND WRITE, PRE-FETCH.

READ and WRITE are the hot path: on a memory-addressable store READ answers a memoryview
of the store (zero copy) and WRITE hands out the store's own memory as the Data-Out
destination (direct placement), after ``prepare_write`` made it safe to write.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from ..backstore.base import BackingStore
from ..backstore.ops import StoreOp, StoreOpKind
from .cdb import (
    ALLOCATION_LENGTH_16,
    COUNT_BYTE,
    LBA_COMPARE_AND_WRITE,
    LBA_COUNT_16,
    LbaCount,
    cdb_length,
)
from .lun import LogicalUnit
from .sense import Asc, ScsiError
from .task import DataOutPlan, Outcome, ScsiRequest, ScsiResult, StoreWork

Handler = Callable[[LogicalUnit, ScsiRequest], "ScsiResult | DataOutPlan | StoreWork"]
PAGE = 4096
_CHUNK = 1 << 16


def _check_range(lu: LogicalUnit, lba: int, count: int) -> None:
    """LBA OUT OF RANGE when the range passes the capacity (SBC-3 §4.5)."""
    if lba + count > lu.blocks or lba > lu.blocks:
        raise ScsiError.lba_out_of_range()


def check_data_out_length(request: ScsiRequest, length: int, count_byte: int) -> None:
    """A command whose Data-Out size is fixed by its CDB (COMPARE AND WRITE, WRITE SAME)
    rejects an Expected Data Transfer Length that disagrees: INVALID FIELD IN CDB at the
    count (SBC-4 §5.3, §5.50; RFC 7143 §11.4.5.1 lets the target refuse the mismatch)."""
    if (request.write or request.expected_length) and request.expected_length != length:
        raise ScsiError.invalid_field_in_cdb(count_byte)


def write_done(received: int) -> ScsiResult:
    """Completion of a plain write into store memory: nothing left to do."""
    return ScsiResult()


def first_difference(a: memoryview, b: memoryview) -> int | None:
    """Offset of the first byte where ``a`` and ``b`` (same length) differ, or None."""
    for start in range(0, len(a), _CHUNK):
        x = bytes(a[start : start + _CHUNK])
        y = bytes(b[start : start + _CHUNK])
        if x != y:
            diff = int.from_bytes(x, "big") ^ int.from_bytes(y, "big")
            return start + len(x) - (diff.bit_length() + 7) // 8
    return None


def _store_bytes(lu: LogicalUnit, offset: int, length: int) -> memoryview:
    """The store's bytes, read on the calling thread (EXTENDED COPY's worker): its own
    memory when addressable, else a fresh copy."""
    if lu.memory_addressable:
        return lu.store.view(offset, length)
    buffer = memoryview(bytearray(length))
    lu.store.readinto(offset, buffer)
    return buffer


def with_stored(lu: LogicalUnit, offset: int, length: int,
                use: Callable[[memoryview], ScsiResult | StoreWork]) -> ScsiResult | StoreWork:
    """``use(the store's bytes of the range)``: at once from the store's own memory when it
    is present, else once a READ (or a fault-in) has run off the event loop, so a file or a
    Ceph read never stalls the other sessions. The range stays busy from that read until
    what ``use`` answers has run: the compare of VERIFY and COMPARE AND WRITE, the merge of
    ORWRITE see bytes no other command changes in between (SBC-4 §5.3, §5.8, §5.33)."""
    store = lu.store
    held = ((offset, offset + length),)
    if lu.memory_addressable:
        view = store.view(offset, length)
        if not store.paged or store.resident(offset, length):
            return use(view)
        return StoreWork(store, (StoreOp(StoreOpKind.FAULT_IN, offset, length),),
                         lambda: use(view), holds=held)
    buffer = store.staging(length)
    return StoreWork(store, (StoreOp(StoreOpKind.READ, offset, length, buffer),),
                     lambda: use(buffer), holds=held)


# --- READ / WRITE (SBC-3 §5.10-5.13, §5.29-5.32) ---------------------------------------


def read_handler(decode: LbaCount, protect: bool) -> Handler:
    """A READ handler for one CDB layout; ``protect``: the CDB has an RDPROTECT field."""

    def read(lu: LogicalUnit, request: ScsiRequest) -> ScsiResult | StoreWork:
        cdb = request.cdb
        if protect and cdb[1] & 0xE0:
            raise ScsiError.invalid_field_in_cdb(1, 7)
        lba, count = decode(cdb)
        _check_range(lu, lba, count)
        if count > lu.max_transfer_blocks:
            raise ScsiError.invalid_field_in_cdb(COUNT_BYTE[cdb_length(cdb[0])])
        if not count:
            return ScsiResult()
        bs = lu.block_size
        offset, length = lba * bs, count * bs
        store = lu.store
        if lu.memory_addressable:
            view = store.view(offset, length)
            if not store.paged or store.resident(offset, length):
                return ScsiResult(data=view)
            # pages on disk: fault them in off the loop, then send from the mapping
            return StoreWork(store, (StoreOp(StoreOpKind.FAULT_IN, offset, length),),
                             lambda: ScsiResult(data=view))
        data = store.staging(length)  # librbd reads into it, Data-In leaves from it
        return StoreWork(store, (StoreOp(StoreOpKind.READ, offset, length, data),),
                         lambda: ScsiResult(data=data))

    return read


def stored(store: BackingStore, offset: int, data: memoryview | bytes, sync: bool,
           then: Callable[[], ScsiResult | StoreWork] = ScsiResult) -> StoreWork:
    """The store work of a staged write: WRITE the data, FLUSH after it when ``sync``
    (FUA, or the write cache off), then GOOD or ``then()``."""
    ops = [StoreOp(StoreOpKind.WRITE, offset, len(data), data)]
    if sync:
        ops.append(StoreOp(StoreOpKind.FLUSH, offset, len(data)))
    return StoreWork(store, tuple(ops), then)


def flushed(store: BackingStore, offset: int, length: int) -> StoreWork:
    """A FLUSH of the range, then GOOD (SBC-4 §5.24, and FUA writes)."""
    return StoreWork(store, (StoreOp(StoreOpKind.FLUSH, offset, length),), ScsiResult)


def write_handler(decode: LbaCount, protect: bool) -> Handler:
    """A WRITE handler for one CDB layout; FUA (or WCE=0) flushes before GOOD."""

    def write(lu: LogicalUnit, request: ScsiRequest) -> Outcome:
        cdb = request.cdb
        if protect and cdb[1] & 0xE0:
            raise ScsiError.invalid_field_in_cdb(1, 7)
        if lu.read_only:
            raise ScsiError.write_protected()
        lba, count = decode(cdb)
        _check_range(lu, lba, count)
        if count > lu.max_transfer_blocks:
            raise ScsiError.invalid_field_in_cdb(COUNT_BYTE[cdb_length(cdb[0])])
        if not count:
            return ScsiResult()
        bs = lu.block_size
        offset, length = lba * bs, count * bs
        store = lu.store
        sync = (protect and cdb[1] & 0x08) or not lu.write_cache
        plan: DataOutPlan
        if lu.writes_in_place:
            view = store.view(offset, length)
            if not sync:
                plan = DataOutPlan(view, length, write_done)
            else:
                plan = DataOutPlan(view, length, lambda received: flushed(store, offset,
                                                                            length))
        else:
            buffer = store.staging(length)

            def staged(received: int) -> StoreWork:
                return stored(store, offset, buffer[: min(received, length)], bool(sync))

            # placed when the store writes from the staging buffer itself (file, RBD)
            plan = DataOutPlan(buffer, length, staged, staged=not store.places_staging)
        if store.paged and store.needs_allocation(offset, length):
            # a hole of a sparse file: allocated off the loop before a byte arrives, so a
            # full disk fails the command before its data is sent
            return StoreWork(store, (StoreOp(StoreOpKind.ALLOCATE, offset, length),),
                             lambda: plan)
        if not lu.writes_in_place:
            return plan
        store.prepare_write(offset, length)
        if store.paged and not store.resident(offset, length):
            return StoreWork(store, (StoreOp(StoreOpKind.FAULT_IN, offset, length),),
                             lambda: plan)
        return plan

    return write


# --- READ CAPACITY (SBC-3 §5.15, §5.16) ----------------------------------------------------


def read_capacity_10(lu: LogicalUnit, request: ScsiRequest) -> ScsiResult:
    """READ CAPACITY (10): last LBA (FFFFFFFFh when it does not fit) and block length."""
    cdb = request.cdb
    if not cdb[8] & 0x01 and any(cdb[2:6]):
        raise ScsiError.invalid_field_in_cdb(2)
    return ScsiResult(data=struct.pack(">II", min(lu.last_lba, 0xFFFFFFFF), lu.block_size))


def read_capacity_16(lu: LogicalUnit, request: ScsiRequest) -> ScsiResult:
    """READ CAPACITY (16): LBPME and LBPRZ when thin provisioned, the LU's LOGICAL BLOCKS
    PER PHYSICAL BLOCK EXPONENT (SBC-4 §5.20.2)."""
    (allocation_length,) = ALLOCATION_LENGTH_16.unpack_from(request.cdb)
    flags = 0xC000 if lu.thin else 0
    exponent = lu.physical_block_exponent & 0x0F
    data = struct.pack(">QIBBH16x", lu.last_lba, lu.block_size, 0, exponent, flags)
    return ScsiResult(data=data[:allocation_length])


# --- SYNCHRONIZE CACHE, PRE-FETCH, VERIFY (SBC-3 §5.22-5.23, §5.8-5.9, §5.26-5.28) ----


def synchronize_cache_handler(decode: LbaCount) -> Handler:
    """SYNCHRONIZE CACHE (10)/(16): flush the range; 0 blocks means up to the last LBA."""

    def synchronize_cache(lu: LogicalUnit, request: ScsiRequest) -> StoreWork:
        lba, count = decode(request.cdb)
        _check_range(lu, lba, count)
        bs = lu.block_size
        return flushed(lu.store, lba * bs, (count or lu.blocks - lba) * bs)

    return synchronize_cache


def pre_fetch_handler(decode: LbaCount) -> Handler:
    """PRE-FETCH (10)/(16): range check only; the data is as close as it gets."""

    def pre_fetch(lu: LogicalUnit, request: ScsiRequest) -> ScsiResult:
        lba, count = decode(request.cdb)
        _check_range(lu, lba, count)
        return ScsiResult()

    return pre_fetch


def verify_handler(decode: LbaCount) -> Handler:
    """VERIFY (10)/(12)/(16): BYTCHK 00b checks the range, 01b compares the data-out,
    11b compares every block with one data-out block; a mismatch is MISCOMPARE with the
    offset of the first differing byte in the INFORMATION field."""

    def verify(lu: LogicalUnit, request: ScsiRequest) -> ScsiResult | DataOutPlan:
        cdb = request.cdb
        if cdb[1] & 0xE0:
            raise ScsiError.invalid_field_in_cdb(1, 7)
        bytchk = (cdb[1] >> 1) & 0x03
        if bytchk == 2:
            raise ScsiError.invalid_field_in_cdb(1, 2)
        lba, count = decode(cdb)
        _check_range(lu, lba, count)
        if count > lu.max_transfer_blocks:
            raise ScsiError.invalid_field_in_cdb(COUNT_BYTE[cdb_length(cdb[0])])
        if not count or not bytchk:
            return ScsiResult()
        bs = lu.block_size
        offset = lba * bs
        length = count * bs if bytchk == 1 else bs
        buffer = memoryview(bytearray(length))

        def compare(stored: memoryview) -> ScsiResult:
            expected = buffer if bytchk == 1 else memoryview(bytes(buffer) * count)
            at = first_difference(expected, stored)
            if at is not None:
                raise ScsiError.miscompare(at)
            return ScsiResult()

        return DataOutPlan(buffer, length,
                           lambda received: with_stored(lu, offset, count * bs, compare),
                           staged=True)

    return verify


# --- WRITE SAME (SBC-3 §5.41, §5.42) and UNMAP (SBC-3 §5.28) ----------------------------


def _write_same(lu: LogicalUnit, lba: int, count: int, block: bytes, unmap: bool) -> StoreWork:
    """The store work of WRITE SAME: a DISCARD where a zero block may deallocate, else the
    block over the range; a FLUSH after it when the write cache is off."""
    bs = lu.block_size
    offset, length = lba * bs, count * bs
    if unmap and lu.thin and not any(block):
        ops = [StoreOp(StoreOpKind.DISCARD, offset, length)]
    else:
        ops = [StoreOp(StoreOpKind.WRITE_SAME, offset, length, block)]
    if not lu.write_cache:
        ops.append(StoreOp(StoreOpKind.FLUSH, offset, length))
    return StoreWork(lu.store, tuple(ops), ScsiResult)


def write_same_handler(decode: LbaCount, ndob: bool) -> Handler:
    """WRITE SAME (10)/(16): one block repeated; UNMAP=1 with a zero block deallocates;
    NDOB=1 (16 only) means no data-out, zeros. 0 blocks: INVALID FIELD IN CDB when WSNZ=1,
    else up to the last LBA (SBC-4 §5.50), bounded like any count by MAXIMUM WRITE SAME LENGTH."""

    def write_same(lu: LogicalUnit, request: ScsiRequest) -> Outcome:
        cdb = request.cdb
        flags = cdb[1]
        if flags & 0xE0:
            raise ScsiError.invalid_field_in_cdb(1, 7)
        if flags & 0x10:
            raise ScsiError.invalid_field_in_cdb(1, 4)  # ANCHOR: ANC_SUP=0
        if flags & 0x06:
            raise ScsiError.invalid_field_in_cdb(1, 2 if flags & 0x04 else 1)
        if flags & 0x01 and not ndob:
            raise ScsiError.invalid_field_in_cdb(1, 0)
        if lu.read_only:
            raise ScsiError.write_protected()
        lba, count = decode(cdb)
        _check_range(lu, lba, count)
        count_byte = COUNT_BYTE[cdb_length(cdb[0])]
        if not count and lu.write_same_no_zero:
            raise ScsiError.invalid_field_in_cdb(count_byte)
        count = count or lu.blocks - lba
        if count > lu.max_write_same_blocks:
            raise ScsiError.invalid_field_in_cdb(count_byte)
        unmap = bool(flags & 0x08)
        if flags & 0x01:
            return _write_same(lu, lba, count, bytes(lu.block_size), unmap)
        check_data_out_length(request, lu.block_size, count_byte)
        if not count:
            return ScsiResult()
        buffer = memoryview(bytearray(lu.block_size))

        def complete(received: int) -> StoreWork:
            return _write_same(lu, lba, count, bytes(buffer), unmap)

        return DataOutPlan(buffer, lu.block_size, complete, staged=True)

    return write_same


_UNMAP_DESCRIPTOR = struct.Struct(">QI4x")


def unmap(lu: LogicalUnit, request: ScsiRequest) -> ScsiResult | DataOutPlan:
    """UNMAP: validate every block descriptor first, then deallocate them all."""
    cdb = request.cdb
    if not lu.thin:
        raise ScsiError.illegal(Asc.INVALID_COMMAND_OPERATION_CODE)
    if cdb[1] & 0x01:
        raise ScsiError.invalid_field_in_cdb(1, 0)  # ANCHOR: ANC_SUP=0
    if lu.read_only:
        raise ScsiError.write_protected()
    length = int.from_bytes(cdb[7:9], "big")
    if not length:
        return ScsiResult()
    if length < 8:
        raise ScsiError.illegal(Asc.PARAMETER_LIST_LENGTH_ERROR)
    buffer = memoryview(bytearray(length))

    def complete(received: int) -> ScsiResult | StoreWork:
        data = bytes(buffer[: min(received, length)])
        if len(data) < 8:
            raise ScsiError.illegal(Asc.PARAMETER_LIST_LENGTH_ERROR)
        descriptor_bytes = min(int.from_bytes(data[2:4], "big"), len(data) - 8)
        count = descriptor_bytes // 16
        if count > lu.max_unmap_descriptors:
            raise ScsiError.invalid_field_in_parameter_list(2)
        ranges = []
        for i in range(count):
            at = 8 + 16 * i
            lba, blocks = _UNMAP_DESCRIPTOR.unpack_from(data, at)
            _check_range(lu, lba, blocks)
            if blocks > lu.max_unmap_lba_count:
                raise ScsiError.invalid_field_in_parameter_list(at + 8)
            if blocks:
                ranges.append((lba, blocks))
        bs = lu.block_size
        if not ranges:
            return ScsiResult()
        return StoreWork(lu.store, tuple(StoreOp(StoreOpKind.DISCARD, lba * bs, blocks * bs)
                                         for lba, blocks in ranges), ScsiResult)

    return DataOutPlan(buffer, length, complete, staged=True)


# --- GET LBA STATUS (SBC-3 §5.7) ---------------------------------------------------------

_LBA_STATUS = struct.Struct(">QIB3x")
_PROBE_BUDGET = 4096


def _lba_status_runs(lu: LogicalUnit, lba: int, limit: int) -> list[tuple[int, int, int]]:
    """Up to ``limit`` runs (lba, count, status) from ``lba``: 0 mapped, 1 deallocated.

    Mapped runs are probed page by page; deallocated runs gallop (doubling probes).
    """
    bs = lu.block_size
    chunk = max(1, PAGE // bs)
    end = lu.blocks
    is_mapped = lu.store.is_mapped
    runs: list[tuple[int, int, int]] = []
    budget = _PROBE_BUDGET
    pos = lba
    while pos < end and len(runs) < limit and budget > 0:
        start = pos
        step = min(end, (pos // chunk + 1) * chunk)
        mapped = is_mapped(pos * bs, (step - pos) * bs)
        budget -= 1
        pos = step
        if mapped:
            while pos < end and budget > 0:
                n = min(chunk, end - pos)
                budget -= 1
                if not is_mapped(pos * bs, n * bs):
                    break
                pos += n
        else:
            size = chunk
            while pos < end and budget > 0:
                n = min(size, end - pos)
                budget -= 1
                if is_mapped(pos * bs, n * bs):
                    if size == chunk:
                        break
                    size = max(chunk, size // 2)
                else:
                    pos += n
                    size *= 2
        while pos - start > 0xFFFFFFFF:
            runs.append((start, 0xFFFFFFFF, 0 if mapped else 1))
            start += 0xFFFFFFFF
        runs.append((start, pos - start, 0 if mapped else 1))
    return runs[:limit]


def get_lba_status(lu: LogicalUnit, request: ScsiRequest) -> ScsiResult:
    """GET LBA STATUS: LBA status descriptors (mapped / deallocated) from the start LBA."""
    (lba,) = LBA_COUNT_16.unpack_from(request.cdb)[:1]
    (allocation_length,) = ALLOCATION_LENGTH_16.unpack_from(request.cdb)
    if lba >= lu.blocks:
        raise ScsiError.lba_out_of_range()
    limit = max(1, (allocation_length - 8) // 16)
    runs = _lba_status_runs(lu, lba, limit)
    body = b"".join(_LBA_STATUS.pack(*run) for run in runs)
    data = struct.pack(">I4x", len(body) + 4) + body
    return ScsiResult(data=data[:allocation_length])


# --- COMPARE AND WRITE (SBC-3 §5.2) ------------------------------------------------------


def compare_and_write(lu: LogicalUnit, request: ScsiRequest) -> ScsiResult | DataOutPlan:
    """COMPARE AND WRITE: 2n blocks of data-out; the first n must match the medium, then
    the second n are written. Runs to completion in one call, so it is atomic here."""
    cdb = request.cdb
    if cdb[1] & 0xE0:
        raise ScsiError.invalid_field_in_cdb(1, 7)
    if lu.read_only:
        raise ScsiError.write_protected()
    lba, count = LBA_COMPARE_AND_WRITE.unpack_from(cdb)
    _check_range(lu, lba, count)
    if count > lu.max_compare_write_blocks:
        raise ScsiError.invalid_field_in_cdb(13)
    bs = lu.block_size
    check_data_out_length(request, 2 * count * bs, 13)
    if not count:
        return ScsiResult()
    offset, length = lba * bs, count * bs
    sync = bool(cdb[1] & 0x08) or not lu.write_cache
    store = lu.store
    if store.atomic_compare_and_write:
        return _offloaded_compare_and_write(store, offset, length, sync)
    buffer = memoryview(bytearray(2 * length))

    def compare_then_write(current: memoryview) -> StoreWork:
        at = first_difference(buffer[:length], current)
        if at is not None:
            raise ScsiError.miscompare(at)
        return stored(lu.store, offset, buffer[length:], sync)

    return DataOutPlan(buffer, 2 * length,
                       lambda received: with_stored(lu, offset, length, compare_then_write),
                       staged=True)


def _offloaded_compare_and_write(store: BackingStore, offset: int, length: int,
                                 sync: bool) -> DataOutPlan:
    """COMPARE AND WRITE done by the store in one atomic operation (a Ceph image shared by
    gateways: the OSD compares and writes). A mismatch is the store's MISCOMPARE with the
    offset of the first differing byte in INFORMATION (SBC-4 §5.3)."""
    buffer = store.staging(2 * length)

    def complete(received: int) -> StoreWork:
        ops = [StoreOp(StoreOpKind.COMPARE_AND_WRITE, offset, length, buffer)]
        if sync:
            ops.append(StoreOp(StoreOpKind.FLUSH, offset, length))
        return StoreWork(store, tuple(ops), ScsiResult)

    return DataOutPlan(buffer, 2 * length, complete, staged=not store.places_staging)
