"""The flow-matching estimator of GLM-TTS: an F5-TTS style diffusion transformer over 50 Hz mel frames.

Module and attribute names follow the upstream checkpoint (`estimator.*` keys of flow.pt) so its state
dict loads strictly; every size comes from `DiTConfig`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class DiTConfig:
    trans_dim: int = 768
    depth: int = 18
    heads: int = 12
    dim_head: int = 64
    ff_mult: int = 2
    mel_dim: int = 80
    text_vocab_size: int = 100000
    text_emb_dim: int = 512
    conv_layers: int = 4
    condition_dim: int = 80
    speaker_dim: int = 192  # AdaLN speaker conditioning; 0 disables it
    max_text_positions: int = 4096  # length of the text-embedding position table
    time_freq_dim: int = 256
    conv_pos_kernel: int = 31
    conv_pos_groups: int = 16


def sinusoidal_time_embedding(t: torch.Tensor, dim: int, scale: float = 1000.0) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(torch.arange(half, device=t.device).float() * -(math.log(10000) / (half - 1)))
    args = scale * t.unsqueeze(1) * freqs.unsqueeze(0)
    return torch.cat((args.sin(), args.cos()), dim=-1)


def text_position_table(dim: int, length: int, theta: float = 10000.0) -> torch.Tensor:
    """(length, dim) table [cos | sin] of position x inverse frequency, added to token embeddings."""
    inv = 1.0 / (theta ** (torch.arange(0, dim, 2)[: dim // 2].float() / dim))
    angles = torch.outer(torch.arange(length), inv).float()
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


class TimestepEmbedding(nn.Module):
    def __init__(self, dim: int, freq_dim: int):
        super().__init__()
        self.freq_dim = freq_dim
        self.time_mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.time_mlp(sinusoidal_time_embedding(t, self.freq_dim))


class GRN(nn.Module):
    """Global response normalisation over the time axis."""

    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, dim))
        self.beta = nn.Parameter(torch.zeros(1, 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gx = torch.norm(x, p=2, dim=1, keepdim=True)
        nx = gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)
        return self.gamma * (x * nx) + self.beta + x


class ConvNeXtV2Block(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, hidden)
        self.grn = GRN(hidden)
        self.pwconv2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x.transpose(1, 2)).transpose(1, 2)
        y = self.pwconv2(self.grn(F.gelu(self.pwconv1(self.norm(y)))))
        return x + y


class TextEmbedding(nn.Module):
    """Speech-token embedding stretched to the mel length by nearest-neighbour index interpolation."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.max_positions = cfg.max_text_positions
        self.text_embed = nn.Embedding(cfg.text_vocab_size + 1, cfg.text_emb_dim)
        self.register_buffer("freqs_cis", text_position_table(cfg.text_emb_dim, cfg.max_text_positions),
                             persistent=False)
        self.text_blocks = nn.Sequential(
            *[ConvNeXtV2Block(cfg.text_emb_dim, cfg.text_emb_dim * 2) for _ in range(cfg.conv_layers)]
        )

    def forward(self, tokens: torch.Tensor, seq_len: int) -> torch.Tensor:
        if int(tokens.max()) >= self.text_embed.num_embeddings or int(tokens.min()) < 0:
            raise ValueError(f"speech_token_out_of_range: ids must lie in [0, {self.text_embed.num_embeddings})")
        aligned = F.interpolate(tokens.unsqueeze(1).float(), size=seq_len, mode="nearest").squeeze(1).long()
        h = self.text_embed(aligned)
        positions = torch.arange(seq_len, device=tokens.device).clamp(max=self.max_positions - 1)
        h = h + self.freqs_cis[positions].to(h.dtype)
        return self.text_blocks(h)


