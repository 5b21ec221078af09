"""Sinusoidal embeddings of scalars (diffusion time, frame index, micro-conditioning) and their MLP.

Cosine half first, frequencies exp(-ln(10000)·i/half): the convention of the SVD UNet.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_embedding(values: torch.Tensor, dim: int) -> torch.Tensor:
    """`(N,)` scalars -> `(N, dim)` float32 embedding `[cos(v·f), sin(v·f)]`."""
    half = dim // 2
    exponent = -math.log(10000) * torch.arange(half, dtype=torch.float32, device=values.device) / half
    angles = values[:, None].float() * torch.exp(exponent)[None, :]
    embedding = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)
    if dim % 2:
        embedding = nn.functional.pad(embedding, (0, 1))
    return embedding


class TimestepEmbedding(nn.Module):
    """Two linear layers with SiLU between them, applied to a sinusoidal embedding."""

    def __init__(self, in_channels: int, hidden: int, out_channels: int | None = None) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(in_channels, hidden)
        self.linear_2 = nn.Linear(hidden, out_channels or hidden)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.linear_2(nn.functional.silu(self.linear_1(embedding)))
