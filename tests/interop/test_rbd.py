"""The Ceph RBD backstore against a real cluster (micro-ceph) and real initiators.

libiscsi's tools and iscsi-test-cu suites check the LUN as a peer sees it; pyiscsi's own
initiator sends the COMPARE AND WRITE whose MISCOMPARE sense must carry the offset of the
first differing byte, and librbd read directly checks the bytes are in the cluster.
"""

from __future__ import annotations

import contextlib
import os
import re
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyiscsi.ceph import librados, librbd
from pyiscsi.ceph.errors import CephError
from pyiscsi.initiator import blocking

from .conftest import Server, require, start_server, stop_server
from .test_libiscsi import conformance, run

pytestmark = pytest.mark.interop

MiB = 1 << 20


@pytest.fixture
def image(request: pytest.FixtureRequest, ceph_conf: str) -> Iterator[str]:
    """A fresh image name per test, removed afterwards (the cluster lives for the session
    and a full memstore OSD would pause every write)."""
    name = "t-" + re.sub(r"[^a-z0-9]", "", request.node.name.lower())[:40] + f"-{os.getpid()}"
    yield name
    with librados.Cluster(ceph_conf) as cluster:
        ioctx = cluster.ioctx("rbd")
        with contextlib.suppress(CephError):  # never created (a test of refusals)
            librbd.remove(ioctx, name)
        ioctx.close()


@pytest.fixture
def rbd_server(tmp_path: Path, ceph_conf: str, image: str) -> Iterator[Server]:
    srv = start_server(tmp_path, "--portal", "127.0.0.1:0", "--ceph-conf", ceph_conf,
                       "--lun", f"rbd:rbd/{image},size=64MiB")
    yield srv
    assert stop_server(srv) == 0
    assert srv.stats()["internal_errors"] == 0


def _read_image(conf: str, name: str, offset: int, length: int) -> bytes:
    """The image's bytes as librbd reads them, bypassing pyiscsi."""
    with librados.Cluster(conf) as cluster:
        ioctx = cluster.ioctx("rbd")
        img = librbd.Image(ioctx, name)
        try:
            buf = memoryview(bytearray(length))
            addr, keep = librbd.address(buf)
            img.read(offset, length, addr)
            del keep
            return bytes(buf)
        finally:
            img.close()
            ioctx.close()


def test_inquiry_capacity_and_block_limits(rbd_server: Server) -> None:
    require("iscsi-readcapacity16")
    out = run("iscsi-readcapacity16", rbd_server.url).stdout
    assert "Total size:67108864" in out and "LBPME:1 LBPRZ:1" in out
    with blocking.connect(rbd_server.url) as lun:
        vpd = bytearray(64)
        lun.execute(bytes((0x12, 1, 0xB0, 0, 64, 0)), data_in=vpd)
    assert vpd[1] == 0xB0
    assert vpd[5] == 1  # MAXIMUM COMPARE AND WRITE LENGTH: librbd's one 512-byte sector
    optimal_transfer, = struct.unpack_from(">I", vpd, 12)
    unmap_granularity, = struct.unpack_from(">I", vpd, 28)
    assert optimal_transfer == unmap_granularity == (4 * MiB) // 512  # the object size


