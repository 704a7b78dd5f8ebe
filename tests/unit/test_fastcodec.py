"""The hot-path codec equals the reference codec, field for field (RFC 7143 §11.3, §11.4,
§11.8): hypothesis draws every field, flags included."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pyiscsi.proto import fastcodec as F
from pyiscsi.proto import pdu as P
from pyiscsi.proto.wire import RESERVED_TAG

u32 = st.integers(0, 0xFFFFFFFF)
u64 = st.integers(0, (1 << 64) - 1)
u24 = st.integers(0, (1 << 24) - 1)
u8 = st.integers(0, 0xFF)


@given(itt=u32, cdb=st.binary(min_size=16, max_size=16), edtl=u32, cmdsn=u32, expstatsn=u32,
       lun=u64, read=st.booleans(), write=st.booleans(), final=st.booleans(),
       attr=st.integers(0, 7), immediate=st.booleans(), ahs=st.integers(0, 255),
       data_length=u24)
def test_command_head_decodes_as_the_reference(itt: int, cdb: bytes, edtl: int, cmdsn: int,
                                               expstatsn: int, lun: int, read: bool,
                                               write: bool, final: bool, attr: int,
                                               immediate: bool, ahs: int,
                                               data_length: int) -> None:
    ref = P.ScsiCommand(itt=itt, cdb=cdb, expected_length=edtl, cmdsn=cmdsn,
                        expstatsn=expstatsn, lun=lun, read=read, write=write, final=final,
                        attr=attr, immediate=immediate, ahs_length=ahs * 4,
                        data_length=data_length)
    raw = b"junk" + ref.encode()
    b0, b1, lens, got_lun, got_itt, got_edtl, got_cmdsn = F.decode_command_head(
        memoryview(raw), 4)
    decoded = P.decode_bhs(raw[4:])
    assert decoded == ref
    assert (b0 & 0x3F, bool(b0 & 0x40)) == (F.SCSI_COMMAND_OPCODE, ref.immediate)
    assert (bool(b1 & 0x80), bool(b1 & 0x40), bool(b1 & 0x20), b1 & 7) == (
        ref.final, ref.read, ref.write, ref.attr)
    assert ((lens >> 24) * 4, lens & 0xFFFFFF) == (ref.ahs_length, ref.data_length)
    assert (got_lun, got_itt, got_edtl, got_cmdsn) == (ref.lun, ref.itt,
                                                       ref.expected_length, ref.cmdsn)
    assert raw[4 + F.CDB_OFFSET:4 + F.CDB_OFFSET + 16] == ref.cdb


@given(itt=u32, offset=u32, length=u24, datasn=u32, final=st.booleans(),
       has_status=st.booleans(), status=u8, ack=st.booleans(), overflow=st.booleans(),
       underflow=st.booleans(), residual=u32, statsn=u32, exp=u32, mx=u32, ttt=u32, lun=u64)
def test_data_in_encodes_as_the_reference(itt: int, offset: int, length: int, datasn: int,
                                          final: bool, has_status: bool, status: int,
                                          ack: bool, overflow: bool, underflow: bool,
                                          residual: int, statsn: int, exp: int, mx: int,
                                          ttt: int, lun: int) -> None:
    ref = P.DataIn(itt=itt, buffer_offset=offset, data_length=length, datasn=datasn,
                   final=final, has_status=has_status, status=status, ack=ack,
                   overflow=overflow, underflow=underflow, residual=residual, statsn=statsn,
                   expcmdsn=exp, maxcmdsn=mx, ttt=ttt, lun=lun)
    flags = ((F.FLAG_FINAL if final else 0) | (F.DATA_IN_ACK if ack else 0)
             | (F.OVERFLOW if overflow else 0) | (F.UNDERFLOW if underflow else 0)
             | (F.DATA_IN_STATUS if has_status else 0))
    got = F.data_in(flags, status, length, lun, itt, ttt, statsn, exp, mx, datasn, offset,
                    residual)
    assert type(got) is bytes
    assert got == ref.encode()


@given(length=u24, lun=u64, itt=u32, statsn=u32, exp=u32, mx=u32)
def test_data_in_good_is_the_final_status_pdu(length: int, lun: int, itt: int, statsn: int,
                                              exp: int, mx: int) -> None:
    ref = P.DataIn(itt=itt, buffer_offset=0, data_length=length, datasn=0, final=True,
                   has_status=True, status=0, statsn=statsn, expcmdsn=exp, maxcmdsn=mx,
                   ttt=RESERVED_TAG, lun=lun)
    assert F.data_in_good(length, lun, itt, statsn, exp, mx) == ref.encode()


@given(itt=u32, status=u8, response=u8, statsn=u32, exp=u32, mx=u32, expdatasn=u32,
       residual=u32, overflow=st.booleans(), underflow=st.booleans(), bidi_residual=u32,
       bidi_overflow=st.booleans(), bidi_underflow=st.booleans(), snack=u32, length=u24)
def test_scsi_response_encodes_as_the_reference(itt: int, status: int, response: int,
                                                statsn: int, exp: int, mx: int,
                                                expdatasn: int, residual: int,
                                                overflow: bool, underflow: bool,
                                                bidi_residual: int, bidi_overflow: bool,
                                                bidi_underflow: bool, snack: int,
                                                length: int) -> None:
    ref = P.ScsiResponse(itt=itt, status=status, response=response, statsn=statsn,
                         expcmdsn=exp, maxcmdsn=mx, expdatasn=expdatasn, residual=residual,
                         overflow=overflow, underflow=underflow, bidi_residual=bidi_residual,
                         bidi_overflow=bidi_overflow, bidi_underflow=bidi_underflow,
                         snack_tag=snack, data_length=length)
    flags = ((F.BIDI_OVERFLOW if bidi_overflow else 0) | (F.BIDI_UNDERFLOW if bidi_underflow
                                                          else 0)
             | (F.OVERFLOW if overflow else 0) | (F.UNDERFLOW if underflow else 0))
    got = F.scsi_response(flags, response, status, length, itt, snack, statsn, exp, mx,
                          expdatasn, bidi_residual, residual)
    assert got == ref.encode()


@given(itt=u32, statsn=u32, exp=u32, mx=u32)
def test_scsi_response_good(itt: int, statsn: int, exp: int, mx: int) -> None:
    ref = P.ScsiResponse(itt=itt, status=0, statsn=statsn, expcmdsn=exp, maxcmdsn=mx)
    assert F.scsi_response_good(itt, statsn, exp, mx) == ref.encode()


def test_headers_are_fresh_objects() -> None:
    """No header buffer is reused: a header the transport still holds (a write that did not
    complete at once keeps references to the buffers it was given) never changes when the
    next one is encoded."""
    first = F.data_in_good(4096, 0, 1, 10, 11, 12)
    kept = bytes(first)
    second = F.data_in_good(4096, 0, 2, 11, 12, 13)
    third = F.scsi_response_good(3, 12, 13, 14)
    assert first is not second and first == kept
    assert type(first) is type(second) is type(third) is bytes  # immutable
