"""What a target process serves: targets, their LUNs, ACLs, CHAP and portals, live sessions.

The mutation methods (:meth:`Catalog.add_lun`, :meth:`Catalog.remove_lun`,
:meth:`Catalog.add_target`, :meth:`Catalog.remove_target`, :meth:`Catalog.set_acl`,
:meth:`Catalog.set_chap`, :meth:`Catalog.set_portals`) change what is served while sessions
are logged in: a session loses only what was taken from under it. They are sans-IO: what they
leave to the caller (closing a removed LU's store once no store work uses it) is returned.
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..scsi.port import TargetPort
from ..scsi.sense import Asc
from .state import ServerState

if TYPE_CHECKING:
    from ..proto.chap import AuthConfig
    from ..scsi.lun import LogicalUnit
    from .session import Session
    from .task import Task

Portal = tuple[str, int]
"""(host, port) of a network portal."""


@dataclass(frozen=True, slots=True)
class LoginDefaults:
    """What a target offers at login where it differs from the process's :class:`Limits`
    (RFC 7143 §13); None keeps the process-wide value."""

    max_recv_data_segment_length: int | None = None
    max_burst_length: int | None = None
    first_burst_length: int | None = None
    max_outstanding_r2t: int | None = None
    immediate_data: bool | None = None
    initial_r2t: bool | None = None


@dataclass(eq=False)
class Target:
    """A named iSCSI target (RFC 7143 §4.2.7) with its logical units."""

    name: str
    luns: dict[int, LogicalUnit] = field(default_factory=dict)
    alias: str = ""
    allowed_initiators: frozenset[str] | None = None
    """InitiatorNames allowed to log in; None = everyone."""
    portals: tuple[Portal, ...] | None = None
    """The portals (as configured, see :attr:`Catalog.listeners`) the target is reached
    through; None = every portal of the process."""
    auth: AuthConfig | None = None
    """The target's own CHAP credentials; None = the catalog's :attr:`Catalog.auth`."""
    login: LoginDefaults = field(default_factory=LoginDefaults)

    def allows(self, initiator_name: str) -> bool:
        return self.allowed_initiators is None or initiator_name in self.allowed_initiators

    def add_lun(self, lu: LogicalUnit) -> None:
        """Serve ``lu`` as LUN ``lu.number``: REPORT LUNS and EXTENDED COPY see the target's
        LUNs through it. (:meth:`Catalog.add_lun` also tells the logged-in sessions.)"""
        if lu.number in self.luns:
            raise ValueError(f"{self.name} already has LUN {lu.number}")
        lu.peers = lambda: sorted(self.luns)
        lu.siblings = lambda: self.luns
        self.luns[lu.number] = lu


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


@dataclass(frozen=True, slots=True)
class RemovedLun:
    """A LUN taken out of a target: its store is closed by the caller once no store work
    uses it (``fence``: the aborted tasks whose store work was still in flight)."""

    lu: LogicalUnit
    fence: list[Task]


class Catalog:
    """Targets by name, the portals they are reached through, and live sessions by TSIH."""

    def __init__(self, targets: list[Target], *, portal_group_tag: int = 1,
                 limits: Limits | None = None, auth: AuthConfig | None = None) -> None:
        self.targets = {t.name: t for t in targets}
        self.auth = auth
        """CHAP credentials every login must prove unless its target (:attr:`Target.auth`)
        or discovery (:attr:`discovery_auth`) has its own; None = no CHAP."""
        self.discovery_auth: AuthConfig | None = None
        """CHAP of discovery sessions; None = :attr:`auth`."""
        self.discovery_enabled = True
        """Whether discovery sessions (SendTargets) may log in."""
        self.port = TargetPort(portal_group_tag, portal_group_tag)
        """This process's target port (TPGT, relative port id): :meth:`set_port`."""
        for target in targets:
            for lu in target.luns.values():
                lu.port = self.port
        self.portals: list[Portal] = []
        """Every listening address: (host as configured, bound port)."""
        self.listeners: dict[Portal, list[Portal]] = {}
        """Configured portal -> the local addresses of its listening sockets (a port 0
        resolved, a host name resolved): what a connection's local address is matched
        against."""
        self.limits = limits or Limits()
        self.sessions: dict[int, Session] = {}
        self._tsih = itertools.count(1)
        self.state = ServerState()
        """The counters and allocators of the server serving this catalog."""

    @property
    def portal_group_tag(self) -> int:
        """The TargetPortalGroupTag of every portal (RFC 7143 §13.9): :attr:`port`'s group."""
        return self.port.group

    @portal_group_tag.setter
    def portal_group_tag(self, tag: int) -> None:
        self.set_port(TargetPort(tag, self.port.relative_id))

    def set_port(self, port: TargetPort) -> None:
        """Become target port ``port`` (before serving: logins and SendTargets report its
        TPGT, VPD page 83h its relative port id and group, :mod:`pyiscsi.scsi.port`)."""
        self.port = port
        for target in self.targets.values():
            for lu in target.luns.values():
                lu.port = port

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

    # ------------------------------------------------------------------ who sees what

    def auth_for(self, target: Target | None) -> AuthConfig | None:
        """The CHAP credentials a login to ``target`` (None: discovery) must prove."""
        own = target.auth if target is not None else self.discovery_auth
        return own if own is not None else self.auth

    def reachable(self, target: Target, local: Portal | None) -> bool:
        """Is ``target`` served on the portal a connection came in through (its local
        address; None: unknown, as in tests without sockets)?"""
        if local is None or target.portals is None:
            return True
        return any(_same_portal(bound, local)
                   for portal in target.portals
                   for bound in self.listeners.get(portal) or [portal])

    def visible(self, initiator: str, local: Portal | None) -> list[Target]:
        """The targets a discovery session through ``local`` shows ``initiator``: those it
        may log in to, served on that portal."""
        return [t for t in self.targets.values()
                if t.allows(initiator) and self.reachable(t, local)]

    def target_portals(self, target: Target | None = None) -> list[Portal]:
        """(host as configured, bound port) of every portal of the process, or of
        ``target``."""
        if target is None or target.portals is None:
            return list(self.portals)
        return [(portal[0], bound[1]) for portal in target.portals
                for bound in self.listeners.get(portal) or [portal]]

    def portal_addresses(self, target: Target | None = None,
                         local: Portal | None = None) -> list[str]:
        """``host:port,tpgt`` strings for SendTargets (IPv6 hosts in brackets): every portal
        of the process, or the portals of ``target``. A wildcard host (0.0.0.0, ::) is
        shown as the address the asking connection reached (``local``)."""
        out: list[str] = []
        for host, port in self.target_portals(target):
            if local is not None and port == local[1] and is_wildcard(host):
                host = local[0]
            h = f"[{host}]" if ":" in host else host
            text = f"{h}:{port},{self.portal_group_tag}"
            if text not in out:
                out.append(text)
        return out

    # ------------------------------------------------------------------ changes

    def add_target(self, target: Target) -> None:
        """Serve a new target (its LUNs already added with :meth:`Target.add_lun`)."""
        if target.name in self.targets:
            raise ValueError(f"target {target.name} exists")
        self.targets[target.name] = target
        for lu in target.luns.values():
            lu.port = self.port

    def remove_target(self, name: str) -> list[RemovedLun]:
        """Stop serving a target: its sessions end (RFC 7143 §6.3.5's way: their
        connections close); its LUNs are returned for their stores to be closed."""
        target = self.targets.pop(name)
        removed: list[RemovedLun] = []
        for lun in sorted(target.luns):
            fence: list[Task] = []
            for session in self.sessions_of(target):
                session.abort_tasks({lun}, fence)
            removed.append(RemovedLun(target.luns[lun], fence))
        for session in self.sessions_of(target):
            session.end()
        return removed

    def add_lun(self, name: str, lu: LogicalUnit) -> None:
        """Serve ``lu`` in target ``name``. Its logged-in sessions know it at once, and get
        REPORTED LUNS DATA HAS CHANGED on their other LUs (SPC-4 §5.14, 3Fh/0Eh)."""
        target = self.targets[name]
        others = list(target.luns.values())
        target.add_lun(lu)
        lu.port = self.port
        for session in self.sessions_of(target):
            lu.attentions.join(session.nexus)
        _luns_changed(others)

    def remove_lun(self, name: str, lun: int) -> RemovedLun:
        """Stop serving LUN ``lun`` of target ``name``: commands to it now end in LOGICAL
        UNIT NOT SUPPORTED, its tasks in flight are aborted (no status, SAM-5 §5.6), the
        sessions get REPORTED LUNS DATA HAS CHANGED on their other LUs."""
        target = self.targets[name]
        lu = target.luns.pop(lun)
        fence: list[Task] = []
        for session in self.sessions_of(target):
            session.abort_tasks({lun}, fence)
            lu.nexus_lost(session.nexus)
            lu.attentions.leave(session.nexus)
        _luns_changed(target.luns.values())
        return RemovedLun(lu, fence)

    def set_acl(self, name: str, allowed: frozenset[str] | None) -> None:
        """Who may log in to target ``name`` (None: everyone); sessions of initiators no
        longer allowed end."""
        target = self.targets[name]
        target.allowed_initiators = allowed
        for session in self.sessions_of(target):
            if not target.allows(session.initiator_name):
                session.end()

    def set_chap(self, name: str, auth: AuthConfig | None) -> None:
        """Target ``name``'s CHAP credentials, for the logins to come (a logged-in session
        proved the old ones and stays)."""
        self.targets[name].auth = auth

    def set_portals(self, name: str, portals: tuple[Portal, ...] | None) -> None:
        """The portals target ``name`` is served on; sessions that came in through a portal
        it lost end."""
        target = self.targets[name]
        target.portals = portals
        for session in self.sessions_of(target):
            if any(not self.reachable(target, conn.local) for conn in session.connections):
                session.end()

    def set_login_defaults(self, name: str, login: LoginDefaults, alias: str = "") -> None:
        """What target ``name`` offers at login (and its alias), for the logins to come."""
        target = self.targets[name]
        target.login = login
        target.alias = alias

    def drop_listener(self, portal: Portal) -> None:
        """The process no longer listens on ``portal``: discovery sessions that came in
        through it end (targets lost it first, with :meth:`set_portals`)."""
        bound = self.listeners.pop(portal, [])
        self.portals = [p for p in self.portals
                        if not any(p[1] == b[1] and p[0] == portal[0] for b in bound)]
        for session in list(self.sessions.values()):
            if session.target is None and any(
                    conn.local is not None and any(_same_portal(b, conn.local) for b in bound)
                    for conn in session.connections):
                session.end()


def _luns_changed(lus: Iterable[LogicalUnit]) -> None:
    """REPORTED LUNS DATA HAS CHANGED for every I_T nexus that knows these LUs."""
    change = Asc.REPORTED_LUNS_DATA_HAS_CHANGED
    for lu in lus:
        lu.attentions.establish(change.asc, change.ascq)


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def is_wildcard(host: str) -> bool:
    ip = _address(host)
    return ip is not None and ip.is_unspecified


def _same_portal(bound: Portal, local: Portal) -> bool:
    """Does a connection whose local address is ``local`` come in through the listening
    address ``bound`` (a wildcard host listens on every address of the port)?"""
    if bound[1] != local[1]:
        return False
    if bound[0] == local[0] or is_wildcard(bound[0]):
        return True
    a, b = _address(bound[0]), _address(local[0])
    return a is not None and a == b
