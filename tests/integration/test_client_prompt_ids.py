"""A client's own prompt id on the real ComfyUI: a new UUID is kept end to end, a used one is refused with 409
whoever used it (and without saying who), a refused prompt leaves its id free for the retry."""

from __future__ import annotations

import uuid

import pytest

from tests.harness.client import ComfyClient

pytestmark = pytest.mark.comfy


def params(duration: float) -> dict:
    return {"1": {"class_type": "TenancyTestParams", "inputs": {
        "steps": 20, "cfg": 7.0, "duration": duration, "width": 256, "model_name": "base.safetensors"}}}


def test_a_clients_new_uuid_is_the_prompt_id_in_the_answer_and_the_history(tenant_a):
    chosen = str(uuid.uuid4())
    response = tenant_a.queue(params(1.0), prompt_id=chosen)
    assert response.status_code == 200, response.text
    assert response.json()["prompt_id"] == chosen
    assert tenant_a.wait_history(chosen)["prompt"][1] == chosen


def test_a_used_prompt_id_answers_409_to_its_owner_and_to_anyone_else_alike(tenant_a, tenant_b, operator):
    chosen = str(uuid.uuid4())
    assert tenant_a.queue(params(1.0), prompt_id=chosen).status_code == 200
    again, foreign = tenant_a.queue(params(1.0), prompt_id=chosen), tenant_b.queue(params(1.0), prompt_id=chosen)
    for answer in (again, foreign):
        assert answer.status_code == 409, answer.text
        assert answer.json()["error"]["type"] == "prompt_id_taken"
    assert again.json()["error"] == foreign.json()["error"]
    assert "tenant-a" not in foreign.text
    tenant_a.wait_history(chosen)
    assert operator.get(f"/history/{chosen}").json()[chosen]["prompt"][3]["tenancy"]["tenant"] == "tenant-a"
    assert tenant_b.get(f"/history/{chosen}").json() == {}


def test_a_prompt_refused_for_its_quota_leaves_its_id_free_for_the_retry(comfyui):
    capped = ComfyClient(comfyui.url, comfyui.seeded.keys["quota30"])
    chosen = str(uuid.uuid4())
    refused = capped.queue(params(31.0), prompt_id=chosen)
    assert refused.status_code == 429 and refused.json()["error"]["type"] == "quota_exceeded"
    retried = capped.queue(params(1.0), prompt_id=chosen)  # the same id, now within the quota: decided anew
    assert retried.status_code == 200, retried.text
    assert retried.json()["prompt_id"] == chosen
    capped.wait_history(chosen)


def test_an_operator_may_choose_a_prompt_id_and_it_is_then_taken_for_tenants(operator, tenant_a):
    chosen = str(uuid.uuid4())
    assert operator.queue(params(1.0), prompt_id=chosen).json()["prompt_id"] == chosen
    assert tenant_a.queue(params(1.0), prompt_id=chosen).status_code == 409
    assert operator.queue(params(1.0), prompt_id=chosen).status_code == 409
    operator.wait_history(chosen)


def test_a_prompt_id_that_is_not_a_uuid_is_refused(tenant_a):
    for chosen in ("my-job-1", 42):
        answer = tenant_a.queue(params(1.0), prompt_id=chosen)
        assert answer.status_code == 400 and answer.json()["error"]["type"] == "invalid_prompt_id", answer.text
