"""Three real guarded ComfyUI processes on one redis-server with the cluster queue on: a tenant's prompts run on
whichever worker is idle, and its `/history`, `/history/{id}`, `/api/jobs`, `/queue` and `/tenancy/outputs/{id}`
answer the same from every instance, in its own names; another tenant sees none of it; a delete or clear from one
instance is seen by all; the plan's `history_items` trims the oldest."""

from __future__ import annotations

import pytest

from tenancy.config import DEFAULT_PLANS
from tenancy.history_index import page
from tests.harness.client import ComfyClient
from tests.harness.cluster import JOB, ended, owner_of, running_cluster, sleep
from tests.harness.images import save_image_workflow
from tests.harness.waiting import wait_until

pytestmark = pytest.mark.comfy
PLANS = {**DEFAULT_PLANS, "heavy": {"history_items": 3}}  # tenant-heavy keeps its newest three


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with running_cluster(tmp_path_factory, "history", 3, {"plans": PLANS}) as cluster:
        yield cluster


def clients(cluster, who: str) -> list[ComfyClient]:
    workers, seeded, _ = cluster
    return [ComfyClient(worker.url, seeded.keys[who]) for worker in workers]


def queued(client: ComfyClient, workflow: dict) -> str:
    answer = client.queue(workflow)
    assert answer.status_code == 200, answer.text
    return answer.json()["prompt_id"]


def answers(readers: list[ComfyClient], path: str, **params) -> list:
    """The same request to every instance: each answer's JSON (its keys in order, as sent)."""
    replies = [reader.get(path, params=params) for reader in readers]
    assert all(reply.status_code == 200 for reply in replies), [reply.text for reply in replies]
    return [list(reply.json().items()) if isinstance(reply.json(), dict) else reply.json() for reply in replies]


def same(values: list):
    assert all(value == values[0] for value in values[1:]), values
    return values[0]


@pytest.fixture(scope="module")
def finished(cluster) -> dict:
    """tenant-light's prompts, sent to two instances, ended: three slow ones (one per worker) and two images.
    prompt id -> its job record."""
    _, _, store = cluster
    light = clients(cluster, "light")
    ids = [queued(light[0], sleep(2.0, f"spread{i}")) for i in range(3)]
    ids += [queued(light[1], save_image_workflow("hist/out", 16, 16)) for _ in range(2)]
    return wait_until(lambda: ended(store, ids), what="tenant-light's prompts")


def test_a_tenants_prompts_spread_over_the_workers_and_its_history_is_the_same_from_each(cluster, finished):
    assert {job["state"] for job in finished.values()} == {"done"}
    assert len({job["owner"] for job in finished.values()}) == 3  # every worker ran one
    light = clients(cluster, "light")
    everything = dict(same(answers(light, "/history")))
    assert set(finished) <= set(everything)
    for query in ({"max_items": 2}, {"max_items": 2, "offset": 1}, {"offset": 3}, {"max_items": 0}):
        ids = [pid for pid, _entry in same(answers(light, "/history", **query))]
        assert ids == list(page(list(everything), query.get("max_items"), query.get("offset")))
    for pid in finished:
        assert dict(same(answers(light, f"/history/{pid}"))) == {pid: everything[pid]}


def test_output_refs_read_back_in_the_tenants_names_and_downloads_list_from_any_instance(cluster, finished):
    light = clients(cluster, "light")
    images = list(finished)[3:]
    for pid in images:
        entry = dict(same(answers(light, f"/history/{pid}")))[pid]
        ref = entry["outputs"]["2"]["images"][0]
        assert ref["subfolder"] == "hist" and ref["type"] == "output"
        assert "tenants/" not in str(entry)
        assert entry["prompt"][2]["2"]["inputs"]["filename_prefix"] == "hist/out"  # as posted
        listed = [reader.get(f"/tenancy/outputs/{pid}") for reader in light]
        assert all(reply.status_code == 200 for reply in listed), [reply.text for reply in listed]
        same([[(f["node"], f["kind"], f["filename"]) for f in reply.json()["files"]] for reply in listed])
    heavy = clients(cluster, "heavy")
    assert all(reader.get(f"/tenancy/outputs/{images[0]}").status_code == 404 for reader in heavy)


def test_another_tenant_sees_none_of_it_from_any_instance(cluster, finished):
    heavy = clients(cluster, "heavy")
    for history in answers(heavy, "/history"):
        assert not {pid for pid, _entry in history} & set(finished)
    for pid in finished:
        assert same(answers(heavy, f"/history/{pid}")) == []


