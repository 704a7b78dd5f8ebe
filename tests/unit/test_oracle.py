"""The model oracle itself (tests/oracle.py): it must flag what it is meant to flag."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import pytest

from pyiscsi.proto import pdu as P
from pyiscsi.target.connection import TargetConnection

from ..oracle import (
    PATCHABLE,
    Burst,
    CommandRecord,
    PlacementRecorder,
    Send,
    StoreModel,
    Write,
    check_placements,
    check_store,
    decode_output,
    split_input,
)
from ..pair import Initiator, feed, make_catalog, wire

NEEDS_PURE = pytest.mark.skipif(
    not PATCHABLE, reason="PlacementRecorder patches functions that compiled modules call "
    "directly; this test runs on the pure-Python build (PYISCSI_PURE=1, CI's pure pass)")

SIZE = 1 << 16


def test_check_store_verdicts() -> None:
    model = StoreModel(bytes(64))
    assert check_store(model, bytes(64), []) is None
    w = Write(8, b"\x01\x02", must=True, issued=1, finished=2, sent=1)
    assert check_store(model, bytes(8) + b"\x01\x02" + bytes(54), [w]) is None
    assert check_store(model, bytes(64), [w]) is not None  # a GOOD write that did not land
    may = Write(8, b"\x01\x02", must=False, issued=1, finished=2, sent=1)
    assert check_store(model, bytes(64), [may]) is None
    assert check_store(model, bytes(8) + b"\x01\x00" + bytes(54), [may]) is None  # partly
    assert check_store(model, bytes(11) + b"\x01" + bytes(52), [may]) is not None  # outside
    assert check_store(model, bytes(8) + b"\x09" + bytes(55), [may]) is not None  # not sent
    # a must-write issued after ``may`` finished overrules it
    later = Write(8, b"\x07\x07", must=True, issued=3, finished=4, sent=3)
    assert check_store(model, bytes(8) + b"\x01\x02" + bytes(54), [may, later]) is not None
    assert check_store(model, bytes(8) + b"\x07\x07" + bytes(54), [may, later]) is None
    # concurrent must-writes: either may win
    rival = Write(8, b"\x05\x05", must=True, issued=1, finished=4, sent=2)
    assert check_store(model, bytes(8) + b"\x01\x02" + bytes(54), [w, rival]) is None
    assert check_store(model, bytes(8) + b"\x05\x05" + bytes(54), [w, rival]) is None
    # a READ sees what was sent before its data was taken, not what came after
    assert check_store(model, b"\x01\x02", [may, later], lo=8, issued=3, finished=5) is None
    assert check_store(model, b"\x07\x07", [may, later], lo=8, issued=1, finished=2) is not None


def test_command_writes_are_clipped_to_what_was_solicited() -> None:
    cmd = CommandRecord(0, 1, 0, "write", lba=2, count=2, edtl=1024, storable=True,
                        unsolicited=512)
    cmd.bursts.append(Burst(7, 512, 256))
    cmd.sends.append(Send(0, b"\xaa" * 1024, True, b""))
    assert [(w.start, len(w.data), w.must) for w in cmd.writes()] == [(1024, 768, False)]
    cmd.status, cmd.answers = 0, 1
    assert all(w.must for w in cmd.writes())
    cmd.sends.append(Send(512, b"\xbb" * 10, False, b""))  # a corrupted one of a GOOD write
    assert len(cmd.writes()) == 1
    cmd.storable = False  # an out-of-range CDB stores nothing
    assert cmd.writes() == []


def setup() -> tuple[TargetConnection, Initiator, memoryview]:
    catalog = make_catalog(size=SIZE)
    conn = TargetConnection(catalog, "oracle-unit")
    ini = Initiator(conn)
    ini.login()
    conn.take_output()
    store = catalog.targets[next(iter(catalog.targets))].luns[0].store
    return conn, ini, store.view(0, SIZE)  # type: ignore[attr-defined]


@NEEDS_PURE
def test_check_placements_explains_a_write_and_nothing_else() -> None:
    conn, ini, store = setup()
    model = StoreModel(store)
    with PlacementRecorder(store) as recorder:
        cmd = P.ScsiCommand(itt=0x10, cdb=struct.pack(">BBIBHB", 0x2A, 0, 4, 0, 2, 0),
                            expected_length=1024, cmdsn=ini.cmdsn, write=True, final=False,
                            data_length=256)
        stream = wire(cmd, b"\x11" * 256)
        feed(conn, stream)
        (r2t,) = [r.pdu for r in decode_output(conn.take_output()[0])
                  if isinstance(r.pdu, P.R2T)] or [None]
        # InitialR2T=No: the first burst is unsolicited (FirstBurstLength >= 1024 here).
        assert r2t is None
        tail = wire(P.DataOut(itt=0x10, ttt=0xFFFFFFFF, buffer_offset=256, data_length=768,
                              final=True), b"\x22" * 768)
        stray = wire(P.DataOut(itt=0x99, ttt=0xFFFFFFFF, buffer_offset=0, data_length=4),
                     b"\x77" * 4)
        feed(conn, tail + stray)
        stream += tail + stray
        assert [type(r.pdu) for r in decode_output(conn.take_output()[0])] == \
            [P.ScsiResponse, P.Reject]
    assert [p.itt for p in recorder.plans] == [0x10]
    assert recorder.unexplained() == []
    assert len(split_input(stream)) == 3
    assert check_placements(model, bytes(store), recorder, stream) is None
    assert bytes(store[2048:3072]) == b"\x11" * 256 + b"\x22" * 768
    changed = bytearray(store)
    changed[3072] ^= 0xFF  # past the write
    assert "0xc00" in (check_placements(model, changed, recorder, stream) or "")
    changed = bytearray(store)
    changed[2048] = 0x77  # inside it, but a value only the stray ITT sent
    assert check_placements(model, changed, recorder, stream) is not None
    conn.close()


@NEEDS_PURE
def test_fuzz_harness_seeds_pass_the_oracle() -> None:
    pytest.importorskip("atheris")
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "fuzz"))
    try:
        import target_receive as harness
    finally:
        sys.path.pop(0)
    with harness.RECORDER:
        for seed in harness.seeds().values():
            harness.one_input(seed)
    assert harness.STATS["store_changed"] >= 2
