"""The target process: listen on portals, hand each connection to a sans-IO engine."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from collections.abc import Callable

from ..scsi.lun import LogicalUnit
from ..transport.lu_watch import EventLinks
from ..transport.store_runner import StoreRunner
from ..transport.stream import StreamProtocol
from . import tmf
from .catalog import Catalog
from .connection import TargetConnection

log = logging.getLogger("pyiscsi.server")


class TargetServer:
    """Listens on portals; every accepted connection gets a :class:`TargetConnection`."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._servers: list[tuple[tuple[str, int], asyncio.AbstractServer]] = []
        """Listening servers and the portal each was configured as (``--portal`` may give
        ``HOST:0`` twice: two listeners)."""
        self._protocols: set[StreamProtocol] = set()
        self.store_runner: StoreRunner | None = None
        self.event_links: EventLinks | None = None
        """Unit attentions to and from the other gateways of shared LUs (None: not opened,
        :meth:`open_event_links`)."""

    def open_event_links(self) -> None:
        """Watch the events object of every shared RBD LU (OSError: none stays open);
        LUs added later get theirs from :meth:`attach_events`."""
        links = EventLinks(asyncio.get_running_loop(), self.poke,
                           lambda lu, event: tmf.after_another_gateway(self.catalog, lu, event))
        links.attach_all(self.catalog)
        self.event_links = links

    def attach_events(self, lu: LogicalUnit) -> None:
        """A LU about to be served: its link, once links are open (OSError)."""
        if self.event_links is not None:
            self.event_links.attach(lu)

    def detach_events(self, lu: LogicalUnit) -> None:
        """A LU no longer served: no more events to or from it."""
        if self.event_links is not None:
            self.event_links.detach(lu)

    async def start(self, portals: list[tuple[str, int]]) -> list[tuple[str, int]]:
        """Bind every portal; returns the bound (host, port) pairs (real ports for port 0)."""
        loop = asyncio.get_running_loop()
        if self.store_runner is None:
            self.store_runner = StoreRunner(loop)
        bound: list[tuple[str, int]] = []
        for portal in portals:
            bound += await self.listen(portal)
        return bound

    async def listen(self, portal: tuple[str, int]) -> list[tuple[str, int]]:
        """Listen on one more portal (``host``, ``port``: as configured); the bound (host,
        port) pairs. The catalog learns its socket addresses (to tell which portal a
        connection came in through)."""
        host, port = portal
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        server = await loop.create_server(self._protocol, host, port, family=family,
                                          reuse_address=True, backlog=128)
        self._servers.append((portal, server))
        bound: list[tuple[str, int]] = []
        local: list[tuple[str, int]] = []
        for sock in server.sockets:
            addr = sock.getsockname()
            bound.append((host, int(addr[1])))
            local.append((str(addr[0]), int(addr[1])))
        self.catalog.portals = [*self.catalog.portals, *bound]
        self.catalog.listeners[portal] = [*self.catalog.listeners.get(portal, []), *local]
        return bound

    async def unlisten(self, portal: tuple[str, int]) -> None:
        """Stop listening on a portal; discovery sessions that came in through it end
        (targets that had it lost it first: :meth:`Catalog.set_portals`)."""
        servers = [server for p, server in self._servers if p == portal]
        self._servers = [(p, server) for p, server in self._servers if p != portal]
        for server in servers:
            server.close()
        self.catalog.drop_listener(portal)
        self.poke()
        for server in servers:
            await server.wait_closed()

    def poke(self) -> None:
        """The catalog changed under the connections: each sends what it has now (aborted
        tasks let others run), and those whose session ended are dropped."""
        for proto in list(self._protocols):
            proto.poke()

    def _protocol(self) -> asyncio.BaseProtocol:
        catalog = self.catalog
        if len(self._protocols) >= catalog.limits.max_connections:
            log.warning("refusing a connection: %d open (limit)", len(self._protocols))
            return _Refuse()

        def make(peer: str) -> TargetConnection:
            return TargetConnection(catalog, peer, local=proto.local)

        proto: StreamProtocol = StreamProtocol(make, login_timeout=catalog.limits.login_timeout,
                               on_lost=self._protocols.discard,
                               store_runner=self.store_runner, state=catalog.state)
        self._protocols.add(proto)
        return proto

    async def stop(self) -> None:
        """Stop listening, close every connection, flush every store."""
        for _, server in self._servers:
            server.close()
        for proto in list(self._protocols):
            proto.close()
        for _, server in self._servers:
            await server.wait_closed()
        await asyncio.sleep(0)
        if self.store_runner is not None:
            # store work still running finishes before the stores are flushed and closed
            await asyncio.get_running_loop().run_in_executor(None, self.store_runner.close)
            self.store_runner.release_all()  # before the stores close their completion fds
        if self.event_links is not None:
            self.event_links.close()
            self.event_links = None
        for target in self.catalog.targets.values():
            for lu in target.luns.values():
                lu.store.flush()

    def stats(self) -> dict[str, int]:
        """Counters readable at run time: placement bytes and connection health."""
        runner = self.store_runner.stats if self.store_runner is not None else None
        return {**self.catalog.state.snapshot(),
                "live_connections": len(self._protocols),
                "sessions": len(self.catalog.sessions),
                "store_requests": runner.submitted if runner is not None else 0,
                "store_requests_async": runner.async_completed if runner is not None else 0,
                "store_requests_queued_max": runner.queued_max if runner is not None else 0}


class _Refuse(asyncio.Protocol):
    """Closes a TCP connection beyond the process's connection limit at once."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


def write_stats(path: str, stats: Callable[[], dict[str, int]]) -> None:
    """Atomically write the counters as JSON (read by tests and monitoring)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(stats(), f)
    os.replace(tmp, path)
