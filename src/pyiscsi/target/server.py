"""The target process: listen on portals, hand each connection to a sans-IO engine."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from collections.abc import Callable

from ..transport.store_runner import StoreRunner
from ..transport.stream import StreamProtocol
from .catalog import Catalog
from .connection import TargetConnection

log = logging.getLogger("pyiscsi.server")


class TargetServer:
    """Listens on portals; every accepted connection gets a :class:`TargetConnection`."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._servers: list[asyncio.AbstractServer] = []
        self._protocols: set[StreamProtocol] = set()
        self.store_runner: StoreRunner | None = None

    async def start(self, portals: list[tuple[str, int]]) -> list[tuple[str, int]]:
        """Bind every portal; returns the bound (host, port) pairs (real ports for port 0)."""
        loop = asyncio.get_running_loop()
        if self.store_runner is None:
            self.store_runner = StoreRunner(loop)
        bound: list[tuple[str, int]] = []
        for host, port in portals:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            server = await loop.create_server(self._protocol, host, port, family=family,
                                              reuse_address=True, backlog=128)
            self._servers.append(server)
            for sock in server.sockets:
                addr = sock.getsockname()
                bound.append((host, int(addr[1])))
        self.catalog.portals = bound
        return bound

    def _protocol(self) -> asyncio.BaseProtocol:
        catalog = self.catalog
        if len(self._protocols) >= catalog.limits.max_connections:
            log.warning("refusing a connection: %d open (limit)", len(self._protocols))
            return _Refuse()

        def make(peer: str) -> TargetConnection:
            return TargetConnection(catalog, peer)

        proto = StreamProtocol(make, login_timeout=catalog.limits.login_timeout,
                               on_lost=self._protocols.discard,
                               store_runner=self.store_runner, state=catalog.state)
        self._protocols.add(proto)
        return proto

    async def stop(self) -> None:
        """Stop listening, close every connection, flush every store."""
        for server in self._servers:
            server.close()
        for proto in list(self._protocols):
            proto.close()
        for server in self._servers:
            await server.wait_closed()
        await asyncio.sleep(0)
        if self.store_runner is not None:
            # store work still running finishes before the stores are flushed and closed
            await asyncio.get_running_loop().run_in_executor(None, self.store_runner.close)
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
