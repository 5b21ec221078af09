"""audio2token / audio2bucket against upstream's per-frame loop (fixture `audio_adapters`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from nodes.shared.weights import load_weights
from nodes.sonic.audio_adapters import (
    Audio2BucketConfig,
    Audio2BucketModel,
    AudioProjConfig,
    AudioProjModel,
    frame_audio,
)
from nodes.sonic.config import from_mapping


@pytest.fixture(scope="module")
def fixture(parity):
    return parity("audio_adapters")


@pytest.fixture(scope="module")
def models(fixture):
    config = fixture.json("config.json")
    audio2token = AudioProjModel(from_mapping(AudioProjConfig, config["audio2token"]))
    audio2bucket = Audio2BucketModel(from_mapping(Audio2BucketConfig, config["audio2bucket"]))
    load_weights(audio2token, load_file(fixture.path / "audio2token.safetensors"))
    load_weights(audio2bucket, load_file(fixture.path / "audio2bucket.safetensors"))
    return audio2token.eval(), audio2bucket.eval()


@torch.inference_mode()
def test_audio_tokens_and_motion_buckets_match_upstream_per_frame(fixture, models):
    data = fixture.arrays("io.npz")
    audio = frame_audio(
        *models,
        torch.from_numpy(data["in_windows_all_layers"]),
        torch.from_numpy(data["in_windows_bucket"]),
        torch.from_numpy(data["in_image_embeds"]),
    )
    tol = fixture.tolerance()
    np.testing.assert_allclose(audio.tokens.numpy(), data["out_audio_tokens_cond"], **tol)
    np.testing.assert_allclose(audio.uncond_tokens.numpy(), data["out_audio_tokens_uncond"], **tol)
    frames = data["out_motion_buckets"].shape[0]
    np.testing.assert_allclose(audio.motion_buckets.numpy(), data["out_motion_buckets"].reshape(frames, -1), **tol)


@torch.inference_mode()
def test_batched_adapter_calls_match_upstream(fixture, models):
    data = fixture.arrays("io.npz")
    audio2token, audio2bucket = models
    tol = fixture.tolerance()
    tokens = audio2token(torch.from_numpy(data["batch3_in"]))
    np.testing.assert_allclose(tokens.numpy(), data["batch3_audio_tokens"], **tol)
    windows = torch.from_numpy(data["batch3_bucket_in"])
    embeds = torch.from_numpy(data["in_image_embeds"]).expand(windows.shape[1], -1)
    np.testing.assert_allclose(audio2bucket(windows, embeds).numpy(), data["batch3_bucket_raw"], **tol)


@torch.inference_mode()
def test_unconditional_tokens_are_the_biases_response_not_zero(fixture, models):
    data = fixture.arrays("io.npz")
    windows = torch.from_numpy(data["in_windows_all_layers"])
    audio = frame_audio(
        *models, windows, torch.from_numpy(data["in_windows_bucket"]), torch.from_numpy(data["in_image_embeds"])
    )
    assert audio.uncond_tokens.abs().max() > 0
    assert torch.equal(audio.uncond_tokens[0], audio.uncond_tokens[-1])
