"""The initiator role: log in, read into and write from caller buffers (RFC 7143).

The sans-IO engine is :mod:`.connection`; :mod:`.client` runs it on asyncio.
"""

from __future__ import annotations

from .client import Lun, Session, connect, discover
from .connection import InitiatorConnection, ScsiOutcome
from .errors import (
    ConnectionClosed,
    InitiatorError,
    LoginFailed,
    RejectError,
    ScsiCommandError,
)
from .scsi import Capacity, Inquiry
from .url import IscsiUrl, parse_url

__all__ = [
    "Capacity",
    "ConnectionClosed",
    "InitiatorConnection",
    "InitiatorError",
    "Inquiry",
    "IscsiUrl",
    "LoginFailed",
    "Lun",
    "RejectError",
    "ScsiCommandError",
    "ScsiOutcome",
    "Session",
    "connect",
    "discover",
    "parse_url",
]
