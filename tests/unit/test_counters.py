"""The process-wide copy counters: snapshot and reset (bookkeeping only; what the tx counters
count is measured against a real server and socket in test_tx_zero_copy.py)."""

from __future__ import annotations

from pyiscsi.placement.counters import CopyCounters
from pyiscsi.target.catalog import Catalog
from pyiscsi.target.server import TargetServer

FIELDS = ["rx_placed", "rx_staged", "rx_discarded", "tx_zero_copy", "tx_copied"]


def test_fresh_counters_are_zero() -> None:
    assert CopyCounters().snapshot() == dict.fromkeys(FIELDS, 0)


def test_snapshot_keys_in_declaration_order_and_values() -> None:
    c = CopyCounters()
    c.rx_placed = 1
    c.rx_staged = 22
    c.rx_discarded = 333
    c.tx_zero_copy = 4444
    c.tx_copied = 55555
    snap = c.snapshot()
    assert list(snap) == FIELDS
    assert snap == {"rx_placed": 1, "rx_staged": 22, "rx_discarded": 333,
                    "tx_zero_copy": 4444, "tx_copied": 55555}


def test_snapshot_is_a_copy_not_a_live_view() -> None:
    c = CopyCounters()
    c.tx_copied = 7
    snap = c.snapshot()
    c.tx_copied += 5
    snap["rx_placed"] = 99
    assert snap["tx_copied"] == 7
    assert c.tx_copied == 12
    assert c.rx_placed == 0


def test_reset_zeroes_every_counter() -> None:
    c = CopyCounters(rx_placed=1, rx_staged=2, rx_discarded=3, tx_zero_copy=4, tx_copied=5)
    c.reset()
    assert c.snapshot() == dict.fromkeys(FIELDS, 0)
    c.rx_staged += 9
    assert c.snapshot()["rx_staged"] == 9


def test_counters_have_no_instance_dict() -> None:
    c = CopyCounters()
    assert not hasattr(c, "__dict__")


def test_two_servers_in_one_process_keep_separate_figures() -> None:
    """Counters, connection numbers and challenges belong to a server, not to the module."""
    first, second = TargetServer(Catalog([])), TargetServer(Catalog([]))
    first.catalog.state.copies.rx_placed += 4096
    first.catalog.state.receive.header += 1
    assert second.stats()["rx_placed"] == 0 and second.stats()["header_digest_errors"] == 0
    assert first.stats()["rx_placed"] == 4096
    a = first.catalog.state.connections.register(object())
    b = second.catalog.state.connections.register(object())
    assert a == b == 1  # each server numbers its own connections
    assert first.catalog.state.challenges is not second.catalog.state.challenges
