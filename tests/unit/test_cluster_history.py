"""The history every instance shares, against a real redis-server: each owner's records in the order they finished,
ComfyUI's paging over them alone, retention per plan (newest kept, the aged trimmed), deletes, and a record
written while Redis is away kept and written once it is back."""

from __future__ import annotations

from collections import namedtuple
from pathlib import Path

import pytest
import redis

from tenancy.comfy.execution.cluster_history import HistoryRecorder, comfy_entry
from tenancy.config import Plan, from_mapping
from tenancy.history_index import page, page_bounds
from tenancy.owners import RecentPrompts
from tenancy.shared_history import DAY_MS, Recorded, Retention, decode, encode, namespace, retention
from tenancy.store.cluster_history import ClusterHistory, keys
from tests.harness.redis import RedisServer

pytestmark = pytest.mark.redis
KEEP_ALL = Retention(items=10_000, keep_ms=0)
Status = namedtuple("Status", "status_str completed messages")  # the shape of ComfyUI's ExecutionStatus


@pytest.fixture
def history(redis_server) -> ClusterHistory:
    with redis.Redis.from_url(redis_server.url) as client:
        client.flushdb()
    store = ClusterHistory(redis_server.url)
    yield store
    store.close()


def record(store: ClusterHistory, owner: str, prompt_id: str, kept: Retention = KEEP_ALL) -> int:
    return store.record(owner, prompt_id, encode(Recorded({"prompt": [1, prompt_id], "outputs": {}})), kept)


@pytest.mark.parametrize("count", [0, 1, 5])
@pytest.mark.parametrize(("max_items", "offset"), [(None, None), (2, None), (2, -1), (2, 0), (None, 3), (None, -7),
                                                   (10, None), (2, 4), (2, 5), (0, None), (0, 1), (-1, None)])
def test_page_bounds_are_the_positions_of_comfyuis_page(count, max_items, offset):
    ids = [f"p{i}" for i in range(count)]
    start, stop = page_bounds(count, max_items, offset)
    assert ids[start:stop] == list(page(ids, max_items, offset))


def test_records_list_in_the_order_they_finished_and_page_as_comfyui_pages_them(history):
    ids = [f"a{i}" for i in range(5)]
    for pid in ids:
        record(history, "acme", pid)
        record(history, "other", f"x-{pid}")  # another tenant's, finishing in between
    assert history.ids("acme") == ids
    for max_items, offset in ((None, None), (2, None), (2, 0), (1, 3), (None, 4), (0, None), (3, 9)):
        assert [pid for pid, _ in history.page("acme", max_items, offset)] == list(page(ids, max_items, offset))
    assert [pid for pid, _ in history.everything("acme")] == ids
    assert decode(history.entry("acme", "a2")).entry["prompt"] == [1, "a2"]
    assert history.entry("acme", "x-a2") is None  # another owner's is not in this one's history


def test_a_record_written_again_keeps_its_place(history):
    for pid in ("a", "b", "c"):
        record(history, "acme", pid)
    history.record("acme", "a", encode(Recorded({"again": True}, "timeout")), KEEP_ALL)
    assert history.ids("acme") == ["a", "b", "c"]
    assert decode(history.entry("acme", "a")) == Recorded({"again": True}, "timeout")


def test_a_workers_record_never_replaces_the_reapers_and_the_reapers_replaces_a_workers(history):
    lost, late = encode(Recorded({"status": "lost"}, "worker_lost")), encode(Recorded({"status": "late"}))
    history.record("acme", "reaped-first", lost, KEEP_ALL)
    history.record("acme", "reaped-first", late, KEEP_ALL, first=True)  # the frozen worker wakes: changes nothing
    history.record("acme", "recorded-first", late, KEEP_ALL, first=True)  # written, then its worker froze
    history.record("acme", "recorded-first", lost, KEEP_ALL)
    assert [decode(history.entry("acme", pid)).outcome for pid in ("reaped-first", "recorded-first")] == \
        ["worker_lost", "worker_lost"]
    assert history.ids("acme") == ["reaped-first", "recorded-first"]


