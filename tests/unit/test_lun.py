"""A logical unit's identity (SPC-4 §7.8), its defaults and what it delegates."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from pyiscsi.backstore.file import FileStore
from pyiscsi.backstore.memory import MemoryStore
from pyiscsi.scsi.lun import PYISCSI_OUI, LogicalUnit, identity
from pyiscsi.scsi.sense import ScsiError
from pyiscsi.scsi.task import Nexus
from pyiscsi.scsi.unit_attention import ResetKind

TARGET = "iqn.2026-11.org.pyiscsi:test"
A = Nexus("iqn.2026-11.org.pyiscsi:a", 0x400001230000)
B = Nexus("iqn.2026-11.org.pyiscsi:b", 0x400001230000)
READ_10 = bytes([0x28]) + bytes(9)


def lu(number: int = 0, target: str = TARGET, *, read_only: bool = False,
       store_name: str | None = None, size: int = 1 << 20) -> LogicalUnit:
    store = MemoryStore(size, read_only=read_only)
    if store_name is not None:
        store.name = store_name
    return LogicalUnit(number, store, target)


def test_identity_is_pinned_across_versions() -> None:
    # The serial and NAA must survive restarts and upgrades (SPC-4 §7.8.6): known vectors.
    assert lu(0).serial == "646EFADAF57F7CBB"
    assert lu(0).naa.hex() == "60249533ba099697e3a48f040d07e2ca"
    assert lu(1).serial == "A133609FEE318CEB"
    assert lu(1).naa.hex() == "602495369c6478537296f349bf9c283f"


def test_identity_is_stable_for_the_same_target_lun_and_store() -> None:
    a, b = lu(3), lu(3)
    assert a.serial == b.serial
    assert a.naa == b.naa
    expected = hashlib.sha256(f"{TARGET}\0{3}\0ram".encode()).digest()[:8].hex().upper()
    assert a.serial == expected


@pytest.mark.parametrize(
    "other",
    [
        {"number": 1},
        {"number": 256},
        {"target": "iqn.2026-11.org.pyiscsi:other"},
        {"store_name": "/srv/disk.img"},
    ],
)
def test_identity_differs_when_anything_differs(other: dict[str, object]) -> None:
    base = lu(0)
    changed = lu(**other)  # type: ignore[arg-type]
    assert changed.serial != base.serial
    assert changed.naa != base.naa


def test_serial_format() -> None:
    s = lu(7).serial
    assert len(s) == 16
    assert s == s.upper()
    int(s, 16)


@pytest.mark.parametrize("number", [0, 1, 255, 256, 16383])
def test_naa_6_registered_extended_layout(number: int) -> None:
    naa = lu(number).naa
    assert len(naa) == 16
    assert naa[0] >> 4 == 0x6
    high = int.from_bytes(naa[:8], "big")
    assert (high >> 36) & 0xFFFFFF == PYISCSI_OUI == 0x024953
    assert naa[:4].hex()[:7] == "6024953"


def test_size_and_limits_follow_the_store() -> None:
    unit = LogicalUnit(0, MemoryStore(1 << 20, block_size=4096), TARGET)
    assert unit.block_size == 4096
    assert unit.blocks == 256
    assert unit.last_lba == 255
    assert unit.max_transfer_blocks == (32 << 20) // 4096
    unit512 = lu(size=1 << 20)
    assert (unit512.blocks, unit512.last_lba) == (2048, 2047)
    assert unit512.max_atomic_transfer_blocks == (1 << 20) // 512


def test_peers_and_siblings_default_to_itself() -> None:
    unit = lu(5)
    assert list(unit.peers()) == [5]
    assert dict(unit.siblings()) == {5: unit}
    unit.peers = lambda: [0, 5, 9]
    assert list(unit.peers()) == [0, 5, 9]


def test_read_only_follows_the_store() -> None:
    assert lu(read_only=True).read_only is True
    assert lu(read_only=True).medium_read_only is True
    assert lu(read_only=False).read_only is False


def test_read_only_follows_software_write_protect() -> None:
    unit = lu()
    assert unit.software_write_protect is False
    unit.software_write_protect = True
    assert unit.read_only is True
    unit.software_write_protect = False
    assert unit.read_only is False
    ro = lu(read_only=True)
    ro.software_write_protect = False
    assert ro.read_only is True  # clearing SWP does not make a read-only medium writable


def test_nexus_lost_releases_only_that_nexus_reserve6() -> None:
    unit = lu()
    unit.reservations.reserve6(A)
    unit.nexus_lost(B)
    assert unit.reservations.spc2_holder == A
    with pytest.raises(ScsiError):
        unit.reservations.check(B, READ_10)
    unit.nexus_lost(A)
    assert unit.reservations.spc2_holder is None
    unit.reservations.check(B, READ_10)


@pytest.mark.parametrize("kind", list(ResetKind))
def test_reset_releases_reserve6(kind: ResetKind) -> None:
    unit = lu()
    unit.reservations.reserve6(A)
    unit.reset(kind)
    assert unit.reservations.spc2_holder is None


def test_reset_keeps_persistent_registrations() -> None:
    unit = lu()
    unit.reservations.registrations[A] = 0x1234
    unit.reset(ResetKind.LOGICAL_UNIT)
    assert unit.reservations.registrations == {A: 0x1234}


def test_reset_and_nexus_lost_do_not_touch_unit_attentions() -> None:
    unit = lu()
    unit.attentions.join(A)
    unit.reset(ResetKind.LOGICAL_UNIT)
    unit.nexus_lost(A)
    assert unit.attentions.pending(A) == 0  # the connection layer establishes those


def test_memory_store_has_no_aptpl_file() -> None:
    assert lu().reservations.path is None


def test_file_store_keeps_aptpl_state_next_to_the_image(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "disk.img", size=1 << 16)
    try:
        unit = LogicalUnit(0, store, TARGET)
        assert unit.reservations.path == tmp_path / "disk.img.pr.json"
        assert unit.serial != lu(0).serial  # the store's name (its path) is in the identity
    finally:
        store.close()


def test_a_given_serial_is_the_identity_wherever_the_lu_is() -> None:
    a = LogicalUnit(0, MemoryStore(1 << 20), TARGET, serial="db-0001")
    b = LogicalUnit(5, MemoryStore(1 << 20), "iqn.2026-11.org.pyiscsi:other", serial="db-0001")
    assert a.serial == b.serial == "db-0001"
    assert a.naa == b.naa and a.naa[0] >> 4 == 6
    assert a.naa != lu(0).naa
    assert LogicalUnit(0, MemoryStore(1 << 20), TARGET, serial="db-0002").naa != a.naa
    assert identity(TARGET, 3, "ram") == (lu(3).serial, lu(3).naa)  # the derived one


@pytest.mark.parametrize("serial", ["", "has space", "x" * 65, "é"])
def test_a_bad_serial_is_refused(serial: str) -> None:
    with pytest.raises(ValueError, match="bad serial"):
        LogicalUnit(0, MemoryStore(1 << 20), TARGET, serial=serial)


def test_a_cluster_image_has_one_identity_wherever_it_is_served() -> None:
    a = identity("iqn.2026-11.org.example:a", 0, "rbd:pool/img", stable_name="rbd:pool/img")
    b = identity("iqn.2026-11.org.example:b", 7, "other name", stable_name="rbd:pool/img")
    assert a == b
    assert a != identity("iqn.2026-11.org.example:a", 0, "rbd:pool/img",
                         stable_name="rbd:pool/img2")
    digest = hashlib.sha256(b"pyiscsi store\0rbd:pool/img").digest()
    assert a[0] == digest[:8].hex().upper()
    # a stored serial still wins
    assert identity("iqn.x:a", 0, "n", "s-1", stable_name="rbd:pool/img") == \
        identity("iqn.x:b", 1, "m", "s-1")


def test_lu_takes_its_identity_from_the_store_stable_name() -> None:
    class Image(MemoryStore):
        stable_name = "rbd:pool/img"

    one = LogicalUnit(0, Image(1 << 20), "iqn.2026-11.org.example:a")
    two = LogicalUnit(3, Image(1 << 20), "iqn.2026-11.org.example:b")
    assert (one.serial, one.naa) == (two.serial, two.naa)
    assert one.shared and two.shared
