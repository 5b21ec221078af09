"""Audio front end against upstream `get_audio_feature` + Whisper encoder windows (fixture `whisper_features`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from nodes.shared.weights import load_weights, strip_prefix
from nodes.sonic.config import read_config
from nodes.sonic.whisper import WhisperEncoder, WhisperEncoderConfig
from nodes.sonic.whisper_features import (
    CHUNK_AUDIO_FRAMES,
    SAMPLES_PER_AUDIO_FRAME,
    AudioWindows,
    MelConfig,
    audio_frame_count,
    encoder_states,
    frame_windows,
    generated_frame_count,
    whisper_features,
)

WEIGHTS_DIR = "whisper-tiny-random"


@pytest.fixture(scope="module")
def fixture(parity):
    return parity("whisper_features")


@pytest.fixture(scope="module")
def step(fixture):
    return fixture.precondition(r"step = (\d+)")


@pytest.fixture(scope="module")
def expected(fixture):
    return fixture.arrays("expected.npz")


@pytest.fixture(scope="module")
def audio(fixture, read_wav):
    return read_wav(fixture.media(fixture.meta["inputs"]["audio"]))


@pytest.fixture(scope="module")
def features(fixture, audio):
    return whisper_features(audio, read_config(MelConfig, fixture.path / WEIGHTS_DIR / "preprocessor_config.json"))


@pytest.fixture(scope="module")
def encoder(fixture):
    folder = fixture.path / WEIGHTS_DIR
    encoder = WhisperEncoder(read_config(WhisperEncoderConfig, folder / "config.json"))
    return load_weights(encoder, strip_prefix(load_file(folder / "model.safetensors"), "model.encoder.")).eval()


def test_speech_file_decodes_to_the_samples_upstream_used(audio, expected):
    np.testing.assert_array_equal(audio.numpy(), expected["audio_16k"])


def test_log_mel_matches_whisper_feature_extractor(features, expected, fixture):
    np.testing.assert_allclose(features.numpy(), expected["input_features"], **fixture.tolerance("input_features"))


def test_audio_length_counts_25fps_frames_and_video_frames_divide_by_step(audio, expected, step):
    audio_frames = audio_frame_count(audio.shape[0], frame_limit=audio.shape[0])
    assert audio_frames == int(expected["audio_len"])
    assert generated_frame_count(audio_frames, step) == int(expected["num_frames"])


@torch.inference_mode()
def test_encoder_hidden_states_match_upstream(encoder, features, expected, fixture):
    states = torch.stack(encoder(features[None]), dim=2)[0]
    tol = fixture.tolerance("windows/hidden states")
    np.testing.assert_allclose(states.numpy(), expected["hidden_states_stacked"], **tol)


@torch.inference_mode()
def test_per_frame_windows_match_upstream_for_every_frame(encoder, features, expected, fixture, step):
    audio_frames = int(expected["audio_len"])
    states = encoder_states(encoder, features, audio_frames)
    tokens, bucket = frame_windows(states, int(expected["num_frames"]), step, AudioWindows())
    tol = fixture.tolerance("windows/hidden states")
    np.testing.assert_allclose(tokens.numpy(), expected["windows_all_layers"], **tol)
    np.testing.assert_allclose(bucket.numpy(), expected["windows_last_layer_bucket"], **tol)


def test_only_the_chunks_covering_the_kept_frames_are_computed(audio, fixture):
    config = read_config(MelConfig, fixture.path / WEIGHTS_DIR / "preprocessor_config.json")
    chunk = CHUNK_AUDIO_FRAMES * SAMPLES_PER_AUDIO_FRAME
    frames_per_chunk = chunk // config.hop_length
    long_audio = torch.cat([audio] * (chunk // audio.shape[0] + 1))  # a little over one chunk
    assert whisper_features(long_audio, config).shape[-1] == 2 * frames_per_chunk
    first_chunk_only = whisper_features(long_audio, config, audio_frames=CHUNK_AUDIO_FRAMES)
    assert torch.equal(first_chunk_only, whisper_features(long_audio[:chunk], config))
    assert whisper_features(long_audio, config, audio_frames=CHUNK_AUDIO_FRAMES + 1).shape[-1] == 2 * frames_per_chunk
