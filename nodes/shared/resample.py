"""Band-limited sinc resampling with a Hann-windowed kernel (the torchaudio Resample algorithm).

GLM-TTS resamples its prompt with torchaudio's default resampler; this reproduces it without torchaudio, and
the ComfyUI glue of both families uses it for AUDIO values at other rates.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F

LOWPASS_FILTER_WIDTH = 6
ROLLOFF = 0.99


@lru_cache(maxsize=16)
def _kernel_cpu(orig_freq: int, new_freq: int, lowpass_filter_width: int, rolloff: float) -> tuple[torch.Tensor, int]:
    g = math.gcd(orig_freq, new_freq)
    orig, new = orig_freq // g, new_freq // g
    cutoff = min(orig, new) * rolloff
    width = math.ceil(lowpass_filter_width * orig / cutoff)
    # Output phase j samples the input at j/new; each phase gets its own FIR taps over the input grid.
    taps = torch.arange(-width, width + orig, dtype=torch.float64) / orig
    phases = -torch.arange(new, dtype=torch.float64) / new
    t = (phases[:, None] + taps[None, :]) * cutoff
    t = t.clamp(-lowpass_filter_width, lowpass_filter_width)
    window = torch.cos(t * math.pi / lowpass_filter_width / 2) ** 2
    t = t * math.pi
    sinc = torch.where(t == 0, torch.ones_like(t), torch.sin(t) / t)
    kernel = (sinc * window * (cutoff / orig)).to(torch.float32)
    return kernel[:, None, :], width


def sinc_resample_kernel(
    orig_freq: int,
    new_freq: int,
    lowpass_filter_width: int = LOWPASS_FILTER_WIDTH,
    rolloff: float = ROLLOFF,
) -> tuple[torch.Tensor, int]:
    """The (new/g, 1, taps) float32 polyphase kernel and its half width, g = gcd of the two rates."""
    kernel, width = _kernel_cpu(int(orig_freq), int(new_freq), lowpass_filter_width, float(rolloff))
    return kernel.clone(), width


def resample(waveform: torch.Tensor, orig_freq: int, new_freq: int) -> torch.Tensor:
    """Resample the last axis of `waveform` from `orig_freq` to `new_freq` Hz."""
    if orig_freq == new_freq:
        return waveform
    g = math.gcd(int(orig_freq), int(new_freq))
    orig, new = int(orig_freq) // g, int(new_freq) // g
    kernel, width = sinc_resample_kernel(orig_freq, new_freq)
    kernel = kernel.to(device=waveform.device, dtype=waveform.dtype)
    shape = waveform.shape
    flat = waveform.reshape(-1, shape[-1])
    length = flat.shape[-1]
    padded = F.pad(flat, (width, width + orig))
    out = F.conv1d(padded[:, None], kernel, stride=orig)
    out = out.transpose(1, 2).reshape(flat.shape[0], -1)
    target = -(-new * length // orig)
    return out[:, :target].reshape(*shape[:-1], -1)
