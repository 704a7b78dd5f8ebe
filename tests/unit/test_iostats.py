"""The engine's own figures: per-LU and per-session I/O, R2Ts, rejects, logins; the status
snapshot built from them."""

from __future__ import annotations

import json
import struct

import pytest

from pyiscsi.proto import pdu as P
from pyiscsi.proto.wire import RejectReason
from pyiscsi.scsi.iostats import LATENCY_BUCKETS, IoStats, bucket_bounds_seconds
from pyiscsi.target import status
from pyiscsi.target.connection import TargetConnection

from ..pair import TARGET, Initiator, drain, feed, make_catalog, wire


def read10(lba: int, blocks: int) -> bytes:
    return struct.pack(">BBIBHB", 0x28, 0, lba, 0, blocks, 0)


def write10(lba: int, blocks: int) -> bytes:
    return struct.pack(">BBIBHB", 0x2A, 0, lba, 0, blocks, 0)


@pytest.fixture
def ini() -> Initiator:
    conn = TargetConnection(make_catalog(luns=2), "figures")
    ini = Initiator(conn)
    ini.login(max_recv_data_segment_length=8192, max_burst_length=65536,
              first_burst_length=16384, max_outstanding_r2t=1)
    return ini


def lun_stats(ini: Initiator, lun: int = 0) -> dict[str, object]:
    snap = status.snapshot(ini.conn.catalog)
    (target,) = snap["targets"]
    return dict(target["luns"][lun]["stats"])


def test_latency_buckets_are_log2_of_1024_ns() -> None:
    io = IoStats()
    for ns in (0, 1023, 1024, 2047, 2048, 1 << 40):
        io.record(True, False, 512, True, ns)
    assert io.latency[0] == 2 and io.latency[1] == 2 and io.latency[2] == 1
    assert io.latency[LATENCY_BUCKETS - 1] == 1  # the unbounded last bucket
    bounds = bucket_bounds_seconds()
    assert len(bounds) == LATENCY_BUCKETS - 1
    assert bounds[0] == pytest.approx(1.024e-6) and bounds[1] == pytest.approx(2.048e-6)
    assert io.read_commands == 6 and io.read_bytes == 6 * 512


def test_add_sums_every_figure() -> None:
    a, b = IoStats(), IoStats()
    a.record(False, True, 100, False, 5000)
    b.record(False, False, 0, True, 10)
    a.add(b)
    assert (a.write_commands, a.write_bytes, a.other_commands, a.errors) == (1, 100, 1, 1)
    assert a.latency_ns == 5010 and sum(a.latency) == 2 == a.commands


def test_reads_and_writes_are_counted_per_lun_and_session(ini: Initiator) -> None:
    ini.command(write10(0, 8), edtl=4096, write=True, immediate_data=b"\x11" * 4096)
    ini.command(read10(0, 8), edtl=4096, read=True)
    ini.command(read10(0, 2), edtl=1024, read=True, lun=1)
    ini.command(b"\x00", lun=1)  # TEST UNIT READY
    replies = drain(ini.conn)
    assert sum(isinstance(r.pdu, P.ScsiResponse) for r in replies) == 2  # reads: in Data-In
    lun0, lun1 = lun_stats(ini, 0), lun_stats(ini, 1)
    assert (lun0["write_commands"], lun0["write_bytes"]) == (1, 4096)
    assert (lun0["read_commands"], lun0["read_bytes"]) == (1, 4096)
    assert (lun1["read_commands"], lun1["read_bytes"], lun1["other_commands"]) == (1, 1024, 1)
    for figures in (lun0, lun1):
        buckets = figures["latency_buckets"]
        assert isinstance(buckets, list) and sum(buckets) == 2
        assert isinstance(figures["latency_ns"], int) and figures["latency_ns"] > 0
    (session,) = status.snapshot(ini.conn.catalog)["sessions"]
    assert session["stats"]["read_bytes"] == 4096 + 1024
    assert session["stats"]["write_bytes"] == 4096


