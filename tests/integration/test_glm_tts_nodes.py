"""GLM-TTS nodes in the real, guarded ComfyUI with the tiny model set: two tenants clone, save, load and speak.

Tenant B never lists or loads tenant A's voice, A's pronunciation dictionary changes A's tokens and not B's,
a saved voice is encrypted at rest, and speaking from a saved voice runs neither the speech tokenizer nor CAM++.
"""

from __future__ import annotations

import copy
import json
import time
import wave
from pathlib import Path

import pytest

from tests.conftest import FIXTURES

pytestmark = pytest.mark.comfy

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = json.loads((REPO / "workflows" / "api" / "glm_tts_voice_clone.json").read_text(encoding="utf-8"))
UI_WORKFLOW = json.loads((REPO / "workflows" / "glm_tts_voice_clone.json").read_text(encoding="utf-8"))
HELLO, BANK = "你好。", "银行。"  # no dictionary word / a word tenant A's dictionary respells
A_WORDS = '{"银行": "银<|H|><|ANG2|>"}\n'
RUN_TIMEOUT = 300


def clone(audio: str, name: str, text: str = HELLO, seed: int = 1) -> dict:
    workflow = copy.deepcopy(WORKFLOW)
    workflow["1"]["inputs"]["audio"] = audio
    workflow["3"]["inputs"]["prompt_text"] = "Hello there."
    workflow["4"]["inputs"]["name"] = name
    workflow["5"]["inputs"].update(text=text, seed=seed, use_phoneme=True)
    return workflow


def speak(voice: str, text: str, seed: int = 1) -> dict:
    """The clone workflow with its first three nodes replaced by Load Voice."""
    workflow = {k: v for k, v in copy.deepcopy(WORKFLOW).items() if k in ("2", "5", "6")}
    workflow["3"] = {"class_type": "GlmTtsLoadVoice", "inputs": {"voice": voice}}
    workflow["5"]["inputs"].update(voice=["3", 0], text=text, seed=seed, use_phoneme=True)
    return workflow


def glm_ui(entry: dict, node: str) -> dict:
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"])[-2000:]
    return entry["outputs"][node]["glm_tts"][0]


def queue(client, workflow: dict):
    """POST /prompt, waiting out the guard's rate limit (these tests send prompts back to back)."""
    for _ in range(20):
        response = client.queue(workflow)
        if response.status_code != 429:
            return response
        time.sleep(min(float(response.headers.get("Retry-After", "1")), 5.0))
    return response


def run(client, workflow: dict) -> dict:
    response = queue(client, workflow)
    assert response.status_code == 200, response.text
    return client.wait_history(response.json()["prompt_id"], RUN_TIMEOUT)


def voice_options(client) -> list:
    info = client.get("/object_info/GlmTtsLoadVoice").json()
    return info["GlmTtsLoadVoice"]["input"]["required"]["voice"][0]


@pytest.fixture(scope="module")
def prompt_wav(tmp_path_factory) -> Path:
    """3.5 s of the English test speech (inside the 3-10 s a prompt should have)."""
    path = tmp_path_factory.mktemp("glm") / "prompt.wav"
    with wave.open(str(FIXTURES / "media" / "speech_en_16k.wav")) as src, wave.open(str(path), "wb") as dst:
        dst.setparams(src.getparams())
        dst.writeframes(src.readframes(int(3.5 * src.getframerate())))
    return path


@pytest.fixture(scope="module")
def tenancy_dir(comfyui) -> Path:
    return comfyui.base / "user" / "tenancy"


@pytest.fixture(scope="module")
def a_profile(tenancy_dir) -> Path:
    folder = tenancy_dir / "tenants" / "tenant-a"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "a-words.jsonl").write_text(A_WORDS, encoding="utf-8")
    (folder / "tts.yaml").write_text("dictionary: a-words.jsonl\ndelete_prompt_audio: true\n", encoding="utf-8")
    return folder / "tts.yaml"


@pytest.fixture(scope="module")
def a_clone(tenant_a, prompt_wav, a_profile) -> dict:
    uploaded = tenant_a.upload_image(prompt_wav, name="a-prompt.wav")
    assert uploaded.status_code == 200, uploaded.text
    return run(tenant_a, clone("a-prompt.wav", "a-narrator"))


