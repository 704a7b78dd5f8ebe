"""Task management functions (RFC 7143 §11.5-11.6, SAM-5 §7) as a table.

Each function maps to a handler that acts through the session and target objects (a reset
reaches every session of the target through :meth:`Session.abort_tasks`), never through
another connection's private state. ErrorRecoveryLevel is 0: TASK REASSIGN is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..proto import pdu as P
from ..proto.serial import sn_le, sn_lt
from ..proto.wire import TmfFunction, TmfResponse
from ..scsi.task import lun_from_field
from ..scsi.unit_attention import RESET_ASC, ResetKind

if TYPE_CHECKING:
    from .connection import TargetConnection
    from .task import Task

Handler = Callable[["TargetConnection", P.TaskMgmtRequest, "list[Task]"], TmfResponse]
"""``handler(conn, pdu, fence)``: aborted tasks whose store work is still in flight go in
``fence``; the response waits for them."""


def abort_task(conn: TargetConnection, pdu: P.TaskMgmtRequest, fence: list[Task]) -> TmfResponse:
    """ABORT TASK (§11.5.1): the referenced task ends without a response; one not yet
    received counts as aborted (§11.6.1 b)."""
    task = conn.tasks.get(pdu.referenced_tag)
    if task is not None:
        conn.abort(task, fence)
        return TmfResponse.FUNCTION_COMPLETE
    return (TmfResponse.FUNCTION_COMPLETE if _not_yet_received(conn, pdu)
            else TmfResponse.TASK_DOES_NOT_EXIST)


def abort_task_set(conn: TargetConnection, pdu: P.TaskMgmtRequest,
                   fence: list[Task]) -> TmfResponse:
    """ABORT TASK SET / CLEAR TASK SET: this I_T nexus's tasks on the LU end."""
    lun = lun_from_field(pdu.lun)
    if conn.target is None or lun not in conn.target.luns:
        return TmfResponse.LUN_DOES_NOT_EXIST
    conn.abort_tasks({lun}, fence)
    return TmfResponse.FUNCTION_COMPLETE


def reset_handler(kind: ResetKind) -> Handler:
    """LOGICAL UNIT RESET (one LU) or TARGET WARM/COLD RESET (all LUs): the tasks of every
    session on them end, their state resets, every I_T nexus gets a unit attention (SAM-5
    §6.3-6.7); a cold reset also ends every session of the target."""

    def reset(conn: TargetConnection, pdu: P.TaskMgmtRequest, fence: list[Task]) -> TmfResponse:
        target = conn.target
        lun = lun_from_field(pdu.lun)
        if target is None or (kind is ResetKind.LOGICAL_UNIT and lun not in target.luns):
            return TmfResponse.LUN_DOES_NOT_EXIST
        luns = {lun} if kind is ResetKind.LOGICAL_UNIT else set(target.luns)
        for session in conn.catalog.sessions_of(target):
            session.abort_tasks(luns, fence)
            if kind is ResetKind.TARGET_COLD:
                session.drop(keep=conn)
        for n in luns:
            lu = target.luns[n]
            lu.reset(kind)
            lu.attentions.establish(*RESET_ASC[kind])
        if kind is ResetKind.TARGET_COLD:
            conn.close_after_send = True
        return TmfResponse.FUNCTION_COMPLETE

    return reset


def task_reassign(conn: TargetConnection, pdu: P.TaskMgmtRequest,
                  fence: list[Task]) -> TmfResponse:
    return TmfResponse.TASK_REASSIGNMENT_NOT_SUPPORTED  # ErrorRecoveryLevel 0 (§11.6.1)


FUNCTIONS: dict[int, Handler] = {
    TmfFunction.ABORT_TASK: abort_task,
    TmfFunction.ABORT_TASK_SET: abort_task_set,
    TmfFunction.CLEAR_TASK_SET: abort_task_set,
    TmfFunction.LOGICAL_UNIT_RESET: reset_handler(ResetKind.LOGICAL_UNIT),
    TmfFunction.TARGET_WARM_RESET: reset_handler(ResetKind.TARGET_WARM),
    TmfFunction.TARGET_COLD_RESET: reset_handler(ResetKind.TARGET_COLD),
    TmfFunction.TASK_REASSIGN: task_reassign,
}
"""The functions the target performs; any other is 'Task management function not
supported' (RFC 7143 §11.6.1)."""


def perform(conn: TargetConnection, pdu: P.TaskMgmtRequest, fence: list[Task]) -> TmfResponse:
    """Carry out one task management request and return its response code; aborted tasks
    whose store work is still in flight are added to ``fence`` (SAM-5 §7.2: the function
    is complete once they have ended, so no write of theirs lands after the response)."""
    handler = FUNCTIONS.get(pdu.function)
    return handler(conn, pdu, fence) if handler is not None else TmfResponse.NOT_SUPPORTED


def _not_yet_received(conn: TargetConnection, pdu: P.TaskMgmtRequest) -> bool:
    """RFC 7143 §11.6.1 b: an unknown task whose RefCmdSN is in the window (not yet
    received) and before the TMF's CmdSN counts as aborted: 'Function complete'. A task
    that already completed (RefCmdSN below ExpCmdSN) does not exist."""
    session = conn.session
    assert session is not None
    return (sn_le(session.expcmdsn, pdu.refcmdsn) and sn_lt(pdu.refcmdsn, pdu.cmdsn)
            and sn_le(pdu.refcmdsn, session.maxcmdsn))
