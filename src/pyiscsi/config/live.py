"""Live administration: the admin socket verbs that change what a running server serves.

Every verb but ``resize-lun`` and ``logout-session`` is an edit of the running
:class:`~.schema.Config`, applied as a SIGHUP reload applies a re-read file
(:meth:`.reload.Reloader.change`: :func:`.reload.plan`, then :meth:`.reload.Reloader.apply`),
so sessions learn of it the same way: a LUN added or removed is REPORTED LUNS DATA HAS
CHANGED on the target's other LUNs, a removed LUN's tasks are aborted, a removed target's
sessions end, an initiator taken out of ``allow`` loses its session (as with a reload: an
ACL is access control, a session must not outlive the right to it).

``remove-lun`` and ``remove-target`` answer once the removed LUNs' stores are flushed and
closed, after any store work of their aborted tasks: nothing is written to them after the
answer. ``resize-lun`` grows a LUN (:meth:`~pyiscsi.scsi.lun.LogicalUnit.grow`: CAPACITY
DATA HAS CHANGED for every I_T nexus). A SIGHUP re-reads the file and so undoes changes not
written back with ``save``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..backstore.base import StoreBusy
from ..backstore.spec import parse_size
from ..proto.chap import AuthConfig
from .load import MAX_LUN, check_lun, check_name, check_secret, check_target, read_secret_file
from .schema import Config, TargetConfig
from .write import save_config

if TYPE_CHECKING:
    from ..target.server import TargetServer
    from .reload import Changes, Reloader

log = logging.getLogger("pyiscsi.admin")

Request = dict[str, Any]
Answer = dict[str, Any]

BUSY_RETRY = 2.0
"""Seconds ``resize-lun`` retries a store busy with I/O before refusing."""
LOGOUT_WITHIN = 5
"""Default seconds an initiator asked to log out has (Async Message Parameter3)."""


def _text(request: Request, key: str) -> str:
    value = request.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key!r} must be a non-empty string")
    return value


def _int(request: Request, key: str, low: int, high: int) -> int:
    value = request.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{key!r} must be an integer {low}..{high}")
    return value


def _target(config: Config, name: str) -> TargetConfig:
    target = config.target(name)
    if target is None:
        raise ValueError(f"no target {name}")
    return target


def _with_target(config: Config, target: TargetConfig) -> Config:
    return replace(config, targets=tuple(target if t.name == target.name else t
                                         for t in config.targets))


class Administration:
    """The verbs of one server (:meth:`verbs`), applied through its :class:`Reloader`."""

    def __init__(self, server: TargetServer, reloader: Reloader, *,
                 file: Path | None) -> None:
        self.server = server
        self.reloader = reloader
        self.file = file
        """The configuration file served (``--config``), None for command-line targets."""

    def verbs(self) -> dict[str, Callable[[Request], Awaitable[Answer]]]:
        return {"add-target": self.add_target, "remove-target": self.remove_target,
                "add-lun": self.add_lun, "remove-lun": self.remove_lun,
                "resize-lun": self.resize_lun, "add-acl": self.add_acl,
                "remove-acl": self.remove_acl, "set-chap": self.set_chap,
                "logout-session": self.logout_session, "save": self.save}

    def _base(self, request: Request) -> Path:
        """Where relative paths of a request are taken from: the client's directory."""
        cwd = request.get("cwd")
        if isinstance(cwd, str) and Path(cwd).is_absolute():
            return Path(cwd)
        return self.file.parent if self.file is not None else Path.cwd()

    async def _change(self, verb: str, edit: Callable[[Config], Config]) -> Changes:
        changes = await self.reloader.change(edit)
        log.info("admin %s: %s", verb, changes.summary())
        return changes

    # ------------------------------------------------------------------ targets

    async def add_target(self, request: Request) -> Answer:
        """``name``, ``portals``, optional ``luns``, ``allow``, ``chap``, ... as a
        ``[[target]]`` table of the file takes them."""
        table = {k: v for k, v in request.items() if k not in ("verb", "cwd")}
        base = self._base(request)

        def edit(config: Config) -> Config:
            target = check_target(table, base, config)
            sources = tuple(None if isinstance(table.get(key), dict)
                            and "secret" in table[key] else source
                            for key, source in zip(("chap", "mutual_chap"),
                                                   target.chap_files, strict=True))
            target = replace(target, chap_files=sources)  # type: ignore[arg-type]
            return replace(config, targets=(*config.targets, target))

        await self._change("add-target", edit)
        name = table.get("name")
        target = self.server.catalog.targets[str(name)]
        return {"target": name, "luns": sorted(target.luns),
                "portals": [f"{h}:{p}" for h, p in self.server.catalog.target_portals(target)]}

    async def remove_target(self, request: Request) -> Answer:
        name = _text(request, "target")

        def edit(config: Config) -> Config:
            _target(config, name)
            return replace(config, targets=tuple(t for t in config.targets if t.name != name))

        await self._change("remove-target", edit)
        await self.reloader.settle()
        return {"target": name}

    # ------------------------------------------------------------------ LUNs

    async def add_lun(self, request: Request) -> Answer:
        """``target``, ``spec``, optional ``id`` (default: the lowest free) and ``serial``."""
        name, spec = _text(request, "target"), _text(request, "spec")
        base = self._base(request)
        chosen: list[int] = []

        def edit(config: Config) -> Config:
            target = _target(config, name)
            taken = {lun.id for lun in target.luns}
            if "id" in request:
                number = _int(request, "id", 0, MAX_LUN)
                if number in taken:
                    raise ValueError(f"{name} already has LUN {number}")
            else:
                number = next(n for n in range(MAX_LUN + 2) if n not in taken)
            table: dict[str, Any] = {"id": number, "spec": spec}
            if request.get("serial") is not None:
                table["serial"] = request["serial"]
            lun = check_lun(table, name, base, config)
            chosen.append(lun.id)
            luns = tuple(sorted((*target.luns, lun), key=lambda lu: lu.id))
            return _with_target(config, replace(target, luns=luns))

        await self._change("add-lun", edit)
        return {"target": name, "lun": chosen[0]}

    async def remove_lun(self, request: Request) -> Answer:
        name, number = _text(request, "target"), _int(request, "lun", 0, MAX_LUN)

        def edit(config: Config) -> Config:
            target = _target(config, name)
            if target.lun(number) is None:
                raise ValueError(f"{name} has no LUN {number}")
            return _with_target(config, replace(
                target, luns=tuple(lun for lun in target.luns if lun.id != number)))

        await self._change("remove-lun", edit)
        await self.reloader.settle()
        return {"target": name, "lun": number}

    async def resize_lun(self, request: Request) -> Answer:
        """``target``, ``lun``, ``size`` (bytes, or a string with K/M/G/T): the LUN grows."""
        name, number = _text(request, "target"), _int(request, "lun", 0, MAX_LUN)
        raw = request.get("size")
        size = parse_size(raw) if isinstance(raw, str) else raw
        if isinstance(size, bool) or not isinstance(size, int):
            raise ValueError("'size' must be a number of bytes or a size like 2GiB")
        runner = self.server.store_runner

        def edit(config: Config) -> Config:
            target = _target(config, name)
            lun = target.lun(number)
            served = self.server.catalog.targets[name].luns.get(number)
            if lun is None or served is None:
                raise ValueError(f"{name} has no LUN {number}")
            store = served.store
            if store.grow_needs_quiet and runner is not None and runner.uses(store):
                raise StoreBusy("store work in flight uses the LUN")
            served.grow(size)
            spec = lun.spec
            if spec.size is not None:
                spec = replace(spec, size=store.size)
            luns = tuple(replace(lu, spec=spec) if lu.id == number else lu
                         for lu in target.luns)
            return _with_target(config, replace(target, luns=luns))

        loop = asyncio.get_running_loop()
        deadline = loop.time() + BUSY_RETRY
        while True:
            try:
                await self.reloader.update(edit)
                break
            except StoreBusy as exc:
                if loop.time() >= deadline:
                    raise ValueError(f"{exc}: retry once the I/O ended") from None
                await asyncio.sleep(0.02)
        self.server.poke()
        lu = self.server.catalog.targets[name].luns[number]
        log.info("admin resize-lun: %s/%d is %d bytes", name, number, lu.store.size)
        return {"target": name, "lun": number, "size": lu.store.size, "blocks": lu.blocks}

    # ------------------------------------------------------------------ access

    async def _acl(self, request: Request, add: bool) -> Answer:
        name = _text(request, "target")
        initiator = check_name(request.get("initiator"))
        allowed: list[frozenset[str]] = []

        def edit(config: Config) -> Config:
            target = _target(config, name)
            allow = target.allow
            if add:
                allow = (allow or frozenset()) | {initiator}
            elif allow is None or initiator not in allow:
                raise ValueError(f"{initiator} is not in the ACL of {name}"
                                 + (" (it has none: everyone may log in)" if allow is None
                                    else ""))
            else:
                allow = allow - {initiator}
            allowed.append(allow)
            return _with_target(config, replace(target, allow=allow))

        await self._change("add-acl" if add else "remove-acl", edit)
        return {"target": name, "allow": sorted(allowed[0])}

    async def add_acl(self, request: Request) -> Answer:
        """``target``, ``initiator``: the initiator may log in. A target without an ACL
        (everyone) gets one with this initiator only."""
        return await self._acl(request, True)

    async def remove_acl(self, request: Request) -> Answer:
        """``target``, ``initiator``: it may no longer log in; its sessions end."""
        return await self._acl(request, False)

    async def set_chap(self, request: Request) -> Answer:
        """``target`` with ``user`` and ``secret_file`` (read here, referenced by ``save``)
        or ``secret`` (sent by ``pyiscsi admin`` from its stdin); or ``none``: no CHAP.
        For the logins to come (a logged-in session proved the old credentials)."""
        name = _text(request, "target")
        off = request.get("none") is True
        chap = None
        secret_file: str | None = None
        if not off:
            user = _text(request, "user")
            if "secret_file" in request:
                path = self._base(request) / _text(request, "secret_file")
                secret_file = str(path.absolute())
                secret = read_secret_file(path)
            else:
                secret = _text(request, "secret")
            chap = check_secret(user, secret)

        def edit(config: Config) -> Config:
            target = _target(config, name)
            if chap is None:
                return _with_target(config, replace(target, auth=None,
                                                    chap_files=(None, None)))
            mutual = target.auth.mutual if target.auth is not None else None
            return _with_target(config, replace(
                target, auth=AuthConfig(chap, mutual),
                chap_files=(secret_file, target.chap_files[1] if mutual else None)))

        await self._change("set-chap", edit)
        return {"target": name, "chap": not off}

    # ------------------------------------------------------------------ sessions

    async def logout_session(self, request: Request) -> Answer:
        """``tsih``, optional ``within`` (seconds): the target asks the initiator to log out
        (Async Message, RFC 7143 §11.9.1); one that has not within ``within`` seconds (and
        a grace) is dropped."""
        tsih = _int(request, "tsih", 1, 0xFFFF)
        within = _int(request, "within", 0, 3600) if "within" in request else LOGOUT_WITHIN
        session = self.server.catalog.sessions.get(tsih)
        if session is None:
            raise ValueError(f"no session {tsih}")
        now = asyncio.get_running_loop().time()
        for conn in session.connections:
            conn.request_logout(within, now)
        self.server.poke()
        log.info("admin logout-session: TSIH %d asked to log out within %d s", tsih, within)
        return {"tsih": tsih, "within": within, "connections": len(session.connections)}

    # ------------------------------------------------------------------ save

    async def save(self, request: Request) -> Answer:
        """Write the running config to ``file`` (default: the ``--config`` file)."""
        if request.get("file") is not None:
            path = self._base(request) / _text(request, "file")
        elif self.file is not None:
            path = self.file
        else:
            raise ValueError("the targets come from the command line: give a PATH")
        config = self.reloader.config
        loop = asyncio.get_running_loop()
        secrets = await loop.run_in_executor(None, save_config, config, path)
        answer: Answer = {"path": str(path), "secret_files": [str(p) for p in secrets]}
        if self.server.catalog.auth is not None:
            answer["warning"] = ("the process-wide CHAP of --chap/--auth-file is not written: "
                                 "give the targets chap = {...} in the file")
        log.info("admin save: %s", path)
        return answer
