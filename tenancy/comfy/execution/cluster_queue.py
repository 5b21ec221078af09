"""The cluster queue inside ComfyUI (`cluster.enabled`): ComfyUI's prompt queue object is replaced, before its
worker thread starts, by one backed by the shared Redis queue (`tenancy.store.cluster_queue`).

`put` (any instance's /prompt, after admission) sends the prompt to the cluster; `get` (ComfyUI's worker, only when
it is idle) takes the next prompt in global fair order, one at a time. While it runs, a heartbeat thread renews its
lease; the worker's start, completion and settlement are fenced by the attempt it was handed. A reaper on every
instance takes back the prompts of lost workers: redelivered if they never started, else failed once
(`worker_lost`) and settled by the reaper. ComfyUI's flags and running set stay local; the history a worker
writes is also recorded in the one every instance reads (`cluster_history.py`); what the instance shows of the queue
is a listing read every poll_s in a thread (`cluster_view.py`)."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import logging
import sys
import threading
import time
from collections import deque
from typing import TYPE_CHECKING

from ...affinity import bound_units, hand_out, held_models
from ...cluster import Carried, carried, fair_units, lost_charge, lost_entry, lost_error, running_cap
from ...read_back import owner_in
from ...store import StoreUnavailable
from ...store.cluster_queue import ClusterQueue
from ...workflow import ADMIN_NAMESPACE
from .cluster_secrets import ExtraSealer
from .cluster_view import ClusterQueueView, QueueListing

if TYPE_CHECKING:
    from ..services import GuardServices

log = logging.getLogger("tenancy")
COMPLETE_RETRY_S = 0.5


class ClusterLink:
    """This instance's part in the cluster: what it hands to the queue, what its worker holds, its heartbeat."""

    def __init__(self, services: GuardServices, queue: ClusterQueue) -> None:
        self.services = services
        self.queue = queue
        self.settings = services.settings.cluster
        self.holding: tuple[str, int] | None = None  # (prompt id, attempt) the worker runs now
        self.fenced = threading.Event()  # the held attempt was taken over: its result is dropped
        self.unreachable = False
        self.sealer = ExtraSealer.of(services.settings)  # API-node tokens travel sealed, opened by the claimer
        self.record_history = None  # cluster_history.install: records a counted result in the shared history
        self.recent: deque[tuple[str, ...]] = deque(maxlen=8)  # the models of the prompts it claimed (affinity)

    # -- accepting ------------------------------------------------------------------------------------------
    def enqueue(self, item) -> None:
        """A prompt the guard admitted here goes to the cluster; from now on its worker accounts for it."""
        prompt_id = item[1]
        accounting, settings = self.services.accounting, self.services.settings
        running = accounting.prompts.pop(prompt_id, None)  # before: this instance's own worker may adopt it at once
        accounting.numbers.pop(prompt_id, None)
        plan = settings.plans.get(running.plan) if running and running.plan else None
        tenant = running.tenant if running and running.tenant else ADMIN_NAMESPACE
        weight = plan.weight if plan else settings.admin_weight
        cap = running_cap(plan.max_running, plan.max_concurrent) if plan else 0
        cost = running.cost if running else 1.0
        body = carried(item, running.plan if running else None, running.admitted if running else time.time(),
                       self.sealer.seal(prompt_id, item))
        try:
            self.queue.enqueue(prompt_id, tenant, fair_units(cost, weight), cap, body.dumps(), cost,
                               running.models if running else ())
        except StoreUnavailable:
            if running is not None and running.tenant:  # never queued: its hold is refunded, its id freed
                accounting.outbox.put({"kind": "abandon", "tenant": running.tenant, "prompt_id": prompt_id,
                                       "attempt": running.attempt, "outcome": "store_unavailable"})
            raise

    def cancel(self, prompt_id: str) -> bool:
        """Cancel a queued prompt, wherever it was accepted; its hold is refunded once."""
        cancelled, tenant, refund = self.queue.cancel(prompt_id)
        if refund and tenant != ADMIN_NAMESPACE:
            self.services.accounting.outbox.put({"kind": "settle", "tenant": tenant, "prompt_id": prompt_id,
                                              "actual": 0.0, "outcome": "cancelled", "at": time.time()})
        return cancelled

    # -- the worker -------------------------------------------------------------------------------------------
    def claim(self) -> tuple | None:
        """The next prompt for this idle worker as a ComfyUI queue item, adopted by this instance's accounting."""
        held = held_models(self.recent, self.settings.affinity_recent)
        try:
            claim = self.queue.claim(held)
        except StoreUnavailable as exc:
            if not self.unreachable:  # once per outage: the worker asks every poll_s
                log.error("[tenancy] cluster queue: %s", exc)
            self.unreachable = True
            return None
        self.unreachable = False
        if claim is None:
            return None
        self.fenced.clear()
        self.holding = (claim.prompt_id, claim.attempt)
        self.recent.append(claim.models)  # what this worker is about to load
        metrics = self.services.metrics
        metrics.series(metrics.cluster_claims, hand_out(claim.models, held)).inc()
        body = Carried.loads(claim.payload)
        tenant = None if claim.tenant == ADMIN_NAMESPACE else claim.tenant
        # on the loop, ahead of the execution events the worker is about to send (callbacks run in order)
        self.services.server.loop.call_soon_threadsafe(self._adopt, claim.prompt_id, tenant, body, claim.attempt)
        self.services.inputs.present(tenant)  # its uploads, wherever they were taken, on this disk before it runs
        return body.queue_item(claim.number, claim.prompt_id, self.sealer.open(claim.prompt_id, body))

    def _adopt(self, prompt_id: str, tenant: str | None, body: Carried, attempt: int) -> None:
        from .accounting import Running

        self.services.accounting.prompts[prompt_id] = Running(tenant, body.plan, body.admitted, fence=attempt)
        self.services.owners.remember(prompt_id, tenant or "")

    def started(self, prompt_id: str, attempt: int) -> None:
        """execution_start went out (on the loop): from now on a lost worker fails the prompt."""
        asyncio.get_running_loop().run_in_executor(None, self._start, prompt_id, attempt)

    def _start(self, prompt_id: str, attempt: int) -> None:
        """Record the start, retried while Redis is away (up to the lease, as `finished` does): a start lost in an
        outage would leave the prompt redeliverable, and a worker lost after the outage would have it run twice."""
        give_up = time.monotonic() + self.settings.lease_s
        while True:
            try:
                if not self.queue.start(prompt_id, attempt):
                    self._fence(prompt_id)
                return
            except StoreUnavailable as exc:
                if time.monotonic() > give_up or self.holding != (prompt_id, attempt):
                    log.error("[tenancy] cluster queue: could not record the start of %s: %s", prompt_id, exc)
                    return
                time.sleep(COMPLETE_RETRY_S)

    def holds(self, prompt_id: str) -> bool:
        """The worker still holds this prompt, as far as this instance knows (the queue's fence decides at the
        end: `finished`)."""
        return self.holding is not None and self.holding[0] == prompt_id and not self.fenced.is_set()

    def share_files(self, item, history_result: dict) -> None:
        """Before the worker's result is recorded: the previews and outputs it names are put in the bucket
        (`OutputUploads.share_result`), so that every instance serves them once the entry is seen."""
        owner = owner_in(item[3]) if len(item) > 3 else None
        if owner:
            self.services.uploads.share_result(owner, history_result)

    def finished(self, prompt_id: str, state: str) -> bool:
        """The worker ended the prompt it held: True when its result counts (it still held the attempt)."""
        held, self.holding = self.holding, None
        if held is None or held[0] != prompt_id or self.fenced.is_set():
            return False
        give_up = time.monotonic() + self.settings.lease_s
        while True:  # a result is worth waiting for: Redis may be back within the lease
            try:
                return self.queue.complete(prompt_id, held[1], state)
            except StoreUnavailable as exc:
                if time.monotonic() > give_up:
                    log.error("[tenancy] cluster queue: could not record the end of %s: %s", prompt_id, exc)
                    return False
                time.sleep(COMPLETE_RETRY_S)

    async def may_settle(self, prompt_id: str, attempt: int) -> bool:
        return await asyncio.to_thread(self.queue.may_settle, prompt_id, attempt)

    def _fence(self, prompt_id: str) -> None:
        """This instance no longer holds the prompt (its lease ran out while it was frozen): stop running it."""
        if self.holding is None or self.holding[0] != prompt_id or self.fenced.is_set():
            return
        self.fenced.set()
        log.warning("[tenancy] cluster queue: prompt %s was taken over after this worker's lease ran out: "
                    "interrupting it, its result will be dropped", prompt_id)
        queue = self.services.server.prompt_queue
        if hasattr(queue, "interrupt_if_running"):
            queue.interrupt_if_running(prompt_id)
        else:
            sys.modules["nodes"].interrupt_processing()

    def heartbeats(self) -> None:
        """The heartbeat thread: renews the held prompt's lease (and this instance's liveness) until the end."""
        while True:
            held = self.holding
            try:
                if not self.queue.heartbeat(*(held or ("", 0))) and held is not None and held == self.holding:
                    self._fence(held[0])
            except StoreUnavailable as exc:
                log.error("[tenancy] cluster queue heartbeat: %s", exc)
            time.sleep(self.settings.heartbeat_s)

    # -- the reaper ------------------------------------------------------------------------------------------
    async def reaper(self) -> None:
        """Every reap_s: prompts of lost workers are redelivered or failed; a failed one's quota settles here."""
        while True:
            try:
                for reaped in await asyncio.to_thread(self.queue.reap):
                    self._reaped(reaped)
                    if reaped.payload:
                        await self._end_lost(reaped)
            except StoreUnavailable as exc:
                log.error("[tenancy] cluster reaper: %s", exc)
            await asyncio.sleep(self.settings.reap_s)

    async def _end_lost(self, reaped) -> None:
        """A prompt the reaper failed ends for its client as a failed prompt does on ComfyUI: its history entry
        (status error, the reason), then `execution_error` and the last `executing` to its socket, wherever that is
        held (the relay): a client waiting for the end, by websocket or by polling /history, gets it."""
        body = Carried.loads(reaped.payload)
        error = lost_error(reaped.prompt_id, reaped.action, int(time.time() * 1000))
        if self.record_history is not None:
            item = body.queue_item(reaped.number, reaped.prompt_id)
            await asyncio.to_thread(self.record_history.record, item, lost_entry(item, error))
        sid = body.extra_data.get("client_id")
        if isinstance(sid, str) and sid:
            server = self.services.server
            server.send_sync("execution_error", error, sid)
            server.send_sync("executing", {"node": None, "prompt_id": reaped.prompt_id}, sid)

    def _reaped(self, reaped) -> None:
        services = self.services
        tenant = None if reaped.tenant == ADMIN_NAMESPACE else reaped.tenant
        services.audit.record(tenant=tenant, prompt_id=reaped.prompt_id, decision="cluster_reap", reason=reaped.action)
        if reaped.action == "redeliver":
            log.warning("[tenancy] cluster queue: the worker of %s was lost before it started: redelivered",
                        reaped.prompt_id)
            return
        log.warning("[tenancy] cluster queue: the worker of %s was lost: failed (%s)", reaped.prompt_id,
                    reaped.action)
        services.outcomes.remember(reaped.prompt_id, reaped.action)
        if reaped.settle and tenant:
            charge, outcome = lost_charge(reaped.seconds, reaped.started, services.settings.reap)
            services.accounting.outbox.put({"kind": "settle", "tenant": tenant, "prompt_id": reaped.prompt_id,
                                         "actual": charge, "outcome": outcome, "at": time.time()})


