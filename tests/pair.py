"""An in-memory initiator for driving a sans-IO TargetConnection with real wire bytes.

Everything goes through the target's real receive path: bytes are written into the buffers
``get_buffer()`` hands out, and the target's output is decoded with the PDU codec.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pyiscsi.backstore.memory import MemoryStore
from pyiscsi.proto import pdu as P
from pyiscsi.proto.framing import frame
from pyiscsi.proto.login import InitiatorLogin, InitiatorLoginConfig, LoginDone
from pyiscsi.scsi.lun import LogicalUnit
from pyiscsi.target.catalog import Catalog, Target
from pyiscsi.target.connection import TargetConnection

TARGET = "iqn.2026-11.org.pyiscsi:test"
INITIATOR = "iqn.2026-11.org.pyiscsi:tester"


def make_catalog(size: int = 16 << 20, luns: int = 1) -> Catalog:
    target = Target(TARGET)
    for n in range(luns):
        target.luns[n] = LogicalUnit(n, MemoryStore(size), TARGET)
        target.luns[n].peers = lambda: sorted(target.luns)
    return Catalog([target])


def feed(conn: TargetConnection, data: bytes, chunk: int = 1 << 30) -> None:
    """Push wire bytes through the target's get_buffer/advance, ``chunk`` bytes at most."""
    view = memoryview(data)
    while view:
        buf = conn.get_buffer()
        assert len(buf) > 0
        n = min(len(buf), len(view), chunk)
        buf[:n] = view[:n]
        view = view[n:]
        conn.advance(n)


def wire(pdu: P.Pdu, payload: bytes | bytearray | memoryview | None = None) -> bytes:
    return b"".join(bytes(b) for b in frame(pdu.encode(), payload))


@dataclass
class Reply:
    pdu: P.Pdu
    data: bytes


def run_store_work(conn: TargetConnection) -> int:
    """Do what the transport's store runner does: run the store requests the engine handed
    out and feed their completions back, until none is left. Answers how many ran."""
    ran = 0
    while True:
        while conn.wants_turn:
            conn.turn()  # the loop goes round: nothing else is queued in memory
        requests = conn.take_store_requests()
        if not requests:
            return ran
        for request in requests:
            conn.store_completed(request.token, request.run())
            ran += 1


def drain(conn: TargetConnection, out: list[bytes | bytearray | memoryview] | None = None
          ) -> list[Reply]:
    """Decode everything the target has queued for sending (or the buffers ``out``), after
    running the store work it handed out (as the transport would)."""
    if out is None:
        run_store_work(conn)
        out, _ = conn.take_output()
    stream = b"".join(bytes(b) for b in out)
    replies = []
    pos = 0
    while pos < len(stream):
        pdu = P.decode_bhs(stream[pos:pos + 48])
        pos += 48
        n = pdu.data_length_
        replies.append(Reply(pdu, stream[pos:pos + n]))
        pos += P.padded(n)
    return replies


@dataclass
class Initiator:
    """Just enough initiator state to log in and number commands."""

    conn: TargetConnection
    isid: int = 0x400001230000
    cmdsn: int = 0
    expstatsn: int = 0
    itt: int = 0x1000
    params: object = None
    login_replies: list[Reply] = field(default_factory=list)

    def login(self, target: str | None = TARGET, **config: object) -> LoginDone:
        login = InitiatorLogin(INITIATOR, target, isid=self.isid,
                               config=InitiatorLoginConfig(**config))  # type: ignore[arg-type]
        req, data = login.start()
        while True:
            feed(self.conn, wire(req, data or None))
            replies = drain(self.conn)
            self.login_replies += replies
            (reply,) = replies
            assert isinstance(reply.pdu, P.LoginResponse)
            result = login.receive(reply.pdu, reply.data)
            if isinstance(result, LoginDone):
                self.params = result.params
                self.cmdsn = result.expcmdsn
                self.expstatsn = result.exp_statsn
                return result
            req, data = result

    def next_itt(self) -> int:
        self.itt += 1
        return self.itt

    def command(self, cdb: bytes, *, lun: int = 0, edtl: int = 0, read: bool = False,
                write: bool = False, immediate_data: bytes = b"", final: bool = True,
                itt: int | None = None) -> P.ScsiCommand:
        cmd = P.ScsiCommand(itt=self.next_itt() if itt is None else itt,
                            cdb=cdb.ljust(16, b"\0"), expected_length=edtl, cmdsn=self.cmdsn,
                            expstatsn=self.expstatsn, lun=lun << 48, read=read, write=write,
                            final=final, data_length=len(immediate_data))
        self.cmdsn += 1
        feed(self.conn, wire(cmd, immediate_data or None))
        return cmd
