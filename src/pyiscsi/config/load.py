"""Reading and checking a configuration file (TOML, read with :mod:`tomllib`).

Everything is checked before anything is served: every mistake found is reported, each as
``FILE: KEY PATH: what is wrong`` (``target[0].luns[1]: bad LUN spec ...``), and messages
never quote a secret. Relative paths (LUN files, secret files) are taken from the file's own
directory. Nothing is opened or created here: ``pyiscsi config check`` runs this alone.
"""

from __future__ import annotations

import difflib
import os
import stat
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from ..backstore.spec import LunSpec, parse_lun_spec
from ..proto.chap import AuthConfig, ChapSecret
from ..scsi.lun import SERIAL
from ..target.authconfig import MIN_SECRET, NAME_PREFIXES, read_private
from ..target.catalog import LoginDefaults, Portal, is_wildcard
from .schema import (
    LIMIT_KEYS,
    LITERAL,
    Config,
    DiscoveryConfig,
    LunConfig,
    SecretSources,
    TargetConfig,
)

T = TypeVar("T")
MAX_LUN = 16383
"""Highest LUN (flat space addressing, SAM-5 §4.7.7.3)."""
MAX_NAME = 223
"""Longest iSCSI name in bytes (RFC 7143 §4.2.7.1)."""

_INT_RANGE = (512, 16777215)
"""MaxRecvDataSegmentLength, MaxBurstLength, FirstBurstLength (RFC 7143 §13.12-13.14)."""
LIMIT_RANGES: dict[str, tuple[float, float]] = {
    "max_sessions": (1, 65535),
    "max_connections": (1, 65534),
    "queue_depth": (1, 1024),
    "max_recv_data_segment_length": _INT_RANGE,
    "max_burst_length": _INT_RANGE,
    "first_burst_length": _INT_RANGE,
    "max_outstanding_r2t": (1, 65535),
    "login_timeout": (0.1, 3600),
    "nop_interval": (0, 3600),
    "nop_timeout": (0, 3600),
    "partial_pdu_timeout": (0, 3600),
    "immediate_commands": (1, 1024),
    "table_entries": (2, 4096),
    "held_data_limit": (0, 1 << 40),
}
"""What each ``[limits]`` key may be (the flags' ranges where there is a flag)."""
FLOAT_LIMITS = frozenset({"login_timeout", "nop_interval", "nop_timeout", "partial_pdu_timeout"})
NEGOTIATION_RANGES: dict[str, tuple[int, int]] = {
    "max_recv_data_segment_length": _INT_RANGE,
    "max_burst_length": _INT_RANGE,
    "first_burst_length": _INT_RANGE,
    "max_outstanding_r2t": (1, 65535),
}
NEGOTIATION_FLAGS = ("immediate_data", "initial_r2t")

_TOP_KEYS = ("target", "limits", "discovery", "ceph_conf", "gateway")
GATEWAY_KEYS = ("tpgt", "relative_port_id")
"""``[gateway]``: this process's target port (:mod:`pyiscsi.scsi.port`); 1..65535 each."""
_TARGET_KEYS = ("name", "portals", "luns", "lun", "allow", "chap", "mutual_chap", "alias",
                "negotiation")
_CHAP_KEYS = ("user", "secret", "secret_file")


@dataclass(frozen=True, slots=True)
class Issue:
    """One thing wrong: where (a key path, "" for the whole file) and what."""

    key: str
    message: str


