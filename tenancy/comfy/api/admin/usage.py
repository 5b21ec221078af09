"""/tenancy/admin/usage and /tenancy/admin/ledger: what each tenant used and holds, and the ledger for billing."""

from __future__ import annotations

import dataclasses
import time

from aiohttp import web

from ....admission import quota_day
from ....usage import ledger_csv, parse_day, usage_row
from .request import AdminHandlers, invalid, operator, whole_number

LEDGER_LIMIT_DEFAULT = 500


class UsageApi(AdminHandlers):
    async def usage(self, request: web.Request) -> web.Response:
        operator(request)
        day = request.rel_url.query.get("day") or None
        if day is not None:
            invalid(parse_day, day)
        now = time.time()
        rows = []
        for tenant in await self.services.store.list_tenants():
            plan = self.services.settings.plans.get(tenant.plan)
            today = day or quota_day(now, plan.timezone if plan else "UTC")
            current = await self.services.store.usage(tenant.id, today)
            rows.append({"tenant": tenant.id, "plan": tenant.plan, "status": tenant.status,
                         **usage_row(today, current, plan.daily_seconds if plan else None),
                         "active_prompts": current.active})
        return web.json_response({"usage": rows})

    async def ledger(self, request: web.Request) -> web.StreamResponse:
        operator(request)
        query = request.rel_url.query
        since = invalid(parse_day, query["since"]) if query.get("since") else None
        until = invalid(parse_day, query["until"]) + 86400 if query.get("until") else None
        entries = await self.services.store.ledger(query.get("tenant") or None, since)
        if until is not None:
            entries = [e for e in entries if e.time < until]
        if query.get("format") == "csv":
            return web.Response(text=ledger_csv(entries), content_type="text/csv", charset="utf-8",
                                headers={"Content-Disposition": 'attachment; filename="tenancy-ledger.csv"'})
        limit = whole_number(query.get("limit"), LEDGER_LIMIT_DEFAULT, 1, 100_000)
        newest = list(reversed(entries))[:limit]
        return web.json_response({"entries": [dataclasses.asdict(e) for e in newest],
                                  "total": len(entries), "truncated": len(entries) > limit})
