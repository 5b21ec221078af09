"""What the middleware, the surfaces and the plugin's own API work with, built once at install: one frozen,
typed set of collaborators in place of a guard object that every function reached into."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from ..admission import plan_of
from ..audit import AuditLog
from ..config import Config, Plan
from ..history_index import HistoryIndex
from ..identity import Authenticator, TokenSettings, token_settings
from ..metrics import Metrics, TimedStore
from ..owners import Owners, RecentPrompts
from ..queue_index import QueueIndex
from ..records import Principal, RateLimit
from ..refusal import rate_limited
from ..retention import any_retention, days_of
from ..routes import normalise_overrides
from ..store import Store
from .execution.accounting import Accounting, instance_of, outbox_path
from .execution.input_sync import SharedInputs
from .execution.output_retention import OutputRetention
from .execution.output_uploads import OutputUploads
from .history_source import HistorySource, LocalHistory
from .http import AUDITED
from .surfaces.catalogue import NodeCatalogue
from .user_data_sync import SharedUserData


@dataclass(frozen=True)
class GuardServices:
    server: Any  # ComfyUI's PromptServer: its prompt queue, sockets and user manager
    settings: Config
    store: TimedStore
    folders: dict[str, Path]  # input / output / temp roots
    tokens: TokenSettings
    auth: Authenticator
    audit: AuditLog
    metrics: Metrics
    owners: Owners  # prompt and output owners, a cache of the store
    outcomes: RecentPrompts  # prompt_id -> outcome the guard decided (timeout, cancelled)
    history: HistorySource  # an owner's finished prompts: this ComfyUI's history, or the cluster's in Redis
    queued: QueueIndex  # tenant -> its pending and running prompts, fed by the queue's changes
    accounting: Accounting
    uploads: OutputUploads
    inputs: SharedInputs  # tenants' uploads through the bucket, in a cluster
    user_data: SharedUserData  # tenants' ComfyUI user data (workflows, settings) through the bucket, in a cluster
    catalogue: NodeCatalogue
    route_overrides: dict[str, str]
    relay: Any = None  # execution.relay.Relay with the cluster queue: events, interrupts, queue notices
    retention: OutputRetention | None = None  # deletes outputs past their plan's output_days

    @property
    def file_secret(self) -> bytes:
        return b"files:" + self.tokens.signing_key

    def plan_of(self, principal: Principal) -> Plan | None:
        return plan_of(self.settings.plans, principal)

    async def output_days(self, owner: str | None, principal: Principal | None = None) -> float:
        """The output_days of the plan of an output's owner (0: kept): the caller's own plan when it is the owner,
        else the store's record of the owner (asked only when some plan deletes outputs)."""
        plans = self.settings.plans
        if not owner or not any_retention(plans):
            return 0.0
        if principal is not None and principal.tenant == owner:
            return days_of(plans, principal.plan)
        tenant = await self.store.get_tenant(owner)
        return days_of(plans, tenant.plan if tenant else None)

    async def rate_limit(self, limit: RateLimit) -> None:
        """GCRA in the store (shared by every instance); a Refusal with the exact Retry-After when over."""
        wait = await self.store.rate_limit(limit.key, limit.interval_s, limit.burst)
        if wait > 0:
            raise rate_limited(wait)

    async def limit_ip(self, request: web.Request) -> None:
        await self.rate_limit(RateLimit.per_minute(f"ip:{request.remote}", self.settings.ip_requests_per_minute))

    def record(self, request: web.Request, principal: Principal, decision: str, **details) -> None:
        """The request's line in the audit log: one per request, the surface's when it wrote a fuller one."""
        request[AUDITED] = True
        self.audit.record(tenant=principal.tenant, principal=principal.credential or None, ip=request.remote,
                          route=f"{request.method} {request.path}", decision=decision, **details)


def build(server, settings: Config, store: Store, folders: dict[str, Path],
          user_root: Path | None = None) -> GuardServices:
    """Every collaborator, each made once, in the order they need each other."""
    metrics = Metrics(settings.metrics_top_tenants)
    timed = TimedStore(store, metrics)
    tokens = token_settings(settings)
    audit = AuditLog(settings.path(settings.audit.path), settings.audit.max_bytes, settings.audit.backups)
    owners, outcomes = Owners(timed), RecentPrompts()
    uploads = OutputUploads(settings, folders, metrics,
                            outbox_path(settings, instance_of(settings)).with_suffix(".uploads.jsonl"))
    accounting = Accounting(settings, timed, owners=owners, outcomes=outcomes, folders=folders, metrics=metrics,
                            audit=audit, server=server, uploads=uploads)
    def forget(files: list[tuple[str, str, str]]) -> None:  # deleted by the retention sweep
        uploads.forget(files)
        for folder, subfolder, filename in files:
            owners.outputs.pop(f"{folder}/{subfolder}/{filename}", None)

    retention = OutputRetention(settings, timed, folders["output"], uploads.bucket, audit, forget)
    return GuardServices(server=server, settings=settings, store=timed, folders=folders, tokens=tokens,
                         auth=Authenticator(timed, tokens), audit=audit, metrics=metrics, owners=owners,
                         outcomes=outcomes, history=LocalHistory(server, HistoryIndex(), outcomes),
                         queued=QueueIndex(), accounting=accounting,
                         uploads=uploads, inputs=SharedInputs(settings, folders, uploads),
                         user_data=SharedUserData(settings, uploads, user_root),
                         catalogue=NodeCatalogue(settings, folders),
                         route_overrides=normalise_overrides(settings.routes), retention=retention)
