"""Every route of the live router is classified on purpose; anonymous callers get 401 everywhere but
public routes; decisions land in the audit log without secrets; execution logs carry the tenant."""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, urlsplit

import pytest

from tenancy.identity import split_api_key

pytestmark = pytest.mark.comfy


@pytest.fixture(scope="module")
def live_routes(operator) -> list[dict]:
    response = operator.get("/tenancy/admin/routes")
    assert response.status_code == 200, response.text
    return response.json()["routes"]


def concrete(pattern: str) -> str:
    """A path the pattern matches (a UUID fits id placeholders that newer ComfyUI constrains)."""
    return re.sub(r"\{[^}]+\}", "00000000-0000-4000-8000-000000000000", pattern).replace("/*", "/x")


def test_every_live_route_is_classified_explicitly(live_routes):
    implicit = [f"{r['method']} {r['pattern']}" for r in live_routes if not r["explicit"]]
    assert not implicit, f"routes the table does not classify: {implicit}"
    assert any(r["pattern"] == "/internal/logs" for r in live_routes), "sub-app routes are enumerated"


def test_anonymous_callers_get_401_on_every_non_public_route(anonymous, live_routes):
    for route in live_routes:
        if route["class"] == "public" or route["method"] not in ("GET", "POST", "DELETE", "PATCH", "PUT"):
            continue
        path = concrete(route["pattern"])
        response = anonymous.session.request(route["method"], anonymous.url + path, timeout=30,
                                             headers={"Accept": "application/json"})
        assert response.status_code == 401, f"{route['method']} {path}: {response.status_code}"
        assert response.json()["error"]["type"] == "unauthenticated"


def test_anonymous_browser_is_sent_to_the_login_page(anonymous):
    response = anonymous.get("/queue?x=1", headers={"Accept": "text/html"}, allow_redirects=False)
    location = urlsplit(response.headers["Location"])
    assert response.status_code == 302 and location.path == "/tenancy/login"
    assert parse_qs(location.query) == {"next": ["/queue?x=1"]}  # back to that page after login
    editor = anonymous.get("/", headers={"Accept": "text/html"}, allow_redirects=False)
    assert editor.status_code == 302 and editor.headers["Location"] == "/tenancy/login"
    assert anonymous.get("/tenancy/login").status_code == 200


def test_public_routes_answer_without_credentials(anonymous):
    assert anonymous.get("/").status_code == 200
    assert anonymous.get("/tenancy/health").json() == {"status": "ok"}


def test_audit_log_records_decisions_without_secrets(comfyui, tenant_a, anonymous):
    tenant_a.post("/free", json={})
    anonymous.post("/prompt", json={})
    prompt_id = tenant_a.run({"1": {"class_type": "TenancyTestParams", "inputs": {
        "steps": 20, "cfg": 7.0, "duration": 1.0, "width": 256, "model_name": "base.safetensors"}}})["prompt"][1]
    text = comfyui.audit_text('"decision":"settle"', prompt_id)  # the lines recorded before it are there too
    entries = [json.loads(line) for line in text.splitlines()]
    refused = [e for e in entries if e.get("decision") == "refuse"]
    assert any(e.get("reason") == "admin_only" and e.get("tenant") == "tenant-a" for e in refused)
    assert any(e.get("reason") == "unauthenticated" for e in refused)
    assert all({"time", "decision"} <= e.keys() for e in entries)
    assert all("route" in e for e in entries if e["decision"] in ("allow", "refuse"))
    assert any(e["decision"] == "settle" and e.get("prompt_id") for e in entries)
    for key in comfyui.seeded.keys.values():
        assert key not in text and split_api_key(key)[1] not in text


def test_execution_log_lines_carry_the_tenant(comfyui, tenant_b):
    tenant_b.run({"1": {"class_type": "TenancyTestParams", "inputs": {
        "steps": 20, "cfg": 7.0, "duration": 1.0, "width": 256, "model_name": "base.safetensors"}}})
    assert re.search(r"\[Tenant: tenant-b\] Prompt executed", comfyui.log_text())
