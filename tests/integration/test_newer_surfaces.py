"""The request-side surfaces a tenant could read other tenants through besides files (issue 17): folder combos in
/object_info and the prompts that use them, websocket messages that name no prompt, the queue summary,
`extra_data`, and routes the guard does not know. Two tenants on one real ComfyUI (0.3.75 and 0.33.0)."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.conftest import FIXTURES
from tests.harness.client import text_messages

pytestmark = pytest.mark.comfy
PORTRAIT = FIXTURES / "media" / "portrait_astronaut_256.png"


def combos(object_info: dict):
    """(class, input, offered names) of every combo in an /object_info answer, in either shape."""
    for class_type, info in object_info.items():
        for section in ("required", "optional"):
            for name, entry in ((info.get("input") or {}).get(section) or {}).items():
                if isinstance(entry, list) and entry and isinstance(entry[0], list):
                    yield class_type, name, entry[0]
                elif isinstance(entry, list) and len(entry) > 1 and isinstance(entry[1], dict) \
                        and isinstance(entry[1].get("options"), list):
                    yield class_type, name, entry[1]["options"]


@pytest.fixture(scope="module")
def folders(tenant_a, tenant_b) -> dict:
    """Each tenant uploads a portrait into a subfolder of its own."""
    names = {"a": f"set-a-{uuid.uuid4().hex[:6]}", "b": f"set-b-{uuid.uuid4().hex[:6]}"}
    for client, key in ((tenant_a, "a"), (tenant_b, "b")):
        response = client.upload_image(PORTRAIT, name="p.png", subfolder=names[key])
        assert response.status_code == 200, response.text
    return names


@pytest.mark.parametrize("path", ["/object_info", "/api/object_info"])
def test_folder_combos_list_only_the_tenants_own_folders(tenant_b, folders, path):
    response = tenant_b.get(path)
    assert response.status_code == 200
    assert "tenant-a" not in response.text and folders["a"] not in response.text  # no other tenant's id or folder
    listing_b = [(cls, name, names) for cls, name, names in combos(response.json()) if folders["b"] in names]
    assert listing_b, "a folder combo offers the tenant's own folder by its own name"
    for cls, name, names in listing_b:
        assert not any(n == "tenants" or str(n).startswith("tenants/") for n in names), (cls, name)
        single = tenant_b.get(f"{path}/{cls}").json()[cls]
        assert folders["b"] in json.dumps(single)
        assert "tenant-a" not in json.dumps(single)


def dataset_workflow(folder: str) -> dict:
    return {"1": {"class_type": "LoadImageDataSetFromFolder", "inputs": {"folder": folder}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "dataset/out"}}}


def test_a_folder_combo_value_means_the_tenants_own_folder(tenant_b, folders):
    entry = tenant_b.run(dataset_workflow(folders["b"]))
    assert entry["status"]["status_str"] == "success", entry["status"]
    images = entry["outputs"]["2"]["images"]
    assert len(images) == 1 and images[0]["subfolder"] == "dataset"
    assert tenant_b.get("/view", params=images[0]).status_code == 200


def test_a_folder_combo_cannot_name_another_tenants_folder(tenant_b, folders):
    for value in (f"tenants/tenant-a/{folders['a']}", f"../tenant-a/{folders['a']}", "tenants", "tenants/tenant-a",
                  "/etc", f"{folders['a']} [input]", "", "../../output"):
        response = tenant_b.queue(dataset_workflow(value))
        assert response.status_code in (400, 403), (value, response.text)
        assert "1" in response.json()["node_errors"], value


def test_extra_data_keeps_only_what_a_client_may_set(tenant_b, operator):
    foreign = str(uuid.uuid4())
    response = tenant_b.queue({"1": {"class_type": "TenancyTestParams", "inputs": {
        "steps": 1, "cfg": 1.0, "duration": 1.0, "width": 64, "model_name": "base.safetensors"}}},
        extra_data={"extra_pnginfo": {"workflow": {"nodes": []}}, "client_id": "tenant-a:x", "prompt_id": foreign,
                    "create_time": 1, "tenancy": {"tenant": "tenant-a"}, "comfy_usage_source": "forged",
                    "anything_else": True})
    assert response.status_code == 200, response.text
    prompt_id = response.json()["prompt_id"]
    extra = tenant_b.wait_history(prompt_id)["prompt"][3]
    assert extra["extra_pnginfo"] == {"workflow": {"nodes": []}}
    assert "tenancy" not in extra and extra["client_id"] != "tenant-a:x"  # the tenant's own view
    stored = operator.get(f"/history/{prompt_id}").json()[prompt_id]["prompt"][3]
    assert stored["tenancy"]["tenant"] == "tenant-b"
    assert stored["client_id"] == f"tenant-b:{extra['client_id']}"
    assert extra.get("create_time") != 1
    for key in ("prompt_id", "comfy_usage_source", "anything_else"):
        assert key not in extra, key




def test_status_shows_a_tenant_only_its_own_queue(tenant_a, tenant_b):
    watcher = tenant_b.websocket("watch")
    try:
        first = json.loads(watcher.recv())
        assert first["type"] == "status"
        queued = tenant_a.queue({"1": {"class_type": "TenancyTestSleep", "inputs": {"seconds": 1.5, "tag": "q"}}})
        assert queued.status_code == 200, queued.text
        prompt_id = queued.json()["prompt_id"]
        assert tenant_b.get("/prompt").json() == {"exec_info": {"queue_remaining": 0}}
        assert tenant_a.get("/prompt").json()["exec_info"]["queue_remaining"] >= 1
        late = tenant_b.websocket("late")
        try:
            assert json.loads(late.recv())["data"]["status"] == {"exec_info": {"queue_remaining": 0}}
        finally:
            late.close()
        tenant_a.wait_history(prompt_id)
        seen = text_messages(watcher, 1.0)
    finally:
        watcher.close()
    statuses = [m for m in seen if m["type"] == "status"]
    assert statuses, "the tenant still gets status messages"
    assert all(m["data"]["status"]["exec_info"]["queue_remaining"] == 0 for m in statuses), statuses
    assert prompt_id not in json.dumps(seen)
    assert {m["type"] for m in seen} <= {"status"}, "nothing about another tenant's work"


def test_routes_the_guard_does_not_know_are_for_operators(tenant_b, operator):
    for method, path in (("POST", "/api/credentials"), ("POST", "/models/download"), ("DELETE", "/api/tasks/x"),
                         ("PUT", "/api/somewhere/new")):
        response = tenant_b.session.request(method, tenant_b.url + path, timeout=30)
        assert response.status_code == 403 and response.json()["error"]["type"] == "admin_only", (method, path)
        assert operator.session.request(method, operator.url + path, timeout=30).status_code != 403


def test_head_requests_are_confined_like_get(tenant_a, tenant_b, folders):
    mine = {"filename": "p.png", "subfolder": folders["b"], "type": "input"}
    theirs = {"filename": "p.png", "subfolder": f"tenants/tenant-a/{folders['a']}", "type": "input"}
    for params in (theirs, dict(theirs, subfolder=f"../tenant-a/{folders['a']}")):
        response = tenant_b.session.head(tenant_b.url + "/api/view", params=params, timeout=30)
        assert response.status_code in (403, 404), (params, response.status_code)
    assert tenant_b.session.head(tenant_b.url + "/view", params=mine, timeout=30).status_code == 200