def test_errors_count_commands_not_answered_good(ini: Initiator) -> None:
    ini.command(read10(1 << 30, 1), edtl=512, read=True)  # LBA out of range
    drain(ini.conn)
    figures = lun_stats(ini)
    assert figures["errors"] == 1 and figures["read_commands"] == 1
    assert figures["read_bytes"] == 0


def test_figures_survive_the_connection(ini: Initiator) -> None:
    ini.command(read10(0, 8), edtl=4096, read=True)
    drain(ini.conn)
    before = lun_stats(ini)
    ini.conn.close()
    assert ini.conn.io == {}
    assert lun_stats(ini) == before  # folded into the LU's own figures
    assert status.snapshot(ini.conn.catalog)["sessions"] == []


def test_r2ts_and_table_occupancy(ini: Initiator) -> None:
    cmd = ini.command(write10(0, 64), edtl=32768, write=True)
    (r2t,) = [r.pdu for r in drain(ini.conn)]
    assert isinstance(r2t, P.R2T)
    snap = status.snapshot(ini.conn.catalog)
    assert snap["counters"]["r2ts"] == 1
    assert snap["table"]["entries"] == 1 and snap["table"]["capacity"] == 4096
    (conn,) = snap["connections"]
    assert conn["table_entries"] == 1 and conn["r2t_entries"] == 1 and conn["tasks"] == 1
    feed(ini.conn, wire(P.DataOut(itt=cmd.itt, ttt=r2t.ttt, buffer_offset=0,
                                  data_length=32768, final=True), b"\x22" * 32768))
    (rsp,) = [r.pdu for r in drain(ini.conn)]
    assert isinstance(rsp, P.ScsiResponse) and rsp.status == 0
    snap = status.snapshot(ini.conn.catalog)
    assert snap["table"]["entries"] == 0
    assert snap["targets"][0]["luns"][0]["stats"]["write_bytes"] == 32768


def test_rejects_are_counted_by_opcode_and_reason(ini: Initiator) -> None:
    # a Data-Out for a transfer tag nobody issued
    feed(ini.conn, wire(P.DataOut(itt=0x77, ttt=0x1234, buffer_offset=0, data_length=512,
                                  final=True), bytes(512)))
    (reject,) = [r.pdu for r in drain(ini.conn)]
    assert isinstance(reject, P.Reject)
    rejects = status.snapshot(ini.conn.catalog)["rejects"]
    assert rejects == [{"opcode": "data_out", "reason": RejectReason(reject.reason).name.lower(),
                        "count": 1}]


def test_logins_and_failures_are_counted() -> None:
    catalog = make_catalog()
    Initiator(TargetConnection(catalog, "ok")).login()
    bad = Initiator(TargetConnection(catalog, "bad"))
    with pytest.raises(Exception):  # noqa: B017
        bad.login(target="iqn.2026-11.org.nowhere:none")
    counters = status.snapshot(catalog)["counters"]
    assert counters["logins"] == 1 and counters["login_failures"] == 1
    assert counters["sessions_created"] == 1


def test_snapshot_is_json_and_names_keys_and_peers(ini: Initiator) -> None:
    snap = json.loads(json.dumps(status.snapshot(ini.conn.catalog)))
    assert snap["version"] == status.VERSION
    (session,) = snap["sessions"]
    assert session["target"] == TARGET and session["type"] == "Normal"
    assert session["keys"]["MaxBurstLength"] == 65536
    assert session["keys"]["HeaderDigest"] == "None" and session["keys"]["InitialR2T"] == "No"
    (conn,) = snap["connections"]
    assert conn["peer"] == "figures" and conn["phase"] == "full-feature"
    assert session["connections"] == [conn["number"]]
    assert [lu["lun"] for lu in snap["targets"][0]["luns"]] == [0, 1]
