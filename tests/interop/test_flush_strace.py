"""A real initiator's FUA writes make the file-backed target call fdatasync/msync.

The page cache survives a killed process, so killing the target cannot show this; tracing
the system calls can: FUA writes (libiscsi's Write10.DpoFua) must flush, plain writes with the
write cache enabled need not.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import require, start_server, stop_server
from .test_libiscsi import conformance

pytestmark = pytest.mark.interop


def traced_flushes(tmp_path: Path, family: str) -> int:
    strace = require("strace")
    srv = start_server(tmp_path, "--portal", "127.0.0.1:0", "--lun",
                       f"file:{tmp_path / 'lun.img'},size=64MiB")
    log = tmp_path / f"strace-{family}.log"
    tracer = subprocess.Popen([strace, "-f", "-qq", "-e", "trace=fdatasync,fsync,msync",
                               "-o", str(log), "-p", str(srv.process.pid)])
    try:
        time.sleep(1.0)  # let strace attach
        rc, text, _ = conformance(srv.url, family, tmp_path)
        assert rc == 0, text
    finally:
        tracer.terminate()
        tracer.wait(timeout=10)
        assert stop_server(srv) == 0
    return len(re.findall(r"\b(fdatasync|fsync|msync)\(", log.read_text()))


def test_fua_writes_reach_stable_storage(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert traced_flushes(tmp_path / "a", "SCSI.Write10.DpoFua") > 0
    assert traced_flushes(tmp_path / "b", "SCSI.Write10.Simple") == 0
