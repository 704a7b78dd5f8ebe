"""FileStore: sparse file, MAP_SHARED mapping, fallocate before writes, punch-hole unmap."""

from __future__ import annotations

import errno
import mmap
import os
from pathlib import Path

import pytest

from pyiscsi.backstore.base import StoreError
from pyiscsi.backstore.file import FileStore

PAGE = mmap.PAGESIZE


def test_create_sparse_file(tmp_path: Path) -> None:
    path = tmp_path / "lun.img"
    store = FileStore(path, size=1 << 20)
    assert store.path == path and store.name == str(path)
    assert path.stat().st_size == 1 << 20
    assert path.stat().st_blocks == 0
    assert not store.is_mapped(0, 1 << 20)
    assert store.memory_addressable
    store.close()


def test_write_persists_and_reopen_keeps_size(tmp_path: Path) -> None:
    path = tmp_path / "lun.img"
    store = FileStore(path, size=64 * 1024)
    store.write(4096, b"\x5a" * 1024)
    store.close()
    assert path.read_bytes()[4096:5120] == b"\x5a" * 1024
    again = FileStore(path)
    assert again.size == 64 * 1024
    assert bytes(again.view(4096, 1024)) == b"\x5a" * 1024
    assert again.is_mapped(4096, 512)
    again.close()


def test_view_writes_after_prepare_write_reach_the_file(tmp_path: Path) -> None:
    path = tmp_path / "lun.img"
    store = FileStore(path, size=64 * 1024)
    store.prepare_write(8192, 4096)
    store.view(8192, 4096)[:] = b"\x42" * 4096
    store.flush(8192 + 100, 512)
    assert store.is_mapped(8192, 4096)
    assert not store.is_mapped(0, 8192)
    with open(path, "rb") as f:
        f.seek(8192)
        assert f.read(4096) == b"\x42" * 4096
    store.close()


def test_size_mismatch_and_bad_sizes(tmp_path: Path) -> None:
    path = tmp_path / "lun.img"
    FileStore(path, size=8192).close()
    with pytest.raises(ValueError, match="has 8192 bytes, not the 4096"):
        FileStore(path, size=4096)
    with pytest.raises(ValueError, match="multiple"):
        FileStore(tmp_path / "b.img", size=1000)
    with pytest.raises(ValueError, match="give a size"):
        FileStore(tmp_path / "missing.img")
    odd = tmp_path / "odd.img"
    odd.write_bytes(b"x" * 1000)
    with pytest.raises(ValueError, match="multiple"):
        FileStore(odd)


def test_unmap_punches_holes_and_zeroes_edges(tmp_path: Path) -> None:
    path = tmp_path / "lun.img"
    store = FileStore(path, size=16 * PAGE)
    store.write(0, b"\xff" * (16 * PAGE))
    store.unmap(PAGE + 512, 4 * PAGE)
    assert bytes(store.view(0, PAGE + 512)) == b"\xff" * (PAGE + 512)
    assert bytes(store.view(PAGE + 512, 4 * PAGE)) == bytes(4 * PAGE)
    assert store.view(5 * PAGE + 512, 1)[0] == 0xFF
    assert not store.is_mapped(2 * PAGE, 3 * PAGE)
    assert store.is_mapped(PAGE, PAGE)
    assert path.stat().st_blocks * 512 <= 13 * PAGE
    store.close()


def test_read_only_store(tmp_path: Path) -> None:
    path = tmp_path / "lun.img"
    FileStore(path, size=8192).close()
    store = FileStore(path, read_only=True)
    assert store.read_only
    with pytest.raises(StoreError) as info:
        store.write(0, b"x" * 512)
    assert (info.value.sense_key, info.value.asc, info.value.ascq) == (0x07, 0x27, 0x00)
    with pytest.raises(TypeError):
        store.view(0, 512)[0] = 1  # read-only mapping
    store.close()
    with pytest.raises(ValueError, match="read-only"):
        FileStore(tmp_path / "new.img", size=8192, read_only=True)


def test_allocation_failure_is_space_allocation_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileStore(tmp_path / "lun.img", size=8192)

    def no_space(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", no_space)
    with pytest.raises(StoreError) as info:
        store.prepare_write(0, 4096)
    assert (info.value.sense_key, info.value.asc, info.value.ascq) == (0x07, 0x27, 0x07)
    with pytest.raises(StoreError):
        store.write(0, b"x" * 512)
    monkeypatch.undo()
    store.close()


def test_close_twice_is_harmless(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "lun.img", size=8192)
    store.close()
    store.close()


def test_refuses_what_is_not_a_regular_file() -> None:
    with pytest.raises(ValueError, match="/dev/null is neither a regular file nor a block device"):
        FileStore("/dev/null")


@pytest.mark.parametrize("immediate", [False, True])
def test_a_write_cut_short_leaves_every_block_of_the_file_whole(tmp_path: Path,
                                                                 immediate: bool) -> None:
    """A target killed mid-PDU must not leave a torn block in the file (its page cache
    outlives the process): Data-Out fed a few hundred bytes at a time, cut inside blocks,
    and after every piece each block of the file is wholly old or wholly new."""
    import struct

    from pyiscsi.proto import pdu as P
    from pyiscsi.scsi.lun import LogicalUnit
    from pyiscsi.target.catalog import Catalog, Target
    from pyiscsi.target.connection import TargetConnection

    from ..pair import TARGET, Initiator, drain, feed, run_store_work, wire

    path = tmp_path / "lun.img"
    old, new = b"\xaa" * 512, b"\x55" * 512
    path.write_bytes(old * 256)
    store = FileStore(path)
    conn = TargetConnection(Catalog([Target(TARGET, {0: LogicalUnit(0, store, TARGET)})]), "t")
    ini = Initiator(conn)
    ini.login(immediate_data=True, initial_r2t=not immediate,
              max_recv_data_segment_length=65536, first_burst_length=65536)
    blocks = 64
    payload = new * blocks
    cdb = struct.pack(">BBIBHB", 0x2A, 0, 0, 0, blocks, 0)

    def check_whole() -> None:
        image = os.pread(os.open(path, os.O_RDONLY), 512 * blocks, 0)
        torn = [n for n in range(blocks) if image[n * 512:(n + 1) * 512] not in (old, new)]
        assert torn == []

    cuts = 0
    if immediate:
        cmd = P.ScsiCommand(itt=ini.next_itt(), cdb=cdb.ljust(16, b"\0"),
                            expected_length=len(payload), cmdsn=ini.cmdsn,
                            expstatsn=ini.expstatsn, lun=0, write=True, final=True,
                            data_length=len(payload))
        ini.cmdsn += 1
        pieces = wire(cmd, payload)
    else:
        ini.command(cdb, edtl=len(payload), write=True)
        (r2t,) = drain(conn)
        assert isinstance(r2t.pdu, P.R2T)
        pieces = wire(P.DataOut(itt=r2t.pdu.itt, ttt=r2t.pdu.ttt, lun=0, buffer_offset=0,
                                data_length=len(payload), final=True), payload)
    view = memoryview(pieces)
    while view:
        feed(conn, bytes(view[:300]))  # 300: pieces end inside blocks
        view = view[300:]
        if view:
            check_whole()
            cuts += 1
    run_store_work(conn)
    (reply,) = drain(conn)
    assert isinstance(reply.pdu, P.ScsiResponse) and reply.pdu.status == 0
    assert path.read_bytes()[: len(payload)] == payload
    assert cuts > 100  # the check really ran between pieces
    conn.close()
    store.close()
