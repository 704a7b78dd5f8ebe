"""Carries a shared logical unit's events between gateways: RADOS watch/notify on one object.

Every gateway exporting an image watches ``pyiscsi.<image>`` in the image's pool (created
empty if missing: librbd owns ``rbd_header.<id>`` and its notify protocol, so we keep out of
it). Publishing an event (:class:`~pyiscsi.scsi.lu_events.EventLink`) is a
``rados_notify2`` of :func:`~pyiscsi.scsi.lu_events.encode_event`'s payload, run on a
thread of its own (it blocks until every watcher acknowledged or ``timeout_ms`` passed); its
end finishes the :class:`~pyiscsi.scsi.lu_events.Delivery` on the loop, then ``flush`` lets
the connections send what waited for it (a task management response).

Watch callbacks arrive on a librados thread; they are handed to the loop with
``call_soon_threadsafe``, where the event is applied (:meth:`LogicalUnit.receive`, never
published again) *before* the notify is acknowledged: once the publisher's notify returns,
every other gateway's sessions will see the unit attention on their next command. A reset's
unit attention also aborts this gateway's tasks on the LU (``on_event``,
:func:`~pyiscsi.target.tmf.after_another_gateway`; a CLEAR TASK SET alike), and the
acknowledgement waits until
their store work in flight has completed: the publisher's reset response comes after it. A
gateway's own notifies come back to its watch too (it watches the object it notifies): it
recognises its ``origin`` and only acknowledges them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from ..backstore.rbd import RbdStore
from ..ceph.errors import CephError
from ..ceph.librados import Cluster, IoCtx, NotifyResult, Watch
from ..scsi.lu_events import Delivery, LuEvent, decode_event, describe, encode_event
from ..scsi.lun import LogicalUnit
from ..target.tmf import when_ended

if TYPE_CHECKING:
    from ..target.catalog import Catalog
    from ..target.task import Task

OnEvent = Callable[[LogicalUnit, LuEvent], "list[Task]"]
"""``on_event(lu, event)`` after another gateway's event was applied: the tasks whose end
the acknowledgement must wait for (a reset aborts this gateway's tasks on the LU)."""


def _nothing_to_wait_for(lu: LogicalUnit, event: LuEvent) -> list[Task]:
    return []

log = logging.getLogger("pyiscsi.gateway")



NOTIFY_TIMEOUT_MS = 5000
"""How long a publish waits for the other gateways' acknowledgements (a gateway that died
without unwatching stays registered until the OSD's watch timeout, 30 s by default: a reset
then waits this long and is logged)."""


def events_object(image: str) -> str:
    """The object a shared image's events go through."""
    return f"pyiscsi.{image}"


class RadosEventLink:
    """:class:`~pyiscsi.scsi.lu_events.EventLink` of one logical unit over RADOS."""

    def __init__(self, lu: LogicalUnit, ioctx: IoCtx, oid: str,
                 loop: asyncio.AbstractEventLoop, flush: Callable[[], None] = lambda: None,
                 *, timeout_ms: int = NOTIFY_TIMEOUT_MS,
                 on_event: OnEvent = _nothing_to_wait_for) -> None:
        self.lu = lu
        self.on_event = on_event
        self.ioctx = ioctx
        self.oid = oid
        self.loop = loop
        self.flush = flush
        """Called on the loop after a delivery finished (the server's ``poke``)."""
        self.timeout_ms = timeout_ms
        self.origin = secrets.token_hex(8)
        """This gateway's name in its payloads (its own notifies come back to it)."""
        self.received = 0
        """Events applied that another gateway raised (status, tests)."""
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pyiscsi-notify")
        self._watch: Watch | None = None

    def start(self) -> None:
        """Create the object if missing, watch it, and become the LU's link. CephError."""
        self.ioctx.write_full(self.oid, b"")  # empty either way: no data lives in it
        self._watch = self.ioctx.watch(self.oid, self._notified, self._lost)
        self.lu.events = self

    # ------------------------------------------------------------------ out

    def publish(self, event: LuEvent) -> Delivery:
        delivery = Delivery(event)
        payload = encode_event(event, self.origin)
        future = self._pool.submit(self.ioctx.notify, self.oid, payload, self.timeout_ms)

        def done(f: Future[NotifyResult]) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                self.loop.call_soon_threadsafe(self._delivered, delivery, f)

        future.add_done_callback(done)
        return delivery

    def _delivered(self, delivery: Delivery, future: Future[NotifyResult]) -> None:
        error: str | None = None
        try:
            result = future.result()
            if result.timeouts:
                error = f"{len(result.timeouts)} watcher(s) of {self.oid} did not acknowledge"
        except CephError as exc:
            error = str(exc)
        if error is not None:
            log.warning("%s for LUN %d may not have reached every gateway: %s",
                        describe(delivery.event), self.lu.number, error)
        delivery.finish(error)
        self.flush()

    # ------------------------------------------------------------------ in

    def _notified(self, watch: Watch, notify_id: int, notifier_id: int,
                  payload: bytes) -> None:
        """On a librados thread: to the loop (acknowledged there, once applied)."""
        try:
            self.loop.call_soon_threadsafe(self._arrived, watch, notify_id, payload)
        except RuntimeError:  # the loop is closed: acknowledge, nobody is served here
            with contextlib.suppress(CephError):
                watch.ack(notify_id)

    def _arrived(self, watch: Watch, notify_id: int, payload: bytes) -> None:
        try:
            origin, event = decode_event(payload)
        except ValueError as exc:
            log.warning("ignoring a notify on %s: %s", self.oid, exc)
        else:
            if origin != self.origin:
                self.lu.receive(event)
                self.received += 1
                log.info("LUN %d: %s from another gateway", self.lu.number,
                         describe(event))
                fenced = self.on_event(self.lu, event)
                self.flush()  # the aborted tasks' window slides
                if fenced:
                    log.info("LUN %d: that aborted %d task(s) here with store work in "
                             "flight; acknowledging once they have ended", self.lu.number,
                             len(fenced))
                    when_ended(fenced, lambda: self._ack(watch, notify_id))
                    return
        self._ack(watch, notify_id)

    def _ack(self, watch: Watch, notify_id: int) -> None:
        try:
            watch.ack(notify_id)
        except CephError as exc:
            log.warning("cannot acknowledge a notify on %s: %s", self.oid, exc)

    def _lost(self, watch: Watch, err: int) -> None:
        """On a librados thread: the watch broke (a disconnection); watch again."""
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self._rewatch, err)

    def _rewatch(self, err: int) -> None:
        log.warning("watch on %s lost (%d): watching again", self.oid, err)
        old, self._watch = self._watch, None
        if old is not None:
            with contextlib.suppress(CephError):
                old.close()
        try:
            self._watch = self.ioctx.watch(self.oid, self._notified, self._lost)
        except CephError as exc:
            log.error("cannot watch %s again: %s", self.oid, exc)

    def close(self) -> None:
        """Stop watching and publishing (queued callbacks are flushed first)."""
        if self.lu.events is self:
            self.lu.events = None
        self._pool.shutdown(wait=True)
        if self._watch is not None:
            with contextlib.suppress(CephError):
                self._watch.close()
            self._watch = None
        with contextlib.suppress(CephError):
            self.ioctx.cluster.watch_flush()
        self.ioctx.close()


