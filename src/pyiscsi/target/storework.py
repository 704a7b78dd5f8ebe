"""Store work of one connection's commands: run at once, or hand it out and wait, sans-IO.

A SCSI command may answer with :class:`~pyiscsi.scsi.task.StoreWork`. When the store says
every operation is synchronous (memory that is present), it runs here and now: no thread
hop on the fast path. Otherwise the work becomes a :class:`StoreRequest` in an outbox that
the transport takes (like the PDUs it sends), runs elsewhere, and answers through
:meth:`StoreWorks.completed`, the way time is fed in. Nothing here waits or touches a thread.

While modifying work is in flight its byte ranges are busy on the logical unit
(:class:`~pyiscsi.scsi.busy.BusyRanges`): later commands that overlap them wait.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

# imported at run time, not under TYPE_CHECKING: a compiled (mypyc) dataclass resolves its
# fields' annotations when the class is created
from ..backstore.base import BackingStore, StoreError
from ..proto.wire import ScsiStatus
from ..scsi.sense import Asc, ScsiError, SenseKey, fixed_sense, store_error_result
from ..scsi.task import DataOutPlan, Outcome, ScsiResult, StoreWork

if TYPE_CHECKING:
    from ..backstore.ops import StoreOp
    from ..scsi.busy import BusyRanges

_setattr = object.__setattr__
"""How a frozen dataclass's own ``__init__`` sets its fields (as the generated one does)."""

INTERNAL_FAILURE = ScsiResult(ScsiStatus.CHECK_CONDITION,
                              fixed_sense(SenseKey.HARDWARE_ERROR,
                                          Asc.INTERNAL_TARGET_FAILURE.asc,
                                          Asc.INTERNAL_TARGET_FAILURE.ascq))
"""The SCSI layer or a store raised something unexpected: the command ends, nothing else."""


@dataclass(frozen=True, slots=True)
class StoreRequest:
    """Operations for the transport to run in order, off the loop; it answers ``token``."""

    token: int
    store: BackingStore
    ops: tuple[StoreOp, ...]
    nbytes: int
    """Payload bytes the operations move (for the in-flight bound)."""

    def __init__(self, token: int, store: BackingStore, ops: tuple[StoreOp, ...],
                 nbytes: int) -> None:
        """The fields above, in their order (``dataclass`` keeps an ``__init__`` the class
        defines; the generated one stays interpreted under mypyc, and every command that
        waits for its store builds one: ``tests/dataclass_init.py``)."""
        _setattr(self, "token", token)
        _setattr(self, "store", store)
        _setattr(self, "ops", ops)
        _setattr(self, "nbytes", nbytes)

    def run(self) -> BaseException | None:
        """Perform the operations in order on the calling thread (blocking); what the first
        failing one raised, or None."""
        try:
            for op in self.ops:
                self.store.perform(op)
        except Exception as exc:
            return exc
        return None


Settled = ScsiResult | DataOutPlan


class StoreWorks:
    """The store work one connection has in flight."""

    def __init__(self) -> None:
        self.requests: list[StoreRequest] = []
        """The outbox the transport takes with :meth:`take`."""
        self._waiting: dict[int, tuple[StoreWork, Callable[[Outcome], None], BusyRanges | None]]
        self._waiting = {}
        self._next = 0
        self.last_fenced = True
        """Whether the work last handed out fences its task: an abort waits for it. Work
        gated by the LU's own state (SANITIZE) goes on by design after its task ends."""

    def __len__(self) -> int:
        return len(self._waiting)

    def take(self) -> list[StoreRequest]:
        requests, self.requests = self.requests, []
        return requests

    def settle(self, outcome: Outcome, resume: Callable[[Outcome], None],
               busy: BusyRanges | None) -> Settled | None:
        """Run store work that can run now, until a result or a plan comes out; None when
        the rest waits for a completion (``resume`` then gets what comes next)."""
        while isinstance(outcome, StoreWork):
            work = outcome
            if not all(work.store.synchronous(op) for op in work.ops):
                self._submit(work, resume, busy)
                return None
            try:
                for op in work.ops:
                    work.store.perform(op)
            except Exception as exc:  # StoreError, or a bug: the command ends
                outcome = failed(work, exc)
                break
            outcome = then(work)
        if isinstance(outcome, ScsiResult) and outcome.background is not None:
            background, outcome.background = outcome.background, None
            self.settle(background, _ignore, None)  # the LU's own state gates commands
        return outcome

    def _submit(self, work: StoreWork, resume: Callable[[Outcome], None],
                busy: BusyRanges | None) -> None:
        self._next += 1
        token = self._next
        self.last_fenced = not work.gated
        self._waiting[token] = (work, resume, busy)
        if busy is not None:
            busy.add(token, work.ranges)
        nbytes = sum(len(op.buffer) for op in work.ops if op.buffer is not None)
        self.requests.append(StoreRequest(token, work.store, work.ops, nbytes))

    def completed(self, token: int, error: BaseException | None) -> None:
        """The transport ran request ``token`` (``error``: what its operations raised)."""
        entry = self._waiting.pop(token, None)
        if entry is None:
            return
        work, resume, busy = entry
        try:
            resume(failed(work, error) if error is not None else then(work))
        finally:
            if busy is not None:
                busy.remove(token)  # then the commands that waited for these bytes

    def clear(self) -> None:
        """Connection teardown: completions still to come are ignored; their ranges stay
        busy until then (the work is fenced, its buffers still referenced by the request)."""
        self.requests.clear()
        for token, (work, _resume, busy) in list(self._waiting.items()):
            self._waiting[token] = (work, _ignore, busy)


def then(work: StoreWork) -> Outcome:
    """What comes after the work, with the SCSI layer's errors as CHECK CONDITION."""
    try:
        return work.then()
    except ScsiError as err:
        return err.result()
    except StoreError as store_err:  # its own name: one name is one type when compiled
        return store_error_result(store_err)


def failed(work: StoreWork, error: BaseException) -> ScsiResult:
    """The answer of a command whose store work failed (SPC-4 §4.5.3)."""
    if work.on_error is not None and isinstance(error, Exception):
        special = work.on_error(error)
        if special is not None:
            return special
    if isinstance(error, StoreError):
        return store_error_result(error)
    if isinstance(error, ScsiError):
        return error.result()
    return INTERNAL_FAILURE


def _ignore(outcome: Outcome) -> None:
    """Resume of work nobody waits for (background work, a closed connection)."""
