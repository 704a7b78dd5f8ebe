"""Serial number arithmetic for CmdSN, StatSN, DataSN, R2TSN (RFC 1982, SERIAL_BITS = 32)."""

from __future__ import annotations

_HALF = 1 << 31
_MASK = 0xFFFFFFFF


def sn_add(sn: int, n: int) -> int:
    """``sn + n`` modulo 2**32."""
    return (sn + n) & _MASK


def sn_lt(a: int, b: int) -> bool:
    """``a < b`` in serial arithmetic (RFC 1982 §3.2)."""
    return 0 < (b - a) & _MASK < _HALF  # the distance from a up to b is below half


def sn_le(a: int, b: int) -> bool:
    """``a <= b`` in serial arithmetic: equal, or :func:`sn_lt`."""
    return (b - a) & _MASK < _HALF


def sn_in_window(sn: int, low: int, high: int) -> bool:
    """``low <= sn <= high`` in serial arithmetic (the CmdSN window, RFC 7143 §3.2.2.1)."""
    return sn_le(low, sn) and sn_le(sn, high)
