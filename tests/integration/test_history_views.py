"""A tenant's history and queue read like those of a ComfyUI of its own: ComfyUI's paging over its own entries,
its own names, client fields and whole queue numbers, so whatever it reads back it can post again unchanged."""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import FIXTURES
from tests.harness.views import interleave, params

pytestmark = pytest.mark.comfy
PORTRAIT = FIXTURES / "media" / "portrait_astronaut_256.png"


@pytest.fixture(scope="module")
def interleaved(tenant_a, tenant_b) -> list[str]:
    """b, a, b, a, b, a: tenant B's three prompt ids, in the order they ran, each followed by A's."""
    return interleave(tenant_b, tenant_a, (11, 12, 13))


def history_ids(client, **query) -> list[str]:
    response = client.get("/history", params=query)
    assert response.status_code == 200, response.text
    return list(response.json())


def test_history_lists_only_own_entries_in_comfyuis_order(tenant_b, interleaved):
    everything = history_ids(tenant_b)
    assert [pid for pid in everything if pid in interleaved] == interleaved
    assert everything[-3:] == interleaved  # A's prompts ran in between, and are not there


@pytest.mark.parametrize(("query", "expected"), [
    ({"max_items": 2}, slice(-2, None)),  # no offset: the newest max_items
    ({"max_items": 1, "offset": -1}, slice(-1, None)),  # a negative offset as an absent one
    ({"max_items": 2, "offset": 0}, slice(0, 2)),  # offset counts from the oldest
    ({"offset": 1}, slice(1, None)),
    ({"max_items": 1, "offset": 1}, slice(1, 2)),
    ({"max_items": 0}, slice(0, 0)),
])
def test_history_pages_after_filtering_with_comfyuis_semantics(tenant_b, interleaved, query, expected):
    everything = history_ids(tenant_b)
    assert history_ids(tenant_b, **query) == everything[expected]


def test_a_page_past_the_end_is_empty_and_a_large_one_is_everything(tenant_b, interleaved):
    everything = history_ids(tenant_b)
    assert history_ids(tenant_b, offset=len(everything)) == []
    assert history_ids(tenant_b, max_items=len(everything) + 50) == everything


def test_another_tenants_prompt_reads_like_an_unknown_one(tenant_a, tenant_b, interleaved):
    for pid in (interleaved[0], str(uuid.uuid4())):
        response = tenant_a.get(f"/history/{pid}")
        assert response.status_code == 200 and response.json() == {}
    assert list(tenant_b.get(f"/history/{interleaved[0]}").json()) == [interleaved[0]]


def test_the_operator_still_reads_comfyuis_whole_history(operator, tenant_a, tenant_b, interleaved):
    everything = history_ids(operator)
    assert set(interleaved) <= set(everything)
    assert len(everything) > len(history_ids(tenant_b))


def load_save(image: str, prefix: str) -> dict:
    return {"1": {"class_type": "LoadImage", "inputs": {"image": image}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}}}


@pytest.fixture(scope="module")
def uploaded(tenant_a) -> str:
    name = f"reread-{uuid.uuid4().hex[:6]}.png"
    response = tenant_a.upload_image(PORTRAIT, name=name, subfolder="faces")
    assert response.status_code == 200, response.text
    return f"faces/{name}"


def test_history_shows_the_workflow_and_client_fields_as_the_tenant_posted_them(tenant_a, uploaded):
    workflow = load_save(uploaded, "reread/out")
    entry = tenant_a.run(workflow, client_id="my-client", extra_data={"extra_pnginfo": {"workflow": {"n": 1}}})
    assert entry["status"]["status_str"] == "success"
    _, _, prompt, extra, _ = entry["prompt"]
    assert prompt == workflow
    assert extra["client_id"] == "my-client" and "tenancy" not in extra
    assert extra["extra_pnginfo"] == {"workflow": {"n": 1}}
    assert entry["outputs"]["2"]["images"][0]["subfolder"] == "reread"


