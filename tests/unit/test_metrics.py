"""Prometheus exposition of the engine's figures: names, labels, histogram, scrape thread."""

from __future__ import annotations

import asyncio
import struct
import threading
import urllib.request

import pytest
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pyiscsi.metrics import make_registry, on_loop, serve_metrics
from pyiscsi.proto import pdu as P
from pyiscsi.scsi.iostats import LATENCY_BUCKETS
from pyiscsi.target import status
from pyiscsi.target.connection import TargetConnection

from ..pair import TARGET, Initiator, drain, feed, make_catalog, wire


def scrape(ini: Initiator) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    registry = make_registry(lambda: status.snapshot(ini.conn.catalog))
    text = generate_latest(registry).decode()
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


@pytest.fixture
def ini() -> Initiator:
    ini = Initiator(TargetConnection(make_catalog(), "metrics"))
    ini.login()
    return ini


LUN0 = (("lun", "0"), ("target", TARGET))


def test_lun_metrics_after_a_read_and_a_write(ini: Initiator) -> None:
    ini.command(struct.pack(">BBIBHB", 0x2A, 0, 0, 0, 8, 0), edtl=4096, write=True,
                immediate_data=b"\x01" * 4096)
    ini.command(struct.pack(">BBIBHB", 0x28, 0, 0, 0, 8, 0), edtl=4096, read=True)
    drain(ini.conn)
    m = scrape(ini)
    assert m["pyiscsi_lun_read_bytes_total"][LUN0] == 4096
    assert m["pyiscsi_lun_write_bytes_total"][LUN0] == 4096
    assert m["pyiscsi_lun_read_commands_total"][LUN0] == 1
    assert m["pyiscsi_lun_write_commands_total"][LUN0] == 1
    assert m["pyiscsi_lun_latency_seconds_count"][LUN0] == 2
    assert 0 < m["pyiscsi_lun_latency_seconds_sum"][LUN0] < 10
    buckets = {dict(k)["le"]: v for k, v in m["pyiscsi_lun_latency_seconds_bucket"].items()}
    assert len(buckets) == LATENCY_BUCKETS and buckets["+Inf"] == 2
    values = [buckets[le] for le in sorted(buckets, key=float)]
    assert values == sorted(values)  # cumulative
    assert m["pyiscsi_lun_size_bytes"][LUN0] == 16 << 20
    assert m["pyiscsi_sessions"][(("type", "normal"),)] == 1
    assert m["pyiscsi_connections"][()] == 1
    assert m["pyiscsi_logins_total"][()] == 1
    assert m["pyiscsi_payload_bytes_total"][(("direction", "rx"), ("path", "staged"))] >= 0
    by_size = m["pyiscsi_payload_size_bytes_total"]
    rx = {(dict(k)["path"], dict(k)["size"]): v for k, v in by_size.items()
          if dict(k)["direction"] == "rx"}
    # the 4 KiB of immediate data, placed or staged, in the 4-64 KiB bucket; nothing else
    assert rx[("placed", "4k_64k")] + rx[("staged", "4k_64k")] == 4096
    assert sum(rx.values()) == 4096
    assert len(by_size) == 12  # rx placed/staged, tx zero_copy/copied, by three sizes
    assert m["pyiscsi_table_capacity"][()] == 4096
    assert all(name.startswith("pyiscsi_") for name in m)


def test_rejects_and_r2ts_are_exported(ini: Initiator) -> None:
    ini.command(struct.pack(">BBIBHB", 0x2A, 0, 0, 0, 8, 0), edtl=4096, write=True)
    feed(ini.conn, wire(P.DataOut(
        itt=0x99, ttt=0x4321, buffer_offset=0, data_length=0, final=True)))
    drain(ini.conn)
    m = scrape(ini)
    assert m["pyiscsi_r2ts_total"][()] == 1
    (labels,) = m["pyiscsi_rejects_total"]
    assert dict(labels)["opcode"] == "data_out"
    assert m["pyiscsi_table_entries"][()] == 1  # the R2T's burst is still open


def test_own_registry_not_the_global_one(ini: Initiator) -> None:
    make_registry(lambda: status.snapshot(ini.conn.catalog))
    assert b"pyiscsi_" not in generate_latest(REGISTRY)


def test_http_endpoint_snapshots_on_the_loop_thread(ini: Initiator) -> None:
    threads: list[str] = []

    async def main() -> bytes:
        loop = asyncio.get_running_loop()

        def snap() -> dict[str, object]:
            threads.append(threading.current_thread().name)
            return status.snapshot(ini.conn.catalog)

        server = serve_metrics("127.0.0.1", 0, make_registry(on_loop(loop, snap)))
        try:
            assert server.url.startswith("http://127.0.0.1:") and server.url.endswith("/metrics")
            return await loop.run_in_executor(
                None, lambda: urllib.request.urlopen(server.url, timeout=10).read())
        finally:
            await loop.run_in_executor(None, server.close)

    body = asyncio.run(main())
    assert b"pyiscsi_lun_read_bytes_total" in body
    assert threads == [threading.main_thread().name]
