"""Two tenants and an operator on one real ComfyUI: tenant B never sees, fetches, deletes, interrupts or
overwrites anything of tenant A, on any route, its /api twin, the websocket, previews or combos."""

from __future__ import annotations

import json
import os
import re
import uuid

import pytest
import websocket

from tests.conftest import FIXTURES

pytestmark = pytest.mark.comfy
PORTRAIT = FIXTURES / "media" / "portrait_astronaut_256.png"


def load_save_preview(image: str, prefix: str = "iso/out") -> dict:
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": image}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}},
        "3": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }


@pytest.fixture(scope="module")
def a_run(tenant_a):
    """Tenant A uploads a portrait and runs a save + preview workflow, over its own websocket."""
    name = f"a-{uuid.uuid4().hex[:6]}.png"
    uploaded = tenant_a.upload_image(PORTRAIT, name=name)
    assert uploaded.status_code == 200, uploaded.text
    assert uploaded.json() == {"name": name, "subfolder": "", "type": "input"}
    socket = tenant_a.websocket("a1")
    first = json.loads(socket.recv())
    queued = tenant_a.queue(load_save_preview(name), client_id=first["data"]["sid"])
    assert queued.status_code == 200, queued.text
    prompt_id = queued.json()["prompt_id"]
    entry = tenant_a.wait_history(prompt_id)
    messages = []
    socket.settimeout(2)
    try:
        while True:
            message = socket.recv()
            if isinstance(message, str):
                messages.append(json.loads(message))
    except websocket.WebSocketTimeoutException:
        pass
    socket.close()
    saved = entry["outputs"]["2"]["images"][0]
    preview = entry["outputs"]["3"]["images"][0]
    return {"name": name, "prompt_id": prompt_id, "saved": saved, "preview": preview, "sid": first["data"]["sid"],
            "messages": messages, "entry": entry}


def test_tenant_sees_its_own_work_by_its_own_names(tenant_a, a_run):
    assert a_run["entry"]["status"]["status_str"] == "success"
    assert a_run["saved"]["subfolder"] == "iso"  # virtual: tenants/tenant-a/ is the tenant's root
    assert a_run["sid"].startswith("tenant-a:")
    assert tenant_a.get("/view", params=a_run["saved"]).status_code == 200
    assert tenant_a.get("/view", params=a_run["preview"]).status_code == 200
    assert tenant_a.get("/view", params={"filename": a_run["name"], "type": "input"}).status_code == 200
    executed = [m for m in a_run["messages"] if m["type"] == "executed"]
    assert executed and all("tenants/" not in json.dumps(m["data"]["output"]) for m in executed)


@pytest.mark.parametrize("prefix", ["", "/api"])
def test_other_tenant_sees_no_history_of_a(tenant_b, a_run, prefix):
    assert a_run["prompt_id"] not in tenant_b.get(f"{prefix}/history").json()
    assert tenant_b.get(f"{prefix}/history/{a_run['prompt_id']}").json() == {}
    queue = tenant_b.get(f"{prefix}/queue").json()
    assert all(item[1] != a_run["prompt_id"] for item in queue["queue_running"] + queue["queue_pending"])


@pytest.mark.parametrize("prefix", ["", "/api"])
def test_other_tenant_cannot_fetch_a_files(tenant_b, a_run, prefix):
    saved, preview = a_run["saved"], a_run["preview"]
    real = dict(saved, subfolder=f"tenants/tenant-a/{saved['subfolder']}")
    for params in (saved, real, preview, {"filename": a_run["name"], "type": "input"},
                   {"filename": a_run["name"], "subfolder": "../tenant-a", "type": "input"},
                   {"filename": f"{a_run['name']} [input]"}):
        response = tenant_b.get(f"{prefix}/view", params=params)
        assert response.status_code in (403, 404), (params, response.status_code)


