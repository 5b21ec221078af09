"""Attention layers of the Sonic UNet and VAE, with the audio IP-adapter branch gated by the face mask.

Parameter names follow the diffusers layout (`to_q`, `to_out.0`, `processor.to_k_ip.0`, `ff.net.2`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class CrossContext:
    """What a cross-attention (`attn2`) layer attends to, one row per frame of the batch."""

    image_tokens: torch.Tensor
    """`(B·F, S, D)` CLIP image-embedding tokens."""
    audio_tokens: torch.Tensor
    """`(B·F, T, D)` audio tokens of the IP-adapter branch."""
    face_mask: torch.Tensor | None
    """`(1, 1, H, W)` mask in [0, 1] that gates the audio branch; None lets audio act everywhere."""
    audio_scale: float


def attend(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, heads: int) -> torch.Tensor:
    """Multi-head scaled dot-product attention on `(B, N, heads·d)` projections."""
    batch, _, inner = query.shape
    head_dim = inner // heads

    def split(x: torch.Tensor) -> torch.Tensor:
        return x.view(batch, -1, heads, head_dim).transpose(1, 2)

    out = F.scaled_dot_product_attention(split(query), split(key), split(value))
    return out.transpose(1, 2).reshape(batch, -1, inner)


def face_mask_weights(mask: torch.Tensor, num_queries: int) -> torch.Tensor:
    """Resample a `(1, 1, H, W)` mask to one weight per query token, shape `(num_queries, 1)`.

    Upstream picks a grid of about the mask's aspect ratio with `num_queries` cells (bicubic), then pads
    with zeros or truncates when the grid does not match the token count exactly.
    """
    ratio = mask.shape[-1] / mask.shape[-2]
    rows = int(torch.sqrt(torch.tensor([num_queries / ratio], dtype=torch.float32))[0])
    rows = max(rows, 1)
    rows += int(num_queries % rows != 0)
    cols = num_queries // rows
    weights = F.interpolate(mask[:, :1], size=(rows, cols), mode="bicubic").reshape(-1)
    if weights.numel() < num_queries:
        weights = F.pad(weights, (0, num_queries - weights.numel()))
    return weights[:num_queries, None]


class SelfAttention(nn.Module):
    """Token self-attention without projection biases (`attn1` of the transformer blocks)."""

    def __init__(self, dim: int, heads: int, head_dim: int) -> None:
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(dim, inner, bias=False)
        self.to_v = nn.Linear(dim, inner, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(inner, dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = attend(self.to_q(x), self.to_k(x), self.to_v(x), self.heads)
        return self.to_out[0](out)


class AudioAdapterProjection(nn.Module):
    """Key/value projections of the audio tokens (upstream's IP-adapter processor weights)."""

    def __init__(self, context_dim: int, inner: int) -> None:
        super().__init__()
        self.to_k_ip = nn.ModuleList([nn.Linear(context_dim, inner, bias=False)])
        self.to_v_ip = nn.ModuleList([nn.Linear(context_dim, inner, bias=False)])


class AudioCrossAttention(nn.Module):
    """`attn2`: attention to the image tokens plus a scaled audio branch, gated by the face mask if given."""

    def __init__(self, dim: int, context_dim: int, heads: int, head_dim: int) -> None:
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(inner, dim)])
        self.processor = AudioAdapterProjection(context_dim, inner)

    def forward(self, x: torch.Tensor, context: CrossContext) -> torch.Tensor:
        query = self.to_q(x)
        image = context.image_tokens
        out = attend(query, self.to_k(image), self.to_v(image), self.heads)
        if context.audio_scale != 0:
            audio = context.audio_tokens
            audio_out = attend(query, self.processor.to_k_ip[0](audio), self.processor.to_v_ip[0](audio), self.heads)
            if context.face_mask is not None:
                weights = face_mask_weights(context.face_mask, audio_out.shape[1])
                audio_out = audio_out * weights.to(audio_out.dtype)
            out = out + context.audio_scale * audio_out
        return self.to_out[0](out)


class ImageSelfAttention(nn.Module):
    """Residual self-attention over the pixels of a feature map, group-normed first (VAE mid blocks)."""

    def __init__(self, channels: int, head_dim: int, eps: float) -> None:
        super().__init__()
        self.heads = channels // head_dim
        self.group_norm = nn.GroupNorm(32, channels, eps=eps)
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        self.to_out = nn.ModuleList([nn.Linear(channels, channels)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        tokens = x.view(batch, channels, height * width).transpose(1, 2)
        normed = self.group_norm(tokens.transpose(1, 2)).transpose(1, 2)
        out = attend(self.to_q(normed), self.to_k(normed), self.to_v(normed), self.heads)
        out = self.to_out[0](out).transpose(1, 2).reshape(batch, channels, height, width)
        return out + x


class GEGLU(nn.Module):
    """Linear layer to twice the width, then `value · gelu(gate)`."""

    def __init__(self, dim: int, inner: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, inner * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        return value * F.gelu(gate)


class FeedForward(nn.Module):
    """GEGLU feed-forward, 4× wide; `net.1` is the (inference no-op) dropout slot kept for key names."""

    def __init__(self, dim: int, dim_out: int | None = None, mult: int = 4) -> None:
        super().__init__()
        inner = dim * mult
        self.net = nn.ModuleList([GEGLU(dim, inner), nn.Identity(), nn.Linear(inner, dim_out or dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.net:
            x = layer(x)
        return x
