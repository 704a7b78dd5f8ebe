"""libiscsi-style iSCSI URLs: ``iscsi://[user[%password]@]host[:port]/iqn/lun``."""

from __future__ import annotations

import pytest

from pyiscsi.initiator.url import IscsiUrl, parse_url, split_host_port

IQN = "iqn.2026-11.org.example:disk"


@pytest.mark.parametrize(("text", "expected"), [
    (f"iscsi://127.0.0.1/{IQN}/0", IscsiUrl("127.0.0.1", 3260, IQN, 0)),
    (f"iscsi://127.0.0.1:3262/{IQN}/1", IscsiUrl("127.0.0.1", 3262, IQN, 1)),
    (f"iscsi://host.example:1/{IQN}/255/", IscsiUrl("host.example", 1, IQN, 255)),
    (f"iscsi://[::1]:3260/{IQN}/3", IscsiUrl("::1", 3260, IQN, 3)),
    (f"iscsi://[fe80::1]/{IQN}/0", IscsiUrl("fe80::1", 3260, IQN, 0)),
    (f"iscsi://alice%s3cret@10.0.0.1/{IQN}/2",
     IscsiUrl("10.0.0.1", 3260, IQN, 2, "alice", "s3cret")),
    (f"iscsi://bob@10.0.0.1/{IQN}/0", IscsiUrl("10.0.0.1", 3260, IQN, 0, "bob", None)),
    (f"iscsi://ann%p%w@d@h/{IQN}/0", IscsiUrl("h", 3260, IQN, 0, "ann", "p%w@d")),
    (f"ISCSI://h/{IQN}/16383", IscsiUrl("h", 3260, IQN, 16383)),
])
def test_parse(text: str, expected: IscsiUrl) -> None:
    assert parse_url(text) == expected


@pytest.mark.parametrize("text", [
    f"http://h/{IQN}/0",
    "iscsi://h",
    "iscsi://h/",
    f"iscsi://h/{IQN}",
    f"iscsi://h/{IQN}/x",
    f"iscsi://h/{IQN}/16384",
    f"iscsi://h:0/{IQN}/0",
    f"iscsi://h:99999/{IQN}/0",
    f"iscsi://h:port/{IQN}/0",
    f"iscsi://[::1/{IQN}/0",
    f"iscsi:///{IQN}/0",
])
def test_rejects_malformed(text: str) -> None:
    with pytest.raises(ValueError):
        parse_url(text)


def test_lun_optional_when_asked() -> None:
    assert parse_url(f"iscsi://h/{IQN}", require_lun=False).lun is None


def test_str_hides_password_and_brackets_ipv6() -> None:
    url = parse_url(f"iscsi://u%secret@[::1]:3261/{IQN}/4")
    assert str(url) == f"iscsi://u%***@[::1]:3261/{IQN}/4"
    assert "secret" not in repr(url)
    assert url.portal == "[::1]:3261"


@pytest.mark.parametrize(("text", "expected"), [
    ("h", ("h", 3260)), ("h:1234", ("h", 1234)), ("[::1]", ("::1", 3260)),
    ("[::1]:99", ("::1", 99)), ("::1", ("::1", 3260)),
])
def test_split_host_port(text: str, expected: tuple[str, int]) -> None:
    assert split_host_port(text) == expected
