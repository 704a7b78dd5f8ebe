"""What a target process serves: targets, their LUNs and ACLs, portals, live sessions."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .state import ServerState

if TYPE_CHECKING:
    from ..proto.chap import AuthConfig
    from ..scsi.lun import LogicalUnit
    from .session import Session


@dataclass(eq=False)
class Target:
    """A named iSCSI target (RFC 7143 §4.2.7) with its logical units."""

    name: str
    luns: dict[int, LogicalUnit] = field(default_factory=dict)
    alias: str = ""
    allowed_initiators: frozenset[str] | None = None
    """InitiatorNames allowed to log in; None = everyone."""

    def allows(self, initiator_name: str) -> bool:
        return self.allowed_initiators is None or initiator_name in self.allowed_initiators


@dataclass
class Limits:
    """Per-process limits a user can change."""

    max_sessions: int = 64
    max_connections: int = 256
    """TCP connections open at once (logged in or not); more are closed on accept."""
    queue_depth: int = 128
    max_recv_data_segment_length: int = 262144
    max_burst_length: int = 1048576
    first_burst_length: int = 262144
    max_outstanding_r2t: int = 8
    login_timeout: float = 15.0
    nop_interval: float = 5.0
    """Seconds of silence before the target pings the initiator with a NOP-In (0 = never)."""
    nop_timeout: float = 30.0
    """Seconds of silence after which the peer is declared dead and its connection closed."""
    partial_pdu_timeout: float = 10.0
    """Seconds a connection may sit on part of a PDU with no further byte before it is
    closed (0 = never)."""
    immediate_commands: int = 16
    """SCSI commands with the I bit a session may have running at once; more are refused
    with Reject 0x06 (RFC 7143 §11.17.1)."""
    table_entries: int = 4096
    """Data pointer table entries per connection (at most 4096: 12 index bits, Fig 9B)."""
    held_data_limit: int = 16 << 20
    """Bytes of unsolicited data a connection stages for commands held behind a CmdSN gap;
    a command that would pass it ends in TASK SET FULL (SAM-5 §5.3.1)."""


class Catalog:
    """Targets by name, the portals they are reached through, and live sessions by TSIH."""

    def __init__(self, targets: list[Target], *, portal_group_tag: int = 1,
                 limits: Limits | None = None, auth: AuthConfig | None = None) -> None:
        self.targets = {t.name: t for t in targets}
        self.auth = auth
        """CHAP credentials every login (normal and discovery) must prove; None = no CHAP."""
        self.portal_group_tag = portal_group_tag
        self.portals: list[tuple[str, int]] = []
        self.limits = limits or Limits()
        self.sessions: dict[int, Session] = {}
        self._tsih = itertools.count(1)
        self.state = ServerState()
        """The counters and allocators of the server serving this catalog."""

    def target(self, name: str) -> Target | None:
        return self.targets.get(name)

    def new_tsih(self) -> int:
        """A TSIH not in use (never 0, RFC 7143 §11.12.6)."""
        while True:
            tsih = next(self._tsih) & 0xFFFF
            if tsih and tsih not in self.sessions:
                return tsih

    def sessions_of(self, target: Target) -> list[Session]:
        """The live sessions logged in to ``target``."""
        return [s for s in self.sessions.values() if s.target is target]

    def find_session(self, initiator_name: str, isid: int,
                     target: Target | None) -> Session | None:
        """The session of this I_T nexus (RFC 7143 §4.4.3: InitiatorName + ISID towards
        one target; the same ISID towards another target is another session)."""
        for s in self.sessions.values():
            if s.initiator_name == initiator_name and s.isid == isid and s.target is target:
                return s
        return None

    def portal_addresses(self) -> list[str]:
        """``host:port,tpgt`` strings for SendTargets (IPv6 hosts in brackets)."""
        out = []
        for host, port in self.portals:
            h = f"[{host}]" if ":" in host else host
            out.append(f"{h}:{port},{self.portal_group_tag}")
        return out
