"""The text → GLM-TTS → Sonic → video-with-sound example: its API twin runs on the real ComfyUI with the tiny test
models, and the UI workflow (a template) links the same nodes with the same values, in types ComfyUI knows."""

from __future__ import annotations

import io
import json
import uuid
import wave

import av
import pytest

from tests.conftest import FIXTURES

pytestmark = pytest.mark.comfy
REPO = FIXTURES.parents[1]
NAME = "tts_to_talking_head"
UI = json.loads((REPO / "workflows" / f"{NAME}.json").read_text(encoding="utf-8"))
API = json.loads((REPO / "workflows" / "api" / f"{NAME}.json").read_text(encoding="utf-8"))
SVD_CHECKPOINT = "ImageOnlyCheckpointLoader"  # UI only: the tests have no Stable Video Diffusion checkpoint
FRONTEND_ONLY = ("MarkdownNote", "Note")


@pytest.fixture(scope="module")
def object_info(tenant_b) -> dict:
    return tenant_b.get("/object_info").json()


def test_ui_workflow_links_fit_the_nodes_comfyui_knows(object_info):
    nodes = {node["id"]: node for node in UI["nodes"]}
    for node in nodes.values():
        assert node["type"] in object_info or node["type"] in FRONTEND_ONLY, node["type"]
    for _, origin, slot, target, target_slot, kind in UI["links"]:
        source, sink = object_info[nodes[origin]["type"]], object_info[nodes[target]["type"]]
        name = nodes[target]["inputs"][target_slot]["name"]
        declared = {**sink["input"]["required"], **sink["input"].get("optional", {})}[name]
        assert source["output"][slot] == kind == declared[0], (nodes[origin]["type"], name)


def test_ui_and_api_twins_describe_the_same_graph(object_info):
    nodes = {node["id"]: node for node in UI["nodes"]}
    ui_edges = {(nodes[a]["type"], slot, nodes[b]["type"], nodes[b]["inputs"][s]["name"])
                for _, a, slot, b, s, _ in UI["links"] if nodes[a]["type"] != SVD_CHECKPOINT}
    api_edges = {(API[v[0]]["class_type"], v[1], node["class_type"], name)
                 for node in API.values() for name, v in node["inputs"].items() if isinstance(v, list)}
    assert ui_edges == api_edges
    for node_id, node in API.items():
        ui_node = nodes[int(node_id)]
        assert ui_node["type"] == node["class_type"]
        info = object_info[node["class_type"]]
        widgets = []
        for name in info.get("input_order", {}).get("required", list(info["input"]["required"])):
            spec = info["input"]["required"][name]
            if isinstance(spec[0], list) or spec[0] in ("INT", "FLOAT", "BOOLEAN", "STRING", "COMBO"):
                widgets.append(name)
                options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
                if options.get("control_after_generate") or name in ("seed", "noise_seed"):  # the editor adds one
                    widgets.append(None)
        values = dict(zip(widgets, ui_node["widgets_values"], strict=False))
        values.pop(None, None)
        for name, value in node["inputs"].items():
            if not isinstance(value, list) and name in values:
                assert values[name] == value, (node["class_type"], name)


def test_text_becomes_a_talking_head_video_with_its_speech(tenant_b, tmp_path):
    tag = uuid.uuid4().hex[:6]
    prompt_wav = tmp_path / "prompt.wav"
    with wave.open(str(FIXTURES / "media" / "speech_en_16k.wav")) as src, wave.open(str(prompt_wav), "wb") as dst:
        dst.setparams(src.getparams())
        dst.writeframes(src.readframes(int(3.5 * src.getframerate())))
    names = {}
    for key, path, name in (("audio", prompt_wav, f"tts-{tag}.wav"),
                            ("image", FIXTURES / "media" / "portrait_astronaut_256.png", f"tts-{tag}.png")):
        uploaded = tenant_b.upload_image(path, name=name)
        assert uploaded.status_code == 200, uploaded.text
        names[key] = uploaded.json()["name"]
    workflow = json.loads(json.dumps(API))
    workflow["1"]["inputs"]["audio"] = names["audio"]
    workflow["4"]["inputs"].update(text="你好。我们今天很好。", use_phoneme=True, seed=1)  # words the tiny model knows
    workflow["5"]["inputs"]["image"] = names["image"]
    workflow["8"]["inputs"].update(duration=1.3, min_resolution=64)
    workflow["10"]["inputs"]["inference_steps"] = 2
    entry = tenant_b.run(workflow, timeout=300)
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"])[-2000:]
    saved = entry["outputs"]["12"]["images"][0]
    video = tenant_b.get("/view", params=saved)
    assert video.status_code == 200
    with av.open(io.BytesIO(video.content)) as container:
        assert container.streams.video and container.streams.audio, "a video with its sound track"
        frames = sum(1 for _ in container.decode(video=0))
    assert frames > 0
