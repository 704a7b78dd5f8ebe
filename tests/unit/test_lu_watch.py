"""The RADOS events link of a shared LU, against a fake I/O context (no cluster): what is
applied, what is acknowledged and when, what is ignored, how a delivery ends."""

from __future__ import annotations

import asyncio
from typing import Any

from pyiscsi.backstore.memory import MemoryStore
from pyiscsi.ceph.librados import NotifyResult
from pyiscsi.scsi.lu_events import UnitAttentionEvent, decode_event, encode_event
from pyiscsi.scsi.lun import LogicalUnit
from pyiscsi.scsi.task import Nexus
from pyiscsi.transport.lu_watch import RadosEventLink, events_object

NEXUS = Nexus("iqn.2026-11.org.example:host", 1)


class FakeWatch:
    def __init__(self, handler: Any, log: list[str]) -> None:
        self.handler = handler
        self.log = log
        self.acked_with: list[int] = []
        """Unit attentions pending on the LU when each ack was sent."""
        self.lu: LogicalUnit | None = None

    def ack(self, notify_id: int, payload: bytes = b"") -> None:
        self.log.append(f"ack {notify_id}")
        if self.lu is not None:
            self.acked_with.append(self.lu.attentions.pending(NEXUS))

    def close(self) -> None:
        self.log.append("unwatch")


class FakeCluster:
    def watch_flush(self) -> None:
        pass


class FakeIoCtx:
    def __init__(self, result: NotifyResult | None = None) -> None:
        self.cluster = FakeCluster()
        self.log: list[str] = []
        self.notified: list[bytes] = []
        self.result = result or NotifyResult((), ())
        self.watcher: FakeWatch | None = None

    def write_full(self, oid: str, data: bytes) -> None:
        self.log.append(f"create {oid}")

    def watch(self, oid: str, handler: Any, on_error: Any = None) -> FakeWatch:
        self.watcher = FakeWatch(handler, self.log)
        return self.watcher

    def notify(self, oid: str, payload: bytes, timeout_ms: int) -> NotifyResult:
        self.notified.append(payload)
        return self.result

    def close(self) -> None:
        self.log.append("close")


def make(ioctx: FakeIoCtx, loop: asyncio.AbstractEventLoop,
         flushed: list[int] | None = None) -> tuple[LogicalUnit, RadosEventLink]:
    lu = LogicalUnit(0, MemoryStore(1 << 20), "iqn.2026-11.org.example:t", shared=True)
    lu.attentions.join(NEXUS)
    link = RadosEventLink(lu, ioctx, events_object("img"), loop,  # type: ignore[arg-type]
                          flush=lambda: flushed.append(1) if flushed is not None else None)
    link.start()
    return lu, link


def test_start_creates_watches_and_becomes_the_link() -> None:
    async def go() -> None:
        ioctx = FakeIoCtx()
        lu, link = make(ioctx, asyncio.get_running_loop())
        assert lu.events is link and ioctx.log == ["create pyiscsi.img"]
        link.close()
        assert lu.events is None and ioctx.log[-2:] == ["unwatch", "close"]

    asyncio.run(go())


def test_a_notify_is_applied_on_the_loop_then_acknowledged() -> None:
    async def go() -> None:
        ioctx = FakeIoCtx()
        lu, link = make(ioctx, asyncio.get_running_loop())
        assert ioctx.watcher is not None
        ioctx.watcher.lu = lu
        payload = encode_event(UnitAttentionEvent(0x29, 0x03), "another gateway")
        # as librados would: on another thread
        await asyncio.to_thread(ioctx.watcher.handler, ioctx.watcher, 7, 99, payload)
        await asyncio.sleep(0)
        assert lu.attentions.pending(NEXUS) == 1 and ioctx.log[-1] == "ack 7"
        assert ioctx.watcher.acked_with == [1]  # acknowledged once applied, not before
        assert link.received == 1 and ioctx.notified == []  # never published again
        link.close()

    asyncio.run(go())


