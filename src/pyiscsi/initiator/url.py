"""iSCSI URLs in libiscsi's form: ``iscsi://[user[%password]@]host[:port]/target-iqn/lun``.

IPv6 hosts go in brackets (RFC 3986). ``user``/``password`` are kept for the login's
credentials slot (CHAP, RFC 7143 §12.1). As in libiscsi, the first ``%`` separates them and
nothing is percent-decoded there (the password may contain ``%`` and ``@``); the target
name is percent-decoded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote

from ..proto.discovery import ISCSI_PORT


@dataclass(frozen=True, slots=True)
class IscsiUrl:
    """A parsed iSCSI URL. ``lun`` is None when the URL names only the target."""

    host: str
    port: int = ISCSI_PORT
    target: str = ""
    lun: int | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def portal(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def __str__(self) -> str:
        cred = ""
        if self.user is not None:
            cred = self.user + ("%***" if self.password is not None else "") + "@"
        tail = f"/{self.target}" if self.target else ""
        if self.lun is not None:
            tail += f"/{self.lun}"
        return f"iscsi://{cred}{self.portal}{tail}"


def split_host_port(text: str, default_port: int = ISCSI_PORT) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port`` -> (host, port)."""
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"bad address {text!r}")
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    elif ":" in text:
        host, port_text = text, ""  # bare IPv6 literal
    else:
        host, port_text = text, ""
    if not host:
        raise ValueError(f"bad address {text!r}: no host")
    if port_text == "":
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"bad address {text!r}: port must be 1..65535")
    return host, int(port_text)


def parse_url(text: str, *, require_lun: bool = True) -> IscsiUrl:
    """Parse ``iscsi://[user[%password]@]host[:port]/iqn/lun``; ValueError when malformed."""
    scheme = "iscsi://"
    if not text.lower().startswith(scheme):
        raise ValueError(f"bad iSCSI URL {text!r}: must start with iscsi://")
    rest = text[len(scheme):]
    authority, slash, path = rest.partition("/")
    user = password = None
    if "@" in authority:
        cred, _, authority = authority.rpartition("@")
        name, pct, secret = cred.partition("%")
        user = name
        password = secret if pct else None
    host, port = split_host_port(authority)
    target, _, lun_text = path.partition("/")
    target = unquote(target)
    if not slash or not target:
        raise ValueError(f"bad iSCSI URL {text!r}: no target name (iscsi://host/iqn/lun)")
    lun_text = lun_text.rstrip("/")
    lun: int | None = None
    if lun_text:
        if not lun_text.isdigit() or int(lun_text) > 0x3FFF:
            raise ValueError(f"bad iSCSI URL {text!r}: LUN must be 0..16383")
        lun = int(lun_text)
    elif require_lun:
        raise ValueError(f"bad iSCSI URL {text!r}: no LUN (iscsi://host/iqn/lun)")
    return IscsiUrl(host, port, target, lun, user, password)
