"""GLM-TTS prompt features match upstream: resampling, flow prompt mel (24/32 kHz) and CAM++ fbank."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nodes.glm_tts.features import (
    MelConfig,
    kaldi_fbank,
    mel_config_for,
    prompt_mel,
    slaney_mel_filterbank,
    speaker_fbank,
)
from nodes.shared.resample import resample, sinc_resample_kernel

NAME = "features"


@pytest.fixture(scope="module")
def ref(parity):
    return parity.npz(NAME, "features.npz")


@pytest.fixture(scope="module")
def tol(parity):
    return parity.meta(NAME)["tolerance"]


def _mel_cfg(params: dict, sample_rate: int) -> MelConfig:
    return MelConfig(sample_rate=sample_rate, n_fft=params["n_fft"], hop_size=params["hop_size"],
                     win_size=params["win_size"], num_mels=params["num_mels"], fmin=params["fmin"],
                     fmax=params["fmax"])


@pytest.mark.parametrize(("new_rate", "key"), [(16000, "resample_kernel_24k_to_16k"),
                                               (32000, "resample_kernel_24k_to_32k")])
def test_resample_kernel_equals_torchaudio_sinc_hann_kernel(ref, zh_prompt, new_rate, key):
    kernel, _ = sinc_resample_kernel(zh_prompt[1], new_rate)
    np.testing.assert_allclose(kernel.numpy(), ref[key], atol=1e-6)


def test_resampled_prompt_matches_upstream_load_wav(ref, tol, zh_prompt):
    wav, sr = zh_prompt
    atol = tol["wav_16k / wav_32k"]["atol"]
    wav16 = resample(wav.mean(0, keepdim=True), sr, 16000)[0]
    np.testing.assert_allclose(wav16.numpy(), ref["wav_16k"], atol=atol)
    wav32 = resample(wav.mean(0, keepdim=True), sr, 32000)[0]
    assert wav32.shape[0] == int(ref["wav_32k_len"])
    first = ref["wav_32k_first2s"]
    np.testing.assert_allclose(wav32[: first.shape[0]].numpy(), first, atol=atol)
    assert wav.shape[1] == int(ref["wav_24k_len"])


@pytest.mark.parametrize(("rate", "params_key", "fb_key"), [(24000, "mel_24k", "mel_filterbank_24k"),
                                                             (32000, "mel_32k", "mel_filterbank_32k")])
def test_slaney_filterbank_equals_librosa(parity, ref, rate, params_key, fb_key):
    params = parity.meta(NAME)["parameters"][params_key]
    cfg = _mel_cfg({**parity.meta(NAME)["parameters"]["mel_24k"], **params}, rate)
    assert cfg == mel_config_for(rate)
    np.testing.assert_allclose(slaney_mel_filterbank(cfg).numpy(), ref[fb_key], atol=1e-7)


@pytest.mark.parametrize(("rate", "key"), [(24000, "speech_feat_24k"), (32000, "speech_feat_32k")])
def test_flow_prompt_mel_matches_upstream_speech_feat(ref, tol, zh_prompt, rate, key):
    wav, sr = zh_prompt
    mel = prompt_mel(wav, sr, rate)
    t = tol["speech_feat_24k/32k"]
    assert mel.shape == (1, *ref[key].shape)
    np.testing.assert_allclose(mel[0].numpy(), ref[key], atol=t["atol"], rtol=t["rtol"])


def test_mel_of_both_rates_in_one_process_is_independent_of_call_order(zh_prompt):
    # Upstream's filterbank cache is keyed by fmax only; ours must not leak one rate into the other.
    wav, sr = zh_prompt
    clip = wav[:, : sr // 2]
    first = prompt_mel(clip, sr, 32000)
    prompt_mel(clip, sr, 24000)
    torch.testing.assert_close(prompt_mel(clip, sr, 32000), first, rtol=0, atol=0)


def test_campplus_fbank_matches_kaldi_fbank_and_mean_subtraction(ref, tol, zh_prompt):
    wav, sr = zh_prompt
    t = tol["fbank_raw/fbank_cmn"]
    raw = kaldi_fbank(torch.from_numpy(ref["wav_16k"]))
    np.testing.assert_allclose(raw.numpy(), ref["fbank_raw"], atol=t["atol"], rtol=t["rtol"])
    cmn = speaker_fbank(wav, sr)
    assert cmn.shape == (1, *ref["fbank_cmn"].shape)
    np.testing.assert_allclose(cmn[0].numpy(), ref["fbank_cmn"], atol=t["atol"], rtol=t["rtol"])


def test_unsupported_vocoder_rate_is_refused():
    with pytest.raises(ValueError, match="unsupported_sample_rate"):
        mel_config_for(22050)
