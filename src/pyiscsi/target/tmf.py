"""Task management functions (RFC 7143 §11.5-11.6, SAM-5 §7) as a table.

Each function maps to a handler that acts through the session and target objects (a reset
reaches every session of the target through :meth:`Session.abort_tasks`), never through
another connection's private state. ErrorRecoveryLevel is 0: TASK REASSIGN is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..proto import pdu as P
from ..proto.serial import sn_le, sn_lt
from ..proto.wire import TmfFunction, TmfResponse
from ..scsi.lu_events import Delivery, LuEvent, TaskSetClearedEvent
from ..scsi.sense import Asc
from ..scsi.task import lun_from_field
from ..scsi.unit_attention import RESET_ASC, ResetKind

if TYPE_CHECKING:
    from ..scsi.lun import LogicalUnit
    from .catalog import Catalog, Target
    from .connection import TargetConnection
    from .task import Task


@dataclass(slots=True)
class Fence:
    """What a task management response waits for (SAM-5 §7.2): aborted tasks whose store
    work is still in flight, and unit attentions on their way to the other gateways of a
    shared LU (a LOGICAL UNIT RESET is complete once every path will report it)."""

    tasks: list[Task] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)

    def pending(self) -> list[Task | Delivery]:
        return [*self.tasks, *(d for d in self.deliveries if not d.done)]


def when_ended(items: Sequence[Task | Delivery], then: Callable[[], None]) -> None:
    """Call ``then()`` once every one of ``items`` has ended (a task whose store work was in
    flight, a delivery to the other gateways): what a task management response, or the
    acknowledgement of another gateway's reset, waits for. At once when there is none."""
    waiting = {id(item) for item in items}

    def ended(item: object) -> None:
        waiting.discard(id(item))
        if not waiting:
            then()

    if not waiting:
        then()
    for item in items:
        if item.waiters is None:
            item.waiters = []
        item.waiters.append(ended)


Handler = Callable[["TargetConnection", P.TaskMgmtRequest, Fence], TmfResponse]
"""``handler(conn, pdu, fence)``: what the response must wait for goes in ``fence``."""


def abort_task(conn: TargetConnection, pdu: P.TaskMgmtRequest, fence: Fence) -> TmfResponse:
    """ABORT TASK (RFC 7143 §11.5.1): the referenced task ends without a response.

    A task that is not with the target is found by its RefCmdSN (§11.5.1). One not yet
    received (RefCmdSN in the window, before the TMF's own CmdSN; §11.6.1 b) counts as
    aborted: 'Function complete', and its CmdSN is considered received
    (:meth:`TargetConnection.consider_received`), so the commands after it are not held
    forever behind a command the initiator will never send again (one discarded for a
    data digest error, §7.8, say); a refused command held behind a gap is aborted there
    too, its CHECK CONDITION never sent. Otherwise: 'Task does not exist' (§11.6.1 c)."""
    task = conn.tasks.get(pdu.referenced_tag)
    if task is not None:
        conn.abort(task, fence.tasks)
        return TmfResponse.FUNCTION_COMPLETE
    if _not_yet_received(conn, pdu):
        conn.consider_received(pdu.refcmdsn, pdu.referenced_tag)
        return TmfResponse.FUNCTION_COMPLETE
    return TmfResponse.TASK_DOES_NOT_EXIST


def abort_task_set(conn: TargetConnection, pdu: P.TaskMgmtRequest,
                   fence: Fence) -> TmfResponse:
    """ABORT TASK SET (SAM-5 §7.3): the commands of this I_T nexus on the LU end, with no
    response and no unit attention; other I_T nexuses' commands are untouched."""
    lun = lun_from_field(pdu.lun)
    if conn.target is None or lun not in conn.target.luns:
        return TmfResponse.LUN_DOES_NOT_EXIST
    conn.abort_tasks({lun}, fence.tasks)
    return TmfResponse.FUNCTION_COMPLETE


CLEARED_BY_ANOTHER_INITIATOR = Asc.COMMANDS_CLEARED_BY_ANOTHER_INITIATOR
"""The unit attention a CLEAR TASK SET leaves with the other I_T nexuses it cleared (2Fh/00h)."""


def clear_task_set(conn: TargetConnection, pdu: P.TaskMgmtRequest,
                   fence: Fence) -> TmfResponse:
    """CLEAR TASK SET (SAM-5 §7.5): every command in the LU's task set ends, whichever I_T
    nexus sent it. The control mode page reports TST=000b, one task set per LU shared by
    all I_T nexuses (SPC-4 §7.5.8), so that is the commands of every session of the target
    on the LU, held ones and refusals held behind a CmdSN gap included
    (:meth:`Session.abort_tasks`, as LOGICAL UNIT RESET reaches them), not only this
    nexus's as ABORT TASK SET. It also reports TAS=0: aborted commands end with no response
    at all, and each other I_T nexus that had commands aborted gets a unit attention,
    COMMANDS CLEARED BY ANOTHER INITIATOR (SAM-5 §5.6, §7.5; SPC-4 §7.5.8 TAS). An I_T
    nexus with nothing in the task set, and the one that sent the function, get none.
    The response waits for the aborted tasks' store work in flight (``fence``).

    The other gateways of a shared LU clear theirs alike (:class:`TaskSetClearedEvent`,
    :func:`after_another_gateway`), and the response waits until they have."""
    target = conn.target
    lun = lun_from_field(pdu.lun)
    if target is None or lun not in target.luns:
        return TmfResponse.LUN_DOES_NOT_EXIST
    lu = target.luns[lun]
    _clear_task_set(conn.catalog, target, lu, fence.tasks, keep=conn.session)
    delivery = lu.publish(TaskSetClearedEvent())
    if delivery is not None:
        fence.deliveries.append(delivery)
    return TmfResponse.FUNCTION_COMPLETE


