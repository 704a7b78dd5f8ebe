"""The librados binding's pure parts: the notify reply decoder and the errno exception."""

from __future__ import annotations

import errno
import struct

import pytest

from pyiscsi.ceph.errors import CephError, check
from pyiscsi.ceph.librados import NotifyAck, decode_notify_reply


def test_notify_reply_acks_and_timeouts() -> None:
    data = (struct.pack("<I", 2)
            + struct.pack("<QQI", 7, 11, 3) + b"abc"
            + struct.pack("<QQI", 8, 12, 0)
            + struct.pack("<I", 1) + struct.pack("<QQ", 9, 13))
    result = decode_notify_reply(data)
    assert result.acks == (NotifyAck(7, 11, b"abc"), NotifyAck(8, 12, b""))
    assert result.timeouts == ((9, 13),)


def test_notify_reply_truncated_is_an_error() -> None:
    with pytest.raises(struct.error):
        decode_notify_reply(struct.pack("<I", 1) + b"\0" * 4)


def test_check_raises_with_errno() -> None:
    assert check("rados_x", 5) == 5
    with pytest.raises(CephError) as info:
        check("rados_connect", -errno.ETIMEDOUT, "ceph.conf")
    assert info.value.errno == errno.ETIMEDOUT
    assert "rados_connect" in str(info.value) and "ceph.conf" in str(info.value)
