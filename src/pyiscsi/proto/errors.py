"""Exceptions that carry what goes on the wire (h11-style Local vs Remote split)."""

from __future__ import annotations

from .wire import LoginStatus, RejectReason


class ProtocolError(Exception):
    """Base of all protocol errors."""


class LocalProtocolError(ProtocolError):
    """Our caller misused the API (a bug on our side, never the peer's)."""


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol; the connection must be closed (RFC 7143 §7.2)."""


class PduRejected(RemoteProtocolError):
    """A PDU the peer sent is answered with a Reject PDU carrying ``reason`` (RFC 7143 §11.17).

    The connection survives; ``header`` is the offending BHS, echoed in the Reject's data.
    """

    def __init__(self, reason: RejectReason, message: str, header: bytes = b"") -> None:
        super().__init__(message)
        self.reason = reason
        self.header = header


class LoginFailed(ProtocolError):
    """A login ends with a non-zero status class/detail (RFC 7143 §11.13.5)."""

    def __init__(self, status: LoginStatus, message: str = "") -> None:
        super().__init__(message or status.name)
        self.status = status


class DigestError(RemoteProtocolError):
    """A CRC32C header or data digest did not match (RFC 7143 §7.8)."""

    def __init__(self, kind: str, message: str = "") -> None:
        super().__init__(message or f"{kind} digest mismatch")
        self.kind = kind
