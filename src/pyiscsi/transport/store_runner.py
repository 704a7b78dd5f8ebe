"""Runs store work off the event loop and feeds each completion back in (tgt's bs_thread and
signalfd, SPDK's completion messages, in asyncio's terms).

Requests come from the sans-IO engines' outboxes. Each runs its operations in order on a
worker thread (``BackingStore.perform``); the completion goes back to the loop with
``call_soon_threadsafe`` and from there to the engine. A store with its own asynchronous
submission (Ceph RBD: ``rbd_aio_*`` and an eventfd) gets its operations submitted from the
loop instead, its completion fd watched with ``add_reader`` from its first request until
:meth:`StoreRunner.release` (before the store closes): no thread hop, no lock. Operations
and payload bytes in flight are bounded; requests past the bound wait their turn, first
come first served.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from ..backstore.base import BackingStore
from ..target.storework import StoreRequest

log = logging.getLogger("pyiscsi.store")

Done = Callable[[int, BaseException | None], None]
"""``done(token, error)``: a request completed (``error``: what it raised, or None)."""


@dataclass(slots=True)
class RunnerStats:
    """What the runner did (read by ``--stats`` and the tests)."""

    submitted: int = 0
    completed: int = 0
    failed: int = 0
    queued_max: int = 0
    in_flight_max: int = 0
    async_completed: int = 0
    """Requests run by a store's own asynchronous submission (librbd aio), no thread."""


class StoreRunner:
    """A bounded pool of store workers shared by every connection of a server."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *, workers: int = 8,
                 max_requests: int = 64, max_bytes: int = 256 << 20) -> None:
        self._loop = loop
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pyiscsi-store")
        self.max_requests = max_requests
        self.max_bytes = max_bytes
        self.in_flight = 0
        self.bytes_in_flight = 0
        self._queue: deque[tuple[StoreRequest, Done]] = deque()
        self._watched: dict[int, int] = {}
        """Completion fds of asynchronous stores being watched, by ``id`` of their store."""
        self._per_store: dict[int, int] = {}
        """Requests submitted and not completed, by ``id`` of their store."""
        self.stats = RunnerStats()

    def submit(self, request: StoreRequest, done: Done) -> None:
        """Run ``request`` as soon as the bounds allow (FIFO behind earlier ones)."""
        self.stats.submitted += 1
        key = id(request.store)
        self._per_store[key] = self._per_store.get(key, 0) + 1
        if self._queue or not self._fits(request):
            self._queue.append((request, done))
            self.stats.queued_max = max(self.stats.queued_max, len(self._queue))
            return
        self._start(request, done)

    def _fits(self, request: StoreRequest) -> bool:
        if not self.in_flight:
            return True  # one request always runs, whatever its size
        return (self.in_flight < self.max_requests
                and self.bytes_in_flight + request.nbytes <= self.max_bytes)

    def _start(self, request: StoreRequest, done: Done) -> None:
        self.in_flight += 1
        self.bytes_in_flight += request.nbytes
        self.stats.in_flight_max = max(self.stats.in_flight_max, self.in_flight)
        store = request.store
        if store.completion_fd is not None and all(map(store.asynchronous, request.ops)):
            self._watch(store)
            self._chain(request, done, 0, None)
            return
        future = self._pool.submit(request.run)
        future.add_done_callback(lambda f: self._threadsafe(request, done, f))

    def _chain(self, request: StoreRequest, done: Done, index: int,
               error: BaseException | None) -> None:
        """Submit op ``index`` of an asynchronous store's request (each after the previous
        completed, in order: a FUA write's flush follows its write); finish on the last or
        on the first failure. Completions come from :meth:`BackingStore.reap`."""
        if error is not None or index == len(request.ops):
            self.stats.async_completed += 1
            self._finished(request, done, error)
            return
        request.store.submit(request.ops[index],
                             lambda err: self._chain(request, done, index + 1, err))

    def _watch(self, store: BackingStore) -> None:
        """Watch ``store``'s completion fd (``add_reader``) until :meth:`release`."""
        key = id(store)
        if key not in self._watched:
            fd = store.completion_fd
            assert fd is not None
            self._loop.add_reader(fd, store.reap)
            self._watched[key] = fd

    def _unwatch(self, key: int) -> None:
        fd = self._watched.pop(key, None)
        if fd is not None:
            self._loop.remove_reader(fd)

    def _threadsafe(self, request: StoreRequest, done: Done,
                    future: Future[BaseException | None]) -> None:
        error = future.exception() or future.result()
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            self._loop.call_soon_threadsafe(self._finished, request, done, error)

    def _finished(self, request: StoreRequest, done: Done, error: BaseException | None) -> None:
        self.in_flight -= 1
        self.bytes_in_flight -= request.nbytes
        self.stats.completed += 1
        key = id(request.store)
        left = self._per_store.get(key, 1) - 1
        if left > 0:
            self._per_store[key] = left
        else:
            # idle: its completion fd stays watched (an idle eventfd never wakes the loop),
            # so the next request costs no epoll_ctl pair; release() ends the watch
            self._per_store.pop(key, None)
        if error is not None:
            self.stats.failed += 1
        try:
            done(request.token, error)
        finally:
            while self._queue and self._fits(self._queue[0][0]):
                self._start(*self._queue.popleft())

    def release(self, store: BackingStore) -> None:
        """Stop watching ``store``'s completion fd: call on the loop, once it is idle
        (:meth:`uses` is False) and before it is closed."""
        self._unwatch(id(store))

    def release_all(self) -> None:
        """Stop watching every completion fd (the server stops; on the loop)."""
        for key in list(self._watched):
            self._unwatch(key)

    def uses(self, store: object) -> bool:
        """Has ``store`` work queued or running (then it must stay open)?"""
        return id(store) in self._per_store

    def close(self) -> None:
        """Wait for every running request (their buffers are in use until then)."""
        self._queue.clear()
        self._pool.shutdown(wait=True)

