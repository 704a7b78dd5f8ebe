"""``pyiscsi serve --config``: several targets from one file, met by libiscsi's tools and
our own initiator: portals per target, CHAP per target, SIGHUP adding and removing LUNs
under a logged-in session, an invalid file keeping the running configuration; the systemd
unit checked by ``systemd-analyze verify``."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyiscsi.initiator.client import Session

from .conftest import Server, require, stop_server, tpgt

pytestmark = pytest.mark.interop

DB, WEB = "iqn.2026-11.org.example:db", "iqn.2026-11.org.example:web"
ROOT = Path(__file__).resolve().parents[2]
TUR = bytes(6)
REPORT_LUNS = struct.pack(">BxxxxxIxx", 0xA0, 4096)


def run(*cmd: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LIBISCSI_CHAP")}
    return subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=60,
                          env={**clean, **(env or {})})


def start(tmp: Path, text: str, lines: int) -> Server:
    """``pyiscsi serve --config`` on ``text``; waits for its ``lines`` serving lines."""
    path = tmp / "pyiscsi.toml"
    path.write_text(text)
    path.chmod(0o600)
    stats = tmp / "stats.json"
    cmd = [sys.executable, "-m", "pyiscsi.cli", "--log-level", "info", "serve", "--config",
           str(path), "--stats", str(stats)]
    with open(tmp / "serve.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=tmp, stdout=subprocess.PIPE, stderr=log, text=True)
    assert proc.stdout is not None
    urls: list[str] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(urls) < lines:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("serving "):
            urls.append(line.split()[1])
    if len(urls) < lines:
        proc.kill()
        raise AssertionError(f"serve --config did not start: {(tmp / 'serve.log').read_text()}")
    return Server(proc, urls, stats)


def first_portal(server: Server) -> str:
    """host:port of the process's first portal (the first serving line): its TPGT's source."""
    return server.urls[0].split("/")[2]


def portal_of(server: Server, target: str) -> list[str]:
    """host:port of each portal ``target`` is served on (from the serving lines)."""
    out = []
    for url in server.urls:
        _, _, hostport, iqn, _ = url.split("/")
        if iqn == target and hostport not in out:
            out.append(hostport)
    return out


def wait_log(tmp: Path, pattern: str, count: int = 1, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = (tmp / "serve.log").read_text()
        if len(re.findall(pattern, text)) >= count:
            return text
        time.sleep(0.05)
    raise AssertionError(f"{pattern!r} not logged: {(tmp / 'serve.log').read_text()}")


TWO_TARGETS = f'''
[[target]]
name = "{DB}"
portals = ["127.0.0.1:0"]
luns = ["ram:16MiB"]

[[target]]
name = "{WEB}"
portals = ["127.0.0.2:0"]
luns = ["ram:8MiB", "ram:4MiB"]
'''


@pytest.fixture
def two(tmp_path: Path) -> Iterator[Server]:
    srv = start(tmp_path, TWO_TARGETS, 3)
    yield srv
    assert stop_server(srv) == 0


def test_discovery_per_portal_shows_only_its_targets(two: Server) -> None:
    ls, inq = require("iscsi-ls"), require("iscsi-inq")
    (db_portal,), (web_portal,) = portal_of(two, DB), portal_of(two, WEB)
    assert db_portal.startswith("127.0.0.1:") and web_portal.startswith("127.0.0.2:")
    two_tpgt = tpgt(first_portal(two))  # one target port: every portal has its TPGT
    for portal, name, other in ((db_portal, DB, WEB), (web_portal, WEB, DB)):
        out = run(ls, f"iscsi://{portal}")
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines() == [f"Target:{name} Portal:{portal},{two_tpgt}"]
        assert other not in out.stdout
    listed = run(ls, "-s", f"iscsi://{web_portal}")
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[0] for line in listed.stdout.splitlines() if line.startswith("Lun:")] \
        == ["Lun:0", "Lun:1"]
    for url in two.urls:
        ok = run(inq, url)
        assert ok.returncode == 0 and "DIRECT_ACCESS" in ok.stdout, ok.stderr
    # a target through the other target's portal: not found there (0x0203)
    wrong = run(inq, f"iscsi://{web_portal}/{DB}/0")
    assert wrong.returncode != 0 and "Target not found" in wrong.stderr


def test_chap_per_target_and_for_discovery(tmp_path: Path) -> None:
    inq, ls = require("iscsi-inq"), require("iscsi-ls")
    secrets = {"db": "dbsecret-0123456789", "disc": "discovery-0123456789"}
    for name, secret in secrets.items():
        (tmp_path / f"{name}.secret").write_text(secret + "\n")
        (tmp_path / f"{name}.secret").chmod(0o600)
    text = f'''
[discovery]
chap = {{ user = "disc", secret_file = "disc.secret" }}

[[target]]
name = "{DB}"
portals = ["127.0.0.1:0"]
luns = ["ram:4MiB"]
chap = {{ user = "dbuser", secret_file = "db.secret" }}

[[target]]
name = "{WEB}"
portals = ["127.0.0.1:0"]
luns = ["ram:4MiB"]
chap = {{ user = "webuser", secret = "websecret-0123456789" }}
'''
    srv = start(tmp_path, text, 2)
    try:
        (portal,) = portal_of(srv, DB)
        db_cred, web_cred = f"dbuser%{secrets['db']}@", "webuser%websecret-0123456789@"
        for cred, name in ((db_cred, DB), (web_cred, WEB)):
            ok = run(inq, f"iscsi://{cred}{portal}/{name}/0")
            assert ok.returncode == 0 and "DIRECT_ACCESS" in ok.stdout, ok.stderr
        for cred, name in ((db_cred, WEB), (web_cred, DB), ("dbuser%wrongwrongwrong@", DB),
                           ("", WEB)):
            refused = run(inq, f"iscsi://{cred}{portal}/{name}/0")
            assert refused.returncode != 0 and "Authentication failure" in refused.stderr
        seen = run(ls, f"iscsi://disc%{secrets['disc']}@{portal}")
        assert seen.returncode == 0, seen.stderr
        tag = tpgt(first_portal(srv))
        assert sorted(seen.stdout.splitlines()) == [f"Target:{DB} Portal:{portal},{tag}",
                                                    f"Target:{WEB} Portal:{portal},{tag}"]
        for cred in ("", db_cred):
            hidden = run(ls, f"iscsi://{cred}{portal}")
            assert hidden.returncode != 0 and DB not in hidden.stdout
    finally:
        assert stop_server(srv) == 0
    log = (tmp_path / "serve.log").read_text()
    assert not any(s in log for s in (*secrets.values(), "websecret-0123456789"))


async def ua_session(host_port: str, target: str) -> Session:
    host, port = host_port.rsplit(":", 1)
    session = await Session.open(host, int(port), target)
    session.unit_attention_retries = 1  # see the attentions
    return session


async def sense(session: Session, lun: int) -> tuple[int, int, int] | None:
    out = await session.execute(TUR, lun=lun, check=False)
    return None if out.status == 0 else (out.sense[2] & 0x0F, out.sense[12], out.sense[13])


async def report_luns(session: Session) -> list[int]:
    buf = bytearray(4096)
    await session.execute(REPORT_LUNS, data_in=buf)
    n = int.from_bytes(buf[:4], "big") // 8
    return [int.from_bytes(buf[8 + 8 * i:10 + 8 * i], "big") & 0x3FFF for i in range(n)]


def test_sighup_adds_and_removes_luns_under_a_logged_in_session(tmp_path: Path) -> None:
    inq, ls = require("iscsi-inq"), require("iscsi-ls")
    srv = start(tmp_path, TWO_TARGETS, 3)
    path = tmp_path / "pyiscsi.toml"
    (web,) = portal_of(srv, WEB)
    (db,) = portal_of(srv, DB)

    async def main() -> None:
        session = await ua_session(web, WEB)
        doomed = await ua_session(db, DB)
        assert await report_luns(session) == [0, 1]
        # WEB: LUN 1 removed, LUN 2 added; DB removed
        path.write_text(f'''
[[target]]
name = "{WEB}"
portals = ["127.0.0.2:0"]
luns = ["ram:8MiB", {{ id = 2, spec = "ram:2MiB" }}]
''')
        srv.process.send_signal(signal.SIGHUP)
        await asyncio.to_thread(wait_log, tmp_path, r"reloaded .*: -target .*db.*-lun .*web/1, "
                                                    r"\+lun .*web/2")
        assert await report_luns(session) == [0, 2]
        assert await sense(session, 0) == (0x6, 0x3F, 0x0E)  # REPORTED LUNS DATA HAS CHANGED
        assert await sense(session, 0) is None
        assert await sense(session, 1) == (0x5, 0x25, 0x00)  # LOGICAL UNIT NOT SUPPORTED
        assert await sense(session, 2) is None
        for _ in range(100):
            if doomed.is_closed:
                break
            await asyncio.sleep(0.05)
        assert doomed.is_closed and not session.is_closed
        await session.close()

    try:
        asyncio.run(main())
        added = run(inq, f"iscsi://{web}/{WEB}/2")
        assert added.returncode == 0 and "DIRECT_ACCESS" in added.stdout, added.stderr
        gone = run(ls, f"iscsi://{db}")
        assert gone.returncode != 0  # its only portal is no longer listened on
    finally:
        assert stop_server(srv) == 0


def test_sighup_with_an_invalid_file_keeps_the_running_config(tmp_path: Path) -> None:
    inq = require("iscsi-inq")
    srv = start(tmp_path, TWO_TARGETS, 3)
    path = tmp_path / "pyiscsi.toml"
    (web,) = portal_of(srv, WEB)
    try:
        path.write_text(TWO_TARGETS.replace('"ram:4MiB"', '"ram:4MiB", "disk:/x"'))
        srv.process.send_signal(signal.SIGHUP)
        log = wait_log(tmp_path, "reload refused, the running configuration stays")
        assert f"{path}: target[1].luns[2]: bad LUN spec 'disk:/x'" in log
        path.write_text("[[target]\n")
        srv.process.send_signal(signal.SIGHUP)
        log = wait_log(tmp_path, "reload refused", count=2)
        assert f"{path}: invalid TOML" in log
        for url in srv.urls:
            ok = run(inq, url)
            assert ok.returncode == 0 and "DIRECT_ACCESS" in ok.stdout, ok.stderr
        assert srv.process.poll() is None

        async def luns() -> list[int]:
            session = await ua_session(web, WEB)
            try:
                assert await sense(session, 1) is None  # nothing changed: no attention
                return await report_luns(session)
            finally:
                await session.close()

        assert asyncio.run(luns()) == [0, 1]
    finally:
        assert stop_server(srv) == 0


def test_the_systemd_unit_verifies(tmp_path: Path) -> None:
    """``systemd-analyze verify`` on contrib/pyiscsi.service, its paths moved: the
    executables to this checkout's, the file to a checked config."""
    analyze = require("systemd-analyze")
    exe = shutil.which("pyiscsi") or str(Path(sys.executable).parent / "pyiscsi")
    assert Path(exe).exists()
    config = tmp_path / "pyiscsi.toml"
    config.write_text(TWO_TARGETS)
    unit = (ROOT / "contrib/pyiscsi.service").read_text()
    assert "ExecReload=/bin/kill -HUP $MAINPID" in unit
    unit = unit.replace("/usr/local/bin/pyiscsi", exe).replace("/etc/pyiscsi/pyiscsi.toml",
                                                               str(config))
    (tmp_path / "pyiscsi.service").write_text(unit)
    out = run(analyze, "verify", str(tmp_path / "pyiscsi.service"))
    assert out.returncode == 0, out.stderr
    assert out.stderr.strip() == "", out.stderr
    check = run(exe, "config", "check", str(config))
    assert check.returncode == 0, check.stderr
