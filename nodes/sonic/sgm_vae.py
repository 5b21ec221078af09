"""SVD's VAE as ComfyUI holds it (Stability `generative-models` key names) loaded into our `TemporalVAE`.

ComfyUI's `ImageOnlyCheckpointLoader` gives the SVD VAE with SGM names (`encoder.down.0.block.0...`,
`decoder.up.3.block.2.time_stack...`); Sonic's code uses the diffusers names. Same weights, renamed and
reshaped; SGM has no `quant_conv`, which is an identity 1x1 convolution on the diffusers side.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from ..shared.weights import CheckpointError, load_weights
from .vae import TemporalVAE, VAEConfig

TEMPORAL_DECODER_KEY = "decoder.mid.block_1.mix_factor"
"""Present only in SVD's temporal decoder (ComfyUI tells SVD's VAE apart by the same key)."""

_RESNET_PARTS = {
    "norm1": "norm1", "conv1": "conv1", "norm2": "norm2", "conv2": "conv2", "nin_shortcut": "conv_shortcut"
}
_TIME_STACK_PARTS = {"in_layers.0": "norm1", "in_layers.2": "conv1", "out_layers.0": "norm2", "out_layers.3": "conv2"}
_ATTENTION_PARTS = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}
_SAMPLERS = {"downsample": "downsamplers", "upsample": "upsamplers"}
_TOP_LEVEL = {
    "encoder.norm_out": "encoder.conv_norm_out",
    "decoder.norm_out": "decoder.conv_norm_out",
    "decoder.conv_out.time_mix_conv": "decoder.time_conv_out",
}


def is_temporal_vae(state: Mapping[str, torch.Tensor]) -> bool:
    return TEMPORAL_DECODER_KEY in state


def config_from_state(state: Mapping[str, torch.Tensor], scaling_factor: float = VAEConfig.scaling_factor) -> VAEConfig:
    """Block widths, depth and latent size read from the tensors themselves."""
    levels = sorted({int(m.group(1)) for k in state if (m := re.match(r"encoder\.down\.(\d+)\.", k))})
    widths = tuple(state[f"encoder.down.{i}.block.0.conv1.weight"].shape[0] for i in levels)
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"encoder\.down\.0\.block\.(\d+)\.", k))}
    return VAEConfig(
        in_channels=state["encoder.conv_in.weight"].shape[1],
        out_channels=state["decoder.conv_out.weight"].shape[0],
        block_out_channels=widths,
        layers_per_block=len(blocks),
        latent_channels=state["decoder.conv_in.weight"].shape[1],
        scaling_factor=scaling_factor,
    )


def _resnet(rest: str, temporal: bool) -> str:
    """`block_1.conv1.weight` style remainder of a ResNet key, in diffusers naming."""
    if rest.startswith("mix_factor"):
        return "time_mixer." + rest
    for sgm, ours in _TIME_STACK_PARTS.items():
        if rest.startswith(f"time_stack.{sgm}."):
            return f"temporal_res_block.{ours}.{rest.rsplit('.', 1)[1]}"
    part, leaf = rest.rsplit(".", 1)
    name = f"{_RESNET_PARTS[part]}.{leaf}"
    return f"spatial_res_block.{name}" if temporal else name


def _rename(key: str, levels: int) -> str:
    """One SGM key -> its diffusers name (raises KeyError for a key with no counterpart)."""
    for sgm, ours in _TOP_LEVEL.items():
        if key.startswith(sgm + "."):
            return ours + key[len(sgm) :]
    side, rest = key.split(".", 1)
    temporal = side == "decoder"
    if m := re.fullmatch(r"(down|up)\.(\d+)\.block\.(\d+)\.(.+)", rest):
        kind, level, index, tail = m.group(1), int(m.group(2)), m.group(3), m.group(4)
        blocks = "down_blocks" if kind == "down" else "up_blocks"
        level = level if kind == "down" else levels - 1 - level  # SGM counts decoder levels from the top
        return f"{side}.{blocks}.{level}.resnets.{index}.{_resnet(tail, temporal)}"
    if m := re.fullmatch(r"(down|up)\.(\d+)\.(downsample|upsample)\.conv\.(\w+)", rest):
        kind, level, sampler, leaf = m.groups()
        blocks = "down_blocks" if kind == "down" else "up_blocks"
        level = int(level) if kind == "down" else levels - 1 - int(level)
        return f"{side}.{blocks}.{level}.{_SAMPLERS[sampler]}.0.conv.{leaf}"
    if m := re.fullmatch(r"mid\.block_(\d)\.(.+)", rest):
        return f"{side}.mid_block.resnets.{int(m.group(1)) - 1}.{_resnet(m.group(2), temporal)}"
    if m := re.fullmatch(r"mid\.attn_1\.(\w+)\.(\w+)", rest):
        return f"{side}.mid_block.attentions.0.{_ATTENTION_PARTS[m.group(1)]}.{m.group(2)}"
    if re.fullmatch(r"(conv_in|conv_out)\.(weight|bias)", rest):
        return key
    raise KeyError(key)


def to_diffusers(state: Mapping[str, torch.Tensor], config: VAEConfig) -> dict[str, torch.Tensor]:
    """The SGM state dict renamed to diffusers keys, attention projections as linear weights, plus the
    identity `quant_conv` SGM does not have."""
    levels = len(config.block_out_channels)
    out = {}
    for key, value in state.items():
        try:
            name = _rename(key, levels)
        except KeyError:
            raise CheckpointError(f"not an SVD VAE key: {key}") from None
        is_attention_matrix = ".attentions.0.to_" in name and name.endswith(".weight") and value.dim() == 4
        out[name] = value[:, :, 0, 0] if is_attention_matrix else value
    moments = 2 * config.latent_channels
    reference = next(iter(state.values()))
    out["quant_conv.weight"] = torch.eye(moments, dtype=reference.dtype)[:, :, None, None]
    out["quant_conv.bias"] = torch.zeros(moments, dtype=reference.dtype)
    return out


def load_sgm_vae(state: Mapping[str, torch.Tensor], device: torch.device | str, dtype: torch.dtype) -> TemporalVAE:
    """Our `TemporalVAE` with the weights of an SGM-named SVD VAE state dict (e.g. ComfyUI's `VAE.get_sd()`)."""
    if not is_temporal_vae(state):
        raise CheckpointError("this VAE has no temporal decoder: Sonic needs the VAE of an SVD checkpoint")
    config = config_from_state(state)
    with torch.device("meta"):
        vae = TemporalVAE(config)
    weights = {k: v.detach().to("cpu", dtype) for k, v in to_diffusers(state, config).items()}
    return load_weights(vae, weights).to(device=device, dtype=dtype).eval()
