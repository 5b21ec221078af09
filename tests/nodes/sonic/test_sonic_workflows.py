"""The two shipped workflows describe the same graph: the UI one (templates menu) and the API one (tests)."""

from __future__ import annotations

import json

import pytest

from nodes import NODE_CLASS_MAPPINGS
from nodes.sonic_comfy.files import SonicFolder
from tests.conftest import FIXTURES

WORKFLOWS = FIXTURES.parents[1] / "workflows"
WIDGET_TYPES = ("INT", "FLOAT", "BOOLEAN", "STRING")
SVD_CHECKPOINT = "ImageOnlyCheckpointLoader"  # only in the UI workflow: tests have no SVD checkpoint


@pytest.fixture(scope="module")
def ui() -> dict:
    return json.loads((WORKFLOWS / "sonic_talking_head.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def api() -> dict:
    return json.loads((WORKFLOWS / "api" / "sonic_talking_head.json").read_text(encoding="utf-8"))


def ui_edges(ui: dict) -> set[tuple]:
    nodes = {node["id"]: node for node in ui["nodes"]}
    return {
        (nodes[origin]["type"], slot, nodes[target]["type"], nodes[target]["inputs"][target_slot]["name"])
        for _, origin, slot, target, target_slot, _ in ui["links"]
    }


def api_edges(api: dict) -> set[tuple]:
    return {
        (api[value[0]]["class_type"], value[1], node["class_type"], name)
        for node in api.values()
        for name, value in node["inputs"].items()
        if isinstance(value, list)
    }


def widget_names(class_type: str) -> list[str]:
    """Widget order in the editor: required non-link inputs, seed followed by its control widget."""
    names = []
    for name, spec in NODE_CLASS_MAPPINGS[class_type].INPUT_TYPES()["required"].items():
        if isinstance(spec[0], list) or spec[0] in WIDGET_TYPES:
            names.append(name)
            if len(spec) > 1 and spec[1].get("control_after_generate"):
                names.append(None)
    return names


def test_ui_and_api_workflows_link_the_same_nodes(ui, api):
    assert {e for e in ui_edges(ui) if e[0] != SVD_CHECKPOINT} == api_edges(api)
    svd_edges = {(SVD_CHECKPOINT, 1, "SonicLoader", "clip_vision"), (SVD_CHECKPOINT, 2, "SonicLoader", "vae")}
    assert svd_edges <= ui_edges(ui)


def test_ui_and_api_workflows_set_the_same_sonic_values(ui, api, monkeypatch, tmp_path):
    monkeypatch.setattr(SonicFolder, "from_comfy", classmethod(lambda cls: SonicFolder((tmp_path,))))
    api_by_type = {node["class_type"]: node["inputs"] for node in api.values()}
    for node in ui["nodes"]:
        if node["type"] in NODE_CLASS_MAPPINGS:
            values = dict(zip(widget_names(node["type"]), node["widgets_values"], strict=True))
            values.pop(None, None)
            assert values == {k: v for k, v in api_by_type[node["type"]].items() if not isinstance(v, list)}
