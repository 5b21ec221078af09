"""Speech tokens to mel: GLM-TTS's flow-matching decoder (DiT estimator + cosine-scheduled Euler solver).

The solver is a pure function of a velocity callable, the initial noise and the time grid, with a
progress/interrupt callback; the noise is injectable so a run is reproducible without torch's RNG.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..shared.weights import read_checkpoint, unwrap_model_dict
from .dit import DiT, DiTConfig

Velocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
StepCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class FlowConfig:
    input_frame_rate: float = 25
    mel_framerate: int = 50
    mel_dim: int = 80
    spk_embed_dim: int = 80  # only used when the speaker is concatenated to the condition
    spkr_emb_adaLN: bool = True
    remove_spkr_concat_condition: bool = True
    speech_token_cfg: bool = False
    t_scheduler: str = "cosine"
    inference_cfg_rate: float = 0.7
    n_timesteps: int = 10
    dit: DiTConfig = field(default_factory=DiTConfig)

    @classmethod
    def from_upstream(cls, flow_kwargs: dict[str, Any], dit_overrides: dict[str, Any] | None = None) -> FlowConfig:
        """Resolve `Flow(**kwargs)` as upstream does: DiT size from `big_model`, then any overrides."""
        kw = dict(flow_kwargs)
        big = bool(kw.get("big_model", False))
        mel_dim = int(kw.get("mel_dim", 80))
        remove_concat = bool(kw.get("remove_spkr_concat_condition", False))
        spk_dim = int(kw.get("spk_embed_dim", 80))
        adaln = bool(kw.get("spkr_emb_adaLN", False))
        if kw.get("use_wavlm_emb", False):
            raise ValueError("unsupported_flow_option: use_wavlm_emb")
        dit = DiTConfig(
            trans_dim=1024 if big else 768, depth=22 if big else 18, heads=16 if big else 12,
            mel_dim=mel_dim, text_vocab_size=int(kw.get("vocab_size", 100000)),
            text_emb_dim=int(kw.get("speech_token_dim", 512)),
            condition_dim=mel_dim if remove_concat else mel_dim + spk_dim,
            speaker_dim=192 if adaln else 0,
        )
        if dit_overrides:
            dit = replace(dit, **dit_overrides)
        return cls(
            input_frame_rate=float(kw.get("input_frame_rate", 12.5)), mel_framerate=int(kw.get("mel_framerate", 86)),
            mel_dim=mel_dim, spk_embed_dim=spk_dim, spkr_emb_adaLN=adaln, remove_spkr_concat_condition=remove_concat,
            speech_token_cfg=bool(kw.get("speech_token_cfg", True)), t_scheduler=str(kw.get("t_scheduler", "cosine")),
            dit=dit,
        )


def read_flow_yaml(path: str | Path) -> dict[str, Any]:
    """The `flow:` kwargs of upstream's HyperPyYAML config, read without instantiating any tag."""
    import yaml

    class TagIgnoringLoader(yaml.SafeLoader):
        pass

    def construct_any(loader: yaml.SafeLoader, _suffix: str, node: yaml.Node) -> Any:
        if isinstance(node, yaml.MappingNode):
            return loader.construct_mapping(node, deep=True)
        if isinstance(node, yaml.SequenceNode):
            return loader.construct_sequence(node, deep=True)
        return loader.construct_scalar(node)

    TagIgnoringLoader.add_multi_constructor("!", construct_any)
    with open(path, encoding="utf-8") as f:
        doc = yaml.load(f, Loader=TagIgnoringLoader)
    return dict(doc.get("flow", {}))


def time_grid(n_steps: int, scheduler: str, device: torch.device | str = "cpu") -> torch.Tensor:
    t = torch.linspace(0, 1, n_steps + 1, device=device)
    if scheduler == "cosine":
        t = 1 - torch.cos(t * 0.5 * math.pi)
    return t


def solve_euler(velocity: Velocity, x: torch.Tensor, t_span: torch.Tensor,
                callback: StepCallback | None = None) -> torch.Tensor:
    """Integrate dx/dt = velocity(x, t) over `t_span` with explicit Euler steps.

    As upstream, the current time is accumulated (t += dt) and each next dt is re-derived from it.
    """
    steps = len(t_span) - 1
    t, dt = t_span[0], t_span[1] - t_span[0]
    for step in range(1, steps + 1):
        x = x + dt * velocity(x, t.reshape(1))
        t = t + dt
        if step < steps:
            dt = t_span[step + 1] - t
        if callback is not None:
            callback(step, steps)
    return x


def mel_frames_for(n_tokens: int, cfg: FlowConfig) -> int:
    """Mel frames for n speech tokens, floored through a Python float (int(113/25*50) == 225, not 226)."""
    return int(n_tokens / cfg.input_frame_rate * cfg.mel_framerate)


