"""Two tenants in two browsers on one ComfyUI: A works in the editor and sees its results and its usage; B sees
none of A's queue entries, history, previews, websocket messages or uploads. Refusals and rewrites are shown."""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import FIXTURES

from .conftest import signed_in, wait_until

pytestmark = pytest.mark.comfy
PORTRAIT = FIXTURES / "media" / "portrait_astronaut_256.png"
SPEECH = FIXTURES / "media" / "speech_en_16k.wav"


@pytest.fixture(scope="module")
def editor_a(browsers, web_a):
    return signed_in(browsers, web_a)


@pytest.fixture(scope="module")
def editor_b(browsers, web_b):
    browser = signed_in(browsers, web_b)
    # B listens to its own websocket from now on: nothing about A's prompts may ever arrive.
    browser.js("""
        window.__seen = [];
        const api = window.comfyAPI.api.api;
        for (const type of ['execution_start', 'executing', 'executed', 'progress', 'execution_success',
                            'execution_error', 'execution_interrupted', 'b_preview', 'b_preview_with_metadata'])
          api.addEventListener(type, (e) => window.__seen.push([type, e.detail?.prompt_id ?? null]));
    """)
    return browser


@pytest.fixture(scope="module")
def a_work(editor_a, editor_b):
    """A uploads a portrait from the page and queues load → save + preview from the editor, plus a slow
    prompt that is still queued or running when B looks."""
    name = f"a-{uuid.uuid4().hex[:8]}.png"
    uploaded = editor_a.upload(PORTRAIT, name, "image/png")
    assert uploaded == {"name": name, "subfolder": "", "type": "input"}
    answer = editor_a.queue_api_workflow({
        "1": {"class_type": "LoadImage", "inputs": {"image": name}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "web/portrait"}},
        "3": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}})
    assert answer and answer.get("prompt_id"), answer
    prompt_id = answer["prompt_id"]
    outputs = wait_until(lambda: editor_a.js("return app.nodeOutputs?.['2']?.images?.length"
                                             " && app.nodeOutputs?.['3']?.images?.length ? app.nodeOutputs : null"),
                         60, message="no preview or saved image arrived")
    editor_a.wait(lambda: "nothing queued" in editor_a.status()["text"], 30)
    editor_a.screenshot("editor")
    slow = editor_a.queue_api_workflow({"1": {"class_type": "TenancyTestSleep",
                                              "inputs": {"seconds": 8.0, "tag": "a-slow"}}})
    return {"name": name, "prompt_id": prompt_id, "preview": outputs["3"]["images"][0],
            "saved": outputs["2"]["images"][0], "slow": slow["prompt_id"]}


def view_path(ref: dict) -> str:
    from urllib.parse import urlencode

    return "/view?" + urlencode({"filename": ref["filename"], "subfolder": ref["subfolder"], "type": ref["type"]})


def test_a_sees_its_output_preview(editor_a, a_work):
    for ref in (a_work["preview"], a_work["saved"]):
        fetched = editor_a.fetch(view_path(ref))
        assert fetched["status"] == 200 and fetched["type"].startswith("image/"), (ref, fetched)
    history = editor_a.fetch(f"/history/{a_work['prompt_id']}")["body"]
    assert history[a_work["prompt_id"]]["status"]["status_str"] == "success"
    queue = editor_a.fetch("/queue")["body"]
    own = [item[1] for item in queue["queue_running"] + queue["queue_pending"]]
    mine = editor_a.fetch("/tenancy/queue")["body"]
    assert a_work["slow"] in own or editor_a.fetch(f"/history/{a_work['slow']}")["body"], "A's slow prompt is lost"
    assert all(p["position"] >= 0 for p in mine["pending"] + mine["running"])


