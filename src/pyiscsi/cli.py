"""The ``pyiscsi`` command: ``serve`` runs the target; the initiator commands talk to one."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

if TYPE_CHECKING:
    from .config.reload import Reloader
    from .target.server import TargetServer

DEFAULT_TARGET = "iqn.2026-11.org.pyiscsi:disk"
DEFAULT_PORTAL = "127.0.0.1:3260"
DEFAULT_LUN = "file:pyiscsi-data/lun0.img,size=1GiB"


def _fail(message: str) -> NoReturn:
    click.echo(f"pyiscsi: error: {message}", err=True)
    sys.exit(2)


def parse_portal(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT`` -> (host, port); port 0 picks a free one."""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(f"bad portal {text!r}: expected [IPV6]:PORT")
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host or ":" in host:
            raise ValueError(f"bad portal {text!r}: expected HOST:PORT")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"bad portal {text!r}: port must be 0..65535")
    return host, int(port_text)


def parse_sanitize_pace(text: str) -> int:
    """``--sanitize-pace``: bytes a second like a LUN size (``512M``, ``1G``); 0 = no limit."""
    from .backstore.spec import parse_size

    try:
        return parse_size(text)
    except ValueError:
        raise ValueError(f"bad sanitize pace {text!r}: expected bytes a second with an "
                         "optional K/M/G suffix (0: unlimited)") from None


def url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--log-level", default="warning", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
@click.option("--log-format", default="text", show_default=True,
              type=click.Choice(["text", "json"]),
              help="json: one JSON object per line (time, level, logger, message, target, "
                   "tsih, conn, peer)")
def cli(log_level: str, log_format: str) -> None:
    """pyiscsi: an iSCSI target and initiator with tag-steered direct data placement."""
    from .logfmt import configure

    configure(log_level, log_format)


@cli.command()
@click.option("--portal", "portals", multiple=True, metavar="HOST:PORT",
              help=f"listen address (repeatable; default {DEFAULT_PORTAL}; [::1]:3260 for IPv6)")
@click.option("--target", "target_name", default=DEFAULT_TARGET, show_default=True,
              metavar="IQN", help="the target's name")
@click.option("--lun", "luns", multiple=True, metavar="SPEC",
              help="ram:SIZE | file:PATH[,size=SIZE] | rbd:POOL/IMAGE[,size=SIZE][,conf=PATH]"
                   "[,id=CLIENT][,timeout=SECONDS] with flags ro, bs=N (repeatable; LUN 0, 1..)")
@click.option("--ceph-conf", "ceph_conf", type=click.Path(dir_okay=False), default=None,
              metavar="PATH", help="the ceph.conf of rbd: LUNs without conf= (default: "
                                   "$CEPH_CONF, then /etc/ceph/ceph.conf)")
@click.option("--stats", "stats_path", type=click.Path(dir_okay=False), default=None,
              help="write placement/copy counters as JSON to this file every second")
@click.option("--queue-depth", default=128, show_default=True, type=click.IntRange(1, 1024),
              help="commands a session may have in flight (the CmdSN window)")
@click.option("--max-sessions", default=64, show_default=True, type=click.IntRange(1, 65535))
@click.option("--max-connections", default=256, show_default=True,
              type=click.IntRange(1, 65534), help="TCP connections open at once")
@click.option("--login-timeout", default=15.0, show_default=True,
              type=click.FloatRange(0.1, 3600), help="seconds a login may take")
@click.option("--nop-interval", default=5.0, show_default=True, type=click.FloatRange(0, 3600),
              help="seconds of silence before a NOP-In ping (0: never)")
@click.option("--nop-timeout", default=30.0, show_default=True, type=click.FloatRange(0, 3600),
              help="seconds of silence before the peer is declared dead (0: never)")
@click.option("--partial-pdu-timeout", default=10.0, show_default=True,
              type=click.FloatRange(0, 3600),
              help="seconds a connection may sit on part of a PDU before it is closed (0: never)")
