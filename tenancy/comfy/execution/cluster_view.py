"""What this instance shows of the cluster queue (`cluster.enabled`), without a Redis round trip on ComfyUI's event
loop or under its queue's mutex.

ComfyUI asks its queue synchronously on the loop (GET /queue, GET /prompt, a socket's first `status`, every
`status` after a change) and sometimes under the queue's mutex; a Redis read there would hold up every request of
every tenant for as long as Redis is slow (up to `store_timeout_s`). So a refresher thread reads the cluster's
queue every poll_s (`ClusterQueue.listing`: the pending prompts, the queued count, every tenant's counts) and the
synchronous readers read only its last listing: at most poll_s (and one read) old, as the cached list always was.
Changes made here are in the listing at once (a prompt queued here until a listing read after it), and a change
that needs its `status` exact asks for a read and sends the status after it (`request`). What is read per request
(a tenant's running prompts anywhere) and what must be fresh before a change (deleting queued prompts) is read in
a thread by the guard's handlers (`ClusterQueueView.running_anywhere`, `QueueListing.fresh`). While Redis does not
answer the listing stays the last one read (with what was queued here since); before the first read, counts are
this instance's."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ...cluster import Carried
from ...read_back import owner_in
from ...store import StoreUnavailable
from ...store.cluster_queue import ClusterQueue
from ...workflow import ADMIN_NAMESPACE

log = logging.getLogger("tenancy")
# How long one caller's count waits for a listing read after its call before it takes the last one: a read takes
# about a millisecond; a Redis that takes longer is slow, and the caller is answered from what was read before.
FRESH_WAIT_S = 1.0


@dataclass(frozen=True)
class Listing:
    began: float  # monotonic time its read began: a change made here before that is in it
    pending: tuple = ()  # queue items, lowest number first
    queued: int = 0
    counts: dict[str, int] = field(default_factory=dict)  # tenant -> queued + running, cluster-wide
    reachable: bool = True


class QueueListing:
    """The last listing of the cluster's queue, kept fresh every poll_s by its own thread (`run`)."""

    def __init__(self, queue: ClusterQueue, poll_s: float) -> None:
        self.queue, self.poll_s = queue, poll_s
        self.current = Listing(0.0)
        self._carried: dict[str, Carried] = {}  # queued prompts' payloads, parsed once (they never change)
        self._added: dict[str, tuple[float, tuple]] = {}  # prompt id -> (when, item): queued here since
        self._adding = threading.Lock()
        self._reading = threading.Lock()  # one read at a time: the newest listing is the one kept
        self._asked = threading.Condition()
        self._wanted = False
        self._then: list[Callable[[], None]] = []

    # -- reading Redis (never on the loop) ---------------------------------------------------------------------
    def refresh(self) -> None:
        """Read the listing now (the refresher; ComfyUI's worker thread; the guard's handlers, in a thread). A read
        that fails keeps the last listing (marked unreachable): a client is told the counts last known, never that
        its queue is empty because Redis did not answer."""
        with self._reading:
            began = time.monotonic()
            try:
                listed = self.queue.listing(frozenset(self._carried))
            except StoreUnavailable as exc:
                if self.current.reachable:  # once per outage: the refresher asks every poll_s
                    log.error("[tenancy] cluster queue: %s", exc)
                self.current = dataclasses.replace(self.current, reachable=False)
                return
            carried = {pid: self._carried.get(pid) or Carried.loads(body) for _n, pid, body in listed.pending}
            self._carried = carried
            items = tuple(carried[pid].queue_item(number, pid) for number, pid, _body in listed.pending)
            counts = {tenant: queued + running for tenant, (queued, running) in listed.counts.items()}
            self.current = Listing(began, items, listed.queued, counts)
            with self._adding:
                self._added = {pid: added for pid, added in self._added.items() if added[0] >= began}

    def refresh_quietly(self) -> None:
        """`refresh` for a thread that must go on whatever Redis answers (the refresher, ComfyUI's worker)."""
        try:
            self.refresh()
        except Exception:  # a reply not understood: the listing stays the last one
            log.exception("[tenancy] cluster queue: reading the queue failed")

    async def fresh(self) -> None:
        """A listing read after this call began, awaited in a thread: before a change made by what it lists."""
        await asyncio.to_thread(self.refresh)

    def request(self, then: Callable[[], None] | None = None) -> None:
        """A read as soon as the refresher can, then `then` (in the refresher's thread): a `status` that follows a
        change and must count it. A `then` already waiting for the next read is not called twice."""
        with self._asked:
            self._wanted = True
            if then is not None and then not in self._then:
                self._then.append(then)
            self._asked.notify()

    async def read_after(self, wait_s: float) -> None:
        """Wait, on the loop and without a thread of its own, until a listing read that began after this call
        has ended (callers at once share one read), or wait_s."""
        loop = asyncio.get_running_loop()
        read = loop.create_future()

        def then() -> None:
            loop.call_soon_threadsafe(lambda: read.done() or read.set_result(None))

        self.request(then=then)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(read, wait_s)

    def run(self) -> None:
        """The refresher thread: a read every poll_s, or at once when one is requested."""
        while True:
            with self._asked:
                if not self._wanted:
                    self._asked.wait(self.poll_s)
                then, self._then, self._wanted = self._then, [], False
            self.refresh_quietly()
            for call in then:
                try:
                    call()
                except Exception:
                    log.exception("[tenancy] cluster queue: after a read")

    # -- what the readers see (no Redis) -----------------------------------------------------------------------
    def added(self, item: tuple) -> None:
        """A prompt this instance just queued: listed here until a listing read after it says where it is."""
        with self._adding:
            self._added[item[1]] = (time.monotonic(), item)

    def _recent(self, listing: Listing) -> list[tuple]:
        listed = {item[1] for item in listing.pending}
        with self._adding:
            return [item for at, item in self._added.values() if at >= listing.began and item[1] not in listed]

    def pending(self) -> list[tuple]:
        listing = self.current
        return [*listing.pending, *self._recent(listing)]

    def queued(self) -> int:
        listing = self.current
        return listing.queued + len(self._recent(listing))

    def remaining(self, owner: str | None) -> int | None:
        """The owner's queued and running prompts cluster-wide; None before the queue was first read."""
        listing = self.current
        if not listing.began:
            return None
        return listing.counts.get(owner or ADMIN_NAMESPACE, 0) + len(_owned(self._recent(listing), owner))


