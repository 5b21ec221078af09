"""Signing in and out in a real browser: password, API key, OpenID Connect, refusals and throttling."""

from __future__ import annotations

from urllib.parse import quote

import pytest
import requests

from tests.harness.tenants import PASSWORD

from .conftest import signed_in

pytestmark = pytest.mark.comfy


def test_editor_without_session_lands_on_login_page_then_password_opens_editor(browsers, web_a):
    browser = browsers()
    browser.open("/")
    browser.wait(lambda: browser.path.startswith("/tenancy/login"), 30, "not sent to the login page")
    browser.wait_for(".provider")  # the "sign in with <provider>" button of the configured OpenID provider
    assert "Sign in with Test IdP" in browser.find("#providers").text
    browser.screenshot("login")
    browser.sign_in(web_a.username, PASSWORD)
    browser.wait_editor()
    assert browser.path == "/"
    status = browser.status()
    assert status["tenant"] == "web-a" and status["plan"] == "basic"
    assert "left today" in status["text"]


def test_api_key_opens_editor(browsers, web_b):
    browser = browsers()
    browser.open("/tenancy/login")
    browser.sign_in(api_key=web_b.key)
    browser.wait_editor()
    assert browser.status()["tenant"] == "web-b"


def test_wrong_password_is_refused_with_a_message_then_throttled(browsers, comfyui, operator, web_a):
    # A dedicated account: the per-account limit it trips must not slow down other tests' logins.
    created = operator.post("/tenancy/admin/tenants/web-a/members",
                            json={"username": "web-a-throttled", "password": PASSWORD})
    assert created.status_code == 201, created.text
    browser = browsers()
    browser.open("/tenancy/login")
    browser.sign_in("web-a-throttled", "not the password")
    browser.wait(lambda: browser.find("#error").text, 15, "no error message")
    assert "wrong username or password" in browser.find("#error").text
    messages = []
    for _ in range(12):
        browser.sign_in("web-a-throttled", "still not the password")
        browser.wait(lambda: not browser.find("#submit").get_attribute("disabled"), 15)
        messages.append(browser.find("#error").text)
        if "too many" in messages[-1]:
            break
    assert "too many" in messages[-1] and "try again in" in messages[-1], messages
    # Even the right password waits now. A refusal lasts only until the account's next token (6 s at 10 a
    # minute), and typing in a slow browser once outlasted it: trip the limit again just before the click.
    browser.fill_login("web-a-throttled", PASSWORD)
    assert throttled_now(comfyui.url, "web-a-throttled")
    browser.find("#submit").click()
    browser.wait(lambda: not browser.find("#submit").get_attribute("disabled"), 15)
    assert "too many" in browser.find("#error").text
    assert browser.path.startswith("/tenancy/login")


def test_login_page_goes_to_next_only_when_it_is_on_this_site(browsers, comfyui, operator, web_a):
    created = operator.post(f"/tenancy/admin/tenants/{web_a.id}/members",
                            json={"username": "web-a-next", "password": PASSWORD})
    assert created.status_code in (201, 409), created.text
    browser = browsers()
    browser.open("/tenancy/login?next=" + quote("/tenancy/me?from=login", safe=""))
    browser.sign_in("web-a-next", PASSWORD)
    browser.wait(lambda: browser.path == "/tenancy/me?from=login", 30, f"not sent to next: {browser.path}")
    assert '"web-a"' in browser.find("body").text
    # Signed in, the login page forwards at once (the refresh cookie): to `next` only when it is a path here.
    for bad in ("//evil.example/x", "https://evil.example/", "/\\evil.example", "/\t/evil.example", "/\n/evil.example",
                "javascript:alert(1)"):
        browser.open("/tenancy/login?next=" + quote(bad, safe=""))
        browser.wait(lambda: browser.path == "/", 30, f"next={bad!r} led to {browser.driver.current_url}")
    # The server checks `next` again and answers where to go.
    for sent, expected in (("/tenancy/admin", "/tenancy/admin"), ("//evil.example", "/"), ("/\t/evil.example", "/")):
        answer = requests.post(f"{comfyui.url}/tenancy/login", timeout=30,
                               json={"username": "web-a-next", "password": PASSWORD, "next": sent})
        assert answer.status_code == 200 and answer.json()["next"] == expected, (sent, answer.text)