@click.option("--immediate-commands", default=16, show_default=True, type=click.IntRange(1, 1024),
              help="SCSI commands with the immediate bit a session may run at once")
@click.option("--loop", "loop_kind", default="auto", show_default=True,
              type=click.Choice(["auto", "uvloop", "asyncio"]))
@click.option("--chap", "chap", metavar="USER:SECRET", default=None,
              help="require CHAP for every login, discovery too (or $PYISCSI_CHAP; command "
                   "lines show in ps: prefer --auth-file)")
@click.option("--mutual-chap", "mutual_chap", metavar="USER:SECRET", default=None,
              help="answer mutual CHAP with these (or $PYISCSI_MUTUAL_CHAP)")
@click.option("--allow", "allow", multiple=True, metavar="IQN",
              help="InitiatorName allowed to log in (repeatable; default: everyone)")
@click.option("--auth-file", "auth_file", type=click.Path(dir_okay=False), default=None,
              metavar="PATH", help="mode 0600 file of chap=, mutual-chap=, allow= lines")
@click.option("--sanitize-pace", "sanitize_pace", default="1G", show_default=True,
              metavar="RATE", help="bytes a second a SANITIZE erases, per LUN (K/M/G "
                                   "suffixes; 0: as fast as it goes)")
@click.option("--metrics", "metrics", metavar="HOST:PORT", default=None,
              help="serve Prometheus metrics at http://HOST:PORT/metrics (port 0: a free one; "
                   "the URL is printed)")
@click.option("--admin-socket", "admin_socket", metavar="PATH", default=None,
              help="the admin socket (`pyiscsi admin`, `pyiscsi top`); default "
                   "/run/pyiscsi/HOST-PORT.sock of the first portal (else under "
                   "$XDG_RUNTIME_DIR or /tmp); off: none")
@click.option("--tpgt", "tpgt", type=click.IntRange(1, 65535), default=None,
              help="Target Portal Group Tag, also the SCSI target port group (default: "
                   "derived from the first portal, README: Two gateways)")
@click.option("--relative-port-id", "relative_port_id", type=click.IntRange(1, 65535),
              default=None, help="relative target port identifier (VPD page 83h; default: "
                                 "derived from the first portal)")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              metavar="FILE.toml", help="serve the targets of this file (SIGHUP re-reads it); "
              "no target flags then")
