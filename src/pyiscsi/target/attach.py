"""Login's last step on the target: the negotiation limits offered, and attaching the new
connection to a session, new, joined or reinstated (RFC 7143 §6.3.5, §4.4.3)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..proto.chap import TargetChap
from ..proto.login import TargetLoginConfig
from ..proto.wire import LoginStatus
from ..scsi.task import Nexus
from .session import Session

if TYPE_CHECKING:
    from ..proto import pdu as P
    from ..proto.keys import SessionParams
    from .catalog import Catalog, Target
    from .connection import TargetConnection


def login_config(catalog: Catalog) -> TargetLoginConfig:
    """What a login to this process may negotiate: its targets, ACLs, CHAP and limits."""
    limits = catalog.limits
    return TargetLoginConfig(
        lookup_target=lambda name: catalog.target(name) is not None,
        authorize=lambda ini, tgt: (t := catalog.target(tgt)) is not None and t.allows(ini),
        portal_group_tag=catalog.portal_group_tag,
        max_recv_data_segment_length=limits.max_recv_data_segment_length,
        max_burst_length=limits.max_burst_length,
        first_burst_length=limits.first_burst_length,
        max_outstanding_r2t=limits.max_outstanding_r2t,
        authenticator=(TargetChap(catalog.auth, issued=catalog.state.challenges)
                       if catalog.auth is not None else None),
    )


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
