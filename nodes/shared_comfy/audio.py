"""ComfyUI AUDIO values (`{"waveform": [B, C, T], "sample_rate": int}`) to the mono tensors our models take."""

from __future__ import annotations

import torch

from ..shared.resample import resample


def to_mono(audio: dict, target_rate: int) -> torch.Tensor:
    """The first item of an AUDIO batch, channels averaged, resampled to `target_rate`: float32 (T,)."""
    waveform = audio["waveform"]
    if waveform.dim() == 3:
        waveform = waveform[0]
    mono = waveform.float().mean(dim=0)
    rate = int(audio["sample_rate"])
    return mono if rate == target_rate else resample(mono.unsqueeze(0), rate, target_rate).squeeze(0)


def to_audio(samples: torch.Tensor, sample_rate: int) -> dict:
    """A mono (T,) or (C, T) tensor as a ComfyUI AUDIO value."""
    waveform = samples if samples.dim() == 2 else samples.unsqueeze(0)
    return {"waveform": waveform.unsqueeze(0).float().cpu(), "sample_rate": int(sample_rate)}


def seconds(audio: dict) -> float:
    return audio["waveform"].shape[-1] / float(audio["sample_rate"])