def test_own_and_foreign_notifies_are_only_acknowledged() -> None:
    async def go() -> None:
        ioctx = FakeIoCtx()
        lu, link = make(ioctx, asyncio.get_running_loop())
        assert ioctx.watcher is not None
        own = encode_event(UnitAttentionEvent(0x29, 0x03), link.origin)
        for notify_id, payload in ((1, own), (2, b"librbd header update"), (3, b"")):
            ioctx.watcher.handler(ioctx.watcher, notify_id, 5, payload)
        await asyncio.sleep(0)
        assert lu.attentions.pending(NEXUS) == 0 and link.received == 0
        assert [e for e in ioctx.log if e.startswith("ack")] == ["ack 1", "ack 2", "ack 3"]
        link.close()

    asyncio.run(go())


def test_publish_finishes_the_delivery_and_flushes() -> None:
    async def go() -> tuple[bool, str | None, list[bytes], int]:
        ioctx, flushed = FakeIoCtx(), []
        lu, link = make(ioctx, asyncio.get_running_loop(), flushed)
        delivery = lu.attention_everywhere(0x29, 0x03)
        assert delivery is not None and not delivery.done
        for _ in range(100):
            await asyncio.sleep(0.01)
            if delivery.done:
                break
        link.close()
        return delivery.done, delivery.error, ioctx.notified, len(flushed)

    done, error, notified, flushes = asyncio.run(go())
    assert done and error is None and flushes == 1
    (payload,) = notified
    origin, event = decode_event(payload)
    assert event == UnitAttentionEvent(0x29, 0x03) and origin


def test_a_watcher_that_did_not_acknowledge_is_an_error_but_finishes() -> None:
    async def go() -> tuple[bool, str | None]:
        ioctx = FakeIoCtx(NotifyResult((), ((4242, 1),)))
        lu, link = make(ioctx, asyncio.get_running_loop())
        delivery = lu.attention_everywhere(0x29, 0x03)
        assert delivery is not None
        for _ in range(100):
            await asyncio.sleep(0.01)
            if delivery.done:
                break
        link.close()
        return delivery.done, delivery.error

    done, error = asyncio.run(go())
    assert done and error is not None and "did not acknowledge" in error


class FencedTask:
    """What :func:`~pyiscsi.target.tmf.when_ended` needs of a task: its end's waiters."""

    def __init__(self) -> None:
        self.waiters: list[Any] | None = None

    def end(self) -> None:
        waiters, self.waiters = self.waiters or [], None
        for waiter in waiters:
            waiter(self)


def test_a_remote_reset_is_acknowledged_once_the_tasks_it_aborted_have_ended() -> None:
    """The link asks ``on_event`` what the event aborted here; the acknowledgement (which
    lets the other gateway answer its reset) waits until those tasks have ended."""
    async def go() -> None:
        ioctx = FakeIoCtx()
        flushed: list[int] = []
        _, link = make(ioctx, asyncio.get_running_loop(), flushed)
        tasks = [FencedTask(), FencedTask()]
        seen: list[tuple[int, int]] = []

        def on_event(lu: LogicalUnit, event: UnitAttentionEvent) -> list[Any]:
            seen.append((event.asc, event.ascq))
            return list(tasks) if event.asc == 0x29 else []

        link.on_event = on_event
        assert ioctx.watcher is not None
        payload = encode_event(UnitAttentionEvent(0x29, 0x03), "another gateway")
        await asyncio.to_thread(ioctx.watcher.handler, ioctx.watcher, 7, 99, payload)
        await asyncio.sleep(0)
        assert seen == [(0x29, 0x03)] and flushed and "ack 7" not in ioctx.log
        tasks[0].end()
        assert "ack 7" not in ioctx.log
        tasks[1].end()
        assert ioctx.log[-1] == "ack 7"
        grown = encode_event(UnitAttentionEvent(0x2A, 0x09), "another gateway")
        await asyncio.to_thread(ioctx.watcher.handler, ioctx.watcher, 8, 99, grown)
        await asyncio.sleep(0)
        assert ioctx.log[-1] == "ack 8"  # nothing aborted: acknowledged at once
        link.close()

    asyncio.run(go())