def test_a_page_opened_without_a_session_comes_back_after_login(browsers, operator, web_a):
    created = operator.post(f"/tenancy/admin/tenants/{web_a.id}/members",
                            json={"username": "web-a-back", "password": PASSWORD})
    assert created.status_code in (201, 409), created.text
    browser = browsers()
    browser.open("/tenancy/me?from=guard")
    browser.wait(lambda: browser.path.startswith("/tenancy/login?next="), 30, f"not sent to login: {browser.path}")
    browser.sign_in("web-a-back", PASSWORD)
    browser.wait(lambda: browser.path == "/tenancy/me?from=guard", 30, f"not sent back: {browser.path}")


def test_logout_from_the_menu_ends_the_session(browsers, comfyui, web_a):
    browser = signed_in(browsers, web_a)
    old = browser.cookie("tenancy_session")
    assert old and requests.get(f"{comfyui.url}/tenancy/me", cookies={"tenancy_session": old}).status_code == 200
    browser.js("app.extensionManager.command.execute('Tenancy.Logout')")
    browser.wait(lambda: browser.path.startswith("/tenancy/login"), 30, "not back on the login page")
    browser.wait(lambda: "signed out" in browser.find("#notice").text, 10)
    answer = requests.get(f"{comfyui.url}/tenancy/me", cookies={"tenancy_session": old})
    assert answer.status_code == 401 and answer.json()["error"]["type"] == "token_revoked"
    browser.open("/")
    browser.wait(lambda: browser.path.startswith("/tenancy/login"), 30, "the editor opened without a session")


def test_session_refresh_is_silent(browsers, web_b):
    browser = signed_in(browsers, web_b)
    before = browser.cookie("tenancy_session")
    assert browser.js_async("window.comfyTenancy.refreshSession().then(done)") is True
    after = browser.cookie("tenancy_session")
    assert after and after != before
    assert browser.fetch("/tenancy/me")["body"]["tenant"] == "web-b"
    # A lost access cookie (expired while the laptop slept) comes back through the refresh cookie alone.
    browser.driver.delete_cookie("tenancy_session")
    browser.open("/")
    browser.wait_editor()
    assert browser.status()["tenant"] == "web-b"


def test_sign_in_with_the_openid_provider(browsers, oidc_provider, web_b):
    oidc_provider.user = {"sub": "carol", "tenant": "web-b", "role": "member", "email": "carol@example.test"}
    browser = browsers()
    browser.open("/tenancy/login")
    browser.wait_for(".provider").click()
    browser.wait_editor()
    status = browser.status()
    assert status["tenant"] == "web-b"
    assert browser.fetch("/tenancy/me")["body"]["subject"] == "external:carol"
    request = oidc_provider.authorize_requests[-1]
    assert request["code_challenge_method"] == "S256" and oidc_provider.token_requests[-1]["code_verifier"]


def test_openid_sign_in_without_a_known_tenant_is_explained(browsers, oidc_provider):
    oidc_provider.user = {"sub": "mallory", "tenant": "no-such-tenant"}
    browser = browsers()
    browser.open("/tenancy/login")
    browser.wait_for(".provider").click()
    browser.wait(lambda: "error=" in browser.path and browser.find("#error").text, 30)
    assert "disabled or unknown" in browser.find("#error").text


def throttled_now(url: str, username: str) -> bool:
    """Wrong passwords from here until the account is refused (within the burst of 5 the limit allows)."""
    for _ in range(6):
        answer = requests.post(f"{url}/tenancy/login", json={"username": username, "password": "wrong"}, timeout=30)
        if answer.status_code == 429:
            return True
    return False
