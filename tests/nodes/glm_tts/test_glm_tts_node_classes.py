"""The GLM-TTS node classes outside ComfyUI: declarations the guard reads, model folder lookup, name checks."""

from __future__ import annotations

import pytest

from nodes.glm_tts_comfy.loading import model_choices, model_root
from nodes.glm_tts_comfy.nodes import NODE_CLASS_MAPPINGS, GlmTtsLoadVoice, GlmTtsSaveVoice
from nodes.shared_comfy import model_folders


def test_every_node_is_in_the_glm_tts_category_and_declares_tenancy_meta():
    assert set(NODE_CLASS_MAPPINGS) == {"GlmTtsLoader", "GlmTtsVoice", "GlmTtsSaveVoice", "GlmTtsLoadVoice",
                                        "GlmTtsSynthesize"}
    for cls in NODE_CLASS_MAPPINGS.values():
        assert cls.CATEGORY == "talking head/GLM-TTS" and isinstance(cls.TENANCY_META, dict)
    assert NODE_CLASS_MAPPINGS["GlmTtsLoadVoice"].TENANCY_META == {"tenant_lists": {"voice": "voices"}}
    assert NODE_CLASS_MAPPINGS["GlmTtsSynthesize"].TENANCY_META == {"estimate": {"text_input": "text"}}


@pytest.mark.parametrize("name", ["../tenant-a/voices/x", "a/b", "/abs", "", "shared/../x"])
def test_voice_names_that_look_like_paths_fail_validation(name):
    assert "voice_name_invalid" in GlmTtsLoadVoice.VALIDATE_INPUTS(name)
    assert "voice_name_invalid" in GlmTtsSaveVoice.VALIDATE_INPUTS(name)


def test_plain_and_shared_voice_names_pass_validation():
    assert GlmTtsLoadVoice.VALIDATE_INPUTS("narrator") is True
    assert GlmTtsLoadVoice.VALIDATE_INPUTS("shared/studio") is True


@pytest.fixture()
def glm_root(tmp_path, monkeypatch):
    monkeypatch.setattr(model_folders, "roots", lambda name: [tmp_path])
    monkeypatch.setattr(model_folders, "find", lambda name, rel: tmp_path / rel if (tmp_path / rel).exists() else None)
    return tmp_path


def test_model_choices_list_folders_with_a_glm_tts_checkout(glm_root):
    assert model_choices() == ["GLM-TTS"]  # offered even when missing, so running it names what is missing
    (glm_root / "GLM-TTS" / "ckpt" / "llm").mkdir(parents=True)
    (glm_root / "hf-snapshot" / "llm").mkdir(parents=True)
    (glm_root / "unrelated").mkdir()
    assert model_choices() == ["GLM-TTS", "hf-snapshot"]


def test_a_missing_model_folder_says_what_goes_where(glm_root):
    with pytest.raises(FileNotFoundError, match="glm_tts_model_missing") as missing:
        model_root("GLM-TTS")
    for part in ("ckpt/llm/", "ckpt/flow/flow.pt", "ckpt/hift/hift.pt", "frontend/campplus.onnx", "zai-org/GLM-TTS"):
        assert part in str(missing.value)


@pytest.mark.parametrize("name", ["../elsewhere", "a/b", ".hidden", ""])
def test_model_folder_names_cannot_leave_models_glm_tts(glm_root, name):
    with pytest.raises(ValueError, match="glm_tts_model_invalid"):
        model_root(name)

