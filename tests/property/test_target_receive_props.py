"""Hypothesis over a live target connection's receive path: any bytes, any split.

Malformed input ends in a Reject, a clean close (ProtocolError) or nothing; never another
exception, never a zero-length receive buffer (a hang), never unbounded buffers.
"""

from __future__ import annotations

import contextlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyiscsi.proto import pdu as P
from pyiscsi.proto.errors import ProtocolError
from pyiscsi.target.connection import TargetConnection

from ..pair import Initiator, feed, make_catalog, wire

CATALOG = make_catalog(size=1 << 20)

# Valid-looking headers with random fields make the fuzzing reach deeper than random bytes.
HEADERS = st.one_of(
    st.builds(lambda itt, ttt, off, n: wire(P.DataOut(itt=itt, ttt=ttt, buffer_offset=off,
                                                      data_length=n), b"\xaa" * n),
              st.integers(0, 0x1010), st.sampled_from([0, 0xFFFFFFFF, 0x00010001, 0x10010001]),
              st.integers(0, 8192), st.integers(0, 5000)),
    st.builds(lambda itt, cdb, edtl, flags, imm: wire(
        P.ScsiCommand(itt=itt, cdb=cdb, expected_length=edtl, read=bool(flags & 1),
                      write=bool(flags & 2), final=bool(flags & 4),
                      data_length=len(imm)), imm or None),
              st.integers(0, 50), st.binary(min_size=16, max_size=16),
              st.integers(0, 1 << 20), st.integers(0, 7), st.binary(max_size=600)),
    st.binary(min_size=48, max_size=48),
    st.binary(max_size=300),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(HEADERS, max_size=8), st.integers(1, 5000), st.booleans())
def test_any_input_is_rejected_or_closed_never_crashes(parts: list[bytes], chunk: int,
                                                        logged_in: bool) -> None:
    conn = TargetConnection(CATALOG, "prop")
    try:
        if logged_in:
            Initiator(conn).login()
            conn.take_output()
        with contextlib.suppress(ProtocolError):
            feed(conn, b"".join(parts), chunk)
        out, _ = conn.take_output()
        assert sum(len(b) for b in out) < 64 << 20
        assert len(conn.receiver._stage) <= 1 << 20
    finally:
        conn.close()
    assert len(conn.table) == 0
