"""Who gets in: CHAP on the target engine (normal and discovery sessions) and initiator ACLs,
including what SendTargets shows (RFC 7143 §12.1.3, §13.3)."""

from __future__ import annotations

import pytest

from pyiscsi.proto import pdu as P
from pyiscsi.proto.chap import AuthConfig, ChapSecret
from pyiscsi.proto.discovery import parse_send_targets
from pyiscsi.proto.errors import LoginFailed
from pyiscsi.proto.login import InitiatorLogin, LoginDone
from pyiscsi.proto.wire import LoginStatus
from pyiscsi.target.catalog import Catalog, Target
from pyiscsi.target.connection import Phase, TargetConnection

from ..pair import INITIATOR, TARGET, drain, feed, make_catalog, wire

AUTH = AuthConfig(ChapSecret("user", b"secretsecret12"), ChapSecret("tgt", b"targetsecret34"))
OTHER = "iqn.2026-11.org.example:other"


def login(conn: TargetConnection, target: str | None = TARGET, *, name: str = INITIATOR,
          credentials: object | None = None) -> LoginDone:
    machine = InitiatorLogin(name, target, isid=0x400001230000, credentials=credentials)
    out: tuple[P.LoginRequest, bytes] | LoginDone = machine.start()
    while not isinstance(out, LoginDone):
        feed(conn, wire(out[0], out[1] or None))
        (reply,) = drain(conn)
        assert isinstance(reply.pdu, P.LoginResponse)
        out = machine.receive(reply.pdu, reply.data)
    return out


def send_targets(conn: TargetConnection, cmdsn: int) -> list[tuple[str, list[str]]]:
    body = b"SendTargets=All\0"
    feed(conn, wire(P.TextRequest(itt=7, cmdsn=cmdsn, data_length=len(body)), body))
    (reply,) = drain(conn)
    return parse_send_targets(reply.data)


def chap_catalog(allowed: frozenset[str] | None = None) -> Catalog:
    catalog = make_catalog()
    catalog.auth = AUTH
    catalog.targets[TARGET].allowed_initiators = allowed
    catalog.portals = [("127.0.0.1", 3260)]
    return catalog


@pytest.mark.parametrize("credentials", [AUTH, ("user", "secretsecret12")])
def test_chap_login_to_a_target(credentials: object) -> None:
    conn = TargetConnection(chap_catalog(), "t")
    assert login(conn, credentials=credentials).tsih
    assert conn.phase is Phase.FULL_FEATURE
    conn.close()


@pytest.mark.parametrize("target", [TARGET, None])
@pytest.mark.parametrize("credentials", [None, ("user", "wrongwrongwrong")])
def test_chap_guards_normal_and_discovery_sessions(target: str | None,
                                                   credentials: object | None) -> None:
    conn = TargetConnection(chap_catalog(), "t")
    with pytest.raises(LoginFailed) as exc:
        login(conn, target, credentials=credentials)
    assert exc.value.status is LoginStatus.AUTHENTICATION_FAILURE
    assert conn.close_after_send and conn.phase is Phase.LOGIN
    conn.close()


def test_each_connection_gets_its_own_authenticator() -> None:
    catalog = chap_catalog()
    a, b = TargetConnection(catalog, "a"), TargetConnection(catalog, "b")
    assert a._login.config.authenticator is not b._login.config.authenticator
    a.close()
    b.close()


def test_acl_refuses_other_initiators_with_0202() -> None:
    conn = TargetConnection(chap_catalog(frozenset({OTHER})), "t")
    with pytest.raises(LoginFailed) as exc:
        login(conn, credentials=AUTH)
    assert exc.value.status is LoginStatus.AUTHORIZATION_FAILURE
    conn.close()


@pytest.mark.parametrize("allowed,visible", [
    (None, True), (frozenset({INITIATOR}), True), (frozenset({OTHER}), False)])
def test_send_targets_hides_targets_the_initiator_may_not_use(
        allowed: frozenset[str] | None, visible: bool) -> None:
    catalog = chap_catalog(allowed)
    catalog.targets["iqn.2026-11.org.pyiscsi:open"] = Target("iqn.2026-11.org.pyiscsi:open")
    conn = TargetConnection(catalog, "d")
    done = login(conn, None, credentials=AUTH)
    names = [name for name, _ in send_targets(conn, done.expcmdsn)]
    assert "iqn.2026-11.org.pyiscsi:open" in names
    assert (TARGET in names) is visible
    conn.close()
