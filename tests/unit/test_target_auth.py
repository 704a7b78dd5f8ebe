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


# ---------------------------------------------------------------- several targets


DB, WEB = "iqn.2026-11.org.example:db", "iqn.2026-11.org.example:web"
DB_AUTH = AuthConfig(ChapSecret("dbuser", b"dbsecretdbsecret"))
WEB_AUTH = AuthConfig(ChapSecret("webuser", b"websecretwebsecret"),
                      ChapSecret("webtarget", b"webtargetsecret1"))
DISCOVERY_AUTH = AuthConfig(ChapSecret("disc", b"discoverysecret1"))
ONE, TWO = ("127.0.0.1", 3260), ("127.0.0.2", 3260)


def two_targets() -> Catalog:
    """db on portal ONE with its CHAP, web on ONE and TWO with mutual CHAP."""
    catalog = Catalog([Target(DB, portals=(ONE,), auth=DB_AUTH),
                       Target(WEB, portals=(ONE, TWO), auth=WEB_AUTH)])
    catalog.listeners = {ONE: [ONE], TWO: [TWO]}
    catalog.portals = [ONE, TWO]
    return catalog


@pytest.mark.parametrize("target,credentials", [(DB, DB_AUTH), (WEB, WEB_AUTH)])
def test_each_target_asks_for_its_own_credentials(target: str, credentials: AuthConfig) -> None:
    catalog = two_targets()
    conn = TargetConnection(catalog, "t", local=ONE)
    assert login(conn, target, credentials=credentials).tsih
    assert conn.target is catalog.targets[target]
    other = WEB_AUTH if credentials is DB_AUTH else DB_AUTH
    refused = TargetConnection(catalog, "t", local=ONE)
    with pytest.raises(LoginFailed) as exc:
        login(refused, target, credentials=other)
    assert exc.value.status is LoginStatus.AUTHENTICATION_FAILURE
    conn.close()
    refused.close()


def test_a_target_without_chap_needs_none_beside_one_with_chap() -> None:
    catalog = two_targets()
    catalog.targets[WEB].auth = None
    conn = TargetConnection(catalog, "t", local=TWO)
    assert login(conn, WEB).tsih  # libiscsi's way: straight to the operational stage
    conn.close()
    conn = TargetConnection(catalog, "t", local=ONE)
    with pytest.raises(LoginFailed) as exc:
        login(conn, DB)
    assert exc.value.status is LoginStatus.AUTHENTICATION_FAILURE
    conn.close()


def test_login_through_a_portal_that_is_not_the_targets_is_0203() -> None:
    conn = TargetConnection(two_targets(), "t", local=TWO)
    with pytest.raises(LoginFailed) as exc:
        login(conn, DB, credentials=DB_AUTH)
    assert exc.value.status is LoginStatus.NOT_FOUND
    assert conn.close_after_send
    conn.close()


@pytest.mark.parametrize("local,names", [(ONE, [DB, WEB]), (TWO, [WEB])])
def test_send_targets_shows_the_portals_targets_each_with_its_portals(
        local: tuple[str, int], names: list[str]) -> None:
    conn = TargetConnection(two_targets(), "d", local=local)
    done = login(conn, None)  # discovery: no CHAP of its own, none process-wide
    portals = {DB: ["127.0.0.1:3260,1"], WEB: ["127.0.0.1:3260,1", "127.0.0.2:3260,1"]}
    assert send_targets(conn, done.expcmdsn) == [(n, portals[n]) for n in names]
    conn.close()


def test_discovery_has_its_own_chap() -> None:
    catalog = two_targets()
    catalog.discovery_auth = DISCOVERY_AUTH
    for wrong in (None, DB_AUTH):
        conn = TargetConnection(catalog, "d", local=ONE)
        with pytest.raises(LoginFailed) as exc:
            login(conn, None, credentials=wrong)
        assert exc.value.status is LoginStatus.AUTHENTICATION_FAILURE
        conn.close()
    conn = TargetConnection(catalog, "d", local=ONE)
    assert login(conn, None, credentials=DISCOVERY_AUTH).tsih
    conn.close()


def test_discovery_can_be_switched_off() -> None:
    catalog = two_targets()
    catalog.discovery_enabled = False
    conn = TargetConnection(catalog, "d", local=ONE)
    with pytest.raises(LoginFailed) as exc:
        login(conn, None)
    assert exc.value.status is LoginStatus.SESSION_TYPE_NOT_SUPPORTED
    conn.close()


def test_a_targets_login_defaults_are_what_it_offers() -> None:
    from pyiscsi.target.catalog import LoginDefaults

    catalog = two_targets()
    catalog.targets[WEB].login = LoginDefaults(max_burst_length=65536, first_burst_length=8192,
                                               immediate_data=True, initial_r2t=True)
    catalog.targets[WEB].alias = "web"
    conn = TargetConnection(catalog, "t", local=ONE)
    params = login(conn, WEB, credentials=WEB_AUTH).params
    assert params.max_burst_length == 65536 and params.first_burst_length == 8192
    assert params.immediate_data and params.initial_r2t
    assert params.target_alias == "web"
    other = TargetConnection(catalog, "t", local=ONE)
    params = login(other, DB, credentials=DB_AUTH).params
    assert params.max_burst_length == catalog.limits.max_burst_length
    conn.close()
    other.close()


def test_a_lower_max_burst_lowers_the_inherited_first_burst() -> None:
    from pyiscsi.target.catalog import LoginDefaults

    catalog = two_targets()
    catalog.targets[DB].login = LoginDefaults(max_burst_length=16384)
    conn = TargetConnection(catalog, "t", local=ONE)
    params = login(conn, DB, credentials=DB_AUTH).params
    assert params.max_burst_length == 16384 and params.first_burst_length == 16384
    conn.close()
