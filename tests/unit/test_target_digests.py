"""CRC32C digests negotiated and enforced on a live target connection (RFC 7143 §7.8)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from pyiscsi.backstore.file import FileStore
from pyiscsi.proto import digest
from pyiscsi.proto import pdu as P
from pyiscsi.proto.errors import DigestError
from pyiscsi.proto.framing import frame
from pyiscsi.proto.wire import RejectReason, TmfFunction, TmfResponse
from pyiscsi.scsi.lun import LogicalUnit
from pyiscsi.target.catalog import Catalog, Target
from pyiscsi.target.connection import TargetConnection

from ..pair import TARGET, Initiator, feed, make_catalog, run_store_work

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


def write10(lba: int, blocks: int) -> bytes:
    return struct.pack(">BBIBHB", 0x2A, 0, lba, 0, blocks, 0)


def sent(conn: TargetConnection) -> tuple[int, int]:
    """The session's ExpCmdSN and MaxCmdSN."""
    s = conn.session
    assert s is not None
    return s.expcmdsn, s.maxcmdsn


def assert_idle(conn: TargetConnection) -> None:
    """Nothing of any command stays: no task, table entry, staging or held CmdSN."""
    s = conn.session
    assert s is not None
    assert not conn.tasks and len(conn.table) == 0 and conn.transfers.held_bytes == 0
    assert not conn._held and conn._admitted is None
    assert s.active == 0 and s.immediate_active == 0
    assert (s.maxcmdsn - s.expcmdsn + 1) & 0xFFFFFFFF == conn.catalog.limits.queue_depth


def test_the_fast_path_is_off_whenever_a_digest_is_on() -> None:
    """The fast path takes a command from the staging bytes without a digest check
    (:meth:`TargetConnection._fast_command`): with either digest negotiated it is never
    installed, so every command goes through the receiver's digest checks."""
    none = ("None",)
    for header, data in ((CRC, CRC), (CRC, none), (none, CRC), (none, none)):
        conn = TargetConnection(make_catalog(), "crc")
        Initiator(conn).login(header_digest=header, data_digest=data)
        assert (conn.receiver.fast is None) == (header == CRC or data == CRC)


# ---------------------------------------------------------------- RFC 7143 §7.8
# A SCSI Command whose immediate data fails its data digest: Reject 0x02 and discard the
# command as if it never arrived (the non-data PDU rule); the initiator retries it.


def test_a_command_whose_immediate_data_fails_its_digest_is_discarded() -> None:
    """RFC 7143 §7.8: Reject (reason 0x02) and nothing else: no task, no CHECK CONDITION,
    its CmdSN not taken (the Reject's ExpCmdSN is still the command's CmdSN, MaxCmdSN did
    not move), no table entry, no figures, no byte in the store. The retry (same ITT,
    same CmdSN, good digest; §7.2.1) is then executed."""
    conn, ini = setup()
    lu = conn.catalog.targets[TARGET].luns[0]
    before = sent(conn)
    cmd = command(ini, write10(0, 8), 4096, b"\x55" * 4096, write=True, corrupt=True)
    ((reject, echoed),) = ddrain(conn)
    assert isinstance(reject, P.Reject) and reject.reason == RejectReason.DATA_DIGEST_ERROR
    assert echoed == cmd.encode()
    assert (reject.expcmdsn, reject.maxcmdsn) == before == (cmd.cmdsn, before[1])
    assert sent(conn) == before
    assert conn.state.receive.data == 1
    assert_idle(conn)
    assert not conn.io  # no command was answered, so none counted
    assert bytes(lu.store.view(0, 4096)) == bytes(4096)  # nothing reached the store
    # The retry: same ITT, same CmdSN, good digest.
    feed(conn, dwire(cmd, b"\x55" * 4096))
    ((rsp, _),) = ddrain(conn)
    assert isinstance(rsp, P.ScsiResponse) and rsp.itt == cmd.itt and rsp.status == 0
    assert rsp.expcmdsn == cmd.cmdsn + 1
    assert bytes(lu.store.view(0, 4096)) == b"\x55" * 4096
    assert_idle(conn)


def test_another_command_fills_the_cmdsn_a_discarded_command_left() -> None:
    """The discarded command's CmdSN n stays a hole: the next command (CmdSN n+1) is held
    behind it; a different command sent with CmdSN n (another ITT, another LBA) fills the
    hole and runs, then n+1 runs, in CmdSN order."""
    conn, ini = setup()
    lu = conn.catalog.targets[TARGET].luns[0]
    n = ini.cmdsn
    command(ini, write10(0, 1), 512, b"\x11" * 512, write=True, corrupt=True)
    ((reject, _),) = ddrain(conn)
    assert isinstance(reject, P.Reject) and reject.reason == RejectReason.DATA_DIGEST_ERROR
    later = command(ini, write10(16, 1), 512, b"\x33" * 512, write=True)  # CmdSN n+1
    assert later.cmdsn == n + 1
    assert ddrain(conn) == []  # held behind the hole
    assert sent(conn)[0] == n
    other = P.ScsiCommand(itt=ini.next_itt(), cdb=write10(8, 1).ljust(16, b"\0"),
                          expected_length=512, cmdsn=n, write=True, data_length=512)
    feed(conn, dwire(other, b"\x22" * 512))
    replies = ddrain(conn)
    assert [(type(p), p.itt, getattr(p, "status", None)) for p, _ in replies] == [
        (P.ScsiResponse, other.itt, 0), (P.ScsiResponse, later.itt, 0)]
    assert sent(conn)[0] == n + 2
    assert bytes(lu.store.view(0, 512)) == bytes(512)  # the discarded data never landed
    assert bytes(lu.store.view(8 * 512, 512)) == b"\x22" * 512
    assert bytes(lu.store.view(16 * 512, 512)) == b"\x33" * 512
    assert_idle(conn)


