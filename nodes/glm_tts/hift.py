"""HiFT vocoder (CosyVoice 2 neural-source-filter + iSTFT net): 80-bin 50 Hz mel to 24 kHz audio.

Attribute names match upstream's hift.pt (weight-norm parametrization keys); the two random inputs of
the harmonic source (initial phases and additive noise) are injectable for reproducible output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm

from ..shared.weights import read_checkpoint


@dataclass(frozen=True)
class HiFTConfig:
    in_channels: int = 80
    base_channels: int = 512
    nb_harmonics: int = 8
    sampling_rate: int = 24000
    nsf_alpha: float = 0.1
    nsf_sigma: float = 0.003
    nsf_voiced_threshold: float = 10.0
    upsample_rates: tuple[int, ...] = (8, 5, 3)
    upsample_kernel_sizes: tuple[int, ...] = (16, 11, 7)
    istft_n_fft: int = 16
    istft_hop: int = 4
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    source_resblock_kernel_sizes: tuple[int, ...] = (7, 7, 11)
    source_resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    lrelu_slope: float = 0.1
    audio_limit: float = 0.99
    f0_cond_channels: int = 512

    @property
    def hop_length(self) -> int:
        """Audio samples per mel frame (480 at 24 kHz)."""
        return math.prod(self.upsample_rates) * self.istft_hop

    @classmethod
    def from_upstream(cls, generator: dict[str, Any], f0_predictor: dict[str, Any]) -> HiFTConfig:
        """From HiFTGenerator(**kwargs) and ConvRNNF0Predictor(**kwargs) argument dicts."""
        g = dict(generator)
        istft = g.pop("istft_params", {"n_fft": 16, "hop_len": 4})
        tuples = ("upsample_rates", "upsample_kernel_sizes", "resblock_kernel_sizes",
                  "source_resblock_kernel_sizes")
        for k in tuples:
            if k in g:
                g[k] = tuple(g[k])
        for k in ("resblock_dilation_sizes", "source_resblock_dilation_sizes"):
            if k in g:
                g[k] = tuple(tuple(d) for d in g[k])
        return cls(**g, istft_n_fft=istft["n_fft"], istft_hop=istft["hop_len"],
                   f0_cond_channels=int(f0_predictor.get("cond_channels", 512)))


def _padding(kernel: int, dilation: int) -> int:
    return (kernel * dilation - dilation) // 2


class Snake(nn.Module):
    """x + sin²(αx)/α with a learned per-channel α."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.alpha[None, :, None]
        return x + (1.0 / (alpha + 1e-9)) * torch.sin(x * alpha).pow(2)


class ResBlock(nn.Module):
    def __init__(self, channels: int, kernel: int, dilations: tuple[int, ...]):
        super().__init__()
        self.convs1 = nn.ModuleList([weight_norm(nn.Conv1d(channels, channels, kernel, 1, dilation=d,
                                                           padding=_padding(kernel, d))) for d in dilations])
        self.convs2 = nn.ModuleList([weight_norm(nn.Conv1d(channels, channels, kernel, 1, dilation=1,
                                                           padding=_padding(kernel, 1))) for _ in dilations])
        self.activations1 = nn.ModuleList([Snake(channels) for _ in dilations])
        self.activations2 = nn.ModuleList([Snake(channels) for _ in dilations])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c1, c2, a1, a2 in zip(self.convs1, self.convs2, self.activations1, self.activations2, strict=True):
            x = c2(a2(c1(a1(x)))) + x
        return x


class F0Predictor(nn.Module):
    """Five weight-normed k3 convs with ELU, then a linear head: |f0| in Hz per mel frame."""

    def __init__(self, in_channels: int, channels: int):
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(5):
            layers += [weight_norm(nn.Conv1d(in_channels if i == 0 else channels, channels, 3, padding=1)), nn.ELU()]
        self.condnet = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels, 1)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return torch.abs(self.classifier(self.condnet(mel).transpose(1, 2)).squeeze(-1))


