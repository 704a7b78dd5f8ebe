"""Metrics, admin socket and ``pyiscsi top`` against a real ``pyiscsi serve``: the README's
"Metrics" and "Status and top" examples run as written (ports swapped for free ones), and
``top`` runs in a real terminal (tmux) while a load runs."""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pyiscsi.admin import find_socket, request

from .conftest import require, start_server, stop_server

pytestmark = pytest.mark.interop

README = Path(__file__).resolve().parents[2] / "README.md"
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def section_blocks(title: str) -> list[str]:
    """The ```sh blocks of the README section ``## title``."""
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    body = text[start:end if end != -1 else None]
    return re.findall(r"```sh\n(.*?)```", body, flags=re.S)


def test_readme_metrics_and_status_examples_run(tmp_path: Path) -> None:
    require("curl")
    port, metrics_port = free_port(), free_port()
    script = "\n".join(section_blocks("Metrics") + section_blocks("Status and top"))
    assert "--metrics 127.0.0.1:9860" in script and "pyiscsi top" in script
    script = (script.replace("3260", str(port)).replace("9860", str(metrics_port))
              .replace("pyiscsi top ", "pyiscsi top --count 2 "))
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}",
           "PYISCSI_ADMIN_SOCKET": str(find_socket("127.0.0.1", port)), "COLUMNS": "200"}
    env.pop("PYISCSI_CHAP", None)
    done = subprocess.run(["bash", "-c", "set -euo pipefail\n"
                           "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n" + script],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    line = next(x for x in out.splitlines() if x.startswith("pyiscsi_lun_read_bytes_total"))
    assert line == ('pyiscsi_lun_read_bytes_total{lun="0",target="iqn.2026-11.org.pyiscsi:disk"}'
                    " 4224.0")  # what the README says it prints
    assert f"metrics http://127.0.0.1:{metrics_port}/metrics" in out
    assert "Sessions" in out and "Counters" in out  # admin status tables
    assert "\n3\n" in out  # read_commands from the --json example
    assert "LUNs of iqn.2026-11.org.pyiscsi:disk" in out  # top


def test_admin_socket_of_a_running_server(tmp_path: Path) -> None:
    path = tmp_path / "admin.sock"
    srv = start_server(tmp_path, "--portal", "127.0.0.1:0", "--lun", "ram:16MiB",
                       "--admin-socket", str(path))
    try:
        deadline = time.monotonic() + 10
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert oct(path.stat().st_mode & 0o777) == "0o600"
        answer = request(path, "status")
        assert answer["ok"] is True
        assert answer["status"]["targets"][0]["luns"][0]["bytes"] == 16 << 20
        assert request(path, "frobnicate") == {
            "ok": False, "error": "unknown verb 'frobnicate' (known: add-acl, add-lun, "
            "add-target, logout-session, remove-acl, remove-lun, remove-target, resize-lun, "
            "save, set-chap, status)"}
    finally:
        assert stop_server(srv) == 0
    assert not path.exists()


def test_top_in_a_real_terminal_shows_lun_iops(tmp_path: Path) -> None:
    tmux = require("tmux")
    srv = start_server(tmp_path, "--portal", "127.0.0.1:0", "--lun", "ram:64MiB")
    port = int(srv.url.split("/")[2].rsplit(":", 1)[1])
    path = find_socket("127.0.0.1", port)
    server = f"pyiscsi-test-{os.getpid()}"  # a tmux server of our own (-L)
    load = subprocess.Popen([sys.executable, "-m", "pyiscsi.cli", "bench", srv.url, "--rw",
                             "randread", "--bs", "4k", "--qd", "8", "--time", "20"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        top = shlex.join(["env", "-u", "COLUMNS", "-u", "LINES", sys.executable, "-m",
                          "pyiscsi.cli", "top", "--socket", str(path)])
        subprocess.run([tmux, "-L", server, "new-session", "-d", "-s", "top", "-x", "100",
                        "-y", "40", top], check=True, timeout=10)
        time.sleep(3)
        screen = subprocess.run([tmux, "-L", server, "capture-pane", "-p", "-t", "top"],
                                capture_output=True, text=True, check=True, timeout=10).stdout
    finally:
        subprocess.run([tmux, "-L", server, "kill-server"], capture_output=True, timeout=10)
        load.terminate()
        load.wait(timeout=20)
        assert stop_server(srv) == 0
    assert "LUNs of iqn.2026-11.org.pyiscsi:disk" in screen, screen
    rows = [line for line in screen.splitlines() if re.match(r"^│\s+0\s+│", line)]
    assert rows, screen
    cells = [c.strip() for c in rows[0].strip("│").split("│")]
    lun, iops, read_iops = cells[0], float(cells[1]), float(cells[2])
    assert lun == "0" and iops > 0 and read_iops > 0, screen
    assert "r MB/s" in screen and "lat p99" in screen, screen


def test_json_log_lines_name_target_session_and_connection(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "pyiscsi.cli", "--log-level", "info",
                             "--log-format", "json", "serve", "--portal", f"127.0.0.1:{port}",
                             "--lun", "ram:1MiB", "--admin-socket", "off"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().split()[1]
        subprocess.run([sys.executable, "-m", "pyiscsi.cli", "inquiry", url], check=True,
                       capture_output=True, timeout=30)
        time.sleep(0.3)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    lines = [json.loads(line) for line in err.splitlines()]
    login = next(x for x in lines if "logged in" in x["message"])
    assert login["target"] == "iqn.2026-11.org.pyiscsi:disk" and login["tsih"] >= 1
    assert isinstance(login["conn"], int) and login["level"] == "info"
    assert not login["message"].startswith("target=")
    assert not (find_socket("127.0.0.1", port)).exists()  # --admin-socket off
