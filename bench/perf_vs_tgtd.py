"""pyiscsi against tgtd (stock and tuned keys), fio + libiscsi, interleaved rounds, medians.

Run through ``bench/perf_vs_tgtd.sh`` (which resolves the venv, the peers and fio; see its
header for the environment). Three targets serve a 1 GiB RAM LUN at once: pyiscsi
(``serve --lun ram:1GiB``), tgtd with its stock keys and tgtd with MaxRecvDataSegmentLength
= FirstBurstLength = 256 KiB and InitialR2T=No. Each round runs every workload against every
target (the target order and the workload order rotate from round to round); against
pyiscsi, ``pyiscsi bench`` (our initiator) also runs the single-session workloads right after
fio. Per run: fio's MB/s, IOPS, mean and p99 completion latency (clat), and the target's CPU
time (utime+stime of all its threads, /proc/PID/stat) from the end of fio's ramp to fio's
exit, per GB moved and per command (fio's total_ios). pyiscsi's copy counters (admin socket)
are read before and after each of its runs. Prints medians and ratios, writes markdown to
bench/results/perf_vs_tgtd-YYYYmmdd-HHMMSS.md.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HZ = os.sysconf("SC_CLK_TCK")
INITIATOR = "iqn.2026-11.test:perf"
PY_IQN = "iqn.2026-11.org.pyiscsi:disk"
TUNED_KEYS = "MaxRecvDataSegmentLength=262144 FirstBurstLength=262144 InitialR2T=No"
BUCKETS = ("lt4k", "4k_64k", "ge64k")
COPY_KEYS = [f"{k}_{b}" for k in ("rx_placed", "rx_staged", "tx_zero_copy", "tx_copied")
             for b in BUCKETS] + ["rx_placed", "rx_staged", "rx_discarded", "tx_zero_copy",
                                  "tx_copied"]


@dataclass(frozen=True)
class Workload:
    name: str
    rw: str
    bs: str
    qd: int
    jobs: int = 1
    """fio numjobs: each job is its own libiscsi context, so its own session."""


WORKLOADS = {w.name: w for w in (
    Workload("seqread-128k-qd16", "read", "128k", 16),
    Workload("seqread-1m-qd8", "read", "1m", 8),
    Workload("seqwrite-128k-qd16", "write", "128k", 16),
    Workload("seqwrite-1m-qd8", "write", "1m", 8),
    Workload("randread-4k-qd32", "randread", "4k", 32),
    Workload("randwrite-4k-qd32", "randwrite", "4k", 32),
    Workload("randread-4k-qd1", "randread", "4k", 1),
    Workload("randread-4k-16s-qd2", "randread", "4k", 2, jobs=16),
)}


@dataclass
class Config:
    runtime: int
    ramp: int
    rounds: int
    workloads: list[Workload]
    ini_workloads: list[Workload]
    py: str
    pyiscsi: list[str]
    peers: Path
    fio: str
    loop: str
    ports: dict[str, int]
    ctrl_ports: dict[str, int]
    work: Path
    out: Path
    repo: Path

    @classmethod
    def from_env(cls, work: Path) -> Config:
        env = os.environ
        quick = env.get("QUICK", "") not in ("", "0")
        repo = Path(__file__).resolve().parent.parent

        def pick(names: str, default: str) -> list[Workload]:
            chosen = env.get(names, default).split()
            unknown = [n for n in chosen if n not in WORKLOADS]
            if unknown:
                sys.exit(f"perf_vs_tgtd: unknown workload(s) {unknown}; known: {list(WORKLOADS)}")
            return [WORKLOADS[n] for n in chosen]

        single = " ".join(n for n, w in WORKLOADS.items() if w.jobs == 1)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        return cls(
            runtime=int(env.get("RUNTIME", "3" if quick else "8")),
            ramp=int(env.get("RAMP", "1" if quick else "2")),
            rounds=int(env.get("ROUNDS", "1" if quick else "3")),
            workloads=pick("WORKLOADS", " ".join(WORKLOADS)),
            ini_workloads=pick("INI_WORKLOADS", single),
            py=env["BENCH_PY"], pyiscsi=shlex.split(env["BENCH_PYISCSI"]),
            peers=Path(env["PEERS"]), fio=env["FIO"], loop=env.get("LOOP", "auto"),
            ports={"pyiscsi": int(env.get("PY_PORT", "3295")),
                   "tgtd-stock": int(env.get("TGT_PORT", "3296")),
                   "tgtd-tuned": int(env.get("TUNED_PORT", "3297"))},
            ctrl_ports={"tgtd-stock": int(env.get("CTRL_PORT", "7")),
                        "tgtd-tuned": int(env.get("TUNED_CTRL_PORT", "8"))},
            work=work, repo=repo,
            out=Path(env.get("OUT", str(repo / "bench" / "results" /
                                        f"perf_vs_tgtd-{stamp}.md"))))


@dataclass
class Target:
    name: str
    url: str
    pid: int
    stop_cmd: list[str] | None = None
    stop_env: dict[str, str] | None = None
    proc: subprocess.Popen[bytes] | None = None
    admin: Path | None = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.stop_cmd is not None:
            subprocess.run(self.stop_cmd, env=self.stop_env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=False)


@dataclass
class Run:
    round: int
    target: str
    workload: str
    client: str  # fio | pyiscsi-bench
    mbps: float
    iops: float
    lat_mean_us: float
    lat_p99_us: float
    cpu_s: float | None = None
    ios: int | None = None
    bytes: int | None = None
    copies: dict[str, int] = field(default_factory=dict)

    @property
    def cpu_us_per_cmd(self) -> float | None:
        return self.cpu_s * 1e6 / self.ios if self.cpu_s is not None and self.ios else None

    @property
    def cpu_s_per_gb(self) -> float | None:
        return self.cpu_s / (self.bytes / 1e9) if self.cpu_s is not None and self.bytes else None


def ticks(pid: int) -> int:
    """utime + stime of the whole thread group (fields 14, 15 of /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def admin_counters(path: Path) -> dict[str, int]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(str(path))
        s.sendall(b'{"verb": "status"}\n')
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            buf += chunk
    answer = json.loads(buf)
    if not answer.get("ok"):
        raise RuntimeError(f"admin socket: {answer}")
    counters: dict[str, int] = answer["status"]["counters"]
    return {k: int(counters.get(k, 0)) for k in COPY_KEYS}


def start_pyiscsi(cfg: Config) -> Target:
    d = cfg.work / "py"
    d.mkdir()
    port = cfg.ports["pyiscsi"]
    admin = d / "admin.sock"
    cmd = [cfg.py, "-m", "pyiscsi.cli", "serve", "--loop", cfg.loop, "--portal",
           f"127.0.0.1:{port}", "--lun", "ram:1GiB", "--admin-socket", str(admin)]
    out = open(d / "out", "wb")  # noqa: SIM115  (owned by the child)
    err = open(d / "err", "wb")  # noqa: SIM115
    proc = subprocess.Popen(cmd, cwd=d, stdout=out, stderr=err)
    for _ in range(300):
        if b"serving " in (d / "out").read_bytes():
            break
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    else:
        proc.kill()
    if proc.poll() is not None or b"serving " not in (d / "out").read_bytes():
        sys.exit(f"perf_vs_tgtd: pyiscsi did not come up: {(d / 'err').read_text()}")
    return Target("pyiscsi", f"iscsi://127.0.0.1:{port}/{PY_IQN}/0", proc.pid, proc=proc,
                  admin=admin)


def start_tgtd(cfg: Config, name: str, keys: str) -> Target:
    d = cfg.work / name
    env = {**os.environ, "WORKDIR": str(d), "PORT": str(cfg.ports[name]),
           "CTRL_PORT": str(cfg.ctrl_ports[name]), "TGT_PARAMS": keys}
    r = subprocess.run([str(cfg.peers / "start-tgtd.sh")], env=env, capture_output=True,
                       text=True, check=False)
    stop = [str(cfg.peers / "stop-tgtd.sh")]
    if r.returncode != 0 or not (d / "tgtd.pid").exists():
        subprocess.run(stop, env=env, capture_output=True, check=False)
        sys.exit(f"perf_vs_tgtd: tgtd ({name}) did not start: {r.stderr.strip()}")
    url = r.stdout.strip().splitlines()[-1]
    return Target(name, url, int((d / "tgtd.pid").read_text()), stop_cmd=stop, stop_env=env)


def fio_cmd(cfg: Config, url: str, name: str, rw: str, bs: str, qd: int, jobs: int,
            out: Path, timed: bool = True) -> list[str]:
    cmd = [cfg.fio, f"--name={name}", "--ioengine=libiscsi", f"--initiator={INITIATOR}",
           "--filename=" + url.replace(":", "\\:"), f"--rw={rw}", f"--bs={bs}",
           f"--iodepth={qd}", "--randrepeat=0", "--output-format=json", f"--output={out}"]
    if jobs > 1:
        cmd += [f"--numjobs={jobs}", "--group_reporting"]
    if timed:
        cmd += ["--time_based", f"--runtime={cfg.runtime}", f"--ramp_time={cfg.ramp}"]
    return cmd


def fill(cfg: Config, target: Target) -> None:
    """Write the whole LUN once in 1 MiB writes: reads then hit written memory on every
    target, and the targets' allocators are warm (see ../shared/peers/README.md)."""
    out = cfg.work / f"fill-{target.name}.json"
    cmd = fio_cmd(cfg, target.url, "fill", "write", "1m", 8, 1, out, timed=False)
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        sys.exit(f"perf_vs_tgtd: filling {target.name} failed: {r.stderr.strip()}")


def load_fio(path: Path, rw: str) -> dict[str, Any]:
    text = path.read_text()
    job: dict[str, Any] = json.loads(text[text.index("{"):])["jobs"][0]
    side: dict[str, Any] = job["write" if "write" in rw else "read"]
    return side


def run_fio(cfg: Config, target: Target, w: Workload, rnd: int) -> Run:
    out = cfg.work / f"{target.name}-{w.name}-{rnd}.json"
    before = admin_counters(target.admin) if target.admin is not None else {}
    proc = subprocess.Popen(fio_cmd(cfg, target.url, w.name, w.rw, w.bs, w.qd, w.jobs, out),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(cfg.ramp)
    t0 = ticks(target.pid)
    _, err = proc.communicate()
    t1 = ticks(target.pid)
    after = admin_counters(target.admin) if target.admin is not None else {}
    if proc.returncode != 0:
        print(f"# {target.name} {w.name}: fio failed: {err.decode().strip()[:300]}",
              file=sys.stderr)
        return Run(rnd, target.name, w.name, "fio", 0, 0, 0, 0)
    d = load_fio(out, w.rw)
    clat = d["clat_ns"]
    p99 = clat.get("percentile", {}).get("99.000000", 0)
    return Run(rnd, target.name, w.name, "fio", d["bw_bytes"] / 1e6, d["iops"],
               clat["mean"] / 1e3, p99 / 1e3, (t1 - t0) / HZ, int(d["total_ios"]),
               int(d["io_bytes"]), {k: after[k] - before[k] for k in after})


def run_ini_bench(cfg: Config, target: Target, w: Workload, rnd: int) -> Run:
    before = admin_counters(target.admin) if target.admin is not None else {}
    r = subprocess.run([*cfg.pyiscsi, "bench", target.url, "--rw", w.rw, "--bs", w.bs,
                        "--qd", str(w.qd), "--time", str(cfg.runtime), "--ramp", str(cfg.ramp)],
                       capture_output=True, text=True, check=False)
    after = admin_counters(target.admin) if target.admin is not None else {}
    kv = dict(part.split("=", 1) for part in r.stdout.split() if "=" in part)
    if r.returncode != 0 or "MB/s" not in kv:
        print(f"# pyiscsi bench {w.name} failed: {r.stderr.strip()[:300]}", file=sys.stderr)
        return Run(rnd, target.name, w.name, "pyiscsi-bench", 0, 0, 0, 0)
    return Run(rnd, target.name, w.name, "pyiscsi-bench", float(kv["MB/s"]), float(kv["IOPS"]),
               float(kv.get("lat_mean_us", "nan")), float(kv.get("lat_p99_us", "nan")),
               copies={k: after[k] - before[k] for k in after})


def median(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def fmt(v: float | None, digits: int = 1) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None or not b else f"{a / b:.2f}"


def loop_speed(py: str) -> float:
    """ns per iteration of a fixed pure-Python loop, in the target's interpreter (best of 5)."""
    code = ("import time\nbest = 1e9\nfor _ in range(5):\n t = time.perf_counter_ns()\n x = 0\n"
            " for i in range(2_000_000):\n  x += i\n best = min(best, time.perf_counter_ns() - t)\n"
            "print(best / 2_000_000)")
    r = subprocess.run([py, "-c", code], capture_output=True, text=True, check=True)
    return float(r.stdout)


def machine(cfg: Config) -> list[str]:
    model = "?"
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    for line in lscpu.splitlines():
        if line.startswith("Model name:"):
            model = line.split(":", 1)[1].strip()
    pyver = subprocess.run([cfg.py, "-c", "import sys; print(sys.version.split()[0])"],
                           capture_output=True, text=True, check=False).stdout.strip()
    rev = subprocess.run(["git", "-C", str(cfg.repo), "describe", "--always", "--dirty"],
                         capture_output=True, text=True, check=False).stdout.strip() or "?"
    tgt = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "tgt"],
                         capture_output=True, text=True, check=False).stdout.strip() or "?"
    return [f"CPU: {model}, {os.cpu_count()} cores; kernel {platform.release()}",
            f"pure-Python loop: {loop_speed(cfg.py):.1f} ns/iteration (`x += i` over "
            f"range(2e6), best of 5, {cfg.py})",
            f"pyiscsi {rev} on Python {pyver}, loop {cfg.loop}; tgtd {tgt}; fio {cfg.fio}"]


def report(cfg: Config, runs: list[Run], head: list[str]) -> str:
    targets = ["pyiscsi", "tgtd-tuned", "tgtd-stock"]
    fio = [r for r in runs if r.client == "fio"]

    def med(t: str, w: str, attr: str) -> float | None:
        return median([getattr(r, attr) for r in fio if r.target == t and r.workload == w])

    lines = [f"# pyiscsi vs tgtd: fio + libiscsi, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}", ""]
    lines += [f"- {h}" for h in head]
    lines += [f"- {cfg.rounds} interleaved round(s), {cfg.runtime} s per run after {cfg.ramp} s "
              "ramp; medians. tgtd-tuned: " + TUNED_KEYS + "; tgtd-stock: its defaults "
              "(MaxRecvDataSegmentLength 8192, FirstBurstLength 65536, InitialR2T=Yes).",
              "- Target CPU: utime+stime of all the target's threads (/proc/PID/stat) from the "
              "end of the ramp to fio's exit, per command (fio total_ios) and per GB moved. "
              "Client and targets share the cores.", ""]
    lines += ["## Throughput (MB/s = 10^6 B/s) and ratios", "",
              "| workload | pyiscsi MB/s | tgtd-tuned MB/s | tgtd-stock MB/s | py/tuned | "
              "py/stock | pyiscsi IOPS | tgtd-tuned IOPS | tgtd-stock IOPS |",
              "|---|---|---|---|---|---|---|---|---|"]
    for w in cfg.workloads:
        m = {t: med(t, w.name, "mbps") for t in targets}
        io = {t: med(t, w.name, "iops") for t in targets}
        if w.qd == 1 and w.jobs == 1:  # latency-bound: the ratio is of mean latency
            lat = {t: med(t, w.name, "lat_mean_us") for t in targets}
            rt = f"lat {ratio(lat['pyiscsi'], lat['tgtd-tuned'])}"
            rs = f"lat {ratio(lat['pyiscsi'], lat['tgtd-stock'])}"
        else:
            rt, rs = ratio(m["pyiscsi"], m["tgtd-tuned"]), ratio(m["pyiscsi"], m["tgtd-stock"])
        lines.append(f"| {w.name} | {fmt(m['pyiscsi'])} | {fmt(m['tgtd-tuned'])} | "
                     f"{fmt(m['tgtd-stock'])} | {rt} | {rs} | {fmt(io['pyiscsi'], 0)} | "
                     f"{fmt(io['tgtd-tuned'], 0)} | {fmt(io['tgtd-stock'], 0)} |")
    lines += ["", "Ratios are pyiscsi/tgtd of MB/s; for QD1 (`lat`) of mean latency (lower is "
              "better for pyiscsi).", "", "## Latency (completion, us) and target CPU", "",
              "| workload | target | lat mean | lat p99 | CPU us/cmd | CPU s/GB |",
              "|---|---|---|---|---|---|"]
    for w in cfg.workloads:
        for t in targets:
            lines.append(f"| {w.name} | {t} | {fmt(med(t, w.name, 'lat_mean_us'))} | "
                         f"{fmt(med(t, w.name, 'lat_p99_us'))} | "
                         f"{fmt(med(t, w.name, 'cpu_us_per_cmd'))} | "
                         f"{fmt(med(t, w.name, 'cpu_s_per_gb'), 2)} |")
    ini = [r for r in runs if r.client == "pyiscsi-bench"]
    if ini:
        lines += ["", "## Initiators against the pyiscsi target: `pyiscsi bench` vs fio+libiscsi",
                  "", "| workload | fio MB/s | pyiscsi bench MB/s | bench/fio | fio IOPS | "
                  "bench IOPS | fio p99 us | bench p99 us |", "|---|---|---|---|---|---|---|---|"]
        for w in cfg.ini_workloads:
            f_mb, f_io, f_p = (med("pyiscsi", w.name, a) for a in ("mbps", "iops", "lat_p99_us"))
            rows = [r for r in ini if r.workload == w.name]
            o_mb = median([r.mbps for r in rows])
            o_io = median([r.iops for r in rows])
            o_p = median([r.lat_p99_us for r in rows])
            lines.append(f"| {w.name} | {fmt(f_mb)} | {fmt(o_mb)} | {ratio(o_mb, f_mb)} | "
                         f"{fmt(f_io, 0)} | {fmt(o_io, 0)} | {fmt(f_p)} | {fmt(o_p)} |")
    lines += copies_section(cfg, runs)
    lines += ["", "## Every run", "", "(last two columns: pyiscsi's bytes of >= 64 KiB payloads "
              "copied in that run, received and sent)", "",
              "| round | target | client | workload | MB/s | IOPS | lat mean | lat p99 | "
              "CPU us/cmd | rx staged >=64k B | tx copied >=64k B |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        big = (f"{r.copies['rx_staged_ge64k']} | {r.copies['tx_copied_ge64k']}" if r.copies
               else "- | -")
        lines.append(f"| {r.round} | {r.target} | {r.client} | {r.workload} | {fmt(r.mbps)} | "
                     f"{fmt(r.iops, 0)} | {fmt(r.lat_mean_us)} | {fmt(r.lat_p99_us)} | "
                     f"{fmt(r.cpu_us_per_cmd)} | {big} |")
    return "\n".join(lines) + "\n"


def copies_section(cfg: Config, runs: list[Run]) -> list[str]:
    """pyiscsi's payload bytes by path and payload size, per workload (all its runs, fio and
    pyiscsi bench), and the verdict on payloads of 64 KiB and more."""
    mine = [r for r in runs if r.target == "pyiscsi" and r.copies]
    if not mine:
        return []
    mib = 1 << 20
    lines = ["", "## pyiscsi payload bytes by path and PDU payload size (MiB, all its runs)", "",
             "| workload | client | rx placed <4k / 4-64k / >=64k | rx staged <4k / 4-64k / >=64k"
             " | tx zero-copy <4k / 4-64k / >=64k | tx copied <4k / 4-64k / >=64k |",
             "|---|---|---|---|---|---|"]
    total: dict[str, int] = dict.fromkeys(COPY_KEYS, 0)
    for w in cfg.workloads:
        for client in ("fio", "pyiscsi-bench"):
            rows = [r for r in mine if r.workload == w.name and r.client == client]
            if not rows:
                continue
            s = {k: sum(r.copies[k] for r in rows) for k in COPY_KEYS}
            for k in COPY_KEYS:
                total[k] += s[k]
            cells = [" / ".join(f"{s[f'{p}_{b}'] / mib:.0f}" for b in BUCKETS)
                     for p in ("rx_placed", "rx_staged", "tx_zero_copy", "tx_copied")]
            lines.append(f"| {w.name} | {client} | " + " | ".join(cells) + " |")
    rx_big, tx_big = total["rx_staged_ge64k"], total["tx_copied_ge64k"]
    verdict = ("0 copied bytes in both directions" if rx_big == tx_big == 0 else
               f"NOT ZERO: rx staged {rx_big} B ({rx_big / mib:.1f} MiB), tx copied {tx_big} B "
               f"({tx_big / mib:.1f} MiB)")
    moved_big = total["rx_placed_ge64k"] + total["tx_zero_copy_ge64k"] + rx_big + tx_big
    lines += ["", f"Payloads of 64 KiB and more over the whole run ({moved_big / mib:.0f} MiB "
              f"moved): {verdict}.",
              "Totals (bytes): " + ", ".join(f"{k} {total[k]}" for k in COPY_KEYS[:12]) + "."]
    return lines


def main() -> None:
    work = Path(os.environ.get("BENCH_WORK") or "/tmp")
    cfg = Config.from_env(work)
    if not (Path(cfg.fio).is_file() and os.access(cfg.fio, os.X_OK)):
        sys.exit(f"perf_vs_tgtd: no fio with the libiscsi engine at {cfg.fio} "
                 "(../shared/peers/install.sh builds it; or set FIO=)")
    head = machine(cfg)
    targets: list[Target] = []
    runs: list[Run] = []
    try:
        targets.append(start_pyiscsi(cfg))
        targets.append(start_tgtd(cfg, "tgtd-tuned", TUNED_KEYS))
        targets.append(start_tgtd(cfg, "tgtd-stock", ""))
        print("# " + "  ".join(f"{t.name} {t.url} (pid {t.pid})" for t in targets), flush=True)
        for h in head:
            print(f"# {h}", flush=True)
        for t in targets:
            fill(cfg, t)
        print(f"{'round':>5} {'target':<11} {'client':<13} {'workload':<20} {'MB/s':>8} "
              f"{'IOPS':>8} {'lat_us':>8} {'p99_us':>8} {'cpu_us/cmd':>10}", flush=True)
        n_w = len(cfg.workloads)
        for rnd in range(1, cfg.rounds + 1):
            shift = (rnd - 1) % len(targets)
            order = targets[shift:] + targets[:shift]
            wshift = (rnd - 1) % n_w
            for w in cfg.workloads[wshift:] + cfg.workloads[:wshift]:
                for t in order:
                    batch = [run_fio(cfg, t, w, rnd)]
                    if t.name == "pyiscsi" and w in cfg.ini_workloads:
                        batch.append(run_ini_bench(cfg, t, w, rnd))
                    for r in batch:
                        runs.append(r)
                        print(f"{rnd:>5} {r.target:<11} {r.client:<13} {r.workload:<20} "
                              f"{r.mbps:8.1f} {r.iops:8.0f} {r.lat_mean_us:8.1f} "
                              f"{r.lat_p99_us:8.1f} {fmt(r.cpu_us_per_cmd):>10}", flush=True)
    finally:
        for t in targets:
            t.stop()
    text = report(cfg, runs, head)
    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    cfg.out.write_text(text)
    print()
    print(text)
    print(f"# written to {cfg.out}")


if __name__ == "__main__":
    main()
