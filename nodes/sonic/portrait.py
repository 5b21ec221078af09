"""Portrait tensors for Sonic: reference image in [-1, 1], face mask and CLIP input, at the working size.

Resizing is PIL LANCZOS on 8-bit images, exactly as upstream `image_audio_to_tensor`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from .crop import FaceBox, crop_box, face_mask_rect, working_size


@dataclass(frozen=True)
class ClipInput:
    """Preprocessing of the SVD image encoder (`feature_extractor/preprocessor_config.json`)."""

    size: int = 224
    mean: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
    std: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class PortraitTensors:
    ref_image: torch.Tensor
    """`(1, 3, H, W)` float32 in [-1, 1]; H and W multiples of 64."""
    face_mask: torch.Tensor
    """`(1, 1, H, W)` float32 in [0, 1]: the enlarged face box, resampled like the image."""
    clip_image: torch.Tensor
    """`(1, 3, 224, 224)` CLIP-normalised image, squashed (not cropped) to a square."""


def image_to_pil(image: torch.Tensor) -> Image.Image:
    """ComfyUI `(H, W, 3)` float image in [0, 1] -> 8-bit RGB PIL image (exact for images read from 8-bit files)."""
    pixels = (image.detach().cpu().float() * 255.0).round().clamp(0, 255).to(torch.uint8).numpy()
    return Image.fromarray(pixels)


def crop_to_face(image: Image.Image, face: FaceBox, expand_ratio: float) -> tuple[Image.Image, FaceBox]:
    """Crop to upstream's square around the face; the face box is moved into the crop (upstream re-detects)."""
    x1, y1, x2, y2 = crop_box(face, expand_ratio, image.width, image.height)
    moved = FaceBox(face.x - x1, face.y - y1, face.w, face.h)
    return image.crop((x1, y1, x2, y2)), moved


def _to_tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float().div(255)


def _clip_tensor(image: Image.Image, clip: ClipInput) -> torch.Tensor:
    square = image.resize((clip.size, clip.size), Image.LANCZOS)
    pixels = (np.asarray(square).astype(np.float64) * (1 / 255)).astype(np.float32)
    mean, std = np.array(clip.mean, dtype=np.float32), np.array(clip.std, dtype=np.float32)
    return torch.from_numpy((pixels - mean) / std).permute(2, 0, 1)[None]


def portrait_tensors(
    image: Image.Image, face: FaceBox, min_resolution: int, area: float, clip: ClipInput | None = None
) -> PortraitTensors:
    """Mask the face (scaled by `area`) on the original image, then resize image and mask to the working size."""
    mask = np.zeros((image.height, image.width, 3), dtype=np.uint8)
    x0, y0, x1, y1 = face_mask_rect(face, area, image.width, image.height)
    mask[y0:y1, x0:x1] = 255
    mask_image = Image.fromarray(mask)
    size = working_size(image.width, image.height, min_resolution)
    if size != image.size:
        image = image.resize(size, Image.LANCZOS)
        mask_image = mask_image.resize(size, Image.LANCZOS)
    return PortraitTensors(
        ref_image=((_to_tensor(image) - 0.5) / 0.5)[None],
        face_mask=_to_tensor(mask_image)[None, :1],
        clip_image=_clip_tensor(image, clip or ClipInput()),
    )
