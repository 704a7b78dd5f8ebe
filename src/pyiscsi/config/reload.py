"""Re-reading the configuration file while serving (SIGHUP): what changed, and applying it.

:func:`plan` compares two checked configs (pure). :class:`Reloader` reads the file again and
applies the differences through the catalog's mutation methods: an invalid file, a store
that cannot be opened or a portal that cannot be listened on leaves everything as it was
(the error is logged). Otherwise added targets, LUNs, portals, ACL entries and credentials
take effect at once, and removed ones go: a session loses only what was removed from under
it. A removed LU's store is closed once no store work uses it any more.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..proto.chap import AuthConfig
from ..target.catalog import LoginDefaults, Portal, RemovedLun, Target
from .build import build_target, close_target, open_lun
from .load import ConfigError, load_config
from .schema import Config, DiscoveryConfig, LunConfig, TargetConfig

if TYPE_CHECKING:
    from ..scsi.lun import LogicalUnit
    from ..target.server import TargetServer

log = logging.getLogger("pyiscsi.config")


@dataclass(frozen=True, slots=True)
class Changes:
    """The differences between the running config and a new one."""

    added_targets: tuple[TargetConfig, ...] = ()
    removed_targets: tuple[str, ...] = ()
    added_luns: tuple[tuple[str, LunConfig], ...] = ()
    """(target, LUN) served anew in kept targets (a changed LUN is removed and added)."""
    removed_luns: tuple[tuple[str, int], ...] = ()
    acls: tuple[tuple[str, frozenset[str] | None], ...] = ()
    chaps: tuple[tuple[str, AuthConfig | None], ...] = ()
    portals: tuple[tuple[str, tuple[Portal, ...]], ...] = ()
    logins: tuple[tuple[str, LoginDefaults, str], ...] = ()
    """(target, login defaults, alias) changed."""
    listen: tuple[Portal, ...] = ()
    unlisten: tuple[Portal, ...] = ()
    discovery: DiscoveryConfig | None = None
    """The new discovery settings, None when unchanged."""
    limits: bool = False
    """``[limits]`` changed: that needs a restart."""
    gateway: bool = False
    """``[gateway]`` changed: the target port is the sessions' I_T nexus, so a restart."""

    def __bool__(self) -> bool:
        return any((self.added_targets, self.removed_targets, self.added_luns,
                    self.removed_luns, self.acls, self.chaps, self.portals, self.logins,
                    self.listen, self.unlisten, self.discovery is not None))

    def summary(self) -> str:
        """One line for the log (never a secret)."""
        parts = [f"+target {t.name}" for t in self.added_targets]
        parts += [f"-target {n}" for n in self.removed_targets]
        parts += [f"-lun {n}/{lun}" for n, lun in self.removed_luns]
        parts += [f"+lun {n}/{lun.id}" for n, lun in self.added_luns]
        parts += [f"acl {n}" for n, _ in self.acls]
        parts += [f"chap {n}" for n, _ in self.chaps]
        parts += [f"portals {n}" for n, _ in self.portals]
        parts += [f"login {n}" for n, _, _ in self.logins]
        parts += [f"+portal {_show(p)}" for p in self.listen]
        parts += [f"-portal {_show(p)}" for p in self.unlisten]
        if self.discovery is not None:
            parts.append("discovery")
        return ", ".join(parts) or "no change"


def plan(old: Config, new: Config) -> Changes:
    """What to do to go from serving ``old`` to serving ``new``."""
    added_luns: list[tuple[str, LunConfig]] = []
    removed_luns: list[tuple[str, int]] = []
    acls, chaps, portals, logins = [], [], [], []
    for target in new.targets:
        before = old.target(target.name)
        if before is None:
            continue
        name = target.name
        for lun in before.luns:
            if target.lun(lun.id) != lun:
                removed_luns.append((name, lun.id))
        added_luns += [(name, lun) for lun in target.luns if before.lun(lun.id) != lun]
        if before.allow != target.allow:
            acls.append((name, target.allow))
        if before.auth != target.auth:
            chaps.append((name, target.auth))
        if before.portals != target.portals:
            portals.append((name, target.portals))
        if (before.login, before.alias) != (target.login, target.alias):
            logins.append((name, target.login, target.alias))
    return Changes(
        added_targets=tuple(t for t in new.targets if old.target(t.name) is None),
        removed_targets=tuple(t.name for t in old.targets if new.target(t.name) is None),
        added_luns=tuple(added_luns), removed_luns=tuple(removed_luns), acls=tuple(acls),
        chaps=tuple(chaps), portals=tuple(portals), logins=tuple(logins),
        listen=tuple(p for p in new.portals if p not in old.portals),
        unlisten=tuple(p for p in old.portals if p not in new.portals),
        discovery=new.discovery if new.discovery != old.discovery else None,
        limits=old.limits != new.limits, gateway=old.gateway != new.gateway)


