"""Counters of payload bytes: placed directly vs staged-then-copied, receive and send,
split by the size of the payload that moved (one PDU's data segment, RFC 7143 §11.7.7,
§11.8.6).

A *copy* is any user-space move of payload bytes (ours or the event loop's write
buffering); kernel socket and page-cache copies do not count (design notes §1).

Each byte is counted once, in the size bucket of its PDU, where it moves: the receiver
(:mod:`pyiscsi.proto.framing`) as a PDU's payload ends, the transport as a flush hands the
payload views to the socket. The totals are the sums of the buckets, so the hot path pays
one indexed increment per PDU and nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

SIZE_BUCKETS: Final = ("lt4k", "4k_64k", "ge64k")
"""Names of the payload size buckets: < 4 KiB, 4 KiB to < 64 KiB, >= 64 KiB."""
SIZE_LIMITS: Final = (4096, 65536)
"""Lower bounds of the second and third bucket, in bytes."""


def size_bucket(length: int) -> int:
    """The bucket index of a payload of ``length`` bytes. The hot paths inline the same
    two comparisons (``0 if n < 4096 else 1 if n < 65536 else 2``)."""
    return 0 if length < SIZE_LIMITS[0] else 1 if length < SIZE_LIMITS[1] else 2


def _buckets() -> list[int]:
    return [0] * len(SIZE_BUCKETS)


@dataclass(slots=True)
class CopyCounters:
    """Byte counters of one server (or one initiator), readable at run time."""

    rx_placed_by_size: list[int] = field(default_factory=_buckets)
    """Payload bytes received straight into their destination (no user-space copy)."""
    rx_staged_by_size: list[int] = field(default_factory=_buckets)
    """Payload bytes that arrived in a staging read and were copied once to their destination."""
    rx_discarded: int = 0
    """Payload bytes drained into the scratch sink (rejected, aborted, out of bounds)."""
    tx_zero_copy_by_size: list[int] = field(default_factory=_buckets)
    """Payload bytes handed to the transport as views of their home memory, never copied."""
    tx_copied_by_size: list[int] = field(default_factory=_buckets)
    """Payload bytes copied on send (event-loop write buffering, staged data)."""

    @property
    def rx_placed(self) -> int:
        return sum(self.rx_placed_by_size)

    @property
    def rx_staged(self) -> int:
        return sum(self.rx_staged_by_size)

    @property
    def tx_zero_copy(self) -> int:
        return sum(self.tx_zero_copy_by_size)

    @property
    def tx_copied(self) -> int:
        return sum(self.tx_copied_by_size)

    def sent(self, sizes: list[int], zero_copy: bool) -> None:
        """A flush handed store payloads to the transport: ``sizes`` bytes per bucket."""
        into = self.tx_zero_copy_by_size if zero_copy else self.tx_copied_by_size
        for i, n in enumerate(sizes):
            into[i] += n

    def snapshot(self) -> dict[str, int]:
        """Totals, then each total by size bucket (``rx_placed_ge64k``...)."""
        snap = {"rx_placed": self.rx_placed, "rx_staged": self.rx_staged,
                "rx_discarded": self.rx_discarded, "tx_zero_copy": self.tx_zero_copy,
                "tx_copied": self.tx_copied}
        for name, sizes in (("rx_placed", self.rx_placed_by_size),
                            ("rx_staged", self.rx_staged_by_size),
                            ("tx_zero_copy", self.tx_zero_copy_by_size),
                            ("tx_copied", self.tx_copied_by_size)):
            for bucket, n in zip(SIZE_BUCKETS, sizes, strict=True):
                snap[f"{name}_{bucket}"] = n
        return snap

    def reset(self) -> None:
        for sizes in (self.rx_placed_by_size, self.rx_staged_by_size,
                      self.tx_zero_copy_by_size, self.tx_copied_by_size):
            sizes[:] = _buckets()
        self.rx_discarded = 0
