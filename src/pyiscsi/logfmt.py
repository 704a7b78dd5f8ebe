"""Log lines that name what they are about, as text or as JSON (``--log-format json``).

:class:`ConnectionLog` wraps a logger for one connection: every line carries the target,
the session (TSIH) and the connection number known at the time it is written, as a
``target=... tsih=... conn=...:`` prefix of the text and as attributes of the record
(``target``, ``tsih``, ``conn``, ``peer``). :class:`JsonFormatter` writes one JSON object per
line with those attributes as fields and the message without the prefix.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

CONTEXT_FIELDS = ("target", "tsih", "conn", "peer")


class ConnectionLog(logging.LoggerAdapter[logging.Logger]):
    """Names the connection's target, session and number on every line (read from the
    connection when a line is written: a line written after login names the session)."""

    def __init__(self, logger: logging.Logger, connection: object) -> None:
        super().__init__(logger, None)
        self.connection = connection

    def context(self) -> dict[str, Any]:
        conn = self.connection
        session = getattr(conn, "session", None)
        target = getattr(conn, "target", None)
        return {"target": getattr(target, "name", None),
                "tsih": getattr(session, "tsih", None),
                "conn": getattr(conn, "number", None),
                "peer": getattr(conn, "peer", None)}

    def process(self, msg: object, kwargs: Any) -> tuple[object, Any]:
        fields = self.context()
        prefix = " ".join(f"{key}={fields[key]}" for key in ("target", "tsih", "conn")
                          if fields[key] is not None) + ": "
        kwargs["extra"] = {**fields, "log_prefix": prefix, **(kwargs.get("extra") or {})}
        return f"{prefix}{msg}", kwargs


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, the
    connection's context fields when the line has them, and the traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        prefix = getattr(record, "log_prefix", None)
        if isinstance(prefix, str) and message.startswith(prefix):
            message = message[len(prefix):]
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": message,
        }
        for key in CONTEXT_FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str)


def configure(level: str, fmt: str) -> None:
    """Root logging to stderr at ``level``, as ``text`` or ``json`` lines."""
    import sys

    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler])
