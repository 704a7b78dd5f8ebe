"""libiscsi's tools log in with CHAP (one-way and mutual) and meet the initiator ACL of a real
``pyiscsi serve`` (RFC 7143 §12.1.3, §13.3)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import IQN, Server, require, start_server, stop_server, tpgt

pytestmark = pytest.mark.interop

USER, SECRET = "user", "secretsecret12"
TGT_USER, TGT_SECRET = "tgtuser", "targetsecret34"
ALLOWED = "iqn.2026-11.org.example:allowed"
OTHER = "iqn.2026-11.org.example:other"


def run(*cmd: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LIBISCSI_CHAP")}
    return subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=60,
                          env={**clean, **(env or {})})


def portal(server: Server) -> str:
    return server.url.split("/")[2]


def url(server: Server, cred: str = "", lun: bool = True) -> str:
    tail = f"/{IQN}/0" if lun else ""
    return f"iscsi://{cred}{portal(server)}{tail}"


@pytest.fixture
def chap_server(tmp_path: Path) -> Iterator[Server]:
    srv = start_server(tmp_path, "--portal", "127.0.0.1:0", "--lun", "ram:16MiB",
                       "--chap", f"{USER}:{SECRET}", "--mutual-chap", f"{TGT_USER}:{TGT_SECRET}")
    yield srv
    assert stop_server(srv) == 0
    log = (tmp_path / "serve.log").read_text()
    assert SECRET not in log and TGT_SECRET not in log


def test_one_way_chap(chap_server: Server) -> None:
    inq = require("iscsi-inq")
    ok = run(inq, url(chap_server, f"{USER}%{SECRET}@"))
    assert ok.returncode == 0, ok.stderr
    assert "Peripheral Device Type:DIRECT_ACCESS" in ok.stdout
    wrong = run(inq, url(chap_server, f"{USER}%wrongwrongwrong@"))
    assert wrong.returncode != 0 and "Authentication failure" in wrong.stderr
    bare = run(inq, url(chap_server))
    assert bare.returncode != 0 and "Authentication failure" in bare.stderr


def test_mutual_chap(chap_server: Server) -> None:
    inq = require("iscsi-inq")
    env = {"LIBISCSI_CHAP_TARGET_USERNAME": TGT_USER, "LIBISCSI_CHAP_TARGET_PASSWORD": TGT_SECRET}
    ok = run(inq, url(chap_server, f"{USER}%{SECRET}@"), env=env)
    assert ok.returncode == 0, ok.stderr
    # libiscsi checks our CHAP_R: a target that does not know the mutual secret is refused
    bad = {**env, "LIBISCSI_CHAP_TARGET_PASSWORD": "notthetargetsecret"}
    refused = run(inq, url(chap_server, f"{USER}%{SECRET}@"), env=bad)
    assert refused.returncode != 0 and "CHAP_R" in refused.stderr


def test_discovery_needs_chap(chap_server: Server) -> None:
    ls = require("iscsi-ls")
    ok = run(ls, url(chap_server, f"{USER}%{SECRET}@", lun=False))
    assert ok.returncode == 0, ok.stderr
    address = portal(chap_server)
    assert f"Target:{IQN} Portal:{address},{tpgt(address)}" in ok.stdout
    bare = run(ls, url(chap_server, lun=False))
    assert bare.returncode != 0 and IQN not in bare.stdout


def test_acl_refuses_other_initiators_and_hides_the_target(tmp_path: Path) -> None:
    inq, ls = require("iscsi-inq"), require("iscsi-ls")
    srv = start_server(tmp_path, "--portal", "127.0.0.1:0", "--lun", "ram:16MiB",
                       "--chap", f"{USER}:{SECRET}", "--allow", ALLOWED)
    try:
        cred = f"{USER}%{SECRET}@"
        ok = run(inq, "-i", ALLOWED, url(srv, cred))
        assert ok.returncode == 0, ok.stderr
        denied = run(inq, "-i", OTHER, url(srv, cred))
        assert denied.returncode != 0 and "Authorization failure" in denied.stderr
        seen = run(ls, "-i", ALLOWED, url(srv, cred, lun=False))
        assert seen.returncode == 0 and IQN in seen.stdout, seen.stderr
        hidden = run(ls, "-i", OTHER, url(srv, cred, lun=False))
        assert IQN not in hidden.stdout, hidden.stdout
    finally:
        assert stop_server(srv) == 0
