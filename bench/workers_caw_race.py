"""COMPARE AND WRITE race across target processes (issue 12, lever 3 spike).

Two ``pyiscsi serve`` processes export the same /dev/shm file (as ``workers_spike.py`` sets
them up). Two initiator processes (pyiscsi's blocking initiator) each loop for SECONDS:
READ block 0, take its first 8 bytes as a counter c, COMPARE AND WRITE (SBC-4 §5.3) block 0
expecting c and writing c+1. A MISCOMPARE (sense key 0Eh) means the other one got there first.
If COMPARE AND WRITE is atomic, every success moves the counter by exactly one, so
``final - initial == successes``; a shortfall is a lost update: two compares saw the same c
and both wrote c+1. Configurations: ``one`` (both initiators on process A: the control) and
``two`` (one initiator on each process). Prints the counts; exits 1 when an update was lost
in ``one`` (a real bug), 0 otherwise (lost updates in ``two`` are the finding, not a failure).

    python bench/workers_caw_race.py   # via bench/workers_caw_race.sh (env: SECONDS_EACH, ROUNDS)
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from workers_spike import start  # the same target start (bench/ is this script's path[0])

from pyiscsi.initiator.blocking import connect
from pyiscsi.initiator.errors import ScsiCommandError

IQN = "iqn.2026-11.org.pyiscsi:disk"
BS = 512
MISCOMPARE = 0x0E


def caw_cdb(lba: int, blocks: int) -> bytes:
    """COMPARE AND WRITE (89h), SBC-4 §5.3: LBA at bytes 2-9, NUMBER OF LOGICAL BLOCKS at 13."""
    return bytes([0x89, 0]) + lba.to_bytes(8, "big") + bytes(3) + bytes([blocks, 0, 0])


def block(counter: int) -> bytes:
    return counter.to_bytes(8, "big") + bytes(BS - 8)


def worker(url: str, seconds: float, start: float, out: mp.Queue[tuple[int, int]]) -> None:
    ok = miss = 0
    with connect(url, initiator_name=f"iqn.2026-11.test:caw-{os.getpid()}") as lun:
        while time.time() < start:
            time.sleep(0.001)
        end = start + seconds
        while time.time() < end:
            c = int.from_bytes(lun.read(0, 1)[:8], "big")
            try:
                lun.execute(caw_cdb(0, 1), data_out=block(c) + block(c + 1))
                ok += 1
            except ScsiCommandError as e:
                if e.sense_key != MISCOMPARE:
                    raise
                miss += 1
    out.put((ok, miss))


def race(urls: tuple[str, str], seconds: float) -> tuple[int, int, int, int]:
    """Run the two initiators; (initial, final, successes, miscompares)."""
    with connect(urls[0], initiator_name="iqn.2026-11.test:caw-check") as lun:
        initial = int.from_bytes(lun.read(0, 1)[:8], "big")
    q: mp.Queue[tuple[int, int]] = mp.Queue()
    start = time.time() + 1.0
    procs = [mp.Process(target=worker, args=(u, seconds, start, q)) for u in urls]
    for p in procs:
        p.start()
    results = [q.get() for _ in procs]
    for p in procs:
        p.join()
    with connect(urls[0], initiator_name="iqn.2026-11.test:caw-check") as lun:
        final = int.from_bytes(lun.read(0, 1)[:8], "big")
    return initial, final, sum(r[0] for r in results), sum(r[1] for r in results)


def main() -> int:
    py = os.environ.get("BENCH_PY", sys.executable)
    work = Path(os.environ["BENCH_WORK"])
    seconds = float(os.environ.get("SECONDS_EACH", "8"))
    rounds = int(os.environ.get("ROUNDS", "3"))
    ports = (int(os.environ.get("PORT_A", "3313")), int(os.environ.get("PORT_B", "3314")))
    image = Path(f"/dev/shm/pyiscsi-caw-{os.getpid()}.img")
    subprocess.run(["truncate", "-s", "16M", str(image)], check=True)
    targets: list[subprocess.Popen[bytes]] = []
    bad_control = False
    try:
        targets = [start(py, work, "a", ports[0], f"file:{image}", "auto"),
                   start(py, work, "b", ports[1], f"file:{image}", "auto")]
        url = {p: f"iscsi://127.0.0.1:{p}/{IQN}/0" for p in ports}
        configs = {"one": (url[ports[0]], url[ports[0]]), "two": (url[ports[0]], url[ports[1]])}
        print("| round | config | successes | miscompares | counter moved | lost updates |")
        print("|---|---|---|---|---|---|")
        for rnd in range(rounds):
            for name in (("one", "two") if rnd % 2 == 0 else ("two", "one")):
                initial, final, ok, miss = race(configs[name], seconds)
                lost = ok - (final - initial)
                bad_control |= name == "one" and lost != 0
                print(f"| {rnd} | {name} | {ok} | {miss} | {final - initial} | {lost} |",
                      flush=True)
    finally:
        for t in targets:
            if t.poll() is None:
                t.send_signal(signal.SIGTERM)
                t.wait(20)
        image.unlink(missing_ok=True)
    return 1 if bad_control else 0


if __name__ == "__main__":
    sys.exit(main())
