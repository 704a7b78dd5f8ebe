"""Finding the Ceph client libraries without a compiled binding.

The libraries are loaded by soname (``librados.so.2``, ``librbd.so.1``: the ABI these
bindings are written against, Ceph >= 14) through the dynamic loader's normal search
(ld.so.cache, ``LD_LIBRARY_PATH``), so any Python (a venv, pyenv) finds the distribution's
``librados2``/``librbd1`` packages; ``ctypes.util.find_library`` is the fallback for other
sonames. ``PYISCSI_LIBRADOS``/``PYISCSI_LIBRBD`` name a file to load instead.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Mapping, Sequence
from typing import Any

from .errors import CephUnavailable

Signatures = Mapping[str, tuple[Any, Sequence[Any]]]
"""Per C function: (restype, argtypes), set on the loaded library."""


def load(name: str, soname: str, env: str, signatures: Signatures) -> ctypes.CDLL:
    """Load ``lib{name}`` (``soname`` first) and set ``signatures`` on its functions;
    :class:`CephUnavailable` when absent."""
    candidates = [c for c in (os.environ.get(env), soname, ctypes.util.find_library(name)) if c]
    errors = []
    for candidate in candidates:
        try:
            lib = ctypes.CDLL(candidate, use_errno=True)
        except OSError as exc:
            errors.append(str(exc))
            continue
        for function, (restype, argtypes) in signatures.items():
            fn = getattr(lib, function)
            fn.restype = restype
            fn.argtypes = argtypes
        return lib
    raise CephUnavailable(
        f"lib{name} is not installed ({'; '.join(errors) or 'not found'}): install the "
        f"{'librados2' if name == 'rados' else 'librbd1'} package (Debian/Ubuntu) or set {env}"
    )
