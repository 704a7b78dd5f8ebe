"""``pyiscsi admin status`` and ``pyiscsi top``: clients of a running target's admin socket."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import click

DEFAULT_PORTAL = "127.0.0.1:3260"

_SOCKET_HELP = ("the target's admin socket (default: derived from --portal, as "
                "`pyiscsi serve` derives it; or $PYISCSI_ADMIN_SOCKET)")


def _fail(message: str) -> NoReturn:
    click.echo(f"pyiscsi: error: {message}", err=True)
    sys.exit(2)


def resolve_socket(socket_path: str | None, portal: str) -> Path:
    from .admin import find_socket
    from .cli import parse_portal

    if socket_path:
        return Path(socket_path)
    try:
        host, port = parse_portal(portal)
    except ValueError as exc:
        _fail(str(exc))
    return find_socket(host, port)


def fetch_status(path: Path) -> dict[str, Any]:
    """One status snapshot from the admin socket (exit 2 with one line when unreachable)."""
    from .admin import request

    try:
        answer = request(path, "status")
    except (OSError, ValueError) as exc:
        _fail(f"admin socket {path}: {exc}")
    if not answer.get("ok"):
        _fail(f"admin socket {path}: {answer.get('error')}")
    status = answer["status"]
    assert isinstance(status, dict)
    return status


@click.group()
@click.option("--socket", "socket_path", metavar="PATH", envvar="PYISCSI_ADMIN_SOCKET",
              default=None, help=_SOCKET_HELP)
@click.option("--portal", default=DEFAULT_PORTAL, show_default=True, metavar="HOST:PORT",
              help="the target's first portal (locates the default socket)")
@click.pass_context
def admin(ctx: click.Context, socket_path: str | None, portal: str) -> None:
    """Ask a running target (`pyiscsi serve`) through its admin socket."""
    ctx.obj = resolve_socket(socket_path, portal)


@admin.command()
@click.option("--json", "as_json", is_flag=True, help="the raw snapshot, as JSON")
@click.pass_obj
def status(path: Path, as_json: bool) -> None:
    """Targets, LUNs, sessions, connections and counters of the running target."""
    snap = fetch_status(path)
    if as_json:
        click.echo(json.dumps(snap, indent=2))
        return
    from rich.console import Console

    from .top import status_view

    # not a terminal (a pipe, a file): wide enough that no column is cut
    Console(width=None if sys.stdout.isatty() else 200).print(status_view(snap))


@click.command()
@click.option("--socket", "socket_path", metavar="PATH", envvar="PYISCSI_ADMIN_SOCKET",
              default=None, help=_SOCKET_HELP)
@click.option("--portal", default=DEFAULT_PORTAL, show_default=True, metavar="HOST:PORT",
              help="the target's first portal (locates the default socket)")
@click.option("--interval", default=1.0, show_default=True, type=click.FloatRange(0.1, 60),
              help="seconds between refreshes")
@click.option("--count", default=0, type=click.IntRange(0), metavar="N",
              help="stop after N refreshes (0: until Ctrl-C)")
def top(socket_path: str | None, portal: str, interval: float, count: int) -> None:
    """Live MB/s, IOPS and latency per LUN and per session of a running target."""
    from rich.console import Console
    from rich.live import Live

    from .top import top_view

    path = resolve_socket(socket_path, portal)
    prev = fetch_status(path)
    console = Console()
    shown = 0
    try:
        with Live(top_view(prev, None), console=console, auto_refresh=False,
                  screen=False) as live:
            while not count or shown < count:
                time.sleep(interval)
                cur = fetch_status(path)
                live.update(top_view(cur, prev), refresh=True)
                prev = cur
                shown += 1
    except KeyboardInterrupt:
        pass
