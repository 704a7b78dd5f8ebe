"""The catalog: targets and their ACLs, TSIH allocation, sessions, SendTargets portals."""

from __future__ import annotations

from pyiscsi.proto.keys import SessionParams
from pyiscsi.target.catalog import Catalog, Limits, Target
from pyiscsi.target.session import Session

A = "iqn.2026-11.org.pyiscsi:a"
B = "iqn.2026-11.org.pyiscsi:b"


def session(tsih: int, name: str = A, isid: int = 0x400001230000) -> Session:
    return Session(tsih=tsih, isid=isid, initiator_name=name, target=None,
                   params=SessionParams())


def test_target_without_acl_allows_everyone() -> None:
    t = Target("iqn.t")
    assert t.allowed_initiators is None
    assert t.allows(A) and t.allows(B) and t.allows("")


def test_target_with_acl_allows_only_listed_names() -> None:
    t = Target("iqn.t", allowed_initiators=frozenset({A}))
    assert t.allows(A) is True
    assert t.allows(B) is False
    assert t.allows(A.upper()) is False  # exact match on the normalized name
    assert t.allows(A + "x") is False


def test_empty_acl_allows_nobody() -> None:
    t = Target("iqn.t", allowed_initiators=frozenset())
    assert t.allows(A) is False


def test_targets_by_name() -> None:
    t1, t2 = Target("iqn.one"), Target("iqn.two")
    c = Catalog([t1, t2])
    assert c.target("iqn.one") is t1
    assert c.target("iqn.two") is t2
    assert c.target("iqn.three") is None
    assert c.sessions == {}
    assert c.limits == Limits()


def test_new_tsih_counts_from_one_and_skips_live_sessions() -> None:
    c = Catalog([])
    assert c.new_tsih() == 1
    c.sessions[2] = session(2)
    c.sessions[3] = session(3)
    assert c.new_tsih() == 4
    assert c.new_tsih() == 5


def test_new_tsih_is_never_zero_across_the_16_bit_wrap() -> None:
    c = Catalog([])
    c.sessions[1] = session(1)
    seen = [c.new_tsih() for _ in range(0xFFFF - 1)]  # 2 .. 0xFFFF
    assert seen[0] == 2 and seen[-1] == 0xFFFF
    assert 0 not in seen
    # after 0xFFFF the counter wraps to 0 (skipped) and 1 (live): next is 2
    assert c.new_tsih() == 2
    assert all(0 < t <= 0xFFFF for t in seen)


def test_find_session_by_initiator_name_and_isid() -> None:
    c = Catalog([])
    s1 = session(1, A, 0x400001230000)
    s2 = session(2, A, 0x400001230001)
    s3 = session(3, B, 0x400001230000)
    c.sessions.update({1: s1, 2: s2, 3: s3})
    assert c.find_session(A, 0x400001230000, None) is s1
    assert c.find_session(A, 0x400001230001, None) is s2
    assert c.find_session(B, 0x400001230000, None) is s3
    assert c.find_session(B, 0x400001230001, None) is None
    assert c.find_session("iqn.other", 0x400001230000, None) is None
    # the same initiator and ISID towards another target is another session (§4.4.3)
    assert c.find_session(A, 0x400001230000, Target("iqn.elsewhere")) is None


def test_portal_addresses_with_tpgt_and_ipv6_brackets() -> None:
    c = Catalog([], portal_group_tag=3)
    c.portals = [("192.0.2.7", 3260), ("::1", 3261), ("fe80::1%eth0", 860),
                 ("target.example", 13260)]
    assert c.portal_addresses() == [
        "192.0.2.7:3260,3",
        "[::1]:3261,3",
        "[fe80::1%eth0]:860,3",
        "target.example:13260,3",
    ]


def test_portal_addresses_default_tpgt_and_empty() -> None:
    c = Catalog([])
    assert c.portal_addresses() == []
    c.portals = [("0.0.0.0", 3260)]
    assert c.portal_addresses() == ["0.0.0.0:3260,1"]


# ---------------------------------------------------------------- portals per target


def test_reachable_matches_listener_addresses_and_wildcards() -> None:
    c = Catalog([])
    c.listeners = {("localhost", 0): [("127.0.0.1", 40001)], ("0.0.0.0", 3260): [("0.0.0.0", 3260)],
                   ("::", 3261): [("::", 3261, )]}
    t = Target(A, portals=(("localhost", 0),))
    assert c.reachable(t, ("127.0.0.1", 40001))
    assert not c.reachable(t, ("127.0.0.1", 40002))
    assert not c.reachable(t, ("127.0.0.2", 40001))
    assert c.reachable(t, None)  # unknown local address (no socket): not refused
    anywhere = Target(B, portals=(("0.0.0.0", 3260), ("::", 3261)))
    assert c.reachable(anywhere, ("192.0.2.1", 3260))
    assert c.reachable(anywhere, ("::ffff:192.0.2.1", 3260))
    assert c.reachable(anywhere, ("2001:db8::1", 3261))
    assert not c.reachable(anywhere, ("192.0.2.1", 3262))
    assert c.reachable(Target("iqn.all"), ("198.51.100.1", 1))  # portals None: every one


def test_visible_targets_are_allowed_and_served_on_the_portal() -> None:
    c = Catalog([Target(A, portals=(("127.0.0.1", 3260),)),
                 Target(B, portals=(("127.0.0.2", 3260),)),
                 Target("iqn.closed", portals=(("127.0.0.1", 3260),),
                        allowed_initiators=frozenset({"iqn.someone"}))])
    assert [t.name for t in c.visible("iqn.me", ("127.0.0.1", 3260))] == [A]
    assert [t.name for t in c.visible("iqn.me", ("127.0.0.2", 3260))] == [B]
    assert [t.name for t in c.visible("iqn.someone", ("127.0.0.1", 3260))] == [A, "iqn.closed"]


def test_portal_addresses_of_a_target_show_bound_ports_and_the_reached_wildcard() -> None:
    c = Catalog([])
    c.portals = [("127.0.0.1", 40001), ("0.0.0.0", 3260)]
    c.listeners = {("127.0.0.1", 0): [("127.0.0.1", 40001)],
                   ("0.0.0.0", 3260): [("0.0.0.0", 3260)]}
    t = Target(A, portals=(("127.0.0.1", 0),))
    assert c.portal_addresses(t) == ["127.0.0.1:40001,1"]
    both = Target(B, portals=(("127.0.0.1", 0), ("0.0.0.0", 3260)))
    assert c.portal_addresses(both, ("192.0.2.9", 3260)) == [
        "127.0.0.1:40001,1", "192.0.2.9:3260,1"]
    assert c.target_portals(Target("iqn.all")) == c.portals


def test_auth_for_falls_back_to_the_process_wide_credentials() -> None:
    from pyiscsi.proto.chap import AuthConfig, ChapSecret

    own, process, disc = (AuthConfig(ChapSecret(u, b"secretsecret12")) for u in "abc")
    t = Target(A, auth=own)
    c = Catalog([t, Target(B)], auth=process)
    assert c.auth_for(t) is own and c.auth_for(c.targets[B]) is process
    assert c.auth_for(None) is process
    c.discovery_auth = disc
    assert c.auth_for(None) is disc
