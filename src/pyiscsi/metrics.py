"""Prometheus metrics of a target process (``pyiscsi serve --metrics HOST:PORT``).

Nothing is counted here: at scrape time :class:`EngineCollector` takes one status snapshot
(:func:`pyiscsi.target.status.snapshot`, the engine's own counters) and turns it into
metric families. The snapshot is taken on the event loop's thread (:func:`on_loop`): the
HTTP server runs on a thread of its own and never walks the engine's live dicts itself.
Every name starts with ``pyiscsi_``; LU metrics are labelled ``target`` and ``lun``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from .placement.counters import SIZE_BUCKETS

Snapshot = Callable[[], dict[str, Any]]

_LUN_COUNTERS = (
    ("read_bytes", "Data-In payload bytes sent for READ-type commands"),
    ("write_bytes", "Data-Out payload bytes received for WRITE-type commands"),
    ("read_commands", "Commands answered that read (R bit)"),
    ("write_commands", "Commands answered that write (W bit)"),
    ("other_commands", "Commands answered that transfer no data"),
    ("errors", "Commands answered with a status other than GOOD, or with sense"),
)
_SERVER_COUNTERS = (
    ("logins", "logins", "Connections that completed login (normal and discovery)"),
    ("login_failures", "login_failures", "Logins refused"),
    ("sessions_created", "sessions_created", "Sessions created by a leading login"),
    ("connections", "connections_accepted", "TCP connections accepted"),
    ("r2ts", "r2ts", "R2T PDUs sent"),
    ("remote_aborts", "remote_aborts",
     "Commands aborted by a reset or CLEAR TASK SET through another gateway"),
    ("protocol_errors", "protocol_errors", "Connections closed for a protocol error"),
    ("internal_errors", "internal_errors", "Exceptions that escaped a connection's handler"),
    ("untrusted_headers", "untrusted_headers", "Headers whose lengths could not be trusted"),
    ("partial_pdus", "partial_pdus", "Connections closed sitting on part of a PDU"),
    ("store_requests", "store_requests", "Store requests run off the event loop"),
    ("store_requests_failed", "store_requests_failed", "Store requests that raised"),
    ("store_requests_async", "store_requests_async",
     "Store requests completed by the store's own asynchronous I/O (librbd aio), no thread"),
)
_PAYLOAD = (
    ("rx_placed", "rx", "placed"),
    ("rx_staged", "rx", "staged"),
    ("rx_discarded", "rx", "discarded"),
    ("tx_zero_copy", "tx", "zero_copy"),
    ("tx_copied", "tx", "copied"),
)


class EngineCollector(Collector):
    """Metric families built from one status snapshot per scrape."""

    def __init__(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot

    def describe(self) -> Iterable[Metric]:
        return []  # registering must not take a snapshot

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        yield from _lun_metrics(snap)
        yield from _server_metrics(snap)


def _lun_metrics(snap: dict[str, Any]) -> Iterator[Metric]:
    labels = ["target", "lun"]
    counters = {key: CounterMetricFamily(f"pyiscsi_lun_{key}", doc, labels=labels)
                for key, doc in _LUN_COUNTERS}
    latency = HistogramMetricFamily(
        "pyiscsi_lun_latency_seconds",
        "Command latency, header received to status sent (log2 buckets from 1.024 us)",
        labels=labels)
    size = GaugeMetricFamily("pyiscsi_lun_size_bytes", "Capacity of the LU", labels=labels)
    sessions = GaugeMetricFamily("pyiscsi_lun_sessions", "Sessions logged in to the LU's target",
                                 labels=labels)
    bounds = snap["latency_bucket_bounds_s"]
    for target in snap["targets"]:
        for lu in target["luns"]:
            values = [target["name"], str(lu["lun"])]
            stats = lu["stats"]
            for key, family in counters.items():
                family.add_metric(values, stats[key])
            cumulative, buckets = 0, []
            for bound, count in zip(bounds, stats["latency_buckets"], strict=False):
                cumulative += count
                buckets.append((repr(bound), cumulative))
            buckets.append(("+Inf", sum(stats["latency_buckets"])))
            latency.add_metric(values, buckets, stats["latency_ns"] / 1e9)
            size.add_metric(values, lu["bytes"])
            sessions.add_metric(values, lu["sessions"])
    yield from counters.values()
    yield latency
    yield size
    yield sessions


def _server_metrics(snap: dict[str, Any]) -> Iterator[Metric]:
    counters = snap["counters"]
    for key, name, doc in _SERVER_COUNTERS:
        if key in counters:
            yield CounterMetricFamily(f"pyiscsi_{name}", doc, value=counters[key])
    digest = CounterMetricFamily("pyiscsi_digest_errors", "CRC32C digest failures",
                                 labels=["kind"])
    digest.add_metric(["header"], counters["header_digest_errors"])
    digest.add_metric(["data"], counters["data_digest_errors"])
    yield digest
    payload = CounterMetricFamily(
        "pyiscsi_payload_bytes",
        "Payload bytes by how they moved: placed straight into the store, staged and copied "
        "once, discarded; sent as views (zero_copy) or copied", labels=["direction", "path"])
    for key, direction, path in _PAYLOAD:
        payload.add_metric([direction, path], counters[key])
    yield payload
    by_size = CounterMetricFamily(
        "pyiscsi_payload_size_bytes",
        "Payload bytes placed or staged (rx), sent as views or copied (tx), by the size of "
        "the PDU's data segment: lt4k (< 4 KiB), 4k_64k, ge64k (>= 64 KiB)",
        labels=["direction", "path", "size"])
    for key, direction, path in _PAYLOAD:
        for size in SIZE_BUCKETS:
            if f"{key}_{size}" in counters:
                by_size.add_metric([direction, path, size], counters[f"{key}_{size}"])
    yield by_size
    rejects = CounterMetricFamily("pyiscsi_rejects",
                                  "Reject PDUs sent, by refused opcode and reason",
                                  labels=["opcode", "reason"])
    for row in snap["rejects"]:
        rejects.add_metric([row["opcode"], row["reason"]], row["count"])
    yield rejects
    sessions = GaugeMetricFamily("pyiscsi_sessions", "Sessions logged in", labels=["type"])
    kinds = {"Normal": 0, "Discovery": 0}
    for s in snap["sessions"]:
        kinds[s["type"]] = kinds.get(s["type"], 0) + 1
    for kind, n in kinds.items():
        sessions.add_metric([kind.lower()], n)
    yield sessions
    conns = snap["connections"]
    yield GaugeMetricFamily("pyiscsi_connections", "TCP connections open", value=len(conns))
    yield GaugeMetricFamily("pyiscsi_tasks", "SCSI tasks in flight",
                            value=sum(c["tasks"] for c in conns))
    yield GaugeMetricFamily("pyiscsi_table_entries",
                            "Data pointer table entries in use (all connections)",
                            value=snap["table"]["entries"])
    yield GaugeMetricFamily("pyiscsi_table_capacity",
                            "Data pointer table entries (all connections)",
                            value=snap["table"]["capacity"])
    yield GaugeMetricFamily("pyiscsi_held_bytes",
                            "Unsolicited data staged for commands held behind a CmdSN gap",
                            value=sum(c["held_bytes"] for c in conns))


def make_registry(snapshot: Snapshot) -> CollectorRegistry:
    """A registry of its own (not the process-global one) with the engine's collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EngineCollector(snapshot))
    return registry


def on_loop(loop: asyncio.AbstractEventLoop, fn: Snapshot, timeout: float = 5.0) -> Snapshot:
    """``fn`` made callable from any thread: it runs on ``loop``'s thread (where the engines
    live) and the caller waits for its answer at most ``timeout`` seconds."""

    def call() -> dict[str, Any]:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            return fn()
        future: concurrent.futures.Future[dict[str, Any]] = concurrent.futures.Future()

        def run() -> None:
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn())
                except BaseException as exc:
                    future.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return future.result(timeout)

    return call


@dataclass
class MetricsServer:
    """The HTTP endpoint serving ``/metrics`` on a thread of its own."""

    url: str
    _httpd: Any
    _thread: Any

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def serve_metrics(host: str, port: int, registry: CollectorRegistry) -> MetricsServer:
    """Listen on ``host:port`` (0: a free port) and serve the registry; the URL tells the
    port really bound."""
    from prometheus_client import start_http_server

    httpd, thread = start_http_server(port, addr=host, registry=registry)
    bound = httpd.server_address[1]
    shown = f"[{host}]" if ":" in host else host
    return MetricsServer(f"http://{shown}:{bound}/metrics", httpd, thread)
