"""Sonic's audio front end: Whisper log-mel features, encoder passes per 30 s chunk, per-frame windows.

One generated frame (12.5 fps) sees 10 Whisper tokens of every layer and a 50-token window of the last layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .whisper import WhisperEncoder


@dataclass(frozen=True)
class MelConfig:
    """Whisper feature-extractor settings (`preprocessor_config.json`)."""

    feature_size: int = 80
    sampling_rate: int = 16000
    n_fft: int = 400
    hop_length: int = 160
    n_samples: int = 480000


AUDIO_FRAMES_PER_SECOND = 25
SAMPLES_PER_AUDIO_FRAME = 640
"""16 kHz samples per 25 fps audio frame; also the unit of upstream's 30 s chunking (750 frames)."""
CHUNK_AUDIO_FRAMES = 750
TOKENS_PER_AUDIO_FRAME = 2
"""Whisper emits 50 tokens per second: two per 25 fps audio frame."""


@dataclass(frozen=True)
class AudioWindows:
    """Window sizes and zero padding (tokens) around the encoder output, as upstream hard-codes them."""

    token_window: int = 10
    token_padding: tuple[int, int] = (4, 6)
    bucket_window: int = 50
    bucket_padding: tuple[int, int] = (24, 26)


def _hz_to_mel(freq: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz, logarithmic above."""
    mels = 3.0 * freq / 200.0
    log_region = freq >= 1000.0
    mels[log_region] = 15.0 + np.log(freq[log_region] / 1000.0) * (27.0 / np.log(6.4))
    return mels


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    freq = 200.0 * mels / 3.0
    log_region = mels >= 15.0
    freq[log_region] = 1000.0 * np.exp(np.log(6.4) / 27.0 * (mels[log_region] - 15.0))
    return freq


def mel_filters(config: MelConfig) -> np.ndarray:
    """`(n_fft//2 + 1, feature_size)` Slaney-normalised triangular filters from 0 Hz to Nyquist."""
    bins = config.n_fft // 2 + 1
    edges = np.array([0.0, config.sampling_rate / 2])
    mel_lo, mel_hi = _hz_to_mel(edges)
    centres = _mel_to_hz(np.linspace(mel_lo, mel_hi, config.feature_size + 2))
    fft_freqs = np.linspace(0, config.sampling_rate // 2, bins)
    widths = np.diff(centres)
    slopes = centres[None, :] - fft_freqs[:, None]
    rising = -slopes[:, :-2] / widths[:-1]
    falling = slopes[:, 2:] / widths[1:]
    filters = np.maximum(0.0, np.minimum(rising, falling))
    return filters * (2.0 / (centres[2:] - centres[:-2]))[None, :]


def log_mel(chunk: torch.Tensor, config: MelConfig) -> torch.Tensor:
    """Whisper log-mel of one chunk of at most `n_samples` samples, zero-padded: `(feature_size, frames)`."""
    waveform = torch.nn.functional.pad(chunk.float(), (0, config.n_samples - chunk.shape[-1]))
    window = torch.hann_window(config.n_fft, device=waveform.device)
    stft = torch.stft(waveform, config.n_fft, config.hop_length, window=window, return_complex=True)
    power = stft[..., :-1].abs() ** 2
    filters = torch.from_numpy(mel_filters(config)).to(waveform.device, torch.float32)
    spec = torch.clamp(filters.T @ power, min=1e-10).log10()
    spec = torch.maximum(spec, spec.max() - 8.0)
    return (spec + 4.0) / 4.0


def audio_frame_count(num_samples: int, frame_limit: int) -> int:
    """25 fps audio frames in `num_samples` of 16 kHz audio, capped at `frame_limit`."""
    return min(frame_limit, num_samples // SAMPLES_PER_AUDIO_FRAME)


def whisper_features(audio: torch.Tensor, config: MelConfig, audio_frames: int | None = None) -> torch.Tensor:
    """16 kHz mono `(N,)` -> `(feature_size, 3000·chunks)`: log-mel of each 30 s chunk, concatenated.

    Chunks are independent, so with `audio_frames` only those covering the first `audio_frames` are made."""
    chunk = CHUNK_AUDIO_FRAMES * SAMPLES_PER_AUDIO_FRAME
    end = audio.shape[-1]
    if audio_frames is not None:
        end = min(end, -(-audio_frames * SAMPLES_PER_AUDIO_FRAME // chunk) * chunk)
    return torch.cat([log_mel(audio[start : start + chunk], config) for start in range(0, end, chunk)], dim=-1)


def encoder_states(encoder: WhisperEncoder, features: torch.Tensor, audio_frames: int) -> torch.Tensor:
    """`(tokens, L+1, D)` every encoder layer's output for the first `2·audio_frames` tokens."""
    frames_per_pass = 2 * encoder.config.max_source_positions
    param = next(encoder.parameters())
    passes = []
    for start in range(0, features.shape[-1], frames_per_pass):
        chunk = features[None, :, start : start + frames_per_pass].to(param.device, param.dtype)
        passes.append(torch.stack(encoder(chunk), dim=2)[0])
    return torch.cat(passes, dim=0)[: audio_frames * TOKENS_PER_AUDIO_FRAME]


def frame_windows(
    states: torch.Tensor, num_frames: int, step: int, windows: AudioWindows
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per generated frame `i`: tokens `[2·step·i, +10)` of all layers and `[2·step·i, +50)` of the last
    layer, on the zero-padded token sequence. Returns `(F, 10, L+1, D)` and `(F, 50, 1, D)`."""
    stride = TOKENS_PER_AUDIO_FRAME * step

    def windowed(x: torch.Tensor, size: int, padding: tuple[int, int]) -> torch.Tensor:
        padded = torch.nn.functional.pad(x, (0, 0, 0, 0, *padding))
        needed = (num_frames - 1) * stride + size
        if padded.shape[0] < needed:
            raise ValueError(f"audio too short: {num_frames} frames need {needed} tokens, have {padded.shape[0]}")
        return padded.unfold(0, size, stride)[:num_frames].permute(0, 3, 1, 2)

    tokens = windowed(states, windows.token_window, windows.token_padding)
    bucket = windowed(states[:, -1:], windows.bucket_window, windows.bucket_padding)
    return tokens, bucket


def generated_frame_count(audio_frames: int, step: int) -> int:
    """Video frames (12.5 fps with `step` 2) Sonic generates for `audio_frames` 25 fps audio frames."""
    return audio_frames // step
