"""What a signed-in caller may ask about itself: who it is and what is left of today's quota (`/tenancy/me`), and
its place in the queue (`/tenancy/queue`)."""

from __future__ import annotations

import dataclasses
import time

from aiohttp import web

from ...admission import quota_day
from ...records import Principal
from ...store import StoreUnavailable
from ...usage import usage_row
from ..http import PRINCIPAL_KEY, STALE
from ..services import GuardServices
from ..surfaces.queue import running_of
from .admin.queue import live_queue


class MeApi:
    """The caller's own view: identity, plan, today's usage, its queued and running prompts."""

    def __init__(self, services: GuardServices) -> None:
        self.services = services

    async def me(self, request: web.Request) -> web.Response:
        """Who the caller is and what is left today; `stale` while the store cannot be asked (usage then null)."""
        principal: Principal = request[PRINCIPAL_KEY]
        plan = self.services.plan_of(principal)
        usage, stale = None, bool(request.get(STALE))
        if plan is not None:
            today = quota_day(time.time(), plan.timezone)
            try:
                current = await self.services.store.usage(principal.tenant, today)
            except StoreUnavailable:
                stale = True
            else:
                usage = {**usage_row(today, current, plan.daily_seconds), "active": current.active}
        return web.json_response({
            "tenant": principal.tenant, "plan": principal.plan, "role": principal.role,
            "subject": principal.subject, "via": principal.via, "usage": usage, "session_expires": principal.expires,
            "limits": dataclasses.asdict(plan) if plan else None, "stale": stale})

    async def own_queue(self, request: web.Request) -> web.Response:
        """A tenant's own queued and running prompts, with their place in the whole queue."""
        principal: Principal = request[PRINCIPAL_KEY]
        own = None if principal.is_admin else await running_of(self.services, principal.tenant)  # cluster: anywhere
        running, pending = live_queue(self.services, own)

        def mine(item: dict) -> bool:
            return principal.is_admin or item["tenant"] == principal.tenant

        keep = ("prompt_id", "state", "position", "number", "admitted", "started")
        return web.json_response({
            "running": [{k: i.get(k) for k in keep} for i in running if mine(i)],
            "pending": [{k: i.get(k) for k in keep} for i in pending if mine(i)],
            "queue_length": len(pending), "running_count": len(running)})

