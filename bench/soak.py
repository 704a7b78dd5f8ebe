#!/usr/bin/env python3
"""Data-safety soak: many sessions of verified writes and reads while connections are killed.

Each of N sessions (default 64) owns a disjoint LBA region of one LUN and loops: write a random
block range with a verifiable pattern, or read a random window back and check it. A write is
*acknowledged* only once it ended GOOD; a write that failed (its connection was killed under it)
is *pending*: its blocks may hold the last acknowledged data or the pending data, nothing else,
until the next acknowledged write to them. On a lost connection the session logs in again
(new session, same region) and carries on. Meanwhile a killer tears down random connections of
the target, server side, every ~0.5 s with ``ss -K`` (a TCP abort of the target's socket: the
target's handler sees ECONNABORTED, the initiator gets a RST). At the end every region is read
back in full and checked.

A block written by session S at LBA L with generation G (per-session counter, from 1) holds a
24-byte header ``b"SOAK", S, L, G`` followed by bytes of a seeded random pool at an offset
derived from (S, L, G), so a block written to the wrong place, torn, stale or from another
session is detected. A block never written reads as zeros.

Failures (exit status 1): a mismatch, the target dying, ``internal_errors`` > 0 in the
target's ``--stats`` file, a hang (one command or login over 5 s, or no progress for 5 s),
anonymous RSS of the target growing more than 256 MiB over its start, or an unexpected SCSI
error. The RSS bound: the target's per-connection state is fixed-size (staging and sink
buffers, a 4096-entry table, a 128-command window; SECURITY.md "Defaults"), so 64 sessions
need a few tens of MiB at most; 256 MiB of anonymous growth in a steady-state loop means a
leak. VmRSS also counts the file LUN's mapped pages (MAP_SHARED), bounded by the LUN's size,
so VmRSS is reported but the bound is applied to RssAnon.

    bench/soak.py --sessions 64 --seconds 60            # starts `pyiscsi serve` itself
    bench/soak.py --url iscsi://127.0.0.1:3260/IQN/0 --pid PID --stats FILE   # attach
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from pyiscsi.initiator.client import Lun, connect
from pyiscsi.initiator.errors import (
    ConnectionClosed,
    InitiatorError,
    ProtocolError,
    ScsiCommandError,
)
from pyiscsi.initiator.url import parse_url

MiB = 1 << 20
HEADER = struct.Struct("<4sIQQ")
MAGIC = b"SOAK"
POOL_SPAN = 1 << 16
MAX_KEPT = 1000


# -- block patterns -------------------------------------------------------------------------


class Pattern:
    """The expected contents of a block written by (session, lba, generation)."""

    def __init__(self, block_size: int, seed: int = 0) -> None:
        if block_size <= HEADER.size:
            raise ValueError(f"block size {block_size} is too small")
        self.block_size = block_size
        self.zero = bytes(block_size)
        self._body = block_size - HEADER.size
        self._pool = random.Random(seed).randbytes(POOL_SPAN + self._body)

    def block(self, session: int, lba: int, generation: int) -> bytes:
        offset = ((session * 0x9E3779B1) ^ (lba * 0x85EBCA77) ^ (generation * 0xC2B2AE3D)) \
            % POOL_SPAN
        return HEADER.pack(MAGIC, session, lba, generation) + \
            self._pool[offset:offset + self._body]

    def blocks(self, session: int, lba: int, count: int, generation: int) -> bytes:
        return b"".join(self.block(session, lba + i, generation) for i in range(count))

    def generation_of(self, data: bytes | bytearray | memoryview) -> int | None:
        """The generation a block claims (0 for a zero block), None for garbage."""
        if data == self.zero:
            return 0
        magic, _, _, generation = HEADER.unpack_from(data)
        return int(generation) if magic == MAGIC else None


@dataclass
class Mismatch:
    session: int
    lba: int
    found: str
    allowed: list[int]

    def __str__(self) -> str:
        return (f"session {self.session} LBA {self.lba}: found {self.found}, "
                f"allowed generations {self.allowed}")


class Region:
    """What one writer put in its blocks: acknowledged and possibly-written generations."""

    def __init__(self, session: int, first_lba: int, blocks: int, pattern: Pattern) -> None:
        self.session = session
        self.first_lba = first_lba
        self.blocks = blocks
        self.pattern = pattern
        self.generation = 0
        self.acked = [0] * blocks
        """Per block: generation of its last write that ended GOOD (0: never written)."""
        self.pending: dict[int, set[int]] = {}
        """Per block index: generations of writes that failed in flight after that write."""

    def next_write(self, rng: random.Random, max_blocks: int) -> tuple[int, int, int, bytes]:
        """(lba, count, generation, data) of the next write in this region."""
        count = rng.randint(1, min(max_blocks, self.blocks))
        lba = self.first_lba + rng.randrange(self.blocks - count + 1)
        self.generation += 1
        return lba, count, self.generation, self.pattern.blocks(self.session, lba, count,
                                                                self.generation)

    def acknowledge(self, lba: int, count: int, generation: int) -> None:
        for i in range(lba - self.first_lba, lba - self.first_lba + count):
            self.acked[i] = generation
            self.pending.pop(i, None)

    def maybe_written(self, lba: int, count: int, generation: int) -> None:
        for i in range(lba - self.first_lba, lba - self.first_lba + count):
            self.pending.setdefault(i, set()).add(generation)

    def allowed(self, index: int) -> set[int]:
        return {self.acked[index], *self.pending.get(index, ())}

    def verify(self, lba: int, data: bytes | bytearray | memoryview) -> list[Mismatch]:
        """Check blocks read at ``lba`` against what may be there."""
        bs = self.pattern.block_size
        view = memoryview(data)
        mismatches = []
        for n in range(len(view) // bs):
            index = lba - self.first_lba + n
            block = view[n * bs:(n + 1) * bs]
            allowed = self.allowed(index)
            generation = self.pattern.generation_of(block)
            if generation in allowed and (generation == 0 or block == self.pattern.block(
                    self.session, lba + n, generation)):
                continue
            found = ("garbage" if generation is None else
                     f"generation {generation} with wrong contents" if generation in allowed
                     else f"generation {generation}")
            mismatches.append(Mismatch(self.session, lba + n, found, sorted(allowed)))
        return mismatches

    def written_lbas(self) -> list[int]:
        return [self.first_lba + i for i, g in enumerate(self.acked) if g and
                i not in self.pending]


# -- the target's health --------------------------------------------------------------------


def proc_status(pid: int) -> dict[str, str] | None:
    """``/proc/PID/status`` as a dict; None when the process is gone or a zombie."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    status = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    status = {k: v.strip() for k, v in status.items()}
    return None if status.get("State", "").startswith(("Z", "X")) else status


