"""Task attributes in one session's task set of each LU (SAM-5 §8.6; the LU reports one
task set per I_T nexus, so one session's ORDERED task never holds another's).

SIMPLE tasks run as they arrive. An ORDERED task runs once every task that arrived before
it has ended, and the tasks after it wait until it has ended. A HEAD OF QUEUE task runs at
once. (With every store operation completing at once this is all trivially true; it
matters once completions arrive out of order.)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from .task import Task

SIMPLE, ORDERED, HEAD_OF_QUEUE = 1, 2, 3
"""The ATTR field of a SCSI Command (RFC 7143 §11.3.1; 0 = untagged, treated as SIMPLE)."""


class TaskSets:
    """Running counts and ORDERED barriers per LU for one session."""

    __slots__ = ("_ordered", "_releasing", "_resume", "_run", "active", "barriers")

    def __init__(self, run: Callable[[Task], None], resume: Callable[[Task], None]) -> None:
        self._run = run
        """Runs a task as it starts (the caller moves it forward)."""
        self._resume = resume
        """Runs a task that waited, and moves it forward."""
        self.active: dict[int, int] = {}
        """Tasks running per LU (the engine counts the common case inline)."""
        self.barriers: dict[int, deque[Task]] = {}
        """Tasks waiting on an LU where an ORDERED task waits or runs (first in line)."""
        self._ordered: set[int] = set()
        """LUs where an ORDERED task runs."""
        self._releasing: set[int] = set()

    def start(self, task: Task) -> None:
        """The task's CmdSN was reached: run it now, or queue it behind an ORDERED task."""
        lun = task.lun
        attr = task.cmd.attr
        barrier = self.barriers.get(lun) if self.barriers else None
        if attr == HEAD_OF_QUEUE or (barrier is None and attr != ORDERED):
            active = self.active
            active[lun] = active.get(lun, 0) + 1  # the common case, inline
            task.in_task_set = True
            self._run(task)
            return
        if barrier is None:
            barrier = self.barriers[lun] = deque()
        barrier.append(task)
        self._release(lun, self._run)

    def ended(self, task: Task) -> None:
        """A task that ran has ended: what waited behind it may run."""
        if not task.in_task_set:
            return
        task.in_task_set = False
        lun = task.lun
        self.active[lun] -= 1
        if task.cmd.attr == ORDERED:
            self._ordered.discard(lun)
        if lun in self.barriers:
            self._release(lun, self._resume)

    def forget(self, task: Task) -> None:
        """A task that never ran ends (aborted while it waited)."""
        barrier = self.barriers.get(task.lun)
        if barrier is not None and task in barrier:
            barrier.remove(task)
            self._release(task.lun, self._resume)

    def _admit(self, task: Task, run: Callable[[Task], None] | None = None) -> None:
        self.active[task.lun] = self.active.get(task.lun, 0) + 1
        task.in_task_set = True
        if task.cmd.attr == ORDERED:
            self._ordered.add(task.lun)
        (run or self._run)(task)

    def _release(self, lun: int, run: Callable[[Task], None]) -> None:
        """Run the waiting tasks that may run: none while an ORDERED task runs; an ORDERED
        one only once nothing runs. Tasks that end at once (memory) are counted out as the
        loop goes, so it never stalls and never re-enters itself."""
        if lun in self._releasing:
            return
        self._releasing.add(lun)
        try:
            barrier = self.barriers[lun]
            while barrier and lun not in self._ordered:
                if barrier[0].cmd.attr == ORDERED and self.active.get(lun):
                    break
                self._admit(barrier.popleft(), run)
            if not barrier and lun not in self._ordered:
                del self.barriers[lun]
        finally:
            self._releasing.discard(lun)
