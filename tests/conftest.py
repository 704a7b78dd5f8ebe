"""Test-session guard: a compiled module (mypyc, ``x.cpython-*.so`` beside ``x.py`` in src/)
shadows its source, so a ``.py`` edited after the build would not be what the tests run."""

from __future__ import annotations

from pathlib import Path

import pytest

import pyiscsi


def pytest_sessionstart(session: pytest.Session) -> None:
    stale = []
    for so in Path(pyiscsi.__file__).parent.rglob("*.so"):
        source = so.with_name(so.name.split(".", 1)[0] + ".py")
        if source.exists() and source.stat().st_mtime > so.stat().st_mtime:
            stale.append(str(source))
    if stale:
        pytest.exit("compiled modules older than their source (rebuild: pip install -e . or "
                    "python setup.py build_ext --inplace; or delete the .so files for the pure "
                    "build): " + ", ".join(sorted(stale)), returncode=4)
