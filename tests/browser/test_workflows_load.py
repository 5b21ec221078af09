"""Every UI-format workflow in workflows/ is offered in the editor's templates menu and loads there without
missing-node errors (the plugin's own nodes and ComfyUI's are all registered)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tenancy.comfy.home import PLUGIN_LINK_NAME

from .conftest import signed_in

pytestmark = pytest.mark.comfy
WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"
UI_WORKFLOWS = sorted(WORKFLOWS.glob("*.json"))


@pytest.fixture(scope="module")
def editor(browsers, web_b):
    return signed_in(browsers, web_b)


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
          const nodes = app.graph.nodes;
          done({
            loaded: nodes.length,
            missing: nodes.filter((n) => n.has_errors || !LiteGraph.registered_node_types[n.type]).map((n) => n.type),
            dialogs: Array.from(document.querySelectorAll('.p-dialog')).map((d) => d.innerText),
          });
        }).catch((e) => done({error: String(e)}));
    """, path.name, PLUGIN_LINK_NAME)
    assert "error" not in result, result
    assert result["loaded"] == len(workflow["nodes"]), result
    assert result["missing"] == [], result
    assert not [d for d in result["dialogs"] if "missing" in d.lower()], result["dialogs"]
    editor.screenshot(f"workflow-{path.stem}")
    editor.js("document.querySelectorAll('.p-dialog-close-button').forEach((b) => b.click())")