def test_a_workflow_read_back_from_history_runs_again_unchanged_on_the_same_files(tenant_a, uploaded):
    first = tenant_a.run(load_save(uploaded, "again/out"))
    assert first["status"]["status_str"] == "success"
    again = tenant_a.run(first["prompt"][2], extra_data=first["prompt"][3])
    assert again["status"]["status_str"] == "success", again["status"]
    assert again["prompt"][2] == first["prompt"][2]
    saved = [entry["outputs"]["2"]["images"][0] for entry in (first, again)]
    images = [tenant_a.get("/view", params=ref) for ref in saved]
    assert all(image.status_code == 200 for image in images)
    assert images[0].content == images[1].content  # the same input file, saved the same way


def test_the_queue_shows_own_prompts_as_posted(operator, tenant_a, tenant_b, uploaded):
    """The operator's long prompt holds the worker, so the tenant's two wait in the queue while it is read."""
    blocker = operator.queue({"9": {"class_type": "TenancyTestSleep", "inputs": {"seconds": 600.0, "tag": "hold"}}})
    workflows = [load_save(uploaded, "queued/out"), load_save(uploaded, "queued/next")]
    pending = [tenant_a.queue(workflow, client_id="mine").json()["prompt_id"] for workflow in workflows]
    try:
        queue = tenant_a.get("/queue").json()
        assert queue["queue_running"] == []  # the operator's prompt is not the tenant's business
        items = sorted(queue["queue_pending"])
        assert [item[1] for item in items] == pending
        assert [item[2] for item in items] == workflows
        for item in items:
            assert len(item) == 5  # as ComfyUI answers: without the sensitive keys
            assert item[3]["client_id"] == "mine" and "tenancy" not in item[3]
        assert tenant_b.get("/queue").json() == {"queue_running": [], "queue_pending": []}
    finally:
        tenant_a.post("/queue", json={"delete": pending})
        operator.post("/interrupt", json={"prompt_id": blocker.json()["prompt_id"]})
    operator.wait_history(blocker.json()["prompt_id"])


def test_queue_numbers_are_whole_in_the_answer_the_queue_and_the_history(operator, tenant_a):
    blocker = operator.queue({"9": {"class_type": "TenancyTestSleep", "inputs": {"seconds": 600.0, "tag": "hold"}}})
    answers = [tenant_a.queue(params(steps)) for steps in (21, 22)]
    try:
        assert all(answer.status_code == 200 for answer in answers), [answer.text for answer in answers]
        numbers = [answer.json()["number"] for answer in answers]
        assert all(type(number) is int for number in numbers) and numbers[0] < numbers[1]
        pending = {item[1]: item[0] for item in tenant_a.get("/queue").json()["queue_pending"]}
        assert [pending[answer.json()["prompt_id"]] for answer in answers] == numbers
    finally:
        operator.post("/interrupt", json={"prompt_id": blocker.json()["prompt_id"]})
    entries = [tenant_a.wait_history(answer.json()["prompt_id"]) for answer in answers]
    assert [entry["prompt"][0] for entry in entries] == numbers
    assert all(type(entry["prompt"][0]) is int for entry in entries)


def test_deleted_entries_leave_the_tenants_history_and_clear_leaves_others(tenant_a, tenant_b, interleaved):
    own = [tenant_a.run(params(steps))["prompt"][1] for steps in (31, 32)]
    assert tenant_a.post("/history", json={"delete": [own[0]]}).status_code == 200
    remaining = history_ids(tenant_a)
    assert own[0] not in remaining and own[1] in remaining
    assert tenant_a.get(f"/history/{own[0]}").json() == {}
    assert tenant_a.post("/history", json={"clear": True}).status_code == 200
    assert history_ids(tenant_a) == []
    assert history_ids(tenant_b)[-3:] == interleaved
    again = tenant_a.run(params(33))["prompt"][1]
    assert history_ids(tenant_a) == [again]
