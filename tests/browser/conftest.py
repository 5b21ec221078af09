"""Real Chromium (Debian's `chromium` + `chromium-driver`, headless) driven by selenium against the session ComfyUI.

Every browser gets a fresh, empty profile: separate browsers are separate contexts (cookies, storage). The tests
use tenants of their own (`web-a` on the basic plan, `web-b` on premium), made through the admin API, so quotas
and per-account login limits of other tests never meet theirs. Screenshots go to `$TENANCY_SCREENSHOTS`
(default `.cache/screenshots/`); `make screenshots` copies them to `docs/screenshots/`.
"""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness.client import ComfyClient
from tests.harness.tenants import PASSWORD

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = Path(os.environ.get("TENANCY_SCREENSHOTS", ROOT / ".cache" / "screenshots"))
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
# The flags that work on these machines (docs: ENVIRONMENT.md of the project's shared notes).
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,900")
EDITOR_TIMEOUT_S = 90


@dataclass(frozen=True)
class WebTenant:
    id: str
    plan: str
    username: str
    key: str
    client: ComfyClient


class Browser:
    """One Chromium with its own profile, and the few page actions the tests share."""

    def __init__(self, url: str, profile: Path) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in (*FLAGS, f"--user-data-dir={profile}"):
            options.add_argument(flag)
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        self.driver.set_script_timeout(60)
        self.url = url.rstrip("/")
        self.profile = profile

    # -- pages -------------------------------------------------------------------------------------------
    def open(self, path: str = "/") -> None:
        self.driver.get(self.url + path)

    def find(self, selector: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, selector)

    def all(self, selector: str) -> list:
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, selector)

    def wait(self, condition, timeout: float = 30, message: str = ""):
        from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
        from selenium.webdriver.support.ui import WebDriverWait

        # The pages re-render their tables: an element found a moment ago may be gone; look again.
        return WebDriverWait(self.driver, timeout, poll_frequency=0.2,
                             ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)
                             ).until(lambda _: condition(), message)

    def wait_for(self, selector: str, timeout: float = 30):
        return self.wait(lambda: (self.all(selector) or [None])[0], timeout, f"no {selector}")

    def js(self, script: str, *args):
        return self.driver.execute_script(script, *args)

    def js_async(self, script: str, *args):
        """`script` gets `done` as its last argument and must call it."""
        return self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1]; const args = Array.from(arguments).slice(0, -1);\n"
            + script, *args)

    def screenshot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    @property
    def path(self) -> str:
        return self.driver.current_url.removeprefix(self.url)

    # -- signing in ----------------------------------------------------------------------------------------
    def sign_in(self, username: str = "", password: str = "", api_key: str = "") -> None:
        """Fill the login page and submit it (the page must be open)."""
        self.fill_login(username, password, api_key)
        self.find("#submit").click()

    def fill_login(self, username: str = "", password: str = "", api_key: str = "") -> None:
        """Type into the login page's fields without submitting (the page must be open)."""
        self.wait_for("#submit")
        for field, value in (("#username", username), ("#password", password), ("#api_key", api_key)):
            element = self.find(field)
            element.clear()
            if value:
                element.send_keys(value)

    def wait_editor(self, timeout: float = EDITOR_TIMEOUT_S) -> None:
        """The graph editor is up and the tenancy extension has shown its status at least once."""
        self.wait(lambda: self.js("return !!(window.app && window.app.graph && window.comfyTenancy"
                                  " && document.querySelector('#tenancy-status[data-updates]'))"),
                  timeout, "the editor did not load with the tenancy status element")

    def cookie(self, name: str) -> str | None:
        found = self.driver.get_cookie(name)
        return found["value"] if found else None

    # -- the editor's own API, from the page -------------------------------------------------------------------
    def upload(self, source: Path, name: str, mime: str) -> dict:
        data = base64.b64encode(Path(source).read_bytes()).decode()
        answer = self.js_async("""
            const [b64, name, mime] = args;
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const form = new FormData();
            form.append('image', new Blob([bytes], {type: mime}), name);
            form.append('type', 'input');
            window.comfyAPI.api.api.fetchApi('/upload/image', {method: 'POST', body: form})
              .then(async (r) => done({status: r.status, body: await r.json().catch(() => null)}))
              .catch((e) => done({status: 0, body: String(e)}));
        """, data, name, mime)
        assert answer["status"] == 200, answer
        return answer["body"]

    def queue_api_workflow(self, workflow: dict, settle_s: float = 0.5) -> dict:
        """Load an API-format workflow into the graph and press Queue the way the editor does
        (`app.queuePrompt`); returns what the server answered (via the tenancy extension's record)."""
        return self.js_async("""
            const [workflow, settle] = args;
            const api = window.comfyAPI.api.api;
            let answer = null;
            const original = api.queuePrompt;
            api.queuePrompt = async (...a) => {
              try { answer = await original(...a); return answer; }
              catch (e) { answer = {refused: e.response ?? String(e)}; throw e; }
              finally { api.queuePrompt = original; }
            };
            try { app.loadApiJson(workflow, 'browser-test.json'); } catch (e) { done({error: 'load: ' + e}); return; }
            app.graph.arrange?.(80);
            app.queuePrompt(0, 1).then(() => setTimeout(() => done(answer), settle * 1000))
              .catch((e) => done({error: String(e)}));
        """, workflow, settle_s)

    def editor_error_text(self, needle: str, timeout: float = 15) -> str:
        """The text in which the editor itself shows a refused prompt's reason (`needle`), wherever this frontend
        puts it: older ones open an error dialog; newer ones (1.4x) show an error overlay whose "View details" opens
        the Errors panel, with each item's reason behind its info button."""
        return self.wait(lambda: self.js("""
            const needle = arguments[0];
            const found = (selector) => Array.from(document.querySelectorAll(selector))
              .map((e) => e.innerText).find((t) => t.includes(needle));
            const shown = found('.p-dialog') ?? found('[id^="execution-item-detail-"]');
            if (shown) return shown;
            document.querySelectorAll('[aria-controls^="execution-item-detail-"][aria-expanded="false"]')
              .forEach((b) => b.click());
            if (!document.querySelector('[aria-controls^="execution-item-detail-"]'))
              Array.from(document.querySelectorAll('button')).find((b) => b.innerText.trim() === 'View details')
                ?.click();
            return null;
        """, needle), timeout, "the editor's own error display shows no reason")

    def status(self) -> dict:
        return self.js("const el = document.getElementById('tenancy-status');"
                       "return el ? Object.assign({text: el.innerText}, el.dataset) : null;")

    def fetch(self, path: str) -> dict:
        """GET from the page with the page's own session (the editor's fetchApi)."""
        return self.js_async("""
            window.comfyAPI.api.api.fetchApi(args[0]).then(async (r) => {
              const type = r.headers.get('Content-Type') || '';
              done({status: r.status, type, body: type.includes('json') ? await r.json() : null});
            }).catch((e) => done({status: 0, body: String(e)}));
        """, path)

    def quit(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture(scope="module")
def browsers(comfyui):
    """A factory of fresh browsers, closed when their test module ends: an open editor or admin page keeps
    working (websocket, polling), and a session's worth of them once took a core from every later test."""
    for binary in (CHROMIUM, CHROMEDRIVER):
        if not Path(binary).exists():
            raise RuntimeError(f"{binary} is missing: `make system` installs Debian's chromium and chromium-driver")
    opened: list[Browser] = []

    def new() -> Browser:
        browser = Browser(comfyui.url, Path(tempfile.mkdtemp(prefix="chromium-profile-")))
        opened.append(browser)
        return browser

    yield new
    for browser in opened:
        browser.quit()


def _make_tenant(operator: ComfyClient, comfyui, tenant_id: str, plan: str) -> WebTenant:
    answer = operator.post("/tenancy/admin/tenants", json={"id": tenant_id, "plan": plan})
    assert answer.status_code in (201, 409), answer.text
    username = f"{tenant_id}-user"
    member = operator.post(f"/tenancy/admin/tenants/{tenant_id}/members",
                           json={"username": username, "password": PASSWORD})
    assert member.status_code in (201, 409), member.text
    key = operator.post(f"/tenancy/admin/tenants/{tenant_id}/keys", json={"name": "browser tests"})
    assert key.status_code == 201, key.text
    client = ComfyClient(comfyui.url, key.json()["key"])
    # A new editor user opens the templates browser once; these tests start from the empty canvas instead.
    assert client.post("/settings/Comfy.TutorialCompleted", json=True).status_code == 200
    return WebTenant(tenant_id, plan, username, key.json()["key"], client)


@pytest.fixture(scope="session")
def web_a(operator, comfyui) -> WebTenant:
    return _make_tenant(operator, comfyui, "web-a", "basic")


@pytest.fixture(scope="session")
def web_b(operator, comfyui) -> WebTenant:
    return _make_tenant(operator, comfyui, "web-b", "premium")


def signed_in(browsers, tenant: WebTenant) -> Browser:
    browser = browsers()
    browser.open("/")
    browser.wait(lambda: browser.path.startswith("/tenancy/login"), 30, "not sent to the login page")
    browser.sign_in(tenant.username, PASSWORD)
    browser.wait_editor()
    return browser


def wait_until(condition, timeout: float = 30, interval: float = 0.2, message: str = ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(message or "condition not met in time")
