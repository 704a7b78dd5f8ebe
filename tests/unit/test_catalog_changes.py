"""The catalog's mutation API with sessions logged in: each session loses only what was
removed from under it (SPC-4 §5.14 unit attentions, SAM-5 §5.6 aborts)."""

from __future__ import annotations

import struct

import pytest

from pyiscsi.backstore.memory import MemoryStore
from pyiscsi.proto import pdu as P
from pyiscsi.scsi.lun import LogicalUnit
from pyiscsi.target.catalog import Catalog, Target
from pyiscsi.target.connection import Phase, TargetConnection

from ..pair import INITIATOR, TARGET, Initiator, drain, feed, make_catalog, wire

TUR = bytes(6)
REPORT_LUNS = struct.pack(">BxxxxxIxx", 0xA0, 4096)
UA_LUNS_CHANGED = (0x6, 0x3F, 0x0E)
LUN_NOT_SUPPORTED = (0x5, 0x25, 0x00)


def write10(lba: int, blocks: int) -> bytes:
    return struct.pack(">BBIBHB", 0x2A, 0, lba, 0, blocks, 0)


def logged_in(catalog: Catalog, isid: int = 0x400001230000,
              local: tuple[str, int] | None = None) -> Initiator:
    ini = Initiator(TargetConnection(catalog, "t", local=local), isid=isid)
    ini.login()
    return ini


def status(ini: Initiator, cdb: bytes, lun: int = 0) -> tuple[int, ...] | None:
    """None for GOOD, else (sense key, ASC, ASCQ)."""
    ini.command(cdb, lun=lun, edtl=4096 if cdb[0] == 0xA0 else 0, read=cdb[0] == 0xA0)
    replies = drain(ini.conn)
    last = replies[-1].pdu
    if isinstance(last, P.DataIn) or last.status == 0:  # type: ignore[attr-defined]
        return None
    sense = replies[-1].data[2:]
    return sense[2] & 0x0F, sense[12], sense[13]


def report_luns(ini: Initiator, lun: int = 0) -> list[int]:
    ini.command(REPORT_LUNS, lun=lun, edtl=4096, read=True)
    data = b"".join(r.data for r in drain(ini.conn) if isinstance(r.pdu, P.DataIn))
    n = int.from_bytes(data[:4], "big") // 8
    return [int.from_bytes(data[8 + 8 * i:10 + 8 * i], "big") & 0x3FFF for i in range(n)]


def new_lu(number: int) -> LogicalUnit:
    return LogicalUnit(number, MemoryStore(1 << 20), TARGET)


def test_added_lun_is_seen_at_once_with_a_unit_attention_on_the_others() -> None:
    catalog = make_catalog()
    ini = logged_in(catalog)
    catalog.add_lun(TARGET, new_lu(1))
    assert status(ini, TUR, lun=1) is None  # the new LU: no attention of its own
    assert report_luns(ini) == [0, 1]  # REPORT LUNS runs despite the attention
    assert status(ini, TUR, lun=0) == UA_LUNS_CHANGED
    assert status(ini, TUR, lun=0) is None
    ini.conn.close()


def test_added_lun_wires_report_luns_and_refuses_a_taken_number() -> None:
    catalog = make_catalog()
    lu = new_lu(7)
    catalog.add_lun(TARGET, lu)
    assert list(lu.peers()) == [0, 7] and set(lu.siblings()) == {0, 7}
    with pytest.raises(ValueError, match="already has LUN 7"):
        catalog.add_lun(TARGET, new_lu(7))


def test_removed_lun_is_not_supported_and_the_others_get_a_unit_attention() -> None:
    catalog = make_catalog(luns=3)
    ini = logged_in(catalog)
    removed = catalog.remove_lun(TARGET, 1)
    assert removed.lu.number == 1 and removed.fence == []
    assert status(ini, TUR, lun=1) == LUN_NOT_SUPPORTED
    assert status(ini, TUR, lun=0) == UA_LUNS_CHANGED
    assert status(ini, TUR, lun=2) == UA_LUNS_CHANGED
    assert report_luns(ini) == [0, 2]
    assert catalog.sessions and ini.conn.phase is Phase.FULL_FEATURE
    ini.conn.close()


