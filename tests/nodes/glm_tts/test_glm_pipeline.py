"""GLM-TTS end to end on the tiny fixture models: make a voice, save it, synthesise long text reproducibly."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from nodes.glm_tts import GlmTtsModels, GlmTtsPaths, Voice, make_voice, synthesize
from nodes.glm_tts.flow import Flow, FlowConfig
from nodes.glm_tts.hift import HiFTConfig, HiFTGenerator
from nodes.glm_tts.lm import load_llm
from nodes.glm_tts.pipeline import MAX_LLM_SEQ_INP_LEN, PromptHistory
from nodes.glm_tts.speech_tokenizer import load_speech_tokenizer
from nodes.glm_tts.tokenizer import SpecialTokenIds

TEXT = "今天天气很好，我们一起去公园散步吧。公园里有很多花，红的、黄的、紫的，非常漂亮。"


class CharTokenizer:
    """Stands in for the GLM tokenizer (the tiny LM only knows text ids below its <|endoftext|>)."""

    def __init__(self, text_vocab: int):
        self.text_vocab = text_vocab

    def encode(self, text: str) -> list[int]:
        return [ord(c) % self.text_vocab for c in text[::8]]


@pytest.fixture(scope="module")
def models(parity) -> GlmTtsModels:
    raw = json.loads((parity.dir("llm") / "special_token_ids.json").read_text(encoding="utf-8"))
    ids = SpecialTokenIds(**{k: v for k, v in raw.items() if not k.startswith("_")})
    flow_spec = json.loads((parity.dir("flow") / "flow_config.json").read_text(encoding="utf-8"))
    flow = Flow(FlowConfig.from_upstream(flow_spec["Flow"], flow_spec["DiT_overrides"]))
    flow.load_state_dict(load_file(str(parity.dir("flow") / "flow.safetensors")))
    hift_spec = json.loads((parity.dir("hift") / "hift_config.json").read_text(encoding="utf-8"))
    vocoder = HiFTGenerator(HiFTConfig.from_upstream(hift_spec["HiFTGenerator"], hift_spec["ConvRNNF0Predictor"]))
    vocoder.load_state_dict(load_file(str(parity.dir("hift") / "hift.safetensors")))
    return GlmTtsModels(
        tokenizer=CharTokenizer(min(raw["pad"], raw["eoa"], raw["boa"])), ids=ids,
        llm=load_llm(parity.dir("llm") / "ckpt_llm"), flow=flow.eval(), vocoder=vocoder.eval(),
        device=torch.device("cpu"),
        loaded_speech_tokenizer=load_speech_tokenizer(parity.dir("speech_tokenizer") / "ckpt_speech_tokenizer"),
    )


def _embedder(features: torch.Tensor) -> torch.Tensor:
    proj = torch.linspace(-1, 1, features.shape[-1] * 192).reshape(features.shape[-1], 192)
    return features.mean(dim=1) @ proj


@pytest.fixture(scope="module")
def voice(models, zh_prompt) -> Voice:
    wav, sr = zh_prompt
    return make_voice(models, wav[:, : 2 * sr], sr, "你好，这是一个测试。", speaker_embedder=_embedder)


def test_voice_holds_normalised_text_tokens_mel_and_embedding(models, voice):
    assert voice.prompt_text == "你好，这是一个测试。"
    assert voice.prompt_text_tokens == models.tokenizer.encode(voice.prompt_text + " ")
    assert len(voice.prompt_speech_tokens) == 50  # 2 s at 25 Hz
    assert voice.prompt_mel.shape == (100, 80)  # 2 s at 50 Hz
    assert voice.embedding.shape == (192,)


def test_voice_round_trips_through_safetensors(voice, tmp_path):
    voice.save(tmp_path / "v.safetensors")
    back = Voice.load(tmp_path / "v.safetensors")
    assert back.prompt_text == voice.prompt_text and back.sample_rate == voice.sample_rate
    assert back.prompt_text_tokens == voice.prompt_text_tokens
    assert back.prompt_speech_tokens == voice.prompt_speech_tokens
    torch.testing.assert_close(back.prompt_mel, voice.prompt_mel)
    torch.testing.assert_close(back.embedding, voice.embedding)


def test_empty_prompt_text_is_refused(models, zh_prompt):
    with pytest.raises(ValueError, match="empty_prompt_text"):
        make_voice(models, zh_prompt[0], zh_prompt[1], "  ", speaker_embedder=_embedder)


def test_long_text_is_synthesised_chunk_by_chunk_and_reproducibly(models, voice):
    events = []
    wav, sr = synthesize(models, voice, TEXT, seed=3, callback=lambda *e: events.append(e))
    chunks = {e[0] for e in events}
    assert sr == 24000 and wav.ndim == 2 and wav.shape[0] == 1 and wav.shape[1] > 0
    assert wav.shape[1] % models.vocoder.cfg.hop_length == 0
    assert torch.isfinite(wav).all() and wav.abs().max() <= models.vocoder.cfg.audio_limit
    assert chunks == {0, 1} and {e[2] for e in events} == {"lm", "flow"}
    again, _ = synthesize(models, voice, TEXT, seed=3)
    torch.testing.assert_close(again, wav, rtol=0, atol=0)


def test_seed_changes_the_result(models, voice):
    a, _ = synthesize(models, voice, "你好。", seed=1)
    b, _ = synthesize(models, voice, "你好。", seed=2)
    assert a.shape != b.shape or not torch.equal(a, b)


def test_callback_can_interrupt_synthesis(models, voice):
    class Interrupted(Exception):
        pass

    def stop(*_):
        raise Interrupted

    with pytest.raises(Interrupted):
        synthesize(models, voice, "你好。", callback=stop)


def test_phoneme_mode_sends_dictionary_replacements_to_the_lm(models, voice):
    seen: list[str] = []

    class Recording(CharTokenizer):
        def encode(self, text: str) -> list[int]:
            seen.append(text)
            return super().encode(text)

    spy = replace(models, tokenizer=Recording(models.tokenizer.text_vocab))
    synthesize(spy, voice, "银行。", use_phoneme=True, dictionary={"银行": "银<|H|><|ANG2|>"})
    synthesize(spy, voice, "银行。", use_phoneme=False, dictionary={"银行": "银<|H|><|ANG2|>"})
    assert seen == ["银<|H|><|ANG2|>。", "银行。"]


def test_voice_for_another_sample_rate_is_refused(models, voice):
    with pytest.raises(ValueError, match="voice_rate_mismatch"):
        synthesize(models, replace(voice, sample_rate=32000), "你好。")


def test_prompt_history_prunes_after_the_voice_prompt_beyond_750_tokens():
    history = PromptHistory([[1] * 10, [2] * 10, [3] * 10], [[7] * 200, [8] * 200, [9] * 200])
    text, speech = history.prompt_for(10)  # 20 speech tokens per text token -> 200 expected
    assert len(speech) + 200 <= MAX_LLM_SEQ_INP_LEN < len(speech) + 400
    assert speech == [7] * 200 + [9] * 200 and text == [1] * 10 + [3] * 10


def test_paths_accept_repo_and_snapshot_layouts(tmp_path):
    for root, ckpt in ((tmp_path / "repo", tmp_path / "repo" / "ckpt"), (tmp_path / "hf", tmp_path / "hf")):
        for d in ("llm", "speech_tokenizer", "vq32k-phoneme-tokenizer", "flow", "hift"):
            (ckpt / d).mkdir(parents=True)
        for f in ("flow/flow.pt", "flow/config.yaml", "hift/hift.pt"):
            (ckpt / f).touch()
        paths = GlmTtsPaths.from_root(root)
        assert paths.llm == ckpt / "llm" and paths.campplus is None
    (tmp_path / "hf" / "hift" / "hift.pt").unlink()
    with pytest.raises(FileNotFoundError, match="glm_tts_files_missing"):
        GlmTtsPaths.from_root(tmp_path / "hf")
