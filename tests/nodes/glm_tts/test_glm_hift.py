"""GLM-TTS HiFT vocoder parity: f0, harmonic source and audio from injected draws, both weight-norm spellings."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from nodes.glm_tts.hift import HiFTConfig, HiFTGenerator, fold_weight_norm, modernise_weight_norm_keys

NAME = "hift"


@pytest.fixture(scope="module")
def io(parity):
    return parity.npz(NAME, "io.npz")


@pytest.fixture(scope="module")
def cfg(parity) -> HiFTConfig:
    spec = json.loads((parity.dir(NAME) / "hift_config.json").read_text(encoding="utf-8"))
    return HiFTConfig.from_upstream(spec["HiFTGenerator"], spec["ConvRNNF0Predictor"])


@pytest.fixture(scope="module")
def state(parity):
    return load_file(str(parity.dir(NAME) / "hift.safetensors"))


def _model(cfg, state):
    model = HiFTGenerator(cfg)
    model.load_state_dict(modernise_weight_norm_keys(dict(state)), strict=True)
    return model.eval()


def _atol(parity):
    return parity.meta(NAME)["tolerance"]["atol"]


def test_hop_is_480_samples_per_mel_frame(io, cfg):
    assert io["out_audio"].shape[-1] == io["in_mel"].shape[-1] * cfg.hop_length


def test_audio_f0_and_source_match_upstream_with_injected_draws(parity, io, cfg, state):
    model = _model(cfg, state)
    mel = torch.from_numpy(io["in_mel"])
    audio, source = model.inference(mel, torch.from_numpy(io["in_rand_ini"]), torch.from_numpy(io["in_sine_noise"]))
    atol = _atol(parity)
    np.testing.assert_allclose(audio.numpy(), io["out_audio"], atol=atol, rtol=0)
    np.testing.assert_allclose(source.numpy(), io["mid_source"], atol=atol, rtol=0)
    with torch.inference_mode():
        f0 = model.f0_predictor(mel)
    np.testing.assert_allclose(f0.numpy(), io["mid_f0"], rtol=1e-5, atol=atol * np.abs(io["mid_f0"]).max())


def test_legacy_weight_g_weight_v_checkpoint_loads_to_the_same_audio(parity, io, cfg, state):
    legacy = {k.replace("parametrizations.weight.original0", "weight_g").replace("parametrizations.weight.original1",
                                                                                "weight_v"): v
              for k, v in state.items()}
    assert any(k.endswith(".weight_g") for k in legacy)
    audio, _ = _model(cfg, legacy).inference(torch.from_numpy(io["in_mel"]), torch.from_numpy(io["in_rand_ini"]),
                                             torch.from_numpy(io["in_sine_noise"]))
    np.testing.assert_allclose(audio.numpy(), io["out_audio"], atol=_atol(parity), rtol=0)


def test_folding_weight_norm_keeps_the_output(parity, io, cfg, state):
    model = fold_weight_norm(_model(cfg, state))
    audio, _ = model.inference(torch.from_numpy(io["in_mel"]), torch.from_numpy(io["in_rand_ini"]),
                               torch.from_numpy(io["in_sine_noise"]))
    np.testing.assert_allclose(audio.numpy(), io["out_audio"], atol=_atol(parity), rtol=0)


def test_seeded_draws_follow_upstream_rng_order_and_layout(parity, io, cfg, state):
    # The fixture records that torch.manual_seed(77) right before inference reproduces it (torch CPU RNG).
    seed = int(parity.meta(NAME)["random_draws"]["seeded"].split("manual_seed(")[1].split(")")[0])
    audio, _ = _model(cfg, state).inference(torch.from_numpy(io["in_mel"]),
                                            generator=torch.Generator().manual_seed(seed))
    np.testing.assert_allclose(audio.numpy(), io["out_audio"], atol=_atol(parity), rtol=0)