@dataclass(eq=False)
class Reloader:
    """Keeps the running config of a server and applies a re-read file to it."""

    server: TargetServer
    config: Config
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _retiring: set[asyncio.Task[None]] = field(default_factory=set)

    async def reload(self) -> Changes | None:
        """Re-read the file and apply it; None (and the error logged) when it is refused."""
        try:
            changes = await self.change(lambda running: load_config(running.path))
        except ConfigError as exc:
            log.error("reload refused, the running configuration stays:\n%s", exc)
            return None
        except (OSError, ValueError) as exc:
            log.error("reload refused, the running configuration stays: %s",
                      getattr(exc, "strerror", None) or exc)
            return None
        if changes.limits:
            log.warning("%s: [limits] changes take effect at the next start",
                        self.config.path)
        if changes.gateway:
            log.warning("%s: [gateway] changes take effect at the next start",
                        self.config.path)
        log.info("reloaded %s: %s", self.config.path, changes.summary())
        return changes

    async def change(self, edit: Callable[[Config], Config]) -> Changes:
        """Serve ``edit(running config)`` instead of the running config (one change at a
        time: a reload or an admin verb). ``edit`` raising, or the changes failing to
        apply (:meth:`apply`), leaves everything as it was and raises."""
        async with self._lock:
            new = edit(self.config)
            changes = plan(self.config, new)
            await self.apply(changes)
            self.config = new
            return changes

    async def update(self, edit: Callable[[Config], Config]) -> None:
        """Record a change already made to what is served (a LUN grown) in the running
        config, after the changes in progress."""
        async with self._lock:
            self.config = edit(self.config)

    async def apply(self, changes: Changes) -> None:
        """Open what is new (stores, then listeners); if anything fails, close it again and
        raise, nothing changed. Then change the catalog and drop what went."""
        server, catalog = self.server, self.server.catalog
        targets: list[Target] = []
        luns: list[tuple[str, LogicalUnit]] = []
        listening: list[Portal] = []
        try:
            for t in changes.added_targets:
                targets.append(build_target(t))
            for name, lun in changes.added_luns:
                luns.append((name, open_lun(name, lun)))
            for lu in [lu for _, lu in luns] + [lu for t in targets for lu in t.luns.values()]:
                server.attach_events(lu)  # a shared RBD LU: unit attentions across gateways
            for portal in changes.listen:
                await server.listen(portal)
                listening.append(portal)
        except BaseException:
            for lu in [lu for _, lu in luns] + [lu for t in targets for lu in t.luns.values()]:
                server.detach_events(lu)
            for target in targets:
                close_target(target)
            for _, lu in luns:
                lu.store.close()
            for portal in listening:
                await server.unlisten(portal)
            raise
        removed: list[RemovedLun] = []
        for name in changes.removed_targets:
            removed += catalog.remove_target(name)
        for name, portals in changes.portals:
            catalog.set_portals(name, portals)
        for name, allowed in changes.acls:
            catalog.set_acl(name, allowed)
        for name, auth in changes.chaps:
            catalog.set_chap(name, auth)
        for name, login, alias in changes.logins:
            catalog.set_login_defaults(name, login, alias)
        for name, number in changes.removed_luns:
            removed.append(catalog.remove_lun(name, number))
        for name, lu in luns:
            catalog.add_lun(name, lu)
        for target in targets:
            catalog.add_target(target)
        if changes.discovery is not None:
            catalog.discovery_auth = changes.discovery.auth
            catalog.discovery_enabled = changes.discovery.enabled
        for portal in changes.unlisten:
            await server.unlisten(portal)
        server.poke()
        for gone in removed:
            task = asyncio.get_running_loop().create_task(self._retire(gone.lu))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    async def _retire(self, lu: LogicalUnit) -> None:
        """Close a removed LU's store once no store work uses it (its aborted tasks' work
        may still run on a worker)."""
        self.server.detach_events(lu)
        runner = self.server.store_runner
        while runner is not None and runner.uses(lu.store):
            await asyncio.sleep(0.02)
        store = lu.store
        if runner is not None:
            runner.release(store)  # its completion fd is closed with it

        def close() -> None:
            try:
                store.flush()
            finally:
                store.close()

        try:
            await asyncio.get_running_loop().run_in_executor(None, close)
        except Exception:
            log.exception("closing the store of removed LUN %d of %s", lu.number,
                          lu.target_name)

    async def settle(self) -> None:
        """Wait for removed LUs' stores to be closed (their aborted tasks' store work ended:
        nothing more is written to them)."""
        if self._retiring:
            await asyncio.gather(*list(self._retiring), return_exceptions=True)

    async def close(self) -> None:
        """Wait for removed LUs' stores to be closed (before the server's own shutdown)."""
        await self.settle()

def _show(portal: Portal) -> str:
    host, port = portal
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
