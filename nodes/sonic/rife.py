"""RIFE frame interpolation (IFNet, Practical-RIFE HDv3 layout) that doubles Sonic's 12.5 fps to 25 fps.

Block width `c` is read from the weights (90 in the released `flownet.pkl`); N frames become 2N-1.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

SCALES = (4.0, 2.0, 1.0)
"""Coarse-to-fine resolution divisors of the three flow blocks."""


def _conv(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, stride, 1), nn.PReLU(out_channels))


def _head(c: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.ConvTranspose2d(c, c // 2, 4, 2, 1), nn.PReLU(c // 2), nn.ConvTranspose2d(c // 2, out_channels, 4, 2, 1)
    )


def _resize(x: torch.Tensor, scale: float) -> torch.Tensor:
    return F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False, recompute_scale_factor=False)


class IFBlock(nn.Module):
    """Estimates a flow update (4 channels, both directions) and a blend-mask update at 1/scale resolution."""

    def __init__(self, in_channels: int, c: int) -> None:
        super().__init__()
        self.conv0 = nn.Sequential(_conv(in_channels, c // 2, 2), _conv(c // 2, c, 2))
        self.convblock0 = nn.Sequential(_conv(c, c), _conv(c, c))
        self.convblock1 = nn.Sequential(_conv(c, c), _conv(c, c))
        self.convblock2 = nn.Sequential(_conv(c, c), _conv(c, c))
        self.convblock3 = nn.Sequential(_conv(c, c), _conv(c, c))
        self.conv1 = _head(c, 4)
        self.conv2 = _head(c, 1)

    def forward(self, x: torch.Tensor, flow: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
        x = _resize(x, 1.0 / scale)
        flow = _resize(flow, 1.0 / scale) * (1.0 / scale)
        feat = self.conv0(torch.cat((x, flow), 1))
        for block in (self.convblock0, self.convblock1, self.convblock2, self.convblock3):
            feat = block(feat) + feat
        flow = _resize(self.conv1(feat), scale) * scale
        mask = _resize(self.conv2(feat), scale)
        return flow, mask


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward-warp `image` by a pixel `flow (B, 2, H, W)`, border padding, corner-aligned grid."""
    batch, _, height, width = flow.shape
    xs = torch.linspace(-1.0, 1.0, width, device=flow.device).view(1, 1, 1, width).expand(batch, -1, height, -1)
    ys = torch.linspace(-1.0, 1.0, height, device=flow.device).view(1, 1, height, 1).expand(batch, -1, -1, width)
    normalised = torch.cat(
        [flow[:, 0:1] / ((image.shape[3] - 1.0) / 2.0), flow[:, 1:2] / ((image.shape[2] - 1.0) / 2.0)], 1
    )
    grid = (torch.cat([xs, ys], 1) + normalised).permute(0, 2, 3, 1)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)


class IFNet(nn.Module):
    """Three flow blocks applied symmetrically in both directions; `block_tea` (the training-time teacher)
    is kept only so the released weights load strictly."""

    def __init__(self, c: int = 90) -> None:
        super().__init__()
        self.block0 = IFBlock(7 + 4, c)
        self.block1 = IFBlock(7 + 4, c)
        self.block2 = IFBlock(7 + 4, c)
        self.block_tea = IFBlock(10 + 4, c)

    def forward(self, img0: torch.Tensor, img1: torch.Tensor) -> torch.Tensor:
        """Middle frame between two `(B, 3, H, W)` RGB frames in [0, 1] (H, W multiples of 16), unclamped."""
        flow = torch.zeros_like(img0[:, :1]).repeat(1, 4, 1, 1)
        mask = torch.zeros_like(img0[:, :1])
        warped0, warped1 = img0, img1
        for block, scale in zip((self.block0, self.block1, self.block2), SCALES, strict=True):
            f0, m0 = block(torch.cat((warped0, warped1, mask), 1), flow, scale)
            f1, m1 = block(torch.cat((warped1, warped0, -mask), 1), torch.cat((flow[:, 2:4], flow[:, :2]), 1), scale)
            flow = flow + (f0 + torch.cat((f1[:, 2:4], f1[:, :2]), 1)) / 2
            mask = mask + (m0 + (-m1)) / 2
            warped0 = warp(img0, flow[:, :2])
            warped1 = warp(img1, flow[:, 2:4])
        blend = torch.sigmoid(mask)
        return warped0 * blend + warped1 * (1 - blend)


def block_width(state_dict: dict[str, torch.Tensor]) -> int:
    """`c` of a (prefix-stripped) IFNet state dict."""
    return state_dict["block0.conv0.1.0.weight"].shape[0]


def interpolate_frames(
    net: IFNet, frames: torch.Tensor, callback: Callable[[int, int], None] | None = None
) -> torch.Tensor:
    """`(N, 3, H, W)` frames in [0, 1] -> `(2N-1, 3, H, W)`: a clamped middle frame between every pair.

    Frames stay where they are; only each pair visits the network's device. `callback(done, total)` runs
    after every pair and may raise to interrupt."""
    param = next(net.parameters())
    out = []
    total = frames.shape[0] - 1
    for i in range(total):
        pair = frames[i : i + 2].to(param.device, param.dtype)
        middle = net(pair[:1], pair[1:]).clamp(0, 1)[0]
        out += [frames[i], middle.to(frames.device, frames.dtype)]
        if callback is not None:
            callback(i + 1, total)
    out.append(frames[-1])
    return torch.stack(out)
