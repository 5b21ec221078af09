"""ComfyUI's own editor behind a round-robin balancer without sticky sessions: one Chromium against two real
guarded ComfyUIs with the cluster queue on (one redis-server) and user data in a real S3 bucket (SeaweedFS).

An artist signs in on instance 0, saves a workflow with the editor's own Save (the `Comfy.SaveWorkflow` command:
its file-name prompt, typed into) and changes a setting through the frontend's settings API; the same browser
then opens instance 1, whose editor lists the saved workflow, opens it with the content saved, and reads the
setting's new value. With instance 1 drained, a prompt queued from instance 1's editor runs on instance 0 and
instance 1's editor shows its preview image (the image loads)."""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

import pytest

from tests.harness.client import ComfyClient
from tests.harness.cluster import drained, ended, job, owner_of, running_cluster
from tests.harness.tenants import PASSWORD
from tests.harness.waiting import wait_until

from .conftest import CHROMEDRIVER, CHROMIUM, Browser

pytestmark = pytest.mark.comfy
PREFIX = "shared/"
WHO = "light"  # a seeded tenant without a daily quota
SETTING = ("Comfy.Sidebar.Location", "right")  # ComfyUI's default is "left"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, seaweedfs):
    with running_cluster(tmp_path_factory, "editor", 2, {"outputs": seaweedfs.outputs(prefix=PREFIX)}) as cluster:
        workers, seeded, _ = cluster
        # A new editor user opens the templates browser once; this test starts from the empty canvas instead.
        answer = ComfyClient(workers[0].url, seeded.keys[WHO]).post("/settings/Comfy.TutorialCompleted", json=True)
        assert answer.status_code == 200, answer.text
        yield cluster


@pytest.fixture(scope="module")
def browser(cluster):
    for binary in (CHROMIUM, CHROMEDRIVER):
        if not Path(binary).exists():
            raise RuntimeError(f"{binary} is missing: `make system` installs Debian's chromium and chromium-driver")
    workers, _, _ = cluster
    # The tab goes from instance 0's origin to instance 1's (behind a balancer it has one): Chrome's back/forward
    # cache keeps instance 0's page and its socket of the same client id open there, which instance 1's newer socket
    # replaces (the relay's opened frame), as a newer socket of a client id replaces the older on one ComfyUI.
    opened = Browser(workers[0].url, Path(tempfile.mkdtemp(prefix="chromium-profile-")))
    yield opened
    opened.quit()


def open_editor(browser: Browser, url: str, username: str) -> None:
    """Open the editor at `url` in this browser, signing in when that instance asks for it."""
    browser.url = url.rstrip("/")
    browser.open("/")
    at = browser.wait(lambda: ("login" if browser.path.startswith("/tenancy/login")
                               else "editor" if browser.js("return !!(window.app && window.app.graph)") else None),
                      60, "neither the login page nor the editor came up")
    if at == "login":
        browser.sign_in(username, PASSWORD)
    browser.wait_editor()


def save_with_the_editor(browser: Browser, name: str, title: str) -> None:
    """Put a graph of its own on the canvas and save it the way Ctrl+S does: the editor's `Comfy.SaveWorkflow`
    command, which asks for a file name in its prompt dialog."""
    from selenium.webdriver.common.keys import Keys

    loaded = browser.js_async("""
        const [title] = args;
        app.loadGraphData({last_node_id: 0, last_link_id: 0, nodes: [], links: [], groups: [], config: {},
                           extra: {}, version: 0.4}, true, true, null)
          .then(() => {
            const node = LiteGraph.createNode('EmptyImage');
            node.title = title;
            app.graph.add(node);
            // what the editor's own mouse and key handlers do after an edit: record the graph's new state
            app.extensionManager.workflow.activeWorkflow.changeTracker.checkState();
            done(app.graph.nodes.length);
          }).catch((e) => done(String(e)));
    """, title)
    assert loaded == 1, loaded
    commands = browser.js("return !!app.extensionManager?.command?.execute")
    assert commands, "this frontend has no command API (app.extensionManager.command)"
    browser.js("app.extensionManager.command.execute('Comfy.SaveWorkflow')")
    field = browser.wait_for(".prompt-dialog-content input")
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(name.removesuffix(".json"), Keys.ENTER)
    saved = browser.wait(lambda: browser.js("""
        const w = app.extensionManager.workflow.getWorkflowByPath(arguments[0]);
        return w && !w.isTemporary && w.isPersisted && !w.isModified && !app.extensionManager.workflow.isBusy
          ? w.path : null;
    """, f"workflows/{name}"), 30, "the editor did not save the workflow")
    assert saved == f"workflows/{name}"


def test_a_workflow_and_a_setting_saved_on_one_instance_are_the_editors_on_the_other(cluster, browser):
    workers, seeded, _ = cluster
    username = seeded.users[WHO]
    name, title = f"cluster-{uuid.uuid4().hex[:8]}.json", f"made on instance 0 {uuid.uuid4().hex[:6]}"

    open_editor(browser, workers[0].url, username)
    save_with_the_editor(browser, name, title)
    key, value = SETTING
    assert browser.js("return app.extensionManager.setting.get(arguments[0])", key) != value
    answer = browser.js_async("""
        app.extensionManager.setting.set(args[0], args[1]).then(() => done(true)).catch((e) => done(String(e)));
    """, key, value)
    assert answer is True, answer

    open_editor(browser, workers[1].url, username)
    assert browser.driver.current_url.startswith(workers[1].url)
    # the editor lists the user's workflows as it starts (its workflow store's sync)
    listed = browser.wait(lambda: browser.js("""
        return app.extensionManager.workflow.workflows.filter((w) => !w.isTemporary).map((w) => w.path);
    """), 30, "the editor on instance 1 lists no saved workflow")
    assert f"workflows/{name}" in listed, listed
    opened = browser.js_async("""
        const w = app.extensionManager.workflow.getWorkflowByPath(args[0]);
        w.load().then(() => done(w.activeState.nodes.map((n) => [n.type, n.title])))
          .catch((e) => done(String(e)));
    """, f"workflows/{name}")
    assert opened == [["EmptyImage", title]], opened
    assert browser.js("return app.extensionManager.setting.get(arguments[0])", key) == value


def test_a_prompt_queued_on_a_drained_instance_runs_on_the_other_and_its_preview_shows(cluster, browser):
    workers, seeded, client = cluster
    username = seeded.users[WHO]
    open_editor(browser, workers[1].url, username)
    with drained(ComfyClient(workers[1].url, seeded.keys["admin"])):
        answer = browser.queue_api_workflow({
            "1": {"class_type": "EmptyImage", "inputs": {"width": 24, "height": 16, "batch_size": 1,
                                                         "color": 0x3366CC}},
            "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}})
        assert answer and answer.get("prompt_id"), answer
        prompt_id = answer["prompt_id"]
        record = wait_until(lambda: ended(client, [prompt_id]), 60, "the prompt's end")[prompt_id]
    assert record["state"] == "done", record
    assert owner_of(workers, record) is workers[0], job(client, prompt_id)
    size = browser.wait(lambda: browser.js("""
        const node = app.graph.getNodeById(2);
        const img = node?.imgs?.[0]
          ?? Array.from(document.querySelectorAll('img')).find((i) => i.src.includes('/view?'));
        return img && img.complete && img.naturalWidth > 0 ? [img.naturalWidth, img.naturalHeight, img.src] : null;
    """), 60, "the editor on instance 1 shows no loaded preview image")
    assert size[:2] == [24, 16], size
    assert size[2].startswith(workers[1].url), size  # served by the instance the editor is on
