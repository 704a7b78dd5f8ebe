"""CRC32C digests negotiated and enforced on a live target connection (RFC 7143 §7.8)."""

from __future__ import annotations

import struct

import pytest

from pyiscsi.proto import digest
from pyiscsi.proto import pdu as P
from pyiscsi.proto.errors import DigestError
from pyiscsi.proto.framing import frame
from pyiscsi.target.connection import TargetConnection

from ..pair import TARGET, Initiator, feed, make_catalog

CRC = ("CRC32C",)


def dwire(pdu: P.Pdu, payload: bytes | None = None) -> bytes:
    return b"".join(bytes(b) for b in frame(pdu.encode(), payload, header_digest=True,
                                           data_digest=True))


def ddrain(conn: TargetConnection) -> list[tuple[P.Pdu, bytes]]:
    out, _ = conn.take_output()
    stream = b"".join(bytes(b) for b in out)
    replies, pos = [], 0
    while pos < len(stream):
        header = stream[pos:pos + 48]
        assert digest.verify(stream[pos + 48:pos + 52], header)  # our header digests
        pdu = P.decode_bhs(header)
        pos += 52
        n = pdu.data_length_
        data = stream[pos:pos + n]
        if n:
            padded = P.padded(n)
            assert digest.verify(stream[pos + padded:pos + padded + 4], stream[pos:pos + padded])
            pos += padded + 4
        replies.append((pdu, data))
    return replies


def setup() -> tuple[TargetConnection, Initiator]:
    conn = TargetConnection(make_catalog(), "crc")
    ini = Initiator(conn)
    ini.login(header_digest=CRC, data_digest=CRC)
    assert conn.params is not None and conn.params.header_digest and conn.params.data_digest
    return conn, ini


def command(ini: Initiator, cdb: bytes, edtl: int, payload: bytes = b"", *,
            read: bool = False, write: bool = False, corrupt: bool = False) -> P.ScsiCommand:
    cmd = P.ScsiCommand(itt=ini.next_itt(), cdb=cdb.ljust(16, b"\0"), expected_length=edtl,
                        cmdsn=ini.cmdsn, read=read, write=write, data_length=len(payload))
    ini.cmdsn += 1
    raw = bytearray(dwire(cmd, payload or None))
    if corrupt:
        raw[60] ^= 0xFF  # a payload byte
    feed(ini.conn, bytes(raw))
    return cmd


def test_write_and_read_with_digests() -> None:
    conn, ini = setup()
    data = bytes(range(256)) * 16
    staged = conn.counters.rx_staged
    command(ini, struct.pack(">BBIBHB", 0x2A, 0, 0, 0, 8, 0), 4096, data, write=True)
    ((rsp, _),) = ddrain(conn)
    assert isinstance(rsp, P.ScsiResponse) and rsp.status == 0
    assert conn.counters.rx_staged - staged == 4096  # verified in scratch, then copied once
    command(ini, struct.pack(">BBIBHB", 0x28, 0, 0, 0, 8, 0), 4096, read=True)
    replies = ddrain(conn)
    assert b"".join(d for p, d in replies if isinstance(p, P.DataIn)) == data


def test_data_digest_error_rejects_and_fails_the_command() -> None:
    conn, ini = setup()
    lu = conn.catalog.targets[TARGET].luns[0]
    cmd = command(ini, struct.pack(">BBIBHB", 0x2A, 0, 0, 0, 8, 0), 4096, b"\x55" * 4096,
                  write=True, corrupt=True)
    replies = ddrain(conn)
    reject, response = replies[0][0], replies[1]
    assert isinstance(reject, P.Reject) and reject.reason == 0x02
    assert conn.state.receive.data >= 1
    assert isinstance(response[0], P.ScsiResponse) and response[0].itt == cmd.itt
    assert response[0].status == 2
    sense = response[1][2:]
    assert sense[2] & 0x0F == 0x0B and sense[12:14] == b"\x47\x05"
    assert bytes(lu.store.view(0, 4096)) == bytes(4096)  # nothing reached the store


def test_header_digest_error_closes_the_connection() -> None:
    conn, ini = setup()
    raw = bytearray(dwire(P.NopOut(itt=5, cmdsn=ini.cmdsn)))
    raw[50] ^= 1
    before = conn.state.receive.header
    with pytest.raises(DigestError):
        feed(conn, bytes(raw))
    assert conn.state.receive.header == before + 1
