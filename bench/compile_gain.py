"""What compiling with mypyc gains, per module: one representative call of each compiled module
timed on the pure-Python sources and on the compiled build, in CPU time (process_time).

    python bench/compile_gain.py              # needs the compiled build in src/ (setup.py)

The compiled side is this checkout's src/ (its .so files must be there: ``pip install -e .``
or ``python setup.py build_ext --inplace``); the pure side is a copy of the same src/ without
them. Each case runs in a fresh subprocess per side, the sides alternating (pure, compiled;
next round compiled, pure) ROUNDS times; the table shows medians and pure/compiled.
transport/stream.py needs sockets and an event loop: it is measured end to end by
bench/cpu_per_command.sh, not here.

Environment: ROUNDS [5], N (calls per timing, scaled per case) [20000], CASES (names) [all].
"""

from __future__ import annotations

import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
N = int(os.environ.get("N", "20000"))
ROUNDS = int(os.environ.get("ROUNDS", "5"))


# ----------------------------------------------------------------------- cases (run in a child)


def case_pdu_decode() -> Callable[[], object]:
    from pyiscsi.proto import pdu as P

    cdb = struct.pack(">BBIBHB", 0x28, 0, 800, 0, 8, 0).ljust(16, b"\0")
    bhs = P.ScsiCommand(itt=7, cdb=cdb, expected_length=4096, cmdsn=9, read=True).encode()
    return lambda: P.decode_bhs(bhs)


def case_pdu_encode() -> Callable[[], object]:
    from pyiscsi.proto import pdu as P

    return lambda: P.DataIn(itt=7, statsn=3, expcmdsn=4, maxcmdsn=40, datasn=0,
                            buffer_offset=0, data_length=4096, final=True,
                            has_status=True).encode()


def case_serial() -> Callable[[], object]:
    from pyiscsi.proto.serial import sn_add, sn_in_window, sn_lt

    def run() -> object:
        return sn_lt(sn_add(0xFFFFFFF0, 32), 5) or sn_in_window(7, 0xFFFFFFF0, 40)

    return run


def case_framing() -> Callable[[], object]:
    """Receiver: one 4 KiB Data-Out PDU (header + payload) through get_buffer/advance."""
    from pyiscsi.proto import pdu as P
    from pyiscsi.proto.framing import Receiver, frame

    dest = memoryview(bytearray(4096))

    class Router:
        def route(self, pdu: P.Pdu, header: bytes, ahs: bytes) -> memoryview:
            return dest

    receiver = Receiver(Router(), on_pdu=lambda event: None)
    header = P.DataOut(itt=1, ttt=2, buffer_offset=0, data_length=4096, final=True).encode()
    blob = b"".join(bytes(b) for b in frame(header, b"\x5a" * 4096))

    def run() -> object:
        view = memoryview(blob)
        while view:
            buf = receiver.get_buffer()
            k = min(len(buf), len(view))
            buf[:k] = view[:k]
            receiver.advance(k)
            view = view[k:]
        return None

    return run


def case_table() -> Callable[[], object]:
    """DataPointerTable: allocate an entry, place one burst through it, free it."""
    from pyiscsi.placement.table import DataPointerTable

    table = DataPointerTable(connection_number=1)
    home = memoryview(bytearray(65536))

    def run() -> object:
        tag = table.allocate(home, 0, 4096, itt=5)
        table.place(tag, 0, 4096, itt=5)
        table.free(tag)
        return tag

    return run


def case_cdb() -> Callable[[], object]:
    from pyiscsi.scsi.busy import command_range
    from pyiscsi.scsi.cdb import cdb_length, control_byte

    cdb = struct.pack(">BBQIBB", 0x88, 0, 4096, 8, 0, 0)
    return lambda: (command_range(cdb, 512, 1 << 20), cdb_length(cdb[0]), control_byte(cdb))


def _lu() -> object:
    from pyiscsi.backstore.memory import MemoryStore
    from pyiscsi.scsi.lun import LogicalUnit

    return LogicalUnit(0, MemoryStore(16 << 20), "iqn.2026-11.org.pyiscsi:bench")


def case_dispatch_read() -> Callable[[], object]:
    """SCSI layer: READ(10) of 4 KiB on a RAM LU (dispatch, sbc, task, memory store)."""
    from pyiscsi.scsi import dispatch
    from pyiscsi.scsi.task import ScsiRequest

    lu = _lu()
    cdb = struct.pack(">BBIBHB", 0x28, 0, 800, 0, 8, 0)
    request = ScsiRequest(cdb=cdb, expected_length=4096, read=True)
    return lambda: dispatch.execute(lu, request)  # type: ignore[arg-type]


def case_dispatch_write() -> Callable[[], object]:
    """SCSI layer: WRITE(10) of 4 KiB: the Data-Out plan, then its completion."""
    from pyiscsi.scsi import dispatch
    from pyiscsi.scsi.task import DataOutPlan, ScsiRequest

    lu = _lu()
    cdb = struct.pack(">BBIBHB", 0x2A, 0, 800, 0, 8, 0)
    request = ScsiRequest(cdb=cdb, expected_length=4096, write=True)

    def run() -> object:
        plan = dispatch.execute(lu, request)  # type: ignore[arg-type]
        assert isinstance(plan, DataOutPlan)
        return plan.complete(4096)

    return run


