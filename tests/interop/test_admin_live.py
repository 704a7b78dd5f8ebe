"""Live administration of a real ``pyiscsi serve`` under logged-in sessions: libiscsi's tools
and pyiscsi's own initiator see LUNs come and go, a LUN grow, a session asked to log out.
The README's Administration block runs here too."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

from pyiscsi.admin import request
from pyiscsi.initiator.client import Session

from .conftest import IQN, require, start_server, stop_server
from .test_config import report_luns, sense

TUR = bytes(6)
README = Path(__file__).resolve().parents[2] / "README.md"


def admin(sock: Path, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pyiscsi.cli", "admin", "--socket", str(sock),
                           *args], capture_output=True, text=True, input=input, timeout=60)


def libiscsi_luns(port: int) -> list[int]:
    out = subprocess.run([require("iscsi-ls"), "-s", f"iscsi://127.0.0.1:{port}"],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    return [int(n) for n in re.findall(r"Lun:(\d+)", out)]


def test_luns_added_removed_and_grown_under_sessions(tmp_path: Path) -> None:
    sock = tmp_path / "admin.sock"
    srv = start_server(tmp_path, "--portal", "127.0.0.1:0", "--lun", "ram:16MiB",
                       "--lun", "ram:16MiB", "--admin-socket", str(sock))
    port = int(srv.url.split(":")[2].split("/")[0])
    try:
        async def main() -> None:
            session = await Session.open("127.0.0.1", port, IQN)
            session.unit_attention_retries = 1
            for lun in (0, 1):
                await session.execute(TUR, lun=lun, check=False)  # the login's UAs
            loop = asyncio.get_running_loop()
            done = await loop.run_in_executor(None, admin, sock, "add-lun", IQN,
                                              f"file:{tmp_path}/new.img,size=8MiB")
            assert done.returncode == 0, done.stderr
            assert await sense(session, 0) == (0x6, 0x3F, 0x0E)
            assert await report_luns(session) == [0, 1, 2]
            assert await loop.run_in_executor(None, libiscsi_luns, port) == [0, 1, 2]
            done = await loop.run_in_executor(None, admin, sock, "remove-lun", IQN, "1")
            assert done.returncode == 0, done.stderr
            assert await sense(session, 0) == (0x6, 0x3F, 0x0E)
            assert await sense(session, 1) == (0x5, 0x25, 0x00)
            assert await report_luns(session) == [0, 2]
            assert await loop.run_in_executor(None, libiscsi_luns, port) == [0, 2]
            await session.execute(TUR, lun=2, check=False)
            done = await loop.run_in_executor(None, admin, sock, "resize-lun", IQN, "2",
                                              "64MiB")
            assert done.returncode == 0, done.stderr
            assert await sense(session, 2) == (0x6, 0x2A, 0x09)
            cap = await loop.run_in_executor(None, lambda: subprocess.run(
                [require("iscsi-readcapacity16"), f"iscsi://127.0.0.1:{port}/{IQN}/2"],
                capture_output=True, text=True, timeout=30, check=True).stdout)
            assert "Total size:67108864" in cap
            assert (tmp_path / "new.img").stat().st_size == 64 << 20
            done = await loop.run_in_executor(None, admin, sock, "resize-lun", IQN, "2", "1MiB")
            assert done.returncode == 2 and "only grows" in done.stderr
            assert not session.is_closed
            await session.close()

        asyncio.run(main())
    finally:
        assert stop_server(srv) == 0


def test_logout_session_answered_by_our_initiator(tmp_path: Path) -> None:
    sock = tmp_path / "admin.sock"
    srv = start_server(tmp_path, "--portal", "127.0.0.1:0", "--lun", "ram:16MiB",
                       "--admin-socket", str(sock))
    port = int(srv.url.split(":")[2].split("/")[0])
    try:
        async def main() -> None:
            session = await Session.open("127.0.0.1", port, IQN)
            loop = asyncio.get_running_loop()
            status = await loop.run_in_executor(None, request, sock, "status")
            (tsih,) = [s["tsih"] for s in status["status"]["sessions"]]
            done = await loop.run_in_executor(None, admin, sock, "logout-session", str(tsih))
            assert done.returncode == 0, done.stderr
            for _ in range(200):
                if session.is_closed:
                    break
                await asyncio.sleep(0.02)
            assert session.is_closed
            for _ in range(100):
                status = await loop.run_in_executor(None, request, sock, "status")
                if not status["status"]["sessions"]:
                    break
                await asyncio.sleep(0.05)
            assert status["status"]["sessions"] == []

        asyncio.run(main())
    finally:
        assert stop_server(srv) == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_readme_administration_block_runs(tmp_path: Path) -> None:
    text = README.read_text()
    section = text[text.index("## Administration"):]
    block = section[section.index("```sh\n") + 6:section.index("\n```", section.index("```sh"))]
    script = block.replace("3260", str(free_port()))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}"
                                 f"{os.environ['PATH']}", "TMPDIR": str(tmp_path)}
    done = subprocess.run(["bash", "-e", "-c", script], capture_output=True, text=True,
                          timeout=120, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no LUN 9" in done.stderr and "exit 2" in done.stdout
    assert "ok: 2 targets, 3 LUNs" in done.stdout  # LUNs 0 and 5, and two's 0
