"""Text requests in full feature phase and SendTargets (RFC 7143 §11.10-11.11, §13.3).

A Text request may span PDUs with the C bit; the pieces are reassembled up to a bound. The
only key the target answers is SendTargets; every other key is NotUnderstood. SendTargets
shows an initiator only the targets it may log in to through the portal it asked on, each
with its own portals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..proto import pdu as P
from ..proto.discovery import format_send_targets
from ..proto.errors import PduRejected
from ..proto.keys import encode_text, parse_text
from ..proto.wire import RejectReason

if TYPE_CHECKING:
    from .catalog import Catalog, Portal, Target

MAX_TEXT = 65536
"""Bound on a Text request reassembled from C-bit continuations (bounded memory)."""


@dataclass(frozen=True, slots=True)
class TextAnswer:
    """The data of the Text Response to send, and whether it is the final one (F bit)."""

    body: bytes
    final: bool = True


class TextExchange:
    """The Text requests of one connection: continuation, parsing, answers."""

    def __init__(self, catalog: Catalog, local: Portal | None = None) -> None:
        self.catalog = catalog
        self.local = local
        """The portal the connection came in through (None: unknown, every one)."""
        self._pieces = b""

    def receive(self, pdu: P.TextRequest, data: bytes, *, initiator: str,
                target: Target | None, discovery: bool) -> TextAnswer:
        """Answer one Text request; :class:`PduRejected` for one too long or unparsable."""
        if pdu.cont:
            if len(self._pieces) + len(data) > MAX_TEXT:
                self._pieces = b""
                raise PduRejected(RejectReason.PROTOCOL_ERROR, "text too long", pdu.encode())
            self._pieces += data
            return TextAnswer(b"", final=False)
        data, self._pieces = self._pieces + data, b""
        try:
            pairs = parse_text(data)
        except Exception as exc:
            raise PduRejected(RejectReason.PROTOCOL_ERROR, str(exc), pdu.encode()) from None
        answer: list[tuple[str, str]] = []
        for key, value in pairs:
            if key == "SendTargets":
                return TextAnswer(self.send_targets(value, initiator, target, discovery))
            answer.append((key, "NotUnderstood"))
        return TextAnswer(encode_text(answer))

    def send_targets(self, value: str, initiator: str, target: Target | None,
                     discovery: bool) -> bytes:
        """SendTargets=All lists every target this initiator may see through this portal; in
        a normal session, only its own target; ``SendTargets=<name>`` that one if allowed
        (RFC 7143 §13.3). Each target comes with its own portals."""
        catalog = self.catalog
        if value == "All":
            if not discovery:
                shown = [target] if target is not None else []
            else:
                shown = catalog.visible(initiator, self.local)
        elif value == "" and target is not None:
            shown = [target]
        else:
            t = catalog.target(value)
            shown = [t] if t is not None and t in catalog.visible(initiator, self.local) else []
        return format_send_targets([(t.name, catalog.portal_addresses(t, self.local))
                                    for t in shown])
