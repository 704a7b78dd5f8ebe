"""Hypothesis: every PDU round-trips through its 48-byte BHS; any 48 bytes decode or reject."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pyiscsi.proto import pdu as P
from pyiscsi.proto.errors import PduRejected

u32 = st.integers(0, 0xFFFFFFFF)
u24 = st.integers(0, (1 << 24) - 1)
lun = st.integers(0, (1 << 64) - 1)

PDUS = st.one_of(
    st.builds(P.DataOut, itt=u32, ttt=u32, buffer_offset=u32, data_length=u24, datasn=u32,
              expstatsn=u32, lun=lun, final=st.booleans()),
    st.builds(P.ScsiCommand, itt=u32, cdb=st.binary(min_size=16, max_size=16),
              expected_length=u32, cmdsn=u32, expstatsn=u32, lun=lun, read=st.booleans(),
              write=st.booleans(), final=st.booleans(), attr=st.integers(0, 7),
              immediate=st.booleans(), ahs_length=st.integers(0, 255).map(lambda n: n * 4),
              data_length=u24),
    st.builds(P.DataIn, itt=u32, buffer_offset=u32, data_length=u24, datasn=u32,
              final=st.booleans(), has_status=st.just(True), status=st.integers(0, 255),
              ack=st.booleans(), overflow=st.booleans(), underflow=st.booleans(),
              residual=u32, statsn=u32, expcmdsn=u32, maxcmdsn=u32, ttt=u32, lun=lun),
    st.builds(P.R2T, itt=u32, ttt=u32, buffer_offset=u32, desired_length=u32, r2tsn=u32,
              statsn=u32, expcmdsn=u32, maxcmdsn=u32, lun=lun),
    st.builds(P.ScsiResponse, itt=u32, status=st.integers(0, 255), response=st.integers(0, 1),
              statsn=u32, expcmdsn=u32, maxcmdsn=u32, expdatasn=u32, residual=u32,
              overflow=st.booleans(), underflow=st.booleans(), bidi_residual=u32,
              data_length=u24),
    st.builds(P.LoginRequest, itt=u32, isid=st.integers(0, (1 << 48) - 1),
              tsih=st.integers(0, 0xFFFF), cid=st.integers(0, 0xFFFF), cmdsn=u32,
              expstatsn=u32, transit=st.booleans(), cont=st.booleans(), csg=st.integers(0, 3),
              nsg=st.integers(0, 3), version_max=st.integers(0, 255),
              version_min=st.integers(0, 255), data_length=u24),
    st.builds(P.TaskMgmtRequest, itt=u32, function=st.integers(0, 127), lun=lun,
              referenced_tag=u32, cmdsn=u32, expstatsn=u32, refcmdsn=u32, expdatasn=u32),
    st.builds(P.NopOut, itt=u32, ttt=u32, cmdsn=u32, expstatsn=u32, lun=lun,
              immediate=st.booleans(), data_length=u24),
    st.builds(P.TextRequest, itt=u32, ttt=u32, cmdsn=u32, expstatsn=u32, lun=lun,
              final=st.booleans(), cont=st.booleans(), data_length=u24),
    st.builds(P.LogoutResponse, itt=u32, response=st.integers(0, 3), statsn=u32,
              expcmdsn=u32, maxcmdsn=u32, time2wait=st.integers(0, 0xFFFF),
              time2retain=st.integers(0, 0xFFFF)),
    st.builds(P.Reject, reason=st.integers(0, 255), statsn=u32, expcmdsn=u32, maxcmdsn=u32,
              datasn=u32, data_length=u24),
)


@given(PDUS)
def test_round_trip(pdu: P.Pdu) -> None:
    raw = pdu.encode()
    assert len(raw) == 48
    assert P.decode_bhs(raw) == pdu
    assert P.decode_bhs(raw).encode() == raw


@given(st.binary(min_size=48, max_size=48))
def test_any_bhs_decodes_or_rejects(raw: bytes) -> None:
    try:
        pdu = P.decode_bhs(raw)
    except PduRejected:
        return
    assert pdu.opcode.value == raw[0] & 0x3F
