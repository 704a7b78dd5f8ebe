"""The target's memory without its RAM store: at rest, under 4 KiB QD32 random writes and
under 1 MiB QD8 writes, sampled every few seconds; a verdict of growth or none.

Run through ``bench/memory.sh`` (venv, peers, fio resolved by common.sh). Starts
``pyiscsi serve --lun ram:SIZE`` and reads ``/proc/PID/smaps``: every mapping's Rss,
Private (clean + dirty) and Anonymous, summed over all mappings except the RAM store's.
The RAM store (backstore/memory.py) is one anonymous private ``mmap`` of exactly the LUN's
size, marked ``MADV_DONTDUMP``: its mapping is the anonymous one (no path) of exactly that
size with the ``dd`` VmFlag, which also keeps the kernel from merging it with its anonymous
neighbours (two RAM stores side by side could still merge with each other: the script
serves one LUN). Exactly one mapping must match, else the script stops rather than guess.

Verdict per phase: the least-squares slope of the samples of the last 50 s (MiB/min) and
max - min over the phase; "grows" when the slope exceeds GROWTH (MiB/min, default 1.0).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

IQN = "iqn.2026-11.org.pyiscsi:disk"
INITIATOR = "iqn.2026-11.test:memory"
MIB = 1 << 20


@dataclass(frozen=True)
class Sample:
    t: float
    rss: int
    private: int
    anonymous: int
    store_rss: int


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


@dataclass
class Mapping:
    size: int
    path: str
    flags: list[str] = field(default_factory=list)
    kb: dict[str, int] = field(default_factory=dict)
    """The smaps fields given in kB, in bytes."""


def mappings(pid: int) -> list[Mapping]:
    maps: list[Mapping] = []
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split(None, 5)
            if head and "-" in head[0] and ":" not in head[0]:
                lo, hi = (int(x, 16) for x in head[0].split("-"))
                maps.append(Mapping(hi - lo, head[5].strip() if len(head) > 5 else ""))
            elif line.startswith("VmFlags:"):
                maps[-1].flags = line.split(":", 1)[1].split()
            elif maps and line.rstrip().endswith(" kB"):
                key, value = line.split(":", 1)
                maps[-1].kb[key] = int(value.split()[0]) * 1024
    return maps


def sample(pid: int, store_bytes: int, t0: float) -> Sample:
    """Sum smaps over every mapping but the store's (see the module docstring)."""
    maps = mappings(pid)
    store = [m for m in maps if m.size == store_bytes and not m.path and "dd" in m.flags]
    if len(store) != 1:
        sys.exit(f"memory: {len(store)} mappings look like the RAM store "
                 f"(anonymous, {store_bytes} bytes, VmFlag dd); cannot tell which")
    rest = [m for m in maps if m is not store[0]]

    def total(*keys: str) -> int:
        return sum(m.kb.get(k, 0) for m in rest for k in keys)

    return Sample(time.monotonic() - t0, total("Rss"), total("Private_Clean", "Private_Dirty"),
                  total("Anonymous"), store[0].kb.get("Rss", 0))


def slope_mib_per_min(samples: list[Sample], attr: str) -> float:
    if len(samples) < 2:
        return 0.0
    xs = [s.t for s in samples]
    ys = [getattr(s, attr) / MIB for s in samples]
    return statistics.linear_regression(xs, ys).slope * 60


