"""The server's listeners: per configured portal, added and removed while serving; each
connection's engine knows the portal it came in through."""

from __future__ import annotations

import asyncio

from pyiscsi.target.catalog import Catalog, Target
from pyiscsi.target.connection import TargetConnection
from pyiscsi.target.server import TargetServer


def test_listen_and_unlisten_per_portal() -> None:
    async def main() -> None:
        catalog = Catalog([Target("iqn.2026-11.org.example:t")])
        server = TargetServer(catalog)
        bound = await server.start([("127.0.0.1", 0), ("127.0.0.1", 0)])  # two free ports
        assert len({port for _, port in bound}) == 2
        assert catalog.portals == bound
        assert sorted(catalog.listeners[("127.0.0.1", 0)]) == sorted(bound)
        more = await server.listen(("127.0.0.2", 0))
        (_, port) = more[0]
        _reader, writer = await asyncio.open_connection("127.0.0.2", port)
        for _ in range(50):
            if server._protocols:
                break
            await asyncio.sleep(0.01)
        (proto,) = server._protocols
        assert isinstance(proto.engine, TargetConnection)
        assert proto.engine.local == ("127.0.0.2", port) == proto.local
        await server.unlisten(("127.0.0.1", 0))
        assert catalog.portals == more and list(catalog.listeners) == [("127.0.0.2", 0)]
        for _, p in bound:
            try:
                _, w = await asyncio.open_connection("127.0.0.1", p)
            except OSError:
                continue
            w.close()
            raise AssertionError(f"port {p} still listening")
        writer.close()
        await server.stop()

    asyncio.run(main())
