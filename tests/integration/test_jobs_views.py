"""A tenant's `/api/jobs` (ComfyUI 0.33.0 and later) reads like that of a ComfyUI of its own: only its prompts,
filtered, sorted and paged after filtering with ComfyUI's semantics, by its own names. Skipped where ComfyUI has
no /api/jobs (0.3.75)."""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import FIXTURES
from tests.harness.views import interleave, params

pytestmark = pytest.mark.comfy
PORTRAIT = FIXTURES / "media" / "portrait_astronaut_256.png"
HOLD = {"9": {"class_type": "TenancyTestSleep", "inputs": {"seconds": 600.0, "tag": "hold"}}}


@pytest.fixture(scope="module", autouse=True)
def jobs_route(operator):
    if operator.get("/api/jobs").status_code == 404:
        pytest.skip("this ComfyUI has no /api/jobs")


@pytest.fixture(scope="module")
def interleaved(tenant_a, tenant_b) -> list[str]:
    """b, a, b, a, b, a: tenant B's three prompt ids, in the order they ran, each followed by A's."""
    return interleave(tenant_b, tenant_a, (41, 42, 43))


def jobs(client, **query) -> dict:
    response = client.get("/api/jobs", params=query)
    assert response.status_code == 200, response.text
    return response.json()


def ids(answer: dict) -> list[str]:
    return [job["id"] for job in answer["jobs"]]


def test_jobs_list_only_own_prompts_and_count_only_them(tenant_b, interleaved):
    answer = jobs(tenant_b)
    assert set(interleaved) <= set(ids(answer))
    own = set(ids(answer))
    assert answer["pagination"] == {"offset": 0, "limit": None, "total": len(own), "has_more": False}
    assert ids(jobs(tenant_b, sort_order="asc"))[-3:] == interleaved  # A's ran in between, and are not there


@pytest.mark.parametrize("query", [{"limit": 2}, {"limit": 1, "offset": 1}, {"offset": 2}, {"offset": -3},
                                   {"limit": 2, "sort_order": "asc"}, {"limit": 50, "offset": 1}])
def test_jobs_page_after_filtering_with_comfyuis_semantics(tenant_b, interleaved, query):
    order = {"sort_order": query.get("sort_order", "desc")}
    everything = ids(jobs(tenant_b, **order))
    start = max(query.get("offset", 0), 0)
    expected = everything[start:start + query["limit"]] if "limit" in query else everything[start:]
    answer = jobs(tenant_b, **query)
    assert ids(answer) == expected
    assert answer["pagination"]["total"] == len(everything)
    assert answer["pagination"]["has_more"] == (start + len(expected) < len(everything))


def test_a_wrong_query_is_refused_as_comfyui_refuses_it(tenant_b):
    for query in ({"limit": 0}, {"status": "done"}, {"sort_by": "name"}):
        assert tenant_b.get("/api/jobs", params=query).status_code == 400


def test_one_job_reads_back_by_the_tenants_names_and_anothers_is_not_found(tenant_a, tenant_b, interleaved):
    name = f"job-{uuid.uuid4().hex[:6]}.png"
    assert tenant_a.upload_image(PORTRAIT, name=name, subfolder="jobs").status_code == 200
    workflow = {"1": {"class_type": "LoadImage", "inputs": {"image": f"jobs/{name}"}},
                "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "jobs/out"}}}
    entry = tenant_a.run(workflow, client_id="my-client")
    job = tenant_a.get(f"/api/jobs/{entry['prompt'][1]}")
    assert job.status_code == 200, job.text
    job = job.json()
    assert job["status"] == "completed" and job["workflow"]["prompt"] == workflow
    assert job["workflow"]["extra_data"]["client_id"] == "my-client" and "tenancy" not in job["workflow"]["extra_data"]
    assert job["outputs"]["2"]["images"][0]["subfolder"] == "jobs"
    assert job["preview_output"]["subfolder"] == "jobs"
    assert "tenants/" not in str(job)
    assert tenant_a.get(f"/api/jobs/{interleaved[0]}").status_code == 404
    assert tenant_a.get(f"/api/jobs/{uuid.uuid4()}").status_code == 404
    assert entry["prompt"][1] in ids(jobs(tenant_a, status="completed"))
    assert entry["prompt"][1] not in ids(jobs(tenant_b))


def test_pending_jobs_are_the_tenants_own_queue(operator, tenant_a, tenant_b):
    blocker = operator.queue(HOLD).json()["prompt_id"]
    pending = [tenant_a.queue(params(steps)).json()["prompt_id"] for steps in (51, 52)]
    try:
        answer = jobs(tenant_a, status="pending,in_progress")
        assert sorted(ids(answer)) == sorted(pending) and answer["pagination"]["total"] == 2
        assert all(job["status"] == "pending" for job in answer["jobs"])
        assert jobs(tenant_b, status="pending,in_progress")["jobs"] == []
        one = tenant_a.get(f"/api/jobs/{pending[0]}").json()
        assert one["status"] == "pending" and one["id"] == pending[0]
        assert tenant_b.get(f"/api/jobs/{pending[0]}").status_code == 404
        assert blocker in ids(jobs(operator, status="in_progress"))
    finally:
        tenant_a.post("/queue", json={"delete": pending})
        operator.post("/interrupt", json={"prompt_id": blocker})
    operator.wait_history(blocker)
    assert jobs(tenant_a, status="pending")["jobs"] == []
