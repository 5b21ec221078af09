"""/tenancy/admin/audit: the audit log searched newest first, by exact fields, a route substring and a start."""

from __future__ import annotations

import asyncio
import datetime as dt

from aiohttp import web

from ....audit import search_audit
from ....refusal import Refusal
from .request import AdminHandlers, operator, whole_number

AUDIT_LIMIT_MAX = 5000
FILTERS = ("tenant", "decision", "reason", "prompt_id", "principal", "ip", "action")


class AuditApi(AdminHandlers):
    async def audit(self, request: web.Request) -> web.Response:
        operator(request)
        query = request.rel_url.query
        limit = whole_number(query.get("limit"), 200, 1, AUDIT_LIMIT_MAX)
        since = _since(query.get("since"))
        filters = {name: query[name] for name in FILTERS if query.get(name)}
        route = query.get("route") or ""
        entries, scanned = await asyncio.to_thread(self._flushed_search, filters, route, since, limit)
        return web.json_response({"entries": entries, "scanned": scanned, "limit": limit})

    def _flushed_search(self, filters: dict, route: str, since: float | None, limit: int):
        """What this instance recorded until now is on disk before the file is read (its writer is a fraction of
        a second behind)."""
        self.services.audit.flush()
        return search_audit(self.services.audit.path, filters, route, since, limit)


def _since(text: str | None) -> float | None:
    """An epoch number, an ISO date or time (UTC unless it says otherwise), or nothing."""
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        stamp = dt.datetime.fromisoformat(text)
    except ValueError:
        raise Refusal(400, "invalid_request", f"`since` {text!r}: use epoch seconds or an ISO date/time") from None
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.timezone.utc)).timestamp()
