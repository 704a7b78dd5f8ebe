"""Reservations through the dispatcher: byte-exact CDBs and parameter lists, two I_T nexuses,
the SPC-4 table 45 conflicts per type, RESERVE/RELEASE (6), resets and APTPL persistence."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from pyiscsi.backstore.file import FileStore
from pyiscsi.backstore.memory import MemoryStore
from pyiscsi.proto.wire import ScsiStatus
from pyiscsi.scsi.dispatch import USAGE
from pyiscsi.scsi.lun import LogicalUnit
from pyiscsi.scsi.reservations import Access, PrType, command_access, transport_id
from pyiscsi.scsi.task import DataOutPlan, Nexus, ScsiRequest, ScsiResult
from pyiscsi.scsi.unit_attention import ResetKind
from tests.scsi_run import complete, execute

TARGET = "iqn.2024-01.org.example:disk"
A = Nexus("iqn.2024-01.org.example:host-a", 0x23D000000001, 1)
B = Nexus("iqn.2024-01.org.example:host-b", 0x23D000000002, 1)
KEY_A, KEY_B = 0x1111_2222_3333_4444, 0xAAAA_BBBB_CCCC_DDDD

REGISTER, RESERVE, RELEASE, CLEAR, PREEMPT, PREEMPT_ABORT, REGISTER_IGNORE = range(7)
READ_10 = "28 00 00000001 00 0001 00"
WRITE_10 = "2a 00 00000001 00 0001 00"
INVALID_FIELD_IN_CDB = (0x05, 0x24, 0x00)
INVALID_FIELD_IN_PARAMETER_LIST = (0x05, 0x26, 0x00)
PARAMETER_LIST_LENGTH_ERROR = (0x05, 0x1A, 0x00)
INVALID_RELEASE = (0x05, 0x26, 0x04)


def make_lu() -> LogicalUnit:
    return LogicalUnit(0, MemoryStore(1 << 20), TARGET)


def request(cdb: str, nexus: Nexus) -> ScsiRequest:
    return ScsiRequest(bytes.fromhex(cdb.replace(" ", "")).ljust(16, b"\0"), nexus=nexus)


def run(lu: LogicalUnit, cdb: str, nexus: Nexus = A, payload: bytes = b"") -> ScsiResult:
    """One command; a Data-Out command gets ``payload`` (or zeroes) as its data."""
    outcome = execute(lu, request(cdb, nexus))
    if isinstance(outcome, DataOutPlan):
        data = payload or bytes(outcome.length)
        outcome.buffer[: len(data)] = data
        return complete(outcome, len(data))
    return outcome


def parameters(key: int = 0, sa_key: int = 0, flags: int = 0) -> bytes:
    """PERSISTENT RESERVE OUT basic parameter list, 24 bytes (SPC-4 §6.16.3)."""
    return struct.pack(">QQIB3x", key, sa_key, 0, flags)


def prout(lu: LogicalUnit, nexus: Nexus, action: int, *, key: int = 0, sa_key: int = 0,
          pr_type: int = 0, scope: int = 0, flags: int = 0) -> ScsiResult:
    cdb = f"5f {action:02x} {scope << 4 | pr_type:02x} 0000 00000018 00"
    return run(lu, cdb, nexus, parameters(key, sa_key, flags))


def prin(lu: LogicalUnit, action: int, allocation: int = 0x2000, nexus: Nexus = A) -> bytes:
    result = run(lu, f"5e {action:02x} 0000000000 {allocation:04x} 00", nexus)
    assert result.status == ScsiStatus.GOOD, result.sense.hex()
    assert result.data is not None
    return bytes(result.data)


def good(result: ScsiResult) -> None:
    assert result.status == ScsiStatus.GOOD and not result.sense, result.sense.hex()


def conflict(result: ScsiResult) -> None:
    assert result.status == ScsiStatus.RESERVATION_CONFLICT
    assert result.sense == b""  # no sense data with RESERVATION CONFLICT


def sense_of(result: ScsiResult) -> tuple[int, int, int]:
    assert result.status == ScsiStatus.CHECK_CONDITION
    return result.sense[2], result.sense[12], result.sense[13]


def both_registered(lu: LogicalUnit) -> None:
    good(prout(lu, A, REGISTER_IGNORE, sa_key=KEY_A))
    good(prout(lu, B, REGISTER_IGNORE, sa_key=KEY_B))


# --- PERSISTENT RESERVE IN -----------------------------------------------------------------


def test_read_keys_empty_then_registered() -> None:
    lu = make_lu()
    assert prin(lu, 0) == bytes.fromhex("00000000 00000000")
    good(prout(lu, A, REGISTER, sa_key=KEY_A))
    good(prout(lu, B, REGISTER_IGNORE, sa_key=KEY_B))
    assert prin(lu, 0) == bytes.fromhex("00000002 00000010 1111222233334444 aaaabbbbccccdddd")


def test_read_keys_truncated_keeps_additional_length() -> None:
    lu = make_lu()
    good(prout(lu, A, REGISTER, sa_key=KEY_A))
    assert prin(lu, 0, allocation=8) == bytes.fromhex("00000001 00000008")


def test_read_reservation_bytes() -> None:
    lu = make_lu()
    good(prout(lu, A, REGISTER, sa_key=KEY_A))
    assert prin(lu, 1) == bytes.fromhex("00000001 00000000")
    good(prout(lu, A, RESERVE, key=KEY_A, pr_type=PrType.WRITE_EXCLUSIVE))
    assert prin(lu, 1) == bytes.fromhex("00000001 00000010 1111222233334444 00000000 00 01 0000")


def test_read_reservation_all_registrants_reports_key_zero() -> None:
    lu = make_lu()
    both_registered(lu)
    good(prout(lu, A, RESERVE, key=KEY_A, pr_type=PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS))
    assert prin(lu, 1)[8:] == bytes.fromhex("0000000000000000 00000000 00 08 0000")


def test_report_capabilities_bytes() -> None:
    # length 8; CRH, ATP_C, PTPL_C; TMV, ALLOW COMMANDS 0, PTPL_A 0; all six types
    assert prin(make_lu(), 2) == bytes.fromhex("0008 15 80 ea01 0000")


def test_report_capabilities_ptpl_a_follows_aptpl() -> None:
    lu = make_lu()
    good(prout(lu, A, REGISTER, sa_key=KEY_A, flags=0x01))
    assert prin(lu, 2)[3] == 0x81


def test_read_full_status_bytes() -> None:
    lu = make_lu()
    both_registered(lu)
    good(prout(lu, B, RESERVE, key=KEY_B, pr_type=PrType.EXCLUSIVE_ACCESS))
    out = prin(lu, 3)
    tid_a, tid_b = transport_id(A), transport_id(B)
    assert tid_a[:2] == b"\x45\x00" and len(tid_a) % 4 == 0
    assert tid_a[4:].rstrip(b"\0") == b"iqn.2024-01.org.example:host-a,i,0x23d000000001"
    first = bytes.fromhex("1111222233334444 00000000 00 00 00000000 0001") + struct.pack(
        ">I", len(tid_a)) + tid_a
    second = bytes.fromhex("aaaabbbbccccdddd 00000000 01 03 00000000 0001") + struct.pack(
        ">I", len(tid_b)) + tid_b
    assert out == struct.pack(">II", 2, len(first) + len(second)) + first + second


@pytest.mark.parametrize("action", [4, 5, 0x10, 0x1F])
def test_prin_invalid_service_action(action: int) -> None:
    result = run(make_lu(), f"5e {action:02x} 0000000000 2000 00")
    assert sense_of(result) == INVALID_FIELD_IN_CDB
    assert result.sense[15:18] == bytes.fromhex("cc0001")  # C/D, BPV, bit 4 of byte 1


# --- PERSISTENT RESERVE OUT: REGISTER ------------------------------------------------------


def test_register_reregister_and_unregister() -> None:
    lu = make_lu()
    good(prout(lu, A, REGISTER, sa_key=KEY_A))
    conflict(prout(lu, A, REGISTER, key=0, sa_key=KEY_A + 1))  # wrong RESERVATION KEY
    good(prout(lu, A, REGISTER, key=KEY_A, sa_key=KEY_B))  # change the key
    assert prin(lu, 0) == bytes.fromhex("00000002 00000008 aaaabbbbccccdddd")
    good(prout(lu, A, REGISTER, key=KEY_B, sa_key=0))  # unregister
    assert prin(lu, 0) == bytes.fromhex("00000003 00000000")


def test_register_unregistered_with_nonzero_key_conflicts() -> None:
    lu = make_lu()
    conflict(prout(lu, A, REGISTER, key=KEY_A, sa_key=KEY_A))
    good(prout(lu, A, REGISTER, key=0, sa_key=0))  # nothing to do: no generation change
    assert prin(lu, 0) == bytes.fromhex("00000000 00000000")


def test_register_and_ignore_existing_key() -> None:
    lu = make_lu()
    good(prout(lu, A, REGISTER_IGNORE, key=0x99, sa_key=KEY_A))
    good(prout(lu, A, REGISTER_IGNORE, key=0x99, sa_key=KEY_B))
    assert prin(lu, 0)[8:] == KEY_B.to_bytes(8, "big")


def test_prout_parameter_list_errors() -> None:
    lu = make_lu()
    assert sense_of(run(lu, "5f 00 00 0000 00000010 00")) == PARAMETER_LIST_LENGTH_ERROR
    result = prout(lu, A, REGISTER, sa_key=KEY_A, flags=0x08)  # SPEC_I_PT
    assert sense_of(result) == INVALID_FIELD_IN_PARAMETER_LIST
    assert result.sense[15:18] == bytes.fromhex("8b0014")  # byte 20, bit 3
    assert sense_of(run(lu, "5f 07 00 0000 00000018 00")) == INVALID_FIELD_IN_CDB  # MOVE


def test_prout_is_a_staged_data_out_command() -> None:
    plan = execute(make_lu(), request("5f 00 00 0000 00000018 00", A))
    assert isinstance(plan, DataOutPlan)
    assert plan.length == 24 and len(plan.buffer) == 24 and plan.staged


# --- RESERVE / RELEASE / CLEAR / PREEMPT ---------------------------------------------------


def test_reserve_needs_registration_and_matching_key() -> None:
    lu = make_lu()
    conflict(prout(lu, A, RESERVE, key=KEY_A, pr_type=PrType.WRITE_EXCLUSIVE))
    good(prout(lu, A, REGISTER, sa_key=KEY_A))
    conflict(prout(lu, A, RESERVE, key=KEY_B, pr_type=PrType.WRITE_EXCLUSIVE))
    assert sense_of(prout(lu, A, RESERVE, key=KEY_A, pr_type=2)) == INVALID_FIELD_IN_CDB
    assert sense_of(prout(lu, A, RESERVE, key=KEY_A, pr_type=1, scope=1)) == INVALID_FIELD_IN_CDB
    good(prout(lu, A, RESERVE, key=KEY_A, pr_type=PrType.WRITE_EXCLUSIVE))
    good(prout(lu, A, RESERVE, key=KEY_A, pr_type=PrType.WRITE_EXCLUSIVE))  # same again
    conflict(prout(lu, A, RESERVE, key=KEY_A, pr_type=PrType.EXCLUSIVE_ACCESS))


def test_reserve_held_by_other_conflicts_and_release_by_other_is_noop() -> None:
    lu = make_lu()
    both_registered(lu)
    good(prout(lu, A, RESERVE, key=KEY_A, pr_type=PrType.EXCLUSIVE_ACCESS))
    conflict(prout(lu, B, RESERVE, key=KEY_B, pr_type=PrType.EXCLUSIVE_ACCESS))
    good(prout(lu, B, RELEASE, key=KEY_B, pr_type=PrType.EXCLUSIVE_ACCESS))
    assert prin(lu, 1)[4:8] == b"\x00\x00\x00\x10"  # still reserved
    assert sense_of(prout(lu, A, RELEASE, key=KEY_A, pr_type=1)) == INVALID_RELEASE
    good(prout(lu, A, RELEASE, key=KEY_A, pr_type=PrType.EXCLUSIVE_ACCESS))
    assert prin(lu, 1) == bytes.fromhex("00000002 00000000")  # RESERVE/RELEASE keep PRgen


def test_unregistering_the_holder_releases_unless_all_registrants() -> None:
    lu = make_lu()
    both_registered(lu)
    good(prout(lu, A, RESERVE, key=KEY_A, pr_type=PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY))
    good(prout(lu, A, REGISTER, key=KEY_A, sa_key=0))
    assert prin(lu, 1)[4:8] == bytes(4)
    good(prout(lu, A, REGISTER, sa_key=KEY_A))
    good(prout(lu, A, RESERVE, key=KEY_A, pr_type=PrType.WRITE_EXCLUSIVE_ALL_REGISTRANTS))
    good(prout(lu, A, REGISTER, key=KEY_A, sa_key=0))
    assert prin(lu, 1)[8:] == bytes.fromhex("0000000000000000 00000000 00 07 0000")
    good(prout(lu, B, RELEASE, key=KEY_B, pr_type=PrType.WRITE_EXCLUSIVE_ALL_REGISTRANTS))
    assert prin(lu, 1)[4:8] == bytes(4)


def test_all_registrants_reservation_ends_with_the_last_registrant() -> None:
    lu = make_lu()
    both_registered(lu)
    good(prout(lu, B, RESERVE, key=KEY_B, pr_type=PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS))
    good(prout(lu, B, REGISTER, key=KEY_B, sa_key=0))
    assert prin(lu, 1)[4:8] == b"\x00\x00\x00\x10"  # A still registered: still reserved
    good(prout(lu, A, REGISTER, key=KEY_A, sa_key=0))
    assert prin(lu, 1) == bytes.fromhex("00000004 00000000")
    good(run(lu, READ_10, B))


def test_clear_drops_everything_and_bumps_generation_once() -> None:
    lu = make_lu()
    both_registered(lu)
    good(prout(lu, A, RESERVE, key=KEY_A, pr_type=PrType.EXCLUSIVE_ACCESS))
    conflict(prout(lu, A, CLEAR, key=KEY_B))
    good(prout(lu, B, CLEAR, key=KEY_B))  # any registrant may clear
    assert prin(lu, 0) == bytes.fromhex("00000003 00000000")
    assert prin(lu, 1) == bytes.fromhex("00000003 00000000")


def test_preempt_removes_registration_without_reservation() -> None:
    lu = make_lu()
    both_registered(lu)
    conflict(prout(lu, B, PREEMPT, key=KEY_B, sa_key=0x77, pr_type=PrType.EXCLUSIVE_ACCESS))
    result = prout(lu, B, PREEMPT, key=KEY_B, sa_key=0, pr_type=PrType.EXCLUSIVE_ACCESS)
    assert sense_of(result) == INVALID_FIELD_IN_PARAMETER_LIST
    good(prout(lu, B, PREEMPT, key=KEY_B, sa_key=KEY_A, pr_type=PrType.EXCLUSIVE_ACCESS))
    assert prin(lu, 0) == bytes.fromhex("00000003 00000008 aaaabbbbccccdddd")
    assert prin(lu, 1)[4:8] == bytes(4)  # no reservation created
    conflict(prout(lu, A, RELEASE, key=KEY_A))  # A is no longer registered


def test_preempt_the_holder_takes_the_reservation() -> None:
    lu = make_lu()
    both_registered(lu)
    good(prout(lu, A, RESERVE, key=KEY_A, pr_type=PrType.WRITE_EXCLUSIVE))
    good(prout(lu, B, PREEMPT_ABORT, key=KEY_B, sa_key=KEY_A, pr_type=PrType.EXCLUSIVE_ACCESS))
    assert prin(lu, 0) == bytes.fromhex("00000003 00000008 aaaabbbbccccdddd")
    assert prin(lu, 1) == bytes.fromhex("00000003 00000010 aaaabbbbccccdddd 00000000 00 03 0000")
    conflict(run(lu, READ_10, A))


def test_preempt_all_registrants_with_zero_key() -> None:
    lu = make_lu()
    both_registered(lu)
    good(prout(lu, A, RESERVE, key=KEY_A, pr_type=PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS))
    good(prout(lu, B, PREEMPT, key=KEY_B, sa_key=0, pr_type=PrType.WRITE_EXCLUSIVE))
    assert prin(lu, 0) == bytes.fromhex("00000003 00000008 aaaabbbbccccdddd")
    assert prin(lu, 1)[8:] == bytes.fromhex("aaaabbbbccccdddd 00000000 00 01 0000")


# --- access rules (SPC-4 table 45): holder A, registered B, then unregistered B -------------

ACCESS_CASES = [
    # type, registered B (read, write), unregistered B (read, write): libiscsi's matrix
    (PrType.EXCLUSIVE_ACCESS, (False, False), (False, False)),
    (PrType.WRITE_EXCLUSIVE, (True, False), (True, False)),
    (PrType.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY, (True, True), (False, False)),
    (PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY, (True, True), (True, False)),
    (PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS, (True, True), (False, False)),
    (PrType.WRITE_EXCLUSIVE_ALL_REGISTRANTS, (True, True), (True, False)),
]


def allowed(result: ScsiResult) -> bool:
    if result.status == ScsiStatus.RESERVATION_CONFLICT:
        assert result.sense == b""
        return False
    good(result)
    return True


@pytest.mark.parametrize(("pr_type", "registered", "unregistered"), ACCESS_CASES)
def test_access_per_type(pr_type: PrType, registered: tuple[bool, bool],
                         unregistered: tuple[bool, bool]) -> None:
    lu = make_lu()
    both_registered(lu)
    good(prout(lu, A, RESERVE, key=KEY_A, pr_type=pr_type))
    block = bytes(range(256)) * 2
    assert allowed(run(lu, READ_10, A)) and allowed(run(lu, WRITE_10, A, block))
    assert (allowed(run(lu, READ_10, B)), allowed(run(lu, WRITE_10, B, block))) == registered
    good(prout(lu, B, REGISTER, key=KEY_B, sa_key=0))
    assert (allowed(run(lu, READ_10, B)), allowed(run(lu, WRITE_10, B, block))) == unregistered
    for always in ("00 0000000000", "12 00 00 0060 00", "25 00 00000000 0000 00 00",
                   "a0 00 00 000000 00000100 00 00", "5e 00 0000000000 2000 00"):
        assert allowed(run(lu, always, B)), always
    conflict(run(lu, "1a 00 3f 00 ff 00", B))  # MODE SENSE: a non-registrant never may


def test_command_access_table() -> None:
    assert command_access(bytes.fromhex("9e10") + bytes(14)) is Access.ALLOWED
    assert command_access(bytes.fromhex("9e12") + bytes(14)) is Access.READ
    assert command_access(bytes.fromhex("a30c") + bytes(10)) is Access.ALLOWED
    assert command_access(bytes.fromhex("a30a") + bytes(10)) is Access.ALLOWED
    for write in ("2a", "8a", "42", "15", "1a", "16", "35", "c0"):
        assert command_access(bytes.fromhex(write) + bytes(9)) is Access.WRITE, write
    for read in ("08", "28", "88", "a8", "2f", "8f", "34", "90"):
        assert command_access(bytes.fromhex(read) + bytes(9)) is Access.READ, read


# --- RESERVE (6) / RELEASE (6) (SPC-2) ---------------------------------------------------


def test_reserve6_two_initiators() -> None:
    lu = make_lu()
    good(run(lu, "16 00 00 00 00 00", A))
    good(run(lu, "16 00 00 00 00 00", A))  # the holder may reserve again
    conflict(run(lu, "16 00 00 00 00 00", B))
    good(run(lu, "17 00 00 00 00 00", B))  # release from a non-holder: no-op
    good(run(lu, "1a 00 3f 00 ff 00", A))
    conflict(run(lu, "1a 00 3f 00 ff 00", B))
    conflict(run(lu, READ_10, B))
    good(run(lu, "12 00 00 0060 00", B))  # INQUIRY, REQUEST SENSE, REPORT LUNS pass
    good(run(lu, "03 00 00 00 12 00", B))
    good(run(lu, "a0 00 00 000000 00000100 00 00", B))
    conflict(run(lu, "5e 00 0000000000 2000 00", B))
    good(run(lu, "17 00 00 00 00 00", A))
    good(run(lu, "16 00 00 00 00 00", B))


def test_reserve6_conflicts_with_registrations() -> None:
    lu = make_lu()
    good(prout(lu, B, REGISTER, sa_key=KEY_B))
    conflict(run(lu, "16 00 00 00 00 00", A))
    conflict(run(lu, "17 00 00 00 00 00", A))
    conflict(run(lu, "16 00 00 00 00 00", B))
    assert sense_of(run(make_lu(), "16 01 00 00 00 00", A)) == INVALID_FIELD_IN_CDB


@pytest.mark.parametrize("kind", list(ResetKind))
def test_reset_releases_reserve6_but_keeps_persistent_reservations(kind: ResetKind) -> None:
    lu = make_lu()
    good(run(lu, "16 00 00 00 00 00", A))
    lu.reset(kind)
    good(run(lu, "16 00 00 00 00 00", B))
    good(run(lu, "17 00 00 00 00 00", B))
    good(prout(lu, A, REGISTER, sa_key=KEY_A))
    good(prout(lu, A, RESERVE, key=KEY_A, pr_type=PrType.EXCLUSIVE_ACCESS))
    lu.reset(kind)
    conflict(run(lu, READ_10, B))


def test_nexus_loss_releases_only_that_nexus() -> None:
    lu = make_lu()
    good(run(lu, "16 00 00 00 00 00", A))
    lu.nexus_lost(B)
    conflict(run(lu, "16 00 00 00 00 00", B))
    lu.nexus_lost(A)
    good(run(lu, "16 00 00 00 00 00", B))


def test_rsoc_lists_reservation_commands() -> None:
    assert USAGE[(0x16, None)] == bytes.fromhex("160000000000")
    assert USAGE[(0x5E, 0x03)] == bytes.fromhex("5e030000000000ffff00")
    assert USAGE[(0x5F, 0x06)] == bytes.fromhex("5f06ff0000ffffffff00")
    assert (0x5F, 0x07) not in USAGE  # REGISTER AND MOVE is not supported


# --- APTPL (SPC-4 §5.13.4) ---------------------------------------------------------------


def file_lu(path: Path) -> LogicalUnit:
    return LogicalUnit(0, FileStore(path, 1 << 20), TARGET)


def test_aptpl_round_trip_on_a_file_store(tmp_path: Path) -> None:
    disk = tmp_path / "disk.img"
    state = tmp_path / "disk.img.pr.json"
    lu = file_lu(disk)
    good(prout(lu, A, REGISTER, sa_key=KEY_A))
    assert not state.exists()  # APTPL=0: nothing saved
    good(prout(lu, B, REGISTER, sa_key=KEY_B, flags=0x01))
    good(prout(lu, A, RESERVE, key=KEY_A, pr_type=PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY))
    saved = json.loads(state.read_text())
    assert saved["generation"] == 2 and saved["reservation"]["type"] == 5
    assert not list(tmp_path.glob("*.tmp"))
    lu.store.close()

    again = file_lu(disk)  # "power cycle": a new LU over the same file
    assert prin(again, 0) == bytes.fromhex("00000002 00000010 1111222233334444 aaaabbbbccccdddd")
    assert prin(again, 1) == bytes.fromhex("00000002 00000010 1111222233334444 00000000 00 05 0000")
    assert prin(again, 2)[3] == 0x81  # PTPL_A
    conflict(run(again, WRITE_10, Nexus("iqn.2024-01.org.example:other"), bytes(512)))
    good(run(again, WRITE_10, B, bytes(512)))

    good(prout(again, A, REGISTER, key=KEY_A, sa_key=KEY_A, flags=0x00))  # APTPL back to 0
    assert not state.exists()


def test_corrupt_aptpl_file_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "disk.img.pr.json").write_text("{not json")
    lu = file_lu(tmp_path / "disk.img")
    assert prin(lu, 0) == bytes.fromhex("00000000 00000000")


def test_ram_store_keeps_aptpl_in_memory_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    lu = make_lu()
    good(prout(lu, A, REGISTER, sa_key=KEY_A, flags=0x01))
    assert lu.reservations.path is None and not list(tmp_path.iterdir())
