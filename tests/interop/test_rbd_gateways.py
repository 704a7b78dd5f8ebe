"""Two ``pyiscsi serve`` gateways on one RBD image (a private micro-ceph cluster).

They must be one logical unit seen through two target ports: the same serial and NAA
designator, different TPGT and relative target port identifier, data written through one
read back through the other, a LOGICAL UNIT RESET through one a unit attention on the
other's sessions, reservations refused on both, and libiscsi's MultipathIO suite passing.
The cluster is the session's (``ceph_conf`` in conftest, :mod:`.ceph`): without Ceph (or
libiscsi) the tests skip, except under ``CI`` where that is a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from pyiscsi.ceph import librados, librbd
from pyiscsi.ceph.errors import CephError
from pyiscsi.initiator import client
from pyiscsi.initiator.errors import ScsiCommandError
from pyiscsi.proto.wire import TmfFunction
from pyiscsi.scsi.port import derived_port_number

from .conftest import PEERS, Server, require, start_server, stop_server

pytestmark = pytest.mark.interop

IQN = "iqn.2026-11.org.pyiscsi:gateways"
T = TypeVar("T")


@pytest.fixture(scope="module")
def gateways(ceph_conf: str, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[tuple[Server, Server]]:
    """Gateway A and gateway B: the same target name and image, each on its own free port."""
    image = f"gw{os.getpid()}"
    spec = f"rbd:rbd/{image},size=64MiB,conf={ceph_conf}"
    servers: list[Server] = []
    try:
        for name in ("a", "b"):
            servers.append(start_server(tmp_path_factory.mktemp(name), "--portal",
                                        "127.0.0.1:0", "--target", IQN, "--lun", spec,
                                        "--admin-socket", "off"))
        yield servers[0], servers[1]
    finally:
        for server in servers:
            assert stop_server(server) == 0
        with librados.Cluster(ceph_conf) as cluster:  # a full memstore OSD pauses writes
            ioctx = cluster.ioctx("rbd")
            with contextlib.suppress(CephError):
                librbd.remove(ioctx, image)
            ioctx.close()


MiB = 1 << 20


def port_of(server: Server) -> int:
    return int(server.url.split("/")[2].rsplit(":", 1)[1])


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def designators(page: bytes) -> dict[tuple[int, int], bytes]:
    """VPD page 83h: (association, designator type) -> designator."""
    out, at = {}, 4
    while at < len(page):
        out[((page[at + 1] >> 4) & 3, page[at + 1] & 0xF)] = page[at + 4:at + 4 + page[at + 3]]
        at += 4 + page[at + 3]
    return out


async def port_view(url: str) -> tuple[int, dict[tuple[int, int], bytes], list[str]]:
    """(TargetPortalGroupTag of the login, VPD 83h designators, SendTargets addresses)."""
    async with await client.connect(url) as lun:
        tpgt = lun.session.params.target_portal_group_tag
        buf = bytearray(255)
        await lun.execute(bytes.fromhex("12018300ff00"), data_in=buf)
    portal = url.split("/")[2]
    ((_, addresses),) = await client.discover(portal)
    return tpgt, designators(bytes(buf[:4 + int.from_bytes(buf[2:4], "big")])), addresses


def test_same_lu_identity_through_iscsi_inq(gateways: tuple[Server, Server]) -> None:
    inq = require("iscsi-inq")
    seen = []
    for server in gateways:
        serial = subprocess.run([inq, "-e", "1", "-c", "128", server.url], capture_output=True,
                                text=True, errors="replace", timeout=30)
        ids = subprocess.run([inq, "-e", "1", "-c", "131", server.url], capture_output=True,
                             text=True, errors="replace", timeout=30)
        assert serial.returncode == 0 and ids.returncode == 0, serial.stderr + ids.stderr
        (number,) = re.findall(r"Unit Serial Number:\[(\w+)\]", serial.stdout)
        # the LU's own designators (association 0): T10 vendor id and NAA
        lu_part = ids.stdout[ids.stdout.index("Association:(0) LOGICAL_UNIT"):]
        seen.append((number, lu_part))
    assert seen[0] == seen[1]
    assert "Designator Type:(3) NAA" in seen[0][1]


def test_same_naa_different_target_ports(gateways: tuple[Server, Server]) -> None:
    views = [run(port_view(server.url)) for server in gateways]
    (tpgt_a, ids_a, addr_a), (tpgt_b, ids_b, addr_b) = views
    assert ids_a[(0, 3)] == ids_b[(0, 3)]  # NAA
    assert ids_a[(0, 1)] == ids_b[(0, 1)]  # T10 vendor id + serial
    for tpgt, ids, addresses, server in ((tpgt_a, ids_a, addr_a, gateways[0]),
                                         (tpgt_b, ids_b, addr_b, gateways[1])):
        expected = derived_port_number("127.0.0.1", port_of(server))  # the documented rule
        assert tpgt == expected
        assert int.from_bytes(ids[(1, 5)], "big") == expected  # target port group
        assert int.from_bytes(ids[(1, 4)], "big") == expected  # relative target port
        assert addresses == [f"127.0.0.1:{port_of(server)},{expected}"]
    assert tpgt_a != tpgt_b
    assert ids_a[(1, 4)] != ids_b[(1, 4)]


def test_write_through_a_reads_back_through_b(gateways: tuple[Server, Server]) -> None:
    payload = os.urandom(64 * 512)

    async def go() -> bytes:
        async with await client.connect(gateways[0].url) as a:
            await a.write(100, payload)
        async with await client.connect(gateways[1].url) as b:
            return bytes(await b.read(100, 64))

    assert run(go()) == payload


def test_lun_reset_on_a_is_a_unit_attention_on_b(gateways: tuple[Server, Server]) -> None:
    async def go() -> tuple[int, ScsiCommandError | None]:
        async with await client.connect(gateways[1].url) as b:
            b.session.unit_attention_retries = 1  # see the attentions, do not retry them
            for _ in range(4):  # whatever earlier tests left pending
                try:
                    await b.test_unit_ready()
                    break
                except ScsiCommandError:
                    continue
            async with await client.connect(gateways[0].url) as a:
                response = await a.session.task_management(TmfFunction.LOGICAL_UNIT_RESET)
            try:
                await b.test_unit_ready()
            except ScsiCommandError as exc:
                return response, exc
            return response, None

    response, error = run(go())
    assert response == 0  # Function complete
    assert error is not None and error.sense is not None
    assert (error.sense.key, error.sense.asc, error.sense.ascq) == (0x06, 0x29, 0x03)


@pytest.mark.parametrize("function", [TmfFunction.LOGICAL_UNIT_RESET,
                                      TmfFunction.CLEAR_TASK_SET])
def test_a_task_management_function_on_a_aborts_the_writes_in_flight_on_b(
        gateways: tuple[Server, Server], function: TmfFunction) -> None:
    """The LU has one task set for every path: a LOGICAL UNIT RESET or CLEAR TASK SET
    through A aborts the commands B is running (B counts them in ``remote_aborts``), and A
    answers once B's aborted writes have left librbd. B's initiator never gets a status for
    them (TAS=0): its commands are cancelled here, as its own timeout would."""
    before = gateways[1].fresh_stats()["remote_aborts"]

    async def go() -> int:
        async with await client.connect(gateways[1].url) as b:
            b.session.unit_attention_retries = 0
            slots = asyncio.Semaphore(16)
            writes: list[asyncio.Future[int]] = []

            async def keep_writing() -> None:  # 16 writes of 1 MiB always on their way
                for i in range(1 << 20):
                    await slots.acquire()
                    # from 4 MiB on: libiscsi's MultipathIO.CompareAndWrite (later in this
                    # module) expects block 256, which it never writes, to read zeros
                    w = asyncio.ensure_future(b.write(8192 + i % 48 * 2048,
                                                      bytes([1 + i % 250]) * MiB))
                    w.add_done_callback(lambda _: slots.release())
                    writes.append(w)

            writer = asyncio.ensure_future(keep_writing())
            await asyncio.sleep(0.3)
            async with await client.connect(gateways[0].url) as a:
                response = await a.session.task_management(function)
            writer.cancel()
            await asyncio.wait(writes, timeout=1)
            for w in [writer, *writes]:
                w.cancel()
            await asyncio.gather(writer, *writes, return_exceptions=True)
            return response

    assert run(go()) == 0  # Function complete
    assert gateways[1].fresh_stats()["remote_aborts"] > before


@pytest.mark.parametrize("cdb", ["16 00 00 00 00 00", "17 00 00 00 00 00",
                                 "5e 00 00 00 00 00 00 00 ff 00",
                                 "5f 00 00 00 00 00 00 00 18 00"],
                         ids=["RESERVE6", "RELEASE6", "PRIN", "PROUT"])
def test_reservations_are_refused(gateways: tuple[Server, Server], cdb: str) -> None:
    raw = bytes.fromhex(cdb.replace(" ", ""))

    async def go(url: str) -> ScsiCommandError:
        async with await client.connect(url) as lun:
            out = bytes(24) if raw[0] == 0x5F else None
            data_in = bytearray(255) if raw[0] == 0x5E else None
            with pytest.raises(ScsiCommandError) as exc:
                await lun.execute(raw, data_in=data_in, data_out=out)
            return exc.value

    for server in gateways:
        error = run(go(server.url))
        assert isinstance(error, ScsiCommandError) and error.sense is not None
        assert (error.sense.key, error.sense.asc, error.sense.ascq) == (0x05, 0x20, 0x00)


def test_multipath_io_suite(gateways: tuple[Server, Server], tmp_path: Path) -> None:
    require("iscsi-test-cu")
    out = subprocess.run(["bash", str(PEERS / "conformance.sh"), gateways[0].url,
                          "SCSI.MultipathIO"], capture_output=True, text=True, errors="replace",
                         timeout=700, env={**os.environ, "URL2": gateways[1].url,
                                           "OUTDIR": str(tmp_path / "conformance")})
    m = re.search(r"(\d+) passed, (\d+) failed \((\d+) really passed, (\d+) skipped", out.stdout)
    assert m, out.stdout + out.stderr
    assert (int(m[2]), int(m[3]), int(m[4])) == (0, 4, 0), out.stdout
    assert out.returncode == 0


def test_event_links_ignore_their_own_notifies_and_never_rebroadcast(ceph_conf: str) -> None:
    """Two links on one events object, as two gateways: a publish reaches the other LU
    once, the publisher's own watch ignores it, and what was received goes nowhere."""
    from pyiscsi.backstore.memory import MemoryStore
    from pyiscsi.ceph.librados import Cluster
    from pyiscsi.scsi.lun import LogicalUnit
    from pyiscsi.scsi.task import Nexus
    from pyiscsi.transport.lu_watch import open_link

    async def go() -> tuple[int, int, int, int, str | None]:
        loop = asyncio.get_running_loop()
        options = {"admin_socket": ""}
        clusters = [Cluster(ceph_conf, options=options) for _ in range(2)]
        lus = [LogicalUnit(0, MemoryStore(1 << 20), IQN) for _ in range(2)]
        nexus = Nexus("iqn.2026-11.org.example:host", 1)
        for lu in lus:
            lu.attentions.join(nexus)
        links = [open_link(lu, cluster, "rbd", f"links{os.getpid()}", loop)
                 for lu, cluster in zip(lus, clusters, strict=True)]
        try:
            delivery = lus[0].attention_everywhere(0x29, 0x03)
            assert delivery is not None
            done = loop.create_future()
            delivery.waiters = [lambda _: done.set_result(None)]
            await asyncio.wait_for(done, 30)
            await asyncio.sleep(0.5)  # a re-broadcast, were there one, would arrive by now
            return (links[0].received, links[1].received, lus[0].attentions.pending(nexus),
                    lus[1].attentions.pending(nexus), delivery.error)
        finally:
            for link in links:
                link.close()
            for cluster in clusters:
                cluster.shutdown()

    received_a, received_b, pending_a, pending_b, error = run(go())
    assert (received_a, received_b) == (0, 1)
    assert (pending_a, pending_b) == (1, 1)  # one unit attention on each side, no echo
    assert error is None


