"""``pyiscsi top`` / ``admin status`` views: rates from two snapshots, rendering."""

from __future__ import annotations

import io
import struct

import pytest
from rich.console import Console

from pyiscsi.scsi.iostats import IoStats, bucket_bounds_seconds
from pyiscsi.target import status
from pyiscsi.target.connection import TargetConnection
from pyiscsi.top import lun_rates, rates, session_rates, status_view, top_view

from ..pair import TARGET, Initiator, drain, make_catalog


def figures(reads: int, nbytes: int, ns: int) -> dict[str, object]:
    stats = IoStats()
    for _ in range(reads):
        stats.record(True, False, nbytes, True, ns)
    return stats.snapshot()


def test_rates_are_differences_over_time() -> None:
    bounds = bucket_bounds_seconds()
    prev = figures(100, 4096, 10_000)
    cur = figures(300, 4096, 10_000)
    r = rates(cur, prev, 2.0, bounds)
    assert r.read_iops == 100 and r.iops == 100 and r.write_iops == 0
    assert r.read_mbps == pytest.approx(200 * 4096 / 2 / 1e6)
    assert r.latency_avg_us == pytest.approx(10.0)
    assert r.latency_p99_us == pytest.approx(16.384)  # 10 us lies in [8.192, 16.384) us
    idle = rates(cur, cur, 1.0, bounds)
    assert idle.iops == 0 and idle.latency_avg_us is None and idle.latency_p99_us is None


def render(renderable: object) -> str:
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def test_views_of_a_live_engine() -> None:
    ini = Initiator(TargetConnection(make_catalog(), "10.1.1.1:999"))
    ini.login()
    first = status.snapshot(ini.conn.catalog)
    for i in range(5):
        ini.command(struct.pack(">BBIBHB", 0x28, 0, i, 0, 8, 0), edtl=4096, read=True)
    drain(ini.conn)
    second = status.snapshot(ini.conn.catalog)
    (lun,) = lun_rates(second, first).values()
    assert lun.read_iops > 0 and lun.read_mbps > 0
    (session,) = session_rates(second, first).values()
    assert session.read_iops == lun.read_iops
    assert all(r.iops == 0 for r in lun_rates(second, None).values())  # no interval yet
    top = render(top_view(second, first))
    assert f"LUNs of {TARGET}" in top and "iqn.2026-11.org.pyiscsi:tester" in top
    text = render(status_view(second))
    for word in ("Sessions", "Connections", "Counters", "10.1.1.1:999", "HD=None",
                 "16.0MiB", "4096"):
        assert word in text
