"""What one target server owns and hands to every connection it serves: its counters, its
connection-number allocator (the connection lookup table of claim 1 of '663) and its record
of issued CHAP challenges. Nothing of this lives at module level, so two servers in one
process keep separate figures."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from ..placement.counters import CopyCounters
from ..placement.table import ConnectionRegistry
from ..proto.chap import IssuedChallenges
from ..proto.framing import ReceiveErrors


@dataclass(slots=True)
class TransportStats:
    """Connection health as the transport sees it (internal errors are crashes)."""

    internal_errors: int = 0
    protocol_errors: int = 0
    connections: int = 0


@dataclass(slots=True)
class EngineCounters:
    """Protocol events the engines of one server count (rare ones: per burst at most)."""

    r2ts: int = 0
    """R2Ts sent (one per solicited burst)."""
    logins: int = 0
    """Connections that reached full feature phase (normal and discovery)."""
    login_failures: int = 0
    """Logins refused (authentication, authorization, unknown target, limits)."""
    sessions: int = 0
    """Sessions created (leading logins; reinstatements included)."""
    remote_aborts: int = 0
    """Commands aborted here by a reset or CLEAR TASK SET that came through another gateway
    of a shared LU."""
    rejects: Counter[tuple[int, int]] = field(default_factory=Counter)
    """Reject PDUs sent, by (opcode of the refused PDU, reason) (RFC 7143 §11.17.1)."""

    def rejected(self, header: bytes | bytearray | memoryview, reason: int) -> None:
        """A Reject went out for the PDU whose BHS is ``header``."""
        self.rejects[(header[0] & 0x3F if len(header) else -1, int(reason))] += 1


@dataclass(eq=False, slots=True)
class ServerState:
    """The figures and allocators of one server."""

    copies: CopyCounters = field(default_factory=CopyCounters)
    receive: ReceiveErrors = field(default_factory=ReceiveErrors)
    transport: TransportStats = field(default_factory=TransportStats)
    connections: ConnectionRegistry = field(default_factory=ConnectionRegistry)
    challenges: IssuedChallenges = field(default_factory=IssuedChallenges)
    events: EngineCounters = field(default_factory=EngineCounters)

    def snapshot(self) -> dict[str, int]:
        """Every counter by name (``--stats``, metrics)."""
        receive = self.receive
        return {**self.copies.snapshot(),
                "internal_errors": self.transport.internal_errors,
                "protocol_errors": self.transport.protocol_errors,
                "connections": self.transport.connections,
                "header_digest_errors": receive.header,
                "data_digest_errors": receive.data,
                "untrusted_headers": receive.untrusted_headers,
                "partial_pdus": receive.partial_pdus,
                "r2ts": self.events.r2ts,
                "logins": self.events.logins,
                "login_failures": self.events.login_failures,
                "remote_aborts": self.events.remote_aborts,
                "rejects": sum(self.events.rejects.values())}