def rss_bytes(status: dict[str, str], key: str) -> int:
    value = status.get(key, "0 kB").split()
    return int(value[0]) * 1024


def read_stats(path: Path, newer_than: float = 0.0, wait: float = 5.0) -> dict[str, int]:
    """The target's ``--stats`` JSON, waiting up to ``wait`` s for one written after a time."""
    deadline = time.monotonic() + wait
    stats: dict[str, int] = {}
    while True:
        with contextlib.suppress(OSError, json.JSONDecodeError):
            if path.stat().st_mtime > newer_than or time.monotonic() > deadline:
                stats = dict(json.loads(path.read_text()))
                return stats
        if time.monotonic() > deadline:
            return stats
        time.sleep(0.1)


# -- the soak -------------------------------------------------------------------------------


@dataclass
class SoakConfig:
    url: str
    target_pid: int
    stats_path: Path | None = None
    sessions: int = 64
    seconds: float = 60.0
    max_write_blocks: int = 32
    """Most writes: 1..32 blocks, sent as immediate data (within FirstBurstLength)."""
    large_fraction: float = 0.05
    large_blocks: int = 2048
    """Some writes and reads: up to 2048 blocks (1 MiB at 512 B): R2T and Data-Out sequences
    past FirstBurstLength, multi-PDU Data-In; a kill lands mid-burst more often."""
    read_fraction: float = 0.2
    read_window_blocks: int = 256
    kill_interval: float = 0.5
    max_kills_per_round: int = 2
    hang_seconds: float = 5.0
    rss_anon_growth_bound: int = 256 * MiB
    seed: int = 1


