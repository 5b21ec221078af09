"""The JSON admin API on the real ComfyUI: tenants, members, keys, usage, the ledger, the live queue with
cancel, audit filters; who may call what (operators; a tenant_admin for its own tenant's people and keys)."""

from __future__ import annotations

import time
import uuid

import pytest

from tests.harness.client import ComfyClient
from tests.harness.tenants import PASSWORD

pytestmark = pytest.mark.comfy


def patch(client: ComfyClient, path: str, **kwargs):
    return client.session.patch(client.url + path, timeout=30, **kwargs)


def sleeper(seconds: float, tag: str) -> dict:
    return {"1": {"class_type": "TenancyTestSleep", "inputs": {"seconds": seconds, "tag": tag}}}


@pytest.fixture(scope="module")
def studio(operator, comfyui) -> dict:
    """A tenant of this module's own, with a member and a tenant_admin who each hold an access token."""
    tenant = f"adm-{uuid.uuid4().hex[:6]}"
    created = operator.post("/tenancy/admin/tenants", json={"id": tenant, "plan": "light", "tags": ["canary"]})
    assert created.status_code == 201, created.text
    assert created.json() == {"id": tenant, "plan": "light", "status": "active", "tags": ["canary"]}
    people = {}
    for role in ("member", "tenant_admin"):
        username = f"{tenant}-{role}"
        made = operator.post(f"/tenancy/admin/tenants/{tenant}/members", json={"username": username, "role": role})
        assert made.status_code == 201, made.text
        password = made.json()["password"]  # generated, shown once
        token = ComfyClient(comfyui.url).post("/tenancy/token", json={"username": username, "password": password})
        assert token.status_code == 200, token.text
        people[role] = ComfyClient(comfyui.url, token.json()["access_token"])
    key = operator.post(f"/tenancy/admin/tenants/{tenant}/keys", json={"name": "module"}).json()
    return {"id": tenant, "member": people["member"], "tenant_admin": people["tenant_admin"],
            "client": ComfyClient(comfyui.url, key["key"]), "key_id": key["key_id"]}


def test_tenants_are_created_listed_and_changed(operator, studio, comfyui):
    tenant = studio["id"]
    listed = {t["id"]: t for t in operator.get("/tenancy/admin/tenants").json()["tenants"]}
    assert listed[tenant]["members"] == 2 and listed[tenant]["active_keys"] == 1
    assert operator.post("/tenancy/admin/tenants", json={"id": tenant, "plan": "basic"}).status_code == 409
    for bad in ({"id": "Bad Id", "plan": "basic"}, {"id": "ok-id", "plan": "no-such-plan"}, {"plan": "basic"},
                {"id": "ok-id", "plan": "basic", "tags": ["no spaces"]}):
        answer = operator.post("/tenancy/admin/tenants", json=bad)
        assert answer.status_code == 400 and answer.json()["error"]["type"] == "invalid_request", bad
    changed = patch(operator, f"/tenancy/admin/tenants/{tenant}", json={"plan": "heavy", "tags": "canary, vip"})
    assert changed.json() == {"id": tenant, "plan": "heavy", "status": "active", "tags": ["canary", "vip"]}
    assert studio["client"].get("/tenancy/me").json()["plan"] == "heavy"
    # Disabling stops its keys and sessions at once; enabling brings them back.
    assert patch(operator, f"/tenancy/admin/tenants/{tenant}", json={"status": "disabled"}).status_code == 200
    refused = studio["client"].get("/tenancy/me")
    assert refused.status_code == 401 and refused.json()["error"]["type"] == "tenant_disabled"
    assert studio["member"].get("/tenancy/me").status_code == 401
    assert patch(operator, f"/tenancy/admin/tenants/{tenant}", json={"status": "active", "plan": "light"}).ok
    assert studio["client"].get("/tenancy/me").status_code == 200
    assert patch(operator, f"/tenancy/admin/tenants/{tenant}", json={"status": "gone"}).status_code == 400
    assert patch(operator, "/tenancy/admin/tenants/no-such", json={"plan": "basic"}).status_code == 404


