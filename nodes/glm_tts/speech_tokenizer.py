"""WhisperVQ speech tokenizer: 16 kHz speech to 25 Hz discrete tokens (GLM-TTS prompt speech tokens).

A Whisper encoder truncated at the quantizer: convs, block-causal attention layers, average pooling and
a nearest-codebook lookup; keys load from `model.encoder.*` of the upstream safetensors.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..shared.resample import resample

SEGMENT_SECONDS = 30
TOKENIZER_RATE = 16000
SEGMENTS_PER_BATCH = 128


@dataclass(frozen=True)
class WhisperVQConfig:
    d_model: int = 1280
    encoder_attention_heads: int = 20
    encoder_ffn_dim: int = 5120
    num_mel_bins: int = 128
    max_source_positions: int = 1500
    pooling_kernel_size: int | None = 2
    pooling_type: str = "avg"
    pooling_position: int = 16
    quantize_vocab_size: int | None = 32768
    quantize_position: int = 16
    quantize_causal_block_size: int | None = 200
    quantize_causal_encoder: bool = False
    quantize_ema_decay: float | None = 0.99
    encoder_causal_convolution: bool = False
    encoder_causal_attention: bool = False

    @classmethod
    def from_dict(cls, cfg: dict[str, Any]) -> WhisperVQConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in cfg.items() if k in names})


class CausalConv1d(nn.Conv1d):
    """Conv1d padded on the left only, so a frame never sees the future."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left = self.dilation[0] * (self.kernel_size[0] - 1)
        return super().forward(F.pad(x, (left, 0)))


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, causal: bool):
        super().__init__()
        self.heads, self.causal = heads, causal
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim)
        self.q_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = (p(x).view(b, n, self.heads, -1).transpose(1, 2) for p in (self.q_proj, self.k_proj, self.v_proj))
        causal = self.causal and n > 1
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=None if self.causal else mask, is_causal=causal)
        return self.out_proj(out.transpose(1, 2).reshape(b, n, d))


class EncoderLayer(nn.Module):
    def __init__(self, cfg: WhisperVQConfig, causal: bool):
        super().__init__()
        self.self_attn = SelfAttention(cfg.d_model, cfg.encoder_attention_heads, causal)
        self.self_attn_layer_norm = nn.LayerNorm(cfg.d_model)
        self.fc1 = nn.Linear(cfg.d_model, cfg.encoder_ffn_dim)
        self.fc2 = nn.Linear(cfg.encoder_ffn_dim, cfg.d_model)
        self.final_layer_norm = nn.LayerNorm(cfg.d_model)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.self_attn(self.self_attn_layer_norm(x), mask)
        return x + self.fc2(F.gelu(self.fc1(self.final_layer_norm(x))))


