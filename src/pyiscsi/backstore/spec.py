"""The command-line LUN spec: ``KIND:ARG[,key=value|flag...]``.

``ram:SIZE`` or ``file:PATH[,size=SIZE]``, with the flag ``ro`` and the key ``bs=N``
(512, 1024, 2048 or 4096), and ``shared`` / ``shared=yes|no``: whether more than one gateway
exports the LU (default: yes for a store with a cluster-wide name, no otherwise; a shared
LU refuses reservations, see :mod:`pyiscsi.scsi.dispatch`). ``PATH`` is a regular file or a
block device (whose size is its own: ``size=`` must then equal it). Sizes are bytes or a
number with K/M/G/T (or KiB/MiB/GiB/TiB), all powers of 1024. Every mistake is a
:class:`ValueError` with a one-line message.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass

from .base import BackingStore
from .blockdev import BlockStore
from .file import FileStore
from .memory import MemoryStore

_UNITS = {"": 0, "b": 0, "k": 10, "m": 20, "g": 30, "t": 40}
_SIZE = re.compile(r"\s*(\d+)\s*(?:([kmgt])(?:ib)?|(b))?\s*", re.IGNORECASE)
BLOCK_SIZES = (512, 1024, 2048, 4096)


def parse_size(text: str) -> int:
    """``"4096"``, ``"64K"``, ``"1GiB"`` -> bytes (powers of 1024, suffix case-insensitive)."""
    m = _SIZE.fullmatch(text)
    if m is None:
        raise ValueError(f"bad size {text!r}: expected a number with an optional K/M/G/T suffix")
    unit = (m.group(2) or m.group(3) or "").lower()
    return int(m.group(1)) << _UNITS[unit]


@dataclass(frozen=True, slots=True)
class LunSpec:
    """One parsed LUN spec."""

    kind: str
    """``ram`` or ``file``."""
    path: str | None = None
    size: int | None = None
    """Bytes; None for an existing file whose size is taken as is."""
    read_only: bool = False
    block_size: int = 512
    shared: bool | None = None
    """``shared``/``shared=yes|no`` given; None: the store's default."""


_YES_NO = {"yes": True, "no": False}


def _parse_bs(text: str) -> int:
    try:
        bs = int(text)
    except ValueError:
        bs = 0
    if bs not in BLOCK_SIZES:
        raise ValueError(f"bad bs={text!r}: block size must be one of {BLOCK_SIZES}")
    return bs


def parse_lun_spec(text: str) -> LunSpec:
    """Parse ``ram:SIZE`` / ``file:PATH[,size=SIZE]`` plus ``ro`` and ``bs=N``."""
    kind, sep, rest = text.partition(":")
    kind = kind.strip().lower()
    if not sep or kind not in ("ram", "file"):
        raise ValueError(f"bad LUN spec {text!r}: expected ram:SIZE or file:PATH[,size=SIZE]")
    arg, *options = rest.split(",")
    if not arg:
        raise ValueError(f"bad LUN spec {text!r}: {kind} needs an argument after ':'")
    seen: set[str] = set()
    read_only = False
    block_size = 512
    size: int | None = None
    shared: bool | None = None
    for option in options:
        key, eq, value = option.partition("=")
        key = key.strip().lower()
        if key in seen:
            raise ValueError(f"bad LUN spec {text!r}: {key!r} given twice")
        seen.add(key)
        if key == "ro" and not eq:
            read_only = True
        elif key == "bs" and eq:
            block_size = _parse_bs(value)
        elif key == "shared" and (not eq or value.strip().lower() in _YES_NO):
            shared = _YES_NO[value.strip().lower()] if eq else True
        elif key == "size" and eq and kind == "file":
            size = parse_size(value)
        else:
            raise ValueError(f"bad LUN spec {text!r}: unknown option {option!r}")
    if kind == "ram":
        size = parse_size(arg)
        path = None
    else:
        path = arg
    if size is not None and (size <= 0 or size % block_size):
        raise ValueError(
            f"bad LUN spec {text!r}: size {size} is not a positive multiple of {block_size}"
        )
    return LunSpec(kind=kind, path=path, size=size, read_only=read_only, block_size=block_size,
                   shared=shared)


def _open_ram(spec: LunSpec) -> BackingStore:
    assert spec.size is not None
    return MemoryStore(spec.size, spec.block_size, spec.read_only)


def _is_block_device(path: str) -> bool:
    try:
        return stat.S_ISBLK(os.stat(path).st_mode)
    except OSError:
        return False


def _open_file(spec: LunSpec) -> BackingStore:
    """A :class:`BlockStore` for a block device, else a :class:`FileStore`."""
    assert spec.path is not None
    kind = BlockStore if _is_block_device(spec.path) else FileStore
    return kind(spec.path, spec.size, spec.block_size, spec.read_only)


_OPENERS: dict[str, Callable[[LunSpec], BackingStore]] = {"ram": _open_ram, "file": _open_file}


def open_store(spec: LunSpec) -> BackingStore:
    """Open the backing store a :class:`LunSpec` describes."""
    return _OPENERS[spec.kind](spec)


def format_size(size: int) -> str:
    """Bytes as :func:`parse_size` reads them back: the largest unit that divides them."""
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if size and not size % (1 << shift):
            return f"{size >> shift}{unit}"
    return str(size)


def format_lun_spec(spec: LunSpec) -> str:
    """The spec text :func:`parse_lun_spec` reads back as ``spec``."""
    if spec.kind == "ram":
        assert spec.size is not None
        text = f"ram:{format_size(spec.size)}"
    else:
        text = f"file:{spec.path}"
        if spec.size is not None:
            text += f",size={format_size(spec.size)}"
    if spec.block_size != 512:
        text += f",bs={spec.block_size}"
    if spec.shared is not None:
        text += f",shared={'yes' if spec.shared else 'no'}"
    return text + (",ro" if spec.read_only else "")
