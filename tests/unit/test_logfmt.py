"""Log lines name the target, session and connection; --log-format json is one object a line."""

from __future__ import annotations

import json
import logging

import pytest

from pyiscsi.logfmt import ConnectionLog, JsonFormatter
from pyiscsi.target.connection import TargetConnection

from ..pair import TARGET, Initiator, make_catalog


def test_lines_name_target_session_and_connection(caplog: pytest.LogCaptureFixture) -> None:
    conn = TargetConnection(make_catalog(), "10.0.0.9:5555")
    with caplog.at_level(logging.INFO, logger="pyiscsi.target"):
        conn.log.info("before login")
        Initiator(conn).login()
        conn.close()
    before, *after = [r for r in caplog.records if r.name == "pyiscsi.target"]
    assert before.getMessage() == f"conn={conn.number}: before login"
    assert getattr(before, "tsih", "x") is None and before.conn == conn.number  # type: ignore[attr-defined]
    logged_in = after[0]
    assert logged_in.getMessage().startswith(f"target={TARGET} tsih=1 conn={conn.number}: ")
    assert logged_in.target == TARGET and logged_in.tsih == 1  # type: ignore[attr-defined]
    assert logged_in.peer == "10.0.0.9:5555"  # type: ignore[attr-defined]


def test_json_formatter_one_object_per_line() -> None:
    conn = TargetConnection(make_catalog(), "peer:1")
    Initiator(conn).login()
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("pyiscsi.test.json")
    logger.addHandler(Keep())
    logger.setLevel(logging.INFO)
    logger.propagate = False
    log = ConnectionLog(logger, conn)
    log.info("multi\nline %s", "arg")
    try:
        raise ValueError("bad")
    except ValueError:
        log.exception("failed")
    plain = logging.getLogger("pyiscsi.test.json")
    plain.warning("no connection")
    lines = [JsonFormatter().format(r) for r in records]
    assert all("\n" not in line for line in lines)
    first, second, third = (json.loads(line) for line in lines)
    assert first["message"] == "multi\nline arg" and first["level"] == "info"
    assert first["target"] == TARGET and first["tsih"] == 1 and first["conn"] == conn.number
    assert first["logger"] == "pyiscsi.test.json" and first["time"].endswith("+00:00")
    assert "ValueError: bad" in second["exception"]
    assert third == {k: third[k] for k in ("time", "level", "logger", "message")}
