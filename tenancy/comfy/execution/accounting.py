"""Admission and settlement around ComfyUI's queue: reserve seconds before a prompt is queued, give it a
fair queue number, interrupt it at its plan's deadline, and settle exactly what it produced.

Decisions come from the pure core (`tenancy.admission`) and the store; this module only wires them to
ComfyUI's request path and execution events. What follows execution (the start, the outputs, the settlement)
reaches the store through the outbox: ComfyUI's loops never wait for the store nor see it fail."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ... import media
from ...admission import (
    EstimateInputs,
    FairQueue,
    estimate_seconds,
    plan_of,
    prompt_id_taken,
    quota_day,
    reap_charge,
    refusal_for,
    settlement,
)
from ...affinity import models_of
from ...audit import AuditLog
from ...config import Config
from ...metrics import Metrics
from ...owners import Owners, RecentPrompts
from ...paths import split_annotation
from ...records import Principal, RateLimit, ReserveRequest
from ...refusal import Refusal
from ...store import Store, StoreUnavailable
from ...store.outbox import Outbox
from ...store.protocol import ABANDONED
from ...workflow import ADMIN_NAMESPACE
from .output_uploads import OutputUploads

log = logging.getLogger("tenancy")
REAP_EVERY_S = 60.0
RETRY_REAP_S = 1.0
MEDIA_FOLDERS = ("output",)


@dataclass
class Running:
    tenant: str | None
    plan: str | None
    admitted: float
    started: float | None = None
    timed_out: bool = False
    watchdog: asyncio.TimerHandle | None = None
    files: list[tuple[str, str, str]] = field(default_factory=list)
    attempt: str = field(default_factory=lambda: uuid.uuid4().hex)  # this admission of the prompt id
    cost: float = 1.0  # seconds reserved: the prompt's fair share
    fence: int | None = None  # the cluster queue's attempt this instance runs (its settlement is fenced by it)
    models: tuple[str, ...] = ()  # the model files it names (tenancy.affinity.models_of): the cluster's affinity


def instance_of(settings: Config) -> str:
    """This server's name in the store's holds: the configured one, else host and port."""
    return settings.instance or f"{socket.gethostname()}:{_comfy_port()}"


def outbox_path(settings: Config, instance: str) -> Path:
    return settings.path(f"outbox/{re.sub(r'[^A-Za-z0-9_.-]', '_', instance)}.jsonl")


class Accounting:
    def __init__(self, settings: Config, store: Store, *, owners: Owners, outcomes: RecentPrompts,
                 folders: dict[str, Path], metrics: Metrics, audit: AuditLog, server, uploads: OutputUploads) -> None:
        self.settings, self.store, self.owners, self.outcomes = settings, store, owners, outcomes
        self.folders, self.metrics, self.audit, self.server, self.uploads = folders, metrics, audit, server, uploads
        self.fair = FairQueue()
        self.numbers: dict[str, int] = {}
        self.prompts: dict[str, Running] = {}
        self.instance = instance_of(settings)
        self.outbox = Outbox(outbox_path(settings, self.instance), self._apply)
        self.cluster = None  # the cluster queue's link (execution/cluster_queue.py) when `cluster.enabled`

    # -- before the queue ----------------------------------------------------------------------------------
    async def admit(self, principal: Principal, prompt_id: str, body: dict, catalogue,
                    rate: RateLimit | None = None) -> None:
        """Claim the prompt id for its owner, reserve its estimated seconds (after the tenant's rate limit) and set
        its queue number; raise a Refusal when it may not run (then the prompt id stays free)."""
        settings = self.settings
        if prompt_id in self.prompts or prompt_id in self.owners:  # known here: no need to ask the store
            raise prompt_id_taken()
        cluster = settings.cluster  # the models it names only matter to the cluster's affinity (off: not looked at)
        models = models_of(body["prompt"], catalogue) if cluster.enabled and cluster.affinity_s > 0 else ()
        if principal.is_admin:
            if not await self.store.claim_prompt(prompt_id, None, time.time()):
                raise prompt_id_taken()
            self.prompts[prompt_id] = Running(principal.tenant, principal.plan, time.time(), models=models)
            self.owners.remember(prompt_id, "")
            if not body.get("front"):
                body["number"] = self._number(ADMIN_NAMESPACE, 1.0, settings.admin_weight, prompt_id)
            return
        plan = plan_of(settings.plans, principal)
        running = self.prompts[prompt_id] = Running(principal.tenant, principal.plan, time.time(), models=models)
        inputs = EstimateInputs(file_seconds=self._file_seconds(body["prompt"]), speaking_rate=settings.speaking_rate,
                                node_table=settings.estimates)
        seconds = running.cost = estimate_seconds(body["prompt"], catalogue, inputs)
        now = time.time()
        request = ReserveRequest(tenant=principal.tenant, prompt_id=prompt_id, seconds=seconds,
                                 limit=plan.daily_seconds, max_active=plan.max_concurrent,
                                 day=quota_day(now, plan.timezone),
                                 deadline=now + settings.hold_timeout_s + plan.max_execution_s, instance=self.instance,
                                 attempt=running.attempt)
        try:
            decision = await self.store.admit(request, rate)
        except StoreUnavailable as exc:
            if settings.on_store_error == "deny":
                self.prompts.pop(prompt_id, None)
                # the reservation may still reach the store (sent before the call gave up): refund it then
                self.outbox.put({"kind": "abandon", "tenant": principal.tenant, "prompt_id": prompt_id,
                                 "attempt": running.attempt})
                raise Refusal(503, "store_unavailable", f"cannot account for this prompt: {exc}", retry_after=5) \
                    from None
            self.metrics.uncharged.inc()
            self.audit.record(tenant=principal.tenant, prompt_id=prompt_id, decision="allow_uncharged",
                              reason="store_unavailable")
        else:
            self.metrics.series(self.metrics.admission, decision.reason).inc()
            if not decision.allowed:
                self.prompts.pop(prompt_id, None)
                raise refusal_for(decision, seconds)
        self.owners.remember(prompt_id, principal.tenant)
        body["number"] = self._number(principal.tenant, seconds, plan.weight, prompt_id)

    def _number(self, tenant: str, cost: float, weight: float, prompt_id: str) -> int:
        number = self.fair.number(tenant, cost, weight)
        self.numbers[prompt_id] = number
        return number

    def _file_seconds(self, prompt: dict):
        folders = self.folders

        def seconds(node_id: str, input_name: str) -> float | None:
            value = prompt.get(node_id, {}).get("inputs", {}).get(input_name)
            if not isinstance(value, str):
                return None
            name, folder = split_annotation(value)
            path = folders.get(folder or "input", folders["input"]) / name
            return media.duration_seconds(path) if path.is_file() else None

        return seconds

    async def released(self, prompt_id: str, outcome: str) -> None:
        """ComfyUI refused or dropped a queued prompt: its hold is refunded. One it refused ("rejected") was never
        queued: its prompt id is released too, for the client's corrected retry, once the store has the refund
        (an admin's stays claimed)."""
        running = self.prompts.get(prompt_id)
        if outcome != "rejected" or running is None or not running.tenant:
            self._settle(prompt_id, 0.0, outcome)
            return
        del self.prompts[prompt_id]
        self.numbers.pop(prompt_id, None)
        self.owners.forget(prompt_id)
        self.outbox.put({"kind": "abandon", "tenant": running.tenant, "prompt_id": prompt_id,
                         "attempt": running.attempt, "outcome": outcome})

    # -- execution events ---------------------------------------------------------------------------------
    def on_event(self, event: str, data: dict, owner: str | None) -> None:
        prompt_id = data.get("prompt_id")
        if event == "executed":
            self._index_outputs(prompt_id, owner, data.get("output"))
        running = self.prompts.get(prompt_id)
        if running is None:
            return
        if event == "execution_start":
            self._started(prompt_id, running)
        elif event == "executed":
            for folder, subfolder, filename in _file_refs(data.get("output")):
                if folder in MEDIA_FOLDERS:
                    running.files.append((folder, subfolder, filename))
        elif event in ("execution_success", "execution_error", "execution_interrupted"):
            if running.watchdog:
                running.watchdog.cancel()
            asyncio.get_running_loop().create_task(self._finished(prompt_id, running, event))

    def _index_outputs(self, prompt_id: str, owner: str | None, output) -> None:
        """Who owns each file a prompt wrote: known here at once, in the store once the outbox applies it."""
        for folder, subfolder, filename in _file_refs(output):
            self.owners.remember_output(folder, subfolder, filename, owner or "")
            self.outbox.put({"kind": "output", "folder": folder, "subfolder": subfolder, "filename": filename,
                             "tenant": owner or None, "prompt_id": prompt_id})

    def _started(self, prompt_id: str, running: Running) -> None:
        running.started = time.time()
        if running.tenant:
            self.outbox.put({"kind": "started", "tenant": running.tenant, "prompt_id": prompt_id,
                             "at": running.started})
        self.fair.started(self.numbers.pop(prompt_id, self.fair.virtual_now))
        if self.cluster is not None and running.fence is not None:
            self.cluster.started(prompt_id, running.fence)
        metrics = self.metrics
        metrics.series(metrics.queue_wait, running.plan or "admin").observe(running.started - running.admitted)
        plan = self.settings.plans.get(running.plan) if running.plan else None
        if plan is not None:
            running.watchdog = asyncio.get_running_loop().call_later(plan.max_execution_s, self._deadline, prompt_id)

    def _deadline(self, prompt_id: str) -> None:
        """Interrupt exactly this prompt, if it is still the one running."""
        running = self.prompts.get(prompt_id)
        queue = self.server.prompt_queue
        if running is None or prompt_id not in [item[1] for item in queue.get_current_queue_volatile()[0]]:
            return
        running.timed_out = True
        self.outcomes.remember(prompt_id, "timeout")
        self.metrics.series(self.metrics.timeouts, running.plan or "admin").inc()
        log.warning("[tenancy] prompt %s of %s ran past its plan's max_execution_s: interrupting it", prompt_id,
                    running.tenant)
        if hasattr(queue, "interrupt_if_running"):
            queue.interrupt_if_running(prompt_id)
        else:
            sys.modules["nodes"].interrupt_processing()

    async def _finished(self, prompt_id: str, running: Running, event: str) -> None:
        elapsed = time.time() - (running.started or time.time())
        self.metrics.series(self.metrics.execution, running.plan or "admin").observe(elapsed)
        outcome, actual = settlement(event, running.timed_out, elapsed, self.settings.charge_failed)
        if actual is None:
            paths = [self.folders[f] / s / n for f, s, n in running.files if media.timed(n)]
            # reading containers is I/O: in a thread, and only when the prompt wrote audio or video
            actual = sum(await asyncio.to_thread(lambda: [media.duration_seconds(p) or 0.0 for p in paths])) \
                if paths else 0.0
        if running.timed_out:
            self.audit.record(tenant=running.tenant, prompt_id=prompt_id, decision="timeout",
                              reason="max_execution_s")
        self._settle(prompt_id, actual, outcome)
        if event == "execution_success":
            self.uploads.completed(running.tenant, running.files)

    def _settle(self, prompt_id: str, actual: float, outcome: str) -> None:
        running = self.prompts.pop(prompt_id, None)
        self.numbers.pop(prompt_id, None)
        tenant = running.tenant if running else self.owners.get(prompt_id)
        if tenant:
            write = {"kind": "settle", "tenant": tenant, "prompt_id": prompt_id, "actual": round(actual, 3),
                     "outcome": outcome, "at": time.time()}
            if running is not None and running.fence is not None:
                write["fence"] = running.fence  # run from the cluster queue: settled only while this attempt holds
            self.outbox.put(write)

    async def _apply(self, write: dict) -> None:
        """One outbox write, in the store (each is idempotent by prompt id: a replay changes nothing twice)."""
        store, kind = self.store, write["kind"]
        if kind == "output":
            await store.index_output(write["folder"], write["subfolder"], write["filename"], write["tenant"],
                                     write["prompt_id"])
        elif kind == "abandon":  # lines an older version wrote carry no attempt: the id was the server's
            await store.abandon(write["tenant"], write["prompt_id"], attempt=write.get("attempt", ""),
                                outcome=write.get("outcome", ABANDONED))
        elif kind == "started":
            await store.mark_started(write["tenant"], write["prompt_id"], write["at"])
        elif kind == "settle":
            if write.get("fence") is not None and self.cluster is not None and \
                    not await self.cluster.may_settle(write["prompt_id"], write["fence"]):
                return  # fenced out: whoever took the prompt over settles it
            settled = await store.settle(write["tenant"], write["prompt_id"], write["actual"], write["outcome"],
                                         now=write["at"])
            if settled is not None:
                self.audit.record(tenant=write["tenant"], prompt_id=write["prompt_id"], decision="settle",
                                  outcome=write["outcome"], seconds=settled.actual, held=settled.seconds)
        else:
            raise ValueError(f"unknown outbox write {kind!r}")

    # -- the reaper -----------------------------------------------------------------------------------------
    async def reap(self, own_instance: bool = False) -> int:
        """Settle holds nobody will settle: this instance's after a restart, and any past its deadline. Run only
        with the outbox drained, so a settlement that is merely late is never taken for a lost one."""
        store = self.store
        holds = await store.instance_holds(self.instance) if own_instance else await store.expired_holds()
        reaped = 0
        for hold in holds:
            if hold.prompt_id in self.prompts:
                continue  # alive here: its own events will settle it
            charge, outcome = reap_charge(hold, self.settings.reap)
            if await store.settle(hold.tenant, hold.prompt_id, charge, outcome) is not None:
                reaped += 1
                self.audit.record(tenant=hold.tenant, prompt_id=hold.prompt_id, decision="settle",
                                  outcome=outcome, seconds=charge, held=hold.seconds)
        return reaped

    async def reaper(self) -> None:
        """First this instance's holds that an earlier process left (after replaying its outbox), then, every
        REAP_EVERY_S, the holds of any instance past their deadline."""
        own_instance = self.cluster is None  # in a cluster, what this instance admitted may run anywhere
        while True:
            await self.outbox.drained()
            try:
                await self.reap(own_instance)
                if not own_instance:
                    await self.store.prune()
            except StoreUnavailable as exc:
                log.error("[tenancy] reaper: %s", exc)
                await asyncio.sleep(RETRY_REAP_S)
                continue
            own_instance = False
            await asyncio.sleep(REAP_EVERY_S)


def _file_refs(output) -> list[tuple[str, str, str]]:
    refs = []
    for items in output.values() if isinstance(output, dict) else ():
        for ref in items if isinstance(items, list) else ():
            if isinstance(ref, dict) and "filename" in ref:
                refs.append((ref.get("type", "output"), ref.get("subfolder", ""), ref["filename"]))
    return refs


def _comfy_port() -> int:
    args = getattr(sys.modules.get("comfy.cli_args"), "args", None)
    return getattr(args, "port", 8188)

