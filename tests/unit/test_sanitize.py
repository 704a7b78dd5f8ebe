"""SANITIZE (SBC-4 §5.30, §4.11) and the software write protect it must honour: byte-exact
CDBs and parameter lists in, byte-exact data/sense out. The erase is store work: the tests
run it themselves, inline or on a thread whose store stops at chosen offsets, so the state
can be sampled mid-way; through the in-memory engine pair it is a store request the test
completes."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import pyiscsi.cli
from pyiscsi.backstore.base import BackingStore, StoreError
from pyiscsi.backstore.file import FileStore
from pyiscsi.backstore.memory import MemoryStore
from pyiscsi.backstore.ops import StoreOpKind
from pyiscsi.proto import pdu as P
from pyiscsi.proto.wire import ScsiStatus
from pyiscsi.scsi import sanitize
from pyiscsi.scsi.dispatch import execute
from pyiscsi.scsi.lun import LogicalUnit
from pyiscsi.scsi.reservations import Access, command_access
from pyiscsi.scsi.task import DataOutPlan, Nexus, Outcome, ScsiRequest, ScsiResult, StoreWork
from pyiscsi.scsi.unit_attention import ResetKind
from pyiscsi.target.catalog import Catalog
from pyiscsi.target.connection import TargetConnection
from pyiscsi.target.storework import failed, then

from ..pair import TARGET, Initiator, Reply, drain, feed, make_catalog, wire

BS = 512
BLOCKS = 64
MIB = 1 << 20
assert sanitize.CHUNK == MIB


class FailingStore(MemoryStore):
    """A store whose unmap fails (a sanitize that cannot erase) until told otherwise."""

    failing = True

    def unmap(self, offset: int, length: int) -> None:
        if self.failing:
            raise StoreError("erase failed")
        super().unmap(offset, length)


class SteppedStore(MemoryStore):
    """Stops before writing or unmapping at an offset of ``stops`` (the erase goes in 1 MiB
    chunks) and waits there until the test lets it go: progress can be sampled mid-way."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.stops: set[int] = set()
        self.reached: queue.Queue[int] = queue.Queue()
        self.proceed: queue.Queue[None] = queue.Queue()

    def _stop(self, offset: int) -> None:
        if offset in self.stops:
            self.reached.put(offset)
            self.proceed.get(timeout=10)

    def prepare_write(self, offset: int, length: int) -> None:
        self._stop(offset)  # before every write (MappedStore.write calls it too)
        super().prepare_write(offset, length)

    def unmap(self, offset: int, length: int) -> None:
        self._stop(offset)
        super().unmap(offset, length)

    def wait_at(self, offset: int) -> None:
        assert self.reached.get(timeout=10) == offset

    def go(self) -> None:
        self.proceed.put(None)


class Worker:
    """Runs a StoreWork's operations on a thread, as the transport's StoreRunner does."""

    def __init__(self, work: StoreWork) -> None:
        self.work = work
        self.error: Exception | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for op in self.work.ops:
                self.work.store.perform(op)
        except Exception as exc:
            self.error = exc

    def join(self) -> Outcome:
        """Wait for the operations; what the engine would resume with (``then``/failure)."""
        self.thread.join(timeout=10)
        assert not self.thread.is_alive()
        return failed(self.work, self.error) if self.error else then(self.work)


def make_lu(store: MemoryStore | FileStore | None = None) -> LogicalUnit:
    lu = LogicalUnit(0, store or MemoryStore(BLOCKS * BS), TARGET)
    lu.sanitize_pace = 0  # as fast as it goes: the tests do not wait for a clock
    return lu


