"""Coverage-guided fuzzing (atheris) of a live target connection's receive path.

Each input is split in two: the first byte picks a scenario (fresh connection in the login
phase, or one already logged in with a write burst open), the rest is fed as wire bytes in
chunks through ``get_buffer()``/``advance()``, exactly as the transport does. A crash is any
exception other than :class:`~pyiscsi.proto.errors.ProtocolError` (which closes the
connection cleanly), a buffer of size 0 (a hang), or the connection's staging/sink memory
growing past its bound.

    python fuzz/target_receive.py -atheris_runs=200000        # long local run
    python fuzz/target_receive.py -runs=20000 -max_len=4096   # short (CI-sized)
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from pyiscsi.proto.errors import ProtocolError
    from pyiscsi.target.connection import TargetConnection

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.pair import Initiator, feed, make_catalog

CATALOG = make_catalog(size=1 << 20)
MAX_OUTPUT = 64 << 20
STATS = {"inputs": 0, "protocol_errors": 0}


def one_input(data: bytes) -> None:
    STATS["inputs"] += 1
    if not data:
        return
    scenario, chunk, body = data[0] % 3, 1 + data[1 % len(data)] * 37, data[2:]
    conn = TargetConnection(CATALOG, "fuzz")
    try:
        if scenario:
            ini = Initiator(conn)
            ini.login()
            conn.take_output()
            if scenario == 2:  # a write burst open: Data-Outs route through the table
                ini.command(bytes.fromhex("2a00000000000000080000"), edtl=4096, write=True)
                conn.take_output()
        try:
            feed(conn, body, chunk)
        except ProtocolError:
            STATS["protocol_errors"] += 1
        out, _ = conn.take_output()
        if sum(len(b) for b in out) > MAX_OUTPUT:
            raise AssertionError("unbounded output")
        if len(conn.receiver._stage) > 1 << 20:
            raise AssertionError("unbounded staging")
    finally:
        conn.close()


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    try:
        atheris.Fuzz()
    finally:
        print(f"# inputs {STATS['inputs']}, closed on protocol error {STATS['protocol_errors']}",
              file=sys.stderr)


if __name__ == "__main__":
    main()
