"""The CLIP vision tower of SVD (`image_encoder/`), loaded through Hugging Face transformers.

Its `image_embeds` are the identity the UNet attends to and one input of the motion-bucket predictor.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


def load_image_encoder(folder: str | Path, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """`CLIPVisionModelWithProjection` from a diffusers-layout folder (`model.safetensors` or the fp16 variant)."""
    from transformers import CLIPVisionModelWithProjection

    folder = Path(folder)
    variant = "fp16" if (folder / "model.fp16.safetensors").exists() else None
    model = CLIPVisionModelWithProjection.from_pretrained(folder, variant=variant, local_files_only=True)
    return model.to(device=device, dtype=dtype).eval()


def image_embeds(encoder: nn.Module, clip_image: torch.Tensor) -> torch.Tensor:
    """`(1, 3, 224, 224)` CLIP-normalised image -> `(1, projection_dim)` embedding."""
    param = next(encoder.parameters())
    return encoder(clip_image.to(param.device, param.dtype)).image_embeds