def queue_class(base: type) -> type:
    """ComfyUI's PromptQueue class with its queue in the cluster (built on the class the server uses, so the
    parts that stay local, history, flags, the running set, are ComfyUI's own)."""

    class ClusterPromptQueue(base):
        def __init__(self, server, link: ClusterLink) -> None:
            super().__init__(server)
            self.link = link
            self.listing = QueueListing(link.queue, link.settings.poll_s)  # what the readers here see (no Redis)

        def put(self, item) -> None:
            self.link.enqueue(item)
            self.listing.added(item)  # in this instance's counts and lists at once
            with self.not_empty:
                self.not_empty.notify()  # this instance's idle worker asks at once
            self.server.queue_updated()

        def get(self, timeout=None):
            end = None if timeout is None else time.monotonic() + timeout
            while True:
                item = self.link.claim()
                if item is not None:
                    with self.mutex:
                        number = self.task_counter
                        self.currently_running[number] = copy.deepcopy(item)
                        self.task_counter += 1
                    self.listing.request(then=self.server.queue_updated)  # counted once: no longer queued
                    return item, number
                with self.not_empty:
                    wait = self.link.settings.poll_s if end is None else min(self.link.settings.poll_s,
                                                                              end - time.monotonic())
                    if self.flags or wait <= 0:
                        return None  # ComfyUI's worker looks at its flags (free memory) between prompts
                    self.not_empty.wait(wait)

        def task_done(self, item_id, history_result, status, process_item=None) -> None:
            item = self.currently_running[item_id]
            prompt_id = item[1]
            state = "done" if status is not None and status.status_str == "success" else "error"
            if status is not None and any(m[0] == "execution_interrupted" for m in status.messages or ()):
                state = "interrupted"
            if self.link.holds(prompt_id):  # before the end counts anywhere: a client told its queue is empty
                self.link.share_files(item, history_result)  # finds the entry, from any instance, and its files
                if self.link.record_history is not None:
                    self.link.record_history(item, history_result, status, process_item)
            if self.link.finished(prompt_id, state):
                self.listing.refresh_quietly()  # in this worker thread: ComfyUI's status below counts from the listing
                super().task_done(item_id, history_result, status, process_item)
                return
            with self.mutex:  # taken over while this worker was frozen: its result is dropped
                self.currently_running.pop(item_id, None)
            self.server.queue_updated()

        def _pending(self) -> list:
            """The cluster's queued prompts as queue items, from the listing (at most poll_s old; the guard's
            handlers that delete by it read it anew first, in a thread: `QueueListing.fresh`)."""
            return self.listing.pending()

        def get_current_queue(self):
            with self.mutex:
                running = copy.deepcopy(list(self.currently_running.values()))
            return running, copy.deepcopy(self._pending())

        def get_current_queue_volatile(self):
            with self.mutex:
                running = list(self.currently_running.values())
            return running, self._pending()

        def get_tasks_remaining(self) -> int:
            queued = self.listing.queued()  # the last listing's (none read yet: 0)
            with self.mutex:
                return queued + len(self.currently_running)

        def wipe_queue(self) -> None:
            for item in self._pending():
                self.link.cancel(item[1])
            self.listing.request(then=self.server.queue_updated)

        def delete_queue_item(self, function) -> bool:
            for item in self._pending():
                if function(item) and self.link.cancel(item[1]):
                    self.listing.request(then=self.server.queue_updated)
                    return True
            return False

    return ClusterPromptQueue