class ConvPositionEmbedding(nn.Module):
    def __init__(self, dim: int, kernel: int, groups: int):
        super().__init__()
        self.conv1d = nn.Sequential(
            nn.Conv1d(dim, dim, kernel, groups=groups, padding=kernel // 2), nn.Mish(),
            nn.Conv1d(dim, dim, kernel, groups=groups, padding=kernel // 2), nn.Mish(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv1d(x.transpose(1, 2)).transpose(1, 2)


class EmbeddingConcater(nn.Module):
    """Projects [noisy mel ; condition mel ; token embedding] to the transformer width."""

    def __init__(self, in_dim: int, cfg: DiTConfig):
        super().__init__()
        self.proj = nn.Linear(in_dim, cfg.trans_dim)
        self.conv_pos_embed = ConvPositionEmbedding(cfg.trans_dim, cfg.conv_pos_kernel, cfg.conv_pos_groups)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        x = self.proj(torch.cat((x, cond, text), dim=-1))
        return self.conv_pos_embed(x) + x


class RotaryEmbedding(nn.Module):
    """Rotary frequencies for `dim` channels with interleaved (even, odd) pairs."""

    def __init__(self, dim: int, base: float = 10000.0):
        super().__init__()
        self.register_buffer("inv_freq", 1.0 / (base ** (torch.arange(0, dim, 2).float() / dim)))

    def forward(self, seq_len: int) -> torch.Tensor:
        t = torch.arange(seq_len, device=self.inv_freq.device).type_as(self.inv_freq)
        freqs = torch.einsum("i,j->ij", t, self.inv_freq)
        return torch.stack((freqs, freqs), dim=-1).flatten(-2)  # (n, dim): f0 f0 f1 f1 ...


def apply_rotary(x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """Rotate the first freqs.shape[-1] channels of (b, n, c) `x`; the rest pass through.

    Upstream applies this to the flattened (all-head) q/k, so only head 0 is actually rotated.
    """
    rot = freqs.shape[-1]
    head, tail = x[..., :rot], x[..., rot:]
    pairs = head.unflatten(-1, (-1, 2))
    rotated = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)
    head = head * freqs.cos() + rotated * freqs.sin()
    return torch.cat((head, tail), dim=-1)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int):
        super().__init__()
        self.heads = heads
        inner = heads * dim_head
        self.to_q = nn.Linear(dim, inner)
        self.to_k = nn.Linear(dim, inner)
        self.to_v = nn.Linear(dim, inner)
        self.to_out = nn.ModuleList([nn.Linear(inner, dim), nn.Dropout(0.0)])

    def forward(self, x: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q = apply_rotary(self.to_q(x), rope)
        k = apply_rotary(self.to_k(x), rope)
        v = self.to_v(x)
        q, k, v = (t.view(b, n, self.heads, -1).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.to_out[0](out.transpose(1, 2).reshape(b, n, -1))


class AdaLayerNormZero(nn.Module):
    def __init__(self, dim: int, cond_dim: int, chunks: int):
        super().__init__()
        self.chunks = chunks
        self.linear = nn.Linear(cond_dim, dim * chunks)
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)

    def modulation(self, emb: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return torch.chunk(self.linear(F.silu(emb)), self.chunks, dim=1)


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int):
        super().__init__()
        inner = dim * mult
        self.ff = nn.Sequential(nn.Sequential(nn.Linear(dim, inner), nn.GELU(approximate="tanh")),
                                nn.Dropout(0.0), nn.Linear(inner, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ff(x)


class DiTBlock(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.attn_norm = AdaLayerNormZero(cfg.trans_dim, cfg.trans_dim + cfg.speaker_dim, chunks=6)
        self.attn = Attention(cfg.trans_dim, cfg.heads, cfg.dim_head)
        self.ff_norm = nn.LayerNorm(cfg.trans_dim, elementwise_affine=False, eps=1e-6)
        self.ff = FeedForward(cfg.trans_dim, cfg.ff_mult)

    def forward(self, x: torch.Tensor, emb: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
        shift_a, scale_a, gate_a, shift_f, scale_f, gate_f = self.attn_norm.modulation(emb)
        h = self.attn_norm.norm(x) * (1 + scale_a[:, None]) + shift_a[:, None]
        x = x + gate_a.unsqueeze(1) * self.attn(h, rope)
        h = self.ff_norm(x) * (1 + scale_f[:, None]) + shift_f[:, None]
        return x + gate_f.unsqueeze(1) * self.ff(h)


class FinalAdaLayerNorm(AdaLayerNormZero):
    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.modulation(emb)
        return self.norm(x) * (1 + scale)[:, None, :] + shift[:, None, :]


class DiT(nn.Module):
    """Velocity field v(x, condition mel, speech tokens, t, speaker) with x and v of shape (b, n, mel_dim).

    Attention is unmasked: upstream runs batch 1 with an all-ones padding mask (non-streaming path).
    """

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.cfg = cfg
        self.time_embed = TimestepEmbedding(cfg.trans_dim, cfg.time_freq_dim)
        self.text_emb_layer = TextEmbedding(cfg)
        self.emb_concator = EmbeddingConcater(cfg.mel_dim + cfg.text_emb_dim + cfg.condition_dim, cfg)
        self.rotary_embed = RotaryEmbedding(cfg.dim_head)
        self.transformer_blocks = nn.ModuleList([DiTBlock(cfg) for _ in range(cfg.depth)])
        self.norm_out = FinalAdaLayerNorm(cfg.trans_dim, cfg.trans_dim + cfg.speaker_dim, chunks=2)
        self.proj_out = nn.Linear(cfg.trans_dim, cfg.mel_dim)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, tokens: torch.Tensor, t: torch.Tensor,
                speaker: torch.Tensor | None) -> torch.Tensor:
        seq_len = x.shape[1]
        emb = self.time_embed(t)
        if self.cfg.speaker_dim:
            emb = torch.cat([emb, speaker], dim=-1)
        h = self.emb_concator(x, cond, self.text_emb_layer(tokens, seq_len))
        rope = self.rotary_embed(seq_len)
        for block in self.transformer_blocks:
            h = block(h, emb, rope)
        return self.proj_out(self.norm_out(h, emb))
