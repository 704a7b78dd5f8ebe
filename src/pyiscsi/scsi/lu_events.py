"""Logical unit events shared by the gateways that export one logical unit (SAM-5 §5.14).

Two ``pyiscsi serve`` processes exporting the same image are two target ports of one SCSI
target device: a unit attention SCSI establishes for *every* I_T nexus of the logical unit
(a LOGICAL UNIT RESET or target reset, SAM-5 §6.3-6.4; CAPACITY DATA HAS CHANGED, SBC-4
§4.10) must also reach the nexuses that came in through the other gateway. This module is
the sans-IO boundary for that:

- events out: :meth:`LogicalUnit.attention_everywhere` establishes the unit attention
  locally and hands a :class:`UnitAttentionEvent` to the LU's :class:`EventLink` (if any),
  which answers a :class:`Delivery` that completes once the other gateways applied it (a
  task management response waits for it, as for fenced store work);
- events in: :meth:`LogicalUnit.receive` applies what another gateway raised, locally only
  (what was received is never published again).

The link is implemented outside (``transport/lu_watch.py``: RADOS watch/notify on an object
of the image); :func:`encode_event` / :func:`decode_event` are its wire format.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from .sense import Asc
from .unit_attention import RESET_ASC

EVENT_FORMAT = 1
"""Version of the notify payload; a payload of another version is refused."""


@dataclass(frozen=True, slots=True)
class UnitAttentionEvent:
    """Establish unit attention ``asc``/``ascq`` on every I_T nexus of the logical unit."""

    asc: int
    ascq: int


@dataclass(frozen=True, slots=True)
class TaskSetClearedEvent:
    """CLEAR TASK SET came through another gateway (SAM-5 §7.5): the LU's task set is one
    for all I_T nexuses (TST=000b), so every gateway aborts its tasks on the LU and gives
    COMMANDS CLEARED BY ANOTHER INITIATOR to each of its nexuses that had any."""


LuEvent = UnitAttentionEvent | TaskSetClearedEvent
"""Every event kind a gateway publishes."""

SHARED_ATTENTIONS: frozenset[tuple[int, int]] = frozenset({
    *RESET_ASC.values(),  # 29h/01h-03h: the logical unit was reset (SAM-5 §6.3, §6.4)
    (Asc.CAPACITY_DATA_HAS_CHANGED.asc, Asc.CAPACITY_DATA_HAS_CHANGED.ascq),  # 2Ah/09h
})
"""Unit attentions that concern the logical unit itself, hence every path to it. Those
about one target's view (REPORTED LUNS DATA HAS CHANGED: a gateway's LUN inventory) or one
nexus (I_T NEXUS LOSS) stay on the gateway that raised them."""


class Delivery:
    """One published event on its way to the other gateways. :meth:`finish` is called once
    (by the link) when every other gateway acknowledged it, or gave up waiting; ``waiters``
    are then told, like a fenced task's (RFC 7143 §11.6: the task management response waits)."""

    __slots__ = ("done", "error", "event", "waiters")

    def __init__(self, event: LuEvent) -> None:
        self.event = event
        self.done = False
        self.error: str | None = None
        """Why delivery failed (watchers that did not acknowledge in time), or None."""
        self.waiters: list[Callable[[Any], None]] | None = None

    def finish(self, error: str | None = None) -> None:
        if self.done:
            return
        self.done = True
        self.error = error
        for waiter in self.waiters or ():
            waiter(self)


class EventLink(Protocol):
    """What carries a logical unit's events to the other gateways exporting it."""

    def publish(self, event: LuEvent) -> Delivery:
        """Send ``event``; the :class:`Delivery` finishes once the others applied it."""
        ...  # pragma: no cover


def describe(event: LuEvent) -> str:
    """``event`` in a log line."""
    if isinstance(event, TaskSetClearedEvent):
        return "CLEAR TASK SET"
    return f"unit attention {event.asc:02X}h/{event.ascq:02X}h"


def encode_event(event: LuEvent, origin: str) -> bytes:
    """The notify payload: ``{"pyiscsi": 1, "origin": ..., "ua": [asc, ascq]}`` or
    ``{..., "clear": true}``; ``origin`` names the publishing gateway, so it can ignore its
    own notifies."""
    body: dict[str, object] = {"pyiscsi": EVENT_FORMAT, "origin": origin}
    if isinstance(event, TaskSetClearedEvent):
        body["clear"] = True
    else:
        body["ua"] = [event.asc, event.ascq]
    return json.dumps(body, separators=(",", ":")).encode()


def decode_event(payload: bytes) -> tuple[str, LuEvent]:
    """``(origin, event)`` of a notify payload; ValueError for anything else (another
    application's notify on the object, another version, a bad field)."""
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not a pyiscsi event: {exc}") from None
    if not isinstance(data, dict) or data.get("pyiscsi") != EVENT_FORMAT:
        raise ValueError("not a pyiscsi event of format 1")
    origin, ua = data.get("origin"), data.get("ua")
    if "clear" in data:
        if not isinstance(origin, str) or ua is not None or data["clear"] is not True:
            raise ValueError(f"bad pyiscsi event {data!r}")
        return origin, TaskSetClearedEvent()
    if (not isinstance(origin, str) or not isinstance(ua, list) or len(ua) != 2
            or not all(type(v) is int and 0 <= v <= 0xFF for v in ua)):
        raise ValueError(f"bad pyiscsi event {data!r}")
    event = UnitAttentionEvent(ua[0], ua[1])
    if (event.asc, event.ascq) not in SHARED_ATTENTIONS:
        raise ValueError(f"unit attention {event.asc:02X}h/{event.ascq:02X}h is not shared")
    return origin, event
