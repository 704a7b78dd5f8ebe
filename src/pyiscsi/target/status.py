"""A point-in-time picture of a target process, as a JSON-able dict.

What the admin socket's ``status`` verb answers (``pyiscsi admin status``, ``pyiscsi top``)
and what the Prometheus collector (:mod:`pyiscsi.metrics`) turns into metrics: targets and
their LUNs with their I/O figures, sessions with their negotiated keys, connections with
their data pointer table occupancy, and the server's counters. Read it on the thread of
the event loop that runs the engines (it walks their live dicts).

The I/O figures of a LU or a session are what closed connections left with it plus what its
live connections hold (each connection counts per LUN, :meth:`TargetConnection.close` folds
its figures in), so they only grow while the process runs.
"""

from __future__ import annotations

import os
import time
from dataclasses import fields
from typing import TYPE_CHECKING, Any

from ..proto.keys import _PARAM_FIELDS
from ..proto.wire import Opcode, RejectReason
from ..scsi.iostats import IoStats, bucket_bounds_seconds
from .connection import TargetConnection

if TYPE_CHECKING:
    from ..proto.keys import SessionParams
    from ..transport.store_runner import StoreRunner
    from .catalog import Catalog
    from .session import Session

VERSION = 1
"""Bumped when a field changes meaning or goes away (new fields do not bump it)."""

_YES_NO = {"initial_r2t", "immediate_data", "data_pdu_in_order", "data_sequence_in_order"}


def negotiated_keys(params: SessionParams) -> dict[str, str | int | None]:
    """The operational keys in force, by their RFC 7143 names, as they were agreed on the
    wire (digests ``CRC32C``/``None``, booleans ``Yes``/``No``)."""
    out: dict[str, str | int | None] = {}
    for f in fields(params):
        value = getattr(params, f.name)
        name = _PARAM_FIELDS.get(f.name, (None,))[0]
        if name is None:
            continue  # the two MaxRecvDataSegmentLengths: below, by direction
        if f.name in ("header_digest", "data_digest"):
            value = "CRC32C" if value else "None"
        elif f.name in _YES_NO:
            value = "Yes" if value else "No"
        out[name] = value
    out["MaxRecvDataSegmentLength"] = params.max_recv_data_segment_length
    out["MaxSendDataSegmentLength"] = params.max_send_data_segment_length
    return out


def _name(enum: type[Opcode] | type[RejectReason], value: int) -> str:
    try:
        return enum(value).name.lower()
    except ValueError:
        return f"0x{value:02x}" if value >= 0 else "unknown"


def live_connections(catalog: Catalog) -> list[TargetConnection]:
    """The server's open connections (logged in or not), by connection number."""
    conns = [c for c in catalog.state.connections.values() if isinstance(c, TargetConnection)]
    return sorted(conns, key=lambda c: c.number)


def lun_figures(catalog: Catalog, conns: list[TargetConnection] | None = None
                ) -> dict[tuple[str, int], IoStats]:
    """Every LU's I/O figures by (target name, LUN): its own plus its live connections'."""
    conns = live_connections(catalog) if conns is None else conns
    out: dict[tuple[str, int], IoStats] = {}
    for target in catalog.targets.values():
        for number, lu in target.luns.items():
            total = out[(target.name, number)] = IoStats()
            total.add(lu.stats)
    for conn in conns:
        if conn.target is None:
            continue
        for number, io in conn.io.items():
            lu_total = out.get((conn.target.name, number))
            if lu_total is not None:
                lu_total.add(io)
    return out


def session_figures(session: Session) -> IoStats:
    """A session's I/O figures: its own plus its live connections'."""
    total = IoStats()
    total.add(session.io)
    for conn in session.connections:
        for io in conn.io.values():
            total.add(io)
    return total


def _connection(conn: TargetConnection) -> dict[str, Any]:
    table = conn.table
    params = conn.params
    return {
        "number": conn.number,
        "cid": conn.cid,
        "peer": conn.peer,
        "phase": conn.phase.value,
        "tsih": conn.session.tsih if conn.session is not None else None,
        "tasks": len(conn.tasks),
        "table_entries": len(table),
        "table_capacity": table.capacity,
        "r2t_entries": conn.transfers.r2t_entries,
        "r2t_waiting": len(conn.transfers.waiting),
        "held_bytes": conn.transfers.held_bytes,
        "header_digest": bool(params.header_digest) if params is not None else False,
        "data_digest": bool(params.data_digest) if params is not None else False,
        "internal_errors": conn.internal_errors,
    }


def _session(session: Session) -> dict[str, Any]:
    return {
        "tsih": session.tsih,
        "isid": f"{session.isid:012x}",
        "initiator": session.initiator_name,
        "target": session.target.name if session.target is not None else None,
        "type": session.params.session_type,
        "tasks": session.active,
        "expcmdsn": session.expcmdsn,
        "maxcmdsn": session.maxcmdsn,
        "connections": [c.number for c in session.connections],
        "keys": negotiated_keys(session.params),
        "stats": session_figures(session).snapshot(),
    }


def snapshot(catalog: Catalog, *, runner: StoreRunner | None = None) -> dict[str, Any]:
    """The whole picture (see the module's docstring); every value is JSON-able."""
    conns = live_connections(catalog)
    figures = lun_figures(catalog, conns)
    state = catalog.state
    counters: dict[str, int] = dict(state.snapshot())
    counters["sessions_created"] = state.events.sessions
    if runner is not None:
        counters["store_requests"] = runner.stats.submitted
        counters["store_requests_failed"] = runner.stats.failed
        counters["store_requests_async"] = runner.stats.async_completed
        counters["store_requests_queued_max"] = runner.stats.queued_max
    targets = []
    for target in catalog.targets.values():
        luns = []
        for number, lu in sorted(target.luns.items()):
            luns.append({
                "lun": number,
                "store": lu.store.name,
                "block_size": lu.block_size,
                "blocks": lu.blocks,
                "bytes": lu.blocks * lu.block_size,
                "read_only": lu.read_only,
                "serial": lu.serial,
                "shared": lu.shared,
                "events_linked": lu.events is not None,
                "sessions": sum(1 for s in catalog.sessions.values() if s.target is target),
                "stats": figures[(target.name, number)].snapshot(),
            })
        targets.append({"name": target.name, "alias": target.alias, "luns": luns})
    return {
        "version": VERSION,
        "pid": os.getpid(),
        "time": time.time(),
        "monotonic_ns": time.monotonic_ns(),
        "portals": catalog.portal_addresses(),
        "target_port": {"tpgt": catalog.port.group,
                        "relative_port_id": catalog.port.relative_id},
        "latency_bucket_bounds_s": bucket_bounds_seconds(),
        "counters": counters,
        "rejects": [{"opcode": _name(Opcode, op), "reason": _name(RejectReason, reason),
                     "count": n} for (op, reason), n in sorted(state.events.rejects.items())],
        "table": {"entries": sum(len(c.table) for c in conns),
                  "capacity": sum(c.table.capacity for c in conns)},
        "targets": targets,
        "sessions": [_session(s) for _, s in sorted(catalog.sessions.items())],
        "connections": [_connection(c) for c in conns],
    }