def case_memory_store() -> Callable[[], object]:
    from pyiscsi.backstore.memory import MemoryStore

    store = MemoryStore(16 << 20)
    data = b"\x5a" * 4096
    store.write(0, data)

    buffer = memoryview(bytearray(4096))

    def run() -> object:
        store.write(8192, data)
        store.readinto(8192, buffer)
        return store.view(8192, 4096)

    return run


def case_iostats() -> Callable[[], object]:
    from pyiscsi.scsi.iostats import IoStats

    stats = IoStats()
    return lambda: stats.record(True, False, 4096, True, 25_000)


def _engine(kind: str) -> Callable[[], object]:
    """The whole engine in memory, no sockets: 32 x 4 KiB commands per call through a logged-in
    TargetConnection (framing, pdu, connection, session, task set, transfer, SCSI, store);
    the figure is per command (bench/engine_cost.py's step)."""
    sys.path[:0] = [str(REPO), str(REPO / "bench")]
    from engine_cost import BATCH, batch

    assert BATCH == ENGINE_BATCH
    return batch(kind)


ENGINE_BATCH = 32

CASES: dict[str, tuple[str, Callable[[], Callable[[], object]], int]] = {
    # name: (modules mainly exercised, setup, calls per timing relative to N / divisor)
    "pdu.decode": ("proto/pdu", case_pdu_decode, 1),
    "pdu.encode": ("proto/pdu", case_pdu_encode, 1),
    "serial": ("proto/serial", case_serial, 1),
    "framing": ("proto/framing", case_framing, 2),
    "table": ("placement/table", case_table, 1),
    "cdb+busy": ("scsi/cdb, scsi/busy", case_cdb, 1),
    "iostats": ("scsi/iostats", case_iostats, 1),
    "memory": ("backstore/memory, mapped, base", case_memory_store, 2),
    "dispatch.read": ("scsi/dispatch, sbc, task", case_dispatch_read, 4),
    "dispatch.write": ("scsi/dispatch, sbc, task, storework", case_dispatch_write, 4),
    "engine.read": ("target/* + all above (per command)", lambda: _engine("read"),
                    ENGINE_BATCH * 4),
    "engine.write": ("target/* + all above (per command)", lambda: _engine("write"),
                     ENGINE_BATCH * 4),
}


def child(name: str) -> None:
    """Print the CPU microseconds per call of case ``name`` (per command for engine.*)."""
    _, setup, divisor = CASES[name]
    call = setup()
    calls = max(N // divisor, 50)
    for _ in range(max(calls // 10, 5)):  # warm up
        call()
    start = time.process_time()
    for _ in range(calls):
        call()
    spent = time.process_time() - start
    per = ENGINE_BATCH if name.startswith("engine.") else 1
    print(spent / (calls * per) * 1e6)


# ----------------------------------------------------------------------- driver


def compiled_build(src: Path) -> bool:
    return any((src / "pyiscsi" / "proto").glob("pdu.*.so"))


def measure(src: Path, name: str) -> float:
    env = dict(os.environ, PYTHONPATH=str(src))
    out = subprocess.run([sys.executable, __file__, "--child", name], env=env, check=True,
                         capture_output=True, text=True, cwd=tempfile.gettempdir())
    return float(out.stdout.split()[-1])


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(sys.argv[2])
        return
    src = REPO / "src"
    if not compiled_build(src):
        sys.exit(f"compile_gain.py: no compiled modules in {src} (build them: "
                 "pip install -e . or python setup.py build_ext --inplace)")
    names = os.environ.get("CASES", "").split() or list(CASES)
    with tempfile.TemporaryDirectory(prefix="pyiscsi-pure-") as tmp:
        pure = Path(tmp) / "src"
        shutil.copytree(src, pure, ignore=shutil.ignore_patterns("*.so", "__pycache__"))
        sides = {"pure": pure, "compiled": src}
        for side, path in sides.items():  # the child imports the build it was given
            probe = subprocess.run(
                [sys.executable, "-c", "import pyiscsi.proto.pdu as m; print(m.__file__)"],
                env=dict(os.environ, PYTHONPATH=str(path)), capture_output=True, text=True,
                check=True, cwd=tmp).stdout.strip()
            if probe.endswith(".py") != (side == "pure"):
                sys.exit(f"compile_gain.py: the {side} side imports {probe}")
        print(f"# {sys.version.split()[0]}, {os.cpu_count()} cores, N={N}, ROUNDS={ROUNDS}, "
              f"CPU us per call (engine.*: per command), medians")
        print(f"{'case':<15} {'modules':<38} {'pure':>8} {'compiled':>9} {'gain':>6}")
        for name in names:
            times: dict[str, list[float]] = {"pure": [], "compiled": []}
            for r in range(ROUNDS):
                order = ("pure", "compiled") if r % 2 == 0 else ("compiled", "pure")
                for side in order:
                    times[side].append(measure(sides[side], name))
            p, c = statistics.median(times["pure"]), statistics.median(times["compiled"])
            print(f"{name:<15} {CASES[name][0]:<38} {p:8.3f} {c:9.3f} {p / c:5.2f}x",
                  flush=True)


if __name__ == "__main__":
    main()
