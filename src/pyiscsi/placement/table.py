"""The data pointer table (Fig 9C) and the process-wide connection lookup table.

One :class:`DataPointerTable` per connection: fixed-capacity entries, each holding where a
burst's bytes live (destination memoryview), the burst's buffer offset and length, bytes
received so far and a generation. Allocation and lookup are O(1) (a free list and an array
index). A Data-Out is placed at ``destination[BufferOffset - entry.offset:]``: the same
arithmetic as Fig 9D's ``pointer + (BufferOffset - data offset)``.

Every tag is validated before a byte is accepted (the checks of RFC 5041 §7 for tagged
buffers): index in range, entry live, generation current, connection matching, and the
payload inside the burst, in order. A failure raises :class:`PlacementError` carrying the
Reject reason (RFC 7143 §11.17.1: 0x09 invalid PDU field).
"""

from __future__ import annotations

from collections import deque

from ..proto.errors import PduRejected
from ..proto.wire import RejectReason
from . import tag as tagfmt


class PlacementError(PduRejected):
    """A tag or offset that must not be written through; the payload goes to the sink."""

    def __init__(self, message: str) -> None:
        super().__init__(RejectReason.INVALID_PDU_FIELD, message)


NOWHERE = memoryview(b"")
"""The destination handed out for a drained burst: the receiver drains into its sink."""


class TableFull(Exception):
    """No free entry: the caller waits for one to free up (never a refusal of a legal
    command, never a MemoryError)."""


class TableEntry:
    """One row of Fig 9C: where a burst lands, plus bookkeeping."""

    __slots__ = (
        "datasn",
        "destination",
        "discarding",
        "generation",
        "in_use",
        "index",
        "itt",
        "length",
        "lun",
        "next_offset",
        "offset",
        "owner",
        "received",
    )

    def __init__(self, index: int) -> None:
        self.index = index
        self.generation = 0
        self.in_use = False
        self.destination: memoryview | None = None
        self.offset = 0
        self.length = 0
        self.received = 0
        self.next_offset = 0
        self.itt = 0
        self.lun = 0
        self.owner: object = None
        self.discarding = False
        self.datasn = 0
        """The DataSN the next Data-Out of this burst must carry (RFC 7143 §11.7.3)."""

    @property
    def complete(self) -> bool:
        return self.received >= self.length


