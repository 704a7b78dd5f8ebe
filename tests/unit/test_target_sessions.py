"""Sessions: reinstatement, connection loss mid-write, isolation between sessions."""

from __future__ import annotations

import struct

import pytest

from pyiscsi.placement.table import PlacementError
from pyiscsi.proto import pdu as P
from pyiscsi.target.connection import Phase, TargetConnection

from ..pair import TARGET, Initiator, drain, feed, make_catalog, wire


def write10(lba: int, blocks: int) -> bytes:
    return struct.pack(">BBIBHB", 0x2A, 0, lba, 0, blocks, 0)


def open_burst(ini: Initiator) -> tuple[P.ScsiCommand, P.R2T]:
    cmd = ini.command(write10(0, 128), edtl=65536, write=True)
    (reply,) = drain(ini.conn)
    assert isinstance(reply.pdu, P.R2T)
    return cmd, reply.pdu


def test_reinstatement_ends_the_old_session_and_kills_its_tags() -> None:
    catalog = make_catalog()
    old = TargetConnection(catalog, "old")
    ini_old = Initiator(old)
    ini_old.login()
    _, r2t = open_burst(ini_old)
    assert len(old.table) == 1
    new = TargetConnection(catalog, "new")
    Initiator(new).login()  # same InitiatorName and ISID, TSIH 0: reinstatement
    assert old.phase is Phase.CLOSED and old.dead
    assert len(old.table) == 0 and not old.tasks
    with pytest.raises(PlacementError):
        old.table.lookup(r2t.ttt)
    assert len(catalog.sessions) == 1
    assert next(iter(catalog.sessions.values())).connections == [new]
    new.close()


def test_two_sessions_one_dies_mid_write() -> None:
    catalog = make_catalog()
    a, b = TargetConnection(catalog, "a"), TargetConnection(catalog, "b")
    ini_a, ini_b = Initiator(a), Initiator(b, isid=0x400001230002)
    ini_a.login()
    ini_b.login()
    assert len(catalog.sessions) == 2
    _, r2t = open_burst(ini_a)
    a.close()  # the TCP connection vanished mid-write
    assert len(catalog.sessions) == 1 and len(a.table) == 0
    # b is undisturbed: a full write and read back
    lu = catalog.targets[TARGET].luns[0]
    ini_b.command(write10(8, 1), edtl=512, write=True, immediate_data=b"\x33" * 512)
    (ok,) = drain(b)
    assert ok.pdu.status == 0 and bytes(lu.store.view(8 * 512, 512)) == b"\x33" * 512
    # a's old tag means nothing on b's connection
    feed(b, wire(P.DataOut(itt=1, ttt=r2t.ttt, buffer_offset=0, data_length=512), b"\xff" * 512))
    (rej,) = drain(b)
    assert isinstance(rej.pdu, P.Reject)
    assert bytes(lu.store.view(0, 512)) == bytes(512)
    b.close()


def test_reserve6_of_a_peer_that_already_left_does_not_block() -> None:
    """The holder's FIN may still be queued behind our command: a command that would meet
    another nexus's RESERVE(6) waits one turn of the event loop, so a FIN fed in meanwhile
    ends that nexus first; a live holder still conflicts (SPC-2 §5.5.1)."""
    catalog = make_catalog()
    a, b = TargetConnection(catalog, "a"), TargetConnection(catalog, "b")
    ini_a, ini_b = Initiator(a), Initiator(b, isid=0x400001230009)
    ini_a.login()
    ini_b.login()
    ini_b.command(bytes([0x16, 0, 0, 0, 0, 0]))  # RESERVE(6)
    assert drain(b)[0].pdu.status == 0
    ini_a.command(bytes(6))  # TEST UNIT READY
    assert a.take_output()[0] == [] and a.wants_turn  # waits for the loop to go round
    a.turn()  # nothing came from b meanwhile: b is alive
    assert drain(a)[0].pdu.status == 0x18  # RESERVATION CONFLICT
    ini_a.command(bytes(6))
    assert a.take_output()[0] == [] and a.wants_turn
    b.close()  # b's FIN, fed in before the turn: the I_T nexus is lost, RESERVE(6) goes
    a.turn()
    assert drain(a)[0].pdu.status == 0
    assert b.phase is Phase.CLOSED
    a.close()