def test_members_are_added_and_disabled(operator, studio, comfyui):
    tenant = studio["id"]
    username = f"{tenant}-artist"
    made = operator.post(f"/tenancy/admin/tenants/{tenant}/members",
                         json={"username": username, "password": PASSWORD})
    assert made.status_code == 201 and "password" not in made.json()
    assert operator.post(f"/tenancy/admin/tenants/{tenant}/members",
                         json={"username": username}).status_code == 409
    short = operator.post(f"/tenancy/admin/tenants/{tenant}/members", json={"username": "x-short", "password": "abc"})
    assert short.status_code == 400
    login = ComfyClient(comfyui.url).post("/tenancy/token", json={"username": username, "password": PASSWORD})
    session = ComfyClient(comfyui.url, login.json()["access_token"])
    assert session.get("/tenancy/me").json()["tenant"] == tenant
    disabled = patch(operator, f"/tenancy/admin/tenants/{tenant}/members/{username}", json={"disabled": True})
    assert disabled.json()["disabled"] is True
    assert session.get("/tenancy/me").json()["error"]["type"] == "account_disabled"
    members = operator.get(f"/tenancy/admin/tenants/{tenant}/members").json()["members"]
    assert {m["username"]: m["disabled"] for m in members}[username] is True
    assert all("password" not in m and "password_hash" not in m for m in members)
    # Members of another tenant are not reachable through this tenant's path.
    other = patch(operator, f"/tenancy/admin/tenants/{tenant}/members/user-a", json={"disabled": True})
    assert other.status_code == 404


def test_keys_are_shown_once_and_revoked_at_once(operator, studio, comfyui):
    tenant = studio["id"]
    created = operator.post(f"/tenancy/admin/tenants/{tenant}/keys", json={"name": "ci", "expires_in_s": 3600})
    assert created.status_code == 201
    body = created.json()
    assert body["key"].startswith(f"ct_{body['key_id']}_") and body["state"] == "active" and body["expires"]
    client = ComfyClient(comfyui.url, body["key"])
    assert client.get("/tenancy/me").status_code == 200
    listed = operator.get("/tenancy/admin/keys", params={"tenant": tenant}).json()["keys"]
    assert body["key_id"] in [k["key_id"] for k in listed] and all("key" not in k for k in listed)
    secret = body["key"].removeprefix(f"ct_{body['key_id']}_")
    assert all(secret not in str(k) for k in listed)
    revoked = operator.delete(f"/tenancy/admin/keys/{body['key_id']}")
    assert revoked.json()["state"] == "revoked"
    answer = client.get("/tenancy/me")
    assert answer.status_code == 401 and answer.json()["error"]["type"] == "key_revoked"
    assert operator.delete("/tenancy/admin/keys/nosuchkey").status_code == 404
    assert operator.post(f"/tenancy/admin/tenants/{tenant}/keys", json={"expires_in_s": -5}).status_code == 400


def test_a_tenant_admin_manages_only_its_own_tenant(studio, tenant_a, comfyui):
    admin, member = studio["tenant_admin"], studio["member"]
    own = f"/tenancy/admin/tenants/{studio['id']}"
    assert admin.get(f"{own}/members").status_code == 200
    made = admin.post(f"{own}/members", json={"username": f"{studio['id']}-by-admin", "password": PASSWORD})
    assert made.status_code == 201
    key = admin.post(f"{own}/keys", json={"name": "by tenant admin"})
    assert key.status_code == 201
    assert admin.delete(f"/tenancy/admin/keys/{key.json()['key_id']}").status_code == 200
    for path in ("/tenancy/admin/tenants/tenant-a/members", "/tenancy/admin/tenants/tenant-a/keys"):
        assert admin.get(path).status_code == 403, path
    seeded_id = comfyui.seeded.keys["a"].split("_")[1]  # tenant-a's key: not this tenant_admin's to revoke
    assert admin.delete(f"/tenancy/admin/keys/{seeded_id}").status_code == 403
    assert tenant_a.get("/tenancy/me").status_code == 200
    for path in ("/tenancy/admin/tenants", "/tenancy/admin/queue", "/tenancy/admin/usage", "/tenancy/admin/audit",
                 "/tenancy/admin/ledger", "/tenancy/admin/keys", "/tenancy/admin"):
        assert admin.get(path).status_code == 403, path
    for path in (f"{own}/members", f"{own}/keys"):
        answer = member.get(path)
        assert answer.status_code == 403 and answer.json()["error"]["type"] == "admin_only", path


def test_usage_and_ledger_with_csv(operator, tenant_b):
    entry = tenant_b.run({"1": {"class_type": "TenancyTestParams", "inputs": {
        "steps": 20, "cfg": 7.0, "duration": 2.0, "width": 256, "model_name": "base.safetensors"}}})
    prompt_id = entry["prompt"][1]
    usage = {u["tenant"]: u for u in operator.get("/tenancy/admin/usage").json()["usage"]}
    assert usage["tenant-b"]["daily_seconds"] == 3600 and usage["tenant-b"]["remaining_seconds"] <= 3600
    ledger = operator.get("/tenancy/admin/ledger", params={"tenant": "tenant-b", "limit": 1000}).json()
    kinds = {e["kind"] for e in ledger["entries"] if e["prompt_id"] == prompt_id}
    assert kinds == {"reserve", "settle"} and all(e["tenant"] == "tenant-b" for e in ledger["entries"])
    assert ledger["entries"][0]["time"] >= ledger["entries"][-1]["time"]  # newest first
    today = time.strftime("%Y-%m-%d", time.gmtime())
    csv = operator.get("/tenancy/admin/ledger", params={"format": "csv", "since": today, "tenant": "tenant-b"})
    assert csv.headers["Content-Type"].startswith("text/csv") and "attachment" in csv.headers["Content-Disposition"]
    lines = csv.text.splitlines()
    assert lines[0] == "time_utc,tenant,prompt_id,kind,seconds,day,outcome"
    assert any(prompt_id in line and ",settle," in line for line in lines[1:])
    future = operator.get("/tenancy/admin/ledger", params={"since": "2999-01-01"}).json()
    assert future["entries"] == [] and future["total"] == 0
    assert operator.get("/tenancy/admin/ledger", params={"since": "yesterday"}).status_code == 400


