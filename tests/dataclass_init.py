"""Checks for a dataclass that writes its own ``__init__``.

mypyc compiles an ``__init__`` a class defines, but leaves the one ``dataclasses`` generates
interpreted. So the classes built once or more per command (PDUs, events, store operations)
write theirs out, and ``dataclass`` keeps it. These checks catch one that drifts from the
fields: a field left unset, taken in another order, or given another default.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any


def assert_init_matches_fields(cls: Any, values: Sequence[object], required: int) -> None:
    """``cls(*values)`` and ``cls(**by name)`` set each field to its value, in the fields'
    order (give values distinct from the defaults and from each other);
    ``cls(*values[:required])`` leaves every later field at its default."""
    fields = dataclasses.fields(cls)
    assert len(values) == len(fields)
    by_position = cls(*values)
    by_name = cls(**{f.name: v for f, v in zip(fields, values, strict=True)})
    for f, value in zip(fields, values, strict=True):
        for built in (by_position, by_name):  # equal and of the same type (a compiled int
            got = getattr(built, f.name)       # field is stored unboxed: not `is`)
            assert got == value and type(got) is type(value), f.name
    least = cls(*values[:required])
    for f in fields[required:]:
        assert getattr(least, f.name) == f.default, f.name
