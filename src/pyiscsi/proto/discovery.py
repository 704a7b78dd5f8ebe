"""SendTargets text for discovery sessions, RFC 7143 §13.3, §13.8 and Appendix C.

The Text Request/Response exchange itself belongs to the caller; this module formats and
parses the ``TargetName=...`` / ``TargetAddress=host:port,tpgt`` lists and picks which targets
a ``SendTargets=`` value asks for.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from .keys import TextFormatError, encode_text, parse_text

ISCSI_PORT = 3260


class Portal(NamedTuple):
    """A TargetAddress value: ``host[:port],tpgt`` (RFC 7143 §13.8)."""

    host: str
    port: int = ISCSI_PORT
    tpgt: int = 1

    def __str__(self) -> str:
        return format_address(self.host, self.port, self.tpgt)


def _is_ipv6(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).version == 6
    except ValueError:
        return False


def format_address(host: str, port: int = ISCSI_PORT, tpgt: int = 1) -> str:
    """``host:port,tpgt`` with an IPv6 literal in brackets (RFC 7143 §13.8, RFC 3986)."""
    if _is_ipv6(host):
        host = f"[{host}]"
    return f"{host}:{port},{tpgt}"


def parse_address(value: str) -> Portal:
    """Parse a TargetAddress value; the port defaults to 3260, the tag to 1 when absent.

    Raises :class:`TextFormatError` on a malformed value.
    """
    where, _, tag = value.partition(",")
    try:
        tpgt = int(tag) if tag else 1
        if where.startswith("["):
            host, bracket, rest = where[1:].partition("]")
            if not bracket or (rest and not rest.startswith(":")):
                raise ValueError(value)
            port = int(rest[1:]) if rest else ISCSI_PORT
        elif where.count(":") == 1:
            host, _, port_text = where.partition(":")
            port = int(port_text)
        else:
            host, port = where, ISCSI_PORT  # a bare name, or an unbracketed IPv6 literal
    except ValueError as exc:
        raise TextFormatError(f"bad TargetAddress {value!r}") from exc
    if not host or not 0 < port < 65536 or not 0 <= tpgt < 65536:
        raise TextFormatError(f"bad TargetAddress {value!r}")
    return Portal(host, port, tpgt)


def format_send_targets(targets: Iterable[tuple[str, Sequence[str | Portal]]]) -> bytes:
    """Text Response data for SendTargets: each TargetName followed by its TargetAddresses."""
    pairs: list[tuple[str, str]] = []
    for name, addresses in targets:
        pairs.append(("TargetName", name))
        pairs += [("TargetAddress", str(address)) for address in addresses]
    return encode_text(pairs)


def parse_send_targets(data: bytes | bytearray | memoryview) -> list[tuple[str, list[str]]]:
    """Parse a SendTargets response into ``[(target name, [TargetAddress values])]``.

    A TargetAddress before any TargetName is a :class:`TextFormatError`; other keys
    (e.g. TargetAlias) are skipped.
    """
    targets: list[tuple[str, list[str]]] = []
    for key, value in parse_text(data, unique=False):
        if key == "TargetName":
            targets.append((value, []))
        elif key == "TargetAddress":
            if not targets:
                raise TextFormatError("TargetAddress before any TargetName")
            targets[-1][1].append(value)
    return targets


def select_send_targets(value: str, targets: Sequence[tuple[str, Sequence[str | Portal]]], *,
                        session_target: str | None = None
                        ) -> list[tuple[str, Sequence[str | Portal]]]:
    """Which targets a ``SendTargets=<value>`` asks for (RFC 7143 §13.3, Appendix C):
    ``All`` (discovery sessions only), one target name, or empty for the session's own target.
    """
    if value == "All":
        return list(targets) if session_target is None else []
    wanted = value or session_target
    return [t for t in targets if t[0] == wanted]
