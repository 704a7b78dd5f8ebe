"""Helper for cpu_per_command.sh (stdlib only).

    cpu_per_command.py fio JSON RW          "total_ios iops" of fio's first job (read or write)
    cpu_per_command.py report RAW HZ        markdown tables from the raw per-run lines

A raw line is: workload build round ticks total_ios iops.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict


def fio(path: str, rw: str) -> str:
    with open(path) as f:
        text = f.read()
    job = json.loads(text[text.index("{"):])["jobs"][0]  # fio may print notes before the JSON
    side = job["write" if "write" in rw else "read"]
    if job.get("error"):
        raise SystemExit(f"fio job error {job['error']} in {path}")
    return f"{side['total_ios']} {side['iops']:.0f}"


def report(raw: str, hz: int) -> str:
    per_cmd: dict[tuple[str, str], list[float]] = defaultdict(list)
    iops: dict[tuple[str, str], list[float]] = defaultdict(list)
    workloads: list[str] = []
    with open(raw) as f:
        for line in f:
            workload, build, _round, cpu_ticks, total_ios, run_iops = line.split()
            if workload not in workloads:
                workloads.append(workload)
            if int(total_ios) > 0:
                per_cmd[workload, build].append(int(cpu_ticks) / hz / int(total_ios) * 1e6)
                iops[workload, build].append(float(run_iops))
    out = ["| workload | old us/cmd | new us/cmd | new/old | old IOPS | new IOPS | runs |",
           "|---|---|---|---|---|---|---|"]
    for w in workloads:
        old, new = per_cmd[w, "old"], per_cmd[w, "new"]
        if not old or not new:
            out.append(f"| {w} | (no result) | | | | | |")
            continue
        o, n = statistics.median(old), statistics.median(new)
        out.append(f"| {w} | {o:.1f} | {n:.1f} | {n / o:.2f} | "
                   f"{statistics.median(iops[w, 'old']):.0f} | "
                   f"{statistics.median(iops[w, 'new']):.0f} | {len(old)}+{len(new)} |")
    out.append("")
    out.append("per run (us/cmd), old: " + "; ".join(
        f"{w} " + " ".join(f"{v:.1f}" for v in per_cmd[w, "old"]) for w in workloads))
    out.append("per run (us/cmd), new: " + "; ".join(
        f"{w} " + " ".join(f"{v:.1f}" for v in per_cmd[w, "new"]) for w in workloads))
    return "\n".join(out)


def main(argv: list[str]) -> None:
    if len(argv) == 4 and argv[1] == "fio":
        print(fio(argv[2], argv[3]))
    elif len(argv) == 4 and argv[1] == "report":
        print(report(argv[2], int(argv[3])))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
