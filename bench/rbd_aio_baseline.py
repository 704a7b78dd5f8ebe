"""librbd from Python, no iSCSI: the ceiling the rbd: backstore works under.

Keeps QD asynchronous reads or writes of BS bytes in flight on one image for SECONDS and
prints MB/s, IOPS and this process's CPU per I/O (user+sys). Two bindings:

* ``ctypes`` (pyiscsi.ceph): completions on an eventfd, reaped by one select loop, buffers
  passed by address (what the RBD backstore does);
* ``python-rbd`` (Debian's python3-rbd, run it with /usr/bin/python3): ``Image.aio_write``
  takes ``bytes`` (copied into a bufferlist) and calls back on a librbd thread (GIL).

    python bench/rbd_aio_baseline.py --conf $CEPH_CONF --image rbd/base --rw randwrite \\
        --bs 4096 --qd 32 --seconds 10 [--binding ctypes|python-rbd]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import resource
import select
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def offsets(rw: str, bs: int, size: int) -> Callable[[], int]:
    blocks = size // bs
    if rw.startswith("rand"):
        return lambda: random.randrange(blocks) * bs
    state = {"next": 0}

    def sequential() -> int:
        at = state["next"]
        state["next"] = (at + bs) % (blocks * bs)
        return at

    return sequential


def run_ctypes(args: argparse.Namespace) -> tuple[int, float, float]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from pyiscsi.ceph import librados, librbd

    pool, name = args.image.split("/")
    cluster = librados.Cluster(args.conf, options={"rbd_cache": "false",
                                                   "rbd_disable_zero_copy_writes": "false"})
    ioctx = cluster.ioctx(pool)
    with contextlib.suppress(OSError):
        librbd.create(ioctx, name, args.size)
    img = librbd.Image(ioctx, name)
    write = "write" in args.rw
    next_offset = offsets(args.rw, args.bs, img.get_size())
    buffers = [memoryview(bytearray(os.urandom(args.bs))) for _ in range(args.qd)]
    addrs = [librbd.address(b) for b in buffers]
    pending: dict[int, int] = {}

    def start(slot: int) -> None:
        addr = addrs[slot][0]
        if write:
            comp = img.aio_writev(next_offset(), librbd.iovec(addr, args.bs))
        else:
            comp = img.aio_read(next_offset(), args.bs, addr)
        pending[comp] = slot

    for slot in range(args.qd):
        start(slot)
    done = 0
    t0, c0 = time.perf_counter(), cpu()
    deadline = t0 + args.seconds
    while time.perf_counter() < deadline:
        select.select([img.event_fd], [], [], 1)
        img.drain_event_fd()
        for comp in img.poll():
            slot = pending.pop(comp)
            if img.result(comp) < 0:
                raise SystemExit("I/O failed")
            done += 1
            start(slot)
    elapsed, used = time.perf_counter() - t0, cpu() - c0
    while pending:
        select.select([img.event_fd], [], [], 1)
        img.drain_event_fd()
        for comp in img.poll():
            pending.pop(comp)
            img.result(comp)
    img.close()
    ioctx.close()
    cluster.shutdown()
    return done, elapsed, used


def run_python_rbd(args: argparse.Namespace) -> tuple[int, float, float]:
    import rados  # type: ignore[import-not-found]
    import rbd  # type: ignore[import-not-found]

    pool, name = args.image.split("/")
    cluster = rados.Rados(conffile=args.conf)
    cluster.conf_set("rbd_cache", "false")
    cluster.connect()
    ioctx = cluster.open_ioctx(pool)
    with contextlib.suppress(rbd.ImageExists):
        rbd.RBD().create(ioctx, name, args.size)
    img = rbd.Image(ioctx, name)
    write = "write" in args.rw
    next_offset = offsets(args.rw, args.bs, img.size())
    data = os.urandom(args.bs)
    cond = threading.Condition()
    state = {"done": 0, "inflight": 0}

    def oncomplete(comp: object, *rest: object) -> None:  # on a librbd thread
        with cond:
            state["done"] += 1
            state["inflight"] -= 1
            cond.notify()

    def start() -> None:
        state["inflight"] += 1
        if write:
            img.aio_write(data, next_offset(), oncomplete)
        else:
            img.aio_read(next_offset(), args.bs, oncomplete)

    t0, c0 = time.perf_counter(), cpu()
    deadline = t0 + args.seconds
    with cond:
        for _ in range(args.qd):
            start()
        while time.perf_counter() < deadline:
            cond.wait(1)
            while state["inflight"] < args.qd:
                start()
        done = state["done"]
    elapsed, used = time.perf_counter() - t0, cpu() - c0
    img.flush()
    img.close()
    ioctx.close()
    cluster.shutdown()
    return done, elapsed, used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conf", default=os.environ.get("CEPH_CONF"))
    parser.add_argument("--image", default="rbd/pyiscsi-baseline")
    parser.add_argument("--size", type=int, default=1 << 30)
    parser.add_argument("--rw", default="randwrite",
                        choices=["read", "write", "randread", "randwrite"])
    parser.add_argument("--bs", type=int, default=4096)
    parser.add_argument("--qd", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--binding", default="ctypes", choices=["ctypes", "python-rbd"])
    args = parser.parse_args()
    run = run_ctypes if args.binding == "ctypes" else run_python_rbd
    done, elapsed, used = run(args)
    mbs = done * args.bs / elapsed / 1e6
    print(f"{args.binding:10s} {args.rw}-{args.bs // 1024}k-qd{args.qd}  {mbs:9.1f} MB/s  "
          f"{done / elapsed:9.0f} IOPS  cpu/io {used / max(done, 1) * 1e6:7.1f} us  "
          f"cpu {used / elapsed * 100:5.1f}%")


if __name__ == "__main__":
    main()
