"""Acoustic features of a voice prompt: the flow's 80-bin log-mel and CAM++'s Kaldi fbank.

Both follow GLM-TTS numerically (Slaney mel + reflect-padded STFT; Kaldi povey fbank) without torchaudio.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from ..shared.resample import resample


@dataclass(frozen=True)
class MelConfig:
    """One `mel_spectrogram` setting; the flow's mel frame rate is sample_rate / hop_size = 50 Hz."""

    sample_rate: int
    n_fft: int
    hop_size: int
    win_size: int
    num_mels: int = 80
    fmin: float = 0.0
    fmax: float = 8000.0


MEL_24K = MelConfig(sample_rate=24000, n_fft=1920, hop_size=480, win_size=1920)
MEL_32K = MelConfig(sample_rate=32000, n_fft=2560, hop_size=640, win_size=2560)


def mel_config_for(sample_rate: int) -> MelConfig:
    """The upstream preset for a vocoder rate (24 kHz HiFT or 32 kHz Vocos)."""
    presets = {24000: MEL_24K, 32000: MEL_32K}
    if sample_rate not in presets:
        raise ValueError(f"unsupported_sample_rate: {sample_rate} (expected one of {sorted(presets)})")
    return presets[sample_rate]


def _hz_to_mel_slaney(hz: np.ndarray) -> np.ndarray:
    # Slaney scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above (27 mels per factor 6.4).
    hz = np.asarray(hz, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    mel = hz / f_sp
    above = hz >= min_log_hz
    mel[above] = min_log_mel + np.log(hz[above] / min_log_hz) / logstep
    return mel


def _mel_to_hz_slaney(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    hz = mel * f_sp
    above = mel >= min_log_mel
    hz[above] = min_log_hz * np.exp(logstep * (mel[above] - min_log_mel))
    return hz


@lru_cache(maxsize=8)
def _slaney_filterbank_np(sample_rate: int, n_fft: int, num_mels: int, fmin: float, fmax: float) -> np.ndarray:
    fft_freqs = np.linspace(0.0, sample_rate / 2, 1 + n_fft // 2)
    edges_mel = np.linspace(_hz_to_mel_slaney(np.array([fmin]))[0], _hz_to_mel_slaney(np.array([fmax]))[0],
                            num_mels + 2)
    edges = _mel_to_hz_slaney(edges_mel)
    widths = np.diff(edges)
    offsets = edges[:, None] - fft_freqs[None, :]
    rising = -offsets[:-2] / widths[:-1, None]
    falling = offsets[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]  # equal-area triangles
    return weights.astype(np.float32)


def slaney_mel_filterbank(cfg: MelConfig) -> torch.Tensor:
    """(num_mels, n_fft/2+1) float32 filterbank equal to librosa.filters.mel(..., norm='slaney')."""
    fb = _slaney_filterbank_np(cfg.sample_rate, cfg.n_fft, cfg.num_mels, float(cfg.fmin), float(cfg.fmax))
    return torch.from_numpy(fb.copy())


def mel_spectrogram(wav: torch.Tensor, cfg: MelConfig) -> torch.Tensor:
    """Log-mel (B, num_mels, frames) of a (B, T) waveform: reflect pad (n_fft-hop)/2, uncentred STFT.

    Upstream caches its filterbank by fmax and device only, so it cannot serve two rates in one process;
    here the filterbank is derived from the whole config, which gives the same numbers for each rate.
    """
    pad = (cfg.n_fft - cfg.hop_size) // 2
    y = F.pad(wav.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
    window = torch.hann_window(cfg.win_size, device=wav.device, dtype=wav.dtype)
    spec = torch.stft(y, cfg.n_fft, hop_length=cfg.hop_size, win_length=cfg.win_size, window=window,
                      center=False, normalized=False, onesided=True, return_complex=True)
    spec = torch.view_as_real(spec)
    magnitude = torch.sqrt(spec.pow(2).sum(-1) + 1e-9)
    basis = slaney_mel_filterbank(cfg).to(device=wav.device, dtype=wav.dtype)
    return torch.log(torch.clamp(torch.matmul(basis, magnitude), min=1e-5))


def prompt_mel(wav: torch.Tensor, sample_rate: int, target_rate: int) -> torch.Tensor:
    """The flow prompt mel (1, frames, 80) of a (channels, T) prompt, mixed to mono at `target_rate`."""
    mono = resample(wav.mean(dim=0, keepdim=True), sample_rate, target_rate)
    return mel_spectrogram(mono, mel_config_for(target_rate)).transpose(1, 2)


@dataclass(frozen=True)
class FbankConfig:
    """Kaldi `compute-fbank-feats` defaults as used for CAM++ (dither 0, 80 bins)."""

    sample_rate: int = 16000
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    num_mel_bins: int = 80
    preemphasis: float = 0.97
    low_freq: float = 20.0
    high_freq: float = 0.0  # <= 0 means offset from Nyquist
    window_power: float = 0.85  # povey window = hann ** 0.85


def _kaldi_mel(freq: torch.Tensor) -> torch.Tensor:
    return 1127.0 * torch.log(1.0 + freq / 700.0)


def kaldi_mel_banks(cfg: FbankConfig, padded_window: int) -> torch.Tensor:
    """(num_mel_bins, padded_window/2 + 1) triangular banks on the Kaldi mel scale, last column zero."""
    nyquist = 0.5 * cfg.sample_rate
    high = cfg.high_freq + nyquist if cfg.high_freq <= 0.0 else cfg.high_freq
    mel_low = 1127.0 * math.log(1.0 + cfg.low_freq / 700.0)
    mel_high = 1127.0 * math.log(1.0 + high / 700.0)
    delta = (mel_high - mel_low) / (cfg.num_mel_bins + 1)
    bins = torch.arange(cfg.num_mel_bins).unsqueeze(1)
    left = mel_low + bins * delta
    centre = mel_low + (bins + 1.0) * delta
    right = mel_low + (bins + 2.0) * delta
    bin_width = cfg.sample_rate / padded_window
    mel = _kaldi_mel(bin_width * torch.arange(padded_window // 2)).unsqueeze(0)
    up = (mel - left) / (centre - left)
    down = (right - mel) / (right - centre)
    banks = torch.clamp(torch.minimum(up, down), min=0.0)
    return F.pad(banks, (0, 1))


def kaldi_fbank(wav: torch.Tensor, cfg: FbankConfig = FbankConfig()) -> torch.Tensor:
    """Log mel filterbank energies (frames, bins) of a 1-D float waveform, snip_edges framing."""
    shift = int(cfg.sample_rate * cfg.frame_shift_ms * 0.001)
    size = int(cfg.sample_rate * cfg.frame_length_ms * 0.001)
    padded = 1 << (size - 1).bit_length()
    if wav.numel() < size:
        raise ValueError(f"prompt_too_short: {wav.numel()} samples < one {size}-sample frame")
    frames = wav.unfold(0, size, shift)
    frames = frames - frames.mean(dim=1, keepdim=True)
    previous = torch.cat([frames[:, :1], frames[:, :-1]], dim=1)
    frames = frames - cfg.preemphasis * previous
    window = torch.hann_window(size, periodic=False, device=wav.device, dtype=wav.dtype).pow(cfg.window_power)
    frames = F.pad(frames * window, (0, padded - size))
    power = torch.fft.rfft(frames).abs().pow(2.0)
    banks = kaldi_mel_banks(cfg, padded).to(device=wav.device, dtype=wav.dtype)
    energies = torch.mm(power, banks.T)
    eps = torch.tensor(torch.finfo(torch.float32).eps, device=wav.device, dtype=wav.dtype)
    return torch.maximum(energies, eps).log()


def speaker_fbank(wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """CAM++ input (1, frames, 80): fbank of the 16 kHz mono prompt minus its per-bin mean over time."""
    mono16 = resample(wav.mean(dim=0, keepdim=True), sample_rate, 16000)[0]
    feat = kaldi_fbank(mono16)
    return (feat - feat.mean(dim=0, keepdim=True)).unsqueeze(0)