def cdb(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", "")).ljust(16, b"\0")


def call(lu: LogicalUnit, text: str, nexus: Nexus | None = None) -> Outcome:
    request = ScsiRequest(cdb(text)) if nexus is None else ScsiRequest(cdb(text), nexus=nexus)
    return execute(lu, request)


def run(lu: LogicalUnit, text: str, nexus: Nexus | None = None) -> ScsiResult:
    result = call(lu, text, nexus)
    assert isinstance(result, ScsiResult)
    return result


def perform(work: StoreWork) -> Outcome:
    """Run the work inline, then what comes next (the engine's synchronous path)."""
    try:
        for op in work.ops:
            work.store.perform(op)
    except Exception as exc:
        return failed(work, exc)
    return then(work)


def settle(outcome: Outcome) -> ScsiResult:
    """Run store work to the end, background work included; the command's result."""
    while isinstance(outcome, StoreWork):
        outcome = perform(outcome)
    assert isinstance(outcome, ScsiResult)
    if outcome.background is not None:
        assert outcome.status == ScsiStatus.GOOD
        assert perform(outcome.background) == ScsiResult()
    return outcome


def complete(lu: LogicalUnit, text: str, nexus: Nexus | None = None) -> ScsiResult:
    return settle(call(lu, text, nexus))


def send(lu: LogicalUnit, text: str, params: bytes) -> Outcome:
    plan = call(lu, text)
    assert isinstance(plan, DataOutPlan)
    assert plan.staged and plan.length == len(params)
    plan.buffer[:] = params
    return plan.complete(len(params))


def erase_work(outcome: Outcome) -> StoreWork:
    """The one CALL the erase is, off the loop, gated (no busy ranges)."""
    work = outcome.background if isinstance(outcome, ScsiResult) else outcome
    assert isinstance(work, StoreWork)
    (op,) = work.ops
    assert op.kind is StoreOpKind.CALL and op.call is not None
    assert work.gated and work.ranges == []
    assert not work.store.synchronous(op)
    return work


def sense(result: ScsiResult) -> str:
    assert result.status == ScsiStatus.CHECK_CONDITION
    return result.sense.hex()


def fixed(key_asc_ascq: str, sks: str = "000000") -> str:
    """18 bytes of fixed sense: 70h, key, ASC, ASCQ and the sense key specific field."""
    key, asc, ascq = key_asc_ascq.split()
    return f"7000{key}000000000a00000000{asc}{ascq}00{sks}"


def medium(lu: LogicalUnit) -> bytes:
    return bytes(lu.store.view(0, lu.blocks * lu.block_size))


OVERWRITE = "48 01 0000000000 {:04x} 00"
OVERWRITE_IMMED = "48 81 0000000000 {:04x} 00"
OVERWRITE_AUSE_IMMED = "48 a1 0000000000 {:04x} 00"
BLOCK_ERASE = "48 02 0000000000 0000 00"
BLOCK_ERASE_AUSE = "48 22 0000000000 0000 00"
BLOCK_ERASE_IMMED = "48 82 0000000000 0000 00"
CRYPTO_ERASE = "48 03 0000000000 0000 00"
EXIT_FAILURE_MODE = "48 1f 0000000000 0000 00"
TUR = "00 0000000000"
INQUIRY = "12 00 00 0060 00"
REPORT_LUNS = "a0 00 000000 00000010 00 00"
READ_10 = "28 00 00000000 00 0001 00"
START_STOP = "1b 01 00 00 01 00"
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
def test_report_supported_operation_codes_lists_every_service_action(sa: int, usage: str
                                                                      ) -> None:
    out = run(make_lu(), f"a3 0c 02 48 {sa:04x} 00000100 00 00")
    assert out.status == ScsiStatus.GOOD and out.data is not None
    assert bytes(out.data).hex() == "0003000a" + usage.replace(" ", "")


@pytest.mark.parametrize("sa", [0x00, *range(0x04, 0x1F)])
def test_unknown_service_action_is_invalid_field_in_cdb(sa: int) -> None:
    assert sense(run(make_lu(), f"48 {sa:02x} 0000000000 0000 00")) == fixed(
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
def test_reserved_fields_and_parameter_list_length(text: str, sks: str | None) -> None:
    lu = make_lu()
    result = complete(lu, text)
    if sks is None:
        assert result.status == ScsiStatus.GOOD and not result.sense
    else:
        assert sense(result) == fixed(INVALID_CDB, sks)
    assert not lu.sanitize.active


# --- the erase runs off the loop; the gate answers with its real progress ----------------


def test_overwrite_status_waits_for_the_erase_and_reports_its_progress() -> None:
    store = SteppedStore(4 * MIB)
    lu = make_lu(store)
    store.write(0, b"\x55" * (4 * MIB))
    store.stops = {1 * MIB, 3 * MIB}
    work = erase_work(send(lu, OVERWRITE.format(BS + 4), overwrite_params(b"\xaa" * BS)))
    assert lu.sanitize.running() and lu.sanitize.done == 0  # in progress before any byte
    assert sense(run(lu, TUR)) == fixed(IN_PROGRESS, "800000")
    worker = Worker(work)  # IMMED=0: the status is what comes after the work
    store.wait_at(1 * MIB)  # one chunk of four erased: PROGRESS INDICATION 4000h
    assert lu.sanitize.done == 1 * MIB
    assert medium(lu)[: MIB + BS] == b"\xaa" * MIB + b"\x55" * BS
    assert sense(run(lu, TUR)) == fixed(IN_PROGRESS, "804000")
    assert sense(run(lu, READ_10)) == fixed(IN_PROGRESS, "804000")
    assert sense(run(lu, START_STOP)) == fixed(IN_PROGRESS, "804000")
    assert sense(run(lu, OVERWRITE.format(8))) == fixed(IN_PROGRESS, "804000")
    assert sense(run(lu, "2a 00 00000000 00 0001 00")) == fixed(IN_PROGRESS, "804000")
    assert run(lu, INQUIRY).status == ScsiStatus.GOOD
    assert run(lu, REPORT_LUNS).status == ScsiStatus.GOOD
    request_sense = run(lu, "03 00 00 00 ff 00")
    assert request_sense.status == ScsiStatus.GOOD and request_sense.data is not None
    assert bytes(request_sense.data).hex() == fixed(IN_PROGRESS, "804000")
    descriptor = run(lu, "03 01 00 00 ff 00")
    assert descriptor.data is not None
    assert bytes(descriptor.data).hex() == "7202041b00000008" + "0206000080400000"
    short = run(lu, "03 00 00 00 08 00")  # ALLOCATION LENGTH trims the sense data
    assert short.data is not None and bytes(short.data).hex() == fixed(IN_PROGRESS)[:16]
    lu.reset(ResetKind.TARGET_COLD)  # resets do not stop a sanitize operation
    lu.reset(ResetKind.LOGICAL_UNIT)
    store.go()
    store.wait_at(3 * MIB)
    assert sense(run(lu, TUR)) == fixed(IN_PROGRESS, "80c000")
    store.go()
    assert worker.join() == ScsiResult()
    assert run(lu, TUR).status == ScsiStatus.GOOD
    assert not lu.sanitize.active and lu.sanitize.progress() == 0xFFFF
    assert medium(lu) == b"\xaa" * (4 * MIB)


def test_overwrite_immed_is_good_at_once_then_in_progress_until_the_work_ends() -> None:
    lu = make_lu()
    result = send(lu, OVERWRITE_IMMED.format(8), overwrite_params(b"\x01\x02\x03\x04"))
    assert isinstance(result, ScsiResult)
    assert result.status == ScsiStatus.GOOD and not result.sense and result.data is None
    work = erase_work(result)
    assert sense(run(lu, TUR)) == fixed(IN_PROGRESS, "800000")
    assert medium(lu) == bytes(BLOCKS * BS)  # nothing done before the work runs
    assert perform(work) == ScsiResult()
    assert medium(lu) == b"\x01\x02\x03\x04" * (BLOCKS * BS // 4)
    assert run(lu, TUR).status == ScsiStatus.GOOD


def test_erase_reports_progress_of_deallocation_too() -> None:
    store = SteppedStore(2 * MIB)
    lu = make_lu(store)
    store.write(0, b"a" * (2 * MIB))
    store.stops = {MIB}
    worker = Worker(erase_work(call(lu, BLOCK_ERASE_IMMED)))
    store.wait_at(MIB)
    assert sense(run(lu, TUR)) == fixed(IN_PROGRESS, "808000")
    assert not store.is_mapped(0, MIB) and store.is_mapped(MIB, MIB)
    store.go()
    assert worker.join() == ScsiResult()  # background work: nothing waits for it
    assert run(lu, TUR).status == ScsiStatus.GOOD
    assert not store.is_mapped(0, 2 * MIB)


def test_pace_limits_bytes_erased_per_second() -> None:
    lu = make_lu(MemoryStore(4 * MIB))
    lu.sanitize_pace = 2 * MIB  # two seconds for 4 MiB
    now = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    steps: list[tuple[int, int]] = []
    work = sanitize._paced(lu, lambda offset, n: steps.append((offset, n)),
                           clock=lambda: now[0], sleep=sleep)
    work()
    assert steps == [(i * MIB, MIB) for i in range(4)]
    assert sleeps == [0.5, 0.5, 0.5, 0.5] and now[0] == 2.0
    lu.sanitize_pace = 0  # unlimited: never sleeps
    sleeps.clear()
    sanitize._paced(lu, lambda offset, n: None, clock=lambda: now[0], sleep=sleep)()
    assert sleeps == []


def test_pace_sleeps_only_what_the_erase_itself_did_not_take() -> None:
    lu = make_lu(MemoryStore(2 * MIB))
    lu.sanitize_pace = 4 * MIB  # 0.25 s a chunk
    now = [0.0]
    sleeps: list[float] = []

    def slow_step(offset: int, n: int) -> None:
        now[0] += 0.2 if offset == 0 else 0.5  # the second chunk is slower than the pace

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    sanitize._paced(lu, slow_step, clock=lambda: now[0], sleep=sleep)()
    assert sleeps == [pytest.approx(0.05)]


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (0x01, b"\x0f\xf0\x12"),
        (0x81, b"\x0f\xf0\x12"),
        (0x82, b"\xf0\x0f\xed"),
        (0x02, b"\x0f\xf0\x12"),
    ],
)
def test_overwrite_pattern_repeats_and_invert_after_an_even_count(flags: int, expected: bytes
                                                                  ) -> None:
    lu = make_lu()
    result = settle(send(lu, OVERWRITE.format(7), overwrite_params(b"\x0f\xf0\x12", flags)))
    assert result == ScsiResult()
    block = (expected * BS)[:BS]
    assert medium(lu) == block * BLOCKS


def test_overwrite_zero_pattern_deallocates_a_thin_lu() -> None:
    lu = make_lu()
    lu.store.write(0, b"x" * BS)
    assert settle(send(lu, OVERWRITE.format(BS + 4), overwrite_params(bytes(BS)))).status == 0
    assert medium(lu) == bytes(BLOCKS * BS)
    assert not lu.store.is_mapped(0, BLOCKS * BS)


class BytesStore(BackingStore):
    """A store that is not memory-addressable: the erase goes through ``write``."""

    def __init__(self, size: int) -> None:
        self.size, self.block_size, self.read_only, self.name = size, BS, False, "bytes"
        self.data = bytearray(size)
        self.writes: list[tuple[int, int]] = []

    def readinto(self, offset: int, buffer: memoryview) -> None:
        buffer[:] = self.data[offset : offset + len(buffer)]

    def write(self, offset: int, data: memoryview | bytes) -> None:
        self.writes.append((offset, len(data)))
        self.data[offset : offset + len(data)] = data

    def flush(self, offset: int = 0, length: int | None = None) -> None:
        pass


def test_overwrite_of_a_store_that_is_not_memory_goes_through_write() -> None:
    store = BytesStore(2 * MIB + 4 * BS)
    lu = LogicalUnit(0, store, TARGET, sanitize_pace=0)
    assert settle(send(lu, OVERWRITE.format(8), overwrite_params(b"\x01\x02\x03\x04"))
                  ) == ScsiResult()
    assert store.writes == [(0, MIB), (MIB, MIB), (2 * MIB, 4 * BS)]
    assert store.data == b"\x01\x02\x03\x04" * (len(store.data) // 4)


def test_copy_unlocked_fills_the_store_memory() -> None:
    store = MemoryStore(8 * BS)
    sanitize._copy_unlocked(store.view(BS, 2 * BS), b"\x5a" * (4 * BS))
    assert bytes(store.view(0, 4 * BS)) == bytes(BS) + b"\x5a" * (2 * BS) + bytes(BS)
    store._view.release()  # raises BufferError while an export is left behind
    store._map.close()
    assert store._map.closed


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
def test_overwrite_parameter_list_errors(params: bytes, expected: str) -> None:
    lu = make_lu()
    result = send(lu, OVERWRITE.format(len(params)), params)
    assert isinstance(result, ScsiResult) and sense(result) == expected
    assert medium(lu) == bytes(BLOCKS * BS) and not lu.sanitize.active


def test_overwrite_short_data_out_is_parameter_list_length_error() -> None:
    lu = make_lu()
    plan = call(lu, OVERWRITE.format(8))
    assert isinstance(plan, DataOutPlan)
    result = plan.complete(4)
    assert isinstance(result, ScsiResult) and sense(result) == fixed("05 1a 00")
    assert not lu.sanitize.active


# --- BLOCK ERASE, CRYPTOGRAPHIC ERASE ------------------------------------------------------


@pytest.mark.parametrize("text", [BLOCK_ERASE, CRYPTO_ERASE])
def test_erase_deallocates_everything(text: str) -> None:
    lu = make_lu()
    lu.store.write(0, b"a" * (BLOCKS * BS))
    work = erase_work(call(lu, text))
    assert lu.store.is_mapped(0, BLOCKS * BS)  # nothing erased until the work runs
    assert perform(work) == ScsiResult()
    assert medium(lu) == bytes(BLOCKS * BS)
    assert not lu.store.is_mapped(0, BLOCKS * BS)
    assert run(lu, READ_10).status == ScsiStatus.GOOD  # WABEREQ/WACEREQ 01b


def test_block_device_characteristics_report_wabereq_and_wacereq() -> None:
    out = run(make_lu(), "12 01 b1 00 ff 00")
    assert out.data is not None
    assert bytes(out.data)[:8].hex() == "00b1003c00010050"


# --- failure mode and EXIT FAILURE MODE -----------------------------------------------------


def test_failed_erase_enters_failure_mode_exit_with_ause() -> None:
    lu = make_lu(FailingStore(BLOCKS * BS))
    assert sense(complete(lu, BLOCK_ERASE_AUSE)) == fixed(FAILED)
    assert sense(run(lu, TUR)) == fixed(FAILED)
    assert sense(run(lu, READ_10)) == fixed(FAILED)
    assert run(lu, INQUIRY).status == ScsiStatus.GOOD
    assert run(lu, REPORT_LUNS).status == ScsiStatus.GOOD
    request_sense = run(lu, "03 00 00 00 12 00")
    assert request_sense.data is not None and bytes(request_sense.data).hex() == fixed(FAILED)
    descriptor = run(lu, "03 01 00 00 ff 00")
    assert descriptor.data is not None and bytes(descriptor.data).hex() == "7203310300000000"
    assert run(lu, EXIT_FAILURE_MODE).status == ScsiStatus.GOOD
    assert run(lu, TUR).status == ScsiStatus.GOOD
    assert not lu.sanitize.active


def test_failed_immed_erase_enters_failure_mode_when_the_background_work_fails() -> None:
    lu = make_lu(FailingStore(BLOCKS * BS))
    result = call(lu, "48 a2 0000000000 0000 00")  # IMMED, AUSE
    assert isinstance(result, ScsiResult) and result.status == ScsiStatus.GOOD
    assert sense(run(lu, TUR)) == fixed(IN_PROGRESS, "800000")
    outcome = perform(erase_work(result))  # what the engine drops: nobody waits for it
    assert isinstance(outcome, ScsiResult) and sense(outcome) == fixed(FAILED)
    assert sense(run(lu, TUR)) == fixed(FAILED)
    assert lu.sanitize.exit_allowed


def test_failure_without_ause_needs_a_successful_sanitize() -> None:
    store = FailingStore(BLOCKS * BS)
    lu = make_lu(store)
    assert sense(complete(lu, BLOCK_ERASE)) == fixed(FAILED)
    assert sense(run(lu, EXIT_FAILURE_MODE)) == fixed(INVALID_CDB, "cc0001")
    assert sense(run(lu, TUR)) == fixed(FAILED)
    store.failing = False
    assert complete(lu, BLOCK_ERASE) == ScsiResult()
    assert run(lu, TUR).status == ScsiStatus.GOOD


def test_a_sanitize_in_failure_mode_is_in_progress_while_it_runs() -> None:
    store = FailingStore(BLOCKS * BS)
    lu = make_lu(store)
    assert sense(complete(lu, BLOCK_ERASE)) == fixed(FAILED)
    store.failing = False
    work = erase_work(call(lu, BLOCK_ERASE))
    assert sense(run(lu, TUR)) == fixed(IN_PROGRESS, "800000")
    assert not lu.sanitize.failure_mode
    assert perform(work) == ScsiResult()
    assert run(lu, TUR).status == ScsiStatus.GOOD


def test_exit_failure_mode_outside_failure_mode_is_a_no_op() -> None:
    lu = make_lu()
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
    result = plan.complete(len(params))
    assert isinstance(result, ScsiResult)
    return result


def test_swp_write_protects_sanitize_and_writes() -> None:
    lu = make_lu()
    assert mode_select_control(lu, CONTROL_SWP).status == ScsiStatus.GOOD
    current = run(lu, "1a 08 0a 00 ff 00")
    assert current.data is not None
    assert bytes(current.data).hex() == "0f009000" + CONTROL_SWP.replace(" ", "")  # WP, DPOFUA
    for text in (OVERWRITE.format(BS + 4), BLOCK_ERASE, CRYPTO_ERASE, "2a 00 00000000 00 0001 00"):
        assert sense(run(lu, text)) == fixed(PROTECTED)
    assert not lu.sanitize.active
    assert run(lu, READ_10).status == ScsiStatus.GOOD
    assert mode_select_control(lu, CONTROL).status == ScsiStatus.GOOD
    assert not lu.read_only
    assert isinstance(call(lu, "2a 00 00000000 00 0001 00"), DataOutPlan)


def test_sanitize_is_write_class_for_reservations() -> None:
    lu = make_lu()
    lu.store.write(0, b"a" * BS)
    holder, other = Nexus("iqn.a", 1), Nexus("iqn.a", 2)
    assert run(lu, "16 00 00 00 00 00", holder).status == ScsiStatus.GOOD  # RESERVE (6)
    conflict = run(lu, BLOCK_ERASE, other)
    assert conflict.status == ScsiStatus.RESERVATION_CONFLICT and not conflict.sense
    assert medium(lu)[:BS] == b"a" * BS and not lu.sanitize.active
    assert complete(lu, BLOCK_ERASE, holder) == ScsiResult()
    assert medium(lu)[:BS] == bytes(BS)
    for opcode in (0x48, 0x2E, 0xAE, 0x8E, 0x8B, 0x9C, 0x83, 0x2A, 0x42):
        assert command_access(bytes((opcode,)) + bytes(15)) is Access.WRITE


# --- the marker of a running operation on a file LUN (SBC-4 §4.11.3) ------------------------


class SteppedFileStore(FileStore):
    """A file store that stops before unmapping at an offset of ``stops``."""

    def __init__(self, path: Path, size: int | None = None) -> None:
        super().__init__(path, size)
        self.stops: set[int] = set()
        self.reached: queue.Queue[int] = queue.Queue()
        self.proceed: queue.Queue[None] = queue.Queue()

    def unmap(self, offset: int, length: int) -> None:
        if offset in self.stops:
            self.reached.put(offset)
            self.proceed.get(timeout=10)
        super().unmap(offset, length)


def marker_of(path: Path) -> Path:
    return path.with_name(path.name + ".sanitize.json")


def test_file_lu_records_the_operation_until_it_succeeded(tmp_path: Path) -> None:
    path = tmp_path / "lun.img"
    store = SteppedFileStore(path, 2 * MIB)
    lu = make_lu(store)
    store.stops = {MIB}
    work = erase_work(call(lu, "48 a2 0000000000 0000 00"))  # IMMED, AUSE
    marker = marker_of(path)
    assert json.loads(marker.read_text()) == {"version": 1, "action": "block_erase",
                                              "ause": True}
    assert not marker.with_name(marker.name + ".tmp").exists()
    worker = Worker(work)
    assert store.reached.get(timeout=10) == MIB
    assert marker.exists()  # mid-erase: a crash now leaves it behind
    store.proceed.put(None)
    assert worker.join() == ScsiResult()
    assert not marker.exists()
    store.close()


def test_overwrite_marker_holds_the_pattern(tmp_path: Path) -> None:
    path = tmp_path / "lun.img"
    lu = make_lu(FileStore(path, BLOCKS * BS))
    work = erase_work(send(lu, OVERWRITE.format(7), overwrite_params(b"\x0f\xf0\x12", 0x82)))
    assert json.loads(marker_of(path).read_text()) == {
        "version": 1, "action": "overwrite", "ause": False, "pattern": "0ff012",
        "overwrite_count": 2, "invert": True}
    assert perform(work) == ScsiResult()
    assert not marker_of(path).exists()
    assert medium(lu) == (b"\xf0\x0f\xed" * BS)[:BS] * BLOCKS
    lu.store.close()


@pytest.mark.parametrize(("ause", "exit_allowed"), [(True, True), (False, False)])
def test_file_lu_opened_with_a_marker_starts_in_failure_mode(
    tmp_path: Path, ause: bool, exit_allowed: bool
) -> None:
    path = tmp_path / "lun.img"
    FileStore(path, BLOCKS * BS).close()
    marker_of(path).write_text(json.dumps({"version": 1, "action": "overwrite",
                                           "ause": ause, "pattern": "00",
                                           "overwrite_count": 1, "invert": False}))
    lu = make_lu(FileStore(path))
    assert lu.sanitize.failure_mode and lu.sanitize.exit_allowed is exit_allowed
    assert sense(run(lu, TUR)) == fixed(FAILED)
    assert sense(run(lu, READ_10)) == fixed(FAILED)
    assert run(lu, INQUIRY).status == ScsiStatus.GOOD
    if ause:
        assert run(lu, EXIT_FAILURE_MODE).status == ScsiStatus.GOOD
    else:
        assert sense(run(lu, EXIT_FAILURE_MODE)) == fixed(INVALID_CDB, "cc0001")
        assert marker_of(path).exists()
        assert complete(lu, BLOCK_ERASE) == ScsiResult()  # a new sanitize clears it
    assert not marker_of(path).exists()
    assert run(lu, TUR).status == ScsiStatus.GOOD
    lu.store.close()
    assert not make_lu(FileStore(path)).sanitize.active  # and it stays cleared


def test_unreadable_marker_is_failure_mode_without_exit(tmp_path: Path) -> None:
    path = tmp_path / "lun.img"
    FileStore(path, BLOCKS * BS).close()
    marker_of(path).write_text("{not json")
    lu = make_lu(FileStore(path))
    assert lu.sanitize.failure_mode and not lu.sanitize.exit_allowed
    assert sense(run(lu, EXIT_FAILURE_MODE)) == fixed(INVALID_CDB, "cc0001")
    lu.store.close()


def test_failed_erase_keeps_the_marker(tmp_path: Path) -> None:
    path = tmp_path / "lun.img"

    class Failing(FileStore):
        def unmap(self, offset: int, length: int) -> None:
            raise StoreError("erase failed")

    lu = make_lu(Failing(path, BLOCKS * BS))
    assert sense(complete(lu, BLOCK_ERASE_AUSE)) == fixed(FAILED)
    assert marker_of(path).exists()
    lu.store.close()
    reopened = make_lu(FileStore(path))  # a restart stays in failure mode
    assert reopened.sanitize.failure_mode and reopened.sanitize.exit_allowed
    reopened.store.close()


def test_marker_that_cannot_be_written_fails_the_command_before_any_erase(tmp_path: Path
                                                                        ) -> None:
    path = tmp_path / "lun.img"
    lu = make_lu(FileStore(path, BLOCKS * BS))
    lu.store.write(0, b"a" * BS)
    marker_of(path).mkdir()  # os.replace onto a directory fails
    result = call(lu, BLOCK_ERASE)
    assert isinstance(result, ScsiResult) and sense(result) == fixed("03 0c 00")
    assert not lu.sanitize.active and medium(lu)[:BS] == b"a" * BS
    lu.store.close()


def test_ram_lu_has_no_marker() -> None:
    assert make_lu().sanitize.marker is None


# --- --sanitize-pace ------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "pace"), [("0", 0), ("4096", 4096), ("64K", 64 << 10),
                                            ("512M", 512 << 20), ("1GiB", 1 << 30)])
