"""The store runner knows which stores have work queued or running (a removed LU's store
is closed only once it has none)."""

from __future__ import annotations

import asyncio
import threading

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
