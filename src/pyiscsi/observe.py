"""What ``pyiscsi serve`` runs beside the target to be watched: the Prometheus endpoint
(``--metrics``) and the admin socket (``--admin-socket``), both reading status snapshots
of the server's engines."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .admin import AdminServer, Verb, default_socket_path
from .metrics import MetricsServer, make_registry, on_loop, serve_metrics
from .target.server import TargetServer
from .target.status import snapshot

log = logging.getLogger("pyiscsi.server")

ADMIN_OFF = "off"


@dataclass
class Observers:
    """The endpoints started for one server (closed with it)."""

    metrics: MetricsServer | None = None
    admin: AdminServer | None = None

    async def close(self) -> None:
        if self.metrics is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.metrics.close)
            self.metrics = None
        if self.admin is not None:
            await self.admin.close()
            self.admin = None


async def start_observers(server: TargetServer, *, metrics: tuple[str, int] | None,
                          admin_socket: str | None,
                          verbs: dict[str, Verb] | None = None) -> Observers:
    """Start the metrics endpoint (when asked) and the admin socket (unless ``off``; by
    default at :func:`default_socket_path` of the first portal, and a failure there is a
    warning); ``verbs`` are served there beside ``status``. Prints ``metrics URL`` and
    ``admin PATH`` lines on stdout. Raises OSError when an endpoint that was asked for
    cannot be started."""
    catalog = server.catalog
    loop = asyncio.get_running_loop()

    def status() -> dict[str, Any]:
        return snapshot(catalog, runner=server.store_runner)

    observers = Observers()
    try:
        if metrics is not None:
            try:
                observers.metrics = serve_metrics(*metrics,
                                                  make_registry(on_loop(loop, status)))
            except OSError as exc:
                raise OSError(f"cannot serve metrics on {metrics[0]}:{metrics[1]}: "
                              f"{exc.strerror or exc}") from exc
            print(f"metrics {observers.metrics.url}", flush=True)
        if admin_socket != ADMIN_OFF and catalog.portals:
            explicit = admin_socket is not None
            path = Path(admin_socket) if admin_socket else default_socket_path(
                *catalog.portals[0])
            admin = AdminServer(path, {"status": lambda request: {"status": status()},
                                       **(verbs or {})})
            try:
                await admin.start()
            except OSError as exc:
                if explicit:
                    raise OSError(f"admin socket {path}: {exc}") from exc
                log.warning("no admin socket at %s: %s", path, exc)
            else:
                observers.admin = admin
                print(f"admin {path}", flush=True)
    except BaseException:
        await observers.close()
        raise
    return observers
