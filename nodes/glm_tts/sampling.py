"""Token samplers of the GLM-TTS LM: repetition-aware (RAS), nucleus, full-softmax and top-k sampling.

Every random choice is an exponential race, argmax(p / q) with q ~ Exp(1), which is exactly how torch's
`multinomial(1)` draws; the q values come from an injectable `Draws` source so runs are reproducible.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

Draws = Callable[[int], torch.Tensor]
"""`draws(n)` returns n independent Exp(1) samples (a 1-D float tensor)."""


def exponential_draws(generator: torch.Generator) -> Draws:
    """Draws from a torch generator, consuming it exactly like `Tensor.multinomial(1)` would."""

    def draw(n: int) -> torch.Tensor:
        return torch.empty(n, device=generator.device).exponential_(1, generator=generator)

    return draw


def recorded_draws(arrays: Sequence[np.ndarray | torch.Tensor]) -> Draws:
    """Replays recorded draw vectors in order (each call must ask for the recorded length)."""
    queue = [torch.as_tensor(a, dtype=torch.float32) for a in arrays]

    def draw(n: int) -> torch.Tensor:
        if not queue:
            raise RuntimeError("draws_exhausted: more random draws requested than recorded")
        q = queue.pop(0)
        if q.numel() != n:
            raise RuntimeError(f"draw_size_mismatch: asked for {n}, recorded {q.numel()}")
        return q

    return draw


def race(probs: torch.Tensor, draws: Draws) -> int:
    """Index chosen by one multinomial draw from the (unnormalised) weights `probs`."""
    q = draws(probs.numel()).to(device=probs.device, dtype=probs.dtype)
    return int(torch.argmax(probs / q).item())


def nucleus_candidates(logp: torch.Tensor, top_p: float, top_k: int,
                       temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The (probs, ids) kept by top-p capped at top-k, in descending stable order.

    The running sum is accumulated in float32 one value at a time, as upstream does, so the cut-off
    lands on the same token as the reference even when a sum sits right at `top_p`.
    """
    sorted_p, sorted_ids = torch.softmax(logp / temperature, dim=0).sort(descending=True, stable=True)
    head = sorted_p[:top_k].float().cpu().numpy()
    cum, keep, limit = np.float32(0.0), 0, np.float32(top_p)
    for p in head:
        if cum >= limit:
            break
        cum = np.float32(cum + p)
        keep += 1
    return sorted_p[:keep], sorted_ids[:keep]


def nucleus_sampling(logp: torch.Tensor, draws: Draws, top_p: float = 0.8, top_k: int = 25,
                     temperature: float = 1.0) -> int:
    probs, ids = nucleus_candidates(logp, top_p, top_k, temperature)
    return int(ids[race(probs, draws)].item())


def random_sampling(logp: torch.Tensor, draws: Draws) -> int:
    """One draw from the full softmax (no temperature, as upstream's fallback)."""
    return race(torch.softmax(logp, dim=0), draws)


@dataclass(frozen=True)
class SamplingConfig:
    """LM sampling knobs; the defaults are upstream's fixed values."""

    method: str = "ras"  # "ras" or "topk"
    top_p: float = 0.8
    top_k: int = 25
    temperature: float = 1.0
    win_size: int = 10
    tau_r: float = 0.1

    def __post_init__(self) -> None:
        if self.method not in ("ras", "topk"):
            raise ValueError(f"unknown_sample_method: {self.method!r} (expected 'ras' or 'topk')")
        if self.temperature <= 0 or not 0 < self.top_p <= 1 or self.top_k < 1:
            raise ValueError(f"bad_sampling_params: temperature={self.temperature} top_p={self.top_p} "
                             f"top_k={self.top_k}")


DEFAULT_SAMPLING = SamplingConfig()


def ras_sampling(logp: torch.Tensor, decoded: Sequence[int], draws: Draws,
                 cfg: SamplingConfig = DEFAULT_SAMPLING) -> int:
    """Nucleus sampling, re-drawn from the full softmax when the pick repeats within the last window."""
    token = nucleus_sampling(logp, draws, cfg.top_p, cfg.top_k, cfg.temperature)
    repeats = sum(1 for t in decoded[-cfg.win_size:] if t == token) if cfg.win_size > 0 else 0
    if repeats >= cfg.win_size * cfg.tau_r:
        token = random_sampling(logp, draws)
    return token


def topk_sampling(logp: torch.Tensor, draws: Draws, k: int, eos_id: int, ignore_eos: bool) -> int:
    """Top-k multinomial sampling that draws again while it picks `eos_id` and `ignore_eos` holds."""
    probs, ids = torch.softmax(logp, dim=0).topk(k)
    if ignore_eos and bool((ids == eos_id).all()):  # upstream would redraw forever (k == 1)
        probs, ids = torch.softmax(logp, dim=0).topk(k + 1)
        probs, ids = probs[ids != eos_id], ids[ids != eos_id]
    while True:
        token = int(ids[race(probs, draws)].item())
        if not ignore_eos or token != eos_id:
            return token
