"""CPU of each thread of a process over an interval, by thread name (bench helper).

    python bench/thread_cpu.py PID SECONDS  ->  lines "NAME user_ticks sys_ticks" then "HZ n"
(ticks of ``/proc/PID/task/*/stat``, threads of one name summed; HZ: ticks per second).
"""

from __future__ import annotations

import os
import sys
import time


def snapshot(pid: int) -> dict[str, tuple[str, int, int]]:
    """Per thread id: (name, user ticks, system ticks)."""
    out: dict[str, tuple[str, int, int]] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
        except FileNotFoundError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        out[tid] = (name, int(fields[11]), int(fields[12]))
    return out


def main() -> None:
    pid, seconds = int(sys.argv[1]), float(sys.argv[2])
    before = snapshot(pid)
    time.sleep(seconds)
    after = snapshot(pid)
    by_name: dict[str, list[int]] = {}
    for tid, (name, user, system) in after.items():
        _, user0, system0 = before.get(tid, (name, 0, 0))
        total = by_name.setdefault(name, [0, 0])
        total[0] += user - user0
        total[1] += system - system0
    for name, (user, system) in sorted(by_name.items(), key=lambda kv: -sum(kv[1])):
        if user + system:
            print(name.replace(" ", "_"), user, system)
    print("HZ", os.sysconf("SC_CLK_TCK"))


if __name__ == "__main__":
    main()