class ConfigError(ValueError):
    """The file cannot be served; ``str()`` is one line per issue, each naming the file."""

    def __init__(self, path: str | os.PathLike[str], issues: list[Issue]) -> None:
        self.path = str(path)
        self.issues = issues
        super().__init__("\n".join(
            f"{self.path}: {i.key}: {i.message}" if i.key else f"{self.path}: {i.message}"
            for i in issues))


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and check a configuration file; :class:`ConfigError` lists what is wrong."""
    p = Path(path)
    try:
        raw = p.read_bytes()
        mode = p.stat().st_mode
    except OSError as exc:
        raise ConfigError(p, [Issue("", f"cannot read: {exc.strerror or exc}")]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(p, [Issue("", "not UTF-8")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(p, [Issue("", f"invalid TOML: {exc}")]) from None
    checker = _Checker(p, private=not mode & 0o077)
    config = checker.config(data)
    if checker.issues:
        raise ConfigError(p, checker.issues)
    return config


class _Checker:
    """Walks the parsed TOML, converting what is right and noting what is wrong."""

    def __init__(self, path: Path, *, private: bool) -> None:
        self.path = path
        self.base = path.parent
        self.private = private
        self.issues: list[Issue] = []
        self._serials: dict[str, str] = {}
        self._files: dict[str, str] = {}
        self.ceph_conf: str | None = None
        """The file's ``ceph_conf``: the default ceph.conf of its ``rbd:`` LUNs."""
        self._portals: dict[Portal, str] = {}
        self._source: str | None = None
        """Where the last secret read came from (see :data:`.schema.SecretSources`)."""
        self._sources: dict[str, SecretSources] = {}
        """The secret sources of each table with ``chap`` (by key path)."""

    def fail(self, key: str, message: str) -> None:
        self.issues.append(Issue(key, message))

    # ------------------------------------------------------------------ generic checks

    def keys(self, table: dict[str, Any], key: str, allowed: tuple[str, ...],
             required: tuple[str, ...] = ()) -> None:
        for name in table:
            if name not in allowed:
                close = difflib.get_close_matches(name, allowed, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.fail(_join(key, name), f"unknown key{hint}")
        for name in required:
            if name not in table:
                self.fail(_join(key, name), "missing")

    def typed(self, value: object, key: str, kind: type[T], what: str) -> T | None:
        if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
            return value
        self.fail(key, f"expected {what}, got {_kind(value)}")
        return None

    def table(self, value: object, key: str) -> dict[str, Any] | None:
        return self.typed(value, key, dict, "a table")

    def strings(self, value: object, key: str) -> list[str] | None:
        items = self.typed(value, key, list, "an array of strings")
        if items is None:
            return None
        out = []
        for n, item in enumerate(items):
            text = self.typed(item, f"{key}[{n}]", str, "a string")
            if text is not None:
                out.append(text)
        return out

    def number(self, value: object, key: str, low: float, high: float, *,
               real: bool = False) -> int | float | None:
        if isinstance(value, bool) or not isinstance(value, int | float) or (
                isinstance(value, float) and not real):
            self.fail(key, f"expected {'a number' if real else 'an integer'}, got {_kind(value)}")
            return None
        if not low <= value <= high:
            self.fail(key, f"{value} is out of range {low:g}..{high:g}")
            return None
        return value

    def name(self, value: object, key: str, what: str) -> str | None:
        text = self.typed(value, key, str, "a string")
        if text is None:
            return None
        if not text.startswith(NAME_PREFIXES) or len(text.encode()) > MAX_NAME or any(
                c.isspace() for c in text):
            self.fail(key, f"bad {what} {text!r}: must start with iqn., eui. or naa., "
                           f"without spaces, at most {MAX_NAME} bytes")
            return None
        return text

    # ------------------------------------------------------------------ the file

    def config(self, data: dict[str, Any]) -> Config:
        self.keys(data, "", _TOP_KEYS, ("target",))
        conf = data.get("ceph_conf")
        if conf is not None and (not isinstance(conf, str) or not conf):
            self.fail("ceph_conf", "expected the path of a ceph.conf")
        elif conf is not None:
            self.ceph_conf = str(self.base / conf)
        targets: list[TargetConfig] = []
        raw_targets = data.get("target", [])
        if isinstance(raw_targets, list):
            names: dict[str, str] = {}
            for n, raw in enumerate(raw_targets):
                key = f"target[{n}]"
                target = self.target(raw, key)
                if target is None:
                    continue
                if target.name in names:
                    self.fail(f"{key}.name", f"target {target.name} is also {names[target.name]}")
                    continue
                names[target.name] = key
                targets.append(target)
        elif "target" in data:
            self.fail("target", "expected [[target]] tables")
        limits = self.limits(data.get("limits", {}))
        self.burst_check(targets, dict(limits))
        discovery = self.discovery(data.get("discovery", {}))
        return Config(self.path, tuple(targets), limits, discovery,
                      self.gateway(data.get("gateway", {})))

    def gateway(self, value: object) -> tuple[tuple[str, int], ...]:
        table = self.table(value, "gateway")
        if table is None:
            return ()
        self.keys(table, "gateway", GATEWAY_KEYS)
        out: list[tuple[str, int]] = []
        for name in GATEWAY_KEYS:
            if name in table:
                number = self.number(table[name], f"gateway.{name}", 1, 65535)
                if number is not None:
                    out.append((name, int(number)))
        return tuple(out)

    def limits(self, value: object) -> tuple[tuple[str, int | float], ...]:
        table = self.table(value, "limits")
        if table is None:
            return ()
        self.keys(table, "limits", LIMIT_KEYS)
        out: list[tuple[str, int | float]] = []
        for name in LIMIT_KEYS:
            if name in table:
                low, high = LIMIT_RANGES[name]
                number = self.number(table[name], f"limits.{name}", low, high,
                                     real=name in FLOAT_LIMITS)
                if number is not None:
                    out.append((name, float(number) if name in FLOAT_LIMITS else number))
        return tuple(out)

    def burst_check(self, targets: list[TargetConfig],
                    limits: dict[str, int | float]) -> None:
        """FirstBurstLength must not exceed MaxBurstLength (RFC 7143 §13.14). A target that
        only lowers max_burst_length gets the default first burst lowered with it; one set
        in ``[limits]`` or by the target must fit."""
        first = limits.get("first_burst_length")
        burst = int(limits.get("max_burst_length", 1048576))
        if first is not None and first > burst:
            self.fail("limits.first_burst_length", f"{first} is more than max_burst_length "
                                                   f"{burst}")
        for n, target in enumerate(targets):
            own = target.login
            b = own.max_burst_length if own.max_burst_length is not None else burst
            if own.first_burst_length is not None and own.first_burst_length > b:
                self.fail(f"target[{n}].negotiation.first_burst_length",
                          f"{own.first_burst_length} is more than max_burst_length {b}")
            elif own.first_burst_length is None and first is not None and first > b:
                self.fail(f"target[{n}].negotiation.max_burst_length",
                          f"{b} is less than first_burst_length {first} of [limits]")

    def discovery(self, value: object) -> DiscoveryConfig:
        table = self.table(value, "discovery")
        if table is None:
            return DiscoveryConfig()
        self.keys(table, "discovery", ("enabled", "chap", "mutual_chap"))
        enabled = self.typed(table.get("enabled", True), "discovery.enabled", bool, "true/false")
        auth = self.auth(table, "discovery")
        return DiscoveryConfig(enabled=enabled if enabled is not None else True, auth=auth,
                               chap_files=self._sources.get("discovery", (None, None)))

    # ------------------------------------------------------------------ one target

    def target(self, value: object, key: str) -> TargetConfig | None:
        table = self.table(value, key)
        if table is None:
            return None
        self.keys(table, key, _TARGET_KEYS, ("name", "portals"))
        name = self.name(table.get("name"), f"{key}.name", "target name") \
            if "name" in table else None
        portals = self.portals(table.get("portals"), f"{key}.portals") \
            if "portals" in table else None
        luns = self.luns(table, key, name or "")
        allow = None
        if "allow" in table:
            names = self.strings(table["allow"], f"{key}.allow")
            checked = [self.name(n, f"{key}.allow[{i}]", "initiator name")
                       for i, n in enumerate(names or [])]
            allow = frozenset(n for n in checked if n is not None)
        auth = self.auth(table, key)
        alias = self.typed(table.get("alias", ""), f"{key}.alias", str, "a string") or ""
        if len(alias.encode()) > 255 or not alias.isprintable():
            self.fail(f"{key}.alias", "at most 255 bytes of printable text")
        login = self.negotiation(table.get("negotiation", {}), f"{key}.negotiation")
        if name is None or portals is None or luns is None:
            return None
        return TargetConfig(name=name, portals=portals, luns=luns, allow=allow, auth=auth,
                            alias=alias, login=login,
                            chap_files=self._sources.get(key, (None, None)))

    def portals(self, value: object, key: str) -> tuple[Portal, ...] | None:
        from ..cli import parse_portal

        texts = self.strings(value, key)
        if texts is None:
            return None
        if not texts:
            self.fail(key, "needs at least one HOST:PORT")
            return None
        out: list[Portal] = []
        for n, text in enumerate(texts):
            where = f"{key}[{n}]"
            try:
                portal = parse_portal(text)
            except ValueError as exc:
                self.fail(where, str(exc))
                continue
            if portal in out:
                self.fail(where, f"{text} is listed twice")
                continue
            clash = self.overlap(portal)
            if clash is not None:
                self.fail(where, f"{text} overlaps {clash} (both cannot be listened on)")
                continue
            self._portals.setdefault(portal, where)
            out.append(portal)
        return tuple(out)

    def overlap(self, portal: Portal) -> str | None:
        """Another portal of the process on the same port where one of the two is a
        wildcard (0.0.0.0, ::) of the same address family: a bind conflict."""
        host, port = portal
        for (other, other_port), where in self._portals.items():
            if port != other_port or port == 0 or other == host:
                continue
            if (":" in other) == (":" in host) and (is_wildcard(other) or is_wildcard(host)):
                return where
        return None

    def negotiation(self, value: object, key: str) -> LoginDefaults:
        table = self.table(value, key)
        if table is None:
            return LoginDefaults()
        self.keys(table, key, (*NEGOTIATION_RANGES, *NEGOTIATION_FLAGS))
        values: dict[str, Any] = {}
        for name, (low, high) in NEGOTIATION_RANGES.items():
            if name in table:
                values[name] = self.number(table[name], f"{key}.{name}", low, high)
        for name in NEGOTIATION_FLAGS:
            if name in table:
                values[name] = self.typed(table[name], f"{key}.{name}", bool, "true/false")
        return LoginDefaults(**values)

    # ------------------------------------------------------------------ LUNs

    def luns(self, table: dict[str, Any], key: str, target: str) -> tuple[LunConfig, ...] | None:
        out: list[LunConfig] = []
        ids: dict[int, str] = {}
        entries: list[tuple[str, object, int | None]] = []
        if "luns" in table:
            items = self.typed(table["luns"], f"{key}.luns", list, "an array")
            entries += [(f"{key}.luns[{n}]", item, n) for n, item in enumerate(items or [])]
        if "lun" in table:
            items = self.typed(table["lun"], f"{key}.lun", list, "[[target.lun]] tables")
            entries += [(f"{key}.lun[{n}]", item, None) for n, item in enumerate(items or [])]
        ok = True
        for where, item, position in entries:
            lun = self.lun(item, where, position, target)
            if lun is None:
                ok = False
                continue
            if lun.id in ids:
                self.fail(where, f"LUN {lun.id} is also {ids[lun.id]}")
                ok = False
                continue
            ids[lun.id] = where
            out.append(lun)
        return tuple(sorted(out, key=lambda lun: lun.id)) if ok else None

    def lun(self, value: object, key: str, position: int | None,
            target: str) -> LunConfig | None:
        """A spec string (LUN = its position in ``luns``) or a table with ``spec``, ``id``
        (required in ``[[target.lun]]``) and ``serial``."""
        if isinstance(value, str):
            table: dict[str, Any] = {"spec": value}
        else:
            checked = self.table(value, key)
            if checked is None:
                return None
            table = checked
            self.keys(table, key, ("id", "spec", "serial"),
                      ("spec",) if position is not None else ("id", "spec"))
        number = position
        if "id" in table:
            got = self.number(table["id"], f"{key}.id", 0, MAX_LUN)
            number = int(got) if got is not None else None
        spec_key = key if isinstance(value, str) else f"{key}.spec"
        text = (self.typed(table["spec"], spec_key, str, "a LUN spec string")
                if "spec" in table else None)
        serial = None
        if "serial" in table:
            serial = self.typed(table["serial"], f"{key}.serial", str, "a string")
            if serial is not None and not SERIAL.fullmatch(serial):
                self.fail(f"{key}.serial", f"bad serial {serial!r}: 1 to 64 of A-Z a-z 0-9 "
                                            ". _ : -")
                serial = None
            elif serial is not None and serial in self._serials:
                self.fail(f"{key}.serial", f"serial {serial} is also {self._serials[serial]}")
                serial = None
            elif serial is not None:
                self._serials[serial] = key
            if serial is None:
                return None
        if number is None or text is None:
            return None
        spec = self.spec(text, spec_key)
        if spec is None:
            return None
        return LunConfig(id=number, spec=spec, text=text, serial=serial)

    def spec(self, text: str, key: str) -> LunSpec | None:
        try:
            spec = parse_lun_spec(text)
        except ValueError as exc:
            self.fail(key, str(exc))
            return None
        if spec.kind == "rbd":
            return self.rbd_spec(spec, key)
        if spec.path is None:
            return spec
        path = self.base / spec.path
        spec = replace(spec, path=str(path))
        real = os.path.realpath(path)
        if real in self._files:
            self.fail(key, f"{spec.path} is already {self._files[real]}")
            return None
        self._files[real] = key
        exists = os.path.exists(path)
        if not exists and spec.size is None:
            self.fail(key, f"{spec.path} does not exist (give size= to create it)")
            return None
        if not exists and not path.parent.is_dir():
            self.fail(key, f"cannot create {spec.path}: {path.parent} is not a directory")
            return None
        return spec

    def rbd_spec(self, spec: LunSpec, key: str) -> LunSpec | None:
        """An ``rbd:`` spec: ``conf=`` relative to the file, else the file's ``ceph_conf``;
        one image serves one LUN of the file."""
        conf = str(self.base / spec.conf) if spec.conf is not None else self.ceph_conf
        name = f"rbd:{spec.image}"
        if name in self._files:
            self.fail(key, f"{name} is already {self._files[name]}")
            return None
        self._files[name] = key
        return replace(spec, conf=conf)

    # ------------------------------------------------------------------ CHAP

    def auth(self, table: dict[str, Any], key: str) -> AuthConfig | None:
        """``chap`` and ``mutual_chap`` of a target or ``[discovery]``."""
        self._source = None
        chap = self.secret(table["chap"], f"{key}.chap") if "chap" in table else None
        first, self._source = self._source, None
        mutual = (self.secret(table["mutual_chap"], f"{key}.mutual_chap")
                  if "mutual_chap" in table else None)
        self._sources[key] = (first, self._source)
        if "mutual_chap" in table and "chap" not in table:
            self.fail(f"{key}.mutual_chap", "mutual CHAP needs chap too")
            return None
        if chap is None:
            return None
        try:
            return AuthConfig(chap, mutual)
        except ValueError as exc:
            self.fail(f"{key}.mutual_chap", str(exc))
            return None

    def secret(self, value: object, key: str) -> ChapSecret | None:
        table = self.table(value, key)
        if table is None:
            return None
        self.keys(table, key, _CHAP_KEYS, ("user",))
        user = self.typed(table.get("user", ""), f"{key}.user", str, "a string")
        if "secret" in table and "secret_file" in table:
            self.fail(key, "give secret or secret_file, not both")
            return None
        secret: str | None = None
        if "secret" in table:
            secret = self.typed(table["secret"], f"{key}.secret", str, "a string")
            self._source = LITERAL
            if secret is not None and not self.private:
                mode = stat.S_IMODE(self.path.stat().st_mode)
                self.fail(f"{key}.secret", f"an inline secret in a file readable by group/"
                                           f"others (mode {mode:04o}): chmod 600 {self.path} "
                                           "or use secret_file")
                return None
        elif "secret_file" in table:
            where = self.typed(table["secret_file"], f"{key}.secret_file", str, "a path")
            secret = self.read_secret(where, f"{key}.secret_file") if where else None
            self._source = str((self.base / where).absolute()) if where else None
        else:
            self.fail(key, "needs secret or secret_file")
        if not user or secret is None:
            if user == "":
                self.fail(f"{key}.user", "empty")
            return None
        if len(secret.encode()) < MIN_SECRET:
            self.fail(key, f"the secret of user {user!r} is shorter than {MIN_SECRET} "
                           "characters")
            return None
        return ChapSecret(user, secret.encode())

    def read_secret(self, name: str, key: str) -> str | None:
        try:
            return read_secret_file(self.base / name)
        except ValueError as exc:
            self.fail(key, str(exc))
            return None


def read_secret_file(path: Path) -> str:
    """A secret file: regular, mode 0600 or stricter, UTF-8; one line (a final newline
    is not part of the secret). ValueError says what is wrong (never the secret)."""
    secret = read_private(path).removesuffix("\n").removesuffix("\r")
    if not secret or "\n" in secret:
        raise ValueError(f"{path} must hold the secret on one line")
    return secret


def check_secret(user: str, secret: str) -> ChapSecret:
    """A CHAP user and secret as the file takes them (ValueError otherwise)."""
    if not user:
        raise ValueError("empty CHAP user")
    if len(secret.encode()) < MIN_SECRET:
        raise ValueError(f"the secret of user {user!r} is shorter than {MIN_SECRET} characters")
    return ChapSecret(user, secret.encode())


def _seeded(base: Path, running: Config) -> _Checker:
    """A checker for one more target or LUN of ``running``: relative paths are taken from
    ``base``; files, serials and portals already served are known (no clash)."""
    checker = _Checker(base / "(request)", private=True)
    for target in running.targets:
        for lun in target.luns:
            where = f"LUN {lun.id} of {target.name}"
            if lun.spec.path is not None:
                checker._files[os.path.realpath(lun.spec.path)] = where
            if lun.serial is not None:
                checker._serials[lun.serial] = where
        for portal in target.portals:
            checker._portals.setdefault(portal, f"a portal of {target.name}")
    return checker


def check_target(table: dict[str, Any], base: Path, running: Config) -> TargetConfig:
    """One more ``[[target]]`` table for ``running`` (``pyiscsi admin add-target``):
    :class:`ConfigError` lists what is wrong."""
    checker = _seeded(base, running)
    target = checker.target(table, "target")
    if target is not None and running.target(target.name) is not None:
        checker.fail("target.name", f"target {target.name} exists")
    if target is not None:
        checker.burst_check([target], dict(running.limits))
    if checker.issues or target is None:
        raise ConfigError("request", checker.issues)
    return target


def check_lun(table: dict[str, Any], target: str, base: Path, running: Config) -> LunConfig:
    """One more LUN (a ``[[target.lun]]`` table: ``id``, ``spec``, ``serial``) of target
    ``target`` of ``running``: :class:`ConfigError` lists what is wrong."""
    checker = _seeded(base, running)
    lun = checker.lun(table, "lun", None, target)
    if checker.issues or lun is None:
        raise ConfigError("request", checker.issues)
    return lun


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def _kind(value: object) -> str:
    kinds: dict[type, str] = {str: "a string", bool: "true/false", int: "an integer",
                              float: "a number", list: "an array", dict: "a table"}
    return kinds.get(type(value), type(value).__name__)



def check_name(value: object, what: str = "initiator name") -> str:
    """An iSCSI name (``iqn.``, ``eui.``, ``naa.``) as the file takes it."""
    checker = _Checker(Path("request"), private=True)
    name = checker.name(value, what.replace(" ", "_"), what)
    if checker.issues or name is None:
        raise ConfigError("request", checker.issues)
    return name
