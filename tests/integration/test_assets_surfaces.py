"""Newer ComfyUI's asset library (0.33.0 with `--enable-assets` and `--enable-asset-hashing`): `/view` serves a
content hash only to a tenant that owns a file with it, the asset routes and events are the operators', and
tenants are told assets are off. Skipped where the ComfyUI under test has no assets (0.3.75)."""

from __future__ import annotations

import io
import json
import os
import time
import uuid

import pytest

from tenancy.installation import locate
from tests.harness.client import ComfyClient, text_messages
from tests.harness.comfyui import ComfyUI
from tests.harness.tenants import seed

HOME = locate()
HAS_ASSETS = "--enable-assets" in (HOME.root / "comfy" / "cli_args.py").read_text(encoding="utf-8")
pytestmark = [pytest.mark.comfy, pytest.mark.skipif(not HAS_ASSETS, reason=f"ComfyUI {HOME.version} has no assets")]
# Outputs get their hash from ComfyUI's background scan, which its worker starts about 10 s after a prompt (its
# garbage-collection interval); the wait is bounded well above that.
OUTPUT_HASH_WAIT_S = 60


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("assets-base")
    seeded = seed(base)
    comfy = ComfyUI(base, env={"TENANCY_REQUIRE_GUARD": "1"},
                    extra_args=("--enable-assets", "--enable-asset-hashing",
                                "--database-url", f"sqlite:///{base / 'user' / 'comfyui.db'}")).start()
    comfy.seeded = seeded
    yield comfy
    comfy.stop()


@pytest.fixture(scope="module")
def clients(server) -> dict:
    return {who: ComfyClient(server.url, server.seeded.keys[who]) for who in ("a", "b", "admin")}


def unique_png() -> bytes:
    """An image no other test uploads (its content hash is its own)."""
    from PIL import Image

    image = Image.new("RGB", (8, 8), tuple(os.urandom(3)))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def upload(client: ComfyClient, data: bytes, name: str) -> dict:
    response = client.post("/upload/image", files={"image": (name, data)})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def a_upload(clients) -> dict:
    data = unique_png()
    answer = upload(clients["a"], data, f"a-{uuid.uuid4().hex[:6]}.png")
    assert answer["asset"]["asset_hash"].startswith("blake3:"), answer
    return {"data": data, "hash": answer["asset"]["asset_hash"], "name": answer["name"]}


VIEW_VARIANTS = ({}, {"type": "input"}, {"type": "output"}, {"type": "temp"}, {"subfolder": "x"},
                 {"subfolder": "tenants/tenant-a"}, {"preview": "webp;50"}, {"channel": "rgb"})


def test_a_hash_is_served_to_the_tenant_that_owns_the_file(clients, a_upload):
    response = clients["a"].get("/view", params={"filename": a_upload["hash"]})
    assert response.status_code == 200 and response.content == a_upload["data"]
    assert clients["a"].get("/api/view", params={"filename": a_upload["hash"], "preview": "webp;50"}).ok


@pytest.mark.parametrize("prefix", ["", "/api"])
def test_a_hash_of_another_tenants_upload_is_not_found(clients, a_upload, prefix):
    for params in VIEW_VARIANTS:
        for headers in ({}, {"comfy-user": "tenant-tenant-a"}):  # ComfyUI's own owner check reads this header
            response = clients["b"].get(f"{prefix}/view", params={"filename": a_upload["hash"], **params},
                                        headers=headers)
            assert response.status_code == 404, (params, headers, response.status_code)
    assert clients["admin"].get(f"{prefix}/view", params={"filename": a_upload["hash"]}).status_code == 200


def test_the_same_content_uploaded_by_both_serves_each_its_own_copy(clients):
    data = unique_png()
    first = upload(clients["a"], data, "same-a.png")
    second = upload(clients["b"], data, "same-b.png")
    assert first["asset"]["asset_hash"] == second["asset"]["asset_hash"]
    for who in ("a", "b"):
        response = clients[who].get("/view", params={"filename": first["asset"]["asset_hash"]})
        assert response.status_code == 200 and response.content == data


def test_other_name_schemes_are_not_found(clients, a_upload):
    digest = a_upload["hash"].partition(":")[2]
    for name in (f"sha256:{digest}", f"BLAKE3:{digest}", "blake3:", "file:/etc/passwd", "x:y.png",
                 f"blake3:{digest} [input]"):
        assert clients["a"].get("/view", params={"filename": name}).status_code == 404, name


def test_a_hash_of_another_tenants_output_is_not_found(clients):
    blake3 = pytest.importorskip("blake3")
    data = unique_png()
    name = upload(clients["a"], data, "out-src.png")["name"]
    entry = clients["a"].run({
        "1": {"class_type": "LoadImage", "inputs": {"image": name}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "hashed/out"}}})
    image = entry["outputs"]["2"]["images"][0]
    output = clients["a"].get("/view", params=image)
    assert output.status_code == 200
    asset_hash = "blake3:" + blake3.blake3(output.content).hexdigest()
    deadline = time.monotonic() + OUTPUT_HASH_WAIT_S
    while clients["admin"].get("/view", params={"filename": asset_hash}).status_code != 200:
        assert time.monotonic() < deadline, "ComfyUI never hashed the output"
        time.sleep(0.5)
    assert clients["a"].get("/view", params={"filename": asset_hash}).content == output.content
    for params in VIEW_VARIANTS:
        assert clients["b"].get("/view", params={"filename": asset_hash, **params}).status_code == 404, params


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/api/assets"), ("POST", "/api/assets"), ("GET", "/api/tags"), ("POST", "/api/assets/seed"),
    ("GET", "/api/assets/seed/status"), ("HEAD", "/api/assets/hash/blake3:00"),
    ("GET", "/api/assets/00000000-0000-4000-8000-000000000000/content"), ("POST", "/api/assets/from-hash")])
def test_asset_routes_are_the_operators(clients, method, path):
    response = clients["b"].session.request(method, clients["b"].url + path, timeout=30)
    assert response.status_code == 403, (method, path, response.status_code)


def test_operators_use_the_asset_routes(clients, a_upload):
    listing = clients["admin"].get("/api/assets")
    assert listing.status_code == 200, listing.text


def test_tenants_are_told_assets_are_off(clients):
    assert clients["b"].get("/features").json()["assets"] is False
    assert clients["b"].get("/api/features").json()["assets"] is False
    assert clients["admin"].get("/features").json()["assets"] is True
    for who, expected in (("b", False), ("admin", True)):
        socket = clients[who].websocket("flags")
        try:
            socket.recv()  # status
            socket.send(json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}}))
            flags = next(m for m in text_messages(socket, 5.0) if m["type"] == "feature_flags")
        finally:
            socket.close()
        assert flags["data"]["assets"] is expected, who


def test_asset_events_reach_operators_only(clients):
    tenant, operator = clients["b"].websocket("events"), clients["admin"].websocket("events")
    try:
        tenant.recv(), operator.recv()  # status
        scan = clients["admin"].post("/api/assets/seed?wait=true", json={"roots": ["input"]})
        assert scan.status_code in (200, 409), scan.text
        to_operator, to_tenant = text_messages(operator, 2.0), text_messages(tenant, 2.0)
    finally:
        tenant.close(), operator.close()
    assert any(m["type"].startswith("assets.") for m in to_operator), to_operator
    assert not [m for m in to_tenant if m["type"] != "status"], to_tenant


