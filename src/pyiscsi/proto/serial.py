"""Serial number arithmetic for CmdSN, StatSN, DataSN, R2TSN (RFC 1982, SERIAL_BITS = 32)."""

from __future__ import annotations

_HALF = 1 << 31
_MASK = 0xFFFFFFFF


def sn_add(sn: int, n: int) -> int:
    """``sn + n`` modulo 2**32."""
    return (sn + n) & _MASK


def sn_lt(a: int, b: int) -> bool:
    """``a < b`` in serial arithmetic (RFC 1982 §3.2)."""
    return a != b and ((a < b and b - a < _HALF) or (a > b and a - b > _HALF))


def sn_le(a: int, b: int) -> bool:
    return a == b or sn_lt(a, b)


def sn_in_window(sn: int, low: int, high: int) -> bool:
    """``low <= sn <= high`` in serial arithmetic (the CmdSN window, RFC 7143 §3.2.2.1)."""
    return sn_le(low, sn) and sn_le(sn, high)