@dataclass
class SoakResult:
    sessions: int = 0
    seconds: float = 0.0
    block_size: int = 0
    region_blocks: int = 0
    writes_acked: int = 0
    bytes_written_acked: int = 0
    writes_pending: int = 0
    reads_verified: int = 0
    bytes_verified: int = 0
    reconnects: int = 0
    login_retries: int = 0
    kills: int = 0
    kill_mechanism: str = ""
    mismatch_count: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)
    """The first MAX_KEPT mismatches (all are counted in ``mismatch_count``)."""
    scsi_errors: list[str] = field(default_factory=list)
    hangs: list[str] = field(default_factory=list)
    target_alive: bool = True
    rss_start: int = 0
    rss_max: int = 0
    rss_end: int = 0
    rss_anon_start: int = 0
    rss_anon_max: int = 0
    rss_anon_end: int = 0
    rss_anon_warm: int = 0
    """RssAnon a quarter into the run (all sessions up): growth after it would be a leak."""
    rss_anon_bound: int = 0
    internal_errors: int | None = None
    stats: dict[str, int] = field(default_factory=dict)
    final_verify_seconds: float = 0.0

    @property
    def failures(self) -> list[str]:
        out = [f"mismatch: {m}" for m in self.mismatches[:20]]
        if self.mismatch_count > 20:
            out.append(f"... {self.mismatch_count} mismatches in all")
        out += [f"hang: {h}" for h in self.hangs[:20]]
        out += [f"SCSI/protocol error: {e}" for e in self.scsi_errors[:20]]
        if not self.target_alive:
            out.append("the target died")
        if self.internal_errors:
            out.append(f"internal_errors = {self.internal_errors}")
        if self.rss_anon_max > self.rss_anon_bound:
            out.append(f"target RssAnon {self.rss_anon_max >> 20} MiB exceeds the bound "
                       f"{self.rss_anon_bound >> 20} MiB")
        return out

    @property
    def ok(self) -> bool:
        return not self.failures

    def figures(self) -> str:
        def mib(n: int) -> str:
            return f"{n / MiB:.1f} MiB"

        lines = [
            f"sessions            {self.sessions} (region {self.region_blocks} blocks of "
            f"{self.block_size} B each)",
            f"seconds             {self.seconds:.1f} (+ {self.final_verify_seconds:.1f} s "
            "final verification)",
            f"writes acknowledged {self.writes_acked} ({mib(self.bytes_written_acked)}, "
            f"{self.writes_acked / max(self.seconds, 1e-9):.0f}/s)",
            f"writes in flight at a kill {self.writes_pending}",
            f"reads verified      {self.reads_verified}",
            f"bytes verified      {self.bytes_verified} ({mib(self.bytes_verified)})",
            f"kills               {self.kills} ({self.kill_mechanism})",
            f"reconnects          {self.reconnects} (login retries {self.login_retries})",
            f"mismatches          {self.mismatch_count}",
            f"hangs               {len(self.hangs)}",
            f"SCSI/protocol errors {len(self.scsi_errors)}",
            f"target alive        {self.target_alive}",
            f"target VmRSS        start {mib(self.rss_start)}, max {mib(self.rss_max)}, "
            f"end {mib(self.rss_end)}",
            f"target RssAnon      start {mib(self.rss_anon_start)}, max "
            f"{mib(self.rss_anon_max)}, end {mib(self.rss_anon_end)}, after warm-up "
            f"{mib(self.rss_anon_warm)} (bound {mib(self.rss_anon_bound)})",
            f"internal_errors     {self.internal_errors}",
            f"target stats        {json.dumps(self.stats, sort_keys=True)}",
        ]
        return "\n".join(lines)


