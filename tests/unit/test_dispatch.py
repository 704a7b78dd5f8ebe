"""The opcode table and execute(): error mapping, control byte, service actions."""

from __future__ import annotations

import pytest

from pyiscsi.backstore.base import StoreError
from pyiscsi.backstore.memory import MemoryStore
from pyiscsi.proto.wire import ScsiStatus
from pyiscsi.scsi import sbc
from pyiscsi.scsi.cdb import LBA_COUNT, cdb_length, control_byte, lba_count_6
from pyiscsi.scsi.dispatch import COMMANDS, HANDLERS, SERVICE_ACTIONS, USAGE, execute_without_lu
from pyiscsi.scsi.lun import LogicalUnit
from pyiscsi.scsi.task import DataOutPlan, ScsiRequest, ScsiResult
from tests.scsi_run import complete, execute


class FailingStore(MemoryStore):
    def readinto(self, offset: int, buffer: memoryview) -> None:
        raise StoreError("unrecovered read error", 0x03, 0x11, 0x00)

    @property
    def memory_addressable(self) -> bool:
        return False

    def write(self, offset: int, data: memoryview | bytes) -> None:
        raise StoreError("write error")


def make_lu(store: MemoryStore | None = None) -> LogicalUnit:
    return LogicalUnit(0, store or MemoryStore(1 << 20), "iqn.2024-01.org.example:t")


def request(cdb: str) -> ScsiRequest:
    return ScsiRequest(bytes.fromhex(cdb.replace(" ", "")).ljust(16, b"\0"))


def test_unknown_opcode_is_invalid_command_operation_code() -> None:
    result = execute(make_lu(), request("ff 00 00 00 00 00"))
    assert isinstance(result, ScsiResult)
    assert result.status == ScsiStatus.CHECK_CONDITION
    assert result.sense == bytes.fromhex("700005000000000a00000000200000000000")


@pytest.mark.parametrize(
    ("cdb", "pointer"),
    [
        ("00 00 00 00 00 04", "ca0005"),  # TUR NACA
        ("28 00 00000000 00 0001 04", "ca0009"),  # READ(10) NACA
        ("88 00 0000000000000000 00000001 00 01", "c8000f"),  # READ(16) LINK
        ("a0 00 00 000000 00000100 00 04", "ca000b"),  # REPORT LUNS NACA
    ],
)
def test_control_byte_flags_rejected(cdb: str, pointer: str) -> None:
    result = execute(make_lu(), request(cdb))
    assert isinstance(result, ScsiResult)
    assert result.sense[2] == 0x05 and result.sense[12] == 0x24
    assert result.sense[15:18] == bytes.fromhex(pointer)


def test_short_cdb_is_invalid_field() -> None:
    result = execute(make_lu(), ScsiRequest(b"\x28\x00\x00"))
    assert isinstance(result, ScsiResult)
    assert result.sense[12] == 0x24


def test_store_error_becomes_sense() -> None:
    result = execute(make_lu(FailingStore(1 << 20)), request("28 00 00000000 00 0001 00"))
    assert isinstance(result, ScsiResult)
    assert result.status == ScsiStatus.CHECK_CONDITION
    assert result.sense == bytes.fromhex("700003000000000a00000000110000000000")


def test_errors_in_complete_become_sense() -> None:
    plan = execute(make_lu(FailingStore(1 << 20)), request("2a 00 00000000 00 0001 00"))
    assert isinstance(plan, DataOutPlan) and plan.staged
    result = complete(plan, 512)
    assert result.status == ScsiStatus.CHECK_CONDITION
    assert result.sense[2] == 0x03 and result.sense[12] == 0x0C


def test_plain_write_completion_is_not_wrapped() -> None:
    plan = execute(make_lu(), request("2a 00 00000000 00 0001 00"))
    assert isinstance(plan, DataOutPlan)
    assert plan.complete is sbc.write_done


def test_execute_without_lu() -> None:
    inquiry = execute_without_lu(request("12 00 00 00 24 00"))
    assert inquiry.status == ScsiStatus.GOOD
    assert inquiry.data is not None and bytes(inquiry.data)[:5] == bytes.fromhex("7f0006121f")
    assert len(bytes(inquiry.data)) == 36
    other = execute_without_lu(request("00 00 00 00 00 00"))
    assert other.status == ScsiStatus.CHECK_CONDITION
    assert other.sense[2] == 0x05 and other.sense[12:14] == b"\x25\x00"


def test_tables_are_consistent() -> None:
    assert set(HANDLERS) == set(COMMANDS) | set(SERVICE_ACTIONS)
    for (op, sa), usage in USAGE.items():
        assert usage[0] == op
        assert len(usage) == cdb_length(op)
        if sa is not None:  # the service action in its own bits, usage bits around it
            assert usage[1] & 0x1F == sa


