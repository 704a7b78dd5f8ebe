"""Engine CPU time per command (process_time), in memory: 4 KiB WRITE(10) with immediate
data and READ(10) through a real TargetConnection (receive path, admission, SCSI, response
encoding), no sockets; and READ(10) of 64 KiB and 1 MiB from a store that is not memory (as an
RBD LU: the general path, a StoreRequest per command, completed at once with no copy). Prints
microseconds per command; run it against two trees to compare builds:

    PYTHONPATH=src python bench/engine_cost.py
    PYTHONPATH=/tmp/old/src python bench/engine_cost.py
"""

from __future__ import annotations

import cProfile
import os
import pstats
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.pair import TARGET, Initiator, feed, make_catalog, wire

from pyiscsi.backstore.memory import MemoryStore
from pyiscsi.backstore.ops import StoreOp, StoreOpKind
from pyiscsi.backstore.pool import BufferPool
from pyiscsi.proto import pdu as P
from pyiscsi.scsi.lun import LogicalUnit
from pyiscsi.target.catalog import Catalog, Target
from pyiscsi.target.connection import TargetConnection

N = int(os.environ.get("N", "20000"))
BATCH = 32


def logged_in(catalog: Catalog) -> tuple[TargetConnection, Initiator]:
    """A TargetConnection over ``catalog`` and its logged-in initiator, output taken."""
    conn = TargetConnection(catalog, "bench")
    ini = Initiator(conn)
    ini.login()
    conn.take_output()
    return conn, ini


def batch(kind: str) -> Callable[[], object]:
    """A logged-in TargetConnection and a call that sends it BATCH x 4 KiB READ(10) or
    WRITE(10) (with immediate data) through its receive path and takes the answers: what
    one measured step runs (also bench/compile_gain.py's engine cases)."""
    conn, ini = logged_in(make_catalog(64 << 20))
    data = b"\x5a" * 4096
    frames = []
    for i in range(BATCH):
        lba = (i * 97 % 16000) * 8
        op = 0x2A if kind == "write" else 0x28
        cdb = struct.pack(">BBIBHB", op, 0, lba, 0, 8, 0).ljust(16, b"\0")
        frames.append((cdb, data if kind == "write" else b""))

    def step() -> object:
        stream = []
        for cdb, payload in frames:
            ini.itt = (ini.itt + 1) & 0xFFFF
            cmd = P.ScsiCommand(itt=ini.itt, cdb=cdb, expected_length=4096, cmdsn=ini.cmdsn,
                                read=kind == "read", write=kind == "write",
                                data_length=len(payload))
            ini.cmdsn += 1
            stream.append(wire(cmd, payload or None))
        feed(conn, b"".join(stream))
        return conn.take_output()

    return step


class RemoteStore(MemoryStore):
    """RAM that the engine treats as a store that is not memory (Ceph RBD): READ is store
    work, staging comes from a buffer pool."""

    places_staging = True

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.pool = BufferPool()

    @property
    def memory_addressable(self) -> bool:
        return False

    def synchronous(self, op: StoreOp) -> bool:
        return op.kind is not StoreOpKind.READ and super().synchronous(op)

    def staging(self, length: int) -> memoryview:
        return self.pool.take(length)


def remote_batch(nbytes: int) -> Callable[[], object]:
    """BATCH x READ(10) of ``nbytes`` from a :class:`RemoteStore`: the general path; each
    command's store request completes at once (no copy: the engine's part only)."""
    target = Target(TARGET)
    target.luns[0] = LogicalUnit(0, RemoteStore(64 << 20), TARGET)
    target.luns[0].peers = lambda: [0]
    conn, ini = logged_in(Catalog([target]))
    blocks = nbytes // 512
    cdbs = [struct.pack(">BBIBHB", 0x28, 0, i * blocks, 0, blocks, 0).ljust(16, b"\0")
            for i in range(BATCH)]

    def step() -> object:
        stream = []
        for cdb in cdbs:
            ini.itt = (ini.itt + 1) & 0xFFFF
            stream.append(wire(P.ScsiCommand(itt=ini.itt, cdb=cdb, expected_length=nbytes,
                                             cmdsn=ini.cmdsn, read=True)))
            ini.cmdsn += 1
        feed(conn, b"".join(stream))
        for request in conn.take_store_requests():
            conn.store_completed(request.token, None)
        return conn.take_output()

    return step


REMOTE = {"read-remote-64k": 64 << 10, "read-remote-1m": 1 << 20}
"""The general-path cases: name -> bytes per READ."""


def run(kind: str, n: int) -> float:
    step = remote_batch(REMOTE[kind]) if kind in REMOTE else batch(kind)
    start = time.process_time()
    done = 0
    while done < n:
        step()
        done += BATCH
    return (time.process_time() - start) / done * 1e6


def main() -> None:
    for kind in ("read", "write"):
        run(kind, 2000)
        best = min(run(kind, N) for _ in range(3))
        print(f"{kind:5s} 4KiB: {best:6.2f} us/command (engine CPU only, best of 3)")
    for kind in REMOTE:
        run(kind, 2000)
        best = min(run(kind, N) for _ in range(3))
        print(f"{kind}: {best:6.2f} us/command (general path, engine CPU only, best of 3)")
    if os.environ.get("PROFILE"):
        profiler = cProfile.Profile()
        profiler.enable()
        run(os.environ["PROFILE"], N)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