def test_other_tenant_cannot_load_a_files_in_a_workflow(tenant_b, a_run):
    saved = a_run["saved"]
    for value in (f"only-{a_run['name']}", f"{saved['subfolder']}/{saved['filename']} [output]",
                  f"{a_run['preview']['filename']} [temp]", "../tenant-a/" + a_run["name"],
                  f"upload://tenant-a/{a_run['name']}"):
        response = tenant_b.queue({"1": {"class_type": "LoadImage", "inputs": {"image": value}},
                                   "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}})
        assert response.status_code in (400, 403), (value, response.text)
        assert "1" in response.json()["node_errors"], value


def test_other_tenant_cannot_delete_or_interrupt_a_prompts(tenant_a, tenant_b, a_run):
    pid = a_run["prompt_id"]
    for path, body in (("/history", {"delete": [pid]}), ("/queue", {"delete": [pid]}),
                       ("/interrupt", {"prompt_id": pid})):
        response = tenant_b.post(path, json=body)
        assert response.status_code == 403 and response.json()["error"]["type"] == "not_owner", path
    assert tenant_b.post("/history", json={"clear": True}).status_code == 200
    assert tenant_b.post("/queue", json={"clear": True}).status_code == 200
    assert pid in tenant_a.get("/history").json()


def test_other_tenant_upload_cannot_escape_or_overwrite(tenant_a, tenant_b, a_run):
    escape = tenant_b.upload_image(PORTRAIT, name="x.png", subfolder="../tenant-a")
    assert escape.status_code == 403
    same_name = tenant_b.upload_image(PORTRAIT, name=a_run["name"], overwrite="true", type="output")
    assert same_name.status_code == 200
    assert same_name.json()["type"] == "input" and same_name.json()["subfolder"] == ""
    assert tenant_a.get("/view", params={"filename": a_run["name"], "type": "input"}).status_code == 200


def test_object_info_combos_list_only_own_files(tenant_a, tenant_b):
    only_a = f"only-a-{uuid.uuid4().hex[:6]}.png"
    assert tenant_a.upload_image(PORTRAIT, name=only_a).status_code == 200
    a_files = tenant_a.get("/object_info/LoadImage").json()["LoadImage"]["input"]["required"]["image"][0]
    b_files = tenant_b.get("/api/object_info").json()["LoadImage"]["input"]["required"]["image"][0]
    assert only_a in a_files
    assert only_a not in b_files
    assert not any(name.startswith("tenants/") for name in a_files + b_files)



def combo_names(entry: list) -> list:
    """The names a combo offers, in either shape: `[[names], {...}]` or `["COMBO", {"options": [names]}]`."""
    return entry[0] if isinstance(entry[0], list) else entry[1]["options"]


def without_names(info: dict, name: str) -> dict:
    """A node's /object_info entry with the names of combo `name` taken out: what must not differ per caller."""
    info = json.loads(json.dumps(info))
    entry = info["input"]["required"][name]
    if isinstance(entry[0], list):
        entry[0] = None
    else:
        entry[1]["options"] = None
    return info


@pytest.mark.parametrize(("node", "name", "source"), [
    ("LoadImage", "image", PORTRAIT), ("LoadAudio", "audio", FIXTURES / "media" / "speech_en_16k.wav")])
def test_object_info_file_combos_keep_comfyuis_shape(operator, tenant_a, tenant_b, node, name, source):
    """Older ComfyUI lists files as `[[names], {...}]`, newer V3 nodes (LoadAudio) as `["COMBO", {"options": ...}]`
    next to `input_order`, upload flags and more: a tenant gets exactly ComfyUI's shape, with its own names in it."""
    own = f"only-a-{uuid.uuid4().hex[:6]}{source.suffix}"
    assert tenant_a.upload_image(source, name=own).status_code == 200
    bare = operator.get(f"/object_info/{node}").json()[node]
    seen_a = tenant_a.get(f"/object_info/{node}").json()[node]
    seen_b = tenant_b.get("/api/object_info").json()[node]
    assert own in combo_names(seen_a["input"]["required"][name])
    assert own not in combo_names(seen_b["input"]["required"][name])
    assert without_names(seen_a, name) == without_names(bare, name) == without_names(seen_b, name)

def test_user_data_is_per_tenant(tenant_a, tenant_b):
    path = "/userdata/workflows%2Fsecret.json"
    assert tenant_a.post(path, data=b'{"a": 1}', headers={"comfy-user": "default"}).status_code == 200
    assert tenant_a.get(path).json() == {"a": 1}
    assert tenant_b.get(path, headers={"comfy-user": "tenant-tenant-a"}).status_code == 404
    assert "secret.json" not in json.dumps(tenant_b.get("/userdata", params={"dir": "workflows"}).json())


def test_websocket_messages_reach_only_the_owner(comfyui, tenant_a, tenant_b, a_run):
    header_b = [f"Authorization: Bearer {comfyui.seeded.keys['b']}"]
    hijack = websocket.create_connection(comfyui.url.replace("http", "ws") + f"/ws?clientId={a_run['sid']}",
                                         header=header_b)
    sid = json.loads(hijack.recv())["data"]["sid"]
    assert sid.startswith("tenant-b:") and sid != a_run["sid"]
    hijack.settimeout(1.5)
    tenant_a.run(load_save_preview(a_run["name"], "iso/again"), client_id=a_run["sid"])
    seen = []
    try:
        while True:
            seen.append(hijack.recv())
    except websocket.WebSocketTimeoutException:
        pass
    hijack.close()
    assert not [m for m in seen if isinstance(m, bytes) or "prompt_id" in m], seen


def test_tenants_cannot_reach_operator_routes(tenant_b):
    for method, path in (("GET", "/internal/logs"), ("GET", "/internal/folder_paths"), ("POST", "/free"),
                         ("POST", "/users"), ("GET", "/internal/files/output"), ("GET", "/tenancy/admin/routes")):
        response = tenant_b.session.request(method, tenant_b.url + path, json={}, timeout=30)
        assert response.status_code == 403, (method, path, response.status_code)
        assert response.json()["error"]["type"] == "admin_only"


def test_dot_dot_into_output_is_refused_naming_node_and_input(tenant_a):
    """ComfyUI 0.3.75 itself accepts this (GHSA-779p)."""
    response = tenant_a.queue({"1": {"class_type": "LoadImage", "inputs": {"image": "../output/x.png"}},
                               "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}})
    assert response.status_code == 403
    body = response.json()
    assert body["error"]["type"] == "path_outside_tenant"
    assert body["node_errors"]["1"]["errors"][0]["extra_info"]["input_name"] == "image"


def test_symlink_in_tenant_folder_pointing_outside_is_refused(comfyui, tenant_a):
    """ComfyUI's /view follows such links (#12285); the guard resolves them."""
    folder = comfyui.base / "input" / "tenants" / "tenant-a"
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / "evil.png"
    if not link.is_symlink():
        os.symlink("/etc/passwd", link)
    response = tenant_a.queue({"1": {"class_type": "LoadImage", "inputs": {"image": "evil.png"}},
                               "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}})
    assert response.status_code == 403 and response.json()["error"]["type"] == "path_outside_tenant"
    assert tenant_a.get("/view", params={"filename": "evil.png", "type": "input"}).status_code == 403


def test_client_fields_are_replaced_by_server_values(tenant_a, operator):
    response = tenant_a.queue({"1": {"class_type": "TenancyTestParams", "inputs": {
        "steps": 20, "cfg": 7.0, "duration": 1.0, "width": 256, "model_name": "base.safetensors"}}},
        number=-1000, front=True, client_id="tenant-b:x")
    assert response.status_code == 200, response.text
    pid = response.json()["prompt_id"]
    entry = tenant_a.wait_history(pid)
    number, _, _, extra = entry["prompt"][:4]
    assert number >= 0
    assert extra["client_id"] != "tenant-b:x" and "tenancy" not in extra  # the tenant reads back its own view
    stored = operator.get(f"/history/{pid}").json()[pid]["prompt"][3]
    assert stored["client_id"] == f"tenant-a:{extra['client_id']}"
    assert stored["tenancy"] == {"tenant": "tenant-a", "plan": "basic"}


def test_forbidden_inputs_are_reset_and_limits_clamped_with_a_notice(tenant_a):
    response = tenant_a.queue({"7": {"class_type": "TenancyTestParams", "inputs": {
        "steps": 150, "cfg": 12.0, "duration": 60.0, "width": 4096, "model_name": "base.safetensors"}}})
    assert response.status_code == 200, response.text
    rewrites = {r["input"]: r for r in response.json()["tenancy"]["rewrites"]}
    assert rewrites["steps"]["after"] == 20 and rewrites["steps"]["reason"] == "forbidden_input"
    assert rewrites["cfg"]["after"] == 7.0
    assert rewrites["duration"]["after"] == 10.0 and rewrites["width"]["after"] == 512
    entry = tenant_a.wait_history(response.json()["prompt_id"])
    assert entry["outputs"]["7"]["text"] == ["steps=20 cfg=7.0 duration=10.0 width=512 model=base.safetensors"]


def test_every_refusal_names_its_reason(tenant_a, anonymous):
    refusals = [anonymous.get("/queue"), tenant_a.post("/free", json={}), tenant_a.post("/prompt", data=b"{"),
                tenant_a.queue({"1": {"class_type": "LoadImage", "inputs": {"image": "/etc/passwd"}}})]
    for response in refusals:
        assert response.status_code >= 400
        assert re.fullmatch(r"[a-z_]+", response.json()["error"]["type"]), response.text


def test_signed_download_urls_serve_only_what_they_name(tenant_a, anonymous, a_run):
    listing = tenant_a.get(f"/tenancy/outputs/{a_run['prompt_id']}").json()
    urls = [f["url"] for f in listing["files"]]
    assert urls
    assert anonymous.get(urls[0]).status_code == 200
    tampered = urls[0][:-3] + ("AAA" if not urls[0].endswith("AAA") else "BBB")
    assert anonymous.get(tampered).status_code == 403


def test_other_tenant_gets_no_signed_urls_for_a(tenant_b, a_run):
    assert tenant_b.get(f"/tenancy/outputs/{a_run['prompt_id']}").status_code == 404
