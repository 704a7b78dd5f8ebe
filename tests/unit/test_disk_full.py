"""A full disk under a sparse file store: writes fail with a SCSI error, never SIGBUS."""

from __future__ import annotations

import os
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyiscsi.backstore.file import FileStore
from pyiscsi.proto import pdu as P
from pyiscsi.scsi.lun import LogicalUnit
from pyiscsi.target.catalog import Catalog, Target
from pyiscsi.target.connection import TargetConnection

from ..pair import TARGET, Initiator, drain, feed, wire


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (root only); the file store on it claims 8 MiB."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"cannot mount a tmpfs: {done.stderr}")
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_write_past_free_space_is_check_condition(tiny_fs: Path) -> None:
    store = FileStore(str(tiny_fs / "lun.img"), size=8 << 20)
    target = Target(TARGET, {0: LogicalUnit(0, store, TARGET)})
    conn = TargetConnection(Catalog([target]), "full")
    ini = Initiator(conn)
    ini.login(max_recv_data_segment_length=262144, first_burst_length=262144)
    blocks = 4096  # 2 MiB: more than the file system holds
    payload = b"\x77" * 65536
    cmd = ini.command(struct.pack(">BBIBHB", 0x2A, 0, 0, 0, blocks, 0), edtl=blocks * 512,
                      write=True, immediate_data=payload)
    replies = drain(conn)
    (reply,) = [r for r in replies if isinstance(r.pdu, P.ScsiResponse)]
    assert reply.pdu.itt == cmd.itt and reply.pdu.status == 2  # CHECK CONDITION
    sense = reply.data[2:]
    # DATA PROTECT / SPACE ALLOCATION FAILED WRITE PROTECT (SBC-3 §4.7.3.6)
    assert sense[2] & 0x0F == 0x07 and sense[12:14] == b"\x27\x07"
    # the connection keeps serving: a small write that fits still succeeds
    ini.command(struct.pack(">BBIBHB", 0x2A, 0, 0, 0, 8, 0), edtl=4096, write=True,
                immediate_data=b"\x11" * 4096)
    (ok,) = drain(conn)
    assert ok.pdu.status == 0
    assert bytes(store.view(0, 4096)) == b"\x11" * 4096
    feed(conn, wire(P.LogoutRequest(itt=1, cmdsn=ini.cmdsn)))
    conn.close()
    store.close()