class Killer:
    """Aborts random established connections of the target, server side, with ``ss -K``."""

    def __init__(self, port: int, rng: random.Random) -> None:
        self.port = port
        self.rng = rng
        self.prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
        self.mechanism = (f"{' '.join([*self.prefix, 'ss'])} -4tK state established "
                          "src 127.0.0.1 sport = :PORT dport = :PEER (server side)")
        self.kills = 0
        self.errors: list[str] = []

    async def _ss(self, *args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            *self.prefix, "ss", *args, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        return proc.returncode or 0, out.decode(), err.decode()

    async def peers(self) -> list[int]:
        """Client ports of the target's established connections."""
        _, out, _ = await self._ss("-4Htn", "state", "established", "src", "127.0.0.1",
                                   "sport", "=", f":{self.port}")
        ports = []
        for line in out.splitlines():
            fields = line.split()
            if len(fields) >= 4:
                ports.append(int(fields[3].rpartition(":")[2]))
        return ports

    async def kill_one(self, peer: int) -> bool:
        rc, out, err = await self._ss("-4tHK", "state", "established", "src", "127.0.0.1",
                                      "sport", "=", f":{self.port}", "dst", "127.0.0.1",
                                      "dport", "=", f":{peer}")
        if rc or err.strip():
            self.errors.append(err.strip() or f"ss exited {rc}")
            return False
        killed = sum(1 for line in out.splitlines() if line.strip())
        self.kills += killed
        return killed > 0

    async def run(self, stop: asyncio.Event, interval: float, per_round: int) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval * self.rng.uniform(0.5, 1.5))
            if stop.is_set():
                return
            peers = await self.peers()
            for peer in self.rng.sample(peers, min(len(peers), self.rng.randint(1, per_round))):
                await self.kill_one(peer)


