"""SendTargets text, RFC 7143 §13.3, §13.8, Appendix C."""

from __future__ import annotations

import pytest

from pyiscsi.proto.discovery import (
    Portal,
    format_address,
    format_send_targets,
    parse_address,
    parse_send_targets,
    select_send_targets,
)
from pyiscsi.proto.keys import TextFormatError

T1 = "iqn.2024-01.org.pyiscsi:disk0"
T2 = "iqn.2024-01.org.pyiscsi:disk1"


def test_format_send_targets_exact_bytes() -> None:
    data = format_send_targets([(T1, ["10.0.0.1:3260,1", Portal("fe80::1", 3261, 2)]),
                                (T2, [])])
    assert data == (
        b"TargetName=iqn.2024-01.org.pyiscsi:disk0\0"
        b"TargetAddress=10.0.0.1:3260,1\0"
        b"TargetAddress=[fe80::1]:3261,2\0"
        b"TargetName=iqn.2024-01.org.pyiscsi:disk1\0"
    )


def test_round_trip() -> None:
    targets = [(T1, ["192.168.1.5:3260,1", "[2001:db8::5]:3260,1"]), (T2, ["host.example:860,3"])]
    assert parse_send_targets(format_send_targets(targets)) == targets


def test_parse_skips_other_keys_and_tolerates_padding() -> None:
    data = b"TargetName=a\0TargetAlias=disk\0TargetAddress=h:1,1\0\0\0"
    assert parse_send_targets(data) == [("a", ["h:1,1"])]


def test_address_before_name_is_an_error() -> None:
    with pytest.raises(TextFormatError):
        parse_send_targets(b"TargetAddress=h:1,1\0TargetName=a\0")


@pytest.mark.parametrize(("host", "text"), [
    ("10.1.2.3", "10.1.2.3:3260,1"),
    ("::1", "[::1]:3260,1"),
    ("2001:db8::7", "[2001:db8::7]:3260,1"),
    ("storage.example", "storage.example:3260,1"),
])
def test_format_address_brackets_ipv6(host: str, text: str) -> None:
    assert format_address(host) == text
    assert str(Portal(host)) == text


@pytest.mark.parametrize(("text", "portal"), [
    ("10.1.2.3:3261,4", Portal("10.1.2.3", 3261, 4)),
    ("10.1.2.3", Portal("10.1.2.3", 3260, 1)),
    ("[fe80::1]:3262,9", Portal("fe80::1", 3262, 9)),
    ("[fe80::1],2", Portal("fe80::1", 3260, 2)),
    ("name.example,5", Portal("name.example", 3260, 5)),
])
def test_parse_address(text: str, portal: Portal) -> None:
    assert parse_address(text) == portal


@pytest.mark.parametrize("text", ["h:port,1", "h:1,x", "[fe80::1:3260,1", "[::1]x,1", ":3260,1",
                                  "h:0,1", "h:70000,1", "h:1,65536"])
def test_parse_address_errors(text: str) -> None:
    with pytest.raises(TextFormatError):
        parse_address(text)


def test_select_send_targets() -> None:
    targets = [(T1, ["a:1,1"]), (T2, ["b:1,1"])]
    assert select_send_targets("All", targets) == targets
    assert select_send_targets(T2, targets) == [(T2, ["b:1,1"])]
    assert select_send_targets("iqn.none", targets) == []
    assert select_send_targets("", targets, session_target=T1) == [(T1, ["a:1,1"])]
    assert select_send_targets("All", targets, session_target=T1) == []
