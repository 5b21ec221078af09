"""Isolation where nodes execute: whatever input a node takes a path from, declared as a file or not, tenant A's
prompt never reads, lists or gets back tenant B's files, while A's own files keep working.

Each attack here worked before execution was confined (issue 17); now it is refused at /prompt (ComfyUI validates
the prompt as the tenant's) or fails with `path_outside_tenant` naming the node, and nothing of B's comes back."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.conftest import FIXTURES

pytestmark = pytest.mark.comfy
PORTRAIT = FIXTURES / "media" / "portrait_astronaut_256.png"
SENTINEL = f"b-sentinel-{uuid.uuid4().hex}"


def save_latent(prefix: str) -> dict:
    return {"1": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
            "2": {"class_type": "SaveLatent", "inputs": {"samples": ["1", 0], "filename_prefix": prefix}}}


def load_latent(name: str, prefix: str = "conf/stolen") -> dict:
    return {"1": {"class_type": "LoadLatent", "inputs": {"latent": name}},
            "2": {"class_type": "SaveLatent", "inputs": {"samples": ["1", 0], "filename_prefix": prefix}}}


def open_path(path: str, action: str = "read") -> dict:
    return {"1": {"class_type": "TenancyTestOpenPath", "inputs": {"path": path, "action": action}}}


def attempt(client, workflow: dict) -> tuple[int, dict]:
    """(status of /prompt, the history entry when it ran, else the refusal's body)."""
    response = client.queue(workflow)
    if response.status_code != 200:
        return response.status_code, response.json()
    return 200, client.wait_history(response.json()["prompt_id"])


def execution_error(entry: dict) -> dict | None:
    for event, data in entry.get("status", {}).get("messages", []):
        if event == "execution_error":
            return data
    return None


def assert_nothing_of_b(status: int, answer: dict) -> None:
    """Refused at /prompt, or ran and failed; either way no output of the attacking prompt, no B's bytes."""
    if status == 200:
        assert answer["status"]["status_str"] == "error", answer
        assert not answer["outputs"], answer["outputs"]
    else:
        assert status in (400, 403), (status, answer)
    assert SENTINEL not in json.dumps(answer.get("outputs", {}))


@pytest.fixture(scope="module")
def b_files(comfyui, tenant_b) -> dict:
    """Tenant B's latent (saved by its own prompt), upload and a text file only B should ever read."""
    entry = tenant_b.run(save_latent("conf/b"))
    assert entry["status"]["status_str"] == "success", entry
    latent = entry["outputs"]["2"]["latents"][0]
    folder = comfyui.base / "input" / "tenants" / "tenant-b"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sentinel.txt").write_text(SENTINEL)
    link = comfyui.base / "input" / "tenants" / "tenant-a" / "to-b"  # a link out of A's folder, as if planted
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.is_symlink():
        link.symlink_to(folder, target_is_directory=True)
    uploaded = tenant_b.upload_image(PORTRAIT, name="b-only.png", subfolder="set")
    assert uploaded.status_code == 200, uploaded.text
    return {"latent": f"{latent['subfolder']}/{latent['filename']}", "sentinel": folder / "sentinel.txt"}


@pytest.mark.parametrize("spelling", ["tenants/tenant-b/{latent} [output]", "../output/tenants/tenant-b/{latent}"])
def test_load_latent_of_another_tenant_finds_nothing(tenant_a, b_files, spelling):
    status, answer = attempt(tenant_a, load_latent(spelling.format(latent=b_files["latent"])))
    assert_nothing_of_b(status, answer)


def test_save_and_load_latent_round_trip_in_own_folder(comfyui, tenant_a):
    saved = tenant_a.run(save_latent("conf/mine"))["outputs"]["2"]["latents"][0]
    assert saved["subfolder"] == "conf"  # by the tenant's own name
    entry = tenant_a.run(load_latent(f"conf/{saved['filename']} [output]", "conf/again"))
    assert entry["status"]["status_str"] == "success", entry
    again = entry["outputs"]["2"]["latents"][0]
    assert (comfyui.base / "output" / "tenants" / "tenant-a" / "conf" / again["filename"]).is_file()


@pytest.mark.parametrize("node", ["LoadImageDataSetFromFolder", "LoadImageTextDataSetFromFolder"])
@pytest.mark.parametrize("folder", ["tenants/tenant-b", "tenants/tenant-b/set", "tenants"])
def test_dataset_folders_of_another_tenant_are_not_read(operator, tenant_a, b_files, node, folder):
    if node not in operator.get("/object_info").json():
        pytest.skip(f"this ComfyUI has no {node}")
    workflow = {"1": {"class_type": node, "inputs": {"folder": folder}},
                "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "conf/set"}}}
    status, answer = attempt(tenant_a, workflow)
    assert_nothing_of_b(status, answer)


@pytest.mark.parametrize(("path", "action"), [
    ("tenants/tenant-b/sentinel.txt", "read"), ("../input/tenants/tenant-b/sentinel.txt", "read"),
    ("{absolute}", "read"), ("tenants/tenant-b", "list"), ("tenants", "list"), ("../user/tenancy", "list"),
    ("../user/tenancy/jwt.secret", "read"), ("../output/tenants/tenant-b", "list"),
    ("tenants/tenant-a/../tenant-b/sentinel.txt", "read"), ("tenants/tenant-a/to-b/sentinel.txt", "read"),
    ("tenants/tenant-a/to-b/../to-b/sentinel.txt", "read"), ("tenants/tenant-a/to-b", "list")])
def test_node_opening_an_undeclared_path_of_another_tenant_fails_naming_the_node(
        comfyui, tenant_a, b_files, path, action):
    status, entry = attempt(tenant_a, open_path(path.format(absolute=b_files["sentinel"]), action))
    assert status == 200, entry
    error = execution_error(entry)
    assert error is not None, entry
    assert error["exception_message"].startswith("path_outside_tenant: node 1 (TenancyTestOpenPath)"), error
    assert SENTINEL not in json.dumps(entry["outputs"]) and "tenant-b" not in json.dumps(entry["outputs"])
    assert comfyui.audit_line("path_outside_tenant", "TenancyTestOpenPath", entry["prompt"][1])


def test_node_opening_the_tenants_own_file_works(comfyui, tenant_a):
    own = comfyui.base / "input" / "tenants" / "tenant-a" / "own.txt"
    own.parent.mkdir(parents=True, exist_ok=True)
    own.write_text("a's own words")
    entry = tenant_a.run(open_path("tenants/tenant-a/own.txt"))
    assert entry["outputs"]["1"]["text"] == ["a's own words"]


def test_cached_outputs_are_never_another_tenants(comfyui, tenant_a, tenant_b):
    """The same prompt from B must run as B's (and be refused), not be answered from A's cached outputs."""
    own = comfyui.base / "input" / "tenants" / "tenant-a" / "cached.txt"
    own.parent.mkdir(parents=True, exist_ok=True)
    own.write_text("a's cached words")
    workflow = open_path("tenants/tenant-a/cached.txt")
    assert tenant_a.run(workflow)["outputs"]["1"]["text"] == ["a's cached words"]
    status, entry = attempt(tenant_b, workflow)
    assert status == 200 and execution_error(entry) is not None, entry
    assert "a's cached words" not in json.dumps(entry)


def test_previews_go_to_the_tenants_temp_folder_and_load_by_its_name(comfyui, tenant_a):
    name = f"conf-{uuid.uuid4().hex[:6]}.png"
    assert tenant_a.upload_image(PORTRAIT, name=name).status_code == 200
    entry = tenant_a.run({"1": {"class_type": "LoadImage", "inputs": {"image": name}},
                          "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}})
    preview = entry["outputs"]["2"]["images"][0]
    assert preview["type"] == "temp" and preview["subfolder"] == ""
    assert (comfyui.base / "temp" / "tenants" / "tenant-a" / preview["filename"]).is_file()
    assert tenant_a.get("/view", params=preview).status_code == 200
    again = tenant_a.run({"1": {"class_type": "LoadImage", "inputs": {"image": f"{preview['filename']} [temp]"}},
                          "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "p"}}})
    assert again["status"]["status_str"] == "success", again


def test_operators_prompts_see_the_real_layout(comfyui, operator, b_files):
    entry = operator.run(open_path("tenants/tenant-b/sentinel.txt"))
    assert entry["outputs"]["1"]["text"] == [SENTINEL]
