"""The Whisper encoder Sonic takes its audio features from (whisper-tiny; decoder not needed).

Parameter names are those of Hugging Face `WhisperModel.encoder` (file keys `model.encoder.*`, prefix stripped).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .attention import attend


@dataclass(frozen=True)
class WhisperEncoderConfig:
    """Encoder part of a Whisper `config.json`; defaults are whisper-tiny's."""

    num_mel_bins: int = 80
    d_model: int = 384
    encoder_layers: int = 4
    encoder_attention_heads: int = 6
    encoder_ffn_dim: int = 1536
    max_source_positions: int = 1500


class WhisperAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_proj(attend(self.q_proj(x), self.k_proj(x), self.v_proj(x), self.heads))


class WhisperEncoderLayer(nn.Module):
    def __init__(self, config: WhisperEncoderConfig) -> None:
        super().__init__()
        dim = config.d_model
        self.self_attn = WhisperAttention(dim, config.encoder_attention_heads)
        self.self_attn_layer_norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, config.encoder_ffn_dim)
        self.fc2 = nn.Linear(config.encoder_ffn_dim, dim)
        self.final_layer_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.self_attn_layer_norm(x))
        return x + self.fc2(F.gelu(self.fc1(self.final_layer_norm(x))))


class WhisperEncoder(nn.Module):
    """Log-mel `(B, 80, 3000)` -> the embeddings and every layer output, `L+1` tensors `(B, 1500, D)`;
    the last one is after the final layer norm (Hugging Face `hidden_states` order)."""

    def __init__(self, config: WhisperEncoderConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.d_model
        self.conv1 = nn.Conv1d(config.num_mel_bins, dim, 3, padding=1)
        self.conv2 = nn.Conv1d(dim, dim, 3, stride=2, padding=1)
        self.embed_positions = nn.Embedding(config.max_source_positions, dim)
        self.layers = nn.ModuleList(WhisperEncoderLayer(config) for _ in range(config.encoder_layers))
        self.layer_norm = nn.LayerNorm(dim)

    def forward(self, features: torch.Tensor) -> list[torch.Tensor]:
        x = F.gelu(self.conv2(F.gelu(self.conv1(features)))).permute(0, 2, 1)
        x = x + self.embed_positions.weight[: x.shape[1]]
        states = []
        for layer in self.layers:
            states.append(x)
            x = layer(x)
        states.append(self.layer_norm(x))
        return states