def test_the_newest_history_items_are_kept(history):
    kept = Retention(items=3, keep_ms=0)
    trimmed = [record(history, "acme", f"p{i}", kept) for i in range(5)]
    assert trimmed == [0, 0, 0, 1, 1]
    assert history.ids("acme") == ["p2", "p3", "p4"]
    assert history.entry("acme", "p0") is None
    assert record(history, "acme", "p5", Retention(items=1, keep_ms=0)) == 3  # a plan lowered: trimmed at once
    assert history.ids("acme") == ["p5"]


def test_entries_older_than_history_days_are_trimmed_and_an_idle_history_expires(history, redis_server):
    kept = Retention(items=100, keep_ms=DAY_MS)
    record(history, "acme", "old", kept)
    record(history, "acme", "recent", kept)
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    order, entries = keys("acme")
    now_ms = int(client.zscore(order, "recent"))
    # "old" finished a day and a second ago. Not a millisecond: records within one millisecond are scored one
    # past the newest, so "recent" may lie a few ms ahead of Redis's clock, and "old" would then not be older than
    # a day when "new" is recorded in the same millisecond
    client.zadd(order, {"old": now_ms - DAY_MS - 1000}, xx=True)
    assert record(history, "acme", "new", kept) == 1
    assert history.ids("acme") == ["recent", "new"]
    assert 0 < client.pttl(order) <= DAY_MS and 0 < client.pttl(entries) <= DAY_MS
    record(history, "acme", "newer", KEEP_ALL)  # a plan without an age limit: kept until history_items
    assert client.pttl(order) == -1 and client.pttl(entries) == -1


def test_forget_deletes_only_the_named_records_of_that_owner(history):
    for pid in ("a", "b", "c"):
        record(history, "acme", pid)
        record(history, "other", pid)
    history.forget("acme", ["a", "c"])
    assert history.ids("acme") == ["b"] and history.entry("acme", "a") is None
    assert history.ids("other") == ["a", "b", "c"]


def test_plans_set_retention_and_operators_keep_comfyuis_cap():
    plans = from_mapping({"plans": {"p": {"history_items": 50, "history_days": 1.5}}}, Path("."))
    assert retention(plans.plans["p"]) == Retention(50, int(1.5 * DAY_MS))
    assert retention(None) == Retention(Plan().history_items, 0) and Plan().history_items == 10_000
    assert namespace(None) == "_admin" and namespace("acme") == "acme"


def test_comfy_entry_is_what_comfyuis_task_done_keeps():
    item = (3, "pid", {"1": {}}, {"tenancy": {"tenant": "acme", "plan": "p"}}, ["1"], {"secret": "x"})
    result = {"outputs": {"1": {"images": []}}, "meta": {"1": {}}}
    entry = comfy_entry(item, result, Status("success", True, []), lambda it: it[:5] + it[6:])
    assert entry == {"prompt": item[:5], "outputs": result["outputs"], "meta": result["meta"],
                     "status": {"status_str": "success", "completed": True, "messages": []}}
    assert comfy_entry(item, {}, None, None)["outputs"] == {}


def test_a_record_made_while_redis_is_away_is_written_in_order_once_it_is_back(tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    settings = from_mapping({"plans": {"p": {"history_items": 2}}}, tmp_path)
    store = ClusterHistory(server.url, timeout_s=0.5)
    recorder = HistoryRecorder(store, settings, RecentPrompts())
    outcomes = recorder.outcomes

    def finish(pid: str) -> None:
        item = (1, pid, {}, {"tenancy": {"tenant": "acme", "plan": "p"}}, [], {})
        recorder(item, {"outputs": {}}, Status("success", True, []), lambda it: it[:5])

    try:
        finish("p1")
        server.stop()
        outcomes.remember("p2", "timeout")
        finish("p2")  # Redis is away: kept, in order
        assert [row[1] for row in recorder.unwritten] == ["p2"]
        server.start()  # same port, its AOF: what it had is back
        finish("p3")  # the waiting one first, then this one; the plan keeps two
        assert not recorder.unwritten
        assert store.ids("acme") == ["p2", "p3"]
        assert decode(store.entry("acme", "p2")).outcome == "timeout"
    finally:
        store.close()
        server.stop()
