"""Sonic's two audio MLPs: Whisper windows -> 32 audio tokens per frame (`audio2token.pth`), and
Whisper windows + CLIP identity -> the two SVD motion buckets per frame (`audio2bucket.pth`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class AudioProjConfig:
    """`AudioProjModel` arguments; defaults are those of the released `audio2token.pth`."""

    seq_len: int = 10
    blocks: int = 5
    channels: int = 384
    intermediate_dim: int = 1024
    output_dim: int = 1024
    context_tokens: int = 32


@dataclass(frozen=True)
class Audio2BucketConfig:
    """`Audio2bucketModel` arguments; defaults are those of the released `audio2bucket.pth`."""

    seq_len: int = 50
    blocks: int = 1
    channels: int = 384
    clip_channels: int = 1024
    intermediate_dim: int = 1024
    output_dim: int = 1
    context_tokens: int = 2


BUCKET_SCALE = 16.0
"""Upstream maps the raw bucket output `y` to SVD's micro-conditioning range as `16·y + 16`."""


class AudioProjModel(nn.Module):
    """`(B, F, seq_len, blocks, channels)` windows -> `(B, F, context_tokens, output_dim)` tokens."""

    def __init__(self, config: AudioProjConfig) -> None:
        super().__init__()
        self.config = config
        in_dim = config.seq_len * config.blocks * config.channels
        self.proj1 = nn.Linear(in_dim, config.intermediate_dim)
        self.proj2 = nn.Linear(config.intermediate_dim, config.intermediate_dim)
        self.proj3 = nn.Linear(config.intermediate_dim, config.context_tokens * config.output_dim)
        self.norm = nn.LayerNorm(config.output_dim)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        batch, frames = windows.shape[:2]
        x = windows.reshape(batch * frames, -1)
        x = torch.relu(self.proj2(torch.relu(self.proj1(x))))
        tokens = self.proj3(x).reshape(batch * frames, self.config.context_tokens, self.config.output_dim)
        return self.norm(tokens).reshape(batch, frames, *tokens.shape[1:])


class Audio2BucketModel(nn.Module):
    """`(B, F, seq_len, blocks, channels)` windows + `(B·F, clip_channels)` image embeddings ->
    raw `(B, F, context_tokens, output_dim)` bucket values."""

    def __init__(self, config: Audio2BucketConfig) -> None:
        super().__init__()
        self.config = config
        in_dim = config.seq_len * config.blocks * config.channels + config.clip_channels
        self.proj1 = nn.Linear(in_dim, config.intermediate_dim)
        self.proj2 = nn.Linear(config.intermediate_dim, config.intermediate_dim)
        self.proj3 = nn.Linear(config.intermediate_dim, config.context_tokens * config.output_dim)

    def forward(self, windows: torch.Tensor, image_embeds: torch.Tensor) -> torch.Tensor:
        batch, frames = windows.shape[:2]
        x = torch.cat([windows.reshape(batch * frames, -1), image_embeds], dim=-1)
        x = F.silu(self.proj2(F.silu(self.proj1(x))))
        out = self.proj3(x).reshape(batch, frames, self.config.context_tokens, self.config.output_dim)
        return out


@dataclass(frozen=True)
class FrameAudio:
    """Per-frame audio conditioning of the denoiser."""

    tokens: torch.Tensor
    """`(F, T, D)` audio tokens."""
    uncond_tokens: torch.Tensor
    """`(F, T, D)` tokens of an all-zero window (non-zero: the biases remain)."""
    motion_buckets: torch.Tensor
    """`(F, 2)` `[motion_bucket_id, expression_bucket_id]`, already `16·y + 16`, before `dynamic_scale`."""


def frame_audio(
    audio2token: AudioProjModel,
    audio2bucket: Audio2BucketModel,
    token_windows: torch.Tensor,
    bucket_windows: torch.Tensor,
    image_embeds: torch.Tensor,
) -> FrameAudio:
    """Run both adapters over all frames: `token_windows (F, 10, L+1, D)`, `bucket_windows (F, 50, 1, D)`,
    `image_embeds (1, C)`."""
    frames = token_windows.shape[0]
    dtype = audio2token.proj1.weight.dtype
    tokens = audio2token(token_windows[None].to(dtype))[0]
    uncond = audio2token(torch.zeros_like(token_windows[:1])[None].to(dtype))[0].expand(frames, -1, -1)
    clip = image_embeds.to(dtype).expand(frames, -1)
    raw = audio2bucket(bucket_windows[None].to(dtype), clip)[0]
    buckets = raw.reshape(frames, -1) * BUCKET_SCALE + BUCKET_SCALE
    return FrameAudio(tokens=tokens, uncond_tokens=uncond, motion_buckets=buckets)
