"""The configuration file's typed form: what ``pyiscsi serve --config FILE.toml`` serves.

Every value is checked and converted by :mod:`.load`; these frozen dataclasses only hold the
result, so two of them compare equal exactly when they serve the same thing (a reload
compares old and new with ``==``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from ..backstore.spec import LunSpec
from ..proto.chap import AuthConfig
from ..target.catalog import Limits, LoginDefaults, Portal

LITERAL = ""
"""In :attr:`TargetConfig.chap_files`: the secret was written in the file itself."""
SecretSources = tuple[str | None, str | None]
"""Where the ``chap`` and ``mutual_chap`` secrets came from: the absolute path of their
``secret_file``, :data:`LITERAL` (``secret = "..."`` in the loaded file), or None (given to
the running server: ``pyiscsi admin set-chap`` from stdin). ``pyiscsi admin save`` writes a
file reference, a literal only where it was one."""


@dataclass(frozen=True, slots=True)
class LunConfig:
    """One LUN: ``spec`` as ``--lun`` takes it (a relative path resolved against the
    file's directory), and a stored serial (None: derived from target name, LUN id and
    the store's path, as for ``--lun``)."""

    id: int
    spec: LunSpec
    text: str
    """The spec as written (for messages)."""
    serial: str | None = None

    @property
    def stable_name(self) -> str | None:
        """The cluster-wide name its store will have (an ``rbd:`` image), else None."""
        return f"rbd:{self.spec.image}" if self.spec.kind == "rbd" else None

    @property
    def store_name(self) -> str:
        """The name its store will have (what a derived identity is made from)."""
        if self.spec.image is not None:
            return f"rbd:{self.spec.image}"  # what every gateway of the image derives alike
        return str(Path(self.spec.path)) if self.spec.path is not None else self.spec.kind


@dataclass(frozen=True, slots=True)
class TargetConfig:
    """One ``[[target]]``."""

    name: str
    portals: tuple[Portal, ...]
    luns: tuple[LunConfig, ...] = ()
    allow: frozenset[str] | None = None
    """InitiatorNames allowed to log in; None = everyone."""
    auth: AuthConfig | None = None
    alias: str = ""
    login: LoginDefaults = field(default_factory=LoginDefaults)
    chap_files: SecretSources = field(default=(None, None), compare=False)

    def lun(self, number: int) -> LunConfig | None:
        return next((lun for lun in self.luns if lun.id == number), None)


@dataclass(frozen=True, slots=True)
class DiscoveryConfig:
    """``[discovery]``: whether SendTargets sessions may log in, and their own CHAP
    (None: none, whatever the targets require)."""

    enabled: bool = True
    auth: AuthConfig | None = None
    chap_files: SecretSources = field(default=(None, None), compare=False)


LIMIT_KEYS: tuple[str, ...] = tuple(f.name for f in fields(Limits))
"""``[limits]`` takes exactly the fields of :class:`~pyiscsi.target.catalog.Limits`."""


@dataclass(frozen=True, slots=True)
class Config:
    """A whole configuration file."""

    path: Path
    targets: tuple[TargetConfig, ...] = ()
    limits: tuple[tuple[str, int | float], ...] = ()
    """The ``[limits]`` keys the file sets (the others keep their defaults or flags)."""
    discovery: DiscoveryConfig = field(default_factory=DiscoveryConfig)
    gateway: tuple[tuple[str, int], ...] = ()
    """The ``[gateway]`` keys the file sets (``tpgt``, ``relative_port_id``): this
    process's target port; unset ones derive from the first portal (:mod:`pyiscsi.scsi.port`)."""

    def target(self, name: str) -> TargetConfig | None:
        return next((t for t in self.targets if t.name == name), None)

    @property
    def portals(self) -> list[Portal]:
        """Every portal of every target, once each, in order: where the process listens."""
        out: list[Portal] = []
        for target in self.targets:
            out += [p for p in target.portals if p not in out]
        return out

    def make_limits(self, overrides: dict[str, int | float] | None = None) -> Limits:
        """The process's limits: defaults, then the file's ``[limits]``, then ``overrides``
        (command-line flags)."""
        return Limits(**{**dict(self.limits), **(overrides or {})})  # type: ignore[arg-type]
