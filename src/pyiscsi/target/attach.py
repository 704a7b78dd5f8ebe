"""Login's last step on the target: the negotiation limits offered, and attaching the new
connection to a session, new, joined or reinstated (RFC 7143 §6.3.5, §4.4.3)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, TypeVar

from ..proto.chap import TargetChap
from ..proto.login import TargetLoginConfig
from ..proto.wire import LoginStatus
from ..scsi.task import Nexus
from .session import Session

T = TypeVar("T")

if TYPE_CHECKING:
    from ..proto import pdu as P
    from ..proto.chap import AuthConfig
    from ..proto.keys import SessionParams
    from .catalog import Catalog, Portal, Target
    from .connection import TargetConnection


def login_config(catalog: Catalog, local: Portal | None = None) -> TargetLoginConfig:
    """What a login to this process through portal ``local`` may negotiate: its targets
    (those served on that portal: another target is NOT FOUND there), ACLs, and, once the
    first text names the target (or a discovery session), that target's CHAP and limits."""
    limits = catalog.limits

    def chap(auth: AuthConfig | None) -> TargetChap | None:
        return TargetChap(auth, issued=catalog.state.challenges) if auth is not None else None

    base = TargetLoginConfig(
        lookup_target=lambda name: ((t := catalog.target(name)) is not None
                                    and catalog.reachable(t, local)),
        authorize=lambda ini, tgt: (t := catalog.target(tgt)) is not None and t.allows(ini),
        portal_group_tag=catalog.portal_group_tag,
        max_recv_data_segment_length=limits.max_recv_data_segment_length,
        max_burst_length=limits.max_burst_length,
        first_burst_length=limits.first_burst_length,
        max_outstanding_r2t=limits.max_outstanding_r2t,
        authenticator=chap(catalog.auth),
        allow_discovery=catalog.discovery_enabled,
    )

    def resolve(session_type: str, name: str | None) -> TargetLoginConfig | None:
        if session_type == "Discovery" or name is None:
            return replace(base, authenticator=chap(catalog.auth_for(None)), resolve=None)
        target = catalog.target(name)
        if target is None:
            return None
        own = target.login
        burst = _pick(own.max_burst_length, base.max_burst_length)
        first = _pick(own.first_burst_length, min(base.first_burst_length, burst))
        return replace(
            base, resolve=None, authenticator=chap(catalog.auth_for(target)),
            target_alias=target.alias or None,
            max_recv_data_segment_length=_pick(own.max_recv_data_segment_length,
                                               base.max_recv_data_segment_length),
            max_burst_length=burst, first_burst_length=first,
            max_outstanding_r2t=_pick(own.max_outstanding_r2t, base.max_outstanding_r2t),
            immediate_data=_pick(own.immediate_data, base.immediate_data),
            initial_r2t=_pick(own.initial_r2t, base.initial_r2t))

    return replace(base, resolve=resolve)


def _pick(own: T | None, default: T) -> T:
    return default if own is None else own


@dataclass(frozen=True, slots=True)
class Attached:
    """The session a connection joined, its target (None: discovery) and its I_T nexus."""

    session: Session
    target: Target | None
    nexus: Nexus


def attach(catalog: Catalog, conn: TargetConnection, req: P.LoginRequest,
           params: SessionParams) -> Attached | LoginStatus:
    """Create the session (TSIH 0), join one (its TSIH), or reinstate the session of the
    same I_T nexus (the old one ends first); a status when the login must fail."""
    initiator = params.initiator_name or ""
    target = None
    if params.session_type != "Discovery":
        target = catalog.target(params.target_name or "")
        if target is None:
            return LoginStatus.NOT_FOUND
    if req.tsih:
        session = catalog.sessions.get(req.tsih)
        if session is None:
            return LoginStatus.SESSION_DOES_NOT_EXIST
        if len(session.connections) >= params.max_connections:
            return LoginStatus.TOO_MANY_CONNECTIONS
    else:
        old = catalog.find_session(initiator, req.isid, target)
        if old is not None:
            old.end()
        if len(catalog.sessions) >= catalog.limits.max_sessions:
            return LoginStatus.OUT_OF_RESOURCES
        session = Session(tsih=catalog.new_tsih(), isid=req.isid, initiator_name=initiator,
                          target=target, params=params, depth=catalog.limits.queue_depth,
                          target_portal_group=catalog.portal_group_tag)
        session.start(req.cmdsn)
        catalog.sessions[session.tsih] = session
        catalog.state.events.sessions += 1
    session.connections.append(conn)
    nexus = Nexus(initiator, req.isid, catalog.portal_group_tag)
    for lu in target.luns.values() if target is not None else ():
        lu.attentions.join(nexus)
    return Attached(session, target, nexus)
