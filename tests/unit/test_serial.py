"""RFC 1982 serial number arithmetic (SERIAL_BITS = 32) for CmdSN/StatSN/DataSN/R2TSN."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyiscsi.proto.serial import sn_add, sn_in_window, sn_le, sn_lt

MAX = 0xFFFFFFFF
HALF = 1 << 31

sns = st.integers(min_value=0, max_value=MAX)
forward = st.integers(min_value=1, max_value=HALF - 1)


@pytest.mark.parametrize(
    ("sn", "n", "expected"),
    [
        (0, 0, 0),
        (0, 1, 1),
        (5, 7, 12),
        (MAX, 1, 0),
        (MAX, 2, 1),
        (MAX - 9, 20, 10),
        (0xFFFFFF00, 0x200, 0x100),
        (0, 1 << 32, 0),
        (3, -4, MAX),
    ],
)
def test_sn_add_wraps_modulo_2_32(sn: int, n: int, expected: int) -> None:
    assert sn_add(sn, n) == expected


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (0, 1),
        (1, 2),
        (100, 200),
        (0, HALF - 1),          # the largest forward distance still "less than"
        (MAX, 0),               # across the wrap
        (MAX - 5, 3),
        (0xFFFFFF00, 0x100),
        (HALF, MAX),
        (HALF + 1, 0),          # distance HALF - 1 through the wrap
    ],
)
def test_sn_lt_holds_forward_within_half_the_space(a: int, b: int) -> None:
    assert sn_lt(a, b) is True
    assert sn_lt(b, a) is False
    assert sn_le(a, b) is True
    assert sn_le(b, a) is False


def test_sn_lt_is_irreflexive_and_le_reflexive() -> None:
    for x in (0, 1, HALF, MAX):
        assert sn_lt(x, x) is False
        assert sn_le(x, x) is True


@pytest.mark.parametrize(("a", "b"), [(0, HALF), (HALF, 0), (1, HALF + 1), (MAX, HALF - 1)])
def test_distance_of_exactly_half_is_undefined_and_neither_is_less(a: int, b: int) -> None:
    # RFC 1982 §3.2 leaves i1 + 2**31 undefined; this implementation says neither is smaller.
    assert sn_lt(a, b) is False
    assert sn_lt(b, a) is False
    assert sn_le(a, b) is False


def test_plain_integer_order_is_not_serial_order_across_the_wrap() -> None:
    # numerically MAX > 0 and HALF + 1 > 0, yet both precede 0 in serial order
    assert sn_lt(MAX, 0)
    assert sn_lt(HALF + 1, 0)
    assert not sn_lt(0, HALF + 1)
    assert sn_lt(0, HALF - 1)


@pytest.mark.parametrize(
    ("sn", "low", "high", "inside"),
    [
        (5, 5, 10, True),
        (10, 5, 10, True),
        (7, 5, 10, True),
        (4, 5, 10, False),
        (11, 5, 10, False),
        (5, 5, 5, True),
        (6, 5, 5, False),
        # window straddling the wrap: MAX-1 .. 2
        (MAX - 1, MAX - 1, 2, True),
        (MAX, MAX - 1, 2, True),
        (0, MAX - 1, 2, True),
        (2, MAX - 1, 2, True),
        (3, MAX - 1, 2, False),
        (MAX - 2, MAX - 1, 2, False),
        (100, MAX - 1, 2, False),
    ],
)
def test_sn_in_window(sn: int, low: int, high: int, inside: bool) -> None:
    assert sn_in_window(sn, low, high) is inside


@given(sns, forward)
def test_adding_a_forward_distance_is_greater(a: int, d: int) -> None:
    b = sn_add(a, d)
    assert 0 <= b <= MAX
    assert sn_lt(a, b)
    assert not sn_lt(b, a)
    assert sn_le(a, b) and not sn_le(b, a)
    assert sn_in_window(a, a, b) and sn_in_window(b, a, b)


@given(sns, forward, forward)
def test_window_membership_matches_offsets(low: int, width: int, off: int) -> None:
    high = sn_add(low, width)
    assert sn_in_window(sn_add(low, off), low, high) is (off <= width)


@given(sns, st.integers(min_value=-(1 << 40), max_value=1 << 40))
def test_sn_add_is_modular(a: int, n: int) -> None:
    assert sn_add(a, n) == (a + n) % (1 << 32)


def _rfc1982_lt(a: int, b: int) -> bool:
    """RFC 1982 §3.2 as written: i1 < i2 when (i1 < i2 and i2 - i1 < 2^(SERIAL_BITS - 1))
    or (i1 > i2 and i1 - i2 > 2^(SERIAL_BITS - 1))."""
    return (a < b and b - a < HALF) or (a > b and a - b > HALF)


@given(a=sns, b=sns | st.sampled_from([0, 1, HALF - 1, HALF, HALF + 1, MAX]))
def test_lt_and_le_are_rfc1982(a: int, b: int) -> None:
    """The one-subtraction forms equal the RFC's definition, undefined pair (distance 2^31)
    included: neither is less than the other."""
    assert sn_lt(a, b) == _rfc1982_lt(a, b)
    assert sn_le(a, b) == (a == b or _rfc1982_lt(a, b))
    assert sn_lt(a, (a + HALF) & MAX) is False and sn_lt((a + HALF) & MAX, a) is False
