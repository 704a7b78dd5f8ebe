"""A blocking wrapper for scripts: one private event loop per LUN, kept across calls.

    with blocking.connect("iscsi://127.0.0.1:3260/iqn.2026-11.org.pyiscsi:disk/0") as lun:
        data = lun.read(0, 8)
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, TypeVar

from . import client
from .connection import ScsiOutcome
from .scsi import Capacity, Inquiry

T = TypeVar("T")


def _runner() -> asyncio.Runner:
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


class BlockingLun:
    """The :class:`~pyiscsi.initiator.client.Lun` API, each call run to completion."""

    def __init__(self, runner: asyncio.Runner, lun: client.Lun) -> None:
        self._runner = runner
        self.lun = lun

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._runner.run(coro)

    def __enter__(self) -> BlockingLun:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        try:
            self._run(self.lun.close())
        finally:
            self._runner.close()

    def read_capacity(self) -> Capacity:
        return self._run(self.lun.read_capacity())

    def inquiry(self) -> Inquiry:
        return self._run(self.lun.inquiry())

    def test_unit_ready(self) -> None:
        self._run(self.lun.test_unit_ready())

    def report_luns(self) -> list[int]:
        return self._run(self.lun.report_luns())

    def read_into(self, lba: int, buffer: Any) -> int:
        return self._run(self.lun.read_into(lba, buffer))

    def read(self, lba: int, blocks: int) -> bytearray:
        return self._run(self.lun.read(lba, blocks))

    def write(self, lba: int, data: Any) -> int:
        return self._run(self.lun.write(lba, data))

    def sync(self) -> None:
        self._run(self.lun.sync())

    def execute(self, cdb: bytes, *, data_in: Any = None, data_out: Any = None,
                check: bool = True) -> ScsiOutcome:
        return self._run(self.lun.execute(cdb, data_in=data_in, data_out=data_out, check=check))


def connect(url: str, **kwargs: Any) -> BlockingLun:
    """Log in and return a :class:`BlockingLun` (close it, or use ``with``)."""
    runner = _runner()
    try:
        lun = runner.run(client.connect(url, **kwargs))
    except BaseException:
        runner.close()
        raise
    return BlockingLun(runner, lun)


def discover(portal: str, **kwargs: Any) -> list[tuple[str, list[str]]]:
    """SendTargets=All, blocking."""
    with _runner() as runner:
        return runner.run(client.discover(portal, **kwargs))
