"""Spatio-temporal transformer of the SVD UNet with Sonic's audio cross-attention.

Temporal blocks see the frame-averaged image/audio context and never the face mask (as upstream).
"""

from __future__ import annotations

import torch
from torch import nn

from .attention import AudioCrossAttention, CrossContext, FeedForward, SelfAttention
from .embeddings import TimestepEmbedding, sinusoidal_embedding
from .resnets import TimeMixer


class SpatialTransformerBlock(nn.Module):
    """Pre-norm self-attention, audio cross-attention and GEGLU feed-forward over the pixels of a frame."""

    def __init__(self, dim: int, heads: int, head_dim: int, context_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = SelfAttention(dim, heads, head_dim)
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = AudioCrossAttention(dim, context_dim, heads, head_dim)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim)

    def forward(self, x: torch.Tensor, context: CrossContext) -> torch.Tensor:
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context) + x
        return self.ff(self.norm3(x)) + x


class TemporalTransformerBlock(nn.Module):
    """The same sequence over the frames of each pixel, after an input feed-forward (`ff_in`)."""

    def __init__(self, dim: int, heads: int, head_dim: int, context_dim: int) -> None:
        super().__init__()
        self.norm_in = nn.LayerNorm(dim)
        self.ff_in = FeedForward(dim)
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = SelfAttention(dim, heads, head_dim)
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = AudioCrossAttention(dim, context_dim, heads, head_dim)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim)

    def forward(self, x: torch.Tensor, num_frames: int, context: CrossContext) -> torch.Tensor:
        batch_frames, pixels, channels = x.shape
        batch = batch_frames // num_frames
        x = x.reshape(batch, num_frames, pixels, channels).permute(0, 2, 1, 3)
        x = x.reshape(batch * pixels, num_frames, channels)
        x = self.ff_in(self.norm_in(x)) + x
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context) + x
        x = self.ff(self.norm3(x)) + x
        x = x.reshape(batch, pixels, num_frames, channels).permute(0, 2, 1, 3)
        return x.reshape(batch_frames, pixels, channels)


def frame_averaged(tokens: torch.Tensor, num_frames: int, pixels: int) -> torch.Tensor:
    """`(B·F, T, D)` per-frame tokens -> `(B·pixels, T, D)`: the mean over frames, one copy per pixel."""
    batch = tokens.shape[0] // num_frames
    mean = tokens.reshape(batch, num_frames, *tokens.shape[-2:]).mean(dim=1, keepdim=True)
    return mean.repeat(1, pixels, 1, 1).reshape(batch * pixels, *tokens.shape[-2:])


class SpatioTemporalTransformer(nn.Module):
    """Residual transformer on a `(B·F, C, H, W)` feature map: spatial then temporal blocks, mixed."""

    def __init__(self, channels: int, heads: int, context_dim: int, layers: int = 1) -> None:
        super().__init__()
        head_dim = channels // heads
        inner = heads * head_dim
        self.norm = nn.GroupNorm(32, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, inner)
        self.transformer_blocks = nn.ModuleList(
            SpatialTransformerBlock(inner, heads, head_dim, context_dim) for _ in range(layers)
        )
        self.temporal_transformer_blocks = nn.ModuleList(
            TemporalTransformerBlock(inner, heads, head_dim, context_dim) for _ in range(layers)
        )
        self.time_pos_embed = TimestepEmbedding(channels, channels * 4, channels)
        self.time_mixer = TimeMixer()
        self.proj_out = nn.Linear(inner, channels)

    def forward(self, x: torch.Tensor, context: CrossContext, num_frames: int) -> torch.Tensor:
        batch_frames, channels, height, width = x.shape
        pixels = height * width
        temporal_context = CrossContext(
            image_tokens=frame_averaged(context.image_tokens, num_frames, pixels),
            audio_tokens=frame_averaged(context.audio_tokens, num_frames, pixels),
            face_mask=None,
            audio_scale=context.audio_scale,
        )
        residual = x
        h = self.norm(x).permute(0, 2, 3, 1).reshape(batch_frames, pixels, channels)
        h = self.proj_in(h)

        frame_index = torch.arange(num_frames, device=x.device).repeat(batch_frames // num_frames)
        frame_embedding = sinusoidal_embedding(frame_index, channels).to(h.dtype)
        frame_embedding = self.time_pos_embed(frame_embedding)[:, None, :]

        for spatial, temporal in zip(self.transformer_blocks, self.temporal_transformer_blocks, strict=True):
            h = spatial(h, context)
            mixed = temporal(h + frame_embedding, num_frames, temporal_context)
            h = self.time_mixer(h, mixed)

        h = self.proj_out(h)
        h = h.reshape(batch_frames, height, width, -1).permute(0, 3, 1, 2).contiguous()
        return h + residual
