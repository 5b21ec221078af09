"""The operators' page: create a tenant and a key, revoke the key (it stops working at once), cancel another
tenant's running prompt, usage, ledger export and audit filters."""

from __future__ import annotations

import uuid

import pytest
import requests
from selenium.webdriver.support.ui import Select

from tests.harness.client import ComfyClient
from tests.harness.tenants import PASSWORD

pytestmark = pytest.mark.comfy


@pytest.fixture(scope="module")
def admin_page(browsers):
    browser = browsers()
    browser.open("/tenancy/admin")
    browser.wait(lambda: browser.path.startswith("/tenancy/login"), 30, "the admin page opened without a session")
    browser.sign_in("operator", PASSWORD)
    browser.wait(lambda: browser.path == "/tenancy/admin", 60, "signing in did not return to the admin page")
    browser.wait(lambda: browser.js("return document.body.dataset.ready === '1'"), 30, "the admin page did not load")
    return browser


def test_create_tenant_and_key_then_revoke_it(admin_page, comfyui):
    page = admin_page
    tenant = f"web-new-{uuid.uuid4().hex[:6]}"
    page.find("#new-tenant-id").send_keys(tenant)
    Select(page.find("#new-tenant-plan")).select_by_value("trial")
    page.find("#new-tenant-tags").send_keys("canary, studio")
    page.find("#tenant-form button[type=submit]").click()
    row = page.wait_for(f"#tenants-table tr[data-tenant='{tenant}']")
    assert "trial" in row.find_element("css selector", "select.plan").get_attribute("value")
    assert Select(page.find("#tenant-picker")).first_selected_option.text == tenant

    page.find("#new-key-name").clear()
    page.find("#new-key-name").send_keys("ci")
    page.find("#key-form button[type=submit]").click()
    page.wait(lambda: page.find("#new-key-output").is_displayed(), 15, "the new key is not shown")
    key, key_id = page.find("#new-key-value").text, page.find("#new-key-id").text
    assert key.startswith(f"ct_{key_id}_")
    client = ComfyClient(comfyui.url, key)
    me = client.get("/tenancy/me")
    assert me.status_code == 200 and me.json()["tenant"] == tenant and me.json()["plan"] == "trial"
    page.screenshot("admin")

    page.find(f"#keys-table tr[data-key-id='{key_id}'] button.revoke").click()
    page.wait(lambda: page.find(f"#keys-table tr[data-key-id='{key_id}'] .state").text == "revoked", 15)
    refused = client.get("/tenancy/me")
    assert refused.status_code == 401 and refused.json()["error"]["type"] == "key_revoked"
    assert not page.find("#new-key-output").is_displayed() or page.find("#new-key-value").text == key

    audit = page.find("#audit-decision")
    Select(audit).select_by_visible_text("admin")
    page.find("#audit-form button[type=submit]").click()
    page.wait(lambda: "key_revoke" in page.find("#audit-table").text, 15, "the revocation is not in the audit view")


def test_cancel_another_tenants_running_prompt(admin_page, web_b):
    sleeper = {"1": {"class_type": "TenancyTestSleep", "inputs": {"seconds": 120.0, "tag": "cancel"}}}
    queued = web_b.client.queue(sleeper)
    assert queued.status_code == 200, queued.text
    prompt_id = queued.json()["prompt_id"]
    row = f"#queue-table tr[data-prompt-id='{prompt_id}'][data-state='running']"
    admin_page.wait_for(row, 60)
    # The page redraws the queue every 2 s: read and click inside the page, in one step, never through an element
    # found earlier (one that a redraw in between replaced is stale).
    assert "web-b" in admin_page.js("return document.querySelector(arguments[0]).textContent", row)
    admin_page.js("document.querySelector(arguments[0]).click()", f"{row} button.cancel")
    entry = web_b.client.wait_history(prompt_id, timeout=20)
    assert entry["status"]["status_str"] == "error"
    assert any(m[0] == "execution_interrupted" for m in entry["status"]["messages"])
    assert entry["status"].get("tenancy_outcome") == "cancelled"
    admin_page.wait(lambda: not admin_page.all(f"#queue-table tr[data-prompt-id='{prompt_id}']"), 15)
    assert "cancelled" in admin_page.find("#message").text


def test_usage_and_ledger_with_csv_export(admin_page, comfyui, operator):
    admin_page.wait_for("#usage-table tr[data-tenant='web-b']")
    admin_page.find("#ledger-form button[type=submit]").click()
    admin_page.wait(lambda: "web-b" in admin_page.find("#ledger-table").text, 15, "no ledger rows")
    href = admin_page.find("#ledger-csv").get_attribute("href")
    assert "format=csv" in href
    cookies = {"tenancy_session": admin_page.cookie("tenancy_session")}
    csv = requests.get(href, cookies=cookies, timeout=30)
    assert csv.status_code == 200 and csv.headers["Content-Type"].startswith("text/csv")
    assert csv.text.splitlines()[0] == "time_utc,tenant,prompt_id,kind,seconds,day,outcome"
