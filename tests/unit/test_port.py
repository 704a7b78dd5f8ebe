"""The gateway's target port: TPGT and relative port id, derived or given (SPC-5 §7.7.6)."""

from __future__ import annotations

import hashlib

import pytest

from pyiscsi.backstore.memory import MemoryStore
from pyiscsi.scsi.dispatch import execute
from pyiscsi.scsi.lun import LogicalUnit
from pyiscsi.scsi.port import TargetPort, derived_port, derived_port_number
from pyiscsi.scsi.task import ScsiRequest, ScsiResult
from pyiscsi.target.catalog import Catalog, Target


def test_derived_number_is_the_documented_hash() -> None:
    digest = hashlib.sha256(b"127.0.0.1:3261").digest()
    assert derived_port_number("127.0.0.1", 3261) == int.from_bytes(digest[:4], "big") % 65535 + 1


def test_two_portals_differ_and_a_portal_is_stable() -> None:
    a, b = derived_port("127.0.0.1", 3261), derived_port("127.0.0.1", 3262)
    assert a != b
    assert a == derived_port("127.0.0.1", 3261)
    assert a.group == a.relative_id  # one number for both unless told otherwise
    assert derived_port("10.0.0.1", 3260) != derived_port("10.0.0.2", 3260)


def test_every_derived_number_is_in_range() -> None:
    numbers = {derived_port_number("127.0.0.1", port) for port in range(1, 20000)}
    assert min(numbers) >= 1 and max(numbers) <= 65535


def test_explicit_values_win() -> None:
    assert derived_port("127.0.0.1", 3261, group=7) == TargetPort(
        7, derived_port_number("127.0.0.1", 3261))
    assert derived_port("127.0.0.1", 3261, group=7, relative_id=9) == TargetPort(7, 9)


@pytest.mark.parametrize("group, rel", [(0, 1), (1, 0), (65536, 1), (1, 70000)])
def test_out_of_range_is_refused(group: int, rel: int) -> None:
    with pytest.raises(ValueError, match=r"must be 1\.\.65535"):
        TargetPort(group, rel)


def _vpd83(lu: LogicalUnit) -> bytes:
    result = execute(lu, ScsiRequest(bytes.fromhex("12018300ff00").ljust(16, b"\0")))
    assert isinstance(result, ScsiResult) and result.data is not None
    return bytes(result.data)


def _designators(page: bytes) -> dict[tuple[int, int], bytes]:
    out, at = {}, 4
    while at < len(page):
        assoc, kind, length = (page[at + 1] >> 4) & 3, page[at + 1] & 0xF, page[at + 3]
        out[(assoc, kind)] = page[at + 4:at + 4 + length]
        at += 4 + length
    return out


def test_catalog_port_reaches_vpd_83_login_and_sendtargets() -> None:
    lu = LogicalUnit(0, MemoryStore(1 << 20), "iqn.2026-11.org.example:t")
    catalog = Catalog([Target("iqn.2026-11.org.example:t", {0: lu})])
    catalog.portals = [("127.0.0.1", 3261)]
    catalog.set_port(TargetPort(300, 4000))
    ids = _designators(_vpd83(lu))
    assert ids[(1, 4)] == (4000).to_bytes(4, "big")  # relative target port
    assert ids[(1, 5)] == (300).to_bytes(4, "big")  # target port group
    assert catalog.portal_group_tag == 300
    assert catalog.portal_addresses() == ["127.0.0.1:3261,300"]
    late = LogicalUnit(1, MemoryStore(1 << 20), "iqn.2026-11.org.example:t")
    catalog.add_lun("iqn.2026-11.org.example:t", late)
    assert late.port == TargetPort(300, 4000)


def test_status_snapshot_shows_the_port_and_sharing() -> None:
    from pyiscsi.target import status

    lu = LogicalUnit(0, MemoryStore(1 << 20), "iqn.2026-11.org.example:t", shared=True)
    catalog = Catalog([Target("iqn.2026-11.org.example:t", {0: lu})])
    catalog.set_port(TargetPort(12, 34))
    snap = status.snapshot(catalog)
    assert snap["target_port"] == {"tpgt": 12, "relative_port_id": 34}
    (entry,) = snap["targets"][0]["luns"]
    assert entry["shared"] is True and entry["events_linked"] is False
    assert entry["serial"] == lu.serial