def test_parse_sanitize_pace(text: str, pace: int) -> None:
    assert pyiscsi.cli.parse_sanitize_pace(text) == pace


def test_serve_applies_the_pace_to_every_lu(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Catalog] = []
    monkeypatch.setattr(pyiscsi.cli, "_serve",
                        lambda catalog, *args, **kwargs: seen.append(catalog))
    monkeypatch.setattr(pyiscsi.cli, "_run", lambda coro, loop_kind: None)
    pyiscsi.cli.main(["serve", "--lun", "ram:1M", "--lun", "ram:2M",
                      "--sanitize-pace", "64M"])
    (catalog,) = seen
    luns = next(iter(catalog.targets.values())).luns
    assert [lu.sanitize_pace for lu in luns.values()] == [64 << 20, 64 << 20]
    seen.clear()
    pyiscsi.cli.main(["serve", "--lun", "ram:1M"])
    assert next(iter(seen[0].targets.values())).luns[0].sanitize_pace == 1 << 30


def test_serve_rejects_a_bad_pace() -> None:
    out = subprocess.run([sys.executable, "-m", "pyiscsi.cli", "serve", "--lun", "ram:1M",
                          "--sanitize-pace", "fast"], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 2
    assert out.stderr.startswith("pyiscsi: error: bad sanitize pace 'fast'")


# --- through the iSCSI layer: the status of IMMED=0 waits for the store work ---------------


@pytest.fixture
def pair() -> Iterator[Initiator]:
    conn = TargetConnection(make_catalog(size=BLOCKS * BS), "test")
    conn.catalog.targets[TARGET].luns[0].sanitize_pace = 0
    ini = Initiator(conn)
    ini.login()
    yield ini
    conn.close()


def lu_of(pair: Initiator) -> LogicalUnit:
    return pair.conn.catalog.targets[TARGET].luns[0]


def answer(pair: Initiator, text: str) -> P.ScsiResponse:
    cmd = pair.command(cdb(text))
    (reply,) = sent(pair.conn)
    assert isinstance(reply.pdu, P.ScsiResponse) and reply.pdu.itt == cmd.itt
    return reply.pdu


def sent(conn: TargetConnection) -> list[Reply]:
    """What the target sent, without running the store work it handed out (the tests
    complete it themselves, when they choose)."""
    return drain(conn, conn.take_output()[0])


def checked(pair: Initiator, text: str) -> str:
    """The fixed sense of a command that ends in CHECK CONDITION."""
    cmd = pair.command(cdb(text), edtl=255 if text.startswith("28") else 0,
                       read=text.startswith("28"))
    (reply,) = sent(pair.conn)
    assert isinstance(reply.pdu, P.ScsiResponse) and reply.pdu.itt == cmd.itt
    assert reply.pdu.status == ScsiStatus.CHECK_CONDITION
    return reply.data[2:].hex()


def test_immed0_response_comes_after_the_store_work(pair: Initiator) -> None:
    lu_of(pair).store.write(0, b"a" * BS)
    sanitize_cmd = pair.command(cdb(BLOCK_ERASE))
    assert sent(pair.conn) == []
    (request,) = pair.conn.take_store_requests()
    (op,) = request.ops
    assert op.kind is StoreOpKind.CALL
    # Other commands are answered at once from the LU's state; none waits for the work.
    assert checked(pair, TUR) == fixed(IN_PROGRESS, "800000")
    assert checked(pair, "28 00 00000000 00 0001 00") == fixed(IN_PROGRESS, "800000")
    assert answer(pair, INQUIRY).status == ScsiStatus.GOOD
    assert lu_of(pair).store.is_mapped(0, BS)
    for op in request.ops:
        request.store.perform(op)
    assert sent(pair.conn) == []  # nothing until the completion is fed in
    pair.conn.store_completed(request.token)
    (reply,) = sent(pair.conn)
    assert isinstance(reply.pdu, P.ScsiResponse) and reply.pdu.itt == sanitize_cmd.itt
    assert reply.pdu.status == ScsiStatus.GOOD
    assert answer(pair, TUR).status == ScsiStatus.GOOD
    assert not lu_of(pair).store.is_mapped(0, BS)


def test_immed0_progress_through_the_engine_while_the_work_runs() -> None:
    catalog = make_catalog(size=BLOCKS * BS)
    target = catalog.targets[TARGET]
    store = SteppedStore(4 * MIB)
    target.luns[0] = LogicalUnit(0, store, TARGET, sanitize_pace=0)
    conn = TargetConnection(catalog, "test")
    ini = Initiator(conn)
    ini.login()
    try:
        store.stops = {2 * MIB}
        sanitize_cmd = ini.command(cdb(BLOCK_ERASE))
        (request,) = conn.take_store_requests()
        worker = threading.Thread(target=lambda: [store.perform(op) for op in request.ops])
        worker.start()
        store.wait_at(2 * MIB)
        assert checked(ini, TUR) == fixed(IN_PROGRESS, "808000")
        store.go()
        worker.join(timeout=10)
        assert sent(conn) == []
        conn.store_completed(request.token)
        (reply,) = sent(conn)
        assert isinstance(reply.pdu, P.ScsiResponse) and reply.pdu.itt == sanitize_cmd.itt
        assert reply.pdu.status == ScsiStatus.GOOD
    finally:
        conn.close()


def test_immed1_is_good_at_once_and_not_ready_until_the_work_completes(pair: Initiator
                                                                      ) -> None:
    params = overwrite_params(b"\x01\x02\x03\x04")
    cmd = pair.command(cdb(OVERWRITE_IMMED.format(len(params))), edtl=len(params),
                       write=True, immediate_data=params)
    (reply,) = sent(pair.conn)
    assert isinstance(reply.pdu, P.ScsiResponse) and reply.pdu.itt == cmd.itt
    assert reply.pdu.status == ScsiStatus.GOOD
    (request,) = pair.conn.take_store_requests()
    assert checked(pair, TUR) == fixed(IN_PROGRESS, "800000")
    for op in request.ops:
        request.store.perform(op)
    assert checked(pair, TUR) == fixed(IN_PROGRESS, "80ffff")  # all erased, not yet ended
    pair.conn.store_completed(request.token)
    assert sent(pair.conn) == []  # the background work has no response of its own
    assert answer(pair, TUR).status == ScsiStatus.GOOD
    assert medium(lu_of(pair)) == b"\x01\x02\x03\x04" * (BLOCKS * BS // 4)


def test_failed_store_work_is_sanitize_command_failed(pair: Initiator) -> None:
    pair.command(cdb(BLOCK_ERASE_AUSE))
    (request,) = pair.conn.take_store_requests()
    pair.conn.store_completed(request.token, StoreError("erase failed"))
    (reply,) = sent(pair.conn)
    assert isinstance(reply.pdu, P.ScsiResponse)
    assert reply.pdu.status == ScsiStatus.CHECK_CONDITION
    assert reply.data[2:].hex() == fixed(FAILED)
    assert checked(pair, TUR) == fixed(FAILED)
    assert answer(pair, EXIT_FAILURE_MODE).status == ScsiStatus.GOOD
    assert answer(pair, TUR).status == ScsiStatus.GOOD


def test_aborted_task_is_never_answered_and_the_operation_goes_on(pair: Initiator) -> None:
    sanitize_cmd = pair.command(cdb(BLOCK_ERASE))
    (request,) = pair.conn.take_store_requests()
    feed(
        pair.conn,
        wire(
            P.TaskMgmtRequest(
                itt=0x500,
                function=1,
                referenced_tag=sanitize_cmd.itt,
                cmdsn=pair.cmdsn,
                refcmdsn=sanitize_cmd.cmdsn,
            )
        ),
    )
    (reply,) = sent(pair.conn)
    assert isinstance(reply.pdu, P.TaskMgmtResponse) and reply.pdu.response == 0
    assert checked(pair, TUR) == fixed(IN_PROGRESS, "800000")  # without its task
    for op in request.ops:
        request.store.perform(op)
    pair.conn.store_completed(request.token)
    assert sent(pair.conn) == []
    assert answer(pair, TUR).status == ScsiStatus.GOOD


def test_operation_ends_even_after_its_connection_closed() -> None:
    conn = TargetConnection(make_catalog(size=BLOCKS * BS), "test")
    lu = conn.catalog.targets[TARGET].luns[0]
    lu.sanitize_pace = 0
    ini = Initiator(conn)
    ini.login()
    ini.command(cdb(BLOCK_ERASE))
    (request,) = conn.take_store_requests()
    conn.close()  # I_T nexus loss does not stop it (SBC-4 §4.11.1)
    assert lu.sanitize.running()
    for op in request.ops:
        request.store.perform(op)
    conn.store_completed(request.token)
    assert not lu.sanitize.active


def test_stopping_ends_the_erase_at_the_next_chunk_as_a_failure(tmp_path: Path) -> None:
    path = tmp_path / "lun.img"
    store = SteppedFileStore(path, 4 * MIB)
    lu = make_lu(store)
    store.stops = {MIB}
    worker = Worker(erase_work(call(lu, "48 a2 0000000000 0000 00")))
    assert store.reached.get(timeout=10) == MIB
    lu.sanitize.stopping = True  # the target shuts down (serve's SIGTERM)
    store.proceed.put(None)
    result = worker.join()
    assert isinstance(result, ScsiResult) and sense(result) == fixed(FAILED)
    assert lu.sanitize.done == 2 * MIB  # the chunk under way was finished, no more
    assert marker_of(path).exists()
    store.close()
    reopened = make_lu(FileStore(path))
    assert reopened.sanitize.failure_mode and reopened.sanitize.exit_allowed
    reopened.store.close()


class ObjectStore(BackingStore):
    """Not memory, deallocating only whole 4 MiB objects (as RBD does): records the steps."""

    def __init__(self, size: int) -> None:
        self.size, self.block_size, self.read_only, self.name = size, BS, False, "objects"
        self.data = bytearray(b"\x55" * size)
        self.steps: list[tuple[str, int, int]] = []

    def limits(self) -> dict[str, int]:
        return {"unmap_granularity_bytes": 4 * MIB}

    def readinto(self, offset: int, buffer: memoryview) -> None:
        buffer[:] = self.data[offset:offset + len(buffer)]

    def write(self, offset: int, data: memoryview | bytes) -> None:
        self.steps.append(("write", offset, len(data)))
        self.data[offset:offset + len(data)] = data

    def unmap(self, offset: int, length: int) -> None:
        self.steps.append(("unmap", offset, length))
        self.data[offset:offset + length] = bytes(length)

    def flush(self, offset: int = 0, length: int | None = None) -> None:
        pass


def test_erase_steps_in_whole_units_of_deallocation() -> None:
    store = ObjectStore(12 * MIB)
    lu = make_lu(store)  # type: ignore[arg-type]
    assert settle(call(lu, BLOCK_ERASE)) == ScsiResult()
    assert store.steps == [("unmap", n * 4 * MIB, 4 * MIB) for n in range(3)]
    store.steps.clear()
    result = settle(send(lu, OVERWRITE.format(8), overwrite_params(b"\x01\x02\x03\x04")))
    assert result == ScsiResult()
    assert store.steps == [("write", n * 4 * MIB, 4 * MIB) for n in range(3)]
    assert store.data == b"\x01\x02\x03\x04" * (3 * MIB)  # every byte, not 1 MiB of 4