def harmonic_phases(f0: torch.Tensor, rand_ini: torch.Tensor, sample_rate: int, upsample: int) -> torch.Tensor:
    """sin of the running phase (B, T, H) of f0 × (1..H), integrated at frame rate and re-interpolated."""
    harmonics = torch.arange(1, rand_ini.shape[1] + 1, device=f0.device, dtype=f0.dtype)
    rad = (f0 * harmonics[None, None, :] / sample_rate) % 1
    start = rand_ini.to(rad).clone()
    start[:, 0] = 0  # the fundamental starts at phase 0
    rad[:, 0, :] = rad[:, 0, :] + start
    rad = F.interpolate(rad.transpose(1, 2), scale_factor=1 / upsample, mode="linear").transpose(1, 2)
    phase = torch.cumsum(rad, dim=1) * 2 * math.pi
    phase = F.interpolate(phase.transpose(1, 2) * upsample, scale_factor=upsample, mode="linear").transpose(1, 2)
    return torch.sin(phase)


class SourceModule(nn.Module):
    """Neural source: voiced harmonics plus noise, merged to one excitation channel."""

    def __init__(self, cfg: HiFTConfig):
        super().__init__()
        self.cfg = cfg
        self.l_linear = nn.Linear(cfg.nb_harmonics + 1, 1)

    def forward(self, f0: torch.Tensor, rand_ini: torch.Tensor, sine_noise: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        sines = harmonic_phases(f0, rand_ini, cfg.sampling_rate, cfg.hop_length) * cfg.nsf_alpha
        uv = (f0 > cfg.nsf_voiced_threshold).to(f0.dtype)
        noise = (uv * cfg.nsf_sigma + (1 - uv) * cfg.nsf_alpha / 3) * sine_noise.to(f0)
        return torch.tanh(self.l_linear(sines * uv + noise))


def source_draws(frames: int, cfg: HiFTConfig, generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(rand_ini (1, H), sine_noise (1, T, H)) drawn in upstream's order and memory layout."""
    h, t = cfg.nb_harmonics + 1, frames * cfg.hop_length
    rand_ini = torch.rand(1, h, generator=generator, device=device)
    # Upstream draws randn_like of a (1, T, H) view whose storage is (1, H, T); normal_ on that
    # transposed view fills values in a different order than a contiguous (1, T, H) draw.
    sine_noise = torch.empty(1, h, t, device=device).transpose(1, 2).normal_(generator=generator)
    return rand_ini, sine_noise


class HiFTGenerator(nn.Module):
    def __init__(self, cfg: HiFTConfig):
        super().__init__()
        if cfg.sampling_rate == 22050:
            raise ValueError("unsupported_hift: the 22.05 kHz source module of CosyVoice 1 is not implemented")
        self.cfg = cfg
        base, n_fft = cfg.base_channels, cfg.istft_n_fft
        self.m_source = SourceModule(cfg)
        self.conv_pre = weight_norm(nn.Conv1d(cfg.in_channels, base, 7, 1, padding=3))
        self.ups = nn.ModuleList([
            weight_norm(nn.ConvTranspose1d(base // 2**i, base // 2 ** (i + 1), k, u, padding=(k - u) // 2))
            for i, (u, k) in enumerate(zip(cfg.upsample_rates, cfg.upsample_kernel_sizes, strict=True))
        ])
        down_rates = [1, *list(cfg.upsample_rates[::-1][:-1])]
        cum_rates = [math.prod(down_rates[: i + 1]) for i in range(len(down_rates))][::-1]
        self.source_downs = nn.ModuleList()
        self.source_resblocks = nn.ModuleList()
        for i, (u, k, d) in enumerate(zip(cum_rates, cfg.source_resblock_kernel_sizes,
                                          cfg.source_resblock_dilation_sizes, strict=True)):
            ch = base // 2 ** (i + 1)
            conv = nn.Conv1d(n_fft + 2, ch, 1, 1) if u == 1 else nn.Conv1d(n_fft + 2, ch, u * 2, u, padding=u // 2)
            self.source_downs.append(conv)
            self.source_resblocks.append(ResBlock(ch, k, d))
        self.resblocks = nn.ModuleList([
            ResBlock(base // 2 ** (i + 1), k, d)
            for i in range(len(self.ups))
            for k, d in zip(cfg.resblock_kernel_sizes, cfg.resblock_dilation_sizes, strict=True)
        ])
        self.conv_post = weight_norm(nn.Conv1d(base // 2 ** len(self.ups), n_fft + 2, 7, 1, padding=3))
        self.f0_predictor = F0Predictor(cfg.in_channels, cfg.f0_cond_channels)
        self.register_buffer("stft_window", torch.hann_window(n_fft, periodic=True), persistent=False)

    def decode(self, mel: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        cfg, n_fft = self.cfg, self.cfg.istft_n_fft
        spec = torch.stft(source.squeeze(1), n_fft, cfg.istft_hop, n_fft, window=self.stft_window,
                          return_complex=True)
        spec = torch.view_as_real(spec)
        s_stft = torch.cat([spec[..., 0], spec[..., 1]], dim=1)
        x = self.conv_pre(mel)
        kernels = len(cfg.resblock_kernel_sizes)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, cfg.lrelu_slope))
            if i == len(self.ups) - 1:
                x = F.pad(x, (1, 0), mode="reflect")
            x = x + self.source_resblocks[i](self.source_downs[i](s_stft))
            xs = self.resblocks[i * kernels](x)
            for j in range(1, kernels):
                xs += self.resblocks[i * kernels + j](x)
            x = xs / kernels
        x = self.conv_post(F.leaky_relu(x))
        magnitude = torch.clip(torch.exp(x[:, : n_fft // 2 + 1]), max=1e2)
        phase = torch.sin(x[:, n_fft // 2 + 1:])
        spec = torch.complex(magnitude * torch.cos(phase), magnitude * torch.sin(phase))
        audio = torch.istft(spec, n_fft, cfg.istft_hop, n_fft, window=self.stft_window)
        return torch.clamp(audio, -cfg.audio_limit, cfg.audio_limit)

    @torch.inference_mode()
    def inference(self, mel: torch.Tensor, rand_ini: torch.Tensor | None = None,
                  sine_noise: torch.Tensor | None = None,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(audio (B, frames*hop), source (B, 1, frames*hop)) for a (B, 80, frames) mel."""
        f0 = self.f0_predictor(mel)
        f0_up = F.interpolate(f0[:, None], scale_factor=self.cfg.hop_length, mode="nearest").transpose(1, 2)
        if rand_ini is None or sine_noise is None:
            device = generator.device if generator is not None else mel.device
            rand_ini, sine_noise = source_draws(mel.shape[-1], self.cfg, generator, device)
        source = self.m_source(f0_up, rand_ini.to(mel.device), sine_noise.to(mel.device)).transpose(1, 2)
        return self.decode(mel, source), source


def modernise_weight_norm_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map legacy `<conv>.weight_g` / `.weight_v` names to `parametrizations.weight.original0/1`."""
    renamed = {}
    for key, value in state.items():
        if key.endswith(".weight_g"):
            key = key[: -len("weight_g")] + "parametrizations.weight.original0"
        elif key.endswith(".weight_v"):
            key = key[: -len("weight_v")] + "parametrizations.weight.original1"
        renamed[key] = value
    return renamed


def fold_weight_norm(module: nn.Module) -> nn.Module:
    """Bake every weight-norm parametrization into a plain weight (same values, faster inference)."""
    for m in module.modules():
        if parametrize.is_parametrized(m, "weight"):
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
    return module


def load_hift(checkpoint: str | Path, cfg: HiFTConfig | None = None, device: torch.device | str = "cpu",
              dtype: torch.dtype = torch.float32) -> HiFTGenerator:
    """HiFT from `hift.pt` (either weight-norm key spelling), folded for inference.

    Without `cfg`, upstream's 24 kHz configuration with the channel widths read from the checkpoint."""
    state = modernise_weight_norm_keys(dict(read_checkpoint(checkpoint)))
    model = HiFTGenerator(cfg or hift_config_from_state(state))
    model.load_state_dict(state, strict=True)
    return fold_weight_norm(model).to(device=device, dtype=dtype).eval()


def hift_config_from_state(state: dict[str, torch.Tensor]) -> HiFTConfig:
    """Upstream's HiFT settings with `base_channels` and the F0 predictor width taken from the weights."""
    return HiFTConfig(base_channels=state["conv_pre.parametrizations.weight.original1"].shape[0],
                      f0_cond_channels=state["f0_predictor.condnet.0.parametrizations.weight.original1"].shape[0])
