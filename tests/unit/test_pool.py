"""The registered buffer pool: slices come back only when nothing references them."""

from __future__ import annotations

import gc

from pyiscsi.backstore.pool import BufferPool


def test_slice_returns_when_the_last_view_is_gone() -> None:
    pool = BufferPool()
    view = pool.take(5000)
    assert len(view) == 5000 and not view.readonly and pool.in_use == 8192
    part = view[100:200]  # what a data pointer table entry or an aio holds
    del view
    gc.collect()
    assert pool.in_use == 8192  # still referenced: never handed out again
    other = pool.take(5000)
    part[:1] = b"x"
    assert other[100:101] != b"x" or other is not part
    del part
    assert pool.in_use == 8192  # only `other` now
    del other
    assert pool.in_use == 0


def test_reused_slot_and_overflow() -> None:
    pool = BufferPool(largest=8192, limit=4 << 20)
    first = pool.take(4096)
    first[:3] = b"abc"
    del first
    again = pool.take(4096)
    assert bytes(again[:3]) == b"abc"  # same slot (the pool does not clear)
    big = pool.take(16384)  # larger than the largest class: a private buffer
    assert len(big) == 16384 and pool.stats.overflow == 1
    assert pool.stats.taken == 2
