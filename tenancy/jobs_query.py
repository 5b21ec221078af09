"""A `GET /api/jobs` query read as ComfyUI reads it, so a tenant's jobs are filtered, sorted and paged with
ComfyUI's own meaning: `status` (comma-separated), `workflow_id`, `sort_by` (created_at, execution_duration),
`sort_order` (asc, desc; default desc), `limit` (positive), `offset` (negative counts as 0)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .refusal import Refusal

SORT_FIELDS = ("created_at", "execution_duration")
SORT_ORDERS = ("asc", "desc")


@dataclass(frozen=True)
class JobsQuery:
    statuses: tuple[str, ...] | None  # None: every status
    workflow_id: str | None
    sort_by: str
    sort_order: str
    limit: int | None
    offset: int


def parse(query: Mapping[str, str], known_statuses: Sequence[str]) -> JobsQuery:
    """The query, or a 400 refusal naming the parameter that is wrong."""
    statuses = None
    if query.get("status"):
        statuses = tuple(s.strip().lower() for s in query["status"].split(",") if s.strip())
        unknown = [s for s in statuses if s not in known_statuses]
        if unknown:
            raise Refusal(400, "invalid_query", f"unknown `status` {', '.join(unknown)}; one of: "
                          f"{', '.join(known_statuses)}")
    sort_by, sort_order = query.get("sort_by", SORT_FIELDS[0]).lower(), query.get("sort_order", "desc").lower()
    if sort_by not in SORT_FIELDS:
        raise Refusal(400, "invalid_query", f"`sort_by` is one of: {', '.join(SORT_FIELDS)}")
    if sort_order not in SORT_ORDERS:
        raise Refusal(400, "invalid_query", f"`sort_order` is one of: {', '.join(SORT_ORDERS)}")
    limit = _whole(query, "limit")
    if limit is not None and limit <= 0:
        raise Refusal(400, "invalid_query", "`limit` must be above 0")
    offset = _whole(query, "offset") or 0
    return JobsQuery(statuses, query.get("workflow_id") or None, sort_by, sort_order, limit, max(offset, 0))


def _whole(query: Mapping[str, str], name: str) -> int | None:
    if name not in query:
        return None
    try:
        return int(query[name])
    except (TypeError, ValueError):
        raise Refusal(400, "invalid_query", f"`{name}` must be a whole number") from None


def pagination(query: JobsQuery, shown: int, total: int) -> dict:
    """The answer's `pagination`: where the page starts, its limit, how many matched, and whether more follow."""
    return {"offset": query.offset, "limit": query.limit, "total": total, "has_more": query.offset + shown < total}
