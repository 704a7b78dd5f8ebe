"""Sense data (SPC-4 §4.5) and the exception handlers raise to report a CHECK CONDITION.

Handlers raise :class:`ScsiError`; :mod:`pyiscsi.scsi.dispatch` turns it (and a backing
store's :class:`~pyiscsi.backstore.base.StoreError`) into a :class:`ScsiResult` carrying
fixed-format sense data (SPC-4 §4.5.3).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from enum import IntEnum

from ..backstore.base import StoreError
from ..proto.wire import ScsiStatus
from .task import ScsiResult, StoreWork


class SenseKey(IntEnum):
    """Sense keys, SPC-4 §4.5.6 table 27."""

    NO_SENSE = 0x0
    RECOVERED_ERROR = 0x1
    NOT_READY = 0x2
    MEDIUM_ERROR = 0x3
    HARDWARE_ERROR = 0x4
    ILLEGAL_REQUEST = 0x5
    UNIT_ATTENTION = 0x6
    DATA_PROTECT = 0x7
    BLANK_CHECK = 0x8
    VENDOR_SPECIFIC = 0x9
    COPY_ABORTED = 0xA
    ABORTED_COMMAND = 0xB
    VOLUME_OVERFLOW = 0xD
    MISCOMPARE = 0xE
    COMPLETED = 0xF


class Asc(IntEnum):
    """ADDITIONAL SENSE CODE << 8 | QUALIFIER pairs we report (SPC-4 §4.5.6 table 28)."""

    NO_ADDITIONAL_SENSE = 0x0000
    LOGICAL_UNIT_NOT_READY = 0x0400
    SANITIZE_IN_PROGRESS = 0x041B
    UNREACHABLE_COPY_TARGET = 0x0804
    WRITE_ERROR = 0x0C00
    COPY_TARGET_DEVICE_NOT_REACHABLE = 0x0D02
    INVALID_FIELD_IN_COMMAND_INFORMATION_UNIT = 0x0E03
    UNRECOVERED_READ_ERROR = 0x1100
    PARAMETER_LIST_LENGTH_ERROR = 0x1A00
    MISCOMPARE_DURING_VERIFY = 0x1D00
    INVALID_COMMAND_OPERATION_CODE = 0x2000
    LBA_OUT_OF_RANGE = 0x2100
    INVALID_FIELD_IN_CDB = 0x2400
    LOGICAL_UNIT_NOT_SUPPORTED = 0x2500
    INVALID_FIELD_IN_PARAMETER_LIST = 0x2600
    INVALID_RELEASE_OF_PERSISTENT_RESERVATION = 0x2604
    TOO_MANY_TARGET_DESCRIPTORS = 0x2606
    UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE = 0x2607
    TOO_MANY_SEGMENT_DESCRIPTORS = 0x2608
    UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE = 0x2609
    UNEXPECTED_INEXACT_SEGMENT = 0x260A
    WRITE_PROTECTED = 0x2700
    SPACE_ALLOCATION_FAILED_WRITE_PROTECT = 0x2707
    POWER_ON_RESET = 0x2900
    MODE_PARAMETERS_CHANGED = 0x2A01
    CAPACITY_DATA_HAS_CHANGED = 0x2A09
    COMMANDS_CLEARED_BY_ANOTHER_INITIATOR = 0x2F00
    MEDIUM_FORMAT_CORRUPTED = 0x3100
    SANITIZE_COMMAND_FAILED = 0x3103
    SAVING_PARAMETERS_NOT_SUPPORTED = 0x3900
    REPORTED_LUNS_DATA_HAS_CHANGED = 0x3F0E
    INTERNAL_TARGET_FAILURE = 0x4400
    PROTOCOL_SERVICE_CRC_ERROR = 0x4705
    DATA_PHASE_ERROR = 0x4B00
    INVALID_TARGET_PORT_TRANSFER_TAG_RECEIVED = 0x4B01
    TOO_MUCH_WRITE_DATA = 0x4B02
    DATA_OFFSET_ERROR = 0x4B05

    @property
    def asc(self) -> int:
        return self.value >> 8

    @property
    def ascq(self) -> int:
        return self.value & 0xFF


_FIXED = struct.Struct(">BxBIBIBBx3s")
"""Fixed sense: code, key, information, add. length, cmd-specific, ASC, ASCQ, FRU+SKS."""

FIXED_SENSE_LENGTH = 18


def field_pointer(byte: int, bit: int | None = None, *, in_cdb: bool = True) -> bytes:
    """The 3-byte FIELD POINTER sense-key specific field (SPC-4 §4.5.2.4.2)."""
    b0 = 0x80 | (0x40 if in_cdb else 0)
    if bit is not None:
        b0 |= 0x08 | (bit & 0x07)
    return bytes((b0, (byte >> 8) & 0xFF, byte & 0xFF))


def fixed_sense(
    sense_key: int,
    asc: int,
    ascq: int,
    *,
    information: int | None = None,
    sense_key_specific: bytes | None = None,
) -> bytes:
    """Build 18 bytes of fixed-format sense data (SPC-4 §4.5.3, response code 70h).

    ``information`` sets the INFORMATION field and the VALID bit; ``sense_key_specific`` is
    the 3-byte SKS field (its SKSV bit included, see :func:`field_pointer`).
    """
    code = 0x70 if information is None else 0xF0
    sks = sense_key_specific or b"\x00\x00\x00"
    return _FIXED.pack(
        code, sense_key & 0x0F, (information or 0) & 0xFFFFFFFF, 10, 0, asc, ascq, sks
    )


def descriptor_sense(sense_key: int, asc: int, ascq: int) -> bytes:
    """8 bytes of descriptor-format sense data without descriptors (SPC-4 §4.5.2, 72h)."""
    return bytes((0x72, sense_key & 0x0F, asc, ascq, 0, 0, 0, 0))


class ScsiError(Exception):
    """A command ends in CHECK CONDITION with this sense (SAM-5 §5.3, SPC-4 §4.5)."""

    def __init__(
        self,
        sense_key: SenseKey,
        asc: Asc,
        *,
        information: int | None = None,
        sense_key_specific: bytes | None = None,
        status: ScsiStatus = ScsiStatus.CHECK_CONDITION,
    ) -> None:
        super().__init__(f"{sense_key.name}: {asc.name}")
        self.sense_key = sense_key
        self.asc = asc
        self.information = information
        self.sense_key_specific = sense_key_specific
        self.status = status

    @property
    def sense(self) -> bytes:
        """Fixed-format sense data for this error."""
        return fixed_sense(
            self.sense_key,
            self.asc.asc,
            self.asc.ascq,
            information=self.information,
            sense_key_specific=self.sense_key_specific,
        )

    def result(self) -> ScsiResult:
        """The :class:`ScsiResult` that reports this error (sense only with CHECK CONDITION:
        RESERVATION CONFLICT carries none, SAM-5 §5.3.1)."""
        sense = self.sense if self.status == ScsiStatus.CHECK_CONDITION else b""
        return ScsiResult(status=self.status, sense=sense)

    @classmethod
    def illegal(cls, asc: Asc) -> ScsiError:
        """ILLEGAL REQUEST with ``asc`` (no field pointer)."""
        return cls(SenseKey.ILLEGAL_REQUEST, asc)

    @classmethod
    def invalid_field_in_cdb(cls, byte: int, bit: int | None = None) -> ScsiError:
        """ILLEGAL REQUEST / INVALID FIELD IN CDB pointing at ``byte`` (and ``bit``)."""
        return cls(
            SenseKey.ILLEGAL_REQUEST,
            Asc.INVALID_FIELD_IN_CDB,
            sense_key_specific=field_pointer(byte, bit),
        )

    @classmethod
    def invalid_field_in_parameter_list(cls, byte: int, bit: int | None = None) -> ScsiError:
        """ILLEGAL REQUEST / INVALID FIELD IN PARAMETER LIST pointing into the data-out."""
        return cls(
            SenseKey.ILLEGAL_REQUEST,
            Asc.INVALID_FIELD_IN_PARAMETER_LIST,
            sense_key_specific=field_pointer(byte, bit, in_cdb=False),
        )

    @classmethod
    def lba_out_of_range(cls) -> ScsiError:
        """ILLEGAL REQUEST / LOGICAL BLOCK ADDRESS OUT OF RANGE (SBC-3 §4.5)."""
        return cls(SenseKey.ILLEGAL_REQUEST, Asc.LBA_OUT_OF_RANGE)

    @classmethod
    def write_protected(cls) -> ScsiError:
        """DATA PROTECT / WRITE PROTECTED (SBC-3 §4.13)."""
        return cls(SenseKey.DATA_PROTECT, Asc.WRITE_PROTECTED)

    @classmethod
    def miscompare(cls, offset: int) -> ScsiError:
        """MISCOMPARE / MISCOMPARE DURING VERIFY; INFORMATION = first differing byte."""
        return cls(SenseKey.MISCOMPARE, Asc.MISCOMPARE_DURING_VERIFY, information=offset)


def store_error_result(err: StoreError) -> ScsiResult:
    """CHECK CONDITION carrying a backing store's sense (SPC-4 §4.5.3)."""
    return ScsiResult(
        status=ScsiStatus.CHECK_CONDITION,
        sense=fixed_sense(err.sense_key, err.asc, err.ascq, information=err.information),
    )


def guarded(complete: Callable[[int], ScsiResult | StoreWork]
            ) -> Callable[[int], ScsiResult | StoreWork]:
    """Wrap a Data-Out completion so its errors become CHECK CONDITION results."""

    def run(received: int) -> ScsiResult | StoreWork:
        try:
            return complete(received)
        except ScsiError as err:
            return err.result()
        except StoreError as store_err:  # its own name: one name is one type when compiled
            return store_error_result(store_err)

    return run