def serve(portals: tuple[str, ...], target_name: str, luns: tuple[str, ...],
          stats_path: str | None, queue_depth: int, max_sessions: int, max_connections: int,
          login_timeout: float, nop_interval: float, nop_timeout: float,
          partial_pdu_timeout: float, immediate_commands: int, loop_kind: str,
          chap: str | None, mutual_chap: str | None, allow: tuple[str, ...],
          auth_file: str | None, sanitize_pace: str, metrics: str | None = None,
          admin_socket: str | None = None, config_path: str | None = None,
          tpgt: int | None = None, relative_port_id: int | None = None,
          ceph_conf: str | None = None) -> None:
    """Serve LUNs to iSCSI initiators (Ctrl-C or SIGTERM stops cleanly)."""
    try:
        pace = parse_sanitize_pace(sanitize_pace)
        metrics_address = parse_portal(metrics) if metrics is not None else None
    except ValueError as exc:
        _fail(str(exc))
    observe: dict[str, Any] = {"metrics": metrics_address, "admin_socket": admin_socket,
                               "gateway": {"tpgt": tpgt, "relative_port_id": relative_port_id}}
    if config_path is not None:
        _serve_config(config_path, stats_path, loop_kind, pace, observe)
        return
    from .backstore.spec import open_store, parse_lun_spec, with_ceph_conf
    from .scsi.lun import LogicalUnit
    from .target.authconfig import exposure_warning, load_access
    from .target.catalog import Catalog, Limits, Target

    try:
        addresses = [parse_portal(p) for p in (portals or (DEFAULT_PORTAL,))]
        specs = [with_ceph_conf(parse_lun_spec(s), ceph_conf) for s in (luns or (DEFAULT_LUN,))]
        access = load_access(chap=chap, mutual=mutual_chap, allow=allow, auth_file=auth_file)
    except ValueError as exc:
        _fail(str(exc))
    warning = exposure_warning([host for host, _ in addresses], access)
    if warning:
        click.echo(warning, err=True)
    if not luns:
        Path("pyiscsi-data").mkdir(exist_ok=True)
    if not target_name.startswith(("iqn.", "eui.", "naa.")):
        _fail(f"bad target name {target_name!r}: must start with iqn., eui. or naa.")
    target = Target(target_name, allowed_initiators=access.allowed)
    try:
        for number, spec in enumerate(specs):
            target.luns[number] = LogicalUnit(number, open_store(spec), target_name,
                                              sanitize_pace=pace, shared=spec.shared)
    except (OSError, ValueError) as exc:
        _fail(str(exc))
    for lu in target.luns.values():
        lu.peers = lambda: sorted(target.luns)  # REPORT LUNS lists the target's LUNs
        lu.siblings = lambda: target.luns  # EXTENDED COPY between the target's LUNs
    limits = Limits(queue_depth=queue_depth, max_sessions=max_sessions,
                    max_connections=max_connections, login_timeout=login_timeout,
                    nop_interval=nop_interval, nop_timeout=nop_timeout,
                    partial_pdu_timeout=partial_pdu_timeout,
                    immediate_commands=immediate_commands)
    catalog = Catalog([target], limits=limits, auth=access.auth)
    running = _flag_config(target_name, addresses, luns or (DEFAULT_LUN,), specs,
                           access.allowed)
    _run(_serve(catalog, addresses, stats_path, config=running, from_file=False, **observe),
         loop_kind)


def _flag_config(name: str, portals: list[tuple[str, int]], texts: tuple[str, ...],
                 specs: list[Any], allowed: frozenset[str] | None) -> Any:
    """The running config of a target given by flags (what ``pyiscsi admin`` edits and
    ``save`` writes; the process-wide CHAP stays out of it)."""
    from dataclasses import replace

    from .config.schema import Config, LunConfig, TargetConfig

    luns = tuple(LunConfig(n, replace(spec, path=str(Path(spec.path).absolute()))
                           if spec.path is not None else spec, text)
                 for n, (spec, text) in enumerate(zip(specs, texts, strict=True)))
    return Config(Path(), (TargetConfig(name, tuple(portals), luns, allowed),))


TARGET_FLAGS = {"portals": "--portal", "target_name": "--target", "luns": "--lun",
                "ceph_conf": "--ceph-conf",
                "chap": "--chap", "mutual_chap": "--mutual-chap", "allow": "--allow",
                "auth_file": "--auth-file"}
"""``serve`` flags that say what to serve: a configuration file says it instead."""
LIMIT_FLAGS = ("queue_depth", "max_sessions", "max_connections", "login_timeout",
               "nop_interval", "nop_timeout", "partial_pdu_timeout", "immediate_commands")
"""``serve`` flags that are process-wide limits: given with --config, they win over the
file's ``[limits]``."""


