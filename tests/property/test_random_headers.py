"""10,000 random headers on logged-in sessions (RFC 7143 §11.2): each one is closed at once
when its lengths cannot be trusted (from its 48 bytes alone, before any AHS or data), and
otherwise answered once the bytes it claims have been sent. Sessions of another target in
the same process go on untouched."""

from __future__ import annotations

import random
import struct

import pytest

from pyiscsi.backstore.memory import MemoryStore
from pyiscsi.proto import pdu as P
from pyiscsi.proto.errors import RemoteProtocolError
from pyiscsi.proto.serial import sn_in_window
from pyiscsi.scsi.lun import LogicalUnit
from pyiscsi.target.catalog import Catalog, Target
from pyiscsi.target.connection import TargetConnection

from ..pair import Initiator, drain, feed

VICTIM, BYSTANDER = "iqn.2026-11.org.pyiscsi:victim", "iqn.2026-11.org.pyiscsi:bystander"
MRDSL = 262144
"""What the target declares (the default Limits); more than this closes the connection."""
HEADERS = 10_000
ORDERED = {0x00, 0x01, 0x02, 0x04, 0x06}
"""NOP-Out, SCSI Command, Task Management, Text, Logout: CmdSN-numbered requests."""
OPCODES = [0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x10, 0x20, 0x21, 0x25, 0x3F, 0x0F,
           0x1C, 0x2A]


def catalog() -> Catalog:
    targets = []
    for name in (VICTIM, BYSTANDER):
        t = Target(name)
        t.luns[0] = LogicalUnit(0, MemoryStore(4 << 20), name)
        t.luns[0].peers = lambda t=t: sorted(t.luns)
        targets.append(t)
    return Catalog(targets)


def login(cat: Catalog, target: str, isid: int) -> Initiator:
    ini = Initiator(TargetConnection(cat, target), isid=isid)
    ini.login(target=target)
    drain(ini.conn)
    return ini


def random_header(rng: random.Random, ini: Initiator) -> bytes:
    h = bytearray(rng.randbytes(48))
    opcode = rng.choice(OPCODES)
    h[0] = (h[0] & 0x40) | opcode
    roll = rng.random()
    h[4] = 0 if roll < 0.8 else rng.randrange(256)  # TotalAHSLength in words
    if roll < 0.6:
        length = rng.randrange(0, 600)
    elif roll < 0.9:
        length = rng.randrange(0, 8192)
    elif roll < 0.93:
        length = rng.randrange(0, MRDSL + 1)
    else:
        length = rng.randrange(MRDSL + 1, 1 << 24)
    h[5:8] = length.to_bytes(3, "big")
    session = ini.conn.session
    assert session is not None
    if opcode in ORDERED and rng.random() < 0.7:
        h[24:28] = struct.pack(">I", session.expcmdsn)  # a CmdSN it will take now
    if opcode == 0x01 and rng.random() < 0.5:
        h[5:8] = rng.randrange(0, 600).to_bytes(3, "big")
        h[32] = rng.choice([0x28, 0x2A, 0x12, 0x00, 0xA0, 0x25, 0x35, 0x88, 0x8A])
    return bytes(h)


def must_close(h: bytes) -> bool:
    opcode, ahs, length = h[0] & 0x3F, h[4] * 4, int.from_bytes(h[5:8], "big")
    return length > MRDSL or (ahs > 0 and opcode != 0x01)


def must_answer(h: bytes, ini: Initiator) -> bool:
    """Whether RFC 7143 asks for a reply to this PDU once it is whole."""
    opcode, immediate = h[0] & 0x3F, bool(h[0] & 0x40)
    itt, cmdsn = struct.unpack_from(">I", h, 16)[0], struct.unpack_from(">I", h, 24)[0]
    session = ini.conn.session
    assert session is not None
    if opcode in ORDERED and not immediate and not (
            cmdsn == session.expcmdsn and sn_in_window(cmdsn, session.expcmdsn,
                                                        session.maxcmdsn)):
        return False  # ignored outside the window, or held behind a gap (§3.2.2.1)
    if opcode == 0x00 and itt == 0xFFFFFFFF:
        return False  # a ping that wants no answer (§11.18)
    if opcode == 0x01:
        flags = h[1]
        write, final = bool(flags & 0x20), bool(flags & 0x80)
        if write and not final:
            return False  # unsolicited Data-Outs are still to come (InitialR2T=No)
    return True


@pytest.mark.parametrize("seed", [1, 2])
def test_random_headers_are_closed_at_once_or_answered(seed: int) -> None:
    rng = random.Random(seed)
    cat = catalog()
    bystanders = [login(cat, BYSTANDER, 0x400000000100 + n) for n in range(3)]
    victim = login(cat, VICTIM, 0x400000000001)
    isid = 0x400000000001
    closed = answered = silent = 0
    for n in range(HEADERS // 2):
        if n % 50 == 0:
            for ini in bystanders:
                _write_and_read_back(ini, rng)
        h = random_header(rng, victim)
        expect_close = must_close(h)
        try:
            feed(victim.conn, h)
        except RemoteProtocolError:
            assert expect_close, f"header {n} {h.hex()} closed the connection"
            closed += 1
        else:
            assert not expect_close, f"header {n} {h.hex()} was not closed at once"
            rest = h[4] * 4 + P.padded(int.from_bytes(h[5:8], "big"))
            replies = drain(victim.conn)
            assert not rest or replies == [], f"header {n} answered before its bytes came"
            expect_answer = must_answer(h, victim)
            feed(victim.conn, rng.randbytes(rest))
            replies += drain(victim.conn)
            if expect_answer:
                assert replies, f"header {n} {h.hex()} got no answer"
                answered += 1
            else:
                silent += 1
            if not (victim.conn.close_after_send or victim.conn.dead):
                continue
        victim.conn.close()
        isid += 1
        victim = login(cat, VICTIM, isid)
    victim.conn.close()
    for ini in bystanders:
        _write_and_read_back(ini, rng)
        assert ini.conn.tasks == {} and len(ini.conn.table) == 0
        ini.conn.close()
    assert closed > 200 and answered > 2000 and silent > 0


def _write_and_read_back(ini: Initiator, rng: random.Random) -> None:
    data = rng.randbytes(4096)
    lba = rng.randrange(0, 1000)
    ini.command(struct.pack(">BBIBHB", 0x2A, 0, lba, 0, 8, 0), edtl=4096, write=True,
                immediate_data=data)
    (rsp,) = [r.pdu for r in drain(ini.conn)]
    assert isinstance(rsp, P.ScsiResponse) and rsp.status == 0
    ini.command(struct.pack(">BBIBHB", 0x28, 0, lba, 0, 8, 0), edtl=4096, read=True)
    (reply,) = drain(ini.conn)
    assert isinstance(reply.pdu, P.DataIn) and reply.data == data
