"""The admin socket: one JSON request per line, mode 0600, stale sockets, default paths."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
from pathlib import Path

import pytest

from pyiscsi import admin
from pyiscsi.admin import AdminServer, default_socket_path, find_socket, request


def run_with_server(path: Path, client: object) -> object:
    """Start an AdminServer at ``path``, run ``client(path)`` on a thread, stop."""

    async def main() -> object:
        server = AdminServer(path, {"status": lambda req: {"status": {"hello": 1}},
                                    "boom": lambda req: 1 // 0})  # type: ignore[dict-item]
        await server.start()
        try:
            return await asyncio.get_running_loop().run_in_executor(None, client, path)
        finally:
            await server.close()

    return asyncio.run(main())


def test_status_unknown_verb_and_bad_requests(tmp_path: Path) -> None:
    path = tmp_path / "a.sock"

    def client(p: Path) -> list[dict[str, object]]:
        answers = [request(p, "status"), request(p, "nope"), request(p, "boom")]
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(p))
            s.sendall(b'not json\n{"verb": 3}\n{"verb":"status"}\n')
            f = s.makefile("rb")
            answers += [json.loads(f.readline()) for _ in range(3)]
        return answers

    answers = run_with_server(path, client)
    assert isinstance(answers, list)
    assert answers[0] == {"ok": True, "status": {"hello": 1}}
    assert answers[1]["ok"] is False and "unknown verb 'nope'" in str(answers[1]["error"])
    assert "known: boom, status" in str(answers[1]["error"])
    assert answers[2]["ok"] is False and "boom failed" in str(answers[2]["error"])
    assert answers[3]["ok"] is False and "bad request" in str(answers[3]["error"])
    assert answers[4]["ok"] is False
    assert answers[5]["ok"] is True  # the connection served several requests
    assert not path.exists()  # removed on close


def test_socket_is_mode_0600(tmp_path: Path) -> None:
    def client(p: Path) -> int:
        return stat.S_IMODE(p.stat().st_mode)

    assert run_with_server(tmp_path / "m.sock", client) == 0o600


def test_stale_socket_is_replaced_and_live_one_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # a dead server's socket file
    assert run_with_server(path, lambda p: request(p, "status")["ok"]) is True

    def second(p: Path) -> str:
        async def start() -> str:
            try:
                await AdminServer(p, {}).start()
            except OSError as exc:
                return str(exc)
            return "started"
        return asyncio.run(start())

    assert "another server" in str(run_with_server(path, second))


def test_a_regular_file_is_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "f.sock"
    path.write_text("keep me")
    with pytest.raises(OSError, match="not a socket"):
        asyncio.run(AdminServer(path, {}).start())
    assert path.read_text() == "keep me"


def test_default_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "run"
    xdg = tmp_path / "xdg"
    xdg.mkdir()
    monkeypatch.setattr(admin, "socket_dirs", lambda: [run / "pyiscsi", xdg / "pyiscsi",
                                                       tmp_path / "tmp"])
    # /run missing (not writable): the XDG runtime dir
    assert default_socket_path("127.0.0.1", 3260) == xdg / "pyiscsi" / "127.0.0.1-3260.sock"
    run.mkdir()
    assert default_socket_path("::1", 3261) == run / "pyiscsi" / "__1-3261.sock"
    # a client finds the socket that exists, wherever it is
    (xdg / "pyiscsi").mkdir()
    (xdg / "pyiscsi" / "127.0.0.1-3262.sock").touch()
    assert find_socket("127.0.0.1", 3262) == xdg / "pyiscsi" / "127.0.0.1-3262.sock"


def test_real_socket_dirs_prefer_run_then_xdg_then_tmp(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1234")
    dirs = admin.socket_dirs()
    assert dirs == [Path("/run/pyiscsi"), Path("/run/user/1234/pyiscsi"),
                    Path(f"/tmp/pyiscsi-{os.getuid()}")]


# ---------------------------------------------------------------- live administration
# An in-process server from a config file, its admin socket with every verb, our own
# initiator logged in over loopback.

import hashlib  # noqa: E402
import struct  # noqa: E402
from collections.abc import Awaitable, Callable  # noqa: E402
from typing import Any  # noqa: E402

from click.testing import CliRunner  # noqa: E402

from pyiscsi.admin_cli import admin as admin_command  # noqa: E402
from pyiscsi.backstore.base import StoreBusy  # noqa: E402
from pyiscsi.backstore.file import FileStore  # noqa: E402
from pyiscsi.backstore.memory import MemoryStore  # noqa: E402
from pyiscsi.config.build import build_catalog  # noqa: E402
from pyiscsi.config.live import Administration  # noqa: E402
from pyiscsi.config.load import load_config  # noqa: E402
from pyiscsi.config.reload import Reloader  # noqa: E402
from pyiscsi.initiator import connection as initiator_connection  # noqa: E402
from pyiscsi.initiator.client import Session  # noqa: E402
from pyiscsi.proto.chap import ChapSecret  # noqa: E402
from pyiscsi.proto.wire import Opcode  # noqa: E402
from pyiscsi.target import connection as target_connection  # noqa: E402
from pyiscsi.target.server import TargetServer  # noqa: E402
from tests.unit.test_config_reload import TUR, login, report_luns, sense, target  # noqa: E402

A, B = "iqn.2026-11.org.example:a", "iqn.2026-11.org.example:b"
HOST = "iqn.1993-08.org.debian:01:host1"


class Live:
    """What a check gets: the server, its admin and a client for its socket."""

    def __init__(self, tmp: Path, server: TargetServer, admin: Administration,
                 sock: Path) -> None:
        self.tmp, self.server, self.admin, self.sock = tmp, server, admin, sock

    async def ask(self, verb: str, **fields: Any) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            None, lambda: request(self.sock, verb, timeout=30, cwd=str(self.tmp), **fields))

    async def cli(self, *args: str, input: str | None = None) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, lambda: CliRunner().invoke(
            admin_command, ["--socket", str(self.sock), *args], input=input))


def live(tmp: Path, text: str, check: Callable[[Live], Awaitable[None]]) -> None:
    path = tmp / "c.toml"
    path.write_text(text)
    path.chmod(0o600)
    config = load_config(path)

    async def main() -> None:
        server = TargetServer(build_catalog(config, config.make_limits()))
        await server.start(config.portals)
        reloader = Reloader(server, config)
        administration = Administration(server, reloader, file=path)
        sock = tmp / "admin.sock"
        admin_server = AdminServer(sock, dict(administration.verbs()))
        await admin_server.start()
        try:
            await check(Live(tmp, server, administration, sock))
        finally:
            await admin_server.close()
            await reloader.close()
            await server.stop()
            for t in server.catalog.targets.values():
                for lu in t.luns.values():
                    lu.store.close()

    asyncio.run(main())


def test_add_and_remove_lun_under_a_session(tmp_path: Path) -> None:
    async def check(t: Live) -> None:
        session = await login(t.server, A)
        assert await t.ask("add-lun", target=A, spec="ram:1MiB") == {
            "ok": True, "target": A, "lun": 1}
        assert await sense(session, TUR, 0) == (0x6, 0x3F, 0x0E)  # REPORTED LUNS changed
        assert await report_luns(session) == [0, 1]
        answer = await t.ask("add-lun", target=A, spec="file:b.img,size=1MiB", id=5)
        assert answer["lun"] == 5 and (t.tmp / "b.img").stat().st_size == 1 << 20
        assert (await t.ask("add-lun", target=A, spec="ram:1MiB", id=5))["error"] == (
            f"add-lun failed: {A} already has LUN 5")
        assert "bad LUN spec" in (await t.ask("add-lun", target=A, spec="disk:x"))["error"]
        assert (await t.ask("add-lun", target=A, spec="ram:1MiB"))["lun"] == 2  # lowest free
        assert (await t.ask("remove-lun", target=A, lun=1))["ok"]
        assert await sense(session, TUR, 1) == (0x5, 0x25, 0x00)
        assert await sense(session, TUR, 0) == (0x6, 0x3F, 0x0E)
        assert await report_luns(session) == [0, 2, 5]
        assert "has no LUN 1" in (await t.ask("remove-lun", target=A, lun=1))["error"]
        assert "no target" in (await t.ask("remove-lun", target=B, lun=0))["error"]
        assert not session.is_closed
        await session.close()

    live(tmp_path, target(A), check)


WRITE_10 = ">BBIBHB"


def test_remove_lun_with_writes_in_flight(tmp_path: Path) -> None:
    """Writes in flight are aborted or done: nothing reaches the file after the answer,
    the session lives on."""
    async def check(t: Live) -> None:
        session = await login(t.server, A)
        await session.execute(TUR, lun=1, check=False)  # the UA of the login
        data = bytes(range(256)) * 4096  # 1 MiB
        writes = [asyncio.ensure_future(session.execute(
            struct.pack(WRITE_10, 0x2A, 0, i * 2048, 0, 2048, 0), lun=1, data_out=data,
            check=False)) for i in range(8)]
        await asyncio.sleep(0.005)
        assert (await t.ask("remove-lun", target=A, lun=1))["ok"]
        image = t.tmp / "w.img"
        before = hashlib.sha256(image.read_bytes()).digest()
        await asyncio.wait(writes, timeout=1.0)
        assert hashlib.sha256(image.read_bytes()).digest() == before
        assert not session.is_closed
        assert await sense(session, TUR, 0) == (0x6, 0x3F, 0x0E)
        for w in writes:
            w.cancel()

    live(tmp_path, target(A, luns=f'"ram:1MiB", "file:{tmp_path}/w.img,size=16MiB"'), check)


READ_CAPACITY_16 = struct.pack(">BBQIBB", 0x9E, 0x10, 0, 32, 0, 0)


async def capacity(session: Session, lun: int) -> tuple[int, int]:
    buf = bytearray(32)
    await session.execute(READ_CAPACITY_16, lun=lun, data_in=buf)
    last, bs = struct.unpack(">QI", buf[:12])
    return last + 1, bs


def test_resize_lun_grows_ram_and_file(tmp_path: Path) -> None:
    async def check(t: Live) -> None:
        session = await login(t.server, A)
        for lun in (0, 1):
            await session.execute(TUR, lun=lun, check=False)
        await session.execute(struct.pack(WRITE_10, 0x2A, 0, 0, 0, 1, 0), lun=1,
                              data_out=b"\xab" * 512)
        answer = await t.ask("resize-lun", target=A, lun=1, size="4MiB")
        assert answer == {"ok": True, "target": A, "lun": 1, "size": 4 << 20, "blocks": 8192}
        assert (t.tmp / "r.img").stat().st_size == 4 << 20
        assert await sense(session, TUR, 1) == (0x6, 0x2A, 0x09)  # CAPACITY DATA changed
        assert await capacity(session, 1) == (8192, 512)
        buf = bytearray(512)
        await session.execute(struct.pack(">BBIBHB", 0x28, 0, 0, 0, 1, 0), lun=1,
                              data_in=buf)
        assert buf == b"\xab" * 512  # the data stays
        await session.execute(struct.pack(WRITE_10, 0x2A, 0, 8191, 0, 1, 0), lun=1,
                              data_out=b"\xcd" * 512)  # the new last block
        assert (await t.ask("resize-lun", target=A, lun=0, size=2 << 20))["ok"]
        assert await sense(session, TUR, 0) == (0x6, 0x2A, 0x09)
        assert await capacity(session, 0) == (4096, 512)
        error = (await t.ask("resize-lun", target=A, lun=0, size="1MiB"))["error"]
        assert "only grows" in error
        assert "multiple of the block size" in (
            await t.ask("resize-lun", target=A, lun=0, size=(4 << 20) + 1))["error"]
        # the running config follows: save writes the new sizes
        assert (await t.ask("save", file="s.toml"))["ok"]
        saved = load_config(t.tmp / "s.toml")
        assert [lun.spec.size for lun in saved.targets[0].luns] == [2 << 20, 4 << 20]
        await session.close()

    live(tmp_path, target(A, luns=f'"ram:1MiB", "file:{tmp_path}/r.img,size=1MiB"'), check)


def test_stores_grow_under_live_views(tmp_path: Path) -> None:
    ram = MemoryStore(1 << 20)
    held = ram.view(0, 512)
    with pytest.raises(StoreBusy):
        ram.grow(2 << 20)
    held[:3] = b"abc"  # the view still works
    del held
    ram.grow(2 << 20)
    assert ram.size == 2 << 20 and bytes(ram.view(0, 3)) == b"abc"
    ram.close()
    store = FileStore(tmp_path / "g.img", 1 << 20)
    old = store.view(0, 512)
    store.grow(3 << 20)
    old[:3] = b"xyz"  # a task in flight writing through the old mapping: same file pages
    assert bytes(store.view(0, 3)) == b"xyz" and store.size == 3 << 20
    store.write((3 << 20) - 512, b"\x01" * 512)
    del old
    store.close()
    assert (tmp_path / "g.img").read_bytes()[:3] == b"xyz"


def test_resize_of_a_busy_ram_lun_is_refused(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from pyiscsi.config import live as live_module

    monkeypatch.setattr(live_module, "BUSY_RETRY", 0.1)

    async def check(t: Live) -> None:
        held = t.server.catalog.targets[A].luns[0].store.view(0, 512)  # I/O in flight
        error = (await t.ask("resize-lun", target=A, lun=0, size="2MiB"))["error"]
        assert "I/O in flight" in error and "retry" in error
        del held
        assert (await t.ask("resize-lun", target=A, lun=0, size="2MiB"))["ok"]

    live(tmp_path, target(A), check)


def test_add_and_remove_target(tmp_path: Path) -> None:
    async def check(t: Live) -> None:
        answer = await t.ask("add-target", name=B, portals=["127.0.0.1:0"],
                             luns=["ram:1MiB", "ram:2MiB"])
        assert answer["ok"] and answer["luns"] == [0, 1]
        session = await login(t.server, B)
        assert await report_luns(session) == [0, 1]
        assert "exists" in (await t.ask("add-target", name=B, portals=["127.0.0.1:0"]))["error"]
        assert "portals" in (await t.ask("add-target", name="iqn.2026-11.x:c"))["error"]
        assert (await t.ask("remove-target", target=B))["ok"]
        for _ in range(100):
            if session.is_closed:
                break
            await asyncio.sleep(0.02)
        assert session.is_closed and B not in t.server.catalog.targets
        assert "no target" in (await t.ask("remove-target", target=B))["error"]

    live(tmp_path, target(A), check)


def test_acl_entries_added_and_removed(tmp_path: Path) -> None:
    async def check(t: Live) -> None:
        assert (await t.ask("add-acl", target=A, initiator=HOST))["allow"] == [HOST]
        # our initiator is not HOST: it may no longer log in
        with pytest.raises(Exception, match=r"0x0202|authoriz|not allowed|0202"):
            await login(t.server, A)
        assert (await t.ask("add-acl", target=A, initiator="iqn.2026-11.org.pyiscsi:"
                                                         "initiator"))["ok"]
        session = await login(t.server, A)
        assert (await t.ask("remove-acl", target=A,
                            initiator="iqn.2026-11.org.pyiscsi:initiator"))["allow"] == [HOST]
        for _ in range(100):
            if session.is_closed:
                break
            await asyncio.sleep(0.02)
        assert session.is_closed  # no session outlives the right to it
        assert "not in the ACL" in (await t.ask("remove-acl", target=A,
                                                initiator="iqn.2026-11.x:y"))["error"]
        assert "initiator" in (await t.ask("add-acl", target=A, initiator="bad"))["error"]

    live(tmp_path, target(A), check)


def test_set_chap_from_file_and_stdin_and_save(tmp_path: Path) -> None:
    secret_file = tmp_path / "a.secret"
    secret_file.write_text("a-secret-from-file\n")
    secret_file.chmod(0o600)

    async def check(t: Live) -> None:
        result = await t.cli("set-chap", A, "--user", "u1", "--secret-file", str(secret_file))
        assert result.exit_code == 0, result.output
        catalog = t.server.catalog
        assert catalog.targets[A].auth is not None
        assert catalog.targets[A].auth.chap == ChapSecret("u1", b"a-secret-from-file")
        result = await t.cli("set-chap", B, "--user", "u2", input="a-secret-on-stdin\n")
        assert result.exit_code == 0, result.output
        assert "a-secret-on-stdin" not in str(result.output)
        result = await t.cli("set-chap", B, "--user", "u2", input="short\n")
        assert result.exit_code == 2 and "shorter than" in result.output
        result = await t.cli("save")
        assert result.exit_code == 0, result.output
        text = (t.tmp / "c.toml").read_text()
        assert f'secret_file = "{secret_file}"' in text
        assert "a-secret-on-stdin" not in text and "a-secret-from-file" not in text
        assert 'secret = "a-literal-secret"' in text  # a literal of the loaded file stays
        assert stat.S_IMODE((t.tmp / "c.toml").stat().st_mode) == 0o600
        own = t.tmp / "c.iqn.2026-11.org.example_b.chap.secret"
        assert own.read_text() == "a-secret-on-stdin\n"
        assert stat.S_IMODE(own.stat().st_mode) == 0o600
        saved = load_config(t.tmp / "c.toml")
        assert saved == t.admin.reloader.config
        assert (await t.cli("set-chap", A, "--none")).exit_code == 0
        assert catalog.targets[A].auth is None

    live(tmp_path, target(A) + target(B) + "[discovery]\nchap = { user = \"d\", "
         "secret = \"a-literal-secret\" }\n", check)


def test_cli_errors_go_to_stderr_with_exit_2(tmp_path: Path) -> None:
    async def check(t: Live) -> None:
        result = await t.cli("remove-lun", A, "9")
        assert result.exit_code == 2
        assert result.output.startswith("pyiscsi: error: remove-lun failed:")
        result = await t.cli("add-lun", A, "ram:1MiB")
        assert result.exit_code == 0 and json.loads(result.output) == {"target": A, "lun": 1}

    live(tmp_path, target(A), check)


def test_logout_session_is_honoured_by_our_initiator(tmp_path: Path) -> None:
    async def check(t: Live) -> None:
        session = await login(t.server, A)
        (tsih,) = t.server.catalog.sessions
        answer = await t.ask("logout-session", tsih=tsih, within=3)
        assert answer == {"ok": True, "tsih": tsih, "within": 3, "connections": 1}
        for _ in range(100):
            if session.is_closed and not t.server.catalog.sessions:
                break
            await asyncio.sleep(0.02)
        assert session.is_closed and not t.server.catalog.sessions
        assert "no session" in (await t.ask("logout-session", tsih=tsih))["error"]

    live(tmp_path, target(A), check)


def test_a_session_that_does_not_log_out_is_dropped(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(target_connection, "LOGOUT_GRACE", 0.2)
    monkeypatch.setitem(initiator_connection._HANDLERS, Opcode.ASYNC_MESSAGE,
                        lambda conn, pdu, event: None)  # a deaf initiator

    async def check(t: Live) -> None:
        session = await login(t.server, A)
        (tsih,) = t.server.catalog.sessions
        assert (await t.ask("logout-session", tsih=tsih, within=0))["ok"]
        for _ in range(150):
            if session.is_closed:
                break
            await asyncio.sleep(0.02)
        assert session.is_closed and not t.server.catalog.sessions

    live(tmp_path, target(A), check)
