"""The command-line LUN spec: ``KIND:ARG[,key=value|flag...]``.

``ram:SIZE``, ``file:PATH[,size=SIZE]`` or ``rbd:POOL/IMAGE[,size=SIZE][,conf=PATH]
[,id=CLIENT][,timeout=SECONDS][,threads=N]`` (a Ceph RBD image, created when missing and
``size=`` is given), with the flag ``ro``, the key ``bs=N`` (512, 1024, 2048 or 4096) and
``shared`` / ``shared=yes|no``: whether more than one gateway exports the LU (default: yes
for a store with a cluster-wide name, an ``rbd:`` image; no otherwise; a shared LU refuses
reservations, see :mod:`pyiscsi.scsi.dispatch`). ``PATH`` is
a regular file or a block device (whose size is its own: ``size=`` must then equal it).
Sizes are bytes or a number with K/M/G/T (or KiB/MiB/GiB/TiB), all powers of 1024. Every
mistake is a :class:`ValueError` with a one-line message.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass, replace

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
    """``ram``, ``file`` or ``rbd``."""
    path: str | None = None
    size: int | None = None
    """Bytes; None for an existing file whose size is taken as is."""
    read_only: bool = False
    block_size: int = 512
    image: str | None = None
    """``rbd``: ``POOL/IMAGE``."""
    conf: str | None = None
    """``rbd``: the ceph.conf to use (None: ``--ceph-conf``, else librados's default)."""
    client: str | None = None
    """``rbd``: the cephx client id (None: ``admin``)."""
    timeout: int | None = None
    """``rbd``: seconds before a cluster operation fails (None: 30)."""
    threads: int | None = None
    """``rbd``: librados completion threads of the LU's cluster handle (None: 1)."""
    shared: bool | None = None
    """``shared``/``shared=yes|no`` given; None: the store's default."""


def _parse_bs(text: str) -> int:
    try:
        bs = int(text)
    except ValueError:
        bs = 0
    if bs not in BLOCK_SIZES:
        raise ValueError(f"bad bs={text!r}: block size must be one of {BLOCK_SIZES}")
    return bs


def parse_lun_spec(text: str) -> LunSpec:
    """Parse ``ram:SIZE`` / ``file:PATH[,size=SIZE]`` / ``rbd:POOL/IMAGE[,...]`` plus
    ``ro`` and ``bs=N``."""
    kind, sep, rest = text.partition(":")
    kind = kind.strip().lower()
    if not sep or kind not in _KEYS:
        raise ValueError(f"bad LUN spec {text!r}: expected ram:SIZE, file:PATH[,size=SIZE] "
                         "or rbd:POOL/IMAGE[,size=SIZE]")
    arg, *options = rest.split(",")
    if not arg:
        raise ValueError(f"bad LUN spec {text!r}: {kind} needs an argument after ':'")
    seen: set[str] = set()
    values: dict[str, object] = {"block_size": 512}
    allowed = _KEYS[kind]
    for option in options:
        key, eq, value = option.partition("=")
        key = key.strip().lower()
        if key in seen:
            raise ValueError(f"bad LUN spec {text!r}: {key!r} given twice")
        seen.add(key)
        if key == "ro" and not eq:
            values["read_only"] = True
        elif key == "shared" and not eq:
            values["shared"] = True
        elif eq and key in allowed:
            field, convert = allowed[key]
            try:
                values[field] = convert(value)
            except ValueError as exc:
                raise ValueError(f"bad LUN spec {text!r}: {exc}") from None
        else:
            raise ValueError(f"bad LUN spec {text!r}: unknown option {option!r}")
    if kind == "ram":
        values["size"] = parse_size(arg)
    elif kind == "file":
        values["path"] = arg
    else:
        pool, slash, image = arg.partition("/")
        if not slash or not pool or not image or "/" in image or "@" in image:
            raise ValueError(f"bad LUN spec {text!r}: expected rbd:POOL/IMAGE")
        values["image"] = arg
    size = values.get("size")
    block_size = values["block_size"]
    assert isinstance(block_size, int)
    if isinstance(size, int) and (size <= 0 or size % block_size):
        raise ValueError(
            f"bad LUN spec {text!r}: size {size} is not a positive multiple of {block_size}"
        )
    return LunSpec(kind=kind, **values)  # type: ignore[arg-type]


def _whole_number(key: str, low: int, high: int, what: str) -> Callable[[str], int]:
    """A parser of ``key=N`` for N from ``low`` to ``high`` (``what``: its unit, for the
    message)."""
    def parse(text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            number = low - 1
        if not low <= number <= high:
            raise ValueError(f"bad {key}={text!r}: {what} from {low} to {high}")
        return number
    return parse


_parse_timeout = _whole_number("timeout", 1, 3600, "seconds")
_parse_threads = _whole_number("threads", 1, 64, "a count")


def _parse_text(text: str) -> str:
    if not text:
        raise ValueError("an empty value")
    return text


def _parse_yes_no(text: str) -> bool:
    answer = {"yes": True, "no": False}.get(text.strip().lower())
    if answer is None:
        raise ValueError(f"bad shared={text!r}: yes or no")
    return answer


_COMMON: dict[str, tuple[str, Callable[[str], object]]] = {
    "bs": ("block_size", _parse_bs), "shared": ("shared", _parse_yes_no),
}
_KEYS: dict[str, dict[str, tuple[str, Callable[[str], object]]]] = {
    "ram": _COMMON,
    "file": {**_COMMON, "size": ("size", parse_size)},
    "rbd": {**_COMMON, "size": ("size", parse_size), "conf": ("conf", _parse_text),
            "id": ("client", _parse_text), "timeout": ("timeout", _parse_timeout),
            "threads": ("threads", _parse_threads)},
}
"""The ``key=value`` options each kind takes: the LunSpec field and its parser."""


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


def with_ceph_conf(spec: LunSpec, conf: str | None) -> LunSpec:
    """An ``rbd:`` spec without ``conf=`` gets ``conf`` (``--ceph-conf``, ``ceph_conf``)."""
    if spec.kind != "rbd" or spec.conf is not None or conf is None:
        return spec
    return replace(spec, conf=conf)


def _open_rbd(spec: LunSpec) -> BackingStore:
    """An :class:`~.rbd.RbdStore`; a missing librbd or cluster is a clear ValueError."""
    from ..ceph.errors import CephError, CephUnavailable
    from .rbd import RbdSpec, RbdStore

    assert spec.image is not None
    pool, _, image = spec.image.partition("/")
    rbd = RbdSpec(pool, image, spec.conf, spec.client or "admin", spec.size,
                  spec.timeout or 30, spec.threads or 1)
    try:
        return RbdStore(rbd, spec.block_size, spec.read_only)
    except CephUnavailable as exc:
        raise ValueError(f"rbd:{spec.image}: {exc}") from None
    except CephError as exc:
        where = "" if spec.conf else " (ceph.conf from $CEPH_CONF or /etc/ceph)"
        raise ValueError(f"rbd:{spec.image}: {exc}{where}") from None


_OPENERS: dict[str, Callable[[LunSpec], BackingStore]] = {
    "ram": _open_ram, "file": _open_file, "rbd": _open_rbd}


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
    elif spec.kind == "rbd":
        text = f"rbd:{spec.image}"
        for key, value in (("size", format_size(spec.size) if spec.size else None),
                           ("conf", spec.conf), ("id", spec.client), ("timeout", spec.timeout),
                           ("threads", spec.threads)):
            if value is not None:
                text += f",{key}={value}"
    else:
        text = f"file:{spec.path}"
        if spec.size is not None:
            text += f",size={format_size(spec.size)}"
    if spec.block_size != 512:
        text += f",bs={spec.block_size}"
    if spec.shared is not None:
        text += f",shared={'yes' if spec.shared else 'no'}"
    return text + (",ro" if spec.read_only else "")
