"""Reading checkpoint files into state dicts for both model families: safetensors, torch zip, legacy pickles.

Formats are recognised by their first bytes, never by extension; pickles load with `weights_only=True`, and a
TorchScript archive (which carries code) is refused.
"""

from __future__ import annotations

import struct
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

ZIP_MAGIC = b"PK\x03\x04"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used, with the reason in the message."""


def _is_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 9:
        return False
    header_len = struct.unpack("<Q", head[:8])[0]
    return 0 < header_len <= size - 8 and head[8:9] == b"{"


def read_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> Mapping[str, Any]:
    """What a checkpoint file holds (a state dict, or a wrapper around one), loaded onto `device`."""
    path = Path(path)
    with path.open("rb") as f:
        head = f.read(16)
    if _is_safetensors(head, path.stat().st_size):
        return load_file(str(path), device=str(device))
    if head.startswith(ZIP_MAGIC):
        with zipfile.ZipFile(path) as archive:
            if any("/code/__torch__" in name or name.endswith("constants.pkl") for name in archive.namelist()):
                raise CheckpointError(f"unexpected_torchscript: {path} is a TorchScript archive, not a state dict")
        return torch.load(path, map_location=device, weights_only=True, mmap=True)
    return torch.load(path, map_location=device, weights_only=True)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint file, on the CPU, keys as stored; anything but a flat state dict is refused."""
    loaded = read_checkpoint(path)
    if not isinstance(loaded, Mapping) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise CheckpointError(f"{path} does not hold a flat tensor state dict")
    return dict(loaded)


def unwrap_model_dict(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """Upstream GLM-TTS's flow.pt rule: a plain dict holding "model" is a wrapper, anything else the state dict."""
    if type(obj) is dict and "model" in obj:
        return obj["model"]
    return obj


def strip_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Keys that start with `prefix`, without it; all other keys dropped."""
    return {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}


def remove_substring(state_dict: Mapping[str, torch.Tensor], part: str) -> dict[str, torch.Tensor]:
    """Keys that contain `part`, with it removed; all other keys dropped (upstream RIFE's `module.` rule)."""
    return {k.replace(part, ""): v for k, v in state_dict.items() if part in k}


def load_weights(module: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> nn.Module:
    """Strict load; a module built on the `meta` device takes the tensors themselves (no copy)."""
    on_meta = any(p.is_meta for p in module.parameters())
    result = module.load_state_dict(state_dict, strict=False, assign=on_meta)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"{type(module).__name__}: {len(result.missing_keys)} missing keys "
            f"(e.g. {result.missing_keys[:3]}), {len(result.unexpected_keys)} unexpected "
            f"(e.g. {result.unexpected_keys[:3]})"
        )
    return module