def test_removed_lun_aborts_its_tasks_in_flight_only() -> None:
    catalog = make_catalog(luns=2)
    ini = logged_in(catalog)
    doomed = ini.command(write10(0, 8), lun=1, edtl=4096, write=True)
    kept = ini.command(write10(0, 8), lun=0, edtl=4096, write=True)
    r2ts = {r.pdu.itt: r.pdu for r in drain(ini.conn)}
    assert set(r2ts) == {doomed.itt, kept.itt}
    catalog.remove_lun(TARGET, 1)
    assert doomed.itt not in ini.conn.tasks or ini.conn.tasks[doomed.itt].aborted
    for cmd in (doomed, kept):
        r2t = r2ts[cmd.itt]
        assert isinstance(r2t, P.R2T)
        feed(ini.conn, wire(P.DataOut(itt=cmd.itt, ttt=r2t.ttt, buffer_offset=0,
                                      data_length=4096, final=True), b"\x5a" * 4096))
    replies = drain(ini.conn)
    answered = [r.pdu.itt for r in replies if isinstance(r.pdu, P.ScsiResponse)]
    assert answered == [kept.itt]  # an aborted task gets no status (SAM-5 §5.6)
    assert not ini.conn.tasks
    ini.conn.close()


def test_removed_target_ends_its_sessions_only() -> None:
    other = Target("iqn.2026-11.org.pyiscsi:other")
    other.add_lun(LogicalUnit(0, MemoryStore(1 << 20), other.name))
    catalog = make_catalog(luns=2)
    catalog.add_target(other)
    with pytest.raises(ValueError, match="exists"):
        catalog.add_target(Target(other.name))
    doomed = logged_in(catalog)
    kept = Initiator(TargetConnection(catalog, "k"))
    kept.login(target=other.name)
    removed = catalog.remove_target(TARGET)
    assert [r.lu.number for r in removed] == [0, 1]
    assert doomed.conn.dead and doomed.conn.phase is Phase.CLOSED
    assert [s.target for s in catalog.sessions.values()] == [other]
    assert status(kept, TUR) is None
    kept.conn.close()


def test_acl_change_ends_only_sessions_no_longer_allowed() -> None:
    catalog = make_catalog()
    ini = logged_in(catalog)
    catalog.set_acl(TARGET, frozenset({INITIATOR, "iqn.2026-11.org.pyiscsi:another"}))
    assert not ini.conn.dead
    catalog.set_acl(TARGET, frozenset({"iqn.2026-11.org.pyiscsi:another"}))
    assert ini.conn.dead and not catalog.sessions


def test_portal_change_ends_sessions_that_came_through_a_lost_portal() -> None:
    catalog = make_catalog()
    catalog.targets[TARGET].portals = (("127.0.0.1", 3260), ("127.0.0.2", 3260))
    one = logged_in(catalog, local=("127.0.0.1", 3260))
    two = logged_in(catalog, isid=0x400001230001, local=("127.0.0.2", 3260))
    catalog.set_portals(TARGET, (("127.0.0.1", 3260),))
    assert not one.conn.dead and two.conn.dead
    one.conn.close()


def test_dropped_listener_ends_discovery_sessions_through_it() -> None:
    catalog = make_catalog()
    catalog.listeners = {("127.0.0.2", 0): [("127.0.0.2", 40002)],
                         ("127.0.0.1", 0): [("127.0.0.1", 40001)]}
    catalog.portals = [("127.0.0.2", 40002), ("127.0.0.1", 40001)]
    gone = Initiator(TargetConnection(catalog, "d", local=("127.0.0.2", 40002)))
    gone.login(target=None)
    stays = Initiator(TargetConnection(catalog, "d", local=("127.0.0.1", 40001)),
                      isid=0x400001230001)
    stays.login(target=None)
    catalog.drop_listener(("127.0.0.2", 0))
    assert gone.conn.dead and not stays.conn.dead
    assert catalog.portals == [("127.0.0.1", 40001)]
    assert list(catalog.listeners) == [("127.0.0.1", 0)]
    stays.conn.close()


def test_chap_and_login_defaults_apply_to_the_next_logins() -> None:
    from pyiscsi.proto.chap import AuthConfig, ChapSecret
    from pyiscsi.target.catalog import LoginDefaults

    catalog = make_catalog()
    ini = logged_in(catalog)
    auth = AuthConfig(ChapSecret("u", b"secretsecret12"))
    catalog.set_chap(TARGET, auth)
    catalog.set_login_defaults(TARGET, LoginDefaults(max_burst_length=65536), "db")
    assert not ini.conn.dead  # it proved what was asked then
    target = catalog.targets[TARGET]
    assert target.auth is auth and target.login.max_burst_length == 65536
    assert target.alias == "db"
    ini.conn.close()
