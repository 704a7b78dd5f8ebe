"""The store runner knows which stores have work queued or running (a removed LU's store
is closed only once it has none)."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable

from pyiscsi.backstore.base import StoreError
from pyiscsi.backstore.memory import MemoryStore
from pyiscsi.backstore.ops import StoreOp, StoreOpKind
from pyiscsi.target.storework import StoreRequest
from pyiscsi.transport.store_runner import StoreRunner


class SlowStore(MemoryStore):
    """A real store (a compiled StoreRequest checks its field's type) whose work waits."""

    def __init__(self) -> None:
        super().__init__(4096)
        self.go = threading.Event()

    def perform(self, op: StoreOp) -> None:
        self.go.wait(5)


def test_uses_counts_queued_and_running_work_per_store() -> None:
    async def main() -> None:
        runner = StoreRunner(asyncio.get_running_loop(), workers=1, max_requests=1)
        busy, idle = SlowStore(), SlowStore()
        done: list[int] = []
        op = StoreOp(StoreOpKind.FLUSH)
        for token in (1, 2):  # one runs, one waits in the queue
            runner.submit(StoreRequest(token, busy, (op,), 0),
                          lambda t, e: done.append(t))
        assert runner.uses(busy) and not runner.uses(idle)
        busy.go.set()
        for _ in range(200):
            if len(done) == 2:
                break
            await asyncio.sleep(0.01)
        assert done == [1, 2] and not runner.uses(busy)
        runner.close()

    asyncio.run(main())


class EventFdStore(MemoryStore):
    """A store with its own asynchronous submission: completions are posted on an eventfd
    by another thread, as librbd does, and reaped on the loop. A real store underneath: a
    compiled StoreRequest checks its field's type."""

    def __init__(self, fail: StoreOpKind | None = None) -> None:
        super().__init__(4096)
        self.event_fd = os.eventfd(0, os.EFD_NONBLOCK)
        self.fail = fail
        self.submitted: list[StoreOpKind] = []
        self.loop_thread = threading.get_ident()
        self._done: list[tuple[Callable[[BaseException | None], None], BaseException | None]]
        self._done = []
        self.reaped_on: set[int] = set()

    @property
    def completion_fd(self) -> int | None:
        return self.event_fd

    def asynchronous(self, op: StoreOp) -> bool:
        return op.kind is not StoreOpKind.CALL

    def submit(self, op: StoreOp, on_done: Callable[[BaseException | None], None]) -> None:
        self.submitted.append(op.kind)
        error = StoreError("boom") if op.kind is self.fail else None

        def complete() -> None:
            self._done.append((on_done, error))
            os.eventfd_write(self.event_fd, 1)

        threading.Timer(0.01, complete).start()

    def reap(self) -> None:
        self.reaped_on.add(threading.get_ident())
        os.eventfd_read(self.event_fd)
        done, self._done = self._done, []
        for on_done, error in done:
            on_done(error)

    def perform(self, op: StoreOp) -> None:
        raise AssertionError("an asynchronous store's ops are submitted, not performed")


def _run_async(store: EventFdStore, ops: tuple[StoreOp, ...]) -> list[tuple[int, object]]:
    async def main() -> list[tuple[int, object]]:
        runner = StoreRunner(asyncio.get_running_loop(), workers=1)
        done: list[tuple[int, object]] = []
        runner.submit(StoreRequest(7, store, ops, 0),
                      lambda t, e: done.append((t, e)))
        for _ in range(300):
            if done:
                break
            await asyncio.sleep(0.01)
        assert not runner.uses(store)
        assert runner.stats.async_completed == 1
        runner.close()
        return done

    return asyncio.run(main())


def test_asynchronous_store_ops_run_in_order_without_a_worker() -> None:
    store = EventFdStore()
    ops = (StoreOp(StoreOpKind.WRITE, 0, 4, b"abcd"), StoreOp(StoreOpKind.FLUSH, 0, 4))
    done = _run_async(store, ops)
    assert done == [(7, None)]
    assert store.submitted == [StoreOpKind.WRITE, StoreOpKind.FLUSH]
    assert store.reaped_on == {threading.get_ident()}  # completions come back on the loop


def test_asynchronous_store_first_failure_ends_the_request() -> None:
    store = EventFdStore(fail=StoreOpKind.WRITE)
    ops = (StoreOp(StoreOpKind.WRITE, 0, 4, b"abcd"), StoreOp(StoreOpKind.FLUSH, 0, 4))
    [(token, error)] = _run_async(store, ops)
    assert token == 7 and isinstance(error, StoreError)
    assert store.submitted == [StoreOpKind.WRITE]  # the flush after it never started


def test_completion_fd_stays_watched_between_requests_until_released() -> None:
    """One add_reader for a store's life, not an add/remove pair per busy spell (each an
    epoll_ctl pair); release() ends the watch before the store closes its fd."""
    store = EventFdStore()
    calls: list[str] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        add, remove = loop.add_reader, loop.remove_reader
        loop.add_reader = lambda fd, cb, *a: (calls.append("add"), add(fd, cb, *a))[1]  # type: ignore[method-assign]
        loop.remove_reader = lambda fd: (calls.append("remove"), remove(fd))[1]  # type: ignore[method-assign]
        runner = StoreRunner(loop, workers=1)

        async def one(token: int) -> None:
            done: list[int] = []
            runner.submit(StoreRequest(token, store, (StoreOp(StoreOpKind.FLUSH, 0, 0),), 0),
                          lambda t, e: done.append(t))
            for _ in range(300):
                if done:
                    return
                await asyncio.sleep(0.01)
            raise AssertionError("no completion")

        await one(1)
        assert not runner.uses(store)
        await one(2)
        assert calls == ["add"]
        runner.release(store)
        assert calls == ["add", "remove"]
        await one(3)  # watched again after a release
        runner.release_all()
        assert calls == ["add", "remove", "add", "remove"]
        runner.close()

    asyncio.run(main())
