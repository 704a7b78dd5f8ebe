"""Transfer bookkeeping of one target connection, sans-IO (RFC 7143 §11.7-11.8; Fig 8 and 9
of US 7,512,663).

It owns the connection's data pointer table and its tasks: it binds each task's unsolicited
entry, routes every Data-Out at header time through the table (tag, ITT, LUN, offset and
DataSN checked before a byte is accepted), accounts what landed, solicits the rest with R2Ts
while table entries last (a full table makes tasks wait first come, first served, never
stall), and drains failed or aborted tasks' bursts into the sink. It never sends anything
itself: R2Ts go out through the ``send_r2t`` callback the engine gives it.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from ..placement.table import NOWHERE, DataPointerTable, PlacementError, TableEntry, TableFull
from ..proto import pdu as P
from ..proto.framing import DISCARD, Route
from ..proto.wire import RESERVED_TAG, ScsiStatus
from ..scsi.sense import Asc, SenseKey, fixed_sense
from ..scsi.task import ScsiResult
from .task import Task


def check_condition(key: SenseKey, asc: Asc) -> ScsiResult:
    """CHECK CONDITION with fixed-format sense (SPC-4 §4.5.3)."""
    return ScsiResult(ScsiStatus.CHECK_CONDITION, fixed_sense(key, asc.asc, asc.ascq))


DATA_PHASE_ERROR = check_condition(SenseKey.ABORTED_COMMAND, Asc.DATA_PHASE_ERROR)
"""A Data-Out sequence error (DataSN, an early F bit): SPC-4 Annex D 4Bh/00h."""
DATA_OFFSET_ERROR = check_condition(SenseKey.ABORTED_COMMAND, Asc.DATA_OFFSET_ERROR)
"""A Data-Out outside its burst, out of order, or for another task (4Bh/05h)."""

SendR2T = Callable[[Task, int, int, int], None]
"""``send_r2t(task, ttt, buffer_offset, desired_length)``: the engine sends one R2T."""


class Transfers:
    """The tasks of one connection and the table entries their bursts land through."""

    def __init__(self, table: DataPointerTable, *, r2t_budget: int, send_r2t: SendR2T,
                 log: logging.LoggerAdapter[Any] | logging.Logger) -> None:
        self.table = table
        self.tasks: dict[int, Task] = {}
        self.r2t_budget = r2t_budget
        """Entries R2Ts may hold at once: the rest stay free for unsolicited data."""
        self.r2t_entries = 0
        self.held_bytes = 0
        """Unsolicited data staged for tasks that have not run yet."""
        self.max_burst_length = 262144
        self.max_outstanding_r2t = 1
        self.waiting: deque[Task] = deque()
        """Tasks waiting for a table entry for their next R2T, first come first served."""
        self.entry: TableEntry | None = None
        """The entry the PDU being received was routed through (set at header time)."""
        self.entry_tag = 0
        self._send_r2t = send_r2t
        self._log = log

    # ------------------------------------------------------------------ header time

    def bind_unsolicited(self, task: Task) -> None:
        """The entry immediate and unsolicited data land through (TTT 0xFFFFFFFF, found by
        ITT). Straight into the store when the task's plan is known and stores all of it;
        into a private area when the plan is not known yet or the unsolicited data outruns
        what it stores; into the sink when it already failed. Admission guarantees the
        entry."""
        unsolicited = task.unsol_end
        if not unsolicited:
            return
        discarding = False
        if task.result is not None:
            dest, discarding = NOWHERE, True
        elif task.plan is None:
            # not decided yet (held behind a CmdSN gap or an ORDERED task, or waiting for
            # its store): the data waits in a private area, copied once when it can land
            dest = task.unsol_buffer = memoryview(bytearray(unsolicited))
            task.held_bytes = unsolicited
            self.held_bytes += unsolicited
        elif unsolicited > task.limit:
            dest = task.unsol_buffer = memoryview(bytearray(unsolicited))
        else:
            assert task.buffer is not None
            dest = task.buffer[:unsolicited]
        task.unsol_tag = self.table.allocate(dest, 0, unsolicited, itt=task.itt,
                                             lun=task.cmd.lun, owner=task,
                                             discarding=discarding)

    def immediate_destination(self, task: Task) -> Route:
        """Where a command's immediate data goes: its unsolicited entry at offset 0."""
        if task.unsol_tag is None:
            return DISCARD
        entry, view = self.table.place(task.unsol_tag, 0, task.cmd.data_length, itt=task.itt)
        self.entry, self.entry_tag = entry, task.unsol_tag
        return DISCARD if entry.discarding else view

    def route_data_out(self, pdu: P.DataOut) -> Route:
        """Route a Data-Out by its TTT (or, unsolicited, its ITT) before its payload arrives.

        An unknown, stale or foreign tag raises :class:`PlacementError` (a Reject, nothing
        else). A live burst that cannot take this PDU (offset, ITT, LUN) fails its task and
        raises too; a DataSN out of sequence fails the task and drains (RFC 7143 §7.1.1).
        """
        if pdu.ttt == RESERVED_TAG:
            task = self.tasks.get(pdu.itt)
            if task is None or task.unsol_tag is None:
                raise PlacementError(f"unsolicited Data-Out for unknown ITT 0x{pdu.itt:08x}")
            tag = task.unsol_tag
        else:
            tag = pdu.ttt
        entry = self.table.lookup(tag)
        try:
            entry, view = self.table.place(tag, pdu.buffer_offset, pdu.data_length,
                                           itt=pdu.itt, lun=pdu.lun)
        except PlacementError:
            if isinstance(entry.owner, Task):
                self.fail(entry.owner, DATA_OFFSET_ERROR)
            raise
        self.entry, self.entry_tag = entry, tag
        if (pdu.datasn != entry.datasn and isinstance(entry.owner, Task)
                and not entry.discarding):
            self._log.info("ITT 0x%08x: DataSN %d, expected %d", pdu.itt, pdu.datasn,
                           entry.datasn)
            self.fail(entry.owner, DATA_PHASE_ERROR)
        entry.datasn += 1
        return DISCARD if entry.discarding else view

    def drained_entry(self, pdu: P.DataOut) -> TableEntry | None:
        """The drained burst a rejected Data-Out with the F bit ends, if any (it becomes the
        routed entry, for :meth:`landed`)."""
        if not pdu.final:
            return None
        task = self.tasks.get(pdu.itt)
        tag = task.unsol_tag if pdu.ttt == RESERVED_TAG and task is not None else pdu.ttt
        if tag is None:
            return None
        try:
            entry = self.table.lookup(tag)
        except PlacementError:
            return None
        if not entry.discarding:
            return None
        self.entry, self.entry_tag = entry, tag
        return entry

    # ------------------------------------------------------------------ PDU complete

    def landed(self, task: Task, offset: int, length: int, final: bool) -> None:
        """Account a payload that landed through the routed entry; a burst ends when all
        its bytes are in, or (drained) when the peer marks its last PDU with the F bit."""
        entry, tag = self.entry, self.entry_tag
        self.entry = None
        if entry is None:
            return
        self.table.account(entry, offset, length)
        if not entry.discarding:
            task.received += length
        if entry.complete:
            self.release(task, tag)
        elif final:
            if not entry.discarding:
                self._log.info("ITT 0x%08x: F bit before the burst was whole", task.itt)
                self.fail(task, DATA_PHASE_ERROR)
            self.release(task, tag)

    def release(self, task: Task, tag: int) -> None:
        """Free one of a task's entries (its tag goes stale); waiting tasks may use it."""
        try:  # noqa: SIM105  (contextlib.suppress costs ~0.5 us on this per-command path)
            self.table.free(tag)
        except PlacementError:
            pass
        if tag == task.unsol_tag:
            task.unsol_tag = None
        elif tag in task.outstanding:
            task.outstanding.discard(tag)
            self.r2t_entries -= 1
        if self.waiting:
            self.resume_waiting()

    @staticmethod
    def all_landed(task: Task) -> bool:
        """No burst of the task is open: every byte it was sent has landed or drained."""
        return task.unsol_tag is None and not task.outstanding

    # ------------------------------------------------------------------ R2T

    def solicit(self, task: Task) -> None:
        """Send the R2Ts a task may have outstanding; queue it (FIFO) for table entries."""
        if task.next_r2t >= task.limit or task.waiting:
            return
        if self.waiting or not self._send_r2ts(task):
            task.waiting = True
            self.waiting.append(task)
            self.resume_waiting()

    def resume_waiting(self) -> None:
        """Entries freed up: the tasks waiting for one get their R2Ts, oldest first."""
        waiting = self.waiting
        while waiting and self.r2t_entries < self.r2t_budget:
            task = waiting[0]
            live = self.tasks.get(task.itt) is task
            if live and not self._send_r2ts(task):
                return
            task.waiting = False
            waiting.popleft()

    def _send_r2ts(self, task: Task) -> bool:
        """R2Ts up to MaxOutstandingR2T (RFC 7143 §13.17); False when entries ran out."""
        while task.next_r2t < task.limit and len(task.outstanding) < self.max_outstanding_r2t:
            if self.r2t_entries >= self.r2t_budget:
                return False
            offset = task.next_r2t
            length = min(self.max_burst_length, task.limit - offset)
            assert task.buffer is not None
            try:
                ttt = self.table.allocate(task.buffer[offset:offset + length], offset, length,
                                          itt=task.itt, lun=task.cmd.lun, owner=task)
            except TableFull:
                return False
            self.r2t_entries += 1
            task.outstanding.add(ttt)
            task.next_r2t = offset + length
            self._send_r2t(task, ttt, offset, length)
            task.r2tsn += 1
        return True

    # ------------------------------------------------------------------ ending

    def drain(self, task: Task) -> None:
        """Repoint the task's live entries at the sink and stop soliciting: the rest of its
        bursts are accepted, counted and dropped, never stored (RFC 7143 §4.2.3.3)."""
        for tag in live_tags(task):
            self.table.repoint(tag, NOWHERE)
        task.limit = 0

    def fail(self, task: Task, result: ScsiResult) -> None:
        """End a write early with ``result`` once its open bursts have drained (the first
        failure is the one reported)."""
        previous = task.result
        if previous is None or (previous.status == ScsiStatus.GOOD and not previous.sense):
            task.result = result  # a bad Data-Out turns even a finished GOOD into its error
        task.plan = None
        self.drain(task)

    def forget(self, task: Task) -> bool:
        """The task is over: free its entries and staging. True when it was the live task
        of its ITT (not a refusal or a stale duplicate)."""
        live = self.tasks.get(task.itt) is task
        if live:
            del self.tasks[task.itt]
        self.held_bytes -= task.held_bytes
        task.held_bytes = 0
        for tag in live_tags(task):
            self.release(task, tag)
        return live

    def clear(self) -> None:
        """Connection teardown: every entry freed, every task gone."""
        self.table.clear()
        self.tasks.clear()
        self.waiting.clear()
        self.held_bytes = self.r2t_entries = 0
        self.entry = None


def live_tags(task: Task) -> list[int]:
    """The table tags a task still holds: its open R2T bursts and its unsolicited entry."""
    tags = list(task.outstanding)
    if task.unsol_tag is not None:
        tags.append(task.unsol_tag)
    return tags
