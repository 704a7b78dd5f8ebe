"""``pyiscsi serve --config FILE.toml``: many targets from one file (:mod:`.schema` the typed
form, :mod:`.load` reading and checking, :mod:`.build` the catalog, :mod:`.reload` SIGHUP)."""

from .load import ConfigError, Issue, load_config
from .schema import Config, DiscoveryConfig, LunConfig, TargetConfig

__all__ = ["Config", "ConfigError", "DiscoveryConfig", "Issue", "LunConfig", "TargetConfig",
           "load_config"]