def _serve_config(path: str, stats_path: str | None, loop_kind: str, pace: int,
                  observe: dict[str, Any]) -> None:
    """``serve --config FILE``: the file's targets; limit flags win over its [limits]."""
    import os

    from .config.build import build_catalog, exposure_warnings
    from .config.load import ConfigError, load_config
    from .target.authconfig import ENV_CHAP, ENV_MUTUAL_CHAP

    ctx = click.get_current_context()
    given = [ctx.get_parameter_source(name) for name in (*TARGET_FLAGS, *LIMIT_FLAGS)]
    explicit = {name for name, source in zip((*TARGET_FLAGS, *LIMIT_FLAGS), given, strict=True)
                if source not in (None, click.core.ParameterSource.DEFAULT)}
    clash = [flag for name, flag in TARGET_FLAGS.items() if name in explicit]
    if clash:
        _fail(f"{', '.join(clash)} cannot be combined with --config: the file says what to "
              "serve (put it there)")
    for env in (ENV_CHAP, ENV_MUTUAL_CHAP):
        if os.environ.get(env):
            click.echo(f"pyiscsi: WARNING: ${env} is ignored with --config (give targets "
                       "chap = {...} in the file)", err=True)
    try:
        config = load_config(path)
    except ConfigError as exc:
        _fail("\npyiscsi: error: ".join(str(exc).splitlines()))
    limits = config.make_limits({name: ctx.params[name] for name in LIMIT_FLAGS
                                 if name in explicit})
    for warning in exposure_warnings(config):
        click.echo(warning, err=True)
    try:
        catalog = build_catalog(config, limits)
    except (OSError, ValueError) as exc:
        _fail(f"{path}: {getattr(exc, 'strerror', None) or exc}")
    for target in catalog.targets.values():
        for lu in target.luns.values():
            lu.sanitize_pace = pace
    observe["gateway"] = {**dict(config.gateway),
                          **{k: v for k, v in observe["gateway"].items() if v is not None}}
    _run(_serve(catalog, config.portals, stats_path, config=config, **observe), loop_kind)


async def _serve(catalog: object, addresses: list[tuple[str, int]],
                 stats_path: str | None, *, config: object | None = None,
                 from_file: bool = True,
                 metrics: tuple[str, int] | None = None,
                 admin_socket: str | None = None,
                 gateway: dict[str, int | None] | None = None) -> None:
    from .observe import start_observers
    from .scsi.port import derived_port
    from .target.catalog import Catalog
    from .target.server import TargetServer, write_stats

    assert isinstance(catalog, Catalog)
    gateway = gateway or {}
    tpgt, relative_id = gateway.get("tpgt"), gateway.get("relative_port_id")
    if addresses and addresses[0][1]:  # known before listening: no login sees another TPGT
        catalog.set_port(derived_port(*addresses[0], group=tpgt, relative_id=relative_id))
    server = TargetServer(catalog)
    try:
        bound = await server.start(addresses)
    except OSError as exc:
        _close_stores(catalog)
        _fail(f"cannot listen: {exc.strerror or exc}")
    if bound and not addresses[0][1]:  # port 0: derived from the port it got
        catalog.set_port(derived_port(*bound[0], group=tpgt, relative_id=relative_id))
    loop = asyncio.get_running_loop()
    try:  # shared LUs on a cluster: unit attentions reach the other gateways
        server.open_event_links()
    except OSError as exc:
        await server.stop()
        _close_stores(catalog)
        _fail(f"cannot watch the events of a shared LUN: {exc}")
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    reloader = _reloader(server, config, from_file)  # SIGHUP: once "serving" is printed
    for target in catalog.targets.values():
        for host, port in catalog.target_portals(target):
            for lun in target.luns:
                print(f"serving iscsi://{url_host(host)}:{port}/{target.name}/{lun}", flush=True)
    try:
        observers = await start_observers(server, metrics=metrics, admin_socket=admin_socket,
                                          verbs=_admin_verbs(server, reloader, from_file))
    except OSError as exc:
        await server.stop()
        _fail(str(exc))
    try:
        while not stop.is_set():
            if stats_path:
                write_stats(stats_path, server.stats)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=1.0)
    finally:
        for target in catalog.targets.values():
            for lu in target.luns.values():
                lu.sanitize.stopping = True  # a running erase ends at its next chunk
        await observers.close()
        if reloader is not None:
            await reloader.close()
        await server.stop()
        if stats_path:
            write_stats(stats_path, server.stats)
        _close_stores(catalog)


