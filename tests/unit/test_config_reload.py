"""SIGHUP's reload: what changed between two files, and applying it to a running server
with sessions logged in (over loopback, our own initiator)."""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from pyiscsi.config.build import build_catalog
from pyiscsi.config.load import load_config
from pyiscsi.config.reload import Changes, Reloader, plan
from pyiscsi.initiator.client import Session, discover
from pyiscsi.target.server import TargetServer

A, B, C = (f"iqn.2026-11.org.example:{n}" for n in "abc")
TUR = bytes(6)
REPORT_LUNS = struct.pack(">BxxxxxIxx", 0xA0, 4096)


def target(name: str, portals: str = '"127.0.0.1:0"', luns: str = '"ram:1MiB"',
           extra: str = "") -> str:
    return f"[[target]]\nname = \"{name}\"\nportals = [{portals}]\nluns = [{luns}]\n{extra}\n"


def config_at(tmp: Path, *targets: str, name: str = "c.toml"):  # type: ignore[no-untyped-def]
    path = tmp / name
    path.write_text("".join(targets))
    return load_config(path)


# ---------------------------------------------------------------- plan


def test_plan_of_the_same_file_is_no_change(tmp_path: Path) -> None:
    old = config_at(tmp_path, target(A), target(B))
    changes = plan(old, config_at(tmp_path, target(A), target(B)))
    assert not changes and changes == Changes() and changes.summary() == "no change"


def test_plan_names_every_difference(tmp_path: Path) -> None:
    old = config_at(tmp_path, target(A, luns='"ram:1MiB", "ram:2MiB", "ram:3MiB"'),
                    target(B, portals='"127.0.0.2:3260"'),
                    "[limits]\nqueue_depth = 8\n")
    new = config_at(tmp_path, target(A, luns='"ram:1MiB", "ram:4MiB"',
                                     portals='"127.0.0.1:0", "127.0.0.3:3260"',
                                     extra='allow = ["iqn.x:y"]\nalias = "a"'),
                    target(C), "[discovery]\nenabled = false\n", name="d.toml")
    changes = plan(old, new)
    assert [t.name for t in changes.added_targets] == [C]
    assert changes.removed_targets == (B,)
    assert changes.removed_luns == ((A, 1), (A, 2))  # LUN 1 changed spec: out, then in
    assert [(n, lun.id) for n, lun in changes.added_luns] == [(A, 1)]
    assert changes.acls == ((A, frozenset({"iqn.x:y"})),)
    assert changes.portals == ((A, (("127.0.0.1", 0), ("127.0.0.3", 3260))),)
    assert [(n, alias) for n, _, alias in changes.logins] == [(A, "a")]
    assert changes.listen == (("127.0.0.3", 3260),)
    assert changes.unlisten == (("127.0.0.2", 3260),)
    assert changes.discovery is not None and not changes.discovery.enabled
    assert changes.limits and changes.chaps == ()
    assert changes.summary().startswith(f"+target {C}, -target {B}, -lun {A}/1, -lun {A}/2")


def test_plan_keeps_a_lun_whose_serial_and_spec_stay(tmp_path: Path) -> None:
    old = config_at(tmp_path, target(A, luns='{ spec = "ram:1MiB", serial = "s1" }'))
    same = config_at(tmp_path, target(A, luns='{ id = 0, spec = "ram:1MiB", serial = "s1" }'),
                     name="d.toml")
    other = config_at(tmp_path, target(A, luns='{ spec = "ram:1MiB", serial = "s2" }'),
                      name="e.toml")
    assert not plan(old, same)
    assert plan(old, other).removed_luns == ((A, 0),)


# ---------------------------------------------------------------- a running server

Check = Callable[[Path, TargetServer, Reloader], Awaitable[None]]


def serve(tmp: Path, text: str, check: Check) -> None:
    path = tmp / "c.toml"
    path.write_text(text)
    config = load_config(path)

    async def main() -> None:
        server = TargetServer(build_catalog(config, config.make_limits()))
        await server.start(config.portals)
        reloader = Reloader(server, config)
        try:
            await check(path, server, reloader)
        finally:
            await reloader.close()
            await server.stop()
            for t in server.catalog.targets.values():
                for lu in t.luns.values():
                    lu.store.close()

    asyncio.run(main())


def port_of(server: TargetServer, host: str) -> int:
    (port,) = {p for h, p in server.catalog.portals if h == host}
    return port


async def login(server: TargetServer, name: str, host: str = "127.0.0.1") -> Session:
    session = await Session.open(host, port_of(server, host), name)
    session.unit_attention_retries = 1  # see the attentions
    return session


async def sense(session: Session, cdb: bytes, lun: int) -> tuple[int, int, int] | None:
    buf = bytearray(4096) if cdb[0] == 0xA0 else None
    out = await session.execute(cdb, lun=lun, data_in=buf, check=False)
    if out.status == 0:
        return None
    s = out.sense
    return s[2] & 0x0F, s[12], s[13]