def file_catalog(path: Path) -> Catalog:
    store = FileStore(path)
    return Catalog([Target(TARGET, {0: LogicalUnit(0, store, TARGET)})])


@pytest.mark.parametrize("kind", ["ram", "file"])
@pytest.mark.parametrize("size", [512, 32768])
@pytest.mark.parametrize("chunk", [1 << 30, 300])
def test_a_bad_immediate_payload_never_changes_the_lu(tmp_path: Path, kind: str, size: int,
                                                      chunk: int) -> None:
    """RAM LUN (whose memory a placed payload is received into) and FileStore LUN (written
    with pwrite from a buffer): the LU's bytes are the same after a WRITE whose immediate
    data failed its digest, fed whole or 300 bytes at a time (a 32 KiB payload is received
    straight into the receiver's scratch, past the staging area). The retry then lands."""
    old = bytes(range(256)) * (size // 256)
    if kind == "file":
        path = tmp_path / "lun.img"
        path.write_bytes(old + bytes(1 << 16))
        conn = TargetConnection(file_catalog(path), "crc")
    else:
        conn = TargetConnection(make_catalog(), "crc")
    lu = conn.catalog.targets[TARGET].luns[0]
    lu.store.write(0, old)
    ini = Initiator(conn)
    ini.login(header_digest=CRC, data_digest=CRC)
    new = b"\xe7" * size
    cmd = P.ScsiCommand(itt=ini.next_itt(), cdb=write10(0, size // 512).ljust(16, b"\0"),
                        expected_length=size, cmdsn=ini.cmdsn, write=True, data_length=size)
    raw = bytearray(dwire(cmd, new))
    raw[52 + size // 2] ^= 0x01  # a payload byte, after the digest was computed
    feed(conn, bytes(raw), chunk)
    run_store_work(conn)
    ((reject, _),) = ddrain(conn)
    assert isinstance(reject, P.Reject) and reject.reason == RejectReason.DATA_DIGEST_ERROR
    assert bytes(lu.store.view(0, size)) == old
    if kind == "file":
        assert path.read_bytes()[:size] == old
    assert_idle(conn)
    feed(conn, dwire(cmd, new), chunk)  # the retry
    run_store_work(conn)
    ((rsp, _),) = ddrain(conn)
    assert isinstance(rsp, P.ScsiResponse) and rsp.itt == cmd.itt and rsp.status == 0
    assert bytes(lu.store.view(0, size)) == new
    if kind == "file":
        assert path.read_bytes()[:size] == new
    assert_idle(conn)
    conn.close()
    lu.store.close()


def test_a_bad_header_digest_on_a_command_with_immediate_data_still_closes() -> None:
    """A header digest error is unchanged: the header cannot be trusted, so the connection
    closes (ErrorRecoveryLevel 0, RFC 7143 §7.8) before anything of the command is
    admitted or placed."""
    conn, ini = setup()
    lu = conn.catalog.targets[TARGET].luns[0]
    cmd = P.ScsiCommand(itt=ini.next_itt(), cdb=write10(0, 1).ljust(16, b"\0"),
                        expected_length=512, cmdsn=ini.cmdsn, write=True, data_length=512)
    raw = bytearray(dwire(cmd, b"\x77" * 512))
    raw[20] ^= 0x01  # inside the BHS
    before = sent(conn)
    with pytest.raises(DigestError):
        feed(conn, bytes(raw))
    assert conn.state.receive.header == 1 and conn.state.receive.data == 0
    assert ddrain(conn) == []
    assert sent(conn) == before and not conn.tasks and len(conn.table) == 0
    assert bytes(lu.store.view(0, 512)) == bytes(512)


@pytest.mark.parametrize("solicited", [True, False])
def test_a_data_out_that_fails_its_digest_still_fails_the_command(solicited: bool) -> None:
    """A Data-Out (solicited by an R2T, or unsolicited after good immediate data with
    InitialR2T=No) whose data digest fails: Reject 0x02, and the command, which was
    admitted and took its CmdSN, ends in CHECK CONDITION ABORTED COMMAND / PROTOCOL
    SERVICE CRC ERROR (47h/05h) once its burst is drained (RFC 7143 §7.8 at
    ErrorRecoveryLevel 0: no recovery R2T). Nothing of the bad PDU reaches the store."""
    conn, ini = setup()
    lu = conn.catalog.targets[TARGET].luns[0]
    n = ini.cmdsn
    imm = b"" if solicited else b"\x66" * 512
    cmd = P.ScsiCommand(itt=ini.next_itt(), cdb=write10(0, 8).ljust(16, b"\0"),
                        expected_length=4096, cmdsn=n, write=True, final=solicited,
                        data_length=len(imm))
    ini.cmdsn += 1
    feed(conn, dwire(cmd, imm or None))
    if solicited:
        ((r2t, _),) = ddrain(conn)
        assert isinstance(r2t, P.R2T)
        ttt, offset = r2t.ttt, 0
    else:
        assert ddrain(conn) == []
        ttt, offset = 0xFFFFFFFF, 512
    assert sent(conn)[0] == n + 1  # the command took its CmdSN
    data_out = P.DataOut(itt=cmd.itt, ttt=ttt, buffer_offset=offset,
                         data_length=4096 - offset, final=True)
    raw = bytearray(dwire(data_out, b"\x99" * (4096 - offset)))
    raw[60] ^= 0xFF
    feed(conn, bytes(raw))
    replies = ddrain(conn)
    assert [type(p) for p, _ in replies] == [P.Reject, P.ScsiResponse]
    reject, (response, sense) = replies[0][0], replies[1]
    assert isinstance(reject, P.Reject) and reject.reason == RejectReason.DATA_DIGEST_ERROR
    assert isinstance(response, P.ScsiResponse) and response.itt == cmd.itt
    assert response.status == 2
    assert sense[2 + 2] & 0x0F == 0x0B and sense[2 + 12:2 + 14] == b"\x47\x05"
    assert conn.state.receive.data == 1
    assert b"\x99" not in bytes(lu.store.view(0, 4096))
    assert_idle(conn)


def test_abort_task_of_a_discarded_command_fills_its_cmdsn() -> None:
    """RFC 7143 §11.5.1 / §11.6.1 b: the discarded command (CmdSN n) was never received.
    ABORT TASK (immediate, CmdSN n+2) naming its ITT with RefCmdSN n (in the window, below
    the TMF's CmdSN) is 'Function complete' and the target considers CmdSN n received: the
    command held behind the hole (CmdSN n+1) runs, and a late retry of the aborted command
    (CmdSN n, now a duplicate) is ignored (§3.2.2.1), its data never landing."""
    conn, ini = setup()
    lu = conn.catalog.targets[TARGET].luns[0]
    n = ini.cmdsn
    bad = command(ini, write10(0, 1), 512, b"\x11" * 512, write=True, corrupt=True)
    ((reject, _),) = ddrain(conn)
    assert isinstance(reject, P.Reject)
    held = command(ini, write10(8, 1), 512, b"\x22" * 512, write=True)  # CmdSN n+1
    assert ddrain(conn) == []
    tmf = P.TaskMgmtRequest(itt=ini.next_itt(), function=TmfFunction.ABORT_TASK,
                            referenced_tag=bad.itt, refcmdsn=n, cmdsn=ini.cmdsn,
                            immediate=True)
    feed(conn, dwire(tmf))
    replies = ddrain(conn)
    assert [(type(p), p.itt) for p, _ in replies] == [(P.TaskMgmtResponse, tmf.itt),
                                                       (P.ScsiResponse, held.itt)]
    answer = replies[0][0]
    assert isinstance(answer, P.TaskMgmtResponse)
    assert answer.response == TmfResponse.FUNCTION_COMPLETE
    assert replies[1][0].status == 0  # type: ignore[attr-defined]
    assert sent(conn)[0] == n + 2
    feed(conn, dwire(bad, b"\x11" * 512))  # a late retry: outside the window now
    assert ddrain(conn) == []
    assert bytes(lu.store.view(0, 512)) == bytes(512)
    assert bytes(lu.store.view(8 * 512, 512)) == b"\x22" * 512
    assert_idle(conn)
    # Asked again, the command's CmdSN is below the window: the task does not exist.
    again = P.TaskMgmtRequest(itt=ini.next_itt(), function=TmfFunction.ABORT_TASK,
                              referenced_tag=bad.itt, refcmdsn=n, cmdsn=ini.cmdsn,
                              immediate=True)
    feed(conn, dwire(again))
    ((answer, _),) = ddrain(conn)
    assert isinstance(answer, P.TaskMgmtResponse)
    assert answer.response == TmfResponse.TASK_DOES_NOT_EXIST
    assert_idle(conn)


def test_header_digest_error_closes_the_connection() -> None:
    conn, ini = setup()
    raw = bytearray(dwire(P.NopOut(itt=5, cmdsn=ini.cmdsn)))
    raw[50] ^= 1
    before = conn.state.receive.header
    with pytest.raises(DigestError):
        feed(conn, bytes(raw))
    assert conn.state.receive.header == before + 1
