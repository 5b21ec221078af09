"""Temporal-decoder VAE of Stable Video Diffusion (`AutoencoderKLTemporalDecoder`, diffusers key names).

Sonic encodes the reference portrait with it and decodes the denoised latents in chunks of frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .attention import ImageSelfAttention
from .resnets import Downsample, ResnetBlock2D, SpatioTemporalResBlock, Upsample


@dataclass(frozen=True)
class VAEConfig:
    """Constructor arguments (`vae/config.json`); defaults are SVD-xt's."""

    in_channels: int = 3
    out_channels: int = 3
    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    layers_per_block: int = 2
    latent_channels: int = 4
    scaling_factor: float = 0.18215


class EncoderDownBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, layers: int, add_downsample: bool) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(
            ResnetBlock2D(in_channels if i == 0 else out_channels, out_channels, None, 1e-6) for i in range(layers)
        )
        self.downsamplers = nn.ModuleList([Downsample(out_channels, padding=0)]) if add_downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for resnet in self.resnets:
            x = resnet(x, None)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
        return x


class EncoderMidBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(ResnetBlock2D(channels, channels, None, 1e-6) for _ in range(2))
        self.attentions = nn.ModuleList([ImageSelfAttention(channels, channels, 1e-6)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.resnets[0](x, None)
        return self.resnets[1](self.attentions[0](x), None)


class Encoder(nn.Module):
    """Image `(N, 3, H, W)` -> moments `(N, 2·latent, H/8, W/8)` (before `quant_conv`)."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        channels = config.block_out_channels
        self.conv_in = nn.Conv2d(config.in_channels, channels[0], 3, padding=1)
        self.down_blocks = nn.ModuleList(
            EncoderDownBlock(channels[max(i - 1, 0)], channels[i], config.layers_per_block, i < len(channels) - 1)
            for i in range(len(channels))
        )
        self.mid_block = EncoderMidBlock(channels[-1])
        self.conv_norm_out = nn.GroupNorm(32, channels[-1], eps=1e-6)
        self.conv_out = nn.Conv2d(channels[-1], 2 * config.latent_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for block in self.down_blocks:
            x = block(x)
        x = self.mid_block(x)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


def _video_resnet(in_channels: int, out_channels: int) -> SpatioTemporalResBlock:
    return SpatioTemporalResBlock(
        in_channels, out_channels, None, eps=1e-6, temporal_eps=1e-5, switch_spatial_to_temporal=True
    )


class DecoderMidBlock(nn.Module):
    """Upstream builds one attention layer but only runs it between the first and second resnet."""

    def __init__(self, channels: int, layers: int) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(_video_resnet(channels, channels) for _ in range(layers))
        self.attentions = nn.ModuleList([ImageSelfAttention(channels, channels, 1e-6)])

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        x = self.resnets[0](x, None, num_frames)
        for resnet, attention in zip(self.resnets[1:], self.attentions, strict=False):
            x = resnet(attention(x), None, num_frames)
        return x


class DecoderUpBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, layers: int, add_upsample: bool) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(
            _video_resnet(in_channels if i == 0 else out_channels, out_channels) for i in range(layers)
        )
        self.upsamplers = nn.ModuleList([Upsample(out_channels)]) if add_upsample else None

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        for resnet in self.resnets:
            x = resnet(x, None, num_frames)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x)
        return x


class TemporalDecoder(nn.Module):
    """Latents `(N·F, latent, h, w)` -> frames `(N·F, 3, 8h, 8w)`, mixing information across the F frames."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        channels = config.block_out_channels[::-1]
        layers = config.layers_per_block
        self.conv_in = nn.Conv2d(config.latent_channels, channels[0], 3, padding=1)
        self.mid_block = DecoderMidBlock(channels[0], layers)
        self.up_blocks = nn.ModuleList(
            DecoderUpBlock(channels[max(i - 1, 0)], channels[i], layers + 1, i < len(channels) - 1)
            for i in range(len(channels))
        )
        self.conv_norm_out = nn.GroupNorm(32, channels[-1], eps=1e-6)
        self.conv_out = nn.Conv2d(channels[-1], config.out_channels, 3, padding=1)
        self.time_conv_out = nn.Conv3d(config.out_channels, config.out_channels, (3, 1, 1), padding=(1, 0, 0))

    def forward(self, z: torch.Tensor, num_frames: int) -> torch.Tensor:
        x = self.mid_block(self.conv_in(z), num_frames)
        for block in self.up_blocks:
            x = block(x, num_frames)
        x = self.conv_out(F.silu(self.conv_norm_out(x)))
        batch_frames, channels, height, width = x.shape
        video = x.reshape(batch_frames // num_frames, num_frames, channels, height, width).permute(0, 2, 1, 3, 4)
        video = self.time_conv_out(video)
        return video.permute(0, 2, 1, 3, 4).reshape(batch_frames, channels, height, width)


class TemporalVAE(nn.Module):
    """Encoder + `quant_conv` + temporal decoder; the posterior is used through its mean only."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = TemporalDecoder(config)
        self.quant_conv = nn.Conv2d(2 * config.latent_channels, 2 * config.latent_channels, 1)

    def encode_mean(self, image: torch.Tensor) -> torch.Tensor:
        """Mean (= mode) of the latent Gaussian of `image` in [-1, 1], unscaled."""
        moments = self.quant_conv(self.encoder(image))
        return moments.chunk(2, dim=1)[0]

    def decode(self, z: torch.Tensor, num_frames: int) -> torch.Tensor:
        """Unscaled latents of `num_frames` consecutive frames -> frames in about [-1, 1]."""
        return self.decoder(z, num_frames)
