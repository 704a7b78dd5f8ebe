"""The target's opcode table as data (RFC 7143 §11, aioquic's frame table as the model).

Each opcode the target accepts has one :class:`OpcodeRule`: the phases in which it is legal,
whether it may carry an AHS, how it is ordered by CmdSN, its header-time route (where its
data segment goes, decided before a payload byte arrives) and its handler once the PDU is
whole. An opcode without a rule, or outside its phases, is refused with ``refusal``.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from ..proto.wire import RejectReason


class Phase(Enum):
    """Connection phases (RFC 7143 §8.1 states collapsed to what the engine needs)."""

    LOGIN = "login"
    FULL_FEATURE = "full-feature"
    CLOSED = "closed"


class Ordering(Enum):
    """How a request is placed in CmdSN order (RFC 7143 §3.2.2.1)."""

    NONE = "none"
    """Not a CmdSN-numbered request (Data-Out, Login, SNACK)."""
    AT_HEADER = "at-header"
    """Ordered when its header arrives: a SCSI Command, whose immediate data needs a
    destination before the payload is received."""
    AT_END = "at-end"
    """Ordered once the whole PDU has arrived (NOP-Out, Text, Task Management, Logout)."""


@dataclass(frozen=True, slots=True)
class OpcodeRule:
    """What the target does with one opcode."""

    # builtins.: a compiled dataclass looks a bare name up in this module's globals only
    phases: builtins.frozenset[Phase]
    handler: Callable[..., None]
    """``handler(engine, pdu, data)`` once the PDU is whole (``data``: a control payload)."""
    ordering: Ordering = Ordering.NONE
    route: Callable[..., Any] | None = None
    """``route(engine, pdu, ahs)`` at header time: a destination, DISCARD, or None."""
    ahs: bool = False
    """Whether TotalAHSLength may be non-zero (only the SCSI Command, §11.3.5)."""
    refusal: RejectReason = RejectReason.PROTOCOL_ERROR
    """The Reject reason when the opcode arrives outside its phases."""


LOGIN_ONLY = frozenset({Phase.LOGIN})
FULL_FEATURE_ONLY = frozenset({Phase.FULL_FEATURE})
NEVER: frozenset[Phase] = frozenset()
