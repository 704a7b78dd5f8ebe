"""Byte ranges of a logical unit that store work in flight is changing (SAM-5 §8.6 task
ordering, as far as it concerns data): a command that overlaps one waits for it, so a
write issued after an UNMAP, WRITE SAME or EXTENDED COPY that is still running never lands
under it, on any I_T nexus."""

from __future__ import annotations

from collections.abc import Callable

from .cdb import LBA_COUNT, Op


class BusyRanges:
    """The busy ranges of one LU and the commands waiting for them, first come first served."""

    __slots__ = ("_waiting", "ranges")

    def __init__(self) -> None:
        self.ranges: dict[int, list[tuple[int, int]]] = {}
        """Busy ranges by the token of the work changing them (empty: nothing waits)."""
        self._waiting: list[Callable[[], bool]] = []

    def overlaps(self, start: int, end: int) -> bool:
        """Whether ``[start, end)`` touches a busy range."""
        return any(s < end and start < e for ranges in self.ranges.values() for s, e in ranges)

    def add(self, token: int, ranges: list[tuple[int, int]]) -> None:
        if ranges:
            self.ranges[token] = ranges

    def remove(self, token: int) -> None:
        """Work ``token`` completed: waiting commands try again, in arrival order."""
        if self.ranges.pop(token, None) is None:
            return
        waiting, self._waiting = self._waiting, []
        for retry in waiting:
            if not retry():
                self._waiting.append(retry)

    def wait(self, retry: Callable[[], bool]) -> None:
        """Call ``retry`` when a range frees; it answers True once it no longer waits."""
        self._waiting.append(retry)


NO_MEDIUM_ACCESS = frozenset({
    Op.TEST_UNIT_READY, Op.REQUEST_SENSE, Op.INQUIRY, Op.MODE_SELECT_6, Op.MODE_SENSE_6,
    Op.RESERVE_6, Op.RELEASE_6, Op.READ_CAPACITY_10, Op.MODE_SELECT_10, Op.MODE_SENSE_10,
    Op.PERSISTENT_RESERVE_IN, Op.PERSISTENT_RESERVE_OUT, Op.REPORT_LUNS, Op.MAINTENANCE_IN,
    Op.START_STOP_UNIT, Op.PREVENT_ALLOW_MEDIUM_REMOVAL, Op.RECEIVE_COPY_RESULTS,
})
"""Commands that neither read nor change the medium: they never wait for busy ranges."""


def command_range(cdb: bytes, block_size: int, blocks: int) -> tuple[int, int] | None:
    """The byte range a command reads or changes: from its LBA and count where the CDB has
    them (a count of 0 meaning up to the last LBA), the whole medium for other medium
    commands (UNMAP, EXTENDED COPY, SANITIZE...), None for commands that touch none."""
    opcode = cdb[0]
    decode = LBA_COUNT.get(opcode)
    if decode is None:
        return None if opcode in NO_MEDIUM_ACCESS else (0, blocks * block_size)
    try:
        lba, count = decode(cdb)
    except Exception:  # a short CDB: the command fails on its own; wait as for everything
        return 0, blocks * block_size
    return lba * block_size, (lba + (count or max(blocks - lba, 0))) * block_size
