"""What the initiator raises: each exception carries what the target said on the wire.

- :class:`ScsiCommandError`: a SCSI status other than GOOD (SAM-5), with the sense key and
  ASC/ASCQ of its sense data (SPC-4 §4.5), or an iSCSI response other than "Command
  Completed at Target" (RFC 7143 §11.4.3).
- :class:`LoginFailed`: the login's Status-Class/Status-Detail (RFC 7143 §11.13.5),
  re-exported from :mod:`pyiscsi.proto.errors`.
- :class:`RejectError`: the target rejected one of our PDUs (RFC 7143 §11.17).
- :class:`ConnectionClosed`: the connection ended with the task still in flight.
"""

from __future__ import annotations

from ..proto.errors import LocalProtocolError, LoginFailed, ProtocolError, RemoteProtocolError
from ..proto.wire import RejectReason, ScsiStatus

__all__ = [
    "ConnectionClosed",
    "InitiatorError",
    "LocalProtocolError",
    "LoginFailed",
    "ProtocolError",
    "RejectError",
    "RemoteProtocolError",
    "ScsiCommandError",
    "Sense",
    "parse_sense",
]

SENSE_KEYS = {
    0x0: "NO SENSE", 0x1: "RECOVERED ERROR", 0x2: "NOT READY", 0x3: "MEDIUM ERROR",
    0x4: "HARDWARE ERROR", 0x5: "ILLEGAL REQUEST", 0x6: "UNIT ATTENTION",
    0x7: "DATA PROTECT", 0x8: "BLANK CHECK", 0x9: "VENDOR SPECIFIC", 0xA: "COPY ABORTED",
    0xB: "ABORTED COMMAND", 0xD: "VOLUME OVERFLOW", 0xE: "MISCOMPARE", 0xF: "COMPLETED",
}
"""Sense key names, SPC-4 §4.5.6 table 27."""

ASC_NAMES = {
    (0x04, 0x00): "LOGICAL UNIT NOT READY",
    (0x0C, 0x00): "WRITE ERROR",
    (0x11, 0x00): "UNRECOVERED READ ERROR",
    (0x1A, 0x00): "PARAMETER LIST LENGTH ERROR",
    (0x1D, 0x00): "MISCOMPARE DURING VERIFY OPERATION",
    (0x20, 0x00): "INVALID COMMAND OPERATION CODE",
    (0x21, 0x00): "LOGICAL BLOCK ADDRESS OUT OF RANGE",
    (0x24, 0x00): "INVALID FIELD IN CDB",
    (0x25, 0x00): "LOGICAL UNIT NOT SUPPORTED",
    (0x26, 0x00): "INVALID FIELD IN PARAMETER LIST",
    (0x27, 0x00): "WRITE PROTECTED",
    (0x29, 0x00): "POWER ON, RESET, OR BUS DEVICE RESET OCCURRED",
    (0x2A, 0x01): "MODE PARAMETERS CHANGED",
    (0x3A, 0x00): "MEDIUM NOT PRESENT",
    (0x3F, 0x0E): "REPORTED LUNS DATA HAS CHANGED",
    (0x44, 0x00): "INTERNAL TARGET FAILURE",
}
"""The ASC/ASCQ pairs we name in messages (SPC-4 §4.5.6 table 28); others print as hex."""


class InitiatorError(Exception):
    """Base of the errors this package raises for a failed command or connection."""


class Sense:
    """Decoded sense data: fixed (70h/71h) or descriptor (72h/73h) format, SPC-4 §4.5."""

    __slots__ = ("asc", "ascq", "key", "raw")

    def __init__(self, key: int, asc: int, ascq: int, raw: bytes = b"") -> None:
        self.key = key
        self.asc = asc
        self.ascq = ascq
        self.raw = raw

    def describe(self) -> str:
        key = SENSE_KEYS.get(self.key, f"sense key 0x{self.key:x}")
        name = ASC_NAMES.get((self.asc, self.ascq), "")
        text = f"{key}, ASC/ASCQ 0x{self.asc:02x}/0x{self.ascq:02x}"
        return f"{text} ({name})" if name else text

    def __repr__(self) -> str:
        return f"Sense({self.describe()})"


def parse_sense(raw: bytes) -> Sense | None:
    """Sense key and ASC/ASCQ of fixed or descriptor format sense data (SPC-4 §4.5.2, §4.5.3)."""
    if len(raw) < 2:
        return None
    code = raw[0] & 0x7F
    if code in (0x70, 0x71):
        key = raw[2] & 0x0F if len(raw) > 2 else 0
        asc = raw[12] if len(raw) > 12 else 0
        ascq = raw[13] if len(raw) > 13 else 0
    elif code in (0x72, 0x73):
        key = raw[1] & 0x0F
        asc = raw[2] if len(raw) > 2 else 0
        ascq = raw[3] if len(raw) > 3 else 0
    else:
        return None
    return Sense(key, asc, ascq, bytes(raw))


def _status_name(status: int) -> str:
    try:
        return ScsiStatus(status).name.replace("_", " ")
    except ValueError:
        return f"status 0x{status:02x}"


class ScsiCommandError(InitiatorError):
    """A SCSI command ended with a status other than GOOD, or the target failed it."""

    def __init__(self, status: int, sense: Sense | None = None, *, response: int = 0,
                 command: str = "") -> None:
        self.status = status
        self.sense = sense
        self.response = response
        self.command = command
        if response:
            text = f"target failure (iSCSI response 0x{response:02x})"
        else:
            text = _status_name(status)
            if sense is not None:
                text += f", {sense.describe()}"
        super().__init__(f"{command}: {text}" if command else text)

    @property
    def sense_key(self) -> int | None:
        return self.sense.key if self.sense is not None else None

    @property
    def asc(self) -> int | None:
        return self.sense.asc if self.sense is not None else None

    @property
    def ascq(self) -> int | None:
        return self.sense.ascq if self.sense is not None else None


class RejectError(InitiatorError):
    """The target answered one of our PDUs with a Reject (RFC 7143 §11.17.1)."""

    def __init__(self, reason: int, message: str = "") -> None:
        self.reason = reason
        try:
            name = RejectReason(reason).name
        except ValueError:
            name = "unknown"
        super().__init__(message or f"rejected by the target: reason 0x{reason:02x} ({name})")


class ConnectionClosed(InitiatorError, ConnectionError):
    """The connection ended (peer closed, protocol error, logout) with the task in flight."""