class Flow(nn.Module):
    def __init__(self, cfg: FlowConfig):
        super().__init__()
        self.cfg = cfg
        if not cfg.remove_spkr_concat_condition:
            self.spk_embed_affine_layer = nn.Linear(192, cfg.spk_embed_dim)
        self.estimator = DiT(cfg.dit)

    def condition(self, prompt_mel: torch.Tensor, feat_len: int, speaker: torch.Tensor) -> torch.Tensor:
        """(1, feat_len, cond) condition: the prompt mel's last frames at the start, zeros after."""
        mel = torch.zeros(1, feat_len, self.cfg.mel_dim, device=prompt_mel.device, dtype=prompt_mel.dtype)
        copy = min(prompt_mel.shape[1], feat_len)
        if copy:
            mel[:, :copy] = prompt_mel[:, -copy:]
        if self.cfg.remove_spkr_concat_condition:
            return mel
        spk = self.spk_embed_affine_layer(speaker).unsqueeze(1).expand(-1, feat_len, -1)
        return torch.cat([mel, spk], dim=-1)

    @torch.inference_mode()
    def inference(
        self,
        tokens: torch.Tensor,
        prompt_tokens: torch.Tensor,
        prompt_mel: torch.Tensor,
        embedding: torch.Tensor,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        n_timesteps: int | None = None,
        callback: StepCallback | None = None,
    ) -> torch.Tensor:
        """Mel (1, mel_dim, frames) for `tokens` (1, T) continuing the prompt; prompt frames are cut.

        The cut is the prompt mel's own length, not twice the prompt tokens. `noise` (1, feat_len,
        mel_dim) replaces the single torch.randn draw upstream makes.
        """
        p = next(self.parameters())
        all_tokens = torch.cat([prompt_tokens.long(), tokens.long()], dim=1).to(p.device)
        feat_len = mel_frames_for(all_tokens.shape[1], self.cfg)
        prompt_mel = prompt_mel.to(device=p.device, dtype=p.dtype)
        speaker = F.normalize(embedding.to(device=p.device, dtype=p.dtype), dim=1)
        cond = self.condition(prompt_mel, feat_len, speaker)
        if noise is None:
            noise = torch.randn(1, feat_len, self.cfg.mel_dim, generator=generator,
                                device=generator.device if generator is not None else p.device)
        x0 = noise.to(device=p.device, dtype=p.dtype)
        if x0.shape != (1, feat_len, self.cfg.mel_dim):
            raise ValueError(f"noise_shape_mismatch: {tuple(x0.shape)} != {(1, feat_len, self.cfg.mel_dim)}")
        uncond_tokens = torch.zeros_like(all_tokens) if self.cfg.speech_token_cfg else all_tokens
        rate = self.cfg.inference_cfg_rate

        def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            v = self.estimator(x, cond, all_tokens, t, speaker)
            if rate <= 0:
                return v
            v_uncond = self.estimator(x, torch.zeros_like(cond), uncond_tokens, t, torch.zeros_like(speaker))
            return (1.0 + rate) * v - rate * v_uncond

        t_span = time_grid(n_timesteps or self.cfg.n_timesteps, self.cfg.t_scheduler, p.device)
        mel = solve_euler(velocity, x0, t_span, callback)
        return mel[:, prompt_mel.shape[1]:].transpose(1, 2)


def load_flow(checkpoint: str | Path, config_yaml: str | Path, device: torch.device | str = "cpu",
              dtype: torch.dtype = torch.float32) -> Flow:
    """Flow from upstream's `flow.pt` (bare state dict or {"model": sd}) and `config.yaml`.

    Upstream hard-codes the DiT size in `Flow.__init__`, so it is read from the checkpoint's shapes (the
    real checkpoint gives the hard-coded 768/18/12; smaller test checkpoints load the same way)."""
    state = unwrap_model_dict(read_checkpoint(checkpoint))
    flow = Flow(FlowConfig.from_upstream(read_flow_yaml(config_yaml), dit_size_from_state(state)))
    flow.load_state_dict(state, strict=True)
    return flow.to(device=device, dtype=dtype).eval()


def dit_size_from_state(state: dict[str, torch.Tensor], prefix: str = "estimator.") -> dict[str, int]:
    """trans_dim, depth, heads, dim_head and ff_mult of the DiT whose weights `state` holds."""
    trans_dim = state[f"{prefix}proj_out.weight"].shape[1]
    block = f"{prefix}transformer_blocks."
    depth = 1 + max(int(k[len(block):].split(".", 1)[0]) for k in state if k.startswith(block))
    dim_head = 2 * state[f"{prefix}rotary_embed.inv_freq"].numel()  # the rotary embedding spans one head
    return {"trans_dim": trans_dim, "depth": depth, "dim_head": dim_head,
            "heads": state[f"{block}0.attn.to_q.weight"].shape[0] // dim_head,
            "ff_mult": state[f"{block}0.ff.ff.0.0.weight"].shape[0] // trans_dim}
