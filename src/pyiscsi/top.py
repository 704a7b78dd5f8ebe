"""What ``pyiscsi admin status`` and ``pyiscsi top`` show: rich tables built from status
snapshots (:mod:`pyiscsi.target.status`); ``top``'s rates are differences of two snapshots.
Pure functions of the snapshots (the CLI fetches them from the admin socket)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

Snapshot = dict[str, Any]


@dataclass(frozen=True)
class Rates:
    """Per-second figures between two snapshots of one LU or session."""

    read_iops: float
    write_iops: float
    other_iops: float
    read_mbps: float
    write_mbps: float
    latency_avg_us: float | None
    """Mean latency of the commands answered in the interval (None: none answered)."""
    latency_p99_us: float | None
    """Upper bound of the log2 bucket holding the 99th percentile."""
    errors: int

    @property
    def iops(self) -> float:
        return self.read_iops + self.write_iops + self.other_iops


def _delta(cur: dict[str, Any], prev: dict[str, Any] | None, key: str) -> int:
    return int(cur[key]) - (int(prev[key]) if prev is not None else 0)


def rates(cur: dict[str, Any], prev: dict[str, Any] | None, seconds: float,
          bounds: list[float]) -> Rates:
    """Rates of one figures dict (``stats`` of a LU or session) over ``seconds``; with no
    previous figures, since the figures began."""
    seconds = max(seconds, 1e-9)
    reads = _delta(cur, prev, "read_commands")
    writes = _delta(cur, prev, "write_commands")
    others = _delta(cur, prev, "other_commands")
    commands = reads + writes + others
    latency = _delta(cur, prev, "latency_ns")
    buckets = [c - (p if prev is not None else 0) for c, p in
               zip(cur["latency_buckets"], prev["latency_buckets"] if prev is not None
                   else cur["latency_buckets"], strict=True)]
    p99 = None
    if commands:
        wanted, seen = 0.99 * sum(buckets), 0
        for i, n in enumerate(buckets):
            seen += n
            if seen >= wanted and n:
                p99 = bounds[i] * 1e6 if i < len(bounds) else float("inf")
                break
    return Rates(read_iops=reads / seconds, write_iops=writes / seconds,
                 other_iops=others / seconds,
                 read_mbps=_delta(cur, prev, "read_bytes") / seconds / 1e6,
                 write_mbps=_delta(cur, prev, "write_bytes") / seconds / 1e6,
                 latency_avg_us=latency / commands / 1e3 if commands else None,
                 latency_p99_us=p99, errors=_delta(cur, prev, "errors"))


def _seconds(cur: Snapshot, prev: Snapshot | None) -> float:
    if prev is None:
        return 1.0
    return (int(cur["monotonic_ns"]) - int(prev["monotonic_ns"])) / 1e9


def lun_rates(cur: Snapshot, prev: Snapshot | None) -> dict[tuple[str, int], Rates]:
    """Rates of every LU by (target, LUN) between two snapshots."""
    seconds = _seconds(cur, prev)
    before: dict[tuple[str, int], dict[str, Any]] = {}
    if prev is not None:
        for target in prev["targets"]:
            for lu in target["luns"]:
                before[(target["name"], lu["lun"])] = lu["stats"]
    out = {}
    for target in cur["targets"]:
        for lu in target["luns"]:
            key = (target["name"], lu["lun"])
            out[key] = rates(lu["stats"], before.get(key) if prev is not None else lu["stats"],
                             seconds, cur["latency_bucket_bounds_s"])
    return out


def session_rates(cur: Snapshot, prev: Snapshot | None) -> dict[int, Rates]:
    """Rates of every session by TSIH (a session new since ``prev`` counts from zero)."""
    seconds = _seconds(cur, prev)
    before = {s["tsih"]: s["stats"] for s in prev["sessions"]} if prev is not None else {}
    return {s["tsih"]: rates(s["stats"], before.get(s["tsih"]) if prev is not None
                             else s["stats"], seconds, cur["latency_bucket_bounds_s"])
            for s in cur["sessions"]}


def _us(value: float | None) -> str:
    if value is None:
        return "-"
    if value == float("inf"):
        return ">17s"
    if value >= 1e6:
        return f"{value / 1e6:.2f}s"
    if value >= 1e3:
        return f"{value / 1e3:.2f}ms"
    return f"{value:.0f}us"


def _size(n: int) -> str:
    if n < 1024:
        return f"{n}B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024:
            return f"{value:.1f}{unit}"
    return f"{value / 1024:.1f}TiB"


def _header(snap: Snapshot) -> Text:
    c = snap["counters"]
    table = snap["table"]
    normal = sum(1 for s in snap["sessions"] if s["type"] == "Normal")
    rejects = sum(r["count"] for r in snap["rejects"])
    return Text(
        f"pyiscsi pid {snap['pid']}  portals {' '.join(snap['portals']) or '-'}\n"
        f"sessions {normal} (+{len(snap['sessions']) - normal} discovery)  "
        f"connections {len(snap['connections'])}  table {table['entries']}/{table['capacity']}  "
        f"R2Ts {c['r2ts']}  rejects {rejects}  digest errors "
        f"{c['header_digest_errors'] + c['data_digest_errors']}  "
        f"internal errors {c['internal_errors']}")


def _lun_title(snap: Snapshot) -> tuple[str, bool]:
    """The LUN table's title, and whether rows need a target column (several targets)."""
    names = [t["name"] for t in snap["targets"]]
    if len(names) == 1:
        return f"LUNs of {names[0]}", False
    return "LUNs", True


