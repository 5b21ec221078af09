"""The plugin loads in a real ComfyUI, its nodes are visible, and ordinary workflows still run."""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import FIXTURES

pytestmark = pytest.mark.comfy


def our_node_classes() -> list[str]:
    from nodes import NODE_CLASS_MAPPINGS

    return sorted(NODE_CLASS_MAPPINGS)


def test_plugin_is_listed_as_loaded(comfyui):
    log = comfyui.log_text()
    assert re.search(r"[\d.]+ seconds: .*custom_nodes/comfyui-tenancy$", log, re.M), log
    assert "IMPORT FAILED" not in log
    assert "[tenancy] guard installed" in log


def test_guard_health_route_answers(anonymous):
    response = anonymous.get("/tenancy/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.parametrize("node_class", our_node_classes())
def test_our_node_class_is_in_object_info(tenant_a, node_class):
    assert node_class in tenant_a.get(f"/object_info/{node_class}").json()


def test_upload_load_save_runs_and_view_serves_the_output(tenant_a):
    uploaded = tenant_a.upload_image(FIXTURES / "media" / "portrait_astronaut_256.png")
    assert uploaded.status_code == 200, uploaded.text
    workflow = json.loads((FIXTURES / "workflows" / "load_save_image.json").read_text())
    workflow["1"]["inputs"]["image"] = uploaded.json()["name"]
    entry = tenant_a.run(workflow)
    assert entry["status"]["status_str"] == "success", entry["status"]
    image = entry["outputs"]["2"]["images"][0]
    served = tenant_a.get("/view", params=image)
    assert served.status_code == 200
    assert served.content[:8] == b"\x89PNG\r\n\x1a\n"