class DataPointerTable:
    """Per-connection table of burst destinations addressed by the tags we hand out."""

    def __init__(self, connection_number: int, capacity: int = tagfmt.MAX_ENTRIES) -> None:
        if not 0 <= connection_number <= tagfmt.MAX_CONNECTION_NUMBER:
            raise ValueError(f"connection number 0x{connection_number:x} out of range")
        if not 0 < capacity <= tagfmt.MAX_ENTRIES:
            raise ValueError(f"capacity {capacity} out of range 1..{tagfmt.MAX_ENTRIES}")
        self.connection_number = connection_number
        self.capacity = capacity
        # Entries are created on first use (an idle connection costs a few bytes, a busy one
        # at most ``capacity`` entries). A fresh index is taken until the table reaches
        # capacity; after that released indexes are reused first-in first-out, so a tag value
        # recurs only after ``capacity x 16`` allocations and a stale tag is caught by its
        # generation, not by luck in the ITT, LUN and offset checks.
        self.entries: list[TableEntry] = []
        self._free: deque[int] = deque()
        self._live = 0

    def __len__(self) -> int:
        return self._live

    @property
    def free_entries(self) -> int:
        return self.capacity - self._live

    def _grow_to(self, index: int) -> None:
        """Create entries up to ``index``; the new ones other than ``index`` become free."""
        first = len(self.entries)
        self.entries.extend(TableEntry(i) for i in range(first, index + 1))
        self._free.extend(range(first, index))

    def allocate(self, destination: memoryview, offset: int, length: int, *, itt: int = 0,
                 lun: int = 0, owner: object = None, index: int | None = None,
                 discarding: bool = False) -> int:
        """Bind a free entry to ``destination`` for burst ``[offset, offset+length)``.

        Returns the tag to send (TTT of the R2T / ITT of the command). ``index`` picks a
        specific free entry (used to replay Fig 9 exactly); normally the free list decides.
        A ``discarding`` entry validates and counts its burst but has no destination: its
        bytes are drained into the receiver's sink.
        """
        if not discarding and len(destination) < length:
            raise ValueError("destination smaller than the burst")
        if index is None:
            if len(self.entries) < self.capacity:
                index = len(self.entries)
                self.entries.append(TableEntry(index))
            elif self._free:
                index = self._free.popleft()
            else:
                raise TableFull(f"all {self.capacity} data pointer table entries are live")
        elif index >= len(self.entries):
            if index >= self.capacity:
                raise ValueError(f"index {index} beyond capacity {self.capacity}")
            self._grow_to(index)
        else:
            self._free.remove(index)
        entry = self.entries[index]
        self._live += 1
        entry.in_use = True
        entry.destination = destination
        entry.offset = offset
        entry.length = length
        entry.received = 0
        entry.next_offset = offset
        entry.itt = itt
        entry.lun = lun
        entry.owner = owner
        entry.discarding = discarding
        entry.datasn = 0
        return tagfmt.pack(self.connection_number, index, entry.generation)

    def lookup(self, tag: int) -> TableEntry:
        """The live entry a tag names, or :class:`PlacementError` (unknown/stale/foreign)."""
        if tag & 0xFFFF != self.connection_number:
            raise PlacementError(f"tag 0x{tag:08x} belongs to another connection")
        index = (tag >> 16) & 0xFFF
        if index >= len(self.entries):
            raise PlacementError(f"tag 0x{tag:08x}: no entry {index}")
        entry = self.entries[index]
        if not entry.in_use or entry.generation != (tag >> 28):
            raise PlacementError(f"tag 0x{tag:08x} is stale")
        return entry

    def place(self, tag: int, buffer_offset: int, length: int, *, itt: int | None = None,
              lun: int | None = None, in_order: bool = True) -> tuple[TableEntry, memoryview]:
        """Validate a Data-Out against its entry; return the entry and the destination slice.

        The slice is ``destination[buffer_offset - entry.offset:][:length]``. Checks: the tag
        (see :meth:`lookup`), ITT/LUN of the owning task, ``offset <= BufferOffset`` and
        ``BufferOffset + length <= offset + burst length``, and with ``in_order`` (DataPDUInOrder
        =Yes, RFC 7143 §13.19) that BufferOffset is the next expected one (no gap, no overlap).
        """
        entry = self.lookup(tag)
        if entry.discarding:
            # A drained burst (aborted or failed task, RFC 7143 §4.2.3.3): what the peer still
            # sends inside the burst is accepted and dropped, in any order; nothing is written.
            start = buffer_offset - entry.offset
            if start < 0 or start + length > entry.length:
                raise PlacementError(f"tag 0x{tag:08x}: bytes outside the drained burst")
            return entry, NOWHERE
        if itt is not None and itt != entry.itt:
            raise PlacementError(f"tag 0x{tag:08x}: ITT 0x{itt:08x} is not its task")
        if lun is not None and lun != entry.lun:
            raise PlacementError(f"tag 0x{tag:08x}: LUN does not match its task")
        start = buffer_offset - entry.offset
        if start < 0 or start + length > entry.length:
            raise PlacementError(
                f"tag 0x{tag:08x}: bytes [{buffer_offset:#x}, {buffer_offset + length:#x}) "
                f"outside burst [{entry.offset:#x}, {entry.offset + entry.length:#x})")
        if in_order and buffer_offset != entry.next_offset:
            raise PlacementError(
                f"tag 0x{tag:08x}: BufferOffset {buffer_offset:#x}, expected "
                f"{entry.next_offset:#x}")
        assert entry.destination is not None
        return entry, entry.destination[start:start + length]

    def account(self, entry: TableEntry, buffer_offset: int, length: int) -> None:
        """Record that ``length`` bytes at ``buffer_offset`` have landed."""
        entry.received += length
        entry.next_offset = buffer_offset + length

    def repoint(self, tag: int, destination: memoryview) -> None:
        """Repoint a live entry (e.g. at a discard sink for an aborted task, §4.2.3.3)."""
        entry = self.lookup(tag)
        entry.destination = destination
        entry.discarding = True

    def free(self, tag: int) -> None:
        """Release an entry and bump its generation: the old tag becomes stale."""
        entry = self.lookup(tag)
        self._release(entry)

    def _release(self, entry: TableEntry) -> None:
        entry.in_use = False
        entry.destination = None
        entry.owner = None
        entry.generation = (entry.generation + 1) % tagfmt.GENERATIONS
        self._free.append(entry.index)
        self._live -= 1

    def clear(self) -> None:
        """Free every live entry (connection teardown)."""
        for entry in self.entries:
            if entry.in_use:
                self._release(entry)


class ConnectionRegistry:
    """A server's connection lookup table (claim 1 of '663: the tag names the connection).

    Assigns connection numbers unique among live connections, never 0xFFFF.
    """

    def __init__(self) -> None:
        self._live: dict[int, object] = {}
        self._next = 1

    def register(self, connection: object, number: int | None = None) -> int:
        if number is None:
            for _ in range(tagfmt.MAX_CONNECTION_NUMBER):
                candidate = self._next
                self._next = self._next % tagfmt.MAX_CONNECTION_NUMBER + 1
                if candidate not in self._live:
                    number = candidate
                    break
            else:
                raise MemoryError("no free connection number")
        elif number in self._live or not 0 <= number <= tagfmt.MAX_CONNECTION_NUMBER:
            raise ValueError(f"connection number 0x{number:x} unavailable")
        self._live[number] = connection
        return number

    def lookup(self, tag: int) -> object:
        """The connection a tag belongs to (lower 16 bits)."""
        try:
            return self._live[tag & 0xFFFF]
        except KeyError:
            raise PlacementError(f"tag 0x{tag:08x}: no such connection") from None

    def unregister(self, number: int) -> None:
        self._live.pop(number, None)

    def values(self) -> list[object]:
        """The live connections (a copy: safe to walk while connections come and go)."""
        return list(self._live.values())

    def __len__(self) -> int:
        return len(self._live)