def _clear_task_set(catalog: Catalog, target: Target, lu: LogicalUnit, fence: list[Task],
                    keep: object = None) -> int:
    """Abort every session's tasks on ``lu``; COMMANDS CLEARED BY ANOTHER INITIATOR to each
    I_T nexus that had any, but ``keep`` (the session that asked). Answers how many
    commands it aborted."""
    counts = [(session, session.abort_tasks({lu.number}, fence))
              for session in catalog.sessions_of(target)]
    cleared = [session.nexus for session, n in counts if n and session is not keep]
    if cleared:
        ua = CLEARED_BY_ANOTHER_INITIATOR
        lu.attentions.establish(ua.asc, ua.ascq, only=cleared)
    return sum(n for _, n in counts)


def reset_handler(kind: ResetKind) -> Handler:
    """LOGICAL UNIT RESET (one LU) or TARGET WARM/COLD RESET (all LUs): the tasks of every
    session on them end, their state resets, every I_T nexus gets a unit attention (SAM-5
    §6.3-6.7), those through other gateways of a shared LU too (the response waits until
    they have it); a cold reset also ends every session of the target."""

    def reset(conn: TargetConnection, pdu: P.TaskMgmtRequest, fence: Fence) -> TmfResponse:
        target = conn.target
        lun = lun_from_field(pdu.lun)
        if target is None or (kind is ResetKind.LOGICAL_UNIT and lun not in target.luns):
            return TmfResponse.LUN_DOES_NOT_EXIST
        luns = {lun} if kind is ResetKind.LOGICAL_UNIT else set(target.luns)
        for session in conn.catalog.sessions_of(target):
            session.abort_tasks(luns, fence.tasks)
            if kind is ResetKind.TARGET_COLD:
                session.drop(keep=conn)
        for n in luns:
            lu = target.luns[n]
            lu.reset(kind)
            delivery = lu.attention_everywhere(*RESET_ASC[kind])
            if delivery is not None:
                fence.deliveries.append(delivery)
        if kind is ResetKind.TARGET_COLD:
            conn.close_after_send = True
        return TmfResponse.FUNCTION_COMPLETE

    return reset


RESET_OF_ASC = {asc: kind for kind, asc in RESET_ASC.items()}
"""The reset each reset unit attention reports (29h/01h-03h)."""


def after_another_gateway(catalog: Catalog, lu: LogicalUnit, event: LuEvent) -> list[Task]:
    """What another gateway's event on a shared LU does to this gateway's tasks (after
    :meth:`LogicalUnit.receive` applied it).

    A reset (its unit attention, 29h/01h-03h): a LOGICAL UNIT RESET aborts the tasks of
    every I_T nexus of the LU (SAM-5 §6.3; a target reset every LU's, §6.4-6.5), those that
    came in through this gateway too: they end here as that gateway's own did, with no
    response (TAS=0), and the LU's state resets. (This gateway's sessions stay: a cold reset
    ends the sessions of the target port it came through.) A cleared task set: the same
    abort, with COMMANDS CLEARED BY ANOTHER INITIATOR for the nexuses that had commands
    (:func:`clear_task_set`). Other events abort nothing.

    Answers the aborted tasks whose store work is still in flight: the acknowledgement of
    the event waits for them, so the other gateway answers its task management function
    only once no write of theirs can land after it."""
    target = catalog.targets.get(lu.target_name)
    if target is None or target.luns.get(lu.number) is not lu:
        return []
    fence: list[Task] = []
    if isinstance(event, TaskSetClearedEvent):
        aborted = _clear_task_set(catalog, target, lu, fence)
    else:
        kind = RESET_OF_ASC.get((event.asc, event.ascq))
        if kind is None:
            return []
        aborted = sum(session.abort_tasks({lu.number}, fence)
                      for session in catalog.sessions_of(target))
        lu.reset(kind)
    catalog.state.events.remote_aborts += aborted
    return fence


def task_reassign(conn: TargetConnection, pdu: P.TaskMgmtRequest,
                  fence: Fence) -> TmfResponse:
    return TmfResponse.TASK_REASSIGNMENT_NOT_SUPPORTED  # ErrorRecoveryLevel 0 (§11.6.1)


FUNCTIONS: dict[int, Handler] = {
    TmfFunction.ABORT_TASK: abort_task,
    TmfFunction.ABORT_TASK_SET: abort_task_set,
    TmfFunction.CLEAR_TASK_SET: clear_task_set,
    TmfFunction.LOGICAL_UNIT_RESET: reset_handler(ResetKind.LOGICAL_UNIT),
    TmfFunction.TARGET_WARM_RESET: reset_handler(ResetKind.TARGET_WARM),
    TmfFunction.TARGET_COLD_RESET: reset_handler(ResetKind.TARGET_COLD),
    TmfFunction.TASK_REASSIGN: task_reassign,
}
"""The functions the target performs; any other is 'Task management function not
supported' (RFC 7143 §11.6.1)."""


def perform(conn: TargetConnection, pdu: P.TaskMgmtRequest, fence: Fence) -> TmfResponse:
    """Carry out one task management request and return its response code; aborted tasks
    whose store work is still in flight are added to ``fence`` (SAM-5 §7.2: the function
    is complete once they have ended, so no write of theirs lands after the response), and
    so are unit attentions still on their way to other gateways."""
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