def test_lba_count_decoders() -> None:
    assert lba_count_6(bytes.fromhex("08 1f ff fe 00 00".replace(" ", ""))) == (0x1FFFFE, 256)
    assert LBA_COUNT[0x28](bytes.fromhex("28001234567800abcd00")) == (0x12345678, 0xABCD)
    cdb12 = bytes.fromhex("a8 00 00000010 00000020 00 00".replace(" ", ""))
    assert LBA_COUNT[0xA8](cdb12) == (0x10, 0x20)
    cdb16 = bytes.fromhex("88 00 0102030405060708 0a0b0c0d 00 00".replace(" ", ""))
    assert LBA_COUNT[0x88](cdb16) == (0x0102030405060708, 0x0A0B0C0D)
    assert control_byte(cdb16) == 0
    assert [cdb_length(op) for op in (0x00, 0x28, 0x55, 0x88, 0xA0)] == [6, 10, 10, 16, 12]


# --- shared LUs (more than one gateway): reservations refused ----------------------------

SHARED_REFUSED_CDBS = {
    "RESERVE(6)": "16 00 00 00 00 00",
    "RELEASE(6)": "17 00 00 00 00 00",
    "PERSISTENT RESERVE IN / READ KEYS": "5e 00 00 00 00 00 00 00 ff 00",
    "PERSISTENT RESERVE IN / REPORT CAPABILITIES": "5e 02 00 00 00 00 00 00 ff 00",
    "PERSISTENT RESERVE OUT / REGISTER": "5f 00 00 00 00 00 00 00 18 00",
}


class ClusterStore(MemoryStore):
    stable_name = "rbd:pool/image"


@pytest.mark.parametrize("cdb", SHARED_REFUSED_CDBS.values(), ids=SHARED_REFUSED_CDBS.keys())
def test_shared_lu_refuses_reservations_as_unsupported(cdb: str) -> None:
    lu = LogicalUnit(0, ClusterStore(1 << 20), "iqn.2024-01.org.example:t")
    assert lu.shared
    result = execute(lu, request(cdb))
    assert isinstance(result, ScsiResult)
    assert result.status == ScsiStatus.CHECK_CONDITION
    assert (result.sense[2], result.sense[12], result.sense[13]) == (0x05, 0x20, 0x00)


@pytest.mark.parametrize("cdb", SHARED_REFUSED_CDBS.values(), ids=SHARED_REFUSED_CDBS.keys())
def test_unshared_lu_still_runs_them(cdb: str) -> None:
    lu = LogicalUnit(0, ClusterStore(1 << 20), "iqn.2024-01.org.example:t", shared=False)
    result = execute(lu, request(cdb))
    assert not (isinstance(result, ScsiResult) and result.sense[12:14] == b"\x20\x00")


def _rsoc(lu: LogicalUnit, cdb: str) -> bytes:
    result = execute(lu, request(cdb))
    assert isinstance(result, ScsiResult) and result.status == ScsiStatus.GOOD
    assert result.data is not None
    return bytes(result.data)


def test_shared_lu_does_not_report_them_supported() -> None:
    shared = LogicalUnit(0, MemoryStore(1 << 20), "iqn.2024-01.org.example:t", shared=True)
    alone = make_lu()
    listed = {(_rsoc(lu, "a3 0c 00 00 00 00 00 00 ff ff 00 00")) for lu in (shared, alone)}
    assert len(listed) == 2

    def opcodes(data: bytes) -> set[int]:
        return {data[4 + 8 * i] for i in range((len(data) - 4) // 8)}

    all_ops = opcodes(_rsoc(alone, "a3 0c 00 00 00 00 00 00 ff ff 00 00"))
    shared_ops = opcodes(_rsoc(shared, "a3 0c 00 00 00 00 00 00 ff ff 00 00"))
    assert all_ops - shared_ops == {0x16, 0x17, 0x5E, 0x5F}
    # one command asked for: SUPPORT 001b (not supported) on the shared LU, 011b alone
    for cdb in ("a3 0c 01 16 00 00 00 00 ff ff 00 00", "a3 0c 02 5e 00 00 00 00 ff ff 00 00",
                "a3 0c 03 5f 00 01 00 00 ff ff 00 00"):
        assert _rsoc(shared, cdb)[1] & 0x07 == 0x01
        assert _rsoc(alone, cdb)[1] & 0x07 == 0x03


def test_shared_default_follows_the_store() -> None:
    assert not make_lu().shared
    assert LogicalUnit(0, ClusterStore(1 << 20), "iqn.2024-01.org.example:t").shared