async def report_luns(session: Session) -> list[int]:
    buf = bytearray(4096)
    await session.execute(REPORT_LUNS, data_in=buf)
    n = int.from_bytes(buf[:4], "big") // 8
    return [int.from_bytes(buf[8 + 8 * i:10 + 8 * i], "big") & 0x3FFF for i in range(n)]


def test_luns_added_and_removed_under_a_logged_in_session(tmp_path: Path) -> None:
    async def check(path: Path, server: TargetServer, reloader: Reloader) -> None:
        session = await login(server, A)
        assert await report_luns(session) == [0, 1]
        path.write_text(target(A, luns='"ram:1MiB", { id = 2, spec = "ram:1MiB" }'))
        changes = await reloader.reload()
        assert changes is not None and changes.removed_luns == ((A, 1),)
        assert await sense(session, TUR, 0) == (0x6, 0x3F, 0x0E)
        assert await sense(session, TUR, 1) == (0x5, 0x25, 0x00)
        assert await sense(session, TUR, 2) is None
        assert await report_luns(session) == [0, 2]
        assert not session.is_closed
        await session.close()

    serve(tmp_path, target(A, luns='"ram:1MiB", "ram:1MiB"'), check)


def test_removed_luns_store_is_closed_once_idle(tmp_path: Path) -> None:
    async def check(path: Path, server: TargetServer, reloader: Reloader) -> None:
        lu = server.catalog.targets[A].luns[1]
        closed: list[bool] = []
        original = lu.store.close
        lu.store.close = lambda: (closed.append(True), original())  # type: ignore[method-assign]
        path.write_text(target(A, luns=f'"file:{tmp_path}/a.img,size=1MiB"'))
        assert await reloader.reload() is not None
        await reloader.close()
        assert closed == [True]

    serve(tmp_path, target(A, luns=f'"file:{tmp_path}/a.img,size=1MiB", "ram:1MiB"'), check)


def test_targets_and_portals_added_and_removed(tmp_path: Path) -> None:
    async def check(path: Path, server: TargetServer, reloader: Reloader) -> None:
        doomed = await login(server, B, "127.0.0.2")
        old_port = port_of(server, "127.0.0.2")
        kept = await login(server, A)
        path.write_text(target(A) + target(C, portals='"127.0.0.3:0"'))
        changes = await reloader.reload()
        assert changes is not None and changes.removed_targets == (B,)
        assert changes.listen == (("127.0.0.3", 0),)
        assert changes.unlisten == (("127.0.0.2", 0),)
        for _ in range(100):
            if doomed.is_closed:
                break
            await asyncio.sleep(0.02)
        assert doomed.is_closed and not kept.is_closed
        assert await sense(kept, TUR, 0) is None
        port = port_of(server, "127.0.0.3")
        assert await discover(f"127.0.0.3:{port}") == [(C, [f"127.0.0.3:{port},1"])]
        assert [n for n, _ in await discover(f"127.0.0.1:{port_of(server, '127.0.0.1')}")] \
            == [A]
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.2", old_port)  # nothing there any more
        await kept.close()

    serve(tmp_path, target(A) + target(B, portals='"127.0.0.2:0"'), check)


def test_an_invalid_file_keeps_the_running_config(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    async def check(path: Path, server: TargetServer, reloader: Reloader) -> None:
        before = reloader.config
        session = await login(server, A)
        path.write_text(target(A, luns='"ram:1MiB", "disk:/nope"'))
        with caplog.at_level(logging.ERROR, "pyiscsi.config"):
            assert await reloader.reload() is None
        assert "reload refused, the running configuration stays" in caplog.text
        assert "target[0].luns[1]: bad LUN spec 'disk:/nope'" in caplog.text
        assert reloader.config is before
        assert await report_luns(session) == [0]
        assert await sense(session, TUR, 0) is None  # no attention: nothing changed
        await session.close()

    serve(tmp_path, target(A), check)


def test_a_store_or_portal_that_fails_changes_nothing(tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    async def check(path: Path, server: TargetServer, reloader: Reloader) -> None:
        taken = await asyncio.start_server(lambda r, w: None, "127.0.0.5", 0)
        busy = taken.sockets[0].getsockname()[1]
        (tmp_path / "d.img").mkdir()
        for bad in (target(A, luns=f'"ram:1MiB", "file:{tmp_path}/d.img,size=1MiB"'),
                    target(A, luns='"ram:1MiB", "ram:1MiB"') +
                    target(B, portals=f'"127.0.0.5:{busy}"')):
            path.write_text(bad)
            with caplog.at_level(logging.ERROR, "pyiscsi.config"):
                assert await reloader.reload() is None
            assert list(server.catalog.targets) == [A]
            assert sorted(server.catalog.targets[A].luns) == [0]
            assert list(server.catalog.listeners) == [("127.0.0.1", 0)]
        taken.close()
        assert caplog.text.count("reload refused") == 2

    serve(tmp_path, target(A), check)
