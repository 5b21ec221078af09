"""Our GLM-TTS modules, built at full size on the meta device, have every upstream checkpoint key and shape."""

from __future__ import annotations

import pytest
import torch

from nodes.glm_tts.flow import Flow, FlowConfig, read_flow_yaml
from nodes.glm_tts.hift import HiFTConfig, HiFTGenerator, modernise_weight_norm_keys
from nodes.glm_tts.speech_tokenizer import WhisperVQConfig, WhisperVQEncoder, encoder_state_from_checkpoint


def _shapes(module: torch.nn.Module, prefix: str = "") -> dict[str, list[int]]:
    return {prefix + k: list(v.shape) for k, v in module.state_dict().items()}


def _manifest_shapes(manifest: dict) -> dict[str, list[int]]:
    return {k: v["shape"] for k, v in manifest["tensors"].items()}


def _assert_same(ours: dict[str, list[int]], theirs: dict[str, list[int]]) -> None:
    assert sorted(set(theirs) - set(ours)) == [], "keys missing from our module"
    assert sorted(set(ours) - set(theirs)) == [], "keys our module has but the checkpoint lacks"
    wrong = {k: (ours[k], theirs[k]) for k in theirs if ours[k] != theirs[k]}
    assert not wrong, wrong


def test_flow_from_upstream_yaml_matches_flow_pt_keys_and_shapes(glm_manifest, tmp_path):
    yaml_file = tmp_path / "config.yaml"
    yaml_file.write_text(glm_manifest("ckpt/flow/config.yaml")["config"]["yaml_text"], encoding="utf-8")
    with torch.device("meta"):
        flow = Flow(FlowConfig.from_upstream(read_flow_yaml(yaml_file)))
    _assert_same(_shapes(flow), _manifest_shapes(glm_manifest("ckpt/flow/flow.pt")))


def test_flow_config_resolves_upstream_defaults(glm_manifest, tmp_path):
    spec = glm_manifest("ckpt/flow/config.yaml")["config"]
    yaml_file = tmp_path / "config.yaml"
    yaml_file.write_text(spec["yaml_text"], encoding="utf-8")
    cfg = FlowConfig.from_upstream(read_flow_yaml(yaml_file))
    dit = spec["hard_coded_in_Flow"]["dit"]
    assert (cfg.dit.trans_dim, cfg.dit.depth, cfg.dit.heads, cfg.dit.dim_head) == (
        dit["trans_dim"], dit["depth"], dit["heads"], dit["dim_head"])
    assert (cfg.dit.text_emb_dim, cfg.dit.text_vocab_size, cfg.dit.speaker_dim) == (
        dit["text_emb_dim"], dit["text_vocab_size"], dit["speaker_dim"])
    assert cfg.inference_cfg_rate == spec["hard_coded_in_Flow"]["inference_cfg_rate"]
    assert cfg.n_timesteps == spec["hard_coded_in_Flow"]["n_timesteps_default"]


def test_hift_matches_hift_pt_keys_and_shapes_in_both_weight_norm_spellings(glm_manifest):
    manifest = glm_manifest("ckpt/hift/hift.pt")
    cfg = manifest["config"]
    with torch.device("meta"):
        model = HiFTGenerator(HiFTConfig.from_upstream(cfg["constructor_kwargs"], cfg["f0_predictor"]["kwargs"]))
    theirs = _manifest_shapes(manifest)
    _assert_same(_shapes(model), theirs)
    legacy = {manifest["alt_key_names"].get(k, k): v for k, v in theirs.items()}
    assert modernise_weight_norm_keys(legacy) == theirs


def test_speech_tokenizer_matches_the_strict_load_key_set(glm_manifest):
    manifest = glm_manifest("ckpt/speech_tokenizer/model.safetensors")
    cfg = WhisperVQConfig.from_dict(glm_manifest("ckpt/speech_tokenizer/config.json")["config"])
    with torch.device("meta"):
        encoder = WhisperVQEncoder(cfg)
    _assert_same(_shapes(encoder, "model.encoder."), _manifest_shapes(manifest))


def test_speech_tokenizer_loader_drops_the_keys_upstream_ignores(glm_manifest):
    cfg = WhisperVQConfig.from_dict(glm_manifest("ckpt/speech_tokenizer/config.json")["config"])
    extra = {"model.encoder.layer_norm.weight": 0, f"model.encoder.layers.{cfg.quantize_position}.fc1.bias": 0,
             "model.decoder.embed_tokens.weight": 0, "model.encoder.conv1.weight": 1}
    assert encoder_state_from_checkpoint(extra, cfg) == {"conv1.weight": 1}


def test_llm_matches_both_safetensors_shards_with_tied_lm_head(glm_manifest):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**glm_manifest("ckpt/llm/config.json")["config"])
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    theirs: dict[str, list[int]] = {}
    for shard in ("model-00001-of-00002", "model-00002-of-00002"):
        theirs |= _manifest_shapes(glm_manifest(f"ckpt/llm/{shard}.safetensors"))
    ours = _shapes(model)
    assert config.tie_word_embeddings and "lm_head.weight" not in theirs
    ours.pop("lm_head.weight")
    _assert_same(ours, theirs)


@pytest.mark.parametrize("relative", ["ckpt/flow/flow.pt", "ckpt/hift/hift.pt",
                                      "ckpt/speech_tokenizer/model.safetensors"])
def test_manifest_parameter_counts_are_consistent(glm_manifest, relative):
    manifest = glm_manifest(relative)
    total = 0
    for v in manifest["tensors"].values():
        n = 1
        for d in v["shape"]:
            n *= d
        total += n
    assert total == manifest["param_count"]