def test_write_read_back_lands_in_the_cluster(rbd_server: Server, ceph_conf: str,
                                              image: str) -> None:
    data = os.urandom(3 * MiB)
    before = rbd_server.fresh_stats()
    with blocking.connect(rbd_server.url) as lun:
        lun.write(4096, data)  # R2T bursts into the buffer pool, rbd_aio_writev from there
        assert bytes(lun.read(4096, len(data) // 512)) == data
        lun.sync()  # SYNCHRONIZE CACHE -> rbd_aio_flush
    assert _read_image(ceph_conf, image, 4096 * 512, len(data)) == data
    after = rbd_server.fresh_stats()
    assert after["rx_placed"] - before["rx_placed"] >= 2 * MiB  # past the first burst
    assert after["tx_copied"] == before["tx_copied"]  # reads sent from librbd's buffer
    # every request went to librbd's aio (none to a worker's blocking call)
    requests = after["store_requests"] - before["store_requests"]
    assert requests > 0
    assert after["store_requests_async"] - before["store_requests_async"] == requests


def test_compare_and_write_miscompare_reports_the_offset(rbd_server: Server) -> None:
    block = os.urandom(512)
    with blocking.connect(rbd_server.url) as lun:
        lun.write(100, block)
        wrong = bytearray(block)
        wrong[77] ^= 0xFF
        cdb = struct.pack(">BBQ3xBBB", 0x89, 0, 100, 1, 0, 0)
        out = lun.execute(cdb, data_out=bytes(wrong) + b"N" * 512, check=False)
        assert out.status == 0x02
        sense = out.sense
        assert sense[0] & 0x80 and sense[2] & 0x0F == 0x0E  # VALID, MISCOMPARE
        assert sense[12:14] == b"\x1d\x00"  # MISCOMPARE DURING VERIFY OPERATION
        assert int.from_bytes(sense[3:7], "big") == 77  # INFORMATION: first differing byte
        assert bytes(lun.read(100, 1)) == block  # nothing written
        out = lun.execute(cdb, data_out=block + b"N" * 512, check=False)
        assert out.status == 0 and bytes(lun.read(100, 1)) == b"N" * 512
        two = struct.pack(">BBQ3xBBB", 0x89, 0, 100, 2, 0, 0)  # past MAXIMUM C&W LENGTH
        out = lun.execute(two, data_out=bytes(2048), check=False)
        assert out.status == 0x02 and out.sense[2] & 0x0F == 0x05


def test_write_same_and_unmap(rbd_server: Server, ceph_conf: str, image: str) -> None:
    with blocking.connect(rbd_server.url) as lun:
        ws = struct.pack(">BBQIBB", 0x93, 0, 20000, 100, 0, 0)  # WRITE SAME (16)
        assert lun.execute(ws, data_out=b"W" * 512, check=False).status == 0
        assert bytes(lun.read(20000, 100)) == b"W" * 51200
        param = struct.pack(">HH4x", 22, 16) + struct.pack(">QI4x", 20010, 30)
        cdb = struct.pack(">BB4xBHB", 0x42, 0, 0, len(param), 0)  # UNMAP
        assert lun.execute(cdb, data_out=param, check=False).status == 0
        assert bytes(lun.read(20010, 30)) == bytes(30 * 512)  # LBPRZ: zeros
        assert bytes(lun.read(20040, 60)) == b"W" * 60 * 512
    assert _read_image(ceph_conf, image, 20010 * 512, 512) == bytes(512)


@pytest.mark.parametrize("suite", ["SCSI.Read16", "SCSI.Write16", "SCSI.WriteSame16",
                                   "SCSI.Unmap", "SCSI.CompareAndWrite",
                                   "SCSI.OrWrite", "SCSI.GetLBAStatus", "iSCSI.iSCSITMF",
                                   "SCSI.Verify16", "SCSI.WriteVerify16"])
def test_iscsi_test_cu_suites(rbd_server: Server, tmp_path: Path, suite: str) -> None:
    rc, text, counts = conformance(rbd_server.url, suite, tmp_path)
    assert counts["failed"] == 0 and counts["passed"] > 0 and rc == 0, text


@pytest.mark.parametrize("suite", ["SCSI.Verify16", "SCSI.OrWrite"])
def test_4k_blocks_verify_and_orwrite(tmp_path: Path, ceph_conf: str, image: str,
                                      suite: str) -> None:
    """VERIFY and ORWRITE read the image with librbd aio, not on the event loop, at bs=4096
    too. (COMPARE AND WRITE is refused there: librbd compares 512 bytes at most, and one
    emulated by a gateway would not be atomic across gateways.)"""
    srv = start_server(tmp_path, "--portal", "127.0.0.1:0", "--ceph-conf", ceph_conf,
                       "--lun", f"rbd:rbd/{image},size=64MiB,bs=4096")
    try:
        rc, text, counts = conformance(srv.url, suite, tmp_path)
    finally:
        assert stop_server(srv) == 0
    assert counts["failed"] == 0 and counts["passed"] > 0 and rc == 0, text
    assert srv.stats()["internal_errors"] == 0


def _serve_fails(tmp_path: Path, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "pyiscsi.cli", "serve", "--portal",
                           "127.0.0.1:0", "--admin-socket", "off", *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=90)
    assert proc.returncode != 0
    return proc.stderr


def test_size_creates_then_must_match(tmp_path: Path, ceph_conf: str, image: str) -> None:
    srv = start_server(tmp_path, "--portal", "127.0.0.1:0", "--lun",
                       f"rbd:rbd/{image},size=32MiB,conf={ceph_conf}")
    assert stop_server(srv) == 0
    err = _serve_fails(tmp_path, "--lun", f"rbd:rbd/{image},size=64MiB,conf={ceph_conf}")
    assert f"rbd:rbd/{image} has 33554432 bytes, not the 67108864 of size=" in err
    srv = start_server(tmp_path, "--portal", "127.0.0.1:0", "--lun",
                       f"rbd:rbd/{image},conf={ceph_conf}")  # no size=: as it is
    out = run("iscsi-readcapacity16", srv.url).stdout
    assert stop_server(srv) == 0
    assert "Total size:33554432" in out


def test_missing_image_and_missing_cluster_are_clear_errors(tmp_path: Path,
                                                             ceph_conf: str) -> None:
    err = _serve_fails(tmp_path, "--lun", f"rbd:rbd/absent-{os.getpid()},conf={ceph_conf}")
    assert "does not exist (give size= to create it)" in err
    err = _serve_fails(tmp_path, "--lun", f"rbd:nopool/x,size=1M,conf={ceph_conf}")
    assert "rados_ioctx_create: No such file or directory (pool 'nopool')" in err
    dead = tmp_path / "dead.conf"
    dead.write_text("[global]\nmon host = 127.0.0.1:9\nauth client required = none\n"
                    f"log file = {tmp_path}/client.log\n")
    err = _serve_fails(tmp_path, "--lun", f"rbd:rbd/x,size=1M,conf={dead},timeout=3")
    assert "rados_connect: Connection timed out" in err


def _io_context_threads() -> int:
    """Threads of this process librados named ``io_context_pool`` (its completion pool)."""
    names = (Path(task, "comm").read_text().strip() for task in Path("/proc/self/task").iterdir())
    return sum(name == "io_context_pool" for name in names)


@pytest.mark.parametrize("threads", [None, 3])
def test_threads_sets_the_completion_pool_of_the_lu(ceph_conf: str, image: str,
                                                    threads: int | None) -> None:
    """``threads=N`` is librados's completion pool of the LU's own cluster handle: N threads
    more in the process while the store is open (1 without the key; Ceph's default is 2)."""
    from pyiscsi.backstore.spec import open_store, parse_lun_spec

    text = f"rbd:rbd/{image},size=4MiB,conf={ceph_conf}"
    before = _io_context_threads()
    store = open_store(parse_lun_spec(text + (f",threads={threads}" if threads else "")))
    try:
        assert store.cluster.conf_get("librados_thread_count") == str(threads or 1)  # type: ignore[attr-defined]
        assert _io_context_threads() - before == (threads or 1)
    finally:
        store.close()
