"""Reading GLM-TTS checkpoint files into state dicts, choosing the reader by content, not extension.

Torch pickles are opened with `weights_only=True`; safetensors files by their JSON header.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

ZIP_MAGIC = b"PK\x03\x04"


def is_safetensors(path: str | Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 0 < n < (1 << 28) and head[8:9] == b"{"


def is_torchscript(path: str | Path) -> bool:
    import zipfile

    with open(path, "rb") as f:
        if f.read(4) != ZIP_MAGIC:
            return False
    with zipfile.ZipFile(path) as z:
        return any("/code/__torch__" in n or n.endswith("/constants.pkl") for n in z.namelist())


def load_state_dict(path: str | Path, device: torch.device | str = "cpu") -> Mapping[str, Any]:
    """Tensors of a safetensors file or a weights-only torch pickle (zip or legacy)."""
    path = Path(path)
    if is_safetensors(path):
        from safetensors.torch import load_file

        return load_file(str(path), device=str(device))
    if is_torchscript(path):
        raise ValueError(f"unexpected_torchscript: {path} is a TorchScript archive, not a state dict")
    return torch.load(path, map_location=device, weights_only=True)


def unwrap_model_dict(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """Upstream's flow.pt rule: a plain dict holding "model" is a wrapper, anything else is the state dict."""
    if type(obj) is dict and "model" in obj:
        return obj["model"]
    return obj