def install(services: GuardServices) -> GuardServices:
    """Put the cluster queue in place of ComfyUI's (at plugin import: before ComfyUI starts its worker thread).
    The services that come back read a tenant's queue from the cluster (the queue is read, not fed through
    ComfyUI's queue class); the accounting hands its prompts to the cluster and adopts those it runs."""
    settings = services.settings
    if not settings.cluster.enabled:
        return services
    queue = ClusterQueue(settings.store, services.accounting.instance, lease_s=settings.cluster.lease_s,
                         max_redeliveries=settings.cluster.max_redeliveries, timeout_s=settings.store_timeout_s,
                         lookahead=settings.cluster.lookahead,
                         affinity=bound_units(settings.cluster.affinity_s))
    link = ClusterLink(services, queue)
    server = services.server
    server.prompt_queue = queue_class(type(server.prompt_queue))(server, link)
    services.accounting.cluster = link
    log.info("[tenancy] cluster queue: this instance (%s) takes its prompts from the shared queue",
             services.accounting.instance)
    return dataclasses.replace(services, queued=ClusterQueueView(server.prompt_queue))


async def start(app, link: ClusterLink, queue) -> None:
    threading.Thread(target=link.heartbeats, name="tenancy-cluster-heartbeat", daemon=True).start()
    threading.Thread(target=queue.listing.run, name="tenancy-cluster-listing", daemon=True).start()
    app["tenancy.cluster_reaper"] = asyncio.get_running_loop().create_task(link.reaper())
