"""Spatio-temporal UNet of Stable Video Diffusion with Sonic's audio IP-adapter in every `attn2`.

Parameter names match upstream `unet.pth` (diffusers layout after `add_ip_adapters`), so it loads strictly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .attention import CrossContext
from .embeddings import TimestepEmbedding, sinusoidal_embedding
from .resnets import Downsample, SpatioTemporalResBlock, Upsample
from .transformer import SpatioTemporalTransformer

CROSS_ATTENTION_PREFIX = "CrossAttn"


@dataclass(frozen=True)
class UNetConfig:
    """Constructor arguments of the SVD UNet (`unet/config.json`); defaults are SVD-xt's."""

    in_channels: int = 8
    out_channels: int = 4
    down_block_types: tuple[str, ...] = (
        "CrossAttnDownBlockSpatioTemporal",
        "CrossAttnDownBlockSpatioTemporal",
        "CrossAttnDownBlockSpatioTemporal",
        "DownBlockSpatioTemporal",
    )
    up_block_types: tuple[str, ...] = (
        "UpBlockSpatioTemporal",
        "CrossAttnUpBlockSpatioTemporal",
        "CrossAttnUpBlockSpatioTemporal",
        "CrossAttnUpBlockSpatioTemporal",
    )
    block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
    addition_time_embed_dim: int = 256
    projection_class_embeddings_input_dim: int = 768
    layers_per_block: int | tuple[int, ...] = 2
    cross_attention_dim: int = 1024
    transformer_layers_per_block: int | tuple[int, ...] = 1
    num_attention_heads: int | tuple[int, ...] = (5, 10, 20, 20)
    num_frames: int = 25

    def __post_init__(self) -> None:
        """A config.json whose per-block lists disagree fails here, naming the field, not deep in a shape error."""
        blocks = len(self.block_out_channels)
        for name in ("down_block_types", "up_block_types", "layers_per_block", "transformer_layers_per_block",
                     "num_attention_heads"):
            value = getattr(self, name)
            if not isinstance(value, int) and len(value) != blocks:
                raise ValueError(f"UNet config: {name} has {len(value)} entries for {blocks} blocks "
                                 f"(block_out_channels)")

    def per_block(self, value: int | tuple[int, ...]) -> tuple[int, ...]:
        return (value,) * len(self.block_out_channels) if isinstance(value, int) else tuple(value)


@dataclass(frozen=True)
class _Attention:
    heads: int
    context_dim: int
    layers: int