def _close_stores(catalog: Any) -> None:
    for target in catalog.targets.values():
        for lu in target.luns.values():
            lu.store.close()


def _admin_verbs(server: TargetServer, reloader: Reloader | None,
                 from_file: bool) -> dict[str, Any]:
    """The admin socket's verbs that change what is served (:mod:`pyiscsi.config.live`)."""
    from .config.live import Administration

    if reloader is None:
        return {}
    file = reloader.config.path if from_file else None
    return dict(Administration(server, reloader, file=file).verbs())


def _reloader(server: TargetServer, config: object | None,
              from_file: bool = True) -> Reloader | None:
    """The running config's keeper (admin verbs); with --config, SIGHUP re-reads the file
    (:mod:`pyiscsi.config.reload`)."""
    from .config.reload import Reloader
    from .config.schema import Config

    if not isinstance(config, Config):
        return None
    reloader = Reloader(server, config)
    if not from_file:
        return reloader
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[object]] = set()

    def hup() -> None:
        task: asyncio.Task[object] = loop.create_task(reloader.reload())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    loop.add_signal_handler(signal.SIGHUP, hup)
    return reloader


def _run(coro: object, loop_kind: str) -> None:
    import collections.abc

    assert isinstance(coro, collections.abc.Coroutine)
    if loop_kind in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if loop_kind == "uvloop":
                _fail("uvloop is not installed")
        else:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(coro)
            return
    asyncio.run(coro)


from .initiator.commands import COMMANDS as _INITIATOR_COMMANDS  # noqa: E402

for _cmd in _INITIATOR_COMMANDS:
    cli.add_command(_cmd)

from .admin_cli import admin as _admin  # noqa: E402
from .admin_cli import top as _top  # noqa: E402

cli.add_command(_admin)
cli.add_command(_top)



@cli.group("config")
def config_group() -> None:
    """Configuration files for `serve --config` (README: Configuration)."""


@config_group.command("check")
@click.argument("path", metavar="FILE", type=click.Path(dir_okay=False))
def config_check(path: str) -> None:
    """Check FILE as `serve --config FILE` reads it, without serving: exit 2 and one line
    per mistake when it is wrong; else what it serves, LUN identities included."""
    from .config.build import exposure_warnings
    from .config.load import ConfigError, load_config
    from .scsi.lun import identity

    try:
        config = load_config(path)
    except ConfigError as exc:
        _fail("\npyiscsi: error: ".join(str(exc).splitlines()))
    for warning in exposure_warnings(config):
        click.echo(warning, err=True)
    luns = sum(len(t.luns) for t in config.targets)
    click.echo(f"{path}: ok: {len(config.targets)} targets, {luns} LUNs, "
               f"{len(config.portals)} portals")
    for target in config.targets:
        portals = " ".join(f"{url_host(h)}:{p}" for h, p in target.portals)
        chap = "mutual CHAP" if target.auth and target.auth.mutual else (
            "CHAP" if target.auth else "no CHAP")
        click.echo(f"  {target.name}  {portals}  {chap}")
        for lun in target.luns:
            serial, naa = identity(target.name, lun.id, lun.store_name, lun.serial,
                                   lun.stable_name)
            kind = "stored" if lun.serial else "derived"
            click.echo(f"    LUN {lun.id}: {lun.text}  serial {serial} ({kind}) naa {naa.hex()}")


def main(argv: list[str] | None = None) -> None:
    """Entry point: click's usage errors become one line on stderr and exit code 2."""
    try:
        cli.main(args=argv, prog_name="pyiscsi", standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.format_message(), err=True)  # bare `pyiscsi`: the help text
        sys.exit(2)
    except click.ClickException as exc:
        click.echo(f"pyiscsi: error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code if exc.exit_code != 1 else 2)


if __name__ == "__main__":  # pragma: no cover
    main()
