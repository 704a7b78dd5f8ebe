"""SANITIZE (SBC-4 §5.30, §4.11) and the software write protect it must honour: byte-exact
CDBs and parameter lists in, byte-exact data/sense out; the clock is a fake one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pyiscsi.backstore.base import StoreError
from pyiscsi.backstore.memory import MemoryStore
from pyiscsi.proto import pdu as P
from pyiscsi.proto.wire import ScsiStatus
from pyiscsi.scsi.dispatch import execute
from pyiscsi.scsi.lun import LogicalUnit
from pyiscsi.scsi.reservations import Access, command_access
from pyiscsi.scsi.task import DataOutPlan, Nexus, ScsiRequest, ScsiResult
from pyiscsi.scsi.unit_attention import ResetKind
from pyiscsi.target.connection import TargetConnection

from ..pair import TARGET, Initiator, drain, feed, make_catalog, wire

BS = 512
BLOCKS = 64


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FailingStore(MemoryStore):
    """A store whose unmap fails (a sanitize that cannot erase) until told otherwise."""

    failing = True

    def unmap(self, offset: int, length: int) -> None:
        if self.failing:
            raise StoreError("erase failed")
        super().unmap(offset, length)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_lu(clock: Clock, store: MemoryStore | None = None) -> LogicalUnit:
    lu = LogicalUnit(0, store or MemoryStore(BLOCKS * BS), TARGET)
    lu.sanitize.clock = clock
    return lu


def cdb(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", "")).ljust(16, b"\0")


def call(lu: LogicalUnit, text: str, nexus: Nexus | None = None) -> ScsiResult | DataOutPlan:
    request = ScsiRequest(cdb(text)) if nexus is None else ScsiRequest(cdb(text), nexus=nexus)
    return execute(lu, request)


def run(lu: LogicalUnit, text: str, nexus: Nexus | None = None) -> ScsiResult:
    result = call(lu, text, nexus)
    assert isinstance(result, ScsiResult)
    return result


def send(lu: LogicalUnit, text: str, params: bytes) -> ScsiResult:
    plan = call(lu, text)
    assert isinstance(plan, DataOutPlan)
    assert plan.staged and plan.length == len(params)
    plan.buffer[:] = params
    return plan.complete(len(params))


def sense(result: ScsiResult) -> str:
    assert result.status == ScsiStatus.CHECK_CONDITION
    return result.sense.hex()


def fixed(key_asc_ascq: str, sks: str = "000000") -> str:
    """18 bytes of fixed sense: 70h, key, ASC, ASCQ and the sense key specific field."""
    key, asc, ascq = key_asc_ascq.split()
    return f"7000{key}000000000a00000000{asc}{ascq}00{sks}"


def medium(lu: LogicalUnit) -> bytes:
    return bytes(lu.store.view(0, lu.blocks * BS))


OVERWRITE = "48 01 0000000000 {:04x} 00"
OVERWRITE_IMMED = "48 81 0000000000 {:04x} 00"
BLOCK_ERASE = "48 02 0000000000 0000 00"
CRYPTO_ERASE = "48 03 0000000000 0000 00"
EXIT_FAILURE_MODE = "48 1f 0000000000 0000 00"
TUR = "00 0000000000"
INQUIRY = "12 00 00 0060 00"
REPORT_LUNS = "a0 00 000000 00000010 00 00"
READ_10 = "28 00 00000000 00 0001 00"
INVALID_CDB = "05 24 00"
IN_PROGRESS = "02 04 1b"
FAILED = "03 31 03"
PROTECTED = "07 27 00"


def overwrite_params(pattern: bytes, flags: int = 0x01) -> bytes:
    return bytes((flags, 0)) + len(pattern).to_bytes(2, "big") + pattern


# --- REPORT SUPPORTED OPERATION CODES and the CDB checks -----------------------------------


@pytest.mark.parametrize(
    ("sa", "usage"),
    [
        (0x01, "48a1 0000000000 ffff 00"),
        (0x02, "48a2 0000000000 ffff 00"),
        (0x03, "48a3 0000000000 ffff 00"),
        (0x1F, "489f 0000000000 ffff 00"),
    ],
)
def test_report_supported_operation_codes_lists_every_service_action(
    clock: Clock, sa: int, usage: str
) -> None:
    out = run(make_lu(clock), f"a3 0c 02 48 {sa:04x} 00000100 00 00")
    assert out.status == ScsiStatus.GOOD and out.data is not None
    assert bytes(out.data).hex() == "0003000a" + usage.replace(" ", "")


@pytest.mark.parametrize("sa", [0x00, *range(0x04, 0x1F)])
def test_unknown_service_action_is_invalid_field_in_cdb(clock: Clock, sa: int) -> None:
    assert sense(run(make_lu(clock), f"48 {sa:02x} 0000000000 0000 00")) == fixed(
        INVALID_CDB, "cc0001"
    )


@pytest.mark.parametrize(
    ("text", "sks"),
    [
        ("48 42 0000000000 0000 00", "ce0001"),  # ZNR: not a zoned device
        ("48 02 0100000000 0000 00", "c00002"),
        ("48 02 0000000000 0000 00", None),
        ("48 03 0000000200 0000 00", "c00005"),
        ("48 1f 0000000003 0000 00", "c00006"),
        ("48 02 0000000000 0008 00", "c00007"),  # BLOCK ERASE takes no parameter list
        ("48 03 0000000000 0001 00", "c00007"),
        ("48 1f 0000000000 0008 00", "c00007"),
        ("48 01 0000000000 0004 00", "c00007"),  # OVERWRITE: 5 .. block length + 4
        ("48 01 0000000000 0205 00", "c00007"),
        ("48 01 0000000000 0000 00", "c00007"),
    ],
)
def test_reserved_fields_and_parameter_list_length(
    clock: Clock, text: str, sks: str | None
) -> None:
    result = run(make_lu(clock), text)
    if sks is None:
        assert result.status == ScsiStatus.GOOD and not result.sense
    else:
        assert sense(result) == fixed(INVALID_CDB, sks)


# --- OVERWRITE ---------------------------------------------------------------------------


def test_overwrite_fills_at_once_then_stays_in_progress_until_its_deadline(clock: Clock) -> None:
    lu = make_lu(clock)
    lu.sanitize_overwrite_seconds = 8.0
    result = send(lu, OVERWRITE.format(BS + 4), overwrite_params(b"\xaa" * BS))
    assert result.status == ScsiStatus.GOOD and result.pending is not None
    assert medium(lu) == b"\xaa" * (BLOCKS * BS)
    assert result.pending() is None  # IMMED=0: status waits for the end
    clock.now += 2.0  # a quarter done: PROGRESS INDICATION 4000h
    assert sense(run(lu, TUR)) == fixed(IN_PROGRESS, "804000")
    assert sense(run(lu, READ_10)) == fixed(IN_PROGRESS, "804000")
    assert sense(run(lu, "1b 01 00 00 01 00")) == fixed(IN_PROGRESS, "804000")
    assert sense(run(lu, OVERWRITE.format(8))) == fixed(IN_PROGRESS, "804000")
    assert run(lu, INQUIRY).status == ScsiStatus.GOOD
    assert run(lu, REPORT_LUNS).status == ScsiStatus.GOOD
    request_sense = run(lu, "03 00 00 00 ff 00")
    assert request_sense.status == ScsiStatus.GOOD and request_sense.data is not None
    assert bytes(request_sense.data).hex() == fixed(IN_PROGRESS, "804000")
    descriptor = run(lu, "03 01 00 00 ff 00")
    assert descriptor.data is not None
    assert bytes(descriptor.data).hex() == "7202041b00000008" + "0206000080400000"
    lu.reset(ResetKind.TARGET_COLD)  # resets do not stop a sanitize operation
    clock.now += 4.0
    assert sense(run(lu, TUR)) == fixed(IN_PROGRESS, "80c000")
    assert result.pending() is None
    clock.now += 2.0
    done = result.pending()
    assert done is not None and done.status == ScsiStatus.GOOD and not done.sense
    assert run(lu, TUR).status == ScsiStatus.GOOD
    assert not lu.sanitize.active


def test_overwrite_immed_is_good_at_once_and_still_in_progress(clock: Clock) -> None:
    lu = make_lu(clock)
    result = send(lu, OVERWRITE_IMMED.format(8), overwrite_params(b"\x01\x02\x03\x04"))
    assert result.status == ScsiStatus.GOOD and result.pending is None
    assert medium(lu) == b"\x01\x02\x03\x04" * (BLOCKS * BS // 4)
    assert sense(run(lu, TUR)) == fixed(IN_PROGRESS, "800000")
    clock.now += lu.sanitize_overwrite_seconds
    assert run(lu, TUR).status == ScsiStatus.GOOD


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (0x01, b"\x0f\xf0\x12"),
        (0x81, b"\x0f\xf0\x12"),
        (0x82, b"\xf0\x0f\xed"),
        (0x02, b"\x0f\xf0\x12"),
    ],
)
def test_overwrite_pattern_repeats_and_invert_after_an_even_count(
    clock: Clock, flags: int, expected: bytes
) -> None:
    lu = make_lu(clock)
    lu.sanitize_overwrite_seconds = 0.0
    result = send(lu, OVERWRITE.format(7), overwrite_params(b"\x0f\xf0\x12", flags))
    assert result.status == ScsiStatus.GOOD and result.pending is None
    block = (expected * BS)[:BS]
    assert medium(lu) == block * BLOCKS


def test_overwrite_zero_pattern_deallocates_a_thin_lu(clock: Clock) -> None:
    lu = make_lu(clock)
    lu.sanitize_overwrite_seconds = 0.0
    lu.store.write(0, b"x" * BS)
    assert send(lu, OVERWRITE.format(BS + 4), overwrite_params(bytes(BS))).status == 0
    assert medium(lu) == bytes(BLOCKS * BS)
    assert not lu.store.is_mapped(0, BLOCKS * BS)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (b"\x00\x00\x02\x00" + b"\xaa" * BS, fixed("05 26 00", "8c0000")),  # OVERWRITE COUNT 0
        (b"\x01\x00\x00\x00" + b"\xaa" * BS, fixed("05 26 00", "800002")),  # pattern length 0
        (b"\x01\x00\x02\x04" + b"\xaa" * BS, fixed("05 26 00", "800002")),  # > block length
        (b"\x21\x00\x02\x00" + b"\xaa" * BS, fixed("05 26 00", "8e0000")),  # TEST
        (b"\x01\x00\x01\x00" + b"\xaa" * BS, fixed("05 1a 00")),  # pattern + 4 != list length
    ],
)
def test_overwrite_parameter_list_errors(clock: Clock, params: bytes, expected: str) -> None:
    lu = make_lu(clock)
    assert sense(send(lu, OVERWRITE.format(len(params)), params)) == expected
    assert medium(lu) == bytes(BLOCKS * BS) and not lu.sanitize.active


def test_overwrite_short_data_out_is_parameter_list_length_error(clock: Clock) -> None:
    lu = make_lu(clock)
    plan = call(lu, OVERWRITE.format(8))
    assert isinstance(plan, DataOutPlan)
    assert sense(plan.complete(4)) == fixed("05 1a 00")


# --- BLOCK ERASE, CRYPTOGRAPHIC ERASE ------------------------------------------------------


@pytest.mark.parametrize("text", [BLOCK_ERASE, CRYPTO_ERASE])
def test_erase_deallocates_everything_and_completes_at_once(clock: Clock, text: str) -> None:
    lu = make_lu(clock)
    lu.store.write(0, b"a" * (BLOCKS * BS))
    result = run(lu, text)
    assert result.status == ScsiStatus.GOOD and result.pending is None and not result.sense
    assert medium(lu) == bytes(BLOCKS * BS)
    assert not lu.store.is_mapped(0, BLOCKS * BS)
    assert run(lu, READ_10).status == ScsiStatus.GOOD  # WABEREQ/WACEREQ 01b


def test_block_device_characteristics_report_wabereq_and_wacereq(clock: Clock) -> None:
    out = run(make_lu(clock), "12 01 b1 00 ff 00")
    assert out.data is not None
    assert bytes(out.data)[:8].hex() == "00b1003c00010050"


# --- failure mode and EXIT FAILURE MODE -----------------------------------------------------


def test_failed_erase_enters_failure_mode_exit_with_ause(clock: Clock) -> None:
    lu = make_lu(clock, FailingStore(BLOCKS * BS))
    assert sense(run(lu, "48 22 0000000000 0000 00")) == fixed(FAILED)  # AUSE=1
    assert sense(run(lu, TUR)) == fixed(FAILED)
    assert sense(run(lu, READ_10)) == fixed(FAILED)
    assert run(lu, INQUIRY).status == ScsiStatus.GOOD
    request_sense = run(lu, "03 00 00 00 12 00")
    assert request_sense.data is not None and bytes(request_sense.data).hex() == fixed(FAILED)
    assert run(lu, EXIT_FAILURE_MODE).status == ScsiStatus.GOOD
    assert run(lu, TUR).status == ScsiStatus.GOOD


def test_failure_without_ause_needs_a_successful_sanitize(clock: Clock) -> None:
    store = FailingStore(BLOCKS * BS)
    lu = make_lu(clock, store)
    assert sense(run(lu, BLOCK_ERASE)) == fixed(FAILED)
    assert sense(run(lu, EXIT_FAILURE_MODE)) == fixed(INVALID_CDB, "cc0001")
    assert sense(run(lu, TUR)) == fixed(FAILED)
    store.failing = False
    assert run(lu, BLOCK_ERASE).status == ScsiStatus.GOOD
    assert run(lu, TUR).status == ScsiStatus.GOOD


def test_exit_failure_mode_outside_failure_mode_is_a_no_op(clock: Clock) -> None:
    lu = make_lu(clock)
    lu.store.write(0, b"a" * BS)
    assert run(lu, EXIT_FAILURE_MODE).status == ScsiStatus.GOOD
    assert medium(lu)[:BS] == b"a" * BS


# --- software write protect (SPC-4 §7.5.8 SWP) and reservations ------------------------------

CONTROL_SWP = "0a0a 0010 0800 0000 ffff 0000"
CONTROL = "0a0a 0010 0000 0000 ffff 0000"


def mode_select_control(lu: LogicalUnit, page: str) -> ScsiResult:
    params = bytes.fromhex(("0b 00 00 00" + page).replace(" ", ""))
    plan = call(lu, f"15 10 00 00 {len(params):02x} 00")
    assert isinstance(plan, DataOutPlan)
    plan.buffer[:] = params
    return plan.complete(len(params))


def test_swp_write_protects_sanitize_and_writes(clock: Clock) -> None:
    lu = make_lu(clock)
    assert mode_select_control(lu, CONTROL_SWP).status == ScsiStatus.GOOD
    current = run(lu, "1a 08 0a 00 ff 00")
    assert current.data is not None
    assert bytes(current.data).hex() == "0f009000" + CONTROL_SWP.replace(" ", "")  # WP, DPOFUA
    for text in (OVERWRITE.format(BS + 4), BLOCK_ERASE, CRYPTO_ERASE, "2a 00 00000000 00 0001 00"):
        assert sense(run(lu, text)) == fixed(PROTECTED)
    assert run(lu, READ_10).status == ScsiStatus.GOOD
    assert mode_select_control(lu, CONTROL).status == ScsiStatus.GOOD
    assert not lu.read_only
    assert isinstance(call(lu, "2a 00 00000000 00 0001 00"), DataOutPlan)


def test_sanitize_is_write_class_for_reservations(clock: Clock) -> None:
    lu = make_lu(clock)
    lu.store.write(0, b"a" * BS)
    holder, other = Nexus("iqn.a", 1), Nexus("iqn.a", 2)
    assert run(lu, "16 00 00 00 00 00", holder).status == ScsiStatus.GOOD  # RESERVE (6)
    conflict = run(lu, BLOCK_ERASE, other)
    assert conflict.status == ScsiStatus.RESERVATION_CONFLICT and not conflict.sense
    assert medium(lu)[:BS] == b"a" * BS
    assert run(lu, BLOCK_ERASE, holder).status == ScsiStatus.GOOD
    for opcode in (0x48, 0x2E, 0xAE, 0x8E, 0x8B, 0x9C, 0x83, 0x2A, 0x42):
        assert command_access(bytes((opcode,)) + bytes(15)) is Access.WRITE


# --- the iSCSI layer holds the status of IMMED=0 until the operation ends -------------------


@pytest.fixture
def pair(clock: Clock) -> Iterator[Initiator]:
    conn = TargetConnection(make_catalog(size=BLOCKS * BS), "test")
    lu = conn.catalog.targets[TARGET].luns[0]
    lu.sanitize.clock = clock
    lu.sanitize_erase_seconds = 5.0
    ini = Initiator(conn)
    ini.login()
    yield ini
    conn.close()


def test_pending_status_is_sent_by_tick_after_the_deadline(pair: Initiator, clock: Clock) -> None:
    sanitize = pair.command(cdb(BLOCK_ERASE))
    assert drain(pair.conn) == []
    tur = pair.command(cdb(TUR))
    (reply,) = drain(pair.conn)
    assert isinstance(reply.pdu, P.ScsiResponse) and reply.pdu.itt == tur.itt
    assert reply.pdu.status == ScsiStatus.CHECK_CONDITION
    assert reply.data[2:].hex() == fixed(IN_PROGRESS, "800000")
    pair.conn.tick(1.0)
    assert drain(pair.conn) == []
    clock.now += 5.0
    pair.conn.tick(1.0)
    (reply,) = drain(pair.conn)
    assert isinstance(reply.pdu, P.ScsiResponse) and reply.pdu.itt == sanitize.itt
    assert reply.pdu.status == ScsiStatus.GOOD
    pair.conn.tick(1.0)
    assert drain(pair.conn) == []


def test_aborted_pending_task_is_never_answered(pair: Initiator, clock: Clock) -> None:
    sanitize = pair.command(cdb(BLOCK_ERASE))
    feed(
        pair.conn,
        wire(
            P.TaskMgmtRequest(
                itt=0x500,
                function=1,
                referenced_tag=sanitize.itt,
                cmdsn=pair.cmdsn,
                refcmdsn=sanitize.cmdsn,
            )
        ),
    )
    (reply,) = drain(pair.conn)
    assert isinstance(reply.pdu, P.TaskMgmtResponse) and reply.pdu.response == 0
    clock.now += 1.0
    tur = pair.command(cdb(TUR))
    (reply,) = drain(pair.conn)  # the operation goes on without its task
    assert isinstance(reply.pdu, P.ScsiResponse) and reply.pdu.itt == tur.itt
    assert reply.data[2:].hex() == fixed(IN_PROGRESS, "803333")
    clock.now += 5.0
    pair.conn.tick(1.0)
    assert drain(pair.conn) == []