class UNetDownBlock(nn.Module):
    """Residual blocks, each optionally followed by a transformer, then an optional stride-2 conv."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        temb: int,
        layers: int,
        attention: _Attention | None,
        add_downsample: bool,
    ) -> None:
        super().__init__()
        eps = 1e-6 if attention else 1e-5  # upstream's per-block-type defaults
        self.resnets = nn.ModuleList(
            SpatioTemporalResBlock(in_channels if i == 0 else out_channels, out_channels, temb, eps)
            for i in range(layers)
        )
        self.attentions = _transformers(out_channels, attention, layers)
        self.downsamplers = nn.ModuleList([Downsample(out_channels)]) if add_downsample else None

    def forward(
        self, x: torch.Tensor, temb: torch.Tensor, context: CrossContext, num_frames: int
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        skips: tuple[torch.Tensor, ...] = ()
        for i, resnet in enumerate(self.resnets):
            x = resnet(x, temb, num_frames)
            if self.attentions is not None:
                x = self.attentions[i](x, context, num_frames)
            skips += (x,)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
            skips += (x,)
        return x, skips


class UNetUpBlock(nn.Module):
    """Residual blocks over `[x, skip]` concatenations, optional transformers, optional ×2 upsampling."""

    def __init__(
        self,
        in_channels: int,
        prev_channels: int,
        out_channels: int,
        temb: int,
        layers: int,
        attention: _Attention | None,
        add_upsample: bool,
    ) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(
            SpatioTemporalResBlock(
                (prev_channels if i == 0 else out_channels) + (in_channels if i == layers - 1 else out_channels),
                out_channels,
                temb,
                1e-6,
            )
            for i in range(layers)
        )
        self.attentions = _transformers(out_channels, attention, layers)
        self.upsamplers = nn.ModuleList([Upsample(out_channels)]) if add_upsample else None

    def forward(
        self,
        x: torch.Tensor,
        skips: tuple[torch.Tensor, ...],
        temb: torch.Tensor,
        context: CrossContext,
        num_frames: int,
    ) -> torch.Tensor:
        for i, resnet in enumerate(self.resnets):
            x = resnet(torch.cat([x, skips[-1 - i]], dim=1), temb, num_frames)
            if self.attentions is not None:
                x = self.attentions[i](x, context, num_frames)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x)
        return x


class UNetMidBlock(nn.Module):
    """Residual block, transformer, residual block at the lowest resolution."""

    def __init__(self, channels: int, temb: int, attention: _Attention) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(SpatioTemporalResBlock(channels, channels, temb, 1e-5) for _ in range(2))
        self.attentions = _transformers(channels, attention, 1)

    def forward(self, x: torch.Tensor, temb: torch.Tensor, context: CrossContext, num_frames: int) -> torch.Tensor:
        x = self.resnets[0](x, temb, num_frames)
        x = self.attentions[0](x, context, num_frames)
        return self.resnets[1](x, temb, num_frames)


def _transformers(channels: int, attention: _Attention | None, count: int) -> nn.ModuleList | None:
    if attention is None:
        return None
    return nn.ModuleList(
        SpatioTemporalTransformer(channels, attention.heads, attention.context_dim, attention.layers)
        for _ in range(count)
    )


class SonicUNet(nn.Module):
    """`(B, F, 8, h, w)` noisy latents + image latents -> `(B, F, 4, h, w)` v-prediction."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        channels = config.block_out_channels
        heads = config.per_block(config.num_attention_heads)
        layers = config.per_block(config.layers_per_block)
        transformer_layers = config.per_block(config.transformer_layers_per_block)
        context_dim = config.cross_attention_dim
        temb = channels[0] * 4

        self.conv_in = nn.Conv2d(config.in_channels, channels[0], 3, padding=1)
        self.time_embedding = TimestepEmbedding(channels[0], temb)
        self.add_embedding = TimestepEmbedding(config.projection_class_embeddings_input_dim, temb)

        def attention(kind: str, index: int) -> _Attention | None:
            if not kind.startswith(CROSS_ATTENTION_PREFIX):
                return None
            return _Attention(heads[index], context_dim, transformer_layers[index])

        self.down_blocks = nn.ModuleList()
        for i, kind in enumerate(config.down_block_types):
            self.down_blocks.append(
                UNetDownBlock(
                    channels[max(i - 1, 0)],
                    channels[i],
                    temb,
                    layers[i],
                    attention(kind, i),
                    add_downsample=i < len(channels) - 1,
                )
            )
        self.mid_block = UNetMidBlock(channels[-1], temb, _Attention(heads[-1], context_dim, transformer_layers[-1]))
        self.up_blocks = nn.ModuleList()
        reversed_channels = channels[::-1]
        last = len(channels) - 1
        for i, kind in enumerate(config.up_block_types):
            self.up_blocks.append(
                UNetUpBlock(
                    reversed_channels[min(i + 1, last)],
                    reversed_channels[max(i - 1, 0)],
                    reversed_channels[i],
                    temb,
                    layers[::-1][i] + 1,
                    attention(kind, last - i),
                    add_upsample=i < last,
                )
            )
        self.conv_norm_out = nn.GroupNorm(32, channels[0], eps=1e-5)
        self.conv_out = nn.Conv2d(channels[0], config.out_channels, 3, padding=1)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float,
        image_tokens: torch.Tensor,
        audio_tokens: torch.Tensor,
        added_time_ids: torch.Tensor,
        face_mask: torch.Tensor | None = None,
        audio_scale: float = 1.0,
    ) -> torch.Tensor:
        """`image_tokens (B·F, S, D)` and `audio_tokens (B·F, T, D)` per frame; `added_time_ids (B, 3)` are
        `[fps, motion_bucket, expression_bucket]`; `face_mask (1, 1, H, W)` gates audio in spatial layers."""
        batch, frames = sample.shape[:2]
        config = self.config
        timesteps = torch.as_tensor(timestep, device=sample.device).reshape(-1).expand(batch)
        emb = self.time_embedding(sinusoidal_embedding(timesteps, config.block_out_channels[0]).to(sample.dtype))
        time_ids = sinusoidal_embedding(added_time_ids.flatten(), config.addition_time_embed_dim)
        emb = emb + self.add_embedding(time_ids.reshape(batch, -1).to(emb.dtype))
        emb = emb.repeat_interleave(frames, dim=0)

        context = CrossContext(image_tokens, audio_tokens, face_mask, audio_scale)
        x = self.conv_in(sample.flatten(0, 1))
        skips: tuple[torch.Tensor, ...] = (x,)
        for block in self.down_blocks:
            x, block_skips = block(x, emb, context, frames)
            skips += block_skips
        x = self.mid_block(x, emb, context, frames)
        for block in self.up_blocks:
            count = len(block.resnets)
            x = block(x, skips[-count:], emb, context, frames)
            skips = skips[:-count]

        x = self.conv_out(F.silu(self.conv_norm_out(x)))
        return x.reshape(batch, frames, *x.shape[1:])