@pytest.fixture(scope="module")
def b_clone(tenant_b, prompt_wav, a_clone) -> dict:
    uploaded = tenant_b.upload_image(prompt_wav, name="b-prompt.wav")
    assert uploaded.status_code == 200, uploaded.text
    return run(tenant_b, clone("b-prompt.wav", "b-narrator"))


def test_a_voice_is_checked_cloned_saved_and_speaks_in_one_run(tenant_a, a_clone):
    checked = glm_ui(a_clone, "3")
    assert checked["duration_s"] == pytest.approx(3.5, abs=0.01) and checked["warnings"] == []
    assert abs(checked["speech_tokens"] - 3.5 * 25) <= 1
    assert glm_ui(a_clone, "4")["voice"] == "a-narrator"
    spoken = glm_ui(a_clone, "5")
    assert spoken["chunks"] == 1 and spoken["speech_tokens"] > 0 and spoken["seconds"] > 0
    audio = a_clone["outputs"]["6"]["audio"][0]
    assert audio["subfolder"] == "audio" and tenant_a.get("/view", params=audio).status_code == 200


def test_the_saved_voice_is_encrypted_at_rest(a_clone, tenancy_dir):
    from nodes.glm_tts_comfy.sealed_voice import read_sealed, voice_key
    from tenancy.bootstrap import read_secret

    path = tenancy_dir / "tenants" / "tenant-a" / "voices" / "a-narrator.voice"
    voice = read_sealed(path, voice_key(read_secret(tenancy_dir / "master.secret"), "tenant-a"), "tenant-a")
    blob = path.read_bytes()
    embedding = voice.embedding.float().numpy()
    assert embedding.shape == (192,) and embedding.tobytes() not in blob
    assert all(embedding[i: i + 4].tobytes() not in blob for i in range(0, 192, 4))
    assert voice.prompt_mel.float().numpy()[0].tobytes() not in blob
    assert b"prompt_speech_tokens" not in blob and voice.prompt_text.encode() not in blob


def test_a_profile_deletes_as_prompt_audio_once_the_voice_is_saved_b_keeps_its_own(tenant_a, tenant_b, a_clone,
                                                                                    b_clone):
    assert glm_ui(a_clone, "4")["deleted_prompt_audio"] == ["a-prompt.wav"]
    assert tenant_a.get("/view", params={"filename": "a-prompt.wav", "type": "input"}).status_code == 404
    assert glm_ui(b_clone, "4")["deleted_prompt_audio"] == []
    assert tenant_b.get("/view", params={"filename": "b-prompt.wav", "type": "input"}).status_code == 200


def test_each_tenant_lists_only_its_own_voices(tenant_a, tenant_b, b_clone):
    assert "a-narrator" in voice_options(tenant_a) and "b-narrator" not in voice_options(tenant_a)
    assert "b-narrator" in voice_options(tenant_b) and "a-narrator" not in voice_options(tenant_b)


def test_b_cannot_load_as_voice_by_its_name(tenant_b, b_clone):
    entry = run(tenant_b, speak("a-narrator", HELLO))
    assert entry["status"]["status_str"] == "error"
    assert "voice_not_found" in json.dumps(entry["status"]) and "6" not in entry["outputs"]


@pytest.mark.parametrize("name", ["../tenant-a/voices/a-narrator", "tenants/tenant-a/voices/a-narrator",
                                  "/tmp/a-narrator.voice"])
def test_b_cannot_reach_as_voice_by_a_path(tenant_b, b_clone, name):
    response = queue(tenant_b, speak(name, HELLO))
    assert response.status_code == 400 and "voice_name_invalid" in response.text


@pytest.mark.parametrize("name", ["../tenant-a/voices/stolen", "shared/../x", ""])
def test_a_voice_cannot_be_saved_under_a_path(tenant_b, b_clone, name):
    workflow = clone("b-prompt.wav", name)
    del workflow["5"], workflow["6"]  # ComfyUI would still run the other, valid output
    response = queue(tenant_b, workflow)
    assert response.status_code == 400 and "voice_name_invalid" in response.text


def test_as_dictionary_changes_as_tokens_and_not_bs(tenant_a, tenant_b, b_clone):
    runs = {(who, text): glm_ui(run(client, speak(f"{who}-narrator", text, seed=5)), "5")
            for who, client in (("a", tenant_a), ("b", tenant_b)) for text in (HELLO, BANK)}
    # Same prompt audio, same seed: without a dictionary word both tenants get the same tokens ...
    assert runs["a", HELLO]["token_digest"] == runs["b", HELLO]["token_digest"]
    # ... with one, only A's LM input and output change.
    assert runs["a", BANK]["text_digest"] != runs["b", BANK]["text_digest"]
    assert runs["a", BANK]["token_digest"] != runs["b", BANK]["token_digest"]


