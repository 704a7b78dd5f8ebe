"""Spike (issue 12, lever 3): does a second target process pay on this machine?

Run through ``bench/workers_spike.sh``. Two independent ``pyiscsi serve`` processes listen on
two ports over the SAME backing file in /dev/shm (``--lun file:...``, so both see the same
data). Two configurations, interleaved per round (order rotated), medians over the rounds:

* ``one``: every fio session goes to process A (process B sits idle);
* ``two``: the sessions are split, half to A and half to B (two fio job sections at once).

Workloads: 4 KiB randread and randwrite as 16 sessions x QD2 and 2 sessions x QD16 (each fio
job is its own libiscsi context, so its own session). Per run: total IOPS (sum over fio's
jobs), the targets' CPU (utime+stime of both processes, /proc/PID/stat) from the end of the
ramp to fio's exit, target CPU per command (over fio's total_ios), fio's own CPU (rusage of
the fio process tree over its whole run) and how busy the whole host was (/proc/stat), since
the machine is shared. Writes markdown to bench/results/workers_spike-YYYYmmdd-HHMMSS.md.
This builds nothing permanent: it only measures the ceiling of ``--workers``.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HZ = os.sysconf("SC_CLK_TCK")
INITIATOR = "iqn.2026-11.test:workers"
IQN = "iqn.2026-11.org.pyiscsi:disk"


@dataclass(frozen=True)
class Workload:
    name: str
    rw: str
    sessions: int
    qd: int


WORKLOADS = (
    Workload("randread-4k-16sx2", "randread", 16, 2),
    Workload("randwrite-4k-16sx2", "randwrite", 16, 2),
    Workload("randread-4k-2sx16", "randread", 2, 16),
    Workload("randwrite-4k-2sx16", "randwrite", 2, 16),
)
CONFIGS = ("one", "two")


@dataclass
class Run:
    round: int
    config: str
    workload: str
    iops: float
    ios: int
    target_cpu_s: float
    window_s: float
    fio_cpu_s: float
    fio_wall_s: float
    host_busy: float
    per_proc_cpu_s: tuple[float, float]
    runq_wait_s: float

    @property
    def target_cores(self) -> float:
        return self.target_cpu_s / self.window_s

    @property
    def wait_per_cpu(self) -> float:
        """Run-queue wait of the targets per second of their CPU (0: never starved)."""
        return self.runq_wait_s / self.target_cpu_s if self.target_cpu_s else float("nan")

    @property
    def us_per_cmd(self) -> float:
        return self.target_cpu_s * 1e6 / self.ios if self.ios else float("nan")

    @property
    def fio_cores(self) -> float:
        return self.fio_cpu_s / self.fio_wall_s

    @property
    def fio_us_per_cmd(self) -> float:
        # fio's CPU includes its ramp; scale its total_ios by the same share of wall time
        return self.fio_cpu_s * 1e6 / (self.iops * self.fio_wall_s) if self.iops else float("nan")


def ticks(pid: int) -> int:
    """utime + stime of the whole thread group (fields 14, 15 of /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def runq_wait_s(pid: int) -> float:
    """Seconds the process's threads sat runnable waiting for a CPU (/proc/PID/task/*/schedstat,
    second field): how much other load on the host starved it."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total / 1e9


def host() -> tuple[int, int]:
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    return sum(parts), parts[3] + parts[4]


def start(py: str, work: Path, name: str, port: int, lun: str,
          loop: str) -> subprocess.Popen[bytes]:
    d = work / name
    d.mkdir()
    cmd = [py, "-m", "pyiscsi.cli", "serve", "--loop", loop, "--portal", f"127.0.0.1:{port}",
           "--lun", lun, "--admin-socket", "off", "--max-sessions", "64"]
    out = open(d / "out", "wb")  # noqa: SIM115  (owned by the child)
    err = open(d / "err", "wb")  # noqa: SIM115
    proc = subprocess.Popen(cmd, cwd=d, stdout=out, stderr=err)
    for _ in range(300):
        if b"serving " in (d / "out").read_bytes():
            return proc
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    sys.exit(f"workers_spike: pyiscsi {name} did not start: {(d / 'err').read_text()[-2000:]}")


def url(port: int) -> str:
    return f"iscsi://127.0.0.1:{port}/{IQN}/0".replace(":", "\\:")  # fio splits on ':'


def job_args(name: str, port: int, rw: str, bs: str, qd: int, jobs: int) -> list[str]:
    return [f"--name={name}", "--ioengine=libiscsi", f"--initiator={INITIATOR}",
            f"--filename={url(port)}", f"--rw={rw}", f"--bs={bs}", f"--iodepth={qd}",
            f"--numjobs={jobs}", "--randrepeat=0"]


def fio(fio_bin: str, jobs: list[list[str]], out: Path, runtime: int, ramp: int,
        timed: bool = True) -> tuple[subprocess.Popen[bytes], list[str]]:
    common = ["--output-format=json", f"--output={out}"]
    if timed:
        common += ["--time_based", f"--runtime={runtime}", f"--ramp_time={ramp}"]
    cmd = [fio_bin, *common]
    for j in jobs:
        cmd += j
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE), cmd


def sum_jobs(path: Path, rw: str) -> tuple[float, int]:
    text = path.read_text()
    data: dict[str, Any] = json.loads(text[text.index("{"):])
    side = "write" if "write" in rw else "read"
    iops = sum(float(j[side]["iops"]) for j in data["jobs"])
    ios = sum(int(j[side]["total_ios"]) for j in data["jobs"])
    return iops, ios


def run(fio_bin: str, work: Path, pids: tuple[int, int], ports: tuple[int, int], cfg: str,
        w: Workload, rnd: int, runtime: int, ramp: int) -> Run:
    out = work / f"{cfg}-{w.name}-{rnd}.json"
    if cfg == "one":
        jobs = [job_args(w.name, ports[0], w.rw, "4k", w.qd, w.sessions)]
    else:
        half = w.sessions // 2
        jobs = [job_args(f"{w.name}-a", ports[0], w.rw, "4k", w.qd, half),
                job_args(f"{w.name}-b", ports[1], w.rw, "4k", w.qd, w.sessions - half)]
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    w0 = time.monotonic()
    proc, _ = fio(fio_bin, jobs, out, runtime, ramp)
    time.sleep(ramp)
    t0 = [ticks(p) for p in pids]
    q0 = sum(runq_wait_s(p) for p in pids)
    h0 = host()
    s0 = time.monotonic()
    _, err = proc.communicate()
    s1 = time.monotonic()
    t1 = [ticks(p) for p in pids]
    q1 = sum(runq_wait_s(p) for p in pids)
    h1 = host()
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"workers_spike: fio failed ({cfg} {w.name}): {err.decode()[-1000:]}")
    iops, ios = sum_jobs(out, w.rw)
    fio_cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    per = tuple((b - a) / HZ for a, b in zip(t0, t1, strict=True))
    busy = 1 - (h1[1] - h0[1]) / max(1, h1[0] - h0[0])
    return Run(rnd, cfg, w.name, iops, ios, sum(per), s1 - s0, fio_cpu, s1 - w0, busy,
               (per[0], per[1]), q1 - q0)


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def report(runs: list[Run], meta: list[str]) -> str:
    lines = [f"# workers spike: one pyiscsi process vs two over one file, "
             f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}", "", *meta, "",
             "Medians over the rounds. target cores = CPU of both target processes / window; "
             "target us/cmd = that CPU per completed command; fio cores = fio's CPU over its "
             "whole run; host busy = the whole machine's non-idle share (2 cores = 100%; other "
             "jobs share it); runq wait/CPU = seconds the target processes sat runnable "
             "without a CPU per second they ran (/proc/PID/task/*/schedstat): starvation by "
             "other load.", "",
             "| workload | config | IOPS | two/one | target cores | target us/cmd | "
             "proc A / B cores | fio cores | fio us/cmd | host busy | runq wait/CPU |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for w in WORKLOADS:
        base = median([r.iops for r in runs if r.workload == w.name and r.config == "one"])
        for c in CONFIGS:
            rs = [r for r in runs if r.workload == w.name and r.config == c]
            iops = median([r.iops for r in rs])
            pa = median([r.per_proc_cpu_s[0] / r.window_s for r in rs])
            pb = median([r.per_proc_cpu_s[1] / r.window_s for r in rs])
            lines.append(
                f"| {w.name} | {c} | {iops:,.0f} | {iops / base:.2f} | "
                f"{median([r.target_cores for r in rs]):.2f} | "
                f"{median([r.us_per_cmd for r in rs]):.1f} | {pa:.2f} / {pb:.2f} | "
                f"{median([r.fio_cores for r in rs]):.2f} | "
                f"{median([r.fio_us_per_cmd for r in rs]):.1f} | "
                f"{100 * median([r.host_busy for r in rs]):.0f}% | "
                f"{median([r.wait_per_cpu for r in rs]):.2f} |")
    lines += ["", "## Every run", "", "| round | workload | config | IOPS | target cores | "
              "target us/cmd | fio cores | host busy | runq wait/CPU |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        lines.append(f"| {r.round} | {r.workload} | {r.config} | {r.iops:,.0f} | "
                     f"{r.target_cores:.2f} | {r.us_per_cmd:.1f} | {r.fio_cores:.2f} | "
                     f"{100 * r.host_busy:.0f}% | {r.wait_per_cpu:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    env = os.environ
    work = Path(env["BENCH_WORK"])
    repo = Path(__file__).resolve().parent.parent
    py, fio_bin = env["BENCH_PY"], env["FIO"]
    runtime, ramp = int(env.get("RUNTIME", "8")), int(env.get("RAMP", "2"))
    rounds = int(env.get("ROUNDS", "3"))
    loop = env.get("LOOP", "auto")
    ports = (int(env.get("PORT_A", "3311")), int(env.get("PORT_B", "3312")))
    size = env.get("SIZE", "512M")
    image = Path(env.get("IMAGE", f"/dev/shm/pyiscsi-workers-{os.getpid()}.img"))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = Path(env.get("OUT", str(repo / "bench" / "results" / f"workers_spike-{stamp}.md")))
    if not (Path(fio_bin).is_file() and os.access(fio_bin, os.X_OK)):
        sys.exit(f"workers_spike: no fio with the libiscsi engine at {fio_bin} "
                 "(../shared/peers/install.sh builds one)")
    subprocess.run(["truncate", "-s", size, str(image)], check=True)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        lun = f"file:{image}"
        procs = [start(py, work, "a", ports[0], lun, loop),
                 start(py, work, "b", ports[1], lun, loop)]
        pids = (procs[0].pid, procs[1].pid)
        fill, _ = fio(fio_bin, [job_args("fill", ports[0], "write", "1m", 8, 1)],
                      work / "fill.json", 0, 0, timed=False)
        if fill.wait() != 0:
            sys.exit("workers_spike: filling the LUN failed")
        runs: list[Run] = []
        for rnd in range(rounds):
            order = list(CONFIGS) if rnd % 2 == 0 else list(reversed(CONFIGS))
            wl = list(WORKLOADS[rnd % len(WORKLOADS):] + WORKLOADS[:rnd % len(WORKLOADS)])
            for w in wl:
                for c in order:
                    r = run(fio_bin, work, pids, ports, c, w, rnd, runtime, ramp)
                    runs.append(r)
                    print(f"round {rnd} {w.name:<20s} {c}: {r.iops:9,.0f} IOPS  target "
                          f"{r.target_cores:.2f} cores {r.us_per_cmd:6.1f} us/cmd  fio "
                          f"{r.fio_cores:.2f} cores  host busy {100 * r.host_busy:.0f}%  "
                          f"runq wait/CPU {r.wait_per_cpu:.2f}",
                          flush=True)
        rev = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=False).stdout.strip()
        load = Path("/proc/loadavg").read_text().split()[:3]
        meta = [f"pyiscsi {rev} on Python {platform.python_version()}, loop {loop}; "
                f"{os.cpu_count()} CPUs; fio {fio_bin}; LUN file:{image} ({size}, tmpfs); "
                f"{rounds} rounds x {runtime} s + {ramp} s ramp; load average at the end "
                f"{' '.join(load)} (the machine is shared with other jobs)."]
        text = report(runs, meta)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        print(text)
        print(f"written to {out}")
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        image.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
