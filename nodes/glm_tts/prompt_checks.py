"""Checks on a voice prompt before any model runs: length, clipping, silence, noise, music, several speakers.

Cheap signal measurements on 10 ms frames; a check that fails hard raises `PromptRefused`, a doubtful one
becomes a warning. Every message names the measured value and the limit it was held against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..shared.resample import resample

ANALYSIS_RATE = 16000
FRAME_S, HOP_S = 0.02, 0.01
PITCH_FRAME_S = 0.04
PITCH_RANGE_HZ = (60.0, 400.0)


class PromptRefused(ValueError):
    """`reason` is a stable code (prompt_too_short, prompt_clipped, ...); the message has the numbers."""

    def __init__(self, reason: str, message: str):
        super().__init__(f"{reason}: {message}")
        self.reason = reason


@dataclass(frozen=True)
class PromptLimits:
    min_s: float = 2.0  # refuse below
    max_s: float = 30.0  # refuse above
    ideal_s: tuple[float, float] = (3.0, 10.0)  # warn outside
    clip_warn: float = 0.001  # share of samples at the peak level
    clip_refuse: float = 0.05
    silence_warn: float = 0.5  # share of silent frames
    silence_refuse: float = 0.9
    silence_below_peak_db: float = 40.0  # a frame this far below the loud frames is silence
    silence_floor_dbfs: float = -60.0  # and any frame below this is silence
    snr_warn_db: float = 15.0
    snr_refuse_db: float = 3.0
    speech_modulation_min: float = 0.25  # share of envelope modulation at syllable rate (2-8 Hz)
    speaker_gap_semitones: float = 7.0  # two pitch groups this far apart ...
    speaker_min_share: float = 0.2  # ... each holding this share of voiced frames ...
    speaker_max_switch_rate: float = 0.1  # ... and rarely alternating (pitch errors alternate fast)


@dataclass(frozen=True)
class PromptReport:
    duration_s: float
    clipped_ratio: float
    silence_ratio: float
    snr_db: float
    speech_modulation: float
    pitch_groups_hz: tuple[float, float] | None  # set when the prompt seems to hold two speakers
    warnings: tuple[str, ...]

    def as_dict(self) -> dict:
        return {"duration_s": round(self.duration_s, 3), "clipped_ratio": round(self.clipped_ratio, 6),
                "silence_ratio": round(self.silence_ratio, 4), "snr_db": round(self.snr_db, 2),
                "speech_modulation": round(self.speech_modulation, 4), "warnings": list(self.warnings)}


def check_prompt(wav: torch.Tensor, sample_rate: int, limits: PromptLimits = PromptLimits()) -> PromptReport:
    """Measure a mono (T,) or (C, T) prompt; raise PromptRefused on a hard failure, else report warnings."""
    mono = wav.float().reshape(-1, wav.shape[-1]).mean(dim=0) if wav.dim() > 1 else wav.float()
    duration = mono.numel() / float(sample_rate)
    if duration < limits.min_s:
        raise PromptRefused("prompt_too_short", f"{duration:.2f} s of audio, at least {limits.min_s:g} s needed "
                                                f"(3-10 s of clean speech works best)")
    if duration > limits.max_s:
        raise PromptRefused("prompt_too_long", f"{duration:.2f} s of audio, at most {limits.max_s:g} s allowed "
                                               f"(trim it to 3-10 s of clean speech)")
    warnings: list[str] = []
    low, high = limits.ideal_s
    if not low <= duration <= high:
        warnings.append(f"prompt_length: {duration:.2f} s is outside the {low:g}-{high:g} s that clones best")

    clipped = clipped_ratio(mono)
    _grade(clipped, limits.clip_warn, limits.clip_refuse, warnings, "prompt_clipped",
           f"{clipped:.2%} of the samples sit at the peak level (clipping)", f"{limits.clip_warn:.1%}")

    audio = resample(mono[None], sample_rate, ANALYSIS_RATE)[0] if sample_rate != ANALYSIS_RATE else mono
    levels = frame_levels_db(audio, ANALYSIS_RATE)
    silent = silent_frames(levels, limits)
    silence = float(silent.float().mean())
    if silence >= 1.0:
        raise PromptRefused("prompt_silent", "the prompt holds no audible sound")
    _grade(silence, limits.silence_warn, limits.silence_refuse, warnings, "prompt_silence",
           f"{silence:.0%} of the prompt is silence", f"{limits.silence_warn:.0%}")

    snr = snr_estimate_db(levels)
    if snr < limits.snr_refuse_db:
        raise PromptRefused("prompt_noisy", f"estimated SNR {snr:.1f} dB, below {limits.snr_refuse_db:g} dB: no "
                                            "voice stands out from the background (noise, or a steady sound)")
    if snr < limits.snr_warn_db:
        warnings.append(f"prompt_noisy: estimated SNR {snr:.1f} dB (below {limits.snr_warn_db:g} dB); "
                        "background noise will be cloned too")

    modulation = speech_modulation(levels, silent)
    if modulation < limits.speech_modulation_min:
        warnings.append(f"prompt_music: syllable-rate modulation {modulation:.2f} (speech is usually above "
                        f"{limits.speech_modulation_min:g}); the prompt may hold music or another steady sound")

    groups = pitch_groups(audio, ANALYSIS_RATE, ~silent, limits)
    if groups is not None:
        warnings.append(f"prompt_speakers: two pitch groups around {groups[0]:.0f} Hz and {groups[1]:.0f} Hz; "
                        "the prompt may hold more than one speaker")
    return PromptReport(duration, clipped, silence, snr, modulation, groups, tuple(warnings))


def _grade(value: float, warn: float, refuse: float, warnings: list[str], reason: str, what: str,
           limit: str) -> None:
    if value >= refuse:
        raise PromptRefused(reason, f"{what}; at most {limit} is usable")
    if value >= warn:
        warnings.append(f"{reason}: {what} (above {limit})")


def clipped_ratio(mono: torch.Tensor, min_peak: float = 0.3) -> float:
    """Share of samples within 0.1% of the peak magnitude: flat tops, whatever level the clipper used."""
    magnitude = mono.abs()
    peak = float(magnitude.max()) if magnitude.numel() else 0.0
    if peak < min_peak:  # quiet audio: hitting its own peak says nothing about clipping
        return 0.0
    return float((magnitude >= peak * 0.999).float().mean())


def frame_levels_db(audio: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """RMS level in dBFS of 20 ms frames every 10 ms."""
    frame, hop = int(FRAME_S * sample_rate), int(HOP_S * sample_rate)
    if audio.numel() < frame:
        audio = torch.nn.functional.pad(audio, (0, frame - audio.numel()))
    frames = audio.unfold(0, frame, hop)
    return 10.0 * torch.log10(frames.pow(2).mean(dim=1) + 1e-12)


def silent_frames(levels: torch.Tensor, limits: PromptLimits) -> torch.Tensor:
    loud = float(torch.quantile(levels, 0.99))
    threshold = max(limits.silence_floor_dbfs, loud - limits.silence_below_peak_db)
    return levels < threshold


def snr_estimate_db(levels: torch.Tensor) -> float:
    """Loud frames (95th percentile) against the noise floor (10th percentile), both speech and pauses being
    present in any usable prompt; digital silence in the pauses counts as a 100 dB floor distance."""
    return min(float(torch.quantile(levels, 0.95) - torch.quantile(levels, 0.10)), 100.0)


def speech_modulation(levels: torch.Tensor, silent: torch.Tensor) -> float:
    """Share of the level envelope's modulation energy at syllable rate (2-8 Hz) within 0.5-25 Hz.

    Speech rises and falls with its syllables a few times a second; sustained music and hum do not."""
    rate = 1.0 / HOP_S
    floor = float(levels[~silent].min()) if bool((~silent).any()) else float(levels.min())
    envelope = levels.clamp(min=floor)
    envelope = envelope - envelope.mean()
    spectrum = torch.fft.rfft(envelope * torch.hann_window(envelope.numel(), periodic=False)).abs().pow(2)
    freqs = torch.fft.rfftfreq(envelope.numel(), d=1.0 / rate)
    band = spectrum[(freqs >= 2.0) & (freqs <= 8.0)].sum()
    total = spectrum[(freqs >= 0.5) & (freqs <= 25.0)].sum()
    return float(band / total) if float(total) > 0 else 0.0


def pitch_track_hz(audio: torch.Tensor, sample_rate: int, voiced: torch.Tensor,
                   periodicity: float = 0.5) -> torch.Tensor:
    """F0 of the audible, periodic 40 ms frames (one per 10 ms hop) by normalised autocorrelation."""
    frame, hop = int(PITCH_FRAME_S * sample_rate), int(HOP_S * sample_rate)
    if audio.numel() < frame:
        return torch.empty(0)
    frames = audio.unfold(0, frame, hop)
    count = min(frames.shape[0], voiced.numel())
    frames = frames[:count][voiced[:count]]
    if frames.shape[0] == 0:
        return torch.empty(0)
    frames = (frames - frames.mean(dim=1, keepdim=True)) * torch.hann_window(frame, periodic=False)
    spectrum = torch.fft.rfft(frames, n=2 * frame)
    acf = torch.fft.irfft(spectrum.abs().pow(2), n=2 * frame)[:, :frame]
    acf = acf / acf[:, :1].clamp(min=1e-12)
    lo, hi = int(sample_rate / PITCH_RANGE_HZ[1]), int(sample_rate / PITCH_RANGE_HZ[0])
    window = acf[:, lo:hi]
    best = window.max(dim=1).values
    # The first lag close to the best peak: avoids picking a multiple of the period (octave errors).
    lag = (window >= 0.9 * best[:, None]).float().argmax(dim=1) + lo
    return (sample_rate / lag.float())[best >= periodicity]


def pitch_groups(audio: torch.Tensor, sample_rate: int, voiced: torch.Tensor,
                 limits: PromptLimits) -> tuple[float, float] | None:
    """The two median pitches when voiced frames split into two far-apart, long-lasting groups."""
    f0 = pitch_track_hz(audio, sample_rate, voiced)
    if f0.numel() < 50:
        return None
    semitones = 12.0 * torch.log2(f0 / 100.0)
    split = _otsu_threshold(semitones)
    high = semitones > split
    share = float(high.float().mean())
    if not limits.speaker_min_share <= share <= 1 - limits.speaker_min_share:
        return None
    gap = float(semitones[high].median() - semitones[~high].median())
    switches = float((high[1:] != high[:-1]).float().mean())
    if gap < limits.speaker_gap_semitones or switches > limits.speaker_max_switch_rate:
        return None
    return float(f0[~high].median()), float(f0[high].median())


def _otsu_threshold(values: torch.Tensor) -> float:
    """The split of 1-D values that maximises the between-group variance."""
    ordered = values.sort().values
    n = ordered.numel()
    cumulative = ordered.cumsum(0)
    k = torch.arange(1, n, dtype=ordered.dtype)
    mean_low = cumulative[:-1] / k
    mean_high = (cumulative[-1] - cumulative[:-1]) / (n - k)
    between = k * (n - k) * (mean_low - mean_high).pow(2)
    i = int(between.argmax())
    return float((ordered[i] + ordered[i + 1]) / 2) if n > 1 else math.inf
