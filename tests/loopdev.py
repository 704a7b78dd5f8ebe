"""Loop devices for block-device tests: ``losetup`` over a sparse file, detached afterwards.

Without root or ``losetup`` the test is skipped; in CI (``CI`` set) it fails instead.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def _losetup() -> str:
    """Path of ``losetup``; fails in CI, skips elsewhere, when loop devices are unavailable."""
    path = shutil.which("losetup")
    reason = None
    if os.geteuid() != 0:
        reason = "loop devices need root"
    elif path is None:
        reason = "losetup is not installed (util-linux)"
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    assert path is not None
    return path


@contextlib.contextmanager
def loop_device(image: Path, size: int = 64 << 20, *options: str) -> Iterator[str]:
    """A loop device (``losetup --find --show [options]``) over a new sparse ``image``."""
    losetup = _losetup()
    with open(image, "wb") as f:
        f.truncate(size)
    out = subprocess.run([losetup, "--find", "--show", *options, str(image)],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, f"losetup failed: {out.stderr.strip()}"
    device = out.stdout.strip()
    try:
        yield device
    finally:
        subprocess.run([losetup, "-d", device], check=True)
