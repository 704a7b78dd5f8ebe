"""Writing the running configuration back to TOML (``pyiscsi admin save``).

A small writer for this schema only (:mod:`tomllib` reads, nothing in the stdlib writes):
what :func:`dump_config` writes, :func:`~.load.load_config` reads back as the same
:class:`~.schema.Config`. LUN specs are written with absolute paths and their current size.

Secrets (:data:`.schema.SecretSources`): a secret read from a ``secret_file`` is written as
that reference; a literal ``secret`` of the loaded file stays a literal (the file is then
written mode 0600, as the loader demands); a secret the running server was given (``admin
set-chap`` from stdin) is written to its own 0600 file beside the config, and referenced.
A literal secret never enters a file it did not come from.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

from ..backstore.spec import format_lun_spec
from ..proto.chap import AuthConfig, ChapSecret
from ..target.catalog import LoginDefaults, Portal
from .schema import LITERAL, Config, SecretSources

Secrets = dict[Path, str]
"""Secret files to create (path -> secret)."""


def _str(text: str) -> str:
    return json.dumps(text).replace("\x7f", "\\u007f")


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return _str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def _portal(portal: Portal) -> str:
    host, port = portal
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def _chap(secret: ChapSecret, source: str | None, file_for: Path,
          secrets: Secrets) -> dict[str, object]:
    if source == LITERAL:
        return {"user": secret.name, "secret": secret.secret.decode()}
    if source is None:
        secrets[file_for] = secret.secret.decode()
        source = str(file_for)
    return {"user": secret.name, "secret_file": source}


def _auth(lines: list[str], auth: AuthConfig | None, sources: SecretSources, stem: Path,
          secrets: Secrets) -> None:
    if auth is None:
        return
    chap = _chap(auth.chap, sources[0], stem.with_name(stem.name + ".chap.secret"), secrets)
    lines.append(f"chap = {_value(chap)}")
    if auth.mutual is not None:
        mutual = _chap(auth.mutual, sources[1],
                       stem.with_name(stem.name + ".mutual-chap.secret"), secrets)
        lines.append(f"mutual_chap = {_value(mutual)}")


def _negotiation(login: LoginDefaults) -> dict[str, object]:
    return {name: getattr(login, name) for name in login.__slots__
            if getattr(login, name) is not None}


def dump_config(config: Config, path: Path) -> tuple[str, Secrets]:
    """The TOML text of ``config`` to be written at ``path``, and the secret files to write
    with it (secrets with no file of their own, named after ``path``)."""
    secrets: Secrets = {}
    base = path.absolute()
    lines = ["# pyiscsi configuration (written by `pyiscsi admin save`)"]
    if config.limits:
        lines += ["", "[limits]"]
        lines += [f"{name} = {_value(value)}" for name, value in config.limits]
    if config.gateway:
        lines += ["", "[gateway]"]
        lines += [f"{name} = {value}" for name, value in config.gateway]
    discovery = config.discovery
    if not discovery.enabled or discovery.auth is not None:
        lines += ["", "[discovery]", f"enabled = {_value(discovery.enabled)}"]
        _auth(lines, discovery.auth, discovery.chap_files,
              base.with_name(f"{base.stem}.discovery"), secrets)
    for target in config.targets:
        lines += ["", "[[target]]", f"name = {_str(target.name)}",
                  f"portals = {_value([_portal(p) for p in target.portals])}"]
        if target.alias:
            lines.append(f"alias = {_str(target.alias)}")
        if target.allow is not None:
            lines.append(f"allow = {_value(sorted(target.allow))}")
        _auth(lines, target.auth, target.chap_files,
              base.with_name(f"{base.stem}.{_slug(target.name)}"), secrets)
        negotiation = _negotiation(target.login)
        if negotiation:
            lines.append(f"negotiation = {_value(negotiation)}")
        for lun in target.luns:
            lines += ["", "[[target.lun]]", f"id = {lun.id}",
                      f"spec = {_str(format_lun_spec(lun.spec))}"]
            if lun.serial is not None:
                lines.append(f"serial = {_str(lun.serial)}")
    return "\n".join(lines) + "\n", secrets


def _write_atomic(path: Path, text: str, mode: int) -> None:
    """Write a temporary file beside ``path``, fsync it, rename it over ``path``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dirfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dirfd)
    finally:
        os.close(dirfd)


def save_config(config: Config, path: Path) -> list[Path]:
    """Write ``config`` to ``path`` atomically (its secret files first, mode 0600); the
    file is 0600 when it holds a literal secret, else it keeps its mode (new: 0644).
    Returns the secret files written."""
    text, secrets = dump_config(config, path)
    for secret_path, secret in secrets.items():
        _write_atomic(secret_path, secret + "\n", 0o600)
    literal = any(LITERAL in sources for sources in
                  [config.discovery.chap_files, *(t.chap_files for t in config.targets)])
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = 0o644
    _write_atomic(path, text, 0o600 if literal else mode)
    return list(secrets)
