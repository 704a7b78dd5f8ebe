"""Build: the hot modules compiled with mypyc from their typed sources (issue 12).

Metadata lives in pyproject.toml; this file only adds the C extensions. A compiled module
(``pyiscsi/proto/pdu.cpython-311-*.so``) shadows its ``.py`` at import, so the choice is made
at build time:

* default: the modules in ``COMPILED`` are compiled with mypyc (needs a C compiler and the
  Python headers: Debian ``gcc python3-dev``); no compiler found -> a warning and the
  pure-Python build.
* ``PYISCSI_PURE=1``: the pure-Python build (no extension modules at all).
* ``PYISCSI_COMPILE=1``: compiled or fail (CI), no silent fallback.

Every listed module keeps working uncompiled; the list is chosen by profile (py-spy under fio
4 KiB QD32) and must name whole class hierarchies (an interpreted class cannot inherit from a
compiled one).
"""

from __future__ import annotations

import os
import shutil
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

COMPILED = [
    # codec and framing
    "proto/pdu.py",
    "proto/framing.py",
    "proto/serial.py",
    "proto/wire.py",
    "proto/digest.py",
    "proto/fastcodec.py",
    # data placement
    "placement/counters.py",
    "placement/table.py",
    "placement/tag.py",
    # the target's engine
    "target/connection.py",
    "target/opcodes.py",
    "target/session.py",
    "target/state.py",
    "target/storework.py",
    "target/task.py",
    "target/taskset.py",
    "target/transfer.py",
    # SCSI
    "scsi/busy.py",
    "scsi/cdb.py",
    "scsi/dispatch.py",
    "scsi/iostats.py",
    "scsi/sbc.py",
    "scsi/sense.py",
    "scsi/task.py",
    "scsi/unit_attention.py",
    # backing stores: the RAM store's hierarchy (base -> mapped -> memory); these allow
    # interpreted subclasses (file.py and blockdev.py stay interpreted, as do test doubles)
    "backstore/base.py",
    "backstore/mapped.py",
    "backstore/memory.py",
    "backstore/ops.py",
    # transport
    "transport/stream.py",
    "transport/store_runner.py",
    "backstore/rbd.py",
    "backstore/pool.py",
    "ceph/librbd.py",
]


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "no", "false")


def _have_compiler() -> bool:
    """A C compiler and Python.h are both needed; probe instead of failing mid-build."""
    import sysconfig
    import tempfile

    from setuptools._distutils.ccompiler import new_compiler
    from setuptools._distutils.errors import CompileError, DistutilsExecError
    from setuptools._distutils.sysconfig import customize_compiler

    include = sysconfig.get_paths()["include"]
    if not os.path.exists(os.path.join(include, "Python.h")):
        return False
    cc = new_compiler()
    customize_compiler(cc)
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as f:
            f.write("#include <Python.h>\nint main(void) { return 0; }\n")
        try:
            cc.compile([src], output_dir=tmp, include_dirs=[include])
        except (CompileError, DistutilsExecError, OSError):
            return False
    return True


def ext_modules() -> list[object]:
    if _flag("PYISCSI_PURE"):
        print("pyiscsi: PYISCSI_PURE set, pure-Python build", file=sys.stderr)
        return []
    required = _flag("PYISCSI_COMPILE")
    if not _have_compiler():
        if required:
            raise SystemExit("pyiscsi: PYISCSI_COMPILE=1 but no C compiler / Python headers")
        print("pyiscsi: WARNING: no C compiler or Python headers (Debian: gcc python3-dev); "
              "building the pure-Python package", file=sys.stderr)
        return []
    from mypyc.build import mypycify

    here = os.path.dirname(os.path.abspath(__file__))
    # pip builds in the source tree: extension modules left in build/lib by an earlier build
    # with a longer COMPILED list would be installed too, and fail at import (their code is
    # not in this build's shared library); build/ is only a cache, start it afresh
    shutil.rmtree(os.path.join(here, "build"), ignore_errors=True)
    paths = [os.path.join("src", "pyiscsi", m) for m in COMPILED]
    cwd = os.getcwd()
    os.chdir(here)   # mypy reads pyproject's [tool.mypy]; module names come from src/
    try:
        return list(mypycify(paths, opt_level="3", debug_level="0", group_name="pyiscsi",
                             strip_asserts=False))
    finally:
        os.chdir(cwd)


class BuildExt(build_ext):
    """build_ext that stamps every extension it puts in the source tree (``--inplace``, editable
    installs) with the build time: mypyc's per-module shims rarely change, so their copied
    mtimes would be old, and tests/conftest.py takes a ``.py`` newer than its ``.so`` for a
    stale build."""

    def copy_extensions_to_source(self) -> None:
        super().copy_extensions_to_source()
        build_py = self.get_finalized_command("build_py")
        for ext in self.extensions:
            inplace_file, _ = self._get_inplace_equivalent(build_py, ext)
            if os.path.exists(inplace_file):
                os.utime(inplace_file)


setup(ext_modules=ext_modules(), cmdclass={"build_ext": BuildExt})
