"""The Fig 9B placement tag: generation(4) << 28 | index(12) << 16 | connection(16)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyiscsi.placement.tag import (
    CONNECTION_BITS,
    GENERATION_BITS,
    GENERATIONS,
    INDEX_BITS,
    MAX_CONNECTION_NUMBER,
    MAX_ENTRIES,
    Tag,
    pack,
)

connections = st.integers(min_value=0, max_value=MAX_CONNECTION_NUMBER)
indexes = st.integers(min_value=0, max_value=MAX_ENTRIES - 1)
generations = st.integers(min_value=0, max_value=GENERATIONS - 1)


def test_layout_constants() -> None:
    assert (INDEX_BITS, GENERATION_BITS, CONNECTION_BITS) == (12, 4, 16)
    assert INDEX_BITS + GENERATION_BITS + CONNECTION_BITS == 32
    assert MAX_ENTRIES == 4096
    assert GENERATIONS == 16
    assert MAX_CONNECTION_NUMBER == 0xFFFE


@pytest.mark.parametrize(
    ("index", "expected"), [(0x10, 0x0010_0123), (0x11, 0x0011_0123), (0x12, 0x0012_0123)]
)
def test_fig9b_vectors(index: int, expected: int) -> None:
    assert pack(0x0123, index, 0) == expected
    assert int(Tag(0x0123, index)) == expected
    assert Tag.from_int(expected) == Tag(connection=0x0123, index=index, generation=0)


@pytest.mark.parametrize(
    ("generation", "expected"),
    [(1, 0x1010_0123), (0x7, 0x7010_0123), (0xF, 0xF010_0123)],
)
def test_generation_occupies_the_top_four_bits(generation: int, expected: int) -> None:
    value = pack(0x0123, 0x10, generation)
    assert value == expected
    assert value >> 28 == generation
    assert value & 0x0FFF_FFFF == 0x0010_0123
    assert Tag.from_int(value).generation == generation


def test_field_extremes_land_in_their_own_bits() -> None:
    assert pack(0xFFFF, 0, 0) == 0x0000_FFFF
    assert pack(0, 0xFFF, 0) == 0x0FFF_0000
    assert pack(0, 0, 0xF) == 0xF000_0000
    assert pack(0, 0, 0) == 0


def test_out_of_range_fields_are_masked_not_spilled() -> None:
    assert pack(0x1_0001, 0, 0) == 0x0000_0001
    assert pack(0, 0x1001, 0) == 0x0001_0000
    assert pack(0, 0, 0x11) == 0x1000_0000


def test_reserved_tag_is_never_produced_by_an_assignable_connection() -> None:
    assert pack(MAX_CONNECTION_NUMBER, MAX_ENTRIES - 1, GENERATIONS - 1) == 0xFFFF_FFFE
    assert Tag.from_int(0xFFFF_FFFF) == Tag(0xFFFF, 0xFFF, 0xF)


def test_tag_is_frozen() -> None:
    tag = Tag(1, 2, 3)
    with pytest.raises(AttributeError):
        tag.index = 5  # type: ignore[misc]


@given(connections, indexes, generations)
def test_pack_from_int_round_trip(connection: int, index: int, generation: int) -> None:
    value = pack(connection, index, generation)
    assert 0 <= value < 0xFFFF_FFFF
    tag = Tag.from_int(value)
    assert (tag.connection, tag.index, tag.generation) == (connection, index, generation)
    assert int(tag) == value
    assert value == (generation << 28) | (index << 16) | connection


@given(st.integers(min_value=0, max_value=0xFFFF_FFFF))
def test_from_int_then_int_is_identity(value: int) -> None:
    assert int(Tag.from_int(value)) == value