def test_b_sees_nothing_of_a(editor_a, editor_b, a_work):
    queue = editor_b.fetch("/queue")["body"]
    ids = [item[1] for item in queue["queue_running"] + queue["queue_pending"]]
    assert a_work["slow"] not in ids and a_work["prompt_id"] not in ids
    assert editor_b.fetch("/tenancy/queue")["body"]["running"] + editor_b.fetch("/tenancy/queue")["body"]["pending"] \
        == []
    wait_until(lambda: editor_a.fetch(f"/history/{a_work['slow']}")["body"], 60, message="A's slow prompt never ran")
    history = editor_b.fetch("/history")["body"]
    assert a_work["prompt_id"] not in history and a_work["slow"] not in history
    assert editor_b.fetch(f"/history/{a_work['prompt_id']}")["body"] == {}
    for ref in (a_work["preview"], a_work["saved"], {"filename": a_work["name"], "subfolder": "", "type": "input"}):
        assert editor_b.fetch(view_path(ref))["status"] in (403, 404), ref
    # The upload combo: A's file is offered to A, never to B.
    def load_image_files(browser):
        return browser.js_async("""
            window.comfyAPI.api.api.getNodeDefs().then((defs) => {
              const spec = defs.LoadImage.input.required.image;
              done(Array.isArray(spec[0]) ? spec[0] : (spec[1]?.options ?? []));
            });
        """)
    assert a_work["name"] in load_image_files(editor_a)
    assert a_work["name"] not in load_image_files(editor_b)
    editor_b.js("app.loadApiJson(arguments[0], 'combo.json')", {"1": {"class_type": "LoadImage", "inputs": {}}})
    combo = editor_b.js("const n = app.graph.nodes.find((n) => n.type === 'LoadImage');"
                        "return n.widgets.find((w) => w.name === 'image').options.values;")
    assert a_work["name"] not in combo
    seen = editor_b.js("return window.__seen")
    assert not [s for s in seen if s[1] in (a_work["prompt_id"], a_work["slow"])], seen


def test_status_element_shows_seconds_left_and_changes_after_a_run(editor_a):
    before = editor_a.status()
    assert float(before["remaining"]) > 0 and "left today" in before["text"]
    updates = int(before["updates"])
    editor_a.upload(SPEECH, "speech.wav", "audio/wav")
    answer = editor_a.queue_api_workflow({
        "1": {"class_type": "LoadAudio", "inputs": {"audio": "speech.wav"}},
        "2": {"class_type": "SaveAudio", "inputs": {"audio": ["1", 0], "filename_prefix": "web/speech"}}})
    assert answer.get("prompt_id"), answer
    after = wait_until(lambda: (s := editor_a.status()) and float(s["used"]) > float(before["used"]) and s, 60,
                       message="the status element did not change after the run")
    assert float(after["remaining"]) < float(before["remaining"])
    assert float(after["used"]) - float(before["used"]) == pytest.approx(8.5, abs=0.6)  # the speech's length
    assert int(after["updates"]) > updates  # pushed by websocket events, not the one-minute fallback


def test_forbidden_path_is_refused_with_the_node_highlighted_and_the_reason(editor_a):
    answer = editor_a.queue_api_workflow({
        "1": {"class_type": "LoadImage", "inputs": {"image": "../output/x.png"}},
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}, settle_s=1.0)
    assert answer["refused"]["node_errors"]["1"]["errors"][0]["extra_info"]["input_name"] == "image"
    errors = editor_a.js("return app.lastNodeErrors")
    assert errors["1"]["errors"][0]["extra_info"]["input_name"] == "image"  # the editor outlines node 1 in red
    notice = editor_a.wait_for("#tenancy-notice[data-kind='refusal']")
    assert "outside your files" in notice.text and "image" in notice.text
    assert "image" in editor_a.editor_error_text("outside your files")  # the editor's own error display
    toasts = [t.text for t in editor_a.all(".p-toast-message")]
    assert not [t for t in toasts if "server logs" in t], toasts  # operator-only logs are explained, not an error
    editor_a.screenshot("refusal")
    editor_a.js("document.querySelectorAll('.p-dialog-close-button').forEach((b) => b.click())")


def test_plan_rewrite_is_shown_as_a_dismissible_notice(editor_a):
    answer = editor_a.queue_api_workflow({"1": {"class_type": "TenancyTestParams", "inputs": {
        "steps": 50, "cfg": 7.0, "duration": 1.0, "width": 256, "model_name": "base.safetensors"}}})
    assert {"node": "1", "input": "steps", "before": 50, "after": 20, "reason": "forbidden_input"} \
        in answer["tenancy"]["rewrites"]
    notice = editor_a.wait_for("#tenancy-notice[data-kind='rewrites']")
    text = notice.text
    assert "steps" in text and "50" in text and "20" in text and "TenancyTestParams" in text
    editor_a.screenshot("rewrite")
    editor_a.js("arguments[0].click()", notice.find_element("css selector", ".tenancy-close"))
    editor_a.wait(lambda: not editor_a.all("#tenancy-notice"), 5, "the notice did not go away")