def test_jobs_are_the_same_from_every_instance(cluster, finished):
    light = clients(cluster, "light")
    if light[0].get("/api/jobs").status_code == 404:
        pytest.skip("this ComfyUI has no /api/jobs")
    jobs = dict(same(answers(light, "/api/jobs", sort_order="asc")))["jobs"]
    assert {job["id"] for job in jobs} >= set(finished)
    for pid in finished:
        job = dict(same(answers(light, f"/api/jobs/{pid}")))
        assert job["status"] == "completed"
    assert not {job["id"] for job in dict(answers(clients(cluster, "heavy"), "/api/jobs")[0])["jobs"]} & set(finished)


def test_the_queue_shows_a_tenants_running_prompts_from_every_instance(cluster):
    """Three long prompts hold the three workers while every instance is asked; then they are interrupted."""
    workers, seeded, store = cluster
    light, heavy = clients(cluster, "light"), clients(cluster, "heavy")
    ids = [queued(light[2], sleep(600.0, f"hold{i}")) for i in range(3)]
    try:
        wait_until(lambda: all(store.hget(JOB + pid, "started") == "1" for pid in ids), what="three running")
        running = [{item[1] for item in dict(answer)["queue_running"]} for answer in answers(light, "/queue")]
        assert same(running) == set(ids)
        item = next(item for item in dict(answers(light, "/queue")[0])["queue_running"] if item[1] == ids[0])
        assert item[2] == sleep(600.0, "hold0") and "tenancy" not in item[3]  # as posted
        assert all(dict(answer)["queue_running"] == [] for answer in answers(heavy, "/queue"))
        remaining = [dict(answer)["exec_info"]["queue_remaining"] for answer in answers(light, "/prompt")]
        assert same(remaining) == 3  # counted on every instance, not only the one asked
        assert {dict(answer)["exec_info"]["queue_remaining"] for answer in answers(heavy, "/prompt")} == {0}
        own = [{row["prompt_id"] for row in dict(answer)["running"]} for answer in answers(light, "/tenancy/queue")]
        assert same(own) == set(ids)
        if light[0].get("/api/jobs").status_code != 404:
            jobs = [{job["id"] for job in dict(answer)["jobs"]}
                    for answer in answers(light, "/api/jobs", status="in_progress")]
            assert same(jobs) == set(ids)
        # an operator cancels, at an instance that does not run it, the prompt another instance runs
        elsewhere = next(w for w in workers if w is not owner_of(workers, store.hgetall(JOB + ids[0])))
        cancelled = ComfyClient(elsewhere.url, seeded.keys["admin"]).post(f"/tenancy/admin/queue/{ids[0]}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json() == {"prompt_id": ids[0], "tenant": "tenant-light", "state": "running",
                                    "cancelled": True}
        wait_until(lambda: store.hget(JOB + ids[0], "state") == "interrupted", what="the cancelled prompt")
    finally:
        operators = [ComfyClient(worker.url, seeded.keys["admin"]) for worker in workers]
        for pid in ids:  # each instance interrupts only the prompt it runs
            for operator in operators:
                operator.post("/interrupt", json={"prompt_id": pid})
    wait_until(lambda: ended(store, ids), what="the interrupted prompts")
    assert all(dict(answer)["queue_running"] == [] for answer in answers(light, "/queue"))


def test_the_plans_history_items_keep_a_tenants_newest(cluster):
    heavy = clients(cluster, "heavy")
    ids = [heavy[i % 3].run(sleep(0.0, f"kept{i}"))["prompt"][1] for i in range(5)]  # one after another
    assert [pid for pid, _entry in same(answers(heavy, "/history"))] == ids[-3:]  # in the order they finished
    assert same(answers(heavy, f"/history/{ids[0]}")) == []
    light = clients(cluster, "light")
    assert len(same(answers(light, "/history"))) > 3  # another plan, its own retention


def test_a_delete_or_clear_from_one_instance_is_seen_by_every_instance(cluster, finished):
    light, heavy = clients(cluster, "light"), clients(cluster, "heavy")
    ids = [pid for pid, _entry in same(answers(light, "/history"))]
    assert heavy[0].post("/history", json={"delete": [ids[0]]}).status_code == 403  # not its own
    assert light[1].post("/history", json={"delete": [ids[0]]}).status_code == 200
    assert same(answers(light, f"/history/{ids[0]}")) == []
    assert [pid for pid, _entry in same(answers(light, "/history"))] == ids[1:]
    heavy_before = same(answers(heavy, "/history"))
    assert light[2].post("/history", json={"clear": True}).status_code == 200
    assert same(answers(light, "/history")) == []
    assert same(answers(heavy, "/history")) == heavy_before  # another tenant's history stays
