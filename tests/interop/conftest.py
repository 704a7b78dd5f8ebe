"""Fixtures that run the real ``pyiscsi serve`` and locate third-party peers.

In CI (``CI`` set) a missing peer tool is a failure, never a skip.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PEERS = Path(os.environ.get("PYISCSI_PEERS", Path(__file__).resolve().parents[3] / "shared/peers"))
IQN = "iqn.2026-11.org.pyiscsi:disk"


def tpgt(portal: str) -> int:
    """The TPGT a ``serve`` whose first portal is ``host:port`` derives (README: Two gateways)."""
    from pyiscsi.scsi.port import derived_port_number

    host, _, port = portal.rpartition(":")
    return derived_port_number(host.strip("[]"), int(port))


def require(tool: str) -> str:
    """Path of a peer tool; fails in CI, skips elsewhere, when it is missing."""
    path = shutil.which(tool) or (str(PEERS / tool) if (PEERS / tool).exists() else None)
    if path is None:
        message = f"{tool} is not installed (run ../shared/peers/install.sh)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@dataclass
class Server:
    process: subprocess.Popen[str]
    urls: list[str]
    stats_path: Path

    @property
    def url(self) -> str:
        return self.urls[0]

    def stats(self) -> dict[str, int]:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                return dict(json.loads(self.stats_path.read_text()))
            except (FileNotFoundError, json.JSONDecodeError):
                time.sleep(0.1)
        raise AssertionError("no stats file")

    def fresh_stats(self) -> dict[str, int]:
        """Counters written after now (the server rewrites the file every second)."""
        mtime = self.stats_path.stat().st_mtime if self.stats_path.exists() else 0
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if self.stats_path.exists() and self.stats_path.stat().st_mtime > mtime:
                return self.stats()
            time.sleep(0.1)
        return self.stats()


def start_server(tmp: Path, *args: str) -> Server:
    stats = tmp / "stats.json"
    cmd = [sys.executable, "-m", "pyiscsi.cli", "serve", "--stats", str(stats), *args]
    with open(tmp / "serve.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=tmp, stdout=subprocess.PIPE, stderr=log, text=True)
    urls = []
    assert proc.stdout is not None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("serving "):
            urls.append(line.split()[1])
            wanted = args.count("--lun") or 1
            portals = args.count("--portal") or 1
            if len(urls) == wanted * portals:
                return Server(proc, urls, stats)
    proc.kill()
    raise AssertionError(f"pyiscsi serve did not start: {(tmp / 'serve.log').read_text()}")


def stop_server(server: Server) -> int:
    server.process.send_signal(signal.SIGTERM)
    try:
        return server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.process.kill()
        raise


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """A target on a free port: LUN 0 = 64 MiB RAM."""
    srv = start_server(tmp_path, "--portal", "127.0.0.1:0", "--lun", "ram:64MiB")
    yield srv
    assert stop_server(srv) == 0


@pytest.fixture(scope="session")
def ceph_conf() -> Iterator[str]:
    """One throw-away Ceph cluster for the session's RBD tests (:mod:`.ceph`)."""
    from .ceph import micro_ceph

    yield from micro_ceph()
