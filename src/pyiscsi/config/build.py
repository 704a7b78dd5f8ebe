"""From a checked :class:`~.schema.Config` to what the server serves: a
:class:`~pyiscsi.target.catalog.Catalog` with its targets, stores opened."""

from __future__ import annotations

import logging

from ..backstore.spec import open_store
from ..scsi.lun import LogicalUnit
from ..target.authconfig import is_loopback
from ..target.catalog import Catalog, Limits, Target
from .schema import Config, LunConfig, TargetConfig

log = logging.getLogger("pyiscsi.config")


def open_lun(target: str, lun: LunConfig) -> LogicalUnit:
    """Open one LUN's store (OSError/ValueError when it cannot be)."""
    return LogicalUnit(lun.id, open_store(lun.spec), target, serial=lun.serial,
                       shared=lun.spec.shared)


def build_target(config: TargetConfig) -> Target:
    """A target with its LUNs opened; a store that fails closes the ones opened before."""
    target = Target(config.name, alias=config.alias, allowed_initiators=config.allow,
                    portals=config.portals, auth=config.auth, login=config.login)
    try:
        for lun in config.luns:
            target.add_lun(open_lun(config.name, lun))
    except BaseException:
        close_target(target)
        raise
    return target


def close_target(target: Target) -> None:
    for lu in target.luns.values():
        lu.store.close()


def build_catalog(config: Config, limits: Limits) -> Catalog:
    """Every target of the file, its LUNs opened (OSError/ValueError: none stays open)."""
    targets: list[Target] = []
    try:
        for t in config.targets:
            targets.append(build_target(t))
    except BaseException:
        for target in targets:
            close_target(target)
        raise
    catalog = Catalog(targets, limits=limits)
    catalog.discovery_auth = config.discovery.auth
    catalog.discovery_enabled = config.discovery.enabled
    return catalog


def exposure_warnings(config: Config) -> list[str]:
    """A warning per target served on a non-loopback portal without CHAP."""
    out = []
    for target in config.targets:
        exposed = [f"{h}:{p}" for h, p in target.portals if not is_loopback(h)]
        if exposed and target.auth is None:
            out.append(f"pyiscsi: WARNING: {config.path}: target {target.name} is served on "
                       f"{', '.join(exposed)} WITHOUT CHAP: anyone who can reach the portal "
                       "can read and write its LUNs. Give it chap = { user = ..., "
                       "secret_file = ... }.")
    return out
