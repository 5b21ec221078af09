"""One-off conversion of a pickled Sonic checkpoint (`unet.pth`, ...) to safetensors with the same keys.

`python -m nodes.sonic.convert models/sonic/unet.pth [--fp16]` writes `unet.safetensors` beside it; the
pickle is read with `weights_only=True`, so a file that holds anything but tensors is refused.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..shared.weights import read_state_dict


def convert_to_safetensors(path: str | Path, dtype: torch.dtype | None = None) -> Path:
    """Write `<stem>.safetensors` next to `path` (float tensors cast to `dtype` if given); returns its path."""
    source = Path(path)
    target = source.with_suffix(".safetensors")
    if target == source:
        raise ValueError(f"{source} is already a .safetensors file")
    seen: set[int] = set()
    tensors = {}
    for key, value in read_state_dict(source).items():
        value = value.to(dtype) if dtype is not None and value.is_floating_point() else value
        shared = value.data_ptr() in seen  # safetensors refuses tensors that share memory
        seen.add(value.data_ptr())
        tensors[key] = value.clone() if shared else value.contiguous()
    save_file(tensors, str(target), metadata={"converted_from": source.name})
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nodes.sonic.convert", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="a .pth / .pkl / .pt state dict")
    parser.add_argument("--fp16", action="store_true", help="store float16 (halves the UNet's 6.3 GB)")
    args = parser.parse_args(argv)
    target = convert_to_safetensors(args.checkpoint, torch.float16 if args.fp16 else None)
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
