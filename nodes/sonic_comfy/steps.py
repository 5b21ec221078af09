"""The two steps of a Sonic workflow around the model pipeline: prepare a portrait and a speech clip into a
condition, and render a condition into frames, their frame rate and the matching audio.

No ComfyUI here: progress callbacks and memory hooks come in as arguments.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..shared_comfy.audio import seconds, to_mono
from ..sonic import FaceBox, SonicCondition, SonicModels, SonicSettings, interpolate, preprocess, sample
from ..sonic.denoise import ProgressCallback, window_frames
from ..sonic.whisper_features import AUDIO_FRAMES_PER_SECOND, MelConfig
from .faces import FaceDetector, pick_face

log = logging.getLogger("sonic")

WHISPER_RATE = 16000
SETTINGS = SonicSettings()


@dataclass(frozen=True)
class SonicPrepared:
    """The SONIC_CONDITION value: model inputs plus the speech they came from, cut to the animated span."""

    condition: SonicCondition
    audio: dict
    face_found: bool


@dataclass(frozen=True)
class Rendered:
    frames: torch.Tensor
    """`(F, H, W, 3)` float32 in [0, 1], ComfyUI's IMAGE batch."""
    audio: dict
    fps: float


def trim(audio: dict, duration: float) -> dict:
    """The first `duration` seconds of an AUDIO value."""
    samples = round(duration * audio["sample_rate"])
    return {"waveform": audio["waveform"][..., :samples], "sample_rate": audio["sample_rate"]}


def prepare(
    image: torch.Tensor,
    audio: dict,
    duration: float,
    min_resolution: int,
    expand_ratio: float,
    detector: FaceDetector,
    whole_image_if_no_face: bool = False,
    mel: MelConfig | None = None,
    settings: SonicSettings = SETTINGS,
) -> tuple[SonicPrepared, torch.Tensor]:
    """Portrait `(H, W, 3)` + AUDIO (any rate and channels) -> the condition and a `(1, h, w, 3)` preview of
    the crop at the size Sonic renders. The largest face is cropped with `expand_ratio`; `duration` is
    capped at the length of the audio."""
    available = seconds(audio)
    if duration > available:
        log.warning("[sonic] duration %.2f s is longer than the audio (%.2f s): using %.2f s",
                    duration, available, available)
        duration = available
    face = pick_face(detector(image), whole_image_if_no_face)
    height, width = image.shape[:2]
    condition = preprocess(
        image,
        to_mono(audio, WHISPER_RATE),
        FaceBox(0, 0, width, height) if face is None else face,
        duration=duration,
        min_resolution=min_resolution,
        expand_ratio=None if face is None else expand_ratio,
        settings=settings,
        mel=mel,
    )
    preview = ((condition.portrait.ref_image[0] + 1) / 2).clamp(0, 1).permute(1, 2, 0)[None]
    spoken = trim(audio, condition.audio_frames / AUDIO_FRAMES_PER_SECOND)
    return SonicPrepared(condition, spoken, face is not None), preview


def render(
    models: SonicModels,
    prepared: SonicPrepared,
    seed: int,
    inference_steps: int,
    dynamic_scale: float,
    ip_audio_scale: float,
    interpolate_frames: bool,
    progress: Callable[[int], ProgressCallback] | None = None,
    decoded: Callable[[], None] | None = None,
    settings: SonicSettings = SETTINGS,
) -> Rendered:
    """Frames at `settings.fps` (12.5), or twice that with RIFE's middle frames (2N-1 frames); the audio cut
    to the video's length. `progress(total)` makes the callback for one phase (denoising windows, then RIFE
    pairs); `decoded()` runs once the VAE is done, before interpolation."""
    if interpolate_frames and models.rife is None:
        raise FileNotFoundError("frame interpolation needs RIFE/flownet.pkl in models/sonic (or turn interpolate off)")
    num_frames = prepared.condition.audio_frames // settings.step
    windows = len(window_frames(num_frames, settings, 0))
    frames = sample(
        models,
        prepared.condition,
        seed=seed,
        inference_steps=inference_steps,
        dynamic_scale=dynamic_scale,
        ip_audio_scale=ip_audio_scale,
        callback=progress(inference_steps * windows) if progress else None,
        settings=settings,
    )
    if decoded is not None:
        decoded()
    fps = settings.fps
    if interpolate_frames:
        frames = interpolate(models.rife, frames, progress(frames.shape[0] - 1) if progress else None)
        fps = settings.fps * 2
    return Rendered(frames, trim(prepared.audio, frames.shape[0] / fps), fps)