def open_link(lu: LogicalUnit, cluster: Cluster, pool: str, image: str,
              loop: asyncio.AbstractEventLoop, flush: Callable[[], None] = lambda: None,
              on_event: OnEvent = _nothing_to_wait_for) -> RadosEventLink:
    """Watch ``pyiscsi.<image>`` in ``pool`` for ``lu`` and become its link. CephError."""
    link = RadosEventLink(lu, cluster.ioctx(pool), events_object(image), loop, flush,
                          on_event=on_event)
    try:
        link.start()
    except BaseException:
        link.ioctx.close()
        raise
    return link


class EventLinks:
    """The links of a server's shared LUs: opened at start and when a LU is added (a reload,
    ``pyiscsi admin add-lun``), closed when it is removed and at the end."""

    def __init__(self, loop: asyncio.AbstractEventLoop,
                 flush: Callable[[], None] = lambda: None,
                 on_event: OnEvent = _nothing_to_wait_for) -> None:
        self.loop = loop
        self.flush = flush
        self.on_event = on_event
        self._links: dict[int, RadosEventLink] = {}
        """By ``id`` of their LU."""

    def attach(self, lu: LogicalUnit) -> None:
        """Open ``lu``'s link if it is shared and its store is an RBD image (CephError, an
        OSError, when it cannot watch). A shared LU on another store (a ``file:`` LUN with
        ``shared``) has none: its unit attentions stay on this gateway."""
        if id(lu) in self._links or not lu.shared:
            return
        store = lu.store
        if isinstance(store, RbdStore):
            self._links[id(lu)] = open_link(lu, store.cluster, store.spec.pool,
                                            store.spec.image, self.loop, self.flush,
                                            self.on_event)
        else:
            log.warning("LUN %d of %s is shared but its store is not in a cluster: its "
                        "unit attentions stay on this gateway", lu.number, lu.target_name)

    def attach_all(self, catalog: Catalog) -> None:
        """Every LU of ``catalog`` (OSError: none stays open)."""
        try:
            for target in catalog.targets.values():
                for lu in target.luns.values():
                    self.attach(lu)
        except BaseException:
            self.close()
            raise

    def detach(self, lu: LogicalUnit) -> None:
        link = self._links.pop(id(lu), None)
        if link is not None:
            link.close()

    def __len__(self) -> int:
        return len(self._links)

    def close(self) -> None:
        for link in self._links.values():
            link.close()
        self._links.clear()
