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


# ---------------------------------------------------------------------- changing verbs


def call(path: Path, verb: str, **fields: Any) -> dict[str, Any]:
    """One request (relative paths in it are the caller's: its cwd goes along); the
    answer's fields printed as JSON, or the error on stderr and exit 2."""
    import os

    from .admin import request

    try:
        answer = request(path, verb, timeout=60.0, cwd=os.getcwd(), **fields)
    except (OSError, ValueError) as exc:
        _fail(f"admin socket {path}: {exc}")
    if not answer.get("ok"):
        _fail(str(answer.get("error")))
    answer.pop("ok")
    click.echo(json.dumps(answer))
    return answer


def _read_secret(secret_file: str | None) -> dict[str, str]:
    """The secret as a request field: a file reference (the server reads it, ``save``
    refers to it) or one line of stdin. Never a command-line argument."""
    if secret_file is not None:
        return {"secret_file": str(Path(secret_file).absolute())}
    if sys.stdin.isatty():
        import getpass

        secret = getpass.getpass("CHAP secret: ")
    else:
        secret = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    if not secret:
        _fail("no secret on stdin (or give --secret-file)")
    return {"secret": secret}


@admin.command("add-target")
@click.argument("name")
@click.option("--portal", "portals", multiple=True, required=True, metavar="HOST:PORT",
              help="a portal of the target (repeatable)")
@click.option("--lun", "luns", multiple=True, metavar="SPEC",
              help="LUN 0, 1, ... as --lun of serve takes them (repeatable)")
@click.option("--allow", "allow", multiple=True, metavar="IQN",
              help="InitiatorName allowed to log in (repeatable; default everyone)")
@click.option("--chap-user", default=None, metavar="USER",
              help="require CHAP; the secret from --secret-file or stdin")
@click.option("--secret-file", default=None, metavar="FILE", help="mode 0600 secret file")
@click.pass_obj
def add_target(path: Path, name: str, portals: tuple[str, ...], luns: tuple[str, ...],
               allow: tuple[str, ...], chap_user: str | None, secret_file: str | None) -> None:
    """Serve a new target."""
    fields: dict[str, Any] = {"name": name, "portals": list(portals), "luns": list(luns)}
    if allow:
        fields["allow"] = list(allow)
    if chap_user is not None:
        fields["chap"] = {"user": chap_user, **_read_secret(secret_file)}
    call(path, "add-target", **fields)


@admin.command("remove-target")
@click.argument("name")
@click.pass_obj
def remove_target(path: Path, name: str) -> None:
    """Stop serving a target: its sessions end."""
    call(path, "remove-target", target=name)


@admin.command("add-lun")
@click.argument("target")
@click.argument("spec")
@click.option("--id", "number", type=click.IntRange(0, 16383), default=None,
              help="the LUN (default: the lowest free one)")
@click.option("--serial", default=None, help="a stored unit serial number")
@click.pass_obj
def add_lun(path: Path, target: str, spec: str, number: int | None,
            serial: str | None) -> None:
    """Serve one more LUN (SPEC as --lun of serve takes it)."""
    fields: dict[str, Any] = {"target": target, "spec": spec}
    if number is not None:
        fields["id"] = number
    if serial is not None:
        fields["serial"] = serial
    call(path, "add-lun", **fields)


@admin.command("remove-lun")
@click.argument("target")
@click.argument("lun", type=click.IntRange(0, 16383))
@click.pass_obj
def remove_lun(path: Path, target: str, lun: int) -> None:
    """Stop serving a LUN: its I/O in flight is aborted, its store flushed and closed."""
    call(path, "remove-lun", target=target, lun=lun)


@admin.command("resize-lun")
@click.argument("target")
@click.argument("lun", type=click.IntRange(0, 16383))
@click.argument("size")
@click.pass_obj
def resize_lun(path: Path, target: str, lun: int, size: str) -> None:
    """Grow a LUN to SIZE (bytes or K/M/G/T); initiators get CAPACITY DATA HAS CHANGED."""
    call(path, "resize-lun", target=target, lun=lun, size=size)


@admin.command("add-acl")
@click.argument("target")
@click.argument("initiator")
@click.pass_obj
def add_acl(path: Path, target: str, initiator: str) -> None:
    """Let INITIATOR log in to TARGET (a target open to everyone gets an ACL of one)."""
    call(path, "add-acl", target=target, initiator=initiator)


@admin.command("remove-acl")
@click.argument("target")
@click.argument("initiator")
@click.pass_obj
def remove_acl(path: Path, target: str, initiator: str) -> None:
    """INITIATOR may no longer log in to TARGET; its sessions end."""
    call(path, "remove-acl", target=target, initiator=initiator)


@admin.command("set-chap")
@click.argument("target")
@click.option("--user", default=None, metavar="USER", help="the CHAP user")
@click.option("--secret-file", default=None, metavar="FILE",
              help="mode 0600 file holding the secret (else one line of stdin)")
@click.option("--none", "off", is_flag=True, help="no CHAP any more")
@click.pass_obj
def set_chap(path: Path, target: str, user: str | None, secret_file: str | None,
             off: bool) -> None:
    """TARGET's CHAP credentials for the logins to come."""
    if off:
        call(path, "set-chap", target=target, none=True)
        return
    if user is None:
        _fail("give --user (or --none)")
    call(path, "set-chap", target=target, user=user, **_read_secret(secret_file))


@admin.command("logout-session")
@click.argument("tsih", type=click.IntRange(1, 0xFFFF))
@click.option("--within", type=click.IntRange(0, 3600), default=5, show_default=True,
              help="seconds the initiator has to log out before it is dropped")
@click.pass_obj
def logout_session(path: Path, tsih: int, within: int) -> None:
    """Ask the initiator of session TSIH to log out (iSCSI Async Message)."""
    call(path, "logout-session", tsih=tsih, within=within)


@admin.command("save")
@click.argument("target_path", metavar="[PATH]", required=False)
@click.pass_obj
def save(path: Path, target_path: str | None) -> None:
    """Write the running configuration as TOML (default: the --config file)."""
    if target_path is None:
        call(path, "save")
    else:
        call(path, "save", file=target_path)
