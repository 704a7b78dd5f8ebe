"""A loop device served by ``pyiscsi serve --lun file:/dev/loopN``, end to end.

libiscsi's ``iscsi-readcapacity16`` reads the capacity; pyiscsi's own initiator writes, reads
back, flushes and unmaps; after the target stops, the loop device's backing file holds the
data (READ CAPACITY (16) SBC-4 §5.20.2, SYNCHRONIZE CACHE SBC-3 §5.22-5.23, UNMAP SBC-3 §5.28).
"""

from __future__ import annotations

import os
import struct
import subprocess
from pathlib import Path

import pytest

from pyiscsi.initiator import blocking

from ..loopdev import loop_device
from .conftest import require, start_server, stop_server

pytestmark = pytest.mark.interop

SIZE = 64 << 20


def unmap_cdb(lba: int, blocks: int) -> tuple[bytes, bytes]:
    """UNMAP (SBC-3 §5.28) of one block descriptor: the CDB and its parameter list."""
    params = struct.pack(">HH4xQI4x", 22, 16, lba, blocks)
    return bytes([0x42, 0, 0, 0, 0, 0, 0]) + len(params).to_bytes(2, "big") + b"\0", params


@pytest.mark.parametrize("block_size", [512, 4096])
def test_loop_device_lun(tmp_path: Path, block_size: int) -> None:
    readcapacity = require("iscsi-readcapacity16")
    image = tmp_path / "backing.img"
    blocks = SIZE // block_size
    pattern = bytes(range(256)) * (16384 // 256)
    n = len(pattern) // block_size
    tail_lba = blocks - n  # the pattern again in the last 16 KiB, its middle 8 KiB unmapped
    quarter = len(pattern) // 4
    unmapped = pattern[:quarter] + bytes(2 * quarter) + pattern[3 * quarter :]
    with loop_device(image, SIZE, "--sector-size", str(block_size)) as device:
        srv = start_server(tmp_path, "--portal", "127.0.0.1:0",
                           "--lun", f"file:{device},bs={block_size}")
        try:
            out = subprocess.run([readcapacity, srv.url], capture_output=True, text=True,
                                 timeout=60, check=False)
            assert out.returncode == 0, out.stderr
            assert f"RETURNED LOGICAL BLOCK ADDRESS:{blocks - 1}\n" in out.stdout
            assert f"LOGICAL BLOCK LENGTH IN BYTES:{block_size}\n" in out.stdout
            assert "LBPME:1 LBPRZ:1\n" in out.stdout
            with blocking.connect(srv.url) as lun:
                capacity = lun.read_capacity()
                assert (capacity.blocks, capacity.block_size) == (blocks, block_size)
                lun.write(100, pattern)
                lun.write(tail_lba, pattern)
                assert bytes(lun.read(100, n)) == pattern
                lun.sync()
                cdb, params = unmap_cdb(tail_lba + n // 4, n // 2)
                lun.execute(cdb, data_out=params)
                assert bytes(lun.read(tail_lba, n)) == unmapped
        finally:
            assert stop_server(srv) == 0
    with open(image, "rb") as f:
        f.seek(100 * block_size)
        assert f.read(len(pattern)) == pattern
        f.seek(SIZE - len(pattern))
        assert f.read(len(pattern)) == unmapped
        hole = SIZE - len(pattern) // 4 * 3
        assert os.lseek(f.fileno(), hole, os.SEEK_DATA) >= hole + len(pattern) // 2  # discarded
