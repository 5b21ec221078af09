"""The Sonic nodes in a real, guarded ComfyUI with tiny random models: LoadImage + LoadAudio -> loader ->
preprocess -> sampler -> CreateVideo -> SaveVideo gives an mp4 with the frames the duration implies and the
speech; models are loaded once and let go when ComfyUI frees memory; the UI workflow is a template."""

from __future__ import annotations

import io
import json
import time
import uuid
from fractions import Fraction

import av
import numpy as np
import pytest
from PIL import Image

from tests.conftest import FIXTURES

pytestmark = pytest.mark.comfy
REPO = FIXTURES.parents[1]
API_WORKFLOW = REPO / "workflows" / "api" / "sonic_talking_head.json"
UI_WORKFLOW = REPO / "workflows" / "sonic_talking_head.json"
DURATION = 1.3  # 32 audio frames at 25 fps -> 16 frames at 12.5 fps -> 31 frames at 25 fps after RIFE
FRAMES = 31
LOADED = "[sonic] loaded models"
REUSED = "[sonic] using the models already loaded"
SONIC_NODES = {"SonicLoader": "Sonic Loader", "SonicPreprocess": "Sonic Preprocess", "SonicSampler": "Sonic Sampler"}


def upload(client, path, name: str) -> str:
    response = client.upload_image(path, name=name)
    assert response.status_code == 200, response.text
    return response.json()["name"]


@pytest.fixture(scope="module")
def media(tenant_b, tmp_path_factory) -> dict:
    """Tenant B (premium: no duration or step limits) uploads a portrait, a speech clip and a faceless image."""
    tag = uuid.uuid4().hex[:6]
    blank = tmp_path_factory.mktemp("sonic") / "blank.png"
    Image.fromarray(np.full((128, 128, 3), 128, np.uint8)).save(blank)
    return {
        "image": upload(tenant_b, FIXTURES / "media" / "portrait_astronaut_256.png", f"sonic-{tag}.png"),
        "audio": upload(tenant_b, FIXTURES / "media" / "speech_en_16k.wav", f"sonic-{tag}.wav"),
        "blank": upload(tenant_b, blank, f"sonic-blank-{tag}.png"),
    }


def talking_head(media: dict, image: str = "image", seed: int = 0, **preprocess) -> dict:
    """The API workflow of workflows/api with the uploads, a short clip at 64 px and two steps."""
    workflow = json.loads(API_WORKFLOW.read_text(encoding="utf-8"))
    workflow["1"]["inputs"]["image"] = media[image]
    workflow["2"]["inputs"]["audio"] = media["audio"]
    workflow["5"]["inputs"].update({"duration": DURATION, "min_resolution": 64, **preprocess})
    workflow["7"]["inputs"].update({"seed": seed, "inference_steps": 2})
    return workflow


def timed_run(client, workflow: dict) -> tuple[dict, float]:
    started = time.monotonic()
    entry = client.run(workflow, timeout=120)
    return entry, time.monotonic() - started


def probe(client, saved: dict) -> dict:
    """Frame count, frame rate and audio length of a saved video, read back through /view."""
    response = client.get("/view", params=saved)
    assert response.status_code == 200, response.text
    with av.open(io.BytesIO(response.content)) as container:
        rate = container.streams.video[0].average_rate
        frames = sum(1 for _ in container.decode(video=0))
    with av.open(io.BytesIO(response.content)) as container:
        assert container.streams.audio, "the video has no audio stream"
        samples = sum(frame.samples for frame in container.decode(audio=0))
        audio_rate = container.streams.audio[0].rate
    return {"frames": frames, "fps": rate, "audio_seconds": samples / audio_rate}


@pytest.fixture(scope="module")
def first_run(tenant_b, media, comfyui) -> dict:
    entry, seconds = timed_run(tenant_b, talking_head(media))
    assert entry["status"]["status_str"] == "success", entry["status"]
    return {"entry": entry, "seconds": seconds, "loaded": comfyui.log_text().count(LOADED)}


def test_sonic_nodes_are_listed_in_object_info(tenant_b):
    for name, display in SONIC_NODES.items():
        info = tenant_b.get(f"/object_info/{name}").json()[name]
        assert info["display_name"] == display and info["category"] == "talking head/Sonic"
    loader = tenant_b.get("/object_info/SonicLoader").json()["SonicLoader"]
    assert loader["input"]["required"]["unet"][0] == ["auto", "unet.pth"]
    assert "CC BY-NC-SA 4.0" in loader["description"]