def test_a_lun_added_live_joins_the_events(gateways: tuple[Server, Server], ceph_conf: str,
                                           tmp_path: Path) -> None:
    """A third gateway gets the image as LUN 1 through ``pyiscsi admin add-lun``: a LUN
    RESET through gateway A reaches it; once removed, its link is gone with it."""
    sock = tmp_path / "admin.sock"
    third = start_server(tmp_path, "--portal", "127.0.0.1:0", "--target", IQN,
                         "--lun", "ram:1MiB", "--admin-socket", str(sock))
    spec = f"rbd:rbd/gw{os.getpid()},conf={ceph_conf}"

    def admin(*args: str) -> None:
        done = subprocess.run([sys.executable, "-m", "pyiscsi.cli", "admin", "--socket",
                               str(sock), *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr

    async def attention_after_reset(url: str) -> tuple[int, int, int] | None:
        async with await client.connect(url) as c:
            c.session.unit_attention_retries = 1
            for _ in range(4):  # the login's and the new LUN's attentions
                try:
                    await c.test_unit_ready()
                    break
                except ScsiCommandError:
                    continue
            async with await client.connect(gateways[0].url) as a:
                assert await a.session.task_management(TmfFunction.LOGICAL_UNIT_RESET) == 0
            try:
                await c.test_unit_ready()
            except ScsiCommandError as exc:
                assert exc.sense is not None
                return exc.sense.key, exc.sense.asc, exc.sense.ascq
            return None

    try:
        admin("add-lun", IQN, spec)
        url = third.url.rsplit("/", 1)[0] + "/1"
        assert run(attention_after_reset(url)) == (0x06, 0x29, 0x03)
        admin("remove-lun", IQN, "1")
        log = (tmp_path / "serve.log").read_text()
        assert "Traceback" not in log, log
    finally:
        assert stop_server(third) == 0


def test_explicit_tpgt_and_relative_port_id(tmp_path: Path) -> None:
    """``--tpgt`` / ``--relative-port-id`` replace the derived numbers everywhere."""
    srv = start_server(tmp_path, "--portal", "127.0.0.1:0", "--lun", "ram:1MiB",
                       "--tpgt", "300", "--relative-port-id", "400", "--admin-socket", "off")
    try:
        tag, ids, addresses = run(port_view(srv.url))
        assert tag == 300 and addresses == [f"127.0.0.1:{port_of(srv)},300"]
        assert int.from_bytes(ids[(1, 5)], "big") == 300
        assert int.from_bytes(ids[(1, 4)], "big") == 400
    finally:
        assert stop_server(srv) == 0
    bad = subprocess.run([sys.executable, "-m", "pyiscsi.cli", "serve", "--tpgt", "0"],
                         capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert bad.returncode == 2 and "--tpgt" in bad.stderr
