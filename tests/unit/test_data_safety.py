"""FUA writes and SYNCHRONIZE CACHE reach the store's flush before GOOD status is queued."""

from __future__ import annotations

import struct

from pyiscsi.backstore.memory import MemoryStore
from pyiscsi.proto import pdu as P
from pyiscsi.scsi.lun import LogicalUnit
from pyiscsi.target.catalog import Catalog, Target
from pyiscsi.target.connection import TargetConnection

from ..pair import TARGET, Initiator, drain


class RecordingStore(MemoryStore):
    """Notes every flush and how much output the connection had queued at that moment."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.flushes: list[tuple[int, int | None, int]] = []
        self.conn: TargetConnection | None = None

    def flush(self, offset: int = 0, length: int | None = None) -> None:
        assert self.conn is not None
        self.flushes.append((offset, length, len(self.conn._out)))
        super().flush(offset, length)


def setup() -> tuple[RecordingStore, TargetConnection, Initiator]:
    store = RecordingStore(1 << 20)
    conn = TargetConnection(Catalog([Target(TARGET, {0: LogicalUnit(0, store, TARGET)})]), "t")
    store.conn = conn
    ini = Initiator(conn)
    ini.login()
    conn.take_output()
    return store, conn, ini


def test_fua_write_flushes_its_range_before_the_response() -> None:
    store, conn, ini = setup()
    cdb = struct.pack(">BBIBHB", 0x2A, 0x08, 16, 0, 8, 0)  # WRITE(10) FUA, LBA 16, 8 blocks
    ini.command(cdb, edtl=4096, write=True, immediate_data=b"\x42" * 4096)
    assert len(store.flushes) == 1
    offset, length, queued = store.flushes[0]
    assert offset <= 16 * 512 and (length is None or offset + length >= 24 * 512)
    assert queued == 0  # nothing (no status) was queued when the flush ran
    (reply,) = drain(conn)
    assert isinstance(reply.pdu, P.ScsiResponse) and reply.pdu.status == 0


def test_plain_write_with_write_cache_does_not_flush() -> None:
    store, conn, ini = setup()
    ini.command(struct.pack(">BBIBHB", 0x2A, 0, 16, 0, 8, 0), edtl=4096, write=True,
                immediate_data=b"\x42" * 4096)
    assert store.flushes == []
    assert drain(conn)[0].pdu.status == 0


def test_synchronize_cache_flushes_before_good() -> None:
    store, conn, ini = setup()
    ini.command(bytes([0x35]) + bytes(9))  # SYNCHRONIZE CACHE(10), whole LU
    assert [q for *_, q in store.flushes] == [0]
    (reply,) = drain(conn)
    assert reply.pdu.status == 0
