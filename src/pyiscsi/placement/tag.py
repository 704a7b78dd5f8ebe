"""The tag layout of Fig 9B: ``generation(4) << 28 | index(12) << 16 | connection(16)``.

Lower 16 bits: a connection number the target assigns (not the RFC CID). Upper 16 bits:
generation (4 bits) << 12 | entry index (12 bits). Index 0x10 on connection 0x0123 at
generation 0 is ``0x0010_0123``. ``0xFFFFFFFF`` is reserved (RFC 7143 §11.2.1.8) and never
issued: connection number 0xFFFF is never assigned.
"""

from __future__ import annotations

from dataclasses import dataclass

INDEX_BITS = 12
GENERATION_BITS = 4
CONNECTION_BITS = 16
MAX_ENTRIES = 1 << INDEX_BITS
GENERATIONS = 1 << GENERATION_BITS
MAX_CONNECTION_NUMBER = (1 << CONNECTION_BITS) - 2
"""0xFFFF is never assigned, so no tag is ever 0xFFFFFFFF."""


@dataclass(frozen=True, slots=True)
class Tag:
    """A decoded placement tag."""

    connection: int
    index: int
    generation: int = 0

    def __int__(self) -> int:
        return pack(self.connection, self.index, self.generation)

    @classmethod
    def from_int(cls, value: int) -> Tag:
        return cls(value & 0xFFFF, (value >> 16) & 0xFFF, (value >> 28) & 0xF)


def pack(connection: int, index: int, generation: int) -> int:
    """Compose a 32-bit tag (Fig 9B)."""
    return (generation & 0xF) << 28 | (index & 0xFFF) << 16 | (connection & 0xFFFF)
