"""Coverage-guided fuzzing (atheris) of a live target connection's receive path.

Each input is split in two: the first byte picks a scenario (fresh connection in the login
phase, or one already logged in with a write burst open), the rest is fed as wire bytes in
chunks through ``get_buffer()``/``advance()``, exactly as the transport does. A crash is any
exception other than :class:`~pyiscsi.proto.errors.ProtocolError` (which closes the
connection cleanly), a buffer of size 0 (a hang), the connection's staging/sink memory
growing past its bound, a table entry left after close, or a store oracle violation:

The store oracle (``tests/oracle.py``): every data pointer table entry the target allocates
and every Data-Out plan the SCSI layer returns are recorded; the input is cut into PDUs; the
LUN may only differ from its contents before the input where the target solicited bytes
(an entry pointing into the store) *and* the input sent bytes for the command that owns them
(a Data-Out or immediate data of that ITT, at that buffer offset). Inputs that run commands
changing data by other rules (WRITE SAME, UNMAP, staged writes...) or that negotiate digests
are not checked by it.

The connection number is fixed, so the TTTs of the target's R2Ts are too (the fuzzer can
answer them).

    python fuzz/target_receive.py -atheris_runs=200000        # long local run
    python fuzz/target_receive.py -runs=20000 -max_len=4096   # short (CI-sized)

Without a corpus directory argument a throwaway one is used; an empty corpus directory is
first filled with a few valid write conversations (:func:`seeds`).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from pyiscsi.placement.tag import pack
    from pyiscsi.proto import pdu as P
    from pyiscsi.proto.errors import ProtocolError
    from pyiscsi.target.connection import TargetConnection

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.oracle import PlacementRecorder, StoreModel, check_placements
from tests.pair import Initiator, feed, make_catalog, run_store_work, wire

SIZE = 1 << 20
CATALOG = make_catalog(size=SIZE)
STORE = CATALOG.targets[next(iter(CATALOG.targets))].luns[0].store.view(0, SIZE)  # type: ignore[attr-defined]
RECORDER = PlacementRecorder(STORE)
MODEL = [StoreModel(STORE)]
"""The store's contents before the current input (refreshed only when an input changed it:
a 1 MiB copy per input would cost more than the rest of the input)."""
CONNECTION_NUMBER = 0xFE02
MAX_OUTPUT = 64 << 20
STATS = {"inputs": 0, "protocol_errors": 0, "store_checked": 0, "store_changed": 0,
         "store_unchecked": 0}


def one_input(data: bytes) -> None:
    STATS["inputs"] += 1
    if not data:
        return
    scenario, chunk, body = data[0] % 3, 1 + data[1 % len(data)] * 37, data[2:]
    RECORDER.reset()
    try:
        conn = TargetConnection(CATALOG, "fuzz", number=CONNECTION_NUMBER)
    except ValueError:  # taken (imported by a test whose connections linger)
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
        else:
            run_store_work(conn)  # as the transport would: store requests, loop turns
        out, _ = conn.take_output()
        if sum(len(b) for b in out) > MAX_OUTPUT:
            raise AssertionError("unbounded output")
        if len(conn.receiver._stage) > 1 << 20:
            raise AssertionError("unbounded staging")
        check_store(conn, body)
    finally:
        conn.close()
    if len(conn.table):
        raise AssertionError("table entries left after close")


def check_store(conn: TargetConnection, body: bytes) -> None:
    now = bytes(STORE)
    model = MODEL[0]
    if now == model.initial:
        STATS["store_checked"] += 1
        return
    MODEL[0] = StoreModel(now)
    params = conn.params
    if RECORDER.unexplained() or (params is not None
                                  and (params.header_digest or params.data_digest)):
        STATS["store_unchecked"] += 1
        return
    STATS["store_checked"] += 1
    STATS["store_changed"] += 1
    bad = check_placements(model, now, RECORDER, body)
    if bad:
        raise AssertionError(f"store oracle: {bad}")


def report() -> None:
    print(f"# inputs {STATS['inputs']}, closed on protocol error "
          f"{STATS['protocol_errors']}, store checked {STATS['store_checked']} "
          f"(changed {STATS['store_changed']}), unchecked {STATS['store_unchecked']}",
          file=sys.stderr, flush=True)


def seeds() -> dict[str, bytes]:
    """A few valid conversations, so even a short run starts on the data path: the scenario
    byte, the chunk byte, then wire bytes (CmdSN/StatSN as the scenario's login leaves them;
    the R2T TTTs are known because the connection number is fixed)."""
    first_r2t = pack(CONNECTION_NUMBER, 0, 0)

    def write10(lba: int, blocks: int) -> bytes:
        return bytes([0x2A, 0]) + lba.to_bytes(4, "big") + bytes([0]) \
            + blocks.to_bytes(2, "big") + bytes(7)

    burst = wire(P.DataOut(itt=0x1001, ttt=first_r2t, buffer_offset=0, data_length=2048,
                           expstatsn=1), b"\x5a" * 2048)
    rest = wire(P.DataOut(itt=0x1001, ttt=first_r2t, buffer_offset=2048, data_length=2048,
                          datasn=1, expstatsn=1, final=True), b"\xa5" * 2048)
    immediate = wire(P.ScsiCommand(itt=0x20, cdb=write10(16, 2), expected_length=1024, cmdsn=0,
                                   expstatsn=1, write=True, final=False, data_length=512),
                     b"\x11" * 512)
    unsolicited = wire(P.DataOut(itt=0x20, ttt=0xFFFFFFFF, buffer_offset=512,
                                 data_length=512, expstatsn=1, final=True), b"\x22" * 512)
    read = wire(P.ScsiCommand(itt=0x21, cdb=bytes([0x28, 0, 0, 0, 0, 16, 0, 0, 2, 0]),
                              expected_length=1024, cmdsn=1, expstatsn=1, read=True))
    solicit = wire(P.ScsiCommand(itt=0x30, cdb=write10(4, 1), expected_length=512, cmdsn=0,
                                 expstatsn=1, write=True))
    answer = wire(P.DataOut(itt=0x30, ttt=first_r2t, buffer_offset=0, data_length=512,
                            expstatsn=2, final=True), b"\x33" * 512)
    fast_write = wire(P.ScsiCommand(itt=0x40, cdb=write10(32, 1), expected_length=512,
                                    cmdsn=0, expstatsn=1, write=True, data_length=512),
                      b"\x44" * 512)
    fast_read = wire(P.ScsiCommand(itt=0x41, cdb=bytes([0x28, 0, 0, 0, 0, 32, 0, 0, 1, 0]),
                                   expected_length=512, cmdsn=1, expstatsn=1, read=True))
    return {
        "fast-write-read": bytes([1, 255]) + fast_write + fast_read,
        "r2t-burst": bytes([2, 255]) + burst + rest,
        "r2t-burst-out-of-order": bytes([2, 3]) + rest + burst,
        "immediate-unsolicited-read": bytes([1, 255]) + immediate + unsolicited + read,
        "command-then-r2t": bytes([1, 255]) + solicit + answer,
    }


def main() -> None:
    # libFuzzer ends the process from inside Fuzz() (no finally, no atexit): report every
    # 10,000 inputs and at the last one of -runs / -atheris_runs.
    runs = [int(a.split("=", 1)[1]) for a in sys.argv
            if a.startswith(("-runs=", "-atheris_runs="))]
    last = runs[-1] if runs else 0

    def test_one(data: bytes) -> None:
        one_input(data)
        if STATS["inputs"] % 10000 == 0 or STATS["inputs"] == last:
            report()

    argv = list(sys.argv)
    corpora = [a for a in argv[1:] if not a.startswith("-")]
    if not corpora:
        # No corpus given: a throwaway one holding the seeds (libFuzzer writes new inputs
        # into the first corpus directory; nothing lands in the repository).
        corpora = [tempfile.mkdtemp(prefix="pyiscsi-fuzz-")]
        argv.append(corpora[0])
    first = Path(corpora[0])
    if first.is_dir() and not any(first.iterdir()):  # an empty corpus starts from the seeds
        for name, seed in seeds().items():
            (first / name).write_bytes(seed)
    atheris.Setup(argv, test_one)
    RECORDER.__enter__()
    atheris.Fuzz()


if __name__ == "__main__":
    main()