def test_talking_head_video_has_the_frames_of_the_duration_and_keeps_the_speech(tenant_b, first_run, comfyui):
    outputs = first_run["entry"]["outputs"]
    video = probe(tenant_b, outputs["9"]["images"][0])
    assert video["frames"] == FRAMES and video["fps"] == Fraction(25)
    assert video["audio_seconds"] == pytest.approx(FRAMES / 25, abs=0.05)
    assert outputs["6"]["images"]  # the crop preview
    assert "[sonic] face detection: OpenCV Haar cascade" in comfyui.log_text()
    assert first_run["loaded"] >= 1


def test_second_run_reuses_the_cached_models(tenant_b, media, first_run, comfyui):
    # another prompt in between makes ComfyUI drop its cached loader output, so the loader really runs again
    other = tenant_b.run({"1": {"class_type": "LoadImage", "inputs": {"image": media["blank"]}},
                          "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}})
    assert other["status"]["status_str"] == "success"
    reused = comfyui.log_text().count(REUSED)
    entry, seconds = timed_run(tenant_b, talking_head(media, seed=7))
    assert entry["status"]["status_str"] == "success", entry["status"]
    assert comfyui.log_text().count(LOADED) == first_run["loaded"]
    assert comfyui.log_text().count(REUSED) == reused + 1
    assert "[sonic] released" not in comfyui.log_text()
    print(f"\nSonic tiny-model workflow on CPU: first run {first_run['seconds']:.1f} s, second run {seconds:.1f} s")


def test_a_portrait_without_a_face_is_the_preprocess_node_error(tenant_b, media):
    entry = tenant_b.run(talking_head(media, image="blank"))
    assert entry["status"]["status_str"] == "error"
    errors = [data for kind, data in entry["status"]["messages"] if kind == "execution_error"]
    assert errors and errors[0]["node_id"] == "5"
    assert "found no face" in errors[0]["exception_message"]


def test_a_portrait_without_a_face_may_be_animated_whole(tenant_b, media):
    entry = tenant_b.run(talking_head(media, image="blank", duration=0.5, use_whole_image_if_no_face=True))
    assert entry["status"]["status_str"] == "success", entry["status"]
    assert probe(tenant_b, entry["outputs"]["9"]["images"][0])["frames"] == 11  # 12 audio frames -> 6 -> 11


def test_ui_workflow_is_offered_in_the_templates_menu(tenant_b):
    listed = tenant_b.get("/workflow_templates").json()
    assert "sonic_talking_head" in listed.get("comfyui-tenancy", [])
    served = tenant_b.get("/api/workflow_templates/comfyui-tenancy/sonic_talking_head.json")
    assert served.status_code == 200 and served.json() == json.loads(UI_WORKFLOW.read_text(encoding="utf-8"))


def test_ui_workflow_links_fit_the_nodes_comfyui_knows(tenant_b):
    workflow = json.loads(UI_WORKFLOW.read_text(encoding="utf-8"))
    nodes = {node["id"]: node for node in workflow["nodes"]}
    info = tenant_b.get("/object_info").json()
    for node in nodes.values():
        assert node["type"] in info or node["type"] == "MarkdownNote", node["type"]
    for _, origin, slot, target, target_slot, kind in workflow["links"]:
        source_info, target_info = info[nodes[origin]["type"]], info[nodes[target]["type"]]
        name = nodes[target]["inputs"][target_slot]["name"]
        declared = {**target_info["input"]["required"], **target_info["input"].get("optional", {})}[name]
        assert source_info["output"][slot] == kind == declared[0], (nodes[origin]["type"], name)


def test_models_are_released_when_comfyui_frees_memory(operator, tenant_b, media, first_run, comfyui):
    loaded = comfyui.log_text().count(LOADED)
    # ComfyUI's worker can miss the wake-up of a /free that arrives while it tidies up after a prompt; the flag
    # then waits for its next wake-up (up to 1000 s when idle). Asking again wakes it, as an operator would.
    deadline = time.monotonic() + 30
    while "[sonic] released cached models" not in comfyui.log_text() and time.monotonic() < deadline:
        assert operator.post("/free", json={"unload_models": True, "free_memory": True}).status_code == 200
        asked = time.monotonic()
        while "[sonic] released cached models" not in comfyui.log_text() and time.monotonic() < asked + 5:
            time.sleep(0.2)
    assert "[sonic] released cached models" in comfyui.log_text()
    entry = tenant_b.run(talking_head(media, seed=3, duration=0.3))
    assert entry["status"]["status_str"] == "success", entry["status"]
    assert comfyui.log_text().count(LOADED) == loaded + 1
