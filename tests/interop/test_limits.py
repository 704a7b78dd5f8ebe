"""User-set limits of `pyiscsi serve`: login timeout, TCP connection cap, session cap."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from pyiscsi.initiator.client import connect
from pyiscsi.initiator.errors import LoginFailed

from .conftest import start_server, stop_server

pytestmark = pytest.mark.interop


def closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the server closes ``sock`` (None if it stays open that long)."""
    start = time.monotonic()
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return None
    except OSError:
        pass
    return time.monotonic() - start


def test_login_timeout_and_connection_cap(tmp_path: Path) -> None:
    srv = start_server(tmp_path, "--portal", "127.0.0.1:0", "--lun", "ram:1MiB",
                       "--login-timeout", "1", "--max-connections", "2")
    host, port = srv.url.split("/")[2].rsplit(":", 1)
    try:
        a = socket.create_connection((host, int(port)))
        b = socket.create_connection((host, int(port)))
        time.sleep(0.2)
        c = socket.create_connection((host, int(port)))  # third: over the cap
        assert closed_within(c, 2.0) is not None
        elapsed = closed_within(a, 5.0)  # silent: the login timeout closes it
        assert elapsed is not None and elapsed < 3.0
        assert closed_within(b, 5.0) is not None
        for s in (a, b, c):
            s.close()
    finally:
        assert stop_server(srv) == 0


def test_session_cap_refuses_with_out_of_resources(tmp_path: Path) -> None:
    import asyncio

    srv = start_server(tmp_path, "--portal", "127.0.0.1:0", "--lun", "ram:1MiB",
                       "--max-sessions", "1")

    async def scenario() -> None:
        async with await connect(srv.url) as lun:
            with pytest.raises(LoginFailed) as info:
                await connect(srv.url, initiator_name="iqn.2026-11.org.pyiscsi:second")
            assert (info.value.status.status_class, info.value.status.status_detail) == (3, 2)
            await lun.test_unit_ready()

    try:
        asyncio.run(asyncio.wait_for(scenario(), 30))
    finally:
        assert stop_server(srv) == 0