def test_speaking_from_a_saved_voice_runs_neither_speech_tokenizer_nor_campplus(tenant_a, b_clone, comfyui):
    after_cloning = glm_ui(b_clone, "5")
    assert after_cloning["speech_tokenizer_calls"] >= 2 and after_cloning["campplus_calls"] >= 2
    first = glm_ui(run(tenant_a, speak("a-narrator", HELLO, seed=11)), "5")
    second = glm_ui(run(tenant_a, speak("a-narrator", HELLO, seed=12)), "5")
    for key in ("speech_tokenizer_calls", "campplus_calls"):
        assert first[key] == second[key] == after_cloning[key]
    log = comfyui.log_text()
    assert log.count("[glm-tts] loaded text tokenizer, LM, flow and HiFT") == 1
    assert log.count("[glm-tts] loaded speech tokenizer") == 1 and log.count("[glm-tts] loaded CAM++") == 1


def test_an_operator_publishes_a_shared_voice_every_tenant_lists_and_uses(operator, tenant_a, tenant_b, prompt_wav,
                                                                         b_clone):
    uploaded = operator.upload_image(prompt_wav, name="studio-prompt.wav")
    assert uploaded.status_code == 200, uploaded.text
    workflow = clone(uploaded.json()["name"], "shared/studio")
    del workflow["5"], workflow["6"]
    assert run(operator, workflow)["status"]["status_str"] == "success"
    assert "shared/studio" in voice_options(tenant_a) and "shared/studio" in voice_options(tenant_b)
    assert glm_ui(run(tenant_b, speak("shared/studio", HELLO)), "5")["speech_tokens"] > 0
    refused = run(tenant_b, clone("b-prompt.wav", "shared/mine"))
    assert refused["status"]["status_str"] == "error" and "voice_shared_read_only" in json.dumps(refused["status"])


def test_a_long_synthesis_reports_progress_and_stops_when_interrupted(tenant_b, b_clone):
    long_text = "今天天气很好，我们一起去银行。" * 12
    response = queue(tenant_b, speak("b-narrator", long_text, seed=21))
    assert response.status_code == 200, response.text
    prompt_id = response.json()["prompt_id"]
    deadline = time.monotonic() + RUN_TIMEOUT
    while prompt_id not in [item[1] for item in tenant_b.get("/queue").json()["queue_running"]]:
        assert time.monotonic() < deadline, "the prompt never started"
        time.sleep(0.2)
    time.sleep(2.0)  # well inside the first of several chunks
    assert tenant_b.post("/interrupt", json={"prompt_id": prompt_id}).status_code == 200
    entry = tenant_b.wait_history(prompt_id, RUN_TIMEOUT)
    events = [message[0] for message in entry["status"]["messages"]]
    assert "execution_interrupted" in events and "6" not in entry["outputs"]


def widget_names(info: dict) -> list[str]:
    """Widget inputs of a node in /object_info order, with the seed's "control after generate" value."""
    names = []
    for section in ("required", "optional"):
        for name, spec in (info["input"].get(section) or {}).items():
            kind = spec[0]
            if isinstance(kind, list) or kind in ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"):
                names.append(name)
                if name == "seed":
                    names.append("control_after_generate")
    return names


def test_ui_workflow_matches_its_api_twin_and_the_node_definitions(operator):
    nodes = [n for n in UI_WORKFLOW["nodes"] if n["type"] != "Note"]
    assert {str(n["id"]): n["type"] for n in nodes} == {k: v["class_type"] for k, v in WORKFLOW.items()}
    for node in nodes:
        api = WORKFLOW[str(node["id"])]["inputs"]
        info = operator.get(f"/object_info/{node['type']}").json()[node["type"]]
        if node["type"].startswith("GlmTts"):
            values = dict(zip(widget_names(info), node["widgets_values"], strict=True))
            assert {k: v for k, v in values.items() if k != "control_after_generate"} == \
                {k: v for k, v in api.items() if not isinstance(v, list)}
        for slot in node["inputs"]:
            source = next(link for link in UI_WORKFLOW["links"] if link[0] == slot["link"])
            assert api[slot["name"]] == [str(source[1]), source[2]]