def block_causal_mask(valid: torch.Tensor, block: int, dtype: torch.dtype) -> torch.Tensor:
    """Additive (B, 1, T, T) mask: attend to the past and to the whole current block, never to padding."""
    n = valid.shape[1]
    idx = torch.arange(n, device=valid.device)
    allowed = (idx[None, :] <= idx[:, None]) | ((idx[:, None] // block) == (idx[None, :] // block))
    allowed = allowed[None] & valid.bool()[:, None, :]
    return ((1.0 - allowed.to(dtype)) * torch.finfo(dtype).min).unsqueeze(1)


def padding_mask(valid: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return ((1.0 - valid[:, None, None, :].to(dtype)) * torch.finfo(dtype).min)


def nearest_code(hidden: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the closest codebook row (squared L2, expanded as |c|² + |x|² − 2x·c) per vector."""
    flat = hidden.reshape(-1, codebook.shape[1])
    dist = torch.addmm((codebook**2).sum(dim=1) + (flat**2).sum(dim=1, keepdim=True), flat, codebook.t(),
                       alpha=-2.0, beta=1.0)
    return torch.min(dist, dim=1).indices.reshape(hidden.shape[:-1])


class WhisperVQEncoder(nn.Module):
    """Encoder layers up to the quantizer; `forward` returns (token ids, valid mask) at the token rate."""

    def __init__(self, cfg: WhisperVQConfig):
        super().__init__()
        self.cfg = cfg
        conv = CausalConv1d if cfg.encoder_causal_convolution else nn.Conv1d
        pad = 0 if cfg.encoder_causal_convolution else 1
        self.conv1 = conv(cfg.num_mel_bins, cfg.d_model, kernel_size=3, padding=pad)
        self.conv2 = conv(cfg.d_model, cfg.d_model, kernel_size=3, stride=2, padding=pad)
        self.embed_positions = nn.Embedding(cfg.max_source_positions, cfg.d_model)
        causal = cfg.encoder_causal_attention or cfg.quantize_causal_encoder
        self.layers = nn.ModuleList([EncoderLayer(cfg, causal) for _ in range(cfg.quantize_position)])
        if cfg.quantize_vocab_size is None:
            raise ValueError("not_a_vq_tokenizer: quantize_vocab_size is missing from the config")
        self.codebook = nn.Embedding(cfg.quantize_vocab_size, cfg.d_model)
        pooled = cfg.max_source_positions
        if cfg.pooling_kernel_size:
            pooled = -(-pooled // cfg.pooling_kernel_size)
        self.embed_positions2 = nn.Embedding(pooled, cfg.d_model)
        if cfg.quantize_ema_decay is not None:  # training state, required by the strict load only
            self.register_buffer("ema_count", torch.ones(cfg.quantize_vocab_size))
            self.register_buffer("ema_weight", torch.zeros(cfg.quantize_vocab_size, cfg.d_model))

    @property
    def samples_per_token(self) -> int:
        return self.conv1.stride[0] * self.conv2.stride[0] * (self.cfg.pooling_kernel_size or 1)

    def _mask(self, valid: torch.Tensor, block: int | None, dtype: torch.dtype) -> torch.Tensor:
        return block_causal_mask(valid, block, dtype) if block else padding_mask(valid, dtype)

    def forward(self, features: torch.Tensor, feature_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden, valid = self.encode(features, feature_mask)
        return nearest_code(hidden, self.codebook.weight), valid

    def encode(self, features: torch.Tensor, feature_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden states entering the quantizer and their validity mask, both at the token rate."""
        cfg = self.cfg
        stride = self.conv1.stride[0] * self.conv2.stride[0]
        valid = feature_mask[:, ::stride]
        x = F.gelu(self.conv2(F.gelu(self.conv1(features)))).permute(0, 2, 1)
        x = x + self.embed_positions.weight[: features.shape[-1] // stride]
        block = cfg.quantize_causal_block_size
        mask = self._mask(valid, block, x.dtype)
        for idx, layer in enumerate(self.layers, start=1):
            x = layer(x, mask)
            if idx == cfg.pooling_position and cfg.pooling_kernel_size:
                k = cfg.pooling_kernel_size
                h = x.permute(0, 2, 1)
                if h.shape[-1] % k:
                    h = F.pad(h, (0, k - h.shape[-1] % k))
                pool = F.avg_pool1d if cfg.pooling_type == "avg" else F.max_pool1d
                x = pool(h, k).permute(0, 2, 1)
                valid = valid[:, ::k]
                mask = self._mask(valid, block // k if block else None, x.dtype)
        return x, valid


def encoder_state_from_checkpoint(state: dict[str, torch.Tensor], cfg: WhisperVQConfig) -> dict[str, torch.Tensor]:
    """Upstream's key rule: keep `model.encoder.*`, drop `layer_norm*` and layers at/after the quantizer."""
    kept = {}
    for key, value in state.items():
        if not key.startswith("model.encoder."):
            continue
        name = key[len("model.encoder."):]
        if name.startswith("layer_norm"):
            continue
        if name.startswith("layers.") and int(name.split(".")[1]) >= cfg.quantize_position:
            continue
        kept[name] = value
    return kept


class SpeechTokenizer:
    """Feature extractor + encoder; `tokenize(wav, sr)` gives the prompt's speech tokens."""

    def __init__(self, encoder: WhisperVQEncoder, feature_extractor: Any):
        self.encoder = encoder
        self.feature_extractor = feature_extractor

    @torch.inference_mode()
    def tokenize(self, wav: torch.Tensor, sample_rate: int,
                 callback: Callable[[int, int], None] | None = None) -> list[int]:
        """Tokens of channel 0 of a (channels, T) waveform, cut in 30 s segments, padding removed."""
        audio = resample(wav[:1].float().cpu(), sample_rate, TOKENIZER_RATE)[0].numpy()
        seg = SEGMENT_SECONDS * TOKENIZER_RATE
        segments = [audio[s: s + seg] for s in range(0, audio.shape[0], seg)]
        param = next(self.encoder.parameters())
        stride = self.encoder.samples_per_token * self.feature_extractor.hop_length
        tokens: list[int] = []
        for start in range(0, len(segments), SEGMENTS_PER_BATCH):
            batch = self.feature_extractor(segments[start: start + SEGMENTS_PER_BATCH], sampling_rate=TOKENIZER_RATE,
                                           return_attention_mask=True, return_tensors="pt", padding="longest",
                                           pad_to_multiple_of=stride)
            for i in range(batch.input_features.shape[0]):
                feats = batch.input_features[i: i + 1].to(device=param.device, dtype=param.dtype)
                ids, valid = self.encoder(feats, batch.attention_mask[i: i + 1].to(param.device))
                tokens.extend(ids[0][valid[0].bool()].tolist())
                if callback is not None:
                    callback(start + i + 1, len(segments))
        return tokens


def load_speech_tokenizer(path: str | Path, device: torch.device | str = "cpu",
                          dtype: torch.dtype = torch.float32) -> SpeechTokenizer:
    """From upstream's `speech_tokenizer/` folder (config.json, preprocessor_config.json, model*.safetensors)."""
    from safetensors.torch import load_file
    from transformers import WhisperFeatureExtractor

    path = Path(path)
    with open(path / "config.json", encoding="utf-8") as f:
        cfg = WhisperVQConfig.from_dict(json.load(f))
    state: dict[str, torch.Tensor] = {}
    for shard in sorted(glob.glob(os.path.join(path, "model*.safetensors"))):
        state.update(encoder_state_from_checkpoint(load_file(shard), cfg))
    encoder = WhisperVQEncoder(cfg)
    encoder.load_state_dict(state, strict=True)
    encoder = encoder.to(device=device, dtype=dtype).eval()
    return SpeechTokenizer(encoder, WhisperFeatureExtractor.from_pretrained(str(path), local_files_only=True))
