"""Counters of payload bytes: placed directly vs staged-then-copied, receive and send.

A *copy* is any user-space move of payload bytes (ours or the event loop's write
buffering); kernel socket and page-cache copies do not count (design notes §1).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass(slots=True)
class CopyCounters:
    """Byte counters of one server (or one initiator), readable at run time."""

    rx_placed: int = 0
    """Payload bytes received straight into their destination (no user-space copy)."""
    rx_staged: int = 0
    """Payload bytes that arrived in a staging read and were copied once to their destination."""
    rx_discarded: int = 0
    """Payload bytes drained into the scratch sink (rejected, aborted, out of bounds)."""
    tx_zero_copy: int = 0
    """Payload bytes handed to the transport as views of their home memory, never copied."""
    tx_copied: int = 0
    """Payload bytes copied on send (event-loop write buffering, staged data)."""

    def snapshot(self) -> dict[str, int]:
        return asdict(self)

    def reset(self) -> None:
        for f in fields(self):  # not __slots__: a compiled class has none
            setattr(self, f.name, 0)

