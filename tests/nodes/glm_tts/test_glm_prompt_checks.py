"""Voice prompt checks: hard failures are refused with the measured value, doubtful prompts are warned about."""

from __future__ import annotations

import math

import pytest
import torch

from nodes.glm_tts.prompt_checks import PromptLimits, PromptRefused, check_prompt, clipped_ratio
from tests.nodes.glm_tts.conftest import MEDIA_DIR, read_wav

RATE = 24000


def speechlike(seconds: float, f0: float = 120.0, rate: int = RATE, seed: int = 0) -> torch.Tensor:
    """A harmonic voice with gliding pitch, syllables at ~4 Hz and a pause every few seconds."""
    t = torch.arange(int(seconds * rate)) / rate
    pitch = f0 * (1 + 0.08 * torch.sin(2 * math.pi * 0.7 * t))
    phase = 2 * math.pi * torch.cumsum(pitch / rate, 0)
    voice = sum(torch.sin(k * phase) / k for k in range(1, 12))
    syllables = 0.15 + 0.85 * torch.sin(2 * math.pi * 4 * t).clamp(min=0).sqrt()
    pauses = (torch.sin(2 * math.pi * 0.3 * t + 1.0) > -0.8).float()
    generator = torch.Generator().manual_seed(seed)
    return 0.2 * voice * syllables * pauses + 1e-3 * torch.randn(t.shape, generator=generator)


def warnings_of(wav: torch.Tensor, rate: int = RATE) -> list[str]:
    return [w.split(":")[0] for w in check_prompt(wav, rate).warnings]


def test_recorded_speech_passes_without_warnings():
    wav, rate = read_wav(MEDIA_DIR / "speech_en_16k.wav")
    report = check_prompt(wav, rate)
    assert report.warnings == () and 8 < report.duration_s < 9
    assert report.snr_db > 30 and report.silence_ratio < 0.3 and report.pitch_groups_hz is None


def test_synthetic_single_speaker_passes_without_warnings():
    assert warnings_of(speechlike(6.0)) == []


@pytest.mark.parametrize(("seconds", "reason"), [(1.5, "prompt_too_short"), (31.0, "prompt_too_long")])
def test_prompt_length_outside_2_to_30_s_is_refused_with_its_length(seconds, reason):
    with pytest.raises(PromptRefused, match=f"{reason}: {seconds:.2f} s") as refused:
        check_prompt(speechlike(seconds), RATE)
    assert refused.value.reason == reason


@pytest.mark.parametrize("seconds", [2.5, 12.0])
def test_prompt_length_outside_3_to_10_s_is_a_warning_naming_the_length(seconds):
    report = check_prompt(speechlike(seconds), RATE)
    assert [w for w in report.warnings if w.startswith("prompt_length")] == [
        f"prompt_length: {seconds:.2f} s is outside the 3-10 s that clones best"]


def test_slight_clipping_warns_and_heavy_clipping_is_refused():
    wav = speechlike(5.0)
    light = (wav * 1.6).clamp(-0.5, 0.5)
    assert 0.001 < clipped_ratio(light) < 0.05
    assert "prompt_clipped" in warnings_of(light)
    with pytest.raises(PromptRefused, match=r"prompt_clipped: \d+\.\d\d% of the samples"):
        check_prompt((wav * 20).clamp(-0.9, 0.9), RATE)


def test_quiet_audio_is_not_taken_for_clipped():
    assert clipped_ratio(speechlike(5.0) * 0.01) == 0.0


def test_mostly_silent_prompt_warns_and_a_silent_one_is_refused():
    speech = speechlike(2.0)
    padded = torch.cat([speech, torch.zeros(3 * RATE)])
    assert "prompt_silence" in warnings_of(padded)
    with pytest.raises(PromptRefused, match=r"prompt_silence: 9\d% of the prompt is silence"):
        check_prompt(torch.cat([speech[: RATE // 4], torch.zeros(5 * RATE)]), RATE)
    with pytest.raises(PromptRefused, match="prompt_silent"):
        check_prompt(torch.zeros(4 * RATE), RATE)


def test_noise_is_refused_and_noisy_speech_warned_about_with_the_snr():
    generator = torch.Generator().manual_seed(1)
    noise = torch.randn(5 * RATE, generator=generator)
    with pytest.raises(PromptRefused, match=r"prompt_noisy: estimated SNR \d+\.\d dB"):
        check_prompt(0.3 * noise, RATE)
    report = check_prompt(speechlike(5.0) + 0.06 * noise, RATE)
    assert any(w.startswith("prompt_noisy: estimated SNR") for w in report.warnings)
    assert report.snr_db < PromptLimits().snr_warn_db


def test_a_sustained_chord_is_flagged_as_music():
    t = torch.arange(6 * RATE) / RATE
    chord = sum(0.1 * torch.sin(2 * math.pi * f * t) for f in (261.6, 329.6, 392.0))
    swell = 1 + 0.5 * torch.sin(2 * math.pi * 0.5 * t)
    report = check_prompt(chord * swell, RATE)
    assert any(w.startswith("prompt_music: syllable-rate modulation 0.") for w in report.warnings)


def test_two_voices_an_octave_apart_are_flagged_as_two_speakers():
    two = torch.cat([speechlike(3.0, f0=110.0), speechlike(3.0, f0=240.0, seed=1)])
    report = check_prompt(two, RATE)
    assert report.pitch_groups_hz is not None
    low, high = report.pitch_groups_hz
    assert 100 < low < 130 and 220 < high < 270
    assert any(w.startswith(f"prompt_speakers: two pitch groups around {low:.0f} Hz") for w in report.warnings)


def test_one_voice_with_wide_intonation_is_not_two_speakers():
    assert check_prompt(speechlike(6.0, f0=180.0), RATE).pitch_groups_hz is None


def test_stereo_and_other_sample_rates_are_measured_alike():
    mono = speechlike(4.0, rate=16000)
    stereo = torch.stack([mono, mono])
    assert check_prompt(stereo, 16000).warnings == check_prompt(mono, 16000).warnings == ()
    assert check_prompt(stereo, 16000).duration_s == pytest.approx(4.0)
