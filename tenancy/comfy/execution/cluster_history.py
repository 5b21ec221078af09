"""The history every instance shares, with the cluster queue (`cluster.enabled`): the worker that finished a
prompt records ComfyUI's history entry in Redis, in its owner's history (trimmed per plan), before the queue
records the prompt's end (a client told by any instance that its queue is empty finds the entry) and before
ComfyUI's own task_done makes it visible on that instance; every instance's history surfaces read an owner's
history from there (`SharedHistory`, the cluster's `HistorySource`). ComfyUI's local history goes on as before,
unread by tenants. A prompt the reaper failed gets the reaper's entry: a late result of its worker never replaces
it (the worker writes only where there is no entry; the reaper writes over one).

A Redis failure at the moment of recording loses nothing local: ComfyUI keeps its entry, and the record waits
in memory and is written again (in order, before the next one, and every `reap_s`) once Redis answers."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
from collections import deque
from typing import TYPE_CHECKING

from ...config import Config
from ...owners import Owners, RecentPrompts
from ...read_back import owner_in
from ...shared_history import Recorded, decode, encode, namespace, plan_in, retention
from ...store import StoreUnavailable
from ...store.cluster_history import ClusterHistory

if TYPE_CHECKING:
    from ..services import GuardServices

log = logging.getLogger("tenancy")
UNWRITTEN_MAX = 10_000  # records kept for a retry while Redis is away (the oldest go first past that)


def comfy_entry(item, history_result: dict, status, process_item) -> dict:
    """The history entry ComfyUI's task_done builds from the same arguments: the queue item as it keeps it
    (`process_item`: without the sensitive keys), empty outputs unless the result has them, the status as a dict."""
    prompt = process_item(item) if process_item is not None else item
    return {"prompt": prompt, "outputs": {}, "status": status._asdict() if status is not None else None,
            **history_result}


class HistoryRecorder:
    """Called by the cluster queue's task_done (ComfyUI's worker thread) for a result that counts."""

    def __init__(self, store: ClusterHistory, settings: Config, outcomes: RecentPrompts) -> None:
        self.store = store
        self.settings = settings
        self.outcomes = outcomes
        self.unwritten: deque[tuple] = deque(maxlen=UNWRITTEN_MAX)
        self.lock = threading.Lock()
        self.failing = False

    def __call__(self, item, history_result: dict, status, process_item=None) -> None:
        """The worker's result, written before the queue records the end (a client told its queue is empty finds
        it): unless the prompt has an entry already, the reaper's (it took the prompt over meanwhile)."""
        self.record(item, comfy_entry(item, history_result, status, process_item), first=True)

    def record(self, item, entry: dict, first: bool = False) -> None:
        """One history entry of the prompt of a queue item (ComfyUI's, or the reaper's for a prompt it failed);
        `first`: only if it has none."""
        prompt_id = item[1]
        extra_data = item[3] if len(item) > 3 else None
        try:
            record = encode(Recorded(entry, self.outcomes.get(prompt_id)))
        except (TypeError, ValueError) as exc:
            log.error("[tenancy] cluster history: the entry of %s is not JSON (%s): only this instance has it",
                      prompt_id, exc)
            return
        plan = self.settings.plans.get(plan_in(extra_data) or "")
        with self.lock:
            self.unwritten.append((namespace(owner_in(extra_data)), prompt_id, record, retention(plan), first))
            self._flush()

    def flush(self) -> None:
        with self.lock:
            self._flush()

    def _flush(self) -> None:
        """Write the waiting records, oldest first; stop at the first failure (Redis is away: they wait)."""
        while self.unwritten:
            owner, prompt_id, record, kept, first = self.unwritten[0]
            try:
                self.store.record(owner, prompt_id, record, kept, first)
            except StoreUnavailable as exc:
                if not self.failing:  # once per outage: the records wait, retried every reap_s
                    log.error("[tenancy] cluster history: %s not recorded yet (ComfyUI keeps it on this instance; "
                              "the shared history gets it once Redis answers): %s", prompt_id, exc)
                self.failing = True
                return
            self.unwritten.popleft()
            if self.failing:
                log.warning("[tenancy] cluster history: Redis answers again, waiting records written")
            self.failing = False

    async def retries(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            if self.unwritten:
                await asyncio.to_thread(self.flush)


class SharedHistory:
    """The cluster's `HistorySource`: an owner's history from Redis, whichever instance ran its prompts."""

    def __init__(self, store: ClusterHistory, owners: Owners, outcomes: RecentPrompts) -> None:
        self.store = store
        self.owners = owners
        self.outcomes = outcomes  # the guard's outcomes decided here after the record was written

    async def page(self, owner: str | None, max_items: int | None, offset: int | None) -> dict[str, Recorded]:
        return self._recorded(await asyncio.to_thread(self.store.page, namespace(owner), max_items, offset))

    async def entry(self, owner: str | None, prompt_id: str) -> Recorded | None:
        record = await asyncio.to_thread(self.store.entry, namespace(owner), prompt_id)
        return None if record is None else self._recorded([(prompt_id, record)])[prompt_id]

    async def entries(self, owner: str | None) -> dict[str, Recorded]:
        return self._recorded(await asyncio.to_thread(self.store.everything, namespace(owner)))

    async def ids(self, owner: str | None) -> list[str]:
        return await asyncio.to_thread(self.store.ids, namespace(owner))

    async def forget(self, owner: str | None, prompt_ids: list[str]) -> None:
        await asyncio.to_thread(self.store.forget, namespace(owner), prompt_ids)

    async def find(self, prompt_id: str) -> tuple[str | None, Recorded] | None:
        owner = await self.owners.of_prompt(prompt_id)  # "" an operator's, None unknown
        if owner is None:
            return None
        recorded = await self.entry(owner or None, prompt_id)
        return None if recorded is None else (owner or None, recorded)

    def _recorded(self, rows: list[tuple[str, str]]) -> dict[str, Recorded]:
        found = {}
        for prompt_id, text in rows:
            recorded = decode(text)
            if recorded.outcome is None and prompt_id in self.outcomes:
                recorded = Recorded(recorded.entry, self.outcomes[prompt_id])
            found[prompt_id] = recorded
        return found


def install(services: GuardServices) -> GuardServices:
    """With the cluster queue in place (`cluster_queue.install`): its workers record what they finish, and the
    services read histories from Redis."""
    link = services.accounting.cluster
    if link is None:
        return services
    settings = services.settings
    store = ClusterHistory(settings.store, timeout_s=settings.store_timeout_s)
    recorder = HistoryRecorder(store, settings, services.outcomes)
    link.record_history = recorder
    services.server.app.on_startup.append(lambda app: _start(app, recorder, settings.cluster.reap_s))
    return dataclasses.replace(services, history=SharedHistory(store, services.owners, services.outcomes))


async def _start(app, recorder: HistoryRecorder, every_s: float) -> None:
    app["tenancy.cluster_history"] = asyncio.get_running_loop().create_task(recorder.retries(every_s))
