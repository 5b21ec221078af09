"""Sonic's inference settings (upstream `config/inference/sonic.yaml`) and config-file reading.

Every model config is a frozen dataclass built from the upstream JSON with `from_mapping`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def from_mapping(cls: type[T], values: Mapping[str, Any]) -> T:
    """Build dataclass `cls` from a config mapping: unknown keys (`_class_name`, ...) are ignored and
    lists become tuples."""
    names = {field.name for field in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in names}
    return cls(**kwargs)


def read_json(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def read_config(cls: type[T], path: str | Path) -> T:
    """`from_mapping` over a JSON file."""
    return from_mapping(cls, read_json(path))


@dataclasses.dataclass(frozen=True)
class SonicSettings:
    """Pipeline constants of upstream `sonic.yaml` (the user-facing values are arguments of `sample`)."""

    fps: float = 12.5
    """UNet fps micro-conditioning and the frame rate before interpolation."""
    frames_per_batch: int = 25
    """Frames denoised together in one circular window (`n_sample_frames`)."""
    overlap: int = 0
    shift_offset: int = 7
    """Frames the window boundaries move by after every denoising step."""
    decode_chunk_size: int = 8
    appearance_guidance: tuple[float, float] = (2.0, 2.0)
    """Image guidance scale at the first and last step (linearly interpolated)."""
    audio_guidance: tuple[float, float] = (7.5, 7.5)
    i2i_noise_strength: float = 1.0
    noise_aug_strength: float = 0.0
    area: float = 1.1
    """Face-mask size relative to the detected face box."""
    frame_limit: int = 10000
    """Cap on audio length in 25 fps units (`frame_num`)."""
    step: int = 2
    """25 fps audio frames per generated frame."""


DEFAULT_SEED = 72589
DEFAULT_STEPS = 25
DEFAULT_MIN_RESOLUTION = 512