class ClusterQueueView:
    """The guard's per-owner queue index in cluster mode: the cluster's pending prompts (accepted by any instance;
    the listing, at most poll_s old) and the owner's running ones on every instance (read per request, in a
    thread). The queue's own changes do not pass through ComfyUI's queue class here, so the view reads the queue
    instead of being fed; the pending list's cost follows the cluster's queue, the running list's the owner's own."""

    def __init__(self, queue) -> None:
        self.queue = queue  # ComfyUI's queue object, the cluster's (execution.cluster_queue.queue_class)

    async def running_anywhere(self, owner: str | None) -> list:
        """The owner's prompts running on any instance (this instance's alone while Redis cannot be read)."""
        try:
            rows = await asyncio.to_thread(self.queue.link.queue.running, owner or ADMIN_NAMESPACE)
        except StoreUnavailable as exc:
            log.error("[tenancy] cluster queue: %s", exc)
            return _owned(self.queue.get_current_queue_volatile()[0], owner)  # this instance's, as it knows them
        return [Carried.loads(body).queue_item(number, prompt_id) for number, prompt_id, body in rows]

    async def fresh(self) -> None:
        """The listing read anew (in a thread) before a change made by what it lists (deleting queued prompts)."""
        await self.queue.listing.fresh()

    def pending(self, owner: str | None) -> list:
        return sorted(_owned(self.queue.get_current_queue_volatile()[1], owner), key=lambda item: item[0])

    def remaining(self, owner: str | None) -> int:
        """The owner's queued and running prompts on every instance, from the listing (each status message asks,
        per tenant)."""
        count = self.queue.listing.remaining(owner)
        if count is None:
            running, pending = self.queue.get_current_queue_volatile()  # this instance's, as it knows them
            return len(_owned(running, owner)) + len(_owned(pending, owner))
        return count

    async def remaining_now(self, owner: str | None) -> int:
        """`remaining` from a listing read after the call (for one caller's count: a prompt it queued through
        another instance is counted), or the last one when none comes within FRESH_WAIT_S (Redis slow)."""
        await self.queue.listing.read_after(FRESH_WAIT_S)
        return self.remaining(owner)


def _owned(items, owner: str | None) -> list:
    return [item for item in items if (owner_in(item[3]) if len(item) > 3 else None) == owner]
