"""Who may log in to ``pyiscsi serve``: CHAP credentials and initiator ACLs from flags, the
environment and a private file. Every error message is safe to print: secrets never appear.
"""

from __future__ import annotations

import ipaddress
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..proto.chap import AuthConfig, ChapSecret

ENV_CHAP = "PYISCSI_CHAP"
ENV_MUTUAL_CHAP = "PYISCSI_MUTUAL_CHAP"
MIN_SECRET = 12
"""Shortest CHAP secret we accept (bytes): 96 bits, what common targets demand."""
NAME_PREFIXES = ("iqn.", "eui.", "naa.")


@dataclass
class AccessConfig:
    """The result: CHAP for every login (None = off) and the allowed InitiatorNames."""

    auth: AuthConfig | None = None
    allowed: frozenset[str] | None = None
    sources: list[str] = field(default_factory=list)
    """Where the settings came from (for messages: never the values)."""


@dataclass
class _Raw:
    chap: str | None = None
    mutual: str | None = None
    allow: list[str] = field(default_factory=list)


_FILE_KEYS = {"chap": "chap", "mutual-chap": "mutual"}


def read_private(path: Path, label: str = "") -> str:
    """The UTF-8 text of a regular file not accessible by group or others (mode 0600 or
    stricter): an auth file, a secret file. ValueError says what is wrong, naming the file
    as ``label`` + path (never its content)."""
    try:
        mode = path.stat().st_mode
        if not stat.S_ISREG(mode):
            raise ValueError(f"{label}{path} is not a regular file")
        if mode & 0o077:
            raise ValueError(f"{label}{path} is accessible by group/others (mode "
                             f"{stat.S_IMODE(mode):04o}): chmod 600 {path}")
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read {label}{path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{label}{path} is not UTF-8") from None


def read_auth_file(path: str | os.PathLike[str]) -> _Raw:
    """Lines ``chap=USER:SECRET``, ``mutual-chap=USER:SECRET``, ``allow=IQN``; ``#`` comments.
    The file must not be accessible by group or others (mode 0600 or stricter)."""
    p = Path(path)
    text = read_private(p, "auth file ")
    raw = _Raw()
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or (key not in _FILE_KEYS and key != "allow"):
            raise ValueError(f"auth file {p} line {number}: expected chap=USER:SECRET, "
                             "mutual-chap=USER:SECRET or allow=IQN")
        if key == "allow":
            raw.allow.append(value.strip())
        else:
            setattr(raw, _FILE_KEYS[key], value.strip())
    return raw


def _secret(text: str, what: str) -> ChapSecret:
    try:
        secret = ChapSecret.parse(text)
    except ValueError:
        raise ValueError(f"bad {what}: expected USER:SECRET") from None
    if len(secret.secret) < MIN_SECRET:
        raise ValueError(f"bad {what}: the secret of user {secret.name!r} is shorter than "
                         f"{MIN_SECRET} characters")
    return secret


def load_access(*, chap: str | None = None, mutual: str | None = None,
                allow: tuple[str, ...] = (), auth_file: str | None = None,
                env: Mapping[str, str] | None = None) -> AccessConfig:
    """Merge the sources (flag over environment over file); ValueError with a safe message."""
    env = os.environ if env is None else env
    raw = read_auth_file(auth_file) if auth_file else _Raw()
    result = AccessConfig()
    if auth_file:
        result.sources.append(f"file {auth_file}")
    for value, env_key, attr in ((chap, ENV_CHAP, "chap"), (mutual, ENV_MUTUAL_CHAP, "mutual")):
        if value is not None:
            setattr(raw, attr, value)
        elif env.get(env_key):
            setattr(raw, attr, env[env_key])
            result.sources.append(f"${env_key}")
    names = [*raw.allow, *allow]
    for name in names:
        if not name.startswith(NAME_PREFIXES):
            raise ValueError(f"bad --allow {name!r}: must start with iqn., eui. or naa.")
    result.allowed = frozenset(names) if names else None
    if raw.mutual is not None and raw.chap is None:
        raise ValueError("mutual CHAP needs CHAP too (--chap / PYISCSI_CHAP / chap=)")
    if raw.chap is not None:
        one_way = _secret(raw.chap, "CHAP credentials")
        two_way = _secret(raw.mutual, "mutual CHAP credentials") if raw.mutual else None
        result.auth = AuthConfig(one_way, two_way)  # ValueError if both secrets are equal
    return result


def is_loopback(host: str) -> bool:
    """Is ``host`` a loopback address (or ``localhost``)?"""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def exposure_warning(hosts: list[str], access: AccessConfig) -> str | None:
    """The loud warning for serving a non-loopback portal without CHAP, or None."""
    exposed = [h for h in hosts if not is_loopback(h)]
    if access.auth is not None or not exposed:
        return None
    acl = (" The --allow list only checks the InitiatorName the initiator claims."
           if access.allowed else "")
    return (f"pyiscsi: WARNING: serving {', '.join(exposed)} WITHOUT CHAP: anyone who can "
            f"reach the portal can read and write the LUNs.{acl} Use --auth-file, "
            f"{ENV_CHAP} or --chap.")
