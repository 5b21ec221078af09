"""For whoever runs the server: health (for load balancers), Prometheus metrics, and the route report (every
live route with the class the guard gives it)."""

from __future__ import annotations

import asyncio
import contextlib
import time

from aiohttp import web

from ...admission import quota_day
from ...records import Principal
from ...refusal import Refusal
from ...routes import TABLE, route_class
from ...store import StoreUnavailable
from ..http import PRINCIPAL_KEY
from ..services import GuardServices


class OpsApi:
    """Health, metrics and the route report."""

    def __init__(self, services: GuardServices) -> None:
        self.services = services

    async def health(self, request: web.Request) -> web.Response:
        """ok, or degraded (503) while the store does not answer or writes wait in the outbox for it, or (with
        outputs in a bucket) while the bucket does not answer or uploads wait for it."""
        outbox, uploads = self.services.accounting.outbox, self.services.uploads
        try:
            await self.services.store.ping()
            healthy = not outbox.error and uploads.healthy
        except Exception:  # any store failure is "degraded"; details stay in the log
            healthy = False
        if healthy:
            return web.json_response({"status": "ok"})
        body = {"status": "degraded", "backlog": outbox.backlog}
        if uploads.outbox is not None:
            body["upload_backlog"] = uploads.backlog
        return web.json_response(body, status=503)

    async def metrics(self, request: web.Request) -> web.Response:
        principal: Principal = request[PRINCIPAL_KEY]
        if not principal.is_admin and request.remote not in self.services.settings.metrics_allow:
            raise Refusal(403, "admin_only", "metrics are for operators and the configured scrapers")
        self.services.metrics.outbox_backlog.set(self.services.accounting.outbox.backlog)
        self.services.metrics.output_upload_backlog.set(self.services.uploads.backlog)
        with contextlib.suppress(StoreUnavailable):  # during an outage the other metrics matter most
            await self._sample_quotas()
        await self._sample_cluster()
        return web.Response(body=self.services.metrics.exposition(),
                            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    async def _sample_quotas(self) -> None:
        now = time.time()
        for tenant in await self.services.store.list_tenants():
            plan = self.services.settings.plans.get(tenant.plan)
            if plan is None:
                continue
            usage = await self.services.store.usage(tenant.id, quota_day(now, plan.timezone))
            label = self.services.metrics.tenant_label(tenant.id)
            self.services.metrics.quota_used.labels(label).set(usage.used)
            self.services.metrics.quota_held.labels(label).set(usage.held)

    async def _sample_cluster(self) -> None:
        """The cluster queue's series (`tenancy.cluster_metrics`) from one status read of the queue per scrape."""
        link = self.services.accounting.cluster
        collector = self.services.metrics.cluster
        collector.enabled = link is not None
        if link is None:
            return
        try:
            collector.status = await asyncio.to_thread(link.queue.status)
        except StoreUnavailable:
            collector.status = None  # tenancy_cluster_up 0

    async def route_report(self, request: web.Request) -> web.Response:
        """Every (method, pattern) of the live router with its class; `explicit` false means defaulted."""
        report, seen = [], set()
        for resource in request.app.router.resources():
            for method, pattern in _resource_routes(resource):
                cls, explicit = route_class(method, pattern, self.services.route_overrides)
                if (method, pattern) not in seen:
                    seen.add((method, pattern))
                    report.append({"method": method, "pattern": pattern, "class": cls, "explicit": explicit})
        return web.json_response({"routes": report, "table_size": len(TABLE)})


def _resource_routes(resource):
    app = getattr(resource, "_app", None)
    if app is not None:  # a sub-application (e.g. /internal): its routes carry the prefix already
        for inner in app.router.resources():
            yield from _resource_routes(inner)
        return
    canonical = resource.canonical
    if isinstance(resource, web.StaticResource):
        yield "GET", canonical.rstrip("/") + "/*"
        return
    for route in resource:
        if route.method != "HEAD":
            yield route.method, canonical
