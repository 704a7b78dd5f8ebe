"""Hot-path BHS codec: precompiled structs, no dataclasses (RFC 7143 §11.2.1, §11.3, §11.4,
§11.8).

:mod:`.pdu` is the reference codec; this module decodes the fields of a SCSI Command the
target's fast path needs straight from the receive buffer (``unpack_from``, no copy) and
encodes the two answers of a command that completes at once (Data-In with status, SCSI
Response) as fresh ``bytes`` (one allocation each, never a reused buffer: the transport
may still hold an earlier header when ``writelines`` could not send it all at once).
``tests/unit/test_fastcodec.py`` proves every field equal to the reference codec.
"""

from __future__ import annotations

import struct
from typing import Final

from .wire import RESERVED_TAG

SCSI_COMMAND_OPCODE: Final = 0x01
DATA_IN_OPCODE: Final = 0x25
SCSI_RESPONSE_OPCODE: Final = 0x21

CMD_HEAD: Final = struct.Struct(">BBxxIQIII")
"""SCSI Command BHS bytes 0-27: opcode|I, flags, TotalAHSLength|DataSegmentLength, LUN,
ITT, Expected Data Transfer Length, CmdSN (§11.3)."""
CDB_OFFSET: Final = 32
"""The CDB field's offset in the BHS (§11.3.5)."""
_BHS: Final = struct.Struct(">BBBBIQIIIIIIII")
"""The BHS skeleton (§11.2.1): four bytes, lengths, LUN, ITT, seven words."""
_BHS_PACK: Final = _BHS.pack

FLAG_FINAL: Final = 0x80
DATA_IN_STATUS: Final = 0x01
DATA_IN_ACK: Final = 0x40
OVERFLOW: Final = 0x04
UNDERFLOW: Final = 0x02
BIDI_OVERFLOW: Final = 0x10
BIDI_UNDERFLOW: Final = 0x08


def decode_command_head(buf: memoryview | bytes | bytearray,
                        start: int) -> tuple[int, int, int, int, int, int, int]:
    """(byte 0, flags, lengths word, LUN field, ITT, EDTL, CmdSN) of a SCSI Command BHS at
    ``start`` (§11.3); the CDB is at ``start + CDB_OFFSET``."""
    b0, b1, lens, lun, itt, edtl, cmdsn = CMD_HEAD.unpack_from(buf, start)
    return b0, b1, lens, lun, itt, edtl, cmdsn


def data_in(flags: int, status: int, data_length: int, lun: int, itt: int, ttt: int,
            statsn: int, expcmdsn: int, maxcmdsn: int, datasn: int, buffer_offset: int,
            residual: int) -> bytes:
    """A Data-In BHS (§11.8): ``flags`` is byte 1 (F, A, O, U, S). Status and StatSN are
    sent only with the S bit, as the reference codec does."""
    has_status = flags & DATA_IN_STATUS
    return _BHS_PACK(DATA_IN_OPCODE, flags, 0, status if has_status else 0, data_length, lun,
                     itt, ttt, statsn if has_status else 0, expcmdsn, maxcmdsn, datasn,
                     buffer_offset, residual)


def data_in_good(data_length: int, lun: int, itt: int, statsn: int, expcmdsn: int,
                 maxcmdsn: int) -> bytes:
    """The one Data-In of a read that completes GOOD in a single PDU: F and S set, offset
    0, DataSN 0, no residual (phase collapse, §11.8.1)."""
    return _BHS_PACK(DATA_IN_OPCODE, FLAG_FINAL | DATA_IN_STATUS, 0, 0, data_length, lun,
                     itt, RESERVED_TAG, statsn, expcmdsn, maxcmdsn, 0, 0, 0)


def scsi_response(flags: int, response: int, status: int, data_length: int, itt: int,
                  snack_tag: int, statsn: int, expcmdsn: int, maxcmdsn: int, expdatasn: int,
                  bidi_residual: int, residual: int) -> bytes:
    """A SCSI Response BHS (§11.4): ``flags`` are byte 1's o, u, O, U bits (F is set)."""
    return _BHS_PACK(SCSI_RESPONSE_OPCODE, FLAG_FINAL | flags, response, status, data_length,
                     0, itt, snack_tag, statsn, expcmdsn, maxcmdsn, expdatasn, bidi_residual,
                     residual)


def scsi_response_good(itt: int, statsn: int, expcmdsn: int, maxcmdsn: int) -> bytes:
    """The SCSI Response of a write that completed GOOD with no R2T: ExpDataSN 0 (no
    R2T was sent), no residual, no sense (§11.4)."""
    return _BHS_PACK(SCSI_RESPONSE_OPCODE, FLAG_FINAL, 0, 0, 0, 0, itt, 0, statsn, expcmdsn,
                     maxcmdsn, 0, 0, 0)
