"""Running the SCSI layer's answers to the end in unit tests: store work is performed inline
(as the engine does for a synchronous store, or the store runner does on a worker), then its
continuation; errors become CHECK CONDITION exactly as in the engine."""

from __future__ import annotations

from pyiscsi.scsi import dispatch
from pyiscsi.scsi.lun import LogicalUnit
from pyiscsi.scsi.task import DataOutPlan, Outcome, ScsiRequest, ScsiResult, StoreWork
from pyiscsi.target.storework import failed, then


def settle(outcome: Outcome) -> ScsiResult | DataOutPlan:
    """Perform store work until a result or a plan comes out (background work too)."""
    while isinstance(outcome, StoreWork):
        work = outcome
        try:
            for op in work.ops:
                work.store.perform(op)
        except Exception as exc:
            return failed(work, exc)
        outcome = then(work)
    if isinstance(outcome, ScsiResult) and outcome.background is not None:
        background, outcome.background = outcome.background, None
        settle(background)
    return outcome


def execute(lu: LogicalUnit, request: ScsiRequest) -> ScsiResult | DataOutPlan:
    """:func:`pyiscsi.scsi.dispatch.execute`, with its store work run."""
    return settle(dispatch.execute(lu, request))


def complete(plan: DataOutPlan, received: int) -> ScsiResult:
    """A plan's completion, with its store work run."""
    result = settle(plan.complete(received))
    assert isinstance(result, ScsiResult)
    return result
