"""Reading Sonic's checkpoint files into state dicts: safetensors, torch zip and legacy torch pickles.

Formats are recognised by their first bytes, never by extension; pickles load with `weights_only=True`.
"""

from __future__ import annotations

import struct
import zipfile
from collections.abc import Mapping
from pathlib import Path

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


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint file, on the CPU, keys as stored."""
    path = Path(path)
    with path.open("rb") as f:
        head = f.read(16)
    if _is_safetensors(head, path.stat().st_size):
        return load_file(str(path))
    if head.startswith(ZIP_MAGIC):
        with zipfile.ZipFile(path) as archive:
            if any("/code/__torch__" in name or name.endswith("constants.pkl") for name in archive.namelist()):
                raise CheckpointError(f"{path} is a TorchScript archive, not a state dict")
        loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    else:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(loaded, Mapping) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise CheckpointError(f"{path} does not hold a flat tensor state dict")
    return dict(loaded)


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
