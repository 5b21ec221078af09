"""Residual blocks of the SVD UNet and temporal VAE: spatial, temporal and their learned blend.

Also the ×2 down/up-sampling convolutions. Frames travel folded into the batch: `(B·F, C, H, W)`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ResnetBlock2D(nn.Module):
    """GroupNorm-SiLU-conv twice, optional time embedding added between, 1×1 shortcut when widths differ."""

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int | None, eps: float) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(32, in_channels, eps=eps)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb_channels, out_channels) if temb_channels else None
        self.norm2 = nn.GroupNorm(32, out_channels, eps=eps)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        if self.time_emb_proj is not None:
            h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        return x + h


class TemporalResnetBlock(nn.Module):
    """The same residual block with (3, 1, 1) convolutions over frames of `(B, C, F, H, W)`."""

    def __init__(self, channels: int, temb_channels: int | None, eps: float) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(32, channels, eps=eps)
        self.conv1 = nn.Conv3d(channels, channels, (3, 1, 1), padding=(1, 0, 0))
        self.time_emb_proj = nn.Linear(temb_channels, channels) if temb_channels else None
        self.norm2 = nn.GroupNorm(32, channels, eps=eps)
        self.conv2 = nn.Conv3d(channels, channels, (3, 1, 1), padding=(1, 0, 0))

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        if self.time_emb_proj is not None:
            h = h + self.time_emb_proj(F.silu(temb)).permute(0, 2, 1)[:, :, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return x + h


class TimeMixer(nn.Module):
    """Learned blend `a·spatial + (1-a)·temporal`, `a = sigmoid(mix_factor)` (or `1-a` when switched).

    Upstream also forces `a = 1` for frames flagged image-only; Sonic never flags any.
    """

    def __init__(self, switch_spatial_to_temporal: bool = False) -> None:
        super().__init__()
        self.mix_factor = nn.Parameter(torch.zeros(1))
        self.switch = switch_spatial_to_temporal

    def forward(self, spatial: torch.Tensor, temporal: torch.Tensor) -> torch.Tensor:
        alpha = torch.sigmoid(self.mix_factor).to(spatial.dtype)
        if self.switch:
            alpha = 1.0 - alpha
        return alpha * spatial + (1.0 - alpha) * temporal


class SpatioTemporalResBlock(nn.Module):
    """Spatial residual block per frame, then a temporal one across frames, blended by a `TimeMixer`."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        temb_channels: int | None,
        eps: float,
        temporal_eps: float | None = None,
        switch_spatial_to_temporal: bool = False,
    ) -> None:
        super().__init__()
        self.spatial_res_block = ResnetBlock2D(in_channels, out_channels, temb_channels, eps)
        self.temporal_res_block = TemporalResnetBlock(out_channels, temb_channels, temporal_eps or eps)
        self.time_mixer = TimeMixer(switch_spatial_to_temporal)

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None, num_frames: int) -> torch.Tensor:
        x = self.spatial_res_block(x, temb)
        batch_frames, channels, height, width = x.shape
        batch = batch_frames // num_frames
        video = x.reshape(batch, num_frames, channels, height, width).permute(0, 2, 1, 3, 4)
        if temb is not None:
            temb = temb.reshape(batch, num_frames, -1)
        mixed = self.time_mixer(video, self.temporal_res_block(video, temb))
        return mixed.permute(0, 2, 1, 3, 4).reshape(batch_frames, channels, height, width)


class Downsample(nn.Module):
    """Stride-2 3×3 convolution; `padding=0` pads right/bottom by one first (VAE encoder)."""

    def __init__(self, channels: int, padding: int = 1) -> None:
        super().__init__()
        self.padding = padding
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding == 0:
            x = F.pad(x, (0, 1, 0, 1))
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour ×2, then a 3×3 convolution."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