def top_view(cur: Snapshot, prev: Snapshot | None) -> RenderableType:
    """``pyiscsi top``'s screen: a header line, LUN and session rates."""
    title, with_target = _lun_title(cur)
    luns = Table(title=title, title_justify="left")
    if with_target:
        luns.add_column("target", overflow="fold")
    for col in ("lun", "IOPS", "r IOPS", "w IOPS", "r MB/s", "w MB/s", "lat avg",
                "lat p99", "errors"):
        luns.add_column(col, justify="right")
    for (target, lun), r in lun_rates(cur, prev).items():
        luns.add_row(*([target] if with_target else []), str(lun), f"{r.iops:.0f}",
                     f"{r.read_iops:.0f}", f"{r.write_iops:.0f}", f"{r.read_mbps:.1f}",
                     f"{r.write_mbps:.1f}", _us(r.latency_avg_us), _us(r.latency_p99_us),
                     str(r.errors))
    sessions = Table(title="Sessions", title_justify="left")
    for col in ("tsih", "initiator", "conns", "tasks", "IOPS", "r MB/s", "w MB/s",
                "lat avg"):
        sessions.add_column(col, justify="left" if col == "initiator" else "right",
                            overflow="fold")
    by_tsih = {s["tsih"]: s for s in cur["sessions"]}
    for tsih, r in session_rates(cur, prev).items():
        s = by_tsih[tsih]
        who = s["initiator"] if s["target"] else f"{s['initiator']} (discovery)"
        sessions.add_row(str(tsih), who, str(len(s["connections"])), str(s["tasks"]),
                         f"{r.iops:.0f}", f"{r.read_mbps:.1f}", f"{r.write_mbps:.1f}",
                         _us(r.latency_avg_us))
    return Group(_header(cur), luns, sessions)


def status_view(snap: Snapshot) -> RenderableType:
    """``pyiscsi admin status``: LUNs, sessions, connections, counters (totals)."""
    title, with_target = _lun_title(snap)
    luns = Table(title=title, title_justify="left")
    if with_target:
        luns.add_column("target", overflow="fold")
    for col in ("lun", "store", "size", "ro", "reads", "read", "writes", "written",
                "other", "errors", "avg lat"):
        luns.add_column(col, justify="left" if col == "store" else "right",
                        overflow="fold")
    for target in snap["targets"]:
        for lu in target["luns"]:
            st = lu["stats"]
            commands = st["read_commands"] + st["write_commands"] + st["other_commands"]
            avg = st["latency_ns"] / commands / 1e3 if commands else None
            luns.add_row(*([target["name"]] if with_target else []), str(lu["lun"]),
                         lu["store"], _size(lu["bytes"]),
                         "yes" if lu["read_only"] else "", str(st["read_commands"]),
                         _size(st["read_bytes"]), str(st["write_commands"]),
                         _size(st["write_bytes"]), str(st["other_commands"]),
                         str(st["errors"]), _us(avg))
    sessions = Table(title="Sessions", title_justify="left")
    for col in ("tsih", "isid", "initiator", "target", "conns", "tasks", "CmdSN window",
                "keys"):
        sessions.add_column(col, overflow="fold")
    for s in snap["sessions"]:
        k = s["keys"]
        keys = (f"HD={k['HeaderDigest']} DD={k['DataDigest']} MBL={k['MaxBurstLength']} "
                f"FBL={k['FirstBurstLength']} IR2T={k['InitialR2T']} "
                f"ID={k['ImmediateData']} R2T={k['MaxOutstandingR2T']} "
                f"MRDSL={k['MaxRecvDataSegmentLength']}/{k['MaxSendDataSegmentLength']}")
        sessions.add_row(str(s["tsih"]), s["isid"], s["initiator"], s["target"] or "(discovery)",
                         " ".join(map(str, s["connections"])), str(s["tasks"]),
                         f"{s['expcmdsn']}..{s['maxcmdsn']}", keys)
    conns = Table(title="Connections", title_justify="left")
    for col in ("conn", "cid", "peer", "tsih", "phase", "tasks", "table", "R2T entries",
                "held"):
        conns.add_column(col, overflow="fold")
    for c in snap["connections"]:
        conns.add_row(str(c["number"]), str(c["cid"]), c["peer"],
                      str(c["tsih"]) if c["tsih"] is not None else "-", c["phase"],
                      str(c["tasks"]), f"{c['table_entries']}/{c['table_capacity']}",
                      str(c["r2t_entries"]), _size(c["held_bytes"]))
    counters = Table(title="Counters", title_justify="left")
    counters.add_column("counter")
    counters.add_column("value", justify="right")
    for key, value in snap["counters"].items():
        counters.add_row(key, str(value))
    for r in snap["rejects"]:
        counters.add_row(f"rejects {r['opcode']} {r['reason']}", str(r["count"]))
    return Group(_header(snap), luns, sessions, conns, counters)
