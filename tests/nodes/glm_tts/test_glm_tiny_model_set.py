"""The tiny GLM-TTS model set in upstream's folder layout loads through `load_glm_tts` like the real one:
sizes read from the checkpoints, tokenizer from its rank file, CAM++ through onnxruntime; a saved voice then
synthesises without the speech tokenizer or CAM++."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from nodes.glm_tts import GlmTtsPaths, Voice, load_glm_tts, make_voice, synthesize
from nodes.glm_tts.flow import FlowConfig
from nodes.glm_tts.hift import HiFTConfig
from tests.harness.tiny_models import PARITY as TINY_SOURCE
from tests.harness.tiny_models import write_glm_tts
from tests.nodes.glm_tts.conftest import MEDIA_DIR, read_wav

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_glm_tts(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def models(root):
    return load_glm_tts(root)


@pytest.fixture(scope="module")
def prompt():
    wav, rate = read_wav(MEDIA_DIR / "speech_en_16k.wav")
    return wav[:, : int(3.5 * rate)], rate


def test_the_folder_has_upstreams_layout(root):
    paths = GlmTtsPaths.from_root(root)
    assert paths.llm == root / "ckpt" / "llm" and paths.campplus == root / "frontend" / "campplus.onnx"
    assert (paths.llm / "model.safetensors.index.json").is_file() and paths.kept_chars and paths.dictionary
    assert not list(root.rglob("*.py")), "no code ships with the weights"


def test_flow_and_vocoder_sizes_are_read_from_the_checkpoints(models):
    # The configurations this tiny set was written from (the harness's own copy, whatever PARITY_FIXTURES says).
    spec = json.loads((TINY_SOURCE / "flow" / "flow_config.json").read_text(encoding="utf-8"))
    assert models.flow.cfg == FlowConfig.from_upstream(spec["Flow"], spec["DiT_overrides"])
    hift = json.loads((TINY_SOURCE / "hift" / "hift_config.json").read_text(encoding="utf-8"))
    assert models.vocoder.cfg == HiFTConfig.from_upstream(hift["HiFTGenerator"], hift["ConvRNNF0Predictor"])


def test_special_ids_come_from_the_tokenizer_files(models):
    ids = models.ids
    assert ids.audio_vocab == 32768 and ids.pad < ids.eoa < ids.boa < ids.ats
    assert models.llm.config.vocab_size == ids.ate + 1
    phones = models.tokenizer.encode("<|H|><|ANG2|>")
    assert len(phones) == 2 and all(ids.boa < i < ids.ats for i in phones)


def test_voice_from_the_onnx_campplus_then_synthesis_from_the_saved_voice_alone(models, prompt):
    voice = make_voice(models, *prompt, "Hello there.")
    assert voice.embedding.shape == (192,) and abs(len(voice.prompt_speech_tokens) - 3.5 * 25) <= 1
    saved = Voice.from_bytes(voice.to_bytes())

    def refuse(*_):
        raise AssertionError("a saved voice needs neither the speech tokenizer nor CAM++")

    without_encoders = dataclasses.replace(models, loaded_speech_tokenizer=None, loaded_speaker_embedder=None,
                                           paths=None)
    without_encoders.speech_tokenizer = refuse
    without_encoders.speaker_embedder = refuse
    wav, rate = synthesize(without_encoders, saved, "你好。", seed=3)
    again, _ = synthesize(models, voice, "你好。", seed=3)
    assert rate == 24000 and wav.shape[1] > 0 and torch.equal(wav, again)


def test_the_real_checkpoints_shapes_give_upstreams_hard_coded_sizes(glm_manifest):
    from nodes.glm_tts.flow import dit_size_from_state
    from nodes.glm_tts.hift import hift_config_from_state

    def meta_state(relative: str) -> dict[str, torch.Tensor]:
        tensors = glm_manifest(relative)["tensors"]
        return {k: torch.empty(v["shape"], device="meta") for k, v in tensors.items()}

    dit = glm_manifest("ckpt/flow/config.yaml")["config"]["hard_coded_in_Flow"]["dit"]
    assert dit_size_from_state(meta_state("ckpt/flow/flow.pt")) == {k: dit[k] for k in (
        "trans_dim", "depth", "heads", "dim_head", "ff_mult")}
    assert hift_config_from_state(meta_state("ckpt/hift/hift.pt")) == HiFTConfig()
