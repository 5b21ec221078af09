"""A tenant's own history: ComfyUI's paging over its ids, and an index that keeps step with the server's history."""

from __future__ import annotations

import pytest

from tenancy.history_index import HistoryIndex, page

IDS = ["p0", "p1", "p2", "p3", "p4"]


@pytest.mark.parametrize(("max_items", "offset", "expected"), [
    (None, None, IDS),
    (2, None, ["p3", "p4"]),  # no offset: the newest
    (2, -1, ["p3", "p4"]),  # negative: as if absent
    (2, 0, ["p0", "p1"]),
    (None, 3, ["p3", "p4"]),
    (None, -7, IDS),
    (10, None, IDS),
    (2, 4, ["p4"]),
    (2, 5, []),
    (0, None, []),
    (0, 1, ["p1"]),  # ComfyUI checks the count after adding: a page inside the list has one
    (-1, None, []),
])
def test_pages_follow_comfyuis_get_history(max_items, offset, expected):
    assert list(page(IDS, max_items, offset)) == expected


def owner(entry: dict) -> str | None:
    return entry["owner"]


def test_the_index_lists_each_tenants_ids_in_history_order_and_catches_up():
    history = {pid: {"owner": "a" if n % 2 else "b"} for n, pid in enumerate(IDS)}
    index = HistoryIndex()
    assert index.ids("a", history, owner) == ["p1", "p3"]
    history["p9"] = {"owner": "a"}
    history["p5"] = {"owner": None}
    assert index.ids("a", history, owner) == ["p1", "p3", "p9"]
    assert index.ids(None, history, owner) == ["p5"]


def test_deleted_and_evicted_entries_leave_the_index():
    history = {pid: {"owner": "a"} for pid in IDS}
    index = HistoryIndex()
    index.ids("a", history, owner)
    del history["p0"], history["p3"]
    assert index.ids("a", history, owner) == ["p1", "p2", "p4"]
    assert not index.owns("a", "p3", history, owner)


def test_a_wiped_history_is_indexed_afresh():
    index = HistoryIndex()
    index.ids("a", {"p0": {"owner": "a"}}, owner)
    assert index.ids("a", {"p7": {"owner": "a"}}, owner) == ["p7"]


def test_another_tenants_id_is_not_owned():
    history = {"p0": {"owner": "a"}, "p1": {"owner": "b"}}
    index = HistoryIndex()
    assert index.owns("a", "p0", history, owner)
    assert not index.owns("a", "p1", history, owner)
    assert not index.owns("a", "unknown", history, owner)
