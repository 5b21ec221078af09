"""Every UI-format workflow in workflows/ is offered in the editor's templates menu and loads there without
missing-node errors (the plugin's own nodes and ComfyUI's are all registered).

The example media the workflows name are uploaded by the tenant first: they must then resolve in the tenant's own
file combos (the guard rewrites /object_info's file lists per tenant, in the list form `[[names], {...}]` and in the
V3 form `["COMBO", {"options": [names]}]`). Newer frontends flag a node whose combo value is not among its options
("missing inputs" / "missing models", `has_errors`); the only such values allowed here are model files that the
test installation does not have."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tenancy.installation import PLUGIN_LINK_NAME
from tests.conftest import FIXTURES

from .conftest import signed_in

pytestmark = pytest.mark.comfy
WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"
UI_WORKFLOWS = sorted(WORKFLOWS.glob("*.json"))
MEDIA_LOADERS = {"LoadImage": (FIXTURES / "media" / "portrait_astronaut_256.png", "image/png"),
                 "LoadAudio": (FIXTURES / "media" / "speech_en_16k.wav", "audio/wav")}


def example_media() -> dict[str, tuple[Path, str]]:
    """The file names the workflows' media loaders use, with a fixture to upload under each name."""
    named = {}
    for path in UI_WORKFLOWS:
        for node in json.loads(path.read_text(encoding="utf-8"))["nodes"]:
            if node["type"] in MEDIA_LOADERS and node.get("widgets_values"):
                named[node["widgets_values"][0]] = MEDIA_LOADERS[node["type"]]
    return named


@pytest.fixture(scope="module")
def editor(browsers, web_b):
    browser = signed_in(browsers, web_b)
    for name, (source, mime) in example_media().items():
        assert browser.upload(source, name, mime)["name"] == name
    refreshed = browser.js_async("app.refreshComboInNodes().then(() => done(true)).catch((e) => done(String(e)))")
    assert refreshed is True, refreshed
    return browser


def test_workflows_are_in_the_templates_menu(editor):
    listed = editor.fetch("/workflow_templates")["body"]
    assert sorted(listed.get(PLUGIN_LINK_NAME, [])) == sorted(p.stem for p in UI_WORKFLOWS)


@pytest.mark.parametrize("path", UI_WORKFLOWS, ids=lambda p: p.stem)
def test_ui_workflow_loads_without_missing_nodes(editor, path):
    workflow = json.loads(path.read_text(encoding="utf-8"))
    assert "nodes" in workflow and "links" in workflow, f"{path.name} is not a UI-format workflow"
    result = editor.js_async("""
        const [name, plugin] = args;
        const api = window.comfyAPI.api.api;
        api.fetchApi(`/workflow_templates/${plugin}/${name}`).then(async (r) => {
          if (!r.ok) { done({error: `fetch ${r.status}`}); return; }
          const workflow = await r.json();
          await app.loadGraphData(workflow, true, true, name);
          await new Promise((resolve) => setTimeout(resolve, 500));  // newer frontends check inputs after loading
          const nodes = app.graph.nodes.map((n) => ({
            type: n.type, registered: !!LiteGraph.registered_node_types[n.type], flagged: !!n.has_errors,
            // combo values that are not among the values the server offers this tenant
            unresolved: (n.widgets ?? []).filter((w) => Array.isArray(w.options?.values) && typeof w.value === 'string'
                                                && !w.options.values.includes(w.value)).map((w) => w.value),
          }));
          done({
            loaded: nodes.length, nodes,
            dialogs: Array.from(document.querySelectorAll('.p-dialog')).map((d) => d.innerText),
          });
        }).catch((e) => done({error: String(e)}));
    """, path.name, PLUGIN_LINK_NAME)
    assert "error" not in result, result
    assert result["loaded"] == len(workflow["nodes"]), result
    nodes = result["nodes"]
    assert [n["type"] for n in nodes if not n["registered"]] == [], result
    # A flagged node is one whose file is not there: never one of the tenant's uploads, only absent models.
    assert [n["type"] for n in nodes if n["flagged"] and not n["unresolved"]] == [], result
    unresolved = {value for n in nodes for value in n["unresolved"]}
    assert not unresolved & set(example_media()), result
    assert all(value.endswith((".safetensors", ".ckpt", ".pt", ".pth")) for value in unresolved), result
    assert not [n["type"] for n in nodes if n["type"] in MEDIA_LOADERS and n["flagged"]], result
    assert not [d for d in result["dialogs"] if "missing" in d.lower()], result["dialogs"]
    editor.screenshot(f"workflow-{path.stem}")
    editor.js("document.querySelectorAll('.p-dialog-close-button').forEach((b) => b.click())")