class Soak:
    def __init__(self, config: SoakConfig) -> None:
        self.config = config
        self.url = parse_url(config.url)
        self.result = SoakResult(sessions=config.sessions)
        self.regions: list[Region] = []
        self.rng = random.Random(config.seed)
        self._stop = asyncio.Event()
        self._progress = 0
        self._started = 0.0

    # -- setup

    async def prepare(self) -> None:
        """Read the capacity and split it into one region per session."""
        async with asyncio.timeout(self.config.hang_seconds * 2):
            lun = await connect(self.url, timeout=self.config.hang_seconds)
            try:
                cap = await lun.read_capacity()
            finally:
                await lun.close()
        per_session = cap.blocks // self.config.sessions
        if per_session < self.config.max_write_blocks:
            raise ValueError(f"LUN too small: {cap.blocks} blocks for "
                             f"{self.config.sessions} sessions")
        pattern = Pattern(cap.block_size, self.config.seed)
        self.regions = [Region(s, s * per_session, per_session, pattern)
                        for s in range(self.config.sessions)]
        self.result.block_size = cap.block_size
        self.result.region_blocks = per_session

    # -- workers

    async def _login(self, region: Region) -> Lun | None:
        """Log in again until it works; None once the soak is stopping."""
        hang = self.config.hang_seconds
        name = f"iqn.2026-11.org.pyiscsi:soak{region.session}"
        while not self._stop.is_set():
            try:
                async with asyncio.timeout(hang):
                    lun = await connect(self.url, timeout=None, initiator_name=name)
                    await lun.read_capacity()
                    return lun
            except TimeoutError:
                self._hang(f"session {region.session}: login took over {hang} s")
            except (InitiatorError, ProtocolError, OSError):  # LoginFailed is a ProtocolError
                self.result.login_retries += 1
                await asyncio.sleep(0.05)
        return None

    def _hang(self, what: str) -> None:
        self.result.hangs.append(what)

    async def _drop(self, lun: Lun) -> None:
        with contextlib.suppress(Exception):
            await lun.session.close(timeout=1.0)

    async def _read_verify(self, lun: Lun, region: Region, lba: int, count: int
                           ) -> list[Mismatch]:
        buf = bytearray(count * region.pattern.block_size)
        await lun.read_into(lba, buf)
        found = region.verify(lba, buf)
        r = self.result
        r.mismatch_count += len(found)
        r.mismatches += found[:max(0, MAX_KEPT - len(r.mismatches))]
        r.reads_verified += 1
        r.bytes_verified += len(buf)
        return found

    async def _worker(self, region: Region) -> None:
        cfg = self.config
        rng = random.Random(cfg.seed * 1000003 + region.session)
        first = True
        while not self._stop.is_set():
            lun = await self._login(region)
            if lun is None:
                return
            if not first:
                self.result.reconnects += 1
            first = False
            try:
                while not self._stop.is_set():
                    large = rng.random() < cfg.large_fraction
                    if rng.random() < cfg.read_fraction:
                        most = cfg.large_blocks if large else cfg.read_window_blocks
                        count = rng.randint(1, min(most, region.blocks))
                        lba = region.first_lba + rng.randrange(region.blocks - count + 1)
                        async with asyncio.timeout(cfg.hang_seconds):
                            await self._read_verify(lun, region, lba, count)
                    else:
                        most = cfg.large_blocks if large else cfg.max_write_blocks
                        lba, count, gen, data = region.next_write(rng, most)
                        try:
                            async with asyncio.timeout(cfg.hang_seconds):
                                await lun.write(lba, data)
                        except BaseException:
                            region.maybe_written(lba, count, gen)
                            self.result.writes_pending += 1
                            raise
                        region.acknowledge(lba, count, gen)
                        self.result.writes_acked += 1
                        self.result.bytes_written_acked += len(data)
                    self._progress += 1
            except TimeoutError:
                self._hang(f"session {region.session}: a command took over {cfg.hang_seconds} s")
            except (ConnectionClosed, OSError):
                pass  # killed: log in again
            except (ScsiCommandError, InitiatorError, ProtocolError) as exc:
                self.result.scsi_errors.append(f"session {region.session}: {exc!r}")
            finally:
                await self._drop(lun)

    async def _final_verify(self, region: Region) -> list[Mismatch]:
        """Read the whole region back (reconnecting on a lost connection) and check it."""
        found: list[Mismatch] = []
        cfg = self.config
        step = max(1, MiB // region.pattern.block_size)
        lba = region.first_lba
        end = region.first_lba + region.blocks
        attempts = 0
        while lba < end and attempts < 5:
            attempts += 1
            try:
                async with asyncio.timeout(cfg.hang_seconds):
                    lun = await connect(self.url, timeout=None)
                    await lun.read_capacity()
            except (InitiatorError, ProtocolError, OSError, TimeoutError):
                await asyncio.sleep(0.2)
                continue
            try:
                while lba < end:
                    count = min(step, end - lba)
                    async with asyncio.timeout(cfg.hang_seconds):
                        found += await self._read_verify(lun, region, lba, count)
                    lba += count
            except TimeoutError:
                self._hang(f"session {region.session}: final read took over "
                           f"{cfg.hang_seconds} s")
            except (InitiatorError, ProtocolError, OSError) as exc:
                if not isinstance(exc, ConnectionClosed | OSError):
                    self.result.scsi_errors.append(f"session {region.session}: {exc!r}")
            finally:
                await self._drop(lun)
        if lba < end:
            self.result.scsi_errors.append(
                f"session {region.session}: could not read back LBAs {lba}..{end - 1}")
        return found

    async def verify_all(self, sessions: list[int] | None = None) -> list[Mismatch]:
        """Verify regions (all by default) in full; returns their mismatches."""
        wanted = self.regions if sessions is None else [self.regions[s] for s in sessions]
        sem = asyncio.Semaphore(16)

        async def one(region: Region) -> list[Mismatch]:
            async with sem:
                return await self._final_verify(region)

        return [m for found in await asyncio.gather(*(one(r) for r in wanted)) for m in found]

    # -- monitors

    async def _watch(self) -> None:
        """Every second: the target's RSS, its liveness, and progress (a hang)."""
        cfg = self.config
        last_progress, last_change = -1, time.monotonic()
        while not self._stop.is_set():
            status = proc_status(cfg.target_pid)
            if status is None:
                self.result.target_alive = False
                self._stop.set()
                return
            self._sample_rss(status)
            now = time.monotonic()
            if self._progress != last_progress:
                last_progress, last_change = self._progress, now
            elif now - last_change > cfg.hang_seconds:
                self._hang(f"no command completed for {now - last_change:.1f} s")
                self._stop.set()
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), 1.0)

    def _sample_rss(self, status: dict[str, str]) -> None:
        r = self.result
        rss, anon = rss_bytes(status, "VmRSS"), rss_bytes(status, "RssAnon")
        if not r.rss_start:
            r.rss_start, r.rss_anon_start = rss, anon
            r.rss_anon_bound = anon + self.config.rss_anon_growth_bound
        r.rss_max, r.rss_end = max(r.rss_max, rss), rss
        r.rss_anon_max, r.rss_anon_end = max(r.rss_anon_max, anon), anon
        if not r.rss_anon_warm and self._started and \
                time.monotonic() - self._started >= self.config.seconds / 4:
            r.rss_anon_warm = anon

    # -- the whole run

    async def run(self) -> SoakResult:
        cfg = self.config
        status = proc_status(cfg.target_pid)
        if status is None:
            raise RuntimeError(f"target process {cfg.target_pid} is not running")
        self._sample_rss(status)
        if not self.regions:
            await self.prepare()
        killer = Killer(self.url.port, self.rng)
        self.result.kill_mechanism = killer.mechanism
        started = self._started = time.monotonic()
        watch = asyncio.create_task(self._watch())
        kill = asyncio.create_task(killer.run(self._stop, cfg.kill_interval,
                                              cfg.max_kills_per_round))
        workers = [asyncio.create_task(self._worker(r)) for r in self.regions]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), cfg.seconds)
        self._stop.set()
        # Workers end within one command (hang_seconds) plus a logout (1 s).
        done, stuck = await asyncio.wait(workers, timeout=cfg.hang_seconds + 3)
        for task in stuck:
            task.cancel()
        if stuck:
            self._hang(f"{len(stuck)} sessions did not stop")
        for task in done:
            if task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        await asyncio.gather(watch, kill, return_exceptions=True)
        self.result.seconds = time.monotonic() - started
        self.result.kills = killer.kills
        if killer.errors:
            self.result.kill_mechanism += f" (errors: {killer.errors[:3]})"
        if self.result.target_alive:
            verify_started = time.monotonic()
            await self.verify_all()
            self.result.final_verify_seconds = time.monotonic() - verify_started
        status = proc_status(cfg.target_pid)
        if status is None:
            self.result.target_alive = False
        else:
            self._sample_rss(status)
        if cfg.stats_path is not None and self.result.target_alive:
            self.result.stats = read_stats(cfg.stats_path, newer_than=time.time())
            self.result.internal_errors = self.result.stats.get("internal_errors")
        return self.result


