"""The process-wide copy counters: snapshot and reset (bookkeeping only; what the tx counters
count is measured against a real server and socket in test_tx_zero_copy.py)."""

from __future__ import annotations

from pyiscsi.placement.counters import SIZE_BUCKETS, CopyCounters, size_bucket
from pyiscsi.target.catalog import Catalog
from pyiscsi.target.server import TargetServer

TOTALS = ["rx_placed", "rx_staged", "rx_discarded", "tx_zero_copy", "tx_copied"]
SPLIT = [f"{name}_{bucket}" for name in ("rx_placed", "rx_staged", "tx_zero_copy", "tx_copied")
         for bucket in ("lt4k", "4k_64k", "ge64k")]
FIELDS = TOTALS + SPLIT


def test_fresh_counters_are_zero() -> None:
    assert CopyCounters().snapshot() == dict.fromkeys(FIELDS, 0)


def test_size_bucket_boundaries() -> None:
    assert SIZE_BUCKETS == ("lt4k", "4k_64k", "ge64k")
    assert [size_bucket(n) for n in (0, 1, 4095, 4096, 65535, 65536, 1 << 20)] == \
        [0, 0, 0, 1, 1, 2, 2]


def test_snapshot_keys_totals_are_sums_of_the_buckets() -> None:
    c = CopyCounters()
    c.rx_placed_by_size[:] = [1, 2, 3]
    c.rx_staged_by_size[2] = 22
    c.rx_discarded = 333
    c.tx_zero_copy_by_size[1] = 4444
    c.tx_copied_by_size[0] = 55555
    snap = c.snapshot()
    assert list(snap) == FIELDS
    assert [snap[k] for k in TOTALS] == [6, 22, 333, 4444, 55555]
    assert (snap["rx_placed_lt4k"], snap["rx_placed_4k_64k"], snap["rx_placed_ge64k"]) == (1, 2, 3)
    assert snap["rx_staged_ge64k"] == 22 and snap["rx_staged_lt4k"] == 0
    assert snap["tx_zero_copy_4k_64k"] == 4444 and snap["tx_copied_lt4k"] == 55555


def test_sent_adds_a_flush_to_the_path_the_transport_took() -> None:
    c = CopyCounters()
    c.sent([1, 2, 3], zero_copy=True)
    c.sent([10, 0, 30], zero_copy=False)
    c.sent([0, 0, 100], zero_copy=True)
    assert c.tx_zero_copy_by_size == [1, 2, 103] and c.tx_zero_copy == 106
    assert c.tx_copied_by_size == [10, 0, 30] and c.tx_copied == 40


def test_snapshot_is_a_copy_not_a_live_view() -> None:
    c = CopyCounters()
    c.tx_copied_by_size[2] = 7
    snap = c.snapshot()
    c.tx_copied_by_size[2] += 5
    snap["rx_placed"] = 99
    assert snap["tx_copied"] == 7 and snap["tx_copied_ge64k"] == 7
    assert c.tx_copied == 12
    assert c.rx_placed == 0


def test_reset_zeroes_every_counter() -> None:
    c = CopyCounters(rx_placed_by_size=[1, 1, 1], rx_staged_by_size=[2, 0, 0], rx_discarded=3,
                     tx_zero_copy_by_size=[0, 4, 0], tx_copied_by_size=[0, 0, 5])
    lists = (c.rx_placed_by_size, c.rx_staged_by_size)
    c.reset()
    assert c.snapshot() == dict.fromkeys(FIELDS, 0)
    assert (c.rx_placed_by_size, c.rx_staged_by_size) == lists  # same lists, zeroed in place
    c.rx_staged_by_size[1] += 9
    assert c.snapshot()["rx_staged"] == 9


def test_counters_have_no_instance_dict() -> None:
    c = CopyCounters()
    assert not hasattr(c, "__dict__")


def test_two_servers_in_one_process_keep_separate_figures() -> None:
    """Counters, connection numbers and challenges belong to a server, not to the module."""
    first, second = TargetServer(Catalog([])), TargetServer(Catalog([]))
    first.catalog.state.copies.rx_placed_by_size[1] += 4096
    first.catalog.state.receive.header += 1
    assert second.stats()["rx_placed"] == 0 and second.stats()["header_digest_errors"] == 0
    assert first.stats()["rx_placed"] == 4096
    a = first.catalog.state.connections.register(object())
    b = second.catalog.state.connections.register(object())
    assert a == b == 1  # each server numbers its own connections
    assert first.catalog.state.challenges is not second.catalog.state.challenges
