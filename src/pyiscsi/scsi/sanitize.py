"""SANITIZE (SBC-4 §5.30) and the sanitize operation state of a logical unit (SBC-4 §4.11).

Service actions: OVERWRITE (01h), BLOCK ERASE (02h), CRYPTOGRAPHIC ERASE (03h), EXIT FAILURE
MODE (1Fh). The erase is store work (:class:`~pyiscsi.scsi.task.StoreWork`): it runs off the
event loop, in chunks, at a pace limit (``LogicalUnit.sanitize_pace`` bytes a second), and
the PROGRESS INDICATION reports the bytes really erased. While it runs, every command but
INQUIRY, REPORT LUNS and REQUEST SENSE ends in NOT READY / SANITIZE IN PROGRESS (SBC-4
§4.11.2); REQUEST SENSE answers that sense as its data. Resets do not stop it (SBC-4
§4.11.1). With IMMED=0 the status waits for the end of the operation; with IMMED=1 it is
GOOD at once and the erase goes on in the background.

A sanitize whose erase fails (a :class:`StoreError`) leaves the LU in *sanitize failure
mode*: medium access ends in MEDIUM ERROR / SANITIZE COMMAND FAILED until a sanitize
succeeds, or until EXIT FAILURE MODE when the failed command had AUSE=1 (SBC-4 §4.11.3).

On a store with a ``path`` (a file LUN) the operation is recorded in ``<path>.sanitize.json``
(replaced atomically) before the erase starts and removed once it succeeded. A LU opened
with that marker present was interrupted mid-erase (the process died): it starts in
sanitize failure mode, EXIT FAILURE MODE allowed iff the interrupted command had AUSE=1.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..backstore.base import StoreError
from ..backstore.ops import StoreOp, StoreOpKind
from ..proto.wire import ScsiStatus
from .sense import Asc, ScsiError, SenseKey, fixed_sense
from .task import DataOutPlan, ScsiRequest, ScsiResult, StoreWork

if TYPE_CHECKING:
    from .lun import LogicalUnit
    from .sbc import Handler

log = logging.getLogger("pyiscsi.sanitize")

OPCODE = 0x48


class SanitizeAction(IntEnum):
    """SANITIZE service actions (SBC-4 §5.30.1 table 91)."""

    OVERWRITE = 0x01
    BLOCK_ERASE = 0x02
    CRYPTOGRAPHIC_ERASE = 0x03
    EXIT_FAILURE_MODE = 0x1F


IMMED, ZNR, AUSE = 0x80, 0x40, 0x20
"""CDB byte 1 flags (SBC-4 §5.30.1); ZNR (zoned no reset) is for zoned devices only."""

EXEMPT_WHILE_RUNNING = frozenset({0x12, 0xA0})
"""INQUIRY and REPORT LUNS run normally during a sanitize operation (SBC-4 §4.11.2)."""
EXEMPT_IN_FAILURE_MODE = EXEMPT_WHILE_RUNNING | {OPCODE}
"""... and in sanitize failure mode SANITIZE itself is the way out (SBC-4 §4.11.3)."""
REQUEST_SENSE = 0x03

OVERWRITE_HEADER = struct.Struct(">BxH")
"""OVERWRITE parameter list header: INVERT|TEST|OVERWRITE COUNT, reserved, INITIALIZATION
PATTERN LENGTH; the pattern follows (SBC-4 §5.30.2.2 table 93)."""


@dataclass(slots=True)
class SanitizeState:
    """The sanitize operation of one logical unit (SBC-4 §4.11). The erase runs on a worker
    thread and advances ``done``; the loop only reads it (one int: atomic under the GIL)."""

    marker: Path | None = None
    """Where a running operation is recorded (``<store path>.sanitize.json``), if anywhere."""
    active: bool = False
    """Running or in failure mode: :func:`gate` must look at every command (a fast test)."""
    in_progress: bool = False
    total: int = 0
    done: int = 0
    """Bytes erased so far by the running operation."""
    failure_mode: bool = False
    exit_allowed: bool = False
    """The failed operation had AUSE=1: EXIT FAILURE MODE may end failure mode."""
    stopping: bool = False
    """The target shuts down: a running erase ends at its next chunk, as a failure (the
    marker stays, so the LU comes back in failure mode, like after a crash)."""

    def running(self) -> bool:
        """Whether an operation is in progress."""
        return self.in_progress

    def begin(self, total: int) -> None:
        """An operation over ``total`` bytes starts: the LU is busy from now on."""
        self.failure_mode = self.exit_allowed = False
        self.in_progress = self.active = True
        self.total, self.done = total, 0

    def finish(self) -> None:
        """The erase ended well: the LU serves commands again."""
        self.in_progress = False
        self.active = self.failure_mode

    def fail(self, ause: bool) -> None:
        """The erase failed: enter sanitize failure mode (SBC-4 §4.11.3)."""
        self.in_progress = False
        self.failure_mode = self.active = True
        self.exit_allowed = ause

    def leave_failure_mode(self) -> None:
        """EXIT FAILURE MODE (SBC-4 §5.30.2.5): the LU serves commands again."""
        self.failure_mode = self.exit_allowed = self.active = False
        self.forget()

    def progress(self) -> int:
        """PROGRESS INDICATION: the fraction erased, in 65536ths (SPC-4 §4.5.2.4.4)."""
        done = self.done / self.total if self.total else 1.0
        return max(0, min(0xFFFF, int(done * 0x10000)))

    # -- the marker of a running operation (survives the process, SBC-4 §4.11.3) --

    def record(self, entry: dict[str, Any]) -> None:
        """Write ``entry`` to :attr:`marker` atomically (temporary file, fsync, rename,
        directory fsync) before the erase starts; :class:`OSError` when it cannot."""
        if self.marker is None:
            return
        tmp = self.marker.with_name(self.marker.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"version": 1, **entry}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.marker)
        directory = os.open(self.marker.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def forget(self) -> None:
        """The operation succeeded (or failure mode was left): remove the marker."""
        if self.marker is None:
            return
        try:
            self.marker.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("cannot remove sanitize marker %s: %s", self.marker, exc)

    def recover(self) -> None:
        """At LU start: a marker left behind is an interrupted operation, so the LU is in
        failure mode (SBC-4 §4.11.3); EXIT FAILURE MODE is allowed iff it recorded AUSE=1
        (an unreadable marker: not allowed)."""
        if self.marker is None or not self.marker.exists():
            return
        ause = False
        try:
            entry = json.loads(self.marker.read_text(encoding="utf-8"))
            ause = entry["ause"] is True
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("unreadable sanitize marker %s: %s", self.marker, exc)
        log.warning("%s: sanitize interrupted, logical unit in sanitize failure mode",
                    self.marker)
        self.fail(ause)


# --- the gate in front of every command while an operation runs or failed ---------------


def _sense(key: SenseKey, asc: Asc, sks: bytes | None, descriptor: bool) -> bytes:
    """Fixed (70h) or descriptor (72h, with a sense key specific descriptor) sense data."""
    if not descriptor:
        return fixed_sense(key, asc.asc, asc.ascq, sense_key_specific=sks)
    extra = b"\x02\x06\x00\x00" + sks + b"\x00" if sks else b""
    return bytes((0x72, key, asc.asc, asc.ascq, 0, 0, 0, len(extra))) + extra


def gate(lu: LogicalUnit, request: ScsiRequest) -> ScsiResult | None:
    """The answer for a command that may not run now (SBC-4 §4.11.2-3), else None."""
    state = lu.sanitize
    if state.running():
        if request.cdb[0] in EXEMPT_WHILE_RUNNING:
            return None
        progress = state.progress()
        key, asc = SenseKey.NOT_READY, Asc.SANITIZE_IN_PROGRESS
        sks: bytes | None = bytes((0x80, progress >> 8, progress & 0xFF))
    elif state.failure_mode:
        if request.cdb[0] in EXEMPT_IN_FAILURE_MODE:
            return None
        key, asc, sks = SenseKey.MEDIUM_ERROR, Asc.SANITIZE_COMMAND_FAILED, None
    else:
        return None
    cdb = request.cdb
    if cdb[0] == REQUEST_SENSE:  # the condition is its parameter data (SPC-4 §6.39)
        data = _sense(key, asc, sks, descriptor=bool(cdb[1] & 0x01))
        return ScsiResult(data=data[: cdb[4]])
    return ScsiResult(status=ScsiStatus.CHECK_CONDITION, sense=_sense(key, asc, sks, False))


# --- SANITIZE (SBC-4 §5.30) --------------------------------------------------------------


def _prologue(lu: LogicalUnit, cdb: bytes, lengths: range) -> int:
    """CDB checks every service action shares: ZNR and reserved bytes 2-6 zero, PARAMETER
    LIST LENGTH in ``lengths`` (INVALID FIELD IN CDB, SBC-4 §5.30.1), medium writable
    (DATA PROTECT / WRITE PROTECTED, SBC-4 §4.11.1). Answers the parameter list length."""
    if cdb[1] & ZNR:
        raise ScsiError.invalid_field_in_cdb(1, 6)
    for at in range(2, 7):
        if cdb[at]:
            raise ScsiError.invalid_field_in_cdb(at)
    length = int.from_bytes(cdb[7:9], "big")
    if length not in lengths:
        raise ScsiError.invalid_field_in_cdb(7)
    if lu.read_only:
        raise ScsiError.write_protected()
    return length


CHUNK = 1 << 20
"""Bytes erased between two looks at the pace and the progress."""


def _paced(lu: LogicalUnit, step: Callable[[int, int], None],
           clock: Callable[[], float] = time.monotonic,
           sleep: Callable[[float], None] = time.sleep) -> Callable[[], None]:
    """The erase as blocking work: ``step(offset, length)`` over the whole medium, chunk by
    chunk, counting progress and keeping below ``lu.sanitize_pace`` bytes a second."""
    state = lu.sanitize
    size = lu.blocks * lu.block_size
    chunk = _chunk(lu)

    def work() -> None:
        started = clock()
        for offset in range(0, size, chunk):
            if state.stopping:
                raise StoreError("sanitize interrupted: the target is shutting down")
            n = min(chunk, size - offset)
            step(offset, n)
            state.done = offset + n
            pace = lu.sanitize_pace
            if pace:
                ahead = state.done / pace - (clock() - started)
                if ahead > 0:
                    sleep(ahead)
        lu.store.flush()
        state.forget()  # erased and stable: nothing left to recover

    return work


def _chunk(lu: LogicalUnit) -> int:
    """Bytes one erase step covers: :data:`CHUNK`, or whole units of deallocation when they
    are larger (an RBD object: a discard of part of one only zeroes it, it stays mapped)."""
    return max(CHUNK, lu.unmap_granularity_bytes)


def _fill(lu: LogicalUnit, block: bytes) -> Callable[[int, int], None]:
    """Write ``block`` to every LBA; a zero block on a thin LU deallocates instead (LBPRZ)."""
    store = lu.store
    if lu.thin and not any(block):
        return store.unmap
    chunk = block * (_chunk(lu) // len(block))
    if not store.memory_addressable:
        return lambda offset, length: store.write(offset, chunk[:length])

    def fill(offset: int, length: int) -> None:
        store.prepare_write(offset, length)  # allocated first: the copy cannot fault
        _copy_unlocked(store.view(offset, length), chunk)

    return fill


def _copy_unlocked(target: memoryview, source: bytes) -> None:
    """``target[:] = source[:len(target)]`` without holding the GIL: a ctypes call drops it,
    so the event loop runs on while the worker copies (and takes the page faults) of a
    whole chunk; a slice assignment would hold it for the whole copy."""
    n = len(target)
    assert n <= len(source)
    destination = (ctypes.c_char * n).from_buffer(target)
    try:
        ctypes.memmove(destination, source, n)
    finally:
        del destination  # release the export of the store's memory


def _run(lu: LogicalUnit, cdb: bytes, step: Callable[[int, int], None],
         entry: dict[str, Any] | None = None) -> ScsiResult | StoreWork:
    """Record the operation (file LUNs), then start the erase as store work; the status
    waits for its end unless IMMED=1. A failed erase is SANITIZE COMMAND FAILED and failure
    mode (the marker stays, so a restart keeps it)."""
    state = lu.sanitize
    ause = bool(cdb[1] & AUSE)
    action = SanitizeAction(cdb[1] & 0x1F)
    try:
        state.record({"action": action.name.lower(), "ause": ause, **(entry or {})})
    except OSError as exc:  # nothing erased yet: the command fails, no failure mode
        raise StoreError(f"cannot record the sanitize operation: {exc}") from exc
    state.begin(lu.blocks * lu.block_size)

    def failed(err: Exception) -> ScsiResult:
        log.error("LUN %d: sanitize failed: %s", lu.number, err)
        state.fail(ause)
        return ScsiError(SenseKey.MEDIUM_ERROR, Asc.SANITIZE_COMMAND_FAILED).result()

    def finished() -> ScsiResult:
        state.finish()
        return ScsiResult()

    op = StoreOp(StoreOpKind.CALL, 0, state.total, call=_paced(lu, step))
    work = StoreWork(lu.store, (op,), finished, failed, gated=True)
    if cdb[1] & IMMED:
        return ScsiResult(background=work)
    return work


def overwrite(lu: LogicalUnit, request: ScsiRequest) -> DataOutPlan:
    """OVERWRITE (SBC-4 §5.30.2.2): the parameter list (5 to block length + 4 bytes) holds
    INVERT, TEST, OVERWRITE COUNT and the initialization pattern, repeated over each block;
    with INVERT the pattern is inverted between passes, so an even count ends inverted."""
    cdb = request.cdb
    length = _prologue(lu, cdb, range(5, lu.block_size + 5))
    buffer = memoryview(bytearray(length))

    def complete(received: int) -> ScsiResult | StoreWork:
        params = bytes(buffer[: min(received, length)])
        if len(params) < length:
            raise ScsiError.illegal(Asc.PARAMETER_LIST_LENGTH_ERROR)
        flags, pattern_length = OVERWRITE_HEADER.unpack_from(params)
        count = flags & 0x1F
        if flags & 0x60:
            raise ScsiError.invalid_field_in_parameter_list(0, 6)  # TEST: vendor specific
        if not count:
            raise ScsiError.invalid_field_in_parameter_list(0, 4)
        if not 0 < pattern_length <= lu.block_size:
            raise ScsiError.invalid_field_in_parameter_list(2)
        if pattern_length + 4 != length:
            raise ScsiError.illegal(Asc.PARAMETER_LIST_LENGTH_ERROR)
        pattern = params[4:]
        if flags & 0x80 and count % 2 == 0:
            pattern = bytes(b ^ 0xFF for b in pattern)
        block = (pattern * -(-lu.block_size // pattern_length))[: lu.block_size]
        entry = {"pattern": params[4:].hex(), "overwrite_count": count,
                 "invert": bool(flags & 0x80)}
        return _run(lu, cdb, _fill(lu, block), entry)

    return DataOutPlan(buffer=buffer, length=length, complete=complete, staged=True)


def _erase_handler(action: str
                   ) -> Callable[[LogicalUnit, ScsiRequest], ScsiResult | StoreWork]:
    """BLOCK ERASE / CRYPTOGRAPHIC ERASE (SBC-4 §5.30.2.3-4): no parameter list. Every LBA is
    deallocated and reads back zeros (LBPRZ); this emulation has no media encryption key to
    change, so a cryptographic erase ends in the same state (unreadable old data)."""

    def erase(lu: LogicalUnit, request: ScsiRequest) -> ScsiResult | StoreWork:
        _prologue(lu, request.cdb, range(1))
        return _run(lu, request.cdb, lu.store.unmap)

    erase.__name__ = action
    return erase


def exit_failure_mode(lu: LogicalUnit, request: ScsiRequest) -> ScsiResult:
    """EXIT FAILURE MODE (SBC-4 §5.30.2.5): leaves sanitize failure mode when the failed
    SANITIZE had AUSE=1 (else INVALID FIELD IN CDB); outside failure mode nothing to do."""
    _prologue(lu, request.cdb, range(1))
    state = lu.sanitize
    if state.failure_mode:
        if not state.exit_allowed:
            raise ScsiError.invalid_field_in_cdb(1, 4)
        state.leave_failure_mode()
    return ScsiResult()


HANDLERS: dict[int, Handler] = {
    SanitizeAction.OVERWRITE: overwrite,
    SanitizeAction.BLOCK_ERASE: _erase_handler("block_erase"),
    SanitizeAction.CRYPTOGRAPHIC_ERASE: _erase_handler("cryptographic_erase"),
    SanitizeAction.EXIT_FAILURE_MODE: exit_failure_mode,
}
"""Service action -> handler (dispatched on CDB byte 1 bits 4-0)."""


def usage(action: int) -> bytes:
    """CDB usage data (SPC-4 §6.35.3): IMMED always; AUSE but for EXIT FAILURE MODE."""
    flags = IMMED | (0 if action == SanitizeAction.EXIT_FAILURE_MODE else AUSE)
    return bytes((OPCODE, flags | action, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0x00))
