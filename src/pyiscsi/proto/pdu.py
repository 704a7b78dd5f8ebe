"""Basic Header Segment codec for every iSCSI PDU, RFC 7143 §11.

Each PDU is a frozen slotted dataclass holding the 48-byte BHS fields. The data segment is
never part of the dataclass: it is placed or sent separately (zero-copy), and only its length
(``data_length``) travels here. ``ahs_length`` is in bytes (a multiple of 4).

All BHS share one skeleton (§11.2.1): bytes 0-3 opcode/flags, byte 4 TotalAHSLength, bytes
5-7 DataSegmentLength, 8-15 LUN (or ISID/TSIH), 16-19 ITT, then seven 32-bit words. The codec
packs and unpacks that skeleton once and each class maps its own fields onto it.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, TypeAlias

from .errors import PduRejected
from .wire import BHS_LENGTH, RESERVED_TAG, Opcode, RejectReason

_setattr = object.__setattr__
"""How a frozen dataclass's own ``__init__`` sets its fields (as the generated one does)."""

_SKELETON = struct.Struct(">BBBBIQI7I")
_CMD = struct.Struct(">BBBBIQIIII16s")
_Words: TypeAlias = tuple[int, ...]
_IMMEDIATE = 0x40
_FINAL = 0x80


def _lengths(ahs_length: int, data_length: int) -> int:
    if ahs_length % 4 or not 0 <= ahs_length <= 1020:
        raise ValueError(f"TotalAHSLength {ahs_length} not a multiple of 4 in 0..1020")
    if not 0 <= data_length < 1 << 24:
        raise ValueError(f"DataSegmentLength {data_length} out of range")
    return (ahs_length // 4) << 24 | data_length


def padded(length: int) -> int:
    """Length of a data segment rounded up to a 4-byte boundary (RFC 7143 §11.2.3)."""
    return (length + 3) & ~3


class Pdu:
    """Common base: every PDU knows its opcode and can encode its BHS.

    ``OPCODE`` is set on each class right after its definition, not in the dataclass body:
    a compiled (mypyc) dataclass would take a class variable with a default there for a
    field with a default, ahead of the fields without one.
    """

    __slots__ = ()
    OPCODE: ClassVar[Opcode]

    def encode(self) -> bytes:
        """The 48-byte BHS of this PDU."""
        raise NotImplementedError

    @property
    def opcode(self) -> Opcode:
        return self.OPCODE

    @property
    def data_length_(self) -> int:
        return int(getattr(self, "data_length", 0))

    @property
    def ahs_length_(self) -> int:
        return int(getattr(self, "ahs_length", 0))


def _pack(b0: int, b1: int, b2: int, b3: int, lens: int, q: int, itt: int, *w: int) -> bytes:
    return _SKELETON.pack(b0, b1, b2, b3, lens, q, itt, *w)


# ---------------------------------------------------------------- initiator PDUs


@dataclass(frozen=True, slots=True)
class NopOut(Pdu):
    """NOP-Out, RFC 7143 §11.18."""

    itt: int
    ttt: int = RESERVED_TAG
    cmdsn: int = 0
    expstatsn: int = 0
    lun: int = 0
    immediate: bool = True
    data_length: int = 0

    def encode(self) -> bytes:
        return _pack(self.OPCODE | (_IMMEDIATE if self.immediate else 0), _FINAL, 0, 0,
                     _lengths(0, self.data_length), self.lun, self.itt, self.ttt, self.cmdsn,
                     self.expstatsn, 0, 0, 0, 0)

    @classmethod
    def decode(cls, w: _Words, bhs: bytes) -> NopOut:
        return cls(itt=w[6], ttt=w[7], cmdsn=w[8], expstatsn=w[9], lun=w[5],
                   immediate=bool(w[0] & _IMMEDIATE), data_length=w[4] & 0xFFFFFF)


NopOut.OPCODE = Opcode.NOP_OUT


@dataclass(frozen=True, slots=True)
class ScsiCommand(Pdu):
    """SCSI Command, RFC 7143 §11.3. ``cdb`` is the 16-byte CDB field (AHS may extend it)."""

    itt: int
    cdb: bytes
    expected_length: int = 0
    cmdsn: int = 0
    expstatsn: int = 0
    lun: int = 0
    read: bool = False
    write: bool = False
    final: bool = True
    attr: int = 1
    immediate: bool = False
    ahs_length: int = 0
    data_length: int = 0

    def __init__(self, itt: int, cdb: bytes, expected_length: int = 0, cmdsn: int = 0,
                 expstatsn: int = 0, lun: int = 0, read: bool = False, write: bool = False,
                 final: bool = True, attr: int = 1, immediate: bool = False,
                 ahs_length: int = 0, data_length: int = 0) -> None:
        """The fields above, in their order (``dataclass`` keeps an ``__init__`` the class
        defines). Written out because the one ``dataclasses`` generates stays interpreted
        under mypyc: every command of the general path (each one on an RBD LU) decodes one,
        and that ``__init__`` was the largest single cost of its engine (13% of the CPU per
        1 MiB READ, ``bench/engine_cost.py``). ``tests/unit/test_pdu.py`` checks it sets
        every field."""
        _setattr(self, "itt", itt)
        _setattr(self, "cdb", cdb)
        _setattr(self, "expected_length", expected_length)
        _setattr(self, "cmdsn", cmdsn)
        _setattr(self, "expstatsn", expstatsn)
        _setattr(self, "lun", lun)
        _setattr(self, "read", read)
        _setattr(self, "write", write)
        _setattr(self, "final", final)
        _setattr(self, "attr", attr)
        _setattr(self, "immediate", immediate)
        _setattr(self, "ahs_length", ahs_length)
        _setattr(self, "data_length", data_length)

    def encode(self) -> bytes:
        b1 = ((_FINAL if self.final else 0) | (0x40 if self.read else 0)
              | (0x20 if self.write else 0) | (self.attr & 7))
        cdb = self.cdb[:16].ljust(16, b"\0")
        return _CMD.pack(self.OPCODE | (_IMMEDIATE if self.immediate else 0), b1, 0, 0,
                         _lengths(self.ahs_length, self.data_length), self.lun, self.itt,
                         self.expected_length, self.cmdsn, self.expstatsn, cdb)

    @classmethod
    def decode(cls, w: _Words, bhs: bytes) -> ScsiCommand:
        b1 = w[1]
        return ScsiCommand(w[6], bytes(bhs[32:48]), w[7], w[8], w[9], w[5], bool(b1 & 0x40),
                           bool(b1 & 0x20), bool(b1 & _FINAL), b1 & 7, bool(w[0] & _IMMEDIATE),
                           (w[4] >> 24) * 4, w[4] & 0xFFFFFF)


ScsiCommand.OPCODE = Opcode.SCSI_COMMAND


@dataclass(frozen=True, slots=True)
class TaskMgmtRequest(Pdu):
    """Task Management Function Request, RFC 7143 §11.5."""

    itt: int
    function: int
    lun: int = 0
    referenced_tag: int = RESERVED_TAG
    cmdsn: int = 0
    expstatsn: int = 0
    refcmdsn: int = 0
    expdatasn: int = 0
    immediate: bool = True

    def encode(self) -> bytes:
        return _pack(self.OPCODE | (_IMMEDIATE if self.immediate else 0),
                     _FINAL | (self.function & 0x7F), 0, 0, 0, self.lun, self.itt,
                     self.referenced_tag, self.cmdsn, self.expstatsn, self.refcmdsn,
                     self.expdatasn, 0, 0)

    @classmethod
    def decode(cls, w: _Words, bhs: bytes) -> TaskMgmtRequest:
        return cls(itt=w[6], function=w[1] & 0x7F, lun=w[5], referenced_tag=w[7], cmdsn=w[8],
                   expstatsn=w[9], refcmdsn=w[10], expdatasn=w[11],
                   immediate=bool(w[0] & _IMMEDIATE))


TaskMgmtRequest.OPCODE = Opcode.TASK_MGMT_REQUEST


def _stages(transit: bool, cont: bool, csg: int, nsg: int) -> int:
    return (0x80 if transit else 0) | (0x40 if cont else 0) | (csg & 3) << 2 | (nsg & 3)


@dataclass(frozen=True, slots=True)
class LoginRequest(Pdu):
    """Login Request, RFC 7143 §11.12. ``isid`` is the 48-bit ISID as an integer."""

    itt: int
    isid: int
    tsih: int = 0
    cid: int = 0
    cmdsn: int = 0
    expstatsn: int = 0
    transit: bool = False
    cont: bool = False
    csg: int = 0
    nsg: int = 0
    version_max: int = 0
    version_min: int = 0
    data_length: int = 0

    def encode(self) -> bytes:
        return _pack(self.OPCODE | _IMMEDIATE, _stages(self.transit, self.cont, self.csg, self.nsg),
                     self.version_max, self.version_min, _lengths(0, self.data_length),
                     (self.isid & 0xFFFFFFFFFFFF) << 16 | self.tsih, self.itt, self.cid << 16,
                     self.cmdsn, self.expstatsn, 0, 0, 0, 0)

    @classmethod
    def decode(cls, w: _Words, bhs: bytes) -> LoginRequest:
        b1 = w[1]
        return cls(itt=w[6], isid=w[5] >> 16, tsih=w[5] & 0xFFFF, cid=w[7] >> 16, cmdsn=w[8],
                   expstatsn=w[9], transit=bool(b1 & 0x80), cont=bool(b1 & 0x40),
                   csg=(b1 >> 2) & 3, nsg=b1 & 3, version_max=w[2], version_min=w[3],
                   data_length=w[4] & 0xFFFFFF)


LoginRequest.OPCODE = Opcode.LOGIN_REQUEST


@dataclass(frozen=True, slots=True)
class TextRequest(Pdu):
    """Text Request, RFC 7143 §11.10."""

    itt: int
    ttt: int = RESERVED_TAG
    cmdsn: int = 0
    expstatsn: int = 0
    lun: int = 0
    final: bool = True
    cont: bool = False
    immediate: bool = False
    data_length: int = 0

    def encode(self) -> bytes:
        return _pack(self.OPCODE | (_IMMEDIATE if self.immediate else 0),
                     (_FINAL if self.final else 0) | (0x40 if self.cont else 0), 0, 0,
                     _lengths(0, self.data_length), self.lun, self.itt, self.ttt, self.cmdsn,
                     self.expstatsn, 0, 0, 0, 0)

    @classmethod
    def decode(cls, w: _Words, bhs: bytes) -> TextRequest:
        return cls(itt=w[6], ttt=w[7], cmdsn=w[8], expstatsn=w[9], lun=w[5],
                   final=bool(w[1] & _FINAL), cont=bool(w[1] & 0x40),
                   immediate=bool(w[0] & _IMMEDIATE), data_length=w[4] & 0xFFFFFF)


TextRequest.OPCODE = Opcode.TEXT_REQUEST


@dataclass(frozen=True, slots=True)
class DataOut(Pdu):
    """SCSI Data-Out, RFC 7143 §11.7."""

    itt: int
    ttt: int
    buffer_offset: int
    data_length: int
    datasn: int = 0
    expstatsn: int = 0
    lun: int = 0
    final: bool = False

    def encode(self) -> bytes:
        return _pack(self.OPCODE, _FINAL if self.final else 0, 0, 0,
                     _lengths(0, self.data_length), self.lun, self.itt, self.ttt, 0,
                     self.expstatsn, 0, self.datasn, self.buffer_offset, 0)

    @classmethod
    def decode(cls, w: _Words, bhs: bytes) -> DataOut:
        return cls(itt=w[6], ttt=w[7], buffer_offset=w[12], data_length=w[4] & 0xFFFFFF,
                   datasn=w[11], expstatsn=w[9], lun=w[5], final=bool(w[1] & _FINAL))


DataOut.OPCODE = Opcode.DATA_OUT


@dataclass(frozen=True, slots=True)
class LogoutRequest(Pdu):
    """Logout Request, RFC 7143 §11.14."""

    itt: int
    reason: int = 0
    cid: int = 0
    cmdsn: int = 0
    expstatsn: int = 0
    immediate: bool = True

    def encode(self) -> bytes:
        return _pack(self.OPCODE | (_IMMEDIATE if self.immediate else 0),
                     _FINAL | (self.reason & 0x7F), 0, 0, 0, 0, self.itt, self.cid << 16,
                     self.cmdsn, self.expstatsn, 0, 0, 0, 0)

    @classmethod
    def decode(cls, w: _Words, bhs: bytes) -> LogoutRequest:
        return cls(itt=w[6], reason=w[1] & 0x7F, cid=w[7] >> 16, cmdsn=w[8], expstatsn=w[9],
                   immediate=bool(w[0] & _IMMEDIATE))


LogoutRequest.OPCODE = Opcode.LOGOUT_REQUEST


@dataclass(frozen=True, slots=True)
class SnackRequest(Pdu):
    """SNACK Request, RFC 7143 §11.16."""

    itt: int
    type: int = 0
    ttt: int = RESERVED_TAG
    expstatsn: int = 0
    begrun: int = 0
    runlength: int = 0
    lun: int = 0

    def encode(self) -> bytes:
        return _pack(self.OPCODE, _FINAL | (self.type & 0x0F), 0, 0, 0, self.lun, self.itt,
                     self.ttt, 0, self.expstatsn, 0, 0, self.begrun, self.runlength)

    @classmethod
    def decode(cls, w: _Words, bhs: bytes) -> SnackRequest:
        return cls(itt=w[6], type=w[1] & 0x0F, ttt=w[7], expstatsn=w[9], begrun=w[12],
                   runlength=w[13], lun=w[5])


SnackRequest.OPCODE = Opcode.SNACK_REQUEST


# ---------------------------------------------------------------- target PDUs


@dataclass(frozen=True, slots=True)
class NopIn(Pdu):
    """NOP-In, RFC 7143 §11.19."""

    itt: int
    ttt: int = RESERVED_TAG
    statsn: int = 0
    expcmdsn: int = 0
    maxcmdsn: int = 0
    lun: int = 0
    data_length: int = 0

    def encode(self) -> bytes:
        return _pack(self.OPCODE, _FINAL, 0, 0, _lengths(0, self.data_length), self.lun,
                     self.itt, self.ttt, self.statsn, self.expcmdsn, self.maxcmdsn, 0, 0, 0)

    @classmethod
    def decode(cls, w: _Words, bhs: bytes) -> NopIn:
        return cls(itt=w[6], ttt=w[7], statsn=w[8], expcmdsn=w[9], maxcmdsn=w[10], lun=w[5],
                   data_length=w[4] & 0xFFFFFF)


NopIn.OPCODE = Opcode.NOP_IN


@dataclass(frozen=True, slots=True)
class ScsiResponse(Pdu):
    """SCSI Response, RFC 7143 §11.4. The data segment is SenseLength + sense data."""

    itt: int
    status: int = 0
    response: int = 0
    statsn: int = 0
    expcmdsn: int = 0
    maxcmdsn: int = 0
    expdatasn: int = 0
    residual: int = 0
    overflow: bool = False
    underflow: bool = False
    bidi_residual: int = 0
    bidi_overflow: bool = False
    bidi_underflow: bool = False
    snack_tag: int = 0
    data_length: int = 0

    def encode(self) -> bytes:
        b1 = (_FINAL | (0x10 if self.bidi_overflow else 0) | (0x08 if self.bidi_underflow else 0)
              | (0x04 if self.overflow else 0) | (0x02 if self.underflow else 0))
        return _pack(self.OPCODE, b1, self.response, self.status, _lengths(0, self.data_length),
                     0, self.itt, self.snack_tag, self.statsn, self.expcmdsn, self.maxcmdsn,
                     self.expdatasn, self.bidi_residual, self.residual)

    @classmethod
    def decode(cls, w: _Words, bhs: bytes) -> ScsiResponse:
        b1 = w[1]
        return cls(itt=w[6], status=w[3], response=w[2], statsn=w[8], expcmdsn=w[9],
                   maxcmdsn=w[10], expdatasn=w[11], residual=w[13], overflow=bool(b1 & 0x04),
                   underflow=bool(b1 & 0x02), bidi_residual=w[12],
                   bidi_overflow=bool(b1 & 0x10), bidi_underflow=bool(b1 & 0x08),
                   snack_tag=w[7], data_length=w[4] & 0xFFFFFF)


ScsiResponse.OPCODE = Opcode.SCSI_RESPONSE


@dataclass(frozen=True, slots=True)
class TaskMgmtResponse(Pdu):
    """Task Management Function Response, RFC 7143 §11.6."""

    itt: int
    response: int = 0
    statsn: int = 0
    expcmdsn: int = 0
    maxcmdsn: int = 0

    def encode(self) -> bytes:
        return _pack(self.OPCODE, _FINAL, self.response, 0, 0, 0, self.itt, 0, self.statsn,
                     self.expcmdsn, self.maxcmdsn, 0, 0, 0)

    @classmethod
    def decode(cls, w: _Words, bhs: bytes) -> TaskMgmtResponse:
        return cls(itt=w[6], response=w[2], statsn=w[8], expcmdsn=w[9], maxcmdsn=w[10])


TaskMgmtResponse.OPCODE = Opcode.TASK_MGMT_RESPONSE


@dataclass(frozen=True, slots=True)
class LoginResponse(Pdu):
    """Login Response, RFC 7143 §11.13."""

    itt: int
    isid: int
    tsih: int = 0
    statsn: int = 0
    expcmdsn: int = 0
    maxcmdsn: int = 0
    status_class: int = 0
    status_detail: int = 0
    transit: bool = False
    cont: bool = False
    csg: int = 0
    nsg: int = 0
    version_max: int = 0
    version_active: int = 0
    data_length: int = 0

    def encode(self) -> bytes:
        return _pack(self.OPCODE, _stages(self.transit, self.cont, self.csg, self.nsg),
                     self.version_max, self.version_active, _lengths(0, self.data_length),
                     (self.isid & 0xFFFFFFFFFFFF) << 16 | self.tsih, self.itt, 0, self.statsn,
                     self.expcmdsn, self.maxcmdsn,
                     (self.status_class << 24) | (self.status_detail << 16), 0, 0)

    @classmethod
    def decode(cls, w: _Words, bhs: bytes) -> LoginResponse:
        b1 = w[1]
        return cls(itt=w[6], isid=w[5] >> 16, tsih=w[5] & 0xFFFF, statsn=w[8], expcmdsn=w[9],
                   maxcmdsn=w[10], status_class=w[11] >> 24, status_detail=(w[11] >> 16) & 0xFF,
                   transit=bool(b1 & 0x80), cont=bool(b1 & 0x40), csg=(b1 >> 2) & 3,
                   nsg=b1 & 3, version_max=w[2], version_active=w[3],
                   data_length=w[4] & 0xFFFFFF)


LoginResponse.OPCODE = Opcode.LOGIN_RESPONSE


@dataclass(frozen=True, slots=True)
class TextResponse(Pdu):
    """Text Response, RFC 7143 §11.11."""

    itt: int
    ttt: int = RESERVED_TAG
    statsn: int = 0
    expcmdsn: int = 0
    maxcmdsn: int = 0
    lun: int = 0
    final: bool = True
    cont: bool = False
    data_length: int = 0

    def encode(self) -> bytes:
        return _pack(self.OPCODE, (_FINAL if self.final else 0) | (0x40 if self.cont else 0),
                     0, 0, _lengths(0, self.data_length), self.lun, self.itt, self.ttt,
                     self.statsn, self.expcmdsn, self.maxcmdsn, 0, 0, 0)

    @classmethod
    def decode(cls, w: _Words, bhs: bytes) -> TextResponse:
        return cls(itt=w[6], ttt=w[7], statsn=w[8], expcmdsn=w[9], maxcmdsn=w[10], lun=w[5],
                   final=bool(w[1] & _FINAL), cont=bool(w[1] & 0x40),
                   data_length=w[4] & 0xFFFFFF)


TextResponse.OPCODE = Opcode.TEXT_RESPONSE


@dataclass(frozen=True, slots=True)
class DataIn(Pdu):
    """SCSI Data-In, RFC 7143 §11.8. ``has_status`` is the S bit (status in this PDU)."""

    itt: int
    buffer_offset: int
    data_length: int
    datasn: int = 0
    final: bool = False
    has_status: bool = False
    status: int = 0
    ack: bool = False
    overflow: bool = False
    underflow: bool = False
    residual: int = 0
    statsn: int = 0
    expcmdsn: int = 0
    maxcmdsn: int = 0
    ttt: int = RESERVED_TAG
    lun: int = 0

    def encode(self) -> bytes:
        b1 = ((_FINAL if self.final else 0) | (0x40 if self.ack else 0)
              | (0x04 if self.overflow else 0) | (0x02 if self.underflow else 0)
              | (0x01 if self.has_status else 0))
        return _pack(self.OPCODE, b1, 0, self.status if self.has_status else 0,
                     _lengths(0, self.data_length), self.lun, self.itt, self.ttt,
                     self.statsn if self.has_status else 0, self.expcmdsn, self.maxcmdsn,
                     self.datasn, self.buffer_offset, self.residual)

    @classmethod
    def decode(cls, w: _Words, bhs: bytes) -> DataIn:
        b1 = w[1]
        return cls(itt=w[6], buffer_offset=w[12], data_length=w[4] & 0xFFFFFF, datasn=w[11],
                   final=bool(b1 & _FINAL), has_status=bool(b1 & 0x01), status=w[3],
                   ack=bool(b1 & 0x40), overflow=bool(b1 & 0x04), underflow=bool(b1 & 0x02),
                   residual=w[13], statsn=w[8], expcmdsn=w[9], maxcmdsn=w[10], ttt=w[7],
                   lun=w[5])


DataIn.OPCODE = Opcode.DATA_IN


@dataclass(frozen=True, slots=True)
class LogoutResponse(Pdu):
    """Logout Response, RFC 7143 §11.15."""

    itt: int
    response: int = 0
    statsn: int = 0
    expcmdsn: int = 0
    maxcmdsn: int = 0
    time2wait: int = 0
    time2retain: int = 0

    def encode(self) -> bytes:
        return _pack(self.OPCODE, _FINAL, self.response, 0, 0, 0, self.itt, 0, self.statsn,
                     self.expcmdsn, self.maxcmdsn, 0, self.time2wait << 16 | self.time2retain, 0)

    @classmethod
    def decode(cls, w: _Words, bhs: bytes) -> LogoutResponse:
        return cls(itt=w[6], response=w[2], statsn=w[8], expcmdsn=w[9], maxcmdsn=w[10],
                   time2wait=w[12] >> 16, time2retain=w[12] & 0xFFFF)


LogoutResponse.OPCODE = Opcode.LOGOUT_RESPONSE


@dataclass(frozen=True, slots=True)
class R2T(Pdu):
    """Ready To Transfer, RFC 7143 §11.9."""

    itt: int
    ttt: int
    buffer_offset: int
    desired_length: int
    r2tsn: int = 0
    statsn: int = 0
    expcmdsn: int = 0
    maxcmdsn: int = 0
    lun: int = 0

    def encode(self) -> bytes:
        return _pack(self.OPCODE, _FINAL, 0, 0, 0, self.lun, self.itt, self.ttt, self.statsn,
                     self.expcmdsn, self.maxcmdsn, self.r2tsn, self.buffer_offset,
                     self.desired_length)

    @classmethod
    def decode(cls, w: _Words, bhs: bytes) -> R2T:
        return cls(itt=w[6], ttt=w[7], buffer_offset=w[12], desired_length=w[13], r2tsn=w[11],
                   statsn=w[8], expcmdsn=w[9], maxcmdsn=w[10], lun=w[5])


R2T.OPCODE = Opcode.R2T


@dataclass(frozen=True, slots=True)
class AsyncMessage(Pdu):
    """Asynchronous Message, RFC 7143 §11.9."""

    event: int
    vcode: int = 0
    param1: int = 0
    param2: int = 0
    param3: int = 0
    statsn: int = 0
    expcmdsn: int = 0
    maxcmdsn: int = 0
    lun: int = 0
    data_length: int = 0

    def encode(self) -> bytes:
        return _pack(self.OPCODE, _FINAL, 0, 0, _lengths(0, self.data_length), self.lun,
                     RESERVED_TAG, 0, self.statsn, self.expcmdsn, self.maxcmdsn,
                     self.event << 24 | self.vcode << 16 | self.param1,
                     self.param2 << 16 | self.param3, 0)

    @classmethod
    def decode(cls, w: _Words, bhs: bytes) -> AsyncMessage:
        return cls(event=w[11] >> 24, vcode=(w[11] >> 16) & 0xFF, param1=w[11] & 0xFFFF,
                   param2=w[12] >> 16, param3=w[12] & 0xFFFF, statsn=w[8], expcmdsn=w[9],
                   maxcmdsn=w[10], lun=w[5], data_length=w[4] & 0xFFFFFF)


AsyncMessage.OPCODE = Opcode.ASYNC_MESSAGE


@dataclass(frozen=True, slots=True)
class Reject(Pdu):
    """Reject, RFC 7143 §11.17. Its data segment is the rejected PDU's BHS."""

    reason: int
    statsn: int = 0
    expcmdsn: int = 0
    maxcmdsn: int = 0
    datasn: int = 0
    data_length: int = 0

    def encode(self) -> bytes:
        return _pack(self.OPCODE, _FINAL, self.reason, 0, _lengths(0, self.data_length), 0,
                     RESERVED_TAG, 0, self.statsn, self.expcmdsn, self.maxcmdsn, self.datasn,
                     0, 0)

    @classmethod
    def decode(cls, w: _Words, bhs: bytes) -> Reject:
        return cls(reason=w[2], statsn=w[8], expcmdsn=w[9], maxcmdsn=w[10], datasn=w[11],
                   data_length=w[4] & 0xFFFFFF)


Reject.OPCODE = Opcode.REJECT


_Decoder = Callable[[_Words, bytes], Pdu]
PDU_CLASSES = (
    NopOut, ScsiCommand, TaskMgmtRequest, LoginRequest, TextRequest, DataOut, LogoutRequest,
    SnackRequest, NopIn, ScsiResponse, TaskMgmtResponse, LoginResponse, TextResponse, DataIn,
    LogoutResponse, R2T, AsyncMessage, Reject)
"""Every PDU class the codec knows."""
DECODERS: dict[int, _Decoder] = {cls.OPCODE: cls.decode for cls in PDU_CLASSES}
"""Opcode -> BHS decoder: the dispatch table of the codec (RFC 7143 §11.2.1.2)."""


def decode_bhs(bhs: bytes | bytearray | memoryview) -> Pdu:
    """Decode one 48-byte BHS into its PDU dataclass.

    An opcode this codec does not know raises :class:`PduRejected` with reason
    COMMAND_NOT_SUPPORTED (RFC 7143 §11.17.1), carrying the header for the Reject's data.
    """
    if len(bhs) != BHS_LENGTH:
        raise ValueError(f"a BHS is {BHS_LENGTH} bytes, got {len(bhs)}")
    raw = bytes(bhs)
    words = _SKELETON.unpack(raw)
    decoder = DECODERS.get(words[0] & 0x3F)
    if decoder is None:
        raise PduRejected(RejectReason.COMMAND_NOT_SUPPORTED,
                          f"unknown opcode 0x{words[0] & 0x3F:02x}", raw)
    return decoder(words, raw)


def data_segment_length(bhs: bytes | bytearray | memoryview) -> int:
    """DataSegmentLength of a raw BHS (bytes 5-7)."""
    return int.from_bytes(bhs[5:8], "big")


def ahs_length(bhs: bytes | bytearray | memoryview) -> int:
    """TotalAHSLength of a raw BHS, in bytes."""
    return bhs[4] * 4