async def run_soak(config: SoakConfig) -> SoakResult:
    return await Soak(config).run()


# -- command line ---------------------------------------------------------------------------


def start_target(directory: Path, size: str, queue_depth: int | None = None
                 ) -> tuple[subprocess.Popen[str], str, Path]:
    """``pyiscsi serve`` on a free loopback port with a fresh file LUN."""
    stats = directory / "stats.json"
    cmd = [sys.executable, "-m", "pyiscsi.cli", "serve", "--portal", "127.0.0.1:0",
           "--lun", f"file:{directory / 'soak.img'},size={size}", "--stats", str(stats)]
    if queue_depth:
        cmd += ["--queue-depth", str(queue_depth)]
    log = open(directory / "serve.log", "w")  # noqa: SIM115 (lives as long as the target)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("serving "):
        proc.kill()
        raise RuntimeError(f"pyiscsi serve did not start: {(directory / 'serve.log').read_text()}")
    return proc, line.split()[1], stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--size", default="256MiB", help="LUN size when starting the target")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--kill-interval", type=float, default=0.5)
    parser.add_argument("--url", help="attach to a running target instead of starting one")
    parser.add_argument("--pid", type=int, help="the attached target's process id")
    parser.add_argument("--stats", type=Path, help="the attached target's --stats file")
    args = parser.parse_args(argv)
    if shutil.which("ss") is None:
        parser.error("ss (iproute2) is required to kill connections")
    proc = None
    workdir = None
    target_status = 0
    if args.url:
        if not args.pid:
            parser.error("--url needs --pid")
        url, pid, stats = args.url, args.pid, args.stats
    else:
        workdir = tempfile.TemporaryDirectory(prefix="pyiscsi-soak-")
        proc, url, stats = start_target(Path(workdir.name), args.size)
        pid = proc.pid
    config = SoakConfig(url=url, target_pid=pid, stats_path=stats, sessions=args.sessions,
                        seconds=args.seconds, seed=args.seed, kill_interval=args.kill_interval)
    try:
        result = asyncio.run(run_soak(config))
    finally:
        if proc is not None:
            proc.terminate()
            try:
                rc = proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = -9
            target_status = rc
        if workdir is not None:
            workdir.cleanup()
    print(result.figures())
    failures = result.failures
    if target_status:
        failures.append(f"the target exited with status {target_status} on SIGTERM")
    for failure in failures:
        print(f"FAIL {failure}", file=sys.stderr)
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
