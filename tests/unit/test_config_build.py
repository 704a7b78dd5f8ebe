"""Building the catalog from a checked configuration: targets, stores, identities."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyiscsi.config.build import build_catalog, exposure_warnings
from pyiscsi.config.load import load_config
from pyiscsi.scsi.lun import identity
from pyiscsi.target.catalog import Limits

TEXT = '''
[discovery]
enabled = false
[[target]]
name = "iqn.2026-11.org.example:a"
portals = ["127.0.0.1:0"]
luns = ["file:a.img,size=1MiB", "ram:1MiB"]
allow = ["iqn.2026-11.org.example:host"]
negotiation = { max_burst_length = 65536 }
[[target]]
name = "iqn.2026-11.org.example:b"
alias = "bee"
portals = ["192.0.2.1:3260", "127.0.0.1:0"]
[[target.lun]]
id = 2
spec = "ram:1MiB"
serial = "b-two"
'''


def test_targets_luns_and_identities(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(TEXT)
    config = load_config(path)
    catalog = build_catalog(config, Limits(queue_depth=16))
    try:
        a, b = catalog.targets.values()
        assert catalog.limits.queue_depth == 16 and not catalog.discovery_enabled
        assert a.portals == (("127.0.0.1", 0),) and b.alias == "bee"
        assert a.allowed_initiators == frozenset({"iqn.2026-11.org.example:host"})
        assert a.login.max_burst_length == 65536
        assert sorted(a.luns) == [0, 1] and sorted(b.luns) == [2]
        assert (tmp_path / "a.img").stat().st_size == 1 << 20
        lu = a.luns[0]
        assert (lu.serial, lu.naa) == identity(a.name, 0, str(tmp_path / "a.img"))
        assert list(lu.peers()) == [0, 1] and set(lu.siblings()) == {0, 1}
        assert b.luns[2].serial == "b-two"
        assert (b.luns[2].serial, b.luns[2].naa) == identity("any", 9, "any", "b-two")
    finally:
        for target in catalog.targets.values():
            for lu in target.luns.values():
                lu.store.close()


def test_a_store_that_fails_leaves_none_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                             ) -> None:
    from pyiscsi.backstore.memory import MemoryStore

    path = tmp_path / "c.toml"
    path.write_text(TEXT.replace('"file:a.img,size=1MiB", "ram:1MiB"',
                                 '"ram:1MiB", "file:a.img,size=1MiB"'))
    config = load_config(path)
    (tmp_path / "a.img").mkdir()  # a directory where the file should be
    closed: list[int] = []
    monkeypatch.setattr(MemoryStore, "close", lambda self: closed.append(self.size))
    with pytest.raises(OSError):
        build_catalog(config, Limits())
    assert closed == [1 << 20]  # the RAM LUN opened before it was closed again


def test_exposure_warnings_name_targets_without_chap_on_open_portals(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(TEXT)
    (warning,) = exposure_warnings(load_config(path))
    assert "iqn.2026-11.org.example:b" in warning and "192.0.2.1:3260 WITHOUT CHAP" in warning
