"""A throw-away Ceph cluster for the interop tests (``micro-ceph.sh`` from the peers).

The cluster gets a private directory and monitor port under /tmp and is stopped at the end
of the session. ``PYISCSI_CEPH_CONF`` names a running cluster to use instead. Without the
Ceph packages the tests skip, except under ``CI`` where that is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import PEERS

PACKAGES = ("ceph-mon", "ceph-osd", "ceph-mgr", "ceph-common", "librbd1", "librados2")
"""What the cluster and the ``rbd:`` backstore need (Debian/Ubuntu package names)."""


def _missing(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def micro_ceph() -> Iterator[str]:
    """Start a one-OSD cluster; yield its ceph.conf path; stop it."""
    running = os.environ.get("PYISCSI_CEPH_CONF")
    if running:
        yield running
        return
    script = PEERS / "micro-ceph.sh"
    if not script.exists():
        _missing(f"{script} is missing")
    for tool in ("ceph-mon", "ceph-osd", "ceph"):
        if shutil.which(tool) is None:
            _missing(f"{tool} is not installed (apt-get install {' '.join(PACKAGES)})")
    directory = Path(tempfile.mkdtemp(prefix="pyiscsi-ceph-", dir="/tmp"))
    port = 47000 + (os.getpid() % 80) * 220  # msgr2; msgr1 +1; daemons +10..+200
    env = {**os.environ, "CEPH_DIR": str(directory), "CEPH_MON_PORT": str(port),
           "CEPH_WITH_MGR": "0"}
    start = subprocess.run(["bash", str(script), "start"], env=env, capture_output=True,
                           text=True, timeout=180)
    if start.returncode != 0:
        subprocess.run(["bash", str(script), "stop"], env={**env, "FAST": "1"},
                       capture_output=True, timeout=60)
        pytest.fail(f"micro-ceph did not start:\n{start.stdout}\n{start.stderr}")
    try:
        yield str(directory / "ceph.conf")
    finally:
        subprocess.run(["bash", str(script), "stop"], env={**env, "FAST": "1"},
                       capture_output=True, timeout=60)