def main() -> None:
    env = os.environ
    py, fio = env["BENCH_PY"], env["FIO"]
    duration = float(env.get("DURATION", "60"))
    interval = float(env.get("INTERVAL", "3"))
    rest_s = float(env.get("REST", "15"))
    window = float(env.get("WINDOW", "50"))
    growth = float(env.get("GROWTH", "1.0"))
    size = env.get("LUN_SIZE", "1GiB")
    port = int(env.get("PORT", "3299"))
    work = Path(env["BENCH_WORK"])
    repo = Path(__file__).resolve().parent.parent
    out = Path(env.get("OUT") or repo / "bench" / "results" /
               f"memory-{time.strftime('%Y%m%d-%H%M%S')}.md")
    store_bytes = parse_size(size)
    url = f"iscsi://127.0.0.1:{port}/{IQN}/0"
    with open(work / "out", "wb") as so, open(work / "err", "wb") as se:
        proc = subprocess.Popen([py, "-m", "pyiscsi.cli", "serve", "--loop",
                                 env.get("LOOP", "auto"), "--portal", f"127.0.0.1:{port}",
                                 "--lun", f"ram:{size}"], cwd=work, stdout=so, stderr=se)
    try:
        for _ in range(300):
            if b"serving " in (work / "out").read_bytes() or proc.poll() is not None:
                break
            time.sleep(0.1)
        if b"serving " not in (work / "out").read_bytes():
            sys.exit(f"memory: pyiscsi did not come up: {(work / 'err').read_text()}")
        phases: list[tuple[str, list[Sample]]] = []
        loads = [("at rest after startup", None, rest_s),
                 ("randwrite 4 KiB QD32", ("randwrite", "4k", 32), duration),
                 ("write 1 MiB QD8", ("write", "1m", 8), duration)]
        print(f"# pyiscsi pid {proc.pid}, {url}, RAM store {store_bytes} bytes excluded; "
              f"sample every {interval:g} s")
        print(f"{'phase':<22} {'t_s':>6} {'rss_MiB':>8} {'private_MiB':>11} {'anon_MiB':>8} "
              f"{'store_rss_MiB':>13}")
        for name, load, seconds in loads:
            fio_proc = None
            if load is not None:
                rw, bs, qd = load
                fio_proc = subprocess.Popen(
                    [fio, f"--name={rw}", "--ioengine=libiscsi", f"--initiator={INITIATOR}",
                     "--filename=" + url.replace(":", "\\:"), f"--rw={rw}", f"--bs={bs}",
                     f"--iodepth={qd}", "--time_based", f"--runtime={int(seconds) + 5}",
                     "--randrepeat=0", "--output-format=json",
                     f"--output={work / (rw + '.json')}"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(2)  # logged in and running
            t0 = time.monotonic()
            samples: list[Sample] = []
            while True:
                s = sample(proc.pid, store_bytes, t0)
                samples.append(s)
                print(f"{name:<22} {s.t:6.1f} {s.rss / MIB:8.1f} {s.private / MIB:11.1f} "
                      f"{s.anonymous / MIB:8.1f} {s.store_rss / MIB:13.1f}", flush=True)
                if s.t >= seconds - 0.01:
                    break
                time.sleep(max(0.0, min(interval, seconds - (time.monotonic() - t0))))
            if fio_proc is not None:
                fio_proc.wait()
                if fio_proc.returncode != 0:
                    sys.exit(f"memory: fio {name} failed")
            phases.append((name, samples))
    finally:
        proc.terminate()
        proc.wait(20)
    rows = []
    for name, samples in phases:
        last = [s for s in samples if s.t >= samples[-1].t - window]
        rss = [s.rss / MIB for s in samples]
        slope = slope_mib_per_min(last, "rss")
        anon_slope = slope_mib_per_min(last, "anonymous")
        verdict = "grows" if max(slope, anon_slope) > growth else "no growth"
        rows.append(f"| {name} | {samples[-1].t:.0f} s, {len(samples)} | {rss[0]:.1f} | "
                    f"{max(rss):.1f} | {rss[-1]:.1f} | {max(rss) - min(rss):.1f} | "
                    f"{slope:+.2f} | {anon_slope:+.2f} | {samples[-1].anonymous / MIB:.1f} | "
                    f"{samples[-1].store_rss / MIB:.0f} | {verdict} |")
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    model = next((x.split(":", 1)[1].strip() for x in lscpu.splitlines()
                  if x.startswith("Model name:")), "?")
    text = "\n".join([
        f"# pyiscsi target memory without the RAM store, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        "",
        f"- {model}, {os.cpu_count()} cores; `{py}`; `pyiscsi serve --lun ram:{size}` "
        f"(loop {env.get('LOOP', 'auto')}); fio + libiscsi on the same machine",
        f"- /proc/PID/smaps summed over every mapping except the RAM store's (anonymous, "
        f"{store_bytes} bytes, VmFlag dd); sampled every {interval:g} s; slope: least "
        f"squares over the last {window:g} s of each phase; verdict \"grows\" above "
        f"{growth:g} MiB/min (Rss or Anonymous)",
        "",
        "| phase | span, samples | Rss first MiB | Rss max MiB | Rss last MiB | Rss max-min MiB "
        "| Rss slope MiB/min | Anon slope MiB/min | Anon last MiB | store Rss MiB | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *rows, ""])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print()
    print(text)
    print(f"# written to {out}")


if __name__ == "__main__":
    main()
