"""A /api/jobs query means for a tenant what it means to ComfyUI: the filters, the order, and the page."""

from __future__ import annotations

import pytest

from tenancy.jobs_query import JobsQuery, pagination, parse
from tenancy.refusal import Refusal

STATUSES = ("pending", "in_progress", "completed", "failed", "cancelled")


def test_defaults_are_every_status_newest_first_unpaged():
    assert parse({}, STATUSES) == JobsQuery(None, None, "created_at", "desc", None, 0)


def test_values_are_read_as_comfyui_reads_them():
    query = parse({"status": " Completed, ,failed", "workflow_id": "w", "sort_by": "EXECUTION_DURATION",
                   "sort_order": "ASC", "limit": "3", "offset": "-4"}, STATUSES)
    assert query == JobsQuery(("completed", "failed"), "w", "execution_duration", "asc", 3, 0)


@pytest.mark.parametrize("query", [{"status": "done"}, {"sort_by": "name"}, {"sort_order": "up"}, {"limit": "0"},
                                   {"limit": "x"}, {"offset": "1.5"}])
def test_a_wrong_parameter_is_a_400(query):
    with pytest.raises(Refusal) as refused:
        parse(query, STATUSES)
    assert refused.value.status == 400


def test_pagination_says_whether_more_follow():
    query = parse({"limit": "2", "offset": "3"}, STATUSES)
    assert pagination(query, 2, 6) == {"offset": 3, "limit": 2, "total": 6, "has_more": True}
    assert pagination(query, 2, 5)["has_more"] is False