def test_live_queue_shows_owners_and_operators_cancel_any_prompt(operator, studio, tenant_b):
    client = studio["client"]
    running = client.queue(sleeper(60, "running")).json()["prompt_id"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # earlier tests' prompts may still be draining
        queue = operator.get("/tenancy/admin/queue").json()
        if any(p["prompt_id"] == running for p in queue["running"]):
            break
        time.sleep(0.2)
    pending = client.queue(sleeper(60, "pending")).json()["prompt_id"]
    queue = operator.get("/tenancy/admin/queue").json()
    rows = {p["prompt_id"]: p for p in queue["running"] + queue["pending"]}
    assert rows[running]["state"] == "running" and rows[running]["tenant"] == studio["id"]
    assert rows[pending]["state"] == "pending" and rows[pending]["position"] >= 1
    assert rows[pending]["classes"] == ["TenancyTestSleep"]
    # The tenant sees its own prompts with their place; another tenant sees neither.
    own = client.get("/tenancy/queue").json()
    assert {p["prompt_id"] for p in own["running"] + own["pending"]} >= {running, pending}
    theirs = tenant_b.get("/tenancy/queue").json()
    assert not {p["prompt_id"] for p in theirs["running"] + theirs["pending"]} & {running, pending}
    assert tenant_b.get("/tenancy/admin/queue").status_code == 403
    assert tenant_b.post(f"/tenancy/admin/queue/{pending}/cancel").status_code == 403

    held = client.get("/tenancy/me").json()["usage"]["active"]
    cancelled = operator.post(f"/tenancy/admin/queue/{pending}/cancel")
    assert cancelled.json() == {"prompt_id": pending, "tenant": studio["id"], "state": "pending", "cancelled": True}
    assert pending not in [p["prompt_id"] for p in operator.get("/tenancy/admin/queue").json()["pending"]]
    assert client.get("/tenancy/me").json()["usage"]["active"] == held - 1  # its hold is released
    ledger = operator.get("/tenancy/admin/ledger", params={"tenant": studio["id"]}).json()["entries"]
    assert {"kind": "settle", "outcome": "cancelled"}.items() <= next(
        e for e in ledger if e["prompt_id"] == pending and e["kind"] == "settle").items()

    started = time.monotonic()
    assert operator.post(f"/tenancy/admin/queue/{running}/cancel").json()["state"] == "running"
    entry = client.wait_history(running, timeout=30)
    assert time.monotonic() - started < 20
    assert entry["status"]["status_str"] == "error" and entry["status"]["tenancy_outcome"] == "cancelled"
    assert operator.post(f"/tenancy/admin/queue/{running}/cancel").status_code == 404


def test_audit_entries_with_filters(operator, studio, comfyui):
    since = time.time()
    key = operator.post(f"/tenancy/admin/tenants/{studio['id']}/keys", json={"name": "audited"}).json()
    operator.delete(f"/tenancy/admin/keys/{key['key_id']}")
    comfyui.audit_text('"action":"key_revoke"', key["key_id"])
    found = operator.get("/tenancy/admin/audit", params={"action": "key_revoke", "tenant": studio["id"],
                                                         "since": since}).json()["entries"]
    assert len(found) == 1 and found[0]["key_id"] == key["key_id"] and found[0]["decision"] == "admin"
    assert key["key"] not in str(found)
    both = operator.get("/tenancy/admin/audit", params={"decision": "admin", "since": since}).json()["entries"]
    assert [e["action"] for e in both] == ["key_revoke", "key_create"]  # newest first
    routed = operator.get("/tenancy/admin/audit", params={"route": "/tenancy/admin/keys/", "limit": 1}).json()
    assert len(routed["entries"]) == 1 and "/tenancy/admin/keys/" in routed["entries"][0]["route"]
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(since + 3600))
    assert operator.get("/tenancy/admin/audit", params={"since": iso}).json()["entries"] == []
    assert operator.get("/tenancy/admin/audit", params={"since": "soon"}).status_code == 400
