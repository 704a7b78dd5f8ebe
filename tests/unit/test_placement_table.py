"""The data pointer table (Fig 9C): O(1) allocate/lookup/free, validation, generations."""

from __future__ import annotations

import pytest

from pyiscsi.placement import tag as tagfmt
from pyiscsi.placement.table import (
    ConnectionRegistry,
    DataPointerTable,
    PlacementError,
    TableFull,
)
from pyiscsi.proto.wire import RejectReason


def test_first_tag_matches_fig9b() -> None:
    table = DataPointerTable(0x0123)
    mem = memoryview(bytearray(0x4000))
    assert table.allocate(mem, 0, 0x4000, index=0x10) == 0x0010_0123


def test_free_bumps_generation_and_old_tag_is_stale() -> None:
    table = DataPointerTable(0x0123)
    mem = memoryview(bytearray(64))
    tag = table.allocate(mem, 0, 64, index=5)
    table.free(tag)
    with pytest.raises(PlacementError) as info:
        table.lookup(tag)
    assert info.value.reason == RejectReason.INVALID_PDU_FIELD
    again = table.allocate(mem, 0, 64, index=5)
    assert again == tagfmt.pack(0x0123, 5, 1) == 0x1005_0123
    assert table.lookup(again).index == 5


def test_generation_wraps_in_four_bits() -> None:
    table = DataPointerTable(1, capacity=1)
    mem = memoryview(bytearray(8))
    tags = []
    for _ in range(17):
        t = table.allocate(mem, 0, 8)
        tags.append(t)
        table.free(t)
    assert [t >> 28 for t in tags] == [*range(16), 0]


def test_wrong_connection_is_refused() -> None:
    table = DataPointerTable(0x0123)
    tag = table.allocate(memoryview(bytearray(8)), 0, 8)
    with pytest.raises(PlacementError, match="another connection"):
        table.lookup(tag ^ 0x1)


@pytest.mark.parametrize(("offset", "length", "why"), [
    (0x3FFF, 2, "outside"),      # crosses the end of the burst
    (0x0FFF, 1, "outside"),      # before the burst start
    (0x1000 + 0x4000, 1, "outside"),
    (0x1200, 0x100, "expected"),  # a gap: DataPDUInOrder
])
def test_bounds_and_order(offset: int, length: int, why: str) -> None:
    table = DataPointerTable(7)
    dest = memoryview(bytearray(0x4000))
    tag = table.allocate(dest, 0x1000, 0x4000, itt=9)
    if why == "outside" and offset == 0x3FFF:
        offset = 0x1000 + 0x3FFF
    with pytest.raises(PlacementError, match=why):
        table.place(tag, offset, length, itt=9)


def test_itt_mismatch_is_refused() -> None:
    table = DataPointerTable(7)
    tag = table.allocate(memoryview(bytearray(16)), 0, 16, itt=1)
    with pytest.raises(PlacementError, match="ITT"):
        table.place(tag, 0, 16, itt=2)


def test_place_returns_view_into_destination() -> None:
    table = DataPointerTable(7)
    backing = bytearray(0x100)
    tag = table.allocate(memoryview(backing)[0x40:0x80], 0x400, 0x40, itt=3)
    entry, view = table.place(tag, 0x400, 0x10, itt=3)
    view[:] = b"\xab" * 0x10
    table.account(entry, 0x400, 0x10)
    entry, view = table.place(tag, 0x410, 0x30, itt=3)
    view[:] = b"\xcd" * 0x30
    table.account(entry, 0x410, 0x30)
    assert entry.complete
    assert backing[0x40:0x50] == b"\xab" * 0x10 and backing[0x50:0x80] == b"\xcd" * 0x30
    assert backing[:0x40] == bytes(0x40) and backing[0x80:] == bytes(0x80)


def test_capacity_and_free_list_are_o1() -> None:
    table = DataPointerTable(2, capacity=4)
    mem = memoryview(bytearray(4))
    tags = [table.allocate(mem, 0, 4) for _ in range(4)]
    assert len(table) == 4 and table.free_entries == 0
    with pytest.raises(TableFull):
        table.allocate(mem, 0, 4)
    table.clear()
    assert len(table) == 0
    for t in tags:
        with pytest.raises(PlacementError):
            table.lookup(t)


def test_registry_never_issues_ffff() -> None:
    reg = ConnectionRegistry()
    number = reg.register(object(), 0xFFFE)
    assert number == 0xFFFE
    with pytest.raises(ValueError):
        reg.register(object(), 0xFFFF)
    DataPointerTable(0xFFFE)
    # the highest possible tag is below the reserved 0xFFFFFFFF
    assert tagfmt.pack(0xFFFE, 0xFFF, 0xF) != 0xFFFFFFFF


def test_registry_lookup_by_tag() -> None:
    reg = ConnectionRegistry()
    conn = object()
    n = reg.register(conn)
    assert reg.lookup(tagfmt.pack(n, 3, 2)) is conn
    reg.unregister(n)
    with pytest.raises(PlacementError):
        reg.lookup(tagfmt.pack(n, 3, 2))


def test_entries_are_created_lazily_and_bounded() -> None:
    table = DataPointerTable(3, capacity=8)
    assert table.entries == [] and table.free_entries == 8
    mem = memoryview(bytearray(4))
    tags = [table.allocate(mem, 0, 4) for _ in range(3)]
    assert len(table.entries) == 3 and [t >> 16 & 0xFFF for t in tags] == [0, 1, 2]
    table.free(tags[1])
    assert table.allocate(mem, 0, 4) >> 16 & 0xFFF == 3  # a fresh index before any reuse
    assert table.allocate(mem, 0, 4, index=6) == tagfmt.pack(3, 6, 0)
    assert len(table.entries) == 7 and len(table) == 4
    assert table.allocate(mem, 0, 4) >> 16 & 0xFFF == 7  # fresh until capacity
    # full size reached: freed indexes come back first in, first out
    assert table.allocate(mem, 0, 4) >> 16 & 0xFFF == 1
    assert table.allocate(mem, 0, 4) >> 16 & 0xFFF == 4
    assert table.allocate(mem, 0, 4) >> 16 & 0xFFF == 5


def test_a_tag_recurs_only_after_capacity_times_sixteen_allocations() -> None:
    """Queue depth 1: allocate, free, allocate... The same TTT value comes back only after
    capacity x 16 allocations (fresh indexes, then FIFO reuse, then the 4-bit generation)."""
    capacity = 64
    table = DataPointerTable(9, capacity=capacity)
    mem = memoryview(bytearray(8))
    seen: dict[int, int] = {}
    for n in range(capacity * 16 * 2):
        tag = table.allocate(mem, 0, 8)
        if tag in seen:
            assert n - seen[tag] == capacity * 16
        seen[tag] = n
        table.free(tag)
    assert len(seen) == capacity * 16


def test_stale_tag_caught_by_generation_at_queue_depth_one() -> None:
    table = DataPointerTable(9, capacity=4)
    mem = memoryview(bytearray(8))
    old = table.allocate(mem, 0, 8, itt=5)
    table.free(old)
    for _ in range(3):  # the other indexes first
        table.free(table.allocate(mem, 0, 8, itt=5))
    new = table.allocate(mem, 0, 8, itt=5)  # same index, same ITT, LUN and offsets
    assert (new >> 16) & 0xFFF == (old >> 16) & 0xFFF and new != old
    with pytest.raises(PlacementError, match="stale"):
        table.place(old, 0, 8, itt=5, lun=0)
    table.place(new, 0, 8, itt=5, lun=0)
