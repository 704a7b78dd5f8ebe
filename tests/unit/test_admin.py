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
